"""The learning rule's fixed-point hyperparameters: what a model image and SET_MODE carry.

docs/protocol.md §6.6. :class:`Hyper` holds them as the wire does (integers in their Q
formats); :func:`hyper_from_rule` is the host's conversion of a resolved rule
(:class:`~twinpass.core.rule_spec.RuleSpec`), the only place floats meet them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from twinpass.core.errors import ConfigError
from twinpass.core.rule_spec import RuleSpec, check_rule_spec

from .qformat import ONE_A, to_q

_M32 = 0xFFFFFFFF


@dataclass
class Hyper:
    """The learning rule's fixed-point hyperparameters (what the image and SET_MODE carry).

    lr_q: lr in Q32 (lr < 1). sigma_q: perturbation sd in Q16 (<= 1). eps_q: decorrelation
    rate in Q32. gain_q: the ANP step factor in Q16 (sqrt(n_in + N + n_out) by default).
    resync_every: copy replica 1's state into replica 2 every k steps (0: never).
    output_cap: cap the output step at the normalised-LMS bound. two_noisy: perturb both
    replicas. decorrelation: learn D.
    """

    lr_q: int = 4294967  # 1e-3
    sigma_q: int = 66  # 1e-3
    eps_q: int = 429497  # 1e-4
    gain_q: int = 1 << 16
    resync_every: int = 10
    output_cap: bool = True
    two_noisy: bool = False
    decorrelation: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        limits = {
            "lr_q": (1, _M32),
            "sigma_q": (0, ONE_A),
            "eps_q": (0, _M32),
            "gain_q": (0, _M32),
            "resync_every": (0, 0xFFFF),
        }
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        for name in ("output_cap", "two_noisy", "decorrelation"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, changes: dict[str, Any]) -> Hyper:
        data = self.to_dict()
        data.update({k: changes[k] for k in data if k in changes})
        return Hyper(**data)


def hyper_from_rule(rule: RuleSpec) -> Hyper:
    """The fixed-point hyperparameters of a resolved rule (host side: floats here).

    Refuses what the device cannot run: rules other than ANP.
    """
    rule = check_rule_spec(rule)
    if rule.rule != "anp":
        raise ConfigError(f"the device learns with ANP only, not {rule.rule!r}")
    return Hyper(
        lr_q=max(1, to_q(rule.lr, 32)),
        sigma_q=to_q(rule.sigma, 16),
        eps_q=to_q(rule.eps, 32),
        gain_q=to_q(rule.gain, 16),
        resync_every=rule.resync_every,
        output_cap=rule.output_cap,
        two_noisy=rule.two_noisy_passes,
        decorrelation=rule.decorrelation,
    )
