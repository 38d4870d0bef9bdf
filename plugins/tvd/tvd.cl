/*
 * plugins/tvd/tvd.cl - total variation distance between the tempered
 * teacher and student softmaxes (LOSSES.md `tvd`), forward and backward
 * fused.  p = softmax(z_t / T), q = softmax(z_s / T); a row's loss is
 * 0.5 sum_i |p_i - q_i|; L is its mean over the valid rows (labels !=
 * -100).  With g_i = 0.5 sign(q_i - p_i) (sign(0) = 0, the gradient of |x|
 * at 0 is 0):
 *   dL/dz_s,j = q_j (g_j - S) / (T B_valid),   S = sum_i q_i g_i.
 * The sign is taken in the log domain, sign(log q - log p), which is
 * exactly 0 where the two rows agree.
 *
 * tvd_rows: one work-group per row b running the passes of
 * plugins/common/kdcl_rows.cl (run_row), which describes them; pass 2 is
 * this file's: from the kept exps (p and q are a kept exp times its
 * block's factor, no new exp), sum |q - p| and S, keep h = q g.
 * rows[b] = the row's TVD (0 for a masked row).
 *
 * tvd_count: one work-group counts the rows whose label is not -100.
 * tvd_finish: one work-group sums the per-row values in a fixed order
 * (deterministic) and writes loss and tvd.
 */

/* Pass 2 on chunk k: |q - p| and h = q g of the lanes in live. */
void pass2(const struct row *r, int k, int n, intv live,
           const int want_grad, const int cached, floatv *acc_d,
           floatv *acc_h)
{
    const floatv lq = ld_g(r->s, k, n, 0.0f) * r->inv_t - r->lse_s;
    const floatv lp = ld_g(r->t, k, n, 0.0f) * r->inv_t - r->lse_t;
    const floatv q = want_grad ? ld_g(r->g, k, n, 0.0f) * r->fs : exp_neg(lq);
    const floatv p = cached ? ld_l(r->cache, k, n) * r->ft : exp_neg(lp);
    *acc_d += select((floatv)0.0f, fabs(q - p), live);
    if (want_grad) {
        const floatv h = 0.5f * q * sign(lq - lp);
        *acc_h += select((floatv)0.0f, h, live);
        if (cached)
            st_l(h, r->cache, k, n);
        else
            st_g(h, r->g, k, n);
    }
}

/*
 * zs, zt: logits [B,V]; labels: [B] or NULL; grad: [B,V] or NULL;
 * rows: [B]; nvalid: [1], the number of valid rows; gscale: the
 * gradient's factor before the division by nvalid; cache: V floats when
 * cached, else unused.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void tvd_rows(__global const float *restrict zs,
              __global const float *restrict zt,
              __global const int *restrict labels,
              __global float *restrict grad,
              __global float *restrict rows,
              __global const float *restrict nvalid, const int V,
              const float inv_t, const float gscale,
              const int has_labels, const int want_grad,
              const int cached, __local float *cache)
{
    __local float2 s2[WG];
    __local float s1[WG];
    const int b = get_group_id(0);
    const int skip = has_labels && labels[b] == -100;
    float sums[2];
    const int done = run_row(zs, zt, grad, cache, b, V, inv_t, 0.0f, 0.0f,
                             gscale, nvalid[0], skip, want_grad, cached,
                             1, s2, s1, sums);
    if (get_local_id(0) == 0)
        rows[b] = done ? 0.5f * sums[0] : 0.0f;
}

/* nvalid[0] = the number of labels that are not -100. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void tvd_count(__global const int *restrict labels,
               __global float *restrict nvalid, const int B)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float n = 0.0f;
    for (int b = lid; b < B; b += WG)
        n += labels[b] != -100 ? 1.0f : 0.0f;
    n = kdcl_wg_sum(n, s1);
    if (lid == 0)
        nvalid[0] = n;
}

/* out[0] = loss, out[1] = tvd (the same: the mean over valid rows). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void tvd_finish(__global const float *restrict rows,
                __global const float *restrict nvalid,
                __global float *restrict out, const int B)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float tv = 0.0f;
    for (int b = lid; b < B; b += WG)
        tv += rows[b];
    tv = kdcl_wg_sum(tv, s1);
    if (lid == 0) {
        const float nv = nvalid[0];
        const float m = nv > 0.0f ? tv / nv : 0.0f;
        out[0] = m;
        out[1] = m;
    }
}
