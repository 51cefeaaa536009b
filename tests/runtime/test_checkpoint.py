"""Tests for the checkpoint file format: round trips, damage detection, atomic writes."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from collections import OrderedDict
from enum import Enum
from pathlib import Path

import hypothesis.extra.numpy as hnp
import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinpass.core.errors import CheckpointError
from twinpass.runtime import checkpoint as ck
from twinpass.runtime.checkpoint import (
    MAGIC,
    SCHEMA_VERSION,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def _frame(body: bytes) -> bytes:
    """Frame ``body`` exactly as the module docstring documents, independently of the code.

    Crafting files this way pins the on-disk layout: if the writer drifted from the
    documented format, the crafted files would stop loading.
    """
    head = MAGIC + struct.pack("<Q", len(body)) + hashlib.sha256(body).digest()
    return head + struct.pack("<I", zlib.crc32(head)) + body


_DROP = object()  # marks a key _doc should leave out


def _doc(**overrides: object) -> dict:
    doc: dict = {
        "schema": SCHEMA_VERSION,
        "created_by": "twinpass 0.1.0",
        "arrays": {"w": {"dtype": "<f4", "shape": [2], "data": b"\x00" * 8}},
        "meta": {"step": 3},
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not _DROP}


def _write_doc(path: Path, doc: object) -> None:
    path.write_bytes(_frame(msgpack.packb(doc, use_bin_type=True)))


def _small_file(tmp_path: Path) -> bytes:
    path = tmp_path / "small.ckpt"
    save_checkpoint(
        path,
        {"w": np.array([1.5, -2.0], dtype=np.float32), "n": np.array(7, dtype=np.int64)},
        {"step": 3, "name": "x"},
    )
    return path.read_bytes()


def _le(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<")))


def _assert_same_arrays(loaded: dict[str, np.ndarray], saved: dict[str, np.ndarray]) -> None:
    assert list(loaded) == list(saved)
    for name, a in saved.items():
        b = loaded[name]
        want = _le(a)
        assert b.dtype == want.dtype and b.dtype.str == want.dtype.str
        assert b.shape == a.shape
        assert b.tobytes() == want.tobytes()  # bit for bit, NaN payloads and -0.0 included
        assert b.flags.writeable and b.flags.owndata and b.flags.c_contiguous


def _load_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


# ---------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------

_DTYPES = ["<f4", ">f4", "<f8", ">f8", "<i4", ">i4", "<i8", ">i8", "<u8", ">u8", "|b1"]


@st.composite
def _arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    a = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["as-is", "transposed", "strided"]))
    if layout == "transposed":
        a = a.T
    elif layout == "strided" and a.ndim:
        a = a[::2]
    return a


_meta_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()  # NaN, inf and -0.0 included; compared by repr below
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_meta = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        _meta_leaves,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids),
        max_leaves=10,
    ),
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(arrays=st.dictionaries(st.text(max_size=5), _arrays(), max_size=4), meta=_meta)
def test_round_trip(tmp_path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    path = tmp_path / "rt.ckpt"
    save_checkpoint(path, arrays, meta)
    got = load_checkpoint(path)
    assert isinstance(got, Checkpoint)
    _assert_same_arrays(got.arrays, arrays)
    # repr tells True from 1, -0.0 from 0.0, and checks key order; == alone would not.
    assert repr(got.meta) == repr(meta)
    assert got.schema == SCHEMA_VERSION
    assert got.created_by.startswith("twinpass ")


def test_round_trip_edge_arrays(tmp_path: Path) -> None:
    big = np.array([2**64 - 1, 2**64 - 2, 2**63, 0], dtype=np.uint64)
    arrays = {
        "u64": big,
        "u64_be": big.astype(">u8"),
        "scalar": np.array(-3.25),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "bool": np.array([[True, False], [False, True]]),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        "snan": np.array([0x7FA00001], dtype="<u4").view("<f4"),
        "": np.arange(3, dtype=np.int64),
    }
    save_checkpoint(tmp_path / "e.ckpt", arrays, {})
    got = load_checkpoint(tmp_path / "e.ckpt")
    _assert_same_arrays(got.arrays, arrays)
    assert int(got.arrays["u64"][0]) == 2**64 - 1
    assert got.arrays["scalar"].shape == ()
    # Owned copies: writing to one array touches nothing else.
    got.arrays["u64"][:] = 0
    assert int(got.arrays["u64_be"][0]) == 2**64 - 1


def test_meta_conversions_and_types(tmp_path: Path) -> None:
    meta = {
        "big": 2**64 - 1,
        "neg": -(2**63),
        "np_f32": np.float32(0.1),
        "np_i64": np.int64(-5),
        "np_u64": np.uint64(2**64 - 1),
        "np_bool": np.bool_(True),
        "tuple": (1, (2, "a")),
        "ordered": OrderedDict(b=1, a=2),
    }
    save_checkpoint(tmp_path / "m.ckpt", {}, meta)
    got = load_checkpoint(tmp_path / "m.ckpt").meta
    assert got["big"] == 2**64 - 1 and got["neg"] == -(2**63)
    assert type(got["np_f32"]) is float and got["np_f32"] == float(np.float32(0.1))
    assert type(got["np_i64"]) is int and got["np_i64"] == -5
    assert type(got["np_u64"]) is int and got["np_u64"] == 2**64 - 1
    assert got["np_bool"] is True
    assert got["tuple"] == [1, [2, "a"]]
    assert type(got["ordered"]) is dict and list(got["ordered"]) == ["b", "a"]


class _Colour(Enum):
    RED = 1


_cyclic: list = []
_cyclic.append(_cyclic)


@pytest.mark.parametrize(
    ("meta", "where"),
    [
        ({"cfg": {"x": [1, object()]}}, "meta['cfg']['x'][1]"),
        ({"w": np.zeros(2)}, "meta['w']"),
        ({"c": _Colour.RED}, "meta['c']"),
        ({"c": 1 + 2j}, "meta['c']"),
        ({"n": 2**64}, "meta['n']"),
        ({"n": -(2**63) - 1}, "meta['n']"),
        ({"d": {1: "x"}}, "meta['d']"),
        ({"s": "\ud800"}, "meta['s']"),
        ({"loop": _cyclic}, "meta['loop']"),
        ({"s": {1, 2}}, "meta['s']"),
    ],
)
def test_unstorable_meta_rejected_and_old_file_kept(tmp_path: Path, meta: dict, where: str) -> None:
    path = tmp_path / "c.ckpt"
    save_checkpoint(path, {"a": np.ones(2)}, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"a": np.zeros(2)}, meta)
    assert where in str(info.value)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.ckpt"]


@pytest.mark.parametrize(
    ("arrays", "fragment"),
    [
        ({"a": [1, 2]}, "arrays['a']"),
        ({"a": np.zeros(2, dtype=np.complex128)}, "arrays['a'] has unsupported dtype complex128"),
        ({"a": np.array(["x"], dtype=object)}, "arrays['a'] has unsupported dtype object"),
        pytest.param(
            {"a": np.zeros(1, dtype=np.longdouble)},
            "arrays['a'] has unsupported dtype",
            marks=pytest.mark.skipif(
                np.dtype(np.longdouble).itemsize == 8, reason="longdouble is float64 here"
            ),
        ),
        ({3: np.zeros(1)}, "array name 3"),
    ],
)
def test_unstorable_arrays_rejected(tmp_path: Path, arrays: dict, fragment: str) -> None:
    with pytest.raises(CheckpointError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        save_checkpoint(tmp_path / "a.ckpt", arrays, {})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------
# Damaged and foreign files
# ---------------------------------------------------------------------------------------


def test_every_truncation_detected(tmp_path: Path) -> None:
    blob = _small_file(tmp_path)
    path = tmp_path / "cut.ckpt"
    for n in range(len(blob)):
        path.write_bytes(blob[:n])
        msg = _load_error(path)
        assert ("empty" if n == 0 else "truncated") in msg, (n, msg)


def test_every_bit_flip_detected(tmp_path: Path) -> None:
    blob = bytearray(_small_file(tmp_path))
    path = tmp_path / "flip.ckpt"
    # Each region has its own guard: the signature, the header CRC32 (any single-bit
    # error in length or digest), and the SHA-256 over the body.
    for i in range(len(blob)):
        for bit in range(8):
            blob[i] ^= 1 << bit
            path.write_bytes(blob)
            msg = _load_error(path)
            blob[i] ^= 1 << bit
            expected = "not a twinpass checkpoint" if i < len(MAGIC) else "corrupted"
            assert expected in msg, (i, bit, msg)


def test_trailing_bytes_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.ckpt"
    path.write_bytes(_small_file(tmp_path) + b"\x00")
    assert "1 unexpected bytes" in _load_error(path)


def test_missing_empty_directory_and_foreign(tmp_path: Path) -> None:
    assert "does not exist" in _load_error(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    assert "empty" in _load_error(tmp_path / "empty.ckpt")
    (tmp_path / "model.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    assert "not a twinpass checkpoint" in _load_error(tmp_path / "model.npz")
    (tmp_path / "d").mkdir()
    assert "directory" in _load_error(tmp_path / "d")


def test_crafted_file_matches_documented_layout(tmp_path: Path) -> None:
    path = tmp_path / "ok.ckpt"
    _write_doc(path, _doc())
    got = load_checkpoint(path)
    assert got.meta == {"step": 3} and got.arrays["w"].tolist() == [0.0, 0.0]
    assert got.created_by == "twinpass 0.1.0"


def test_newer_schema_asks_for_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "new.ckpt"
    # A future body may look nothing like schema 1 beyond the two frozen keys.
    _write_doc(path, {"schema": 2, "created_by": "twinpass 9.3.0", "tensors": [1, 2]})
    msg = _load_error(path)
    assert msg.endswith(
        "was written by twinpass 9.3.0 with schema 2; "
        f"this version reads up to {SCHEMA_VERSION}: upgrade twinpass"
    )


_entry = {"dtype": "<f4", "shape": [2], "data": b"\x00" * 8}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"\xc1", "not valid msgpack"),
        (msgpack.packb(_doc()) + b"\x00", "not valid msgpack"),
        (msgpack.packb([1, 2]), "not a map"),
        (msgpack.packb(_doc(schema=_DROP)), "schema"),
        (msgpack.packb(_doc(schema="1")), "schema"),
        (msgpack.packb(_doc(schema=0)), "schema"),
        (msgpack.packb(_doc(created_by=_DROP)), "created_by"),
        (msgpack.packb(_doc(arrays=_DROP)), "missing key(s) ['arrays']"),
        (msgpack.packb(_doc(meta=_DROP)), "missing key(s) ['meta']"),
        (msgpack.packb(_doc(meta=[1])), "'meta' is a list"),
        (msgpack.packb(_doc(meta={"t": msgpack.ExtType(5, b"")})), "extension type 5"),
        (msgpack.packb(_doc(meta={b"k": 1}), use_bin_type=True), "meta has key b'k'"),
        (msgpack.packb(_doc(arrays=[])), "'arrays' is a list"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "data": b"\x00" * 7}})), "need 8"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "shape": [3]}})), "need 12"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "shape": [-2]}})), "invalid shape"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "shape": 2}})), "invalid shape"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "dtype": ">f4"}})), "dtype '>f4'"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "dtype": "|O"}})), "dtype '|O'"),
        (msgpack.packb(_doc(arrays={"w": {"dtype": "<f4", "shape": [2]}})), "exactly"),
        (msgpack.packb(_doc(arrays={"w": 5})), "exactly"),
        (msgpack.packb(_doc(arrays={"w": {**_entry, "data": "text"}}), use_bin_type=True), "bin"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_body(tmp_path: Path, body: bytes, fragment: str) -> None:
    path = tmp_path / "bad.ckpt"
    path.write_bytes(_frame(body))
    msg = _load_error(path)
    assert "malformed" in msg and fragment in msg, msg


# ---------------------------------------------------------------------------------------
# Atomic writing
# ---------------------------------------------------------------------------------------


def _existing(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "model.ckpt"
    save_checkpoint(path, {"w": np.arange(4.0)}, {"step": 1})
    return path, path.read_bytes()


def _fail(*args: object, **kwargs: object) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("target", ["replace", "fsync", "write", "open"])
def test_failed_write_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    path, before = _existing(tmp_path)
    if target == "write":
        real_write = os.write

        def half_then_fail(fd: int, data: bytes) -> int:  # disk fills up mid-file
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", half_then_fail)
    else:
        monkeypatch.setattr(os, target, _fail)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(path, {"w": np.zeros(1000)}, {"step": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.ckpt"]
    assert load_checkpoint(path).meta == {"step": 1}


def test_interrupt_during_write_propagates_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, before = _existing(tmp_path)

    def interrupt(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.zeros(3)}, {})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_new_file_and_directory_are_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.name != "posix":
        pytest.skip("directory fsync is POSIX-only")
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        st_mode = os.fstat(fd).st_mode
        synced.append(("dir" if stat.S_ISDIR(st_mode) else "file", path.exists()))
        real_fsync(fd)

    path = tmp_path / "f.ckpt"
    monkeypatch.setattr(os, "fsync", record)
    save_checkpoint(path, {}, {})
    # The file is synced before it appears under its name, the directory after.
    assert synced == [("file", False), ("dir", True)]


def test_overwrite_and_permissions(tmp_path: Path) -> None:
    path, _ = _existing(tmp_path)
    save_checkpoint(str(path), {"v": np.array([9], dtype=np.int32)}, {"step": 2})
    got = load_checkpoint(str(path))
    assert got.meta == {"step": 2} and list(got.arrays) == ["v"]
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_unwritable_target_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "missing-dir" / "x.ckpt", {}, {})
    (tmp_path / "isdir").mkdir()
    with pytest.raises(CheckpointError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "isdir", {}, {})
    assert sorted(os.listdir(tmp_path)) == ["isdir"]


def test_concurrent_savers_never_clash(tmp_path: Path) -> None:
    path = tmp_path / "shared.ckpt"
    errors: list[BaseException] = []

    def saver(k: int) -> None:
        try:
            for i in range(15):
                save_checkpoint(path, {"w": np.full(2000, k * 100 + i)}, {"v": k * 100 + i})
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=saver, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = load_checkpoint(path)
    assert (got.arrays["w"] == got.meta["v"]).all()
    assert os.listdir(tmp_path) == ["shared.ckpt"]


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from twinpass.runtime.checkpoint import save_checkpoint

    path = sys.argv[1]
    i = 0
    while True:
        # Large enough that a kill often lands while bytes are being written.
        save_checkpoint(path, {"w": np.full(300_000, i, dtype=np.float64)}, {"i": i})
        if i == 0:
            print("ready", flush=True)
        i += 1
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_save_loop_leaves_loadable_file(tmp_path: Path) -> None:
    path = tmp_path / "killed.ckpt"
    rng = random.Random(1234)
    deadline = time.monotonic() + 2.0
    kills = 0
    while kills < 3 or (kills < 8 and time.monotonic() < deadline):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 0.08))
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        kills += 1
        got = load_checkpoint(path)
        assert (got.arrays["w"] == got.meta["i"]).all()
    # A kill between creating and renaming the temp file may leave it behind; it must
    # never be the checkpoint itself.
    assert all(n == path.name or n.endswith(".tmp") for n in os.listdir(tmp_path))


def test_created_by_falls_back_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    def not_found(name: str) -> str:
        raise md.PackageNotFoundError(name)

    ck._created_by.cache_clear()
    monkeypatch.setattr(md, "version", not_found)
    try:
        assert ck._created_by() == "twinpass unknown"
    finally:
        ck._created_by.cache_clear()
