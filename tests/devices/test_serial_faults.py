"""The serial backend through faults: real pty, real simulator process, fault proxy between.

host (SerialDevice) <-> pty <-> tests/fault_proxy.py <-> pty <-> firmware simulator

Every faulty session deploys a model, learns on a stream and reads the weights back; the
weights must equal, bit for bit, those of the same session without faults (the reference),
and the proxy must report that it did inject the faults. Frame numbers in the fault specs
count each direction's frames from 0: HELLO 0 (connect), HELLO 1 (load's look at the
active model), DEPLOY_BEGIN 2, DEPLOY_CHUNK 3, COMMIT 4, CONFIRM 5, SET_MODE 6, STATE_SET 7,
STEP 8-17, GET_MODEL 18, STATS 19 (retransmissions shift the later ones).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fault_proxy import ProxyProcess
from sim_process import FIRMWARES, SimProcess, needs_cc, start_simulator

from twinpass.core.errors import DeviceError, ProtocolError, RemoteError
from twinpass.devices import serial_link
from twinpass.devices.registry import make_device
from twinpass.devices.serial import SerialDevice, quantise_model
from twinpass.devices.serial_link import DeviceResetError, LinkClosedError, SerialLink
from twinpass.protocol import model_image as mi
from twinpass.protocol.frame import Frame, encode_frame
from twinpass.protocol.messages import MsgType
from twinpass.runtime import OnlineLearner, Params, RuleConfig
from twinpass.runtime.config import PAPER_NETWORK

N, T, SEED = 8, 300, 5
RULE = RuleConfig(**PAPER_NETWORK, lr=1e-2)


def stream() -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(0)
    u = g.standard_normal((T + 1, 1, 1)).astype(np.float32)
    return u[:-1], 0.5 * u[1:]


@dataclass
class Session:
    weights: dict[str, np.ndarray]
    predictions: np.ndarray
    link: serial_link.LinkStats
    device: dict[str, Any]  # the device's STATS at the end


def device(path: str, window: int = 1, base_timeout: float = 0.1) -> SerialDevice:
    # A short timeout keeps retransmissions after injected faults quick; the link's own
    # retry count, which the frame schedules of these tests are written for.
    return SerialDevice(
        path,
        base_timeout=base_timeout,
        first_timeout=1.5,
        window=window,
        retries=serial_link.RETRIES,
    )


def session(
    path: str, *, first_seq: int | None = None, window: int = 1, base_timeout: float = 0.1
) -> Session:
    """Deploy, learn T steps, read the weights back."""
    dev = device(path, window, base_timeout)
    try:
        if first_seq is not None:
            dev.link._seq = first_seq
        dev.load(Params.init(1, N, 1, seed=0).arrays(), RULE.resolve(1, N, 1), seed=SEED)
        U, Y = stream()
        res = dev.step(U, Y)
        weights = dev.read_model()
        stats = dev.link.request(MsgType.STATS)
        return Session(weights, res.predictions, dev.link.stats, stats)
    finally:
        dev.close()


def deploy_other_model(path: str) -> None:
    """Make the next session deploy (not just reload) its model: put another one active."""
    dev = device(path)
    try:
        dev.deploy_image(
            quantise_model(Params.init(1, N, 1, seed=1).arrays(), RULE.resolve(1, N, 1))
        )
    finally:
        dev.close()


def same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


#: Firmwares that keep their flash across a kill -9 and restart: the Python simulator and the
#: C firmware's host build (QEMU's flash is ROM: its build keeps the flash in RAM).
PERSISTENT = ["sim", pytest.param("c", marks=needs_cc)]


# Every firmware under the same faults, the netduinoplus2 image under QEMU included.
@pytest.fixture(scope="module", params=FIRMWARES)
def sim(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[SimProcess]:
    s = SimProcess(tmp_path_factory.mktemp("faults") / "flash.bin", [], None, request.param)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def reference(sim: SimProcess) -> Session:
    deploy_other_model(sim.path)
    ref = session(sim.path, base_timeout=1.0)  # no spurious retries on a busy machine
    assert ref.link.retries == 0 and ref.link.stale == 0
    return ref


def faulty(
    sim: SimProcess, *faults: str, seed: int = 0, window: int = 1, skip: int = 1
) -> tuple[Session, dict[str, int]]:
    deploy_other_model(sim.path)
    with ProxyProcess(sim.path, *faults, seed=seed, skip=skip, stale_delay=0.3) as proxy:
        got = session(proxy.path, window=window)
        return got, proxy.stop()


@pytest.mark.parametrize(
    "faults",
    [
        ("flip:up:@2,3,8,12", "flip:down:@5,9,14"),
        ("drop:up:@2,9", "drop:down:@4,11"),
        ("nodelim:up:@1,8", "nodelim:down:@3,10"),
        ("garbage:up:@0,2,7,8,9", "garbage:down:@1,7,12"),  # up 0: before the first frame
    ],
    ids=["bit_flips", "dropped_bytes", "dropped_delimiters", "garbage"],
)
def test_corrupted_frames_cost_a_retransmission_not_the_result(
    sim: SimProcess, reference: Session, faults: tuple[str, ...]
) -> None:
    got, injected = faulty(sim, *faults, skip=0)
    assert sum(injected.values()) >= 4, injected
    assert same_weights(got.weights, reference.weights)
    assert np.array_equal(got.predictions, reference.predictions)
    assert got.link.retries >= 1  # the faults did cost something, so they did bite


def test_duplicated_requests_are_not_executed_twice(sim: SimProcess, reference: Session) -> None:
    got, injected = faulty(sim, "dup:up:@8,9,10,11,12")
    assert injected == {"dup:up": 5}
    assert got.device["duplicates"] >= 5  # answered from the reply cache
    assert got.link.stale >= 5  # their second replies were discarded
    assert same_weights(got.weights, reference.weights)


def test_lost_replies_are_retransmitted_idempotently(sim: SimProcess, reference: Session) -> None:
    got, injected = faulty(sim, "lose:down:@3,7,9,12")
    assert injected == {"lose:down": 4}
    assert got.device["duplicates"] >= 4 and got.link.retries >= 4
    assert same_weights(got.weights, reference.weights)


def test_stale_replies_are_discarded(sim: SimProcess, reference: Session) -> None:
    got, injected = faulty(sim, "stale:down:@7,10")
    assert injected == {"stale:down": 2}
    assert got.link.stale >= 2
    assert same_weights(got.weights, reference.weights)


def test_every_fault_at_random_same_weights_as_without(sim: SimProcess, reference: Session) -> None:
    kinds = ("flip", "drop", "nodelim", "garbage", "dup", "lose", "stale")
    got, injected = faulty(sim, *(f"{k}:both:0.015" for k in kinds), seed=11)
    assert sum(injected.values()) >= 3, injected
    assert same_weights(got.weights, reference.weights)


@pytest.mark.parametrize(
    "faults",
    [
        ("lose:up:@9,14",),  # STEP t=32 lost: t=64, t=96... arrive first
        ("stale:up:@9,13",),  # a STEP held back until the next one has passed it
        ("lose:down:@8,12",),
        ("dup:up:@8,9,10,11", "dup:down:@9,13"),
        ("flip:up:@9,12", "flip:down:@10,14", "drop:up:@11"),
    ],
    ids=["lost_requests", "late_requests", "lost_replies", "duplicates", "bit_flips"],
)
def test_pipelined_steps_under_faults_run_in_order(
    sim: SimProcess, reference: Session, faults: tuple[str, ...]
) -> None:
    """Four STEPs in flight: whatever the line loses, delays or repeats, the device runs the
    steps in order, each once (protocol 1.1: it refuses a STEP that is not its next)."""
    got, injected = faulty(sim, *faults, window=4)
    assert sum(injected.values()) >= 2, injected
    assert same_weights(got.weights, reference.weights)
    assert np.array_equal(got.predictions, reference.predictions)
    assert got.link.order_unknown == 0
    if faults[0].split(":")[0] in ("lose", "stale") and ":up:" in faults[0]:
        # An early STEP was refused and the STEPs went again from the missing one.
        assert got.link.reordered >= 1


@pytest.mark.parametrize("seed", [11, 12])
def test_pipelined_every_fault_at_random_same_weights_as_without(
    sim: SimProcess, reference: Session, seed: int
) -> None:
    kinds = ("flip", "drop", "nodelim", "garbage", "dup", "lose", "stale")
    got, injected = faulty(sim, *(f"{k}:both:0.03" for k in kinds), seed=seed, window=4)
    assert sum(injected.values()) >= 3, injected
    assert same_weights(got.weights, reference.weights)
    assert np.array_equal(got.predictions, reference.predictions)


def test_a_step_whose_replies_are_lost_past_a_resync_is_answered_not_rerun(
    sim: SimProcess, reference: Session
) -> None:
    """The first STEP's reply and those of its 3 resends are lost: the link resyncs (HELLO)
    and sends it again; the device, past that step, answers from its reply cache, which
    keeps STEP replies across HELLO in a 1.1 session (before: "unknown whether executed")."""
    got, injected = faulty(sim, "lose:down:@8,9,10,11")
    assert injected == {"lose:down": 4}
    assert got.link.resyncs == 1
    assert same_weights(got.weights, reference.weights)
    assert np.array_equal(got.predictions, reference.predictions)


def test_without_the_order_check_a_lost_request_reorders_the_steps(
    sim: SimProcess, reference: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: a host that says protocol 1.0 gets a device that does not check STEP
    order, and the same lost request makes it run later steps first (different weights)."""
    monkeypatch.setattr(serial_link, "PROTO_MINOR", 0)
    got, injected = faulty(sim, "lose:up:@9", window=4)
    assert injected == {"lose:up": 1}
    assert not same_weights(got.weights, reference.weights)
    assert got.link.order_unknown >= 1 and got.link.reordered == 0


def test_pipelined_without_faults_equals_lockstep(sim: SimProcess, reference: Session) -> None:
    deploy_other_model(sim.path)
    got = session(sim.path, window=4, base_timeout=1.0)
    assert same_weights(got.weights, reference.weights)
    assert got.link.order_unknown == 0 and got.link.reordered == 0


def test_a_registry_spec_opens_the_named_port_and_a_bare_one_none(sim: SimProcess) -> None:
    dev = make_device(f"serial:{sim.path}")
    try:
        assert isinstance(dev, SerialDevice) and dev.info().max_hidden > 0
    finally:
        dev.close()
    bare = make_device("serial")  # what `twinpass devices` builds: it must touch no port
    assert bare.info().max_hidden is None and bare.info().extra == {"port": "none"}
    with pytest.raises(DeviceError, match=r"no port"):
        bare.load(Params.init(1, N, 1).arrays(), RULE.resolve(1, N, 1))


def test_a_learner_checkpoint_resumes_on_the_device_bit_identically(
    sim: SimProcess, tmp_path: Path
) -> None:
    U, Y = stream()
    dev = device(sim.path)
    try:
        learner = OnlineLearner(
            1, 1, N, RuleConfig(**PAPER_NETWORK, lr=1e-2), seed=SEED, device=dev
        )
        learner.run(U[:100, 0], Y[:100, 0])
        learner.save(tmp_path / "on-device.ckpt")
        rest = learner.run(U[100:, 0], Y[100:, 0])
        weights = dev.read_model()
    finally:
        dev.close()
    dev = device(sim.path)
    try:
        resumed, _ = OnlineLearner.load(tmp_path / "on-device.ckpt", device=dev)
        assert resumed.steps == 100
        again = resumed.run(U[100:, 0], Y[100:, 0])
        assert np.array_equal(again.predictions, rest.predictions)
        assert same_weights(dev.read_model(), weights)
    finally:
        dev.close()


def test_seq_wraps_around_mid_stream(sim: SimProcess, reference: Session) -> None:
    deploy_other_model(sim.path)
    got = session(sim.path, first_seq=0xFFF8)  # wraps during the STEP stream
    assert same_weights(got.weights, reference.weights)


def test_disconnect_mid_deploy_then_resume(sim: SimProcess) -> None:
    deploy_other_model(sim.path)
    image = quantise_model(Params.init(1, 48, 1, seed=2).arrays(), RULE.resolve(1, 48, 1))
    chunks = -(-len(image) // (2048 - 64))
    assert chunks >= 4
    with ProxyProcess(sim.path, "disconnect:up:@5") as proxy:  # HELLO, BEGIN, 3 chunks, cut
        dev = device(proxy.path)
        with pytest.raises(LinkClosedError):
            dev.deploy_image(image)
        dev.close()
    dev = device(sim.path)
    try:
        seen: list[int] = []
        dev.deploy_image(image, progress=lambda done, total: seen.append(done), verify=True)
        assert seen[0] == 3 * (2048 - 64)  # resumed where the upload stopped
        assert seen[-1] == len(image)
        assert dev.link.hello()  # a fresh HELLO reports the new model as active
        assert dev.link.hello_info.model_hash == mi.sha256(image)
        assert dev.link.hello_info.payload["model_state"] == "confirmed"
    finally:
        dev.close()


def _active(path: str) -> tuple[bytes | None, str, bytes]:
    """The active model's hash and state, and its flash image, by a fresh connection."""
    dev = device(path)
    try:
        hello = dev.link.hello_info
        return hello.model_hash, hello.payload["model_state"], dev.read_image(source="flash")
    finally:
        dev.close()


def _kill_points(sim: SimProcess, old: bytes, new: bytes, kill_after: list[str]) -> None:
    """Upload ``new`` over ``old`` and kill -9 the simulator at each point; check flash."""
    link_chunk = 2048 - 64
    n_chunks = -(-len(new) // link_chunk)
    for point in kill_after:
        link = SerialLink(sim.path, base_timeout=0.1, first_timeout=1.0)
        link.open()
        digest = mi.sha256(new)
        shape = list(mi.parse(new).shape)
        link.request(MsgType.DEPLOY_BEGIN, {"len": len(new), "sha256": digest, "shape": shape})
        for k in range(n_chunks):
            data = new[k * link_chunk : (k + 1) * link_chunk]
            link.request(MsgType.DEPLOY_CHUNK, {"off": k * link_chunk, "data": data})
            if point == f"chunk{k}":
                break
        if point in ("commit", "confirm"):
            if point == "confirm":
                link.request(MsgType.DEPLOY_COMMIT, {"sha256": digest})
            kind = MsgType.DEPLOY_COMMIT if point == "commit" else MsgType.DEPLOY_CONFIRM
            payload = {"sha256": digest} if point == "commit" else {}
            link._write(link._encode(kind, payload, 0x4242))
            time.sleep(0.0005)  # inside (or just around) the flash writes
        sim.kill()
        link.close()
        sim.restart()
        active, state, flash = _active(sim.path)
        # Never torn: the slot parses and hashes to the old model or the new one.
        mi.parse(flash)
        assert mi.sha256(flash) == active
        if point == "confirm":
            assert active in (mi.sha256(old), digest), point
        else:  # an unconfirmed new model reverts at boot: the old one is active
            assert active == mi.sha256(old), point
        assert state == "confirmed", point
        if active != mi.sha256(old):  # the next round starts from the old model again
            dev = device(sim.path)
            dev.deploy_image(old)
            dev.close()


def _old_and_new(n_new: int) -> tuple[bytes, bytes]:
    old = quantise_model(Params.init(1, N, 1, seed=3).arrays(), RULE.resolve(1, N, 1))
    new = quantise_model(Params.init(1, n_new, 1, seed=4).arrays(), RULE.resolve(1, n_new, 1))
    return old, new


def _kill_during_deploys(tmp_path: Path, firmware: str, n_new: int, commit_rounds: int) -> None:
    """Deploy an old model, then kill -9 at every chunk of a new one (N = n_new) and
    ``commit_rounds`` times each during commit and confirm (``_kill_points``)."""
    old, new = _old_and_new(n_new)
    n_chunks = -(-len(new) // (2048 - 64))
    with start_simulator(tmp_path / "flash.bin", firmware=firmware) as sim:
        dev = device(sim.path)
        dev.deploy_image(old)
        dev.close()
        points = [f"chunk{k}" for k in range(n_chunks)] + ["commit", "confirm"] * commit_rounds
        _kill_points(sim, old, new, points)


@pytest.mark.parametrize("firmware", PERSISTENT)
def test_kill9_at_every_chunk_and_during_commit_leaves_old_or_new(
    tmp_path: Path, firmware: str
) -> None:
    _kill_during_deploys(tmp_path, firmware, 40, 1)  # 4 chunks


@pytest.mark.slow
@pytest.mark.parametrize("firmware", PERSISTENT)
def test_kill9_at_every_chunk_of_a_large_model(tmp_path: Path, firmware: str) -> None:
    _kill_during_deploys(tmp_path, firmware, 128, 5)  # 34 chunks


def test_device_reset_mid_stream_is_seen_through_the_boot_epoch(sim: SimProcess) -> None:
    dev = device(sim.path)
    try:
        dev.load(Params.init(1, N, 1, seed=0).arrays(), RULE.resolve(1, N, 1), seed=SEED)
        U, Y = stream()
        dev.step(U[:50], Y[:50])
        epoch = dev.link.epoch
        dev.link.request(MsgType.RESET, {"what": "device"})  # the board reboots
        with pytest.raises(DeviceResetError, match=r"boot epoch"):
            dev.step(U[50:], Y[50:])
        assert dev.link.epoch == (epoch + 1) % 256
        with pytest.raises(DeviceError, match=r"reset"):  # no silent stepping on lost state
            dev.step(U[50:], Y[50:])
        dev.load(Params.init(1, N, 1, seed=0).arrays(), RULE.resolve(1, N, 1), seed=SEED)
        assert dev.step(U[:10], Y[:10]).applied == 10
    finally:
        dev.close()


def test_oversize_frame_is_dropped_and_counted_and_the_link_goes_on(sim: SimProcess) -> None:
    with SerialLink(sim.path, base_timeout=0.1, first_timeout=1.0) as link:
        before = link.request(MsgType.STATS)["overflows"]
        link._write(encode_frame(Frame(MsgType.PING, 7, {"pad": b"\x01" * 5000})))
        with pytest.raises(ProtocolError, match=r"exceeds the device's max_frame"):
            link.request(MsgType.PING, {"pad": b"\x01" * 5000})
        assert link.request(MsgType.PING) == {}
        assert link.request(MsgType.STATS)["overflows"] == before + 1


def test_unknown_type_is_refused_and_unknown_keys_are_ignored(sim: SimProcess) -> None:
    with SerialLink(sim.path, base_timeout=0.1, first_timeout=1.0) as link:
        with pytest.raises(RemoteError) as info:
            link.request(0x5A, {})
        assert info.value.code == "UNKNOWN_TYPE"
        assert link.request(MsgType.PING, {"no_such_key": [1, 2, 3]}) == {}
        assert link.hello().caps.rx_window >= 1


def test_major_version_mismatch_is_a_clear_error(
    sim: SimProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(serial_link, "PROTO_MAJOR", serial_link.PROTO_MAJOR + 1)
    link = SerialLink(sim.path, base_timeout=0.1, first_timeout=1.0)
    with pytest.raises(ProtocolError, match=r"major versions must match"):
        link.open()
    assert not link.is_open
