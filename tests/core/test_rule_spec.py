"""RuleSpec: the resolved rule every backend receives holds resolved, typed values only."""

from __future__ import annotations

import dataclasses
import math

import pytest

from twinpass.core.errors import ConfigError
from twinpass.core.rule_spec import RuleSpec, check_rule_spec
from twinpass.runtime import RuleConfig

SPEC = RuleConfig().resolve(1, 8, 1)


def test_frozen_plain_data_with_the_paper_name() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPEC.lr = 1.0  # type: ignore[misc]
    assert SPEC.name == "ANP" and SPEC.n_total == 10
    assert RuleConfig(decorrelation=True).resolve(1, 8, 1).name == "DANP"
    d = SPEC.to_dict()
    assert d["shape"] == [1, 8, 1] and d["gain"] == math.sqrt(10)
    assert RuleSpec(**{**d, "shape": tuple(d["shape"])}) == SPEC


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gain", None),  # not resolved
        ("lr_hidden", None),
        ("readout", None),
        ("optimizer", None),
        ("lr", "0.1"),
        ("lr", math.nan),
        ("resync_every", 2.0),
        ("output_cap", 1),
        ("decorrelation", "yes"),
        ("shape", (1, 0, 1)),
        ("shape", [1, 8, 1]),
    ],
)
def test_an_unresolved_or_mistyped_field_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field if field != "shape" else "shape must be"):
        dataclasses.replace(SPEC, **{field: value})


def test_the_safeguards_none_switches_off_stay_optional() -> None:
    off = dataclasses.replace(SPEC, radius_bound=None, clip=None)
    assert off.radius_bound is None and off.clip is None
    assert dataclasses.replace(SPEC, lr=1).lr == 1  # an int is a number


def test_a_mapping_is_not_a_rule_spec() -> None:
    assert check_rule_spec(SPEC) is SPEC
    with pytest.raises(ConfigError, match=r"RuleConfig\(...\)\.resolve"):
        check_rule_spec(SPEC.to_dict())
