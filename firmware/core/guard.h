/* The stability guard in fixed point (docs/protocol.md section 6.7), bit-exact with the
 * Python simulator (twinpass.firmware_sim.guard): R's spectral radius estimated by 32
 * products with a warm-start vector, and R scaled onto the bound when the estimate
 * exceeds it. Integer operations only; it runs every guard_every steps. */
#ifndef TP_GUARD_H
#define TP_GUARD_H

#include <stdint.h>

#include "twinpass_core.h"

#define TP_GUARD_ITERS 32u
#define TP_EXP2_TABLE_CRC32 0xa71e38ddu

/* 2^(-2^-(k+1)) in Q30, k = 0..15. */
extern const int32_t tp_exp2_table[16];

/* zlib CRC32 of the table as little-endian int32 (must equal TP_EXP2_TABLE_CRC32). */
uint32_t tp_exp2_table_crc32(void);

/* log2(x) in Q16 for x >= 1. */
int64_t tp_log2_q16(uint64_t x);

/* round(2^(-x / 2^16) * 2^30) for x >= 0 (Q16 in, Q30 out). */
int64_t tp_exp2_neg_q30(int64_t x);

/* The warm-start vector of a fresh model: +-2^19 by a fixed pattern of signs. */
void tp_guard_initial(int32_t *v, uint32_t n);

/* One check: estimate, scale R if above m->hyper.bound_q, keep the new vector in m->gv.
 * w1, w2: scratch of N int32 each. Returns 1 if R was scaled. */
int tp_guard(tp_model *m, int32_t *w1, int32_t *w2);

#endif
