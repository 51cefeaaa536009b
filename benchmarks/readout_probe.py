"""What did the learning rule teach the hidden layer? A ridge readout on the initial and trained
network, side by side (docs/design.md §5).

A learner's own test MSE mixes two things: how good its hidden layer is, and how far its
readout sits from the best readout for that hidden layer. This probe separates them. For
each seed it trains an ``OnlineLearner`` on the paper's Mackey-Glass task exactly as
``twinpass train`` does (the same rule options), then, for the initial and for the trained
network:

1. runs the train and the test split from a zero state, clean, in float64 NumPy with the
   network's own equations (A, R, D and the leak of the configuration, docs/design.md §2);
2. fits a ridge readout (λ = 1e-6, every weight regularised, the first 100 steps of each
   sequence left out) on the train split's states;
3. scores it on the test split after the same 100-step washout.

The probe's ridge readout always sees the features [xh, u, 1] (hidden state, input and a
constant), whatever the learner's own readout sees, so that the initial and the trained
network are compared on equal terms. Reported beside it: the learner's own test MSE (its
own readout, every step of the test split: the paper's metric, as ``twinpass train``
reports it) and R's spectral radius before → after. The ratio initial / trained of the
ridge scores says how much better the learned hidden layer is (> 1: better).

    python benchmarks/readout_probe.py --epochs 20 --seeds 0 1 2 3 4
    python benchmarks/readout_probe.py --lr 1e-2 --epochs 20 --write-results
    python benchmarks/readout_probe.py --self-check    # forward pass against the learner
"""

from __future__ import annotations

import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np

from twinpass.cli.options import rule_config_from_options, rule_options
from twinpass.core.errors import DivergenceError
from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.params import Params
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import train

#: Steps at the start of each sequence left out of the ridge fit and of its score.
WASHOUT = 100
#: The ridge regulariser.
RIDGE = 1e-6
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Readout probe (`benchmarks/readout_probe.py`)"


def run_states(params: Params, leak: float, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden states and readout features of S sequences from a zero state, float64.

    inputs (S, T, n_in). Returns xh (S, T, N) and the features [xh, u, 1] (S, T, N+n_in+1).
    The clean network of docs/design.md §2: a = A u + R xh, xh <- (1 - α) xh + α D tanh(a).
    """
    A, R, D = (np.asarray(m, np.float64) for m in (params.A, params.R, params.D))
    U = np.asarray(inputs, np.float64)
    S, T, _ = U.shape
    n = R.shape[0]
    xh = np.zeros((S, n))
    states = np.empty((S, T, n))
    for t in range(T):
        a = U[:, t] @ A.T + xh @ R.T
        xh = (1.0 - leak) * xh + leak * (np.tanh(a) @ D.T)
        states[:, t] = xh
    feats = np.concatenate([states, U, np.ones((S, T, 1))], axis=2)
    return states, feats


def own_predictions(params: Params, states: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The learner's own readout B applied to its own features ([xh, u, 1] or xh alone)."""
    B = np.asarray(params.B, np.float64)
    f = feats if B.shape[1] == feats.shape[2] else states
    return f @ B.T


def ridge_fit(feats: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Ridge weights W (F, n_out) on the steps after the washout of every sequence."""
    X = feats[:, WASHOUT:].reshape(-1, feats.shape[2])
    Y = np.asarray(targets, np.float64)[:, WASHOUT:].reshape(-1, targets.shape[2])
    G = X.T @ X + RIDGE * np.eye(X.shape[1])
    return np.linalg.solve(G, X.T @ Y)


def ridge_score(feats: np.ndarray, targets: np.ndarray, W: np.ndarray) -> float:
    """Test MSE of the ridge readout after the washout."""
    err = feats[:, WASHOUT:] @ W - np.asarray(targets, np.float64)[:, WASHOUT:]
    return float(np.mean(err * err))


def spectral_radius(R: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(np.asarray(R, np.float64)))))


def probe(params: Params, leak: float, task: Any) -> float:
    """Ridge readout fitted on the train split's states, scored on the test split."""
    _, f_train = run_states(params, leak, task.train.inputs)
    _, f_test = run_states(params, leak, task.test.inputs)
    if not (np.isfinite(f_train).all() and np.isfinite(f_test).all()):
        return math.nan
    return ridge_score(f_test, task.test.targets, ridge_fit(f_train, task.train.targets))


def run_seed(config: RuleConfig, hidden: int, epochs: int, seed: int) -> dict[str, Any]:
    task = make_task("mackey-glass")
    learner = OnlineLearner(task.n_in, task.n_out, hidden, config, seed=seed)
    initial = learner.params
    row: dict[str, Any] = {"seed": seed, "diverged": False}
    row["initial_own"] = learner.evaluate(task.test.inputs, task.test.targets)[0]
    try:
        records = train(learner, task, epochs)
        row["trained_own"] = records[-1].test_mse
    except DivergenceError as exc:
        row["diverged"] = True
        row["trained_own"] = math.nan
        print(f"  seed {seed}: {exc}", file=sys.stderr)
    trained = learner.params
    row["initial_ridge"] = probe(initial, config.leak, task)
    row["trained_ridge"] = probe(trained, config.leak, task) if trained.all_finite() else math.nan
    row["ratio"] = row["initial_ridge"] / row["trained_ridge"]
    row["rho_before"] = spectral_radius(initial.R)
    row["rho_after"] = spectral_radius(trained.R) if trained.all_finite() else math.nan
    row["guard"] = learner.counts().get("guard_projections", 0)
    return row


def fmt(v: float, spec: str = ".1e") -> str:
    return "—" if not np.isfinite(v) else format(v, spec)


def fmt_ratio(v: float) -> str:
    """Two decimals below 10 (so that 1.00x reads as "no change"), whole numbers above."""
    return "—" if not np.isfinite(v) else f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| seed | initial, own | initial + ridge | trained, own | trained + ridge | "
        "ratio initial / trained (ridge) | spectral radius of R | guard projections |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = " (diverged)" if r["diverged"] else ""
        lines.append(
            f"| {r['seed']}{mark} | {fmt(r['initial_own'])} | {fmt(r['initial_ridge'])} | "
            f"{fmt(r['trained_own'])} | {fmt(r['trained_ridge'])} | {fmt_ratio(r['ratio'])} | "
            f"{fmt(r['rho_before'], '.2f')} → {fmt(r['rho_after'], '.2f')} | {r['guard']} |"
        )
    if len(rows) > 1:

        def med(key: str) -> float:
            return float(np.median([r[key] for r in rows]))

        lines.append(
            f"| median | {fmt(med('initial_own'))} | {fmt(med('initial_ridge'))} | "
            f"{fmt(med('trained_own'))} | {fmt(med('trained_ridge'))} | "
            f"{fmt_ratio(med('ratio'))} | {fmt(med('rho_before'), '.2f')} → "
            f"{fmt(med('rho_after'), '.2f')} | |"
        )
    return lines


def describe(config: RuleConfig) -> str:
    """The configuration's fields that differ from RuleConfig()'s defaults."""
    base = RuleConfig().to_dict()
    diff = {k: v for k, v in config.to_dict().items() if base.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in diff.items()) or "the defaults"


def replace_section(lines: list[str]) -> None:
    """Replace the probe's section of RESULTS.md (up to the next level-2 heading), or
    append it; nothing else in the file changes."""
    text = RESULTS.read_text(encoding="utf-8")
    section = "\n".join([HEADING, "", *lines]) + "\n"
    start = text.find(HEADING + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        nxt = re.search(r"^## ", text[start + len(HEADING) :], flags=re.MULTILINE)
        end = len(text) if nxt is None else start + len(HEADING) + nxt.start()
        tail = text[end:]
        text = text[:start] + section + ("\n" + tail if tail else "")
    RESULTS.write_text(text, encoding="utf-8")


def check_forward() -> None:
    """The probe's forward pass against the learner's own predictions, to 1e-5."""
    task = make_task("mackey-glass")
    cases = [("reference (xh alone, no leak)", RuleConfig.reference(), None)]
    # A leaky network whose readout sees [xh, u, 1], with a non-zero B (the exact
    # readouts start at B = 0, which would check nothing).
    leaky = RuleConfig()
    p = Params.init(1, 64, 1, seed=3, spectral_radius=0.95, input_scale=1.0,
                    readout_inputs=True)  # fmt: skip
    p.B[...] = np.random.default_rng(3).normal(0.0, 0.3, p.B.shape).astype(p.B.dtype)
    cases.append(("leak 0.3, [xh, u, 1]", leaky, p))
    for name, config, params in cases:
        learner = OnlineLearner(1, 1, 64 if params else 100, config, seed=0, params=params)
        want = learner.predict(task.test.inputs[0], reset=True).astype(np.float64)
        states, feats = run_states(learner.params, config.leak, task.test.inputs)
        got = own_predictions(learner.params, states, feats)[0]
        dev = float(np.max(np.abs(got - want)))
        print(f"self-check, {name}: max |probe - learner.predict| = {dev:.2e}")
        assert dev <= 1e-5, f"the probe's forward pass differs from the learner's ({dev:.2e})"
    print("self-check passed")


@click.command(help=__doc__.split("\n\n")[0])
@rule_options
@click.option("--hidden", type=int, default=100, show_default=True, help="Hidden units N.")
@click.option("--epochs", type=int, default=20, show_default=True)
@click.option("--seeds", type=int, multiple=True, help="Seeds (repeatable; default 0-4).")
@click.option("--write-results", is_flag=True, help="Write the table into RESULTS.md.")
@click.option("--self-check", is_flag=True, help="Check the forward pass, then exit.")
def main(
    hidden: int, epochs: int, seeds: tuple[int, ...], write_results: bool, self_check: bool,
    **opts: Any,
) -> None:  # fmt: skip
    if self_check:
        check_forward()
        return
    config = rule_config_from_options(opts)
    seeds = seeds or (0, 1, 2, 3, 4)
    head = (
        f"Mackey-Glass 15 ahead, N = {hidden}, {epochs} epochs, {config.name}, "
        f"{describe(config)}. Test MSE; *own*: the learner's readout over every test step; "
        f"*+ ridge*: a ridge readout (λ = {RIDGE:g}) over [xh, u, 1] fitted on the train "
        f"split's states, scored after a {WASHOUT}-step washout."
    )
    print(head, flush=True)
    rows = []
    for seed in seeds:
        rows.append(run_seed(config, hidden, epochs, seed))
        print(table(rows[-1:])[-1], flush=True)
    lines = table(rows)
    print()
    print("\n".join(lines))
    if write_results:
        command = "python benchmarks/readout_probe.py " + shlex.join(sys.argv[1:])
        section = [
            "What the learning rule taught the hidden layer: for the initial and the trained "
            "network, a ridge readout refit on the train split's hidden states and scored on "
            "the test split (docs/design.md §5). The ridge readout always sees [xh, u, 1]. "
            "Ratio > 1: the trained hidden layer is better.",
            "",
            f"Command: `{command}`",
            "",
            head,
            "",
            *lines,
        ]
        replace_section(section)
        print(f"\nwritten to {RESULTS.name}")


def _expand_seeds(argv: list[str]) -> list[str]:
    """``--seeds 0 1 2`` (as the other benchmarks take it) -> ``--seeds 0 --seeds 1 ...``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] != "--seeds":
            out.append(argv[i])
            i += 1
            continue
        i += 1
        while i < len(argv) and re.fullmatch(r"-?\d+", argv[i]):
            out += ["--seeds", argv[i]]
            i += 1
    return out


if __name__ == "__main__":
    main(_expand_seeds(sys.argv[1:]), prog_name="readout_probe.py")
