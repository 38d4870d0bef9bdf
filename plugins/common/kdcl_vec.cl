/*
 * plugins/common/kdcl_vec.cl - helpers of the row kernels (hinton's on
 * CPU devices; jsd, tvd, skewkl): the lane type (float16 on CPU devices,
 * where one work-item walks a row in SIMD chunks; scalar elsewhere),
 * horizontal sum and max, a fast log for positive normal floats, a fast
 * exp for non-positive arguments, and chunk loads/stores that pad a
 * row's ragged end.  Embedded after kdcl_common.cl and before
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

/*
 * exp(x) for x <= 0, the exps of the row kernels (every argument has the
 * row maximum or log-sum-exp subtracted), about 2 ulp: x = k ln 2 + r,
 * k = round(x / ln 2) by the 1.5 * 2^23 rounding trick, |r| <= ln 2 / 2,
 * e^r by the Cephes expf polynomial, 2^k added to the exponent bits.
 * Arguments below -86 give exp(-86) ~ 4e-38 (no denormals to build): a
 * term that small cannot move a sum that holds a 1 (the maximum's), nor
 * a probability visibly.  A NaN with an empty payload (what arithmetic
 * produces) stays NaN.  Against the library exp, which
 * also handles large positive arguments, overflow and denormal results,
 * this is about 15 vector instructions instead of 22 on PoCL's CPU device.
 * GPUs keep their library exp (special-function units).
 */
floatv exp_neg(floatv x)
{
#ifndef KDCL_DEVICE_CPU
    return exp(x); /* GPUs have exp in hardware */
#else
    x = x < -86.0f ? (floatv)(-86.0f) : x;
    const floatv big = fma(x, 1.44269504089f, 12582912.0f);
    const floatv k = big - 12582912.0f;
    const intv n = AS_INTV(big) - 0x4b400000;
    floatv r = fma(k, -0.693359375f, x);
    r = fma(k, 2.12194440e-4f, r);
    floatv p = 1.9875691500e-4f;
    p = fma(p, r, 1.3981999507e-3f);
    p = fma(p, r, 8.3334519073e-3f);
    p = fma(p, r, 4.1665795894e-2f);
    p = fma(p, r, 1.6666665459e-1f);
    p = fma(p, r, 5.0000001201e-1f);
    p = fma(p * r, r, r) + 1.0f;
    return AS_FLOATV(AS_INTV(p) + (n << 23));
#endif
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

/* Pass 0 of the row kernels: the maxima (.x of row s, .y of row t) over
   the chunks k0, k0 + step, ... (cnt full ones) and, when tail, the
   partial chunk at nfull of rem floats; -FLT_MAX for an item without
   chunks. */
float2 row_maxima(__global const float *s, __global const float *t, int k0,
                  int cnt, int step, int nfull, int rem, int tail)
{
    floatv vs = -FLT_MAX, vt = -FLT_MAX;
    for (int j = 0; j < cnt; j++) {
        vs = vmax(vs, VLOAD(k0 + j * step, s));
        vt = vmax(vt, VLOAD(k0 + j * step, t));
    }
    if (tail) {
        vs = vmax(vs, ld_g(s, nfull, rem, -INFINITY));
        vt = vmax(vt, ld_g(t, nfull, rem, -INFINITY));
    }
    return (float2)(hmax(vs), hmax(vt));
}
