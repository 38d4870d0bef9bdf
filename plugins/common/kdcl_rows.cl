/*
 * plugins/common/kdcl_rows.cl - the row kernel jsd, tvd and skewkl share,
 * on the helpers of kdcl_vec.cl.  Embedded after kdcl_vec.cl and before
 * the plugin's own kernels, which define pass2 and call run_row.
 *
 * One work-group of WG items per row (WG = 256 on GPUs; 1 on CPU devices,
 * which run a work-group as a loop over its items).  Columns are taken in
 * chunks of VW floats: VW = 16 on CPU devices, whose OpenCL compilers
 * vectorise explicit vector types but not the loop around work-items that
 * holds a column loop; 1 on GPUs.  On CPUs item i owns one contiguous
 * block of chunks (with WG = 1, the row), so that the row streams in
 * order; on GPUs item i takes chunks i, i + WG, ... so that loads
 * coalesce.  Item 0 also takes the last, partial chunk.
 *   pass 1: exps of both rows against reference maxima, summed and kept:
 *     the student's in the gradient row, the teacher's in `cache`, a
 *     __local copy of the row used where local memory is ordinary memory
 *     and the row fits (`cached`); the (max, sum) pairs of the items are
 *     merged into both log-sum-exps.  On GPUs the reference is the item's
 *     maximum, read in a pass of its own.  On CPU devices the item's
 *     chunks go in blocks of at least BLK chunks: a block's maxima, read
 *     from memory, raise the running maxima (rescaling the sums), and the
 *     block's exps follow from L1, so that reading the row from memory
 *     overlaps the exps instead of preceding them; each block keeps its
 *     reference, and a kept exp times its block's factor
 *     exp(ref - lse) is the probability.
 *   pass 2 (pass2, the plugin's own): the loss terms and h, the part of
 *     the gradient the plugin defines, summed into two accumulators.
 *   pass 3: the gradient c (h - q S) with S = sum_h.
 * Without the local copy p costs one exp in pass 2, h lives in the
 * gradient row and q costs one exp in pass 3.  Without a gradient, q and p
 * are exps in pass 2 and nothing is stored.
 */

/* The passes and loops are inlined into the kernel, so that the calls
   with constant flags compile without the run-time choices. */
#define ROWS_INLINE __attribute__((always_inline))

#define BLK   32  /* fewest chunks per block (CPU devices) */
#define NBLK  128 /* most blocks per item, the partial chunk's aside */
#define AHEAD 512 /* chunks pass 1 prefetches ahead (32 KiB of a row) */

/*
 * The row state.  wp, wq are the mixture weights of the plugins that use
 * them; fs, ft the factors of the kept exps of the block at hand.
 */
struct row {
    __global const float *s, *t;
    __global float *g;
    __local float *cache;
    float inv_t, ms, mt, lse_s, lse_t, fs, ft, wp, wq, c, sum_h;
    int k0, cnt, step, nfull, rem, tail; /* the item's chunks */
    int bc, nb; /* chunks per block, full blocks (CPU devices) */
};

/* Pass 2 on chunk k, defined by each plugin. */
ROWS_INLINE void pass2(const struct row *r, int k, int n, intv live,
                       const int want_grad, const int cached, floatv *acc_a,
                       floatv *acc_b);

/* Pass 1 on chunk k (n floats): exps against the reference maxima. */
ROWS_INLINE void pass1(const struct row *r, int k, int n, const int want_grad,
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

/* Pass 3 on chunk k: dL/dz_s = c (h - q S), S = sum_h (every plugin's
   gradient has this form, with its own h). */
ROWS_INLINE void pass3(const struct row *r, int k, int n, const int cached)
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

#if BLOCKED
/* Raises the running maximum *m to bm (a block's), rescaling the sum. */
ROWS_INLINE void raise_ref(float *m, floatv *z, float bm)
{
    if (bm > *m) {
        *z *= exp(*m - bm);
        *m = bm;
    }
}

/* The factors of the kept exps of block blk (nb: the partial chunk's),
   whose reference maxima are ref[2 blk], ref[2 blk + 1]. */
ROWS_INLINE void block_factors(struct row *r, const float *ref, int blk)
{
    r->fs = exp(ref[2 * blk] - r->lse_s);
    r->ft = exp(ref[2 * blk + 1] - r->lse_t);
}
#endif

/*
 * The passes over the item's chunks (its full chunks, then the partial
 * one).  The kernel calls them once with want_grad = cached = 1 as
 * constants, the common case on CPU devices, so that it is compiled
 * without the run-time choices, and once with the run-time flags.
 * loop1 leaves the item's maxima in ms, mt.
 */
ROWS_INLINE void loop1(struct row *r, float *ref, const int want_grad,
                       const int cached, floatv *zs, floatv *zt)
{
#if BLOCKED
    r->ms = -FLT_MAX;
    r->mt = -FLT_MAX;
    for (int b = 0; b < r->nb; b++) {
        const int k = r->k0 + b * r->bc;
        const int n = min(r->bc, r->k0 + r->cnt - k);
        /* T > 0: the max of z / T is the max of z, over T */
        const float2 m = row_maxima(r->s, r->t, k, n, 1, 0, 0, 0);
        raise_ref(&r->ms, zs, m.x * r->inv_t);
        raise_ref(&r->mt, zt, m.y * r->inv_t);
        ref[2 * b] = r->ms;
        ref[2 * b + 1] = r->mt;
        for (int j = 0; j < n; j++) {
            /* past the row's end this reads ahead into the next row,
               which is contiguous; prefetches do not fault */
            __builtin_prefetch(r->s + (k + j + AHEAD) * VW, 0, 3);
            __builtin_prefetch(r->t + (k + j + AHEAD) * VW, 0, 3);
            pass1(r, k + j, VW, want_grad, cached, zs, zt);
        }
    }
    if (r->tail) {
        const float2 m = row_maxima(r->s, r->t, 0, 0, 1, r->nfull, r->rem, 1);
        raise_ref(&r->ms, zs, m.x * r->inv_t);
        raise_ref(&r->mt, zt, m.y * r->inv_t);
        ref[2 * r->nb] = r->ms;
        ref[2 * r->nb + 1] = r->mt;
        pass1(r, r->nfull, r->rem, want_grad, cached, zs, zt);
    }
#else
    const float2 m = row_maxima(r->s, r->t, r->k0, r->cnt, r->step, r->nfull,
                                r->rem, r->tail);
    r->ms = m.x * r->inv_t;
    r->mt = m.y * r->inv_t;
    for (int j = 0; j < r->cnt; j++)
        pass1(r, r->k0 + j * r->step, VW, want_grad, cached, zs, zt);
    if (r->tail)
        pass1(r, r->nfull, r->rem, want_grad, cached, zs, zt);
#endif
}

/* Pass 2 (pass = 2, a constant) or pass 3 on chunk k. */
ROWS_INLINE void pass23(const struct row *r, const int pass, int k, int n,
                        intv live, const int want_grad, const int cached,
                        floatv *acc_a, floatv *acc_b)
{
    if (pass == 2)
        pass2(r, k, n, live, want_grad, cached, acc_a, acc_b);
    else
        pass3(r, k, n, cached);
}

/* Pass 2 or 3 over the item's chunks, which read the kept exps: on CPU
   devices block by block, with each block's factors. */
ROWS_INLINE void loop23(struct row *r, const float *ref, const int pass,
                        const int want_grad, const int cached, floatv *acc_a,
                        floatv *acc_b)
{
#if BLOCKED
    for (int b = 0; b < r->nb; b++) {
        const int k = r->k0 + b * r->bc;
        const int n = min(r->bc, r->k0 + r->cnt - k);
        block_factors(r, ref, b);
        for (int j = 0; j < n; j++)
            pass23(r, pass, k + j, VW, (intv)(-1), want_grad, cached, acc_a,
                   acc_b);
    }
    if (r->tail)
        block_factors(r, ref, r->nb);
#else
    for (int j = 0; j < r->cnt; j++)
        pass23(r, pass, r->k0 + j * r->step, VW, (intv)(-1), want_grad,
               cached, acc_a, acc_b);
#endif
    if (r->tail)
        pass23(r, pass, r->nfull, r->rem, LANES < r->rem, want_grad, cached,
               acc_a, acc_b);
}

/*
 * Runs the passes on row b of zs, zt ([B,V]) for the calling item: a
 * skipped row (masked, or zero by definition) gets a zero gradient and
 * returns 0; otherwise returns 1 with sums[0], sums[1] the row's sums of
 * the two accumulators of pass 2 (sums[1] is S), after pass 3 when
 * with_pass3.  grad: [B,V] or NULL; cache: V floats when cached; nvalid:
 * the number of valid rows; gscale: the gradient's factor before the
 * division by nvalid.
 */
ROWS_INLINE int run_row(__global const float *zs, __global const float *zt,
                        __global float *grad, __local float *cache, const int b,
                        const int V, const float inv_t, const float wp,
                        const float wq, const float gscale, const float nvalid,
                        const int skip, const int want_grad, const int cached,
                        const int with_pass3, __local float2 *s2,
                        __local float *s1, float *sums)
{
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)V;
    const int nfull = V / VW, rem = V - nfull * VW;
    const int fast = want_grad && cached;
    struct row r;
    /* each block's reference maxima (CPU devices) */
    float ref[BLOCKED ? 2 * (NBLK + 1) : 1];
#if BLOCKED
    const int per = (nfull + WG - 1) / WG;
    r.k0 = min(lid * per, nfull);
    r.cnt = min(r.k0 + per, nfull) - r.k0;
    r.step = 1;
    r.bc = max(BLK, (r.cnt + NBLK - 1) / NBLK);
    r.nb = (r.cnt + r.bc - 1) / r.bc;
#else
    r.k0 = lid;
    r.step = WG;
    r.cnt = lid < nfull ? (nfull - lid + WG - 1) / WG : 0;
#endif
    r.s = zs + base;
    r.t = zt + base;
    r.g = grad + (want_grad ? base : 0);
    r.cache = cache;
    r.inv_t = inv_t;
    r.wp = wp;
    r.wq = wq;
    r.nfull = nfull;
    r.rem = rem;
    r.tail = lid == 0 && rem; /* item 0 also takes the partial chunk */

    if (skip) {
        if (want_grad) {
            for (int j = 0; j < r.cnt; j++)
                VSTORE_G((floatv)0.0f, r.k0 + j * r.step, r.g);
            if (r.tail)
                st_g((floatv)0.0f, r.g, nfull, rem);
        }
        return 0;
    }

    /* pass 1 */
    floatv vzs = 0.0f, vzt = 0.0f;
    if (fast)
        loop1(&r, ref, 1, 1, &vzs, &vzt);
    else
        loop1(&r, ref, want_grad, cached, &vzs, &vzt);
    r.lse_s = kdcl_wg_lse(r.ms, hsum(vzs), s2);
    r.lse_t = kdcl_wg_lse(r.mt, hsum(vzt), s2);
#if !BLOCKED
    /* a kept exp times its item's factor is the probability (on CPU
       devices, its block's: loop23) */
    r.fs = exp(r.ms - r.lse_s);
    r.ft = exp(r.mt - r.lse_t);
#endif
    r.c = nvalid > 0.0f ? gscale / nvalid : 0.0f;

    /* pass 2 */
    floatv acc_a = 0.0f, acc_b = 0.0f;
    if (fast)
        loop23(&r, ref, 2, 1, 1, &acc_a, &acc_b);
    else
        loop23(&r, ref, 2, want_grad, cached, &acc_a, &acc_b);
    sums[0] = kdcl_wg_sum(hsum(acc_a), s1);
    r.sum_h = sums[1] = kdcl_wg_sum(hsum(acc_b), s1);

    /* pass 3 */
    if (with_pass3) {
        if (fast)
            loop23(&r, ref, 3, 1, 1, NULL, NULL);
        else if (want_grad)
            loop23(&r, ref, 3, 1, cached, NULL, NULL);
    }
    return 1;
}
