/* Model storage on the board's flash (docs/protocol.md section 8): two model slots and a
 * double-buffered metadata record, with the commit rule of the Python simulator
 * (twinpass.firmware_sim.flash.Storage), so a torn write never makes a model active:
 *
 * 1. a model is written to the inactive slot (erased first);
 * 2. only then is a record with seq = current + 1 written into the other metadata region;
 * 3. at boot the valid record (magic, version, CRC32) with the highest seq wins, a pending
 *    model reverts to its fallback, the active slot's sha256 is checked, and a record
 *    with boot_count + 1 is written (the protocol's boot epoch).
 *
 * The record is byte-for-byte the simulator's (96 bytes, little-endian), so the host
 * build can boot from a flash file the simulator wrote. */
#ifndef TP_STORAGE_H
#define TP_STORAGE_H

#include <stdint.h>

#define TP_NO_SLOT 0xFFu
#define TP_STATE_NONE 0u
#define TP_STATE_CONFIRMED 1u
#define TP_STATE_PENDING 2u
#define TP_META_SIZE 96u

typedef struct {
    uint32_t seq, boot_count;
    uint8_t active, state, fallback;
    uint32_t len[2];
    uint8_t hash[2][32];
} tp_meta;

/* Boot: choose the model, revert a pending one, count the boot. Returns 0, or -1 if the
 * new record could not be written (the device then runs without persistence). */
int tp_storage_boot(tp_meta *meta);

/* The slot's bytes if the record describes it and they match its sha256, else NULL. */
const uint8_t *tp_storage_slot_image(const tp_meta *meta, uint32_t slot);

/* Size in bytes of one model slot. */
uint32_t tp_storage_slot_size(void);

/* The slot an upload goes to (the inactive one); erase it. 0 or -1 (FLASH_FAIL). */
int tp_storage_begin(const tp_meta *meta, uint32_t *slot);

/* Program bytes into a slot. 0 or -1. */
int tp_storage_write(uint32_t slot, uint32_t off, const uint8_t *data, uint32_t len);

/* Read pointer into a slot. */
const uint8_t *tp_storage_slot_ptr(uint32_t slot);

/* Make the slot active (pending or confirmed) after checking its sha256; the old active
 * slot becomes the fallback. 0, or -1 (FLASH_FAIL: the bytes do not match, or the record
 * could not be written; *meta unchanged). */
int tp_storage_commit(tp_meta *meta, uint32_t slot, uint32_t len, const uint8_t hash[32],
                      int pending);

/* Mark a pending model confirmed (no-op otherwise). 0 or -1. */
int tp_storage_confirm(tp_meta *meta);

/* Drop a pending model now: the fallback (if it verifies) becomes active. 0 or -1. */
int tp_storage_revert(tp_meta *meta);

/* "none", "confirmed", "pending". */
const char *tp_storage_state_name(uint32_t state);

#endif
