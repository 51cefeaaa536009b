"""ANP against the online gradient rules (RTRL, e-prop, UORO) and the chunked BPTT baseline.

The paper's tasks as ``twinpass train`` runs them (Mackey-Glass 15 ahead, copy memory,
weather 1 h when WTH.csv is there), every rule at its ``RuleConfig`` defaults (the same
network: N hidden units, leaky units, the RLS readout over [hidden, input, 1]; BP learns its
readout by its own gradient, chunked windows of 20 with Adam), the same N and the same
number of epochs (passes over the training data), 5 seeds. Prints a Markdown table of the
median final test MSE per task and rule (with the per-seed values), the step's cost by
docs/design.md §7's counts and the measured µs per training step, and draws the median test
MSE against the cost per step (benchmarks/figures/gradient_rules.png).

    python benchmarks/gradient_rules.py                      # N = 64, 5 seeds, 2 processes
    python benchmarks/gradient_rules.py --hidden 32 --seeds 0 1 --quick
    python benchmarks/gradient_rules.py --from-json a.json b.json   # table and figure again

Runs go to a process pool (``--jobs``), the costliest (RTRL) first; BLAS is kept to one
thread per process (RTRL's product is small: threads only fight over the cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

#: Relative to the repository's root; the weather rows are skipped when it is absent.
DEFAULT_WEATHER = Path("..") / "shared" / "data" / "WTH.csv"

#: Label -> RuleConfig fields. ANP is the default learner; the others change the rule only.
RULES: dict[str, dict] = {
    "ANP": {},
    "e-prop": {"rule": "eprop"},
    "e-prop, random feedback": {"rule": "eprop", "feedback": "random"},
    "UORO": {"rule": "uoro"},
    "RTRL": {"rule": "rtrl"},
    "BPTT chunked (K = 20)": {"rule": "bp"},
    # The reference that says whether any rule's hidden learning counted: ANP's learner with
    # the hidden layer's step at 1e-12 (the readout alone learns).
    "hidden layer frozen": {"lr_hidden": 1e-12},
}

EPOCHS = {"mackey-glass": 20, "copy": 20, "weather": 3}


def flops_per_step(label: str, n: int, n_in: int) -> float:
    """Leading-order flops of one learning step (docs/design.md §7), RLS readout included."""
    f = n + n_in + 1
    rls = 5 * f * f
    rule = RULES[label].get("rule", "anp")
    if rule == "anp":
        return 6 * n * n + rls
    if rule == "eprop":
        return 7 * n * n + rls
    if rule == "uoro":
        return 11 * n * n + rls
    if rule == "rtrl":
        return 2.0 * n * n * n * (n + n_in) + 5 * n * n * (n + n_in) + rls
    # Chunked BPTT: the forward product (2 N²) and, once per window, a backward pass of K
    # steps (about 4 N² each), and Adam over A, R, B (about 10 flops per weight) per window.
    return 6 * n * n + 10 * (n * n + n * n_in + f) / 20


def run_one(job: tuple[str, str, int, int, int, str | None, float | None]) -> dict:
    """One training run in this process: final test MSE and µs per training step."""
    task_name, label, hidden, seed, epochs, weather, lr_hidden = job
    from twinpass.runtime import OnlineLearner, RuleConfig
    from twinpass.runtime.tasks import make_task
    from twinpass.runtime.training import evaluate, train_epoch

    kwargs = {"path": weather, "horizon": 1} if task_name == "weather" else {}
    task = make_task(task_name, **kwargs)
    fields = dict(RULES[label])
    if lr_hidden is not None and "lr_hidden" not in fields and fields.get("rule") != "bp":
        fields["lr_hidden"] = lr_hidden
    config = RuleConfig(**fields)
    n_in, n_out = task.train.inputs.shape[2], task.train.targets.shape[2]
    learner = OnlineLearner(n_in, n_out, hidden, config, seed=seed, on_divergence="raise")
    steps = task.train.inputs.shape[0] * task.train.inputs.shape[1]
    train_s = 0.0
    error = None
    curve = []
    try:
        for _ in range(epochs):
            t0 = time.perf_counter()
            train_epoch(learner, task)
            train_s += time.perf_counter() - t0
            curve.append(evaluate(learner, task).test_mse)
    except Exception as exc:  # a diverged run is a result, not a crash of the benchmark
        error = f"{type(exc).__name__}: {exc}"
    return {
        "task": task_name, "rule": label, "seed": seed, "hidden": hidden, "epochs": epochs,
        "lr_hidden": config.lr_hidden,
        "test_mse": curve[-1] if curve and error is None else None, "curve": curve,
        "us_per_step": train_s / max(1, len(curve) * steps) * 1e6, "error": error,
        "flops_per_step": flops_per_step(label, hidden, n_in),
    }  # fmt: skip


def table(results: list[dict]) -> str:
    lines = [
        "| task | rule | median test MSE | per seed | failed | flops/step (§7) | µs/step |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in dict.fromkeys(r["task"] for r in results):
        for label in RULES:
            rs = sorted(
                (r for r in results if r["task"] == task and r["rule"] == label),
                key=lambda r: r["seed"],
            )
            if not rs:
                continue
            ok = [r["test_mse"] for r in rs if r["test_mse"] is not None]
            med = f"{statistics.median(ok):.2e}" if ok else "-"
            per = ", ".join("-" if r["test_mse"] is None else f"{r['test_mse']:.2e}" for r in rs)
            us = statistics.median(r["us_per_step"] for r in rs)
            lines.append(
                f"| {task} | {label} | {med} | {per} | {len(rs) - len(ok)} | "
                f"{rs[0]['flops_per_step']:.2g} | {us:.1f} |"
            )
    return "\n".join(lines)


def figure(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in results))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    markers = dict(zip(RULES, "os^vDPx", strict=True))
    for ax, task in zip(axes[0], tasks, strict=True):
        for k, label in enumerate(RULES):
            rs = [r for r in results if r["task"] == task and r["rule"] == label]
            ok = [r["test_mse"] for r in rs if r["test_mse"] is not None]
            if not ok:
                continue
            x = rs[0]["flops_per_step"]
            style = {"marker": markers[label], "color": f"C{k}"}
            ax.scatter([x] * len(ok), ok, alpha=0.35, s=14, **style)
            ax.scatter([x], [statistics.median(ok)], s=60, label=label, **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        lrh = {r.get("lr_hidden") for r in results if r["rule"] != "hidden layer frozen"}
        lrh_text = ", ".join(f"{v:g}" for v in sorted(v for v in lrh if v is not None))
        ax.set_title(f"{task}, N = {results[0]['hidden']}, lr_hidden {lrh_text}", fontsize=9)
        ax.set_xlabel("flops per learning step (design §7)")
        ax.set_ylabel("test MSE (median large, seeds small)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=64, help="N (RTRL needs N <= 64 here) [64]")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tasks", nargs="+", default=list(EPOCHS), choices=list(EPOCHS))
    ap.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES))
    ap.add_argument("--quick", action="store_true", help="1 epoch per task")
    ap.add_argument("--weather", type=Path, default=DEFAULT_WEATHER, help="WTH.csv")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--lr-hidden", type=float, help="the hidden step of every rule but BP [the default]"
    )
    ap.add_argument("--json-out", type=Path)
    ap.add_argument("--from-json", type=Path, nargs="+", help="results saved by --json-out")
    ap.add_argument("--figure", type=Path, default=Path("benchmarks/figures/gradient_rules.png"))
    args = ap.parse_args()
    if args.from_json:
        results = [r for p in args.from_json for r in json.loads(p.read_text())]
        print(table(results))
        figure(results, args.figure)
        return
    tasks = list(args.tasks)
    if "weather" in tasks and not args.weather.exists():
        print(f"({args.weather} not found: weather skipped)", file=sys.stderr)
        tasks.remove("weather")
    weather = str(args.weather)
    jobs = [
        (task, label, args.hidden, seed, 1 if args.quick else EPOCHS[task], weather, args.lr_hidden)
        for label in args.rules
        for task in tasks
        for seed in args.seeds
    ]
    # The costliest first, so that the pool does not end waiting on one RTRL run.
    jobs.sort(key=lambda j: -flops_per_step(j[1], j[2], 1) * j[4])
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for res in pool.map(run_one, jobs):
            results.append(res)
            shown = res["error"] or f"{res['test_mse']:.3e}"
            print(
                f"  {res['task']} {res['rule']} seed {res['seed']}: {shown} "
                f"({res['us_per_step']:.1f} us/step)",
                file=sys.stderr,
                flush=True,
            )
    print(table(results))
    for r in results:
        if r["error"]:
            print(f"{r['task']} {r['rule']} seed {r['seed']}: {r['error']}")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    figure(results, args.figure)


if __name__ == "__main__":
    main()
