"""e-prop (Bellec et al. 2020): eligibility traces times a learning signal, O(N²) per step.

RTRL's influence of a weight W_ij (W = [R | A]) on the state is kept only along the path
through its own unit's leak (docs/design.md §3.8). Per stream, with z_t = [xh_{t-1}, u_t]::

    E_t = (1 - α) E_{t-1} + α ψ_t z_tᵀ            eligibility trace, N x (N + n_in)
    L_t = (2 / n_out) Mᵀ e_t,   L̃_t = Dᵀ L_t       learning signal (D: decorrelation only)
    W  -= η_h L̃_t ⊙ E_t                            (row i scaled by L̃_t,i)

M is B's hidden columns (symmetric feedback) or a fixed random matrix (random feedback).
With α = 1 the trace is ψ_t z_tᵀ and the update is one-step BP's exactly.

Fusion, as in :mod:`.perturbation`: step t's trace increment and weight update are applied
row by row inside step t+1's pass over R, which also takes that step's products, so that E
and R are each read and written once per step. A block ends with a flush that evaluates
the same expressions (:func:`.fma.fma`), so a stream's bits do not depend on how it was cut
into blocks. With nothing pending the pass applies a neutral update (trace factor 1,
increment and step 0), so every step of a stream takes the same loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .decorrelation import decorrelate
from .fma import fma
from .guard import guard_radius
from .online_gradient import (
    G_AUX,
    G_K,
    G_L,
    G_LT,
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
    C_FILL,
    C_GUARD,
    C_HEAD,
    C_RLS_BOUND,
    C_RLS_RESET,
    C_TOTAL,
    C_UNLABELLED,
    _all_finite,
    _copy,
    _features,
    _labelled,
    _stream_loss,
    _zero,
)
from .readout import READOUT_RLS, rls_flush


@njit(inline="always")
def _trace_row(A, R, E, b, i, keep, aps, z, kk):
    """Row i of stream b: ``E_i <- keep E_i + aps_i z``, then ``W_i -= kk_i E_i``."""
    n = R.shape[1]
    ps = aps[b, i]
    k = -kk[b, i]
    for j in range(n):
        e = fma(ps, z[b, j], E[b, i, j] * keep)
        E[b, i, j] = e
        R[i, j] = fma(k, e, R[i, j])
    for j in range(A.shape[1]):
        e = fma(ps, z[b, n + j], E[b, i, n + j] * keep)
        E[b, i, n + j] = e
        A[i, j] = fma(k, e, A[i, j])


@njit(inline="always")
def _flush(A, R, E, keep, aps, z, kk):
    for i in range(R.shape[0]):
        for b in range(E.shape[0]):
            _trace_row(A, R, E, b, i, keep, aps, z, kk)


@njit(inline="always")
def _hidden_signal(M, err, L, D, Lt, decor, readout, lrh_nb):
    """The learning signal of the hidden units into ``Lt`` (through D's transpose when
    decorrelating) and the hidden step to scale it by; the same for a step learned now and
    one learned from the ring when its delayed label arrives."""
    learning_signal(M, err, L)
    if decor:
        transpose_product(D, L, Lt)
    else:
        _copy(Lt, L)
    return hidden_step(readout, M, L.shape[1], lrh_nb)


@njit(**BLOCK_JIT)
def eprop_block(
    A, R, B, D, xh, U, Y, pred, loss,
    lr, lr_h, eps, decor, readout, leak, mu, lam, p0, radius_bound, guard_every,
    M, E, work, z, f, err, co, q, P, ph, pp_flag, counts, gv, gw, delay, ring, rec_o, rec_f,
):  # fmt: skip
    """e-prop over a block of T steps; returns the number of steps taken.

    A (N,n_in), R (N,N), B (n_out,F), D (N,N) and the state xh (nb,N) are updated in place;
    E (nb,N,N+n_in) is the eligibility trace (zero at a sequence's start). U (T,nb,n_in),
    Y (T,nb,n_out) are read; pred (T,nb,n_out) gets each step's prediction, made before
    its update; loss (T,) float64 the step's loss (NaN without a label). M (n_out,N+...):
    the feedback matrix, B itself (symmetric) or a fixed random matrix. The readout learns
    by ``readout`` (READOUT_ANP: its own gradient, step lr; NLMS: mu; RLS: lam, p0, state
    P, ph, pp_flag). Scratch: work (N_GWORK,nb,N), z (nb,N+n_in), f (nb,F),
    err and co (nb,n_out), q (N,), gw (N,). The guard and the counts as in
    :func:`.perturbation.perturbation_block`. A step whose input, output or loss is not
    finite is reported and not taken; the kernel returns its index.

    delay d (docs/design.md §3.8): Y[s] is the label of step s - d. With d >= 1 step s
    first learns step s - d from Y[s], with what was recorded at s - d in the ring slot it
    is about to reuse (ring (d,nb,N,N+n_in): the trace E_{s-d}; rec_o[:, 0]: the
    prediction; rec_f: the features), then runs its forward pass. The first d labels after
    a reset belong to no recorded step and are ignored (loss NaN). With d = 0 the ring and
    records are not read (any shape).
    """
    T = U.shape[0]
    nb, n = xh.shape
    xp = work[G_XP]
    x = work[G_X]
    psi = work[G_PSI]
    xhn = work[G_XHN]
    L = work[G_L]
    Lt = work[G_LT]
    kk = work[G_K]
    aps = work[G_AUX]
    tmp = work[G_TMP]
    lr_nb = lr / nb
    lrh_nb = lr_h / nb
    trace_keep = E.dtype.type(1.0 - leak)
    alpha = E.dtype.type(leak)
    one = E.dtype.type(1)
    # Nothing pending: a neutral update (see the module docstring).
    _zero(aps)
    _zero(kk)
    keep = one
    done = T
    lo = 0.0
    labelled = False
    for s in range(T):
        if radius_bound > 0.0 and counts[C_TOTAL] > 0 and counts[C_TOTAL] % guard_every == 0:
            _flush(A, R, E, keep, aps, z, kk)
            _zero(aps)
            _zero(kk)
            keep = one
            if guard_radius(R, gv, gw, radius_bound):
                counts[C_GUARD] += 1
        u = U[s]
        ys = Y[s]
        slot = counts[C_HEAD]
        if delay > 0:
            loss[s] = np.nan
            if counts[C_FILL] >= delay:
                rp = rec_o[slot, 0]
                for b in range(nb):
                    for o in range(err.shape[1]):
                        err[b, o] = rp[b, o] - ys[b, o]
                lo = 0.0
                for b in range(nb):
                    lo += _stream_loss(rp, ys, b)
                lo /= nb
                loss[s] = lo
                if _labelled(ys):
                    if not np.isfinite(lo):
                        done = s
                        break
                    st = E.dtype.type(_hidden_signal(M, err, L, D, Lt, decor, readout, lrh_nb))
                    rE = ring[slot]
                    for i in range(n):
                        for b in range(nb):
                            c = -st * Lt[b, i]
                            for j in range(n):
                                R[i, j] = fma(c, rE[b, i, j], R[i, j])
                            for j in range(A.shape[1]):
                                A[i, j] = fma(c, rE[b, i, n + j], A[i, j])
                    learn_readout(
                        readout, B, P, ph, pp_flag, rec_f[slot], ys, err, lr_nb, mu, lam, p0,
                        co, counts, C_RLS_RESET, C_RLS_BOUND,
                    )  # fmt: skip
                else:
                    counts[C_UNLABELLED] += 1
        for i in range(n):
            if nb == 1:
                # Update and product in one sweep of the row.
                ps = aps[0, i]
                k = -kk[0, i]
                acc = R.dtype.type(0)
                for j in range(n):
                    e = fma(ps, z[0, j], E[0, i, j] * keep)
                    E[0, i, j] = e
                    r = fma(k, e, R[i, j])
                    R[i, j] = r
                    acc += r * xh[0, j]
                au = R.dtype.type(0)
                for j in range(A.shape[1]):
                    e = fma(ps, z[0, n + j], E[0, i, n + j] * keep)
                    E[0, i, n + j] = e
                    a = fma(k, e, A[i, j])
                    A[i, j] = a
                    au += a * u[0, j]
                xp[0, i] = au + acc
            else:
                for b in range(nb):
                    _trace_row(A, R, E, b, i, keep, aps, z, kk)
                for b in range(nb):
                    au = R.dtype.type(0)
                    for j in range(A.shape[1]):
                        au += A[i, j] * u[b, j]
                    acc = R.dtype.type(0)
                    for j in range(n):
                        acc += R[i, j] * xh[b, j]
                    xp[b, i] = au + acc
        # Applied: nothing is pending until this step's update is known.
        _zero(aps)
        _zero(kk)
        keep = one
        step_tail(xp, x, psi, D, xh, xhn, decor, leak)
        _features(f, xhn, u)
        if delay > 0:
            # Y[s] is not this step's label: only the forecast is checked.
            readout_and_error(B, f, n, ys, pred[s], co)
            labelled = False
            lo = 0.0
        else:
            lo = readout_and_error(B, f, n, ys, pred[s], err)
            loss[s] = lo
            labelled = _labelled(ys)
        if not (_all_finite(u) and _all_finite(pred[s]) and (np.isfinite(lo) or not labelled)):
            done = s
            break
        # This step's trace increment and update, pending for the next pass over R.
        for b in range(nb):
            for i in range(n):
                aps[b, i] = alpha * psi[b, i]
        presynaptic(z, xh, u)
        keep = trace_keep
        if delay > 0:
            # Record E_s (the value the next pass writes), the forecast and the features.
            rE = ring[slot]
            for b in range(nb):
                for i in range(n):
                    ps = aps[b, i]
                    for j in range(z.shape[1]):
                        rE[b, i, j] = fma(ps, z[b, j], E[b, i, j] * keep)
                for o in range(err.shape[1]):
                    rec_o[slot, 0, b, o] = pred[s, b, o]
            _copy(rec_f[slot], f)
            if counts[C_FILL] < delay:
                counts[C_FILL] += 1
            counts[C_HEAD] = (slot + 1) % ring.shape[0]
        elif labelled:
            st = E.dtype.type(_hidden_signal(M, err, L, D, Lt, decor, readout, lrh_nb))
            for b in range(nb):
                for i in range(n):
                    kk[b, i] = st * Lt[b, i]
            learn_readout(
                readout, B, P, ph, pp_flag, f, ys, err, lr_nb, mu, lam, p0, co, counts,
                C_RLS_RESET, C_RLS_BOUND,
            )  # fmt: skip
        elif delay == 0:
            counts[C_UNLABELLED] += 1
        if decor:
            decorrelate(D, xhn, eps, tmp, q)
        _copy(xh, xhn)
        counts[C_TOTAL] += 1
    _flush(A, R, E, keep, aps, z, kk)
    if readout == READOUT_RLS:
        rls_flush(P, ph[0], pp_flag, lam)
    return done
