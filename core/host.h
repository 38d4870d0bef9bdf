/*
 * core/host.h - what the host compute path of CPU devices shares between
 * its GEMM-bound layers (core/host.c) and the small operations beside them
 * (core/host_ops.c): reaching tensors from the host, and spreading work
 * over the host threads (OpenMP where the build has it with BLIS).
 */
#ifndef KDCL_CORE_HOST_H
#define KDCL_CORE_HOST_H

#include "internal.h"

#include <stddef.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* A tensor the host works on: t (NULL: an unused slot), whether the host
   writes it, and where its data is while the work runs. */
struct kdcl__host_buf {
    const kdcl_tensor *t;
    int write;
    float *p;
};

/* Drain the queue and give every buffer's data a host address: in place
   where the tensor lives in host memory the driver computes in, else
   mapped (copies in checker mode). */
int kdcl__host_map(kdcl_context *ctx, struct kdcl__host_buf *m, int n);
/* Release what kdcl__host_map took (in checker mode: write the results
   back, when write_back, and free the copies). */
int kdcl__host_unmap(kdcl_context *ctx, struct kdcl__host_buf *m, int n,
                     int write_back);
/* Nanoseconds on the monotonic clock (host work in the profile). */
uint64_t kdcl__host_now_ns(void);

/* The block that follows runs on nt threads (once, without OpenMP). */
#ifdef _OPENMP
#define KDCL_PARALLEL_NT _Pragma("omp parallel num_threads(nt)")
#else
#define KDCL_PARALLEL_NT
#endif

/* This thread's number inside a parallel region (0 outside). */
static inline int kdcl__thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Threads to spread `items` independent pieces of work over. */
static inline int kdcl__host_threads(size_t items)
{
    int nt = 1;
#if defined(KDCL_HAVE_BLIS) && defined(_OPENMP)
    nt = omp_get_max_threads();
    if ((size_t)nt > items)
        nt = (int)items;
#else
    (void)items;
#endif
    return nt < 1 ? 1 : nt;
}

/* Thread t's contiguous share [*lo, *hi) of n items over nt threads. */
static inline void kdcl__share(size_t n, int t, int nt, size_t *lo,
                               size_t *hi)
{
    *lo = n * (size_t)t / (size_t)nt;
    *hi = n * (size_t)(t + 1) / (size_t)nt;
}

#endif
