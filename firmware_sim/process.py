"""Run a firmware as a child process on a pseudo-terminal.

Used by ``twinpass hil`` and by the ``hil`` device backend. Three firmwares speak the same
protocol (:data:`~.c_firmware.FIRMWARES`): ``sim``, the Python simulator (``python -m
twinpass.firmware_sim``); ``c``, the C firmware on the host board (a POSIX process); and
``qemu``, the C firmware's netduinoplus2 image under ``qemu-system-arm``. Each prints its
pty path on stdout (QEMU in a sentence of its own); the process is stopped when the context
ends, or killed by the kernel if this process dies first.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from twinpass.core.errors import ConfigError, DeviceError

from . import c_firmware

#: Seconds the simulator may take to print its pty path (a cold start imports NumPy).
SIM_START_TIMEOUT = 60.0


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the simulator when this process dies.

    The simulator runs in a session of its own and never exits by itself, so a command
    ended without its ``finally`` (SIGTERM, SIGKILL) would leave it serving its pty for
    good. Linux only (``PR_SET_PDEATHSIG``); elsewhere the ``finally`` alone stops it.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Resolved in the parent: between fork and exec the child should do next to nothing.
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl: nobody would kill us
            os._exit(1)

    return hook


def firmware_command(
    firmware: str, flash: str, args: Sequence[str] = (), *, icount: bool = False
) -> list[str]:
    """The command line that runs ``firmware`` (sim, c or qemu) with ``flash`` as its flash.

    QEMU's flash is read-only, so the qemu firmware keeps its models in RAM: ``flash`` is
    not used, and neither are ``args`` (the simulator's options). ``icount`` (qemu only):
    guest time counts instructions (:func:`.c_firmware.qemu_command`).
    """
    if icount and firmware != "qemu":
        raise ConfigError("instruction counting (icount) needs the qemu firmware")
    if firmware == "sim":
        return [sys.executable, "-m", "twinpass.firmware_sim", "--flash", flash, *args]
    if args:
        raise ConfigError(
            f"the {firmware} firmware takes none of the simulator's options ({' '.join(args)})"
        )
    if firmware == "c":
        return [str(c_firmware.build_host()), "--flash", flash]
    if firmware == "qemu":
        return c_firmware.qemu_command(c_firmware.build_netduinoplus2(), icount=icount)
    raise ConfigError(f"unknown firmware {firmware!r}: one of {', '.join(c_firmware.FIRMWARES)}")


def read_pty_path(proc: subprocess.Popen[bytes], firmware: str) -> str:
    """The pty path the process prints: its first line (sim, c) or QEMU's sentence."""
    assert proc.stdout is not None
    deadline = time.monotonic() + SIM_START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break  # the process ended
        if firmware != "qemu":
            return line.decode().strip()
        found = c_firmware.QEMU_PTY.search(line)
        if found:
            return found.group(1).decode()
    return ""


def hold_pty_open(path: str) -> int:
    """Open the pty's slave side, in raw mode, and return the descriptor to keep open.

    QEMU's pty backend counts a pty as disconnected while nobody holds its slave side
    open: it drops what the guest writes then, and notices a new connection only at its
    next one-second poll, so every host that opens the port would wait up to a second for
    its first reply. Holding one descriptor open for the emulator's lifetime keeps it
    connected. Raw mode at once: with the default echo, the tty would send the guest's
    own output back to it.
    """
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


@contextmanager
def firmware_process(
    firmware: str, flash: str, args: Sequence[str] = (), *, icount: bool = False
) -> Iterator[str]:
    """Run a firmware (:func:`firmware_command`); yield its pty path; stop it at the end."""
    cmd = firmware_command(firmware, flash, args, icount=icount)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
    )
    try:
        path = read_pty_path(proc, firmware)
        if not path:
            err = b""
            if proc.poll() is not None and proc.stderr is not None:
                err = proc.stderr.read()
            raise DeviceError(
                f"the {firmware} firmware did not start (no pty path printed)"
                + (f": {err.decode(errors='replace').strip()[-500:]}" if err else "")
            )
        held = hold_pty_open(path) if firmware == "qemu" else None
        try:
            yield path
        finally:
            if held is not None:
                os.close(held)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


@contextmanager
def simulator_process(flash: str, args: Sequence[str] = ()) -> Iterator[str]:
    """Run ``python -m twinpass.firmware_sim`` on ``flash``; yield its pty path; stop it."""
    with firmware_process("sim", flash, args) as path:
        yield path
