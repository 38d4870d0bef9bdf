/*
 * plugins/pkt/pkt.cl - probabilistic knowledge transfer, the elementwise
 * and reduction parts (LOSSES.md `pkt`); the similarity products
 * S = X X^T and the backward product dX_S = (dS + dS^T) X_S are host
 * GEMMs.  EPS = 1e-7 is LOSSES.md's (and RepDistiller's) constant, used
 * both in the row normalisation and inside the log.
 *
 * pkt_normalize: one work-group of WG items per feature row b; items
 * stride over the D columns.  n = ||f_b|| (fixed-order tree sum),
 * x_b = f_b / (n + EPS), norms[off + b] = n.
 *
 * pkt_rows: one work-group per similarity row i; items stride over the B
 * columns.  u = (S + 1) / 2, p = u / sum_j u for both networks;
 *   rows[i] = sum_j p_T * log((p_T + EPS) / (p_S + EPS)),
 * the log ratio taken as log1p((p_T - p_S) / (p_S + EPS)) when the ratio
 * is within [1/2, 2] (p_T and p_S are close: no cancellation of two
 * logs), else as a difference of logs.  With g_j = dL/dp_S,ij =
 * -scale p_T / (p_S + EPS) = -scale (1 + q_j), the backward of the row
 * division is (g_j - sum_k g_k p_S,k) / sum_j u_S; as sum_k p_S,k = 1 the
 * common -scale cancels exactly and
 *   dL/dS_ij = -scale / (2 sum_j u_S) * (q_j - sum_k q_k p_S,k),
 * with no difference of two nearly equal numbers.  It overwrites S_S in
 * place when want_grad (each item rewrites only the entries it read).
 *
 * pkt_sym: a 2-D range, item (j, i) per entry (i,j) (any work-group
 * shape); the item with i <= j replaces the pair by dS_ij + dS_ji (in
 * place, race-free).
 *
 * pkt_norm_back: one work-group per student row b, items over columns:
 * with k = (x_b . dx_b) (n + EPS) / n (0 when n = 0),
 * grad_b = (dx_b - x_b k) / (n + EPS), the backward of f / (||f|| + EPS).
 *
 * pkt_finish: one work-group sums the per-row values in a fixed order and
 * writes loss, ce, kd.
 */

#define EPS 1e-7f

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void pkt_normalize(__global const float *restrict f,
                   __global float *restrict x,
                   __global float *restrict norms, const int D,
                   const int off)
{
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)D;
    float acc = 0.0f;
    for (int c = lid; c < D; c += WG) {
        const float v = f[base + c];
        acc += v * v;
    }
    const float n = sqrt(kdcl_wg_sum(acc, s1));
    const float den = n + EPS;
    for (int c = lid; c < D; c += WG)
        x[base + c] = f[base + c] / den;
    if (lid == 0)
        norms[off + b] = n;
}

/* log((pt + EPS) / (ps + EPS)) */
float pkt_log_ratio(float pt, float ps)
{
    const float r = (pt + EPS) / (ps + EPS);
    if (r >= 0.5f && r <= 2.0f)
        return log1p((pt - ps) / (ps + EPS));
    return log(pt + EPS) - log(ps + EPS);
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void pkt_rows(__global float *ss, __global const float *restrict st,
              __global float *restrict rows, const int B, const float scale,
              const int want_grad)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    __global float *rs = ss + (size_t)i * (size_t)B;
    __global const float *rt = st + (size_t)i * (size_t)B;

    float us = 0.0f, ut = 0.0f;
    for (int j = lid; j < B; j += WG) {
        us += (rs[j] + 1.0f) * 0.5f;
        ut += (rt[j] + 1.0f) * 0.5f;
    }
    us = kdcl_wg_sum(us, s1);
    ut = kdcl_wg_sum(ut, s1);

    float kl = 0.0f, sqp = 0.0f;
    for (int j = lid; j < B; j += WG) {
        const float ps = (rs[j] + 1.0f) * 0.5f / us;
        const float pt = (rt[j] + 1.0f) * 0.5f / ut;
        const float q = (pt - ps - EPS) / (ps + EPS);
        kl += pt * pkt_log_ratio(pt, ps);
        sqp += q * ps;
    }
    /* Every item reaches every barrier: PoCL miscompiles a barrier behind
       an early return, even a uniform one. */
    kl = kdcl_wg_sum(kl, s1);
    sqp = kdcl_wg_sum(sqp, s1);
    if (lid == 0)
        rows[i] = kl;
    if (!want_grad)
        return;
    const float k = -scale * 0.5f / us;
    for (int j = lid; j < B; j += WG) {
        const float ps = (rs[j] + 1.0f) * 0.5f / us;
        const float pt = (rt[j] + 1.0f) * 0.5f / ut;
        const float q = (pt - ps - EPS) / (ps + EPS);
        rs[j] = k * (q - sqp);
    }
}

__kernel void pkt_sym(__global float *g, const int B)
{
    const size_t j = get_global_id(0), i = get_global_id(1);
    if (i >= (size_t)B || j >= (size_t)B || i > j)
        return;
    const size_t ij = i * (size_t)B + j, ji = j * (size_t)B + i;
    const float v = g[ij] + g[ji];
    g[ij] = v;
    g[ji] = v;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void pkt_norm_back(__global const float *restrict x,
                   __global const float *restrict dx,
                   __global const float *restrict norms,
                   __global float *restrict grad, const int D)
{
    __local float s1[WG];
    const int b = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)b * (size_t)D;
    float dot = 0.0f;
    for (int c = lid; c < D; c += WG)
        dot += x[base + c] * dx[base + c];
    dot = kdcl_wg_sum(dot, s1);
    const float n = norms[b];
    const float den = n + EPS;
    /* At n = 0 the row is 0 and so is x: the norm's term vanishes. */
    const float k = n > 0.0f ? dot * (den / n) : 0.0f;
    for (int c = lid; c < D; c += WG)
        grad[base + c] = (dx[base + c] - x[base + c] * k) / den;
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void pkt_finish(__global const float *restrict rows,
                __global const float *restrict ce_rows,
                __global float *restrict out, const int B,
                const float kd_scale, const float alpha, const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float kl = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        kl += rows[b];
        if (has_ce)
            ce += ce_rows[b];
    }
    kl = kdcl_wg_sum(kl, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float kd = kd_scale * kl;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kd : kd;
        out[1] = cem;
        out[2] = kd;
    }
}
