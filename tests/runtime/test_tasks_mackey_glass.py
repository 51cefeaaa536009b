"""Mackey-Glass task and stream: reference bits, pairings, determinism, resumable stream."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive.tasks import reference_mackey_glass_data

from twinpass.core.errors import ConfigError
from twinpass.runtime.tasks import (
    STREAM_OFFSET,
    MackeyGlassStream,
    make_mackey_glass,
    make_task,
)


@pytest.fixture(scope="module")
def default_recall():
    return make_mackey_glass(pairing="recall")


def _time_major(split):
    return split.inputs.transpose(1, 0, 2), split.targets.transpose(1, 0, 2)


def test_shapes_and_dtypes() -> None:
    task = make_mackey_glass(length=300, n_series=3)
    assert task.name == "mackey-glass"
    assert (task.n_in, task.n_out) == (1, 1)
    for split in (task.train, task.test):
        assert split.inputs.shape == split.targets.shape == (3, 300, 1)
        assert split.inputs.dtype == split.targets.dtype == np.float64
        assert split.inputs.flags.c_contiguous and split.targets.flags.c_contiguous
        assert np.all(np.isfinite(split.inputs))
    assert task.extra_metrics(task.test.targets, "test") == {}


def test_default_matches_reference_bit_for_bit(default_recall) -> None:
    (x_tr, y_tr), (x_te, y_te) = reference_mackey_glass_data(
        n_batches=1, length=5000, seed=0, horizon=15, tau=17, washout=100
    )
    assert np.array_equal(_time_major(default_recall.train)[0], x_tr)
    assert np.array_equal(_time_major(default_recall.train)[1], y_tr)
    assert np.array_equal(_time_major(default_recall.test)[0], x_te)
    assert np.array_equal(_time_major(default_recall.test)[1], y_te)


@settings(max_examples=8, deadline=None)
@given(
    length=st.integers(1, 120),
    tau=st.integers(1, 30),
    horizon=st.integers(1, 20),
    washout=st.integers(0, 40),
    seed=st.integers(0, 2**32 - 1),
    n_series=st.integers(1, 3),
)
def test_matches_reference_for_other_parameters(length, tau, horizon, washout, seed, n_series):
    task = make_mackey_glass(
        length=length,
        tau=tau,
        horizon=horizon,
        washout=washout,
        seed=seed,
        n_series=n_series,
        pairing="recall",
    )
    (x_tr, y_tr), (x_te, y_te) = reference_mackey_glass_data(
        n_batches=n_series, length=length, seed=seed, horizon=horizon, tau=tau, washout=washout
    )
    assert np.array_equal(_time_major(task.train)[0], x_tr)
    assert np.array_equal(_time_major(task.train)[1], y_tr)
    assert np.array_equal(_time_major(task.test)[0], x_te)
    assert np.array_equal(_time_major(task.test)[1], y_te)


def test_pairings_are_time_shifts_of_each_other(default_recall) -> None:
    ahead = make_mackey_glass()
    assert ahead.metadata["pairing"] == "ahead"
    h = ahead.metadata["horizon"]
    for a, r in ((ahead.train, default_recall.train), (ahead.test, default_recall.test)):
        assert np.array_equal(a.inputs, r.targets)
        assert np.array_equal(a.targets, r.inputs)
        # ahead: the target at t is the input at t + h
        assert np.array_equal(a.targets[:, :-h], a.inputs[:, h:])
        # recall: the input at t is the target at t + h
        assert np.array_equal(r.inputs[:, :-h], r.targets[:, h:])


def test_determinism_and_independence() -> None:
    a = make_mackey_glass(length=400, seed=3, n_series=2)
    b = make_mackey_glass(length=400, seed=3, n_series=2)
    c = make_mackey_glass(length=400, seed=4, n_series=2)
    assert np.array_equal(a.train.inputs, b.train.inputs)
    assert np.array_equal(a.test.targets, b.test.targets)
    assert not np.allclose(a.train.inputs, c.train.inputs)
    # test series are different series, not a copy of the training ones
    assert not np.allclose(a.train.inputs, a.test.inputs)
    assert not np.allclose(a.train.inputs[0], a.train.inputs[1])


def test_centering_uses_the_mean_of_all_series() -> None:
    task = make_mackey_glass(length=500, horizon=5, n_series=2)
    every_sample = np.concatenate(
        [
            task.train.inputs,
            task.train.targets[:, -5:],
            task.test.inputs,
            task.test.targets[:, -5:],
        ],
        axis=1,
    )
    assert abs(every_sample.mean()) < 1e-12
    assert abs(task.metadata["center"] - STREAM_OFFSET) < 0.01


def test_metadata_is_json_and_rebuilds_the_task() -> None:
    task = make_mackey_glass(length=200, horizon=7, seed=5, pairing="recall")
    meta = json.loads(json.dumps(task.metadata))
    assert meta["delta_t"] == 10 and meta["pairing"] == "recall"
    assert "recall" in meta["pairing_explanation"]
    again = make_task("mackey-glass", **meta["params"])
    assert np.array_equal(again.test.inputs, task.test.inputs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pairing": "behind"},
        {"horizon": 0},
        {"length": 0},
        {"length": True},
        {"tau": 2.5},
        {"seed": -1},
        {"seed": 2**32},
        {"n_series": 0},
        {"washout": -1},
    ],
)
def test_bad_parameters_raise_config_error(kwargs) -> None:
    with pytest.raises(ConfigError):
        make_mackey_glass(**kwargs)


# --- the endless stream -------------------------------------------------------------------


def test_stream_continues_the_tasks_first_series() -> None:
    task = make_mackey_glass(length=1000, horizon=15, washout=100, seed=2, pairing="ahead")
    first = np.concatenate([task.train.inputs[0, :, 0], task.train.targets[0, -15:, 0]])
    stream = MackeyGlassStream(seed=2, washout=100)
    values = stream.next(1015)
    # Same integration bit for bit; only the squash's tanh may differ in the last ulp,
    # and any difference in the chaotic integration would be O(1) by now.
    np.testing.assert_allclose(
        values + STREAM_OFFSET, first + task.metadata["center"], rtol=0, atol=1e-14
    )
    assert stream.emitted == 1015


@settings(max_examples=20, deadline=None)
@given(chunks=st.lists(st.integers(0, 400), min_size=1, max_size=8))
def test_stream_chunked_equals_one_shot(chunks) -> None:
    one_shot = MackeyGlassStream(seed=1).next(sum(chunks))
    stream = MackeyGlassStream(seed=1)
    parts = [stream.next(n) for n in chunks]
    assert all(p.dtype == np.float64 and p.ndim == 1 for p in parts)
    assert np.array_equal(np.concatenate(parts), one_shot)


@pytest.mark.parametrize(
    "codec",
    [
        (json.dumps, json.loads),
        (msgpack.packb, msgpack.unpackb),
    ],
    ids=["json", "msgpack"],
)
@pytest.mark.parametrize("cut", [0, 1, 777])
def test_stream_resumes_bit_identically(codec, cut) -> None:
    dump, load = codec
    reference = MackeyGlassStream(tau=17, seed=9, offset=0.25).next(cut + 3000)
    stream = MackeyGlassStream(tau=17, seed=9, offset=0.25)
    head = stream.next(cut)
    state = stream.state()
    resumed = MackeyGlassStream.from_state(load(dump(state)))
    assert resumed.emitted == cut
    assert np.array_equal(np.concatenate([head, resumed.next(3000)]), reference)
    # the original is unaffected by having been saved
    assert np.array_equal(stream.next(3000), reference[cut:])


def test_stream_state_is_plain_data() -> None:
    state = MackeyGlassStream(tau=5).state()
    assert len(state["history"]) == 50
    assert all(type(v) is float for v in state["history"])
    assert all(type(state[k]) is int for k in ("tau", "seed", "washout", "emitted"))


def test_stream_default_is_centred_near_zero() -> None:
    values = MackeyGlassStream(seed=4).next(200_000)
    assert abs(values.mean()) < 2e-3
    assert -1.0 < values.min() < values.max() < 1.0


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "something-else"},
        {"version": 99},
        {"history": [1.0, 2.0]},
        {"history": [float("nan")] * 170},
        {"x": "one"},
        {"delta_t": 5},
    ],
)
def test_stream_rejects_bad_state(change) -> None:
    state = MackeyGlassStream().state()
    state.update(change)
    with pytest.raises(ConfigError):
        MackeyGlassStream.from_state(state)
    state = MackeyGlassStream().state()
    del state["history"]
    with pytest.raises(ConfigError, match="history"):
        MackeyGlassStream.from_state(state)


def test_stream_rejects_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        MackeyGlassStream(tau=0)
    with pytest.raises(ConfigError):
        MackeyGlassStream(offset=float("inf"))
    with pytest.raises(ConfigError):
        MackeyGlassStream().next(-1)
