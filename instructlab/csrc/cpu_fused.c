/* Element-wise kernels for LoRA training on a CPU: a Llama-family decoder layer's RMSNorm, SwiGLU gating and
 * rotary embedding, forward and backward, each in one pass over its tensors instead of one pass per PyTorch
 * operation (and one autograd node per operation).
 *
 * Compiled at first use by instructlab/cpu_fused.py (cc -O3 -march=native, with PyTorch's own OpenMP runtime,
 * so the kernels share its threads and follow torch.set_num_threads) and called through ctypes. Each kernel
 * computes what the PyTorch operations it replaces compute, in fp32, and rounds where they round: in bf16,
 * PyTorch's CPU kernels compute every operation in fp32 and round its result to bf16, so these round after the
 * same operations (bf16 variants), or not at all (fp32 variants). Plain C: the loops are written so that the
 * compiler vectorizes them (no branches, no library calls inside them).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef uint16_t bf16;

static inline float bf16_load(bf16 v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline bf16 bf16_store(float f) { /* round to nearest even, as c10::BFloat16 does; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    uint32_t nan = (u >> 16) | 0x40u;
    return (bf16)(((u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded);
}

static inline float bf16_round(float f) { return bf16_load(bf16_store(f)); }
static inline float f32_load(float v) { return v; }
static inline float f32_store(float f) { return f; }
static inline float f32_round(float f) { return f; }

/* exp(x) in fp32 without a library call (so that loops vectorize): 2^n * p(r), r = x - n ln 2, |r| <= ln2 / 2,
 * p the Cephes degree-6 polynomial (within 2 ulp of expf); overflow and underflow clamped to the fp32 range. */
static inline float exp_f32(float x) {
    x = x < -87.33654f ? -87.33654f : x;
    x = x > 88.72283f ? 88.72283f : x;
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* nearest integer, |n| < 2^22 */
    float r = fmaf(n, -0.693145751953125f, x);
    r = fmaf(n, -1.428606765330187045e-06f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

/* 1 + the index of the last nonzero byte of a[0..n), 0 if none: where a masked-softmax row's allowed keys end
 * (8 bytes at a time from the end: a causal row's masked half is skipped quickly) */
static inline int64_t last_allowed(const uint8_t *a, int64_t n) {
    int64_t hi = n;
    while (hi >= 8) {
        uint64_t w;
        memcpy(&w, a + hi - 8, 8);
        if (w) break;
        hi -= 8;
    }
    while (hi > 0 && !a[hi - 1]) --hi;
    return hi;
}

#define KERNELS(T, SUFFIX, LOAD, STORE, ROUND)                                                                      \
                                                                                                                    \
/* transformers' LlamaRMSNorm: h = x * rsqrt(mean(x^2) + eps) in fp32, rounded to x's dtype, y = w * h; the     \
 * per-row rsqrt is kept for the backward. x, y: rows x d, contiguous. */                                          \
void rmsnorm_forward_##SUFFIX(const T *x, const T *w, T *y, float *rstd, int64_t rows, int64_t d, float eps) {     \
    _Pragma("omp parallel for schedule(static)")                                                                    \
    for (int64_t r = 0; r < rows; ++r) {                                                                            \
        const T *xr = x + r * d;                                                                                    \
        T *yr = y + r * d;                                                                                          \
        float sum = 0.0f;                                                                                           \
        _Pragma("omp simd reduction(+:sum)")                                                                        \
        for (int64_t i = 0; i < d; ++i) {                                                                           \
            float v = LOAD(xr[i]);                                                                                  \
            sum += v * v;                                                                                           \
        }                                                                                                           \
        float rs = 1.0f / sqrtf(sum / (float)d + eps);                                                              \
        rstd[r] = rs;                                                                                               \
        _Pragma("omp simd")                                                                                         \
        for (int64_t i = 0; i < d; ++i) yr[i] = STORE(LOAD(w[i]) * ROUND(LOAD(xr[i]) * rs));                        \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* its gradient with respect to x, the weight frozen: with gh = g * w (rounded as PyTorch's product is),       \
 * dx = gh * rs - x * rs^3 * sum(gh * x) / d */                                                                     \
void rmsnorm_backward_##SUFFIX(const T *g, const T *x, const T *w, const float *rstd, T *dx, int64_t rows,         \
                               int64_t d) {                                                                         \
    _Pragma("omp parallel for schedule(static)")                                                                    \
    for (int64_t r = 0; r < rows; ++r) {                                                                            \
        const T *gr = g + r * d, *xr = x + r * d;                                                                   \
        T *dxr = dx + r * d;                                                                                        \
        float rs = rstd[r], dot = 0.0f;                                                                             \
        _Pragma("omp simd reduction(+:dot)")                                                                        \
        for (int64_t i = 0; i < d; ++i) dot += ROUND(LOAD(gr[i]) * LOAD(w[i])) * LOAD(xr[i]);                       \
        float c = -dot * rs * rs * rs / (float)d;                                                                   \
        _Pragma("omp simd")                                                                                         \
        for (int64_t i = 0; i < d; ++i) dxr[i] = STORE(ROUND(LOAD(gr[i]) * LOAD(w[i])) * rs + c * LOAD(xr[i]));    \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* SwiGLU gating: out = silu(gate) * up, silu(x) = x / (1 + exp(-x)); n elements, contiguous */                    \
void swiglu_forward_##SUFFIX(const T *gate, const T *up, T *out, int64_t n) {                                      \
    _Pragma("omp parallel for simd schedule(static)")                                                               \
    for (int64_t i = 0; i < n; ++i) {                                                                               \
        float x = LOAD(gate[i]);                                                                                    \
        out[i] = STORE(ROUND(x / (1.0f + exp_f32(-x))) * LOAD(up[i]));                                              \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* and its gradients: d_up = grad * silu(gate), d_gate = (grad * up) * s * (1 + gate * (1 - s)), s = sigmoid */    \
void swiglu_backward_##SUFFIX(const T *grad, const T *gate, const T *up, T *d_gate, T *d_up, int64_t n) {          \
    _Pragma("omp parallel for simd schedule(static)")                                                               \
    for (int64_t i = 0; i < n; ++i) {                                                                               \
        float x = LOAD(gate[i]), g = LOAD(grad[i]);                                                                 \
        float s = 1.0f / (1.0f + exp_f32(-x));                                                                      \
        d_up[i] = STORE(g * ROUND(x / (1.0f + exp_f32(-x))));                                                       \
        d_gate[i] = STORE(ROUND(g * LOAD(up[i])) * s * (1.0f + x * (1.0f - s)));                                    \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* transformers' rotary embedding of one tensor, x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1):      \
 * x and out are b x heads x length x d with any strides but the last (1), cos and sin are b x length x d (the     \
 * same for every head; last stride 1). */                                                                          \
void rope_forward_##SUFFIX(const T *x, const T *cos, const T *sin, T *out, int64_t b, int64_t heads,               \
                           int64_t length, int64_t d, int64_t xb, int64_t xh, int64_t xl, int64_t ob, int64_t oh,  \
                           int64_t ol, int64_t cb, int64_t cl) {                                                    \
    int64_t half = d / 2;                                                                                           \
    _Pragma("omp parallel for schedule(static)")                                                                    \
    for (int64_t row = 0; row < b * heads * length; ++row) {                                                        \
        int64_t i = row / (heads * length), h = (row / length) % heads, l = row % length;                          \
        const T *xr = x + i * xb + h * xh + l * xl, *c = cos + i * cb + l * cl, *s = sin + i * cb + l * cl;        \
        T *o = out + i * ob + h * oh + l * ol;                                                                      \
        _Pragma("omp simd")                                                                                         \
        for (int64_t k = 0; k < half; ++k) {                                                                        \
            float x1 = LOAD(xr[k]), x2 = LOAD(xr[k + half]);                                                        \
            o[k] = STORE(ROUND(x1 * LOAD(c[k])) + ROUND(-x2 * LOAD(s[k])));                                         \
            o[k + half] = STORE(ROUND(x2 * LOAD(c[k + half])) + ROUND(x1 * LOAD(s[k + half])));                     \
        }                                                                                                           \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* and its gradient: dx = g * cos + rotate_half^T(g * sin), rotate_half^T(t) = (t2, -t1) */                        \
void rope_backward_##SUFFIX(const T *g, const T *cos, const T *sin, T *dx, int64_t b, int64_t heads,              \
                            int64_t length, int64_t d, int64_t gb, int64_t gh, int64_t gl, int64_t ob, int64_t oh, \
                            int64_t ol, int64_t cb, int64_t cl) {                                                   \
    int64_t half = d / 2;                                                                                           \
    _Pragma("omp parallel for schedule(static)")                                                                    \
    for (int64_t row = 0; row < b * heads * length; ++row) {                                                        \
        int64_t i = row / (heads * length), h = (row / length) % heads, l = row % length;                          \
        const T *gr = g + i * gb + h * gh + l * gl, *c = cos + i * cb + l * cl, *s = sin + i * cb + l * cl;        \
        T *o = dx + i * ob + h * oh + l * ol;                                                                       \
        _Pragma("omp simd")                                                                                         \
        for (int64_t k = 0; k < half; ++k) {                                                                        \
            float g1 = LOAD(gr[k]), g2 = LOAD(gr[k + half]);                                                        \
            o[k] = STORE(ROUND(g1 * LOAD(c[k])) + ROUND(g2 * LOAD(s[k + half])));                                   \
            o[k + half] = STORE(ROUND(g2 * LOAD(c[k + half])) - ROUND(g1 * LOAD(s[k])));                            \
        }                                                                                                           \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* Attention's masked softmax over the keys (the last dimension) and its backward. scores, probs, grad, dscores:    \
 * rows x n, contiguous, rows = b * per_seq * q (a query row r belongs to sequence r / (per_seq * q) and is its     \
 * query r % q of q; q = n for the whole square, q < n for a block of queries over the keys they may see);          \
 * allowed: b x q x n bytes (1: the query may see the key). A row's probabilities are exp(s_j - max) / sum over     \
 * its allowed keys, in fp32, rounded once, and exactly 0 on the other keys; a row with no allowed key is uniform   \
 * (1 / n), as softmax(scores.masked_fill(~allowed, min)) gives it. The loops stop at the row's last allowed key:   \
 * for a causal mask, half of the scores are never read; and a row's arithmetic depends only on its keys up to      \
 * the last allowed one rounded up to 16, so a block of rows whose n is a multiple of 16 gets the bits it would     \
 * get in the whole square. */                                                                                      \
void masked_softmax_forward_##SUFFIX(const T *s, const uint8_t *allowed, T *p, int64_t rows, int64_t q,             \
                                     int64_t n, int64_t per_seq) {                                                  \
    _Pragma("omp parallel for schedule(static)")                                                                    \
    for (int64_t r = 0; r < rows; ++r) {                                                                            \
        const T *sr = s + r * n;                                                                                    \
        const uint8_t *ar = allowed + ((r / (per_seq * q)) * q + r % q) * n;                                        \
        T *pr = p + r * n;                                                                                          \
        int64_t hi = last_allowed(ar, n);                                                                           \
        if (hi == 0) {                                                                                              \
            T u = STORE(1.0f / (float)n);                                                                           \
            for (int64_t j = 0; j < n; ++j) pr[j] = u;                                                              \
            continue;                                                                                               \
        }                                                                                                           \
        /* whole vectors of 16 keys up to the last allowed one (the masked keys among them count 0), then the rest  \
         * of the row one key at a time where the row ends within that vector */                                    \
        int64_t m = (hi + 15) / 16 * 16, full = m <= n ? m : n / 16 * 16, end = m <= n ? m : n;                     \
        float top = -INFINITY, sum = 0.0f, e[m], keep[m];                                                           \
        for (int64_t j = 0; j < end; ++j) keep[j] = (float)ar[j];                                                   \
        float tops[16];                                                                                             \
        for (int64_t l = 0; l < 16; ++l) tops[l] = -INFINITY;                                                       \
        for (int64_t c = 0; c < full; c += 16) {                                                                    \
            _Pragma("omp simd")                                                                                     \
            for (int64_t l = 0; l < 16; ++l) {                                                                      \
                float v = keep[c + l] > 0.0f ? LOAD(sr[c + l]) : -INFINITY;                                         \
                tops[l] = v > tops[l] ? v : tops[l];                                                                \
            }                                                                                                       \
        }                                                                                                           \
        for (int64_t l = 0; l < 16; ++l) top = tops[l] > top ? tops[l] : top;                                       \
        for (int64_t j = full; j < end; ++j) top = keep[j] > 0.0f && LOAD(sr[j]) > top ? LOAD(sr[j]) : top;         \
        float sums[16] = {0.0f};                                                                                    \
        for (int64_t c = 0; c < full; c += 16) {                                                                    \
            _Pragma("omp simd")                                                                                     \
            for (int64_t l = 0; l < 16; ++l) { /* exp_f32 clamps its argument: a masked key's term is finite * 0 */ \
                e[c + l] = exp_f32(LOAD(sr[c + l]) - top) * keep[c + l];                                            \
                sums[l] += e[c + l];                                                                                \
            }                                                                                                       \
        }                                                                                                           \
        for (int64_t j = full; j < end; ++j) {                                                                      \
            e[j] = exp_f32(LOAD(sr[j]) - top) * keep[j];                                                            \
            sum += e[j];                                                                                            \
        }                                                                                                           \
        for (int64_t l = 0; l < 16; ++l) sum += sums[l];                                                            \
        float inv = 1.0f / sum;                                                                                     \
        for (int64_t c = 0; c < full; c += 16) {                                                                    \
            _Pragma("omp simd")                                                                                     \
            for (int64_t l = 0; l < 16; ++l) pr[c + l] = STORE(e[c + l] * inv);                                     \
        }                                                                                                           \
        for (int64_t j = full; j < end; ++j) pr[j] = STORE(e[j] * inv);                                             \
        memset(pr + end, 0, sizeof(T) * (size_t)(n - end)); /* +0.0 in both dtypes */                               \
    }                                                                                                               \
}                                                                                                                   \
                                                                                                                    \
/* and its gradient: ds_j = p_j * (g_j - sum_k g_k p_k), in fp32, rounded once; 0 where p_j is 0 (a masked key)     \
 * and on rows with no allowed key (their uniform probabilities do not depend on the scores) */                     \
void masked_softmax_backward_##SUFFIX(const T *g, const T *p, const uint8_t *allowed, T *ds, int64_t rows,          \
                                      int64_t q, int64_t n, int64_t per_seq) {                                      \
    _Pragma("omp parallel for schedule(static)")                                                                    \
    for (int64_t r = 0; r < rows; ++r) {                                                                            \
        const T *gr = g + r * n, *pr = p + r * n;                                                                   \
        const uint8_t *ar = allowed + ((r / (per_seq * q)) * q + r % q) * n;                                        \
        T *dr = ds + r * n;                                                                                         \
        int64_t hi = last_allowed(ar, n);                                                                           \
        int64_t m = (hi + 15) / 16 * 16, full = m <= n ? m : n / 16 * 16, end = m <= n ? m : n;                     \
        float dot = 0.0f, dots[16] = {0.0f};                                                                        \
        for (int64_t c = 0; c < full; c += 16) {                                                                    \
            _Pragma("omp simd")                                                                                     \
            for (int64_t l = 0; l < 16; ++l) dots[l] += LOAD(gr[c + l]) * LOAD(pr[c + l]);                          \
        }                                                                                                           \
        for (int64_t j = full; j < end; ++j) dot += LOAD(gr[j]) * LOAD(pr[j]);                                      \
        for (int64_t l = 0; l < 16; ++l) dot += dots[l];                                                            \
        for (int64_t c = 0; c < full; c += 16) {                                                                    \
            _Pragma("omp simd")                                                                                     \
            for (int64_t l = 0; l < 16; ++l) dr[c + l] = STORE(LOAD(pr[c + l]) * (LOAD(gr[c + l]) - dot));          \
        }                                                                                                           \
        for (int64_t j = full; j < end; ++j) dr[j] = STORE(LOAD(pr[j]) * (LOAD(gr[j]) - dot));                      \
        memset(dr + end, 0, sizeof(T) * (size_t)(n - end));                                                         \
    }                                                                                                               \
}

KERNELS(bf16, bf16, bf16_load, bf16_store, bf16_round)
KERNELS(float, f32, f32_load, f32_store, f32_round)

/* PyTorch's sum of a row's squares, x.float().pow(2).sum(-1), in PyTorch's order: at::sum's cascade
 * (aten/src/ATen/native/cpu/SumKernel.cpp: vectorized_inner_sum -> row_sum -> multi_row_sum) over vectors of
 * `lanes` floats, the width of the sum kernel PyTorch runs here (not always its dispatched capability's: on an
 * AVX512 machine, its AVX2 sum kernel, 8 lanes; cpu_fused._sum_lanes finds it by matching sums; 1 gives the
 * scalar path, which a row shorter than a vector takes). Each vector lane is an independent
 * chain of fp32 additions, so plain arrays reproduce it (the file is compiled with -ffp-contract=off and no
 * reassociation). */
static int64_t ceil_log2(int64_t x) { /* ATen's CeilLog2: 1 up to 2, else floor(log2(x - 1)) + 1 */
    if (x <= 2) return 1;
    int64_t bits = 0;
    for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) ++bits;
    return bits;
}

static inline __attribute__((always_inline)) float torch_sum_of_squares_lanes(const bf16 *x, int64_t d,
                                                                              int64_t lanes) {
    float acc[4][4][16];                  /* [level][interleaved row][lane] */
    memset(acc, 0, sizeof(acc));
    const int64_t nvec = d / lanes, size = nvec / 4; /* row_sum: the vectors as a (-1, 4) array */
    int64_t level_power = ceil_log2(size) / 4;
    if (level_power < 4) level_power = 4;
    const int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
#define SQUARE(idx) (bf16_load(x[idx]) * bf16_load(x[idx]))
    int64_t i = 0;
    while (i + level_step <= size) {
        for (int64_t j = 0; j < level_step; ++j, ++i)
            for (int64_t k = 0; k < 4; ++k)
                for (int64_t l = 0; l < lanes; ++l) acc[0][k][l] += SQUARE((i * 4 + k) * lanes + l);
        for (int64_t j = 1; j < 4; ++j) {
            for (int64_t k = 0; k < 4; ++k)
                for (int64_t l = 0; l < lanes; ++l) {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0f;
                }
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < size; ++i)
        for (int64_t k = 0; k < 4; ++k)
            for (int64_t l = 0; l < lanes; ++l) acc[0][k][l] += SQUARE((i * 4 + k) * lanes + l);
    for (int64_t j = 1; j < 4; ++j)
        for (int64_t k = 0; k < 4; ++k)
            for (int64_t l = 0; l < lanes; ++l) acc[0][k][l] += acc[j][k][l];
    for (int64_t v = size * 4; v < nvec; ++v) /* row_sum's vectors beyond a multiple of 4 */
        for (int64_t l = 0; l < lanes; ++l) acc[0][0][l] += SQUARE(v * lanes + l);
    for (int64_t k = 1; k < 4; ++k)
        for (int64_t l = 0; l < lanes; ++l) acc[0][0][l] += acc[0][k][l];
    float total = 0.0f;                   /* vectorized_inner_sum: the scalar tail, then the lanes in order */
    for (int64_t t = nvec * lanes; t < d; ++t) total += SQUARE(t);
    for (int64_t l = 0; l < lanes; ++l) total += acc[0][0][l];
#undef SQUARE
    return 0.0f + total;                  /* the output, filled with 0, accumulates the row's sum */
}

/* the same, with the widths PyTorch's sum kernels have (8: AVX2, 16: AVX-512) known to the compiler, so that the
 * loops over the lanes (independent chains of additions, one per lane) become vector instructions: the same
 * additions in the same order, in a fraction of the time */
static float torch_sum_of_squares_bf16(const bf16 *x, int64_t d, int64_t lanes) {
    if (lanes == 16) return torch_sum_of_squares_lanes(x, d, 16);
    if (lanes == 8) return torch_sum_of_squares_lanes(x, d, 8);
    return torch_sum_of_squares_lanes(x, d, lanes);
}

/* each row's sum of squares as above (to find which `lanes` gives PyTorch's sums) */
void sum_of_squares_bf16(const bf16 *x, float *out, int64_t rows, int64_t d, int64_t lanes) {
    for (int64_t r = 0; r < rows; ++r) out[r] = torch_sum_of_squares_bf16(x + r * d, d, lanes);
}

/* transformers' LlamaRMSNorm forward in bf16 with PyTorch's bits: mean(x^2) is the sum above divided by d (as
 * at::mean does on CPU), then rsqrt(mean + eps), the product rounded to bf16, times the weight. For forwards
 * without gradients (generation); `lanes` as above, or 1 where d < the vector width. */
void rmsnorm_forward_exact_bf16(const bf16 *x, const bf16 *w, bf16 *y, int64_t rows, int64_t d, float eps,
                                int64_t lanes) {
    _Pragma("omp parallel for schedule(static)")
    for (int64_t r = 0; r < rows; ++r) {
        const bf16 *xr = x + r * d;
        bf16 *yr = y + r * d;
        float rs = 1.0f / sqrtf(torch_sum_of_squares_bf16(xr, d, lanes) / (float)d + eps);
        _Pragma("omp simd")
        for (int64_t i = 0; i < d; ++i) yr[i] = bf16_store(bf16_load(w[i]) * bf16_round(bf16_load(xr[i]) * rs));
    }
}

/* Attention for a decoding step in bf16: one query position per sequence, each sequence alone on its own keys, so
 * that its result has the same bits whatever the batch (batch-invariant generation; see
 * cpu_kernels.invariant_attention_forward). The loop over a sequence's keys and the summation order are fixed
 * by the code alone, not by the batch, the cache's length or the thread count:
 *   score_j = sum over e of (q_e * scale) * k_je: 16 lanes, lane l summing elements l, l + 16, ... in order,
 *             then the lanes halved 8, 4, 2, 1 (a fixed tree);
 *   p_j = exp(score_j - max_j score_j) (exp_f32), in fp32; the sum of p_j in key order;
 *   out_e = (sum over j of p_j * v_je, in key order) / sum, rounded to bf16 once.
 * q: [tasks = b * kv_heads][groups][d], contiguous (the query heads that share a key/value head, as rows);
 * k, v: [b][kv_heads][slots][d] with strides (s_b, s_h, s_l) and d contiguous; the keys of sequence i are its
 * slots lo[i] to hi[i] - 1, 0 <= lo[i] <= hi[i] <= slots. out: as q. */
#define DECODE_TASK(NAME, D_ARG, D)                                                                              \
static void NAME(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, int64_t n, int64_t groups, D_ARG,     \
                 int64_t k_step, int64_t v_step, float scale, float *s, int64_t room) {                          \
    float qs[DECODE_MAX_GROUPS][D], acc[DECODE_MAX_GROUPS][D], kv[D], sums[DECODE_MAX_GROUPS];                   \
    for (int64_t g = 0; g < groups; ++g)                                                                         \
        for (int64_t e = 0; e < D; ++e) {                                                                        \
            qs[g][e] = bf16_load(q[g * D + e]) * scale;                                                          \
            acc[g][e] = 0.0f;                                                                                    \
        }                                                                                                        \
    for (int64_t j = 0; j < n; ++j) {                                                                            \
        _Pragma("omp simd")                                                                                      \
        for (int64_t e = 0; e < D; ++e) kv[e] = bf16_load(k[j * k_step + e]);                                   \
        for (int64_t g = 0; g < groups; ++g) {                                                                   \
            float t[16] = {0.0f};                                                                                \
            for (int64_t c = 0; c < D; c += 16) {                                                                \
                int64_t m = D - c < 16 ? D - c : 16;                                                             \
                _Pragma("omp simd")                                                                              \
                for (int64_t l = 0; l < m; ++l) t[l] += qs[g][c + l] * kv[c + l];                                \
            }                                                                                                    \
            for (int64_t w = 8; w >= 1; w /= 2) {                                                                \
                _Pragma("omp simd")                                                                              \
                for (int64_t l = 0; l < w; ++l) t[l] += t[l + w];                                                \
            }                                                                                                    \
            s[g * room + j] = t[0];                                                                              \
        }                                                                                                        \
    }                                                                                                            \
    for (int64_t g = 0; g < groups; ++g) {                                                                       \
        float *sg = s + g * room, top = -INFINITY, sum = 0.0f;                                                   \
        for (int64_t j = 0; j < n; ++j) top = sg[j] > top ? sg[j] : top;                                         \
        _Pragma("omp simd")                                                                                      \
        for (int64_t j = 0; j < n; ++j) sg[j] = exp_f32(sg[j] - top);                                            \
        for (int64_t j = 0; j < n; ++j) sum += sg[j];                                                            \
        sums[g] = sum;                                                                                           \
    }                                                                                                            \
    for (int64_t j = 0; j < n; ++j) {                                                                            \
        _Pragma("omp simd")                                                                                      \
        for (int64_t e = 0; e < D; ++e) kv[e] = bf16_load(v[j * v_step + e]);                                   \
        for (int64_t g = 0; g < groups; ++g) {                                                                   \
            float p = s[g * room + j];                                                                           \
            _Pragma("omp simd")                                                                                  \
            for (int64_t e = 0; e < D; ++e) acc[g][e] += p * kv[e];                                              \
        }                                                                                                        \
    }                                                                                                            \
    for (int64_t g = 0; g < groups; ++g) {                                                                       \
        float inv = n > 0 ? 1.0f / sums[g] : 0.0f;                                                               \
        _Pragma("omp simd")                                                                                      \
        for (int64_t e = 0; e < D; ++e) out[g * D + e] = bf16_store(acc[g][e] * inv);                            \
    }                                                                                                            \
}

#define DECODE_MAX_GROUPS 16
#define DECODE_MAX_D 512
/* the head sizes of the kit's models with their size known to the compiler (unrolled); any other up to 512 */
DECODE_TASK(decode_task_64, int64_t unused, 64)
DECODE_TASK(decode_task_128, int64_t unused, 128)
DECODE_TASK(decode_task_256, int64_t unused, 256)
DECODE_TASK(decode_task_any, int64_t d, d)

/* returns 0; -1 where groups or d is beyond what the kernel holds, or a key range is off the cache; -2 where the
 * scores' memory could not be allocated (nothing is written on an error) */
int decode_attention_bf16(const bf16 *q, const bf16 *k, const bf16 *v, bf16 *out, const int64_t *lo,
                          const int64_t *hi, int64_t b, int64_t kv_heads, int64_t groups, int64_t d, int64_t slots,
                          int64_t k_sb, int64_t k_sh, int64_t k_sl, int64_t v_sb, int64_t v_sh, int64_t v_sl,
                          float scale) {
    if (groups < 1 || groups > DECODE_MAX_GROUPS || d < 1 || d > DECODE_MAX_D) return -1;
    int64_t room = 1; /* the longest range: each task's scores, groups rows of `room` floats */
    for (int64_t i = 0; i < b; ++i) {
        if (lo[i] < 0 || lo[i] > hi[i] || hi[i] > slots) return -1;
        room = hi[i] - lo[i] > room ? hi[i] - lo[i] : room;
    }
    float *scratch = malloc(sizeof(float) * (size_t)(b * kv_heads * groups * room));
    if (scratch == NULL) return -2;
    _Pragma("omp parallel for schedule(static)")
    for (int64_t task = 0; task < b * kv_heads; ++task) {
        int64_t i = task / kv_heads, h = task % kv_heads, n = hi[i] - lo[i];
        const bf16 *kt = k + i * k_sb + h * k_sh + lo[i] * k_sl, *vt = v + i * v_sb + h * v_sh + lo[i] * v_sl;
        const bf16 *qt = q + task * groups * d;
        bf16 *ot = out + task * groups * d;
        float *s = scratch + task * groups * room;
        if (d == 64) decode_task_64(qt, kt, vt, ot, n, groups, 0, k_sl, v_sl, scale, s, room);
        else if (d == 128) decode_task_128(qt, kt, vt, ot, n, groups, 0, k_sl, v_sl, scale, s, room);
        else if (d == 256) decode_task_256(qt, kt, vt, ot, n, groups, 0, k_sl, v_sl, scale, s, room);
        else decode_task_any(qt, kt, vt, ot, n, groups, d, k_sl, v_sl, scale, s, room);
    }
    free(scratch);
    return 0;
}

/* how many threads the kernels' parallel loops use now (PyTorch's setting, when they share its runtime) */
#ifdef _OPENMP
#include <omp.h>
int fused_threads(void) { return omp_get_max_threads(); }
#else
int fused_threads(void) { return 1; }
#endif

/* ---------------------------------------------------------------- bf16 linear layers on AMX tiles (generation)
 *
 * out[m][n] = sum_k x[m][k] w[n][k] for bf16 x (M x K rows, contiguous) and a weight w (N x K, nn.Linear's layout)
 * packed once by amx_pack_bf16, rounded to bf16 once. Each 16 x 16 block of the output is one AMX tile that
 * accumulates the products of K in steps of 32 (TDPBF16PS: 16 pairs of bf16 products per output element and
 * step, summed in fp32), in the order of k, and is rounded to bf16 by VCVTNEPS2BF16 (round to nearest even).
 * A row's result depends on that row alone: the same bits in any batch. cpu_fused.py uses it only where a
 * once-per-process probe finds it gives F.linear's bits (oneDNN's AMX kernels sum in the same order). Why it
 * is faster than oneDNN's call at a decoding step's 16 rows: the packed weight is read once, in order, four
 * column blocks at a time, with nothing else per call (measured: benchmarks/decode_bandwidth.py). At a prompt's
 * 128 rows oneDNN sums in another order, so cpu_kernels keeps oneDNN's call there. */
#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__) && defined(__linux__)
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define KIT_ARCH_REQ_XCOMP_PERM 0x1023
#define KIT_XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} kit_tile_config;

/* 0 where this process may use AMX tiles (Linux asks each process to request them once), else -1 */
int amx_linear_available(void) {
    return syscall(SYS_arch_prctl, KIT_ARCH_REQ_XCOMP_PERM, KIT_XFEATURE_XTILEDATA) == 0 ? 0 : -1;
}

/* w (N x K) into tiles of 16 columns x 32 of K, each 16 rows of 32 bf16: row r holds, for each of the 16
 * columns, the pair k = 2r, 2r + 1 (the layout TDPBF16PS reads). N % 16 == 0, K % 32 == 0. */
void amx_pack_bf16(const uint16_t *w, uint16_t *packed, int64_t N, int64_t K) {
    const int64_t KB = K / 32;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
    for (int64_t nb = 0; nb < N / 16; nb++)
        for (int64_t kb = 0; kb < KB; kb++) {
            uint16_t *tile = packed + (nb * KB + kb) * 512;
            for (int r = 0; r < 16; r++)
                for (int c = 0; c < 16; c++) {
                    const uint16_t *src = w + (nb * 16 + c) * K + kb * 32 + 2 * r;
                    tile[r * 32 + 2 * c] = src[0];
                    tile[r * 32 + 2 * c + 1] = src[1];
                }
        }
}

/* M rows: at most 16, or a multiple of 16. N % 64 == 0, K % 32 == 0. Returns -1 where it does not apply. */
int amx_linear_bf16(const uint16_t *x, const uint16_t *packed, uint16_t *out, int64_t M, int64_t K, int64_t N) {
    if (M < 1 || (M > 16 && M % 16) || K < 32 || K % 32 || N < 64 || N % 64) return -1;
    const int64_t KB = K / 32, groups = N / 64, rows = M < 16 ? M : 16;
#ifdef _OPENMP
#pragma omp parallel
#endif
    {
        kit_tile_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.palette_id = 1;
        for (int t = 0; t < 6; t++) {  /* 0: rows of x, 1: a weight tile, 2-5: four output blocks */
            cfg.rows[t] = t == 1 ? 16 : (uint8_t)rows;
            cfg.colsb[t] = 64;
        }
        _tile_loadconfig(&cfg);
        float acc[4][16 * 16];
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t g = 0; g < groups; g++) {
            const uint16_t *b = packed + g * 4 * KB * 512;
            for (int64_t m0 = 0; m0 < M; m0 += rows) {
                const uint16_t *a = x + m0 * K;
                _tile_zero(2); _tile_zero(3); _tile_zero(4); _tile_zero(5);
                for (int64_t kb = 0; kb < KB; kb++) {
                    _tile_loadd(0, a + kb * 32, K * 2);
                    _tile_loadd(1, b + (0 * KB + kb) * 512, 64); _tile_dpbf16ps(2, 0, 1);
                    _tile_loadd(1, b + (1 * KB + kb) * 512, 64); _tile_dpbf16ps(3, 0, 1);
                    _tile_loadd(1, b + (2 * KB + kb) * 512, 64); _tile_dpbf16ps(4, 0, 1);
                    _tile_loadd(1, b + (3 * KB + kb) * 512, 64); _tile_dpbf16ps(5, 0, 1);
                }
                _tile_stored(2, acc[0], 64); _tile_stored(3, acc[1], 64);
                _tile_stored(4, acc[2], 64); _tile_stored(5, acc[3], 64);
                for (int j = 0; j < 4; j++)
                    for (int64_t m = 0; m < rows; m++) {
                        __m256bh r = _mm512_cvtneps_pbh(_mm512_loadu_ps(acc[j] + m * 16));
                        _mm256_storeu_si256((__m256i *)(out + (m0 + m) * N + g * 64 + j * 16), (__m256i)r);
                    }
            }
        }
        _tile_release();
    }
    return 0;
}
#else
int amx_linear_available(void) { return -1; }
void amx_pack_bf16(const uint16_t *w, uint16_t *packed, int64_t N, int64_t K) { (void)w; (void)packed; (void)N; (void)K; }
int amx_linear_bf16(const uint16_t *x, const uint16_t *packed, uint16_t *out, int64_t M, int64_t K, int64_t N) {
    (void)x; (void)packed; (void)out; (void)M; (void)K; (void)N;
    return -1;
}
#endif
