/*
 * core/internal.h - definitions shared by the files of the kdcl library
 * (prefix kdcl__); not part of the API.
 */
#ifndef KDCL_INTERNAL_H
#define KDCL_INTERNAL_H

#define KDCL_BUILDING_LIBRARY 1
#include "kdcl/kdcl.h"

#include <stdarg.h>
#include <stdbool.h>

#define KDCL__ERRMSG_MAX 8192

#if defined(__GNUC__)
#define KDCL__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define KDCL__PRINTF(a, b)
#endif

struct kdcl__program_entry {
    char *source;
    char *options;
    kdcl_program *program;
};

struct kdcl_program {
    kdcl_context *ctx;
    cl_program prog;
};

struct kdcl_kernel {
    kdcl_context *ctx;
    cl_kernel kernel;
    char *name;
};

struct kdcl__profile {
    char *name;
    cl_event event;
    uint64_t ns;
};

struct kdcl_context {
    char errmsg[KDCL__ERRMSG_MAX];
    kdcl_log_fn log_fn;
    void *log_user;
    int log_level;

    /* Enumeration. */
    struct kdcl_device_info *devices;
    cl_device_id *device_ids;
    cl_platform_id *device_platforms;
    size_t n_devices;

    /* The opened device. */
    bool opened;
    size_t dev_index;
    cl_context cl_ctx;
    cl_command_queue queue;
    char build_defines[512];

    /* Programs. */
    struct kdcl__program_entry *programs;
    size_t n_programs, cap_programs;
    struct kdcl_cache_stats cache;

    /* Tensors. */
    uint64_t bytes_in_use, bytes_peak;
    /* KDCL_CHECKER=1, for runs under a checking implementation such as
       Oclgrind 21.10, which misreports values in reused allocations and
       in buffers set by clEnqueueFillBuffer as uninitialised: freed
       buffers are kept until the context is freed, and fills are
       blocking writes. */
    bool quarantine;
    cl_mem *quarantined;
    size_t n_quarantined, cap_quarantined;

    /* Profiling. */
    bool profiling;
    struct kdcl__profile *prof;
    size_t n_prof, cap_prof;
    struct kdcl_profile_record *prof_out;

    /* CLBlast was called: its process-wide program cache holds this
       OpenCL context until cleared (kdcl_context_free clears it). */
    bool used_clblast;

    /* The host layers' scratch (core/host.c), grown as needed and kept:
       a fresh allocation per layer call cost page faults every step. */
    float *host_scratch;
    size_t host_scratch_floats;

    /* CPU devices (not in checker mode, unless KDCL_ZERO_COPY=0): tensors
       live in kdcl's own host allocations (CL_MEM_USE_HOST_PTR), and the
       host path reads and writes them in place after a clFinish, with no
       map commands (core/tensor.c). */
    bool host_direct;

    /* The training engine's kernels (core/nn.c), built on first use. */
    void *nn;
    void (*nn_free)(void *nn);

    /* The plugin service table handed to plugin runs. */
    struct kdcl_host host;
};

struct kdcl_tensor {
    kdcl_context *ctx;
    cl_mem mem;        /* own buffer, or the parent's for a view */
    cl_mem sub;        /* a view's sub-buffer, made on first launch */
    size_t offset;     /* bytes into mem */
    kdcl_tensor *parent;
    int dtype;
    uint32_t ndim;
    int64_t shape[KDCL_MAX_DIMS];
    int64_t numel;
    size_t bytes;
    /* With ctx->host_direct and when the driver's map returned it: the
       start of mem's storage in host memory (a view: the parent's), so
       the data is host + offset.  NULL: map to reach it. */
    unsigned char *host;
};

/* Member m of a plugin descriptor, or NULL when the plugin's struct_size
   does not cover it (a plugin built against an older ABI). */
#define KDCL__PLUGIN_FN(p, m)                                                \
    ((p)->struct_size >= offsetof(struct kdcl_plugin, m) + sizeof((p)->m)    \
         ? (p)->m                                                            \
         : NULL)

/* Set ctx's message and return status (0 leaves it unchanged). */
int kdcl__error(kdcl_context *ctx, int status, const char *fmt, ...)
    KDCL__PRINTF(3, 4);
int kdcl__verror(kdcl_context *ctx, int status, const char *fmt, va_list ap);
/* Report a failed OpenCL call: "what: CL_NAME (code)". */
int kdcl__cl_error(kdcl_context *ctx, cl_int err, const char *what);
void kdcl__log(kdcl_context *ctx, int level, const char *fmt, ...)
    KDCL__PRINTF(3, 4);
void kdcl__vlog(kdcl_context *ctx, int level, const char *fmt, va_list ap);

/* The context's plugin service table (filled at init). */
void kdcl__host_init(kdcl_context *ctx);
/* Free the program cache (context teardown). */
void kdcl__programs_free(kdcl_context *ctx);
/* Record a launch event for profiling (takes ownership of event). */
void kdcl__profile_add(kdcl_context *ctx, const char *name, cl_event event);
void kdcl__profile_free(kdcl_context *ctx);
/* Record work done on the host (host GEMM) for profiling. */
void kdcl__profile_add_ns(kdcl_context *ctx, const char *name, uint64_t ns);
/* The cl_mem to pass for t as a kernel argument (a view's sub-buffer). */
int kdcl__tensor_arg(const kdcl_tensor *t, cl_mem *out);

/* The host compute path of CPU devices (core/host.c): whether GEMM runs
   there, and the batched GEMM of kdcl_gemm_batched on mapped buffers
   (arguments checked by the caller). */
bool kdcl__host_gemm_wanted(const kdcl_context *ctx);
/* The host BLAS, e.g. "BLIS 0.9.0 (zen3 kernels)", or NULL without one. */
const char *kdcl__host_blas(void);
int kdcl__host_gemm(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
                    size_t n, size_t k, float alpha, const kdcl_tensor *a,
                    size_t a_off, size_t lda, size_t a_stride,
                    const kdcl_tensor *b, size_t b_off, size_t ldb,
                    size_t b_stride, float beta, kdcl_tensor *c,
                    size_t c_off, size_t ldc, size_t c_stride, size_t batch);

/* FNV-1a 64-bit over bytes, continuing from h (start with
   KDCL__FNV_OFFSET). */
#define KDCL__FNV_OFFSET 14695981039346656037ull
uint64_t kdcl__fnv1a(uint64_t h, const void *data, size_t len);

/* mkdir -p (mode 0755); 0 on success. */
int kdcl__mkdirs(const char *path);

/* strdup with the library's allocator. */
char *kdcl__strdup(const char *s);
/* Case-insensitive substring test. */
bool kdcl__contains_ci(const char *hay, const char *needle);

#endif /* KDCL_INTERNAL_H */
