"""Build the C firmware (``firmware/`` of a source checkout) and run it where a host can talk
to it: the *host* board (a POSIX process on a pseudo-terminal) or the *netduinoplus2* image
under ``qemu-system-arm``, its emulated USART1 on a pseudo-terminal.

Builds go into a cache folder named after a hash of every source file and the compiler
flags (``$XDG_CACHE_HOME/twinpass/firmware-<hash>``, ``~/.cache`` without it), so a run
after an edit rebuilds and a run without one does not. The sources live in the repository,
not in the wheel: from an installed wheel, pass a built image (``--elf``) or a source
folder (``TWINPASS_FIRMWARE_DIR``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from twinpass.core.errors import DeviceError

#: The kinds of firmware a ``hil`` session can run.
FIRMWARES = ("sim", "c", "qemu")
QEMU_MACHINE = "netduinoplus2"
#: QEMU prints the pty of ``-serial pty`` on stdout in this form.
QEMU_PTY = re.compile(rb"char device redirected to (\S+)")


def firmware_dir() -> Path:
    """The C firmware's source folder: ``TWINPASS_FIRMWARE_DIR``, else the installed package's
    (``twinpass/firmware``, which is the checkout's ``firmware/`` in an editable install)."""
    env = os.environ.get("TWINPASS_FIRMWARE_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1] / "firmware")
    for path in candidates:
        if (path / "build.sh").is_file() and (path / "core").is_dir():
            return path
    raise DeviceError(
        "the C firmware's sources were not found (looked in "
        + ", ".join(str(p) for p in candidates)
        + "): the wheel ships them as twinpass/firmware; set TWINPASS_FIRMWARE_DIR to a copy "
        "of the sources, or pass a built image"
    )


def _cache_dir(kind: str, flags: str) -> Path:
    src = firmware_dir()
    digest = hashlib.sha256(flags.encode())
    for path in sorted(src.rglob("*")):
        if path.is_file() and path.suffix in {".c", ".h", ".ld", ".sh"}:
            digest.update(str(path.relative_to(src)).encode())
            digest.update(path.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "twinpass"
    return base / f"firmware-{kind}-{digest.hexdigest()[:16]}"


def _cached_build(cached: Path, name: str, build: Callable[[Path], None]) -> Path:
    """``cached / name``, built first if missing: into a folder of its own, then renamed
    into place, so a concurrent run never executes a half-written binary."""
    if (cached / name).is_file():
        return cached / name
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cached.name + ".", dir=cached.parent))
    try:
        build(tmp)
        try:
            tmp.rename(cached)
        except OSError:  # another run got there first: its build is the same sources'
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cached / name


def _run_build(cmd: list[str], env: dict[str, str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as exc:
        raise DeviceError(f"cannot build the {what}: {exc}") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise DeviceError(f"building the {what} failed:\n{tail}")


def build_host(out: Path | None = None) -> Path:
    """The host-board firmware ``twinpass_fw_host`` (built with the system C compiler)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise DeviceError(
            "no C compiler (cc or gcc) on PATH: install gcc (Debian/Ubuntu: apt-get install "
            "gcc) to build the C firmware, or set CC"
        )

    def build(dest: Path) -> None:
        cmd = ["sh", str(firmware_dir() / "build.sh"), str(dest)]
        _run_build(cmd, {**os.environ, "CC": cc}, "host firmware")

    if out is not None:
        build(out)
        return out / "twinpass_fw_host"
    return _cached_build(
        _cache_dir("host", os.environ.get("CFLAGS", "-O2")), "twinpass_fw_host", build
    )


def build_netduinoplus2(out: Path | None = None) -> Path:
    """The netduinoplus2 image for QEMU (its flash emulated in RAM); needs arm-none-eabi-gcc."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise DeviceError(
            "arm-none-eabi-gcc is not on PATH: install the GNU Arm Embedded toolchain "
            "(Debian: apt-get install gcc-arm-none-eabi) to build the firmware for QEMU"
        )

    def build(dest: Path) -> None:
        cmd = ["sh", str(firmware_dir() / "build_arm.sh"), str(dest)]
        _run_build(cmd, dict(os.environ), "netduinoplus2 firmware")

    if out is not None:
        build(out)
        return out / "twinpass-netduinoplus2.elf"
    cached = _cache_dir("netduinoplus2", "qemu")
    return _cached_build(cached, "twinpass-netduinoplus2.elf", build)


def qemu_command(elf: str | os.PathLike[str], *, icount: bool = False) -> list[str]:
    """The QEMU command line running ``elf`` on the netduinoplus2, its UART on a pty.

    ``icount``: one emulated instruction per nanosecond of guest time (``-icount shift=0``),
    so the firmware's microsecond clock counts thousands of instructions.
    """
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise DeviceError(
            "qemu-system-arm is not on PATH (Debian: apt-get install qemu-system-arm)"
        )
    cmd = [qemu, "-M", QEMU_MACHINE, "-display", "none", "-monitor", "none"]
    cmd += ["-serial", "pty", "-kernel", str(elf)]
    if icount:
        cmd += ["-icount", "shift=0,align=off"]
    return cmd
