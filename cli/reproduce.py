"""``twinpass reproduce``: the paper's experiments, tables and figures in one command."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import click

from twinpass.runtime.cluster import n_workers, open_client
from twinpass.runtime.reproduce import experiments as ex
from twinpass.runtime.reproduce import figures
from twinpass.runtime.reproduce.claims import evaluate_claims
from twinpass.runtime.reproduce.memory import METHODS, measure
from twinpass.runtime.reproduce.report import write_report
from twinpass.runtime.reproduce.runner import load_results, run_all
from twinpass.runtime.reproduce.summary import group
from twinpass.runtime.tasks import WTH_ENV

from .display import Reporter
from .options import jobs_option, quiet_option, scheduler_option

MEMORY_FILE = "memory.jsonl"
INVOCATIONS_FILE = "invocations.jsonl"


@click.command()
@click.option(
    "--scale",
    type=click.Choice(list(ex.SCALES)),
    default="quick",
    show_default=True,
    help="quick: about an hour on 2 cores, shows the orderings; full: the paper's scale; "
    "tiny: seconds, checks the machinery only.",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(list(ex.ALL_EXPERIMENTS)),
    help="Run only this experiment (repeatable). The report covers every finished one.",
)
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per configuration.")
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help=f"WTH.csv for the weather and scaling experiments [default: ${WTH_ENV}]; without "
    "it they are skipped and the report says so.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder [default: reproduce-SCALE].",
)
@jobs_option
@scheduler_option
@quiet_option
def reproduce(
    scale: str,
    only: tuple[str, ...],
    seeds: int | None,
    data: str | None,
    out: str | None,
    jobs: int | None,
    scheduler: str | None,
    quiet: bool,
) -> None:
    """Run the paper's experiments and write report.md and PNG figures.

    Every configuration (task x rule x N x seed) is a task on a Dask cluster (a local one
    by default, or --scheduler's) and its result is appended to OUT/results.jsonl as it
    finishes: run the command again and the finished configurations are skipped. A worker
    that dies has its tasks rerun elsewhere. The claims table is computed from the results.

    \b
    Examples:
      twinpass reproduce --scale quick --data WTH.csv --out reproduce-quick
      twinpass reproduce --scale full --data WTH.csv --scheduler tcp://10.0.0.5:8786
    """
    t0 = time.perf_counter()
    data = data or os.environ.get(WTH_ENV) or None
    if data is not None and not Path(data).is_file():
        raise click.BadParameter(
            f"${WTH_ENV} names {data!r}, which is not a file", param_hint="--data"
        )
    out_dir = Path(out or f"reproduce-{scale}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rep = Reporter(quiet=quiet)
    notes = []
    if data is None:
        notes.append(
            "weather and scaling experiments not run: no WTH.csv (--data or "
            f"${WTH_ENV}); claim 2 is then untested"
        )
        skipped = [e for e in only if e in ex.NEEDS_DATA]
        if skipped:
            rep.line(f"skipping {', '.join(skipped)}: it needs --data WTH.csv")
    specs = ex.plan(scale, only=only, data=data, seeds=seeds)
    memory_todo = _memory_plan(scale, only, out_dir)
    total = len(specs) + len(memory_todo)
    started = datetime.now(timezone.utc)
    trained = 0
    failures: list[str] = []
    with open_client(scheduler, workers=jobs) as client, rep.progress("reproduce", total):
        workers = n_workers(client)
        if workers == 0:
            rep.line(f"waiting for a worker to attach to {scheduler} (`dask worker {scheduler}`)")
            client.wait_for_workers(1)
            workers = n_workers(client)
        rep.line(
            f"reproduce --scale {scale}: {len(specs)} training runs, {len(memory_todo)} "
            f"memory probes, {workers} worker(s) "
            f"({'at ' + scheduler if scheduler else 'local'}); results in {out_dir}"
        )

        def on_result(row: dict, skipped: bool) -> None:
            nonlocal trained
            trained += not skipped
            s = row["spec"]
            what = "diverged" if row.get("diverged") else "done"
            status = f"{s['experiment']} {s['variant']} {s['rule']} N={s['hidden']} {what}"
            rep.advance(1, status + (" (cached)" if skipped else ""))

        def on_failure(spec: ex.RunSpec, exc: BaseException) -> None:
            failures.append(f"{spec.key}: {type(exc).__name__}: {exc}")
            rep.advance(1, f"{spec.experiment} {spec.variant} {spec.rule} failed")

        run_all(specs, out_dir, client=client, on_result=on_result, on_failure=on_failure)
        with (out_dir / MEMORY_FILE).open("a") as f:
            for method, length, hidden in memory_todo:
                row = measure(method, length, hidden)
                f.write(json.dumps(row) + "\n")
                f.flush()
                rep.advance(1, f"memory {method} {length:,} steps")

    full_plan = {s.key for s in ex.plan(scale, data=data, seeds=seeds)}
    rows = [r for k, r in load_results(out_dir / "results.jsonl").items() if k in full_plan]
    groups = group(rows)
    memory_rows = _memory_rows(out_dir, scale)
    claims = evaluate_claims(groups, memory_rows)
    names: list[str] = []
    if figures.available():
        names = figures.draw_all(groups, memory_rows, out_dir)
    else:
        notes.append("figures not drawn: matplotlib is missing (pip install 'twinpass[plot]')")
    wall = time.perf_counter() - t0
    invocations = _log_invocation(
        out_dir,
        {
            "started": started.strftime("%Y-%m-%d %H:%M UTC"),
            "scale": scale,
            "jobs": workers,
            "scheduler": scheduler or "local",
            "trained": trained,
            "probes": len(memory_todo),
            "wall_s": round(wall, 1),
        },
    )
    write_report(
        out_dir / "report.md",
        scale=scale,
        groups=groups,
        claims=claims,
        memory_rows=memory_rows,
        invocations=invocations,
        compute_s=sum(r.get("wall_s", 0.0) for r in rows),
        notes=notes,
        figures=names,
    )
    for c in claims:
        rep.line(f"claim {c.number}: {c.verdict} — {c.text}")
    rep.line(f"report: {out_dir / 'report.md'} ({len(names)} figures), {wall / 60:.1f} min")
    if failures:
        for line in failures:
            rep.line(f"failed: {line}")
        raise click.ClickException(
            f"{len(failures)} run(s) failed and were not recorded; run the same command again "
            "to retry them (finished runs are kept)"
        )


def _log_invocation(out_dir: Path, entry: dict) -> list[dict]:
    """Append this invocation to OUT/invocations.jsonl; all of them, oldest first."""
    path = out_dir / INVOCATIONS_FILE
    with path.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _memory_plan(scale: str, only: tuple[str, ...], out_dir: Path) -> list[tuple[str, int, int]]:
    if only and "memory" not in only:
        return []
    done = {(r["method"], r["steps"], r["hidden"]) for r in _read_memory(out_dir)}
    sc = ex.SCALES[scale]
    return [
        (m, n, sc.hidden)
        for m in METHODS
        for n in sc.memory_lengths
        if (m, n, sc.hidden) not in done
    ]


def _read_memory(out_dir: Path) -> list[dict]:
    path = out_dir / MEMORY_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a probe killed mid-write; it is measured again
    return rows


def _memory_rows(out_dir: Path, scale: str) -> list[dict]:
    sc = ex.SCALES[scale]
    return [
        r
        for r in _read_memory(out_dir)
        if r["hidden"] == sc.hidden and r["steps"] in sc.memory_lengths
    ]
