"""The RLS readout on a fixed-point device (docs/protocol.md §6.8), through pyserial to a
real firmware process: P by row blocks in STATE_GET/STATE_SET, what is refused, the reset
count, and the host's choice of P0 for a device."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sim_process import FIRMWARES, start_simulator

from twinpass.core.errors import ConfigError, RemoteError
from twinpass.devices.serial import SerialDevice
from twinpass.firmware_sim.fixed_point import rls_lambda_q24, rls_stream
from twinpass.protocol import model_image as mi
from twinpass.protocol.hyper import DEVICE_P0, P0_MAX
from twinpass.protocol.messages import MsgType
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.run import fit_rule_to_device

N = 40  # F = 42 with [xh, u, 1]: P (7 KB) takes two frames of 4 KiB each way


def _rule(**kw: object) -> RuleConfig:
    return RuleConfig(readout="rls", readout_p0=DEVICE_P0, lr_hidden=1e-2, **kw)


def _model() -> dict[str, np.ndarray]:
    return Params.init(1, N, 1, seed=4, readout_inputs=True, spectral_radius=0.9).arrays()


def _block(T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    s = np.sin(0.2 * np.arange(T + 1) + seed).astype(np.float32)
    return s[:-1, None, None], s[1:, None, None]


@pytest.fixture(params=FIRMWARES)
def port(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with start_simulator(tmp_path / "flash.bin", firmware=request.param) as sim:
        yield sim.path


def _device(port: str, rule: RuleConfig, params: dict[str, np.ndarray]) -> SerialDevice:
    dev = SerialDevice(port, base_timeout=0.5)
    dev.load(params, rule.resolve(1, N, 1), seed=2)
    return dev


def test_p_travels_by_row_blocks_and_carries_the_continuation(port: str) -> None:
    U, Y = _block(120)
    dev = _device(port, _rule(), _model())
    try:
        dev.step(U[:60], Y[:60])
        weights, state = dev.read_model(), dev.export_state()
        P = state["P"]
        f = N + 2
        assert P.shape == (f, f) and np.array_equal(P, P.T)  # one triangle, mirrored
        assert P[0, 0] != DEVICE_P0 * 2**24  # P learned
        rest = dev.step(U[60:], Y[60:])
        dev.load(weights, _rule().resolve(1, N, 1), seed=2)
        dev.import_state(state)
        assert np.array_equal(dev.export_state()["P"], P)
        again = dev.step(U[60:], Y[60:])
        assert np.array_equal(again.predictions, rest.predictions)
        # Control: the same weights and hidden state with P started afresh go another way.
        dev.load(weights, _rule().resolve(1, N, 1), seed=2)
        dev.import_state({**state, "P": np.eye(f, dtype=np.int64) * (int(DEVICE_P0) << 24)})
        assert not np.array_equal(dev.step(U[60:], Y[60:]).predictions, rest.predictions)
        stats = dev.link.request(MsgType.STATS, {})
        assert stats["rls_resets"] == 0
    finally:
        dev.close()


def test_what_the_device_refuses_about_p(port: str) -> None:
    dev = _device(port, _rule(), _model())
    link = dev.link
    try:
        with pytest.raises(RemoteError, match="BAD_ARGS") as exc:
            link.request(MsgType.STATE_GET, {"p_row": 40, "p_rows": 3})
        assert "beyond" in exc.value.remote_message
        with pytest.raises(RemoteError, match="BAD_ARGS"):
            link.request(MsgType.STATE_SET, {"p_row": 0, "p": b"\0" * 12})  # not whole rows
        with pytest.raises(RemoteError, match="BAD_ARGS") as exc:
            link.request(MsgType.SET_MODE, {"readout": 1})
        assert "rls" in exc.value.remote_message
        with pytest.raises(RemoteError, match="TOO_LARGE"):
            link.request(MsgType.STATE_GET, {"p_row": 0, "p_rows": 42}, reply_bytes=8000)
        # Nothing changed: the rule is still the one loaded.
        assert dev.rule_spec().readout == "rls"
        dev.load(_model(), RuleConfig(readout="nlms").resolve(1, N, 1))
        with pytest.raises(RemoteError, match="BAD_ARGS") as exc:
            link.request(MsgType.STATE_GET, {"p_row": 0, "p_rows": 1})
        assert "nlms" in exc.value.remote_message
    finally:
        dev.close()


def test_huge_inputs_reset_p_and_the_device_counts_it(port: str) -> None:
    """Inputs at the format's edge with P0 at its bound: P leaves Q7.24 and is reset."""
    U, Y = _block(30)
    dev = _device(port, _rule().replace(readout_p0=P0_MAX), _model())
    try:
        res = dev.step(U * 120.0, Y)
        assert res.applied == 30
        assert dev.link.request(MsgType.STATS, {})["rls_resets"] > 0
        assert np.isfinite(dev.read_model()["B"]).all()
    finally:
        dev.close()


def test_an_indefinite_p_from_state_set_saturates_the_gain_and_resets(port: str) -> None:
    """STATE_SET takes any symmetric P with a positive diagonal; one that is indefinite can
    make c = λ + fᵀPf one Q24 unit, where the gain k would be ~2^46 and k·e leave int64.
    The device saturates k, steps B with it and resets P, with the simulator's bits."""
    params = _model()
    params["A"][:] = 0
    params["R"][:] = 0  # the hidden state stays 0: the features are [0, ..., 0, u, 1]
    rule = _rule()
    dev = _device(port, rule, params)
    try:
        hyper = mi.parse(dev.read_image(source="live")).hyper
        lam24 = rls_lambda_q24(hyper)
        f = N + 2
        P = np.eye(f, dtype=np.int64) * hyper.p0_q
        P[N, N] = P[N + 1, N + 1] = 1 << 24
        P[N, N + 1] = P[N + 1, N] = (1 << 24) + (lam24 - 1) // 2  # indefinite on (u, 1)
        dev.import_state({**dev.export_state(), "P": P})
        B0 = mi.parse(dev.read_image(source="live")).B.copy()
        u = np.full((1, 1, 1), -1.0, np.float32)  # f = [0, ..., 0, -1, 1]: fᵀPf = 2 (p - q)
        res = dev.step(u, np.full((1, 1, 1), 100.0, np.float32))
        assert res.applied == 1
        assert dev.link.request(MsgType.STATS, {})["rls_resets"] == 1
        assert np.array_equal(dev.export_state()["P"], np.eye(f) * hyper.p0_q)
        # The simulator's §6.8 on the same P, features, B and saturated target.
        feats = np.zeros(f, np.int64)
        feats[N], feats[N + 1] = -(1 << 16), 1 << 16
        Pw, Bw = P.copy(), B0.copy()
        assert rls_stream(Pw, Bw, feats, np.array([100 << 16], np.int64), hyper) == 1
        assert np.array_equal(mi.parse(dev.read_image(source="live")).B, Bw)
        assert not np.array_equal(Bw, B0)  # B took the saturated step
    finally:
        dev.close()


def test_the_host_gives_a_device_the_p0_it_holds(port: str) -> None:
    dev = SerialDevice(port, base_timeout=0.5)
    try:
        assert dev.info().readout_p0_max == P0_MAX
        fitted = fit_rule_to_device(RuleConfig(), dev, set())
        assert fitted.readout == "rls" and fitted.readout_p0 == DEVICE_P0
        # Asked for explicitly, a P0 beyond the format is refused, naming the bound.
        explicit = fit_rule_to_device(RuleConfig(readout_p0=1e4), dev, {"readout_p0"})
        with pytest.raises(ConfigError, match=r"readout_p0 10000 .* \(0, 100\]"):
            dev.load(_model(), explicit.resolve(1, N, 1))
    finally:
        dev.close()
