"""STEP order (protocol 1.1, docs/protocol.md §2): the device runs only the STEP numbered its
``t_next``; an early STEP is refused without running and without being cached."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from twinpass.firmware_sim.firmware import Firmware
from twinpass.firmware_sim.flash import Flash
from twinpass.protocol import model_image as mi
from twinpass.protocol.frame import PROTO_MAJOR, PROTO_MINOR, Frame, FrameReader
from twinpass.protocol.messages import MsgType, pack_array
from twinpass.protocol.qformat import A_FRAC, quantise_array
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

N_IN, N, N_OUT = 1, 6, 1


class Host:
    """Frames in, decoded replies out, straight into a Firmware (no pty)."""

    def __init__(self, fw: Firmware) -> None:
        self.fw = fw
        self.seq = 0

    def send(self, type_: int, payload: dict, seq: int | None = None) -> Frame:
        if seq is None:
            self.seq += 1
            seq = self.seq
        data, _ = self.fw.handle(Frame(type_, seq, payload))
        (reply,) = FrameReader(1 << 16).feed(data)
        return reply

    def ok(self, type_: int, payload: dict, seq: int | None = None) -> dict:
        reply = self.send(type_, payload, seq)
        assert not reply.is_error, reply.payload
        return reply.payload


def image(seed: int = 0) -> bytes:
    p = Params.init(N_IN, N, N_OUT, seed=seed).arrays()
    return mi.quantise(p, RuleConfig(**PAPER_NETWORK, lr=1e-2, sigma=1e-2).resolve(N_IN, N, N_OUT))


def deploy(host: Host, img: bytes) -> None:
    digest = hashlib.sha256(img).digest()
    host.ok(MsgType.DEPLOY_BEGIN, {"len": len(img), "sha256": digest, "shape": [N_IN, N, N_OUT]})
    host.ok(MsgType.DEPLOY_CHUNK, {"off": 0, "data": img})
    host.ok(MsgType.DEPLOY_COMMIT, {"sha256": digest})
    host.ok(MsgType.DEPLOY_CONFIRM, {})


def steps(t: int, k: int = 1, seed: int = 0) -> dict:
    g = np.random.default_rng(1000 + t)
    u = quantise_array(0.5 * g.standard_normal(k * N_IN), A_FRAC)
    y = quantise_array(0.3 * g.standard_normal(k * N_OUT), A_FRAC)
    return {"t": t, "steps": k, "x": pack_array(u, "int32"), "y": pack_array(y, "int32")}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(Firmware(Flash(tmp_path / "flash.bin", durable=False)))
    assert h.ok(MsgType.HELLO, {"proto": [1, 1]})["proto"] == [PROTO_MAJOR, PROTO_MINOR]
    deploy(h, image())
    return h


def weights(fw: Firmware) -> bytes:
    return mi.build(fw.net.A, fw.net.R, fw.net.B, fw.net.D, fw.net.hyper)


def test_an_early_step_is_refused_with_t_next_not_run_and_not_cached(host: Host) -> None:
    host.ok(MsgType.STEP, steps(0, 2))
    before = (host.fw.counters.steps, weights(host.fw))
    refused = host.send(MsgType.STEP, steps(3), seq=50)  # t=2 has not arrived
    assert refused.is_error and refused.payload["code"] == "BAD_STATE"
    assert refused.payload["t_next"] == 2 and "out of order" in refused.payload["msg"]
    assert (host.fw.counters.steps, weights(host.fw)) == before  # not run
    host.ok(MsgType.STEP, steps(2), seq=49)  # the missing one arrives...
    again = host.ok(MsgType.STEP, steps(3), seq=50)  # ...and the same request now runs
    assert again["t"] == 3 and host.fw.counters.steps == 4 and host.fw.t_next == 4


def test_a_repeat_of_a_run_step_is_answered_from_the_cache(host: Host) -> None:
    first = host.send(MsgType.STEP, steps(0), seq=7)
    host.ok(MsgType.STEP, steps(1), seq=8)
    repeat = host.send(MsgType.STEP, steps(0), seq=7)
    assert repeat == first and host.fw.counters.duplicates == 1 and host.fw.t_next == 2


def test_pipelined_steps_with_one_lost_end_as_in_order(host: Host, tmp_path: Path) -> None:
    """Lost t=1: t=2, t=3 are refused; the host resends from t_next; same weights as in order."""
    ref = Host(Firmware(Flash(tmp_path / "ref.bin", durable=False)))
    ref.ok(MsgType.HELLO, {"proto": [1, 1]})
    deploy(ref, image())
    for t in range(4):
        ref.ok(MsgType.STEP, steps(t))
    host.ok(MsgType.STEP, steps(0), seq=10)
    refusals = [host.send(MsgType.STEP, steps(t), seq=10 + t) for t in (2, 3)]
    assert all(r.payload.get("t_next") == 1 for r in refusals)
    for t in (1, 2, 3):  # resent in order, same seqs and bytes
        host.ok(MsgType.STEP, steps(t), seq=10 + t)
    assert weights(host.fw) == weights(ref.fw) and host.fw.counters.duplicates == 0


def test_what_sets_t_next(host: Host) -> None:
    host.ok(MsgType.STEP, steps(0, 3))
    assert host.ok(MsgType.STATE_GET, {})["t_next"] == 3
    host.ok(MsgType.HELLO, {"proto": [1, 1]})  # a resync's HELLO: the sequence goes on
    assert host.fw.t_next == 3
    host.ok(MsgType.RESET, {"what": "state"})
    assert host.fw.t_next == 0
    host.ok(MsgType.STEP, steps(0, 2))
    state = host.ok(MsgType.STATE_GET, {})
    host.ok(MsgType.STATE_SET, {**state, "t_next": 1000})
    assert host.fw.t_next == 1000
    host.ok(MsgType.STEP, steps(1000))
    del state["t_next"]  # a 1.0 host's STATE_SET: the sequence starts at 0
    host.ok(MsgType.STATE_SET, state)
    assert host.fw.t_next == 0
    host.ok(MsgType.STEP, steps(0))
    host.ok(MsgType.SET_MODE, {"lr_q": 1000})  # the state is kept: so is t_next
    assert host.fw.t_next == 1
    host.ok(MsgType.SET_MODE, {"batch": 1, "seed": 9})  # a new seed zeroes the state
    assert host.fw.t_next == 0
    host.ok(MsgType.STEP, steps(0))
    host.ok(MsgType.RESET, {"what": "model"})
    assert host.fw.t_next == 0
    host.ok(MsgType.STEP, steps(0))
    deploy(host, image(seed=1))
    assert host.fw.t_next == 0


def test_t_wraps_at_32_bits(host: Host) -> None:
    state = host.ok(MsgType.STATE_GET, {})
    host.ok(MsgType.STATE_SET, {**state, "t_next": 2**32 - 2})
    host.ok(MsgType.STEP, steps(2**32 - 2, 3))
    assert host.fw.t_next == 1
    host.ok(MsgType.STEP, steps(1))


def test_a_protocol_1_0_session_does_not_check_the_order(host: Host) -> None:
    host.ok(MsgType.HELLO, {"proto": [1, 0]})
    host.ok(MsgType.STEP, steps(0, 2))
    host.ok(MsgType.STEP, steps(0, 2))  # a 1.0 host numbers every block from 0
    host.ok(MsgType.STEP, steps(7))
    assert host.fw.counters.steps == 5
