"""The decorrelation rule of Ahmad et al. (2022) in rank-one O(N²) form.

``dD = offdiag(xh xhᵀ) D`` averaged over the batch, ``D <- D - eps * dD``. Written as
``xh (xhᵀ D) - diag(xh²) D`` it costs two passes over D and never forms the O(N³) product.
The fused perturbation kernels apply the same row update (:func:`decor_row_update`) lazily
inside their next pass over D (with a batch of one, :func:`decor_row_update_and_dot2` also
takes the pass's two products in the same sweep); :func:`decorrelate` serves the BPTT
baseline and :func:`decorrelation_update` the tests.

Every helper here is ``inline="always"``: a cached function called from kernels with
different fastmath flags would be compiled with the flags of whichever caller came first
(numba#7168), and its bits would then depend on compile order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fma import fma, muladd


@njit(inline="always")
def decor_prepare(D: np.ndarray, xh: np.ndarray, tmp: np.ndarray, q: np.ndarray) -> None:
    """First pass: ``tmp[b] = xh[b]ᵀ D`` and ``q[i] = sum_b xh[b, i]²`` (D is not changed)."""
    nb, n = xh.shape
    for b in range(nb):
        for j in range(n):
            tmp[b, j] = 0.0
    for i in range(n):
        qi = 0.0
        for b in range(nb):
            xi = xh[b, i]
            qi += np.float64(xi) * xi
            for j in range(n):
                tmp[b, j] += xi * D[i, j]
        q[i] = qi


@njit(inline="always")
def decor_row_update(
    D: np.ndarray, i: int, xh: np.ndarray, tmp: np.ndarray, q: np.ndarray, scale: float
) -> None:
    """Second pass, one row: ``D[i] <- D[i] (1 + scale q[i]) - scale sum_b xh[b,i] tmp[b]``.

    This is ``D[i] -= scale * (sum_b xh[b,i] tmp[b] - q[i] D[i])`` with ``scale = eps/batch``,
    written with the batch loop outside so that the loop over j vectorises. Per element it
    is the expression of :func:`decor_row_update_and_dot2` (a product by f, then one fused
    multiply-add per stream), so the deferred (fused) and the immediate application give the
    same bits.
    """
    n = D.shape[1]
    f = D.dtype.type(1.0 + scale * q[i])
    for j in range(n):
        D[i, j] = D[i, j] * f
    for b in range(xh.shape[0]):
        c = -D.dtype.type(scale * xh[b, i])
        for j in range(n):
            D[i, j] = fma(c, tmp[b, j], D[i, j])


@njit(inline="always")
def decor_row_update_and_dot2(
    D: np.ndarray,
    i: int,
    xh: np.ndarray,
    tmp: np.ndarray,
    q: np.ndarray,
    scale: float,
    pending: bool,
    x1: np.ndarray,
    x2: np.ndarray,
) -> tuple[float, float]:
    """Batch of one: row i's update (if ``pending``), then ``(D[i]·x1[0], D[i]·x2[0])``.

    One sweep of the row instead of four. Without a pending update the row is rewritten
    unchanged (``fma(-0, 0, d * 1) == d``; ``tmp`` must then hold zeros), so that the
    products are always taken by this same loop, whose reduction order is the vectoriser's:
    a stream's bits do not depend on where a block boundary fell.
    """
    f = D.dtype.type(1.0 + scale * q[i]) if pending else D.dtype.type(1.0)
    c = -D.dtype.type(scale * xh[0, i]) if pending else -D.dtype.type(0.0)
    acc1 = D.dtype.type(0)
    acc2 = D.dtype.type(0)
    for j in range(D.shape[1]):
        v = fma(c, tmp[0, j], D[i, j] * f)
        D[i, j] = v
        acc1 = muladd(v, x1[0, j], acc1)
        acc2 = muladd(v, x2[0, j], acc2)
    return acc1, acc2


@njit(inline="always")
def decorrelate(D: np.ndarray, xh: np.ndarray, eps: float, tmp: np.ndarray, q: np.ndarray) -> None:
    """Both passes, inlined into the caller (see :func:`decorrelation_update`)."""
    decor_prepare(D, xh, tmp, q)
    scale = eps / xh.shape[0]
    for i in range(D.shape[0]):
        decor_row_update(D, i, xh, tmp, q, scale)


@njit(cache=True, error_model="numpy")
def decorrelation_update(
    D: np.ndarray, xh: np.ndarray, eps: float, tmp: np.ndarray, q: np.ndarray
) -> None:
    """``D <- D - eps * mean_b offdiag(xh_b xh_bᵀ) D`` in place.

    Shapes: D (N, N); xh (batch, N); scratch tmp (batch, N) and q (N,).
    """
    decorrelate(D, xh, eps, tmp, q)
