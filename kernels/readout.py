"""The readout's exact local rules: recursive least squares (RLS) and normalised LMS.

The readout ``y = B f`` over the feature vector ``f = [xh, u, 1]`` (or ``xh`` alone) has a
local gradient: the output error times the features. Learning it needs neither a backward
pass nor a perturbation (docs/design.md §4). Two rules:

- RLS: the exact online least-squares solution, with a forgetting factor λ. State: the
  inverse covariance ``P`` (F x F, started at ``p0 I``), always float64: in float32 RLS
  loses positive definiteness within a few thousand Mackey-Glass samples at p0 = 1e4
  (measured: NaN weights on 3 of 5 seeds). Per sample::

      g = P f;   c = 1 / (λ + fᵀ g);   B -= c (B f - y) gᵀ;   P <- (P - c g gᵀ) / λ

  ``P``'s update is written ``P[i, j] -= h_i h_j`` with ``h = sqrt(c) g``: the product
  ``h_i h_j`` is the same number as ``h_j h_i``, so a symmetric P stays symmetric bit for
  bit. It is deferred into the next sample's pass over P (which computes the next ``g``
  in the same sweep), so P is read and written once per step, as R is in the perturbation
  kernels. Guards, counted by the caller: a diagonal that is not positive and finite resets
  P to ``p0 I`` (positive definiteness lost to rounding); a diagonal above ``p0`` (the
  prior's uncertainty, reached by forgetting in directions the features stop exciting) is
  pulled back by a diagonal congruence ``P <- S P S``, which keeps P positive definite.
- NLMS: ``B -= μ (B f - y) fᵀ / (δ + ‖f‖²)``, the rule a fixed-point device can run.

Every helper is ``inline="always"`` (see :mod:`.decorrelation` on why) but the two sweeps
over P, :func:`rls_pass` and :func:`rls_apply`, compiled on their own with the kernels' own
flags: inlined, the sweep ran 2-3x slower.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .fma import fma, muladd

READOUT_ANP = 0
READOUT_NLMS = 1
READOUT_RLS = 2

#: NLMS's regulariser δ of ‖f‖²: keeps the step finite for an all-zero feature vector.
NLMS_DELTA = 1e-6

# Outcomes of a pass over P, reported so that the caller counts them.
P_OK = 0
P_RESET = 1
P_BOUNDED = 2


@njit(inline="always")
def rls_reset(P, p0):
    """``P <- p0 I``."""
    for i in range(P.shape[0]):
        for j in range(P.shape[1]):
            P[i, j] = 0
        P[i, i] = p0


#: The two functions below sweep P (F² elements) and are compiled on their own, not inlined
#: into the kernels: inlined, the sweep ran 2-3x slower than the same loop compiled alone
#: (measured at N = 100 and 500, benchmarks/RESULTS.md). Their flags are the kernels'.
_P_JIT = {"inline": "never", "fastmath": {"reassoc", "nsz"}, "error_model": "numpy"}
#: The per-step updates, out of line too, for the compile time (see .perturbation's
#: STEP_JIT); the same flags as the kernels that call them.
_STEP_JIT = {"fastmath": {"reassoc", "nsz"}, "error_model": "numpy", "_nrt": False}


@njit(**_P_JIT)
def rls_apply(P, h, inv):
    """``P <- (P - h hᵀ) inv``: a pending update applied alone (the end of a block).

    ``inv`` comes in as an argument in both places that scale P, here and in
    :func:`rls_pass`: computed next to the product, ``x * (1 / λ)`` may be compiled as
    ``x / λ`` (another rounding), and the two paths must give the same bits.
    """
    F = P.shape[0]
    for i in range(F):
        hi = -h[i]
        for j in range(F):
            P[i, j] = fma(hi, h[j], P[i, j]) * inv


@njit(**_P_JIT)
def rls_pass(P, h, inv, pending, f, g):
    """Apply the pending update ``P <- (P - h hᵀ) inv`` (if ``pending``) and ``g = P f``.

    One sweep over P. Returns (smallest diagonal, largest diagonal) after the update,
    for the caller's guards (NaN compares false, so a NaN diagonal fails ``> 0``).
    """
    F = P.shape[0]
    dmin = math.inf
    dmax = -math.inf
    for i in range(F):
        acc = 0.0
        if pending:
            hi = -h[i]
            for j in range(F):
                v = fma(hi, h[j], P[i, j]) * inv
                P[i, j] = v
                acc = muladd(v, np.float64(f[j]), acc)
        else:
            for j in range(F):
                acc = muladd(P[i, j], np.float64(f[j]), acc)
        g[i] = acc
        d = np.float64(P[i, i])
        if not (d >= dmin):
            dmin = d
        if not (d <= dmax):
            dmax = d
    return dmin, dmax


@njit(inline="always")
def rls_bound(P, p0, f, g):
    """Pull every diagonal above ``p0`` back onto it by ``P <- S P S``; recompute ``g``."""
    F = P.shape[0]
    for i in range(F):
        d = np.float64(P[i, i])
        # h is free here: reuse g as the scale vector, then recompute g below.
        g[i] = math.sqrt(p0 / d) if d > p0 else 1.0
    # One triangle, mirrored: under reassociation P[i, j] * (s_i s_j) may round
    # differently from P[j, i] * (s_j s_i), and P must stay symmetric bit for bit.
    for i in range(F):
        si = g[i]
        for j in range(i, F):
            v = P[i, j] * (si * g[j])
            P[i, j] = v
            P[j, i] = v
    for i in range(F):
        acc = 0.0
        for j in range(F):
            acc = muladd(P[i, j], np.float64(f[j]), acc)
        g[i] = acc


@njit(**_STEP_JIT)
def rls_step(B, P, h, pend, f, y, g, lam, p0, counts, c_reset, c_bound):
    """One RLS sample: update B from features ``f`` (F,) and target ``y`` (n_out,).

    ``pend[0]`` says whether ``h`` holds an update of P not yet applied; on return it
    holds this sample's (applied by the next pass, or by :func:`rls_flush`).
    ``counts[c_reset]`` and ``counts[c_bound]`` count the guards' interventions.
    """
    F = P.shape[0]
    inv = 1.0 / lam
    dmin, dmax = rls_pass(P, h, inv, pend[0] != 0, f, g)
    pend[0] = 0
    if not (dmin > 0.0 and dmax < math.inf):
        rls_reset(P, p0)
        counts[c_reset] += 1
        for i in range(F):
            g[i] = p0 * f[i]
    elif dmax > p0:
        rls_bound(P, p0, f, g)
        counts[c_bound] += 1
    fg = 0.0
    for j in range(F):
        fg += np.float64(f[j]) * g[j]
    denom = lam + fg
    if not (denom > 0.0 and denom < math.inf):
        return
    c = 1.0 / denom
    for o in range(B.shape[0]):
        e = 0.0
        for j in range(F):
            e += np.float64(B[o, j]) * f[j]
        k = -(e - y[o]) * c
        for j in range(F):
            B[o, j] = B.dtype.type(fma(k, g[j], np.float64(B[o, j])))
    sc = math.sqrt(c)
    for j in range(F):
        h[j] = sc * g[j]
    pend[0] = 1


@njit(**_STEP_JIT)
def rls_flush(P, h, pend, lam):
    """Apply a pending update of P (the end of a block): P is current between calls."""
    if pend[0] == 0:
        return
    rls_apply(P, h, 1.0 / lam)
    pend[0] = 0


@njit(**_STEP_JIT)
def nlms_coefficients(B, f, y, mu, co, b):
    """Stream b's NLMS coefficients ``co[b] = μ (B f - y) / (δ + ‖f‖²)``.

    The update is then ``B -= co ⊗ f`` (averaged over the batch by the caller).
    """
    F = f.shape[0]
    nf = NLMS_DELTA
    for j in range(F):
        nf += np.float64(f[j]) * f[j]
    for o in range(B.shape[0]):
        e = 0.0
        for j in range(F):
            e += np.float64(B[o, j]) * f[j]
        co[b, o] = mu * (e - y[o]) / nf
