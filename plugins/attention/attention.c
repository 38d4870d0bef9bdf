/*
 * plugins/attention/attention.c - activation-based attention transfer of
 * Zagoruyko & Komodakis 2017 (survey eq. 3.1.3.1), exactly as LOSSES.md
 * `attention` defines it: for each student/teacher pair K of feature maps
 * [B,C,H,W], f(A) = v / max(||v||, 1e-12) with v = mean_c |A|^p flattened
 * to [B,H*W], and
 *   L_KD = weight * sum_K mean over B*H*W of (f(A_S) - f(A_T))^2,
 *   L = alpha * CE(student.logits, labels) + (1 - alpha) * L_KD
 * (L = L_KD without labels).  Forward and backward are fused: one
 * kernel per pair reads both maps and writes the student's gradient (a
 * work-group per row on GPUs, a vectorised work-item per row on CPUs; see
 * attention.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <limits.h>
#include <stdio.h>

#include "attention_cl.h"

/* Pairs are found under the plain names and the indices 0 .. MAX_PAIRS-1. */
#define MAX_PAIRS 64

enum { P_P, P_ALPHA, P_WEIGHT };

static const struct kdcl_param_desc params[] = {
    {"p", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN, "2",
     0.0, 0.0, NULL,
     "exponent p > 0 of the attention map mean_c |A|^p (|A|: see docs)"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels); "
     "1 - alpha weighs the attention term"},
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1000", 0.0, 0.0, NULL,
     "factor on the attention term (RepDistiller's beta)"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.feat*", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,Cs,H,W]",
     "student feature maps: student.feat, or student.feat.0, .1, ..."},
    {"teacher.feat*", KDCL_INPUT_REQUIRED, 0, "[B,Ct,H,W]",
     "teacher feature maps, one per student map, same B, H, W"},
    {"student.logits", KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits for the cross-entropy term"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); with student.logits enables the CE term"},
};

static const char *const terms[] = {"ce", "kd"};

enum { K_ROWS, K_FINISH, K_CE, K_ROWS_VEC, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {
    "attention_rows", "attention_finish", "kdcl_ce_rows",
    "attention_rows_vec"};

struct pair {
    char sname[32], tname[32];
    const kdcl_tensor *s, *t;
    kdcl_tensor *g;
    int64_t Cs, Ct, P;
};

struct state {
    const struct kdcl_host *h;
    double p, alpha, weight;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    int vec; /* CPU device: one row per work-item, float16 vectors */
    kdcl_tensor *rows, *ce_rows, *vs, *vt;
    struct pair pairs[MAX_PAIRS + 1];
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->rows);
    s->h->tensor_free(s->ce_rows);
    s->h->tensor_free(s->vs);
    s->h->tensor_free(s->vt);
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
    s->p = h->param_f64(p, P_P);
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    s->weight = h->param_f64(p, P_WEIGHT);
    /* As hinton: GPUs get a work-group per row; CPU devices run a
       work-group as a loop over its items, so there each row is one
       vectorised item. */
    s->vec = dev->type == KDCL_DEVICE_CPU;
    if (s->p == 2.0)
        snprintf(opts, sizeof opts, " -DAT_P2=1");
    else if (s->p <= 8.0 && s->p == (double)(int)s->p)
        snprintf(opts, sizeof opts, " -DAT_PINT=%d", (int)s->p);
    else
        opts[0] = '\0';
    status = kdcl_pu_build_wg(h, attention_cl, opts, N_KERNELS, kernel_names,
                              s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* Require a 4-D [B,C,H,W] map with every axis >= 1 and a row (C*H*W)
   small enough for the kernels' int sizes. */
static int check_map(const struct kdcl_host *h, const kdcl_tensor *t,
                     const char *name, const char *sym)
{
    char sh[128];
    int ok = h->tensor_ndim(t) == 4;
    for (int i = 0; ok && i < 4; i++)
        ok = h->tensor_dim(t, i) >= 1;
    if (ok)
        ok = h->tensor_dim(t, 1) * h->tensor_dim(t, 2) * h->tensor_dim(t, 3)
             <= INT_MAX;
    if (ok)
        return KDCL_OK;
    kdcl_pu_shape_str(h, t, sh, sizeof sh);
    return h->error(h->ctx, KDCL_ESHAPE,
                    "%s must be 4-D [B,%s,H,W] with every axis >= 1, got %s",
                    name, sym, sh);
}

/* Find the pairs (plain names first, then .0, .1, ...) and check them. */
static int find_pairs(struct state *s, const kdcl_io *io, size_t *n_out,
                      int64_t *B_out)
{
    const struct kdcl_host *h = s->h;
    size_t n = 0;
    int64_t B = 0;
    const char *first = NULL;
    char ss[128], ts[128];

    for (int k = -1; k < MAX_PAIRS; k++) {
        struct pair *q = &s->pairs[n];
        int status;
        if (k < 0) {
            snprintf(q->sname, sizeof q->sname, "student.feat");
            snprintf(q->tname, sizeof q->tname, "teacher.feat");
        } else {
            snprintf(q->sname, sizeof q->sname, "student.feat.%d", k);
            snprintf(q->tname, sizeof q->tname, "teacher.feat.%d", k);
        }
        q->s = h->io_input(io, q->sname);
        q->t = h->io_input(io, q->tname);
        if (!q->s && !q->t)
            continue;
        if (!q->s || !q->t)
            return h->error(h->ctx, KDCL_EMISSING,
                            "missing input %s (its pair %s is given)",
                            q->s ? q->tname : q->sname,
                            q->s ? q->sname : q->tname);
        if ((status = check_map(h, q->s, q->sname, "Cs"))
            || (status = check_map(h, q->t, q->tname, "Ct")))
            return status;
        kdcl_pu_shape_str(h, q->s, ss, sizeof ss);
        kdcl_pu_shape_str(h, q->t, ts, sizeof ts);
        if (h->tensor_dim(q->s, 2) != h->tensor_dim(q->t, 2)
            || h->tensor_dim(q->s, 3) != h->tensor_dim(q->t, 3))
            return h->error(h->ctx, KDCL_ESHAPE,
                            "%s %s and %s %s differ in H, W (a pair's "
                            "attention maps must have the same size)",
                            q->sname, ss, q->tname, ts);
        if (h->tensor_dim(q->s, 0) != h->tensor_dim(q->t, 0))
            return h->error(h->ctx, KDCL_ESHAPE, "%s %s and %s %s differ in B",
                            q->sname, ss, q->tname, ts);
        if (!first) {
            first = q->sname;
            B = h->tensor_dim(q->s, 0);
        } else if (h->tensor_dim(q->s, 0) != B) {
            return h->error(h->ctx, KDCL_ESHAPE,
                            "%s %s has B = %lld but %s has B = %lld", q->sname,
                            ss, (long long)h->tensor_dim(q->s, 0), first,
                            (long long)B);
        }
        q->Cs = h->tensor_dim(q->s, 1);
        q->Ct = h->tensor_dim(q->t, 1);
        q->P = h->tensor_dim(q->s, 2) * h->tensor_dim(q->s, 3);
        q->g = h->io_grad(io, q->sname);
        n++;
    }
    if (!n)
        return h->error(h->ctx, KDCL_EMISSING,
                        "missing input student.feat (or student.feat.0, "
                        "student.feat.1, ... up to .%d) with its teacher.feat",
                        MAX_PAIRS - 1);
    *n_out = n;
    *B_out = B;
    return KDCL_OK;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *zs, *y;
    kdcl_tensor *gz;
    size_t n_pairs = 0;
    int64_t B = 0, Bz = 0, C = 0, maxp = 1;
    int has_ce, status;
    double a;

    if ((status = find_pairs(s, io, &n_pairs, &B)))
        return status;
    zs = h->io_input(io, "student.logits");
    y = h->io_input(io, "labels");
    if (zs) {
        if ((status = kdcl_pu_2d(h, zs, "student.logits", &Bz, &C)))
            return status;
        if (Bz != B)
            return h->error(h->ctx, KDCL_ESHAPE,
                            "student.logits has %lld rows but %s has B = "
                            "%lld",
                            (long long)Bz, s->pairs[0].sname, (long long)B);
    }
    if ((status = kdcl_pu_task_labels(h, zs, y, B, s->alpha, s->alpha_set)))
        return status;
    has_ce = y != NULL;
    /* Without labels the attention term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;
    for (size_t i = 0; i < n_pairs; i++)
        if (s->pairs[i].P > maxp)
            maxp = s->pairs[i].P;
    if ((status = kdcl_pu_scratch(h, &s->rows, (int64_t)n_pairs * B))
        || (status = kdcl_pu_scratch(h, &s->ce_rows, B))
        || (status = kdcl_pu_scratch(h, &s->vs, B * maxp))
        || (status = kdcl_pu_scratch(h, &s->vt, B * maxp)))
        return status;

    for (size_t i = 0; i < n_pairs; i++) {
        const struct pair *q = &s->pairs[i];
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(q->s),
            KDCL_A_TENSOR(q->t),
            KDCL_A_TENSOR(q->g),
            KDCL_A_TENSOR(s->vs),
            KDCL_A_TENSOR(s->vt),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)q->Cs),
            KDCL_A_I32((int32_t)q->Ct),
            KDCL_A_I32((int32_t)q->P),
            KDCL_A_F32((float)s->p),
            KDCL_A_F32((float)(2.0 * s->weight * (1.0 - a)
                               / ((double)B * (double)q->P))),
            KDCL_A_I32((int32_t)((int64_t)i * B)),
            KDCL_A_I32(q->g != NULL),
        };
        const struct kdcl_arg vargs[] = {
            KDCL_A_TENSOR(q->s),
            KDCL_A_TENSOR(q->t),
            KDCL_A_TENSOR(q->g),
            KDCL_A_TENSOR(s->vs),
            KDCL_A_TENSOR(s->vt),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)B),
            KDCL_A_I32((int32_t)q->Cs),
            KDCL_A_I32((int32_t)q->Ct),
            KDCL_A_I32((int32_t)q->P),
            KDCL_A_F32((float)s->p),
            KDCL_A_F32((float)(2.0 * s->weight * (1.0 - a)
                               / ((double)B * (double)q->P))),
            KDCL_A_I32((int32_t)((int64_t)i * B)),
            KDCL_A_I32(q->g != NULL),
        };
        const size_t gv = (size_t)B;
        if (s->vec)
            status = h->launch(h->ctx, s->k[K_ROWS_VEC], 1, &gv, NULL,
                               sizeof vargs / sizeof vargs[0], vargs);
        else
            status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &l,
                               sizeof args / sizeof args[0], args);
        if (status)
            return status;
    }
    gz = zs ? h->io_grad(io, "student.logits") : NULL;
    /* Logits without labels do not enter the loss: zero gradient. */
    if ((status = kdcl_pu_ce_or_zero(h, s->k[K_CE], has_ce, zs, y, gz,
                                     s->ce_rows, B, C,
                                     (float)(a / (double)B))))
        return status;
    {
        const size_t g = s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(s->ce_rows),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)((int64_t)n_pairs * B)),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)s->weight),
            KDCL_A_F32((float)s->alpha),
            KDCL_A_I32(has_ce),
        };
        return h->launch(h->ctx, s->k[K_FINISH], 1, &g, &l,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin attention = {
    KDCL_PLUGIN_HEAD,
    .name = "attention",
    .family = "attention",
    .summary = "attention transfer: weight * sum_K mean (f(A_S) - f(A_T))^2, "
               "f = normalised mean_c |A|^p",
    .citation = "survey eq. 3.1.3.1; Zagoruyko & Komodakis 2017",
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

KDCL_PLUGIN_DEFINE(attention, attention)
