/*
 * plugins/graph/graph.cl - graph-based distillation (LOSSES.md `graph`,
 * survey eqs. 3.1.2.1-3.1.2.2): a dense affinity graph over all N nodes
 * (cosine or RBF kernel; the Gram matrices come from the host's GEMM) or
 * the local structure preserving (LSP) loss over given directed edges.
 * Every kernel runs one work-group of WG items per row or node; item i
 * takes columns i, i + WG, ... so that a work-group's loads are
 * contiguous.  Nothing is accumulated across work-groups: per-row results
 * go to scratch and graph_finish sums them in a fixed order.
 *
 * Dense mode (X' = X / max(||X||, 1e-8) row-wise for cosine, X for rbf):
 *   graph_prep        stat[i] = ||x_i|| (cosine, and xn[i] = x_i / max(
 *                     ||x_i||, 1e-8)) or ||x_i||^2 (rbf);
 *   (GEMM)            G = X' X'^T for student and teacher;
 *   graph_dense_rows  A(i,j) = G(i,j) (cosine) or exp(-d2 / (2 sigma^2)),
 *                     d2 = max(sq_i + sq_j - 2 G(i,j), 0), d2(i,i) = 0
 *                     (rbf); rows[i] = sum_j (A_T - A_S)^2; when the
 *                     gradient is wanted the student's G row is replaced
 *                     by M(i,j) = kscale (A_S - A_T) (cosine) or
 *                     M(i,j) A_S(i,j) (rbf), and rsum[i] = sum_j of it;
 *   (GEMM)            Y = M X';
 *   graph_dense_grad  cosine: dL/dx_i = (2 Y_i - xn_i (xn_i . 2 Y_i)) /
 *                     ||x_i|| (2 Y_i / 1e-8 when ||x_i|| < 1e-8);
 *                     rbf: dL/dx_i = 2 / sigma^2 (Y_i - rsum_i x_i).
 *
 * LSP mode, with the edges grouped by source on the host (CSR: out_off,
 * out_tgt in the given order within a source; and by target: in_off,
 * in_src, in_eid = the CSR position of that edge):
 *   graph_lsp_rows    node i: l(i,j) = -||x_i - x_j||^2 / 2 for every
 *                     out-edge (student and teacher: two work-group sums
 *                     per edge; item 0 keeps them in logit[2e], [2e+1]),
 *                     log-softmax over the edges, rows[i] =
 *                     KL(LS_T(i,.) || LS_S(i,.)) and q[e] = LS_S - LS_T
 *                     per edge; nodes without out-edges write 0;
 *   graph_lsp_grad    node i: dL/dx_i = c (sum_{i->j} q_ij (x_j - x_i)
 *                     + sum_{k->i} q_ki (x_k - x_i)), summed in edge
 *                     order (no scatter, no atomics).
 *
 * graph_lsp_rows_vec, graph_lsp_grad_vec: the LSP kernels for CPU
 * devices, one vectorised work-item per node (see below).
 *
 * graph_finish: one work-group sums rows and the cross-entropy rows in a
 * fixed order and writes loss, ce, kd.
 */

#define GRAPH_COS_EPS 1e-8f

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void graph_prep(__global const float *restrict X,
                __global float *restrict xn, __global float *restrict stat,
                const int D, const int cosine)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    __global const float *x = X + (size_t)i * (size_t)D;
    float ss = 0.0f;
    for (int d = lid; d < D; d += WG)
        ss += x[d] * x[d];
    ss = kdcl_wg_sum(ss, s1);
    if (!cosine) {
        if (lid == 0)
            stat[i] = ss;
        return;
    }
    const float n = sqrt(ss), inv = 1.0f / fmax(n, GRAPH_COS_EPS);
    __global float *o = xn + (size_t)i * (size_t)D;
    for (int d = lid; d < D; d += WG)
        o[d] = x[d] * inv;
    if (lid == 0)
        stat[i] = n;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void graph_dense_rows(__global float *restrict Gs,
                      __global const float *restrict Gt,
                      __global const float *restrict sq_s,
                      __global const float *restrict sq_t,
                      __global float *restrict rows,
                      __global float *restrict rsum, const int N,
                      const int cosine, const float inv2s2,
                      const float kscale, const int want_grad)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    __global float *gs = Gs + (size_t)i * (size_t)N;
    __global const float *gt = Gt + (size_t)i * (size_t)N;
    float acc = 0.0f, rs = 0.0f;
    for (int j = lid; j < N; j += WG) {
        float as, at;
        if (cosine) {
            as = gs[j];
            at = gt[j];
        } else {
            const float ds = i == j ? 0.0f
                                    : fmax(sq_s[i] + sq_s[j] - 2.0f * gs[j],
                                           0.0f);
            const float dt = i == j ? 0.0f
                                    : fmax(sq_t[i] + sq_t[j] - 2.0f * gt[j],
                                           0.0f);
            as = exp(-ds * inv2s2);
            at = exp(-dt * inv2s2);
        }
        const float d = at - as;
        acc += d * d;
        if (want_grad) {
            const float m = kscale * (as - at);
            const float v = cosine ? m : m * as;
            rs += v;
            gs[j] = v;
        }
    }
    acc = kdcl_wg_sum(acc, s1);
    if (want_grad && !cosine)
        rs = kdcl_wg_sum(rs, s1);
    if (lid == 0) {
        rows[i] = acc;
        if (want_grad && !cosine)
            rsum[i] = rs;
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void graph_dense_grad(__global const float *restrict X,
                      __global const float *restrict xn,
                      __global const float *restrict stat,
                      __global const float *restrict Y,
                      __global const float *restrict rsum,
                      __global float *restrict grad, const int D,
                      const int cosine, const float two_inv_s2)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)i * (size_t)D;
    __global const float *y = Y + base;
    __global float *g = grad + base;
    /* Every item reaches the reduction (no early return before a
       barrier); the rbf gradient does not use it. */
    float dot = 0.0f;
    if (cosine)
        for (int d = lid; d < D; d += WG)
            dot += xn[base + d] * y[d];
    dot = kdcl_wg_sum(dot, s1);
    if (cosine) {
        const float n = stat[i];
        const float proj = n >= GRAPH_COS_EPS ? dot : 0.0f;
        const float inv = 2.0f / fmax(n, GRAPH_COS_EPS);
        for (int d = lid; d < D; d += WG)
            g[d] = inv * (y[d] - xn[base + d] * proj);
    } else {
        const float r = rsum[i];
        for (int d = lid; d < D; d += WG)
            g[d] = two_inv_s2 * (y[d] - r * X[base + d]);
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void graph_lsp_rows(__global const float *restrict Xs,
                    __global const float *restrict Xt,
                    __global const int *restrict csr,
                    __global float *restrict logit,
                    __global float *restrict q, __global float *restrict rows,
                    const int Ds, const int Dt, const int off_out,
                    const int off_tgt)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    /* A node without out-edges runs empty loops and writes 0; no early
       return, so that every item reaches every barrier. */
    const int e0 = csr[off_out + i], e1 = csr[off_out + i + 1];
    __global const float *xs = Xs + (size_t)i * (size_t)Ds;
    __global const float *xt = Xt + (size_t)i * (size_t)Dt;
    float ms = -INFINITY, zs = 0.0f, mt = -INFINITY, zt = 0.0f;
    for (int e = e0; e < e1; e++) {
        const int j = csr[off_tgt + e];
        __global const float *ys = Xs + (size_t)j * (size_t)Ds;
        __global const float *yt = Xt + (size_t)j * (size_t)Dt;
        float ds = 0.0f, dt = 0.0f;
        for (int d = lid; d < Ds; d += WG) {
            const float v = xs[d] - ys[d];
            ds += v * v;
        }
        for (int d = lid; d < Dt; d += WG) {
            const float v = xt[d] - yt[d];
            dt += v * v;
        }
        const float ls = -0.5f * kdcl_wg_sum(ds, s1);
        const float lt = -0.5f * kdcl_wg_sum(dt, s1);
        kdcl_lse_add(ls, &ms, &zs);
        kdcl_lse_add(lt, &mt, &zt);
        if (lid == 0) {
            logit[2 * e] = ls;
            logit[2 * e + 1] = lt;
        }
    }
    /* Every item holds the same normalisers; the logits written by item 0
       are read back by the others. */
    barrier(CLK_GLOBAL_MEM_FENCE);
    const float lse_s = ms + log(zs), lse_t = mt + log(zt);
    float kl = 0.0f;
    for (int e = e0 + lid; e < e1; e += WG) {
        const float lps = logit[2 * e] - lse_s, lpt = logit[2 * e + 1] - lse_t;
        const float pt = exp(lpt);
        kl += pt * (lpt - lps);
        q[e] = exp(lps) - pt;
    }
    kl = kdcl_wg_sum(kl, s1);
    if (lid == 0)
        rows[i] = kl;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void graph_lsp_grad(__global const float *restrict Xs,
                    __global const int *restrict csr,
                    __global const float *restrict q,
                    __global float *restrict grad, const int Ds,
                    const int off_out, const int off_tgt, const int off_in,
                    const int off_src, const int off_eid, const float c)
{
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    const int o0 = csr[off_out + i], o1 = csr[off_out + i + 1];
    const int i0 = csr[off_in + i], i1 = csr[off_in + i + 1];
    __global const float *x = Xs + (size_t)i * (size_t)Ds;
    __global float *g = grad + (size_t)i * (size_t)Ds;
    for (int d = lid; d < Ds; d += WG) {
        const float xi = x[d];
        float acc = 0.0f;
        for (int e = o0; e < o1; e++)
            acc += q[e] * (Xs[(size_t)csr[off_tgt + e] * Ds + d] - xi);
        for (int e = i0; e < i1; e++)
            acc += q[csr[off_eid + e]]
                   * (Xs[(size_t)csr[off_src + e] * Ds + d] - xi);
        g[d] = c * acc;
    }
}

/*
 * graph_lsp_rows_vec, graph_lsp_grad_vec: the LSP kernels for CPU devices,
 * one work-item per node and no barriers.  A CPU driver runs a work-group
 * as a loop over its items, so the per-edge work-group sums above cost a
 * barrier each; here one item walks each neighbour row contiguously in
 * float16 vectors and a scalar tail.  Same results up to summation order
 * (each path is bitwise reproducible on its own).  The gradient row is
 * accumulated in place: out-edges then in-edges, each in CSR order.
 */
#define VW 16
typedef float16 floatv;
#define VLOAD(i, p) vload16((i), (p))
#define VSTORE(v, i, p) vstore16((v), (i), (p))

float graph_sum_lanes(floatv v)
{
    float a[VW], s = 0.0f;
    VSTORE(v, 0, a);
    for (int i = 0; i < VW; i++)
        s += a[i];
    return s;
}

/* ||x - y||^2 over D values. */
float graph_dist2(__global const float *restrict x,
                  __global const float *restrict y, const int D)
{
    const int nv = D / VW, tail = nv * VW;
    floatv acc = 0.0f;
    for (int i = 0; i < nv; i++) {
        const floatv v = VLOAD(i, x) - VLOAD(i, y);
        acc += v * v;
    }
    float r = graph_sum_lanes(acc);
    for (int d = tail; d < D; d++) {
        const float v = x[d] - y[d];
        r += v * v;
    }
    return r;
}

__kernel void graph_lsp_rows_vec(__global const float *restrict Xs,
                                 __global const float *restrict Xt,
                                 __global const int *restrict csr,
                                 __global float *restrict logit,
                                 __global float *restrict q,
                                 __global float *restrict rows, const int N,
                                 const int Ds, const int Dt,
                                 const int off_out, const int off_tgt)
{
    const int i = get_global_id(0);
    if (i >= N)
        return;
    const int e0 = csr[off_out + i], e1 = csr[off_out + i + 1];
    __global const float *xs = Xs + (size_t)i * (size_t)Ds;
    __global const float *xt = Xt + (size_t)i * (size_t)Dt;
    float ms = -INFINITY, zs = 0.0f, mt = -INFINITY, zt = 0.0f;
    for (int e = e0; e < e1; e++) {
        const int j = csr[off_tgt + e];
        const float ls =
            -0.5f * graph_dist2(xs, Xs + (size_t)j * (size_t)Ds, Ds);
        const float lt =
            -0.5f * graph_dist2(xt, Xt + (size_t)j * (size_t)Dt, Dt);
        kdcl_lse_add(ls, &ms, &zs);
        kdcl_lse_add(lt, &mt, &zt);
        logit[2 * e] = ls;
        logit[2 * e + 1] = lt;
    }
    const float lse_s = ms + log(zs), lse_t = mt + log(zt);
    float kl = 0.0f;
    for (int e = e0; e < e1; e++) {
        const float lps = logit[2 * e] - lse_s, lpt = logit[2 * e + 1] - lse_t;
        const float pt = exp(lpt);
        kl += pt * (lpt - lps);
        q[e] = exp(lps) - pt;
    }
    rows[i] = kl;
}

/* g += w (y - x) over D values. */
void graph_axpy_diff(__global float *restrict g, const float w,
                     __global const float *restrict y,
                     __global const float *restrict x, const int D)
{
    const int nv = D / VW, tail = nv * VW;
    for (int k = 0; k < nv; k++)
        VSTORE(VLOAD(k, g) + w * (VLOAD(k, y) - VLOAD(k, x)), k, g);
    for (int d = tail; d < D; d++)
        g[d] += w * (y[d] - x[d]);
}

__kernel void graph_lsp_grad_vec(__global const float *restrict Xs,
                                 __global const int *restrict csr,
                                 __global const float *restrict q,
                                 __global float *restrict grad, const int N,
                                 const int Ds, const int off_out,
                                 const int off_tgt, const int off_in,
                                 const int off_src, const int off_eid,
                                 const float c)
{
    const int i = get_global_id(0);
    if (i >= N)
        return;
    const int o0 = csr[off_out + i], o1 = csr[off_out + i + 1];
    const int i0 = csr[off_in + i], i1 = csr[off_in + i + 1];
    __global const float *x = Xs + (size_t)i * (size_t)Ds;
    __global float *g = grad + (size_t)i * (size_t)Ds;
    const int nv = Ds / VW, tail = nv * VW;
    for (int k = 0; k < nv; k++)
        VSTORE((floatv)0.0f, k, g);
    for (int d = tail; d < Ds; d++)
        g[d] = 0.0f;
    for (int e = o0; e < o1; e++)
        graph_axpy_diff(g, q[e], Xs + (size_t)csr[off_tgt + e] * Ds, x, Ds);
    for (int e = i0; e < i1; e++)
        graph_axpy_diff(g, q[csr[off_eid + e]],
                        Xs + (size_t)csr[off_src + e] * Ds, x, Ds);
    for (int k = 0; k < nv; k++)
        VSTORE(VLOAD(k, g) * c, k, g);
    for (int d = tail; d < Ds; d++)
        g[d] *= c;
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void graph_finish(__global const float *restrict rows,
                  __global const float *restrict ce_rows,
                  __global float *restrict out, const int n_rows,
                  const int B, const float kd_scale, const float alpha,
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
        const float kdm = kd_scale * kd;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kdm : kdm;
        out[1] = cem;
        out[2] = kdm;
    }
}
