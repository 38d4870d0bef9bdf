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

/* c[off + r*ld + j] = beta * c[...] for r < m, j < n (0 when beta is 0):
   an empty GEMM (k = 0). */
__kernel void nn_scale_block(__global float *c, const long off, const int m,
                             const int n, const int ld, const float beta)
{
    const int i = get_global_id(0);
    if (i >= m * n)
        return;
    __global float *p = c + off + (size_t)(i / n) * ld + i % n;
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
 * im2col for the whole batch: col[(b*OH*OW + oh*OW + ow), (c*K*K + kh*K +
 * kw)] = x[b, c, oh*S - P + kh, ow*S - P + kw] (0 outside).  One item per
 * col row (an output pixel of one image), writing its C*K*K values
 * contiguously; 32-bit index arithmetic (64-bit division is slow on CPUs).
 */
__kernel void nn_im2col(__global const float *x, __global float *col,
                        const int B, const int C, const int H, const int W,
                        const int K, const int S, const int P, const int OH,
                        const int OW)
{
    const int row = get_global_id(0);
    if (row >= B * OH * OW)
        return;
    const int ow = row % OW, oh = (row / OW) % OH, b = row / (OW * OH);
    const int ckk = C * K * K;
    __global float *out = col + (size_t)row * ckk;
    __global const float *xb = x + (size_t)b * C * H * W;
    const int h0 = oh * S - P, w0 = ow * S - P;
    int q = 0;
    for (int c = 0; c < C; c++) {
        __global const float *xc = xb + c * H * W;
        for (int kh = 0; kh < K; kh++) {
            const int ih = h0 + kh;
            const bool row_in = ih >= 0 && ih < H;
            for (int kw = 0; kw < K; kw++, q++) {
                const int iw = w0 + kw;
                out[q] = (row_in && iw >= 0 && iw < W) ? xc[ih * W + iw]
                                                       : 0.0f;
            }
        }
    }
}

/*
 * col2im as a gather: gx[b, c, ih, iw] = sum over the kernel positions that
 * read this pixel of dcol[(b*OH*OW + oh*OW + ow), (c*K*K + kh*K + kw)].
 * One item per input element.
 */
__kernel void nn_col2im(__global const float *dcol, __global float *gx,
                        const int B, const int C, const int H, const int W,
                        const int K, const int S, const int P, const int OH,
                        const int OW)
{
    const int i = get_global_id(0);
    if (i >= B * C * H * W)
        return;
    const int iw = i % W, ih = (i / W) % H, c = (i / (W * H)) % C;
    const int b = i / (W * H * C);
    const int ckk = C * K * K;
    float s = 0.0f;
    for (int kh = 0; kh < K; kh++) {
        const int th = ih + P - kh;
        if (th < 0 || th % S)
            continue;
        const int oh = th / S;
        if (oh >= OH)
            continue;
        for (int kw = 0; kw < K; kw++) {
            const int tw = iw + P - kw;
            if (tw < 0 || tw % S)
                continue;
            const int ow = tw / S;
            if (ow >= OW)
                continue;
            const int row = (b * OH + oh) * OW + ow;
            s += dcol[(size_t)row * ckk + (c * K + kh) * K + kw];
        }
    }
    gx[i] = s;
}

/* y[b, oc, p] = ycol[(b*P + p), oc] + bias[oc]  (P = OH*OW). */
__kernel void nn_col_to_nchw(__global const float *ycol,
                             __global const float *bias, __global float *y,
                             const int B, const int OC, const int P)
{
    const int i = get_global_id(0);
    if (i >= B * OC * P)
        return;
    const int p = i % P, oc = (i / P) % OC, b = i / (P * OC);
    y[i] = ycol[(b * P + p) * OC + oc] + bias[oc];
}

/* gcol[(b*P + p), oc] = gy[b, oc, p]. */
__kernel void nn_nchw_to_col(__global const float *gy, __global float *gcol,
                             const int B, const int OC, const int P)
{
    const int i = get_global_id(0);
    if (i >= B * OC * P)
        return;
    const int oc = i % OC, p = (i / OC) % P, b = i / (OC * P);
    gcol[i] = gy[(b * OC + oc) * P + p];
}

/* Max pooling; idx keeps the flat input offset (within the plane) of the
   maximum, the first one on ties. */
__kernel void nn_maxpool_fwd(__global const float *x, __global float *y,
                             __global int *idx, const int BC, const int H,
                             const int W, const int K, const int S,
                             const int P, const int OH, const int OW)
{
    const int i = get_global_id(0);
    if (i >= BC * OH * OW)
        return;
    const int ow = i % OW, oh = (i / OW) % OH;
    const int plane = i / (OW * OH);
    __global const float *xp = x + plane * H * W;
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
    y[i] = m;
    idx[i] = at;
}

/* Gather: each input pixel sums gy over the windows whose maximum it was. */
__kernel void nn_maxpool_bwd(__global const float *gy,
                             __global const int *idx, __global float *gx,
                             const int BC, const int H, const int W,
                             const int K, const int S, const int P,
                             const int OH, const int OW)
{
    const int i = get_global_id(0);
    if (i >= BC * H * W)
        return;
    const int iw = i % W, ih = (i / W) % H;
    const int plane = i / (W * H);
    const int self = ih * W + iw;
    float s = 0.0f;
    if (K == S && P == 0) {
        /* Non-overlapping windows (the usual 2x2/2): one window. */
        const int oh = ih / K, ow = iw / K;
        const int o = (plane * OH + oh) * OW + ow;
        gx[i] = (oh < OH && ow < OW && idx[o] == self) ? gy[o] : 0.0f;
        return;
    }
    for (int kh = 0; kh < K; kh++) {
        const int th = ih + P - kh;
        if (th < 0 || th % S || th / S >= OH)
            continue;
        for (int kw = 0; kw < K; kw++) {
            const int tw = iw + P - kw;
            if (tw < 0 || tw % S || tw / S >= OW)
                continue;
            const size_t o = (plane * OH + th / S) * OW + tw / S;
            if (idx[o] == self)
                s += gy[o];
        }
    }
    gx[i] = s;
}

/* Average pooling without padding (count = K*K). */
__kernel void nn_avgpool_fwd(__global const float *x, __global float *y,
                             const int BC, const int H, const int W,
                             const int K, const int S, const int OH,
                             const int OW)
{
    const int i = get_global_id(0);
    if (i >= BC * OH * OW)
        return;
    const int ow = i % OW, oh = (i / OW) % OH;
    const int plane = i / (OW * OH);
    __global const float *xp = x + plane * H * W;
    float s = 0.0f;
    for (int kh = 0; kh < K; kh++)
        for (int kw = 0; kw < K; kw++)
            s += xp[(oh * S + kh) * W + ow * S + kw];
    y[i] = s / (float)(K * K);
}

__kernel void nn_avgpool_bwd(__global const float *gy, __global float *gx,
                             const int BC, const int H, const int W,
                             const int K, const int S, const int OH,
                             const int OW)
{
    const int i = get_global_id(0);
    if (i >= BC * H * W)
        return;
    const int iw = i % W, ih = (i / W) % H;
    const int plane = i / (W * H);
    float s = 0.0f;
    for (int kh = 0; kh < K; kh++) {
        const int th = ih - kh;
        if (th < 0 || th % S || th / S >= OH)
            continue;
        for (int kw = 0; kw < K; kw++) {
            const int tw = iw - kw;
            if (tw < 0 || tw % S || tw / S >= OW)
                continue;
            s += gy[(plane * OH + th / S) * OW + tw / S];
        }
    }
    gx[i] = s / (float)(K * K);
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
__kernel void nn_bn_stats(__global const float *x, __global float *stats,
                          __global float *run_mean, __global float *run_var,
                          const int B, const int C, const int HW,
                          const float eps, const float momentum,
                          const int update, __local float *scratch)
{
    const int c = get_group_id(0);
    const int lid = get_local_id(0), wg = get_local_size(0);
    const int n = B * HW;
    float s = 0.0f;
    for (int j = lid; j < n; j += wg) {
        const int b = j / HW, p = j % HW;
        s += x[((size_t)b * C + c) * HW + p];
    }
    const float mean = kdcl_wg_sum(s, scratch) / (float)n;
    float q = 0.0f;
    for (int j = lid; j < n; j += wg) {
        const int b = j / HW, p = j % HW;
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

/* y = (x - mean) * invstd * gamma + beta. */
__kernel void nn_bn_apply(__global const float *x, __global float *y,
                          __global const float *stats,
                          __global const float *gamma,
                          __global const float *beta, const int C,
                          const int HW, const int n)
{
    const int i = get_global_id(0);
    if (i >= n)
        return;
    const int c = (i / HW) % C;
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
    const int n = B * HW;
    const float mean = stats[2 * c], inv = stats[2 * c + 1];
    float sg = 0.0f, sgx = 0.0f;
    for (int j = lid; j < n; j += wg) {
        const size_t o = ((size_t)(j / HW) * C + c) * HW + j % HW;
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

/* gx = gamma * invstd / n * (n gy - dbeta - xhat * dgamma). */
__kernel void nn_bn_bwd_apply(__global const float *x,
                              __global const float *gy,
                              __global const float *stats,
                              __global const float *gamma,
                              __global const float *dgamma,
                              __global const float *dbeta,
                              __global float *gx, const int C, const int HW,
                              const int n_per_c, const int total)
{
    const int i = get_global_id(0);
    if (i >= total)
        return;
    const int c = (i / HW) % C;
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
