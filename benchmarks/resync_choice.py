"""Evidence for the default resynchronisation period on a task that needs memory.

Resynchronising the perturbed replica's hidden state to the clean one stops it drifting
away through R (the cause of ANP's divergence on Mackey-Glass, see stability.py), but it
also removes the activity differences propagated from earlier steps, which a memory task
may need (docs/design.md §3.1). This runs ANP with resync every step, every 10 steps and never on
a copy task short enough to be learned at N=100 (5 symbols, delay 5), next to truncated
BPTT for scale, and prints test MSE and recall accuracy.

    python benchmarks/resync_choice.py                  # 3 seeds x 30 epochs, ~2 min
"""

from __future__ import annotations

import argparse
import statistics

from sweep import paper_era  # the sibling module: scripts run from here

from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import train

# On the paper's network, as recorded (sweep.paper_era).
CONFIGS = {
    "ANP resync 1": RuleConfig(**paper_era({"resync_every": 1})),
    "ANP resync 10 (default)": RuleConfig(**paper_era({"resync_every": 10})),
    "ANP resync 0 (never)": RuleConfig(**paper_era({"resync_every": 0})),
    "BPTT K=20 SGD": RuleConfig(**paper_era({"rule": "bp", "bptt_window": 20})),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--length", type=int, default=5)
    ap.add_argument("--delay", type=int, default=5)
    args = ap.parse_args()
    task = make_task("copy", length=args.length, delay=args.delay)
    print(
        f"copy task: length {args.length}, delay {args.delay}, N={args.hidden}, "
        f"{args.epochs} epochs, seeds 0..{args.seeds - 1}"
    )
    print("| rule | test MSE per seed | mean test MSE | mean recall accuracy |")
    print("|---|---|---|---|")
    for name, config in CONFIGS.items():
        mses, accs = [], []
        for seed in range(args.seeds):
            learner = OnlineLearner(task.n_in, task.n_out, args.hidden, config, seed=seed)
            last = train(learner, task, args.epochs)[-1]
            mses.append(last.test_mse)
            accs.append(last.extra["recall_accuracy"])
        print(
            f"| {name} | {', '.join(f'{m:.4f}' for m in mses)} | "
            f"{statistics.mean(mses):.4f} | {statistics.mean(accs):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
