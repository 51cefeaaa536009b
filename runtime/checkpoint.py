"""The checkpoint file format: save and load named arrays plus metadata, atomically and verified.

A checkpoint is one file::

    MAGIC                      14 bytes  b"TWINPASS-CKPT\\x00"
    body length                 8 bytes  unsigned, little-endian
    SHA-256 of the body        32 bytes
    CRC32 of the 54 bytes above 4 bytes  unsigned, little-endian
    body                                 msgpack map (see below)

The header CRC catches a damaged length or digest (and so tells corruption apart from
truncation); the SHA-256 catches any change to the body. The framing above never changes:
a future incompatible frame gets a new MAGIC. The body is a msgpack map that always holds
``"schema"`` (int) and ``"created_by"`` (str), so that any later version's file can be
recognised as "newer" before anything else in it is interpreted. Schema 1 adds:

* ``"arrays"``: ``{name: {"dtype": "<f4", "shape": [2, 3], "data": bin}}``, data in C order,
  dtype string as ``np.dtype.str`` with little-endian byte order.
* ``"meta"``: free-form metadata, msgpack-native values only.

Writing goes to a uniquely named temporary file in the target's directory which is
fsync'ed and then renamed onto the target, so the target is always either the old or the
new complete file, even if the process is killed. A process killed mid-save can leave a
stale ``.<name>.*.tmp`` file behind; it is never mistaken for the checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from twinpass.core.errors import CheckpointError

from .atomic import atomic_write

__all__ = ["MAGIC", "SCHEMA_VERSION", "Checkpoint", "load_checkpoint", "save_checkpoint"]

SCHEMA_VERSION: int = 1
MAGIC = b"TWINPASS-CKPT\x00"

_HEAD = struct.Struct("<Q32s")  # body length, SHA-256 of body
_CRC = struct.Struct("<I")
_HEADER_SIZE = len(MAGIC) + _HEAD.size + _CRC.size

# Fixed-size plain numeric types only: their bytes mean the same on every platform
# (unlike longdouble) and they need no pickling (unlike object or structured dtypes).
_DTYPES = frozenset(
    np.dtype(t).newbyteorder("<").str
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
    )
)
_DTYPE_NAMES = ", ".join(sorted(np.dtype(s).name for s in _DTYPES))

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack can encode
# Deep enough for any real config; shallow enough to report a self-containing list or dict
# as an error instead of a RecursionError.
_MAX_DEPTH = 100


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. ``arrays`` are writeable arrays that own their memory."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]
    schema: int
    created_by: str


@functools.lru_cache(maxsize=1)
def _created_by() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"twinpass {version('twinpass')}"
    except PackageNotFoundError:
        return "twinpass unknown"


# ---------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------


def _normalise_meta(value: Any, where: str, depth: int = 0) -> Any:
    """Return ``value`` as plain msgpack-native Python values, or raise naming ``where``.

    Numpy scalars become the equivalent Python scalar (``np.float32(0.1)`` is stored as
    the float64 ``0.10000000149011612``) and tuples become lists, because that is what
    they would compare equal to anyway. Everything else that is not exactly
    dict/list/str/bytes/int/float/bool/None is refused rather than guessed at: an Enum or
    a custom class would not come back as the same type.
    """
    if depth > _MAX_DEPTH:
        raise CheckpointError(
            f"{where} is nested more than {_MAX_DEPTH} levels deep "
            "(does a list or dict contain itself?)"
        )
    if isinstance(value, np.ndarray):
        raise CheckpointError(
            f"{where} is a numpy array; pass arrays in `arrays`, not in `meta`, "
            "or convert it with .tolist()"
        )
    if isinstance(value, np.generic):
        return _normalise_meta(value.item(), where, depth + 1)
    kind = type(value)
    if value is None or kind is bool or kind is float or kind is bytes:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise CheckpointError(
                f"{where} = {value} is outside the storable integer range "
                f"[-2**63, 2**64 - 1]; store it as a str"
            )
        return value
    if kind is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as e:
            raise CheckpointError(f"{where} is a str that is not valid UTF-8 ({e.reason})") from e
        return value
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise CheckpointError(
                    f"{where} has key {key!r} of type {type(key).__name__}; "
                    "metadata keys must be str"
                )
            out[_normalise_meta(key, f"{where} key", depth + 1)] = _normalise_meta(
                item, f"{where}[{key!r}]", depth + 1
            )
        return out
    if kind is list or kind is tuple:
        return [_normalise_meta(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise CheckpointError(
        f"{where} has type {kind.__module__}.{kind.__qualname__}, which a checkpoint cannot "
        "store; use dict, list, str, bytes, int, float, bool or None (e.g. an Enum's .value)"
    )


# ---------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------


def _encode_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    if not isinstance(arrays, Mapping):
        raise CheckpointError(f"arrays must be a mapping of str to ndarray, not {type(arrays)}")
    out = {}
    for name, arr in arrays.items():
        if type(name) is not str:
            raise CheckpointError(f"array name {name!r} has type {type(name).__name__}; use str")
        if not isinstance(arr, np.ndarray):
            raise CheckpointError(
                f"arrays[{name!r}] is a {type(arr).__name__}, not a numpy.ndarray; "
                "wrap it with np.asarray"
            )
        dtype = arr.dtype.newbyteorder("<")
        if dtype.str not in _DTYPES:
            raise CheckpointError(
                f"arrays[{name!r}] has unsupported dtype {arr.dtype}; supported: {_DTYPE_NAMES}"
            )
        # A view of the little-endian C-order bytes; copies only when the input is
        # big-endian or non-contiguous, and msgpack reads the memoryview without copying.
        le = arr.astype(dtype, order="C", copy=False)
        out[name] = {
            "dtype": dtype.str,
            "shape": list(arr.shape),
            "data": memoryview(le.reshape(-1).view(np.uint8)),
        }
    return out


def _encode(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """Return (header, body) for a checkpoint; raise CheckpointError on unstorable input."""
    if not isinstance(meta, Mapping):
        raise CheckpointError(f"meta must be a mapping with str keys, not {type(meta)}")
    doc = {
        "schema": SCHEMA_VERSION,
        "created_by": _created_by(),
        "arrays": _encode_arrays(arrays),
        "meta": _normalise_meta(dict(meta), "meta"),
    }
    try:
        body = msgpack.packb(doc, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:  # pragma: no cover - validated above
        raise CheckpointError(f"cannot encode checkpoint: {e}") from e
    head = MAGIC + _HEAD.pack(len(body), hashlib.sha256(body).digest())
    return head + _CRC.pack(zlib.crc32(head)), body


def save_checkpoint(
    path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Write ``arrays`` and ``meta`` to ``path`` atomically, replacing any existing file.

    ``arrays`` maps names to ndarrays of bool, (u)int8-64 or float16/32/64 (stored
    little-endian in C order; loaded back with the little-endian dtype). ``meta`` holds
    dict (str keys) / list / tuple / str / bytes / int (-2**63 .. 2**64-1) / float / bool /
    None; numpy scalars are converted to Python scalars and tuples to lists.

    Raises CheckpointError, naming the offending array or meta key path, for unstorable
    input (before touching the disk), and for any OS error while writing; in both cases
    the previous file at ``path`` is left unchanged and no temporary file is left behind.
    """
    path = os.fspath(path)
    head, body = _encode(arrays, meta)
    try:
        atomic_write(path, (head, body))
    except OSError as e:
        raise CheckpointError(
            f"cannot write checkpoint {path!r}: {e.strerror or e}; the previous file, "
            "if any, is unchanged"
        ) from e


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: structure problem inside a body that passed its checksum."""


class _TooNew(Exception):
    """Internal: the body declares a schema newer than this version reads."""

    def __init__(self, schema: int, created_by: str) -> None:
        super().__init__(schema, created_by)
        self.schema = schema
        self.created_by = created_by


def _reject_ext(code: int, data: bytes) -> Any:
    raise _Malformed(f"unexpected msgpack extension type {code}")


def _decode_arrays(raw: Any) -> dict[str, np.ndarray]:
    if not isinstance(raw, dict):
        raise _Malformed(f"'arrays' is a {type(raw).__name__}, not a map")
    out = {}
    for name, entry in raw.items():
        where = f"arrays[{name!r}]"
        if type(name) is not str:
            raise _Malformed(f"array name {name!r} is not a str")
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data"}:
            keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            raise _Malformed(f"{where} must have exactly dtype, shape, data; found {keys}")
        dtype_str, shape, data = entry["dtype"], entry["shape"], entry["data"]
        if type(dtype_str) is not str or dtype_str not in _DTYPES:
            raise _Malformed(f"{where} has unsupported dtype {dtype_str!r}")
        if type(shape) is not list or not all(type(n) is int and n >= 0 for n in shape):
            raise _Malformed(f"{where} has invalid shape {shape!r}")
        if type(data) is not bytes:
            raise _Malformed(f"{where} data is a {type(data).__name__}, not bin")
        dtype = np.dtype(dtype_str)
        expected = math.prod(shape) * dtype.itemsize
        if len(data) != expected:
            raise _Malformed(
                f"{where} holds {len(data)} data bytes but dtype {dtype_str} "
                f"and shape {shape} need {expected}"
            )
        # frombuffer on bytes is a read-only view; the copy makes it writeable and owned.
        out[name] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    return out


def _decode_body(body: memoryview) -> Checkpoint:
    try:
        doc = msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=_reject_ext)
    except _Malformed:
        raise
    except Exception as e:  # msgpack raises a zoo of types for bad input; all mean the same
        raise _Malformed(f"body is not valid msgpack ({type(e).__name__}: {e})") from None
    if not isinstance(doc, dict):
        raise _Malformed(f"body is a {type(doc).__name__}, not a map")
    schema, created_by = doc.get("schema"), doc.get("created_by")
    if type(schema) is not int or schema < 1:
        raise _Malformed(f"missing or invalid schema {schema!r}")
    if type(created_by) is not str:
        raise _Malformed(f"missing or invalid created_by {created_by!r}")
    if schema > SCHEMA_VERSION:
        raise _TooNew(schema, created_by)
    missing = {"arrays", "meta"} - set(doc)
    if missing:
        raise _Malformed(f"missing key(s) {sorted(missing)}")
    if not isinstance(doc["meta"], dict):
        raise _Malformed(f"'meta' is a {type(doc['meta']).__name__}, not a map")
    try:
        meta = _normalise_meta(doc["meta"], "meta")
    except CheckpointError as e:
        raise _Malformed(str(e)) from None
    return Checkpoint(
        arrays=_decode_arrays(doc["arrays"]), meta=meta, schema=schema, created_by=created_by
    )


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Raises CheckpointError with a one-line message naming ``path`` if the file is missing,
    empty, not a checkpoint, truncated, corrupted, written with a newer schema, or
    malformed.
    """
    path = os.fspath(path)
    shown = repr(path)
    restore = "restore it from a backup or re-create it"
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {shown}: the file does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"{shown} is a directory, not a checkpoint file") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {shown}: {e.strerror or e}") from e

    size = len(blob)
    if size == 0:
        raise CheckpointError(f"checkpoint {shown} is empty (0 bytes); {restore}")
    if not blob.startswith(MAGIC):
        if MAGIC.startswith(blob):
            raise CheckpointError(f"checkpoint {shown} is truncated (only {size} bytes); {restore}")
        raise CheckpointError(
            f"{shown} is not a twinpass checkpoint (wrong file signature); check the path"
        )
    if size < _HEADER_SIZE:
        raise CheckpointError(
            f"checkpoint {shown} is truncated (only {size} bytes, shorter than its "
            f"{_HEADER_SIZE}-byte header); {restore}"
        )
    head = blob[: _HEADER_SIZE - _CRC.size]
    (crc,) = _CRC.unpack_from(blob, len(head))
    if zlib.crc32(head) != crc:
        raise CheckpointError(
            f"checkpoint {shown} is corrupted (header checksum mismatch); {restore}"
        )
    body_len, digest = _HEAD.unpack_from(blob, len(MAGIC))
    expected = _HEADER_SIZE + body_len
    if size < expected:
        raise CheckpointError(
            f"checkpoint {shown} is truncated ({size} of {expected} bytes present); {restore}"
        )
    if size > expected:
        raise CheckpointError(
            f"checkpoint {shown} is corrupted ({size - expected} unexpected bytes after "
            f"its end); {restore}"
        )
    body = memoryview(blob)[_HEADER_SIZE:]
    if hashlib.sha256(body).digest() != digest:
        raise CheckpointError(f"checkpoint {shown} is corrupted (SHA-256 mismatch); {restore}")

    try:
        return _decode_body(body)
    except _Malformed as e:
        # The checksum matched, so the file is as its writer made it: a foreign or buggy
        # writer, not disk damage.
        raise CheckpointError(
            f"checkpoint {shown} is malformed: {e}; it was not written by a compatible "
            "save_checkpoint, re-create it"
        ) from None
    except _TooNew as e:
        raise CheckpointError(
            f"checkpoint {shown} was written by {e.created_by} with schema {e.schema}; "
            f"this version reads up to {SCHEMA_VERSION}: upgrade twinpass"
        ) from None
