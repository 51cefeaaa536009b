"""What the serial-device commands share: the ``--port``/``--baud`` options, opening a
device with a clear error, and (re-exported) running the firmware simulator as a subprocess.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from twinpass.devices.serial import SerialDevice
from twinpass.firmware_sim.process import firmware_process, simulator_process

from .options import baud_option

__all__ = ["firmware_process", "open_device", "port_options", "simulator_process"]


def port_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add --port (required) and --baud to a command."""
    f = baud_option(f)
    return click.option(
        "--port",
        required=True,
        help="The device: a pyserial URL or device path (a pty printed by "
        "`twinpass firmware-sim`, a USB serial device, socket://HOST:PORT).",
    )(f)


def open_device(port: str, baud: int, **options: Any) -> SerialDevice:
    """A SerialDevice with its link open (HELLO done), or a DeviceError naming the port."""
    dev = SerialDevice(port, baudrate=baud, **options)
    try:
        dev.link  # noqa: B018 - opens the port and greets the device
    except BaseException:
        dev.close()
        raise
    return dev
