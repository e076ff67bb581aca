/*
 * ezdir_host.c - the host CPU's fast path of the direction generator (docs/directions.md).
 *
 * It compiles the firmware's reference implementation (targets/firmware/ezdir.c) into the same
 * translation unit, with the hardware square root (IEEE 754: correctly rounded, as the spec
 * requires), so the values are those of the firmware by construction; the loop below lets the
 * compiler inline ezdir_radius / ezdir_cos_sin and vectorise them across pairs. Build flags
 * (setup.py): -O3 -ffp-contract=off -fno-math-errno -fno-semantic-interposition. Without
 * -ffp-contract=off a multiply-add could be fused and the result would no longer be bit-exact.
 *
 * Loaded with ctypes by edgezo/direction_native.py; the package works without it (numpy path).
 */
#define EZDIR_HW_SQRT 1
#include "ezdir.c"

#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define EZDIR_HOST_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define EZDIR_HOST_CLONES
#endif

/* Gaussian pairs p0 .. p0 + npairs - 1 of one key: out[2 i], out[2 i + 1] = z[2 (p0 + i)], z[2 (p0 + i) + 1]. */
EZDIR_HOST_CLONES
static void gaussian_pairs(uint32_t key, uint32_t p0, size_t npairs, float *restrict out)
{
    for (size_t i = 0; i < npairs; i++) {
        uint32_t p = p0 + (uint32_t)i;
        float r = ezdir_radius(ezdir_word(key, 2u * p));
        float c, s;
        ezdir_cos_sin(ezdir_word(key, 2u * p + 1u), &c, &s);
        out[2 * i] = r * c;
        out[2 * i + 1] = r * s;
    }
}

/* Version of this interface; direction_native.py refuses a library of another one. */
int ezdir_host_abi(void)
{
    return 1;
}

/* For each of nkeys Gaussian keys (ezdir_key(seed, EZDIR_GAUSSIAN)), pairs p0 .. p0 + npairs - 1
 * into row k of out (nkeys rows of 2 npairs floats). The caller keeps p0 + npairs <= 2^31. */
void ezdir_host_gaussian(const uint32_t *keys, size_t nkeys, uint32_t p0, size_t npairs, float *out)
{
    for (size_t k = 0; k < nkeys; k++)
        gaussian_pairs(keys[k], p0, npairs, out + k * 2 * npairs);
}
