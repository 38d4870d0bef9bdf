/*
 * plugins/relation/relation.c - relation-based KD (survey eqs. 1.3.1-1.3.4),
 * exactly as LOSSES.md `relation` defines it:
 * L_KD = weight * (1/B^2) sum_ij (R_T(i,j) - R_S(i,j))^2 with R the
 * pairwise Euclidean distance or cosine of the flattened features, and
 * L = alpha * CE(student.logits, labels) + (1 - alpha) * L_KD when labels
 * are given.  Pairwise terms come from Gram matrices (host GEMM); the
 * gradient is one more GEMM, dL/dF_S = Q F_S (see relation.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "relation_cl.h"

enum { P_METRIC, P_ALPHA, P_WEIGHT };
enum { METRIC_DISTANCE, METRIC_COSINE };

static const struct kdcl_param_desc params[] = {
    {"metric", KDCL_PARAM_ENUM, 0, "distance", 0.0, 0.0, "distance|cosine",
     "pairwise relation: Euclidean distance (eq. 1.3.1) or cosine "
     "(eq. 1.3.2)"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels); "
     "1 - alpha weighs KD"},
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "scale of the relation term L_KD"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.feat", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,Ds]",
     "student features [B,...], flattened to [B,Ds]"},
    {"teacher.feat", KDCL_INPUT_REQUIRED, 0, "[B,Dt]",
     "teacher features [B,...], flattened to [B,Dt]"},
    {"student.logits", KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits for the CE term (with labels)"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); enable the CE term"},
};

static const char *const terms[] = {"ce", "kd"};

enum { K_PAIRS, K_SYM, K_FINISH, K_CE, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "relation_pairs", "relation_sym", "relation_finish", "kdcl_ce_rows"};

struct state {
    const struct kdcl_host *h;
    int metric;
    double alpha, weight;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    kdcl_tensor *gs, *gt, *hmat, *rows, *ce_rows;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->gs);
    s->h->tensor_free(s->gt);
    s->h->tensor_free(s->hmat);
    s->h->tensor_free(s->rows);
    s->h->tensor_free(s->ce_rows);
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
    s->metric = (int)h->param_i64(p, P_METRIC);
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    s->weight = h->param_f64(p, P_WEIGHT);
    status = kdcl_pu_build_wg(h, relation_cl, NULL, N_KERNELS, kernel_names,
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
    const kdcl_tensor *fs, *ft, *zs, *y;
    kdcl_tensor *grad, *zgrad;
    int64_t B = 0, Ds = 0, Dt = 0, C = 0;
    bool has_ce;
    double a;
    int status;

    if ((status = kdcl_pu_feat_pair(h, io, &fs, &ft, &B, &Ds, &Dt))
        || (status = kdcl_pu_feat_task(h, io, B, s->alpha, s->alpha_set, &zs,
                                       &y, &C, &has_ce)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->gs, B * B))
        || (status = kdcl_pu_scratch(h, &s->gt, B * B))
        || (status = kdcl_pu_scratch(h, &s->rows, B))
        || (status = kdcl_pu_scratch(h, &s->ce_rows, B)))
        return status;
    grad = h->io_grad(io, "student.feat");
    zgrad = h->io_grad(io, "student.logits");
    if (grad && (status = kdcl_pu_scratch(h, &s->hmat, B * B)))
        return status;
    /* Without the task term the KD term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;

    /* Gram matrices G = F F^T. */
    if ((status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Ds,
                          1.0f, fs, 0, (size_t)Ds, fs, 0, (size_t)Ds, 0.0f,
                          s->gs, 0, (size_t)B))
        || (status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Dt,
                             1.0f, ft, 0, (size_t)Dt, ft, 0, (size_t)Dt,
                             0.0f, s->gt, 0, (size_t)B)))
        return status;
    {
        /* dL/dR_S = coef (R_S - R_T). */
        const double coef =
            2.0 * s->weight * (1.0 - a) / ((double)B * (double)B);
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs),   KDCL_A_TENSOR(s->gt),
            KDCL_A_TENSOR(grad ? s->hmat : NULL),
            KDCL_A_TENSOR(s->rows), KDCL_A_I32((int32_t)B),
            KDCL_A_I32(s->metric),  KDCL_A_F32((float)coef),
            KDCL_A_I32(grad != NULL),
        };
        if ((status = h->launch(h->ctx, s->k[K_PAIRS], 1, &g, &l,
                                sizeof args / sizeof args[0], args)))
            return status;
    }
    if (grad) {
        /* Q overwrites the teacher Gram, which is no longer needed. */
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs), KDCL_A_TENSOR(s->hmat),
            KDCL_A_TENSOR(s->gt), KDCL_A_I32((int32_t)B),
            KDCL_A_I32(s->metric),
        };
        if ((status = h->launch(h->ctx, s->k[K_SYM], 1, &g, &l,
                                sizeof args / sizeof args[0], args))
            || (status = h->gemm(h->ctx, 0, 0, (size_t)B, (size_t)Ds,
                                 (size_t)B, 1.0f, s->gt, 0, (size_t)B, fs, 0,
                                 (size_t)Ds, 0.0f, grad, 0, (size_t)Ds)))
            return status;
    }
    if ((status = kdcl_pu_ce_or_zero(h, s->k[K_CE], has_ce, zs, y, zgrad,
                                     s->ce_rows, B, C,
                                     (float)(a / (double)B))))
        return status;
    return kdcl_pu_finish(h, s->k[K_FINISH], s->wg, s->rows, s->ce_rows,
                          h->io_output(io), B,
                          (float)(s->weight / ((double)B * (double)B)),
                          (float)s->alpha, has_ce);
}

/* Three GEMMs (two Grams, one gradient) dominate; the rest is O(B^2). */
static int cost(void *p, const kdcl_io *io, double *flops, double *bytes)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *fs = h->io_input(io, "student.feat");
    const kdcl_tensor *ft = h->io_input(io, "teacher.feat");
    double B, Ds, Dt, grad;
    *flops = 0;
    *bytes = 0;
    if (!fs || !ft || h->tensor_ndim(fs) < 1 || h->tensor_dim(fs, 0) < 1)
        return KDCL_OK;
    B = (double)h->tensor_dim(fs, 0);
    Ds = (double)h->tensor_numel(fs) / B;
    Dt = (double)h->tensor_numel(ft) / B;
    grad = h->io_grad(io, "student.feat") ? 1.0 : 0.0;
    *flops = 2.0 * B * B * (Ds + Dt) + grad * 2.0 * B * B * Ds
             + (10.0 + grad * 10.0) * B * B;
    /* Features read by the Grams (and the gradient GEMM), the gradient
       written, and the B x B matrices written and read. */
    *bytes = 4.0 * (B * (Ds + Dt) + grad * 2.0 * B * Ds
                    + (6.0 + grad * 6.0) * B * B);
    kdcl_pu_ce_cost(h, io, B, flops, bytes);
    return KDCL_OK;
}

static const struct kdcl_plugin relation = {
    KDCL_PLUGIN_HEAD,
    .name = "relation",
    .family = "relation",
    .summary = "relation KD: weight/B^2 * sum (R_T - R_S)^2, R = pairwise "
               "distance or cosine",
    .citation = "survey eqs. 1.3.1-1.3.4",
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
    .cost = cost,
};

KDCL_PLUGIN_DEFINE(relation, relation)
