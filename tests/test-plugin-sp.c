/*
 * tests/test-plugin-sp.c - the sp (similarity-preserving) plugin against
 * an independent float64 reference (LOSSES.md `sp`), finite differences,
 * determinism, extreme and degenerate inputs (identical, rescaled and
 * zero features, a single row), bad input, cost and `kdcl loss` golden
 * values.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernel          */

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

/* G = F F^T, n_i = ||G_i||, N_i = G_i / max(n_i, 1e-12). */
static void gram(const double *f, int B, int D, double *g, double *n,
                 double *nn)
{
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double s = 0;
            for (int k = 0; k < D; k++)
                s += f[(size_t)i * D + k] * f[(size_t)j * D + k];
            g[(size_t)i * B + j] = s;
        }
    for (int i = 0; i < B; i++) {
        double s = 0;
        for (int j = 0; j < B; j++)
            s += g[(size_t)i * B + j] * g[(size_t)i * B + j];
        n[i] = sqrt(s);
        for (int j = 0; j < B; j++)
            nn[(size_t)i * B + j] = g[(size_t)i * B + j] / fmax(n[i], 1e-12);
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
    const int B = r->B, Ds = r->Ds;
    const size_t BB = (size_t)B * B;
    const bool ce_on = r->z && r->y;
    const double a = ce_on ? r->alpha : 0.0;
    double *gs = malloc(sizeof(double) * BB), *gt = malloc(sizeof(double) * BB),
           *ns = malloc(sizeof(double) * BB), *nt = malloc(sizeof(double) * BB),
           *es = malloc(sizeof(double) * B), *et = malloc(sizeof(double) * B),
           *dn = malloc(sizeof(double) * BB), *dg = malloc(sizeof(double) * BB);
    double sq = 0;

    gram(r->fs, B, Ds, gs, es, ns);
    gram(r->ft, B, r->Dt, gt, et, nt);
    for (size_t e = 0; e < BB; e++) {
        double d = nt[e] - ns[e];
        sq += d * d;
        /* dL/dN_S */
        dn[e] = -(1 - a) * r->weight * 2 * d / ((double)B * B);
    }
    o->kd = r->weight * sq / ((double)B * B);
    o->ce = 0;
    if (ce_on)
        ce_term(r, a, &o->ce, o->gz);
    else if (o->gz)
        memset(o->gz, 0, sizeof(double) * B * r->C);
    o->loss = ce_on ? a * o->ce + (1 - a) * o->kd : o->kd;
    if (o->gfs) {
        /* Through N_i = G_i / max(n_i, 1e-12): the Jacobian of x / ||x|| is
           (I - N N^T) / n; where the norm is clamped it is I / 1e-12. */
        for (int i = 0; i < B; i++) {
            double dot = 0;
            for (int j = 0; j < B; j++)
                dot += ns[(size_t)i * B + j] * dn[(size_t)i * B + j];
            for (int j = 0; j < B; j++) {
                size_t e = (size_t)i * B + j;
                dg[e] = es[i] >= 1e-12 ? (dn[e] - ns[e] * dot) / es[i]
                                       : dn[e] / 1e-12;
            }
        }
        /* G_ij = F_i . F_j: dF_k = sum_j dG_kj F_j + sum_i dG_ik F_i. */
        for (int k = 0; k < B; k++)
            for (int l = 0; l < Ds; l++) {
                double s = 0;
                for (int j = 0; j < B; j++)
                    s += (dg[(size_t)k * B + j] + dg[(size_t)j * B + k])
                         * r->fs[(size_t)j * Ds + l];
                o->gfs[(size_t)k * Ds + l] = s;
            }
    }
    free(gs);
    free(gt);
    free(ns);
    free(nt);
    free(es);
    free(et);
    free(dn);
    free(dg);
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
    return th_run("sp", sets, n_sets, in, task ? 4 : 2, loss, terms, 2);
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

Test(sp, matches_reference)
{
    check(8, 13, 21, 30, false, 0, 1, 1);
    check(6, 9, 9, 30, false, 0, 2.5, 2);
}

Test(sp, matches_reference_with_task_term)
{
    check(8, 13, 21, 30, true, 0.4, 3, 3);
    check(5, 7, 4, 30, true, 1.0, 1, 4);
    check(5, 7, 4, 30, true, 0.0, 1, 5);
}

Test(sp, matches_reference_unit_range)
{
    /* SP is invariant to the features' scale and its gradient scales as
       1/scale: inputs in [-1, 1] make the gradient 30x larger than the
       [-30, 30] ones, so the absolute tolerance is no shelter. */
    check(9, 17, 5, 1, false, 0, 1, 6);
}

Test(sp, matches_reference_wide_rows)
{
    /* B larger than a work-group: every item loops over Gram columns; and
       wide features through the GEMMs. */
    if (th_small()) {
        check(70, 3, 2, 30, false, 0, 1, 7);
        check(3, 300, 200, 30, false, 0, 1, 8);
    } else {
        check(150, 6, 4, 30, true, 0.5, 1, 7);
        check(3, 5000, 3000, 30, false, 0, 1, 8);
    }
}

Test(sp, single_row)
{
    /* One row: each Gram matrix is [[||F||^2]], normalised to [[1]] for
       both networks, so the loss and its gradient are exactly 0. */
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

Test(sp, flattens_higher_rank_features)
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
    cr_assert_eq(th_run("sp", NULL, 0, in4, 2, &l4, t, 2), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(th_run("sp", NULL, 0, in2, 2, &l2, t, 2), KDCL_OK);
    cr_assert(l4 == l2 && memcmp(g4, g2, sizeof g4) == 0);
    cr_assert(l4 > 0);
}

Test(sp, gradient_matches_finite_differences)
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

Test(sp, deterministic_bitwise)
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

Test(sp, extreme_inputs_stay_finite)
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

Test(sp, identical_features_give_zero)
{
    struct case_ k;
    double loss, t[2];
    make_case(&k, 6, 13, 13, 7, -30, 30, 15);
    memcpy(k.ft, k.fs, sizeof(float) * 6 * 13);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, t), KDCL_OK);
    cr_assert(loss == 0.0, "loss %g", loss);
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(k.gfs[i] == 0.0f, "grad[%d] = %g", i, k.gfs[i]);
    free_case(&k);
}

Test(sp, rescaled_and_repeated_teacher_give_zero)
{
    /* F_T = [2 F_S, 2 F_S] has Gram 8 G_S: the same normalised rows, so the
       loss is 0 up to rounding and the gradient tiny against the scale of
       an unrelated teacher's. */
    struct case_ k, u;
    double loss, t[2], big = 0;
    make_case(&k, 6, 11, 22, 7, -30, 30, 16);
    for (int b = 0; b < 6; b++)
        for (int j = 0; j < 22; j++)
            k.ft[b * 22 + j] = 2.0f * k.fs[b * 11 + j % 11];
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, t), KDCL_OK);
    cr_assert(fabs(loss) < 1e-10, "loss %g", loss);
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

Test(sp, zero_student_row_uses_the_clamped_norm)
{
    /* A zero feature row has a zero Gram row: its norm is clamped to 1e-12
       (a constant), which makes that row's gradient huge but finite; it
       still matches the reference. */
    struct case_ k;
    make_case(&k, 5, 6, 4, 7, -3, 3, 17);
    for (int j = 0; j < 6; j++)
        k.fs[2 * 6 + j] = 0.0f;
    check_case(&k, false, 0, 1);
    free_case(&k);
}

Test(sp, tiny_student_features_use_the_clamped_norm)
{
    /* Student features of size 1e-7 give Gram rows of norm ~1e-13 < 1e-12:
       N_S = G_S / 1e-12 is then linear in G_S (the clamp is a constant),
       which the reference and the gradient must both follow. */
    struct case_ k;
    make_case(&k, 4, 3, 5, 7, -1e-7, 1e-7, 19);
    check_case(&k, false, 0, 1);
    free_case(&k);
}

Test(sp, logits_without_labels_get_zero_gradient)
{
    th_featpair_logits_without_labels("sp");
}

Test(sp, rejects_bad_shapes)
{
    th_featpair_rejects_bad_shapes("sp");
}

Test(sp, rejects_missing_inputs)
{
    th_featpair_rejects_missing_inputs("sp");
}

Test(sp, cost_counts_gram_gemms)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_plugin *p = th_plugin("sp");
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
    /* F_S F_S^T, F_T F_T^T and S F_S: 2 B^2 (2 Ds + Dt). */
    cr_assert(flops >= 2.0 * 16 * 16 * (2 * 32 + 64)
                  && flops < 1.2 * 2.0 * 16 * 16 * (2 * 32 + 64),
              "flops %g", flops);
    cr_assert(bytes >= 4.0 * 16 * (2 * 32 + 64), "bytes %g", bytes);
    kdcl_run_free(run);
    kdcl_tensor_free(fs);
    kdcl_tensor_free(ft);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(sp, cli_golden_values)
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
    snprintf(s, sizeof s, "%s/sp_s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/sp_t.npy", th_tmpdir());
    snprintf(z, sizeof z, "%s/sp_z.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/sp_y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/sp_g.npy", th_tmpdir());
    th_npy_f32(s, k.fs, 2, ss);
    th_npy_f32(t, k.ft, 3, st);
    th_npy_f32(z, k.z, 2, sz);
    th_npy_i32(y, k.y, 1, sy);
    snprintf(args, sizeof args,
             "loss --plugin sp --input student.feat=%s "
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
    th_assert_close1(th_parse_value(out, "loss"), 4.20471336, 0, 1e-4,
                     "golden loss");
    th_assert_close1(th_parse_value(out, "term kd"), 0.463948238, 0, 1e-4,
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
