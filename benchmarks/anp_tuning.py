"""ANP's hyperparameters and learning-rate schedules against the quality target at N = 100.

docs/design.md §9 asks ANP's final test MSE on Mackey-Glass to be within 1.5x of the strongest
BP baseline (truncated BPTT, K = 20, SGD: median 3.67e-4 at N = 100 in the stability
sweep, recall pairing). This script trains ANP with the given rule settings and a
per-epoch learning-rate schedule over several seeds and prints the median and worst final
test MSE, in the stability sweep's setting (recall pairing, 20 epochs, the paper's
network: ``sweep.paper_era``).

A schedule other than ``const`` scales lr at the start of each epoch (``cos``: half a
cosine from 1 to 0; ``step``: 1, then 0.3 after half the epochs, 0.1 after three
quarters; ``inv``: 1 / (1 + epoch / 4)). The learner has no lr setter, so each epoch starts
a learner on the current weights with the epoch's lr; its noise generator is seeded anew
per epoch (seed · 1000 + epoch), the only difference from one continuous run.

    python benchmarks/anp_tuning.py --configs '{"ANP": {}, "lr3e-3": {"lr": 3e-3}}'
    python benchmarks/anp_tuning.py --configs '{"lr1e-2": {"lr": 1e-2}}' --schedule cos
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

from sweep import paper_era  # the sibling module: scripts run from here

from twinpass.core.errors import DivergenceError
from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import evaluate, train_epoch

SCHEDULES = {
    "const": lambda e, E: 1.0,
    "cos": lambda e, E: 0.5 * (1 + math.cos(math.pi * (e - 1) / E)),
    "step": lambda e, E: 1.0 if e <= E // 2 else (0.3 if e <= 3 * E // 4 else 0.1),
    "inv": lambda e, E: 1.0 / (1 + (e - 1) / 4),
}


def final_test_mse(spec: dict, schedule: str, seed: int, epochs: int, n: int, task) -> float:
    spec = paper_era(spec)
    learner = OnlineLearner(1, 1, n, RuleConfig(**spec), seed=seed, max_weight=1e4)
    try:
        for e in range(1, epochs + 1):
            if schedule != "const":
                lr = spec.get("lr", RuleConfig().lr) * SCHEDULES[schedule](e, epochs)
                config = RuleConfig(**{**spec, "lr": lr})
                learner = OnlineLearner(
                    1, 1, n, config, seed=seed * 1000 + e, params=learner.params, max_weight=1e4
                )
            train_epoch(learner, task)
        return evaluate(learner, task).test_mse
    except DivergenceError:
        return math.inf


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default='{"ANP": {}}', help="JSON: name -> RuleConfig keys")
    ap.add_argument("--schedule", choices=list(SCHEDULES), default="const")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--pairing", choices=["recall", "ahead"], default="recall")
    args = ap.parse_args(argv)
    task = make_task("mackey-glass", pairing=args.pairing)
    print(f"| config | schedule | median test MSE | worst | per seed (N = {args.hidden}) |")
    print("|---|---|---|---|---|")
    for name, spec in json.loads(args.configs).items():
        t0 = time.perf_counter()
        mses = [
            final_test_mse(spec, args.schedule, s, args.epochs, args.hidden, task)
            for s in range(args.seeds)
        ]
        per_seed = ", ".join(f"{m:.1e}" for m in mses)
        print(
            f"| {name} {spec} | {args.schedule} | {statistics.median(mses):.2e} | "
            f"{max(mses):.2e} | {per_seed} |",
            flush=True,
        )
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
