/*
 * tests/test-plugin-pkt.c - the pkt (probabilistic knowledge transfer)
 * plugin against an independent float64 reference (LOSSES.md `pkt`),
 * finite differences, determinism, extreme and degenerate inputs
 * (identical, rescaled and zero features, a single row), bad input, cost
 * and `kdcl loss` golden values.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernel          */

#define EPS 1e-7

struct ref {
    int B, Ds, Dt, C;
    const double *fs, *ft; /* [B,Ds], [B,Dt] */
    const double *z;       /* student logits [B,C] or NULL */
    const int32_t *y;      /* labels or NULL */
    double alpha, weight;
};

struct ref_out {
    double loss, ce, kd;
    double *gfs, *gz; /* optional */
};

/* x = f / (||f|| + EPS) per row, S = x x^T, P = ((S + 1) / 2) / row sum;
   also the row norms and row sums. */
static void probs(const double *f, int B, int D, double *x, double *n,
                  double *p, double *rsum)
{
    for (int i = 0; i < B; i++) {
        double s = 0;
        for (int k = 0; k < D; k++)
            s += f[(size_t)i * D + k] * f[(size_t)i * D + k];
        n[i] = sqrt(s);
        for (int k = 0; k < D; k++)
            x[(size_t)i * D + k] = f[(size_t)i * D + k] / (n[i] + EPS);
    }
    for (int i = 0; i < B; i++) {
        rsum[i] = 0;
        for (int j = 0; j < B; j++) {
            double s = 0;
            for (int k = 0; k < D; k++)
                s += x[(size_t)i * D + k] * x[(size_t)j * D + k];
            p[(size_t)i * B + j] = (s + 1) / 2;
            rsum[i] += (s + 1) / 2;
        }
        for (int j = 0; j < B; j++)
            p[(size_t)i * B + j] /= rsum[i];
    }
}

static void ce_term(const struct ref *r, double a, double *ce, double *gz)
{
    *ce = 0;
    for (int b = 0; b < r->B; b++) {
        const double *z = r->z + (size_t)b * r->C;
        double m = -INFINITY, s = 0;
        for (int c = 0; c < r->C; c++)
            m = fmax(m, z[c]);
        for (int c = 0; c < r->C; c++)
            s += exp(z[c] - m);
        *ce += (m + log(s) - z[r->y[b]]) / r->B;
        if (gz)
            for (int c = 0; c < r->C; c++)
                gz[(size_t)b * r->C + c] =
                    a * (exp(z[c] - m) / s - (c == r->y[b])) / r->B;
    }
}

static void ref_eval(const struct ref *r, struct ref_out *o)
{
    const int B = r->B, Ds = r->Ds, Dt = r->Dt;
    const size_t BB = (size_t)B * B;
    const bool ce_on = r->z && r->y;
    const double a = ce_on ? r->alpha : 0.0;
    const double c = (1 - a) * r->weight / ((double)B * B);
    double *xs = malloc(sizeof(double) * B * Ds),
           *xt = malloc(sizeof(double) * B * Dt),
           *ns = malloc(sizeof(double) * B), *nt = malloc(sizeof(double) * B),
           *ps = malloc(sizeof(double) * BB), *pt = malloc(sizeof(double) * BB),
           *rs = malloc(sizeof(double) * B), *rt = malloc(sizeof(double) * B),
           *ds = malloc(sizeof(double) * BB),
           *dx = malloc(sizeof(double) * B * Ds);
    double kl = 0;

    probs(r->fs, B, Ds, xs, ns, ps, rs);
    probs(r->ft, B, Dt, xt, nt, pt, rt);
    for (size_t e = 0; e < BB; e++)
        kl += pt[e] * log((pt[e] + EPS) / (ps[e] + EPS));
    o->kd = r->weight * kl / ((double)B * B);
    o->ce = 0;
    if (ce_on)
        ce_term(r, a, &o->ce, o->gz);
    else if (o->gz)
        memset(o->gz, 0, sizeof(double) * B * r->C);
    o->loss = ce_on ? a * o->ce + (1 - a) * o->kd : o->kd;
    if (o->gfs) {
        /* dL/dP_S, then through P = U / row sum (U = (S + 1) / 2). */
        for (int i = 0; i < B; i++) {
            double dot = 0;
            for (int j = 0; j < B; j++) {
                size_t e = (size_t)i * B + j;
                dot += -c * pt[e] / (ps[e] + EPS) * ps[e];
            }
            for (int j = 0; j < B; j++) {
                size_t e = (size_t)i * B + j;
                double dp = -c * pt[e] / (ps[e] + EPS);
                ds[e] = 0.5 * (dp - dot) / rs[i];
            }
        }
        /* S_ij = x_i . x_j */
        for (int k = 0; k < B; k++)
            for (int l = 0; l < Ds; l++) {
                double s = 0;
                for (int j = 0; j < B; j++)
                    s += (ds[(size_t)k * B + j] + ds[(size_t)j * B + k])
                         * xs[(size_t)j * Ds + l];
                dx[(size_t)k * Ds + l] = s;
            }
        /* x = f / (||f|| + EPS): J = I / (n + EPS) - f f^T / (n (n +
           EPS)^2), and I / EPS at f = 0 (the norm term is second order). */
        for (int k = 0; k < B; k++) {
            const double *f = r->fs + (size_t)k * Ds;
            double fd = 0, n = ns[k];
            for (int l = 0; l < Ds; l++)
                fd += f[l] * dx[(size_t)k * Ds + l];
            for (int l = 0; l < Ds; l++)
                o->gfs[(size_t)k * Ds + l] =
                    dx[(size_t)k * Ds + l] / (n + EPS)
                    - (n > 0 ? f[l] * fd / (n * (n + EPS) * (n + EPS)) : 0);
        }
    }
    free(xs);
    free(xt);
    free(ns);
    free(nt);
    free(ps);
    free(pt);
    free(rs);
    free(rt);
    free(ds);
    free(dx);
}

static double ref_fn(const double *x, void *user)
{
    struct ref r = *(const struct ref *)user;
    struct ref_out o = {0};
    r.fs = x;
    ref_eval(&r, &o);
    return o.loss;
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

struct case_ {
    int B, Ds, Dt, C;
    float *fs, *ft, *z, *gfs, *gz;
    int32_t *y;
};

static void make_case(struct case_ *k, int B, int Ds, int Dt, int C,
                      double lo, double hi, uint64_t seed)
{
    k->B = B;
    k->Ds = Ds;
    k->Dt = Dt;
    k->C = C;
    k->fs = malloc(sizeof(float) * B * Ds);
    k->ft = malloc(sizeof(float) * B * Dt);
    k->gfs = malloc(sizeof(float) * B * Ds);
    k->z = malloc(sizeof(float) * B * C);
    k->gz = malloc(sizeof(float) * B * C);
    k->y = malloc(sizeof(int32_t) * B);
    th_fill_uniform(k->fs, (size_t)B * Ds, lo, hi, seed);
    th_fill_uniform(k->ft, (size_t)B * Dt, lo, hi, seed + 1);
    th_fill_uniform(k->z, (size_t)B * C, -30, 30, seed + 2);
    th_fill_labels(k->y, (size_t)B, C, seed + 3);
}

static void free_case(struct case_ *k)
{
    free(k->fs);
    free(k->ft);
    free(k->gfs);
    free(k->z);
    free(k->gz);
    free(k->y);
}

/* Run the plugin on k: features, plus logits and labels when task. */
static int run_case(struct case_ *k, bool task, const char *const *sets,
                    size_t n_sets, double *loss, double *terms)
{
    struct th_input in[4] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {k->B, k->Ds}, k->fs, k->gfs},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {k->B, k->Dt}, k->ft, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->z, k->gz},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    return th_run("pkt", sets, n_sets, in, task ? 4 : 2, loss, terms, 2);
}

/* th_assert_close, plus every error within 1e-4 of the largest reference
   element, so that small gradients are not waved through by atol. */
static void assert_grad(const float *got, const double *want, size_t n,
                        const char *what)
{
    double big = 0;
    th_assert_close(got, want, n, 1e-5, 1e-4, what);
    for (size_t i = 0; i < n; i++)
        big = fmax(big, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        cr_assert(fabs(got[i] - want[i]) <= 1e-4 * big + 1e-30,
                  "%s[%zu]: got %.9g, want %.9g (scale %.3g)", what, i,
                  (double)got[i], want[i], big);
}

/* Compare the plugin with the reference on k. */
static void check_case(struct case_ *k, bool task, double alpha,
                       double weight)
{
    char sa[64], sw[64];
    const char *sets[2] = {sa, sw};
    const size_t nf = (size_t)k->B * k->Ds, nz = (size_t)k->B * k->C;
    double loss, terms[2];
    double *fs = malloc(sizeof(double) * nf),
           *ft = malloc(sizeof(double) * k->B * k->Dt),
           *z = malloc(sizeof(double) * nz), *gfs = malloc(sizeof(double) * nf),
           *gz = malloc(sizeof(double) * nz);
    struct ref r;
    struct ref_out o = {0};

    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    snprintf(sw, sizeof sw, "weight=%.17g", weight);
    cr_assert_eq(run_case(k, task, sets, 2, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    th_to_double(k->fs, fs, nf);
    th_to_double(k->ft, ft, (size_t)k->B * k->Dt);
    th_to_double(k->z, z, nz);
    r = (struct ref){k->B, k->Ds, k->Dt, k->C, fs, ft,
                     task ? z : NULL, task ? k->y : NULL, alpha, weight};
    o.gfs = gfs;
    o.gz = gz;
    ref_eval(&r, &o);
    th_assert_close1(loss, o.loss, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], o.kd, 1e-6, 1e-4, "kd");
    if (task) {
        th_assert_close1(terms[0], o.ce, 1e-6, 1e-4, "ce");
        assert_grad(k->gz, gz, nz, "grad student.logits");
    }
    assert_grad(k->gfs, gfs, nf, "grad student.feat");
    free(fs);
    free(ft);
    free(z);
    free(gfs);
    free(gz);
}

static void check(int B, int Ds, int Dt, double range, bool task,
                  double alpha, double weight, uint64_t seed)
{
    struct case_ k;
    make_case(&k, B, Ds, Dt, 7, -range, range, seed);
    check_case(&k, task, alpha, weight);
    free_case(&k);
}

/* ---------------------------------------------------------------------- */

Test(pkt, matches_reference)
{
    check(8, 13, 21, 30, false, 0, 1, 1);
    check(6, 9, 9, 30, false, 0, 2.5, 2);
}

Test(pkt, matches_reference_with_task_term)
{
    check(8, 13, 21, 30, true, 0.4, 3, 3);
    check(5, 7, 4, 30, true, 1.0, 1, 4);
    check(5, 7, 4, 30, true, 0.0, 1, 5);
}

Test(pkt, matches_reference_unit_range)
{
    /* PKT sees only the features' directions (up to EPS), so its gradient
       scales as 1/scale: inputs in [-1, 1] make it 30x larger than the
       [-30, 30] ones, so the absolute tolerance is no shelter. */
    check(9, 17, 5, 1, false, 0, 1, 6);
}

Test(pkt, matches_reference_wide_rows)
{
    /* B larger than a work-group: every item loops over similarity
       columns; and D larger than a work-group for the row norms. */
    if (th_small()) {
        check(70, 3, 2, 30, false, 0, 1, 7);
        check(3, 300, 200, 30, false, 0, 1, 8);
    } else {
        check(150, 6, 4, 30, true, 0.5, 1, 7);
        check(3, 5000, 3000, 30, false, 0, 1, 8);
    }
}

Test(pkt, single_row)
{
    /* One row: P = [[1]] for both networks, so the loss and its gradient
       are exactly 0. */
    struct case_ k;
    double loss, t[2];
    make_case(&k, 1, 10, 6, 4, -30, 30, 9);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, t), KDCL_OK);
    cr_assert(loss == 0.0, "loss %g", loss);
    for (int i = 0; i < 10; i++)
        cr_assert(k.gfs[i] == 0.0f, "grad[%d] = %g", i, k.gfs[i]);
    check_case(&k, true, 0.3, 1);
    free_case(&k);
}

Test(pkt, flattens_higher_rank_features)
{
    float fs[3 * 24], ft[3 * 10], g4[3 * 24], g2[3 * 24];
    double l4, l2, t[2];
    struct th_input in4[2] = {
        {"student.feat", KDCL_DTYPE_F32, 4, {3, 2, 3, 4}, fs, g4},
        {"teacher.feat", KDCL_DTYPE_F32, 3, {3, 5, 2}, ft, NULL},
    };
    struct th_input in2[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {3, 24}, fs, g2},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {3, 10}, ft, NULL},
    };
    th_fill_uniform(fs, 72, -3, 3, 10);
    th_fill_uniform(ft, 30, -3, 3, 11);
    cr_assert_eq(th_run("pkt", NULL, 0, in4, 2, &l4, t, 2), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(th_run("pkt", NULL, 0, in2, 2, &l2, t, 2), KDCL_OK);
    cr_assert(l4 == l2 && memcmp(g4, g2, sizeof g4) == 0);
    cr_assert(l4 > 0);
}

Test(pkt, gradient_matches_finite_differences)
{
    const int B = 4, Ds = 5, Dt = 3;
    struct case_ k;
    double loss, terms[2], fs[20], ft[12], z[28], g[20];
    const char *sets[] = {"alpha=0.2"};
    struct ref r;

    make_case(&k, B, Ds, Dt, 7, -3, 3, 12);
    th_to_double(k.fs, fs, 20);
    th_to_double(k.ft, ft, 12);
    th_to_double(k.z, z, 28);
    r = (struct ref){B, Ds, Dt, 7, fs, ft, z, k.y, 0.2, 1.0};
    cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
    th_fd_grad(ref_fn, &r, fs, 20, 1e-5, g);
    th_assert_close(k.gfs, g, 20, 1e-7, 1e-4, "grad vs finite differences");

    /* And the device's own loss, perturbed in float32 (coarse). */
    for (int i = 0; i < 20; i += 3) {
        const float h = 3e-2f, x0 = k.fs[i];
        double lp, lm, gi = k.gfs[i];
        k.fs[i] = x0 + h;
        cr_assert_eq(run_case(&k, true, sets, 1, &lp, terms), KDCL_OK);
        k.fs[i] = x0 - h;
        cr_assert_eq(run_case(&k, true, sets, 1, &lm, terms), KDCL_OK);
        k.fs[i] = x0;
        th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                         "device finite difference");
    }
    free_case(&k);
}

Test(pkt, deterministic_bitwise)
{
    struct case_ k;
    const int B = th_small() ? 16 : 128, Ds = th_small() ? 20 : 300;
    double l1, l2, t[2];
    float *g1 = malloc(sizeof(float) * B * Ds);
    make_case(&k, B, Ds, 2 * Ds, 7, -10, 10, 13);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l1, t), KDCL_OK);
    memcpy(g1, k.gfs, sizeof(float) * B * Ds);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l2, t), KDCL_OK);
    cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g", l1,
              l2);
    cr_assert(memcmp(g1, k.gfs, sizeof(float) * B * Ds) == 0,
              "gradients differ between runs");
    free(g1);
    free_case(&k);
}

Test(pkt, extreme_inputs_stay_finite)
{
    struct case_ k;
    double loss, terms[2];
    const char *sets[] = {"alpha=0.5"};
    make_case(&k, 6, 300, 200, 7, -1e4, 1e4, 14);
    cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
    cr_assert(isfinite(loss) && isfinite(terms[0]) && isfinite(terms[1]));
    for (int i = 0; i < 6 * 300; i++)
        cr_assert(isfinite(k.gfs[i]), "grad[%d] = %g", i, k.gfs[i]);
    free_case(&k);
}

Test(pkt, identical_features_give_zero)
{
    struct case_ k;
    double loss, t[2];
    /* P_T = P_S: the loss is exactly 0.  The gradient is not quite 0:
       dL/dP_S = -P_T / (P_S + EPS) is not constant along a row, so it is
       of order EPS against the scale of an unrelated teacher's. */
    struct case_ u;
    double big = 0;
    make_case(&k, 6, 13, 13, 7, -30, 30, 15);
    memcpy(k.ft, k.fs, sizeof(float) * 6 * 13);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, t), KDCL_OK);
    cr_assert(loss == 0.0, "loss %g", loss);
    make_case(&u, 6, 13, 13, 7, -30, 30, 15);
    cr_assert_eq(run_case(&u, false, NULL, 0, &loss, t), KDCL_OK);
    for (int i = 0; i < 6 * 13; i++)
        big = fmax(big, fabs(u.gfs[i]));
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(fabs(k.gfs[i]) < 1e-4 * big, "grad[%d] = %g (scale %g)", i,
                  k.gfs[i], big);
    free_case(&k);
    free_case(&u);
}

Test(pkt, rescaled_and_repeated_teacher_give_zero)
{
    /* F_T = [2 F_S, 2 F_S] has the same cosine similarities as F_S, so the
       loss is 0 up to rounding and EPS, and the gradient tiny against the
       scale of an unrelated teacher's. */
    struct case_ k, u;
    double loss, t[2], big = 0;
    make_case(&k, 6, 11, 22, 7, -30, 30, 16);
    for (int b = 0; b < 6; b++)
        for (int j = 0; j < 22; j++)
            k.ft[b * 22 + j] = 2.0f * k.fs[b * 11 + j % 11];
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, t), KDCL_OK);
    cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
    make_case(&u, 6, 11, 22, 7, -30, 30, 16);
    cr_assert_eq(run_case(&u, false, NULL, 0, &loss, t), KDCL_OK);
    for (int i = 0; i < 6 * 11; i++)
        big = fmax(big, fabs(u.gfs[i]));
    for (int i = 0; i < 6 * 11; i++)
        cr_assert(fabs(k.gfs[i]) < 1e-4 * big, "grad[%d] = %g (scale %g)", i,
                  k.gfs[i], big);
    free_case(&k);
    free_case(&u);
}

Test(pkt, zero_student_row_stays_finite)
{
    /* A zero feature row normalises to 0 (the + EPS keeps it finite): its
       similarities are 0 and, at f = 0, the Jacobian of f / (||f|| + EPS)
       is I / EPS, so that row's gradient is huge but finite; it still
       matches the reference. */
    struct case_ k;
    make_case(&k, 5, 6, 4, 7, -3, 3, 17);
    for (int j = 0; j < 6; j++)
        k.fs[2 * 6 + j] = 0.0f;
    check_case(&k, false, 0, 1);
    free_case(&k);
}

Test(pkt, logits_without_labels_get_zero_gradient)
{
    th_featpair_logits_without_labels("pkt");
}

Test(pkt, rejects_bad_shapes)
{
    th_featpair_rejects_bad_shapes("pkt");
}

Test(pkt, rejects_missing_inputs)
{
    th_featpair_rejects_missing_inputs("pkt");
}

Test(pkt, cost_counts_similarity_gemms)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_plugin *p = th_plugin("pkt");
    kdcl_run *run = NULL;
    kdcl_tensor *fs = NULL, *ft = NULL;
    const int64_t ss[2] = {16, 32}, st[2] = {16, 64};
    double flops, bytes;
    cr_assert_eq(kdcl_run_init(ctx, p, NULL, &run), KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ss, &fs), KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, st, &ft), KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(run, "student.feat", fs), KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(run, "teacher.feat", ft), KDCL_OK);
    cr_assert_eq(kdcl_run_cost(run, &flops, &bytes), KDCL_OK);
    /* X_S X_S^T, X_T X_T^T and S X_S: 2 B^2 (2 Ds + Dt). */
    cr_assert(flops >= 2.0 * 16 * 16 * (2 * 32 + 64)
                  && flops < 1.3 * 2.0 * 16 * 16 * (2 * 32 + 64),
              "flops %g", flops);
    cr_assert(bytes >= 4.0 * 16 * (2 * 32 + 64), "bytes %g", bytes);
    kdcl_run_free(run);
    kdcl_tensor_free(fs);
    kdcl_tensor_free(ft);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(pkt, cli_golden_values)
{
    struct case_ k;
    char s[512], t[512], z[512], y[512], g[512], args[4096], out[4096],
        err[4096];
    const int64_t ss[2] = {4, 6}, st[3] = {4, 2, 5}, sz[2] = {4, 7},
                  sy[1] = {4};
    double fs[24], ft[40], zz[28], gr[24];
    float gf[24];
    struct ref r;
    struct ref_out o = {0};

    make_case(&k, 4, 6, 10, 7, -5, 5, 71);
    snprintf(s, sizeof s, "%s/pkt_s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/pkt_t.npy", th_tmpdir());
    snprintf(z, sizeof z, "%s/pkt_z.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/pkt_y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/pkt_g.npy", th_tmpdir());
    th_npy_f32(s, k.fs, 2, ss);
    th_npy_f32(t, k.ft, 3, st);
    th_npy_f32(z, k.z, 2, sz);
    th_npy_i32(y, k.y, 1, sy);
    snprintf(args, sizeof args,
             "loss --plugin pkt --input student.feat=%s "
             "--input teacher.feat=%s --input student.logits=%s --labels %s "
             "--set alpha=0.1 --set weight=3 --grad-out student.feat=%s",
             s, t, z, y, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.fs, fs, 24);
    th_to_double(k.ft, ft, 40);
    th_to_double(k.z, zz, 28);
    r = (struct ref){4, 6, 10, 7, fs, ft, zz, k.y, 0.1, 3.0};
    o.gfs = gr;
    ref_eval(&r, &o);
    th_assert_close1(th_parse_value(out, "loss"), o.loss, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), o.ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), o.kd, 1e-6, 1e-4, "kd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 3.86748608, 0, 1e-4,
                     "golden loss");
    th_assert_close1(th_parse_value(out, "term kd"), 0.0892512577, 0, 1e-4,
                     "golden kd");
    {
        FILE *f = fopen(g, "rb");
        cr_assert_not_null(f, "gradient file not written");
        fseek(f, -(long)sizeof gf, SEEK_END);
        cr_assert_eq(fread(gf, sizeof(float), 24, f), 24u);
        fclose(f);
    }
    assert_grad(gf, gr, 24, "cli grad");
    free_case(&k);
}
