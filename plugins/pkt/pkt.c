/*
 * plugins/pkt/pkt.c - probabilistic knowledge transfer (Passalis & Tefas
 * 2018; survey relation-based family, sec. 1.3, eq. 1.3.4), exactly as
 * LOSSES.md `pkt` defines it (anchor RepDistiller distiller_zoo/PKT.py):
 *   X = rows of F divided by (||F_b|| + 1e-7),  S = X X^T [B,B],
 *   P = (S + 1) / 2 with each row divided by its sum,
 *   L_KD = weight * mean over B*B of P_T * log((P_T + 1e-7) / (P_S + 1e-7)),
 *   L = alpha * CE(z_s, y) + (1 - alpha) * L_KD  with student.logits and
 *   labels, else L = L_KD.
 * Features [B,...] are flattened to [B,D]; Ds and Dt may differ.  The
 * similarity products and the backward product dX_S = (dS + dS^T) X_S are
 * host GEMMs; everything else is pkt.cl's kernels.  Forward and backward
 * are fused.
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "pkt_cl.h"

enum { P_ALPHA, P_WEIGHT };

static const struct kdcl_param_desc params[] = {
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels)"},
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "weight of the probabilistic knowledge transfer term"},
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

enum { K_NORM, K_ROWS, K_SYM, K_NORM_BACK, K_FINISH, K_CE, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "pkt_normalize", "pkt_rows",   "pkt_sym",
    "pkt_norm_back", "pkt_finish", "kdcl_ce_rows"};

struct state {
    const struct kdcl_host *h;
    double alpha, weight;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    /* Scratch: normalised features, row norms (student then teacher),
       similarity matrices (the student's becomes dS in place), dX_S,
       per-row loss and CE. */
    kdcl_tensor *xs, *xt, *norms, *ss, *st, *dx, *rows, *ce_rows;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->xs);
    s->h->tensor_free(s->xt);
    s->h->tensor_free(s->norms);
    s->h->tensor_free(s->ss);
    s->h->tensor_free(s->st);
    s->h->tensor_free(s->dx);
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
    status = kdcl_pu_build_wg(h, pkt_cl, NULL, N_KERNELS, kernel_names,
                              s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* Normalise the rows of f [B,D] into x, their norms into norms[off + b]. */
static int normalize(struct state *s, const kdcl_tensor *f, kdcl_tensor *x,
                     int64_t B, int64_t D, int32_t off)
{
    const struct kdcl_host *h = s->h;
    const size_t g = (size_t)B * s->wg, l = s->wg;
    const struct kdcl_arg args[] = {
        KDCL_A_TENSOR(f),
        KDCL_A_TENSOR(x),
        KDCL_A_TENSOR(s->norms),
        KDCL_A_I32((int32_t)D),
        KDCL_A_I32(off),
    };
    return h->launch(h->ctx, s->k[K_NORM], 1, &g, &l,
                     sizeof args / sizeof args[0], args);
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
    gfs = h->io_grad(io, "student.feat");
    glog = logits ? h->io_grad(io, "student.logits") : NULL;
    if ((status = kdcl_pu_scratch(h, &s->xs, B * Ds))
        || (status = kdcl_pu_scratch(h, &s->xt, B * Dt))
        || (status = kdcl_pu_scratch(h, &s->norms, 2 * B))
        || (status = kdcl_pu_scratch(h, &s->ss, B * B))
        || (status = kdcl_pu_scratch(h, &s->st, B * B))
        || (status = kdcl_pu_scratch(h, &s->rows, B))
        || (gfs && (status = kdcl_pu_scratch(h, &s->dx, B * Ds)))
        || (has_ce && (status = kdcl_pu_scratch(h, &s->ce_rows, B))))
        return status;
    /* Without the task term the PKT term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;

    if ((status = normalize(s, fs, s->xs, B, Ds, 0))
        || (status = normalize(s, ft, s->xt, B, Dt, (int32_t)B))
        || (status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Ds,
                             1.0f, s->xs, 0, (size_t)Ds, s->xs, 0,
                             (size_t)Ds, 0.0f, s->ss, 0, (size_t)B))
        || (status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Dt,
                             1.0f, s->xt, 0, (size_t)Dt, s->xt, 0,
                             (size_t)Dt, 0.0f, s->st, 0, (size_t)B)))
        return status;
    {
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->ss),
            KDCL_A_TENSOR(s->st),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)((1.0 - a) * s->weight
                               / ((double)B * (double)B))),
            KDCL_A_I32(gfs != NULL),
        };
        if ((status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &l,
                                sizeof args / sizeof args[0], args)))
            return status;
    }
    if (gfs) {
        /* dX_S = (dS + dS^T) X_S: symmetrise dS in place, one GEMM, then
           back through the row normalisation into dF_S. */
        const size_t gs[2] = {(size_t)B, (size_t)B};
        const size_t gb = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg sym[] = {
            KDCL_A_TENSOR(s->ss),
            KDCL_A_I32((int32_t)B),
        };
        const struct kdcl_arg back[] = {
            KDCL_A_TENSOR(s->xs),
            KDCL_A_TENSOR(s->dx),
            KDCL_A_TENSOR(s->norms),
            KDCL_A_TENSOR(gfs),
            KDCL_A_I32((int32_t)Ds),
        };
        if ((status = h->launch(h->ctx, s->k[K_SYM], 2, gs, NULL,
                                sizeof sym / sizeof sym[0], sym))
            || (status = h->gemm(h->ctx, 0, 0, (size_t)B, (size_t)Ds,
                                 (size_t)B, 1.0f, s->ss, 0, (size_t)B, s->xs,
                                 0, (size_t)Ds, 0.0f, s->dx, 0, (size_t)Ds))
            || (status = h->launch(h->ctx, s->k[K_NORM_BACK], 1, &gb, &l,
                                   sizeof back / sizeof back[0], back)))
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
    /* Products X_S X_S^T, X_T X_T^T and dX_S = S X_S; row norms and
       scaling (3 flops per feature), the backward through the norm (5 per
       student feature), about 30 flops per similarity entry (two logs). */
    *flops = 2.0 * B * B * (2.0 * Ds + Dt) + 3.0 * B * (Ds + Dt)
             + 5.0 * B * Ds + 30.0 * B * B;
    /* F read, X written and read by the GEMMs (twice for X_S), dX_S
       written and read, dF_S written; S matrices written, read, dS
       written, symmetrised and read by the GEMM. */
    *bytes = 4.0 * (7.0 * B * Ds + 3.0 * B * Dt + 8.0 * B * B);
    kdcl_pu_ce_cost(h, io, B, flops, bytes);
    return KDCL_OK;
}

static const struct kdcl_plugin pkt = {
    KDCL_PLUGIN_HEAD,
    .name = "pkt",
    .family = "relation",
    .summary = "probabilistic KT: KL-style divergence of row-normalised "
               "cosine-similarity distributions",
    .citation = "survey sec. 1.3 (relation-based), eq. 1.3.4; Passalis & "
                "Tefas 2018 (PKT)",
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

KDCL_PLUGIN_DEFINE(pkt, pkt)
