/*
 * plugins/common/kdcl_rows.cl - the row passes jsd, tvd and skewkl share,
 * on the helpers of kdcl_vec.cl.  Embedded after kdcl_vec.cl and before
 * the plugin's own kernels, which define pass2.
 */

/*
 * The row state and the passes the three kernels share.  A work-item
 * walks its chunks of one row (k0, k0 + step, ... cnt full chunks, then
 * the partial chunk at nfull of rem floats when tail):
 *   pass 1 (pass1): exps of both rows against the item's maxima, summed;
 *     the student's kept in the gradient row, the teacher's in cache;
 *   pass 2 (pass2, the plugin's own): the loss terms and h, the part of
 *     the gradient the plugin defines, summed into two accumulators;
 *   pass 3 (pass3): the gradient c (h - q S) with S = sum_h.
 * wp, wq are the mixture weights of the plugins that use them.
 */
struct row {
    __global const float *s, *t;
    __global float *g;
    __local float *cache;
    float inv_t, ms, mt, lse_s, lse_t, fs, ft, wp, wq, c, sum_h;
    int k0, cnt, step, nfull, rem, tail; /* the item's chunks */
};

/* Pass 1b on chunk k (n floats): exps against the item's maxima. */
void pass1(const struct row *r, int k, int n, const int want_grad,
           const int cached, floatv *zs, floatv *zt)
{
    const floatv es = exp_neg(ld_g(r->s, k, n, -INFINITY) * r->inv_t - r->ms);
    const floatv et = exp_neg(ld_g(r->t, k, n, -INFINITY) * r->inv_t - r->mt);
    *zs += es;
    *zt += et;
    if (want_grad)
        st_g(es, r->g, k, n);
    if (cached)
        st_l(et, r->cache, k, n);
}

/* Pass 2 on chunk k, defined by each plugin. */
void pass2(const struct row *r, int k, int n, intv live,
           const int want_grad, const int cached, floatv *acc_a,
           floatv *acc_b);

/* Pass 3 on chunk k: dL/dz_s = c (h - q S), S = sum_h (every plugin's
   gradient has this form, with its own h). */
void pass3(const struct row *r, int k, int n, const int cached)
{
    floatv h, q;
    if (cached) {
        h = ld_l(r->cache, k, n);
        q = ld_g(r->g, k, n, 0.0f) * r->fs;
    } else {
        h = ld_g(r->g, k, n, 0.0f);
        q = exp_neg(ld_g(r->s, k, n, 0.0f) * r->inv_t - r->lse_s);
    }
    st_g(r->c * (h - q * r->sum_h), r->g, k, n);
}

/*
 * The passes over the item's chunks (its full chunks, then the partial
 * one).  The kernel calls them once with want_grad = cached = 1 as
 * constants, the common case on CPU devices, so that it is compiled
 * without the run-time choices, and once with the run-time flags.
 */
void loop1(const struct row *r, const int want_grad, const int cached,
           floatv *zs, floatv *zt)
{
    for (int j = 0; j < r->cnt; j++)
        pass1(r, r->k0 + j * r->step, VW, want_grad, cached, zs, zt);
    if (r->tail)
        pass1(r, r->nfull, r->rem, want_grad, cached, zs, zt);
}

void loop2(const struct row *r, const int want_grad, const int cached,
           floatv *acc_a, floatv *acc_b)
{
    for (int j = 0; j < r->cnt; j++)
        pass2(r, r->k0 + j * r->step, VW, (intv)(-1), want_grad, cached, acc_a,
              acc_b);
    if (r->tail)
        pass2(r, r->nfull, r->rem, LANES < r->rem, want_grad, cached, acc_a,
              acc_b);
}

void loop3(const struct row *r, const int cached)
{
    for (int j = 0; j < r->cnt; j++)
        pass3(r, r->k0 + j * r->step, VW, cached);
    if (r->tail)
        pass3(r, r->nfull, r->rem, cached);
}

