"""The online gradient rules on the host device: learning, sequences, checkpoints, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import ConfigError
from twinpass.runtime.config import RuleConfig
from twinpass.runtime.learner import OnlineLearner

RULES = ("rtrl", "eprop", "uoro")


def _stream(T=300, seed=0):
    g = np.random.default_rng(seed)
    u = g.normal(size=(T, 1)).astype(np.float32)
    y = np.tanh(np.cumsum(u, 0) * 0.1).astype(np.float32)
    return u, y


def _learner(rule, **kw):
    config = RuleConfig(rule=rule, decorrelation=kw.pop("decorrelation", False), **kw)
    return OnlineLearner(1, 1, 12, config, seed=4)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_checkpoint_resumes_bit_for_bit(tmp_path, rule, feedback):
    u, y = _stream()
    whole = _learner(rule, feedback=feedback, decorrelation=True)
    ref = whole.run(u, y)
    first = _learner(rule, feedback=feedback, decorrelation=True)
    first.run(u[:170], y[:170])
    first.save(tmp_path / "ckpt.npz")
    again, _ = OnlineLearner.load(tmp_path / "ckpt.npz")
    res = again.run(u[170:], y[170:])
    np.testing.assert_array_equal(res.predictions, ref.predictions[170:])
    for k, v in whole.device.read_model().items():
        np.testing.assert_array_equal(again.device.read_model()[k], v, err_msg=k)


@pytest.mark.parametrize("rule", RULES)
def test_a_new_sequence_forgets_the_trace(rule):
    """reset_state zeroes the influence: the state at a sequence's start depends on no weight."""
    u, y = _stream(50)
    learner = _learner(rule)
    learner.run(u, y)
    learner.reset_state()
    gstate = learner.device._gstate
    assert not gstate.trace.any() and not gstate.xt.any()


@pytest.mark.parametrize("rule", ["rtrl", "uoro"])
def test_label_delay_is_refused_with_the_rule_named(rule):
    with pytest.raises(ConfigError, match=f"host \\({rule}\\) device learns with a label delay"):
        OnlineLearner(1, 1, 8, RuleConfig(rule=rule), label_delay=3)


def _delayed(delay, **kw):
    config = RuleConfig(rule="eprop", decorrelation=True, **kw)
    return OnlineLearner(1, 1, 12, config, seed=4, label_delay=delay)


def test_eprop_with_a_label_delay_resumes_bit_for_bit(tmp_path):
    """The ring of pending traces is in the checkpoint: a resumed run is the whole run."""
    u, y = _stream()
    ref = _delayed(5).run(u, y)
    first = _delayed(5)
    first.run(u[:170], y[:170])
    first.save(tmp_path / "ckpt.npz")
    again, _ = OnlineLearner.load(tmp_path / "ckpt.npz")
    res = again.run(u[170:], y[170:])
    np.testing.assert_array_equal(res.predictions, ref.predictions[170:])
    assert np.isnan(ref.loss1[:5]).all() and np.isfinite(ref.loss1[5:]).all()


def test_eprop_learns_with_a_label_delay():
    """Labels 6 steps late: the late half's loss is below the early half's, and the
    hidden weights moved (a readout-only learner would leave them)."""
    u, y = _stream(2000)
    d = 6
    learner = _delayed(d, lr=0.02, lr_hidden=0.01)
    r0 = learner.device.read_model()["R"].copy()
    # Step t's target y[t] arrives d steps later: Y[s] = y[s - d].
    late = np.concatenate([np.full((d, 1), np.nan, np.float32), y[:-d]])
    res = learner.run(u, late)
    lo = res.loss1[d:]
    assert np.mean(lo[-300:]) < 0.5 * np.mean(lo[:300])
    assert not np.array_equal(learner.device.read_model()["R"], r0)


def test_loss_columns_are_the_one_clean_replica():
    u, y = _stream(40)
    res = _learner("eprop").run(u, y)
    np.testing.assert_array_equal(res.loss1, res.loss2)
