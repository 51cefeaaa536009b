"""The resolved learning rule: what every device backend's ``load`` receives.

:class:`RuleSpec` is plain, typed, frozen data: every field a backend needs to run the rule,
with every default already resolved for one network (the gain from its size, the hidden
layer's step, the readout, the optimiser). ``twinpass.runtime.RuleConfig.resolve`` is where
that happens, once; a backend reads the fields as they are and never falls back to a
default of its own (docs/design.md §3-§5 say what each field means; the names are
RuleConfig's). The initialisation-only fields of RuleConfig (the spectral radius and input
scale of the initial draw) are not part of it: a device receives the drawn weights.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class RuleSpec:
    """A learning rule resolved for a network of ``shape`` = (n_in, n_hidden, n_out).

    Built by ``RuleConfig.resolve(n_in, n_hidden, n_out)``, which validates the values;
    this class checks only that each field has its resolved type (no ``None`` left where a
    default had to be worked out), so that a backend can read every field as it is.
    """

    shape: tuple[int, int, int]
    rule: str
    decorrelation: bool
    lr: float
    lr_hidden: float  # resolved: RuleConfig's lr_hidden, or lr when that is None
    sigma: float
    eps: float
    gain: float  # resolved: RuleConfig's gain, or sqrt(n_in + N + n_out)
    two_noisy_passes: bool
    resync_every: int
    output_cap: bool
    readout: str  # resolved: rls, nlms or anp
    readout_inputs: bool
    forgetting: float
    readout_p0: float
    readout_step: float
    leak: float
    radius_bound: float | None  # None: no stability guard
    guard_every: int
    feedback: str
    bptt_window: int
    bptt_mode: str
    optimizer: str  # resolved: sgd or adam
    clip: float | None  # None: no clipping

    def __post_init__(self) -> None:
        shape = self.shape
        if (
            not isinstance(shape, tuple)
            or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
        ):
            raise ConfigError(
                f"shape must be (n_in, n_hidden, n_out) of whole numbers >= 1, got {shape!r}"
            )
        for f in fields(self):
            if f.name == "shape":
                continue
            value = getattr(self, f.name)
            kind = _KINDS[str(f.type)]
            if value is None and str(f.type).endswith("| None"):
                continue
            if kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                ok = ok and math.isfinite(value)
            elif kind is int:
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, kind)
            if not ok:
                raise ConfigError(
                    f"rule field {f.name} must be a resolved {kind.__name__}, got {value!r}: "
                    "build the rule with RuleConfig.resolve(n_in, n_hidden, n_out)"
                )

    @property
    def n_total(self) -> int:
        """n_in + N + n_out: the units the default gain counts."""
        return sum(self.shape)

    @property
    def name(self) -> str:
        """The rule's name as in the paper: ANP, DANP, ..."""
        return ("D" if self.decorrelation else "") + self.rule.upper()

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the shape as a list), for JSON records."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


#: A field's annotation -> the type its value must have (a float field takes an int: lr 1
#: is a number). ``| None`` marks a safeguard that None switches off.
_KINDS: dict[str, type] = {
    "float": float,
    "float | None": float,
    "int": int,
    "bool": bool,
    "str": str,
}


def check_rule_spec(rule: object) -> RuleSpec:
    """``rule`` itself if it is a :class:`RuleSpec`; a ConfigError saying how to make one
    otherwise (a backend takes no mapping: it would have to guess the missing defaults)."""
    if not isinstance(rule, RuleSpec):
        raise ConfigError(
            f"a device loads a RuleSpec (RuleConfig(...).resolve(n_in, n_hidden, n_out)), "
            f"not {type(rule).__name__}"
        )
    return rule
