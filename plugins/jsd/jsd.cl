/*
 * plugins/jsd/jsd.cl - generalised Jensen-Shannon divergence between the
 * tempered teacher and student softmaxes (LOSSES.md `jsd`), forward and
 * backward fused.  p = softmax(z_t / T), q = softmax(z_s / T),
 * M = beta p + (1 - beta) q.  MODE (a build option) picks the formula:
 *   MODE_KLF (beta = 0):  KL(p || q),      dL/dz_s = (q - p) / T
 *   MODE_KLR (beta = 1):  KL(q || p),      dL/dz_s = q (r - S) / T,
 *                         r = log q - log p, S = KL(q || p)
 *   MODE_MIX (otherwise): beta KL(p || M) + (1 - beta) KL(q || M),
 *                         dL/dz_s = (1 - beta) q (r - S) / T,
 *                         r = log q - log M, S = KL(q || M)
 * each divided by the number of valid rows (labels != -100).
 *
 * jsd_rows: one work-group per row b running the passes of
 * plugins/common/kdcl_rows.cl (run_row), which describes them; pass 2 is
 * this file's: from the kept exps (p and q are a kept exp times its
 * block's factor, no new exp), one log per element for log M; sum
 * KL(p || M) and S = KL(q || M), keep h = q r.  KLF writes its gradient
 * there and has no pass 3.
 * rows[2b] = KL(p || M)_b, rows[2b + 1] = KL(q || M)_b (0 for a masked row).
 *
 * jsd_count: one work-group counts the rows whose label is not -100.
 * jsd_finish: one work-group sums the per-row values in a fixed order
 * (deterministic) and writes loss, kl_teacher, kl_student.
 */

#define MODE_KLF 0
#define MODE_KLR 1
#define MODE_MIX 2

/* Pass 2 on chunk k: the loss terms of the lanes in live. */
void pass2(const struct row *r, int k, int n, intv live,
           const int want_grad, const int cached, floatv *acc_p,
           floatv *acc_q)
{
    const floatv lq = ld_g(r->s, k, n, 0.0f) * r->inv_t - r->lse_s;
    const floatv lp = ld_g(r->t, k, n, 0.0f) * r->inv_t - r->lse_t;
    const floatv q = want_grad ? ld_g(r->g, k, n, 0.0f) * r->fs : exp_neg(lq);
    const floatv p = cached ? ld_l(r->cache, k, n) * r->ft : exp_neg(lp);
#if MODE == MODE_KLF
    *acc_p += select((floatv)0.0f, p * (lp - lq), live);
    if (want_grad)
        st_g(r->c * (q - p), r->g, k, n);
#else
#if MODE == MODE_KLR
    const floatv lm = lp;
#else
    /* M < FLT_MIN only where p, q < FLT_MIN / min(beta, 1 - beta): such
       terms vanish in float, and the clamp keeps them finite */
    const floatv lm = log_pos(fmax(r->wp * p + r->wq * q, FLT_MIN));
    *acc_p += select((floatv)0.0f, p * (lp - lm), live);
#endif
    const floatv h = q * (lq - lm);
    *acc_q += select((floatv)0.0f, h, live);
    if (want_grad) {
        if (cached)
            st_l(h, r->cache, k, n);
        else
            st_g(h, r->g, k, n);
    }
#endif
}

/*
 * zs, zt: logits [B,V]; labels: [B] or NULL; grad: [B,V] or NULL;
 * rows: [2B]; nvalid: [1], the number of valid rows; gscale: the
 * gradient's factor before the division by nvalid; cache: V floats when
 * cached, else unused.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void jsd_rows(__global const float *restrict zs,
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
    const int skip = has_labels && labels[b] == -100;
    float sums[2];
    const int done = run_row(zs, zt, grad, cache, b, V, inv_t, wp, wq,
                             gscale, nvalid[0], skip, want_grad, cached,
                             MODE != MODE_KLF, s2, s1, sums);
    if (get_local_id(0) == 0) {
        rows[2 * b] = done ? sums[0] : 0.0f;
        rows[2 * b + 1] = done ? sums[1] : 0.0f;
    }
}

/* nvalid[0] = the number of labels that are not -100. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void jsd_count(__global const int *restrict labels,
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

/* out[0] = loss, out[1] = kl_teacher, out[2] = kl_student (row means). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void jsd_finish(__global const float *restrict rows,
                __global const float *restrict nvalid,
                __global float *restrict out, const int B, const float w_p,
                const float w_q)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float kp = 0.0f, kq = 0.0f;
    for (int b = lid; b < B; b += WG) {
        kp += rows[2 * b];
        kq += rows[2 * b + 1];
    }
    kp = kdcl_wg_sum(kp, s1);
    kq = kdcl_wg_sum(kq, s1);
    if (lid == 0) {
        const float nv = nvalid[0];
        const float mp = nv > 0.0f ? kp / nv : 0.0f;
        const float mq = nv > 0.0f ? kq / nv : 0.0f;
        out[0] = w_p * mp + w_q * mq;
        out[1] = mp;
        out[2] = mq;
    }
}
