"""On-device fixed-point ANP against the host's float learner on Mackey-Glass.

Trains :class:`twinpass.firmware_sim.fixed_point.FixedNet` (the firmware's arithmetic,
docs/protocol.md §6) exactly as ``runtime.training.train`` trains the float OnlineLearner
(each epoch streams the training series from a zero state, one update per step; test MSE
from a zero state without learning), with the same initial weights, and prints both test
MSEs per epoch and the ratio. The issue's bar: fixed within 1.5x of float at N = 32, 64.

    python benchmarks/fixed_point_accuracy.py                    # N=32,64, 20 epochs, ~2 min
    python benchmarks/fixed_point_accuracy.py --hidden 32 --epochs 5 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from twinpass.firmware_sim.fixed_point import FixedNet
from twinpass.protocol.hyper import hyper_from_rule
from twinpass.protocol.qformat import A_FRAC, W_FRAC
from twinpass.protocol.qformat import quantise_array as q
from twinpass.runtime import OnlineLearner, Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.tasks import make_mackey_glass
from twinpass.runtime.training import train


def fixed_run(task, n_hidden: int, epochs: int, seed: int) -> tuple[list[float], float]:
    """Test MSE after each epoch (epoch 0 first) and steps per second."""
    p = Params.init(1, n_hidden, 1, seed=seed)
    hyper = hyper_from_rule(RuleConfig(**PAPER_NETWORK).resolve(1, n_hidden, 1))
    net = FixedNet(q(p.A, W_FRAC), q(p.R, W_FRAC), q(p.B, W_FRAC), None, hyper, seed=seed)
    U, Y = q(task.train.inputs, A_FRAC), q(task.train.targets, A_FRAC)
    Ut = np.swapaxes(q(task.test.inputs, A_FRAC), 0, 1)

    def test_mse() -> float:
        pred = np.swapaxes(net.predict(Ut, Ut.shape[1], True), 0, 1) / 2**A_FRAC
        return float(np.mean((pred - task.test.targets) ** 2))

    out = [test_mse()]
    steps, t0 = 0, time.perf_counter()
    for _ in range(epochs):
        for s in range(U.shape[0]):
            net.reset_state()
            for t in range(U.shape[1]):
                net.step(U[s, t][None], Y[s, t][None], True)
                steps += 1
        out.append(test_mse())
    return out, steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    task = make_mackey_glass()
    for n in args.hidden:
        for seed in args.seeds:
            host = [r.test_mse for r in train(OnlineLearner(1, 1, n, seed=seed), task, args.epochs)]
            fixed, rate = fixed_run(task, n, args.epochs, seed)
            print(
                f"N={n} seed={seed} epochs={args.epochs}: test MSE fixed {fixed[-1]:.3e}, "
                f"float {host[-1]:.3e}, ratio {fixed[-1] / host[-1]:.2f} "
                f"(fixed-point step {rate:.0f} steps/s in process)"
            )
            print("  per epoch fixed:", " ".join(f"{v:.2e}" for v in fixed))
            print("  per epoch float:", " ".join(f"{v:.2e}" for v in host))


if __name__ == "__main__":
    main()
