"""Start the firmware simulator as a real subprocess on a real pty (reusable test helper).

For every test that talks to the simulator, the device side's and the host side's::

    from sim_process import start_simulator

    with start_simulator(tmp_path / "flash.bin") as sim:
        port = serial.serial_for_url(sim.path, baudrate=115200, timeout=1)

or, as a pytest fixture (``from sim_process import simulator`` in a test module)::

    def test_x(simulator):  # a fresh simulator on a flash file in tmp_path
        port = serial.serial_for_url(simulator.path, timeout=1)

``start_simulator`` runs ``python -m twinpass.firmware_sim`` with the given options, reads the
pty path it prints on its first stdout line, and on exit stops it with SIGTERM (SIGKILL if it
lingers). ``sim.kill()`` is the kill -9 of crash tests; ``sim.restart()`` starts a new process
on the same flash file. Every process is started through :mod:`child_processes`: registered,
and killed by the kernel if the test process dies without its teardowns (a restarted
simulator used to outlive a test run stopped mid-test). :class:`SimLink` is a minimal
pyserial client speaking frames, for the simulator's own tests (the host's backend is
``twinpass.devices.serial``).
"""

from __future__ import annotations

import hashlib
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import child_processes
import pytest
import serial

from twinpass.firmware_sim.process import firmware_command, hold_pty_open, read_pty_path
from twinpass.protocol.frame import PROTO_MAJOR, Flags, Frame, FrameReader, encode_frame, next_seq
from twinpass.protocol.messages import MsgType

START_TIMEOUT = 30.0

#: Marks a test (or a parameter) that builds the C firmware's host build with cc.
needs_cc = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="no C compiler (cc or gcc) on PATH: the C firmware cannot be built",
)
#: Marks a test (or a parameter) that runs the C firmware's netduinoplus2 image under QEMU.
needs_qemu = [
    pytest.mark.qemu,
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
        reason="qemu-system-arm or arm-none-eabi-gcc is not on PATH (Debian packages "
        "qemu-system-arm, gcc-arm-none-eabi; .ci/run installs them)",
    ),
]
#: The firmwares a protocol test can run against: the simulator, the C firmware's host
#: build, and its netduinoplus2 image under QEMU.
FIRMWARES = [
    "sim",
    pytest.param("c", marks=needs_cc),
    pytest.param("qemu", marks=needs_qemu),
]
#: Why a test that restarts the process cannot run under QEMU.
QEMU_NO_PERSISTENCE = (
    "QEMU's flash is ROM, so the qemu build keeps its flash in RAM, lost with the process: "
    "persistence across restarts is tested on the simulator and the C host build"
)


class SimProcess:
    """One simulator process; ``path`` is its pty."""

    def __init__(
        self,
        flash: str | os.PathLike[str],
        args: list[str],
        env: dict[str, str] | None,
        firmware: str = "sim",
    ):
        self.firmware = firmware
        self.flash = str(flash)
        self.args = list(args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.path = ""
        self.start()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"simulator pid {self.proc.pid} is still running: stop it first")
        cmd = firmware_command(self.firmware, self.flash, self.args)
        env = {**os.environ, **(self.env or {})}
        # Registered and killed with the test process (child_processes): a simulator lives in
        # a session of its own and would otherwise outlive a test run stopped mid-test.
        self.proc = child_processes.spawn(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        try:
            line = read_pty_path(self.proc, self.firmware)
            if not line:
                err = b""
                if self.proc.poll() is not None and self.proc.stderr is not None:
                    err = self.proc.stderr.read()
                raise RuntimeError(f"simulator did not print its pty path: {err.decode()[-2000:]}")
        except BaseException:  # a failed start, or Ctrl-C while waiting: never leave it running
            self.stop()
            raise
        self.path = line
        # QEMU's pty counts as connected only while its slave side is open (firmware_sim's
        # hold_pty_open): hold it, as `twinpass hil` does, or every new connection waits.
        self.held = hold_pty_open(line) if self.firmware == "qemu" else None

    def _release(self) -> None:
        if getattr(self, "held", None) is not None:
            os.close(self.held)
            self.held = None

    def kill(self) -> None:
        """SIGKILL: a power cut."""
        self._release()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers); harmless when it is not running."""
        self._release()
        child_processes.stop(self.proc)

    def restart(self, extra_env: dict[str, str] | None = None) -> None:
        self.stop()
        if extra_env is not None:
            self.env = {**(self.env or {}), **extra_env}
        self.start()

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


@contextmanager
def start_simulator(
    flash: str | os.PathLike[str],
    *args: str,
    env: dict[str, str] | None = None,
    firmware: str = "sim",
) -> Iterator[SimProcess]:
    """A running simulator on ``flash`` with CLI ``args`` (``"--ram", "64"``...).

    ``firmware="c"``: the C firmware's host build instead (same protocol, same flash file
    layout; it takes none of the simulator's options).
    """
    sim = SimProcess(flash, list(args), env, firmware)
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[SimProcess]:
    """A fresh simulator (default options) on ``tmp_path / "flash.bin"``."""
    with start_simulator(tmp_path / "flash.bin") as sim:
        yield sim


class SimLink:
    """A minimal stop-and-wait client for the simulator's tests: send frames, read replies."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=0)
        self.reader = FrameReader(1 << 16)
        self.seq = 0
        self.timeout = timeout
        self.unsolicited: list[Frame] = []

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> SimLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)

    def send(
        self, type_: int, payload: dict[str, Any] | None = None, *, seq: int | None = None,
        flags: int = 0, version: int = PROTO_MAJOR,
    ) -> int:  # fmt: skip
        if seq is None:
            self.seq = next_seq(self.seq)
            seq = self.seq
        self.port.write(encode_frame(Frame(type_, seq, payload or {}, flags, 0, version)))
        return seq

    def read_frame(self, timeout: float | None = None) -> Frame | None:
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for frame in self._pending():
                return frame
            left = end - time.monotonic()
            if left <= 0:
                return None
            select.select([self.port.fileno()], [], [], min(left, 0.05))
            data = self.port.read(65536)
            if data:
                self._buf.extend(self.reader.feed(data))

    _buf: list[Frame]

    def _pending(self) -> Iterator[Frame]:
        if not hasattr(self, "_buf"):
            self._buf = []
        while self._buf:
            frame = self._buf.pop(0)
            if frame.flags & Flags.UNSOLICITED:
                self.unsolicited.append(frame)
                continue
            yield frame

    def reply(self, seq: int, timeout: float | None = None) -> Frame:
        end = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.read_frame(max(end - time.monotonic(), 0.0))
            if frame is None:
                raise TimeoutError(f"no reply to seq {seq}")
            if frame.seq == seq:
                return frame

    def request(self, type_: int, payload: dict[str, Any] | None = None, **kw: Any) -> Frame:
        seq = self.send(type_, payload, **kw)
        return self.reply(seq)

    def ok(self, type_: int, payload: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        """The payload of a successful reply; an error reply raises AssertionError."""
        frame = self.request(type_, payload, **kw)
        assert not frame.is_error, f"{MsgType(type_).name} refused: {frame.payload}"
        return frame.payload

    def deploy(self, image: bytes, *, shape: list[int], confirm: bool = True, chunk: int = 1024):
        """DEPLOY_BEGIN, CHUNKs, COMMIT (and CONFIRM): the simplest correct upload."""
        digest = hashlib.sha256(image).digest()
        off = self.ok(MsgType.DEPLOY_BEGIN, {"len": len(image), "sha256": digest, "shape": shape})[
            "off_next"
        ]
        while off < len(image):
            data = image[off : off + chunk]
            off = self.ok(MsgType.DEPLOY_CHUNK, {"off": off, "data": data})["off_next"]
        reply = self.ok(MsgType.DEPLOY_COMMIT, {"sha256": digest})
        if confirm:
            self.ok(MsgType.DEPLOY_CONFIRM, {})
        return reply

    def hello(self, retries: int = 10) -> Frame:
        for _ in range(retries):
            seq = self.send(MsgType.HELLO, {"proto": [PROTO_MAJOR, 0]})
            try:
                return self.reply(seq, timeout=0.5)
            except TimeoutError:
                continue
        raise TimeoutError("simulator does not answer HELLO")


def flash_file(tmp: Path) -> Path:
    return tmp / "flash.bin"
