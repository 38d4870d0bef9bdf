/*
 * tests/test-tensor.c - tests of device tensors (core/tensor.c): round trips
 * and fills of every dtype and rank, copies, views (as copies' and kernels'
 * operands, aligned and not), memory accounting, shape and size errors,
 * zero-element tensors, GEMM against a float64 reference on both paths
 * (the device's default, a host BLAS on CPU devices, and CLBlast forced
 * with KDCL_GEMM=clblast), and what a freed context leaves behind.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"

static const int all_dtypes[] = {KDCL_DTYPE_F32, KDCL_DTYPE_F64,
                                 KDCL_DTYPE_I32, KDCL_DTYPE_I64,
                                 KDCL_DTYPE_U8};
#define N_DTYPES (sizeof all_dtypes / sizeof all_dtypes[0])

static kdcl_tensor *make_on(kdcl_context *ctx, int dtype, uint32_t ndim,
                            const int64_t *shape)
{
    kdcl_tensor *t = NULL;
    int status = kdcl_tensor_init(ctx, dtype, ndim, shape, &t);
    cr_assert_eq(status, KDCL_OK, "tensor_init %s rank %u: %s",
                 kdcl_dtype_name(dtype), ndim, kdcl_context_errmsg(ctx));
    cr_assert_not_null(t);
    return t;
}

static kdcl_tensor *make(int dtype, uint32_t ndim, const int64_t *shape)
{
    return make_on(th_ctx(), dtype, ndim, shape);
}

static kdcl_tensor *make1(int dtype, int64_t n)
{
    return make(dtype, 1, (int64_t[]){n});
}

static kdcl_tensor *make1_on(kdcl_context *ctx, int dtype, int64_t n)
{
    return make_on(ctx, dtype, 1, (int64_t[]){n});
}

static void write_f32(kdcl_tensor *t, const float *v, size_t n)
{
    cr_assert_eq(kdcl_tensor_write(t, v, n * sizeof *v), KDCL_OK,
                 "tensor write failed");
}

static void read_f32(const kdcl_tensor *t, float *v, size_t n)
{
    cr_assert_eq(kdcl_tensor_read(t, v, n * sizeof *v), KDCL_OK,
                 "tensor read failed");
}

/* A context of the test's own on the test device, to be freed by the
   test.  The GEMM tests use one: freeing it is the point where the library
   must let go of what CLBlast compiled for it (see
   context_free_releases_gemm_programs). */
static kdcl_context *own_ctx(void)
{
    const char *spec = getenv("KDCL_TEST_DEVICE");
    kdcl_context *ctx = NULL;
    int status = kdcl_context_init(&ctx);
    if (!status)
        status = kdcl_context_open(ctx, spec && *spec ? spec : "auto");
    cr_assert_eq(status, KDCL_OK, "no test device: %s",
                 kdcl_context_errmsg(ctx));
    return ctx;
}

/* Deterministic bytes. */
static void fill_bytes(unsigned char *p, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x1234567;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p[i] = (unsigned char)(s >> 24);
    }
}

/* ---------------------------------------------------------------------- */
/* Round trips, fills, copies                                              */

Test(tensor, round_trip_every_dtype_and_rank_0_to_4)
{
    static const int64_t dims[4] = {3, 2, 5, 2};
    for (size_t d = 0; d < N_DTYPES; d++) {
        int dtype = all_dtypes[d];
        size_t esize = kdcl_dtype_size(dtype);
        for (uint32_t rank = 0; rank <= 4; rank++) {
            int64_t numel = 1;
            size_t bytes;
            unsigned char *in, *out;
            kdcl_tensor *t;
            for (uint32_t i = 0; i < rank; i++)
                numel *= dims[i];
            bytes = (size_t)numel * esize;
            t = make(dtype, rank, rank ? dims : NULL);
            cr_assert_eq(kdcl_tensor_dtype(t), dtype);
            cr_assert_eq(kdcl_tensor_ndim(t), rank);
            cr_assert_eq(kdcl_tensor_numel(t), numel, "rank %u numel %lld",
                         rank, (long long)kdcl_tensor_numel(t));
            cr_assert_eq(kdcl_tensor_bytes(t), bytes);
            for (uint32_t i = 0; i < rank; i++)
                cr_assert_eq(kdcl_tensor_dim(t, (int)i), dims[i]);
            in = malloc(bytes);
            out = malloc(bytes);
            cr_assert(in && out);
            fill_bytes(in, bytes, d * 10 + rank);
            memset(out, 0xa5, bytes);
            cr_assert_eq(kdcl_tensor_write(t, in, bytes), KDCL_OK);
            cr_assert_eq(kdcl_tensor_read(t, out, bytes), KDCL_OK);
            cr_assert(memcmp(in, out, bytes) == 0, "%s rank %u differs",
                      kdcl_dtype_name(dtype), rank);
            free(in);
            free(out);
            kdcl_tensor_free(t);
        }
    }
}

Test(tensor, write_and_read_of_the_wrong_size_are_einval)
{
    kdcl_tensor *t = make1(KDCL_DTYPE_I32, 4);
    int32_t v[5] = {1, 2, 3, 4, 5};
    cr_assert_eq(kdcl_tensor_write(t, v, sizeof v), KDCL_EINVAL);
    cr_assert_eq(kdcl_tensor_write(t, v, 3 * sizeof v[0]), KDCL_EINVAL);
    cr_assert_eq(kdcl_tensor_read(t, v, sizeof v), KDCL_EINVAL);
    cr_assert_gt(strlen(kdcl_context_errmsg(th_ctx())), 0);
    kdcl_tensor_free(t);
}

Test(tensor, fill_every_dtype)
{
    enum { N = 13 };
    kdcl_tensor *f32 = make1(KDCL_DTYPE_F32, N);
    kdcl_tensor *f64 = make1(KDCL_DTYPE_F64, N);
    kdcl_tensor *i32 = make1(KDCL_DTYPE_I32, N);
    kdcl_tensor *i64 = make1(KDCL_DTYPE_I64, N);
    kdcl_tensor *u8 = make1(KDCL_DTYPE_U8, N);
    float vf32[N];
    double vf64[N];
    int32_t vi32[N];
    int64_t vi64[N];
    uint8_t vu8[N];
    cr_assert_eq(kdcl_tensor_fill(f32, 1.5), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(f64, -2.0 / 3.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(i32, -123456789.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(i64, -7.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(u8, 200.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(f32, vf32, sizeof vf32), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(f64, vf64, sizeof vf64), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(i32, vi32, sizeof vi32), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(i64, vi64, sizeof vi64), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(u8, vu8, sizeof vu8), KDCL_OK);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(vf32[i], 1.5f, "f32[%d] = %g", i, (double)vf32[i]);
        cr_assert_eq(vf64[i], -2.0 / 3.0, "f64[%d] = %.17g", i, vf64[i]);
        cr_assert_eq(vi32[i], -123456789, "i32[%d] = %d", i, vi32[i]);
        cr_assert_eq(vi64[i], -7, "i64[%d] = %lld", i, (long long)vi64[i]);
        cr_assert_eq(vu8[i], 200, "u8[%d] = %u", i, vu8[i]);
    }
    kdcl_tensor_free(f32);
    kdcl_tensor_free(f64);
    kdcl_tensor_free(i32);
    kdcl_tensor_free(i64);
    kdcl_tensor_free(u8);
}

Test(tensor, copy_between_tensors_of_equal_count)
{
    enum { N = 12 };
    kdcl_tensor *a = make(KDCL_DTYPE_F32, 2, (int64_t[]){3, 4});
    kdcl_tensor *b = make(KDCL_DTYPE_F32, 1, (int64_t[]){N});
    float in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = (float)i * 0.25f - 1.0f;
    write_f32(a, in, N);
    cr_assert_eq(kdcl_tensor_fill(b, 9.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_copy(b, a), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    read_f32(b, out, N);
    cr_assert(memcmp(in, out, sizeof in) == 0);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
}

Test(tensor, copy_with_count_or_dtype_mismatch_is_an_error)
{
    kdcl_tensor *a = make1(KDCL_DTYPE_F32, 8);
    kdcl_tensor *b = make1(KDCL_DTYPE_F32, 7);
    kdcl_tensor *c = make1(KDCL_DTYPE_I32, 8);
    float out[7];
    int status;
    cr_assert_eq(kdcl_tensor_fill(a, 1.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(b, 2.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_copy(b, a), KDCL_ESHAPE);
    cr_assert_gt(strlen(kdcl_context_errmsg(th_ctx())), 0);
    cr_assert_eq(kdcl_tensor_copy(a, b), KDCL_ESHAPE);
    status = kdcl_tensor_copy(c, a);
    cr_assert(status == KDCL_ESHAPE || status == KDCL_EDTYPE, "status %s",
              kdcl_status_name(status));
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "i32") != NULL,
              "message does not name the dtypes: %s",
              kdcl_context_errmsg(th_ctx()));
    read_f32(b, out, 7);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(out[i], 2.0f, "a failed copy wrote b[%d]", i);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
    kdcl_tensor_free(c);
}

/* ---------------------------------------------------------------------- */
/* Views                                                                   */

Test(tensor, view_reads_and_writes_its_part_of_the_parent)
{
    enum { N = 16 };
    kdcl_tensor *p = make1(KDCL_DTYPE_F32, N), *v = NULL, *vv = NULL;
    float in[N], out[N], part[6];
    for (int i = 0; i < N; i++)
        in[i] = (float)i;
    write_f32(p, in, N);
    cr_assert_eq(kdcl_tensor_view(p, 5, 2, (int64_t[]){2, 3}, &v), KDCL_OK,
                 "%s", kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(kdcl_tensor_numel(v), 6);
    cr_assert_eq(kdcl_tensor_dim(v, 0), 2);
    cr_assert_eq(kdcl_tensor_dtype(v), KDCL_DTYPE_F32);
    read_f32(v, part, 6);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(part[i], (float)(5 + i), "view[%d] = %g", i,
                     (double)part[i]);

    for (int i = 0; i < 6; i++)
        part[i] = 100.0f + (float)i;
    write_f32(v, part, 6);
    read_f32(p, out, N);
    for (int i = 0; i < N; i++) {
        float want = i >= 5 && i < 11 ? 100.0f + (float)(i - 5) : (float)i;
        cr_assert_eq(out[i], want, "parent[%d] = %g, want %g", i,
                     (double)out[i], (double)want);
    }

    /* A view of a view adds the offsets. */
    cr_assert_eq(kdcl_tensor_view(v, 2, 1, (int64_t[]){3}, &vv), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(vv, -1.0), KDCL_OK);
    read_f32(p, out, N);
    for (int i = 0; i < N; i++) {
        float want = i >= 7 && i < 10    ? -1.0f
                     : i >= 5 && i < 11 ? 100.0f + (float)(i - 5)
                                        : (float)i;
        cr_assert_eq(out[i], want, "parent[%d] = %g, want %g", i,
                     (double)out[i], (double)want);
    }
    kdcl_tensor_free(vv);
    kdcl_tensor_free(v);
    kdcl_tensor_free(p);
}

Test(tensor, copy_between_views_touches_only_the_views)
{
    enum { N = 10 };
    kdcl_tensor *a = make1(KDCL_DTYPE_I32, N), *b = make1(KDCL_DTYPE_I32, N);
    kdcl_tensor *va = NULL, *vb = NULL;
    int32_t in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i * 11;
    cr_assert_eq(kdcl_tensor_write(a, in, sizeof in), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(b, -5.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_view(a, 1, 1, (int64_t[]){4}, &va), KDCL_OK);
    cr_assert_eq(kdcl_tensor_view(b, 6, 1, (int64_t[]){4}, &vb), KDCL_OK);
    cr_assert_eq(kdcl_tensor_copy(vb, va), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(kdcl_tensor_read(b, out, sizeof out), KDCL_OK);
    for (int i = 0; i < N; i++) {
        int32_t want = i >= 6 ? (i - 5) * 11 : -5;
        cr_assert_eq(out[i], want, "b[%d] = %d, want %d", i, out[i], want);
    }
    kdcl_tensor_free(va);
    kdcl_tensor_free(vb);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
}

Test(tensor, view_outside_the_parent_is_erange)
{
    kdcl_tensor *p = make1(KDCL_DTYPE_F32, 16), *v = (kdcl_tensor *)&v;
    cr_assert_eq(kdcl_tensor_view(p, 13, 1, (int64_t[]){4}, &v), KDCL_ERANGE);
    cr_assert_null(v);
    cr_assert_gt(strlen(kdcl_context_errmsg(th_ctx())), 0);
    cr_assert_eq(kdcl_tensor_view(p, -1, 1, (int64_t[]){4}, &v),
                 KDCL_ERANGE);
    cr_assert_eq(kdcl_tensor_view(p, 0, 1, (int64_t[]){17}, &v),
                 KDCL_ERANGE);
    cr_assert_eq(kdcl_tensor_view(p, 16, 1, (int64_t[]){1}, &v),
                 KDCL_ERANGE);
    cr_assert_eq(kdcl_tensor_view(p, INT64_MAX, 1, (int64_t[]){1}, &v),
                 KDCL_ERANGE);
    /* The whole parent and an empty view at its end are inside. */
    cr_assert_eq(kdcl_tensor_view(p, 0, 2, (int64_t[]){4, 4}, &v), KDCL_OK);
    kdcl_tensor_free(v);
    cr_assert_eq(kdcl_tensor_view(p, 16, 1, (int64_t[]){0}, &v), KDCL_OK);
    kdcl_tensor_free(v);
    kdcl_tensor_free(p);
}

static const char *add1_src =
    "/* tests/test-tensor.c: add one to n floats */\n"
    "kernel void add1(global float *x, int n)\n"
    "{\n"
    "    int i = (int)get_global_id(0);\n"
    "    if (i < n)\n"
    "        x[i] += 1.0f;\n"
    "}\n";

static int launch_add1(kdcl_tensor *t, int n)
{
    kdcl_context *ctx = th_ctx();
    kdcl_program *prog = NULL;
    kdcl_kernel *k = NULL;
    size_t global = (size_t)n;
    int status;
    cr_assert_eq(kdcl_program_build(ctx, add1_src, NULL, &prog), KDCL_OK,
                 "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_kernel_init(ctx, prog, "add1", &k), KDCL_OK);
    status = kdcl_kernel_launch(ctx, k, 1, &global, NULL, 2,
                                (struct kdcl_arg[]){KDCL_A_TENSOR(t),
                                                    KDCL_A_I32(n)});
    kdcl_kernel_free(k);
    return status;
}

Test(tensor, aligned_view_is_a_kernel_argument)
{
    const struct kdcl_device_info *d = kdcl_context_device(th_ctx());
    int64_t off = d->mem_base_align / 4 ? d->mem_base_align / 4 : 1;
    int64_t n = 2 * off + 8;
    kdcl_tensor *p = make1(KDCL_DTYPE_F32, n), *v = NULL;
    float *buf = malloc((size_t)n * sizeof *buf);
    cr_assert_not_null(buf);
    cr_assert_eq(d->mem_base_align % 4, 0, "mem_base_align %u",
                 d->mem_base_align);
    for (int64_t i = 0; i < n; i++)
        buf[i] = (float)i;
    write_f32(p, buf, (size_t)n);
    cr_assert_eq(kdcl_tensor_view(p, off, 1, (int64_t[]){8}, &v), KDCL_OK);
    cr_assert_eq(launch_add1(v, 8), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    /* Twice: the second launch reuses the view's sub-buffer. */
    cr_assert_eq(launch_add1(v, 8), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    read_f32(p, buf, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        float want = (float)i + (i >= off && i < off + 8 ? 2.0f : 0.0f);
        cr_assert_eq(buf[i], want, "parent[%lld] = %g, want %g",
                     (long long)i, (double)buf[i], (double)want);
    }
    kdcl_tensor_free(v);
    kdcl_tensor_free(p);
    free(buf);
}

Test(tensor, unaligned_view_as_kernel_argument_is_einval)
{
    const struct kdcl_device_info *d = kdcl_context_device(th_ctx());
    kdcl_tensor *p = make1(KDCL_DTYPE_F32, 16), *v = NULL;
    float buf[16];
    if (d->mem_base_align <= 4)
        cr_skip_test("every f32 offset is aligned on this device (%u)",
                     d->mem_base_align);
    for (int i = 0; i < 16; i++)
        buf[i] = (float)i;
    write_f32(p, buf, 16);
    cr_assert_eq(kdcl_tensor_view(p, 1, 1, (int64_t[]){8}, &v), KDCL_OK);
    cr_assert_eq(launch_add1(v, 8), KDCL_EINVAL);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "align") != NULL,
              "message: %s", kdcl_context_errmsg(th_ctx()));
    /* Nothing ran, and the view still works for copies. */
    read_f32(p, buf, 16);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(buf[i], (float)i, "parent[%d] = %g", i, (double)buf[i]);
    cr_assert_eq(kdcl_tensor_fill(v, 3.0), KDCL_OK);
    read_f32(p, buf, 16);
    for (int i = 0; i < 16; i++)
        cr_assert_eq(buf[i], i >= 1 && i < 9 ? 3.0f : (float)i);
    kdcl_tensor_free(v);
    kdcl_tensor_free(p);
}

/* ---------------------------------------------------------------------- */
/* Accounting and limits                                                   */

Test(tensor, bytes_in_use_and_peak_rise_and_fall)
{
    kdcl_context *ctx = th_ctx();
    uint64_t base = kdcl_context_bytes_in_use(ctx);
    uint64_t peak0 = kdcl_context_bytes_peak(ctx);
    kdcl_tensor *a, *b, *v = NULL, *z;
    cr_assert_geq(peak0, base);
    a = make1(KDCL_DTYPE_F32, 100);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), base + 400);
    b = make1(KDCL_DTYPE_F64, 50);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), base + 800);
    cr_assert_geq(kdcl_context_bytes_peak(ctx), base + 800);
    /* Views and empty tensors hold no memory of their own. */
    cr_assert_eq(kdcl_tensor_view(a, 10, 1, (int64_t[]){20}, &v), KDCL_OK);
    z = make1(KDCL_DTYPE_I64, 0);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), base + 800);
    kdcl_tensor_free(v);
    kdcl_tensor_free(z);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), base + 800);
    kdcl_tensor_free(a);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), base + 400);
    kdcl_tensor_free(b);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), base);
    cr_assert_geq(kdcl_context_bytes_peak(ctx), base + 800);
    cr_assert_leq(kdcl_context_bytes_peak(ctx),
                  (peak0 > base + 800 ? peak0 : base + 800));
    kdcl_tensor_free(NULL); /* a no-op */
}

Test(tensor, size_over_max_alloc_is_edevmem)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    uint64_t before = kdcl_context_bytes_in_use(ctx);
    kdcl_tensor *t = (kdcl_tensor *)&t;
    int64_t n = (int64_t)(d->max_alloc / 4) + 1;
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &n, &t),
                 KDCL_EDEVMEM, "%s", kdcl_context_errmsg(ctx));
    cr_assert_null(t);
    cr_assert_gt(strlen(kdcl_context_errmsg(ctx)), 0);
    /* A size whose byte count overflows is refused the same way. */
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F64, 3,
                                  (int64_t[]){1ll << 30, 1ll << 30, 1ll << 30},
                                  &t),
                 KDCL_EDEVMEM);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_U8, 1,
                                  (int64_t[]){INT64_MAX}, &t),
                 KDCL_EDEVMEM);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), before);
}

Test(tensor, too_many_dims_and_negative_dims_are_einval)
{
    kdcl_context *ctx = th_ctx();
    kdcl_tensor *t = NULL;
    int64_t ones[KDCL_MAX_DIMS + 1];
    for (int i = 0; i <= KDCL_MAX_DIMS; i++)
        ones[i] = 1;
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, KDCL_MAX_DIMS + 1,
                                  ones, &t),
                 KDCL_EINVAL);
    cr_assert_null(t);
    cr_assert_gt(strlen(kdcl_context_errmsg(ctx)), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2,
                                  (int64_t[]){3, -1}, &t),
                 KDCL_EINVAL);
    cr_assert_null(t);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1,
                                  (int64_t[]){INT64_MIN}, &t),
                 KDCL_EINVAL);
    /* Exactly KDCL_MAX_DIMS is fine. */
    t = make(KDCL_DTYPE_F32, KDCL_MAX_DIMS, ones);
    cr_assert_eq(kdcl_tensor_numel(t), 1);
    kdcl_tensor_free(t);
}

Test(tensor, unknown_dtype_is_edtype)
{
    kdcl_context *ctx = th_ctx();
    kdcl_tensor *t = NULL;
    cr_assert_eq(kdcl_tensor_init(ctx, 5, 1, (int64_t[]){4}, &t),
                 KDCL_EDTYPE);
    cr_assert_eq(kdcl_tensor_init(ctx, -1, 1, (int64_t[]){4}, &t),
                 KDCL_EDTYPE);
    cr_assert_null(t);
}

Test(tensor, tensor_without_open_device_is_einval)
{
    kdcl_context *ctx = NULL;
    kdcl_tensor *t = NULL;
    cr_assert_eq(kdcl_context_init(&ctx), KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, (int64_t[]){4},
                                  &t),
                 KDCL_EINVAL);
    cr_assert_null(t);
    kdcl_context_free(ctx);
}

Test(tensor, zero_element_tensors_work)
{
    kdcl_context *ctx = th_ctx();
    uint64_t before = kdcl_context_bytes_in_use(ctx);
    kdcl_tensor *a = make(KDCL_DTYPE_F32, 1, (int64_t[]){0});
    kdcl_tensor *b = make(KDCL_DTYPE_F32, 3, (int64_t[]){4, 0, 2});
    float dummy = 42.0f;
    cr_assert_eq(kdcl_tensor_numel(a), 0);
    cr_assert_eq(kdcl_tensor_bytes(a), 0);
    cr_assert_eq(kdcl_tensor_numel(b), 0);
    cr_assert_eq(kdcl_tensor_dim(b, 0), 4);
    cr_assert_eq(kdcl_tensor_dim(b, 1), 0);
    cr_assert_eq(kdcl_context_bytes_in_use(ctx), before);
    cr_assert_eq(kdcl_tensor_write(a, &dummy, 0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(a, &dummy, 0), KDCL_OK);
    cr_assert_eq(dummy, 42.0f);
    cr_assert_eq(kdcl_tensor_fill(b, 1.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_copy(a, b), KDCL_OK);
    cr_assert_eq(kdcl_tensor_write(a, &dummy, sizeof dummy), KDCL_EINVAL);
    cr_assert_eq(kdcl_context_finish(ctx), KDCL_OK);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
}

Test(tensor, dim_counts_negative_axes_from_the_end)
{
    kdcl_tensor *t = make(KDCL_DTYPE_U8, 3, (int64_t[]){2, 3, 5});
    kdcl_tensor *s = make(KDCL_DTYPE_U8, 0, NULL);
    cr_assert_eq(kdcl_tensor_dim(t, -1), 5);
    cr_assert_eq(kdcl_tensor_dim(t, -2), 3);
    cr_assert_eq(kdcl_tensor_dim(t, -3), 2);
    cr_assert_eq(kdcl_tensor_dim(t, 0), 2);
    cr_assert_eq(kdcl_tensor_dim(t, 2), 5);
    cr_assert_eq(kdcl_tensor_dim(t, 3), 0);
    cr_assert_eq(kdcl_tensor_dim(t, 100), 0);
    cr_assert_eq(kdcl_tensor_dim(t, -4), 0);
    cr_assert_eq(kdcl_tensor_dim(t, -100), 0);
    cr_assert_eq(kdcl_tensor_dim(s, 0), 0);
    cr_assert_eq(kdcl_tensor_dim(s, -1), 0);
    cr_assert_eq(kdcl_tensor_numel(s), 1);
    kdcl_tensor_free(t);
    kdcl_tensor_free(s);
}

/* ---------------------------------------------------------------------- */
/* GEMM                                                                    */

/* The GEMM paths to check: the device's default (a host BLAS on CPU
   devices when the library has one) and CLBlast, forced. */
static const char *const gemm_paths[] = {NULL, "clblast"};
#define N_GEMM_PATHS (sizeof gemm_paths / sizeof gemm_paths[0])

static void use_gemm_path(const char *path)
{
    /* Under the checker the run's KDCL_GEMM stands (host: CLBlast's own
       kernels are not ours to check, and Oclgrind reports values they
       read from padding). */
    if (th_checking())
        return;
    if (path)
        setenv("KDCL_GEMM", path, 1);
    else
        unsetenv("KDCL_GEMM");
}

struct gemm_case {
    int ta, tb;
    size_t m, n, k;
    size_t a_off, lda, b_off, ldb, c_off, ldc;
    size_t a_stride, b_stride, c_stride, batch;
    float alpha, beta;
};

/* Fill in leading dimensions larger than the widths, offsets and strides
   with slack, for shape m x n x k. */
static struct gemm_case gemm_layout(int ta, int tb, size_t m, size_t n,
                                    size_t k, size_t batch)
{
    struct gemm_case g = {0};
    size_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    size_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    g.ta = ta;
    g.tb = tb;
    g.m = m;
    g.n = n;
    g.k = k;
    g.a_off = 3;
    g.lda = a_cols + 2;
    g.b_off = 5;
    g.ldb = b_cols + 1;
    g.c_off = 2;
    g.ldc = n + 3;
    g.a_stride = a_rows * g.lda + 1;
    g.b_stride = b_rows * g.ldb + 2;
    g.c_stride = m * g.ldc + 3;
    g.batch = batch;
    g.alpha = 1.25f;
    g.beta = -0.5f;
    return g;
}

static size_t a_numel(const struct gemm_case *g)
{
    return g->a_off + (g->batch - 1) * g->a_stride
           + (g->ta ? g->k : g->m) * g->lda + 1;
}

static size_t b_numel(const struct gemm_case *g)
{
    return g->b_off + (g->batch - 1) * g->b_stride
           + (g->tb ? g->n : g->k) * g->ldb + 1;
}

static size_t c_numel(const struct gemm_case *g)
{
    return g->c_off + (g->batch - 1) * g->c_stride + g->m * g->ldc + 1;
}

/* Run the case on the device and compare every element of C (the product
   inside, untouched values outside) with a float64 reference. */
static void check_gemm(kdcl_context *ctx, const struct gemm_case *g)
{
    size_t na = a_numel(g), nb = b_numel(g), nc = c_numel(g);
    float *a = malloc(na * sizeof *a), *b = malloc(nb * sizeof *b);
    float *c = malloc(nc * sizeof *c), *got = malloc(nc * sizeof *got);
    double *want = malloc(nc * sizeof *want);
    kdcl_tensor *ta = make1_on(ctx, KDCL_DTYPE_F32, (int64_t)na);
    kdcl_tensor *tb = make1_on(ctx, KDCL_DTYPE_F32, (int64_t)nb);
    kdcl_tensor *tc = make1_on(ctx, KDCL_DTYPE_F32, (int64_t)nc);
    char what[128];
    int status;
    cr_assert(a && b && c && got && want);
    th_fill_uniform(a, na, -1.0, 1.0, 11);
    th_fill_uniform(b, nb, -1.0, 1.0, 12);
    th_fill_uniform(c, nc, -1.0, 1.0, 13);
    write_f32(ta, a, na);
    write_f32(tb, b, nb);
    write_f32(tc, c, nc);
    th_to_double(c, want, nc);
    for (size_t q = 0; q < g->batch; q++) {
        const float *aq = a + g->a_off + q * g->a_stride;
        const float *bq = b + g->b_off + q * g->b_stride;
        size_t cq = g->c_off + q * g->c_stride;
        for (size_t i = 0; i < g->m; i++)
            for (size_t j = 0; j < g->n; j++) {
                double s = 0.0;
                for (size_t p = 0; p < g->k; p++) {
                    double x = g->ta ? aq[p * g->lda + i] : aq[i * g->lda + p];
                    double y = g->tb ? bq[j * g->ldb + p] : bq[p * g->ldb + j];
                    s += x * y;
                }
                want[cq + i * g->ldc + j] =
                    g->alpha * s + g->beta * (double)c[cq + i * g->ldc + j];
            }
    }
    if (g->batch == 1)
        status = kdcl_gemm(ctx, g->ta, g->tb, g->m, g->n, g->k, g->alpha, ta,
                           g->a_off, g->lda, tb, g->b_off, g->ldb, g->beta,
                           tc, g->c_off, g->ldc);
    else
        status = kdcl_gemm_batched(ctx, g->ta, g->tb, g->m, g->n, g->k,
                                   g->alpha, ta, g->a_off, g->lda,
                                   g->a_stride, tb, g->b_off, g->ldb,
                                   g->b_stride, g->beta, tc, g->c_off, g->ldc,
                                   g->c_stride, g->batch);
    cr_assert_eq(status, KDCL_OK, "gemm: %s", kdcl_context_errmsg(ctx));
    read_f32(tc, got, nc);
    snprintf(what, sizeof what,
             "C (ta %d tb %d m %zu n %zu k %zu batch %zu, KDCL_GEMM %s)",
             g->ta, g->tb, g->m, g->n, g->k, g->batch,
             getenv("KDCL_GEMM") ? getenv("KDCL_GEMM") : "unset");
    th_assert_close(got, want, nc, 1e-5, 1e-4, what);
    kdcl_tensor_free(ta);
    kdcl_tensor_free(tb);
    kdcl_tensor_free(tc);
    free(a);
    free(b);
    free(c);
    free(got);
    free(want);
}

Test(tensor, gemm_matches_reference_all_transposes)
{
    size_t m = th_small() ? 3 : 13, n = th_small() ? 4 : 11;
    size_t k = th_small() ? 2 : 9;
    kdcl_context *ctx = own_ctx();
    for (size_t path = 0; path < N_GEMM_PATHS; path++) {
        use_gemm_path(gemm_paths[path]);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                struct gemm_case g = gemm_layout(ta, tb, m, n, k, 1);
                check_gemm(ctx, &g);
            }
    }
    kdcl_context_free(ctx);
}

Test(tensor, gemm_on_views_uses_their_offsets)
{
    /* The same product with A, B and C as views into larger parents. */
    kdcl_context *ctx = own_ctx();
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    int64_t off = d->mem_base_align / 4 ? d->mem_base_align / 4 : 1;
    enum { M = 3, N = 2, K = 4 };
    float a[M * K], b[K * N], c[M * N];
    double want[M * N];
    kdcl_tensor *pa = make1_on(ctx, KDCL_DTYPE_F32, off + M * K);
    kdcl_tensor *pb = make1_on(ctx, KDCL_DTYPE_F32, 2 * off + K * N);
    kdcl_tensor *pc = make1_on(ctx, KDCL_DTYPE_F32, off + 1 + M * N);
    kdcl_tensor *va = NULL, *vb = NULL, *vc = NULL;
    th_fill_uniform(a, M * K, -1.0, 1.0, 21);
    th_fill_uniform(b, K * N, -1.0, 1.0, 22);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++)
                s += (double)a[i * K + p] * b[p * N + j];
            want[i * N + j] = s;
        }
    cr_assert_eq(kdcl_tensor_fill(pa, 7.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(pb, 7.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(pc, 7.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_view(pa, off, 1, (int64_t[]){M * K}, &va),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_view(pb, 2 * off, 1, (int64_t[]){K * N}, &vb),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_view(pc, off + 1, 1, (int64_t[]){M * N}, &vc),
                 KDCL_OK);
    write_f32(va, a, M * K);
    write_f32(vb, b, K * N);
    for (size_t path = 0; path < N_GEMM_PATHS; path++) {
        size_t np = (size_t)(off + 1 + M * N);
        float *whole = malloc(np * sizeof *whole);
        cr_assert_not_null(whole);
        use_gemm_path(gemm_paths[path]);
        cr_assert_eq(kdcl_tensor_fill(vc, -3.0), KDCL_OK);
        cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, K, 1.0f, va, 0, K, vb, 0, N,
                               0.0f, vc, 0, N),
                     KDCL_OK, "%s", kdcl_context_errmsg(ctx));
        read_f32(vc, c, M * N);
        th_assert_close(c, want, M * N, 1e-5, 1e-4,
                        gemm_paths[path] ? "C view (clblast)" : "C view");
        /* The parent's elements before the view are untouched. */
        read_f32(pc, whole, np);
        for (int64_t i = 0; i < off + 1; i++)
            cr_assert_eq(whole[i], 7.0f, "parent c[%lld] = %g",
                         (long long)i, (double)whole[i]);
        free(whole);
    }
    kdcl_tensor_free(va);
    kdcl_tensor_free(vb);
    kdcl_tensor_free(vc);
    kdcl_tensor_free(pa);
    kdcl_tensor_free(pb);
    kdcl_tensor_free(pc);
    kdcl_context_free(ctx);
}

Test(tensor, gemm_with_a_and_b_the_same_tensor)
{
    /* A Gram matrix X X^T, as relation-based plugins compute it. */
    kdcl_context *ctx = own_ctx();
    enum { R = 3, D = 5 };
    float x[R * D], g[R * R];
    double want[R * R];
    kdcl_tensor *tx = make1_on(ctx, KDCL_DTYPE_F32, R * D);
    kdcl_tensor *tg = make1_on(ctx, KDCL_DTYPE_F32, R * R);
    th_fill_uniform(x, R * D, -1.0, 1.0, 31);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < R; j++) {
            double s = 0.0;
            for (int p = 0; p < D; p++)
                s += (double)x[i * D + p] * x[j * D + p];
            want[i * R + j] = s;
        }
    write_f32(tx, x, R * D);
    for (size_t path = 0; path < N_GEMM_PATHS; path++) {
        use_gemm_path(gemm_paths[path]);
        cr_assert_eq(kdcl_tensor_fill(tg, 9.0), KDCL_OK);
        cr_assert_eq(kdcl_gemm(ctx, 0, 1, R, R, D, 1.0f, tx, 0, D, tx, 0, D,
                               0.0f, tg, 0, R),
                     KDCL_OK, "%s", kdcl_context_errmsg(ctx));
        read_f32(tg, g, R * R);
        th_assert_close(g, want, R * R, 1e-5, 1e-4,
                        gemm_paths[path] ? "X X^T (clblast)" : "X X^T");
    }
    kdcl_tensor_free(tx);
    kdcl_tensor_free(tg);
    kdcl_context_free(ctx);
}

Test(tensor, gemm_batched_matches_reference)
{
    size_t m = th_small() ? 3 : 7, n = th_small() ? 2 : 6;
    size_t k = th_small() ? 4 : 5;
    kdcl_context *ctx = own_ctx();
    for (size_t path = 0; path < N_GEMM_PATHS; path++) {
        use_gemm_path(gemm_paths[path]);
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                struct gemm_case g = gemm_layout(ta, tb, m, n, k, 3);
                check_gemm(ctx, &g);
            }
    }
    kdcl_context_free(ctx);
}

Test(tensor, gemm_argument_errors)
{
    kdcl_context *ctx = own_ctx();
    enum { M = 4, N = 3, K = 2 };
    kdcl_tensor *a = make1_on(ctx, KDCL_DTYPE_F32, M * K);
    kdcl_tensor *b = make1_on(ctx, KDCL_DTYPE_F32, K * N);
    kdcl_tensor *c = make1_on(ctx, KDCL_DTYPE_F32, M * N);
    kdcl_tensor *a64 = make1_on(ctx, KDCL_DTYPE_F64, M * K);
    kdcl_tensor *small = make1_on(ctx, KDCL_DTYPE_F32, M * N - 1);
    float cv[M * N];
    for (int i = 0; i < M * N; i++)
        cv[i] = (float)i;
    write_f32(c, cv, M * N);

    cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, K, 1.0f, a64, 0, K, b, 0, N,
                           0.0f, c, 0, N),
                 KDCL_EDTYPE);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "f64") != NULL, "%s",
              kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, K, 1.0f, a, 0, K, b, 0, N, 0.0f,
                           small, 0, N),
                 KDCL_ERANGE);
    /* An offset that runs off the end is too small as well. */
    cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, K, 1.0f, a, 1, K, b, 0, N, 0.0f,
                           c, 0, N),
                 KDCL_ERANGE);
    cr_assert_eq(kdcl_gemm(ctx, 0, 1, M, N, K, 1.0f, a, 0, K, b, 0, N, 0.0f,
                           c, 0, N),
                 KDCL_ERANGE, "B^T needs ldb >= k rows of n: %s",
                 kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, K, 1.0f, a, 0, K - 1, b, 0, N,
                           0.0f, c, 0, N),
                 KDCL_EINVAL);
    cr_assert_eq(kdcl_gemm_batched(ctx, 0, 0, M, N, K, 1.0f, a, 0, K, 0, b,
                                   0, N, 0, 0.0f, c, 0, N, M * N, 2),
                 KDCL_ERANGE);
    /* Nothing was written by the failed calls. */
    cr_assert_eq(kdcl_tensor_read(c, cv, sizeof cv), KDCL_OK);
    for (int i = 0; i < M * N; i++)
        cr_assert_eq(cv[i], (float)i, "c[%d] was written", i);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
    kdcl_tensor_free(c);
    kdcl_tensor_free(a64);
    kdcl_tensor_free(small);
    kdcl_context_free(ctx);
}

Test(tensor, gemm_with_k_zero_and_beta_zero_zeroes_c)
{
    /* BLAS: with k = 0, C = beta * C; here beta = 0 on a whole, contiguous
       C, the very case tensor.c means to handle with a fill. */
    kdcl_context *ctx = own_ctx();
    enum { M = 3, N = 4 };
    kdcl_tensor *a = make1_on(ctx, KDCL_DTYPE_F32, 1);
    kdcl_tensor *b = make1_on(ctx, KDCL_DTYPE_F32, 1);
    kdcl_tensor *c = make1_on(ctx, KDCL_DTYPE_F32, 2 * M * N);
    float cv[2 * M * N];

    /* Batched, two whole C matrices back to back. */
    cr_assert_eq(kdcl_tensor_fill(c, 5.0), KDCL_OK);
    cr_assert_eq(kdcl_gemm_batched(ctx, 0, 0, M, N, 0, 1.0f, a, 0, 1, 0, b,
                                   0, N, 0, 0.0f, c, 0, N, M * N, 2),
                 KDCL_OK, "batched: %s", kdcl_context_errmsg(ctx));
    read_f32(c, cv, 2 * M * N);
    for (int i = 0; i < 2 * M * N; i++)
        cr_assert_eq(cv[i], 0.0f, "batched c[%d] = %g", i, (double)cv[i]);

    /* One matrix through kdcl_gemm. */
    kdcl_tensor_free(c);
    c = make1_on(ctx, KDCL_DTYPE_F32, M * N);
    cr_assert_eq(kdcl_tensor_fill(c, 5.0), KDCL_OK);
    cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, 0, 1.0f, a, 0, 1, b, 0, N, 0.0f,
                           c, 0, N),
                 KDCL_OK, "kdcl_gemm: %s", kdcl_context_errmsg(ctx));
    read_f32(c, cv, M * N);
    for (int i = 0; i < M * N; i++)
        cr_assert_eq(cv[i], 0.0f, "c[%d] = %g", i, (double)cv[i]);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
    kdcl_tensor_free(c);
    kdcl_context_free(ctx);
}

Test(tensor, gemm_with_k_zero_scales_c_by_beta)
{
    /* BLAS: with k = 0, C = beta * C inside the m x n block, with C's
       offset and leading dimension; nothing else changes. */
    kdcl_context *ctx = own_ctx();
    enum { M = 2, N = 3, LDC = 5, OFF = 1, NC = OFF + M * LDC };
    kdcl_tensor *a = make1_on(ctx, KDCL_DTYPE_F32, 1);
    kdcl_tensor *b = make1_on(ctx, KDCL_DTYPE_F32, 1);
    kdcl_tensor *c = make1_on(ctx, KDCL_DTYPE_F32, NC);
    float cv[NC];
    for (int i = 0; i < NC; i++)
        cv[i] = (float)(i + 1);
    write_f32(c, cv, NC);
    cr_assert_eq(kdcl_gemm(ctx, 0, 0, M, N, 0, 1.0f, a, 0, 1, b, 0, N, 0.5f,
                           c, OFF, LDC),
                 KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    read_f32(c, cv, NC);
    for (int i = 0; i < NC; i++) {
        int r = (i - OFF) / LDC, col = (i - OFF) % LDC;
        bool inside = i >= OFF && r < M && col < N;
        float want = inside ? 0.5f * (float)(i + 1) : (float)(i + 1);
        cr_assert_eq(cv[i], want, "c[%d] = %g, want %g", i, (double)cv[i],
                     (double)want);
    }
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
    kdcl_tensor_free(c);
    kdcl_context_free(ctx);
}

/* ---------------------------------------------------------------------- */
/* Teardown                                                                */

/* The cl_context under t, with a reference of the test's own. */
static cl_context retain_cl_context(const kdcl_tensor *t)
{
    cl_context cl = NULL;
    cr_assert_eq(clGetMemObjectInfo(kdcl_tensor_mem(t, NULL), CL_MEM_CONTEXT,
                                    sizeof cl, &cl, NULL),
                 CL_SUCCESS);
    cr_assert_eq(clRetainContext(cl), CL_SUCCESS);
    return cl;
}

static cl_uint context_refs_now(cl_context cl)
{
    cl_uint n = 0;
    cr_assert_eq(clGetContextInfo(cl, CL_CONTEXT_REFERENCE_COUNT, sizeof n,
                                  &n, NULL),
                 CL_SUCCESS);
    return n;
}

/* The context's reference count once it stops falling: PoCL's worker
   threads drop their references to finished commands asynchronously, a
   little after clFinish, later still on a loaded machine (seen in CI-like
   runs with -j2).  Waits up to 2 s for the count to reach 1. */
static cl_uint context_refs(cl_context cl)
{
    cl_uint n = context_refs_now(cl);
    for (int i = 0; i < 200 && n > 1; i++) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
        n = context_refs_now(cl);
    }
    return n;
}

Test(tensor, context_free_releases_every_opencl_object)
{
    /* Tensors, a view's sub-buffer, a program, a kernel and a launch: once
       all are freed, only the test's own reference to the OpenCL context
       is left (reference counts exist to find leaks like this). */
    kdcl_context *ctx = own_ctx();
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    int64_t off = d->mem_base_align / 4 ? d->mem_base_align / 4 : 1;
    kdcl_tensor *p = make1_on(ctx, KDCL_DTYPE_F32, off + 8), *v = NULL;
    kdcl_program *prog = NULL;
    kdcl_kernel *k = NULL;
    size_t global = 8;
    cl_context cl;
    cr_assert_eq(kdcl_tensor_fill(p, 0.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_view(p, off, 1, (int64_t[]){8}, &v), KDCL_OK);
    cr_assert_eq(kdcl_program_build(ctx, add1_src, NULL, &prog), KDCL_OK,
                 "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_kernel_init(ctx, prog, "add1", &k), KDCL_OK);
    cr_assert_eq(kdcl_kernel_launch(ctx, k, 1, &global, NULL, 2,
                                    (struct kdcl_arg[]){KDCL_A_TENSOR(v),
                                                        KDCL_A_I32(8)}),
                 KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_context_finish(ctx), KDCL_OK);
    cl = retain_cl_context(p);
    kdcl_kernel_free(k);
    kdcl_tensor_free(v);
    kdcl_tensor_free(p);
    kdcl_context_free(ctx);
    cr_assert_eq(context_refs(cl), 1, "%u references left to the context",
                 context_refs(cl) - 1);
    clReleaseContext(cl);
}

Test(tensor, context_free_releases_gemm_programs)
{
    /* What CLBlast compiled for a context must go with it; left in
       CLBlast's process-wide cache, the programs keep the OpenCL context
       alive until exit and are released from CLBlast's static destructors
       then, after the OpenCL implementation may be gone (Oclgrind: a
       use-after-free and "corrupted double-linked list" at exit). */
    kdcl_context *ctx = own_ctx();
    kdcl_tensor *a = make1_on(ctx, KDCL_DTYPE_F32, 6);
    kdcl_tensor *b = make1_on(ctx, KDCL_DTYPE_F32, 6);
    kdcl_tensor *c = make1_on(ctx, KDCL_DTYPE_F32, 4);
    cl_context cl;
    use_gemm_path("clblast");
    cr_assert_eq(kdcl_tensor_fill(a, 1.0), KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(b, 2.0), KDCL_OK);
    cr_assert_eq(kdcl_gemm(ctx, 0, 0, 2, 2, 3, 1.0f, a, 0, 3, b, 0, 2, 0.0f,
                           c, 0, 2),
                 KDCL_OK, "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_context_finish(ctx), KDCL_OK);
    cl = retain_cl_context(a);
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
    kdcl_tensor_free(c);
    kdcl_context_free(ctx);
    cr_assert_eq(context_refs(cl), 1,
                 "%u references left to the context after kdcl_context_free",
                 context_refs(cl) - 1);
    clReleaseContext(cl);
}
