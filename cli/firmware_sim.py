"""``twinpass firmware-sim``: run the simulated microcontroller on a pseudo-terminal.

Prints the pty's path on one line, then serves the twinpass serial protocol
(docs/protocol.md) until Ctrl-C or SIGTERM. Point ``--port`` of ``twinpass deploy`` or
``twinpass device`` at the printed path.
"""

from __future__ import annotations

import click

from twinpass.firmware_sim.server import run

from .options import seed_option


@click.command("firmware-sim")
@click.option(
    "--flash",
    "flash",
    type=click.Path(dir_okay=False),
    default=None,
    help="Flash image file; models committed to it survive restarts (default: a temporary one).",
)
@click.option(
    "--ram",
    type=click.IntRange(min=17),
    default=128,
    show_default=True,
    help="RAM of the simulated device in KiB (16 KiB are the firmware's own).",
)
@click.option(
    "--baud",
    type=click.IntRange(min=1),
    default=None,
    help="Throttle the device's output to baud/10 bytes per second.",
)
@click.option(
    "--step-us",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Compute time added per learning step, in microseconds.",
)
@seed_option
def firmware_sim(flash: str | None, ram: int, baud: int | None, step_us: float, seed: int) -> None:
    """Serve the twinpass protocol on a pseudo-terminal (prints its path) until stopped."""
    run(
        flash,
        ram_kib=ram,
        baud=baud,
        step_us=step_us,
        seed=seed,
        announce=lambda path: click.echo(path),
    )
