"""The NumPy estimator: scikit-learn's conventions, a stream learned in blocks, pickling."""

from __future__ import annotations

import inspect
import pickle
from dataclasses import fields

import numpy as np
import pytest

from twinpass.core.errors import ConfigError, ShapeError
from twinpass.runtime.config import RuleConfig
from twinpass.runtime.estimators import TwinpassRegressor
from twinpass.runtime.learner import OnlineLearner
from twinpass.runtime.tasks.mackey_glass import MackeyGlassStream


@pytest.fixture(scope="module")
def series() -> tuple[np.ndarray, np.ndarray]:
    s = MackeyGlassStream(seed=0).next(2001)
    return s[:-1, None], s[1:]


def test_every_rule_field_is_a_constructor_argument_with_its_default() -> None:
    params = inspect.signature(TwinpassRegressor).parameters
    default = RuleConfig()
    for f in fields(RuleConfig):
        assert f.name in params, f"RuleConfig.{f.name} is not a TwinpassRegressor argument"
        given = params[f.name].default
        # optimizer and readout: None lets RuleConfig resolve them per rule.
        assert given == getattr(default, f.name) or given is None


def test_get_and_set_params_follow_scikit_learns_conventions() -> None:
    m = TwinpassRegressor(30, leak=0.5)
    p = m.get_params()
    assert p["n_hidden"] == 30 and p["leak"] == 0.5
    clone = TwinpassRegressor(**p)  # what sklearn.base.clone does
    assert clone.get_params() == p
    assert m.set_params(leak=0.7) is m and m.leak == 0.7
    with pytest.raises(ConfigError, match="no parameter leek"):
        m.set_params(leek=0.7)
    assert "leak=0.7" in repr(m) and "n_hidden=30" in repr(m)


def test_blocks_learn_the_same_as_one_run(series) -> None:
    X, y = series
    m = TwinpassRegressor(20, seed=3)
    for lo in range(0, 2000, 500):
        m.partial_fit(X[lo : lo + 500], y[lo : lo + 500])
    whole = OnlineLearner(1, 1, 20, RuleConfig(), seed=3)
    whole.run(X, y[:, None])
    assert np.array_equal(m.learner_.params.R, whole.params.R)
    assert np.array_equal(m.learner_.params.B, whole.params.B)


def test_it_learns_mackey_glass_and_predicts_without_learning(series) -> None:
    X, y = series
    m = TwinpassRegressor(30).fit(X[:1500], y[:1500])
    R = m.learner_.params.R.copy()
    pred = m.predict(X[1500:])
    assert pred.shape == (500,)
    assert np.mean((pred - y[1500:]) ** 2) < 0.05 * np.var(y[1500:])
    assert m.score(X[1500:], y[1500:]) > 0.95
    assert np.array_equal(m.learner_.params.R, R)  # predict learned nothing
    # Warm prediction continues the learned stream; a cold one starts from zero and is
    # worse on its first rows.
    cold = m.predict(X[1500:], warm=False)
    assert np.mean((cold[:20] - y[1500:1520]) ** 2) > np.mean((pred[:20] - y[1500:1520]) ** 2)


def test_a_pickle_round_trip_is_bit_identical_and_keeps_learning(series) -> None:
    X, y = series
    m = TwinpassRegressor(20).partial_fit(X[:1000], y[:1000])
    m2 = pickle.loads(pickle.dumps(m))
    assert np.array_equal(m2.predict(X[1000:1100]), m.predict(X[1000:1100]))
    m.partial_fit(X[1000:], y[1000:])
    m2.partial_fit(X[1000:], y[1000:])
    assert np.array_equal(m.learner_.params.B, m2.learner_.params.B)
    fresh = pickle.loads(pickle.dumps(TwinpassRegressor(5)))
    assert fresh.learner_ is None


def test_bad_input_is_named() -> None:
    m = TwinpassRegressor(5, leak=2.0)
    with pytest.raises(ConfigError, match=r"leak must be in \(0, 1\]"):
        m.partial_fit(np.zeros((3, 1)), np.zeros(3))
    m = TwinpassRegressor(5)
    with pytest.raises(ConfigError, match="partial_fit first"):
        m.predict(np.zeros((3, 1)))
    with pytest.raises(ShapeError, match="T = 3 rows"):
        m.partial_fit(np.zeros((3, 2)), np.zeros(4))
    m.partial_fit(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ShapeError, match="learned 2 features"):
        m.partial_fit(np.zeros((3, 1)), np.zeros(3))
