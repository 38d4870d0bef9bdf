/*
 * plugins/multiteacher/multiteacher.c - multi-teacher KD (survey eq.
 * 3.4.2.1), exactly as LOSSES.md `multiteacher` defines it:
 *   L = alpha * CE(z_s, y) + (1 - alpha) * T^2 (1/B) sum_b sum_m w_bm
 *       KL(softmax_T(z_m,b) || softmax_T(z_s,b)),
 * w_bm = 1/M (weighting=uniform) or softmax over m of -CE(z_m,b, y_b)
 * (weighting=confidence, constants), or L = L_KD without labels.  The
 * teachers are the inputs teacher.0.logits, teacher.1.logits, ...; forward
 * and backward are one fused pass over the logits (see multiteacher.cl).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "multiteacher_cl.h"

/* Teachers per kernel launch (MT_K in multiteacher.cl). */
#define MT_K 4
/* How far past the last teacher found to look for a gap in the indices. */
#define MT_GAP_PROBE 64

enum { P_TEMPERATURE, P_ALPHA, P_WEIGHTING };
enum { W_UNIFORM, W_CONFIDENCE };

static const struct kdcl_param_desc params[] = {
    {"temperature", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN,
     "4", 0.0, 0.0, NULL, "softmax temperature T > 0"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.1",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs labels); 1 - alpha weighs KD"},
    {"weighting", KDCL_PARAM_ENUM, 0, "uniform", 0.0, 0.0,
     "uniform|confidence",
     "teacher weights: 1/M, or per row softmax over teachers of -CE "
     "(needs labels)"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits"},
    {"teacher.*.logits", KDCL_INPUT_REQUIRED, 0, "[B,C]",
     "teacher logits: teacher.0.logits, teacher.1.logits, ... (M >= 1)"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); enable the CE term; needed by "
     "weighting=confidence"},
};

static const char *const terms[] = {"ce", "kd"};

enum { K_ROWS, K_CE, K_FINISH, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {"mt_rows", "mt_ce",
                                                    "mt_finish"};

struct state {
    const struct kdcl_host *h;
    double t, alpha;
    int alpha_set;
    int weighting;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    kdcl_tensor *rows; /* [B,2] per-row values */
    kdcl_tensor *ce;   /* [B,M] teacher CE, for chunked confidence weights */
    const kdcl_tensor **tt; /* the teachers of the current call */
    size_t n_tt;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    s->h->tensor_free(s->rows);
    s->h->tensor_free(s->ce);
    s->h->free((void *)s->tt);
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
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    s->weighting = (int)h->param_i64(p, P_WEIGHTING);
    /* CPU devices run a work-group as a loop: fewer items, fewer barriers
       per row; GPUs want a full group per row. */
    status = kdcl_pu_build_wg(h, multiteacher_cl, NULL, N_KERNELS,
                              kernel_names, s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* Find teacher.0.logits, teacher.1.logits, ... into s->tt; check shapes. */
static int find_teachers(struct state *s, const kdcl_io *io,
                         const kdcl_tensor *zs, size_t *n_out)
{
    const struct kdcl_host *h = s->h;
    char name[64];
    size_t m;
    int status;

    for (m = 0;; m++) {
        const kdcl_tensor *t;
        snprintf(name, sizeof name, "teacher.%zu.logits", m);
        t = h->io_input(io, name);
        if (!t)
            break;
        if ((status = kdcl_pu_same_shape(h, zs, "student.logits", t, name)))
            return status;
        if (m == s->n_tt) {
            size_t cap = s->n_tt ? 2 * s->n_tt : 8;
            const kdcl_tensor **grow = h->alloc(cap * sizeof *grow);
            if (!grow)
                return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
            for (size_t i = 0; i < s->n_tt; i++)
                grow[i] = s->tt[i];
            h->free((void *)s->tt);
            s->tt = grow;
            s->n_tt = cap;
        }
        s->tt[m] = t;
    }
    if (m == 0)
        return h->error(h->ctx, KDCL_EMISSING,
                        "missing input teacher.0.logits (the teachers are "
                        "teacher.0.logits, teacher.1.logits, ...)");
    /* The plugin cannot list the inputs, so a gap would silently drop the
       teachers after it: look a little further. */
    for (size_t g = m + 1; g <= m + MT_GAP_PROBE; g++) {
        snprintf(name, sizeof name, "teacher.%zu.logits", g);
        if (h->io_input(io, name))
            return h->error(h->ctx, KDCL_EMISSING,
                            "input %s is given but teacher.%zu.logits is "
                            "missing (teachers are numbered from 0 without "
                            "gaps)",
                            name, m);
    }
    *n_out = m;
    return KDCL_OK;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *zs, *y;
    kdcl_tensor *grad;
    int64_t B = 0, C = 0;
    size_t M = 0;
    int confidence = s->weighting == W_CONFIDENCE, ce_in_buf;
    double a;
    int status;

    if ((status = kdcl_pu_need(h, io, "student.logits", &zs))
        || (status = kdcl_pu_2d(h, zs, "student.logits", &B, &C))
        || (status = find_teachers(s, io, zs, &M)))
        return status;
    /* Ahead of the alpha check, which also needs labels: its message
       comes first when both apply. */
    if (confidence && !h->io_input(io, "labels"))
        return h->error(h->ctx, KDCL_EMISSING,
                        "weighting=confidence weighs the teachers by their "
                        "cross-entropy, which needs labels: give labels or "
                        "use weighting=uniform");
    if ((status = kdcl_pu_opt_labels(h, io, B, s->alpha, s->alpha_set, &y)))
        return status;
    if (M > (size_t)INT32_MAX / 2)
        return h->error(h->ctx, KDCL_EINVAL, "too many teachers (%zu)", M);
    ce_in_buf = confidence && M > MT_K;
    if ((status = kdcl_pu_scratch(h, &s->rows, 2 * B))
        || (ce_in_buf
            && (status = kdcl_pu_scratch(h, &s->ce, B * (int64_t)M))))
        return status;
    grad = h->io_grad(io, "student.logits");
    /* Without labels the KD term stands alone (LOSSES.md). */
    a = y ? s->alpha : 0.0;

    /* More teachers than one launch takes: their CE first, for the
       confidence weights of every chunk. */
    for (size_t m = 0; ce_in_buf && m < M; m++) {
        const size_t g = (size_t)B * s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->tt[m]),   KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(s->ce),      KDCL_A_I32((int32_t)C),
            KDCL_A_I32((int32_t)m),    KDCL_A_I32((int32_t)M),
        };
        status = h->launch(h->ctx, s->k[K_CE], 1, &g, &s->wg,
                           sizeof args / sizeof args[0], args);
        if (status)
            return status;
    }
    for (size_t m0 = 0; m0 < M; m0 += MT_K) {
        const size_t nk = M - m0 < MT_K ? M - m0 : MT_K;
        const size_t g = (size_t)B * s->wg;
        const kdcl_tensor *t[MT_K];
        for (size_t i = 0; i < MT_K; i++)
            t[i] = s->tt[m0 + (i < nk ? i : 0)];
        {
            const struct kdcl_arg args[] = {
                KDCL_A_TENSOR(zs),
                KDCL_A_TENSOR(y),
                KDCL_A_TENSOR(t[0]),
                KDCL_A_TENSOR(t[1]),
                KDCL_A_TENSOR(t[2]),
                KDCL_A_TENSOR(t[3]),
                KDCL_A_TENSOR(ce_in_buf ? s->ce : NULL),
                KDCL_A_TENSOR(grad),
                KDCL_A_TENSOR(s->rows),
                KDCL_A_I32((int32_t)C),
                KDCL_A_F32((float)(1.0 / s->t)),
                KDCL_A_I32((int32_t)m0),
                KDCL_A_I32((int32_t)nk),
                KDCL_A_I32((int32_t)M),
                KDCL_A_I32(confidence),
                KDCL_A_I32(ce_in_buf),
                KDCL_A_F32((float)((1.0 - a) * s->t / (double)B)),
                KDCL_A_F32((float)(a / (double)B)),
                KDCL_A_I32(y != NULL),
                KDCL_A_I32(grad != NULL),
            };
            status = h->launch(h->ctx, s->k[K_ROWS], 1, &g, &s->wg,
                               sizeof args / sizeof args[0], args);
            if (status)
                return status;
        }
    }
    {
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(s->rows),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)(s->t * s->t)),
            KDCL_A_F32((float)s->alpha),
            KDCL_A_I32(y != NULL),
        };
        return h->launch(h->ctx, s->k[K_FINISH], 1, &s->wg, &s->wg,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin multiteacher = {
    KDCL_PLUGIN_HEAD,
    .name = "multiteacher",
    .family = "multi-teacher",
    .summary = "multi-teacher KD: alpha*CE + (1-alpha)*T^2*sum_m w_m "
               "KL(p_m||p_s)",
    .citation = "survey eq. 3.4.2.1 (multi-teacher distillation)",
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

KDCL_PLUGIN_DEFINE(multiteacher, multiteacher)
