"""The device abstraction: one interface for every place a network can learn.

A device holds a model (parameters and the learning rule's hyperparameters) and both
replicas' state, and learns online from blocks of inputs and targets. The runtime's
:class:`~twinpass.runtime.learner.OnlineLearner` drives any device unchanged. The interface
speaks plain data: arrays, and the learning rule as a :class:`~twinpass.core.rule_spec.RuleSpec`
(frozen, typed, every default resolved once by ``RuleConfig.resolve``), so a backend never
needs the runtime's types and never works out a default of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.core.rule_spec import RuleSpec, check_rule_spec

#: The arrays of a model, in the order every backend and the model image keep them.
PARAM_NAMES = ("A", "R", "B", "D")


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse a model mapping that lacks one of :data:`PARAM_NAMES` (ShapeError)."""
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise ShapeError(f"model is missing parameter(s) {', '.join(missing)}")


def check_batch(batch: int) -> None:
    if int(batch) < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")


def check_rule(
    rule: object,
    info: DeviceInfo,
    shape: tuple[int, int, int],
    *,
    why: str = "",
) -> RuleSpec:
    """The resolved rule a backend was given, if it can run it on a network of ``shape``.

    Refuses (ConfigError) anything but a :class:`~twinpass.core.rule_spec.RuleSpec` (a
    mapping would leave the backend to guess missing defaults), a rule resolved for another
    network size (its gain would be another network's), and a rule or readout the backend
    does not list in ``info``, naming the ones it can run; ``why`` is added to the refusal
    of a rule.
    """
    spec = check_rule_spec(rule)
    if spec.shape != tuple(shape):
        raise ConfigError(
            "the rule was resolved for a {}-{}-{} network, the model is {}-{}-{}: resolve "
            "it for this one (RuleConfig.resolve)".format(*spec.shape, *shape)
        )
    if spec.rule not in info.rules:
        raise ConfigError(
            f"rule {spec.rule!r} is not one the {info.name} device runs: it runs "
            f"{', '.join(info.rules)}{why}"
        )
    if spec.readout not in info.readouts:
        raise ConfigError(
            f"readout {spec.readout!r} is not one the {info.name} device runs: it offers "
            f"{', '.join(info.readouts)} (choose it with --readout)"
        )
    return spec


def check_label_delay(label_delay: int, most: int | None, device: str) -> None:
    """Refuse a label delay below 0 or above what the backend can hold (``most``)."""
    if isinstance(label_delay, bool) or not isinstance(label_delay, (int, np.integer)):
        raise ConfigError(f"label_delay must be a whole number of steps, got {label_delay!r}")
    if label_delay < 0:
        raise ConfigError(f"label_delay must be >= 0, got {label_delay}")
    if most is not None and label_delay > most:
        raise ConfigError(
            f"the {device} device learns with a label delay of at most {most} step(s), "
            f"not {label_delay}"
        )


@dataclass(frozen=True)
class DeviceInfo:
    """What a backend is and what it can do."""

    name: str
    description: str
    rules: tuple[str, ...]
    dtypes: tuple[str, ...]
    exact: bool  # arithmetic equals the float reference (no device noise or quantisation)
    max_hidden: int | None = None
    readouts: tuple[str, ...] = ("anp",)  # readout rules it runs (RuleConfig.readout)
    max_label_delay: int | None = 0  # longest label delay it holds (None: no limit)
    readout_p0_max: float | None = None  # the largest RLS P0 it holds (None: no limit)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """What a block of online steps produced.

    predictions (T, batch, n_out): replica 1's output at each step, made before that
    step's update. loss1, loss2 (T,): the replicas' losses (mean over outputs and batch).
    applied: how many steps were applied; fewer than T means step ``applied`` produced a
    non-finite loss and was not applied (nor any after it).
    """

    predictions: np.ndarray
    loss1: np.ndarray
    loss2: np.ndarray
    applied: int


@runtime_checkable
class Device(Protocol):
    """A backend on which a two-replica network learns online."""

    def info(self) -> DeviceInfo:
        """Capabilities of the backend."""

    def load(
        self,
        params: Mapping[str, np.ndarray],
        rule: RuleSpec,
        *,
        batch: int = 1,
        seed: int = 0,
        label_delay: int = 0,
    ) -> None:
        """Take a model: arrays A, R, B, D and the rule resolved for it
        (``RuleConfig.resolve(n_in, n_hidden, n_out)``).

        Resets both replicas' hidden state and seeds the device's noise. ``label_delay``:
        the steps between a step and the arrival of its label (docs/design.md §6).
        A rule or readout the device does not list in :meth:`info` is refused
        (ConfigError) naming the ones it runs.
        """

    def rule_spec(self) -> RuleSpec:
        """The resolved rule the device runs: the one :meth:`load` received, as the
        device reports it (DeviceError before a load)."""

    def read_model(self) -> dict[str, np.ndarray]:
        """A copy of the current parameters A, R, B, D."""

    def reset_state(self) -> None:
        """Zero both replicas' hidden state (start of a new sequence); keep the weights."""

    def step(self, inputs: np.ndarray, targets: np.ndarray) -> StepResult:
        """Learn online over a block: inputs (T, batch, n_in), targets (T, batch, n_out)."""

    def predict(self, inputs: np.ndarray, *, reset: bool = True) -> np.ndarray:
        """Outputs of the model without learning, on an evaluation state of its own.

        inputs (T, b, n_in) with any batch size b; ``reset`` starts from a zero state,
        otherwise the evaluation state carries over from the previous call.
        """

    def export_state(self) -> dict[str, np.ndarray]:
        """Everything besides the parameters needed to continue bit-identically."""

    def import_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`export_state` returned (after :meth:`load`)."""

    def max_abs_weight(self) -> float:
        """The largest absolute parameter value (NaN if any is not finite)."""

    def close(self) -> None:
        """Release the backend; closing twice is harmless."""
