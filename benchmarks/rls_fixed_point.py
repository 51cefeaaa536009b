"""Is RLS stable in the firmware's fixed point? Measured, not assumed (docs/design.md §8).

The readout's RLS (forgetting λ = 0.9999, P0 = the learner's ``readout_p0``) run over the
same features four ways: in float64; with P, the gain and the weights rounded to steps of
2^-24 after every operation but unbounded (what a 64-bit P would hold); in the firmware's
int32 weight format Q7.24 (steps 2^-24, saturating at ±128); and in int32 Q16.16 (steps
2^-16, saturating at ±32768). Features come from the learner's fixed network (N = 32,
leak 0.3, spectral radius 0.95, readout over [xh, u, 1]) on the Mackey-Glass task of
``twinpass hil``, the training series cycled for ``--steps`` steps; the score is the
frozen readout's test MSE.

    python benchmarks/rls_fixed_point.py [--steps 20000] [--hidden 32]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.tasks import make_task


def features(params: dict, leak: float, U: np.ndarray) -> np.ndarray:
    """[xh, u, 1] of the fixed network over the inputs U (T, n_in), from a zero state."""
    A, R = params["A"].astype(np.float64), params["R"].astype(np.float64)
    xh = np.zeros(R.shape[0])
    out = np.empty((len(U), R.shape[0] + U.shape[1] + 1))
    for t, u in enumerate(U):
        xh = (1 - leak) * xh + leak * np.tanh(A @ u + R @ xh)
        out[t] = np.concatenate([xh, u, [1.0]])
    return out


def rls(
    F: np.ndarray, y: np.ndarray, lam: float, p0: float, frac: int | None, bound: float | None
) -> tuple[np.ndarray, float]:
    """The readout's weights after RLS over (F, y), and the largest |P| met on the way;
    ``frac``: round to steps of 2^-frac after each operation; ``bound``: saturate there."""

    def q(x):
        if frac is not None:
            x = np.round(x * 2.0**frac) / 2.0**frac
        if bound is not None:
            x = np.clip(x, -bound, bound - 2.0**-frac)
        return x

    n = F.shape[1]
    P = q(np.eye(n) * p0)
    w = np.zeros(n)
    big = float(np.max(np.abs(P)))
    for f, target in zip(F, y, strict=True):
        g = q(P @ f)
        c = lam + f @ g
        if not (np.isfinite(c) and c > 0):
            return np.full(n, np.nan), big
        k = q(g / c)
        w = q(w + k * (target - w @ f))
        P = q((P - np.outer(k, g)) / lam)
        big = max(big, float(np.max(np.abs(P))))
    return w, big


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--p0", type=float, default=None, help="P's start [the learner's]")
    args = ap.parse_args(argv)
    task = make_task("mackey-glass")
    cfg = RuleConfig() if args.p0 is None else RuleConfig(readout_p0=args.p0)
    n = args.hidden
    rows = []
    for seed in (0, 1, 2):
        params = Params.init(
            1, n, 1, seed=seed, spectral_radius=cfg.spectral_radius,
            input_scale=cfg.input_scale, readout_inputs=True,
        ).arrays()  # fmt: skip
        reps = -(-args.steps // len(task.train.inputs))
        U = np.tile(task.train.inputs[:, 0, :], (reps, 1))[: args.steps]
        Y = np.tile(task.train.targets[:, 0, 0], reps)[: args.steps]
        Ftr = features(params, cfg.leak, U.astype(np.float64))
        Fte = features(params, cfg.leak, task.test.inputs[:, 0, :].astype(np.float64))
        yte = task.test.targets[:, 0, 0].astype(np.float64)
        row: list = [seed]
        for frac, bound in ((None, None), (24, None), (24, 128.0), (16, 32768.0)):
            w, big = rls(Ftr, Y, cfg.forgetting, cfg.readout_p0, frac, bound)
            row.append(f"{float(np.mean((Fte @ w - yte) ** 2)):.3g}")
            if frac == 24 and bound is None:
                unbounded_big = big
        row.append(f"{unbounded_big:.3g}")
        rows.append(row)
    print(
        f"RLS readout, N = {n}, {args.steps} steps, P0 = {cfg.readout_p0:g} I (test MSE of "
        "the frozen readout)"
    )
    print(
        "| seed | float64 | steps 2^-24, unbounded | Q7.24 int32 | Q16.16 int32 | largest abs(P) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(str(v) for v in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
