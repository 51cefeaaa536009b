"""Serial link throughput: STEP round trips per second, bytes per step, deploy time.

Runs a firmware as a subprocess on a pseudo-terminal (``--firmware``: the Python
simulator, the C firmware built for this machine, or the C firmware's netduinoplus2 image
under QEMU) and drives it with the host backend (``twinpass.devices.serial``), at
N = 32, 64, 128 (one input, one output):

- STEP round trips per second with one step per message, lockstep (one in flight) and
  pipelined (the device's rx_window in flight), and the bytes on the wire per step (both
  directions, framing included); PING round trips as the link's floor;
- steps per second of ``SerialDevice.step`` as the backend sends them: as many steps per
  STEP message as fit a frame (up to the device's max_steps), lockstep and pipelined;
- deploy time (BEGIN, CHUNKs, COMMIT, CONFIRM) per model size.

- with ``--firmware qemu --icount``: QEMU counts one guest instruction per nanosecond of
  guest time, so the firmware's own step timer (STATS ``step_us``, its mean compute time
  per step) reads Cortex-M4 instructions per step, in thousands. Rates under icount are
  not wall-clock rates of anything real and are not reported.

Every number is the median of ``--repeats`` measurements.

    python benchmarks/serial_link.py [--firmware sim|c|qemu] [--icount] [--sizes 32,64,128]
        [--steps 1000] [--repeats 5] [--network paper|learner|nlms] [--out FILE.md]

``--network`` (as in ``firmware_budget.py``): the paper's network (the default, ANP's own
readout), the learner's as a device runs it (RLS over [xh, u, 1], P0 = 10) or the same
with NLMS.

A pty ignores the baud rate: these are the limits of the host, the simulator and the pty,
not of a UART (at 115200 baud a 40-byte STEP frame alone takes 3.5 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from firmware_budget import NETWORKS  # one definition of the networks both measure

from twinpass.devices.serial import SerialDevice, quantise_model
from twinpass.firmware_sim import c_firmware
from twinpass.firmware_sim.process import firmware_process
from twinpass.protocol.messages import MsgType, pack_array
from twinpass.protocol.qformat import encode_activities
from twinpass.runtime import Params, RuleConfig


def step_requests(n: int, steps: int) -> Iterator[tuple[int, dict]]:
    g = np.random.default_rng(0)
    x = encode_activities(g.standard_normal(steps))
    y = encode_activities(0.5 * g.standard_normal(steps))
    for t in range(steps):
        yield (
            MsgType.STEP,
            {
                "t": t,
                "steps": 1,
                "x": pack_array(x[t : t + 1], "int32"),
                "y": pack_array(y[t : t + 1], "int32"),
                "learn": True,
            },
        )


def round_trips(dev: SerialDevice, n: int, steps: int, window: int) -> tuple[float, float]:
    """(STEP round trips per second, wire bytes per step) with one step per message."""
    link = dev.link
    # STEPs are numbered from the device's t_next (protocol 1.1): RESET state makes it 0,
    # before (these raw STEPs count from 0) and after (so that dev.step numbers on from 0).
    dev.reset_state()
    before = link.stats.bytes_out + link.stats.bytes_in
    t0 = time.perf_counter()
    count = sum(1 for _ in link.pipeline(step_requests(n, steps), window=window))
    wall = time.perf_counter() - t0
    dev.reset_state()
    assert count == steps
    return steps / wall, (link.stats.bytes_out + link.stats.bytes_in - before) / steps


def pings(dev: SerialDevice, count: int) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        dev.link.request(MsgType.PING)
    return count / (time.perf_counter() - t0)


def backend_steps(dev: SerialDevice, steps: int) -> tuple[float, float]:
    """(steps per second, wire bytes per step) of SerialDevice.step on one block."""
    g = np.random.default_rng(1)
    U = g.standard_normal((steps, 1, 1)).astype(np.float32)
    Y = (0.5 * g.standard_normal((steps, 1, 1))).astype(np.float32)
    link = dev.link
    before = link.stats.bytes_out + link.stats.bytes_in
    t0 = time.perf_counter()
    dev.step(U, Y)
    wall = time.perf_counter() - t0
    return steps / wall, (link.stats.bytes_out + link.stats.bytes_in - before) / steps


def instructions_per_step(dev: SerialDevice, steps: int) -> tuple[float, float]:
    """(guest instructions per step, 0) from the device's step timer under QEMU's icount."""
    backend_steps(dev, steps)
    stats = dev.link.request(MsgType.STATS)
    return stats["step_us"] * 1000.0, 0.0


def median(
    repeats: int, measure: Callable[..., tuple[float, float]], *args: Any
) -> tuple[float, float]:
    """The median of ``repeats`` measurements (rate, bytes): the machine is shared."""
    runs = [measure(*args) for _ in range(repeats)]
    return statistics.median(a for a, _ in runs), statistics.median(b for _, b in runs)


def command_line(argv: list[str] | None) -> str:
    args = argv if argv is not None else sys.argv[1:]
    return ("python benchmarks/serial_link.py " + " ".join(args)).strip()


def emit(lines: list[str], out: str | None) -> int:
    """Print the markdown (and write it to ``out``); the exit status."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="32,64,128")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the markdown here")
    ap.add_argument("--firmware", choices=c_firmware.FIRMWARES, default="sim")
    ap.add_argument("--network", choices=sorted(NETWORKS), default="paper")
    ap.add_argument(
        "--icount", action="store_true", help="qemu only: instructions per step, no rates"
    )
    args = ap.parse_args(argv)
    if args.icount:
        if args.firmware != "qemu":
            ap.error("--icount needs --firmware qemu")
        return icount_main(args, argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    rule = RuleConfig(**NETWORKS[args.network])
    rt_rows, be_rows, dep_rows = [], [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        firmware_process(args.firmware, str(Path(tmp) / "flash.bin")) as path,
    ):
        for n in sizes:
            params = _params(n, rule, 0)
            lock = SerialDevice(path, window=1)
            lock.load(params, rule.resolve(1, n, 1), seed=0)
            window = lock.link.caps.rx_window
            r = args.repeats
            ping = statistics.median(pings(lock, 1000) for _ in range(r))
            rt_lock, bytes_lock = median(r, round_trips, lock, n, args.steps, 1)
            rt_pipe, bytes_pipe = median(r, round_trips, lock, n, args.steps, window)
            be_lock, be_bytes = median(r, backend_steps, lock, args.steps)
            lock.close()
            pipe = SerialDevice(path, window=window)
            pipe.load(params, rule.resolve(1, n, 1), seed=0)
            be_pipe, _ = median(r, backend_steps, pipe, args.steps)
            times = []
            images = [quantise_model(_params(n, rule, s), rule.resolve(1, n, 1)) for s in (1, 2)]
            for r in range(args.repeats):
                t0 = time.perf_counter()
                pipe.deploy_image(images[r % 2])  # alternate: every deploy uploads
                times.append(time.perf_counter() - t0)
            pipe.close()
            rt_rows.append((n, ping, rt_lock, rt_pipe, window, bytes_lock, bytes_pipe))
            be_rows.append((n, be_lock, be_pipe, be_bytes))
            dep_rows.append((n, len(images[0]), statistics.median(times), min(times)))
            print(f"N={n} done", file=sys.stderr, flush=True)
    lines = [
        f"Command: `{command_line(argv)}` (the {args.firmware} firmware and the host on this "
        "machine, one pty; "
        f"{args.steps} steps per measurement, median of {args.repeats} measurements; ANP, "
        f"1 input, 1 output, the {args.network} network).",
        "",
        "STEP round trips, one step per message:",
        "",
        "| N | PING round trips/s | STEP lockstep /s | STEP pipelined /s (window) | bytes/step "
        "lockstep | bytes/step pipelined |",
        "|---|---|---|---|---|---|",
        *(
            f"| {n} | {p:,.0f} | {a:,.0f} | {b:,.0f} ({w}) | {c:.1f} | {d:.1f} |"
            for n, p, a, b, w, c, d in rt_rows
        ),
        "",
        "`SerialDevice.step` (as many steps per STEP message as fit a frame, up to max_steps):",
        "",
        "| N | steps/s lockstep | steps/s pipelined | bytes/step |",
        "|---|---|---|---|",
        *(f"| {n} | {a:,.0f} | {b:,.0f} | {c:.1f} |" for n, a, b, c in be_rows),
        "",
        f"Deploy (BEGIN, CHUNKs of max_frame - 64 bytes, COMMIT, CONFIRM; median of "
        f"{args.repeats}):",
        "",
        "| N | image bytes | median s | min s |",
        "|---|---|---|---|",
        *(f"| {n} | {b:,} | {m:.4f} | {lo:.4f} |" for n, b, m, lo in dep_rows),
    ]
    return emit(lines, args.out)


def _params(n: int, rule: RuleConfig, seed: int) -> dict:
    """A 1-n-1 model for ``rule``'s network (the readout's input columns when it has them)."""
    return Params.init(1, n, 1, seed=seed, readout_inputs=rule.readout_inputs).arrays()


def icount_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Instructions per step of the netduinoplus2 image, one QEMU per size (a fresh count)."""
    rule = RuleConfig(**NETWORKS[args.network])
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with ExitStack() as stack:
            path = stack.enter_context(firmware_process("qemu", "", icount=True))
            dev = SerialDevice(path, window=1)
            stack.callback(dev.close)
            dev.load(_params(n, rule, 0), rule.resolve(1, n, 1), seed=0)
            runs = [instructions_per_step(dev, args.steps)[0] for _ in range(args.repeats)]
            rows.append((n, statistics.median(runs), min(runs), max(runs)))
            print(f"N={n} done", file=sys.stderr, flush=True)
    lines = [
        f"Command: `{command_line(argv)}` (QEMU -icount shift=0: one guest instruction per ns; "
        f"the firmware's mean compute time per step over {args.steps} learning steps, "
        f"read {args.repeats} times; ANP, 1 input, 1 output, the {args.network} network).",
        "",
        "| N | Cortex-M4 instructions per step (median) | min | max |",
        "|---|---|---|---|",
        *(f"| {n} | {m:,.0f} | {lo:,.0f} | {hi:,.0f} |" for n, m, lo, hi in rows),
    ]
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
