/* SHA-256 (FIPS 180-4), streaming, for model image hashes. Small rather than fast: one
 * 64-word constant table and a 16-word rolling message schedule on the stack. */
#include <string.h>

#include "sha256.h"

static const uint32_t K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u,
    0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu,
    0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu,
    0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau, 0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u,
    0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu,
    0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u, 0x19a4c116u,
    0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u,
    0xc67178f2u,
};

static uint32_t rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32u - n));
}

/* Compress one 64-byte block into c->h. */
static void block(tp_sha256_ctx *c, const uint8_t *p)
{
    uint32_t w[16], s[8], t1, t2;
    unsigned k, j;
    for (k = 0; k < 16; k++) /* big-endian words, byte by byte (no unaligned loads) */
        w[k] = (uint32_t)p[4 * k] << 24 | (uint32_t)p[4 * k + 1] << 16 |
               (uint32_t)p[4 * k + 2] << 8 | (uint32_t)p[4 * k + 3];
    memcpy(s, c->h, sizeof s);
    for (k = 0; k < 64; k++) {
        if (k >= 16) { /* w[k mod 16] becomes W[k] */
            uint32_t a = w[(k + 1) & 15], b = w[(k + 14) & 15];
            w[k & 15] += (rotr(a, 7) ^ rotr(a, 18) ^ (a >> 3)) + w[(k + 9) & 15] +
                         (rotr(b, 17) ^ rotr(b, 19) ^ (b >> 10));
        }
        t1 = s[7] + (rotr(s[4], 6) ^ rotr(s[4], 11) ^ rotr(s[4], 25)) +
             ((s[4] & s[5]) ^ (~s[4] & s[6])) + K[k] + w[k & 15];
        t2 = (rotr(s[0], 2) ^ rotr(s[0], 13) ^ rotr(s[0], 22)) +
             ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
        for (j = 7; j > 0; j--)
            s[j] = s[j - 1];
        s[4] += t1;
        s[0] = t1 + t2;
    }
    for (k = 0; k < 8; k++)
        c->h[k] += s[k];
}

void tp_sha256_init(tp_sha256_ctx *c)
{
    static const uint32_t h0[8] = {0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
                                   0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u};
    memcpy(c->h, h0, sizeof h0);
    c->bits = 0;
    c->nbuf = 0;
}

void tp_sha256_update(tp_sha256_ctx *c, const uint8_t *data, size_t len)
{
    c->bits += (uint64_t)len << 3;
    while (len > 0) {
        size_t n = 64u - c->nbuf;
        if (n > len)
            n = len;
        if (c->nbuf == 0 && n == 64) { /* whole blocks straight from the input */
            block(c, data);
        } else {
            memcpy(c->buf + c->nbuf, data, n);
            c->nbuf += (uint32_t)n;
            if (c->nbuf < 64)
                return;
            block(c, c->buf);
            c->nbuf = 0;
        }
        data += n;
        len -= n;
    }
}

void tp_sha256_final(tp_sha256_ctx *c, uint8_t out[32])
{
    uint64_t bits = c->bits;
    unsigned k;
    c->buf[c->nbuf++] = 0x80u;
    if (c->nbuf > 56) { /* no room for the length: pad out this block */
        memset(c->buf + c->nbuf, 0, 64u - c->nbuf);
        block(c, c->buf);
        c->nbuf = 0;
    }
    memset(c->buf + c->nbuf, 0, 56u - c->nbuf);
    for (k = 0; k < 8; k++)
        c->buf[56 + k] = (uint8_t)(bits >> (56 - 8 * k));
    block(c, c->buf);
    for (k = 0; k < 32; k++)
        out[k] = (uint8_t)(c->h[k >> 2] >> (24 - 8 * (k & 3)));
}

void tp_sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
    tp_sha256_ctx c;
    tp_sha256_init(&c);
    tp_sha256_update(&c, data, len);
    tp_sha256_final(&c, out);
}
