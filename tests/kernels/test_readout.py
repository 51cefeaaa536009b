"""The learner of docs/design.md §2-6 in the kernel against its float64 reference.

Leaky units, the readout over [xh, u, 1], the readout rules (RLS, NLMS, the rule's own),
the hidden layer's own rate and a label delay: every combination that matters, float64
kernel against tests/naive/readout.py, and the properties a user relies on (causality of
the delayed forecasts, RLS reaching the least-squares solution, the guard bounding R).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from naive import readout as nv

from twinpass.core.errors import ConfigError
from twinpass.kernels import api
from twinpass.kernels.guard import estimate_spectral_radius
from twinpass.kernels.perturbation import C_GUARD, C_RLS_RESET
from twinpass.kernels.rng import new_rng_state

N_IN, N, N_OUT = 2, 7, 2


def problem(seed, nb, T, features):
    g = np.random.default_rng(seed)
    F = N + N_IN + 1 if features else N
    return {
        "A": g.normal(size=(N, N_IN)),
        "R": 0.4 * g.normal(size=(N, N)),
        "B": 0.3 * g.normal(size=(N_OUT, F)),
        "D": np.eye(N),
        "xh1": 0.1 * g.normal(size=(nb, N)),
        "U": g.normal(size=(T, nb, N_IN)),
        "Y": 0.5 * g.normal(size=(T, nb, N_OUT)),
    }


def cfg(**kw):
    base = {
        "rule": "anp",
        "lr": 0.05,
        "lr_hidden": 0.02,
        "sigma": 0.05,
        "eps": 0.0,
        "gain": float(np.sqrt(N_IN + N + N_OUT)),
        "decorrelation": False,
        "two_noisy": False,
        "resync_every": 3,
        "output_cap": True,
        "readout": "rls",
        "leak": 0.5,
        "readout_step": 0.4,
        "forgetting": 0.98,
        "readout_p0": 10.0,
        "delay": 0,
    }
    base.update(kw)
    return base


def run_kernel(prob, c, chunks=None, dtype=np.float64, seed=3):
    p = {k: np.array(prob[k], dtype) for k in "ARBD"}
    nb = prob["U"].shape[1]
    xh1 = np.array(prob["xh1"], dtype)
    xh2 = xh1.copy()
    U, Y = np.array(prob["U"], dtype), np.array(prob["Y"], dtype)
    T = U.shape[0]
    dims = api.network_dims(*(p[k] for k in "ARBD"))
    ws = api.allocate_workspace(dims, nb)
    st = api.allocate_learn_state(
        dims, nb, delay=c["delay"], rls=c["readout"] == "rls", p0=c["readout_p0"]
    )
    counter = np.zeros(1, np.int64)
    rng = new_rng_state(seed)
    pred = np.zeros((T, nb, N_OUT), dtype)
    l1, l2 = np.zeros(T), np.zeros(T)
    kw = {k: v for k, v in c.items() if k not in ("decorrelation",)}
    lo = 0
    for size in chunks or (T,):
        done = api.run_perturbation(
            (p["A"], p["R"], p["B"], p["D"]), xh1, xh2, counter, rng,
            U[lo : lo + size], Y[lo : lo + size], pred[lo : lo + size],
            l1[lo : lo + size], l2[lo : lo + size], ws,
            decorrelation=c["decorrelation"], state=st, **kw,
        )  # fmt: skip
        assert done == size
        lo += size
    return {**p, "xh1": xh1, "pred": pred, "loss1": l1, "loss2": l2, "state": st}


def run_reference(prob, c, seed=3):
    nb = prob["U"].shape[1]
    F = prob["B"].shape[1]
    net = nv.LeakyNet(
        *(np.array(prob[k], float) for k in "ARBD"),
        xh1=np.array(prob["xh1"], float),
        xh2=np.array(prob["xh1"], float),
        P=np.eye(F) * c["readout_p0"],
    )
    rng = new_rng_state(seed)
    preds, l1s, l2s = [], [], []
    for t in range(prob["U"].shape[0]):
        noise = nv.draw_noise(
            rng, c["sigma"], nb, N, N_OUT, c["two_noisy"], c["readout"] == "anp", np.float64
        )
        p, l1, l2 = nv.step(net, prob["U"][t], prob["Y"][t], noise=noise, cfg=c)
        preds.append(p)
        l1s.append(l1)
        l2s.append(l2)
    return {
        "A": net.A, "R": net.R, "B": net.B, "xh1": net.xh1,
        "pred": np.array(preds), "loss1": np.array(l1s), "loss2": np.array(l2s), "net": net,
    }  # fmt: skip


CASES = list(
    itertools.product(
        ("anp", "np"), ("rls", "nlms", "anp"), (1.0, 0.5), (False, True), (0, 3), (1, 3)
    )
)


@pytest.mark.parametrize(
    ("rule", "readout", "leak", "features", "delay", "nb"),
    CASES,
    ids=[f"{r}-{o}-leak{lk}-{'f' if f else 'h'}-d{d}-b{b}" for r, o, lk, f, d, b in CASES],
)
def test_kernel_matches_float64_reference(rule, readout, leak, features, delay, nb):
    prob = problem(1, nb, 14, features)
    c = cfg(rule=rule, readout=readout, leak=leak, delay=delay)
    got = run_kernel(prob, c)
    ref = run_reference(prob, c)
    for key in ("A", "R", "B", "xh1", "pred"):
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, atol=1e-11, err_msg=key)
    np.testing.assert_allclose(got["loss1"], ref["loss1"], rtol=1e-9, atol=1e-12)
    if readout == "rls":
        np.testing.assert_allclose(got["state"].P, ref["net"].P, rtol=1e-8, atol=1e-10)
        assert np.array_equal(got["state"].P, got["state"].P.T)  # symmetric bit for bit


@pytest.mark.parametrize("delay", [0, 1, 4])
def test_blocks_give_the_same_bits(delay):
    """Cutting a stream into blocks changes nothing: the ring and P's pending update carry."""
    prob = problem(2, 1, 23, True)
    c = cfg(delay=delay)
    whole = run_kernel(prob, c, dtype=np.float32)
    cut = run_kernel(prob, c, chunks=(1, 5, 2, 9, 6), dtype=np.float32)
    for key in ("A", "R", "B", "xh1", "pred"):
        np.testing.assert_array_equal(whole[key], cut[key], err_msg=key)
    np.testing.assert_array_equal(whole["state"].P, cut["state"].P)


def test_a_delayed_forecast_never_sees_a_later_label():
    """With delay d, the forecast made at step s depends on no label arriving after s."""
    d, s = 4, 12
    prob = problem(3, 1, 20, True)
    base = run_kernel(prob, cfg(delay=d))
    changed = {**prob, "Y": prob["Y"].copy()}
    changed["Y"][s + 1 :] += 10.0  # every label that arrives after step s
    other = run_kernel(changed, cfg(delay=d))
    np.testing.assert_array_equal(base["pred"][: s + 1], other["pred"][: s + 1])
    assert not np.array_equal(base["pred"][s + 1 :], other["pred"][s + 1 :])


def test_the_first_labels_of_a_delay_are_ignored():
    """Labels arriving before any step they could belong to change nothing."""
    d = 3
    prob = problem(4, 1, 10, True)
    base = run_kernel(prob, cfg(delay=d))
    changed = {**prob, "Y": prob["Y"].copy()}
    changed["Y"][:d] = np.nan
    other = run_kernel(changed, cfg(delay=d))
    for key in ("A", "R", "B", "pred"):
        np.testing.assert_array_equal(base[key], other[key])
    assert other["state"].counts[6] == 0


def test_rls_reaches_the_ridge_solution():
    """With the hidden layer fixed and λ = 1, RLS's readout is ridge regression with
    penalty 1/p0 on the features it saw (the least-squares problem solved exactly)."""
    prob = problem(5, 1, 300, True)
    c = cfg(lr_hidden=1e-300, forgetting=1.0, readout_p0=100.0, leak=0.7)
    got = run_kernel(prob, c)
    ref = run_reference(prob, c)
    # The features the readout saw, from the reference's (fixed) network.
    xh = np.array(prob["xh1"], float)
    net = nv.LeakyNet(*(np.array(prob[k], float) for k in "ARBD"), xh1=xh, xh2=xh.copy())
    Fs = []
    for t in range(300):
        x = np.tanh(prob["U"][t] @ net.A.T + net.xh1 @ net.R.T)
        net.xh1 = 0.3 * net.xh1 + 0.7 * x
        Fs.append(nv.features(net.xh1, prob["U"][t], N + N_IN + 1)[0])
    G = np.array(Fs)
    W = np.linalg.solve(G.T @ G + np.eye(G.shape[1]) / 100.0, G.T @ prob["Y"][:, 0])
    B0 = np.array(prob["B"])
    # Ridge around the initial readout: B = B0 + argmin ‖G (B - B0)ᵀ - (Y - G B0ᵀ)‖² + ...
    W = W + (np.eye(G.shape[1]) / 100.0) @ np.linalg.solve(
        G.T @ G + np.eye(G.shape[1]) / 100.0, B0.T
    )
    np.testing.assert_allclose(got["B"], W.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got["B"], ref["B"], rtol=1e-9, atol=1e-11)


def test_rls_loses_positive_definiteness_and_recovers():
    """A P that is no longer positive definite is reset to p0 I and counted; learning goes on."""
    prob = problem(6, 1, 8, True)
    c = cfg(lr_hidden=1e-300)
    first = run_kernel({**prob, "U": prob["U"][:4], "Y": prob["Y"][:4]}, c)
    st = first["state"]
    st.P[2, 2] = -1.0  # what rounding can do to a long-running float P
    p = {k: first[k] for k in "ARBD"}
    xh = first["xh1"]
    dims = api.network_dims(*(p[k] for k in "ARBD"))
    out = np.zeros((4, 1, N_OUT))
    api.run_perturbation(
        (p["A"], p["R"], p["B"], p["D"]), xh, xh.copy(), np.zeros(1, np.int64),
        new_rng_state(0), prob["U"][4:], prob["Y"][4:], out, np.zeros(4), np.zeros(4),
        api.allocate_workspace(dims, 1), state=st,
        **{k: v for k, v in c.items() if k != "decorrelation"}, decorrelation=False,
    )  # fmt: skip
    assert st.counts[C_RLS_RESET] == 1
    assert np.isfinite(p["B"]).all() and np.all(np.linalg.eigvalsh(st.P) > 0)


def test_the_guard_keeps_r_on_its_bound():
    """A recurrent matrix of spectral radius 3 is scaled onto the bound at the first check."""
    prob = problem(7, 1, 30, True)
    g = np.random.default_rng(0)
    R = g.normal(size=(N, N))
    prob["R"] = 3.0 * R / np.max(np.abs(np.linalg.eigvals(R)))
    c = cfg(lr_hidden=1e-300, radius_bound=1.1, guard_every=10)
    got = run_kernel(prob, c)
    rho = np.max(np.abs(np.linalg.eigvals(got["R"])))
    assert got["state"].counts[C_GUARD] >= 1
    assert rho <= 1.1 * 1.05  # the estimate's error, a few per cent
    assert rho >= 0.9


def test_spectral_radius_estimate_on_a_complex_pair():
    """Power iteration's mean growth also converges for a dominant complex pair."""
    th = 0.7
    R = np.zeros((4, 4))
    R[:2, :2] = 0.9 * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    R[2:, 2:] = np.diag([0.3, -0.5])
    v = np.ones(4) / 2.0
    assert abs(estimate_spectral_radius(R, v, 64) - 0.9) < 0.02


def test_rls_and_a_delay_need_a_state():
    prob = problem(8, 1, 3, True)
    p = {k: np.array(prob[k]) for k in "ARBD"}
    dims = api.network_dims(*(p[k] for k in "ARBD"))
    with pytest.raises(ConfigError, match="allocate_learn_state"):
        api.run_perturbation(
            (p["A"], p["R"], p["B"], p["D"]), np.zeros((1, N)), np.zeros((1, N)),
            np.zeros(1, np.int64), new_rng_state(0), prob["U"], prob["Y"],
            np.zeros((3, 1, N_OUT)), np.zeros(3), np.zeros(3), api.allocate_workspace(dims, 1),
            rule="anp", lr=0.1, sigma=0.1, eps=0.0, gain=1.0, decorrelation=False,
            two_noisy=False, resync_every=0, output_cap=False, readout="rls",
        )  # fmt: skip
