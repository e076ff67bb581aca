/*
 * ezdir.c - portable counter-based perturbation directions (edgezo directions v1).
 * Reference implementation of docs/directions.md; see ezdir.h.
 *
 * Build with -ffp-contract=off (the default of gcc in ISO C modes such as
 * -std=c99, but not in -std=gnu99). Every float operation below is a separate
 * statement so that the operation order of the specification is explicit.
 */
#include "ezdir.h"

#include <float.h>
#include <stddef.h>

#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0 && FLT_EVAL_METHOD != -1
#error "ezdir needs float expressions evaluated in float (FLT_EVAL_METHOD == 0), e.g. -mfpmath=sse on i386"
#endif

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- constants (spec section 5), exact float32 values ------------------ */
#define SQRT_HALF_BITS 0x3F3504F3u /* float32(sqrt(1/2)) */

static const float CHI = 0x1.62e4p+0f;       /* 0x3FB17200  2 ln 2, high part */
static const float CLO = 0x1.7f7d1cp-19f;    /* 0x363FBE8E  2 ln 2 - CHI */
static const float Q0 = -0x1p+2f;            /* 0xC0800000 */
static const float Q1 = -0x1.55557ep+0f;     /* 0xBFAAAABF */
static const float Q2 = -0x1.995ebcp-1f;     /* 0xBF4CAF5E */
static const float Q3 = -0x1.31e2d4p-1f;     /* 0xBF18F16A */
static const float S1 = 0x1.921fb6p-1f;      /* 0x3F490FDB */
static const float S3 = -0x1.4abbc6p-4f;     /* 0xBDA55DE3 */
static const float S5 = 0x1.465e92p-9f;      /* 0x3B232F49 */
static const float S7 = -0x1.2d9306p-15f;    /* 0xB816C983 */
static const float C2 = -0x1.3bd3ccp-2f;     /* 0xBE9DE9E6 */
static const float C4 = 0x1.03c1d6p-6f;      /* 0x3C81E0EB */
static const float C6 = -0x1.55c5ep-12f;     /* 0xB9AAE2F0 */
static const float C8 = 0x1.d9d57cp-19f;     /* 0x366CEABE */
static const float TWO_M21 = 0x1p-21f;
static const float TWO_M22 = 0x1p-22f;

static uint32_t f2u(float f)
{
    union { float f; uint32_t u; } c;
    c.f = f;
    return c.u;
}

static float u2f(uint32_t u)
{
    union { float f; uint32_t u; } c;
    c.u = u;
    return c.f;
}

/* ---- integer part ------------------------------------------------------- */
uint32_t ezdir_hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

uint32_t ezdir_key(uint32_t seed, int kind)
{
    uint32_t tag = (kind == EZDIR_RADEMACHER) ? EZDIR_TAG_RADEMACHER : EZDIR_TAG_GAUSSIAN;
    return ezdir_hash32(ezdir_hash32(seed ^ tag));
}

uint32_t ezdir_word(uint32_t key, uint32_t counter)
{
    return ezdir_hash32(ezdir_hash32(counter) ^ key);
}

/* ---- correctly rounded float32 square root without libm ----------------- */
float ezdir_sqrtf(float x)
{
#if defined(EZDIR_HW_SQRT)
    return __builtin_sqrtf(x);
#else
    uint32_t b = f2u(x);
    int32_t e, ue;
    uint32_t m, rbits;
    uint64_t M, rem, res, bit;

    if ((b & 0x7FFFFFFFu) == 0u) return x;           /* +0, -0 */
    if (b >= 0x7F800000u) {                           /* +inf, NaN, negative */
        return (b == 0x7F800000u) ? x : u2f(0x7FC00000u);
    }
    e = (int32_t)(b >> 23);
    m = b & 0x7FFFFFu;
    if (e == 0) {                                     /* subnormal: normalise */
        e = 1;
        while ((m & 0x800000u) == 0u) {
            m <<= 1;
            e -= 1;
        }
    } else {
        m |= 0x800000u;
    }
    /* x = m * 2^ue, m in [2^23, 2^24); make ue even and M = m' 2^24 in [2^48, 2^50) */
    ue = e - 150;
    if (((uint32_t)ue & 1u) != 0u) {
        M = (uint64_t)m << 25;
        ue -= 1;
    } else {
        M = (uint64_t)m << 26;
        ue -= 2;
    }
    /* res = floor(sqrt(M)), in [2^24, 2^25) */
    rem = M;
    res = 0;
    bit = (uint64_t)1 << 48;
    while (bit != 0u) {
        if (rem >= res + bit) {
            rem -= res + bit;
            res = (res >> 1) + bit;
        } else {
            res >>= 1;
        }
        bit >>= 2;
    }
    /* round to 24 bits: no ties are possible for a square root */
    rbits = (uint32_t)((res + 1u) >> 1);                /* in [2^23, 2^24] */
    /* sqrt(x) = rbits * 2^E, E = (ue - 24) / 2 + 1; biased exponent E + 150 */
    return u2f((uint32_t)((ue - 24) / 2 + 1 + 149) * 0x800000u + rbits);
#endif
}

/* ---- float32 Box-Muller (spec section 5) -------------------------------- */
float ezdir_radius(uint32_t w1)
{
    int32_t v = (int32_t)((w1 >> 8) | 1u);           /* 2 (w1 >> 9) + 1 < 2^24 */
    float vf = (float)v;                              /* exact */
    uint32_t ix = f2u(vf) - SQRT_HALF_BITS;           /* > 0 */
    int32_t k = (int32_t)(ix >> 23);
    float n = (float)(24 - k);                        /* u = v 2^-24 = m 2^-n */
    float m = u2f((ix & 0x7FFFFFu) + SQRT_HALF_BITS); /* [sqrt(1/2), sqrt(2)) */
    float f, d, s, z, q, L, h;

    f = m - 1.0f;
    d = f + 2.0f;
    s = f / d;
    z = s * s;
    q = z * Q3;
    q = q + Q2;
    q = q * z;
    q = q + Q1;
    q = q * z;
    q = q + Q0;
    q = q * s;                                        /* -2 ln m */
    L = n * CLO;
    L = L + q;
    h = n * CHI;                                      /* exact */
    L = L + h;                                        /* -2 ln u */
    return ezdir_sqrtf(L);
}

void ezdir_cos_sin(uint32_t w2, float *c, float *s)
{
    uint32_t mm = (w2 >> 8) & 0x1FFFFFu;              /* 21 bits: position in the octant */
    float y, y2, sn, cs, cc, ss;

    y = (float)(int32_t)mm;                           /* exact */
    y = y * TWO_M21;
    y = y + TWO_M22;                                  /* (2 mm + 1) 2^-22, in (0, 1) */
    y2 = y * y;
    sn = y2 * S7;
    sn = sn + S5;
    sn = sn * y2;
    sn = sn + S3;
    sn = sn * y2;
    sn = sn + S1;
    sn = sn * y;                                      /* sin(pi y / 4) */
    cs = y2 * C8;
    cs = cs + C6;
    cs = cs * y2;
    cs = cs + C4;
    cs = cs * y2;
    cs = cs + C2;
    cs = cs * y2;
    cs = cs + 1.0f;                                   /* cos(pi y / 4) */
    if ((w2 >> 29) & 1u) {                            /* bit 29: swap */
        cc = sn;
        ss = cs;
    } else {
        cc = cs;
        ss = sn;
    }
    if ((w2 >> 31) & 1u) cc = -cc;                    /* bit 31: cos sign */
    if ((w2 >> 30) & 1u) ss = -ss;                    /* bit 30: sin sign */
    *c = cc;
    *s = ss;
}

static void gauss_pair(uint32_t key, uint32_t p, float *g0, float *g1)
{
    float r = ezdir_radius(ezdir_word(key, 2u * p));
    float c, s;
    ezdir_cos_sin(ezdir_word(key, 2u * p + 1u), &c, &s);
    *g0 = r * c;
    *g1 = r * s;
}

/* ---- coordinates -------------------------------------------------------- */
float ezdir_rademacher_at(uint32_t key, uint32_t index)
{
    uint32_t w = ezdir_word(key, index >> 5);
    return ((w >> (index & 31u)) & 1u) ? -1.0f : 1.0f;
}

float ezdir_gaussian_at(uint32_t key, uint32_t index)
{
    float g0, g1;
    gauss_pair(key, index >> 1, &g0, &g1);
    return (index & 1u) ? g1 : g0;
}

static int range_ok(uint32_t start, uint32_t count)
{
    return (uint64_t)start + (uint64_t)count <= ((uint64_t)1 << 32);
}

/* Gaussian z(seed)[start + i], i < count: accumulate squares into *acc (when acc != NULL),
 * else store (or add coeff * z when axpy) into out[i]; divide by scale_div first when divide. */
static void gauss_range(uint32_t key, uint32_t start, uint32_t count, float scale_div, int divide,
                        float *out, float coeff, int axpy, double *acc)
{
    uint32_t i = 0;
    while (i < count) {
        uint32_t idx = start + i;
        float g[2];
        uint32_t j;
        gauss_pair(key, idx >> 1, &g[0], &g[1]);
        for (j = idx & 1u; j < 2u && i < count; j++, i++) {
            float z = g[j];
            if (acc != NULL) {
                *acc += (double)z * (double)z;        /* exact square in double */
                continue;
            }
            if (divide) z = z / scale_div;
            if (axpy) {
                float t = coeff * z;
                out[i] = out[i] + t;
            } else {
                out[i] = z;
            }
        }
    }
}

float ezdir_gaussian_norm(uint32_t seed, uint32_t start, uint32_t count)
{
    double acc = 0.0;
    gauss_range(ezdir_key(seed, EZDIR_GAUSSIAN), start, count, 1.0f, 0, NULL, 0.0f, 0, &acc);
    return ezdir_sqrtf((float)acc);
}

static int apply(uint32_t seed, int kind, uint32_t start, uint32_t count, float coeff, int axpy,
                 float *out)
{
    uint32_t key, i, w = 0;
    if (!range_ok(start, count)) return -1;
    if (kind == EZDIR_RADEMACHER) {
        key = ezdir_key(seed, EZDIR_RADEMACHER);
        for (i = 0; i < count; i++) {
            uint32_t idx = start + i;
            float z;
            if (i == 0u || (idx & 31u) == 0u) w = ezdir_word(key, idx >> 5);
            z = ((w >> (idx & 31u)) & 1u) ? -1.0f : 1.0f;
            if (axpy) {
                float t = coeff * z;
                out[i] = out[i] + t;
            } else {
                out[i] = z;
            }
        }
        return 0;
    }
    if (kind == EZDIR_GAUSSIAN) {
        gauss_range(ezdir_key(seed, EZDIR_GAUSSIAN), start, count, 1.0f, 0, out, coeff, axpy, NULL);
        return 0;
    }
    if (kind == EZDIR_SPHERE) {
        float norm;
        if (count == 0u) return 0;
        norm = ezdir_gaussian_norm(seed, start, count);
        gauss_range(ezdir_key(seed, EZDIR_GAUSSIAN), start, count, norm, 1, out, coeff, axpy, NULL);
        return 0;
    }
    return -1;
}

int ezdir_fill(uint32_t seed, int kind, uint32_t start, uint32_t count, float *out)
{
    return apply(seed, kind, start, count, 0.0f, 0, out);
}

int ezdir_axpy(uint32_t seed, int kind, uint32_t start, uint32_t count, float coeff, float *theta)
{
    return apply(seed, kind, start, count, coeff, 1, theta);
}
