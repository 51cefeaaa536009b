"""The data types every task hands to the learner: a `Task` of two `Split`s plus metadata.

A split holds S independent sequences (streams) of T steps, float64, shaped ``(S, T, n)``;
the learner runs the S streams side by side as its batch. A task's ``metadata`` is plain
JSON (every generator parameter, the pairing, split boundaries, scaling constants) so that
a run record says exactly which data it saw, and ``metadata["params"]`` fed back to
``make_task(name, **params)`` rebuilds the same task.

The dataclasses are frozen but compare by identity (``eq=False``): comparing or hashing
arrays field by field is ill-defined. The arrays themselves stay writable, because some
kernels are compiled for writable arrays only; treat them as read-only all the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError, ShapeError

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class Split:
    """S streams of T steps: ``inputs`` (S, T, n_in) and ``targets`` (S, T, n_out), float64."""

    inputs: np.ndarray
    targets: np.ndarray

    def __post_init__(self) -> None:
        for label, arr in (("inputs", self.inputs), ("targets", self.targets)):
            if not isinstance(arr, np.ndarray) or arr.dtype != np.float64 or arr.ndim != 3:
                raise ShapeError(
                    f"Split.{label} must be a float64 array shaped (S, T, n); got "
                    f"{getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}"
                )
        if self.inputs.shape[:2] != self.targets.shape[:2]:
            raise ShapeError(
                f"Split inputs {self.inputs.shape} and targets {self.targets.shape} must share "
                "their first two axes (streams S, steps T)"
            )

    @property
    def n_streams(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.inputs.shape[1])


@dataclass(frozen=True, eq=False)
class Task:
    """A named task: a train and a test `Split` plus JSON-serialisable ``metadata``."""

    name: str
    train: Split
    test: Split
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train.inputs.shape[2] != self.test.inputs.shape[2]:
            raise ShapeError(
                f"task {self.name!r}: train and test inputs differ in width "
                f"({self.train.inputs.shape[2]} vs {self.test.inputs.shape[2]})"
            )
        if self.train.targets.shape[2] != self.test.targets.shape[2]:
            raise ShapeError(
                f"task {self.name!r}: train and test targets differ in width "
                f"({self.train.targets.shape[2]} vs {self.test.targets.shape[2]})"
            )

    @property
    def n_in(self) -> int:
        return int(self.train.inputs.shape[2])

    @property
    def n_out(self) -> int:
        return int(self.train.targets.shape[2])

    def split(self, split: str) -> Split:
        """The `Split` called ``split`` ("train" or "test")."""
        if split == "train":
            return self.train
        if split == "test":
            return self.test
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")

    def extra_metrics(self, predictions: np.ndarray, split: str) -> dict[str, float]:
        """Task-specific scores of ``predictions`` (shaped like the split's targets).

        Tasks without extras return ``{}``; the copy task counts bit errors.
        """
        self._check_predictions(predictions, split)
        return {}

    def _check_predictions(self, predictions: np.ndarray, split: str) -> np.ndarray:
        expected = self.split(split).targets.shape
        arr = np.asarray(predictions)
        if arr.shape != expected:
            raise ShapeError(
                f"task {self.name!r}: predictions for the {split} split must be shaped "
                f"{expected} like its targets, got {arr.shape}"
            )
        return arr


def int_param(name: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``, or ConfigError naming ``name``.

    bool is refused although it is an int subclass: ``length=True`` is a mistake.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value
