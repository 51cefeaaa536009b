/* COBS encoder and decoder, byte for byte the Python `cobs` package (cobs.cobs.encode /
 * decode): a block of 254 non-zero bytes ending the input gets no trailing 0x01 code, and
 * the decoder refuses any 0x00 byte and any code byte that runs past the end. */
#include "cobs.h"

size_t tp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t k, o = 1, code_at = 0; /* out[code_at] receives the open block's code byte */
    uint8_t code = 1;
    if (cap == 0)
        return 0;
    for (k = 0; k < len; k++) {
        if (in[k] != 0) {
            if (o >= cap)
                return 0;
            out[o++] = in[k];
            if (++code != 0xFFu)
                continue;
            if (k + 1 == len) { /* a full block ends the input: no new block (as `cobs`) */
                out[code_at] = code;
                return o;
            }
        }
        /* a 0x00 (or a full block): close the block, open the next one */
        out[code_at] = code;
        if (o >= cap)
            return 0;
        code_at = o++;
        code = 1;
    }
    out[code_at] = code;
    return o;
}

int tp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
    /* In place (out == in) is safe: the output never overtakes the input, since every
     * block writes at most as many bytes as it consumes (its code byte pays for the 0x00). */
    size_t k = 0, o = 0, n;
    while (k < len) {
        uint8_t code = in[k++];
        if (code == 0)
            return -1;
        n = (size_t)code - 1u;
        if (n > len - k)
            return -1;
        for (; n > 0; n--) {
            uint8_t b = in[k++];
            if (b == 0 || o >= cap)
                return -1;
            out[o++] = b;
        }
        if (k < len && code != 0xFFu) { /* a block shorter than 254 stood for a 0x00 */
            if (o >= cap)
                return -1;
            out[o++] = 0;
        }
    }
    *out_len = o;
    return 0;
}
