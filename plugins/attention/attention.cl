/*
 * plugins/attention/attention.cl - activation-based attention transfer
 * (LOSSES.md `attention`, survey eq. 3.1.3.1), forward and backward fused.
 *
 * attention_rows: one work-group of WG items per row b of one
 * student/teacher pair, S [B,Cs,P] and T [B,Ct,P] with P = H*W.  Item i
 * owns positions i, i + WG, ... so that for each channel a work-group's
 * loads are contiguous.
 *   pass 1  v_p = (1/C) sum_c |A_cp|^pw for student and teacher, kept in
 *           the scratch vs/vt [B*P] (each item re-reads only what it wrote,
 *           so no barrier is needed), and the row maxima of v;
 *   pass 2  n = vmax * sqrt(sum_p (v_p / vmax)^2), which does not overflow
 *           while v itself is finite;
 *   pass 3  f = v / max(n, 1e-12); sum_p (f_s - f_t)^2 (the row's loss,
 *           divided by P) and g.f_s, where g = kscale * (f_s - f_t);
 *   pass 4  (when a gradient is wanted) reads the student row again, from
 *           cache, and writes it once:
 *           dL/dA_cp = G_p * (pw/Cs) * (|A_cp|^pw / max(n, 1e-12)) / A_cp,
 *           G_p = g_p - f_p (g.f) when n >= 1e-12 (else g_p), and 0 at
 *           A_cp = 0.  Dividing |A|^pw by n before dividing by A keeps every
 *           intermediate bounded by Cs.  With AT_P2 (p = 2) the last factor
 *           is A_cp / max(n, 1e-12) and no division per element remains.
 * rows[row_off + b] = sum_p (f_s - f_t)^2 / P.
 *
 * attention_rows_vec (end of file): the same for CPU devices, one
 * vectorised work-item per row.
 *
 * attention_finish: one work-group sums the per-row values of every pair
 * (and the cross-entropy rows) in a fixed order and writes loss, ce, kd.
 */

#define AT_EPS 1e-12f

#define VW 16
typedef float16 floatv;
#define VLOAD(i, p) vload16((i), (p))
#define VSTORE(v, i, p) vstore16((v), (i), (p))

/*
 * |a|^pw for scalars (at_pow) and vectors (at_pow_v).  The host builds
 * with AT_P2 when p = 2 (the default: a plain square), with AT_PINT = p
 * for other integers up to 8 (repeated products, unrolled), and else uses
 * exp2(pw log2|a|): 0 at a = 0 for every pw > 0, a few ulp times
 * |pw log2|a|| of relative error, and far faster than pow or pown on CPU
 * drivers.
 */
#if defined(AT_P2)
float at_pow(float a, float pw)
{
    (void)pw;
    return a * a;
}

floatv at_pow_v(floatv a, float pw)
{
    (void)pw;
    return a * a;
}
#elif defined(AT_PINT)
float at_pow(float a, float pw)
{
    const float x = fabs(a);
    float r = x;
    (void)pw;
    for (int i = 1; i < AT_PINT; i++)
        r *= x;
    return r;
}

floatv at_pow_v(floatv a, float pw)
{
    const floatv x = fabs(a);
    floatv r = x;
    (void)pw;
    for (int i = 1; i < AT_PINT; i++)
        r *= x;
    return r;
}
#else
float at_pow(float a, float pw)
{
    return exp2(pw * log2(fabs(a)));
}

floatv at_pow_v(floatv a, float pw)
{
    return exp2(pw * log2(fabs(a)));
}
#endif

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_rows(__global const float *restrict S,
                    __global const float *restrict T,
                    __global float *restrict grad,
                    __global float *restrict vs,
                    __global float *restrict vt,
                    __global float *restrict rows,
                    const int Cs, const int Ct, const int P,
                    const float pw, const float kscale, const int row_off,
                    const int want_grad)
{
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float *sb = S + (size_t)b * (size_t)Cs * (size_t)P;
    __global const float *tb = T + (size_t)b * (size_t)Ct * (size_t)P;
    __global float *vsb = vs + (size_t)b * (size_t)P;
    __global float *vtb = vt + (size_t)b * (size_t)P;
    const float inv_cs = 1.0f / (float)Cs, inv_ct = 1.0f / (float)Ct;

    float ms = 0.0f, mt = 0.0f;
    for (int p = lid; p < P; p += WG) {
        float as = 0.0f, at = 0.0f;
        for (int c = 0; c < Cs; c++)
            as += at_pow(sb[(size_t)c * P + p], pw);
        for (int c = 0; c < Ct; c++)
            at += at_pow(tb[(size_t)c * P + p], pw);
        as *= inv_cs;
        at *= inv_ct;
        vsb[p] = as;
        vtb[p] = at;
        ms = fmax(ms, as);
        mt = fmax(mt, at);
    }
    ms = kdcl_wg_max(ms, s1);
    mt = kdcl_wg_max(mt, s1);

    float qs = 0.0f, qt = 0.0f;
    for (int p = lid; p < P; p += WG) {
        /* Divide, not multiply by 1/max: the reciprocal of a denormal
           maximum overflows. */
        const float a = ms > 0.0f ? vsb[p] / ms : 0.0f;
        const float c = mt > 0.0f ? vtb[p] / mt : 0.0f;
        qs += a * a;
        qt += c * c;
    }
    const float ns = ms * sqrt(kdcl_wg_sum(qs, s1));
    const float nt = mt * sqrt(kdcl_wg_sum(qt, s1));
    const float ds = fmax(ns, AT_EPS), dt = fmax(nt, AT_EPS);

    float sq = 0.0f, dot = 0.0f;
    for (int p = lid; p < P; p += WG) {
        const float fs = vsb[p] / ds, ft = vtb[p] / dt, d = fs - ft;
        sq += d * d;
        dot += d * fs;
    }
    sq = kdcl_wg_sum(sq, s1);
    dot = kdcl_wg_sum(dot, s1) * kscale;
    if (lid == 0)
        rows[row_off + b] = sq / (float)P;
    if (!want_grad)
        return;

    __global float *gb = grad + (size_t)b * (size_t)Cs * (size_t)P;
    const float proj = ns >= AT_EPS ? dot : 0.0f;
    for (int p = lid; p < P; p += WG) {
        const float fs = vsb[p] / ds, ft = vtb[p] / dt;
        const float G = kscale * (fs - ft) - fs * proj;
        const float coef = G * pw * inv_cs;
#ifdef AT_P2
        /* |a|^2 / ds / a = a / ds */
        const float c2 = coef / ds;
        for (int c = 0; c < Cs; c++)
            gb[(size_t)c * P + p] = c2 * sb[(size_t)c * P + p];
#else
        for (int c = 0; c < Cs; c++) {
            const float a = sb[(size_t)c * P + p];
            gb[(size_t)c * P + p] =
                a != 0.0f ? coef * ((at_pow(a, pw) / ds) / a) : 0.0f;
        }
#endif
    }
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void attention_finish(__global const float *restrict rows,
                      __global const float *restrict ce_rows,
                      __global float *restrict out, const int n_rows,
                      const int B, const float weight, const float alpha,
                      const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float kd = 0.0f, ce = 0.0f;
    for (int i = lid; i < n_rows; i += WG)
        kd += rows[i];
    if (has_ce)
        for (int i = lid; i < B; i += WG)
            ce += ce_rows[i];
    kd = kdcl_wg_sum(kd, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float kdm = weight * kd / (float)B;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kdm : kdm;
        out[1] = cem;
        out[2] = kdm;
    }
}

/*
 * attention_rows_vec: the same computation for CPU devices, one work-item
 * per row b and no barriers.  A CPU driver runs a work-group as a loop
 * over its items, so the layout above leaves each item striding through
 * the maps; here one item walks its row's maps channel by channel, each
 * channel contiguously in float16 vectors and a scalar tail:
 *   pass 1  vs/vt[p] += |A_cp|^pw channel after channel (the row of v
 *           stays in cache), then scaled by 1/C;
 *   pass 2  row maxima, norms, sum (f_s - f_t)^2 and g.f_s over p;
 *   pass 3  coef_p = G_p pw / Cs (/ max(n, 1e-12) with AT_P2) overwrites
 *           vt, then the gradient streams channel by channel again.
 * Every sum runs in a fixed order, so results are bitwise reproducible.
 */
float at_max_lanes(floatv v)
{
    float a[VW], m = 0.0f;
    VSTORE(v, 0, a);
    for (int i = 0; i < VW; i++)
        m = fmax(m, a[i]);
    return m;
}

float at_sum_lanes(floatv v)
{
    float a[VW], s = 0.0f;
    VSTORE(v, 0, a);
    for (int i = 0; i < VW; i++)
        s += a[i];
    return s;
}

/* v[p] = (1/C) sum_c |a[c*P + p]|^pw for p < P. */
void at_channel_mean(__global const float *restrict a, const int C,
                     const int P, const float pw, __global float *restrict v)
{
    const int nv = P / VW, tail = nv * VW;
    for (int i = 0; i < nv; i++)
        VSTORE((floatv)0.0f, i, v);
    for (int p = tail; p < P; p++)
        v[p] = 0.0f;
    for (int c = 0; c < C; c++) {
        __global const float *ac = a + (size_t)c * (size_t)P;
        for (int i = 0; i < nv; i++)
            VSTORE(VLOAD(i, v) + at_pow_v(VLOAD(i, ac), pw), i, v);
        for (int p = tail; p < P; p++)
            v[p] += at_pow(ac[p], pw);
    }
    const float inv = 1.0f / (float)C;
    for (int i = 0; i < nv; i++)
        VSTORE(VLOAD(i, v) * inv, i, v);
    for (int p = tail; p < P; p++)
        v[p] *= inv;
}

/* ||v|| as vmax * sqrt(sum (v / vmax)^2), which cannot overflow. */
float at_norm(__global const float *restrict v, const int P)
{
    const int nv = P / VW, tail = nv * VW;
    floatv mv = 0.0f;
    for (int i = 0; i < nv; i++)
        mv = fmax(mv, VLOAD(i, v));
    float m = at_max_lanes(mv);
    for (int p = tail; p < P; p++)
        m = fmax(m, v[p]);
    if (!(m > 0.0f))
        return 0.0f;
    floatv qv = 0.0f;
    for (int i = 0; i < nv; i++) {
        const floatv a = VLOAD(i, v) / m;
        qv += a * a;
    }
    float q = at_sum_lanes(qv);
    for (int p = tail; p < P; p++) {
        const float a = v[p] / m;
        q += a * a;
    }
    return m * sqrt(q);
}

__kernel void attention_rows_vec(__global const float *restrict S,
                                 __global const float *restrict T,
                                 __global float *restrict grad,
                                 __global float *restrict vs,
                                 __global float *restrict vt,
                                 __global float *restrict rows, const int B,
                                 const int Cs, const int Ct, const int P,
                                 const float pw, const float kscale,
                                 const int row_off, const int want_grad)
{
    const int b = get_global_id(0);
    if (b >= B)
        return;
    __global const float *sb = S + (size_t)b * (size_t)Cs * (size_t)P;
    __global const float *tb = T + (size_t)b * (size_t)Ct * (size_t)P;
    __global float *vsb = vs + (size_t)b * (size_t)P;
    __global float *vtb = vt + (size_t)b * (size_t)P;
    const int nv = P / VW, tail = nv * VW;

    at_channel_mean(sb, Cs, P, pw, vsb);
    at_channel_mean(tb, Ct, P, pw, vtb);
    const float ns = at_norm(vsb, P), nt = at_norm(vtb, P);
    const float ds = fmax(ns, AT_EPS), dt = fmax(nt, AT_EPS);

    floatv sqv = 0.0f, dotv = 0.0f;
    for (int i = 0; i < nv; i++) {
        const floatv fs = VLOAD(i, vsb) / ds, d = fs - VLOAD(i, vtb) / dt;
        sqv += d * d;
        dotv += d * fs;
    }
    float sq = at_sum_lanes(sqv), dot = at_sum_lanes(dotv);
    for (int p = tail; p < P; p++) {
        const float fs = vsb[p] / ds, d = fs - vtb[p] / dt;
        sq += d * d;
        dot += d * fs;
    }
    rows[row_off + b] = sq / (float)P;
    if (!want_grad)
        return;

    const float proj = ns >= AT_EPS ? dot * kscale : 0.0f;
#ifdef AT_P2
    const float cscale = pw / (float)Cs / ds;
#else
    const float cscale = pw / (float)Cs;
#endif
    for (int i = 0; i < nv; i++) {
        const floatv fs = VLOAD(i, vsb) / ds, ft = VLOAD(i, vtb) / dt;
        VSTORE((kscale * (fs - ft) - fs * proj) * cscale, i, vtb);
    }
    for (int p = tail; p < P; p++) {
        const float fs = vsb[p] / ds, ft = vtb[p] / dt;
        vtb[p] = (kscale * (fs - ft) - fs * proj) * cscale;
    }
    __global float *gb = grad + (size_t)b * (size_t)Cs * (size_t)P;
    for (int c = 0; c < Cs; c++) {
        __global const float *ac = sb + (size_t)c * (size_t)P;
        __global float *gc = gb + (size_t)c * (size_t)P;
        for (int i = 0; i < nv; i++) {
            const floatv a = VLOAD(i, ac), coef = VLOAD(i, vtb);
#ifdef AT_P2
            VSTORE(coef * a, i, gc);
#else
            const floatv r = coef * ((at_pow_v(a, pw) / ds) / a);
            VSTORE(select((floatv)0.0f, r, a != (floatv)0.0f), i, gc);
#endif
        }
        for (int p = tail; p < P; p++) {
            const float a = ac[p];
#ifdef AT_P2
            gc[p] = vtb[p] * a;
#else
            gc[p] = a != 0.0f ? vtb[p] * ((at_pow(a, pw) / ds) / a) : 0.0f;
#endif
        }
    }
}
