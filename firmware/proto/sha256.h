/* SHA-256 (FIPS 180-4): the identity of a model image (DEPLOY_BEGIN/COMMIT, HELLO
 * model_hash). Portable C99, no heap, streaming. */
#ifndef TP_SHA256_H
#define TP_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bits;     /* message length so far, in bits */
    uint8_t buf[64];
    uint32_t nbuf;     /* bytes held in buf */
} tp_sha256_ctx;

void tp_sha256_init(tp_sha256_ctx *c);
void tp_sha256_update(tp_sha256_ctx *c, const uint8_t *data, size_t len);
void tp_sha256_final(tp_sha256_ctx *c, uint8_t out[32]);
/* One call: out = sha256(data[0..len)). */
void tp_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

#endif
