/*
 * plugins/sp/sp.c - similarity-preserving KD (Tung & Mori 2019; survey
 * relation-based family, eqs. 1.3.3-1.3.4), exactly as LOSSES.md `sp`
 * defines it:
 *   G = F F^T [B,B] per network, each row divided by max(||G_i||, 1e-12),
 *   L_KD = weight * (1/B^2) sum_ij (G_T - G_S)_ij^2,
 *   L = alpha * CE(z_s, y) + (1 - alpha) * L_KD  with student.logits and
 *   labels, else L = L_KD.
 * Features [B,...] are flattened to [B,D]; Ds and Dt may differ.  The
 * Gram products and the backward product dF_S = (dG + dG^T) F_S are host
 * GEMMs; normalisation, loss and its gradient are sp.cl's kernels.
 * Forward and backward are fused.
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "sp_cl.h"

enum { P_ALPHA, P_WEIGHT };

static const struct kdcl_param_desc params[] = {
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels)"},
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "weight of the similarity-preserving term"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.feat", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,Ds]",
     "student features [B,...], flattened to [B,Ds]"},
    {"teacher.feat", KDCL_INPUT_REQUIRED, 0, "[B,Dt]",
     "teacher features [B,...], flattened to [B,Dt]"},
    {"student.logits", KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits for the cross-entropy term (with labels)"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); enables the CE term"},
};

static const char *const terms[] = {"ce", "kd"};

enum { K_ROWS, K_SYM, K_FINISH, K_CE, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "sp_rows", "sp_sym", "sp_finish", "kdcl_ce_rows"};

struct state {
    const struct kdcl_host *h;
    double alpha, weight;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    /* Scratch: Gram matrices (the student's becomes dG in place), per-row
       loss and CE. */
    kdcl_tensor *gs, *gt, *rows, *ce_rows;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->gs);
    s->h->tensor_free(s->gt);
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
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    s->weight = h->param_f64(p, P_WEIGHT);
    /* As hinton: a short group per row on CPUs, a full one on GPUs. */
    status = kdcl_pu_build_wg(h, sp_cl, NULL, N_KERNELS, kernel_names,
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
    const kdcl_tensor *fs, *ft, *logits, *y;
    kdcl_tensor *gfs, *glog;
    int64_t B = 0, Ds = 0, Dt = 0, C = 0;
    bool has_ce;
    double a;
    int status;

    if ((status = kdcl_pu_feat_pair(h, io, &fs, &ft, &B, &Ds, &Dt))
        || (status = kdcl_pu_feat_task(h, io, B, s->alpha, s->alpha_set,
                                       &logits, &y, &C, &has_ce)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->gs, B * B))
        || (status = kdcl_pu_scratch(h, &s->gt, B * B))
        || (status = kdcl_pu_scratch(h, &s->rows, B))
        || (has_ce && (status = kdcl_pu_scratch(h, &s->ce_rows, B))))
        return status;
    gfs = h->io_grad(io, "student.feat");
    glog = logits ? h->io_grad(io, "student.logits") : NULL;
    /* Without the task term the SP term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;

    if ((status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Ds,
                          1.0f, fs, 0, (size_t)Ds, fs, 0, (size_t)Ds, 0.0f,
                          s->gs, 0, (size_t)B))
        || (status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Dt,
                             1.0f, ft, 0, (size_t)Dt, ft, 0, (size_t)Dt,
                             0.0f, s->gt, 0, (size_t)B)))
        return status;
    {
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs),
            KDCL_A_TENSOR(s->gt),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)(2.0 * (1.0 - a) * s->weight
                               / ((double)B * (double)B))),
            KDCL_A_I32(gfs != NULL),
        };
        if ((status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &l,
                                sizeof args / sizeof args[0], args)))
            return status;
    }
    if (gfs) {
        /* dF_S = (dG + dG^T) F_S: symmetrise dG in place, one GEMM. */
        const size_t g[2] = {(size_t)B, (size_t)B};
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs),
            KDCL_A_I32((int32_t)B),
        };
        if ((status = h->launch(h->ctx, s->k[K_SYM], 2, g, NULL,
                                sizeof args / sizeof args[0], args))
            || (status = h->gemm(h->ctx, 0, 0, (size_t)B, (size_t)Ds,
                                 (size_t)B, 1.0f, s->gs, 0, (size_t)B, fs, 0,
                                 (size_t)Ds, 0.0f, gfs, 0, (size_t)Ds)))
            return status;
    }
    /* Logits without labels do not enter the loss: zero gradient. */
    if ((status = kdcl_pu_ce_or_zero(h, s->k[K_CE], has_ce, logits, y, glog,
                                     s->ce_rows, B, C,
                                     (float)(s->alpha / (double)B))))
        return status;
    return kdcl_pu_finish(h, s->k[K_FINISH], s->wg, s->rows, s->ce_rows,
                          h->io_output(io), B,
                          (float)(s->weight / ((double)B * (double)B)),
                          (float)s->alpha, has_ce);
}

/* Flops and device bytes of one fused forward and backward. */
static int cost(void *p, const kdcl_io *io, double *flops, double *bytes)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *fs = h->io_input(io, "student.feat");
    const kdcl_tensor *ft = h->io_input(io, "teacher.feat");
    double B, Ds, Dt;

    *flops = 0;
    *bytes = 0;
    if (!fs || !ft || h->tensor_ndim(fs) < 2 || h->tensor_ndim(ft) < 2)
        return KDCL_OK;
    B = (double)h->tensor_dim(fs, 0);
    Ds = (double)h->tensor_numel(fs) / B;
    Dt = (double)h->tensor_numel(ft) / B;
    /* Gram products F_S F_S^T, F_T F_T^T and dF_S = S F_S, then about 16
       flops per Gram entry for norms, loss, dG and symmetrising. */
    *flops = 2.0 * B * B * (2.0 * Ds + Dt) + 16.0 * B * B;
    /* F_S twice, F_T, dF_S; G_S and G_T written and read, dG written,
       read and written by the symmetrising pass, read by the GEMM. */
    *bytes = 4.0 * (3.0 * B * Ds + B * Dt + 8.0 * B * B);
    kdcl_pu_ce_cost(h, io, B, flops, bytes);
    return KDCL_OK;
}

static const struct kdcl_plugin sp = {
    KDCL_PLUGIN_HEAD,
    .name = "sp",
    .family = "relation",
    .summary = "similarity-preserving KD: MSE of row-normalised batch "
               "Gram matrices F F^T",
    .citation = "survey eqs. 1.3.3-1.3.4; Tung & Mori 2019",
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

KDCL_PLUGIN_DEFINE(sp, sp)
