/* Frames on the wire: the encoder, and a stream reader that drops and counts bad frames
 * exactly as the Python FrameReader (twinpass.protocol.frame) does, so both ends of the
 * link agree on what is a frame and their STATS counters mean the same thing. */
#include <string.h>

#include "cobs.h"
#include "crc32.h"
#include "frame.h"
#include "msgpack.h"

void tp_frame_reader_init(tp_frame_reader *r, uint8_t *buf, size_t cap, size_t max_frame)
{
    memset(r, 0, sizeof *r);
    r->buf = buf;
    r->cap = cap;
    r->max_frame = max_frame;
}

/* Decode the run held in r->buf (in place); Python's checks in Python's order. */
static int decode(tp_frame_reader *r, tp_frame *f)
{
    uint8_t *b = r->buf;
    size_t n;
    uint32_t crc;
    if (tp_cobs_decode(b, r->len, b, r->len, &n) != 0) {
        r->stats.cobs_errors++;
        return 0;
    }
    if (n > r->max_frame) {
        r->stats.overflows++;
        return 0;
    }
    if (n < TP_FRAME_MIN) {
        r->stats.short_frames++;
        return 0;
    }
    n -= TP_FRAME_CRC;
    crc = (uint32_t)b[n] | (uint32_t)b[n + 1] << 8 | (uint32_t)b[n + 2] << 16 |
          (uint32_t)b[n + 3] << 24;
    if (crc != tp_crc32_update(0, b, n)) {
        r->stats.crc_errors++;
        return 0;
    }
    if (tp_mp_check_map(b + TP_FRAME_HEADER, n - TP_FRAME_HEADER) != 0) {
        r->stats.payload_errors++;
        return 0;
    }
    f->version = b[0];
    f->type = b[1];
    f->flags = b[2];
    f->epoch = b[3];
    f->seq = (uint16_t)(b[4] | b[5] << 8);
    f->payload = b + TP_FRAME_HEADER;
    f->payload_len = n - TP_FRAME_HEADER;
    r->stats.frames++;
    return 1;
}

int tp_frame_reader_feed(tp_frame_reader *r, const uint8_t **data, size_t *len, tp_frame *f)
{
    /* Python's _max_encoded: the longest COBS encoding of a max_frame frame (the buffer is
     * at least that; a smaller one lowers the bound to what it holds). */
    size_t limit = r->max_frame + r->max_frame / 254u + 2u;
    if (limit > r->cap || limit < r->max_frame)
        limit = r->cap;
    while (*len > 0) {
        uint8_t byte = *(*data)++;
        (*len)--;
        if (byte != 0) {
            if (r->overflowing) {
                continue;
            } else if (r->len < limit) {
                r->buf[r->len++] = byte;
            } else { /* too long to be a frame: drop it now, count it at its delimiter */
                r->overflowing = 1;
                r->len = 0;
            }
            continue;
        }
        if (r->overflowing) {
            r->stats.overflows++;
            r->overflowing = 0;
        } else if (r->len > 0 && decode(r, f)) { /* an empty run (0x00 0x00) is no frame */
            r->len = 0;
            return 1;
        }
        r->len = 0;
    }
    return 0;
}

size_t tp_frame_encode(const tp_frame *f, uint8_t *scratch, size_t scratch_cap, uint8_t *out,
                       size_t out_cap)
{
    size_t n = TP_FRAME_HEADER + f->payload_len, enc;
    uint32_t crc;
    if (scratch_cap < TP_FRAME_HEADER + TP_FRAME_CRC ||
        f->payload_len > scratch_cap - TP_FRAME_HEADER - TP_FRAME_CRC || out_cap == 0)
        return 0;
    scratch[0] = f->version;
    scratch[1] = f->type;
    scratch[2] = f->flags;
    scratch[3] = f->epoch;
    scratch[4] = (uint8_t)f->seq;
    scratch[5] = (uint8_t)(f->seq >> 8);
    if (f->payload_len > 0 && f->payload != scratch + TP_FRAME_HEADER)
        memcpy(scratch + TP_FRAME_HEADER, f->payload, f->payload_len);
    crc = tp_crc32_update(0, scratch, n);
    scratch[n++] = (uint8_t)crc;
    scratch[n++] = (uint8_t)(crc >> 8);
    scratch[n++] = (uint8_t)(crc >> 16);
    scratch[n++] = (uint8_t)(crc >> 24);
    enc = tp_cobs_encode(scratch, n, out, out_cap - 1u);
    if (enc == 0)
        return 0;
    out[enc] = 0;
    return enc + 1u;
}
