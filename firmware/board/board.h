/* The board layer: what the portable firmware (app/) needs from a target. One header,
 * one implementation per board: board/host (a POSIX process on a pseudo-terminal, with a
 * file as flash; used by the tests) and board/netduinoplus2 (STM32F405, Cortex-M4F;
 * runs under qemu-system-arm -M netduinoplus2 and on STM32F4 boards).
 *
 * Flash is four regions, each erased as a whole to 0xFF and programmed by clearing bits:
 * two metadata regions and two model slots (docs/protocol.md section 8). Reads go through
 * the memory-mapped pointer. */
#ifndef TP_BOARD_H
#define TP_BOARD_H

#include <stddef.h>
#include <stdint.h>

#define BOARD_FLASH_META0 0
#define BOARD_FLASH_META1 1
#define BOARD_FLASH_SLOT0 2
#define BOARD_FLASH_SLOT1 3

/* Set up clocks, the UART, the timer and the flash. Called at every boot. */
void board_init(int argc, char **argv);

/* Copy up to max received bytes into buf without waiting; returns how many. */
size_t board_uart_read(uint8_t *buf, size_t max);

/* Send len bytes; returns once all are queued (blocks while the queue is full). */
void board_uart_write(const uint8_t *buf, size_t len);

/* Sleep until something may have happened (a byte received, a tick); may return early. */
void board_wait(void);

/* Milliseconds since boot (wraps). */
uint32_t board_millis(void);

/* A free-running microsecond clock for timing steps (wraps). */
uint32_t board_micros(void);

/* Reboot the device: send what is queued, then start again from main (does not return). */
void board_reset(void);

/* A short name of the board for HELLO ("netduinoplus2 (STM32F405, Cortex-M4F)"). */
const char *board_name(void);

/* Bytes of RAM the board has in all (HELLO caps.ram_total). */
uint32_t board_ram_total(void);

/* Flash regions: memory-mapped read pointer and size in bytes (0 if the region does not
 * exist); erase to 0xFF; program (clears bits only: a byte that is not erased is
 * programmed with data & current). 0 on success, -1 on a failure (the device's
 * FLASH_FAIL). */
const uint8_t *board_flash_ptr(int region);
uint32_t board_flash_size(int region);
int board_flash_erase(int region);
int board_flash_program(int region, uint32_t off, const uint8_t *data, uint32_t len);

/* The firmware's entry point after board_init (app/device.c). */
void tp_firmware_main(void);

#endif
