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

/*
 * The work-group size of the in-tree "one work-group per row" kernels: the
 * largest power of two <= 64 on a CPU device (which runs a work-group as a
 * loop, so fewer items mean fewer barriers per row) or <= 256 elsewhere
 * (GPUs want a full group per row), and <= the device's max_wg_size.
 * Never fails; at least 1.
 */
static inline size_t kdcl_pu_row_wg(const struct kdcl_host *h)
{
    const struct kdcl_device_info *dev = h->device(h->ctx);
    size_t wg = 1;
    while (wg * 2 <= (dev->type == KDCL_DEVICE_CPU ? 64u : 256u)
           && wg * 2 <= dev->max_wg_size)
        wg *= 2;
    return wg;
}

/*
 * kdcl_pu_build with the options "-DWG=<wg>" followed by extra (NULL or
 * "" for none; give it its leading space), wg = kdcl_pu_row_wg(h), which
 * is also stored in *wg.  Returns kdcl_pu_build's status; on error the
 * kernels made so far are in out and the caller frees them.
 */
static inline int kdcl_pu_build_wg(const struct kdcl_host *h,
                                   const char *source, const char *extra,
                                   size_t n, const char *const *names,
                                   kdcl_kernel **out, size_t *wg)
{
    char opts[96];
    *wg = kdcl_pu_row_wg(h);
    snprintf(opts, sizeof opts, "-DWG=%zu%s", *wg, extra ? extra : "");
    return kdcl_pu_build(h, source, opts, n, names, out);
}

/*
 * Require t to be [B,...] of rank >= 2 with every axis >= 1, seen as
 * [B,D]: *rows = B, *cols = D = the product of the other axes.  Otherwise
 * KDCL_ESHAPE, "<name> must be [B,...] of rank >= 2 with every axis >= 1
 * (flattened to [B,D]), got <shape>".
 */
static inline int kdcl_pu_flat2(const struct kdcl_host *h,
                                const kdcl_tensor *t, const char *name,
                                int64_t *rows, int64_t *cols)
{
    char sh[128];
    uint32_t nd = h->tensor_ndim(t);
    bool ok = nd >= 2;
    for (uint32_t i = 0; ok && i < nd; i++)
        ok = h->tensor_dim(t, (int)i) >= 1;
    if (!ok) {
        kdcl_pu_shape_str(h, t, sh, sizeof sh);
        return h->error(h->ctx, KDCL_ESHAPE,
                        "%s must be [B,...] of rank >= 2 with every axis "
                        ">= 1 (flattened to [B,D]), got %s",
                        name, sh);
    }
    *rows = h->tensor_dim(t, 0);
    *cols = h->tensor_numel(t) / *rows;
    return KDCL_OK;
}

/*
 * The feature pair of the feature- and relation-based plugins: the
 * required inputs student.feat and teacher.feat (KDCL_EMISSING "missing
 * input <name>" as kdcl_pu_need), each flattened to [B,D] by
 * kdcl_pu_flat2 (KDCL_ESHAPE naming the input), with the same B
 * (KDCL_ESHAPE "student.feat <shape> and teacher.feat <shape> differ in
 * batch size B").  On success *fs, *ft, *B, *Ds and *Dt are set; Ds and Dt
 * may differ.
 */
static inline int kdcl_pu_feat_pair(const struct kdcl_host *h,
                                    const kdcl_io *io, const kdcl_tensor **fs,
                                    const kdcl_tensor **ft, int64_t *B,
                                    int64_t *Ds, int64_t *Dt)
{
    char ss[128], st[128];
    int64_t Bt = 0;
    int status;

    if ((status = kdcl_pu_need(h, io, "student.feat", fs))
        || (status = kdcl_pu_need(h, io, "teacher.feat", ft))
        || (status = kdcl_pu_flat2(h, *fs, "student.feat", B, Ds))
        || (status = kdcl_pu_flat2(h, *ft, "teacher.feat", &Bt, Dt)))
        return status;
    if (*B == Bt)
        return KDCL_OK;
    kdcl_pu_shape_str(h, *fs, ss, sizeof ss);
    kdcl_pu_shape_str(h, *ft, st, sizeof st);
    return h->error(h->ctx, KDCL_ESHAPE,
                    "student.feat %s and teacher.feat %s differ in batch "
                    "size B",
                    ss, st);
}

/*
 * The optional task term of a plugin whose CE term needs both the optional
 * inputs student.logits and labels, B being the rows of student.feat:
 * *logits and *y are the inputs (NULL when absent), *has_ce whether both
 * are given, and *C the number of classes when logits are given.  Errors:
 * logits not [B,C] (KDCL_ESHAPE from kdcl_pu_2d, or "student.logits
 * <shape> must have one row per student.feat row (B=<B>)"); labels without
 * logits (KDCL_EMISSING "labels give a cross-entropy term on
 * student.logits, which is not given"); labels not [B] (KDCL_ESHAPE from
 * kdcl_pu_labels); alpha_set with alpha > 0 but no CE term (KDCL_EMISSING
 * "alpha = <alpha> weighs a cross-entropy term, which needs labels and
 * student.logits: give both or set alpha=0").
 */
static inline int kdcl_pu_feat_task(const struct kdcl_host *h,
                                    const kdcl_io *io, int64_t B,
                                    double alpha, int alpha_set,
                                    const kdcl_tensor **logits,
                                    const kdcl_tensor **y, int64_t *C,
                                    bool *has_ce)
{
    int64_t Bl = 0;
    int status;
    char sl[128];

    *logits = h->io_input(io, "student.logits");
    *y = h->io_input(io, "labels");
    *has_ce = *logits && *y;
    if (*logits) {
        if ((status = kdcl_pu_2d(h, *logits, "student.logits", &Bl, C)))
            return status;
        if (Bl != B) {
            kdcl_pu_shape_str(h, *logits, sl, sizeof sl);
            return h->error(h->ctx, KDCL_ESHAPE,
                            "student.logits %s must have one row per "
                            "student.feat row (B=%lld)",
                            sl, (long long)B);
        }
    }
    if (*y && !*logits)
        return h->error(h->ctx, KDCL_EMISSING,
                        "labels give a cross-entropy term on "
                        "student.logits, which is not given");
    if (*y && (status = kdcl_pu_labels(h, *y, B)))
        return status;
    if (!*has_ce && alpha_set && alpha > 0.0)
        return h->error(h->ctx, KDCL_EMISSING,
                        "alpha = %g weighs a cross-entropy term, which needs "
                        "labels and student.logits: give both or set "
                        "alpha=0",
                        alpha);
    return KDCL_OK;
}

/*
 * The label checks of a CE term on the optional student.logits (logits,
 * NULL when absent, whose rows the caller has already checked against B)
 * with the optional labels y.  Errors: labels without logits
 * (KDCL_EMISSING "missing input student.logits: labels are given and the
 * cross-entropy term needs the student's logits"); labels not [B]
 * (KDCL_ESHAPE from kdcl_pu_labels); no labels while alpha_set with
 * alpha > 0 (KDCL_EMISSING "alpha = <alpha> weighs a cross-entropy term,
 * which needs labels (and student.logits): give them or set alpha=0").
 * On KDCL_OK the CE term is on exactly when y is not NULL.
 */
static inline int kdcl_pu_task_labels(const struct kdcl_host *h,
                                      const kdcl_tensor *logits,
                                      const kdcl_tensor *y, int64_t B,
                                      double alpha, int alpha_set)
{
    int status;

    if (y && !logits)
        return h->error(h->ctx, KDCL_EMISSING,
                        "missing input student.logits: labels are given and "
                        "the cross-entropy term needs the student's logits");
    if (y && (status = kdcl_pu_labels(h, y, B)))
        return status;
    if (!y && alpha_set && alpha > 0.0)
        return h->error(h->ctx, KDCL_EMISSING,
                        "alpha = %g weighs a cross-entropy term, which needs "
                        "labels (and student.logits): give them or set "
                        "alpha=0",
                        alpha);
    return KDCL_OK;
}

/*
 * The optional labels input of a response-based plugin whose CE term is on
 * its required student.logits [B,C]: *y = labels, or NULL when absent.
 * Errors: labels not [B] (KDCL_ESHAPE from kdcl_pu_labels); no labels
 * while alpha_set with alpha > 0 (KDCL_EMISSING "alpha = <alpha> weighs a
 * cross-entropy term, which needs labels: give labels or set alpha=0").
 */
static inline int kdcl_pu_opt_labels(const struct kdcl_host *h,
                                     const kdcl_io *io, int64_t B,
                                     double alpha, int alpha_set,
                                     const kdcl_tensor **y)
{
    int status;

    *y = h->io_input(io, "labels");
    if (*y && (status = kdcl_pu_labels(h, *y, B)))
        return status;
    if (!*y && alpha_set && alpha > 0.0)
        return h->error(h->ctx, KDCL_EMISSING,
                        "alpha = %g weighs a cross-entropy term, which needs "
                        "labels: give labels or set alpha=0",
                        alpha);
    return KDCL_OK;
}

/*
 * The CE term on optional logits: with has_ce, kdcl_pu_ce of logits [B,C]
 * against y into ce_rows[b] (row stride 1) with gradient scale into glog
 * (written, not accumulated; skipped when glog is NULL).  Without it,
 * logits do not enter the loss, so a requested glog is filled with zeros.
 * Returns the launch's or the fill's status.
 */
static inline int kdcl_pu_ce_or_zero(const struct kdcl_host *h,
                                     kdcl_kernel *ce, int has_ce,
                                     const kdcl_tensor *logits,
                                     const kdcl_tensor *y, kdcl_tensor *glog,
                                     kdcl_tensor *ce_rows, int64_t B,
                                     int64_t C, float scale)
{
    if (has_ce)
        return kdcl_pu_ce(h, ce, logits, y, glog, ce_rows, B, C, 1, scale,
                          0);
    if (glog)
        return h->tensor_fill(glog, 0.0);
    return KDCL_OK;
}

/*
 * Launch a plugin's "finish" kernel of the signature (rows, ce_rows, out,
 * int B, float kd_scale, float alpha, int has_ce) as one work-group of wg
 * items: it sums rows[0..B) and, with has_ce, ce_rows[0..B) (passed as
 * NULL without) into out.  Returns the launch's status.
 */
static inline int kdcl_pu_finish(const struct kdcl_host *h, kdcl_kernel *k,
                                 size_t wg, const kdcl_tensor *rows,
                                 const kdcl_tensor *ce_rows, kdcl_tensor *out,
                                 int64_t B, float kd_scale, float alpha,
                                 int has_ce)
{
    const struct kdcl_arg args[] = {
        KDCL_A_TENSOR(rows),
        KDCL_A_TENSOR(has_ce ? ce_rows : NULL),
        KDCL_A_TENSOR(out),
        KDCL_A_I32((int32_t)B),
        KDCL_A_F32(kd_scale),
        KDCL_A_F32(alpha),
        KDCL_A_I32(has_ce),
    };
    return h->launch(h->ctx, k, 1, &wg, &wg, sizeof args / sizeof args[0],
                     args);
}

/*
 * Add the cost of the CE term (kdcl_pu_ce: about 6 flops per logit;
 * logits read, gradient written, one value per row) to *flops and *bytes
 * when both student.logits and labels are in io; B is the batch size.
 */
static inline void kdcl_pu_ce_cost(const struct kdcl_host *h,
                                   const kdcl_io *io, double B,
                                   double *flops, double *bytes)
{
    const kdcl_tensor *logits = h->io_input(io, "student.logits");
    if (logits && h->io_input(io, "labels")) {
        double C = (double)h->tensor_numel(logits) / B;
        *flops += 6.0 * B * C;
        *bytes += 4.0 * (2.0 * B * C + B);
    }
}

#endif /* KDCL_PLUGIN_UTIL_H */
