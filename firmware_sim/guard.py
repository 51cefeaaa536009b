"""The stability guard in fixed point: R's spectral radius estimated and kept bounded.

docs/protocol.md §6.7, the integer form of docs/design.md §5. Every ``guard_every`` steps
the device runs 32 products of R with a warm-start vector ``v`` (int32, normalised by
powers of two so that its largest entry lies in [2**19, 2**20]), accumulating the shifts.
The product of the 32 growth factors is then ``2**S · ‖v_32‖ / ‖v_0‖`` (the shifts
telescope), so the estimate needs two logarithms only:

    log2(ρ̂^64) = 2·S + log2(‖v_32‖²) − log2(‖v_0‖²)        (Q16, by :func:`log2_q16`)

Above the bound b, R is scaled by ``2**(log2 b − log2 ρ̂)`` (a Q30 factor from
:func:`exp2_neg_q30`), so that it sits on the bound. Every operation is an integer one (a
product, a shift, a comparison, a table look-up), specified exactly so that the C firmware
and the simulator agree bit for bit; it runs rarely, so NumPy on whole vectors is its
simulator form (the products are exact in int64 whatever the summation order).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from .integer import rshift_round

GUARD_ITERS = 32  # products per estimate (2**5: log2(ρ̂^64) is 2 log2 of ρ̂^32)
V_BITS = 20  # the warm-start vector's largest entry lies in [2**19, 2**20]
LOG_FRAC = 16  # logarithms in Q16
SCALE_FRAC = 30  # the scale factor applied to R, Q30

#: 2**(-2**-(k+1)) in Q30 for k = 0..15: the factors of 2**-x for x's fractional bits,
#: from the most significant (2**-0.5) down. Part of the specification (the C firmware
#: ships the table; tests pin its CRC32).
EXP2_TABLE = np.array(
    [math.floor(2.0 ** (-(2.0 ** -(k + 1))) * (1 << SCALE_FRAC) + 0.5) for k in range(LOG_FRAC)],
    dtype=np.int64,
)
EXP2_TABLE_CRC32 = zlib.crc32(EXP2_TABLE.astype("<i4").tobytes())


def initial_vector(n: int) -> np.ndarray:
    """The warm-start vector of a freshly loaded model: entries ±2**19, unit i negative
    where bit 31 of the u32 product ``i · 0x9E3779B1`` is set (a fixed pattern of signs:
    no noise is drawn for it, and it is not orthogonal to any structured direction)."""
    i = np.arange(n, dtype=np.uint64)
    bit = ((i * np.uint64(0x9E3779B1)) & np.uint64(0xFFFFFFFF)) >> np.uint64(31)
    return np.where(bit.astype(np.int64) == 1, -(1 << (V_BITS - 1)), 1 << (V_BITS - 1))


def log2_q16(x: int) -> int:
    """log2(x) in Q16 for an integer x >= 1: the integer part from the bit length, 16
    fractional bits by repeated squaring of the mantissa in Q30 (truncating)."""
    x = int(x)
    if x < 1:
        raise ValueError(f"log2_q16 needs x >= 1, got {x}")
    n = x.bit_length() - 1
    y = x >> (n - 30) if n >= 30 else x << (30 - n)  # mantissa in [2**30, 2**31)
    r = 0
    for _ in range(LOG_FRAC):
        y = (y * y + (1 << 29)) >> 30
        r <<= 1
        if y >= 1 << 31:
            y >>= 1
            r |= 1
    return (n << LOG_FRAC) + r


def exp2_neg_q30(x: int) -> int:
    """round(2**(-x / 2**16) · 2**30) for x >= 0 in Q16: the table's factors for the set
    fractional bits (each product rounded), then a rounding right shift by the integer
    part."""
    x = int(x)
    q, f = x >> LOG_FRAC, x & ((1 << LOG_FRAC) - 1)
    y = 1 << SCALE_FRAC
    for k in range(LOG_FRAC):
        if f & (1 << (LOG_FRAC - 1 - k)):
            y = rshift_round(y * int(EXP2_TABLE[k]), SCALE_FRAC)
    if q == 0:
        return y
    return 0 if q > 62 else rshift_round(y, q)


def normalise(w: np.ndarray) -> tuple[np.ndarray, int]:
    """``w`` shifted so that its largest magnitude m lies in [2**19, 2**20], and the shift s
    (w ≈ result · 2**s): s = bitlen(m) − 20 > 0 rounds (``rsr``), s <= 0 shifts left."""
    m = int(np.abs(w).max())
    s = m.bit_length() - V_BITS
    if s > 0:
        return rshift_round(w, s), s
    return w << -s, s


def guard(R: np.ndarray, v: np.ndarray, bound_q: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """One check of the guard: (R, the new warm-start vector, whether R was scaled).

    R (N, N) Q24 and v (N,) as held; ``bound_q`` the bound in Q16 (> 0). If R maps the
    vector to zero the estimate is 0: nothing is scaled and v is kept. A zero v is replaced
    by :func:`initial_vector` first.
    """
    if not v.any():  # a zero vector (STATE_SET may send one) restarts from the pattern
        v = initial_vector(v.shape[0])
    n0 = int((v * v).sum())
    w = v
    shifts = 0
    for _ in range(GUARD_ITERS):
        w = rshift_round(R @ w, 24)  # exact in int64: |R| < 2**31, |w| <= 2**20, N <= 2**10
        if not w.any():
            return R, v, False
        w, s = normalise(w)
        shifts += s
    n1 = int((w * w).sum())
    log_rho64 = 2 * (shifts << LOG_FRAC) + log2_q16(n1) - log2_q16(n0)
    log_bound64 = 64 * (log2_q16(bound_q) - (16 << LOG_FRAC))  # bound_q is Q16
    if log_rho64 <= log_bound64:
        return R, w, False
    # The exponent per product, log2 ρ̂ − log2 b, in Q16: the 64th part of the difference.
    scale = exp2_neg_q30(rshift_round(log_rho64 - log_bound64, 6))
    return rshift_round(R * scale, SCALE_FRAC), w, True
