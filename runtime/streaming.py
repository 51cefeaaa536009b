"""Continual learning from a stream of sensor rows: forecasting, evaluated prequentially.

`StreamForecaster` learns to predict a target column ``horizon`` rows ahead, in constant
memory, from rows handed to it in blocks of any size (River's ``learn_one``, a block at a
time): each block is normalised, learned in one compiled call and scored.

Framing, strictly causal for every horizon h, for data row t (0-based):

- Row t's input vector z[t] is the chosen input columns plus, unless ``target_input`` is
  off, the target column's own value at row t, each standardised online with the
  statistics of that column's rows before t (:mod:`twinpass.runtime.normalize`).
- At row t the network steps on z[t] and emits the forecast of y[t+h]. The learner runs
  with a label delay of h (``OnlineLearner(label_delay=h)``, docs/design.md §6): the target
  of row t is the label of the step taken at row t-h, and its update is applied at row t,
  before row t's forward pass. So the forecast made at row t comes from weights that
  learned only from targets up to row t, and from inputs up to row t.
- The forecast is mapped back to the target's units with what was known at row t (the
  statistics row t was standardised with, and y[t] in delta mode), kept with the h pending
  forecasts, and scored when row t+h arrives with y[t+h]. The first h rows have no
  forecast due: nothing is scored until row h.
- ``target_mode="level"`` learns the standardised y[t+h]; ``"delta"`` learns
  (y[t+h] - y[t]) / s[t] (s[t]: the target's scale at row t) and forecasts y[t] + s[t] times
  the output, so that persistence is the zero output.
- Missing cells (NaN): a missing input cell carries its column's last value (0 in
  normalised units before the column has one), counted in ``carried_cells``; a row whose
  target cell is missing is still stepped on and forecast from, but the forecast due at it
  is neither learned from nor scored (``unlabelled_rows``). y[t] for persistence and delta
  mode is the last known target value. Learners that cannot leave a step unlearned (the BP
  rule, devices without a label delay) stop with a DataError at a missing target.
- Outliers (``outlier_z``, :mod:`twinpass.runtime.normalize`): a cell further than
  ``outlier_z`` running standard deviations from its column's running mean is treated as
  missing, so it is never absorbed into the normaliser: an outlier input is carried, a row
  with an outlier target is forecast but neither learned from (where the learner can leave
  a step unlearned; otherwise it learns the carried value) nor scored. Rows with outliers
  are counted in ``outlier_rows`` and the first ones listed.
- A device that holds no label delay (or the WP and BP rules) learns horizon 1 by pairing
  the input of row t-1 with the target of row t, the same order of operations; a longer
  horizon on it is refused.

Three predictors are scored on every forecast whose target arrived, in the target's units
(running MSE and an EMA of the squared error, :mod:`twinpass.runtime.metrics`):

- ``model``: the learner;
- ``persistence``: y[t], the latest target value known when the forecast was made;
- ``initial``: a frozen copy of the initial network, fed the same inputs without learning,
  which shows how much of the model's skill was learned.

`StreamSession` drives a forecaster from a source (:mod:`twinpass.runtime.sources`):
blocks of up to ``chunk_size`` rows, cut so that checkpoints fall exactly every
``checkpoint_every`` steps, a checkpoint on stop requests (SIGINT/SIGTERM) and at the end,
and a metrics file continued across resumes. Everything carried from block to block (the
pending forecasts included) is sequential and saved, so a resumed run is bit-identical to
one that never stopped.
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

from twinpass.core.errors import CheckpointError, ConfigError, DataError, DivergenceError
from twinpass.devices.base import Device

from .config import RuleConfig
from .learner import OnlineLearner, RunResult
from .metrics import DEFAULT_ALPHA, MetricsLog, PrequentialMetrics
from .normalize import RunningNormalizer
from .params import Params
from .sources import Source

PREDICTORS = ("model", "persistence", "initial")
TARGET_MODES = ("level", "delta")
CHUNK = 4096
"""Rows per block: long enough that Python's share vanishes, short enough to stay live."""

_FORMAT = "twinpass.stream"
_VERSION = 2
"""2: causal forecasts (label delay = horizon), missing cells, target modes."""

DEFAULT_OUTLIER_Z = 20.0
"""The default outlier bound, in running standard deviations: far beyond what a sensor's
ordinary noise reaches, far short of a glitch's 1e30."""

MAX_LISTED_OUTLIERS = 10
"""How many outlier cells are listed by row (all rows with one are counted)."""

_NO_DELAY_RULES = ("wp", "bp")
"""Rules whose kernels learn with no label delay."""


@dataclass(frozen=True)
class StreamStep:
    """What one block taught: for its m scored forecasts, predictions (m, 3) of the model,
    persistence and the initial model in the target's units (each made h rows before its
    target arrived), the truth (m,), and the metric snapshot rows that fell in the block."""

    predictions: np.ndarray
    truth: np.ndarray
    metric_rows: np.ndarray


def _pack(a: np.ndarray) -> dict[str, Any]:
    """An array as msgpack-native data (exact bytes), for checkpoint metadata."""
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unpack(d: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def label_delay_for(horizon: int, device: Device | None, config: RuleConfig | None) -> int:
    """The learner's label delay for a causal forecast ``horizon`` rows ahead.

    ``horizon`` where the device and rule hold that delay; 0 for horizon 1 where they hold
    none (the input of row t-1 is then paired with the target of row t); otherwise a
    ConfigError.
    """
    h = int(horizon)
    rule = (config or RuleConfig()).rule
    info = device.info() if device is not None else None
    most = info.max_label_delay if info is not None else None
    if rule in _NO_DELAY_RULES:
        most = 0
    if most is None or most >= h:
        return h
    if h == 1:
        return 0
    where = f"the {info.name} device" if info is not None else "the host"
    raise ConfigError(
        f"--horizon {h}: a causal forecast {h} rows ahead needs a label delay of {h} steps, "
        f"and {where} with the {rule} rule holds at most {most}; use --horizon 1, or the "
        "host device with the anp or np rule"
    )


class StreamForecaster:
    """Forecasts the last column of a stream ``horizon`` rows ahead, learning online.

    Parameters
    ----------
    n_inputs:
        Columns per row, target last.
    horizon:
        Rows ahead to predict (>= 1).
    n_hidden, config, seed, dtype:
        The network and its learning rule, as for :class:`OnlineLearner`.
    ema_alpha, metrics_every:
        EMA weight of the newest squared error; snapshot interval of the metrics.
    device:
        Where the model learns (default: the host); the frozen initial twin always runs on
        the host, as a clean baseline.
    target_input:
        Whether the target's own value is an input (False: the other columns only, a pure
        exogenous model such as NARMA10's u -> y).
    target_mode:
        ``level`` (learn the standardised target) or ``delta`` (learn its change over the
        horizon, in units of its scale: persistence is the zero output).
    outlier_z:
        The outlier bound in running standard deviations (None: no bound), see the module
        doc.
    on_divergence:
        ``raise`` (stop with a DivergenceError naming the data row) or ``rollback`` (the
        last good parameters, and go on), as for :class:`OnlineLearner`.
    """

    CAUSAL = True
    """Every forecast is made from what was known at its row and scored when its target
    arrives (benchmarks look for this attribute)."""

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
        target_input: bool = True,
        target_mode: str = "level",
        outlier_z: float | None = DEFAULT_OUTLIER_Z,
        on_divergence: str = "raise",
        _learner: OnlineLearner | None = None,
        _initial: Params | None = None,
    ) -> None:
        if isinstance(horizon, bool) or int(horizon) < 1:
            raise ConfigError(f"--horizon must be a whole number >= 1, got {horizon}")
        if target_mode not in TARGET_MODES:
            raise ConfigError(f"--target-mode must be 'level' or 'delta', not {target_mode!r}")
        self.n_inputs = int(n_inputs)
        if self.n_inputs < 1:
            raise ConfigError(f"a stream needs at least one column, got {n_inputs}")
        self.horizon = h = int(horizon)
        self.target_input = bool(target_input)
        self.target_mode = target_mode
        n_in = self.n_inputs if self.target_input else self.n_inputs - 1
        if n_in < 1:
            raise ConfigError(
                "--no-target-input needs at least one input column besides the target "
                "(--columns); this stream has only the target"
            )
        if _learner is None:
            delay = label_delay_for(h, device, config)
            _learner = OnlineLearner(
                n_in,
                1,
                n_hidden,
                config,
                seed=seed,
                dtype=dtype,
                device=device,
                label_delay=delay,
                on_divergence=on_divergence,
            )
        elif _learner.label_delay not in (h, 0) or (_learner.label_delay == 0 and h != 1):
            raise ConfigError(
                f"a learner with label delay {_learner.label_delay} cannot forecast "
                f"{h} rows ahead causally (it needs {h}, or 0 for horizon 1)"
            )
        if _learner.n_in != n_in:
            raise ConfigError(f"the learner takes {_learner.n_in} inputs, the stream gives {n_in}")
        self.learner = _learner
        # 0: the step at row t runs on row t's input; 1: on row t-1's (no label delay).
        self._lag = h - _learner.label_delay
        # Whether the learner can leave a step unlearned (a NaN label): the host's
        # perturbation kernels can; BP and devices that hold no label delay cannot.
        most = _learner.device.info().max_label_delay
        self._skips_labels = _learner.config.rule != "bp" and (most is None or most > 0)
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
        self.normalizer = RunningNormalizer(self.n_inputs, keep=-1, outlier_z=outlier_z)
        self.metrics = PrequentialMetrics(PREDICTORS, alpha=ema_alpha, every=metrics_every)
        # The last min(rows, h) rows: their inputs, the target's location, scale and known
        # level, and the forecasts made at them (model, persistence, initial; in units),
        # waiting for their targets. NaN: not made yet (lag 1).
        self._tail_u = np.empty((0, n_in))
        self._tail_loc = np.empty(0)
        self._tail_scale = np.empty(0)
        self._tail_level = np.empty(0)
        self._tail_fc = np.empty((0, len(PREDICTORS)))
        self.rows_seen = 0
        self.carried_cells = 0
        self.unlabelled_rows = 0
        self.outlier_rows = 0
        self.outliers_first: list[tuple[int, int, float]] = []  # (row, column, value)

    @property
    def outlier_z(self) -> float | None:
        return self.normalizer.outlier_z

    @property
    def label_delay(self) -> int:
        return self.learner.label_delay

    @property
    def steps(self) -> int:
        """Forecasts whose target row has arrived (= rows seen minus the horizon)."""
        return max(self.rows_seen - self.horizon, 0)

    @property
    def scored(self) -> int:
        """Forecasts scored: those whose target cell was not missing."""
        return self.metrics.steps

    def rows_for(self, steps: int) -> int:
        """Rows still needed to take ``steps`` more steps."""
        return int(steps) + self.horizon - len(self._tail_level)

    def learn_block(self, rows: np.ndarray) -> StreamStep:
        """Forecast, learn and score a block of rows (n, n_inputs), target last; NaN cells
        are missing."""
        X = np.ascontiguousarray(rows, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise DataError(f"rows must be shaped (n, {self.n_inputs}), got {X.shape}")
        if np.isinf(X).any():
            r, c = np.argwhere(np.isinf(X))[0]
            raise DataError(
                f"row {self.rows_seen + int(r)} of the stream, column {int(c)}: "
                f"{X[r, c]} is not a finite number (NaN marks a missing cell)"
            )
        K = len(PREDICTORS)
        n = X.shape[0]
        if n == 0:
            return StreamStep(
                np.empty((0, K)), np.empty(0), np.empty((0, len(self.metrics.columns)))
            )
        h = self.horizon
        if not self._skips_labels and np.isnan(X[:, -1]).any():
            r = int(np.flatnonzero(np.isnan(X[:, -1]))[0])
            ln = self.learner
            raise DataError(
                f"data row {self.rows_seen + r} of the stream (counted from 0): the target "
                f"cell is missing, and the {ln.device.info().name} device with the "
                f"{ln.config.rule} rule cannot leave a step unlearned; fill the cell, or "
                "learn on the host with the anp, np or wp rule"
            )
        norm = self.normalizer.update_carrying(X)
        Z, loc, scale = norm.Z, norm.loc, norm.scale
        missing = np.isnan(X)
        unlabelled = missing[:, -1]
        outlier = norm.outliers
        bad_target = outlier[:, -1]
        # An outlier target is replaced by the carried level: learned only by learners that
        # cannot leave a step unlearned, never scored.
        truth_all = np.where(bad_target, norm.filled[:, -1], X[:, -1])
        self._note_outliers(X, outlier)
        self.carried_cells += int(missing[:, : self._n_in_cols].sum())
        self.unlabelled_rows += int(unlabelled.sum())
        # The target level known at each row: its value, carried, or (nothing known) the
        # level that 0 in normalised units stands for.
        level = np.where(np.isnan(norm.filled[:, -1]), loc, norm.filled[:, -1])
        U = Z[:, : self._n_in_cols]

        k = len(self._tail_level)
        c_u = np.concatenate([self._tail_u, U])
        c_loc = np.concatenate([self._tail_loc, loc])
        c_scale = np.concatenate([self._tail_scale, scale])
        c_level = np.concatenate([self._tail_level, level])
        c_fc = np.concatenate([self._tail_fc, np.full((n, K), np.nan)])
        # For each new row, the (concatenated) index of the row whose forecast it settles.
        made_at = np.arange(k, k + n) - h

        # The labels arriving with the new rows, in the learner's units.
        if self.target_mode == "level":
            Y = np.where(unlabelled, np.nan, Z[:, -1])
        else:
            Y = np.full(n, np.nan)
            due = made_at >= 0
            src = made_at[due]
            Y[due] = (truth_all[due] - c_level[src]) / c_scale[src]
        if self._skips_labels:
            Y[bad_target] = np.nan
        dt = self.learner.dtype
        if self._lag == 0:
            steps_at = np.arange(k, k + n)  # the row each step's forecast is made at
            labels = Y
        else:  # horizon 1, no label delay: the step at row t runs on row t-1's input
            first = 1 if k == 0 else 0
            steps_at = np.arange(k - 1 + first, k + n - 1)
            labels = Y[first:]
        if len(steps_at):
            Ub = c_u[steps_at].astype(dt)
            res = self._run(Ub, labels[:, None].astype(dt), self.rows_seen - k + steps_at)
            p_model = res.predictions[:, 0].astype(np.float64)
            p_init = self.initial.predict(Ub, reset=False)[:, 0].astype(np.float64)
            sc, lv = c_scale[steps_at], c_level[steps_at]
            base = c_loc[steps_at] if self.target_mode == "level" else lv
            c_fc[steps_at, 0] = p_model * sc + base
            c_fc[steps_at, 1] = lv
            c_fc[steps_at, 2] = p_init * sc + base

        scored = (made_at >= 0) & ~unlabelled & ~bad_target
        P = c_fc[made_at[scored]]
        truth = truth_all[scored]
        snap = self.metrics.update(P, truth)
        keep = min(k + n, h)
        self._tail_u = c_u[-keep:].copy()
        self._tail_loc = c_loc[-keep:].copy()
        self._tail_scale = c_scale[-keep:].copy()
        self._tail_level = c_level[-keep:].copy()
        self._tail_fc = c_fc[-keep:].copy()
        self.rows_seen += n
        return StreamStep(P, truth, snap)

    def _run(self, U: np.ndarray, Y: np.ndarray, rows: np.ndarray) -> RunResult:
        """The learner's run on a block whose steps are at data ``rows``; a divergence
        names the data row of the step, and the row's values when they are extreme."""
        ln = self.learner
        before = ln.steps
        try:
            return ln.run(U, Y)
        except DivergenceError as e:
            j = min(max(e.step - before, 0), len(rows) - 1)
            row = int(rows[j])
            z = np.abs(U[j]).max(initial=0.0)
            cause = (
                f"; its normalised inputs reach {z:.3g}: the data caused it"
                if not np.isfinite(z) or z > 1e3
                else ""
            )
            raise DivergenceError(
                f"{ln.config.name} diverged at step {e.step}, on data row {row} of the stream "
                f"(counted from 0){cause}; lower the learning rate, or roll back to the last "
                "good parameters and go on (--on-divergence rollback)",
                step=e.step,
                rule=e.rule,
            ) from e

    def _note_outliers(self, X: np.ndarray, outlier: np.ndarray) -> None:
        rows = np.flatnonzero(outlier.any(axis=1))
        self.outlier_rows += len(rows)
        for r in rows:
            for c in np.flatnonzero(outlier[r]):
                if len(self.outliers_first) < MAX_LISTED_OUTLIERS:
                    self.outliers_first.append((self.rows_seen + int(r), int(c), float(X[r, c])))

    @property
    def _n_in_cols(self) -> int:
        return self.n_inputs if self.target_input else self.n_inputs - 1

    def summary(self) -> dict[str, Any]:
        mse, ema = self.metrics.mse(), self.metrics.ema_mse()
        return {
            "steps": self.steps,
            "scored": self.scored,
            "rows": self.rows_seen,
            "unlabelled_rows": self.unlabelled_rows,
            "carried_cells": self.carried_cells,
            "outlier_z": self.outlier_z,
            "outlier_rows": self.outlier_rows,
            "causal": self.CAUSAL,
            "label_delay": self.label_delay,
            "target_mode": self.target_mode,
            "target_input": self.target_input,
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
            "target_input": self.target_input,
            "target_mode": self.target_mode,
            "rows_seen": self.rows_seen,
            "carried_cells": self.carried_cells,
            "unlabelled_rows": self.unlabelled_rows,
            "outlier_rows": self.outlier_rows,
            "outliers_first": [list(o) for o in self.outliers_first],
            "normalizer": self.normalizer.state(),
            "metrics": self.metrics.state(),
            "pending_u": _pack(self._tail_u),
            "pending_loc": _pack(self._tail_loc),
            "pending_scale": _pack(self._tail_scale),
            "pending_level": _pack(self._tail_level),
            "pending_forecasts": _pack(self._tail_fc),
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
                f"{os.fspath(path)}: stream checkpoint version {s.get('version')}, but this "
                f"twinpass reads version {_VERSION} only (version 1 scored horizons > 1 with "
                "label leakage and cannot be continued causally): start a new run"
            )
        try:
            metrics = PrequentialMetrics.from_state(s["metrics"])
            self = cls(
                int(s["n_inputs"]),
                horizon=int(s["horizon"]),
                ema_alpha=metrics.alpha,
                metrics_every=metrics.every,
                target_input=bool(s["target_input"]),
                target_mode=str(s["target_mode"]),
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
            self._tail_u = _unpack(s["pending_u"])
            self._tail_loc = _unpack(s["pending_loc"])
            self._tail_scale = _unpack(s["pending_scale"])
            self._tail_level = _unpack(s["pending_level"])
            self._tail_fc = _unpack(s["pending_forecasts"])
            self.rows_seen = int(s["rows_seen"])
            self.carried_cells = int(s["carried_cells"])
            self.unlabelled_rows = int(s["unlabelled_rows"])
            self.outlier_rows = int(s.get("outlier_rows", 0))
            self.outliers_first = [
                (int(r), int(c), float(v)) for r, c, v in s.get("outliers_first", [])
            ]
        except (KeyError, TypeError, ValueError, ConfigError) as e:
            raise CheckpointError(f"{os.fspath(path)}: inconsistent stream checkpoint ({e})") from e
        expected = max(self.rows_seen - self._lag, 0)
        if learner.steps != expected or len(self._tail_level) != min(self.rows_seen, self.horizon):
            raise CheckpointError(
                f"{os.fspath(path)}: inconsistent stream checkpoint ({self.rows_seen} rows "
                f"seen, learner at step {learner.steps}, {len(self._tail_level)} pending "
                "forecasts)"
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
            try:
                learned = f.learn_block(block.values)
            except DataError as e:
                # Nothing of the block was learned; the last checkpoint stays consistent.
                raise DataError(f"{self.source.name}: {e}") from None
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
        if reason == getattr(self.source, "end_reason", "end of input") and f.steps == 0:
            h = f.horizon
            raise DataError(
                f"{self.source.name}: the input ended after {f.rows_seen} data row"
                f"{'s' if f.rows_seen != 1 else ''}, and a forecast {h} row"
                f"{'s' if h != 1 else ''} ahead needs {h + 1}: nothing was forecast or "
                "learned; lower --horizon or stream more rows"
            )
        return StreamOutcome(
            reason, time.perf_counter() - t0, f.steps - start_steps, self.saved_step
        )

    def _finish(self) -> None:
        if self.checkpoint is not None and self.forecaster.steps != self.saved_step:
            self.save()
        if self.metrics_log is not None:
            self.metrics_log.sync()
