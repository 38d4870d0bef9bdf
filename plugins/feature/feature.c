/*
 * plugins/feature/feature.c - FitNets hint loss (survey eqs. 1.2.1-1.2.2),
 * exactly as LOSSES.md `feature` defines it:
 *   L_KD = weight * mean over B*Dt of (F_T - r(F_S))^2,
 *   L = alpha * CE(z_s, y) + (1 - alpha) * L_KD  with student.logits and
 *   labels, else L = L_KD,
 * where r is the identity or a plugin-owned linear regressor
 * r(F_S) = F_S W^T + b, W [Dt,Ds], b [Dt].  Features [B,...] are flattened
 * to [B,D].  Forward and backward are fused: one forward writes the loss,
 * the gradient of every student input asked for and, with the linear
 * regressor, the gradients of W and b (the trainables).
 *
 * The regressor is created at the first forward that needs it (when Ds
 * and Dt are known): W is Xavier-uniform, W = bound * (2u - 1) with
 * bound = sqrt(6 / (Ds + Dt)), where u walks row-major through W and is
 * the top 24 bits of successive splitmix64 outputs from state `seed`,
 * divided by 2^24; b = 0.  The same seed gives the same W everywhere.
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <math.h>
#include <stdio.h>

#include "feature_cl.h"

enum { P_ALPHA, P_WEIGHT, P_REGRESSOR, P_SEED };
enum { REG_AUTO, REG_NONE, REG_LINEAR };

static const struct kdcl_param_desc params[] = {
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels)"},
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "weight of the hint (mean squared error) term"},
    {"regressor", KDCL_PARAM_ENUM, 0, "auto", 0.0, 0.0, "auto|none|linear",
     "r(F_S): auto = none when Ds == Dt else linear; linear = F_S W^T + b"},
    {"seed", KDCL_PARAM_INT, KDCL_PARAM_HAS_MIN, "0", 0.0, 0.0, NULL,
     "seed of the regressor's Xavier-uniform initialisation"},
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

enum { K_ROWS, K_COLSUM, K_FINISH, K_CE, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "feature_rows", "feature_colsum", "feature_finish", "kdcl_ce_rows"};

struct state {
    const struct kdcl_host *h;
    double alpha, weight;
    int alpha_set, regressor;
    uint64_t seed;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    /* The linear regressor, made at the first forward that needs it. */
    int64_t reg_ds, reg_dt;
    kdcl_tensor *w, *b, *dw, *db;
    /* Scratch: per-row sums, per-row CE, r(F_S) and then its gradient. */
    kdcl_tensor *rows, *ce_rows, *r;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->w);
    s->h->tensor_free(s->b);
    s->h->tensor_free(s->dw);
    s->h->tensor_free(s->db);
    s->h->tensor_free(s->rows);
    s->h->tensor_free(s->ce_rows);
    s->h->tensor_free(s->r);
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
    s->regressor = (int)h->param_i64(p, P_REGRESSOR);
    s->seed = (uint64_t)h->param_i64(p, P_SEED);
    /* As hinton: a short group per row on CPUs, a full one on GPUs. */
    status = kdcl_pu_build_wg(h, feature_cl, NULL, N_KERNELS, kernel_names,
                              s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* splitmix64 (Steele, Lea, Flood 2014): small, seedable, portable. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Make the regressor for (Ds, Dt), or check that it was made for them. */
static int ensure_regressor(struct state *s, int64_t Ds, int64_t Dt)
{
    const struct kdcl_host *h = s->h;
    const int64_t wshape[2] = {Dt, Ds}, bshape[1] = {Dt};
    const double bound = sqrt(6.0 / (double)(Ds + Dt));
    uint64_t x = s->seed;
    float *w;
    int status;

    if (s->w) {
        if (s->reg_ds == Ds && s->reg_dt == Dt)
            return KDCL_OK;
        return h->error(h->ctx, KDCL_ESHAPE,
                        "the regressor was created for Ds=%lld, Dt=%lld; "
                        "student.feat now has Ds=%lld and teacher.feat "
                        "Dt=%lld",
                        (long long)s->reg_ds, (long long)s->reg_dt,
                        (long long)Ds, (long long)Dt);
    }
    /* W, then Dt zeros for b (written, not filled: a written buffer is
       one that every checking runtime knows is initialised). */
    w = h->alloc_zero((size_t)(Ds * Dt + Dt), sizeof *w);
    if (!w)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    for (int64_t i = 0; i < Ds * Dt; i++) {
        double u = (double)(splitmix64(&x) >> 40) * (1.0 / 16777216.0);
        w[i] = (float)(bound * (2.0 * u - 1.0));
    }
    status = h->tensor_init(h->ctx, KDCL_DTYPE_F32, 2, wshape, &s->w);
    if (!status)
        status = h->tensor_init(h->ctx, KDCL_DTYPE_F32, 2, wshape, &s->dw);
    if (!status)
        status = h->tensor_init(h->ctx, KDCL_DTYPE_F32, 1, bshape, &s->b);
    if (!status)
        status = h->tensor_init(h->ctx, KDCL_DTYPE_F32, 1, bshape, &s->db);
    if (!status)
        status = h->tensor_write(s->w, w, (size_t)(Ds * Dt) * sizeof *w);
    if (!status)
        status = h->tensor_write(s->b, w + Ds * Dt, (size_t)Dt * sizeof *w);
    h->free(w);
    if (status) {
        h->tensor_free(s->w);
        h->tensor_free(s->dw);
        h->tensor_free(s->b);
        h->tensor_free(s->db);
        s->w = s->dw = s->b = s->db = NULL;
        return status;
    }
    s->reg_ds = Ds;
    s->reg_dt = Dt;
    return KDCL_OK;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *fs, *ft, *logits, *y;
    kdcl_tensor *gfs, *glog;
    int64_t B = 0, Ds = 0, Dt = 0, C = 0;
    bool has_ce, linear;
    double a;
    int status;
    char ss[128], st[128];

    if ((status = kdcl_pu_feat_pair(h, io, &fs, &ft, &B, &Ds, &Dt))
        || (status = kdcl_pu_feat_task(h, io, B, s->alpha, s->alpha_set,
                                       &logits, &y, &C, &has_ce)))
        return status;
    linear = s->regressor == REG_LINEAR
             || (s->regressor == REG_AUTO && Ds != Dt);
    if (!linear && Ds != Dt) {
        kdcl_pu_shape_str(h, fs, ss, sizeof ss);
        kdcl_pu_shape_str(h, ft, st, sizeof st);
        return h->error(h->ctx, KDCL_ESHAPE,
                        "regressor=none needs equal widths, but "
                        "student.feat %s has Ds=%lld and teacher.feat %s "
                        "Dt=%lld: use regressor=linear or auto",
                        ss, (long long)Ds, st, (long long)Dt);
    }
    if (linear && (status = ensure_regressor(s, Ds, Dt)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->rows, B))
        || (has_ce && (status = kdcl_pu_scratch(h, &s->ce_rows, B)))
        || (linear && (status = kdcl_pu_scratch(h, &s->r, B * Dt))))
        return status;
    gfs = h->io_grad(io, "student.feat");
    glog = logits ? h->io_grad(io, "student.logits") : NULL;
    /* Without the task term the hint term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;

    /* R = F_S W^T (the bias is added by feature_rows). */
    if (linear
        && (status = h->gemm(h->ctx, 0, 1, (size_t)B, (size_t)Dt, (size_t)Ds,
                             1.0f, fs, 0, (size_t)Ds, s->w, 0, (size_t)Ds,
                             0.0f, s->r, 0, (size_t)Dt)))
        return status;
    {
        /* With the regressor, dR overwrites R in place; without it, dR is
           the gradient of student.feat itself. */
        kdcl_tensor *dr = linear ? s->r : gfs;
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(linear ? (const kdcl_tensor *)s->r : fs),
            KDCL_A_TENSOR(linear ? s->b : NULL),
            KDCL_A_TENSOR(ft),
            KDCL_A_TENSOR(dr),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)Dt),
            KDCL_A_F32((float)(2.0 * (1.0 - a) * s->weight
                               / ((double)B * (double)Dt))),
            KDCL_A_I32(linear),
            KDCL_A_I32(dr != NULL),
        };
        if ((status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &l,
                                sizeof args / sizeof args[0], args)))
            return status;
    }
    if (linear) {
        /* dF_S = dR W, dW = dR^T F_S, db = column sums of dR. */
        const size_t g = (size_t)Dt, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->r),
            KDCL_A_TENSOR(s->db),
            KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)Dt),
        };
        if ((gfs
             && (status = h->gemm(h->ctx, 0, 0, (size_t)B, (size_t)Ds,
                                  (size_t)Dt, 1.0f, s->r, 0, (size_t)Dt, s->w,
                                  0, (size_t)Ds, 0.0f, gfs, 0, (size_t)Ds)))
            || (status = h->gemm(h->ctx, 1, 0, (size_t)Dt, (size_t)Ds,
                                 (size_t)B, 1.0f, s->r, 0, (size_t)Dt, fs, 0,
                                 (size_t)Ds, 0.0f, s->dw, 0, (size_t)Ds))
            || (status = h->launch(h->ctx, s->k[K_COLSUM], 1, &g, &l,
                                   sizeof args / sizeof args[0], args)))
            return status;
    }
    /* Logits without labels do not enter the loss: zero gradient. */
    if ((status = kdcl_pu_ce_or_zero(h, s->k[K_CE], has_ce, logits, y, glog,
                                     s->ce_rows, B, C,
                                     (float)(s->alpha / (double)B))))
        return status;
    return kdcl_pu_finish(h, s->k[K_FINISH], s->wg, s->rows, s->ce_rows,
                          h->io_output(io), B,
                          (float)(s->weight / ((double)B * (double)Dt)),
                          (float)s->alpha, has_ce);
}

static int trainable(void *p, uint32_t i, struct kdcl_trainable *out)
{
    struct state *s = p;
    if (!s->w || i > 1)
        return KDCL_ENOTFOUND;
    out->name = i == 0 ? "regressor.weight" : "regressor.bias";
    out->value = i == 0 ? s->w : s->b;
    out->grad = i == 0 ? s->dw : s->db;
    return KDCL_OK;
}

/* Flops and device bytes of one forward (which includes the backward). */
static int cost(void *p, const kdcl_io *io, double *flops, double *bytes)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *fs = h->io_input(io, "student.feat");
    const kdcl_tensor *ft = h->io_input(io, "teacher.feat");
    double B, Ds, Dt;
    bool linear;

    *flops = 0;
    *bytes = 0;
    if (!fs || !ft || h->tensor_ndim(fs) < 2 || h->tensor_ndim(ft) < 2)
        return KDCL_OK;
    B = (double)h->tensor_dim(fs, 0);
    Ds = (double)h->tensor_numel(fs) / B;
    Dt = (double)h->tensor_numel(ft) / B;
    linear = s->regressor == REG_LINEAR
             || (s->regressor == REG_AUTO && Ds != Dt);
    /* feature_rows: subtract, square-accumulate, scale. */
    *flops = 4.0 * B * Dt;
    *bytes = 4.0 * (B * Ds + B * Dt + B * Ds); /* F_S, F_T, dF_S */
    if (linear) {
        /* Three GEMMs of B*Ds*Dt multiply-adds: R, dF_S and dW; the column
           sums for db. */
        *flops += 6.0 * B * Ds * Dt + B * Dt;
        /* F_S again (dW), W twice, dW, b, db, R written, read, dR written
           and read by two GEMMs and the column sums. */
        *bytes += 4.0 * (B * Ds + 3.0 * Ds * Dt + 2.0 * Dt + 6.0 * B * Dt);
    }
    kdcl_pu_ce_cost(h, io, B, flops, bytes);
    return KDCL_OK;
}

static const struct kdcl_plugin feature = {
    KDCL_PLUGIN_HEAD,
    .name = "feature",
    .family = "feature",
    .summary = "FitNets hints: weight * MSE(F_T, r(F_S)), r = identity or "
               "a trainable linear regressor",
    .citation = "survey eqs. 1.2.1-1.2.2; Romero et al. 2015 (FitNets)",
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
    .trainable = trainable,
    .cost = cost,
};

KDCL_PLUGIN_DEFINE(feature, feature)
