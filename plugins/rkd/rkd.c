/*
 * plugins/rkd/rkd.c - relational KD of Park et al. 2019 (distance and
 * angle terms), exactly as LOSSES.md `rkd` defines it, anchored on
 * RepDistiller distiller_zoo/RKD.py:
 * L_KD = w_dist * loss_d + w_angle * loss_a, and
 * L = alpha * CE(student.logits, labels) + (1 - alpha) * L_KD with labels.
 *
 * The distance term works on Gram matrices (host GEMM).  The angle term is
 * over all B^3 triples but never holds anything of size B^3: anchors are
 * taken in chunks sized by a memory budget, and for each anchor i the
 * B x B angle matrix is the Gram matrix of its unit difference vectors
 * (batched GEMM); its backward is one more batched GEMM plus the
 * normalisation's Jacobian (see rkd.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "rkd_cl.h"

enum { P_ALPHA, P_W_DIST, P_W_ANGLE, P_ANCHOR_CHUNK };

/* Rows (j) per work-group in the per-anchor kernels on GPUs: fewer,
   longer work-groups.  CPU devices take WG rows, one per item. */
#define RKD_RB_GPU 8

/* Device memory the angle term's per-chunk buffers may use. */
#define RKD_CHUNK_BUDGET (64.0 * 1024.0 * 1024.0)

static const struct kdcl_param_desc params[] = {
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels); "
     "1 - alpha weighs KD"},
    {"w_dist", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "25", 0.0, 0.0, NULL,
     "weight of the distance term loss_d"},
    {"w_angle", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "50", 0.0, 0.0, NULL,
     "weight of the angle term loss_a"},
    {"anchor_chunk", KDCL_PARAM_INT, KDCL_PARAM_HAS_MIN, "0", 0.0, 0.0, NULL,
     "anchors per angle-term chunk; 0 = as many as a 64 MiB budget allows "
     "(changes rounding only)"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.feat", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,Ds]",
     "student embeddings [B,...], flattened to [B,Ds]"},
    {"teacher.feat", KDCL_INPUT_REQUIRED, 0, "[B,Dt]",
     "teacher embeddings [B,...], flattened to [B,Dt]"},
    {"student.logits", KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits for the CE term (with labels)"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); enable the CE term"},
};

/* kd = w_dist * dist + w_angle * angle; dist and angle unweighted. */
static const char *const terms[] = {"ce", "kd", "dist", "angle"};

enum {
    K_DIST_ROWS,
    K_ROWSUM,
    K_DIST_LOSS,
    K_DIST_SYM,
    K_UNIT,
    K_ANGLE,
    K_UNIT_BACK,
    K_ACCUMULATE,
    K_FINISH,
    K_CE,
    N_KERNELS
};
static const char *const kernel_names[N_KERNELS] = {
    "rkd_dist_rows", "rkd_rowsum",     "rkd_dist_loss", "rkd_dist_sym",
    "rkd_unit",      "rkd_angle",      "rkd_unit_back", "rkd_accumulate",
    "rkd_finish",    "kdcl_ce_rows"};

struct state {
    const struct kdcl_host *h;
    double alpha, w_dist, w_angle;
    int alpha_set;
    int64_t anchor_chunk;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    int64_t rb; /* rows per work-group in the per-anchor kernels */
    double budget;
    /* B x B: Grams (the teacher's is reused for Q) and g of the distance
       term; arows: angle partials per (anchor, row block); rows: 8 per
       row; mu: mu_S, mu_T, c. */
    kdcl_tensor *gs, *gt, *gd, *arows, *rows, *mu, *ce_rows;
    /* per chunk of anchors: unit vectors, norms, angles, their gradients */
    kdcl_tensor *us, *ut, *ns, *as, *at, *da, *du;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    {
        kdcl_tensor *t[] = {s->gs, s->gt, s->gd, s->arows, s->rows,
                            s->mu, s->ce_rows, s->us, s->ut, s->ns,
                            s->as, s->at, s->da, s->du};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            s->h->tensor_free(t[i]);
    }
    s->h->free(s);
}

static int create(const struct kdcl_host *h, const kdcl_params *p,
                  void **out)
{
    const struct kdcl_device_info *dev = h->device(h->ctx);
    const int cpu = dev->type == KDCL_DEVICE_CPU;
    struct state *s = h->alloc_zero(1, sizeof *s);
    char extra[64];
    int status;

    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    s->w_dist = h->param_f64(p, P_W_DIST);
    s->w_angle = h->param_f64(p, P_W_ANGLE);
    s->anchor_chunk = h->param_i64(p, P_ANCHOR_CHUNK);
    s->budget = RKD_CHUNK_BUDGET;
    if (dev->max_alloc && s->budget > (double)dev->max_alloc)
        s->budget = (double)dev->max_alloc;
    /* CPU devices run a work-group as a loop: there one item per row,
       without barriers, beats items sharing rows. */
    s->rb = cpu ? (int64_t)kdcl_pu_row_wg(h) : RKD_RB_GPU;
    snprintf(extra, sizeof extra, " -DRB=%d%s", (int)s->rb,
             cpu ? " -DRKD_ROW_PER_ITEM" : "");
    status = kdcl_pu_build_wg(h, rkd_cl, extra, N_KERNELS, kernel_names,
                              s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* Launch kernel k on n work-groups of s->wg items. */
static int launch_rows(const struct state *s, int k, int64_t n,
                       const struct kdcl_arg *args, size_t n_args)
{
    const size_t g = (size_t)n * s->wg, l = s->wg;
    return s->h->launch(s->h->ctx, s->k[k], 1, &g, &l, (uint32_t)n_args,
                        args);
}

/* Blocks of s->rb rows in B rows. */
static int64_t row_blocks(const struct state *s, int64_t B)
{
    return (B + s->rb - 1) / s->rb;
}

/* Launch kernel k on a grid of (row blocks of B) x n work-groups. */
static int launch_pairs(const struct state *s, int k, int64_t B, int64_t n,
                        const struct kdcl_arg *args, size_t n_args)
{
    const size_t g[2] = {(size_t)row_blocks(s, B) * s->wg, (size_t)n},
                 l[2] = {s->wg, 1};
    return s->h->launch(s->h->ctx, s->k[k], 2, g, l, (uint32_t)n_args, args);
}

/* One 1-group launch of rkd_rowsum: mu[o] = scale * sum_i rows[8i+col]. */
static int rowsum(const struct state *s, int64_t B, int col, double scale,
                  int o)
{
    const struct kdcl_arg args[] = {
        KDCL_A_TENSOR(s->rows), KDCL_A_TENSOR(s->mu),
        KDCL_A_I32((int32_t)B), KDCL_A_I32(col),
        KDCL_A_F32((float)scale), KDCL_A_I32(o),
    };
    return launch_rows(s, K_ROWSUM, 1, args, sizeof args / sizeof args[0]);
}

/* Anchors per chunk of the angle term. */
static int64_t chunk_size(const struct state *s, int64_t B, int64_t Ds,
                          int64_t Dt)
{
    double per = 4.0 * ((double)B * (double)(2 * Ds + Dt)
                        + 3.0 * (double)B * (double)B + (double)B);
    int64_t n = s->anchor_chunk > 0 ? s->anchor_chunk
                                    : (int64_t)(s->budget / per);
    return n < 1 ? 1 : n > B ? B : n;
}

/* The distance term; with grad, writes its gradient Q F_S into grad. */
static int distance_term(struct state *s, const kdcl_tensor *fs,
                         const kdcl_tensor *ft, kdcl_tensor *grad, int64_t B,
                         int64_t Ds, int64_t Dt, double coef_d)
{
    const struct kdcl_host *h = s->h;
    /* mean over the B(B-1) off-diagonal entries, all > 0 */
    const double inv_n = B > 1 ? 1.0 / ((double)B * (double)(B - 1)) : 0.0;
    int status;

    if ((status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Ds,
                          1.0f, fs, 0, (size_t)Ds, fs, 0, (size_t)Ds, 0.0f,
                          s->gs, 0, (size_t)B))
        || (status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)B, (size_t)Dt,
                             1.0f, ft, 0, (size_t)Dt, ft, 0, (size_t)Dt,
                             0.0f, s->gt, 0, (size_t)B)))
        return status;
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs), KDCL_A_TENSOR(s->gt),
            KDCL_A_TENSOR(s->rows), KDCL_A_I32((int32_t)B),
        };
        if ((status = launch_rows(s, K_DIST_ROWS, B, args,
                                  sizeof args / sizeof args[0]))
            || (status = rowsum(s, B, 0, inv_n, 0))
            || (status = rowsum(s, B, 1, inv_n, 1)))
            return status;
    }
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs),   KDCL_A_TENSOR(s->gt),
            KDCL_A_TENSOR(s->mu),   KDCL_A_TENSOR(grad ? s->gd : NULL),
            KDCL_A_TENSOR(s->rows), KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)coef_d), KDCL_A_I32(grad != NULL),
        };
        if ((status = launch_rows(s, K_DIST_LOSS, B, args,
                                  sizeof args / sizeof args[0])))
            return status;
    }
    if (!grad)
        return KDCL_OK;
    {
        /* Q overwrites the teacher Gram, which is no longer needed. */
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->gs), KDCL_A_TENSOR(s->gd),
            KDCL_A_TENSOR(s->mu), KDCL_A_TENSOR(s->gt),
            KDCL_A_I32((int32_t)B),
        };
        if ((status = rowsum(s, B, 5, inv_n, 2))
            || (status = launch_rows(s, K_DIST_SYM, B, args,
                                     sizeof args / sizeof args[0])))
            return status;
    }
    return h->gemm(h->ctx, 0, 0, (size_t)B, (size_t)Ds, (size_t)B, 1.0f,
                   s->gt, 0, (size_t)B, fs, 0, (size_t)Ds, 0.0f, grad, 0,
                   (size_t)Ds);
}

/* The angle term over anchors [i0, i0 + n); adds its gradient to grad. */
static int angle_chunk(struct state *s, const kdcl_tensor *fs,
                       const kdcl_tensor *ft, kdcl_tensor *grad, int64_t B,
                       int64_t Ds, int64_t Dt, int64_t i0, int64_t n,
                       double coef_a)
{
    const struct kdcl_host *h = s->h;
    const size_t b = (size_t)B, bb = b * b;
    int status;
    {
        const struct kdcl_arg as_[] = {
            KDCL_A_TENSOR(fs), KDCL_A_TENSOR(s->us), KDCL_A_TENSOR(s->ns),
            KDCL_A_I32((int32_t)B), KDCL_A_I32((int32_t)Ds),
            KDCL_A_I32((int32_t)i0), KDCL_A_I32(1),
        };
        const struct kdcl_arg at_[] = {
            KDCL_A_TENSOR(ft), KDCL_A_TENSOR(s->ut), KDCL_A_TENSOR(NULL),
            KDCL_A_I32((int32_t)B), KDCL_A_I32((int32_t)Dt),
            KDCL_A_I32((int32_t)i0), KDCL_A_I32(0),
        };
        if ((status = launch_pairs(s, K_UNIT, B, n, as_,
                                   sizeof as_ / sizeof as_[0]))
            || (status = launch_pairs(s, K_UNIT, B, n, at_,
                                      sizeof at_ / sizeof at_[0])))
            return status;
    }
    /* A_i = U_i U_i^T for every anchor of the chunk. */
    if ((status = h->gemm_batched(h->ctx, 0, 1, b, b, (size_t)Ds, 1.0f,
                                  s->us, 0, (size_t)Ds, b * (size_t)Ds, s->us,
                                  0, (size_t)Ds, b * (size_t)Ds, 0.0f, s->as,
                                  0, b, bb, (size_t)n))
        || (status = h->gemm_batched(h->ctx, 0, 1, b, b, (size_t)Dt, 1.0f,
                                     s->ut, 0, (size_t)Dt, b * (size_t)Dt,
                                     s->ut, 0, (size_t)Dt, b * (size_t)Dt,
                                     0.0f, s->at, 0, b, bb, (size_t)n)))
        return status;
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->as),
            KDCL_A_TENSOR(s->at),
            KDCL_A_TENSOR(grad ? s->da : NULL),
            KDCL_A_TENSOR(s->arows),
            KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)i0),
            KDCL_A_F32((float)coef_a),
            KDCL_A_I32(grad != NULL),
        };
        if ((status = launch_pairs(s, K_ANGLE, B, n, args,
                                   sizeof args / sizeof args[0])))
            return status;
    }
    if (!grad)
        return KDCL_OK;
    /* dL/dU_i = (dL/dA_i + its transpose) U_i. */
    if ((status = h->gemm_batched(h->ctx, 0, 0, b, (size_t)Ds, b, 1.0f,
                                  s->da, 0, b, bb, s->us, 0, (size_t)Ds,
                                  b * (size_t)Ds, 0.0f, s->du, 0, (size_t)Ds,
                                  b * (size_t)Ds, (size_t)n)))
        return status;
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->us), KDCL_A_TENSOR(s->du),
            KDCL_A_TENSOR(s->ns), KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)Ds), KDCL_A_I32((int32_t)i0),
        };
        if ((status = launch_pairs(s, K_UNIT_BACK, B, n, args,
                                   sizeof args / sizeof args[0])))
            return status;
    }
    {
        const size_t g[2] = {(size_t)Ds, b}, l[2] = {s->wg, 1};
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->du),     KDCL_A_TENSOR(grad),
            KDCL_A_I32((int32_t)B),   KDCL_A_I32((int32_t)Ds),
            KDCL_A_I32((int32_t)i0),  KDCL_A_I32((int32_t)n),
        };
        return h->launch(h->ctx, s->k[K_ACCUMULATE], 2, g, l,
                         sizeof args / sizeof args[0], args);
    }
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *fs, *ft, *zs, *y;
    kdcl_tensor *grad, *zgrad;
    int64_t B = 0, Ds = 0, Dt = 0, C = 0, chunk;
    bool has_ce;
    double a, b2, b3;
    int status;

    if ((status = kdcl_pu_feat_pair(h, io, &fs, &ft, &B, &Ds, &Dt))
        || (status = kdcl_pu_feat_task(h, io, B, s->alpha, s->alpha_set, &zs,
                                       &y, &C, &has_ce)))
        return status;
    grad = h->io_grad(io, "student.feat");
    zgrad = h->io_grad(io, "student.logits");
    chunk = chunk_size(s, B, Ds, Dt);
    if ((status = kdcl_pu_scratch(h, &s->gs, B * B))
        || (status = kdcl_pu_scratch(h, &s->gt, B * B))
        || (status = kdcl_pu_scratch(h, &s->arows, B * row_blocks(s, B)))
        || (status = kdcl_pu_scratch(h, &s->rows, 8 * B))
        || (status = kdcl_pu_scratch(h, &s->mu, 4))
        || (status = kdcl_pu_scratch(h, &s->ce_rows, B))
        || (status = kdcl_pu_scratch(h, &s->us, chunk * B * Ds))
        || (status = kdcl_pu_scratch(h, &s->ut, chunk * B * Dt))
        || (status = kdcl_pu_scratch(h, &s->ns, chunk * B))
        || (status = kdcl_pu_scratch(h, &s->as, chunk * B * B))
        || (status = kdcl_pu_scratch(h, &s->at, chunk * B * B)))
        return status;
    if (grad
        && ((status = kdcl_pu_scratch(h, &s->gd, B * B))
            || (status = kdcl_pu_scratch(h, &s->da, chunk * B * B))
            || (status = kdcl_pu_scratch(h, &s->du, chunk * B * Ds))))
        return status;
    /* Without the task term the KD term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;
    b2 = (double)B * (double)B;
    b3 = b2 * (double)B;
    if ((status = distance_term(s, fs, ft, grad, B, Ds, Dt,
                                (1.0 - a) * s->w_dist / b2)))
        return status;
    for (int64_t i0 = 0; i0 < B; i0 += chunk) {
        const int64_t n = B - i0 < chunk ? B - i0 : chunk;
        if ((status = angle_chunk(s, fs, ft, grad, B, Ds, Dt, i0, n,
                                  (1.0 - a) * s->w_angle / b3)))
            return status;
    }
    if ((status = kdcl_pu_ce_or_zero(h, s->k[K_CE], has_ce, zs, y, zgrad,
                                     s->ce_rows, B, C,
                                     (float)(a / (double)B))))
        return status;
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(s->arows),
            KDCL_A_TENSOR(has_ce ? s->ce_rows : NULL),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)s->w_dist),
            KDCL_A_F32((float)s->w_angle),
            KDCL_A_F32((float)s->alpha),
            KDCL_A_I32(has_ce),
            KDCL_A_I32((int32_t)(B * row_blocks(s, B))),
        };
        return launch_rows(s, K_FINISH, 1, args, sizeof args / sizeof args[0]);
    }
}

/*
 * GEMMs dominate: the two Grams and the distance gradient (O(B^2 D)), the
 * per-anchor angle Grams and their backward (O(B^3 D)).
 */
static int cost(void *p, const kdcl_io *io, double *flops, double *bytes)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *fs = h->io_input(io, "student.feat");
    const kdcl_tensor *ft = h->io_input(io, "teacher.feat");
    double B, Ds, Dt, g, b2, b3;
    *flops = 0;
    *bytes = 0;
    if (!fs || !ft || h->tensor_ndim(fs) < 1 || h->tensor_dim(fs, 0) < 1)
        return KDCL_OK;
    B = (double)h->tensor_dim(fs, 0);
    Ds = (double)h->tensor_numel(fs) / B;
    Dt = (double)h->tensor_numel(ft) / B;
    g = h->io_grad(io, "student.feat") ? 1.0 : 0.0;
    b2 = B * B;
    b3 = b2 * B;
    *flops = 2.0 * b2 * (Ds + Dt) + g * 2.0 * b2 * Ds /* distance GEMMs */
             + 2.0 * b3 * (Ds + Dt) + g * 2.0 * b3 * Ds /* angle GEMMs */
             + 4.0 * b2 * (Ds + Dt) + g * 8.0 * b2 * Ds /* unit vectors */
             + (6.0 + g * 6.0) * b3 + 30.0 * b2;
    /* Unit vectors written and read back by the GEMMs (and the backward),
       the per-anchor angle matrices, the B x B distance matrices. */
    *bytes = 4.0 * (B * (Ds + Dt) + 2.0 * b2 * (Ds + Dt) + g * 6.0 * b2 * Ds
                    + (6.0 + g * 4.0) * b3 + 12.0 * b2);
    kdcl_pu_ce_cost(h, io, B, flops, bytes);
    return KDCL_OK;
}

static const struct kdcl_plugin rkd = {
    KDCL_PLUGIN_HEAD,
    .name = "rkd",
    .family = "relation",
    .summary = "relational KD: w_dist * smoothL1 of normalised distances + "
               "w_angle * smoothL1 of triplet angles",
    .citation = "Park, Kim, Lu, Cho 2019, Relational Knowledge "
                "Distillation (relation-based, survey sec. 1.3; LOSSES.md "
                "`rkd`)",
    .version = "1.0.0",
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .param_desc_size = sizeof params[0],
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .input_desc_size = sizeof inputs[0],
    .terms = terms,
    .n_terms = 4,
    .create = create,
    .destroy = destroy,
    .forward = forward,
    .cost = cost,
};

KDCL_PLUGIN_DEFINE(rkd, rkd)
