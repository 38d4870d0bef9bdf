/*
 * plugins/sp/sp.cl - similarity-preserving KD, the elementwise and
 * reduction parts (LOSSES.md `sp`); the Gram products G = F F^T and the
 * backward product dF_S = (dG + dG^T) F_S are host GEMMs.
 *
 * sp_rows: one work-group of WG items per Gram row i; item l handles
 * columns l, l + WG, ... of the B-wide row.  The row norms are taken as
 * m * sqrt(sum (g/m)^2) with m the row's largest |g| (Gram entries are
 * squares of the features, so a plain sum of squares overflows early).
 * With n = max(||G_i||, 1e-12), N = G_i / n for both networks:
 *   rows[i] = sum_j (N_T - N_S)_ij^2,
 *   e_j = dL/dN_S,ij = -scale * (N_T - N_S)_ij,
 *   dG_ij = (e_j - N_S,ij * (N_S,i . e)) / n   (||G_i|| >= 1e-12)
 *   dG_ij = e_j / 1e-12                         (clamped norm: constant)
 * written over G_S in place when want_grad (every item overwrites only
 * the entries it read itself; only this group touches row i).  All sums
 * are fixed-order work-group trees.
 *
 * sp_sym: a 2-D range, item (j, i) per entry (i,j) of the B x B matrix
 * (any work-group shape); the item with i <= j replaces the pair by
 * dG_ij + dG_ji (in place, race-free).
 *
 * sp_finish: one work-group sums the per-row values in a fixed order and
 * writes loss, ce, kd.
 */

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sp_rows(__global float *gs, __global const float *restrict gt,
             __global float *restrict rows, const int B, const float scale,
             const int want_grad)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    __global float *rs = gs + (size_t)i * (size_t)B;
    __global const float *rt = gt + (size_t)i * (size_t)B;

    float ms = 0.0f, mt = 0.0f;
    for (int j = lid; j < B; j += WG) {
        ms = fmax(ms, fabs(rs[j]));
        mt = fmax(mt, fabs(rt[j]));
    }
    ms = kdcl_wg_max(ms, s1);
    mt = kdcl_wg_max(mt, s1);
    /* Divide by the largest entry (not by its reciprocal, which a tiny
       entry makes infinite); an all-zero row has norm 0. */
    float qs = 0.0f, qt = 0.0f;
    for (int j = lid; j < B; j += WG) {
        const float a = ms > 0.0f ? rs[j] / ms : 0.0f;
        const float b = mt > 0.0f ? rt[j] / mt : 0.0f;
        qs += a * a;
        qt += b * b;
    }
    qs = kdcl_wg_sum(qs, s1);
    qt = kdcl_wg_sum(qt, s1);
    const float ns = ms * sqrt(qs), nt = mt * sqrt(qt);
    const float ds = fmax(ns, 1e-12f), dt = fmax(nt, 1e-12f);
    /* Decided here, ahead of the barriers: PoCL 3.1 evaluated the same test
       written after them as if the norm were never clamped. */
    const float keep = ns >= 1e-12f ? 1.0f : 0.0f;

    float sq = 0.0f, dot = 0.0f;
    for (int j = lid; j < B; j += WG) {
        const float ps = rs[j] / ds;
        const float diff = rt[j] / dt - ps;
        sq += diff * diff;
        dot += ps * (-scale * diff);
    }
    /* Every item reaches every barrier: PoCL miscompiles a barrier behind
       an early return, even a uniform one. */
    sq = kdcl_wg_sum(sq, s1);
    dot = kdcl_wg_sum(dot, s1);
    if (lid == 0)
        rows[i] = sq;
    if (!want_grad)
        return;
    /* Where the norm is clamped, the denominator is a constant. */
    const float proj = keep * dot;
    for (int j = lid; j < B; j += WG) {
        const float ps = rs[j] / ds;
        const float e = -scale * (rt[j] / dt - ps);
        rs[j] = (e - ps * proj) / ds;
    }
}

__kernel void sp_sym(__global float *g, const int B)
{
    const size_t j = get_global_id(0), i = get_global_id(1);
    if (i >= (size_t)B || j >= (size_t)B || i > j)
        return;
    const size_t ij = i * (size_t)B + j, ji = j * (size_t)B + i;
    const float v = g[ij] + g[ji];
    g[ij] = v;
    g[ji] = v;
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void sp_finish(__global const float *restrict rows,
               __global const float *restrict ce_rows,
               __global float *restrict out, const int B,
               const float kd_scale, const float alpha, const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float sq = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        sq += rows[b];
        if (has_ce)
            ce += ce_rows[b];
    }
    sq = kdcl_wg_sum(sq, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float kd = kd_scale * sq;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kd : kd;
        out[1] = cem;
        out[2] = kd;
    }
}
