/*
 * cl/nn.cl - kernels of the training engine (core/nn.c): bias and column
 * sums, ReLU, batched im2col / col2im and layout moves for convolution,
 * pooling, dropout, batch normalisation, batch gathering, argmax, and the
 * SGD and Adam updates.  Embedded after plugins/common/kdcl_common.cl
 * (reductions, kdcl_ce_rows).
 *
 * Layout: one work-item per output element unless a comment says
 * otherwise; every reduction is a loop in a fixed order inside one item or
 * a fixed-order tree in one work-group, so results are bit-identical run
 * to run.  Backward passes are written as gathers (each input element sums
 * what it contributed to), never as scattered atomic adds.
 */

/* y[r, c] += b[c] for r < R, c < N. */
__kernel void nn_bias_add(__global float *y, __global const float *b,
                          const int R, const int N)
{
    const int i = get_global_id(0);
    if (i < R * N)
        y[i] += b[i % N];
}

/* out[c] = sum_r g[r, c] (+ out[c] when accumulate); one item per column,
   rows in order. */
__kernel void nn_col_sum(__global const float *g, __global float *out,
                         const int R, const int N, const int accumulate)
{
    const int c = get_global_id(0);
    if (c >= N)
        return;
    float s = 0.0f;
    for (int r = 0; r < R; r++)
        s += g[(size_t)r * N + c];
    out[c] = accumulate ? out[c] + s : s;
}

__kernel void nn_relu_fwd(__global const float *x, __global float *y,
                          const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        y[i] = fmax(x[i], 0.0f);
}

/* gx = gy where the output was positive (the gradient at 0 is 0). */
__kernel void nn_relu_bwd(__global const float *y, __global const float *gy,
                          __global float *gx, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        gx[i] = y[i] > 0.0f ? gy[i] : 0.0f;
}

/* c[off + r*ld + j] = beta * c[...] for r < m, j < n (0 when beta is 0,
   whatever c held): an empty GEMM (k = 0), or C cleared before a GEMM
   with beta 0.  2-D range (n, m); no index division (Oclgrind cannot
   follow the `freeze` LLVM emits for paired i / n, i % n). */
__kernel void nn_scale_block(__global float *c, const long off, const int m,
                             const int n, const int ld, const float beta)
{
    const int j = get_global_id(0), r = get_global_id(1);
    if (j >= n || r >= m)
        return;
    __global float *p = c + off + (size_t)r * ld + j;
    *p = beta == 0.0f ? 0.0f : beta * *p;
}

/* y += x (tap gradients joining the backward flow). */
__kernel void nn_add(__global float *y, __global const float *x, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        y[i] += x[i];
}

/*
 * Convolution as one GEMM per image, y_b [OC, P] = W [OC, C*K*K] x col_b
 * [C*K*K, P] (P = OH*OW), so that outputs come out in NCHW with no
 * transpose.  im2col: col[b, q, oh*OW + ow] with q = (c*K + kh)*K + kw
 * holds x[b, c, oh*S - P + kh, ow*S - P + kw] (0 outside).  2-D range
 * (C*K*K, B): each item fills one contiguous row of P values (the index
 * arithmetic is done once per row, not per element).  The row's (c, kh,
 * kw) come from divisions and multiply-subtracts, not from paired / and %:
 * LLVM 15 compiles such pairs to `freeze`, which Oclgrind cannot run.
 */
__kernel void nn_im2col(__global const float *x, __global float *col,
                        const int B, const int C, const int H, const int W,
                        const int K, const int S, const int P, const int OH,
                        const int OW)
{
    const int q = get_global_id(0), b = get_global_id(1);
    const int ckk = C * K * K;
    if (q >= ckk || b >= B)
        return;
    const int c = q / (K * K), r = q - c * K * K;
    const int kh = r / K, kw = r - kh * K;
    __global const float *xc = x + ((size_t)b * C + c) * H * W;
    __global float *out = col + ((size_t)b * ckk + q) * OH * OW;
    for (int oh = 0; oh < OH; oh++) {
        const int ih = oh * S - P + kh;
        __global float *o = out + oh * OW;
        if (ih < 0 || ih >= H) {
            for (int ow = 0; ow < OW; ow++)
                o[ow] = 0.0f;
            continue;
        }
        __global const float *xr = xc + ih * W;
        for (int ow = 0; ow < OW; ow++) {
            const int iw = ow * S - P + kw;
            o[ow] = (iw >= 0 && iw < W) ? xr[iw] : 0.0f;
        }
    }
}

/*
 * col2im as a gather: gx[b, c, ih, iw] = sum over the kernel positions that
 * read this pixel of dcol[b, (c*K + kh)*K + kw, oh*OW + ow].  2-D range
 * (C, B): each item fills one input plane, kernel positions outermost, so
 * the sums run in the same fixed order for every pixel.
 */
__kernel void nn_col2im(__global const float *dcol, __global float *gx,
                        const int B, const int C, const int H, const int W,
                        const int K, const int S, const int P, const int OH,
                        const int OW)
{
    const int c = get_global_id(0), b = get_global_id(1);
    if (c >= C || b >= B)
        return;
    __global const float *d = dcol + ((size_t)b * C + c) * K * K * OH * OW;
    __global float *g = gx + ((size_t)b * C + c) * H * W;
    for (int i = 0; i < H * W; i++)
        g[i] = 0.0f;
    for (int kh = 0; kh < K; kh++)
        for (int kw = 0; kw < K; kw++) {
            __global const float *dq = d + (kh * K + kw) * OH * OW;
            for (int oh = 0; oh < OH; oh++) {
                const int ih = oh * S - P + kh;
                if (ih < 0 || ih >= H)
                    continue;
                for (int ow = 0; ow < OW; ow++) {
                    const int iw = ow * S - P + kw;
                    if (iw >= 0 && iw < W)
                        g[ih * W + iw] += dq[oh * OW + ow];
                }
            }
        }
}

/* y[b, oc, p] += bias[oc]; one item per (b, oc) plane. */
__kernel void nn_bias_add_nchw(__global float *y, __global const float *bias,
                               const int OC, const int P, const int BOC)
{
    const int boc = get_global_id(0);
    if (boc >= BOC)
        return;
    const float v = bias[boc % OC];
    __global float *p = y + (size_t)boc * P;
    for (int i = 0; i < P; i++)
        p[i] += v;
}

/* gb[oc] = sum over b, p of gy[b, oc, p]; one item per channel, in
   order. */
__kernel void nn_bias_grad_nchw(__global const float *gy, __global float *gb,
                                const int B, const int OC, const int P)
{
    const int oc = get_global_id(0);
    if (oc >= OC)
        return;
    float s = 0.0f;
    for (int b = 0; b < B; b++) {
        __global const float *g = gy + ((size_t)b * OC + oc) * P;
        for (int p = 0; p < P; p++)
            s += g[p];
    }
    gb[oc] = s;
}

/* Max pooling, one item per (b, c) plane; idx keeps the offset (within
   the plane) of each window's maximum, the first one on ties. */
__kernel void nn_maxpool_fwd(__global const float *x, __global float *y,
                             __global int *idx, const int BC, const int H,
                             const int W, const int K, const int S,
                             const int P, const int OH, const int OW)
{
    const int plane = get_global_id(0);
    if (plane >= BC)
        return;
    __global const float *xp = x + (size_t)plane * H * W;
    __global float *yp = y + (size_t)plane * OH * OW;
    __global int *ip = idx + (size_t)plane * OH * OW;
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            float m = -INFINITY;
            int at = -1;
            for (int kh = 0; kh < K; kh++) {
                const int ih = oh * S - P + kh;
                if (ih < 0 || ih >= H)
                    continue;
                for (int kw = 0; kw < K; kw++) {
                    const int iw = ow * S - P + kw;
                    if (iw < 0 || iw >= W)
                        continue;
                    const float v = xp[ih * W + iw];
                    if (at < 0 || v > m) {
                        m = v;
                        at = ih * W + iw;
                    }
                }
            }
            yp[oh * OW + ow] = m;
            ip[oh * OW + ow] = at;
        }
}

/* Backward, one item per plane: zero the plane, then add each window's
   gradient at its maximum, windows in order (deterministic, and correct
   for overlapping windows). */
__kernel void nn_maxpool_bwd(__global const float *gy,
                             __global const int *idx, __global float *gx,
                             const int BC, const int H, const int W,
                             const int K, const int S, const int P,
                             const int OH, const int OW)
{
    const int plane = get_global_id(0);
    if (plane >= BC)
        return;
    __global float *gp = gx + (size_t)plane * H * W;
    __global const float *g = gy + (size_t)plane * OH * OW;
    __global const int *ip = idx + (size_t)plane * OH * OW;
    for (int i = 0; i < H * W; i++)
        gp[i] = 0.0f;
    for (int o = 0; o < OH * OW; o++)
        gp[ip[o]] += g[o];
}

/* Average pooling without padding (count = K*K). */
__kernel void nn_avgpool_fwd(__global const float *x, __global float *y,
                             const int BC, const int H, const int W,
                             const int K, const int S, const int OH,
                             const int OW)
{
    /* 3-D range (OW, OH, BC) */
    const int ow = get_global_id(0), oh = get_global_id(1);
    const int plane = get_global_id(2);
    if (ow >= OW || oh >= OH || plane >= BC)
        return;
    __global const float *xp = x + (size_t)plane * H * W;
    float s = 0.0f;
    for (int kh = 0; kh < K; kh++)
        for (int kw = 0; kw < K; kw++)
            s += xp[(oh * S + kh) * W + ow * S + kw];
    y[((size_t)plane * OH + oh) * OW + ow] = s / (float)(K * K);
}

/* The windows o (rows or columns) that cover input position i: [*lo,
   *hi); one division each, no remainder (see nn_im2col). */
void nn_avgpool_cover(int i, int K, int S, int O, int *lo, int *hi)
{
    *lo = i >= K ? (i - K) / S + 1 : 0;
    *hi = i / S + 1;
    if (*hi > O)
        *hi = O;
}

/* 3-D range (W, H, BC): each input pixel sums the windows that cover it. */
__kernel void nn_avgpool_bwd(__global const float *gy, __global float *gx,
                             const int BC, const int H, const int W,
                             const int K, const int S, const int OH,
                             const int OW)
{
    const int iw = get_global_id(0), ih = get_global_id(1);
    const int plane = get_global_id(2);
    if (iw >= W || ih >= H || plane >= BC)
        return;
    int oh0, oh1, ow0, ow1;
    nn_avgpool_cover(ih, K, S, OH, &oh0, &oh1);
    nn_avgpool_cover(iw, K, S, OW, &ow0, &ow1);
    float s = 0.0f;
    for (int oh = oh0; oh < oh1; oh++)
        for (int ow = ow0; ow < ow1; ow++)
            s += gy[((size_t)plane * OH + oh) * OW + ow];
    gx[((size_t)plane * H + ih) * W + iw] = s / (float)(K * K);
}

/* Global average pool: y[bc] = mean of the plane (one item per plane). */
__kernel void nn_gap_fwd(__global const float *x, __global float *y,
                         const int BC, const int HW)
{
    const int i = get_global_id(0);
    if (i >= BC)
        return;
    float s = 0.0f;
    for (int p = 0; p < HW; p++)
        s += x[(size_t)i * HW + p];
    y[i] = s / (float)HW;
}

__kernel void nn_gap_bwd(__global const float *gy, __global float *gx,
                         const int BC, const int HW)
{
    const size_t i = get_global_id(0);
    if (i < (size_t)BC * HW)
        gx[i] = gy[i / HW] / (float)HW;
}

/* A counter-based uniform in [0, 1) from (seed, step, i): splitmix64. */
float nn_uniform(ulong seed, ulong step, ulong i)
{
    ulong z = seed + 0x9e3779b97f4a7c15UL * (step * 0x100000001b3UL + i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9UL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebUL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* Inverted dropout: mask[i] = 0 or 1/(1-p); y = x * mask. */
__kernel void nn_dropout_fwd(__global const float *x, __global float *y,
                             __global float *mask, const int n,
                             const float p, const ulong seed,
                             const ulong step)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const float m = nn_uniform(seed, step, i) < p ? 0.0f : 1.0f / (1.0f - p);
    mask[i] = m;
    y[i] = x[i] * m;
}

__kernel void nn_mul(__global const float *a, __global const float *b,
                     __global float *y, const int n)
{
    const int i = get_global_id(0);
    if (i < n)
        y[i] = a[i] * b[i];
}

/*
 * Batch normalisation statistics, one work-group per channel c over the
 * B*HW values of x [B, C, HW]: stats[2c] = mean, stats[2c+1] = 1/sqrt(var
 * + eps) with the biased variance; running stats updated as PyTorch does
 * (unbiased variance).  Two passes (mean, then centred squares) for
 * accuracy.
 */
/* The walk of work-item lid over the B*HW values (b, p) of a channel,
   wg at a time: where it starts, and its steps in b and p, each found
   once, so that no loop splits an index with / and % (Oclgrind cannot run
   the `freeze` LLVM 15 emits for such pairs). */
void nn_bn_walk(int lid, int wg, int HW, int *b, int *p, int *db, int *dp)
{
    *b = lid / HW;
    *p = lid - *b * HW;
    *db = wg / HW;
    *dp = wg - *db * HW;
}

/* The next (b, p) of the walk. */
void nn_bn_step(int HW, int db, int dp, int *b, int *p)
{
    *b += db;
    *p += dp;
    if (*p >= HW) {
        *p -= HW;
        *b += 1;
    }
}

__kernel void nn_bn_stats(__global const float *x, __global float *stats,
                          __global float *run_mean, __global float *run_var,
                          const int B, const int C, const int HW,
                          const float eps, const float momentum,
                          const int update, __local float *scratch)
{
    const int c = get_group_id(0);
    const int lid = get_local_id(0), wg = get_local_size(0);
    const int n = B * HW;
    int b0, p0, db, dp, b, p;
    nn_bn_walk(lid, wg, HW, &b0, &p0, &db, &dp);
    float s = 0.0f;
    for (b = b0, p = p0; b < B; nn_bn_step(HW, db, dp, &b, &p))
        s += x[((size_t)b * C + c) * HW + p];
    const float mean = kdcl_wg_sum(s, scratch) / (float)n;
    float q = 0.0f;
    for (b = b0, p = p0; b < B; nn_bn_step(HW, db, dp, &b, &p)) {
        const float d = x[((size_t)b * C + c) * HW + p] - mean;
        q += d * d;
    }
    const float var = kdcl_wg_sum(q, scratch) / (float)n;
    if (lid == 0) {
        stats[2 * c] = mean;
        stats[2 * c + 1] = rsqrt(var + eps);
        if (update) {
            const float unbiased = n > 1 ? var * n / (float)(n - 1) : var;
            run_mean[c] = (1.0f - momentum) * run_mean[c] + momentum * mean;
            run_var[c] = (1.0f - momentum) * run_var[c] + momentum * unbiased;
        }
    }
}

/* Eval-mode statistics from the running ones. */
__kernel void nn_bn_eval_stats(__global float *stats,
                               __global const float *run_mean,
                               __global const float *run_var, const int C,
                               const float eps)
{
    const int c = get_global_id(0);
    if (c < C) {
        stats[2 * c] = run_mean[c];
        stats[2 * c + 1] = rsqrt(run_var[c] + eps);
    }
}

/* y = (x - mean) * invstd * gamma + beta; 3-D range (HW, C, B). */
__kernel void nn_bn_apply(__global const float *x, __global float *y,
                          __global const float *stats,
                          __global const float *gamma,
                          __global const float *beta, const int B,
                          const int C, const int HW)
{
    const int p = get_global_id(0), c = get_global_id(1);
    const int b = get_global_id(2);
    if (p >= HW || c >= C || b >= B)
        return;
    const size_t i = ((size_t)b * C + c) * HW + p;
    y[i] = (x[i] - stats[2 * c]) * stats[2 * c + 1] * gamma[c] + beta[c];
}

/* Per-channel sums for the backward: dbeta = sum gy, dgamma = sum gy*xhat
   (one work-group per channel). */
__kernel void nn_bn_bwd_reduce(__global const float *x,
                               __global const float *gy,
                               __global const float *stats,
                               __global float *dgamma, __global float *dbeta,
                               const int B, const int C, const int HW,
                               __local float *scratch)
{
    const int c = get_group_id(0);
    const int lid = get_local_id(0), wg = get_local_size(0);
    const float mean = stats[2 * c], inv = stats[2 * c + 1];
    float sg = 0.0f, sgx = 0.0f;
    int b, p, db, dp;
    nn_bn_walk(lid, wg, HW, &b, &p, &db, &dp);
    for (; b < B; nn_bn_step(HW, db, dp, &b, &p)) {
        const size_t o = ((size_t)b * C + c) * HW + p;
        sg += gy[o];
        sgx += gy[o] * (x[o] - mean) * inv;
    }
    sg = kdcl_wg_sum(sg, scratch);
    sgx = kdcl_wg_sum(sgx, scratch);
    if (lid == 0) {
        dbeta[c] = sg;
        dgamma[c] = sgx;
    }
}

/* gx = gamma * invstd / n * (n gy - dbeta - xhat * dgamma); 3-D range
   (HW, C, B). */
__kernel void nn_bn_bwd_apply(__global const float *x,
                              __global const float *gy,
                              __global const float *stats,
                              __global const float *gamma,
                              __global const float *dgamma,
                              __global const float *dbeta,
                              __global float *gx, const int B, const int C,
                              const int HW)
{
    const int p = get_global_id(0), c = get_global_id(1);
    const int b = get_global_id(2);
    if (p >= HW || c >= C || b >= B)
        return;
    const int n_per_c = B * HW;
    const size_t i = ((size_t)b * C + c) * HW + p;
    const float inv = stats[2 * c + 1];
    const float xhat = (x[i] - stats[2 * c]) * inv;
    gx[i] = gamma[c] * inv / (float)n_per_c
            * ((float)n_per_c * gy[i] - dbeta[c] - xhat * dgamma[c]);
}

/* x[r, :] = data[idx[r], :] for a batch of rows of width D; labels too. */
__kernel void nn_gather_rows(__global const float *data,
                             __global const int *idx, __global float *x,
                             __global const int *all_labels,
                             __global int *labels, const int R, const int D)
{
    const int i = get_global_id(0);
    if (i >= R * D)
        return;
    const int r = i / D, d = i % D;
    x[i] = data[(size_t)idx[r] * D + d];
    if (d == 0)
        labels[r] = all_labels[idx[r]];
}

/* correct[r] = argmax(logits[r, :]) == labels[r] (first max on ties). */
__kernel void nn_argmax_correct(__global const float *logits,
                                __global const int *labels,
                                __global int *correct, const int R,
                                const int N)
{
    const int r = get_global_id(0);
    if (r >= R)
        return;
    int best = 0;
    float m = logits[(size_t)r * N];
    for (int c = 1; c < N; c++) {
        const float v = logits[(size_t)r * N + c];
        if (v > m) {
            m = v;
            best = c;
        }
    }
    correct[r] = best == labels[r];
}

/* SGD as PyTorch (dampening 0): g' = g + wd w; v = mu v + g';
   w -= lr (nesterov ? g' + mu v : v). */
__kernel void nn_sgd(__global float *w, __global const float *g,
                     __global float *v, const int n, const float lr,
                     const float mu, const float wd, const int nesterov,
                     const int first)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const float gp = g[i] + wd * w[i];
    float step = gp;
    if (mu != 0.0f) {
        const float vi = first ? gp : mu * v[i] + gp;
        v[i] = vi;
        step = nesterov ? gp + mu * vi : vi;
    }
    w[i] -= lr * step;
}

/* Adam as PyTorch (L2 weight decay added to the gradient). */
__kernel void nn_adam(__global float *w, __global const float *g,
                      __global float *m, __global float *v, const int n,
                      const float lr, const float b1, const float b2,
                      const float eps, const float wd, const float bc1,
                      const float bc2)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const float gp = g[i] + wd * w[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gp;
    const float vi = b2 * v[i] + (1.0f - b2) * gp * gp;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi / bc1) / (sqrt(vi / bc2) + eps);
}
