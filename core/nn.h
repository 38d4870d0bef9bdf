/*
 * core/nn.h - the training engine's layers, models and optimizers
 * (internal).  Tensors are row-major, activations NCHW with the batch
 * first.  Every layer computes forward and backward on the device; the
 * host only sequences launches.
 */
#ifndef KDCL_NN_H
#define KDCL_NN_H

#include "internal.h"

/* Layer kinds.  The names are the YAML `type` values. */
enum kdcl__layer_kind {
    KDCL__L_LINEAR,    /* linear: in -> out, weight [out, in], bias [out] */
    KDCL__L_CONV2D,    /* conv2d: weight [oc, ic, k, k], bias [oc] */
    KDCL__L_RELU,      /* relu */
    KDCL__L_MAXPOOL,   /* maxpool2d: k, stride (default k), padding */
    KDCL__L_AVGPOOL,   /* avgpool2d: k, stride (default k), padding 0 */
    KDCL__L_GAP,       /* global average pool: [B,C,H,W] -> [B,C] */
    KDCL__L_FLATTEN,   /* flatten: [B, ...] -> [B, prod(...)] */
    KDCL__L_DROPOUT,   /* dropout: p */
    KDCL__L_BATCHNORM, /* batchnorm: over C of [B,C] or [B,C,H,W] */
    KDCL__L_COUNT
};

/* The YAML / safetensors name of a kind ("linear", "conv2d", ...). */
const char *kdcl__layer_kind_name(int kind);
int kdcl__layer_kind_parse(const char *name);

/* Hyperparameters of one layer as written in a model spec. */
struct kdcl__layer_spec {
    int kind;
    int64_t out;         /* linear: out features; conv2d: out channels */
    int64_t kernel;      /* conv2d, pools: kernel size (square) */
    int64_t stride;      /* conv2d (default 1), pools (default kernel) */
    int64_t padding;     /* conv2d, maxpool (default 0) */
    double p;            /* dropout probability, in [0, 1) */
    double eps;          /* batchnorm epsilon (default 1e-5) */
    double momentum;     /* batchnorm running-stat momentum (default 0.1) */
    char name[64];       /* state-dict prefix; default "<index>" */
    char tap[64];        /* expose the output as this input name, or "" */
};

struct kdcl__layer;

/*
 * A sequential model.  Layers own their parameters and their per-batch
 * buffers (sized for the largest batch seen).  The model owns layers.
 */
struct kdcl__model {
    kdcl_context *ctx;
    struct kdcl__layer **layers;
    size_t n_layers;
    uint32_t in_ndim;          /* per-sample input rank (e.g. 3: C,H,W) */
    int64_t in_shape[3];
    int64_t batch_cap;         /* buffers are sized for this many rows */
    uint64_t seed;             /* dropout stream and initialisation */
    uint64_t step;             /* forward calls in training mode */
    int input_grad;            /* backward also computes d loss / d input */
};

/* A host layer's geometry: batch b, input [c, h, w], oc output channels,
   square kernel k, stride s, padding p, output [oc, oh, ow] (Linear: b, c
   in and oc out features, the rest unused). */
struct kdcl__conv_geom {
    int64_t b, c, h, w, oc, k, s, p, oh, ow;
};

/* Whether the training engine's layers, loss, gather and optimizer run on
   the host path (core/host.c, core/host_ops.c): on CPU devices with a
   host BLAS, unless KDCL_LAYERS=kernel or checker mode; KDCL_LAYERS=host
   forces it. */
bool kdcl__host_layers_wanted(const kdcl_context *ctx);
/* y [b, oc, oh, ow] = conv(x [b, c, h, w], w [oc, c, k, k]) + bias [oc]. */
int kdcl__host_conv_forward(kdcl_context *ctx,
                            const struct kdcl__conv_geom *g,
                            const kdcl_tensor *x, const kdcl_tensor *w,
                            const kdcl_tensor *bias, kdcl_tensor *y);
/* gw, gb (overwritten) and, unless gx is NULL, gx (overwritten) from the
   output gradient gy. */
int kdcl__host_conv_backward(kdcl_context *ctx,
                             const struct kdcl__conv_geom *g,
                             const kdcl_tensor *x, const kdcl_tensor *w,
                             const kdcl_tensor *gy, kdcl_tensor *gw,
                             kdcl_tensor *gb, kdcl_tensor *gx);

/* y [b, oc] = x [b, c] w^T + bias, w [oc, c] (geometry: b, c, oc). */
int kdcl__host_linear_forward(kdcl_context *ctx,
                              const struct kdcl__conv_geom *g,
                              const kdcl_tensor *x, const kdcl_tensor *w,
                              const kdcl_tensor *bias, kdcl_tensor *y);
/* gw = gy^T x, gb = column sums of gy (rows in order), and unless gx is
   NULL gx = gy w (all overwritten). */
int kdcl__host_linear_backward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, const kdcl_tensor *w,
                               const kdcl_tensor *gy, kdcl_tensor *gw,
                               kdcl_tensor *gb, kdcl_tensor *gx);

/* The small operations beside them on the same path (core/host_ops.c),
   each computing what its kernel computes.  n: elements; pooling
   geometry: b images of c channels [h, w] pooled to [oh, ow] by windows
   k, stride s, padding p; idx: i32, each window's maximum's offset in
   its plane. */
int kdcl__host_relu_forward(kdcl_context *ctx, const kdcl_tensor *x,
                            kdcl_tensor *y, size_t n);
int kdcl__host_relu_backward(kdcl_context *ctx, const kdcl_tensor *y,
                             const kdcl_tensor *gy, kdcl_tensor *gx,
                             size_t n);
int kdcl__host_maxpool_forward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, kdcl_tensor *y,
                               kdcl_tensor *idx);
int kdcl__host_maxpool_backward(kdcl_context *ctx,
                                const struct kdcl__conv_geom *g,
                                const kdcl_tensor *gy,
                                const kdcl_tensor *idx, kdcl_tensor *gx);
int kdcl__host_copy(kdcl_context *ctx, kdcl_tensor *dst,
                    const kdcl_tensor *src);
/* Softmax cross-entropy of R rows of C logits: rows[r] = lse - z[y],
   grad = scale (softmax - onehot), both 0 for label -100. */
int kdcl__host_ce_rows(kdcl_context *ctx, const kdcl_tensor *logits,
                       const kdcl_tensor *labels, kdcl_tensor *grad,
                       kdcl_tensor *rows, size_t R, size_t C, float scale);
/* x[r] = data[idx[r]] (rows of D floats), labels[r] = all_labels[idx[r]];
   idx is host memory. */
int kdcl__host_gather(kdcl_context *ctx, const kdcl_tensor *data,
                      const kdcl_tensor *all_labels, const int32_t *idx,
                      kdcl_tensor *x, kdcl_tensor *labels, size_t R,
                      size_t D);
/* correct[r] = (argmax of logits row r, the first on ties) == labels[r]. */
int kdcl__host_argmax_correct(kdcl_context *ctx, const kdcl_tensor *logits,
                              const kdcl_tensor *labels, kdcl_tensor *correct,
                              size_t R, size_t C);
int kdcl__host_sgd(kdcl_context *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                   kdcl_tensor *v, size_t n, float lr, float mu, float wd,
                   int nesterov, int first);
int kdcl__host_adam(kdcl_context *ctx, kdcl_tensor *w, const kdcl_tensor *g,
                    kdcl_tensor *m, kdcl_tensor *v, size_t n, float lr,
                    float b1, float b2, float eps, float wd, float bc1,
                    float bc2);

/* Average pooling without padding (windows k, stride s, count k*k), and
   its gradient. */
int kdcl__host_avgpool_forward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, kdcl_tensor *y);
int kdcl__host_avgpool_backward(kdcl_context *ctx,
                                const struct kdcl__conv_geom *g,
                                const kdcl_tensor *gy, kdcl_tensor *gx);
/* Global average pooling of planes of hw values, and its gradient. */
int kdcl__host_gap_forward(kdcl_context *ctx, const kdcl_tensor *x,
                           kdcl_tensor *y, size_t planes, size_t hw);
int kdcl__host_gap_backward(kdcl_context *ctx, const kdcl_tensor *gy,
                            kdcl_tensor *gx, size_t planes, size_t hw);
/* Inverted dropout with nn_dropout_fwd's mask (the same elements drop);
   y = a * b (dropout's backward); y += x (a tap's gradient). */
int kdcl__host_dropout_forward(kdcl_context *ctx, const kdcl_tensor *x,
                               kdcl_tensor *y, kdcl_tensor *mask, size_t n,
                               float p, uint64_t seed, uint64_t step);
int kdcl__host_mul(kdcl_context *ctx, const kdcl_tensor *a,
                   const kdcl_tensor *b, kdcl_tensor *y, size_t n);
int kdcl__host_add(kdcl_context *ctx, kdcl_tensor *y, const kdcl_tensor *x,
                   size_t n);
/* Batch normalisation of x [b, c, hw]: train mode (batch statistics,
   running ones updated) or eval mode (the running ones); stats holds
   (mean, 1/sqrt(var + eps)) per channel for the backward. */
struct kdcl__bn_geom {
    size_t b, c, hw;
    double eps, momentum;
};
int kdcl__host_batchnorm_forward(kdcl_context *ctx,
                                 const struct kdcl__bn_geom *g,
                                 const kdcl_tensor *x, kdcl_tensor *y,
                                 kdcl_tensor *stats, kdcl_tensor *run_mean,
                                 kdcl_tensor *run_var,
                                 const kdcl_tensor *gamma,
                                 const kdcl_tensor *beta, int train);
int kdcl__host_batchnorm_backward(kdcl_context *ctx,
                                  const struct kdcl__bn_geom *g,
                                  const kdcl_tensor *x,
                                  const kdcl_tensor *gy,
                                  const kdcl_tensor *stats,
                                  const kdcl_tensor *gamma,
                                  kdcl_tensor *dgamma, kdcl_tensor *dbeta,
                                  kdcl_tensor *gx);

/* Softmax cross-entropy over [R, C] logits against i32 labels, the mean
   over the batch (scale 1/R) into grad and the per-row losses into rows:
   on the host path where it is wanted, else kdcl_ce_rows. */
int kdcl__ce_rows(kdcl_context *ctx, const kdcl_tensor *logits,
                  const kdcl_tensor *labels, kdcl_tensor *grad,
                  kdcl_tensor *rows, int64_t R, int64_t C);

/* Build a model for per-sample input shape in (rank 1..3) from specs.
   Parameters are initialised as PyTorch does by default (kaiming-uniform
   weights with a = sqrt(5), uniform(+-1/sqrt(fan_in)) biases) from seed. */
int kdcl__model_init(kdcl_context *ctx, const struct kdcl__layer_spec *specs,
                     size_t n, uint32_t in_ndim, const int64_t *in_shape,
                     uint64_t seed, struct kdcl__model **out);
void kdcl__model_free(struct kdcl__model *m);

/* Forward a batch x [B, in_shape...] (f32).  train: batchnorm uses batch
   statistics and updates its running ones, dropout drops.  The output of
   the last layer is returned through *logits (owned by the model, valid
   until the next forward). */
int kdcl__model_forward(struct kdcl__model *m, const kdcl_tensor *x,
                        int64_t B, int train, const kdcl_tensor **logits);

/* Backward from dlogits [B, out] (f32) after a training forward.  Tap
   gradients set with kdcl__model_tap_grad are added where their layer's
   output flows.  Parameter gradients are overwritten. */
int kdcl__model_backward(struct kdcl__model *m, const kdcl_tensor *dlogits);

/* d loss / d input [B, in...] after a backward with m->input_grad set. */
const kdcl_tensor *kdcl__model_input_grad(const struct kdcl__model *m);

/* The output of the layer tapped as name (valid after forward), or NULL. */
const kdcl_tensor *kdcl__model_tap(const struct kdcl__model *m,
                                   const char *name);
/* A gradient buffer for tap name ([B, ...], owned by the model), to be
   filled by a plugin before kdcl__model_backward; NULL if no such tap. */
kdcl_tensor *kdcl__model_tap_grad(struct kdcl__model *m, const char *name);
/* Tap names, in layer order (valid as long as the model). */
size_t kdcl__model_tap_count(const struct kdcl__model *m);
const char *kdcl__model_tap_name(const struct kdcl__model *m, size_t i);

/* Every trainable parameter with its gradient and state-dict name
   ("<layer name>.weight"); i past the end returns KDCL_ENOTFOUND. */
int kdcl__model_param(const struct kdcl__model *m, size_t i,
                      const char **name, kdcl_tensor **value,
                      kdcl_tensor **grad);
/* Every tensor of the state dict (parameters and batchnorm buffers:
   running_mean, running_var, num_batches_tracked), PyTorch's names. */
int kdcl__model_state(const struct kdcl__model *m, size_t i,
                      const char **name, kdcl_tensor **value);
/* FLOPs of one training step at batch B: flops[0] Conv2d forward, [1]
   Conv2d backward, [2] Linear forward, [3] Linear backward. */
void kdcl__model_flops(const struct kdcl__model *m, int64_t B,
                       double flops[4]);
/* Number of output features of the model and parameters in all. */
int64_t kdcl__model_out_features(const struct kdcl__model *m);
int64_t kdcl__model_n_params(const struct kdcl__model *m);

/* ---------------------------------------------------------------------- */
/* Optimizers                                                              */

enum kdcl__opt_kind { KDCL__OPT_SGD, KDCL__OPT_ADAM };

struct kdcl__opt_spec {
    int kind;
    double lr;
    double momentum;     /* SGD */
    int nesterov;        /* SGD */
    double weight_decay; /* both (Adam: L2 added to the gradient, as torch) */
    double beta1, beta2, eps; /* Adam */
};

struct kdcl__opt;

int kdcl__opt_init(kdcl_context *ctx, const struct kdcl__opt_spec *spec,
                   struct kdcl__opt **out);
void kdcl__opt_free(struct kdcl__opt *o);
/* One update of value from grad at learning rate lr; the optimizer keeps
   per-tensor state keyed by the value tensor. */
int kdcl__opt_step(struct kdcl__opt *o, kdcl_tensor *value,
                   const kdcl_tensor *grad, double lr);
/* Call once after all tensors of a step were updated (Adam's t). */
void kdcl__opt_next(struct kdcl__opt *o);

/* Learning-rate schedules. */
enum kdcl__sched_kind { KDCL__SCHED_CONST, KDCL__SCHED_STEP,
                        KDCL__SCHED_COSINE };
struct kdcl__sched {
    int kind;
    double base_lr;
    int64_t step_size; /* step: epochs between decays */
    double gamma;      /* step: decay factor */
    int64_t total;     /* cosine: epochs in all */
    double min_lr;     /* cosine: final lr */
};
/* The learning rate for epoch (from 0). */
double kdcl__sched_lr(const struct kdcl__sched *s, int64_t epoch);

/* ---------------------------------------------------------------------- */
/* Kernels shared by the engine (core/nn.cl), built once per context.     */

/* The kernels of cl/nn.cl (and kdcl_ce_rows), by index. */
enum kdcl__nn_kernel {
    KDCL__NN_BIAS_ADD, KDCL__NN_COL_SUM, KDCL__NN_RELU_FWD, KDCL__NN_RELU_BWD, KDCL__NN_ADD, KDCL__NN_IM2COL,
    KDCL__NN_COL2IM, KDCL__NN_BIAS_ADD_NCHW, KDCL__NN_BIAS_GRAD_NCHW, KDCL__NN_MAXPOOL_FWD, KDCL__NN_MAXPOOL_BWD,
    KDCL__NN_AVGPOOL_FWD, KDCL__NN_AVGPOOL_BWD, KDCL__NN_GAP_FWD, KDCL__NN_GAP_BWD, KDCL__NN_DROPOUT_FWD,
    KDCL__NN_MUL, KDCL__NN_BN_STATS, KDCL__NN_BN_EVAL_STATS, KDCL__NN_BN_APPLY, KDCL__NN_BN_BWD_REDUCE,
    KDCL__NN_BN_BWD_APPLY, KDCL__NN_GATHER_ROWS, KDCL__NN_ARGMAX_CORRECT, KDCL__NN_SGD, KDCL__NN_ADAM,
    KDCL__NN_CE_ROWS, KDCL__NN_SCALE_BLOCK, KDCL__NN_COUNT
};

struct kdcl__nn_kernels;
int kdcl__nn_kernels(kdcl_context *ctx, struct kdcl__nn_kernels **out);
/* Launch kernel `which` over n items (the driver picks the local size). */
int kdcl__nn_launch(kdcl_context *ctx, int which, size_t n, uint32_t n_args,
                    const struct kdcl_arg *args);
/* Launch over a dims-dimensional range (local size 16 x 1 x 1). */
int kdcl__nn_launch3(kdcl_context *ctx, int which, uint32_t dims,
                     const size_t *global, uint32_t n_args,
                     const struct kdcl_arg *args);
/* Launch `groups` work-groups of wg items (the reductions). */
int kdcl__nn_launch_groups(kdcl_context *ctx, int which, size_t groups,
                           size_t wg, uint32_t n_args,
                           const struct kdcl_arg *args);

#endif /* KDCL_NN_H */
