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
    A, R, B, D, has_d, leak, inputs, xh1, xh2, u, xi1, xi2, z1, z2, table,
    xp1, xp2, xn1, xn2, b1, b2,
):  # fmt: skip
    """§6.4 for both replicas and every stream; fills xp*, xn* (new states), b*.

    ``leak``: α in Q16; ``inputs``: the readout sees [xh, u, 1] (B is n_out x (N+n_in+1)).
    Returns the number of values of D x at the ±16 clamp (STATS ``saturations``).
    """
    nb, n = xh1.shape
    n_in = A.shape[1]
    n_out = B.shape[0]
    x1 = np.empty(n, np.int64)
    x2 = np.empty(n, np.int64)
    clamped = 0
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
            v1 = x1[i]
            v2 = x2[i]
            if has_d:
                d1 = 0
                d2 = 0
                for j in range(n):
                    d1 += D[i, j] * x1[j]
                    d2 += D[i, j] * x2[j]
                v1 = _sat(_rsr(d1, 24), 1 << 20)
                v2 = _sat(_rsr(d2, 24), 1 << 20)
                clamped += (v1 >= 1 << 20 or v1 <= -(1 << 20)) + (v2 >= 1 << 20 or v2 <= -(1 << 20))
            xn1[s, i] = xh1[s, i] + _rsr(leak * (v1 - xh1[s, i]), 16)
            xn2[s, i] = xh2[s, i] + _rsr(leak * (v2 - xh2[s, i]), 16)
        for o in range(n_out):
            c1 = 0
            c2 = 0
            for j in range(n):
                c1 += B[o, j] * xn1[s, j]
                c2 += B[o, j] * xn2[s, j]
            if inputs:
                # Both replicas read the same input and bias columns.
                cu = B[o, n + n_in] << 16
                for j in range(n_in):
                    cu += B[o, n + j] * u[s, j]
                c1 += cu
                c2 += cu
            b1[s, o] = _sat32(_sat32(_rsr(c1, 24)) + z1[s, o])
            b2[s, o] = _sat32(_sat32(_rsr(c2, 24)) + z2[s, o])
    return clamped


@njit(cache=True)
def update(
    A, R, B, dl, da, db, u, xh_prev, f, lg, lgh, cap, readout, mu, b1, ystar, kh, ko,
):  # fmt: skip
    """§6.5: A, R, B in place from per-stream dl, da, db; f (nb, F) replica 1's features;
    readout 0: B by ANP's estimate (step lg), 1: NLMS (step mu, from b1 and ystar), 2: B
    left to :func:`rls_update`; the hidden step lgh, divided by 1 + ‖B_h‖² with an exact
    readout. kh (nb, N), ko (nb, n_out) scratch."""
    nb, n = da.shape
    n_out = db.shape[1]
    F = f.shape[1]
    if readout != 0:
        nbh = 0
        for o in range(n_out):
            for j in range(n):
                b = _rsr(B[o, j], 8)
                nbh = min(nbh + b * b, 1 << 61)
        lgh = _div(lgh << 32, (1 << 32) + nbh)
    for s in range(nb):
        d = _sat(dl[s], 1 << 38)
        nda = 0
        for i in range(n):
            nda += da[s, i] * da[s, i]
        nda = min(nda, 1 << 56)
        g = _sat(_div(d * lgh, nda * nb), 1 << 38)
        for i in range(n):
            kh[s, i] = _sat(_rsr(g * da[s, i], 8), 1 << 33)
        nf = 0
        for j in range(F):
            nf += f[s, j] * f[s, j]
        if readout == 0:
            ndb = 0
            for o in range(n_out):
                ndb += db[s, o] * db[s, o]
            ndb = min(ndb, 1 << 56)
            lgo = lg
            if cap and nf > 0:
                c = _div(1 << 55, nf)
                if c < lgo:
                    lgo = c
            go = _sat(_div(d * lgo, ndb * nb), 1 << 38)
            for o in range(n_out):
                ko[s, o] = _sat(_rsr(go * db[s, o], 8), 1 << 33)
        elif readout == 1:
            den = (min(nf, 1 << 56) + 4295) * nb
            for o in range(n_out):
                e = _sat(b1[s, o] - ystar[s, o], 1 << 23)
                ko[s, o] = _sat(_div(mu * e * (1 << 22), den), 1 << 33)
    acc = np.empty(max(n, u.shape[1], F), np.int64)
    _apply(A, kh, u, acc, 24)
    _apply(R, kh, xh_prev, acc, 24)
    if readout != 2:
        _apply(B, ko, f, acc, 24 if readout == 0 else 14)


@njit(cache=True)
def rls_update(P, B, f, ystar, lam24, im1, p0, g, k):
    """§6.8: the RLS readout stream by stream, P (F, F) and B in place from replica 1's
    features f (nb, F) and the saturated targets ystar (nb, n_out); g, k (F,) scratch.
    Returns the number of resets of P."""
    nb, F = f.shape
    n_out = B.shape[0]
    resets = 0
    for s in range(nb):
        hit = False
        for i in range(F):
            acc = 0
            for j in range(F):
                acc += _rsr(P[i, j] * f[s, j], 16)
            if acc > 2147483647 or acc < -2147483647:
                hit = True
            g[i] = _sat32(acc)
        c = lam24
        for j in range(F):
            c += _rsr(f[s, j] * g[j], 16)
        if c <= 0:
            _rls_reset(P, p0)
            resets += 1
            continue
        for i in range(F):
            kw = _div(g[i] << 24, c)
            k[i] = _sat32(kw)
            if k[i] != kw:
                hit = True
        for o in range(n_out):
            acc = 0
            for j in range(F):
                acc += B[o, j] * f[s, j]
            e = _sat(_sat32(_rsr(acc, 24)) - ystar[s, o], 1 << 23)
            for j in range(F):
                B[o, j] = _sat32(B[o, j] - _rsr(k[j] * e, 16))
        for i in range(F):
            for j in range(i, F):
                q = _sat32(P[i, j] - _rsr(k[i] * g[j], 24))
                p = q + _rsr(q * im1, 32)
                if p > 2147483647 or p < -2147483648:
                    hit = True
                p = _sat32(p)
                P[i, j] = p
                P[j, i] = p
        for i in range(F):
            if P[i, i] <= 0:
                hit = True
        if hit:
            _rls_reset(P, p0)
            resets += 1
    return resets


@njit(inline="always")
def _rls_reset(P, p0):
    """P <- p0 I."""
    for i in range(P.shape[0]):
        for j in range(P.shape[1]):
            P[i, j] = 0
        P[i, i] = p0


@njit(inline="always")
def _apply(W, k, pre, acc, shift):
    """W[i, j] = sat32(W[i, j] - rsr(sum_s k[s, i] · pre[s, j], shift)), row by row."""
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
            W[i, j] = _sat32(W[i, j] - _rsr(acc[j], shift))


def warm_up() -> None:
    """Compile (or load from Numba's cache) every kernel now, not at the first STEP."""
    z = np.zeros((1, 1), np.int64)
    fill_noise(1, 0, 1, np.zeros(1, np.int64))
    forward_pair(z, z, z, z, False, 1 << 16, False, z, z, z, z, z, z, z, TANH_TABLE,
                 z.copy(), z.copy(), z.copy(), z.copy(), z.copy(), z.copy())  # fmt: skip
    update(z.copy(), z.copy(), z.copy(), np.zeros(1, np.int64), z, z, z, z, z, 1, 1, True, 0,
           1, z, z, z.copy(), z.copy())  # fmt: skip
    one = np.zeros(1, np.int64)
    rls_update(z.copy(), z.copy(), z, z, 1 << 24, 0, 1 << 24, one, one.copy())
