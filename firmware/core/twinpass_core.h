/* twinpass fixed-point ANP core: the on-device network and learner of docs/protocol.md
 * section 6, bit-exact with the Python simulator (twinpass.firmware_sim.fixed_point).
 *
 * Portable C99, written once for every target: no heap, no floating point, no I/O. The
 * model lives in one caller-provided int32 buffer of tp_model_words() words (weights and
 * the guard's vector, both replicas' states, the evaluation state and the step's scratch);
 * its sizes come from the model image header (image.h).
 *
 * Formats: activities (u, y*, pre-activations, hidden states, outputs) Q16.16 int32;
 * weights A (N x n_in), R (N x N), B (n_out x F, F = N + n_in + 1 when the readout sees
 * [xh, u, 1], else N), D (N x N, only when stored) Q7.24 int32, row-major; losses Q32
 * int64. Batch streams are laid out [stream][unit]. */
#ifndef TWINPASS_CORE_H
#define TWINPASS_CORE_H

#include <stddef.h>
#include <stdint.h>

#define TP_MAX_HIDDEN 1024u
#define TP_MAX_IO 256u /* n_in, n_out */
#define TP_MAX_BATCH 64u

/* Saturation limits (section 6.1). */
#define TP_IO_LIMIT ((int64_t)1 << 23)   /* |u|, |y*| <= 128 */
#define TP_XH_LIMIT ((int64_t)1 << 20)   /* |xh| <= 16 when D is stored */
#define TP_DIFF_LIMIT ((int64_t)1 << 23) /* |da|, |db|, |e| */
#define TP_DL_LIMIT ((int64_t)1 << 38)
#define TP_NORM_LIMIT ((int64_t)1 << 56)
#define TP_G_LIMIT ((int64_t)1 << 38)
#define TP_K_LIMIT ((int64_t)1 << 33)
#define TP_LG_LIMIT ((int64_t)1 << 24)
#define TP_TMP_LIMIT ((int64_t)1 << 24)
#define TP_M_LIMIT ((int64_t)1 << 30)
#define TP_CAP_NUM ((int64_t)1 << 55)
#define TP_BH_LIMIT ((int64_t)1 << 61)  /* ||B_h||^2 (Q32), the exact readout's normaliser */
#define TP_NLMS_DELTA 4295              /* NLMS's delta = 1e-6 in Q32 */
#define TP_GV_LIMIT ((int32_t)1 << 20)  /* the guard's vector (section 6.7) */

/* Readouts (hyper.readout): the rule's own estimate, normalised LMS, RLS (section 6.8). */
#define TP_READOUT_ANP 0u
#define TP_READOUT_NLMS 1u
#define TP_READOUT_RLS 2u
#define TP_IM1_MAX 0x7FFFFFFFu              /* im1_q: lambda > 2/3 */
#define TP_P0_MAX ((uint32_t)100 << 24)     /* p0_q: P0 <= 100 (P in Q7.24) */

/* Return codes. */
#define TP_OK 0
#define TP_ERR_ARGS (-1)  /* a size or value out of range */
#define TP_ERR_SPACE (-2) /* the caller's buffer is too small */

/* The learning rule's fixed-point hyperparameters (section 6.6). */
typedef struct {
    uint32_t lr_q;         /* Q32, >= 1: the readout's own step (readout anp) */
    uint32_t sigma_q;      /* Q16, <= 65536 */
    uint32_t eps_q;        /* Q32 */
    uint32_t gain_q;       /* Q16 */
    uint32_t resync_every; /* <= 65535; 0: never */
    uint8_t output_cap;
    uint8_t two_noisy;
    uint8_t decorrelation;
    uint8_t readout;        /* TP_READOUT_ANP, _NLMS or _RLS */
    uint8_t readout_inputs; /* the readout sees [xh, u, 1] */
    uint32_t lrh_q;         /* Q32, >= 1: the hidden layer's step */
    uint32_t mu_q;          /* Q16, 1..131071: NLMS's step */
    uint32_t leak_q;        /* Q16, 1..65536: the units' leak (65536: none) */
    uint32_t bound_q;       /* Q16: the guard's bound on R's spectral radius (0: no guard) */
    uint32_t guard_every;   /* >= 1: steps between the guard's checks */
    uint32_t im1_q;         /* Q32, 0..2^31 - 1: RLS's forgetting as 1/lambda - 1 */
    uint32_t p0_q;          /* Q24, 1..100 * 2^24 with readout rls (else 0 allowed): P0 */
} tp_hyper;

/* 1 if every field is in its range (section 6.6), else 0. */
int tp_hyper_valid(const tp_hyper *h);

typedef struct {
    uint32_t n_in, n, n_out;
    uint32_t n_f;        /* F: the readout's features, N + n_in + 1 or N */
    uint32_t batch;      /* learning streams */
    uint32_t eval_cap;   /* largest PREDICT batch the buffer holds */
    uint32_t eval_batch; /* current PREDICT batch (1 after init, like the simulator) */
    int d_stored;        /* D is stored (image flag, or decorrelation learns it) */
    tp_hyper hyper;

    /* Views into the caller's buffer. */
    int32_t *A, *R, *B, *D;     /* D NULL: identity */
    int32_t *gv;                /* the guard's warm-start vector (N), kept with the weights */
    int32_t *P;                 /* RLS's P (F x F, Q24), kept with the weights; else NULL */
    int32_t *rls_g;             /* RLS's g (F), then k (F, saturated to int32; section
                                 * 6.8), or NULL */
    int32_t *xh1, *xh2;         /* replicas' hidden states (batch x N) */
    int32_t *xn1, *xn2;         /* next states; after a step xn1 holds xh1(t-1) */
    int32_t *xp1, *xp2;         /* noisy pre-activations of the last step */
    int32_t *u;                 /* the last step's saturated inputs (batch x n_in) */
    int32_t *b1, *b2;           /* the last step's outputs (batch x n_out) */
    int32_t *f1;                /* replica 1's features of the last step (batch x F) */
    int32_t *xtmp;              /* 2 x N: tanh values before D; PREDICT's scratch */
    int32_t *xh_eval;           /* evaluation state (eval_cap x N) */
    int32_t *dec_tmp, *dec_q;   /* decorrelation scratch (batch x N, N) or NULL */

    uint64_t counter;     /* steps since the last state reset (drives resync) */
    uint32_t seed;        /* noise seed */
    uint32_t key;         /* tp_prng_key(seed) */
    uint64_t rng_counter; /* index of the next noise word */
    uint32_t saturations; /* forward-pass clamps of xh (STATS) */
    uint64_t total;       /* steps over the model's life (drives the guard) */
    uint32_t projections; /* the guard's scalings of R (STATS guard_projections) */
    uint32_t rls_resets;  /* resets of RLS's P (STATS rls_resets) */
    int pending;          /* reward variant: an update waits for REWARD */
    uint32_t pending_t;

    int64_t dl[TP_MAX_BATCH];                     /* per-stream l2 - l1 of the last step */
    int64_t gh[TP_MAX_BATCH], go[TP_MAX_BATCH];   /* update scratch */
} tp_model;

typedef struct {
    int64_t loss1, loss2; /* mean over outputs and streams, Q32 (0 without targets) */
    int applied;          /* the ANP update was applied */
} tp_step_result;

/* int32 words a model needs (0 if the sizes are out of range); rls: the RLS readout's P
 * (F x F) and its scratch (2 x F). */
size_t tp_model_words(uint32_t n_in, uint32_t n, uint32_t n_out, uint32_t batch,
                      uint32_t eval_cap, int d_stored, int readout_inputs, int rls);

/* Lay a model out over mem (words int32): weights zero, D the identity when stored
 * (d_stored, forced on by hyper->decorrelation), RLS's P p0_q I (readout rls), the
 * guard's vector its initial pattern,
 * states zero, noise counter and life count 0. */
int tp_model_init(tp_model *m, uint32_t n_in, uint32_t n, uint32_t n_out, uint32_t batch,
                  uint32_t eval_cap, int d_stored, const tp_hyper *hyper, uint32_t seed,
                  int32_t *mem, size_t words);

/* Lay the states out anew for another batch or eval_cap (or with D stored from now on,
 * as the identity), keeping the weights where they are in mem (which must be the buffer
 * the model lives in): states and scratch zeroed, resync counter 0, a pending update
 * dropped; the noise counter and seed kept. TP_ERR_SPACE if mem is not the model's buffer
 * or too small, TP_ERR_ARGS for sizes out of range. */
int tp_model_relayout(tp_model *m, uint32_t batch, uint32_t eval_cap, int d_stored,
                      int32_t *mem, size_t words);

/* Store D from now on (decorrelation switched on), as the identity, keeping the weights,
 * the states and the counters: the states move up by one N x N block in mem (the model's
 * buffer), the evaluation state's capacity becomes eval_cap. No-op if D is stored. */
int tp_model_store_d(tp_model *m, uint32_t eval_cap, int32_t *mem, size_t words);

/* Zero both replicas, the evaluation state and the resync counter; drop a pending update.
 * Weights, RLS's P, the noise counter and the guard's count and vector are kept (RESET
 * state). */
void tp_model_reset_state(tp_model *m);

/* RLS's P := p0_q I (section 6.8; no-op without the RLS readout). */
void tp_model_reset_p(tp_model *m);

/* New seed, noise counter 0. */
void tp_model_reseed(tp_model *m, uint32_t seed);

/* lr * gain in Q24: min(rsr(lr_q * gain_q, 24), 2^24); the same of lrh_q for the hidden
 * layer. */
int64_t tp_hyper_lg(const tp_hyper *h);
int64_t tp_hyper_lgh(const tp_hyper *h);

/* One online step of both replicas (section 6.4) for every stream: u (batch x n_in),
 * y (batch x n_out) targets or NULL (reward variant). With learn, the guard (6.7) runs
 * first when its count is due. With a target and learn, the update (6.5) is applied;
 * without a target and with learn, it is held pending for tp_reward with the same t
 * (readout anp only: NLMS and RLS need the target). Noise is drawn either way. y1, y2 (batch x
 * n_out, may be NULL) receive replica 1's (the prediction) and replica 2's outputs. */
void tp_step(tp_model *m, const int32_t *u, const int32_t *y, int learn, uint32_t t,
             int32_t *y1, int32_t *y2, tp_step_result *res);

/* Apply the pending update with the host's dl (Q32, one per stream). Returns 1 if t
 * matched the pending step (applied), else 0 (ignored). */
int tp_reward(tp_model *m, uint32_t t, const int64_t *dl);

/* One clean forward pass of replica 1 on the evaluation state (no noise, no learning):
 * u (batch x n_in) -> y (batch x n_out). The state is zeroed first when reset is set or
 * batch differs from the previous call's. TP_ERR_ARGS if batch > eval_cap. */
int tp_predict(tp_model *m, const int32_t *u, uint32_t batch, int reset, int32_t *y);

#endif
