"""The firmware's request handling in process: any payload gets a reply, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinpass.firmware_sim.firmware import Firmware
from twinpass.firmware_sim.flash import Flash
from twinpass.protocol import model_image as mi
from twinpass.protocol.frame import PROTO_MAJOR, Flags, Frame, FrameReader
from twinpass.protocol.messages import MsgType
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=64),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=8,
)
keys = st.sampled_from(
    ["t", "x", "y", "learn", "steps", "len", "sha256", "shape", "off", "data", "what", "batch",
     "seed", "lr_q", "sigma_q", "proto", "dl", "source", "reset", "xh1", "counter", "eval_batch"]
)  # fmt: skip
payloads = st.dictionaries(keys | st.text(max_size=5), values, max_size=6)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory: pytest.TempPathFactory) -> Firmware:
    flash = Flash(tmp_path_factory.mktemp("fw") / "flash.bin", durable=False)
    fw = Firmware(flash)
    # With a model, so that STEP & co. get past NO_MODEL.
    img = mi.quantise(
        Params.init(2, 4, 1, seed=0).arrays(), RuleConfig(**PAPER_NETWORK).resolve(2, 4, 1)
    )
    import hashlib

    digest = hashlib.sha256(img).digest()
    for type_, p in [
        (MsgType.DEPLOY_BEGIN, {"len": len(img), "sha256": digest, "shape": [2, 4, 1]}),
        (MsgType.DEPLOY_CHUNK, {"off": 0, "data": img}),
        (MsgType.DEPLOY_COMMIT, {"sha256": digest}),
        (MsgType.DEPLOY_CONFIRM, {}),
    ]:
        data, _ = fw.handle(Frame(type_, 1, p))
        (reply,) = FrameReader(1 << 16).feed(data)
        assert not reply.is_error, reply.payload
    return fw


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    type_=st.sampled_from([*map(int, MsgType), 0x00, 0x55, 0x85]),
    payload=payloads,
    seq=st.integers(0, 0xFFFF),
)
def test_any_payload_gets_exactly_one_well_formed_reply(
    firmware: Firmware, type_: int, payload: dict, seq: int
) -> None:
    if type_ in (MsgType.RESET, MsgType.DEPLOY_ABORT):
        payload = {**payload, "what": "state"} if type_ == MsgType.RESET else payload
    data, _reboot = firmware.handle(Frame(type_, seq, payload))
    frames = FrameReader(1 << 16).feed(data)
    assert len(frames) == 1
    reply = frames[0]
    assert reply.seq == seq and reply.type == (type_ | 0x80) & 0xFF
    assert reply.flags & Flags.REPLY and reply.version == PROTO_MAJOR
    if reply.is_error:
        assert {"code", "msg"} <= set(reply.payload)
        assert "internal error" not in reply.payload["msg"], reply.payload


def test_noreply_requests_get_no_reply(tmp_path: Path) -> None:
    fw = Firmware(Flash(tmp_path / "f.bin", durable=False))
    data, _ = fw.handle(Frame(MsgType.REWARD, 3, {"t": 0, "dl": 1}, Flags.NOREPLY))
    assert data == b"" and fw.counters.missed_rewards == 1
