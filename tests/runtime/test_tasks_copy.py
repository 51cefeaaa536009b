"""Copy-memory task: one-hot layout, reference bits, independent test set, bit errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from naive.tasks import reference_copy_data, reference_copy_error_bits

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.runtime.tasks import CopyTask, Task, make_copy, make_task


def test_shapes_and_dtypes() -> None:
    task = make_copy()
    assert isinstance(task, Task) and isinstance(task, CopyTask)
    assert task.name == "copy"
    assert (task.n_in, task.n_out) == (10, 10)
    assert task.train.inputs.shape == task.train.targets.shape == (64, 210, 10)
    assert task.test.inputs.shape == task.test.targets.shape == (16, 210, 10)
    assert task.train.inputs.dtype == task.test.targets.dtype == np.float64
    assert json.loads(json.dumps(task.metadata))["n_steps"] == 210


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 30),
    delay=st.integers(0, 12),
    n_symbols=st.integers(1, 12),
    n=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_one_hot_layout(length, delay, n_symbols, n, seed) -> None:
    task = make_copy(
        length=length, delay=delay, n_symbols=n_symbols, n_train=n, n_test=n, seed=seed
    )
    marker = n_symbols + 1
    for split in (task.train, task.test):
        for arr in (split.inputs, split.targets):
            assert arr.shape == (n, 2 * length + delay, n_symbols + 2)
            assert set(np.unique(arr)) <= {0.0, 1.0}
            assert np.all(arr.sum(axis=2) == 1.0)
        x = split.inputs.argmax(axis=2)
        y = split.targets.argmax(axis=2)
        seq = x[:, :length]
        assert np.all((seq >= 1) & (seq <= n_symbols))
        assert np.all(x[:, length : length + delay] == 0)
        assert np.all(x[:, length + delay :] == marker)
        assert np.all(y[:, : length + delay] == 0)
        # the recall part of the target is the input sequence
        assert np.array_equal(y[:, length + delay :], seq)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("seed", [0, 11])
def test_train_split_equals_reference(batch, seed) -> None:
    task = make_copy(n_train=batch, seed=seed)
    x, y = reference_copy_data(delay=10, length=100, amp=10, batch=batch, seed=seed)
    assert np.array_equal(task.train.inputs, x.transpose(1, 0, 2))
    assert np.array_equal(task.train.targets, y.transpose(1, 0, 2))


def test_determinism_and_independent_test_set() -> None:
    a, b, c = make_copy(seed=5), make_copy(seed=5), make_copy(seed=6)
    assert np.array_equal(a.train.inputs, b.train.inputs)
    assert np.array_equal(a.test.targets, b.test.targets)
    assert not np.array_equal(a.train.inputs, c.train.inputs)
    # unlike the reference, no test sequence repeats a training one
    train = {tuple(s) for s in a.train.inputs.argmax(axis=2)}
    assert not any(tuple(s) in train for s in a.test.inputs.argmax(axis=2))


def test_perfect_prediction_has_no_errors() -> None:
    task = make_copy(length=20, delay=5, n_train=4, n_test=3)
    for split in ("train", "test"):
        metrics = task.extra_metrics(task.split(split).targets, split)
        assert metrics == {"bit_errors": 0.0, "symbol_errors": 0.0, "recall_accuracy": 1.0}
    # anything on the right side of 0.5 is still perfect
    soft = np.where(task.test.targets > 0, 0.6, 0.4)
    assert task.extra_metrics(soft, "test")["bit_errors"] == 0.0


def test_known_wrong_predictions() -> None:
    length, delay, n_test = 20, 5, 4
    task = make_copy(length=length, delay=delay, n_train=1, n_test=n_test, seed=2)
    pred = task.test.targets.copy()
    start = length + delay
    # swap 3 recall symbols of sequence 0 and 1 of sequence 2 for another symbol
    for seq, t in ((0, start), (0, start + 4), (0, start + 19), (2, start + 7)):
        right = int(pred[seq, t].argmax())
        wrong = right % 8 + 1
        pred[seq, t] = 0.0
        pred[seq, t, wrong] = 1.0
    metrics = task.extra_metrics(pred, "test")
    assert metrics["bit_errors"] == pytest.approx(2 * 4 / n_test)
    assert metrics["symbol_errors"] == pytest.approx(4 / n_test)
    assert metrics["recall_accuracy"] == pytest.approx(1 - 4 / (n_test * length))

    # all zeros: one missing bit at every step, every recall symbol wrong
    zeros = task.extra_metrics(np.zeros_like(task.test.targets), "test")
    assert zeros["bit_errors"] == 2 * length + delay
    assert zeros["symbol_errors"] == length
    assert zeros["recall_accuracy"] == 0.0

    # a spurious extra bit during the blank phase costs one bit, no symbol
    extra = task.test.targets.copy()
    extra[1, 3, 9] = 0.7
    assert task.extra_metrics(extra, "test")["bit_errors"] == pytest.approx(1 / n_test)
    assert task.extra_metrics(extra, "test")["symbol_errors"] == 0.0


def test_nan_output_counts_as_error() -> None:
    task = make_copy(length=10, delay=2, n_train=1, n_test=2)
    pred = task.test.targets.copy()
    pred[0, -1, :] = np.nan
    metrics = task.extra_metrics(pred, "test")
    assert metrics["symbol_errors"] == pytest.approx(0.5)
    # NaN is not < 0.5, so each of the 10 units reads as 1: 9 wrong bits
    assert metrics["bit_errors"] == pytest.approx(9 / 2)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4))
def test_bit_errors_equal_the_references_count(seed, n) -> None:
    task = make_copy(length=15, delay=3, n_train=1, n_test=n, seed=seed)
    rng = np.random.default_rng(seed)
    pred = rng.uniform(-0.2, 1.2, size=task.test.targets.shape)
    total = reference_copy_error_bits(task.test.targets, pred)
    assert task.extra_metrics(pred, "test")["bit_errors"] == pytest.approx(total / n)


def test_metric_arguments_are_checked() -> None:
    task = make_copy(length=10, delay=2, n_train=2, n_test=3)
    with pytest.raises(ShapeError):
        task.extra_metrics(task.train.targets, "test")
    with pytest.raises(ConfigError):
        task.extra_metrics(task.test.targets, "validation")


@pytest.mark.parametrize(
    "kwargs",
    [{"length": 0}, {"delay": -1}, {"n_symbols": 0}, {"n_train": 0}, {"n_test": 1.0}],
)
def test_bad_parameters_raise_config_error(kwargs) -> None:
    with pytest.raises(ConfigError):
        make_copy(**kwargs)


def test_make_task_rebuilds_from_params() -> None:
    task = make_copy(length=12, delay=3, n_train=2, n_test=2, seed=8)
    again = make_task("copy", **task.metadata["params"])
    assert isinstance(again, CopyTask)
    assert np.array_equal(again.test.inputs, task.test.inputs)
