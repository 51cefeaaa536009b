"""Message payloads: msgpack maps and packed arrays, refused with ProtocolError when bad."""

from __future__ import annotations

import numpy as np
import pytest

from twinpass.core.errors import ProtocolError
from twinpass.protocol.messages import decode_payload, encode_payload, pack_array, unpack_array


def test_packed_arrays_round_trip_and_refuse_wrong_sizes() -> None:
    x = np.arange(-5, 5, dtype=np.int64) * 70_000
    assert np.array_equal(unpack_array(pack_array(x, "int32"), "int32", 10), x)
    with pytest.raises(ProtocolError, match=r"needs 40 bytes"):
        unpack_array(pack_array(x, "int32")[:-1], "int32", 10)
    with pytest.raises(ProtocolError, match=r"unknown wire dtype"):
        pack_array(x, "q16")


def test_a_payload_is_one_msgpack_map() -> None:
    data = encode_payload({"x": b"\x00\x01", "n": 3})
    assert decode_payload(data) == {"x": b"\x00\x01", "n": 3}
    with pytest.raises(ProtocolError, match="not a map"):
        decode_payload(b"\x93\x01\x02\x03")  # a msgpack array
    with pytest.raises(ProtocolError, match="not msgpack"):
        decode_payload(b"\xc1")  # never used by msgpack
