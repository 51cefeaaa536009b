"""What the online gradient rules (RTRL, e-prop, UORO) share: the clean step and the readout.

The three rules of :mod:`.rtrl`, :mod:`.eprop` and :mod:`.uoro` run one clean replica of
the network of docs/design.md §2 (no node noise) and differ only in how they carry the
influence of the hidden weights W = [R | A] on the state forward in time (docs/design.md
§3.7-3.9). Everything else is written here once, inlined into each kernel:

- the tail of a step after the pre-activations: ``x = tanh(a)``, ``ψ = 1 - x²``, the
  decorrelated, leaky state ``xh' = (1 - α) xh + α D x``, the readout's features and output,
  the a-priori error ``e = y - y*`` and the loss;
- the learning signal ``L = (2 / n_out) Mᵀ e``, ∂l/∂xh' with M = B's hidden columns
  (symmetric feedback, the true gradient) or a fixed random matrix G (random feedback);
- the step of the hidden weights, ``lr_hidden / batch``, divided by ``1 + ‖M‖²_F`` with an
  exact readout (as ANP's is, docs/design.md §5: the signal scales with M);
- the readout's learning: RLS, NLMS (:mod:`.readout`) or its own exact gradient
  ``B -= lr (2 / n_out) e fᵀ`` (``readout="anp"``: the rule's own estimate, which for a
  gradient rule is the gradient itself).

The trace arrays lay W's columns out as [R's N columns, A's n_in columns]: the presynaptic
vector of step t is ``z_t = [xh_{t-1}, u_t]`` (width W = N + n_in).

Every helper is ``inline="always"`` (see :mod:`.decorrelation` on why).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .activation import tanh_into
from .perturbation import _copy, _leak, _stream_loss, _update_small
from .readout import READOUT_ANP, READOUT_NLMS, nlms_coefficients, rls_step
from .rowops import dot_row

RULE_RTRL = 0
RULE_EPROP = 1
RULE_UORO = 2

FEEDBACK_SYMMETRIC = 0
FEEDBACK_RANDOM = 1

# Rows of the (N_GWORK, nb, N) work array of the gradient kernels.
G_XP, G_X, G_PSI, G_XHN, G_L, G_LT, G_K, G_AUX, G_AUX2, G_TMP = range(10)
N_GWORK = 10


@njit(inline="always")
def step_tail(xp, x, psi, D, xh, xhn, decor, leak):
    """From the pre-activations ``xp``: ``x = tanh(xp)``, ``ψ = 1 - x²`` and the new state.

    ``xhn = (1 - α) xh + α D x`` (D skipped when decorrelation is off).
    """
    nb, n = xp.shape
    tanh_into(xp, x)
    one = x.dtype.type(1)
    for b in range(nb):
        for i in range(n):
            psi[b, i] = one - x[b, i] * x[b, i]
    if decor:
        for i in range(n):
            for b in range(nb):
                xhn[b, i] = dot_row(D, i, x, b)
    else:
        _copy(xhn, x)
    _leak(xhn, xh, leak)


@njit(inline="always")
def readout_and_error(B, f, n, ys, pred_s, err):
    """``y = B f`` into ``pred_s`` and ``err = y - y*``; returns the loss (mean, float64).

    f is ``[xh (n), u, 1]`` or ``xh`` alone (F = n). The summation order of the perturbation
    kernels and of the forward kernel (the input and bias share, then the hidden part), so
    that evaluation predicts the same bits. A NaN target gives a NaN error and loss.
    """
    nb, F = f.shape
    for b in range(nb):
        for o in range(B.shape[0]):
            acc = B.dtype.type(0)
            h = B.dtype.type(0)
            for j in range(n, F):
                acc += B[o, j] * f[b, j]
            for j in range(n):
                h += B[o, j] * f[b, j]
            y = h + acc
            pred_s[b, o] = y
            err[b, o] = y - ys[b, o]
    tot = 0.0
    for b in range(nb):
        tot += _stream_loss(pred_s, ys, b)
    return tot / nb


@njit(inline="always")
def learning_signal(M, err, L):
    """``L[b] = (2 / n_out) M[:, :N]ᵀ err[b]``: ∂l_b/∂xh, the error sent back through M."""
    nb, n = L.shape
    n_out = err.shape[1]
    s = L.dtype.type(2.0 / n_out)
    for b in range(nb):
        for i in range(n):
            L[b, i] = 0
        for o in range(n_out):
            c = s * err[b, o]
            for i in range(n):
                L[b, i] += c * M[o, i]


@njit(inline="always")
def transpose_product(D, L, out):
    """``out[b] = Dᵀ L[b]`` (row axpys: D is read row by row)."""
    nb, n = L.shape
    for b in range(nb):
        for j in range(n):
            out[b, j] = 0
    for i in range(n):
        for b in range(nb):
            c = L[b, i]
            for j in range(n):
                out[b, j] += c * D[i, j]


@njit(inline="always")
def hidden_step(readout, M, n, lrh_nb):
    """The hidden weights' step per stream: ``lr_hidden / nb``, over ``1 + ‖M_h‖²`` with an
    exact readout (docs/design.md §5; M is the feedback matrix in use)."""
    if readout == READOUT_ANP:
        return lrh_nb
    nm = 1.0
    for o in range(M.shape[0]):
        for j in range(n):
            nm += np.float64(M[o, j]) * M[o, j]
    return lrh_nb / nm


@njit(inline="always")
def learn_readout(readout, B, P, ph, pp_flag, f, ys, err, lr_nb, mu, lam, p0, co, counts, cr, cb):
    """The readout's update from this step's features ``f`` and a-priori error ``err``."""
    nb = f.shape[0]
    if readout == READOUT_ANP:
        s = 2.0 / B.shape[0]
        for b in range(nb):
            for o in range(B.shape[0]):
                co[b, o] = s * err[b, o]
        _update_small(B, co, f, lr_nb)
    elif readout == READOUT_NLMS:
        for b in range(nb):
            nlms_coefficients(B, f[b], ys[b], mu, co, b)
        _update_small(B, co, f, 1.0 / nb)
    else:
        for b in range(nb):
            rls_step(B, P, ph[0], pp_flag, f[b], ys[b], ph[1], lam, p0, counts, cr, cb)


@njit(inline="always")
def presynaptic(z, xh, u):
    """``z[b] = [xh[b], u[b]]``: the presynaptic vector of W = [R | A] for this step."""
    nb, n = xh.shape
    for b in range(nb):
        for j in range(n):
            z[b, j] = xh[b, j]
        for k in range(u.shape[1]):
            z[b, n + k] = u[b, k]
