"""The on-device network and ANP learner in integer fixed point, bit-exactly specified.

This is the firmware's arithmetic (docs/protocol.md §6), written as NumPy int64 expressions
using only operations a C port on a Cortex-M4 reproduces bit for bit: integer multiply,
add, arithmetic shift, truncating division, comparisons and a table. By default
:class:`FixedNet` runs the step through the compiled loops of :mod:`.fast` (the same
arithmetic, faster); ``compiled=False`` runs these expressions; the tests hold both equal.
No float touches the device path: the host's conversions (floats to the wire's Q formats,
a rule to its fixed-point hyperparameters) live in ``twinpass.protocol``, the tanh table
in :mod:`.tanh_table`.

Formats:

- activities (inputs u, targets y*, pre-activations a, hidden x and xh, outputs b): Q16.16
  in int32 (value = q / 2**16); inputs and targets are saturated to ±2**23 (±128), hidden
  states xh to ±2**20 (±16) when D is stored (else tanh bounds them to ±2**16) so that no
  int64 accumulator can overflow (§6.1); STATE_SET refuses states beyond that bound;
- weights A, R, B, D: Q7.24 in int32 (value = q / 2**24, range ±128);
- losses and squared norms: Q32 in int64.

Why int32 weights rather than int16: one ANP update moves a weight by lr·gain·dl·da/‖da‖²·u,
about 1e-6 to 1e-4 at the default lr 1e-3; int16 Q3.12 has a step of 2.4e-4, so nearly
every update would round to zero. Q7.24's step (6e-8) keeps them to within a percent.

Every dot product is accumulated exactly in int64 (the bounds in §6.2 guarantee no
overflow), so the summation order does not matter and NumPy's matmul and a C loop agree.
Rounding after a product is ``rshift_round(v, s) = (v + 2**(s-1)) >> s`` (round half up,
arithmetic shift); division truncates toward zero as C's ``/`` does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.protocol.hyper import READOUT_ANP, READOUT_RLS, Hyper
from twinpass.protocol.qformat import (
    A_FRAC,
    I32_MAX,
    I32_MIN,
    IO_LIMIT,
    MAX_BATCH,
    ONE_A,
    ONE_W,
    W_FRAC,
)

from . import fast, guard
from .integer import div_trunc, rshift_round, sat, sat32
from .tanh_table import TANH_MASK, TANH_SHIFT, TANH_SIZE, TANH_TABLE

U64_MAX = (1 << 64) - 1  # the step counter and the noise counter are u64 (§6.3)
XH_LIMIT = 1 << 20  # |xh| <= 16
DIFF_LIMIT = 1 << 23  # |da|, |db|, |e| <= 128
DL_LIMIT = 1 << 38  # |dl| <= 64 (Q32)
NORM_LIMIT = 1 << 56  # squared norms (Q32)
G_LIMIT = 1 << 38  # |lr·gain·dl/‖d‖²| (Q24)
K_LIMIT = 1 << 33  # |per-unit coefficient| <= 2 (Q32)
LG_LIMIT = 1 << 24  # lr·gain <= 1 (Q24)
TMP_LIMIT = 1 << 24  # |xhᵀD| <= 256 (Q16), decorrelation
M_LIMIT = 1 << 30  # |offdiag(xh xhᵀ) D| <= 64 (Q24), decorrelation
CAP_NUM = 1 << 55  # 0.5 / ‖xh‖² in Q24 is CAP_NUM // ‖xh‖²(Q32)
BH_LIMIT = 1 << 61  # ‖B_h‖² (Q32), the exact readout's normalisation of the hidden step
NLMS_DELTA_Q = 4295  # NLMS's δ = 1e-6 in Q32 (docs/design.md §4.2)
GV_LIMIT = 1 << 20  # the guard's vector (§6.7)

# -- tanh by table ---------------------------------------------------------------------------


def tanh_q16(a: np.ndarray) -> np.ndarray:
    """tanh of Q16 values by table with linear interpolation; result in [-65536, 65536].

    ``m = |a|`` (a is int32, so |a| <= 2**31 fits int64); ``m >= 8·2**16`` gives 65536;
    else ``i = m >> 9, f = m & 511, y = T[i] + ((T[i+1] - T[i])·f + 256) >> 9``; the sign of a
    is applied last (tanh is odd, so the table's error is too).
    """
    a = np.asarray(a, dtype=np.int64)
    m = np.abs(a)
    big = m >= (TANH_SIZE - 1) << TANH_SHIFT
    mc = np.where(big, 0, m)
    i = mc >> TANH_SHIFT
    f = mc & TANH_MASK
    t0 = TANH_TABLE[i]
    t1 = TANH_TABLE[np.minimum(i + 1, TANH_SIZE - 1)]
    y = t0 + (((t1 - t0) * f + (1 << (TANH_SHIFT - 1))) >> TANH_SHIFT)
    y = np.where(big, ONE_A, y)
    return np.where(a < 0, -y, y)


# -- the noise generator -----------------------------------------------------------------------

_M32 = 0xFFFFFFFF
_H1 = np.uint32(0x7FEB352D)
_H2 = np.uint32(0x846CA68B)
_SQRT3_Q16 = 113512  # round(sqrt(3) · 2**16)
_IH_OFFSET = 4 * 0xFFFF // 2  # 131070: mean of a sum of four 16-bit uniforms


def lowbias32(x: np.ndarray) -> np.ndarray:
    """Wellons' lowbias32 integer hash on uint32 (wrapping multiply)::

    x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16
    """
    x = np.asarray(x, dtype=np.uint32).copy()
    x ^= x >> np.uint32(16)
    x *= _H1
    x ^= x >> np.uint32(15)
    x *= _H2
    x ^= x >> np.uint32(16)
    return x


@functools.lru_cache(maxsize=64)
def seed_key(seed: int) -> int:
    """The generator's key: ``lowbias32(seed ^ 0x9e3779b9)``."""
    return int(lowbias32(np.array([(int(seed) ^ 0x9E3779B9) & _M32], np.uint32))[0])


def noise_words(seed: int, counter: int, n: int) -> np.ndarray:
    """Words ``counter .. counter+n-1``: ``w(p) = lowbias32(lowbias32(lo ^ key) ^ hi)``.

    ``p`` is a u64 word index, ``lo``/``hi`` its low and high 32 bits. Counter-based: any
    word is a pure function of (seed, p), so the state is two integers and the stream does
    not depend on how steps are grouped.
    """
    p = np.uint64(counter) + np.arange(n, dtype=np.uint64)
    lo = (p & np.uint64(_M32)).astype(np.uint32)
    hi = (p >> np.uint64(32)).astype(np.uint32)
    return lowbias32(lowbias32(lo ^ np.uint32(seed_key(seed))) ^ hi)


def gaussian_q16(seed: int, counter: int, n: int, sigma_q: int) -> np.ndarray:
    """n approximately normal samples of standard deviation sigma (Q16); uses 2n words.

    Sample k takes words ``w0 = w(counter+2k)``, ``w1 = w(counter+2k+1)``:
    ``g = lo16(w0) + hi16(w0) + lo16(w1) + hi16(w1) - 131070`` (Irwin-Hall with four terms,
    standard deviation 2**16/sqrt(3), bounded at ±3.46 sd), then
    ``noise = (g · 113512 · sigma_q + 2**31) >> 32``.
    """
    if n == 0:
        return np.zeros(0, np.int64)
    w = noise_words(seed, counter, 2 * n).astype(np.int64).reshape(n, 2)
    g = (w & 0xFFFF).sum(axis=1) + (w >> 16).sum(axis=1) - _IH_OFFSET
    return rshift_round(g * _SQRT3_Q16 * int(sigma_q), 32)


# -- hyperparameters ---------------------------------------------------------------------------


def lr_gain_q(hyper: Hyper) -> int:
    """lr·gain in Q24: ``min((lr_q · gain_q + 2**23) >> 24, 2**24)`` (§6.5).

    The one product formed in uint64 rather than int64: two u32 factors give less than
    2**64 - 2**33 + 2, so the product and the rounding term fit a uint64 exactly; Python's
    int computes the same value.
    """
    return min(rshift_round(int(hyper.lr_q) * int(hyper.gain_q), 24), LG_LIMIT)


def hidden_gain_q(hyper: Hyper) -> int:
    """lr_h·gain in Q24, formed as :func:`lr_gain_q` (the hidden layer's step, §6.5)."""
    return min(rshift_round(int(hyper.lrh_q) * int(hyper.gain_q), 24), LG_LIMIT)


def rls_lambda_q24(hyper: Hyper) -> int:
    """RLS's λ in Q24 from its ``im1_q = 1/λ − 1`` (Q32): ``2**56 // (2**32 + im1_q)`` (§6.8)."""
    return (1 << 56) // ((1 << 32) + int(hyper.im1_q))


def rls_stream(P: np.ndarray, B: np.ndarray, f: np.ndarray, ystar: np.ndarray, hyper: Hyper) -> int:
    """One stream's RLS readout step (docs/protocol.md §6.8) on P (F, F) and B (n_out, F) in
    place, from replica 1's features f (F,) and the saturated targets (n_out,); returns the
    number of resets of P (0 or 1)."""
    g = rshift_round(P * f[None, :], 16).sum(axis=1)
    hit = bool((np.abs(g) > I32_MAX).any())
    g = sat32(g)
    c = rls_lambda_q24(hyper) + int(rshift_round(f * g, 16).sum())
    if c <= 0:
        rls_reset(P, hyper)
        return 1
    k = div_trunc(g << 24, np.full_like(g, c))
    hit |= bool(((k > I32_MAX) | (k < I32_MIN)).any())
    k = sat32(k)  # an indefinite P can make c small: k e and k g stay within int64
    e = sat(sat32(rshift_round(B @ f, W_FRAC)) - ystar, DIFF_LIMIT)
    B[:] = sat32(B - rshift_round(e[:, None] * k[None, :], 16))
    q = sat32(P - rshift_round(k[:, None] * g[None, :], 24))
    new = q + rshift_round(q * int(hyper.im1_q), 32)
    upper = np.triu(np.ones(P.shape, bool))
    hit |= bool((((new > I32_MAX) | (new < I32_MIN)) & upper).any())
    new = np.triu(sat32(new))
    P[:] = new + np.triu(new, 1).T  # one triangle, mirrored: P stays symmetric bit for bit
    if hit or (np.diag(P) <= 0).any():
        rls_reset(P, hyper)
        return 1
    return 0


def rls_reset(P: np.ndarray, hyper: Hyper) -> None:
    """``P <- p0 I`` in place (§6.8)."""
    P[:] = 0
    np.fill_diagonal(P, int(hyper.p0_q))


def readout_norm_q32(B: np.ndarray, n: int) -> int:
    """``1 + ‖B_h‖²_F`` in Q32 over B's hidden columns (the first n): ``2**32 + min(Σ
    rsr(B_oj, 8)², 2**61)``. The terms are non-negative, so the clamped sum is the same
    whatever the order of summation (a running sum clamped after each term equals it)."""
    b16 = rshift_round(np.asarray(B, np.int64)[:, :n], 8)
    return (1 << 32) + min(int((b16 * b16).sum()), BH_LIMIT)


# -- the reward variant's losses (host and device compute them alike) --------------------------


def stream_losses(y: np.ndarray, target: np.ndarray, n_out: int) -> np.ndarray:
    """Per-stream Q32 losses of Q16 outputs ``y`` (nb, n_out) against targets, as the device
    computes them (§6.4): ``sum_o sat(y - y*, 2**23)² // n_out``."""
    t = sat(np.asarray(target, np.int64), IO_LIMIT)
    e = sat(np.asarray(y, np.int64) - t, DIFF_LIMIT)
    return (e * e).reshape(-1, n_out).sum(axis=1) // n_out


def reward_dl(y1: np.ndarray, y2: np.ndarray, target: np.ndarray, n_out: int) -> np.ndarray:
    """The reward variant's dl per stream (Q32) from STEP's ``y_hat``, ``y_hat_2``: sending it
    in REWARD gives exactly the update of STEP with ``target``."""
    return stream_losses(y2, target, n_out) - stream_losses(y1, target, n_out)


# -- the network -------------------------------------------------------------------------------


@dataclass
class Pending:
    """A reward-variant step waiting for its dl: everything the update needs."""

    t: int
    da: np.ndarray
    db: np.ndarray
    u: np.ndarray
    xh_prev: np.ndarray
    xh: np.ndarray


@dataclass
class StepOut:
    y1: np.ndarray  # (nb, n_out) replica 1's output (the prediction)
    y2: np.ndarray  # (nb, n_out) replica 2's output
    loss1: int  # mean over outputs and batch, Q32
    loss2: int
    applied: bool


@dataclass
class FixedNet:
    """Parameters, both replicas' hidden states and the noise counter of one device.

    A (N, n_in), R (N, N), B (n_out, F): Q24 int64 arrays holding int32 values, F = N + n_in
    + 1 when the readout sees [xh, u, 1] (``hyper.readout_inputs``), else N; D (N, N) or
    None for the identity. xh1, xh2 (nb, N): the replicas' hidden states; xh_eval: the
    evaluation state of :meth:`predict`. counter: steps since the last state reset (drives
    resync); rng_counter: the next noise word; total: steps over the model's life (drives
    the guard); gv: the guard's warm-start vector.
    """

    A: np.ndarray
    R: np.ndarray
    B: np.ndarray
    D: np.ndarray | None
    hyper: Hyper = field(default_factory=Hyper)
    batch: int = 1
    seed: int = 0
    stats: dict[str, int] = field(
        default_factory=lambda: {"saturations": 0, "guard_projections": 0, "rls_resets": 0}
    )
    compiled: bool = True  # the loop kernels of .fast; False: the NumPy expressions

    def __post_init__(self) -> None:
        # Own copies: the compiled update works in place.
        self.A = np.array(self.A, np.int64)
        self.R = np.array(self.R, np.int64)
        self.B = np.array(self.B, np.int64)
        n = self.R.shape[0]
        n_in = self.A.shape[1] if self.A.ndim == 2 else 0
        f = n + (n_in + 1 if self.hyper.readout_inputs else 0)
        if self.R.shape != (n, n) or self.A.shape[0] != n or self.B.shape[1:] != (f,):
            raise ShapeError(
                f"inconsistent shapes A {self.A.shape}, R {self.R.shape}, B {self.B.shape}: "
                f"B must be n_out x {f}"
            )
        self.n_in, self.n, self.n_out, self.n_features = n_in, n, self.B.shape[0], f
        if self.D is not None:
            self.D = np.array(self.D, np.int64)
            if self.D.shape != (n, n):
                raise ShapeError(f"D has shape {self.D.shape}, expected {(n, n)}")
        if self.hyper.decorrelation and self.D is None:
            self.D = np.eye(n, dtype=np.int64) * ONE_W
        self.rng_counter = 0
        self.total = 0
        self.gv = guard.initial_vector(n)
        # RLS's P (§6.8): the readout's, like B; set at load, kept by reset_state; and
        # the compiled update's g and k (F each), allocated once.
        self.P = None
        if self.hyper.readout == READOUT_RLS:
            self.P = np.empty((f, f), np.int64)
            rls_reset(self.P, self.hyper)
            self._rls_gk = np.empty((2, f), np.int64)
        self.pending: Pending | None = None
        self.set_batch(self.batch)

    # -- state -----------------------------------------------------------------------------

    def set_batch(self, batch: int) -> None:
        if not 1 <= int(batch) <= MAX_BATCH:
            raise ConfigError(f"batch must be in [1, {MAX_BATCH}], got {batch}")
        self.batch = int(batch)
        self.reset_state()

    def reset_state(self) -> None:
        """Zero both replicas' hidden states, the evaluation state and the resync counter
        (the guard's count and vector are the model's, not the sequence's: kept)."""
        self.xh1 = np.zeros((self.batch, self.n), np.int64)
        self.xh2 = np.zeros((self.batch, self.n), np.int64)
        eval_batch = self.xh_eval.shape[0] if hasattr(self, "xh_eval") else 1
        self.xh_eval = np.zeros((eval_batch, self.n), np.int64)
        self.counter = 0
        self.pending = None

    def reseed(self, seed: int) -> None:
        self.seed = int(seed) & _M32
        self.rng_counter = 0

    # -- forward ---------------------------------------------------------------------------

    def _decorrelated(self, x: np.ndarray) -> np.ndarray:
        """``v = D x`` (Q16), clamped to ±16, or x itself when D is the identity."""
        return x if self.D is None else sat(rshift_round(x @ self.D.T, W_FRAC), XH_LIMIT)

    def _leak(self, v: np.ndarray, xh: np.ndarray) -> np.ndarray:
        """The new state ``xh + rsr(α (v − xh), 16)`` from v and the state before, xh
        (exactly v at α = 1)."""
        return xh + rshift_round(self.hyper.leak_q * (v - xh), A_FRAC)

    def _features(self, xh: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The readout's input: [xh, u, 1] (Q16) or xh alone."""
        if not self.hyper.readout_inputs:
            return xh
        one = np.full((xh.shape[0], 1), ONE_A, np.int64)
        return np.concatenate([xh, u, one], axis=1)

    def _count_saturated(self, *xh: np.ndarray) -> None:
        """STATS ``saturations``: values of D x at the ±16 clamp (only D gets them there),
        counted before the leak mixes in the state before."""
        if self.D is not None:
            self.stats["saturations"] += sum(int((np.abs(v) >= XH_LIMIT).sum()) for v in xh)

    def _noise(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        if self.compiled and self.rng_counter + 2 * n < 1 << 63:
            out = np.empty(n, np.int64)
            fast.fill_noise(seed_key(self.seed), self.rng_counter, self.hyper.sigma_q, out)
        else:
            out = gaussian_q16(self.seed, self.rng_counter, n, self.hyper.sigma_q)
        self.rng_counter = (self.rng_counter + 2 * n) & ((1 << 64) - 1)
        return out.reshape(shape)

    def _losses(self, b: np.ndarray, ystar: np.ndarray) -> np.ndarray:
        """Per-stream loss, Q32: ``sum_o e² // n_out`` with e = sat(b - y*, 2**23)."""
        e = sat(b - ystar, DIFF_LIMIT)
        return (e * e).sum(axis=1) // self.n_out

    @property
    def noisy_out(self) -> bool:
        """Output noise is drawn only when the readout learns by the rule's own estimate."""
        return self.hyper.readout == READOUT_ANP

    def forward_pair(
        self, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Both replicas' step: (xp1, xp2, xh1_new, xh2_new, b1, b2); advances the noise."""
        h = self.hyper
        nb, n = self.batch, self.n
        no = self.n_out if self.noisy_out else 0
        # One draw for the step, in the documented order xi2, zeta2 (, xi1, zeta1); zeta
        # only with the rule's own readout.
        noise = self._noise(((2 if h.two_noisy else 1) * nb * (n + no),)).reshape(-1)
        zero_out = np.zeros((nb, self.n_out), np.int64)
        xi2 = noise[: nb * n].reshape(nb, n)
        zeta2 = noise[nb * n : nb * (n + no)].reshape(nb, no) if no else zero_out
        if h.two_noisy:
            xi1 = noise[nb * (n + no) : nb * (2 * n + no)].reshape(nb, n)
            zeta1 = noise[nb * (2 * n + no) :].reshape(nb, no) if no else zero_out
        else:
            xi1 = np.zeros((nb, n), np.int64)
            zeta1 = zero_out
        if h.resync_every > 0 and self.counter % h.resync_every == 0:
            self.xh2 = self.xh1.copy()
        if self.compiled:
            out = [np.empty((nb, n), np.int64) for _ in range(4)]
            b1, b2 = np.empty((nb, self.n_out), np.int64), np.empty((nb, self.n_out), np.int64)
            D = self.D if self.D is not None else np.zeros((1, 1), np.int64)
            clamped = fast.forward_pair(
                self.A, self.R, self.B, D, self.D is not None, h.leak_q, h.readout_inputs,
                self.xh1, self.xh2, np.ascontiguousarray(u), np.ascontiguousarray(xi1),
                np.ascontiguousarray(xi2), np.ascontiguousarray(zeta1),
                np.ascontiguousarray(zeta2), TANH_TABLE, *out, b1, b2,
            )  # fmt: skip
            self.stats["saturations"] += int(clamped)
            return out[0], out[1], out[2], out[3], b1, b2
        au = u @ self.A.T  # Q40, exact
        a1 = sat32(rshift_round(au + self.xh1 @ self.R.T, W_FRAC))
        a2 = sat32(rshift_round(au + self.xh2 @ self.R.T, W_FRAC))
        xp1 = sat32(a1 + xi1)
        xp2 = sat32(a2 + xi2)
        v1, v2 = self._decorrelated(tanh_q16(xp1)), self._decorrelated(tanh_q16(xp2))
        self._count_saturated(v1, v2)
        xh1n, xh2n = self._leak(v1, self.xh1), self._leak(v2, self.xh2)
        f1, f2 = self._features(xh1n, u), self._features(xh2n, u)
        b1 = sat32(sat32(rshift_round(f1 @ self.B.T, W_FRAC)) + zeta1)
        b2 = sat32(sat32(rshift_round(f2 @ self.B.T, W_FRAC)) + zeta2)
        return xp1, xp2, xh1n, xh2n, b1, b2

    # -- one online step ---------------------------------------------------------------------

    def _guard(self) -> None:
        """§6.7 before a learning step whose life count is a positive multiple of
        ``guard_every`` (with a bound set)."""
        h = self.hyper
        if h.bound_q > 0 and self.total > 0 and self.total % h.guard_every == 0:
            self.R, self.gv, scaled = guard.guard(self.R, self.gv, h.bound_q)
            self.stats["guard_projections"] += int(scaled)

    def step(self, u: np.ndarray, ystar: np.ndarray | None, learn: bool, t: int = 0) -> StepOut:
        """One step of both replicas; with a target and ``learn``, the update (§6.5).

        u (nb, n_in), ystar (nb, n_out) Q16 integers (saturated to ±2**23 here). Without a
        target and with ``learn``, the update is held pending for :meth:`reward` (the
        rule's own readout only: NLMS needs the target itself).
        """
        self.pending = None  # an unrewarded step's update is dropped
        if ystar is None and learn and self.hyper.readout != READOUT_ANP:
            raise ConfigError(
                "the reward variant (no target) needs the readout learned by the rule's own "
                f"estimate (readout anp), not {self.hyper.readout_name}: send the target"
            )
        u = sat(np.asarray(u, np.int64).reshape(self.batch, self.n_in), IO_LIMIT)
        if learn:
            self._guard()
        xh_prev = self.xh1
        xp1, xp2, xh1n, xh2n, b1, b2 = self.forward_pair(u)
        da = sat(xp2 - xp1, DIFF_LIMIT)
        db = sat(b2 - b1, DIFF_LIMIT)
        applied = False
        l1 = l2 = 0
        if ystar is not None:
            ys = sat(np.asarray(ystar, np.int64).reshape(self.batch, self.n_out), IO_LIMIT)
            ls1, ls2 = self._losses(b1, ys), self._losses(b2, ys)
            l1, l2 = int(ls1.sum() // self.batch), int(ls2.sum() // self.batch)
            if learn:
                self._update(ls2 - ls1, da, db, u, xh_prev, xh1n, b1, ys)
                applied = True
        elif learn:
            self.pending = Pending(t, da, db, u, xh_prev, xh1n)
        self.xh1, self.xh2 = xh1n, xh2n
        self.counter = (self.counter + 1) & U64_MAX  # u64, wrapping as in C
        self.total = (self.total + 1) & U64_MAX
        if applied and self.hyper.decorrelation:
            self._decorrelate(self.xh1)
        return StepOut(b1, b2, l1, l2, applied)

    def reward(self, t: int, dl: np.ndarray) -> bool:
        """Apply the pending step's update with the host's dl (Q32 per stream)."""
        p = self.pending
        if p is None or p.t != t:
            return False
        self.pending = None
        dl = np.asarray(dl, np.int64).reshape(self.batch)
        self._update(dl, p.da, p.db, p.u, p.xh_prev, p.xh, None, None)
        if self.hyper.decorrelation:
            self._decorrelate(p.xh)
        return True

    def _update(
        self,
        dl: np.ndarray,
        da: np.ndarray,
        db: np.ndarray,
        u: np.ndarray,
        xh_prev: np.ndarray,
        xh: np.ndarray,
        b1: np.ndarray | None,
        ystar: np.ndarray | None,
    ) -> None:
        """The update of A, R, B from per-stream dl (docs/protocol.md §6.5): ANP for the
        hidden layer, the readout by ANP's own estimate, NLMS or RLS (§6.8; b1, ystar:
        replica 1's outputs and the targets, the exact readouts only)."""
        h = self.hyper
        nb = self.batch
        f = self._features(xh, u)
        if self.compiled:
            kh = np.empty((nb, self.n), np.int64)
            ko = np.empty((nb, self.n_out), np.int64)
            zero = np.zeros((nb, self.n_out), np.int64)
            fast.update(
                self.A, self.R, self.B, np.ascontiguousarray(dl, np.int64), da, db, u,
                xh_prev, np.ascontiguousarray(f), lr_gain_q(h), hidden_gain_q(h), h.output_cap,
                h.readout, h.mu_q, zero if b1 is None else b1, zero if ystar is None else ystar,
                kh, ko,
            )  # fmt: skip
            if h.readout == READOUT_RLS:
                assert self.P is not None and ystar is not None
                self.stats["rls_resets"] += fast.rls_update(
                    self.P, self.B, np.ascontiguousarray(f), ystar, rls_lambda_q24(h),
                    h.im1_q, h.p0_q, *self._rls_gk,
                )  # fmt: skip
            return
        dl = sat(np.asarray(dl, np.int64), DL_LIMIT)
        nda = np.minimum((da * da).sum(axis=1), NORM_LIMIT)
        # Hidden layer: g = lr_h·gain·dl / (‖da‖² · nb), Q24; 0 when ‖da‖² = 0. With an
        # exact readout lr_h·gain is divided by 1 + ‖B_h‖² first (docs/design.md §5).
        lgh = hidden_gain_q(h)
        if h.readout != READOUT_ANP:
            lgh = int(div_trunc(lgh << 32, readout_norm_q32(self.B, self.n)))
        g_h = sat(div_trunc(dl * lgh, nda * nb), G_LIMIT)
        k_h = sat(rshift_round(g_h[:, None] * da, 8), K_LIMIT)  # Q32
        if h.readout == READOUT_ANP:
            # The readout by ANP's estimate, with the normalised-LMS cap
            # lr·gain <= 0.5 / ‖f1‖² per stream.
            lg = lr_gain_q(h)
            ndb = np.minimum((db * db).sum(axis=1), NORM_LIMIT)
            lg_o = np.full(nb, lg, np.int64)
            if h.output_cap:
                nx = (f * f).sum(axis=1)
                cap = div_trunc(np.full(nb, CAP_NUM, np.int64), nx)
                lg_o = np.where((nx > 0) & (cap < lg), cap, lg_o)
            g_o = sat(div_trunc(dl * lg_o, ndb * nb), G_LIMIT)
            k_o = sat(rshift_round(g_o[:, None] * db, 8), K_LIMIT)
            dB = rshift_round(k_o.T @ f, 24)
        elif h.readout == READOUT_RLS:
            dB = 0  # RLS updates B stream by stream below, after the hidden layer (§6.8)
        else:
            # NLMS: c = μ e / (δ + ‖f1‖²) per stream, Q22, its batch mean (§6.5).
            assert b1 is not None and ystar is not None
            e = sat(b1 - ystar, DIFF_LIMIT)
            nf = np.minimum((f * f).sum(axis=1), NORM_LIMIT)
            c = sat(div_trunc(h.mu_q * e * (1 << 22), ((nf + NLMS_DELTA_Q) * nb)[:, None]), K_LIMIT)
            dB = rshift_round(c.T @ f, 14)
        # Batch sums are exact in int64 (|k| <= 2**33, |pre| <= 2**23, nb <= 64), one rounding.
        self.A = sat32(self.A - rshift_round(k_h.T @ u, 24))
        self.R = sat32(self.R - rshift_round(k_h.T @ xh_prev, 24))
        self.B = sat32(self.B - dB)
        if h.readout == READOUT_RLS:
            assert self.P is not None and ystar is not None
            for s in range(nb):
                self.stats["rls_resets"] += rls_stream(self.P, self.B, f[s], ystar[s], h)

    def _decorrelate(self, xh: np.ndarray) -> None:
        """D <- D - eps/nb · sum_b (xh_b (xh_bᵀ D) - diag(xh_b²) D) (§6.5)."""
        D = self.D
        assert D is not None
        eps_nb = int(self.hyper.eps_q) // self.batch
        tmp = sat(rshift_round(xh @ D, W_FRAC), TMP_LIMIT)  # (nb, N) Q16
        q16 = rshift_round((xh * xh).sum(axis=0), 16)  # (N,) Q16
        m = (xh.T @ tmp) * (1 << 8) - q16[:, None] * D  # Q40
        m24 = sat(rshift_round(m, 16), M_LIMIT)
        self.D = sat32(D - rshift_round(eps_nb * m24, 32))

    # -- evaluation --------------------------------------------------------------------------

    def predict(self, u: np.ndarray, batch: int, reset: bool) -> np.ndarray:
        """Clean forward passes on the evaluation state: u (S, batch, n_in) -> (S, batch, n_out)."""
        u = sat(np.asarray(u, np.int64).reshape(-1, batch, self.n_in), IO_LIMIT)
        if reset or self.xh_eval.shape[0] != batch:
            self.xh_eval = np.zeros((batch, self.n), np.int64)
        out = np.zeros((u.shape[0], batch, self.n_out), np.int64)
        xh = self.xh_eval
        for s in range(u.shape[0]):
            a = sat32(rshift_round(u[s] @ self.A.T + xh @ self.R.T, W_FRAC))
            xh = self._leak(self._decorrelated(tanh_q16(a)), xh)
            out[s] = sat32(rshift_round(self._features(xh, u[s]) @ self.B.T, W_FRAC))
        self.xh_eval = xh
        return out

    # -- export ------------------------------------------------------------------------------

    def export_state(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "xh1": self.xh1.copy(),
            "xh2": self.xh2.copy(),
            "counter": int(self.counter),
            "rng_seed": int(self.seed),
            "rng_counter": int(self.rng_counter),
            "eval_batch": int(self.xh_eval.shape[0]),
            "xh_eval": self.xh_eval.copy(),
            "pending_t": None if self.pending is None else self.pending.t,
            "total": int(self.total),
            "gv": self.gv.copy(),
        }

    @property
    def xh_bound(self) -> int:
        """The bound the step keeps hidden states within: the ±16 clamp (``2**20`` in Q16)
        when D is stored, else tanh's range (``2**16``). STATE_SET refuses states beyond it."""
        return XH_LIMIT if self.D is not None else ONE_A

    def import_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`export_state` returned; checks everything before changing
        anything. Refuses (ConfigError) hidden states beyond :attr:`xh_bound` — a state the
        step cannot produce, which would break the int64 bounds of §6.1 —, a guard vector
        beyond ±2**20 and counters outside u64."""
        batch = int(state["batch"])
        if not 1 <= batch <= MAX_BATCH:
            raise ConfigError(f"batch must be in [1, {MAX_BATCH}], got {batch}")
        eb = int(state["eval_batch"])
        shapes = {
            "xh1": (batch, self.n),
            "xh2": (batch, self.n),
            "xh_eval": (eb, self.n),
            "gv": (1, self.n),
        }
        what = "the ±16 clamp, D stored" if self.D is not None else "tanh's range, D absent"
        arrays = {}
        for key, shape in shapes.items():
            arr = np.asarray(state[key], np.int64)
            if arr.size != shape[0] * shape[1]:
                raise ShapeError(f"state {key} has {arr.size} values, expected {shape}")
            bound = GV_LIMIT if key == "gv" else self.xh_bound
            if arr.size and int(np.abs(arr).max()) > bound:
                why = (
                    "), the bound the guard keeps its vector within"
                    if key == "gv"
                    else f": {what}), the bound the step keeps hidden states within"
                )
                raise ConfigError(
                    f"state {key} holds {int(arr.reshape(-1)[np.abs(arr).argmax()])}, outside "
                    f"±{bound} (±{bound >> A_FRAC} in Q16.16{why}; the device cannot have "
                    "produced it"
                )
            arrays[key] = arr.reshape(shape).copy()
        counters = {}
        for key in ("counter", "rng_counter", "total"):
            v = int(state[key])
            if not 0 <= v <= U64_MAX:
                raise ConfigError(f"state {key} must be a u64 in [0, 2**64 - 1], got {v}")
            counters[key] = v
        if batch != self.batch:
            self.set_batch(batch)
        self.xh1, self.xh2, self.xh_eval = arrays["xh1"], arrays["xh2"], arrays["xh_eval"]
        self.gv = arrays["gv"].reshape(self.n)
        self.counter = counters["counter"]
        self.total = counters["total"]
        self.seed = int(state["rng_seed"]) & _M32
        self.rng_counter = counters["rng_counter"]
        self.pending = None

    def weights(self) -> dict[str, np.ndarray | None]:
        return {"A": self.A, "R": self.R, "B": self.B, "D": self.D}
