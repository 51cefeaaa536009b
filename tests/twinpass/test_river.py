"""``twinpass.river``: River's own estimator checks, and a progressive validation.

Skipped without River (``pip install 'twinpass[river]'``) or scikit-learn (River's checks
import its datasets); ``.ci/run`` installs both and runs this module in a phase of its own.
"""

from __future__ import annotations

import numpy as np
import pytest

river = pytest.importorskip("river")
pytest.importorskip("sklearn", reason="River's estimator checks import scikit-learn")

from river import datasets, evaluate, linear_model, metrics, preprocessing  # noqa: E402
from river.checks import check_estimator  # noqa: E402

import twinpass.river  # noqa: E402
from twinpass.core.errors import ConfigError  # noqa: E402


@pytest.mark.parametrize(
    "model", [twinpass.river.Regressor(n_hidden=10), twinpass.river.Forecaster(n_hidden=10)]
)
def test_rivers_estimator_checks_pass(model) -> None:
    check_estimator(model)


def test_it_drops_into_a_pipeline_and_beats_a_linear_model_on_trump_approval() -> None:
    model = preprocessing.StandardScaler() | twinpass.river.Regressor(n_hidden=50)
    ours = evaluate.progressive_val_score(datasets.TrumpApproval(), model, metrics.MAE())
    linear = preprocessing.StandardScaler() | linear_model.LinearRegression()
    theirs = evaluate.progressive_val_score(datasets.TrumpApproval(), linear, metrics.MAE())
    assert ours.get() < theirs.get()


def test_missing_keys_carry_and_key_order_does_not_matter() -> None:
    a, b = twinpass.river.Regressor(n_hidden=8), twinpass.river.Regressor(n_hidden=8)
    for t in range(50):
        x = {"u": float(t % 7), "v": float(t % 3)}
        a.learn_one(x, float(t % 5))
        b.learn_one(dict(reversed(list(x.items()))), float(t % 5))
    assert a.predict_one({"u": 1.0, "v": 2.0}) == b.predict_one({"v": 2.0, "u": 1.0})
    # A missing key is its last value (v = 49 % 3 = 1), not zero.
    assert a.predict_one({"u": 1.0}) == a.predict_one({"u": 1.0, "v": 1.0})


def test_predict_one_learns_nothing_and_does_not_move_the_stream() -> None:
    # Two models on one stream, one of them also asked for predictions all along: they
    # learn the same bits.
    a, b = twinpass.river.Regressor(n_hidden=8), twinpass.river.Regressor(n_hidden=8)
    for t in range(60):
        x = {"u": float(t % 7)}
        first = a.predict_one(x)
        assert a.predict_one(x) == first
        a.learn_one(x, float(t % 5))
        b.learn_one(x, float(t % 5))
    assert a.predict_one({"u": 2.0}) == b.predict_one({"u": 2.0})


def test_a_bad_rule_option_is_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="leak must be in"):
        twinpass.river.Regressor(leak=2.0)


def test_the_forecaster_forecasts_every_step_of_the_horizon_in_the_series_units() -> None:
    rng = np.random.default_rng(0)
    f = twinpass.river.Forecaster(n_hidden=20)
    for t in range(300):
        y = 100.0 + 10.0 * np.sin(2 * np.pi * t / 12) + rng.normal(0.0, 0.5)
        f.learn_one(y, {"trend": t / 300})
    out = f.forecast(horizon=6, xs=[{"trend": (300 + i) / 300} for i in range(6)])
    assert len(out) == 6 and all(isinstance(v, float) for v in out)
    truth = [100.0 + 10.0 * np.sin(2 * np.pi * (300 + i) / 12) for i in range(6)]
    assert np.mean(np.abs(np.subtract(out, truth))) < 5.0  # the season's half-amplitude
