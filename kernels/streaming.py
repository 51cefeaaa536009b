"""Sequential kernels of the streaming command: running normalisation and prequential metrics.

Both walk a block row by row and carry their accumulators in arrays passed in, so a stream
gives the same bits however it is cut into blocks (resuming from a checkpoint depends on
it): no pairwise sums, no vectorised reductions, no fast-math.

- :func:`normalize_block`: Welford running mean and variance per column; each row is
  normalised with the statistics of the rows strictly before it, then added to them.
- :func:`accumulate_errors`: running sum of squared errors and an exponential moving
  average per predictor, with a snapshot row every ``every`` steps.

The ``_``-prefixed ``@njit`` kernels trust their arguments; the wrappers validate them.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from twinpass.core.errors import ConfigError, ShapeError

from .api import check_array

F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)


@njit(cache=True)
def _normalize_block(X, count, mean, m2, keep, Z, loc, scale):  # pragma: no cover - compiled
    n = count[0]
    for t in range(X.shape[0]):
        for c in range(X.shape[1]):
            # Statistics of the rows before this one; a scale of 1 until there is a spread.
            s = 1.0
            if n >= 2 and m2[c] > 0.0:
                s = math.sqrt(m2[c] / (n - 1))
            mu = mean[c]
            x = X[t, c]
            Z[t, c] = (x - mu) / s
            if c == keep:
                loc[t] = mu
                scale[t] = s
            # Welford's update: stable for long streams, unlike sum and sum of squares.
            delta = x - mu
            mu = mu + delta / (n + 1)
            m2[c] = m2[c] + delta * (x - mu)
            mean[c] = mu
        n += 1
    count[0] = n


def normalize_block(
    X: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    keep: int,
    Z: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
) -> None:
    """Normalise the rows of ``X`` (T, C) online, updating the running statistics in place.

    count (1,) int64: rows seen so far; mean (C,), m2 (C,) float64: their Welford
    accumulators. Writes Z (T, C) = (X - mean) / std with the statistics of the rows
    strictly before each row (std: sample standard deviation, 1 while fewer than 2 rows
    have been seen or while a column has been constant), and for column ``keep`` the
    location and scale used, loc (T,) and scale (T,), to map predictions back.
    """
    if not isinstance(X, np.ndarray) or X.ndim != 2:
        raise ShapeError("X must be a 2-d float64 array shaped (T, C)")
    T, C = X.shape
    check_array("X", X, (T, C), F64)
    check_array("count", count, (1,), I64)
    check_array("mean", mean, (C,), F64)
    check_array("m2", m2, (C,), F64)
    check_array("Z", Z, (T, C), F64)
    check_array("loc", loc, (T,), F64)
    check_array("scale", scale, (T,), F64)
    if not 0 <= int(keep) < C:
        raise ConfigError(f"keep must be a column index in [0, {C}), got {keep}")
    _normalize_block(X, count, mean, m2, int(keep), Z, loc, scale)


@njit(cache=True)
def _accumulate_errors(P, truth, count, sse, ema, alpha, every, rows):  # pragma: no cover
    n = count[0]
    written = 0
    K = P.shape[1]
    for t in range(P.shape[0]):
        n += 1
        for k in range(K):
            e = P[t, k] - truth[t]
            e2 = e * e
            sse[k] += e2
            # Start the average at the first error instead of at 0, so it has no start-up bias.
            if n == 1:
                ema[k] = e2
            else:
                ema[k] = ema[k] + alpha * (e2 - ema[k])
        if every > 0 and n % every == 0:
            rows[written, 0] = n
            for k in range(K):
                rows[written, 1 + 2 * k] = sse[k] / n
                rows[written, 2 + 2 * k] = ema[k]
            written += 1
    count[0] = n
    return written


def accumulate_errors(
    P: np.ndarray,
    truth: np.ndarray,
    count: np.ndarray,
    sse: np.ndarray,
    ema: np.ndarray,
    alpha: float,
    every: int,
    rows: np.ndarray,
) -> int:
    """Add a block of predictions to the prequential error accumulators; return rows written.

    P (T, K) float64: K predictors' predictions; truth (T,): what they predicted.
    count (1,) int64: steps so far; sse (K,): running sums of squared errors; ema (K,):
    exponential moving averages of the squared error with weight ``alpha`` on the newest.
    Every ``every`` steps (0: never) a row ``[step, mse_1, ema_1, ..., mse_K, ema_K]`` is
    written to ``rows``, which needs at least ``T // every + 1`` rows of 1 + 2K columns.
    """
    if not isinstance(P, np.ndarray) or P.ndim != 2:
        raise ShapeError("P must be a 2-d float64 array shaped (T, K)")
    T, K = P.shape
    check_array("P", P, (T, K), F64)
    check_array("truth", truth, (T,), F64)
    check_array("count", count, (1,), I64)
    check_array("sse", sse, (K,), F64)
    check_array("ema", ema, (K,), F64)
    if not (0.0 < float(alpha) <= 1.0):
        raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
    if int(every) < 0:
        raise ConfigError(f"every must be >= 0 (0: no rows), got {every}")
    if not isinstance(rows, np.ndarray) or rows.ndim != 2:
        raise ShapeError("rows must be a 2-d float64 array")
    need = T // int(every) + 1 if int(every) > 0 else 0
    if rows.shape[0] < need or rows.shape[1] != 1 + 2 * K:
        raise ShapeError(f"rows has shape {rows.shape}, needs at least ({need}, {1 + 2 * K})")
    check_array("rows", rows, rows.shape, F64)
    return int(_accumulate_errors(P, truth, count, sse, ema, float(alpha), int(every), rows))


@njit(cache=True)
def _screen_column(x, count, mean, m2, bound, warmup, outlier):  # pragma: no cover - compiled
    # The same Welford arithmetic as _normalize_block on one column, so a cell's verdict
    # depends only on the accepted cells before it, however the stream is cut into blocks.
    n = count[0]
    mu = mean[0]
    q = m2[0]
    for t in range(x.shape[0]):
        s = 1.0
        if n >= 2 and q > 0.0:
            s = math.sqrt(q / (n - 1))
        v = x[t]
        if n >= warmup and abs(v - mu) > bound * s:
            outlier[t] = True
            continue
        outlier[t] = False
        delta = v - mu
        mu = mu + delta / (n + 1)
        q = q + delta * (v - mu)
        n += 1


def screen_column(
    x: np.ndarray,
    count: np.ndarray,
    mean: np.ndarray,
    m2: np.ndarray,
    bound: float,
    warmup: int,
) -> np.ndarray:
    """Which cells of one column's observed values ``x`` (n,) are outliers.

    A cell is an outlier when it lies more than ``bound`` running standard deviations from
    the running mean of the accepted cells before it (once ``warmup`` cells were accepted);
    outliers are left out of the statistics that judge the cells after them. count (1,)
    int64, mean (1,) and m2 (1,) float64: the column's Welford accumulators, not changed.
    Returns a bool mask (n,).
    """
    if not isinstance(x, np.ndarray) or x.ndim != 1:
        raise ShapeError("x must be a 1-d float64 array")
    check_array("x", x, (x.shape[0],), F64)
    check_array("count", count, (1,), I64)
    check_array("mean", mean, (1,), F64)
    check_array("m2", m2, (1,), F64)
    if not bound > 0.0:
        raise ConfigError(f"the outlier bound must be > 0, got {bound}")
    out = np.zeros(x.shape[0], np.bool_)
    _screen_column(x, count, mean, m2, float(bound), int(warmup), out)
    return out
