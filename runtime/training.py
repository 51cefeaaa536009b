"""Epoch training on the paper's tasks: online learning over each training sequence, then
evaluation on the held-out split.

Within an epoch every training sequence is streamed once, from a zero hidden state, one
update per timestep; the epoch's train MSE is the mean of the prequential losses (each
step scored before its update). Test MSE is measured on the test split from a zero state
without learning. Epoch 0 is the model before any learning.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError

from .learner import OnlineLearner
from .tasks import Task

#: Steps per kernel call: long enough that Python overhead vanishes, short enough that a
#: progress display stays live and the divergence guard looks often.
CHUNK = 2000


@dataclass
class EpochRecord:
    epoch: int
    train_mse: float | None
    test_mse: float
    extra: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "train_mse": self.train_mse,
            "test_mse": self.test_mse,
            **self.extra,
            "wall_s": self.wall_s,
        }


def evaluate(learner: OnlineLearner, task: Task, split: str = "test") -> EpochRecord:
    """Test MSE (and the task's extra metrics) of the learner on a split, without learning."""
    data = task.test if split == "test" else task.train
    mse, pred = learner.evaluate(data.inputs, data.targets)
    return EpochRecord(0, None, mse, task.extra_metrics(pred, split))


def train_epoch(
    learner: OnlineLearner, task: Task, on_chunk: Callable[[int], None] | None = None
) -> float:
    """Stream every training sequence once (batch streams at a time); return the train MSE."""
    inputs, targets = task.train.inputs, task.train.targets
    S, T = inputs.shape[0], inputs.shape[1]
    nb = learner.batch
    if S % nb != 0:
        raise ConfigError(f"batch {nb} does not divide the {S} training sequence(s) of {task.name}")
    total = 0.0
    for first in range(0, S, nb):
        learner.reset_state()
        # (S, T, n) -> (T, nb, n): streams of one batch side by side.
        U = np.swapaxes(inputs[first : first + nb], 0, 1)
        Y = np.swapaxes(targets[first : first + nb], 0, 1)
        for t0 in range(0, T, CHUNK):
            res = learner.run(U[t0 : t0 + CHUNK], Y[t0 : t0 + CHUNK])
            total += float(res.loss1.sum())
            if on_chunk is not None:
                on_chunk(res.loss1.shape[0] * nb)
    return total / (S // nb * T)


def train(
    learner: OnlineLearner,
    task: Task,
    epochs: int,
    *,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> list[EpochRecord]:
    """Epoch 0 (before learning) and ``epochs`` epochs of online learning, each evaluated."""
    t0 = time.perf_counter()
    first = evaluate(learner, task)
    first.wall_s = time.perf_counter() - t0
    records = [first]
    if on_epoch is not None:
        on_epoch(first)
    for epoch in range(1, epochs + 1):
        train_mse = train_epoch(learner, task, on_chunk)
        rec = evaluate(learner, task)
        rec.epoch, rec.train_mse, rec.wall_s = epoch, train_mse, time.perf_counter() - t0
        records.append(rec)
        if on_epoch is not None:
            on_epoch(rec)
    return records
