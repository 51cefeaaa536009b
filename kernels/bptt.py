"""Online truncated backpropagation through time: the baseline the perturbation rules are judged by.

At every timestep t the network (docs/design.md §2, no node noise)::

    a_t = A u_t + R xh_{t-1},  x_t = tanh(a_t),  xh_t = (1 - α) xh_{t-1} + α D x_t
    y_t = B f_t,  f_t = xh_t, or [xh_t, u_t, 1] when B is N + n_in + 1 wide
    l_t = mean over outputs and batch of (y_t - y*_t)²

makes its prediction (α = 1: the paper's units; B's columns are [hidden, input, bias]). The
gradient with respect to A, R and B is backpropagated with the *current* parameters, in one
of two modes:

* ``chunked`` (the baseline): the stream is cut into non-overlapping windows of K steps.
  Within a window the parameters are fixed; at its last step the gradient of the window's
  mean loss (1/K) Σ l_t is backpropagated through the whole window (the hidden state is
  carried across window boundaries, the gradient is truncated there) and applied once. This
  is the exact BPTT gradient of the window's loss for the state the window started from,
  which is why it is stable where the sliding variant is not: the sliding variant updates
  every step with activities stored under older parameters, so its gradient is biased.
* ``sliding`` (the reference's online BP): every step, the gradient of l_t alone is
  backpropagated through the last K steps and applied at once. K = 1 is the reference code's
  one-step online BP.

Before the optimiser step (SGD or Adam) the gradient of A, R and B, taken as one vector, is
scaled down to norm ``clip`` if it is longer (global norm clipping; None or 0: off). If
decorrelation is on, D gets the decorrelation update with xh_t every step, in either mode.

The only history is a ring buffer of K entries holding (u_k, xh_{k-1}, x_k, g_y,k), g_y,k
the gradient of l_k with respect to y_k: memory does not grow with the stream. In chunked
mode a window occupies slots 0 .. K-1 in order. Every state and scratch array comes from
:func:`bptt_scratch` as a :class:`BPTTBuffers`; the fields in :data:`STATE_FIELDS` are the
learner state a checkpoint must keep (a chunked run resumes bit for bit mid-window), the
others are scratch. All streams of a batch share one window, so :func:`bptt_reset` (the start
of a new sequence) zeroes the hidden state of every stream and empties the window; call
:func:`bptt_flush` first to learn from a partial window that the sequence's end cut short.

Entry points:

* :func:`bptt_block` loops over a chunk of timesteps in compiled code;
* :func:`bptt_step` is one timestep; it runs the block kernel on a chunk of length one, so
  the two give the same bits by construction (and how a stream is cut into blocks never
  changes a bit: the window lives in the buffers);
* :func:`bptt_flush` applies the update of a partial chunked window (mean over its entries);
* :func:`bptt_grad` is the forward step plus the sliding gradient, without any update (tests).

A step whose loss or gradient is not finite is *not taken*: its prediction and loss are
written, but the parameters and every array of :data:`STATE_FIELDS` stay bit for bit as they
were before it, so the caller can name the step where learning diverged, everything it holds
is still finite, and skipping a bad sample is the same as never having seen it. In chunked
mode a step that does not end a window is checked too (its loss and its input), so a bad
sample is named at its own step and not at the end of its window.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from numba import njit

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.kernels.decorrelation import decorrelate

__all__ = [
    "STATE_FIELDS",
    "BPTTBuffers",
    "bptt_block",
    "bptt_flush",
    "bptt_grad",
    "bptt_reset",
    "bptt_scratch",
    "bptt_step",
]

# Reassociation lets LLVM vectorise the dot products (without it every row is one serial
# chain of adds). No nnan/ninf: the finiteness checks below must survive optimisation.
# The results stay bit-reproducible because the step and block entry points run the same
# compiled code.
_FASTMATH = {"reassoc", "contract", "nsz"}
# error_model="numpy": a Python-style zero-division check is a branch in every division,
# which stops the Adam loop from vectorising (IEEE inf/NaN is what we want anyway).
_JIT = {"cache": True, "fastmath": _FASTMATH, "error_model": "numpy"}

Optimizer = Literal["sgd", "adam"]
Mode = Literal["chunked", "sliding"]


class BPTTBuffers(NamedTuple):
    """Every state and scratch array of the BPTT kernels (allocate with :func:`bptt_scratch`).

    Shapes: nb streams, n_in inputs, N hidden units, n_out outputs, F readout features (N, or
    N + n_in + 1), window K. Float arrays share the parameters' dtype; ``counters`` is int64
    and ``step_loss`` float64.
    """

    xh: np.ndarray  # state (nb, N): hidden state xh_{t-1} of every stream
    ring_u: np.ndarray  # state (K, nb, n_in): u_k of each window entry
    ring_xh: np.ndarray  # state (K, nb, N): xh_{k-1} of each window entry
    ring_x: np.ndarray  # state (K, nb, N): x_k of each window entry
    ring_gy: np.ndarray  # state (K, nb, n_out): dl_k/dy_k of each window entry
    counters: np.ndarray  # state (3,) int64: [next ring slot, entries in window, Adam steps]
    mA: np.ndarray  # state: Adam moments, shaped like A, R, B; (0, 0) if allocated for SGD
    vA: np.ndarray
    mR: np.ndarray
    vR: np.ndarray
    mB: np.ndarray
    vB: np.ndarray
    gA: np.ndarray  # scratch (N, n_in): gradient of the last update (clipped)
    gR: np.ndarray  # scratch (N, N)
    gB: np.ndarray  # scratch (n_out, F)
    gy: np.ndarray  # scratch (nb, n_out)
    gxh: np.ndarray  # scratch (nb, N)
    ga: np.ndarray  # scratch (K, nb, N): g_a of every window entry
    dtmp: np.ndarray  # scratch (nb, N) for the decorrelation update
    dq: np.ndarray  # scratch (N,) for the decorrelation update
    keep_u: np.ndarray  # scratch (nb, n_in): the ring slot a step overwrites, kept until the
    keep_xh: np.ndarray  # scratch (nb, N)    step is known to be taken (else it is put back)
    keep_x: np.ndarray  # scratch (nb, N)
    keep_gy: np.ndarray  # scratch (nb, n_out)
    step_loss: np.ndarray  # scratch (1,) float64 for bptt_step


STATE_FIELDS: tuple[str, ...] = BPTTBuffers._fields[:12]
"""The fields a checkpoint must save to resume bit for bit (the rest is scratch)."""


def bptt_scratch(
    n_in: int,
    n_hidden: int,
    n_out: int,
    batch: int,
    window: int,
    dtype: type | np.dtype = np.float32,
    *,
    adam: bool = True,
    n_features: int | None = None,
) -> BPTTBuffers:
    """Allocate all state and scratch for a network of the given size, ready to start.

    ``window`` is K, the number of timesteps the gradient reaches back (>= 1). With
    ``adam=False`` the six moment arrays are empty, saving twice the parameters' memory; such
    buffers are then refused by the Adam optimiser. ``n_features`` is B's width: N (None,
    the default) or N + n_in + 1 for a readout over [hidden, input, 1].
    """
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ShapeError(f"dtype must be float32 or float64, got {dt}")
    for name, v in (("n_in", n_in), ("n_hidden", n_hidden), ("n_out", n_out), ("batch", batch)):
        if int(v) < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
    if int(window) < 1:
        raise ConfigError(f"window (K) must be >= 1, got {window}")
    n, k, nb, ni, no = int(n_hidden), int(window), int(batch), int(n_in), int(n_out)
    f = n if n_features is None else int(n_features)
    if f not in (n, n + ni + 1):
        raise ShapeError(
            f"n_features must be N = {n} or N + n_in + 1 = {n + ni + 1} "
            f"(a readout over [hidden, input, 1]), got {n_features}"
        )
    shapes = {"A": (n, ni), "R": (n, n), "B": (no, f)}

    def moments(p: str) -> np.ndarray:
        return np.zeros(shapes[p] if adam else (0, 0), dt)

    return BPTTBuffers(
        xh=np.zeros((nb, n), dt),
        ring_u=np.zeros((k, nb, ni), dt),
        ring_xh=np.zeros((k, nb, n), dt),
        ring_x=np.zeros((k, nb, n), dt),
        ring_gy=np.zeros((k, nb, no), dt),
        counters=np.zeros(3, np.int64),
        mA=moments("A"),
        vA=moments("A"),
        mR=moments("R"),
        vR=moments("R"),
        mB=moments("B"),
        vB=moments("B"),
        gA=np.zeros(shapes["A"], dt),
        gR=np.zeros(shapes["R"], dt),
        gB=np.zeros(shapes["B"], dt),
        gy=np.zeros((nb, no), dt),
        gxh=np.zeros((nb, n), dt),
        ga=np.zeros((k, nb, n), dt),
        dtmp=np.zeros((nb, n), dt),
        dq=np.zeros(n, dt),
        keep_u=np.zeros((nb, ni), dt),
        keep_xh=np.zeros((nb, n), dt),
        keep_x=np.zeros((nb, n), dt),
        keep_gy=np.zeros((nb, no), dt),
        step_loss=np.zeros(1, np.float64),
    )


def bptt_reset(bufs: BPTTBuffers) -> None:
    """Start a new sequence: zero every stream's hidden state and empty the window.

    The Adam moments and step count are kept (they belong to the optimiser, not the sequence).
    A partial chunked window is dropped: :func:`bptt_flush` first to learn from it.
    """
    bufs.xh.fill(0.0)
    bufs.counters[0] = 0
    bufs.counters[1] = 0


# ---------------------------------------------------------------------------------------------
# Compiled kernels. Arrays are assumed valid (the wrappers check them); scalars arrive already
# cast to the arrays' dtype so that float32 loops stay float32.


@njit(**_JIT)
def _forward(
    u, ystar, y, A, R, B, D, decor, leak, keep, xh, ring_u, ring_xh, ring_x, ring_gy, slot
):
    """Store the window entry in ``slot``, compute x_t, xh_t (into ``xh``), y_t and dl_t/dy_t
    (into ``ring_gy[slot]``); return l_t."""
    nb, n_in = u.shape
    n = R.shape[0]
    n_out, F = B.shape
    zero = A.dtype.type(0)
    uu = ring_u[slot]
    xp = ring_xh[slot]
    x = ring_x[slot]
    gy = ring_gy[slot]
    for b in range(nb):
        for j in range(n_in):
            uu[b, j] = u[b, j]
        for j in range(n):
            xp[b, j] = xh[b, j]
    # Rows outer, streams inner: each row of A and R is read from memory once per step.
    for i in range(n):
        for b in range(nb):
            s = zero
            for j in range(n_in):
                s += A[i, j] * uu[b, j]
            for j in range(n):
                s += R[i, j] * xp[b, j]
            x[b, i] = np.tanh(s)
    if decor:
        for i in range(n):
            for b in range(nb):
                s = zero
                for j in range(n):
                    s += D[i, j] * x[b, j]
                xh[b, i] = s
    else:
        for b in range(nb):
            for i in range(n):
                xh[b, i] = x[b, i]
    if leak < 1:
        # The forward kernel's order and constants: keep = 1 - α rounded once from float64.
        for b in range(nb):
            for i in range(n):
                xh[b, i] = keep * xp[b, i] + leak * xh[b, i]
    # The loss is accumulated in float64 whatever the arrays' dtype: it is reported, not used.
    scale = A.dtype.type(2.0 / (n_out * nb))
    loss = 0.0
    for b in range(nb):
        for o in range(n_out):
            if F == n:
                s = zero
                for i in range(n):
                    s += B[o, i] * xh[b, i]
            else:
                # The forward kernel's order: the input and bias share, then the hidden.
                acc = zero
                for j in range(n_in):
                    acc += B[o, n + j] * uu[b, j]
                acc += B[o, F - 1]
                h = zero
                for i in range(n):
                    h += B[o, i] * xh[b, i]
                s = h + acc
            y[b, o] = s
            gy[b, o] = scale * (s - ystar[b, o])
            d = np.float64(s) - np.float64(ystar[b, o])
            loss += d * d
    return loss / (n_out * nb)


@njit(**_JIT)
def _readout_grad(gB, g_y, xh_k, u_k):
    """gB += g_yᵀ f_k, f_k = xh_k or [xh_k, u_k, 1] (B's width says which)."""
    n = xh_k.shape[1]
    n_out, F = gB.shape
    for o in range(n_out):
        for b in range(g_y.shape[0]):
            g = g_y[b, o]
            for i in range(n):
                gB[o, i] += g * xh_k[b, i]
            if F > n:
                for j in range(u_k.shape[1]):
                    gB[o, n + j] += g * u_k[b, j]
                gB[o, F - 1] += g


@njit(**_JIT)
def _add_hidden_grad(gxh, g_y, B):
    """gxh += g_y B[:, :N]: the output error's share of dl/dxh (inputs and bias excluded)."""
    n = gxh.shape[1]
    for b in range(gxh.shape[0]):
        for o in range(B.shape[0]):
            g = g_y[b, o]
            for i in range(n):
                gxh[b, i] += g * B[o, i]


@njit(**_JIT)
def _backward(
    B, R, D, decor, leak, keep, chunked, xh, ring_u, ring_xh, ring_x, ring_gy, newest, n_win,
    gA, gR, gB, gy, gxh, ga,
):  # fmt: skip
    """Gradient into gA, gR, gB through the ``n_win`` newest window entries.

    Sliding: of l_t, t the newest entry. Chunked: of the mean loss of all ``n_win`` entries,
    which then sit in slots ``newest - n_win + 1 .. newest`` in order. Returns True if the
    gradient is finite. ``ga[w]`` receives g_a of the w-th newest entry.
    """
    n = R.shape[0]
    n_in = gA.shape[1]
    n_out, F = gB.shape
    k_ring = ring_u.shape[0]
    zero = B.dtype.type(0)
    one = B.dtype.type(1)
    leaky = leak < one
    inv_n = B.dtype.type(1.0 / n_win)
    for o in range(n_out):
        for i in range(F):
            gB[o, i] = zero
    for b in range(xh.shape[0]):
        for i in range(n):
            gxh[b, i] = zero
    if not chunked:
        g_y = ring_gy[newest]
        _readout_grad(gB, g_y, xh, ring_u[newest])
        _add_hidden_grad(gxh, g_y, B)

    # Phase 1, the chain back through the window: g_a of every entry, one pass over R (and
    # D) per entry. gxh holds dL/dxh_k of the entry at hand: its own output error's share
    # (chunked) plus what flows back from the newer entry through R and through the leak.
    # Products with a matrix from the left are row axpys (contiguous rows, streams inner so
    # that each row is read once).
    slot = newest
    for w in range(n_win):
        if chunked:
            src = ring_gy[slot]
            for b in range(gy.shape[0]):
                for o in range(n_out):
                    gy[b, o] = src[b, o] * inv_n
            # xh_k of this entry: the current state for the newest, else the newer entry's
            # xh_{k} (a chunked window is contiguous).
            _readout_grad(gB, gy, xh if w == 0 else ring_xh[slot + 1], ring_u[slot])
            _add_hidden_grad(gxh, gy, B)
        x = ring_x[slot]
        g_a = ga[w]
        if decor:  # g_x = g_xh D
            for b in range(xh.shape[0]):
                for j in range(n):
                    g_a[b, j] = zero
            for i in range(n):
                for b in range(xh.shape[0]):
                    g = gxh[b, i]
                    for j in range(n):
                        g_a[b, j] += g * D[i, j]
        else:
            for b in range(xh.shape[0]):
                for j in range(n):
                    g_a[b, j] = gxh[b, j]
        if leaky:
            for b in range(xh.shape[0]):
                for j in range(n):
                    g_a[b, j] *= leak * (one - x[b, j] * x[b, j])
        else:
            for b in range(xh.shape[0]):
                for j in range(n):
                    g_a[b, j] *= one - x[b, j] * x[b, j]
        # The oldest entry's g_xh would only reach a step outside the window: skip that pass.
        if w + 1 < n_win:
            for b in range(xh.shape[0]):
                for j in range(n):
                    gxh[b, j] = keep * gxh[b, j] if leaky else zero
            for i in range(n):
                for b in range(xh.shape[0]):
                    g = g_a[b, i]
                    for j in range(n):
                        gxh[b, j] += g * R[i, j]
        slot = slot - 1 if slot > 0 else k_ring - 1

    # Phase 2: gR = sum over entries and streams of g_a ⊗ xh_{k-1} (gA likewise), one row at
    # a time, so each row of gR is written to memory once (not once per window entry) and
    # checked for finiteness while it is still in cache. ``v * 0`` is 0 for finite v, NaN
    # otherwise: a vectorisable test that cannot overflow (without nnan LLVM keeps it).
    acc = zero
    for i in range(n):
        for j in range(n_in):
            gA[i, j] = zero
        for j in range(n):
            gR[i, j] = zero
        slot = newest
        for w in range(n_win):
            uu = ring_u[slot]
            xp = ring_xh[slot]
            for b in range(xh.shape[0]):
                g = ga[w, b, i]
                for j in range(n_in):
                    gA[i, j] += g * uu[b, j]
                for j in range(n):
                    gR[i, j] += g * xp[b, j]
            slot = slot - 1 if slot > 0 else k_ring - 1
        for j in range(n_in):
            acc += gA[i, j] * zero
        for j in range(n):
            acc += gR[i, j] * zero
    for o in range(n_out):
        for i in range(F):
            acc += gB[o, i] * zero
    return np.isfinite(acc)


@njit(**_JIT)
def _sum_squares(G):
    s = 0.0
    for i in range(G.shape[0]):
        for j in range(G.shape[1]):
            g = np.float64(G[i, j])
            s += g * g
    return s


@njit(**_JIT)
def _scale(G, c):
    for i in range(G.shape[0]):
        for j in range(G.shape[1]):
            G[i, j] *= c


@njit(**_JIT)
def _clip(gA, gR, gB, clip):
    """Scale the gradient [gA, gR, gB] to norm ``clip`` if longer; False if its norm is not
    finite. The norm is summed in float64: float32 squares of a large gradient would overflow."""
    norm = np.sqrt(_sum_squares(gA) + _sum_squares(gR) + _sum_squares(gB))
    if not np.isfinite(norm):
        return False
    if norm > clip:
        c = gA.dtype.type(clip / norm)
        _scale(gA, c)
        _scale(gR, c)
        _scale(gB, c)
    return True


@njit(**_JIT)
def _all_finite(u):
    acc = u.dtype.type(0)
    for b in range(u.shape[0]):
        for j in range(u.shape[1]):
            acc += u[b, j] * u.dtype.type(0)
    return np.isfinite(acc)


@njit(**_JIT)
def _copy_slot(su, sxh, sx, sgy, du, dxh, dx, dgy):
    """Copy one window entry (u, xh_prev, x, g_y), each (nb, ·), from the s- to the d-arrays."""
    for b in range(su.shape[0]):
        for j in range(su.shape[1]):
            du[b, j] = su[b, j]
        for j in range(sxh.shape[1]):
            dxh[b, j] = sxh[b, j]
            dx[b, j] = sx[b, j]
        for j in range(sgy.shape[1]):
            dgy[b, j] = sgy[b, j]


@njit(**_JIT)
def _sgd(W, G, lr):
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            W[i, j] -= lr * G[i, j]


@njit(**_JIT)
def _adam(W, G, M, V, lr, beta1, beta2, eps, c1, c2):
    """Adam with bias correction folded into ``c1 = 1/(1-beta1^t)``, ``c2 = 1/(1-beta2^t)``."""
    one = W.dtype.type(1)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            g = G[i, j]
            m = beta1 * M[i, j] + (one - beta1) * g
            v = beta2 * V[i, j] + (one - beta2) * g * g
            M[i, j] = m
            V[i, j] = v
            W[i, j] -= lr * (m * c1) / (np.sqrt(v * c2) + eps)


@njit(**_JIT)
def _apply(A, R, B, counters, mA, vA, mR, vR, mB, vB, gA, gR, gB, lr, adam, beta1, beta2, eps):
    """The optimiser step with the gradient in gA, gR, gB."""
    if adam:
        counters[2] += 1
        c1 = A.dtype.type(1.0 / (1.0 - np.float64(beta1) ** counters[2]))
        c2 = A.dtype.type(1.0 / (1.0 - np.float64(beta2) ** counters[2]))
        _adam(A, gA, mA, vA, lr, beta1, beta2, eps, c1, c2)
        _adam(R, gR, mR, vR, lr, beta1, beta2, eps, c1, c2)
        _adam(B, gB, mB, vB, lr, beta1, beta2, eps, c1, c2)
    else:
        _sgd(A, gA, lr)
        _sgd(R, gR, lr)
        _sgd(B, gB, lr)


# fmt: off
@njit(**_JIT)
def _bptt_block(
    U, Ystar, Y, losses,  # the chunk: inputs, targets, predictions (out), losses (out)
    A, R, B, D, decor,  # parameters; D is ignored unless decor
    xh, ring_u, ring_xh, ring_x, ring_gy, counters,  # hidden state and window
    mA, vA, mR, vR, mB, vB,  # Adam moments
    gA, gR, gB, gy, gxh, ga, dtmp, dq, keep_u, keep_xh, keep_x, keep_gy,  # scratch
    lr, adam, beta1, beta2, adam_eps, decor_eps,  # hyperparameters, in the arrays' dtype
    chunked, clip, leak, keep,  # mode, clip threshold (float64, 0: off), α and 1 - α
):
    # fmt: on
    """Run ``U.shape[0]`` online steps; return how many were taken (the first failing index)."""
    k_ring = ring_u.shape[0]
    for t in range(U.shape[0]):
        if chunked:
            slot = counters[1]
            n_win = counters[1] + 1
            update = n_win == k_ring
        else:
            slot = counters[0]
            n_win = min(counters[1] + 1, k_ring)
            update = True
        _copy_slot(
            ring_u[slot], ring_xh[slot], ring_x[slot], ring_gy[slot],
            keep_u, keep_xh, keep_x, keep_gy,
        )  # fmt: skip
        loss = _forward(
            U[t], Ystar[t], Y[t], A, R, B, D, decor, leak, keep, xh,
            ring_u, ring_xh, ring_x, ring_gy, slot,
        )  # fmt: skip
        losses[t] = loss
        ok = np.isfinite(loss)
        if ok and chunked:
            # Without the input path a +inf input saturates tanh (finite loss) and would only
            # poison the gradient at the window's end: name the bad sample at its own step.
            ok = _all_finite(U[t])
        if ok and update:
            ok = _backward(
                B, R, D, decor, leak, keep, chunked, xh, ring_u, ring_xh, ring_x, ring_gy, slot,
                n_win, gA, gR, gB, gy, gxh, ga,
            )  # fmt: skip
            if ok and clip > 0:
                ok = _clip(gA, gR, gB, clip)
        if not ok:
            # Step not taken: put back xh_{t-1} (saved in the slot), then the slot itself.
            xp = ring_xh[slot]
            for b in range(xh.shape[0]):
                for j in range(xh.shape[1]):
                    xh[b, j] = xp[b, j]
            _copy_slot(
                keep_u, keep_xh, keep_x, keep_gy,
                ring_u[slot], ring_xh[slot], ring_x[slot], ring_gy[slot],
            )  # fmt: skip
            return t
        if update:
            _apply(
                A, R, B, counters, mA, vA, mR, vR, mB, vB, gA, gR, gB, lr, adam, beta1, beta2,
                adam_eps,
            )  # fmt: skip
        if decor and decor_eps != 0:
            decorrelate(D, xh, decor_eps, dtmp, dq)
        if chunked:
            counters[1] = 0 if update else n_win
            counters[0] = counters[1]
        else:
            counters[0] = slot + 1 if slot + 1 < k_ring else 0
            counters[1] = n_win
    return U.shape[0]


# fmt: off
@njit(**_JIT)
def _bptt_flush(
    A, R, B, D, decor, xh, ring_u, ring_xh, ring_x, ring_gy, counters,
    mA, vA, mR, vR, mB, vB, gA, gR, gB, gy, gxh, ga,
    lr, adam, beta1, beta2, adam_eps, clip, leak, keep,
):
    # fmt: on
    """The update of the pending chunked window (0: nothing pending, 1: taken, -1: not
    finite, nothing changed); the window is emptied unless the update was refused."""
    n_win = counters[1]
    if n_win == 0:
        return 0
    ok = _backward(
        B, R, D, decor, leak, keep, True, xh, ring_u, ring_xh, ring_x, ring_gy, n_win - 1, n_win,
        gA, gR, gB, gy, gxh, ga,
    )  # fmt: skip
    if ok and clip > 0:
        ok = _clip(gA, gR, gB, clip)
    if not ok:
        return -1
    _apply(A, R, B, counters, mA, vA, mR, vR, mB, vB, gA, gR, gB, lr, adam, beta1, beta2, adam_eps)
    counters[0] = 0
    counters[1] = 0
    return 1


@njit(**_JIT)
def _bptt_grad(
    u, ystar, y, A, R, B, D, decor, leak, keep, xh, ring_u, ring_xh, ring_x, ring_gy, counters,
    gA, gR, gB, gy, gxh, ga,
):  # fmt: skip
    """Forward step and sliding gradient, no update; the step always enters the window."""
    k_ring = ring_u.shape[0]
    slot = counters[0]
    n_win = min(counters[1] + 1, k_ring)
    loss = _forward(
        u, ystar, y, A, R, B, D, decor, leak, keep, xh, ring_u, ring_xh, ring_x, ring_gy, slot
    )
    _backward(
        B, R, D, decor, leak, keep, False, xh, ring_u, ring_xh, ring_x, ring_gy, slot, n_win,
        gA, gR, gB, gy, gxh, ga,
    )  # fmt: skip
    counters[0] = slot + 1 if slot + 1 < k_ring else 0
    counters[1] = n_win
    return loss


# ---------------------------------------------------------------------------------------------
# Validation.

_NO_D = {np.dtype(np.float32): np.zeros((0, 0), np.float32), np.dtype(np.float64): np.zeros((0, 0))}


def _check(name: str, arr: object, shape: tuple[int, ...], dims: str, dtype: np.dtype) -> None:
    if not isinstance(arr, np.ndarray):
        raise ShapeError(f"{name} must be a NumPy array, got {type(arr).__name__}")
    if arr.dtype != dtype:
        hint = f"convert it with {name}.astype(np.{dtype})"
        if dtype in (np.float32, np.float64) and name not in ("counters", "losses", "step_loss"):
            hint = "all float arrays must share the dtype of A (float32 or float64); " + hint
        raise ShapeError(f"{name} has dtype {arr.dtype}, expected {dtype}: {hint}")
    if arr.shape != shape:
        raise ShapeError(f"{name} has shape {arr.shape}, expected {dims} = {shape}")
    if not arr.flags.c_contiguous:
        raise ShapeError(f"{name} is not C-contiguous: pass np.ascontiguousarray({name})")
    if not arr.flags.writeable:
        raise ShapeError(f"{name} is read-only: pass a writeable copy ({name}.copy())")


def _check_model(
    A: np.ndarray, R: np.ndarray, B: np.ndarray, D: np.ndarray | None, bufs: BPTTBuffers, adam: bool
) -> tuple[np.dtype, int, int, int, int]:
    """Check parameters and buffers; return (dtype, n_in, N, n_out, nb)."""
    if not isinstance(A, np.ndarray) or A.ndim != 2:
        raise ShapeError("A must be a 2-D NumPy array of shape (N, n_in)")
    dt = A.dtype
    if dt not in (np.float32, np.float64):
        raise ShapeError(f"A has dtype {dt}: parameters must be float32 or float64")
    n, n_in = A.shape
    if not isinstance(B, np.ndarray) or B.ndim != 2:
        raise ShapeError("B must be a 2-D NumPy array of shape (n_out, N) or (n_out, N + n_in + 1)")
    n_out = B.shape[0]
    f = B.shape[1] if B.shape[1] in (n, n + n_in + 1) else n
    f_dims = "(n_out, N)" if f == n else "(n_out, N + n_in + 1)"
    if not isinstance(bufs, BPTTBuffers):
        raise ShapeError(f"bufs must come from bptt_scratch, got {type(bufs).__name__}")
    if not isinstance(bufs.xh, np.ndarray) or bufs.xh.ndim != 2:
        raise ShapeError("bufs.xh must be a 2-D array of shape (nb, N)")
    nb = bufs.xh.shape[0]
    if not isinstance(bufs.ring_u, np.ndarray) or bufs.ring_u.ndim != 3:
        raise ShapeError("bufs.ring_u must be a 3-D array of shape (K, nb, n_in)")
    k = bufs.ring_u.shape[0]
    if k < 1:
        raise ShapeError("bufs.ring_u holds no window entry: allocate with window >= 1")
    _check("A", A, (n, n_in), "(N, n_in)", dt)
    _check("R", R, (n, n), "(N, N)", dt)
    try:
        _check("B", B, (n_out, f), f_dims, dt)
    except ShapeError as exc:
        raise ShapeError(
            f"{exc} (or (n_out, N + n_in + 1): a readout over [hidden, input, 1])"
        ) from None
    if D is not None:
        _check("D", D, (n, n), "(N, N)", dt)
    for name, shape, dims in (
        ("xh", (nb, n), "(nb, N)"),
        ("ring_u", (k, nb, n_in), "(K, nb, n_in)"),
        ("ring_xh", (k, nb, n), "(K, nb, N)"),
        ("ring_x", (k, nb, n), "(K, nb, N)"),
        ("ring_gy", (k, nb, n_out), "(K, nb, n_out)"),
        ("gA", (n, n_in), "(N, n_in)"),
        ("gR", (n, n), "(N, N)"),
        ("gB", (n_out, f), f"{f_dims}, B's shape (bptt_scratch's n_features)"),
        ("gy", (nb, n_out), "(nb, n_out)"),
        ("gxh", (nb, n), "(nb, N)"),
        ("ga", (k, nb, n), "(K, nb, N)"),
        ("dtmp", (nb, n), "(nb, N)"),
        ("dq", (n,), "(N,)"),
        ("keep_u", (nb, n_in), "(nb, n_in)"),
        ("keep_xh", (nb, n), "(nb, N)"),
        ("keep_x", (nb, n), "(nb, N)"),
        ("keep_gy", (nb, n_out), "(nb, n_out)"),
    ):
        _check(f"bufs.{name}", getattr(bufs, name), shape, dims, dt)
    _check("bufs.counters", bufs.counters, (3,), "(3,)", np.dtype(np.int64))
    _check("bufs.step_loss", bufs.step_loss, (1,), "(1,)", np.dtype(np.float64))
    pos, count, steps = (int(c) for c in bufs.counters)
    # Out-of-range counters would make the compiled code index outside the ring.
    if not (0 <= pos < k and 0 <= count <= k and steps >= 0):
        raise ConfigError(
            f"bufs.counters = {[pos, count, steps]} is invalid for a window of {k}: "
            "need 0 <= slot < K, 0 <= entries <= K, Adam steps >= 0 (bptt_reset restarts it)"
        )
    moment_shapes = {"A": (n, n_in), "R": (n, n), "B": (n_out, f)}
    for p, shape in moment_shapes.items():
        for name in (f"m{p}", f"v{p}"):
            arr = getattr(bufs, name)
            if adam:
                if isinstance(arr, np.ndarray) and arr.shape == (0, 0):
                    raise ShapeError(
                        f"bufs.{name} is empty: allocate with bptt_scratch(..., adam=True) for Adam"
                    )
                _check(f"bufs.{name}", arr, shape, f"the shape of {p}", dt)
            else:
                # SGD never touches the moments (any 2-D size will do), but the compiled
                # kernel's argument types must still match.
                free = arr.shape if isinstance(arr, np.ndarray) and arr.ndim == 2 else (0, 0)
                _check(f"bufs.{name}", arr, free, "a 2-D shape", dt)
    return dt, n_in, n, n_out, nb


def _check_window(bufs: BPTTBuffers, chunked: bool) -> None:
    """A chunked window starts at slot 0 and fills it in order: a ring left mid-window by the
    sliding mode cannot continue as a chunked one (bptt_reset empties it)."""
    pos, count = int(bufs.counters[0]), int(bufs.counters[1])
    if chunked and (pos != count or count >= bufs.ring_u.shape[0]):
        raise ConfigError(
            f"bufs.counters = {[pos, count]} is a sliding window, not a chunked one "
            "(need slot == entries < K): call bptt_reset before switching modes"
        )


def _hyper(
    dt: np.dtype,
    D: np.ndarray | None,
    lr: float,
    optimizer: str,
    decor_eps: float,
    beta1: float,
    beta2: float,
    adam_eps: float,
    mode: str,
    clip: float | None,
    leak: float,
) -> tuple:
    """Validate hyperparameters; return them cast to ``dt`` (float32 loops stay float32)."""
    if optimizer not in ("sgd", "adam"):
        raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if mode not in ("chunked", "sliding"):
        raise ConfigError(f"mode must be 'chunked' or 'sliding', got {mode!r}")
    for name, v in (("lr", lr), ("decor_eps", decor_eps)):
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {v}")
    clip_v = 0.0 if clip is None else float(clip)
    if not (math.isfinite(clip_v) and clip_v >= 0):
        raise ConfigError(f"clip must be a finite number >= 0 (None or 0: off), got {clip}")
    if not (math.isfinite(leak) and 0 < leak <= 1):
        raise ConfigError(f"leak must be in (0, 1], got {leak}")
    if decor_eps != 0 and D is None:
        raise ConfigError("decor_eps > 0 needs the decorrelation matrix D (np.eye(N) to start)")
    for name, v in (("beta1", beta1), ("beta2", beta2)):
        if not 0 <= v < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {v}")
    if not (math.isfinite(adam_eps) and adam_eps > 0):
        raise ConfigError(f"adam_eps must be a finite number > 0, got {adam_eps}")
    c = dt.type
    return (
        c(lr), optimizer == "adam", c(beta1), c(beta2), c(adam_eps), c(decor_eps),
        mode == "chunked", clip_v, c(leak), c(1.0 - leak),
    )  # fmt: skip


def _run_block(U, Ystar, Y_out, losses, A, R, B, D, bufs, hyper) -> int:
    b = bufs
    _check_window(b, hyper[6])
    # fmt: off
    taken = _bptt_block(
        U, Ystar, Y_out, losses, A, R, B, _NO_D[A.dtype] if D is None else D, D is not None,
        b.xh, b.ring_u, b.ring_xh, b.ring_x, b.ring_gy, b.counters,
        b.mA, b.vA, b.mR, b.vR, b.mB, b.vB,
        b.gA, b.gR, b.gB, b.gy, b.gxh, b.ga, b.dtmp, b.dq, b.keep_u, b.keep_xh, b.keep_x, b.keep_gy,
        *hyper,
    )
    # fmt: on
    return int(taken)


# ---------------------------------------------------------------------------------------------
# Public entry points.


def bptt_block(
    U: np.ndarray,
    Ystar: np.ndarray,
    Y_out: np.ndarray,
    losses: np.ndarray,
    A: np.ndarray,
    R: np.ndarray,
    B: np.ndarray,
    D: np.ndarray | None,
    bufs: BPTTBuffers,
    *,
    lr: float,
    optimizer: Optimizer = "adam",
    mode: Mode = "chunked",
    clip: float | None = 1.0,
    leak: float = 1.0,
    decor_eps: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
) -> int:
    """Run T online TBPTT steps in compiled code, updating A, R, B (and D) in place.

    U (T, nb, n_in) inputs and Ystar (T, nb, n_out) targets are only read. Writes the
    predictions (each made before any update that step triggers) into Y_out (T, nb, n_out)
    and the losses into ``losses`` (T,) float64. B is (n_out, N), or (n_out, N + n_in + 1)
    for a readout over [hidden, input, 1] (then allocate ``bufs`` with that ``n_features``).
    ``mode``: ``chunked`` updates once per window of K steps, ``sliding`` every step (the
    module docstring). ``clip``: global gradient-norm threshold (None or 0: off). ``leak``:
    α of the leaky units, in (0, 1]. ``D=None`` means no decorrelation (D = I, its products
    skipped); with D given, ``decor_eps`` is its learning rate (0 keeps D fixed).

    Returns the number of steps taken: T, or the index of the first step whose loss, input
    (chunked) or gradient was not finite. That step's prediction and loss are written; it is
    skipped, and the parameters and state are bit for bit as after the steps before it.
    """
    dt, n_in, _, n_out, nb = _check_model(A, R, B, D, bufs, optimizer == "adam")
    if not isinstance(U, np.ndarray) or U.ndim != 3:
        raise ShapeError("U must be a 3-D NumPy array of shape (T, nb, n_in)")
    t = U.shape[0]
    _check("U", U, (t, nb, n_in), "(T, nb, n_in)", dt)
    _check("Ystar", Ystar, (t, nb, n_out), "(T, nb, n_out)", dt)
    _check("Y_out", Y_out, (t, nb, n_out), "(T, nb, n_out)", dt)
    _check("losses", losses, (t,), "(T,)", np.dtype(np.float64))
    hyper = _hyper(dt, D, lr, optimizer, decor_eps, beta1, beta2, adam_eps, mode, clip, leak)
    return _run_block(U, Ystar, Y_out, losses, A, R, B, D, bufs, hyper)


def bptt_step(
    u: np.ndarray,
    ystar: np.ndarray,
    y_out: np.ndarray,
    A: np.ndarray,
    R: np.ndarray,
    B: np.ndarray,
    D: np.ndarray | None,
    bufs: BPTTBuffers,
    *,
    lr: float,
    optimizer: Optimizer = "adam",
    mode: Mode = "chunked",
    clip: float | None = 1.0,
    leak: float = 1.0,
    decor_eps: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
) -> tuple[float, bool]:
    """One online step: u (nb, n_in), ystar (nb, n_out); prediction into y_out (nb, n_out).

    Returns ``(loss, taken)``. ``taken`` is False when the loss, the input (chunked) or the
    gradient was not finite: then only y_out and scratch changed (a finite loss with
    ``taken`` False means the gradient overflowed). Same arguments and same bits as
    :func:`bptt_block` with T = 1.
    """
    dt, n_in, _, n_out, nb = _check_model(A, R, B, D, bufs, optimizer == "adam")
    _check("u", u, (nb, n_in), "(nb, n_in)", dt)
    _check("ystar", ystar, (nb, n_out), "(nb, n_out)", dt)
    _check("y_out", y_out, (nb, n_out), "(nb, n_out)", dt)
    hyper = _hyper(dt, D, lr, optimizer, decor_eps, beta1, beta2, adam_eps, mode, clip, leak)
    taken = _run_block(u[None], ystar[None], y_out[None], bufs.step_loss, A, R, B, D, bufs, hyper)
    return float(bufs.step_loss[0]), taken == 1


def bptt_flush(
    A: np.ndarray,
    R: np.ndarray,
    B: np.ndarray,
    D: np.ndarray | None,
    bufs: BPTTBuffers,
    *,
    lr: float,
    optimizer: Optimizer = "adam",
    clip: float | None = 1.0,
    leak: float = 1.0,
    beta1: float = 0.9,
    beta2: float = 0.999,
    adam_eps: float = 1e-8,
) -> bool | None:
    """Apply the update of a partial chunked window, then empty it; call before
    :func:`bptt_reset` at a sequence's end, so its last ``T mod K`` steps are learned too.

    The gradient is that of the mean loss of the window's entries (fewer than K). Returns
    None if no step is pending, True if the update was applied, False if its gradient was
    not finite (then nothing changed; :func:`bptt_reset` drops the window). The hidden state
    is kept. Sliding buffers hold no pending update: refused.
    """
    dt = _check_model(A, R, B, D, bufs, optimizer == "adam")[0]
    _check_window(bufs, True)
    lr_, adam, b1, b2, eps, _, _, clip_v, leak_, keep = _hyper(
        dt, D, lr, optimizer, 0.0, beta1, beta2, adam_eps, "chunked", clip, leak
    )
    b = bufs
    # fmt: off
    res = _bptt_flush(
        A, R, B, _NO_D[dt] if D is None else D, D is not None,
        b.xh, b.ring_u, b.ring_xh, b.ring_x, b.ring_gy, b.counters,
        b.mA, b.vA, b.mR, b.vR, b.mB, b.vB, b.gA, b.gR, b.gB, b.gy, b.gxh, b.ga,
        lr_, adam, b1, b2, eps, clip_v, leak_, keep,
    )
    # fmt: on
    return None if res == 0 else res == 1


def bptt_grad(
    u: np.ndarray,
    ystar: np.ndarray,
    y_out: np.ndarray,
    A: np.ndarray,
    R: np.ndarray,
    B: np.ndarray,
    D: np.ndarray | None,
    bufs: BPTTBuffers,
    *,
    leak: float = 1.0,
) -> float:
    """Forward step and its truncated (sliding) gradient, with no update; returns the loss.

    The gradient of this step's loss w.r.t. A, R, B lands in ``bufs.gA``, ``bufs.gR``,
    ``bufs.gB``. The step enters the window and advances the hidden state (finite or not),
    so a sequence of calls computes the exact BPTT gradient of a fixed network when the
    window covers every step since the last reset. (The chunked gradient of a window: run
    :func:`bptt_block` with SGD at lr = 0 and read the same arrays.)
    """
    dt, n_in, _, n_out, nb = _check_model(A, R, B, D, bufs, False)
    _check("u", u, (nb, n_in), "(nb, n_in)", dt)
    _check("ystar", ystar, (nb, n_out), "(nb, n_out)", dt)
    _check("y_out", y_out, (nb, n_out), "(nb, n_out)", dt)
    if not (math.isfinite(leak) and 0 < leak <= 1):
        raise ConfigError(f"leak must be in (0, 1], got {leak}")
    b = bufs
    # fmt: off
    loss = _bptt_grad(
        u, ystar, y_out, A, R, B, _NO_D[dt] if D is None else D, D is not None,
        dt.type(leak), dt.type(1.0 - leak),
        b.xh, b.ring_u, b.ring_xh, b.ring_x, b.ring_gy, b.counters,
        b.gA, b.gR, b.gB, b.gy, b.gxh, b.ga,
    )
    # fmt: on
    return float(loss)
