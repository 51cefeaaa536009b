"""Stability and quality on Mackey-Glass: seeds x N x epochs, default rules vs baselines.

The rules run on the paper's network (``sweep.paper_era``: the defaults of the day this
sweep was recorded; the learner's own quality is ``learner_quality.py``'s).

Every run trains from its own seed for the given epochs and records the final test MSE,
or the step and rule at which it diverged (a non-finite loss, or a weight beyond 1e4: a
run whose weights blow up while its loss still looks finite counts as diverged). Results
are appended to a JSON-lines file as they finish, so an interrupted sweep resumes where it
stopped; the summary table is computed from that file.

    python benchmarks/stability.py --out stability.jsonl                     # the full sweep
    python benchmarks/stability.py --out s.jsonl --hidden 100 --seeds 2 --epochs 3   # a taste
    python benchmarks/stability.py --out stability.jsonl --summary-only
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from sweep import paper_era, read_rows, run_pending  # the sibling module: scripts run from here

CONFIGS = {
    "ANP": {},
    "DANP": {"decorrelation": True},
    "ANP-reference": {"reference": "anp"},
    "BPTT-K20-SGD": {"rule": "bp", "bptt_window": 20},
    "BP-reference": {"reference": "bp"},
}


def run_one(name: str, n: int, seed: int, epochs: int, pairing: str) -> dict:
    from twinpass.core.errors import DivergenceError
    from twinpass.runtime import OnlineLearner, RuleConfig
    from twinpass.runtime.tasks import make_task
    from twinpass.runtime.training import train

    spec = dict(CONFIGS[name])
    ref = spec.pop("reference", None)
    config = RuleConfig.reference(ref, **spec) if ref else RuleConfig(**paper_era(spec))
    task = make_task("mackey-glass", pairing=pairing)
    learner = OnlineLearner(1, 1, n, config, seed=seed, max_weight=1e4)
    t0 = time.perf_counter()
    row = {"config": name, "N": n, "seed": seed, "epochs": epochs, "pairing": pairing}
    history: list[float] = []
    try:
        recs = train(learner, task, epochs, on_epoch=lambda r: history.append(r.test_mse))
        row.update(
            diverged=False,
            final_test_mse=recs[-1].test_mse,
            best_test_mse=min(r.test_mse for r in recs[1:]) if epochs else None,
        )
    except DivergenceError as exc:
        row.update(diverged=True, diverged_at_step=exc.step, final_test_mse=None)
    row.update(test_mse_by_epoch=history, wall_s=time.perf_counter() - t0)
    return row


def summarise(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["pairing"], r["config"], r["N"], r["epochs"]), []).append(r)
    lines = [
        "| pairing | rule | N | epochs | diverged | median final test MSE | worst (finite) | "
        "seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (pairing, name, n, epochs), rs in sorted(groups.items()):
        finite = [r["final_test_mse"] for r in rs if not r["diverged"]]
        div = sum(r["diverged"] for r in rs)
        med = f"{statistics.median(finite):.2e}" if finite else "-"
        worst = f"{max(finite):.2e}" if finite else "-"
        lines.append(
            f"| {pairing} | {name} | {n} | {epochs} | {div}/{len(rs)} | {med} | "
            f"{worst} | {len(rs)} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON-lines results file (appended)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--hidden", type=int, nargs="+", default=[100, 500, 1000])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--pairing", default="recall", choices=["recall", "ahead"])
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()
    rows = read_rows(args.out)
    if not args.summary_only:
        done = {(r["config"], r["N"], r["seed"], r["epochs"], r["pairing"]) for r in rows}
        todo = [
            (c, n, s, args.epochs, args.pairing)
            for n in args.hidden
            for c in args.configs
            for s in range(args.seeds)
            if (c, n, s, args.epochs, args.pairing) not in done
        ]
        # Largest first, so the long runs do not end up alone at the end.
        todo.sort(key=lambda job: -job[1])
        run_pending(run_one, todo, args.out, args.jobs, rows,
                    lambda r: f"{r['config']:14s} N={r['N']:5d} seed={r['seed']}")  # fmt: skip
    print(summarise(rows))


if __name__ == "__main__":
    main()
