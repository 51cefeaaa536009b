"""The ``twinpass`` command: a click group that wires the runtime, devices and tasks.

Errors the project raises on purpose (:class:`TwinpassError`) become a one-line message
and exit status 1; click's own usage errors exit with status 2. Never a traceback for
bad input.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click

from twinpass.core.errors import TwinpassError

from .deploy import deploy
from .device import device
from .devices import devices
from .firmware_sim import firmware_sim
from .hil import hil
from .plot import plot
from .reproduce import reproduce
from .stream import stream
from .train import train
from .tune import tune


def _version() -> str:
    try:
        return version("twinpass")
    except PackageNotFoundError:  # pragma: no cover - only in a broken install
        return "unknown"


class _Group(click.Group):
    """Turns the project's errors into ``Error: <message>`` and exit status 1."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except TwinpassError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", "-V", prog_name="twinpass")
def cli() -> None:
    """Train recurrent networks online, without backpropagation.

    Two replicas of a network run side by side on the same stream, one perturbed; the
    difference of their losses and measured activities gives a local weight update at
    every timestep (activity-based node perturbation, ANP).
    """


cli.add_command(train)
cli.add_command(stream)
cli.add_command(plot)
cli.add_command(reproduce)
cli.add_command(tune)
cli.add_command(devices)
cli.add_command(deploy)
cli.add_command(device)
cli.add_command(hil)
cli.add_command(firmware_sim)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="twinpass")


if __name__ == "__main__":
    main()
