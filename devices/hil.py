"""The ``hil`` backend: a serial device whose board is a firmware running on this machine.

Hardware in the loop without hardware: on first use it starts a firmware on a
pseudo-terminal with a flash image of its own (a temporary one unless ``flash`` is given),
and then speaks the serial protocol to it exactly as
:class:`~twinpass.devices.serial.SerialDevice` speaks to a board. Closing the device stops
the firmware; if this process dies first, the kernel stops it. The firmware is the option:

- ``hil`` or ``hil:RAM_KIB``: the Python firmware simulator (``python -m twinpass.firmware_sim``);
- ``hil:c``: the C firmware (``firmware/``) built for the host, a POSIX process;
- ``hil:qemu``: the C firmware's netduinoplus2 image under ``qemu-system-arm``.

    twinpass stream --device hil --hidden 32
    twinpass stream --device hil:qemu --hidden 32
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

from twinpass.core.errors import ConfigError
from twinpass.firmware_sim.c_firmware import FIRMWARES
from twinpass.firmware_sim.process import firmware_process

from .base import DeviceInfo
from .serial import SerialDevice
from .serial_link import SerialLink


class HilDevice(SerialDevice):
    """A firmware on this machine as a device (started on first use, stopped on close).

    ram_kib: the simulated board's RAM (``hil:64``), default the simulator's own (128 KiB);
    or the firmware to run instead of the simulator: ``c`` or ``qemu``.
    flash: a flash image file to keep the model in across runs; default a temporary one
    (QEMU's flash is read-only: the qemu firmware keeps its models in RAM).
    """

    name = "hil"

    def __init__(
        self, ram_kib: str | int | None = None, *, flash: str | None = None, **options: Any
    ) -> None:
        super().__init__(None, **options)
        self._sim_args: list[str] = []
        self.firmware = "sim"
        if ram_kib in FIRMWARES:
            self.firmware = str(ram_kib)
        elif ram_kib is not None:
            try:
                ram = int(ram_kib)
            except (TypeError, ValueError):
                raise ConfigError(
                    "hil takes the simulated board's RAM in KiB (hil:64) or a firmware "
                    f"({', '.join(FIRMWARES)}), not {ram_kib!r}"
                ) from None
            if ram < 17:
                raise ConfigError(f"hil RAM must be at least 17 KiB, got {ram}")
            self._sim_args = ["--ram", str(ram)]
        self._flash = flash
        self._processes = ExitStack()

    @property
    def link(self) -> SerialLink:
        self._check_open()
        if self.port is None:
            flash = self._flash
            if flash is None:
                tmp = self._processes.enter_context(
                    tempfile.TemporaryDirectory(prefix="twinpass-hil-")
                )
                flash = os.path.join(tmp, "flash.bin")
            self.port = self._processes.enter_context(
                firmware_process(self.firmware, flash, self._sim_args)
            )
        return super().link

    def info(self) -> DeviceInfo:
        if self.port is None:
            # Listing the backends must not start a simulator.
            return replace(
                self.offer(),
                description=f"the {self.firmware} firmware on a pty, started on first use: "
                "fixed-point ANP on the emulated board, over the serial protocol",
                extra={"firmware": f"{self.firmware} (started on first use)"},
            )
        return super().info()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._processes.close()
