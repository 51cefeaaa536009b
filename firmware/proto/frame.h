/* Frames on the wire (docs/protocol.md section 1): COBS(header | payload | CRC32-LE) 0x00,
 * header = version u8, type u8, flags u8, boot_epoch u8, seq u16-LE; payload one msgpack
 * map with string keys; CRC32 (zlib's) over header and payload.
 *
 * tp_frame_reader splits a byte stream at 0x00 delimiters and decodes frames exactly as
 * the Python FrameReader (twinpass.protocol.frame) does, counting what it drops under
 * the same five kinds; tp_frame_encode writes one frame. No heap: the reader works in a
 * caller-provided buffer. */
#ifndef TP_FRAME_H
#define TP_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define TP_FRAME_HEADER 6u
#define TP_FRAME_CRC 4u
#define TP_FRAME_MIN (TP_FRAME_HEADER + 1u + TP_FRAME_CRC) /* header, {} , CRC */

#define TP_FLAG_REPLY 0x01u
#define TP_FLAG_NOREPLY 0x02u
#define TP_FLAG_UNSOLICITED 0x04u
#define TP_FLAG_ERR 0x08u

typedef struct {
    uint8_t version, type, flags, epoch;
    uint16_t seq;
    const uint8_t *payload; /* msgpack map (points into the reader's buffer) */
    size_t payload_len;
} tp_frame;

typedef struct {
    uint32_t frames, cobs_errors, crc_errors, short_frames, payload_errors, overflows;
} tp_frame_stats;

typedef struct {
    uint8_t *buf;      /* caller's buffer: >= TP_COBS_MAX_ENCODED(max_frame) + 1 bytes */
    size_t cap;
    size_t max_frame;  /* largest decoded frame (header + payload + CRC) accepted */
    size_t len;        /* bytes held since the last delimiter */
    int overflowing;   /* the current run exceeded the largest encoded frame */
    tp_frame_stats stats;
} tp_frame_reader;

void tp_frame_reader_init(tp_frame_reader *r, uint8_t *buf, size_t cap, size_t max_frame);

/* Feed bytes from *data (advancing *data and *len) until one frame is complete.
 * Returns 1 with *f filled (valid until the next call) when a frame was decoded; 0 when
 * the input is used up with no complete frame. Bad frames are dropped and counted, and
 * consecutive delimiters are not frames (as in Python). */
int tp_frame_reader_feed(tp_frame_reader *r, const uint8_t **data, size_t *len, tp_frame *f);

/* Encode a frame into out: COBS of header|payload|CRC, then the 0x00 delimiter.
 * scratch (>= TP_FRAME_HEADER + payload_len + TP_FRAME_CRC bytes) holds the raw frame;
 * payload may already lie in scratch at offset TP_FRAME_HEADER (then it is not copied).
 * Returns the bytes written to out, or 0 if out or scratch is too small. */
size_t tp_frame_encode(const tp_frame *f, uint8_t *scratch, size_t scratch_cap, uint8_t *out,
                       size_t out_cap);

#endif
