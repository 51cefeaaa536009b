"""HostDevice: the CPU backend's model, state, input handling and lifecycle."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.rule_spec import RuleSpec
from twinpass.devices.base import Device, StepResult
from twinpass.devices.host import HostDevice
from twinpass.runtime import ConfigError, DeviceError, Params, RuleConfig, ShapeError

N_IN, N, N_OUT = 2, 12, 1


def _spec(rule: RuleConfig) -> RuleSpec:
    return rule.resolve(N_IN, N, N_OUT)


SPEC = _spec(RuleConfig())


def _model(dtype: str = "float32", seed: int = 0) -> dict[str, np.ndarray]:
    return Params.init(N_IN, N, N_OUT, seed=seed, dtype=dtype).arrays()


def _block(T: int = 20, nb: int = 1, dtype=np.float32, seed: int = 1):
    g = np.random.default_rng(seed)
    return (
        g.standard_normal((T, nb, N_IN)).astype(dtype),
        (0.3 * g.standard_normal((T, nb, N_OUT))).astype(dtype),
    )


def _device(rule: RuleSpec | None = None, *, batch: int = 1, dtype: str = "float32") -> HostDevice:
    dev = HostDevice(dtype)
    dev.load(_model(dtype), rule or SPEC, batch=batch, seed=3)
    return dev


def test_is_a_device_and_describes_itself() -> None:
    dev = HostDevice()
    assert isinstance(dev, Device)
    info = dev.info()
    assert info.name == "host" and info.exact
    assert set(info.rules) == {"anp", "np", "wp", "bp", "rtrl", "eprop", "uoro"}
    assert set(info.dtypes) == {"float32", "float64"}


@pytest.mark.parametrize("dtype", ["float16", "int32", "complex64"])
def test_refuses_other_dtypes(dtype: str) -> None:
    with pytest.raises(ConfigError, match="float32 or float64"):
        HostDevice(dtype)


def test_load_read_model_round_trip_with_copies_not_views() -> None:
    model = _model()
    original = {k: v.copy() for k, v in model.items()}
    dev = HostDevice()
    dev.load(model, SPEC)
    out = dev.read_model()
    assert set(out) == {"A", "R", "B", "D"}
    for k in out:
        assert out[k].tobytes() == original[k].tobytes()
        assert not np.shares_memory(out[k], model[k])
    # Changing what was loaded, or what was read, does not reach the device.
    model["R"][:] = 99.0
    out["A"][:] = -99.0
    again = dev.read_model()
    assert np.array_equal(again["R"], original["R"])
    assert np.array_equal(again["A"], original["A"])
    assert dev.max_abs_weight() == max(float(np.abs(v).max()) for v in original.values())


def test_load_converts_dtype_and_checks_the_model() -> None:
    dev = HostDevice("float64")
    dev.load(_model("float32"), SPEC)
    assert all(m.dtype == np.float64 for m in dev.read_model().values())
    with pytest.raises(ShapeError, match="missing parameter"):
        dev.load({k: v for k, v in _model().items() if k != "D"}, SPEC)
    bad = _model()
    bad["R"] = np.zeros((N + 1, N + 1), np.float32)
    with pytest.raises(ShapeError, match="R has shape"):
        dev.load(bad, SPEC)
    with pytest.raises(ConfigError, match="batch"):
        dev.load(_model(), SPEC, batch=0)


def test_use_before_load_raises_device_error() -> None:
    dev = HostDevice()
    U, Y = _block()
    for call in (dev.read_model, dev.reset_state, dev.export_state, dev.max_abs_weight):
        with pytest.raises(DeviceError, match="load"):
            call()
    with pytest.raises(DeviceError, match="load"):
        dev.step(U, Y)


def test_close_twice_is_harmless_and_use_after_close_raises() -> None:
    dev = _device()
    dev.close()
    dev.close()
    U, Y = _block()
    with pytest.raises(DeviceError, match="closed"):
        dev.step(U, Y)
    with pytest.raises(DeviceError, match="closed"):
        dev.read_model()
    with pytest.raises(DeviceError, match="closed"):
        dev.predict(U)
    with pytest.raises(DeviceError, match="closed"):
        dev.load(_model(), SPEC)


def test_step_result_shapes_and_prequential_losses() -> None:
    dev = _device(batch=3)
    U, Y = _block(T=15, nb=3)
    res = dev.step(U, Y)
    assert isinstance(res, StepResult) and res.applied == 15
    assert res.predictions.shape == (15, 3, N_OUT) and res.predictions.dtype == np.float32
    assert res.loss1.shape == res.loss2.shape == (15,) and res.loss1.dtype == np.float64
    # loss1 is the MSE of the returned predictions (over outputs and batch).
    err = res.predictions.astype(np.float64) - Y
    np.testing.assert_allclose(res.loss1, np.mean(err**2, axis=(1, 2)), rtol=1e-5)
    assert np.all(res.loss1 != res.loss2)  # replica 2 is perturbed


@pytest.mark.parametrize(
    "rule",
    [
        RuleConfig(),
        RuleConfig(rule="np", decorrelation=True),
        RuleConfig(rule="wp"),
        RuleConfig(rule="bp", bptt_window=3, optimizer="adam"),
    ],
    ids=lambda c: c.name,
)
def test_inputs_are_never_modified(rule: RuleConfig) -> None:
    dev = _device(_spec(rule), batch=2)
    for dtype in (np.float32, np.float64):  # same dtype: passed through; other: converted
        U, Y = _block(T=30, nb=2, dtype=dtype)
        U0, Y0 = U.copy(), Y.copy()
        dev.step(U, Y)
        dev.predict(U)
        assert np.array_equal(U, U0) and np.array_equal(Y, Y0)


def test_float64_device_computes_in_float64() -> None:
    dev = _device(dtype="float64")
    U, Y = _block(dtype=np.float64)
    res = dev.step(U, Y)
    assert res.predictions.dtype == np.float64
    assert all(m.dtype == np.float64 for m in dev.read_model().values())
    assert all(v.dtype != np.float32 for v in dev.export_state().values())
    assert dev.predict(U).dtype == np.float64
    # Same model, same noise: float32 and float64 agree to float32 precision.
    res32 = _device().step(U.astype(np.float32), Y.astype(np.float32))
    np.testing.assert_allclose(res32.predictions, res.predictions, rtol=1e-3, atol=1e-5)
    assert not np.array_equal(res32.predictions.astype(np.float64), res.predictions)


def test_reset_state_zeroes_both_replicas_and_the_counter_keeps_weights() -> None:
    dev = _device()
    U, Y = _block()
    dev.step(U, Y)
    state = dev.export_state()
    assert np.any(state["xh1"] != 0) and np.any(state["xh2"] != 0) and state["counter"][0] == 20
    model = dev.read_model()
    dev.reset_state()
    after = dev.export_state()
    assert np.all(after["xh1"] == 0) and np.all(after["xh2"] == 0) and after["counter"][0] == 0
    assert np.array_equal(after["rng"], state["rng"])  # the noise stream goes on
    for k, v in dev.read_model().items():
        assert np.array_equal(v, model[k])


def test_reset_state_starts_a_new_sequence() -> None:
    """After a reset the next block sees a zero state: same as a fresh device with its weights."""
    dev = _device()
    U, Y = _block()
    dev.step(U, Y)
    dev.reset_state()
    fresh = HostDevice()
    fresh.load(dev.read_model(), SPEC, seed=3)
    # The readout's learning state (RLS's P) belongs to the weights, not to the sequence.
    learned = {k: v for k, v in dev.export_state().items() if k.startswith("learn.")}
    fresh.import_state({**fresh.export_state(), **learned, "rng": dev.export_state()["rng"]})
    a, b = dev.step(U, Y), fresh.step(U, Y)
    assert np.array_equal(a.predictions, b.predictions)
    assert np.array_equal(a.loss2, b.loss2)


@pytest.mark.parametrize(
    "rule",
    [RuleConfig(), RuleConfig(rule="wp"), RuleConfig(rule="bp", bptt_window=4, optimizer="adam")],
    ids=lambda c: c.name,
)
def test_export_import_state_continues_bit_identically(rule: RuleConfig) -> None:
    U, Y = _block(T=40)
    dev = _device(_spec(rule))
    dev.step(U[:17], Y[:17])
    model, state = dev.read_model(), dev.export_state()
    for v in state.values():  # copies: later steps do not change the export
        v.flags.writeable = True
    frozen = {k: v.copy() for k, v in state.items()}
    rest = dev.step(U[17:], Y[17:])
    assert all(np.array_equal(state[k], frozen[k]) for k in state)

    other = HostDevice()
    other.load(model, _spec(rule), seed=12345)  # a different seed: the rng comes from state
    other.import_state(state)
    again = other.step(U[17:], Y[17:])
    assert np.array_equal(again.predictions, rest.predictions)
    assert np.array_equal(again.loss2, rest.loss2)
    for k, v in other.read_model().items():
        assert v.tobytes() == dev.read_model()[k].tobytes()


def test_bp_state_includes_the_window_and_adam_moments() -> None:
    dev = _device(_spec(RuleConfig(rule="bp", bptt_window=4, optimizer="adam")))
    keys = set(dev.export_state())
    assert {"xh1", "xh2", "counter", "rng"} <= keys
    assert any(k.startswith("bptt.") for k in keys)


def test_import_state_checks_keys_and_shapes() -> None:
    dev = _device()
    state = dev.export_state()
    with pytest.raises(ShapeError, match="xh2"):
        dev.import_state({k: v for k, v in state.items() if k != "xh2"})
    with pytest.raises(ShapeError, match=r"xh1.*expected \(1, 12\)"):
        dev.import_state({**state, "xh1": np.zeros((2, N), np.float32)})
    bp = _device(_spec(RuleConfig(rule="bp")))
    with pytest.raises(ShapeError, match="another rule"):
        bp.import_state(state)


def test_bad_blocks_raise_shape_error() -> None:
    dev = _device(batch=2)
    U, Y = _block(nb=2)
    with pytest.raises(ShapeError, match="3-d"):
        dev.step(U[:, 0], Y[:, 0])
    with pytest.raises(ShapeError, match=r"expected \(20, 2, 2\)"):
        dev.step(U[:, :1], Y[:, :1])
    with pytest.raises(ShapeError, match="floats"):
        dev.step(U.astype(np.int64), Y)
    with pytest.raises(ShapeError, match="steps"):
        dev.step(U, Y[:-1])
    with pytest.raises(ShapeError, match="3-d"):
        dev.step(U.tolist(), Y)  # type: ignore[arg-type]


def test_predict_does_not_learn_and_handles_any_batch() -> None:
    dev = _device(batch=2)
    U, _ = _block(T=25, nb=5)
    model, state = dev.read_model(), dev.export_state()
    p1 = dev.predict(U)
    assert p1.shape == (25, 5, N_OUT)
    for k, v in dev.read_model().items():
        assert np.array_equal(v, model[k])
    after = dev.export_state()
    assert after["xh_eval"].shape == (5, N) and np.any(after["xh_eval"] != 0)  # it moved ...
    for k in set(state) - {"xh_eval"}:  # ... the learning state did not
        assert np.array_equal(after[k], state[k])
    # reset=True (the default) repeats itself; reset=False carries the evaluation state.
    assert np.array_equal(dev.predict(U), p1)
    whole = dev.predict(U[:20])
    tail = dev.predict(U[20:], reset=False)
    assert np.array_equal(np.concatenate([whole, tail]), p1)
    # The streams of a batch are independent.
    assert np.array_equal(dev.predict(U[:, 3:4]), p1[:, 3:4])


def test_evaluation_state_is_exported_and_restored() -> None:
    """A model that predicts continuously (reset=False) resumes bit for bit from its state."""
    dev = _device()
    U, _ = _block(T=30, nb=3)
    dev.predict(U[:10])
    state = dev.export_state()
    assert state["xh_eval"].shape == (3, N)
    expected = dev.predict(U[10:], reset=False)
    other = HostDevice()
    other.load(dev.read_model(), SPEC, seed=3)
    other.import_state(state)
    assert np.array_equal(other.predict(U[10:], reset=False), expected)
    with pytest.raises(ShapeError, match="xh_eval"):
        other.import_state({**state, "xh_eval": np.zeros((3, N + 1), np.float32)})
