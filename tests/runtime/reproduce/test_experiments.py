"""The plan of `twinpass reproduce`: every configuration once, named stably."""

from __future__ import annotations

from dataclasses import replace

import pytest

from twinpass.core.errors import ConfigError
from twinpass.runtime.config import RuleConfig
from twinpass.runtime.reproduce.experiments import (
    ALL_EXPERIMENTS,
    GRADIENT_RULES,
    PAPER_RULES,
    RULES,
    SCALES,
    plan,
    rule_config,
)


@pytest.mark.parametrize("scale", list(SCALES))
def test_every_configuration_is_planned_once(scale: str) -> None:
    specs = plan(scale, data="WTH.csv")
    keys = [s.key for s in specs]
    assert len(keys) == len(set(keys))
    exps = {s.experiment for s in specs}
    assert exps == set(ALL_EXPERIMENTS) - {"memory"}
    # Both Mackey-Glass pairings, every rule in each, and every seed.
    mg = [s for s in specs if s.experiment == "mackey-glass"]
    assert {s.variant for s in mg} == {"ahead", "recall"}
    assert len(mg) == 2 * len(PAPER_RULES) * SCALES[scale].seeds
    # Every gradient rule on each of the three tasks, at one N.
    gr = [s for s in specs if s.experiment == "gradient-rules"]
    assert {s.variant for s in gr} == {"mackey-glass", "copy", "weather 1h"}
    assert len(gr) == 3 * len(GRADIENT_RULES) * SCALES[scale].seeds
    assert {s.hidden for s in gr} == {SCALES[scale].gradient_hidden}


def test_without_data_the_weather_experiments_are_left_out() -> None:
    specs = plan("quick")
    assert {s.experiment for s in specs} == {
        "mackey-glass",
        "copy",
        "decorrelation",
        "gradient-rules",
    }
    assert {s.variant for s in specs if s.experiment == "gradient-rules"} == {
        "mackey-glass",
        "copy",
    }
    assert all("path" not in s.task_kwargs for s in specs)


def test_only_and_seeds_select() -> None:
    specs = plan("quick", only=("copy",), seeds=1)
    assert {s.experiment for s in specs} == {"copy"}
    assert {s.seed for s in specs} == {0}
    assert len(specs) == len(PAPER_RULES)
    assert set(PAPER_RULES) | set(GRADIENT_RULES) == set(RULES)


def test_the_key_ignores_the_data_path_but_not_the_settings() -> None:
    a = plan("tiny", only=("weather",), data="/one/WTH.csv")
    b = plan("tiny", only=("weather",), data="/other/WTH.csv")
    assert [s.key for s in a] == [s.key for s in b]
    assert len({s.key for s in plan("tiny", only=("decorrelation",))}) == len(
        plan("tiny", only=("decorrelation",))
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scale": "huge"}, "unknown scale"),
        ({"scale": "quick", "only": ("nope",)}, "unknown experiment"),
        ({"scale": "quick", "seeds": 0}, "seeds"),
    ],
)
def test_bad_plans_are_config_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        plan(**kwargs)


def test_rule_labels_build_their_configurations() -> None:
    assert rule_config("DANP").decorrelation
    ref = rule_config("BP-ref")
    assert (ref.rule, ref.optimizer, ref.bptt_window) == ("bp", "adam", 1)
    assert rule_config("BPTT-K20").bptt_window == 20
    assert rule_config("ANP", eps=1e-3).eps == 1e-3
    with pytest.raises(ConfigError, match="unknown rule"):
        rule_config("XP")


def test_the_paper_rules_run_the_papers_network_and_twinpass_its_default() -> None:
    anp, ref, default = rule_config("ANP"), rule_config("ANP-ref"), rule_config("twinpass")
    assert (anp.readout, anp.leak, anp.readout_inputs) == ("anp", 1.0, False)
    assert anp.resync_every > 0 and ref.resync_every == 0  # safeguards on, and off
    assert default == RuleConfig()
    assert rule_config("BPTT-K20").bptt_mode == "chunked"


def test_a_changed_rule_changes_the_key() -> None:
    # A result of an older meaning of a label must not pass for a finished run.
    spec = plan("tiny", only=("copy",))[0]
    changed = replace(spec, overrides={"lr": 2e-3})
    assert spec.key != changed.key
    assert spec.fingerprint != changed.fingerprint
    assert spec.key == replace(spec).key  # and the same rule, the same key


def test_the_gradient_rules_run_their_own_rule() -> None:
    assert rule_config("e-prop").rule == "eprop"
    assert rule_config("e-prop-random").feedback == "random"
    assert (rule_config("UORO").rule, rule_config("RTRL").rule) == ("uoro", "rtrl")
