"""twinpass against the online learners a user would pick instead, on the same arrays.

Its job: one command that runs twinpass and its peers (reservoirpy, River) on the same
streams under one causal prequential protocol, plus the paper's Mackey-Glass train/test
split against an echo-state network with a ridge readout, and writes the tables into
``benchmarks/RESULTS.md`` (``--write-results``) and every number into a JSON (``--out``).

Protocol, the same for every system on a stream (``../shared/LEARNING.md`` §3):

- the target is also an input, except on NARMA10, which is exogenous (u -> y);
- every column is standardised online with the statistics of its rows strictly before
  (Welford: twinpass's own :class:`~twinpass.runtime.normalize.RunningNormalizer`, so the
  peers see the very numbers twinpass sees);
- at row t a system first learns the pair whose label has just arrived (the inputs of row
  t-h, the target of row t), then forecasts y[t+h] from what is known at row t; the
  forecast is mapped back to the target's units with the statistics of row t and scored
  when row t+h arrives;
- MSE in the target's units over the whole stream and over its last 20 %, and steps/s
  (forecasts over the seconds the system took on the stream: its feature computation,
  learning and forecasting; twinpass's JIT compilation is done before the clock starts).

Systems: persistence (y[t]); twinpass at N = 100 and 500 with the defaults of
``twinpass stream`` (through :func:`run_twinpass`, in process); reservoirpy's echo-state
network (``Reservoir`` N = 100 and 500, leak 0.3 and spectral radius 0.9 as in LEARNING.md,
its other arguments at their documented defaults) with its online ``RLS`` readout and with
its ``LMS`` readout (learning rate 1e-3), over [state, input, 1] — the bias given as a
constant feature with ``fit_bias=False``, because reservoirpy's ``fit_bias=True`` default
is far worse (LEARNING.md §3); River's ``LinearRegression`` (SGD 1e-3) on the last 10 rows
of every input column and ``SNARIMAX(10, 1, 0)`` on the target's own past. reservoirpy and
River are optional (``pip install -e '.[bench]'``) and are imported here only; a peer whose
package is missing is skipped with a note.

Streams: Mackey-Glass 20k rows (the generator of ``twinpass stream``, seed 0), NARMA10 20k
rows (:func:`twinpass.runtime.tasks.narma.narma10`, seed 0), WTH.csv with WetBulbCelsius as
the target, 1 h and 24 h ahead (``--wth``, else $TWINPASS_WTH, else ``shared/data/WTH.csv``
beside the repository; skipped with a message when absent).

The paper's split (``make_task("mackey-glass")``, 15 steps ahead): the echo-state network of
LEARNING.md §1 (N = 100 and 32, ridge readout, median of 3 reservoirs) and ``twinpass
train``'s defaults (N = 100, ``--epochs``, ``--seeds``).

    python benchmarks/peers.py                            # everything, writes nothing
    python benchmarks/peers.py --quick                    # 3,000 rows, 2 epochs, seed 0
    python benchmarks/peers.py --streams narma10 --no-task --systems persistence twinpass-100
    python benchmarks/peers.py --write-results --out peers.json
    python benchmarks/peers.py --from-json peers.json --write-results   # re-render, no run
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import textwrap
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.normalize import RunningNormalizer
from twinpass.runtime.sources import open_source
from twinpass.runtime.streaming import CHUNK, StreamForecaster
from twinpass.runtime.tasks import WTH_ENV, Task, make_task
from twinpass.runtime.tasks.narma import narma10
from twinpass.runtime.training import train

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Peers: twinpass against reservoirpy and River (`benchmarks/peers.py`)"
#: WTH.csv where the project keeps it: shared/data/ beside the repository.
SHARED_WTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "WTH.csv"
WTH_TARGET = "WetBulbCelsius"

STREAM_ROWS = 20_000
QUICK_ROWS = 3_000
STREAMS = ("mackey-glass", "narma10", "wth-1h", "wth-24h")
LAST = 0.2
"""The share of a stream's forecasts the second score covers: its last 20 %."""

ESN_LEAK = 0.3
ESN_RADIUS = 0.9
LMS_RATE = 1e-3
RIVER_LR = 1e-3
RIVER_LAGS = 10

TASK_WASHOUT = 100
TASK_RIDGE = 1e-6
TASK_ESN_RADIUS = 0.95
TASK_ESN_INPUT = 2.0


# ---------------------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------------------


@dataclass
class Stream:
    """Rows X (n, C), float64, target last; the horizon h; and the options of
    ``twinpass stream`` that this stream needs (CLI names, e.g. ``target_input=False``
    for an exogenous stream). Holds the online standardisation every system shares."""

    key: str
    name: str
    X: np.ndarray
    horizon: int
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.X = np.ascontiguousarray(self.X, dtype=np.float64)
        self.Z, self.loc, self.scale = RunningNormalizer(self.X.shape[1], keep=-1).update(self.X)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def target_input(self) -> bool:
        return bool(self.options.get("target_input", True))

    @property
    def inputs(self) -> np.ndarray:
        """The standardised input columns of every row (the target's among them or not)."""
        return self.Z if self.target_input else self.Z[:, :-1]

    @property
    def y(self) -> np.ndarray:
        """The target in its units."""
        return self.X[:, -1]

    @property
    def forecasts(self) -> int:
        """Forecasts scored: one per row t whose target row t+h is in the stream."""
        return self.n - self.horizon

    def to_units(self, z: np.ndarray) -> np.ndarray:
        """Standardised forecasts made at rows 0..n-h-1 -> the target's units at those rows."""
        m = self.forecasts
        return z[:m] * self.scale[:m] + self.loc[:m]

    def score(self, forecasts: np.ndarray) -> tuple[float, float]:
        """MSE (whole, last 20 %) of forecasts[t] of y[t+h], made at row t, in units."""
        if forecasts.shape != (self.forecasts,):
            raise ValueError(f"{self.name}: {forecasts.shape} forecasts, {self.forecasts} due")
        with np.errstate(over="ignore", invalid="ignore"):
            err = (forecasts - self.y[self.horizon :]) ** 2
            return float(err.mean()), float(err[int((1 - LAST) * len(err)) :].mean())


def mackey_glass_rows(n: int, seed: int = 0) -> np.ndarray:
    """The series ``twinpass stream`` reads from its built-in source (one column)."""
    src = open_source("mackey-glass", seed=seed)
    src.start()
    return np.asarray(src.read(n).values, np.float64)


def narma_rows(n: int, seed: int = 0) -> np.ndarray:
    """NARMA10's (u, y) as columns, the target last."""
    u, y = narma10(n, seed)
    return np.column_stack([u, y])


def wth_path(given: str | None) -> Path:
    """--wth, else $TWINPASS_WTH, else shared/data/WTH.csv beside the repository."""
    if given:
        return Path(given)
    env = os.environ.get(WTH_ENV)
    return Path(env) if env else SHARED_WTH


def wth_rows(path: Path) -> np.ndarray:
    """Every numeric column of WTH.csv as ``twinpass stream --source csv:WTH.csv --target
    WetBulbCelsius`` reads them: the date left out, the target moved last."""
    src = open_source(f"csv:{path}", target=WTH_TARGET)
    try:
        src.start()
        block = src.read(10**7)
    finally:
        src.close()
    if block.error is not None:
        raise block.error
    return np.asarray(block.values, np.float64)


def make_streams(keys: list[str], rows: int | None, wth: Path, notes: list[str]) -> list[Stream]:
    """The streams named by ``keys``; ``rows`` cuts each (None: their full length)."""
    n = STREAM_ROWS if rows is None else rows
    size = f"{n // 1000}k" if n % 1000 == 0 else f"{n:,} rows"
    out: list[Stream] = []
    if "mackey-glass" in keys:
        out.append(Stream("mackey-glass", f"Mackey-Glass {size}", mackey_glass_rows(n), 1))
    if "narma10" in keys:
        out.append(
            Stream(
                "narma10",
                f"NARMA10 {size} (u → y)",
                narma_rows(n),
                1,
                {"target_input": False},
            )
        )
    wanted = [k for k in keys if k.startswith("wth-")]
    if wanted and not wth.is_file():
        note = (
            f"WTH.csv not found (--wth, ${WTH_ENV} or shared/data/WTH.csv beside the "
            f"repository): {', '.join(wanted)} skipped"
        )
        print(note, file=sys.stderr)
        notes.append(note)
    elif wanted:
        X = wth_rows(wth)
        X = X if rows is None else X[:rows]
        label = "WTH" if rows is None else f"WTH {len(X):,} rows,"
        for k in wanted:
            h = int(k[len("wth-") : -1])
            out.append(Stream(k, f"{label} {h} h", X, h))
    return out


# ---------------------------------------------------------------------------------------
# twinpass
# ---------------------------------------------------------------------------------------

#: StreamForecaster's own arguments that run_twinpass sets itself.
_FIXED = ("self", "n_inputs", "horizon", "n_hidden", "config")
#: `twinpass stream` options that are not the forecaster's or the rule's.
_RUN_OPTIONS = ("chunk_size",)


def twinpass_is_causal() -> bool:
    """Whether StreamForecaster forecasts causally at every horizon: it says so with a class
    attribute ``CAUSAL = True``, or it has a ``causal`` switch (which run_twinpass turns on)."""
    if getattr(StreamForecaster, "CAUSAL", False) is True:
        return True
    return "causal" in inspect.signature(StreamForecaster.__init__).parameters


def rule_config(**rule_options: Any) -> RuleConfig:
    """The RuleConfig ``twinpass stream`` builds from its rule options, by their CLI names
    (``rule``, ``lr``, ``readout``, ``leak``, ``window``, ``reference``, ...; None or absent:
    the default)."""
    o = {k: v for k, v in rule_options.items() if v is not None}
    rule = o.pop("rule", "anp")
    reference = bool(o.pop("reference", False))
    if "window" in o:
        o["bptt_window"] = o.pop("window")
    return RuleConfig.reference(rule, **o) if reference else RuleConfig(rule=rule, **o)


def make_forecaster(
    n_columns: int, n_hidden: int, horizon: int, **stream_options: Any
) -> StreamForecaster:
    """A StreamForecaster built as ``twinpass stream`` builds it on the host.

    ``stream_options`` use the Python names of the command's options: those the forecaster
    takes (``target_input``, ``target_mode``, ``seed``, ``dtype``, and whatever it gains)
    go to it; the rest are rule options (see :func:`rule_config`), or ``config=`` a ready
    RuleConfig. A forecaster with a ``causal`` switch gets ``causal=True``.
    """
    opts = {k: v for k, v in stream_options.items() if k not in _RUN_OPTIONS}
    params = inspect.signature(StreamForecaster.__init__).parameters
    own = {
        k: opts.pop(k)
        for k in list(opts)
        if k in params and k not in _FIXED and not k.startswith("_")
    }
    if "causal" in params:
        own.setdefault("causal", True)
    config = opts.pop("config", None)
    if config is None:
        config = rule_config(**opts)
    elif opts:
        raise TypeError(f"config= and rule options {sorted(opts)} together")
    return StreamForecaster(n_columns, horizon=horizon, n_hidden=n_hidden, config=config, **own)


def run_twinpass(stream: Stream, n_hidden: int, horizon: int, **stream_options: Any) -> np.ndarray:
    """twinpass's forecasts of y[t+h] made at rows t = 0..n-h-1, in the target's units.

    The stream's rows go in blocks of ``chunk_size`` (default: the CLI's) through
    ``StreamForecaster.learn_block``, which standardises, learns, forecasts and keeps the
    pending forecasts itself; each block returns the forecasts whose targets arrived in it.
    ``stream_options`` as for :func:`make_forecaster` (the stream's own, e.g.
    ``target_input=False``, come from ``stream.options`` at the call site).
    """
    chunk = int(stream_options.get("chunk_size") or CHUNK)
    f = make_forecaster(stream.X.shape[1], n_hidden, horizon, **stream_options)
    preds, truth = [], []
    for i in range(0, stream.n, chunk):
        step = f.learn_block(stream.X[i : i + chunk])
        preds.append(step.predictions[:, 0])
        truth.append(step.truth)
    pred, seen = np.concatenate(preds), np.concatenate(truth)
    due = stream.y[horizon:]
    if pred.shape != due.shape or not np.allclose(seen, due, rtol=1e-12, atol=0.0):
        raise RuntimeError(
            f"{stream.name}: StreamForecaster scored {len(pred)} forecasts against other "
            f"targets than y[{horizon}:] ({len(due)} rows); run_twinpass needs adapting"
        )
    return pred.astype(np.float64)


def twinpass_system(n_hidden: int, **options: Any) -> Callable[[Stream], np.ndarray]:
    """A stream -> forecasts function running twinpass at N = ``n_hidden`` with ``options``
    on top of each stream's own."""

    def run(s: Stream) -> np.ndarray:
        return run_twinpass(s, n_hidden, s.horizon, **{**s.options, **options})

    return run


# ---------------------------------------------------------------------------------------
# The peers and persistence
# ---------------------------------------------------------------------------------------


def persistence(s: Stream) -> np.ndarray:
    """y[t] as the forecast of y[t+h]."""
    return s.y[: s.forecasts].copy()


def prequential(
    s: Stream,
    feats: Any,
    learn: Callable[[Any, float], Any],
    predict: Callable[[Any], float],
) -> np.ndarray:
    """Row by row: learn (features of row t-h, standardised target of row t), then forecast
    y[t+h] from row t's features; the forecasts back in the target's units."""
    h, target = s.horizon, s.Z[:, -1]
    z = np.empty(s.forecasts)
    for t in range(s.forecasts):
        if t >= h:
            learn(feats[t - h], float(target[t]))
        z[t] = predict(feats[t])
    return s.to_units(z)


def esn(s: Stream, units: int, readout: str) -> np.ndarray:
    """reservoirpy's Reservoir with an online RLS or LMS readout over [state, input, 1]."""
    from reservoirpy.nodes import LMS, RLS, Reservoir

    reservoir = Reservoir(units, lr=ESN_LEAK, sr=ESN_RADIUS, seed=0)
    states = reservoir.run(s.inputs)  # state t depends on the inputs of rows <= t only
    feats = np.hstack([states, s.inputs, np.ones((s.n, 1))])
    node = RLS(fit_bias=False) if readout == "rls" else LMS(LMS_RATE, fit_bias=False)
    node.initialize(feats[:1], np.zeros((1, 1)))
    # partial_fit returns the prediction *after* learning the pair, so the forecasts are
    # taken from the weights as they stand before the next pair is learned.
    return prequential(
        s,
        feats,
        lambda x, y: node.partial_fit(x[None], np.array([[y]])),
        lambda x: float(x @ node.Wout[:, 0] + node.bias[0]),
    )


def lagged_features(inputs: np.ndarray, lags: int) -> list[dict[str, float]]:
    """Per row, River features: every input column at this row and the lags - 1 before."""
    window: deque[np.ndarray] = deque(maxlen=lags)
    out = []
    for row in inputs:
        window.appendleft(row)
        out.append(
            {f"c{c}_lag{k}": float(v[c]) for k, v in enumerate(window) for c in range(len(v))}
        )
    return out


def river_linear(s: Stream) -> np.ndarray:
    """River's LinearRegression (SGD 1e-3, other arguments at their defaults), 10 lags."""
    from river import linear_model, optim

    model = linear_model.LinearRegression(optimizer=optim.SGD(RIVER_LR))
    return prequential(s, lagged_features(s.inputs, RIVER_LAGS), model.learn_one, model.predict_one)


def snarimax(s: Stream) -> np.ndarray:
    """River's SNARIMAX(10, 1, 0) on the standardised target's own past."""
    from river import time_series

    model = time_series.SNARIMAX(p=10, d=1, q=0)
    h, target = s.horizon, s.Z[:, -1]
    z = np.empty(s.forecasts)
    for t in range(s.forecasts):
        model.learn_one(float(target[t]))
        z[t] = model.forecast(horizon=h)[h - 1]
    return s.to_units(z)


@dataclass(frozen=True)
class System:
    """A row of the table: its name, the optional package it needs, how it runs."""

    key: str
    name: str
    module: str | None
    run: Callable[[Stream], np.ndarray]
    twinpass: bool = False


def systems() -> list[System]:
    return [
        System("persistence", "persistence", None, persistence),
        System("twinpass-100", "twinpass N = 100, defaults", None, twinpass_system(100), True),
        System("twinpass-500", "twinpass N = 500, defaults", None, twinpass_system(500), True),
        System(
            "esn-100-rls",
            "ESN N = 100 + RLS (reservoirpy)",
            "reservoirpy",
            lambda s: esn(s, 100, "rls"),
        ),
        System(
            "esn-500-rls",
            "ESN N = 500 + RLS (reservoirpy)",
            "reservoirpy",
            lambda s: esn(s, 500, "rls"),
        ),
        System(
            "esn-100-lms",
            "ESN N = 100 + LMS 1e-3 (reservoirpy)",
            "reservoirpy",
            lambda s: esn(s, 100, "lms"),
        ),
        System(
            "esn-500-lms",
            "ESN N = 500 + LMS 1e-3 (reservoirpy)",
            "reservoirpy",
            lambda s: esn(s, 500, "lms"),
        ),
        System("river-linear", "River LinearRegression, 10 lags, SGD 1e-3", "river", river_linear),
        System("snarimax", "River SNARIMAX(10, 1, 0)", "river", snarimax),
    ]


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("twinpass", "numpy", "numba", "reservoirpy", "river"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# ---------------------------------------------------------------------------------------
# The paper's Mackey-Glass split
# ---------------------------------------------------------------------------------------


def split_scores(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Test MSE over every step, and after the washout."""
    err = (np.asarray(pred, np.float64).reshape(target.shape) - target) ** 2
    return float(err.mean()), float(err[:, TASK_WASHOUT:].mean())


def esn_ridge(task: Task, hidden: int, seed: int) -> tuple[float, float]:
    """The echo-state network of LEARNING.md §1 on the task: (test MSE, after washout).

    W: N x N standard normals scaled to spectral radius 0.95; W_in: N uniform in [-2, 2];
    x_t = tanh(W x_{t-1} + W_in u_t) from x_0 = 0 over each split; readout [x_t, 1] fitted
    by ridge regression (λ = 1e-6) on the train split's states after a 100-step washout.
    """
    g = np.random.default_rng(seed)
    W = g.standard_normal((hidden, hidden))
    W *= TASK_ESN_RADIUS / np.max(np.abs(np.linalg.eigvals(W)))
    w_in = g.uniform(-TASK_ESN_INPUT, TASK_ESN_INPUT, hidden)

    def states(u: np.ndarray) -> np.ndarray:
        x = np.zeros(hidden)
        out = np.ones((len(u), hidden + 1))
        for t, ut in enumerate(u):
            x = np.tanh(W @ x + w_in * ut)
            out[t, :hidden] = x
        return out

    S = states(task.train.inputs[0, :, 0])[TASK_WASHOUT:]
    y = task.train.targets[0, TASK_WASHOUT:, 0]
    beta = np.linalg.solve(S.T @ S + TASK_RIDGE * np.eye(hidden + 1), S.T @ y)
    return split_scores(states(task.test.inputs[0, :, 0]) @ beta, task.test.targets)


def run_twinpass_task(
    task: Task, n_hidden: int, epochs: int, seed: int, **rule_options: Any
) -> tuple[float, float]:
    """``twinpass train`` on the task (host, batch 1, float32 unless ``dtype=``): the test
    (MSE, after washout) after ``epochs`` epochs. ``rule_options`` as for rule_config."""
    dtype = rule_options.pop("dtype", "float32")
    learner = OnlineLearner(
        task.n_in, task.n_out, n_hidden, rule_config(**rule_options), seed=seed, dtype=dtype
    )
    train(learner, task, epochs)
    _, pred = learner.evaluate(task.test.inputs, task.test.targets)
    return split_scores(pred, task.test.targets)


def run_task(epochs: int, seeds: list[int], reservoirs: int) -> list[dict[str, Any]]:
    task = make_task("mackey-glass")
    rows: list[dict[str, Any]] = []
    for hidden in (100, 32):
        name = f"ESN N = {hidden} + ridge readout, median of {reservoirs} reservoirs"
        t0 = time.perf_counter()
        runs = [esn_ridge(task, hidden, s) for s in range(reservoirs)]
        rows.append(task_row(name, "reservoir", list(range(reservoirs)), runs, t0))
        print(f"task: {name} done", file=sys.stderr, flush=True)
    name = f"twinpass train N = 100, defaults, {epochs} epochs"
    t0 = time.perf_counter()
    runs = []
    for s in seeds:
        runs.append(run_twinpass_task(task, 100, epochs, s))
        print(f"task: {name}, seed {s}: {runs[-1][0]:.3g}", file=sys.stderr, flush=True)
    rows.append(task_row(name, "seed", seeds, runs, t0))
    zero = split_scores(np.zeros_like(task.test.targets), task.test.targets)
    rows.append(task_row("predicting zero", "-", [0], [zero], time.perf_counter()))
    var = float(task.test.targets.var())
    for r in rows:
        r["nrmse_median_washout"] = math.sqrt(r["median_washout"] / var)
    return rows


def task_row(
    name: str, over: str, ids: list[int], runs: list[tuple[float, float]], t0: float
) -> dict[str, Any]:
    every = [r[0] for r in runs]
    wash = [r[1] for r in runs]
    return {
        "name": name,
        "over": over,
        "ids": ids,
        "test_mse": every,
        "test_mse_washout": wash,
        "median": float(np.median(every)),
        "median_washout": float(np.median(wash)),
        "seconds": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------------------
# Running, printing, writing
# ---------------------------------------------------------------------------------------


def run_cell(system: System, s: Stream) -> dict[str, Any]:
    """One system on one stream: its scores, speed and notes."""
    cell: dict[str, Any] = {"system": system.name, "stream": s.name, "key": s.key}
    if system.twinpass:
        # JIT compilation (per dtype and rule variant) before the clock starts.
        system.run(Stream(s.key, s.name, s.X[: 4 * s.horizon + 64], s.horizon, s.options))
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            forecasts = system.run(s)
    except Exception as e:  # a peer that fails is a finding, not the end of the run
        cell.update(error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
        return cell
    secs = time.perf_counter() - t0
    whole, last = s.score(forecasts)
    cell.update(whole=whole, last20=last, seconds=secs, steps_per_s=s.forecasts / secs)
    cell["forecasts"] = s.forecasts
    if system.twinpass and s.horizon > 1 and not twinpass_is_causal():
        cell["note"] = "leaky, h>1"
    return cell


def fmt(v: float) -> str:
    if not math.isfinite(v):
        return "inf" if v > 0 else "nan"
    if v == 0 or 1e-2 <= abs(v) < 1e4:
        return f"{v:.3g}"
    return f"{v:.2e}".replace("e-0", "e-").replace("e+0", "e+")


def cell_text(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    if "error" in cell:
        return "failed"
    text = f"{fmt(cell['whole'])} / {fmt(cell['last20'])}"
    return text + (f" ({cell['note']})" if "note" in cell else "")


def stream_table(
    streams: list[dict[str, Any]], cells: list[dict[str, Any]], names: list[str]
) -> str:
    """Rows: systems; columns: streams (``report["streams"]``); then steps/s."""
    data = streams
    lines = [
        "| system | " + " | ".join(s["name"] for s in data) + " | steps/s |",
        "|---|" + "---|" * (len(data) + 1),
    ]
    for name in names:
        mine = {c["key"]: c for c in cells if c["system"] == name}
        ok = [c for c in mine.values() if "seconds" in c]
        speed = sum(c["forecasts"] for c in ok) / sum(c["seconds"] for c in ok) if ok else None
        speed_text = "—" if speed is None else f"{speed:,.0f}"
        row = " | ".join(cell_text(mine.get(s["key"])) for s in data)
        lines.append(f"| {name} | {row} | {speed_text} |")
    return "\n".join(lines)


def size(name: str) -> int | None:
    """N of a system named "... N = 100 ...", None for a system without one."""
    m = re.search(r"N = (\d+)", name)
    return int(m.group(1)) if m else None


def finite_cells(cells: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [c for c in cells if c["key"] == key and math.isfinite(c.get("last20", math.nan))]


def best_line(streams: list[dict[str, Any]], cells: list[dict[str, Any]]) -> str:
    """Per stream: the best last-20 % MSE, and twinpass's best against it and persistence."""
    parts = []
    for s in streams:
        ok = finite_cells(cells, s["key"])
        if not ok:
            continue
        best = min(ok, key=lambda c: c["last20"])
        text = f"{s['name']}: {best['system']} ({fmt(best['last20'])})"
        tp = [c for c in ok if c["system"].startswith("twinpass")]
        pers = [c for c in ok if c["system"] == "persistence"]
        if tp and best["system"] not in {c["system"] for c in tp}:
            t = min(tp, key=lambda c: c["last20"])
            text += f", twinpass's best {fmt(t['last20'])} ({t['system'].split(',')[0]})"
        if tp and pers:
            beat = sum(c["last20"] < pers[0]["last20"] for c in tp)
            text += f", twinpass below persistence {beat} of {len(tp)}"
        parts.append(text)
    return "; ".join(parts)


def target_line(streams: list[dict[str, Any]], cells: list[dict[str, Any]]) -> str:
    """Issue 12's target, last 20 %: each twinpass row against persistence and the best peer
    of its size (a peer without a size, River's, counts at every size)."""
    parts = []
    for tp in dict.fromkeys(c["system"] for c in cells if c["system"].startswith("twinpass")):
        n = size(tp)
        verdicts = []
        for s in streams:
            ok = finite_cells(cells, s["key"])
            mine = [c for c in ok if c["system"] == tp]
            pers = [c for c in ok if c["system"] == "persistence"]
            peers = [
                c
                for c in ok
                if not c["system"].startswith(("twinpass", "persistence"))
                and size(c["system"]) in (None, n)
            ]
            if not mine or not peers:
                continue
            best = min(peers, key=lambda c: c["last20"])
            v, b = mine[0]["last20"], best["last20"]
            met = v <= b and (not pers or v < pers[0]["last20"])
            verdicts.append(
                f"{s['name']} {fmt(v)} against {fmt(b)} ({best['system']}): "
                + ("met" if met else "**not met**")
            )
        if verdicts:
            parts.append(f"{tp} — " + "; ".join(verdicts))
    return ". ".join(parts)


def task_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"| system | test MSE after the {TASK_WASHOUT}-step washout, median | its NRMSE | "
        "each seed / reservoir | test MSE over every step, median |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        each = ", ".join(fmt(v) for v in r["test_mse_washout"])
        lines.append(
            f"| {r['name']} | {fmt(r['median_washout'])} | {r['nrmse_median_washout']:.3f} | "
            f"{each} | {fmt(r['median'])} |"
        )
    return "\n".join(lines)


def recorded_command(argv: list[str]) -> str:
    """The command line, with file arguments reduced to their names."""
    out, path_next = [], False
    for a in argv:
        if path_next:
            a, path_next = Path(a).name, False
        elif a in ("--out", "--wth"):
            path_next = True
        elif a.startswith(("--out=", "--wth=")):
            flag, _, value = a.partition("=")
            a = f"{flag}={Path(value).name}"
        out.append(a)
    return " ".join(["python benchmarks/peers.py", *out])


PROTOCOL = (
    "Protocol (LEARNING.md §3), the same arrays for every system: the target is also an "
    "input (NARMA10: u → y, exogenous only); every column standardised online from earlier "
    "rows only (Welford); at row t the forecast of y[t+h] is made from what is known at row "
    "t, after learning the pair whose label arrived at row t, mapped back to the target's "
    "units and scored when row t+h arrives. Cells: MSE in the target's units, whole stream / "
    "last 20 %."
)
DEFAULTS = (
    "Peers at their documented defaults, except the echo-state networks' leak 0.3 and "
    "spectral radius 0.9 (LEARNING.md), the LMS rate 1e-3, River's SGD rate 1e-3, and the "
    "bias given to reservoirpy's readouts as a constant feature (`fit_bias=False` over "
    "[state, input, 1]: its `fit_bias=True` default is far worse); SNARIMAX models the "
    "target's own past (on NARMA10 too). twinpass: `StreamForecaster` in process, "
    "`twinpass stream`'s defaults."
)


def write_results(section: str) -> None:
    """Replace this benchmark's section of RESULTS.md (or append it); nothing else."""
    text = RESULTS.read_text(encoding="utf-8")
    if HEADING in text:
        start = text.index(HEADING)
        nxt = re.search(r"\n## ", text[start + len(HEADING) :])
        end = len(text) if nxt is None else start + len(HEADING) + nxt.start() + 1
        text = text[:start] + section.rstrip("\n") + "\n" + ("\n" if nxt else "") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def build_section(report: dict[str, Any]) -> str:
    """The RESULTS.md section of a run's report (as written to --out)."""
    data, names = report["streams"], report["systems"]
    parts = [
        HEADING,
        "",
        f"Measured {report['date']} on the project's 2-core machine (shared, one process).",
        f"Command: `{report['command']}`",
        "",
        PROTOCOL,
        "",
        DEFAULTS,
    ]
    if report["cells"]:
        tp_causal = (
            "causal at every horizon"
            if report["twinpass_causal"]
            else ("not causal for h > 1: its cells there are marked (leaky, h>1)")
        )
        parts += [
            "",
            stream_table(data, report["cells"], names),
            "",
            f"steps/s: forecasts over the seconds each system spent on the streams (features, "
            f"learning, forecasting and scoring; twinpass compiled beforehand). twinpass's "
            f"forecaster is {tp_causal}. Lowest last-20 % MSE per stream: "
            f"{best_line(data, report['cells'])}.",
            "",
            "Issue 12's target (last 20 %: below persistence and at or below the best peer "
            "of the same size, River's peers counting at every size): "
            f"{target_line(data, report['cells'])}.",
        ]
    for note in report["notes"]:
        parts += ["", f"Note: {note}."]
    if report["task"]:
        t = report["task_settings"]
        parts += [
            "",
            'The paper\'s Mackey-Glass split (`make_task("mackey-glass")`, 15 ahead, seed 0 '
            f"data): the echo-state network of LEARNING.md §1 (spectral radius 0.95, input "
            f"uniform in [−2, 2], ridge λ = 1e-6 after a {TASK_WASHOUT}-step washout) and "
            f"`twinpass train`'s defaults (N = 100, {t['epochs']} epochs, seeds "
            f"{', '.join(map(str, t['seeds']))}). NRMSE = sqrt(MSE / variance of the test "
            "targets). The echo-state network's score over every step is dominated by its "
            "first 100 steps, run from a zero state; LEARNING.md §1 scores after the washout.",
            "",
            task_table(report["task"]),
        ]
    wrap = {"width": 92, "break_long_words": False, "break_on_hyphens": False}
    text = [
        p if p.startswith(("|", "#", "Command:")) or not p else textwrap.fill(p, **wrap)
        for p in parts
    ]
    return "\n".join(text) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", nargs="+", choices=STREAMS, default=list(STREAMS))
    ap.add_argument(
        "--systems",
        nargs="+",
        choices=[s.key for s in systems()],
        default=None,
        help="the rows to run [default: all]",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_ROWS:,} rows per stream; the split with 2 epochs and seed 0 unless "
        "--epochs or --seeds say otherwise",
    )
    ap.add_argument("--rows", type=int, default=None, help="cut every stream to this many rows")
    ap.add_argument("--epochs", type=int, default=None, help="twinpass train epochs [20]")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="[0 1 2 3 4]")
    ap.add_argument("--reservoirs", type=int, default=3, help="ESN reservoirs on the split")
    ap.add_argument("--no-task", dest="task", action="store_false", help="skip the split")
    ap.add_argument("--wth", default=None, help=f"WTH.csv [${WTH_ENV}, shared/data/WTH.csv]")
    ap.add_argument("--out", default=None, help="write every row as JSON here")
    ap.add_argument(
        "--from-json",
        default=None,
        help="run nothing: print the section of a report written by --out (and write it "
        "with --write-results)",
    )
    ap.add_argument(
        "--write-results", action="store_true", help="replace the section of benchmarks/RESULTS.md"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        saved.setdefault("systems", list(dict.fromkeys(c["system"] for c in saved["cells"])))
        print(build_section(saved))
        if args.write_results:
            write_results(build_section(saved))
        return
    rows = args.rows if args.rows is not None else (QUICK_ROWS if args.quick else None)
    epochs = args.epochs if args.epochs is not None else (2 if args.quick else 20)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2, 3, 4])
    notes: list[str] = []
    chosen = [s for s in systems() if args.systems is None or s.key in args.systems]
    for s in chosen:
        if s.module is not None and not have(s.module):
            note = f"{s.name}: {s.module} is not installed (pip install -e '.[bench]'), skipped"
            print(note, file=sys.stderr)
            notes.append(note)
    chosen = [s for s in chosen if s.module is None or have(s.module)]
    data = make_streams(args.streams, rows, wth_path(args.wth), notes)
    report: dict[str, Any] = {
        "date": str(datetime.date.today()),
        "command": recorded_command(argv),
        "protocol": PROTOCOL,
        "defaults": DEFAULTS,
        "versions": package_versions(),
        "twinpass_causal": twinpass_is_causal(),
        "streams": [
            {"key": s.key, "name": s.name, "rows": s.n, "horizon": s.horizon, **s.options}
            for s in data
        ],
        "notes": notes,
        "systems": [s.name for s in chosen],
        "cells": [],
        "task": [],
        "task_settings": {"epochs": epochs, "seeds": seeds, "reservoirs": args.reservoirs},
    }
    print(DEFAULTS, file=sys.stderr)
    if data and chosen:
        print("\n" + "\n".join(stream_table(report["streams"], [], []).splitlines()[:2]))
    for system in chosen:
        mine = []
        for s in data:
            cell = run_cell(system, s)
            mine.append(cell)
            if "error" in cell:
                print(f"{system.name} on {s.name}: {cell['error']}", file=sys.stderr, flush=True)
        report["cells"] += mine
        if data:
            line = stream_table(report["streams"], mine, [system.name]).splitlines()[-1]
            print(line, flush=True)
    if args.task:
        report["task"] = run_task(epochs, seeds, args.reservoirs)
        print("\n" + task_table(report["task"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.write_results:
        write_results(build_section(report))
        print(f"\nwrote the section of {RESULTS.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
