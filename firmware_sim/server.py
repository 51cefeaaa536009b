"""The simulator process: the firmware on a pseudo-terminal, until SIGTERM or SIGINT.

It opens a pty pair, keeps the slave end open (otherwise reads on the master fail with EIO
until a host connects), puts it in raw mode, prints the slave's path on one line of stdout,
and serves the protocol in a single-threaded select loop. Output is queued and written only
when the master is writable, so a host that stops reading never blocks the loop (a pty
buffers only ~16 KB); ``--baud`` throttles output to baud/10 bytes per second (8N1 framing)
and ``--step-us`` adds compute time per step.
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import sys
import time
import tty
from collections import deque
from collections.abc import Sequence

from twinpass.protocol.frame import FrameReader

from . import fast
from .firmware import MAX_FRAME, Firmware
from .flash import DEFAULT_SLOT_SIZE, Flash


class Throttle:
    """A token bucket of ``rate`` bytes per second (None: unlimited)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.capacity = max(64.0, rate * 0.01) if rate else 0.0
        self.tokens = self.capacity
        self.t = time.monotonic()

    def allowance(self) -> int:
        if not self.rate:
            return 1 << 20
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
        self.t = now
        return int(self.tokens)

    def spend(self, n: int) -> None:
        if self.rate:
            self.tokens -= n

    def wait(self) -> float:
        """Seconds until one more byte may go."""
        if not self.rate or self.tokens >= 1:
            return 0.0
        return (1 - self.tokens) / self.rate


class PtyServer:
    """The select loop between a pty master and a :class:`Firmware`."""

    def __init__(self, firmware: Firmware, *, baud: int | None = None) -> None:
        self.fw = firmware
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.reader = FrameReader(MAX_FRAME)
        self.fw.reader_stats = self.reader.stats
        self.out: deque[bytes] = deque()
        self.throttle = Throttle(baud / 10 if baud else None)
        self.stop = False

    def queue(self, data: bytes) -> None:
        if data:
            self.out.append(data)

    def _flush(self) -> None:
        budget = self.throttle.allowance()
        while self.out and budget > 0:
            head = self.out[0]
            try:
                n = os.write(self.master, head[:budget])
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return
                raise
            self.throttle.spend(n)
            budget -= n
            if n == len(head):
                self.out.popleft()
            else:
                self.out[0] = head[n:]

    def _read(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no reader/writer on the slave side right now
                time.sleep(0.01)
                return
            raise
        for frame in self.reader.feed(data):
            reply, reboot = self.fw.handle(frame)
            self.queue(reply)
            if reboot:
                # The reply leaves first, then the device "reboots": a new epoch.
                self._drain(1.0)
                self.reader = FrameReader(MAX_FRAME)
                self.queue(self.fw.boot())
                self.fw.reader_stats = self.reader.stats
                break

    def _drain(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.out and time.monotonic() < end:
            self._flush()
            if self.out:
                select.select([], [self.master], [], 0.01)

    def serve(self) -> None:
        while not self.stop:
            want_write = bool(self.out) and self.throttle.wait() == 0
            timeout = 0.1
            if self.out and not want_write:
                timeout = min(timeout, max(self.throttle.wait(), 0.0005))
            wlist = [self.master] if want_write else []
            readable = select.select([self.master], wlist, [], timeout)[0]
            if readable:
                self._read()
            if self.out:
                self._flush()

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m twinpass.firmware_sim",
        description="Serve the twinpass protocol on a pseudo-terminal (prints its path).",
    )
    p.add_argument("--flash", default=None, help="flash image file (default: a temporary one)")
    p.add_argument("--ram", type=int, default=128, help="RAM in KiB (default 128)")
    p.add_argument("--baud", type=int, default=None, help="throttle output to baud/10 bytes/s")
    p.add_argument("--step-us", type=float, default=0.0, help="added compute time per step")
    p.add_argument("--seed", type=int, default=0, help="noise seed at boot")
    p.add_argument("--slot-size", type=int, default=DEFAULT_SLOT_SIZE, help=argparse.SUPPRESS)
    return p


def run(
    flash_path: str | None,
    *,
    ram_kib: int = 128,
    baud: int | None = None,
    step_us: float = 0.0,
    seed: int = 0,
    slot_size: int = DEFAULT_SLOT_SIZE,
    announce=None,
) -> None:
    """Boot the firmware and serve until SIGTERM/SIGINT; ``announce(path)`` gets the pty."""
    tmp = None
    if flash_path is None:
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix="twinpass-flash-", suffix=".bin")
        os.close(fd)
        os.unlink(tmp)
        flash_path = tmp
    # Compile (or load from Numba's cache) the step kernels before announcing the pty, so
    # that the first STEP is not slowed by seconds of compilation (a host would time out).
    fast.warm_up()
    flash = Flash(flash_path, slot_size=slot_size)
    server = None
    try:
        fw = Firmware(flash, ram_kib=ram_kib, step_us=step_us, seed=seed)
        server = PtyServer(fw, baud=baud)
        server.queue(fw.announcement)

        def on_signal(signum, frame):
            server.stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        (announce or _print_path)(server.path)
        server.serve()
    finally:
        if server is not None:
            server.close()
        flash.close()
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _print_path(path: str) -> None:
    sys.stdout.write(path + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from twinpass.core.errors import TwinpassError

    try:
        run(
            args.flash,
            ram_kib=args.ram,
            baud=args.baud,
            step_us=args.step_us,
            seed=args.seed,
            slot_size=args.slot_size,
        )
    except TwinpassError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
