/* The counter-based noise generator of docs/protocol.md section 6.3.
 *
 * The whole state is (seed u32, counter u64): word p is a pure function of (seed, p), so a
 * step's noise does not depend on how steps were grouped into requests. Each Gaussian-like
 * sample consumes two words. */
#ifndef TP_PRNG_H
#define TP_PRNG_H

#include <stdint.h>

/* Wellons' lowbias32 hash (uint32, wrapping multiplies). */
uint32_t tp_lowbias32(uint32_t x);

/* The generator's key: lowbias32(seed ^ 0x9e3779b9). */
uint32_t tp_prng_key(uint32_t seed);

/* Word p: lowbias32(lowbias32(lo32(p) ^ key) ^ hi32(p)). */
uint32_t tp_prng_word(uint32_t key, uint64_t p);

/* The sample made of words p and p + 1 (mod 2^64), standard deviation sigma_q (Q16):
 * g = lo16(w0) + hi16(w0) + lo16(w1) + hi16(w1) - 131070 (Irwin-Hall, 4 terms),
 * noise = (g * 113512 * sigma_q + 2^31) >> 32 (Q16). */
int32_t tp_prng_sample(uint32_t key, uint64_t p, uint32_t sigma_q);

#endif
