/*
 * core/train.h - data sets, built-in architectures, weights files and the
 * training loop of `kdcl train` and `kdcl distill` (internal).
 */
#ifndef KDCL_TRAIN_H
#define KDCL_TRAIN_H

#include "config.h"
#include "nn.h"

/* A labelled image data set in host memory, normalised float32. */
struct kdcl__dataset {
    int64_t n;          /* samples */
    uint32_t ndim;      /* per-sample rank (3: C, H, W) */
    int64_t shape[3];
    int64_t per;        /* floats per sample */
    float *x;           /* [n, per] */
    int32_t *y;         /* [n], in [0, classes) */
    int64_t classes;
};

/* The same on the device, for batch gathering. */
struct kdcl__devdata {
    kdcl_tensor *x, *y;
    int64_t n, per;
};

/* Load the train or test split of an IDX data set (Fashion-MNIST layout,
   .gz read directly) with (x/255 - mean)/std; limit > 0 keeps only the
   first limit samples. */
int kdcl__dataset_load(const char *dir, int train, double mean, double std,
                       int64_t limit, struct kdcl__dataset *out, char *err,
                       size_t errlen);
void kdcl__dataset_free(struct kdcl__dataset *d);
/* Move samples [first, first + n) to a new data set (validation split). */
int kdcl__dataset_split(struct kdcl__dataset *d, int64_t n,
                        struct kdcl__dataset *out, char *err, size_t errlen);
int kdcl__devdata_init(kdcl_context *ctx, const struct kdcl__dataset *d,
                       struct kdcl__devdata *out);
void kdcl__devdata_free(struct kdcl__devdata *d);

/*
 * Build a model from a config section: arch mlp (hidden: [1200, 1200] or
 * sizes: "784-1200-1200-10", dropout), lenet5 (width multiplier), or
 * custom (layers: a list of {type, out, kernel, stride, padding, p, name,
 * tap}); taps: {input name: layer index} adds taps.
 */
int kdcl__arch_build(kdcl_context *ctx, const cJSON *spec, const char *what,
                     const struct kdcl__dataset *d, uint64_t seed,
                     struct kdcl__model **out, char *err, size_t errlen);
/* Index of the default tap layer for a plugin input: the output of the
   penultimate layer (input of the classifier) for [B, D] features, or the
   last layer with a [C, H, W] output for map inputs; -1 when none. */
int kdcl__arch_default_tap(const struct kdcl__model *m, int want_maps);
/* Set layer i's tap name. */
int kdcl__model_set_tap(struct kdcl__model *m, size_t i, const char *name);

/* Save / load the state dict as safetensors with PyTorch's names. */
int kdcl__model_save(const struct kdcl__model *m, const char *path,
                     const char *arch_meta, char *err, size_t errlen);
int kdcl__model_load(struct kdcl__model *m, const char *path, char *err,
                     size_t errlen);

/* Progress of a fit: called after every step (and once at epoch end with
   step == steps). */
struct kdcl__progress {
    int64_t epoch, epochs, step, steps;
    double loss;     /* running mean over the epoch so far */
    double seconds;  /* since the fit started */
    double accuracy; /* test accuracy at epoch end, else -1 */
};
typedef void (*kdcl__progress_fn)(void *user, const struct kdcl__progress *p);

struct kdcl__fit {
    kdcl_context *ctx;
    struct kdcl__model *student;
    struct kdcl__model *teacher;     /* NULL: plain cross-entropy */
    kdcl_run *kd;                    /* the plugin run when teacher != NULL */
    struct kdcl__opt_spec opt;
    struct kdcl__sched sched;
    int64_t epochs, batch;
    uint64_t seed;
    const struct kdcl__devdata *train, *test;
    kdcl__progress_fn progress;
    void *user;
    /* Results. */
    double accuracy;       /* final test accuracy */
    double *epoch_accuracy; /* epochs values, malloc'd by the fit */
    double seconds;
};

int kdcl__fit_run(struct kdcl__fit *f, char *err, size_t errlen);
/* One distillation step's loss as kdcl distill runs it: dlogits zeroed,
   the student's and teacher's logits, labels and taps bound to the run
   where its plugin reads them, then its forward, backward and loss. */
int kdcl__kd_loss(kdcl_run *r, struct kdcl__model *student,
                  const struct kdcl__model *teacher, const kdcl_tensor *slog,
                  const kdcl_tensor *tlog, const kdcl_tensor *labels,
                  kdcl_tensor *dlogits, double *loss);
/* Accuracy of m on data (eval mode). */
int kdcl__evaluate(kdcl_context *ctx, struct kdcl__model *m,
                   const struct kdcl__devdata *data, int64_t batch,
                   double *accuracy);

#endif /* KDCL_TRAIN_H */
