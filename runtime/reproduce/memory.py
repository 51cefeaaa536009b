"""Peak memory against sequence length: ANP streaming against full BPTT.

Each (method, length) runs in a fresh process (``python -m
twinpass.runtime.reproduce.memory METHOD LENGTH HIDDEN``) that prints its peak RSS
(``ru_maxrss``) before and after the run, so the difference is what the run itself needed.
ANP streams Mackey-Glass in chunks of 1000 through ``OnlineLearner.run``; full BPTT (plain
NumPy float32, for contrast) must keep every step's activity for its single backward pass,
so its memory grows with the sequence.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Any

from twinpass.core.errors import TwinpassError

METHODS = ("anp", "full-bptt")
CHUNK = 1000
HORIZON = 15


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's ``ru_maxrss`` survives exec: a probe started by a large parent (``twinpass
    reproduce`` itself) would report the parent's peak. ``VmHWM`` belongs to the process's
    own address space, so it is read first.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_anp(length: int, hidden: int) -> dict[str, float]:
    import numpy as np

    from twinpass.runtime import OnlineLearner
    from twinpass.runtime.tasks import MackeyGlassStream

    stream = MackeyGlassStream(seed=0)
    learner = OnlineLearner(1, 1, hidden, seed=0)
    # Load the compiled code before the baseline is taken.
    learner.run([[0.0]] * 2, [[0.0]] * 2)
    MackeyGlassStream(seed=1).next(2)
    before = peak_rss_mib()
    buf = stream.next(HORIZON)
    done = 0
    while done < length:
        n = min(CHUNK, length - done)
        # Input s[t], target s[t+15]: keep the last 15 values to pair across chunks.
        buf = np.concatenate([buf[-HORIZON:], stream.next(n)])
        learner.run(buf[:n, None], buf[HORIZON : HORIZON + n, None])
        done += n
    return {"before": before, "after": peak_rss_mib(), "steps": learner.steps}


def run_full_bptt(length: int, hidden: int) -> dict[str, float]:
    import numpy as np

    from twinpass.runtime.tasks import MackeyGlassStream

    g = np.random.default_rng(0)
    f32 = np.float32
    A = g.normal(0, 0.5, (hidden, 1)).astype(f32)
    R = g.normal(0, 1 / np.sqrt(hidden), (hidden, hidden)).astype(f32)
    B = g.normal(0, 0.1, (1, hidden)).astype(f32)
    MackeyGlassStream(seed=1).next(2)  # load the compiled generator before the baseline
    before = peak_rss_mib()
    s = MackeyGlassStream(seed=0).next(length + HORIZON).astype(f32)
    # Forward over the whole sequence, keeping what the backward pass needs.
    xs = np.zeros((length + 1, hidden), f32)
    for t in range(length):
        xs[t + 1] = np.tanh(A[:, 0] * s[t] + R @ xs[t])
    err = xs[1:] @ B[0] - s[HORIZON : HORIZON + length]
    gy = 2 * err / length
    gR = np.zeros_like(R)
    g_next = np.zeros(hidden, f32)
    for t in range(length - 1, -1, -1):
        ga = (gy[t] * B[0] + g_next) * (1 - xs[t + 1] ** 2)
        gR += np.outer(ga, xs[t])
        g_next = R.T @ ga
    R -= 1e-3 * gR
    return {"before": before, "after": peak_rss_mib(), "steps": length}


def measure(method: str, length: int, hidden: int = 100) -> dict[str, Any]:
    """Peak RSS of one run in a fresh process: ``peak_rss_mib`` and ``run_mib`` (its own)."""
    if method not in METHODS:
        raise TwinpassError(f"unknown memory method {method!r}: one of {', '.join(METHODS)}")
    proc = subprocess.run(
        [sys.executable, "-m", __name__, method, str(length), str(hidden)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise TwinpassError(f"memory probe {method} at {length} steps failed: {proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "method": method,
        "steps": length,
        "hidden": hidden,
        "peak_rss_mib": r["after"],
        "run_mib": r["after"] - r["before"],
    }


def _main(argv: list[str]) -> None:
    method, length, hidden = argv
    run = {"anp": run_anp, "full-bptt": run_full_bptt}[method]
    print(json.dumps(run(int(length), int(hidden))))


if __name__ == "__main__":
    _main(sys.argv[1:])
