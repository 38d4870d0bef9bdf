/*
 * plugins/hinton/hinton.c - response-based KD of Hinton et al. 2015
 * (survey eqs. 1.1.1-1.1.5), exactly as LOSSES.md `hinton` defines it:
 * L = alpha * CE(z_s, y) + (1 - alpha) * T^2 * KL_batchmean(p_t || p_s),
 * or L = T^2 * KL alone when no labels are given.  Forward and backward
 * are one fused pass over the logits (see hinton.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "hinton_cl.h"

enum { P_TEMPERATURE, P_ALPHA };

static const struct kdcl_param_desc params[] = {
    {"temperature", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN,
     "4", 0.0, 0.0, NULL, "softmax temperature T > 0"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.1",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs labels); 1 - alpha weighs KD"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits"},
    {"teacher.logits", KDCL_INPUT_REQUIRED, 0, "[B,C]", "teacher logits"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); enables the CE term"},
};

static const char *const terms[] = {"ce", "kd"};

enum { K_ROWS, K_FINISH, K_ROWS_VEC, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "hinton_rows", "hinton_finish", "hinton_rows_vec"};

struct state {
    const struct kdcl_host *h;
    double t, alpha;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    int vec; /* CPU device: one row per work-item, float16 vectors */
    uint64_t local_mem; /* the device's local memory, bytes */
    kdcl_tensor *rows;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->rows);
    s->h->free(s);
}

static int create(const struct kdcl_host *h, const kdcl_params *p,
                  void **out)
{
    const struct kdcl_device_info *dev = h->device(h->ctx);
    struct state *s = h->alloc_zero(1, sizeof *s);
    int status;

    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->t = h->param_f64(p, P_TEMPERATURE);
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    /* GPUs get a work-group per row; CPU devices run a work-group as a
       loop over its items, so there each row is one vectorised item. */
    s->vec = dev->type == KDCL_DEVICE_CPU;
    s->local_mem = dev->local_mem;
    {
        /* An integer T lets the CPU kernel get exp(z) from exp(z/T)^T by
           squaring, unrolled at build time. */
        const int t_pow = s->t >= 1.0 && s->t <= 64.0
                                  && s->t == (double)(int)s->t
                              ? (int)s->t
                              : 0;
        char opts[32];
        snprintf(opts, sizeof opts, " -DT_POW=%d", t_pow);
        status = kdcl_pu_build_wg(h, hinton_cl, opts, N_KERNELS,
                                  kernel_names, s->k, &s->wg);
    }
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *zs, *zt, *y;
    kdcl_tensor *grad;
    int64_t B = 0, C = 0;
    int status;

    if ((status = kdcl_pu_need(h, io, "student.logits", &zs))
        || (status = kdcl_pu_need(h, io, "teacher.logits", &zt))
        || (status = kdcl_pu_2d(h, zs, "student.logits", &B, &C))
        || (status = kdcl_pu_same_shape(h, zs, "student.logits", zt,
                                        "teacher.logits")))
        return status;
    if ((status = kdcl_pu_opt_labels(h, io, B, s->alpha, s->alpha_set, &y)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->rows, 2 * B)))
        return status;
    grad = h->io_grad(io, "student.logits");
    {
        /* Without labels the KD term stands alone (LOSSES.md). */
        const double a = y ? s->alpha : 0.0;
        const size_t g = (size_t)B * s->wg, l = s->wg;
        /* One row per work-group on CPU devices; its exp(z_s/T) row kept
           in local memory (host memory there) when it fits. */
        const int cached = (uint64_t)C * sizeof(float) <= s->local_mem;
        const struct kdcl_arg vargs[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32((float)(1.0 / s->t)),
            KDCL_A_F32((float)(a / (double)B)),
            KDCL_A_F32((float)((1.0 - a) * s->t / (double)B)),
            KDCL_A_I32(y != NULL),
            KDCL_A_I32(grad != NULL),
            KDCL_A_LOCAL(cached ? (size_t)C * sizeof(float) : sizeof(float)),
            KDCL_A_I32(cached),
        };
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32((float)(1.0 / s->t)),
            KDCL_A_F32((float)(a / (double)B)),
            KDCL_A_F32((float)((1.0 - a) * s->t / (double)B)),
            KDCL_A_I32(y != NULL),
            KDCL_A_I32(grad != NULL),
        };
        if (s->vec) {
            const size_t gv = (size_t)B, lv = 1;
            status = h->launch(h->ctx, s->k[K_ROWS_VEC], 1, &gv, &lv,
                               sizeof vargs / sizeof vargs[0], vargs);
        } else {
            status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &l,
                               sizeof args / sizeof args[0], args);
        }
        if (status)
            return status;
    }
    {
        const size_t g = s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)(s->t * s->t)),
            KDCL_A_F32((float)s->alpha),
            KDCL_A_I32(y != NULL),
        };
        return h->launch(h->ctx, s->k[K_FINISH], 1, &g, &l,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin hinton = {
    KDCL_PLUGIN_HEAD,
    .name = "hinton",
    .family = "response",
    .summary = "Hinton KD: alpha*CE + (1-alpha)*T^2*KL(p_t||p_s)",
    .citation = "survey eqs. 1.1.1-1.1.5; Hinton, Vinyals, Dean 2015",
    .version = "1.0.0",
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .param_desc_size = sizeof params[0],
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .input_desc_size = sizeof inputs[0],
    .terms = terms,
    .n_terms = 2,
    .create = create,
    .destroy = destroy,
    .forward = forward,
};

KDCL_PLUGIN_DEFINE(hinton, hinton)
