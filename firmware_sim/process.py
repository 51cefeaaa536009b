"""Run the firmware simulator as a child process on a pseudo-terminal.

Used by ``twinpass hil`` and by the ``hil`` device backend: the simulator is started with
``python -m twinpass.firmware_sim``, its pty path read from its first line of output, and
it is stopped when the context ends, or killed by the kernel if this process dies first.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from twinpass.kernels.errors import DeviceError

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


@contextmanager
def simulator_process(flash: str, args: Sequence[str] = ()) -> Iterator[str]:
    """Run ``python -m twinpass.firmware_sim`` on ``flash``; yield its pty path; stop it."""
    cmd = [sys.executable, "-m", "twinpass.firmware_sim", "--flash", flash, *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_parent(),
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], SIM_START_TIMEOUT)
        path = proc.stdout.readline().decode().strip() if ready else ""
        if not path:
            err = b""
            if proc.poll() is not None and proc.stderr is not None:
                err = proc.stderr.read()
            raise DeviceError(
                "the firmware simulator did not start (no pty path printed)"
                + (f": {err.decode(errors='replace').strip()[-500:]}" if err else "")
            )
        yield path
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
