"""The validating wrappers: every malformed call raises ShapeError/ConfigError naming the array,
before any array is touched; valid calls never write their inputs."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import ConfigError, ShapeError, TwinpassError
from twinpass.kernels import api
from twinpass.kernels.rng import new_rng_state

N_IN, N, N_OUT, NB, T = 3, 5, 2, 2, 4
HYPER = {
    "lr": 0.05,
    "sigma": 0.1,
    "eps": 0.01,
    "gain": 3.0,
    "decorrelation": True,
    "two_noisy": False,
    "resync_every": 0,
    "output_cap": False,
}


def make_call(dtype=np.float32, rule="anp", nb=NB):
    """Keyword arguments of a valid run_perturbation call."""
    g = np.random.default_rng(0)
    params = (
        g.normal(size=(N, N_IN)).astype(dtype),
        (0.5 * g.normal(size=(N, N))).astype(dtype),
        g.normal(size=(N_OUT, N)).astype(dtype),
        np.eye(N, dtype=dtype),
    )
    dims = api.network_dims(*params)
    return {
        "params": params,
        "xh1": np.zeros((nb, N), dtype),
        "xh2": np.zeros((nb, N), dtype),
        "counter": np.zeros(1, np.int64),
        "rng": new_rng_state(1),
        "U": g.normal(size=(T, nb, N_IN)).astype(dtype),
        "Y": g.normal(size=(T, nb, N_OUT)).astype(dtype),
        "pred": np.zeros((T, nb, N_OUT), dtype),
        "loss1": np.zeros(T),
        "loss2": np.zeros(T),
        "ws": api.allocate_workspace(dims, nb, weight_noise=rule == "wp"),
        "rule": rule,
        **HYPER,
    }


def run(kw):
    kw = dict(kw)
    args = [kw.pop(k) for k in ("params", "xh1", "xh2", "counter", "rng", "U", "Y", "pred")]
    args += [kw.pop("loss1"), kw.pop("loss2"), kw.pop("ws")]
    return api.run_perturbation(*args, **kw)


def snapshot(kw):
    arrays = {f"param{i}": p for i, p in enumerate(kw["params"])}
    arrays.update({k: kw[k] for k in ("xh1", "xh2", "counter", "rng", "U", "Y", "pred")})
    return {k: np.array(v, copy=True) for k, v in arrays.items() if isinstance(v, np.ndarray)}


def replace_param(kw, i, value):
    p = list(kw["params"])
    p[i] = value
    return {**kw, "params": tuple(p)}


def other_dtype(a):
    return a.astype(np.float64 if a.dtype == np.float32 else np.float32)


# (id, mutation of a valid call, expected error, regex the message must match)
BAD_CALLS = [
    ("A-1d", lambda kw: replace_param(kw, 0, kw["params"][0][0]), ShapeError, r"^A "),
    ("A-int", lambda kw: replace_param(kw, 0, kw["params"][0].astype(int)), ShapeError, r"^A "),
    ("R-shape", lambda kw: replace_param(kw, 1, kw["params"][1][:, :-1]), ShapeError, r"^R "),
    (
        "B-shape",
        lambda kw: replace_param(kw, 2, np.zeros((N_OUT, N + 1), np.float32)),
        ShapeError,
        r"^B ",
    ),
    (
        "D-shape",
        lambda kw: replace_param(kw, 3, np.eye(N + 1, dtype=np.float32)),
        ShapeError,
        r"^D ",
    ),
    (
        "R-dtype",
        lambda kw: replace_param(kw, 1, other_dtype(kw["params"][1])),
        ShapeError,
        r"^R has dtype float64, expected float32: convert it with R\.astype",
    ),
    (
        "R-fortran",
        lambda kw: replace_param(kw, 1, np.asfortranarray(kw["params"][1])),
        ShapeError,
        r"^R is not C-contiguous",
    ),
    ("xh1-shape", lambda kw: {**kw, "xh1": kw["xh1"][:, :-1]}, ShapeError, r"^xh1 "),
    ("xh1-1d", lambda kw: {**kw, "xh1": kw["xh1"][0]}, ShapeError, r"^xh1 "),
    ("xh2-batch", lambda kw: {**kw, "xh2": kw["xh2"][:1]}, ShapeError, r"^xh2 "),
    ("xh2-dtype", lambda kw: {**kw, "xh2": other_dtype(kw["xh2"])}, ShapeError, r"^xh2 "),
    ("U-2d", lambda kw: {**kw, "U": kw["U"][0]}, ShapeError, r"^inputs "),
    ("U-n_in", lambda kw: {**kw, "U": kw["U"][:, :, :-1]}, ShapeError, r"^inputs "),
    ("U-dtype", lambda kw: {**kw, "U": other_dtype(kw["U"])}, ShapeError, r"^inputs "),
    (
        "U-strided",
        lambda kw: {**kw, "U": np.repeat(kw["U"], 2, axis=2)[:, :, ::2]},
        ShapeError,
        r"^inputs is not C-contiguous",
    ),
    ("Y-T", lambda kw: {**kw, "Y": kw["Y"][:-1]}, ShapeError, r"^targets "),
    ("Y-dtype", lambda kw: {**kw, "Y": other_dtype(kw["Y"])}, ShapeError, r"^targets "),
    ("Y-list", lambda kw: {**kw, "Y": kw["Y"].tolist()}, ShapeError, r"^targets must be"),
    ("pred-shape", lambda kw: {**kw, "pred": kw["pred"][:, :, :1]}, ShapeError, r"^pred "),
    (
        "loss1-f32",
        lambda kw: {**kw, "loss1": kw["loss1"].astype(np.float32)},
        ShapeError,
        r"^loss1 ",
    ),
    ("loss2-T", lambda kw: {**kw, "loss2": kw["loss2"][:-1]}, ShapeError, r"^loss2 "),
    (
        "counter-i32",
        lambda kw: {**kw, "counter": kw["counter"].astype(np.int32)},
        ShapeError,
        r"^counter ",
    ),
    ("rng-i64", lambda kw: {**kw, "rng": kw["rng"].astype(np.int64)}, ShapeError, r"^rng "),
    (
        "ws-batch",
        lambda kw: {**kw, "ws": make_call(nb=NB + 1)["ws"]},
        ShapeError,
        r"workspace.*allocate_workspace",
    ),
    (
        "ws-dtype",
        lambda kw: {**kw, "ws": make_call(np.float64)["ws"]},
        ShapeError,
        r"workspace.*allocate_workspace",
    ),
    ("wp-no-buffers", lambda kw: {**kw, "rule": "wp"}, ShapeError, r"weight_noise=True"),
    (
        "wp-two-noisy",
        lambda kw: {**make_call(rule="wp"), "two_noisy": True},
        ConfigError,
        r"WP",
    ),
    ("unknown-rule", lambda kw: {**kw, "rule": "bp"}, ConfigError, r"unknown.*'bp'"),
    ("np-sigma-0", lambda kw: {**kw, "rule": "np", "sigma": 0.0}, ConfigError, r"NP.*sigma"),
    (
        "wp-sigma-0",
        lambda kw: {**make_call(rule="wp"), "sigma": 0.0},
        ConfigError,
        r"WP.*sigma",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [pytest.param(m, e, r, id=i) for i, m, e, r in BAD_CALLS],
)
def test_bad_call_raises_before_touching_anything(mutate, error, match):
    kw = mutate(make_call())
    before = snapshot(kw)
    with pytest.raises(error, match=match) as info:
        run(kw)
    assert isinstance(info.value, TwinpassError)
    assert isinstance(info.value, ValueError)  # callers may catch the builtin too
    for k, v in snapshot(kw).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_valid_call_passes_and_counts_steps():
    kw = make_call()
    done = run(kw)
    assert done == T and isinstance(done, int)
    assert kw["counter"][0] == T
    assert np.isfinite(kw["loss1"]).all()


@pytest.mark.parametrize("rule", ["anp", "np", "wp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_inputs_and_targets_are_never_written(rule, dtype):
    kw = make_call(dtype, rule)
    kw["U"][1, 0, 0] = np.nan  # also on the early-exit path
    U0, Y0 = kw["U"].copy(), kw["Y"].copy()
    assert run(kw) == 1
    kw["U"][1, 0, 0] = 0.0
    U0[1, 0, 0] = 0.0
    assert run(kw) == T
    np.testing.assert_array_equal(kw["U"], U0)
    np.testing.assert_array_equal(kw["Y"], Y0)


# --- check_array, network_dims, allocate_workspace -------------------------------------------


def test_check_array_messages_name_the_array():
    a = np.zeros((2, 3), np.float32)
    assert api.check_array("M", a, (2, 3), np.dtype(np.float32)) is a
    with pytest.raises(ShapeError, match=r"^M must be a numpy array, got list"):
        api.check_array("M", a.tolist(), (2, 3), np.dtype(np.float32))
    with pytest.raises(ShapeError, match=r"^M has shape \(2, 3\), expected \(3, 2\)"):
        api.check_array("M", a, (3, 2), np.dtype(np.float32))
    with pytest.raises(ShapeError, match=r"^M has dtype float32, expected float64"):
        api.check_array("M", a, (2, 3), np.dtype(np.float64))
    with pytest.raises(ShapeError, match=r"^M is not C-contiguous"):
        api.check_array("M", np.zeros((3, 2), np.float32).T, (2, 3), np.dtype(np.float32))


def test_check_array_rejects_read_only():
    a = np.zeros((2, 3), np.float32)
    a.flags.writeable = False
    try:
        api.check_array("M", a, (2, 3), np.dtype(np.float32))
    except ShapeError as e:
        assert str(e).startswith("M ")
    else:
        raise AssertionError("a read-only array was accepted")


def test_network_dims():
    kw = make_call(np.float64)
    dims = api.network_dims(*kw["params"])
    assert (dims.n_in, dims.n_hidden, dims.n_out, dims.dtype) == (N_IN, N, N_OUT, np.float64)
    assert dims.n_total == N_IN + N + N_OUT
    with pytest.raises(ShapeError, match="empty network"):
        api.network_dims(np.zeros((N, 0)), np.zeros((N, N)), np.zeros((1, N)), np.eye(N))
    with pytest.raises(ShapeError, match=r"^D must be a 2-d"):
        api.network_dims(*kw["params"][:3], np.eye(N)[None])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_allocate_workspace_shapes(dtype):
    dims = api.Dims(N_IN, N, N_OUT, np.dtype(dtype))
    ws = api.allocate_workspace(dims, NB)
    assert ws.work.shape[1:] == (NB, N) and ws.work_out.shape[1:] == (NB, N_OUT)
    assert ws.pend.shape[1:] == (NB, N) and ws.q.shape == (N,)
    assert ws.EA.size == ws.ER.size == ws.EB.size == 0
    # The guard's power-iteration scratch is float64 whatever the network's dtype.
    assert ws.gw.dtype == np.float64 and ws.gw.shape == (N,)
    assert {a.dtype for k, a in vars(ws).items() if k != "gw"} == {np.dtype(dtype)}
    wp = api.allocate_workspace(dims, NB, weight_noise=True)
    assert (wp.EA.shape, wp.ER.shape, wp.EB.shape) == ((N, N_IN), (N, N), (N_OUT, N))


# --- workspaces that fit the checked array but not the others ---------------------------------

# A workspace allocated for another size must be refused: the kernels do not check it.


def _never_reach_the_kernel(*args, **kwargs):
    raise AssertionError("an invalid workspace reached the unchecked kernel")


@pytest.mark.parametrize("case", ["anp-n_out", "wp-n_in", "wp-n_out"])
def test_workspace_of_another_network_is_rejected(case, monkeypatch):
    rule, what = case.split("-")
    kw = make_call(rule=rule)
    n_in, n_out = (N_IN + 2, N_OUT) if what == "n_in" else (N_IN, N_OUT + 3)
    other = api.Dims(n_in, N, n_out, np.dtype(np.float32))
    kw["ws"] = api.allocate_workspace(other, NB, weight_noise=rule == "wp")
    # The kernels are replaced so that a missing check fails the test instead of the process.
    monkeypatch.setattr(api, "perturbation_block", _never_reach_the_kernel)
    monkeypatch.setattr(api, "wp_block", _never_reach_the_kernel)
    with pytest.raises(ShapeError, match="workspace"):
        run(kw)


@pytest.mark.parametrize("case", ["batch", "hidden"])
def test_forward_workspace_is_checked(case, monkeypatch):
    kw = make_call()
    dims = api.Dims(N_IN, N + (case == "hidden"), N_OUT, np.dtype(np.float32))
    ws = api.allocate_workspace(dims, NB + (case == "batch"))
    monkeypatch.setattr(api, "forward_block", _never_reach_the_kernel)
    with pytest.raises(ShapeError, match="workspace"):
        api.run_forward(kw["params"], kw["xh1"], kw["U"], kw["pred"], ws, decorrelation=True)


# --- run_forward -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(lambda kw: {**kw, "xh1": kw["xh1"][:, 1:]}, r"^xh ", id="xh-shape"),
        pytest.param(lambda kw: {**kw, "xh1": kw["xh1"][0]}, r"^xh ", id="xh-1d"),
        pytest.param(lambda kw: {**kw, "U": other_dtype(kw["U"])}, r"^inputs ", id="U-dtype"),
        pytest.param(lambda kw: {**kw, "pred": kw["pred"][1:]}, r"^pred ", id="pred-T"),
        pytest.param(lambda kw: replace_param(kw, 2, kw["params"][2].T.copy()), r"^B ", id="B"),
    ],
)
def test_forward_bad_call(mutate, match):
    kw = mutate(make_call())
    before = snapshot(kw)
    with pytest.raises(ShapeError, match=match):
        api.run_forward(kw["params"], kw["xh1"], kw["U"], kw["pred"], kw["ws"], decorrelation=True)
    for k, v in snapshot(kw).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
