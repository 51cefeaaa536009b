"""Tuning a stream's learner: an Optuna search whose trials run as Dask tasks.

Every stream wants its own settings. ``tune`` searches the learning rates, sigma, the
spectral radius, the input scale, the leak and the readout's forgetting factor (those of
them the rule uses) on the first ``tune_rows`` rows of a stream, scored exactly as
``twinpass stream`` scores (causal, prequential: :class:`StreamForecaster`), then reports
the best setting's score on the rows after them, which the search never saw, beside the
default setting's on the same rows.

How the work is split (docs/design.md §10):

- Optuna (ask and tell) runs in the client only, on its storage (an SQLite file by
  default): finished trials survive an interrupted tune, and a trial left running by one
  is marked failed and enqueued again when the tune is resumed.
- A trial is ``SEGMENTS`` Dask tasks, each streaming one slice of the tuning rows and
  returning the forecaster (carried to the next slice on the same worker) and the slice's
  MSE, which the client reports to Optuna; a trial the pruner finds hopeless after a slice
  is stopped there. A trial's score is its MSE over the second half of the tuning rows,
  past the transient of the first rows. The first trial of a study is the setting the
  command was given (the defaults, unless options changed them), so the best setting is
  never worse than it on the tuning rows. A worker that dies loses nothing: Dask
  recomputes the slices it held from the data, which every worker holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from twinpass.core.errors import ClusterError, ConfigError, DataError, DivergenceError

from .config import RuleConfig
from .streaming import StreamForecaster

if TYPE_CHECKING:
    import optuna
    from distributed import Client

SEGMENTS = 4
"""Slices of the tuning rows: the pruner looks at a trial after each."""

CONFIG_FORMAT = "twinpass.config"
CONFIG_VERSION = 1


@dataclass(frozen=True)
class TuneProblem:
    """What is tuned: the stream's framing and the fixed part of the model."""

    n_inputs: int
    horizon: int = 1
    n_hidden: int = 100
    base: RuleConfig = field(default_factory=RuleConfig)
    seed: int = 0
    dtype: str = "float32"
    target_input: bool = True
    target_mode: str = "level"
    tune_rows: int = 5_000

    def forecaster(self, config: RuleConfig) -> StreamForecaster:
        return StreamForecaster(
            self.n_inputs,
            horizon=self.horizon,
            n_hidden=self.n_hidden,
            config=config,
            seed=self.seed,
            dtype=self.dtype,
            target_input=self.target_input,
            target_mode=self.target_mode,
        )


# ---------------------------------------------------------------------------------------
# The search space
# ---------------------------------------------------------------------------------------


def searched(base: RuleConfig) -> list[str]:
    """The RuleConfig fields searched for a rule (the ones it uses)."""
    names = []
    if base.rule == "bp" or base.readout == "anp":
        names.append("lr")  # the readout's step, and BP's
    if base.rule != "bp":
        names += ["lr_hidden", "sigma"]
    if base.spectral_radius is not None:
        names.append("spectral_radius")
    if base.input_scale is not None:
        names.append("input_scale")
    names.append("leak")
    if base.readout == "rls":
        names.append("forgetting")
    elif base.readout == "nlms":
        names.append("readout_step")
    return names


def suggest(trial: optuna.Trial, base: RuleConfig) -> dict[str, float]:
    """One setting drawn by ``trial``: RuleConfig field -> value."""
    r = _RANGES
    ranges: dict[str, Callable[[], float]] = {
        "lr": lambda: trial.suggest_float("lr", *r["lr"], log=True),
        "lr_hidden": lambda: trial.suggest_float("lr_hidden", *r["lr_hidden"], log=True),
        "sigma": lambda: trial.suggest_float("sigma", *r["sigma"], log=True),
        # At most the guard's bound, which would otherwise pull R back at its first check.
        "spectral_radius": lambda: trial.suggest_float(
            "spectral_radius", 0.1, base.radius_bound or 1.5
        ),
        "input_scale": lambda: trial.suggest_float("input_scale", *r["input_scale"], log=True),
        "leak": lambda: trial.suggest_float("leak", *r["leak"]),
        # λ = 1 - 10^-k: memories of 100 to 100,000 rows, drawn evenly in k.
        "forgetting": lambda: (
            1.0 - 10.0 ** -trial.suggest_float("forgetting_digits", *r["forgetting_digits"])
        ),
        "readout_step": lambda: trial.suggest_float("readout_step", *r["readout_step"], log=True),
    }
    return {name: ranges[name]() for name in searched(base)}


_RANGES = {
    "lr": (1e-4, 1e-1),
    "lr_hidden": (1e-5, 1e-1),
    "sigma": (1e-4, 1e-1),
    "input_scale": (0.05, 5.0),
    "leak": (0.05, 1.0),
    "forgetting_digits": (2.0, 5.0),
    "readout_step": (0.01, 1.5),
}


def given_params(base: RuleConfig) -> dict[str, float]:
    """``base``'s own values as Optuna parameters (clipped into the search's ranges)."""
    values: dict[str, float | None] = {
        "lr": base.lr,
        "lr_hidden": base.hidden_lr,
        "sigma": base.sigma,
        "spectral_radius": base.spectral_radius,
        "input_scale": base.input_scale,
        "leak": base.leak,
        "forgetting_digits": -math.log10(max(1.0 - base.forgetting, 1e-5)),
        "readout_step": base.readout_step,
    }
    ranges = {**_RANGES, "spectral_radius": (0.1, base.radius_bound or 1.5)}
    names = [n if n != "forgetting" else "forgetting_digits" for n in searched(base)]
    out = {}
    for n in names:
        lo, hi = ranges[n]
        value = values[n]
        assert value is not None  # searched() names only the fields the rule has
        out[n] = float(min(max(value, lo), hi))
    return out


def setting_of(params: dict[str, float]) -> dict[str, float]:
    """A trial's Optuna parameters as RuleConfig fields (forgetting from its digits)."""
    out = dict(params)
    if "forgetting_digits" in out:
        out["forgetting"] = 1.0 - 10.0 ** -out.pop("forgetting_digits")
    return out


# ---------------------------------------------------------------------------------------
# A trial's slices (run on the workers)
# ---------------------------------------------------------------------------------------


@dataclass
class SliceResult:
    """A forecaster after a trial's slices, and the model's squared error and number of
    scored forecasts in each slice so far (``forecaster`` None: the setting diverged)."""

    forecaster: StreamForecaster | None
    sse: tuple[float, ...] = ()
    scored: tuple[int, ...] = ()

    @property
    def diverged(self) -> bool:
        return self.forecaster is None

    @property
    def last_mse(self) -> float:
        """The MSE of the latest slice: what the pruner compares across trials."""
        return self.sse[-1] / max(self.scored[-1], 1)

    def objective(self) -> float:
        """The trial's score: the MSE over the second half of the tuning rows, where the
        transient of the first rows has passed (the rows after them are what it predicts)."""
        half = len(self.sse) // 2
        return sum(self.sse[half:]) / max(sum(self.scored[half:]), 1)


def run_slice(
    problem: TuneProblem,
    setting: dict[str, float],
    data: np.ndarray,
    lo: int,
    hi: int,
    previous: SliceResult | None,
) -> SliceResult:
    """Stream rows [lo, hi) of ``data`` through the trial's forecaster; never raises for a
    setting that diverges (that is a result: the worst)."""
    if previous is not None and previous.diverged:
        return previous
    f = previous.forecaster if previous is not None else None
    try:
        if f is None:
            f = problem.forecaster(problem.base.replace(**setting))
        step = f.learn_block(data[lo:hi])
    except DivergenceError:
        return SliceResult(None)
    sse = float(np.sum((step.predictions[:, 0] - step.truth) ** 2))
    if not math.isfinite(sse):
        return SliceResult(None)
    before = previous or SliceResult(f)
    return SliceResult(f, (*before.sse, sse), (*before.scored, len(step.truth)))


def held_out_mse(
    problem: TuneProblem, setting: dict[str, float], data: np.ndarray
) -> dict[str, float | None]:
    """A setting run from scratch over all of ``data``: its MSE on the second half of the
    tuning rows (the search's objective) and on the rows after them (forecasts whose target
    row is past ``tune_rows``), with persistence's on the same rows."""
    f = problem.forecaster(problem.base.replace(**setting))
    k = problem.tune_rows
    out: dict[str, float | None] = {"tune_mse": None, "after_mse": None, "after_persistence": None}
    try:
        f.learn_block(data[: k // 2])
        first = f.learn_block(data[k // 2 : k])
        out["tune_mse"] = float(np.mean((first.predictions[:, 0] - first.truth) ** 2))
        step = f.learn_block(data[k:])
    except DivergenceError:
        out["tune_mse"] = out["tune_mse"] or math.inf
        out["after_mse"] = math.inf
        return out
    if len(step.truth):
        err = step.predictions - step.truth[:, None]
        out["after_mse"] = float(np.mean(err[:, 0] ** 2))
        out["after_persistence"] = float(np.mean(err[:, 1] ** 2))
    return out


# ---------------------------------------------------------------------------------------
# The search (run in the client)
# ---------------------------------------------------------------------------------------


@dataclass
class TrialEvent:
    """What the progress display is told after each finished trial."""

    number: int
    state: str  # complete, pruned, diverged
    value: float | None
    done: int
    total: int
    best_value: float | None
    best_number: int | None


def open_study(storage: str, name: str, seed: int, *, startup_trials: int = 8) -> optuna.Study:
    """The study ``name`` in ``storage``, created or resumed; trials a killed tune left
    running are failed and their settings enqueued again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials, constant_liar=True
    )
    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            load_if_exists=True,
            direction="minimize",
            sampler=sampler,
            pruner=pruner,
        )
    except (ValueError, ImportError, RuntimeError) as e:
        raise ConfigError(f"--storage {storage}: cannot open the study there ({e})") from None
    except Exception as e:  # SQLAlchemy's errors: an unreadable or foreign database file
        raise ConfigError(
            f"--storage {storage}: not an Optuna storage ({type(e).__name__}: {e})"
        ) from None
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
    return study


def finished(study: optuna.Study) -> int:
    """Trials that count towards ``--trials``: complete, pruned or diverged."""
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    n = len(study.get_trials(deepcopy=False, states=states))
    return n + sum(
        1
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,))
        if t.user_attrs.get("diverged")
    )


#: Times a trial runs again after its task failed for a reason that is not its setting's.
TRIAL_RETRIES = 2


def search(
    client: Client,
    study: optuna.Study,
    problem: TuneProblem,
    data: np.ndarray,
    trials: int,
    *,
    in_flight: int,
    on_trial: Callable[[TrialEvent], None] | None = None,
) -> None:
    """Run trials until ``trials`` have finished in ``study`` (counting earlier runs).

    A trial whose task failed for a reason that is not its setting's (a worker killed past
    Dask's retries, the tuning rows lost with the workers that held them) runs again from
    its first slice, on rows scattered anew, up to :data:`TRIAL_RETRIES` times; then it is
    failed and another trial takes its place. :class:`ClusterError` when failures keep
    coming (more than ``trials`` of them): the cluster, not a setting, is at fault.
    """
    import optuna
    from distributed import as_completed

    if problem.tune_rows > len(data):
        raise DataError(f"--tune-rows {problem.tune_rows}: the stream has only {len(data)} rows")

    def scatter() -> Any:
        # A fresh key each time (hash=False): re-scattering the same bytes under the key of a
        # future being released loses them ("Could not find data").
        return client.scatter(data[: problem.tune_rows], broadcast=True, hash=False)

    tuning = scatter()
    attempts: dict[int, int] = {}
    failures = 0
    bounds = np.linspace(0, problem.tune_rows, SEGMENTS + 1).astype(int)
    pending = as_completed()
    # future -> (trial, its setting, the slice it ran)
    running: dict[Any, tuple[optuna.Trial, dict[str, float], int]] = {}

    def start() -> None:
        trial = study.ask()
        setting = suggest(trial, problem.base)
        submit(trial, setting, 0, None)

    def submit(trial: optuna.Trial, setting: dict[str, float], i: int, prev: Any) -> None:
        fut = client.submit(
            run_slice,
            problem,
            setting,
            tuning,
            int(bounds[i]),
            int(bounds[i + 1]),
            prev,
            pure=False,
            priority=trial.number,  # older trials first: they free their slot sooner
        )
        running[fut] = (trial, setting, i)
        pending.add(fut)

    def report(trial: optuna.Trial, state: str, value: float | None) -> None:
        if on_trial is None:
            return
        try:
            best = study.best_trial
            best_value, best_number = best.value, best.number
        except ValueError:
            best_value = best_number = None
        on_trial(
            TrialEvent(trial.number, state, value, finished(study), trials, best_value, best_number)
        )

    if not study.get_trials(deepcopy=False):
        study.enqueue_trial(given_params(problem.base))
    todo = trials - finished(study)
    for _ in range(max(min(in_flight, todo), 0)):
        start()
        todo -= 1
    for fut in pending:
        trial, setting, i = running.pop(fut)
        res: SliceResult | None
        try:
            res = fut.result()
        except Exception as exc:  # KilledWorker past Dask's retries, lost data, or a bug
            attempts[trial.number] = attempts.get(trial.number, 0) + 1
            if attempts[trial.number] <= TRIAL_RETRIES:
                tuning = scatter()
                submit(trial, setting, 0, None)
                continue
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            report(trial, "failed", None)
            failures += 1
            if failures > trials:
                raise ClusterError(
                    f"{failures} trials failed on the cluster, each {TRIAL_RETRIES + 1} times; "
                    f"the last: {type(exc).__name__}: {exc}"
                ) from exc
            todo += 1  # not the setting's fault: another trial takes its place
            res = None
        if res is None:
            pass
        elif res.diverged:
            trial.set_user_attr("diverged", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            report(trial, "diverged", None)
        else:
            trial.report(res.last_mse, i)
            if i + 1 == SEGMENTS:
                study.tell(trial, res.objective())
                report(trial, "complete", res.objective())
            elif trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                report(trial, "pruned", res.last_mse)
            else:
                submit(trial, setting, i + 1, fut)
                continue
        if todo > 0:
            start()
            todo -= 1


def best_setting(study: optuna.Study) -> tuple[dict[str, float], float, int]:
    """The best complete trial's setting (RuleConfig fields), value and number."""
    try:
        best = study.best_trial
    except ValueError:
        raise DataError(
            "no trial finished without diverging or being pruned: widen the search "
            "(--trials) or check the stream"
        ) from None
    assert best.value is not None  # a complete trial has its value
    return setting_of(best.params), float(best.value), best.number


def config_file(
    setting: dict[str, float], fixed: dict[str, Any], tuned: dict[str, Any]
) -> dict[str, Any]:
    """The file ``--config`` reads: option values (by parameter name), and how they were
    found."""
    options = {**fixed, **setting}
    return {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, "options": options, "tuned": tuned}
