"""The wire's fixed-point formats and the host's conversions to and from them.

docs/protocol.md §6.1: activities (inputs, targets, hidden states, outputs) are Q16.16 in
int32, weights Q7.24 in int32, losses and squared norms Q32 in int64. Hosts convert floats
at the boundary with the functions here (rounding half away from zero, saturating like the
device); the device side never sees a float. The limits the device's int64 arithmetic
relies on (sizes, batch) are part of the format: a host and a device check against the same
numbers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

A_FRAC = 16  # activities Q16.16
W_FRAC = 24  # weights Q7.24
LOSS_FRAC = 32  # losses, norms Q32
ONE_A = 1 << A_FRAC
ONE_W = 1 << W_FRAC

I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1
IO_LIMIT = 1 << 23  # |u|, |y*| <= 128: inputs and targets are saturated here

# The sizes every bound of §6.1 assumes (no int64 accumulator can overflow within them).
MAX_HIDDEN = 1024
MAX_IO = 256  # n_in, n_out
MAX_BATCH = 64


def to_q(value: float, frac: int) -> int:
    """round(value · 2**frac), half away from zero (host side only)."""
    v = float(value) * (1 << frac)
    return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def quantise_array(m: np.ndarray, frac: int, limit: int = I32_MAX) -> np.ndarray:
    """Float array to saturated fixed point, rounding half away from zero (host side)."""
    v = np.asarray(m, dtype=np.float64) * float(1 << frac)
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(np.nan_to_num(q), -limit - (limit == I32_MAX), limit).astype(np.int64)


def encode_activities(values: Any) -> np.ndarray:
    """Float inputs/targets to the wire's Q16.16 int32 (round half away from zero, saturated
    to ±2**23 as the device would)."""
    return quantise_array(values, A_FRAC, IO_LIMIT).astype(np.int32)


def decode_activities(q: Any) -> np.ndarray:
    """Q16.16 integers (predictions) to float64."""
    return np.asarray(q, np.int64) / float(ONE_A)


def decode_loss(q: Any) -> Any:
    """Q32 losses to float64."""
    return np.asarray(q, np.int64) / float(1 << LOSS_FRAC)
