"""A fault-injecting proxy between two pseudo-terminals: host <-> proxy <-> device.

Run as a process (``python tests/fault_proxy.py --target PTY [FAULT ...]``): it opens a pty
of its own, prints that pty's path on one line of stdout, opens the device's pty (the
simulator's), and forwards bytes both ways, frame by frame (a frame is everything up to and
including a ``0x00``), injecting faults. Every decision is drawn from a generator seeded by
``--seed`` and the direction, one draw per frame in order, so the nth frame of a direction
meets the same fate in every run with the same seed.

A fault is ``KIND:DIR:WHEN``; DIR is ``up`` (host -> device), ``down`` or ``both``; WHEN is
a probability per frame (``0.05``), a probability per byte (``5e-4/B``: a frame of n bytes
is hit with probability 1 - (1 - p)^n, so long frames are hit more often, as on a noisy
line) or a list of frame numbers, 0-based, per direction (``@3,7``). Kinds:

- ``flip``: flip one random bit of the frame (the delimiter included);
- ``drop``: drop one random byte of the frame (the delimiter included);
- ``nodelim``: drop the frame's delimiter, so it runs into the next frame;
- ``garbage``: send 1-40 random bytes (zeros included) before the frame;
- ``dup``: send the frame twice;
- ``lose``: drop the whole frame;
- ``stale``: hold the frame back and send it after the next frame of its direction (or
  after ``--stale-delay`` seconds), so a reply arrives after its retransmission's;
- ``disconnect``: at that frame, close both ends and exit (WHEN must be ``@N``).

``--skip N`` spares the first N frames of each direction (the greeting). On exit (SIGTERM,
or a disconnect) the proxy writes the faults it injected as JSON to ``--stats FILE``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import select
import signal
import sys
import time
import tty
from dataclasses import dataclass, field

KINDS = ("flip", "drop", "nodelim", "garbage", "dup", "lose", "stale", "disconnect")
DIRS = ("up", "down")


@dataclass
class Fault:
    kind: str
    dirs: tuple[str, ...]
    prob: float = 0.0
    frames: frozenset[int] = frozenset()
    per_byte: bool = False

    def chance(self, nbytes: int) -> float:
        """The probability that a frame of ``nbytes`` bytes is hit."""
        return 1.0 - (1.0 - self.prob) ** nbytes if self.per_byte else self.prob

    @classmethod
    def parse(cls, spec: str) -> Fault:
        try:
            kind, d, when = spec.split(":", 2)
        except ValueError:
            raise argparse.ArgumentTypeError(f"fault {spec!r} is not KIND:DIR:WHEN") from None
        if kind not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown fault kind {kind!r}: one of {KINDS}")
        if d not in (*DIRS, "both"):
            raise argparse.ArgumentTypeError(f"direction {d!r} is not up, down or both")
        dirs = DIRS if d == "both" else (d,)
        if when.startswith("@"):
            frames = frozenset(int(v) for v in when[1:].split(",") if v)
            return cls(kind, dirs, 0.0, frames)
        if kind == "disconnect":
            raise argparse.ArgumentTypeError("disconnect needs a frame number: disconnect:up:@N")
        if when.endswith("/B"):
            return cls(kind, dirs, float(when[:-2]), per_byte=True)
        return cls(kind, dirs, float(when))


@dataclass
class Direction:
    """One direction's stream: its frame counter, generator, held frame and output."""

    name: str
    rng: random.Random
    src: int
    dst: int
    partial: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    frames: int = 0
    held: list[tuple[float, bytes]] = field(default_factory=list)


class Proxy:
    def __init__(self, args: argparse.Namespace) -> None:
        self.faults: list[Fault] = args.fault
        self.skip = args.skip
        self.stale_delay = args.stale_delay
        self.stats_path = args.stats
        self.injected: dict[str, int] = {}
        self.log: list[str] = []
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # raw both ways: the line discipline must not touch bytes
        self.device = os.open(args.target, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.device)
        for fd in (self.master, self.device):
            os.set_blocking(fd, False)
        self.up = Direction("up", random.Random(f"{args.seed}:up"), self.master, self.device)
        self.down = Direction("down", random.Random(f"{args.seed}:down"), self.device, self.master)
        self.running = True

    def path(self) -> str:
        return os.ttyname(self.slave)

    def count(self, what: str, d: Direction, n: int) -> None:
        key = f"{what}:{d.name}"
        self.injected[key] = self.injected.get(key, 0) + 1
        self.log.append(f"{key}@{n}")

    def handle(self, d: Direction, frame: bytes) -> None:
        """Apply the faults to one frame of direction ``d`` and queue what goes out."""
        n = d.frames
        d.frames += 1
        # One draw per fault per frame, always, so the schedule does not depend on outcomes.
        hits = []
        for f in self.faults:
            draw = d.rng.random()
            pick = d.rng.random()
            hit = n in f.frames or draw < f.chance(len(frame))
            if d.name in f.dirs and n >= self.skip and hit:
                hits.append((f.kind, pick))
        now = time.monotonic()
        out = [frame]
        for kind, pick in hits:
            if kind == "disconnect":
                self.count(kind, d, n)
                self.running = False
                return
            if kind == "flip":
                b = bytearray(out[-1])
                bit = int(pick * len(b) * 8)
                b[bit // 8] ^= 1 << (bit % 8)
                out[-1] = bytes(b)
            elif kind == "drop":
                i = int(pick * len(out[-1]))
                out[-1] = out[-1][:i] + out[-1][i + 1 :]
            elif kind == "nodelim":
                out[-1] = out[-1][:-1]
            elif kind == "garbage":
                g = random.Random(pick)
                out.insert(0, bytes(g.randrange(256) for _ in range(g.randint(1, 40))))
            elif kind == "dup":
                out.append(out[-1])
            elif kind == "lose":
                out = []
            elif kind == "stale":
                d.held.extend((now + self.stale_delay, b) for b in out)
                out = []
            self.count(kind, d, n)
            if not out:
                break
        for b in out:
            d.out += b
        if out:  # a frame went through: what was held back follows it, now late
            for _, b in d.held:
                d.out += b
            d.held.clear()

    def pump(self, d: Direction, data: bytes) -> None:
        d.partial += data
        while self.running:
            end = d.partial.find(b"\x00")
            if end < 0:
                return
            frame = bytes(d.partial[: end + 1])
            del d.partial[: end + 1]
            self.handle(d, frame)

    def run(self) -> None:
        fds = {self.up.src: self.up, self.down.src: self.down}
        while self.running:
            now = time.monotonic()
            for d in (self.up, self.down):
                due = [b for t, b in d.held if t <= now]
                if due:
                    d.held = [(t, b) for t, b in d.held if t > now]
                    for b in due:
                        d.out += b
            wlist = [d.dst for d in (self.up, self.down) if d.out]
            try:
                r, w, _ = select.select(list(fds), wlist, [], 0.02)
            except InterruptedError:
                continue
            for fd in r:
                try:
                    data = os.read(fd, 65536)
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EINTR):
                        continue
                    if fd == self.master and exc.errno == errno.EIO:
                        continue  # no host on our pty yet (we hold the slave open)
                    self.running = False
                    break
                if not data:
                    self.running = False
                    break
                self.pump(fds[fd], data)
            for d in (self.up, self.down):
                if d.dst in w and d.out:
                    try:
                        n = os.write(d.dst, d.out)
                    except OSError as exc:
                        if exc.errno in (errno.EAGAIN, errno.EINTR):
                            continue
                        if exc.errno == errno.EIO and d.dst == self.master:
                            d.out.clear()  # the host went away: nobody to deliver to
                            continue
                        self.running = False
                        break
                    del d.out[:n]
        self.finish()

    def finish(self) -> None:
        for fd in (self.master, self.slave, self.device):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.stats_path:
            with open(self.stats_path + ".tmp", "w") as f:
                json.dump({"injected": self.injected, "log": self.log}, f)
            os.replace(self.stats_path + ".tmp", self.stats_path)


class ProxyProcess:
    """The proxy as a subprocess (for tests): ``path`` is the pty the host opens."""

    def __init__(
        self, target: str, *faults: str, seed: int = 0, skip: int = 0, stale_delay: float = 0.5
    ) -> None:
        import subprocess
        import tempfile

        # Imported here: the proxy process itself (this file run as a script) needs neither.
        import child_processes

        self._children = child_processes

        fd, self.stats_path = tempfile.mkstemp(suffix=".json", prefix="fault-proxy-")
        os.close(fd)
        os.unlink(self.stats_path)
        cmd = [
            sys.executable, __file__, "--target", target, "--seed", str(seed),
            "--skip", str(skip), "--stale-delay", str(stale_delay),
            "--stats", self.stats_path, *faults,
        ]  # fmt: skip
        # Registered and killed with the test process, like the simulators.
        self.proc = child_processes.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], 20)
            self.path = self.proc.stdout.readline().decode().strip() if ready else ""
            if not self.path:
                raise RuntimeError("the fault proxy did not print its pty path")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> dict[str, int]:
        """Stop it (if it still runs); return the faults it injected, by ``kind:dir``."""
        # SIGTERM makes it write its stats; SIGKILL after 5 s if it hangs.
        self._children.stop(self.proc)
        return self.injected()

    def injected(self) -> dict[str, int]:
        try:
            with open(self.stats_path) as f:
                return dict(json.load(f)["injected"])
        except FileNotFoundError:
            return {}

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        try:
            os.unlink(self.stats_path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="the device's pty path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", type=int, default=0, help="spare the first N frames each way")
    ap.add_argument("--stale-delay", type=float, default=0.5)
    ap.add_argument("--stats", default=None, help="write the injected faults here as JSON")
    ap.add_argument("fault", nargs="*", type=Fault.parse, help="KIND:DIR:WHEN")
    args = ap.parse_args(argv)
    proxy = Proxy(args)

    def stop(signum: int, frame: object) -> None:
        proxy.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(proxy.path(), flush=True)
    proxy.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
