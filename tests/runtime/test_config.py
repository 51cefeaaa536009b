"""RuleConfig: validation, the reference preset, names and the dict round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest

from twinpass.core.rule_spec import RuleSpec
from twinpass.runtime import ConfigError, RuleConfig
from twinpass.runtime.config import INIT_FIELDS, OPTIMIZERS, RULES

# (fields, words the message must contain)
BAD = [
    ({"rule": "sgd"}, ["unknown rule", "'sgd'", "anp, np, wp, bp"]),
    ({"rule": "ANP"}, ["unknown rule", "'ANP'"]),
    ({"optimizer": "rmsprop", "rule": "bp"}, ["unknown optimizer", "'rmsprop'", "sgd or adam"]),
    ({"optimizer": "adam"}, ["Adam", "bp"]),
    ({"optimizer": "adam", "rule": "np"}, ["Adam", "bp"]),
    ({"lr": -1e-3}, ["lr", ">= 0", "-0.001"]),
    ({"lr": math.nan}, ["lr", "finite", "nan"]),
    ({"lr": math.inf}, ["lr", "finite", "inf"]),
    ({"lr": 0.0}, ["lr must be > 0"]),
    ({"sigma": -1.0}, ["sigma", ">= 0"]),
    ({"sigma": math.inf}, ["sigma", "finite"]),
    ({"eps": math.nan}, ["eps", "finite"]),
    ({"eps": -1e-4}, ["eps", ">= 0"]),
    ({"rule": "np", "sigma": 0.0}, ["NP", "sigma", "> 0"]),
    ({"rule": "wp", "sigma": 0.0}, ["WP", "sigma", "> 0"]),
    ({"rule": "anp", "sigma": 0.0}, ["ANP", "sigma = 0"]),
    ({"bptt_window": 0, "rule": "bp"}, ["bptt_window", ">= 1", "0"]),
    ({"bptt_window": -3}, ["bptt_window", "-3"]),
    ({"resync_every": -1}, ["resync_every", ">= 0", "-1"]),
    ({"two_noisy_passes": True, "rule": "wp"}, ["WP", "two noisy passes"]),
    ({"two_noisy_passes": True, "rule": "bp"}, ["BP", "two noisy passes"]),
    ({"gain": 0.0}, ["gain", "positive", "0.0"]),
    ({"gain": -2.0}, ["gain", "-2.0"]),
    ({"gain": math.nan}, ["gain", "nan"]),
    ({"gain": math.inf}, ["gain", "inf"]),
]


@pytest.mark.parametrize(("fields", "words"), BAD, ids=[repr(f) for f, _ in BAD])
def test_bad_value_raises_config_error_naming_it(fields: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        RuleConfig(**fields)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from {message!r}"
    # ConfigError is also a ValueError, so generic callers can catch it.
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "fields",
    [
        {"lr": "1e-3"},  # a string from a config file or the environment
        {"sigma": None},
        {"bptt_window": 2.5, "rule": "bp"},  # silently truncated to 2 by the BPTT kernel
        {"resync_every": 1.5},  # silently truncated to 1 by the kernel
    ],
    ids=["lr-str", "sigma-None", "window-float", "resync-float"],
)
def test_wrong_type_raises_config_error(fields: dict) -> None:
    with pytest.raises(ConfigError):
        RuleConfig(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"rule": "np"},
        {"rule": "wp", "decorrelation": True},
        {"rule": "bp", "optimizer": "adam", "bptt_window": 20},
        {"rule": "anp", "sigma": 0.0, "two_noisy_passes": True},  # intrinsic noise only
        {"rule": "np", "two_noisy_passes": True},
        {"rule": "bp", "sigma": 0.0},  # BP ignores sigma
        {"resync_every": 0, "output_cap": False, "gain": 1.0},
        {"eps": 0.0, "decorrelation": True},
    ],
)
def test_good_values_are_accepted(fields: dict) -> None:
    config = RuleConfig(**fields)
    for key, value in fields.items():
        assert getattr(config, key) == value


def test_defaults_are_the_stable_settings() -> None:
    c = RuleConfig()
    assert (c.rule, c.decorrelation, c.optimizer) == ("anp", False, "sgd")
    assert (c.lr, c.sigma, c.eps) == (1e-3, 1e-3, 1e-4)
    assert (c.bptt_window, c.two_noisy_passes, c.gain) == (20, False, None)
    # twinpass's stabilisers (docs/design.md §3.1) are on by default ...
    assert c.resync_every == 10 and c.output_cap is True
    # ... and so are the exact readout over [hidden, input, 1] and the leaky reservoir
    # units chosen by benchmarks/default_sweep.py (docs/design.md §2, §4, §5).
    assert (c.readout, c.readout_inputs, c.forgetting) == ("rls", True, 0.9999)
    assert (c.leak, c.spectral_radius, c.input_scale) == (0.3, 0.95, 1.0)
    assert (c.lr_hidden, c.radius_bound, c.hidden_lr) == (1e-3, 1.1, 1e-3)
    assert RuleConfig(rule="bp").optimizer == "adam" and RuleConfig(rule="wp").readout == "anp"


@pytest.mark.parametrize("rule", RULES)
def test_reference_turns_the_stabilisers_off(rule: str) -> None:
    ref = RuleConfig.reference(rule)
    assert ref.rule == rule
    assert ref.resync_every == 0 and ref.output_cap is False
    assert (ref.lr, ref.sigma, ref.eps) == (1e-3, 1e-3, 1e-4)
    if rule == "bp":  # the reference's BP: one step, Adam
        assert (ref.optimizer, ref.bptt_window) == ("adam", 1)
    else:
        assert ref.optimizer == "sgd"


def test_reference_overrides_win_and_are_validated() -> None:
    ref = RuleConfig.reference("bp", bptt_window=5, optimizer="sgd", decorrelation=True)
    assert (ref.bptt_window, ref.optimizer, ref.decorrelation) == (5, "sgd", True)
    assert ref.resync_every == 0
    assert RuleConfig.reference("anp", resync_every=3).resync_every == 3
    with pytest.raises(ConfigError, match="lr"):
        RuleConfig.reference("anp", lr=-1.0)
    with pytest.raises(ConfigError, match="unknown rule"):
        RuleConfig.reference("bogus")


@pytest.mark.parametrize(
    ("rule", "decorrelation", "name"),
    [
        ("anp", False, "ANP"),
        ("anp", True, "DANP"),
        ("np", False, "NP"),
        ("np", True, "DNP"),
        ("wp", False, "WP"),
        ("wp", True, "DWP"),
        ("bp", False, "BP"),
        ("bp", True, "DBP"),
    ],
)
def test_name_as_in_the_paper(rule: str, decorrelation: bool, name: str) -> None:
    assert RuleConfig(rule=rule, decorrelation=decorrelation).name == name


def test_resolved_gain() -> None:
    assert RuleConfig().resolved_gain(102) == math.sqrt(102)
    assert RuleConfig(gain=2.5).resolved_gain(102) == 2.5


def test_resolve_works_out_every_default_once_for_the_network() -> None:
    spec = RuleConfig(lr=2e-3, lr_hidden=None, gain=None).resolve(1, 32, 1)
    assert spec.shape == (1, 32, 1)
    assert spec.gain == math.sqrt(34) and spec.lr_hidden == 2e-3
    assert (spec.readout, spec.optimizer) == ("rls", "sgd")
    given = RuleConfig(gain=2.5, lr_hidden=1e-4, radius_bound=None).resolve(3, 10, 2)
    assert (given.gain, given.lr_hidden, given.radius_bound) == (2.5, 1e-4, None)
    assert RuleConfig(rule="bp").resolve(1, 4, 1).optimizer == "adam"


def test_every_learning_field_reaches_the_resolved_rule() -> None:
    """A field added to RuleConfig must be added to RuleSpec too (or to INIT_FIELDS if only
    the initial draw uses it): otherwise no device would ever receive it."""
    config = {f.name for f in dataclasses.fields(RuleConfig)}
    spec = {f.name for f in dataclasses.fields(RuleSpec)} - {"shape"}
    assert config - set(INIT_FIELDS) == spec
    full = RuleConfig().resolve(2, 5, 1)
    for name in spec - {"gain", "lr_hidden"}:
        assert getattr(full, name) == getattr(RuleConfig(), name), name


def test_frozen_and_replace_validates() -> None:
    c = RuleConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 1.0  # type: ignore[misc]
    d = c.replace(lr=0.5, decorrelation=True)
    assert (d.lr, d.decorrelation, d.name) == (0.5, True, "DANP")
    assert c.lr == 1e-3  # the original is untouched
    with pytest.raises(ConfigError, match="lr"):
        c.replace(lr=-1.0)


ROUND_TRIP = [
    RuleConfig(),
    RuleConfig.reference("anp"),
    RuleConfig.reference("bp", bptt_window=7),
    RuleConfig(rule="wp", decorrelation=True, lr=2e-4, sigma=3e-3, eps=5e-5),
    RuleConfig(rule="np", two_noisy_passes=True, resync_every=0, gain=3.0),
    RuleConfig(rule="eprop", feedback="random", leak=0.5),
    RuleConfig(rule="rtrl", readout="nlms"),
]


@pytest.mark.parametrize("config", ROUND_TRIP, ids=lambda c: c.name)
def test_dict_round_trip_through_json(config: RuleConfig) -> None:
    d = config.to_dict()
    # feedback came later: written only when not its default (old dicts keep their bits).
    late = set() if config.feedback != "symmetric" else {"feedback"}
    assert set(d) == {f.name for f in dataclasses.fields(RuleConfig)} - late
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in d.values())
    again = RuleConfig.from_dict(json.loads(json.dumps(d)))
    assert again == config
    assert again.to_dict() == d


def test_the_gradient_rules_default_to_the_exact_readout_and_refuse_what_they_lack() -> None:
    assert RuleConfig(rule="uoro").readout == "rls"
    assert RuleConfig(rule="eprop", feedback="random").feedback == "random"
    with pytest.raises(ConfigError, match="unknown feedback 'transposed': choose one of"):
        RuleConfig(rule="eprop", feedback="transposed")
    with pytest.raises(ConfigError, match="feedback 'random' is for the gradient rules"):
        RuleConfig(rule="anp", feedback="random")
    with pytest.raises(ConfigError, match="two noisy passes"):
        RuleConfig(rule="rtrl", two_noisy_passes=True)


def test_from_dict_fills_defaults_for_missing_fields() -> None:
    assert RuleConfig.from_dict({"rule": "np"}) == RuleConfig(rule="np")
    assert RuleConfig.from_dict({}) == RuleConfig()


def test_from_dict_rejects_unknown_fields_by_name() -> None:
    d = RuleConfig().to_dict() | {"learning_rate": 0.1, "zz": 1}
    with pytest.raises(ConfigError, match="unknown rule configuration field") as info:
        RuleConfig.from_dict(d)
    assert "learning_rate" in str(info.value) and "zz" in str(info.value)


def test_from_dict_validates_values() -> None:
    with pytest.raises(ConfigError, match="sigma"):
        RuleConfig.from_dict({"rule": "np", "sigma": 0.0})


def test_constants_match_the_fields() -> None:
    assert RULES == ("anp", "np", "wp", "bp", "rtrl", "eprop", "uoro")
    assert OPTIMIZERS == ("sgd", "adam")


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("spectral_radius", 0.0, "> 0"),
        ("spectral_radius", -0.5, "> 0"),
        ("input_scale", 0.0, "> 0"),
        ("leak", 0.0, "(0, 1]"),
        ("leak", 1.2, "(0, 1]"),
        ("forgetting", 0.0, "(0, 1]"),
        ("forgetting", 1.0001, "(0, 1]"),
        ("readout_step", 2.0, "(0, 2)"),
        ("readout_p0", -1.0, "> 0"),
        ("radius_bound", float("nan"), "> 0"),
        ("lr_hidden", 0.0, "> 0"),
        ("guard_every", 0, ">= 1"),
    ],
)
def test_network_and_readout_fields_name_their_range(field: str, value: float, allowed: str):
    with pytest.raises(ConfigError, match=rf"{field} must .*{re.escape(allowed)}"):
        RuleConfig(**{field: value})


def test_readouts_are_checked_against_the_rule() -> None:
    with pytest.raises(ConfigError, match="unknown readout 'lms'"):
        RuleConfig(readout="lms")
    with pytest.raises(ConfigError, match="WP learns its readout by its own estimate"):
        RuleConfig(rule="wp", readout="rls")
    assert RuleConfig(rule="np").readout == "rls" and RuleConfig(rule="bp").readout == "anp"
