"""Row-level building blocks shared by the kernels (inlined into each caller).

Weights are updated with :func:`.fma.fma` (one rounding), so that every path applying an
update gives the same bits; the fused pass accumulates its products with
:func:`.fma.muladd`, so that it costs three fused operations per element instead of six.
"""

from __future__ import annotations

from numba import njit

from .fma import fma, muladd


@njit(inline="always")
def dot_row(M, i, v, b):
    """``M[i] · v[b]`` accumulated in the arrays' own dtype (float32 stays vectorisable)."""
    acc = M.dtype.type(0)
    for j in range(M.shape[1]):
        acc += M[i, j] * v[b, j]
    return acc


@njit(inline="always")
def rank_update_row(M, i, c, p):
    """``M[i] -= c[b, i] p[b]`` for each b in turn: the one expression of a rank-nb update.

    The batch loop is outside so that the loop over j is unit-stride and vectorises.
    """
    for b in range(c.shape[0]):
        cb = -c[b, i]
        for j in range(M.shape[1]):
            M[i, j] = fma(cb, p[b, j], M[i, j])


@njit(inline="always")
def update_and_dot2(M, i, c, p, x1, x2):
    """Batch of one: ``M[i] -= c[0, i] p[0]``, then ``(M[i]·x1[0], M[i]·x2[0])``, in one sweep.

    The same update expression as :func:`rank_update_row` (so the bits agree), with both
    dot products taken while the row is in registers: one pass instead of three.
    """
    ci = -c[0, i]
    acc1 = M.dtype.type(0)
    acc2 = M.dtype.type(0)
    for j in range(M.shape[1]):
        v = fma(ci, p[0, j], M[i, j])
        M[i, j] = v
        acc1 = muladd(v, x1[0, j], acc1)
        acc2 = muladd(v, x2[0, j], acc2)
    return acc1, acc2


@njit(inline="always")
def update_and_dot2_pair(M, i, c, p, x1, x2):
    """:func:`update_and_dot2` of rows i and i+1 in one sweep: ``(r1_i, r2_i, r1_k, r2_k)``.

    Each element of p, x1 and x2 is loaded once for two rows, and the two rows' four
    reductions run side by side; the per-element expressions are those of
    :func:`update_and_dot2`.
    """
    k = i + 1
    ci = -c[0, i]
    ck = -c[0, k]
    z = M.dtype.type(0)
    a1 = z
    a2 = z
    b1 = z
    b2 = z
    for j in range(M.shape[1]):
        pj = p[0, j]
        y1 = x1[0, j]
        y2 = x2[0, j]
        v = fma(ci, pj, M[i, j])
        w = fma(ck, pj, M[k, j])
        M[i, j] = v
        M[k, j] = w
        a1 = muladd(v, y1, a1)
        a2 = muladd(v, y2, a2)
        b1 = muladd(w, y1, b1)
        b2 = muladd(w, y2, b2)
    return a1, a2, b1, b2
