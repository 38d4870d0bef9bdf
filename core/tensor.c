/*
 * core/tensor.c - device tensors (typed, shaped OpenCL buffers and views of
 * them), copies and fills, and GEMM through CLBlast (or the host BLAS on
 * CPU devices: core/host.c).
 */
#include "internal.h"
#include "nn.h"

#include <clblast_c.h>
#include <stdlib.h>
#include <string.h>

static int check_shape(kdcl_context *ctx, int dtype, uint32_t ndim,
                       const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    if (kdcl_dtype_size(dtype) == 0)
        return kdcl__error(ctx, KDCL_EDTYPE, "unknown dtype %d", dtype);
    if (ndim > KDCL_MAX_DIMS)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "tensor has %u dimensions, at most %d allowed",
                           ndim, KDCL_MAX_DIMS);
    for (uint32_t i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return kdcl__error(ctx, KDCL_EINVAL,
                               "tensor dimension %u is negative", i);
        if (shape[i] && n > INT64_MAX / 16 / shape[i])
            return kdcl__error(ctx, KDCL_EDEVMEM, "tensor size overflows");
        n *= shape[i];
    }
    *numel = n;
    return KDCL_OK;
}

static int device_buffer(kdcl_context *ctx, kdcl_tensor *t)
{
    cl_int err;
    t->mem = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE, t->bytes, NULL,
                            &err);
    return err == CL_SUCCESS ? KDCL_OK
                             : kdcl__cl_error(ctx, err, "clCreateBuffer");
}

static void CL_CALLBACK free_host(cl_mem mem, void *p)
{
    (void)mem;
    free(p);
}

/*
 * A CPU device's buffer in kdcl's own allocation (CL_MEM_USE_HOST_PTR),
 * aligned as the device asks.  When the driver's map hands back that same
 * pointer, the driver computes in it directly, so the host path can read
 * and write it in place once the queue is drained, without a map and an
 * unmap command per buffer per layer (PoCL: about 40 us the pair);
 * otherwise t->host stays NULL and the host path maps.  The allocation is freed when the
 * driver destroys the buffer, after any command still using it.
 */
static int host_buffer(kdcl_context *ctx, kdcl_tensor *t)
{
    size_t align = ctx->devices[ctx->dev_index].mem_base_align;
    void *p = NULL, *mapped;
    cl_int err;
    if (align < 128)
        align = 128;
    if (posix_memalign(&p, align, t->bytes))
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    t->mem = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR,
                            t->bytes, p, &err);
    if (err != CL_SUCCESS) {
        free(p);
        return kdcl__cl_error(ctx, err, "clCreateBuffer");
    }
    err = clSetMemObjectDestructorCallback(t->mem, free_host, p);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(t->mem);
        free(p);
        return kdcl__cl_error(ctx, err, "clSetMemObjectDestructorCallback");
    }
    mapped = clEnqueueMapBuffer(ctx->queue, t->mem, CL_TRUE,
                                CL_MAP_READ | CL_MAP_WRITE, 0, t->bytes, 0,
                                NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(t->mem);
        return kdcl__cl_error(ctx, err, "clEnqueueMapBuffer");
    }
    if (mapped == p)
        t->host = p;
    err = clEnqueueUnmapMemObject(ctx->queue, t->mem, mapped, 0, NULL, NULL);
    if (err != CL_SUCCESS) {
        clReleaseMemObject(t->mem);
        return kdcl__cl_error(ctx, err, "clEnqueueUnmapMemObject");
    }
    return KDCL_OK;
}

int kdcl_tensor_init(kdcl_context *ctx, int dtype, uint32_t ndim,
                     const int64_t *shape, kdcl_tensor **out)
{
    int64_t numel = 0;
    const struct kdcl_device_info *d;
    kdcl_tensor *t;
    size_t bytes;
    int status;

    *out = NULL;
    if (!ctx->opened)
        return kdcl__error(ctx, KDCL_EINVAL, "no device open");
    status = check_shape(ctx, dtype, ndim, shape, &numel);
    if (status)
        return status;
    d = &ctx->devices[ctx->dev_index];
    bytes = (size_t)numel * kdcl_dtype_size(dtype);
    if (d->max_alloc && bytes > d->max_alloc)
        return kdcl__error(ctx, KDCL_EDEVMEM,
                           "tensor of %zu bytes is over the device's "
                           "allocation limit of %llu bytes",
                           bytes, (unsigned long long)d->max_alloc);
    t = calloc(1, sizeof *t);
    if (!t)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    t->ctx = ctx;
    t->dtype = dtype;
    t->ndim = ndim;
    if (ndim)
        memcpy(t->shape, shape, ndim * sizeof *shape);
    t->numel = numel;
    t->bytes = bytes;
    if (bytes) {
        status = ctx->host_direct ? host_buffer(ctx, t)
                                  : device_buffer(ctx, t);
        if (status) {
            free(t);
            return status;
        }
    }
    ctx->bytes_in_use += bytes;
    if (ctx->bytes_in_use > ctx->bytes_peak)
        ctx->bytes_peak = ctx->bytes_in_use;
    *out = t;
    return KDCL_OK;
}

int kdcl_tensor_view(kdcl_tensor *parent, int64_t offset, uint32_t ndim,
                     const int64_t *shape, kdcl_tensor **out)
{
    kdcl_context *ctx = parent->ctx;
    int64_t numel = 0;
    kdcl_tensor *t;
    size_t esize = kdcl_dtype_size(parent->dtype);
    int status = check_shape(ctx, parent->dtype, ndim, shape, &numel);

    *out = NULL;
    if (status)
        return status;
    if (offset < 0 || numel > parent->numel || offset > parent->numel - numel)
        return kdcl__error(ctx, KDCL_ERANGE,
                           "view of %lld elements at %lld is outside a "
                           "tensor of %lld elements",
                           (long long)numel, (long long)offset,
                           (long long)parent->numel);
    t = calloc(1, sizeof *t);
    if (!t)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    t->ctx = ctx;
    t->mem = parent->mem;
    t->host = parent->host;
    t->offset = parent->offset + (size_t)offset * esize;
    t->parent = parent;
    t->dtype = parent->dtype;
    t->ndim = ndim;
    if (ndim)
        memcpy(t->shape, shape, ndim * sizeof *shape);
    t->numel = numel;
    t->bytes = (size_t)numel * esize;
    *out = t;
    return KDCL_OK;
}

/* Release mem now, or keep it until the context goes (quarantine). */
static void release_mem(kdcl_context *ctx, cl_mem mem)
{
    if (ctx->quarantine) {
        if (ctx->n_quarantined == ctx->cap_quarantined) {
            size_t cap = ctx->cap_quarantined ? ctx->cap_quarantined * 2 : 64;
            void *grow = realloc(ctx->quarantined,
                                 cap * sizeof *ctx->quarantined);
            if (!grow) {
                clReleaseMemObject(mem);
                return;
            }
            ctx->quarantined = grow;
            ctx->cap_quarantined = cap;
        }
        ctx->quarantined[ctx->n_quarantined++] = mem;
        return;
    }
    clReleaseMemObject(mem);
}

void kdcl_tensor_free(kdcl_tensor *t)
{
    if (!t)
        return;
    if (t->sub)
        release_mem(t->ctx, t->sub);
    if (!t->parent) {
        if (t->mem)
            release_mem(t->ctx, t->mem);
        t->ctx->bytes_in_use -= t->bytes;
    }
    free(t);
}

int kdcl__tensor_arg(const kdcl_tensor *t, cl_mem *out)
{
    kdcl_context *ctx = t->ctx;
    kdcl_tensor *mt = (kdcl_tensor *)t; /* the sub-buffer is a cache */
    cl_buffer_region region;
    cl_int err;
    uint32_t align;

    if (t->offset == 0 || t->bytes == 0) {
        *out = t->mem;
        return KDCL_OK;
    }
    if (t->sub) {
        *out = t->sub;
        return KDCL_OK;
    }
    align = ctx->devices[ctx->dev_index].mem_base_align;
    if (align && t->offset % align)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "a view at byte offset %zu cannot be a kernel "
                           "argument: the device needs %u-byte alignment; "
                           "pass the parent and an offset instead",
                           t->offset, align);
    region.origin = t->offset;
    region.size = t->bytes;
    mt->sub = clCreateSubBuffer(t->mem, CL_MEM_READ_WRITE,
                                CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    if (err != CL_SUCCESS)
        return kdcl__cl_error(ctx, err, "clCreateSubBuffer");
    *out = mt->sub;
    return KDCL_OK;
}

int kdcl_tensor_dtype(const kdcl_tensor *t)
{
    return t->dtype;
}

uint32_t kdcl_tensor_ndim(const kdcl_tensor *t)
{
    return t->ndim;
}

int64_t kdcl_tensor_dim(const kdcl_tensor *t, int i)
{
    if (i < 0)
        i += (int)t->ndim;
    if (i < 0 || (uint32_t)i >= t->ndim)
        return 0;
    return t->shape[i];
}

int64_t kdcl_tensor_numel(const kdcl_tensor *t)
{
    return t->numel;
}

size_t kdcl_tensor_bytes(const kdcl_tensor *t)
{
    return t->bytes;
}

cl_mem kdcl_tensor_mem(const kdcl_tensor *t, size_t *offset_bytes)
{
    if (offset_bytes)
        *offset_bytes = t->offset;
    return t->mem;
}

/* The data of a tensor that lives in host memory, once the commands
   before have finished; NULL (with the error set in *status) when the
   queue fails, or without status set when t is not in host memory. */
static unsigned char *in_place(const kdcl_tensor *t, int *status)
{
    cl_int err;
    *status = KDCL_OK;
    if (!t->host)
        return NULL;
    err = clFinish(t->ctx->queue);
    if (err != CL_SUCCESS) {
        *status = kdcl__cl_error(t->ctx, err, "clFinish");
        return NULL;
    }
    return t->host + t->offset;
}

int kdcl_tensor_write(kdcl_tensor *t, const void *src, size_t bytes)
{
    unsigned char *p;
    int status;
    cl_int err;
    if (bytes != t->bytes)
        return kdcl__error(t->ctx, KDCL_EINVAL,
                           "tensor write of %zu bytes into a tensor of %zu",
                           bytes, t->bytes);
    if (!bytes)
        return KDCL_OK;
    if ((p = in_place(t, &status)) || status) {
        if (p)
            memcpy(p, src, bytes);
        return status;
    }
    err = clEnqueueWriteBuffer(t->ctx->queue, t->mem, CL_TRUE, t->offset,
                               bytes, src, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return kdcl__cl_error(t->ctx, err, "clEnqueueWriteBuffer");
    return KDCL_OK;
}

int kdcl_tensor_read(const kdcl_tensor *t, void *dst, size_t bytes)
{
    const unsigned char *p;
    int status;
    cl_int err;
    if (bytes != t->bytes)
        return kdcl__error(t->ctx, KDCL_EINVAL,
                           "tensor read of %zu bytes from a tensor of %zu",
                           bytes, t->bytes);
    if (!bytes)
        return KDCL_OK;
    if ((p = in_place(t, &status)) || status) {
        if (p)
            memcpy(dst, p, bytes);
        return status;
    }
    err = clEnqueueReadBuffer(t->ctx->queue, t->mem, CL_TRUE, t->offset,
                              bytes, dst, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return kdcl__cl_error(t->ctx, err, "clEnqueueReadBuffer");
    return KDCL_OK;
}

int kdcl_tensor_fill(kdcl_tensor *t, double value)
{
    union {
        float f32;
        double f64;
        int32_t i32;
        int64_t i64;
        uint8_t u8;
    } pattern;
    size_t esize = kdcl_dtype_size(t->dtype);
    cl_int err;
    switch (t->dtype) {
    case KDCL_DTYPE_F32: pattern.f32 = (float)value; break;
    case KDCL_DTYPE_F64: pattern.f64 = value; break;
    case KDCL_DTYPE_I32: pattern.i32 = (int32_t)value; break;
    case KDCL_DTYPE_I64: pattern.i64 = (int64_t)value; break;
    default: pattern.u8 = (uint8_t)value; break;
    }
    if (!t->bytes)
        return KDCL_OK;
    {
        int status;
        unsigned char *p = in_place(t, &status);
        if (status)
            return status;
        if (p) {
            for (size_t i = 0; i < t->bytes; i += esize)
                memcpy(p + i, &pattern, esize);
            return KDCL_OK;
        }
    }
    if (t->ctx->quarantine) {
        /* Checker mode (KDCL_CHECKER=1): a blocking write instead. */
        unsigned char *buf = malloc(t->bytes);
        int status;
        if (!buf)
            return kdcl__error(t->ctx, KDCL_ENOMEM, "out of memory");
        for (size_t i = 0; i < t->bytes; i += esize)
            memcpy(buf + i, &pattern, esize);
        status = kdcl_tensor_write(t, buf, t->bytes);
        free(buf);
        return status;
    }
    err = clEnqueueFillBuffer(t->ctx->queue, t->mem, &pattern, esize,
                              t->offset, t->bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return kdcl__cl_error(t->ctx, err, "clEnqueueFillBuffer");
    return KDCL_OK;
}

int kdcl_tensor_copy(kdcl_tensor *dst, const kdcl_tensor *src)
{
    cl_int err;
    if (dst->dtype != src->dtype || dst->numel != src->numel)
        return kdcl__error(dst->ctx, KDCL_ESHAPE,
                           "tensor copy between %s[%lld] and %s[%lld]",
                           kdcl_dtype_name(src->dtype),
                           (long long)src->numel, kdcl_dtype_name(dst->dtype),
                           (long long)dst->numel);
    if (!dst->bytes)
        return KDCL_OK;
    if (dst->host && src->host) {
        int status;
        unsigned char *p = in_place(dst, &status);
        if (status)
            return status;
        memmove(p, src->host + src->offset, dst->bytes);
        return KDCL_OK;
    }
    err = clEnqueueCopyBuffer(dst->ctx->queue, src->mem, dst->mem,
                              src->offset, dst->offset, dst->bytes, 0, NULL,
                              NULL);
    if (err != CL_SUCCESS)
        return kdcl__cl_error(dst->ctx, err, "clEnqueueCopyBuffer");
    return KDCL_OK;
}

/* ---------------------------------------------------------------------- */
/* GEMM                                                                    */

static int blas_error(kdcl_context *ctx, CLBlastStatusCode s,
                      const char *what)
{
    if (s == CLBlastSuccess)
        return KDCL_OK;
    if (s < 0 && s > -100)
        return kdcl__cl_error(ctx, (cl_int)s, what);
    return kdcl__error(ctx, KDCL_EBLAS, "%s: CLBlast status %d", what,
                       (int)s);
}

static int gemm_check(kdcl_context *ctx, const kdcl_tensor *t, size_t off,
                      size_t rows, size_t cols, size_t ld, const char *which)
{
    size_t need;
    if (t->dtype != KDCL_DTYPE_F32)
        return kdcl__error(ctx, KDCL_EDTYPE, "gemm: %s is %s, not f32", which,
                           kdcl_dtype_name(t->dtype));
    if (rows == 0 || cols == 0)
        return KDCL_OK;
    if (ld < cols)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "gemm: leading dimension of %s (%zu) < %zu",
                           which, ld, cols);
    need = off + (rows - 1) * ld + cols;
    if (need > (size_t)t->numel)
        return kdcl__error(ctx, KDCL_ERANGE,
                           "gemm: %s needs %zu elements, tensor has %lld",
                           which, need, (long long)t->numel);
    return KDCL_OK;
}


/* C block = beta * C block (zero when beta is 0), at element offset off
   of c's whole buffer (views included: the root buffer is passed, so no
   sub-buffer alignment applies). */
static int scale_block(kdcl_context *ctx, const kdcl_tensor *c, size_t off,
                       size_t m, size_t n, size_t ldc, float beta)
{
    kdcl_tensor root = *c;
    size_t g[2] = {n, m};
    root.offset = 0;
    root.sub = NULL;
    root.parent = NULL;
    {
        struct kdcl_arg args[] = {KDCL_A_TENSOR(&root),
                                  KDCL_A_I64((int64_t)off),
                                  KDCL_A_I32((int32_t)m),
                                  KDCL_A_I32((int32_t)n),
                                  KDCL_A_I32((int32_t)ldc),
                                  KDCL_A_F32(beta)};
        return kdcl__nn_launch3(ctx, KDCL__NN_SCALE_BLOCK, 2, g, 6, args);
    }
}

int kdcl_gemm_batched(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
                      size_t n, size_t k, float alpha, const kdcl_tensor *a,
                      size_t a_off, size_t lda, size_t a_stride,
                      const kdcl_tensor *b, size_t b_off, size_t ldb,
                      size_t b_stride, float beta, kdcl_tensor *c,
                      size_t c_off, size_t ldc, size_t c_stride,
                      size_t batch)
{
    size_t eo_a = a->offset / 4, eo_b = b->offset / 4, eo_c = c->offset / 4;
    cl_event ev = NULL;
    CLBlastStatusCode s;
    int status;
    size_t last = batch ? batch - 1 : 0;

    if (batch == 0 || m == 0 || n == 0)
        return KDCL_OK;
    status = gemm_check(ctx, a, a_off + last * a_stride, trans_a ? k : m,
                        trans_a ? m : k, lda, "A");
    if (!status)
        status = gemm_check(ctx, b, b_off + last * b_stride, trans_b ? n : k,
                            trans_b ? k : n, ldb, "B");
    if (!status)
        status = gemm_check(ctx, c, c_off + last * c_stride, m, n, ldc, "C");
    if (status)
        return status;
    if (k == 0) {
        /* An empty product: C = beta * C (0 where beta is 0, whatever C
           held), which CLBlast would refuse. */
        for (size_t i = 0; i < (c_stride == 0 ? 1 : batch); i++) {
            status = scale_block(ctx, c, eo_c + c_off + i * c_stride, m, n,
                                 ldc, beta);
            if (status)
                return status;
        }
        return KDCL_OK;
    }
    if (kdcl__host_gemm_wanted(ctx))
        return kdcl__host_gemm(ctx, trans_a, trans_b, m, n, k, alpha, a,
                               a_off, lda, a_stride, b, b_off, ldb, b_stride,
                               beta, c, c_off, ldc, c_stride, batch);
    ctx->used_clblast = true;
    if (beta == 0.0f) {
        /* CLBlast reads C even when beta is 0, so NaN or garbage in C
           (a fresh buffer on a GPU) would leak into the product: zero the
           blocks first. */
        size_t nb = c_stride == 0 ? 1 : batch;
        for (size_t i = 0; i < nb; i++) {
            status = scale_block(ctx, c, eo_c + c_off + i * c_stride, m, n,
                                 ldc, 0.0f);
            if (status)
                return status;
        }
    }
    if (c_stride == 0 && batch > 1) {
        /* One C for the whole batch: the products are summed into it. */
        for (size_t i = 0; i < batch; i++) {
            s = CLBlastSgemm(
                CLBlastLayoutRowMajor,
                trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k,
                alpha, a->mem, eo_a + a_off + i * a_stride, lda, b->mem,
                eo_b + b_off + i * b_stride, ldb, i ? 1.0f : beta, c->mem,
                eo_c + c_off, ldc, &ctx->queue, NULL);
            if (s != CLBlastSuccess)
                return blas_error(ctx, s, "CLBlastSgemm");
        }
        return KDCL_OK;
    }
    if (batch == 1)
        s = CLBlastSgemm(CLBlastLayoutRowMajor,
                         trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
                         trans_b ? CLBlastTransposeYes : CLBlastTransposeNo,
                         m, n, k, alpha, a->mem, eo_a + a_off, lda, b->mem,
                         eo_b + b_off, ldb, beta, c->mem, eo_c + c_off, ldc,
                         &ctx->queue, ctx->profiling ? &ev : NULL);
    else
        s = CLBlastSgemmStridedBatched(
            CLBlastLayoutRowMajor,
            trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
            trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k,
            alpha, a->mem, eo_a + a_off, lda, a_stride, b->mem, eo_b + b_off,
            ldb, b_stride, beta, c->mem, eo_c + c_off, ldc, c_stride, batch,
            &ctx->queue, ctx->profiling ? &ev : NULL);
    status = blas_error(ctx, s, batch == 1 ? "CLBlastSgemm"
                                           : "CLBlastSgemmStridedBatched");
    if (!status && ev)
        kdcl__profile_add(ctx, batch == 1 ? "clblast_sgemm"
                                          : "clblast_sgemm_batched",
                          ev);
    else if (ev)
        clReleaseEvent(ev);
    return status;
}

int kdcl_gemm(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
              size_t n, size_t k, float alpha, const kdcl_tensor *a,
              size_t a_off, size_t lda, const kdcl_tensor *b, size_t b_off,
              size_t ldb, float beta, kdcl_tensor *c, size_t c_off,
              size_t ldc)
{
    return kdcl_gemm_batched(ctx, trans_a, trans_b, m, n, k, alpha, a, a_off,
                             lda, 0, b, b_off, ldb, 0, beta, c, c_off, ldc, 0,
                             1);
}
