/*
 * core/context.c - the context: device enumeration and capabilities, the
 * device spec grammar, opening a device, error messages, logging and
 * per-launch profiling.
 */
#include "internal.h"

#include <clblast_c.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------- */
/* Errors and logging                                                      */

int kdcl__verror(kdcl_context *ctx, int status, const char *fmt, va_list ap)
{
    if (ctx && status != KDCL_OK)
        vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    return status;
}

int kdcl__error(kdcl_context *ctx, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kdcl__verror(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

int kdcl__cl_error(kdcl_context *ctx, cl_int err, const char *what)
{
    int status = KDCL_ECL;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE
        || err == CL_OUT_OF_RESOURCES || err == CL_INVALID_BUFFER_SIZE)
        status = KDCL_EDEVMEM;
    else if (err == CL_OUT_OF_HOST_MEMORY)
        status = KDCL_ENOMEM;
    return kdcl__error(ctx, status, "%s: %s (%d)", what,
                       kdcl_cl_error_name(err), (int)err);
}

void kdcl__vlog(kdcl_context *ctx, int level, const char *fmt, va_list ap)
{
    char line[1024];
    if (!ctx || !ctx->log_fn || level > ctx->log_level)
        return;
    vsnprintf(line, sizeof line, fmt, ap);
    ctx->log_fn(ctx->log_user, level, line);
}

void kdcl__log(kdcl_context *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kdcl__vlog(ctx, level, fmt, ap);
    va_end(ap);
}

const char *kdcl_context_errmsg(const kdcl_context *ctx)
{
    return ctx ? ctx->errmsg : "out of memory";
}

void kdcl_context_set_log(kdcl_context *ctx, kdcl_log_fn fn, void *user,
                          int max_level)
{
    ctx->log_fn = fn;
    ctx->log_user = user;
    ctx->log_level = max_level;
}

/* ---------------------------------------------------------------------- */
/* Enumeration                                                             */

/* "OpenCL 3.0 ..." or "OpenCL C 1.2 ..." -> 300 / 120; 0 when unparsable. */
static uint32_t parse_cl_version(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    int major = 0, minor = 0;
    if (strncmp(s, prefix, n) != 0)
        return 0;
    if (sscanf(s + n, "%d.%d", &major, &minor) != 2)
        return 0;
    return (uint32_t)(major * 100 + minor * 10);
}

static void dev_str(cl_device_id d, cl_device_info what, char *buf,
                    size_t len)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, len, buf, NULL) != CL_SUCCESS)
        buf[0] = '\0';
    buf[len - 1] = '\0';
}

static uint64_t dev_u64(cl_device_id d, cl_device_info what, size_t size)
{
    uint64_t v64 = 0;
    uint32_t v32 = 0;
    size_t vsz = 0;
    if (size == 8) {
        if (clGetDeviceInfo(d, what, 8, &v64, NULL) != CL_SUCCESS)
            return 0;
        return v64;
    }
    if (size == sizeof(size_t)) {
        if (clGetDeviceInfo(d, what, sizeof vsz, &vsz, NULL) != CL_SUCCESS)
            return 0;
        return vsz;
    }
    if (clGetDeviceInfo(d, what, 4, &v32, NULL) != CL_SUCCESS)
        return 0;
    return v32;
}

static bool has_extension(cl_device_id d, const char *ext)
{
    size_t len = 0;
    char *buf;
    bool found = false;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, 0, NULL, &len) != CL_SUCCESS
        || len == 0)
        return false;
    buf = malloc(len + 1);
    if (!buf)
        return false;
    if (clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, len, buf, NULL)
        == CL_SUCCESS) {
        size_t n = strlen(ext);
        buf[len] = '\0';
        for (char *p = strstr(buf, ext); p; p = strstr(p + 1, ext)) {
            bool start = p == buf || p[-1] == ' ';
            bool end = p[n] == '\0' || p[n] == ' ';
            if (start && end) {
                found = true;
                break;
            }
        }
    }
    free(buf);
    return found;
}

/* Highest OpenCL C version: CL_DEVICE_OPENCL_C_ALL_VERSIONS on 3.x (the
   only query that can say 3.0), else CL_DEVICE_OPENCL_C_VERSION, which a
   3.x device may keep at 1.2 for old programs (PoCL 3.1 does). */
static uint32_t device_cl_c_version(cl_device_id d, uint32_t cl_version)
{
    char s[256];
    uint32_t best;
    dev_str(d, CL_DEVICE_OPENCL_C_VERSION, s, sizeof s);
    best = parse_cl_version(s, "OpenCL C ");
#ifdef CL_DEVICE_OPENCL_C_ALL_VERSIONS
    if (cl_version >= 300) {
        cl_name_version v[16];
        size_t size = 0;
        if (clGetDeviceInfo(d, CL_DEVICE_OPENCL_C_ALL_VERSIONS, sizeof v, v,
                            &size) == CL_SUCCESS) {
            for (size_t i = 0; i < size / sizeof v[0]; i++) {
                uint32_t ver = CL_VERSION_MAJOR(v[i].version) * 100
                               + CL_VERSION_MINOR(v[i].version) * 10;
                if (ver > best)
                    best = ver;
            }
        }
    }
#else
    (void)cl_version;
#endif
    return best;
}

static void fill_info(struct kdcl_device_info *info, cl_platform_id p,
                      cl_device_id d)
{
    cl_device_type type = 0;
    cl_device_local_mem_type lmt = CL_LOCAL;
    cl_device_fp_config dbl = 0;
    char s[256];

    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    dev_str(d, CL_DEVICE_NAME, info->name, sizeof info->name);
    dev_str(d, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    dev_str(d, CL_DEVICE_VERSION, info->device_version,
            sizeof info->device_version);
    dev_str(d, CL_DRIVER_VERSION, info->driver_version,
            sizeof info->driver_version);
    if (clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof info->platform_name,
                          info->platform_name, NULL) != CL_SUCCESS)
        info->platform_name[0] = '\0';
    if (clGetPlatformInfo(p, CL_PLATFORM_VERSION,
                          sizeof info->platform_version,
                          info->platform_version, NULL) != CL_SUCCESS)
        info->platform_version[0] = '\0';
    info->platform_name[sizeof info->platform_name - 1] = '\0';
    info->platform_version[sizeof info->platform_version - 1] = '\0';

    if (clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof type, &type, NULL)
        != CL_SUCCESS)
        type = 0;
    if (type & CL_DEVICE_TYPE_GPU)
        info->type = KDCL_DEVICE_GPU;
    else if (type & CL_DEVICE_TYPE_ACCELERATOR)
        info->type = KDCL_DEVICE_ACCELERATOR;
    else if (type & CL_DEVICE_TYPE_CPU)
        info->type = KDCL_DEVICE_CPU;
    else
        info->type = KDCL_DEVICE_OTHER;

    info->vendor_id = (uint32_t)dev_u64(d, CL_DEVICE_VENDOR_ID, 4);
    info->cl_version = parse_cl_version(info->device_version, "OpenCL ");
    info->cl_c_version = device_cl_c_version(d, info->cl_version);
    info->compute_units = (uint32_t)dev_u64(d, CL_DEVICE_MAX_COMPUTE_UNITS, 4);
    info->clock_mhz = (uint32_t)dev_u64(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, 4);
    info->fp16 = has_extension(d, "cl_khr_fp16");
    if (clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof dbl, &dbl,
                        NULL) != CL_SUCCESS)
        dbl = 0;
    info->fp64 = dbl != 0 || has_extension(d, "cl_khr_fp64");
    info->subgroups = has_extension(d, "cl_khr_subgroups");
#ifdef CL_DEVICE_MAX_NUM_SUB_GROUPS
    if (info->cl_version >= 300
        && dev_u64(d, CL_DEVICE_MAX_NUM_SUB_GROUPS, 4) > 0)
        info->subgroups = 1;
#endif
#ifdef CL_DEVICE_WORK_GROUP_COLLECTIVE_FUNCTIONS_SUPPORT
    if (info->cl_version >= 300) {
        cl_bool wgc = CL_FALSE;
        if (clGetDeviceInfo(d, CL_DEVICE_WORK_GROUP_COLLECTIVE_FUNCTIONS_SUPPORT,
                            sizeof wgc, &wgc, NULL) == CL_SUCCESS)
            info->wg_collectives = wgc == CL_TRUE;
    } else {
        info->wg_collectives = info->cl_c_version >= 200;
    }
#endif
    if (clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_TYPE, sizeof lmt, &lmt, NULL)
        != CL_SUCCESS)
        lmt = CL_GLOBAL;
    info->local_mem_is_local = lmt == CL_LOCAL;
    info->global_mem = dev_u64(d, CL_DEVICE_GLOBAL_MEM_SIZE, 8);
    info->max_alloc = dev_u64(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, 8);
    info->local_mem = dev_u64(d, CL_DEVICE_LOCAL_MEM_SIZE, 8);
    info->max_wg_size = dev_u64(d, CL_DEVICE_MAX_WORK_GROUP_SIZE,
                                sizeof(size_t));
    /* CL reports the alignment in bits. */
    info->mem_base_align =
        (uint32_t)dev_u64(d, CL_DEVICE_MEM_BASE_ADDR_ALIGN, 4) / 8;
    (void)s;
}

/* From cl_ext.h; the ICD loader's answer when no platform is installed. */
#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

static int enumerate(kdcl_context *ctx)
{
    cl_uint n_plat = 0;
    cl_platform_id *plats = NULL;
    int status = KDCL_OK;
    cl_int err = clGetPlatformIDs(0, NULL, &n_plat);

    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && !n_plat))
        return kdcl__error(ctx, KDCL_ENODEV,
                           "no OpenCL platform found: install an OpenCL "
                           "driver (on Debian: apt-get install "
                           "pocl-opencl-icd) or check OCL_ICD_VENDORS");
    if (err != CL_SUCCESS)
        return kdcl__cl_error(ctx, err, "clGetPlatformIDs");
    plats = calloc(n_plat, sizeof *plats);
    if (!plats)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    err = clGetPlatformIDs(n_plat, plats, NULL);
    if (err != CL_SUCCESS) {
        status = kdcl__cl_error(ctx, err, "clGetPlatformIDs");
        goto out;
    }
    for (cl_uint p = 0; p < n_plat; p++) {
        cl_uint n_dev = 0;
        cl_device_id *ids;
        size_t base = ctx->n_devices;
        void *grow;
        err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev);
        if (err != CL_SUCCESS || n_dev == 0)
            continue; /* a platform with no device is skipped, not fatal */
        grow = realloc(ctx->devices,
                       (base + n_dev) * sizeof *ctx->devices);
        if (!grow)
            goto oom;
        ctx->devices = grow;
        grow = realloc(ctx->device_ids,
                       (base + n_dev) * sizeof *ctx->device_ids);
        if (!grow)
            goto oom;
        ctx->device_ids = grow;
        grow = realloc(ctx->device_platforms,
                       (base + n_dev) * sizeof *ctx->device_platforms);
        if (!grow)
            goto oom;
        ctx->device_platforms = grow;
        ids = ctx->device_ids + base;
        err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, n_dev, ids, NULL);
        if (err != CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < n_dev; i++) {
            struct kdcl_device_info *info = &ctx->devices[base + i];
            fill_info(info, plats[p], ids[i]);
            info->index = (uint32_t)(base + i);
            info->platform_index = p;
            ctx->device_platforms[base + i] = plats[p];
        }
        ctx->n_devices = base + n_dev;
    }
    if (ctx->n_devices == 0)
        status = kdcl__error(ctx, KDCL_ENODEV,
                             "OpenCL platforms found, but no device");
    goto out;
oom:
    status = kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
out:
    free(plats);
    return status;
}

int kdcl_context_init(kdcl_context **out)
{
    kdcl_context *ctx = calloc(1, sizeof *ctx);
    *out = ctx;
    if (!ctx)
        return KDCL_ENOMEM;
    ctx->log_level = KDCL_LOG_WARN;
    {
        const char *q = getenv("KDCL_CHECKER");
        ctx->quarantine = q && strcmp(q, "0") != 0;
    }
    kdcl__host_init(ctx);
    return enumerate(ctx);
}

void kdcl_context_free(kdcl_context *ctx)
{
    if (!ctx)
        return;
    if (ctx->queue)
        clFinish(ctx->queue);
    kdcl__profile_free(ctx);
    if (ctx->nn_free)
        ctx->nn_free(ctx->nn);
    kdcl__programs_free(ctx);
    /* CLBlast caches programs per OpenCL context for the whole process and
       would keep this one alive (and release it from static destructors
       at exit, after the driver may be gone).  Clearing drops every
       context's entries: other live contexts only recompile. */
    if (ctx->used_clblast)
        CLBlastClearCache();
    for (size_t i = 0; i < ctx->n_quarantined; i++)
        clReleaseMemObject(ctx->quarantined[i]);
    free(ctx->quarantined);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->cl_ctx)
        clReleaseContext(ctx->cl_ctx);
    free(ctx->host_scratch);
    free(ctx->devices);
    free(ctx->device_ids);
    free(ctx->device_platforms);
    free(ctx);
}

size_t kdcl_context_device_count(const kdcl_context *ctx)
{
    return ctx->n_devices;
}

const struct kdcl_device_info *kdcl_context_device_info(
    const kdcl_context *ctx, size_t i)
{
    return i < ctx->n_devices ? &ctx->devices[i] : NULL;
}

static const char *type_name(uint32_t type)
{
    switch (type) {
    case KDCL_DEVICE_CPU: return "cpu";
    case KDCL_DEVICE_GPU: return "gpu";
    case KDCL_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

static int no_match(kdcl_context *ctx, const char *spec)
{
    char list[4096];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < ctx->n_devices && used < sizeof list; i++) {
        int n = snprintf(list + used, sizeof list - used, "%s%zu: %s (%s, %s)",
                         i ? "; " : "", i, ctx->devices[i].name,
                         type_name(ctx->devices[i].type),
                         ctx->devices[i].platform_name);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return kdcl__error(ctx, KDCL_ENODEV,
                       "no OpenCL device matches '%s'; devices: %s", spec,
                       ctx->n_devices ? list : "none");
}

/* Parse "gpu", "cpu:2", "accelerator:0"; returns type or -1. */
static int parse_type_spec(const char *spec, long *nth)
{
    static const struct {
        const char *word;
        int type;
    } words[] = {{"gpu", KDCL_DEVICE_GPU},
                 {"cpu", KDCL_DEVICE_CPU},
                 {"accelerator", KDCL_DEVICE_ACCELERATOR},
                 {"acc", KDCL_DEVICE_ACCELERATOR}};
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        size_t n = strlen(words[w].word);
        if (strncasecmp(spec, words[w].word, n) != 0)
            continue;
        if (spec[n] == '\0') {
            *nth = 0;
            return words[w].type;
        }
        if (spec[n] == ':' && isdigit((unsigned char)spec[n + 1])) {
            char *end;
            *nth = strtol(spec + n + 1, &end, 10);
            if (*end == '\0')
                return words[w].type;
        }
    }
    return -1;
}

int kdcl_context_select(kdcl_context *ctx, const char *spec, size_t *index)
{
    long nth = 0;
    int type;

    if (ctx->n_devices == 0)
        return kdcl__error(ctx, KDCL_ENODEV, "no OpenCL device found");
    if (!spec || !*spec || strcasecmp(spec, "auto") == 0) {
        static const int order[] = {KDCL_DEVICE_GPU, KDCL_DEVICE_ACCELERATOR,
                                    KDCL_DEVICE_CPU, KDCL_DEVICE_OTHER};
        for (size_t o = 0; o < 4; o++)
            for (size_t i = 0; i < ctx->n_devices; i++)
                if ((int)ctx->devices[i].type == order[o]) {
                    *index = i;
                    return KDCL_OK;
                }
        *index = 0;
        return KDCL_OK;
    }
    if (isdigit((unsigned char)spec[0])) {
        char *end;
        unsigned long i = strtoul(spec, &end, 10);
        if (*end == '\0') {
            if (i >= ctx->n_devices)
                return no_match(ctx, spec);
            *index = i;
            return KDCL_OK;
        }
    }
    type = parse_type_spec(spec, &nth);
    if (type >= 0) {
        for (size_t i = 0; i < ctx->n_devices; i++)
            if ((int)ctx->devices[i].type == type && nth-- == 0) {
                *index = i;
                return KDCL_OK;
            }
        return no_match(ctx, spec);
    }
    for (size_t i = 0; i < ctx->n_devices; i++) {
        const struct kdcl_device_info *d = &ctx->devices[i];
        if (kdcl__contains_ci(d->name, spec)
            || kdcl__contains_ci(d->vendor, spec)
            || kdcl__contains_ci(d->platform_name, spec)) {
            *index = i;
            return KDCL_OK;
        }
    }
    return no_match(ctx, spec);
}

int kdcl_context_open(kdcl_context *ctx, const char *spec)
{
    size_t idx;
    cl_int err;
    cl_device_id dev;
    const struct kdcl_device_info *d;
    int status;

    if (ctx->opened)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "this context already has a device open");
    status = kdcl_context_select(ctx, spec, &idx);
    if (status)
        return status;
    dev = ctx->device_ids[idx];
    d = &ctx->devices[idx];
    {
        cl_context_properties props[] = {
            CL_CONTEXT_PLATFORM,
            (cl_context_properties)ctx->device_platforms[idx], 0};
        ctx->cl_ctx = clCreateContext(props, 1, &dev, NULL, NULL, &err);
    }
    if (err != CL_SUCCESS)
        return kdcl__cl_error(ctx, err, "clCreateContext");
    ctx->queue = clCreateCommandQueue(ctx->cl_ctx, dev,
                                      CL_QUEUE_PROFILING_ENABLE, &err);
    if (err != CL_SUCCESS) {
        status = kdcl__cl_error(ctx, err, "clCreateCommandQueue");
        clReleaseContext(ctx->cl_ctx);
        ctx->cl_ctx = NULL;
        return status;
    }
    snprintf(ctx->build_defines, sizeof ctx->build_defines,
             "%s-DKDCL_DEVICE_%s=1 -DKDCL_MAX_WG=%llu -DKDCL_CL_C_VERSION=%u"
             "%s%s%s",
             d->cl_c_version >= 120 ? "-cl-std=CL1.2 " : "",
             d->type == KDCL_DEVICE_GPU   ? "GPU"
             : d->type == KDCL_DEVICE_CPU ? "CPU"
                                          : "OTHER",
             (unsigned long long)d->max_wg_size, d->cl_c_version,
             d->fp64 ? " -DKDCL_HAS_FP64=1" : "",
             d->fp16 ? " -DKDCL_HAS_FP16=1" : "",
             d->subgroups ? " -DKDCL_HAS_SUBGROUPS=1" : "");
    ctx->dev_index = idx;
    ctx->opened = true;
    {
        const char *z = getenv("KDCL_ZERO_COPY");
        ctx->host_direct = d->type == KDCL_DEVICE_CPU && !ctx->quarantine
                           && !(z && !strcmp(z, "0"));
    }
    kdcl__log(ctx, KDCL_LOG_INFO, "opened device %zu: %s (%s)", idx,
              d->name, d->platform_name);
    return KDCL_OK;
}

const struct kdcl_device_info *kdcl_context_device(const kdcl_context *ctx)
{
    return ctx->opened ? &ctx->devices[ctx->dev_index] : NULL;
}

int kdcl_context_finish(kdcl_context *ctx)
{
    cl_int err;
    if (!ctx->opened)
        return kdcl__error(ctx, KDCL_EINVAL, "no device open");
    err = clFinish(ctx->queue);
    if (err != CL_SUCCESS)
        return kdcl__cl_error(ctx, err, "clFinish");
    return KDCL_OK;
}

void kdcl_context_cache_stats(const kdcl_context *ctx,
                              struct kdcl_cache_stats *out)
{
    *out = ctx->cache;
}

uint64_t kdcl_context_bytes_in_use(const kdcl_context *ctx)
{
    return ctx->bytes_in_use;
}

uint64_t kdcl_context_bytes_peak(const kdcl_context *ctx)
{
    return ctx->bytes_peak;
}

/* ---------------------------------------------------------------------- */
/* Profiling                                                               */

int kdcl_context_set_profiling(kdcl_context *ctx, int on)
{
    ctx->profiling = on != 0;
    return KDCL_OK;
}

void kdcl__profile_add_ns(kdcl_context *ctx, const char *name, uint64_t ns)
{
    size_t before = ctx->n_prof;
    kdcl__profile_add(ctx, name, NULL);
    if (ctx->n_prof > before)
        ctx->prof[before].ns = ns;
}

void kdcl__profile_add(kdcl_context *ctx, const char *name, cl_event event)
{
    if (ctx->n_prof == ctx->cap_prof) {
        size_t cap = ctx->cap_prof ? ctx->cap_prof * 2 : 64;
        void *grow = realloc(ctx->prof, cap * sizeof *ctx->prof);
        if (!grow) {
            if (event)
                clReleaseEvent(event); /* profiling is best effort */
            return;
        }
        ctx->prof = grow;
        ctx->cap_prof = cap;
    }
    ctx->prof[ctx->n_prof].name = kdcl__strdup(name);
    ctx->prof[ctx->n_prof].event = event;
    ctx->prof[ctx->n_prof].ns = 0;
    ctx->n_prof++;
}

int kdcl_context_profile(kdcl_context *ctx,
                         const struct kdcl_profile_record **recs, size_t *n)
{
    int status = kdcl_context_finish(ctx);
    void *grow;
    if (status)
        return status;
    grow = realloc(ctx->prof_out,
                   (ctx->n_prof ? ctx->n_prof : 1) * sizeof *ctx->prof_out);
    if (!grow)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    ctx->prof_out = grow;
    for (size_t i = 0; i < ctx->n_prof; i++) {
        struct kdcl__profile *p = &ctx->prof[i];
        if (p->event) {
            cl_ulong t0 = 0, t1 = 0;
            clGetEventProfilingInfo(p->event, CL_PROFILING_COMMAND_START,
                                    sizeof t0, &t0, NULL);
            clGetEventProfilingInfo(p->event, CL_PROFILING_COMMAND_END,
                                    sizeof t1, &t1, NULL);
            p->ns = t1 > t0 ? t1 - t0 : 0;
            clReleaseEvent(p->event);
            p->event = NULL;
        }
        ctx->prof_out[i].name = p->name ? p->name : "?";
        ctx->prof_out[i].ns = p->ns;
    }
    *recs = ctx->prof_out;
    *n = ctx->n_prof;
    return KDCL_OK;
}

void kdcl_context_profile_clear(kdcl_context *ctx)
{
    for (size_t i = 0; i < ctx->n_prof; i++) {
        if (ctx->prof[i].event)
            clReleaseEvent(ctx->prof[i].event);
        free(ctx->prof[i].name);
    }
    ctx->n_prof = 0;
}

void kdcl__profile_free(kdcl_context *ctx)
{
    kdcl_context_profile_clear(ctx);
    free(ctx->prof);
    free(ctx->prof_out);
    ctx->prof = NULL;
    ctx->prof_out = NULL;
    ctx->cap_prof = 0;
}
