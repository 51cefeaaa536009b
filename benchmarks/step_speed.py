"""Microseconds per online step, per rule, N and batch; against NumPy and the machine bound.

For each configuration: the block entry point (T steps in one compiled call) and the
single-step entry point (one call per step, wrapper included), the median over repeats,
taken in turn across the rules (interleaved) so that a busy spell of a shared machine
does not fall on one rule only.
Side by side in the same run: a plain-NumPy float32 ANP step (vectorised, one replica pair
per step, the same equations) and this machine's bound for the step: max(flops / measured
SGEMM rate, bytes / measured in-place bandwidth at the step's working set), with the
leading-order counts of docs/design.md §7 (ANP, NP: 6N² flops and 8N² bytes; DANP: 15N², 20N²;
e-prop: 7N², 16N²; UORO: 11N², 16N²; RTRL: 2N³(N + 1) and 32N²(N + 1)), the bandwidth taken
at the step's working set (R; R and D for DANP; R and the trace for e-prop and UORO; J and
its product for RTRL). The gradient rules run with the readout's own gradient, as ANP with
its own estimate, and without leak.

    python benchmarks/step_speed.py                      # full table (a few minutes)
    python benchmarks/step_speed.py --quick              # N = 100, 500 only
    python benchmarks/step_speed.py --json-out out.json
    python benchmarks/step_speed.py --rules ANP,DANP,NP --sizes 100,500,1000 --batches 1
    python benchmarks/step_speed.py --rules ANP,EPROP,UORO,RTRL --sizes 32,100 --batches 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
from numba import njit

from twinpass.kernels.activation import tanh_into
from twinpass.kernels.api import (
    allocate_learn_state,
    allocate_workspace,
    network_dims,
    run_perturbation,
)
from twinpass.kernels.bptt import bptt_block, bptt_scratch
from twinpass.kernels.gradient_api import (
    allocate_gradient_state,
    allocate_gradient_workspace,
    run_gradient,
)
from twinpass.kernels.rng import fill_normal, new_rng_state

RULES = {
    "ANP": ("anp", False),
    # The default learner: ANP in the hidden layer, RLS readout over [hidden, input, 1],
    # leaky units and the radius guard (RLS adds ~5 F² flops and 16 F² bytes, P float64).
    "ANP default": ("anp", False),
    "DANP": ("anp", True),
    "NP": ("np", False),
    "WP": ("wp", False),
    "BP": ("bp", False),
    # The online gradient rules (docs/design.md §3.7-3.9), symmetric feedback.
    "EPROP": ("eprop", False),
    "UORO": ("uoro", False),
    "RTRL": ("rtrl", False),
}
# Leading-order (flops, bytes moved, bytes of matrices touched) per N², float32: ANP and NP
# read and write R once; DANP also reads D twice and writes it once; e-prop and UORO read
# and write R and their N x (N + 1) trace once (fused).
COST = {
    "ANP": (6, 8, 4),
    "DANP": (15, 20, 8),
    "NP": (6, 8, 4),
    "EPROP": (7, 16, 8),
    "UORO": (11, 16, 8),
}
#: RTRL above this N is left out (its step grows as N⁴).
RTRL_MAX_N = 100


def step_cost(label: str, n: int) -> tuple[float, float, int] | None:
    """(flops, bytes moved, working-set bytes) of one step at size n, n_in = 1 (§7)."""
    if label == "RTRL":
        w = n * n * (n + 1)
        # R J in BLAS (2 N·N·N(N+1)); J read 3x and written once, the product's scratch
        # written and read twice: 32 N²(N + 1) bytes; J and the scratch are the working set.
        return 2.0 * n * w, 32.0 * w, 8 * w
    if label not in COST:
        return None
    fl, by, ws = COST[label]
    return fl * n * n, by * n * n, ws * n * n


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def network(n: int, n_in: int = 1, n_out: int = 1, seed: int = 0):
    g = np.random.default_rng(seed)
    f32 = np.float32
    return (
        g.normal(0, 0.5, (n, n_in)).astype(f32),
        g.normal(0, 1 / np.sqrt(n), (n, n)).astype(f32),
        g.normal(0, 0.1, (n_out, n)).astype(f32),
        np.eye(n, dtype=f32),
    )


def interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each function, the repeats taken in turn (round robin).

    On a shared machine a slow spell then costs every candidate alike, instead of whichever
    happened to be timed during it.
    """
    for fn in fns.values():
        fn()  # warm-up (and compilation)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def twinpass_step_fn(label: str, n: int, nb: int, T: int, single: bool):
    """A call running T steps of a rule (block: one call; single: T one-step calls)."""
    rule, decor = RULES[label]
    params = network(n)
    default = label == "ANP default"
    if default:
        A, R, B, D = params
        params = (A, R, np.ascontiguousarray(np.concatenate([B, np.zeros((1, 2), B.dtype)], 1)), D)
    dims = network_dims(*params)
    g = np.random.default_rng(1)
    steps = 1 if single else T
    U = g.normal(size=(steps, nb, 1)).astype(np.float32)
    Y = np.tanh(U)
    pred = np.zeros((steps, nb, 1), np.float32)
    l1 = np.zeros(steps)
    l2 = np.zeros(steps)
    if rule == "bp":
        bufs = bptt_scratch(1, n, 1, nb, 1, np.float32, adam=False)

        def call():
            bptt_block(U, Y, pred, l1, *params[:3], None, bufs, lr=1e-4, optimizer="sgd")

    elif rule in ("eprop", "uoro", "rtrl"):
        gstate = allocate_gradient_state(dims, nb, rule)
        gws = allocate_gradient_workspace(dims, nb, rule)
        learn = allocate_learn_state(dims, nb)
        xh = np.zeros((nb, n), np.float32)
        rng = new_rng_state(0)

        def call():
            run_gradient(
                params, xh, rng, U, Y, pred, l1, gws, gstate, learn, rule=rule, lr=1e-4,
                lr_hidden=1e-4,
            )  # fmt: skip

    else:
        ws = allocate_workspace(dims, nb, weight_noise=rule == "wp")
        xh1 = np.zeros((nb, n), np.float32)
        xh2 = np.zeros((nb, n), np.float32)
        counter = np.zeros(1, np.int64)
        rng = new_rng_state(0)
        extra: dict = {}
        if default:
            extra = {
                "state": allocate_learn_state(dims, nb, rls=True),
                "readout": "rls", "leak": 0.3, "lr_hidden": 1e-3, "forgetting": 0.9999,
                "radius_bound": 1.1,
            }  # fmt: skip

        def call():
            run_perturbation(
                params, xh1, xh2, counter, rng, U, Y, pred, l1, l2, ws, rule=rule, lr=1e-4,
                sigma=1e-3, eps=1e-5, gain=float(np.sqrt(n + 2)), decorrelation=decor,
                two_noisy=False, resync_every=10, output_cap=True, **extra,
            )  # fmt: skip

    if single:
        # T separate one-step calls, as a Python loop streaming one sample at a time would.
        def many():
            for _ in range(T):
                call()

        return many
    return call


def numpy_anp_step_us(n: int, nb: int, T: int, repeats: int) -> float:
    """The same ANP step in plain vectorised NumPy float32 (a careful research script)."""
    A, R, B, _ = network(n)
    g = np.random.default_rng(2)
    U = g.normal(size=(T, nb, 1)).astype(np.float32)
    Y = np.tanh(U)
    lr, sigma, gain = np.float32(1e-4), np.float32(1e-3), np.float32(np.sqrt(n + 2))
    xh1 = np.zeros((nb, n), np.float32)
    xh2 = np.zeros((nb, n), np.float32)

    def run():
        nonlocal A, R, B, xh1, xh2
        for t in range(T):
            u, y = U[t], Y[t]
            xi = (g.standard_normal((nb, n)) * sigma).astype(np.float32)
            zeta = (g.standard_normal((nb, 1)) * sigma).astype(np.float32)
            au = u @ A.T
            a1 = au + xh1 @ R.T
            a2 = au + xh2 @ R.T + xi
            x1, x2 = np.tanh(a1), np.tanh(a2)
            b1, b2 = x1 @ B.T, x2 @ B.T + zeta
            dl = ((b2 - y) ** 2).mean(1) - ((b1 - y) ** 2).mean(1)
            da, db = a2 - a1, b2 - b1
            ch = gain * dl[:, None] * da / np.maximum((da * da).sum(1), 1e-30)[:, None]
            co = gain * dl[:, None] * db / np.maximum((db * db).sum(1), 1e-30)[:, None]
            A -= lr / nb * ch.T @ u
            R -= lr / nb * ch.T @ xh1
            B -= lr / nb * co.T @ x1
            xh1, xh2 = x1, x2

    return median_time(run, repeats) / T * 1e6


@njit(cache=True)
def _rw_pass(a, reps):
    for _ in range(reps):
        for i in range(a.size):
            a[i] = a[i] * np.float32(0.999999) + np.float32(1e-7)


def machine_rates(sizes_bytes: list[int]) -> tuple[float, dict[int, float]]:
    """Measured SGEMM GFLOP/s (NumPy's BLAS) and in-place read+write GB/s per working set."""
    m = np.random.default_rng(0).normal(size=(1500, 1500)).astype(np.float32)
    t = median_time(lambda: m @ m, 5)
    gflops = 2 * 1500**3 / t / 1e9
    bw = {}
    for size in sizes_bytes:
        a = np.ones(size // 4, np.float32)
        reps = max(1, int(2e8 // size))
        t = median_time(lambda a=a, reps=reps: _rw_pass(a, reps), 5)
        bw[size] = 2 * size * reps / t / 1e9
    return gflops, bw


@njit(cache=True)
def _fill_twinpass(rng, out, reps):
    for _ in range(reps):
        fill_normal(rng, 1e-3, out)


@njit(cache=True)
def _fill_numba(out, reps):
    for _ in range(reps):
        for i in range(out.size):
            out[i] = np.random.standard_normal() * 1e-3  # noqa: NPY002 - Numba's own sampler


@njit(cache=True, error_model="numpy")
def _tanh_twinpass(src, dst, reps):
    for _ in range(reps):
        tanh_into(src, dst)


@njit(cache=True)
def _tanh_libm(src, dst, reps):
    for _ in range(reps):
        for i in range(src.shape[1]):
            dst[0, i] = np.tanh(src[0, i])


def per_unit_costs(n: int = 100, repeats: int = 7) -> dict[str, float]:
    """ns per unit of the per-unit work of a step at size n: noise and tanh, ours vs libm."""
    reps = 20000
    out = np.zeros(n, np.float32)
    src = np.random.default_rng(0).normal(size=(1, n)).astype(np.float32)
    dst = np.zeros_like(src)
    rng = new_rng_state(0)
    return {
        name: median_time(fn, repeats) / (reps * n) * 1e9
        for name, fn in (
            ("twinpass normal", lambda: _fill_twinpass(rng, out, reps)),
            ("numba normal", lambda: _fill_numba(out, reps)),
            ("twinpass tanh f32", lambda: _tanh_twinpass(src, dst, reps)),
            ("libm tanh f32", lambda: _tanh_libm(src, dst, reps)),
        )
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 100 and 500 only")
    ap.add_argument("--sizes", help="comma-separated N (default 100,500,1000,2000)")
    ap.add_argument("--rules", help=f"comma-separated subset of {','.join(RULES)} (default all)")
    ap.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json-out")
    args = ap.parse_args()
    sizes = [100, 500] if args.quick else [100, 500, 1000, 2000]
    if args.sizes:
        sizes = [int(v) for v in args.sizes.split(",")]
    labels = args.rules.split(",") if args.rules else list(RULES)
    unknown = set(labels) - set(RULES)
    if unknown:
        ap.error(f"unknown rules {sorted(unknown)}: choose from {', '.join(RULES)}")
    batches = [int(v) for v in args.batches.split(",")]
    costs = per_unit_costs()
    print(
        "per-unit work at N=100 (ns per unit): "
        + ", ".join(f"{k} {v:.1f}" for k, v in costs.items())
    )
    # Bandwidth is measured at the working set of the step: the matrices it touches.
    sets = {c[2] for n in sizes for lb in labels if (c := step_cost(lb, n)) is not None}
    gflops, bw = machine_rates(sorted(sets))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"SGEMM {gflops:.0f} GFLOP/s; in-place bandwidth "
        + ", ".join(f"{k / 2**20:.1f} MiB: {v:.0f} GB/s" for k, v in sorted(bw.items()))
    )
    rows = []
    for n in sizes:
        for nb in batches:
            T = max(20, min(2000, int(2e8 / (n * n * nb * 8))))
            numpy_us = numpy_anp_step_us(n, nb, min(T, 200), args.repeats)
            # N² Gaussians per step: WP is RNG-bound, minutes at N=2000, batch 16.
            run = [lb for lb in labels if not (lb == "WP" and n * n * nb > 4_000_000)]
            run = [lb for lb in run if not (lb == "RTRL" and n > RTRL_MAX_N)]
            T_single = min(T, 200)
            block_s = interleaved_medians(
                {lb: twinpass_step_fn(lb, n, nb, T, single=False) for lb in run}, args.repeats
            )
            single_s = interleaved_medians(
                {lb: twinpass_step_fn(lb, n, nb, T_single, single=True) for lb in run},
                args.repeats,
            )
            for label in run:
                t_block = block_s[label] / T * 1e6
                t_single = single_s[label] / T_single * 1e6
                bound = None
                cost = step_cost(label, n)
                if cost is not None and nb == 1:
                    fl, by, ws = cost
                    bound = max(fl / (gflops * 1e9), by / (bw[ws] * 1e9)) * 1e6
                row = {
                    "rule": label, "N": n, "batch": nb, "block_us": t_block,
                    "single_us": t_single,
                    "numpy_anp_us": numpy_us if label == "ANP" else None,
                    "bound_us": bound,
                    "block_over_bound": t_block / bound if bound else None,
                    "numpy_over_block": numpy_us / t_block if label == "ANP" else None,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"{label:5s} N={n:5d} batch={nb:2d}  block {t_block:9.2f} us  "
                    f"single {t_single:9.2f} us"
                    + (f"  bound {bound:8.2f} us  ratio {t_block / bound:5.2f}" if bound else "")
                    + (
                        f"  numpy {numpy_us:9.2f} us ({numpy_us / t_block:5.1f}x)"
                        if label == "ANP"
                        else ""
                    ),
                    flush=True,
                )
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(
                {"gflops": gflops, "bandwidth_gbs": bw, "per_unit_ns": costs, "rows": rows},
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
