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
 * jsd_rows: one work-group of WG items per row b (WG = 256 on GPUs; 1 on
 * CPU devices, which run a work-group as a loop over its items: see
 * jsd.c).  Columns are taken in chunks of VW floats: VW = 16 on CPU
 * devices, whose OpenCL compilers vectorise explicit vector types but
 * not the loop around work-items that holds a column loop; 1 on GPUs.
 * On CPUs item i owns one contiguous block of chunks (with WG = 1, the
 * row), so that the row streams in order; on GPUs item i takes chunks
 * i, i + WG, ... so that loads coalesce.  Item 0 also takes the last,
 * partial chunk.
 *   pass 1: read both rows of logits once from memory: the maxima over
 *           the item's chunks, then (from cache) exp against those maxima,
 *           summed and kept: the student's in the gradient row, the
 *           teacher's in `cache`, a __local copy of the row used where
 *           local memory is ordinary memory and the row fits (see
 *           `cached`); merge the (max, sum) pairs into both log-sum-exps.
 *   pass 2: from cache: p and q are the kept exps times one per-item
 *           factor, no new exp; one log per element for log M; sum
 *           KL(p || M) and S = KL(q || M), keep h = q r.  KLF writes its
 *           gradient here and stops.
 *   pass 3: dL/dz_s = c (h - q S), from cache, over the kept exps.
 * Without the local copy p costs one exp in pass 2, h lives in the
 * gradient row and q costs one exp in pass 3.  Without a gradient, q and p
 * are exps in pass 2 and nothing is stored.
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
              const float gscale, const int has_labels, const int want_grad,
              const int cached, __local float *cache)
{
    __local float2 s2[WG];
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)V;
    const int nfull = V / VW, rem = V - nfull * VW;
#if BLOCKED
    const int per = (nfull + WG - 1) / WG;
    const int k0 = min(lid * per, nfull);
    const int cnt = min(k0 + per, nfull) - k0, step = 1;
#else
    const int k0 = lid, step = WG;
    const int cnt = lid < nfull ? (nfull - lid + WG - 1) / WG : 0;
#endif
    /* item 0 also takes the partial chunk */
    const int tail = lid == 0 && rem;
    const int fast = want_grad && cached;
    struct row r;
    r.s = zs + base;
    r.t = zt + base;
    r.g = grad + (want_grad ? base : 0);
    r.cache = cache;
    r.inv_t = inv_t;
    r.wp = wp;
    r.wq = wq;
    r.k0 = k0;
    r.cnt = cnt;
    r.step = step;
    r.nfull = nfull;
    r.rem = rem;
    r.tail = tail;

    if (has_labels && labels[b] == -100) {
        if (want_grad) {
            for (int j = 0; j < cnt; j++)
                VSTORE_G((floatv)0.0f, k0 + j * step, r.g);
            if (tail)
                st_g((floatv)0.0f, r.g, nfull, rem);
        }
        if (lid == 0) {
            rows[2 * b] = 0.0f;
            rows[2 * b + 1] = 0.0f;
        }
        return;
    }

    /* pass 1a: the item's maxima (pass 1b rereads its chunks from cache);
       T > 0: the max of z / T is the max of z, over T */
    {
        const float2 m = row_maxima(r.s, r.t, k0, cnt, step, nfull, rem, tail);
        r.ms = m.x * inv_t;
        r.mt = m.y * inv_t;
    }

    /* pass 1b */
    floatv vzs = 0.0f, vzt = 0.0f;
    if (fast)
        loop1(&r, 1, 1, &vzs, &vzt);
    else
        loop1(&r, want_grad, cached, &vzs, &vzt);
    r.lse_s = kdcl_wg_lse(r.ms, hsum(vzs), s2);
    r.lse_t = kdcl_wg_lse(r.mt, hsum(vzt), s2);
    /* a kept exp times its item's factor is the probability */
    r.fs = exp(r.ms - r.lse_s);
    r.ft = exp(r.mt - r.lse_t);
    {
        const float nv = nvalid[0];
        r.c = nv > 0.0f ? gscale / nv : 0.0f;
    }

    /* pass 2 */
    floatv acc_p = 0.0f, acc_q = 0.0f;
    if (fast)
        loop2(&r, 1, 1, &acc_p, &acc_q);
    else
        loop2(&r, want_grad, cached, &acc_p, &acc_q);
    const float kl_p = kdcl_wg_sum(hsum(acc_p), s1);
    r.sum_h = kdcl_wg_sum(hsum(acc_q), s1);
    if (lid == 0) {
        rows[2 * b] = kl_p;
        rows[2 * b + 1] = r.sum_h;
    }

#if MODE != MODE_KLF
    /* pass 3 */
    if (fast)
        loop3(&r, 1);
    else if (want_grad)
        loop3(&r, cached);
#endif
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
