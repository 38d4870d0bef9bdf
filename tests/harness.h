/*
 * tests/harness.h - shared test helpers: one OpenCL context per test
 * process (device from KDCL_TEST_DEVICE, default auto), the in-tree plugin
 * registry, running a plugin on host arrays, float64 finite differences
 * and tolerance checks.
 */
#ifndef KDCL_TEST_HARNESS_H
#define KDCL_TEST_HARNESS_H

#include "kdcl/kdcl.h"

#include <stdbool.h>
#include <stddef.h>

/* The process's context, opened on first use (a test fails if none). */
kdcl_context *th_ctx(void);
/* The in-tree plugins (build/plugins), loaded on first use. */
kdcl_registry *th_registry(void);
/* Plugin by name; the test fails when it is not there. */
const struct kdcl_plugin *th_plugin(const char *name);
/* True when tests should keep shapes tiny (KDCL_TEST_SMALL=1, Oclgrind). */
bool th_small(void);

/* True under a checking implementation (KDCL_TEST_CHECKING=1, Oclgrind
   with --check-api): tests that provoke OpenCL API errors on purpose skip
   themselves, since the checker reports every such error. */
bool th_checking(void);

/* A named input for th_run: host data (f32 or i32) and shape. */
struct th_input {
    const char *name;
    int dtype;            /* KDCL_DTYPE_F32 or KDCL_DTYPE_I32 */
    uint32_t ndim;
    int64_t shape[4];
    const void *data;
    float *grad;          /* when non-NULL: receives the gradient */
};

/*
 * Run plugin `name` with "key=value" settings on the inputs; fills loss and
 * terms (up to n_terms) and every requested gradient.  Returns the status;
 * the context's message explains a failure.
 */
int th_run(const char *name, const char *const *sets, size_t n_sets,
           struct th_input *ins, size_t n_in, double *loss, double *terms,
           size_t n_terms);

/* Deterministic uniform floats in [lo, hi). */
void th_fill_uniform(float *v, size_t n, double lo, double hi, uint64_t seed);
/* Deterministic ints in [0, range). */
void th_fill_labels(int32_t *v, size_t n, int32_t range, uint64_t seed);

/* Central differences of f at x (n values) with step h, into g. */
void th_fd_grad(double (*f)(const double *x, void *user), void *user,
                double *x, size_t n, double h, double *g);

/* Assert |got - want| <= atol + rtol * |want| for every element. */
void th_assert_close(const float *got, const double *want, size_t n,
                     double atol, double rtol, const char *what);
void th_assert_close1(double got, double want, double atol, double rtol,
                      const char *what);

/*
 * Run the kdcl program (built in this tree) with args (a shell-quoted
 * string); stdout goes to out (NUL-terminated, truncated to len), stderr
 * to err when non-NULL.  Returns the exit status.
 */
int th_cli(const char *args, char *out, size_t len, char *err,
           size_t err_len);
/* Write a float32 / int32 .npy file (test fails on error). */
void th_npy_f32(const char *path, const float *v, uint32_t ndim,
                const int64_t *shape);
void th_npy_i32(const char *path, const int32_t *v, uint32_t ndim,
                const int64_t *shape);
/* A fresh temporary directory for this test (removed by the OS/tmp). */
const char *th_tmpdir(void);
/* The value of "loss <v>" or "term <name> <v>" in kdcl loss output. */
double th_parse_value(const char *out, const char *key);

/*
 * Input checks shared by the feature-pair plugins (student.feat and
 * teacher.feat flattened to [B,D], optional student.logits + labels task
 * term through plugin_util.h): logits without labels run with a zero
 * logits gradient; bad ranks and shapes are KDCL_ESHAPE naming the input
 * and its shape; missing inputs are KDCL_EMISSING naming what is missing.
 */
void th_featpair_logits_without_labels(const char *plugin);
void th_featpair_rejects_bad_shapes(const char *plugin);
void th_featpair_rejects_missing_inputs(const char *plugin);

/*
 * Input checks shared by the logit-pair plugins with -100 label masking
 * (jsd, tvd, skewkl): mismatched and non-2-D logits are KDCL_ESHAPE
 * naming the input; a missing teacher is KDCL_EMISSING; labels of the
 * wrong length are KDCL_ESHAPE and out of range (not -100) KDCL_ERANGE.
 */
void th_logitpair_rejects_mismatched_shapes(const char *plugin);
void th_logitpair_rejects_non_2d_logits(const char *plugin);
void th_logitpair_rejects_missing_teacher(const char *plugin);
void th_logitpair_rejects_bad_labels(const char *plugin);

/* Copy floats to doubles. */
void th_to_double(const float *src, double *dst, size_t n);

#endif /* KDCL_TEST_HARNESS_H */
