/*
 * core/host_ops.c - the rest of a training step on the host path of CPU
 * devices: ReLU, pooling, flatten's copy, dropout, batch normalisation,
 * softmax cross-entropy, the batch gather and the SGD and Adam updates.
 * Beside the host Conv2d and Linear (core/host.c) each of these was a
 * PoCL command of about 20-40 us, as much as its work for LeNet-sized
 * layers; on the host they run in place on the tensors' memory
 * (core/tensor.c), so a training step issues no OpenCL command at all.
 *
 * Each function computes what its kernel in cl/nn.cl (or kdcl_ce_rows)
 * computes, so the two paths agree to rounding (batch normalisation sums
 * in double here); tests/test-nn.c runs every layer on both.
 */
#include "host.h"
#include "nn.h"

#include <math.h>
#include <string.h>

/* At most this many elements per thread before threads pay off. */
#define SERIAL_MAX 16384

/* Threads for n elements of cheap work. */
static int elem_threads(size_t n)
{
    return kdcl__host_threads(n / SERIAL_MAX + 1);
}

/* An operation reaches its tensors and starts its clock ... */
static int start(kdcl_context *ctx, struct kdcl__host_buf *buf, int n,
                 uint64_t *t0)
{
    int status = kdcl__host_map(ctx, buf, n);
    *t0 = kdcl__host_now_ns();
    return status;
}

/* ... and ends with its profile record and the unmaps. */
static int finish(kdcl_context *ctx, struct kdcl__host_buf *buf, int n,
                  const char *name, uint64_t t0)
{
    if (ctx->profiling)
        kdcl__profile_add_ns(ctx, name, kdcl__host_now_ns() - t0);
    return kdcl__host_unmap(ctx, buf, n, 1);
}

int kdcl__host_relu_forward(kdcl_context *ctx, const kdcl_tensor *x,
                            kdcl_tensor *y, size_t n)
{
    struct kdcl__host_buf buf[2] = {{x, 0, NULL}, {y, 1, NULL}};
    const int nt = elem_threads(n);
    uint64_t t0;
    int status = start(ctx, buf, 2, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        const float *restrict in = buf[0].p;
        float *restrict out = buf[1].p;
        size_t i, hi;
        for (kdcl__share(n, kdcl__thread_id(), nt, &i, &hi); i < hi; i++)
            out[i] = in[i] > 0.0f ? in[i] : 0.0f;
    }
    return finish(ctx, buf, 2, "host_relu_fwd", t0);
}

int kdcl__host_relu_backward(kdcl_context *ctx, const kdcl_tensor *y,
                             const kdcl_tensor *gy, kdcl_tensor *gx, size_t n)
{
    struct kdcl__host_buf buf[3] = {
        {y, 0, NULL}, {gy, 0, NULL}, {gx, 1, NULL}};
    const int nt = elem_threads(n);
    uint64_t t0;
    int status = start(ctx, buf, 3, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        const float *restrict out = buf[0].p, *restrict g = buf[1].p;
        float *restrict gin = buf[2].p;
        size_t i, hi;
        for (kdcl__share(n, kdcl__thread_id(), nt, &i, &hi); i < hi; i++) {
            const float gi = g[i]; /* read always: a select, vectorised */
            gin[i] = out[i] > 0.0f ? gi : 0.0f;
        }
    }
    return finish(ctx, buf, 3, "host_relu_bwd", t0);
}

/* The window rows (or columns) [*lo, *hi) of output row o inside [0, n). */
static void window(int64_t o, const struct kdcl__conv_geom *g, int64_t n,
                   int64_t *lo, int64_t *hi)
{
    const int64_t first = o * g->s - g->p;
    *lo = first < 0 ? -first : 0;
    *hi = first + g->k > n ? n - first : g->k;
}

/* 2x2 windows at stride 2 without padding (LeNet's): branch-free, so
   the compiler vectorises it. */
static void maxpool_plane_2x2(const struct kdcl__conv_geom *g,
                              const float *restrict x, float *restrict y,
                              int32_t *restrict idx)
{
    const int32_t W = (int32_t)g->w;
    for (int32_t oh = 0; oh < (int32_t)g->oh; oh++) {
        const int32_t r = 2 * oh * W;
        float *yr = y + oh * g->ow;
        int32_t *ir = idx + oh * g->ow;
        for (int32_t ow = 0; ow < (int32_t)g->ow; ow++) {
            const int32_t a = r + 2 * ow, c = a + W;
            float m = x[a];
            int32_t at = a;
            at = x[a + 1] > m ? a + 1 : at;
            m = x[a + 1] > m ? x[a + 1] : m;
            at = x[c] > m ? c : at;
            m = x[c] > m ? x[c] : m;
            at = x[c + 1] > m ? c + 1 : at;
            m = x[c + 1] > m ? x[c + 1] : m;
            yr[ow] = m;
            ir[ow] = at;
        }
    }
}

/* One plane: y = window maxima of x, idx = the offset of each (the first
   on ties, -1 for a window wholly in the padding). */
static void maxpool_plane(const struct kdcl__conv_geom *g, const float *x,
                          float *y, int32_t *idx)
{
    if (g->k == 2 && g->s == 2 && g->p == 0 && 2 * g->oh <= g->h
        && 2 * g->ow <= g->w) {
        maxpool_plane_2x2(g, x, y, idx);
        return;
    }
    for (int64_t oh = 0; oh < g->oh; oh++) {
        int64_t kh0, kh1;
        window(oh, g, g->h, &kh0, &kh1);
        for (int64_t ow = 0; ow < g->ow; ow++) {
            const int64_t ih = oh * g->s - g->p, iw = ow * g->s - g->p;
            int64_t kw0, kw1, at = -1;
            float m = -INFINITY;
            window(ow, g, g->w, &kw0, &kw1);
            for (int64_t kh = kh0; kh < kh1; kh++)
                for (int64_t kw = kw0; kw < kw1; kw++) {
                    const int64_t o = (ih + kh) * g->w + iw + kw;
                    if (at < 0 || x[o] > m) {
                        m = x[o];
                        at = o;
                    }
                }
            y[oh * g->ow + ow] = m;
            idx[oh * g->ow + ow] = (int32_t)at;
        }
    }
}

/* The geometry's planes: b images of c channels. */
static size_t planes(const struct kdcl__conv_geom *g)
{
    return (size_t)(g->b * g->c);
}

int kdcl__host_maxpool_forward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, kdcl_tensor *y,
                               kdcl_tensor *idx)
{
    struct kdcl__host_buf buf[3] = {
        {x, 0, NULL}, {y, 1, NULL}, {idx, 1, NULL}};
    const size_t np = planes(g), in = (size_t)(g->h * g->w),
                 out = (size_t)(g->oh * g->ow);
    const int nt = elem_threads(np * in);
    uint64_t t0;
    int status = start(ctx, buf, 3, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        size_t i, hi;
        for (kdcl__share(np, kdcl__thread_id(), nt, &i, &hi); i < hi; i++)
            maxpool_plane(g, buf[0].p + i * in, buf[1].p + i * out,
                          (int32_t *)(void *)buf[2].p + i * out);
    }
    return finish(ctx, buf, 3, "host_maxpool_fwd", t0);
}

int kdcl__host_maxpool_backward(kdcl_context *ctx,
                                const struct kdcl__conv_geom *g,
                                const kdcl_tensor *gy, const kdcl_tensor *idx,
                                kdcl_tensor *gx)
{
    struct kdcl__host_buf buf[3] = {
        {gy, 0, NULL}, {idx, 0, NULL}, {gx, 1, NULL}};
    const size_t np = planes(g), in = (size_t)(g->h * g->w),
                 out = (size_t)(g->oh * g->ow);
    const int nt = elem_threads(np * in);
    uint64_t t0;
    int status = start(ctx, buf, 3, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        size_t i, hi;
        for (kdcl__share(np, kdcl__thread_id(), nt, &i, &hi); i < hi; i++) {
            const float *gp = buf[0].p + i * out;
            const int32_t *ip = (const int32_t *)(void *)buf[1].p + i * out;
            float *gxp = buf[2].p + i * in;
            memset(gxp, 0, sizeof(float) * in);
            /* windows in order: as the kernel, also for overlaps */
            for (size_t o = 0; o < out; o++)
                if (ip[o] >= 0)
                    gxp[ip[o]] += gp[o];
        }
    }
    return finish(ctx, buf, 3, "host_maxpool_bwd", t0);
}

int kdcl__host_copy(kdcl_context *ctx, kdcl_tensor *dst,
                    const kdcl_tensor *src)
{
    struct kdcl__host_buf buf[2] = {{src, 0, NULL}, {dst, 1, NULL}};
    int status;
    if (dst->bytes != src->bytes)
        return kdcl__error(ctx, KDCL_ESHAPE, "host copy of %zu bytes into %zu",
                           src->bytes, dst->bytes);
    if ((status = kdcl__host_map(ctx, buf, 2)))
        return status;
    memcpy(buf[1].p, buf[0].p, dst->bytes);
    return kdcl__host_unmap(ctx, buf, 2, 1);
}

int kdcl__host_ce_rows(kdcl_context *ctx, const kdcl_tensor *logits,
                       const kdcl_tensor *labels, kdcl_tensor *grad,
                       kdcl_tensor *rows, size_t R, size_t C, float scale)
{
    struct kdcl__host_buf buf[4] = {{logits, 0, NULL},
                                    {labels, 0, NULL},
                                    {grad, 1, NULL},
                                    {rows, 1, NULL}};
    uint64_t t0;
    int status = start(ctx, buf, 4, &t0);
    if (status)
        return status;
    for (size_t r = 0; r < R; r++) {
        const float *z = buf[0].p + r * C;
        const int32_t y = ((const int32_t *)(void *)buf[1].p)[r];
        float *g = buf[2].p + r * C, m = -INFINITY, s = 0.0f, lse;
        if (y == -100 || y < 0 || (size_t)y >= C) {
            /* ignored (-100); a label out of range gives NaN, as a
               visible loss, where the kernel would read past the row */
            buf[3].p[r] = y == -100 ? 0.0f : NAN;
            memset(g, 0, sizeof(float) * C);
            continue;
        }
        for (size_t c = 0; c < C; c++)
            m = z[c] > m ? z[c] : m;
        for (size_t c = 0; c < C; c++)
            s += expf(z[c] - m);
        lse = m + logf(s);
        buf[3].p[r] = lse - z[y];
        for (size_t c = 0; c < C; c++)
            g[c] = scale * (expf(z[c] - lse) - (c == (size_t)y ? 1.0f : 0.0f));
    }
    return finish(ctx, buf, 4, "host_ce_rows", t0);
}

int kdcl__host_gather(kdcl_context *ctx, const kdcl_tensor *data,
                      const kdcl_tensor *all_labels, const int32_t *idx,
                      kdcl_tensor *x, kdcl_tensor *labels, size_t R, size_t D)
{
    struct kdcl__host_buf buf[4] = {{data, 0, NULL},
                                    {all_labels, 0, NULL},
                                    {x, 1, NULL},
                                    {labels, 1, NULL}};
    uint64_t t0;
    int status = start(ctx, buf, 4, &t0);
    if (status)
        return status;
    for (size_t r = 0; r < R; r++) {
        memcpy(buf[2].p + r * D, buf[0].p + (size_t)idx[r] * D,
               sizeof(float) * D);
        ((int32_t *)(void *)buf[3].p)[r] =
            ((const int32_t *)(void *)buf[1].p)[idx[r]];
    }
    return finish(ctx, buf, 4, "host_gather", t0);
}

int kdcl__host_argmax_correct(kdcl_context *ctx, const kdcl_tensor *logits,
                              const kdcl_tensor *labels, kdcl_tensor *correct,
                              size_t R, size_t C)
{
    struct kdcl__host_buf buf[3] = {
        {logits, 0, NULL}, {labels, 0, NULL}, {correct, 1, NULL}};
    int status = kdcl__host_map(ctx, buf, 3);
    if (status)
        return status;
    for (size_t r = 0; r < R; r++) {
        const float *z = buf[0].p + r * C;
        size_t best = 0;
        for (size_t c = 1; c < C; c++)
            if (z[c] > z[best])
                best = c; /* the first maximum on ties, as the kernel */
        ((int32_t *)(void *)buf[2].p)[r] =
            (int32_t)best == ((const int32_t *)(void *)buf[1].p)[r];
    }
    return kdcl__host_unmap(ctx, buf, 3, 1);
}

int kdcl__host_sgd(kdcl_context *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                   kdcl_tensor *v, size_t n, float lr, float mu, float wd,
                   int nesterov, int first)
{
    struct kdcl__host_buf buf[3] = {{w, 1, NULL}, {g, 0, NULL}, {v, 1, NULL}};
    const int nt = elem_threads(n);
    uint64_t t0;
    int status = start(ctx, buf, 3, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        float *wp = buf[0].p, *vp = buf[2].p;
        const float *gp = buf[1].p;
        size_t i, hi;
        kdcl__share(n, kdcl__thread_id(), nt, &i, &hi);
        /* the conditions hoisted and every load unconditional, so that
           both loops vectorise */
        if (mu == 0.0f)
            for (; i < hi; i++)
                wp[i] -= lr * (gp[i] + wd * wp[i]);
        else
            for (; i < hi; i++) {
                const float gi = gp[i] + wd * wp[i], v0 = vp[i];
                const float vi = first ? gi : mu * v0 + gi;
                vp[i] = vi;
                wp[i] -= lr * (nesterov ? gi + mu * vi : vi);
            }
    }
    return finish(ctx, buf, 3, "host_sgd", t0);
}

int kdcl__host_adam(kdcl_context *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                    kdcl_tensor *m, kdcl_tensor *v, size_t n, float lr,
                    float b1, float b2, float eps, float wd, float bc1,
                    float bc2)
{
    struct kdcl__host_buf buf[4] = {
        {w, 1, NULL}, {g, 0, NULL}, {m, 1, NULL}, {v, 1, NULL}};
    const int nt = elem_threads(n);
    uint64_t t0;
    int status = start(ctx, buf, 4, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        float *wp = buf[0].p, *mp = buf[2].p, *vp = buf[3].p;
        const float *gp = buf[1].p;
        size_t i, hi;
        for (kdcl__share(n, kdcl__thread_id(), nt, &i, &hi); i < hi; i++) {
            const float gi = gp[i] + wd * wp[i];
            const float mi = b1 * mp[i] + (1.0f - b1) * gi;
            const float vi = b2 * vp[i] + (1.0f - b2) * gi * gi;
            mp[i] = mi;
            vp[i] = vi;
            wp[i] -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
        }
    }
    return finish(ctx, buf, 4, "host_adam", t0);
}

/* ---------------------------------------------------------------------- */
/* The rest of the layers: average pooling, global average pooling,       */
/* dropout, batch normalisation, and the tap gradient's sum               */

int kdcl__host_avgpool_forward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, kdcl_tensor *y)
{
    struct kdcl__host_buf buf[2] = {{x, 0, NULL}, {y, 1, NULL}};
    const size_t np = planes(g), in = (size_t)(g->h * g->w),
                 out = (size_t)(g->oh * g->ow);
    const int nt = elem_threads(np * in);
    const float inv = 1.0f / (float)(g->k * g->k);
    uint64_t t0;
    int status = start(ctx, buf, 2, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        size_t i, hi;
        for (kdcl__share(np, kdcl__thread_id(), nt, &i, &hi); i < hi; i++) {
            const float *xp = buf[0].p + i * in;
            float *yp = buf[1].p + i * out;
            /* windows inside the plane (the model allows no padding) */
            for (int64_t oh = 0; oh < g->oh; oh++)
                for (int64_t ow = 0; ow < g->ow; ow++) {
                    float s = 0.0f;
                    for (int64_t kh = 0; kh < g->k; kh++)
                        for (int64_t kw = 0; kw < g->k; kw++)
                            s += xp[(oh * g->s + kh) * g->w + ow * g->s + kw];
                    yp[oh * g->ow + ow] = s * inv;
                }
        }
    }
    return finish(ctx, buf, 2, "host_avgpool_fwd", t0);
}

int kdcl__host_avgpool_backward(kdcl_context *ctx,
                                const struct kdcl__conv_geom *g,
                                const kdcl_tensor *gy, kdcl_tensor *gx)
{
    struct kdcl__host_buf buf[2] = {{gy, 0, NULL}, {gx, 1, NULL}};
    const size_t np = planes(g), in = (size_t)(g->h * g->w),
                 out = (size_t)(g->oh * g->ow);
    const int nt = elem_threads(np * in);
    const float inv = 1.0f / (float)(g->k * g->k);
    uint64_t t0;
    int status = start(ctx, buf, 2, &t0);
    if (status)
        return status;
    KDCL_PARALLEL_NT
    {
        size_t i, hi;
        for (kdcl__share(np, kdcl__thread_id(), nt, &i, &hi); i < hi; i++) {
            const float *gp = buf[0].p + i * out;
            float *gxp = buf[1].p + i * in;
            memset(gxp, 0, sizeof(float) * in);
            for (int64_t oh = 0; oh < g->oh; oh++)
                for (int64_t ow = 0; ow < g->ow; ow++) {
                    const float d = gp[oh * g->ow + ow] * inv;
                    for (int64_t kh = 0; kh < g->k; kh++)
                        for (int64_t kw = 0; kw < g->k; kw++)
                            gxp[(oh * g->s + kh) * g->w + ow * g->s + kw] += d;
                }
        }
    }
    return finish(ctx, buf, 2, "host_avgpool_bwd", t0);
}

int kdcl__host_gap_forward(kdcl_context *ctx, const kdcl_tensor *x,
                           kdcl_tensor *y, size_t planes_, size_t hw)
{
    struct kdcl__host_buf buf[2] = {{x, 0, NULL}, {y, 1, NULL}};
    uint64_t t0;
    int status = start(ctx, buf, 2, &t0);
    if (status)
        return status;
    for (size_t i = 0; i < planes_; i++) {
        float s = 0.0f;
        for (size_t p = 0; p < hw; p++)
            s += buf[0].p[i * hw + p];
        buf[1].p[i] = s / (float)hw;
    }
    return finish(ctx, buf, 2, "host_gap_fwd", t0);
}

int kdcl__host_gap_backward(kdcl_context *ctx, const kdcl_tensor *gy,
                            kdcl_tensor *gx, size_t planes_, size_t hw)
{
    struct kdcl__host_buf buf[2] = {{gy, 0, NULL}, {gx, 1, NULL}};
    uint64_t t0;
    int status = start(ctx, buf, 2, &t0);
    if (status)
        return status;
    for (size_t i = 0; i < planes_; i++) {
        const float d = buf[0].p[i] / (float)hw;
        for (size_t p = 0; p < hw; p++)
            buf[1].p[i * hw + p] = d;
    }
    return finish(ctx, buf, 2, "host_gap_bwd", t0);
}

/* nn_uniform of cl/nn.cl, bit for bit: a counter-based uniform in [0, 1)
   from (seed, step, i), so both paths drop the same elements. */
static float uniform(uint64_t seed, uint64_t step, uint64_t i)
{
    uint64_t z = seed
                 + 0x9e3779b97f4a7c15ull * (step * 0x100000001b3ull + i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

int kdcl__host_dropout_forward(kdcl_context *ctx, const kdcl_tensor *x,
                               kdcl_tensor *y, kdcl_tensor *mask, size_t n,
                               float p, uint64_t seed, uint64_t step)
{
    struct kdcl__host_buf buf[3] = {
        {x, 0, NULL}, {y, 1, NULL}, {mask, 1, NULL}};
    const float keep = 1.0f / (1.0f - p);
    uint64_t t0;
    int status = start(ctx, buf, 3, &t0);
    if (status)
        return status;
    for (size_t i = 0; i < n; i++) {
        const float m = uniform(seed, step, i) < p ? 0.0f : keep;
        buf[2].p[i] = m;
        buf[1].p[i] = buf[0].p[i] * m;
    }
    return finish(ctx, buf, 3, "host_dropout_fwd", t0);
}

int kdcl__host_mul(kdcl_context *ctx, const kdcl_tensor *a,
                   const kdcl_tensor *b, kdcl_tensor *y, size_t n)
{
    struct kdcl__host_buf buf[3] = {{a, 0, NULL}, {b, 0, NULL}, {y, 1, NULL}};
    uint64_t t0;
    int status = start(ctx, buf, 3, &t0);
    if (status)
        return status;
    for (size_t i = 0; i < n; i++)
        buf[2].p[i] = buf[0].p[i] * buf[1].p[i];
    return finish(ctx, buf, 3, "host_mul", t0);
}

int kdcl__host_add(kdcl_context *ctx, kdcl_tensor *y, const kdcl_tensor *x,
                   size_t n)
{
    struct kdcl__host_buf buf[2] = {{y, 1, NULL}, {x, 0, NULL}};
    uint64_t t0;
    int status = start(ctx, buf, 2, &t0);
    if (status)
        return status;
    for (size_t i = 0; i < n; i++)
        buf[0].p[i] += buf[1].p[i];
    return finish(ctx, buf, 2, "host_add", t0);
}

/* Batch normalisation over x [B, C, HW]; stats[2c] = mean, stats[2c+1] =
   1/sqrt(var + eps) as nn_bn_stats and nn_bn_eval_stats; the sums run in
   double, per channel in order. */
int kdcl__host_batchnorm_forward(kdcl_context *ctx,
                                 const struct kdcl__bn_geom *g,
                                 const kdcl_tensor *x, kdcl_tensor *y,
                                 kdcl_tensor *stats, kdcl_tensor *run_mean,
                                 kdcl_tensor *run_var,
                                 const kdcl_tensor *gamma,
                                 const kdcl_tensor *beta, int train)
{
    struct kdcl__host_buf buf[7] = {
        {x, 0, NULL},        {y, 1, NULL},     {stats, 1, NULL},
        {run_mean, 1, NULL}, {run_var, 1, NULL}, {gamma, 0, NULL},
        {beta, 0, NULL}};
    const size_t B = g->b, C = g->c, HW = g->hw, n = B * HW;
    uint64_t t0;
    int status = start(ctx, buf, 7, &t0);
    float *st = buf[2].p, *rm = buf[3].p, *rv = buf[4].p;
    if (status)
        return status;
    for (size_t c = 0; c < C; c++) {
        if (train) {
            double s = 0, q = 0, mean, var;
            for (size_t b = 0; b < B; b++)
                for (size_t p = 0; p < HW; p++)
                    s += buf[0].p[(b * C + c) * HW + p];
            mean = s / (double)n;
            for (size_t b = 0; b < B; b++)
                for (size_t p = 0; p < HW; p++) {
                    const double d = buf[0].p[(b * C + c) * HW + p] - mean;
                    q += d * d;
                }
            var = q / (double)n;
            st[2 * c] = (float)mean;
            st[2 * c + 1] = (float)(1.0 / sqrt(var + g->eps));
            rm[c] = (float)((1.0 - g->momentum) * rm[c] + g->momentum * mean);
            rv[c] = (float)((1.0 - g->momentum) * rv[c]
                            + g->momentum
                                  * (n > 1 ? var * (double)n / (double)(n - 1)
                                           : var));
        } else {
            st[2 * c] = rm[c];
            st[2 * c + 1] = (float)(1.0 / sqrt((double)rv[c] + g->eps));
        }
    }
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) {
            const float mean = st[2 * c], inv = st[2 * c + 1];
            const float ga = buf[5].p[c], be = buf[6].p[c];
            const float *xp = buf[0].p + (b * C + c) * HW;
            float *yp = buf[1].p + (b * C + c) * HW;
            for (size_t p = 0; p < HW; p++)
                yp[p] = (xp[p] - mean) * inv * ga + be;
        }
    return finish(ctx, buf, 7, "host_bn_fwd", t0);
}

/* dgamma = sum gy*xhat, dbeta = sum gy (overwritten), and gx = gamma
   invstd / n (n gy - dbeta - xhat dgamma), as the two backward kernels. */
int kdcl__host_batchnorm_backward(kdcl_context *ctx,
                                  const struct kdcl__bn_geom *g,
                                  const kdcl_tensor *x,
                                  const kdcl_tensor *gy,
                                  const kdcl_tensor *stats,
                                  const kdcl_tensor *gamma,
                                  kdcl_tensor *dgamma, kdcl_tensor *dbeta,
                                  kdcl_tensor *gx)
{
    struct kdcl__host_buf buf[7] = {
        {x, 0, NULL},      {gy, 0, NULL},    {stats, 0, NULL},
        {gamma, 0, NULL},  {dgamma, 1, NULL}, {dbeta, 1, NULL},
        {gx, 1, NULL}};
    const size_t B = g->b, C = g->c, HW = g->hw, n = B * HW;
    uint64_t t0;
    int status = start(ctx, buf, 7, &t0);
    const float *st;
    if (status)
        return status;
    st = buf[2].p;
    for (size_t c = 0; c < C; c++) {
        double sg = 0, sgx = 0;
        for (size_t b = 0; b < B; b++)
            for (size_t p = 0; p < HW; p++) {
                const size_t o = (b * C + c) * HW + p;
                sg += buf[1].p[o];
                sgx += (double)buf[1].p[o] * ((buf[0].p[o] - st[2 * c])
                                              * st[2 * c + 1]);
            }
        buf[5].p[c] = (float)sg;
        buf[4].p[c] = (float)sgx;
    }
    for (size_t b = 0; b < B; b++)
        for (size_t c = 0; c < C; c++) {
            const float mean = st[2 * c], inv = st[2 * c + 1];
            const float k = buf[3].p[c] * inv / (float)n;
            const float db = buf[5].p[c], dg = buf[4].p[c];
            const size_t o = (b * C + c) * HW;
            for (size_t p = 0; p < HW; p++) {
                const float xhat = (buf[0].p[o + p] - mean) * inv;
                buf[6].p[o + p] =
                    k * ((float)n * buf[1].p[o + p] - db - xhat * dg);
            }
        }
    return finish(ctx, buf, 7, "host_bn_bwd", t0);
}
