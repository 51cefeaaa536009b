"""The tuner's parts: the search space, a trial's slices, and a search on a real cluster."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from twinpass.core.errors import DataError
from twinpass.runtime.cluster import open_client
from twinpass.runtime.config import PAPER_NETWORK, RuleConfig
from twinpass.runtime.tasks.mackey_glass import MackeyGlassStream
from twinpass.runtime.tune import (
    SEGMENTS,
    TuneProblem,
    best_setting,
    finished,
    given_params,
    held_out_mse,
    open_study,
    run_slice,
    search,
    searched,
    setting_of,
    suggest,
)


def _rows(n: int) -> np.ndarray:
    return MackeyGlassStream(seed=0).next(n).reshape(-1, 1)


def test_the_search_covers_what_each_rule_uses() -> None:
    assert searched(RuleConfig()) == [
        "lr_hidden",
        "sigma",
        "spectral_radius",
        "input_scale",
        "leak",
        "forgetting",
    ]
    paper = searched(RuleConfig(**PAPER_NETWORK))
    assert "lr" in paper and "forgetting" not in paper and "spectral_radius" not in paper
    assert "readout_step" in searched(RuleConfig(readout="nlms"))
    assert "sigma" not in searched(RuleConfig(rule="bp"))


def test_every_drawn_setting_is_a_valid_rule() -> None:
    base = RuleConfig()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(50):
        setting = suggest(study.ask(), base)
        config = base.replace(**setting)  # raises ConfigError if a draw is out of range
        assert 0.99 <= config.forgetting <= 0.99999
        assert config.spectral_radius <= base.radius_bound


def test_the_given_setting_round_trips_through_optuna_parameters() -> None:
    base = RuleConfig()
    setting = setting_of(given_params(base))
    assert setting["forgetting"] == pytest.approx(base.forgetting)
    assert setting["leak"] == base.leak and setting["lr_hidden"] == base.lr_hidden


def test_slices_continue_one_forecaster_like_one_run() -> None:
    problem = TuneProblem(n_inputs=1, n_hidden=12, tune_rows=400)
    data = _rows(400)
    res = None
    for lo, hi in ((0, 100), (100, 200), (200, 300), (300, 400)):
        res = run_slice(problem, {}, data, lo, hi, res)
    assert res is not None and len(res.sse) == 4
    whole = problem.forecaster(problem.base)
    step = whole.learn_block(data)
    sse = float(np.sum((step.predictions[:, 0] - step.truth) ** 2))
    assert sum(res.sse) == pytest.approx(sse, rel=1e-9)
    assert sum(res.scored) == len(step.truth)
    half = res.objective()
    assert half == pytest.approx(sum(res.sse[2:]) / sum(res.scored[2:]))


def test_a_diverging_setting_is_a_result_not_an_error() -> None:
    # The paper's readout without the output cap and a learning rate of a million: the first
    # updates overflow whatever the platform's rounding, so the divergence always happens.
    base = RuleConfig(**PAPER_NETWORK, output_cap=False)
    problem = TuneProblem(n_inputs=1, n_hidden=12, base=base)
    data = _rows(300) * 1e6
    res = run_slice(problem, {"lr": 1e6, "sigma": 0.1}, data, 0, 300, None)
    assert res.diverged
    assert res.sse == () and res.scored == ()
    # A diverged trial stays diverged: later slices return it unchanged, without running.
    assert run_slice(problem, {}, data, 0, 10, res) is res


def test_a_search_on_a_local_cluster_finishes_its_trials(tmp_path) -> None:
    problem = TuneProblem(n_inputs=1, n_hidden=10, tune_rows=400)
    data = _rows(600)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(storage, "t", seed=0, startup_trials=2)
    events = []
    with open_client(workers=2) as client:
        search(client, study, problem, data, 6, in_flight=2, on_trial=events.append)
        assert finished(study) == 6
        # Run again with a larger budget: the finished trials count, only the rest run.
        search(client, study, problem, data, 8, in_flight=2, on_trial=events.append)
    assert finished(study) == 8
    assert len(events) == 8
    assert [e.done for e in events][-1] == 8
    # The first trial is the setting given (the defaults), enqueued.
    first = study.trials[0]
    assert setting_of(first.params)["leak"] == pytest.approx(RuleConfig().leak)
    setting, value, _ = best_setting(study)
    assert math.isfinite(value) and value <= first.value
    scores = held_out_mse(problem, setting, data)
    assert scores["after_mse"] is not None and math.isfinite(scores["after_mse"])
    assert SEGMENTS == 4


def test_trials_left_running_by_a_killed_tune_are_failed_and_enqueued_again(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(storage, "t", seed=0)
    orphan = study.ask()
    orphan.suggest_float("leak", 0.05, 1.0)  # it was half-way when its tune was killed
    again = open_study(storage, "t", seed=0)
    states = [t.state for t in again.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert again.trials[1].params == {} and again.trials[1].system_attrs  # enqueued params
    assert finished(again) == 0


def test_too_few_rows_for_the_tuning_rows_is_a_data_error(tmp_path) -> None:
    problem = TuneProblem(n_inputs=1, n_hidden=10, tune_rows=1000)
    study = open_study(f"sqlite:///{tmp_path / 's.db'}", "t", seed=0)
    with open_client(workers=1) as client, pytest.raises(DataError, match="only 500 rows"):
        search(client, study, problem, _rows(500), 2, in_flight=1)
