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
 * in chunks of VW floats (kdcl_vec.cl: float16 on CPU devices, so SIMD
 * exps) and pads the last chunk.  Exp is the cost on a CPU:
 *   pass 0: the row maxima m_s, m_t of z_s and z_t (no exp);
 *   pass 1: e_s = exp(z_s/T - m_s/T), e_t = exp(z_t/T - m_t/T), summed;
 *           e_t kept in the gradient row, e_s in `cache` (local memory,
 *           ordinary memory on a CPU) when the row fits; the CE term's
 *           exp(z_s - m_s) = e_s^T by squaring when T is an integer
 *           (T_POW, a build option), else an exp of its own;
 *   pass 2: from cache, KL and the gradient: no exp when cached (two per
 *           element in all, three for a non-integer T).
 */
#ifndef T_POW
#define T_POW 0
#endif

/* exp(z_s - m_s) from e = exp(z_s/T - m_s/T) and x = z_s - m_s. */
#define POW_STEP(bit) /* r *= e^bit when T_POW has that bit */  \
    e *= e;                                                                  \
    if (T_POW & (bit))                                                       \
        r *= e;
floatv exp_ce(floatv e, floatv x)
{
#if T_POW
    /* squaring, spelled out: the compiler does not unroll the loop */
    floatv r = 1.0f;
    if (T_POW & 1)
        r *= e;
    POW_STEP(2) POW_STEP(4) POW_STEP(8) POW_STEP(16)
    POW_STEP(32) POW_STEP(64)
    (void)x;
    return r;
#else
    return exp_neg(x);
#endif
}

/* A row of hinton_rows_vec and its normalisers. */
struct hrow {
    __global const float *s, *t;
    __global float *g;
    __local float *cache;
    float inv_t, ms, mt, mu, lzs, lzt, rzs, rzt, rzu, w_ce, w_kd;
};

/* Pass 1 on chunk k (n floats). */
void h_pass1(const struct hrow *r, int k, int n, const int want_ce,
             const int want_grad, const int cached, floatv *zs, floatv *zt,
             floatv *zu)
{
    const floatv sv = ld_g(r->s, k, n, -INFINITY);
    const floatv es = exp_neg(sv * r->inv_t - r->ms);
    const floatv et = exp_neg(ld_g(r->t, k, n, -INFINITY) * r->inv_t - r->mt);
    *zs += es;
    *zt += et;
    if (want_grad)
        st_g(et, r->g, k, n); /* reread in pass 2 */
    if (cached)
        st_l(es, r->cache, k, n);
    if (want_ce)
        *zu += exp_ce(es, sv - r->mu);
}

/* Pass 2 on chunk k (n floats; the KL of the lanes in live). */
void h_pass2(const struct hrow *r, int k, int n, intv live,
             const int want_ce, const int want_grad, const int cached,
             floatv *kl)
{
    const floatv sv = ld_g(r->s, k, n, 0.0f), tv = ld_g(r->t, k, n, 0.0f);
    const floatv xs = sv * r->inv_t - r->ms, xt = tv * r->inv_t - r->mt;
    const floatv es = cached ? ld_l(r->cache, k, n) : exp_neg(xs);
    const floatv et = want_grad ? ld_g(r->g, k, n, 0.0f) : exp_neg(xt);
    const floatv pt = et * r->rzt;
    *kl += select((floatv)0.0f, pt * ((xt - r->lzt) - (xs - r->lzs)), live);
    if (want_grad) {
        floatv d = r->w_kd * (es * r->rzs - pt);
        if (want_ce)
            d += r->w_ce * r->rzu * exp_ce(es, sv - r->mu);
        st_g(d, r->g, k, n);
    }
}

void h_loop1(const struct hrow *r, int nv, int rem, const int want_ce,
             const int want_grad, const int cached, floatv *zs, floatv *zt,
             floatv *zu)
{
    for (int k = 0; k < nv; k++)
        h_pass1(r, k, VW, want_ce, want_grad, cached, zs, zt, zu);
    if (rem)
        h_pass1(r, nv, rem, want_ce, want_grad, cached, zs, zt, zu);
}

void h_loop2(const struct hrow *r, int nv, int rem, const int want_ce,
             const int want_grad, const int cached, floatv *kl)
{
    for (int k = 0; k < nv; k++)
        h_pass2(r, k, VW, (intv)(-1), want_ce, want_grad, cached, kl);
    if (rem)
        h_pass2(r, nv, rem, LANES < rem, want_ce, want_grad, cached, kl);
}

__kernel void hinton_rows_vec(__global const float *restrict zs,
                              __global const float *restrict zt,
                              __global const int *restrict labels,
                              __global float *restrict grad,
                              __global float *restrict rows, const int B,
                              const int C, const float inv_t,
                              const float w_ce, const float w_kd,
                              const int want_ce, const int want_grad,
                              __local float *cache, const int cached)
{
    const int b = get_global_id(0);
    if (b >= B)
        return;
    const size_t base = (size_t)b * (size_t)C;
    const int nv = C / VW, rem = C - nv * VW;
    /* the common case (training: labels, gradient, row in cache) is
       compiled with its flags as constants */
    const int fast = want_ce && want_grad && cached;
    struct hrow r;
    r.s = zs + base;
    r.t = zt + base;
    r.g = grad + (want_grad ? base : 0);
    r.cache = cache;
    r.inv_t = inv_t;
    r.w_ce = w_ce;
    r.w_kd = w_kd;

    /* Pass 0: row maxima of z_s and z_t. */
    {
        const float2 m = row_maxima(r.s, r.t, 0, nv, 1, nv, rem, rem != 0);
        r.mu = m.x;
        r.ms = m.x * inv_t;
        r.mt = m.y * inv_t;
    }

    /* Pass 1: normalisers. */
    floatv zsv = 0.0f, ztv = 0.0f, zuv = 0.0f;
    if (fast)
        h_loop1(&r, nv, rem, 1, 1, 1, &zsv, &ztv, &zuv);
    else
        h_loop1(&r, nv, rem, want_ce, want_grad, cached, &zsv, &ztv, &zuv);
    const float zs_ = hsum(zsv), zt_ = hsum(ztv), zu = hsum(zuv);
    r.lzs = log(zs_);
    r.lzt = log(zt_);
    r.rzs = 1.0f / zs_;
    r.rzt = 1.0f / zt_;
    r.rzu = 1.0f / zu;
    const int y = want_ce ? labels[b] : -1;

    /* Pass 2: KL and the gradient. */
    floatv klv = 0.0f;
    if (fast)
        h_loop2(&r, nv, rem, 1, 1, 1, &klv);
    else
        h_loop2(&r, nv, rem, want_ce, want_grad, cached, &klv);
    if (want_grad && want_ce)
        r.g[y] -= w_ce; /* the one-hot part of the CE gradient */
    rows[2 * b] = hsum(klv);
    rows[2 * b + 1] = want_ce ? r.mu + log(zu) - r.s[y] : 0.0f;
}
