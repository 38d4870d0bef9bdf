/*
 * kdcl/plugin.h - the kdcl plugin ABI, version 1.
 *
 * This is the only header a plugin includes.  A plugin is a shared object
 * that exports one symbol, kdcl_plugin_entry (use KDCL_PLUGIN_DEFINE), and
 * reaches the host only through the service table (struct kdcl_host) it is
 * given when a run state is created.  Plugins never link against libkdcl:
 * every kernel build, launch, buffer and GEMM goes through the host, which
 * keeps them portable across OpenCL vendors, cached and profiled.
 *
 * Compatibility rules (a plugin built against ABI 1 loads in every 1.x
 * host):
 *  - every struct that crosses the boundary starts with its ABI version or
 *    its size and only ever grows at the end;
 *  - arrays of descriptor structs are walked with the element size the
 *    plugin states (param_desc_size, input_desc_size), so those structs
 *    can grow too;
 *  - the host reads only the members the plugin's struct_size covers, and
 *    a plugin may read a member of struct kdcl_host only when the host's
 *    struct_size covers it (KDCL_HOST_HAS);
 *  - optional capabilities are looked up by name (kdcl_host.service), not
 *    added by bumping the ABI.
 *
 * Memory that crosses the boundary is freed by whoever allocated it.
 * Threading: the host calls a plugin state from one thread at a time;
 * different states may be used from different threads.
 */
#ifndef KDCL_PLUGIN_H
#define KDCL_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin ABI this header describes. */
#define KDCL_PLUGIN_ABI_VERSION 1u
/* The oldest plugin ABI a host built from this header still loads. */
#define KDCL_PLUGIN_ABI_MIN 1u

/* The one symbol a plugin exports. */
#define KDCL_PLUGIN_ENTRY_SYMBOL "kdcl_plugin_entry"

#if defined(_WIN32)
#define KDCL_PLUGIN_EXPORT __declspec(dllexport)
#else
#define KDCL_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* True when the host's table has member m (the plugin may call it). */
#define KDCL_HOST_HAS(host, m)                                               \
    ((host)->struct_size >= offsetof(struct kdcl_host, m) + sizeof((host)->m) \
     && (host)->m != NULL)

/* Opaque handles owned by the host. */
typedef struct kdcl_params kdcl_params; /* parsed hyperparameter values */
typedef struct kdcl_io kdcl_io;         /* the tensors of one call */

/* ---------------------------------------------------------------------- */
/* Hyperparameter schema                                                   */

/* Types of hyperparameter.  Append-only. */
typedef enum kdcl_param_type {
    KDCL_PARAM_FLOAT = 0, /* a double */
    KDCL_PARAM_INT = 1,   /* an int64 */
    KDCL_PARAM_BOOL = 2,  /* 0 or 1 (also true/false/yes/no on input) */
    KDCL_PARAM_ENUM = 3,  /* one of choices; read as its index or its text */
    KDCL_PARAM_STRING = 4 /* free text */
} kdcl_param_type;

/* Flags of struct kdcl_param_desc. */
#define KDCL_PARAM_HAS_MIN 0x1u  /* min applies */
#define KDCL_PARAM_HAS_MAX 0x2u  /* max applies */
#define KDCL_PARAM_MIN_OPEN 0x4u /* value > min, not >= */
#define KDCL_PARAM_MAX_OPEN 0x8u /* value < max, not <= */

/*
 * One hyperparameter.  The host parses user text ("--set name=value", YAML)
 * against this schema, rejects unknown names and values outside the range
 * with a clear message, and hands the plugin the parsed values.
 */
struct kdcl_param_desc {
    const char *name;    /* [a-z0-9_]+, unique within the plugin */
    uint32_t type;       /* enum kdcl_param_type */
    uint32_t flags;      /* KDCL_PARAM_* */
    const char *def;     /* default, as text the parser accepts; NULL: none */
    double min;          /* with KDCL_PARAM_HAS_MIN */
    double max;          /* with KDCL_PARAM_HAS_MAX */
    const char *choices; /* KDCL_PARAM_ENUM: "a|b|c"; else NULL */
    const char *doc;     /* one line for `kdcl plugins` */
};

/* ---------------------------------------------------------------------- */
/* Named inputs                                                            */

/* Flags of struct kdcl_input_desc. */
#define KDCL_INPUT_REQUIRED 0x1u /* the call fails without it */
#define KDCL_INPUT_GRAD 0x2u     /* a student input: the plugin writes its
                                    gradient when the host asks for it */
#define KDCL_INPUT_INT 0x4u      /* integer data: the host hands it over as
                                    KDCL_DTYPE_I32 (else as KDCL_DTYPE_F32) */
#define KDCL_INPUT_LABELS 0x8u   /* class labels of the last axis of
                                    student.logits: the host checks their
                                    range before the call */
#define KDCL_INPUT_IGNORE 0x10u  /* with LABELS: -100 marks an ignored row */

/*
 * One input the plugin reads, by the names of LOSSES.md.  A '*' in name
 * matches one decimal index: "teacher.*.logits" matches teacher.0.logits,
 * teacher.1.logits, ...; "student.feat*" also matches the plain name and
 * "student.feat.0", "student.feat.1", ...  shape documents the expected
 * shape with symbols (B rows, C classes, D width, ...); the host uses it to
 * make benchmark inputs: "[B,C]", "[B,D]", "[B,C,H,W]", "[B]", "[E,2]".
 */
struct kdcl_input_desc {
    const char *name;
    uint32_t flags; /* KDCL_INPUT_* */
    uint32_t reserved;
    const char *shape;
    const char *doc;
};

/* ---------------------------------------------------------------------- */
/* Host services                                                           */

/*
 * The host's service table, given to kdcl_plugin.create.  It lives as long
 * as the state created with it.  Every function pointer is non-NULL in an
 * ABI 1 host.  The ctx member is passed back as the first argument of the
 * services that take one.  Unless said otherwise, services return
 * KDCL_OK or a negative kdcl_status and leave a message on ctx.
 */
struct kdcl_host {
    uint32_t abi_version; /* the host's KDCL_PLUGIN_ABI_VERSION */
    uint32_t struct_size; /* sizeof(struct kdcl_host) in the host */
    kdcl_context *ctx;    /* the device context of this run */

    /* Host memory.  What the plugin allocates, it frees. */
    void *(*alloc)(size_t bytes);             /* NULL when out of memory */
    void *(*alloc_zero)(size_t n, size_t sz); /* zeroed, like calloc */
    void (*free)(void *p);                    /* free(NULL) is a no-op */

    /* Log a line through the host's log callback (printf format). */
    void (*log)(kdcl_context *ctx, int level, const char *fmt, ...);
    /* Set ctx's error message (printf format) and return status. */
    int (*error)(kdcl_context *ctx, int status, const char *fmt, ...);
    /* The device of ctx; valid as long as ctx. */
    const struct kdcl_device_info *(*device)(kdcl_context *ctx);

    /*
     * Build an OpenCL C program through the host's program caches (memory
     * and disk).  The host prepends capability defines (KDCL_DEVICE_CPU or
     * KDCL_DEVICE_GPU, KDCL_HAS_FP64, KDCL_HAS_FP16, KDCL_HAS_SUBGROUPS,
     * KDCL_MAX_WG, KDCL_CL_C_VERSION).  options may be NULL.  The program
     * is owned by ctx and valid until ctx is freed.  A build failure
     * returns KDCL_EBUILD with the build log in ctx's message.
     */
    int (*program_build)(kdcl_context *ctx, const char *source,
                         const char *options, kdcl_program **out);
    /* A kernel of a built program; free it with kernel_free. */
    int (*kernel_init)(kdcl_context *ctx, kdcl_program *program,
                       const char *name, kdcl_kernel **out);
    void (*kernel_free)(kdcl_kernel *kernel);
    /*
     * Set every argument and enqueue.  local may be NULL (the driver picks)
     * and global sizes need not be multiples of the local sizes: the host
     * rounds them up, so kernels must check their bounds.  Work is queued
     * in order on ctx's queue; nothing waits for it.
     */
    int (*launch)(kdcl_context *ctx, kdcl_kernel *kernel, uint32_t work_dim,
                  const size_t *global, const size_t *local, uint32_t n_args,
                  const struct kdcl_arg *args);
    /* The largest work-group size the kernel can run with on ctx. */
    size_t (*kernel_wg_size)(kdcl_context *ctx, kdcl_kernel *kernel);

    /* Device tensors.  Shapes are row-major; ndim <= KDCL_MAX_DIMS. */
    int (*tensor_init)(kdcl_context *ctx, int dtype, uint32_t ndim,
                       const int64_t *shape, kdcl_tensor **out);
    void (*tensor_free)(kdcl_tensor *t); /* NULL is a no-op */
    int (*tensor_dtype)(const kdcl_tensor *t);
    uint32_t (*tensor_ndim)(const kdcl_tensor *t);
    /* Size of axis i; a negative i counts from the end (-1 = last). */
    int64_t (*tensor_dim)(const kdcl_tensor *t, int i);
    int64_t (*tensor_numel)(const kdcl_tensor *t);
    /* Blocking copies between host memory and the tensor (all of it). */
    int (*tensor_write)(kdcl_tensor *t, const void *src, size_t bytes);
    int (*tensor_read)(const kdcl_tensor *t, void *dst, size_t bytes);
    /* Fill every element with value (converted to the dtype); queued. */
    int (*tensor_fill)(kdcl_tensor *t, double value);

    /*
     * Row-major single-precision GEMM through CLBlast, queued:
     * C = alpha * op(A) op(B) + beta * C, op(A) [M,K], op(B) [K,N], C [M,N],
     * with element offsets and leading dimensions as in BLAS.
     */
    int (*gemm)(kdcl_context *ctx, int trans_a, int trans_b, size_t m,
                size_t n, size_t k, float alpha, const kdcl_tensor *a,
                size_t a_off, size_t lda, const kdcl_tensor *b, size_t b_off,
                size_t ldb, float beta, kdcl_tensor *c, size_t c_off,
                size_t ldc);
    /* The same over `batch` matrices spaced by the given element strides
       (a stride of 0 reuses one matrix; c_stride 0 sums every product
       into one C: C = beta * C + alpha * sum_i op(A_i) op(B_i)). */
    int (*gemm_batched)(kdcl_context *ctx, int trans_a, int trans_b,
                        size_t m, size_t n, size_t k, float alpha,
                        const kdcl_tensor *a, size_t a_off, size_t lda,
                        size_t a_stride, const kdcl_tensor *b, size_t b_off,
                        size_t ldb, size_t b_stride, float beta,
                        kdcl_tensor *c, size_t c_off, size_t ldc,
                        size_t c_stride, size_t batch);

    /* Hyperparameters, by index into the plugin's params array. */
    double (*param_f64)(const kdcl_params *p, uint32_t i);  /* FLOAT, INT */
    int64_t (*param_i64)(const kdcl_params *p, uint32_t i); /* INT, BOOL, ENUM */
    const char *(*param_str)(const kdcl_params *p, uint32_t i); /* any */
    int (*param_is_set)(const kdcl_params *p, uint32_t i); /* set by user */

    /*
     * The tensors of one call.  io_input returns the named input or NULL
     * when absent; io_grad returns the tensor (same shape, f32) into which
     * the gradient of the total loss with respect to that input must be
     * written, or NULL when the host does not want it.  io_output is the
     * f32 tensor [1 + n_terms]: element 0 receives the total loss,
     * element 1 + i the term named terms[i].  All are owned by the host
     * and valid during the call.
     */
    const kdcl_tensor *(*io_input)(const kdcl_io *io, const char *name);
    kdcl_tensor *(*io_grad)(const kdcl_io *io, const char *name);
    kdcl_tensor *(*io_output)(const kdcl_io *io);

    /* Raw OpenCL, an escape hatch: valid as long as ctx. */
    cl_context (*cl_context)(kdcl_context *ctx);
    cl_command_queue (*cl_queue)(kdcl_context *ctx);
    cl_device_id (*cl_device)(kdcl_context *ctx);
    /* A tensor's buffer; a view's buffer is its parent's, at the offset. */
    cl_mem (*tensor_mem)(const kdcl_tensor *t, size_t *offset_bytes);

    /* Optional services by name and version; NULL when not offered. */
    const void *(*service)(kdcl_context *ctx, const char *name,
                           uint32_t version);
};

/* ---------------------------------------------------------------------- */
/* The plugin descriptor                                                   */

/* Events passed to kdcl_plugin.event.  Append-only. */
typedef enum kdcl_event {
    KDCL_EVENT_STEP_END = 0,  /* index: global step number */
    KDCL_EVENT_EPOCH_END = 1, /* index: epoch number, from 0 */
    KDCL_EVENT_TASK_END = 2   /* index: task number (lifelong learning) */
} kdcl_event;

/*
 * A plugin-owned trainable tensor (a FitNets regressor, a discriminator,
 * architecture weights): the host's optimizer updates value from grad
 * after each backward unless the plugin has its own step hook.
 */
struct kdcl_trainable {
    uint32_t struct_size; /* set by the host before the call */
    uint32_t reserved;
    const char *name;  /* stable name, used in saved weights */
    kdcl_tensor *value;
    kdcl_tensor *grad; /* overwritten by each backward */
};

/*
 * What kdcl_plugin_entry returns: static data, valid while the plugin is
 * loaded.  Strings are UTF-8.  Members after struct_size are read only
 * when struct_size covers them.
 */
struct kdcl_plugin {
    uint32_t abi_version; /* KDCL_PLUGIN_ABI_VERSION the plugin was built for */
    uint32_t struct_size; /* sizeof(struct kdcl_plugin) in the plugin */

    const char *name;     /* unique id, [a-z0-9_-]+ (not the file name) */
    const char *family;   /* survey family: "response", "feature", ... */
    const char *summary;  /* one line */
    const char *citation; /* survey equations and/or paper */
    const char *version;  /* the plugin's own version, "1.0.0" */

    const struct kdcl_param_desc *params;
    uint32_t n_params;
    uint32_t param_desc_size; /* sizeof(struct kdcl_param_desc) */
    const struct kdcl_input_desc *inputs;
    uint32_t n_inputs;
    uint32_t input_desc_size; /* sizeof(struct kdcl_input_desc) */
    const char *const *terms; /* names of the logged terms */
    uint32_t n_terms;
    uint32_t flags; /* reserved, 0 */

    /*
     * Make a run state from parsed hyperparameters; build kernels here so
     * that a build failure surfaces before any data moves.  The state is
     * the plugin's; destroy frees it (destroy(NULL) must be a no-op).
     */
    int (*create)(const struct kdcl_host *host, const kdcl_params *params,
                  void **state);
    void (*destroy)(void *state);

    /*
     * Compute the loss and its terms into io_output.  When backward is
     * NULL the plugin also writes every gradient io_grad asks for here
     * (a fused forward+backward); otherwise the host calls backward after
     * forward with the same io.  Both queue work and need not wait for it.
     * Input shapes are checked here: a mismatch returns KDCL_ESHAPE, a
     * missing input KDCL_EMISSING, with a message naming the input.
     */
    int (*forward)(void *state, kdcl_io *io);
    int (*backward)(void *state, kdcl_io *io);

    /*
     * Optional (NULL: none).  The i-th trainable tensor, valid after the
     * first forward; KDCL_ENOTFOUND past the last one.
     */
    int (*trainable)(void *state, uint32_t i, struct kdcl_trainable *out);
    /* Optional: the plugin updates its own trainables (its own optimizer,
       adversarial steps).  NULL: the host's optimizer does. */
    int (*step)(void *state, kdcl_io *io);
    /* Optional: lifecycle events (enum kdcl_event). */
    int (*event)(void *state, int event, int64_t index);
    /* Optional: floating-point operations and device bytes one
       forward+backward moves, for kdcl bench. NULL: bytes are estimated
       from the inputs and gradients, flops unknown. */
    int (*cost)(void *state, const kdcl_io *io, double *flops,
                double *bytes);
};

/*
 * The entry point.  The host passes its ABI version; the plugin returns its
 * descriptor, whose abi_version says what it was built for, even when the
 * host is older (the host then rejects it and reports both numbers).
 * Returning NULL means the plugin refuses this host.
 */
typedef const struct kdcl_plugin *(*kdcl_plugin_entry_fn)(uint32_t host_abi);

/*
 * Define the entry point for descriptor `desc`.  Built with
 * -DKDCL_PLUGIN_STATIC the same source instead defines
 * kdcl_plugin_entry_<id>, to be linked into a program directly.
 */
#ifdef KDCL_PLUGIN_STATIC
#define KDCL_PLUGIN_DEFINE(id, desc)                                          \
    const struct kdcl_plugin *kdcl_plugin_entry_##id(uint32_t host_abi)      \
    {                                                                         \
        (void)host_abi;                                       \
        return &(desc);          \
    }
#else
#define KDCL_PLUGIN_DEFINE(id, desc)                                          \
    KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(           \
        uint32_t host_abi);                                                   \
    KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(           \
        uint32_t host_abi)                                                    \
    {                                                                         \
        (void)host_abi;                                       \
        return &(desc);          \
    }
#endif

/* Fill the fixed head of a descriptor: abi_version and struct_size. */
#define KDCL_PLUGIN_HEAD KDCL_PLUGIN_ABI_VERSION, sizeof(struct kdcl_plugin)

#ifdef __cplusplus
}
#endif

#endif /* KDCL_PLUGIN_H */
