"""Continual learning from a stream of sensor rows: forecasting, evaluated prequentially.

`StreamForecaster` learns to predict a target column ``horizon`` rows ahead, in constant
memory, from rows handed to it in blocks of any size (River's ``learn_one``, a block at a
time): each block is normalised, learned in one compiled call and scored.

Framing, for data row t (0-based) and horizon h:

- The input vector of row t is the chosen input columns plus the target column's own value
  at row t, each standardised online with the statistics of rows before t
  (:mod:`twinpass.runtime.normalize`).
- At row t >= h the learner takes one step with input u[t-h] and target y[t]: both have
  arrived, so it never sees a target early. Its prediction for y[t] is made before that
  step's update (prequential), from the hidden state driven by inputs up to u[t-h].
  With h > 1 the weights making that prediction have learned from targets up to row t-1,
  and the prediction is mapped back to the target's units with the statistics of rows
  before t: the usual update lag of an online learner with delayed labels. With h = 1
  this is exactly what was known when u[t-1] arrived.
- The first h rows only fill the pipeline: no step, no score.

Three predictors are scored on every step, in the target's original units (running MSE
and an EMA of the squared error, :mod:`twinpass.runtime.metrics`):

- ``model``: the learner;
- ``persistence``: y[t-h], the latest target value known at input time;
- ``initial``: a frozen copy of the initial network, fed the same inputs without learning,
  which shows how much of the model's skill was learned.

`StreamSession` drives a forecaster from a source (:mod:`twinpass.runtime.sources`):
blocks of up to ``chunk_size`` rows, cut so that checkpoints fall exactly every
``checkpoint_every`` steps, a checkpoint on stop requests (SIGINT/SIGTERM) and at the end,
and a metrics file continued across resumes. Everything carried from block to block is
sequential and saved, so a resumed run is bit-identical to one that never stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from twinpass.devices.base import Device
from twinpass.kernels.errors import CheckpointError, ConfigError, DataError

from .config import RuleConfig
from .learner import OnlineLearner
from .metrics import DEFAULT_ALPHA, MetricsLog, PrequentialMetrics
from .normalize import RunningNormalizer
from .params import Params
from .sources import Source

PREDICTORS = ("model", "persistence", "initial")
CHUNK = 4096
"""Rows per block: long enough that Python's share vanishes, short enough to stay live."""

_FORMAT = "twinpass.stream"
_VERSION = 1


@dataclass(frozen=True)
class StreamStep:
    """What one block taught: for its m steps, predictions (m, 3) of the model, persistence
    and the initial model in the target's units (made before learning), the truth (m,), and
    the metric snapshot rows that fell in the block."""

    predictions: np.ndarray
    truth: np.ndarray
    metric_rows: np.ndarray


def _pack(a: np.ndarray) -> dict[str, Any]:
    """An array as msgpack-native data (exact bytes), for checkpoint metadata."""
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unpack(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


class StreamForecaster:
    """Forecasts the last column of a stream ``horizon`` rows ahead, learning online.

    Parameters
    ----------
    n_inputs:
        Columns per row, target last (the target's own value is an input too).
    horizon:
        Rows ahead to predict (>= 1).
    n_hidden, config, seed, dtype:
        The network and its learning rule, as for :class:`OnlineLearner`.
    ema_alpha, metrics_every:
        EMA weight of the newest squared error; snapshot interval of the metrics.
    device:
        Where the model learns (default: the host); the frozen initial twin always runs on
        the host, as a clean baseline.
    """

    def __init__(
        self,
        n_inputs: int,
        *,
        horizon: int = 1,
        n_hidden: int = 100,
        config: RuleConfig | None = None,
        seed: int = 0,
        dtype: str = "float32",
        ema_alpha: float = DEFAULT_ALPHA,
        metrics_every: int = 100,
        device: Device | None = None,
        _learner: OnlineLearner | None = None,
        _initial: Params | None = None,
    ) -> None:
        if int(horizon) < 1:
            raise ConfigError(f"horizon must be >= 1, got {horizon}")
        self.n_inputs = int(n_inputs)
        self.horizon = int(horizon)
        self.learner = _learner or OnlineLearner(
            self.n_inputs, 1, n_hidden, config, seed=seed, dtype=dtype, device=device
        )
        # A frozen twin of the initial network: same weights, never updated.
        ln = self.learner
        self.initial = OnlineLearner(
            ln.n_in,
            1,
            ln.n_hidden,
            ln.config,
            seed=ln.seed,
            dtype=ln.dtype,
            params=_initial if _initial is not None else ln.params,
        )
        self.normalizer = RunningNormalizer(self.n_inputs, keep=-1)
        self.metrics = PrequentialMetrics(PREDICTORS, alpha=ema_alpha, every=metrics_every)
        self._pend_z = np.empty((0, self.n_inputs))
        self._pend_y = np.empty(0)
        self.rows_seen = 0

    @property
    def steps(self) -> int:
        """Learning steps taken (= rows seen minus the horizon's warm-up)."""
        return self.metrics.steps

    def rows_for(self, steps: int) -> int:
        """Rows still needed to take ``steps`` more steps."""
        return int(steps) + self.horizon - len(self._pend_y)

    def learn_block(self, rows: np.ndarray) -> StreamStep:
        """Predict, learn and score a block of rows (n, n_inputs), target last."""
        X = np.ascontiguousarray(rows, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise DataError(f"rows must be shaped (n, {self.n_inputs}), got {X.shape}")
        K = len(PREDICTORS)
        P, truth = np.empty((0, K)), np.empty(0)
        snap = np.empty((0, len(self.metrics.columns)))
        if X.shape[0] == 0:
            return StreamStep(P, truth, snap)
        Z, loc, scale = self.normalizer.update(X)
        h, p = self.horizon, self._pend_y.shape[0]
        Zc = np.concatenate([self._pend_z, Z])
        yc = np.concatenate([self._pend_y, X[:, -1]])
        m = yc.shape[0] - h
        if m > 0:
            dt = self.learner.dtype
            U = Zc[:m].astype(dt)
            res = self.learner.run(U, Zc[h:, -1:].astype(dt))
            p_init = self.initial.predict(U, reset=False)
            # Target rows are the block's rows h - p onwards (the pending rows are inputs).
            lo, sc = loc[h - p :], scale[h - p :]
            P = np.empty((m, K))
            P[:, 0] = res.predictions[:, 0] * sc + lo
            P[:, 1] = yc[:m]
            P[:, 2] = p_init[:, 0] * sc + lo
            truth = yc[h:]
            snap = self.metrics.update(P, truth)
        self._pend_z = Zc[-h:].copy()
        self._pend_y = yc[-h:].copy()
        self.rows_seen += X.shape[0]
        return StreamStep(P, truth, snap)

    def summary(self) -> dict[str, Any]:
        mse, ema = self.metrics.mse(), self.metrics.ema_mse()
        return {
            "steps": self.steps,
            "rows": self.rows_seen,
            "mse": mse["model"],
            "ema_mse": ema["model"],
            "persistence_mse": mse["persistence"],
            "persistence_ema_mse": ema["persistence"],
            "initial_model_mse": mse["initial"],
            "initial_model_ema_mse": ema["initial"],
            "ema_alpha": self.metrics.alpha,
        }

    # -- checkpoints ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything besides the learner's own checkpoint, as msgpack-native data."""
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "horizon": self.horizon,
            "n_inputs": self.n_inputs,
            "rows_seen": self.rows_seen,
            "normalizer": self.normalizer.state(),
            "metrics": self.metrics.state(),
            "pending_z": _pack(self._pend_z),
            "pending_y": _pack(self._pend_y),
            "initial_params": {k: _pack(v) for k, v in self.initial.params.arrays().items()},
            "initial_xh_eval": _pack(self.initial.device.export_state()["xh_eval"]),
        }

    def save(self, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> None:
        """One atomic checkpoint file: the learner's, with the rest in its metadata."""
        self.learner.save(path, {"stream": self.state(), "run": dict(meta or {})})

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: Device | None = None
    ) -> tuple[StreamForecaster, dict[str, Any]]:
        """Resume from :meth:`save`; returns the forecaster and the ``meta`` saved with it.

        ``device``: a new device of the kind the checkpoint was made on (default: host).
        """
        learner, user = OnlineLearner.load(path, device=device)
        s = user.get("stream")
        if not isinstance(s, dict) or s.get("format") != _FORMAT:
            raise CheckpointError(f"{os.fspath(path)}: not a twinpass stream checkpoint")
        if s.get("version") != _VERSION:
            raise CheckpointError(
                f"{os.fspath(path)}: stream checkpoint version {s.get('version')}, "
                f"this twinpass reads {_VERSION}"
            )
        try:
            metrics = PrequentialMetrics.from_state(s["metrics"])
            self = cls(
                int(s["n_inputs"]),
                horizon=int(s["horizon"]),
                ema_alpha=metrics.alpha,
                metrics_every=metrics.every,
                _learner=learner,
                _initial=Params.from_arrays(
                    {k: _unpack(v) for k, v in s["initial_params"].items()}, learner.dtype
                ),
            )
            st = self.initial.device.export_state()
            st["xh_eval"] = _unpack(s["initial_xh_eval"])
            self.initial.device.import_state(st)
            self.metrics = metrics
            self.normalizer = RunningNormalizer.from_state(s["normalizer"])
            self._pend_z = _unpack(s["pending_z"])
            self._pend_y = _unpack(s["pending_y"])
            self.rows_seen = int(s["rows_seen"])
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise CheckpointError(f"{os.fspath(path)}: inconsistent stream checkpoint ({e})") from e
        if self.metrics.steps != learner.steps:
            raise CheckpointError(
                f"{os.fspath(path)}: inconsistent stream checkpoint (metrics at step "
                f"{self.metrics.steps}, learner at {learner.steps})"
            )
        return self, dict(user.get("run", {}))


# ---------------------------------------------------------------------------------------
# Stopping on signals
# ---------------------------------------------------------------------------------------


class StopRequest:
    """A flag set by SIGINT/SIGTERM (or by hand); call it to ask whether to stop."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self) -> bool:
        return self.reason is not None

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn SIGINT and SIGTERM into a stop request for the duration of the block.

    The current block finishes and the run saves and exits cleanly; a second SIGINT
    interrupts at once (the last checkpoint on disk stays intact).
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------------------


@dataclass
class StreamOutcome:
    """How a session ended."""

    stopped_by: str  # "end of input", "max-steps", "SIGINT", "SIGTERM", or a port message
    wall_s: float
    steps_this_run: int
    checkpoint_step: int | None


class StreamSession:
    """Feeds a forecaster from a source, with checkpoints and a metrics file."""

    def __init__(
        self,
        forecaster: StreamForecaster,
        source: Source,
        *,
        run_config: dict[str, Any] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int | None = None,
        metrics_log: MetricsLog | None = None,
        chunk_size: int = CHUNK,
        max_steps: int | None = None,
        saved_step: int | None = None,
    ) -> None:
        """``saved_step``: the step of the checkpoint being resumed (not saved again)."""
        if checkpoint_every is not None and int(checkpoint_every) < 1:
            raise ConfigError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if int(chunk_size) < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        self.forecaster = forecaster
        self.source = source
        self.run_config = dict(run_config or {})
        self.checkpoint = os.fspath(checkpoint) if checkpoint is not None else None
        self.checkpoint_every = int(checkpoint_every) if checkpoint_every else None
        self.metrics_log = metrics_log
        self.chunk_size = int(chunk_size)
        self.max_steps = int(max_steps) if max_steps is not None else None
        self.saved_step = saved_step

    def save(self) -> None:
        """Checkpoint now: metric rows made durable first, then the checkpoint, atomically."""
        if self.checkpoint is None:
            return
        if self.metrics_log is not None:
            self.metrics_log.sync()
        self.forecaster.save(
            self.checkpoint, {"config": self.run_config, "source": self.source.state()}
        )
        self.saved_step = self.forecaster.steps

    def _rows_wanted(self) -> int:
        f = self.forecaster
        want = self.chunk_size
        if self.max_steps is not None:
            want = min(want, f.rows_for(self.max_steps - f.steps))
        if self.checkpoint is not None and self.checkpoint_every:
            K = self.checkpoint_every
            want = min(want, f.rows_for(K - f.steps % K))
        return want

    def run(
        self,
        stop: Callable[[], bool] = lambda: False,
        on_block: Callable[[StreamForecaster], None] | None = None,
    ) -> StreamOutcome:
        """Stream until the input ends, ``max_steps`` is reached or ``stop()`` is true.

        A bad row under ``on_bad_row="error"`` raises its DataError after the rows before
        it were learned and checkpointed, so a fixed file resumes at that row.
        """
        f = self.forecaster
        t0 = time.perf_counter()
        start_steps = f.steps
        reason = "end of input"
        while True:
            if self.max_steps is not None and f.steps >= self.max_steps:
                reason = "max-steps"
                break
            if stop():
                reason = getattr(stop, "reason", None) or "stop requested"
                break
            block = self.source.read(self._rows_wanted(), stop)
            learned = f.learn_block(block.values)
            if self.metrics_log is not None:
                self.metrics_log.write(learned.metric_rows)
            if block.error is not None:
                self._finish()
                where = (
                    f"; learned up to it and checkpointed at step {f.steps}: fix the row "
                    "and continue with --resume"
                    if self.checkpoint is not None
                    else ""
                )
                raise DataError(f"{block.error}{where}")
            if (
                self.checkpoint_every
                and f.steps % self.checkpoint_every == 0
                and f.steps != self.saved_step
                and f.steps > 0
            ):
                self.save()
            if on_block is not None:
                on_block(f)
            if block.eof:
                reason = getattr(self.source, "end_reason", "end of input")
                break
        self._finish()
        return StreamOutcome(
            reason, time.perf_counter() - t0, f.steps - start_steps, self.saved_step
        )

    def _finish(self) -> None:
        if self.checkpoint is not None and self.forecaster.steps != self.saved_step:
            self.save()
        if self.metrics_log is not None:
            self.metrics_log.sync()
