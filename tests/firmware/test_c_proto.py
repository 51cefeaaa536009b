"""The C protocol library (firmware/proto) equals the Python codec byte for byte.

The four sources and core/crc32.c are compiled once per session with the system C
compiler into a shared library, loaded with ctypes, and held against the references:
COBS against the ``cobs`` package, SHA-256 against hashlib, the msgpack writer against
``msgpack.packb(use_bin_type=True)``, the msgpack reader's map check against the payload
step of :func:`twinpass.protocol.frame.decode_frame` (a dict with str or bytes keys,
valid UTF-8, no trailing bytes), and the frame encoder and stream reader against
``encode_frame`` and :class:`FrameReader` (the frames and every drop counter). One batch of
random and mutated inputs runs through a standalone driver (tests/firmware/c_proto_shim.c)
built with AddressSanitizer and UndefinedBehaviorSanitizer.

The one documented difference: the C reader refuses nesting deeper than TP_MP_MAX_DEPTH
(8) containers, which Python accepts; the references below account for it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import random
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinpass.protocol.frame import (
    MIN_FRAME,
    Frame,
    FrameDropped,
    FrameReader,
    decode_frame,
    encode_frame,
)

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SHIM = Path(__file__).resolve().parent / "c_proto_shim.c"
SOURCES = [FIRMWARE / "proto" / f"{n}.c" for n in ("cobs", "msgpack", "sha256", "frame")]
SOURCES.append(FIRMWARE / "core" / "crc32.c")
CC = shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(
    CC is None, reason="no C compiler (cc or gcc) on PATH: the C protocol library cannot be built"
)
WARNINGS = (
    "-std=c99 -pedantic -Wall -Wextra -Werror -Wshadow -Wconversion -Wsign-conversion "
    "-Wstrict-prototypes -Wmissing-prototypes"
).split()
INCLUDES = [f"-I{FIRMWARE / 'core'}", f"-I{FIRMWARE / 'proto'}"]
SANITIZE = "-fsanitize=undefined,address -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
MAX_DEPTH = 8  # TP_MP_MAX_DEPTH
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NIL, BOOL, INT, UINT, STR, BIN, ARRAY, MAP, FLOAT, EXT = range(10)  # tp_mp_type
c_size_p = ctypes.POINTER(ctypes.c_size_t)
u8p = ctypes.POINTER(ctypes.c_uint8)


class MpObj(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("b", ctypes.c_int),
        ("i", ctypes.c_int64),
        ("u", ctypes.c_uint64),
        ("data", ctypes.c_void_p),
        ("len", ctypes.c_uint32),
    ]


class MpWriter(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("cap", ctypes.c_size_t),
        ("len", ctypes.c_size_t),
        ("overflow", ctypes.c_int),
    ]


class Sha256(ctypes.Structure):
    _fields_ = [
        ("h", ctypes.c_uint32 * 8),
        ("bits", ctypes.c_uint64),
        ("buf", ctypes.c_uint8 * 64),
        ("nbuf", ctypes.c_uint32),
    ]


class CFrame(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_uint8),
        ("type", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("epoch", ctypes.c_uint8),
        ("seq", ctypes.c_uint16),
        ("payload", ctypes.c_void_p),
        ("payload_len", ctypes.c_size_t),
    ]


STATS = ("frames", "cobs_errors", "crc_errors", "short_frames", "payload_errors", "overflows")


class Stats(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in STATS]


class Reader(ctypes.Structure):
    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("cap", ctypes.c_size_t),
        ("max_frame", ctypes.c_size_t),
        ("len", ctypes.c_size_t),
        ("overflowing", ctypes.c_int),
        ("stats", Stats),
    ]


def compile_c(out: Path, *flags: str) -> Path:
    cmd = [str(CC), *WARNINGS, *INCLUDES, *flags, *map(str, SOURCES), str(SHIM), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="session")
def lib(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    path = compile_c(
        tmp_path_factory.mktemp("c_proto") / "libtpproto.so", "-O2", "-shared", "-fPIC"
    )
    so = ctypes.CDLL(str(path))
    sz, vp, i32, u32 = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32
    w = ctypes.POINTER(MpWriter)
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "tp_cobs_encode": (sz, [vp, sz, vp, sz]),
        "tp_cobs_decode": (i32, [vp, sz, vp, sz, c_size_p]),
        "tp_sha256_init": (None, [ctypes.POINTER(Sha256)]),
        "tp_sha256_update": (None, [ctypes.POINTER(Sha256), vp, sz]),
        "tp_sha256_final": (None, [ctypes.POINTER(Sha256), vp]),
        "tp_sha256": (None, [vp, sz, vp]),
        "tp_mp_read": (i32, [vp, sz, c_size_p, ctypes.POINTER(MpObj)]),
        "tp_mp_skip": (i32, [vp, sz, c_size_p]),
        "tp_mp_check_map": (i32, [vp, sz]),
        "tp_mp_find": (i32, [vp, sz, ctypes.c_char_p, ctypes.POINTER(MpObj), c_size_p]),
        "tp_mp_writer_init": (None, [w, vp, sz]),
        "tp_mp_map": (None, [w, u32]),
        "tp_mp_array": (None, [w, u32]),
        "tp_mp_nil": (None, [w]),
        "tp_mp_bool": (None, [w, i32]),
        "tp_mp_int": (None, [w, ctypes.c_int64]),
        "tp_mp_uint": (None, [w, ctypes.c_uint64]),
        "tp_mp_str": (None, [w, ctypes.c_char_p]),
        "tp_mp_str_n": (None, [w, ctypes.c_char_p, sz]),
        "tp_mp_bin": (None, [w, vp, sz]),
        "tp_mp_bin_reserve": (vp, [w, sz]),
        "tp_mp_raw": (None, [w, vp, sz]),
        "tp_frame_reader_init": (None, [ctypes.POINTER(Reader), vp, sz, sz]),
        "tp_frame_reader_feed": (
            i32,
            [ctypes.POINTER(Reader), ctypes.POINTER(u8p), c_size_p, ctypes.POINTER(CFrame)],
        ),
        "tp_frame_encode": (sz, [ctypes.POINTER(CFrame), vp, sz, vp, sz]),
    }
    for name, (restype, argtypes) in signatures.items():
        fn = getattr(so, name)
        fn.restype, fn.argtypes = restype, argtypes
    return so


@pytest.fixture(scope="session")
def fuzz_driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("c_proto_san") / "proto_fuzz"
    try:
        return compile_c(out, "-O1", "-DTP_SHIM_MAIN", *SANITIZE.split())
    except subprocess.CalledProcessError as exc:  # e.g. a compiler without libasan/libubsan
        pytest.skip(f"the sanitizer build failed: {exc.stderr.strip()[-300:]}")


def buf(data: bytes, extra: int = 0) -> ctypes.Array:
    """A C copy of data (plus extra spare bytes)."""
    return (ctypes.c_uint8 * max(1, len(data) + extra)).from_buffer_copy(
        data + bytes(max(1, len(data) + extra) - len(data))
    )


# -- Python references ----------------------------------------------------------------------


def depth(obj: Any) -> int:
    """Containers nested in obj, obj included (an empty one counts)."""
    if isinstance(obj, dict):
        return 1 + max(map(depth, obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max(map(depth, obj), default=0)
    return 0


def py_payload(payload: bytes) -> dict | None:
    """decode_frame's verdict on a payload: the decoded map, or None for a payload drop."""
    body = bytes([1, 2, 0, 0, 3, 0]) + payload
    raw = body + struct.pack("<I", zlib.crc32(body))
    if len(raw) < MIN_FRAME:
        return None  # an empty payload: a short frame in decode_frame, and no map
    try:
        return decode_frame(cobs.encode(raw), max_frame=len(raw)).payload
    except FrameDropped as exc:
        assert exc.kind == "payload"
        return None


def expect_map_ok(payload: bytes) -> bool:
    """What tp_mp_check_map must say: Python's verdict, and the documented depth bound."""
    decoded = py_payload(payload)
    return decoded is not None and depth(decoded) <= MAX_DEPTH


class RawStr(bytes):
    """A msgpack str holding these bytes as they are (maybe not UTF-8)."""


class Ext:
    def __init__(self, code: int, data: bytes) -> None:
        self.code, self.data = code, data


class Pairs(list):
    """A msgpack map as a list of (key, value): keys may repeat or be any object."""


def str_header(n: int) -> bytes:
    if n < 32:
        return bytes([0xA0 | n])
    if n < 256:
        return bytes([0xD9, n])
    return b"\xda" + struct.pack(">H", n) if n < 65536 else b"\xdb" + struct.pack(">I", n)


def craft(obj: Any) -> bytes:
    """msgpack bytes of obj, with RawStr, Ext (any code) and Pairs, which packb cannot make."""
    packer = msgpack.Packer(use_bin_type=True)
    if isinstance(obj, RawStr):
        return str_header(len(obj)) + bytes(obj)
    if isinstance(obj, Ext):
        n, code = len(obj.data), obj.code & 0xFF
        fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}
        head = bytes([fixed[n], code]) if n in fixed else bytes([0xC7, n, code])
        return head + obj.data
    if isinstance(obj, Pairs):
        return packer.pack_map_header(len(obj)) + b"".join(craft(k) + craft(v) for k, v in obj)
    if isinstance(obj, list):
        return packer.pack_array_header(len(obj)) + b"".join(map(craft, obj))
    return packer.pack(obj)


# -- strategies -----------------------------------------------------------------------------

ints = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.sampled_from([0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1]),
    st.sampled_from([2**63, 2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**63)]),
)
timestamps = st.one_of(
    st.builds(
        Ext,
        st.just(-1),
        st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=8, max_size=8)),
    ),
    st.builds(Ext, st.just(-1), st.binary(min_size=12, max_size=12)),
    st.builds(Ext, st.just(-1), st.binary(max_size=13)),
    st.builds(
        Ext,
        st.just(-1),
        st.builds(
            lambda ns, s: struct.pack(">IQ", ns, s),
            st.integers(999_999_990, 1_000_000_010),
            st.integers(0, 2**64 - 1),
        ),
    ),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.binary(max_size=12).map(RawStr),
    st.builds(Ext, st.integers(-128, 127) | st.integers(-3, 0), st.binary(max_size=20)),
    timestamps,
)
keys = st.one_of(
    st.text(max_size=6),
    st.binary(max_size=4),
    st.sampled_from(["a", ""]),
    st.binary(max_size=4).map(RawStr),
    st.sampled_from([0, None, True, 1.5, []]),
)
objects = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(st.tuples(keys, inner), max_size=5).map(Pairs),
    ),
    max_leaves=25,
)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    """A map nested around the depth bound."""
    n = draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2))
    inner: Any = draw(st.sampled_from([{}, [], 1, Pairs()]))
    for _ in range(n - 1):
        inner = Pairs([("k", inner)]) if draw(st.booleans()) else [inner]
    return craft(Pairs([("a", inner)]))


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, len(data)))
        if op == "set" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 3))]
        else:
            del data[at:]
    return bytes(data)


maps = st.lists(st.tuples(keys, objects), max_size=6).map(Pairs).map(craft)
msgpack_bytes = st.one_of(
    objects.map(craft),
    maps,
    deep(),
    mutated(maps),
    mutated(objects.map(craft)),
    st.binary(max_size=40),
    st.builds(lambda b: b"\x81" + b, st.binary(max_size=20)),
)


# -- COBS -----------------------------------------------------------------------------------


def nonzero(n: int, seed: int) -> bytes:
    return bytes(1 + (seed + 7 * k) % 255 for k in range(n))


cobs_data = st.one_of(
    st.binary(max_size=1200),
    st.lists(
        st.tuples(st.sampled_from([0, 1, 2, 252, 253, 254, 255, 256, 508, 509]), st.booleans()),
        max_size=5,
    ).map(lambda runs: b"".join(nonzero(n, n) + (b"\x00" if z else b"") for n, z in runs)),
)


def c_cobs_encode(lib, data: bytes, cap: int) -> bytes | None:
    out = buf(b"", cap)
    n = lib.tp_cobs_encode(buf(data), len(data), out, cap)
    return None if n == 0 else bytes(out)[:n]


def c_cobs_decode(lib, enc: bytes, cap: int, in_place: bool = False) -> bytes | None:
    src = buf(enc, max(0, cap - len(enc)))
    out = src if in_place else buf(b"", cap)
    n = ctypes.c_size_t(12345)
    if lib.tp_cobs_decode(src, len(enc), out, cap, ctypes.byref(n)) != 0:
        return None
    return bytes(out)[: n.value]


@FAST
@given(data=cobs_data)
def test_cobs_encode_equals_the_cobs_package_and_round_trips(lib, data: bytes) -> None:
    expected = cobs.encode(data)
    bound = len(data) + len(data) // 254 + 1  # TP_COBS_MAX_ENCODED
    assert len(expected) <= bound
    assert c_cobs_encode(lib, data, bound) == expected
    assert c_cobs_encode(lib, data, len(expected)) == expected
    assert c_cobs_encode(lib, data, len(expected) - 1) is None  # capacity too small: 0
    assert c_cobs_decode(lib, expected, len(data)) == data
    assert c_cobs_decode(lib, expected, len(expected), in_place=True) == data
    if data:
        assert c_cobs_decode(lib, expected, len(data) - 1) is None  # capacity too small: -1


def test_cobs_edge_cases(lib) -> None:
    assert c_cobs_encode(lib, b"", 1) == b"\x01"
    assert c_cobs_encode(lib, b"", 0) is None
    assert c_cobs_decode(lib, b"", 0) == b""
    for n in (253, 254, 255):
        data = nonzero(n, 3)
        assert c_cobs_encode(lib, data, 300) == cobs.encode(data)


def cobs_reference(enc: bytes) -> bytes | None:
    try:
        return cobs.decode(enc)
    except cobs.DecodeError:
        return None


@FAST
@given(
    enc=st.one_of(
        st.binary(max_size=300),
        st.binary(min_size=1, max_size=600).map(lambda b: cobs.encode(b)[:-1]),  # truncated
        mutated(cobs_data.map(cobs.encode)),
        st.lists(st.sampled_from([b"\x01", b"\x02a", b"\x03", b"\xff", b"\x00"]), max_size=8).map(
            b"".join
        ),
    )
)
def test_cobs_decode_refuses_what_the_cobs_package_refuses(lib, enc: bytes) -> None:
    assert c_cobs_decode(lib, enc, len(enc)) == cobs_reference(enc)


# -- SHA-256 --------------------------------------------------------------------------------


def c_sha256_stream(lib, data: bytes, cuts: list[int]) -> bytes:
    ctx, out = Sha256(), buf(b"", 32)
    lib.tp_sha256_init(ctx)
    src = buf(data)
    base = ctypes.addressof(src)
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        lib.tp_sha256_update(ctx, base + prev, cut - prev)
        prev = cut
    lib.tp_sha256_final(ctx, out)
    return bytes(out)


def c_sha256(lib, data: bytes) -> bytes:
    out = buf(b"", 32)
    lib.tp_sha256(buf(data), len(data), out)
    return bytes(out)


@FAST
@given(data=st.data())
def test_sha256_streaming_equals_hashlib(lib, data) -> None:
    n = data.draw(
        st.one_of(st.sampled_from([0, 55, 56, 63, 64, 65, 119, 120, 128]), st.integers(0, 3000))
    )
    msg = data.draw(st.binary(min_size=n, max_size=n))
    cuts = data.draw(st.lists(st.integers(0, n), max_size=8))
    expected = hashlib.sha256(msg).digest()
    assert c_sha256_stream(lib, msg, cuts) == expected
    assert c_sha256(lib, msg) == expected


def test_sha256_boundary_lengths_and_a_megabyte(lib) -> None:
    rng = random.Random(5)
    for n in (0, 1, 55, 56, 57, 63, 64, 65, 127, 128, 1 << 20):
        msg = rng.randbytes(n)
        assert c_sha256(lib, msg) == hashlib.sha256(msg).digest(), n
    cuts = sorted(rng.sample(range(1 << 20), 50))
    assert c_sha256_stream(lib, msg, cuts) == hashlib.sha256(msg).digest()


# -- msgpack writer -------------------------------------------------------------------------


class CWriter:
    def __init__(self, lib, cap: int) -> None:
        self.lib, self.mem, self.w = lib, buf(b"", cap), MpWriter()
        lib.tp_mp_writer_init(self.w, self.mem, cap)
        self.flip = False

    def write(self, obj: Any) -> CWriter:
        lib, w = self.lib, self.w
        self.flip = not self.flip  # alternate between the API's two ways where there are two
        if obj is None:
            lib.tp_mp_nil(w)
        elif isinstance(obj, bool):
            lib.tp_mp_bool(w, 7 if obj and self.flip else int(obj))
        elif isinstance(obj, int):
            if obj >= 2**63 or (obj >= 0 and self.flip):
                lib.tp_mp_uint(w, obj)
            else:
                lib.tp_mp_int(w, obj)
        elif isinstance(obj, str):
            raw = obj.encode()
            if self.flip and b"\x00" not in raw:
                lib.tp_mp_str(w, raw)
            else:
                lib.tp_mp_str_n(w, raw, len(raw))
        elif isinstance(obj, bytes):
            if self.flip:
                lib.tp_mp_bin(w, buf(obj), len(obj))
            else:
                p = lib.tp_mp_bin_reserve(w, len(obj))
                if p is not None:
                    ctypes.memmove(p, obj, len(obj))
        elif isinstance(obj, dict):
            lib.tp_mp_map(w, len(obj))
            for k, v in obj.items():
                self.write(k).write(v)
        elif isinstance(obj, list):
            lib.tp_mp_array(w, len(obj))
            for v in obj:
                self.write(v)
        else:
            raise TypeError(obj)
        return self

    def bytes(self) -> bytes:
        assert not self.w.overflow
        return ctypes.string_at(self.mem, self.w.len)


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


INT_BOUNDS = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
]  # fmt: skip


def test_writer_equals_packb_at_every_boundary(lib) -> None:
    cases: list[Any] = [None, True, False, {}, [], "", b""]
    for v in INT_BOUNDS:
        cases += [v, {"v": v}]
    for n in (0, 1, 31, 32, 255, 256, 65535, 65536):
        cases += ["x" * n, "é" * (n // 2), bytes(range(256)) * (n // 256) + bytes(n % 256)]
    for n in (15, 16, 65535, 65536):
        cases += [list(range(n)), {str(k): k for k in range(n)}]
    for obj in cases:
        expected = packb(obj)
        for flip in (False, True):  # both of the writer's ways for each value
            w = CWriter(lib, len(expected))
            w.flip = flip
            assert w.write(obj).bytes() == expected, repr(obj)[:60]


@FAST
@given(
    obj=st.recursive(
        st.one_of(st.none(), st.booleans(), ints, st.text(max_size=40), st.binary(max_size=300)),
        lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=40,
    ),
    short=st.integers(1, 50),
)
def test_writer_equals_packb_and_overflows_cleanly(lib, obj, short: int) -> None:
    expected = packb(obj)
    assert CWriter(lib, len(expected)).write(obj).bytes() == expected
    cap = max(0, len(expected) - short)  # too small: the writer stops, keeps a clean prefix
    w = CWriter(lib, cap).write(obj)
    assert w.w.overflow == 1 and w.w.len <= cap
    assert ctypes.string_at(w.mem, w.w.len) == expected[: w.w.len]
    assert lib.tp_mp_bin_reserve(w.w, 0) is None  # nothing after an overflow


def test_writer_raw_and_bin_reserve(lib) -> None:
    w = CWriter(lib, 64)
    lib.tp_mp_map(w.w, 2)
    w.write("a")
    lib.tp_mp_raw(w.w, buf(packb([1, 2])), 3)
    w.write("b")
    p = lib.tp_mp_bin_reserve(w.w, 3)
    ctypes.memmove(p, b"xyz", 3)
    assert w.bytes() == packb({"a": [1, 2], "b": b"xyz"})


# -- msgpack reader -------------------------------------------------------------------------


def c_check_map(lib, data: bytes) -> bool:
    return lib.tp_mp_check_map(buf(data), len(data)) == 0


@FAST
@given(data=msgpack_bytes)
def test_check_map_accepts_exactly_what_decode_frame_accepts(lib, data: bytes) -> None:
    assert c_check_map(lib, data) == expect_map_ok(data)
    pos = ctypes.c_size_t(0)
    if lib.tp_mp_skip(buf(data), len(data), ctypes.byref(pos)) == 0:
        assert pos.value <= len(data)
    if expect_map_ok(data):
        assert pos.value == len(data)


def test_check_map_cases(lib) -> None:
    accepted = [
        packb({}),
        packb({"a": 1, b"k": [1, {"x": None}], "s": "ü€😀"}),  # bytes keys pass strict_map_key
        craft(Pairs([("a", Ext(-1, bytes(4)))])),
        craft(Pairs([("a", Ext(-1, struct.pack(">IQ", 999_999_999, 0)))])),
        craft(Pairs([("a", Ext(-1, struct.pack(">Q", (999_999_999 << 34) | 5)))])),
        craft(Pairs([("a", Ext(5, b""))])),
        craft(Pairs([("a", 1), ("a", 2)])),  # duplicates are fine: the last wins
        b"\xde\x00\x01\xd9\x01a\xcb" + bytes(8),  # non-minimal headers are still msgpack
    ]
    refused = [
        b"",
        packb([]),
        packb(1),
        packb({}) + b"\x00",  # trailing bytes
        b"\x81\xa1a",  # truncated
        b"\x81\xa1a\xc1",  # never used
        packb({1: 2}),
        craft(Pairs([("a", Pairs([(3, 4)]))])),  # non-str keys at any depth
        craft(Pairs([("a", RawStr(b"\xff"))])),
        craft(Pairs([(RawStr(b"\xc0\x80"), 1)])),  # overlong
        craft(Pairs([("a", RawStr(b"\xed\xa0\x80"))])),  # a surrogate
        craft(Pairs([("a", RawStr(b"\xf4\x90\x80\x80"))])),  # above U+10FFFF
        craft(Pairs([("a", [RawStr(b"\xe2\x82")])])),  # truncated sequence
        craft(Pairs([("a", Ext(-1, bytes(5)))])),
        craft(Pairs([("a", Ext(-2, bytes(4)))])),  # Python's ExtType wants 0..127
        craft(Pairs([("a", Ext(-1, struct.pack(">IQ", 10**9, 0)))])),
        craft(Pairs([("a", Ext(-1, struct.pack(">Q", 10**9 << 34)))])),
    ]
    for data in accepted:
        assert expect_map_ok(data) and c_check_map(lib, data), data
    for data in refused:
        assert not expect_map_ok(data) and not c_check_map(lib, data), data


def test_depth_bound_is_the_documented_difference(lib) -> None:
    ok = {"a": [[[[[[{}]]]]]]}  # 8 containers
    too_deep = {"a": [[[[[[[{}]]]]]]]}  # 9: Python accepts, C refuses
    assert depth(ok) == MAX_DEPTH and c_check_map(lib, packb(ok))
    assert py_payload(packb(too_deep)) == too_deep and not c_check_map(lib, packb(too_deep))


def read_value(lib, mem, length: int, obj: MpObj, pos: int) -> Any:
    """The Python value of a found object (arrays: read element by element from pos)."""
    if obj.type == NIL:
        return None
    if obj.type == BOOL:
        return bool(obj.b)
    if obj.type == INT:
        if obj.i >= 0:
            assert obj.u == obj.i
        return obj.i
    if obj.type == UINT:
        assert obj.u > 2**63 - 1
        return obj.u
    if obj.type in (STR, BIN):
        raw = ctypes.string_at(obj.data, obj.len) if obj.len else b""
        return raw.decode() if obj.type == STR else raw
    if obj.type == ARRAY:
        items, p = [], ctypes.c_size_t(pos)
        for _ in range(obj.len):
            e = MpObj()
            assert lib.tp_mp_read(mem, length, ctypes.byref(p), ctypes.byref(e)) == 0
            items.append(read_value(lib, mem, length, e, p.value))
        return items
    if obj.type == MAP:
        return ("map", obj.len)
    raise AssertionError(obj.type)


values = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.binary(max_size=70),
    st.text(max_size=40),
    st.lists(ints, max_size=20),
    st.dictionaries(st.text(max_size=3), ints, max_size=3),
)


@FAST
@given(
    pairs=st.lists(st.tuples(st.text(max_size=5) | st.sampled_from(["a", "b", ""]), values)),
    absent=st.lists(st.text(max_size=6)),
)
def test_find_returns_the_value_python_reads(lib, pairs, absent) -> None:
    data = craft(Pairs(pairs))  # keys may repeat: Python's dict keeps the last, so does C
    expected = msgpack.unpackb(data, raw=False, strict_map_key=True)
    assert c_check_map(lib, data)
    mem = buf(data)
    for key in [*expected, *absent]:
        if "\x00" in key:
            continue  # the C key is NUL-terminated
        obj, pos = MpObj(), ctypes.c_size_t(0)
        found = lib.tp_mp_find(mem, len(data), key.encode(), ctypes.byref(obj), ctypes.byref(pos))
        assert found == (key in expected)
        if found:
            want = expected[key]
            want = ("map", len(want)) if isinstance(want, dict) else want
            assert read_value(lib, mem, len(data), obj, pos.value) == want
            assert lib.tp_mp_find(mem, len(data), key.encode(), ctypes.byref(obj), None) == 1


def test_find_skips_bin_keys_and_reads_every_type(lib) -> None:
    data = craft(Pairs([(b"k", 1), ("k", [2, 3]), ("f", 1.5), ("e", Ext(4, b"ab"))]))
    mem, obj, pos = buf(data), MpObj(), ctypes.c_size_t(0)
    assert lib.tp_mp_find(mem, len(data), b"k", ctypes.byref(obj), ctypes.byref(pos)) == 1
    assert read_value(lib, mem, len(data), obj, pos.value) == [2, 3]
    assert lib.tp_mp_find(mem, len(data), b"f", ctypes.byref(obj), None) == 1
    assert obj.type == FLOAT
    assert lib.tp_mp_find(mem, len(data), b"e", ctypes.byref(obj), None) == 1
    assert obj.type == EXT


# -- frames ---------------------------------------------------------------------------------

headers = st.tuples(
    st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 255),
    st.integers(0, 65535),
)  # fmt: skip
payloads = st.dictionaries(
    st.text(max_size=6),
    st.one_of(st.none(), st.booleans(), ints, st.text(max_size=10), st.binary(max_size=80),
              st.lists(ints, max_size=4)),
    max_size=4,
)  # fmt: skip


def make_frame(header: tuple, payload: dict) -> Frame:
    version, type_, flags, epoch, seq = header
    return Frame(type_, seq, payload, flags, epoch, version)


def c_frame_encode(lib, header: tuple, payload: bytes, in_scratch: bool) -> bytes | None:
    version, type_, flags, epoch, seq = header
    scratch, keep = buf(b"", 10 + len(payload)), buf(payload)
    out_cap = len(payload) + 10 + (len(payload) + 10) // 254 + 2
    out = buf(b"", out_cap)
    if in_scratch:
        ctypes.memmove(ctypes.addressof(scratch) + 6, payload, len(payload))
        where = ctypes.addressof(scratch) + 6
    else:
        where = ctypes.addressof(keep)
    f = CFrame(version, type_, flags, epoch, seq, where, len(payload))
    n = lib.tp_frame_encode(f, scratch, len(scratch), out, out_cap)
    assert lib.tp_frame_encode(f, scratch, 9 + len(payload), out, out_cap) == 0
    return bytes(out)[:n] if n else None


@FAST
@given(header=headers, payload=payloads, in_scratch=st.booleans())
def test_frame_encode_equals_encode_frame(lib, header, payload, in_scratch) -> None:
    expected = encode_frame(make_frame(header, payload))
    assert c_frame_encode(lib, header, packb(payload), in_scratch) == expected
    # an output buffer one byte short is refused
    version, type_, flags, epoch, seq = header
    raw = packb(payload)
    f = CFrame(version, type_, flags, epoch, seq, ctypes.addressof(mem := buf(raw)), len(raw))
    scratch, out = buf(b"", 10 + len(raw)), buf(b"", len(expected))
    assert lib.tp_frame_encode(f, scratch, len(scratch), out, len(expected) - 1) == 0
    assert lib.tp_frame_encode(f, scratch, len(scratch), out, len(expected)) == len(expected)
    del mem


def raw_frame(header: tuple, payload: bytes) -> bytes:
    body = struct.pack("<BBBBH", *header) + payload
    return cobs.encode(body + struct.pack("<I", zlib.crc32(body))) + b"\x00"


@st.composite
def segment(draw: st.DrawFn, max_frame: int) -> bytes:
    max_encoded = max_frame + max_frame // 254 + 2
    kind = draw(st.sampled_from(["valid", "valid", "flip", "garbage", "payload", "short",
                                 "big", "run", "zeros", "deep"]))  # fmt: skip
    if kind == "valid":
        return encode_frame(make_frame(draw(headers), draw(payloads)))
    if kind == "flip":
        frame = bytearray(encode_frame(make_frame(draw(headers), draw(payloads))))
        bit = draw(st.integers(0, 8 * (len(frame) - 1) - 1))
        frame[bit // 8] ^= 1 << (bit % 8)
        return bytes(frame)
    if kind == "garbage":
        return draw(st.binary(max_size=60))
    if kind == "payload":  # a good CRC over any payload: payload (or short) drops, or a frame
        return raw_frame(draw(headers), draw(msgpack_bytes))
    if kind == "short":
        return cobs.encode(draw(st.binary(max_size=MIN_FRAME - 1))) + b"\x00"
    if kind == "big":  # decoded size around max_frame; the longer ones overflow as they come
        n = draw(st.integers(max_frame - 20, max_frame + 300))
        return raw_frame(draw(headers), packb({"b": draw(st.sampled_from([b"\x00", b"\x01"])) * n}))
    if kind == "run":
        run = b"\x05" * draw(st.integers(max_encoded - 2, max_encoded + 2))
        return run + draw(st.sampled_from([b"", b"\x00"]))
    if kind == "zeros":
        return b"\x00" * draw(st.integers(1, 3))
    return raw_frame(draw(headers), draw(deep()))


def c_read_stream(lib, chunks: list[bytes], max_frame: int) -> tuple[list, Reader]:
    r, f = Reader(), CFrame()
    cap = max_frame + max_frame // 254 + 2  # TP_COBS_MAX_ENCODED(max_frame) + 1
    mem = buf(b"", cap)
    lib.tp_frame_reader_init(r, mem, cap, max_frame)
    frames = []
    for chunk in chunks:
        src = buf(chunk)
        data, n = ctypes.cast(src, u8p), ctypes.c_size_t(len(chunk))
        while lib.tp_frame_reader_feed(r, ctypes.byref(data), ctypes.byref(n), f):
            head = (f.version, f.type, f.flags, f.epoch, f.seq)
            frames.append((head, ctypes.string_at(f.payload, f.payload_len)))
        assert n.value == 0
        assert ctypes.cast(data, ctypes.c_void_p).value == ctypes.addressof(src) + len(chunk)
    return frames, r


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), max_frame=st.sampled_from([64, 300, 600]))
def test_frame_reader_equals_python_frame_reader(lib, data, max_frame: int) -> None:
    stream = b"".join(data.draw(st.lists(segment(max_frame), max_size=12)))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    py = FrameReader(max_frame)
    py_frames = [frame for chunk in chunks for frame in py.feed(chunk)]
    # the documented difference: nesting beyond TP_MP_MAX_DEPTH is a payload drop in C
    too_deep = sum(depth(frame.payload) > MAX_DEPTH for frame in py_frames)
    py_frames = [frame for frame in py_frames if depth(frame.payload) <= MAX_DEPTH]
    c_frames, r = c_read_stream(lib, chunks, max_frame)
    assert len(c_frames) == len(py_frames)
    for (head, payload), frame in zip(c_frames, py_frames, strict=True):
        assert head == (frame.version, frame.type, frame.flags, frame.epoch, frame.seq)
        decoded = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        assert packb(decoded) == packb(frame.payload)  # packb: NaN equals itself
    s = py.stats
    expected = (s.frames - too_deep, s.cobs_errors, s.crc_errors, s.short,
                s.payload_errors + too_deep, s.overflows)  # fmt: skip
    assert tuple(getattr(r.stats, name) for name in STATS) == expected
    assert r.len == py.pending()


def test_frame_reader_counts_each_drop_kind(lib) -> None:
    """One of each kind of drop, in a known order."""
    max_frame = 64
    good = encode_frame(Frame(0x08, 7, {"t": 1}))
    body = struct.pack("<BBBBH", 1, 8, 0, 0, 0) + packb({"t": 1})
    bad_crc = body + struct.pack("<I", zlib.crc32(body) ^ 1)
    stream = (
        good
        + b"\x00\x00"  # not frames
        + b"\x02\x05\x00"  # COBS decodes to 1 byte: short
        + b"\x05\x01\x00"  # bad COBS
        + cobs.encode(bad_crc) + b"\x00"
        + raw_frame((1, 8, 0, 0, 0), packb([1]))  # payload
        # decoded 65 > 64 but encoded 66, within max_encoded: an overflow found by decoding
        + raw_frame((1, 8, 0, 0, 0), packb({"b": b"\x01" * 50}))
        + b"\x07" * 200 + b"\x00"  # a run longer than any frame: overflow
        + good
    )  # fmt: skip
    frames, r = c_read_stream(lib, [stream], max_frame)
    assert [p for _, p in frames] == [packb({"t": 1})] * 2
    assert tuple(getattr(r.stats, name) for name in STATS) == (2, 1, 1, 1, 1, 2)
    py = FrameReader(max_frame)
    py.feed(stream)
    assert (py.stats.frames, py.stats.overflows, py.stats.short) == (2, 2, 1)


@pytest.mark.parametrize("max_frame", [11, 64, 253, 254, 508, 4096])
def test_frame_reader_overflow_boundary(lib, max_frame: int) -> None:
    """A run of exactly max_encoded bytes is decoded; one byte more is an overflow."""
    max_encoded = max_frame + max_frame // 254 + 2
    for n in (max_encoded - 1, max_encoded, max_encoded + 1):
        for byte in (b"\x01", b"\xff"):
            stream = byte * n + b"\x00" + encode_frame(Frame(1, 2, {}))
            frames, r = c_read_stream(lib, [stream[:n], stream[n:]], max_frame)
            py = FrameReader(max_frame)
            py_frames = py.feed(stream[:n]) + py.feed(stream[n:])
            assert len(frames) == len(py_frames) == 1
            s = py.stats
            expected = (s.frames, s.cobs_errors, s.crc_errors, s.short, s.payload_errors,
                        s.overflows)  # fmt: skip
            assert tuple(getattr(r.stats, name) for name in STATS) == expected, (n, byte)
            if cobs_reference(byte * n) is None:  # held, it is bad COBS: not an overflow
                assert (s.overflows, s.cobs_errors) == (n > max_encoded, n <= max_encoded)


# -- sanitizers -----------------------------------------------------------------------------


def random_obj(rng: random.Random, level: int = 0) -> Any:
    pick = rng.randrange(12 if level < 10 else 8)
    if pick == 0:
        return rng.choice([None, True, False, 1.5])
    if pick in (1, 2):
        return rng.choice(INT_BOUNDS)
    if pick == 3:
        return rng.randbytes(rng.choice([0, 1, 31, 32, 300]))
    if pick == 4:
        return "".join(rng.choice("aé€😀\x00") for _ in range(rng.choice([0, 1, 31, 40])))
    if pick == 5:
        return RawStr(rng.randbytes(rng.randrange(6)))
    if pick == 6:
        return Ext(rng.choice([-1, -1, 3]), rng.randbytes(rng.choice([1, 4, 8, 12, 13])))
    if pick == 7:
        return rng.getrandbits(64)
    if pick in (8, 9):
        return [random_obj(rng, level + 1) for _ in range(rng.randrange(4))]
    keys = ["a", "", b"a", "k", 1]
    return Pairs((rng.choice(keys), random_obj(rng, level + 1)) for _ in range(rng.randrange(1, 5)))


def random_msgpack(rng: random.Random) -> bytes:
    data = bytearray(
        craft(Pairs([("a", random_obj(rng))]) if rng.random() < 0.7 else random_obj(rng))
    )
    for _ in range(rng.choice([0, 0, 1, 2, 4])):
        at = rng.randrange(len(data) + 1)
        op = rng.randrange(3)
        if op == 0 and at < len(data):
            data[at] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.randbytes(rng.randrange(1, 3))
        else:
            del data[at:]
    return bytes(data)


def record(kind: str, payload: bytes) -> bytes:
    return kind.encode() + struct.pack("<I", len(payload)) + payload


def test_sanitizer_build_survives_random_and_mutated_bytes(fuzz_driver) -> None:
    """ASan + UBSan (fatal): the reader never reads outside its buffer; results still agree."""
    rng = random.Random(20261127)
    records, expected = [], []
    for _ in range(3000):
        data = random_msgpack(rng) if rng.random() < 0.9 else rng.randbytes(rng.randrange(30))
        records.append(record("m", data))
        expected.append(("m", expect_map_ok(data)))
    for _ in range(1000):
        enc = cobs.encode(rng.randbytes(rng.randrange(600)))
        enc = bytearray(enc[: rng.randrange(len(enc) + 1)] if rng.random() < 0.3 else enc)
        if enc and rng.random() < 0.5:
            enc[rng.randrange(len(enc))] = rng.choice([0, 1, 2, 255, rng.randrange(256)])
        records.append(record("c", bytes(enc)))
        ref = cobs_reference(bytes(enc))
        expected.append(("c", "c -1" if ref is None else f"c 0 {ref.hex()}"))
    for _ in range(40):
        max_frame = rng.choice([64, 300])
        parts = []
        for _ in range(rng.randrange(1, 15)):
            kind = rng.randrange(5)
            if kind == 0:
                payload = {"a": rng.randbytes(rng.randrange(100)), "t": rng.getrandbits(40)}
                parts.append(encode_frame(Frame(8, rng.getrandbits(16), payload)))
            elif kind == 1:
                parts.append(raw_frame((1, 2, 3, 4, 5), random_msgpack(rng)))
            elif kind == 2:
                parts.append(rng.randbytes(rng.randrange(80)))
            elif kind == 3:
                frame = bytearray(encode_frame(Frame(8, 1, {"x": [1, 2, 3]})))
                frame[rng.randrange(len(frame) - 1)] ^= 1 << rng.randrange(8)
                parts.append(bytes(frame))
            else:
                edge = max_frame + max_frame // 254 + 2  # the longest run held
                parts.append(b"\x09" * rng.randrange(edge - 2, edge + 3) + b"\x00")
        stream = b"".join(parts)
        records.append(record("f", struct.pack("<II", max_frame, rng.getrandbits(32)) + stream))
        py = FrameReader(max_frame)
        frames = py.feed(stream)
        too_deep = sum(depth(f.payload) > MAX_DEPTH for f in frames)
        expected.append(
            ("f", [f for f in frames if depth(f.payload) <= MAX_DEPTH], py.stats, too_deep)
        )
    env = {**os.environ, "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    proc = subprocess.run(
        [str(fuzz_driver)], input=b"".join(records), capture_output=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        if want[0] == "m":
            check = int(line.split()[1])
            assert (check == 0) == want[1], line
        elif want[0] == "c":
            assert line == want[1]
        else:
            _, frames, s, too_deep = want
            hexed, *counts = line.split()[1:] if len(line.split()) == 8 else ["", *line.split()[1:]]
            assert [int(c) for c in counts] == [
                s.frames - too_deep, s.cobs_errors, s.crc_errors, s.short,
                s.payload_errors + too_deep, s.overflows,
            ]  # fmt: skip
            got, blob = [], bytes.fromhex(hexed)
            while blob:
                n = struct.unpack_from("<I", blob, 6)[0]
                got.append((tuple(blob[:4]) + struct.unpack_from("<H", blob, 4), blob[10 : 10 + n]))
                blob = blob[10 + n :]
            assert [(h[4], packb(msgpack.unpackb(p, raw=False))) for h, p in got] == [
                (f.seq, packb(f.payload)) for f in frames
            ]


# -- sources --------------------------------------------------------------------------------


def test_proto_sources_use_no_heap_io_or_floating_point() -> None:
    """Firmware code: no allocation, no stdio, no float; only stddef, stdint and string."""
    banned = re.compile(r"\b(malloc|calloc|realloc|free|printf|FILE|float|double)\b")
    sources = sorted((FIRMWARE / "proto").glob("*.[ch]"))
    assert len(sources) >= 8
    for path in sources:
        code = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
        hits = sorted({m.group(0) for m in banned.finditer(code)})
        assert not hits, f"{path.name} uses {hits}"
        system = set(re.findall(r"#include\s*<([^>]+)>", code))
        assert system <= {"stddef.h", "stdint.h", "string.h"}, (path.name, system)
