"""What each device learns with the learner's rules: the device against the host's float
learner on the same task, the same rule and the same seed (issue 13's targets).

Runs the Mackey-Glass task of ``twinpass hil`` (15 steps ahead, the training series
cycled for ``--steps`` online steps from a zero state, then the frozen test MSE) for:

- the analog substrate (``pcm`` preset at N = ``--hidden``, default 100), against the host:
  the default learner (RLS readout in the digital periphery), the NLMS readout, and the
  paper's network (the readout learned in the output tile by ANP); plus the ``ideal``
  preset and PCM with its noise off (``noise_scale`` 0), which say where the gap comes
  from.

``--factors`` then shows which of PCM's non-idealities costs what (the default learner,
seed 0): switched off one group at a time from ``pcm``, and switched on one at a time from
PCM with every one of them off. A line of the host learning from two noisy replicas says
what deliberate node noise on the readout's replica costs (the analog device added it
until 2026-12-05).

The firmware numbers come from ``twinpass hil`` itself (see benchmarks/RESULTS.md).

    python benchmarks/device_quality.py [--steps 20000] [--hidden 100] [--seeds 0] [--factors]
"""

from __future__ import annotations

import argparse
import sys
import time

from twinpass.devices.analog import AnalogDevice
from twinpass.devices.analog_model import PRESETS
from twinpass.runtime import OnlineLearner, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.tasks import make_task

#: Steps per call, as ``twinpass hil`` streams them (the analog guard runs between calls).
BLOCK = 256
RULES = {"default (RLS)": {}, "NLMS": {"readout": "nlms"}, "paper network": PAPER_NETWORK}
ANALOG = {
    "pcm": ("pcm", {}),
    "ideal": ("ideal", {}),
    "pcm, noise off": ("pcm", {"noise_scale": 0.0}),
}


#: PCM with one group of non-idealities switched off (AnalogParams overrides).
FACTORS = {
    "pcm": {},
    "no drift": {"drift_scale": 0.0},
    "no drift, no 1/f noise": {"drift_scale": 0.0, "flicker_scale": 0.0},
    "no read or output noise": {"read_noise": 0.0, "out_noise": 0.0},
    "16-bit converters": {"inp_bits": 16, "out_bits": 16},
    "no programming noise or levels": {"prog_scale": 0.0, "levels": 0},
    "fine, exact pulses": {"dw_min": 2.0**-20, "dw_dtod": 0.0, "dw_c2c": 0.0},
    "no stuck or varying devices": {"stuck_fraction": 0.0, "gmax_dtod": 0.0},
}

#: PCM with every non-ideality off (continuous converters included), then one group on.
NONE = {
    "prog_scale": 0.0,
    "drift_scale": 0.0,
    "read_noise": 0.0,
    "flicker_scale": 0.0,
    "out_noise": 0.0,
    "gmax_dtod": 0.0,
    "stuck_fraction": 0.0,
    "inp_bits": 0,
    "out_bits": 0,
}
_PCM = PRESETS["pcm"]
ALONE = {
    "none": {},
    "8-bit converters": {"inp_bits": _PCM.inp_bits, "out_bits": _PCM.out_bits},
    "output noise": {"out_noise": _PCM.out_noise},
    "read noise": {"read_noise": _PCM.read_noise},
    "drift": {"drift_scale": _PCM.drift_scale},
    "1/f noise": {"flicker_scale": _PCM.flicker_scale},
    "programming noise": {"prog_scale": _PCM.prog_scale},
    "stuck and varying devices": {
        "stuck_fraction": _PCM.stuck_fraction,
        "gmax_dtod": _PCM.gmax_dtod,
    },
}


def run(rule: dict, device: tuple[str, dict] | None, hidden: int, steps: int, seed: int):
    task = make_task("mackey-glass")
    dev = None if device is None else AnalogDevice(device[0], **device[1])
    ln = OnlineLearner(task.n_in, task.n_out, hidden, RuleConfig(**rule), seed=seed, device=dev)
    U, Y = task.train.inputs, task.train.targets  # (sequences, T, batch, width)
    done = 0
    while done < steps:  # the training series cycled, each sequence from a zero state
        for s in range(U.shape[0]):
            ln.reset_state()
            for t0 in range(0, U.shape[1], BLOCK):
                n = min(BLOCK, U.shape[1] - t0, steps - done)
                if n <= 0:
                    break
                ln.run(U[s, t0 : t0 + n], Y[s, t0 : t0 + n])
                done += n
    mse, _ = ln.evaluate(task.test.inputs, task.test.targets)
    return mse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--factors", action="store_true", help="PCM's non-idealities one by one")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"Mackey-Glass 15 ahead, N = {args.hidden}, {args.steps} steps, seeds {seeds}")
    print("| rule | device | test MSE (median) | device / host | wall (s) |")
    print("|---|---|---|---|---|")
    for name, rule in RULES.items():
        host = sorted(run(rule, None, args.hidden, args.steps, s) for s in seeds)
        h = host[len(host) // 2]
        print(f"| {name} | host | {h:.3g} | 1 | |", flush=True)
        presets = ANALOG if name == "default (RLS)" else {"pcm": ANALOG["pcm"]}
        for label, device in presets.items():
            t0 = time.perf_counter()
            got = sorted(run(rule, device, args.hidden, args.steps, s) for s in seeds)
            m = got[len(got) // 2]
            wall = time.perf_counter() - t0
            print(f"| {name} | analog {label} | {m:.3g} | {m / h:.2f} | {wall:.0f} |", flush=True)
    if args.factors:
        print("\n| PCM, default learner, seed 0 | test MSE |\n|---|---|")
        for label, overrides in FACTORS.items():
            mse = run({}, ("pcm", overrides), args.hidden, args.steps, 0)
            print(f"| {label} | {mse:.3g} |", flush=True)
        host = run({}, None, args.hidden, args.steps, 0)
        noisy = run({"two_noisy_passes": True}, None, args.hidden, args.steps, 0)
        print(f"\nhost {host:.3g}; host learning from two noisy replicas {noisy:.3g}")
        print("\n| PCM with every non-ideality off but one, seed 0 | test MSE | / host |")
        print("|---|---|---|")
        for label, on in ALONE.items():
            mse = run({}, ("pcm", {**NONE, **on}), args.hidden, args.steps, 0)
            print(f"| {label} | {mse:.3g} | {mse / host:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
