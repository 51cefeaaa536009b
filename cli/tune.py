"""``twinpass tune``: search a stream's learning settings on a Dask cluster with Optuna.

The search itself is :mod:`twinpass.runtime.tune`; this command reads the stream, opens
the cluster and the study, shows progress, scores the best setting and the default on the
rows the search never saw, and writes the best setting for ``--config``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import numpy as np

from twinpass.core.errors import ConfigError, DataError
from twinpass.runtime.atomic import write_json
from twinpass.runtime.cluster import n_workers, open_client
from twinpass.runtime.sources import open_source, parse_source_spec
from twinpass.runtime.tune import (
    TrialEvent,
    TuneProblem,
    best_setting,
    config_file,
    finished,
    held_out_mse,
    open_study,
    search,
    searched,
)

from .display import Reporter
from .options import (
    dtype_option,
    hidden_option,
    is_explicit,
    jobs_option,
    quiet_option,
    rule_config_from_options,
    rule_options,
    scheduler_option,
    seed_option,
    stream_data_options,
)

MACKEY_GLASS_ROWS = 20_000
"""Rows of the built-in stream tuned and scored on (as `stream`'s default length)."""


def read_stream(
    source: str,
    columns: list[str] | None,
    target: str | None,
    on_bad_row: str,
    seed: int,
    max_rows: int | None,
) -> tuple[np.ndarray, str]:
    """All rows of a finite source (at most ``max_rows``), target last, and its name."""
    kind, _ = parse_source_spec(source)
    if kind in ("stdin", "serial"):
        raise ConfigError(
            f"--source {source}: tune replays the stream once per trial, so it needs a file "
            "(csv:PATH) or the built-in mackey-glass stream; save the live stream first"
        )
    if kind == "mackey-glass" and max_rows is None:
        max_rows = MACKEY_GLASS_ROWS
    src = open_source(source, columns=columns, target=target, on_bad_row=on_bad_row, seed=seed)
    try:
        src.start()
        blocks = []
        n = 0
        while max_rows is None or n < max_rows:
            want = 65_536 if max_rows is None else min(65_536, max_rows - n)
            block = src.read(want)
            blocks.append(block.values)
            n += len(block.values)
            if block.error is not None:
                raise block.error
            if block.eof:
                break
        return np.concatenate(blocks) if blocks else np.empty((0, 1)), src.name
    finally:
        src.close()


@click.command()
@stream_data_options
@rule_options
@hidden_option()
@seed_option
@dtype_option
@click.option(
    "--max-rows",
    type=click.IntRange(1),
    default=None,
    help=f"Rows read from the source [default: {MACKEY_GLASS_ROWS:,} for mackey-glass, "
    "otherwise all].",
)
@click.option(
    "--trials",
    type=click.IntRange(1),
    default=40,
    show_default=True,
    help="Trials in the study, counting those of an earlier, interrupted tune.",
)
@click.option(
    "--tune-rows",
    type=click.IntRange(100),
    default=5_000,
    show_default=True,
    help="K: trials are scored on the first K rows (causal, prequential); the best setting "
    "is then scored on the rows after K, which the search never saw.",
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL [default: sqlite:///OUT.db beside --out]; a tune run again on "
    "the same storage resumes its study.",
)
@click.option("--study", default=None, help="Study name [default: from the source and options].")
@scheduler_option
@jobs_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="tuned.json",
    show_default=True,
    help="Where the best setting goes: read it with `twinpass stream --config OUT`.",
)
@quiet_option
@click.pass_context
def tune(
    ctx: click.Context,
    source: str,
    columns: list[str] | None,
    target: str | None,
    horizon: int,
    target_input: bool,
    target_mode: str,
    hidden: int,
    seed: int,
    dtype: str,
    on_bad_row: str,
    max_rows: int | None,
    trials: int,
    tune_rows: int,
    storage: str | None,
    study: str | None,
    scheduler: str | None,
    jobs: int | None,
    out: str,
    quiet: bool,
    **rule_opts: Any,
) -> None:
    """Search the learning rates, sigma, spectral radius, input scale, leak and the readout's
    forgetting factor for a stream, on a Dask cluster.

    Trials are scored on the first --tune-rows rows exactly as `twinpass stream` scores
    (causal, prequential MSE); hopeless trials are pruned part-way. The best setting and
    the default are then scored on the rows after them. The best setting is written to
    --out, for `twinpass stream --config OUT` and `twinpass train --config OUT`.

    \b
    Examples:
      twinpass tune --trials 40
      twinpass tune --source csv:WTH.csv --target WetBulbCelsius --tune-rows 5000
      twinpass tune --source csv:WTH.csv --target WetBulbCelsius --scheduler tcp://host:8786
    """
    # The rule options given here go into --out too, so that the setting runs the same rule.
    given = {k: v for k, v in rule_opts.items() if is_explicit(ctx, k)}
    base = rule_config_from_options(rule_opts)
    out_dir = Path(out).resolve().parent
    if not out_dir.is_dir():
        raise click.BadParameter(f"{out}: the folder {out_dir} does not exist", param_hint="--out")
    if storage is None:
        storage = f"sqlite:///{Path(out).with_suffix('.db')}"
    rep = Reporter(quiet=quiet)
    data, name = read_stream(source, columns, target, on_bad_row, seed, max_rows)
    if len(data) <= tune_rows + horizon:
        raise DataError(
            f"{name}: {len(data)} rows, but --tune-rows {tune_rows} leaves none after them to "
            f"score the best setting on (horizon {horizon}): lower --tune-rows"
        )
    problem = TuneProblem(
        n_inputs=data.shape[1],
        horizon=horizon,
        n_hidden=hidden,
        base=base,
        seed=seed,
        dtype=dtype,
        target_input=target_input,
        target_mode=target_mode,
        tune_rows=tune_rows,
    )
    study_name = study or (
        f"{name}|target={target or '-'}|h={horizon}|N={hidden}|K={tune_rows}|seed={seed}"
        f"|{base.name}|{target_mode}{'' if target_input else '|exogenous'}"
    )
    st = open_study(storage, study_name, seed)
    before = finished(st)
    rep.line(
        f"tune {name}: {len(data):,} rows, trials on the first {tune_rows:,}; searching "
        f"{', '.join(searched(base))}; study {study_name!r} in {storage} "
        f"({before} of {trials} trials done before)"
    )
    with open_client(scheduler, workers=jobs) as client, rep.progress("tune", trials):
        workers = n_workers(client)
        if workers == 0:
            rep.line(f"waiting for a worker to attach to {scheduler}")
            client.wait_for_workers(1)
            workers = n_workers(client)
        if before:
            rep.advance(before)

        def on_trial(e: TrialEvent) -> None:
            value = "-" if e.value is None else f"{e.value:.4g}"
            best = "-" if e.best_value is None else f"{e.best_value:.4g} (trial {e.best_number})"
            rep.advance(1, f"trial {e.number} {e.state} {value}; best {best}", plain_every_s=1e9)
            rep.line(
                f"trial {e.number}: {e.state}, mse {value}; {e.done}/{e.total} done, best {best}"
            )

        search(client, st, problem, data, trials, in_flight=workers, on_trial=on_trial)
        setting, value, number = best_setting(st)
        full = client.scatter(data, broadcast=True)
        best_f = client.submit(held_out_mse, problem, setting, full, pure=False)
        default_f = client.submit(held_out_mse, problem, {}, full, pure=False)
        best_scores, default_scores = client.gather([best_f, default_f])
    fixed = {**given, "hidden": hidden}
    tuned = {
        "horizon": horizon,
        "target_mode": target_mode,
        "target_input": target_input,
        "source": name,
        "target": target,
        "study": study_name,
        "storage": storage,
        "trials": finished(st),
        "best_trial": number,
        "tune_rows": tune_rows,
        "rows": len(data),
        "tune_mse": value,
        "after_mse": best_scores["after_mse"],
        "default_after_mse": default_scores["after_mse"],
        "persistence_after_mse": best_scores["after_persistence"],
    }
    try:
        write_json(out, config_file(setting, fixed, tuned))
    except OSError as e:
        raise click.ClickException(f"cannot write {out}: {e.strerror}") from None
    rep.table(
        f"rows after the first {tune_rows:,} (never seen by the search): MSE",
        ("setting", "tuning rows", "rows after"),
        [
            ("tuned", best_scores["tune_mse"], best_scores["after_mse"]),
            ("default", default_scores["tune_mse"], default_scores["after_mse"]),
            ("persistence", None, best_scores["after_persistence"]),
        ],
    )
    rep.line("best setting: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(setting.items())))
    rep.line(f"written to {out}: use it with `twinpass stream --config {os.fspath(out)}`")
