/*
 * plugins/hinton/hinton.cl - Hinton et al. 2015 KD loss, forward and
 * backward fused (LOSSES.md `hinton`).
 *
 * hinton_rows: one work-group of WG items per row b.  Pass 1 reads the
 * row of student and teacher logits once and keeps online (max, sum)
 * normalisers for z_s/T, z_t/T and (for the CE term) z_s.  Pass 2 reads
 * the row again (from cache), writes the gradient and accumulates
 * KL(p_t || p_s) = sum p_t ((a - lse_t) - (b - lse_s)), which is better
 * conditioned than the one-pass identity.  Item i handles columns
 * i, i + WG, ... so that a work-group's loads are contiguous.
 * rows[2b] = KL_b, rows[2b + 1] = CE_b.
 *
 * hinton_finish: one work-group sums the per-row values in a fixed order
 * (deterministic) and writes loss, ce, kd.
 */

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void hinton_rows(__global const float *restrict zs,
                 __global const float *restrict zt,
                 __global const int *restrict labels,
                 __global float *restrict grad,
                 __global float *restrict rows,
                 const int C, const float inv_t, const float w_ce,
                 const float w_kd, const int want_ce, const int want_grad)
{
    __local float2 s2[WG];
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)C;
    __global const float *s = zs + base;
    __global const float *t = zt + base;

    float ms = -INFINITY, zs_ = 0.0f; /* z_s / T */
    float mt = -INFINITY, zt_ = 0.0f; /* z_t / T */
    float mu = -INFINITY, zu = 0.0f;  /* z_s, for CE */
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c], tv = t[c];
        kdcl_lse_add(sv * inv_t, &ms, &zs_);
        kdcl_lse_add(tv * inv_t, &mt, &zt_);
        if (want_ce)
            kdcl_lse_add(sv, &mu, &zu);
    }
    const float lse_s = kdcl_wg_lse(ms, zs_, s2);
    const float lse_t = kdcl_wg_lse(mt, zt_, s2);
    const float lse_u = want_ce ? kdcl_wg_lse(mu, zu, s2) : 0.0f;
    const int y = want_ce ? labels[b] : -1;

    float kl = 0.0f;
    __global float *g = grad + (want_grad ? base : 0);
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c], tv = t[c];
        const float lps = sv * inv_t - lse_s; /* log p_s */
        const float lpt = tv * inv_t - lse_t; /* log p_t */
        const float pt = exp(lpt);
        kl += pt * (lpt - lps);
        if (want_grad) {
            float d = w_kd * (exp(lps) - pt);
            if (want_ce)
                d += w_ce * (exp(sv - lse_u) - (c == y ? 1.0f : 0.0f));
            g[c] = d;
        }
    }
    kl = kdcl_wg_sum(kl, s1);
    if (lid == 0) {
        rows[2 * b] = kl;
        rows[2 * b + 1] = want_ce ? lse_u - s[y] : 0.0f;
    }
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void hinton_finish(__global const float *restrict rows,
                   __global float *restrict out, const int B,
                   const float t2, const float alpha, const int has_ce)
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
