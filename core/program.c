/*
 * core/program.c - OpenCL program builds behind two caches (in memory per
 * context, and binaries on disk), kernels and launches.
 *
 * Disk entry layout (all integers little-endian):
 *   magic "KDCLBIN1" | u32 format | u32 key_len | key | u64 bin_len | bin |
 *   u64 checksum (FNV-1a 64 of everything before it)
 * The key is the text "format/options/device/driver/device version/
 * platform version/source hash"; the file name is the FNV-1a hash of the
 * key.  An entry whose magic, format, key or checksum does not match is
 * rebuilt from source and overwritten.  Entries are written to a temporary
 * file and renamed into place, so readers never see half an entry.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CACHE_MAGIC "KDCLBIN1"
#define CACHE_FORMAT 1u

/* ---------------------------------------------------------------------- */
/* Disk cache                                                              */

/*
 * KDCL_CACHE=0 turns the disk cache off and KDCL_CACHE=1 on.  Unset, it is
 * on except on PoCL with PoCL's own kernel cache enabled: there a source
 * build that hits PoCL's cache is faster than loading kdcl's binary, which
 * PoCL still finalises for the device (docs/performance.md has the
 * figures), so the second cache would only cost time and disk.
 */
static bool cache_enabled(const kdcl_context *ctx)
{
    const char *e = getenv("KDCL_CACHE");
    const char *pocl_cache = getenv("POCL_KERNEL_CACHE");
    if (e && *e)
        return strcmp(e, "0") != 0;
    if (strstr(ctx->devices[ctx->dev_index].platform_name,
               "Portable Computing Language")
        && !(pocl_cache && strcmp(pocl_cache, "0") == 0))
        return false;
    return true;
}

int kdcl__mkdirs(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return -1;
            buf[i] = c;
        }
    }
    return 0;
}

static bool cache_dir(char *out, size_t len)
{
    const char *e = getenv("KDCL_CACHE_DIR");
    int n;
    if (e && *e)
        n = snprintf(out, len, "%s", e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e)
        n = snprintf(out, len, "%s/kdcl", e);
    else if ((e = getenv("HOME")) && *e)
        n = snprintf(out, len, "%s/.cache/kdcl", e);
    else
        return false;
    return n > 0 && (size_t)n < len;
}

/* The cache key text; caller frees. */
static char *cache_key(kdcl_context *ctx, const char *source,
                       const char *options)
{
    const struct kdcl_device_info *d = &ctx->devices[ctx->dev_index];
    uint64_t h = kdcl__fnv1a(KDCL__FNV_OFFSET, source, strlen(source));
    uint64_t h2 = kdcl__fnv1a(0x84222325cbf29ce4ull, source, strlen(source));
    size_t len = strlen(options) + strlen(d->name) + strlen(d->driver_version)
                 + strlen(d->device_version) + strlen(d->platform_version)
                 + 128;
    char *key = malloc(len);
    if (!key)
        return NULL;
    snprintf(key, len, "%u\n%s\n%s\n%s\n%s\n%s\n%016llx%016llx:%zu",
             CACHE_FORMAT, options, d->name, d->driver_version,
             d->device_version, d->platform_version, (unsigned long long)h,
             (unsigned long long)h2, strlen(source));
    return key;
}

static bool cache_path(const char *key, char *out, size_t len)
{
    char dir[3500];
    uint64_t h = kdcl__fnv1a(KDCL__FNV_OFFSET, key, strlen(key));
    int n;
    if (!cache_dir(dir, sizeof dir))
        return false;
    n = snprintf(out, len, "%s/%016llx.bin", dir, (unsigned long long)h);
    return n > 0 && (size_t)n < len;
}

/* Read a whole file; NULL when absent or unreadable. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long size;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
        goto out;
    buf = malloc((size_t)size + 1);
    if (!buf)
        goto out;
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        buf = NULL;
        goto out;
    }
    *len = (size_t)size;
out:
    fclose(f);
    return buf;
}

/* Validate an entry and return a pointer to its binary, or NULL. */
static const unsigned char *entry_binary(const unsigned char *buf, size_t len,
                                         const char *key, size_t *bin_len)
{
    size_t klen = strlen(key), pos = 0;
    uint32_t format, key_len;
    uint64_t blen, sum;
    if (len < 8 + 4 + 4 + 8 + 8 || memcmp(buf, CACHE_MAGIC, 8) != 0)
        return NULL;
    pos = 8;
    memcpy(&format, buf + pos, 4);
    memcpy(&key_len, buf + pos + 4, 4);
    pos += 8;
    if (format != CACHE_FORMAT || key_len != klen
        || len - pos < (size_t)key_len + 16
        || memcmp(buf + pos, key, klen) != 0)
        return NULL;
    pos += klen;
    memcpy(&blen, buf + pos, 8);
    pos += 8;
    if (blen == 0 || len - pos != blen + 8)
        return NULL;
    memcpy(&sum, buf + pos + blen, 8);
    if (sum != kdcl__fnv1a(KDCL__FNV_OFFSET, buf, pos + blen))
        return NULL;
    *bin_len = (size_t)blen;
    return buf + pos;
}

static void cache_store(kdcl_context *ctx, const char *path, const char *key,
                        const unsigned char *bin, size_t bin_len)
{
    char tmp[4200], dir[3500];
    uint32_t format = CACHE_FORMAT, key_len = (uint32_t)strlen(key);
    uint64_t blen = bin_len, sum;
    FILE *f;
    int fd;
    bool ok;

    if (!cache_dir(dir, sizeof dir) || kdcl__mkdirs(dir) != 0)
        return;
    snprintf(tmp, sizeof tmp, "%s.tmpXXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0)
        return;
    f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return;
    }
    sum = kdcl__fnv1a(KDCL__FNV_OFFSET, CACHE_MAGIC, 8);
    sum = kdcl__fnv1a(sum, &format, 4);
    sum = kdcl__fnv1a(sum, &key_len, 4);
    sum = kdcl__fnv1a(sum, key, key_len);
    sum = kdcl__fnv1a(sum, &blen, 8);
    sum = kdcl__fnv1a(sum, bin, bin_len);
    ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&format, 4, 1, f) == 1
         && fwrite(&key_len, 4, 1, f) == 1
         && fwrite(key, 1, key_len, f) == key_len
         && fwrite(&blen, 8, 1, f) == 1
         && fwrite(bin, 1, bin_len, f) == bin_len
         && fwrite(&sum, 8, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (ok && rename(tmp, path) == 0) {
        ctx->cache.disk_writes++;
        return;
    }
    unlink(tmp);
    kdcl__log(ctx, KDCL_LOG_DEBUG, "program cache: could not write %s", path);
}

/* ---------------------------------------------------------------------- */
/* Builds                                                                  */

static int build_log_error(kdcl_context *ctx, cl_program prog, cl_int err)
{
    cl_device_id dev = ctx->device_ids[ctx->dev_index];
    size_t len = 0;
    char *log = NULL;
    int status;
    clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
    if (len)
        log = malloc(len + 1);
    if (log
        && clGetProgramBuildInfo(prog, dev, CL_PROGRAM_BUILD_LOG, len, log,
                                 NULL) == CL_SUCCESS) {
        log[len] = '\0';
        status = kdcl__error(ctx, KDCL_EBUILD,
                             "OpenCL program failed to build (%s):\n%s",
                             kdcl_cl_error_name(err), log);
    } else {
        status = kdcl__error(ctx, KDCL_EBUILD,
                             "OpenCL program failed to build (%s), no log",
                             kdcl_cl_error_name(err));
    }
    free(log);
    return status;
}

static int build_from_binary(kdcl_context *ctx, const unsigned char *bin,
                             size_t len, const char *opts, cl_program *out)
{
    cl_device_id dev = ctx->device_ids[ctx->dev_index];
    cl_int err, bin_status = CL_SUCCESS;
    cl_program prog = clCreateProgramWithBinary(ctx->cl_ctx, 1, &dev, &len,
                                                &bin, &bin_status, &err);
    if (err != CL_SUCCESS || bin_status != CL_SUCCESS)
        return KDCL_EFORMAT;
    if (clBuildProgram(prog, 1, &dev, opts, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return KDCL_EFORMAT;
    }
    *out = prog;
    return KDCL_OK;
}

static unsigned char *program_binary(cl_program prog, size_t *len)
{
    size_t size = 0;
    unsigned char *bin;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size,
                         NULL) != CL_SUCCESS
        || size == 0)
        return NULL;
    bin = malloc(size);
    if (!bin)
        return NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL)
        != CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    *len = size;
    return bin;
}

static int build(kdcl_context *ctx, const char *source, const char *opts,
                 cl_program *out)
{
    cl_device_id dev = ctx->device_ids[ctx->dev_index];
    bool use_disk = cache_enabled(ctx);
    char *key = NULL;
    char path[4096];
    cl_int err;
    cl_program prog;
    int status = KDCL_OK;

    if (use_disk) {
        key = cache_key(ctx, source, opts);
        use_disk = key && cache_path(key, path, sizeof path);
    }
    if (use_disk) {
        size_t len = 0, bin_len = 0;
        unsigned char *buf = read_file(path, &len);
        if (buf) {
            const unsigned char *bin = entry_binary(buf, len, key, &bin_len);
            if (bin && build_from_binary(ctx, bin, bin_len, opts, out) == 0) {
                ctx->cache.disk_hits++;
                free(buf);
                free(key);
                return KDCL_OK;
            }
            ctx->cache.disk_bad++;
            kdcl__log(ctx, KDCL_LOG_DEBUG,
                      "program cache: rebuilding bad entry %s", path);
            free(buf);
        }
    }
    prog = clCreateProgramWithSource(ctx->cl_ctx, 1, &source, NULL, &err);
    if (err != CL_SUCCESS) {
        status = kdcl__cl_error(ctx, err, "clCreateProgramWithSource");
        goto out;
    }
    err = clBuildProgram(prog, 1, &dev, opts, NULL, NULL);
    ctx->cache.builds++;
    if (err != CL_SUCCESS) {
        status = build_log_error(ctx, prog, err);
        clReleaseProgram(prog);
        goto out;
    }
    if (use_disk) {
        size_t bin_len = 0;
        unsigned char *bin = program_binary(prog, &bin_len);
        if (bin)
            cache_store(ctx, path, key, bin, bin_len);
        free(bin);
    }
    *out = prog;
out:
    free(key);
    return status;
}

int kdcl_program_build(kdcl_context *ctx, const char *source,
                       const char *options, kdcl_program **out)
{
    char *opts = NULL;
    size_t olen;
    cl_program prog = NULL;
    kdcl_program *p = NULL;
    int status;

    *out = NULL;
    if (!ctx->opened)
        return kdcl__error(ctx, KDCL_EINVAL, "no device open");
    if (!source)
        return kdcl__error(ctx, KDCL_EINVAL, "program source is NULL");
    if (!options)
        options = "";
    olen = strlen(ctx->build_defines) + strlen(options) + 2;
    opts = malloc(olen);
    if (!opts)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    snprintf(opts, olen, "%s %s", ctx->build_defines, options);

    for (size_t i = 0; i < ctx->n_programs; i++) {
        struct kdcl__program_entry *e = &ctx->programs[i];
        if (strcmp(e->options, opts) == 0 && strcmp(e->source, source) == 0) {
            ctx->cache.memory_hits++;
            *out = e->program;
            free(opts);
            return KDCL_OK;
        }
    }
    if (ctx->n_programs == ctx->cap_programs) {
        size_t cap = ctx->cap_programs ? ctx->cap_programs * 2 : 16;
        void *grow = realloc(ctx->programs, cap * sizeof *ctx->programs);
        if (!grow) {
            status = kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
            goto fail;
        }
        ctx->programs = grow;
        ctx->cap_programs = cap;
    }
    status = build(ctx, source, opts, &prog);
    if (status)
        goto fail;
    p = malloc(sizeof *p);
    if (!p) {
        status = kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
        goto fail;
    }
    p->ctx = ctx;
    p->prog = prog;
    {
        struct kdcl__program_entry *e = &ctx->programs[ctx->n_programs];
        e->source = kdcl__strdup(source);
        e->options = opts;
        e->program = p;
        if (!e->source) {
            status = kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
            goto fail;
        }
    }
    ctx->n_programs++;
    *out = p;
    return KDCL_OK;
fail:
    free(p);
    if (prog)
        clReleaseProgram(prog);
    free(opts);
    return status;
}

void kdcl__programs_free(kdcl_context *ctx)
{
    for (size_t i = 0; i < ctx->n_programs; i++) {
        struct kdcl__program_entry *e = &ctx->programs[i];
        clReleaseProgram(e->program->prog);
        free(e->program);
        free(e->source);
        free(e->options);
    }
    free(ctx->programs);
    ctx->programs = NULL;
    ctx->n_programs = ctx->cap_programs = 0;
}

/* ---------------------------------------------------------------------- */
/* Kernels and launches                                                    */

int kdcl_kernel_init(kdcl_context *ctx, kdcl_program *program,
                     const char *name, kdcl_kernel **out)
{
    cl_int err;
    kdcl_kernel *k;
    char what[256];
    *out = NULL;
    if (!program)
        return kdcl__error(ctx, KDCL_EINVAL, "kernel_init: program is NULL");
    k = calloc(1, sizeof *k);
    if (!k)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    k->ctx = ctx;
    k->kernel = clCreateKernel(program->prog, name, &err);
    if (err != CL_SUCCESS) {
        free(k);
        snprintf(what, sizeof what, "clCreateKernel(%s)", name);
        return kdcl__cl_error(ctx, err, what);
    }
    k->name = kdcl__strdup(name);
    if (!k->name) {
        clReleaseKernel(k->kernel);
        free(k);
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    }
    *out = k;
    return KDCL_OK;
}

void kdcl_kernel_free(kdcl_kernel *k)
{
    if (!k)
        return;
    clReleaseKernel(k->kernel);
    free(k->name);
    free(k);
}

size_t kdcl_kernel_wg_size(kdcl_context *ctx, kdcl_kernel *k)
{
    size_t wg = 0;
    if (clGetKernelWorkGroupInfo(k->kernel, ctx->device_ids[ctx->dev_index],
                                 CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg,
                                 NULL) != CL_SUCCESS)
        wg = 1;
    return wg;
}

static int set_arg(kdcl_context *ctx, kdcl_kernel *k, cl_uint i,
                   const struct kdcl_arg *a)
{
    cl_int err;
    cl_mem mem;
    char what[300];
    switch (a->kind) {
    case KDCL_ARG_TENSOR:
        if (!a->v.tensor) {
            mem = NULL;
        } else {
            int status = kdcl__tensor_arg(a->v.tensor, &mem);
            if (status)
                return status;
        }
        err = clSetKernelArg(k->kernel, i, sizeof mem, &mem);
        break;
    case KDCL_ARG_I32:
        err = clSetKernelArg(k->kernel, i, 4, &a->v.i32);
        break;
    case KDCL_ARG_U32:
        err = clSetKernelArg(k->kernel, i, 4, &a->v.u32);
        break;
    case KDCL_ARG_I64:
        err = clSetKernelArg(k->kernel, i, 8, &a->v.i64);
        break;
    case KDCL_ARG_F32:
        err = clSetKernelArg(k->kernel, i, 4, &a->v.f32);
        break;
    case KDCL_ARG_F64:
        err = clSetKernelArg(k->kernel, i, 8, &a->v.f64);
        break;
    case KDCL_ARG_LOCAL:
        err = clSetKernelArg(k->kernel, i, a->v.local_bytes, NULL);
        break;
    default:
        return kdcl__error(ctx, KDCL_EINVAL,
                           "kernel %s: argument %u has unknown kind %u",
                           k->name, i, a->kind);
    }
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "clSetKernelArg(%s, %u)", k->name, i);
        return kdcl__cl_error(ctx, err, what);
    }
    return KDCL_OK;
}

int kdcl_kernel_launch(kdcl_context *ctx, kdcl_kernel *k, uint32_t work_dim,
                       const size_t *global, const size_t *local,
                       uint32_t n_args, const struct kdcl_arg *args)
{
    size_t g[3];
    cl_event ev = NULL;
    cl_int err;
    char what[300];

    if (!k || work_dim < 1 || work_dim > 3)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "launch: bad kernel or work_dim %u", work_dim);
    for (uint32_t i = 0; i < n_args; i++) {
        int status = set_arg(ctx, k, i, &args[i]);
        if (status)
            return status;
    }
    for (uint32_t d = 0; d < work_dim; d++) {
        g[d] = global[d];
        if (g[d] == 0)
            return KDCL_OK; /* nothing to do */
        if (local && local[d])
            g[d] = (g[d] + local[d] - 1) / local[d] * local[d];
    }
    err = clEnqueueNDRangeKernel(ctx->queue, k->kernel, work_dim, NULL, g,
                                 local, 0, NULL,
                                 ctx->profiling ? &ev : NULL);
    if (err != CL_SUCCESS) {
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", k->name);
        return kdcl__cl_error(ctx, err, what);
    }
    if (ev)
        kdcl__profile_add(ctx, k->name, ev);
    return KDCL_OK;
}
