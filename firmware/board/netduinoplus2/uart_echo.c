/* Bring-up test app for the board layer (replaces the sources in firmware/app):
 *
 *   APP=firmware/board/netduinoplus2/uart_echo.c firmware/build_arm.sh OUT
 *
 * At boot it writes "twinpass-echo boot N\n", N counting boots across board_reset (a
 * .noinit counter: it survives a system reset, not a power cycle or a new QEMU process).
 * Then every received byte is echoed back, except these commands:
 *   'B'  print the boot line again (output before the host opens the pty is lost)
 *   'T'  print "T <board_millis> <board_micros>\n"
 *   'F'  erase SLOT0, check it reads 0xFF, program a pattern in unaligned pieces, program
 *        over it (bits only clear), check; print "flash ok\n" or "flash fail <step>\n"
 *   'L'  run 10^6 iterations of a 2-instruction loop (subs, bne) between two board_micros()
 *        and print "L <us>\n" (under QEMU -icount shift=0: 1 ns per instruction, so ~2000)
 *   'R'  print "reset\n" and call board_reset()
 * tests/firmware/test_board_qemu.py drives it under QEMU. */
#include <stddef.h>
#include <stdint.h>

#include "board.h"

#define BOOT_MAGIC 0x54504543u /* "TPEC" */

static struct {
    uint32_t magic, count;
} boot __attribute__((section(".noinit")));

static void put(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0') {
        n++;
    }
    board_uart_write((const uint8_t *)s, n);
}

static void put_u32(uint32_t v)
{
    char buf[11];
    size_t i = sizeof buf;
    do {
        buf[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    board_uart_write((const uint8_t *)buf + i, sizeof buf - i);
}

static void boot_line(void)
{
    put("twinpass-echo boot ");
    put_u32(boot.count);
    put("\n");
}

static uint8_t pattern(uint32_t i)
{
    return (uint8_t)((i * 7u + 3u) ^ (i >> 8));
}

/* 0 if ok, else the number of the failed step. */
static int flash_test(void)
{
    const int r = BOARD_FLASH_SLOT0;
    const uint8_t *p = board_flash_ptr(r);
    uint32_t size = board_flash_size(r);
    uint32_t n = size < 6000u ? size - 8u : 6000u;
    uint32_t i, off, chunk;
    uint8_t buf[64];
    if (p == NULL || size < 64u) {
        return 1;
    }
    if (board_flash_erase(r) != 0) {
        return 2;
    }
    for (i = 0; i < size; i++) {
        if (p[i] != 0xFFu) {
            return 3;
        }
    }
    /* [3, 3 + n) in pieces of 1..13 bytes: every alignment of start and end. */
    for (off = 3, chunk = 1; off < 3u + n; off += chunk, chunk = chunk % 13u + 1u) {
        uint32_t len = chunk < 3u + n - off ? chunk : 3u + n - off;
        for (i = 0; i < len; i++) {
            buf[i] = pattern(off + i);
        }
        if (board_flash_program(r, off, buf, len) != 0) {
            return 4;
        }
    }
    for (i = 0; i < size; i++) {
        uint8_t want = (i >= 3u && i < 3u + n) ? pattern(i) : 0xFFu;
        if (p[i] != want) {
            return 5;
        }
    }
    /* Programming over programmed bytes clears bits only: 0x0F over [101, 131). */
    for (i = 0; i < 30u; i++) {
        buf[i] = 0x0Fu;
    }
    if (board_flash_program(r, 101, buf, 30) != 0) {
        return 6;
    }
    for (i = 95; i < 140u; i++) {
        uint8_t want = (i >= 101u && i < 131u) ? (uint8_t)(pattern(i) & 0x0Fu) : pattern(i);
        if (p[i] != want) {
            return 7;
        }
    }
    /* The last byte is programmable; one past the end is refused. */
    buf[0] = 0x5Au;
    if (board_flash_program(r, size - 1u, buf, 1) != 0 || p[size - 1u] != 0x5Au) {
        return 8;
    }
    if (board_flash_program(r, size, buf, 1) == 0 || board_flash_program(r, 0, buf, size + 1u) == 0) {
        return 9;
    }
    if (board_flash_erase(r) != 0 || p[0] != 0xFFu || p[size - 1u] != 0xFFu || p[200] != 0xFFu) {
        return 10;
    }
    return 0;
}

void tp_firmware_main(void)
{
    uint8_t buf[256];
    if (boot.magic != BOOT_MAGIC) {
        boot.magic = BOOT_MAGIC;
        boot.count = 0;
    }
    boot.count++;
    boot_line();
    for (;;) {
        size_t n = board_uart_read(buf, sizeof buf);
        size_t i, start = 0;
        if (n == 0) {
            board_wait();
            continue;
        }
        for (i = 0; i < n; i++) {
            uint8_t c = buf[i];
            if (c != 'B' && c != 'T' && c != 'F' && c != 'L' && c != 'R') {
                continue;
            }
            board_uart_write(buf + start, i - start); /* the echo before the command */
            start = i + 1;
            if (c == 'B') {
                boot_line();
            } else if (c == 'T') {
                uint32_t ms = board_millis();
                uint32_t us = board_micros();
                put("T ");
                put_u32(ms);
                put(" ");
                put_u32(us);
                put("\n");
            } else if (c == 'L') {
                uint32_t t0 = board_micros(), t1, count = 1000000u;
                __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(count)::"cc");
                t1 = board_micros();
                put("L ");
                put_u32(t1 - t0);
                put("\n");
            } else if (c == 'F') {
                int rc = flash_test();
                if (rc == 0) {
                    put("flash ok\n");
                } else {
                    put("flash fail ");
                    put_u32((uint32_t)rc);
                    put("\n");
                }
            } else {
                put("reset\n");
                board_reset();
            }
        }
        board_uart_write(buf + start, n - start);
    }
}
