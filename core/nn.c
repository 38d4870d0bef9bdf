/*
 * core/nn.c - layers and sequential models of the training engine:
 * forward and backward of Linear, Conv2d (batched im2col + GEMM),
 * ReLU, max/avg/global-average pooling, Flatten, Dropout and BatchNorm,
 * with named taps for feature-based distillation.
 */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_cl.h"


static const char *const kernel_names[KDCL__NN_COUNT] = {
    "nn_bias_add", "nn_col_sum", "nn_relu_fwd", "nn_relu_bwd", "nn_add",
    "nn_im2col", "nn_col2im", "nn_bias_add_nchw", "nn_bias_grad_nchw",
    "nn_maxpool_fwd", "nn_maxpool_bwd", "nn_avgpool_fwd", "nn_avgpool_bwd",
    "nn_gap_fwd", "nn_gap_bwd", "nn_dropout_fwd", "nn_mul", "nn_bn_stats",
    "nn_bn_eval_stats", "nn_bn_apply", "nn_bn_bwd_reduce", "nn_bn_bwd_apply",
    "nn_gather_rows", "nn_argmax_correct", "nn_sgd", "nn_adam",
    "kdcl_ce_rows", "nn_scale_block",
};

struct kdcl__nn_kernels {
    kdcl_kernel *k[KDCL__NN_COUNT];
};

static void nn_kernels_free(void *p)
{
    struct kdcl__nn_kernels *nk = p;
    if (!nk)
        return;
    for (int i = 0; i < KDCL__NN_COUNT; i++)
        kdcl_kernel_free(nk->k[i]);
    free(nk);
}

int kdcl__nn_kernels(kdcl_context *ctx, struct kdcl__nn_kernels **out)
{
    struct kdcl__nn_kernels *nk;
    kdcl_program *prog;
    int status;
    if (ctx->nn) {
        *out = ctx->nn;
        return KDCL_OK;
    }
    status = kdcl_program_build(ctx, kdcl__nn_cl, NULL, &prog);
    if (status)
        return status;
    nk = calloc(1, sizeof *nk);
    if (!nk)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    for (int i = 0; i < KDCL__NN_COUNT; i++) {
        status = kdcl_kernel_init(ctx, prog, kernel_names[i], &nk->k[i]);
        if (status) {
            nn_kernels_free(nk);
            return status;
        }
    }
    ctx->nn = nk;
    ctx->nn_free = nn_kernels_free;
    *out = nk;
    return KDCL_OK;
}

int kdcl__nn_launch(kdcl_context *ctx, int k, size_t n, uint32_t n_args,
                    const struct kdcl_arg *args)
{
    struct kdcl__nn_kernels *nk;
    /* An explicit work-group size (the global size is rounded up and the
       kernels check bounds): left to itself a driver may pick a size that
       merely divides n, down to 1, which defeats vectorisation on CPUs. */
    size_t local = 64;
    int status = kdcl__nn_kernels(ctx, &nk);
    if (status)
        return status;
    return kdcl_kernel_launch(ctx, nk->k[k], 1, &n, n >= local ? &local : NULL,
                              n_args, args);
}

#define RUN(ctx, k, n, ...)                                                  \
    kdcl__nn_launch((ctx), (k), (n),                                                    \
         sizeof((struct kdcl_arg[]){__VA_ARGS__}) / sizeof(struct kdcl_arg), \
         (struct kdcl_arg[]){__VA_ARGS__})

int kdcl__nn_launch3(kdcl_context *ctx, int k, uint32_t dims,
                     const size_t *global, uint32_t n_args,
                     const struct kdcl_arg *args)
{
    struct kdcl__nn_kernels *nk;
    size_t local[3] = {16, 1, 1};
    int status = kdcl__nn_kernels(ctx, &nk);
    if (status)
        return status;
    /* A short first dimension gets the next power of two, not 16. */
    while (local[0] > 1 && local[0] / 2 >= global[0])
        local[0] /= 2;
    return kdcl_kernel_launch(ctx, nk->k[k], dims, global, local, n_args,
                              args);
}

int kdcl__nn_launch_groups(kdcl_context *ctx, int k, size_t groups, size_t wg,
                      uint32_t n_args, const struct kdcl_arg *args)
{
    struct kdcl__nn_kernels *nk;
    size_t g = groups * wg;
    int status = kdcl__nn_kernels(ctx, &nk);
    if (status)
        return status;
    return kdcl_kernel_launch(ctx, nk->k[k], 1, &g, &wg, n_args, args);
}

/* ---------------------------------------------------------------------- */
/* Layers                                                                  */

struct kdcl__layer {
    struct kdcl__layer_spec spec;
    char pname[5][96];           /* state-dict names */
    /* Per-sample shapes: rank 1 [F] or rank 3 [C,H,W]. */
    uint32_t in_rank, out_rank;
    int64_t ic, ih, iw, oc, oh, ow;
    int64_t in_per, out_per;
    /* Parameters and gradients (NULL when the layer has none). */
    kdcl_tensor *w, *b, *gw, *gb;
    kdcl_tensor *rmean, *rvar, *nbt; /* batchnorm buffers */
    int64_t nbt_host;
    /* Per-batch buffers, reallocated when the batch size changes. */
    int64_t B;
    kdcl_tensor *out, *gin, *aux, *aux2, *tap_grad;
    const kdcl_tensor *in; /* input of the last forward */
    bool host;             /* on the host path (host.c, host_ops.c) */
};

static const char *const kind_names[KDCL__L_COUNT] = {
    "linear", "conv2d", "relu", "maxpool2d", "avgpool2d",
    "globalavgpool", "flatten", "dropout", "batchnorm"};

const char *kdcl__layer_kind_name(int kind)
{
    return kind >= 0 && kind < KDCL__L_COUNT ? kind_names[kind] : "?";
}

int kdcl__layer_kind_parse(const char *name)
{
    for (int i = 0; i < KDCL__L_COUNT; i++)
        if (!strcmp(kind_names[i], name))
            return i;
    return -1;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fill t with uniform(-bound, bound) from the stream s. */
static int init_uniform(kdcl_tensor *t, double bound, uint64_t *s)
{
    int64_t n = kdcl_tensor_numel(t);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    int status;
    if (!v)
        return kdcl__error(t->ctx, KDCL_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0);
        v[i] = (float)((2.0 * u - 1.0) * bound);
    }
    status = kdcl_tensor_write(t, v, (size_t)n * sizeof *v);
    free(v);
    return status;
}

static int new_f32(kdcl_context *ctx, uint32_t nd, const int64_t *shape,
                   kdcl_tensor **t)
{
    return kdcl_tensor_init(ctx, KDCL_DTYPE_F32, nd, shape, t);
}

static void layer_free(struct kdcl__layer *l)
{
    if (!l)
        return;
    kdcl_tensor *ts[] = {l->w, l->b, l->gw, l->gb, l->rmean, l->rvar,
                         l->nbt, l->out, l->gin, l->aux, l->aux2,
                         l->tap_grad};
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        kdcl_tensor_free(ts[i]);
    free(l);
}

/* Work out shapes and make parameters for layer l given its input. */
static int layer_setup(kdcl_context *ctx, struct kdcl__layer *l,
                       uint64_t *rng)
{
    const struct kdcl__layer_spec *s = &l->spec;
    int64_t k = s->kernel, st = s->stride, pad = s->padding;
    int status = KDCL_OK;
    const char *what = kdcl__layer_kind_name(s->kind);

    l->out_rank = l->in_rank;
    l->oc = l->ic;
    l->oh = l->ih;
    l->ow = l->iw;
    switch (s->kind) {
    case KDCL__L_LINEAR: {
        int64_t in = l->in_per, ws[2] = {s->out, in}, bs[1] = {s->out};
        double bound = 1.0 / sqrt((double)in);
        if (l->in_rank != 1)
            return kdcl__error(ctx, KDCL_ESHAPE,
                               "layer %s (linear) needs a flat input: put a "
                               "flatten layer before it",
                               s->name);
        if (s->out < 1)
            return kdcl__error(ctx, KDCL_EINVAL,
                               "layer %s (linear) needs out >= 1", s->name);
        l->oc = s->out;
        if ((status = new_f32(ctx, 2, ws, &l->w))
            || (status = new_f32(ctx, 2, ws, &l->gw))
            || (status = new_f32(ctx, 1, bs, &l->b))
            || (status = new_f32(ctx, 1, bs, &l->gb))
            || (status = init_uniform(l->w, bound, rng))
            || (status = init_uniform(l->b, bound, rng)))
            return status;
        break;
    }
    case KDCL__L_CONV2D: {
        int64_t ws[4], bs[1] = {s->out};
        double bound;
        if (l->in_rank != 3)
            return kdcl__error(ctx, KDCL_ESHAPE,
                               "layer %s (conv2d) needs a [C,H,W] input",
                               s->name);
        if (s->out < 1 || k < 1 || st < 1 || pad < 0)
            return kdcl__error(ctx, KDCL_EINVAL,
                               "layer %s (conv2d): bad out/kernel/stride/"
                               "padding",
                               s->name);
        l->oc = s->out;
        l->oh = (l->ih + 2 * pad - k) / st + 1;
        l->ow = (l->iw + 2 * pad - k) / st + 1;
        ws[0] = s->out;
        ws[1] = l->ic;
        ws[2] = ws[3] = k;
        bound = 1.0 / sqrt((double)(l->ic * k * k));
        if ((status = new_f32(ctx, 4, ws, &l->w))
            || (status = new_f32(ctx, 4, ws, &l->gw))
            || (status = new_f32(ctx, 1, bs, &l->b))
            || (status = new_f32(ctx, 1, bs, &l->gb))
            || (status = init_uniform(l->w, bound, rng))
            || (status = init_uniform(l->b, bound, rng)))
            return status;
        break;
    }
    case KDCL__L_MAXPOOL:
    case KDCL__L_AVGPOOL:
        if (l->in_rank != 3)
            return kdcl__error(ctx, KDCL_ESHAPE,
                               "layer %s (%s) needs a [C,H,W] input", s->name,
                               what);
        if (k < 1 || st < 1 || pad < 0 || 2 * pad > k
            || (s->kind == KDCL__L_AVGPOOL && pad))
            return kdcl__error(ctx, KDCL_EINVAL,
                               "layer %s (%s): bad kernel/stride/padding",
                               s->name, what);
        l->oh = (l->ih + 2 * pad - k) / st + 1;
        l->ow = (l->iw + 2 * pad - k) / st + 1;
        break;
    case KDCL__L_GAP:
        if (l->in_rank != 3)
            return kdcl__error(ctx, KDCL_ESHAPE,
                               "layer %s (globalavgpool) needs [C,H,W]",
                               s->name);
        l->out_rank = 1;
        l->oh = l->ow = 1;
        break;
    case KDCL__L_FLATTEN:
        l->out_rank = 1;
        l->oc = l->in_per;
        l->oh = l->ow = 1;
        break;
    case KDCL__L_DROPOUT:
        if (!(s->p >= 0.0 && s->p < 1.0))
            return kdcl__error(ctx, KDCL_ERANGE,
                               "layer %s (dropout): p must be in [0, 1)",
                               s->name);
        break;
    case KDCL__L_BATCHNORM: {
        int64_t cs[1] = {l->ic}, one[1] = {1};
        if ((status = new_f32(ctx, 1, cs, &l->w))
            || (status = new_f32(ctx, 1, cs, &l->gw))
            || (status = new_f32(ctx, 1, cs, &l->b))
            || (status = new_f32(ctx, 1, cs, &l->gb))
            || (status = new_f32(ctx, 1, cs, &l->rmean))
            || (status = new_f32(ctx, 1, cs, &l->rvar))
            || (status = kdcl_tensor_init(ctx, KDCL_DTYPE_I64, 0, one,
                                          &l->nbt))
            || (status = kdcl_tensor_fill(l->w, 1.0))
            || (status = kdcl_tensor_fill(l->b, 0.0))
            || (status = kdcl_tensor_fill(l->rmean, 0.0))
            || (status = kdcl_tensor_fill(l->rvar, 1.0))
            || (status = kdcl_tensor_fill(l->nbt, 0.0)))
            return status;
        break;
    }
    case KDCL__L_RELU:
        break;
    default:
        return kdcl__error(ctx, KDCL_EINVAL, "unknown layer kind %d",
                           s->kind);
    }
    if (l->oh < 1 || l->ow < 1)
        return kdcl__error(ctx, KDCL_ESHAPE,
                           "layer %s (%s): the output would be empty "
                           "(input %lldx%lld)",
                           s->name, what, (long long)l->ih,
                           (long long)l->iw);
    l->out_per = l->out_rank == 1 ? l->oc : l->oc * l->oh * l->ow;
    if (l->w) {
        snprintf(l->pname[0], sizeof l->pname[0], "%s.weight", s->name);
        snprintf(l->pname[1], sizeof l->pname[1], "%s.bias", s->name);
    }
    if (l->rmean) {
        snprintf(l->pname[2], sizeof l->pname[2], "%s.running_mean",
                 s->name);
        snprintf(l->pname[3], sizeof l->pname[3], "%s.running_var", s->name);
        snprintf(l->pname[4], sizeof l->pname[4], "%s.num_batches_tracked",
                 s->name);
    }
    return KDCL_OK;
}

int kdcl__model_init(kdcl_context *ctx, const struct kdcl__layer_spec *specs,
                     size_t n, uint32_t in_ndim, const int64_t *in_shape,
                     uint64_t seed, struct kdcl__model **out)
{
    struct kdcl__model *m;
    uint64_t rng = seed ^ 0x6b64636c6b64636cull;
    int status = KDCL_OK;
    uint32_t rank = in_ndim == 1 ? 1 : 3;
    int64_t c = in_shape[0], h = in_ndim >= 2 ? in_shape[1] : 1,
            w = in_ndim >= 3 ? in_shape[2] : 1;

    *out = NULL;
    if (in_ndim < 1 || in_ndim > 3 || n == 0)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "a model needs layers and a 1-3 dim input");
    m = calloc(1, sizeof *m);
    if (!m || !(m->layers = calloc(n, sizeof *m->layers))) {
        free(m);
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    }
    m->ctx = ctx;
    m->in_ndim = in_ndim;
    memcpy(m->in_shape, in_shape, in_ndim * sizeof *in_shape);
    m->seed = seed;
    if (in_ndim == 2) { /* [H, W]: one channel */
        c = 1;
        h = in_shape[0];
        w = in_shape[1];
    }
    for (size_t i = 0; i < n; i++) {
        struct kdcl__layer *l = calloc(1, sizeof *l);
        if (!l) {
            status = kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
            break;
        }
        m->layers[m->n_layers++] = l;
        l->spec = specs[i];
        if (!l->spec.name[0])
            snprintf(l->spec.name, sizeof l->spec.name, "%zu", i);
        l->in_rank = rank;
        l->ic = c;
        l->ih = h;
        l->iw = w;
        l->in_per = rank == 1 ? c : c * h * w;
        status = layer_setup(ctx, l, &rng);
        if (status)
            break;
        rank = l->out_rank;
        c = l->oc;
        h = l->oh;
        w = l->ow;
    }
    if (status) {
        kdcl__model_free(m);
        return status;
    }
    if (!status && m->layers[n - 1]->spec.tap[0]) {
        kdcl__model_free(m);
        return kdcl__error(ctx, KDCL_EINVAL,
                           "the last layer's output is the logits: tap an "
                           "earlier layer");
    }
    if (rank != 1) {
        kdcl__model_free(m);
        return kdcl__error(ctx, KDCL_ESHAPE,
                           "the model's output must be [B, classes]: end "
                           "with a linear layer (after flatten)");
    }
    *out = m;
    return KDCL_OK;
}

void kdcl__model_free(struct kdcl__model *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_layers; i++)
        layer_free(m->layers[i]);
    free(m->layers);
    free(m);
}

/* (Re)allocate the per-batch buffers of l for batch B. */
static int layer_buffers(kdcl_context *ctx, struct kdcl__layer *l, int64_t B,
                         int train)
{
    int64_t os[4] = {B, l->oc, l->oh, l->ow};
    int64_t is[4] = {B, l->ic, l->ih, l->iw};
    int status = KDCL_OK;
    if (l->B == B && l->out && (!train || l->gin))
        return KDCL_OK;
    kdcl_tensor_free(l->out);
    kdcl_tensor_free(l->gin);
    kdcl_tensor_free(l->aux);
    kdcl_tensor_free(l->aux2);
    kdcl_tensor_free(l->tap_grad);
    l->out = l->gin = l->aux = l->aux2 = l->tap_grad = NULL;
    l->B = B;
    status = new_f32(ctx, l->out_rank == 1 ? 2 : 4, os, &l->out);
    if (!status && train)
        status = new_f32(ctx, l->in_rank == 1 ? 2 : 4, is, &l->gin);
    if (status)
        return status;
    l->host = kdcl__host_layers_wanted(ctx);
    switch (l->spec.kind) {
    case KDCL__L_CONV2D: {
        int64_t cs[3] = {B, l->ic * l->spec.kernel * l->spec.kernel,
                         l->oh * l->ow};
        /* The host path keeps its columns in per-thread blocks. */
        if (!l->host)
            status = new_f32(ctx, 3, cs, &l->aux);
        break;
    }
    case KDCL__L_MAXPOOL: {
        int64_t n = B * l->out_per;
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &n, &l->aux);
        break;
    }
    case KDCL__L_DROPOUT: {
        int64_t n = B * l->out_per;
        status = new_f32(ctx, 1, &n, &l->aux);
        break;
    }
    case KDCL__L_BATCHNORM: {
        int64_t n = 2 * l->ic;
        status = new_f32(ctx, 1, &n, &l->aux);
        break;
    }
    default:
        break;
    }
    if (!status && l->spec.tap[0])
        status = new_f32(ctx, l->out_rank == 1 ? 2 : 4, os, &l->tap_grad);
    return status;
}

#define T(x) KDCL_A_TENSOR(x)
#define I(x) KDCL_A_I32((int32_t)(x))
#define F(x) KDCL_A_F32((float)(x))

static struct kdcl__conv_geom conv_geom(const struct kdcl__layer *l,
                                        int64_t B)
{
    struct kdcl__conv_geom g = {B,           l->ic,          l->ih,
                                l->iw,       l->oc,          l->spec.kernel,
                                l->spec.stride, l->spec.padding, l->oh,
                                l->ow};
    if (l->spec.kind == KDCL__L_LINEAR)
        g.c = l->in_per; /* ic is not set for a flattened input */
    return g;
}

/* A layer that passes its input (or gradient) on unchanged. */
static int layer_copy(const struct kdcl__layer *l, kdcl_tensor *dst,
                      const kdcl_tensor *src)
{
    return l->host ? kdcl__host_copy(l->out->ctx, dst, src)
                   : kdcl_tensor_copy(dst, src);
}

int kdcl__ce_rows(kdcl_context *ctx, const kdcl_tensor *logits,
                  const kdcl_tensor *labels, kdcl_tensor *grad,
                  kdcl_tensor *rows, int64_t R, int64_t C)
{
    const float scale = (float)(1.0 / (double)R);
    size_t wg = 64;
    struct kdcl_arg a[] = {T(logits), T(labels),  T(grad),
                           T(rows),   I(C),       I(1),
                           F(scale),  I(1),       I(0),
                           KDCL_A_LOCAL(wg * 2 * sizeof(float))};
    if (kdcl__host_layers_wanted(ctx))
        return kdcl__host_ce_rows(ctx, logits, labels, grad, rows, (size_t)R,
                                  (size_t)C, scale);
    return kdcl__nn_launch_groups(ctx, KDCL__NN_CE_ROWS, (size_t)R, wg,
                                  sizeof a / sizeof a[0], a);
}

static struct kdcl__bn_geom bn_geom(const struct kdcl__layer *l, int64_t B)
{
    struct kdcl__bn_geom g = {
        (size_t)B, (size_t)l->ic,
        (size_t)(l->in_rank == 1 ? 1 : l->ih * l->iw), l->spec.eps,
        l->spec.momentum};
    return g;
}

static int bn_wg(void)
{
    return 64;
}

static int layer_forward(struct kdcl__model *m, struct kdcl__layer *l,
                         const kdcl_tensor *x, int64_t B, int train)
{
    kdcl_context *ctx = m->ctx;
    const struct kdcl__layer_spec *s = &l->spec;
    size_t nout = (size_t)(B * l->out_per);
    int status = layer_buffers(ctx, l, B, train);
    if (status)
        return status;
    l->in = x;
    switch (s->kind) {
    case KDCL__L_LINEAR:
        if (l->host) {
            struct kdcl__conv_geom lg = conv_geom(l, B);
            return kdcl__host_linear_forward(ctx, &lg, x, l->w, l->b, l->out);
        }
        status = kdcl_gemm(ctx, 0, 1, (size_t)B, (size_t)l->oc,
                           (size_t)l->in_per, 1.0f, x, 0, (size_t)l->in_per,
                           l->w, 0, (size_t)l->in_per, 0.0f, l->out, 0,
                           (size_t)l->oc);
        if (!status)
            status = RUN(ctx, KDCL__NN_BIAS_ADD, nout, T(l->out), T(l->b), I(B),
                         I(l->oc));
        return status;
    case KDCL__L_CONV2D: {
        int64_t P = l->oh * l->ow, ckk = l->ic * s->kernel * s->kernel;
        size_t g[2] = {(size_t)ckk, (size_t)B};
        if (l->host) {
            struct kdcl__conv_geom cg = conv_geom(l, B);
            return kdcl__host_conv_forward(ctx, &cg, x, l->w, l->b, l->out);
        }
        struct kdcl_arg a[] = {T(x), T(l->aux), I(B), I(l->ic), I(l->ih),
                               I(l->iw), I(s->kernel), I(s->stride),
                               I(s->padding), I(l->oh), I(l->ow)};
        struct kdcl_arg ab[] = {T(l->out), T(l->b), I(l->oc), I(P),
                                I(B * l->oc)};
        status = kdcl__nn_launch3(ctx, KDCL__NN_IM2COL, 2, g, 11, a);
        /* y_b [OC, P] = W [OC, CKK] col_b [CKK, P], for every image. */
        if (!status)
            status = kdcl_gemm_batched(
                ctx, 0, 0, (size_t)l->oc, (size_t)P, (size_t)ckk, 1.0f, l->w,
                0, (size_t)ckk, 0, l->aux, 0, (size_t)P, (size_t)(ckk * P),
                0.0f, l->out, 0, (size_t)P, (size_t)(l->oc * P), (size_t)B);
        if (!status)
            status = kdcl__nn_launch(ctx, KDCL__NN_BIAS_ADD_NCHW,
                                     (size_t)(B * l->oc), 5, ab);
        return status;
    }
    case KDCL__L_RELU:
        if (l->host)
            return kdcl__host_relu_forward(ctx, x, l->out, nout);
        return RUN(ctx, KDCL__NN_RELU_FWD, nout, T(x), T(l->out), I(nout));
    case KDCL__L_MAXPOOL:
        if (l->host) {
            struct kdcl__conv_geom pg = conv_geom(l, B);
            return kdcl__host_maxpool_forward(ctx, &pg, x, l->out, l->aux);
        }
        return RUN(ctx, KDCL__NN_MAXPOOL_FWD, (size_t)(B * l->ic), T(x),
                   T(l->out), T(l->aux),
                   I(B * l->ic), I(l->ih), I(l->iw), I(s->kernel),
                   I(s->stride), I(s->padding), I(l->oh), I(l->ow));
    case KDCL__L_AVGPOOL:
        if (l->host) {
            struct kdcl__conv_geom pg = conv_geom(l, B);
            return kdcl__host_avgpool_forward(ctx, &pg, x, l->out);
        }
        {
            size_t g[3] = {(size_t)l->ow, (size_t)l->oh, (size_t)(B * l->ic)};
            struct kdcl_arg a[] = {T(x),         T(l->out),      I(B * l->ic),
                                   I(l->ih),     I(l->iw),       I(s->kernel),
                                   I(s->stride), I(l->oh),       I(l->ow)};
            return kdcl__nn_launch3(ctx, KDCL__NN_AVGPOOL_FWD, 3, g,
                                    sizeof a / sizeof a[0], a);
        }
    case KDCL__L_GAP:
        if (l->host)
            return kdcl__host_gap_forward(ctx, x, l->out, (size_t)(B * l->ic),
                                          (size_t)(l->ih * l->iw));
        return RUN(ctx, KDCL__NN_GAP_FWD, nout, T(x), T(l->out), I(B * l->ic),
                   I(l->ih * l->iw));
    case KDCL__L_FLATTEN:
        return layer_copy(l, l->out, x);
    case KDCL__L_DROPOUT:
        if (!train || s->p == 0.0)
            return layer_copy(l, l->out, x);
        if (l->host)
            return kdcl__host_dropout_forward(ctx, x, l->out, l->aux, nout,
                                              (float)s->p, m->seed, m->step);
        return RUN(ctx, KDCL__NN_DROPOUT_FWD, nout, T(x), T(l->out), T(l->aux),
                   I(nout), F(s->p), KDCL_A_I64((int64_t)m->seed),
                   KDCL_A_I64((int64_t)m->step));
    case KDCL__L_BATCHNORM: {
        int64_t hw = l->in_rank == 1 ? 1 : l->ih * l->iw;
        if (l->host) {
            struct kdcl__bn_geom bg = bn_geom(l, B);
            status = kdcl__host_batchnorm_forward(ctx, &bg, x, l->out, l->aux,
                                                  l->rmean, l->rvar, l->w,
                                                  l->b, train);
            if (!status && train) {
                l->nbt_host++;
                status = kdcl_tensor_write(l->nbt, &l->nbt_host, 8);
            }
            return status;
        }
        if (train) {
            size_t wg = (size_t)bn_wg();
            struct kdcl_arg a[] = {T(x), T(l->aux), T(l->rmean), T(l->rvar),
                                   I(B), I(l->ic), I(hw), F(s->eps),
                                   F(s->momentum), I(1),
                                   KDCL_A_LOCAL(wg * sizeof(float))};
            status = kdcl__nn_launch_groups(ctx, KDCL__NN_BN_STATS, (size_t)l->ic, wg,
                                sizeof a / sizeof a[0], a);
            if (!status) {
                l->nbt_host++;
                status = kdcl_tensor_write(l->nbt, &l->nbt_host, 8);
            }
        } else {
            status = RUN(ctx, KDCL__NN_BN_EVAL_STATS, (size_t)l->ic, T(l->aux),
                         T(l->rmean), T(l->rvar), I(l->ic), F(s->eps));
        }
        if (!status) {
            size_t g[3] = {(size_t)hw, (size_t)l->ic, (size_t)B};
            struct kdcl_arg a[] = {T(x),    T(l->out), T(l->aux), T(l->w),
                                   T(l->b), I(B),      I(l->ic),  I(hw)};
            status = kdcl__nn_launch3(ctx, KDCL__NN_BN_APPLY, 3, g,
                                      sizeof a / sizeof a[0], a);
        }
        return status;
    }
    default:
        return kdcl__error(ctx, KDCL_EINVAL, "layer kind %d", s->kind);
    }
}

/* gy: gradient of this layer's output; writes l->gin (unless first). */
static int layer_backward(struct kdcl__model *m, struct kdcl__layer *l,
                          const kdcl_tensor *gy, int need_gin)
{
    kdcl_context *ctx = m->ctx;
    const struct kdcl__layer_spec *s = &l->spec;
    int64_t B = l->B;
    size_t nin = (size_t)(B * l->in_per), nout = (size_t)(B * l->out_per);
    int status = KDCL_OK;

    switch (s->kind) {
    case KDCL__L_LINEAR:
        if (l->host) {
            struct kdcl__conv_geom lg = conv_geom(l, B);
            return kdcl__host_linear_backward(ctx, &lg, l->in, l->w, gy,
                                              l->gw, l->gb,
                                              need_gin ? l->gin : NULL);
        }
        status = kdcl_gemm(ctx, 1, 0, (size_t)l->oc, (size_t)l->in_per,
                           (size_t)B, 1.0f, gy, 0, (size_t)l->oc, l->in, 0,
                           (size_t)l->in_per, 0.0f, l->gw, 0,
                           (size_t)l->in_per);
        if (!status)
            status = RUN(ctx, KDCL__NN_COL_SUM, (size_t)l->oc, T(gy), T(l->gb),
                         I(B), I(l->oc), I(0));
        if (!status && need_gin)
            status = kdcl_gemm(ctx, 0, 0, (size_t)B, (size_t)l->in_per,
                               (size_t)l->oc, 1.0f, gy, 0, (size_t)l->oc,
                               l->w, 0, (size_t)l->in_per, 0.0f, l->gin, 0,
                               (size_t)l->in_per);
        return status;
    case KDCL__L_CONV2D: {
        int64_t P = l->oh * l->ow, ckk = l->ic * s->kernel * s->kernel;
        if (l->host) {
            struct kdcl__conv_geom cg = conv_geom(l, B);
            return kdcl__host_conv_backward(ctx, &cg, l->in, l->w, gy, l->gw,
                                            l->gb, need_gin ? l->gin : NULL);
        }
        /* dW = sum_b gy_b [OC, P] col_b^T [P, CKK]; db = sums of gy. */
        status = kdcl_gemm_batched(
            ctx, 0, 1, (size_t)l->oc, (size_t)ckk, (size_t)P, 1.0f, gy, 0,
            (size_t)P, (size_t)(l->oc * P), l->aux, 0, (size_t)P,
            (size_t)(ckk * P), 0.0f, l->gw, 0, (size_t)ckk, 0, (size_t)B);
        if (!status)
            status = RUN(ctx, KDCL__NN_BIAS_GRAD_NCHW, (size_t)l->oc, T(gy),
                         T(l->gb), I(B), I(l->oc), I(P));
        if (!status && need_gin) {
            size_t g[2] = {(size_t)l->ic, (size_t)B};
            struct kdcl_arg a[] = {T(l->aux), T(l->gin), I(B), I(l->ic),
                                   I(l->ih), I(l->iw), I(s->kernel),
                                   I(s->stride), I(s->padding), I(l->oh),
                                   I(l->ow)};
            /* dcol_b [CKK, P] = W^T gy_b, into the col buffer. */
            status = kdcl_gemm_batched(
                ctx, 1, 0, (size_t)ckk, (size_t)P, (size_t)l->oc, 1.0f, l->w,
                0, (size_t)ckk, 0, gy, 0, (size_t)P, (size_t)(l->oc * P),
                0.0f, l->aux, 0, (size_t)P, (size_t)(ckk * P), (size_t)B);
            if (!status)
                status = kdcl__nn_launch3(ctx, KDCL__NN_COL2IM, 2, g, 11, a);
        }
        return status;
    }
    case KDCL__L_RELU:
        if (l->host)
            return kdcl__host_relu_backward(ctx, l->out, gy, l->gin, nout);
        return RUN(ctx, KDCL__NN_RELU_BWD, nout, T(l->out), T(gy), T(l->gin),
                   I(nout));
    case KDCL__L_MAXPOOL:
        if (l->host) {
            struct kdcl__conv_geom pg = conv_geom(l, B);
            return kdcl__host_maxpool_backward(ctx, &pg, gy, l->aux, l->gin);
        }
        return RUN(ctx, KDCL__NN_MAXPOOL_BWD, (size_t)(B * l->ic), T(gy),
                   T(l->aux), T(l->gin),
                   I(B * l->ic), I(l->ih), I(l->iw), I(s->kernel),
                   I(s->stride), I(s->padding), I(l->oh), I(l->ow));
    case KDCL__L_AVGPOOL:
        if (l->host) {
            struct kdcl__conv_geom pg = conv_geom(l, B);
            return kdcl__host_avgpool_backward(ctx, &pg, gy, l->gin);
        }
        {
            size_t g[3] = {(size_t)l->iw, (size_t)l->ih, (size_t)(B * l->ic)};
            struct kdcl_arg a[] = {T(gy),        T(l->gin),      I(B * l->ic),
                                   I(l->ih),     I(l->iw),       I(s->kernel),
                                   I(s->stride), I(l->oh),       I(l->ow)};
            return kdcl__nn_launch3(ctx, KDCL__NN_AVGPOOL_BWD, 3, g,
                                    sizeof a / sizeof a[0], a);
        }
    case KDCL__L_GAP:
        if (l->host)
            return kdcl__host_gap_backward(ctx, gy, l->gin,
                                           (size_t)(B * l->ic),
                                           (size_t)(l->ih * l->iw));
        return RUN(ctx, KDCL__NN_GAP_BWD, nin, T(gy), T(l->gin), I(B * l->ic),
                   I(l->ih * l->iw));
    case KDCL__L_FLATTEN:
        return layer_copy(l, l->gin, gy);
    case KDCL__L_DROPOUT:
        if (s->p == 0.0)
            return layer_copy(l, l->gin, gy);
        if (l->host)
            return kdcl__host_mul(ctx, gy, l->aux, l->gin, nin);
        return RUN(ctx, KDCL__NN_MUL, nin, T(gy), T(l->aux), T(l->gin), I(nin));
    case KDCL__L_BATCHNORM: {
        int64_t hw = l->in_rank == 1 ? 1 : l->ih * l->iw;
        size_t wg = (size_t)bn_wg();
        if (l->host) {
            struct kdcl__bn_geom bg = bn_geom(l, B);
            return kdcl__host_batchnorm_backward(ctx, &bg, l->in, gy, l->aux,
                                                 l->w, l->gw, l->gb, l->gin);
        }
        struct kdcl_arg a[] = {T(l->in), T(gy), T(l->aux), T(l->gw),
                               T(l->gb), I(B), I(l->ic), I(hw),
                               KDCL_A_LOCAL(wg * sizeof(float))};
        status = kdcl__nn_launch_groups(ctx, KDCL__NN_BN_BWD_REDUCE, (size_t)l->ic, wg,
                            sizeof a / sizeof a[0], a);
        if (!status) {
            size_t g[3] = {(size_t)hw, (size_t)l->ic, (size_t)B};
            struct kdcl_arg ab[] = {T(l->in), T(gy),   T(l->aux), T(l->w),
                                    T(l->gw), T(l->gb), T(l->gin), I(B),
                                    I(l->ic), I(hw)};
            status = kdcl__nn_launch3(ctx, KDCL__NN_BN_BWD_APPLY, 3, g,
                                      sizeof ab / sizeof ab[0], ab);
        }
        return status;
    }
    default:
        return kdcl__error(ctx, KDCL_EINVAL, "layer kind %d", s->kind);
    }
}

int kdcl__model_forward(struct kdcl__model *m, const kdcl_tensor *x,
                        int64_t B, int train, const kdcl_tensor **logits)
{
    const kdcl_tensor *cur = x;
    int64_t per = 1;
    for (uint32_t i = 0; i < m->in_ndim; i++)
        per *= m->in_shape[i];
    if (B < 1 || kdcl_tensor_numel(x) != B * per)
        return kdcl__error(m->ctx, KDCL_ESHAPE,
                           "model input has %lld elements, expected %lld "
                           "(batch %lld)",
                           (long long)kdcl_tensor_numel(x),
                           (long long)(B * per), (long long)B);
    for (size_t i = 0; i < m->n_layers; i++) {
        int status = layer_forward(m, m->layers[i], cur, B, train);
        if (status)
            return status;
        cur = m->layers[i]->out;
    }
    if (train)
        m->step++;
    *logits = cur;
    return KDCL_OK;
}

int kdcl__model_backward(struct kdcl__model *m, const kdcl_tensor *dlogits)
{
    const kdcl_tensor *gy = dlogits;
    for (size_t i = m->n_layers; i-- > 0;) {
        struct kdcl__layer *l = m->layers[i];
        int status;
        if (!l->gin)
            return kdcl__error(m->ctx, KDCL_EINVAL,
                               "backward without a training forward");
        if (l->tap_grad && gy != dlogits) {
            /* gy is the next layer's gin: add the tap's gradient. */
            size_t n = (size_t)kdcl_tensor_numel(l->tap_grad);
            status = l->host ? kdcl__host_add(m->ctx, (kdcl_tensor *)gy,
                                              l->tap_grad, n)
                             : RUN(m->ctx, KDCL__NN_ADD, n,
                                   T((kdcl_tensor *)gy), T(l->tap_grad), I(n));
            if (status)
                return status;
        }
        status = layer_backward(m, l, gy, i > 0 || m->input_grad);
        if (status)
            return status;
        gy = l->gin;
    }
    return KDCL_OK;
}

const kdcl_tensor *kdcl__model_input_grad(const struct kdcl__model *m)
{
    return m->input_grad ? m->layers[0]->gin : NULL;
}

const kdcl_tensor *kdcl__model_tap(const struct kdcl__model *m,
                                   const char *name)
{
    for (size_t i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i]->spec.tap, name) && name[0])
            return m->layers[i]->out;
    return NULL;
}

kdcl_tensor *kdcl__model_tap_grad(struct kdcl__model *m, const char *name)
{
    for (size_t i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i]->spec.tap, name) && name[0])
            return m->layers[i]->tap_grad;
    return NULL;
}

size_t kdcl__model_tap_count(const struct kdcl__model *m)
{
    size_t n = 0;
    for (size_t i = 0; i < m->n_layers; i++)
        n += m->layers[i]->spec.tap[0] != '\0';
    return n;
}

const char *kdcl__model_tap_name(const struct kdcl__model *m, size_t k)
{
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->layers[i]->spec.tap[0] && k-- == 0)
            return m->layers[i]->spec.tap;
    return NULL;
}

int kdcl__model_param(const struct kdcl__model *m, size_t k,
                      const char **name, kdcl_tensor **value,
                      kdcl_tensor **grad)
{
    for (size_t i = 0; i < m->n_layers; i++) {
        struct kdcl__layer *l = m->layers[i];
        if (!l->w)
            continue;
        if (k < 2) {
            *name = l->pname[k];
            *value = k ? l->b : l->w;
            *grad = k ? l->gb : l->gw;
            return KDCL_OK;
        }
        k -= 2;
    }
    return KDCL_ENOTFOUND;
}

int kdcl__model_state(const struct kdcl__model *m, size_t k,
                      const char **name, kdcl_tensor **value)
{
    for (size_t i = 0; i < m->n_layers; i++) {
        struct kdcl__layer *l = m->layers[i];
        kdcl_tensor *ts[5] = {l->w, l->b, l->rmean, l->rvar, l->nbt};
        for (int j = 0; j < 5; j++) {
            if (!ts[j])
                continue;
            if (k-- == 0) {
                *name = l->pname[j];
                *value = ts[j];
                return KDCL_OK;
            }
        }
    }
    return KDCL_ENOTFOUND;
}

void kdcl__model_flops(const struct kdcl__model *m, int64_t B,
                       double flops[4])
{
    for (int i = 0; i < 4; i++)
        flops[i] = 0;
    for (size_t i = 0; i < m->n_layers; i++) {
        const struct kdcl__layer *l = m->layers[i];
        const int64_t k = l->spec.kernel;
        /* one product's multiply-adds: conv [OC, CKK] x [CKK, OH*OW] per
           image, linear [B, in] x [in, out] */
        double f;
        int conv = l->spec.kind == KDCL__L_CONV2D;
        if (conv)
            f = 2.0 * (double)B * (double)(l->oc * l->oh * l->ow)
                * (double)(l->ic * k * k);
        else if (l->spec.kind == KDCL__L_LINEAR)
            f = 2.0 * (double)B * (double)l->in_per * (double)l->oc;
        else
            continue;
        flops[conv ? 0 : 2] += f;
        /* dW, and dX unless it is the first layer without input grad */
        flops[conv ? 1 : 3] += (i > 0 || m->input_grad) ? 2 * f : f;
    }
}

int64_t kdcl__model_out_features(const struct kdcl__model *m)
{
    return m->layers[m->n_layers - 1]->out_per;
}

int64_t kdcl__model_n_params(const struct kdcl__model *m)
{
    int64_t n = 0;
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->layers[i]->w)
            n += kdcl_tensor_numel(m->layers[i]->w)
                 + kdcl_tensor_numel(m->layers[i]->b);
    return n;
}

int kdcl__model_set_tap(struct kdcl__model *m, size_t i, const char *name)
{
    if (i >= m->n_layers)
        return kdcl__error(m->ctx, KDCL_ERANGE, "no layer %zu", i);
    snprintf(m->layers[i]->spec.tap, sizeof m->layers[i]->spec.tap, "%s",
             name);
    m->layers[i]->B = 0; /* buffers (the tap gradient) are remade */
    return KDCL_OK;
}

int kdcl__arch_default_tap(const struct kdcl__model *m, int want_maps)
{
    if (want_maps) {
        for (size_t i = m->n_layers; i-- > 0;)
            if (m->layers[i]->out_rank == 3)
                return (int)i;
        return -1;
    }
    /* The input of the classifier: the layer before the last. */
    return m->n_layers >= 2 ? (int)m->n_layers - 2 : -1;
}
