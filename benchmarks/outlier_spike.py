"""One extreme value against ``twinpass stream``: the running MSE after a single 1e30 spike.

A CSV of noisy sines (an input ``x`` and a target ``temp`` that leads it) is streamed by the
real command line three times per spiked column: without the spike, with one 1e30 at row
``--spike-row`` under the default outlier bound, and with the bound off (``--outlier-z 0``,
the behaviour before it existed). The score is the model's MSE over the forecasts scored
after the spike row (from the per-step metrics file), as a ratio to the spike-free run's
MSE over the same rows. The bar (issue 14): within 1.1x.

    python benchmarks/outlier_spike.py                  # 2,000 rows, spike at row 1,000
    python benchmarks/outlier_spike.py --rows 5000 --spike-row 2500 --hidden 100
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def write_csv(path: Path, rows: int, spike: tuple[str, int] | None, seed: int = 0) -> None:
    """Noisy sines, period 50; ``temp`` leads ``x`` by 3 rows; ``spike``: (column, row)."""
    g = np.random.default_rng(seed)
    t = np.arange(rows)
    x = np.sin(2 * np.pi * t / 50) + 0.1 * g.standard_normal(rows)
    y = np.sin(2 * np.pi * (t + 3) / 50) + 0.1 * g.standard_normal(rows)
    with open(path, "w") as f:
        f.write("x,temp\n")
        for i in range(rows):
            a, b = f"{x[i]:.6f}", f"{y[i]:.6f}"
            if spike is not None and i == spike[1]:
                a, b = ("1e30", b) if spike[0] == "x" else (a, "1e30")
            f.write(f"{a},{b}\n")


def stream(csv_path: Path, out: Path, *extra: str) -> tuple[np.ndarray, dict] | None:
    """Run ``twinpass stream`` on ``csv_path``; (per-step model SSE so far, its JSON), or
    None if the run failed (its error is printed)."""
    metrics, result = out.with_suffix(".metrics.csv"), out.with_suffix(".json")
    done = subprocess.run(
        [
            _twinpass(),
            "stream",
            "--source",
            f"csv:{csv_path}",
            "--target",
            "temp",
            "--metrics-out",
            str(metrics),
            "--metrics-every",
            "1",
            "--json-out",
            str(result),
            "-q",
            *extra,
        ],
        check=False,
    )
    if done.returncode != 0:
        return None
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    sse = np.array([int(r["step"]) * float(r["model_mse"]) for r in rows])
    return sse, json.loads(result.read_text())


def _twinpass() -> str:
    exe = Path(sys.executable).parent / "twinpass"
    return str(exe) if exe.exists() else "twinpass"


def mse_last(sse: np.ndarray, n: int) -> float:
    """The MSE of the last ``n`` scored forecasts."""
    return float((sse[-1] - sse[-n - 1]) / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--spike-row", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=100)
    args = ap.parse_args()
    common = ["--hidden", str(args.hidden)]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_csv(tmp / "clean.csv", args.rows, None)
        ran = stream(tmp / "clean.csv", tmp / "clean", *common)
        assert ran is not None, "the spike-free run failed"
        clean_sse = ran[0]
        # Horizon 1: forecast k is scored at data row k, so the rows after the spike row
        # are the last rows - 1 - spike_row forecasts of every run.
        n_after = args.rows - 1 - args.spike_row
        clean = mse_last(clean_sse, n_after)
        print(f"rows {args.rows}, spike 1e30 at data row {args.spike_row}, N={args.hidden}")
        print(f"spike-free: model MSE after row {args.spike_row}: {clean:.4g}")
        for column in ("temp", "x"):
            write_csv(tmp / f"{column}.csv", args.rows, (column, args.spike_row))
            for label, extra in (("default bound", []), ("--outlier-z 0", ["--outlier-z", "0"])):
                out = tmp / f"{column}{len(extra)}"
                ran = stream(tmp / f"{column}.csv", out, *common, *extra)
                if ran is None:
                    print(f"spike in {column:4s} {label:14s}: the run failed (exit status 1)")
                    continue
                sse, res = ran
                after = mse_last(sse, n_after)
                print(
                    f"spike in {column:4s} {label:14s}: MSE after {after:.4g}, "
                    f"ratio {after / clean:.4g}, outlier_rows {res['outlier_rows']}"
                )


if __name__ == "__main__":
    main()
