/* The model image, format 2 (docs/protocol.md section 7): parse and validate it exactly
 * as the Python parser (twinpass.protocol.model_image.parse) does, load it into a
 * tp_model, and write a model's live weights back as an image.
 *
 * Layout, little-endian: a 96-byte header (magic "TPMI", u16 version 2, u16 header size
 * 96, u16 n_in, N, n_out, u16 flags, u8 activity/weight frac bits 16/24, u8 weight bytes
 * 4, u8 readout, u32 lr_q, sigma_q, eps_q, gain_q, resync_every, lrh_q, mu_q, leak_q,
 * bound_q, guard_every, u32 payload length, u32 im1_q, p0_q (1.4: RLS, section 6.8), 20
 * zero bytes, u32 CRC32 of bytes 0-91), the
 * int32 payload A, R, B (n_out x F, F = N + n_in + 1 with flag 0x10, else N) and D (if
 * flag 0x01), row-major, then a u32 CRC32 of the payload. An image of another format is
 * refused by its version before anything else is read.
 *
 * The image's identity (its sha256, DEPLOY_BEGIN/COMMIT) is the protocol layer's business;
 * the parser, like the Python one, checks the two CRCs. */
#ifndef TP_IMAGE_H
#define TP_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "twinpass_core.h"

#define TP_IMAGE_HEADER_SIZE 96u
#define TP_IMAGE_TRAILER_SIZE 4u
#define TP_IMAGE_PREFIX_SIZE 6u /* magic and version: what every format starts with */
#define TP_IMAGE_VERSION 2u

#define TP_IMAGE_FLAG_D_PRESENT 0x01u
#define TP_IMAGE_FLAG_OUTPUT_CAP 0x02u
#define TP_IMAGE_FLAG_TWO_NOISY 0x04u
#define TP_IMAGE_FLAG_DECORRELATION 0x08u
#define TP_IMAGE_FLAG_READOUT_INPUTS 0x10u
#define TP_IMAGE_KNOWN_FLAGS 0x1Fu

/* Refusals, checked in this order (the Python parser's order). */
typedef enum {
    TP_IMAGE_OK = 0,
    TP_IMAGE_SHORT = 1,           /* shorter than magic and version, or header + trailer */
    TP_IMAGE_BAD_MAGIC = 2,       /* not "TPMI" */
    TP_IMAGE_BAD_VERSION = 3,     /* format version != 2 (the image's: tp_image_version) */
    TP_IMAGE_BAD_HEADER_CRC = 4,  /* CRC32 of bytes 0-91 */
    TP_IMAGE_BAD_FORMAT = 5,      /* header size != 96 or Q formats other than 16/24/4 */
    TP_IMAGE_BAD_FLAGS = 6,       /* unknown flag bits */
    TP_IMAGE_BAD_DIMS = 7,        /* n_in, n_out not in 1..256 or N not in 1..1024 */
    TP_IMAGE_BAD_SIZE = 8,        /* length or payload length do not match: truncated/padded */
    TP_IMAGE_BAD_PAYLOAD_CRC = 9, /* CRC32 of the payload */
    TP_IMAGE_BAD_HYPER = 10       /* hyperparameters out of range */
} tp_image_err;

typedef struct {
    uint32_t n_in, n, n_out;
    uint32_t flags;
    tp_hyper hyper;
    const uint8_t *payload; /* little-endian int32: A, R, B (, D) */
    size_t size;            /* bytes of the whole image */
} tp_image;

/* Bytes of an image of this shape. */
size_t tp_image_size(uint32_t n_in, uint32_t n, uint32_t n_out, int d_present,
                     int readout_inputs);

/* The format version an image says it has (0 if it is too short to say). */
uint32_t tp_image_version(const uint8_t *data, size_t len);

/* Check an image; on success fill img (which points into data). */
tp_image_err tp_image_parse(const uint8_t *data, size_t len, tp_image *img);

/* A short name of an error code ("bad_magic", ...). */
const char *tp_image_strerror(tp_image_err err);

/* tp_model_init with the image's shape and hyperparameters, then its weights. */
int tp_model_load_image(tp_model *m, const tp_image *img, uint32_t batch, uint32_t eval_cap,
                        uint32_t seed, int32_t *mem, size_t words);

/* int32 words tp_model_load_image needs. */
size_t tp_image_model_words(const tp_image *img, uint32_t batch, uint32_t eval_cap);

/* Write the model's live weights and hyperparameters as an image (D stored when the model
 * stores it). Returns the image size, or 0 if cap is too small. */
size_t tp_image_write(const tp_model *m, uint8_t *out, size_t cap);

/* Bytes of the model's live image (tp_image_write's size). */
size_t tp_image_live_size(const tp_model *m);

/* CRC32 of the live image's payload (a pass over the weights): tp_image_read_live's
 * trailer. */
uint32_t tp_image_payload_crc(const tp_model *m);

/* Bytes [off, off + len) of the live image, generated from the weights without a copy of
 * the image (GET_MODEL chunks, SAVE_MODEL into flash, its sha256): equal to the same
 * bytes of tp_image_write's output. payload_crc: tp_image_payload_crc of the same
 * weights. Returns the bytes written (fewer at the end of the image, 0 past it). */
size_t tp_image_read_live(const tp_model *m, uint32_t payload_crc, size_t off, uint8_t *out,
                          size_t len);

#endif
