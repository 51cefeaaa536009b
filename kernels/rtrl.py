"""RTRL (Williams & Zipser 1989): the exact online gradient, O(N³) memory and O(N⁴) per step.

Per stream the influence J_t = ∂xh_t/∂W of every hidden weight W = [R | A] on the state is
carried forward exactly (docs/design.md §3.7). With z_t = [xh_{t-1}, u_t]::

    Q_t = diag(ψ_t) (R J_{t-1} + I ⊗ z_tᵀ)          ∂a_t/∂W through the state, and directly
    J_t = (1 - α) J_{t-1} + α D Q_t
    W  -= η_h L_tᵀ J_t                             L_t = (2 / n_out) Mᵀ e_t

J is stored per stream as an N x N(N + n_in) matrix (row k: ∂xh_k/∂W, flattened by rows of
W), so that R J is one matrix product: NumPy's dot, i.e. the BLAS SGEMM/DGEMM, on
preallocated scratch. That product is the whole cost (2 N²·N(N + n_in) flops, twice with
decorrelation); the rest is O(N³). The weights the step's J was propagated with are the
ones before its update, as in every online use of RTRL: with a learning rate of 0 the sum
of the updates over a sequence is the exact gradient of its total loss.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .decorrelation import decorrelate
from .guard import guard_radius
from .online_gradient import (
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
)
from .perturbation import (
    C_GUARD,
    C_RLS_BOUND,
    C_RLS_RESET,
    C_TOTAL,
    C_UNLABELLED,
    FASTMATH,
    _all_finite,
    _copy,
    _features,
    _labelled,
)
from .readout import READOUT_RLS, rls_flush

# NumPy's dot with an output argument needs Numba's runtime (it allocates nothing, but its
# implementation is typed through it), so this kernel is compiled with it, unlike the O(N²)
# ones.
RTRL_JIT = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy"}


@njit(**RTRL_JIT)
def rtrl_block(
    A, R, B, D, xh, U, Y, pred, loss,
    lr, lr_h, eps, decor, readout, leak, mu, lam, p0, radius_bound, guard_every,
    M, J, work, z, f, err, co, q, Q, S, grad, P, ph, pp_flag, counts, gv, gw,
):  # fmt: skip
    """RTRL over a block of T steps; returns the number of steps taken.

    As :func:`.eprop.eprop_block`, with the exact influence J (nb,N,N(N+n_in)) instead of
    the trace (zero at a sequence's start). Scratch: Q, S (N,N(N+n_in)) for the products
    (S only with decorrelation), grad (N,N+n_in) for the step's gradient.
    """
    T = U.shape[0]
    nb, n = xh.shape
    W = z.shape[1]
    n_in = A.shape[1]
    xp = work[G_XP]
    x = work[G_X]
    psi = work[G_PSI]
    xhn = work[G_XHN]
    L = work[G_L]
    tmp = work[G_TMP]
    lr_nb = lr / nb
    lrh_nb = lr_h / nb
    keep = J.dtype.type(1.0 - leak)
    alpha = J.dtype.type(leak)
    done = T
    for s in range(T):
        if radius_bound > 0.0 and counts[C_TOTAL] > 0 and counts[C_TOTAL] % guard_every == 0:
            if guard_radius(R, gv, gw, radius_bound):
                counts[C_GUARD] += 1
        u = U[s]
        ys = Y[s]
        for i in range(n):
            for b in range(nb):
                au = R.dtype.type(0)
                for j in range(n_in):
                    au += A[i, j] * u[b, j]
                acc = R.dtype.type(0)
                for j in range(n):
                    acc += R[i, j] * xh[b, j]
                xp[b, i] = au + acc
        step_tail(xp, x, psi, D, xh, xhn, decor, leak)
        _features(f, xhn, u)
        lo = loss[s] = readout_and_error(B, f, n, ys, pred[s], err)
        labelled = _labelled(ys)
        if not (_all_finite(u) and _all_finite(pred[s]) and (np.isfinite(lo) or not labelled)):
            done = s
            break
        presynaptic(z, xh, u)
        g = grad.reshape(-1)
        for c in range(g.shape[0]):
            g[c] = 0
        st = J.dtype.type(0)
        if labelled:
            learning_signal(M, err, L)
            st = J.dtype.type(hidden_step(readout, M, n, lrh_nb))
        for b in range(nb):
            Jb = J[b]
            np.dot(R, Jb, Q)
            for i in range(n):
                row = i * W
                for j in range(W):
                    Q[i, row + j] += z[b, j]
            if decor:
                for i in range(n):
                    p = psi[b, i]
                    for c in range(Q.shape[1]):
                        Q[i, c] *= p
                np.dot(D, Q, S)
            # One pass over J: its update and, with a label, the gradient L ᵀ J_t.
            for k in range(n):
                if decor:
                    src = S[k]
                    a = alpha
                else:
                    src = Q[k]
                    a = alpha * psi[b, k]
                Jk = Jb[k]
                if labelled:
                    lk = st * L[b, k]
                    for c in range(Jk.shape[0]):
                        v = keep * Jk[c] + a * src[c]
                        Jk[c] = v
                        g[c] += lk * v
                else:
                    for c in range(Jk.shape[0]):
                        Jk[c] = keep * Jk[c] + a * src[c]
        if labelled:
            for i in range(n):
                for j in range(n):
                    R[i, j] -= grad[i, j]
                for j in range(n_in):
                    A[i, j] -= grad[i, n + j]
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
    if readout == READOUT_RLS:
        rls_flush(P, ph[0], pp_flag, lam)
    return done
