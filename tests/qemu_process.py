"""Build the ARM firmware and run it under QEMU on a real pty (reusable test helper).

::

    from qemu_process import ARM_GCC, QEMU, build_arm, start_qemu

    elf = build_arm(tmp_path / "fw", app="firmware/board/netduinoplus2/uart_echo.c")
    with start_qemu(elf) as qemu:
        port = serial.Serial(qemu.path, timeout=1)

``start_qemu`` runs ``qemu-system-arm -M netduinoplus2 -display none -monitor none -serial pty
-kernel ELF`` (plus ``-icount shift=0,align=off`` with ``icount=True``: the guest clock then
advances 1 ns per instruction, independent of the host's load), reads the pty path from the
``char device redirected to /dev/pts/N`` line QEMU prints on stdout, and on exit stops it
(SIGTERM, then SIGKILL). Every QEMU goes through :mod:`child_processes`, so none outlives the
test run. A guest reset (``board_reset``) keeps the same QEMU process and the same pty.

QEMU's pty drops what the guest writes before the host opens the pty, and the first exchange
after opening takes about a second: start with a retried request (see
``tests/firmware/test_board_qemu.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import child_processes

from twinpass.firmware_sim.c_firmware import qemu_command
from twinpass.firmware_sim.process import read_pty_path

QEMU = shutil.which("qemu-system-arm")
ARM_GCC = shutil.which("arm-none-eabi-gcc")
ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "firmware" / "build_arm.sh"
ELF_NAME = "twinpass-netduinoplus2.elf"


def build_arm(
    out_dir: str | os.PathLike[str],
    app: str | os.PathLike[str] | None = None,
    extra_env: dict[str, str] | None = None,
    *,
    real_flash: bool = False,
) -> Path:
    """Run ``firmware/build_arm.sh OUT_DIR``; ``app`` replaces ``firmware/app/*.c``.

    Returns the path of the ELF; a failed build raises RuntimeError with the compiler's output.
    """
    env = {**os.environ, **(extra_env or {})}
    if app is not None:
        env["APP"] = str(Path(app) if Path(app).is_absolute() else ROOT / app)
    cmd = ["sh", str(BUILD_SCRIPT), str(out_dir)] + (["--real-flash"] if real_flash else [])
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if res.returncode != 0:
        raise RuntimeError(f"build_arm.sh failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return Path(out_dir) / ELF_NAME


class QemuProcess:
    """One ``qemu-system-arm -M netduinoplus2``; ``path`` is the guest USART1's pty."""

    def __init__(self, elf: str | os.PathLike[str], icount: bool, extra_args: list[str]):
        if QEMU is None:
            raise RuntimeError("qemu-system-arm is not installed")
        self.cmd = qemu_command(elf, icount=icount) + list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = child_processes.spawn(
            self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        self.path = ""
        try:
            self.path = self._read_pty_path()
        except BaseException:  # never leave it running on a failed start (or Ctrl-C)
            self.stop()
            raise

    def _read_pty_path(self) -> str:
        assert self.proc is not None
        path = read_pty_path(self.proc, "qemu")
        if not path:
            err = b""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()
            raise RuntimeError(f"QEMU did not print its pty path: {err.decode(errors='replace')}")
        return path

    def kill(self) -> None:
        """SIGKILL."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stop()

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers); harmless when it is not running."""
        child_processes.stop(self.proc)

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


@contextmanager
def start_qemu(
    elf: str | os.PathLike[str], *, icount: bool = False, extra_args: list[str] | None = None
) -> Iterator[QemuProcess]:
    """A running QEMU netduinoplus2 with ``elf`` loaded; stopped on exit."""
    qemu = QemuProcess(elf, icount, extra_args or [])
    try:
        yield qemu
    finally:
        qemu.stop()
