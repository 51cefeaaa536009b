#include "image.h"

#include <string.h>

#include "crc32.h"

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

/* Two's complement int32 from its bit pattern, without an implementation-defined cast. */
static int32_t as_i32(uint32_t v)
{
    return v <= 0x7FFFFFFFu ? (int32_t)v : -(int32_t)(~v) - 1;
}

static void wr16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
}

static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)((v >> 24) & 0xFFu);
}

size_t tp_image_size(uint32_t n_in, uint32_t n, uint32_t n_out, int d_present,
                     int readout_inputs)
{
    size_t nn = n, nf = nn + (readout_inputs ? (size_t)n_in + 1u : 0u);
    size_t values = nn * n_in + nn * nn + (size_t)n_out * nf + (d_present ? nn * nn : 0);
    return TP_IMAGE_HEADER_SIZE + 4 * values + TP_IMAGE_TRAILER_SIZE;
}

uint32_t tp_image_version(const uint8_t *data, size_t len)
{
    return len < TP_IMAGE_PREFIX_SIZE ? 0u : rd16(data + 4);
}

tp_image_err tp_image_parse(const uint8_t *data, size_t len, tp_image *img)
{
    uint32_t n_in, n, n_out, flags, plen;
    size_t expected;
    const uint8_t *payload;
    if (len < TP_IMAGE_PREFIX_SIZE) {
        return TP_IMAGE_SHORT;
    }
    if (memcmp(data, "TPMI", 4) != 0) {
        return TP_IMAGE_BAD_MAGIC;
    }
    if (rd16(data + 4) != TP_IMAGE_VERSION) {
        return TP_IMAGE_BAD_VERSION;
    }
    if (len < TP_IMAGE_HEADER_SIZE + TP_IMAGE_TRAILER_SIZE) {
        return TP_IMAGE_SHORT;
    }
    if (tp_crc32_update(0, data, TP_IMAGE_HEADER_SIZE - 4) != rd32(data + 92)) {
        return TP_IMAGE_BAD_HEADER_CRC;
    }
    if (rd16(data + 6) != TP_IMAGE_HEADER_SIZE || data[16] != 16 || data[17] != 24 ||
        data[18] != 4) {
        return TP_IMAGE_BAD_FORMAT;
    }
    n_in = rd16(data + 8);
    n = rd16(data + 10);
    n_out = rd16(data + 12);
    flags = rd16(data + 14);
    if (flags & ~TP_IMAGE_KNOWN_FLAGS) {
        return TP_IMAGE_BAD_FLAGS;
    }
    if (n_in < 1 || n_in > TP_MAX_IO || n < 1 || n > TP_MAX_HIDDEN || n_out < 1 ||
        n_out > TP_MAX_IO) {
        return TP_IMAGE_BAD_DIMS;
    }
    expected = tp_image_size(n_in, n, n_out, (flags & TP_IMAGE_FLAG_D_PRESENT) != 0,
                             (flags & TP_IMAGE_FLAG_READOUT_INPUTS) != 0);
    plen = rd32(data + 60);
    if (len != expected ||
        plen != expected - TP_IMAGE_HEADER_SIZE - TP_IMAGE_TRAILER_SIZE) {
        return TP_IMAGE_BAD_SIZE;
    }
    payload = data + TP_IMAGE_HEADER_SIZE;
    if (tp_crc32_update(0, payload, plen) != rd32(data + len - TP_IMAGE_TRAILER_SIZE)) {
        return TP_IMAGE_BAD_PAYLOAD_CRC;
    }
    img->hyper.lr_q = rd32(data + 20);
    img->hyper.sigma_q = rd32(data + 24);
    img->hyper.eps_q = rd32(data + 28);
    img->hyper.gain_q = rd32(data + 32);
    img->hyper.resync_every = rd32(data + 36);
    img->hyper.lrh_q = rd32(data + 40);
    img->hyper.mu_q = rd32(data + 44);
    img->hyper.leak_q = rd32(data + 48);
    img->hyper.bound_q = rd32(data + 52);
    img->hyper.guard_every = rd32(data + 56);
    img->hyper.im1_q = rd32(data + 64);
    img->hyper.p0_q = rd32(data + 68);
    img->hyper.readout = data[19];
    img->hyper.output_cap = (flags & TP_IMAGE_FLAG_OUTPUT_CAP) != 0;
    img->hyper.two_noisy = (flags & TP_IMAGE_FLAG_TWO_NOISY) != 0;
    img->hyper.decorrelation = (flags & TP_IMAGE_FLAG_DECORRELATION) != 0;
    img->hyper.readout_inputs = (flags & TP_IMAGE_FLAG_READOUT_INPUTS) != 0;
    if (!tp_hyper_valid(&img->hyper)) {
        return TP_IMAGE_BAD_HYPER;
    }
    img->n_in = n_in;
    img->n = n;
    img->n_out = n_out;
    img->flags = flags;
    img->payload = payload;
    img->size = len;
    return TP_IMAGE_OK;
}

const char *tp_image_strerror(tp_image_err err)
{
    switch (err) {
    case TP_IMAGE_OK: return "ok";
    case TP_IMAGE_SHORT: return "short";
    case TP_IMAGE_BAD_MAGIC: return "bad_magic";
    case TP_IMAGE_BAD_VERSION: return "bad_version";
    case TP_IMAGE_BAD_HEADER_CRC: return "bad_header_crc";
    case TP_IMAGE_BAD_FORMAT: return "bad_format";
    case TP_IMAGE_BAD_FLAGS: return "bad_flags";
    case TP_IMAGE_BAD_DIMS: return "bad_dims";
    case TP_IMAGE_BAD_SIZE: return "bad_size";
    case TP_IMAGE_BAD_PAYLOAD_CRC: return "bad_payload_crc";
    case TP_IMAGE_BAD_HYPER: return "bad_hyper";
    }
    return "unknown";
}

static int image_d_stored(const tp_image *img)
{
    return (img->flags & TP_IMAGE_FLAG_D_PRESENT) != 0 || img->hyper.decorrelation;
}

size_t tp_image_model_words(const tp_image *img, uint32_t batch, uint32_t eval_cap)
{
    return tp_model_words(img->n_in, img->n, img->n_out, batch, eval_cap, image_d_stored(img),
                          img->hyper.readout_inputs, img->hyper.readout == TP_READOUT_RLS);
}

static const uint8_t *load(int32_t *dst, size_t count, const uint8_t *src)
{
    size_t k;
    for (k = 0; k < count; k++, src += 4) {
        dst[k] = as_i32(rd32(src));
    }
    return src;
}

int tp_model_load_image(tp_model *m, const tp_image *img, uint32_t batch, uint32_t eval_cap,
                        uint32_t seed, int32_t *mem, size_t words)
{
    const uint8_t *p = img->payload;
    size_t n = img->n;
    int rc = tp_model_init(m, img->n_in, img->n, img->n_out, batch, eval_cap,
                           image_d_stored(img), &img->hyper, seed, mem, words);
    if (rc != TP_OK) {
        return rc;
    }
    p = load(m->A, n * img->n_in, p);
    p = load(m->R, n * n, p);
    p = load(m->B, (size_t)img->n_out * m->n_f, p);
    if (img->flags & TP_IMAGE_FLAG_D_PRESENT) {
        load(m->D, n * n, p); /* else D stays the identity tp_model_init wrote */
    }
    return TP_OK;
}

static uint8_t *store(uint8_t *dst, const int32_t *src, size_t count)
{
    size_t k;
    for (k = 0; k < count; k++, dst += 4) {
        wr32(dst, (uint32_t)src[k]); /* conversion to unsigned is modulo 2^32 */
    }
    return dst;
}

/* The live image's 96-byte header, with the payload's length. */
static void write_header(const tp_model *m, uint8_t *out)
{
    const int d = m->D != NULL;
    const size_t size = tp_image_live_size(m);
    const size_t plen = size - TP_IMAGE_HEADER_SIZE - TP_IMAGE_TRAILER_SIZE;
    uint32_t flags = (d ? TP_IMAGE_FLAG_D_PRESENT : 0) |
                     (m->hyper.output_cap ? TP_IMAGE_FLAG_OUTPUT_CAP : 0) |
                     (m->hyper.two_noisy ? TP_IMAGE_FLAG_TWO_NOISY : 0) |
                     (m->hyper.decorrelation ? TP_IMAGE_FLAG_DECORRELATION : 0) |
                     (m->hyper.readout_inputs ? TP_IMAGE_FLAG_READOUT_INPUTS : 0);
    memset(out, 0, TP_IMAGE_HEADER_SIZE);
    memcpy(out, "TPMI", 4);
    wr16(out + 4, TP_IMAGE_VERSION);
    wr16(out + 6, TP_IMAGE_HEADER_SIZE);
    wr16(out + 8, m->n_in);
    wr16(out + 10, m->n);
    wr16(out + 12, m->n_out);
    wr16(out + 14, flags);
    out[16] = 16;
    out[17] = 24;
    out[18] = 4;
    out[19] = m->hyper.readout;
    wr32(out + 20, m->hyper.lr_q);
    wr32(out + 24, m->hyper.sigma_q);
    wr32(out + 28, m->hyper.eps_q);
    wr32(out + 32, m->hyper.gain_q);
    wr32(out + 36, m->hyper.resync_every);
    wr32(out + 40, m->hyper.lrh_q);
    wr32(out + 44, m->hyper.mu_q);
    wr32(out + 48, m->hyper.leak_q);
    wr32(out + 52, m->hyper.bound_q);
    wr32(out + 56, m->hyper.guard_every);
    wr32(out + 60, (uint32_t)plen);
    wr32(out + 64, m->hyper.im1_q);
    wr32(out + 68, m->hyper.p0_q);
    wr32(out + 92, tp_crc32_update(0, out, TP_IMAGE_HEADER_SIZE - 4));
}

size_t tp_image_write(const tp_model *m, uint8_t *out, size_t cap)
{
    const int d = m->D != NULL;
    const size_t size = tp_image_live_size(m);
    const size_t plen = size - TP_IMAGE_HEADER_SIZE - TP_IMAGE_TRAILER_SIZE;
    const size_t n = m->n;
    uint8_t *p;
    if (cap < size) {
        return 0;
    }
    write_header(m, out);
    p = out + TP_IMAGE_HEADER_SIZE;
    p = store(p, m->A, n * m->n_in);
    p = store(p, m->R, n * n);
    p = store(p, m->B, (size_t)m->n_out * m->n_f);
    if (d) {
        p = store(p, m->D, n * n);
    }
    wr32(p, tp_crc32_update(0, out + TP_IMAGE_HEADER_SIZE, plen));
    return size;
}

/* The payload's weights in image order (A, R, B, D) as one sequence of words: word k. */
static int32_t payload_word(const tp_model *m, size_t k)
{
    const size_t n = m->n, na = n * m->n_in, nr = n * n, nb = (size_t)m->n_out * m->n_f;
    if (k < na) {
        return m->A[k];
    }
    k -= na;
    if (k < nr) {
        return m->R[k];
    }
    k -= nr;
    if (k < nb) {
        return m->B[k];
    }
    return m->D[k - nb];
}

size_t tp_image_live_size(const tp_model *m)
{
    return tp_image_size(m->n_in, m->n, m->n_out, m->D != NULL, m->hyper.readout_inputs);
}

uint32_t tp_image_payload_crc(const tp_model *m)
{
    const size_t words = (tp_image_live_size(m) - TP_IMAGE_HEADER_SIZE - TP_IMAGE_TRAILER_SIZE) / 4;
    uint8_t buf[64];
    uint32_t crc = 0;
    size_t k = 0, j;
    while (k < words) {
        size_t chunk = words - k < 16 ? words - k : 16;
        for (j = 0; j < chunk; j++) {
            wr32(buf + 4 * j, (uint32_t)payload_word(m, k + j));
        }
        crc = tp_crc32_update(crc, buf, 4 * chunk);
        k += chunk;
    }
    return crc;
}

size_t tp_image_read_live(const tp_model *m, uint32_t payload_crc, size_t off, uint8_t *out,
                          size_t len)
{
    const size_t size = tp_image_live_size(m);
    const size_t pend = size - TP_IMAGE_TRAILER_SIZE;
    uint8_t header[TP_IMAGE_HEADER_SIZE], word[4];
    size_t done = 0;
    if (off >= size) {
        return 0;
    }
    if (len > size - off) {
        len = size - off;
    }
    if (off < TP_IMAGE_HEADER_SIZE) {
        size_t k = TP_IMAGE_HEADER_SIZE - off < len ? TP_IMAGE_HEADER_SIZE - off : len;
        write_header(m, header);
        memcpy(out, header + off, k);
        done = k;
    }
    while (done < len) {
        size_t pos = off + done, k;
        if (pos < pend) {
            size_t w = (pos - TP_IMAGE_HEADER_SIZE) / 4, b = (pos - TP_IMAGE_HEADER_SIZE) % 4;
            wr32(word, (uint32_t)payload_word(m, w));
            k = 4 - b;
            if (k > len - done) {
                k = len - done;
            }
            memcpy(out + done, word + b, k);
        } else {
            size_t b = pos - pend;
            wr32(word, payload_crc);
            k = 4 - b < len - done ? 4 - b : len - done;
            memcpy(out + done, word + b, k);
        }
        done += k;
    }
    return len;
}
