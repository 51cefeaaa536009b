"""The report's figures, in the manner of the paper's Figures 4–8.

Learning curves on a log scale (mean over seeds, min–max band), final performance bars,
scaling with N (unstable runs marked), decorrelation loss over training, and memory
against sequence length. matplotlib is optional: without it no figure is drawn and the
report says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .experiments import RULES
from .summary import Group

COLORS = {rule: f"C{i}" for i, rule in enumerate(RULES)}


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, out: Path, name: str) -> list[str]:
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return [name]


def _task_panels(groups: dict[tuple, Group]) -> dict[tuple[str, str], list[Group]]:
    """The groups of the per-task experiments, by (experiment, variant), in order."""
    panels: dict[tuple[str, str], list[Group]] = {}
    for (exp, variant, _rule, _n), g in groups.items():
        if exp in ("mackey-glass", "copy", "weather"):
            panels.setdefault((exp, variant), []).append(g)
    return panels


def _band(ax: Any, curves: list[list[float]], label: str, color: str) -> None:
    n = min(len(c) for c in curves)
    arr = np.array([c[:n] for c in curves], dtype=float)
    x = np.arange(n)
    ax.plot(x, arr.mean(axis=0), label=label, color=color, lw=1.6)
    if len(curves) > 1:
        ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), color=color, alpha=0.18, lw=0)


def learning_curves(groups: dict[tuple, Group], out: Path) -> list[str]:
    plt = _plt()
    panels = _task_panels(groups)
    if not panels:
        return []
    ncols = min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, ((exp, variant), gs) in zip(axes.flat, panels.items(), strict=False):
        for g in gs:
            curves = g.curves()
            if curves:
                _band(ax, curves, g.rule, COLORS.get(g.rule, "k"))
            if g.n_diverged:
                ax.plot([], [], " ", label=f"{g.rule}: {g.n_diverged} diverged")
        ax.set_yscale("log")
        ax.set_title(f"{exp} {variant}".strip())
        ax.set_xlabel("epoch")
        ax.set_ylabel("test MSE")
        ax.grid(alpha=0.3, which="both")
    axes.flat[0].legend(fontsize=7)
    return _save(plt, fig, out, "learning_curves.png")


def final_bars(groups: dict[tuple, Group], out: Path) -> list[str]:
    plt = _plt()
    panels = {f"{e} {v}".strip(): gs for (e, v), gs in _task_panels(groups).items()}
    if not panels:
        return []
    rules = [r for r in RULES if any(g.rule == r for gs in panels.values() for g in gs)]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(panels)), 4), layout="constrained")
    width = 0.8 / len(rules)
    for i, rule in enumerate(rules):
        xs, ys, lo, hi = [], [], [], []
        for j, gs in enumerate(panels.values()):
            g = next((g for g in gs if g.rule == rule), None)
            if g is None or g.mean() is None:
                continue
            m, (a, b) = g.mean(), g.spread()
            xs.append(j + (i - (len(rules) - 1) / 2) * width)
            ys.append(m)
            lo.append(m - a)
            hi.append(b - m)
        ax.bar(xs, ys, width, yerr=[lo, hi], color=COLORS[rule], label=rule, capsize=2)
    ax.set_xticks(range(len(panels)), list(panels), rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("final test MSE (mean, min–max)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(plt, fig, out, "final_performance.png")


def scaling(groups: dict[tuple, Group], out: Path) -> list[str]:
    plt = _plt()
    per: dict[str, list[Group]] = {}
    for (exp, _v, rule, _n), g in groups.items():
        if exp == "scaling":
            per.setdefault(rule, []).append(g)
    if not per:
        return []
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    top = max((v for gs in per.values() for g in gs for v in g.finals()), default=1.0)
    for rule, gs in per.items():
        gs = sorted(gs, key=lambda g: g.hidden)
        pts = [(g.hidden, g.mean()) for g in gs if g.mean() is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=COLORS[rule], label=rule)
        unstable = [g.hidden for g in gs if g.n_diverged]
        if unstable:
            ax.plot(unstable, [top * 2] * len(unstable), "x", color=COLORS[rule], ms=9, mew=2)
    ax.plot([], [], "kx", label="a run diverged")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hidden units N")
    ax.set_ylabel("final test MSE")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    return _save(plt, fig, out, "scaling.png")


def decorrelation(groups: dict[tuple, Group], out: Path) -> list[str]:
    plt = _plt()
    gs = [g for (exp, *_), g in groups.items() if exp == "decorrelation"]
    if not gs:
        return []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for i, g in enumerate(gs):
        curves = g.curves("decorrelation_loss")
        if curves:
            _band(ax1, curves, g.variant, f"C{i}")
    ax1.set_yscale("log")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("decorrelation loss (mean sq. off-diag. cov.)")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3, which="both")
    pts = [(g.mean("decorrelation_loss"), g.mean(), g.variant) for g in gs]
    pts = [p for p in pts if p[0] is not None and p[1] is not None]
    for i, (x, y, label) in enumerate(pts):
        ax2.plot(x, y, "o", color=f"C{i}", label=label)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("final decorrelation loss")
    ax2.set_ylabel("final test MSE")
    ax2.grid(alpha=0.3, which="both")
    return _save(plt, fig, out, "decorrelation.png")


def memory(memory_rows: list[dict[str, Any]], out: Path) -> list[str]:
    if not memory_rows:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for method, color in (("anp", COLORS["ANP"]), ("full-bptt", COLORS["BPTT-K20"])):
        rows = sorted((r for r in memory_rows if r["method"] == method), key=lambda r: r["steps"])
        if rows:
            ax.plot(
                [r["steps"] for r in rows],
                [r["peak_rss_mib"] for r in rows],
                "o-",
                color=color,
                label=method.upper() if method == "anp" else "full BPTT",
            )
    ax.set_xscale("log")
    ax.set_xlabel("sequence length (steps)")
    ax.set_ylabel("peak RSS (MiB)")
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    return _save(plt, fig, out, "memory.png")


def draw_all(
    groups: dict[tuple, Group], memory_rows: list[dict[str, Any]], out: str | os.PathLike[str]
) -> list[str]:
    """Draw every figure the results allow; their file names, relative to ``out``."""
    out = Path(out)
    names: list[str] = []
    for draw in (learning_curves, final_bars, scaling, decorrelation):
        names += draw(groups, out)
    names += memory(memory_rows, out)
    return names
