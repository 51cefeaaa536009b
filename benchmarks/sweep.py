"""What the resumable benchmark sweeps share (``stability.py``, ``analog.py``), and the
configuration their recorded results were measured with (:func:`paper_era`).

A sweep's results file holds one JSON line per finished run; a rerun reads it, runs only
what is missing, in worker processes, and appends each run as it finishes, so an
interrupted sweep loses only the runs in flight.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

#: What a BPTT baseline was before issue 12 changed its defaults (chunked windows, Adam,
#: clipping 1): plain SGD through one sliding window, no clipping.
_PAPER_ERA_BP = {"optimizer": "sgd", "bptt_mode": "sliding", "clip": None}


def paper_era(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` on the paper's network, as RuleConfig's defaults were until issue 12 (the
    learner's readout, leak and guard became the defaults then): the benchmarks of ANP's
    hazards (stability, tuning, resynchronisation, analog) were recorded with it and keep
    measuring it. Fields in ``spec`` win."""
    from twinpass.runtime.config import PAPER_NETWORK

    base = dict(PAPER_NETWORK)
    if spec.get("rule") == "bp":
        base.update(_PAPER_ERA_BP)
    return {**base, **spec}


def read_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a results file (none if it does not exist yet)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_pending(
    run_one: Callable[..., dict[str, Any]],
    todo: Sequence[tuple],
    out: str,
    jobs: int,
    rows: list[dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
) -> None:
    """Run ``run_one(*job)`` for every job in worker processes; append rows as they finish.

    ``describe(row)`` names the run in the progress line (the outcome is added to it).
    """
    with ProcessPoolExecutor(jobs) as pool, open(out, "a") as f:
        futures = [pool.submit(run_one, *job) for job in todo]
        for fut in as_completed(futures):
            row = fut.result()
            rows.append(row)
            f.write(json.dumps(row) + "\n")
            f.flush()
            status = (
                f"diverged at step {row['diverged_at_step']}"
                if row["diverged"]
                else f"test MSE {row['final_test_mse']:.2e}"
            )
            print(f"{describe(row)} {status} ({row['wall_s']:.0f} s)", flush=True)
