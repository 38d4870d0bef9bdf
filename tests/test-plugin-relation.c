/*
 * tests/test-plugin-relation.c - the relation plugin (distance and cosine
 * metrics) against an independent float64 reference (LOSSES.md
 * `relation`), finite differences, determinism, extreme inputs,
 * degenerate cases (one row, coincident rows, zero rows), bad input and
 * `kdcl loss` golden values.
 *
 * The reference works on the features directly (pairwise differences and
 * dot products, per-pair derivatives); the plugin goes through Gram
 * matrices.  Random features in [-30, 30]^D are far apart, so the Gram
 * route's float32 cancellation (see docs/plugins.md, relation) stays well
 * inside the tolerances.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { DISTANCE, COSINE };

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernels         */

struct ref {
    int B, Ds, Dt, C;
    const double *ft; /* teacher features [B,Dt] */
    const double *zs; /* student logits [B,C]; NULL: none */
    const int32_t *y; /* NULL: no labels */
    int metric;
    double alpha, weight;
};

static double norm(const double *x, int D)
{
    double s = 0;
    for (int d = 0; d < D; d++)
        s += x[d] * x[d];
    return sqrt(s);
}

/* R(i,j) of features f [B,D] (eqs. 1.3.1, 1.3.2). */
static double rel(const double *f, int D, int metric, int i, int j)
{
    const double *a = f + (size_t)i * D, *b = f + (size_t)j * D;
    double s = 0;
    if (metric == DISTANCE) {
        if (i == j)
            return 0;
        for (int d = 0; d < D; d++)
            s += (a[d] - b[d]) * (a[d] - b[d]);
        return sqrt(s);
    }
    for (int d = 0; d < D; d++)
        s += a[d] * b[d];
    return s / (fmax(norm(a, D), 1e-8) * fmax(norm(b, D), 1e-8));
}

/* Add w * dR(i,j)/dF_S to g [B,Ds]. */
static void rel_grad(const double *f, int D, int metric, int i, int j,
                     double w, double *g)
{
    const double *a = f + (size_t)i * D, *b = f + (size_t)j * D;
    double *ga = g + (size_t)i * D, *gb = g + (size_t)j * D;
    if (metric == DISTANCE) {
        double r = rel(f, D, metric, i, j);
        if (r == 0)
            return; /* a zero distance has zero gradient */
        for (int d = 0; d < D; d++) {
            ga[d] += w * (a[d] - b[d]) / r;
            gb[d] -= w * (a[d] - b[d]) / r;
        }
    } else {
        double na = norm(a, D), nb = norm(b, D);
        double ma = fmax(na, 1e-8), mb = fmax(nb, 1e-8);
        double r = rel(f, D, metric, i, j);
        for (int d = 0; d < D; d++) {
            /* R = a.b / (ma mb); ma is a constant below 1e-8 */
            ga[d] += w * (b[d] / (ma * mb) - (na > 1e-8 ? r * a[d] / (na * na)
                                                        : 0.0));
            gb[d] += w * (a[d] / (ma * mb) - (nb > 1e-8 ? r * b[d] / (nb * nb)
                                                        : 0.0));
        }
    }
}

/* Mean cross-entropy of logits z [B,C] (gradient into gz when given). */
static double ref_ce(int B, int C, const double *z, const int32_t *y,
                     double scale, double *gz)
{
    double ce = 0;
    for (int b = 0; b < B; b++) {
        const double *zb = z + (size_t)b * C;
        double m = -INFINITY, s = 0;
        for (int c = 0; c < C; c++)
            m = fmax(m, zb[c]);
        for (int c = 0; c < C; c++)
            s += exp(zb[c] - m);
        ce += m + log(s) - zb[y[b]];
        if (gz)
            for (int c = 0; c < C; c++)
                gz[(size_t)b * C + c] =
                    scale * (exp(zb[c] - m) / s - (c == y[b])) / B;
    }
    return ce / B;
}

/*
 * Loss at student features fs and logits zs (r->zs when NULL); ce, kd and
 * the gradients of the total loss (gf [B,Ds], gz [B,C]) when non-NULL.
 */
static double ref_loss(const struct ref *r, const double *fs,
                       const double *zs, double *ce_out, double *kd_out,
                       double *gf, double *gz)
{
    int B = r->B;
    double a = r->y ? r->alpha : 0.0, kd = 0, ce = 0;
    if (!zs)
        zs = r->zs;
    if (gf)
        memset(gf, 0, sizeof(double) * B * r->Ds);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double rs = rel(fs, r->Ds, r->metric, i, j);
            double rt = rel(r->ft, r->Dt, r->metric, i, j);
            kd += (rt - rs) * (rt - rs);
            if (gf)
                rel_grad(fs, r->Ds, r->metric, i, j,
                         (1 - a) * r->weight * 2 * (rs - rt) / B / B, gf);
        }
    kd = r->weight * kd / B / B;
    if (r->y)
        ce = ref_ce(B, r->C, zs, r->y, a, gz);
    if (ce_out)
        *ce_out = ce;
    if (kd_out)
        *kd_out = kd;
    return r->y ? a * ce + (1 - a) * kd : kd;
}

static double ref_fn_feat(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL, NULL, NULL);
}

static const double *g_fs; /* the fixed student features for ref_fn_logits */

static double ref_fn_logits(const double *x, void *user)
{
    return ref_loss(user, g_fs, x, NULL, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

struct case_ {
    int B, Ds, Dt, C;
    float *fs, *ft, *zs, *gf, *gz;
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
    k->gf = malloc(sizeof(float) * B * Ds);
    k->zs = malloc(sizeof(float) * B * C);
    k->gz = malloc(sizeof(float) * B * C);
    k->y = malloc(sizeof(int32_t) * B);
    th_fill_uniform(k->fs, (size_t)B * Ds, lo, hi, seed);
    th_fill_uniform(k->ft, (size_t)B * Dt, lo, hi, seed + 1);
    th_fill_uniform(k->zs, (size_t)B * C, -30, 30, seed + 2);
    th_fill_labels(k->y, (size_t)B, C, seed + 3);
}

static void free_case(struct case_ *k)
{
    free(k->fs);
    free(k->ft);
    free(k->gf);
    free(k->zs);
    free(k->gz);
    free(k->y);
}

/* Run the plugin on k; logits and labels only when with_labels. */
static int run_case(struct case_ *k, bool with_labels, const char *const *sets,
                    size_t n_sets, double *loss, double *terms)
{
    struct th_input in[4] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {k->B, k->Ds}, k->fs, k->gf},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {k->B, k->Dt}, k->ft, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zs, k->gz},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    return th_run("relation", sets, n_sets, in, with_labels ? 4 : 2, loss,
                  terms, 2);
}

struct dcase {
    size_t nf, nz;
    double *fs, *ft, *zs, *gf, *gz;
};

static void to_double_case(const struct case_ *k, struct dcase *d)
{
    d->nf = (size_t)k->B * k->Ds;
    d->nz = (size_t)k->B * k->C;
    d->fs = malloc(sizeof(double) * d->nf);
    d->gf = malloc(sizeof(double) * d->nf);
    d->ft = malloc(sizeof(double) * k->B * k->Dt);
    d->zs = malloc(sizeof(double) * d->nz);
    d->gz = malloc(sizeof(double) * d->nz);
    th_to_double(k->fs, d->fs, d->nf);
    th_to_double(k->ft, d->ft, (size_t)k->B * k->Dt);
    th_to_double(k->zs, d->zs, d->nz);
}

static void free_dcase(struct dcase *d)
{
    free(d->fs);
    free(d->ft);
    free(d->zs);
    free(d->gf);
    free(d->gz);
}

static const char *metric_set(int metric)
{
    return metric == COSINE ? "metric=cosine" : "metric=distance";
}

/* Compare the plugin on k with the reference (loss, terms, gradients). */
static void check_case(struct case_ *k, int metric, double alpha,
                       double weight, bool labels)
{
    char sa[64], sw[64];
    const char *sets[3] = {metric_set(metric), sw, sa};
    double loss, terms[2], ce, kd, want;
    struct dcase d;
    struct ref r;

    to_double_case(k, &d);
    snprintf(sw, sizeof sw, "weight=%.17g", weight);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    r = (struct ref){k->B,  k->Ds,  k->Dt, k->C,  d.ft,
                     d.zs,  labels ? k->y : NULL, metric, alpha, weight};
    cr_assert_eq(run_case(k, labels, sets, labels ? 3 : 2, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, d.fs, NULL, &ce, &kd, d.gf, d.gz);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], kd, 1e-6, 1e-4, "kd");
    th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    th_assert_close(k->gf, d.gf, d.nf, 1e-5, 1e-4, "student.feat grad");
    if (labels)
        th_assert_close(k->gz, d.gz, d.nz, 1e-5, 1e-4, "student.logits grad");
    free_dcase(&d);
}

static void check_against_reference(int B, int Ds, int Dt, int metric,
                                    double alpha, double weight, bool labels,
                                    uint64_t seed)
{
    struct case_ k;
    make_case(&k, B, Ds, Dt, 10, -30, 30, seed);
    check_case(&k, metric, alpha, weight, labels);
    free_case(&k);
}

/* ---------------------------------------------------------------------- */

Test(relation, distance_matches_reference)
{
    check_against_reference(8, 6, 9, DISTANCE, 0.1, 1.0, false, 1);
    check_against_reference(5, 17, 3, DISTANCE, 0.1, 2.5, false, 2);
}

Test(relation, cosine_matches_reference)
{
    check_against_reference(8, 6, 9, COSINE, 0.1, 1.0, false, 3);
    check_against_reference(5, 17, 3, COSINE, 0.1, 2.5, false, 4);
}

Test(relation, matches_reference_with_labels)
{
    check_against_reference(7, 5, 8, DISTANCE, 0.3, 1.0, true, 5);
    check_against_reference(7, 5, 8, COSINE, 0.3, 1.0, true, 6);
    check_against_reference(6, 4, 4, DISTANCE, 0.0, 1.0, true, 7);
    check_against_reference(6, 4, 4, COSINE, 1.0, 1.0, true, 8);
}

Test(relation, matches_reference_batch_wider_than_work_group)
{
    /* B > 64: every item of a row's work-group loops over columns. */
    int B = th_small() ? 70 : 100;
    check_against_reference(B, 24, 40, DISTANCE, 0.2, 1.0, true, 9);
    check_against_reference(B, 24, 40, COSINE, 0.2, 1.0, true, 10);
}

Test(relation, single_row)
{
    /* One row: R_S = R_T (0 or 1), so only the CE term is left. */
    check_against_reference(1, 6, 9, DISTANCE, 0.1, 1.0, false, 11);
    check_against_reference(1, 6, 9, COSINE, 0.1, 1.0, false, 12);
    check_against_reference(1, 6, 9, DISTANCE, 0.4, 1.0, true, 13);
    check_against_reference(1, 6, 9, COSINE, 0.4, 1.0, true, 14);
}

Test(relation, flattens_higher_rank_features)
{
    struct case_ k;
    double l1, l2, t[2];
    float *g = malloc(sizeof(float) * 4 * 6);
    make_case(&k, 4, 6, 5, 3, -30, 30, 15);
    for (int metric = DISTANCE; metric <= COSINE; metric++) {
        const char *sets[] = {metric_set(metric)};
        struct th_input in[2] = {
            {"student.feat", KDCL_DTYPE_F32, 3, {4, 2, 3}, k.fs, g},
            {"teacher.feat", KDCL_DTYPE_F32, 4, {4, 5, 1, 1}, k.ft, NULL},
        };
        cr_assert_eq(th_run("relation", sets, 1, in, 2, &l1, t, 2), KDCL_OK,
                     "%s", kdcl_context_errmsg(th_ctx()));
        cr_assert_eq(run_case(&k, false, sets, 1, &l2, t), KDCL_OK);
        cr_assert(l1 == l2, "loss %.9g vs flat %.9g", l1, l2);
        cr_assert(memcmp(g, k.gf, sizeof(float) * 24) == 0,
                  "gradient differs from the flat run");
        check_case(&k, metric, 0.1, 1.0, false);
    }
    free(g);
    free_case(&k);
}

Test(relation, gradient_matches_finite_differences)
{
    for (int metric = DISTANCE; metric <= COSINE; metric++) {
        const char *sets[] = {metric_set(metric), "alpha=0.25"};
        struct case_ k;
        struct dcase d;
        struct ref r;
        double loss, terms[2];
        double *g;

        make_case(&k, 5, 4, 6, 3, -3, 3, 16 + metric);
        to_double_case(&k, &d);
        g = malloc(sizeof(double) * d.nf);
        r = (struct ref){5, 4, 6, 3, d.ft, d.zs, k.y, metric, 0.25, 1.0};
        cr_assert_eq(run_case(&k, true, sets, 2, &loss, terms), KDCL_OK);
        th_fd_grad(ref_fn_feat, &r, d.fs, d.nf, 1e-6, g);
        th_assert_close(k.gf, g, d.nf, 1e-6, 1e-4,
                        "student.feat grad vs finite differences");
        g_fs = d.fs;
        th_fd_grad(ref_fn_logits, &r, d.zs, d.nz, 1e-6, d.gz);
        th_assert_close(k.gz, d.gz, d.nz, 1e-6, 1e-4,
                        "student.logits grad vs finite differences");

        /* And the device's own loss, perturbed in float32 (coarse). */
        for (size_t i = 0; i < d.nf; i += 3) {
            const float h = 1e-2f, x0 = k.fs[i];
            double lp, lm, gi = k.gf[i];
            k.fs[i] = x0 + h;
            cr_assert_eq(run_case(&k, true, sets, 2, &lp, terms), KDCL_OK);
            k.fs[i] = x0 - h;
            cr_assert_eq(run_case(&k, true, sets, 2, &lm, terms), KDCL_OK);
            k.fs[i] = x0;
            th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                             "device finite difference");
        }
        free(g);
        free_dcase(&d);
        free_case(&k);
    }
}

Test(relation, deterministic_bitwise)
{
    int B = th_small() ? 40 : 256, Ds = th_small() ? 16 : 128,
        Dt = th_small() ? 24 : 64;
    for (int metric = DISTANCE; metric <= COSINE; metric++) {
        const char *sets[] = {metric_set(metric)};
        struct case_ k;
        double l1, l2, t[2];
        float *g1 = malloc(sizeof(float) * B * Ds);
        make_case(&k, B, Ds, Dt, 10, -10, 10, 21);
        cr_assert_eq(run_case(&k, true, sets, 1, &l1, t), KDCL_OK);
        memcpy(g1, k.gf, sizeof(float) * B * Ds);
        cr_assert_eq(run_case(&k, true, sets, 1, &l2, t), KDCL_OK);
        cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g",
                  l1, l2);
        cr_assert(memcmp(g1, k.gf, sizeof(float) * B * Ds) == 0,
                  "gradients differ between runs");
        free(g1);
        free_case(&k);
    }
}

Test(relation, extreme_inputs_stay_finite)
{
    for (int metric = DISTANCE; metric <= COSINE; metric++) {
        const char *sets[] = {metric_set(metric)};
        struct case_ k;
        double loss, terms[2];
        make_case(&k, 6, 20, 12, 5, -1e4, 1e4, 31);
        cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
        cr_assert(isfinite(loss) && isfinite(terms[0]) && isfinite(terms[1]),
                  "loss %g", loss);
        for (int i = 0; i < 6 * 20; i++)
            cr_assert(isfinite(k.gf[i]), "grad[%d] = %g", i, k.gf[i]);
        for (int i = 0; i < 6 * 5; i++)
            cr_assert(isfinite(k.gz[i]), "logits grad[%d] = %g", i, k.gz[i]);
        free_case(&k);
    }
}

Test(relation, identical_features_give_zero_loss)
{
    for (int metric = DISTANCE; metric <= COSINE; metric++) {
        const char *sets[] = {metric_set(metric)};
        struct case_ k;
        double loss, terms[2];
        make_case(&k, 6, 13, 13, 3, -5, 5, 41);
        memcpy(k.ft, k.fs, sizeof(float) * 6 * 13);
        cr_assert_eq(run_case(&k, false, sets, 1, &loss, terms), KDCL_OK);
        cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
        for (int i = 0; i < 6 * 13; i++)
            cr_assert(fabs(k.gf[i]) < 1e-7, "grad[%d] = %g", i, k.gf[i]);
        free_case(&k);
    }
}

Test(relation, coincident_rows_have_zero_distance_and_gradient)
{
    /* Rows 1 and 4 of the student coincide: R_S(1,4) = 0, and that pair
       contributes no gradient, while the teacher's rows stay apart. */
    struct case_ k;
    make_case(&k, 6, 7, 5, 3, -30, 30, 45);
    memcpy(k.fs + 4 * 7, k.fs + 1 * 7, sizeof(float) * 7);
    check_case(&k, DISTANCE, 0.1, 1.0, false);
    check_case(&k, COSINE, 0.1, 1.0, false);
    free_case(&k);
}

Test(relation, cosine_handles_zero_rows)
{
    /* A zero student row and a tiny one (norm < 1e-8): their norms are
       clamped to 1e-8, a constant, so R(2,.) = 0 (also R(2,2)) and the
       gradient of R(i,j) for the tiny row is F_j / (1e-8 |F_j|) without
       the normalisation's Jacobian. */
    struct case_ k;
    make_case(&k, 5, 6, 4, 3, -30, 30, 47);
    memset(k.fs + 2 * 6, 0, sizeof(float) * 6);
    {
        double n = 0;
        for (int d = 0; d < 6; d++)
            n += (double)k.fs[3 * 6 + d] * k.fs[3 * 6 + d];
        for (int d = 0; d < 6; d++)
            k.fs[3 * 6 + d] = (float)(k.fs[3 * 6 + d] * 5e-9 / sqrt(n));
    }
    check_case(&k, COSINE, 0.1, 1.0, false);
    check_case(&k, DISTANCE, 0.1, 1.0, false);
    free_case(&k);
}

Test(relation, cosine_gradient_is_orthogonal_to_rows)
{
    /* Cosines do not change when a row is scaled, so each row's gradient
       is orthogonal to the row. */
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"metric=cosine"};
    make_case(&k, 8, 10, 6, 3, -30, 30, 48);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_OK);
    for (int i = 0; i < 8; i++) {
        double dot = 0, gn = 0, fn = 0;
        for (int d = 0; d < 10; d++) {
            dot += (double)k.gf[i * 10 + d] * k.fs[i * 10 + d];
            gn += (double)k.gf[i * 10 + d] * k.gf[i * 10 + d];
            fn += (double)k.fs[i * 10 + d] * k.fs[i * 10 + d];
        }
        cr_assert(fabs(dot) <= 1e-4 * sqrt(gn * fn) + 1e-12,
                  "row %d: g.f = %g, |g||f| = %g", i, dot, sqrt(gn * fn));
    }
    free_case(&k);
}

Test(relation, logits_without_labels_get_zero_gradient)
{
    /* No labels: no CE term; student.logits is read for nothing, and its
       gradient (asked for, poisoned with NaN) must come back zero. */
    struct case_ k;
    double loss, t[2], want;
    struct dcase d;
    struct ref r;
    struct th_input in[3];
    make_case(&k, 5, 4, 6, 3, -30, 30, 49);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {5, 4},
                              k.fs, k.gf};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {5, 6},
                              k.ft, NULL};
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {5, 3},
                              k.zs, k.gz};
    cr_assert_eq(th_run("relation", NULL, 0, in, 3, &loss, t, 2), KDCL_OK,
                 "%s", kdcl_context_errmsg(th_ctx()));
    to_double_case(&k, &d);
    r = (struct ref){5, 4, 6, 3, d.ft, NULL, NULL, DISTANCE, 0.1, 1.0};
    want = ref_loss(&r, d.fs, NULL, NULL, NULL, d.gf, NULL);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close(k.gf, d.gf, d.nf, 1e-5, 1e-4, "student.feat grad");
    for (int i = 0; i < 15; i++)
        cr_assert(k.gz[i] == 0.0f, "logits grad[%d] = %g", i, k.gz[i]);
    free_dcase(&d);
    free_case(&k);
}

Test(relation, loss_without_gradients_asked)
{
    /* No gradient wanted: the backward work is skipped, the loss is the
       same. */
    for (int metric = DISTANCE; metric <= COSINE; metric++) {
        const char *sets[] = {metric_set(metric), "alpha=0.3"};
        struct case_ k;
        double l1, l2, t1[2], t2[2];
        struct th_input in[4];
        make_case(&k, 7, 5, 6, 4, -30, 30, 50);
        in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {7, 5},
                                  k.fs, NULL};
        in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {7, 6},
                                  k.ft, NULL};
        in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2,
                                  {7, 4}, k.zs, NULL};
        in[3] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {7}, k.y,
                                  NULL};
        cr_assert_eq(th_run("relation", sets, 2, in, 4, &l1, t1, 2),
                     KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
        cr_assert_eq(run_case(&k, true, sets, 2, &l2, t2), KDCL_OK);
        cr_assert(l1 == l2 && t1[0] == t2[0] && t1[1] == t2[1],
                  "loss %.9g vs %.9g with gradients", l1, l2);
        check_case(&k, metric, 0.3, 1.0, true);
        free_case(&k);
    }
}

Test(relation, rejects_alpha_without_labels)
{
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"alpha=0.5"};
    make_case(&k, 2, 3, 3, 3, -1, 1, 51);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(relation, rejects_labels_without_logits)
{
    struct case_ k;
    double loss, t[2];
    struct th_input in[3];
    make_case(&k, 3, 2, 2, 3, -1, 1, 52);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {3, 2},
                              k.fs, NULL};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {3, 2},
                              k.ft, NULL};
    in[2] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {3}, k.y, NULL};
    cr_assert_eq(th_run("relation", NULL, 0, in, 3, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    free_case(&k);
}

Test(relation, rejects_mismatched_batch)
{
    float fs[6] = {0}, ft[8] = {0};
    double loss, t[2];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 2}, ft, NULL},
    };
    const char *msg;
    cr_assert_eq(th_run("relation", NULL, 0, in, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "teacher.feat") && strstr(msg, "[4,2]")
                  && strstr(msg, "[2,3]"),
              "%s", msg);
}

Test(relation, rejects_rank_one_features)
{
    float fs[4] = {0}, ft[8] = {0};
    double loss, t[2];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 1, {4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 2}, ft, NULL},
    };
    cr_assert_eq(th_run("relation", NULL, 0, in, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.feat"));
}

Test(relation, rejects_bad_logits_and_labels_shapes)
{
    struct case_ k;
    double loss, t[2];
    struct th_input in[4];
    make_case(&k, 4, 3, 3, 5, -1, 1, 53);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {4, 3},
                              k.fs, NULL};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {4, 3},
                              k.ft, NULL};
    /* logits of 2 rows for 4 feature rows */
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {2, 10},
                              k.zs, NULL};
    in[3] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {2}, k.y, NULL};
    cr_assert_eq(th_run("relation", NULL, 0, in, 4, &loss, t, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    /* labels of 2 rows for 4 rows */
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {4, 5},
                              k.zs, NULL};
    cr_assert_eq(th_run("relation", NULL, 0, in, 4, &loss, t, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(relation, rejects_missing_inputs)
{
    float f[6] = {0};
    double loss, t[2];
    struct th_input s[1] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, f, NULL},
    };
    struct th_input te[1] = {
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 3}, f, NULL},
    };
    cr_assert_eq(th_run("relation", NULL, 0, s, 1, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
    cr_assert_eq(th_run("relation", NULL, 0, te, 1, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.feat"));
}

Test(relation, rejects_unknown_metric)
{
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"metric=angle"};
    make_case(&k, 2, 3, 3, 3, -1, 1, 54);
    cr_assert_neq(run_case(&k, false, sets, 1, &loss, t), KDCL_OK);
    free_case(&k);
}

/* Read the float32 payload (the last n values) of a .npy file. */
static void read_npy_tail(const char *path, float *v, size_t n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s not written", path);
    fseek(f, -(long)(n * sizeof(float)), SEEK_END);
    cr_assert_eq(fread(v, sizeof(float), n, f), n);
    fclose(f);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient files equal the reference. */
static void cli_case(int metric, double golden_loss, double golden_kd)
{
    struct case_ k;
    char s[512], t[512], z[512], y[512], gf[512], gz[512], args[4096],
        out[4096], err[4096];
    const int64_t fshape[2] = {6, 5}, tshape[2] = {6, 7}, zshape[2] = {6, 4};
    double ce, kd, want;
    float gff[30], gzf[24];
    struct dcase d;
    struct ref r;

    make_case(&k, 6, 5, 7, 4, -5, 5, 71);
    snprintf(s, sizeof s, "%s/fs.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/ft.npy", th_tmpdir());
    snprintf(z, sizeof z, "%s/zs.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/y.npy", th_tmpdir());
    snprintf(gf, sizeof gf, "%s/gf.npy", th_tmpdir());
    snprintf(gz, sizeof gz, "%s/gz.npy", th_tmpdir());
    th_npy_f32(s, k.fs, 2, fshape);
    th_npy_f32(t, k.ft, 2, tshape);
    th_npy_f32(z, k.zs, 2, zshape);
    th_npy_i32(y, k.y, 1, zshape);
    snprintf(args, sizeof args,
             "loss --plugin relation --input student.feat=%s "
             "--input teacher.feat=%s --input student.logits=%s "
             "--labels %s --set %s --set alpha=0.25 --set weight=2 "
             "--grad-out student.feat=%s --grad-out student.logits=%s",
             s, t, z, y, metric_set(metric), gf, gz);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    to_double_case(&k, &d);
    r = (struct ref){6, 5, 7, 4, d.ft, d.zs, k.y, metric, 0.25, 2.0};
    want = ref_loss(&r, d.fs, NULL, &ce, &kd, d.gf, d.gz);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), kd, 1e-6, 1e-4, "kd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), golden_loss, 0, 1e-4,
                     "golden loss");
    th_assert_close1(th_parse_value(out, "term kd"), golden_kd, 0, 1e-4,
                     "golden kd");
    read_npy_tail(gf, gff, 30);
    read_npy_tail(gz, gzf, 24);
    th_assert_close(gff, d.gf, 30, 1e-5, 1e-4, "cli student.feat grad");
    th_assert_close(gzf, d.gz, 24, 1e-5, 1e-4, "cli student.logits grad");
    free_dcase(&d);
    free_case(&k);
}

Test(relation, cli_golden_values_distance)
{
    cli_case(DISTANCE, 30.5504535, 35.2921751);
}

Test(relation, cli_golden_values_cosine)
{
    cli_case(COSINE, 4.74476393, 0.884588945);
}
