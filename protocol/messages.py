"""The messages inside a frame: types, error codes, msgpack payloads, packed arrays.

docs/protocol.md §3-§4. A payload is one msgpack map with string keys (a receiver ignores
keys it does not know); bulk numbers travel as msgpack ``bin`` of packed little-endian
values (:func:`pack_array`), never as arrays of numbers. The C firmware's
``firmware/proto/msgpack.c`` reads and writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any

import msgpack
import numpy as np

from twinpass.core.errors import ProtocolError


class MsgType(IntEnum):
    """Request types; a reply carries ``type | REPLY``."""

    HELLO = 0x01
    PING = 0x02
    DEPLOY_BEGIN = 0x03
    DEPLOY_CHUNK = 0x04
    DEPLOY_COMMIT = 0x05
    DEPLOY_CONFIRM = 0x06
    DEPLOY_ABORT = 0x07
    STEP = 0x08
    REWARD = 0x09
    SET_MODE = 0x0A
    GET_MODEL = 0x0B
    SAVE_MODEL = 0x0C
    RESET = 0x0D
    STATS = 0x0E
    # New in 1.0 (docs/protocol.md §3): the host's Device contract needs the replicas'
    # state exported and restored bit-identically, and predictions on an evaluation state.
    STATE_GET = 0x0F
    STATE_SET = 0x10
    PREDICT = 0x11
    ERROR = 0x7F  # only ever sent as a reply (with Flags.ERR) or unsolicited


class ErrorCode(IntEnum):
    BAD_FRAME = 1
    BAD_VERSION = 2
    UNKNOWN_TYPE = 3
    BAD_ARGS = 4
    TOO_LARGE = 5
    BUSY = 6
    NO_MODEL = 7
    BAD_STATE = 8
    HASH_MISMATCH = 9
    FLASH_FAIL = 10
    NAN = 11


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """A payload's msgpack bytes (bytes as ``bin``, strings as ``str``)."""
    return msgpack.packb(dict(payload), use_bin_type=True)


def decode_payload(data: bytes) -> dict[str, Any]:
    """The map a payload's bytes hold; ProtocolError if they are not one msgpack map."""
    try:
        payload = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise ProtocolError(f"payload is not msgpack ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise ProtocolError(f"payload is a {type(payload).__name__}, not a map")
    return payload


# -- bulk numbers -------------------------------------------------------------------------

# int64 carries the device's Q32 losses (docs/protocol.md §3).
WIRE_DTYPES = {
    "float32": "<f4",
    "float64": "<f8",
    "int16": "<i2",
    "int32": "<i4",
    "int8": "<i1",
    "int64": "<i8",
}


def pack_array(values: np.ndarray, dtype: str) -> bytes:
    """Little-endian packed bytes of ``values`` in a wire dtype (``float32``, ``int16``...)."""
    if dtype not in WIRE_DTYPES:
        raise ProtocolError(f"unknown wire dtype {dtype!r}: one of {', '.join(WIRE_DTYPES)}")
    return np.ascontiguousarray(values, dtype=WIRE_DTYPES[dtype]).tobytes()


def unpack_array(data: Any, dtype: str, shape: tuple[int, ...] | int) -> np.ndarray:
    """The array packed by :func:`pack_array`; a wrong type or size is a ProtocolError."""
    if dtype not in WIRE_DTYPES:
        raise ProtocolError(f"unknown wire dtype {dtype!r}: one of {', '.join(WIRE_DTYPES)}")
    if not isinstance(data, bytes | bytearray):
        raise ProtocolError(f"packed array must be bytes, got {type(data).__name__}")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    wire = np.dtype(WIRE_DTYPES[dtype])
    expected = int(np.prod(shape, dtype=np.int64)) * wire.itemsize
    if len(data) != expected:
        raise ProtocolError(
            f"packed {dtype} array of shape {shape} needs {expected} bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype=wire).astype(wire.newbyteorder("="), copy=True).reshape(shape)


def error_payload(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"code": code.name, "msg": message}
