/*
 * core/host.c - the host compute path of CPU devices.  On a CPU device the
 * buffers live in host memory and an optimised host BLAS is several times
 * faster than CLBlast's OpenCL kernels there (docs/performance.md), so
 * GEMM and the GEMM-bound layers (Conv2d as im2col + GEMM per image,
 * Linear with its bias) run on the host: the queue is drained, the
 * buffers' data is reached in place (tensors in host memory the driver
 * computes in: core/tensor.c) or else mapped, the work runs on the host
 * threads, and any maps are released in queue order.  A layer reaches its
 * buffers once for all its work (forward: product and bias; backward: the
 * weight, bias and input gradients).  The rest of a training step joins
 * it on this path (core/host_ops.c).
 *
 * BLIS where the build found it (threads from OpenMP: a batch of small
 * products is spread over the threads, each single-threaded), else
 * OpenBLAS's CBLAS, else no host path at all.  KDCL_GEMM=clblast turns the
 * path off; KDCL_GEMM=host turns host GEMM on for any device whose buffers
 * can be mapped (the checker run uses it: CLBlast's kernels are not kdcl's
 * to check).  KDCL_LAYERS=kernel keeps the layers on the device kernels
 * (im2col, col2im, bias) with host GEMM; KDCL_LAYERS=host forces the host
 * layers.  In checker mode (quarantine) the buffers are copied rather
 * than mapped, and the layers stay on the kernels unless forced, so the
 * checker sees them.
 *
 * Every sum runs in a fixed order for a given thread count, so results are
 * bit-identical run to run on one machine.
 */
#include "host.h"
#include "nn.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(KDCL_HAVE_BLIS)
#include <blis.h>
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#define KDCL_HOST 1
#elif defined(KDCL_HAVE_CBLAS)
#include <cblas.h>
#define KDCL_HOST 1
#endif

bool kdcl__host_gemm_wanted(const kdcl_context *ctx)
{
#ifdef KDCL_HOST
    const char *e = getenv("KDCL_GEMM");
    if (e && !strcmp(e, "clblast"))
        return false;
    if (e && !strcmp(e, "host"))
        return true; /* any device whose buffers can be mapped */
    return ctx->devices[ctx->dev_index].type == KDCL_DEVICE_CPU;
#else
    (void)ctx;
    return false;
#endif
}

#ifdef KDCL_HAVE_BLIS
static void blis_threads_once(void);
static pthread_once_t blis_once = PTHREAD_ONCE_INIT;
#endif

const char *kdcl__host_blas(void)
{
#if defined(KDCL_HAVE_BLIS)
    static char name[64];
    pthread_once(&blis_once, blis_threads_once);
    snprintf(name, sizeof name, "BLIS %s (%s kernels)", bli_info_get_version_str(),
             bli_arch_string(bli_arch_query_id()));
    return name;
#elif defined(KDCL_HAVE_CBLAS)
    return "OpenBLAS";
#else
    return NULL;
#endif
}

bool kdcl__host_layers_wanted(const kdcl_context *ctx)
{
#ifdef KDCL_HOST
    const char *e = getenv("KDCL_LAYERS");
    if (e && !strcmp(e, "kernel"))
        return false;
    if (e && !strcmp(e, "host"))
        return true;
    return !ctx->quarantine && kdcl__host_gemm_wanted(ctx);
#else
    (void)ctx;
    return false;
#endif
}

/* ---------------------------------------------------------------------- */
/* Mapping                                                                 */

int kdcl__host_unmap(kdcl_context *ctx, struct kdcl__host_buf *m, int n,
                     int write_back)
{
    for (int i = 0; i < n; i++) {
        if (!m[i].p)
            continue;
        if (m[i].t->host) {
            /* in place: nothing to release */
        } else if (ctx->quarantine) {
            if (write_back && m[i].write
                && clEnqueueWriteBuffer(ctx->queue, m[i].t->mem, CL_TRUE,
                                        m[i].t->offset, m[i].t->bytes,
                                        m[i].p, 0, NULL, NULL)
                       != CL_SUCCESS)
                write_back = -1;
            free(m[i].p);
        } else {
            clEnqueueUnmapMemObject(ctx->queue, m[i].t->mem, m[i].p, 0,
                                    NULL, NULL);
        }
        m[i].p = NULL;
    }
    if (write_back < 0)
        return kdcl__error(ctx, KDCL_ECL, "host path: writing a result back");
    return KDCL_OK;
}

/* (Copies in checker mode: Oclgrind does not see host writes through a
   map as initialising memory.) */
int kdcl__host_map(kdcl_context *ctx, struct kdcl__host_buf *m, int n)
{
    cl_int err = clFinish(ctx->queue);
    for (int i = 0; i < n && err == CL_SUCCESS; i++) {
        const kdcl_tensor *t = m[i].t;
        if (!t)
            continue;
        if (t->host) {
            m[i].p = (float *)(void *)(t->host + t->offset);
            continue;
        }
        if (ctx->quarantine) {
            m[i].p = malloc(t->bytes ? t->bytes : 1);
            err = m[i].p ? clEnqueueReadBuffer(ctx->queue, t->mem, CL_TRUE,
                                               t->offset, t->bytes, m[i].p, 0,
                                               NULL, NULL)
                         : CL_OUT_OF_HOST_MEMORY;
            continue;
        }
        m[i].p = clEnqueueMapBuffer(
            ctx->queue, t->mem, CL_TRUE,
            m[i].write ? CL_MAP_READ | CL_MAP_WRITE : CL_MAP_READ, t->offset,
            t->bytes, 0, NULL, NULL, &err);
    }
    if (err == CL_SUCCESS)
        return KDCL_OK;
    kdcl__host_unmap(ctx, m, n, 0);
    return kdcl__cl_error(ctx, err, "mapping a buffer for the host path");
}

uint64_t kdcl__host_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

#ifdef KDCL_HOST
/* ---------------------------------------------------------------------- */
/* GEMM                                                                    */

#ifdef KDCL_HAVE_BLIS
/*
 * BLIS picks its kernels from the CPU once, at its first call.  BLIS 0.9
 * (Debian 12) did not recognise the Zen 4 EPYC of the build host and fell
 * back to its generic reference kernels: 57-82 GFLOP/s where its Zen 3
 * (AVX2) kernels reach 155-233 on the same two cores
 * (docs/performance.md).  So on AMD family 19h and later, unless the user
 * set BLIS_ARCH_TYPE, kdcl asks for the Zen 3 kernels, which every one of
 * those CPUs runs (on a Zen 3 they are what BLIS picks anyway).
 */
static void blis_arch_choose(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned a, b, c, d, family;
    char vendor[13];
    if (getenv("BLIS_ARCH_TYPE") || !__get_cpuid(0, &a, &b, &c, &d))
        return;
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = 0;
    if (strcmp(vendor, "AuthenticAMD") || !__get_cpuid(1, &a, &b, &c, &d))
        return;
    family = (a >> 8) & 0xf;
    if (family == 0xf)
        family += (a >> 20) & 0xff;
    __builtin_cpu_init();
    if (family >= 0x19 && __builtin_cpu_supports("avx2")
        && __builtin_cpu_supports("fma")) {
        char id[16];
        snprintf(id, sizeof id, "%d", (int)BLIS_ARCH_ZEN3);
        setenv("BLIS_ARCH_TYPE", id, 0);
    }
#endif
}

/* BLIS runs single-threaded unless told: use every online CPU unless
   BLIS_NUM_THREADS or OMP_NUM_THREADS says otherwise. */
static void blis_threads_once(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    blis_arch_choose();
    if (!getenv("BLIS_NUM_THREADS") && !getenv("OMP_NUM_THREADS") && n > 1)
        bli_thread_set_num_threads((dim_t)n);
}
#endif

/* Row-major C = alpha op(A) op(B) + beta C on the host; with BLIS,
   single-threaded when one_thread (the caller runs several at once). */
static void host_sgemm(int trans_a, int trans_b, size_t m, size_t n,
                       size_t k, float alpha, const float *a, size_t lda,
                       const float *b, size_t ldb, float beta, float *c,
                       size_t ldc, int one_thread)
{
#ifdef KDCL_HAVE_BLIS
    rntm_t rntm = BLIS_RNTM_INITIALIZER;
    pthread_once(&blis_once, blis_threads_once);
    if (one_thread)
        bli_rntm_set_num_threads(1, &rntm);
    /* BLIS takes op()'s dimensions and the stored matrix's strides. */
    bli_sgemm_ex(trans_a ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
                 trans_b ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, (dim_t)m,
                 (dim_t)n, (dim_t)k, &alpha, (float *)a, (inc_t)lda, 1,
                 (float *)b, (inc_t)ldb, 1, &beta, c, (inc_t)ldc, 1, NULL,
                 one_thread ? &rntm : NULL);
#else
    (void)one_thread;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k,
                alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
#endif
}

/* dst[i] += part[t * stride + i] for i < n, t = 0 .. nt-1 in thread
   order. */
static void add_parts(float *dst, const float *part, int nt, size_t n,
                      size_t stride)
{
    for (int t = 0; t < nt; t++)
        for (size_t i = 0; i < n; i++)
            dst[i] += part[(size_t)t * stride + i];
}

/*
 * The batch of products.  A batch of small GEMMs (one per image in a
 * convolution) gains little from threads inside each one, so with BLIS the
 * items are spread over the threads, each running single-threaded: with
 * separate C blocks each thread takes a contiguous share of the items;
 * summed into one C (c_stride 0), thread 0 sums its share into C and every
 * other thread into its own zeroed block, added to C in thread order
 * afterwards.
 */
static int host_gemm_batch(int trans_a, int trans_b, size_t m, size_t n,
                           size_t k, float alpha, const float *a,
                           size_t lda, size_t a_stride, const float *b,
                           size_t ldb, size_t b_stride, float beta, float *c,
                           size_t ldc, size_t c_stride, size_t batch)
{
    const int nt = kdcl__host_threads(batch);
    float *part = NULL;
    if (nt <= 1) {
        for (size_t i = 0; i < batch; i++)
            host_sgemm(trans_a, trans_b, m, n, k, alpha, a + i * a_stride,
                       lda, b + i * b_stride, ldb,
                       (c_stride == 0 && i > 0) ? 1.0f : beta,
                       c + i * c_stride, ldc, 0);
        return KDCL_OK;
    }
    if (c_stride == 0) {
        part = calloc((size_t)(nt - 1) * m * n, sizeof *part);
        if (!part)
            return KDCL_ENOMEM;
    }
    KDCL_PARALLEL_NT
    {
        const int t = kdcl__thread_id();
        size_t lo, hi;
        kdcl__share(batch, t, nt, &lo, &hi);
        for (size_t i = lo; i < hi; i++) {
            float *ci = c + i * c_stride;
            size_t ld = ldc;
            float bi = beta;
            if (c_stride == 0) {
                if (t > 0) {
                    ci = part + (size_t)(t - 1) * m * n;
                    ld = n;
                    bi = i > lo ? 1.0f : 0.0f;
                } else if (i > lo) {
                    bi = 1.0f;
                }
            }
            host_sgemm(trans_a, trans_b, m, n, k, alpha, a + i * a_stride,
                       lda, b + i * b_stride, ldb, bi, ci, ld, 1);
        }
    }
    if (part) {
        for (size_t r = 0; r < m; r++)
            add_parts(c + r * ldc, part + r * n, nt - 1, n, m * n);
        free(part);
    }
    return KDCL_OK;
}

int kdcl__host_gemm(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
                    size_t n, size_t k, float alpha, const kdcl_tensor *a,
                    size_t a_off, size_t lda, size_t a_stride,
                    const kdcl_tensor *b, size_t b_off, size_t ldb,
                    size_t b_stride, float beta, kdcl_tensor *c,
                    size_t c_off, size_t ldc, size_t c_stride, size_t batch)
{
    struct kdcl__host_buf buf[3] = {{a, 0, NULL}, {b, 0, NULL}, {c, 1, NULL}};
    uint64_t t0;
    int status = kdcl__host_map(ctx, buf, 3);
    if (status)
        return status;
    t0 = kdcl__host_now_ns();
    status = host_gemm_batch(trans_a, trans_b, m, n, k, alpha,
                             buf[0].p + a_off, lda, a_stride,
                             buf[1].p + b_off, ldb, b_stride, beta,
                             buf[2].p + c_off, ldc, c_stride, batch);
    if (status) {
        kdcl__host_unmap(ctx, buf, 3, 0);
        return kdcl__error(ctx, status, "host GEMM: out of memory");
    }
    if (ctx->profiling)
        kdcl__profile_add_ns(ctx, "host_sgemm", kdcl__host_now_ns() - t0);
    return kdcl__host_unmap(ctx, buf, 3, 1);
}

/* ---------------------------------------------------------------------- */
/* Convolution                                                             */

/* The output columns ow whose input column ow*S - P + kw lies inside
   [0, W): [*lo, *hi). */
static void valid_cols(const struct kdcl__conv_geom *g, int64_t kw,
                       int64_t *lo, int64_t *hi)
{
    int64_t a = g->p - kw, b = g->w - 1 + g->p - kw; /* need a <= ow*S <= b */
    *lo = a <= 0 ? 0 : (a + g->s - 1) / g->s;
    *hi = b < 0 ? 0 : b / g->s + 1;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* col [C*K*K, OH*OW] of one image x [C, H, W], rows ld floats apart:
   row (c*K + kh)*K + kw holds x[c, oh*S - P + kh, ow*S - P + kw], 0
   outside (as nn_im2col).  The columns inside the image are found once
   per kernel column, so the inner loops are plain copies and zero fills
   the compiler vectorises (LeNet's rows are 10 to 28 floats: a memcpy
   call per row cost more than the copy). */
static void im2col(const struct kdcl__conv_geom *g, const float *restrict x,
                   float *restrict col, size_t ld)
{
    const int64_t K = g->k, OH = g->oh, OW = g->ow, S = g->s;
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
                const float *xc = x + c * g->h * g->w;
                float *o = col + (size_t)((c * K + kh) * K + kw) * ld;
                int64_t lo, hi;
                valid_cols(g, kw, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++, o += OW) {
                    const int64_t ih = oh * S - g->p + kh;
                    const float *xr; /* the input of column lo */
                    int64_t ow = 0;
                    if (ih < 0 || ih >= g->h) {
                        for (; ow < OW; ow++)
                            o[ow] = 0.0f;
                        continue;
                    }
                    xr = xc + ih * g->w + (lo < hi ? lo * S - g->p + kw : 0);
                    for (; ow < lo; ow++)
                        o[ow] = 0.0f;
                    if (S == 1)
                        for (; ow < hi; ow++)
                            o[ow] = xr[ow - lo];
                    else
                        for (; ow < hi; ow++)
                            o[ow] = xr[(ow - lo) * S];
                    for (; ow < OW; ow++)
                        o[ow] = 0.0f;
                }
            }
}

/* gx [C, H, W] = the sum of dcol [C*K*K, OH*OW] (rows ld floats apart)
   over the kernel positions that read each pixel, kernel positions
   outermost (as nn_col2im). */
static void col2im(const struct kdcl__conv_geom *g, const float *restrict dcol,
                   size_t ld, float *restrict gx)
{
    const int64_t K = g->k, OH = g->oh, OW = g->ow, S = g->s;
    memset(gx, 0, sizeof(float) * (size_t)(g->c * g->h * g->w));
    for (int64_t c = 0; c < g->c; c++)
        for (int64_t kh = 0; kh < K; kh++)
            for (int64_t kw = 0; kw < K; kw++) {
                float *gc = gx + c * g->h * g->w;
                const float *d = dcol + (size_t)((c * K + kh) * K + kw) * ld;
                int64_t lo, hi;
                valid_cols(g, kw, &lo, &hi);
                for (int64_t oh = 0; oh < OH; oh++, d += OW) {
                    const int64_t ih = oh * S - g->p + kh;
                    float *gr; /* the input of column lo, as in im2col */
                    if (ih < 0 || ih >= g->h || lo >= hi)
                        continue;
                    gr = gc + ih * g->w + lo * S - g->p + kw;
                    if (S == 1)
                        for (int64_t ow = lo; ow < hi; ow++)
                            gr[ow - lo] += d[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++)
                            gr[(ow - lo) * S] += d[ow];
                }
            }
}

/* A layer's host work starts with its per-thread scratch (floats of it,
   uninitialised: the context's, kept between calls) and the maps; NULL,
   with *status set and reported, when either fails. */
static float *layer_begin(kdcl_context *ctx, struct kdcl__host_buf *buf, int n,
                          size_t floats, int *status)
{
    if (floats > ctx->host_scratch_floats) {
        float *p = malloc(floats * sizeof(float));
        if (!p) {
            *status = kdcl__error(ctx, KDCL_ENOMEM,
                                  "host layer: out of memory");
            return NULL;
        }
        free(ctx->host_scratch);
        ctx->host_scratch = p;
        ctx->host_scratch_floats = floats;
    }
    *status = kdcl__host_map(ctx, buf, n);
    return *status ? NULL : ctx->host_scratch;
}

/* ... and ends with its profile record (work since t0) and the unmaps. */
static int layer_end(kdcl_context *ctx, struct kdcl__host_buf *buf, int n,
                     const char *name, uint64_t t0)
{
    if (ctx->profiling)
        kdcl__profile_add_ns(ctx, name, kdcl__host_now_ns() - t0);
    return kdcl__host_unmap(ctx, buf, n, 1);
}

/* The sum of v[0 .. n) in eight interleaved partial sums, then those in
   order: a fixed order, and one the compiler vectorises (a single running
   sum is a chain of dependent scalar adds). */
static float sum8(const float *restrict v, size_t n)
{
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0}, s = 0.0f;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            part[j] += v[i + j];
    for (int j = 0; j < 8; j++)
        s += part[j];
    for (; i < n; i++)
        s += v[i];
    return s;
}

static size_t geom_ckk(const struct kdcl__conv_geom *g)
{
    return (size_t)(g->c * g->k * g->k);
}

/*
 * What both Conv2d passes derive from the geometry: per-image sizes, the
 * threads the batch is spread over, and the images per GEMM (G): a
 * thread builds the columns of a group of its images side by side,
 * [CKK, G*P], and multiplies once; one GEMM per image left the small
 * layers of LeNet to BLIS's per-call cost.  A group's columns stay within
 * about 256 KiB (in L2), at most 32 images.
 */
struct conv_plan {
    size_t ckk, P, oc, B, in_per, G;
    int nt;
};

static struct conv_plan conv_plan(const struct kdcl__conv_geom *g)
{
    struct conv_plan c;
    size_t img;
    c.ckk = geom_ckk(g);
    c.P = (size_t)(g->oh * g->ow);
    c.oc = (size_t)g->oc;
    c.B = (size_t)g->b;
    c.in_per = (size_t)(g->c * g->h * g->w);
    c.nt = kdcl__host_threads(c.B);
    img = c.ckk * c.P * sizeof(float);
    c.G = img ? (256u << 10) / img : 1;
    if (c.G > 32)
        c.G = 32;
    if (c.G > (c.B + (size_t)c.nt - 1) / (size_t)c.nt)
        c.G = (c.B + (size_t)c.nt - 1) / (size_t)c.nt;
    if (c.G < 1)
        c.G = 1;
    return c;
}

int kdcl__host_conv_forward(kdcl_context *ctx,
                            const struct kdcl__conv_geom *g,
                            const kdcl_tensor *x, const kdcl_tensor *w,
                            const kdcl_tensor *bias, kdcl_tensor *y)
{
    struct kdcl__host_buf buf[4] = {
        {x, 0, NULL}, {w, 0, NULL}, {bias, 0, NULL}, {y, 1, NULL}};
    const struct conv_plan c = conv_plan(g);
    /* per thread: the group's columns and its output [OC, G*P] */
    const size_t per = (c.ckk + c.oc) * c.G * c.P;
    const int nt = c.nt;
    float *scratch;
    uint64_t t0;
    int status;
    if (c.B == 0)
        return KDCL_OK;
    scratch = layer_begin(ctx, buf, 4, per * (size_t)nt, &status);
    if (!scratch)
        return status;
    t0 = kdcl__host_now_ns();
    KDCL_PARALLEL_NT
    {
        const int t = kdcl__thread_id();
        float *col = scratch + (size_t)t * per, *yg = col + c.ckk * c.G * c.P;
        size_t i0, hi;
        for (kdcl__share(c.B, t, nt, &i0, &hi); i0 < hi; i0 += c.G) {
            const size_t n = hi - i0 < c.G ? hi - i0 : c.G, ld = n * c.P;
            for (size_t j = 0; j < n; j++)
                im2col(g, buf[0].p + (i0 + j) * c.in_per, col + j * c.P, ld);
            /* yg [OC, n*P] = W [OC, CKK] col [CKK, n*P] */
            host_sgemm(0, 0, c.oc, ld, c.ckk, 1.0f, buf[1].p, c.ckk, col, ld,
                       0.0f, yg, ld, nt > 1);
            for (size_t j = 0; j < n; j++)
                for (size_t o = 0; o < c.oc; o++) {
                    float *yo = buf[3].p + ((i0 + j) * c.oc + o) * c.P;
                    const float *src = yg + o * ld + j * c.P, b = buf[2].p[o];
                    for (size_t p = 0; p < c.P; p++)
                        yo[p] = src[p] + b;
                }
        }
    }
    return layer_end(ctx, buf, 4, "host_conv_forward", t0);
}

int kdcl__host_conv_backward(kdcl_context *ctx,
                             const struct kdcl__conv_geom *g,
                             const kdcl_tensor *x, const kdcl_tensor *w,
                             const kdcl_tensor *gy, kdcl_tensor *gw,
                             kdcl_tensor *gb, kdcl_tensor *gx)
{
    struct kdcl__host_buf buf[6] = {{x, 0, NULL},  {w, 0, NULL},  {gy, 0, NULL},
                              {gw, 1, NULL}, {gb, 1, NULL}, {gx, 1, NULL}};
    const struct conv_plan c = conv_plan(g);
    /* Per thread: a group's columns, its output gradient gathered as
       [OC, G*P], and the thread's own dW and db sums (added in thread
       order afterwards).  The columns are rebuilt from x rather than kept
       from the forward pass: a copy per image, against a [B, CKK, P]
       buffer (10 MB for LeNet-5's first layer at B 128). */
    const size_t grp = (c.ckk + c.oc) * c.G * c.P, sums = c.oc * c.ckk + c.oc;
    const size_t per = grp + sums;
    const int nt = c.nt;
    float *scratch;
    uint64_t t0;
    int status;
    if (c.B == 0)
        return KDCL_OK;
    scratch = layer_begin(ctx, buf, 6, per * (size_t)nt, &status);
    if (!scratch)
        return status;
    t0 = kdcl__host_now_ns();
    KDCL_PARALLEL_NT
    {
        const int t = kdcl__thread_id();
        float *col = scratch + (size_t)t * per, *gyg = col + c.ckk * c.G * c.P;
        float *dw = col + grp, *db = dw + c.oc * c.ckk;
        size_t i0, hi;
        memset(dw, 0, sizeof(float) * sums); /* the rest is overwritten */
        for (kdcl__share(c.B, t, nt, &i0, &hi); i0 < hi; i0 += c.G) {
            const size_t n = hi - i0 < c.G ? hi - i0 : c.G, ld = n * c.P;
            for (size_t j = 0; j < n; j++) {
                im2col(g, buf[0].p + (i0 + j) * c.in_per, col + j * c.P, ld);
                for (size_t o = 0; o < c.oc; o++)
                    memcpy(gyg + o * ld + j * c.P,
                           buf[2].p + ((i0 + j) * c.oc + o) * c.P,
                           sizeof(float) * c.P);
            }
            /* dW += gyg [OC, n*P] col^T [n*P, CKK]; db += row sums */
            host_sgemm(0, 1, c.oc, c.ckk, ld, 1.0f, gyg, ld, col, ld, 1.0f,
                       dw, c.ckk, nt > 1);
            for (size_t o = 0; o < c.oc; o++)
                db[o] += sum8(gyg + o * ld, ld);
            if (gx) {
                /* dcol [CKK, n*P] = W^T gyg, folded back into the images */
                host_sgemm(1, 0, c.ckk, ld, c.oc, 1.0f, buf[1].p, c.ckk, gyg,
                           ld, 0.0f, col, ld, nt > 1);
                for (size_t j = 0; j < n; j++)
                    col2im(g, col + j * c.P, ld,
                           buf[5].p + (i0 + j) * c.in_per);
            }
        }
    }
    memset(buf[3].p, 0, sizeof(float) * c.oc * c.ckk);
    memset(buf[4].p, 0, sizeof(float) * c.oc);
    add_parts(buf[3].p, scratch + grp, nt, c.oc * c.ckk, per);
    add_parts(buf[4].p, scratch + grp + c.oc * c.ckk, nt, c.oc, per);
    return layer_end(ctx, buf, 6, "host_conv_backward", t0);
}

/* ---------------------------------------------------------------------- */
/* Linear                                                                  */

int kdcl__host_linear_forward(kdcl_context *ctx,
                              const struct kdcl__conv_geom *g,
                              const kdcl_tensor *x, const kdcl_tensor *w,
                              const kdcl_tensor *bias, kdcl_tensor *y)
{
    struct kdcl__host_buf buf[4] = {
        {x, 0, NULL}, {w, 0, NULL}, {bias, 0, NULL}, {y, 1, NULL}};
    const size_t B = (size_t)g->b, in = (size_t)g->c, out = (size_t)g->oc;
    uint64_t t0;
    int status;
    if (B == 0)
        return KDCL_OK;
    status = kdcl__host_map(ctx, buf, 4);
    if (status)
        return status;
    t0 = kdcl__host_now_ns();
    /* y = bias broadcast, then y += x w^T */
    for (size_t r = 0; r < B; r++)
        memcpy(buf[3].p + r * out, buf[2].p, sizeof(float) * out);
    host_sgemm(0, 1, B, out, in, 1.0f, buf[0].p, in, buf[1].p, in, 1.0f,
               buf[3].p, out, 0);
    return layer_end(ctx, buf, 4, "host_linear_forward", t0);
}

int kdcl__host_linear_backward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, const kdcl_tensor *w,
                               const kdcl_tensor *gy, kdcl_tensor *gw,
                               kdcl_tensor *gb, kdcl_tensor *gx)
{
    struct kdcl__host_buf buf[6] = {{x, 0, NULL},  {w, 0, NULL},  {gy, 0, NULL},
                              {gw, 1, NULL}, {gb, 1, NULL}, {gx, 1, NULL}};
    const size_t B = (size_t)g->b, in = (size_t)g->c, out = (size_t)g->oc;
    uint64_t t0;
    int status;
    if (B == 0)
        return KDCL_OK;
    status = kdcl__host_map(ctx, buf, 6);
    if (status)
        return status;
    t0 = kdcl__host_now_ns();
    /* gw [out, in] = gy^T x; gb = column sums of gy, rows in order */
    host_sgemm(1, 0, out, in, B, 1.0f, buf[2].p, out, buf[0].p, in, 0.0f,
               buf[3].p, in, 0);
    memcpy(buf[4].p, buf[2].p, sizeof(float) * out);
    for (size_t r = 1; r < B; r++)
        for (size_t o = 0; o < out; o++)
            buf[4].p[o] += buf[2].p[r * out + o];
    if (gx) /* gx [B, in] = gy w */
        host_sgemm(0, 0, B, in, out, 1.0f, buf[2].p, out, buf[1].p, in, 0.0f,
                   buf[5].p, in, 0);
    return layer_end(ctx, buf, 6, "host_linear_backward", t0);
}

#else /* no host BLAS */

static int no_host(kdcl_context *ctx)
{
    return kdcl__error(ctx, KDCL_EINVAL, "built without a host BLAS");
}

int kdcl__host_gemm(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
                    size_t n, size_t k, float alpha, const kdcl_tensor *a,
                    size_t a_off, size_t lda, size_t a_stride,
                    const kdcl_tensor *b, size_t b_off, size_t ldb,
                    size_t b_stride, float beta, kdcl_tensor *c,
                    size_t c_off, size_t ldc, size_t c_stride, size_t batch)
{
    (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha;
    (void)a, (void)a_off, (void)lda, (void)a_stride, (void)b, (void)b_off;
    (void)ldb, (void)b_stride, (void)beta, (void)c, (void)c_off, (void)ldc;
    (void)c_stride, (void)batch;
    return no_host(ctx);
}

int kdcl__host_conv_forward(kdcl_context *ctx,
                            const struct kdcl__conv_geom *g,
                            const kdcl_tensor *x, const kdcl_tensor *w,
                            const kdcl_tensor *bias, kdcl_tensor *y)
{
    (void)g, (void)x, (void)w, (void)bias, (void)y;
    return no_host(ctx);
}

int kdcl__host_conv_backward(kdcl_context *ctx,
                             const struct kdcl__conv_geom *g,
                             const kdcl_tensor *x, const kdcl_tensor *w,
                             const kdcl_tensor *gy, kdcl_tensor *gw,
                             kdcl_tensor *gb, kdcl_tensor *gx)
{
    (void)g, (void)x, (void)w, (void)gy, (void)gw, (void)gb, (void)gx;
    return no_host(ctx);
}

int kdcl__host_linear_forward(kdcl_context *ctx,
                              const struct kdcl__conv_geom *g,
                              const kdcl_tensor *x, const kdcl_tensor *w,
                              const kdcl_tensor *bias, kdcl_tensor *y)
{
    return kdcl__host_conv_forward(ctx, g, x, w, bias, y);
}

int kdcl__host_linear_backward(kdcl_context *ctx,
                               const struct kdcl__conv_geom *g,
                               const kdcl_tensor *x, const kdcl_tensor *w,
                               const kdcl_tensor *gy, kdcl_tensor *gw,
                               kdcl_tensor *gb, kdcl_tensor *gx)
{
    return kdcl__host_conv_backward(ctx, g, x, w, gy, gw, gb, gx);
}
#endif /* KDCL_HOST */
