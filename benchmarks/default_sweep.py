"""The sweep that chose the learner's defaults: network construction x readout memory.

Every configuration is scored on the paper's Mackey-Glass task (N = 100, ``--epochs``,
``--seeds``: median test MSE over every step) and on three streams, prequentially through
``StreamForecaster`` as ``twinpass stream`` runs them (horizon 1, the target also an input,
every column standardised from earlier rows only): Mackey-Glass 20k rows, NARMA10 20k rows
and WTH WetBulbCelsius (``../shared/data/WTH.csv``, skipped when absent). A stream's score
is the MSE over its last 20 % divided by persistence's; the configurations are ranked by
the geometric mean of the four ratios (the task's against the first configuration's).

    python benchmarks/default_sweep.py            # the committed run, see RESULTS.md
    python benchmarks/default_sweep.py --quick    # 2 epochs, 1 seed, shorter streams
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from pathlib import Path

import numpy as np

from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.sources import open_source
from twinpass.runtime.streaming import StreamForecaster
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import train_epoch

WTH = Path(__file__).resolve().parents[2] / "shared" / "data" / "WTH.csv"


def narma10(n: int, seed: int = 0) -> np.ndarray:
    """(u, y) columns of the NARMA10 recurrence, u ~ U(0, 0.5)."""
    g = np.random.default_rng(seed)
    u = g.uniform(0.0, 0.5, n)
    y = np.zeros(n)
    for t in range(9, n - 1):
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * y[t - 9 : t + 1].sum() + 1.5 * u[t - 9] * u[t] + 0.1
    return np.stack([u, y], axis=1)


def mackey_glass_rows(n: int) -> np.ndarray:
    src = open_source("mackey-glass", seed=0)
    src.start(lambda: False)
    return np.asarray(src.read(n, lambda: False).values, np.float64)


def wth_rows() -> np.ndarray | None:
    if not WTH.exists():
        return None
    with WTH.open() as f:
        rows = list(csv.reader(f))
    return np.array([[float(v) for v in r[1:]] for r in rows[1:]])  # target last


def stream_ratio(X: np.ndarray, config: RuleConfig) -> float:
    f = StreamForecaster(X.shape[1], horizon=1, n_hidden=100, config=config, seed=0)
    P, T = [], []
    for i in range(0, len(X), 4096):
        r = f.learn_block(X[i : i + 4096])
        P.append(r.predictions)
        T.append(r.truth)
    e = (np.concatenate(P) - np.concatenate(T)[:, None]) ** 2
    k = int(0.8 * e.shape[0])
    return float(e[k:, 0].mean() / e[k:, 1].mean())


def task_mse(config: RuleConfig, epochs: int, seeds: list[int]) -> float:
    task = make_task("mackey-glass")
    out = []
    for s in seeds:
        learner = OnlineLearner(task.n_in, task.n_out, 100, config, seed=s)
        for _ in range(epochs):
            train_epoch(learner, task)
        out.append(learner.evaluate(task.test.inputs, task.test.targets)[0])
    return float(np.median(out))


def configs() -> dict[str, RuleConfig]:
    out = {"paper's network": RuleConfig(**PAPER_NETWORK)}
    for leak, scale, lam in itertools.product((0.3, 0.6, 1.0), (0.3, 1.0), (1.0, 0.9999)):
        name = f"leak {leak}, input scale {scale}, forgetting {lam}"
        out[name] = RuleConfig(leak=leak, input_scale=scale, forgetting=lam)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 5000 if args.quick else 20_000
    epochs, seeds = (2, [0]) if args.quick else (args.epochs, args.seeds)
    streams = {"Mackey-Glass": mackey_glass_rows(n + 1), "NARMA10": narma10(n)}
    w = wth_rows()
    if w is not None:
        streams["WTH 1 h"] = w[: n + 1] if args.quick else w
    else:
        print("WTH.csv not found: the weather stream is left out")
    print(f"task: Mackey-Glass, N = 100, {epochs} epochs, seeds {seeds}; streams: last 20 % "
          "MSE / persistence's, horizon 1, N = 100")  # fmt: skip
    print("| configuration | task median test MSE | " + " | ".join(streams) + " | score |")
    print("|---|---|" + "---|" * len(streams) + "---|")
    base = None
    for name, cfg in configs().items():
        mse = task_mse(cfg, epochs, seeds)
        base = base or mse
        ratios = [stream_ratio(X, cfg) for X in streams.values()]
        score = math.exp(np.mean(np.log([mse / base, *ratios])))
        cells = " | ".join(f"{r:.3f}" for r in ratios)
        print(f"| {name} | {mse:.2e} | {cells} | {score:.3f} |", flush=True)


if __name__ == "__main__":
    main()
