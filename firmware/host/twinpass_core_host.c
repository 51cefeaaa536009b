/* twinpass_core_host: the host build's command-line harness around the portable core.
 *
 *   twinpass_core_host run MODEL STEPS OUT   run a step stream ("-": stdin / stdout)
 *   twinpass_core_host check MODEL           validate an image: prints "ok", the shape and
 *                                            the RAM the model needs, or the refusal
 *                                            (exit 0 ok, 3 refused, 2 usage or I/O)
 *   twinpass_core_host selftest              tanh table CRC32 and pinned noise words
 *   twinpass_core_host bench MODEL STEPS [LEARN [SEED]]
 *                                            time STEPS steps of a built-in input stream
 *
 * Binary formats (little-endian) are documented in firmware/README.md. The harness may
 * allocate; the core does not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard.h"
#include "image.h"
#include "prng.h"
#include "tanh_table.h"
#include "twinpass_core.h"

#define OP_STEP 1u
#define OP_REWARD 2u
#define OP_PREDICT 3u
#define OP_RESET_STATE 4u
#define F_LEARN 0x100u
#define F_TARGET 0x200u
#define F_RESET 0x400u

static int fail(const char *msg)
{
    fprintf(stderr, "twinpass_core_host: %s\n", msg);
    return 2;
}

static uint8_t *read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0, got;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        return NULL;
    }
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    uint8_t *data;
    if (f == NULL) {
        return NULL;
    }
    data = read_all(f, len);
    if (f != stdin) {
        fclose(f);
    }
    return data;
}

/* -- little-endian reading from a byte buffer ------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
    int short_read;
} reader;

static uint32_t get_u32(reader *r)
{
    uint32_t v;
    if (r->end - r->p < 4) {
        r->short_read = 1;
        r->p = r->end;
        return 0;
    }
    v = (uint32_t)r->p[0] | ((uint32_t)r->p[1] << 8) | ((uint32_t)r->p[2] << 16) |
        ((uint32_t)r->p[3] << 24);
    r->p += 4;
    return v;
}

static uint32_t get_u16(reader *r)
{
    uint32_t v;
    if (r->end - r->p < 2) {
        r->short_read = 1;
        r->p = r->end;
        return 0;
    }
    v = (uint32_t)r->p[0] | ((uint32_t)r->p[1] << 8);
    r->p += 2;
    return v;
}

static int32_t as_i32(uint32_t v)
{
    return v <= 0x7FFFFFFFu ? (int32_t)v : -(int32_t)(~v) - 1;
}

static int64_t as_i64(uint64_t v)
{
    return v <= 0x7FFFFFFFFFFFFFFFu ? (int64_t)v : -(int64_t)(~v) - 1;
}

static void get_i32s(reader *r, int32_t *dst, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) {
        dst[k] = as_i32(get_u32(r));
    }
}

static int64_t get_i64(reader *r)
{
    uint64_t lo = get_u32(r);
    uint64_t hi = get_u32(r);
    return as_i64(lo | (hi << 32));
}

/* -- little-endian writing ------------------------------------------------------------------ */

static void put_u32(FILE *f, uint32_t v)
{
    uint8_t b[4];
    b[0] = (uint8_t)(v & 0xFFu);
    b[1] = (uint8_t)((v >> 8) & 0xFFu);
    b[2] = (uint8_t)((v >> 16) & 0xFFu);
    b[3] = (uint8_t)((v >> 24) & 0xFFu);
    fwrite(b, 1, 4, f);
}

static void put_u64(FILE *f, uint64_t v)
{
    put_u32(f, (uint32_t)(v & 0xFFFFFFFFu));
    put_u32(f, (uint32_t)(v >> 32));
}

static void put_i32s(FILE *f, const int32_t *v, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++) {
        put_u32(f, (uint32_t)v[k]);
    }
}

/* -- the model ---------------------------------------------------------------------------- */

typedef struct {
    uint8_t *image_bytes;
    tp_image img;
    tp_model m;
    int32_t *mem;
} host_model;

static int open_model(host_model *h, const char *path, uint32_t batch, uint32_t eval_cap,
                      uint32_t seed)
{
    size_t len = 0, words;
    tp_image_err err;
    h->mem = NULL;
    h->image_bytes = read_file(path, &len);
    if (h->image_bytes == NULL) {
        return fail("cannot read the model image");
    }
    err = tp_image_parse(h->image_bytes, len, &h->img);
    if (err != TP_IMAGE_OK) {
        fprintf(stderr, "twinpass_core_host: model image refused: %s\n",
                tp_image_strerror(err));
        return 3;
    }
    words = tp_image_model_words(&h->img, batch, eval_cap);
    if (words == 0) {
        return fail("batch or evaluation batch out of range (1..64)");
    }
    h->mem = malloc(words * sizeof(int32_t));
    if (h->mem == NULL) {
        return fail("out of memory");
    }
    if (tp_model_load_image(&h->m, &h->img, batch, eval_cap, seed, h->mem, words) != TP_OK) {
        return fail("the model does not load");
    }
    return 0;
}

static void close_model(host_model *h)
{
    free(h->mem);
    free(h->image_bytes);
}

static int cmd_run(const char *model_path, const char *steps_path, const char *out_path)
{
    size_t len = 0;
    uint8_t *stream = read_file(steps_path, &len);
    reader r;
    uint32_t batch, seed, eval_cap, t = 0;
    host_model h;
    FILE *out;
    int32_t *x = NULL, *y = NULL, *y1 = NULL, *y2 = NULL, *ye = NULL, *xe = NULL;
    int64_t dl[TP_MAX_BATCH];
    uint8_t *img_out = NULL;
    size_t img_len;
    int rc = 0;
    if (stream == NULL) {
        return fail("cannot read the step stream");
    }
    r.p = stream;
    r.end = stream + len;
    r.short_read = 0;
    if (len < 16 || memcmp(stream, "TPSS", 4) != 0) {
        free(stream);
        return fail("the step stream lacks its TPSS header");
    }
    r.p += 4;
    if (get_u16(&r) != 1) {
        free(stream);
        return fail("step stream version is not 1");
    }
    batch = get_u16(&r);
    seed = get_u32(&r);
    eval_cap = get_u16(&r);
    (void)get_u16(&r);
    rc = open_model(&h, model_path, batch, eval_cap, seed);
    if (rc != 0) {
        free(stream);
        close_model(&h);
        return rc;
    }
    out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (out == NULL) {
        free(stream);
        close_model(&h);
        return fail("cannot open the output");
    }
    x = malloc(sizeof(int32_t) * (size_t)TP_MAX_BATCH * h.m.n_in);
    y = malloc(sizeof(int32_t) * (size_t)batch * h.m.n_out);
    y1 = malloc(sizeof(int32_t) * (size_t)batch * h.m.n_out);
    y2 = malloc(sizeof(int32_t) * (size_t)batch * h.m.n_out);
    ye = malloc(sizeof(int32_t) * (size_t)eval_cap * h.m.n_out);
    xe = x;
    if (x == NULL || y == NULL || y1 == NULL || y2 == NULL || ye == NULL) {
        rc = fail("out of memory");
        goto done;
    }
    while (r.p < r.end && !r.short_read) {
        uint32_t op = get_u32(&r);
        uint32_t kind = op & 0xFFu;
        if (kind == OP_STEP) {
            tp_step_result res;
            int has_y = (op & F_TARGET) != 0;
            get_i32s(&r, x, (size_t)batch * h.m.n_in);
            if (has_y) {
                get_i32s(&r, y, (size_t)batch * h.m.n_out);
            }
            if (r.short_read) {
                break;
            }
            tp_step(&h.m, x, has_y ? y : NULL, (op & F_LEARN) != 0, t, y1, y2, &res);
            put_i32s(out, y1, (size_t)batch * h.m.n_out);
            put_i32s(out, y2, (size_t)batch * h.m.n_out);
            put_u64(out, (uint64_t)res.loss1);
            put_u64(out, (uint64_t)res.loss2);
            put_u32(out, (uint32_t)res.applied);
            put_u32(out, t);
            t++;
        } else if (kind == OP_REWARD) {
            uint32_t rt = get_u32(&r), s;
            for (s = 0; s < batch; s++) {
                dl[s] = get_i64(&r);
            }
            if (r.short_read) {
                break;
            }
            put_u32(out, (uint32_t)tp_reward(&h.m, rt, dl));
        } else if (kind == OP_PREDICT) {
            uint32_t eb = get_u32(&r);
            if (eb < 1 || eb > eval_cap) {
                rc = fail("PREDICT batch exceeds the stream's evaluation batch");
                goto done;
            }
            get_i32s(&r, xe, (size_t)eb * h.m.n_in);
            if (r.short_read) {
                break;
            }
            tp_predict(&h.m, xe, eb, (op & F_RESET) != 0, ye);
            put_i32s(out, ye, (size_t)eb * h.m.n_out);
        } else if (kind == OP_RESET_STATE) {
            tp_model_reset_state(&h.m);
        } else {
            rc = fail("unknown record in the step stream");
            goto done;
        }
    }
    if (r.short_read) {
        rc = fail("the step stream ends inside a record");
        goto done;
    }
    img_len = tp_image_live_size(&h.m);
    img_out = malloc(img_len);
    if (img_out == NULL || tp_image_write(&h.m, img_out, img_len) != img_len) {
        rc = fail("cannot write the final image");
        goto done;
    }
    fwrite("TPFS", 1, 4, out);
    put_u32(out, (uint32_t)img_len);
    fwrite(img_out, 1, img_len, out);
    put_u64(out, h.m.counter);
    put_u64(out, h.m.rng_counter);
    put_u32(out, h.m.saturations);
    put_u32(out, h.m.eval_batch);
    put_i32s(out, h.m.xh1, (size_t)batch * h.m.n);
    put_i32s(out, h.m.xh2, (size_t)batch * h.m.n);
    put_i32s(out, h.m.xh_eval, (size_t)h.m.eval_batch * h.m.n);
    put_u64(out, h.m.total);
    put_u32(out, h.m.projections);
    put_i32s(out, h.m.gv, h.m.n);
    put_u32(out, h.m.rls_resets);
    if (h.m.P != NULL) { /* readout rls: P (F x F) */
        put_i32s(out, h.m.P, (size_t)h.m.n_f * h.m.n_f);
    }
done:
    if (out != stdout) {
        if (fclose(out) != 0 && rc == 0) {
            rc = fail("cannot write the output");
        }
    } else if (fflush(out) != 0 && rc == 0) {
        rc = fail("cannot write the output");
    }
    free(img_out);
    free(x);
    free(y);
    free(y1);
    free(y2);
    free(ye);
    free(stream);
    close_model(&h);
    return rc;
}

static int cmd_check(const char *model_path)
{
    size_t len = 0;
    uint8_t *data = read_file(model_path, &len);
    tp_image img;
    tp_image_err err;
    if (data == NULL) {
        return fail("cannot read the model image");
    }
    err = tp_image_parse(data, len, &img);
    free(data);
    printf("%s\n", tp_image_strerror(err));
    if (err == TP_IMAGE_OK) {
        printf("shape %u %u %u flags 0x%02x\n", (unsigned)img.n_in, (unsigned)img.n,
               (unsigned)img.n_out, (unsigned)img.flags);
        printf("ram_bytes batch 1 eval 1: %lu\n",
               (unsigned long)(4 * tp_image_model_words(&img, 1, 1)));
        printf("ram_bytes batch 64 eval 64: %lu\n",
               (unsigned long)(4 * tp_image_model_words(&img, 64, 64)));
        return 0;
    }
    return 3;
}

static int cmd_selftest(void)
{
    uint32_t crc = tp_tanh_table_crc32(), k, key = tp_prng_key(0);
    printf("tanh_crc32 0x%08lx\n", (unsigned long)crc);
    printf("words seed 0:");
    for (k = 0; k < 4; k++) {
        printf(" %lu", (unsigned long)tp_prng_word(key, k));
    }
    printf("\nword seed 7 p (5 << 32) + 3: %lu\n",
           (unsigned long)tp_prng_word(tp_prng_key(7), ((uint64_t)5 << 32) + 3));
    printf("samples seed 3 sigma 65536:");
    for (k = 0; k < 4; k++) {
        printf(" %ld", (long)tp_prng_sample(tp_prng_key(3), 2 * (uint64_t)k, 65536));
    }
    printf("\n");
    printf("exp2_crc32 0x%08lx\n", (unsigned long)tp_exp2_table_crc32());
    printf("log2_q16 of 3, 2^50 - 1: %ld %ld\n", (long)tp_log2_q16(3),
           (long)tp_log2_q16(((uint64_t)1 << 50) - 1));
    printf("exp2_neg_q30 of 0.5, 1.75, 40: %ld %ld %ld\n", (long)tp_exp2_neg_q30(32768),
           (long)tp_exp2_neg_q30(114688), (long)tp_exp2_neg_q30((int64_t)40 << 16));
    return crc == TP_TANH_TABLE_CRC32 && tp_exp2_table_crc32() == TP_EXP2_TABLE_CRC32 ? 0 : 1;
}

/* A deterministic input stream for timing: a triangle wave in, its shifted copy as target. */
static int cmd_bench(const char *model_path, long steps, int learn, uint32_t seed)
{
    host_model h;
    int32_t x[TP_MAX_IO], y[TP_MAX_IO], y1[TP_MAX_IO];
    tp_step_result res;
    long k;
    uint32_t j;
    int64_t check = 0;
    clock_t t0, t1;
    double secs;
    int rc = open_model(&h, model_path, 1, 1, seed);
    if (rc != 0) {
        close_model(&h);
        return rc;
    }
    t0 = clock();
    for (k = 0; k < steps; k++) {
        int32_t tri = (int32_t)((k * 1031) % 131072) - 65536; /* [-1, 1) in Q16 */
        for (j = 0; j < h.m.n_in; j++) {
            x[j] = tri;
        }
        for (j = 0; j < h.m.n_out; j++) {
            y[j] = tri / 2;
        }
        tp_step(&h.m, x, y, learn, (uint32_t)k, y1, NULL, &res);
        check += y1[0];
    }
    t1 = clock();
    secs = (double)(t1 - t0) / CLOCKS_PER_SEC;
    printf("steps %ld seconds %.6f steps_per_s %.1f checksum %ld\n", steps, secs,
           secs > 0 ? (double)steps / secs : 0.0, (long)check);
    close_model(&h);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "run") == 0) {
        return cmd_run(argv[2], argv[3], argv[4]);
    }
    if (argc == 3 && strcmp(argv[1], "check") == 0) {
        return cmd_check(argv[2]);
    }
    if (argc == 2 && strcmp(argv[1], "selftest") == 0) {
        return cmd_selftest();
    }
    if (argc >= 4 && argc <= 6 && strcmp(argv[1], "bench") == 0) {
        return cmd_bench(argv[2], strtol(argv[3], NULL, 10),
                         argc > 4 ? atoi(argv[4]) != 0 : 1,
                         argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 10) : 0u);
    }
    fprintf(stderr,
            "usage: twinpass_core_host run MODEL STEPS OUT | check MODEL | selftest | "
            "bench MODEL STEPS [LEARN [SEED]]\n");
    return 2;
}
