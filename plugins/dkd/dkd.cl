/*
 * plugins/dkd/dkd.cl - decoupled KD (Zhao et al. 2022), forward and
 * backward fused (LOSSES.md `dkd`).
 *
 * dkd_rows: one work-group of WG items per row b, label y = labels[b].
 * Pass 1 reads the row of student and teacher logits once and keeps online
 * (max, sum) normalisers of z/T over the non-target classes c != y for
 * both, and of the untempered student logits for the CE term.  With
 * d = z_y/T - lse_nt,
 *   log p_y = -softplus(-d),   log (1 - p_y) = -softplus(d)
 * are both accurate in the log domain (no 1 - p or lse - lse_nt
 * cancellation).  Pass 2 reads
 * the row again (from cache), accumulates
 *   NCKD_b = sum_{c != y} q_t,c (log q_t,c - log q_s,c),
 *   q_c = softmax over c != y of z/T = exp(z_c/T - lse_nt),
 * and writes the gradient once:
 *   c == y: w_kd * tckd_w * (p_s,y - p_t,y)
 *   c != y: w_kd * (tckd_w * (p_t,y - p_s,y) + nckd_w) * q_s,c
 *           - w_kd * nckd_w * q_t,c
 * plus w_ce * (softmax(z_s) - onehot(y)), with w_kd = (1 - alpha) T / B
 * and w_ce = alpha / B.  (The TCKD part uses p_s,c = (1 - p_s,y) q_s,c.)
 * Item i handles columns i, i + WG, ... (contiguous loads per group).
 * rows[3b] = TCKD_b (binary KL), rows[3b + 1] = NCKD_b, rows[3b + 2] = CE_b.
 *
 * dkd_finish: one work-group sums the per-row values in a fixed order
 * (deterministic) and writes loss, ce, kd, tckd, nckd.
 */

/* log(1 + exp(x)), without overflow or cancellation. */
float dkd_softplus(float x)
{
    return x > 0.0f ? x + log1p(exp(-x)) : log1p(exp(x));
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dkd_rows(__global const float *restrict zs,
              __global const float *restrict zt,
              __global const int *restrict labels,
              __global float *restrict grad,
              __global float *restrict rows,
              const int C, const float inv_t, const float w_ce,
              const float w_kd, const float tckd_w, const float nckd_w,
              const int want_grad)
{
    __local float2 s2[WG];
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)C;
    __global const float *s = zs + base;
    __global const float *t = zt + base;
    const int y = labels[b];

    float ms = -INFINITY, zs_ = 0.0f; /* z_s / T over c != y */
    float mt = -INFINITY, zt_ = 0.0f; /* z_t / T over c != y */
    float mu = -INFINITY, zu = 0.0f;  /* z_s, all c, for CE */
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c], tv = t[c];
        if (c != y) {
            kdcl_lse_add(sv * inv_t, &ms, &zs_);
            kdcl_lse_add(tv * inv_t, &mt, &zt_);
        }
        kdcl_lse_add(sv, &mu, &zu);
    }
    const float nt_s = kdcl_wg_lse(ms, zs_, s2);
    const float nt_t = kdcl_wg_lse(mt, zt_, s2);
    const float lse_u = kdcl_wg_lse(mu, zu, s2);
    const float sy = s[y], ty = t[y];
    /* With d = z_y/T - lse_nt: log p_y = -softplus(-d) and
       log (1 - p_y) = -softplus(d), each to full relative accuracy. */
    const float ds = sy * inv_t - nt_s, dt = ty * inv_t - nt_t;
    const float lps_y = -dkd_softplus(-ds), lpt_y = -dkd_softplus(-dt);
    const float ps_y = exp(lps_y), pt_y = exp(lpt_y);

    float nckd = 0.0f;
    __global float *g = grad + (want_grad ? base : 0);
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c];
        float d = 0.0f;
        if (c != y) {
            const float lqs = sv * inv_t - nt_s, lqt = t[c] * inv_t - nt_t;
            const float qs = exp(lqs), qt = exp(lqt);
            nckd += qt * (lqt - lqs);
            d = w_kd * ((tckd_w * (pt_y - ps_y) + nckd_w) * qs
                        - nckd_w * qt);
        } else {
            d = w_kd * tckd_w * (ps_y - pt_y);
        }
        if (want_grad)
            g[c] = d + w_ce * (exp(sv - lse_u) - (c == y ? 1.0f : 0.0f));
    }
    nckd = kdcl_wg_sum(nckd, s1);
    if (lid == 0) {
        /* KL([p_t,y, 1 - p_t,y] || [p_s,y, 1 - p_s,y]); with C = 1 the
           second entries are 0 on both sides and contribute 0 log 0 = 0. */
        float tckd = pt_y * (lpt_y - lps_y);
        if (C > 1) {
            const float l1s = -dkd_softplus(ds), l1t = -dkd_softplus(dt);
            tckd += exp(l1t) * (l1t - l1s);
        }
        rows[3 * b] = tckd;
        rows[3 * b + 1] = nckd;
        rows[3 * b + 2] = lse_u - sy;
    }
}

/* out[0] = loss, out[1] = ce, out[2] = kd, out[3] = tckd, out[4] = nckd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dkd_finish(__global const float *restrict rows,
                __global float *restrict out, const int B, const float t2,
                const float alpha, const float tckd_w, const float nckd_w)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float tc = 0.0f, nc = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        tc += rows[3 * b];
        nc += rows[3 * b + 1];
        ce += rows[3 * b + 2];
    }
    tc = kdcl_wg_sum(tc, s1);
    nc = kdcl_wg_sum(nc, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float tckd = t2 * tc / (float)B, nckd = t2 * nc / (float)B;
        const float kd = tckd_w * tckd + nckd_w * nckd;
        const float cem = ce / (float)B;
        out[0] = alpha * cem + (1.0f - alpha) * kd;
        out[1] = cem;
        out[2] = kd;
        out[3] = tckd;
        out[4] = nckd;
    }
}
