/*
 * plugins/skewkl/skewkl.cl - skew KL divergence (DistiLLM) between the
 * tempered teacher and student softmaxes (LOSSES.md `skewkl`), forward
 * and backward fused.  p = softmax(z_t / T), q = softmax(z_s / T),
 * M = wp p + wq q.  MODE (a build option) picks the formula; with
 * S = sum_i q_i g_i and dL/dz_s,j = q_j (g_j - S) / (T B_valid), where
 * g_i is the derivative of the row's loss in q_i:
 *   MODE_KLF  (lambda = 0, forward): KL(p || q); dL/dz_s = (q - p) / T
 *   MODE_KLR  (lambda = 0, reverse): KL(q || p); g = log q - log p
 *   MODE_ZERO (lambda = 1):          KL(p || p) or KL(q || q): 0
 *   MODE_SFWD (forward, wp = lambda, wq = 1 - lambda): KL(p || M);
 *             g = -wq p / M
 *   MODE_SREV (reverse, wp = 1 - lambda, wq = lambda): KL(q || M);
 *             g = log q - log M - wq q / M   (+1, which cancels in S)
 * each divided by the number of valid rows (labels != -100).
 *
 * skewkl_rows: one work-group per row b running the passes of
 * plugins/common/kdcl_rows.cl (run_row), which describes them; pass 2 is
 * this file's: from the kept exps (p and q are a kept exp times its
 * block's factor, no new exp), one log per element for log M; sum
 * the row's loss and S, keep h = q g.  KLF writes its gradient there and
 * has no pass 3.
 * rows[b] = the row's loss (0 for a masked row).
 *
 * skewkl_count: one work-group counts the rows whose label is not -100.
 * skewkl_finish: one work-group sums the per-row values in a fixed order
 * (deterministic) and writes loss and skew_kl.
 */

#define MODE_KLF 0
#define MODE_KLR 1
#define MODE_ZERO 2
#define MODE_SFWD 3
#define MODE_SREV 4

/* Pass 2 on chunk k: the loss terms and h = q g of the lanes in live. */
void pass2(const struct row *r, int k, int n, intv live,
           const int want_grad, const int cached, floatv *acc_l,
           floatv *acc_h)
{
    const floatv lq = ld_g(r->s, k, n, 0.0f) * r->inv_t - r->lse_s;
    const floatv lp = ld_g(r->t, k, n, 0.0f) * r->inv_t - r->lse_t;
    const floatv q = want_grad ? ld_g(r->g, k, n, 0.0f) * r->fs : exp_neg(lq);
    const floatv p = cached ? ld_l(r->cache, k, n) * r->ft : exp_neg(lp);
#if MODE == MODE_KLF
    *acc_l += select((floatv)0.0f, p * (lp - lq), live);
    if (want_grad)
        st_g(r->c * (q - p), r->g, k, n);
#else
#if MODE == MODE_KLR
    const floatv h = q * (lq - lp);
    *acc_l += select((floatv)0.0f, h, live);
#else
    /* M < FLT_MIN only where p, q < FLT_MIN / min(lambda, 1 - lambda):
       such terms vanish in float, and the clamp keeps them finite */
    const floatv m = fmax(r->wp * p + r->wq * q, FLT_MIN);
    const floatv lm = log_pos(m);
#if MODE == MODE_SFWD
    *acc_l += select((floatv)0.0f, p * (lp - lm), live);
    const floatv h = -r->wq * q * p / m;
#else
    const floatv kl = q * (lq - lm);
    *acc_l += select((floatv)0.0f, kl, live);
    const floatv h = kl - r->wq * q * q / m;
#endif
#endif
    if (want_grad) {
        *acc_h += select((floatv)0.0f, h, live);
        if (cached)
            st_l(h, r->cache, k, n);
        else
            st_g(h, r->g, k, n);
    }
#endif
}

/*
 * zs, zt: logits [B,V]; labels: [B] or NULL; grad: [B,V] or NULL;
 * rows: [B]; nvalid: [1], the number of valid rows; gscale: the
 * gradient's factor before the division by nvalid; cache: V floats when
 * cached, else unused.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void skewkl_rows(__global const float *restrict zs,
                 __global const float *restrict zt,
                 __global const int *restrict labels,
                 __global float *restrict grad,
                 __global float *restrict rows,
                 __global const float *restrict nvalid, const int V,
                 const float inv_t, const float wp, const float wq,
                 const float gscale, const int has_labels,
                 const int want_grad, const int cached,
                 __local float *cache)
{
    __local float2 s2[WG];
    __local float s1[WG];
    const int b = get_group_id(0);
    /* a masked row, or lambda = 1, where M is the first distribution */
    const int skip = MODE == MODE_ZERO || (has_labels && labels[b] == -100);
    float sums[2];
    const int done = run_row(zs, zt, grad, cache, b, V, inv_t, wp, wq,
                             gscale, nvalid[0], skip, want_grad, cached,
                             MODE != MODE_KLF, s2, s1, sums);
    if (get_local_id(0) == 0)
        rows[b] = done ? sums[0] : 0.0f;
}

/* nvalid[0] = the number of labels that are not -100. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void skewkl_count(__global const int *restrict labels,
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

/* out[0] = loss, out[1] = skew_kl (the same: the mean over valid rows). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void skewkl_finish(__global const float *restrict rows,
                   __global const float *restrict nvalid,
                   __global float *restrict out, const int B)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float l = 0.0f;
    for (int b = lid; b < B; b += WG)
        l += rows[b];
    l = kdcl_wg_sum(l, s1);
    if (lid == 0) {
        const float nv = nvalid[0];
        const float m = nv > 0.0f ? l / nv : 0.0f;
        out[0] = m;
        out[1] = m;
    }
}
