"""Does `twinpass tune` pay? The tuned setting against the default on rows the search never saw.

For each stream, ``twinpass tune --trials T --tune-rows K`` runs as a user would run it (a
subprocess, a local Dask cluster, a fresh SQLite study), then the command's own held-out
score is read back from the file it writes: the MSE of the best setting and of the default,
each run from scratch over the whole stream and scored (causally, as ``stream`` scores) on
the forecasts whose target row comes after the first K rows, with persistence beside them.

Streams (as in benchmarks/peers.py): the built-in Mackey-Glass stream (20,000 rows),
NARMA10 u -> y (20,000 rows, ``--no-target-input``) and WTH WetBulbCelsius 1 h ahead
(all 35,064 rows; skipped without WTH.csv).

    python benchmarks/tune_streams.py                      # 40 trials, K = 5000
    python benchmarks/tune_streams.py --trials 10 --streams mackey-glass
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from twinpass.runtime.tasks import WTH_ENV
from twinpass.runtime.tasks.narma import narma10

ROOT = Path(__file__).resolve().parents[1]
SHARED_WTH = ROOT.parent / "shared" / "data" / "WTH.csv"
STREAMS = ("mackey-glass", "narma10", "wth-1h")


def _wth() -> Path:
    env = os.environ.get(WTH_ENV)
    return Path(env) if env else SHARED_WTH


def stream_args(key: str, work: Path) -> list[str] | None:
    """The source options of ``twinpass tune`` for a stream (None: its data is missing)."""
    if key == "mackey-glass":
        return ["--source", "mackey-glass"]
    if key == "narma10":
        u, y = narma10(20_000, 0)
        path = work / "narma10.csv"
        np.savetxt(path, np.column_stack([u, y]), delimiter=",", header="u,y", comments="")
        return ["--source", f"csv:{path}", "--target", "y", "--no-target-input"]
    if key == "wth-1h":
        wth = _wth()
        if not wth.is_file():
            return None
        return ["--source", f"csv:{wth}", "--target", "WetBulbCelsius"]
    raise SystemExit(f"unknown stream {key!r}: one of {', '.join(STREAMS)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--tune-rows", type=int, default=5_000)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=None, help="local cluster workers")
    ap.add_argument("--streams", nargs="+", default=list(STREAMS), choices=STREAMS)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for key in args.streams:
            src = stream_args(key, work)
            if src is None:
                print(f"{key}: WTH.csv not found (${WTH_ENV}), skipped", file=sys.stderr)
                continue
            out = work / f"{key}.json"
            cmd = [
                sys.executable, "-m", "twinpass.cli.main", "tune", *src,
                "--trials", str(args.trials), "--tune-rows", str(args.tune_rows),
                "--hidden", str(args.hidden), "--out", str(out), "--quiet",
            ]  # fmt: skip
            if args.jobs:
                cmd += ["--jobs", str(args.jobs)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
            t = json.loads(out.read_text())["tuned"]
            best = json.loads(out.read_text())["options"]
            rows.append((key, t, best, wall))
    print(
        f"\n`python benchmarks/tune_streams.py --trials {args.trials} --tune-rows "
        f"{args.tune_rows} --hidden {args.hidden}`\n"
    )
    print("| stream | rows | persistence | default | tuned | tuned / default | wall |")
    print("|---|---|---|---|---|---|---|")
    for key, t, _, wall in rows:
        ratio = t["after_mse"] / t["default_after_mse"]
        print(
            f"| {key} | {t['rows']:,} | {t['persistence_after_mse']:.3g} | "
            f"{t['default_after_mse']:.3g} | {t['after_mse']:.3g} | {ratio:.2f}x | "
            f"{wall:.0f} s |"
        )
    print("\nBest settings:")
    for key, _, best, _ in rows:
        print(
            f"- {key}: "
            + ", ".join(
                f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in sorted(best.items())
            )
        )


if __name__ == "__main__":
    main()
