"""Seconds to compile the Numba kernels from a cold cache, per path a user meets first.

Each case runs in a fresh process with an empty ``NUMBA_CACHE_DIR`` (what a fresh install,
and CI, start from): it builds a learner, runs a short block and a prediction, and reports
the wall time of that first use — which is compilation, the stream itself takes
milliseconds. A second run of the same case on the now warm cache is printed beside it.

    python benchmarks/compile_time.py [--cases host-f32,host-f64,analog,eprop,uoro,rtrl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CASES = {
    "host-f32": ({}, "float32", None),
    "host-f64": ({}, "float64", None),
    "analog": ({}, "float32", "pcm"),
    "eprop": ({"rule": "eprop"}, "float32", None),
    "uoro": ({"rule": "uoro"}, "float32", None),
    "rtrl": ({"rule": "rtrl", "leak": 1.0}, "float32", None),
}

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from twinpass.devices.analog import AnalogDevice
from twinpass.runtime import OnlineLearner, RuleConfig
rule, dtype, preset = json.loads(sys.argv[1])
t1 = time.perf_counter()
u = np.sin(0.2 * np.arange(301)).astype(np.float32)[:, None]
dev = None if preset is None else AnalogDevice(preset)
ln = OnlineLearner(1, 1, 20, RuleConfig(**rule), seed=0, dtype=dtype, device=dev)
ln.run(u[:-1], u[1:])
ln.evaluate(u[:-1, None, :], u[1:, None, :])
print(json.dumps({"import": t1 - t0, "first_use": time.perf_counter() - t1}))
"""


def run_case(case: str, cache: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(CASES[case])],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}: choose from {', '.join(CASES)}")
    print("| path (N = 20, 300 steps) | cold: first use (s) | warm: first use (s) |")
    print("|---|---|---|")
    for case in cases:
        with tempfile.TemporaryDirectory() as cache:
            cold = run_case(case, cache)
            warm = run_case(case, cache)
        print(f"| {case} | {cold['first_use']:.1f} | {warm['first_use']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
