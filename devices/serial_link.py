"""The host's end of a twinpass serial link: transport, request/reply, retries, pipelining.

:class:`SerialLink` opens any pyserial URL (a device path, a pseudo-terminal, ``socket://``,
``loop://``) and turns it into requests with replies:

- every request gets a u16 sequence number (wrapping), and its reply must carry the same
  seq and ``type | 0x80``; a reply with any other seq is *stale* (a late answer to an
  earlier try, a duplicate) and is discarded and counted;
- a request without a reply in time is sent again with the *same* seq and bytes (the
  device answers a repeat from its reply cache and never executes it twice); after
  ``retries`` resends the link resynchronises (a few ``0x00``, then HELLO) and tries again
  before giving up with :class:`DeviceError`;
- the timeout of a request is ``base + 2 (bytes out + bytes back) 10 / baud + step time``,
  doubled after every resend (backoff). Late replies that arrive during the resync are
  still taken (a busy device answers in order, before HELLO). A HELLO clears the device's
  reply cache, so after a resync only requests that are safe to execute twice are sent
  again; for the others (a COMMIT, a RESET; a STEP to a 1.0 device) the outcome is unknown
  and the link says so. A 1.1 device keeps STEP replies cached across HELLO and never runs
  a STEP twice, so STEPs are sent again after a resync;
- the device's boot epoch (in every frame header) is tracked: a change means the device
  reset and lost its learning state, raised as :class:`DeviceResetError` (and passed to
  ``on_reset``);
- an ERROR reply is raised as :class:`RemoteError` with the device's code;
- :meth:`SerialLink.pipeline` keeps up to the device's ``rx_window`` requests in flight.
  With a device of protocol 1.1 or later, STEPs run strictly in the order of their ``t``:
  the device refuses a STEP that is not the next one (a lost request overtaken by later
  ones) with BAD_STATE and its ``t_next``, and the link sends the STEPs again from that
  one, in order (docs/protocol.md §2, STEP order). So pipelined learning is exactly
  lockstep learning, whatever the line loses, duplicates or delays.

A reader thread drains the port all the time, so the host never blocks writing into a
full pseudo-terminal buffer (~16 KB each way) while the device blocks writing replies
that nobody reads: a single-threaded write-then-read host deadlocks there.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import serial

from twinpass.core.errors import DeviceError, ProtocolError, RemoteError
from twinpass.protocol.frame import (
    DEFAULT_MAX_FRAME,
    PROTO_MAJOR,
    PROTO_MINOR,
    REPLY,
    Flags,
    Frame,
    FrameReader,
    encode_frame,
    next_seq,
)
from twinpass.protocol.messages import MsgType

#: Boards reset when the port opens (DTR) and emulators drop output sent before the host
#: connects: HELLO is sent every HELLO_INTERVAL seconds until this many have passed.
FIRST_HELLO_TIMEOUT = 2.5
HELLO_INTERVAL = 0.5
RETRIES = 3
BASE_TIMEOUT = 0.25
RESYNC_ZEROS = 8
DEFAULT_BAUD = 115200
HOST_MAX_FRAME = 65536


class DeviceResetError(DeviceError):
    """The device rebooted (its boot epoch changed): its volatile learning state is gone."""

    def __init__(self, old: int, new: int, what: str) -> None:
        super().__init__(
            f"the device reset during {what} (boot epoch {old} -> {new}): its hidden state "
            "and learning position were lost; load the model again (or import a saved "
            "state) before stepping on"
        )
        self.old_epoch = old
        self.new_epoch = new


class LinkClosedError(DeviceError):
    """The port is gone (unplugged, the device process died) or the link was closed."""


@dataclass(frozen=True)
class Caps:
    """What a device advertises in its HELLO reply."""

    max_frame: int = DEFAULT_MAX_FRAME
    rx_window: int = 1
    max_hidden: int | None = None
    ram_free: int | None = None
    dtypes: tuple[str, ...] = ()
    slots: int = 1
    step_us: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, caps: Mapping[str, Any]) -> Caps:
        known = {"max_frame", "rx_window", "max_hidden", "ram_free", "dtypes", "slots", "step_us"}
        try:
            return cls(
                max_frame=int(caps.get("max_frame", DEFAULT_MAX_FRAME)),
                rx_window=max(1, int(caps.get("rx_window", 1))),
                max_hidden=None if caps.get("max_hidden") is None else int(caps["max_hidden"]),
                ram_free=None if caps.get("ram_free") is None else int(caps["ram_free"]),
                dtypes=tuple(str(d) for d in caps.get("dtypes", ())),
                slots=int(caps.get("slots", 1)),
                step_us=float(caps.get("step_us", 0.0)),
                extra={k: v for k, v in caps.items() if k not in known},
            )
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"HELLO reply has malformed capabilities {caps!r}: {exc}") from exc


@dataclass(frozen=True)
class Hello:
    """The device's HELLO reply."""

    proto: tuple[int, int]
    fw: str
    board: str
    boot_id: Any
    epoch: int
    caps: Caps
    active_slot: Any
    model_hash: bytes | None
    payload: dict[str, Any]

    @classmethod
    def from_frame(cls, frame: Frame) -> Hello:
        p = frame.payload
        proto = p.get("proto", [frame.version, 0])
        try:
            major, minor = int(proto[0]), int(proto[1])
        except (TypeError, ValueError, IndexError):
            major, minor = frame.version, 0
        model_hash = p.get("model_hash")
        return cls(
            proto=(major, minor),
            fw=str(p.get("fw", "?")),
            board=str(p.get("board", "?")),
            boot_id=p.get("boot_id"),
            epoch=frame.epoch,
            caps=Caps.from_payload(p.get("caps") or {}),
            active_slot=p.get("active_slot"),
            model_hash=bytes(model_hash) if isinstance(model_hash, bytes | bytearray) else None,
            payload=dict(p),
        )


@dataclass
class LinkStats:
    """What happened on the link (for tests, benchmarks and ``twinpass device info``)."""

    requests: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    replies: int = 0
    retries: int = 0  # resends after a timeout
    timeouts: int = 0  # requests that ran out of retries before a resync
    resyncs: int = 0
    stale: int = 0  # replies with an unexpected seq or type, discarded
    unsolicited: int = 0
    remote_errors: int = 0
    resets: int = 0
    dropped: int = 0  # frames the reader discarded (bad COBS, CRC, too long...)
    # STEPs the device refused as out of order (an earlier one had not arrived) and that
    # were sent again in order: a protocol 1.1 device never runs steps out of order.
    reordered: int = 0
    # Only with a protocol 1.0 device, which does not check STEP order: pipelined requests
    # whose execution order is unknown (the oldest in flight got no reply while later ones
    # were in flight: its request may have been lost and the later ones executed first, or
    # only its reply was lost). Always 0 with a 1.1 device and in lockstep (window 1).
    order_unknown: int = 0


#: Requests whose second execution changes something: never re-sent after a resync (the
#: HELLO of a resync clears the device's reply cache, so a repeat would execute again) —
#: except STEP with a device that checks STEP order (1.1), which never runs a t twice.
NOT_IDEMPOTENT = frozenset({MsgType.STEP, MsgType.DEPLOY_COMMIT, MsgType.PREDICT, MsgType.RESET})

#: STEP's t is a u32 that wraps (docs/protocol.md §2).
T_MASK = 0xFFFFFFFF


@dataclass
class _Pending:
    seq: int
    type: int
    data: bytes
    timeout: float
    what: str
    t: int | None = None  # a STEP's t
    deadline: float = 0.0
    tries: int = 0
    reply: Frame | None = None
    # Link-wide numbers of this request's transmissions not yet matched to a reply, oldest
    # first, and of its latest transmission: they tell whether an out-of-order refusal
    # answers a transmission older than the latest resend of the missing STEP.
    unanswered: deque[int] = field(default_factory=deque)
    last_sent: int = -1


_CLOSED = object()  # the reader's last word on the queue: the port failed


class SerialLink:
    """A request/reply link to a twinpass device over a pyserial URL.

    ``open()`` (or ``with``) opens the port and says HELLO; requests raise
    :class:`DeviceError` subclasses only: :class:`RemoteError` (the device refused),
    :class:`DeviceResetError`, :class:`LinkClosedError`, or a plain DeviceError when the
    device does not answer.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = DEFAULT_BAUD,
        base_timeout: float = BASE_TIMEOUT,
        retries: int = RETRIES,
        first_timeout: float = FIRST_HELLO_TIMEOUT,
        first_seq: int | None = None,
        on_reset: Callable[[int, int], None] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise DeviceError(f"a serial link needs a port URL or device path, got {url!r}")
        self.url = url.strip()
        self.baudrate = int(baudrate)
        self.base_timeout = float(base_timeout)
        self.retries = int(retries)
        self.first_timeout = float(first_timeout)
        # A random first seq: a fresh host must not collide with replies the device still
        # caches from a previous host's session (a cached reply is answered by seq).
        self._seq = int.from_bytes(os.urandom(2), "little") if first_seq is None else first_seq
        self._seq &= 0xFFFF
        self._sent = 0  # transmissions so far (numbers the frames a _Pending sends)
        self.on_reset = on_reset
        self.stats = LinkStats()
        self.hello_info: Hello | None = None
        self.epoch: int | None = None
        self._port: Any = None
        self._fd: int | None = None
        # The host takes frames up to 64 KiB whatever the device's own limit: it only bounds
        # how much a delimiter-less run of garbage can make the host buffer.
        self._reader = FrameReader(HOST_MAX_FRAME)
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._failure: str | None = None
        # One request (or pipeline) at a time. Re-entrant: a pipeline generator abandoned by
        # an exception holds it until collected, and the same thread must not deadlock on it
        # (replies to the abandoned requests are discarded as stale).
        self._lock = threading.RLock()

    # -- opening and closing ------------------------------------------------------------------

    def open(self) -> Hello:
        """Open the port, start the reader and greet the device (long first timeout)."""
        if self._port is not None:
            raise DeviceError(f"link to {self.url} is already open")
        try:
            # timeout=0: the reader thread polls with select and never blocks in read();
            # write_timeout: a device that stops reading must not hang the host forever.
            self._port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=0, write_timeout=10.0
            )
        except (serial.SerialException, ValueError, OSError) as exc:
            raise LinkClosedError(f"cannot open serial port {self.url!r}: {exc}") from exc
        self._fd = _selectable_fd(self._port)
        self._stop.clear()
        self._failure = None
        self._thread = threading.Thread(target=self._read_loop, name="twinpass-link", daemon=True)
        self._thread.start()
        try:
            return self.connect()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the reader and close the port; closing twice is harmless."""
        self._stop.set()
        port, self._port = self._port, None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        self._thread = None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def __enter__(self) -> SerialLink:
        if self._port is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- greeting ---------------------------------------------------------------------------

    def connect(self) -> Hello:
        """HELLO every ``HELLO_INTERVAL`` until ``first_timeout`` has passed (the board may be
        booting: it resets when the port opens, and drops what arrives meanwhile)."""
        last: Exception | None = None
        deadline = time.monotonic() + self.first_timeout
        attempts = 0
        while True:
            attempts += 1
            try:
                return self.hello(timeout=HELLO_INTERVAL, retries=0)
            except (RemoteError, ProtocolError, LinkClosedError):
                raise  # an answer, or a dead port: trying again changes nothing
            except DeviceError as exc:
                last = exc
            if time.monotonic() >= deadline:
                break
            self._write(b"\x00" * RESYNC_ZEROS)
        raise DeviceError(
            f"no twinpass device answers on {self.url}: {attempts} HELLO attempts over "
            f"{self.first_timeout:g} s got no valid reply ({last}); check the port, the "
            "baud rate, and that the firmware (or `twinpass firmware-sim`) is running"
        )

    def hello(self, *, timeout: float | None = None, retries: int | None = None) -> Hello:
        """Say HELLO; check the major version; (re)learn the device's capabilities."""
        with self._lock:
            try:
                frame = self._exchange(
                    MsgType.HELLO,
                    {"proto": [PROTO_MAJOR, PROTO_MINOR]},
                    timeout=timeout,
                    retries=retries,
                    resync=False,
                    check_epoch=False,
                )
            except RemoteError as exc:
                if exc.code != "BAD_VERSION":
                    raise
                raise ProtocolError(
                    f"device on {self.url} refuses twinpass protocol {PROTO_MAJOR}."
                    f"{PROTO_MINOR} ({exc.remote_message}): major versions must match; "
                    "update the firmware or twinpass"
                ) from exc
        info = Hello.from_frame(frame)
        if info.proto[0] != PROTO_MAJOR or frame.version != PROTO_MAJOR:
            raise ProtocolError(
                f"device on {self.url} speaks twinpass protocol {info.proto[0]}.{info.proto[1]} "
                f"but this host speaks {PROTO_MAJOR}.{PROTO_MINOR}: major versions must "
                "match; update the firmware or twinpass"
            )
        old = self.epoch
        self.epoch = frame.epoch
        self.hello_info = info
        if old is not None and old != frame.epoch:
            self._note_reset(old, frame.epoch, "HELLO")
        return info

    @property
    def ordered(self) -> bool:
        """Whether the device checks STEP order (protocol 1.1 or later on both ends)."""
        info = self.hello_info
        return info is not None and PROTO_MINOR >= 1 and info.proto >= (PROTO_MAJOR, 1)

    @property
    def caps(self) -> Caps:
        if self.hello_info is None:
            raise DeviceError("the link has not greeted the device yet: call open()")
        return self.hello_info.caps

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        msg_type: int,
        payload: Mapping[str, Any] | None = None,
        *,
        reply_bytes: int = 64,
        steps: int = 0,
        extra_s: float = 0.0,
    ) -> dict[str, Any]:
        """Send one request and return its reply's payload (stop-and-wait).

        ``reply_bytes`` and ``steps`` scale the timeout; ``extra_s`` adds the device's own
        work beyond steps (a flash erase, a hash over an image).
        """
        with self._lock:
            frame = self._exchange(
                msg_type,
                payload or {},
                reply_bytes=reply_bytes,
                steps=steps,
                extra_s=extra_s,
                resync=True,
            )
        return frame.payload

    def send_noreply(self, msg_type: int, payload: Mapping[str, Any] | None = None) -> None:
        """Send a message that gets no reply (REWARD); it must be idempotent on the device."""
        seq = self._take_seq()
        self._write(self._encode(msg_type, payload or {}, seq, Flags.NOREPLY))

    def pipeline(
        self,
        requests: Iterable[tuple[int, Mapping[str, Any]]],
        *,
        window: int | None = None,
        reply_bytes: int = 64,
        steps: int = 1,
    ) -> Iterator[dict[str, Any]]:
        """Send requests with up to ``window`` (default: the device's rx_window) in flight;
        yield their reply payloads in order.

        Requests are executed by the device in the order they arrive; a lost request is
        resent with its seq, and the ones after it without a reply are resent after it. A
        protocol 1.1 device refuses a STEP whose ``t`` is not its next one (the lost one
        was overtaken) without running it, and the link resends from that STEP, in order:
        STEPs pipelined with increasing ``t`` run exactly in order, each once.
        """
        window = self.caps.rx_window if window is None else max(1, int(window))
        with self._lock:
            yield from self._pipeline(iter(requests), window, reply_bytes, steps)

    # -- internals: the exchange ----------------------------------------------------------

    def _exchange(
        self,
        msg_type: int,
        payload: Mapping[str, Any],
        *,
        timeout: float | None = None,
        retries: int | None = None,
        reply_bytes: int = 64,
        steps: int = 0,
        extra_s: float = 0.0,
        resync: bool = True,
        check_epoch: bool = True,
    ) -> Frame:
        frames = self._pipeline(
            iter([(msg_type, payload)]),
            1,
            reply_bytes,
            steps,
            extra_s=extra_s,
            timeout=timeout,
            retries=retries,
            resync=resync,
            check_epoch=check_epoch,
            raw=True,
        )
        return next(frames)

    def _pipeline(
        self,
        requests: Iterator[tuple[int, Mapping[str, Any]]],
        window: int,
        reply_bytes: int,
        steps: int,
        *,
        extra_s: float = 0.0,
        timeout: float | None = None,
        retries: int | None = None,
        resync: bool = True,
        check_epoch: bool = True,
        raw: bool = False,
    ) -> Iterator[Any]:
        retries = self.retries if retries is None else retries
        flight: deque[_Pending] = deque()
        by_seq: dict[int, _Pending] = {}
        # t of the STEPs answered lately: a refusal naming one of them as the device's next
        # step is late (the line delayed it), not news.
        done_t: deque[int] = deque(maxlen=64)
        exhausted = False
        resynced = False
        while True:
            while not exhausted and len(flight) < window:
                item = next(requests, None)
                if item is None:
                    exhausted = True
                    break
                msg_type, payload = item
                seq = self._take_seq()
                data = self._encode(msg_type, payload, seq)
                t = (
                    timeout
                    if timeout is not None
                    else self._timeout_for(len(data) + reply_bytes, steps) + extra_s
                )
                p = _Pending(seq, int(msg_type), data, t, _type_name(msg_type))
                if p.type == MsgType.STEP and isinstance(payload.get("t"), int):
                    p.t = int(payload["t"]) & T_MASK
                flight.append(p)
                by_seq[seq] = p
                self._send(p)
                self.stats.requests += 1
            if not flight:
                return
            head = flight[0]
            if head.reply is not None:
                flight.popleft()
                del by_seq[head.seq]
                if head.t is not None:
                    done_t.append(head.t)
                reply = head.reply
                if reply.is_error:
                    self.stats.remote_errors += 1
                    p = reply.payload
                    raise RemoteError(str(p.get("code", "?")), str(p.get("msg", "")))
                yield reply if raw else reply.payload
                continue
            frame = self._next_frame(head.deadline)
            if frame is None:  # the oldest request timed out
                if head.tries == 1 and len(flight) > 1 and not self.ordered:
                    self.stats.order_unknown += 1
                if head.tries <= retries:
                    # Resend it and everything after it that has no reply yet, in order:
                    # the device answers what it already executed from its reply cache.
                    for p in flight:
                        if p.reply is None:
                            self.stats.retries += 1
                            p.timeout *= 2
                            self._send(p)
                    continue
                self.stats.timeouts += 1
                if resync and not resynced:
                    resynced = True
                    self._resync(head.what, by_seq)
                    unsafe = [
                        p.what
                        for p in flight
                        if p.reply is None
                        and p.type in NOT_IDEMPOTENT
                        and not (p.type == MsgType.STEP and p.t is not None and self.ordered)
                    ]
                    if unsafe:
                        raise DeviceError(
                            f"no reply from the device on {self.url} to {head.what} (seq "
                            f"{head.seq}) after {head.tries} tries; the link resynchronised, "
                            f"but whether the device executed {', '.join(unsafe)} is unknown "
                            "(sending it again could execute it twice)"
                        )
                    for p in flight:
                        if p.reply is None:
                            p.tries = 0
                            self._send(p)
                    continue
                raise DeviceError(
                    f"no reply from the device on {self.url} to {head.what} (seq {head.seq}) "
                    f"after {head.tries} tries{' and a resync' if resynced else ''}: is it "
                    "still running and on this port?"
                )
            if check_epoch and self.epoch is not None and frame.epoch != self.epoch:
                old = self.epoch
                self.epoch = frame.epoch
                self._note_reset(old, frame.epoch, head.what)
            p = by_seq.get(frame.seq)
            if (
                p is None
                or p.reply is not None
                or not frame.is_reply
                or (frame.request_type != p.type and not frame.is_error)
            ):
                self.stats.stale += 1
                continue
            # Replies come in the order the device handled the transmissions: this one
            # answers p's oldest unanswered transmission (or a later one, if that was lost).
            answered = p.unanswered.popleft() if p.unanswered else None
            if p.t is not None and _out_of_order(frame):
                self._reorder(p, frame, answered, flight, done_t)
                continue
            self.stats.replies += 1
            p.reply = frame

    def _reorder(
        self,
        p: _Pending,
        frame: Frame,
        answered: int | None,
        flight: deque[_Pending],
        done_t: deque[int],
    ) -> None:
        """The device refused STEP ``p`` as out of order: resend from its ``t_next``.

        The refusal did not run ``p`` and was not cached, so ``p`` stays without a reply
        and is sent again (same seq, same bytes) after the STEP the device waits for.
        """
        self.stats.reordered += 1
        t_next = frame.payload.get("t_next")
        if not isinstance(t_next, int) or isinstance(t_next, bool):
            raise ProtocolError(f"out-of-order refusal of STEP t={p.t} without an int t_next")
        t_next &= T_MASK
        if t_next in done_t:
            return  # a late refusal (a reordering line): that STEP has run since
        pos = {id(r): i for i, r in enumerate(flight)}
        q = next((r for r in flight if r.t == t_next), None)
        if q is not None and q.reply is not None:
            return  # a late refusal: q has run since (its reply overtook this one)
        assert p.t is not None
        if (q is not None and pos[id(q)] > pos[id(p)]) or (q is None and _after(t_next, p.t)):
            # The device is past p: p ran, but its reply was lost and has left the device's
            # reply cache (more requests in flight than the cache holds), so a repeat is
            # refused, rightly: it must not run twice.
            raise DeviceError(
                f"STEP t={p.t} ran on the device on {self.url} but its reply was lost for "
                "good (it left the device's reply cache): its predictions and losses are "
                f"unknown; the weights are intact and the device expects STEP t={t_next} next"
            )
        if q is None:
            ts = [r.t for r in flight if r.t is not None]
            raise DeviceError(
                f"the device on {self.url} expects STEP t={t_next} next, but the STEPs in "
                f"flight are t={ts}: its step sequence was changed behind this host's back "
                "(another host, a reset, a STATE_SET); load the model or import a state again"
            )
        if answered is None or q.last_sent > answered:
            # q was sent again after the refused transmission (or this is a duplicated
            # refusal): the resend is on its way; sending again would only add duplicates.
            return
        for r in list(flight)[pos[id(q)] :]:
            if r.reply is None:
                self.stats.retries += 1
                # Not a try against the retry budget: the device answered, it is not lost.
                self._send(r, count=False)

    def _resync(self, what: str, outstanding: Mapping[int, _Pending]) -> None:
        """A few delimiters end whatever partial frame the device holds; then HELLO.

        Replies to ``outstanding`` requests that arrive before HELLO's are still taken: a
        device busy for longer than the retries (a first step that compiles, a slow flash
        erase) answers them late, and it answers in order, so whatever has no reply when
        HELLO's arrives was never received (or its reply was lost).
        """
        self.stats.resyncs += 1
        self._write(b"\x00" * RESYNC_ZEROS)
        seq = self._take_seq()
        data = self._encode(MsgType.HELLO, {"proto": [PROTO_MAJOR, PROTO_MINOR]}, seq)
        hello = _Pending(seq, MsgType.HELLO, data, self._timeout_for(len(data) + 256, 0), what)
        while True:
            self._send(hello)
            while True:
                frame = self._next_frame(hello.deadline)
                if frame is None:
                    break
                if frame.seq == seq and frame.is_reply and frame.request_type == MsgType.HELLO:
                    if self.epoch is not None and frame.epoch != self.epoch:
                        old, self.epoch = self.epoch, frame.epoch
                        self._note_reset(old, frame.epoch, what)
                    return
                p = outstanding.get(frame.seq)
                if (
                    p is not None
                    and p.reply is None
                    and frame.is_reply
                    and frame.epoch == self.epoch
                    and (frame.request_type == p.type or frame.is_error)
                ):
                    if p.t is not None and _out_of_order(frame):
                        # Not run: it goes again, in order, with the others after the resync.
                        self.stats.reordered += 1
                        continue
                    self.stats.replies += 1
                    p.reply = frame
                else:
                    self.stats.stale += 1
            if hello.tries > self.retries:
                raise DeviceError(
                    f"the device on {self.url} stopped answering during {what}: no reply "
                    f"after {self.retries} resends, and no reply to HELLO after a resync"
                )
            self.stats.retries += 1
            hello.timeout *= 2

    def _note_reset(self, old: int, new: int, what: str) -> None:
        self.stats.resets += 1
        if self.on_reset is not None:
            self.on_reset(old, new)
        raise DeviceResetError(old, new, what)

    def _send(self, p: _Pending, *, count: bool = True) -> None:
        p.tries += count
        p.deadline = time.monotonic() + p.timeout
        self._sent += 1
        p.unanswered.append(self._sent)
        p.last_sent = self._sent
        self.stats.frames_out += 1
        self._write(p.data)

    def _take_seq(self) -> int:
        seq = self._seq
        self._seq = next_seq(seq)
        return seq

    def _encode(
        self, msg_type: int, payload: Mapping[str, Any], seq: int, flags: int = Flags.NONE
    ) -> bytes:
        data = encode_frame(Frame(int(msg_type), seq, dict(payload), int(flags), self.epoch or 0))
        limit = self.hello_info.caps.max_frame if self.hello_info else DEFAULT_MAX_FRAME
        # The decoded size is the encoded size minus COBS overhead and the delimiter.
        if len(data) - 2 - len(data) // 254 > limit:
            raise ProtocolError(
                f"{_type_name(msg_type)} frame of {len(data)} bytes exceeds the device's "
                f"max_frame of {limit} bytes: send it in smaller pieces"
            )
        return data

    def _timeout_for(self, nbytes: int, steps: int) -> float:
        step_s = (self.hello_info.caps.step_us if self.hello_info else 0.0) * 1e-6
        # docs/protocol.md §5: base + 2 x (request + reply bytes) x 10 / baud + S x step_us.
        return self.base_timeout + 2 * nbytes * 10.0 / self.baudrate + step_s * max(steps, 1)

    # -- internals: bytes -------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise LinkClosedError(f"the link to {self.url} is closed")
        if self._failure is not None:
            raise LinkClosedError(f"the link to {self.url} failed: {self._failure}")
        try:
            port.write(data)
        except serial.SerialTimeoutException as exc:
            raise DeviceError(
                f"the device on {self.url} stopped reading: a write of {len(data)} bytes did "
                "not complete in 10 s"
            ) from exc
        except (serial.SerialException, OSError) as exc:
            raise LinkClosedError(f"writing to {self.url} failed: {exc}") from exc
        self.stats.bytes_out += len(data)

    def _next_frame(self, deadline: float) -> Frame | None:
        """The next frame from the device, or None at the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                item = self._inbox.get(timeout=remaining)
            except queue.Empty:
                return None
            if item is _CLOSED:
                self._inbox.put(_CLOSED)  # every later wait sees it too
                raise LinkClosedError(f"the link to {self.url} failed: {self._failure}")
            frame: Frame = item
            if frame.flags & Flags.UNSOLICITED:
                self.stats.unsolicited += 1
                if self.epoch is not None and frame.epoch != self.epoch:
                    old, self.epoch = self.epoch, frame.epoch
                    self._note_reset(old, frame.epoch, "an unsolicited announcement")
                continue
            return frame

    def _read_loop(self) -> None:
        """Reader thread: drain the port into the frame decoder, frames into the inbox."""
        port, fd = self._port, self._fd
        try:
            while not self._stop.is_set():
                if fd is not None:
                    ready, _, _ = select.select([fd], [], [], 0.05)
                    if not ready:
                        continue
                data = port.read(65536)
                if not data:
                    if fd is None:
                        time.sleep(0.0005)  # loop:// and the like: nothing to select on
                    continue
                self.stats.bytes_in += len(data)
                before = self._reader.stats.dropped
                for frame in self._reader.feed(data):
                    self._inbox.put(frame)
                self.stats.dropped += self._reader.stats.dropped - before
        except (serial.SerialException, OSError, ValueError, TypeError) as exc:
            # TypeError/ValueError: pyserial's fd became None or -1 under a concurrent close.
            if not self._stop.is_set():
                self._failure = f"{type(exc).__name__}: {exc}"
                self._inbox.put(_CLOSED)


def _after(a: int, b: int) -> bool:
    """Whether step number ``a`` comes after ``b`` (u32 numbers, wrapping: serial arithmetic)."""
    return 0 < ((a - b) & T_MASK) < 1 << 31


def _out_of_order(frame: Frame) -> bool:
    """Whether a reply is a protocol 1.1 device's refusal of a STEP that is not its next."""
    return frame.is_error and frame.payload.get("code") == "BAD_STATE" and "t_next" in frame.payload


def _selectable_fd(port: Any) -> int | None:
    """A file descriptor select() can wait on for this port, if it has one."""
    for obj in (port, getattr(port, "_socket", None)):
        fileno = getattr(obj, "fileno", None)
        if fileno is None:
            continue
        try:
            fd = fileno()
        except Exception:  # pyserial raises a bare SerialException/io error when unsupported
            continue
        if isinstance(fd, int) and fd >= 0:
            return fd
    return None


def _type_name(msg_type: int) -> str:
    try:
        return MsgType(int(msg_type) & ~REPLY).name
    except ValueError:
        return f"message type 0x{int(msg_type):02x}"
