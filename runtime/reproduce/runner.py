"""Train the configurations of a plan and keep every result in a JSON-lines file.

Each finished configuration appends one line (its spec, per-epoch curves, whether and where
it diverged, its wall time) and is flushed at once, so an interrupted command loses only
the configurations still running, and running it again skips every key already in the
file. The runs are tasks on a Dask cluster (:mod:`twinpass.runtime.cluster`); a
configuration's result does not depend on which worker ran it or in what order (its seed
fixes everything).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twinpass.core.errors import DataError, DivergenceError
from twinpass.runtime.learner import OnlineLearner
from twinpass.runtime.tasks import Task, make_task
from twinpass.runtime.training import EpochRecord, train

from .correlation import decorrelation_loss, hidden_states
from .experiments import RunSpec

if TYPE_CHECKING:
    from distributed import Client

RESULTS_FILE = "results.jsonl"
MAX_WEIGHT = 1e4  # a weight beyond this counts as divergence, as in benchmarks/stability.py


@lru_cache(maxsize=8)
def _task(name: str, frozen_kwargs: tuple[tuple[str, Any], ...]) -> Task:
    return make_task(name, **dict(frozen_kwargs))


def run_spec(spec: RunSpec) -> dict[str, Any]:
    """Train one configuration; its result row (never raises for a diverging run)."""
    task = _task(spec.task, tuple(sorted(spec.task_kwargs.items())))
    n_in, n_out = task.train.inputs.shape[2], task.train.targets.shape[2]
    learner = OnlineLearner(
        n_in, n_out, spec.hidden, spec.config(), seed=spec.seed, max_weight=MAX_WEIGHT
    )
    curve: list[dict[str, Any]] = []

    def on_epoch(rec: EpochRecord) -> None:
        row = rec.to_dict()
        if spec.record_correlation:
            states = hidden_states(learner.params, task.test.inputs)
            row["decorrelation_loss"] = decorrelation_loss(states)
        curve.append(row)

    t0 = time.perf_counter()
    row: dict[str, Any] = {"key": spec.key, "spec": spec.to_dict()}
    try:
        train(learner, task, spec.epochs, on_epoch=on_epoch)
        row.update(diverged=False, diverged_at_step=None)
    except DivergenceError as exc:
        row.update(diverged=True, diverged_at_step=exc.step)
    row.update(curve=curve, wall_s=time.perf_counter() - t0)
    return row


def load_results(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Result rows by key; a torn last line (a killed run) is ignored, anything else raises."""
    path = Path(path)
    rows: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return rows
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines):  # the line being written when the process was killed
                continue
            raise DataError(f"{path}, line {i}: not a JSON result row ({exc.msg})") from None
        if not isinstance(row, dict) or "key" not in row:
            raise DataError(f"{path}, line {i}: a result row needs a 'key'")
        rows[row["key"]] = row
    return rows


def _cost(spec: RunSpec) -> float:
    """A rough relative cost, to start the longest runs first."""
    factor = {"WP": 12.0, "BPTT-K20": 10.0, "DANP": 3.0, "RTRL": 40.0, "e-prop": 3.0}.get(
        spec.rule, 1.0
    )
    steps = {"weather": 33_600, "copy": 1_600}.get(spec.task, 5_000)
    return spec.epochs * steps * (spec.hidden**2 + 2_000) * factor


def run_all(
    specs: Iterable[RunSpec],
    out_dir: str | os.PathLike[str],
    *,
    client: Client | None = None,
    on_result: Callable[[dict[str, Any], bool], None] | None = None,
    on_failure: Callable[[RunSpec, BaseException], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every spec not yet in ``out_dir``'s results file; return all rows by key.

    With a Dask ``client`` (:func:`twinpass.runtime.cluster.open_client`) the runs are
    tasks on its workers, the costliest first; without one they run here, one after the
    other. This process alone appends to the results file, each row as its run finishes,
    so a row is never written twice, and a worker that dies has its runs rerun by Dask.
    ``on_result(row, skipped)`` is called for each spec, as it finishes or is skipped;
    ``on_failure(spec, error)`` for a run that failed for good (its worker kept dying, or
    it raised): it is left out of the file, so running the command again retries it. Without
    ``on_failure`` the first such error is raised.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    _drop_torn_tail(path)
    rows = load_results(path)
    todo = []
    for spec in specs:
        if spec.key in rows:
            if on_result is not None:
                on_result(rows[spec.key], True)
        else:
            todo.append(spec)
    todo.sort(key=_cost, reverse=True)
    with path.open("a") as f:

        def keep(row: dict[str, Any]) -> None:
            if row["key"] in rows:  # a task Dask ran twice: the first result stands
                return
            f.write(json.dumps(row) + "\n")
            f.flush()
            rows[row["key"]] = row
            if on_result is not None:
                on_result(row, False)

        def failed(spec: RunSpec, exc: BaseException) -> None:
            if on_failure is None:
                raise exc
            on_failure(spec, exc)

        if client is None:
            for spec in todo:
                try:
                    keep(run_spec(spec))
                except Exception as exc:
                    failed(spec, exc)
            return rows
        from distributed import as_completed

        # pure=False: a rerun of the command must train again what it did not keep.
        # priority: the longest runs first, so that the last minutes are not one long run.
        futures = {
            client.submit(run_spec, spec, pure=False, priority=len(todo) - i): spec
            for i, spec in enumerate(todo)
        }
        for fut in as_completed(futures):
            spec = futures[fut]
            try:
                keep(fut.result())
            except Exception as exc:  # KilledWorker, or a bug in one configuration
                failed(spec, exc)
            fut.release()
    return rows


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line without its newline (a killed write) so appends start clean."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(cut)
