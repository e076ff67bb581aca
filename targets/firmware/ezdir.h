/*
 * ezdir.h - portable counter-based perturbation directions (edgezo directions v1).
 *
 * Reference C99 implementation of docs/directions.md. It reproduces
 * edgezo.directions (torch, CPU and CUDA) bit for bit when compiled with
 * IEEE-754 binary32 arithmetic evaluated in single precision
 * (FLT_EVAL_METHOD == 0: x86-64 SSE, Cortex-M4F/M7 FPU) and without
 * floating-point contraction (gcc/clang: -ffp-contract=off). It needs no libm:
 * the square root is computed exactly with integer arithmetic, unless
 * EZDIR_HW_SQRT is defined (then __builtin_sqrtf; use with -fno-math-errno so
 * it becomes a single instruction such as VSQRT.F32 / sqrtss; both are
 * correctly rounded, so results are identical).
 *
 * A direction for seed s is the infinite vector z(s)[i], i = flat coordinate
 * index (uint32). A parameter range [start, start + count) uses exactly
 * z(s)[start .. start + count - 1].
 *
 * The sphere kind needs double for its sum of squares (software double on a
 * Cortex-M4: slow but exact enough; see the spec, section 6).
 */
#ifndef EZDIR_H
#define EZDIR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EZDIR_SPEC_VERSION "edgezo-directions-v1"

enum ezdir_kind {
    EZDIR_RADEMACHER = 0,
    EZDIR_GAUSSIAN = 1,
    EZDIR_SPHERE = 2
};

/* key tags per kind (sphere uses the gaussian tag) */
#define EZDIR_TAG_RADEMACHER 0x9E3779B9u
#define EZDIR_TAG_GAUSSIAN 0x7F4A7C15u

/* lowbias32: x ^= x>>16; x *= 0x7FEB352D; x ^= x>>15; x *= 0x846CA68B; x ^= x>>16 */
uint32_t ezdir_hash32(uint32_t x);

/* key(seed, kind) = hash32(hash32(seed ^ TAG[kind])) */
uint32_t ezdir_key(uint32_t seed, int kind);

/* W(key, c) = hash32(hash32(c) ^ key) : the hash word with counter c */
uint32_t ezdir_word(uint32_t key, uint32_t counter);

/* Box-Muller building blocks (float32, spec section 5) */
float ezdir_radius(uint32_t w1);                        /* sqrt(-2 ln u) */
void ezdir_cos_sin(uint32_t w2, float *c, float *s);    /* cos, sin of the angle */
float ezdir_sqrtf(float x);                             /* correctly rounded, x >= 0 */

/* single coordinates */
float ezdir_rademacher_at(uint32_t key, uint32_t index); /* key from ezdir_key(.., RADEMACHER) */
float ezdir_gaussian_at(uint32_t key, uint32_t index);   /* key from ezdir_key(.., GAUSSIAN) */

/* out[0 .. count-1] = z(seed)[start .. start+count-1].
 * Returns 0, or -1 for an unknown kind or start + count > 2^32. */
int ezdir_fill(uint32_t seed, int kind, uint32_t start, uint32_t count, float *out);

/* For the sphere kind: the float32 Euclidean norm of the gaussian vector
 * over [start, start+count) (sum of exact squares in double). */
float ezdir_gaussian_norm(uint32_t seed, uint32_t start, uint32_t count);

/* theta[i] = theta[i] + coeff * z(seed)[start + i], i < count, without a
 * buffer (the product is rounded, then the sum: two float32 roundings).
 * Returns 0 or -1 like ezdir_fill. */
int ezdir_axpy(uint32_t seed, int kind, uint32_t start, uint32_t count, float coeff, float *theta);

#ifdef __cplusplus
}
#endif

#endif /* EZDIR_H */
