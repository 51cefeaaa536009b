"""The fixed-point step as compiled scalar loops: the simulator's speed, and C's shape.

The same arithmetic as :mod:`.fixed_point` (docs/protocol.md §6), written the way the C
firmware will be: int64 scalars, loops, no temporaries beyond the work arrays. Numba's
int64 arithmetic wraps like C's, but by the document's bounds nothing overflows, so these
loops, NumPy's vectorised expressions and the overflow-checked transcription in
``tests/naive/fixed_point.py`` agree bit for bit (the tests hold them equal).

The uint32 multiplications of the hash are split into 16-bit halves so that everything
stays in int64 (Numba would turn a mixed signed/unsigned expression into a float).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .tanh_table import TANH_TABLE

M32 = 0xFFFFFFFF


@njit(inline="always")
def _mul32(x, c):
    """(x · c) mod 2**32 for 0 <= x, c < 2**32, in int64."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & M32


@njit(inline="always")
def _lowbias32(x):
    x &= M32
    x ^= x >> 16
    x = _mul32(x, 0x7FEB352D)
    x ^= x >> 15
    x = _mul32(x, 0x846CA68B)
    x ^= x >> 16
    return x


@njit(inline="always")
def _rsr(v, s):
    return (v + (1 << (s - 1))) >> s


# min/max rather than branches: the loops that use them then vectorise.
@njit(inline="always")
def _sat(v, lim):
    return min(max(v, -lim), lim)


@njit(inline="always")
def _sat32(v):
    return min(max(v, -2147483648), 2147483647)


@njit(inline="always")
def _div(n, d):
    if d == 0:
        return 0
    q = (-n if n < 0 else n) // d
    return -q if n < 0 else q


@njit(inline="always")
def _tanh(a, table):
    m = -a if a < 0 else a
    if m >= 8 << 16:
        y = 65536
    else:
        i = m >> 9
        f = m & 511
        y = table[i] + (((table[i + 1] - table[i]) * f + 256) >> 9)
    return -y if a < 0 else y


@njit(cache=True)
def fill_noise(key, counter, sigma_q, out):
    """out[k] = sample(counter + 2k) (§6.3); returns the new counter (mod 2**64 not needed:
    a Python-side counter beyond 2**63 falls back to NumPy)."""
    p = counter
    for k in range(out.shape[0]):
        w0 = _lowbias32(_lowbias32((p & M32) ^ key) ^ ((p >> 32) & M32))
        p1 = p + 1
        w1 = _lowbias32(_lowbias32((p1 & M32) ^ key) ^ ((p1 >> 32) & M32))
        g = (w0 & 0xFFFF) + (w0 >> 16) + (w1 & 0xFFFF) + (w1 >> 16) - 131070
        out[k] = _rsr(g * 113512 * sigma_q, 32)
        p += 2
    return p


@njit(cache=True)
def forward_pair(
    A, R, B, D, has_d, xh1, xh2, u, xi1, xi2, z1, z2, table, xp1, xp2, xn1, xn2, b1, b2
):
    """§6.4 for both replicas and every stream; fills xp*, xn* (new states), b*."""
    nb, n = xh1.shape
    n_in = A.shape[1]
    n_out = B.shape[0]
    x1 = np.empty(n, np.int64)
    x2 = np.empty(n, np.int64)
    for s in range(nb):
        for i in range(n):
            au = 0
            for j in range(n_in):
                au += A[i, j] * u[s, j]
            r1 = au
            r2 = au
            for j in range(n):
                r1 += R[i, j] * xh1[s, j]
                r2 += R[i, j] * xh2[s, j]
            xp1[s, i] = _sat32(_sat32(_rsr(r1, 24)) + xi1[s, i])
            xp2[s, i] = _sat32(_sat32(_rsr(r2, 24)) + xi2[s, i])
            x1[i] = _tanh(xp1[s, i], table)
            x2[i] = _tanh(xp2[s, i], table)
        for i in range(n):
            if has_d:
                d1 = 0
                d2 = 0
                for j in range(n):
                    d1 += D[i, j] * x1[j]
                    d2 += D[i, j] * x2[j]
                xn1[s, i] = _sat(_rsr(d1, 24), 1 << 20)
                xn2[s, i] = _sat(_rsr(d2, 24), 1 << 20)
            else:
                xn1[s, i] = x1[i]
                xn2[s, i] = x2[i]
        for o in range(n_out):
            c1 = 0
            c2 = 0
            for j in range(n):
                c1 += B[o, j] * xn1[s, j]
                c2 += B[o, j] * xn2[s, j]
            b1[s, o] = _sat32(_sat32(_rsr(c1, 24)) + z1[s, o])
            b2[s, o] = _sat32(_sat32(_rsr(c2, 24)) + z2[s, o])


@njit(cache=True)
def anp_update(A, R, B, dl, da, db, u, xh_prev, xh, lg, cap, kh, ko):
    """§6.5: A, R, B in place from per-stream dl, da, db; kh (nb, N), ko (nb, n_out) scratch."""
    nb, n = da.shape
    n_out = db.shape[1]
    n_in = u.shape[1]
    for s in range(nb):
        d = _sat(dl[s], 1 << 38)
        nda = 0
        for i in range(n):
            nda += da[s, i] * da[s, i]
        nda = min(nda, 1 << 56)
        ndb = 0
        for o in range(n_out):
            ndb += db[s, o] * db[s, o]
        ndb = min(ndb, 1 << 56)
        g = _sat(_div(d * lg, nda * nb), 1 << 38)
        for i in range(n):
            kh[s, i] = _sat(_rsr(g * da[s, i], 8), 1 << 33)
        lgo = lg
        if cap:
            nx = 0
            for j in range(n):
                nx += xh[s, j] * xh[s, j]
            if nx > 0:
                c = _div(1 << 55, nx)
                if c < lgo:
                    lgo = c
        go = _sat(_div(d * lgo, ndb * nb), 1 << 38)
        for o in range(n_out):
            ko[s, o] = _sat(_rsr(go * db[s, o], 8), 1 << 33)
    acc = np.empty(max(n, n_in), np.int64)
    _apply(A, kh, u, acc)
    _apply(R, kh, xh_prev, acc)
    _apply(B, ko, xh, acc)


@njit(inline="always")
def _apply(W, k, pre, acc):
    """W[i, j] = sat32(W[i, j] - rsr(sum_s k[s, i] · pre[s, j], 24)), row by row."""
    nb = k.shape[0]
    cols = W.shape[1]
    for i in range(W.shape[0]):
        for j in range(cols):
            acc[j] = 0
        for s in range(nb):
            ks = k[s, i]
            for j in range(cols):
                acc[j] += ks * pre[s, j]
        for j in range(cols):
            W[i, j] = _sat32(W[i, j] - _rsr(acc[j], 24))


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel now, not at the first STEP."""
    z = np.zeros((1, 1), np.int64)
    fill_noise(1, 0, 1, np.zeros(1, np.int64))
    forward_pair(z, z, z, z, False, z, z, z, z, z, z, z, TANH_TABLE, z.copy(), z.copy(),
                 z.copy(), z.copy(), z.copy(), z.copy())  # fmt: skip
    anp_update(z.copy(), z.copy(), z.copy(), np.zeros(1, np.int64), z, z, z, z, z, 1, True,
               z.copy(), z.copy())  # fmt: skip
