/* device.c - protocol v1 message handling (see device.h and docs/protocol.md). */
#include "device.h"

#include <string.h>

#include "ezdir.h"
#include "model.h"
#include "wire.h"

enum { HELLO = 0x01, SET_MODEL = 0x02, WRITE_WEIGHTS = 0x03, LOAD_BATCH = 0x04, EVALUATE = 0x05, UPDATE = 0x06,
       READ_WEIGHTS = 0x07, CHECKPOINT = 0x08, RESET = 0x0F, RESPONSE = 0x80, ERROR = 0xFF };
enum { E_VERSION = 1, E_TYPE, E_LENGTH, E_NO_MODEL, E_NO_BATCH, E_MEMORY, E_ARG, E_STEP };
#define VERSION 1
#define HEADER 4

/* the arena: θ | perturbed θ | batch x | batch labels | activations a, b | logits */
static float arena[EZ_ARENA_BYTES / 4];

static struct {
    uint16_t boot_id;
    int have_model;
    ez_model m;
    uint32_t ram, step;
    float *theta, *pert, *bx, *a, *b, *logits;
    uint8_t *by;
    int have_batch;
    uint32_t batch_id, batch_total, batch_loaded;
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

#define BODY_MAX (EZ_MAX_FRAME - HEADER - 2 - 2)

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

static uint32_t batch_bytes(void) { return D.batch_total * (4 * D.m.in_features + 1); }

static long h_hello(const uint8_t *b, uint32_t n)
{
    (void)b; (void)n;
    out_body[0] = VERSION;
    wr16(out_body + 1, EZ_MAX_FRAME);
    wr32(out_body + 3, EZ_SRAM_BYTES);
    wr16(out_body + 7, D.boot_id);
    wr32(out_body + 9, D.step);
    out_body[13] = (uint8_t)(D.have_model ? 1 : 0);
    size_t len = strlen(EZ_DEVICE_NAME);
    memcpy(out_body + 14, EZ_DEVICE_NAME, len);
    return (long)(14 + len);
}

static long h_set_model(const uint8_t *b, uint32_t n)
{
    static ez_model m;
    const char *why;
    uint32_t parts[5];
    if (ez_model_parse(&m, b, n, &why))
        return fail(E_LENGTH, why);
    uint32_t total = ez_model_ram(&m, EZ_MAX_FRAME, parts);
    uint32_t floats = 2 * m.n_params + (uint32_t)m.max_batch * m.in_features + 2 * m.widest + m.out_features;
    uint32_t arena_need = 4 * floats + m.max_batch + 4;
    if (total > EZ_SRAM_BYTES)
        return fail(E_MEMORY, "model state exceeds the device SRAM (weights, perturbed copy, batch, activations, "
                              "frames); use a TT model or a smaller batch");
    if (arena_need > sizeof arena)
        return fail(E_MEMORY, "model state exceeds the firmware arena (EZ_ARENA_BYTES)");
    D.m = m;
    D.have_model = 1;
    D.ram = total;
    D.step = 0;
    D.have_batch = 0;
    D.theta = arena;
    D.pert = D.theta + m.n_params;
    D.bx = D.pert + m.n_params;
    D.a = D.bx + (uint32_t)m.max_batch * m.in_features;
    D.b = D.a + m.widest;
    D.logits = D.b + m.widest;
    D.by = (uint8_t *)(D.logits + m.out_features);
    memset(D.theta, 0, 4 * m.n_params);
    wr32(out_body, m.n_params);
    wr32(out_body + 4, total);
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
        D.theta[off + i] = rdf(b + 4 + 4 * i);
    return 0;
}

static long h_load_batch(const uint8_t *b, uint32_t n)
{
    if (n < 12)
        return fail(E_LENGTH, "load_batch: header too short");
    uint32_t bid = rd32(b), total = rd16(b + 4), feats = rd16(b + 6), off = rd32(b + 8), len = n - 12;
    if (feats != D.m.in_features)
        return fail(E_ARG, "batch features differ from the model's inputs");
    if (total == 0 || total > D.m.max_batch)
        return fail(E_MEMORY, "batch exceeds the model's max batch");
    if (off == 0) {
        D.batch_id = bid;
        D.batch_total = total;
        D.batch_loaded = 0;
        D.have_batch = 1;
    }
    uint32_t size = total * (4 * feats + 1), nx = 4 * total * feats;
    if (!D.have_batch || bid != D.batch_id || total != D.batch_total || off > D.batch_loaded || off + len > size)
        return fail(E_ARG, "load_batch: chunks must come in order from offset 0");
    for (uint32_t i = 0; i < len; i++) {
        uint32_t at = off + i;
        if (at < nx)
            ((uint8_t *)D.bx)[at] = b[12 + i];
        else
            D.by[at - nx] = b[12 + i];
    }
    if (off + len > D.batch_loaded)
        D.batch_loaded = off + len;
    wr32(out_body, D.batch_loaded);
    return 4;
}

static long h_evaluate(const uint8_t *b, uint32_t n)
{
    if (n < 14)
        return fail(E_LENGTH, "evaluate: header too short");
    uint32_t kind = b[0], off = rd32(b + 1), cnt = rd32(b + 5), q = b[13];
    float mu = rdf(b + 9);
    if (n != 14 + 5 * q)
        return fail(E_LENGTH, "evaluate: length does not match n");
    if (!D.have_batch || D.batch_loaded < batch_bytes())
        return fail(E_NO_BATCH, "no complete batch loaded");
    if (!range_ok(off, cnt))
        return fail(E_ARG, "evaluate: range outside the parameters");
    if (kind > 1)
        return fail(E_ARG, "unknown direction kind");
    if (4 * q > BODY_MAX)
        return fail(E_ARG, "evaluate: too many queries for one response frame");
    for (uint32_t i = 0; i < D.batch_total; i++)
        if (D.by[i] >= D.m.out_features)
            return fail(E_ARG, "a label is not a class of the model");
    for (uint32_t i = 0; i < q; i++) {
        uint32_t seed = rd32(b + 14 + 4 * i);
        int8_t mult = (int8_t)b[14 + 4 * q + i];
        const float *th = D.theta;
        if (mult) {
            memcpy(D.pert, D.theta, 4 * D.m.n_params);
            float s = (float)mult * mu;
            ezdir_axpy(seed, (int)kind, off, cnt, s, D.pert + off);
            th = D.pert;
        }
        wrf(out_body + 4 * i, ez_loss(&D.m, th, D.bx, D.by, D.batch_total, D.a, D.b, D.logits));
    }
    return (long)(4 * q);
}

static long h_update(const uint8_t *b, uint32_t n)
{
    if (n < 18)
        return fail(E_LENGTH, "update: header too short");
    uint32_t step = rd32(b), kind = b[4], off = rd32(b + 5), cnt = rd32(b + 9), q = b[17];
    float lr = rdf(b + 13);
    if (n != 18 + 8 * q)
        return fail(E_LENGTH, "update: length does not match n");
    if (step <= D.step) {
        wr32(out_body, D.step);
        out_body[4] = 0;
        return 5;
    }
    if (step != D.step + 1)
        return fail(E_STEP, "update step is not the device step + 1");
    if (!range_ok(off, cnt))
        return fail(E_ARG, "update: range outside the parameters");
    if (kind > 1)
        return fail(E_ARG, "unknown direction kind");
    for (uint32_t i = 0; i < q; i++) {
        float c = rdf(b + 18 + 4 * q + 4 * i);
        float a = -(lr * c);
        ezdir_axpy(rd32(b + 18 + 4 * i), (int)kind, off, cnt, a, D.theta + off);
    }
    D.step = step;
    wr32(out_body, D.step);
    out_body[4] = 1;
    return 5;
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
        wrf(out_body + 4 * i, D.theta[off + i]);
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
    wr32(out_body + 8, ez_crc32((const uint8_t *)D.theta, 4 * D.m.n_params)); /* little-endian target */
    return 12;
}

static long dispatch(uint8_t type, const uint8_t *b, uint32_t n)
{
    if (type == HELLO)
        return h_hello(b, n);
    if (type < SET_MODEL || type > CHECKPOINT)
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
