"""Inference without learning: one clean replica stepped over a block of inputs."""

from __future__ import annotations

from numba import njit

from .activation import tanh_into
from .perturbation import FASTMATH
from .rowops import dot_row


@njit(cache=True, fastmath=FASTMATH, error_model="numpy")
def forward_block(A, R, B, D, xh, U, pred, decor, leak, x, xhn):
    """Predict a block with the clean network, advancing the hidden state ``xh`` in place.

    U (T,nb,n_in) -> pred (T,nb,n_out); scratch x, xhn (nb,N). No noise, no update. The
    network of docs/design.md §2: leaky units, and a readout over [xh, u, 1] when B is
    N + n_in + 1 wide.
    """
    nb, n = xh.shape
    F = B.shape[1]
    keep = xh.dtype.type(1.0 - leak)
    a = xh.dtype.type(leak)
    for s in range(U.shape[0]):
        u = U[s]
        for i in range(n):
            for b in range(nb):
                xhn[b, i] = dot_row(A, i, u, b) + dot_row(R, i, xh, b)
        tanh_into(xhn, x)
        if decor:
            for i in range(n):
                for b in range(nb):
                    xhn[b, i] = dot_row(D, i, x, b)
        else:
            xhn[:] = x
        if leak < 1.0:
            for b in range(nb):
                for i in range(n):
                    xh[b, i] = keep * xh[b, i] + a * xhn[b, i]
        else:
            xh[:] = xhn
        for b in range(nb):
            for o in range(B.shape[0]):
                if F == n:
                    pred[s, b, o] = dot_row(B, o, xh, b)
                    continue
                # The learning kernels' order: the input and bias share, then the hidden.
                acc = B.dtype.type(0)
                for k in range(u.shape[1]):
                    acc += B[o, n + k] * u[b, k]
                acc += B[o, F - 1]
                h = B.dtype.type(0)
                for j in range(n):
                    h += B[o, j] * xh[b, j]
                pred[s, b, o] = h + acc
