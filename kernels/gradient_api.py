"""Validating wrappers of the online gradient rules: RTRL, e-prop and UORO.

:func:`allocate_gradient_state` makes what a rule keeps between steps (its trace, the
feedback matrix), :func:`run_gradient` checks every array once per call and runs the rule's
block kernel (:mod:`.rtrl`, :mod:`.eprop`, :mod:`.uoro`). The readout's state (RLS's P), the
counts and the guard's vector are those of the perturbation rules' :class:`.api.LearnState`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError

from .api import (
    READOUT_CODES,
    Dims,
    LearnState,
    check_array,
    check_block,
    check_learn_state,
    network_dims,
)
from .eprop import eprop_block
from .online_gradient import N_GWORK
from .rtrl import rtrl_block
from .uoro import uoro_block

GRADIENT_RULES = ("rtrl", "eprop", "uoro")
FEEDBACKS = ("symmetric", "random")


def rtrl_bytes(dims: Dims, nb: int) -> int:
    """Bytes RTRL holds: the influence J (nb N·N(N + n_in)) and two products' scratch."""
    n = dims.n_hidden
    per = n * n * (n + dims.n_in)
    return (nb + 2) * per * dims.dtype.itemsize


def available_bytes() -> int:
    """Memory this process may use: MemAvailable (Linux), else the physical memory."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2**34


def check_rtrl_memory(dims: Dims, nb: int, limit: int | None = None) -> None:
    """Refuse RTRL for a network whose N³ influence does not fit in half the free memory."""
    need = rtrl_bytes(dims, nb)
    most = available_bytes() // 2 if limit is None else int(limit)
    if need > most:
        n = dims.n_hidden
        raise ConfigError(
            f"RTRL at N = {n} needs N²(N + n_in) = {n * n * (n + dims.n_in):,} floats "
            f"(N³ = {n**3:,}) per stream for its influence matrix, {need / 2**20:,.0f} MiB "
            f"with its scratch, more than the {most / 2**20:,.0f} MiB it may use: use "
            "eprop or uoro (O(N²)), or a smaller network"
        )


@dataclass(frozen=True)
class GradientState:
    """What an online gradient rule keeps between steps besides weights and hidden state.

    trace: RTRL's influence J (nb, N, N(N + n_in)), e-prop's eligibility trace or UORO's θ̃
    (nb, N, N + n_in); xt (nb, N): UORO's x̃ ((0, 0) otherwise); tn (nb,) float64: UORO's
    ‖θ̃‖; feedback (n_out, N): the fixed random feedback matrix ((0, 0) with symmetric
    feedback, which sends the error back through B). All but the feedback are zeroed at a
    sequence's start (:meth:`reset`). ring: e-prop's eligibility traces of the last d steps
    under a label delay d (docs/design.md §3.8), read only while labels are pending; it
    is not in :data:`GRADIENT_STATE_FIELDS` (a checkpoint adds it when d > 0).
    """

    trace: np.ndarray
    xt: np.ndarray
    tn: np.ndarray
    feedback: np.ndarray
    ring: np.ndarray  # e-prop with a label delay d: (d, nb, N, N + n_in), else (0, nb, N, 0)

    def reset(self) -> None:
        """A new sequence: the state does not depend on the weights yet."""
        self.trace.fill(0)
        self.xt.fill(0)
        self.tn.fill(0)

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields by name (the live arrays), for checkpoints."""
        return {f: getattr(self, f) for f in GRADIENT_STATE_FIELDS}


GRADIENT_STATE_FIELDS = ("trace", "xt", "tn", "feedback")


def _trace_shape(rule: str, dims: Dims, nb: int) -> tuple[int, ...]:
    n, w = dims.n_hidden, dims.n_hidden + dims.n_in
    return (nb, n, n * w) if rule == "rtrl" else (nb, n, w)


def allocate_gradient_state(
    dims: Dims,
    nb: int,
    rule: str,
    *,
    feedback: str = "symmetric",
    seed: int = 0,
    memory_limit: int | None = None,
    delay: int = 0,
) -> GradientState:
    """A fresh state for ``rule`` (rtrl, eprop, uoro); RTRL refuses a network too large.

    The random feedback matrix is drawn from ``seed``: standard normals over sqrt(N), so
    that each output's column has a norm near 1.
    """
    _check_rule(rule, feedback)
    _check_delay(rule, delay)
    if rule == "rtrl":
        check_rtrl_memory(dims, nb, memory_limit)
    n, dt = dims.n_hidden, dims.dtype
    fb = np.zeros((0, 0), dt)
    if feedback == "random":
        g = np.random.default_rng([int(seed), 0xFEED])
        fb = (g.standard_normal((dims.n_out, n)) / math.sqrt(n)).astype(dt)
    return GradientState(
        trace=np.zeros(_trace_shape(rule, dims, nb), dt),
        xt=np.zeros((nb, n) if rule == "uoro" else (0, 0), dt),
        tn=np.zeros(nb if rule == "uoro" else 0),
        feedback=fb,
        ring=np.zeros(_ring_shape(rule, dims, nb, delay), dt),
    )


def _ring_shape(rule: str, dims: Dims, nb: int, delay: int) -> tuple[int, int, int, int]:
    n, w = dims.n_hidden, dims.n_hidden + dims.n_in
    return (int(delay), nb, n, w) if rule == "eprop" and delay > 0 else (0, nb, n, 0)


def _check_delay(rule: str, delay: int) -> None:
    if int(delay) < 0:
        raise ConfigError(f"delay must be >= 0 (steps between a step and its label), got {delay}")
    if int(delay) > 0 and rule != "eprop":
        raise ConfigError(
            f"{rule} learns without a label delay (got {delay}): of the gradient rules only "
            "eprop keeps the ring of past traces a delayed label needs"
        )


@dataclass(frozen=True)
class GradientWorkspace:
    """Scratch of the gradient kernels; contents are meaningless between calls."""

    work: np.ndarray
    z: np.ndarray
    f: np.ndarray
    err: np.ndarray
    co: np.ndarray
    q: np.ndarray
    gw: np.ndarray
    s0: np.ndarray
    kk: np.ndarray
    nrm: np.ndarray
    Q: np.ndarray
    S: np.ndarray
    grad: np.ndarray


def allocate_gradient_workspace(
    dims: Dims, nb: int, rule: str, *, decorrelation: bool = False
) -> GradientWorkspace:
    """Allocate every scratch array once (RTRL's products only for RTRL)."""
    n, dt, w = dims.n_hidden, dims.dtype, dims.n_hidden + dims.n_in
    rtrl = rule == "rtrl"
    return GradientWorkspace(
        work=np.zeros((N_GWORK, nb, n), dt),
        z=np.zeros((nb, w), dt),
        f=np.zeros((nb, dims.n_features), dt),
        err=np.zeros((nb, dims.n_out), dt),
        co=np.zeros((nb, dims.n_out), dt),
        q=np.zeros(n, dt),
        gw=np.zeros(n),
        s0=np.zeros(nb, dt),
        kk=np.zeros((nb, 1), dt),
        nrm=np.zeros(nb),
        Q=np.zeros((n, n * w) if rtrl else (0, 0), dt),
        S=np.zeros((n, n * w) if rtrl and decorrelation else (0, 0), dt),
        grad=np.zeros((n, w) if rtrl else (0, 0), dt),
    )


def _check_rule(rule: str, feedback: str) -> None:
    if rule not in GRADIENT_RULES:
        raise ConfigError(f"unknown gradient rule {rule!r}: use one of {', '.join(GRADIENT_RULES)}")
    if feedback not in FEEDBACKS:
        raise ConfigError(f"unknown feedback {feedback!r}: use one of {', '.join(FEEDBACKS)}")


def run_gradient(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    xh: np.ndarray,
    rng: np.ndarray,
    U: np.ndarray,
    Y: np.ndarray,
    pred: np.ndarray,
    loss: np.ndarray,
    ws: GradientWorkspace,
    gstate: GradientState,
    state: LearnState,
    *,
    rule: str,
    lr: float,
    lr_hidden: float | None = None,
    eps: float = 0.0,
    decorrelation: bool = False,
    readout: str = "anp",
    leak: float = 1.0,
    readout_step: float = 0.5,
    forgetting: float = 1.0,
    readout_p0: float = 1e4,
    radius_bound: float | None = None,
    guard_every: int = 1000,
    feedback: str = "symmetric",
    delay: int = 0,
) -> int:
    """Run ``rule`` (rtrl, eprop, uoro) over a block, updating everything in place.

    params (A, R, B, D) and the hidden state xh (nb, N); rng the generator state (UORO's
    signs); U (T, nb, n_in), Y (T, nb, n_out) read; pred (T, nb, n_out) and loss (T,)
    float64 written. ``state`` holds the readout's state, the counts and the guard's vector
    (:func:`.api.allocate_learn_state` with the same delay), ``gstate`` the rule's own
    (:func:`allocate_gradient_state`, same delay). ``delay`` d: Y[s] is the label of step
    s - d (e-prop only, docs/design.md §3.8; 0 for rtrl and uoro).
    Returns the number of steps taken: fewer than T when a step's input, output or loss
    was not finite (that step is reported, not applied).
    """
    _check_rule(rule, feedback)
    A, R, B, D = params
    dims = network_dims(A, R, B, D)
    n, dt, w = dims.n_hidden, dims.dtype, dims.n_hidden + dims.n_in
    nb = xh.shape[0] if isinstance(xh, np.ndarray) and xh.ndim == 2 else -1
    check_array("xh", xh, (nb, n), dt)
    T = check_block(U, Y, dims, nb)
    check_array("pred", pred, (T, nb, dims.n_out), dt)
    check_array("loss", loss, (T,), np.dtype(np.float64))
    check_array("rng", rng, (2,), np.dtype(np.uint64))
    if readout not in READOUT_CODES:
        raise ConfigError(f"unknown readout {readout!r}: use one of {', '.join(READOUT_CODES)}")
    if not 0.0 < leak <= 1.0:
        raise ConfigError(f"leak must be in (0, 1], got {leak}")
    if not 0.0 < forgetting <= 1.0:
        raise ConfigError(f"forgetting must be in (0, 1], got {forgetting}")
    if int(guard_every) < 1:
        raise ConfigError(f"guard_every must be >= 1, got {guard_every}")
    _check_delay(rule, delay)
    check_learn_state(state, dims, nb, delay=delay, rls=readout == "rls")
    hint = " (allocate it with allocate_gradient_state(dims, batch, rule, ...))"
    try:
        check_array("gstate.trace", gstate.trace, _trace_shape(rule, dims, nb), dt)
        uoro = rule == "uoro"
        check_array("gstate.xt", gstate.xt, (nb, n) if uoro else gstate.xt.shape, dt)
        check_array("gstate.tn", gstate.tn, (nb,) if uoro else (0,), np.dtype(np.float64))
        fb_shape = (dims.n_out, n) if feedback == "random" else gstate.feedback.shape
        check_array("gstate.feedback", gstate.feedback, fb_shape, dt)
        check_array("gstate.ring", gstate.ring, _ring_shape(rule, dims, nb, delay), dt)
    except ShapeError as exc:
        raise ShapeError(f"{exc}{hint}") from None
    rtrl = rule == "rtrl"
    shapes = {
        "work": (N_GWORK, nb, n),
        "z": (nb, w),
        "f": (nb, dims.n_features),
        "err": (nb, dims.n_out),
        "co": (nb, dims.n_out),
        "q": (n,),
        "s0": (nb,),
        "kk": (nb, 1),
        "Q": (n, n * w) if rtrl else ws.Q.shape,
        "S": (n, n * w) if rtrl and decorrelation else ws.S.shape,
        "grad": (n, w) if rtrl else ws.grad.shape,
    }
    for name, shape in shapes.items():
        check_array(f"workspace.{name}", getattr(ws, name), shape, dt)
    check_array("workspace.gw", ws.gw, (n,), np.dtype(np.float64))
    check_array("workspace.nrm", ws.nrm, (nb,), np.dtype(np.float64))
    M = gstate.feedback if feedback == "random" else B
    lr_h = float(lr) if lr_hidden is None else float(lr_hidden)
    bound = 0.0 if radius_bound is None else float(radius_bound)
    st = state
    hyper = (
        float(lr), lr_h, float(eps), bool(decorrelation), READOUT_CODES[readout],
        float(leak), float(readout_step), float(forgetting), float(readout_p0), bound,
        int(guard_every),
    )  # fmt: skip
    tail = (st.P, st.ph, st.pp_flag, st.counts, st.gv, ws.gw)
    if rule == "eprop":
        return int(
            eprop_block(
                A, R, B, D, xh, U, Y, pred, loss, *hyper,
                M, gstate.trace, ws.work, ws.z, ws.f, ws.err, ws.co, ws.q, *tail,
                int(delay), gstate.ring, st.rec_o, st.rec_f,
            )
        )  # fmt: skip
    if rule == "uoro":
        return int(
            uoro_block(
                A, R, B, D, xh, rng, U, Y, pred, loss, *hyper,
                M, gstate.trace, gstate.xt, gstate.tn, ws.work, ws.z, ws.f, ws.err, ws.co,
                ws.q, ws.s0, ws.kk, ws.nrm, *tail,
            )
        )  # fmt: skip
    return int(
        rtrl_block(
            A, R, B, D, xh, U, Y, pred, loss, *hyper,
            M, gstate.trace, ws.work, ws.z, ws.f, ws.err, ws.co, ws.q, ws.Q, ws.S, ws.grad,
            *tail,
        )
    )  # fmt: skip
