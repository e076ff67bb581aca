/*
 * model_rtl.h - the model held by the RTL accelerator (ez_accel.v through ezr_bus.h; docs/rtl.md):
 * dense layers with int16 master weights at a per-layer power-of-two step 2^-e, the int8 fixed-point
 * forward pass of the fpga-int8 datapath, Rademacher perturbations and seed-SGD updates done by the
 * design. The firmware turns the protocol's float32 values into the design's integers here: weights
 * t = clamp(rint(w 2^e)), inputs x_q = clamp(rint(16 x)), steps delta = rint(s 2^e).
 */
#ifndef EZ_MODEL_RTL_H
#define EZ_MODEL_RTL_H

#include <stdint.h>

#include "model.h"

/* Power on the accelerator. */
void ezr_model_reset(void);

/* Program the layers of m (dense only, within the design's capacity); 0 or -1 with the reason in *why. */
int ezr_model_set(const ez_model *m, const char **why);

/* Bytes of block RAM the built design has (its "SRAM"), and those the model m uses. */
uint32_t ezr_sram_bytes(void);
uint32_t ezr_model_ram(const ez_model *m);

void ezr_write_weight(uint32_t index, float w);
float ezr_read_weight(uint32_t index);

/* Input `at` (= sample * in_features + feature) of the batch: quantized to Q3.4 into the design. */
void ezr_write_input(uint32_t at, float x);

/* Mean cross-entropy over n samples of the int8 logits, the parameters perturbed by s z(seed) on
 * [off, off + cnt) (s == 0: unperturbed). */
float ezr_loss(const uint8_t *labels, uint32_t n, uint32_t seed, float s, uint32_t off, uint32_t cnt);

/* theta += a z(seed) on [off, off + cnt), in the design. */
void ezr_axpy(uint32_t seed, float a, uint32_t off, uint32_t cnt);

/* CRC-32 of the parameters as float32 little-endian (what read-weights returns). */
uint32_t ezr_crc32(void);

#endif
