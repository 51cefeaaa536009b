"""The normaliser's outlier bound: a 1e30 cannot capture the statistics, the verdicts do not
depend on how the stream is cut into blocks, and the bound survives a state round trip."""

from __future__ import annotations

import numpy as np

from twinpass.runtime.normalize import OUTLIER_WARMUP, RunningNormalizer


def _rows(n: int = 400) -> np.ndarray:
    g = np.random.default_rng(3)
    X = g.normal(size=(n, 2)) * [1.0, 5.0] + [0.0, 100.0]
    X[250, 0] = 1e30
    X[260, 1] = -1e30
    return X


def test_an_outlier_is_carried_and_not_absorbed() -> None:
    X = _rows()
    norm = RunningNormalizer(2, keep=-1, outlier_z=20.0)
    out = norm.update_carrying(X[: OUTLIER_WARMUP + 200])
    rest = norm.update_carrying(X[OUTLIER_WARMUP + 200 :])
    assert rest.outliers[250 - 230, 0] and rest.outliers[260 - 230, 1]
    assert rest.outliers.sum() == 2 and not out.outliers.any()
    assert rest.filled[250 - 230, 0] == X[249, 0]  # carried
    assert np.all(np.abs(rest.Z[:, 0]) < 10)  # the column's scale was not captured
    assert norm.std()[0] < 2.0


def test_verdicts_do_not_depend_on_the_blocks() -> None:
    X = _rows()
    whole = RunningNormalizer(2, outlier_z=20.0).update_carrying(X)
    cut = RunningNormalizer(2, outlier_z=20.0)
    parts = [cut.update_carrying(X[a:b]) for a, b in ((0, 1), (1, 251), (251, 259), (259, 400))]
    Z = np.concatenate([p.Z for p in parts])
    np.testing.assert_array_equal(Z, whole.Z)
    np.testing.assert_array_equal(np.concatenate([p.outliers for p in parts]), whole.outliers)


def test_the_bound_survives_the_state_round_trip() -> None:
    X = _rows()
    a = RunningNormalizer(2, outlier_z=7.5)
    a.update_carrying(X[:100])
    b = RunningNormalizer.from_state(a.state())
    assert b.outlier_z == 7.5
    np.testing.assert_array_equal(a.update_carrying(X[100:]).Z, b.update_carrying(X[100:]).Z)
    old = a.state()
    del old["outlier_z"]  # a checkpoint from before the bound: streams without one
    assert RunningNormalizer.from_state(old).outlier_z is None
