/* model_rtl.c - the model on the RTL accelerator (see model_rtl.h and docs/rtl.md). */
#include "model_rtl.h"

#include <math.h>
#include <string.h>

#include "ezr_bus.h"

static struct {
    ez_model m;
    int e[EZ_MAX_LAYERS];                /* step 2^-e of layer l */
    uint32_t start[EZ_MAX_LAYERS + 1];   /* first parameter of layer l (start[n_layers] = n_params) */
    uint32_t gen_seed, gen_off, gen_cnt; /* the direction now in the design's z memory */
    int gen_valid;
} R;

void ezr_model_reset(void)
{
    ezr_open();
    memset(&R, 0, sizeof R);
}

/* smallest power of two R = 2^k >= 4 / sqrt(fan_in); e = 15 - k (edgezo.targets.rtl.reference.layer_exponent) */
static int layer_exponent(uint32_t fan_in)
{
    int k = 2;
    while (k > -12 && (3 - k) < 16 && fan_in >= (1u << (2 * (3 - k))))
        k--;
    return 15 - k;
}

uint32_t ezr_sram_bytes(void)
{
    return 2 * ezr_max_params() + ezr_max_params() / 8 + ezr_max_inputs() + 2 * ezr_max_width();
}

uint32_t ezr_model_ram(const ez_model *m)
{
    return 2 * m->n_params + (m->n_params + 31) / 32 * 4 + (uint32_t)m->max_batch * m->in_features + 2 * m->widest;
}

int ezr_model_set(const ez_model *m, const char **why)
{
    if (m->n_layers > ezr_max_layers()) {
        *why = "the RTL accelerator has fewer layer slots";
        return -1;
    }
    if (m->n_params > ezr_max_params() || (uint32_t)m->max_batch * m->in_features > ezr_max_inputs()) {
        *why = "model exceeds the RTL accelerator's parameter or batch memory";
        return -1;
    }
    for (int l = 0; l < m->n_layers; l++) {
        const ez_layer *L = &m->layers[l];
        if (L->tt) {
            *why = "the RTL accelerator runs dense layers only (no tensor-train contraction)";
            return -1;
        }
        if (L->out_features > ezr_max_width() || (l && L->in_features > ezr_max_width())) {
            *why = "a layer is wider than the RTL accelerator's activation memory";
            return -1;
        }
    }
    ezr_model_reset();
    R.m = *m;
    ezr_cmd(EZR_WR_REG, EZR_REG_LAYERS, m->n_layers);
    uint32_t p = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const ez_layer *L = &m->layers[l];
        R.start[l] = p;
        R.e[l] = layer_exponent(L->in_features);
        uint32_t wb = p, bb = p + L->in_features * L->out_features;
        uint32_t regs[7] = {L->in_features, L->out_features, (uint32_t)L->relu | ((uint32_t)L->bias << 1), wb, bb,
                            1u << 30, (uint32_t)(22 + R.e[l])}; /* requant_multiplier(2^(8-e)) = (2^30, 22 + e) */
        for (unsigned k = 0; k < 7; k++)
            ezr_cmd(EZR_WR_REG, EZR_LAYER_REG(l, k), regs[k]);
        p += L->n_params;
    }
    R.start[m->n_layers] = p;
    return 0;
}

static int layer_of(uint32_t index)
{
    int l = 0;
    while (l + 1 < R.m.n_layers && index >= R.start[l + 1])
        l++;
    return l;
}

void ezr_write_weight(uint32_t index, float w)
{
    double t = w == w ? rint(ldexp((double)w, R.e[layer_of(index)])) : 0.0; /* NaN -> 0 */
    t = t > 32767.0 ? 32767.0 : (t < -32768.0 ? -32768.0 : t);
    ezr_cmd(EZR_WR_PARAM, index, (uint32_t)(int32_t)t & 0xFFFFu);
}

float ezr_read_weight(uint32_t index)
{
    int32_t t = (int32_t)ezr_cmd(EZR_RD_PARAM, index, 0);
    return ldexpf((float)t, -R.e[layer_of(index)]);
}

void ezr_write_input(uint32_t at, float x)
{
    double q = rint((double)x * 16.0);
    q = q > 127.0 ? 127.0 : (q < -128.0 ? -128.0 : q);
    ezr_cmd(EZR_WR_X, at, (uint32_t)(int32_t)q & 0xFFu);
}

/* z(seed) on [off, off + cnt) into the design (kept while the seed and range stay), per-layer steps of s */
static void direction(uint32_t seed, float s, uint32_t off, uint32_t cnt)
{
    if (!(R.gen_valid && R.gen_seed == seed && R.gen_off == off && R.gen_cnt == cnt)) {
        ezr_cmd(EZR_WR_REG, EZR_REG_SEED, seed);
        ezr_cmd(EZR_WR_REG, EZR_REG_LO, off);
        ezr_cmd(EZR_WR_REG, EZR_REG_HI, off + cnt);
        ezr_cmd(EZR_GEN, 0, 0);
        R.gen_seed = seed, R.gen_off = off, R.gen_cnt = cnt, R.gen_valid = 1;
    }
    for (int l = 0; l < R.m.n_layers; l++) {
        double d = rint(ldexp((double)s, R.e[l]));
        d = d > 2147483647.0 ? 2147483647.0 : (d < -2147483648.0 ? -2147483648.0 : d);
        ezr_cmd(EZR_WR_REG, EZR_LAYER_REG(l, 7), (uint32_t)(int32_t)d);
    }
}

/* numpy's pairwise summation for n <= 128 (as model.c), so the double sums match the Python simulator's */
static double np_sum(const double *v, uint32_t n)
{
    double res = 0.0, r[8];
    uint32_t i;
    if (n < 8) {
        for (i = 0; i < n; i++)
            res += v[i];
        return res;
    }
    for (i = 0; i < 8; i++)
        r[i] = v[i];
    for (i = 8; i < n - n % 8; i += 8)
        for (int j = 0; j < 8; j++)
            r[j] += v[i + j];
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++)
        res += v[i];
    return res;
}

/* cross-entropy of one sample's logits y_q / 16 (double, as ez_loss) */
static double sample_loss(uint32_t label)
{
    double lg[256], ex[256], mx = -HUGE_VAL;
    uint32_t C = R.m.out_features; /* <= the design's widest layer (ezr_model_set), < 256 */
    for (uint32_t c = 0; c < C; c++) {
        lg[c] = (double)(int32_t)ezr_cmd(EZR_RD_OUT, c, 0) / 16.0;
        if (lg[c] > mx)
            mx = lg[c];
    }
    for (uint32_t c = 0; c < C; c++)
        ex[c] = exp(lg[c] - mx);
    return log(np_sum(ex, C)) - (lg[label] - mx);
}

float ezr_loss(const uint8_t *labels, uint32_t n, uint32_t seed, float s, uint32_t off, uint32_t cnt)
{
    double per[128], total = 0.0;
    uint32_t done = 0, in = R.m.in_features;
    int perturb = s != 0.0f && cnt > 0;
    if (perturb)
        direction(seed, s, off, cnt);
    while (done < n) {
        uint32_t chunk = n - done < 128 ? n - done : 128;
        for (uint32_t i = 0; i < chunk; i++) {
            ezr_cmd(EZR_FORWARD, (done + i) * in, (uint32_t)perturb);
            per[i] = sample_loss(labels[done + i]);
        }
        total += np_sum(per, chunk);
        done += chunk;
    }
    return (float)(total / n);
}

void ezr_axpy(uint32_t seed, float a, uint32_t off, uint32_t cnt)
{
    if (cnt == 0)
        return;
    direction(seed, a, off, cnt);
    for (int l = 0; l < R.m.n_layers; l++)
        ezr_cmd(EZR_UPDATE, (unsigned)l, 0);
}

uint32_t ezr_crc32(void)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (uint32_t p = 0; p < R.m.n_params; p++) {
        float w = ezr_read_weight(p);
        uint32_t u;
        memcpy(&u, &w, 4);
        for (int k = 0; k < 4; k++) {
            crc ^= (u >> (8 * k)) & 0xFFu;
            for (int b = 0; b < 8; b++)
                crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
    }
    return crc ^ 0xFFFFFFFFu;
}
