/* Test-only glue for tests/firmware/test_c_proto.py; never part of the firmware.
 *
 * tp_shim_read_stream feeds a byte stream to a tp_frame_reader in chunks and writes the
 * frames it yields as records (6 header bytes, payload length u32-LE, payload).
 *
 * Built with -DTP_SHIM_MAIN it is a standalone driver for the sanitizer run (ASan and
 * UBSan cannot easily be loaded into Python through ctypes). It reads records from stdin,
 * each: kind u8, length u32-LE, bytes, and prints one line per record:
 *   'm' msgpack: "m <check_map> <skip> <end of skip> <find "a"> <find "">"
 *   'c' COBS:    "c -1" or "c 0 <hex of the decoded bytes>"; also decodes in place
 *   'f' frames:  max_frame u32-LE, chunk seed u32-LE, then the stream; prints
 *                "f <hex of every frame record>" then the six stats counters.
 * Every input is copied into a heap block of exactly its size, so ASan sees any read past
 * its end. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cobs.h"
#include "frame.h"
#include "msgpack.h"

size_t tp_shim_read_stream(const uint8_t *stream, size_t len, const size_t *cuts,
                           size_t ncuts, size_t max_frame, uint8_t *rbuf, size_t rcap,
                           uint8_t *out, size_t out_cap, uint32_t stats[6]);

size_t tp_shim_read_stream(const uint8_t *stream, size_t len, const size_t *cuts,
                           size_t ncuts, size_t max_frame, uint8_t *rbuf, size_t rcap,
                           uint8_t *out, size_t out_cap, uint32_t stats[6])
{
    tp_frame_reader r;
    tp_frame f;
    size_t k, start = 0, o = 0;
    tp_frame_reader_init(&r, rbuf, rcap, max_frame);
    for (k = 0; k <= ncuts; k++) { /* chunk k ends at cuts[k] (the last at len) */
        size_t end = k < ncuts ? cuts[k] : len;
        const uint8_t *data = stream + start;
        size_t n = end - start;
        while (tp_frame_reader_feed(&r, &data, &n, &f)) {
            if (out_cap - o < 10u + f.payload_len)
                return (size_t)-1;
            out[o++] = f.version;
            out[o++] = f.type;
            out[o++] = f.flags;
            out[o++] = f.epoch;
            out[o++] = (uint8_t)f.seq;
            out[o++] = (uint8_t)(f.seq >> 8);
            out[o++] = (uint8_t)f.payload_len;
            out[o++] = (uint8_t)(f.payload_len >> 8);
            out[o++] = (uint8_t)(f.payload_len >> 16);
            out[o++] = (uint8_t)(f.payload_len >> 24);
            memcpy(out + o, f.payload, f.payload_len);
            o += f.payload_len;
        }
        if (n != 0 || data != stream + end)
            return (size_t)-2; /* feed returned 0 without using up its input */
        start = end;
    }
    stats[0] = r.stats.frames;
    stats[1] = r.stats.cobs_errors;
    stats[2] = r.stats.crc_errors;
    stats[3] = r.stats.short_frames;
    stats[4] = r.stats.payload_errors;
    stats[5] = r.stats.overflows;
    return o;
}

#ifdef TP_SHIM_MAIN
#include <stdio.h>
#include <stdlib.h>

static void hex(const uint8_t *p, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++)
        printf("%02x", p[k]);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void msgpack_case(const uint8_t *src, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    size_t pos = 0, vpos = 0;
    tp_mp_obj o;
    int check, skip, fa, fe;
    memcpy(b, src, len);
    check = tp_mp_check_map(b, len);
    skip = tp_mp_skip(b, len, &pos);
    fa = tp_mp_find(b, len, "a", &o, &vpos);
    fe = tp_mp_find(b, len, "", &o, NULL);
    /* read every object header in turn until one fails */
    vpos = 0;
    while (tp_mp_read(b, len, &vpos, &o) == 0 && vpos < len) {
    }
    printf("m %d %d %lu %d %d\n", check, skip, skip == 0 ? (unsigned long)pos : 0ul, fa, fe);
    free(b);
}

static void cobs_case(const uint8_t *src, size_t len)
{
    uint8_t *b = malloc(len ? len : 1), *out = malloc(len ? len : 1);
    size_t n = 0, m = 0;
    int rc, rc2;
    memcpy(b, src, len);
    rc = tp_cobs_decode(b, len, out, len, &n);
    rc2 = tp_cobs_decode(b, len, b, len, &m); /* in place */
    if (rc != rc2 || (rc == 0 && (n != m || memcmp(out, b, n) != 0))) {
        printf("c in-place mismatch\n");
    } else if (rc != 0) {
        printf("c -1\n");
    } else {
        printf("c 0 ");
        hex(out, n);
        printf("\n");
    }
    free(b);
    free(out);
}

static void frame_case(const uint8_t *src, size_t len)
{
    size_t max_frame, rcap, ncuts = 0, k, n, out_cap;
    uint32_t seed, stats[6];
    uint8_t *stream, *rbuf, *out;
    size_t *cuts;
    if (len < 8) {
        printf("f bad record\n");
        return;
    }
    max_frame = le32(src);
    seed = le32(src + 4);
    src += 8;
    len -= 8;
    rcap = TP_COBS_MAX_ENCODED(max_frame) + 1u;
    stream = malloc(len ? len : 1);
    rbuf = malloc(rcap);
    out_cap = 2 * len + 16;
    out = malloc(out_cap);
    cuts = malloc((len + 1) * sizeof *cuts);
    memcpy(stream, src, len);
    for (k = 1; k < len; k++) { /* chunk boundaries from a small LCG */
        seed = seed * 1664525u + 1013904223u;
        if ((seed >> 28) < 3u)
            cuts[ncuts++] = k;
    }
    n = tp_shim_read_stream(stream, len, cuts, ncuts, max_frame, rbuf, rcap, out, out_cap,
                            stats);
    printf("f ");
    if (n > out_cap)
        printf("error %ld", (long)n);
    else
        hex(out, n);
    for (k = 0; k < 6; k++)
        printf(" %lu", (unsigned long)stats[k]);
    printf("\n");
    free(stream);
    free(rbuf);
    free(out);
    free(cuts);
}

int main(void)
{
    size_t cap = 1 << 16, len = 0, at = 0, n;
    uint8_t *in = malloc(cap);
    while ((n = fread(in + len, 1, cap - len, stdin)) > 0) {
        len += n;
        if (len == cap)
            in = realloc(in, cap *= 2);
    }
    while (len - at >= 5) {
        uint8_t kind = in[at];
        n = le32(in + at + 1);
        at += 5;
        if (n > len - at)
            break;
        if (kind == 'm')
            msgpack_case(in + at, n);
        else if (kind == 'c')
            cobs_case(in + at, n);
        else if (kind == 'f')
            frame_case(in + at, n);
        at += n;
    }
    free(in);
    return 0;
}
#endif
