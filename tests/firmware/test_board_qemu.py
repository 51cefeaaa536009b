"""The netduinoplus2 board layer under QEMU, through the bring-up echo app.

``firmware/board/netduinoplus2/uart_echo.c`` (built with ``APP=``) echoes bytes and answers
``B`` (boot line), ``T`` (millis, micros), ``L`` (a timed 2-million-instruction loop),
``F`` (flash erase/program/readback) and ``R`` (board_reset). Checked: the RX ring and its
interrupt lose nothing over 4 KB, SysTick time advances (and counts 1 ns per instruction
under ``-icount shift=0``), the RAM-emulated flash obeys erase/program rules, and a reset
boots again with the boot count kept, on the same pty.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from qemu_process import ARM_GCC, QEMU, build_arm, start_qemu

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(QEMU is None, reason="qemu-system-arm is not installed"),
    pytest.mark.skipif(ARM_GCC is None, reason="arm-none-eabi-gcc is not installed"),
]

ECHO_APP = "firmware/board/netduinoplus2/uart_echo.c"
COMMANDS = b"BTFLR"


@pytest.fixture(scope="module")
def echo_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_arm(tmp_path_factory.mktemp("arm-echo"), app=ECHO_APP)


class Echo:
    """A pyserial link to the echo app; bytes read past what a call needed stay in ``buf``."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, timeout=0.05)
        self.buf = b""

    def close(self) -> None:
        self.port.close()

    def read_until(self, marker: bytes, timeout: float = 5.0) -> bytes:
        """Everything up to and including ``marker``."""
        end = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() > end:
                raise TimeoutError(f"no {marker!r} within {timeout} s; got {self.buf[-200:]!r}")
            self.buf += self.port.read(4096)
        cut = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out

    def line(self, command: bytes, prefix: bytes, timeout: float = 5.0) -> bytes:
        """Send a command byte (or nothing), return the next line starting with ``prefix``."""
        self.port.write(command)
        self.read_until(prefix, timeout)
        return prefix + self.read_until(b"\n", timeout)[:-1]

    def sync(self, timeout: float = 15.0) -> int:
        """Until the app answers (output before the host opens the pty is lost and the first
        exchange can take a second): send B and wait; return the boot count."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.line(b"B", b"twinpass-echo boot ", timeout=0.5)
            except TimeoutError:
                if time.monotonic() > end:
                    raise
                continue
            time.sleep(0.1)  # let the answers to earlier retries arrive, then drop them
            self.port.reset_input_buffer()
            self.buf = b""
            return int(line.split()[-1])

    def roundtrip(self, data: bytes, timeout: float = 10.0) -> bytes:
        self.port.write(data)
        end = time.monotonic() + timeout
        while len(self.buf) < len(data) and time.monotonic() < end:
            self.buf += self.port.read(len(data) - len(self.buf))
        out, self.buf = self.buf[: len(data)], self.buf[len(data) :]
        return out


@pytest.fixture
def echo(echo_elf: Path) -> Iterator[Echo]:
    with start_qemu(echo_elf) as qemu:
        link = Echo(qemu.path)
        try:
            assert link.sync() == 1
            yield link
        finally:
            link.close()


def test_echo_4k_random_bytes_in_chunks(echo: Echo) -> None:
    rng = random.Random(7)
    data = bytes(b for b in rng.randbytes(6000) if b not in COMMANDS)[:4096]
    assert len(data) == 4096
    sent = 0
    end = time.monotonic() + 10.0
    while len(echo.buf) < len(data) and time.monotonic() < end:
        if sent < len(data):  # chunks of 1..512 bytes, written without waiting for the echo
            n = rng.randint(1, 512)
            echo.port.write(data[sent : sent + n])
            sent += n
        echo.buf += echo.port.read(65536)
    assert echo.buf == data
    echo.buf = b""
    assert echo.roundtrip(b"x" * 32) == b"x" * 32


def test_millis_and_micros_advance(echo: Echo) -> None:
    t1 = echo.line(b"T", b"T ").split()
    time.sleep(0.3)
    t2 = echo.line(b"T", b"T ").split()
    ms1, us1, ms2, us2 = int(t1[1]), int(t1[2]), int(t2[1]), int(t2[2])
    assert 250 <= ms2 - ms1 <= 5000  # guest time tracks wall time (loaded CI: generous)
    assert abs((us2 - us1) - 1000 * (ms2 - ms1)) <= 2000
    assert 0 <= us1 - 1000 * ms1 < 2000


def test_flash_erase_program_readback(echo: Echo) -> None:
    assert echo.line(b"F", b"flash ") == b"flash ok"
    assert echo.roundtrip(b"still here") == b"still here"


def test_reset_boots_again_on_the_same_pty(echo: Echo) -> None:
    echo.port.write(b"R")
    echo.read_until(b"reset\n")
    assert echo.line(b"", b"twinpass-echo boot ", timeout=10.0) == b"twinpass-echo boot 2"
    assert echo.roundtrip(b"after reset") == b"after reset"
    assert echo.line(b"B", b"twinpass-echo boot ") == b"twinpass-echo boot 2"


def test_systick_counts_instructions_under_icount(echo_elf: Path) -> None:
    with start_qemu(echo_elf, icount=True) as qemu:
        link = Echo(qemu.path)
        try:
            link.sync()
            # 10^6 iterations of subs + bne = 2,000,000 instructions = 2,000 us at 1 ns each.
            us = int(link.line(b"L", b"L ").split()[1])
            assert 1990 <= us <= 2050, us
        finally:
            link.close()
