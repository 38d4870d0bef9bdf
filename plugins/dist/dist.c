/*
 * plugins/dist/dist.c - DIST of Huang et al. 2022, "Knowledge Distillation
 * from A Stronger Teacher" (a response-based loss; its CE + KD combination
 * is survey eq. 1.1.5), exactly as LOSSES.md `dist` defines it:
 *   L_KD = T^2 (inter_w * (1 - mean_b pearson(y_s[b,:], y_t[b,:]))
 *             + intra_w * (1 - mean_c pearson(y_s[:,c], y_t[:,c]))),
 * y = softmax(z / T), and L = alpha * CE + (1 - alpha) * L_KD with labels,
 * L = L_KD without.  The intra term correlates columns over the batch, so
 * the kernels (dist.cl) make a row pass, a column pass and a gradient pass.
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "dist_cl.h"

enum { P_TEMPERATURE, P_INTER_WEIGHT, P_INTRA_WEIGHT, P_ALPHA };

static const struct kdcl_param_desc params[] = {
    {"temperature", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN,
     "1", 0.0, 0.0, NULL, "softmax temperature T > 0"},
    {"inter_weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "weight of the inter-class (per-row) relation term (DIST beta)"},
    {"intra_weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "weight of the intra-class (per-class) relation term (DIST gamma)"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs labels); 1 - alpha weighs DIST"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits"},
    {"teacher.logits", KDCL_INPUT_REQUIRED, 0, "[B,C]", "teacher logits"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); enables the CE term"},
};

static const char *const terms[] = {"ce", "kd", "inter", "intra"};

enum { K_LSE, K_COLS, K_GRAD, K_FINISH, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "dist_lse", "dist_cols", "dist_grad", "dist_finish"};

struct state {
    const struct kdcl_host *h;
    double t, inter_w, intra_w, alpha;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    kdcl_tensor *rows; /* [B,5] per-row values */
    kdcl_tensor *cols; /* [5,C] per-class values */
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->rows);
    s->h->tensor_free(s->cols);
    s->h->free(s);
}

static int create(const struct kdcl_host *h, const kdcl_params *p,
                  void **out)
{
    struct state *s = h->alloc_zero(1, sizeof *s);
    int status;

    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->t = h->param_f64(p, P_TEMPERATURE);
    s->inter_w = h->param_f64(p, P_INTER_WEIGHT);
    s->intra_w = h->param_f64(p, P_INTRA_WEIGHT);
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    /* CPU devices run a work-group as a loop: fewer items, fewer barriers
       per row; GPUs want a full group per row. */
    status = kdcl_pu_build_wg(h, dist_cl, NULL, N_KERNELS, kernel_names,
                              s->k, &s->wg);
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
    size_t g;
    float inv_t;
    double a, t2;
    int status;

    if ((status = kdcl_pu_need(h, io, "student.logits", &zs))
        || (status = kdcl_pu_need(h, io, "teacher.logits", &zt))
        || (status = kdcl_pu_2d(h, zs, "student.logits", &B, &C))
        || (status = kdcl_pu_same_shape(h, zs, "student.logits", zt,
                                        "teacher.logits")))
        return status;
    if ((status = kdcl_pu_opt_labels(h, io, B, s->alpha, s->alpha_set, &y)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->rows, 5 * B))
        || (status = kdcl_pu_scratch(h, &s->cols, 5 * C)))
        return status;
    grad = h->io_grad(io, "student.logits");
    /* Without labels the KD term stands alone (LOSSES.md). */
    a = y ? s->alpha : 0.0;
    t2 = s->t * s->t;
    inv_t = (float)(1.0 / s->t);
    g = (size_t)B * s->wg;
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32(inv_t),
            KDCL_A_I32(y != NULL),
        };
        status = h->launch(h->ctx, s->k[K_LSE], 1, &g, &s->wg,
                           sizeof args / sizeof args[0], args);
        if (status)
            return status;
    }
    {
        const size_t gc = (size_t)C;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(s->cols),
            KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32(inv_t),
        };
        status = h->launch(h->ctx, s->k[K_COLS], 1, &gc, &s->wg,
                           sizeof args / sizeof args[0], args);
        if (status)
            return status;
    }
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(s->cols),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(grad),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32(inv_t),
            KDCL_A_F32((float)(-t2 * s->inter_w / (double)B)),
            KDCL_A_F32((float)(-t2 * s->intra_w / (double)C)),
            KDCL_A_F32((float)((1.0 - a) / s->t)),
            KDCL_A_F32((float)(a / (double)B)),
            KDCL_A_I32(y != NULL),
            KDCL_A_I32(grad != NULL),
        };
        status = h->launch(h->ctx, s->k[K_GRAD], 1, &g, &s->wg,
                           sizeof args / sizeof args[0], args);
        if (status)
            return status;
    }
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(s->cols),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32((float)t2),
            KDCL_A_F32((float)s->inter_w),
            KDCL_A_F32((float)s->intra_w),
            KDCL_A_F32((float)s->alpha),
            KDCL_A_I32(y != NULL),
        };
        return h->launch(h->ctx, s->k[K_FINISH], 1, &s->wg, &s->wg,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin dist = {
    KDCL_PLUGIN_HEAD,
    .name = "dist",
    .family = "response",
    .summary = "DIST: T^2 (inter + intra) Pearson relations of p_s and p_t",
    .citation = "survey eqs. 1.1.4-1.1.5 (CE + KD); Huang, You, Wang, Qian, "
                "Xu 2022, Knowledge Distillation from A Stronger Teacher",
    .version = "1.0.0",
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .param_desc_size = sizeof params[0],
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .input_desc_size = sizeof inputs[0],
    .terms = terms,
    .n_terms = sizeof terms / sizeof terms[0],
    .create = create,
    .destroy = destroy,
    .forward = forward,
};

KDCL_PLUGIN_DEFINE(dist, dist)
