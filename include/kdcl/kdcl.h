/*
 * kdcl/kdcl.h - the kdcl library API: devices, programs, tensors, plugin
 * registry and plugin runs.
 *
 * Conventions (read once, they hold everywhere):
 *  - Functions that can fail return 0 (KDCL_OK) or a negative kdcl_status
 *    and leave a one-line message on the context, kdcl_context_errmsg().
 *  - Objects are made with *_init (status + out-parameter) and released
 *    with *_free; *_free(NULL) is a no-op.
 *  - The library prints nothing; it logs through the callback set with
 *    kdcl_context_set_log().
 *  - A context and everything made from it is used from one thread at a
 *    time.  Different contexts are independent.
 */
#ifndef KDCL_KDCL_H
#define KDCL_KDCL_H

#include "common.h"
#include "plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KDCL_BUILDING_LIBRARY)
#define KDCL_API __attribute__((visibility("default")))
#else
#define KDCL_API
#endif

/* Library version (semantic versioning), separate from the plugin ABI. */
#define KDCL_VERSION_MAJOR 0
#define KDCL_VERSION_MINOR 1
#define KDCL_VERSION_PATCH 0
#define KDCL_VERSION_STRING "0.1.0"

/* The library's version string at run time, e.g. "0.1.0". Static. */
KDCL_API const char *kdcl_version(void);
/* The plugin ABI version this library serves (KDCL_PLUGIN_ABI_VERSION). */
KDCL_API uint32_t kdcl_plugin_abi(void);

/* "KDCL_EINVAL" for KDCL_EINVAL; "KDCL_UNKNOWN" for other values. Static. */
KDCL_API const char *kdcl_status_name(int status);
/* One-line English message for a status. Static, never NULL. */
KDCL_API const char *kdcl_status_str(int status);
/* "CL_OUT_OF_RESOURCES" for -5, ...; "CL_UNKNOWN_ERROR" otherwise. */
KDCL_API const char *kdcl_cl_error_name(int cl_code);
/* "f32", "f64", "i32", "i64", "u8"; "?" otherwise. Static. */
KDCL_API const char *kdcl_dtype_name(int dtype);
/* Bytes per element, 0 for an unknown dtype. */
KDCL_API size_t kdcl_dtype_size(int dtype);

/* ---------------------------------------------------------------------- */
/* Contexts and devices                                                    */

/* Receives every log line; msg has no trailing newline. */
typedef void (*kdcl_log_fn)(void *user, int level, const char *msg);

/*
 * Make a context and enumerate every OpenCL platform and device.  No device
 * is opened yet (kdcl_context_open does that).  On success and on every
 * failure but KDCL_ENOMEM, *out is a context to be freed with
 * kdcl_context_free; its errmsg explains a failure (for example no OpenCL
 * platform at all: KDCL_ENODEV).
 */
KDCL_API int kdcl_context_init(kdcl_context **out);
KDCL_API void kdcl_context_free(kdcl_context *ctx);

/* The message of the last failure on ctx; "" when none; never NULL.
   Valid until the next call on ctx. ctx NULL gives "out of memory". */
KDCL_API const char *kdcl_context_errmsg(const kdcl_context *ctx);

/* Send log lines of level <= max_level to fn (NULL: drop them). */
KDCL_API void kdcl_context_set_log(kdcl_context *ctx, kdcl_log_fn fn,
                                   void *user, int max_level);

/* Number of devices found, over all platforms. */
KDCL_API size_t kdcl_context_device_count(const kdcl_context *ctx);
/* Device i (0-based), NULL when out of range; valid as long as ctx. */
KDCL_API const struct kdcl_device_info *
kdcl_context_device_info(const kdcl_context *ctx, size_t i);

/*
 * Resolve a device spec to an index.  Specs: "auto" or NULL (first GPU,
 * else first accelerator, else first CPU), a decimal index, "cpu", "gpu",
 * "accelerator", "gpu:1" (the second GPU), or a case-insensitive substring
 * of the device name, vendor or platform name ("nvidia", "pocl").  A spec
 * that matches nothing is KDCL_ENODEV with a message listing the devices.
 */
KDCL_API int kdcl_context_select(kdcl_context *ctx, const char *spec,
                                 size_t *index);

/* Select a device by spec and open it (OpenCL context and queue).  A
   context opens one device, once. */
KDCL_API int kdcl_context_open(kdcl_context *ctx, const char *spec);

/* The opened device, or NULL before kdcl_context_open succeeded. */
KDCL_API const struct kdcl_device_info *
kdcl_context_device(const kdcl_context *ctx);

/* Wait for all queued work on the opened device. */
KDCL_API int kdcl_context_finish(kdcl_context *ctx);

/* Program cache counters since the context was made. */
struct kdcl_cache_stats {
    uint64_t memory_hits; /* found in the in-memory cache */
    uint64_t disk_hits;   /* loaded from a valid disk entry */
    uint64_t builds;      /* compiled from source */
    uint64_t disk_writes; /* entries written */
    uint64_t disk_bad;    /* entries rejected (corrupt, stale) and rebuilt */
};
KDCL_API void kdcl_context_cache_stats(const kdcl_context *ctx,
                                       struct kdcl_cache_stats *out);

/* Device bytes held by live tensors now, and the most ever held. */
KDCL_API uint64_t kdcl_context_bytes_in_use(const kdcl_context *ctx);
KDCL_API uint64_t kdcl_context_bytes_peak(const kdcl_context *ctx);

/* Per-launch profiling.  While on, every launch records its kernel name
   and device time. */
struct kdcl_profile_record {
    const char *name; /* kernel name, valid until the records are cleared */
    uint64_t ns;      /* CL_PROFILING_COMMAND_END - _START */
};
KDCL_API int kdcl_context_set_profiling(kdcl_context *ctx, int on);
/* Wait for the queue and return the records so far; valid until
   kdcl_context_profile_clear or the next launch. */
KDCL_API int kdcl_context_profile(kdcl_context *ctx,
                                  const struct kdcl_profile_record **recs,
                                  size_t *n);
KDCL_API void kdcl_context_profile_clear(kdcl_context *ctx);

/* ---------------------------------------------------------------------- */
/* Programs, kernels and launches (the same services plugins get)          */

/*
 * Build OpenCL C source through the in-memory and on-disk caches.  The
 * disk cache lives in $KDCL_CACHE_DIR, else $XDG_CACHE_HOME/kdcl, else
 * ~/.cache/kdcl; KDCL_CACHE=0 turns it off, KDCL_CACHE=1 on.  By default
 * it is on, except on PoCL while PoCL's own kernel cache is on (that one
 * is faster there).  The program is owned by ctx.
 * A build failure is KDCL_EBUILD with the build log in the message.
 */
KDCL_API int kdcl_program_build(kdcl_context *ctx, const char *source,
                                const char *options, kdcl_program **out);
KDCL_API int kdcl_kernel_init(kdcl_context *ctx, kdcl_program *program,
                              const char *name, kdcl_kernel **out);
KDCL_API void kdcl_kernel_free(kdcl_kernel *kernel);
/* Largest work-group size for kernel on ctx's device. */
KDCL_API size_t kdcl_kernel_wg_size(kdcl_context *ctx, kdcl_kernel *kernel);
/* Set arguments and enqueue; global sizes are rounded up to multiples of
   local ones when local is given. */
KDCL_API int kdcl_kernel_launch(kdcl_context *ctx, kdcl_kernel *kernel,
                                uint32_t work_dim, const size_t *global,
                                const size_t *local, uint32_t n_args,
                                const struct kdcl_arg *args);

/* ---------------------------------------------------------------------- */
/* Tensors                                                                 */

/* A device tensor of dtype and shape (row-major), uninitialised.  A size
   over the device's allocation limit is KDCL_EDEVMEM. */
KDCL_API int kdcl_tensor_init(kdcl_context *ctx, int dtype, uint32_t ndim,
                              const int64_t *shape, kdcl_tensor **out);
/* A view of numel(shape) elements of parent starting at element offset.
   It shares parent's memory and must be freed before parent. */
KDCL_API int kdcl_tensor_view(kdcl_tensor *parent, int64_t offset,
                              uint32_t ndim, const int64_t *shape,
                              kdcl_tensor **out);
KDCL_API void kdcl_tensor_free(kdcl_tensor *t);
KDCL_API int kdcl_tensor_dtype(const kdcl_tensor *t);
KDCL_API uint32_t kdcl_tensor_ndim(const kdcl_tensor *t);
/* Size of axis i; negative i counts from the end. 0 when out of range. */
KDCL_API int64_t kdcl_tensor_dim(const kdcl_tensor *t, int i);
KDCL_API int64_t kdcl_tensor_numel(const kdcl_tensor *t);
KDCL_API size_t kdcl_tensor_bytes(const kdcl_tensor *t);
/* Blocking copies of the whole tensor; bytes must equal its size. */
KDCL_API int kdcl_tensor_write(kdcl_tensor *t, const void *src,
                               size_t bytes);
KDCL_API int kdcl_tensor_read(const kdcl_tensor *t, void *dst, size_t bytes);
/* Queue a fill of every element with value converted to the dtype. */
KDCL_API int kdcl_tensor_fill(kdcl_tensor *t, double value);
/* Queue a copy of src into dst (same dtype and element count). */
KDCL_API int kdcl_tensor_copy(kdcl_tensor *dst, const kdcl_tensor *src);
/* The buffer and byte offset of t (a view's parent buffer). */
KDCL_API cl_mem kdcl_tensor_mem(const kdcl_tensor *t, size_t *offset_bytes);

/* Row-major f32 GEMM through CLBlast; see struct kdcl_host.gemm. */
KDCL_API int kdcl_gemm(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
                       size_t n, size_t k, float alpha, const kdcl_tensor *a,
                       size_t a_off, size_t lda, const kdcl_tensor *b,
                       size_t b_off, size_t ldb, float beta, kdcl_tensor *c,
                       size_t c_off, size_t ldc);
KDCL_API int kdcl_gemm_batched(kdcl_context *ctx, int trans_a, int trans_b,
                               size_t m, size_t n, size_t k, float alpha,
                               const kdcl_tensor *a, size_t a_off, size_t lda,
                               size_t a_stride, const kdcl_tensor *b,
                               size_t b_off, size_t ldb, size_t b_stride,
                               float beta, kdcl_tensor *c, size_t c_off,
                               size_t ldc, size_t c_stride, size_t batch);

/* ---------------------------------------------------------------------- */
/* Plugin registry                                                         */

typedef struct kdcl_registry kdcl_registry;

/* An empty registry.  Loading errors are kept per file, never fatal. */
KDCL_API int kdcl_registry_init(kdcl_registry **out);
KDCL_API void kdcl_registry_free(kdcl_registry *reg);

/*
 * Load one shared object.  Returns KDCL_OK when it was accepted, else the
 * reason's status (also recorded as a rejected entry with its message).
 */
KDCL_API int kdcl_registry_load_file(kdcl_registry *reg, const char *path);
/* Load every *.so in dir, in name order.  A missing dir is not an error. */
KDCL_API int kdcl_registry_load_dir(kdcl_registry *reg, const char *dir);
/*
 * Load the standard search path in order: dirs[0..n_dirs) (--plugin-dir),
 * each entry of $KDCL_PLUGIN_PATH (':'-separated),
 * ~/.local/lib/kdcl/plugins, the installed plugin directory, and the
 * build tree's plugins when the running program is in the build tree.
 * The first plugin of a name wins; later ones are rejected as duplicates.
 */
KDCL_API int kdcl_registry_load_default(kdcl_registry *reg,
                                        const char *const *dirs,
                                        size_t n_dirs);

KDCL_API size_t kdcl_registry_count(const kdcl_registry *reg);
/* Plugin i and the file it came from; valid as long as reg. */
KDCL_API const struct kdcl_plugin *kdcl_registry_get(const kdcl_registry *reg,
                                                     size_t i,
                                                     const char **path);
/* The plugin named name, or NULL. */
KDCL_API const struct kdcl_plugin *
kdcl_registry_find(const kdcl_registry *reg, const char *name);
/* Files that were rejected, with their one-line reasons. */
KDCL_API size_t kdcl_registry_rejected_count(const kdcl_registry *reg);
KDCL_API const char *kdcl_registry_rejected(const kdcl_registry *reg,
                                            size_t i, const char **reason);
/* Register a descriptor linked into the program (a static plugin). */
KDCL_API int kdcl_registry_add(kdcl_registry *reg,
                               const struct kdcl_plugin *plugin,
                               const char *origin);

/* ---------------------------------------------------------------------- */
/* Hyperparameters and runs                                                */

/* Parameter values for plugin, all at their defaults.  Errors on ctx. */
KDCL_API int kdcl_params_init(kdcl_context *ctx,
                              const struct kdcl_plugin *plugin,
                              kdcl_params **out);
KDCL_API void kdcl_params_free(kdcl_params *p);
/* Parse value for the parameter key against its schema; an unknown key or
   a bad or out-of-range value is an error naming both. */
KDCL_API int kdcl_params_set(kdcl_params *p, const char *key,
                             const char *value);
/* Parse "key=value". */
KDCL_API int kdcl_params_set_kv(kdcl_params *p, const char *kv);
/* The value of key as text (the default when unset), or NULL. */
KDCL_API const char *kdcl_params_get(const kdcl_params *p, const char *key);

typedef struct kdcl_run kdcl_run;

/* Create the plugin's state on ctx's opened device (builds its kernels).
   params is copied. */
KDCL_API int kdcl_run_init(kdcl_context *ctx, const struct kdcl_plugin *plugin,
                           const kdcl_params *params, kdcl_run **out);
KDCL_API void kdcl_run_free(kdcl_run *run);
/* Bind input name to t (borrowed until unbound or the run is freed); t
   NULL unbinds.  The name must match one of the plugin's inputs and the
   dtype must be f32 (i32 for integer inputs).  Labels are range-checked
   at the next forward after a new tensor is bound (rebinding the same
   tensor with new contents is not checked again). */
KDCL_API int kdcl_run_set_input(kdcl_run *run, const char *name,
                                const kdcl_tensor *t);
/* Ask for the gradient of input name into grad (borrowed, f32, same
   shape as the input); NULL: not wanted. */
KDCL_API int kdcl_run_set_grad(kdcl_run *run, const char *name,
                               kdcl_tensor *grad);
/* Check the bound inputs and compute the loss (and, for fused plugins,
   the gradients asked for). */
KDCL_API int kdcl_run_forward(kdcl_run *run);
/* Compute the gradients asked for (a no-op for fused plugins). */
KDCL_API int kdcl_run_backward(kdcl_run *run);
/* Read the loss and the first n_terms terms (blocking). */
KDCL_API int kdcl_run_result(kdcl_run *run, double *loss, double *terms,
                             size_t n_terms);
/* The plugin's i-th trainable, KDCL_ENOTFOUND past the end. */
KDCL_API int kdcl_run_trainable(kdcl_run *run, uint32_t i,
                                struct kdcl_trainable *out);
/* Pass a lifecycle event (enum kdcl_event) to the plugin. */
KDCL_API int kdcl_run_event(kdcl_run *run, int event, int64_t index);
/* The plugin's cost model for the bound inputs (see kdcl_plugin.cost);
   without one, bytes are the inputs read once plus gradients written. */
KDCL_API int kdcl_run_cost(kdcl_run *run, double *flops, double *bytes);

#ifdef __cplusplus
}
#endif

#endif /* KDCL_KDCL_H */
