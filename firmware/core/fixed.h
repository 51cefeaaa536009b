/* Integer helpers of docs/protocol.md section 6.1, written without undefined or
 * implementation-defined behaviour.
 *
 * The document's `>>` on a signed value is an arithmetic shift (floor division by 2^s).
 * In C99 right-shifting a negative value is implementation-defined, so every signed shift
 * goes through tp_asr64/tp_rsr64, which shift an unsigned value instead: the offset
 * u = v + 2^63 (in uint64, where conversion and addition are defined modulo 2^64) maps
 * [-2^63, 2^63) onto [0, 2^64) in order, and since 2^s divides 2^63,
 * floor(v / 2^s) = (u >> s) - 2^(63-s), where u >> s < 2^63 converts back to int64 exactly.
 * Branch-free; GCC makes it an add, a shift and a subtract. Every product and sum the core
 * forms stays within int64 by the saturation bounds of section 6.1 (checked by the
 * overflow-raising transcription tests/naive/fixed_point.py and by the UBSan build). */
#ifndef TP_FIXED_H
#define TP_FIXED_H

#include <stdint.h>

#define TP_I32_MIN (-2147483647 - 1)
#define TP_I32_MAX 2147483647

#define TP_U63 ((uint64_t)1 << 63)

/* floor(v / 2^s), 1 <= s <= 63. */
static inline int64_t tp_asr64(int64_t v, unsigned s)
{
    return (int64_t)(((uint64_t)v + TP_U63) >> s) - (int64_t)(TP_U63 >> s);
}

/* rsr(v, s) = floor((v + 2^(s-1)) / 2^s): round half up, 1 <= s <= 62;
 * v + 2^(s-1) < 2^63 (the document's bounds). */
static inline int64_t tp_rsr64(int64_t v, unsigned s)
{
    return (int64_t)(((uint64_t)v + (TP_U63 + ((uint64_t)1 << (s - 1)))) >> s) -
           (int64_t)(TP_U63 >> s);
}

/* Clamp to [-lim, lim]. */
static inline int64_t tp_sat(int64_t v, int64_t lim)
{
    return v < -lim ? -lim : (v > lim ? lim : v);
}

/* Clamp to the int32 range. */
static inline int32_t tp_sat32(int64_t v)
{
    return v < TP_I32_MIN ? TP_I32_MIN : (v > TP_I32_MAX ? TP_I32_MAX : (int32_t)v);
}

/* n / d truncated toward zero (C99 '/'), 0 when d == 0 (the 0/0 guards); d >= 0. */
static inline int64_t tp_div(int64_t n, int64_t d)
{
    return d == 0 ? 0 : n / d;
}

#endif
