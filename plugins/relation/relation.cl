/*
 * plugins/relation/relation.cl - relation-based KD (LOSSES.md `relation`,
 * survey eqs. 1.3.1-1.3.4).  The host computes the Gram matrices
 * G = F F^T of the flattened student and teacher features with the GEMM
 * service; these kernels do the elementwise work on the B x B matrices.
 *
 *   distance: R(i,j) = sqrt(G_ii + G_jj - 2 G_ij), R(i,i) = 0, and R = 0
 *             (with zero gradient) wherever the radicand is <= 0;
 *   cosine:   R(i,j) = G_ij q_i q_j,  q_i = 1 / max(sqrt(G_ii), 1e-8).
 *
 * relation_pairs: one work-group of WG items per row i; item l handles
 * columns j = l, l + WG, ...  Writes rows[i] = sum_j (R_T - R_S)^2 (fixed
 * tree order) and, when the gradient is wanted, hmat[i,j] = dL/ds_ij
 * (distance, s = squared distance) or dL/dR_S(i,j) (cosine), with
 * dL/dR_S = coef (R_S - R_T).
 *
 * relation_sym: one work-group per row i, same layout.  Writes
 * qmat = P + P^T with P = dL/dG_S, so that dL/dF_S = qmat F_S is one GEMM:
 *   distance: Q_ij = -2 (h_ij + h_ji) (j != i), Q_ii = 2 sum_j (h_ij + h_ji);
 *   cosine:   Q_ij = (h_ij + h_ji) q_i q_j (j != i),
 *             Q_ii = 2 h_ii q_i^2 - q_i^2 sum_j (h_ij R_ij + h_ji R_ji)
 *             (the second part is the normalisation's Jacobian, absent
 *             when sqrt(G_ii) <= 1e-8 and q_i is the constant 1e8).
 *
 * relation_finish: one work-group sums the per-row values in a fixed
 * order and writes loss, ce, kd.
 */

#define METRIC_DISTANCE 0
#define METRIC_COSINE 1

float rel_q(float gii)
{
    return 1.0f / fmax(sqrt(fmax(gii, 0.0f)), 1e-8f);
}

/* R(i,j) from the Gram entries G_ij, G_ii, G_jj. */
float rel_value(float gij, float gii, float gjj, int i, int j, int metric)
{
    if (metric == METRIC_COSINE)
        return gij * rel_q(gii) * rel_q(gjj);
    if (i == j)
        return 0.0f;
    const float s = gii + gjj - 2.0f * gij;
    return s > 0.0f ? sqrt(s) : 0.0f;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void relation_pairs(__global const float *restrict gs,
                    __global const float *restrict gt,
                    __global float *restrict hmat,
                    __global float *restrict rows, const int B,
                    const int metric, const float coef, const int want_grad)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t ri = (size_t)i * (size_t)B;
    const float sii = gs[ri + i], tii = gt[ri + i];
    float acc = 0.0f;
    for (int j = lid; j < B; j += WG) {
        const size_t jj = (size_t)j * (size_t)B + (size_t)j;
        const float rs = rel_value(gs[ri + j], sii, gs[jj], i, j, metric);
        const float rt = rel_value(gt[ri + j], tii, gt[jj], i, j, metric);
        const float d = rt - rs;
        acc += d * d;
        if (want_grad) {
            float w = coef * (rs - rt);
            /* dR/ds = 1 / (2R); a zero distance has zero gradient. */
            if (metric == METRIC_DISTANCE)
                w = rs > 0.0f ? w / (2.0f * rs) : 0.0f;
            hmat[ri + j] = w;
        }
    }
    acc = kdcl_wg_sum(acc, s1);
    if (lid == 0)
        rows[i] = acc;
}

__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void relation_sym(__global const float *restrict gs,
                  __global const float *restrict hmat,
                  __global float *restrict qmat, const int B,
                  const int metric)
{
    __local float s1[WG];
    const int i = get_group_id(0);
    const int lid = get_local_id(0);
    const size_t ri = (size_t)i * (size_t)B;
    const float sii = gs[ri + i];
    const float qi = rel_q(sii);
    float diag = 0.0f;
    for (int j = lid; j < B; j += WG) {
        const size_t rj = (size_t)j * (size_t)B;
        const float hij = hmat[ri + j], hji = hmat[rj + i];
        if (metric == METRIC_DISTANCE) {
            if (j != i) {
                qmat[ri + j] = -2.0f * (hij + hji);
                diag += hij + hji;
            }
        } else {
            const float qj = rel_q(gs[rj + j]);
            diag += hij * (gs[ri + j] * qi * qj) + hji * (gs[rj + i] * qj * qi);
            if (j != i)
                qmat[ri + j] = (hij + hji) * qi * qj;
        }
    }
    diag = kdcl_wg_sum(diag, s1);
    if (lid == 0) {
        if (metric == METRIC_DISTANCE) {
            qmat[ri + i] = 2.0f * diag;
        } else {
            const bool active = sqrt(fmax(sii, 0.0f)) > 1e-8f;
            qmat[ri + i] = 2.0f * hmat[ri + i] * qi * qi
                           - (active ? qi * qi * diag : 0.0f);
        }
    }
}

/* out[0] = loss, out[1] = ce, out[2] = kd. */
__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))
void relation_finish(__global const float *restrict rows,
                     __global const float *restrict ce_rows,
                     __global float *restrict out, const int B,
                     const float kd_scale, const float alpha,
                     const int has_ce)
{
    __local float s1[WG];
    const int lid = get_local_id(0);
    float kd = 0.0f, ce = 0.0f;
    for (int b = lid; b < B; b += WG) {
        kd += rows[b];
        if (has_ce)
            ce += ce_rows[b];
    }
    kd = kdcl_wg_sum(kd, s1);
    ce = kdcl_wg_sum(ce, s1);
    if (lid == 0) {
        const float kdv = kd * kd_scale;
        const float cem = ce / (float)B;
        out[0] = has_ce ? alpha * cem + (1.0f - alpha) * kdv : kdv;
        out[1] = cem;
        out[2] = kdv;
    }
}
