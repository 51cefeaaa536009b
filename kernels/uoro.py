"""UORO (Tallec & Ollivier 2017): an unbiased rank-one estimate of RTRL's influence, O(N²).

The influence J_t = ∂xh_t/∂W (N x N(N + n_in)) is estimated by x̃_t θ̃_tᵀ, with x̃ (N) and
θ̃ (N x (N + n_in), W's shape). Per stream and step, with random signs ν (N), z_t =
[xh_{t-1}, u_t], H_t = ∂xh_t/∂xh_{t-1} = (1 - α) I + α D diag(ψ_t) R (docs/design.md §3.9)::

    g   = α ψ_t ⊙ (Dᵀ ν)                      so that νᵀ ∂xh_t/∂W_ij = g_i z_j
    ρ0  = sqrt((‖θ̃‖ + ε) / (‖H_t x̃‖ + ε)),   ρ1 = sqrt((‖g‖ ‖z‖ + ε) / (‖ν‖ + ε))
    x̃  <- ρ0 H_t x̃ + ρ1 ν
    θ̃  <- θ̃ / ρ0 + (g / ρ1) z_tᵀ
    W  -= η_h (L_t · x̃) θ̃                    L_t = (2 / n_out) Mᵀ e_t, as for e-prop

E[x̃ θ̃ᵀ] = J_t for fixed weights: the ρ's cancel in the products, and the cross terms are
odd in ν (ρ1 is even in it), so their mean is 0. ν is drawn per stream and step as the
signs of ``fill_normal`` draws (nb x N counter values of the generator ``rng``).

Fusion, as in :mod:`.eprop`: step t's θ̃ update and weight update are applied inside step
t+1's pass over R, which also takes both products (R xh and R x̃) and ‖θ̃‖; a block ends
with a flush of the same expressions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .decorrelation import decorrelate
from .fma import fma
from .guard import guard_radius
from .online_gradient import (
    G_AUX,
    G_AUX2,
    G_K,
    G_L,
    G_PSI,
    G_TMP,
    G_X,
    G_XHN,
    G_XP,
    hidden_step,
    learn_readout,
    learning_signal,
    presynaptic,
    readout_and_error,
    step_tail,
    transpose_product,
)
from .perturbation import (
    BLOCK_JIT,
    C_GUARD,
    C_RLS_BOUND,
    C_RLS_RESET,
    C_TOTAL,
    C_UNLABELLED,
    _all_finite,
    _copy,
    _features,
    _labelled,
    _zero,
)
from .readout import READOUT_RLS, rls_flush
from .rng import fill_normal_inline as fill_normal

#: ε of the ρ's: keeps them finite when θ̃ or H x̃ is 0 (the first step of a sequence).
UORO_EPS = 1e-7


@njit(inline="always")
def _theta_row(A, R, Th, b, i, s0, g1, z, kk, nrm):
    """Row i of stream b: ``θ̃_i <- θ̃_i s0 + g1_i z``, ``W_i -= k θ̃_i``; adds ‖θ̃_i‖²."""
    n = R.shape[1]
    sb = s0[b]
    gi = g1[b, i]
    k = -kk[b, 0]
    # ‖θ̃‖ only scales ρ0, and any positive ρ0 keeps the estimate unbiased: it is summed in
    # the arrays' dtype, so that the loop vectorises at float32's width.
    acc = Th.dtype.type(0)
    for j in range(n):
        t = fma(gi, z[b, j], Th[b, i, j] * sb)
        Th[b, i, j] = t
        acc += t * t
        R[i, j] = fma(k, t, R[i, j])
    for j in range(A.shape[1]):
        t = fma(gi, z[b, n + j], Th[b, i, n + j] * sb)
        Th[b, i, n + j] = t
        acc += t * t
        A[i, j] = fma(k, t, A[i, j])
    nrm[b] += acc


@njit(inline="always")
def _flush(A, R, Th, s0, g1, z, kk, nrm, tn):
    for b in range(Th.shape[0]):
        nrm[b] = 0.0
    for i in range(R.shape[0]):
        for b in range(Th.shape[0]):
            _theta_row(A, R, Th, b, i, s0, g1, z, kk, nrm)
    for b in range(Th.shape[0]):
        tn[b] = math.sqrt(nrm[b])


@njit(inline="always")
def _neutral(s0, g1, kk):
    for b in range(s0.shape[0]):
        s0[b] = 1
        kk[b, 0] = 0
    _zero(g1)


@njit(**BLOCK_JIT)
def uoro_block(
    A, R, B, D, xh, rng, U, Y, pred, loss,
    lr, lr_h, eps, decor, readout, leak, mu, lam, p0, radius_bound, guard_every,
    M, Th, xt, tn, work, z, f, err, co, q, s0, kk, nrm, P, ph, pp_flag, counts, gv, gw,
):  # fmt: skip
    """UORO over a block of T steps; returns the number of steps taken.

    As :func:`.eprop.eprop_block`, with the estimate's state instead of the trace: Th
    (nb,N,N+n_in) θ̃, xt (nb,N) x̃, tn (nb,) float64 ‖θ̃‖ (all zero at a sequence's start);
    ``rng`` the generator the signs are drawn from. Scratch: s0 (nb,) and kk (nb,1) of the
    arrays' dtype, nrm (nb,) float64.
    """
    T = U.shape[0]
    nb, n = xh.shape
    W = Th.shape[2]
    xp = work[G_XP]
    x = work[G_X]
    psi = work[G_PSI]
    xhn = work[G_XHN]
    L = work[G_L]
    rx = work[G_AUX]  # R x̃, then H x̃
    g1 = work[G_AUX2]  # g, then g / ρ1 (pending)
    nu = work[G_K]
    tmp = work[G_TMP]
    lr_nb = lr / nb
    lrh_nb = lr_h / nb
    keep = xh.dtype.type(1.0 - leak)
    alpha = xh.dtype.type(leak)
    sq_n = math.sqrt(n)
    _neutral(s0, g1, kk)
    done = T
    for s in range(T):
        if radius_bound > 0.0 and counts[C_TOTAL] > 0 and counts[C_TOTAL] % guard_every == 0:
            _flush(A, R, Th, s0, g1, z, kk, nrm, tn)
            _neutral(s0, g1, kk)
            if guard_radius(R, gv, gw, radius_bound):
                counts[C_GUARD] += 1
        u = U[s]
        ys = Y[s]
        for b in range(nb):
            nrm[b] = 0.0
        for i in range(n):
            if nb == 1:
                # The streaming case: θ̃'s and the row's update, ‖θ̃‖ and both products in
                # one sweep of the row (the expressions of _theta_row).
                sb = s0[0]
                gi = g1[0, i]
                k = -kk[0, 0]
                acn = Th.dtype.type(0)
                acc = R.dtype.type(0)
                acx = R.dtype.type(0)
                for j in range(n):
                    t = fma(gi, z[0, j], Th[0, i, j] * sb)
                    Th[0, i, j] = t
                    acn += t * t
                    r = fma(k, t, R[i, j])
                    R[i, j] = r
                    acc += r * xh[0, j]
                    acx += r * xt[0, j]
                au = R.dtype.type(0)
                for j in range(A.shape[1]):
                    t = fma(gi, z[0, n + j], Th[0, i, n + j] * sb)
                    Th[0, i, n + j] = t
                    acn += t * t
                    a = fma(k, t, A[i, j])
                    A[i, j] = a
                    au += a * u[0, j]
                nrm[0] += acn
                xp[0, i] = au + acc
                rx[0, i] = acx
                continue
            for b in range(nb):
                _theta_row(A, R, Th, b, i, s0, g1, z, kk, nrm)
            for b in range(nb):
                au = R.dtype.type(0)
                for j in range(A.shape[1]):
                    au += A[i, j] * u[b, j]
                acc = R.dtype.type(0)
                acx = R.dtype.type(0)
                for j in range(n):
                    acc += R[i, j] * xh[b, j]
                    acx += R[i, j] * xt[b, j]
                xp[b, i] = au + acc
                rx[b, i] = acx
        for b in range(nb):
            tn[b] = math.sqrt(nrm[b])
        _neutral(s0, g1, kk)
        step_tail(xp, x, psi, D, xh, xhn, decor, leak)
        _features(f, xhn, u)
        lo = readout_and_error(B, f, n, ys, pred[s], err)
        loss[s] = lo
        labelled = _labelled(ys)
        if not (_all_finite(u) and _all_finite(pred[s]) and (np.isfinite(lo) or not labelled)):
            done = s
            break
        # H x̃ = (1 - α) x̃ + α D (ψ ⊙ R x̃), in rx (x holds ψ ⊙ R x̃ as scratch).
        for b in range(nb):
            for i in range(n):
                x[b, i] = psi[b, i] * rx[b, i]
        if decor:
            for i in range(n):
                for b in range(nb):
                    acc = R.dtype.type(0)
                    for j in range(n):
                        acc += D[i, j] * x[b, j]
                    rx[b, i] = acc
        else:
            _copy(rx, x)
        for b in range(nb):
            for i in range(n):
                rx[b, i] = keep * xt[b, i] + alpha * rx[b, i]
        # The signs ν, and g = α ψ ⊙ (Dᵀ ν).
        fill_normal(rng, 1.0, nu)
        for b in range(nb):
            for i in range(n):
                nu[b, i] = 1 if nu[b, i] >= 0 else -1
        if decor:
            transpose_product(D, nu, g1)
        else:
            _copy(g1, nu)
        presynaptic(z, xh, u)
        for b in range(nb):
            ng = 0.0
            for i in range(n):
                g1[b, i] = alpha * psi[b, i] * g1[b, i]
                ng += np.float64(g1[b, i]) * g1[b, i]
            nz = 0.0
            for j in range(W):
                nz += np.float64(z[b, j]) * z[b, j]
            nh = 0.0
            for i in range(n):
                nh += np.float64(rx[b, i]) * rx[b, i]
            rho0 = math.sqrt((tn[b] + UORO_EPS) / (math.sqrt(nh) + UORO_EPS))
            rho1 = math.sqrt((math.sqrt(ng * nz) + UORO_EPS) / (sq_n + UORO_EPS))
            r0 = xh.dtype.type(rho0)
            r1 = xh.dtype.type(rho1)
            for i in range(n):
                xt[b, i] = r0 * rx[b, i] + r1 * nu[b, i]
            s0[b] = 1.0 / rho0
            inv1 = xh.dtype.type(1.0 / rho1)
            for i in range(n):
                g1[b, i] = g1[b, i] * inv1
        if labelled:
            learning_signal(M, err, L)
            st = hidden_step(readout, M, n, lrh_nb)
            for b in range(nb):
                lx = 0.0
                for i in range(n):
                    lx += np.float64(L[b, i]) * xt[b, i]
                kk[b, 0] = st * lx
            learn_readout(
                readout, B, P, ph, pp_flag, f, ys, err, lr_nb, mu, lam, p0, co, counts,
                C_RLS_RESET, C_RLS_BOUND,
            )  # fmt: skip
        else:
            counts[C_UNLABELLED] += 1
        if decor:
            decorrelate(D, xhn, eps, tmp, q)
        _copy(xh, xhn)
        counts[C_TOTAL] += 1
    _flush(A, R, Th, s0, g1, z, kk, nrm, tn)
    if readout == READOUT_RLS:
        rls_flush(P, ph[0], pp_flag, lam)
    return done
