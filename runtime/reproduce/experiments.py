"""Every configuration the paper's experiments train, per scale.

A configuration is a :class:`RunSpec`: one task (with its keywords), one rule (a label
from :data:`RULES`), a hidden size, a seed and a number of epochs. Its :attr:`RunSpec.key`
names it in the results file, so a finished configuration is recognised and skipped when
the command is run again.

Hyperparameters are the reference code's for every perturbation rule (lr 1e-3, sigma 1e-3,
decorrelation rate 1e-4) on the paper's network (``PAPER_NETWORK``: the readout learned by
the rule itself, no leak), with twinpass's safeguards (resync every 10 steps, capped output
step; docs/design.md §3.1). ``ANP-ref`` is the paper's ANP exactly as the reference code runs
it (``--reference``: no safeguards), ``twinpass`` the default learner (docs/design.md §4: an
exact readout over [hidden, input, 1], leaky units). Two BP baselines are run side by side:
the reference's (one-step BP, Adam, lr 1e-3) and twinpass's BPTT baseline at its defaults
(chunked truncation K = 20, Adam, gradient-norm clipping). No per-rule search: one setting
per rule, the same on every task, so that the comparison is the rules' and not the tuning's.

A configuration's key carries a fingerprint of its resolved :class:`RuleConfig`, so that
results of an older meaning of a label (a changed default) are never taken for finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from twinpass.core.errors import ConfigError
from twinpass.runtime.config import PAPER_NETWORK, RuleConfig

#: Rule label -> (RuleConfig factory arguments, whether it is a "reference" configuration).
RULES: dict[str, dict[str, Any]] = {
    "ANP": dict(PAPER_NETWORK),
    "DANP": {**PAPER_NETWORK, "decorrelation": True},
    "NP": {**PAPER_NETWORK, "rule": "np"},
    "WP": {**PAPER_NETWORK, "rule": "wp"},
    "ANP-ref": {"reference": "anp"},
    "twinpass": {},
    "BPTT-K20": {"rule": "bp", "bptt_window": 20},
    "BP-ref": {"reference": "bp"},
    # The online gradient rules (docs/design.md §3.7-3.9), at their defaults: the default
    # learner's network and exact readout, the hidden layer by the rule's gradient.
    "e-prop": {"rule": "eprop"},
    "e-prop-random": {"rule": "eprop", "feedback": "random"},
    "UORO": {"rule": "uoro"},
    "RTRL": {"rule": "rtrl"},
}
#: The paper's experiments run these; the gradient-rules experiment runs its own.
PAPER_RULES = ("ANP", "DANP", "NP", "WP", "ANP-ref", "twinpass", "BPTT-K20", "BP-ref")
#: ANP (the default learner) against the online gradient rules and the BPTT baseline, at one
#: N and one number of passes over the data.
GRADIENT_RULES = ("twinpass", "e-prop", "e-prop-random", "UORO", "RTRL", "BPTT-K20")
PERTURBATION_RULES = ("ANP", "DANP", "NP", "WP", "ANP-ref", "twinpass")
ONLINE_GRADIENT_RULES = ("e-prop", "e-prop-random", "UORO", "RTRL")
BP_RULES = ("BPTT-K20", "BP-ref")
#: The rules of the scaling experiment (the paper's figure, and twinpass's learner beside it).
SCALING_RULES = ("ANP", "DANP", "NP", "WP", "twinpass", "BPTT-K20")


def rule_config(label: str, **overrides: Any) -> RuleConfig:
    """The :class:`RuleConfig` of a rule label, with optional field overrides."""
    if label not in RULES:
        raise ConfigError(f"unknown rule {label!r}: one of {', '.join(RULES)}")
    spec = {**RULES[label], **overrides}
    ref = spec.pop("reference", None)
    return RuleConfig.reference(ref, **spec) if ref else RuleConfig(**spec)


@dataclass(frozen=True)
class RunSpec:
    """One training run: what to train, how long, and what to record."""

    experiment: str
    task: str
    task_kwargs: dict[str, Any]
    rule: str
    hidden: int
    seed: int
    epochs: int
    overrides: dict[str, Any] = field(default_factory=dict)
    variant: str = ""  # a label within the experiment (a pairing, a horizon, an eps)
    record_correlation: bool = False

    @property
    def key(self) -> str:
        """A stable name of the configuration: the results file's primary key."""
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.overrides.items()))
        task = ",".join(f"{k}={v}" for k, v in sorted(self.task_kwargs.items()) if k != "path")
        return (
            f"{self.experiment}|{self.task}({task})|{self.rule}({extra})#{self.fingerprint}"
            f"|N={self.hidden}|seed={self.seed}|epochs={self.epochs}"
        )

    @property
    def fingerprint(self) -> str:
        """Eight hex digits of the resolved rule: a changed default changes the key."""
        blob = json.dumps(self.config().to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def config(self) -> RuleConfig:
        return rule_config(self.rule, **self.overrides)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["task_kwargs"] = {k: v for k, v in self.task_kwargs.items() if k != "path"}
        return d


@dataclass(frozen=True)
class Scale:
    """How big each experiment is: seeds, epochs, hidden sizes."""

    seeds: int
    hidden: int
    epochs: dict[str, int]
    scaling_hidden: tuple[int, ...]
    scaling_epochs: int
    decor_eps: tuple[float, ...]
    memory_lengths: tuple[int, ...]
    copy_kwargs: dict[str, Any]
    mackey_glass_kwargs: dict[str, Any] = field(default_factory=dict)
    # The gradient-rules experiment: its N (RTRL holds N³ numbers, O(N⁴) work per step)
    # and epochs per task.
    gradient_hidden: int = 32
    gradient_epochs: dict[str, int] = field(default_factory=dict)


SCALES: dict[str, Scale] = {
    # Minutes on two cores; shows the orderings. Measured: see benchmarks/reproduce/.
    "quick": Scale(
        seeds=3,
        hidden=100,
        epochs={"mackey-glass": 20, "copy": 20, "weather": 3, "decorrelation": 10},
        scaling_hidden=(100, 300, 1000),
        scaling_epochs=2,
        decor_eps=(0.0, 1e-5, 1e-4, 1e-3, 1e-2),
        memory_lengths=(1_000, 10_000, 100_000),
        copy_kwargs={"length": 10, "delay": 5, "n_symbols": 5, "n_train": 64, "n_test": 16},
        gradient_hidden=32,
        gradient_epochs={"mackey-glass": 10, "copy": 10, "weather": 1},
    ),
    # The paper's scale: more seeds, longer training, N up to 3000 (hours to days).
    "full": Scale(
        seeds=5,
        hidden=100,
        epochs={"mackey-glass": 50, "copy": 50, "weather": 20, "decorrelation": 30},
        scaling_hidden=(100, 250, 500, 1000, 2000, 3000),
        scaling_epochs=10,
        decor_eps=(0.0, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
        memory_lengths=(1_000, 10_000, 100_000, 1_000_000),
        copy_kwargs={"length": 10, "delay": 10, "n_symbols": 8, "n_train": 64, "n_test": 16},
        gradient_hidden=64,
        gradient_epochs={"mackey-glass": 20, "copy": 20, "weather": 3},
    ),
    # Seconds: for tests of the command itself. Numbers from it mean nothing.
    "tiny": Scale(
        seeds=2,
        hidden=12,
        epochs={"mackey-glass": 2, "copy": 2, "weather": 1, "decorrelation": 2},
        scaling_hidden=(8, 16),
        scaling_epochs=1,
        decor_eps=(0.0, 1e-3),
        memory_lengths=(200, 2_000),
        copy_kwargs={"length": 4, "delay": 2, "n_symbols": 3, "n_train": 4, "n_test": 2},
        mackey_glass_kwargs={"length": 400},
        gradient_hidden=8,
        gradient_epochs={"mackey-glass": 1, "copy": 1, "weather": 1},
    ),
}


def _mackey_glass(scale: Scale, data: str | None) -> list[RunSpec]:
    return [
        RunSpec(
            "mackey-glass",
            "mackey-glass",
            {"pairing": pairing, **scale.mackey_glass_kwargs},
            rule,
            scale.hidden,
            seed,
            scale.epochs["mackey-glass"],
            variant=pairing,
        )
        for pairing in ("ahead", "recall")
        for rule in PAPER_RULES
        for seed in range(scale.seeds)
    ]


def _copy(scale: Scale, data: str | None) -> list[RunSpec]:
    return [
        RunSpec(
            "copy", "copy", dict(scale.copy_kwargs), rule, scale.hidden, seed, scale.epochs["copy"]
        )
        for rule in PAPER_RULES
        for seed in range(scale.seeds)
    ]


def _weather(scale: Scale, data: str | None) -> list[RunSpec]:
    if data is None:
        return []
    return [
        RunSpec(
            "weather",
            "weather",
            {"path": data, "horizon": h},
            rule,
            scale.hidden,
            seed,
            scale.epochs["weather"],
            variant=f"{h}h",
        )
        for h in (1, 24, 48)
        for rule in PAPER_RULES
        for seed in range(scale.seeds)
    ]


def _scaling(scale: Scale, data: str | None) -> list[RunSpec]:
    if data is None:
        return []
    rules = SCALING_RULES
    return [
        RunSpec(
            "scaling",
            "weather",
            {"path": data, "horizon": 1},
            rule,
            n,
            seed,
            scale.scaling_epochs,
            variant=f"N={n}",
        )
        for n in scale.scaling_hidden
        for rule in rules
        for seed in range(min(scale.seeds, 2) if n >= 1000 else scale.seeds)
    ]


def _decorrelation(scale: Scale, data: str | None) -> list[RunSpec]:
    # On Mackey-Glass (always available): ANP with the decorrelation rate swept.
    return [
        RunSpec(
            "decorrelation",
            "mackey-glass",
            dict(scale.mackey_glass_kwargs),
            "DANP" if eps > 0 else "ANP",
            scale.hidden,
            seed,
            scale.epochs["decorrelation"],
            overrides={"eps": eps} if eps > 0 else {},
            variant=f"eps={eps:g}",
            record_correlation=True,
        )
        for eps in scale.decor_eps
        for seed in range(scale.seeds)
    ]


def _gradient_rules(scale: Scale, data: str | None) -> list[RunSpec]:
    # Mackey-Glass 15 ahead, copy memory and weather 1 h (when the data is there).
    tasks: list[tuple[str, str, dict[str, Any]]] = [
        ("mackey-glass", "mackey-glass", {"pairing": "ahead", **scale.mackey_glass_kwargs}),
        ("copy", "copy", dict(scale.copy_kwargs)),
    ]
    if data is not None:
        tasks.append(("weather 1h", "weather", {"path": data, "horizon": 1}))
    return [
        RunSpec(
            "gradient-rules",
            task,
            kwargs,
            rule,
            scale.gradient_hidden,
            seed,
            scale.gradient_epochs[task],
            variant=variant,
        )
        for variant, task, kwargs in tasks
        for rule in GRADIENT_RULES
        for seed in range(scale.seeds)
    ]


#: Experiment name -> builder of its run specs (the memory experiment is separate: it
#: measures processes, not learning; see :mod:`.memory`).
EXPERIMENTS: dict[str, Callable[[Scale, str | None], list[RunSpec]]] = {
    "mackey-glass": _mackey_glass,
    "copy": _copy,
    "weather": _weather,
    "scaling": _scaling,
    "decorrelation": _decorrelation,
    "gradient-rules": _gradient_rules,
}
ALL_EXPERIMENTS = (*EXPERIMENTS, "memory")
NEEDS_DATA = ("weather", "scaling")


def plan(
    scale: str, *, only: tuple[str, ...] = (), data: str | None = None, seeds: int | None = None
) -> list[RunSpec]:
    """The run specs of a scale, optionally for some experiments only and fewer seeds."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}: one of {', '.join(SCALES)}")
    unknown = [e for e in only if e not in ALL_EXPERIMENTS]
    if unknown:
        raise ConfigError(
            f"unknown experiment(s) {', '.join(unknown)}: one of {', '.join(ALL_EXPERIMENTS)}"
        )
    sc = SCALES[scale]
    if seeds is not None:
        if seeds < 1:
            raise ConfigError(f"--seeds must be >= 1, got {seeds}")
        sc = replace(sc, seeds=seeds)
    specs: list[RunSpec] = []
    for name, build in EXPERIMENTS.items():
        if not only or name in only:
            specs.extend(build(sc, data))
    return specs
