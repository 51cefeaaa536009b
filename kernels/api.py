"""Public, validating wrappers around the compiled kernels.

The ``@njit`` kernels trust their arguments; these wrappers check shapes, dtypes and
layout once per call and raise :class:`ShapeError` with a message that says how to fix
the call. Scratch space is allocated once, in :func:`allocate_workspace`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError

from .forward import forward_block
from .perturbation import (
    N_COUNTS,
    N_PEND,
    N_REC_H,
    N_REC_O,
    N_WORK,
    N_WORK_OUT,
    RULE_ANP,
    RULE_NP,
    perturbation_block,
    wp_block,
)
from .readout import READOUT_ANP, READOUT_NLMS, READOUT_RLS

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class Dims:
    """Sizes of a network: inputs, hidden units, outputs, readout features, float dtype.

    ``n_features`` is B's width: N (the readout sees the hidden state, as in the paper) or
    N + n_in + 1 (it sees [hidden state, input, 1]).
    """

    n_in: int
    n_hidden: int
    n_out: int
    dtype: np.dtype
    n_features: int = 0

    def __post_init__(self) -> None:
        if self.n_features == 0:
            object.__setattr__(self, "n_features", self.n_hidden)

    @property
    def n_total(self) -> int:
        """N_tot = n_in + N + n_out, whose square root scales the ANP step."""
        return self.n_in + self.n_hidden + self.n_out

    @property
    def readout_inputs(self) -> bool:
        """Whether the readout sees the input and a bias besides the hidden state."""
        return self.n_features > self.n_hidden


def readout_width(n_in: int, n_hidden: int, readout_inputs: bool) -> int:
    """B's width F: N + n_in + 1 with the input and bias features, N without."""
    return n_hidden + n_in + 1 if readout_inputs else n_hidden


def check_array(
    name: str,
    arr: object,
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    writeable: bool = True,
) -> np.ndarray:
    """Raise ShapeError unless ``arr`` is a C-contiguous array of shape and dtype.

    ``writeable`` (default) also requires that the kernel may write to it; inputs that are
    only read pass ``writeable=False``.
    """
    if not isinstance(arr, np.ndarray):
        raise ShapeError(f"{name} must be a numpy array, got {type(arr).__name__}")
    if arr.shape != shape:
        raise ShapeError(f"{name} has shape {arr.shape}, expected {shape}")
    if arr.dtype != dtype:
        raise ShapeError(
            f"{name} has dtype {arr.dtype}, expected {dtype}: convert it with "
            f"{name}.astype(np.{dtype.name}) (all float arrays of a call share one dtype)"
        )
    if not arr.flags.c_contiguous:
        raise ShapeError(f"{name} is not C-contiguous: pass np.ascontiguousarray({name})")
    if writeable and not arr.flags.writeable:
        raise ShapeError(f"{name} is read-only: pass {name}.copy()")
    return arr


def network_dims(A: np.ndarray, R: np.ndarray, B: np.ndarray, D: np.ndarray) -> Dims:
    """Check a parameter set (A: N x n_in, R: N x N, B: n_out x F, D: N x N).

    F is N or N + n_in + 1 (see :class:`Dims`).
    """
    for name, m in (("A", A), ("R", R), ("B", B), ("D", D)):
        if not isinstance(m, np.ndarray) or m.ndim != 2:
            raise ShapeError(f"{name} must be a 2-d numpy array")
    dtype = A.dtype
    if dtype not in FLOAT_DTYPES:
        raise ShapeError(f"A has dtype {dtype}; twinpass computes in float32 or float64")
    n, n_in = A.shape
    n_out = B.shape[0]
    width = B.shape[1] if B.shape[1] in (n, n + n_in + 1) else n
    check_array("A", A, (n, n_in), dtype)
    check_array("R", R, (n, n), dtype)
    try:
        check_array("B", B, (n_out, width), dtype)
    except ShapeError as exc:
        raise ShapeError(
            f"{exc} (or ({n_out}, {n + n_in + 1}): a readout over [hidden, input, 1])"
        ) from None
    check_array("D", D, (n, n), dtype)
    if min(n, n_in, n_out) < 1:
        raise ShapeError(f"empty network: n_in={n_in}, N={n}, n_out={n_out}")
    return Dims(n_in, n, n_out, dtype, width)


def check_block(U: np.ndarray, Y: np.ndarray | None, dims: Dims, nb: int) -> int:
    """Check a block of inputs U (T, nb, n_in) and targets Y (T, nb, n_out); return T."""
    if not isinstance(U, np.ndarray) or U.ndim != 3:
        raise ShapeError("inputs must be a 3-d array shaped (T, batch, n_in)")
    T = U.shape[0]
    check_array("inputs", U, (T, nb, dims.n_in), dims.dtype, writeable=False)
    if Y is not None:
        check_array("targets", Y, (T, nb, dims.n_out), dims.dtype, writeable=False)
    return T


@dataclass(frozen=True)
class Workspace:
    """Scratch arrays of the perturbation kernels; contents are meaningless between calls."""

    work: np.ndarray
    work_out: np.ndarray
    pend: np.ndarray
    q: np.ndarray
    EA: np.ndarray
    ER: np.ndarray
    EB: np.ndarray
    x: np.ndarray
    xhn: np.ndarray
    gw: np.ndarray


def allocate_workspace(dims: Dims, nb: int, *, weight_noise: bool = False) -> Workspace:
    """Allocate every scratch array once (the weight-noise buffers only for WP)."""
    n, dt = dims.n_hidden, dims.dtype

    def ew(shape: tuple[int, int]) -> np.ndarray:
        return np.zeros(shape if weight_noise else (0, 0), dt)

    return Workspace(
        work=np.zeros((N_WORK, nb, n), dt),
        work_out=np.zeros((N_WORK_OUT, nb, dims.n_out), dt),
        pend=np.zeros((N_PEND, nb, n), dt),
        q=np.zeros(n, dt),
        EA=ew((n, dims.n_in)),
        ER=ew((n, n)),
        EB=ew((dims.n_out, dims.n_features)),
        x=np.zeros((nb, n), dt),
        xhn=np.zeros((nb, n), dt),
        gw=np.zeros(n),
    )


@dataclass(frozen=True)
class LearnState:
    """What the learning rules keep between steps besides the weights and hidden states.

    A checkpoint saves every field (:data:`LEARN_STATE_FIELDS`). rec_h (slots, 5, nb, N),
    rec_o (slots, 4, nb, n_out), rec_f (slots, nb, F), rec_u (slots, nb, n_in): what each
    step records for its update, a ring of max(delay, 1) slots. P (F, F): RLS's inverse
    covariance ((0, 0) for the other readouts); ph (2, F), pp_flag (1,): its pending
    update. counts (7,) int64: steps, ring fill and head, guard projections, RLS resets
    and bounds, unlabelled steps (``twinpass.kernels.perturbation.C_*``). gv (N,)
    float64: the guard's warm-start vector.
    """

    rec_h: np.ndarray
    rec_o: np.ndarray
    rec_f: np.ndarray
    rec_u: np.ndarray
    P: np.ndarray
    ph: np.ndarray
    pp_flag: np.ndarray
    counts: np.ndarray
    gv: np.ndarray

    @property
    def delay(self) -> int:
        """The label delay the ring was allocated for (0 and 1 both have one slot)."""
        return self.rec_h.shape[0]

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields by name (the live arrays, not copies)."""
        return {f: getattr(self, f) for f in LEARN_STATE_FIELDS}


LEARN_STATE_FIELDS = ("rec_h", "rec_o", "rec_f", "rec_u", "P", "ph", "pp_flag", "counts", "gv")


def allocate_learn_state(
    dims: Dims,
    nb: int,
    *,
    delay: int = 0,
    rls: bool = False,
    p0: float = 1e4,
    seed: int = 0,
) -> LearnState:
    """A fresh learning state: an empty ring of max(delay, 1) slots, P = p0 I for RLS."""
    if int(delay) < 0:
        raise ConfigError(f"delay must be >= 0 (steps between a step and its label), got {delay}")
    n, dt, F = dims.n_hidden, dims.dtype, dims.n_features
    slots = max(int(delay), 1)
    v = np.random.default_rng([int(seed), 0x9A4D]).standard_normal(n)
    return LearnState(
        rec_h=np.zeros((slots, N_REC_H, nb, n), dt),
        rec_o=np.zeros((slots, N_REC_O, nb, dims.n_out), dt),
        rec_f=np.zeros((slots, nb, F), dt),
        rec_u=np.zeros((slots, nb, dims.n_in), dt),
        P=np.eye(F) * float(p0) if rls else np.zeros((0, 0)),
        ph=np.zeros((2, F)),
        pp_flag=np.zeros(1, np.int64),
        counts=np.zeros(N_COUNTS, np.int64),
        gv=v / np.linalg.norm(v),
    )


def check_learn_state(st: LearnState, dims: Dims, nb: int, *, delay: int, rls: bool) -> None:
    """Every array of a learning state must match the network, batch, delay and readout."""
    n, dt, F = dims.n_hidden, dims.dtype, dims.n_features
    slots = max(int(delay), 1)
    hint = " (allocate it with allocate_learn_state(dims, batch, delay=..., rls=...))"
    shapes = {
        "state.rec_h": (st.rec_h, (slots, N_REC_H, nb, n), dt),
        "state.rec_o": (st.rec_o, (slots, N_REC_O, nb, dims.n_out), dt),
        "state.rec_f": (st.rec_f, (slots, nb, F), dt),
        "state.rec_u": (st.rec_u, (slots, nb, dims.n_in), dt),
        "state.P": (st.P, (F, F) if rls else st.P.shape, np.dtype(np.float64)),
        "state.ph": (st.ph, (2, F), np.dtype(np.float64)),
        "state.pp_flag": (st.pp_flag, (1,), np.dtype(np.int64)),
        "state.counts": (st.counts, (N_COUNTS,), np.dtype(np.int64)),
        "state.gv": (st.gv, (n,), np.dtype(np.float64)),
    }
    for name, (arr, shape, dtype) in shapes.items():
        try:
            check_array(name, arr, shape, dtype)
        except ShapeError as exc:
            raise ShapeError(str(exc) + hint) from None


def check_workspace(ws: Workspace, dims: Dims, nb: int, *, weight_noise: bool) -> None:
    """Every scratch array must match the network and batch: the kernels do not check."""
    n, dt = dims.n_hidden, dims.dtype
    hint = " (allocate it with allocate_workspace(dims, batch))"
    shapes = {
        "workspace.work": (ws.work, (N_WORK, nb, n)),
        "workspace.work_out": (ws.work_out, (N_WORK_OUT, nb, dims.n_out)),
        "workspace.pend": (ws.pend, (N_PEND, nb, n)),
        "workspace.q": (ws.q, (n,)),
        "workspace.x": (ws.x, (nb, n)),
        "workspace.xhn": (ws.xhn, (nb, n)),
    }
    check_array("workspace.gw", ws.gw, (n,), np.dtype(np.float64))
    if weight_noise:
        shapes.update(
            {
                "workspace.EA": (ws.EA, (n, dims.n_in)),
                "workspace.ER": (ws.ER, (n, n)),
                "workspace.EB": (ws.EB, (dims.n_out, dims.n_features)),
            }
        )
    for name, (arr, shape) in shapes.items():
        try:
            check_array(name, arr, shape, dt)
        except ShapeError as exc:
            if weight_noise and name in ("workspace.EA", "workspace.ER", "workspace.EB"):
                hint = " (WP needs allocate_workspace(dims, batch, weight_noise=True))"
            raise ShapeError(str(exc) + hint) from None


RULE_CODES = {"anp": RULE_ANP, "np": RULE_NP}
READOUT_CODES = {"anp": READOUT_ANP, "nlms": READOUT_NLMS, "rls": READOUT_RLS}


def run_perturbation(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    xh1: np.ndarray,
    xh2: np.ndarray,
    counter: np.ndarray,
    rng: np.ndarray,
    U: np.ndarray,
    Y: np.ndarray,
    pred: np.ndarray,
    loss1: np.ndarray,
    loss2: np.ndarray,
    ws: Workspace,
    *,
    rule: str,
    lr: float,
    sigma: float,
    eps: float,
    gain: float,
    decorrelation: bool,
    two_noisy: bool,
    resync_every: int,
    output_cap: bool,
    state: LearnState | None = None,
    readout: str = "anp",
    lr_hidden: float | None = None,
    leak: float = 1.0,
    readout_step: float = 0.5,
    forgetting: float = 1.0,
    readout_p0: float = 1e4,
    radius_bound: float | None = None,
    guard_every: int = 1000,
    delay: int = 0,
) -> int:
    """Learn online over a block with ANP, NP or WP; return the number of steps applied.

    The keywords after ``output_cap`` are those of docs/design.md §2-6 (see
    :class:`twinpass.runtime.RuleConfig`); their defaults are the paper's network.
    ``state`` carries what the rules keep between calls (:func:`allocate_learn_state`);
    it may be omitted only when nothing is kept: no RLS readout and no label delay.

    Returns fewer than T when a step's input, outputs or loss were not finite: that step
    is reported in ``pred``/``loss1``/``loss2`` but not applied, and the parameters stay
    as they were before it (with a label delay, the update of the step whose label came
    with it was applied).
    """
    A, R, B, D = params
    dims = network_dims(A, R, B, D)
    nb = xh1.shape[0] if isinstance(xh1, np.ndarray) and xh1.ndim == 2 else -1
    check_array("xh1", xh1, (nb, dims.n_hidden), dims.dtype)
    check_array("xh2", xh2, (nb, dims.n_hidden), dims.dtype)
    T = check_block(U, Y, dims, nb)
    check_array("pred", pred, (T, nb, dims.n_out), dims.dtype)
    check_array("loss1", loss1, (T,), np.dtype(np.float64))
    check_array("loss2", loss2, (T,), np.dtype(np.float64))
    check_array("counter", counter, (1,), np.dtype(np.int64))
    check_array("rng", rng, (2,), np.dtype(np.uint64))
    if rule not in RULE_CODES and rule != "wp":
        raise ConfigError(f"unknown perturbation rule {rule!r}: use one of anp, np, wp")
    if readout not in READOUT_CODES:
        raise ConfigError(f"unknown readout {readout!r}: use one of {', '.join(READOUT_CODES)}")
    check_workspace(ws, dims, nb, weight_noise=rule == "wp")
    if sigma <= 0 and rule != "anp":
        raise ConfigError(f"{rule.upper()} needs sigma > 0, got {sigma}")
    if not 0.0 < leak <= 1.0:
        raise ConfigError(f"leak must be in (0, 1], got {leak}")
    if not 0.0 < forgetting <= 1.0:
        raise ConfigError(f"forgetting must be in (0, 1], got {forgetting}")
    if int(guard_every) < 1:
        raise ConfigError(f"guard_every must be >= 1, got {guard_every}")
    rls = readout == "rls"
    if state is None:
        if rls or delay:
            raise ConfigError(
                "an RLS readout and a label delay keep state between calls: pass "
                "state=allocate_learn_state(dims, batch, delay=..., rls=...)"
            )
        state = allocate_learn_state(dims, nb)
    check_learn_state(state, dims, nb, delay=delay, rls=rls)
    bound = 0.0 if radius_bound is None else float(radius_bound)
    st = state
    if rule == "wp":
        if two_noisy:
            raise ConfigError("WP needs a clean replica: it cannot run with two noisy passes")
        if readout != "anp" or delay:
            raise ConfigError(
                "WP learns its readout by its own perturbation and with no label delay: "
                "use readout 'anp' and delay 0"
            )
        return int(
            wp_block(
                A, R, B, D, xh1, xh2, counter, rng, U, Y, pred, loss1, loss2,
                float(lr), float(sigma), float(eps), bool(decorrelation), int(resync_every),
                float(leak), bound, int(guard_every),
                ws.work, ws.work_out, ws.pend, ws.q, st.rec_h, st.rec_o, st.rec_f, st.counts,
                st.gv, ws.gw, ws.EA, ws.ER, ws.EB,
            )
        )  # fmt: skip
    lr_h = float(lr) if lr_hidden is None else float(lr_hidden)
    return int(
        perturbation_block(
            A, R, B, D, xh1, xh2, counter, rng, U, Y, pred, loss1, loss2,
            RULE_CODES[rule], float(lr), lr_h, float(sigma), float(eps), float(gain),
            bool(decorrelation), bool(two_noisy), int(resync_every), bool(output_cap),
            READOUT_CODES[readout], float(leak), float(readout_step), float(forgetting),
            float(readout_p0), bound, int(guard_every), int(delay),
            ws.work, ws.work_out, ws.pend, ws.q,
            st.rec_h, st.rec_o, st.rec_f, st.rec_u, st.P, st.ph, st.pp_flag, st.counts,
            st.gv, ws.gw,
        )
    )  # fmt: skip


def run_forward(
    params: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    xh: np.ndarray,
    U: np.ndarray,
    pred: np.ndarray,
    ws: Workspace,
    *,
    decorrelation: bool,
    leak: float = 1.0,
) -> None:
    """Predict a block with the clean network (no noise, no learning), advancing ``xh``."""
    A, R, B, D = params
    dims = network_dims(A, R, B, D)
    nb = xh.shape[0] if isinstance(xh, np.ndarray) and xh.ndim == 2 else -1
    check_array("xh", xh, (nb, dims.n_hidden), dims.dtype)
    T = check_block(U, None, dims, nb)
    check_array("pred", pred, (T, nb, dims.n_out), dims.dtype)
    check_array("workspace.x", ws.x, (nb, dims.n_hidden), dims.dtype)
    check_array("workspace.xhn", ws.xhn, (nb, dims.n_hidden), dims.dtype)
    if not 0.0 < leak <= 1.0:
        raise ConfigError(f"leak must be in (0, 1], got {leak}")
    forward_block(A, R, B, D, xh, U, pred, bool(decorrelation), float(leak), ws.x, ws.xhn)
