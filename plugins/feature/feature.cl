/*
 * plugins/feature/feature.cl - FitNets hint loss, the elementwise and
 * reduction parts (LOSSES.md `feature`); the regressor's products
 * (R = F_S W^T, dF_S = dR W, dW = dR^T F_S) are host GEMMs.
 *
 * feature_rows: one work-group of WG items per row b; item i handles
 * columns i, i + WG, ... of the Dt-wide row, so a group's loads are
 * contiguous.  d = r - t with r = R[b,c] + bias[c] (regressor) or
 * F_S[b,c] (identity); rows[b] = sum_c d^2 (fixed-order tree sum), and
 * dr[b,c] = scale * d when want_dr.  dr may be the buffer r (in place):
 * each item writes only the elements it has just read.
 *
 * feature_colsum: one item per column j (any work-group size):
 * db[j] = sum over b = 0..B-1 of dr[b,j], in row order (deterministic;
 * neighbouring items read neighbouring columns).
 *
 * feature_finish: one work-group sums the per-row values in a fixed order
 * and writes loss, ce, kd.
 */

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void feature_rows(__global const float *r, __global const float *bias,
                  __global const float *restrict t, __global float *dr,
                  __global float *restrict rows, const int D,
                  const float scale, const int has_bias, const int want_dr)
{
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)D;
    float acc = 0.0f;
    for (int c = lid; c < D; c += WG) {
        const float d = (has_bias ? r[base + c] + bias[c] : r[base + c])
                        - t[base + c];
        acc += d * d;
        if (want_dr)
            dr[base + c] = scale * d;
    }
    acc = kdcl_wg_sum(acc, s1);
    if (lid == 0)
        rows[b] = acc;
}

__kernel void feature_colsum(__global const float *restrict dr,
                             __global float *restrict db, const int B,
                             const int D)
{
    const int j = get_global_id(0);
    if (j >= D)
        return;
    float acc = 0.0f;
    for (int b = 0; b < B; b++)
        acc += dr[(size_t)b * (size_t)D + j];
    db[j] = acc;
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void feature_finish(__global const float *restrict rows,
                    __global const float *restrict ce_rows,
                    __global float *restrict out, const int B,
                    const float kd_scale, const float alpha,
                    const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float sq = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        sq += rows[b];
        if (has_ce)
            ce += ce_rows[b];
    }
    sq = kdcl_wg_sum(sq, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float kd = kd_scale * sq;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kd : kd;
        out[1] = cem;
        out[2] = kd;
    }
}
