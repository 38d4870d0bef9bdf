/*
 * plugins/dkd/dkd.c - decoupled knowledge distillation of Zhao et al. 2022
 * (a response-based loss; its CE + KD combination is survey eq. 1.1.5),
 * exactly as LOSSES.md `dkd` defines it:
 *   L = alpha * CE(z_s, y) + (1 - alpha) * (tckd_w * TCKD + nckd_w * NCKD),
 * TCKD the binary KL of [p_y, 1 - p_y] and NCKD the KL of the softmaxes
 * over the non-target classes, both at temperature T, times T^2, batchmean.
 * Labels are required (they pick the target class).  Forward and backward
 * are one fused pass over the logits (see dkd.cl).  `warmup` (an addition
 * to LOSSES.md, off by default) ramps the DKD term in over the first
 * epochs as mdistiller's DKD does: its weights are multiplied by
 * min(e / warmup, 1) in epoch e, counted from 1 (epoch ends arrive as
 * KDCL_EVENT_EPOCH_END).
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <stdio.h>

#include "dkd_cl.h"

enum { P_TEMPERATURE, P_TCKD_WEIGHT, P_NCKD_WEIGHT, P_ALPHA, P_WARMUP };

static const struct kdcl_param_desc params[] = {
    {"temperature", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN,
     "4", 0.0, 0.0, NULL, "softmax temperature T > 0"},
    {"tckd_weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "weight of the target-class term TCKD (mdistiller alpha)"},
    {"nckd_weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "8", 0.0, 0.0, NULL,
     "weight of the non-target-class term NCKD (mdistiller beta)"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term; 1 - alpha weighs DKD"},
    {"warmup", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "0", 0.0, 0.0, NULL,
     "epochs over which the DKD term ramps in, x min(epoch / warmup, 1) "
     "(0: off; mdistiller uses 20)"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits"},
    {"teacher.logits", KDCL_INPUT_REQUIRED, 0, "[B,C]", "teacher logits"},
    {"labels", KDCL_INPUT_REQUIRED | KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0,
     "[B]", "class labels in [0, C): the target class of each row"},
};

static const char *const terms[] = {"ce", "kd", "tckd", "nckd"};

enum { K_ROWS, K_FINISH, N_KERNELS };
static const char *const kernel_names[N_KERNELS] = {"dkd_rows",
                                                    "dkd_finish"};

struct state {
    const struct kdcl_host *h;
    double t, tckd_w, nckd_w, alpha, warmup;
    int64_t epochs_done; /* KDCL_EVENT_EPOCH_END so far */
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
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
    struct state *s = h->alloc_zero(1, sizeof *s);
    int status;

    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->t = h->param_f64(p, P_TEMPERATURE);
    s->tckd_w = h->param_f64(p, P_TCKD_WEIGHT);
    s->nckd_w = h->param_f64(p, P_NCKD_WEIGHT);
    s->alpha = h->param_f64(p, P_ALPHA);
    s->warmup = h->param_f64(p, P_WARMUP);
    /* CPU devices run a work-group as a loop: fewer items, fewer barriers
       per row; GPUs want a full group per row. */
    status = kdcl_pu_build_wg(h, dkd_cl, NULL, N_KERNELS, kernel_names,
                              s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/* The warm-up factor of the current epoch (1 when off). */
static double ramp(const struct state *s)
{
    const double f = (double)(s->epochs_done + 1) / s->warmup;
    return s->warmup > 0 && f < 1 ? f : 1;
}

static int event(void *p, int ev, int64_t index)
{
    struct state *s = p;
    if (ev == KDCL_EVENT_EPOCH_END)
        s->epochs_done = index + 1;
    return KDCL_OK;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *zs, *zt, *y;
    kdcl_tensor *grad;
    int64_t B = 0, C = 0;
    const double tw = s->tckd_w * ramp(s), nw = s->nckd_w * ramp(s);
    int status;

    if ((status = kdcl_pu_need(h, io, "student.logits", &zs))
        || (status = kdcl_pu_need(h, io, "teacher.logits", &zt))
        || (status = kdcl_pu_need(h, io, "labels", &y))
        || (status = kdcl_pu_2d(h, zs, "student.logits", &B, &C))
        || (status = kdcl_pu_same_shape(h, zs, "student.logits", zt,
                                        "teacher.logits"))
        || (status = kdcl_pu_labels(h, y, B)))
        return status;
    if ((status = kdcl_pu_scratch(h, &s->rows, 3 * B)))
        return status;
    grad = h->io_grad(io, "student.logits");
    {
        const size_t g = (size_t)B * s->wg, l = s->wg;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(y),
            KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(s->rows),
            KDCL_A_I32((int32_t)C),
            KDCL_A_F32((float)(1.0 / s->t)),
            KDCL_A_F32((float)(s->alpha / (double)B)),
            KDCL_A_F32((float)((1.0 - s->alpha) * s->t / (double)B)),
            KDCL_A_F32((float)tw),
            KDCL_A_F32((float)nw),
            KDCL_A_I32(grad != NULL),
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
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)B),
            KDCL_A_F32((float)(s->t * s->t)),
            KDCL_A_F32((float)s->alpha),
            KDCL_A_F32((float)tw),
            KDCL_A_F32((float)nw),
        };
        return h->launch(h->ctx, s->k[K_FINISH], 1, &g, &l,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin dkd = {
    KDCL_PLUGIN_HEAD,
    .name = "dkd",
    .family = "response",
    .summary = "decoupled KD: alpha*CE + (1-alpha)*(w_t*TCKD + w_n*NCKD)",
    .citation = "survey eqs. 1.1.4-1.1.5 (CE + KD); Zhao, Cui, Song, Qiu, "
                "Liang 2022, Decoupled Knowledge Distillation",
    .version = "1.1.0",
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
    .event = event,
};

KDCL_PLUGIN_DEFINE(dkd, dkd)
