/* Model storage on the board's flash: the metadata record and the commit rule (see
 * storage.h). All flash access goes through board.h. */
#include "storage.h"

#include <string.h>

#include "board.h"
#include "crc32.h"
#include "sha256.h"

#define META_VERSION 1u

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

/* Layout "<4sHHIIBBBBI32sI32s" + CRC32, as firmware_sim.flash.META. */
static void pack(const tp_meta *m, uint8_t out[TP_META_SIZE])
{
    memset(out, 0, TP_META_SIZE);
    memcpy(out, "TPMD", 4);
    out[4] = (uint8_t)META_VERSION;
    wr32(out + 8, m->seq);
    wr32(out + 12, m->boot_count);
    out[16] = m->active;
    out[17] = m->state;
    out[18] = m->fallback;
    wr32(out + 20, m->len[0]);
    memcpy(out + 24, m->hash[0], 32);
    wr32(out + 56, m->len[1]);
    memcpy(out + 60, m->hash[1], 32);
    wr32(out + 92, tp_crc32_update(0, out, 92));
}

static int unpack(const uint8_t *raw, uint32_t avail, tp_meta *m)
{
    if (avail < TP_META_SIZE || tp_crc32_update(0, raw, 92) != rd32(raw + 92) ||
        memcmp(raw, "TPMD", 4) != 0 || raw[4] != META_VERSION || raw[5] != 0) {
        return -1;
    }
    m->seq = rd32(raw + 8);
    m->boot_count = rd32(raw + 12);
    m->active = raw[16];
    m->state = raw[17];
    m->fallback = raw[18];
    if ((m->active > 1 && m->active != TP_NO_SLOT) ||
        (m->fallback > 1 && m->fallback != TP_NO_SLOT) || m->state > TP_STATE_PENDING) {
        return -1;
    }
    m->len[0] = rd32(raw + 20);
    memcpy(m->hash[0], raw + 24, 32);
    m->len[1] = rd32(raw + 56);
    memcpy(m->hash[1], raw + 60, 32);
    return 0;
}

/* The valid record with the highest seq and its region (-1, a blank record if none). */
static int current(tp_meta *best)
{
    int region = -1, i;
    memset(best, 0, sizeof *best);
    best->active = best->fallback = TP_NO_SLOT;
    for (i = 0; i < 2; i++) {
        tp_meta m;
        const uint8_t *p = board_flash_ptr(BOARD_FLASH_META0 + i);
        if (p != NULL && unpack(p, board_flash_size(BOARD_FLASH_META0 + i), &m) == 0 &&
            (region < 0 || m.seq > best->seq)) {
            *best = m;
            region = i;
        }
    }
    return region;
}

/* Write m with seq = current + 1 into the region not holding the current record. */
static int write_meta(tp_meta *m)
{
    tp_meta cur;
    uint8_t raw[TP_META_SIZE];
    int region = current(&cur);
    int target = region >= 0 ? 1 - region : 0;
    tp_meta next = *m;
    next.seq = region >= 0 ? cur.seq + 1u : 1u;
    pack(&next, raw);
    if (board_flash_erase(BOARD_FLASH_META0 + target) != 0 ||
        board_flash_program(BOARD_FLASH_META0 + target, 0, raw, TP_META_SIZE) != 0 ||
        memcmp(board_flash_ptr(BOARD_FLASH_META0 + target), raw, TP_META_SIZE) != 0) {
        return -1;
    }
    *m = next;
    return 0;
}

uint32_t tp_storage_slot_size(void)
{
    uint32_t a = board_flash_size(BOARD_FLASH_SLOT0), b = board_flash_size(BOARD_FLASH_SLOT1);
    return a < b ? a : b;
}

const uint8_t *tp_storage_slot_ptr(uint32_t slot)
{
    return board_flash_ptr(BOARD_FLASH_SLOT0 + (int)slot);
}

const uint8_t *tp_storage_slot_image(const tp_meta *meta, uint32_t slot)
{
    uint8_t digest[32];
    const uint8_t *p;
    if (slot > 1 || meta->len[slot] == 0 || meta->len[slot] > tp_storage_slot_size()) {
        return NULL;
    }
    p = tp_storage_slot_ptr(slot);
    tp_sha256(p, meta->len[slot], digest);
    return memcmp(digest, meta->hash[slot], 32) == 0 ? p : NULL;
}

int tp_storage_boot(tp_meta *meta)
{
    tp_meta m;
    current(&m);
    if (m.state == TP_STATE_PENDING) {
        uint8_t fb = tp_storage_slot_image(&m, m.fallback) != NULL ? m.fallback : TP_NO_SLOT;
        m.active = fb;
        m.state = fb != TP_NO_SLOT ? TP_STATE_CONFIRMED : TP_STATE_NONE;
        m.fallback = TP_NO_SLOT;
    }
    if (m.active != TP_NO_SLOT && tp_storage_slot_image(&m, m.active) == NULL) {
        /* The active slot does not verify (the commit rule should make this impossible):
         * run the fallback if it does, else nothing. */
        if (tp_storage_slot_image(&m, m.fallback) != NULL) {
            m.active = m.fallback;
        } else {
            m.active = TP_NO_SLOT;
            m.state = TP_STATE_NONE;
        }
        m.fallback = TP_NO_SLOT;
    }
    m.boot_count += 1u;
    *meta = m;
    return write_meta(meta);
}

int tp_storage_begin(const tp_meta *meta, uint32_t *slot)
{
    *slot = meta->active == 0 ? 1u : 0u;
    return board_flash_erase(BOARD_FLASH_SLOT0 + (int)*slot);
}

int tp_storage_write(uint32_t slot, uint32_t off, const uint8_t *data, uint32_t len)
{
    if (off > tp_storage_slot_size() || len > tp_storage_slot_size() - off) {
        return -1;
    }
    return board_flash_program(BOARD_FLASH_SLOT0 + (int)slot, off, data, len);
}

int tp_storage_commit(tp_meta *meta, uint32_t slot, uint32_t len, const uint8_t hash[32],
                      int pending)
{
    uint8_t digest[32];
    tp_meta m = *meta;
    if (slot > 1 || len > tp_storage_slot_size()) {
        return -1;
    }
    tp_sha256(tp_storage_slot_ptr(slot), len, digest);
    if (memcmp(digest, hash, 32) != 0) {
        return -1;
    }
    m.len[slot] = len;
    memcpy(m.hash[slot], hash, 32);
    m.fallback = m.active;
    m.active = (uint8_t)slot;
    m.state = pending ? TP_STATE_PENDING : TP_STATE_CONFIRMED;
    if (write_meta(&m) != 0) {
        return -1;
    }
    *meta = m;
    return 0;
}

int tp_storage_confirm(tp_meta *meta)
{
    tp_meta m = *meta;
    if (m.state != TP_STATE_PENDING) {
        return 0;
    }
    m.state = TP_STATE_CONFIRMED;
    m.fallback = TP_NO_SLOT;
    if (write_meta(&m) != 0) {
        return -1;
    }
    *meta = m;
    return 0;
}

int tp_storage_revert(tp_meta *meta)
{
    tp_meta m = *meta;
    uint8_t fb;
    if (m.state != TP_STATE_PENDING) {
        return 0;
    }
    fb = tp_storage_slot_image(&m, m.fallback) != NULL ? m.fallback : TP_NO_SLOT;
    m.active = fb;
    m.state = fb != TP_NO_SLOT ? TP_STATE_CONFIRMED : TP_STATE_NONE;
    m.fallback = TP_NO_SLOT;
    if (write_meta(&m) != 0) {
        return -1;
    }
    *meta = m;
    return 0;
}

const char *tp_storage_state_name(uint32_t state)
{
    return state == TP_STATE_CONFIRMED ? "confirmed" : state == TP_STATE_PENDING ? "pending"
                                                                                 : "none";
}
