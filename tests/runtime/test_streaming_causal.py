"""StreamForecaster's causal protocol and the stream options users of River and reservoirpy
expect: the label delay, the no-delay path for horizon 1, --no-target-input, the delta target,
missing cells (carried inputs, unlabelled targets), and old checkpoints refused."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import CheckpointError, ConfigError
from twinpass.devices.base import DeviceInfo
from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.checkpoint import load_checkpoint, save_checkpoint
from twinpass.runtime.normalize import RunningNormalizer
from twinpass.runtime.streaming import StreamForecaster, label_delay_for
from twinpass.runtime.tasks import MackeyGlassStream

RLS = RuleConfig(readout="rls", leak=0.3, readout_inputs=True)


def _rows(T: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    y = 20.0 + 5.0 * MackeyGlassStream(seed=seed).next(T)
    return np.column_stack([50.0 + g.normal(size=T), 1e3 * g.normal(size=T), y])


def _feed(f: StreamForecaster, X: np.ndarray, cuts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    outs = [f.learn_block(X[a:b]) for a, b in zip([0, *cuts], [*cuts, len(X)], strict=True)]
    return np.concatenate([o.predictions for o in outs]), np.concatenate([o.truth for o in outs])


def _with_holes(X: np.ndarray) -> np.ndarray:
    Y = X.copy()
    Y[[0, 1, 2], 0] = np.nan  # nothing known yet in column 0
    Y[[40, 41, 300], 1] = np.nan
    Y[[100, 101, 250], 2] = np.nan  # targets
    Y[500, :] = np.nan  # a row with nothing at all
    return Y


@pytest.mark.parametrize("config", [RuleConfig(), RLS], ids=["anp", "rls"])
def test_horizon_1_without_a_label_delay_gives_the_same_bits(config: RuleConfig) -> None:
    """Devices that hold no label delay pair row t-1's input with row t's target: the
    same order of operations as a delay of 1, hence the same forecasts."""
    X = _with_holes(_rows(1200, seed=2))
    a = StreamForecaster(3, n_hidden=20, config=config)
    b = StreamForecaster(3, _learner=OnlineLearner(3, 1, 20, config, label_delay=0))
    assert (a.learner.label_delay, b.learner.label_delay) == (1, 0)
    Pa, ta = _feed(a, X, [300])
    Pb, tb = _feed(b, X, [1, 2, 700])
    assert Pa.tobytes() == Pb.tobytes() and ta.tobytes() == tb.tobytes()
    assert a.summary()["mse"] == b.summary()["mse"]


class _NoDelayDevice:
    def info(self) -> DeviceInfo:
        return DeviceInfo("fake", "holds no label", ("anp",), ("float32",), True)


def test_a_horizon_the_device_cannot_delay_is_refused() -> None:
    dev = _NoDelayDevice()
    assert label_delay_for(1, dev, None) == 0 and label_delay_for(5, None, None) == 5
    with pytest.raises(ConfigError, match=r"--horizon 3: .*the fake device .* at most 0"):
        label_delay_for(3, dev, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"--horizon 2: .*the wp rule holds at most 0"):
        StreamForecaster(2, horizon=2, config=RuleConfig(rule="wp"))
    with pytest.raises(ConfigError, match="cannot forecast 3 rows ahead causally"):
        StreamForecaster(1, horizon=3, _learner=OnlineLearner(1, 1, 5, label_delay=2))


def test_no_target_input_learns_from_the_other_columns_only() -> None:
    X = _rows(400)
    f = StreamForecaster(3, n_hidden=20, horizon=2, target_input=False)
    assert f.learner.n_in == 2
    Y = X.copy()
    Y[200, -1] += 9.0  # the target at row 200: a label, not an input
    g = StreamForecaster(3, n_hidden=20, horizon=2, target_input=False)
    Pf, _ = _feed(f, X, [])
    Pg, _ = _feed(g, Y, [])
    # Forecasts made before row 200 are equal; persistence still uses the target.
    assert Pf[:200].tobytes() == Pg[:200].tobytes()
    np.testing.assert_array_equal(Pf[:, 1], X[:-2, -1])
    with pytest.raises(ConfigError, match="--no-target-input needs at least one input"):
        StreamForecaster(1, target_input=False)


def test_delta_mode_persistence_is_the_zero_forecast() -> None:
    """With an RLS readout (zero at the start) the frozen initial network outputs 0: in
    delta mode it is persistence exactly, and the model starts there."""
    h = 3
    X = _rows(2000, seed=1)
    f = StreamForecaster(3, n_hidden=30, horizon=h, config=RLS, target_mode="delta")
    P, _ = _feed(f, X, [500])
    np.testing.assert_array_equal(P[:, 2], P[:, 1])
    np.testing.assert_array_equal(P[:, 1], X[:-h, -1])
    assert P[0, 0] == P[0, 1]  # nothing learned yet at row 0
    s = f.summary()
    assert s["target_mode"] == "delta" and s["initial_model_mse"] == s["persistence_mse"]
    assert s["ema_mse"] < s["persistence_ema_mse"] / 2  # it learned the change
    with pytest.raises(ConfigError, match="--target-mode must be 'level' or 'delta'"):
        StreamForecaster(1, target_mode="diff")


def test_delta_labels_are_the_change_in_units_of_the_forecast_rows_scale() -> None:
    """A linear ramp: the change over the horizon is constant, so delta mode learns it."""
    h = 5
    y = 0.25 * np.arange(3000.0)
    f = StreamForecaster(1, n_hidden=20, horizon=h, config=RLS, target_mode="delta")
    P, truth = _feed(f, y[:, None], [])
    err = P[-500:, 0] - truth[-500:]
    assert np.abs(err).max() < 0.1 * (0.25 * h)  # persistence is off by 1.25 every time


def test_missing_cells_carried_and_unlabelled_rows_counted() -> None:
    h = 2
    X = _rows(800, seed=4)
    Y = _with_holes(X)
    f = StreamForecaster(3, n_hidden=20, horizon=h)
    P, truth = _feed(f, Y, [101, 102])
    s = f.summary()
    # Inputs (the target is one): 3 + 3 + 3 + the empty row's 3.
    assert s["carried_cells"] == 12 and s["unlabelled_rows"] == 4
    assert s["steps"] == 798 and s["scored"] == 798 - 4 == len(truth)
    assert np.isfinite(P).all() and not np.isnan(truth).any()
    assert f.learner.counts()["unlabelled_steps"] == 4
    # The persistence forecast made at row 101 (target missing) is the last known target.
    rows_scored = [t for t in range(h, 800) if not np.isnan(Y[t, -1])]
    made = {t - h: i for i, t in enumerate(rows_scored)}
    assert P[made[101], 1] == X[99, -1] and P[made[500], 1] == X[499, -1]
    # Nothing learned from a missing target: the same as a stream where it is another
    # value nobody learns from... but never an error, and bit-identical under any cuts.
    g = StreamForecaster(3, n_hidden=20, horizon=h)
    Pg, _ = _feed(g, Y, [1, 2, 3, 250, 501])
    assert P.tobytes() == Pg.tobytes() and g.summary() == s
    off = StreamForecaster(3, n_hidden=20, horizon=h, target_input=False)
    _feed(off, Y, [])
    assert off.summary()["carried_cells"] == 8  # the target is not an input


def test_the_normaliser_carries_a_missing_cell_without_counting_it() -> None:
    X = np.array([[np.nan, 1.0], [np.nan, 2.0], [4.0, np.nan], [6.0, 5.0], [np.nan, 3.0]])
    norm = RunningNormalizer(2, keep=1)
    Z, loc, scale = norm.update(X[:3])
    out = norm.update_carrying(X[3:])
    assert Z[0, 0] == Z[1, 0] == 0.0  # nothing known yet: 0 in normalised units
    assert Z[2, 0] == 4.0  # the column's first observed cell (mean 0, scale 1)
    # Row 2's target is missing: carried (2.0), standardised with rows 0-1's statistics.
    assert (loc[2], scale[2]) == (1.5, pytest.approx(np.std([1.0, 2.0], ddof=1)))
    assert Z[2, 1] == (2.0 - 1.5) / scale[2]
    assert out.Z[1, 0] == pytest.approx((6.0 - 5.0) / np.std([4.0, 6.0], ddof=1))
    assert np.isnan(out.filled).sum() == 0 and out.filled[1, 0] == 6.0
    # Statistics of the observed cells only.
    assert norm.count.tolist() == [2, 4] and norm.n_seen == 5
    np.testing.assert_allclose(norm.mean, [5.0, 2.75])
    again = RunningNormalizer.from_state(norm.state())
    assert again.state() == norm.state()


def test_resume_with_a_long_horizon_and_holes_is_bit_identical(tmp_path) -> None:
    h = 7
    X = _with_holes(_rows(1500, seed=5))
    whole = StreamForecaster(3, n_hidden=20, horizon=h, config=RLS, target_mode="delta")
    P_all, _ = _feed(whole, X, [600])
    first = StreamForecaster(3, n_hidden=20, horizon=h, config=RLS, target_mode="delta")
    P1, _ = _feed(first, X[:703], [])
    first.save(tmp_path / "c.ckpt")
    again, _ = StreamForecaster.load(tmp_path / "c.ckpt")
    assert again.target_mode == "delta" and again.learner.label_delay == h
    assert again.state() == first.state()
    P2, _ = _feed(again, X[703:], [5])
    assert np.concatenate([P1, P2]).tobytes() == P_all.tobytes()
    assert again.summary() == whole.summary()


def test_a_version_1_checkpoint_is_refused_naming_both_versions(tmp_path) -> None:
    f = StreamForecaster(1, n_hidden=5)
    f.learn_block(MackeyGlassStream().next(50)[:, None])
    f.save(tmp_path / "c.ckpt")
    ck = load_checkpoint(tmp_path / "c.ckpt")
    meta = dict(ck.meta)
    meta["user"]["stream"]["version"] = 1
    save_checkpoint(tmp_path / "old.ckpt", ck.arrays, meta)
    with pytest.raises(CheckpointError, match=r"version 1, but this twinpass reads version 2"):
        StreamForecaster.load(tmp_path / "old.ckpt")
