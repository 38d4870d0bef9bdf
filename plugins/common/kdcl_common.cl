/*
 * plugins/common/kdcl_common.cl - helpers shared by the plugins' kernels:
 * deterministic work-group reductions (fixed tree order, no atomics) and
 * the online log-sum-exp update.  Embedded ahead of each plugin's own .cl.
 *
 * Every reduction expects a power-of-two work-group size and a __local
 * scratch array of at least get_local_size(0) elements; every work-item
 * must call it (it contains barriers) and every item gets the result.
 */

/* Sum over the work-group. */
float kdcl_wg_sum(float x, __local float *scratch)
{
    const uint lid = get_local_id(0);
    scratch[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] += scratch[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Maximum over the work-group. */
float kdcl_wg_max(float x, __local float *scratch)
{
    const uint lid = get_local_id(0);
    scratch[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/*
 * Online softmax normaliser: (m, z) holds max m and sum z of exp(x - m)
 * over the values seen.  One exp per value: exp(-|x - m|) serves both the
 * new term and the rescale.  Start from (-INFINITY, 0).
 */
void kdcl_lse_add(float x, float *m, float *z)
{
    const float hi = fmax(x, *m);
    const float e = exp(fmin(x, *m) - hi);
    *z = (x > *m) ? *z * e + 1.0f : *z + e;
    *m = hi;
}

/* Merge two (m, z) pairs. */
float2 kdcl_lse_merge(float2 a, float2 b)
{
    const float m = fmax(a.x, b.x);
    if (m == -INFINITY)
        return (float2)(m, 0.0f);
    return (float2)(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

/* Log-sum-exp over the work-group of per-item (m, z) pairs. */
float kdcl_wg_lse(float m, float z, __local float2 *scratch)
{
    const uint lid = get_local_id(0);
    scratch[lid] = (float2)(m, z);
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s)
            scratch[lid] = kdcl_lse_merge(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float2 r = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r.x + log(r.y);
}
