"""``twinpass train``: epochs of online learning on one of the paper's tasks."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from twinpass.core.errors import DivergenceError
from twinpass.runtime.atomic import write_json
from twinpass.runtime.learner import OnlineLearner
from twinpass.runtime.run import (
    ON_DIVERGENCE,
    ResumeClash,
    check_training_options,
    device_record,
    fit_rule_to_device,
    open_device,
    resume_training,
    training_task_options,
)
from twinpass.runtime.run_lock import hold_checkpoint
from twinpass.runtime.tasks import TASKS, make_task
from twinpass.runtime.training import EpochRecord, evaluate, train_epoch

from .config_file import config_option
from .display import Reporter
from .options import (
    cli_wording,
    device_options,
    dtype_option,
    given_options,
    hidden_option,
    json_out_option,
    on_divergence_option,
    quiet_option,
    rule_config_from_options,
    rule_options,
    seed_option,
)
from .output_paths import check_output_paths


def _task_kwargs(task: str, data: str | None, horizon: int | None, pairing: str) -> dict[str, Any]:
    if task == "weather":
        path = data or os.environ.get("TWINPASS_WTH")
        if path is None:
            raise click.UsageError("--task weather needs --data PATH/TO/WTH.csv")
        kw: dict[str, Any] = {"path": path}
        if horizon is not None:
            kw["horizon"] = horizon
        return kw
    if data is not None:
        raise click.UsageError(f"--data is for --task weather, not {task}")
    if task == "mackey-glass":
        kw = {"pairing": pairing}
        if horizon is not None:
            kw["horizon"] = horizon
        return kw
    if horizon is not None:
        raise click.UsageError("--horizon is for mackey-glass and weather")
    return {}


@click.command()
@config_option
@click.option(
    "--task",
    type=click.Choice(TASKS),
    default="mackey-glass",
    show_default=True,
    help="The paper's task to learn.",
)
@rule_options
@hidden_option()
@click.option("--epochs", "-E", type=click.IntRange(0), default=20, show_default=True)
@seed_option
@click.option(
    "--batch",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Training sequences streamed side by side (must divide their number).",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="WTH.csv for --task weather (or set TWINPASS_WTH).",
)
@click.option(
    "--horizon",
    type=click.IntRange(1),
    default=None,
    help="Steps ahead to predict (mackey-glass: 15; weather: 1, 24 or 48 hours).",
)
@click.option(
    "--pairing",
    type=click.Choice(["ahead", "recall"]),
    default="ahead",
    show_default=True,
    help="Mackey-Glass: predict s[t+h] from s[t] (ahead), or s[t] from s[t+h] as the "
    "reference code does (recall).",
)
@dtype_option
@device_options
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    default=None,
    help="Save the learner here after every epoch (atomically).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from --checkpoint, skipping the epochs it already holds.",
)
@json_out_option("the configuration and the per-epoch losses")
@on_divergence_option
@quiet_option
def train(
    task: str,
    hidden: int,
    epochs: int,
    seed: int,
    batch: int,
    data: str | None,
    horizon: int | None,
    pairing: str,
    dtype: str,
    device: str,
    noise_scale: float | None,
    analog_update: str | None,
    checkpoint: str | None,
    resume: bool,
    json_out: str | None,
    on_divergence: str,
    quiet: bool,
    **rule_opts: Any,
) -> None:
    """Train on a task for some epochs and report test MSE after each.

    Every epoch streams each training sequence once with one update per timestep; the
    test split is then predicted without learning. Epoch 0 is the untrained model.

    \b
    Examples:
      twinpass train --task mackey-glass --rule anp --hidden 100 --epochs 20
      twinpass train --task copy --rule anp --decorrelation --epochs 50
      twinpass train --task weather --data WTH.csv --horizon 24 --rule bp --window 20
      twinpass train --device analog:pcm --noise-scale 2 --epochs 5
    """
    if resume and checkpoint is None:
        raise click.UsageError("--resume needs --checkpoint FILE")
    check_output_paths(checkpoint=checkpoint, json_out=json_out)
    if checkpoint is not None:  # one run per checkpoint, for the command's lifetime
        click.get_current_context().with_resource(hold_checkpoint(checkpoint, "twinpass train"))
    config = rule_config_from_options(rule_opts)
    report = Reporter(quiet=quiet)
    records: list[EpochRecord] = []
    if resume and checkpoint is not None and Path(checkpoint).exists():
        ctx = click.get_current_context()
        given = given_options(ctx)
        try:
            # The device is closed when the command ends, whichever way (return, error,
            # Ctrl-C): Click closes the context on every exit path. A serial device holds a
            # port and a reader thread.
            resumed = resume_training(
                checkpoint,
                given,
                device=device_record(device, noise_scale, analog_update),
                dtype=dtype,
                on_open=lambda d: ctx.call_on_close(d.close),
            )
            learner, saved_dev = resumed.learner, resumed.device_spec
            # What was not given now comes from the checkpoint; what was given must agree.
            task, pairing, horizon = training_task_options(
                resumed.config, given, task, pairing, horizon
            )
            the_task = make_task(task, **_task_kwargs(task, data, horizon, pairing))
            check_training_options(resumed.config, the_task, config, given)
        except ResumeClash as e:
            raise click.UsageError(str(e)) from None
        records = [EpochRecord(**_record_fields(r)) for r in resumed.epochs]
        report.line(f"resumed from {checkpoint} after epoch {records[-1].epoch if records else 0}")
    else:
        the_task = make_task(task, **_task_kwargs(task, data, horizon, pairing))
        if the_task.train.inputs.shape[0] % batch != 0:
            raise click.BadParameter(
                f"{batch} does not divide the {the_task.train.inputs.shape[0]} training "
                f"sequence(s) of {the_task.name}",
                param_hint="--batch",
            )
        dev, dtype = open_device(device, noise_scale, analog_update, dtype)
        click.get_current_context().call_on_close(dev.close)  # as above: on every exit path
        config = fit_rule_to_device(config, dev, set(given_options(click.get_current_context())))
        learner = OnlineLearner(
            the_task.n_in,
            the_task.n_out,
            hidden,
            config,
            batch=batch,
            seed=seed,
            dtype=dtype,
            device=dev,
            on_divergence=ON_DIVERGENCE[on_divergence],
        )
        saved_dev = device_record(device, noise_scale, analog_update)
    run_config = {
        "task": the_task.name,
        "task_params": the_task.metadata.get("params", {}),
        "rule": learner.config.to_dict(),
        "rule_name": learner.config.name,
        "hidden": learner.n_hidden,
        "epochs": epochs,
        "seed": learner.seed,
        "batch": learner.batch,
        "dtype": learner.dtype,
        "device": learner.device.info().name,
        "device_spec": saved_dev,
    }
    report.line(
        f"{learner.config.name} on {the_task.name}: N={learner.n_hidden}, "
        f"lr={learner.config.lr:g}, sigma={learner.config.sigma:g}, seed={learner.seed}, "
        f"{epochs} epochs, device {device if not resume else saved_dev['spec']}"
    )
    t0 = time.perf_counter()
    if not records:
        first = evaluate(learner, the_task)
        records.append(first)
        report.line(_epoch_line(first))
        if checkpoint is not None:  # --epochs 0 still leaves the run it was asked to save
            learner.save(checkpoint, {"epochs": [first.to_dict()], "config": run_config})
    steps_per_epoch = the_task.train.inputs.shape[0] * the_task.train.inputs.shape[1]
    todo = range(records[-1].epoch + 1, epochs + 1)
    with report.progress("training", total=len(todo) * steps_per_epoch):
        for epoch in todo:
            try:
                train_mse = train_epoch(
                    learner,
                    the_task,
                    lambda n, e=epoch: report.advance(n, f"epoch {e}/{epochs}"),
                )
            except DivergenceError as e:
                kept = f"; the checkpoint after epoch {epoch - 1} is intact" if checkpoint else ""
                raise DivergenceError(
                    f"{cli_wording(str(e))} (epoch {epoch}){kept}", step=e.step, rule=e.rule
                ) from e
            rec = evaluate(learner, the_task)
            rec.epoch, rec.train_mse = epoch, train_mse
            rec.wall_s = time.perf_counter() - t0
            records.append(rec)
            report.line(_epoch_line(rec))
            if checkpoint is not None:
                learner.save(
                    checkpoint, {"epochs": [r.to_dict() for r in records], "config": run_config}
                )
    wall = time.perf_counter() - t0
    extra_cols = sorted(records[-1].extra)
    report.table(
        f"{learner.config.name} on {the_task.name} (N={learner.n_hidden}, seed={learner.seed})",
        ["epoch", "train MSE", "test MSE", *extra_cols],
        [
            [r.epoch, r.train_mse, r.test_mse, *(r.extra.get(c) for c in extra_cols)]
            for r in records
        ],
    )
    report.line(f"wall time {wall:.1f} s")
    if json_out is not None:
        write_json(
            json_out,
            {"config": run_config, "epochs": [r.to_dict() for r in records], "wall_s": wall},
        )


def _record_fields(d: dict[str, Any]) -> dict[str, Any]:
    fixed = {"epoch", "train_mse", "test_mse", "wall_s"}
    return {
        **{k: d[k] for k in fixed if k in d},
        "extra": {k: v for k, v in d.items() if k not in fixed},
    }


def _epoch_line(rec: EpochRecord) -> str:
    train = "-" if rec.train_mse is None else f"{rec.train_mse:.3e}"
    extra = "".join(f"  {k} {v:.3g}" for k, v in sorted(rec.extra.items()))
    return f"epoch {rec.epoch:3d}  train MSE {train}  test MSE {rec.test_mse:.3e}{extra}"
