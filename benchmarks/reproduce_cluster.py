"""Wall time of `reproduce`'s runs on a local Dask cluster against the process pool it replaced.

The same configurations (a slice of a reproduce scale's plan) are run into fresh result
folders, alternately by

- ``pool``: ``concurrent.futures.ProcessPoolExecutor(W)`` and ``as_completed``, costliest
  first: the runner before it moved to Dask (kept here as the baseline), and
- ``dask``: :func:`twinpass.runtime.reproduce.runner.run_all` with a ``LocalCluster`` of W
  single-threaded worker processes, started and stopped inside the timed region, as
  ``twinpass reproduce`` does,

and the median wall time of each over ``--repeats`` is printed with their ratio.

    python benchmarks/reproduce_cluster.py                      # quick scale, copy task
    python benchmarks/reproduce_cluster.py --only mackey-glass --seeds 1 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from twinpass.runtime.cluster import open_client
from twinpass.runtime.reproduce.experiments import plan
from twinpass.runtime.reproduce.runner import RESULTS_FILE, _cost, run_all, run_spec


def run_pool(specs: list, out: Path, workers: int) -> None:
    """The runner as it was: a process pool, the client appending each row."""
    todo = sorted(specs, key=_cost, reverse=True)
    with (out / RESULTS_FILE).open("a") as f, ProcessPoolExecutor(workers) as pool:
        for fut in as_completed([pool.submit(run_spec, s) for s in todo]):
            f.write(json.dumps(fut.result()) + "\n")
            f.flush()


def run_dask(specs: list, out: Path, workers: int) -> None:
    with open_client(workers=workers) as client:
        run_all(specs, out, client=client)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--only", nargs="+", default=["copy"])
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    specs = plan(args.scale, only=tuple(args.only), seeds=args.seeds)
    times: dict[str, list[float]] = {"pool": [], "dask": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, fn in (("pool", run_pool), ("dask", run_dask)):
                out = Path(tmp) / f"{name}-{r}"
                out.mkdir()
                t0 = time.perf_counter()
                fn(specs, out, args.workers)
                times[name].append(time.perf_counter() - t0)
                n = len((out / RESULTS_FILE).read_text().splitlines())
                assert n == len(specs), f"{name} wrote {n} rows for {len(specs)} runs"
                print(f"repeat {r}: {name} {times[name][-1]:.1f} s", flush=True)
    pool, dask = (statistics.median(times[k]) for k in ("pool", "dask"))
    print(
        f"\n{len(specs)} runs ({args.scale}, {', '.join(args.only)}), {args.workers} workers, "
        f"median of {args.repeats}: pool {pool:.1f} s, dask {dask:.1f} s, "
        f"dask / pool {dask / pool:.2f}x"
    )


if __name__ == "__main__":
    main()
