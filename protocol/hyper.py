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


#: The readouts a fixed-point device runs, by their code on the wire (``readout``): the
#: rule's own estimate, normalised LMS and (1.4) RLS with P in Q7.24 (docs/design.md §4,
#: docs/protocol.md §6.8).
READOUTS = ("anp", "nlms", "rls")
READOUT_ANP = 0
READOUT_NLMS = 1
READOUT_RLS = 2

#: RLS's P0 on a device: P is Q7.24 (±128). P0 = 10 is measured stable at N = 32 on the
#: Mackey-Glass task (no reset in 20,000 steps, benchmarks/rls_fixed_point.py); the host's
#: default 1e4 cannot be held at all.
P0_MAX = 100.0
DEVICE_P0 = 10.0
#: λ > 2/3 keeps ``q · im1_q`` within int64 (§6.8).
IM1_MAX = (1 << 31) - 1


@dataclass
class Hyper:
    """The learning rule's fixed-point hyperparameters (what the image and SET_MODE carry).

    lr_q: the readout's own step η in Q32 (readout ``anp``; lr < 1). lrh_q: the hidden
    layer's step η_h in Q32. sigma_q: perturbation sd in Q16 (<= 1). eps_q: decorrelation
    rate in Q32. gain_q: the ANP step factor in Q16 (sqrt(n_in + N + n_out) by default).
    resync_every: copy replica 1's state into replica 2 every k steps (0: never).
    output_cap: cap the output step at the normalised-LMS bound. two_noisy: perturb both
    replicas. decorrelation: learn D. readout: 0 the rule's own estimate (``anp``), 1 NLMS.
    readout_inputs: the readout sees [xh, u, 1] (B is n_out x (N + n_in + 1)), else xh.
    readout 2 is RLS: im1_q its forgetting as 1/λ − 1 in Q32, p0_q its P0 in Q24 (<= 100).
    mu_q: NLMS's step μ in Q16 (< 2). leak_q: the units' leak α in Q16 (1..2**16; 2**16:
    no leak). bound_q: the stability guard's bound on R's spectral radius in Q16 (0: no
    guard); guard_every: steps between its checks.
    """

    lr_q: int = 4294967  # 1e-3
    sigma_q: int = 66  # 1e-3
    eps_q: int = 429497  # 1e-4
    gain_q: int = 1 << 16
    resync_every: int = 10
    output_cap: bool = True
    two_noisy: bool = False
    decorrelation: bool = False
    lrh_q: int = 4294967  # 1e-3
    readout: int = READOUT_ANP
    readout_inputs: bool = False
    mu_q: int = 1 << 15  # 0.5
    leak_q: int = ONE_A  # 1: the paper's units
    bound_q: int = 0  # no guard
    guard_every: int = 1000
    im1_q: int = 429540  # λ = 0.9999
    p0_q: int = int(DEVICE_P0) << 24

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        limits = {
            "lr_q": (1, _M32),
            "sigma_q": (0, ONE_A),
            "eps_q": (0, _M32),
            "gain_q": (0, _M32),
            "resync_every": (0, 0xFFFF),
            "lrh_q": (1, _M32),
            "readout": (0, len(READOUTS) - 1),
            "mu_q": (1, 2 * ONE_A - 1),
            "leak_q": (1, ONE_A),
            "bound_q": (0, _M32),
            "guard_every": (1, _M32),
            "im1_q": (0, IM1_MAX),
            "p0_q": (1 if self.readout == READOUT_RLS else 0, int(P0_MAX) << 24),
        }
        for name, (lo, hi) in limits.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        for name in ("output_cap", "two_noisy", "decorrelation", "readout_inputs"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def readout_name(self) -> str:
        return READOUTS[self.readout]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, changes: dict[str, Any]) -> Hyper:
        data = self.to_dict()
        data.update({k: changes[k] for k in data if k in changes})
        return Hyper(**data)


def hyper_from_rule(rule: RuleSpec) -> Hyper:
    """The fixed-point hyperparameters of a resolved rule (host side: floats here).

    Refuses (ConfigError, naming what the device runs) a rule other than ANP and a readout
    other than the device's :data:`READOUTS`.
    """
    rule = check_rule_spec(rule)
    rls = rule.readout == "rls"
    if rule.rule != "anp":
        raise ConfigError(f"the device learns with ANP only, not {rule.rule!r}")
    if rule.readout not in READOUTS:
        raise ConfigError(
            f"readout {rule.readout!r} is not one a fixed-point device runs: it offers "
            f"{', '.join(READOUTS)}"
        )
    if rls and not 0 < rule.readout_p0 <= P0_MAX:
        raise ConfigError(
            f"readout_p0 {rule.readout_p0:g} is beyond what a fixed-point device holds: RLS's "
            f"P lives in Q7.24 there, so readout_p0 must be in (0, {P0_MAX:g}] "
            f"({DEVICE_P0:g} is measured stable, docs/design.md §8)"
        )
    if rls and rule.forgetting <= 2 / 3:
        raise ConfigError(
            f"forgetting {rule.forgetting:g} is below what a fixed-point device runs: it must "
            "be in (2/3, 1] (docs/protocol.md §6.8)"
        )
    return Hyper(
        lr_q=max(1, to_q(rule.lr, 32)),
        sigma_q=to_q(rule.sigma, 16),
        eps_q=to_q(rule.eps, 32),
        gain_q=to_q(rule.gain, 16),
        resync_every=rule.resync_every,
        output_cap=rule.output_cap,
        two_noisy=rule.two_noisy_passes,
        decorrelation=rule.decorrelation,
        lrh_q=max(1, to_q(rule.lr_hidden, 32)),
        readout=READOUTS.index(rule.readout),
        readout_inputs=rule.readout_inputs,
        mu_q=max(1, to_q(rule.readout_step, 16)),
        leak_q=max(1, to_q(rule.leak, 16)),
        bound_q=0 if rule.radius_bound is None else max(1, to_q(rule.radius_bound, 16)),
        guard_every=rule.guard_every,
        im1_q=min(to_q(1.0 / rule.forgetting - 1.0, 32), IM1_MAX),
        p0_q=max(1, to_q(rule.readout_p0, 24)) if rls else int(DEVICE_P0) << 24,
    )
