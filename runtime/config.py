"""The learning-rule configuration: which rule, its hyperparameters, and its safeguards.

Defaults are twinpass's stable settings (docs/design.md §3, measured in benchmarks/RESULTS.md);
:meth:`RuleConfig.reference` gives the published method unchanged, for reproduction.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from twinpass.core.errors import ConfigError
from twinpass.core.rule_spec import RuleSpec

RULES = ("anp", "np", "wp", "bp", "rtrl", "eprop", "uoro")
#: The online gradient rules (docs/design.md §3.7-3.9): a clean replica, no perturbation.
GRADIENT_RULES = ("rtrl", "eprop", "uoro")
FEEDBACKS = ("symmetric", "random")
#: Fields added after checkpoints and reproduce keys existed: :meth:`RuleConfig.to_dict`
#: writes them only when they differ from their default, so that the dict (and the
#: fingerprint) of a configuration that does not use them is what it was.
_LATE_FIELDS = {"feedback": "symmetric"}
OPTIMIZERS = ("sgd", "adam")
READOUTS = ("rls", "nlms", "anp")
BPTT_MODES = ("chunked", "sliding")
#: Fields that shape the initial draw only (Params.init): a device receives the drawn
#: weights, so :meth:`RuleConfig.resolve` leaves them out of the RuleSpec.
INIT_FIELDS = ("spectral_radius", "input_scale")


#: The paper's network and readout: Xavier draws, plain tanh units, the readout over the
#: hidden state learned by the perturbation rule itself, no guard. The defaults differ
#: from it where benchmarks/default_sweep.py measured a better choice (docs/design.md §2);
#: ``RuleConfig(**PAPER_NETWORK)`` is the paper's network with twinpass's safeguards.
PAPER_NETWORK: dict[str, Any] = {
    "readout": "anp",
    "readout_inputs": False,
    "leak": 1.0,
    "spectral_radius": None,
    "input_scale": None,
    "radius_bound": None,
    "lr_hidden": None,
}


@dataclass(frozen=True)
class RuleConfig:
    """How the network learns. Every field is plain data (it goes into checkpoints).

    rule: ``anp`` (activity-based node perturbation), ``np`` (node perturbation), ``wp``
    (weight perturbation), ``bp`` (truncated backprop through time, the baseline), or an
    online gradient rule: ``rtrl`` (exact, O(N³) memory), ``eprop`` (eligibility traces),
    ``uoro`` (unbiased rank-one estimate); these run one clean replica and learn their
    readout like ANP (RLS by default).
    feedback: how a gradient rule sends the output error back to the hidden units:
    ``symmetric`` (B's hidden columns, the true gradient) or ``random`` (a fixed random
    matrix, e-prop's random feedback).
    decorrelation: add the decorrelation rule (DANP, DNP, DWP, DBP) with rate ``eps``.
    lr, sigma: learning rate and perturbation standard deviation.
    bptt_window: K of truncated BPTT (1 = the reference's one-step BP); ``bp`` only.
    optimizer: ``sgd`` or ``adam``; Adam is offered for ``bp`` only, as in the reference.
    None (default) means ``adam`` for ``bp`` (its baseline optimiser) and ``sgd`` otherwise.
    two_noisy_passes: perturb both replicas (the noise of an analog substrate); the update
    then uses only measured activities. ANP and NP only.
    resync_every: copy replica 1's hidden state into replica 2 every k steps (0: never).
    Stops the perturbed replica from drifting away through R (docs/design.md §3.1).
    output_cap: cap ANP's output step at the normalised-LMS bound 0.5 / ‖xh‖².
    gain: factor of the ANP step; None means sqrt(n_in + N + n_out), the reference's.

    The readout (docs/design.md §4):
    readout: how the output weights learn. ``rls``: recursive least squares, the exact
    online solution of the readout's least-squares problem; ``nlms``: normalised LMS (the
    rule a fixed-point device can run); ``anp``: the learning rule's own estimate (the
    paper's: ANP's perturbation estimate; WP's and BP's own). None (default): ``rls``
    for ANP and NP, ``anp`` for WP and BP.
    readout_inputs: the readout sees [hidden state, input, 1] (a direct input path and a
    bias, as in reservoir computing) instead of the hidden state alone (the paper's).
    forgetting: RLS's forgetting factor λ in (0, 1]; 1 weighs all the past equally.
    readout_p0: RLS's initial inverse covariance P₀ = readout_p0 · I (a large value is a
    weak ridge prior). readout_step: NLMS's normalised step μ in (0, 2).

    The network (docs/design.md §2):
    leak: α of leaky-integrator units, xh_t = (1 - α) xh_{t-1} + α D tanh(a_t), in (0, 1]
    (1: the paper's units). spectral_radius, input_scale: R is drawn with this spectral
    radius and A uniform in [-input_scale, input_scale]; None keeps the paper's Xavier draw.

    Learning the hidden layer (docs/design.md §5):
    lr_hidden: the step of A and R's update; None means ``lr``.
    radius_bound: every ``guard_every`` steps the spectral radius of R is estimated and,
    above the bound, R is scaled back onto it (counted); None disables the guard.

    The BPTT baseline (``bp``): bptt_mode ``chunked`` (one update per non-overlapping
    window of K steps) or ``sliding`` (an update every step over the last K);
    clip: global gradient-norm clipping threshold (None: no clipping).
    """

    rule: str = "anp"
    decorrelation: bool = False
    lr: float = 1e-3
    sigma: float = 1e-3
    eps: float = 1e-4
    bptt_window: int = 20
    optimizer: str | None = None
    two_noisy_passes: bool = False
    resync_every: int = 10
    output_cap: bool = True
    gain: float | None = None
    readout: str | None = None
    readout_inputs: bool = True
    forgetting: float = 0.9999
    readout_p0: float = 1e4
    readout_step: float = 0.5
    leak: float = 0.3
    spectral_radius: float | None = 0.95
    input_scale: float | None = 1.0
    lr_hidden: float | None = 1e-3
    radius_bound: float | None = 1.1
    guard_every: int = 1000
    bptt_mode: str = "chunked"
    clip: float | None = 1.0
    feedback: str = "symmetric"

    def __post_init__(self) -> None:
        for name in ("lr", "sigma", "eps", "gain"):
            value = getattr(self, name)
            if name == "gain" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        for name in ("bptt_window", "resync_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be a whole number, got {value!r}")
        for name in ("decorrelation", "two_noisy_passes", "output_cap"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.rule not in RULES:
            raise ConfigError(f"unknown rule {self.rule!r}: choose one of {', '.join(RULES)}")
        if self.optimizer is None:
            object.__setattr__(self, "optimizer", "adam" if self.rule == "bp" else "sgd")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: choose sgd or adam")
        if self.optimizer == "adam" and self.rule != "bp":
            raise ConfigError(
                "Adam is offered for the bp baseline only; perturbation rules use SGD"
            )
        for name in ("lr", "sigma", "eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        if self.lr == 0:
            raise ConfigError("lr must be > 0")
        if self.feedback not in FEEDBACKS:
            raise ConfigError(
                f"unknown feedback {self.feedback!r}: choose one of {', '.join(FEEDBACKS)}"
            )
        if self.feedback != "symmetric" and self.rule not in GRADIENT_RULES:
            raise ConfigError(
                f"feedback {self.feedback!r} is for the gradient rules "
                f"({', '.join(GRADIENT_RULES)}), not {self.rule}"
            )
        if self.rule in ("np", "wp") and self.sigma == 0:
            raise ConfigError(f"{self.rule.upper()} divides by sigma: sigma must be > 0")
        if self.rule == "anp" and self.sigma == 0 and not self.two_noisy_passes:
            raise ConfigError("ANP with sigma = 0 has no perturbation to learn from")
        if self.bptt_window < 1:
            raise ConfigError(f"bptt_window must be >= 1, got {self.bptt_window}")
        if self.resync_every < 0:
            raise ConfigError(f"resync_every must be >= 0 (0 = never), got {self.resync_every}")
        if self.two_noisy_passes and self.rule not in ("anp", "np"):
            raise ConfigError(
                f"{self.rule.upper()} cannot learn from two noisy passes: it needs a clean one"
            )
        if self.gain is not None and not (math.isfinite(self.gain) and self.gain > 0):
            raise ConfigError(f"gain must be a positive number or None, got {self.gain}")
        self._check_readout_and_network()

    def _check_readout_and_network(self) -> None:
        """The readout, unit and guard fields: each out-of-range value named with its range."""
        if self.readout is None:
            # The exact readout where the kernels offer it; WP and BP learn theirs by their
            # own estimate (a perturbation, a gradient).
            exact = self.rule not in ("wp", "bp")
            object.__setattr__(self, "readout", "rls" if exact else "anp")
        for name in ("forgetting", "readout_p0", "readout_step", "leak"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        for name in ("spectral_radius", "input_scale", "lr_hidden", "radius_bound", "clip"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise ConfigError(f"{name} must be a number or None, got {value!r}")
        if not isinstance(self.readout_inputs, bool):
            raise ConfigError(f"readout_inputs must be True or False, got {self.readout_inputs!r}")
        if isinstance(self.guard_every, bool) or not isinstance(self.guard_every, int):
            raise ConfigError(f"guard_every must be a whole number, got {self.guard_every!r}")
        if self.readout not in READOUTS:
            raise ConfigError(
                f"unknown readout {self.readout!r}: choose one of {', '.join(READOUTS)}"
            )
        if self.rule in ("wp", "bp") and self.readout != "anp":
            raise ConfigError(
                f"{self.rule.upper()} learns its readout by its own estimate: readout must be "
                f"'anp' (the rule's own), not {self.readout!r}"
            )
        if self.bptt_mode not in BPTT_MODES:
            raise ConfigError(
                f"unknown bptt_mode {self.bptt_mode!r}: choose one of {', '.join(BPTT_MODES)}"
            )
        ranges = (
            ("forgetting", self.forgetting, 0.0, 1.0, "(0, 1]"),
            ("leak", self.leak, 0.0, 1.0, "(0, 1]"),
            ("readout_step", self.readout_step, 0.0, 2.0, "(0, 2)"),
        )
        for name, value, lo, hi, text in ranges:
            inside = lo < value < hi if text.endswith(")") else lo < value <= hi
            if not (math.isfinite(value) and inside):
                raise ConfigError(f"{name} must be in {text}, got {value}")
        positive = (
            ("readout_p0", self.readout_p0),
            ("spectral_radius", self.spectral_radius),
            ("input_scale", self.input_scale),
            ("lr_hidden", self.lr_hidden),
            ("radius_bound", self.radius_bound),
            ("clip", self.clip),
        )
        for name, value in positive:
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a finite number > 0, got {value}")
        if self.guard_every < 1:
            raise ConfigError(f"guard_every must be >= 1 (steps), got {self.guard_every}")

    @classmethod
    def reference(cls, rule: str = "anp", **overrides: Any) -> RuleConfig:
        """The published method as in the reference code: no resync, no output cap.

        BP there is one-step backprop with Adam at lr 1e-3.
        """
        base: dict[str, Any] = {"rule": rule, "resync_every": 0, "output_cap": False}
        base.update(PAPER_NETWORK)
        if rule == "bp":
            base.update(optimizer="adam", bptt_window=1, bptt_mode="sliding", clip=None)
        base.update(overrides)
        return cls(**base)

    @property
    def name(self) -> str:
        """The rule's name as in the paper: ANP, DANP, BP, DBP, ..."""
        return ("D" if self.decorrelation else "") + self.rule.upper()

    @property
    def hidden_lr(self) -> float:
        """The step of A and R's update: ``lr_hidden``, or ``lr`` when that is None."""
        return self.lr if self.lr_hidden is None else float(self.lr_hidden)

    def resolved_gain(self, n_total: int) -> float:
        """The ANP step factor for a network with n_total = n_in + N + n_out units."""
        return math.sqrt(n_total) if self.gain is None else float(self.gain)

    def resolve(self, n_in: int, n_hidden: int, n_out: int) -> RuleSpec:
        """The rule resolved for a network of this size: what a device's ``load`` takes.

        Every default is worked out here, once (the gain, the hidden layer's step), so that
        no backend falls back to a default of its own; :data:`INIT_FIELDS` stay behind.
        """
        shape = (int(n_in), int(n_hidden), int(n_out))
        values = {f.name: getattr(self, f.name) for f in fields(RuleSpec) if f.name != "shape"}
        values.update(lr_hidden=self.hidden_lr, gain=self.resolved_gain(sum(shape)))
        return RuleSpec(shape=shape, **values)

    def replace(self, **changes: Any) -> RuleConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name, default in _LATE_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown rule configuration field(s): {', '.join(unknown)}")
        return cls(**data)
