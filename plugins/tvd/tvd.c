/*
 * plugins/tvd/tvd.c - total variation distance for LLM distillation,
 * exactly as LOSSES.md `tvd` defines it: with p = softmax(z_t / T) and
 * q = softmax(z_s / T), a row's loss is 0.5 * sum_i |p_i - q_i|; L is the
 * mean over the rows whose label is not -100 (all rows without labels).
 * The gradient of |x| at 0 is 0.  No T^2 factor and no cross-entropy
 * term.  Forward and backward are one fused kernel (see tvd.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "tvd_cl.h"

enum { P_TEMPERATURE };

static const struct kdcl_param_desc params[] = {
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

/* The mean TVD over valid rows (equal to the loss). */
static const char *const terms[] = {"tvd"};

enum { K_ROWS, K_COUNT, K_FINISH, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {"tvd_rows", "tvd_count",
                                                    "tvd_finish"};

struct state {
    const struct kdcl_host *h;
    double t;
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
    s->t = h->param_f64(p, P_TEMPERATURE);
    /* GPUs want a full group of items per row.  CPU devices run a
       work-group as a loop over its items, so there a group of one item
       per row streams the row in float16 vectors without barriers: at
       V = 1000 it takes a fifth of the time of 64 items, at V = 32000
       15% less (PoCL, see docs/plugins.md, tvd). */
    s->wg = 1;
    while (dev->type != KDCL_DEVICE_CPU && s->wg * 2 <= 256u
           && s->wg * 2 <= dev->max_wg_size)
        s->wg *= 2;
    snprintf(opts, sizeof opts, "-DWG=%zu", s->wg);
    status = kdcl_pu_build(h, tvd_cl, opts, N_KERNELS, kernel_names, s->k);
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

static const struct kdcl_plugin tvd = {
    KDCL_PLUGIN_HEAD,
    .name = "tvd",
    .family = "llm",
    .summary = "total variation distance 0.5*sum|p_t - p_s| of tempered "
               "softmaxes",
    .citation = "LOSSES.md tvd (LLM distillation; the survey gives no "
                "equation); Wen et al. 2023, f-divergence minimization "
                "for sequence-level KD; DistiLLM tv_distance",
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

KDCL_PLUGIN_DEFINE(tvd, tvd)
