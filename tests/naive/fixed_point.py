"""A C-style transcription of the firmware's arithmetic, written from docs/protocol.md §6.

Scalar loops over Python ints, in the order a C loop would run (the stability guard of §6.7
included), with every intermediate checked against the C type it would have (int32 for
stored values, int64 for accumulators and products, uint32 for the generator; uint64 for
the products lr_q·gain_q, lrh_q·gain_q and for the counters, which wrap). Python ints
never wrap, so a value that would overflow in C raises here instead of silently wrapping
as NumPy's int64 would: equality with :class:`twinpass.firmware_sim.fixed_point.FixedNet`
then shows both that the vectorised simulator computes what the document says and that
the document's bounds hold.
"""

from __future__ import annotations

import math

I64 = 1 << 63
I32 = 1 << 31
M32 = 0xFFFFFFFF


class Overflow(AssertionError):
    pass


def c64(v: int) -> int:
    if not -I64 <= v < I64:
        raise Overflow(f"int64 overflow: {v}")
    return v


def cu64(v: int) -> int:
    if not 0 <= v < 1 << 64:
        raise Overflow(f"uint64 overflow: {v}")
    return v


def c32(v: int) -> int:
    if not -I32 <= v < I32:
        raise Overflow(f"int32 overflow: {v}")
    return v


def rsr(v: int, s: int) -> int:
    return c64(c64(v + (1 << (s - 1))) >> s)


def sat(v: int, lim: int) -> int:
    return -lim if v < -lim else lim if v > lim else v


def sat32(v: int) -> int:
    return -I32 if v < -I32 else I32 - 1 if v > I32 - 1 else v


def div(n: int, d: int) -> int:
    """C99 truncating division, 0 when d == 0."""
    if d == 0:
        return 0
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d > 0) else -q


def lowbias32(x: int) -> int:
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


TANH = [math.floor(math.tanh(k / 128.0) * 65536 + 0.5) for k in range(1025)]


def tanh_q16(a: int) -> int:
    m = abs(a)
    if m >= 8 << 16:
        y = 65536
    else:
        i, f = m >> 9, m & 511
        y = TANH[i] + (((TANH[i + 1] - TANH[i]) * f + 256) >> 9)
    return -y if a < 0 else y


# The guard's exp2 table (§6.7): 2**(-2**-(k+1)) in Q30.
EXP2 = [math.floor(2.0 ** (-(2.0 ** -(k + 1))) * (1 << 30) + 0.5) for k in range(16)]


def log2_q16(x: int) -> int:
    n = x.bit_length() - 1
    y = x >> (n - 30) if n >= 30 else x << (30 - n)
    r = 0
    for _ in range(16):
        y = c64(y * y + (1 << 29)) >> 30
        r <<= 1
        if y >= 1 << 31:
            y >>= 1
            r |= 1
    return (n << 16) + r


def exp2_neg_q30(x: int) -> int:
    q, f = x >> 16, x & 0xFFFF
    y = 1 << 30
    for k in range(16):
        if f & (1 << (15 - k)):
            y = rsr(c64(y * EXP2[k]), 30)
    return y if q == 0 else (0 if q > 62 else rsr(y, q))


def guard_vector(n: int) -> list[int]:
    return [-(1 << 19) if ((i * 0x9E3779B1) & M32) >> 31 else 1 << 19 for i in range(n)]


class CNet:
    """One device: weights as lists of lists of ints, both replicas, the generator."""

    def __init__(self, A, R, B, D, hyper, batch: int, seed: int) -> None:
        self.A = [[int(v) for v in row] for row in A]
        self.R = [[int(v) for v in row] for row in R]
        self.B = [[int(v) for v in row] for row in B]
        self.D = None if D is None else [[int(v) for v in row] for row in D]
        self.h = hyper
        self.nb = batch
        self.n = len(self.R)
        self.n_in = len(self.A[0])
        self.n_out = len(self.B)
        self.key = lowbias32(seed ^ 0x9E3779B9)
        self.p = 0
        self.counter = 0
        self.total = 0
        self.gv = guard_vector(self.n)
        self.projections = 0
        self.xh1 = [[0] * self.n for _ in range(batch)]
        self.xh2 = [[0] * self.n for _ in range(batch)]
        f = len(self.B[0])
        self.P = [[hyper.p0_q if i == j else 0 for j in range(f)] for i in range(f)]
        self.rls_resets = 0

    def word(self, p: int) -> int:
        return lowbias32(lowbias32((p & M32) ^ self.key) ^ ((p >> 32) & M32))

    def sample(self) -> int:
        w0, w1 = self.word(self.p), self.word(self.p + 1)
        self.p = (self.p + 2) & ((1 << 64) - 1)  # u64 word index, wrapping
        g = (w0 & 0xFFFF) + (w0 >> 16) + (w1 & 0xFFFF) + (w1 >> 16) - 131070
        return rsr(c64(c64(g * 113512) * self.h.sigma_q), 32)

    def hidden(self, x: list[int], prev: list[int]) -> list[int]:
        v = x
        if self.D is not None:
            v = [sat(rsr(self._dot(self.D[i], x), 24), 1 << 20) for i in range(self.n)]
        a = self.h.leak_q
        return [c32(prev[i] + rsr(c64(a * (v[i] - prev[i])), 16)) for i in range(self.n)]

    def features(self, xh: list[int], u: list[int]) -> list[int]:
        return xh + u + [1 << 16] if self.h.readout_inputs else xh

    @staticmethod
    def _dot(row: list[int], v: list[int], acc: int = 0) -> int:
        for w, x in zip(row, v, strict=True):
            acc = c64(acc + c64(w * x))
        return acc

    def guard(self) -> None:
        """§6.7, loop by loop."""
        n = self.n
        v = self.gv = self.gv if any(self.gv) else guard_vector(n)
        n0 = sum(c64(x * x) for x in v)
        w = v
        shifts = 0
        for _ in range(32):
            w = [rsr(self._dot(self.R[i], w), 24) for i in range(n)]
            m = max(abs(x) for x in w)
            if m == 0:
                return
            s = m.bit_length() - 20
            w = [rsr(x, s) for x in w] if s > 0 else [c64(x << -s) for x in w]
            shifts += s
        n1 = sum(c64(x * x) for x in w)
        lr = 2 * (shifts << 16) + log2_q16(n1) - log2_q16(n0)
        lb = 64 * (log2_q16(self.h.bound_q) - (16 << 16))
        self.gv = w
        if lr > lb:
            scale = exp2_neg_q30(rsr(lr - lb, 6))
            self.R = [[rsr(c64(r * scale), 30) for r in row] for row in self.R]
            self.projections += 1

    def step(self, U: list[list[int]], Y: list[list[int]], learn: bool):
        h, nb, n, no = self.h, self.nb, self.n, self.n_out
        n_z = no if h.readout == 0 else 0  # output noise only with the rule's own readout
        xi2 = [[self.sample() for _ in range(n)] for _ in range(nb)]
        z2 = [[self.sample() for _ in range(n_z)] + [0] * (no - n_z) for _ in range(nb)]
        if h.two_noisy:
            xi1 = [[self.sample() for _ in range(n)] for _ in range(nb)]
            z1 = [[self.sample() for _ in range(n_z)] + [0] * (no - n_z) for _ in range(nb)]
        else:
            xi1 = [[0] * n for _ in range(nb)]
            z1 = [[0] * no for _ in range(nb)]
        if h.resync_every and self.counter % h.resync_every == 0:
            self.xh2 = [row[:] for row in self.xh1]
        if learn and h.bound_q and self.total and self.total % h.guard_every == 0:
            self.guard()
        U = [[sat(v, 1 << 23) for v in row] for row in U]
        Y = [[sat(v, 1 << 23) for v in row] for row in Y]
        xp = [[], []]
        xhn = [[], []]
        bo = [[], []]
        for s in range(nb):
            for r, (xh, xi, z) in enumerate(((self.xh1, xi1, z1), (self.xh2, xi2, z2))):
                a = [
                    sat32(rsr(self._dot(self.R[i], xh[s], self._dot(self.A[i], U[s])), 24))
                    for i in range(n)
                ]
                p = [c32(sat32(a[i] + xi[s][i])) for i in range(n)]
                x = self.hidden([tanh_q16(v) for v in p], xh[s])
                f = self.features(x, U[s])
                b = [
                    c32(sat32(sat32(rsr(self._dot(self.B[o], f), 24)) + z[s][o])) for o in range(no)
                ]
                xp[r].append(p)
                xhn[r].append(x)
                bo[r].append(b)
        losses = [[], []]
        for r in range(2):
            for s in range(nb):
                tot = 0
                for o in range(no):
                    e = sat(bo[r][s][o] - Y[s][o], 1 << 23)
                    tot = c64(tot + e * e)
                losses[r].append(tot // no)
        if learn:
            self._update(losses, xp, bo, U, Y, xhn[0])
        self.xh1, self.xh2 = xhn[0], xhn[1]
        self.counter = (self.counter + 1) & ((1 << 64) - 1)  # u64, wrapping
        self.total = (self.total + 1) & ((1 << 64) - 1)
        if learn and h.decorrelation:
            self._decorrelate(self.xh1)
        return bo[0], sum(losses[0]) // nb, sum(losses[1]) // nb

    def _update(self, losses, xp, bo, U, Y, xh_new) -> None:
        h, nb, n, no = self.h, self.nb, self.n, self.n_out
        f1 = [self.features(xh_new[s], U[s]) for s in range(nb)]
        # The one uint64 product (§6.5): u32 · u32 + 2**23 < 2**64, rounded, then clamped.
        lg = min(cu64(cu64(h.lr_q * h.gain_q) + (1 << 23)) >> 24, 1 << 24)
        lgh = min(cu64(cu64(h.lrh_q * h.gain_q) + (1 << 23)) >> 24, 1 << 24)
        if h.readout != 0:
            nbh = 0
            for o in range(no):
                for j in range(n):
                    b = rsr(self.B[o][j], 8)
                    nbh = min(c64(nbh + c64(b * b)), 1 << 61)
            lgh = div(c64(lgh << 32), c64((1 << 32) + nbh))
        kh, ko = [], []
        for s in range(nb):
            dl = sat(losses[1][s] - losses[0][s], 1 << 38)
            da = [sat(xp[1][s][i] - xp[0][s][i], 1 << 23) for i in range(n)]
            db = [sat(bo[1][s][o] - bo[0][s][o], 1 << 23) for o in range(no)]
            nda = min(sum(v * v for v in da), 1 << 56)
            ndb = min(sum(v * v for v in db), 1 << 56)
            g = sat(div(c64(dl * lgh), c64(nda * nb)), 1 << 38)
            kh.append([sat(rsr(c64(g * v), 8), 1 << 33) for v in da])
            nf = c64(sum(c64(v * v) for v in f1[s]))
            if h.readout == 2:
                ko.append([0] * no)  # RLS: B below, stream by stream (§6.8)
            elif h.readout == 0:
                lgo = lg
                if h.output_cap and nf > 0:
                    lgo = min(lg, div(1 << 55, nf))
                go = sat(div(c64(dl * lgo), c64(ndb * nb)), 1 << 38)
                ko.append([sat(rsr(c64(go * v), 8), 1 << 33) for v in db])
            else:
                den = c64(c64(min(nf, 1 << 56) + 4295) * nb)
                es = [sat(bo[0][s][o] - Y[s][o], 1 << 23) for o in range(no)]
                ko.append([sat(div(c64(c64(h.mu_q * e) * (1 << 22)), den), 1 << 33) for e in es])

        def apply(W, k, pre, rows, cols, shift=24):
            for i in range(rows):
                for j in range(cols):
                    acc = 0
                    for s in range(nb):
                        acc = c64(acc + c64(k[s][i] * pre[s][j]))
                    W[i][j] = sat32(W[i][j] - rsr(acc, shift))

        apply(self.A, kh, U, n, self.n_in)
        apply(self.R, kh, self.xh1, n, n)
        if h.readout == 2:
            for s in range(nb):
                self._rls(f1[s], Y[s])
        else:
            apply(self.B, ko, f1, no, len(f1[0]), 24 if h.readout == 0 else 14)

    def _rls(self, f: list[int], y: list[int]) -> None:
        """§6.8 for one stream, loop by loop."""
        P, F, h = self.P, len(f), self.h
        lam24 = (1 << 56) // ((1 << 32) + h.im1_q)
        g = []
        hit = False
        for i in range(F):
            acc = 0
            for j in range(F):
                acc = c64(acc + rsr(c64(P[i][j] * f[j]), 16))
            hit |= abs(acc) > I32 - 1
            g.append(sat32(acc))
        c = lam24
        for j in range(F):
            c = c64(c + rsr(c64(f[j] * g[j]), 16))
        if c <= 0:
            self._rls_reset()
            return
        kw = [div(c64(g[i] << 24), c) for i in range(F)]
        k = [sat32(v) for v in kw]
        hit |= k != kw
        for o in range(self.n_out):
            e = sat(sat32(rsr(self._dot(self.B[o], f), 24)) - y[o], 1 << 23)
            for j in range(F):
                self.B[o][j] = sat32(self.B[o][j] - rsr(c64(k[j] * e), 16))
        for i in range(F):
            for j in range(i, F):
                q = sat32(P[i][j] - rsr(c64(k[i] * g[j]), 24))
                p = c64(q + rsr(c64(q * h.im1_q), 32))
                hit |= not -I32 <= p < I32
                P[i][j] = P[j][i] = sat32(p)
        if hit or any(P[i][i] <= 0 for i in range(F)):
            self._rls_reset()

    def _rls_reset(self) -> None:
        F = len(self.P)
        self.P = [[self.h.p0_q if i == j else 0 for j in range(F)] for i in range(F)]
        self.rls_resets += 1

    def _decorrelate(self, xh) -> None:
        nb, n, D = self.nb, self.n, self.D
        eps_nb = self.h.eps_q // nb
        tmp = [
            [sat(rsr(sum(c64(xh[s][i] * D[i][j]) for i in range(n)), 24), 1 << 24)
             for j in range(n)]
            for s in range(nb)
        ]  # fmt: skip
        q = [rsr(sum(xh[s][i] ** 2 for s in range(nb)), 16) for i in range(n)]
        new = [[0] * n for _ in range(n)]
        for i in range(n):
            for j in range(n):
                m = c64(
                    c64(sum(c64(xh[s][i] * tmp[s][j]) for s in range(nb)) * 256) - q[i] * D[i][j]
                )
                m24 = sat(rsr(m, 16), 1 << 30)
                new[i][j] = sat32(D[i][j] - rsr(c64(eps_nb * m24), 32))
        self.D = new
