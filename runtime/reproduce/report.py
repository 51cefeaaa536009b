"""``report.md``: a table per experiment, a verdict per claim, the machine and the time.

Everything in it is computed from the results files; nothing is typed in by hand.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import Any

from .claims import CLOSE, MUCH_WORSE, Claim
from .experiments import ALL_EXPERIMENTS, RULES, rule_config
from .summary import LAST_EPOCHS, Group, fmt_mean_range

TITLES = {
    "mackey-glass": "Mackey-Glass",
    "copy": "Copy memory",
    "weather": "Weather (WTH, DryBulbFarenheit ahead)",
    "scaling": "Scaling with N (weather, 1 h ahead)",
    "decorrelation": "Decorrelation rate (Mackey-Glass, ahead)",
    "gradient-rules": "ANP against the online gradient rules (same N, same passes)",
}
VARIANT_NOTES = {
    "ahead": "input s[t], target s[t+15] (the paper's text)",
    "recall": "input s[t+15], target s[t] (the reference code's pairing)",
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    import numba
    import numpy

    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"NumPy {numpy.__version__}, Numba {numba.__version__}"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def _hyper_table() -> list[str]:
    rows = []
    for label in RULES:
        c = rule_config(label)
        extra = []
        if c.rule in ("rtrl", "eprop", "uoro"):
            extra.append(f"{c.feedback} feedback, lr_hidden {c.hidden_lr:g}")
        elif c.rule == "bp":
            extra.append(f"K={c.bptt_window} {c.bptt_mode}, {c.optimizer}")
            if c.clip is not None:
                extra.append(f"clip {c.clip:g}")
        else:
            extra.append(f"sigma {c.sigma:g}")
            extra.append(f"resync every {c.resync_every}" if c.resync_every else "no resync")
            if c.rule == "anp":
                extra.append("output step capped" if c.output_cap else "no cap")
        if c.decorrelation:
            extra.append(f"decorrelation eps {c.eps:g}")
        if c.readout not in (None, "anp") or c.readout_inputs or c.leak != 1.0:
            # The network, where it is not the paper's (docs/design.md §4).
            feats = "[h, u, 1]" if c.readout_inputs else "h"
            extra.append(f"readout {c.readout or 'by the rule'} over {feats}, leak {c.leak:g}")
        rows.append((label, c.rule, f"{c.lr:g}", ", ".join(extra)))
    return _table(("label", "rule", "lr", "settings"), rows)


def _experiment_tables(groups: dict[tuple, Group]) -> list[str]:
    lines: list[str] = []
    present = {exp for exp, *_ in groups}
    for exp in (e for e in ALL_EXPERIMENTS if e in present):
        lines += ["", f"## {TITLES.get(exp, exp)}", ""]
        sub = {k: g for k, g in groups.items() if k[0] == exp}
        variants = []
        for _, v, *_ in sub:
            if v not in variants:
                variants.append(v)
        for variant in variants:
            if exp in ("mackey-glass", "weather", "copy", "gradient-rules") and variant:
                note = VARIANT_NOTES.get(variant, "")
                lines += [f"### {variant}" + (f": {note}" if note else ""), ""]
            gs = [g for k, g in sub.items() if k[1] == variant]
            header = ["rule", "N", "seeds", "diverged", "final train MSE", "final test MSE"]
            if exp == "copy":
                header += ["test bit errors", "test recall accuracy"]
            if exp == "decorrelation":
                header = ["rate", *header, "decorrelation loss"]
            rows = []
            for g in gs:
                row: list[Any] = [
                    g.rule,
                    g.hidden,
                    g.n_runs,
                    g.n_diverged,
                    fmt_mean_range(g, "train_mse"),
                    fmt_mean_range(g),
                ]
                if exp == "copy":
                    row += [fmt_mean_range(g, "bit_errors"), fmt_mean_range(g, "recall_accuracy")]
                if exp == "decorrelation":
                    row = [variant, *row, fmt_mean_range(g, "decorrelation_loss")]
                rows.append(row)
            lines += [*_table(header, rows), ""]
    return lines


def _memory_table(memory_rows: list[dict[str, Any]]) -> list[str]:
    if not memory_rows:
        return []
    lengths = sorted({r["steps"] for r in memory_rows})
    by = {(r["method"], r["steps"]): r for r in memory_rows}
    rows = []
    for method in ("anp", "full-bptt"):
        cells = []
        for n in lengths:
            r = by.get((method, n))
            cells.append("—" if r is None else f"{r['peak_rss_mib']:.1f} (+{r['run_mib']:.1f})")
        rows.append((method, *cells))
    return [
        "",
        "## Memory against sequence length",
        "",
        "Peak RSS in MiB of a fresh process (in brackets: what the run added after imports "
        f"and compilation), N = {memory_rows[0]['hidden']}.",
        "",
        *_table(("method", *(f"{n:,} steps" for n in lengths)), rows),
        "",
    ]


def write_report(
    path: str | os.PathLike[str],
    *,
    scale: str,
    groups: dict[tuple, Group],
    claims: list[Claim],
    memory_rows: list[dict[str, Any]],
    invocations: Sequence[dict[str, Any]],
    compute_s: float,
    notes: Sequence[str] = (),
    figures: Sequence[str] = (),
) -> None:
    seeds = max((g.n_runs for g in groups.values()), default=0)
    lines = [
        "# twinpass reproduce: report",
        "",
        "Fernández, Keemink & van Gerven, *Gradient-free training of recurrent neural "
        "networks using random perturbations* (2024): its claims, tested by `twinpass "
        f"reproduce --scale {scale}`.",
        "",
        f"- scale: **{scale}**, up to {seeds} seeds per configuration, "
        f"{sum(g.n_runs for g in groups.values())} training runs",
        f"- machine: {machine()}",
        f"- compute summed over all runs in these results: {compute_s / 60:.1f} min; the "
        "invocations that produced them (wall time, trained runs and memory probes):",
        *(
            f"  - {i['started']}: {i['wall_s'] / 60:.1f} min, {i['trained']} runs and "
            f"{i['probes']} probes with {i['jobs']} worker(s)"
            for i in invocations
            if i["trained"] or i["probes"]  # a rerun that only rewrote the report adds nothing
        ),
        f"- final values are the mean of the last {LAST_EPOCHS} epochs; tables give the mean "
        "over seeds with (min–max); a diverged run (non-finite loss or a weight beyond 1e4) "
        "is counted, not averaged",
        *(f"- {n}" for n in notes),
        "",
        "## Claims",
        "",
        f'"Close to BP": final test MSE at most {CLOSE}x the better of the two BP '
        f'baselines. "Much worse": at least {MUCH_WORSE}x ANP\'s, or diverged.',
        "",
        *_table(
            ("#", "claim", "verdict"), [(c.number, c.text, f"**{c.verdict}**") for c in claims]
        ),
        "",
    ]
    for c in claims:
        lines.append(f"**Claim {c.number}** ({c.verdict}):")
        lines += [f"- {d}" for d in c.details] or ["- its experiment did not run"]
        lines.append("")
    lines += ["## Hyperparameters", "", *_hyper_table(), ""]
    lines += _experiment_tables(groups)
    lines += _memory_table(memory_rows)
    if figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in figures] + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
