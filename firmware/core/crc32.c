/* zlib's CRC-32, four bits at a time (a 64-byte table: small in flash, fast enough for
 * images of a few hundred KB; the STM32 CRC unit computes another CRC by default). */
#include "crc32.h"

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
    0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
    0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu,
};

uint32_t tp_crc32_update(uint32_t crc, const uint8_t *data, size_t len)
{
    size_t k;
    crc = ~crc;
    for (k = 0; k < len; k++) {
        crc ^= data[k];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
    }
    return ~crc;
}

uint32_t tp_crc32_int32_le(const int32_t *values, size_t n)
{
    uint32_t crc = 0;
    uint8_t le[4];
    size_t k;
    for (k = 0; k < n; k++) {
        uint32_t v = (uint32_t)values[k]; /* conversion to unsigned is modulo 2^32 */
        le[0] = (uint8_t)(v & 0xFFu);
        le[1] = (uint8_t)((v >> 8) & 0xFFu);
        le[2] = (uint8_t)((v >> 16) & 0xFFu);
        le[3] = (uint8_t)((v >> 24) & 0xFFu);
        crc = tp_crc32_update(crc, le, 4);
    }
    return crc;
}
