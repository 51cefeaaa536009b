/* zlib's CRC-32 (reflected polynomial 0xEDB88320), as Python's zlib.crc32. */
#ifndef TP_CRC32_H
#define TP_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: crc = tp_crc32_update(0, a, n) then tp_crc32_update(crc, b, m) equals the
 * CRC of a followed by b (as zlib.crc32(b, zlib.crc32(a))). */
uint32_t tp_crc32_update(uint32_t crc, const uint8_t *data, size_t len);

/* The CRC of n int32 values as little-endian bytes (as zlib.crc32 of a '<i4' array): how a
 * constant table proves it is the one the simulator uses. */
uint32_t tp_crc32_int32_le(const int32_t *values, size_t n);

#endif
