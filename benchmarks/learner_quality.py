"""What the learner reaches on the paper's Mackey-Glass task, configuration by configuration.

For each named configuration and seed: ``twinpass train``'s loop (N hidden units, E epochs
of online learning over the training split, the test split predicted from a zero state
without learning), reporting the test MSE over every step (the paper's metric) and after
a 100-step washout (the echo-state convention of the baselines we compare to), R's
spectral radius at the end and the guard's and RLS's event counts. Medians over seeds.

    python benchmarks/learner_quality.py --seeds 0 1 2 3 4 --epochs 20
    python benchmarks/learner_quality.py --configs default --hidden 500 --seeds 0 1 2
"""

from __future__ import annotations

import argparse

import numpy as np

from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import train_epoch

#: Steps at the start of each test sequence left out of the "after washout" score.
WASHOUT = 100

#: The echo-state network with a ridge readout (not a twinpass configuration).
ESN = "ESN + ridge readout (fixed reservoir)"

CONFIGS = {
    "default": RuleConfig(),
    "paper's network": RuleConfig(**PAPER_NETWORK),
    "reference": RuleConfig.reference(),
    "no leak": RuleConfig(leak=1.0),
    "leak 0.5": RuleConfig(leak=0.5),
    "hidden layer fixed": RuleConfig(lr_hidden=1e-300),
    "lr-hidden 1e-2": RuleConfig(lr_hidden=1e-2),
}


def esn_ridge(hidden: int, seed: int) -> dict[str, float]:
    """The baseline of the comparison: a fixed echo-state network with a ridge readout.

    W: standard normals scaled to spectral radius 0.95; W_in uniform in [-2, 2]; x_t =
    tanh(W x_{t-1} + W_in u_t) from x_0 = 0 on each split; readout [x_t, 1] fitted by ridge
    regression (λ = 1e-6) on the train split's states after a 100-step washout, float64.
    """
    task = make_task("mackey-glass")
    g = np.random.default_rng(seed)
    W = g.standard_normal((hidden, hidden))
    W *= 0.95 / np.max(np.abs(np.linalg.eigvals(W)))
    w_in = g.uniform(-2.0, 2.0, hidden)

    def states(u: np.ndarray) -> np.ndarray:
        x = np.zeros(hidden)
        out = np.empty((len(u), hidden + 1))
        for t, ut in enumerate(u):
            x = np.tanh(W @ x + w_in * ut)
            out[t, :hidden], out[t, hidden] = x, 1.0
        return out

    S = states(task.train.inputs[0, :, 0])[WASHOUT:]
    y = task.train.targets[0, WASHOUT:, 0]
    beta = np.linalg.solve(S.T @ S + 1e-6 * np.eye(hidden + 1), S.T @ y)
    pred = states(task.test.inputs[0, :, 0]) @ beta
    err = (pred - task.test.targets[0, :, 0]) ** 2
    return {"test": float(err.mean()), "washout": float(err[WASHOUT:].mean()), "rho": 0.95,
            "guard": 0, "resets": 0}  # fmt: skip


def run(config: RuleConfig, hidden: int, epochs: int, seed: int) -> dict[str, float]:
    task = make_task("mackey-glass")
    learner = OnlineLearner(task.n_in, task.n_out, hidden, config, seed=seed)
    for _ in range(epochs):
        train_epoch(learner, task)
    mse, pred = learner.evaluate(task.test.inputs, task.test.targets)
    err = pred[:, WASHOUT:].astype(np.float64) - task.test.targets[:, WASHOUT:]
    counts = learner.counts()
    rho = float(np.max(np.abs(np.linalg.eigvals(learner.params.R.astype(np.float64)))))
    return {
        "test": mse,
        "washout": float(np.mean(err * err)),
        "rho": rho,
        "guard": counts.get("guard_projections", 0),
        "resets": counts.get("rls_resets", 0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", nargs="+", default=[*CONFIGS, ESN], choices=[*CONFIGS, ESN])
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    print(f"Mackey-Glass 15 ahead, N = {args.hidden}, {args.epochs} epochs, seeds {args.seeds}")
    print("| configuration | median test MSE | after washout | per seed (test / washout) | "
          "spectral radius | guard, RLS resets |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in args.configs:
        if name == ESN:
            rows = [esn_ridge(args.hidden, s) for s in args.seeds]
        else:
            rows = [run(CONFIGS[name], args.hidden, args.epochs, s) for s in args.seeds]
        seeds = " ".join(f"{r['test']:.1e} / {r['washout']:.1e}" for r in rows)
        rhos = " ".join(f"{r['rho']:.2f}" for r in rows)
        ev = " ".join(f"{r['guard']},{r['resets']}" for r in rows)
        med = np.median([r["test"] for r in rows])
        medw = np.median([r["washout"] for r in rows])
        print(f"| {name} | {med:.2e} | {medw:.2e} | {seeds} | {rhos} | {ev} |", flush=True)


if __name__ == "__main__":
    main()
