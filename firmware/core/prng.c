#include "prng.h"

#include "fixed.h"

uint32_t tp_lowbias32(uint32_t x)
{
    /* "+ 0u" keeps the multiplies unsigned even where int is wider than 32 bits. */
    x ^= x >> 16;
    x = (uint32_t)((x + 0u) * 0x7feb352du);
    x ^= x >> 15;
    x = (uint32_t)((x + 0u) * 0x846ca68bu);
    x ^= x >> 16;
    return x;
}

uint32_t tp_prng_key(uint32_t seed)
{
    return tp_lowbias32(seed ^ 0x9e3779b9u);
}

uint32_t tp_prng_word(uint32_t key, uint64_t p)
{
    uint32_t lo = (uint32_t)(p & 0xFFFFFFFFu);
    uint32_t hi = (uint32_t)(p >> 32);
    return tp_lowbias32(tp_lowbias32(lo ^ key) ^ hi);
}

int32_t tp_prng_sample(uint32_t key, uint64_t p, uint32_t sigma_q)
{
    uint32_t w0 = tp_prng_word(key, p);
    uint32_t w1 = tp_prng_word(key, p + 1u); /* uint64: wraps mod 2^64 like the reference */
    int64_t g = (int64_t)(w0 & 0xFFFFu) + (int64_t)(w0 >> 16) + (int64_t)(w1 & 0xFFFFu) +
                (int64_t)(w1 >> 16) - 131070;
    /* |g| <= 131070, sigma_q <= 2^16: |g * 113512 * sigma_q| < 2^50. The result is within
     * +-3.47 * 2^16 * sigma, so it fits int32. */
    return (int32_t)tp_rsr64(g * 113512 * (int64_t)sigma_q, 32);
}
