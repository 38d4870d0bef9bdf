/*
 * kdcl/common.h - the types shared by the library API (kdcl/kdcl.h) and the
 * plugin ABI (kdcl/plugin.h): status codes, element types, opaque handles,
 * kernel arguments and the device description.
 *
 * Every status is generated from one X-macro so that its enum value, its
 * name and its message can never drift apart.  The list is append-only:
 * a code, once released, keeps its number and meaning forever.
 */
#ifndef KDCL_COMMON_H
#define KDCL_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message).  0 is success, every error is negative. */
#define KDCL_STATUS_MAP(X)                                                   \
    X(OK, 0, "success")                                                      \
    X(EINVAL, -1, "invalid argument")                                        \
    X(ENOMEM, -2, "out of host memory")                                      \
    X(EDEVMEM, -3, "out of device memory or over the device's size limit")   \
    X(ENODEV, -4, "no matching OpenCL device")                               \
    X(ECL, -5, "OpenCL call failed")                                         \
    X(EBUILD, -6, "OpenCL program failed to build")                          \
    X(EIO, -7, "input/output error")                                         \
    X(EFORMAT, -8, "malformed file or data")                                 \
    X(ESHAPE, -9, "shape mismatch")                                          \
    X(EDTYPE, -10, "unsupported element type")                               \
    X(ENOTFOUND, -11, "not found")                                           \
    X(EABI, -12, "plugin ABI version not supported")                         \
    X(EPLUGIN, -13, "invalid plugin")                                        \
    X(ERANGE, -14, "value out of range")                                     \
    X(EUNSUPPORTED, -15, "not supported on this device")                     \
    X(EMISSING, -16, "required input missing")                               \
    X(EEXIST, -17, "already exists")                                         \
    X(EBLAS, -18, "CLBlast call failed")

/* Status codes returned by every kdcl function that can fail. */
typedef enum kdcl_status {
#define KDCL__STATUS_ENUM(name, value, msg) KDCL_##name = value,
    KDCL_STATUS_MAP(KDCL__STATUS_ENUM)
#undef KDCL__STATUS_ENUM
} kdcl_status;

/*
 * Element types.  Append-only; the numbers are part of the ABI.
 */
typedef enum kdcl_dtype {
    KDCL_DTYPE_F32 = 0,
    KDCL_DTYPE_F64 = 1,
    KDCL_DTYPE_I32 = 2,
    KDCL_DTYPE_I64 = 3,
    KDCL_DTYPE_U8 = 4
} kdcl_dtype;

/* Largest number of dimensions a tensor can have. */
#define KDCL_MAX_DIMS 8

/* Log levels for the log callback and the plugin log service. */
typedef enum kdcl_log_level {
    KDCL_LOG_ERROR = 0,
    KDCL_LOG_WARN = 1,
    KDCL_LOG_INFO = 2,
    KDCL_LOG_DEBUG = 3
} kdcl_log_level;

/* Opaque handles.  All are owned by the library; see kdcl.h / plugin.h. */
typedef struct kdcl_context kdcl_context; /* one device, queue, caches */
typedef struct kdcl_tensor kdcl_tensor;   /* a typed, shaped device buffer */
typedef struct kdcl_program kdcl_program; /* a built program (cached) */
typedef struct kdcl_kernel kdcl_kernel;   /* one kernel of a program */

/* Kinds of kernel argument (struct kdcl_arg).  Append-only. */
typedef enum kdcl_arg_kind {
    KDCL_ARG_TENSOR = 0, /* v.tensor: its buffer (a view's sub-buffer) */
    KDCL_ARG_I32 = 1,    /* v.i32 */
    KDCL_ARG_I64 = 2,    /* v.i64 */
    KDCL_ARG_F32 = 3,    /* v.f32 */
    KDCL_ARG_F64 = 4,    /* v.f64 (needs fp64 on the device) */
    KDCL_ARG_LOCAL = 5,  /* v.local_bytes of __local memory */
    KDCL_ARG_U32 = 6     /* v.u32 */
} kdcl_arg_kind;

/*
 * One kernel argument.  The layout is fixed for ABI 1: kind, then an
 * 8-byte aligned union.  Build them with the KDCL_ARG_* macros below.
 */
struct kdcl_arg {
    uint32_t kind;
    uint32_t reserved;
    union {
        const kdcl_tensor *tensor;
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        float f32;
        double f64;
        size_t local_bytes;
    } v;
};

#define KDCL_A_TENSOR(t) ((struct kdcl_arg){KDCL_ARG_TENSOR, 0, {.tensor = (t)}})
#define KDCL_A_I32(x) ((struct kdcl_arg){KDCL_ARG_I32, 0, {.i32 = (x)}})
#define KDCL_A_U32(x) ((struct kdcl_arg){KDCL_ARG_U32, 0, {.u32 = (x)}})
#define KDCL_A_I64(x) ((struct kdcl_arg){KDCL_ARG_I64, 0, {.i64 = (x)}})
#define KDCL_A_F32(x) ((struct kdcl_arg){KDCL_ARG_F32, 0, {.f32 = (x)}})
#define KDCL_A_F64(x) ((struct kdcl_arg){KDCL_ARG_F64, 0, {.f64 = (x)}})
#define KDCL_A_LOCAL(n) ((struct kdcl_arg){KDCL_ARG_LOCAL, 0, {.local_bytes = (n)}})

/* Device types, read from CL_DEVICE_TYPE. */
typedef enum kdcl_device_type {
    KDCL_DEVICE_OTHER = 0,
    KDCL_DEVICE_CPU = 1,
    KDCL_DEVICE_GPU = 2,
    KDCL_DEVICE_ACCELERATOR = 3
} kdcl_device_type;

/*
 * What kdcl knows of one OpenCL device.  Every capability is read from the
 * device itself, never guessed from a platform or vendor string.  The
 * struct only grows at the end; struct_size says how much of it is there.
 */
struct kdcl_device_info {
    uint32_t struct_size;        /* sizeof(struct kdcl_device_info) */
    uint32_t index;              /* position in the enumeration, from 0 */
    uint32_t platform_index;     /* which platform, from 0 */
    uint32_t type;               /* enum kdcl_device_type */
    char name[256];              /* CL_DEVICE_NAME */
    char vendor[256];            /* CL_DEVICE_VENDOR */
    char platform_name[256];     /* CL_PLATFORM_NAME */
    char platform_version[256];  /* CL_PLATFORM_VERSION */
    char device_version[256];    /* CL_DEVICE_VERSION */
    char driver_version[256];    /* CL_DRIVER_VERSION */
    uint32_t vendor_id;          /* CL_DEVICE_VENDOR_ID (PCI id) */
    uint32_t cl_version;         /* device OpenCL version, 100*major+10*minor */
    uint32_t cl_c_version;       /* highest OpenCL C version, same encoding */
    uint32_t compute_units;      /* CL_DEVICE_MAX_COMPUTE_UNITS */
    uint32_t clock_mhz;          /* CL_DEVICE_MAX_CLOCK_FREQUENCY */
    uint32_t fp16;               /* cl_khr_fp16 */
    uint32_t fp64;               /* cl_khr_fp64 or a nonzero double config */
    uint32_t subgroups;          /* cl_khr_subgroups or a 3.x subgroup count */
    uint32_t wg_collectives;     /* 3.x work-group collective functions */
    uint32_t local_mem_is_local; /* CL_LOCAL (dedicated) vs CL_GLOBAL */
    uint64_t global_mem;         /* CL_DEVICE_GLOBAL_MEM_SIZE, bytes */
    uint64_t max_alloc;          /* CL_DEVICE_MAX_MEM_ALLOC_SIZE, bytes */
    uint64_t local_mem;          /* CL_DEVICE_LOCAL_MEM_SIZE, bytes */
    uint64_t max_wg_size;        /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    uint32_t mem_base_align;     /* CL_DEVICE_MEM_BASE_ADDR_ALIGN, bytes */
    uint32_t reserved;
};

#ifdef __cplusplus
}
#endif

#endif /* KDCL_COMMON_H */
