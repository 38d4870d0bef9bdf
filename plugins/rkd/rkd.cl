/*
 * plugins/rkd/rkd.cl - relational KD of Park et al. 2019, distance and
 * angle terms (LOSSES.md `rkd`, anchor RepDistiller RKD.py).
 *
 * Distance term, on the Gram matrices G = F F^T that the host computes:
 *   s_ij = G_ii + G_jj - 2 G_ij, d_ij = sqrt(max(s_ij, 1e-12)), d_ii = 0,
 *   dn = d / mu with mu the mean of the B(B-1) off-diagonal entries (all
 *   >= 1e-6 > 0 thanks to the clamp, so this is the mean of the positive
 *   entries), loss_d = (1/B^2) sum_ij smoothL1(dn_S - dn_T).
 * rkd_dist_rows:  one work-group (WG items, item l takes columns l, l + WG,
 *                 ...) per row i: rows[8i] = sum_j d_S, rows[8i+1] =
 *                 sum_j d_T.
 * rkd_rowsum:     one work-group: out[o] = scale * sum_i rows[8i + col],
 *                 fixed order (mu_S, mu_T and the mean's Jacobian c).
 * rkd_dist_loss:  one work-group per row i: rows[8i+4] = sum_j smoothL1,
 *                 g_ij = coef_d clamp(dn_S - dn_T, -1, 1) into gd,
 *                 rows[8i+5] = sum_j g_ij dn_S(i,j).
 * rkd_dist_sym:   one work-group per row k: with dL/dd_kl = (g_kl - c)/mu_S
 *                 and h_kl = dL/dd_kl / (2 d_kl) where s_kl > 1e-12 (else
 *                 0), qmat[k,l] = -2 (h_kl + h_lk), qmat[k,k] = 2 sum_l
 *                 (h_kl + h_lk), so that the gradient is qmat F_S (GEMM).
 *
 * Angle term, per anchor i over a chunk of anchors [i0, i0 + n): the B x B
 * angles a(i,j,k) = u_ij . u_ik are the Gram matrix U_i U_i^T of the unit
 * differences u_ij = (e_j - e_i) / max(||e_j - e_i||, 1e-12) (host batched
 * GEMM); nothing of size B^3 is ever held.
 * The per-anchor kernels run on a 2-D grid of work-groups (jb, a): group
 * (jb, a) takes anchor i = i0 + a and the block of RB rows j starting at
 * jb * RB (no index is split with / and %).  On CPU devices
 * (-DRKD_ROW_PER_ITEM, RB = WG) each item owns one row and loops alone;
 * elsewhere the WG items share each row of the block.
 * rkd_unit:       pass 1 reduces ||e_j - e_i||^2, pass 2 writes u_ij into
 *                 u[a,j,:] (and the norm into norms[a*B + j] when asked).
 * rkd_angle:      arows[i * nb + jb] = sum over the block's rows j and all
 *                 k of smoothL1(a_S - a_T); with the gradient,
 *                 da[a,j,k] = coef_a (clamp(x_jk) + clamp(x_kj)), the
 *                 symmetrised dL/dA, so that dL/dU_i = da_i U_i (GEMM).
 * rkd_unit_back:  in place, dL/dU -> dL/d(e_j - e_i) through the
 *                 normalisation: (du - u (u . du)) / norm, or du / 1e-12
 *                 below the clamp; 0 for j = i.
 * rkd_accumulate: one item per gradient element (d, k) of a 2-D grid,
 *                 any work-group shape: grad[k,d] +=
 *                 sum_a g[a,k,d] - (k in the chunk) sum_j g[k-i0,j,d], in
 *                 a fixed order (no atomics).
 * rkd_finish:     one work-group: out = loss, ce, kd, dist, angle.
 */

float rkd_sl1(float x)
{
    const float ax = fabs(x);
    return ax < 1.0f ? 0.5f * x * x : ax - 0.5f;
}

float rkd_sl1_grad(float x)
{
    return clamp(x, -1.0f, 1.0f);
}

/* Squared distance s_ij from the Gram matrix g [B,B]. */
float rkd_sq(__global const float *g, int B, int i, int j)
{
    return g[(size_t)i * B + i] + g[(size_t)j * B + j]
           - 2.0f * g[(size_t)i * B + j];
}

float rkd_dist(__global const float *g, int B, int i, int j)
{
    return i == j ? 0.0f : sqrt(fmax(rkd_sq(g, B, i, j), 1e-12f));
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_dist_rows(__global const float *restrict gs,
                   __global const float *restrict gt,
                   __global float *restrict rows, const int B)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    float ss = 0.0f, st = 0.0f;
    for (int j = lid; j < B; j += WG) {
        ss += rkd_dist(gs, B, i, j);
        st += rkd_dist(gt, B, i, j);
    }
    ss = kdcl_wg_sum(ss, s1);
    st = kdcl_wg_sum(st, s1);
    if (lid == 0) {
        rows[8 * (size_t)i] = ss;
        rows[8 * (size_t)i + 1] = st;
    }
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_rowsum(__global const float *restrict rows,
                __global float *restrict out, const int B, const int col,
                const float scale, const int o)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float acc = 0.0f;
    for (int i = lid; i < B; i += WG)
        acc += rows[8 * (size_t)i + col];
    acc = kdcl_wg_sum(acc, s1);
    if (lid == 0)
        out[o] = acc * scale;
}

/* mu[0] = mu_S, mu[1] = mu_T (0 when B = 1: no positive entries). */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_dist_loss(__global const float *restrict gs,
                   __global const float *restrict gt,
                   __global const float *restrict mu,
                   __global float *restrict gd,
                   __global float *restrict rows, const int B,
                   const float coef_d, const int want_grad)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    const float mus = mu[0], mut = mu[1];
    const float is = mus > 0.0f ? 1.0f / mus : 0.0f;
    const float it = mut > 0.0f ? 1.0f / mut : 0.0f;
    float loss = 0.0f, gdn = 0.0f;
    for (int j = lid; j < B; j += WG) {
        const float dns = rkd_dist(gs, B, i, j) * is;
        const float x = dns - rkd_dist(gt, B, i, j) * it;
        loss += rkd_sl1(x);
        if (want_grad) {
            const float g = coef_d * rkd_sl1_grad(x);
            gd[(size_t)i * B + j] = g;
            gdn += g * dns;
        }
    }
    loss = kdcl_wg_sum(loss, s1);
    gdn = kdcl_wg_sum(gdn, s1);
    if (lid == 0) {
        rows[8 * (size_t)i + 4] = loss;
        rows[8 * (size_t)i + 5] = gdn;
    }
}

/* dL/ds_kl of the distance term; mu[0] = mu_S, mu[2] = c. */
float rkd_dh(__global const float *gs, __global const float *gd, float mus,
             float c, int B, int k, int l)
{
    const float s = rkd_sq(gs, B, k, l);
    if (k == l || !(s > 1e-12f) || !(mus > 0.0f))
        return 0.0f;
    return (gd[(size_t)k * B + l] - c) / mus / (2.0f * sqrt(s));
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_dist_sym(__global const float *restrict gs,
                  __global const float *restrict gd,
                  __global const float *restrict mu,
                  __global float *restrict qmat, const int B)
{
    __local float s1[WG];
    const int k = get_group_id(0);
    const int lid = get_local_id(0);
    const float mus = mu[0], c = mu[2];
    float diag = 0.0f;
    for (int l = lid; l < B; l += WG) {
        if (l == k)
            continue;
        const float h = rkd_dh(gs, gd, mus, c, B, k, l)
                        + rkd_dh(gs, gd, mus, c, B, l, k);
        qmat[(size_t)k * B + l] = -2.0f * h;
        diag += h;
    }
    diag = kdcl_wg_sum(diag, s1);
    if (lid == 0)
        qmat[(size_t)k * B + k] = 2.0f * diag;
}

/*
 * Rows j of work-group (jb, a): [jb * RB, min(B, jb * RB + RB)).  With
 * RKD_ROW_PER_ITEM (CPU devices, RB = WG) item l owns row jb * RB + l and
 * loops over d alone, without barriers; otherwise the items share each
 * row and reduce in a fixed tree.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_unit(__global const float *restrict f, __global float *restrict u,
              __global float *restrict norms, const int B, const int D,
              const int i0, const int want_norms)
{
    const int jb = get_group_id(0), a = get_group_id(1);
    const int lid = get_local_id(0);
    __global const float *ei = f + (size_t)(i0 + a) * D;
#ifdef RKD_ROW_PER_ITEM
    const int j = jb * RB + lid;
    if (j < B) {
        const size_t p = (size_t)a * B + j;
        __global const float *ej = f + (size_t)j * D;
        __global float *up = u + p * D;
        float ss = 0.0f;
        for (int d = 0; d < D; d++) {
            const float x = ej[d] - ei[d];
            ss += x * x;
        }
        const float norm = sqrt(ss);
        const float inv = 1.0f / fmax(norm, 1e-12f);
        for (int d = 0; d < D; d++)
            up[d] = (ej[d] - ei[d]) * inv;
        if (want_norms)
            norms[p] = norm;
    }
#else
    __local float s1[WG];
    const int jend = min(B, jb * RB + RB);
    for (int j = jb * RB; j < jend; j++) {
        const size_t p = (size_t)a * B + j;
        __global const float *ej = f + (size_t)j * D;
        __global float *up = u + p * D;
        float ss = 0.0f;
        for (int d = lid; d < D; d += WG) {
            const float x = ej[d] - ei[d];
            ss += x * x;
        }
        const float norm = sqrt(kdcl_wg_sum(ss, s1));
        const float inv = 1.0f / fmax(norm, 1e-12f);
        for (int d = lid; d < D; d += WG)
            up[d] = (ej[d] - ei[d]) * inv;
        if (want_norms && lid == 0)
            norms[p] = norm;
    }
#endif
}

/*
 * arows[(i0 + a) * nb + jb]: the partial sum of work-group (jb, a).  With
 * RKD_ROW_PER_ITEM item l owns row j = jb * RB + l and walks k alone
 * (row j contiguous per item, column j contiguous across items);
 * otherwise the items share each row, striding over k.
 */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_angle(__global const float *restrict as,
               __global const float *restrict at,
               __global float *restrict da, __global float *restrict arows,
               const int B, const int i0, const float coef_a,
               const int want_grad)
{
    __local float s1[WG];
    const int jb = get_group_id(0), a = get_group_id(1);
    const int nb = get_num_groups(0);
    const int lid = get_local_id(0);
    const size_t base = (size_t)a * B * B;
    float loss = 0.0f;
#ifdef RKD_ROW_PER_ITEM
    const int j0 = jb * RB + lid, j1 = min(B, j0 + 1), k0 = 0, step = 1;
#else
    const int j0 = jb * RB, j1 = min(B, jb * RB + RB), k0 = lid, step = WG;
#endif
    for (int j = j0; j < j1; j++)
        for (int k = k0; k < B; k += step) {
            const size_t jk = base + (size_t)j * B + k;
            const float x = as[jk] - at[jk];
            loss += rkd_sl1(x);
            if (want_grad) {
                const size_t kj = base + (size_t)k * B + j;
                da[jk] = coef_a
                         * (rkd_sl1_grad(x) + rkd_sl1_grad(as[kj] - at[kj]));
            }
        }
    loss = kdcl_wg_sum(loss, s1);
    if (lid == 0)
        arows[(size_t)(i0 + a) * nb + jb] = loss;
}

/* dL/d(e_j - e_i) of one row p = a * B + j, in place in g. */
void rkd_back_row(__global const float *up, __global float *g, float dot,
                  float norm, int same, int d0, int step, int D)
{
    if (same) {
        /* e_i - e_i does not depend on e. */
        for (int d = d0; d < D; d += step)
            g[d] = 0.0f;
    } else if (norm > 1e-12f) {
        const float inv = 1.0f / norm;
        for (int d = d0; d < D; d += step)
            g[d] = (g[d] - up[d] * dot) * inv;
    } else {
        for (int d = d0; d < D; d += step)
            g[d] = g[d] * 1e12f;
    }
}

/* Rows as in rkd_unit. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_unit_back(__global const float *restrict u,
                   __global float *restrict du,
                   __global const float *restrict norms, const int B,
                   const int D, const int i0)
{
    const int jb = get_group_id(0), a = get_group_id(1);
    const int lid = get_local_id(0);
    const int i = i0 + a;
#ifdef RKD_ROW_PER_ITEM
    const int j = jb * RB + lid;
    if (j < B) {
        const size_t p = (size_t)a * B + j;
        __global const float *up = u + p * D;
        __global float *g = du + p * D;
        float dot = 0.0f;
        for (int d = 0; d < D; d++)
            dot += up[d] * g[d];
        rkd_back_row(up, g, dot, norms[p], j == i, 0, 1, D);
    }
#else
    __local float s1[WG];
    const int jend = min(B, jb * RB + RB);
    for (int j = jb * RB; j < jend; j++) {
        const size_t p = (size_t)a * B + j;
        __global const float *up = u + p * D;
        __global float *g = du + p * D;
        float dot = 0.0f;
        for (int d = lid; d < D; d += WG)
            dot += up[d] * g[d];
        dot = kdcl_wg_sum(dot, s1);
        rkd_back_row(up, g, dot, norms[p], j == i, lid, WG, D);
    }
#endif
}

__kernel void rkd_accumulate(__global const float *restrict g,
                             __global float *restrict grad, const int B,
                             const int D, const int i0, const int n)
{
    const int d = get_global_id(0), k = get_global_id(1);
    if (d >= D || k >= B)
        return;
    const size_t e = (size_t)k * D + d;
    const size_t plane = (size_t)B * D;
    float acc = grad[e];
    /* e_k as the far end j = k of every anchor i in the chunk ... */
    for (int a = 0; a < n; a++)
        acc += g[a * plane + (size_t)k * D + d];
    /* ... and as the anchor itself. */
    if (k >= i0 && k < i0 + n) {
        __global const float *gk = g + (size_t)(k - i0) * plane + d;
        float s = 0.0f;
        for (int j = 0; j < B; j++)
            s += gk[(size_t)j * D];
        acc -= s;
    }
    grad[e] = acc;
}

/* out[0] = loss, [1] = ce, [2] = kd, [3] = dist, [4] = angle. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void rkd_finish(__global const float *restrict rows,
                __global const float *restrict arows,
                __global const float *restrict ce_rows,
                __global float *restrict out, const int B,
                const float w_dist, const float w_angle, const float alpha,
                const int has_ce, const int n_arows)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    const size_t bb = (size_t)B * B;
    float ld = 0.0f, la = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        ld += rows[8 * (size_t)b + 4];
        if (has_ce)
            ce += ce_rows[b];
    }
    for (int p = lid; p < n_arows; p += WG)
        la += arows[p];
    ld = kdcl_wg_sum(ld, s1);
    la = kdcl_wg_sum(la, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float dist = ld / (float)bb;
        const float angle = la / (float)bb / (float)B;
        const float kd = w_dist * dist + w_angle * angle;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kd : kd;
        out[1] = cem;
        out[2] = kd;
        out[3] = dist;
        out[4] = angle;
    }
}
