"""The truncated-BPTT baseline kernel against the naive reference and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import bptt as naive

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.kernels.bptt import (
    STATE_FIELDS,
    BPTTBuffers,
    bptt_block,
    bptt_flush,
    bptt_grad,
    bptt_reset,
    bptt_scratch,
    bptt_step,
)

N_IN, N, N_OUT, T = 3, 8, 2, 30
# The kernel's defaults are the baseline's (chunked, Adam, clip 1.0); the tests name each.
SLIDING = {"mode": "sliding", "clip": None}
HYPER = {
    "sgd": {"lr": 0.05, "optimizer": "sgd", **SLIDING},
    "adam": {"lr": 0.01, "optimizer": "adam", **SLIDING},
}
DECOR_EPS = 0.01


def make_problem(seed, n_in=N_IN, n=N, n_out=N_OUT, nb=1, steps=T, decor=False, features=False):
    """Float64 parameters (D near identity if decor, else None) and a random data stream.

    ``features``: B is N + n_in + 1 wide (a readout over [hidden, input, 1]).
    """
    rng = np.random.default_rng(seed)
    width = n + n_in + 1 if features else n
    return {
        "A": rng.normal(size=(n, n_in)) / np.sqrt(n_in),
        "R": rng.normal(size=(n, n)) / np.sqrt(n),
        "B": rng.normal(size=(n_out, width)) / np.sqrt(width),
        "D": np.eye(n) + 0.1 * rng.normal(size=(n, n)) if decor else None,
        "U": rng.normal(size=(steps, nb, n_in)),
        "Y": 0.5 * rng.normal(size=(steps, nb, n_out)),
    }


def params_of(prob, dtype):
    """Fresh parameter copies in ``dtype`` (D stays None when decorrelation is off)."""
    return {
        k: None if prob[k] is None else np.array(prob[k], dtype=dtype) for k in ("A", "R", "B", "D")
    }


def run_kernel(prob, K, dtype=np.float64, chunks=(), **hyper):
    """Run bptt_block over the stream, split at the indices in ``chunks``; collect everything."""
    p = params_of(prob, dtype)
    steps, nb, n_in = prob["U"].shape
    n_out = prob["Y"].shape[2]
    bufs = bptt_scratch(n_in, p["R"].shape[0], n_out, nb, K, dtype, n_features=p["B"].shape[1])
    U, Y = prob["U"].astype(dtype), prob["Y"].astype(dtype)
    preds = np.empty((steps, nb, n_out), dtype)
    losses = np.empty(steps)
    taken = 0
    for lo, hi in zip((0, *chunks), (*chunks, steps), strict=True):
        taken += bptt_block(
            U[lo:hi], Y[lo:hi], preds[lo:hi], losses[lo:hi], **p, bufs=bufs, **hyper
        )
    return {"preds": preds, "losses": losses, "taken": taken, "bufs": bufs, **p}


def run_naive(prob, K, **hyper):
    return naive.run(prob["A"], prob["R"], prob["B"], prob["D"], prob["U"], prob["Y"], K=K, **hyper)


def assert_matches(got, ref, rtol, atol):
    for key in ("preds", "losses", "A", "R", "B", "D"):
        if ref[key] is None:
            assert got[key] is None
        else:
            np.testing.assert_allclose(got[key], ref[key], rtol=rtol, atol=atol, err_msg=key)
    np.testing.assert_allclose(got["bufs"].xh, ref["xh"], rtol=rtol, atol=atol, err_msg="xh")


def hyper_for(opt, decor, mode="sliding", clip=None, leak=1.0):
    return {
        **HYPER[opt],
        "decor_eps": DECOR_EPS if decor else 0.0,
        "mode": mode,
        "clip": clip,
        "leak": leak,
    }


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("decor", [False, True])
@pytest.mark.parametrize("nb", [1, 8])
@pytest.mark.parametrize("K", [1, 3, T])
def test_float64_matches_naive(K, nb, decor, opt):
    prob = make_problem(1, nb=nb, decor=decor)
    hyper = hyper_for(opt, decor)
    got = run_kernel(prob, K, **hyper)
    ref = run_naive(prob, K, **hyper)
    assert got["taken"] == T
    assert_matches(got, ref, rtol=1e-12, atol=1e-12)
    # The run really learned: a kernel that skipped the update would fail the comparison.
    assert np.abs(ref["R"] - prob["R"]).max() > 1e-2


@pytest.mark.parametrize(
    ("K", "nb", "decor", "opt"),
    [(1, 1, False, "sgd"), (3, 8, True, "adam"), (T, 8, False, "adam"), (T, 1, True, "sgd")],
)
def test_float32_close_to_naive(K, nb, decor, opt):
    prob = make_problem(2, nb=nb, decor=decor)
    hyper = hyper_for(opt, decor)
    got = run_kernel(prob, K, np.float32, **hyper)
    ref = run_naive(prob, K, **hyper)
    assert got["R"].dtype == np.float32
    assert_matches(got, ref, rtol=1e-4, atol=2e-5)


def test_window_length_matters():
    """Guards the comparisons above: K = 3 and K = 1 must not agree to test tolerance."""
    prob = make_problem(3, nb=2)
    got = run_kernel(prob, 3, **HYPER["sgd"])
    other = run_naive(prob, 1, **HYPER["sgd"])
    assert np.abs(got["R"] - other["R"]).max() > 1e-4


@settings(max_examples=25, deadline=None)
@given(
    n_in=st.integers(1, 4),
    n=st.integers(1, 9),
    n_out=st.integers(1, 3),
    nb=st.integers(1, 4),
    K=st.integers(1, 6),
    steps=st.integers(1, 12),
    decor=st.booleans(),
    opt=st.sampled_from(["sgd", "adam"]),
    seed=st.integers(0, 2**16),
)
def test_matches_naive_any_shape(n_in, n, n_out, nb, K, steps, decor, opt, seed):
    prob = make_problem(seed, n_in, n, n_out, nb, steps, decor)
    hyper = hyper_for(opt, decor)
    assert_matches(run_kernel(prob, K, **hyper), run_naive(prob, K, **hyper), 1e-11, 1e-11)


def fd_grad(prob, t, h=1e-6, leak=1.0, first=None):
    """Central differences w.r.t. A, R, B, every parameter fixed, from xh_0 = 0: of l_t, or
    of the mean of l_first .. l_t (a chunked window's loss) when ``first`` is given."""
    lo = t if first is None else first
    out = {}
    for name in ("A", "R", "B"):
        g = np.zeros_like(prob[name])
        for idx in np.ndindex(g.shape):
            vals = []
            for sign in (1, -1):
                p = {k: prob[k] for k in ("A", "R", "B", "D")}
                p[name] = prob[name].copy()
                p[name][idx] += sign * h
                losses = naive.forward(
                    **p, U=prob["U"][: t + 1], Ystar=prob["Y"][: t + 1], leak=leak
                )[1]
                vals.append(losses[lo : t + 1].mean())
            g[idx] = (vals[0] - vals[1]) / (2 * h)
        out[name] = g
    return out


def grad_sequence(prob, K, steps, leak=1.0):
    """Call bptt_grad for ``steps`` steps with fixed parameters; return the last gradients."""
    p = params_of(prob, np.float64)
    _, nb, n_in = prob["U"].shape
    n_out = prob["Y"].shape[2]
    bufs = bptt_scratch(n_in, p["R"].shape[0], n_out, nb, K, np.float64, n_features=p["B"].shape[1])
    y = np.empty((nb, n_out))
    for t in range(steps):
        loss = bptt_grad(prob["U"][t].copy(), prob["Y"][t].copy(), y, **p, bufs=bufs, leak=leak)
    return {"A": bufs.gA, "R": bufs.gR, "B": bufs.gB, "loss": loss}


@pytest.mark.parametrize(("nb", "decor"), [(1, False), (3, True)])
def test_grad_matches_finite_differences(nb, decor):
    prob = make_problem(4, n_in=2, n=5, n_out=2, nb=nb, steps=6, decor=decor)
    got = grad_sequence(prob, K=6, steps=6)
    fd = fd_grad(prob, t=5)
    ref_loss = naive.forward(prob["A"], prob["R"], prob["B"], prob["D"], prob["U"], prob["Y"])[1][5]
    assert got["loss"] == pytest.approx(ref_loss, rel=1e-12)
    for name in ("A", "R", "B"):
        scale = np.abs(fd[name]).max()
        assert scale > 1e-4  # a zero gradient would make the comparison vacuous
        np.testing.assert_allclose(got[name], fd[name], rtol=1e-6, atol=1e-6 * scale)


def test_truncated_grad_is_truncated():
    """With K < t the gradient of R differs from the exact one and equals the naive truncation."""
    prob = make_problem(5, n_in=2, n=5, n_out=2, nb=2, steps=6, decor=True)
    got = grad_sequence(prob, K=2, steps=6)
    fd = fd_grad(prob, t=5)
    assert np.abs(got["R"] - fd["R"]).max() > 1e-3 * np.abs(fd["R"]).max()
    ref = naive.run(prob["A"], prob["R"], prob["B"], prob["D"], prob["U"], prob["Y"], K=2, lr=0.0)
    for name in ("A", "R", "B"):
        np.testing.assert_allclose(got[name], ref["grads"][5][name], rtol=1e-12, atol=1e-14)


def state_of(res):
    return {f: getattr(res["bufs"], f) for f in STATE_FIELDS} | {
        k: res[k] for k in ("A", "R", "B", "D", "preds", "losses")
    }


def assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None:
            assert b[k] is None, k
        else:
            assert a[k].dtype == b[k].dtype, k
            assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_step_block_and_chunking_are_bit_identical(dtype):
    prob = make_problem(6, nb=3, decor=True)
    hyper = hyper_for("adam", True)
    whole = run_kernel(prob, 4, dtype, **hyper)
    chunked = run_kernel(prob, 4, dtype, chunks=(1, 7, 19), **hyper)
    assert_bitwise_equal(state_of(whole), state_of(chunked))

    p = params_of(prob, dtype)
    bufs = bptt_scratch(N_IN, N, N_OUT, 3, 4, dtype)
    preds = np.empty((T, 3, N_OUT), dtype)
    losses = np.empty(T)
    for t in range(T):
        u, y = prob["U"][t].astype(dtype), prob["Y"][t].astype(dtype)
        losses[t], taken = bptt_step(u, y, preds[t], **p, bufs=bufs, **hyper)
        assert taken
    stepped = {"bufs": bufs, "preds": preds, "losses": losses, **p}
    assert_bitwise_equal(state_of(whole), state_of(stepped))


def test_deterministic():
    prob = make_problem(7, nb=2, decor=True)
    hyper = hyper_for("sgd", True)
    a = run_kernel(prob, 5, np.float32, **hyper)
    b = run_kernel(prob, 5, np.float32, **hyper)
    assert_bitwise_equal(state_of(a), state_of(b))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_step_is_not_taken(bad):
    """NaN input gives a NaN loss; +inf saturates tanh (finite loss) but makes 0 * inf = NaN
    in the gradient. Either way the block stops there and nothing is poisoned."""
    fail = 7
    prob = make_problem(8, nb=2, decor=True)
    prob["U"][fail, 1, 0] = bad
    hyper = hyper_for("adam", True)
    got = run_kernel(prob, 3, np.float32, **hyper)
    assert got["taken"] == fail
    if np.isnan(bad):
        assert np.isnan(got["losses"][fail])
    for k in ("A", "R", "B", "D"):
        assert np.isfinite(got[k]).all(), k
    for f in STATE_FIELDS:
        assert np.isfinite(getattr(got["bufs"], f)).all(), f

    # Everything is exactly as after the steps before the failure...
    before = {**prob, "U": prob["U"][:fail], "Y": prob["Y"][:fail]}
    ref = run_kernel(before, 3, np.float32, **hyper)
    a, b = state_of(got), state_of(ref)
    for k in ("preds", "losses"):
        a[k], b[k] = a[k][:fail], b[k][:fail]
    assert_bitwise_equal(a, b)

    # ... so skipping the bad sample and carrying on is the same as never having seen it.
    rest = slice(fail + 1, T)
    n = bptt_block(
        prob["U"][rest].astype(np.float32),
        prob["Y"][rest].astype(np.float32),
        got["preds"][rest],
        got["losses"][rest],
        **{k: got[k] for k in ("A", "R", "B", "D")},
        bufs=got["bufs"],
        **hyper,
    )
    assert n == T - fail - 1
    keep = np.r_[0:fail, fail + 1 : T]
    skipped = {**prob, "U": prob["U"][keep], "Y": prob["Y"][keep]}
    ref = run_kernel(skipped, 3, np.float32, **hyper)
    a = state_of(got)
    a["preds"], a["losses"] = a["preds"][keep], a["losses"][keep]
    assert_bitwise_equal(a, state_of(ref))


def test_divergence_is_caught_with_finite_parameters():
    """A far too large learning rate: float32 gradients overflow long before the float64 loss."""
    prob = make_problem(9, nb=4, steps=400)
    got = run_kernel(prob, 5, np.float32, lr=100.0, optimizer="sgd", **SLIDING)
    assert got["taken"] < 400
    # The loss alone would not have caught it: parameters would now be inf/NaN.
    assert np.isfinite(got["losses"][got["taken"]])
    for k in ("A", "R", "B"):
        assert np.isfinite(got[k]).all(), k

    p = params_of(prob, np.float32)
    bufs = bptt_scratch(N_IN, N, N_OUT, 4, 5, np.float32)
    y = np.empty((4, N_OUT), np.float32)
    results = [
        bptt_step(
            prob["U"][t].astype(np.float32),
            prob["Y"][t].astype(np.float32),
            y,
            **p,
            bufs=bufs,
            lr=100.0,
            optimizer="sgd",
            **SLIDING,
        )[1]
        for t in range(got["taken"] + 1)
    ]
    assert all(results[:-1])
    assert not results[-1]


def test_reset_empties_window():
    prob = make_problem(10, nb=2, decor=True)
    hyper = hyper_for("sgd", True)
    p = params_of(prob, np.float64)
    bufs = bptt_scratch(N_IN, N, N_OUT, 2, T, np.float64)
    preds, losses = np.empty((T, 2, N_OUT)), np.empty(T)
    for lo, hi in ((0, 12), (12, T)):
        bptt_block(
            prob["U"][lo:hi], prob["Y"][lo:hi], preds[lo:hi], losses[lo:hi], **p, bufs=bufs, **hyper
        )
        if lo == 0:
            assert bufs.counters[1] == 12
            bptt_reset(bufs)
            assert bufs.counters[1] == 0
            assert not bufs.xh.any()
    ref = run_naive(prob, T, resets=(12,), **hyper)
    assert_matches({"preds": preds, "losses": losses, "bufs": bufs, **p}, ref, 1e-12, 1e-12)
    # Without the reset the result differs, so the comparison above can fail.
    assert np.abs(run_naive(prob, T, **hyper)["R"] - ref["R"]).max() > 1e-6


def test_inputs_not_modified():
    prob = make_problem(11, nb=2, decor=True)
    U, Y = prob["U"], prob["Y"]
    U0, Y0 = U.copy(), Y.copy()
    p = params_of(prob, np.float64)
    bufs = bptt_scratch(N_IN, N, N_OUT, 2, 3, np.float64)
    preds, losses = np.empty_like(Y), np.empty(T)
    bptt_block(U, Y, preds, losses, **p, bufs=bufs, **hyper_for("adam", True))
    bptt_step(U[0], Y[0], preds[0], **p, bufs=bufs, lr=0.01, **SLIDING)
    bptt_grad(U[1], Y[1], preds[1], **p, bufs=bufs)
    assert np.array_equal(U, U0)
    assert np.array_equal(Y, Y0)


def test_scratch_layout():
    bufs = bptt_scratch(3, 5, 2, 4, 6, np.float32)
    assert isinstance(bufs, BPTTBuffers)
    assert bufs.ring_u.shape == (6, 4, 3)
    assert bufs.ring_xh.shape == bufs.ring_x.shape == (6, 4, 5)
    assert bufs.mR.shape == (5, 5)
    assert bufs.counters.dtype == np.int64
    assert {a.dtype for a in bufs if a.dtype.kind == "f" and a.shape != (1,)} == {np.dtype("f4")}
    assert set(STATE_FIELDS) == {"xh", "ring_u", "ring_xh", "ring_x", "ring_gy", "counters"} | {
        f"{m}{p}" for m in "mv" for p in "ARB"
    }
    sgd = bptt_scratch(3, 5, 2, 4, 6, np.float64, adam=False)
    assert sgd.mA.shape == (0, 0)
    # SGD runs on buffers without moments; Adam refuses them.
    prob = make_problem(12, n_in=3, n=5, n_out=2, nb=4, steps=4)
    args = (prob["U"], prob["Y"], np.empty((4, 4, 2)), np.empty(4))
    assert bptt_block(*args, **params_of(prob, np.float64), bufs=sgd, lr=0.1, optimizer="sgd") == 4
    with pytest.raises(ShapeError, match=r"bufs\.mA .*adam=True"):
        bptt_block(*args, **params_of(prob, np.float64), bufs=sgd, lr=0.1, optimizer="adam")


def _valid_call(dtype=np.float32):
    prob = make_problem(13, nb=2, steps=5, decor=True)
    p = params_of(prob, dtype)
    kw = {
        "U": prob["U"].astype(dtype),
        "Ystar": prob["Y"].astype(dtype),
        "Y_out": np.empty((5, 2, N_OUT), dtype),
        "losses": np.empty(5),
        **p,
        "bufs": bptt_scratch(N_IN, N, N_OUT, 2, 3, dtype),
    }
    return kw


def _replace_buf(kw, field, value):
    kw["bufs"] = kw["bufs"]._replace(**{field: value})


BAD_ARRAYS = {
    "U shape": (lambda kw: kw.update(U=kw["U"][:, :, :2].copy()), "U has shape"),
    "Ystar steps": (lambda kw: kw.update(Ystar=kw["Ystar"][:4].copy()), "Ystar has shape"),
    "R shape": (lambda kw: kw.update(R=kw["R"][:, :5].copy()), "R has shape"),
    "D shape": (lambda kw: kw.update(D=np.eye(N + 1, dtype=np.float32)), "D has shape"),
    "mixed dtype": (lambda kw: kw.update(R=kw["R"].astype(np.float64)), "R has dtype float64"),
    "int input": (lambda kw: kw.update(U=kw["U"].astype(np.int32)), "U has dtype int32"),
    "losses dtype": (lambda kw: kw.update(losses=np.empty(5, np.float32)), "losses has dtype"),
    "non-contiguous": (
        lambda kw: kw.update(Y_out=np.empty((5, 2, 2 * N_OUT), np.float32)[:, :, ::2]),
        "Y_out is not C-contiguous",
    ),
    "read-only": (lambda kw: kw["B"].setflags(write=False), "B is read-only"),
    "not an array": (lambda kw: kw.update(Ystar=kw["Ystar"].tolist()), "Ystar must be a NumPy"),
    "ring batch": (
        lambda kw: _replace_buf(kw, "ring_x", np.zeros((3, 1, N), np.float32)),
        r"bufs\.ring_x has shape",
    ),
    "buffer dtype": (
        lambda kw: _replace_buf(kw, "gR", np.zeros((N, N), np.float64)),
        r"bufs\.gR has dtype",
    ),
    "wrong bufs": (lambda kw: kw.update(bufs=kw["bufs"]._asdict()), "bptt_scratch"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_block_rejects_bad_arrays(case):
    mutate, message = BAD_ARRAYS[case]
    kw = _valid_call()
    mutate(kw)
    with pytest.raises(ShapeError, match=message):
        bptt_block(**kw, lr=0.1)


def test_step_and_grad_reject_bad_arrays():
    kw = _valid_call()
    p = {k: kw[k] for k in ("A", "R", "B", "D", "bufs")}
    y = np.empty((2, N_OUT), np.float32)
    with pytest.raises(ShapeError, match="u has shape"):
        bptt_step(kw["U"][0, :1], kw["Ystar"][0], y, **p, lr=0.1)
    with pytest.raises(ShapeError, match="ystar has dtype float64"):
        bptt_step(kw["U"][0], kw["Ystar"][0].astype(np.float64), y, **p, lr=0.1)
    with pytest.raises(ShapeError, match="y_out is not C-contiguous"):
        bptt_grad(kw["U"][0], kw["Ystar"][0], np.empty((N_OUT, 2), np.float32).T, **p)


BAD_CONFIG = {
    "optimizer": ({"optimizer": "rmsprop"}, "optimizer"),
    "negative lr": ({"lr": -0.1}, "lr must be"),
    "nan lr": ({"lr": float("nan")}, "lr must be"),
    "beta": ({"optimizer": "adam", "beta2": 1.0}, "beta2"),
    "adam eps": ({"optimizer": "adam", "adam_eps": 0.0}, "adam_eps"),
    "decor without D": ({"D": None, "decor_eps": 0.1}, "needs the decorrelation matrix D"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIG))
def test_block_rejects_bad_config(case):
    change, message = BAD_CONFIG[case]
    kw = {**_valid_call(), "lr": 0.1}
    kw.update(change)
    with pytest.raises(ConfigError, match=message):
        bptt_block(**kw)


def test_rejects_corrupt_counters_and_bad_sizes():
    kw = _valid_call()
    kw["bufs"].counters[0] = 3  # slot == K would index past the ring
    with pytest.raises(ConfigError, match="counters"):
        bptt_block(**kw, lr=0.1)
    with pytest.raises(ConfigError, match="window"):
        bptt_scratch(1, 2, 1, 1, 0)
    with pytest.raises(ShapeError, match="float32 or float64"):
        bptt_scratch(1, 2, 1, 1, 1, np.float16)


# ---------------------------------------------------------------------------------------------
# The strong baseline: chunked windows, clipping, leaky units, the [hidden, input, 1] readout.

NETWORKS = {
    "paper": {"leak": 1.0, "features": False},
    "leaky": {"leak": 0.3, "features": False},
    "features": {"leak": 1.0, "features": True},
    "leaky+features": {"leak": 0.6, "features": True},
}


def window_grads(prob, K, steps, leak=1.0):
    """The gradients of the kernel's chunked updates over ``steps`` steps, parameters fixed
    (SGD at lr = 0, no clipping): the scratch arrays hold the last update's gradient."""
    p = params_of(prob, np.float64)
    _, nb, n_in = prob["U"].shape
    n_out = prob["Y"].shape[2]
    bufs = bptt_scratch(n_in, N, n_out, nb, K, np.float64, n_features=p["B"].shape[1])
    preds, losses = np.empty((steps, nb, n_out)), np.empty(steps)
    hyper = {"lr": 0.0, "optimizer": "sgd", "mode": "chunked", "clip": None, "leak": leak}
    bptt_block(prob["U"][:steps], prob["Y"][:steps], preds, losses, **p, bufs=bufs, **hyper)
    return {"A": bufs.gA, "R": bufs.gR, "B": bufs.gB, "losses": losses}


@pytest.mark.parametrize("net", list(NETWORKS))
@pytest.mark.parametrize("decor", [False, True])
def test_chunked_grad_is_the_window_loss_gradient(net, decor):
    """The first window (from xh_0 = 0) is exact BPTT of its mean loss: finite differences."""
    leak, features = NETWORKS[net]["leak"], NETWORKS[net]["features"]
    K = 5
    prob = make_problem(20, nb=2, steps=K, decor=decor, features=features)
    got = window_grads(prob, K, K, leak)
    fd = fd_grad(prob, t=K - 1, leak=leak, first=0)
    for name in ("A", "R", "B"):
        scale = np.abs(fd[name]).max()
        assert scale > 1e-4
        np.testing.assert_allclose(got[name], fd[name], rtol=1e-6, atol=1e-6 * scale)
    ref = naive.forward(prob["A"], prob["R"], prob["B"], prob["D"], prob["U"], prob["Y"], leak)
    np.testing.assert_allclose(got["losses"], ref[1], rtol=1e-12)


@pytest.mark.parametrize("net", list(NETWORKS))
def test_chunked_grad_is_truncated_at_the_window(net):
    """The second window carries the state but not the gradient: the naive window gradient,
    not the full BPTT one of the same losses."""
    leak, features = NETWORKS[net]["leak"], NETWORKS[net]["features"]
    K = 4
    prob = make_problem(21, nb=3, steps=2 * K, decor=True, features=features)
    got = window_grads(prob, K, 2 * K, leak)
    ref = naive.run(
        prob["A"], prob["R"], prob["B"], prob["D"], prob["U"], prob["Y"],
        K=K, lr=0.0, mode="chunked", leak=leak,
    )  # fmt: skip
    assert len(ref["grads"]) == 2
    for name in ("A", "R", "B"):
        np.testing.assert_allclose(got[name], ref["grads"][1][name], rtol=1e-11, atol=1e-13)
    fd = fd_grad(prob, t=2 * K - 1, leak=leak, first=K)
    assert np.abs(got["R"] - fd["R"]).max() > 1e-3 * np.abs(fd["R"]).max()


@pytest.mark.parametrize("features", [False, True])
@pytest.mark.parametrize("K", [1, 3, 6])
def test_leaky_sliding_grad_matches_finite_differences(K, features):
    """The sliding backward pass through leaky units: exact when the window covers the stream,
    the naive truncation when it does not."""
    prob = make_problem(22, n_in=2, n=5, n_out=2, nb=2, steps=6, decor=True, features=features)
    got = grad_sequence(prob, K=K, steps=6, leak=0.4)
    ref = naive.run(
        prob["A"], prob["R"], prob["B"], prob["D"], prob["U"], prob["Y"], K=K, lr=0.0, leak=0.4
    )
    for name in ("A", "R", "B"):
        np.testing.assert_allclose(got[name], ref["grads"][5][name], rtol=1e-11, atol=1e-14)
    if K == 6:
        fd = fd_grad(prob, t=5, leak=0.4)
        for name in ("A", "R", "B"):
            scale = np.abs(fd[name]).max()
            np.testing.assert_allclose(got[name], fd[name], rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("mode", ["chunked", "sliding"])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("net", list(NETWORKS))
@pytest.mark.parametrize("K", [1, 4, 7])
def test_modes_match_naive(K, net, opt, mode):
    """Whole runs (updates, clipping, decorrelation, Adam) against the float64 reference; a
    clip of 0.5 is hit by most updates here, so the clipped path is exercised."""
    leak, features = NETWORKS[net]["leak"], NETWORKS[net]["features"]
    prob = make_problem(23, nb=2, decor=True, features=features)
    hyper = hyper_for(opt, True, mode=mode, clip=0.5, leak=leak)
    got = run_kernel(prob, K, chunks=(5, 6, 17), **hyper)
    ref = run_naive(prob, K, **hyper)
    assert got["taken"] == T
    assert_matches(got, ref, rtol=1e-11, atol=1e-12)
    norms = [np.sqrt(sum((g**2).sum() for g in u.values())) for u in ref["grads"]]
    assert max(norms) > 0.5  # clipping did happen
    assert len(ref["grads"]) == (T // K if mode == "chunked" else T)


@pytest.mark.parametrize("mode", ["chunked", "sliding"])
def test_clipping_bounds_the_applied_step(mode):
    """With SGD the applied step is lr times the clipped gradient: its global norm over
    A, R, B is lr * clip when the gradient is longer, the whole gradient when shorter."""
    K, lr, clip = 4, 0.1, 0.05
    prob = make_problem(24, nb=2, steps=K, features=True)
    hyper = {"lr": lr, "optimizer": "sgd", "mode": mode, "leak": 0.5}
    raw = naive.run(
        prob["A"], prob["R"], prob["B"], None, prob["U"], prob["Y"], K=K, lr=0.0,
        mode=mode, leak=0.5,
    )["grads"][-1]  # fmt: skip
    raw_norm = np.sqrt(sum((g**2).sum() for g in raw.values()))
    assert raw_norm > 2 * clip
    for c, expected in ((clip, lr * clip), (10 * raw_norm, lr * raw_norm)):
        # One update (chunked: the window's end; sliding: the first step).
        steps = K if mode == "chunked" else 1
        sub = {**prob, "U": prob["U"][:steps], "Y": prob["Y"][:steps]}
        got = run_kernel(sub, K, **hyper, clip=c)
        step = np.sqrt(sum(((got[k] - prob[k]) ** 2).sum() for k in ("A", "R", "B")))
        if mode == "chunked":
            assert step == pytest.approx(expected, rel=1e-9)
            direction = {k: (prob[k] - got[k]) / step for k in ("A", "R", "B")}
            for k in ("A", "R", "B"):
                np.testing.assert_allclose(direction[k], raw[k] / raw_norm, atol=1e-9)
        else:
            first = naive.run(
                prob["A"], prob["R"], prob["B"], None, sub["U"], sub["Y"], K=K, lr=0.0,
                mode=mode, leak=0.5,
            )["grads"][0]  # fmt: skip
            norm0 = np.sqrt(sum((g**2).sum() for g in first.values()))
            assert step == pytest.approx(lr * min(c, norm0), rel=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("net", ["paper", "leaky+features"])
def test_chunked_bits_do_not_depend_on_the_cut(dtype, net):
    """Windows of 4 across blocks cut at 1, 7, 19 (mid-window), and one step at a time."""
    leak, features = NETWORKS[net]["leak"], NETWORKS[net]["features"]
    prob = make_problem(25, nb=3, decor=True, features=features)
    hyper = hyper_for("adam", True, mode="chunked", clip=0.5, leak=leak)
    whole = run_kernel(prob, 4, dtype, **hyper)
    cut = run_kernel(prob, 4, dtype, chunks=(1, 7, 19), **hyper)
    assert_bitwise_equal(state_of(whole), state_of(cut))

    p = params_of(prob, dtype)
    bufs = bptt_scratch(N_IN, N, N_OUT, 3, 4, dtype, n_features=p["B"].shape[1])
    preds = np.empty((T, 3, N_OUT), dtype)
    losses = np.empty(T)
    for t in range(T):
        u, y = prob["U"][t].astype(dtype), prob["Y"][t].astype(dtype)
        losses[t], taken = bptt_step(u, y, preds[t], **p, bufs=bufs, **hyper)
        assert taken
    stepped = {"bufs": bufs, "preds": preds, "losses": losses, **p}
    assert_bitwise_equal(state_of(whole), state_of(stepped))


@pytest.mark.parametrize("mode", ["chunked", "sliding"])
def test_state_fields_resume_bit_identically(mode):
    """Stop mid-window, copy the parameters and STATE_FIELDS into fresh buffers (a
    checkpoint round trip), go on: the same bits as an uninterrupted run."""
    dtype, K, stop = np.float32, 6, 15  # 15 = two windows and a half
    prob = make_problem(26, nb=2, decor=True, features=True)
    hyper = hyper_for("adam", True, mode=mode, clip=0.5, leak=0.3)
    whole = run_kernel(prob, K, dtype, **hyper)

    first = run_kernel({**prob, "U": prob["U"][:stop], "Y": prob["Y"][:stop]}, K, dtype, **hyper)
    assert first["bufs"].counters[1] == (stop % K if mode == "chunked" else K)
    saved = {f: getattr(first["bufs"], f).copy() for f in STATE_FIELDS}
    p = {k: None if first[k] is None else first[k].copy() for k in ("A", "R", "B", "D")}
    fresh = bptt_scratch(N_IN, N, N_OUT, 2, K, dtype, n_features=p["B"].shape[1])
    for f, arr in saved.items():
        getattr(fresh, f)[...] = arr
    preds = np.concatenate([first["preds"], np.empty((T - stop, 2, N_OUT), dtype)])
    losses = np.concatenate([first["losses"], np.empty(T - stop)])
    U, Y = prob["U"].astype(dtype), prob["Y"].astype(dtype)
    n = bptt_block(U[stop:], Y[stop:], preds[stop:], losses[stop:], **p, bufs=fresh, **hyper)
    assert n == T - stop
    resumed = {"bufs": fresh, "preds": preds, "losses": losses, **p}
    assert_bitwise_equal(state_of(whole), state_of(resumed))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_chunked_nonfinite_step_is_not_taken(bad):
    """Mid-window, a bad sample is named at its own step (+inf saturates tanh: finite loss,
    but it would poison the window's gradient), and skipping it equals never seeing it."""
    fail = 9  # mid-window for K = 4
    prob = make_problem(27, nb=2, decor=True)
    prob["U"][fail, 1, 0] = bad
    hyper = hyper_for("adam", True, mode="chunked", clip=1.0, leak=0.5)
    got = run_kernel(prob, 4, np.float32, **hyper)
    assert got["taken"] == fail
    for f in STATE_FIELDS:
        assert np.isfinite(getattr(got["bufs"], f)).all(), f
    before = run_kernel(
        {**prob, "U": prob["U"][:fail], "Y": prob["Y"][:fail]}, 4, np.float32, **hyper
    )
    a, b = state_of(got), state_of(before)
    for k in ("preds", "losses"):
        a[k], b[k] = a[k][:fail], b[k][:fail]
    assert_bitwise_equal(a, b)

    rest = slice(fail + 1, T)
    n = bptt_block(
        prob["U"][rest].astype(np.float32),
        prob["Y"][rest].astype(np.float32),
        got["preds"][rest],
        got["losses"][rest],
        **{k: got[k] for k in ("A", "R", "B", "D")},
        bufs=got["bufs"],
        **hyper,
    )
    assert n == T - fail - 1
    keep = np.r_[0:fail, fail + 1 : T]
    ref = run_kernel({**prob, "U": prob["U"][keep], "Y": prob["Y"][keep]}, 4, np.float32, **hyper)
    a = state_of(got)
    a["preds"], a["losses"] = a["preds"][keep], a["losses"][keep]
    assert_bitwise_equal(a, state_of(ref))


def test_chunked_divergence_is_caught_at_the_window_end():
    """A far too large step without clipping: the failing update is refused, all finite."""
    prob = make_problem(28, nb=4, steps=400)
    got = run_kernel(prob, 5, np.float32, lr=1e4, optimizer="sgd", mode="chunked", clip=None)
    assert got["taken"] < 400
    assert (got["taken"] + 1) % 5 == 0  # only an update can fail on a finite stream
    for k in ("A", "R", "B"):
        assert np.isfinite(got[k]).all(), k


def test_flush_applies_the_partial_window():
    """Sequences of 10 with K = 4: two windows and a flushed half window per sequence."""
    prob = make_problem(29, nb=2, steps=20, decor=True, features=True)
    hyper = hyper_for("adam", True, mode="chunked", clip=0.5, leak=0.7)
    p = params_of(prob, np.float64)
    bufs = bptt_scratch(N_IN, N, N_OUT, 2, 4, np.float64, n_features=p["B"].shape[1])
    preds, losses = np.empty((20, 2, N_OUT)), np.empty(20)
    flush_hyper = {k: hyper[k] for k in ("lr", "optimizer", "clip", "leak")}
    for lo, hi in ((0, 10), (10, 20)):
        bptt_block(
            prob["U"][lo:hi], prob["Y"][lo:hi], preds[lo:hi], losses[lo:hi], **p, bufs=bufs,
            **hyper,
        )  # fmt: skip
        assert bufs.counters[1] == 2
        assert bptt_flush(**p, bufs=bufs, **flush_hyper) is True
        assert bufs.counters[1] == 0
        assert bptt_flush(**p, bufs=bufs, **flush_hyper) is None
        if lo == 0:
            bptt_reset(bufs)
    ref = run_naive(prob, 4, resets=(10,), flush=True, **hyper)
    assert len(ref["grads"]) == 6
    assert_matches({"preds": preds, "losses": losses, "bufs": bufs, **p}, ref, 1e-11, 1e-12)


def test_sliding_buffers_are_refused_by_chunked_mode():
    kw = _valid_call()
    kw["bufs"].counters[:2] = (1, 3)  # a full sliding window of 3
    with pytest.raises(ConfigError, match="bptt_reset before switching"):
        bptt_block(**kw, lr=0.1, mode="chunked")
    with pytest.raises(ConfigError, match="bptt_reset before switching"):
        bptt_flush(**{k: kw[k] for k in ("A", "R", "B", "D", "bufs")}, lr=0.1)
    assert bptt_block(**kw, lr=0.1, mode="sliding") == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "overlapping"}, "mode must be"),
        ({"clip": -1.0}, "clip must be"),
        ({"clip": float("inf")}, "clip must be"),
        ({"leak": 0.0}, r"leak must be in \(0, 1\]"),
        ({"leak": 1.5}, r"leak must be in \(0, 1\]"),
    ],
)
def test_new_options_are_validated(change, message):
    kw = {**_valid_call(), "lr": 0.1, **change}
    with pytest.raises(ConfigError, match=message):
        bptt_block(**kw)


def test_readout_width_is_checked():
    kw = _valid_call()
    kw["B"] = np.zeros((N_OUT, N + N_IN + 1), np.float32)  # bufs were made for (n_out, N)
    with pytest.raises(ShapeError, match=r"bufs\.gB has shape"):
        bptt_block(**kw, lr=0.1)
    kw["B"] = np.zeros((N_OUT, N + 2), np.float32)
    with pytest.raises(ShapeError, match=r"N \+ n_in \+ 1"):
        bptt_block(**kw, lr=0.1)
    with pytest.raises(ShapeError, match="n_features"):
        bptt_scratch(N_IN, N, N_OUT, 1, 3, n_features=N + 1)
    bufs = bptt_scratch(N_IN, N, N_OUT, 1, 3, n_features=N + N_IN + 1)
    assert bufs.gB.shape == bufs.mB.shape == (N_OUT, N + N_IN + 1)
