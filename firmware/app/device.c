/* The protocol device: request handling of docs/protocol.md sections 2-4 (see device.h).
 *
 * Shape of the code: one handler per message writes its reply map straight into the
 * frame scratch buffer (msgpack.h's writer) or sets `err` and returns -1; handle() wraps
 * the result into a frame, keeps it in the reply cache and sends it. Every check mirrors
 * the Python simulator (twinpass/firmware_sim/firmware.py) in the same order, so a host
 * sees the same replies and error codes from both; messages say the same things in
 * shorter words. No heap: all buffers are static and sized by TP_MAX_FRAME. */
#include "device.h"

#include <string.h>

#include "board.h"
#include "cobs.h"
#include "crc32.h"
#include "frame.h"
#include "guard.h"
#include "image.h"
#include "msgpack.h"
#include "sha256.h"
#include "storage.h"
#include "twinpass_core.h"

#define PROTO_MAJOR 1u
#define PROTO_MINOR 4u
#define REPLY 0x80u
#define ENCODED_MAX (TP_COBS_MAX_ENCODED(TP_MAX_FRAME) + 1u)
/* int32 values of one step's inputs, targets and both outputs (or a state's three
 * arrays): 768 values, 1.5 frames of int32. */
#define IO_MAX (3u * TP_MAX_FRAME / 8u)
#define ARENA_WORDS (TP_ARENA_BYTES / 4u)
#define U32_MAX 0xFFFFFFFFu
#define U64_MAX 0xFFFFFFFFFFFFFFFFu

enum msg_type {
    MT_HELLO = 0x01, MT_PING = 0x02, MT_DEPLOY_BEGIN = 0x03, MT_DEPLOY_CHUNK = 0x04,
    MT_DEPLOY_COMMIT = 0x05, MT_DEPLOY_CONFIRM = 0x06, MT_DEPLOY_ABORT = 0x07, MT_STEP = 0x08,
    MT_REWARD = 0x09, MT_SET_MODE = 0x0A, MT_GET_MODEL = 0x0B, MT_SAVE_MODEL = 0x0C,
    MT_RESET = 0x0D, MT_STATS = 0x0E, MT_STATE_GET = 0x0F, MT_STATE_SET = 0x10,
    MT_PREDICT = 0x11
};

enum err_code {
    E_BAD_FRAME = 1, E_BAD_VERSION, E_UNKNOWN_TYPE, E_BAD_ARGS, E_TOO_LARGE, E_BUSY,
    E_NO_MODEL, E_BAD_STATE, E_HASH_MISMATCH, E_FLASH_FAIL
};

static const char *const ERR_NAMES[] = {
    "", "BAD_FRAME", "BAD_VERSION", "UNKNOWN_TYPE", "BAD_ARGS", "TOO_LARGE", "BUSY",
    "NO_MODEL", "BAD_STATE", "HASH_MISMATCH", "FLASH_FAIL"
};

/* -- state ------------------------------------------------------------------------------ */

static int32_t arena[ARENA_WORDS];
static tp_model model;
static int have_model;
static tp_meta meta;
static uint8_t epoch;

static struct {
    int active;
    uint32_t len, slot, received;
    uint8_t sha[32];
    uint32_t shape[3];
} upload;

static struct {
    uint64_t steps, updates, rewards, missed_rewards, duplicates, bad_version;
    uint64_t rx_frames, tx_frames, step_us_total;
} counters;

static int learn_mode = 1;
static uint32_t batch_mode = 1, seed_mode = 0;
static int ordered;      /* STEP order is checked (the session's HELLO announced >= 1.1) */
static uint32_t t_next;  /* the next step's number (section 2, STEP order) */

/* The live image's payload CRC, valid while `updates` has not moved (GET_MODEL chunks). */
static struct {
    int valid;
    uint64_t updates;
    uint32_t crc;
} live;

/* Reply cache: the encoded bytes of the last TP_RX_WINDOW replies, oldest evicted. */
static struct {
    int used;
    uint16_t seq;
    uint8_t type;
    uint32_t key, age;
    size_t len;
    uint8_t data[ENCODED_MAX];
} cache[TP_RX_WINDOW];
static uint32_t cache_clock;

static uint8_t rx_buf[ENCODED_MAX + 1];
static tp_frame_reader reader;
static uint8_t scratch[TP_MAX_FRAME];
static uint8_t tx_buf[ENCODED_MAX];
static int32_t io[IO_MAX];

/* An error reply in the making: code, message, at most one extra key. */
static struct {
    int code;
    int cache; /* kept in the reply cache (everything but an out-of-order STEP) */
    char msg[200];
    size_t len;
    const char *extra_key;
    uint64_t extra;
} err;

/* -- small helpers ------------------------------------------------------------------------ */

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

static void wr64(uint8_t *p, uint64_t v)
{
    wr32(p, (uint32_t)(v & U32_MAX));
    wr32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    int k;
    for (k = 7; k >= 0; k--) {
        v = (v << 8) | p[k];
    }
    return v;
}

/* Two's complement from a bit pattern without an implementation-defined cast. */
static int32_t as_i32(uint32_t v)
{
    return v <= 0x7FFFFFFFu ? (int32_t)v : -(int32_t)(~v) - 1;
}

static int64_t as_i64(uint64_t v)
{
    return v <= 0x7FFFFFFFFFFFFFFFu ? (int64_t)v : -(int64_t)(~v) - 1;
}

static void load_i32(const uint8_t *p, size_t n, int32_t *out)
{
    size_t k;
    for (k = 0; k < n; k++, p += 4) {
        out[k] = as_i32((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
                        ((uint32_t)p[3] << 24));
    }
}

static void store_i32(uint8_t *p, const int32_t *v, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++, p += 4) {
        wr32(p, (uint32_t)v[k]); /* conversion to unsigned is modulo 2^32 */
    }
}

/* -- error messages: a tiny formatter (no stdio on the device) ----------------------------- */

static void msg_s(const char *s)
{
    while (*s != '\0' && err.len + 1 < sizeof err.msg) {
        err.msg[err.len++] = *s++;
    }
    err.msg[err.len] = '\0';
}

static void msg_u(uint64_t v)
{
    char digits[21];
    int k = 20;
    digits[k] = '\0';
    do {
        digits[--k] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0);
    msg_s(digits + k);
}

static void msg_i(int64_t v)
{
    if (v < 0) {
        msg_s("-");
        msg_u(~(uint64_t)v + 1u);
    } else {
        msg_u((uint64_t)v);
    }
}

/* Start an error reply; the caller appends to the message and returns -1. */
static int refuse(int code, const char *text)
{
    err.code = code;
    err.cache = 1;
    err.len = 0;
    err.msg[0] = '\0';
    err.extra_key = NULL;
    msg_s(text);
    return -1;
}

static int refuse_extra(int code, const char *text, const char *key, uint64_t value)
{
    refuse(code, text);
    err.extra_key = key;
    err.extra = value;
    return -1;
}

/* -- payload accessors (the simulator's _int, _bool, _bin) -------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len;
} payload_t;

static int find(const payload_t *pl, const char *key, tp_mp_obj *o)
{
    return tp_mp_find(pl->p, pl->len, key, o, NULL);
}

/* An integer in [lo, hi]; absent: dflt if has_default, else BAD_ARGS. 0 or -1. */
static int get_uint(const payload_t *pl, const char *key, uint64_t lo, uint64_t hi,
                    int has_default, uint64_t dflt, uint64_t *out)
{
    tp_mp_obj o;
    uint64_t v;
    if (!find(pl, key, &o)) {
        if (has_default) {
            *out = dflt;
            return 0;
        }
        refuse(E_BAD_ARGS, "missing key '");
        msg_s(key);
        msg_s("'");
        return -1;
    }
    if (!((o.type == TP_MP_INT && o.i >= 0) || o.type == TP_MP_UINT)) {
        goto bad;
    }
    v = o.type == TP_MP_INT ? (uint64_t)o.i : o.u;
    if (v < lo || v > hi) {
        goto bad;
    }
    *out = v;
    return 0;
bad:
    refuse(E_BAD_ARGS, key);
    msg_s(" must be an integer in [");
    msg_u(lo);
    msg_s(", ");
    msg_u(hi);
    msg_s("]");
    if (o.type == TP_MP_INT) {
        msg_s(", got ");
        msg_i(o.i);
    } else if (o.type == TP_MP_UINT) {
        msg_s(", got ");
        msg_u(o.u);
    }
    return -1;
}

static int get_u32(const payload_t *pl, const char *key, uint64_t lo, uint64_t hi,
                   int has_default, uint64_t dflt, uint32_t *out)
{
    uint64_t v;
    if (get_uint(pl, key, lo, hi, has_default, dflt, &v) != 0) {
        return -1;
    }
    *out = (uint32_t)v; /* hi <= U32_MAX at every call */
    return 0;
}

static int get_bool(const payload_t *pl, const char *key, int dflt, int *out)
{
    tp_mp_obj o;
    if (!find(pl, key, &o)) {
        *out = dflt;
        return 0;
    }
    if (o.type != TP_MP_BOOL) {
        refuse(E_BAD_ARGS, key);
        msg_s(" must be true or false");
        return -1;
    }
    *out = o.b;
    return 0;
}

/* Packed little-endian values: n_values of itemsize bytes. 0 or -1. */
static int get_bin(const payload_t *pl, const char *key, size_t n_values, size_t itemsize,
                   const uint8_t **out)
{
    tp_mp_obj o;
    if (!find(pl, key, &o) || o.type != TP_MP_BIN) {
        refuse(E_BAD_ARGS, key);
        msg_s(" must be packed bytes (msgpack bin)");
        return -1;
    }
    if (o.len != n_values * itemsize) {
        refuse(E_BAD_ARGS, key);
        msg_s(" has ");
        msg_u(o.len);
        msg_s(" bytes, expected ");
        msg_u(n_values);
        msg_s(" values of ");
        msg_u(itemsize);
        msg_s(" bytes");
        return -1;
    }
    *out = o.data;
    return 0;
}

static const char *readout_name(uint32_t readout)
{
    return readout == TP_READOUT_ANP ? "anp" : (readout == TP_READOUT_NLMS ? "nlms" : "rls");
}

static int need_model(void)
{
    return have_model ? 0 : refuse(E_NO_MODEL, "no model on the device: deploy one first");
}

/* -- RAM budget (docs/protocol.md 7.3; model_image.ram_footprint) ------------------------- */

static uint64_t footprint(uint64_t n_in, uint64_t n, uint64_t n_out, uint64_t batch,
                          uint64_t eval_batch, int d_present, int decorrelation,
                          int readout_inputs, int rls)
{
    uint64_t f = n + (readout_inputs ? n_in + 1 : 0);
    uint64_t w = n * n_in + n * n + n_out * f + (d_present || decorrelation ? n * n : 0) + n;
    w += (2 * batch + eval_batch) * n;
    w += 8 * batch * n + batch * n_in + 4 * batch * n_out + batch * f;
    if (decorrelation) {
        w += batch * n + n;
    }
    if (rls) { /* 1.4: RLS's P and its g and k */
        w += f * f + 2 * f;
    }
    return 4 * w;
}

/* The loaded model's footprint with another batch / evaluation batch / D. */
static uint64_t model_footprint(uint64_t batch, uint64_t eval_batch, int d_present,
                                int decorrelation)
{
    return footprint(model.n_in, model.n, model.n_out, batch, eval_batch, d_present,
                     decorrelation, model.hyper.readout_inputs, model.P != NULL);
}

static uint64_t image_bytes(uint64_t n_in, uint64_t n, uint64_t n_out, int d_present,
                           int readout_inputs)
{
    uint64_t f = n + (readout_inputs ? n_in + 1 : 0);
    return TP_IMAGE_HEADER_SIZE + TP_IMAGE_TRAILER_SIZE +
           4 * (n * n_in + n * n + n_out * f + (d_present ? n * n : 0));
}

/* The largest N whose model fits the RAM budget and a flash slot (0 if none). */
static uint32_t largest_hidden(uint32_t n_in, uint32_t n_out, uint32_t batch, int d_present)
{
    uint32_t lo = 0, hi = TP_MAX_HIDDEN;
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1u) / 2u;
        if (footprint(n_in, mid, n_out, batch, 1, d_present, 0, 0, 0) <= TP_ARENA_BYTES &&
            image_bytes(n_in, mid, n_out, d_present, 0) <= tp_storage_slot_size()) {
            lo = mid;
        } else {
            hi = mid - 1u;
        }
    }
    return lo;
}

static uint64_t ram_free(void)
{
    if (!have_model) {
        return TP_ARENA_BYTES;
    }
    return TP_ARENA_BYTES - model_footprint(model.batch, model.eval_batch, model.D != NULL,
                                            model.hyper.decorrelation);
}

/* The largest evaluation batch the arena holds beside a model of this layout. */
static uint32_t eval_cap_for(uint32_t n_in, uint32_t n, uint32_t n_out, uint32_t batch,
                             int d_stored, int readout_inputs, int rls)
{
    uint32_t e = TP_MAX_BATCH;
    while (e > 1 && tp_model_words(n_in, n, n_out, batch, e, d_stored, readout_inputs, rls) >
                        ARENA_WORDS) {
        e--;
    }
    return e;
}

/* -- the model ---------------------------------------------------------------------------- */

/* A new step sequence (section 2): t_next set, the cached STEP replies dropped. */
static void start_sequence(uint32_t t)
{
    uint32_t k;
    t_next = t;
    for (k = 0; k < TP_RX_WINDOW; k++) {
        if (cache[k].used && cache[k].type == MT_STEP) {
            cache[k].used = 0;
        }
    }
}

/* Load an image (already verified) with the current batch and seed. 0 or -1. */
static int load_image(const uint8_t *data, size_t len)
{
    tp_image img;
    uint32_t cap;
    int d;
    have_model = 0;
    live.valid = 0;
    if (tp_image_parse(data, len, &img) != TP_IMAGE_OK) {
        return -1;
    }
    d = (img.flags & TP_IMAGE_FLAG_D_PRESENT) != 0 || img.hyper.decorrelation;
    cap = eval_cap_for(img.n_in, img.n, img.n_out, batch_mode, d, img.hyper.readout_inputs,
                       img.hyper.readout == TP_READOUT_RLS);
    if (tp_model_load_image(&model, &img, batch_mode, cap, seed_mode, arena, ARENA_WORDS) !=
        TP_OK) {
        return -1;
    }
    have_model = 1;
    start_sequence(0); /* a new (or reloaded) model starts a new step sequence */
    return 0;
}

static void load_active(void)
{
    const uint8_t *img = meta.active != TP_NO_SLOT ? tp_storage_slot_image(&meta, meta.active)
                                                   : NULL;
    have_model = 0;
    live.valid = 0;
    if (img != NULL) {
        load_image(img, meta.len[meta.active]);
    }
}

static uint32_t live_crc(void)
{
    if (!live.valid || live.updates != counters.updates) {
        live.crc = tp_image_payload_crc(&model);
        live.updates = counters.updates;
        live.valid = 1;
    }
    return live.crc;
}

/* -- reply writing helpers ---------------------------------------------------------------- */

static void kv_uint(tp_mp_writer *w, const char *key, uint64_t v)
{
    tp_mp_str(w, key);
    tp_mp_uint(w, v);
}

static void kv_str(tp_mp_writer *w, const char *key, const char *v)
{
    tp_mp_str(w, key);
    tp_mp_str(w, v);
}

static void kv_bool(tp_mp_writer *w, const char *key, int v)
{
    tp_mp_str(w, key);
    tp_mp_bool(w, v);
}

static void kv_slot(tp_mp_writer *w, const char *key, uint32_t slot)
{
    tp_mp_str(w, key);
    if (slot == TP_NO_SLOT) {
        tp_mp_nil(w);
    } else {
        tp_mp_uint(w, slot);
    }
}

static void kv_active_hash(tp_mp_writer *w, const char *key)
{
    tp_mp_str(w, key);
    if (meta.active == TP_NO_SLOT) {
        tp_mp_nil(w);
    } else {
        tp_mp_bin(w, meta.hash[meta.active], 32);
    }
}

static void kv_i32s(tp_mp_writer *w, const char *key, const int32_t *v, size_t n)
{
    uint8_t *p;
    tp_mp_str(w, key);
    p = tp_mp_bin_reserve(w, 4 * n);
    if (p != NULL) {
        store_i32(p, v, n);
    }
}

static int check_reply_size(uint64_t n_bytes, const char *what)
{
    if (n_bytes + TP_FRAME_OVERHEAD > TP_MAX_FRAME) {
        refuse(E_TOO_LARGE, what);
        msg_s(" of ");
        msg_u(n_bytes);
        msg_s(" bytes does not fit a ");
        msg_u(TP_MAX_FRAME);
        msg_s("-byte frame: send fewer steps per request");
        return -1;
    }
    return 0;
}

/* -- messages ----------------------------------------------------------------------------- */

static void hello_payload(tp_mp_writer *w)
{
    uint64_t step_us = counters.steps ? counters.step_us_total / counters.steps : 0;
    tp_mp_map(w, 9);
    tp_mp_str(w, "proto");
    tp_mp_array(w, 2);
    tp_mp_uint(w, PROTO_MAJOR);
    tp_mp_uint(w, PROTO_MINOR);
    kv_str(w, "fw", TP_FW_VERSION);
    kv_str(w, "board", board_name());
    kv_uint(w, "boot_id", meta.boot_count);
    tp_mp_str(w, "caps");
    tp_mp_map(w, 11);
    kv_uint(w, "max_frame", TP_MAX_FRAME);
    kv_uint(w, "rx_window", TP_RX_WINDOW);
    kv_uint(w, "max_hidden", largest_hidden(1, 1, 1, 0));
    kv_uint(w, "max_batch", TP_MAX_BATCH);
    kv_uint(w, "max_steps", TP_MAX_STEPS);
    kv_uint(w, "ram_total", board_ram_total());
    kv_uint(w, "ram_free", ram_free());
    tp_mp_str(w, "dtypes");
    tp_mp_array(w, 1);
    tp_mp_str(w, "q16.16/q7.24");
    tp_mp_str(w, "readouts");
    tp_mp_array(w, 3);
    tp_mp_str(w, "anp");
    tp_mp_str(w, "nlms");
    tp_mp_str(w, "rls");
    kv_uint(w, "slots", 2);
    kv_uint(w, "step_us", step_us);
    kv_slot(w, "active_slot", meta.active);
    if (have_model) {
        kv_active_hash(w, "model_hash");
        kv_str(w, "model_state", tp_storage_state_name(meta.state));
        tp_mp_str(w, "shape");
        tp_mp_array(w, 3);
        tp_mp_uint(w, model.n_in);
        tp_mp_uint(w, model.n);
        tp_mp_uint(w, model.n_out);
    } else {
        tp_mp_str(w, "model_hash");
        tp_mp_nil(w);
        kv_str(w, "model_state", "none");
        tp_mp_str(w, "shape");
        tp_mp_nil(w);
    }
}

static int on_hello(const payload_t *pl, tp_mp_writer *w)
{
    tp_mp_obj o;
    size_t pos = 0;
    uint32_t k;
    int64_t v[2] = {0, 0};
    if (!tp_mp_find(pl->p, pl->len, "proto", &o, &pos) || o.type != TP_MP_ARRAY || o.len < 1) {
        return refuse(E_BAD_ARGS, "HELLO needs proto: [major, minor]");
    }
    for (k = 0; k < o.len; k++) {
        tp_mp_obj e;
        if (tp_mp_read(pl->p, pl->len, &pos, &e) != 0 ||
            !(e.type == TP_MP_INT || e.type == TP_MP_UINT)) {
            return refuse(E_BAD_ARGS, "HELLO needs proto: [major, minor]");
        }
        if (k < 2) {
            v[k] = e.type == TP_MP_INT ? e.i : INT64_MAX;
        }
    }
    if (v[0] != (int64_t)PROTO_MAJOR) {
        counters.bad_version++;
        refuse(E_BAD_VERSION, "host speaks protocol ");
        msg_i(v[0]);
        msg_s(", this device 1.1: the major versions must match");
        return -1;
    }
    /* A new session: its minor version decides whether STEP order is checked. t_next is
     * learning state and survives HELLO (a resync must not let a STEP run twice). */
    ordered = o.len >= 2 && v[1] >= 1;
    hello_payload(w);
    return 0;
}

static int on_deploy_begin(const payload_t *pl, tp_mp_writer *w)
{
    uint64_t length, n_in, n, n_out, need, sizes[4];
    uint32_t k, slot;
    int d_present, fitting;
    tp_mp_obj o;
    size_t pos = 0;
    const uint8_t *digest;
    uint64_t shape[3];
    if (get_uint(pl, "len", 1, (uint64_t)1 << 32, 0, 0, &length) != 0) {
        return -1;
    }
    if (!find(pl, "sha256", &o) || o.type != TP_MP_BIN || o.len != 32) {
        return refuse(E_BAD_ARGS, "sha256 must be 32 bytes (msgpack bin)");
    }
    digest = o.data;
    if (!tp_mp_find(pl->p, pl->len, "shape", &o, &pos) || o.type != TP_MP_ARRAY || o.len != 3) {
        return refuse(E_BAD_ARGS, "shape must be [n_in, N, n_out] of positive integers");
    }
    for (k = 0; k < 3; k++) {
        tp_mp_obj e;
        if (tp_mp_read(pl->p, pl->len, &pos, &e) != 0 || !(e.type == TP_MP_INT && e.i > 0)) {
            return refuse(E_BAD_ARGS, "shape must be [n_in, N, n_out] of positive integers");
        }
        /* Wider than any image's u16 fields: no image can match; keep the products small. */
        shape[k] = e.i > 0xFFFF ? 0x10000u : (uint64_t)e.i;
    }
    n_in = shape[0], n = shape[1], n_out = shape[2];
    if (upload.active && upload.len == length && memcmp(upload.sha, digest, 32) == 0) {
        tp_mp_map(w, 2); /* the same upload again: resume it */
        kv_uint(w, "slot", upload.slot);
        kv_uint(w, "off_next", upload.received);
        return 0;
    }
    upload.active = 0;
    if (meta.state == TP_STATE_PENDING) {
        return refuse(E_BAD_STATE, "the active model is pending: confirm it (DEPLOY_CONFIRM) "
                                   "or revert it (DEPLOY_ABORT) before deploying another");
    }
    /* BEGIN does not know the image's flags (D stored, the readout over [xh, u, 1]): any
     * layout of this length is possible, and the largest footprint among them decides. */
    fitting = 0;
    d_present = 0;
    need = 0;
    for (k = 0; k < 4; k++) {
        int d = (int)(k & 1u), ri = (int)(k >> 1);
        sizes[k] = image_bytes(n_in, n, n_out, d, ri);
        if (length == sizes[k]) {
            uint64_t f = footprint(n_in, n, n_out, batch_mode, have_model ? model.eval_batch : 1,
                                   d, have_model && model.hyper.decorrelation, ri, 0);
            fitting = 1;
            d_present |= d;
            need = f > need ? f : need;
        }
    }
    if (!fitting) {
        uint64_t shown = 0;
        refuse(E_BAD_ARGS, "len ");
        msg_u(length);
        msg_s(" does not match a ");
        msg_u(n_in);
        msg_s("-");
        msg_u(n);
        msg_s("-");
        msg_u(n_out);
        msg_s(" image (");
        /* The distinct sizes in increasing order, as the simulator lists them. */
        for (k = 0; k < 4; k++) {
            uint64_t next = 0;
            uint32_t j;
            for (j = 0; j < 4; j++) {
                if (sizes[j] > shown && (next == 0 || sizes[j] < next)) {
                    next = sizes[j];
                }
            }
            if (next == 0) {
                break;
            }
            if (shown != 0) {
                msg_s(" or ");
            }
            msg_u(next);
            shown = next;
        }
        msg_s(" bytes)");
        return -1;
    }
    if (need > TP_ARENA_BYTES || length > tp_storage_slot_size()) {
        uint32_t fits = largest_hidden((uint32_t)n_in, (uint32_t)n_out, batch_mode, d_present);
        refuse_extra(E_TOO_LARGE, "model needs ", "max_hidden", fits);
        msg_u(need);
        msg_s(" bytes of RAM (image ");
        msg_u(length);
        msg_s(" bytes); this device has ");
        msg_u(TP_ARENA_BYTES);
        msg_s(" bytes for a model and ");
        msg_u(tp_storage_slot_size());
        msg_s(" per flash slot: N <= ");
        msg_u(fits);
        msg_s(" fits with batch ");
        msg_u(batch_mode);
        return -1;
    }
    if (tp_storage_begin(&meta, &slot) != 0) {
        return refuse(E_FLASH_FAIL, "erasing the upload slot failed");
    }
    upload.active = 1;
    upload.len = (uint32_t)length;
    upload.slot = slot;
    upload.received = 0;
    memcpy(upload.sha, digest, 32);
    upload.shape[0] = (uint32_t)n_in;
    upload.shape[1] = (uint32_t)n;
    upload.shape[2] = (uint32_t)n_out;
    tp_mp_map(w, 2);
    kv_uint(w, "slot", slot);
    kv_uint(w, "off_next", 0);
    return 0;
}

static int on_deploy_chunk(const payload_t *pl, tp_mp_writer *w)
{
    uint64_t off, end;
    tp_mp_obj o;
    if (!upload.active) {
        return refuse(E_BAD_STATE, "no upload in progress: send DEPLOY_BEGIN first");
    }
    if (get_uint(pl, "off", 0, (uint64_t)1 << 32, 0, 0, &off) != 0) {
        return -1;
    }
    if (!find(pl, "data", &o) || o.type != TP_MP_BIN) {
        return refuse(E_BAD_ARGS, "data must be bytes (msgpack bin)");
    }
    end = off + o.len;
    if (end > upload.len) {
        refuse(E_BAD_ARGS, "chunk [");
        msg_u(off);
        msg_s(", ");
        msg_u(end);
        msg_s(") runs past the image's ");
        msg_u(upload.len);
        msg_s(" bytes");
        return -1;
    }
    if (off > upload.received) {
        refuse_extra(E_BAD_STATE, "chunk at ", "off_next", upload.received);
        msg_u(off);
        msg_s(" leaves a gap: the next expected offset is ");
        msg_u(upload.received);
        return -1;
    }
    if (end > upload.received) {
        size_t skip = (size_t)(upload.received - off);
        if (tp_storage_write(upload.slot, upload.received, o.data + skip,
                             (uint32_t)(o.len - skip)) != 0) {
            return refuse(E_FLASH_FAIL, "programming the upload slot failed");
        }
        upload.received = (uint32_t)end;
    }
    tp_mp_map(w, 1);
    kv_uint(w, "off_next", upload.received);
    return 0;
}

static int on_deploy_commit(const payload_t *pl, tp_mp_writer *w)
{
    tp_mp_obj o;
    tp_image img;
    tp_image_err ie;
    uint8_t actual[32];
    const uint8_t *data;
    uint64_t need;
    if (!upload.active) {
        return refuse(E_BAD_STATE, "no upload in progress: send DEPLOY_BEGIN first");
    }
    if (!find(pl, "sha256", &o) || o.type != TP_MP_BIN || o.len != 32) {
        return refuse(E_BAD_ARGS, "sha256 must be 32 bytes (msgpack bin)");
    }
    if (upload.received < upload.len) {
        refuse_extra(E_BAD_STATE, "upload incomplete: ", "off_next", upload.received);
        msg_u(upload.received);
        msg_s(" of ");
        msg_u(upload.len);
        msg_s(" bytes received");
        return -1;
    }
    data = tp_storage_slot_ptr(upload.slot);
    tp_sha256(data, upload.len, actual);
    if (memcmp(o.data, upload.sha, 32) != 0 || memcmp(actual, upload.sha, 32) != 0) {
        upload.active = 0;
        return refuse(E_HASH_MISMATCH,
                      "received image does not match its sha256: upload again");
    }
    ie = tp_image_parse(data, upload.len, &img);
    if (ie != TP_IMAGE_OK) {
        upload.active = 0;
        refuse(E_BAD_ARGS, "image rejected: ");
        msg_s(tp_image_strerror(ie));
        return -1;
    }
    if (img.n_in != upload.shape[0] || img.n != upload.shape[1] ||
        img.n_out != upload.shape[2]) {
        upload.active = 0;
        return refuse(E_BAD_ARGS, "image shape differs from DEPLOY_BEGIN's");
    }
    /* BEGIN could not know the image's flags: a learned D (decorrelation) needs more RAM. */
    need = footprint(img.n_in, img.n, img.n_out, batch_mode, 1,
                     (img.flags & TP_IMAGE_FLAG_D_PRESENT) != 0, img.hyper.decorrelation,
                     img.hyper.readout_inputs, img.hyper.readout == TP_READOUT_RLS);
    if (need > TP_ARENA_BYTES) {
        upload.active = 0;
        refuse(E_TOO_LARGE, "model with its flags needs ");
        msg_u(need);
        msg_s(" bytes of RAM, ");
        msg_u(TP_ARENA_BYTES);
        msg_s(" available");
        return -1;
    }
    if (tp_storage_commit(&meta, upload.slot, upload.len, upload.sha, 1) != 0) {
        return refuse(E_FLASH_FAIL, "writing the metadata record failed");
    }
    upload.active = 0;
    load_image(data, meta.len[upload.slot]);
    tp_mp_map(w, 3);
    kv_uint(w, "slot", upload.slot);
    tp_mp_str(w, "model_hash");
    tp_mp_bin(w, upload.sha, 32);
    kv_str(w, "model_state", "pending");
    return 0;
}

static int on_deploy_confirm(const payload_t *pl, tp_mp_writer *w)
{
    (void)pl;
    if (meta.active == TP_NO_SLOT) {
        return refuse(E_NO_MODEL, "no model to confirm");
    }
    if (tp_storage_confirm(&meta) != 0) {
        return refuse(E_FLASH_FAIL, "writing the metadata record failed");
    }
    tp_mp_map(w, 2);
    kv_uint(w, "active_slot", meta.active);
    kv_str(w, "model_state", tp_storage_state_name(meta.state));
    return 0;
}

static int on_deploy_abort(const payload_t *pl, tp_mp_writer *w)
{
    (void)pl;
    upload.active = 0;
    if (meta.state == TP_STATE_PENDING) {
        if (tp_storage_revert(&meta) != 0) {
            return refuse(E_FLASH_FAIL, "writing the metadata record failed");
        }
        load_active();
    }
    tp_mp_map(w, 3);
    kv_slot(w, "active_slot", meta.active);
    kv_active_hash(w, "model_hash");
    kv_str(w, "model_state", tp_storage_state_name(meta.state));
    return 0;
}

static int on_step(const payload_t *pl, tp_mp_writer *w)
{
    uint64_t t;
    uint32_t steps, s, nb, nx, ny;
    int learn, applied = 0;
    tp_mp_obj o;
    const uint8_t *x, *y = NULL;
    uint8_t *p_y1, *p_l1, *p_l2, *p_y2 = NULL;
    size_t applied_at;
    uint32_t t0;
    if (need_model() != 0 || get_uint(pl, "t", 0, U64_MAX, 0, 0, &t) != 0) {
        return -1;
    }
    if (ordered && t != t_next) {
        /* Not the next step: an earlier one was lost (pipelining) or this one is late. A
         * repeat of a STEP that ran never gets here (the cache answers it). Not cached, so
         * that it runs when sent again in order. */
        refuse_extra(E_BAD_STATE, "STEP t=", "t_next", t_next);
        msg_u(t);
        msg_s(" is out of order: the next step is t=");
        msg_u(t_next);
        msg_s("; send the STEPs from there again, in order");
        err.cache = 0;
        return -1;
    }
    if (get_u32(pl, "steps", 1, TP_MAX_STEPS, 1, 1, &steps) != 0 ||
        get_bool(pl, "learn", 1, &learn) != 0) {
        return -1;
    }
    learn = learn && learn_mode;
    nb = model.batch;
    nx = nb * model.n_in;
    ny = nb * model.n_out;
    if (check_reply_size((uint64_t)steps * (ny * 4u * 2u + 16u), "the STEP reply") != 0 ||
        get_bin(pl, "x", (size_t)steps * nx, 4, &x) != 0) {
        return -1;
    }
    if (find(pl, "y", &o) && o.type != TP_MP_NIL) {
        if (get_bin(pl, "y", (size_t)steps * ny, 4, &y) != 0) {
            return -1;
        }
    }
    if (y == NULL && learn && steps > 1) {
        return refuse(E_BAD_STATE, "the reward variant (y: nil) runs one step at a time");
    }
    if (y == NULL && learn && model.hyper.readout != TP_READOUT_ANP) {
        refuse(E_BAD_STATE, "the reward variant (y: nil) needs readout anp; this "
                            "model's readout is ");
        msg_s(readout_name(model.hyper.readout));
        msg_s(", which learns from the targets: send y");
        return -1;
    }
    if (nx + 3u * ny > IO_MAX) {
        return refuse(E_TOO_LARGE, "one step's inputs and outputs do not fit the device's "
                                   "buffers: fewer streams or outputs");
    }
    if (model.pending) {
        counters.missed_rewards++;
    }
    /* The reply's arrays are written in place as the steps run; `applied` (<= 32) is one
     * positive-fixint byte, patched at the end. */
    tp_mp_map(w, y == NULL ? 6u : 5u);
    kv_uint(w, "t", t);
    tp_mp_str(w, "y_hat");
    p_y1 = tp_mp_bin_reserve(w, (size_t)steps * ny * 4u);
    tp_mp_str(w, "loss_1");
    p_l1 = tp_mp_bin_reserve(w, (size_t)steps * 8u);
    tp_mp_str(w, "loss_2");
    p_l2 = tp_mp_bin_reserve(w, (size_t)steps * 8u);
    tp_mp_str(w, "applied");
    applied_at = w->len;
    tp_mp_uint(w, 0);
    if (y == NULL) {
        tp_mp_str(w, "y_hat_2");
        p_y2 = tp_mp_bin_reserve(w, (size_t)steps * ny * 4u);
    }
    if (w->overflow || p_y1 == NULL || p_l1 == NULL || p_l2 == NULL) {
        return refuse(E_TOO_LARGE, "the STEP reply does not fit a frame");
    }
    t0 = board_micros();
    for (s = 0; s < steps; s++) {
        tp_step_result res;
        int32_t *u = io, *ys = io + nx, *y1 = ys + ny, *y2 = y1 + ny;
        load_i32(x + (size_t)s * nx * 4u, nx, u);
        if (y != NULL) {
            load_i32(y + (size_t)s * ny * 4u, ny, ys);
        }
        tp_step(&model, u, y != NULL ? ys : NULL, learn, (uint32_t)((t + s) & U32_MAX), y1, y2,
                &res);
        store_i32(p_y1 + (size_t)s * ny * 4u, y1, ny);
        if (p_y2 != NULL) {
            store_i32(p_y2 + (size_t)s * ny * 4u, y2, ny);
        }
        wr64(p_l1 + (size_t)s * 8u, (uint64_t)res.loss1);
        wr64(p_l2 + (size_t)s * 8u, (uint64_t)res.loss2);
        applied += res.applied ? 1 : 0;
    }
    counters.step_us_total += (uint32_t)(board_micros() - t0);
    counters.steps += steps;
    counters.updates += (uint64_t)applied;
    t_next = (uint32_t)((t + steps) & U32_MAX);
    w->buf[applied_at] = (uint8_t)applied;
    return 0;
}

/* REWARD (sent with NOREPLY): apply the pending update with the host's dl. */
static void on_reward(const payload_t *pl)
{
    tp_mp_obj ot, od;
    int64_t dl[TP_MAX_BATCH];
    uint32_t k;
    if (!have_model || !find(pl, "t", &ot) || ot.type != TP_MP_INT || ot.i < 0 ||
        ot.i > (int64_t)U32_MAX || !find(pl, "dl", &od)) {
        counters.missed_rewards++;
        return;
    }
    if (od.type == TP_MP_INT && model.batch == 1) {
        dl[0] = od.i;
    } else if (od.type == TP_MP_BIN && od.len == 8u * model.batch) {
        for (k = 0; k < model.batch; k++) {
            dl[k] = as_i64(rd64(od.data + 8u * k));
        }
    } else {
        counters.missed_rewards++;
        return;
    }
    if (tp_reward(&model, (uint32_t)ot.i, dl)) {
        counters.rewards++;
        counters.updates++;
    } else {
        counters.missed_rewards++;
    }
}

static void mode_payload(tp_mp_writer *w)
{
    tp_hyper dflt = {4294967u, 66u, 429497u, 65536u, 10u, 1u, 0u, 0u, 0u, 0u,
                     4294967u, 32768u, 65536u, 0u, 1000u, 429540u, (uint32_t)10 << 24};
    const tp_hyper *h = have_model ? &model.hyper : &dflt;
    tp_mp_map(w, 20);
    kv_bool(w, "learn", learn_mode);
    kv_uint(w, "seed", seed_mode);
    kv_uint(w, "batch", batch_mode);
    kv_uint(w, "lr_q", h->lr_q);
    kv_uint(w, "sigma_q", h->sigma_q);
    kv_uint(w, "eps_q", h->eps_q);
    kv_uint(w, "gain_q", h->gain_q);
    kv_uint(w, "resync_every", h->resync_every);
    kv_bool(w, "output_cap", h->output_cap);
    kv_bool(w, "two_noisy", h->two_noisy);
    kv_bool(w, "decorrelation", h->decorrelation);
    kv_uint(w, "lrh_q", h->lrh_q);
    kv_uint(w, "readout", h->readout);
    kv_bool(w, "readout_inputs", h->readout_inputs);
    kv_uint(w, "mu_q", h->mu_q);
    kv_uint(w, "leak_q", h->leak_q);
    kv_uint(w, "bound_q", h->bound_q);
    kv_uint(w, "guard_every", h->guard_every);
    kv_uint(w, "im1_q", h->im1_q);
    kv_uint(w, "p0_q", h->p0_q);
}

static int on_set_mode(const payload_t *pl, tp_mp_writer *w)
{
    int learn, b;
    uint32_t seed, batch;
    tp_hyper h;
    if (get_bool(pl, "learn", learn_mode, &learn) != 0 ||
        get_u32(pl, "seed", 0, U32_MAX, 1, seed_mode, &seed) != 0 ||
        get_u32(pl, "batch", 1, TP_MAX_BATCH, 1, batch_mode, &batch) != 0) {
        return -1;
    }
    if (have_model) {
        uint64_t need;
        uint32_t readout;
        h = model.hyper;
        if (get_bool(pl, "readout_inputs", h.readout_inputs, &b) != 0) {
            return -1;
        }
        if (b != h.readout_inputs) {
            return refuse(E_BAD_ARGS, "readout_inputs is the model image's (it sets B's width): "
                                      "deploy a model with the readout you want");
        }
        if (get_u32(pl, "readout", 0, TP_READOUT_RLS, 1, h.readout, &readout) != 0) {
            return -1;
        }
        if ((readout == TP_READOUT_RLS) != (model.P != NULL)) {
            return refuse(E_BAD_ARGS, "readout: switching to or from rls changes the model's "
                                      "RAM layout (P): deploy a model with the readout you "
                                      "want");
        }
        if (get_u32(pl, "lr_q", 1, U32_MAX, 1, h.lr_q, &h.lr_q) != 0 ||
            get_u32(pl, "sigma_q", 0, 65536u, 1, h.sigma_q, &h.sigma_q) != 0 ||
            get_u32(pl, "eps_q", 0, U32_MAX, 1, h.eps_q, &h.eps_q) != 0 ||
            get_u32(pl, "gain_q", 0, U32_MAX, 1, h.gain_q, &h.gain_q) != 0 ||
            get_u32(pl, "resync_every", 0, 0xFFFFu, 1, h.resync_every, &h.resync_every) != 0 ||
            get_u32(pl, "lrh_q", 1, U32_MAX, 1, h.lrh_q, &h.lrh_q) != 0 ||
            get_u32(pl, "mu_q", 1, 131071u, 1, h.mu_q, &h.mu_q) != 0 ||
            get_u32(pl, "leak_q", 1, 65536u, 1, h.leak_q, &h.leak_q) != 0 ||
            get_u32(pl, "bound_q", 0, U32_MAX, 1, h.bound_q, &h.bound_q) != 0 ||
            get_u32(pl, "guard_every", 1, U32_MAX, 1, h.guard_every, &h.guard_every) != 0 ||
            get_u32(pl, "im1_q", 0, TP_IM1_MAX, 1, h.im1_q, &h.im1_q) != 0 ||
            get_u32(pl, "p0_q", readout == TP_READOUT_RLS ? 1u : 0u, TP_P0_MAX, 1, h.p0_q,
                    &h.p0_q) != 0) {
            return -1;
        }
        h.readout = (uint8_t)readout;
        if (get_bool(pl, "output_cap", h.output_cap, &b) != 0) {
            return -1;
        }
        h.output_cap = (uint8_t)b;
        if (get_bool(pl, "two_noisy", h.two_noisy, &b) != 0) {
            return -1;
        }
        h.two_noisy = (uint8_t)b;
        if (get_bool(pl, "decorrelation", h.decorrelation, &b) != 0) {
            return -1;
        }
        h.decorrelation = (uint8_t)b;
        need = model_footprint(batch, model.eval_batch, model.D != NULL || h.decorrelation,
                               h.decorrelation);
        if (need > TP_ARENA_BYTES) {
            refuse(E_TOO_LARGE, "batch ");
            msg_u(batch);
            msg_s(" needs ");
            msg_u(need);
            msg_s(" bytes of RAM, ");
            msg_u(TP_ARENA_BYTES);
            msg_s(" available");
            return -1;
        }
    }
    learn_mode = learn;
    if (have_model) {
        int new_d = h.decorrelation && model.D == NULL;
        model.hyper = h;
        if (batch != batch_mode) {
            /* The weights stay where they are; the states are laid out anew (zeroed). */
            int d = model.D != NULL || h.decorrelation;
            tp_model_relayout(&model, batch,
                              eval_cap_for(model.n_in, model.n, model.n_out, batch, d,
                                           h.readout_inputs, model.P != NULL),
                              d, arena, ARENA_WORDS);
            live.valid = 0;
        } else if (new_d) {
            /* D is stored from now on, the learning state kept (as the simulator does). */
            tp_model_store_d(&model,
                             eval_cap_for(model.n_in, model.n, model.n_out, batch, 1,
                                          h.readout_inputs, model.P != NULL),
                             arena, ARENA_WORDS);
            live.valid = 0;
        }
        if (seed != seed_mode || batch != batch_mode) {
            tp_model_reseed(&model, seed);
            tp_model_reset_state(&model);
            start_sequence(0); /* the learning state starts over */
        }
    }
    batch_mode = batch;
    seed_mode = seed;
    mode_payload(w);
    return 0;
}

static int on_get_model(const payload_t *pl, tp_mp_writer *w)
{
    uint64_t off, n, total;
    tp_mp_obj o;
    int flash = 0;
    uint8_t *p;
    if (need_model() != 0 || get_uint(pl, "off", 0, (uint64_t)1 << 32, 0, 0, &off) != 0 ||
        get_uint(pl, "len", 0, TP_MAX_FRAME - TP_FRAME_OVERHEAD, 0, 0, &n) != 0) {
        return -1;
    }
    if (find(pl, "source", &o)) {
        if (o.type == TP_MP_STR && o.len == 5 && memcmp(o.data, "flash", 5) == 0) {
            flash = 1;
        } else if (!(o.type == TP_MP_STR && o.len == 4 && memcmp(o.data, "live", 4) == 0)) {
            return refuse(E_BAD_ARGS, "source must be 'live' or 'flash'");
        }
    }
    if (flash) {
        if (meta.active == TP_NO_SLOT) {
            return refuse(E_NO_MODEL, "no model in flash");
        }
        total = meta.len[meta.active];
    } else {
        total = tp_image_live_size(&model);
    }
    if (off > total) {
        off = total;
    }
    if (n > total - off) {
        n = total - off;
    }
    tp_mp_map(w, 3);
    tp_mp_str(w, "data");
    p = tp_mp_bin_reserve(w, (size_t)n);
    if (p != NULL) {
        if (flash) {
            memcpy(p, tp_storage_slot_ptr(meta.active) + off, (size_t)n);
        } else {
            tp_image_read_live(&model, live_crc(), (size_t)off, p, (size_t)n);
        }
    }
    kv_uint(w, "total", total);
    kv_uint(w, "updates", counters.updates);
    return 0;
}

static int on_save_model(const payload_t *pl, tp_mp_writer *w)
{
    uint8_t chunk[256], digest[32];
    tp_sha256_ctx ctx;
    uint32_t slot, crc, off = 0, size;
    (void)pl;
    if (need_model() != 0) {
        return -1;
    }
    if (upload.active) {
        return refuse(E_BUSY, "an upload is using the inactive slot: finish or abort it");
    }
    if (meta.state == TP_STATE_PENDING) {
        return refuse(E_BAD_STATE,
                      "the active model is pending: confirm or abort it before saving over it");
    }
    size = (uint32_t)tp_image_live_size(&model);
    if (size > tp_storage_slot_size()) {
        return refuse(E_FLASH_FAIL, "the live image exceeds the slot size");
    }
    if (tp_storage_begin(&meta, &slot) != 0) {
        return refuse(E_FLASH_FAIL, "erasing the slot failed");
    }
    /* The image is generated chunk by chunk from the weights: no RAM copy of it. */
    crc = live_crc();
    tp_sha256_init(&ctx);
    while (off < size) {
        uint32_t k = (uint32_t)tp_image_read_live(&model, crc, off, chunk, sizeof chunk);
        tp_sha256_update(&ctx, chunk, k);
        if (tp_storage_write(slot, off, chunk, k) != 0) {
            return refuse(E_FLASH_FAIL, "programming the slot failed");
        }
        off += k;
    }
    tp_sha256_final(&ctx, digest);
    if (tp_storage_commit(&meta, slot, size, digest, 0) != 0) {
        return refuse(E_FLASH_FAIL, "the slot does not verify, or the record write failed");
    }
    tp_mp_map(w, 3);
    kv_uint(w, "slot", meta.active);
    tp_mp_str(w, "model_hash");
    tp_mp_bin(w, digest, 32);
    kv_str(w, "model_state", "confirmed");
    return 0;
}

/* RESET: returns 1 (reboot after the reply) for "device", 0, or -1. */
static int on_reset(const payload_t *pl, tp_mp_writer *w)
{
    tp_mp_obj o;
    const char *what;
    if (!find(pl, "what", &o) || o.type != TP_MP_STR) {
        return refuse(E_BAD_ARGS, "what must be 'state', 'model' or 'device'");
    }
    if (o.len == 5 && memcmp(o.data, "state", 5) == 0) {
        what = "state";
        if (have_model) {
            tp_model_reset_state(&model);
        }
        start_sequence(0);
    } else if (o.len == 5 && memcmp(o.data, "model", 5) == 0) {
        what = "model";
        load_active();
    } else if (o.len == 6 && memcmp(o.data, "device", 6) == 0) {
        what = "device";
    } else {
        return refuse(E_BAD_ARGS, "what must be 'state', 'model' or 'device'");
    }
    tp_mp_map(w, 1);
    kv_str(w, "what", what);
    return what[0] == 'd';
}

static int on_stats(const payload_t *pl, tp_mp_writer *w)
{
    const tp_frame_stats *r = &reader.stats;
    (void)pl;
    tp_mp_map(w, 21);
    kv_uint(w, "steps", counters.steps);
    kv_uint(w, "updates", counters.updates);
    kv_uint(w, "rewards", counters.rewards);
    kv_uint(w, "missed_rewards", counters.missed_rewards);
    kv_uint(w, "duplicates", counters.duplicates);
    kv_uint(w, "crc_errors", r->crc_errors);
    kv_uint(w, "cobs_errors", r->cobs_errors);
    kv_uint(w, "overflows", r->overflows);
    kv_uint(w, "short", r->short_frames);
    kv_uint(w, "payload_errors", r->payload_errors);
    kv_uint(w, "bad_version", counters.bad_version);
    kv_uint(w, "saturations", have_model ? model.saturations : 0);
    kv_uint(w, "guard_projections", have_model ? model.projections : 0);
    kv_uint(w, "rls_resets", have_model ? model.rls_resets : 0);
    kv_uint(w, "nans", 0);
    kv_uint(w, "step_us", counters.steps ? counters.step_us_total / counters.steps : 0);
    kv_uint(w, "uptime_ms", board_millis());
    kv_uint(w, "ram_free", ram_free());
    kv_uint(w, "boot_id", meta.boot_count);
    kv_uint(w, "rx_frames", counters.rx_frames);
    kv_uint(w, "tx_frames", counters.tx_frames);
    return 0;
}

/* The block of P's rows a STATE_GET/STATE_SET names (section 6.8), rows counted by the
 * caller: the first row in *row. 0 or -1. */
static int p_rows(const payload_t *pl, uint32_t rows, uint32_t *row)
{
    const uint32_t f = model.n_f;
    if (model.P == NULL) {
        refuse(E_BAD_ARGS, "p_row: the model's readout is ");
        msg_s(readout_name(model.hyper.readout));
        msg_s(", which keeps no P (only the rls readout does)");
        return -1;
    }
    if (get_u32(pl, "p_row", 0, f - 1u, 0, 0, row) != 0) {
        return -1;
    }
    if ((uint64_t)*row + rows > f) {
        refuse(E_BAD_ARGS, "rows ");
        msg_u(*row);
        msg_s("..");
        msg_u((uint64_t)*row + rows - 1u);
        msg_s(" are beyond P's ");
        msg_u(f);
        return -1;
    }
    return 0;
}

static int on_state_get_p(const payload_t *pl, tp_mp_writer *w)
{
    uint32_t rows, row;
    const size_t f = model.n_f;
    if (get_u32(pl, "p_rows", 1, f, 0, 0, &rows) != 0 || p_rows(pl, rows, &row) != 0 ||
        check_reply_size(4u * (uint64_t)rows * f + 64u, "the rows of P") != 0) {
        return -1;
    }
    tp_mp_map(w, 2);
    kv_uint(w, "p_row", row);
    kv_i32s(w, "p", model.P + (size_t)row * f, (size_t)rows * f);
    return 0;
}

static int on_state_set_p(const payload_t *pl, tp_mp_writer *w)
{
    const uint32_t f = model.n_f;
    uint32_t rows, row;
    tp_mp_obj o;
    if (!find(pl, "p", &o) || o.type != TP_MP_BIN || o.len == 0 || o.len % (4u * f) != 0) {
        refuse(E_BAD_ARGS, "p must be packed int32, whole rows of F = ");
        msg_u(f);
        msg_s(" values");
        return -1;
    }
    rows = (uint32_t)(o.len / (4u * f));
    if (p_rows(pl, rows, &row) != 0) {
        return -1;
    }
    load_i32(o.data, (size_t)rows * f, model.P + (size_t)row * f);
    tp_mp_map(w, 0);
    return 0;
}

static int on_state_get(const payload_t *pl, tp_mp_writer *w)
{
    size_t nbn, nen;
    tp_mp_obj o;
    if (need_model() != 0) {
        return -1;
    }
    if (find(pl, "p_row", &o)) {
        return on_state_get_p(pl, w);
    }
    nbn = (size_t)model.batch * model.n;
    nen = (size_t)model.eval_batch * model.n;
    if (check_reply_size(4u * (2u * nbn + nen + model.n) + 64u, "the state") != 0) {
        return -1;
    }
    tp_mp_map(w, 12);
    kv_uint(w, "batch", model.batch);
    kv_i32s(w, "xh1", model.xh1, nbn);
    kv_i32s(w, "xh2", model.xh2, nbn);
    kv_uint(w, "counter", model.counter);
    kv_uint(w, "rng_seed", model.seed);
    kv_uint(w, "rng_counter", model.rng_counter);
    kv_uint(w, "eval_batch", model.eval_batch);
    kv_i32s(w, "xh_eval", model.xh_eval, nen);
    tp_mp_str(w, "pending_t");
    if (model.pending) {
        tp_mp_uint(w, model.pending_t);
    } else {
        tp_mp_nil(w);
    }
    kv_uint(w, "total", model.total);
    kv_i32s(w, "gv", model.gv, model.n);
    kv_uint(w, "t_next", t_next);
    return 0;
}

/* A state array within its bound (1.2): the one the step keeps hidden states within, or
 * (key "gv", 1.3) the one the guard keeps its vector within. */
static int check_state(const char *key, const uint8_t *p, size_t n, int32_t bound, int32_t *out)
{
    size_t k;
    const int gv = key[0] == 'g'; /* "gv"; the others are "xh..." */
    load_i32(p, n, out);
    for (k = 0; k < n; k++) {
        if (out[k] > bound || out[k] < -bound) {
            refuse(E_BAD_ARGS, "state ");
            msg_s(key);
            msg_s(" holds ");
            msg_i(out[k]);
            msg_s(", outside \302\261");
            msg_i(bound);
            msg_s(" (\302\261");
            msg_i(bound >> 16);
            if (gv) {
                msg_s(" in Q16.16), the bound the guard keeps its vector within");
            } else {
                msg_s(bound > 65536 ? " in Q16.16: the \302\26116 clamp, D stored)"
                                    : " in Q16.16: tanh's range, D absent)");
                msg_s(", the bound the step keeps hidden states within");
            }
            msg_s("; the device cannot have produced it");
            return -1;
        }
    }
    return 0;
}

static int on_state_set(const payload_t *pl, tp_mp_writer *w)
{
    uint32_t batch, eb, seed, t;
    uint64_t counter, rng_counter, total, need;
    const uint8_t *x1, *x2, *xe, *gv = NULL;
    tp_mp_obj o;
    int32_t bound;
    int d;
    size_t nbn, nen;
    if (need_model() != 0) {
        return -1;
    }
    if (find(pl, "p_row", &o)) {
        return on_state_set_p(pl, w);
    }
    if (get_u32(pl, "batch", 1, TP_MAX_BATCH, 0, 0, &batch) != 0 ||
        get_u32(pl, "eval_batch", 1, TP_MAX_BATCH, 0, 0, &eb) != 0) {
        return -1;
    }
    nbn = (size_t)batch * model.n;
    nen = (size_t)eb * model.n;
    if (get_bin(pl, "xh1", nbn, 4, &x1) != 0 || get_bin(pl, "xh2", nbn, 4, &x2) != 0 ||
        get_bin(pl, "xh_eval", nen, 4, &xe) != 0 ||
        get_uint(pl, "counter", 0, U64_MAX, 0, 0, &counter) != 0 ||
        get_u32(pl, "rng_seed", 0, U32_MAX, 0, 0, &seed) != 0 ||
        get_uint(pl, "rng_counter", 0, U64_MAX, 0, 0, &rng_counter) != 0 ||
        /* 1.3: the guard's state; absent (an earlier host), it starts afresh */
        get_uint(pl, "total", 0, U64_MAX, 1, 0, &total) != 0 ||
        (find(pl, "gv", &o) && get_bin(pl, "gv", model.n, 4, &gv) != 0) ||
        get_u32(pl, "t_next", 0, U32_MAX, 1, 0, &t) != 0) {
        return -1;
    }
    need = model_footprint(batch, eb, model.D != NULL, model.hyper.decorrelation);
    d = model.D != NULL;
    if (need > TP_ARENA_BYTES ||
        eb > eval_cap_for(model.n_in, model.n, model.n_out, batch, d,
                          model.hyper.readout_inputs, model.P != NULL)) {
        return refuse(E_TOO_LARGE, "this batch and evaluation batch do not fit in RAM");
    }
    /* Checked before anything changes; the arrays are staged in the I/O buffers when they
     * fit (they do for every state that fits a frame). */
    bound = d ? (int32_t)TP_XH_LIMIT : 65536;
    if (2u * nbn + nen + model.n > IO_MAX) { /* cannot happen: the request fits a frame */
        return refuse(E_TOO_LARGE, "the state does not fit a frame");
    }
    if (check_state("xh1", x1, nbn, bound, io) != 0 ||
        check_state("xh2", x2, nbn, bound, io + nbn) != 0 ||
        check_state("xh_eval", xe, nen, bound, io + 2u * nbn) != 0) {
        return -1;
    }
    if (gv != NULL) {
        if (check_state("gv", gv, model.n, TP_GV_LIMIT, io + 2u * nbn + nen) != 0) {
            return -1;
        }
    } else {
        tp_guard_initial(io + 2u * nbn + nen, model.n);
    }
    if (batch != model.batch || eb > model.eval_cap) {
        tp_model_relayout(&model, batch,
                          eval_cap_for(model.n_in, model.n, model.n_out, batch, d,
                                       model.hyper.readout_inputs, model.P != NULL),
                          d, arena, ARENA_WORDS);
    }
    memcpy(model.xh1, io, nbn * sizeof(int32_t));
    memcpy(model.xh2, io + nbn, nbn * sizeof(int32_t));
    memcpy(model.xh_eval, io + 2u * nbn, nen * sizeof(int32_t));
    memcpy(model.gv, io + 2u * nbn + nen, model.n * sizeof(int32_t));
    model.eval_batch = eb;
    model.counter = counter;
    model.total = total;
    tp_model_reseed(&model, seed);
    model.rng_counter = rng_counter;
    model.pending = 0; /* a pending reward is dropped */
    batch_mode = batch;
    seed_mode = seed;
    start_sequence(t);
    tp_mp_map(w, 0);
    return 0;
}

static int on_predict(const payload_t *pl, tp_mp_writer *w)
{
    uint32_t b, steps, s, nx, ny;
    int reset;
    tp_mp_obj o;
    uint8_t *p;
    if (need_model() != 0 || get_u32(pl, "batch", 1, TP_MAX_BATCH, 0, 0, &b) != 0 ||
        get_bool(pl, "reset", 0, &reset) != 0) {
        return -1;
    }
    nx = b * model.n_in;
    ny = b * model.n_out;
    if (!find(pl, "x", &o) || o.type != TP_MP_BIN || o.len == 0 || o.len % (4u * nx) != 0) {
        refuse(E_BAD_ARGS, "x must be packed int32, a multiple of batch*n_in = ");
        msg_u(nx);
        msg_s(" values");
        return -1;
    }
    steps = o.len / (4u * nx);
    if (check_reply_size((uint64_t)steps * ny * 4u, "the PREDICT reply") != 0) {
        return -1;
    }
    if (b != model.eval_batch) {
        uint64_t need = model_footprint(model.batch, b, model.D != NULL,
                                        model.hyper.decorrelation);
        if (need > TP_ARENA_BYTES || b > model.eval_cap) {
            refuse(E_TOO_LARGE, "evaluation batch ");
            msg_u(b);
            msg_s(" does not fit in RAM");
            return -1;
        }
    }
    tp_mp_map(w, 1);
    tp_mp_str(w, "y_hat");
    p = tp_mp_bin_reserve(w, (size_t)steps * ny * 4u);
    if (p == NULL || nx + ny > IO_MAX) {
        return refuse(E_TOO_LARGE, "the PREDICT reply does not fit a frame");
    }
    for (s = 0; s < steps; s++) {
        load_i32(o.data + (size_t)s * nx * 4u, nx, io);
        tp_predict(&model, io, b, reset && s == 0, io + nx);
        store_i32(p + (size_t)s * ny * 4u, io + nx, ny);
    }
    return 0;
}

/* -- frames in, replies out ----------------------------------------------------------------- */

static void send_bytes(const uint8_t *data, size_t len)
{
    counters.tx_frames++;
    board_uart_write(data, len);
}

/* Encode the frame whose payload the writer built in scratch; returns the encoded size. */
static size_t encode_reply(uint8_t type, uint16_t seq, uint8_t flags, size_t payload_len)
{
    tp_frame f;
    f.version = PROTO_MAJOR;
    f.type = type;
    f.flags = flags;
    f.epoch = epoch;
    f.seq = seq;
    f.payload = scratch + TP_FRAME_HEADER;
    f.payload_len = payload_len;
    return tp_frame_encode(&f, scratch, sizeof scratch, tx_buf, sizeof tx_buf);
}

static int dispatch(const tp_frame *f, const payload_t *pl, tp_mp_writer *w)
{
    if (f->version != PROTO_MAJOR) {
        counters.bad_version++;
        refuse(E_BAD_VERSION, "protocol major version ");
        msg_u(f->version);
        msg_s(" is not supported: this device speaks 1.1");
        return -1;
    }
    if ((f->flags & TP_FLAG_REPLY) != 0 || (f->type & REPLY) != 0) {
        return refuse(E_BAD_FRAME, "the device takes requests, not replies");
    }
    switch (f->type) {
    case MT_HELLO: return on_hello(pl, w);
    case MT_PING: tp_mp_map(w, 0); return 0;
    case MT_DEPLOY_BEGIN: return on_deploy_begin(pl, w);
    case MT_DEPLOY_CHUNK: return on_deploy_chunk(pl, w);
    case MT_DEPLOY_COMMIT: return on_deploy_commit(pl, w);
    case MT_DEPLOY_CONFIRM: return on_deploy_confirm(pl, w);
    case MT_DEPLOY_ABORT: return on_deploy_abort(pl, w);
    case MT_STEP: return on_step(pl, w);
    case MT_REWARD: return refuse(E_BAD_ARGS, "REWARD is sent with the NOREPLY flag");
    case MT_SET_MODE: return on_set_mode(pl, w);
    case MT_GET_MODEL: return on_get_model(pl, w);
    case MT_SAVE_MODEL: return on_save_model(pl, w);
    case MT_RESET: return on_reset(pl, w);
    case MT_STATS: return on_stats(pl, w);
    case MT_STATE_GET: return on_state_get(pl, w);
    case MT_STATE_SET: return on_state_set(pl, w);
    case MT_PREDICT: return on_predict(pl, w);
    default: break;
    }
    refuse(E_UNKNOWN_TYPE, "unknown message type ");
    msg_u(f->type);
    return -1;
}

static void cache_store(uint16_t seq, uint32_t key, uint8_t type, size_t len)
{
    uint32_t k, slot = 0;
    int found = 0;
    for (k = 0; k < TP_RX_WINDOW; k++) {
        if (cache[k].used && cache[k].seq == seq) {
            slot = k, found = 1;
            break;
        }
    }
    if (!found) { /* a free entry, else the oldest */
        for (k = 0; k < TP_RX_WINDOW; k++) {
            if (!cache[k].used) {
                slot = k, found = 1;
                break;
            }
            if (cache[k].age < cache[slot].age) {
                slot = k;
            }
        }
    }
    cache[slot].used = 1;
    cache[slot].seq = seq;
    cache[slot].key = key;
    cache[slot].type = type;
    cache[slot].age = ++cache_clock;
    cache[slot].len = len;
    memcpy(cache[slot].data, tx_buf, len);
}

static void handle(const tp_frame *f)
{
    payload_t pl;
    tp_mp_writer w;
    uint32_t key, k;
    uint8_t type_byte = f->type;
    size_t n;
    int rc;
    pl.p = f->payload;
    pl.len = f->payload_len;
    counters.rx_frames++;
    if (f->flags & TP_FLAG_NOREPLY) {
        if (f->version == PROTO_MAJOR && f->type == MT_REWARD) {
            on_reward(&pl);
        }
        return;
    }
    key = tp_crc32_update(tp_crc32_update(0, &type_byte, 1), f->payload, f->payload_len);
    if (f->type != MT_HELLO) {
        for (k = 0; k < TP_RX_WINDOW; k++) {
            if (cache[k].used && cache[k].seq == f->seq && cache[k].key == key) {
                counters.duplicates++; /* a retransmission: the reply again, not run again */
                send_bytes(cache[k].data, cache[k].len);
                return;
            }
        }
    }
    /* The request's payload lives in the reader's buffer, the reply is built in scratch:
     * they never overlap. */
    tp_mp_writer_init(&w, scratch + TP_FRAME_HEADER,
                      sizeof scratch - TP_FRAME_HEADER - TP_FRAME_CRC);
    rc = dispatch(f, &pl, &w);
    if (rc >= 0 && w.overflow) {
        rc = refuse(E_TOO_LARGE, "the reply does not fit a frame");
    }
    if (rc < 0) {
        tp_mp_writer_init(&w, scratch + TP_FRAME_HEADER,
                          sizeof scratch - TP_FRAME_HEADER - TP_FRAME_CRC);
        tp_mp_map(&w, err.extra_key != NULL ? 3u : 2u);
        kv_str(&w, "code", ERR_NAMES[err.code]);
        kv_str(&w, "msg", err.msg);
        if (err.extra_key != NULL) {
            kv_uint(&w, err.extra_key, err.extra);
        }
        n = encode_reply((uint8_t)(f->type | REPLY), f->seq, TP_FLAG_REPLY | TP_FLAG_ERR, w.len);
    } else {
        n = encode_reply((uint8_t)(f->type | REPLY), f->seq, TP_FLAG_REPLY, w.len);
    }
    if (f->type == MT_HELLO) {
        /* A new session may restart seq anywhere: its requests must not meet old replies.
         * In a 1.1 session the STEP replies stay (they belong to the step sequence). */
        for (k = 0; k < TP_RX_WINDOW; k++) {
            if (!(ordered && cache[k].type == MT_STEP)) {
                cache[k].used = 0;
            }
        }
    } else if (rc >= 0 || err.cache) {
        cache_store(f->seq, key, f->type, n);
    }
    send_bytes(tx_buf, n);
    if (rc == 1) {
        board_reset(); /* RESET device: the reply went out first */
    }
}

void tp_device_boot(void)
{
    tp_mp_writer w;
    size_t n;
    memset(&upload, 0, sizeof upload);
    memset(&counters, 0, sizeof counters);
    memset(cache, 0, sizeof cache);
    learn_mode = 1;
    batch_mode = 1;
    seed_mode = 0;
    ordered = 0;
    t_next = 0;
    tp_frame_reader_init(&reader, rx_buf, sizeof rx_buf, TP_MAX_FRAME);
    if (tp_storage_boot(&meta) != 0) {
        /* The record could not be written: run from what was read, as best we can. */
        meta.boot_count = meta.boot_count == 0 ? 1u : meta.boot_count;
    }
    epoch = (uint8_t)(meta.boot_count & 0xFFu);
    load_active();
    /* The boot announcement: an unsolicited HELLO reply (section 2, boot epoch). */
    tp_mp_writer_init(&w, scratch + TP_FRAME_HEADER,
                      sizeof scratch - TP_FRAME_HEADER - TP_FRAME_CRC);
    hello_payload(&w);
    n = encode_reply(MT_HELLO | REPLY, 0, TP_FLAG_REPLY | TP_FLAG_UNSOLICITED, w.len);
    board_uart_write(tx_buf, n); /* not a reply: not counted in tx_frames */
}

void tp_device_feed(const uint8_t *data, size_t len)
{
    tp_frame f;
    while (tp_frame_reader_feed(&reader, &data, &len, &f)) {
        handle(&f);
    }
}

void tp_firmware_main(void)
{
    static uint8_t buf[256];
    tp_device_boot();
    for (;;) {
        size_t n = board_uart_read(buf, sizeof buf);
        if (n == 0) {
            board_wait();
            continue;
        }
        tp_device_feed(buf, n);
    }
}
