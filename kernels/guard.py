"""The stability guard of the learned recurrent weights: R's spectral radius, kept bounded.

A hidden layer that learns fast can push R's spectral radius far above 1 (unguarded ANP at
lr 1e-2 took one Mackey-Glass seed from 1.02 to 1.90), after which the state no longer
fades and the forecasts degrade. Every ``guard_every`` steps the kernels estimate the
spectral radius ρ by power iteration and, if it exceeds the bound, scale R onto it
(docs/design.md §5).

The estimate is the geometric mean growth ``(‖R^k v‖ / ‖v‖)^(1/k)`` over ``k`` products
from a vector ``v`` kept between calls (a warm start: after the first call v already lies
near R's dominant subspace, so a few dozen products suffice every time). Unlike the ratio
of two successive norms, the mean over k products also converges when the dominant
eigenvalues are a complex pair. Cost: k N² multiply-adds per guard, a few hundredths of a
step's cost per step at the default interval.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: Products per estimate.
GUARD_ITERS = 32


@njit(inline="always")
def spectral_radius_estimate(R, v, w, iters):
    """Estimate ρ(R) from the unit vector ``v`` (float64, updated: the warm start).

    ``w`` is float64 scratch of length N. Returns 0.0 when R maps v to zero and NaN when
    R is not finite (the caller's divergence check sees it).
    """
    n = R.shape[0]
    log_growth = 0.0
    for _ in range(iters):
        nrm = 0.0
        for i in range(n):
            acc = 0.0
            for j in range(n):
                acc += np.float64(R[i, j]) * v[j]
            w[i] = acc
            nrm += acc * acc
        nrm = math.sqrt(nrm)
        if not (nrm > 0.0):
            return 0.0 if nrm == 0.0 else math.nan
        if nrm == math.inf:
            return math.nan
        log_growth += math.log(nrm)
        for i in range(n):
            v[i] = w[i] / nrm
    return math.exp(log_growth / iters)


@njit(inline="always")
def guard_radius(R, v, w, bound):
    """Scale R onto spectral radius ``bound`` if its estimate exceeds it; True if it did."""
    rho = spectral_radius_estimate(R, v, w, GUARD_ITERS)
    if rho > bound:
        s = R.dtype.type(bound / rho)
        for i in range(R.shape[0]):
            for j in range(R.shape[1]):
                R[i, j] = R[i, j] * s
        return True
    return False


@njit(cache=True, error_model="numpy")
def estimate_spectral_radius(R: np.ndarray, v: np.ndarray, iters: int) -> float:
    """The guard's estimate, callable from Python (for tests and benchmarks)."""
    w = np.zeros(R.shape[0])
    return spectral_radius_estimate(R, v, w, iters)
