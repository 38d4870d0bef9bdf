/*
 * tests/test-launch.c - tests of kernels and launches (core/program.c):
 * global sizes with and without a local size (rounded up when it does not
 * divide), every argument kind, argument errors, bad kernel names, empty
 * launches, work-group size queries and per-launch profiling.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *src =
    "/* tests/test-launch.c kernels */\n"
    "kernel void saxpy(global float *y, global const float *x, float a,\n"
    "                  int n)\n"
    "{\n"
    "    int i = (int)get_global_id(0);\n"
    "    if (i < n)\n"
    "        y[i] = a * x[i] + y[i];\n"
    "}\n"
    "\n"
    "/* No bounds check: every work-item writes, so the launched size\n"
    "   shows. */\n"
    "kernel void mark(global int *out)\n"
    "{\n"
    "    int i = (int)get_global_id(0);\n"
    "    out[i] = i + 1;\n"
    "}\n"
    "\n"
    "/* One work-group layout per launch: scratch holds one int per\n"
    "   work-item; each reads its right neighbour's slot. */\n"
    "kernel void kinds(global int *oi, global uint *ou, global long *ol,\n"
    "                  global float *of, global int *oloc, int a, uint b,\n"
    "                  long c, float d, local int *scratch)\n"
    "{\n"
    "    int l = (int)get_local_id(0), n = (int)get_local_size(0);\n"
    "    int g = (int)get_global_id(0);\n"
    "    scratch[l] = g * 10;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    oloc[g] = scratch[(l + 1) % n];\n"
    "    if (g == 0) {\n"
    "        oi[0] = a;\n"
    "        ou[0] = b;\n"
    "        ol[0] = c;\n"
    "        of[0] = d;\n"
    "    }\n"
    "}\n";

static kdcl_kernel *kernel(const char *name)
{
    kdcl_context *ctx = th_ctx();
    kdcl_program *prog = NULL;
    kdcl_kernel *k = NULL;
    cr_assert_eq(kdcl_program_build(ctx, src, NULL, &prog), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_kernel_init(ctx, prog, name, &k), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    cr_assert_not_null(k);
    return k;
}

static kdcl_tensor *make1(int dtype, int64_t n)
{
    kdcl_context *ctx = th_ctx();
    kdcl_tensor *t = NULL;
    cr_assert_eq(kdcl_tensor_init(ctx, dtype, 1, &n, &t), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    return t;
}

/* y[i] = i, x[i] = 2i - 3 for n elements. */
static void saxpy_inputs(kdcl_tensor *y, kdcl_tensor *x, int n)
{
    float *yv = calloc((size_t)n, sizeof *yv), *xv = calloc((size_t)n, 4);
    cr_assert(yv && xv);
    for (int i = 0; i < n; i++) {
        yv[i] = (float)i;
        xv[i] = 2.0f * (float)i - 3.0f;
    }
    cr_assert_eq(kdcl_tensor_write(y, yv, (size_t)n * 4), KDCL_OK);
    cr_assert_eq(kdcl_tensor_write(x, xv, (size_t)n * 4), KDCL_OK);
    free(yv);
    free(xv);
}

/* y must hold a * x + y of saxpy_inputs, exactly (small integers). */
static void saxpy_check(const kdcl_tensor *y, int n, float a)
{
    float *yv = calloc((size_t)n, sizeof *yv);
    cr_assert_not_null(yv);
    cr_assert_eq(kdcl_tensor_read(y, yv, (size_t)n * 4), KDCL_OK);
    for (int i = 0; i < n; i++) {
        float want = a * (2.0f * (float)i - 3.0f) + (float)i;
        cr_assert_eq(yv[i], want, "y[%d] = %g, want %g", i, (double)yv[i],
                     (double)want);
    }
    free(yv);
}

static int saxpy(kdcl_kernel *k, kdcl_tensor *y, kdcl_tensor *x, float a,
                 int n, const size_t *local)
{
    size_t global = (size_t)n;
    return kdcl_kernel_launch(th_ctx(), k, 1, &global, local, 4,
                              (struct kdcl_arg[]){KDCL_A_TENSOR(y),
                                                  KDCL_A_TENSOR(x),
                                                  KDCL_A_F32(a),
                                                  KDCL_A_I32(n)});
}

/* ---------------------------------------------------------------------- */
/* Launch geometry                                                         */

Test(launch, saxpy_without_local_size)
{
    int n = th_small() ? 37 : 1001;
    kdcl_kernel *k = kernel("saxpy");
    kdcl_tensor *y = make1(KDCL_DTYPE_F32, n), *x = make1(KDCL_DTYPE_F32, n);
    saxpy_inputs(y, x, n);
    cr_assert_eq(saxpy(k, y, x, 0.5f, n, NULL), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    saxpy_check(y, n, 0.5f);
    kdcl_tensor_free(y);
    kdcl_tensor_free(x);
    kdcl_kernel_free(k);
}

Test(launch, saxpy_with_local_size_not_dividing_global)
{
    int n = th_small() ? 37 : 1001; /* odd, so no local size > 1 divides */
    kdcl_kernel *k = kernel("saxpy");
    size_t wg = kdcl_kernel_wg_size(th_ctx(), k);
    size_t local = wg < 8 ? wg : 8;
    kdcl_tensor *y = make1(KDCL_DTYPE_F32, n), *x = make1(KDCL_DTYPE_F32, n);
    saxpy_inputs(y, x, n);
    cr_assert_eq(saxpy(k, y, x, -2.0f, n, &local), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    saxpy_check(y, n, -2.0f);
    kdcl_tensor_free(y);
    kdcl_tensor_free(x);
    kdcl_kernel_free(k);
}

Test(launch, global_size_is_rounded_up_to_the_local_size)
{
    enum { G = 37, L = 8, ROUNDED = 40, PAD = 8 };
    kdcl_kernel *k = kernel("mark");
    kdcl_tensor *out = make1(KDCL_DTYPE_I32, ROUNDED + PAD);
    size_t global = G, local = L;
    int32_t v[ROUNDED + PAD];
    if (kdcl_kernel_wg_size(th_ctx(), k) < L)
        cr_skip_test("work-groups of %d are too large here", L);
    cr_assert_eq(kdcl_tensor_fill(out, -1.0), KDCL_OK);
    cr_assert_eq(kdcl_kernel_launch(th_ctx(), k, 1, &global, &local, 1,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out)}),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(global, G, "the caller's global size was changed");
    cr_assert_eq(kdcl_tensor_read(out, v, sizeof v), KDCL_OK);
    for (int i = 0; i < ROUNDED + PAD; i++) {
        int want = i < ROUNDED ? i + 1 : -1;
        cr_assert_eq(v[i], want, "out[%d] = %d, want %d", i, v[i], want);
    }
    kdcl_tensor_free(out);
    kdcl_kernel_free(k);
}

Test(launch, two_dimensional_launch_rounds_every_dimension)
{
    /* mark indexes by get_global_id(0) only; a 2-D launch of 5 x 3 with
       local 4 x 2 runs 8 x 4 work-items, so ids 0..7 are written. */
    kdcl_kernel *k = kernel("mark");
    kdcl_tensor *out = make1(KDCL_DTYPE_I32, 12);
    size_t global[2] = {5, 3}, local[2] = {4, 2};
    int32_t v[12];
    cr_assert_eq(kdcl_tensor_fill(out, -1.0), KDCL_OK);
    cr_assert_eq(kdcl_kernel_launch(th_ctx(), k, 2, global, local, 1,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out)}),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(kdcl_tensor_read(out, v, sizeof v), KDCL_OK);
    for (int i = 0; i < 12; i++)
        cr_assert_eq(v[i], i < 8 ? i + 1 : -1, "out[%d] = %d", i, v[i]);
    kdcl_tensor_free(out);
    kdcl_kernel_free(k);
}

Test(launch, global_size_zero_is_a_no_op)
{
    kdcl_context *ctx = th_ctx();
    kdcl_kernel *k = kernel("mark");
    kdcl_tensor *out = make1(KDCL_DTYPE_I32, 8);
    size_t zero = 0, local = 4, global2[2] = {8, 0};
    const struct kdcl_profile_record *recs = NULL;
    size_t n_recs = 99;
    int32_t v[8];
    cr_assert_eq(kdcl_tensor_fill(out, -1.0), KDCL_OK);
    kdcl_context_set_profiling(ctx, 1);
    kdcl_context_profile_clear(ctx);
    cr_assert_eq(kdcl_kernel_launch(ctx, k, 1, &zero, NULL, 1,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out)}),
                 KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_kernel_launch(ctx, k, 1, &zero, &local, 1,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out)}),
                 KDCL_OK);
    cr_assert_eq(kdcl_kernel_launch(ctx, k, 2, global2, NULL, 1,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out)}),
                 KDCL_OK);
    cr_assert_eq(kdcl_context_profile(ctx, &recs, &n_recs), KDCL_OK);
    cr_assert_eq(n_recs, 0, "an empty launch was recorded");
    cr_assert_eq(kdcl_tensor_read(out, v, sizeof v), KDCL_OK);
    for (int i = 0; i < 8; i++)
        cr_assert_eq(v[i], -1, "out[%d] was written", i);
    kdcl_context_set_profiling(ctx, 0);
    kdcl_tensor_free(out);
    kdcl_kernel_free(k);
}

Test(launch, bad_work_dim_is_einval)
{
    kdcl_kernel *k = kernel("mark");
    kdcl_tensor *out = make1(KDCL_DTYPE_I32, 8);
    size_t g[4] = {8, 1, 1, 1};
    struct kdcl_arg arg = KDCL_A_TENSOR(out);
    cr_assert_eq(kdcl_kernel_launch(th_ctx(), k, 0, g, NULL, 1, &arg),
                 KDCL_EINVAL);
    cr_assert_eq(kdcl_kernel_launch(th_ctx(), k, 4, g, NULL, 1, &arg),
                 KDCL_EINVAL);
    cr_assert_eq(kdcl_kernel_launch(th_ctx(), NULL, 1, g, NULL, 1, &arg),
                 KDCL_EINVAL);
    kdcl_tensor_free(out);
    kdcl_kernel_free(k);
}

Test(launch, kernel_wg_size_is_at_least_one)
{
    kdcl_kernel *k = kernel("saxpy");
    size_t wg = kdcl_kernel_wg_size(th_ctx(), k);
    cr_assert_geq(wg, 1);
    cr_assert_leq(wg, kdcl_context_device(th_ctx())->max_wg_size);
    kdcl_kernel_free(k);
}

/* ---------------------------------------------------------------------- */
/* Arguments                                                               */

Test(launch, every_argument_kind_arrives_exactly)
{
    enum { G = 8, L = 4 };
    kdcl_context *ctx = th_ctx();
    kdcl_kernel *k = kernel("kinds");
    kdcl_tensor *oi = make1(KDCL_DTYPE_I32, 1);
    kdcl_tensor *ou = make1(KDCL_DTYPE_I32, 1);
    kdcl_tensor *ol = make1(KDCL_DTYPE_I64, 1);
    kdcl_tensor *of = make1(KDCL_DTYPE_F32, 1);
    kdcl_tensor *oloc = make1(KDCL_DTYPE_I32, G);
    const int32_t a = -123456789;
    const uint32_t b = 0xF0000001u; /* not an int32 */
    const int64_t c = -(1ll << 40) - 5; /* not an int32 */
    const float d = 3.0f / 7.0f;
    size_t global = G, local = L;
    int32_t vi, vloc[G];
    uint32_t vu;
    int64_t vl;
    float vf;
    if (kdcl_kernel_wg_size(ctx, k) < L)
        cr_skip_test("work-groups of %d are too large here", L);
    cr_assert_eq(
        kdcl_kernel_launch(ctx, k, 1, &global, &local, 10,
                           (struct kdcl_arg[]){
                               KDCL_A_TENSOR(oi), KDCL_A_TENSOR(ou),
                               KDCL_A_TENSOR(ol), KDCL_A_TENSOR(of),
                               KDCL_A_TENSOR(oloc), KDCL_A_I32(a),
                               KDCL_A_U32(b), KDCL_A_I64(c), KDCL_A_F32(d),
                               KDCL_A_LOCAL(L * sizeof(int32_t))}),
        KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_tensor_read(oi, &vi, sizeof vi), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(ou, &vu, sizeof vu), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(ol, &vl, sizeof vl), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(of, &vf, sizeof vf), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(oloc, vloc, sizeof vloc), KDCL_OK);
    cr_assert_eq(vi, a, "i32 %d", vi);
    cr_assert_eq(vu, b, "u32 %u", vu);
    cr_assert_eq(vl, c, "i64 %lld", (long long)vl);
    cr_assert(memcmp(&vf, &d, sizeof vf) == 0, "f32 %.9g", (double)vf);
    for (int g = 0; g < G; g++) {
        int want = ((g / L) * L + (g % L + 1) % L) * 10;
        cr_assert_eq(vloc[g], want, "local[%d] = %d, want %d", g, vloc[g],
                     want);
    }
    kdcl_tensor_free(oi);
    kdcl_tensor_free(ou);
    kdcl_tensor_free(ol);
    kdcl_tensor_free(of);
    kdcl_tensor_free(oloc);
    kdcl_kernel_free(k);
}

Test(launch, f64_argument_arrives_exactly)
{
    static const char *src64 =
        "/* tests/test-launch.c: f64 argument */\n"
        "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
        "kernel void twice(global double *out, double x)\n"
        "{\n"
        "    out[0] = 2.0 * x;\n"
        "}\n";
    kdcl_context *ctx = th_ctx();
    kdcl_program *prog = NULL;
    kdcl_kernel *k = NULL;
    kdcl_tensor *out;
    const double x = 1.0 + ldexp(1.0, -40); /* not a float */
    size_t global = 1;
    double v = 0.0;
    if (!kdcl_context_device(ctx)->fp64)
        cr_skip_test("the device has no fp64");
    cr_assert_eq(kdcl_program_build(ctx, src64, NULL, &prog), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_kernel_init(ctx, prog, "twice", &k), KDCL_OK);
    out = make1(KDCL_DTYPE_F64, 1);
    cr_assert_eq(kdcl_kernel_launch(ctx, k, 1, &global, NULL, 2,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out),
                                                        KDCL_A_F64(x)}),
                 KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_tensor_read(out, &v, sizeof v), KDCL_OK);
    cr_assert_eq(v, 2.0 * x, "f64 %.17g", v);
    kdcl_tensor_free(out);
    kdcl_kernel_free(k);
}

Test(launch, bad_kernel_name_is_an_error_naming_it)
{
    kdcl_context *ctx = th_ctx();
    kdcl_program *prog = NULL;
    kdcl_kernel *k = (kdcl_kernel *)&k;
    int status;
    if (th_checking())
        cr_skip_test("the failing clCreateKernel would be reported");
    cr_assert_eq(kdcl_program_build(ctx, src, NULL, &prog), KDCL_OK);
    status = kdcl_kernel_init(ctx, prog, "no_such_kernel_xyz", &k);
    cr_assert_neq(status, KDCL_OK);
    cr_assert_lt(status, 0);
    cr_assert_null(k);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "no_such_kernel_xyz") != NULL,
              "message does not name the kernel: %s",
              kdcl_context_errmsg(ctx));
}

Test(launch, kernel_init_with_null_program_is_einval)
{
    kdcl_kernel *k = (kdcl_kernel *)&k;
    cr_assert_eq(kdcl_kernel_init(th_ctx(), NULL, "saxpy", &k), KDCL_EINVAL);
    cr_assert_null(k);
    kdcl_kernel_free(NULL); /* a no-op */
}

Test(launch, argument_kind_out_of_range_is_einval)
{
    kdcl_kernel *k = kernel("saxpy");
    kdcl_tensor *y = make1(KDCL_DTYPE_F32, 4), *x = make1(KDCL_DTYPE_F32, 4);
    size_t global = 4;
    struct kdcl_arg args[4] = {KDCL_A_TENSOR(y), KDCL_A_TENSOR(x),
                               KDCL_A_F32(1.0f), KDCL_A_I32(4)};
    static const uint32_t bad[] = {KDCL_ARG_U32 + 1, 99, UINT32_MAX};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        args[2].kind = bad[i];
        cr_assert_eq(kdcl_kernel_launch(th_ctx(), k, 1, &global, NULL, 4,
                                        args),
                     KDCL_EINVAL, "kind %u", bad[i]);
        cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "saxpy") != NULL,
                  "message does not name the kernel: %s",
                  kdcl_context_errmsg(th_ctx()));
    }
    kdcl_tensor_free(y);
    kdcl_tensor_free(x);
    kdcl_kernel_free(k);
}

Test(launch, wrong_argument_count_is_an_error)
{
    kdcl_kernel *k = kernel("saxpy"); /* fresh: no argument set yet */
    kdcl_tensor *y = make1(KDCL_DTYPE_F32, 4), *x = make1(KDCL_DTYPE_F32, 4);
    size_t global = 4;
    struct kdcl_arg args[5] = {KDCL_A_TENSOR(y), KDCL_A_TENSOR(x),
                               KDCL_A_F32(1.0f), KDCL_A_I32(4),
                               KDCL_A_I32(0)};
    int status;
    if (th_checking())
        cr_skip_test("the failing OpenCL calls would be reported");
    status = kdcl_kernel_launch(th_ctx(), k, 1, &global, NULL, 2, args);
    cr_assert_neq(status, KDCL_OK, "a launch with 2 of 4 arguments ran");
    cr_assert_gt(strlen(kdcl_context_errmsg(th_ctx())), 0);
    status = kdcl_kernel_launch(th_ctx(), k, 1, &global, NULL, 5, args);
    cr_assert_neq(status, KDCL_OK, "a launch with 5 of 4 arguments ran");
    cr_assert_gt(strlen(kdcl_context_errmsg(th_ctx())), 0);
    /* The kernel is still usable. */
    saxpy_inputs(y, x, 4);
    cr_assert_eq(saxpy(k, y, x, 3.0f, 4, NULL), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    saxpy_check(y, 4, 3.0f);
    kdcl_tensor_free(y);
    kdcl_tensor_free(x);
    kdcl_kernel_free(k);
}

Test(launch, wrong_argument_size_is_an_error)
{
    kdcl_kernel *k = kernel("saxpy");
    kdcl_tensor *y = make1(KDCL_DTYPE_F32, 4), *x = make1(KDCL_DTYPE_F32, 4);
    size_t global = 4;
    int status;
    if (th_checking())
        cr_skip_test("the failing clSetKernelArg would be reported");
    /* An i64 where the kernel takes an int. */
    status = kdcl_kernel_launch(th_ctx(), k, 1, &global, NULL, 4,
                                (struct kdcl_arg[]){KDCL_A_TENSOR(y),
                                                    KDCL_A_TENSOR(x),
                                                    KDCL_A_F32(1.0f),
                                                    KDCL_A_I64(4)});
    cr_assert_neq(status, KDCL_OK);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "saxpy") != NULL,
              "message does not name the kernel: %s",
              kdcl_context_errmsg(th_ctx()));
    /* An int where the kernel takes a buffer. */
    status = kdcl_kernel_launch(th_ctx(), k, 1, &global, NULL, 4,
                                (struct kdcl_arg[]){KDCL_A_I32(0),
                                                    KDCL_A_TENSOR(x),
                                                    KDCL_A_F32(1.0f),
                                                    KDCL_A_I32(4)});
    cr_assert_neq(status, KDCL_OK);
    kdcl_tensor_free(y);
    kdcl_tensor_free(x);
    kdcl_kernel_free(k);
}

/* ---------------------------------------------------------------------- */
/* Profiling                                                               */

Test(launch, profiling_records_each_launch_by_kernel_name)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    kdcl_kernel *ks = kernel("saxpy"), *km = kernel("mark");
    int n = th_small() ? 16 : 4096;
    kdcl_tensor *y = make1(KDCL_DTYPE_F32, n), *x = make1(KDCL_DTYPE_F32, n);
    kdcl_tensor *out = make1(KDCL_DTYPE_I32, n);
    const struct kdcl_profile_record *recs = NULL;
    size_t n_recs = 0, global = (size_t)n;
    saxpy_inputs(y, x, n);

    /* Off: nothing recorded. */
    cr_assert_eq(kdcl_context_set_profiling(ctx, 0), KDCL_OK);
    cr_assert_eq(saxpy(ks, y, x, 1.0f, n, NULL), KDCL_OK);
    cr_assert_eq(kdcl_context_profile(ctx, &recs, &n_recs), KDCL_OK);
    cr_assert_eq(n_recs, 0);

    cr_assert_eq(kdcl_context_set_profiling(ctx, 1), KDCL_OK);
    cr_assert_eq(saxpy(ks, y, x, 1.0f, n, NULL), KDCL_OK);
    cr_assert_eq(kdcl_kernel_launch(ctx, km, 1, &global, NULL, 1,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(out)}),
                 KDCL_OK);
    cr_assert_eq(saxpy(ks, y, x, 1.0f, n, NULL), KDCL_OK);
    cr_assert_eq(kdcl_context_profile(ctx, &recs, &n_recs), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    cr_assert_eq(n_recs, 3);
    cr_assert_str_eq(recs[0].name, "saxpy");
    cr_assert_str_eq(recs[1].name, "mark");
    cr_assert_str_eq(recs[2].name, "saxpy");
    for (size_t i = 0; i < n_recs; i++)
        if (d->type != KDCL_DEVICE_CPU)
            cr_assert_gt(recs[i].ns, 0, "record %zu (%s) took 0 ns", i,
                         recs[i].name);
    saxpy_check(y, n, 3.0f);

    kdcl_context_profile_clear(ctx);
    cr_assert_eq(kdcl_context_profile(ctx, &recs, &n_recs), KDCL_OK);
    cr_assert_eq(n_recs, 0, "clear left %zu records", n_recs);

    /* Recording resumes after a clear. */
    cr_assert_eq(saxpy(ks, y, x, 1.0f, n, NULL), KDCL_OK);
    cr_assert_eq(kdcl_context_profile(ctx, &recs, &n_recs), KDCL_OK);
    cr_assert_eq(n_recs, 1);
    cr_assert_str_eq(recs[0].name, "saxpy");
    kdcl_context_set_profiling(ctx, 0);
    kdcl_context_profile_clear(ctx);
    kdcl_tensor_free(y);
    kdcl_tensor_free(x);
    kdcl_tensor_free(out);
    kdcl_kernel_free(ks);
    kdcl_kernel_free(km);
}
