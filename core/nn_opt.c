/*
 * core/nn_opt.c - optimizers (SGD with momentum, Nesterov and weight
 * decay; Adam) with PyTorch's update rules, and learning-rate schedules.
 * State (momentum, moments) lives on the device, one buffer per updated
 * tensor, found by the tensor's address.
 */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    const kdcl_tensor *key;
    kdcl_tensor *m, *v;
    int steps;
};

struct kdcl__opt {
    kdcl_context *ctx;
    struct kdcl__opt_spec spec;
    struct slot *slots;
    size_t n, cap;
    int64_t t; /* Adam's step count, from 1 */
};

int kdcl__opt_init(kdcl_context *ctx, const struct kdcl__opt_spec *spec,
                   struct kdcl__opt **out)
{
    struct kdcl__opt *o = calloc(1, sizeof *o);
    *out = NULL;
    if (!o)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    o->ctx = ctx;
    o->spec = *spec;
    o->t = 1;
    *out = o;
    return KDCL_OK;
}

void kdcl__opt_free(struct kdcl__opt *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++) {
        kdcl_tensor_free(o->slots[i].m);
        kdcl_tensor_free(o->slots[i].v);
    }
    free(o->slots);
    free(o);
}

static struct slot *find_slot(struct kdcl__opt *o, const kdcl_tensor *value,
                              int *status)
{
    struct slot *s;
    int64_t n = kdcl_tensor_numel(value);
    *status = KDCL_OK;
    for (size_t i = 0; i < o->n; i++)
        if (o->slots[i].key == value)
            return &o->slots[i];
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 16;
        void *grow = realloc(o->slots, cap * sizeof *o->slots);
        if (!grow) {
            *status = kdcl__error(o->ctx, KDCL_ENOMEM, "out of memory");
            return NULL;
        }
        o->slots = grow;
        o->cap = cap;
    }
    s = &o->slots[o->n];
    memset(s, 0, sizeof *s);
    s->key = value;
    *status = kdcl_tensor_init(o->ctx, KDCL_DTYPE_F32, 1, &n, &s->m);
    if (!*status)
        *status = kdcl_tensor_fill(s->m, 0.0);
    if (!*status && o->spec.kind == KDCL__OPT_ADAM) {
        *status = kdcl_tensor_init(o->ctx, KDCL_DTYPE_F32, 1, &n, &s->v);
        if (!*status)
            *status = kdcl_tensor_fill(s->v, 0.0);
    }
    if (*status) {
        kdcl_tensor_free(s->m);
        kdcl_tensor_free(s->v);
        return NULL;
    }
    o->n++;
    return s;
}

int kdcl__opt_step(struct kdcl__opt *o, kdcl_tensor *value,
                   const kdcl_tensor *grad, double lr)
{
    const struct kdcl__opt_spec *sp = &o->spec;
    struct slot *s;
    int status;
    size_t n = (size_t)kdcl_tensor_numel(value);

    if (kdcl_tensor_numel(grad) != (int64_t)n)
        return kdcl__error(o->ctx, KDCL_ESHAPE,
                           "optimizer: gradient and value sizes differ");
    s = find_slot(o, value, &status);
    if (!s)
        return status;
    if (kdcl__host_layers_wanted(o->ctx)) {
        status = sp->kind == KDCL__OPT_SGD
                     ? kdcl__host_sgd(o->ctx, value, grad, s->m, n, (float)lr,
                                      (float)sp->momentum,
                                      (float)sp->weight_decay, sp->nesterov,
                                      s->steps == 0)
                     : kdcl__host_adam(
                           o->ctx, value, grad, s->m, s->v, n, (float)lr,
                           (float)sp->beta1, (float)sp->beta2,
                           (float)sp->eps, (float)sp->weight_decay,
                           (float)(1.0 - pow(sp->beta1, (double)o->t)),
                           (float)(1.0 - pow(sp->beta2, (double)o->t)));
    } else if (sp->kind == KDCL__OPT_SGD) {
        struct kdcl_arg a[] = {
            KDCL_A_TENSOR(value),     KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(s->m),      KDCL_A_I32((int32_t)n),
            KDCL_A_F32((float)lr),    KDCL_A_F32((float)sp->momentum),
            KDCL_A_F32((float)sp->weight_decay),
            KDCL_A_I32(sp->nesterov), KDCL_A_I32(s->steps == 0)};
        status = kdcl__nn_launch(o->ctx, KDCL__NN_SGD, n, 9, a);
    } else {
        double bc1 = 1.0 - pow(sp->beta1, (double)o->t);
        double bc2 = 1.0 - pow(sp->beta2, (double)o->t);
        struct kdcl_arg a[] = {
            KDCL_A_TENSOR(value),  KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(s->m),   KDCL_A_TENSOR(s->v),
            KDCL_A_I32((int32_t)n), KDCL_A_F32((float)lr),
            KDCL_A_F32((float)sp->beta1), KDCL_A_F32((float)sp->beta2),
            KDCL_A_F32((float)sp->eps),
            KDCL_A_F32((float)sp->weight_decay), KDCL_A_F32((float)bc1),
            KDCL_A_F32((float)bc2)};
        status = kdcl__nn_launch(o->ctx, KDCL__NN_ADAM, n, 12, a);
    }
    if (!status)
        s->steps++;
    return status;
}

void kdcl__opt_next(struct kdcl__opt *o)
{
    o->t++;
}

double kdcl__sched_lr(const struct kdcl__sched *s, int64_t epoch)
{
    switch (s->kind) {
    case KDCL__SCHED_STEP:
        return s->base_lr
               * pow(s->gamma, (double)(s->step_size > 0
                                            ? epoch / s->step_size
                                            : 0));
    case KDCL__SCHED_COSINE:
        if (s->total <= 1)
            return s->base_lr;
        return s->min_lr
               + 0.5 * (s->base_lr - s->min_lr)
                     * (1.0 + cos(M_PI * (double)epoch
                                  / (double)(s->total)));
    default:
        return s->base_lr;
    }
}
