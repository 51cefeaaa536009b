"""A counter-based Gaussian generator whose whole state is an explicit array.

Numba's own ``np.random`` keeps hidden per-thread state, which a checkpoint cannot capture
and a test cannot inject. Here the state is ``rng = uint64[2] = [key, counter]``: the pair
of normals number ``k`` is a pure function of ``(key, k)``, so a run is reproducible bit
for bit, resumable from the two integers, and independent of how the stream was chunked.

Each counter value is hashed once with the SplitMix64 finaliser (a bijective avalanche
mixer); 31 of its high bits give the radius and its low 32 bits the angle of a
Box-Muller pair. log, sin and cos are evaluated with branch-free polynomials (error below 1e-9) so
that the loop vectorises: libm calls would cost ~35 ns per normal and dominate a step at
N ≈ 100. The smallest uniform is 2**-32, so draws are bounded by 6.7 standard deviations
(probability of a Gaussian exceeding that: 2e-11).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .bits import f64_as_i64, i64_as_f64

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S33 = np.uint64(33)
_LO32 = np.uint64(0xFFFFFFFF)
_LO30 = 0x3FFFFFFF
_MANTISSA = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000
_LN2 = 0.6931471805599453
_HALF_PI = 0.5 * np.pi
_QUARTER_PI = 0.25 * np.pi
_SQRT_HALF = 0.7071067811865476
_TWO_M31 = 1.0 / 2147483648.0
_TWO_M30 = 1.0 / 1073741824.0


@njit(inline="always")
def _mix64(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always")
def _log_unit(x: float) -> float:
    """log(x) for a normal positive float64: exponent from the bits, mantissa by series."""
    bits = f64_as_i64(x)
    e = np.float64(np.int32((bits >> 52) - 1023))
    m = i64_as_f64((bits & _MANTISSA) | _ONE_BITS)  # in [1, 2)
    # log(m) = 2 atanh(s), s = (m-1)/(m+1) in [0, 1/3]: odd series, error < 1e-10.
    s = (m - 1.0) / (m + 1.0)
    s2 = s * s
    p = 1.0 / 19.0
    p = p * s2 + 1.0 / 17.0
    p = p * s2 + 1.0 / 15.0
    p = p * s2 + 1.0 / 13.0
    p = p * s2 + 1.0 / 11.0
    p = p * s2 + 1.0 / 9.0
    p = p * s2 + 1.0 / 7.0
    p = p * s2 + 1.0 / 5.0
    p = p * s2 + 1.0 / 3.0
    p = p * s2 + 1.0
    return 2.0 * s * p + e * _LN2


@njit(inline="always")
def _normal_pair(h: np.uint64) -> tuple[float, float]:
    """Two independent standard normals from 64 random bits (Box-Muller)."""
    hi = np.int64(h >> _S33)  # 31 bits: the radius
    lo = np.int64(h & _LO32)  # 32 bits: the angle
    # Conversions go through int32: AVX2 converts int32 lanes to double, not 64-bit ones.
    u1 = (np.float64(np.int32(hi)) + 0.5) * _TWO_M31
    r = np.sqrt(-2.0 * _log_unit(u1))
    # Angle: 2 bits pick the quadrant, 30 bits the position in it; the polynomials are
    # evaluated on [-pi/4, pi/4] around the quadrant's middle.
    q = lo >> 30
    phi = (np.float64(np.int32(lo & _LO30)) + 0.5) * _TWO_M30 * _HALF_PI - _QUARTER_PI
    p2 = phi * phi
    sn = -1.0 / 39916800.0
    sn = sn * p2 + 1.0 / 362880.0
    sn = sn * p2 - 1.0 / 5040.0
    sn = sn * p2 + 1.0 / 120.0
    sn = sn * p2 - 1.0 / 6.0
    sn = (sn * p2 + 1.0) * phi
    cs = 1.0 / 479001600.0
    cs = cs * p2 - 1.0 / 3628800.0
    cs = cs * p2 + 1.0 / 40320.0
    cs = cs * p2 - 1.0 / 720.0
    cs = cs * p2 + 1.0 / 24.0
    cs = cs * p2 - 0.5
    cs = cs * p2 + 1.0
    # (cos, sin) of pi/4 + phi, then turned by q quarter turns: swap for odd q, and flip
    # the sign bit of cos for q in {1, 2} and of sin for q in {2, 3}.
    c = (cs - sn) * _SQRT_HALF
    s = (cs + sn) * _SQRT_HALF
    odd = (q & 1) == 1
    cx = s if odd else c
    sx = c if odd else s
    cx = i64_as_f64(f64_as_i64(cx) ^ ((((q + 1) >> 1) & 1) << 63))
    sx = i64_as_f64(f64_as_i64(sx) ^ ((q >> 1) << 63))
    return r * cx, r * sx


@njit(inline="always")
def fill_normal_inline(rng: np.ndarray, scale: float, out: np.ndarray) -> None:
    """Fill the flat view of ``out`` with ``scale * N(0, 1)`` and advance ``rng``.

    Uses ``ceil(out.size / 2)`` counter values; an odd size discards the last normal, so
    the counter advance depends only on the size. Pair p fills positions p and
    ``size // 2 + p``: unit-stride stores, so the loop vectorises.
    """
    flat = out.reshape(-1)
    n = flat.size
    key = rng[0]
    ctr = rng[1]
    half = n // 2
    for p in range(half):
        z0, z1 = _normal_pair(_mix64(key + (ctr + np.uint64(p)) * _GOLDEN))
        flat[p] = scale * z0
        flat[half + p] = scale * z1
    if n % 2 == 1:
        z0, _ = _normal_pair(_mix64(key + (ctr + np.uint64(half)) * _GOLDEN))
        flat[n - 1] = scale * z0
    rng[1] = ctr + np.uint64((n + 1) // 2)


# error_model="numpy": Python semantics would put a zero-division branch on every
# division, which stops the loop from vectorising.
@njit(cache=True, error_model="numpy")
def fill_normal(rng: np.ndarray, scale: float, out: np.ndarray) -> None:
    """Fill the flat view of ``out`` with ``scale * N(0, 1)`` and advance ``rng``.

    The public entry point; compiled kernels inline :func:`fill_normal_inline`, the same
    code, so that no cached function is shared between kernels with different flags.
    """
    fill_normal_inline(rng, scale, out)


def new_rng_state(seed: int) -> np.ndarray:
    """A fresh generator state for ``seed`` (any non-negative integer below 2**64)."""
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    key = (int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64
    # One round of SplitMix64 so that neighbouring seeds give unrelated keys.
    key ^= key >> 30
    key = (key * 0xBF58476D1CE4E5B9) % 2**64
    key ^= key >> 27
    key = (key * 0x94D049BB133111EB) % 2**64
    key ^= key >> 31
    return np.array([key, 0], dtype=np.uint64)


@njit(inline="always")
def next_normal_inline(rng: np.ndarray) -> float:
    """One standard normal from ``rng`` (one counter value; the pair's second is dropped).

    For rare, data-dependent draws (a device pulse) where filling an array does not fit.
    """
    ctr = rng[1]
    z0, _ = _normal_pair(_mix64(rng[0] + ctr * _GOLDEN))
    rng[1] = ctr + np.uint64(1)
    return z0


@njit(inline="always")
def next_uniform_inline(rng: np.ndarray) -> float:
    """One uniform in (0, 1) from ``rng`` (one counter value, 53 random bits)."""
    ctr = rng[1]
    h = _mix64(rng[0] + ctr * _GOLDEN)
    rng[1] = ctr + np.uint64(1)
    return (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)
