/* COBS (consistent overhead byte stuffing), docs/protocol.md section 1: the encoding
 * removes every 0x00 byte, so 0x00 only ever delimits frames on the wire. Identical
 * output to the Python `cobs` package (cobs.cobs.encode / decode). */
#ifndef TP_COBS_H
#define TP_COBS_H

#include <stddef.h>
#include <stdint.h>

/* Bytes the encoding of len bytes can take at most (without the 0x00 delimiter). */
#define TP_COBS_MAX_ENCODED(len) ((len) + (len) / 254u + 1u)

/* Encode in[0..len) into out (no delimiter). Returns the encoded length, or 0 if cap is
 * too small (an empty input encodes to the single byte 0x01). */
size_t tp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* Decode in[0..len) (the bytes between two delimiters; must contain no 0x00) into out.
 * Returns 0 and sets *out_len on success; -1 on an invalid encoding (a 0x00 byte, a code
 * byte running past the end) or if cap is too small. out may equal in (in place). */
int tp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

#endif
