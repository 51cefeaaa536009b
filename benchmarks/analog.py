"""Learning on the simulated analog substrate: Mackey-Glass test MSE and the cost of a step.

Configurations (N = 100, ``--seeds`` seeds each, ``--epochs`` epochs, the default
``ahead`` pairing), all on the paper's network (``PAPER_NETWORK``: the readout learned by
the rule, as when this sweep was recorded; the learner's digital readout on the substrate
is measured by ``device_quality.py``): host ANP with a clean pass and with two noisy
passes; analog ANP and DANP at noise scales 0, 0.5, 1, 2, 4 of the PCM preset; PCM with
drift off; stochastic against mixed-precision updates; NP and WP on analog. Each finished
run is appended to a JSON-lines file, so an interrupted sweep resumes; the summary table
and the figure are computed from that file. ``--speed`` adds µs per step of analog against
host at N = 100 and 500 (median of repeats, measured side by side in one process).

    python benchmarks/analog.py --out analog.jsonl --speed                 # the full sweep
    python benchmarks/analog.py --out a.jsonl --seeds 1 --epochs 2          # a taste
    python benchmarks/analog.py --out analog.jsonl --summary-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from sweep import paper_era, read_rows, run_pending  # the sibling module: scripts run from here

SCALES = (0.0, 0.5, 1.0, 2.0, 4.0)

# name -> (device spec, device options, rule options)
CONFIGS: dict[str, tuple[str, dict, dict]] = {
    "host ANP (clean pass)": ("host", {}, {}),
    "host ANP (two noisy passes)": ("host", {}, {"two_noisy_passes": True}),
    **{f"analog ANP pcm x{s:g}": ("analog:pcm", {"noise_scale": s}, {}) for s in SCALES},
    **{
        f"analog DANP pcm x{s:g}": ("analog:pcm", {"noise_scale": s}, {"decorrelation": True})
        for s in SCALES
    },
    "analog ANP pcm, drift off": ("analog:pcm", {"drift_scale": 0.0, "flicker_scale": 0.0}, {}),
    "analog ANP pcm, stochastic pulses": ("analog:pcm", {"update": "stochastic"}, {}),
    "analog ANP pcm, stochastic, drift off": (
        "analog:pcm",
        {"update": "stochastic", "drift_scale": 0.0, "flicker_scale": 0.0},
        {},
    ),
    "analog ANP rram": ("analog:rram", {}, {}),
    "analog ANP ideal": ("analog:ideal", {}, {}),
    "analog NP pcm": ("analog:pcm", {}, {"rule": "np"}),
    "analog WP pcm": ("analog:pcm", {}, {"rule": "wp"}),
    "analog NP pcm, stochastic pulses": ("analog:pcm", {"update": "stochastic"}, {"rule": "np"}),
}


def run_one(name: str, seed: int, epochs: int) -> dict:
    from twinpass.core.errors import DivergenceError
    from twinpass.devices.registry import make_device
    from twinpass.runtime import OnlineLearner, RuleConfig
    from twinpass.runtime.tasks import make_task
    from twinpass.runtime.training import train

    spec, dev_opts, rule_opts = CONFIGS[name]
    task = make_task("mackey-glass")
    device = make_device(spec, **dev_opts)
    learner = OnlineLearner(1, 1, 100, RuleConfig(**paper_era(rule_opts)), seed=seed, device=device)
    row = {"config": name, "seed": seed, "epochs": epochs}
    history: list[float] = []
    t0 = time.perf_counter()
    try:
        train(learner, task, epochs, on_epoch=lambda r: history.append(r.test_mse))
        row.update(diverged=False, final_test_mse=history[-1])
    except DivergenceError as exc:
        row.update(diverged=True, diverged_at_step=exc.step, final_test_mse=None)
    row.update(test_mse_by_epoch=history, wall_s=time.perf_counter() - t0)
    return row


def speed(repeats: int, steps: int) -> list[dict]:
    """µs per learning step (ANP, batch 1) of host and analog, side by side."""
    import numpy as np

    from twinpass.devices.registry import make_device
    from twinpass.runtime import Params, RuleConfig
    from twinpass.runtime.config import PAPER_NETWORK

    paper = RuleConfig(**PAPER_NETWORK)
    rows = []
    devices = [
        ("host", "host", {}),
        ("analog pcm mixed", "analog:pcm", {}),
        ("analog pcm stochastic", "analog:pcm", {"update": "stochastic"}),
    ]
    for n in (100, 500):
        U = np.sin(0.1 * np.arange(steps)).astype(np.float32)[:, None, None]
        Y = np.roll(U, -1, 0)
        made = []
        for label, spec, opts in devices:
            dev = make_device(spec, **opts)
            dev.load(Params.init(1, n, 1, seed=0).arrays(), paper.resolve(1, n, 1), seed=0)
            dev.step(U[: steps // 10], Y[: steps // 10])  # compile, and leave the start
            made.append((label, dev, []))
        for _ in range(repeats):  # interleaved, so that machine load hits all alike
            for _label, dev, times in made:
                t = time.perf_counter()
                dev.step(U, Y)
                times.append((time.perf_counter() - t) / steps * 1e6)
        for label, _dev, times in made:
            rows.append({"N": n, "device": label, "us_per_step": statistics.median(times)})
    return rows


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2e}"


def summarise(rows: list[dict]) -> tuple[str, dict[str, list[float]]]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if "config" in r:
            groups.setdefault(r["config"], []).append(r)
    lines = [
        "| configuration | epochs | seeds | diverged | mean final test MSE | range | "
        "best epoch's test MSE (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    finals: dict[str, list[float]] = {}
    for name in CONFIGS:
        rs = groups.get(name)
        if not rs:
            continue
        fin = [r["final_test_mse"] for r in rs if not r["diverged"]]
        best = [min(r["test_mse_by_epoch"][1:]) for r in rs if len(r["test_mse_by_epoch"]) > 1]
        finals[name] = fin
        rng = f"{min(fin):.2e} – {max(fin):.2e}" if fin else "-"
        lines.append(
            f"| {name} | {rs[0]['epochs']} | {len(rs)} | {sum(r['diverged'] for r in rs)} | "
            f"{fmt(statistics.mean(fin) if fin else None)} | {rng} | "
            f"{fmt(statistics.mean(best) if best else None)} |"
        )
    return "\n".join(lines), finals


def speed_table(rows: list[dict]) -> str:
    sp = [r for r in rows if "us_per_step" in r]
    if not sp:
        return ""
    host = {r["N"]: r["us_per_step"] for r in sp if r["device"] == "host"}
    lines = ["| device | N | µs per step | / host |", "|---|---|---|---|"]
    for r in sp:
        lines.append(
            f"| {r['device']} | {r['N']} | {r['us_per_step']:.1f} | "
            f"{r['us_per_step'] / host[r['N']]:.1f}x |"
        )
    return "\n".join(lines)


def figure(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, finals = summarise(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for rule in ("ANP", "DANP"):
        xs, ms, lo, hi = [], [], [], []
        for s in SCALES:
            f = finals.get(f"analog {rule} pcm x{s:g}")
            if f:
                xs.append(s)
                ms.append(statistics.mean(f))
                lo.append(statistics.mean(f) - min(f))
                hi.append(max(f) - statistics.mean(f))
        if xs:
            ax1.errorbar(xs, ms, yerr=[lo, hi], marker="o", capsize=3, label=f"analog {rule}")
    for name, style in (("host ANP (clean pass)", "k--"), ("host ANP (two noisy passes)", "k:")):
        if finals.get(name):
            ax1.axhline(statistics.mean(finals[name]), ls=style[1:], color="k", label=name)
    ax1.set_xlabel("noise scale of the PCM preset")
    ax1.set_ylabel("final test MSE (Mackey-Glass, N=100)")
    ax1.set_yscale("log")
    ax1.set_title("ANP between two noisy passes")
    ax1.legend(fontsize=8)
    names = [n for n in CONFIGS if finals.get(n) and " x" not in n]
    means = [statistics.mean(finals[n]) for n in names]
    ax2.barh(range(len(names)), means, color="tab:blue")
    ax2.set_yticks(range(len(names)), names, fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlabel("final test MSE (mean over seeds)")
    ax2.invert_yaxis()
    ax2.set_title("rules and device options")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON-lines results file (appended)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--speed", action="store_true", help="also measure µs per step")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--figure", default=os.path.join(os.path.dirname(__file__), "figures",
                                                     "analog.png"))  # fmt: skip
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    rows = read_rows(args.out)
    if not args.summary_only:
        done = {(r["config"], r["seed"], r["epochs"]) for r in rows if "config" in r}
        todo = [
            (c, s, args.epochs)
            for c in args.configs
            for s in range(args.seeds)
            if (c, s, args.epochs) not in done
        ]
        run_pending(run_one, todo, args.out, args.jobs, rows,
                    lambda r: f"{r['config']:36s} seed={r['seed']}")  # fmt: skip
        if args.speed and not any("us_per_step" in r for r in rows):
            with open(args.out, "a") as f:
                for row in speed(args.repeats, 2000):
                    rows.append(row)
                    f.write(json.dumps(row) + "\n")
    table, _ = summarise(rows)
    print(table)
    print()
    print(speed_table(rows))
    figure(rows, args.figure)
    print(f"\nfigure: {args.figure}")


if __name__ == "__main__":
    main()
