"""RTRL, e-prop and UORO kernels against the float64 references, finite differences and BP."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import gradient_rules as naive

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.kernels.api import allocate_learn_state, network_dims
from twinpass.kernels.bptt import bptt_block, bptt_scratch
from twinpass.kernels.gradient_api import (
    allocate_gradient_state,
    allocate_gradient_workspace,
    run_gradient,
)
from twinpass.kernels.rng import fill_normal, new_rng_state

N_IN, N, N_OUT = 2, 5, 2


def make_problem(seed, *, nb=1, steps=12, decor=False, features=True, n=N):
    rng = np.random.default_rng(seed)
    width = n + N_IN + 1 if features else n
    return {
        "A": rng.normal(size=(n, N_IN)) / np.sqrt(N_IN),
        "R": 0.9 * rng.normal(size=(n, n)) / np.sqrt(n),
        "B": rng.normal(size=(N_OUT, width)) / np.sqrt(width),
        "D": np.eye(n) + 0.1 * rng.normal(size=(n, n)) if decor else None,
        "U": rng.normal(size=(steps, nb, N_IN)),
        "Y": 0.5 * rng.normal(size=(steps, nb, N_OUT)),
    }


def run_kernel(prob, rule, dtype=np.float64, chunks=(), seed=0, **kw):
    """The kernel over the problem's stream, cut at ``chunks``; returns outputs and state."""
    decor = prob["D"] is not None
    n = prob["R"].shape[0]
    A, R, B = (np.array(prob[k], dtype) for k in ("A", "R", "B"))
    D = np.array(prob["D"], dtype) if decor else np.eye(n, dtype=dtype)
    dims = network_dims(A, R, B, D)
    T, nb, _ = prob["U"].shape
    readout = kw.get("readout", "anp")
    delay = kw.get("delay", 0)
    state = allocate_learn_state(dims, nb, rls=readout == "rls", delay=delay)
    feedback = kw.get("feedback", "symmetric")
    gstate = allocate_gradient_state(dims, nb, rule, feedback=feedback, seed=seed, delay=delay)
    ws = allocate_gradient_workspace(dims, nb, rule, decorrelation=decor)
    xh = np.zeros((nb, n), dtype)
    rng = new_rng_state(seed)
    U, Y = prob["U"].astype(dtype), prob["Y"].astype(dtype)
    pred = np.zeros((T, nb, B.shape[0]), dtype)
    loss = np.zeros(T)
    taken = 0
    for lo, hi in zip((0, *chunks), (*chunks, T), strict=True):
        taken += run_gradient(
            (A, R, B, D), xh, rng, U[lo:hi], Y[lo:hi], pred[lo:hi], loss[lo:hi], ws, gstate,
            state, rule=rule, decorrelation=decor, **kw,
        )  # fmt: skip
    return {"preds": pred, "loss": loss, "A": A, "R": R, "B": B, "D": D, "taken": taken,
            "gstate": gstate, "state": state}  # fmt: skip


def replay_signs(seed, T, nb, n):
    """UORO's signs as the kernel draws them: nb x N normals per step from its generator."""
    rng = new_rng_state(seed)
    out = np.zeros((T, nb, n))
    for t in range(T):
        draw = np.zeros((nb, n))
        fill_normal(rng, 1.0, draw)
        out[t] = np.where(draw >= 0, 1.0, -1.0)
    return out


# -- RTRL is the exact gradient ------------------------------------------------------------


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    leak=st.sampled_from([1.0, 0.4]),
    decor=st.booleans(),
    nb=st.sampled_from([1, 2]),
)
def test_rtrl_reference_is_the_gradient_of_the_sequence_loss(seed, leak, decor, nb):
    """Σ_t of RTRL's online gradient with fixed weights = central differences of Σ_t l_t."""
    p = make_problem(seed, nb=nb, steps=6, decor=decor)
    args = (p["B"], p["D"], p["U"], p["Y"], leak)
    g = naive.rtrl_gradient(p["A"], p["R"], *args)
    h = 1e-6
    fd = np.zeros_like(g)
    for i in range(N):
        for j in range(N + N_IN):
            for sgn in (1, -1):
                A, R = p["A"].copy(), p["R"].copy()
                if j < N:
                    R[i, j] += sgn * h
                else:
                    A[i, j - N] += sgn * h
                fd[i, j] += sgn * naive.total_loss(A, R, *args) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_rtrl_kernel_at_rate_zero_sums_to_the_gradient():
    """The kernel's hidden updates at a tiny rate (readout frozen) add up to RTRL's gradient."""
    p = make_problem(3, steps=8, decor=True)
    lr_h = 1e-9
    out = run_kernel(p, "rtrl", lr=1e-300, lr_hidden=lr_h, leak=0.5, eps=0.0)
    g = naive.rtrl_gradient(p["A"], p["R"], p["B"], p["D"], p["U"], p["Y"], 0.5)
    moved = np.concatenate([p["R"] - out["R"], p["A"] - out["A"]], axis=1) / lr_h
    # Differences of weights near 1 at a step of 1e-9: about 1e-7 of rounding each.
    np.testing.assert_allclose(moved, g, rtol=1e-4, atol=1e-6)


# -- kernels against the references --------------------------------------------------------


@settings(max_examples=24, deadline=None)
@given(
    rule=st.sampled_from(["rtrl", "eprop", "uoro"]),
    seed=st.integers(0, 10_000),
    leak=st.sampled_from([1.0, 0.3]),
    decor=st.booleans(),
    nb=st.sampled_from([1, 2]),
    features=st.booleans(),
    readout=st.sampled_from(["anp", "nlms"]),
    feedback=st.sampled_from(["symmetric", "random"]),
)
def test_kernel_matches_reference(rule, seed, leak, decor, nb, features, readout, feedback):
    p = make_problem(seed, nb=nb, decor=decor, features=features)
    kw = {"lr": 0.05, "lr_hidden": 0.1, "leak": leak, "readout": readout, "eps": 0.01,
          "feedback": feedback}  # fmt: skip
    got = run_kernel(p, rule, seed=seed, **kw)
    fb = got["gstate"].feedback if feedback == "random" else None
    signs = replay_signs(seed, p["U"].shape[0], nb, N) if rule == "uoro" else None
    ref = naive.run(
        rule, p["A"], p["R"], p["B"], p["D"], p["U"], p["Y"], lr=0.05, lr_hidden=0.1,
        leak=leak, readout=readout, decor_eps=0.01, feedback=fb, signs=signs,
    )  # fmt: skip
    assert got["taken"] == p["U"].shape[0]
    for key in ("preds", "A", "R", "B") + (("D",) if decor else ()):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, atol=1e-11, err_msg=key)


@settings(max_examples=16, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    delay=st.sampled_from([1, 3, 24]),
    leak=st.sampled_from([1.0, 0.3]),
    decor=st.booleans(),
    nb=st.sampled_from([1, 2]),
    readout=st.sampled_from(["anp", "nlms"]),
    cut=st.integers(1, 29),
)
def test_eprop_with_a_label_delay_matches_reference(seed, delay, leak, decor, nb, readout, cut):
    """Y[t] labels step t - d: the kernel, cut anywhere into blocks, is the delayed reference."""
    p = make_problem(seed, nb=nb, steps=30, decor=decor)
    kw = {"lr": 0.05, "lr_hidden": 0.1, "leak": leak, "readout": readout, "eps": 0.01}
    got = run_kernel(p, "eprop", chunks=(cut,), delay=delay, **kw)
    ref = naive.run_eprop_delayed(
        p["A"], p["R"], p["B"], p["D"], p["U"], p["Y"], delay=delay, lr=0.05, lr_hidden=0.1,
        leak=leak, readout=readout, decor_eps=0.01,
    )  # fmt: skip
    assert got["taken"] == 30
    np.testing.assert_allclose(got["loss"], ref["loss"], rtol=1e-9, atol=1e-11)
    for key in ("preds", "A", "R", "B") + (("D",) if decor else ()):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, atol=1e-11, err_msg=key)
    if delay < 30:
        assert not np.allclose(got["R"], p["R"])  # the hidden weights did learn


@pytest.mark.parametrize("rule", ["rtrl", "uoro"])
def test_a_label_delay_is_refused_by_rtrl_and_uoro(rule):
    dims = network_dims(*(np.zeros(s) for s in ((N, N_IN), (N, N), (N_OUT, N), (N, N))))
    with pytest.raises(ConfigError, match="only eprop"):
        allocate_gradient_state(dims, 1, rule, delay=2)


@pytest.mark.parametrize("decor", [False, True])
@pytest.mark.parametrize("features", [False, True])
def test_eprop_without_leak_is_one_step_bp(decor, features):
    """α = 1: the trace is ψ zᵀ, and e-prop's update is the BP kernel's with K = 1."""
    p = make_problem(11, nb=2, steps=25, decor=decor, features=features)
    got = run_kernel(p, "eprop", lr=0.05, leak=1.0, eps=0.01)
    A, R, B = (p[k].copy() for k in ("A", "R", "B"))
    D = None if p["D"] is None else p["D"].copy()
    T, nb, _ = p["U"].shape
    bufs = bptt_scratch(N_IN, N, N_OUT, nb, 1, np.float64, adam=False, n_features=B.shape[1])
    pred = np.zeros((T, nb, N_OUT))
    taken = bptt_block(
        p["U"], p["Y"], pred, np.zeros(T), A, R, B, D, bufs, lr=0.05, optimizer="sgd",
        mode="sliding", clip=None, decor_eps=0.01 if decor else 0.0,
    )  # fmt: skip
    assert taken == T
    np.testing.assert_allclose(got["preds"], pred, rtol=1e-10, atol=1e-12)
    for key, ref in (("A", A), ("R", R), ("B", B)):
        np.testing.assert_allclose(got[key], ref, rtol=1e-10, atol=1e-12, err_msg=key)


def test_uoro_is_unbiased():
    """The mean of UORO's estimate over 40,000 draws of the signs is RTRL's gradient.

    Tolerance: every entry within 5 standard errors of the mean, and the whole within 3 %
    in norm (measured: about 1 %).
    """
    p = make_problem(5, steps=5, decor=True)
    args = (p["A"], p["R"], p["B"], p["D"], p["U"], p["Y"])
    g = naive.rtrl_gradient(*args, 0.6)
    draws = naive.uoro_gradients(*args, 40_000, np.random.default_rng(0), leak=0.6)
    mean = draws.mean(0)
    se = draws.std(0) / np.sqrt(draws.shape[0])
    assert np.all(np.abs(mean - g) <= 5 * se + 1e-12)
    assert np.linalg.norm(mean - g) <= 0.03 * np.linalg.norm(g)


# -- the kernels' own properties -----------------------------------------------------------


@pytest.mark.parametrize("rule", ["rtrl", "eprop", "uoro"])
@pytest.mark.parametrize("nb", [1, 2])
def test_block_boundaries_do_not_change_a_bit(rule, nb):
    """float32, RLS readout, decorrelation and a guard that fires mid-block."""
    p = make_problem(2, nb=nb, steps=40, decor=True)
    kw = {"lr": 1e-3, "lr_hidden": 0.05, "leak": 0.5, "readout": "rls", "eps": 1e-3,
          "radius_bound": 0.5, "guard_every": 7}  # fmt: skip
    whole = run_kernel(p, rule, np.float32, **kw)
    cut = run_kernel(p, rule, np.float32, chunks=(1, 13, 14, 30), **kw)
    assert whole["state"].counts[3] > 0  # the guard projected R
    for key in ("preds", "A", "R", "B", "D"):
        np.testing.assert_array_equal(whole[key], cut[key], err_msg=key)
    np.testing.assert_array_equal(whole["gstate"].trace, cut["gstate"].trace)


@pytest.mark.parametrize("rule", ["rtrl", "eprop", "uoro"])
def test_a_non_finite_input_stops_the_block_at_its_step(rule):
    p = make_problem(4, steps=10)
    p["U"][6, 0, 1] = np.inf
    out = run_kernel(p, rule, lr=0.01)
    assert out["taken"] == 6
    assert np.all(np.isfinite(out["R"])) and np.all(np.isfinite(out["gstate"].trace))


@pytest.mark.parametrize(("rule", "gain"), [("rtrl", 1.5), ("eprop", 1.05), ("uoro", 1.1)])
def test_learning_the_hidden_layer_helps(rule, gain):
    """A fast meaningful run (3000 steps, N = 8, the readout's own gradient): forecasting a
    product of two sines one step ahead, learning the hidden weights beats freezing them on
    the last 1000 steps (measured: RTRL 2.2x, e-prop 1.09x, UORO 1.24x)."""
    t = np.arange(3000, dtype=np.float64)
    s = np.sin(0.2 * t) * np.sin(0.031 * t)
    g = np.random.default_rng(0)
    p = {
        "A": g.normal(size=(8, 1)),
        "R": 0.8 * g.normal(size=(8, 8)) / np.sqrt(8),
        "B": np.zeros((1, 10)),
        "D": None,
        "U": s[:-1, None, None],
        "Y": s[1:, None, None],
    }
    last = {
        lrh: run_kernel(p, rule, lr=0.05, lr_hidden=lrh, leak=0.5)["loss"][-1000:].mean()
        for lrh in (1e-12, 0.05)
    }
    assert last[0.05] * gain < last[1e-12]


def test_rtrl_refuses_a_network_too_large_with_the_figure():
    A, R, B, D = (
        np.zeros((3000, 1)),
        np.zeros((3000, 3000)),
        np.zeros((1, 3000)),
        np.zeros((3000, 3000)),
    )
    dims = network_dims(A, R, B, D)
    with pytest.raises(ConfigError, match=r"N³ = 27,000,000,000"):
        allocate_gradient_state(dims, 1, "rtrl")
    small = network_dims(*(np.zeros(s) for s in ((8, 1), (8, 8), (1, 8), (8, 8))))
    with pytest.raises(ConfigError, match="RTRL at N = 8"):
        allocate_gradient_state(small, 1, "rtrl", memory_limit=1000)


def test_wrong_state_and_options_are_named():
    p = make_problem(0)
    with pytest.raises(ConfigError, match="unknown gradient rule 'bptt'"):
        run_kernel(p, "bptt", lr=0.1)
    with pytest.raises(ConfigError, match="unknown feedback"):
        run_kernel(p, "eprop", lr=0.1, feedback="transposed")
    A, R, B = (np.array(p[k]) for k in ("A", "R", "B"))
    D = np.eye(N)
    dims = network_dims(A, R, B, D)
    gs = allocate_gradient_state(dims, 1, "eprop")
    ws = allocate_gradient_workspace(dims, 1, "uoro")
    with pytest.raises(ShapeError, match="allocate_gradient_state"):
        run_gradient(
            (A, R, B, D), np.zeros((1, N)), new_rng_state(0), p["U"], p["Y"],
            np.zeros((12, 1, N_OUT)), np.zeros(12), ws, gs, allocate_learn_state(dims, 1),
            rule="uoro", lr=0.1,
        )  # fmt: skip
