/* See guard.h. The estimate (docs/protocol.md section 6.7): v_0 the kept vector, and for
 * k = 1..32: w = rsr(R v_{k-1}, 24), v_k = w shifted by s_k so that its largest entry lies
 * in [2^19, 2^20]; with S = sum s_k the shifts telescope, and
 *     log2(rho^64) = 2 S + log2 ||v_32||^2 - log2 ||v_0||^2     (Q16).
 * Every product and sum stays within int64: |R| < 2^31, |v| <= 2^20, N <= 2^10. Each
 * product is formed twice (once for the largest entry, once to store the shifted vector),
 * which keeps the scratch at two int32 vectors: 64 N^2 multiply-adds per check. */
#include "guard.h"

#include "crc32.h"
#include "fixed.h"

const int32_t tp_exp2_table[16] = {
    759250125, 902905651, 984625594, 1028218693, 1050733751, 1062175491, 1067942999,
    1070838486, 1072289173, 1073015252, 1073378477, 1073560135, 1073650976, 1073696399,
    1073719111, 1073730468,
};

uint32_t tp_exp2_table_crc32(void)
{
    return tp_crc32_int32_le(tp_exp2_table, 16);
}

/* The number of bits of x (0 for 0). */
static unsigned bit_length(uint64_t x)
{
    unsigned n = 0;
    while (x != 0) {
        x >>= 1;
        n++;
    }
    return n;
}

int64_t tp_log2_q16(uint64_t x)
{
    unsigned n = bit_length(x) - 1u, k;
    uint64_t y = n >= 30u ? x >> (n - 30u) : x << (30u - n); /* mantissa in [2^30, 2^31) */
    int64_t r = 0;
    for (k = 0; k < 16u; k++) {
        y = (y * y + ((uint64_t)1 << 29)) >> 30;
        r *= 2;
        if (y >= (uint64_t)1 << 31) {
            y >>= 1;
            r += 1;
        }
    }
    return (int64_t)n * 65536 + r;
}

int64_t tp_exp2_neg_q30(int64_t x)
{
    int64_t q = x / 65536, f = x % 65536, y = (int64_t)1 << 30; /* x >= 0 */
    unsigned k;
    for (k = 0; k < 16u; k++) {
        if (f & ((int64_t)1 << (15u - k))) {
            y = tp_rsr64(y * tp_exp2_table[k], 30);
        }
    }
    if (q == 0) {
        return y;
    }
    return q > 62 ? 0 : tp_rsr64(y, (unsigned)q);
}

void tp_guard_initial(int32_t *v, uint32_t n)
{
    uint32_t i;
    for (i = 0; i < n; i++) {
        uint32_t bit = (uint32_t)(((uint64_t)i * 0x9E3779B1u) & 0xFFFFFFFFu) >> 31;
        v[i] = bit ? -((int32_t)1 << 19) : (int32_t)1 << 19;
    }
}

static uint64_t sum_squares(const int32_t *v, uint32_t n)
{
    uint64_t acc = 0;
    uint32_t i;
    for (i = 0; i < n; i++) {
        acc += (uint64_t)((int64_t)v[i] * v[i]);
    }
    return acc;
}

int tp_guard(tp_model *m, int32_t *w1, int32_t *w2)
{
    const uint32_t n = m->n;
    int32_t *v = w1, *next = w2, *t;
    int64_t shifts = 0, log_rho, log_bound, scale;
    uint64_t n0, n1;
    uint32_t i, j, k;
    int any = 0;
    for (i = 0; i < n; i++) {
        any |= m->gv[i] != 0;
    }
    if (!any) { /* a zero vector (STATE_SET may send one) restarts from the pattern */
        tp_guard_initial(m->gv, n);
    }
    for (i = 0; i < n; i++) {
        v[i] = m->gv[i];
    }
    n0 = sum_squares(v, n);
    for (k = 0; k < TP_GUARD_ITERS; k++) {
        uint64_t mx = 0;
        int s;
        for (i = 0; i < n; i++) {
            const int32_t *row = m->R + (size_t)i * n;
            int64_t a = 0, w;
            for (j = 0; j < n; j++) {
                a += (int64_t)row[j] * v[j];
            }
            w = tp_rsr64(a, 24); /* |w| <= 2^37: stored only once normalised, below */
            if ((uint64_t)(w < 0 ? -w : w) > mx) {
                mx = (uint64_t)(w < 0 ? -w : w);
            }
        }
        if (mx == 0) {
            return 0; /* R maps the vector to zero: the estimate is 0, nothing to do */
        }
        s = (int)bit_length(mx) - 20;
        /* The products again, now that the shift is known (no N-long int64 scratch). */
        for (i = 0; i < n; i++) {
            const int32_t *row = m->R + (size_t)i * n;
            int64_t a = 0, w;
            for (j = 0; j < n; j++) {
                a += (int64_t)row[j] * v[j];
            }
            w = tp_rsr64(a, 24);
            next[i] = (int32_t)(s > 0 ? tp_rsr64(w, (unsigned)s) : w * ((int64_t)1 << (-s)));
        }
        shifts += s;
        t = v, v = next, next = t;
    }
    n1 = sum_squares(v, n);
    log_rho = 2 * shifts * 65536 + tp_log2_q16(n1) - tp_log2_q16(n0);
    log_bound = 64 * (tp_log2_q16(m->hyper.bound_q) - 16 * 65536);
    for (i = 0; i < n; i++) {
        m->gv[i] = v[i];
    }
    if (log_rho <= log_bound) {
        return 0;
    }
    scale = tp_exp2_neg_q30(tp_rsr64(log_rho - log_bound, 6));
    for (i = 0; i < n * n; i++) {
        m->R[i] = tp_sat32(tp_rsr64((int64_t)m->R[i] * scale, 30));
    }
    return 1;
}
