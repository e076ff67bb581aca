/*
 * store.h - where a device keeps θ and the batch and runs its forward passes. device.c (the protocol,
 * docs/protocol.md) calls these functions; two stores implement them:
 *   store_arena.c          the reference firmware: θ, a perturbed copy, the batch and the activations
 *                          in a static float32 arena, the forward pass of model.c;
 *   ../rtl/store_rtl.c     the RTL accelerator: θ, the batch and every forward pass and update inside
 *                          the verilated design (model_rtl.h, docs/rtl.md).
 * Indices are checked by device.c before any call (range_ok, batch bounds).
 */
#ifndef EZ_STORE_H
#define EZ_STORE_H

#include <stdint.h>

#include "model.h"

/* Power-on / device reset (the store's θ may be lost; device.c forgets the model). */
void ez_store_reset(void);

/* Bytes of memory the device reports in hello. */
uint32_t ez_store_sram_bytes(void);

/* Make room for m (θ set to zero): 0 with *ram the bytes it uses, or -1 with the reason in *why
 * (answered as a memory error; the previous model is then kept). */
int ez_store_set_model(const ez_model *m, uint32_t *ram, const char **why);

/* The label buffer of the current model (max_batch bytes). */
uint8_t *ez_store_labels(void);

/* NULL when the store generates directions of this kind, else why not. */
const char *ez_store_check_kind(uint32_t kind);

void ez_store_write_weight(uint32_t index, float w);
float ez_store_read_weight(uint32_t index);

/* Input `at` (= sample * in_features + feature) of the batch. */
void ez_store_write_input(uint32_t at, float x);

/* Mean cross-entropy of the first n samples at θ, or (perturb != 0) at θ + s z(seed) on [off, off + cnt)
 * with directions of the given kind; θ itself is not changed. */
float ez_store_loss(uint32_t n, int perturb, uint32_t kind, uint32_t seed, float s, uint32_t off, uint32_t cnt);

/* θ += a z(seed) on [off, off + cnt) (product rounded, then the sum). */
void ez_store_axpy(uint32_t kind, uint32_t seed, float a, uint32_t off, uint32_t cnt);

/* CRC-32 of θ as float32 little-endian (what read-weights returns). */
uint32_t ez_store_crc32(void);

#endif
