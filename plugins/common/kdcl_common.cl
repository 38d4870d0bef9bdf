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
#if defined(WG) && WG == 1
    return x; /* one item (the row kernels on CPU devices): no barrier */
#endif
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

/* Merge (mb, zb) into (ma, za). */
void kdcl_lse_merge(float *ma, float *za, float mb, float zb)
{
    const float m = fmax(*ma, mb);
    if (m == -INFINITY)
        return; /* both empty */
    *za = *za * exp(*ma - m) + zb * exp(mb - m);
    *ma = m;
}

/*
 * Log-sum-exp over the work-group of per-item (m, z) pairs.  scratch holds
 * get_local_size(0) float2; it is used as pairs of scalars (Oclgrind flags
 * vectors assembled from scalars as partly uninitialised).
 */
float kdcl_wg_lse(float m, float z, __local float2 *scratch)
{
#if defined(WG) && WG == 1
    return m + log(z);
#endif
    __local float *s = (__local float *)scratch;
    const uint lid = get_local_id(0);
    s[2 * lid] = m;
    s[2 * lid + 1] = z;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint n = get_local_size(0) / 2; n > 0; n >>= 1) {
        if (lid < n) {
            float ma = s[2 * lid], za = s[2 * lid + 1];
            kdcl_lse_merge(&ma, &za, s[2 * (lid + n)], s[2 * (lid + n) + 1]);
            s[2 * lid] = ma;
            s[2 * lid + 1] = za;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float r = s[0] + log(s[1]);
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/*
 * Softmax cross-entropy on untempered logits, one work-group per row (any
 * power-of-two size; scratch holds get_local_size(0) float2):
 *   rows[b * row_stride] = logsumexp(z_b) - z_b[y_b]   (0 when y_b = -100)
 *   grad_b = scale * (softmax(z_b) - onehot(y_b))      (0 when y_b = -100)
 * The gradient is written, or added to what grad holds when accumulate is
 * nonzero; grad may be NULL (want_grad = 0).
 */
__kernel void kdcl_ce_rows(__global const float *restrict z,
                           __global const int *restrict y,
                           __global float *restrict grad,
                           __global float *restrict rows, const int C,
                           const int row_stride, const float scale,
                           const int want_grad, const int accumulate,
                           __local float2 *scratch)
{
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const int wg = get_local_size(0);
    __global const float *zb = z + (size_t)b * (size_t)C;
    const int yb = y[b];
    const bool ignored = yb == -100;
    float m = -INFINITY, s = 0.0f;
    for (int c = lid; c < C; c += wg)
        kdcl_lse_add(zb[c], &m, &s);
    const float lse = kdcl_wg_lse(m, s, scratch);
    if (lid == 0)
        rows[(size_t)b * (size_t)row_stride] = ignored ? 0.0f : lse - zb[yb];
    if (want_grad) {
        __global float *g = grad + (size_t)b * (size_t)C;
        for (int c = lid; c < C; c += wg) {
            float d = ignored ? 0.0f
                              : scale * (exp(zb[c] - lse)
                                         - (c == yb ? 1.0f : 0.0f));
            g[c] = accumulate ? g[c] + d : d;
        }
    }
}
