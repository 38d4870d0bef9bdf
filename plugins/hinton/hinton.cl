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

/*
 * hinton_rows_vec: the same computation for CPU devices, one work-item per
 * row and no barriers.  A CPU driver runs a work-group as a loop over its
 * items, so the work-group layout above leaves every item striding through
 * the row one scalar at a time; here each item walks its row contiguously
 * in float16 vectors (SIMD exp) and a scalar tail.  Exp is the cost on a
 * CPU, so the row maxima come first (pass 0, no exp) and then
 *   e_s = native_exp(z_s/T - m_s), e_t = native_exp(z_t/T - m_t),
 *   native_exp(z_s - m_u) = e_s^T when T is an integer (m_u = T m_s),
 * which needs two exps per element and pass (four in all, not six).
 */
#define VW 16
typedef float16 floatv;
#define VLOAD(i, p) vload16((i), (p))
#define VSTORE(v, i, p) vstore16((v), (i), (p))

float max_lanes(floatv v)
{
    float a[VW], m = -INFINITY;
    VSTORE(v, 0, a);
    for (int i = 0; i < VW; i++)
        m = fmax(m, a[i]);
    return m;
}

float sum_lanes(floatv v)
{
    float a[VW], s = 0.0f;
    VSTORE(v, 0, a);
    for (int i = 0; i < VW; i++)
        s += a[i];
    return s;
}

/* x^n for an integer n >= 1, by squaring (n has at most 6 bits here). */
floatv pown_v(floatv x, int n)
{
    floatv r = 1.0f;
    while (n) {
        if (n & 1)
            r *= x;
        x *= x;
        n >>= 1;
    }
    return r;
}

float pown_s(float x, int n)
{
    float r = 1.0f;
    while (n) {
        if (n & 1)
            r *= x;
        x *= x;
        n >>= 1;
    }
    return r;
}

/* t_int: T when T is an integer in [1, 63], else 0 (then exp is used). */
__kernel void hinton_rows_vec(__global const float *restrict zs,
                              __global const float *restrict zt,
                              __global const int *restrict labels,
                              __global float *restrict grad,
                              __global float *restrict rows, const int B,
                              const int C, const float inv_t,
                              const float w_ce, const float w_kd,
                              const int want_ce, const int want_grad,
                              const int t_int, __local float *cache,
                              const int cached)
{
    const int b = get_global_id(0);
    if (b >= B)
        return;
    const size_t base = (size_t)b * (size_t)C;
    __global const float *s = zs + base;
    __global const float *t = zt + base;
    const int nv = C / VW, tail = nv * VW;
    const float T = 1.0f / inv_t;

    /* Pass 0: row maxima of z_s and z_t. */
    floatv msv = -INFINITY, mtv = -INFINITY;
    for (int i = 0; i < nv; i++) {
        /* a compare and a blend: fmax's NaN handling costs twice that */
        const floatv sv = VLOAD(i, s), tv = VLOAD(i, t);
        msv = sv > msv ? sv : msv;
        mtv = tv > mtv ? tv : mtv;
    }
    float mu = max_lanes(msv), mtr = max_lanes(mtv);
    for (int c = tail; c < C; c++) {
        mu = fmax(mu, s[c]);
        mtr = fmax(mtr, t[c]);
    }
    const float ms = mu * inv_t, mt = mtr * inv_t;

    /* Pass 1: normalisers. */
    floatv zsv = 0.0f, ztv = 0.0f, zuv = 0.0f;
    __global float *g = grad + (want_grad ? base : 0);
    for (int i = 0; i < nv; i++) {
        const floatv sv = VLOAD(i, s);
        const floatv es = native_exp(sv * inv_t - ms);
        const floatv et = native_exp(VLOAD(i, t) * inv_t - mt);
        zsv += es;
        ztv += et;
        if (want_grad)
            VSTORE(et, i, g); /* reread from cache in pass 2 */
        if (cached)
            VSTORE(es, i, cache); /* saves pass 2 an exp */
        if (want_ce)
            zuv += t_int ? pown_v(es, t_int) : native_exp(sv - mu);
    }
    float zs_ = sum_lanes(zsv), zt_ = sum_lanes(ztv), zu = sum_lanes(zuv);
    for (int c = tail; c < C; c++) {
        const float es = native_exp(s[c] * inv_t - ms);
        zs_ += es;
        zt_ += native_exp(t[c] * inv_t - mt);
        if (want_ce)
            zu += t_int ? pown_s(es, t_int) : native_exp(s[c] - mu);
    }
    const float lzs = log(zs_), lzt = log(zt_);
    const float lse_s = ms + lzs, lse_t = mt + lzt, lse_u = mu + log(zu);
    const float rzs = 1.0f / zs_, rzt = 1.0f / zt_, rzu = 1.0f / zu;
    const int y = want_ce ? labels[b] : -1;

    /* Pass 2: KL and the gradient. */
    floatv klv = 0.0f;
    for (int i = 0; i < nv; i++) {
        const floatv sv = VLOAD(i, s), tv = VLOAD(i, t);
        const floatv xs = sv * inv_t - ms, xt = tv * inv_t - mt;
        const floatv es = cached ? VLOAD(i, cache) : native_exp(xs);
        const floatv pt = (want_grad ? VLOAD(i, g) : native_exp(xt)) * rzt;
        klv += pt * ((xt - lzt) - (xs - lzs));
        if (want_grad) {
            floatv d = w_kd * (es * rzs - pt);
            if (want_ce)
                d += w_ce * rzu * (t_int ? pown_v(es, t_int) : native_exp(sv - mu));
            VSTORE(d, i, g);
        }
    }
    float kl = 0.0f;
    for (int c = tail; c < C; c++) {
        const float xs = s[c] * inv_t - ms, xt = t[c] * inv_t - mt;
        const float es = native_exp(xs), pt = native_exp(xt) * rzt;
        kl += pt * ((xt - lzt) - (xs - lzs));
        if (want_grad) {
            float d = w_kd * (es * rzs - pt);
            if (want_ce)
                d += w_ce * rzu * (t_int ? pown_s(es, t_int) : native_exp(s[c] - mu));
            g[c] = d;
        }
    }
    if (want_grad && want_ce)
        g[y] -= w_ce; /* the one-hot part of the CE gradient */
    (void)T;
    rows[2 * b] = sum_lanes(klv) + kl;
    rows[2 * b + 1] = want_ce ? lse_u - s[y] : 0.0f;
}
