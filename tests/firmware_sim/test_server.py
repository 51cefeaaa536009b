"""The firmware through pyserial over a real pty to a real process: the simulator
(``python -m twinpass.firmware_sim``) and, with the same tests, the C firmware's host build
(``firmware/``, board/host), which must answer every request as the simulator does."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
from sim_process import FIRMWARES, QEMU_NO_PERSISTENCE, SimLink, start_simulator

from twinpass.firmware_sim import ram
from twinpass.firmware_sim.fixed_point import FixedNet
from twinpass.protocol import model_image as mi
from twinpass.protocol.frame import PROTO_MAJOR, Flags, Frame, encode_frame
from twinpass.protocol.messages import ErrorCode, MsgType, pack_array, unpack_array
from twinpass.protocol.qformat import A_FRAC, quantise_array
from twinpass.runtime import Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

N_IN, N, N_OUT = 2, 8, 1
SHAPE = [N_IN, N, N_OUT]
QEMU_SLOT = 30 * 1024  # firmware/board/netduinoplus2: BOARD_FLASH_RAM's slots


def image(seed: int = 0, n: int = N, **rule) -> bytes:
    p = Params.init(N_IN, n, N_OUT, seed=seed).arrays()
    return mi.quantise(
        p, RuleConfig(**PAPER_NETWORK, lr=1e-2, sigma=1e-2, **rule).resolve(N_IN, n, N_OUT)
    )


def local_net(img: bytes, seed: int = 0, batch: int = 1) -> FixedNet:
    m = mi.parse(img)
    return FixedNet(m.A, m.R, m.B, m.D, m.hyper, batch=batch, seed=seed)


def data(T: int, batch: int = 1, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    U = quantise_array(0.5 * g.standard_normal((T, batch, N_IN)), A_FRAC)
    Y = quantise_array(0.3 * g.standard_normal((T, batch, N_OUT)), A_FRAC)
    return U, Y


def step_payload(t: int, U: np.ndarray, Y: np.ndarray | None, **kw) -> dict:
    p = {"t": t, "x": pack_array(U.reshape(-1), "int32"), "steps": U.shape[0], **kw}
    p["y"] = None if Y is None else pack_array(Y.reshape(-1), "int32")
    return p


def error_code(frame: Frame) -> str:
    assert frame.is_error and frame.flags & Flags.ERR, frame
    return frame.payload["code"]


@pytest.fixture(params=FIRMWARES)
def firmware(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sim(tmp_path: Path, firmware: str):
    with start_simulator(tmp_path / "flash.bin", firmware=firmware) as proc:
        yield proc


@pytest.fixture
def link(sim):
    with SimLink(sim.path) as lk:
        lk.hello()
        yield lk


def fits_device(budget: int, n_in: int, n_out: int, firmware: str) -> int:
    """The largest N a device takes: its RAM budget, and under QEMU its 30 KiB flash slots
    (emulated in RAM; a real board's are 128 KiB, the simulator's and host build's 256)."""
    n = ram.largest_hidden(budget, n_in, n_out)
    while firmware == "qemu" and mi.image_size(n_in, n, n_out, False) > QEMU_SLOT:
        n -= 1
    return n


def test_hello_reports_capabilities_and_the_boot_epoch(link: SimLink, firmware: str) -> None:
    reply = link.request(MsgType.HELLO, {"proto": [PROTO_MAJOR, 0], "from_the_future": 1})
    p = reply.payload
    assert reply.type == MsgType.HELLO | 0x80 and not reply.is_error
    assert p["proto"][0] == PROTO_MAJOR and p["model_state"] == "none"
    caps = p["caps"]
    assert caps["max_frame"] == 2048 and caps["rx_window"] >= 1 and caps["slots"] == 2
    assert caps["ram_free"] <= caps["ram_total"] == 128 * 1024
    # The model budget: the simulator's is 128 KiB - FIRMWARE_RESERVED; the C firmware keeps
    # more for itself. Either way max_hidden is the largest N that fits it (no model yet).
    budget = caps["ram_free"]
    assert budget <= 128 * 1024 - ram.FIRMWARE_RESERVED
    assert caps["max_hidden"] == fits_device(budget, 1, 1, firmware)
    assert reply.epoch == p["boot_id"] & 0xFF == 1


def test_version_mismatch_unknown_type_and_unknown_keys(link: SimLink) -> None:
    bad = link.request(MsgType.PING, {}, version=PROTO_MAJOR + 1)
    assert error_code(bad) == "BAD_VERSION" and bad.version == PROTO_MAJOR
    bad = link.request(MsgType.HELLO, {"proto": [PROTO_MAJOR + 1, 0]})
    assert error_code(bad) == "BAD_VERSION" and "major" in bad.payload["msg"]
    unknown = link.request(0x55, {})
    assert error_code(unknown) == "UNKNOWN_TYPE" and unknown.type == 0xD5
    assert link.ok(MsgType.PING, {"no_such_key": [1, 2], "another": b"x"}) == {}
    assert link.ok(MsgType.STATS, {})["bad_version"] == 2


def test_an_oversize_frame_is_dropped_and_counted(link: SimLink) -> None:
    seq = link.send(MsgType.PING, {"pad": b"\x01" * 3000})
    with pytest.raises(TimeoutError):
        link.reply(seq, timeout=0.5)
    assert link.ok(MsgType.STATS, {})["overflows"] >= 1
    # Garbage and a corrupted frame are dropped too; the link recovers at the next 0x00.
    frame = bytearray(encode_frame(Frame(MsgType.PING, 999, {})))
    frame[3] ^= 0x40
    link.send_raw(b"\x13\x37garbage\x00" + bytes(frame))
    assert link.ok(MsgType.PING, {}) == {}
    stats = link.ok(MsgType.STATS, {})
    assert stats["crc_errors"] + stats["cobs_errors"] + stats["short"] >= 1


def test_deploy_then_learning_on_device_is_bit_exact(link: SimLink) -> None:
    img = image()
    reply = link.deploy(img, shape=SHAPE, chunk=300)
    assert reply["model_hash"] == hashlib.sha256(img).digest()
    hello = link.hello().payload
    assert hello["model_hash"] == mi.sha256(img) and hello["model_state"] == "confirmed"
    assert hello["shape"] == SHAPE
    ref = local_net(img)
    U, Y = data(40)
    for t0 in range(0, 40, 8):
        out = link.ok(MsgType.STEP, step_payload(t0, U[t0 : t0 + 8], Y[t0 : t0 + 8]))
        assert out["t"] == t0 and out["applied"] == 8
        y_hat = unpack_array(out["y_hat"], "int32", (8, 1, N_OUT))
        l1 = unpack_array(out["loss_1"], "int64", 8)
        for s in range(8):
            r = ref.step(U[t0 + s], Y[t0 + s], True)
            assert np.array_equal(y_hat[s], r.y1) and l1[s] == r.loss1
    live = b""
    while True:
        got = link.ok(MsgType.GET_MODEL, {"off": len(live), "len": 1000})
        live += got["data"]
        if len(live) >= got["total"]:
            break
    assert live == mi.build(ref.A, ref.R, ref.B, ref.D, ref.hyper)
    flash = link.ok(MsgType.GET_MODEL, {"off": 0, "len": 1500, "source": "flash"})["data"]
    assert flash == img[:1500]


def test_a_repeated_request_is_answered_from_the_cache_and_not_executed(link: SimLink) -> None:
    img = image()
    link.deploy(img, shape=SHAPE)
    U, Y = data(1)
    payload = step_payload(0, U, Y)
    seq = link.send(MsgType.STEP, payload)
    first = link.reply(seq)
    before = link.ok(MsgType.STATS, {})
    link.send(MsgType.STEP, payload, seq=seq)  # a retransmission: same seq, same bytes
    again = link.reply(seq)
    assert again == first
    after = link.ok(MsgType.STATS, {})
    assert after["updates"] == before["updates"] == 1 and after["duplicates"] == 1
    # The same seq with other content is a new request.
    link.send(MsgType.STEP, step_payload(1, U, Y), seq=seq)
    assert link.reply(seq).payload["t"] == 1
    assert link.ok(MsgType.STATS, {})["updates"] == 2


def test_deploy_resumes_refuses_gaps_bad_hashes(link: SimLink) -> None:
    img = image()
    digest = hashlib.sha256(img).digest()
    begin = {"len": len(img), "sha256": digest, "shape": SHAPE}
    assert link.ok(MsgType.DEPLOY_BEGIN, begin)["off_next"] == 0
    assert link.ok(MsgType.DEPLOY_CHUNK, {"off": 0, "data": img[:200]})["off_next"] == 200
    # The same chunk again is harmless; a gap is refused with the offset to resume from.
    assert link.ok(MsgType.DEPLOY_CHUNK, {"off": 0, "data": img[:200]})["off_next"] == 200
    gap = link.request(MsgType.DEPLOY_CHUNK, {"off": 300, "data": img[300:400]})
    assert error_code(gap) == "BAD_STATE" and gap.payload["off_next"] == 200
    early = link.request(MsgType.DEPLOY_COMMIT, {"sha256": digest})
    assert error_code(early) == "BAD_STATE"
    # After a "disconnect", BEGIN again resumes at the received offset.
    assert link.ok(MsgType.DEPLOY_BEGIN, begin)["off_next"] == 200
    link.ok(MsgType.DEPLOY_CHUNK, {"off": 200, "data": img[200:]})
    wrong = link.request(MsgType.DEPLOY_COMMIT, {"sha256": b"\x00" * 32})
    assert error_code(wrong) == "HASH_MISMATCH"
    # A corrupted upload fails the hash at commit.
    bad = bytearray(img)
    bad[100] ^= 1
    link.ok(MsgType.DEPLOY_BEGIN, begin)
    link.ok(MsgType.DEPLOY_CHUNK, {"off": 0, "data": bytes(bad)})
    assert error_code(link.request(MsgType.DEPLOY_COMMIT, {"sha256": digest})) == "HASH_MISMATCH"
    assert link.hello().payload["model_state"] == "none"


def test_a_model_that_does_not_fit_is_refused_at_begin(tmp_path: Path, firmware: str) -> None:
    args = ("--ram", "32") if firmware == "sim" else ()  # the C firmware's RAM is its own
    with (
        start_simulator(tmp_path / "flash.bin", *args, firmware=firmware) as sim,
        SimLink(sim.path) as lk,
    ):
        budget = lk.hello().payload["caps"]["ram_free"]
        fits = fits_device(budget, N_IN, N_OUT, firmware)
        n = fits + 1
        size = mi.image_size(N_IN, n, N_OUT, False)
        refused = lk.request(
            MsgType.DEPLOY_BEGIN, {"len": size, "sha256": b"\0" * 32, "shape": [N_IN, n, N_OUT]}
        )
        assert error_code(refused) == "TOO_LARGE"
        assert (
            f"N <= {fits} fits" in refused.payload["msg"] and refused.payload["max_hidden"] == fits
        )


def test_reset_device_replies_first_then_boots_with_a_new_epoch(link: SimLink) -> None:
    epoch = link.hello().epoch
    reply = link.request(MsgType.RESET, {"what": "device"})
    assert reply.payload == {"what": "device"} and reply.epoch == epoch
    again = link.hello()
    assert again.epoch == (epoch + 1) & 0xFF
    assert any(f.epoch == again.epoch for f in link.unsolicited)
    assert error_code(link.request(MsgType.RESET, {"what": "everything"})) == "BAD_ARGS"


def test_restart_keeps_a_committed_model_and_reverts_a_pending_one(sim, link: SimLink) -> None:
    if sim.firmware == "qemu":
        pytest.skip(QEMU_NO_PERSISTENCE)
    m1, m2 = image(seed=1), image(seed=2)
    link.deploy(m1, shape=SHAPE)
    link.close()
    sim.kill()  # kill -9
    sim.restart()
    with SimLink(sim.path) as lk:
        hello = lk.hello()
        assert hello.payload["model_hash"] == mi.sha256(m1) and hello.epoch == 2
        lk.deploy(m2, shape=SHAPE, confirm=False)
        assert lk.hello().payload["model_state"] == "pending"
    sim.kill()
    sim.restart()
    with SimLink(sim.path) as lk:
        hello = lk.hello().payload
        assert hello["model_hash"] == mi.sha256(m1) and hello["model_state"] == "confirmed"


def test_save_model_commits_the_learned_weights(sim, link: SimLink) -> None:
    img = image()
    link.deploy(img, shape=SHAPE)
    U, Y = data(16)
    link.ok(MsgType.STEP, step_payload(0, U, Y))
    saved = link.ok(MsgType.SAVE_MODEL, {})
    ref = local_net(img)
    for t in range(16):
        ref.step(U[t], Y[t], True)
    learned = mi.build(ref.A, ref.R, ref.B, ref.D, ref.hyper)
    assert saved["model_hash"] == mi.sha256(learned) != mi.sha256(img)
    if sim.firmware == "qemu":  # its flash lives in RAM: a reset keeps it, a restart would not
        link.request(MsgType.RESET, {"what": "device"})
        assert link.hello().payload["model_hash"] == mi.sha256(learned)
        return
    link.close()
    sim.stop()
    sim.restart()
    with SimLink(sim.path) as lk:
        assert lk.hello().payload["model_hash"] == mi.sha256(learned)


def test_reward_variant_over_the_wire_equals_learning_with_targets(link: SimLink) -> None:
    img = image()
    link.deploy(img, shape=SHAPE)
    ref = local_net(img)
    U, Y = data(12)
    for t in range(12):
        out = link.ok(MsgType.STEP, step_payload(t, U[t : t + 1], None))
        y1 = unpack_array(out["y_hat"], "int32", (1, N_OUT)).astype(np.int64)
        y2 = unpack_array(out["y_hat_2"], "int32", (1, N_OUT)).astype(np.int64)
        e1, e2 = y1 - Y[t], y2 - Y[t]
        dl = int((e2 * e2).sum() // N_OUT - (e1 * e1).sum() // N_OUT)
        link.send(MsgType.REWARD, {"t": t, "dl": dl}, flags=Flags.NOREPLY)
        link.send(MsgType.REWARD, {"t": t, "dl": dl}, flags=Flags.NOREPLY)  # idempotent
        ref.step(U[t], Y[t], True)
    stats = link.ok(MsgType.STATS, {})
    assert stats["rewards"] == 12 and stats["missed_rewards"] == 12
    live = link.ok(MsgType.GET_MODEL, {"off": 0, "len": 1900})["data"]
    assert live == mi.build(ref.A, ref.R, ref.B, ref.D, ref.hyper)[:1900]


def test_state_export_import_and_predict(link: SimLink) -> None:
    img = image()
    link.deploy(img, shape=SHAPE)
    link.ok(MsgType.SET_MODE, {"batch": 2, "seed": 5})
    U, Y = data(10, batch=2)
    link.ok(MsgType.STEP, step_payload(0, U[:5], Y[:5]))
    state = link.ok(MsgType.STATE_GET, {})
    assert state["batch"] == 2 and len(state["xh1"]) == 4 * 2 * N
    rest = link.ok(MsgType.STEP, step_payload(5, U[5:], Y[5:]))
    link.ok(MsgType.STATE_SET, state)
    link.ok(MsgType.RESET, {"what": "state"})
    link.ok(MsgType.STATE_SET, state)
    # Rewind the weights too: reload from flash, then restore the state.
    link.ok(MsgType.RESET, {"what": "model"})
    link.ok(MsgType.SET_MODE, {"batch": 2, "seed": 5})
    link.ok(MsgType.STEP, step_payload(0, U[:5], Y[:5]))
    link.ok(MsgType.STATE_SET, state)
    again = link.ok(MsgType.STEP, step_payload(5, U[5:], Y[5:]))
    assert again["y_hat"] == rest["y_hat"] and again["loss_1"] == rest["loss_1"]
    P = quantise_array(np.random.default_rng(3).standard_normal((6, 3, N_IN)), A_FRAC)
    pred = link.ok(MsgType.PREDICT, {"x": pack_array(P.reshape(-1), "int32"), "batch": 3})
    y = unpack_array(pred["y_hat"], "int32", (6, 3, N_OUT))
    assert y.shape == (6, 3, N_OUT)
    wrong = link.request(MsgType.STEP, {"t": 0, "x": b"\0" * 4, "y": None})
    assert error_code(wrong) == "BAD_ARGS" and "bytes" in wrong.payload["msg"]


def test_state_set_refuses_states_the_device_cannot_produce(link: SimLink) -> None:
    """1.2 (docs/protocol.md §3, §6.1): STATE_SET refuses with BAD_ARGS, naming the key and
    the bound, a hidden state beyond ±2**16 (no D) / ±2**20 (D stored) and a negative
    counter, and changes nothing; the bounds themselves and u64 counters up to 2**64 - 1
    (msgpack carries no larger integer) are accepted, and the counters wrap as in C."""
    img = image()
    link.deploy(img, shape=SHAPE)
    U, Y = data(3)
    link.ok(MsgType.STEP, step_payload(0, U[:1], Y[:1]))
    state = link.ok(MsgType.STATE_GET, {})

    def with_value(key: str, v: int) -> dict:
        a = np.zeros(len(state[key]) // 4, np.int64)
        a[-1] = v
        return {**state, key: pack_array(a, "int32")}

    for bound, mode in ((1 << 16, None), (1 << 20, {"decorrelation": True})):
        if mode:
            link.ok(MsgType.SET_MODE, mode)  # D is stored from now on: the ±16 clamp
            state = link.ok(MsgType.STATE_GET, {})
        for key in ("xh1", "xh2", "xh_eval"):
            for v in (bound + 1, -bound - 1):
                bad = link.request(MsgType.STATE_SET, with_value(key, v))
                assert error_code(bad) == "BAD_ARGS", bad
                msg = bad.payload["msg"]
                assert f"state {key} holds {v}" in msg and f"±{bound} " in msg, msg
                assert link.ok(MsgType.STATE_GET, {}) == state  # nothing changed
            for v in (-bound, bound):
                link.ok(MsgType.STATE_SET, with_value(key, v))
                assert link.ok(MsgType.STATE_GET, {})[key] == with_value(key, v)[key]
            link.ok(MsgType.STATE_SET, state)
    for key in ("counter", "rng_counter"):
        bad = link.request(MsgType.STATE_SET, {**state, key: -1})
        assert error_code(bad) == "BAD_ARGS" and key in bad.payload["msg"]
    top = (1 << 64) - 1
    link.ok(MsgType.STATE_SET, {**state, "counter": top, "rng_counter": top - 1})
    link.ok(MsgType.STEP, step_payload(0, U[1:2], Y[1:2]))
    after = link.ok(MsgType.STATE_GET, {})
    assert after["counter"] == 0 and after["rng_counter"] == 2 * (N + N_OUT) - 2


def test_no_model_errors(link: SimLink) -> None:
    U, Y = data(1)
    assert error_code(link.request(MsgType.STEP, step_payload(0, U, Y))) == "NO_MODEL"
    assert error_code(link.request(MsgType.SAVE_MODEL, {})) == "NO_MODEL"
    assert ErrorCode.NO_MODEL.name == "NO_MODEL"


def test_baud_throttles_output(tmp_path: Path) -> None:
    with start_simulator(tmp_path / "f.bin", "--baud", "20000") as sim, SimLink(sim.path) as lk:
        lk.hello()
        lk.deploy(image(n=24), shape=[N_IN, 24, N_OUT])
        t0 = time.monotonic()
        for off in range(0, 1900, 950):
            lk.ok(MsgType.GET_MODEL, {"off": off, "len": 950})
        # ~2 KB at 2000 bytes/s
        assert time.monotonic() - t0 > 0.8


def test_seq_wraps_around_and_the_cache_keys_on_content(link: SimLink) -> None:
    for seq in (0xFFFE, 0xFFFF, 0, 1):
        reply = link.request(MsgType.PING, {"n": seq}, seq=seq)
        assert reply.seq == seq and not reply.is_error
    # seq 0xFFFF again with the same content: from the cache (no second execution).
    before = link.ok(MsgType.STATS, {})["duplicates"]
    assert link.request(MsgType.PING, {"n": 0xFFFF}, seq=0xFFFF).seq == 0xFFFF
    assert link.ok(MsgType.STATS, {})["duplicates"] == before + 1


def test_switching_decorrelation_on_mid_stream_keeps_the_learning_state(link: SimLink) -> None:
    """SET_MODE decorrelation: D is stored from then on (the identity) and learned, while
    the replicas' states, the counters and the weights carry on (the C firmware moves its
    states to make room for D)."""
    img = image()
    link.deploy(img, shape=SHAPE)
    ref = local_net(img)
    U, Y = data(24)
    first = link.ok(MsgType.STEP, step_payload(0, U[:11], Y[:11]))
    for t in range(11):
        ref.step(U[t], Y[t], True)
    before = link.ok(MsgType.STATE_GET, {})
    link.ok(MsgType.SET_MODE, {"decorrelation": True})
    after = link.ok(MsgType.STATE_GET, {})
    assert after == before and first["applied"] == 11
    ref.hyper = ref.hyper.update({"decorrelation": True})
    ref.D = np.eye(N, dtype=np.int64) << 24
    out = link.ok(MsgType.STEP, step_payload(11, U[11:], Y[11:]))
    y_hat = unpack_array(out["y_hat"], "int32", (13, 1, N_OUT))
    for s in range(13):
        r = ref.step(U[11 + s], Y[11 + s], True)
        assert np.array_equal(y_hat[s], r.y1), s
    live = link.ok(MsgType.GET_MODEL, {"off": 0, "len": 1900})
    assert live["total"] == mi.image_size(N_IN, N, N_OUT, True)
    assert live["data"] == mi.build(ref.A, ref.R, ref.B, ref.D, ref.hyper)[:1900]
