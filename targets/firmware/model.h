/*
 * model.h - the device's model: MLP / TT-MLP description, float32 forward and
 * mean cross-entropy (docs/protocol.md section 2, "set model"; the same
 * operation order as edgezo/targets/sim.py: dense = dot product, then + bias,
 * then relu; a TT-matrix layer contracts its cores from the last to the first,
 * never forming W, Oseledets 2011 / Novikov et al. 2015).
 */
#ifndef EZ_MODEL_H
#define EZ_MODEL_H

#include <stdint.h>

#define EZ_MAX_LAYERS 8
#define EZ_MAX_CORES 6

typedef struct {
    uint8_t tt;        /* 0 dense, 1 tensor-train matrix */
    uint8_t relu;      /* activation after the layer */
    uint8_t bias;
    uint8_t K;         /* TT cores (dense: 1) */
    uint8_t in_modes[EZ_MAX_CORES], out_modes[EZ_MAX_CORES], ranks[EZ_MAX_CORES + 1];
    uint32_t in_features, out_features;
    uint32_t n_params;  /* weights + bias */
    uint32_t scratch;   /* widest per-sample intermediate (floats) */
} ez_layer;

typedef struct {
    uint8_t loss;       /* 0 cross-entropy */
    uint16_t max_batch;
    uint8_t n_layers;
    ez_layer layers[EZ_MAX_LAYERS];
    uint32_t n_params, in_features, out_features, widest;
} ez_model;

/* Largest count of floats in one layer's parameters, its widest intermediate or the whole model.
 * Every size is computed in 64 bits (saturating) and checked against it, so no uint32 size wraps. */
#define EZ_MAX_COUNT (1u << 28)
#define EZ_TOO_LARGE (-2)

/* Parse a SET_MODEL body; 0, -1 (malformed) or EZ_TOO_LARGE, with the reason in *why. */
int ez_model_parse(ez_model *m, const uint8_t *body, uint32_t n, const char **why);

/* Bytes of SRAM by protocol.device_ram_bytes: weights, perturbed, batch, activations, frames (64-bit, no wrap). */
uint64_t ez_model_ram(const ez_model *m, uint32_t max_frame, uint64_t parts[6]);

/* logits (out_features) of one sample x; a and b are scratch buffers of m->widest floats. */
void ez_forward(const ez_model *m, const float *theta, const float *x, float *a, float *b, float *logits);

/* mean cross-entropy over n samples (double, like the simulator), rounded to float. */
float ez_loss(const ez_model *m, const float *theta, const float *x, const uint8_t *y, uint32_t n,
              float *a, float *b, float *logits);

#endif
