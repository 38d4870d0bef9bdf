/*
 * plugins/multiteacher/multiteacher.cl - multi-teacher KD (survey eq.
 * 3.4.2.1), forward and backward fused (LOSSES.md `multiteacher`):
 *   L_KD = T^2 (1/B) sum_b sum_m w_bm KL(softmax_T(z_m,b) || softmax_T(z_s,b))
 * with w_bm = 1/M (uniform) or softmax over m of -CE(z_m,b, y_b)
 * (confidence; constants).  Since sum_m w_bm = 1 the gradient is
 *   dL/dz_s = alpha (softmax(z_s) - onehot(y)) / B
 *           + (1 - alpha) T / B (p_s - sum_m w_bm p_m).
 *
 * The teachers are separate tensors, so a launch takes up to MT_K = 4 of
 * them as separate arguments (t0 .. t3; unused ones repeat t0, unread).
 *
 * mt_rows: one work-group of WG items per row b, for teachers m0 ..
 * m0 + nk - 1 of M.  Pass 1 reads the row of the student and of each of
 * those teachers once, keeping online (max, sum) normalisers of z_s/T, z_s
 * (CE), z_m/T and, for confidence weights computed here, z_m; one tree
 * reduces all of them together (mt_wg_lse).  Pass 2
 * reads them again (from cache), accumulates
 *   sum_m w_bm KL_bm = sum_c sum_m w_bm p_m,c (log p_m,c - log p_s,c)
 * and writes the gradient once.  With M <= MT_K one launch does all
 * (m0 = 0, nk = M).  With more teachers the launches run in order over
 * chunks of MT_K: the first writes the gradient and rows[2b], later ones
 * subtract their w_bm p_m from the gradient and add to rows[2b]; the
 * confidence weights then come from ce[b * M + m], made beforehand by
 * mt_ce.  Item i handles columns i, i + WG, ... (contiguous loads).
 * rows[2b] = sum_m w_bm KL_bm, rows[2b + 1] = CE of the student.
 *
 * mt_ce: one work-group per row; ce[b * M + m] = CE(z_m,b, y_b) of one
 * teacher (untempered).
 *
 * mt_finish: one work-group sums the per-row values in a fixed order
 * (deterministic) and writes loss, ce, kd.
 */

#define MT_K 4
/* Normaliser slots per item: teachers' z/T, teachers' z (confidence
   weights), the student's z/T and z (CE). */
#define MT_NS (2 * MT_K + 2)
#define MT_SLOT_S (2 * MT_K)
#define MT_SLOT_U (2 * MT_K + 1)

__global const float *mt_teacher(int m, __global const float *t0,
                                 __global const float *t1,
                                 __global const float *t2,
                                 __global const float *t3)
{
    return m == 0 ? t0 : m == 1 ? t1 : m == 2 ? t2 : t3;
}

#define MT_T(m) mt_teacher((m), t0, t1, t2, t3)

/*
 * Log-sum-exp over the work-group of every slot of (am, az) at once, in
 * place: one tree of log2(WG) steps (fixed order) for all slots, so the
 * barriers sit in one uniform loop.  sm, sz hold MT_NS * WG floats.
 */
void mt_wg_lse(float *am, float *az, __local float *sm, __local float *sz)
{
    const int lid = get_local_id(0);
    for (int j = 0; j < MT_NS; j++) {
        sm[j * WG + lid] = am[j];
        sz[j * WG + lid] = az[j];
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int n = WG / 2; n > 0; n >>= 1) {
        if (lid < n) {
            for (int j = 0; j < MT_NS; j++) {
                float m = sm[j * WG + lid], z = sz[j * WG + lid];
                kdcl_lse_merge(&m, &z, sm[j * WG + lid + n],
                               sz[j * WG + lid + n]);
                sm[j * WG + lid] = m;
                sz[j * WG + lid] = z;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    for (int j = 0; j < MT_NS; j++)
        am[j] = sm[j * WG] + log(sz[j * WG]);
    barrier(CLK_LOCAL_MEM_FENCE);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void mt_rows(__global const float *restrict zs,
             __global const int *restrict labels,
             __global const float *t0, __global const float *t1,
             __global const float *t2, __global const float *t3,
             __global const float *restrict ce,
             __global float *restrict grad, __global float *restrict rows,
             const int C, const float inv_t, const int m0, const int nk,
             const int M, const int confidence, const int ce_in_buf,
             const float w_kd, const float w_ce, const int want_ce,
             const int want_grad)
{
    __local float sm[MT_NS * WG], sz[MT_NS * WG];
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)C;
    __global const float *s = zs + base;
    const bool inline_w = confidence && !ce_in_buf;
    const int y = (want_ce || confidence) ? labels[b] : 0;

    /* Pass 1: online normalisers (see MT_NS); unused slots stay empty. */
    float am[MT_NS], az[MT_NS];
    for (int j = 0; j < MT_NS; j++) {
        am[j] = -INFINITY;
        az[j] = 0.0f;
    }
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c];
        kdcl_lse_add(sv * inv_t, &am[MT_SLOT_S], &az[MT_SLOT_S]);
        if (want_ce)
            kdcl_lse_add(sv, &am[MT_SLOT_U], &az[MT_SLOT_U]);
        for (int m = 0; m < MT_K; m++) {
            if (m < nk) {
                const float tv = MT_T(m)[base + c];
                kdcl_lse_add(tv * inv_t, &am[m], &az[m]);
                if (inline_w)
                    kdcl_lse_add(tv, &am[MT_K + m], &az[MT_K + m]);
            }
        }
    }
    mt_wg_lse(am, az, sm, sz);
    const float lse_s = am[MT_SLOT_S], lse_u = am[MT_SLOT_U];

    /* The weights of this chunk's teachers. */
    float w[MT_K];
    if (!confidence) {
        for (int m = 0; m < MT_K; m++)
            w[m] = 1.0f / (float)M;
    } else if (inline_w) {
        /* -CE(z_m, y) = z_m,y - lse(z_m); softmax over the nk = M */
        float hi = -INFINITY, sum = 0.0f;
        for (int m = 0; m < MT_K; m++) {
            w[m] = m < nk ? MT_T(m)[base + y] - am[MT_K + m] : -INFINITY;
            hi = fmax(hi, w[m]);
        }
        for (int m = 0; m < MT_K; m++)
            sum += m < nk ? exp(w[m] - hi) : 0.0f;
        for (int m = 0; m < MT_K; m++)
            w[m] = m < nk ? exp(w[m] - hi) / sum : 0.0f;
    } else {
        __global const float *cb = ce + (size_t)b * (size_t)M;
        float hi = -INFINITY, sum = 0.0f;
        for (int m = 0; m < M; m++)
            hi = fmax(hi, -cb[m]);
        for (int m = 0; m < M; m++)
            sum += exp(-cb[m] - hi);
        for (int m = 0; m < MT_K; m++)
            w[m] = m < nk ? exp(-cb[m0 + m] - hi) / sum : 0.0f;
    }

    /* Pass 2: KL and the gradient. */
    float kl = 0.0f;
    __global float *g = grad + (want_grad ? base : 0);
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c];
        const float lps = sv * inv_t - lse_s;
        float pbar = 0.0f;
        for (int m = 0; m < MT_K; m++) {
            if (m < nk) {
                const float lpm = MT_T(m)[base + c] * inv_t - am[m];
                const float wp = w[m] * exp(lpm);
                pbar += wp;
                kl += wp * (lpm - lps);
            }
        }
        if (want_grad) {
            if (m0 == 0) {
                float d = w_kd * (exp(lps) - pbar);
                if (want_ce)
                    d += w_ce * (exp(sv - lse_u) - (c == y ? 1.0f : 0.0f));
                g[c] = d;
            } else {
                g[c] -= w_kd * pbar;
            }
        }
    }
    kl = kdcl_wg_sum(kl, s1);
    if (lid == 0) {
        if (m0 == 0) {
            rows[2 * b] = kl;
            rows[2 * b + 1] = want_ce ? lse_u - s[y] : 0.0f;
        } else {
            rows[2 * b] += kl;
        }
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void mt_ce(__global const float *restrict zt,
           __global const int *restrict labels, __global float *restrict ce,
           const int C, const int m, const int M)
{
    __local float2 s2[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float *t = zt + (size_t)b * (size_t)C;
    float mx = -INFINITY, sx = 0.0f;
    for (int c = lid; c < C; c += WG)
        kdcl_lse_add(t[c], &mx, &sx);
    const float lse = kdcl_wg_lse(mx, sx, s2);
    if (lid == 0)
        ce[(size_t)b * (size_t)M + (size_t)m] = lse - t[labels[b]];
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void mt_finish(__global const float *restrict rows,
               __global float *restrict out, const int B, const float t2,
               const float alpha, const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float kl = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        kl += rows[2 * b];
        ce += rows[2 * b + 1];
    }
    kl = kdcl_wg_sum(kl, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float kd = t2 * kl / (float)B;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kd : kd;
        out[1] = cem;
        out[2] = kd;
    }
}
