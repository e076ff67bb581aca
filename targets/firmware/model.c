/* model.c - float32 MLP / TT-MLP forward and cross-entropy (see model.h). */
#include "model.h"

#include <math.h>
#include <string.h>

static uint32_t prod(const uint8_t *v, int n)
{
    uint32_t p = 1;
    for (int i = 0; i < n; i++)
        p *= v[i];
    return p;
}

/* a * b, saturated at EZ_COUNT_CAP (sizes are checked against EZ_MAX_COUNT before any uint32 use) */
#define EZ_COUNT_CAP ((uint64_t)1 << 40)
static uint64_t mul_cap(uint64_t a, uint64_t b)
{
    if (a == 0 || b == 0)
        return 0;
    if (a > EZ_COUNT_CAP / b)
        return EZ_COUNT_CAP;
    return a * b;
}

static uint64_t prod_cap(const uint8_t *v, int n)
{
    uint64_t p = 1;
    for (int i = 0; i < n; i++)
        p = mul_cap(p, v[i]);
    return p;
}

static uint32_t rd16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }

static int too_large(const char **why)
{
    *why = "model too large: a layer or the whole model exceeds EZ_MAX_COUNT floats";
    return EZ_TOO_LARGE;
}

int ez_model_parse(ez_model *m, const uint8_t *body, uint32_t n, const char **why)
{
    memset(m, 0, sizeof *m);
    *why = "malformed model description";
    if (n < 4)
        return -1;
    m->loss = body[0];
    m->max_batch = (uint16_t)rd16(body + 1);
    m->n_layers = body[3];
    if (m->loss != 0 || m->max_batch < 1 || m->n_layers < 1) {
        *why = "unknown loss, zero batch or no layers";
        return -1;
    }
    if (m->n_layers > EZ_MAX_LAYERS) {
        *why = "too many layers for the firmware (EZ_MAX_LAYERS)";
        return -1;
    }
    uint32_t pos = 4;
    uint64_t total = 0;
    for (int l = 0; l < m->n_layers; l++) {
        ez_layer *L = &m->layers[l];
        uint64_t n_params, scratch;
        if (pos + 3 > n)
            return -1;
        L->tt = body[pos];
        if (body[pos + 1] > 1)
            return -1;
        L->relu = body[pos + 1];
        if (L->tt == 0) {
            if (pos + 7 > n)
                return -1;
            L->K = 1;
            L->in_features = rd16(body + pos + 2);
            L->out_features = rd16(body + pos + 4);
            L->bias = body[pos + 6];
            n_params = (uint64_t)L->in_features * L->out_features;
            scratch = L->in_features > L->out_features ? L->in_features : L->out_features;
            pos += 7;
        } else if (L->tt == 1) {
            int K = body[pos + 2];
            uint32_t p = pos + 3;
            if (K < 1 || K > EZ_MAX_CORES) {
                *why = "TT layer with 0 or too many cores (EZ_MAX_CORES)";
                return -1;
            }
            if (p + 3 * (uint32_t)K + 2 > n)
                return -1;
            L->K = (uint8_t)K;
            memcpy(L->in_modes, body + p, K);
            memcpy(L->out_modes, body + p + K, K);
            memcpy(L->ranks, body + p + 2 * K, K + 1);
            L->bias = body[p + 3 * K + 1];
            if (L->ranks[0] != 1 || L->ranks[K] != 1)
                return -1;
            for (int k = 0; k < K; k++)
                if (!L->in_modes[k] || !L->out_modes[k] || !L->ranks[k])
                    return -1;
            uint64_t in = prod_cap(L->in_modes, K), out = prod_cap(L->out_modes, K);
            if (in > EZ_MAX_COUNT || out > EZ_MAX_COUNT)
                return too_large(why);
            L->in_features = (uint32_t)in;
            L->out_features = (uint32_t)out;
            n_params = 0;
            for (int k = 0; k < K; k++)
                n_params += (uint64_t)L->ranks[k] * L->out_modes[k] * L->in_modes[k] * L->ranks[k + 1];
            scratch = in;
            for (int k = K - 1; k >= 0; k--) {
                uint64_t s = mul_cap(mul_cap(prod_cap(L->in_modes, k), L->ranks[k]), prod_cap(L->out_modes + k, K - k));
                if (s > scratch)
                    scratch = s;
            }
            pos = p + 3 * K + 2;
        } else {
            return -1;
        }
        if (L->bias > 1 || !L->in_features || !L->out_features)
            return -1;
        if (L->bias)
            n_params += L->out_features;
        if (l && m->layers[l - 1].out_features != L->in_features) {
            *why = "layer sizes do not chain";
            return -1;
        }
        total += n_params;
        if (n_params > EZ_MAX_COUNT || scratch > EZ_MAX_COUNT || total > EZ_MAX_COUNT)
            return too_large(why);
        L->n_params = (uint32_t)n_params;
        L->scratch = (uint32_t)scratch;
        m->n_params = (uint32_t)total;
        if (L->scratch > m->widest)
            m->widest = L->scratch;
    }
    if (pos != n) {
        *why = "trailing bytes after the layers";
        return -1;
    }
    m->in_features = m->layers[0].in_features;
    m->out_features = m->layers[m->n_layers - 1].out_features;
    return 0;
}

uint64_t ez_model_ram(const ez_model *m, uint32_t max_frame, uint64_t parts[6])
{
    parts[0] = 4 * (uint64_t)m->n_params;
    parts[1] = 4 * (uint64_t)m->n_params;
    parts[2] = (uint64_t)m->max_batch * (4 * (uint64_t)m->in_features + 1);
    parts[3] = 4 * (2 * (uint64_t)m->widest + m->out_features);
    parts[4] = 2 * (uint64_t)max_frame;
    parts[5] = 4 * (((uint64_t)max_frame - 8) / 4) + 16; /* the last evaluate's seeds, kind, offset, count, n */
    return parts[0] + parts[1] + parts[2] + parts[3] + parts[4] + parts[5];
}

/* T[p][n][q][s] (core k's input) -> out[p][r][mo][s] with out = sum_{n,q} core[r][mo][n][q] T[p][n][q][s] */
static void tt_core(const float *core, uint32_t P, uint32_t R, uint32_t M, uint32_t N, uint32_t Q, uint32_t S,
                    const float *T, float *out)
{
    for (uint32_t p = 0; p < P; p++)
        for (uint32_t r = 0; r < R; r++)
            for (uint32_t mo = 0; mo < M; mo++)
                for (uint32_t s = 0; s < S; s++) {
                    const float *c = core + (r * M + mo) * N * Q;
                    const float *t = T + p * N * Q * S + s;
                    float acc = 0.0f;
                    for (uint32_t nq = 0; nq < N * Q; nq++)
                        acc += c[nq] * t[nq * S];
                    out[((p * R + r) * M + mo) * S + s] = acc;
                }
}

void ez_forward(const ez_model *m, const float *theta, const float *x, float *a, float *b, float *logits)
{
    const float *h = x;
    float *bufs[2] = {a, b};
    int cur = 0;
    for (int l = 0; l < m->n_layers; l++) {
        const ez_layer *L = &m->layers[l];
        float *out = bufs[cur];
        if (!L->tt) {
            for (uint32_t o = 0; o < L->out_features; o++) {
                const float *w = theta + o * L->in_features;
                float acc = 0.0f;
                for (uint32_t i = 0; i < L->in_features; i++)
                    acc += w[i] * h[i];
                out[o] = acc;
            }
            theta += L->in_features * L->out_features;
        } else {
            /* offsets of the cores in theta */
            const float *core[EZ_MAX_CORES];
            const float *q = theta;
            for (int k = 0; k < L->K; k++) {
                core[k] = q;
                q += (uint32_t)L->ranks[k] * L->out_modes[k] * L->in_modes[k] * L->ranks[k + 1];
            }
            const float *T = h;
            uint32_t S = 1;
            for (int k = L->K - 1; k >= 0; k--) {
                float *dst = bufs[cur];
                tt_core(core[k], prod(L->in_modes, k), L->ranks[k], L->out_modes[k], L->in_modes[k],
                        L->ranks[k + 1], S, T, dst);
                S *= L->out_modes[k];
                T = dst;
                if (k)
                    cur ^= 1;
            }
            out = bufs[cur];
            theta = q;
        }
        if (L->bias) {
            for (uint32_t o = 0; o < L->out_features; o++)
                out[o] = out[o] + theta[o];
            theta += L->out_features;
        }
        if (L->relu)
            for (uint32_t o = 0; o < L->out_features; o++)
                out[o] = out[o] > 0.0f ? out[o] : 0.0f;
        h = out;
        cur ^= 1;
    }
    memcpy(logits, h, m->out_features * sizeof(float));
}

/* numpy's pairwise summation for n <= 128 (8 partial sums), so the double sums match the simulator's */
static double np_sum(const double *v, uint32_t n)
{
    double res;
    uint32_t i;
    if (n < 8) {
        res = 0.0;
        for (i = 0; i < n; i++)
            res += v[i];
        return res;
    }
    double r[8];
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

float ez_loss(const ez_model *m, const float *theta, const float *x, const uint8_t *y, uint32_t n,
              float *a, float *b, float *logits)
{
    double per[128], ex[256], total = 0.0;
    uint32_t C = m->out_features, done = 0;
    while (done < n) {
        uint32_t chunk = n - done < 128 ? n - done : 128;
        for (uint32_t i = 0; i < chunk; i++) {
            uint32_t s = done + i;
            ez_forward(m, theta, x + (size_t)s * m->in_features, a, b, logits);
            double mx = logits[0];
            for (uint32_t c = 1; c < C; c++)
                if (logits[c] > mx)
                    mx = logits[c];
            double lse;
            if (C <= 256) {
                for (uint32_t c = 0; c < C; c++)
                    ex[c] = exp((double)logits[c] - mx);
                lse = log(np_sum(ex, C));
            } else {
                lse = 0.0;
                for (uint32_t c = 0; c < C; c++)
                    lse += exp((double)logits[c] - mx);
                lse = log(lse);
            }
            per[i] = lse - ((double)logits[y[s]] - mx);
        }
        total += np_sum(per, chunk);
        done += chunk;
    }
    return (float)(total / n);
}
