/* msgpack for the protocol's message maps: a writer whose bytes equal msgpack-python's
 * packb(..., use_bin_type=True), and a reader that walks a buffer in place without ever
 * reading outside it.
 *
 * tp_mp_check_map is the payload check of the Python decode_frame, which runs
 * msgpack.unpackb(raw=False, strict_map_key=True) and wants a dict. It accepts exactly
 * what that accepts, with one documented difference:
 *   - one object, no trailing bytes; never 0xc1, never a truncated object;
 *   - the object is a map; the keys of every map, at any depth, are str or bin
 *     (strict_map_key lets bytes keys through, so bin keys are accepted as in Python);
 *   - every str, keys and values at any depth, is valid UTF-8 as Python's strict decoder
 *     has it (raw=False): no overlong forms, no surrogates, nothing above U+10FFFF;
 *   - an ext of type -1 is a msgpack Timestamp, which Python decodes and checks: it must
 *     be 4, 8 or 12 bytes with nanoseconds <= 999999999; the other negative types (-128
 *     to -2, reserved by msgpack) are refused, since Python's ExtType wants 0..127;
 *   - DIFFERENCE: nesting deeper than TP_MP_MAX_DEPTH containers (the payload map counts
 *     as one; an empty container counts too) is refused here, while Python accepts up to
 *     its stack limit (1024). The protocol's messages nest two levels at most; the bound
 *     keeps the walker's state a fixed array on a small stack.
 * unpackb's size limits (max_str_len etc., derived from the buffer length) never refuse a
 * well-formed buffer, so they need no counterpart.
 *
 * Duplicate keys: tp_mp_find returns the value of the LAST occurrence, as a Python dict
 * built by unpackb keeps the last, so both ends of the link read the same value. */
#include <string.h>

#include "msgpack.h"

/* -- reader ---------------------------------------------------------------------------- */

/* Read an n-byte big-endian number at *p (n <= 8), bounds-checked. */
static int take(const uint8_t *buf, size_t len, size_t *p, unsigned n, uint64_t *v)
{
    uint64_t x = 0;
    unsigned k;
    if (n > len - *p)
        return -1;
    for (k = 0; k < n; k++)
        x = x << 8 | buf[(*p)++];
    *v = x;
    return 0;
}

int tp_mp_read(const uint8_t *buf, size_t len, size_t *pos, tp_mp_obj *o)
{
    size_t p = *pos;
    uint64_t v = 0, t = 0;
    unsigned n = 0;     /* bytes of the big-endian argument (value or length) */
    unsigned sbits = 0; /* a signed integer of this many bits (0: unsigned or not an int) */
    int data = 0;       /* v is the length of data bytes that follow (STR, BIN, EXT, FLOAT) */
    uint8_t c;
    if (p >= len)
        return -1;
    c = buf[p++];
    o->type = TP_MP_INT;
    o->b = 0;
    o->i = 0;
    o->u = 0;
    o->data = NULL;
    o->len = 0;
    if (c < 0x80u) {
        v = c;
    } else if (c >= 0xe0u) { /* negative fixint */
        v = c;
        sbits = 8;
    } else if (c < 0x90u) {
        o->type = TP_MP_MAP;
        v = c & 0x0fu;
    } else if (c < 0xa0u) {
        o->type = TP_MP_ARRAY;
        v = c & 0x0fu;
    } else if (c < 0xc0u) {
        o->type = TP_MP_STR;
        v = c & 0x1fu;
        data = 1;
    } else if (c <= 0xc3u) {
        if (c == 0xc1u) /* never used */
            return -1;
        o->type = c == 0xc0u ? TP_MP_NIL : TP_MP_BOOL;
        o->b = c & 1;
    } else if (c <= 0xc6u) { /* bin 8/16/32 */
        o->type = TP_MP_BIN;
        n = 1u << (c - 0xc4u);
        data = 1;
    } else if (c <= 0xc9u) { /* ext 8/16/32: length, then the type byte */
        o->type = TP_MP_EXT;
        n = 1u << (c - 0xc7u);
        data = 1;
    } else if (c <= 0xcbu) { /* float 32/64 */
        o->type = TP_MP_FLOAT;
        v = c == 0xcau ? 4u : 8u;
        data = 1;
    } else if (c <= 0xcfu) { /* uint 8..64 */
        n = 1u << (c - 0xccu);
    } else if (c <= 0xd3u) { /* int 8..64 */
        n = 1u << (c - 0xd0u);
        sbits = 8u * n;
    } else if (c <= 0xd8u) { /* fixext 1..16 */
        o->type = TP_MP_EXT;
        v = 1u << (c - 0xd4u);
        data = 1;
    } else if (c <= 0xdbu) { /* str 8/16/32 */
        o->type = TP_MP_STR;
        n = 1u << (c - 0xd9u);
        data = 1;
    } else if (c <= 0xddu) { /* array 16/32 */
        o->type = TP_MP_ARRAY;
        n = 2u << (c - 0xdcu);
    } else { /* map 16/32 */
        o->type = TP_MP_MAP;
        n = 2u << (c - 0xdeu);
    }
    if (n != 0 && take(buf, len, &p, n, &v) != 0)
        return -1;
    if (o->type == TP_MP_EXT && take(buf, len, &p, 1, &t) != 0)
        return -1;
    if (data) {
        if (v > (uint64_t)(len - p))
            return -1;
        /* EXT, FLOAT: not interpreted by the API; internally an EXT keeps its data and
         * its type in .i, for the Timestamp check of tp_mp_check_map. */
        o->data = buf + p;
        o->len = (uint32_t)v;
        o->i = t >= 0x80u ? (int64_t)t - 256 : (int64_t)t;
        p += (size_t)v;
    } else if (o->type == TP_MP_ARRAY || o->type == TP_MP_MAP) {
        o->len = (uint32_t)v;
    } else if (o->type == TP_MP_INT) {
        if (sbits != 0 && sbits < 64 && (v >> (sbits - 1)) != 0)
            v |= ~(uint64_t)0 << sbits; /* sign-extend */
        if (sbits != 0 && (v >> 63) != 0) {
            o->i = -(int64_t)~v - 1; /* two's complement without an out-of-range cast */
        } else if (v > (uint64_t)INT64_MAX) {
            o->type = TP_MP_UINT;
            o->u = v;
        } else {
            o->i = (int64_t)v;
            o->u = v;
        }
    }
    *pos = p;
    return 0;
}

/* Python's strict UTF-8 decoder: shortest forms only, no surrogates, at most U+10FFFF. */
static int utf8_ok(const uint8_t *s, uint32_t n)
{
    uint32_t k = 0, more, j;
    while (k < n) {
        uint8_t c = s[k++], lo = 0x80u, hi = 0xbfu;
        if (c < 0x80u)
            continue;
        if (c < 0xc2u || c > 0xf4u)
            return 0;
        if (c < 0xe0u) {
            more = 1;
        } else if (c < 0xf0u) {
            more = 2;
            if (c == 0xe0u)
                lo = 0xa0u; /* overlong */
            else if (c == 0xedu)
                hi = 0x9fu; /* surrogates */
        } else {
            more = 3;
            if (c == 0xf0u)
                lo = 0x90u; /* overlong */
            else if (c == 0xf4u)
                hi = 0x8fu; /* above U+10FFFF */
        }
        if (more > n - k || s[k] < lo || s[k] > hi)
            return 0;
        for (j = 1; j < more; j++)
            if ((s[k + j] & 0xc0u) != 0x80u)
                return 0;
        k += more;
    }
    return 1;
}

/* A Timestamp ext (type -1) that msgpack-python would decode without an error. */
static int timestamp_ok(const tp_mp_obj *o)
{
    const uint8_t *d = o->data;
    if (o->len == 4)
        return 1;
    if (o->len != 8 && o->len != 12)
        return 0;
    /* nanoseconds: the top 30 bits of the 64-bit form, the first u32 of the 96-bit one */
    return ((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]) >>
               (o->len == 8 ? 2 : 0) <=
           999999999u;
}

/* Skip one whole object at *pos. strict: also apply Python's checks (see the top). */
static int walk(const uint8_t *buf, size_t len, size_t *pos, int strict)
{
    uint64_t left[TP_MP_MAX_DEPTH]; /* objects still to read in each open container */
    uint8_t is_map[TP_MP_MAX_DEPTH];
    unsigned depth = 0;
    tp_mp_obj o;
    for (;;) {
        if (tp_mp_read(buf, len, pos, &o) != 0)
            return -1;
        if (strict) {
            /* in a map, an even count left means this object is a key */
            if (depth > 0 && is_map[depth - 1] && (left[depth - 1] & 1u) == 0 &&
                o.type != TP_MP_STR && o.type != TP_MP_BIN)
                return -1;
            if (o.type == TP_MP_STR && !utf8_ok(o.data, o.len))
                return -1;
            if (o.type == TP_MP_EXT && o.i < 0 && (o.i != -1 || !timestamp_ok(&o)))
                return -1;
        }
        if (depth > 0)
            left[depth - 1]--;
        if (o.type == TP_MP_ARRAY || o.type == TP_MP_MAP) {
            if (depth == TP_MP_MAX_DEPTH)
                return -1;
            if (o.len > 0) {
                is_map[depth] = o.type == TP_MP_MAP;
                left[depth] = is_map[depth] ? 2u * (uint64_t)o.len : o.len;
                depth++;
            }
        }
        while (depth > 0 && left[depth - 1] == 0)
            depth--;
        if (depth == 0)
            return 0;
    }
}

int tp_mp_skip(const uint8_t *buf, size_t len, size_t *pos)
{
    return walk(buf, len, pos, 0);
}

int tp_mp_check_map(const uint8_t *buf, size_t len)
{
    size_t pos = 0;
    if (len == 0 || ((buf[0] & 0xf0u) != 0x80u && buf[0] != 0xdeu && buf[0] != 0xdfu))
        return -1;
    return walk(buf, len, &pos, 1) == 0 && pos == len ? 0 : -1;
}

int tp_mp_find(const uint8_t *buf, size_t len, const char *key, tp_mp_obj *val,
               size_t *val_pos)
{
    size_t p = 0, at = 0, klen = 0;
    int found = 0;
    uint32_t n;
    tp_mp_obj o;
    while (key[klen] != '\0')
        klen++;
    if (tp_mp_read(buf, len, &p, &o) != 0 || o.type != TP_MP_MAP)
        return 0;
    /* walk every pair, so a duplicate key yields its last value (as Python's dict) */
    for (n = o.len; n > 0; n--) {
        if (tp_mp_read(buf, len, &p, &o) != 0)
            return 0;
        if (o.type == TP_MP_STR && o.len == klen && memcmp(o.data, key, klen) == 0) {
            at = p;
            found = 1;
        }
        if (tp_mp_skip(buf, len, &p) != 0)
            return 0;
    }
    if (!found || tp_mp_read(buf, len, &at, val) != 0)
        return 0;
    if (val_pos != NULL)
        *val_pos = at;
    return 1;
}

/* -- writer ---------------------------------------------------------------------------- */

void tp_mp_writer_init(tp_mp_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = 0;
}

/* Room for n more bytes, or NULL (and overflow set: nothing more is written). */
static uint8_t *room(tp_mp_writer *w, size_t n)
{
    uint8_t *p;
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return NULL;
    }
    p = w->buf + w->len;
    w->len += n;
    return p;
}

/* The tag byte c, then v as an n-byte big-endian number. */
static void tag(tp_mp_writer *w, uint8_t c, uint64_t v, unsigned n)
{
    uint8_t *p = room(w, 1u + n);
    if (p == NULL)
        return;
    *p = c;
    for (; n > 0; n--)
        *++p = (uint8_t)(v >> (8u * (n - 1u)));
}

/* A length header: fix | n below fix_n, else tag8 (if any), tag16, tag16 + 1 (32-bit).
 * Lengths above 2^32 - 1 cannot be encoded: the writer overflows. */
static void header(tp_mp_writer *w, size_t n, uint8_t fix, size_t fix_n, uint8_t tag8,
                   uint8_t tag16)
{
    if (n < fix_n)
        tag(w, (uint8_t)(fix | n), 0, 0);
    else if (tag8 != 0 && n <= 0xffu)
        tag(w, tag8, n, 1);
    else if (n <= 0xffffu)
        tag(w, tag16, n, 2);
    else if ((n >> 16) >> 16 == 0) /* two shifts: size_t may be 32 bits wide */
        tag(w, (uint8_t)(tag16 + 1u), n, 4);
    else
        w->overflow = 1;
}

void tp_mp_map(tp_mp_writer *w, uint32_t pairs)
{
    header(w, pairs, 0x80u, 16, 0, 0xdeu);
}

void tp_mp_array(tp_mp_writer *w, uint32_t n)
{
    header(w, n, 0x90u, 16, 0, 0xdcu);
}

void tp_mp_nil(tp_mp_writer *w)
{
    tag(w, 0xc0u, 0, 0);
}

void tp_mp_bool(tp_mp_writer *w, int v)
{
    tag(w, v ? 0xc3u : 0xc2u, 0, 0);
}

void tp_mp_uint(tp_mp_writer *w, uint64_t v)
{
    if (v < 0x80u)
        tag(w, (uint8_t)v, 0, 0);
    else if (v <= 0xffu)
        tag(w, 0xccu, v, 1);
    else if (v <= 0xffffu)
        tag(w, 0xcdu, v, 2);
    else if (v <= 0xffffffffu)
        tag(w, 0xceu, v, 4);
    else
        tag(w, 0xcfu, v, 8);
}

void tp_mp_int(tp_mp_writer *w, int64_t v)
{
    uint64_t u = (uint64_t)v; /* two's complement bits (a well-defined conversion) */
    if (v >= 0)
        tp_mp_uint(w, u);
    else if (v >= -32)
        tag(w, (uint8_t)u, 0, 0);
    else if (v >= -128)
        tag(w, 0xd0u, u, 1);
    else if (v >= -32768)
        tag(w, 0xd1u, u, 2);
    else if (v >= -2147483647 - 1)
        tag(w, 0xd2u, u, 4);
    else
        tag(w, 0xd3u, u, 8);
}

void tp_mp_str(tp_mp_writer *w, const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    tp_mp_str_n(w, s, n);
}

void tp_mp_str_n(tp_mp_writer *w, const char *s, size_t n)
{
    header(w, n, 0xa0u, 32, 0xd9u, 0xdau);
    tp_mp_raw(w, s, n);
}

void tp_mp_bin(tp_mp_writer *w, const void *data, size_t n)
{
    uint8_t *p = tp_mp_bin_reserve(w, n);
    if (p != NULL && n > 0)
        memcpy(p, data, n);
}

uint8_t *tp_mp_bin_reserve(tp_mp_writer *w, size_t n)
{
    header(w, n, 0, 0, 0xc4u, 0xc5u);
    return room(w, n);
}

void tp_mp_raw(tp_mp_writer *w, const void *data, size_t n)
{
    uint8_t *p = room(w, n);
    if (p != NULL && n > 0)
        memcpy(p, data, n);
}
