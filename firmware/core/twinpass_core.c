/* The fixed-point ANP core (docs/protocol.md sections 6.3-6.5). See twinpass_core.h.
 *
 * Every dot product is accumulated exactly in int64; by the saturation bounds of section
 * 6.1 (N <= 1024, n_in, n_out <= 256, batch <= 64) no product or sum overflows, so the
 * summation order is free and the result equals the simulator's. Signed right shifts go
 * through tp_asr64/tp_rsr64 (fixed.h). */
#include "twinpass_core.h"

#include <string.h>

#include "fixed.h"
#include "guard.h"
#include "prng.h"
#include "tanh_table.h"

/* F, the width of B. */
static uint32_t n_features(uint32_t n_in, uint32_t n, int readout_inputs)
{
    return n + (readout_inputs ? n_in + 1u : 0u);
}

int tp_hyper_valid(const tp_hyper *h)
{
    return h->lr_q >= 1 && h->sigma_q <= 65536u && h->resync_every <= 0xFFFFu &&
           h->lrh_q >= 1 && h->readout <= TP_READOUT_RLS && h->mu_q >= 1 &&
           h->mu_q <= 131071u && h->leak_q >= 1 && h->leak_q <= 65536u &&
           h->guard_every >= 1 && h->output_cap <= 1 && h->two_noisy <= 1 &&
           h->decorrelation <= 1 && h->readout_inputs <= 1 && h->im1_q <= TP_IM1_MAX &&
           h->p0_q >= (h->readout == TP_READOUT_RLS ? 1u : 0u) && h->p0_q <= TP_P0_MAX;
}

size_t tp_model_words(uint32_t n_in, uint32_t n, uint32_t n_out, uint32_t batch,
                      uint32_t eval_cap, int d_stored, int readout_inputs, int rls)
{
    size_t ni = n_in, nn = n, no = n_out, nb = batch;
    size_t nf = (size_t)n_features(n_in, n, readout_inputs);
    size_t w;
    if (n_in < 1 || n_in > TP_MAX_IO || n < 1 || n > TP_MAX_HIDDEN || n_out < 1 ||
        n_out > TP_MAX_IO || batch < 1 || batch > TP_MAX_BATCH || eval_cap < 1 ||
        eval_cap > TP_MAX_BATCH) {
        return 0;
    }
    w = nn * ni + nn * nn + no * nf + nn + (d_stored ? nn * nn : 0); /* weights, gv */
    w += rls ? nf * nf + 2 * nf : 0;                                 /* P, g, k */
    w += 6 * nb * nn;                                                /* xh*, xn*, xp* */
    w += nb * ni + 2 * nb * no + nb * nf + 2 * nn;                   /* u, b*, f1, xtmp */
    w += (size_t)eval_cap * nn;                                      /* xh_eval */
    if (d_stored) {
        w += nb * nn + nn; /* decorrelation scratch */
    }
    return w;
}

/* Point the states and scratch (everything after the weights) into the buffer from p on.
 * Their layout depends on batch, eval_cap and d_stored; the weights' does not, which is
 * what lets tp_model_relayout keep the weights in place. */
static void lay_states(tp_model *m, int32_t *p)
{
    const size_t n = m->n, batch = m->batch;
    m->xh1 = p, p += batch * n;
    m->xh2 = p, p += batch * n;
    m->xn1 = p, p += batch * n;
    m->xn2 = p, p += batch * n;
    m->xp1 = p, p += batch * n;
    m->xp2 = p, p += batch * n;
    m->u = p, p += batch * m->n_in;
    m->b1 = p, p += batch * m->n_out;
    m->b2 = p, p += batch * m->n_out;
    m->f1 = p, p += batch * m->n_f;
    m->xtmp = p, p += 2 * n;
    m->xh_eval = p, p += (size_t)m->eval_cap * n;
    m->dec_tmp = m->dec_q = NULL;
    if (m->d_stored) {
        m->dec_tmp = p, p += batch * n;
        m->dec_q = p, p += n;
    }
}

/* The end of what a relayout keeps: weights, the guard's vector and RLS's P and scratch
 * (D, when stored, follows). */
static int32_t *weights_end(const tp_model *m)
{
    int32_t *p = m->gv + m->n;
    if (m->P != NULL) {
        p += (size_t)m->n_f * m->n_f + 2u * (size_t)m->n_f;
    }
    return p;
}

void tp_model_reset_p(tp_model *m)
{
    const size_t nf = m->n_f;
    size_t i;
    if (m->P == NULL) {
        return;
    }
    memset(m->P, 0, nf * nf * sizeof(int32_t));
    for (i = 0; i < nf; i++) {
        m->P[i * nf + i] = (int32_t)m->hyper.p0_q; /* <= 100 * 2^24 */
    }
}

/* D := the identity (Q7.24), stored at `at` (N x N words). */
static void store_identity(tp_model *m, int32_t *at)
{
    const size_t n = m->n;
    size_t i;
    m->D = at;
    memset(at, 0, n * n * sizeof(int32_t));
    for (i = 0; i < n; i++) {
        at[i * n + i] = (int32_t)1 << 24;
    }
}

int tp_model_init(tp_model *m, uint32_t n_in, uint32_t n, uint32_t n_out, uint32_t batch,
                  uint32_t eval_cap, int d_stored, const tp_hyper *hyper, uint32_t seed,
                  int32_t *mem, size_t words)
{
    size_t need;
    int32_t *p = mem;
    if (!tp_hyper_valid(hyper)) {
        return TP_ERR_ARGS;
    }
    d_stored = d_stored || hyper->decorrelation;
    need = tp_model_words(n_in, n, n_out, batch, eval_cap, d_stored, hyper->readout_inputs,
                          hyper->readout == TP_READOUT_RLS);
    if (need == 0) {
        return TP_ERR_ARGS;
    }
    if (mem == NULL || words < need) {
        return TP_ERR_SPACE;
    }
    memset(m, 0, sizeof *m);
    memset(mem, 0, need * sizeof *mem);
    m->n_in = n_in;
    m->n = n;
    m->n_out = n_out;
    m->n_f = n_features(n_in, n, hyper->readout_inputs);
    m->batch = batch;
    m->eval_cap = eval_cap;
    m->eval_batch = 1;
    m->d_stored = d_stored;
    m->hyper = *hyper;
    m->A = p, p += (size_t)n * n_in;
    m->R = p, p += (size_t)n * n;
    m->B = p, p += (size_t)n_out * m->n_f;
    m->gv = p, p += n;
    tp_guard_initial(m->gv, n);
    m->P = m->rls_g = NULL;
    if (hyper->readout == TP_READOUT_RLS) {
        m->P = p, p += (size_t)m->n_f * m->n_f;
        m->rls_g = p, p += 2u * (size_t)m->n_f;
        tp_model_reset_p(m);
    }
    m->D = NULL;
    if (d_stored) {
        store_identity(m, p);
        p += (size_t)n * n;
    }
    lay_states(m, p);
    tp_model_reseed(m, seed);
    return TP_OK;
}

int tp_model_relayout(tp_model *m, uint32_t batch, uint32_t eval_cap, int d_stored,
                      int32_t *mem, size_t words)
{
    const size_t n = m->n;
    size_t need;
    int32_t *p;
    d_stored = d_stored || m->D != NULL || m->hyper.decorrelation;
    need = tp_model_words(m->n_in, m->n, m->n_out, batch, eval_cap, d_stored,
                          m->hyper.readout_inputs, m->P != NULL);
    if (need == 0) {
        return TP_ERR_ARGS;
    }
    if (mem != m->A || words < need) {
        return TP_ERR_SPACE;
    }
    p = weights_end(m); /* the guard's vector and P are kept with the weights */
    if (d_stored && m->D == NULL) {
        /* D becomes stored: the identity, where the states began (they are zeroed anyway). */
        store_identity(m, p);
    }
    if (m->D != NULL) {
        p += n * n;
    }
    m->batch = batch;
    m->eval_cap = eval_cap;
    m->d_stored = d_stored;
    if (m->eval_batch > eval_cap) {
        m->eval_batch = eval_cap;
    }
    lay_states(m, p);
    memset(p, 0, (need - (size_t)(p - mem)) * sizeof(int32_t));
    m->counter = 0;
    m->pending = 0;
    return TP_OK;
}

int tp_model_store_d(tp_model *m, uint32_t eval_cap, int32_t *mem, size_t words)
{
    const size_t n = m->n;
    size_t keep, need;
    int32_t *p, *xh1 = m->xh1, *xn1 = m->xn1;
    if (m->D != NULL) {
        return TP_OK;
    }
    need = tp_model_words(m->n_in, m->n, m->n_out, m->batch, eval_cap, 1,
                          m->hyper.readout_inputs, m->P != NULL);
    if (need == 0) {
        return TP_ERR_ARGS;
    }
    if (mem != m->A || words < need) {
        return TP_ERR_SPACE;
    }
    p = weights_end(m); /* the guard's vector and P are kept with the weights */
    if (m->eval_batch > eval_cap) {
        m->eval_batch = eval_cap; /* the evaluation streams beyond the new cap are dropped */
    }
    /* The states keep their order after D, with the evaluation state last (the
     * decorrelation scratch is appended after it): move them up by one N x N block, then
     * write the identity where they began. */
    keep = (size_t)(m->xh_eval - p) + (size_t)m->eval_batch * n;
    memmove(p + n * n, p, keep * sizeof(int32_t));
    store_identity(m, p);
    m->d_stored = 1;
    m->eval_cap = eval_cap;
    lay_states(m, p + n * n);
    if (xh1 > xn1) { /* a step swaps the current and next state buffers: keep the roles */
        int32_t *t = m->xh1;
        m->xh1 = m->xn1, m->xn1 = t;
        t = m->xh2, m->xh2 = m->xn2, m->xn2 = t;
    }
    memset(m->dec_tmp, 0, ((size_t)m->batch * n + n) * sizeof(int32_t));
    return TP_OK;
}

void tp_model_reset_state(tp_model *m)
{
    size_t nbn = (size_t)m->batch * m->n;
    memset(m->xh1, 0, nbn * sizeof(int32_t));
    memset(m->xh2, 0, nbn * sizeof(int32_t));
    memset(m->xh_eval, 0, (size_t)m->eval_cap * m->n * sizeof(int32_t));
    m->counter = 0;
    m->pending = 0;
}

void tp_model_reseed(tp_model *m, uint32_t seed)
{
    m->seed = seed;
    m->key = tp_prng_key(seed);
    m->rng_counter = 0;
}

int64_t tp_hyper_lg(const tp_hyper *h)
{
    /* In uint64: lr_q * gain_q <= (2^32 - 1)^2 = 2^64 - 2^33 + 1, plus 2^23 cannot wrap;
     * non-negative, so the shift is a plain one. */
    uint64_t v = ((uint64_t)h->lr_q * h->gain_q + ((uint64_t)1 << 23)) >> 24;
    return v > (uint64_t)TP_LG_LIMIT ? TP_LG_LIMIT : (int64_t)v;
}

int64_t tp_hyper_lgh(const tp_hyper *h)
{
    uint64_t v = ((uint64_t)h->lrh_q * h->gain_q + ((uint64_t)1 << 23)) >> 24;
    return v > (uint64_t)TP_LG_LIMIT ? TP_LG_LIMIT : (int64_t)v;
}

/* D x: xh = sat(rsr(sum_j D_ij x_j, 24), 2^20). */
static void apply_d(const tp_model *m, const int32_t *x, int32_t *xh)
{
    uint32_t n = m->n, i, j;
    for (i = 0; i < n; i++) {
        const int32_t *row = m->D + (size_t)i * n;
        int64_t acc = 0;
        for (j = 0; j < n; j++) {
            acc += (int64_t)row[j] * x[j];
        }
        xh[i] = (int32_t)tp_sat(tp_rsr64(acc, 24), TP_XH_LIMIT);
    }
}

static int32_t noise_at(const tp_model *m, uint64_t p0, uint64_t sample)
{
    return tp_prng_sample(m->key, p0 + 2 * sample, m->hyper.sigma_q);
}

/* The leak (section 6.4): the new state xh + rsr(alpha (v - xh), 16) from v = D x (or x)
 * and the state before, xh; exactly v at alpha = 1. */
static int32_t leaky(const tp_model *m, int32_t v, int32_t xh)
{
    return (int32_t)((int64_t)xh + tp_rsr64((int64_t)m->hyper.leak_q * ((int64_t)v - xh), 16));
}

/* Both replicas' forward pass for every stream (section 6.4); p0 is the step's first
 * noise word. Fills xp1, xp2, xn1, xn2, b1, b2 and replica 1's features f1. */
static void forward_pair(tp_model *m, uint64_t p0)
{
    const uint32_t nb = m->batch, n = m->n, ni = m->n_in, no = m->n_out, nf = m->n_f;
    const int two = m->hyper.two_noisy;
    /* Output noise only with the rule's own readout. */
    const uint32_t nz = m->hyper.readout == TP_READOUT_ANP ? no : 0u;
    /* Draw order: xi2 (batch x N), zeta2 (batch x nz), then xi1, zeta1 (two noisy). */
    const uint64_t off_z2 = (uint64_t)nb * n;
    const uint64_t off_xi1 = (uint64_t)nb * (n + nz);
    const uint64_t off_z1 = (uint64_t)nb * (2 * (uint64_t)n + nz);
    uint32_t s, i, j, o;
    for (s = 0; s < nb; s++) {
        const int32_t *us = m->u + (size_t)s * ni;
        const int32_t *h1 = m->xh1 + (size_t)s * n;
        const int32_t *h2 = m->xh2 + (size_t)s * n;
        int32_t *p1 = m->xp1 + (size_t)s * n;
        int32_t *p2 = m->xp2 + (size_t)s * n;
        int32_t *n1 = m->xn1 + (size_t)s * n;
        int32_t *n2 = m->xn2 + (size_t)s * n;
        int32_t *f = m->f1 + (size_t)s * nf;
        int32_t *x1 = m->xtmp;
        int32_t *x2 = m->xtmp + n;
        for (i = 0; i < n; i++) {
            const int32_t *arow = m->A + (size_t)i * ni;
            const int32_t *rrow = m->R + (size_t)i * n;
            int64_t au = 0, r1, r2;
            int32_t xi1 = 0, xi2;
            for (j = 0; j < ni; j++) {
                au += (int64_t)arow[j] * us[j];
            }
            r1 = au;
            r2 = au;
            for (j = 0; j < n; j++) {
                r1 += (int64_t)rrow[j] * h1[j];
                r2 += (int64_t)rrow[j] * h2[j];
            }
            xi2 = noise_at(m, p0, (uint64_t)s * n + i);
            if (two) {
                xi1 = noise_at(m, p0, off_xi1 + (uint64_t)s * n + i);
            }
            p1[i] = tp_sat32((int64_t)tp_sat32(tp_rsr64(r1, 24)) + xi1);
            p2[i] = tp_sat32((int64_t)tp_sat32(tp_rsr64(r2, 24)) + xi2);
            x1[i] = tp_tanh_q16(p1[i]);
            x2[i] = tp_tanh_q16(p2[i]);
        }
        if (m->D) {
            /* xn* take D x first (the leak reads the old state h*, not xn*). */
            apply_d(m, x1, n1);
            apply_d(m, x2, n2);
            for (i = 0; i < n; i++) {
                /* STATS saturations: hidden values at the clamp (only D gets them there). */
                m->saturations += (n1[i] >= TP_XH_LIMIT || n1[i] <= -TP_XH_LIMIT);
                m->saturations += (n2[i] >= TP_XH_LIMIT || n2[i] <= -TP_XH_LIMIT);
                n1[i] = leaky(m, n1[i], h1[i]);
                n2[i] = leaky(m, n2[i], h2[i]);
            }
        } else {
            for (i = 0; i < n; i++) {
                n1[i] = leaky(m, x1[i], h1[i]);
                n2[i] = leaky(m, x2[i], h2[i]);
            }
        }
        for (i = 0; i < n; i++) {
            f[i] = n1[i];
        }
        if (nf > n) {
            for (j = 0; j < ni; j++) {
                f[n + j] = us[j];
            }
            f[nf - 1] = 65536; /* the bias feature, 1 in Q16 */
        }
        for (o = 0; o < no; o++) {
            const int32_t *brow = m->B + (size_t)o * nf;
            int64_t c1 = 0, c2 = 0, cu = 0;
            int32_t z1 = 0, z2 = 0;
            for (j = 0; j < n; j++) {
                c1 += (int64_t)brow[j] * n1[j];
                c2 += (int64_t)brow[j] * n2[j];
            }
            for (j = n; j < nf; j++) { /* input and bias columns: the same for both */
                cu += (int64_t)brow[j] * f[j];
            }
            c1 += cu;
            c2 += cu;
            if (nz) {
                z2 = noise_at(m, p0, off_z2 + (uint64_t)s * no + o);
                if (two) {
                    z1 = noise_at(m, p0, off_z1 + (uint64_t)s * no + o);
                }
            }
            m->b1[(size_t)s * no + o] = tp_sat32((int64_t)tp_sat32(tp_rsr64(c1, 24)) + z1);
            m->b2[(size_t)s * no + o] = tp_sat32((int64_t)tp_sat32(tp_rsr64(c2, 24)) + z2);
        }
    }
}

/* W (rows x cols) -= rsr(sum_s k_s,i * pre_s,j, 24), each result sat32, where
 * k_s,i = sat(rsr(g_s * d_s,i, 8), 2^33) and d = sat(p2 - p1, 2^23). */
static void apply_update(int32_t *W, uint32_t rows, uint32_t cols, uint32_t nb,
                         const int64_t *g, const int32_t *p1, const int32_t *p2,
                         const int32_t *pre)
{
    int64_t k[TP_MAX_BATCH];
    uint32_t i, j, s;
    for (i = 0; i < rows; i++) {
        int32_t *wrow = W + (size_t)i * cols;
        for (s = 0; s < nb; s++) {
            int64_t d = tp_sat((int64_t)p2[(size_t)s * rows + i] - p1[(size_t)s * rows + i],
                               TP_DIFF_LIMIT);
            k[s] = tp_sat(tp_rsr64(g[s] * d, 8), TP_K_LIMIT);
        }
        if (nb == 1) { /* the common case, as a tight loop */
            const int64_t k0 = k[0];
            for (j = 0; j < cols; j++) {
                wrow[j] = tp_sat32((int64_t)wrow[j] - tp_rsr64(k0 * pre[j], 24));
            }
            continue;
        }
        for (j = 0; j < cols; j++) {
            int64_t acc = 0;
            for (s = 0; s < nb; s++) {
                acc += k[s] * pre[(size_t)s * cols + j];
            }
            wrow[j] = tp_sat32((int64_t)wrow[j] - tp_rsr64(acc, 24));
        }
    }
}

/* NLMS's update of B (section 6.5): c_s,o = sat(div(mu e_s,o 2^22, (min(||f||^2, 2^56) +
 * delta) nb), 2^33) in Q22 with e = sat(b1 - sat(y*, 2^23), 2^23), then
 * B -= rsr(sum_s c f, 14). ystar: the targets as given (saturated here). */
static void nlms_update(tp_model *m, const int32_t *ystar)
{
    const uint32_t nb = m->batch, no = m->n_out, nf = m->n_f;
    int64_t c[TP_MAX_BATCH];
    uint32_t s, o, j;
    for (o = 0; o < no; o++) {
        int32_t *brow = m->B + (size_t)o * nf;
        for (s = 0; s < nb; s++) {
            const int32_t *f = m->f1 + (size_t)s * nf;
            int64_t nrm = 0, e;
            for (j = 0; j < nf; j++) {
                nrm += (int64_t)f[j] * f[j];
            }
            nrm = nrm < TP_NORM_LIMIT ? nrm : TP_NORM_LIMIT;
            e = tp_sat((int64_t)m->b1[(size_t)s * no + o] -
                           tp_sat(ystar[(size_t)s * no + o], TP_IO_LIMIT),
                       TP_DIFF_LIMIT);
            c[s] = tp_sat(tp_div((int64_t)m->hyper.mu_q * e * ((int64_t)1 << 22),
                                 (nrm + TP_NLMS_DELTA) * (int64_t)nb),
                          TP_K_LIMIT);
        }
        for (j = 0; j < nf; j++) {
            int64_t acc = 0;
            for (s = 0; s < nb; s++) {
                acc += c[s] * m->f1[(size_t)s * nf + j];
            }
            brow[j] = tp_sat32((int64_t)brow[j] - tp_rsr64(acc, 14));
        }
    }
}

/* One stream's RLS readout step (section 6.8) on P and B from replica 1's features f and
 * the targets ystar (saturated here); returns the number of resets of P (0 or 1). */
static int rls_stream(tp_model *m, const int32_t *f, const int32_t *ystar)
{
    const uint32_t nf = m->n_f, no = m->n_out;
    const int64_t im1 = m->hyper.im1_q;
    const int64_t lam24 = (int64_t)(((uint64_t)1 << 56) / (((uint64_t)1 << 32) + m->hyper.im1_q));
    int32_t *g = m->rls_g, *k = m->rls_g + nf, *P = m->P;
    int64_t c = lam24;
    int hit = 0;
    uint32_t i, j, o;
    for (i = 0; i < nf; i++) {
        const int32_t *prow = P + (size_t)i * nf;
        int64_t acc = 0;
        for (j = 0; j < nf; j++) {
            acc += tp_rsr64((int64_t)prow[j] * f[j], 16);
        }
        hit |= acc > TP_I32_MAX || acc < -(int64_t)TP_I32_MAX;
        g[i] = tp_sat32(acc);
    }
    for (j = 0; j < nf; j++) {
        c += tp_rsr64((int64_t)f[j] * g[j], 16);
    }
    if (c <= 0) {
        tp_model_reset_p(m);
        return 1;
    }
    for (i = 0; i < nf; i++) {
        /* Saturated (section 6.8): an indefinite P (a positive diagonal does not rule it
         * out) can make c small and k huge; saturated, k e and k g stay within int64. */
        const int64_t kw = tp_div((int64_t)g[i] * ((int64_t)1 << 24), c);
        k[i] = tp_sat32(kw);
        hit |= kw != k[i];
    }
    for (o = 0; o < no; o++) {
        int32_t *brow = m->B + (size_t)o * nf;
        int64_t acc = 0, e;
        for (j = 0; j < nf; j++) {
            acc += (int64_t)brow[j] * f[j];
        }
        e = tp_sat((int64_t)tp_sat32(tp_rsr64(acc, 24)) - tp_sat(ystar[o], TP_IO_LIMIT),
                   TP_DIFF_LIMIT);
        for (j = 0; j < nf; j++) {
            brow[j] = tp_sat32((int64_t)brow[j] - tp_rsr64((int64_t)k[j] * e, 16));
        }
    }
    for (i = 0; i < nf; i++) {
        const int64_t ki = k[i];
        for (j = i; j < nf; j++) {
            int64_t q = tp_sat32((int64_t)P[(size_t)i * nf + j] -
                                 tp_rsr64(ki * g[j], 24));
            int64_t p = q + tp_rsr64(q * im1, 32);
            hit |= p > TP_I32_MAX || p < TP_I32_MIN;
            P[(size_t)i * nf + j] = P[(size_t)j * nf + i] = tp_sat32(p);
        }
    }
    for (i = 0; i < nf; i++) {
        hit |= P[(size_t)i * nf + i] <= 0;
    }
    if (hit) {
        tp_model_reset_p(m);
        return 1;
    }
    return 0;
}

/* The update of A, R, B from per-stream dl (section 6.5); da, db from the last step's xp*,
 * b*, presynaptic u, xh_prev (replica 1's state of the previous step) and f1 (its
 * features). ystar: the targets, for NLMS and RLS (NULL on the reward path: readout anp
 * only). */
static void learn_update(tp_model *m, const int64_t *dl, const int32_t *xh_prev,
                         const int32_t *ystar)
{
    const uint32_t nb = m->batch, n = m->n, ni = m->n_in, no = m->n_out, nf = m->n_f;
    const int exact = m->hyper.readout != TP_READOUT_ANP; /* NLMS or RLS: exact readouts */
    const int64_t lg = tp_hyper_lg(&m->hyper);
    int64_t lgh = tp_hyper_lgh(&m->hyper);
    uint32_t s, i, o, j;
    if (exact) {
        /* The hidden step over 1 + ||B_h||^2 (Q32), B before this step's update: the
         * clamped running sum equals the clamped total (non-negative terms). */
        int64_t nbh = 0;
        for (o = 0; o < no; o++) {
            const int32_t *brow = m->B + (size_t)o * nf;
            for (j = 0; j < n; j++) {
                int64_t b = tp_rsr64(brow[j], 8);
                nbh += b * b;
                nbh = nbh < TP_BH_LIMIT ? nbh : TP_BH_LIMIT;
            }
        }
        lgh = tp_div(lgh * ((int64_t)1 << 32), ((int64_t)1 << 32) + nbh);
    }
    for (s = 0; s < nb; s++) {
        const int32_t *p1 = m->xp1 + (size_t)s * n, *p2 = m->xp2 + (size_t)s * n;
        const int32_t *c1 = m->b1 + (size_t)s * no, *c2 = m->b2 + (size_t)s * no;
        int64_t d = tp_sat(dl[s], TP_DL_LIMIT), nda = 0, ndb = 0, lgo = lg;
        for (i = 0; i < n; i++) {
            int64_t v = tp_sat((int64_t)p2[i] - p1[i], TP_DIFF_LIMIT);
            nda += v * v;
        }
        nda = nda < TP_NORM_LIMIT ? nda : TP_NORM_LIMIT;
        m->gh[s] = tp_sat(tp_div(d * lgh, nda * (int64_t)nb), TP_G_LIMIT);
        if (exact) {
            continue;
        }
        for (o = 0; o < no; o++) {
            int64_t v = tp_sat((int64_t)c2[o] - c1[o], TP_DIFF_LIMIT);
            ndb += v * v;
        }
        ndb = ndb < TP_NORM_LIMIT ? ndb : TP_NORM_LIMIT;
        if (m->hyper.output_cap) {
            const int32_t *x = m->f1 + (size_t)s * nf;
            int64_t nx = 0;
            for (j = 0; j < nf; j++) {
                nx += (int64_t)x[j] * x[j];
            }
            if (nx > 0) {
                int64_t c = tp_div(TP_CAP_NUM, nx);
                lgo = c < lgo ? c : lgo;
            }
        }
        m->go[s] = tp_sat(tp_div(d * lgo, ndb * (int64_t)nb), TP_G_LIMIT);
    }
    apply_update(m->A, n, ni, nb, m->gh, m->xp1, m->xp2, m->u);
    apply_update(m->R, n, n, nb, m->gh, m->xp1, m->xp2, xh_prev);
    if (m->hyper.readout == TP_READOUT_RLS) {
        for (s = 0; s < nb; s++) {
            m->rls_resets +=
                (uint32_t)rls_stream(m, m->f1 + (size_t)s * nf, ystar + (size_t)s * no);
        }
    } else if (m->hyper.readout == TP_READOUT_NLMS) {
        nlms_update(m, ystar);
    } else {
        apply_update(m->B, no, nf, nb, m->go, m->b1, m->b2, m->f1);
    }
}

/* Decorrelation of D (section 6.5) with xh = replica 1's new state. */
static void decorrelate(tp_model *m, const int32_t *xh)
{
    const uint32_t nb = m->batch, n = m->n;
    const int64_t eps_nb = (int64_t)m->hyper.eps_q / nb;
    int32_t *D = m->D, *tmp = m->dec_tmp, *q = m->dec_q;
    uint32_t s, i, j;
    for (s = 0; s < nb; s++) {
        const int32_t *x = xh + (size_t)s * n;
        for (j = 0; j < n; j++) {
            int64_t acc = 0;
            for (i = 0; i < n; i++) {
                acc += (int64_t)x[i] * D[(size_t)i * n + j];
            }
            tmp[(size_t)s * n + j] = (int32_t)tp_sat(tp_rsr64(acc, 24), TP_TMP_LIMIT);
        }
    }
    for (i = 0; i < n; i++) {
        int64_t acc = 0;
        for (s = 0; s < nb; s++) {
            int64_t v = xh[(size_t)s * n + i];
            acc += v * v;
        }
        q[i] = (int32_t)tp_rsr64(acc, 16); /* <= 2^46 / 2^16 */
    }
    for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
            int64_t acc = 0, mm, m24;
            int32_t *dij = &D[(size_t)i * n + j];
            for (s = 0; s < nb; s++) {
                acc += (int64_t)xh[(size_t)s * n + i] * tmp[(size_t)s * n + j];
            }
            mm = acc * 256 - (int64_t)q[i] * *dij;
            m24 = tp_sat(tp_rsr64(mm, 16), TP_M_LIMIT);
            *dij = tp_sat32((int64_t)*dij - tp_rsr64(eps_nb * m24, 32));
        }
    }
}

void tp_step(tp_model *m, const int32_t *u, const int32_t *y, int learn, uint32_t t,
             int32_t *y1, int32_t *y2, tp_step_result *res)
{
    const uint32_t nb = m->batch, n = m->n, ni = m->n_in, no = m->n_out;
    const uint64_t p0 = m->rng_counter;
    const uint32_t nz = m->hyper.readout == TP_READOUT_ANP ? no : 0u;
    uint64_t samples = (uint64_t)nb * (n + nz) * (m->hyper.two_noisy ? 2u : 1u);
    size_t k;
    uint32_t s, o;
    int32_t *swap;
    res->loss1 = res->loss2 = 0;
    res->applied = 0;
    m->pending = 0; /* an unrewarded step's update is dropped */
    for (k = 0; k < (size_t)nb * ni; k++) {
        m->u[k] = (int32_t)tp_sat(u[k], TP_IO_LIMIT);
    }
    if (learn && m->hyper.bound_q > 0 && m->total > 0 &&
        m->total % m->hyper.guard_every == 0) {
        /* The guard (section 6.7) before the step; xtmp is free until the forward pass. */
        m->projections += (uint32_t)tp_guard(m, m->xtmp, m->xtmp + n);
    }
    m->rng_counter = p0 + 2 * samples; /* wraps mod 2^64 like the reference */
    if (m->hyper.resync_every > 0 && m->counter % m->hyper.resync_every == 0) {
        memcpy(m->xh2, m->xh1, (size_t)nb * n * sizeof(int32_t));
    }
    forward_pair(m, p0);
    if (y != NULL) {
        int64_t sum1 = 0, sum2 = 0;
        for (s = 0; s < nb; s++) {
            int64_t e1s = 0, e2s = 0;
            for (o = 0; o < no; o++) {
                size_t idx = (size_t)s * no + o;
                int64_t yv = tp_sat(y[idx], TP_IO_LIMIT);
                int64_t e1 = tp_sat(m->b1[idx] - yv, TP_DIFF_LIMIT);
                int64_t e2 = tp_sat(m->b2[idx] - yv, TP_DIFF_LIMIT);
                e1s += e1 * e1;
                e2s += e2 * e2;
            }
            e1s /= no; /* per-stream losses; non-negative, so truncation is floor */
            e2s /= no;
            sum1 += e1s;
            sum2 += e2s;
            m->dl[s] = e2s - e1s;
        }
        res->loss1 = sum1 / nb;
        res->loss2 = sum2 / nb;
        if (learn) {
            learn_update(m, m->dl, m->xh1, y);
            res->applied = 1;
        }
    } else if (learn && m->hyper.readout == TP_READOUT_ANP) {
        m->pending = 1;
        m->pending_t = t;
    }
    /* The new states become current; xn1 keeps xh1(t-1) for a pending update. */
    swap = m->xh1, m->xh1 = m->xn1, m->xn1 = swap;
    swap = m->xh2, m->xh2 = m->xn2, m->xn2 = swap;
    m->counter++;
    m->total++;
    if (res->applied && m->hyper.decorrelation) {
        decorrelate(m, m->xh1);
    }
    if (y1 != NULL) {
        memcpy(y1, m->b1, (size_t)nb * no * sizeof(int32_t));
    }
    if (y2 != NULL) {
        memcpy(y2, m->b2, (size_t)nb * no * sizeof(int32_t));
    }
}

int tp_reward(tp_model *m, uint32_t t, const int64_t *dl)
{
    if (!m->pending || m->pending_t != t) {
        return 0;
    }
    m->pending = 0;
    learn_update(m, dl, m->xn1, NULL);
    if (m->hyper.decorrelation) {
        decorrelate(m, m->xh1);
    }
    return 1;
}

int tp_predict(tp_model *m, const int32_t *u, uint32_t batch, int reset, int32_t *y)
{
    const uint32_t n = m->n, ni = m->n_in, no = m->n_out, nf = m->n_f;
    uint32_t s, i, j, o;
    if (batch < 1 || batch > m->eval_cap) {
        return TP_ERR_ARGS;
    }
    if (reset || batch != m->eval_batch) {
        memset(m->xh_eval, 0, (size_t)m->eval_cap * n * sizeof(int32_t));
        m->eval_batch = batch;
    }
    for (s = 0; s < batch; s++) {
        int32_t *xh = m->xh_eval + (size_t)s * n;
        const int32_t *us = u + (size_t)s * ni;
        int32_t *x = m->xtmp, *v = m->xtmp + n;
        for (i = 0; i < n; i++) {
            const int32_t *arow = m->A + (size_t)i * ni;
            const int32_t *rrow = m->R + (size_t)i * n;
            int64_t acc = 0;
            for (j = 0; j < ni; j++) {
                acc += (int64_t)arow[j] * tp_sat(us[j], TP_IO_LIMIT);
            }
            for (j = 0; j < n; j++) {
                acc += (int64_t)rrow[j] * xh[j];
            }
            x[i] = tp_tanh_q16(tp_sat32(tp_rsr64(acc, 24)));
        }
        if (m->D) {
            apply_d(m, x, v);
        } else {
            v = x;
        }
        for (i = 0; i < n; i++) {
            xh[i] = leaky(m, v[i], xh[i]);
        }
        for (o = 0; o < no; o++) {
            const int32_t *brow = m->B + (size_t)o * nf;
            int64_t acc = 0;
            for (j = 0; j < n; j++) {
                acc += (int64_t)brow[j] * xh[j];
            }
            if (nf > n) {
                for (j = 0; j < ni; j++) {
                    acc += (int64_t)brow[n + j] * tp_sat(us[j], TP_IO_LIMIT);
                }
                acc += (int64_t)brow[nf - 1] * 65536;
            }
            y[(size_t)s * no + o] = tp_sat32(tp_rsr64(acc, 24));
        }
    }
    return TP_OK;
}
