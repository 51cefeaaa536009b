/* tanh by table with linear interpolation (docs/protocol.md section 6.2). */
#ifndef TP_TANH_TABLE_H
#define TP_TANH_TABLE_H

#include <stdint.h>

#define TP_TANH_SIZE 1025u /* tanh(k / 128), k = 0..1024 */
#define TP_TANH_SHIFT 9    /* table step 2^-7 in Q16: index = |a| >> 9 */
#define TP_TANH_TABLE_CRC32 0x4616d492u

extern const int32_t tp_tanh_table[TP_TANH_SIZE];

/* zlib CRC32 of the table as little-endian int32 (must equal TP_TANH_TABLE_CRC32). */
uint32_t tp_tanh_table_crc32(void);

/* tanh of a Q16.16 value, in [-65536, 65536]; odd; saturates for |a| >= 8. */
int32_t tp_tanh_q16(int32_t a);

#endif
