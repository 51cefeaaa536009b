"""``twinpass stream``: continual learning from a live stream of sensor readings.

The network keeps learning, in constant memory, from the built-in Mackey-Glass generator,
a CSV file, stdin or a serial port, predicting a target column ``--horizon`` rows ahead.
Every forecast is made from what was known at the row it was made at, and scored when its
target arrives, against a persistence baseline and the frozen initial network. See
:mod:`twinpass.runtime.streaming` for the framing.
"""

from __future__ import annotations

import os
from typing import Any

import click

from twinpass.core.errors import DivergenceError
from twinpass.runtime.atomic import write_json
from twinpass.runtime.metrics import DEFAULT_ALPHA, MetricsLog, metrics_format
from twinpass.runtime.run import (
    ON_DIVERGENCE,
    ResumeClash,
    device_record,
    fit_rule_to_device,
    open_device,
    resume_stream,
    serial_identity,
)
from twinpass.runtime.run_lock import hold_checkpoint
from twinpass.runtime.sources import open_source, parse_source_spec
from twinpass.runtime.streaming import (
    CHUNK,
    DEFAULT_OUTLIER_Z,
    PREDICTORS,
    StreamForecaster,
    StreamSession,
    stop_on_signals,
)

from .config_file import config_option
from .display import Reporter
from .options import (
    RULE_OPTION_NAMES,
    baud_option,
    cli_wording,
    device_options,
    dtype_option,
    given_options,
    hidden_option,
    is_explicit,
    json_out_option,
    link_retries_option,
    on_divergence_option,
    quiet_option,
    rule_config_from_options,
    rule_options,
    seed_option,
    stream_data_options,
)
from .output_paths import check_output_paths

MACKEY_GLASS_STEPS = 20_000
"""Default length of the built-in stream (the other sources run until they end)."""

DEFAULT_CHECKPOINT_EVERY = 10_000


@click.command()
@config_option
@stream_data_options
@device_options
@rule_options
@hidden_option()
@seed_option
@dtype_option
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Checkpoint file (written atomically every K steps, on SIGINT/SIGTERM and at the end).",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(1),
    default=None,
    help=f"K: steps between checkpoints [default: {DEFAULT_CHECKPOINT_EVERY:,}].",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --checkpoint (bit-identical to a run that never stopped); "
    "starts a new run if the file does not exist yet.",
)
@click.option(
    "--metrics-out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Learning curves: a .csv or .jsonl row every --metrics-every steps.",
)
@click.option(
    "--metrics-every", type=click.IntRange(1), default=100, show_default=True, help="Steps."
)
@click.option(
    "--outlier-z",
    type=click.FloatRange(0, max_open=False),
    default=DEFAULT_OUTLIER_Z,
    show_default=True,
    help="A cell further than this many running standard deviations from its column's "
    "running mean (a sensor glitch such as 1e30) is forecast from but not learned from, "
    "not scored and not absorbed into the normaliser; counted and listed (outlier_rows). "
    "0 turns the bound off.",
)
@click.option(
    "--max-steps",
    type=click.IntRange(0),
    default=None,
    help=f"Stop after this many steps in total, counted from the start of the stream "
    f"[default: {MACKEY_GLASS_STEPS:,} for mackey-glass, otherwise until the input ends].",
)
@json_out_option("the final metrics and the configuration")
@click.option(
    "--chunk-size",
    type=click.IntRange(1),
    default=CHUNK,
    show_default=True,
    help="Rows per compiled block (results do not depend on it).",
)
@baud_option
@on_divergence_option
@link_retries_option
@quiet_option
@click.pass_context
def stream(
    ctx: click.Context,
    source: str,
    columns: list[str] | None,
    target: str | None,
    horizon: int,
    target_input: bool,
    target_mode: str,
    device: str,
    noise_scale: float | None,
    analog_update: str | None,
    hidden: int,
    seed: int,
    dtype: str,
    checkpoint: str | None,
    checkpoint_every: int | None,
    resume: bool,
    metrics_out: str | None,
    metrics_every: int,
    on_bad_row: str,
    outlier_z: float,
    max_steps: int | None,
    json_out: str | None,
    chunk_size: int,
    baud: int,
    on_divergence: str,
    link_retries: int | None,
    quiet: bool,
    **rule_opts: Any,
) -> None:
    """Learn continually from a stream, predicting a column HORIZON rows ahead.

    At each row the network forecasts the target HORIZON rows ahead from what is known at
    that row (weights learned from targets up to it, inputs up to it); the forecast is
    scored when its target arrives (causal prequential evaluation). The running MSE and
    its exponential moving average are shown for the model, for persistence (the last
    known target value) and for the frozen initial network. Inputs and target are
    standardised online from past rows only. Empty cells: a missing input carries its
    last value, a missing target is forecast but not learned or scored (both counted).

    \b
    Examples:
      twinpass stream
      twinpass stream --source csv:sensors.csv --target temp --horizon 6
      sensor-reader | twinpass stream --source - --target temp --on-bad-row skip
      twinpass stream --source serial:/dev/ttyUSB0 --target c0 \\
          --checkpoint run.ckpt --resume --metrics-out curve.csv
    """
    if resume and checkpoint is None:
        raise click.UsageError("--resume needs --checkpoint FILE")
    check_output_paths(checkpoint=checkpoint, metrics_out=metrics_out, json_out=json_out)
    if checkpoint is not None:
        # Held until the command ends, whichever way: a second run on the same checkpoint
        # (a new one or a --resume) is refused, naming this one.
        ctx.with_resource(hold_checkpoint(checkpoint, "twinpass stream"))
    if checkpoint is not None and not resume and os.path.exists(checkpoint):
        raise click.UsageError(
            f"checkpoint {checkpoint!r} exists: add --resume to continue it, or remove it "
            "to start over"
        )
    if metrics_out is not None:
        try:
            metrics_format(metrics_out)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--metrics-out") from None
    try:
        kind, _ = parse_source_spec(source)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--source") from None
    if kind == "mackey-glass" and (columns is not None or target is not None):
        raise click.UsageError("--columns and --target are for csv, stdin and serial sources")
    config = rule_config_from_options(rule_opts)
    report = Reporter(quiet=quiet)

    resuming = resume and os.path.exists(checkpoint or "")
    forecaster: StreamForecaster | None = None
    source_state = None
    dev_record = device_record(device, noise_scale, analog_update)
    if resuming:
        assert checkpoint is not None
        given = given_options(ctx)
        # The column layout is the checkpoint's: one given (here or in --config) must agree.
        given.update({k: v for k, v in (("columns", columns), ("target", target)) if v})
        try:
            # The device is closed when the command ends, whichever way (the end of the
            # source, an error, the checkpoint after SIGINT/SIGTERM): Click closes the
            # context on every exit path, after the summary has been printed. A serial
            # device holds a port and a reader thread.
            resumed = resume_stream(
                checkpoint,
                given,
                device=dev_record,
                dtype=dtype,
                rule=config,
                link_retries=link_retries,
                on_open=lambda d: ctx.call_on_close(d.close),
            )
        except ResumeClash as e:
            raise click.UsageError(str(e)) from None
        forecaster, dev_record = resumed.forecaster, resumed.device_spec
        saved, source_state = resumed.config, resumed.source_state
        if not is_explicit(ctx, "source"):
            source = saved["source"]
        horizon, hidden, seed, dtype = (saved[k] for k in ("horizon", "hidden", "seed", "dtype"))
        metrics_every = forecaster.metrics.every
        columns = target = None  # the checkpoint's column layout applies
    if max_steps is None and parse_source_spec(source)[0] == "mackey-glass":
        max_steps = MACKEY_GLASS_STEPS

    with stop_on_signals() as stop:
        src = open_source(
            source,
            columns=columns,
            target=target,
            on_bad_row=on_bad_row,
            seed=seed,
            baudrate=baud,
            state=source_state,
        )
        try:
            if src.live:
                report.line(f"reading {src.name} (Ctrl-C stops and saves)")
            if not src.start(stop):
                report.line(f"stopped by {stop.reason} before any data arrived; nothing saved")
                return
            cols = src.columns
            if forecaster is None:
                dev, dtype = open_device(
                    device, noise_scale, analog_update, dtype, link_retries=link_retries
                )
                ctx.call_on_close(dev.close)  # as above: on every exit path
                explicit = {k for k in RULE_OPTION_NAMES if is_explicit(ctx, k)}
                config = fit_rule_to_device(config, dev, explicit)
                forecaster = StreamForecaster(
                    len(cols),
                    horizon=horizon,
                    n_hidden=hidden,
                    config=config,
                    seed=seed,
                    dtype=dtype,
                    ema_alpha=DEFAULT_ALPHA,
                    metrics_every=metrics_every,
                    device=dev,
                    target_input=target_input,
                    target_mode=target_mode,
                    outlier_z=outlier_z or None,
                    on_divergence=ON_DIVERGENCE[on_divergence],
                )
            elif len(cols) != forecaster.n_inputs:  # pragma: no cover - layout is saved
                raise click.UsageError("the checkpoint's columns do not match the source")
            learner = forecaster.learner
            run_config = {
                "source": source,
                "source_kind": src.kind,
                "inputs": cols[:-1],
                "target": cols[-1],
                "non_numeric_columns": src.non_numeric,
                "horizon": forecaster.horizon,
                "target_input": forecaster.target_input,
                "target_mode": forecaster.target_mode,
                "label_delay": learner.label_delay,
                "hidden": learner.n_hidden,
                "seed": learner.seed,
                "dtype": learner.dtype,
                "rule": learner.config.to_dict(),
                "rule_name": learner.config.name,
                "device": dev_record["spec"],
                "device_spec": dev_record,
                "device_identity": serial_identity(learner.device),
                "metrics_every": forecaster.metrics.every,
                "ema_alpha": forecaster.metrics.alpha,
            }
            log = (
                MetricsLog(
                    metrics_out,
                    forecaster.metrics.columns,
                    # Its rows count scored forecasts.
                    resume_step=forecaster.scored if resuming else None,
                )
                if metrics_out is not None
                else None
            )
            session = StreamSession(
                forecaster,
                src,
                run_config=run_config,
                checkpoint=checkpoint,
                checkpoint_every=checkpoint_every or DEFAULT_CHECKPOINT_EVERY,
                metrics_log=log,
                chunk_size=chunk_size,
                max_steps=max_steps,
                saved_step=forecaster.steps if resuming else None,
            )
            start_step = forecaster.steps
            _intro(report, forecaster, src, resuming, checkpoint, max_steps)
            total = None if max_steps is None else max(max_steps - start_step, 0)
            try:
                with report.progress("learning", total=total):
                    outcome = session.run(stop, _Progress(report, start_step))
            except DivergenceError as e:
                kept = (
                    f"; the last checkpoint (step {session.saved_step}) is intact"
                    if session.saved_step is not None
                    else ""
                )
                raise DivergenceError(
                    f"{src.name}: {cli_wording(str(e))}{kept}", step=e.step, rule=e.rule
                ) from e
            finally:
                if log is not None:
                    log.close()
        finally:
            src.close()

    summary = {
        **forecaster.summary(),
        "outliers_first": [
            {"row": r, "column": cols[c], "value": v} for r, c, v in forecaster.outliers_first
        ],
        "skipped_rows": src.skipped,
        "skipped_first": [{"line": ln, "reason": r} for ln, r in src.first_skipped],
        "wall_s": outcome.wall_s,
        "steps_per_s": outcome.steps_this_run / outcome.wall_s if outcome.wall_s > 0 else None,
        "steps_this_run": outcome.steps_this_run,
        "resumed_from_step": start_step if resuming else None,
        "stopped_by": outcome.stopped_by,
        "source": src.name,
        "columns": cols[:-1],
        "target": cols[-1],
        "inputs": cols if forecaster.target_input else cols[:-1],
        "horizon": forecaster.horizon,
        "non_numeric_columns": src.non_numeric,
        "checkpoint": checkpoint,
        "checkpoint_step": outcome.checkpoint_step,
        "config": run_config,
    }
    _summarise(report, summary, learner.config.name, learner.n_hidden)
    if json_out is not None:
        write_json(json_out, summary)


class _Progress:
    """Feeds the reporter step increments and a status line after each block."""

    def __init__(self, report: Reporter, start: int) -> None:
        self.report = report
        self.shown = start

    def __call__(self, f: StreamForecaster) -> None:
        self.report.advance(f.steps - self.shown, _status(f))
        self.shown = f.steps


def _status(f: StreamForecaster) -> str:
    ema = f.metrics.ema_mse()
    if f.scored == 0:
        return "waiting for rows" if f.steps == 0 else f"step {f.steps:,}  nothing scored yet"
    return (
        f"step {f.steps:,}  EMA MSE: model {ema['model']:.3g}  persistence "
        f"{ema['persistence']:.3g}  initial {ema['initial']:.3g}"
    )


def _intro(
    report: Reporter,
    f: StreamForecaster,
    src: Any,
    resuming: bool,
    checkpoint: str | None,
    max_steps: int | None,
) -> None:
    ln = f.learner
    cols = src.columns
    if f.target_input:
        inputs = "other inputs: " + (", ".join(cols[:-1]) or "none besides the target")
    else:
        inputs = "inputs: " + ", ".join(cols[:-1]) + " (not the target)"
    mode = "; learning its change (delta)" if f.target_mode == "delta" else ""
    report.line(
        f"{ln.config.name} N={ln.n_hidden} on {src.name}: predicting {cols[-1]!r} "
        f"{f.horizon} row{'s' if f.horizon > 1 else ''} ahead{mode}; {inputs}; "
        f"lr={ln.config.lr:g}, seed={ln.seed}, device {ln.device.info().name}",
    )
    if src.non_numeric:
        report.line(f"left out (not numeric): {', '.join(src.non_numeric)}")
    if resuming:
        report.line(f"resumed from {checkpoint} at step {f.steps:,}")
    if max_steps is not None:
        report.line(f"stopping after step {max_steps:,}")


def _summarise(report: Reporter, s: dict[str, Any], rule_name: str, hidden: int) -> None:
    names = {
        "model": f"model ({rule_name}, N={hidden})",
        "persistence": "persistence (y at row t)",
        "initial": "initial model (frozen)",
    }
    keys = {
        "model": ("mse", "ema_mse"),
        "persistence": ("persistence_mse", "persistence_ema_mse"),
        "initial": ("initial_model_mse", "initial_model_ema_mse"),
    }
    rows = [[names[p], s[keys[p][0]], s[keys[p][1]]] for p in PREDICTORS]
    h = s["horizon"]
    title = (
        f"{s['scored']:,} forecasts of {s['target']!r} {h} row{'s' if h > 1 else ''} ahead on "
        f"{s['source']}, each made at row t from rows up to t and scored at row t+{h} "
        "(MSE in the target's units)"
    )
    report.table(
        title,
        ["predictor", "running MSE", f"EMA MSE (alpha {s['ema_alpha']:g})"],
        rows,
    )
    rate = f"{s['steps_per_s']:,.0f} steps/s" if s["steps_per_s"] else "-"
    report.line(
        f"{s['rows']:,} rows: {s['steps']:,} forecasts due, {s['scored']:,} scored, "
        f"{s['unlabelled_rows']:,} rows with the target missing (not learned), "
        f"{s['carried_cells']:,} input cells carried, {s['skipped_rows']:,} rows skipped; "
        f"this run: {s['steps_this_run']:,} steps in {s['wall_s']:.1f} s ({rate})",
    )
    if s["non_numeric_columns"]:
        report.line(f"left out (not numeric): {', '.join(s['non_numeric_columns'])}")
    if s["skipped_rows"]:
        lines = ", ".join(str(x["line"]) for x in s["skipped_first"])
        more = ", ..." if s["skipped_rows"] > len(s["skipped_first"]) else ""
        first = s["skipped_first"][0]
        report.line(
            f"skipped rows at lines {lines}{more} (line {first['line']}: {first['reason']})"
        )
    if s["outlier_rows"]:
        first = s["outliers_first"][0]
        more = ", ..." if s["outlier_rows"] > len(s["outliers_first"]) else ""
        rows = ", ".join(str(o["row"]) for o in s["outliers_first"])
        report.line(
            f"{s['outlier_rows']:,} rows with outliers (beyond {s['outlier_z']:g} running "
            f"standard deviations; forecast from, not learned): data rows {rows}{more} "
            f"(row {first['row']}: {first['column']} = {first['value']:g})"
        )
    stopped = s["stopped_by"]
    if s["checkpoint"] is not None and s["checkpoint_step"] is not None:
        report.line(
            f"stopped by {stopped}; checkpoint {s['checkpoint']} at step "
            f"{s['checkpoint_step']:,} (continue with --resume)",
        )
    else:
        report.line(f"stopped by {stopped}")
