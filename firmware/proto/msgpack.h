/* A small msgpack reader and writer for the protocol's message maps (docs/protocol.md
 * section 3): maps with string keys, integers of every width, bool, nil, str, bin and
 * arrays. No heap: the writer appends into a caller's buffer, the reader walks a buffer
 * in place.
 *
 * The writer always chooses the smallest encoding, as msgpack-python's packb does
 * (positive fixint, uint8..64 for non-negative values; negative fixint, int8..64 for
 * negative ones; fixstr/str8/16/32; bin8/16/32; fixmap/map16/32; fixarray/array16/32), so
 * its bytes equal packb(..., use_bin_type=True) for the same map (keys in the same order).
 *
 * The reader accepts every msgpack type (float32/64 and ext are read as opaque values
 * that can only be skipped), checks every length against the buffer end, and limits
 * nesting depth to TP_MP_MAX_DEPTH: it never reads outside [buf, buf+len). */
#ifndef TP_MSGPACK_H
#define TP_MSGPACK_H

#include <stddef.h>
#include <stdint.h>

#define TP_MP_MAX_DEPTH 8

typedef enum {
    TP_MP_NIL = 0,
    TP_MP_BOOL,
    TP_MP_INT,   /* fits int64: .i (negative values, and non-negative ones <= INT64_MAX) */
    TP_MP_UINT,  /* a positive integer above INT64_MAX: .u */
    TP_MP_STR,   /* .data, .len (not NUL-terminated) */
    TP_MP_BIN,   /* .data, .len */
    TP_MP_ARRAY, /* .len elements follow */
    TP_MP_MAP,   /* .len key/value pairs follow */
    TP_MP_FLOAT, /* float32/float64: not interpreted */
    TP_MP_EXT    /* fixext/ext: not interpreted */
} tp_mp_type;

typedef struct {
    tp_mp_type type;
    int b;               /* BOOL */
    int64_t i;           /* INT */
    uint64_t u;          /* UINT; also set for INT values >= 0 */
    const uint8_t *data; /* STR, BIN */
    uint32_t len;        /* STR, BIN: bytes; ARRAY, MAP: elements / pairs */
} tp_mp_obj;

/* -- reader ---------------------------------------------------------------------------- */

/* Read the object (for ARRAY and MAP: only its header) at *pos; advance *pos past what
 * was read. Returns 0, or -1 on truncated or invalid bytes (0xc1). */
int tp_mp_read(const uint8_t *buf, size_t len, size_t *pos, tp_mp_obj *o);

/* Skip one whole object (arrays and maps with their contents) at *pos. 0 or -1. */
int tp_mp_skip(const uint8_t *buf, size_t len, size_t *pos);

/* 0 if buf[0..len) is exactly one map (no trailing bytes) that Python's decode_frame
 * accepts: the keys of every map, at any depth, are str or bin (msgpack-python's
 * strict_map_key lets bytes keys through), every str is valid UTF-8, an ext has type
 * 0..127 or is a valid Timestamp (-1); and nesting is within TP_MP_MAX_DEPTH (the one
 * difference: Python allows deeper). Else -1. The check a frame's payload must pass. */
int tp_mp_check_map(const uint8_t *buf, size_t len);

/* Find the value of key in the map that starts at buf[0] (a buffer that passed
 * tp_mp_check_map). Returns 1 and fills *val (and, if val_pos is not NULL, *val_pos: the
 * offset just past what tp_mp_read read of the value, so for an ARRAY or MAP value the
 * offset of its first element, after the header) if found, 0 if the key is absent. Only
 * str keys match (a bin key is a different key, as in Python); they compare as bytes. A
 * key present twice yields its last value, as the Python dict unpackb builds. */
int tp_mp_find(const uint8_t *buf, size_t len, const char *key, tp_mp_obj *val,
               size_t *val_pos);

/* -- writer ---------------------------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int overflow; /* set when a write did not fit; later writes are dropped */
} tp_mp_writer;

void tp_mp_writer_init(tp_mp_writer *w, uint8_t *buf, size_t cap);
void tp_mp_map(tp_mp_writer *w, uint32_t pairs);
void tp_mp_array(tp_mp_writer *w, uint32_t n);
void tp_mp_nil(tp_mp_writer *w);
void tp_mp_bool(tp_mp_writer *w, int v);
void tp_mp_int(tp_mp_writer *w, int64_t v);   /* smallest encoding, as packb */
void tp_mp_uint(tp_mp_writer *w, uint64_t v); /* smallest encoding, as packb */
void tp_mp_str(tp_mp_writer *w, const char *s); /* NUL-terminated */
void tp_mp_str_n(tp_mp_writer *w, const char *s, size_t n);
void tp_mp_bin(tp_mp_writer *w, const void *data, size_t n);
/* Write a bin header for n bytes and return where the n bytes go (the caller fills them),
 * or NULL on overflow. */
uint8_t *tp_mp_bin_reserve(tp_mp_writer *w, size_t n);
/* Append raw, already-encoded msgpack bytes. */
void tp_mp_raw(tp_mp_writer *w, const void *data, size_t n);

#endif
