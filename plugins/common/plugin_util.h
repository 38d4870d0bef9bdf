/*
 * plugins/common/plugin_util.h - small helpers the in-tree plugins share:
 * building a program and its kernels, checking input shapes with clear
 * messages, and keeping a scratch tensor sized to the batch.  Header-only
 * and written against kdcl/plugin.h alone, like any out-of-tree plugin.
 */
#ifndef KDCL_PLUGIN_UTIL_H
#define KDCL_PLUGIN_UTIL_H

#include <kdcl/plugin.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Build source with options and create n kernels named in names. */
static inline int kdcl_pu_build(const struct kdcl_host *h, const char *source,
                                const char *options, size_t n,
                                const char *const *names, kdcl_kernel **out)
{
    kdcl_program *prog = NULL;
    int status = h->program_build(h->ctx, source, options, &prog);
    for (size_t i = 0; !status && i < n; i++)
        status = h->kernel_init(h->ctx, prog, names[i], &out[i]);
    return status;
}

static inline void kdcl_pu_free_kernels(const struct kdcl_host *h, size_t n,
                                        kdcl_kernel **k)
{
    for (size_t i = 0; i < n; i++) {
        h->kernel_free(k[i]);
        k[i] = NULL;
    }
}

/* Require input name; KDCL_EMISSING naming it when absent. */
static inline int kdcl_pu_need(const struct kdcl_host *h, const kdcl_io *io,
                               const char *name, const kdcl_tensor **out)
{
    *out = h->io_input(io, name);
    if (!*out)
        return h->error(h->ctx, KDCL_EMISSING, "missing input %s", name);
    return KDCL_OK;
}

/* Format t's shape as "[2,3]". */
static inline void kdcl_pu_shape_str(const struct kdcl_host *h,
                                     const kdcl_tensor *t, char *buf,
                                     size_t len)
{
    size_t used = 0;
    uint32_t nd = h->tensor_ndim(t);
    buf[0] = '\0';
    for (uint32_t i = 0; i < nd && used + 2 < len; i++) {
        int n = snprintf(buf + used, len - used, "%s%lld", i ? "," : "[",
                         (long long)h->tensor_dim(t, (int)i));
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used + 2 < len)
        snprintf(buf + used, len - used, nd ? "]" : "[]");
}

/* Require a 2-D [rows, cols] tensor with rows, cols >= 1. */
static inline int kdcl_pu_2d(const struct kdcl_host *h, const kdcl_tensor *t,
                             const char *name, int64_t *rows, int64_t *cols)
{
    char s[128];
    if (h->tensor_ndim(t) != 2 || h->tensor_dim(t, 0) < 1
        || h->tensor_dim(t, 1) < 1) {
        kdcl_pu_shape_str(h, t, s, sizeof s);
        return h->error(h->ctx, KDCL_ESHAPE,
                        "%s must be 2-D [B,C] with B, C >= 1, got %s", name,
                        s);
    }
    *rows = h->tensor_dim(t, 0);
    *cols = h->tensor_dim(t, 1);
    return KDCL_OK;
}

/* Require b to have exactly a's shape. */
static inline int kdcl_pu_same_shape(const struct kdcl_host *h,
                                     const kdcl_tensor *a, const char *an,
                                     const kdcl_tensor *b, const char *bn)
{
    char sa[128], sb[128];
    bool same = h->tensor_ndim(a) == h->tensor_ndim(b);
    for (uint32_t i = 0; same && i < h->tensor_ndim(a); i++)
        same = h->tensor_dim(a, (int)i) == h->tensor_dim(b, (int)i);
    if (same)
        return KDCL_OK;
    kdcl_pu_shape_str(h, a, sa, sizeof sa);
    kdcl_pu_shape_str(h, b, sb, sizeof sb);
    return h->error(h->ctx, KDCL_ESHAPE, "%s %s and %s %s differ in shape",
                    an, sa, bn, sb);
}

/* Require labels to be [rows]. */
static inline int kdcl_pu_labels(const struct kdcl_host *h,
                                 const kdcl_tensor *y, int64_t rows)
{
    char s[128];
    if (h->tensor_ndim(y) == 1 && h->tensor_dim(y, 0) == rows)
        return KDCL_OK;
    kdcl_pu_shape_str(h, y, s, sizeof s);
    return h->error(h->ctx, KDCL_ESHAPE,
                    "labels must be [%lld] (one per row), got %s",
                    (long long)rows, s);
}

/* Make sure *t is an f32 tensor of at least n elements (grows, never
   shrinks). */
static inline int kdcl_pu_scratch(const struct kdcl_host *h, kdcl_tensor **t,
                                  int64_t n)
{
    if (*t && h->tensor_numel(*t) >= n)
        return KDCL_OK;
    h->tensor_free(*t);
    *t = NULL;
    return h->tensor_init(h->ctx, KDCL_DTYPE_F32, 1, &n, t);
}

/* A power-of-two work-group size <= want that the kernel can run with. */
static inline size_t kdcl_pu_wg(const struct kdcl_host *h, kdcl_kernel *k,
                                size_t want)
{
    size_t max = h->kernel_wg_size(h->ctx, k), wg = 1;
    while (wg * 2 <= want && wg * 2 <= max)
        wg *= 2;
    return wg;
}

/*
 * Launch kdcl_ce_rows (from kdcl_common.cl, built into every in-tree
 * plugin's program): per-row cross-entropy of logits [B,C] against labels
 * into rows[b * row_stride], and scale * (softmax - onehot) into grad
 * (written, or added when accumulate) when grad is not NULL.
 */
static inline int kdcl_pu_ce(const struct kdcl_host *h, kdcl_kernel *ce,
                             const kdcl_tensor *logits,
                             const kdcl_tensor *labels, kdcl_tensor *grad,
                             kdcl_tensor *rows, int64_t B, int64_t C,
                             int row_stride, float scale, int accumulate)
{
    size_t wg = kdcl_pu_wg(h, ce, 64);
    size_t g = (size_t)B * wg;
    const struct kdcl_arg args[] = {
        KDCL_A_TENSOR(logits),
        KDCL_A_TENSOR(labels),
        KDCL_A_TENSOR(grad),
        KDCL_A_TENSOR(rows),
        KDCL_A_I32((int32_t)C),
        KDCL_A_I32(row_stride),
        KDCL_A_F32(scale),
        KDCL_A_I32(grad != NULL),
        KDCL_A_I32(accumulate),
        KDCL_A_LOCAL(wg * 2 * sizeof(float)),
    };
    return h->launch(h->ctx, ce, 1, &g, &wg, sizeof args / sizeof args[0],
                     args);
}

#endif /* KDCL_PLUGIN_UTIL_H */
