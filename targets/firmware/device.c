/* device.c - protocol v1 message handling (see device.h and docs/protocol.md), the compact messages
 * evaluate-chain (0x09), update-last (0x0A) and load-batch-u8 (0x0B) included. θ, the batch and the
 * forward passes live in a store (store.h): the reference firmware's arena or the RTL accelerator. */
#include "device.h"

#include <string.h>

#include "ezdir.h"
#include "model.h"
#include "store.h"
#include "wire.h"

enum { HELLO = 0x01, SET_MODEL = 0x02, WRITE_WEIGHTS = 0x03, LOAD_BATCH = 0x04, EVALUATE = 0x05, UPDATE = 0x06,
       READ_WEIGHTS = 0x07, CHECKPOINT = 0x08, EVALUATE_CHAIN = 0x09, UPDATE_LAST = 0x0A, LOAD_BATCH_U8 = 0x0B,
       RESET = 0x0F, RESPONSE = 0x80, ERROR = 0xFF };
enum { E_VERSION = 1, E_TYPE, E_LENGTH, E_NO_MODEL, E_NO_BATCH, E_MEMORY, E_ARG, E_STEP };
#define VERSION 1
#define HEADER 4
#define BODY_MAX (EZ_MAX_FRAME - HEADER - 2 - 2)
#define LAST_SEEDS (BODY_MAX / 4) /* one per loss of an evaluate response */

static struct {
    uint16_t boot_id;
    int have_model;
    ez_model m;
    uint32_t ram, step;
    uint8_t *by;             /* the store's label buffer */
    uint8_t xword[4];        /* the float32 input being assembled (load-batch) */
    int have_batch;
    uint32_t batch_id, batch_total, batch_loaded, batch_width; /* width: bytes per feature, 4 f32 or 1 u8 */
    float batch_scale;
    /* the last evaluate's distinct non-zero-multiplier seeds (first appearance), for update-last */
    uint32_t last_kind, last_off, last_cnt, last_n;
    uint32_t last_seeds[LAST_SEEDS];
} D;

static uint8_t rx[EZ_MAX_FRAME + 1];        /* one incoming frame (COBS, decoded in place) */
static size_t rx_len;
static int rx_overflow;
static uint8_t resp_raw[EZ_MAX_FRAME];       /* header + body + crc of the response */
static uint8_t tx[EZ_MAX_FRAME + 8];         /* the encoded response, cached for retransmissions */
static size_t tx_len;
static int last_valid;
static uint16_t last_seq;
static uint8_t last_type;

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static float rdf(const uint8_t *p)
{
    uint32_t u = rd32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static void wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wrf(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    wr32(p, u);
}

void ez_device_init(uint16_t boot_id)
{
    memset(&D, 0, sizeof D);
    D.boot_id = boot_id;
    rx_len = 0;
    rx_overflow = 0;
    last_valid = 0;
    ez_store_reset();
}

/* ---- responses: body written at resp_raw + HEADER; return its length or an error ---- */
static uint8_t *out_body = resp_raw + HEADER;
static int err_code;
static const char *err_text;

static long fail(int code, const char *why)
{
    err_code = code;
    err_text = why;
    return -1;
}

static uint64_t batch_bytes(void) { return (uint64_t)D.batch_total * ((uint64_t)D.batch_width * D.m.in_features + 1); }

static long h_hello(const uint8_t *b, uint32_t n)
{
    (void)b; (void)n;
    out_body[0] = VERSION;
    wr16(out_body + 1, EZ_MAX_FRAME);
    wr32(out_body + 3, ez_store_sram_bytes());
    wr16(out_body + 7, D.boot_id);
    wr32(out_body + 9, D.step);
    out_body[13] = (uint8_t)((D.have_model ? 1 : 0) | 2); /* bit 1: compact messages 0x09-0x0B */
    size_t len = strlen(EZ_DEVICE_NAME);
    memcpy(out_body + 14, EZ_DEVICE_NAME, len);
    return (long)(14 + len);
}

static long h_set_model(const uint8_t *b, uint32_t n)
{
    static ez_model m;
    const char *why;
    uint32_t ram;
    int parsed = ez_model_parse(&m, b, n, &why);
    if (parsed == EZ_TOO_LARGE)
        return fail(E_MEMORY, why);
    if (parsed)
        return fail(E_LENGTH, why);
    if (ez_store_set_model(&m, &ram, &why))
        return fail(E_MEMORY, why);
    D.m = m;
    D.have_model = 1;
    D.ram = ram;
    D.step = 0;
    D.have_batch = 0;
    D.last_n = 0;
    D.by = ez_store_labels();
    wr32(out_body, m.n_params);
    wr32(out_body + 4, ram);
    return 8;
}

static int range_ok(uint32_t offset, uint32_t count)
{
    return offset <= D.m.n_params && count <= D.m.n_params - offset;
}

static long h_write_weights(const uint8_t *b, uint32_t n)
{
    if (n < 4 || (n - 4) % 4)
        return fail(E_LENGTH, "write_weights: u32 offset then float32 values");
    uint32_t off = rd32(b), cnt = (n - 4) / 4;
    if (!range_ok(off, cnt))
        return fail(E_ARG, "write_weights: range outside the parameters");
    for (uint32_t i = 0; i < cnt; i++)
        ez_store_write_weight(off + i, rdf(b + 4 + 4 * i));
    return 0;
}

/* chunks of x[total][feats] (float32, or u8 times scale) then u8 labels[total], in order from offset 0 */
static long load_batch(const uint8_t *b, uint32_t n, uint32_t head, uint32_t width, float scale)
{
    if (n < head)
        return fail(E_LENGTH, "load_batch: header too short");
    uint32_t bid = rd32(b), total = rd16(b + 4), feats = rd16(b + 6), off = rd32(b + head - 4), len = n - head;
    if (feats != D.m.in_features)
        return fail(E_ARG, "batch features differ from the model's inputs");
    if (total == 0 || total > D.m.max_batch)
        return fail(E_MEMORY, "batch exceeds the model's max batch");
    if (off == 0) {
        D.batch_id = bid;
        D.batch_total = total;
        D.batch_loaded = 0;
        D.batch_width = width;
        D.batch_scale = scale;
        D.have_batch = 1;
    }
    /* 64-bit: total < 2^16 and feats = in_features < 2^28, so neither product wraps (the arena bounds both) */
    uint64_t size = (uint64_t)total * ((uint64_t)width * feats + 1), nx = (uint64_t)width * total * feats;
    if (!D.have_batch || bid != D.batch_id || total != D.batch_total || width != D.batch_width
        || off > D.batch_loaded || (uint64_t)off + len > size)
        return fail(E_ARG, "load_batch: chunks must come in order from offset 0");
    for (uint32_t i = 0; i < len; i++) {
        uint64_t at = (uint64_t)off + i;
        uint8_t v = b[head + i];
        if (at >= nx) {
            D.by[at - nx] = v;
        } else if (width == 1) {
            ez_store_write_input((uint32_t)at, (float)v * D.batch_scale);
        } else {
            D.xword[at % 4] = v;
            if (at % 4 == 3)
                ez_store_write_input((uint32_t)(at / 4), rdf(D.xword));
        }
    }
    if (off + len > D.batch_loaded)
        D.batch_loaded = off + len;
    wr32(out_body, D.batch_loaded);
    return 4;
}

static long h_load_batch(const uint8_t *b, uint32_t n) { return load_batch(b, n, 12, 4, 1.0f); }

static long h_load_batch_u8(const uint8_t *b, uint32_t n)
{
    return load_batch(b, n, 16, 1, n >= 12 ? rdf(b + 8) : 0.0f);
}

/* seed i of the chain from seed0: s_0 = seed0, s_i = H(H(i) ^ seed0) (docs/directions.md §11) */
static uint32_t chain_seed(uint32_t seed0, uint32_t i) { return i ? ezdir_word(seed0, i) : seed0; }

/* q queries: explicit (seeds, mults from the frame) or a chain pattern (seeds == NULL; 0 forward, 1 central) */
static long evaluate(uint32_t kind, uint32_t off, uint32_t cnt, float mu, uint32_t q, const uint8_t *seeds,
                     const uint8_t *mults, uint32_t seed0, uint32_t pattern)
{
    if (!D.have_batch || D.batch_loaded < batch_bytes())
        return fail(E_NO_BATCH, "no complete batch loaded");
    if (!range_ok(off, cnt))
        return fail(E_ARG, "evaluate: range outside the parameters");
    const char *no_kind = ez_store_check_kind(kind);
    if (no_kind)
        return fail(E_ARG, no_kind);
    if (q > LAST_SEEDS)
        return fail(E_ARG, "evaluate: too many queries for one response frame");
    for (uint32_t i = 0; i < D.batch_total; i++)
        if (D.by[i] >= D.m.out_features)
            return fail(E_ARG, "a label is not a class of the model");
    D.last_kind = kind;
    D.last_off = off;
    D.last_cnt = cnt;
    D.last_n = 0;
    uint32_t half = q / 2;
    for (uint32_t i = 0; i < q; i++) {
        uint32_t seed;
        int mult;
        if (seeds) {
            seed = rd32(seeds + 4 * i);
            mult = (int8_t)mults[i];
        } else if (pattern == 0) {
            seed = chain_seed(seed0, i ? i - 1 : 0);
            mult = i ? 1 : 0;
        } else {
            seed = chain_seed(seed0, i < half ? i : i - half);
            mult = i < half ? 1 : -1;
        }
        if (mult) {
            uint32_t k = 0;
            while (k < D.last_n && D.last_seeds[k] != seed)
                k++;
            if (k == D.last_n)
                D.last_seeds[D.last_n++] = seed;
        }
        float s = (float)mult * mu;
        wrf(out_body + 4 * i, ez_store_loss(D.batch_total, mult != 0, kind, seed, s, off, cnt));
    }
    return (long)(4 * q);
}

static long h_evaluate(const uint8_t *b, uint32_t n)
{
    if (n < 14)
        return fail(E_LENGTH, "evaluate: header too short");
    uint32_t q = b[13];
    if (n != 14 + 5 * q)
        return fail(E_LENGTH, "evaluate: length does not match n");
    return evaluate(b[0], rd32(b + 1), rd32(b + 5), rdf(b + 9), q, b + 14, b + 14 + 4 * q, 0, 0);
}

static long h_evaluate_chain(const uint8_t *b, uint32_t n)
{
    if (n != 19)
        return fail(E_LENGTH, "evaluate_chain: u8 kind, u32 offset, u32 count, f32 mu, u32 seed0, u8 n, u8 pattern");
    uint32_t nq = b[17], pattern = b[18];
    if (pattern > 1 || nq == 0)
        return fail(E_ARG, "evaluate_chain: pattern 0 (forward) or 1 (central), n >= 1");
    uint32_t q = pattern == 0 ? nq + 1 : 2 * nq;
    return evaluate(b[0], rd32(b + 1), rd32(b + 5), rdf(b + 9), q, NULL, NULL, rd32(b + 13), pattern);
}

/* θ += -(lr c_i) z(seed_i) for each seed in order, if step == device step + 1 (seeds NULL: the last evaluate's) */
static long update(uint32_t step, uint32_t kind, uint32_t off, uint32_t cnt, float lr, uint32_t q,
                   const uint8_t *seeds, const uint8_t *coeffs)
{
    if (step != D.step + 1)
        return fail(E_STEP, "update step is not the device step + 1");
    if (!range_ok(off, cnt))
        return fail(E_ARG, "update: range outside the parameters");
    const char *no_kind = ez_store_check_kind(kind);
    if (no_kind)
        return fail(E_ARG, no_kind);
    for (uint32_t i = 0; i < q; i++) {
        float c = rdf(coeffs + 4 * i);
        float a = -(lr * c);
        ez_store_axpy(kind, seeds ? rd32(seeds + 4 * i) : D.last_seeds[i], a, off, cnt);
    }
    D.step = step;
    wr32(out_body, D.step);
    out_body[4] = 1;
    return 5;
}

static long already_applied(void)
{
    wr32(out_body, D.step);
    out_body[4] = 0;
    return 5;
}

static long h_update(const uint8_t *b, uint32_t n)
{
    if (n < 18)
        return fail(E_LENGTH, "update: header too short");
    uint32_t step = rd32(b), q = b[17];
    if (n != 18 + 8 * q)
        return fail(E_LENGTH, "update: length does not match n");
    if (step <= D.step)
        return already_applied();
    return update(step, b[4], rd32(b + 5), rd32(b + 9), rdf(b + 13), q, b + 18, b + 18 + 4 * q);
}

static long h_update_last(const uint8_t *b, uint32_t n)
{
    if (n < 9)
        return fail(E_LENGTH, "update_last: header too short");
    uint32_t step = rd32(b), q = b[8];
    if (n != 9 + 4 * q)
        return fail(E_LENGTH, "update_last: length does not match n");
    if (step <= D.step)
        return already_applied();
    if (D.last_n == 0 || q != D.last_n)
        return fail(E_ARG, "update_last: the coefficients do not match the last evaluate's seeds");
    return update(step, D.last_kind, D.last_off, D.last_cnt, rdf(b + 4), q, NULL, b + 9);
}

static long h_read_weights(const uint8_t *b, uint32_t n)
{
    if (n != 6)
        return fail(E_LENGTH, "read_weights: u32 offset, u16 count");
    uint32_t off = rd32(b), cnt = rd16(b + 4);
    if (!range_ok(off, cnt))
        return fail(E_ARG, "read_weights: range outside the parameters");
    if (4 * cnt > BODY_MAX)
        return fail(E_ARG, "read_weights: count does not fit one response frame");
    for (uint32_t i = 0; i < cnt; i++)
        wrf(out_body + 4 * i, ez_store_read_weight(off + i));
    return (long)(4 * cnt);
}

static long h_checkpoint(const uint8_t *b, uint32_t n)
{
    if (n != 5)
        return fail(E_LENGTH, "checkpoint: u8 op, u32 step");
    if (b[0] == 1)
        D.step = rd32(b + 1);
    wr32(out_body, D.step);
    wr32(out_body + 4, D.m.n_params);
    wr32(out_body + 8, ez_store_crc32());
    return 12;
}

static long dispatch(uint8_t type, const uint8_t *b, uint32_t n)
{
    if (type == HELLO)
        return h_hello(b, n);
    if (type < SET_MODEL || type > LOAD_BATCH_U8)
        return fail(E_TYPE, "unknown message type");
    if (type != SET_MODEL && !D.have_model)
        return fail(E_NO_MODEL, "no model loaded (device was reset?)");
    switch (type) {
    case SET_MODEL: return h_set_model(b, n);
    case WRITE_WEIGHTS: return h_write_weights(b, n);
    case LOAD_BATCH: return h_load_batch(b, n);
    case EVALUATE: return h_evaluate(b, n);
    case UPDATE: return h_update(b, n);
    case READ_WEIGHTS: return h_read_weights(b, n);
    case EVALUATE_CHAIN: return h_evaluate_chain(b, n);
    case UPDATE_LAST: return h_update_last(b, n);
    case LOAD_BATCH_U8: return h_load_batch_u8(b, n);
    default: return h_checkpoint(b, n);
    }
}

static void handle_frame(uint8_t *f, size_t n, ez_tx_fn send)
{
    long len = ez_cobs_decode(f, n);
    if (len < HEADER + 2)
        return;
    uint16_t crc = rd16(f + len - 2);
    if (ez_crc16(f, (size_t)len - 2) != crc)
        return; /* corrupt: dropped; the host retransmits */
    uint8_t version = f[0], type = f[1];
    uint16_t seq = rd16(f + 2);
    if (type == RESET) {
        ez_device_init((uint16_t)(D.boot_id + 1));
        return;
    }
    if (last_valid && last_seq == seq && last_type == type) {
        send(tx, tx_len);
        return;
    }
    long blen;
    uint8_t rtype = (uint8_t)(type | RESPONSE);
    if (version != VERSION)
        blen = fail(E_VERSION, "protocol version differs; the device speaks 1");
    else
        blen = dispatch(type, f + HEADER, (uint32_t)len - HEADER - 2);
    if (blen < 0) {
        size_t t = strlen(err_text);
        if (t > BODY_MAX - 1)
            t = BODY_MAX - 1;
        rtype = ERROR;
        out_body[0] = (uint8_t)err_code;
        memcpy(out_body + 1, err_text, t);
        blen = (long)(1 + t);
    }
    resp_raw[0] = VERSION;
    resp_raw[1] = rtype;
    wr16(resp_raw + 2, seq);
    wr16(resp_raw + HEADER + blen, ez_crc16(resp_raw, HEADER + (size_t)blen));
    tx_len = ez_cobs_encode(resp_raw, HEADER + (size_t)blen + 2, tx);
    tx[tx_len++] = 0;
    last_valid = 1;
    last_seq = seq;
    last_type = type;
    send(tx, tx_len);
}

void ez_device_feed(const uint8_t *data, size_t n, ez_tx_fn send)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t c = data[i];
        if (c == 0) {
            if (rx_len && !rx_overflow)
                handle_frame(rx, rx_len, send);
            rx_len = 0;
            rx_overflow = 0;
        } else if (rx_len < sizeof rx) {
            rx[rx_len++] = c;
        } else {
            rx_overflow = 1; /* longer than any valid frame: drop until the next delimiter */
        }
    }
}
