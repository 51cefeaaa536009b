"""OnlineLearner: prequential steps, blocks, shapes, reproducibility, checkpoints, divergence
and constant memory."""

from __future__ import annotations

import functools
import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from twinpass.devices.host import HostDevice
from twinpass.runtime import (
    CheckpointError,
    ConfigError,
    DivergenceError,
    OnlineLearner,
    Params,
    RuleConfig,
    RunResult,
    ShapeError,
)
from twinpass.runtime.checkpoint import load_checkpoint, save_checkpoint
from twinpass.runtime.config import PAPER_NETWORK
from twinpass.runtime.tasks import make_task

#: The learner's mechanics are tested on the paper's network (every weight learned by the
#: rule, so that a learning rate moves everything); the default network (exact readout,
#: leaky units) has tests of its own below and in tests/kernels/test_readout.py.
PAPER = RuleConfig(**PAPER_NETWORK)
#: Today's BP baseline in the mechanics tests: one update per step, unclipped, so that a
#: step's update and a huge rate's divergence show at once.
SLIDING_BP = PAPER.replace(rule="bp", bptt_mode="sliding", clip=None)
RULES = {
    "ANP": PAPER,
    "DANP": PAPER.replace(decorrelation=True, eps=1e-3),
    "NP": PAPER.replace(rule="np"),
    "WP": PAPER.replace(rule="wp"),
    "BP": SLIDING_BP.replace(),
    "BP-K5-adam": SLIDING_BP.replace(bptt_window=5, optimizer="adam"),
    "DBP": SLIDING_BP.replace(decorrelation=True, bptt_window=3),
}


@functools.lru_cache(maxsize=1)
def _mackey_glass() -> tuple[np.ndarray, np.ndarray]:
    """The Mackey-Glass training stream, (5000, 1) inputs and targets, float64."""
    task = make_task("mackey-glass")
    return task.train.inputs[0], task.train.targets[0]


def _mg(T: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    U, Y = _mackey_glass()
    assert start + T <= U.shape[0]
    return U[start : start + T], Y[start : start + T]


def _random_block(T: int, batch: int, n_in: int, n_out: int, seed: int = 0):
    g = np.random.default_rng(seed)
    return g.standard_normal((T, batch, n_in)), 0.5 * g.standard_normal((T, batch, n_out))


def _same_params(a: Params, b: Params) -> bool:
    return all(x.tobytes() == y.tobytes() for x, y in zip(a.astuple(), b.astuple(), strict=True))


def _manual_step(
    params: Params, xh: np.ndarray, u: np.ndarray, leak: float
) -> tuple[np.ndarray, np.ndarray]:
    """The clean network's output for input u from hidden state xh, and its next state
    (docs/design.md §2: leaky units, a readout over [xh, u, 1] when B is that wide), float64."""
    A, R, B, D = (m.astype(np.float64) for m in params.astuple())
    u = np.asarray(u, np.float64)
    xh_new = (1.0 - leak) * xh + leak * (D @ np.tanh(A @ u + R @ xh))
    f = xh_new if B.shape[1] == xh.shape[0] else np.concatenate([xh_new, u, [1.0]])
    return B @ f, xh_new


def _manual_prediction(params: Params, xh: np.ndarray, u: np.ndarray, leak: float) -> np.ndarray:
    return _manual_step(params, xh, u, leak)[0]


def _hidden_state(learner: OnlineLearner) -> np.ndarray:
    """Replica 1's hidden state (stream 0), wherever the rule keeps it."""
    state = learner.device.export_state()
    key = "bptt.xh" if learner.config.rule == "bp" else "xh1"
    return state[key][0].astype(np.float64)


# ---------------------------------------------------------------------------------------
# Steps: prediction before the update, losses
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ANP", "DANP", "NP", "WP", "BP", "BP-K5-adam"])
def test_step_predicts_before_it_updates(name: str) -> None:
    """Each step's prediction is the clean network's output with the weights *before* it.

    lr is large so that the update moves the output far more than float32 rounding does:
    were the prediction made after the update, it would match the "after" value instead.
    """
    # NP and WP steps are smaller (the noise sample, not its normalised direction).
    config = RULES[name].replace(lr=0.5 if name in ("NP", "WP") else 0.05)
    learner = OnlineLearner(1, 1, 16, config, seed=4)
    U, Y = _mg(30)
    moved = 0.0
    for t in range(30):
        before, xh = learner.params, _hidden_state(learner)
        leak = learner.config.leak
        expected = _manual_prediction(before, xh, U[t], leak)
        pred, loss1, _ = learner.step(U[t], Y[t])
        after = _manual_prediction(learner.params, xh, U[t], leak)
        np.testing.assert_allclose(pred, expected, rtol=1e-5, atol=1e-6)
        moved = max(moved, float(np.abs(after - expected).max()))
        y32 = np.float64(np.float32(Y[t, 0]))  # targets are taken in the learner dtype
        assert loss1 == pytest.approx(float((np.float64(pred[0]) - y32) ** 2), rel=1e-6)
        assert not _same_params(before, learner.params)  # it did learn
    assert moved > 1e-3


def test_first_prediction_ignores_the_learning_rate_and_equals_predict() -> None:
    u, y = _mg(1)
    # The paper's readout: its step is the learning rate (RLS has none).
    tiny = OnlineLearner(1, 1, 30, RuleConfig(**PAPER_NETWORK, lr=1e-9), seed=2)
    big = OnlineLearner(1, 1, 30, RuleConfig(**PAPER_NETWORK, lr=0.5), seed=2)
    before = big.predict(u[0], reset=True)
    p_tiny, l_tiny, _ = tiny.step(u[0], y[0])
    p_big, l_big, _ = big.step(u[0], y[0])
    assert p_tiny.tobytes() == p_big.tobytes() and l_tiny == l_big
    np.testing.assert_allclose(p_big, before, rtol=1e-6)
    # ... whereas the same input after the update gives something else, much more so at
    # the big learning rate.
    shift_big = abs(float(big.predict(u[0], reset=True)[0] - before[0]))
    shift_tiny = abs(float(tiny.predict(u[0], reset=True)[0] - before[0]))
    assert shift_big > 1e-3 and shift_big > 1e3 * shift_tiny


@pytest.mark.parametrize("name", ["ANP", "NP", "WP", "BP"])
def test_losses_of_the_two_replicas(name: str) -> None:
    learner = OnlineLearner(1, 1, 20, RULES[name], seed=0)
    U, Y = _mg(200)
    res = learner.run(U, Y)
    assert isinstance(res, RunResult) and res.rollbacks == 0
    assert res.loss1.shape == res.loss2.shape == (200,)
    y32 = Y.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(res.loss1, (res.predictions.astype(np.float64) - y32)[:, 0] ** 2)
    if name == "BP":  # one clean network: loss2 is loss1
        assert np.array_equal(res.loss1, res.loss2)
    else:  # replica 2 is perturbed, slightly (sigma = 1e-3)
        assert np.all(res.loss1 != res.loss2)
        assert np.mean(res.loss2) == pytest.approx(np.mean(res.loss1), rel=0.1)


# ---------------------------------------------------------------------------------------
# Blocks, shapes, reproducibility
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("name", list(RULES))
def test_run_equals_repeated_step_bit_for_bit(name: str, batch: int) -> None:
    U, Y = _random_block(60, batch, 2, 2, seed=batch)
    if batch == 1:
        U, Y = U[:, 0], Y[:, 0]
    a = OnlineLearner(2, 2, 12, RULES[name], batch=batch, seed=7)
    b = OnlineLearner(2, 2, 12, RULES[name], batch=batch, seed=7)
    res = a.run(U, Y)
    steps = [b.step(U[t], Y[t]) for t in range(60)]
    assert res.predictions.tobytes() == np.stack([s[0] for s in steps]).tobytes()
    assert res.loss1.tolist() == [s[1] for s in steps]
    assert res.loss2.tolist() == [s[2] for s in steps]
    assert _same_params(a.params, b.params)
    assert a.steps == b.steps == 60
    # ... and any split into blocks, too.
    c = OnlineLearner(2, 2, 12, RULES[name], batch=batch, seed=7)
    parts = [c.run(U[i:j], Y[i:j]) for i, j in ((0, 7), (7, 8), (8, 41), (41, 60))]
    assert np.concatenate([p.predictions for p in parts]).tobytes() == res.predictions.tobytes()
    assert _same_params(a.params, c.params)


def test_batch_one_takes_2d_or_3d_blocks() -> None:
    U, Y = _random_block(10, 1, 3, 2)
    a = OnlineLearner(3, 2, 8, seed=1)
    b = OnlineLearner(3, 2, 8, seed=1)
    r2 = a.run(U[:, 0], Y[:, 0])
    r3 = b.run(U, Y)
    assert r2.predictions.shape == (10, 2) and r3.predictions.shape == (10, 1, 2)
    assert r2.predictions.tobytes() == r3.predictions.tobytes()
    pred, l1, l2 = a.step(U[0, 0], Y[0, 0])
    assert pred.shape == (2,) and isinstance(l1, float) and isinstance(l2, float)
    pred, _, _ = b.step(U[0], Y[0])
    assert pred.shape == (1, 2)


def test_batch_four_takes_3d_blocks_and_batched_steps() -> None:
    U, Y = _random_block(10, 4, 3, 2)
    learner = OnlineLearner(3, 2, 8, batch=4, seed=1)
    res = learner.run(U, Y)
    assert res.predictions.shape == (10, 4, 2) and res.predictions.dtype == np.float32
    pred, _, _ = learner.step(U[0], Y[0])
    assert pred.shape == (4, 2)


def test_identical_streams_in_a_batch_get_identical_predictions() -> None:
    """Weights are shared and replica 1 is clean, so equal inputs give equal outputs; a
    layout error (streams mixed up with steps or units) would break this."""
    U, Y = _mg(100)
    learner = OnlineLearner(1, 1, 20, batch=4, seed=3)
    res = learner.run(np.repeat(U[:, None], 4, axis=1), np.repeat(Y[:, None], 4, axis=1))
    for b in range(1, 4):
        assert np.array_equal(res.predictions[:, b], res.predictions[:, 0])
    # The noise is per stream, the loss its mean (at step 0 the exact readout is still 0,
    # so both replicas output 0).
    assert np.all(res.loss1[1:] != res.loss2[1:])


@pytest.mark.parametrize(
    ("batch", "inputs", "targets", "expected"),
    [
        (1, (10, 4), (10, 2), r"inputs has shape \(10, 1, 4\), expected \(T, 1, 3\)"),
        (1, (10,), (10, 2), r"inputs has shape \(10,\), expected \(T, 3\)"),
        (1, (10, 3), (10, 1), r"targets has shape \(10, 1, 1\), expected \(T, 1, 2\)"),
        (4, (10, 3), (10, 2), r"inputs has shape \(10, 3\), expected \(T, 4, 3\)"),
        (4, (10, 2, 3), (10, 4, 2), r"inputs has shape \(10, 2, 3\), expected \(T, 4, 3\)"),
        (4, (10, 4, 3), (10, 4, 5), r"targets .* expected \(T, 4, 2\)"),
        (1, (10, 3), (9, 2), "inputs have 10 steps but targets have 9"),
        (1, (2, 10, 1, 3), (10, 2), r"expected \(T, 3\)"),
    ],
)
def test_shape_errors_name_the_expected_shape(batch, inputs, targets, expected) -> None:
    learner = OnlineLearner(3, 2, 8, batch=batch)
    with pytest.raises(ShapeError, match=expected):
        learner.run(np.zeros(inputs), np.zeros(targets))
    assert learner.steps == 0


def test_step_shape_errors_and_non_numeric_input() -> None:
    learner = OnlineLearner(3, 2, 8, batch=4)
    with pytest.raises(ShapeError, match=r"expected \(T, 4, 3\)"):
        learner.step(np.zeros(3), np.zeros(2))
    single = OnlineLearner(3, 2, 8)
    with pytest.raises(ShapeError, match=r"expected \(T, 1, 3\)"):
        single.step(np.zeros(4), np.zeros(2))
    with pytest.raises(ShapeError, match="numeric"):
        single.run(np.array([["a", "b", "c"]]), np.zeros((1, 2)))


def test_same_seed_same_bits_different_seed_different() -> None:
    U, Y = _mg(300)

    def go(seed: int, params: Params | None = None) -> tuple[RunResult, Params]:
        learner = OnlineLearner(1, 1, 30, seed=seed, params=params)
        return learner.run(U, Y), learner.params

    (r1, p1), (r2, p2) = go(11), go(11)
    assert r1.predictions.tobytes() == r2.predictions.tobytes()
    assert r1.loss2.tobytes() == r2.loss2.tobytes()
    assert _same_params(p1, p2)
    r3, p3 = go(12)
    assert not np.array_equal(r1.predictions, r3.predictions)
    assert not np.array_equal(p1.R, p3.R)
    # The seed drives the noise too, not only the initial weights.
    r4, p4 = go(12, params=OnlineLearner(1, 1, 30, seed=11).params)
    assert r4.predictions[1] == r1.predictions[1]  # same weights, same first predictions
    assert not np.array_equal(r4.loss2, r1.loss2) and not np.array_equal(p4.R, p1.R)


def test_constructor_validation() -> None:
    with pytest.raises(ConfigError, match="on_divergence"):
        OnlineLearner(1, 1, 4, on_divergence="ignore")
    for sizes in ((0, 1, 4), (1, 0, 4), (1, 1, 0)):
        with pytest.raises(ConfigError, match=">= 1"):
            OnlineLearner(*sizes)
    with pytest.raises(ConfigError, match=">= 1"):
        OnlineLearner(1, 1, 4, batch=0)
    with pytest.raises(ShapeError, match="params are 2-4-1, expected 1-4-1"):
        OnlineLearner(1, 1, 4, params=Params.init(2, 4, 1))
    with pytest.raises(ShapeError, match=r"B is 1 x 4, but the rule's readout sees \[hidden"):
        OnlineLearner(1, 1, 4, params=Params.init(1, 4, 1))
    learner = OnlineLearner(1, 1, 4, dtype="float64")
    assert learner.dtype == "float64" and learner.params.A.dtype == np.float64
    assert learner.config == RuleConfig()


def test_given_params_are_used_and_copied() -> None:
    p = Params.init(1, 6, 1, seed=42, readout_inputs=True)
    p.B[...] = 0.5
    learner = OnlineLearner(1, 1, 6, params=p, seed=0)
    assert _same_params(learner.params, p)
    p.R[:] = 0.0
    assert not np.array_equal(learner.params.R, p.R)
    learner.params.R[:] = 5.0  # .params is a copy
    assert learner.params.max_abs() < 5.0


# ---------------------------------------------------------------------------------------
# predict, evaluate, reset_state
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ANP", "BP-K5-adam"])
def test_predict_changes_neither_weights_nor_learning_state(name: str) -> None:
    U, Y = _mg(200)
    a = OnlineLearner(1, 1, 20, RULES[name], seed=5)
    b = OnlineLearner(1, 1, 20, RULES[name], seed=5)
    a.run(U[:100], Y[:100])
    b.run(U[:100], Y[:100])
    params, state = a.params, a.device.export_state()
    a.predict(U, reset=True)
    a.predict(U[:7])
    a.predict(np.zeros((5, 3, 1)))  # another batch size
    assert _same_params(a.params, params) and a.steps == 100
    after = a.device.export_state()
    assert set(after) == set(state)
    # Only predict()'s own evaluation state moved; the replicas' states, the noise
    # generator and the counters did not.
    learning = set(state) - {"xh_eval"}
    assert {"xh1", "xh2", "counter", "rng"} <= learning
    assert all(np.array_equal(after[k], state[k]) for k in learning)
    # So learning goes on exactly as if predict had not been called.
    ra, rb = a.run(U[100:], Y[100:]), b.run(U[100:], Y[100:])
    assert ra.predictions.tobytes() == rb.predictions.tobytes()
    assert _same_params(a.params, b.params)


def test_predict_shapes_and_evaluation_state() -> None:
    learner = OnlineLearner(2, 3, 10, PAPER, seed=1)  # a readout that is not 0 yet
    U = np.random.default_rng(0).standard_normal((12, 2))
    assert learner.predict(U[0], reset=True).shape == (3,)
    full = learner.predict(U, reset=True)
    assert full.shape == (12, 3)
    assert learner.predict(U[:, None], reset=True).shape == (12, 1, 3)
    assert learner.predict(np.stack([U, U], axis=1), reset=True).shape == (12, 2, 3)
    # The evaluation state carries over between calls unless reset.
    learner.predict(U[:5], reset=True)
    np.testing.assert_array_equal(learner.predict(U[5:]), full[5:])
    assert not np.allclose(learner.predict(U[5:], reset=True), full[5:])


def test_evaluate_is_the_mse_of_the_clean_network_from_a_zero_state() -> None:
    task = make_task("copy", length=5, delay=3, n_train=2, n_test=3)
    learner = OnlineLearner(task.n_in, task.n_out, 16, seed=0)
    U, Y = np.swapaxes(task.train.inputs, 0, 1), np.swapaxes(task.train.targets, 0, 1)
    learner.run(U[:, 0], Y[:, 0])  # learn a little, so the weights are not the initial ones
    params = learner.params
    mse, pred = learner.evaluate(task.test.inputs, task.test.targets)
    assert pred.shape == task.test.targets.shape
    expected = np.empty(task.test.targets.shape)
    for s in range(task.test.inputs.shape[0]):
        xh = np.zeros(16)
        for t in range(task.test.inputs.shape[1]):
            expected[s, t], xh = _manual_step(params, xh, task.test.inputs[s, t], 0.3)
    np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-5)
    assert mse == pytest.approx(np.mean((expected - task.test.targets) ** 2), rel=1e-4)
    assert mse == np.mean((pred.astype(np.float64) - task.test.targets) ** 2)
    # Evaluating twice gives the same numbers (zero state each time) and learns nothing.
    mse2, _ = learner.evaluate(task.test.inputs, task.test.targets)
    assert mse2 == mse and _same_params(learner.params, params)


def test_reset_state_starts_from_zero_and_keeps_the_weights() -> None:
    U, Y = _mg(60)
    learner = OnlineLearner(1, 1, 12, seed=0)
    learner.run(U[:50], Y[:50])
    assert np.any(_hidden_state(learner) != 0)
    params = learner.params
    learner.reset_state()
    assert np.all(_hidden_state(learner) == 0)
    assert _same_params(learner.params, params) and learner.steps == 50
    pred, _, _ = learner.step(U[50], Y[50])
    want = _manual_prediction(params, np.zeros(12), U[50], learner.config.leak)
    np.testing.assert_allclose(pred, want, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------

CKPT_RULES = ["ANP", "DANP", "NP", "WP", "BP-K5-adam", "DBP"]


@pytest.mark.parametrize("name", CKPT_RULES)
def test_checkpoint_round_trip(name: str, tmp_path: Path) -> None:
    U, Y = _random_block(50, 2, 2, 1, seed=3)
    learner = OnlineLearner(
        2, 1, 10, RULES[name], batch=2, seed=9, on_divergence="rollback", max_weight=500.0
    )
    learner.run(U, Y)
    learner.rollbacks = 3  # as if it had rolled back
    meta = {"epoch": 4, "note": "hi", "history": [1.5, None], "nested": {"a": [1, 2]}}
    path = tmp_path / "l.ckpt"
    learner.save(path, meta)
    loaded, user = OnlineLearner.load(path)
    assert user == meta
    assert loaded.config == learner.config
    assert (loaded.n_in, loaded.n_out, loaded.n_hidden, loaded.batch) == (2, 1, 10, 2)
    assert (loaded.seed, loaded.dtype, loaded.steps, loaded.rollbacks) == (9, "float32", 50, 3)
    assert (loaded.on_divergence, loaded.max_weight) == ("rollback", 500.0)
    assert _same_params(loaded.params, learner.params)
    state, again = learner.device.export_state(), loaded.device.export_state()
    assert set(again) == set(state) and {"xh1", "xh2", "counter", "rng"} <= set(state)
    for k in state:
        assert again[k].dtype == state[k].dtype and again[k].tobytes() == state[k].tobytes()
    assert state["counter"][0] == 50 or name.startswith(("BP", "DBP"))


def test_save_without_meta_and_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "l.ckpt"
    learner = OnlineLearner(1, 1, 5)
    learner.save(path)
    learner.run(*_mg(10))
    learner.save(str(path), {"k": 1})
    loaded, user = OnlineLearner.load(str(path))
    assert user == {"k": 1} and loaded.steps == 10
    assert [p.name for p in tmp_path.iterdir()] == ["l.ckpt"]
    _, user = OnlineLearner.load(path, device=HostDevice())
    assert user == {"k": 1}


RESUME = {
    "ANP-resync10": RuleConfig(resync_every=10),
    "ANP-nlms": RuleConfig(readout="nlms"),
    "WP": RuleConfig(rule="wp"),
    "BP-K5-adam": SLIDING_BP.replace(bptt_window=5, optimizer="adam"),
    "DANP-2noisy": RuleConfig(decorrelation=True, two_noisy_passes=True),
}


@pytest.mark.parametrize("name", list(RESUME))
def test_resume_equals_uninterrupted(name: str, tmp_path: Path) -> None:
    """300 steps in one go == 137 steps, save, load in a new learner, 163 more steps."""
    U, Y = _mg(300)
    whole = OnlineLearner(1, 1, 24, RESUME[name], seed=3)
    full = whole.run(U[:100], Y[:100]), whole.run(U[100:], Y[100:])
    first = OnlineLearner(1, 1, 24, RESUME[name], seed=3)
    head = first.run(U[:137], Y[:137])
    first.save(tmp_path / "c.ckpt")
    first.run(U[137:200], Y[137:200])  # what happens to the original afterwards is irrelevant
    resumed, _ = OnlineLearner.load(tmp_path / "c.ckpt")
    tail = resumed.run(U[137:], Y[137:])
    pred = np.concatenate([full[0].predictions, full[1].predictions])
    assert np.concatenate([head.predictions, tail.predictions]).tobytes() == pred.tobytes()
    assert (
        np.concatenate([head.loss2, tail.loss2]).tobytes()
        == np.concatenate([full[0].loss2, full[1].loss2]).tobytes()
    )
    assert _same_params(resumed.params, whole.params)
    assert resumed.steps == whole.steps == 300


@pytest.mark.parametrize(("key", "value"), [("counter", 0), ("rng", None)])
def test_resume_needs_the_counter_and_the_noise_state(key: str, value, tmp_path: Path) -> None:
    """The resume test above can fail: without the resync counter (137 is not a multiple of
    10) or the generator's state, the continuation differs."""
    U, Y = _mg(300)
    whole = OnlineLearner(1, 1, 24, RuleConfig(resync_every=10), seed=3)
    whole.run(U, Y)
    first = OnlineLearner(1, 1, 24, RuleConfig(resync_every=10), seed=3)
    first.run(U[:137], Y[:137])
    first.save(tmp_path / "c.ckpt")
    resumed, _ = OnlineLearner.load(tmp_path / "c.ckpt")
    state = resumed.device.export_state()
    state[key] = state[key] * 0 + (value if value is not None else 12345)
    resumed.device.import_state(state)
    resumed.run(U[137:], Y[137:])
    assert not _same_params(resumed.params, whole.params)


def _saved(tmp_path: Path) -> Path:
    path = tmp_path / "l.ckpt"
    learner = OnlineLearner(1, 1, 8)
    learner.run(*_mg(20))
    learner.save(path, {"a": 1})
    return path


def test_corrupted_checkpoint_raises(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x10
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="corrupted"):
        OnlineLearner.load(path)


@pytest.mark.parametrize("keep", [0, 10, 60, -1])
def test_truncated_checkpoint_raises(keep: int, tmp_path: Path) -> None:
    path = _saved(tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[:keep] if keep >= 0 else blob[:-1])
    with pytest.raises(CheckpointError, match=r"empty|truncated"):
        OnlineLearner.load(path)


def test_missing_and_foreign_files_raise(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        OnlineLearner.load(tmp_path / "nope.ckpt")
    (tmp_path / "x.json").write_text('{"not": "a checkpoint"}')
    with pytest.raises(CheckpointError, match="not a twinpass checkpoint"):
        OnlineLearner.load(tmp_path / "x.json")


def test_non_learner_checkpoint_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.ckpt"
    save_checkpoint(path, {"w": np.zeros(3)}, {"kind": "something.else"})
    with pytest.raises(CheckpointError, match=r"not an OnlineLearner checkpoint.*something\.else"):
        OnlineLearner.load(path)
    save_checkpoint(path, {}, {})
    with pytest.raises(CheckpointError, match="not an OnlineLearner checkpoint"):
        OnlineLearner.load(path)


@pytest.mark.parametrize("damage", ["drop-param", "drop-meta", "bad-rule", "other-rule-state"])
def test_inconsistent_learner_checkpoint_raises(damage: str, tmp_path: Path) -> None:
    path = _saved(tmp_path)
    ckpt = load_checkpoint(path)
    arrays, meta = dict(ckpt.arrays), dict(ckpt.meta)
    if damage == "drop-param":
        del arrays["param.R"]
    elif damage == "drop-meta":
        del meta["n_hidden"]
    elif damage == "bad-rule":
        meta["rule"] = {**meta["rule"], "lr": -1.0}
    else:  # ANP arrays, BP metadata: the BP state is missing
        meta["rule"] = SLIDING_BP.replace().to_dict()
    save_checkpoint(path, arrays, meta)
    with pytest.raises(CheckpointError, match="inconsistent checkpoint"):
        OnlineLearner.load(path)


# ---------------------------------------------------------------------------------------
# Divergence guard
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ANP", "DANP", "NP", "WP", "BP"])
def test_huge_learning_rate_raises_divergence_error(name: str) -> None:
    config = RULES[name].replace(lr=1e3)
    learner = OnlineLearner(1, 1, 50, config, seed=0)
    U, Y = _mg(2000)
    learner.run(U[:1], Y[:1])  # a healthy step first: the step count is global
    with pytest.raises(DivergenceError) as info:
        learner.run(U[1:], Y[1:])
    e = info.value
    assert e.rule == config.name
    assert 1 <= e.step < 2000 and e.step == learner.steps
    assert f"{config.name} diverged at step {e.step}" in str(e)
    assert "lr=1000" in str(e) and "rollback" in str(e)
    assert isinstance(e, FloatingPointError)


def test_divergence_step_is_the_first_bad_step_and_is_not_applied() -> None:
    """BP at lr 1e3 blows up within a few steps: the error names the step whose loss or
    gradient first went non-finite, and the parameters are those from just before it.
    (No weight limit here: it would stop the run earlier, at the end of the block.)"""
    config = SLIDING_BP.replace(lr=1e3)
    U, Y = _mg(50)
    with pytest.raises(DivergenceError) as info:
        OnlineLearner(1, 1, 20, config, max_weight=np.inf).run(U, Y)
    bad = info.value.step
    assert 0 < bad < 49
    replay = OnlineLearner(1, 1, 20, config, max_weight=np.inf)
    replay.run(U[:bad], Y[:bad])  # all steps before it are fine, one at a time or not
    good = replay.params
    assert good.all_finite()
    with pytest.raises(DivergenceError) as again:
        replay.step(U[bad], Y[bad])
    assert again.value.step == bad and replay.steps == bad
    assert _same_params(replay.params, good)


def test_max_weight_counts_as_divergence() -> None:
    """Large targets make the readout grow past 2 (D = I, so 1 is the initial maximum)."""
    U, Y = _mg(500)
    free = OnlineLearner(1, 1, 20, PAPER, seed=0, max_weight=np.inf)
    free.run(U, 50 * Y)
    assert free.params.all_finite() and free.params.max_abs() > 2.0
    limited = OnlineLearner(1, 1, 20, PAPER, seed=0, max_weight=2.0)
    with pytest.raises(DivergenceError) as info:
        limited.run(U, 50 * Y)
    assert info.value.step == 499  # seen at the end of the block
    assert info.value.rule == "ANP" and "ANP diverged at step 499" in str(info.value)
    # With rollback, the weights stay within the limit.
    rolled = OnlineLearner(1, 1, 20, PAPER, seed=0, max_weight=2.0, on_divergence="rollback")
    assert rolled.run(U, 50 * Y).rollbacks == 1
    assert rolled.params.max_abs() <= 2.0


def test_max_weight_divergence_message_names_the_weight() -> None:
    U, Y = _mg(500)
    learner = OnlineLearner(1, 1, 20, PAPER, seed=0, max_weight=2.0)
    with pytest.raises(DivergenceError) as info:
        learner.run(U, 50 * Y)
    assert "exceeds" in str(info.value) and "not finite" not in str(info.value)


def test_a_divergence_of_the_hidden_weights_names_lr_hidden() -> None:
    """Under the exact readout only the hidden step can run away: the message names it."""
    learner = OnlineLearner(1, 1, 20, RuleConfig(lr_hidden=1e8, radius_bound=None), seed=0)
    u = np.sin(0.1 * np.arange(4000)).astype(np.float32)[:, None]
    with pytest.raises(DivergenceError) as info:
        learner.run(u[:-1], u[1:])
    assert "lr_hidden=1e+08, the hidden weights' step" in str(info.value)
    assert "lr=" not in str(info.value)


@pytest.mark.parametrize("name", ["ANP", "NP", "WP"])
def test_rollback_restores_the_last_good_snapshot(name: str) -> None:
    """At lr 1e3 every block ends above max_weight, so each is rolled back to the snapshot
    taken before it: the parameters stay at their initial values, bit for bit."""
    learner = OnlineLearner(1, 1, 20, RULES[name].replace(lr=1e3), seed=0, on_divergence="rollback")
    initial, state0 = learner.params, learner.device.export_state()
    U, Y = _mg(300)
    total = 0
    for k in range(3):
        res = learner.run(U[100 * k : 100 * (k + 1)], Y[100 * k : 100 * (k + 1)])
        assert res.rollbacks == 1 and res.predictions.shape == (100, 1)
        total += res.rollbacks
        assert _same_params(learner.params, initial)
        state = learner.device.export_state()
        assert all(np.array_equal(state[key], state0[key]) for key in state)
    assert learner.rollbacks == total == 3 and learner.steps == 300


def test_rollback_skips_bad_steps_and_goes_on() -> None:
    learner = OnlineLearner(1, 1, 20, SLIDING_BP.replace(lr=1e3), seed=0, on_divergence="rollback")
    U, Y = _mg(300)
    res = learner.run(U, Y)
    assert res.rollbacks > 1 and learner.rollbacks == res.rollbacks
    assert learner.steps == 300 and res.predictions.shape == (300, 1)
    p = learner.params
    assert p.all_finite() and p.max_abs() <= learner.max_weight
    # Learning goes on after a rollback.
    learner.run(U[:20], Y[:20])
    assert learner.steps == 320


@pytest.mark.parametrize("name", ["ANP", "BP-K5-adam"])
def test_rollback_mode_is_invisible_on_a_healthy_run(name: str) -> None:
    U, Y = _mg(400)
    a = OnlineLearner(1, 1, 20, RULES[name], seed=1, on_divergence="rollback")
    b = OnlineLearner(1, 1, 20, RULES[name], seed=1)
    ra = [a.run(U[i : i + 100], Y[i : i + 100]) for i in range(0, 400, 100)]
    rb = b.run(U, Y)
    assert sum(r.rollbacks for r in ra) == 0 and a.rollbacks == 0
    assert np.concatenate([r.predictions for r in ra]).tobytes() == rb.predictions.tobytes()
    assert _same_params(a.params, b.params)


# ---------------------------------------------------------------------------------------
# No stored history: memory does not grow with the stream
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_divergence", ["raise", "rollback"])
def test_streaming_memory_does_not_grow_with_length(on_divergence: str) -> None:
    """Peak traced memory while streaming 10^3 or 10^5 steps (chunks of 1000) is the same.

    tracemalloc sees Python and NumPy allocations only, not what compiled code might
    allocate; the process RSS for 10^3 vs 10^6 steps is measured by benchmarks/memory.py.
    """
    chunk = 1000
    U, Y = (a.astype(np.float32) for a in _mg(chunk))
    learner = OnlineLearner(1, 1, 100, seed=0, on_divergence=on_divergence)
    gc.collect()
    tracemalloc.start()
    try:
        learner.run(U, Y)  # warm up: compiled code, caches, the first rollback snapshot
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        learner.run(U, Y)  # 10^3 steps
        peak_short = tracemalloc.get_traced_memory()[1] - base
        objects = len(gc.get_objects())
        tracemalloc.reset_peak()
        for _ in range(100):  # 10^5 steps
            learner.run(U, Y)
        current, peak = tracemalloc.get_traced_memory()
        peak_long, left = peak - base, current - base
    finally:
        tracemalloc.stop()
    assert peak_long <= 1.05 * peak_short + 4096, (peak_short, peak_long)
    # One chunk's outputs are ~20 KB (and a rollback snapshot ~80 KB); a history of 10^5
    # steps would be megabytes.
    assert peak_short < 250_000
    assert left < 4096  # nothing is kept between chunks ...
    assert len(gc.get_objects()) - objects < 50  # ... not even small Python objects
    assert learner.steps == 102 * chunk
