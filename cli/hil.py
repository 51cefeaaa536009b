"""``twinpass hil``: hardware-in-the-loop learning against a firmware on this machine.

Starts the firmware (``--firmware``: the Python simulator, the C firmware built for the
host, or the C firmware's netduinoplus2 image under QEMU) as a subprocess on a
pseudo-terminal, deploys a fresh model to it,
streams a task's training data through the serial link so that the device learns in fixed
point, and runs the same learner in float on the host side by side (same initial weights,
same seed): the table shows what fixed point costs. The simulator is stopped at the end.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

from twinpass.devices.serial import SerialDevice
from twinpass.firmware_sim.c_firmware import FIRMWARES
from twinpass.protocol.hyper import DEVICE_P0
from twinpass.runtime.atomic import write_json
from twinpass.runtime.config import PAPER_NETWORK, RuleConfig
from twinpass.runtime.learner import OnlineLearner
from twinpass.runtime.tasks import make_task
from twinpass.runtime.training import CHUNK

from .display import Reporter
from .options import hidden_option, json_out_option, quiet_option, seed_option
from .serial_common import firmware_process

#: Steps per block sent to a learner (progress and the divergence guard look this often;
#: the guard reads the whole model back from the device, so not too often).
BLOCK = CHUNK


def stream(
    learner: OnlineLearner, inputs: np.ndarray, targets: np.ndarray, steps: int, on_block: Any
) -> float:
    """Learn ``steps`` steps from the training series, cycling (a reset at each start).

    Returns the prequential train MSE (each step scored before its update).
    """
    S, T = inputs.shape[0], inputs.shape[1]
    done, total = 0, 0.0
    while done < steps:
        for s in range(S):
            learner.reset_state()
            for t0 in range(0, T, BLOCK):
                n = min(BLOCK, T - t0, steps - done)
                if n <= 0:
                    break
                res = learner.run(inputs[s, t0 : t0 + n], targets[s, t0 : t0 + n])
                total += float(res.loss1.sum())
                done += n
                on_block(n)
            if done >= steps:
                break
    return total / max(steps, 1)


@click.command()
@click.option(
    "--task",
    type=click.Choice(["mackey-glass"]),
    default="mackey-glass",
    show_default=True,
    help="The task streamed to the device.",
)
@hidden_option(32)
@click.option(
    "--steps",
    "-T",
    type=click.IntRange(1),
    default=5000,
    show_default=True,
    help="Online steps (the training series is cycled from a zero state if longer).",
)
@seed_option
@click.option("--lr", type=float, default=RuleConfig().lr, show_default=True)
@click.option("--sigma", type=float, default=RuleConfig().sigma, show_default=True)
@click.option(
    "--readout",
    type=click.Choice(["rls", "nlms", "anp"]),
    default="rls",
    show_default=True,
    help="rls: the learner's network (leaky units, [hidden, input, 1] readout, guard) with "
    "the RLS readout in fixed point (P0 10); nlms: the same network with the normalised-LMS "
    "readout; anp: the paper's network and readout.",
)
@click.option(
    "--in-flight",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="STEP messages in flight (1: lockstep; up to the device's rx_window).",
)
@click.option(
    # The option's old name, deprecated: elsewhere --window is BP's truncation window.
    "--window",
    "old_window",
    type=click.IntRange(1),
    default=None,
    hidden=True,
)
@click.option(
    "--firmware",
    type=click.Choice(FIRMWARES),
    default="sim",
    show_default=True,
    help="sim: the Python firmware simulator; c: the C firmware (firmware/) built for this "
    "machine; qemu: the C firmware's netduinoplus2 image under qemu-system-arm (needs "
    "arm-none-eabi-gcc and qemu-system-arm).",
)
@click.option(
    "--ram",
    type=click.IntRange(1),
    default=None,
    help="Simulator RAM in KiB [default: its own]; --firmware sim only.",
)
@json_out_option("steps, test MSEs and throughput")
@quiet_option
def hil(
    task: str,
    hidden: int,
    steps: int,
    seed: int,
    lr: float,
    sigma: float,
    readout: str,
    in_flight: int,
    old_window: int | None,
    firmware: str,
    ram: int | None,
    json_out: str | None,
    quiet: bool,
) -> None:
    """Learn on a firmware in fixed point, next to the host's float learner.

    \b
    Examples:
      twinpass hil --task mackey-glass --hidden 32 --steps 5000 --json-out hil.json
      twinpass hil --firmware qemu --hidden 32 --steps 2000
    """
    report = Reporter(quiet=quiet)
    in_flight = _in_flight(in_flight, old_window)
    # The firmwares run the learner's network with the RLS readout (P0 within Q7.24's
    # range, docs/design.md §8) or the NLMS readout, or the paper's network and readout;
    # the host runs the same rule beside them.
    config = (
        RuleConfig(lr=lr, sigma=sigma, **PAPER_NETWORK)
        if readout == "anp"
        else RuleConfig(lr=lr, sigma=sigma, readout=readout, readout_p0=DEVICE_P0)
    )
    the_task = make_task(task)
    train, test = the_task.train, the_task.test
    n_in, n_out = the_task.n_in, the_task.n_out
    if ram is not None and firmware != "sim":
        raise click.UsageError(
            f"--ram sets the simulator's RAM; the {firmware} firmware has its own"
        )
    sim_args = [] if ram is None else ["--ram", str(ram)]
    with tempfile.TemporaryDirectory(prefix="twinpass-hil-") as tmp:
        flash = str(Path(tmp) / "flash.bin")
        with firmware_process(firmware, flash, sim_args) as path:
            report.line(f"{firmware} firmware on {path}")
            dev = SerialDevice(path, window=in_flight, base_timeout=0.5)
            try:
                on_device = OnlineLearner(n_in, n_out, hidden, config, seed=seed, device=dev)
                hello = dev.link.hello_info
                assert hello is not None
                report.line(
                    f"deployed {n_in}-{hidden}-{n_out} {config.name} to {hello.board} "
                    f"(fw {hello.fw}, arithmetic {', '.join(hello.caps.dtypes)})"
                )
                dev_initial, _ = on_device.evaluate(test.inputs, test.targets)
                bytes0 = dev.link.stats.bytes_out + dev.link.stats.bytes_in
                t0 = time.perf_counter()
                with report.progress("device learning", total=steps):
                    dev_train = stream(
                        on_device,
                        train.inputs,
                        train.targets,
                        steps,
                        lambda n: report.advance(n, "fixed point on the device"),
                    )
                dev_wall = time.perf_counter() - t0
                link_bytes = dev.link.stats.bytes_out + dev.link.stats.bytes_in - bytes0
                dev_test, _ = on_device.evaluate(test.inputs, test.targets)
                link = dev.link.stats
                link_record = {
                    "retries": link.retries,
                    "stale": link.stale,
                    "dropped": link.dropped,
                    "resyncs": link.resyncs,
                    # pipelined (--in-flight > 1): STEPs the device refused as out of order
                    # (an earlier one was lost) and that were sent again in order
                    "reordered": link.reordered,
                    # always 0 against this simulator (protocol 1.1 checks STEP order); a
                    # 1.0 device's pipelined steps whose order the host cannot vouch for
                    "order_unknown": link.order_unknown,
                    "bytes_per_step": link_bytes / steps,
                }
            finally:
                dev.close()
    host = OnlineLearner(n_in, n_out, hidden, config, seed=seed)
    host_initial, _ = host.evaluate(test.inputs, test.targets)
    t0 = time.perf_counter()
    host_train = stream(host, train.inputs, train.targets, steps, lambda n: None)
    host_wall = time.perf_counter() - t0
    host_test, _ = host.evaluate(test.inputs, test.targets)
    ratio = dev_test / host_test if host_test > 0 else math.inf
    report.table(
        f"{config.name} on {the_task.name}, N={hidden}, {steps} steps, seed {seed}",
        ["", "device (fixed point)", "host (float32)"],
        [
            ["test MSE before", dev_initial, host_initial],
            ["train MSE (prequential)", dev_train, host_train],
            ["test MSE after", dev_test, host_test],
            ["steps/s", steps / dev_wall, steps / host_wall],
        ],
    )
    report.line(
        f"device / host test MSE: {ratio:.3f}; link: {link_record['bytes_per_step']:.1f} "
        f"bytes per step, {link_record['retries']} retries"
    )
    if json_out is not None:
        write_json(
            json_out,
            {
                "task": the_task.name,
                "hidden": hidden,
                "steps": steps,
                "seed": seed,
                "rule": config.to_dict(),
                "in_flight": in_flight,
                "firmware": firmware,
                "board": hello.board,
                "device_test_mse": dev_test,
                "host_test_mse": host_test,
                "device_test_mse_initial": dev_initial,
                "host_test_mse_initial": host_initial,
                "device_train_mse": dev_train,
                "host_train_mse": host_train,
                "ratio": ratio,
                "steps_per_s": steps / dev_wall,
                "host_steps_per_s": steps / host_wall,
                "link": link_record,
            },
        )


def _in_flight(in_flight: int, old_window: int | None) -> int:
    """--in-flight, or the deprecated --window it replaces (with a one-line note)."""
    if old_window is None:
        return in_flight
    ctx = click.get_current_context()
    if ctx.get_parameter_source("in_flight") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--window is the old name of --in-flight: give only --in-flight")
    click.echo(
        "note: hil --window is deprecated, use --in-flight (--window is BP's truncation "
        "window elsewhere)",
        err=True,
    )
    return old_window
