/*
 * plugins/graph/graph.c - graph-based distillation (survey eqs.
 * 3.1.2.1-3.1.2.2), exactly as LOSSES.md `graph` defines it, in two modes:
 *  - dense: an affinity graph over all N nodes, A(i,j) = cosine of rows
 *    i, j or exp(-||x_i - x_j||^2 / (2 sigma^2)),
 *    L_KD = weight * (1/N^2) sum_ij (A_T - A_S)^2; the Gram matrices and
 *    the backward product go through the host's GEMM;
 *  - lsp (local structure preserving, Yang et al. 2020): for every node
 *    with out-neighbours N(i) in graph.edges, LS(i,.) = softmax over
 *    j in N(i) of -||x_i - x_j||^2 / 2 and
 *    L_KD = weight * mean over those nodes of KL(LS_T(i,.) || LS_S(i,.)).
 * L = alpha * CE(student.logits, labels) + (1 - alpha) * L_KD (L = L_KD
 * without labels).  mode=auto (the default) is lsp when graph.edges is
 * given and dense otherwise.  Forward and backward are fused.
 */
#include <kdcl/plugin.h>

#include "plugin_util.h"

#include <limits.h>
#include <stdio.h>

#include "graph_cl.h"

enum { P_MODE, P_KERNEL, P_SIGMA, P_ALPHA, P_WEIGHT };
enum { MODE_AUTO, MODE_DENSE, MODE_LSP };
enum { KERNEL_COSINE, KERNEL_RBF };

static const struct kdcl_param_desc params[] = {
    {"mode", KDCL_PARAM_ENUM, 0, "auto", 0.0, 0.0, "auto|dense|lsp",
     "dense graph over all nodes or LSP over graph.edges; auto: lsp when "
     "graph.edges is given, else dense"},
    {"kernel", KDCL_PARAM_ENUM, 0, "cosine", 0.0, 0.0, "cosine|rbf",
     "dense mode's affinity: cosine similarity or exp(-d^2 / (2 sigma^2))"},
    {"sigma", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN, "1",
     0.0, 0.0, NULL, "RBF width sigma > 0 (kernel=rbf)"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "0.5",
     0.0, 1.0, NULL,
     "weight of the cross-entropy term (needs student.logits and labels); "
     "1 - alpha weighs the graph term"},
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "factor on the graph term"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.feat", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[N,Ds]",
     "student node features, one row per node"},
    {"teacher.feat", KDCL_INPUT_REQUIRED, 0, "[N,Dt]",
     "teacher node features, same N"},
    {"graph.edges", KDCL_INPUT_INT, 0, "[E,2]",
     "directed edges (source, target), node indices in [0, N); selects "
     "lsp under mode=auto"},
    {"student.logits", KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits, one row per node (B = N), for the CE term"},
    {"labels", KDCL_INPUT_INT | KDCL_INPUT_LABELS, 0, "[B]",
     "class labels in [0, C); with student.logits enables the CE term"},
};

static const char *const terms[] = {"ce", "kd"};

enum {
    K_PREP,
    K_DENSE_ROWS,
    K_DENSE_GRAD,
    K_LSP_ROWS,
    K_LSP_GRAD,
    K_FINISH,
    K_CE,
    K_LSP_ROWS_VEC,
    K_LSP_GRAD_VEC,
    N_KERNELS
};
static const char *const kernel_names[N_KERNELS] = {
    "graph_prep",     "graph_dense_rows", "graph_dense_grad",
    "graph_lsp_rows", "graph_lsp_grad",   "graph_finish",
    "kdcl_ce_rows",   "graph_lsp_rows_vec", "graph_lsp_grad_vec"};

struct state {
    const struct kdcl_host *h;
    int mode, kernel;
    double sigma, alpha, weight;
    int alpha_set;
    kdcl_kernel *k[N_KERNELS];
    size_t wg;
    int vec; /* CPU device: LSP runs one vectorised work-item per node */
    /* scratch on the device; grow-only except csr, which is rewritten */
    kdcl_tensor *xn_s, *xn_t, *st_s, *st_t, *gs, *gt, *y, *rsum;
    kdcl_tensor *rows, *ce_rows, *logit, *q, *csr;
    /* host copies for the edge list and its CSR layout */
    int32_t *edges, *host_csr;
    size_t edges_cap, csr_cap;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    kdcl_pu_free_kernels(s->h, N_KERNELS, s->k);
    {
        kdcl_tensor *t[] = {s->xn_s, s->xn_t, s->st_s,    s->st_t,
                            s->gs,   s->gt,   s->y,       s->rsum,
                            s->rows, s->ce_rows, s->logit, s->q,
                            s->csr};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
            s->h->tensor_free(t[i]);
    }
    s->h->free(s->edges);
    s->h->free(s->host_csr);
    s->h->free(s);
}

static int create(const struct kdcl_host *h, const kdcl_params *p,
                  void **out)
{
    const struct kdcl_device_info *dev = h->device(h->ctx);
    struct state *s = h->alloc_zero(1, sizeof *s);
    int status;

    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->mode = (int)h->param_i64(p, P_MODE);
    s->kernel = (int)h->param_i64(p, P_KERNEL);
    s->sigma = h->param_f64(p, P_SIGMA);
    s->alpha = h->param_f64(p, P_ALPHA);
    s->alpha_set = h->param_is_set(p, P_ALPHA);
    s->weight = h->param_f64(p, P_WEIGHT);
    /* As hinton: a CPU runs a work-group as a loop, a GPU wants it full;
       on a CPU the LSP kernels (a reduction per edge) run one vectorised
       item per node instead. */
    s->vec = dev->type == KDCL_DEVICE_CPU;
    status = kdcl_pu_build_wg(h, graph_cl, NULL, N_KERNELS, kernel_names,
                              s->k, &s->wg);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

/*
 * A grow-only f32 scratch zeroed when (re)allocated, for GEMM outputs:
 * CLBlast's kernels load C even with beta = 0, so C must hold defined
 * values.  Zeroed by a blocking write rather than tensor_fill, which
 * Oclgrind does not count as initialising the buffer (docs/testing.md).
 */
static int scratch0(const struct kdcl_host *h, kdcl_tensor **t, int64_t n)
{
    kdcl_tensor *old = *t;
    float *zero;
    size_t bytes;
    int status = kdcl_pu_scratch(h, t, n);
    if (status || *t == old)
        return status;
    bytes = (size_t)h->tensor_numel(*t) * sizeof(float);
    zero = h->alloc_zero(1, bytes ? bytes : 1);
    if (!zero)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    status = h->tensor_write(*t, zero, bytes);
    h->free(zero);
    return status;
}

static int launch(struct state *s, int k, size_t groups,
                  const struct kdcl_arg *args, size_t n_args)
{
    const size_t g = groups * s->wg, l = s->wg;
    return s->h->launch(s->h->ctx, s->k[k], 1, &g, &l, (uint32_t)n_args,
                        args);
}

#define LAUNCH(s, k, groups, ...)                                             \
    do {                                                                      \
        const struct kdcl_arg args_[] = {__VA_ARGS__};                        \
        int st_ = launch((s), (k), (groups), args_,                           \
                         sizeof args_ / sizeof args_[0]);                     \
        if (st_)                                                              \
            return st_;                                                       \
    } while (0)

/* One work-item per row, work-group size left to the driver. */
#define LAUNCH_VEC(s, kid, n, ...)                                            \
    do {                                                                      \
        const struct kdcl_arg args_[] = {__VA_ARGS__};                        \
        const size_t g_ = (n);                                                \
        int st_ = (s)->h->launch((s)->h->ctx, (s)->k[kid], 1, &g_, NULL,      \
                                 sizeof args_ / sizeof args_[0], args_);      \
        if (st_)                                                              \
            return st_;                                                       \
    } while (0)

/* Dense mode: rows, kd_scale, and the student gradient when g. */
static int dense(struct state *s, const kdcl_tensor *xs,
                 const kdcl_tensor *xt, kdcl_tensor *g, int64_t N,
                 int64_t Ds, int64_t Dt, double a, float *kd_scale)
{
    const struct kdcl_host *h = s->h;
    const int cosine = s->kernel == KERNEL_COSINE;
    const kdcl_tensor *as = xs, *at = xt; /* the GEMM operands X' */
    int status;

    if ((status = kdcl_pu_scratch(h, &s->st_s, N))
        || (status = kdcl_pu_scratch(h, &s->st_t, N))
        || (status = kdcl_pu_scratch(h, &s->rows, N))
        || (status = scratch0(h, &s->gs, N * N))
        || (status = scratch0(h, &s->gt, N * N)))
        return status;
    if (cosine
        && ((status = kdcl_pu_scratch(h, &s->xn_s, N * Ds))
            || (status = kdcl_pu_scratch(h, &s->xn_t, N * Dt))))
        return status;
    if (g
        && ((status = scratch0(h, &s->y, N * Ds))
            || (status = kdcl_pu_scratch(h, &s->rsum, N))))
        return status;
    LAUNCH(s, K_PREP, (size_t)N, KDCL_A_TENSOR(xs),
           KDCL_A_TENSOR(cosine ? s->xn_s : NULL), KDCL_A_TENSOR(s->st_s),
           KDCL_A_I32((int32_t)Ds), KDCL_A_I32(cosine));
    LAUNCH(s, K_PREP, (size_t)N, KDCL_A_TENSOR(xt),
           KDCL_A_TENSOR(cosine ? s->xn_t : NULL), KDCL_A_TENSOR(s->st_t),
           KDCL_A_I32((int32_t)Dt), KDCL_A_I32(cosine));
    if (cosine) {
        as = s->xn_s;
        at = s->xn_t;
    }
    /* G = X' X'^T */
    if ((status = h->gemm(h->ctx, 0, 1, (size_t)N, (size_t)N, (size_t)Ds,
                          1.0f, as, 0, (size_t)Ds, as, 0, (size_t)Ds, 0.0f,
                          s->gs, 0, (size_t)N))
        || (status = h->gemm(h->ctx, 0, 1, (size_t)N, (size_t)N, (size_t)Dt,
                             1.0f, at, 0, (size_t)Dt, at, 0, (size_t)Dt,
                             0.0f, s->gt, 0, (size_t)N)))
        return status;
    LAUNCH(s, K_DENSE_ROWS, (size_t)N, KDCL_A_TENSOR(s->gs),
           KDCL_A_TENSOR(s->gt), KDCL_A_TENSOR(s->st_s),
           KDCL_A_TENSOR(s->st_t), KDCL_A_TENSOR(s->rows),
           KDCL_A_TENSOR(g ? s->rsum : NULL), KDCL_A_I32((int32_t)N),
           KDCL_A_I32(cosine),
           KDCL_A_F32((float)(1.0 / (2.0 * s->sigma * s->sigma))),
           KDCL_A_F32((float)(2.0 * s->weight * (1.0 - a)
                              / ((double)N * (double)N))),
           KDCL_A_I32(g != NULL));
    *kd_scale = (float)(s->weight / ((double)N * (double)N));
    if (!g)
        return KDCL_OK;
    /* Y = M X' (M overwrote the student's G) */
    if ((status = h->gemm(h->ctx, 0, 0, (size_t)N, (size_t)Ds, (size_t)N,
                          1.0f, s->gs, 0, (size_t)N, as, 0, (size_t)Ds, 0.0f,
                          s->y, 0, (size_t)Ds)))
        return status;
    LAUNCH(s, K_DENSE_GRAD, (size_t)N, KDCL_A_TENSOR(xs),
           KDCL_A_TENSOR(cosine ? s->xn_s : NULL), KDCL_A_TENSOR(s->st_s),
           KDCL_A_TENSOR(s->y), KDCL_A_TENSOR(s->rsum), KDCL_A_TENSOR(g),
           KDCL_A_I32((int32_t)Ds), KDCL_A_I32(cosine),
           KDCL_A_F32((float)(2.0 / (s->sigma * s->sigma))));
    return KDCL_OK;
}

/* Read graph.edges, check it, and group it by source and by target into
   s->host_csr: out_off[N+1] out_tgt[E] in_off[N+1] in_src[E] in_eid[E].
   *n_valid = nodes with out-edges. */
static int build_csr(struct state *s, const kdcl_tensor *edges, int64_t N,
                     int64_t *E_out, int64_t *n_valid)
{
    const struct kdcl_host *h = s->h;
    char sh[128];
    int64_t E;
    size_t need;
    int32_t *out_off, *out_tgt, *in_off, *in_src, *in_eid;
    int status;

    if (h->tensor_ndim(edges) != 2 || h->tensor_dim(edges, 1) != 2) {
        kdcl_pu_shape_str(h, edges, sh, sizeof sh);
        return h->error(h->ctx, KDCL_ESHAPE,
                        "graph.edges must be [E,2] (one source, target pair "
                        "per row), got %s",
                        sh);
    }
    E = h->tensor_dim(edges, 0);
    if (2 * (N + 1) + 3 * E > INT_MAX)
        return h->error(h->ctx, KDCL_ESHAPE,
                        "graph.edges has %lld edges over %lld nodes, more "
                        "than this plugin indexes",
                        (long long)E, (long long)N);
    *E_out = E;
    if ((size_t)(2 * E) > s->edges_cap) {
        h->free(s->edges);
        s->edges = h->alloc((size_t)(2 * E) * sizeof *s->edges);
        s->edges_cap = s->edges ? (size_t)(2 * E) : 0;
        if (!s->edges)
            return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    }
    need = (size_t)(2 * (N + 1) + 3 * E);
    if (need > s->csr_cap) {
        h->free(s->host_csr);
        s->host_csr = h->alloc(need * sizeof *s->host_csr);
        s->csr_cap = s->host_csr ? need : 0;
        if (!s->host_csr)
            return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    }
    if (E && (status = h->tensor_read(edges, s->edges,
                                      (size_t)(2 * E) * sizeof *s->edges)))
        return status;
    for (int64_t e = 0; e < E; e++) {
        const int32_t i = s->edges[2 * e], j = s->edges[2 * e + 1];
        if (i < 0 || i >= N || j < 0 || j >= N)
            return h->error(h->ctx, KDCL_ERANGE,
                            "graph.edges[%lld] = (%d, %d): node indices must "
                            "lie in [0, %lld) (the rows of student.feat)",
                            (long long)e, (int)i, (int)j, (long long)N);
    }
    out_off = s->host_csr;
    out_tgt = out_off + N + 1;
    in_off = out_tgt + E;
    in_src = in_off + N + 1;
    in_eid = in_src + E;
    for (int64_t i = 0; i <= N; i++)
        out_off[i] = in_off[i] = 0;
    for (int64_t e = 0; e < E; e++) {
        out_off[s->edges[2 * e] + 1]++;
        in_off[s->edges[2 * e + 1] + 1]++;
    }
    *n_valid = 0;
    for (int64_t i = 0; i < N; i++) {
        *n_valid += out_off[i + 1] > 0;
        out_off[i + 1] += out_off[i];
        in_off[i + 1] += in_off[i];
    }
    /* Counting sort, stable: a source's edges keep their given order
       (duplicates included), and so do a target's. */
    {
        int32_t *fill = h->alloc_zero((size_t)(2 * N + 1), sizeof *fill);
        if (!fill)
            return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
        for (int64_t e = 0; e < E; e++) {
            const int32_t i = s->edges[2 * e], j = s->edges[2 * e + 1];
            const int32_t pos = out_off[i] + fill[i]++;
            const int32_t ip = in_off[j] + fill[N + j]++;
            out_tgt[pos] = j;
            in_src[ip] = i;
            in_eid[ip] = pos;
        }
        h->free(fill);
    }
    if (s->csr && h->tensor_numel(s->csr) != (int64_t)need) {
        h->tensor_free(s->csr);
        s->csr = NULL;
    }
    if (!s->csr) {
        const int64_t n = (int64_t)need;
        if ((status = h->tensor_init(h->ctx, KDCL_DTYPE_I32, 1, &n, &s->csr)))
            return status;
    }
    return h->tensor_write(s->csr, s->host_csr, need * sizeof *s->host_csr);
}

/* LSP mode: rows, kd_scale, n_rows, and the student gradient when g. */
static int lsp(struct state *s, const kdcl_tensor *xs, const kdcl_tensor *xt,
               const kdcl_tensor *edges, kdcl_tensor *g, int64_t N,
               int64_t Ds, int64_t Dt, double a, float *kd_scale,
               int64_t *n_rows)
{
    const struct kdcl_host *h = s->h;
    int64_t E = 0, n_valid = 0;
    int32_t o_out, o_tgt, o_in, o_src, o_eid;
    int status;

    if ((status = build_csr(s, edges, N, &E, &n_valid)))
        return status;
    if (n_valid == 0) {
        /* The mean over no nodes is taken as 0 (see docs). */
        *kd_scale = 0.0f;
        *n_rows = 0;
        return g ? h->tensor_fill(g, 0.0) : KDCL_OK;
    }
    o_out = 0;
    o_tgt = (int32_t)(N + 1);
    o_in = (int32_t)(N + 1 + E);
    o_src = (int32_t)(2 * (N + 1) + E);
    o_eid = (int32_t)(2 * (N + 1) + 2 * E);
    if ((status = kdcl_pu_scratch(h, &s->rows, N))
        || (status = kdcl_pu_scratch(h, &s->logit, 2 * E))
        || (status = kdcl_pu_scratch(h, &s->q, E)))
        return status;
    if (s->vec)
        LAUNCH_VEC(s, K_LSP_ROWS_VEC, (size_t)N, KDCL_A_TENSOR(xs),
                   KDCL_A_TENSOR(xt), KDCL_A_TENSOR(s->csr),
                   KDCL_A_TENSOR(s->logit), KDCL_A_TENSOR(s->q),
                   KDCL_A_TENSOR(s->rows), KDCL_A_I32((int32_t)N),
                   KDCL_A_I32((int32_t)Ds), KDCL_A_I32((int32_t)Dt),
                   KDCL_A_I32(o_out), KDCL_A_I32(o_tgt));
    else
        LAUNCH(s, K_LSP_ROWS, (size_t)N, KDCL_A_TENSOR(xs),
               KDCL_A_TENSOR(xt), KDCL_A_TENSOR(s->csr),
               KDCL_A_TENSOR(s->logit), KDCL_A_TENSOR(s->q),
               KDCL_A_TENSOR(s->rows), KDCL_A_I32((int32_t)Ds),
               KDCL_A_I32((int32_t)Dt), KDCL_A_I32(o_out),
               KDCL_A_I32(o_tgt));
    *kd_scale = (float)(s->weight / (double)n_valid);
    *n_rows = N;
    if (!g)
        return KDCL_OK;
    if (s->vec)
        LAUNCH_VEC(s, K_LSP_GRAD_VEC, (size_t)N, KDCL_A_TENSOR(xs),
                   KDCL_A_TENSOR(s->csr), KDCL_A_TENSOR(s->q),
                   KDCL_A_TENSOR(g), KDCL_A_I32((int32_t)N),
                   KDCL_A_I32((int32_t)Ds), KDCL_A_I32(o_out),
                   KDCL_A_I32(o_tgt), KDCL_A_I32(o_in), KDCL_A_I32(o_src),
                   KDCL_A_I32(o_eid),
                   KDCL_A_F32((float)(s->weight * (1.0 - a)
                                      / (double)n_valid)));
    else
        LAUNCH(s, K_LSP_GRAD, (size_t)N, KDCL_A_TENSOR(xs),
               KDCL_A_TENSOR(s->csr), KDCL_A_TENSOR(s->q), KDCL_A_TENSOR(g),
               KDCL_A_I32((int32_t)Ds), KDCL_A_I32(o_out), KDCL_A_I32(o_tgt),
               KDCL_A_I32(o_in), KDCL_A_I32(o_src), KDCL_A_I32(o_eid),
               KDCL_A_F32((float)(s->weight * (1.0 - a)
                                  / (double)n_valid)));
    return KDCL_OK;
}

/* The mode this call runs: auto resolves on the presence of edges. */
static int resolve_mode(const struct state *s, const kdcl_tensor *edges)
{
    if (s->mode == MODE_AUTO)
        return edges ? MODE_LSP : MODE_DENSE;
    return s->mode;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *xs, *xt, *edges, *zs, *y;
    kdcl_tensor *g, *gz;
    int64_t N = 0, Ds = 0, Nt = 0, Dt = 0, Bz = 0, C = 0, n_rows = 0;
    float kd_scale = 0.0f;
    int mode, has_ce, status;
    double a;

    if ((status = kdcl_pu_need(h, io, "student.feat", &xs))
        || (status = kdcl_pu_need(h, io, "teacher.feat", &xt))
        || (status = kdcl_pu_2d(h, xs, "student.feat", &N, &Ds))
        || (status = kdcl_pu_2d(h, xt, "teacher.feat", &Nt, &Dt)))
        return status;
    if (Nt != N) {
        char a1[128], a2[128];
        kdcl_pu_shape_str(h, xs, a1, sizeof a1);
        kdcl_pu_shape_str(h, xt, a2, sizeof a2);
        return h->error(h->ctx, KDCL_ESHAPE,
                        "student.feat %s and teacher.feat %s differ in N (one "
                        "row per node)",
                        a1, a2);
    }
    if (N > INT_MAX || Ds > INT_MAX || Dt > INT_MAX)
        return h->error(h->ctx, KDCL_ESHAPE,
                        "student.feat/teacher.feat are too large");
    edges = h->io_input(io, "graph.edges");
    mode = resolve_mode(s, edges);
    if (mode == MODE_LSP && !edges)
        return h->error(h->ctx, KDCL_EMISSING,
                        "missing input graph.edges [E,2]: mode=lsp needs the "
                        "graph's edges");
    if (mode == MODE_DENSE && edges)
        h->log(h->ctx, KDCL_LOG_INFO,
               "graph: mode=dense uses every node pair; graph.edges is "
               "ignored");
    zs = h->io_input(io, "student.logits");
    y = h->io_input(io, "labels");
    if (zs) {
        if ((status = kdcl_pu_2d(h, zs, "student.logits", &Bz, &C)))
            return status;
        if (Bz != N)
            return h->error(h->ctx, KDCL_ESHAPE,
                            "student.logits has %lld rows but student.feat "
                            "has N = %lld (one row per node)",
                            (long long)Bz, (long long)N);
    }
    if ((status = kdcl_pu_task_labels(h, zs, y, N, s->alpha, s->alpha_set)))
        return status;
    has_ce = y != NULL;
    /* Without labels the graph term stands alone (LOSSES.md). */
    a = has_ce ? s->alpha : 0.0;
    g = h->io_grad(io, "student.feat");

    if (mode == MODE_DENSE) {
        status = dense(s, xs, xt, g, N, Ds, Dt, a, &kd_scale);
        n_rows = N;
    } else {
        status = lsp(s, xs, xt, edges, g, N, Ds, Dt, a, &kd_scale, &n_rows);
    }
    if (status)
        return status;

    if ((status = kdcl_pu_scratch(h, &s->ce_rows, N))
        || (status = kdcl_pu_scratch(h, &s->rows, N)))
        return status;
    gz = zs ? h->io_grad(io, "student.logits") : NULL;
    /* Logits without labels do not enter the loss: zero gradient. */
    if ((status = kdcl_pu_ce_or_zero(h, s->k[K_CE], has_ce, zs, y, gz,
                                     s->ce_rows, N, C,
                                     (float)(a / (double)N))))
        return status;
    LAUNCH(s, K_FINISH, 1, KDCL_A_TENSOR(s->rows), KDCL_A_TENSOR(s->ce_rows),
           KDCL_A_TENSOR(h->io_output(io)), KDCL_A_I32((int32_t)n_rows),
           KDCL_A_I32((int32_t)N), KDCL_A_F32(kd_scale),
           KDCL_A_F32((float)s->alpha), KDCL_A_I32(has_ce));
    return KDCL_OK;
}

/* GEMM flops of dense mode (none in lsp), and the device bytes moved. */
static int cost(void *p, const kdcl_io *io, double *flops, double *bytes)
{
    const struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *xs = h->io_input(io, "student.feat");
    const kdcl_tensor *xt = h->io_input(io, "teacher.feat");
    const kdcl_tensor *edges = h->io_input(io, "graph.edges");
    const int grad = h->io_grad(io, "student.feat") != NULL;
    double N, Ds, Dt, E;

    *flops = 0;
    *bytes = 0;
    if (!xs || !xt || h->tensor_ndim(xs) != 2 || h->tensor_ndim(xt) != 2)
        return KDCL_OK;
    N = (double)h->tensor_dim(xs, 0);
    Ds = (double)h->tensor_dim(xs, 1);
    Dt = (double)h->tensor_dim(xt, 1);
    if (resolve_mode(s, edges) == MODE_DENSE) {
        const double cos = s->kernel == KERNEL_COSINE;
        *flops = 2.0 * N * N * (Ds + Dt) + (grad ? 2.0 * N * N * Ds : 0.0);
        /* inputs read by prep and GEMM, normalised copies written and read
           (cosine), both Gram matrices written and read, then M written,
           Y written, and the gradient kernel's reads and write */
        *bytes = 4.0 * (2.0 * N * (Ds + Dt) + cos * 2.0 * N * (Ds + Dt)
                        + 4.0 * N * N
                        + (grad ? 2.0 * N * N + 4.0 * N * Ds : 0.0));
    } else {
        E = edges && h->tensor_ndim(edges) == 2
                ? (double)h->tensor_dim(edges, 0)
                : 0.0;
        /* own rows, one neighbour row per edge in both spaces, per-edge
           scratch, and in the gradient two neighbour rows per edge */
        *bytes = 4.0 * (N * (Ds + Dt) + E * (Ds + Dt) + 2.0 * E + 5.0 * E
                        + 2.0 * N + (grad ? 2.0 * E * Ds + 2.0 * N * Ds : 0.0));
    }
    return KDCL_OK;
}

static const struct kdcl_plugin graph = {
    KDCL_PLUGIN_HEAD,
    .name = "graph",
    .family = "graph",
    .summary = "graph-based KD: dense affinity matching (cosine/rbf) or "
               "LSP local-structure KL over edges",
    .citation = "survey eqs. 3.1.2.1-3.1.2.2; LSP: Yang et al. 2020",
    .version = "1.0.0",
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .param_desc_size = sizeof params[0],
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .input_desc_size = sizeof inputs[0],
    .terms = terms,
    .n_terms = 2,
    .create = create,
    .destroy = destroy,
    .forward = forward,
    .cost = cost,
};

KDCL_PLUGIN_DEFINE(graph, graph)
