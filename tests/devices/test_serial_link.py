"""The link layer against a tiny scripted responder on a real pseudo-terminal.

The responder (a thread holding the pty's master end) speaks just enough of the protocol
to exercise what the link must do on its own: retries with the same seq, a reply cache,
stale and duplicated replies, boot-epoch changes, ERROR replies, version mismatch,
seq wrap-around, and large frames in both directions without deadlock.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from twinpass.core.errors import DeviceError, ProtocolError, RemoteError
from twinpass.devices.serial_link import DeviceResetError, LinkClosedError, SerialLink
from twinpass.protocol.frame import PROTO_MAJOR, REPLY, Flags, Frame, FrameReader, encode_frame
from twinpass.protocol.messages import MsgType


class Responder:
    """A scripted device on the master end of a pty; the link opens the slave path."""

    def __init__(
        self, *, rx_window: int = 4, major: int = PROTO_MAJOR, fd: int | None = None
    ) -> None:
        if fd is None:
            self.master, self.slave = os.openpty()
            tty.setraw(self.slave)
            self.path = os.ttyname(self.slave)
        else:  # a connected socket instead of a pty
            self.master, self.slave, self.path = fd, -1, ""
        self.rx_window = rx_window
        self.major = major
        self.epoch = 1
        self.executed: list[int] = []  # seqs of requests executed (not answered from cache)
        self.cache: dict[int, bytes] = {}
        self.ignore: set[int] = set()  # request numbers (0-based, arrival order) to ignore
        self.lose: set[int] = set()  # request numbers executed but whose reply is lost
        self.duplicate_replies = False
        self.hook: Callable[[Frame], None] | None = None
        self.arrivals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _reply(self, req: Frame, payload: dict[str, Any], flags: int = Flags.REPLY) -> bytes:
        return encode_frame(
            Frame(req.type | REPLY, req.seq, payload, flags, self.epoch, self.major)
        )

    def _run(self) -> None:
        import select

        reader = FrameReader(8192)
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            for req in reader.feed(data):
                n = self.arrivals
                self.arrivals += 1
                if n in self.ignore:
                    continue
                if self.hook is not None:
                    self.hook(req)
                if req.seq in self.cache and req.type != MsgType.HELLO:
                    out = self.cache[req.seq]
                else:
                    out = self._execute(req)
                    self.cache[req.seq] = out
                    if len(self.cache) > self.rx_window:
                        self.cache.pop(next(iter(self.cache)))
                if n not in self.lose:
                    os.write(self.master, out * (2 if self.duplicate_replies else 1))

    def _execute(self, req: Frame) -> bytes:
        if req.type == MsgType.HELLO:
            caps = {"max_frame": 8192, "rx_window": self.rx_window, "step_us": 10}
            return self._reply(req, {"proto": [self.major, 0], "fw": "echo", "caps": caps})
        self.executed.append(req.seq)
        if req.type == MsgType.STATS:
            err = {"code": "BAD_STATE", "msg": "scripted refusal"}
            return self._reply(req, err, Flags.REPLY | Flags.ERR)
        return self._reply(req, {"echo": req.payload.get("x"), "n": len(self.executed)})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def responder() -> Iterator[Responder]:
    r = Responder()
    yield r
    r.close()


def link_to(r: Responder, **kw: Any) -> SerialLink:
    kw.setdefault("base_timeout", 0.05)
    kw.setdefault("first_timeout", 0.5)
    link = SerialLink(r.path, **kw)
    link.open()
    return link


def test_hello_reads_capabilities(responder: Responder) -> None:
    with link_to(responder) as link:
        assert link.caps.rx_window == 4 and link.caps.max_frame == 8192
        assert link.epoch == 1 and link.hello_info.fw == "echo"
        assert link.request(MsgType.PING, {"x": 5})["echo"] == 5


def test_lost_request_is_resent_with_the_same_seq_and_executed_once(responder: Responder) -> None:
    with link_to(responder) as link:
        first = responder.arrivals
        responder.ignore = {first, first + 1}  # the first two tries vanish
        assert link.request(MsgType.PING, {"x": 1})["echo"] == 1
        assert link.stats.retries >= 2
        assert len(responder.executed) == 1


def test_lost_reply_is_answered_from_the_cache_not_executed_twice(responder: Responder) -> None:
    with link_to(responder) as link:
        responder.lose = {responder.arrivals}
        reply = link.request(MsgType.PING, {"x": 7})
        assert reply == {"echo": 7, "n": 1}
        assert len(responder.executed) == 1  # executed exactly once
        assert link.stats.retries >= 1


def test_duplicate_replies_are_counted_as_stale_and_ignored(responder: Responder) -> None:
    with link_to(responder) as link:
        responder.duplicate_replies = True
        got = [link.request(MsgType.PING, {"x": i})["echo"] for i in range(5)]
        assert got == list(range(5))
        time.sleep(0.05)
        link.request(MsgType.PING, {"x": 9})
        assert link.stats.stale >= 5


def test_error_reply_raises_remote_error_with_its_code(responder: Responder) -> None:
    with link_to(responder) as link:
        with pytest.raises(RemoteError) as info:
            link.request(MsgType.STATS)
        assert info.value.code == "BAD_STATE" and "scripted refusal" in str(info.value)
        assert link.request(MsgType.PING, {"x": 1})["echo"] == 1  # the link goes on


def test_boot_epoch_change_raises_device_reset(responder: Responder) -> None:
    resets: list[tuple[int, int]] = []
    with link_to(responder, on_reset=lambda a, b: resets.append((a, b))) as link:
        responder.epoch = 2
        with pytest.raises(DeviceResetError, match=r"boot epoch 1 -> 2"):
            link.request(MsgType.PING, {"x": 1})
        assert resets == [(1, 2)]
        assert link.request(MsgType.PING, {"x": 2})["echo"] == 2  # the new epoch is known


def test_major_version_mismatch_is_a_clear_error() -> None:
    r = Responder(major=PROTO_MAJOR + 1)
    try:
        link = SerialLink(r.path, first_timeout=0.5)
        with pytest.raises(ProtocolError, match=r"major versions must match"):
            link.open()
        assert not link.is_open
    finally:
        r.close()


def test_silent_device_gives_a_clear_error_after_retries_and_resync(responder: Responder) -> None:
    with link_to(responder) as link:
        responder.ignore = set(range(responder.arrivals, responder.arrivals + 100))
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match=r"stopped answering during PING"):
            link.request(MsgType.PING)
        assert link.stats.resyncs == 1 and time.monotonic() - t0 < 10


def test_a_step_without_reply_after_a_resync_is_not_sent_again(responder: Responder) -> None:
    # HELLO clears the device's reply cache: a STEP sent again could execute twice.
    with link_to(responder) as link:
        responder.ignore = set(range(responder.arrivals, responder.arrivals + 4))
        with pytest.raises(DeviceError, match=r"whether the device executed STEP is unknown"):
            link.request(MsgType.STEP, {"x": 1})
        assert link.stats.resyncs == 1 and responder.executed == []
        assert link.request(MsgType.PING, {"x": 2})["echo"] == 2


def test_a_device_busy_longer_than_the_retries_is_waited_for(responder: Responder) -> None:
    """A first step that takes a second (a JIT, a flash erase): the retries run out, the
    resync's HELLO queues behind the step, and the step's late reply is still taken."""
    slow = [True]

    def busy(req: Frame) -> None:
        if req.type == MsgType.STEP and slow:
            slow.clear()
            time.sleep(1.0)

    responder.hook = busy
    with link_to(responder) as link:
        assert link.request(MsgType.STEP, {"x": 3})["echo"] == 3
        assert link.stats.resyncs == 1 and len(responder.executed) == 1


def test_an_abandoned_pipeline_does_not_lock_the_link(responder: Responder) -> None:
    with link_to(responder) as link:
        replies = link.pipeline((MsgType.PING, {"x": i}) for i in range(10))
        assert next(replies)["echo"] == 0
        held = replies  # noqa: F841 - kept alive, as a traceback would keep it
        done: list[int] = []
        t = threading.Thread(target=lambda: done.append(link.request(MsgType.PING, {"x": 5})))
        t.start()
        t.join(0.3)
        # Another thread waits for the link (one exchange at a time) ...
        assert not done
        replies.close()
        t.join(5)
        assert done and done[0]["echo"] == 5
        # ... while the same thread may go on (late replies are discarded as stale).
        again = link.pipeline((MsgType.PING, {"x": i}) for i in range(3))
        next(again)
        assert link.request(MsgType.PING, {"x": 7})["echo"] == 7


def test_nobody_on_the_port_fails_after_connect_attempts() -> None:
    r = Responder()
    r.ignore = set(range(100))
    try:
        link = SerialLink(r.path, first_timeout=0.9)
        with pytest.raises(DeviceError, match=r"2 HELLO attempts over 0.9 s"):
            link.open()
        assert r.arrivals == 2
    finally:
        r.close()


def test_seq_wraps_around_u16(responder: Responder) -> None:
    with link_to(responder, first_seq=0xFFFD) as link:
        got = [link.request(MsgType.PING, {"x": i})["echo"] for i in range(5)]
        assert got == list(range(5))
        # HELLO took 0xFFFD; then 0xFFFE, 0xFFFF, 0, 1, 2.
        assert responder.executed == [0xFFFE, 0xFFFF, 0, 1, 2]


def test_pipeline_keeps_order_and_survives_a_lost_request(responder: Responder) -> None:
    with link_to(responder) as link:
        responder.ignore = {responder.arrivals + 3}
        got = [r["echo"] for r in link.pipeline((MsgType.PING, {"x": i}) for i in range(40))]
        assert got == list(range(40))
        assert link.stats.retries >= 1


def test_large_frames_both_ways_do_not_deadlock_a_pty(responder: Responder) -> None:
    # 200 frames of 6 KB in flight 4 at a time: far more than a pty's ~16 KB buffers.
    blob = bytes(range(256)) * 24
    with link_to(responder) as link:
        t0 = time.monotonic()
        n = sum(
            1
            for r in link.pipeline(((MsgType.PING, {"x": blob}) for _ in range(200)), window=4)
            if r["echo"] == blob
        )
        assert n == 200 and time.monotonic() - t0 < 20


def test_oversize_request_is_refused_before_sending(responder: Responder) -> None:
    with link_to(responder) as link:
        out = link.stats.bytes_out
        with pytest.raises(ProtocolError, match=r"exceeds the device's max_frame of 8192"):
            link.request(MsgType.PING, {"x": b"\x01" * 9000})
        assert link.stats.bytes_out == out


def test_device_gone_raises_link_closed(responder: Responder) -> None:
    with link_to(responder) as link:
        responder.close()
        with pytest.raises(LinkClosedError):
            for _ in range(50):
                link.request(MsgType.PING)
                time.sleep(0.01)


def test_close_is_idempotent_and_use_after_close_raises(responder: Responder) -> None:
    link = link_to(responder)
    link.close()
    link.close()
    with pytest.raises(LinkClosedError):
        link.request(MsgType.PING)


def test_socket_url_works_like_a_pty() -> None:
    """pyserial's socket:// reports in_waiting as 0 or 1: the reader must select instead."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    box: list[Responder] = []
    accept = threading.Thread(target=lambda: box.append(Responder(fd=server.accept()[0].detach())))
    accept.start()
    try:
        with SerialLink(f"socket://127.0.0.1:{port}", base_timeout=0.2, first_timeout=1.0) as link:
            blob = bytes(range(256)) * 8
            got = list(link.pipeline((MsgType.PING, {"x": blob}) for _ in range(50)))
            assert all(r["echo"] == blob for r in got) and link.stats.dropped == 0
    finally:
        accept.join(5)
        for r in box:
            r.close()
        server.close()


def test_loop_url_has_no_fd_and_still_times_out_cleanly() -> None:
    # loop:// echoes our own requests back: they are not replies, so nobody answers.
    link = SerialLink("loop://", first_timeout=0.2)
    with pytest.raises(DeviceError, match=r"no twinpass device answers"):
        link.open()
    assert not link.is_open


def test_unopenable_port_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match=r"cannot open serial port"):
        SerialLink("/nonexistent/tty-twinpass").open()
