"""Frames on the wire: ``COBS(header | payload | CRC32-LE) 0x00`` (docs/protocol.md §1).

One implementation, imported by both ends: the host's serial backend and the firmware
simulator (the C firmware's ``firmware/proto/frame.c`` and ``cobs.c`` follow the same
document).

- header, 6 bytes: ``version u8, type u8, flags u8, boot_epoch u8, seq u16-LE``; the
  version byte is the protocol's major version;
- payload: one msgpack map (:mod:`.messages`);
- CRC32 (zlib's polynomial) over header and payload, little-endian.

:class:`FrameReader` turns an arbitrary byte stream into frames: it resynchronises at
every ``0x00``, so garbage, bit flips and dropped bytes cost at most the frames they touch,
and it counts what it dropped. Nothing in here raises anything but :class:`ProtocolError`
on bad bytes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntFlag
from typing import Any

from cobs import cobs

from twinpass.core.errors import ProtocolError

from .messages import MsgType, decode_payload, encode_payload

PROTO_MAJOR = 1
# 1.1: STEP order is checked (STEP's t against the device's t_next) in a session whose
# HELLO announced 1.1 or later; STATE_GET/STATE_SET carry t_next (docs/protocol.md §2).
# 1.2 refuses states no device produces (no new keys). 1.3: the improved rules (model
# image format 2: NLMS readout over [xh, u, 1], leaky units, the hidden step, the
# stability guard); HELLO caps list the readouts, STATE_GET/SET carry the guard's state.
# 1.4: the RLS readout (readout 2, P by rows in STATE_GET/SET, STATS rls_resets).
PROTO_MINOR = 4

HEADER = struct.Struct("<BBBBH")
CRC = struct.Struct("<I")
MIN_FRAME = HEADER.size + 1 + CRC.size  # header, an empty map (one byte), CRC
DEFAULT_MAX_FRAME = 4096  # decoded bytes (header + payload + CRC); a device advertises its own
REPLY = 0x80  # a reply's type is the request's type | REPLY


class Flags(IntFlag):
    NONE = 0
    REPLY = 0x01
    NOREPLY = 0x02  # the sender expects no reply (REWARD)
    UNSOLICITED = 0x04  # sent by the device on its own (a boot announcement)
    ERR = 0x08  # the payload is {code, msg}


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    type: int
    seq: int
    payload: dict[str, Any] = field(default_factory=dict)
    flags: int = 0
    epoch: int = 0
    version: int = PROTO_MAJOR

    @property
    def is_reply(self) -> bool:
        return bool(self.type & REPLY)

    @property
    def request_type(self) -> int:
        return self.type & ~REPLY & 0xFF

    @property
    def is_error(self) -> bool:
        return bool(self.flags & Flags.ERR)

    def type_name(self) -> str:
        try:
            return MsgType(self.request_type).name + (" reply" if self.is_reply else "")
        except ValueError:
            return f"type 0x{self.type:02x}"


def next_seq(seq: int) -> int:
    """The sequence number after ``seq`` (u16, wraps to 0)."""
    return (seq + 1) & 0xFFFF


class FrameDropped(ProtocolError):
    """A frame was discarded; ``kind`` is cobs, crc, short, payload or overflow."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def encode_frame(frame: Frame) -> bytes:
    """The frame's bytes on the wire, delimiter included."""
    if not (0 <= frame.type <= 0xFF and 0 <= frame.seq <= 0xFFFF and 0 <= frame.epoch <= 0xFF):
        raise ProtocolError(f"header field out of range in {frame}")
    body = HEADER.pack(
        frame.version, frame.type, int(frame.flags), frame.epoch, frame.seq
    ) + encode_payload(frame.payload)
    return cobs.encode(body + CRC.pack(zlib.crc32(body))) + b"\x00"


def decode_frame(data: bytes, *, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Decode one frame's COBS bytes (without the delimiter); raise :class:`ProtocolError`."""
    if b"\x00" in data:
        raise ProtocolError("frame contains a 0x00 byte: pass the bytes between delimiters")
    try:
        raw = cobs.decode(data)
    except cobs.DecodeError as exc:
        raise FrameDropped("cobs", f"bad COBS encoding ({exc})") from None
    if len(raw) > max_frame:
        raise FrameDropped("overflow", f"frame of {len(raw)} bytes exceeds {max_frame}")
    if len(raw) < MIN_FRAME:
        raise FrameDropped("short", f"frame of {len(raw)} bytes is shorter than {MIN_FRAME}")
    body, (crc,) = raw[: -CRC.size], CRC.unpack(raw[-CRC.size :])
    if zlib.crc32(body) != crc:
        raise FrameDropped("crc", "CRC mismatch")
    version, type_, flags, epoch, seq = HEADER.unpack_from(body)
    try:
        payload = decode_payload(body[HEADER.size :])
    except ProtocolError as exc:
        raise FrameDropped("payload", str(exc)) from None
    return Frame(type_, seq, payload, flags, epoch, version)


@dataclass
class ReaderStats:
    frames: int = 0
    cobs_errors: int = 0
    crc_errors: int = 0
    short: int = 0
    payload_errors: int = 0
    overflows: int = 0

    def count(self, kind: str) -> None:
        attr = {
            "cobs": "cobs_errors",
            "crc": "crc_errors",
            "short": "short",
            "payload": "payload_errors",
            "overflow": "overflows",
        }[kind]
        setattr(self, attr, getattr(self, attr) + 1)

    @property
    def dropped(self) -> int:
        return (
            self.cobs_errors + self.crc_errors + self.short + self.payload_errors + self.overflows
        )


class FrameReader:
    """Split a byte stream at ``0x00`` delimiters and decode the frames; never raises.

    Bad frames are dropped and counted in :attr:`stats`. A run of bytes longer than the
    largest encoded frame is discarded as it arrives (an overflow), so a stream without
    delimiters cannot grow the buffer without bound.
    """

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        # COBS adds one byte per 254 plus one: the longest valid encoding of a frame.
        self._max_encoded = max_frame + max_frame // 254 + 2
        self._buf = bytearray()
        self._overflowing = False
        self.stats = ReaderStats()

    def feed(self, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                self._append(data[start:])
                return frames
            self._append(data[start:end])
            chunk, overflowing = bytes(self._buf), self._overflowing
            self._buf.clear()
            self._overflowing = False
            start = end + 1
            if overflowing:
                self.stats.count("overflow")
            elif chunk:  # consecutive delimiters (a resync burst) are not frames
                frame = self._decode(chunk)
                if frame is not None:
                    frames.append(frame)

    def _append(self, data: bytes) -> None:
        if self._overflowing:
            return
        self._buf += data
        if len(self._buf) > self._max_encoded:
            self._buf.clear()
            self._overflowing = True

    def _decode(self, chunk: bytes) -> Frame | None:
        try:
            frame = decode_frame(chunk, max_frame=self.max_frame)
        except FrameDropped as exc:
            self.stats.count(exc.kind)
            return None
        self.stats.frames += 1
        return frame

    def pending(self) -> int:
        """Bytes held since the last delimiter (a partial frame)."""
        return len(self._buf)


def iter_frames(stream: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Iterator[Frame]:
    """The valid frames in a complete byte string."""
    yield from FrameReader(max_frame).feed(stream)
