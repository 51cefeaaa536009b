"""tanh by table (docs/protocol.md §6.2): the 1025 Q16 values both step implementations read.

A module of its own, as ``firmware/core/tanh_table.c`` is in the C firmware, so that the
NumPy expressions (:mod:`.fixed_point`) and the compiled loops (:mod:`.fast`) share it
without importing each other.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from twinpass.protocol.qformat import ONE_A

TANH_SHIFT = 9  # table step 2**-7 in Q16: index = |a| >> 9
TANH_SIZE = 1025  # tanh(k / 128) for k = 0..1024, i.e. |a| in [0, 8]
TANH_MASK = (1 << TANH_SHIFT) - 1


def _make_tanh_table() -> np.ndarray:
    # Generated once with the platform's libm and rounded to Q16; the values are part of
    # the specification (a C port ships this table, and tests pin its CRC32).
    return np.array(
        [math.floor(math.tanh(k / 128.0) * ONE_A + 0.5) for k in range(TANH_SIZE)],
        dtype=np.int64,
    )


TANH_TABLE = _make_tanh_table()
# CRC32 of the table as little-endian int32: pinned by the tests and docs/protocol.md.
TANH_TABLE_CRC32 = zlib.crc32(TANH_TABLE.astype("<i4").tobytes())
