/*
 * plugins/skewkl/skewkl.c - skew KL divergence (DistiLLM) for LLM
 * distillation, exactly as LOSSES.md `skewkl` defines it: with
 * p = softmax(z_t / T) and q = softmax(z_s / T), a row's loss is
 * KL(p || lambda p + (1 - lambda) q) (forward) or
 * KL(q || (1 - lambda) p + lambda q) (reverse), the full KL with its
 * entropy term; L is the mean over the rows whose label is not -100 (all
 * rows without labels).  No T^2 factor and no cross-entropy term.
 * Forward and backward are one fused kernel (see skewkl.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "skewkl_cl.h"

enum { P_LAMBDA, P_REVERSE, P_TEMPERATURE };

static const struct kdcl_param_desc params[] = {
    {"lambda", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX,
     "0.1", 0.0, 1.0, NULL,
     "skew: forward KL(p_t || lambda p_t + (1-lambda) p_s), reverse "
     "KL(p_s || (1-lambda) p_t + lambda p_s)"},
    {"reverse", KDCL_PARAM_BOOL, 0, "0", 0.0, 0.0, NULL,
     "0: skew forward KL (SKL), 1: skew reverse KL (SRKL)"},
    {"temperature", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN,
     "1", 0.0, 0.0, NULL, "softmax temperature T > 0 (no T^2 factor)"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,V]",
     "student logits (B tokens, V vocabulary)"},
    {"teacher.logits", KDCL_INPUT_REQUIRED, 0, "[B,V]", "teacher logits"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS | KDCL_INPUT_IGNORE, 0,
     "[B]", "token labels; only -100 is used: it masks the row"},
};

/* The mean skew KL over valid rows (equal to the loss). */
static const char *const terms[] = {"skew_kl"};

enum { K_ROWS, K_COUNT, K_FINISH, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "skewkl_rows", "skewkl_count", "skewkl_finish"};

/* As in skewkl.cl. */
enum { MODE_KLF, MODE_KLR, MODE_ZERO, MODE_SFWD, MODE_SREV };

struct state {
    const struct kdcl_host *h;
    double lambda, t;
    int reverse, mode;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    kdcl_tensor *rows, *nvalid;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->rows);
    s->h->tensor_free(s->nvalid);
    s->h->free(s);
}

static int create(const struct kdcl_host *h, const kdcl_params *p,
                  void **out)
{
    const struct kdcl_device_info *dev = h->device(h->ctx);
    struct state *s = h->alloc_zero(1, sizeof *s);
    char opts[64];
    int status;

    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->lambda = h->param_f64(p, P_LAMBDA);
    s->reverse = h->param_i64(p, P_REVERSE) != 0;
    s->t = h->param_f64(p, P_TEMPERATURE);
    /* lambda = 0 is the plain KL (log-domain, no mixture to clamp);
       lambda = 1 mixes the first distribution with itself: 0 */
    if (s->lambda == 0.0)
        s->mode = s->reverse ? MODE_KLR : MODE_KLF;
    else if (s->lambda == 1.0)
        s->mode = MODE_ZERO;
    else
        s->mode = s->reverse ? MODE_SREV : MODE_SFWD;
    /* GPUs want a full group of items per row.  CPU devices run a
       work-group as a loop over its items, so there a group of one item
       per row streams the row in float16 vectors without barriers: at
       V = 1000 it takes a fifth of the time of 64 items, at V = 32000
       15% less (PoCL, see docs/plugins.md, skewkl). */
    s->wg = 1;
    while (dev->type != KDCL_DEVICE_CPU && s->wg * 2 <= 256u
           && s->wg * 2 <= dev->max_wg_size)
        s->wg *= 2;
    snprintf(opts, sizeof opts, "-DWG=%zu -DMODE=%d", s->wg, s->mode);
    status = kdcl_pu_build(h, skewkl_cl, opts, N_KERNELS, kernel_names, s->k);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* Keep a copy of the row in __local memory when that memory is ordinary
   memory (CPU devices) and the row takes at most half of it. */
static int use_cache(const struct kdcl_host *h, int64_t V)
{
    const struct kdcl_device_info *dev = h->device(h->ctx);
    return !dev->local_mem_is_local
           && (uint64_t)V * sizeof(float) <= dev->local_mem / 2;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *zs, *zt, *y;
    kdcl_tensor *grad;
    int64_t B = 0, V = 0;
    int status, cached;
    /* M = wp p + wq q */
    const double wp = s->reverse ? 1.0 - s->lambda : s->lambda;
    const double wq = s->reverse ? s->lambda : 1.0 - s->lambda;

    if ((status = kdcl_pu_need(h, io, "student.logits", &zs))
        || (status = kdcl_pu_need(h, io, "teacher.logits", &zt))
        || (status = kdcl_pu_2d(h, zs, "student.logits", &B, &V))
        || (status = kdcl_pu_same_shape(h, zs, "student.logits", zt,
                                        "teacher.logits")))
        return status;
    if (B > INT32_MAX / (int64_t)s->wg || V > INT32_MAX)
        return h->error(h->ctx, KDCL_ESHAPE,
                        "student.logits [%lld,%lld] is too large",
                        (long long)B, (long long)V);
    y = h->io_input(io, "labels");
    if (y && (status = kdcl_pu_labels(h, y, B)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->rows, B))
        || (status = kdcl_pu_scratch(h, &s->nvalid, 1)))
        return status;
    if (y) {
        const size_t g = s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(s->nvalid),
            KDCL_A_I32((int32_t)B),
        };
        status = h->launch(h->ctx, s->k[K_COUNT], 1, &g, &l,
                           sizeof args / sizeof args[0], args);
    } else {
        status = h->tensor_fill(s->nvalid, (double)B);
    }
    if (status)
        return status;

    grad = h->io_grad(io, "student.logits");
    cached = use_cache(h, V);
    {
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(s->nvalid),
            KDCL_A_I32((int32_t)V),
            KDCL_A_F32((float)(1.0 / s->t)),
            KDCL_A_F32((float)wp),
            KDCL_A_F32((float)wq),
            KDCL_A_F32((float)(1.0 / s->t)),
            KDCL_A_I32(y != NULL),
            KDCL_A_I32(grad != NULL),
            KDCL_A_I32(cached),
            KDCL_A_LOCAL(cached ? (size_t)V * sizeof(float) : sizeof(float)),
        };
        status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &l,
                           sizeof args / sizeof args[0], args);
        if (status)
            return status;
    }
    {
        const size_t g = s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(s->nvalid),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)B),
        };
        return h->launch(h->ctx, s->k[K_FINISH], 1, &g, &l,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin skewkl = {
    KDCL_PLUGIN_HEAD,
    .name = "skewkl",
    .family = "llm",
    .summary = "skew KL (DistiLLM): KL(p_t || lambda p_t + (1-lambda) p_s) "
               "or its reverse",
    .citation = "LOSSES.md skewkl (LLM distillation; the survey gives no "
                "equation); Ko et al. 2024, DistiLLM (skew KL, skew "
                "reverse KL)",
    .version = "1.0.0",
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .param_desc_size = sizeof params[0],
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .input_desc_size = sizeof inputs[0],
    .terms = terms,
    .n_terms = 1,
    .create = create,
    .destroy = destroy,
    .forward = forward,
};

KDCL_PLUGIN_DEFINE(skewkl, skewkl)
