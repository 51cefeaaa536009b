"""Streaming kernels: online normalisation and prequential error accumulation.

Both are checked against plain-Python references, for independence from how a stream is cut
into blocks (bit for bit: resume depends on it), and for their argument checks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.kernels.streaming import accumulate_errors, normalize_block


def _normalize_reference(X: np.ndarray, keep: int):
    """Row t standardised with the sample mean/std of rows < t, from explicit prefixes."""
    T, C = X.shape
    Z = np.empty_like(X)
    loc = np.empty(T)
    scale = np.empty(T)
    for t in range(T):
        for c in range(C):
            past = X[:t, c]
            mu = float(np.mean(past)) if t else 0.0
            sd = float(np.std(past, ddof=1)) if t >= 2 else 0.0
            s = sd if sd > 0 else 1.0
            Z[t, c] = (X[t, c] - mu) / s
            if c == keep:
                loc[t], scale[t] = mu, s
    return Z, loc, scale


def _normalize_in_blocks(X: np.ndarray, cuts: list[int], keep: int):
    C = X.shape[1]
    count, mean, m2 = np.zeros(1, np.int64), np.zeros(C), np.zeros(C)
    outs = []
    for a, b in zip([0, *cuts], [*cuts, X.shape[0]], strict=True):
        Xb = np.ascontiguousarray(X[a:b])
        Z, loc, scale = np.empty_like(Xb), np.empty(b - a), np.empty(b - a)
        normalize_block(Xb, count, mean, m2, keep, Z, loc, scale)
        outs.append((Z, loc, scale))
    return (
        np.concatenate([o[0] for o in outs]),
        np.concatenate([o[1] for o in outs]),
        np.concatenate([o[2] for o in outs]),
        int(count[0]),
        mean,
        m2,
    )


def test_normalize_matches_prefix_statistics() -> None:
    g = np.random.default_rng(1)
    X = np.column_stack([g.normal(3.0, 2.0, 300), g.uniform(-1e3, 1e3, 300)])
    Z, loc, scale, n, mean, m2 = _normalize_in_blocks(X, [], keep=1)
    Zr, locr, scaler = _normalize_reference(X, keep=1)
    np.testing.assert_allclose(Z, Zr, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loc, locr, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(scale, scaler, rtol=1e-10)
    assert n == 300
    np.testing.assert_allclose(mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m2 / 299, X.var(axis=0, ddof=1), rtol=1e-10)


def test_normalize_uses_only_past_rows() -> None:
    X = np.array([[5.0], [7.0], [9.0], [100.0]])
    Z, loc, scale, *_ = _normalize_in_blocks(X, [], keep=0)
    # Row 0: no past (loc 0, scale 1); row 1: one past row (scale 1); row 2: mean 6, std sqrt 2.
    assert loc.tolist() == [0.0, 5.0, 6.0, 7.0]
    assert scale[:2].tolist() == [1.0, 1.0]
    assert scale[2] == pytest.approx(math.sqrt(2.0))
    assert Z[0, 0] == 5.0 and Z[1, 0] == 2.0
    # The outlier is scaled by the spread before it, not by its own.
    assert Z[3, 0] == pytest.approx((100.0 - 7.0) / 2.0)


def test_constant_column_has_scale_one() -> None:
    X = np.column_stack([np.full(50, 4.25), np.arange(50.0)])
    Z, _, scale, *_ = _normalize_in_blocks(X, [7, 19], keep=0)
    assert np.all(scale == 1.0)
    assert Z[1:, 0].tolist() == [0.0] * 49


@pytest.mark.parametrize("cuts", [[1], [2, 3, 4], [97, 98, 250], list(range(10, 500, 10))])
def test_normalize_is_bit_identical_under_any_chunking(cuts: list[int]) -> None:
    g = np.random.default_rng(7)
    X = np.cumsum(g.normal(size=(500, 3)), axis=0) * 1e3
    whole = _normalize_in_blocks(X, [], keep=2)
    parts = _normalize_in_blocks(X, cuts, keep=2)
    for a, b in zip(whole, parts, strict=True):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_normalize_checks_arguments() -> None:
    X = np.zeros((4, 2))
    good = dict(
        count=np.zeros(1, np.int64),
        mean=np.zeros(2),
        m2=np.zeros(2),
        Z=np.zeros((4, 2)),
        loc=np.zeros(4),
        scale=np.zeros(4),
    )
    normalize_block(X, keep=1, **good)
    with pytest.raises(ShapeError, match="dtype float32"):
        normalize_block(X.astype(np.float32), keep=1, **good)
    with pytest.raises(ShapeError, match="mean has shape"):
        normalize_block(X, keep=1, **{**good, "mean": np.zeros(3)})
    with pytest.raises(ShapeError, match="count has dtype"):
        normalize_block(X, keep=1, **{**good, "count": np.zeros(1)})
    with pytest.raises(ConfigError, match="keep"):
        normalize_block(X, keep=2, **good)


def _errors_reference(P: np.ndarray, y: np.ndarray, alpha: float, every: int):
    K = P.shape[1]
    sse, ema, rows = [0.0] * K, [0.0] * K, []
    for t in range(P.shape[0]):
        for k in range(K):
            e2 = (P[t, k] - y[t]) ** 2
            sse[k] += e2
            ema[k] = e2 if t == 0 else ema[k] + alpha * (e2 - ema[k])
        n = t + 1
        if n % every == 0:
            rows.append([n] + [v for k in range(K) for v in (sse[k] / n, ema[k])])
    return np.array(sse), np.array(ema), np.array(rows).reshape(-1, 1 + 2 * K)


def _errors_in_blocks(P: np.ndarray, y: np.ndarray, cuts: list[int], alpha: float, every: int):
    K = P.shape[1]
    count, sse, ema = np.zeros(1, np.int64), np.zeros(K), np.zeros(K)
    rows = []
    for a, b in zip([0, *cuts], [*cuts, P.shape[0]], strict=True):
        out = np.full(((b - a) // every + 1, 1 + 2 * K), np.nan)
        n = accumulate_errors(
            np.ascontiguousarray(P[a:b]), y[a:b].copy(), count, sse, ema, alpha, every, out
        )
        rows.append(out[:n])
    return int(count[0]), sse, ema, np.concatenate(rows)


def test_errors_match_reference_and_chunking() -> None:
    g = np.random.default_rng(3)
    y = g.normal(size=1000)
    P = y[:, None] + g.normal(size=(1000, 3)) * np.array([0.1, 1.0, 3.0])
    sse_r, ema_r, rows_r = _errors_reference(P, y, 0.01, 100)
    n, sse, ema, rows = _errors_in_blocks(P, y, [], 0.01, 100)
    assert n == 1000
    np.testing.assert_allclose(sse, sse_r, rtol=1e-13)
    np.testing.assert_allclose(ema, ema_r, rtol=1e-13)
    np.testing.assert_allclose(rows, rows_r, rtol=1e-13)
    assert rows[:, 0].tolist() == list(range(100, 1001, 100))
    for cuts in ([1], [99, 100, 101], [333, 666], list(range(7, 1000, 7))):
        _, sse_c, ema_c, rows_c = _errors_in_blocks(P, y, cuts, 0.01, 100)
        assert sse_c.tobytes() == sse.tobytes()
        assert ema_c.tobytes() == ema.tobytes()
        assert rows_c.tobytes() == rows.tobytes()


def test_ema_starts_at_first_error_and_tracks_a_change() -> None:
    y = np.zeros(2000)
    P = np.concatenate([np.full(1000, 1.0), np.full(1000, 0.1)])[:, None]
    _, sse, ema, rows = _errors_in_blocks(P, y, [], 0.01, 1000)
    assert rows[0, 2] == 1.0  # no start-up bias: the first 1000 errors are all 1
    # Forgets geometrically: 0.01 + (1 - 0.01) * 0.99**1000.
    assert ema[0] == pytest.approx(0.01 + 0.99 * 0.99**1000, rel=1e-9)
    assert sse[0] / 2000 == pytest.approx((1000 * 1.0 + 1000 * 0.01) / 2000)


def test_errors_check_arguments() -> None:
    P, y = np.zeros((10, 2)), np.zeros(10)
    state = dict(count=np.zeros(1, np.int64), sse=np.zeros(2), ema=np.zeros(2))
    rows = np.zeros((11, 5))
    accumulate_errors(P, y, alpha=0.5, every=1, rows=rows, **state)
    with pytest.raises(ShapeError, match="needs at least"):
        accumulate_errors(P, y, alpha=0.5, every=1, rows=np.zeros((10, 5)), **state)
    with pytest.raises(ShapeError, match="truth has shape"):
        accumulate_errors(P, np.zeros(9), alpha=0.5, every=1, rows=rows, **state)
    with pytest.raises(ConfigError, match="alpha"):
        accumulate_errors(P, y, alpha=0.0, every=1, rows=rows, **state)
    with pytest.raises(ConfigError, match="every"):
        accumulate_errors(P, y, alpha=0.5, every=-1, rows=rows, **state)
    assert accumulate_errors(P, y, alpha=0.5, every=0, rows=np.zeros((0, 5)), **state) == 0
