/*
 * plugins/dist/dist.cl - DIST (Huang et al. 2022), LOSSES.md `dist`:
 * Pearson correlation between student and teacher probabilities, across
 * classes per row (inter) and across the batch per class (intra), and its
 * gradient.  The intra term couples rows, so the work is four launches,
 * each deterministic (fixed-order sums, no atomics):
 *
 * dist_lse: one work-group of WG items per row b; one pass over the row
 * with online (max, sum) normalisers of z_s/T, z_t/T and (for the CE term)
 * z_s.  st[5b..5b+3] = lse_s, lse_t, lse(z_s), CE_b.
 *
 * dist_cols: one work-item per class c (WG items per group, consecutive
 * classes per group, so each row's loads are contiguous).  Item c walks the
 * rows b = 0, 1, ... in order, forms y_s = exp(z_s/T - lse_s) and y_t, and
 * keeps Welford running means and centred co-moments (one pass, no
 * E[x^2] - E[x]^2 cancellation).  It writes, structure-of-arrays,
 *   col[c] = mean_b y_s,  col[C + c] = mean_b y_t,
 *   col[2C + c], col[3C + c] = (u, v) with dr_c/dy_s[b,c] = u y_t' - v y_s'
 *   (primes: centred over b), col[4C + c] = 1 - r_c (r_c the column's
 *   Pearson; 1 - r is kept, not r, so that the sums lose less).
 *
 * dist_grad: one work-group per row b.  Pass 1 reads the row once and
 * reduces the row's centred products (inter Pearson r_b; the row mean of a
 * softmax is exactly 1/C) and, for the gradient, sum_k y_s,k G_k, where
 *   G_k = dL_KD/dy_s[b,k] = A (u_b y_t,k' - v_b y_s,k')
 *                         + D (u_k y_t[b,k]'' - v_k y_s[b,k]''),
 *   A = -T^2 inter_w / B,  D = -T^2 intra_w / C.
 * Pass 2 reads the row again (from cache) and writes the gradient once,
 * through the softmax: (1 - alpha)/T * y_s,k (G_k - sum_j y_s,j G_j),
 * plus alpha/B (softmax(z_s) - onehot(y)) when labels are given.
 * st[5b + 4] = 1 - r_b.
 *
 * dist_finish: one work-group sums 1 - r_b, 1 - r_c and CE_b in a fixed
 * order and writes loss, ce, kd, inter, intra.
 *
 * Pearson: r = S_ab / max(|a'| |b'|, EPS); where the max picks |a'| |b'|,
 * dr/da = b' / (|a'| |b'|) - r a' / |a'|^2, else dr/da = b' / EPS.
 */

#define EPS 1e-8f

/* (u, v) of dr/da = u b' - v a' for r = sab / max(sqrt(saa sbb), EPS). */
float dist_pearson(float sab, float saa, float sbb, float *u, float *v)
{
    const float den = sqrt(saa) * sqrt(sbb);
    if (den > EPS) {
        const float r = sab / den;
        *u = 1.0f / den;
        *v = r / saa;
        return r;
    }
    *u = 1.0f / EPS;
    *v = 0.0f;
    return sab / EPS;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dist_lse(__global const float *restrict zs,
              __global const float *restrict zt,
              __global const int *restrict labels,
              __global float *restrict st, const int C, const float inv_t,
              const int want_ce)
{
    __local float2 s2[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)C;
    __global const float *s = zs + base;
    __global const float *t = zt + base;
    float ms = -INFINITY, ss = 0.0f, mt = -INFINITY, sst = 0.0f;
    float mu = -INFINITY, su = 0.0f;
    for (int c = lid; c < C; c += WG) {
        const float sv = s[c];
        kdcl_lse_add(sv * inv_t, &ms, &ss);
        kdcl_lse_add(t[c] * inv_t, &mt, &sst);
        if (want_ce)
            kdcl_lse_add(sv, &mu, &su);
    }
    const float lse_s = kdcl_wg_lse(ms, ss, s2);
    const float lse_t = kdcl_wg_lse(mt, sst, s2);
    const float lse_u = kdcl_wg_lse(mu, su, s2); /* -inf without CE */
    if (lid == 0) {
        st[5 * b] = lse_s;
        st[5 * b + 1] = lse_t;
        st[5 * b + 2] = lse_u;
        st[5 * b + 3] = want_ce ? lse_u - s[labels[b]] : 0.0f;
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dist_cols(__global const float *restrict zs,
               __global const float *restrict zt,
               __global const float *restrict st,
               __global float *restrict col, const int B, const int C,
               const float inv_t)
{
    const int c = get_global_id(0);
    if (c >= C)
        return;
    float ma = 0.0f, mb = 0.0f, saa = 0.0f, sbb = 0.0f, sab = 0.0f;
    for (int b = 0; b < B; b++) {
        const size_t i = (size_t)b * (size_t)C + (size_t)c;
        const float ya = exp(zs[i] * inv_t - st[5 * b]);
        const float yb = exp(zt[i] * inv_t - st[5 * b + 1]);
        const float inv_n = 1.0f / (float)(b + 1);
        const float da = ya - ma, db = yb - mb;
        ma += da * inv_n;
        mb += db * inv_n;
        saa += da * (ya - ma);
        sbb += db * (yb - mb);
        sab += da * (yb - mb);
    }
    float u, v;
    const float r = dist_pearson(sab, fmax(saa, 0.0f), fmax(sbb, 0.0f), &u,
                                 &v);
    col[c] = ma;
    col[C + c] = mb;
    col[2 * C + c] = u;
    col[3 * C + c] = v;
    col[4 * C + c] = 1.0f - r;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dist_grad(__global const float *restrict zs,
               __global const float *restrict zt,
               __global const int *restrict labels,
               __global const float *restrict col,
               __global float *restrict st, __global float *restrict grad,
               const int C, const float inv_t, const float a_inter,
               const float d_intra, const float w_kd, const float w_ce,
               const int want_ce, const int want_grad)
{
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)C;
    __global const float *s = zs + base;
    __global const float *t = zt + base;
    __global const float *mean_s = col, *mean_t = col + C;
    __global const float *cu = col + 2 * C, *cv = col + 3 * C;
    const float lse_s = st[5 * b], lse_t = st[5 * b + 1];
    const float lse_u = st[5 * b + 2];
    const float inv_c = 1.0f / (float)C;

    float sab = 0.0f, saa = 0.0f, sbb = 0.0f; /* row-centred products */
    float sya = 0.0f, syb = 0.0f, syg = 0.0f; /* sums against y_s */
    for (int c = lid; c < C; c += WG) {
        const float ya = exp(s[c] * inv_t - lse_s);
        const float yb = exp(t[c] * inv_t - lse_t);
        const float a = ya - inv_c, bb = yb - inv_c;
        sab += a * bb;
        saa += a * a;
        sbb += bb * bb;
        if (want_grad) {
            sya += ya * a;
            syb += ya * bb;
            syg += ya * (cu[c] * (yb - mean_t[c]) - cv[c] * (ya - mean_s[c]));
        }
    }
    sab = kdcl_wg_sum(sab, s1);
    saa = kdcl_wg_sum(saa, s1);
    sbb = kdcl_wg_sum(sbb, s1);
    float u, v;
    const float r = dist_pearson(sab, saa, sbb, &u, &v);
    if (lid == 0)
        st[5 * b + 4] = 1.0f - r;
    /* Every item reaches every barrier: PoCL mishandles work-group
       reductions under a branch, even a uniform one. */
    sya = kdcl_wg_sum(sya, s1);
    syb = kdcl_wg_sum(syb, s1);
    syg = kdcl_wg_sum(syg, s1);
    if (want_grad) {
        const float dot = a_inter * (u * syb - v * sya) + d_intra * syg;
        const int y = want_ce ? labels[b] : -1;
        __global float *g = grad + base;
        for (int c = lid; c < C; c += WG) {
            const float sv = s[c];
            const float ya = exp(sv * inv_t - lse_s);
            const float yb = exp(t[c] * inv_t - lse_t);
            const float gk = a_inter * (u * (yb - inv_c) - v * (ya - inv_c))
                             + d_intra * (cu[c] * (yb - mean_t[c])
                                          - cv[c] * (ya - mean_s[c]));
            float d = w_kd * ya * (gk - dot);
            if (want_ce)
                d += w_ce * (exp(sv - lse_u) - (c == y ? 1.0f : 0.0f));
            g[c] = d;
        }
    }
}

/* out[0] = loss, out[1] = ce, out[2] = kd, out[3] = inter, out[4] = intra. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void dist_finish(__global const float *restrict st,
                 __global const float *restrict col,
                 __global float *restrict out, const int B, const int C,
                 const float t2, const float inter_w, const float intra_w,
                 const float alpha, const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float rb = 0.0f, ce = 0.0f, rc = 0.0f;
    for (int b = lid; b < B; b += WG) {
        rb += st[5 * b + 4];
        ce += st[5 * b + 3];
    }
    for (int c = lid; c < C; c += WG)
        rc += col[4 * C + c];
    rb = kdcl_wg_sum(rb, s1);
    ce = kdcl_wg_sum(ce, s1);
    rc = kdcl_wg_sum(rc, s1);
    if (lid == 0) {
        const float inter = rb / (float)B;
        const float intra = rc / (float)C;
        const float kd = t2 * (inter_w * inter + intra_w * intra);
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kd : kd;
        out[1] = cem;
        out[2] = kd;
        out[3] = inter;
        out[4] = intra;
    }
}
