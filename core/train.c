/*
 * core/train.c - data sets, the built-in architectures, safetensors
 * weights with PyTorch's names, and the training loop: plain
 * cross-entropy (`kdcl train`, baselines) or distillation through a
 * plugin (`kdcl distill`), with seeded shuffling and per-epoch
 * evaluation.
 */
#include "train.h"
#include "idx.h"
#include "params.h"
#include "safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------------- */
/* Data                                                                    */

int kdcl__dataset_load(const char *dir, int train, double mean, double std,
                       int64_t limit, struct kdcl__dataset *out, char *err,
                       size_t errlen)
{
    char paths[4][KDCL__IDX_PATH_MAX];
    struct kdcl__array img = {0}, lab = {0};
    const char *ip, *lp;
    int status;

    memset(out, 0, sizeof *out);
    status = kdcl__fashion_mnist_find(dir, paths, err, errlen);
    if (status)
        return status;
    ip = paths[train ? KDCL__MNIST_TRAIN_IMAGES : KDCL__MNIST_TEST_IMAGES];
    lp = paths[train ? KDCL__MNIST_TRAIN_LABELS : KDCL__MNIST_TEST_LABELS];
    if ((status = kdcl__idx_read(ip, &img, err, errlen))
        || (status = kdcl__idx_read(lp, &lab, err, errlen)))
        goto out;
    if (img.dtype != KDCL_DTYPE_U8 || img.ndim != 3 || lab.ndim != 1
        || lab.dtype != KDCL_DTYPE_U8 || lab.shape[0] != img.shape[0]) {
        snprintf(err, errlen,
                 "%s, %s: expected u8 images [N,H,W] and u8 labels [N]", ip,
                 lp);
        status = KDCL_EFORMAT;
        goto out;
    }
    out->n = img.shape[0];
    if (limit > 0 && limit < out->n)
        out->n = limit;
    out->ndim = 3;
    out->shape[0] = 1;
    out->shape[1] = img.shape[1];
    out->shape[2] = img.shape[2];
    out->per = img.shape[1] * img.shape[2];
    out->x = malloc((size_t)(out->n * out->per) * sizeof *out->x);
    out->y = malloc((size_t)out->n * sizeof *out->y);
    if (!out->x || !out->y) {
        snprintf(err, errlen, "out of memory loading %s", ip);
        status = KDCL_ENOMEM;
        goto out;
    }
    {
        const uint8_t *px = img.data, *py = lab.data;
        int64_t maxy = 0;
        for (int64_t i = 0; i < out->n * out->per; i++)
            out->x[i] = (float)(((double)px[i] / 255.0 - mean) / std);
        for (int64_t i = 0; i < out->n; i++) {
            out->y[i] = py[i];
            if (py[i] > maxy)
                maxy = py[i];
        }
        out->classes = maxy + 1;
    }
out:
    kdcl__array_free(&img);
    kdcl__array_free(&lab);
    if (status)
        kdcl__dataset_free(out);
    return status;
}

void kdcl__dataset_free(struct kdcl__dataset *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

int kdcl__dataset_split(struct kdcl__dataset *d, int64_t n,
                        struct kdcl__dataset *out, char *err, size_t errlen)
{
    if (n <= 0 || n >= d->n) {
        snprintf(err, errlen, "validation split of %lld out of %lld samples",
                 (long long)n, (long long)d->n);
        return KDCL_ERANGE;
    }
    *out = *d;
    out->n = n;
    out->x = malloc((size_t)(n * d->per) * sizeof *out->x);
    out->y = malloc((size_t)n * sizeof *out->y);
    if (!out->x || !out->y) {
        free(out->x);
        free(out->y);
        snprintf(err, errlen, "out of memory");
        return KDCL_ENOMEM;
    }
    /* The last n samples become the split; the set keeps the rest. */
    memcpy(out->x, d->x + (d->n - n) * d->per,
           (size_t)(n * d->per) * sizeof *out->x);
    memcpy(out->y, d->y + (d->n - n), (size_t)n * sizeof *out->y);
    d->n -= n;
    return KDCL_OK;
}

int kdcl__devdata_init(kdcl_context *ctx, const struct kdcl__dataset *d,
                       struct kdcl__devdata *out)
{
    int64_t xs[2] = {d->n, d->per};
    int status;
    memset(out, 0, sizeof *out);
    out->n = d->n;
    out->per = d->per;
    status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, xs, &out->x);
    if (!status)
        status = kdcl_tensor_write(out->x, d->x, kdcl_tensor_bytes(out->x));
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &d->n, &out->y);
    if (!status)
        status = kdcl_tensor_write(out->y, d->y, kdcl_tensor_bytes(out->y));
    if (status)
        kdcl__devdata_free(out);
    return status;
}

void kdcl__devdata_free(struct kdcl__devdata *d)
{
    kdcl_tensor_free(d->x);
    kdcl_tensor_free(d->y);
    memset(d, 0, sizeof *d);
}

/* ---------------------------------------------------------------------- */
/* Architectures                                                           */

static struct kdcl__layer_spec spec_of(int kind)
{
    struct kdcl__layer_spec s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.stride = 1;
    s.eps = 1e-5;
    s.momentum = 0.1;
    return s;
}

/* Append to a spec list (capacity 64). */
#define ADD(list, n, s)                                                      \
    do {                                                                     \
        if ((n) < 64)                                                        \
            (list)[(n)++] = (s);                                             \
    } while (0)

static int64_t scaled(int64_t base, double width)
{
    int64_t v = (int64_t)llround((double)base * width);
    return v < 1 ? 1 : v;
}

/* LeNet-5 for 28x28 inputs (Nayak et al. 2019, LeNet-5-half at width
   0.5): conv5x5(6, pad 2)-relu-maxpool2, conv5x5(16)-relu-maxpool2,
   flatten, fc120-relu, fc84-relu, fc(classes); as nn.Sequential indices
   0..11. */
static size_t lenet5(struct kdcl__layer_spec *l, double w, int64_t classes)
{
    size_t n = 0;
    struct kdcl__layer_spec s = spec_of(KDCL__L_CONV2D);
    s.out = scaled(6, w);
    s.kernel = 5;
    s.padding = 2;
    ADD(l, n, s);
    ADD(l, n, spec_of(KDCL__L_RELU));
    s = spec_of(KDCL__L_MAXPOOL);
    s.kernel = s.stride = 2;
    ADD(l, n, s);
    s = spec_of(KDCL__L_CONV2D);
    s.out = scaled(16, w);
    s.kernel = 5;
    ADD(l, n, s);
    ADD(l, n, spec_of(KDCL__L_RELU));
    s = spec_of(KDCL__L_MAXPOOL);
    s.kernel = s.stride = 2;
    ADD(l, n, s);
    ADD(l, n, spec_of(KDCL__L_FLATTEN));
    s = spec_of(KDCL__L_LINEAR);
    s.out = scaled(120, w);
    ADD(l, n, s);
    ADD(l, n, spec_of(KDCL__L_RELU));
    s.out = scaled(84, w);
    ADD(l, n, s);
    ADD(l, n, spec_of(KDCL__L_RELU));
    s.out = classes;
    ADD(l, n, s);
    return n;
}

/* MLP: flatten, then (linear, relu[, dropout]) per hidden width, then the
   classifier. */
static size_t mlp(struct kdcl__layer_spec *l, const int64_t *hidden,
                  size_t n_hidden, double dropout, int64_t classes)
{
    size_t n = 0;
    struct kdcl__layer_spec s;
    ADD(l, n, spec_of(KDCL__L_FLATTEN));
    for (size_t i = 0; i < n_hidden; i++) {
        s = spec_of(KDCL__L_LINEAR);
        s.out = hidden[i];
        ADD(l, n, s);
        ADD(l, n, spec_of(KDCL__L_RELU));
        if (dropout > 0) {
            s = spec_of(KDCL__L_DROPOUT);
            s.p = dropout;
            ADD(l, n, s);
        }
    }
    s = spec_of(KDCL__L_LINEAR);
    s.out = classes;
    ADD(l, n, s);
    return n;
}

/* Parse hidden widths from a list [1200, 1200] or "784-1200-1200-10"
   (first and last entries are the input and the classes). */
static int hidden_sizes(const cJSON *spec, const char *what, int64_t *h,
                        size_t *n, char *err, size_t errlen)
{
    const cJSON *hid = cJSON_GetObjectItemCaseSensitive(spec, "hidden");
    const char *sizes = kdcl__config_str(spec, "sizes", NULL);
    *n = 0;
    if (cJSON_IsArray(hid)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, hid)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble < 1 || *n >= 16) {
                snprintf(err, errlen, "%s.hidden: positive integers, at most "
                                      "16",
                         what);
                return KDCL_EINVAL;
            }
            h[(*n)++] = (int64_t)e->valuedouble;
        }
        return KDCL_OK;
    }
    if (sizes) {
        int64_t all[18];
        size_t k = 0;
        const char *p = sizes;
        while (*p && k < 18) {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p || v < 1) {
                snprintf(err, errlen, "%s.sizes: '%s' is not like "
                                      "784-1200-1200-10",
                         what, sizes);
                return KDCL_EINVAL;
            }
            all[k++] = v;
            p = *end == '-' ? end + 1 : end;
            if (*end && *end != '-')
                break;
        }
        for (size_t i = 1; i + 1 < k; i++)
            h[(*n)++] = all[i];
        return KDCL_OK;
    }
    h[0] = 1200;
    h[1] = 1200;
    *n = 2;
    return KDCL_OK;
}

static int custom_layers(const cJSON *spec, const char *what,
                         struct kdcl__layer_spec *l, size_t *n, char *err,
                         size_t errlen)
{
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(spec, "layers");
    const cJSON *e;
    static const char *const keys[] = {"type",    "out",  "kernel",
                                       "stride",  "padding", "p",
                                       "eps",     "momentum", "name",
                                       "tap",     NULL};
    *n = 0;
    if (!cJSON_IsArray(layers) || cJSON_GetArraySize(layers) == 0) {
        snprintf(err, errlen, "%s: arch custom needs a 'layers' list", what);
        return KDCL_EINVAL;
    }
    cJSON_ArrayForEach(e, layers)
    {
        struct kdcl__layer_spec s;
        const char *type = kdcl__config_str(e, "type", NULL);
        int kind = type ? kdcl__layer_kind_parse(type) : -1;
        int64_t v;
        double d;
        int status;
        char sect[64];
        snprintf(sect, sizeof sect, "%s.layers[%zu]", what, *n);
        if (kind < 0) {
            snprintf(err, errlen,
                     "%s: type must be one of linear, conv2d, relu, "
                     "maxpool2d, avgpool2d, globalavgpool, flatten, "
                     "dropout, batchnorm",
                     sect);
            return KDCL_EINVAL;
        }
        if ((status = kdcl__config_check_keys(e, sect, keys, err, errlen)))
            return status;
        s = spec_of(kind);
        if ((status = kdcl__config_int(e, "out", 0, 0, 1 << 24, &v, err,
                                       errlen)))
            return status;
        s.out = v;
        if ((status = kdcl__config_int(e, "kernel", 2, 1, 64, &v, err,
                                       errlen)))
            return status;
        s.kernel = v;
        if ((status = kdcl__config_int(e, "stride",
                                       kind == KDCL__L_CONV2D ? 1 : s.kernel,
                                       1, 64, &v, err, errlen)))
            return status;
        s.stride = v;
        if ((status = kdcl__config_int(e, "padding", 0, 0, 64, &v, err,
                                       errlen)))
            return status;
        s.padding = v;
        if ((status = kdcl__config_num(e, "p", 0.5, 0, 0.99, &d, err,
                                       errlen)))
            return status;
        s.p = d;
        if ((status = kdcl__config_num(e, "eps", 1e-5, 0, 1, &d, err,
                                       errlen)))
            return status;
        s.eps = d;
        if ((status = kdcl__config_num(e, "momentum", 0.1, 0, 1, &d, err,
                                       errlen)))
            return status;
        s.momentum = d;
        snprintf(s.name, sizeof s.name, "%s",
                 kdcl__config_str(e, "name", ""));
        snprintf(s.tap, sizeof s.tap, "%s", kdcl__config_str(e, "tap", ""));
        if (*n >= 64) {
            snprintf(err, errlen, "%s: at most 64 layers", what);
            return KDCL_EINVAL;
        }
        l[(*n)++] = s;
    }
    return KDCL_OK;
}

int kdcl__arch_build(kdcl_context *ctx, const cJSON *spec, const char *what,
                     const struct kdcl__dataset *d, uint64_t seed,
                     struct kdcl__model **out, char *err, size_t errlen)
{
    struct kdcl__layer_spec l[64];
    size_t n = 0;
    const char *arch = kdcl__config_str(spec, "arch", "lenet5");
    double width, dropout;
    int status;
    const cJSON *taps;

    *out = NULL;
    if ((status = kdcl__config_num(spec, "width", 1.0, 0.01, 64, &width, err,
                                   errlen))
        || (status = kdcl__config_num(spec, "dropout", 0.0, 0, 0.99,
                                      &dropout, err, errlen)))
        return status;
    if (!strcmp(arch, "lenet5")) {
        n = lenet5(l, width, d->classes);
    } else if (!strcmp(arch, "mlp")) {
        int64_t h[16];
        size_t nh;
        if ((status = hidden_sizes(spec, what, h, &nh, err, errlen)))
            return status;
        for (size_t i = 0; i < nh; i++)
            h[i] = scaled(h[i], width);
        n = mlp(l, h, nh, dropout, d->classes);
    } else if (!strcmp(arch, "custom")) {
        if ((status = custom_layers(spec, what, l, &n, err, errlen)))
            return status;
    } else {
        snprintf(err, errlen, "%s.arch: '%s' is not mlp, lenet5 or custom",
                 what, arch);
        return KDCL_EINVAL;
    }
    status = kdcl__model_init(ctx, l, n, d->ndim, d->shape, seed, out);
    if (status) {
        snprintf(err, errlen, "%s: %s", what, kdcl_context_errmsg(ctx));
        return status;
    }
    taps = kdcl__config_get(spec, "taps");
    if (cJSON_IsObject(taps)) {
        const cJSON *t;
        cJSON_ArrayForEach(t, taps)
        {
            if (!cJSON_IsNumber(t) || t->valuedouble < 0
                || (size_t)t->valuedouble >= (*out)->n_layers - 1) {
                snprintf(err, errlen,
                         "%s.taps.%s: a layer index in [0, %zu)", what,
                         t->string, (*out)->n_layers - 1);
                kdcl__model_free(*out);
                *out = NULL;
                return KDCL_ERANGE;
            }
            kdcl__model_set_tap(*out, (size_t)t->valuedouble, t->string);
        }
    }
    return KDCL_OK;
}

/* ---------------------------------------------------------------------- */
/* Weights                                                                 */

int kdcl__model_save(const struct kdcl__model *m, const char *path,
                     const char *arch_meta, char *err, size_t errlen)
{
    struct kdcl__st_tensor t[256];
    size_t n = 0;
    const char *name;
    kdcl_tensor *val;
    int status = KDCL_OK;
    const char *meta[4] = {"format", "pt", "kdcl_arch",
                           arch_meta ? arch_meta : ""};

    for (size_t i = 0; n < 256 && kdcl__model_state(m, i, &name, &val) == 0;
         i++) {
        struct kdcl__st_tensor *e = &t[n];
        memset(e, 0, sizeof *e);
        e->name = (char *)name;
        e->a.dtype = kdcl_tensor_dtype(val);
        e->a.ndim = kdcl_tensor_ndim(val);
        e->a.numel = kdcl_tensor_numel(val);
        for (uint32_t d = 0; d < e->a.ndim; d++)
            e->a.shape[d] = kdcl_tensor_dim(val, (int)d);
        e->a.data = malloc(kdcl_tensor_bytes(val) + 1);
        n++;
        if (!e->a.data) {
            snprintf(err, errlen, "out of memory");
            status = KDCL_ENOMEM;
            break;
        }
        status = kdcl_tensor_read(val, e->a.data, kdcl_tensor_bytes(val));
        if (status) {
            snprintf(err, errlen, "%s", kdcl_context_errmsg(m->ctx));
            break;
        }
    }
    if (!status)
        status = kdcl__st_write(path, t, n, meta, 2, err, errlen);
    for (size_t i = 0; i < n; i++)
        free(t[i].a.data);
    return status;
}

int kdcl__model_load(struct kdcl__model *m, const char *path, char *err,
                     size_t errlen)
{
    struct kdcl__st_file f;
    const char *name;
    kdcl_tensor *val;
    int status = kdcl__st_read(path, &f, err, errlen);
    if (status)
        return status;
    for (size_t i = 0; kdcl__model_state(m, i, &name, &val) == 0; i++) {
        const struct kdcl__array *a = kdcl__st_find(&f, name);
        bool same = a && a->numel == kdcl_tensor_numel(val)
                    && (a->dtype == kdcl_tensor_dtype(val));
        for (uint32_t d = 0; same && d < a->ndim; d++)
            same = a->ndim == kdcl_tensor_ndim(val)
                   && a->shape[d] == kdcl_tensor_dim(val, (int)d);
        if (!a) {
            snprintf(err, errlen, "%s: no tensor '%s' for this model", path,
                     name);
            status = KDCL_EFORMAT;
            break;
        }
        if (!same) {
            snprintf(err, errlen,
                     "%s: tensor '%s' has another dtype or shape than the "
                     "model's (%s, %lld elements)",
                     path, name, kdcl_dtype_name(kdcl_tensor_dtype(val)),
                     (long long)kdcl_tensor_numel(val));
            status = KDCL_ESHAPE;
            break;
        }
        status = kdcl_tensor_write(val, a->data, kdcl_tensor_bytes(val));
        if (status) {
            snprintf(err, errlen, "%s", kdcl_context_errmsg(m->ctx));
            break;
        }
    }
    kdcl__st_free(&f);
    return status;
}

/* ---------------------------------------------------------------------- */
/* Training                                                                */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Fisher-Yates with a seeded generator: the same order on every device. */
static void shuffle(int32_t *v, int64_t n, uint64_t *s)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(s) % (uint64_t)(i + 1));
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* Batch buffers of the right size. */
struct batch {
    int64_t B;
    kdcl_tensor *idx, *x, *y, *dlogits, *rows, *correct;
};

static void batch_free(struct batch *b)
{
    kdcl_tensor_free(b->idx);
    kdcl_tensor_free(b->x);
    kdcl_tensor_free(b->y);
    kdcl_tensor_free(b->dlogits);
    kdcl_tensor_free(b->rows);
    kdcl_tensor_free(b->correct);
    memset(b, 0, sizeof *b);
}

static int batch_size(kdcl_context *ctx, struct batch *b, int64_t B,
                      int64_t per, int64_t classes)
{
    int64_t xs[2] = {B, per}, ls[2] = {B, classes};
    int status;
    if (b->B == B)
        return KDCL_OK;
    batch_free(b);
    b->B = B;
    status = kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &B, &b->idx);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, xs, &b->x);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &B, &b->y);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ls, &b->dlogits);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &B, &b->rows);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &B, &b->correct);
    return status;
}

/* Gather rows idx[first .. first+B) of data into b. */
static int gather(kdcl_context *ctx, struct batch *b,
                  const struct kdcl__devdata *d, const int32_t *idx)
{
    int status;
    if (kdcl__host_layers_wanted(ctx))
        return kdcl__host_gather(ctx, d->x, d->y, idx, b->x, b->y,
                                 (size_t)b->B, (size_t)d->per);
    status = kdcl_tensor_write(b->idx, idx, (size_t)b->B * sizeof *idx);
    struct kdcl_arg a[] = {KDCL_A_TENSOR(d->x),  KDCL_A_TENSOR(b->idx),
                           KDCL_A_TENSOR(b->x),  KDCL_A_TENSOR(d->y),
                           KDCL_A_TENSOR(b->y),  KDCL_A_I32((int32_t)b->B),
                           KDCL_A_I32((int32_t)d->per)};
    if (status)
        return status;
    return kdcl__nn_launch(ctx, KDCL__NN_GATHER_ROWS,
                           (size_t)(b->B * d->per), 7, a);
}

int kdcl__evaluate(kdcl_context *ctx, struct kdcl__model *m,
                   const struct kdcl__devdata *data, int64_t batch,
                   double *accuracy)
{
    struct batch b = {0};
    int32_t *idx = malloc((size_t)batch * sizeof *idx);
    int32_t *ok = malloc((size_t)batch * sizeof *ok);
    int64_t correct = 0;
    int64_t classes = kdcl__model_out_features(m);
    int status = idx && ok ? KDCL_OK
                           : kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    for (int64_t first = 0; !status && first < data->n; first += batch) {
        int64_t B = data->n - first < batch ? data->n - first : batch;
        const kdcl_tensor *logits;
        for (int64_t i = 0; i < B; i++)
            idx[i] = (int32_t)(first + i);
        status = batch_size(ctx, &b, B, data->per, classes);
        if (!status)
            status = gather(ctx, &b, data, idx);
        if (!status)
            status = kdcl__model_forward(m, b.x, B, 0, &logits);
        if (!status && kdcl__host_layers_wanted(ctx)) {
            status = kdcl__host_argmax_correct(ctx, logits, b.y, b.correct,
                                               (size_t)B, (size_t)classes);
        } else if (!status) {
            struct kdcl_arg a[] = {KDCL_A_TENSOR(logits), KDCL_A_TENSOR(b.y),
                                   KDCL_A_TENSOR(b.correct),
                                   KDCL_A_I32((int32_t)B),
                                   KDCL_A_I32((int32_t)classes)};
            status = kdcl__nn_launch(ctx, KDCL__NN_ARGMAX_CORRECT, (size_t)B,
                                     5, a);
        }
        if (!status)
            status = kdcl_tensor_read(b.correct, ok, (size_t)B * sizeof *ok);
        for (int64_t i = 0; !status && i < B; i++)
            correct += ok[i];
    }
    if (!status)
        *accuracy = data->n ? (double)correct / (double)data->n : 0.0;
    batch_free(&b);
    free(idx);
    free(ok);
    return status;
}

/* Bind the distillation inputs of one step to the plugin run. */
static int bind_kd(kdcl_run *r, struct kdcl__model *student,
                   const struct kdcl__model *teacher,
                   const kdcl_tensor *slog, const kdcl_tensor *tlog,
                   const kdcl_tensor *labels, kdcl_tensor *dlogits)
{
    const struct kdcl_plugin *p = kdcl__run_plugin(r);
    int status;
    /* Each of these only when the plugin reads it.  Without a gradient of
       the logits from the plugin (a feature-only loss), the classifier
       gets none: dlogits is zeroed first. */
    if ((status = kdcl_tensor_fill(dlogits, 0.0)))
        return status;
    if (kdcl__input_find(p, "student.logits")
        && ((status = kdcl_run_set_input(r, "student.logits", slog))
            || (status = kdcl_run_set_grad(r, "student.logits", dlogits))))
        return status;
    if (kdcl__input_find(p, "teacher.logits")
        && (status = kdcl_run_set_input(r, "teacher.logits", tlog)))
        return status;
    /* A multi-teacher plugin (teacher.*.logits) gets the one teacher as
       teacher.0.logits (M = 1). */
    if (!kdcl__input_find(p, "teacher.logits")
        && kdcl__input_find(p, "teacher.0.logits")
        && (status = kdcl_run_set_input(r, "teacher.0.logits", tlog)))
        return status;
    if (kdcl__input_find(p, "labels")
        && (status = kdcl_run_set_input(r, "labels", labels)))
        return status;
    for (size_t i = 0; i < kdcl__model_tap_count(student); i++) {
        const char *name = kdcl__model_tap_name(student, i);
        if ((status = kdcl_run_set_input(r, name,
                                         kdcl__model_tap(student, name)))
            || (status = kdcl_run_set_grad(
                    r, name, kdcl__model_tap_grad(student, name))))
            return status;
    }
    for (size_t i = 0; i < kdcl__model_tap_count(teacher); i++) {
        const char *name = kdcl__model_tap_name(teacher, i);
        if ((status = kdcl_run_set_input(r, name,
                                         kdcl__model_tap(teacher, name))))
            return status;
    }
    return KDCL_OK;
}

int kdcl__kd_loss(kdcl_run *r, struct kdcl__model *student,
                  const struct kdcl__model *teacher, const kdcl_tensor *slog,
                  const kdcl_tensor *tlog, const kdcl_tensor *labels,
                  kdcl_tensor *dlogits, double *loss)
{
    int status = bind_kd(r, student, teacher, slog, tlog, labels, dlogits);
    if (!status)
        status = kdcl_run_forward(r);
    if (!status)
        status = kdcl_run_backward(r);
    if (!status)
        status = kdcl_run_result(r, loss, NULL, 0);
    return status;
}

/* Update every student parameter and every plugin trainable. */
static int update(struct kdcl__fit *f, struct kdcl__opt *opt, double lr)
{
    const char *name;
    kdcl_tensor *val, *grad;
    int status = KDCL_OK;
    for (size_t i = 0;
         !status && kdcl__model_param(f->student, i, &name, &val, &grad) == 0;
         i++)
        status = kdcl__opt_step(opt, val, grad, lr);
    if (f->kd && !status) {
        struct kdcl_trainable t;
        for (uint32_t i = 0; !status && kdcl_run_trainable(f->kd, i, &t) == 0;
             i++)
            if (t.value && t.grad)
                status = kdcl__opt_step(opt, t.value, t.grad, lr);
    }
    kdcl__opt_next(opt);
    return status;
}

int kdcl__fit_run(struct kdcl__fit *f, char *err, size_t errlen)
{
    kdcl_context *ctx = f->ctx;
    struct kdcl__opt *opt = NULL;
    struct batch b = {0};
    int64_t n = f->train->n, classes = kdcl__model_out_features(f->student);
    int64_t steps = (n + f->batch - 1) / f->batch;
    int32_t *perm = malloc((size_t)n * sizeof *perm);
    float *rows = malloc((size_t)f->batch * sizeof *rows);
    uint64_t rng = f->seed * 0x2545f4914f6cdd1dull + 1;
    double t0 = now_s();
    int status;

    f->epoch_accuracy = calloc((size_t)(f->epochs > 0 ? f->epochs : 1),
                               sizeof *f->epoch_accuracy);
    if (!perm || !rows || !f->epoch_accuracy) {
        status = kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
        goto out;
    }
    for (int64_t i = 0; i < n; i++)
        perm[i] = (int32_t)i;
    status = kdcl__opt_init(ctx, &f->opt, &opt);
    for (int64_t e = 0; !status && e < f->epochs; e++) {
        double lr = kdcl__sched_lr(&f->sched, e), loss_sum = 0;
        int64_t loss_n = 0;
        shuffle(perm, n, &rng);
        for (int64_t s = 0; !status && s < steps; s++) {
            int64_t first = s * f->batch;
            int64_t B = n - first < f->batch ? n - first : f->batch;
            const kdcl_tensor *slog, *tlog = NULL;
            double loss = NAN;
            status = batch_size(ctx, &b, B, f->train->per, classes);
            if (!status)
                status = gather(ctx, &b, f->train, perm + first);
            if (!status && f->teacher)
                status = kdcl__model_forward(f->teacher, b.x, B, 0, &tlog);
            if (!status)
                status = kdcl__model_forward(f->student, b.x, B, 1, &slog);
            if (status)
                break;
            if (f->teacher) {
                status = kdcl__kd_loss(f->kd, f->student, f->teacher, slog,
                                       tlog, b.y, b.dlogits, &loss);
            } else {
                status = kdcl__ce_rows(ctx, slog, b.y, b.dlogits, b.rows, B,
                                       classes);
                if (!status)
                    status = kdcl_tensor_read(b.rows, rows,
                                              (size_t)B * sizeof *rows);
                if (!status) {
                    loss = 0;
                    for (int64_t i = 0; i < B; i++)
                        loss += rows[i];
                    loss /= (double)B;
                }
            }
            if (!status)
                status = kdcl__model_backward(f->student, b.dlogits);
            if (!status)
                status = update(f, opt, lr);
            if (!status && f->kd)
                status = kdcl_run_event(f->kd, KDCL_EVENT_STEP_END,
                                        e * steps + s);
            if (status)
                break;
            loss_sum += loss * (double)B;
            loss_n += B;
            if (f->progress) {
                struct kdcl__progress p = {e, f->epochs, s + 1, steps,
                                           loss_sum / (double)loss_n,
                                           now_s() - t0, -1};
                if (s + 1 < steps)
                    f->progress(f->user, &p);
            }
        }
        if (!status)
            status = kdcl__evaluate(ctx, f->student, f->test, f->batch,
                                    &f->epoch_accuracy[e]);
        if (!status && f->kd)
            status = kdcl_run_event(f->kd, KDCL_EVENT_EPOCH_END, e);
        if (!status && f->progress) {
            struct kdcl__progress p = {e, f->epochs, steps, steps,
                                       loss_n ? loss_sum / (double)loss_n
                                              : 0,
                                       now_s() - t0, f->epoch_accuracy[e]};
            f->progress(f->user, &p);
        }
        if (!status)
            f->accuracy = f->epoch_accuracy[e];
    }
out:
    f->seconds = now_s() - t0;
    if (status)
        snprintf(err, errlen, "%s", kdcl_context_errmsg(ctx));
    kdcl__opt_free(opt);
    batch_free(&b);
    free(perm);
    free(rows);
    return status;
}
