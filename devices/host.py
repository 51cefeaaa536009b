"""The host backend: the compiled kernels on this CPU, exact float arithmetic.

It owns the parameters, both replicas' hidden states, the noise generator's state and
preallocated scratch, and calls :mod:`twinpass.kernels` once per block.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twinpass.core.errors import ConfigError, DeviceError, ShapeError
from twinpass.core.rule_spec import RuleSpec
from twinpass.kernels.api import (
    LEARN_STATE_FIELDS,
    Dims,
    allocate_learn_state,
    allocate_workspace,
    check_array,
    network_dims,
    run_forward,
    run_perturbation,
)
from twinpass.kernels.bptt import (
    STATE_FIELDS,
    bptt_block,
    bptt_flush,
    bptt_reset,
    bptt_scratch,
)
from twinpass.kernels.gradient_api import (
    GRADIENT_RULES,
    GRADIENT_STATE_FIELDS,
    allocate_gradient_state,
    allocate_gradient_workspace,
    run_gradient,
)
from twinpass.kernels.perturbation import C_FILL, C_HEAD
from twinpass.kernels.rng import new_rng_state

from .base import (
    PARAM_NAMES,
    DeviceInfo,
    StepResult,
    check_batch,
    check_label_delay,
    check_params,
    check_rule,
)

#: Names of the kernel's event counters, in the order of ``LearnState.counts``.
COUNT_NAMES = (
    "steps",
    "pending_labels",
    "ring_head",
    "guard_projections",
    "rls_resets",
    "rls_bounded",
    "unlabelled_steps",
)


class HostDevice:
    """Learning on this machine's CPU with the Numba kernels (float32 by default)."""

    name = "host"

    def __init__(self, dtype: str = "float32") -> None:
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            self.dtype = None
        if self.dtype not in (np.float32, np.float64):
            raise ConfigError(f"host device computes in float32 or float64, not {dtype!r}")
        self._params: tuple[np.ndarray, ...] | None = None
        self._closed = False

    def info(self) -> DeviceInfo:
        return DeviceInfo(
            name=self.name,
            description="this CPU, Numba-compiled kernels, exact float arithmetic",
            rules=("anp", "np", "wp", "bp", *GRADIENT_RULES),
            dtypes=("float32", "float64"),
            exact=True,
            readouts=("rls", "nlms", "anp"),
            max_label_delay=None,
        )

    # -- model ---------------------------------------------------------------------------

    def load(
        self,
        params: Mapping[str, np.ndarray],
        rule: RuleSpec,
        *,
        batch: int = 1,
        seed: int = 0,
        label_delay: int = 0,
    ) -> None:
        self._check_open()
        check_params(params)
        check_batch(batch)
        arrays = tuple(
            np.ascontiguousarray(np.array(params[k], dtype=self.dtype)) for k in PARAM_NAMES
        )
        dims = network_dims(*arrays)
        spec = check_rule(rule, self.info(), (dims.n_in, dims.n_hidden, dims.n_out))
        # e-prop keeps a ring of past eligibility traces for a delayed label (docs/design.md
        # §3.8); RTRL and UORO pair each step's influence with its own label only.
        grad = spec.rule in GRADIENT_RULES and spec.rule != "eprop"
        check_label_delay(label_delay, 0 if grad else None, f"{self.name} ({spec.rule})")
        self._rule: RuleSpec = spec
        self._dims: Dims = dims
        self._params = arrays
        self.batch = int(batch)
        name = spec.rule
        self._bp = name == "bp"
        self._grad = name in GRADIENT_RULES
        self._decor = spec.decorrelation
        nb, n = self.batch, dims.n_hidden
        self._ws = allocate_workspace(dims, nb, weight_noise=name == "wp")
        self._xh1 = np.zeros((nb, n), self.dtype)
        self._xh2 = np.zeros((nb, n), self.dtype)
        self._counter = np.zeros(1, np.int64)
        self._rng = new_rng_state(seed)
        self._delay = int(label_delay)
        self._xh_eval = np.zeros((nb, n), self.dtype)
        self._eval_ws = allocate_workspace(dims, nb)
        self._learn = allocate_learn_state(
            dims,
            nb,
            delay=self._delay,
            rls=spec.readout == "rls" and not self._bp,
            p0=spec.readout_p0,
            seed=seed,
        )
        if self._grad:
            self._gstate = allocate_gradient_state(
                dims, nb, name, feedback=spec.feedback, seed=seed, delay=self._delay
            )
            self._gws = allocate_gradient_workspace(dims, nb, name, decorrelation=self._decor)
        if self._bp:
            self._bufs = bptt_scratch(
                dims.n_in,
                n,
                dims.n_out,
                nb,
                spec.bptt_window,
                self.dtype,
                adam=spec.optimizer == "adam",
                n_features=dims.n_features,
            )

    def rule_spec(self) -> RuleSpec:
        self._loaded()
        return self._rule

    def read_model(self) -> dict[str, np.ndarray]:
        params = self._loaded()
        return {k: m.copy() for k, m in zip(PARAM_NAMES, params, strict=True)}

    def max_abs_weight(self) -> float:
        return max(float(np.max(np.abs(m))) for m in self._loaded())

    def reset_state(self) -> None:
        self._loaded()
        self._xh1.fill(0)
        self._xh2.fill(0)
        self._counter[0] = 0
        # Pending updates belong to the old sequence: their labels will never come.
        self._learn.counts[C_FILL] = 0
        self._learn.counts[C_HEAD] = 0
        if self._grad:
            self._gstate.reset()
        r = self._rule
        if self._bp and r.bptt_mode == "chunked":
            # The sequence has ended: a chunked window's partial gradient is applied now,
            # or the last T mod K steps of every sequence would never be learned.
            A, R, B, D = self._params
            bptt_flush(
                A,
                R,
                B,
                D if self._decor else None,
                self._bufs,
                lr=r.lr,
                optimizer=r.optimizer,
                clip=r.clip,
                leak=r.leak,
            )
        if self._bp:
            bptt_reset(self._bufs)

    # -- learning ------------------------------------------------------------------------

    def step(self, inputs: np.ndarray, targets: np.ndarray) -> StepResult:
        params = self._loaded()
        U = self._as_block("inputs", inputs, self.batch, self._dims.n_in)
        Y = self._as_block("targets", targets, self.batch, self._dims.n_out)
        if U.shape[0] != Y.shape[0]:
            raise ShapeError(f"inputs have {U.shape[0]} steps but targets have {Y.shape[0]}")
        T = U.shape[0]
        pred = np.zeros((T, self.batch, self._dims.n_out), self.dtype)
        loss1 = np.zeros(T)
        r = self._rule
        if self._bp:
            A, R, B, D = params
            applied = bptt_block(
                U,
                Y,
                pred,
                loss1,
                A,
                R,
                B,
                D if self._decor else None,
                self._bufs,
                lr=r.lr,
                optimizer=r.optimizer,
                mode=r.bptt_mode,
                clip=r.clip,
                leak=r.leak,
                decor_eps=r.eps if self._decor else 0.0,
            )
            return StepResult(pred, loss1, loss1.copy(), applied)
        if self._grad:
            applied = run_gradient(
                params,
                self._xh1,
                self._rng,
                U,
                Y,
                pred,
                loss1,
                self._gws,
                self._gstate,
                self._learn,
                rule=r.rule,
                lr=r.lr,
                lr_hidden=r.lr_hidden,
                eps=r.eps,
                decorrelation=self._decor,
                readout=r.readout,
                leak=r.leak,
                readout_step=r.readout_step,
                forgetting=r.forgetting,
                readout_p0=r.readout_p0,
                radius_bound=r.radius_bound,
                guard_every=r.guard_every,
                feedback=r.feedback,
                delay=self._delay,
            )
            # One clean replica: its loss stands for both.
            return StepResult(pred, loss1, loss1.copy(), applied)
        loss2 = np.zeros(T)
        applied = run_perturbation(
            params,
            self._xh1,
            self._xh2,
            self._counter,
            self._rng,
            U,
            Y,
            pred,
            loss1,
            loss2,
            self._ws,
            rule=r.rule,
            lr=r.lr,
            sigma=r.sigma,
            eps=r.eps,
            gain=r.gain,
            decorrelation=self._decor,
            two_noisy=r.two_noisy_passes,
            resync_every=r.resync_every,
            output_cap=r.output_cap,
            state=self._learn,
            readout=r.readout,
            lr_hidden=r.lr_hidden,
            leak=r.leak,
            readout_step=r.readout_step,
            forgetting=r.forgetting,
            readout_p0=r.readout_p0,
            radius_bound=r.radius_bound,
            guard_every=r.guard_every,
            delay=self._delay,
        )
        return StepResult(pred, loss1, loss2, applied)

    def counts(self) -> dict[str, int]:
        """The learning rules' event counters (guard projections, RLS resets, ...)."""
        c = self._learn.counts
        return {name: int(c[i]) for i, name in enumerate(COUNT_NAMES)}

    def predict(self, inputs: np.ndarray, *, reset: bool = True) -> np.ndarray:
        params = self._loaded()
        nb = inputs.shape[1] if isinstance(inputs, np.ndarray) and inputs.ndim == 3 else -1
        U = self._as_block("inputs", inputs, nb, self._dims.n_in)
        if reset or self._xh_eval.shape[0] != nb:
            self._xh_eval = np.zeros((nb, self._dims.n_hidden), self.dtype)
        if self._eval_ws.x.shape[0] != nb:
            self._eval_ws = allocate_workspace(self._dims, nb)
        pred = np.zeros((U.shape[0], nb, self._dims.n_out), self.dtype)
        run_forward(
            params,
            self._xh_eval,
            U,
            pred,
            self._eval_ws,
            decorrelation=self._decor,
            leak=self._rule.leak,
        )
        return pred

    # -- state for checkpoints -------------------------------------------------------------

    def export_state(self) -> dict[str, np.ndarray]:
        state = self._state_arrays()
        state["xh_eval"] = self._xh_eval
        return {k: v.copy() for k, v in state.items()}

    def import_state(self, state: Mapping[str, np.ndarray]) -> None:
        targets = self._state_arrays()
        if "xh_eval" in state:
            # The evaluation state's batch is whatever predict() last used.
            xe = np.asarray(state["xh_eval"])
            if xe.ndim != 2 or xe.shape[1] != self._dims.n_hidden:
                raise ShapeError(f"device state 'xh_eval' has shape {xe.shape}")
            self._xh_eval = np.ascontiguousarray(xe, dtype=self.dtype).copy()
        for key, dst in targets.items():
            if key not in state:
                raise ShapeError(f"device state lacks {key!r}: it was saved by another rule?")
            src = np.asarray(state[key])
            if src.shape != dst.shape:
                raise ShapeError(
                    f"device state {key!r} has shape {src.shape}, expected {dst.shape}: "
                    "it was saved by another rule, readout or network size?"
                )
            dst[...] = src.astype(dst.dtype, copy=False)

    def close(self) -> None:
        self._closed = True
        self._params = None

    # -- helpers ---------------------------------------------------------------------------

    def _state_arrays(self) -> dict[str, np.ndarray]:
        """The learning state, by name: what a checkpoint must hold besides the weights."""
        self._loaded()
        state = {"xh1": self._xh1, "xh2": self._xh2, "counter": self._counter, "rng": self._rng}
        state.update({f"learn.{f}": getattr(self._learn, f) for f in LEARN_STATE_FIELDS})
        if self._bp:
            state.update({f"bptt.{f}": getattr(self._bufs, f) for f in STATE_FIELDS})
        if self._grad:
            state.update({f"grad.{f}": getattr(self._gstate, f) for f in GRADIENT_STATE_FIELDS})
            if self._delay > 0:
                state["grad.ring"] = self._gstate.ring
        return state

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceError("host device is closed")

    def _loaded(self) -> tuple[np.ndarray, ...]:
        self._check_open()
        if self._params is None:
            raise DeviceError("no model loaded: call load() first")
        return self._params

    def _as_block(self, name: str, arr: np.ndarray, nb: int, width: int) -> np.ndarray:
        return as_block(name, arr, nb, width, self.dtype)


def as_block(name: str, arr: np.ndarray, nb: int, width: int, dtype: np.dtype) -> np.ndarray:
    """Inputs in the device dtype and layout; a copy when converting, never modified.

    Shared by the backends that compute on this machine (host, analog).
    """
    if not isinstance(arr, np.ndarray) or arr.ndim != 3:
        raise ShapeError(f"{name} must be a 3-d array shaped (T, batch, {width})")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ShapeError(f"{name} must hold floats, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=dtype)
    return check_array(name, out, (arr.shape[0], nb, width), dtype)
