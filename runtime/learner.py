"""The online learner: two replicas of one network learning from a stream, on any device.

Prequential by construction: each step's prediction is made before that step's update.
The learner adds what every backend shares: input shaping, the divergence guard,
checkpoints, and evaluation on held-out data.

    >>> from twinpass.runtime import OnlineLearner
    >>> learner = OnlineLearner(n_in=1, n_out=1, n_hidden=100, seed=0)
    >>> prediction, loss1, loss2 = learner.step([0.3], [0.1])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinpass.core.errors import CheckpointError, ConfigError, DivergenceError, ShapeError
from twinpass.devices.base import Device, StepResult
from twinpass.devices.host import HostDevice

from .checkpoint import load_checkpoint, save_checkpoint
from .config import RuleConfig
from .params import Params

ON_DIVERGENCE = ("raise", "rollback")
CHECKPOINT_KIND = "twinpass.OnlineLearner"


@dataclass(frozen=True)
class RunResult:
    """Outputs of :meth:`OnlineLearner.run`: predictions (T, [batch,] n_out), losses (T,)."""

    predictions: np.ndarray
    loss1: np.ndarray
    loss2: np.ndarray
    rollbacks: int = 0


class OnlineLearner:
    """A recurrent network that learns online from (input, target) pairs.

    Parameters
    ----------
    n_in, n_out, n_hidden:
        Network size (one hidden layer of tanh units, linear readout).
    config:
        The learning rule (:class:`RuleConfig`); the default is stable ANP.
    batch:
        Number of independent streams learned together (the update is their mean).
    seed:
        Seeds the initial weights and the perturbation noise: same seed, same bits.
    dtype:
        ``float32`` (default) or ``float64``.
    device:
        Where the network runs; the host CPU by default.
    on_divergence:
        ``raise`` a :class:`DivergenceError` naming the step and rule, or ``rollback`` to
        the last parameters known good (taken at each block) and go on.
    max_weight:
        A weight larger than this in magnitude counts as divergence.
    label_delay:
        Steps between a step and the arrival of its label (docs/design.md §6): ``run``
        takes with the input of step s the label of step s - label_delay, and the output
        of step s is the forecast of the label that arrives at step s + label_delay,
        made from weights that learned only from labels that arrived up to step s.
        0 (default): input and label of the same step.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        n_hidden: int = 100,
        config: RuleConfig | None = None,
        *,
        batch: int = 1,
        seed: int = 0,
        dtype: str = "float32",
        device: Device | None = None,
        params: Params | None = None,
        on_divergence: str = "raise",
        max_weight: float = 1e4,
        label_delay: int = 0,
    ) -> None:
        if on_divergence not in ON_DIVERGENCE:
            raise ConfigError(f"on_divergence must be 'raise' or 'rollback', not {on_divergence!r}")
        if min(int(n_in), int(n_out), int(n_hidden), int(batch)) < 1:
            raise ConfigError("n_in, n_out, n_hidden and batch must all be >= 1")
        self.config = config if config is not None else RuleConfig()
        self.n_in, self.n_out, self.n_hidden = int(n_in), int(n_out), int(n_hidden)
        self.batch = int(batch)
        self.seed = int(seed)
        self.dtype = str(np.dtype(dtype))
        self.on_divergence = on_divergence
        self.max_weight = float(max_weight)
        if isinstance(label_delay, bool) or int(label_delay) < 0:
            raise ConfigError(f"label_delay must be a whole number >= 0, got {label_delay!r}")
        self.label_delay = int(label_delay)
        self.device: Device = device if device is not None else HostDevice(self.dtype)
        c = self.config
        if params is None:
            params = Params.init(
                n_in,
                n_hidden,
                n_out,
                seed=seed,
                dtype=self.dtype,
                spectral_radius=c.spectral_radius,
                input_scale=c.input_scale,
                readout_inputs=c.readout_inputs,
                zero_readout=c.readout in ("rls", "nlms"),
            )
        d = params.dims
        if (d.n_in, d.n_hidden, d.n_out) != (self.n_in, self.n_hidden, self.n_out):
            raise ShapeError(
                f"params are {d.n_in}-{d.n_hidden}-{d.n_out}, "
                f"expected {self.n_in}-{self.n_hidden}-{self.n_out}"
            )
        if d.readout_inputs != c.readout_inputs:
            raise ShapeError(
                f"B is {d.n_out} x {d.n_features}, but the rule's readout "
                + ("sees [hidden, input, 1]" if c.readout_inputs else "sees the hidden state")
                + f": expected {d.n_out} x "
                + str(d.n_hidden + (d.n_in + 1 if c.readout_inputs else 0))
            )
        self._load(params.arrays())
        self.steps = 0
        self.rollbacks = 0
        self._good: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None

    # -- learning ------------------------------------------------------------------------

    def step(self, u: Any, target: Any) -> tuple[np.ndarray, float, float]:
        """Learn from one sample: returns (prediction made before the update, loss1, loss2).

        ``u`` is (n_in,) or (batch, n_in); ``target`` likewise with n_out.
        """
        res = self.run(np.asarray(u)[None], np.asarray(target)[None])
        return res.predictions[0], float(res.loss1[0]), float(res.loss2[0])

    def run(self, inputs: Any, targets: Any) -> RunResult:
        """Learn online from a block: inputs (T, n_in) or (T, batch, n_in), targets alike.

        One update per timestep, computed in compiled code; nothing of the block is kept.
        """
        U, squeeze = self._as_block("inputs", inputs, self.n_in)
        Y, _ = self._as_block("targets", targets, self.n_out)
        T = U.shape[0]
        if Y.shape[0] != T:
            raise ShapeError(f"inputs have {T} steps but targets have {Y.shape[0]}")
        if self.on_divergence == "rollback" and self._good is None:
            self._snapshot()
        pred = np.zeros((T, self.batch, self.n_out), self.dtype)
        l1 = np.zeros(T)
        l2 = np.zeros(T)
        start = 0
        rollbacks = 0
        while start < T:
            res = self.device.step(U[start:], Y[start:])
            pred[start:], l1[start:], l2[start:] = res.predictions, res.loss1, res.loss2
            bad = self._first_bad(res)
            if bad is None:
                self.steps += T - start
                break
            if self.on_divergence == "raise":
                self.steps += bad
                what = (
                    "the loss or its update is not finite"
                    if res.applied < T - start
                    else f"a weight exceeds {self.max_weight:g} (seen at the end of a block)"
                )
                raise DivergenceError(
                    f"{self.config.name} diverged at step {self.steps}: {what} "
                    f"({self._divergence_lr()}); lower that learning rate, or use "
                    "on_divergence='rollback' to restore the last good parameters and go on",
                    step=self.steps,
                    rule=self.config.name,
                )
            # Roll back to the last good parameters and state; the diverged step is dropped.
            self._restore()
            rollbacks += 1
            self.steps += bad + 1
            start += bad + 1
        self.rollbacks += rollbacks
        if self.on_divergence == "rollback":
            self._snapshot()
        return RunResult(pred[:, 0] if squeeze else pred, l1, l2, rollbacks)

    def predict(
        self, inputs: Any, *, reset: bool = False, from_learning_state: bool = False
    ) -> np.ndarray:
        """Outputs without learning, on an evaluation state separate from the learning one.

        inputs (n_in,), (T, n_in) or (T, b, n_in) for any b; ``reset`` starts from a zero
        state, ``from_learning_state`` from the learning (clean) replica's state, as if the
        stream learned so far went on with ``inputs``; otherwise the evaluation state
        carries over between calls. The learning state is never moved.
        """
        if from_learning_state:
            if reset:
                raise ConfigError("predict: reset and from_learning_state exclude each other")
            state = self.device.export_state()
            if "xh1" not in state:
                raise ConfigError(
                    f"the {self.device.info().name} device does not expose its learning state: "
                    "predict from it on the host"
                )
            state["xh_eval"] = state["xh1"]
            self.device.import_state(state)
        arr = np.asarray(inputs, dtype=self.dtype)
        if arr.ndim == 1:
            return self.device.predict(arr[None, None], reset=reset)[0, 0]
        if arr.ndim == 2:
            return self.device.predict(arr[:, None], reset=reset)[:, 0]
        return self.device.predict(np.ascontiguousarray(arr), reset=reset)

    def evaluate(self, inputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
        """Mean squared error on held-out sequences from a zero state, without learning.

        inputs (S, T, n_in) and targets (S, T, n_out): S independent sequences. Returns the
        MSE over sequences, steps and outputs, and the predictions shaped like targets.
        """
        U = np.ascontiguousarray(np.swapaxes(np.asarray(inputs, self.dtype), 0, 1))
        pred = np.swapaxes(self.device.predict(U, reset=True), 0, 1)
        err = pred.astype(np.float64) - np.asarray(targets, np.float64)
        return float(np.mean(err * err)), pred

    def reset_state(self) -> None:
        """Start a new sequence: zero both replicas' hidden states, keep the weights."""
        self.device.reset_state()

    def counts(self) -> dict[str, int]:
        """The learning rules' event counters (guard projections, RLS resets, unlabelled
        steps, ...) where the device keeps them; empty otherwise."""
        counts = getattr(self.device, "counts", None)
        return counts() if callable(counts) else {}

    @property
    def params(self) -> Params:
        """A copy of the current parameters."""
        return Params.from_arrays(self.device.read_model())

    # -- checkpoints ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> None:
        """Write a checkpoint atomically: weights, replica states, noise state, counters."""
        arrays = {f"param.{k}": v for k, v in self.device.read_model().items()}
        arrays.update({f"state.{k}": v for k, v in self.device.export_state().items()})
        save_checkpoint(
            path,
            arrays,
            {
                "kind": CHECKPOINT_KIND,
                "rule": self.config.to_dict(),
                "n_in": self.n_in,
                "n_out": self.n_out,
                "n_hidden": self.n_hidden,
                "batch": self.batch,
                "seed": self.seed,
                "dtype": self.dtype,
                "steps": self.steps,
                "rollbacks": self.rollbacks,
                "on_divergence": self.on_divergence,
                "max_weight": self.max_weight,
                "label_delay": self.label_delay,
                "device": self.device.info().name,
                "user": dict(meta or {}),
            },
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: Device | None = None
    ) -> tuple[OnlineLearner, dict[str, Any]]:
        """Resume from a checkpoint; returns the learner and the user metadata saved with it."""
        ckpt = load_checkpoint(path)
        m = ckpt.meta
        if m.get("kind") != CHECKPOINT_KIND:
            raise CheckpointError(
                f"{path}: not an OnlineLearner checkpoint (kind {m.get('kind')!r})"
            )
        saved_on = m.get("device", "host")
        given = "host" if device is None else device.info().name
        if saved_on != given:
            raise CheckpointError(
                f"{path}: saved from the {saved_on!r} device, but resumed on {given!r}: "
                f"pass device=make_device({saved_on!r}, ...) with the options it was made with"
            )
        try:
            params = Params.from_arrays(
                {k: ckpt.arrays[f"param.{k}"] for k in ("A", "R", "B", "D")}, m["dtype"]
            )
            learner = cls(
                m["n_in"],
                m["n_out"],
                m["n_hidden"],
                RuleConfig.from_dict(m["rule"]),
                batch=m["batch"],
                seed=m["seed"],
                dtype=m["dtype"],
                device=device,
                params=params,
                on_divergence=m["on_divergence"],
                max_weight=m["max_weight"],
                label_delay=int(m.get("label_delay", 0)),
            )
            learner.device.import_state(
                {k[6:]: v for k, v in ckpt.arrays.items() if k.startswith("state.")}
            )
        except (KeyError, ShapeError, ConfigError) as exc:
            raise CheckpointError(f"{path}: inconsistent checkpoint ({exc})") from exc
        learner.steps = int(m["steps"])
        learner.rollbacks = int(m["rollbacks"])
        return learner, dict(m.get("user", {}))

    # -- helpers ---------------------------------------------------------------------------

    def _as_block(self, name: str, arr: Any, width: int) -> tuple[np.ndarray, bool]:
        a = np.asarray(arr)
        if not np.issubdtype(a.dtype, np.number):
            raise ShapeError(f"{name} must be numeric, got dtype {a.dtype}")
        if a.ndim == 2 and self.batch == 1:
            a = a[:, None, :]
            squeeze = True
        elif a.ndim == 3:
            squeeze = False
        else:
            shape = f"(T, {width})" if self.batch == 1 else f"(T, {self.batch}, {width})"
            raise ShapeError(f"{name} has shape {a.shape}, expected {shape}")
        if a.shape[1:] != (self.batch, width):
            raise ShapeError(
                f"{name} has shape {a.shape}, expected (T, {self.batch}, {width}) "
                f"for a batch of {self.batch} streams of width {width}"
            )
        return np.ascontiguousarray(a, dtype=self.dtype), squeeze

    def _divergence_lr(self) -> str:
        """The learning rate to name in a divergence message: ``lr_hidden`` when only the
        hidden weights (A, R) are out of bounds or not finite, ``lr`` when only the readout's
        (B, D) are, both when both are or when neither is (a non-finite loss or update
        leaves the weights as they were, so the step that caused it is unknown)."""
        lr, lr_h = self.config.lr, self.config.hidden_lr
        if lr_h == lr:
            return f"lr={lr:g}"
        model = self.device.read_model()

        def bad(names: tuple[str, ...]) -> bool:
            return any(
                not (np.max(np.abs(model[k]), initial=0.0) <= self.max_weight) for k in names
            )

        hidden, readout = bad(("A", "R")), bad(("B", "D"))
        if hidden and not readout:
            return f"lr_hidden={lr_h:g}, the hidden weights' step"
        if readout and not hidden:
            return f"lr={lr:g}, the readout's step"
        return f"lr={lr:g} for the readout, lr_hidden={lr_h:g} for the hidden weights"

    def _first_bad(self, res: StepResult) -> int | None:
        """Index of the first diverged step of a block, or None if the block is healthy."""
        T = res.loss1.shape[0]
        if res.applied < T:
            return res.applied
        w = self.device.max_abs_weight()
        if not (w <= self.max_weight):  # also catches NaN
            return T - 1
        return None

    def _snapshot(self) -> None:
        self._good = (self.device.read_model(), self.device.export_state())

    def _restore(self) -> None:
        assert self._good is not None
        model, state = self._good
        self._load(model)
        self.device.import_state(state)

    def _load(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.device.load(
            arrays,
            self.config.resolve(self.n_in, self.n_hidden, self.n_out),
            batch=self.batch,
            seed=self.seed,
            label_delay=self.label_delay,
        )
