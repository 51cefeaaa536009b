"""Result rows grouped and reduced: what tables, claims and figures are computed from.

A run's *final* value of a metric is its mean over the last epochs (:data:`LAST_EPOCHS`,
fewer if the run had fewer), as in the paper's tables. A diverged run has no final value;
it is counted, never averaged in.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LAST_EPOCHS = 3


def final(row: dict[str, Any], metric: str = "test_mse") -> float | None:
    """Mean of ``metric`` over the run's last epochs; None if it diverged or never trained."""
    if row.get("diverged"):
        return None
    values = [e[metric] for e in row["curve"][1:] if e.get(metric) is not None]
    if not values:
        return None
    tail = values[-LAST_EPOCHS:]
    value = sum(tail) / len(tail)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Group:
    """The seeds of one configuration (experiment, variant, rule, N)."""

    experiment: str
    variant: str
    rule: str
    hidden: int
    rows: tuple[dict[str, Any], ...]

    @property
    def n_runs(self) -> int:
        return len(self.rows)

    @property
    def n_diverged(self) -> int:
        return sum(bool(r.get("diverged")) for r in self.rows)

    def finals(self, metric: str = "test_mse") -> list[float]:
        return [v for r in self.rows if (v := final(r, metric)) is not None]

    def mean(self, metric: str = "test_mse") -> float | None:
        vals = self.finals(metric)
        return statistics.fmean(vals) if vals else None

    def spread(self, metric: str = "test_mse") -> tuple[float, float] | None:
        vals = self.finals(metric)
        return (min(vals), max(vals)) if vals else None

    def curves(self, metric: str = "test_mse") -> list[list[float]]:
        return [[e[metric] for e in r["curve"]] for r in self.rows if not r.get("diverged")]


def group(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, int], Group]:
    """Rows by (experiment, variant, rule, N), in a stable order."""
    acc: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        s = r["spec"]
        acc.setdefault((s["experiment"], s["variant"], s["rule"], s["hidden"]), []).append(r)
    return {
        k: Group(*k, tuple(sorted(v, key=lambda r: r["spec"]["seed"])))
        for k, v in sorted(acc.items())
    }


def fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def fmt_mean_range(g: Group, metric: str = "test_mse") -> str:
    m, sp = g.mean(metric), g.spread(metric)
    if m is None or sp is None:
        return "diverged" if g.n_diverged else "—"
    return f"{m:.3g} ({sp[0]:.3g}–{sp[1]:.3g})"
