/*
 * plugins/common/kdcl_vec.cl - helpers of the vocabulary-scale row kernels
 * (jsd, tvd, skewkl): the lane type (float16 on CPU devices, where one
 * work-item walks a row in SIMD chunks; scalar elsewhere), horizontal sum
 * and max, a fast log for positive normal floats, and chunk loads/stores
 * that pad a row's ragged end.  Embedded after kdcl_common.cl and before
 * the plugin's own kernels.
 */
#ifdef KDCL_DEVICE_CPU
#define VW 16
#define BLOCKED 1
#else
#define VW 1
#define BLOCKED 0
#endif

#if VW == 16
typedef float16 floatv;
typedef int16 intv;
#define VLOAD vload16
#define VSTORE vstore16
#define AS_FLOATV as_float16
#define AS_INTV as_int16
#define CONVERT_FLOATV convert_float16
#define LANES (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#else
typedef float floatv;
typedef int intv;
#define VLOAD(k, p) ((p)[(k)])
#define VSTORE(v, k, p) ((p)[(k)] = (v))
#define AS_FLOATV as_float
#define AS_INTV as_int
#define CONVERT_FLOATV convert_float
#define LANES 0
#endif

/* The larger of a and b, lane by lane, as a compare and a blend (fmax's
   NaN handling costs twice that in the pass-0 loops; a NaN logit still
   turns the loss into NaN through the exps). */
floatv vmax(floatv a, floatv b)
{
    return b > a ? b : a;
}

/* Sum and maximum of the lanes, in a fixed order. */
float hsum(floatv v)
{
#if VW == 16
    const float8 a = v.lo + v.hi;
    const float4 b = a.lo + a.hi;
    const float2 c = b.lo + b.hi;
    return c.x + c.y;
#else
    return v;
#endif
}

float hmax(floatv v)
{
#if VW == 16
    const float8 a = fmax(v.lo, v.hi);
    const float4 b = fmax(a.lo, a.hi);
    const float2 c = fmax(b.lo, b.hi);
    return fmax(c.x, c.y);
#else
    return v;
#endif
}

/*
 * Natural log of a positive, normal, finite x (the callers clamp to
 * FLT_MIN), about 1 ulp: x = 2^e m with m in [sqrt(1/2), sqrt(2)),
 * log m = log1p(m - 1) by the Cephes logf polynomial.  Twice as fast as
 * the library log on CPU devices, which also handles what cannot occur
 * here (zero, denormals, infinities, NaN).
 */
floatv log_pos(floatv x)
{
    const intv i = AS_INTV(x);
    const intv e = (i - 0x3f3504f3) >> 23;
    const floatv f = AS_FLOATV(i - (e << 23)) - 1.0f;
    const floatv f2 = f * f;
    floatv r = 7.0376836292e-2f;
    r = fma(r, f, -1.1514610310e-1f);
    r = fma(r, f, 1.1676998740e-1f);
    r = fma(r, f, -1.2420140846e-1f);
    r = fma(r, f, 1.4249322787e-1f);
    r = fma(r, f, -1.6668057665e-1f);
    r = fma(r, f, 2.0000714765e-1f);
    r = fma(r, f, -2.4999993993e-1f);
    r = fma(r, f, 3.3333331174e-1f);
    r = fma(r * f2, f, fma(f2, -0.5f, f));
    const floatv ef = CONVERT_FLOATV(e);
    /* ln 2 in two parts, so that e ln 2 stays exact */
    return fma(ef, 0.693359375f, fma(ef, -2.12194440e-4f, r));
}

/* Chunk k of a row holding n <= VW floats; missing lanes read pad. */
floatv ld_g(__global const float *p, int k, int n, float pad)
{
    float tmp[VW];
    if (n == VW)
        return VLOAD(k, p);
    for (int i = 0; i < VW; i++)
        tmp[i] = i < n ? p[k * VW + i] : pad;
    return VLOAD(0, tmp);
}

floatv ld_l(__local const float *p, int k, int n)
{
    float tmp[VW];
    if (n == VW)
        return VLOAD(k, p);
    for (int i = 0; i < VW; i++)
        tmp[i] = i < n ? p[k * VW + i] : 0.0f;
    return VLOAD(0, tmp);
}

void st_g(floatv v, __global float *p, int k, int n)
{
    float tmp[VW];
    if (n == VW) {
        VSTORE(v, k, p);
        return;
    }
    VSTORE(v, 0, tmp);
    for (int i = 0; i < n; i++)
        p[k * VW + i] = tmp[i];
}

void st_l(floatv v, __local float *p, int k, int n)
{
    float tmp[VW];
    if (n == VW) {
        VSTORE(v, k, p);
        return;
    }
    VSTORE(v, 0, tmp);
    for (int i = 0; i < n; i++)
        p[k * VW + i] = tmp[i];
}

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
    const floatv es = exp(ld_g(r->s, k, n, -INFINITY) * r->inv_t - r->ms);
    const floatv et = exp(ld_g(r->t, k, n, -INFINITY) * r->inv_t - r->mt);
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
        q = exp(ld_g(r->s, k, n, 0.0f) * r->inv_t - r->lse_s);
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

