/*
 * tests/harness.c - see harness.h.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "harness.h"
#include "npy.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/wait.h>

static kdcl_context *g_ctx;
static kdcl_registry *g_reg;

/* Free the shared context at exit: CLBlast's cache must be cleared
   before the driver goes (see kdcl_context_free). */
static void free_ctx(void)
{
    kdcl_registry_free(g_reg);
    g_reg = NULL;
    kdcl_context_free(g_ctx);
    g_ctx = NULL;
}

kdcl_context *th_ctx(void)
{
    const char *spec = getenv("KDCL_TEST_DEVICE");
    int status;
    if (g_ctx)
        return g_ctx;
    /* Not under the checker: Oclgrind 21.10 crashes ("corrupted
       double-linked list") when a context is released from an exit
       handler. */
    if (!getenv("KDCL_CHECKER"))
        atexit(free_ctx);
    status = kdcl_context_init(&g_ctx);
    if (!status)
        status = kdcl_context_open(g_ctx, spec && *spec ? spec : "auto");
    cr_assert_eq(status, KDCL_OK, "no test device: %s",
                 kdcl_context_errmsg(g_ctx));
    return g_ctx;
}

kdcl_registry *th_registry(void)
{
    if (g_reg)
        return g_reg;
    cr_assert_eq(kdcl_registry_init(&g_reg), KDCL_OK);
    kdcl_registry_load_dir(g_reg, KDCL_TEST_PLUGIN_DIR);
    return g_reg;
}

const struct kdcl_plugin *th_plugin(const char *name)
{
    const struct kdcl_plugin *p = kdcl_registry_find(th_registry(), name);
    cr_assert_not_null(p, "plugin %s not found in %s", name,
                       KDCL_TEST_PLUGIN_DIR);
    return p;
}

bool th_small(void)
{
    const char *e = getenv("KDCL_TEST_SMALL");
    return e && strcmp(e, "0") != 0;
}

bool th_checking(void)
{
    const char *e = getenv("KDCL_TEST_CHECKING");
    return e && strcmp(e, "0") != 0;
}

int th_run(const char *name, const char *const *sets, size_t n_sets,
           struct th_input *ins, size_t n_in, double *loss, double *terms,
           size_t n_terms)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_plugin *p = th_plugin(name);
    kdcl_params *params = NULL;
    kdcl_run *run = NULL;
    kdcl_tensor *t[16] = {0}, *g[16] = {0};
    int status;

    cr_assert(n_in <= 16);
    status = kdcl_params_init(ctx, p, &params);
    for (size_t i = 0; !status && i < n_sets; i++)
        status = kdcl_params_set_kv(params, sets[i]);
    if (!status)
        status = kdcl_run_init(ctx, p, params, &run);
    for (size_t i = 0; !status && i < n_in; i++) {
        struct th_input *in = &ins[i];
        status = kdcl_tensor_init(ctx, in->dtype, in->ndim, in->shape, &t[i]);
        if (!status)
            status = kdcl_tensor_write(t[i], in->data, kdcl_tensor_bytes(t[i]));
        if (!status)
            status = kdcl_run_set_input(run, in->name, t[i]);
        if (!status && in->grad) {
            status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, in->ndim,
                                      in->shape, &g[i]);
            /* Poison, so that an unwritten gradient cannot pass.  A
               blocking write, not kdcl_tensor_fill: under Oclgrind 21.10 a
               clEnqueueFillBuffer into a reused allocation makes later
               kernels' values read as uninitialised. */
            if (!status) {
                size_t n = (size_t)kdcl_tensor_numel(g[i]);
                float *nan_buf = malloc((n ? n : 1) * sizeof *nan_buf);
                cr_assert_not_null(nan_buf);
                for (size_t e = 0; e < n; e++)
                    nan_buf[e] = NAN;
                status = kdcl_tensor_write(g[i], nan_buf, n * sizeof *nan_buf);
                free(nan_buf);
            }
            if (!status)
                status = kdcl_run_set_grad(run, in->name, g[i]);
        }
    }
    if (!status)
        status = kdcl_run_forward(run);
    if (!status)
        status = kdcl_run_backward(run);
    if (!status)
        status = kdcl_run_result(run, loss, terms, n_terms);
    for (size_t i = 0; !status && i < n_in; i++)
        if (g[i])
            status = kdcl_tensor_read(g[i], ins[i].grad,
                                      kdcl_tensor_bytes(g[i]));
    kdcl_run_free(run);
    for (size_t i = 0; i < n_in; i++) {
        kdcl_tensor_free(t[i]);
        kdcl_tensor_free(g[i]);
    }
    kdcl_params_free(params);
    return status;
}

static uint64_t next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

void th_fill_uniform(float *v, size_t n, double lo, double hi, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        double u = (double)(next(&s) >> 11) * (1.0 / 9007199254740992.0);
        v[i] = (float)(lo + (hi - lo) * u);
    }
}

void th_fill_labels(int32_t *v, size_t n, int32_t range, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 7;
    for (size_t i = 0; i < n; i++)
        v[i] = (int32_t)(next(&s) % (uint64_t)range);
}

void th_fd_grad(double (*f)(const double *x, void *user), void *user,
                double *x, size_t n, double h, double *g)
{
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i], fp, fm;
        x[i] = x0 + h;
        fp = f(x, user);
        x[i] = x0 - h;
        fm = f(x, user);
        x[i] = x0;
        g[i] = (fp - fm) / (2.0 * h);
    }
}

void th_assert_close(const float *got, const double *want, size_t n,
                     double atol, double rtol, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        cr_assert(isfinite(got[i]) && d <= atol + rtol * fabs(want[i]),
                  "%s[%zu]: got %.9g, want %.9g (diff %.3g)", what, i,
                  (double)got[i], want[i], d);
    }
}

void th_assert_close1(double got, double want, double atol, double rtol,
                      const char *what)
{
    double d = fabs(got - want);
    cr_assert(isfinite(got) && d <= atol + rtol * fabs(want),
              "%s: got %.9g, want %.9g (diff %.3g)", what, got, want, d);
}

void th_to_double(const float *src, double *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}

int th_cli(const char *args, char *out, size_t len, char *err, size_t err_len)
{
    char cmd[8192], errpath[512];
    FILE *p;
    size_t n = 0;
    int status;
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", th_tmpdir());
    snprintf(cmd, sizeof cmd, "%s %s 2>%s", KDCL_TEST_EXE, args, errpath);
    p = popen(cmd, "r");
    cr_assert_not_null(p, "popen failed");
    if (out && len) {
        n = fread(out, 1, len - 1, p);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof sink, p) > 0)
            ;
    }
    status = pclose(p);
    if (err && err_len) {
        FILE *f = fopen(errpath, "r");
        size_t m = 0;
        if (f) {
            m = fread(err, 1, err_len - 1, f);
            fclose(f);
        }
        err[m] = '\0';
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_npy(const char *path, int dtype, const void *v,
                      uint32_t ndim, const int64_t *shape)
{
    struct kdcl__array a = {0};
    char err[512];
    a.dtype = dtype;
    a.ndim = ndim;
    a.numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        a.shape[i] = shape[i];
        a.numel *= shape[i];
    }
    a.data = (void *)v;
    cr_assert_eq(kdcl__npy_write(path, &a, err, sizeof err), KDCL_OK, "%s",
                 err);
}

void th_npy_f32(const char *path, const float *v, uint32_t ndim,
                const int64_t *shape)
{
    write_npy(path, KDCL_DTYPE_F32, v, ndim, shape);
}

void th_npy_i32(const char *path, const int32_t *v, uint32_t ndim,
                const int64_t *shape)
{
    write_npy(path, KDCL_DTYPE_I32, v, ndim, shape);
}

static char g_tmpdir[256];

static int rm_entry(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_tmpdir(void)
{
    if (g_tmpdir[0])
        nftw(g_tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *th_tmpdir(void)
{
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/kdcl-test-XXXXXX");
        cr_assert_not_null(mkdtemp(g_tmpdir), "mkdtemp failed");
        atexit(rm_tmpdir); /* each test runs in its own process */
    }
    return g_tmpdir;
}

double th_parse_value(const char *out, const char *key)
{
    char pat[256];
    const char *p;
    snprintf(pat, sizeof pat, "%s ", key);
    for (p = out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, pat, strlen(pat)) == 0)
            return strtod(p + strlen(pat), NULL);
    cr_assert_fail("no '%s' line in output:\n%s", key, out);
    return NAN;
}

void th_featpair_logits_without_labels(const char *plugin)
{
    float fs[20], ft[24], z[12], gfs[20], gz[12];
    double loss, t[2];
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {4, 5}, fs, gfs},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 6}, ft, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {4, 3}, z, gz},
    };
    th_fill_uniform(fs, 20, -3, 3, 18);
    th_fill_uniform(ft, 24, -3, 3, 19);
    th_fill_uniform(z, 12, -3, 3, 20);
    cr_assert_eq(th_run(plugin, NULL, 0, in, 3, &loss, t, 2), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    for (int i = 0; i < 12; i++)
        cr_assert(gz[i] == 0.0f, "logits grad[%d] = %g", i, gz[i]);
    cr_assert(loss > 0 && isfinite(gfs[0]));
}

void th_featpair_rejects_bad_shapes(const char *plugin)
{
    float fs[8] = {0}, ft[9] = {0};
    double loss, t[2];
    const char *msg;
    struct th_input one_d[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 1, {8}, ft, NULL},
    };
    struct th_input batch[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {3, 3}, ft, NULL},
    };
    struct th_input logits[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 4}, ft, NULL},
        {"student.logits", KDCL_DTYPE_F32, 1, {3}, ft, NULL},
    };
    cr_assert_eq(th_run(plugin, NULL, 0, one_d, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "teacher.feat") && strstr(msg, "[8]"), "%s", msg);
    cr_assert_eq(th_run(plugin, NULL, 0, batch, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.feat [2,4]")
                  && strstr(msg, "teacher.feat [3,3]"),
              "%s", msg);
    cr_assert_eq(th_run(plugin, NULL, 0, logits, 3, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.logits") && strstr(msg, "[3]"), "%s", msg);
}

void th_featpair_rejects_missing_inputs(const char *plugin)
{
    float fs[6] = {0};
    int32_t y[2] = {0, 1};
    double loss, t[2];
    const char *sets[] = {"alpha=0.5"};
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {2}, y, NULL},
    };
    cr_assert_eq(th_run(plugin, NULL, 0, in, 1, &loss, t, 2), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
    cr_assert_eq(th_run(plugin, sets, 1, in, 2, &loss, t, 2), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    cr_assert_eq(th_run(plugin, NULL, 0, in, 3, &loss, t, 2), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

void th_logitpair_rejects_mismatched_shapes(const char *plugin)
{
    float zs[6] = {0}, zt[8] = {0};
    double loss, t[8];
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 4}, zt, NULL},
    };
    cr_assert_eq(th_run(plugin, NULL, 0, in, 2, &loss, t, 0), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

void th_logitpair_rejects_non_2d_logits(const char *plugin)
{
    float zs[6] = {0};
    double loss, t[8];
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 1, {6}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 1, {6}, zs, NULL},
    };
    cr_assert_eq(th_run(plugin, NULL, 0, in, 2, &loss, t, 0), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

void th_logitpair_rejects_missing_teacher(const char *plugin)
{
    float zs[6] = {0};
    double loss, t[8];
    struct th_input in[1] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
    };
    cr_assert_eq(th_run(plugin, NULL, 0, in, 1, &loss, t, 0), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

void th_logitpair_rejects_bad_labels(const char *plugin)
{
    float zs[6] = {0};
    int32_t y3[3] = {0, 1, 2}, y2[2] = {0, 3}, yneg[2] = {0, -5};
    double loss, t[8];
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {3}, y3, NULL},
    };
    cr_assert_eq(th_run(plugin, NULL, 0, in, 3, &loss, t, 0), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    in[2].shape[0] = 2;
    in[2].data = y2;
    cr_assert_eq(th_run(plugin, NULL, 0, in, 3, &loss, t, 0), KDCL_ERANGE);
    in[2].data = yneg;
    cr_assert_eq(th_run(plugin, NULL, 0, in, 3, &loss, t, 0), KDCL_ERANGE);
}
