"""``twinpass deploy``: put a trained model on a microcontroller (or the simulator).

Reads a checkpoint written by ``twinpass train`` or ``twinpass stream``, checks that the
device can run it (rule, size, batch), quantises it into a model image, uploads it with a
progress bar (resumable: running the command again after a cut continues the upload),
reads the flash slot back and compares its sha256, and confirms the model so that it
survives the next reboot.
"""

from __future__ import annotations

import time

import click
import numpy as np

from twinpass.core.errors import ConfigError
from twinpass.devices.serial import SerialDevice, quantise_model
from twinpass.protocol import model_image as mi
from twinpass.runtime.learner import OnlineLearner

from .display import Reporter
from .options import link_retries_option, quiet_option
from .serial_common import open_device, port_options


def check_capabilities(dev: SerialDevice, learner: OnlineLearner) -> None:
    """Refuse, naming the limit, a model the device cannot run."""
    info = dev.info()
    rule = learner.config.rule
    if rule not in info.rules:
        raise ConfigError(
            f"the checkpoint learns with {learner.config.name}, the device runs "
            f"{', '.join(r.upper() for r in info.rules)} only: train with --rule anp"
        )
    if info.max_hidden is not None and learner.n_hidden > info.max_hidden:
        raise ConfigError(
            f"the checkpoint has N={learner.n_hidden} hidden units; the device's RAM holds "
            f"at most N={info.max_hidden}"
        )
    c = learner.config
    if c.readout not in info.readouts or c.readout_inputs or c.leak != 1.0:
        raise ConfigError(
            f"the checkpoint's network (readout {c.readout}"
            + (" over [hidden, input, 1]" if c.readout_inputs else "")
            + f", leak {c.leak:g}) is not one the device runs: it runs the readout "
            f"{', '.join(info.readouts)} over the hidden state and units without leak; "
            "train with --readout anp --no-readout-inputs --leak 1"
        )
    max_batch = info.extra.get("max_batch")
    if max_batch is not None and learner.batch > int(max_batch):
        raise ConfigError(
            f"the checkpoint learns {learner.batch} streams; the device at most {max_batch}"
        )


@click.command()
@port_options
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Read the flash slot back and compare its sha256 before confirming.",
)
@link_retries_option
@quiet_option
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
def deploy(
    port: str, baud: int, verify: bool, link_retries: int | None, quiet: bool, checkpoint: str
) -> None:
    """Quantise CHECKPOINT's model and deploy it to the device on --port.

    \b
    Example:
      twinpass train --task mackey-glass --hidden 32 --epochs 5 --checkpoint mg.ckpt \
          --readout anp --no-readout-inputs --leak 1
      twinpass deploy --port /dev/ttyACM0 mg.ckpt
    """
    # The deploy's time is the user's: from loading the checkpoint to the confirmed image
    # (the upload alone of a small image takes milliseconds and printed "in 0.00 s").
    t0 = time.perf_counter()
    report = Reporter(quiet=quiet)
    learner, _ = OnlineLearner.load(checkpoint)
    params = learner.params.arrays()
    dev = open_device(port, baud, **({} if link_retries is None else {"retries": link_retries}))
    try:
        check_capabilities(dev, learner)
        image = quantise_model(params, learner.device.rule_spec())
        digest = mi.sha256(image)
        back = mi.dequantise(image, "float64")
        err = max(float(np.max(np.abs(back[k] - params[k]))) for k in params)
        hello = dev.link.hello_info
        assert hello is not None
        report.line(
            f"{hello.board} fw {hello.fw} on {port}: model {learner.n_in}-{learner.n_hidden}-"
            f"{learner.n_out} {learner.config.name}, image {len(image)} bytes "
            f"(quantisation error {err:.1e}), sha256 {digest.hex()[:16]}"
        )
        done = [0]

        def progress(n: int, total: int) -> None:
            # Plain output gets a status line only for a slow upload (and never "0/N bytes"
            # before it starts); a terminal's bar moves from the start.
            slow = report.live or time.perf_counter() - t0 >= 2.0
            report.advance(n - done[0], f"{n}/{total} bytes" if n and slow else "")
            done[0] = n

        with report.progress("uploading", total=len(image)):
            dev.deploy_image(image, progress=progress, verify=verify)
        wall = time.perf_counter() - t0
    finally:
        dev.close()
    report.line(
        f"deployed and confirmed in {_duration(wall)}"
        + (" (flash read back, sha256 verified)" if verify else "")
    )


def _duration(seconds: float) -> str:
    """A short span in milliseconds (a small image uploads in a few), a long one in s."""
    return f"{seconds * 1000:.0f} ms" if seconds < 1.0 else f"{seconds:.2f} s"
