/* store_rtl.c - the store (targets/firmware/store.h) of the RTL target: θ, the batch and every forward
 * pass and update inside the verilated accelerator (model_rtl.h, docs/rtl.md); the firmware keeps only
 * the labels. targets/firmware/device.c serves the protocol on top of it, as for the reference firmware. */
#include "store.h"

#include "model_rtl.h"

#define MAX_BATCH 1024u

static uint8_t labels[MAX_BATCH];

void ez_store_reset(void) { ezr_model_reset(); /* a reset loses θ: it lives only in the design */ }

uint32_t ez_store_sram_bytes(void) { return ezr_sram_bytes(); }

int ez_store_set_model(const ez_model *m, uint32_t *ram, const char **why)
{
    if (m->max_batch > MAX_BATCH) {
        *why = "max batch exceeds the firmware's label buffer";
        return -1;
    }
    if (ezr_model_set(m, why)) /* checks every limit before it touches the design */
        return -1;
    for (uint32_t p = 0; p < m->n_params; p++)
        ezr_write_weight(p, 0.0f);
    *ram = ezr_model_ram(m);
    return 0;
}

uint8_t *ez_store_labels(void) { return labels; }

const char *ez_store_check_kind(uint32_t kind)
{
    return kind != 0 ? "the RTL accelerator generates rademacher directions only" : (const char *)0;
}

void ez_store_write_weight(uint32_t index, float w) { ezr_write_weight(index, w); }

float ez_store_read_weight(uint32_t index) { return ezr_read_weight(index); }

void ez_store_write_input(uint32_t at, float x) { ezr_write_input(at, x); }

float ez_store_loss(uint32_t n, int perturb, uint32_t kind, uint32_t seed, float s, uint32_t off, uint32_t cnt)
{
    (void)kind;
    return ezr_loss(labels, n, seed, perturb ? s : 0.0f, off, cnt);
}

void ez_store_axpy(uint32_t kind, uint32_t seed, float a, uint32_t off, uint32_t cnt)
{
    (void)kind;
    ezr_axpy(seed, a, off, cnt);
}

uint32_t ez_store_crc32(void) { return ezr_crc32(); }
