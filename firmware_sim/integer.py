"""The integer helpers of the device's arithmetic (docs/protocol.md §6.1), on int64.

Shared by the step (:mod:`.fixed_point`) and the stability guard (:mod:`.guard`); each is
an operation a C port reproduces bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twinpass.protocol.qformat import I32_MAX, I32_MIN


def rshift_round(v: np.ndarray | int, s: int) -> Any:
    """``(v + 2**(s-1)) >> s``: round half up, arithmetic shift (s >= 1)."""
    return (v + (1 << (s - 1))) >> s


# np.minimum/np.maximum rather than np.clip: clip's dtype-limit checks cost more than the
# arithmetic at these sizes (it dominated a step's profile).
def sat(v: Any, limit: int) -> Any:
    """Clamp to [-limit, limit]."""
    return np.minimum(np.maximum(v, -limit), limit)


def sat32(v: Any) -> Any:
    """Clamp to the int32 range."""
    return np.minimum(np.maximum(v, I32_MIN), I32_MAX)


def div_trunc(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """n / d truncated toward zero (C99 ``/``); 0 where d == 0 (the 0/0 guard). d >= 0."""
    n = np.asarray(n, dtype=np.int64)
    d = np.asarray(d, dtype=np.int64)
    safe = np.where(d == 0, 1, d)
    q = np.abs(n) // safe
    return np.where(d == 0, 0, np.where(n < 0, -q, q))
