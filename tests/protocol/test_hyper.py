"""The fixed-point hyperparameters and their conversion from a resolved rule."""

from __future__ import annotations

import math

import pytest

from twinpass.core.errors import ConfigError
from twinpass.protocol.hyper import Hyper, hyper_from_rule
from twinpass.protocol.qformat import ONE_A
from twinpass.runtime import RuleConfig
from twinpass.runtime.config import PAPER_NETWORK


def test_hyper_validation_and_rule_conversion() -> None:
    h = hyper_from_rule(RuleConfig(**PAPER_NETWORK).resolve(1, 32, 1))
    assert (h.lr_q, h.sigma_q, h.gain_q) == (4294967, 66, round(math.sqrt(34) * 65536))
    with pytest.raises(ConfigError):
        hyper_from_rule(RuleConfig(**PAPER_NETWORK, rule="np").resolve(1, 32, 1))
    with pytest.raises(ConfigError, match="RuleSpec"):
        hyper_from_rule(RuleConfig(**PAPER_NETWORK).to_dict())  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        Hyper(sigma_q=ONE_A + 1)
    with pytest.raises(ConfigError):
        Hyper(lr_q=0)
