/*
 * tests/test-nn.c - the training engine's layers, optimizers and
 * schedules: finite-difference gradient checks of every layer (input and
 * parameters), convolution and pooling against naive float64 references,
 * optimizer steps against hand-computed values.
 */
#include "harness.h"
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static struct kdcl__layer_spec L(int kind)
{
    struct kdcl__layer_spec s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.stride = 1;
    s.eps = 1e-5;
    s.momentum = 0.1;
    return s;
}

struct net {
    struct kdcl__model *m;
    int64_t B, in_per, out;
    kdcl_tensor *x, *dy;
    float *r; /* L = sum r * output */
};

static void net_init(struct net *n, const struct kdcl__layer_spec *specs,
                     size_t count, uint32_t in_ndim, const int64_t *in_shape,
                     int64_t B)
{
    kdcl_context *ctx = th_ctx();
    int64_t xs[2], ys[2];
    memset(n, 0, sizeof *n);
    cr_assert_eq(kdcl__model_init(ctx, specs, count, in_ndim, in_shape, 7,
                                  &n->m),
                 KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    n->m->input_grad = 1;
    n->B = B;
    n->in_per = 1;
    for (uint32_t i = 0; i < in_ndim; i++)
        n->in_per *= in_shape[i];
    n->out = kdcl__model_out_features(n->m);
    xs[0] = B;
    xs[1] = n->in_per;
    ys[0] = B;
    ys[1] = n->out;
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, xs, &n->x), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ys, &n->dy), 0);
    n->r = malloc(sizeof(float) * (size_t)(B * n->out));
    th_fill_uniform(n->r, (size_t)(B * n->out), -1, 1, 99);
    cr_assert_eq(kdcl_tensor_write(n->dy, n->r,
                                   sizeof(float) * (size_t)(B * n->out)),
                 0);
}

static void net_free(struct net *n)
{
    kdcl__model_free(n->m);
    kdcl_tensor_free(n->x);
    kdcl_tensor_free(n->dy);
    free(n->r);
}

/* L(x) in training mode with a fixed dropout step. */
static double net_loss(struct net *n, const float *x)
{
    const kdcl_tensor *y;
    size_t no = (size_t)(n->B * n->out);
    float *out = malloc(sizeof(float) * no);
    double l = 0;
    cr_assert_eq(kdcl_tensor_write(n->x, x,
                                   sizeof(float) * (size_t)(n->B * n->in_per)),
                 0);
    n->m->step = 5;
    cr_assert_eq(kdcl__model_forward(n->m, n->x, n->B, 1, &y), KDCL_OK,
                 "%s", kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(kdcl_tensor_read(y, out, sizeof(float) * no), 0);
    for (size_t i = 0; i < no; i++)
        l += (double)n->r[i] * out[i];
    free(out);
    return l;
}

/* Check d L / d x and d L / d every parameter by central differences. */
static void check_grads(struct net *n, double lo, double hi, double h,
                        double tol)
{
    size_t nx = (size_t)(n->B * n->in_per);
    float *x = malloc(sizeof(float) * nx), *gx = malloc(sizeof(float) * nx);
    const char *name;
    kdcl_tensor *val, *grad;

    th_fill_uniform(x, nx, lo, hi, 5);
    net_loss(n, x);
    cr_assert_eq(kdcl__model_backward(n->m, n->dy), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(kdcl_tensor_read(kdcl__model_input_grad(n->m), gx,
                                  sizeof(float) * nx),
                 0);
    for (size_t i = 0; i < nx; i += 1 + nx / 40) {
        float x0 = x[i];
        double lp, lm, fd;
        x[i] = x0 + (float)h;
        lp = net_loss(n, x);
        x[i] = x0 - (float)h;
        lm = net_loss(n, x);
        x[i] = x0;
        fd = (lp - lm) / (2 * h);
        cr_assert(fabs(fd - gx[i]) <= tol * (1 + fabs(fd)),
                  "dL/dx[%zu]: analytic %g, finite difference %g", i, gx[i],
                  fd);
    }
    /* Parameters: the gradients of the unperturbed forward. */
    for (size_t k = 0; kdcl__model_param(n->m, k, &name, &val, &grad) == 0;
         k++) {
        size_t np = (size_t)kdcl_tensor_numel(val);
        float *v = malloc(sizeof(float) * np), *g = malloc(sizeof(float) * np);
        net_loss(n, x);
        cr_assert_eq(kdcl__model_backward(n->m, n->dy), 0);
        cr_assert_eq(kdcl_tensor_read(val, v, sizeof(float) * np), 0);
        cr_assert_eq(kdcl_tensor_read(grad, g, sizeof(float) * np), 0);
        for (size_t i = 0; i < np; i += 1 + np / 20) {
            float v0 = v[i];
            double lp, lm, fd;
            v[i] = v0 + (float)h;
            cr_assert_eq(kdcl_tensor_write(val, v, sizeof(float) * np), 0);
            lp = net_loss(n, x);
            v[i] = v0 - (float)h;
            cr_assert_eq(kdcl_tensor_write(val, v, sizeof(float) * np), 0);
            lm = net_loss(n, x);
            v[i] = v0;
            cr_assert_eq(kdcl_tensor_write(val, v, sizeof(float) * np), 0);
            fd = (lp - lm) / (2 * h);
            cr_assert(fabs(fd - g[i]) <= tol * (1 + fabs(fd)),
                      "d L / d %s[%zu]: analytic %g, finite difference %g",
                      name, i, g[i], fd);
        }
        free(v);
        free(g);
    }
    free(x);
    free(gx);
}

/* Every layer the host path of CPU devices runs (Conv2d, Linear, ReLU,
   max pooling, flatten: core/host.c, core/host_ops.c) also runs as
   device kernels: their tests run both, as do the optimizers'. */
static const char *const layer_paths[] = {"kernel", "host"};
#define FOR_EACH_LAYER_PATH(body)                                             \
    for (size_t path_ = 0; path_ < 2; path_++) {                             \
        cr_assert_eq(setenv("KDCL_LAYERS", layer_paths[path_], 1), 0);          \
        body;                                                                \
    }

static void linear_grads_case(void)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_LINEAR)};
    int64_t in[1] = {7};
    struct net n;
    s[0].out = 5;
    net_init(&n, s, 1, 1, in, 3);
    check_grads(&n, -1, 1, 1e-2, 2e-3);
    net_free(&n);
}

Test(nn, linear_gradients)
{
    FOR_EACH_LAYER_PATH(linear_grads_case());
}

/* B 67: the host path's groups of up to 32 images per GEMM, and a
   ragged last group, on one thread or two. */
static void conv_grads_case(int B)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_CONV2D), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {2, 6, 5};
    struct net n;
    s[0].out = 3;
    s[0].kernel = 3;
    s[0].stride = 2;
    s[0].padding = 1;
    net_init(&n, s, 2, 3, in, B);
    check_grads(&n, -1, 1, 1e-2, 2e-3);
    net_free(&n);
}

Test(nn, conv2d_gradients_stride_and_padding)
{
    FOR_EACH_LAYER_PATH(conv_grads_case(2));
    FOR_EACH_LAYER_PATH(conv_grads_case(67));
}

static void relu_grads_case(void)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_RELU)};
    int64_t in[1] = {40};
    struct net n;
    net_init(&n, s, 1, 1, in, 2);
    check_grads(&n, -1, 1, 1e-3, 2e-3);
    net_free(&n);
}

Test(nn, relu_gradients)
{
    FOR_EACH_LAYER_PATH(relu_grads_case());
}

static void relu_pool_grads_case(void)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_RELU), L(KDCL__L_MAXPOOL),
                                   L(KDCL__L_AVGPOOL), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {2, 9, 9};
    struct net n;
    s[1].kernel = 3; /* overlapping windows */
    s[1].stride = 2;
    s[1].padding = 1;
    s[2].kernel = 2;
    s[2].stride = 2;
    net_init(&n, s, 4, 3, in, 2);
    /* h small against the gaps between random values, kinks avoided */
    check_grads(&n, -1, 1, 1e-3, 1e-2);
    net_free(&n);
}

Test(nn, relu_and_pooling_gradients)
{
    FOR_EACH_LAYER_PATH(relu_pool_grads_case());
}

static void maxpool_2x2_grads_case(void)
{
    /* 2x2 windows, stride 2: the fast path; 7x7 leaves an unused edge. */
    struct kdcl__layer_spec s[] = {L(KDCL__L_MAXPOOL), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {2, 7, 7};
    struct net n;
    s[0].kernel = 2;
    s[0].stride = 2;
    net_init(&n, s, 2, 3, in, 2);
    check_grads(&n, -1, 1, 1e-3, 1e-2);
    net_free(&n);
}

Test(nn, maxpool_non_overlapping_gradients)
{
    FOR_EACH_LAYER_PATH(maxpool_2x2_grads_case());
}

/* Equal values in a window: the gradient goes to the first (row-major),
   as PyTorch's; windows of 2 (the fast path) and of 3 at stride 1. */
static void maxpool_ties_case(int k, int stride)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_MAXPOOL), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {1, 4, 4};
    struct net n;
    float x[16], gx[16];
    const kdcl_tensor *y;
    s[0].kernel = k;
    s[0].stride = stride;
    net_init(&n, s, 2, 3, in, 1);
    for (int i = 0; i < 16; i++)
        x[i] = 1.0f;
    cr_assert_eq(kdcl_tensor_write(n.x, x, sizeof x), 0);
    cr_assert_eq(kdcl__model_forward(n.m, n.x, 1, 1, &y), 0);
    cr_assert_eq(kdcl__model_backward(n.m, n.dy), 0);
    cr_assert_eq(kdcl_tensor_read(kdcl__model_input_grad(n.m), gx, sizeof gx),
                 0);
    for (int oh = 0, o = 0; oh * stride + k <= 4; oh++)
        for (int ow = 0; ow * stride + k <= 4; ow++, o++) {
            int first = oh * stride * 4 + ow * stride;
            /* each window's gradient lands on its first element */
            gx[first] -= n.r[o];
        }
    for (int i = 0; i < 16; i++)
        cr_assert_float_eq(gx[i], 0.0f, 1e-6, "k %d: gx[%d] = %g", k, i,
                           gx[i]);
    net_free(&n);
}

Test(nn, maxpool_ties_go_to_the_first)
{
    FOR_EACH_LAYER_PATH(maxpool_ties_case(2, 2));
    FOR_EACH_LAYER_PATH(maxpool_ties_case(3, 1));
}

/* Average pooling with overlapping windows (3 at stride 2) and with gaps
   between them (2 at stride 3). */
static void avgpool_grads_case(int k, int stride)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_AVGPOOL), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {2, 7, 8};
    struct net n;
    s[0].kernel = k;
    s[0].stride = stride;
    net_init(&n, s, 2, 3, in, 2);
    check_grads(&n, -1, 1, 1e-2, 2e-3);
    net_free(&n);
}

Test(nn, avgpool_overlaps_and_gaps_gradients)
{
    FOR_EACH_LAYER_PATH(avgpool_grads_case(3, 2));
    FOR_EACH_LAYER_PATH(avgpool_grads_case(2, 3));
}

static void gap_grads_case(void)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_GAP)};
    int64_t in[3] = {3, 4, 4};
    struct net n;
    net_init(&n, s, 1, 3, in, 2);
    check_grads(&n, -1, 1, 1e-2, 2e-3);
    net_free(&n);
}

Test(nn, global_average_pool_gradients)
{
    FOR_EACH_LAYER_PATH(gap_grads_case());
}

/* y: the dropout layer's training output for x = 1 at step 5. */
static void dropout_case(float *y)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_DROPOUT)};
    int64_t in[1] = {1000};
    struct net n;
    float *x = malloc(sizeof(float) * 1000);
    const kdcl_tensor *out;
    int zeros = 0;
    s[0].p = 0.3;
    net_init(&n, s, 1, 1, in, 1);
    check_grads(&n, -1, 1, 1e-2, 2e-3);
    for (int i = 0; i < 1000; i++)
        x[i] = 1.0f;
    kdcl_tensor_write(n.x, x, 4000);
    cr_assert_eq(kdcl__model_forward(n.m, n.x, 1, 1, &out), 0);
    kdcl_tensor_read(out, y, 4000);
    for (int i = 0; i < 1000; i++) {
        cr_assert(y[i] == 0.0f || fabsf(y[i] - 1.0f / 0.7f) < 1e-6f);
        zeros += y[i] == 0.0f;
    }
    cr_assert(zeros > 240 && zeros < 360, "%d of 1000 dropped", zeros);
    /* Eval mode passes the input through. */
    cr_assert_eq(kdcl__model_forward(n.m, n.x, 1, 0, &out), 0);
    kdcl_tensor_read(out, x, 4000);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(x[i], 1.0f);
    free(x);
    net_free(&n);
}

Test(nn, dropout_gradients_and_rate)
{
    float *kernel = malloc(sizeof(float) * 1000);
    float *host = malloc(sizeof(float) * 1000);
    cr_assert_eq(setenv("KDCL_LAYERS", "kernel", 1), 0);
    dropout_case(kernel);
    cr_assert_eq(setenv("KDCL_LAYERS", "host", 1), 0);
    dropout_case(host);
    /* the same counter-based stream: the same elements drop */
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(kernel[i], host[i], "element %d", i);
    free(kernel);
    free(host);
}

static void bn_grads_case(void)
{
    struct kdcl__layer_spec s1[] = {L(KDCL__L_BATCHNORM)};
    struct kdcl__layer_spec s2[] = {L(KDCL__L_BATCHNORM), L(KDCL__L_FLATTEN)};
    int64_t in1[1] = {4}, in2[3] = {3, 2, 2};
    struct net n;
    net_init(&n, s1, 1, 1, in1, 5);
    check_grads(&n, -2, 2, 1e-2, 5e-3);
    net_free(&n);
    net_init(&n, s2, 2, 3, in2, 3);
    check_grads(&n, -2, 2, 1e-2, 5e-3);
    net_free(&n);
}

Test(nn, batchnorm_gradients_2d_and_4d)
{
    FOR_EACH_LAYER_PATH(bn_grads_case());
}

static void bn_stats_case(void)
{
    /* One training batch of x = [1, 3] per channel: mean 2, biased var 1,
       unbiased var 2; running: 0.9*0 + 0.1*2, 0.9*1 + 0.1*2. */
    struct kdcl__layer_spec s[] = {L(KDCL__L_BATCHNORM)};
    int64_t in[1] = {1};
    struct net n;
    const kdcl_tensor *y;
    float x[2] = {1, 3}, out[2];
    const char *name;
    kdcl_tensor *val;
    float rm, rv;
    int64_t nbt;
    net_init(&n, s, 1, 1, in, 2);
    kdcl_tensor_write(n.x, x, sizeof x);
    cr_assert_eq(kdcl__model_forward(n.m, n.x, 2, 1, &y), 0);
    kdcl_tensor_read(y, out, sizeof out);
    cr_assert_float_eq(out[0], -1.0f / sqrtf(1.0f + 1e-5f), 1e-5);
    cr_assert_eq(kdcl__model_state(n.m, 2, &name, &val), 0);
    cr_assert_str_eq(name, "0.running_mean");
    kdcl_tensor_read(val, &rm, 4);
    cr_assert_float_eq(rm, 0.2f, 1e-6);
    cr_assert_eq(kdcl__model_state(n.m, 3, &name, &val), 0);
    kdcl_tensor_read(val, &rv, 4);
    cr_assert_float_eq(rv, 1.1f, 1e-6);
    cr_assert_eq(kdcl__model_state(n.m, 4, &name, &val), 0);
    cr_assert_str_eq(name, "0.num_batches_tracked");
    kdcl_tensor_read(val, &nbt, 8);
    cr_assert_eq(nbt, 1);
    /* Eval: (x - 0.2) / sqrt(1.1 + eps). */
    cr_assert_eq(kdcl__model_forward(n.m, n.x, 2, 0, &y), 0);
    kdcl_tensor_read(y, out, sizeof out);
    cr_assert_float_eq(out[1], (3.0f - 0.2f) / sqrtf(1.1f + 1e-5f), 1e-5);
    net_free(&n);
}

Test(nn, batchnorm_running_stats_and_eval)
{
    FOR_EACH_LAYER_PATH(bn_stats_case());
}

static void conv_reference_case(int B)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_CONV2D), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {3, 7, 6};
    const int C = 3, H = 7, W = 6, OC = 4, K = 3, S = 2, P = 1;
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    const size_t nx = (size_t)B * C * H * W;
    struct net n;
    float *x = malloc(sizeof(float) * nx), w[4 * 3 * 3 * 3], b[4], *y;
    const kdcl_tensor *out;
    const char *name;
    kdcl_tensor *val, *grad;
    s[0].out = OC;
    s[0].kernel = K;
    s[0].stride = S;
    s[0].padding = P;
    net_init(&n, s, 2, 3, in, B);
    th_fill_uniform(x, nx, -1, 1, 3);
    kdcl_tensor_write(n.x, x, sizeof(float) * nx);
    kdcl__model_param(n.m, 0, &name, &val, &grad);
    cr_assert_str_eq(name, "0.weight");
    kdcl_tensor_read(val, w, sizeof w);
    kdcl__model_param(n.m, 1, &name, &val, &grad);
    kdcl_tensor_read(val, b, sizeof b);
    cr_assert_eq(kdcl__model_forward(n.m, n.x, B, 0, &out), 0);
    y = malloc(sizeof(float) * B * OC * OH * OW);
    kdcl_tensor_read(out, y, sizeof(float) * B * OC * OH * OW);
    for (int bb = 0; bb < B; bb++)
        for (int o = 0; o < OC; o++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = b[o];
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh * S - P + kh, iw = ow * S - P + kw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                                    continue;
                                acc += (double)w[((o * C + c) * K + kh) * K
                                                 + kw]
                                       * x[((bb * C + c) * H + ih) * W + iw];
                            }
                    th_assert_close1(
                        y[((bb * OC + o) * OH + oh) * OW + ow], acc, 1e-5,
                        1e-5, "conv output");
                }
    free(x);
    free(y);
    net_free(&n);
}

Test(nn, conv2d_matches_naive_reference)
{
    FOR_EACH_LAYER_PATH(conv_reference_case(2));
    FOR_EACH_LAYER_PATH(conv_reference_case(67));
}

static void maxpool_reference_case(void)
{
    struct kdcl__layer_spec s[] = {L(KDCL__L_MAXPOOL), L(KDCL__L_FLATTEN)};
    int64_t in[3] = {2, 5, 5};
    struct net n;
    float x[2 * 2 * 5 * 5], y[2 * 2 * 2 * 2];
    const kdcl_tensor *out;
    s[0].kernel = 2;
    s[0].stride = 2;
    net_init(&n, s, 2, 3, in, 2);
    th_fill_uniform(x, sizeof x / 4, -1, 1, 8);
    kdcl_tensor_write(n.x, x, sizeof x);
    cr_assert_eq(kdcl__model_forward(n.m, n.x, 2, 0, &out), 0);
    kdcl_tensor_read(out, y, sizeof y);
    for (int p = 0; p < 4; p++)
        for (int oh = 0; oh < 2; oh++)
            for (int ow = 0; ow < 2; ow++) {
                float m = -INFINITY;
                for (int kh = 0; kh < 2; kh++)
                    for (int kw = 0; kw < 2; kw++)
                        m = fmaxf(m, x[p * 25 + (oh * 2 + kh) * 5 + ow * 2
                                       + kw]);
                cr_assert_eq(y[(p * 2 + oh) * 2 + ow], m);
            }
    net_free(&n);
}

Test(nn, maxpool_matches_naive_reference)
{
    FOR_EACH_LAYER_PATH(maxpool_reference_case());
}

/* Softmax cross-entropy (kdcl__ce_rows, kdcl train's loss without a
   teacher) against float64, an ignored row (-100) included. */
static void ce_case(void)
{
    kdcl_context *ctx = th_ctx();
    enum { R = 5, C = 7 };
    int64_t zs[2] = {R, C}, r = R;
    float z[R * C], g[R * C], rows[R];
    int32_t y[R] = {3, 0, -100, 6, 2};
    kdcl_tensor *tz, *ty, *tg, *tr;
    th_fill_uniform(z, R * C, -4, 4, 21);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, zs, &tz), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, zs, &tg), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &r, &ty), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &r, &tr), 0);
    kdcl_tensor_write(tz, z, sizeof z);
    kdcl_tensor_write(ty, y, sizeof y);
    cr_assert_eq(kdcl__ce_rows(ctx, tz, ty, tg, tr, R, C), 0, "%s",
                 kdcl_context_errmsg(ctx));
    kdcl_tensor_read(tg, g, sizeof g);
    kdcl_tensor_read(tr, rows, sizeof rows);
    for (int b = 0; b < R; b++) {
        double m = -INFINITY, s = 0, lse;
        for (int c = 0; c < C; c++)
            m = fmax(m, z[b * C + c]);
        for (int c = 0; c < C; c++)
            s += exp(z[b * C + c] - m);
        lse = m + log(s);
        th_assert_close1(rows[b], y[b] < 0 ? 0.0 : lse - z[b * C + y[b]],
                         1e-6, 1e-5, "row loss");
        for (int c = 0; c < C; c++) {
            double want = y[b] < 0 ? 0.0
                                   : (exp(z[b * C + c] - lse)
                                      - (c == y[b] ? 1.0 : 0.0))
                                         / R;
            th_assert_close1(g[b * C + c], want, 1e-7, 1e-5, "gradient");
        }
    }
    kdcl_tensor_free(tz);
    kdcl_tensor_free(ty);
    kdcl_tensor_free(tg);
    kdcl_tensor_free(tr);
}

Test(nn, cross_entropy_matches_reference)
{
    FOR_EACH_LAYER_PATH(ce_case());
}

/* The host path's batch gather: rows and labels by index. */
Test(nn, host_gather_rows)
{
    kdcl_context *ctx = th_ctx();
    int64_t ds[2] = {4, 3}, xs[2] = {3, 3}, n4 = 4, n3 = 3;
    float data[12], x[9];
    int32_t labels[4] = {7, 8, 9, 10}, idx[3] = {2, 0, 2}, got[3];
    kdcl_tensor *td, *tl, *tx, *ty;
    for (int i = 0; i < 12; i++)
        data[i] = (float)i;
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ds, &td), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &n4, &tl), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, xs, &tx), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &n3, &ty), 0);
    kdcl_tensor_write(td, data, sizeof data);
    kdcl_tensor_write(tl, labels, sizeof labels);
    cr_assert_eq(kdcl__host_gather(ctx, td, tl, idx, tx, ty, 3, 3), 0);
    kdcl_tensor_read(tx, x, sizeof x);
    kdcl_tensor_read(ty, got, sizeof got);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(got[r], labels[idx[r]]);
        for (int d = 0; d < 3; d++)
            cr_assert_eq(x[r * 3 + d], data[idx[r] * 3 + d]);
    }
    kdcl_tensor_free(td);
    kdcl_tensor_free(tl);
    kdcl_tensor_free(tx);
    kdcl_tensor_free(ty);
}

/* The host path's accuracy count: the first maximum on ties, as the
   kernel's. */
Test(nn, host_argmax_takes_the_first_maximum)
{
    kdcl_context *ctx = th_ctx();
    int64_t zs[2] = {3, 3}, n3 = 3;
    float z[9] = {1, 5, 5, /* tie: class 1 */ 2, 2, 2, /* class 0 */
                  0, -1, 3};
    int32_t y[3] = {1, 1, 2}, ok[3];
    kdcl_tensor *tz, *ty, *tc;
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, zs, &tz), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &n3, &ty), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &n3, &tc), 0);
    kdcl_tensor_write(tz, z, sizeof z);
    kdcl_tensor_write(ty, y, sizeof y);
    cr_assert_eq(kdcl__host_argmax_correct(ctx, tz, ty, tc, 3, 3), 0);
    kdcl_tensor_read(tc, ok, sizeof ok);
    cr_assert_eq(ok[0], 1);
    cr_assert_eq(ok[1], 0);
    cr_assert_eq(ok[2], 1);
    kdcl_tensor_free(tz);
    kdcl_tensor_free(ty);
    kdcl_tensor_free(tc);
}

/* On a CPU device the host path reaches tensors in place; with
   KDCL_ZERO_COPY=0 (set before the test's context opens) it maps them
   instead.  The same layers must agree either way. */
Test(nn, host_path_through_maps)
{
    cr_assert_eq(setenv("KDCL_ZERO_COPY", "0", 1), 0);
    if (th_ctx()->host_direct)
        cr_skip_test("the context was opened before the variable was set");
    FOR_EACH_LAYER_PATH(conv_grads_case(5));
    FOR_EACH_LAYER_PATH(relu_pool_grads_case());
    FOR_EACH_LAYER_PATH(ce_case());
}

Test(nn, model_rejects_bad_architectures)
{
    kdcl_context *ctx = th_ctx();
    struct kdcl__model *m;
    struct kdcl__layer_spec lin[] = {L(KDCL__L_LINEAR)};
    struct kdcl__layer_spec conv[] = {L(KDCL__L_CONV2D)};
    int64_t img[3] = {1, 4, 4};
    lin[0].out = 3;
    cr_assert_eq(kdcl__model_init(ctx, lin, 1, 3, img, 1, &m), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "flatten"));
    conv[0].out = 2;
    conv[0].kernel = 9;
    cr_assert_eq(kdcl__model_init(ctx, conv, 1, 3, img, 1, &m), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "empty"));
}

/* ---------------------------------------------------------------------- */

static void opt_run(const struct kdcl__opt_spec *spec, const float *w0,
                    const float *g, int steps, double lr, float *w)
{
    kdcl_context *ctx = th_ctx();
    struct kdcl__opt *o;
    kdcl_tensor *tw, *tg;
    int64_t n = 3;
    cr_assert_eq(kdcl__opt_init(ctx, spec, &o), 0);
    kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &n, &tw);
    kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &n, &tg);
    kdcl_tensor_write(tw, w0, 12);
    kdcl_tensor_write(tg, g, 12);
    for (int s = 0; s < steps; s++) {
        cr_assert_eq(kdcl__opt_step(o, tw, tg, lr), 0);
        kdcl__opt_next(o);
    }
    kdcl_tensor_read(tw, w, 12);
    kdcl_tensor_free(tw);
    kdcl_tensor_free(tg);
    kdcl__opt_free(o);
}

static void sgd_case(void)
{
    /* w = 1, g = 0.5, lr 0.1, mu 0.9, wd 0.01 (torch semantics):
       step 1: g' = 0.51, v = 0.51, w = 1 - 0.051 = 0.949
       step 2: g' = 0.5 + 0.00949 = 0.50949, v = 0.9*0.51 + 0.50949
               = 0.96849, w = 0.949 - 0.096849 = 0.852151 */
    struct kdcl__opt_spec sp = {KDCL__OPT_SGD, 0.1, 0.9, 0, 0.01, 0, 0, 0};
    float w0[3] = {1, 1, 1}, g[3] = {0.5f, 0.5f, 0.5f}, w[3];
    opt_run(&sp, w0, g, 2, 0.1, w);
    cr_assert_float_eq(w[0], 0.852151f, 1e-6);
    /* Nesterov: step 1 w -= lr (g' + mu v) = 1 - 0.1 (0.51 + 0.459) */
    sp.nesterov = 1;
    opt_run(&sp, w0, g, 1, 0.1, w);
    cr_assert_float_eq(w[1], 1.0f - 0.1f * (0.51f + 0.9f * 0.51f), 1e-6);
    /* Plain SGD. */
    sp.momentum = 0;
    sp.nesterov = 0;
    sp.weight_decay = 0;
    opt_run(&sp, w0, g, 3, 0.1, w);
    cr_assert_float_eq(w[2], 1.0f - 3 * 0.05f, 1e-6);
}

Test(optim, sgd_momentum_weight_decay_by_hand)
{
    FOR_EACH_LAYER_PATH(sgd_case());
}

static void adam_case(void)
{
    /* Two steps with a constant gradient g: m_hat = g, v_hat = g^2, so
       each step moves w by lr * g / (|g| + eps). */
    struct kdcl__opt_spec sp = {KDCL__OPT_ADAM, 0.01, 0, 0, 0, 0.9, 0.999,
                                1e-8};
    float w0[3] = {1, -1, 0}, g[3] = {0.5f, -2.0f, 1e-3f}, w[3];
    opt_run(&sp, w0, g, 2, 0.01, w);
    cr_assert_float_eq(w[0], 1.0f - 0.02f, 1e-6);
    cr_assert_float_eq(w[1], -1.0f + 0.02f, 1e-6);
    cr_assert_float_eq(w[2], -0.02f * 1e-3f / (1e-3f + 1e-8f), 1e-6);
}

Test(optim, adam_by_hand)
{
    FOR_EACH_LAYER_PATH(adam_case());
}

Test(optim, schedules)
{
    struct kdcl__sched st = {KDCL__SCHED_STEP, 0.1, 3, 0.5, 0, 0};
    struct kdcl__sched co = {KDCL__SCHED_COSINE, 0.1, 0, 0, 10, 0.0};
    struct kdcl__sched c0 = {KDCL__SCHED_CONST, 0.05, 0, 0, 0, 0};
    cr_assert_float_eq(kdcl__sched_lr(&st, 2), 0.1, 1e-12);
    cr_assert_float_eq(kdcl__sched_lr(&st, 3), 0.05, 1e-12);
    cr_assert_float_eq(kdcl__sched_lr(&st, 7), 0.025, 1e-12);
    cr_assert_float_eq(kdcl__sched_lr(&co, 0), 0.1, 1e-12);
    cr_assert_float_eq(kdcl__sched_lr(&co, 5), 0.05, 1e-12);
    cr_assert_float_eq(kdcl__sched_lr(&c0, 100), 0.05, 1e-12);
}
