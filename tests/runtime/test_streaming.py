"""StreamForecaster and StreamSession: the forecast framing (no look-ahead), the baselines,
chunk independence, bit-identical resume, learning, checkpoint cadence and stop requests."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from twinpass.runtime import DataError, OnlineLearner, RuleConfig
from twinpass.runtime.sources import MackeyGlassSource
from twinpass.runtime.streaming import (
    StopRequest,
    StreamForecaster,
    StreamSession,
    stop_on_signals,
)
from twinpass.runtime.tasks import MackeyGlassStream


def _rows(T: int, seed: int = 0) -> np.ndarray:
    """Two noisy inputs and a Mackey-Glass target in sensor-like units (target last)."""
    g = np.random.default_rng(seed)
    y = 20.0 + 5.0 * MackeyGlassStream(seed=seed).next(T)
    return np.column_stack([50.0 + g.normal(size=T), 1e3 * g.normal(size=T), y])


def _feed(f: StreamForecaster, X: np.ndarray, cuts: list[int]):
    outs = [f.learn_block(X[a:b]) for a, b in zip([0, *cuts], [*cuts, len(X)], strict=True)]
    return (
        np.concatenate([o.predictions for o in outs]),
        np.concatenate([o.truth for o in outs]),
        np.concatenate([o.metric_rows for o in outs]),
    )


def _same_bits(a: StreamForecaster, b: StreamForecaster) -> bool:
    pa, pb = a.learner.params.astuple(), b.learner.params.astuple()
    return (
        all(x.tobytes() == y.tobytes() for x, y in zip(pa, pb, strict=True))
        and a.metrics.state() == b.metrics.state()
        and a.normalizer.state() == b.normalizer.state()
        and a.state()["pending_u"] == b.state()["pending_u"]
        and a.state()["pending_forecasts"] == b.state()["pending_forecasts"]
        and a.state()["initial_xh_eval"] == b.state()["initial_xh_eval"]
    )


def _forecaster(**kw) -> StreamForecaster:
    return StreamForecaster(3, n_hidden=kw.pop("n_hidden", 20), metrics_every=10, **kw)


def _stats_before(X: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation of the rows before row t (0 and 1 at first)."""
    past = X[:t]
    mu = past.mean(axis=0) if t else np.zeros(X.shape[1])
    sd = past.std(axis=0, ddof=1) if t >= 2 else np.ones(X.shape[1])
    return mu, sd


@pytest.mark.parametrize("h", [1, 3])
def test_forecast_made_at_row_t_sees_nothing_after_row_t(h: int) -> None:
    X = _rows(300)
    k = 200
    Y = X.copy()
    Y[k] += [3.0, -500.0, 4.0]  # row k changes: inputs and target
    a, b = _forecaster(horizon=h), _forecaster(horizon=h)
    Pa, ta, _ = _feed(a, X, [])
    Pb, tb, _ = _feed(b, Y, [])
    # Scored forecast i was made at row i and settled by row i + h.
    assert ta[k - h] != tb[k - h]
    # Every forecast made before row k is the same bits, though some are scored after it.
    assert Pa[:k].tobytes() == Pb[:k].tobytes()
    # The forecast made at row k differs: it steps on row k's inputs.
    assert not np.array_equal(Pa[k, 0], Pb[k, 0])


@pytest.mark.parametrize("h", [1, 4])
def test_labels_after_row_t_do_not_reach_its_forecast(h: int) -> None:
    """Label leakage: the forecast made at row t from weights that learned y[t+1..]."""
    X = _rows(300)
    t = 150
    Y = X.copy()
    Y[t + 1 : t + h + 1, -1] += 7.0  # the targets of rows after t only
    a = _forecaster(horizon=h, target_input=False)
    b = _forecaster(horizon=h, target_input=False)
    Pa, _, _ = _feed(a, X, [])
    Pb, _, _ = _feed(b, Y, [47])
    assert Pa[: t + 1, 0].tobytes() == Pb[: t + 1, 0].tobytes()
    # The label of row t+1 is learned before the forecast at row t+1: that one differs.
    assert Pa[t + 1, 0] != Pb[t + 1, 0]
    # And the label of row t itself was learned before the forecast made at row t.
    c = _forecaster(horizon=h, target_input=False)
    W = X.copy()
    W[t, -1] += 7.0
    Pc, _, _ = _feed(c, W, [])
    assert Pa[:t, 0].tobytes() == Pc[:t, 0].tobytes() and Pa[t, 0] != Pc[t, 0]


def test_baselines_and_warmup() -> None:
    h = 4
    X = _rows(200)
    f = _forecaster(horizon=h)
    assert f.CAUSAL is True and f.learner.label_delay == h
    assert f.rows_for(10) == 10 + h
    P, truth, _ = _feed(f, X, [2, 3, 50])  # the first blocks have no forecast due
    assert f.steps == f.scored == 200 - h and f.rows_seen == 200 and f.rows_for(1) == 1
    assert f.learner.steps == 200  # one step per row
    np.testing.assert_array_equal(truth, X[h:, -1])
    np.testing.assert_array_equal(P[:, 1], X[:-h, -1])  # persistence: y[t] for y[t+h]
    # The frozen initial model: the initial network's outputs on the same normalised
    # inputs, mapped back with the statistics of the row the forecast was made at.
    init = OnlineLearner(3, 1, 20, seed=0)
    stats = [_stats_before(X, t) for t in range(len(X))]
    Z = np.array([(X[t] - mu) / sd for t, (mu, sd) in enumerate(stats)])
    raw = init.predict(Z[:-h].astype(np.float32))[:, 0].astype(np.float64)
    mu_t = np.array([stats[t][0][-1] for t in range(len(X) - h)])
    sd_t = np.array([stats[t][1][-1] for t in range(len(X) - h)])
    np.testing.assert_allclose(P[:, 2], raw * sd_t + mu_t, rtol=1e-5, atol=1e-6)
    summary = f.summary()
    assert summary["persistence_mse"] == pytest.approx(np.mean((X[h:, -1] - X[:-h, -1]) ** 2))


@pytest.mark.parametrize("cuts", [[1, 2, 3], [17, 400, 401], list(range(37, 1200, 37))])
def test_any_chunking_gives_the_same_bits(cuts: list[int]) -> None:
    X = _rows(1200, seed=3)
    a, b = _forecaster(horizon=2), _forecaster(horizon=2)
    Pa, _, Ra = _feed(a, X, [])
    Pb, _, Rb = _feed(b, X, cuts)
    assert Pa.tobytes() == Pb.tobytes() and Ra.tobytes() == Rb.tobytes()
    assert _same_bits(a, b)


def test_resume_from_checkpoint_is_bit_identical(tmp_path) -> None:
    X = _rows(1500, seed=5)
    whole = _forecaster(horizon=3, config=RuleConfig(decorrelation=True))
    P_all, _, R_all = _feed(whole, X, [600])
    first = _forecaster(horizon=3, config=RuleConfig(decorrelation=True))
    P1, _, R1 = _feed(first, X[:700], [])
    first.save(tmp_path / "c.ckpt", {"note": "hello"})
    again, meta = StreamForecaster.load(tmp_path / "c.ckpt")
    assert meta == {"note": "hello"} and again.steps == first.steps == 697
    assert _same_bits(first, again)
    P2, _, R2 = _feed(again, X[700:], [333])
    assert np.concatenate([P1, P2]).tobytes() == P_all.tobytes()
    assert np.concatenate([R1, R2]).tobytes() == R_all.tobytes()
    assert _same_bits(whole, again)
    # The learner's own loader reads the same file (the stream state is metadata).
    learner, user = OnlineLearner.load(tmp_path / "c.ckpt")
    assert learner.steps == 700 and "stream" in user  # a step per row


def test_load_rejects_a_plain_learner_checkpoint(tmp_path) -> None:
    OnlineLearner(3, 1, 10).save(tmp_path / "l.ckpt")
    with pytest.raises(Exception, match="not a twinpass stream checkpoint"):
        StreamForecaster.load(tmp_path / "l.ckpt")


def test_rows_of_the_wrong_width_are_refused() -> None:
    with pytest.raises(DataError, match=r"shaped \(n, 3\)"):
        _forecaster().learn_block(np.zeros((5, 2)))


def test_learns_mackey_glass_far_beyond_the_initial_model() -> None:
    f = StreamForecaster(1, n_hidden=50)
    for _ in range(3):
        f.learn_block(MackeyGlassStream(seed=0).next(3000)[:, None])
    s = f.summary()
    assert s["ema_mse"] < s["initial_model_ema_mse"] / 50
    assert s["ema_mse"] < s["persistence_ema_mse"]


class _RecordingSession(StreamSession):
    def save(self) -> None:
        super().save()
        self.saves = [*getattr(self, "saves", []), self.forecaster.steps]


def test_checkpoints_fall_exactly_every_k_steps(tmp_path) -> None:
    f = StreamForecaster(1, n_hidden=10, horizon=2)
    session = _RecordingSession(
        f,
        MackeyGlassSource(seed=0),
        checkpoint=tmp_path / "s.ckpt",
        checkpoint_every=1000,
        chunk_size=4096,
        max_steps=3500,
    )
    out = session.run()
    assert out.stopped_by == "max-steps" and f.steps == 3500
    assert session.saves == [1000, 2000, 3000, 3500]
    assert f.learner.steps == 3502  # the forecasts of the last 2 rows are still pending
    assert StreamForecaster.load(tmp_path / "s.ckpt")[0].steps == 3500


def test_a_stop_request_finishes_the_block_and_saves(tmp_path) -> None:
    f = StreamForecaster(1, n_hidden=10)
    stop = StopRequest()
    session = _RecordingSession(
        f, MackeyGlassSource(seed=0), checkpoint=tmp_path / "s.ckpt", chunk_size=500
    )
    out = session.run(stop, lambda fc: stop.request("SIGTERM") if fc.steps >= 1000 else None)
    assert out.stopped_by == "SIGTERM" and f.steps == 1499
    assert session.saves == [1499]


def test_signals_become_a_stop_request() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.reason == "SIGTERM"
        # A second SIGINT after a stop request interrupts at once.
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
