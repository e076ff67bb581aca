/* store_arena.c - the reference firmware's store (store.h): a static arena in SRAM,
 *   θ | perturbed θ | batch x | batch labels | activations a, b | logits,
 * and the float32 forward pass of model.c. */
#include "store.h"

#include <string.h>

#include "device.h"
#include "ezdir.h"
#include "wire.h"

static float arena[EZ_ARENA_BYTES / 4];

static struct {
    ez_model m;
    float *theta, *pert, *bx, *a, *b, *logits;
    uint8_t *by;
} S;

void ez_store_reset(void) { memset(&S, 0, sizeof S); }

uint32_t ez_store_sram_bytes(void) { return EZ_SRAM_BYTES; }

int ez_store_set_model(const ez_model *m, uint32_t *ram, const char **why)
{
    uint64_t parts[6];
    uint64_t total = ez_model_ram(m, EZ_MAX_FRAME, parts); /* every term < 2^47: no wrap */
    uint64_t floats = 2 * (uint64_t)m->n_params + (uint64_t)m->max_batch * m->in_features
                      + 2 * (uint64_t)m->widest + m->out_features;
    uint64_t arena_need = 4 * floats + m->max_batch + 4;
    if (total > EZ_SRAM_BYTES) {
        *why = "model state exceeds the device SRAM (weights, perturbed copy, batch, activations, frames); "
               "use a TT model or a smaller batch";
        return -1;
    }
    if (arena_need > sizeof arena) {
        *why = "model state exceeds the firmware arena (EZ_ARENA_BYTES)";
        return -1;
    }
    S.m = *m;
    S.theta = arena;
    S.pert = S.theta + m->n_params;
    S.bx = S.pert + m->n_params;
    S.a = S.bx + (uint32_t)m->max_batch * m->in_features;
    S.b = S.a + m->widest;
    S.logits = S.b + m->widest;
    S.by = (uint8_t *)(S.logits + m->out_features);
    memset(S.theta, 0, 4 * m->n_params);
    *ram = (uint32_t)total; /* <= EZ_SRAM_BYTES */
    return 0;
}

uint8_t *ez_store_labels(void) { return S.by; }

const char *ez_store_check_kind(uint32_t kind) { return kind > 1 ? "unknown direction kind" : NULL; }

void ez_store_write_weight(uint32_t index, float w) { S.theta[index] = w; }

float ez_store_read_weight(uint32_t index) { return S.theta[index]; }

void ez_store_write_input(uint32_t at, float x) { S.bx[at] = x; }

float ez_store_loss(uint32_t n, int perturb, uint32_t kind, uint32_t seed, float s, uint32_t off, uint32_t cnt)
{
    const float *th = S.theta;
    if (perturb) {
        memcpy(S.pert, S.theta, 4 * S.m.n_params);
        ezdir_axpy(seed, (int)kind, off, cnt, s, S.pert + off);
        th = S.pert;
    }
    return ez_loss(&S.m, th, S.bx, S.by, n, S.a, S.b, S.logits);
}

void ez_store_axpy(uint32_t kind, uint32_t seed, float a, uint32_t off, uint32_t cnt)
{
    ezdir_axpy(seed, (int)kind, off, cnt, a, S.theta + off);
}

uint32_t ez_store_crc32(void) { return ez_crc32((const uint8_t *)S.theta, 4 * S.m.n_params); } /* little-endian */
