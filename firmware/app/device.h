/* The firmware's protocol device (docs/protocol.md sections 2-4): frames in, replies out.
 *
 * The C counterpart of the Python simulator's request handling
 * (twinpass.firmware_sim.firmware.Firmware): boot from flash, the reply cache and STEP
 * order, every message of section 3 (HELLO, PING, DEPLOY_*, STEP, REWARD, SET_MODE,
 * GET_MODEL, SAVE_MODEL, RESET, STATS, STATE_GET/SET, PREDICT) over the fixed-point core
 * (core/twinpass_core.h) and the flash storage (storage.h). Portable: the board layer
 * (board.h) supplies the UART, the clock and the flash; tp_firmware_main is the loop. */
#ifndef TP_DEVICE_H
#define TP_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#define TP_FW_VERSION "0.2.0-c"
#define TP_MAX_FRAME 2048u /* decoded bytes: header + payload + CRC */
#define TP_RX_WINDOW 4u
#define TP_MAX_STEPS 32u
#define TP_FRAME_OVERHEAD 64u /* header, CRC, COBS and the msgpack keys around a bin */
/* RAM the firmware keeps for itself: frame buffers (~6 KB), the reply cache (~8 KB), the
 * step's I/O buffer (4 KB), the board's UART rings, the model struct and an 8 KB stack.
 * The simulator reserves 16 KiB; the C firmware needs 32, so its model arena (HELLO
 * max_hidden, ram_free, TOO_LARGE) is smaller: 96 KiB on a 128 KiB board. */
#define TP_FIRMWARE_RESERVED (32u * 1024u)
#ifndef TP_ARENA_BYTES
#define TP_ARENA_BYTES (128u * 1024u - TP_FIRMWARE_RESERVED)
#endif

/* Boot: read flash, load the active model, send the unsolicited HELLO announcement. */
void tp_device_boot(void);

/* Feed received bytes: every complete frame is handled and its reply sent. */
void tp_device_feed(const uint8_t *data, size_t len);

/* The main loop: boot, then read the UART and feed it forever. */
void tp_firmware_main(void);

#endif
