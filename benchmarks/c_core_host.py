"""Steps per second of the portable C core's host build against the Python simulator.

Builds ``twinpass_core_host`` (firmware/build.sh with ``--cflags``, default -O2) into a
temporary folder, then for each hidden size runs a 1-N-1 model (RuleConfig defaults,
learning on, targets every step) on the harness's built-in input stream (a triangle wave,
target half of it) in the C core (``twinpass_core_host bench``: CPU time of the step loop)
and in-process through :class:`twinpass.firmware_sim.fixed_point.FixedNet` (the
Numba-compiled loops; wall time of the ``step`` calls), median of a few repeats, and checks
that both produced the same predictions (the harness prints a checksum of them). With
``--callgrind`` it also counts instructions per step with ``valgrind --tool=callgrind``
(x86-64 host instructions, not Cortex-M ones: (Ir of K steps - Ir of 0 steps) / K).

    python benchmarks/c_core_host.py                       # N = 32, 64, 128
    python benchmarks/c_core_host.py --hidden 32 --callgrind
    python benchmarks/c_core_host.py --cflags "-O3 -march=native"   # as Numba compiles
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from twinpass.firmware_sim.fixed_point import FixedNet
from twinpass.protocol import model_image as mi
from twinpass.protocol.hyper import hyper_from_rule
from twinpass.protocol.qformat import W_FRAC, quantise_array
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


def build(out: Path, cflags: str) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler (cc or gcc) on PATH")
    env = {**os.environ, "CC": cc, "CFLAGS": cflags}
    subprocess.run(["sh", str(FIRMWARE / "build.sh"), str(out)], check=True, env=env,
                   capture_output=True)  # fmt: skip
    return out / "twinpass_core_host"


def image(n: int, seed: int = 0) -> bytes:
    p = Params.init(1, n, 1, seed=seed)
    hyper = hyper_from_rule(RuleConfig(**PAPER_NETWORK).resolve(1, n, 1))
    return mi.build(*(quantise_array(m, W_FRAC) for m in (p.A, p.R, p.B)), None, hyper)


def c_rate(exe: Path, model: Path, steps: int) -> tuple[float, int]:
    out = subprocess.run([str(exe), "bench", str(model), str(steps)], check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[5]), int(out[7])


def python_rate(img: bytes, steps: int) -> tuple[float, int]:
    m = mi.parse(img)
    net = FixedNet(m.A, m.R, m.B, m.D, m.hyper, batch=1, seed=0)
    check = 0
    t0 = time.perf_counter()
    for k in range(steps):
        tri = (k * 1031) % 131072 - 65536
        half = -((-tri) // 2) if tri < 0 else tri // 2  # C's truncating tri / 2
        out = net.step(np.array([[tri]]), np.array([[half]]), True, k)
        check += int(out.y1[0, 0])
    return steps / (time.perf_counter() - t0), check


def instructions(exe: Path, model: Path, steps: int, tmp: Path) -> float:
    def ir(k: int) -> int:
        cg = tmp / f"cg.{k}.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={cg}",
                        str(exe), "bench", str(model), str(k)],
                       check=True, capture_output=True)  # fmt: skip
        for line in cg.read_text().splitlines():
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
        raise RuntimeError("no callgrind summary")

    return (ir(steps) - ir(0)) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5, help="rough length of one C run")
    ap.add_argument("--py-steps", type=int, default=2000)
    ap.add_argument("--cflags", default="-O2", help="optimisation flags of the C build")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--callgrind-steps", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        exe = build(tmp, args.cflags)
        print("| N | C host steps/s | Python sim steps/s | C / Python |"
              + (" x86-64 instr/step |" if args.callgrind else ""))  # fmt: skip
        print("|---|---|---|---|" + ("---|" if args.callgrind else ""))
        for n in args.hidden:
            img = image(n)
            model = tmp / f"n{n}.tpmi"
            model.write_bytes(img)
            probe, _ = c_rate(exe, model, 200)
            steps = max(1000, int(probe * args.seconds))
            c_runs = [c_rate(exe, model, steps) for _ in range(args.repeats)]
            python_rate(img, 10)  # compile / load the Numba kernels
            py_runs = [python_rate(img, args.py_steps) for _ in range(args.repeats)]
            _, c_check = c_rate(exe, model, args.py_steps)
            if c_check != py_runs[0][1]:
                raise SystemExit(f"N={n}: C and Python predictions differ")
            c = statistics.median(r for r, _ in c_runs)
            py = statistics.median(r for r, _ in py_runs)
            row = f"| {n} | {c:,.0f} | {py:,.0f} | {c / py:.1f}x |"
            if args.callgrind:
                row += f" {instructions(exe, model, args.callgrind_steps, tmp):,.0f} |"
            print(row, flush=True)


if __name__ == "__main__":
    main()
