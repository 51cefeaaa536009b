"""The truncated-BPTT baseline at its defaults, over seeds: does it learn, does it diverge?

Issue 12 (item 6): the per-step sliding window with SGD diverged on Mackey-Glass, so the
"close to BP" claims had no baseline. This runs ``twinpass train --rule bp -K 20`` (chunked
windows, Adam, global norm clipping at 1.0: the bp defaults) for several seeds on the
paper's Mackey-Glass task and, when the weather data is there, on the 1 h weather task, and
prints one row per (task, lr): the final test MSE of every seed and whether any diverged.

    python benchmarks/bptt_baseline.py                       # lr 1e-3, seeds 0-4
    python benchmarks/bptt_baseline.py --lr 1e-3 --lr 3e-3 --lr 1e-2   # the lr sweep
    python benchmarks/bptt_baseline.py --extra=--bptt-mode=sliding     # any other option

Each run is a separate ``twinpass train`` process (the command a user types), one at a time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

#: Relative to the repository's root; the weather rows are skipped when it is absent.
DEFAULT_WEATHER = Path("..") / "shared" / "data" / "WTH.csv"


def run_one(task_args: list[str], seed: int, lr: float, extra: list[str], out: Path) -> dict:
    """One ``twinpass train`` run; its final test MSE, or why it failed."""
    cmd = [
        sys.executable, "-c", "from twinpass.cli.main import main; main()", "train",
        *task_args, "--rule", "bp", "-K", "20",
        "--lr", f"{lr:g}", "--seed", str(seed), "--json-out", str(out), *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        return {"seed": seed, "test_mse": None, "error": last}
    data = json.loads(out.read_text())
    rule = data["config"]["rule"]
    epochs = data["epochs"]
    return {
        "seed": seed,
        "test_mse": epochs[-1]["test_mse"],
        "best": min(e["test_mse"] for e in epochs[1:]),
        "network": f"leak {rule['leak']:g}, readout inputs "
        + ("on" if rule["readout_inputs"] else "off"),
        "wall_s": data["wall_s"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--lr", type=float, action="append", help="repeat for a sweep [1e-3]")
    ap.add_argument("--epochs", type=int, default=20, help="Mackey-Glass epochs [20]")
    ap.add_argument("--weather-epochs", type=int, default=3)
    ap.add_argument("--weather", type=Path, default=DEFAULT_WEATHER, help="WTH.csv")
    ap.add_argument("--extra", action="append", default=[], help="more train options")
    ap.add_argument("--only", choices=["mackey-glass", "weather"], action="append")
    args = ap.parse_args()
    tasks = {
        "mackey-glass": ["--task", "mackey-glass", "--epochs", str(args.epochs)],
        "weather 1 h": [
            "--task",
            "weather",
            "--data",
            str(args.weather),
            "--horizon",
            "1",
            "--epochs",
            str(args.weather_epochs),
        ],
    }
    if not args.weather.exists():
        print(f"({args.weather} not found: weather skipped)")
        del tasks["weather 1 h"]
    if args.only:
        tasks = {k: v for k, v in tasks.items() if k.split()[0] in args.only}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, task_args in tasks.items():
            for lr in args.lr or [1e-3]:
                results = []
                for seed in args.seeds:
                    res = run_one(task_args, seed, lr, args.extra, Path(tmp) / "run.json")
                    results.append(res)
                    shown = (
                        "diverged/failed" if res["test_mse"] is None else f"{res['test_mse']:.3e}"
                    )
                    print(f"  {name} lr {lr:g} seed {seed}: {shown}", file=sys.stderr, flush=True)
                rows.append((name, lr, results))
    print("| task | lr | median test MSE | per seed (final) | best epoch, per seed | failed |")
    print("|---|---|---|---|---|---|")
    for name, lr, results in rows:
        ok = [r for r in results if r["test_mse"] is not None]
        med = f"{statistics.median(r['test_mse'] for r in ok):.2e}" if ok else "-"
        final = ", ".join("-" if r["test_mse"] is None else f"{r['test_mse']:.1e}" for r in results)
        best = ", ".join(f"{r['best']:.1e}" for r in ok)
        failed = len(results) - len(ok)
        print(f"| {name} | {lr:g} | {med} | {final} | {best} | {failed} |")
    for name, lr, results in rows:
        for r in results:
            if r["test_mse"] is None:
                print(f"{name} lr {lr:g} seed {r['seed']}: {r['error']}")
    networks = {r["network"] for _, _, results in rows for r in results if "network" in r}
    print(f"network: {'; '.join(sorted(networks))}")


if __name__ == "__main__":
    main()
