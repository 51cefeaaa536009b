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
from twinpass.devices.serial import SerialDevice
from twinpass.runtime.atomic import write_json
from twinpass.runtime.metrics import DEFAULT_ALPHA, MetricsLog, metrics_format
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
    ON_DIVERGENCE_CHOICES,
    RULE_OPTION_NAMES,
    baud_option,
    cli_wording,
    device_from_options,
    device_options,
    device_spec_record,
    dtype_option,
    fit_rule_to_device,
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
    dev_record = device_spec_record(device, noise_scale, analog_update)
    if resuming:
        assert checkpoint is not None
        saved_dev = _saved_device(checkpoint)
        given = [k for k in ("device", "noise_scale", "analog_update") if is_explicit(ctx, k)]
        moved = given and saved_dev != dev_record and _both_serial(saved_dev, dev_record)
        if given and saved_dev != dev_record and not moved:
            raise click.UsageError(
                f"the checkpoint was made on the device {saved_dev}: drop --device, "
                "--noise-scale and --analog-update to continue it"
            )
        if not moved:
            dev_record = saved_dev
        dev, _ = device_from_options(
            dev_record["spec"],
            dev_record["noise_scale"],
            dev_record["analog_update"],
            dtype,
            link_retries=link_retries,
        )
        # Closed when the command ends, whichever way (the end of the source, an error, the
        # checkpoint after SIGINT/SIGTERM): Click closes the context on every exit path, after
        # the summary has been printed. A serial device holds a port and a reader thread.
        ctx.call_on_close(dev.close)
        if moved:  # the same device on another port path (a USB adapter re-plugged)?
            _check_same_serial_device(checkpoint, saved_dev, dev)
        forecaster, run_meta = StreamForecaster.load(checkpoint, device=dev)
        saved = run_meta.get("config", {})
        source_state = run_meta.get("source")
        _check_resume(ctx, saved, source, columns, target, horizon, hidden, seed, dtype, config)
        _check_resume_target(ctx, forecaster, target_input, target_mode)
        _check_resume_metrics(ctx, saved, metrics_every)
        _check_resume_outliers(ctx, forecaster, outlier_z)
        if is_explicit(ctx, "on_divergence"):  # how to react, not what was learned
            forecaster.learner.on_divergence = ON_DIVERGENCE_CHOICES[on_divergence]
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
                dev, dtype = device_from_options(
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
                    on_divergence=ON_DIVERGENCE_CHOICES[on_divergence],
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
                "device_identity": _serial_identity(learner.device),
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


def _both_serial(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return str(a["spec"]).startswith("serial:") and str(b["spec"]).startswith("serial:")


def _serial_identity(dev: Any) -> dict[str, Any] | None:
    """What tells a serial device apart after its model is loaded: board, firmware and the
    hash of its active model (None for the other devices)."""
    if not isinstance(dev, SerialDevice):
        return None
    hello = dev.link.hello()  # a fresh look: the load deployed this run's model
    return {
        "board": hello.board,
        "fw": hello.fw,
        "model_hash": hello.model_hash.hex() if hello.model_hash else None,
    }


def _check_same_serial_device(path: str, saved_dev: dict[str, Any], dev: SerialDevice) -> None:
    """A resume on another port path continues only on the device the run was on: the same
    board and firmware, holding the model the run loaded."""
    from twinpass.runtime.checkpoint import load_checkpoint

    meta = load_checkpoint(path).meta
    want = meta.get("user", {}).get("run", {}).get("config", {}).get("device_identity")
    hello = dev.link.hello_info
    assert hello is not None
    have = {
        "board": hello.board,
        "fw": hello.fw,
        "model_hash": hello.model_hash.hex() if hello.model_hash else None,
    }
    if not want or want != have or have["model_hash"] is None:
        raise click.UsageError(
            f"the checkpoint was made on {saved_dev['spec']}; the device on "
            f"{dev.port} is not the same one (it holds "
            f"{have['board']} fw {have['fw']}, model {str(have['model_hash'])[:16]}; the run "
            f"was on {(want or {}).get('board')} fw {(want or {}).get('fw')}, model "
            f"{str((want or {}).get('model_hash'))[:16]}): drop --device to continue on "
            f"{saved_dev['spec']}"
        )


def _saved_device(path: str) -> dict[str, Any]:
    """The device a stream checkpoint was made on (older ones: the host)."""
    from twinpass.runtime.checkpoint import load_checkpoint

    meta = load_checkpoint(path).meta
    rec = meta.get("user", {}).get("run", {}).get("config", {}).get("device_spec")
    if rec is None:
        return device_spec_record(str(meta.get("device", "host")), None, None)
    return dict(rec)


def _check_resume(
    ctx: click.Context,
    saved: dict[str, Any],
    source: str,
    columns: list[str] | None,
    target: str | None,
    horizon: int,
    hidden: int,
    seed: int,
    dtype: str,
    config: Any,
) -> None:
    """Options given again on --resume must agree with the checkpoint's."""
    clashes = []
    if is_explicit(ctx, "source"):
        kind, _ = parse_source_spec(source)
        if kind != saved.get("source_kind"):
            clashes.append(f"--source {saved.get('source')}")
    wanted_target = target if target is not None else saved.get("target")
    given = list(dict.fromkeys(c for c in columns or [] if c != wanted_target))
    if columns is not None and given != saved.get("inputs"):
        clashes.append(f"--columns {','.join(saved.get('inputs', []))}")
    if target is not None and target != saved.get("target"):
        clashes.append(f"--target {saved.get('target')}")
    for name, value in (("horizon", horizon), ("hidden", hidden), ("seed", seed), ("dtype", dtype)):
        if is_explicit(ctx, name) and value != saved.get(name):
            clashes.append(f"--{name} {saved.get(name)}")
    rule_given = any(is_explicit(ctx, k) for k in RULE_OPTION_NAMES)
    if rule_given and config.to_dict() != saved.get("rule"):
        clashes.append(f"the rule {saved.get('rule_name')} with {saved.get('rule')}")
    if clashes:
        raise click.UsageError(
            "the checkpoint was made with " + "; ".join(clashes) + ": drop the clashing "
            "options to continue it, or start a new run with another --checkpoint"
        )


def _check_resume_target(
    ctx: click.Context, f: StreamForecaster, target_input: bool, target_mode: str
) -> None:
    """--target-input and --target-mode given again on --resume must be the checkpoint's."""
    clashes = []
    if is_explicit(ctx, "target_input") and target_input != f.target_input:
        clashes.append("--target-input" if f.target_input else "--no-target-input")
    if is_explicit(ctx, "target_mode") and target_mode != f.target_mode:
        clashes.append(f"--target-mode {f.target_mode}")
    if clashes:
        raise click.UsageError(
            "the checkpoint was made with " + "; ".join(clashes) + ": drop the clashing "
            "options to continue it, or start a new run with another --checkpoint"
        )


def _check_resume_outliers(ctx: click.Context, f: StreamForecaster, outlier_z: float) -> None:
    if is_explicit(ctx, "outlier_z") and (outlier_z or None) != f.outlier_z:
        raise click.UsageError(
            f"the checkpoint was made with --outlier-z {f.outlier_z or 0:g}: drop --outlier-z "
            "to continue it"
        )


def _check_resume_metrics(ctx: click.Context, saved: dict[str, Any], every: int) -> None:
    if is_explicit(ctx, "metrics_every") and every != saved.get("metrics_every"):
        raise click.UsageError(
            f"the checkpoint records metrics every {saved.get('metrics_every')} steps; "
            "drop --metrics-every to continue it"
        )
