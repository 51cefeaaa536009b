/* A freestanding <string.h> for the netduinoplus2 build (-nostdlib, no newlib: Debian's
 * gcc-arm-none-eabi installed without recommends has no C library headers). Declares only
 * what the firmware calls and GCC emits; the definitions are in startup.c. */
#ifndef TP_BOARD_STRING_H
#define TP_BOARD_STRING_H

#include <stddef.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);

#endif
