/*
 * tests/test-plugin-graph.c - the graph plugin (dense cosine, dense rbf,
 * lsp) against an independent float64 reference (LOSSES.md `graph`),
 * finite differences, determinism, degenerate graphs (nodes without
 * neighbours, duplicate edges, self-loops, no edges), extreme features,
 * bad input, the cost model and `kdcl loss` golden values.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { COS, RBF, LSP };

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernels         */

struct ref {
    int N, Ds, Dt;
    const double *xt;  /* teacher [N,Dt] */
    int kind;          /* COS, RBF (dense) or LSP */
    double sigma, weight, alpha;
    int E;
    const int32_t *edges; /* [E,2] */
    int C;                /* logit classes; 0: no logits */
    const int32_t *y;     /* NULL: no labels */
};

/* Affinity A(i,j) of rows of X [N,D] and, when gi/gj are non-NULL, its
   derivatives with respect to x_i and x_j. */
static double affinity(const struct ref *r, const double *X, int D, int i,
                       int j, double *gi, double *gj)
{
    const double *a = X + (size_t)i * D, *b = X + (size_t)j * D;
    if (r->kind == COS) {
        double ab = 0, aa = 0, bb = 0, na, nb, A;
        for (int d = 0; d < D; d++) {
            ab += a[d] * b[d];
            aa += a[d] * a[d];
            bb += b[d] * b[d];
        }
        na = fmax(sqrt(aa), 1e-8);
        nb = fmax(sqrt(bb), 1e-8);
        A = ab / (na * nb);
        if (gi)
            for (int d = 0; d < D; d++) {
                /* d/da of (a.b) / (max(|a|,eps) max(|b|,eps)) */
                gi[d] = b[d] / (na * nb)
                        - (sqrt(aa) > 1e-8 ? A * a[d] / aa : 0.0);
                gj[d] = a[d] / (na * nb)
                        - (sqrt(bb) > 1e-8 ? A * b[d] / bb : 0.0);
            }
        return A;
    } else {
        double d2 = 0, A;
        for (int d = 0; d < D; d++)
            d2 += (a[d] - b[d]) * (a[d] - b[d]);
        A = exp(-d2 / (2 * r->sigma * r->sigma));
        if (gi)
            for (int d = 0; d < D; d++) {
                gi[d] = -A * (a[d] - b[d]) / (r->sigma * r->sigma);
                gj[d] = -gi[d];
            }
        return A;
    }
}

/* x = student.feat [N,Ds] then student.logits [N,C].  Loss, and ce, kd,
   the gradient (laid out like x) when non-NULL. */
static double ref_loss(const struct ref *r, const double *x, double *ce_out,
                       double *kd_out, double *grad)
{
    const int N = r->N, Ds = r->Ds, Dt = r->Dt;
    const int has_ce = r->y != NULL && r->C > 0;
    const double a = has_ce ? r->alpha : 0.0;
    double kd = 0, ce = 0;
    double *gi = malloc(sizeof(double) * Ds), *gj = malloc(sizeof(double) * Ds);

    if (grad)
        memset(grad, 0, sizeof(double) * ((size_t)N * Ds + (size_t)N * r->C));
    if (r->kind != LSP) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) {
                double As = affinity(r, x, Ds, i, j, grad ? gi : NULL, gj);
                double At = affinity(r, r->xt, Dt, i, j, NULL, NULL);
                kd += (At - As) * (At - As);
                if (grad) {
                    double m = (1 - a) * r->weight * 2 * (As - At)
                               / ((double)N * N);
                    for (int d = 0; d < Ds; d++) {
                        grad[(size_t)i * Ds + d] += m * gi[d];
                        grad[(size_t)j * Ds + d] += m * gj[d];
                    }
                }
            }
        kd *= r->weight / ((double)N * N);
    } else {
        int n_valid = 0;
        double *ls = malloc(sizeof(double) * (r->E + 1)),
               *lt = malloc(sizeof(double) * (r->E + 1));
        int *nb = malloc(sizeof(int) * (r->E + 1));
        for (int i = 0; i < N; i++) {
            int k = 0;
            double ms = -INFINITY, mt = -INFINITY, zs = 0, zt = 0;
            for (int e = 0; e < r->E; e++)
                if (r->edges[2 * e] == i)
                    nb[k++] = r->edges[2 * e + 1];
            if (!k)
                continue;
            n_valid++;
            for (int e = 0; e < k; e++) {
                double ds = 0, dt = 0;
                for (int d = 0; d < Ds; d++)
                    ds += pow(x[(size_t)i * Ds + d] - x[(size_t)nb[e] * Ds + d],
                              2);
                for (int d = 0; d < Dt; d++)
                    dt += pow(r->xt[(size_t)i * Dt + d]
                                  - r->xt[(size_t)nb[e] * Dt + d],
                              2);
                ls[e] = -ds / 2;
                lt[e] = -dt / 2;
                ms = fmax(ms, ls[e]);
                mt = fmax(mt, lt[e]);
            }
            for (int e = 0; e < k; e++) {
                zs += exp(ls[e] - ms);
                zt += exp(lt[e] - mt);
            }
            for (int e = 0; e < k; e++) {
                ls[e] -= ms + log(zs); /* log LS_S(i, e) */
                lt[e] -= mt + log(zt);
                kd += exp(lt[e]) * (lt[e] - ls[e]);
            }
            if (grad)
                for (int e = 0; e < k; e++) {
                    /* dKL/dl_S = LS_S - LS_T; dl/dx_i = -(x_i - x_j) */
                    double w = exp(ls[e]) - exp(lt[e]);
                    for (int d = 0; d < Ds; d++) {
                        double diff = x[(size_t)i * Ds + d]
                                      - x[(size_t)nb[e] * Ds + d];
                        grad[(size_t)i * Ds + d] -= w * diff;
                        grad[(size_t)nb[e] * Ds + d] += w * diff;
                    }
                }
        }
        free(ls);
        free(lt);
        free(nb);
        if (grad)
            for (size_t i = 0; i < (size_t)N * Ds; i++)
                grad[i] = n_valid ? grad[i] * (1 - a) * r->weight / n_valid
                                  : 0.0;
        kd = n_valid ? r->weight * kd / n_valid : 0.0;
    }
    if (r->C > 0) {
        const double *z = x + (size_t)N * Ds;
        for (int b = 0; b < N; b++) {
            const double *zb = z + (size_t)b * r->C;
            double m = -INFINITY, s = 0, lse;
            for (int c = 0; c < r->C; c++)
                m = fmax(m, zb[c]);
            for (int c = 0; c < r->C; c++)
                s += exp(zb[c] - m);
            lse = m + log(s);
            if (has_ce)
                ce += lse - zb[r->y[b]];
            if (grad)
                for (int c = 0; c < r->C; c++)
                    grad[(size_t)N * Ds + (size_t)b * r->C + c] =
                        has_ce ? a * (exp(zb[c] - lse) - (c == r->y[b])) / N
                               : 0.0;
        }
        ce /= N;
    }
    free(gi);
    free(gj);
    if (ce_out)
        *ce_out = ce;
    if (kd_out)
        *kd_out = kd;
    return has_ce ? a * ce + (1 - a) * kd : kd;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------- */
/* Cases                                                                   */

struct case_ {
    int N, Ds, Dt, E, C;
    float *xs, *xt, *g, *z, *gz;
    int32_t *edges, *y;
};

static void make_case(struct case_ *k, int N, int Ds, int Dt, int E, int C,
                      double lo, double hi, uint64_t seed)
{
    memset(k, 0, sizeof *k);
    k->N = N;
    k->Ds = Ds;
    k->Dt = Dt;
    k->E = E;
    k->C = C;
    k->xs = malloc(sizeof(float) * N * Ds);
    k->xt = malloc(sizeof(float) * N * Dt);
    k->g = malloc(sizeof(float) * N * Ds);
    th_fill_uniform(k->xs, (size_t)N * Ds, lo, hi, seed);
    th_fill_uniform(k->xt, (size_t)N * Dt, lo, hi, seed + 1);
    k->edges = malloc(sizeof(int32_t) * (2 * E + 1));
    th_fill_labels(k->edges, (size_t)2 * E, N, seed + 2);
    if (C > 0) {
        k->z = malloc(sizeof(float) * N * C);
        k->gz = malloc(sizeof(float) * N * C);
        k->y = malloc(sizeof(int32_t) * N);
        th_fill_uniform(k->z, (size_t)N * C, lo, hi, seed + 3);
        th_fill_labels(k->y, (size_t)N, C, seed + 4);
    }
}

static void free_case(struct case_ *k)
{
    free(k->xs);
    free(k->xt);
    free(k->g);
    free(k->z);
    free(k->gz);
    free(k->edges);
    free(k->y);
}

/* Run the plugin; edges when with_edges, logits when the case has them,
   labels when asked. */
static int run_case(struct case_ *k, bool with_edges, bool labels,
                    const char *const *sets, size_t n_sets, double *loss,
                    double *terms)
{
    struct th_input in[5];
    size_t n = 0;
    in[n++] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2,
                                {k->N, k->Ds}, k->xs, k->g};
    in[n++] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2,
                                {k->N, k->Dt}, k->xt, NULL};
    if (with_edges)
        in[n++] = (struct th_input){"graph.edges", KDCL_DTYPE_I32, 2,
                                    {k->E, 2}, k->edges, NULL};
    if (k->C > 0)
        in[n++] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2,
                                    {k->N, k->C}, k->z, k->gz};
    if (k->C > 0 && labels)
        in[n++] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {k->N}, k->y,
                                    NULL};
    return th_run("graph", sets, n_sets, in, n, loss, terms, 2);
}

/* The case as a reference; returns x (free it and r's teacher copy). */
static double *make_ref(const struct case_ *k, struct ref *r, int kind,
                        double sigma, double weight, double alpha,
                        bool labels)
{
    size_t ns = (size_t)k->N * k->Ds, nz = (size_t)k->N * k->C;
    double *x = malloc(sizeof(double) * (ns + nz + 1)),
           *xt = malloc(sizeof(double) * k->N * k->Dt);
    th_to_double(k->xt, xt, (size_t)k->N * k->Dt);
    th_to_double(k->xs, x, ns);
    if (nz)
        th_to_double(k->z, x + ns, nz);
    *r = (struct ref){k->N, k->Ds, k->Dt, xt, kind, sigma, weight, alpha,
                      k->E, k->edges, k->C, labels ? k->y : NULL};
    return x;
}

static size_t x_len(const struct ref *r)
{
    return (size_t)r->N * r->Ds + (size_t)r->N * r->C;
}

static void check_grads(const struct case_ *k, const double *g, double atol,
                        double rtol, const char *what)
{
    char name[96];
    snprintf(name, sizeof name, "%s student.feat", what);
    th_assert_close(k->g, g, (size_t)k->N * k->Ds, atol, rtol, name);
    if (k->C > 0) {
        snprintf(name, sizeof name, "%s student.logits", what);
        th_assert_close(k->gz, g + (size_t)k->N * k->Ds,
                        (size_t)k->N * k->C, atol, rtol, name);
    }
}

/* Run case k in mode kind and compare everything with the reference. */
static void compare(struct case_ *k, int kind, double sigma, double weight,
                    double alpha, bool labels, const char *extra)
{
    struct ref r;
    char s1[64], s2[64], s3[64], s4[64];
    const char *sets[5] = {s1, s2, s3, s4, extra};
    double loss, terms[2], ce, kd, want, *x, *g;

    snprintf(s1, sizeof s1, "mode=%s", kind == LSP ? "lsp" : "dense");
    snprintf(s2, sizeof s2, "kernel=%s", kind == RBF ? "rbf" : "cosine");
    snprintf(s3, sizeof s3, "sigma=%.17g", sigma);
    snprintf(s4, sizeof s4, "weight=%.17g", weight);
    x = make_ref(k, &r, kind, sigma, weight, alpha, labels);
    g = malloc(sizeof(double) * (x_len(&r) + 1));
    if (labels) {
        static char sa[64];
        snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
        sets[4] = sa;
    }
    cr_assert_eq(run_case(k, kind == LSP, labels, sets,
                          (labels || extra) ? 5 : 4, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], kd, 1e-6, 1e-4, "kd");
    th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    check_grads(k, g, 1e-5, 1e-4, "grad");
    free(x);
    free(g);
    free((double *)r.xt);
}

static void check_against_reference(int kind, int N, int Ds, int Dt, int E,
                                    int C, double sigma, double alpha,
                                    bool labels, double lo, double hi,
                                    uint64_t seed)
{
    struct case_ k;
    make_case(&k, N, Ds, Dt, E, C, lo, hi, seed);
    compare(&k, kind, sigma, 1.0, alpha, labels, NULL);
    free_case(&k);
}

/* ---------------------------------------------------------------------- */

Test(graph, dense_cosine_matches_reference)
{
    check_against_reference(COS, 9, 5, 13, 0, 0, 1, 0.1, false, -30, 30, 1);
    check_against_reference(COS, 4, 7, 3, 0, 0, 1, 0.1, false, -30, 30, 2);
}

Test(graph, dense_rbf_matches_reference)
{
    /* exp(-d^2 / (2 sigma^2)) is 0 off the diagonal for features in
       [-30, 30] at sigma = 1 (d^2 ~ 1e3): test the default sigma on
       [-1, 1] and [-30, 30] with sigma = 40, where the kernel is not
       saturated. */
    check_against_reference(RBF, 9, 5, 13, 0, 0, 1.0, 0.1, false, -1, 1, 3);
    check_against_reference(RBF, 9, 5, 13, 0, 0, 40.0, 0.1, false, -30, 30,
                            4);
}

Test(graph, lsp_matches_reference)
{
    /* random edges: duplicates, self-loops, nodes without out-edges */
    check_against_reference(LSP, 12, 6, 10, 30, 0, 1, 0.1, false, -30, 30,
                            5);
    check_against_reference(LSP, 12, 6, 10, 30, 0, 1, 0.1, false, -1, 1, 6);
    check_against_reference(LSP, 5, 3, 2, 4, 0, 1, 0.1, false, -2, 2, 7);
}

Test(graph, matches_reference_with_labels)
{
    for (int kind = COS; kind <= LSP; kind++) {
        check_against_reference(kind, 8, 5, 7, 20, 6, 2.0, 0.3, true, -3, 3,
                                10 + kind);
        check_against_reference(kind, 8, 5, 7, 20, 6, 2.0, 0.0, true, -3, 3,
                                20 + kind);
        check_against_reference(kind, 8, 5, 7, 20, 6, 2.0, 1.0, true, -3, 3,
                                30 + kind);
    }
}

Test(graph, matches_reference_wide)
{
    /* N and D larger than a work-group: items loop over columns. */
    if (th_small()) {
        check_against_reference(COS, 66, 66, 3, 0, 0, 1, 0.1, false, -30, 30,
                                40);
        check_against_reference(LSP, 20, 66, 70, 60, 0, 1, 0.1, false, -1, 1,
                                41);
    } else {
        check_against_reference(COS, 150, 300, 700, 0, 0, 1, 0.1, false, -30,
                                30, 40);
        check_against_reference(RBF, 150, 300, 700, 0, 0, 300, 0.1, false,
                                -30, 30, 42);
        check_against_reference(LSP, 150, 300, 700, 2000, 0, 1, 0.1, false,
                                -0.1, 0.1, 41);
    }
}

Test(graph, single_node)
{
    struct case_ k;
    make_case(&k, 1, 4, 6, 1, 3, -3, 3, 50);
    compare(&k, COS, 1, 1, 0.2, true, NULL);
    compare(&k, RBF, 1, 1, 0.2, true, NULL);
    compare(&k, LSP, 1, 1, 0.2, true, NULL); /* the one edge is (0, 0) */
    free_case(&k);
}

Test(graph, auto_mode_follows_edges)
{
    struct case_ k;
    double l_auto, l_mode, t[2];
    const char *lsp[] = {"mode=lsp"}, *dense[] = {"mode=dense"};
    make_case(&k, 10, 4, 5, 25, 0, -2, 2, 60);
    cr_assert_eq(run_case(&k, true, false, NULL, 0, &l_auto, t), KDCL_OK);
    cr_assert_eq(run_case(&k, true, false, lsp, 1, &l_mode, t), KDCL_OK);
    cr_assert(l_auto == l_mode, "auto with edges %g, lsp %g", l_auto,
              l_mode);
    cr_assert_eq(run_case(&k, false, false, NULL, 0, &l_auto, t), KDCL_OK);
    cr_assert_eq(run_case(&k, false, false, dense, 1, &l_mode, t), KDCL_OK);
    cr_assert(l_auto == l_mode, "auto without edges %g, dense %g", l_auto,
              l_mode);
    /* mode=dense ignores given edges */
    cr_assert_eq(run_case(&k, true, false, dense, 1, &l_auto, t), KDCL_OK);
    cr_assert(l_auto == l_mode, "dense with edges %g, without %g", l_auto,
              l_mode);
    free_case(&k);
}

Test(graph, gradient_matches_finite_differences)
{
    for (int kind = COS; kind <= LSP; kind++) {
        struct case_ k;
        struct ref r;
        char sa[] = "alpha=0.2";
        const char *sets[] = {kind == LSP ? "mode=lsp" : "mode=dense",
                              kind == RBF ? "kernel=rbf" : "kernel=cosine",
                              "sigma=1.5", sa};
        double loss, terms[2], *x, *g;
        size_t n;

        make_case(&k, 5, 3, 4, 9, 4, -1, 1, 70 + kind);
        x = make_ref(&k, &r, kind, 1.5, 1.0, 0.2, true);
        n = x_len(&r);
        g = malloc(sizeof(double) * n);
        cr_assert_eq(run_case(&k, kind == LSP, true, sets, 4, &loss, terms),
                     KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
        th_fd_grad(ref_fn, &r, x, n, 1e-6, g);
        check_grads(&k, g, 1e-6, 1e-4, "grad vs finite differences");

        /* The device's own loss, perturbed in float32 (coarse). */
        for (int i = 0; i < 15; i += th_small() ? 7 : 4) {
            const float h = 1e-2f, x0 = k.xs[i];
            double lp, lm, gi = k.g[i];
            float keep[15];
            memcpy(keep, k.g, sizeof keep);
            k.xs[i] = x0 + h;
            cr_assert_eq(run_case(&k, kind == LSP, true, sets, 4, &lp, terms),
                         KDCL_OK);
            k.xs[i] = x0 - h;
            cr_assert_eq(run_case(&k, kind == LSP, true, sets, 4, &lm, terms),
                         KDCL_OK);
            k.xs[i] = x0;
            memcpy(k.g, keep, sizeof keep);
            th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                             "device finite difference");
        }
        free(x);
        free(g);
        free((double *)r.xt);
        free_case(&k);
    }
}

Test(graph, deterministic_bitwise)
{
    const int N = th_small() ? 12 : 256, D = th_small() ? 8 : 128;
    for (int kind = COS; kind <= LSP; kind++) {
        struct case_ k;
        const char *sets[] = {kind == LSP ? "mode=lsp" : "mode=dense",
                              kind == RBF ? "kernel=rbf" : "kernel=cosine",
                              "sigma=20"};
        double l1, l2, t1[2], t2[2];
        float *g1 = malloc(sizeof(float) * N * D);
        make_case(&k, N, D, 2 * D, 8 * N, 10, -3, 3, 80 + kind);
        cr_assert_eq(run_case(&k, kind == LSP, true, sets, 3, &l1, t1),
                     KDCL_OK);
        memcpy(g1, k.g, sizeof(float) * N * D);
        cr_assert_eq(run_case(&k, kind == LSP, true, sets, 3, &l2, t2),
                     KDCL_OK);
        cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g",
                  l1, l2);
        cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ");
        cr_assert(memcmp(g1, k.g, sizeof(float) * N * D) == 0,
                  "gradients differ between runs (mode %d)", kind);
        free(g1);
        free_case(&k);
    }
}

Test(graph, identical_features_give_zero)
{
    for (int kind = COS; kind <= LSP; kind++) {
        struct case_ k;
        const char *sets[] = {kind == LSP ? "mode=lsp" : "mode=dense",
                              kind == RBF ? "kernel=rbf" : "kernel=cosine",
                              "sigma=5"};
        double loss, terms[2];
        make_case(&k, 11, 6, 6, 30, 0, -5, 5, 90 + kind);
        memcpy(k.xt, k.xs, sizeof(float) * 11 * 6);
        cr_assert_eq(run_case(&k, kind == LSP, false, sets, 3, &loss, terms),
                     KDCL_OK);
        cr_assert(loss == 0.0, "mode %d: loss %g", kind, loss);
        for (int i = 0; i < 66; i++)
            cr_assert(k.g[i] == 0.0f, "mode %d: grad[%d] = %g", kind, i,
                      k.g[i]);
        free_case(&k);
    }
}

Test(graph, lsp_nodes_without_neighbours_are_excluded)
{
    /* Only node 0 has out-edges: the loss is weight * KL_0 (divided by 1,
       not by N = 4); node 3 has no edge at all and gets no gradient. */
    struct case_ k;
    struct ref r;
    const char *sets[] = {"weight=2"};
    double loss, terms[2], ce, kd, *x, *g;
    make_case(&k, 4, 3, 5, 2, 0, -2, 2, 100);
    k.edges[0] = 0, k.edges[1] = 1, k.edges[2] = 0, k.edges[3] = 2;
    cr_assert_eq(run_case(&k, true, false, sets, 1, &loss, terms), KDCL_OK);
    x = make_ref(&k, &r, LSP, 1, 2.0, 0.1, false);
    g = malloc(sizeof(double) * x_len(&r));
    ref_loss(&r, x, &ce, &kd, g);
    {
        /* by hand: two neighbours, a two-way softmax */
        double ds[2] = {0, 0}, dt[2] = {0, 0}, kl = 0;
        for (int e = 0; e < 2; e++) {
            for (int d = 0; d < 3; d++)
                ds[e] += pow(x[d] - x[(e + 1) * 3 + d], 2);
            for (int d = 0; d < 5; d++)
                dt[e] += pow(r.xt[d] - r.xt[(e + 1) * 5 + d], 2);
        }
        for (int e = 0; e < 2; e++) {
            double ps = 1 / (1 + exp(-(ds[1 - e] - ds[e]) / 2));
            double pt = 1 / (1 + exp(-(dt[1 - e] - dt[e]) / 2));
            kl += pt * log(pt / ps);
        }
        th_assert_close1(kd, 2 * kl, 1e-12, 1e-9, "reference by hand");
    }
    th_assert_close1(loss, kd, 1e-6, 1e-4, "loss");
    check_grads(&k, g, 1e-5, 1e-4, "grad");
    for (int d = 0; d < 3; d++)
        cr_assert(k.g[9 + d] == 0.0f, "isolated node grad %g", k.g[9 + d]);
    free(x);
    free(g);
    free((double *)r.xt);
    free_case(&k);
}

Test(graph, lsp_duplicate_edges_count_as_given)
{
    /* (0,1) twice weighs neighbour 1 twice in node 0's softmax: a different
       loss from the edge given once, equal to the reference. */
    struct case_ k;
    double once, twice, terms[2];
    make_case(&k, 3, 4, 4, 3, 0, -2, 2, 110);
    k.edges[0] = 0, k.edges[1] = 1, k.edges[2] = 0, k.edges[3] = 2;
    k.edges[4] = 0, k.edges[5] = 1;
    compare(&k, LSP, 1, 1, 0.1, false, NULL);
    cr_assert_eq(run_case(&k, true, false, NULL, 0, &twice, terms), KDCL_OK);
    k.E = 2;
    cr_assert_eq(run_case(&k, true, false, NULL, 0, &once, terms), KDCL_OK);
    cr_assert(fabs(once - twice) > 1e-4 * fabs(once), "once %g twice %g",
              once, twice);
    free_case(&k);
}

Test(graph, lsp_without_any_edge_gives_zero)
{
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 4, 3, 3, 0, 0, -2, 2, 120);
    cr_assert_eq(run_case(&k, true, false, NULL, 0, &loss, terms), KDCL_OK,
                 "%s", kdcl_context_errmsg(th_ctx()));
    cr_assert(loss == 0.0, "loss %g", loss);
    for (int i = 0; i < 12; i++)
        cr_assert(k.g[i] == 0.0f, "grad[%d] = %g", i, k.g[i]);
    free_case(&k);
}

Test(graph, zero_rows_in_cosine_mode)
{
    /* ||x|| < 1e-8: the row's cosine affinities are 0 (max(., 1e-8)). */
    struct case_ k;
    make_case(&k, 5, 4, 3, 0, 0, -2, 2, 130);
    memset(k.xs + 4, 0, sizeof(float) * 4);
    memset(k.xt + 6, 0, sizeof(float) * 3);
    compare(&k, COS, 1, 1, 0.1, false, NULL);
    free_case(&k);
}

Test(graph, extreme_inputs_stay_finite)
{
    for (int kind = COS; kind <= LSP; kind++) {
        struct case_ k;
        const char *sets[] = {kind == LSP ? "mode=lsp" : "mode=dense",
                              kind == RBF ? "kernel=rbf" : "kernel=cosine"};
        double loss, terms[2];
        make_case(&k, 9, 6, 8, 20, 5, -1e4, 1e4, 140 + kind);
        cr_assert_eq(run_case(&k, kind == LSP, true, sets, 2, &loss, terms),
                     KDCL_OK);
        cr_assert(isfinite(loss) && isfinite(terms[0]) && isfinite(terms[1]),
                  "mode %d: loss %g", kind, loss);
        for (int i = 0; i < 54; i++)
            cr_assert(isfinite(k.g[i]), "mode %d: grad[%d] = %g", kind, i,
                      k.g[i]);
        for (int i = 0; i < 45; i++)
            cr_assert(isfinite(k.gz[i]), "logit grad[%d] = %g", i, k.gz[i]);
        free_case(&k);
    }
}

Test(graph, rejects_edges_out_of_range)
{
    struct case_ k;
    double loss, t[2];
    make_case(&k, 4, 2, 2, 3, 0, -1, 1, 150);
    k.edges[3] = 4;
    cr_assert_eq(run_case(&k, true, false, NULL, 0, &loss, t), KDCL_ERANGE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "graph.edges[1]"), "%s",
              kdcl_context_errmsg(th_ctx()));
    k.edges[3] = -1;
    cr_assert_eq(run_case(&k, true, false, NULL, 0, &loss, t), KDCL_ERANGE);
    free_case(&k);
}

Test(graph, rejects_bad_edge_shape)
{
    float xs[8] = {0};
    int32_t e[6] = {0, 1, 1, 2, 2, 3};
    double loss, t[2];
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"graph.edges", KDCL_DTYPE_I32, 2, {2, 3}, e, NULL},
    };
    cr_assert_eq(th_run("graph", NULL, 0, in, 3, &loss, t, 2), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "graph.edges"));
    in[2].ndim = 1;
    in[2].shape[0] = 6;
    cr_assert_eq(th_run("graph", NULL, 0, in, 3, &loss, t, 2), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "graph.edges"));
}

Test(graph, rejects_lsp_without_edges)
{
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"mode=lsp"};
    make_case(&k, 4, 2, 2, 3, 0, -1, 1, 160);
    cr_assert_eq(run_case(&k, false, false, sets, 1, &loss, t),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "graph.edges"));
    free_case(&k);
}

Test(graph, rejects_mismatched_nodes)
{
    float xs[8] = {0}, xt[15] = {0};
    double loss, t[2];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {5, 3}, xt, NULL},
    };
    const char *msg;
    cr_assert_eq(th_run("graph", NULL, 0, in, 2, &loss, t, 2), KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.feat [4,2]")
                  && strstr(msg, "teacher.feat [5,3]"),
              "%s", msg);
    in[1].ndim = 3;
    in[1].shape[2] = 1;
    in[1].shape[0] = 4;
    cr_assert_eq(th_run("graph", NULL, 0, in, 2, &loss, t, 2), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
}

Test(graph, rejects_logits_of_other_rows)
{
    float xs[8] = {0}, z[9] = {0};
    double loss, t[2];
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {3, 3}, z, NULL},
    };
    cr_assert_eq(th_run("graph", NULL, 0, in, 3, &loss, t, 2), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

Test(graph, rejects_missing_inputs_and_alpha_without_labels)
{
    float xs[8] = {0};
    int32_t y[4] = {0, 1, 0, 1};
    double loss, t[2];
    const char *sets[] = {"alpha=0.5"};
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 2}, xs, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {4}, y, NULL},
    };
    cr_assert_eq(th_run("graph", NULL, 0, in, 1, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
    cr_assert_eq(th_run("graph", sets, 1, in, 2, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    cr_assert_eq(th_run("graph", NULL, 0, in, 3, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

Test(graph, logits_without_labels_do_not_count)
{
    struct case_ k;
    struct ref r;
    double loss, terms[2], *x, *g, ce, kd, want;
    make_case(&k, 6, 3, 4, 0, 5, -2, 2, 170);
    x = make_ref(&k, &r, COS, 1, 1, 0.1, false);
    g = malloc(sizeof(double) * x_len(&r));
    cr_assert_eq(run_case(&k, false, false, NULL, 0, &loss, terms), KDCL_OK);
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    for (int i = 0; i < 30; i++)
        cr_assert(k.gz[i] == 0.0f, "logit grad[%d] = %g", i, k.gz[i]);
    free(x);
    free(g);
    free((double *)r.xt);
    free_case(&k);
}

Test(graph, cost_counts_gemm_flops)
{
    kdcl_context *ctx = th_ctx();
    kdcl_run *run = NULL;
    kdcl_tensor *xs = NULL, *xt = NULL, *g = NULL, *e = NULL;
    const int64_t ss[2] = {16, 8}, ts[2] = {16, 12}, es[2] = {5, 2};
    double flops, bytes;
    cr_assert_eq(kdcl_run_init(ctx, th_plugin("graph"), NULL, &run),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ss, &xs), KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ss, &g), KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ts, &xt), KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 2, es, &e), KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(run, "student.feat", xs), KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(run, "teacher.feat", xt), KDCL_OK);
    cr_assert_eq(kdcl_run_cost(run, &flops, &bytes), KDCL_OK);
    th_assert_close1(flops, 2.0 * 16 * 16 * (8 + 12), 0, 0, "forward flops");
    cr_assert(bytes > 4.0 * 16 * 20);
    cr_assert_eq(kdcl_run_set_grad(run, "student.feat", g), KDCL_OK);
    cr_assert_eq(kdcl_run_cost(run, &flops, &bytes), KDCL_OK);
    th_assert_close1(flops, 2.0 * 16 * 16 * (8 + 12 + 8), 0, 0, "flops");
    cr_assert_eq(kdcl_run_set_input(run, "graph.edges", e), KDCL_OK);
    cr_assert_eq(kdcl_run_cost(run, &flops, &bytes), KDCL_OK);
    cr_assert(flops == 0.0 && bytes > 0.0, "lsp: %g flops", flops);
    kdcl_run_free(run);
    kdcl_tensor_free(xs);
    kdcl_tensor_free(xt);
    kdcl_tensor_free(g);
    kdcl_tensor_free(e);
}

static void read_npy_tail(const char *path, float *v, size_t n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s not written", path);
    fseek(f, -(long)(n * sizeof(float)), SEEK_END);
    cr_assert_eq(fread(v, sizeof(float), n, f), n);
    fclose(f);
}

/* `kdcl loss` end to end, lsp with logits and labels, then dense rbf:
   printed values equal the reference and the recorded golden values; the
   gradient files equal the reference. */
Test(graph, cli_golden_values)
{
    struct case_ k;
    struct ref r;
    char f[6][512], args[8192], out[4096], err[4096], gp[600], gz[600];
    const char *names[6] = {"xs", "xt", "e", "z", "y", "g"};
    const char *d = th_tmpdir();
    double *x, *g, ce, kd, want;

    make_case(&k, 6, 4, 5, 10, 3, -2, 2, 180);
    for (int i = 0; i < 6; i++)
        snprintf(f[i], sizeof f[i], "%s/graph_%s.npy", d, names[i]);
    {
        const int64_t s1[2] = {6, 4}, s2[2] = {6, 5}, s3[2] = {10, 2},
                      s4[2] = {6, 3}, s5[1] = {6};
        th_npy_f32(f[0], k.xs, 2, s1);
        th_npy_f32(f[1], k.xt, 2, s2);
        th_npy_i32(f[2], k.edges, 2, s3);
        th_npy_f32(f[3], k.z, 2, s4);
        th_npy_i32(f[4], k.y, 1, s5);
    }
    snprintf(gp, sizeof gp, "%s.feat", f[5]);
    snprintf(gz, sizeof gz, "%s.logits", f[5]);
    snprintf(args, sizeof args,
             "loss --plugin graph --input student.feat=%s "
             "--input teacher.feat=%s --input graph.edges=%s "
             "--input student.logits=%s --labels %s --set alpha=0.25 "
             "--set weight=3 --grad-out student.feat=%s "
             "--grad-out student.logits=%s",
             f[0], f[1], f[2], f[3], f[4], gp, gz);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    x = make_ref(&k, &r, LSP, 1.0, 3.0, 0.25, true);
    g = malloc(sizeof(double) * x_len(&r));
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), kd, 1e-6, 1e-4, "kd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 0.712823476, 0, 1e-4,
                     "golden lsp loss");
    read_npy_tail(gp, k.g, 24);
    read_npy_tail(gz, k.gz, 18);
    check_grads(&k, g, 1e-5, 1e-4, "cli lsp grad");
    free(x);
    free(g);
    free((double *)r.xt);

    /* dense rbf, no labels */
    snprintf(args, sizeof args,
             "loss --plugin graph --input student.feat=%s "
             "--input teacher.feat=%s --set kernel=rbf --set sigma=2 "
             "--grad-out %s",
             f[0], f[1], gp);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    k.C = 0;
    x = make_ref(&k, &r, RBF, 2.0, 1.0, 0.1, false);
    g = malloc(sizeof(double) * x_len(&r));
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4,
                     "rbf loss");
    th_assert_close1(th_parse_value(out, "loss"), 0.039233416, 0, 1e-4,
                     "golden rbf loss");
    read_npy_tail(gp, k.g, 24);
    check_grads(&k, g, 1e-5, 1e-4, "cli rbf grad");
    free(x);
    free(g);
    free((double *)r.xt);
    free_case(&k);
}
