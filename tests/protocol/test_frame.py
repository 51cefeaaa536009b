"""Frames: round trips, resynchronisation, and the decoder fuzzed.

Whatever bytes arrive, :class:`FrameReader.feed` never raises and :func:`decode_frame`
raises nothing but :class:`ProtocolError`: a serial line delivers garbage, and the host's
reader thread must not die of it.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twinpass.core.errors import ProtocolError
from twinpass.protocol.frame import Frame, FrameReader, decode_frame, encode_frame, next_seq
from twinpass.protocol.messages import MsgType

payload_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
frames = st.builds(
    Frame,
    type=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    payload=st.dictionaries(st.text(max_size=8), payload_values, max_size=5),
    flags=st.integers(0, 255),
    epoch=st.integers(0, 255),
    version=st.integers(0, 255),
)


def same_frame(a: Frame, b: Frame) -> bool:
    # NaN payload values never compare equal: compare their encodings instead.
    return encode_frame(a) == encode_frame(b)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_random_bytes_never_raise_from_the_reader(data: bytes) -> None:
    reader = FrameReader(max_frame=1024)
    got = reader.feed(data)
    assert all(isinstance(f, Frame) for f in got)
    assert reader.pending() <= 1024 + 1024 // 254 + 2


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_decode_frame_raises_only_protocol_errors(data: bytes) -> None:
    try:
        frame = decode_frame(data, max_frame=1024)
    except ProtocolError:
        return
    assert isinstance(frame, Frame) and isinstance(frame.payload, dict)


@settings(max_examples=200, deadline=None)
@given(frames)
def test_every_frame_round_trips(frame: Frame) -> None:
    (back,) = FrameReader(max_frame=1 << 16).feed(encode_frame(frame))
    assert same_frame(back, frame)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(frames, min_size=1, max_size=5),
    st.lists(st.binary(max_size=50), min_size=6, max_size=6),
    st.data(),
)
def test_frames_survive_garbage_between_them_and_corruption_costs_only_its_frame(
    frames_: list[Frame], garbage: list[bytes], data: st.DataObject
) -> None:
    """Garbage followed by a delimiter costs nothing; a damaged frame costs itself only."""
    wire = [encode_frame(f) for f in frames_]
    bad = data.draw(st.integers(0, len(wire) - 1))
    damaged = bytearray(wire[bad])
    pos = data.draw(st.integers(0, len(damaged) - 2))
    damaged[pos] ^= data.draw(st.integers(1, 255))
    stream = b""
    for i, w in enumerate(wire):
        stream += garbage[i] + b"\x00" + (bytes(damaged) if i == bad else w)
    reader = FrameReader(max_frame=1 << 16)
    # Fed in two pieces cut anywhere: a frame split across reads is reassembled.
    cut = data.draw(st.integers(0, len(stream)))
    got = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
    expected = [f for i, f in enumerate(frames_) if i != bad]
    # The damaged frame is dropped (CRC) or split (a 0x00 created inside it): never more
    # frames than sent, and every good one arrives, in order.
    survivors = [g for g in got if any(same_frame(g, e) for e in expected)]
    assert [encode_frame(g) for g in survivors] == [encode_frame(e) for e in expected]
    assert len(got) <= len(frames_)


def test_a_long_run_without_delimiter_is_an_overflow_and_bounded() -> None:
    reader = FrameReader(max_frame=64)
    assert reader.feed(b"\x01" * 10_000) == []
    assert reader.pending() <= 64 + 2
    good = encode_frame(Frame(MsgType.PING, 1))
    assert reader.feed(b"\x00" + good) == [Frame(MsgType.PING, 1)]
    assert reader.stats.overflows == 1


def test_seq_wraps() -> None:
    assert next_seq(0xFFFF) == 0 and next_seq(0) == 1
