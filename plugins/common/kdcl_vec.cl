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
typedef float16 __attribute__((aligned(4))) floatv_u; /* unaligned */
typedef int16 intv;
#define VLOAD vload16
#define VSTORE vstore16
/* Full-chunk stores to global and local rows as one unaligned vector
   store: PoCL's vstore16 is compiled into three partial stores. */
#define VSTORE_G(v, k, p) (*(__global floatv_u *)((p) + (k) * VW) = (v))
#define VSTORE_L(v, k, p) (*(__local floatv_u *)((p) + (k) * VW) = (v))
#define AS_FLOATV as_float16
#define AS_INTV as_int16
#define CONVERT_FLOATV convert_float16
#define LANES (int16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#else
typedef float floatv;
typedef float floatv_u;
typedef int intv;
#define VLOAD(k, p) ((p)[(k)])
#define VSTORE(v, k, p) ((p)[(k)] = (v))
#define VSTORE_G VSTORE
#define VSTORE_L VSTORE
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
 * FLT_MIN), within 4e-7 relative and 1.1e-7 absolute for |log x| < 1:
 * x = 2^e m with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(u) with
 * u = (m - 1) / (m + 1), |u| <= 0.1716, as 2u + u^3 P(u^2) with P a
 * degree-1 minimax fit (3.4e-8 absolute).  The division costs one
 * instruction where the Cephes logf polynomial, needed without it, costs
 * ten; against the library log on CPU devices, which also handles what
 * cannot occur here (zero, denormals, infinities, NaN), it is about a
 * third of the instructions.
 */
floatv log_pos(floatv x)
{
    const intv i = AS_INTV(x);
    const intv e = (i - 0x3f3504f3) >> 23;
    const floatv m = AS_FLOATV(i - (e << 23));
    const floatv u = (m - 1.0f) / (m + 1.0f);
    const floatv w = u * u;
    const floatv r = fma(u * w, fma(w, 0.41287473f, 0.66653430f), u + u);
    const floatv ef = CONVERT_FLOATV(e);
    /* ln 2 in two parts, so that e ln 2 stays exact */
    return fma(ef, 0.693359375f, fma(ef, -2.12194440e-4f, r));
}

/*
 * exp(x) for x <= 0, the exps of the row kernels (every argument has the
 * row maximum or log-sum-exp subtracted), within 2.6e-7 relative for
 * x > -2, 1.1e-6 for x > -20 and 4e-6 down to -85.9 (the rounding of
 * y = x log2(e), which terms that small can afford): 2^y with y = k + r,
 * k = round(y) by the 1.5 * 2^23 rounding trick, r = y - k exact in
 * [-1/2, 1/2], 2^r by a degree-5 minimax polynomial whose constant term
 * is 1, so that exp(0) = 1 (9.1e-8), 2^k added to the exponent bits.
 * y below -124 gives 2^-124 ~ 4.7e-38 (no denormals to build): a term
 * that small cannot move a sum that holds a 1 (the maximum's), nor a
 * probability visibly.  A NaN with an empty payload (what arithmetic
 * produces) stays NaN.  Six multiply-adds where the library exp, which
 * also handles large positive arguments, overflow and denormal results,
 * spends 22 vector instructions on PoCL's CPU device.  GPUs keep their
 * library exp (special-function units).
 */
floatv exp_neg(floatv x)
{
#ifndef KDCL_DEVICE_CPU
    return exp(x); /* GPUs have exp in hardware */
#else
    floatv y = x * 1.44269504089f;
    y = y < -124.0f ? (floatv)(-124.0f) : y;
    const floatv big = y + 12582912.0f;
    const floatv r = y - (big - 12582912.0f);
    const intv n = AS_INTV(big) - 0x4b400000;
    floatv p = 1.3264727e-3f;
    p = fma(p, r, 9.6715130e-3f);
    p = fma(p, r, 5.5507336e-2f);
    p = fma(p, r, 2.4022242e-1f);
    p = fma(p, r, 6.9314700e-1f);
    p = fma(p, r, 1.0f);
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
        VSTORE_G(v, k, p);
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
        VSTORE_L(v, k, p);
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
