/*
 * tests/test-plugin-rkd.c - the rkd plugin (relational KD, distance and
 * angle terms) against an independent float64 reference (LOSSES.md `rkd`),
 * finite differences, anchor chunking, determinism, extreme inputs,
 * degenerate cases (one row, two rows, coincident rows), invariances, bad
 * input and `kdcl loss` golden values.
 *
 * The reference loops over pairs and B^3 triples directly (fine at
 * B <= 70 in float64); the plugin goes through Gram matrices and batched
 * GEMMs over anchor chunks.  Random features in [-30, 30]^D are far apart,
 * so the Gram route's float32 cancellation (docs/plugins.md, rkd) stays
 * well inside the tolerances.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernels         */

struct ref {
    int B, Ds, Dt, C;
    const double *ft; /* teacher features [B,Dt] */
    const double *zs; /* student logits [B,C]; NULL: none */
    const int32_t *y; /* NULL: no labels */
    double alpha, w_dist, w_angle;
};

static double sl1(double x)
{
    double a = fabs(x);
    return a < 1 ? 0.5 * x * x : a - 0.5;
}

static double sl1_grad(double x)
{
    return x > 1 ? 1 : x < -1 ? -1 : x;
}

static double dot(const double *a, const double *b, int D)
{
    double s = 0;
    for (int d = 0; d < D; d++)
        s += a[d] * b[d];
    return s;
}

/*
 * Normalised distances dn [B*B] of e [B,D]: d(i,j) = sqrt(max(|e_i|^2 +
 * |e_j|^2 - 2 e_i.e_j, 1e-12)), d(i,i) = 0, divided by the mean of the
 * entries > 0 (none when B = 1: then dn = 0).  sq gets the radicands;
 * returns the mean, *npos the number of positive entries.
 */
static double dist_matrix(const double *e, int B, int D, double *dn,
                          double *sq, int *npos)
{
    double sum = 0, mu;
    *npos = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            const double *a = e + (size_t)i * D, *b = e + (size_t)j * D;
            double s = dot(a, a, D) + dot(b, b, D) - 2 * dot(a, b, D);
            double d = i == j ? 0 : sqrt(fmax(s, 1e-12));
            sq[i * B + j] = s;
            dn[i * B + j] = d;
            if (d > 0) {
                sum += d;
                (*npos)++;
            }
        }
    mu = *npos ? sum / *npos : 0;
    for (int p = 0; p < B * B; p++)
        dn[p] = mu > 0 ? dn[p] / mu : 0;
    return mu;
}

/* u[(i*B + j)*D + d] = (e_j - e_i) / max(||e_j - e_i||, 1e-12); nrm. */
static void unit_vectors(const double *e, int B, int D, double *u,
                         double *nrm)
{
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double *v = u + ((size_t)i * B + j) * D, n;
            for (int d = 0; d < D; d++)
                v[d] = e[(size_t)j * D + d] - e[(size_t)i * D + d];
            n = sqrt(dot(v, v, D));
            nrm[i * B + j] = n;
            for (int d = 0; d < D; d++)
                v[d] /= fmax(n, 1e-12);
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

struct terms {
    double ce, kd, dist, angle;
};

/*
 * Loss at student features fs and logits zs (r->zs when NULL); the terms
 * and the gradients of the total loss (gf [B,Ds], gz [B,C]) when non-NULL.
 */
static double ref_loss(const struct ref *r, const double *fs,
                       const double *zs, struct terms *tm, double *gf,
                       double *gz)
{
    const int B = r->B, Ds = r->Ds, Dt = r->Dt;
    const size_t bb = (size_t)B * B;
    double a = r->y ? r->alpha : 0.0, ld = 0, la = 0, ce = 0, kd, mus;
    double *dns = malloc(sizeof(double) * bb);
    double *dnt = malloc(sizeof(double) * bb);
    double *sqs = malloc(sizeof(double) * bb);
    double *sqt = malloc(sizeof(double) * bb);
    double *us = malloc(sizeof(double) * bb * Ds);
    double *ut = malloc(sizeof(double) * bb * Dt);
    double *ns = malloc(sizeof(double) * bb);
    double *nt = malloc(sizeof(double) * bb);
    int nps, npt;

    if (!zs)
        zs = r->zs;
    mus = dist_matrix(fs, B, Ds, dns, sqs, &nps);
    dist_matrix(r->ft, B, Dt, dnt, sqt, &npt);
    for (size_t p = 0; p < bb; p++)
        ld += sl1(dns[p] - dnt[p]);
    ld /= (double)bb;
    unit_vectors(fs, B, Ds, us, ns);
    unit_vectors(r->ft, B, Dt, ut, nt);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++)
            for (int k = 0; k < B; k++) {
                double as = dot(us + ((size_t)i * B + j) * Ds,
                                us + ((size_t)i * B + k) * Ds, Ds);
                double at = dot(ut + ((size_t)i * B + j) * Dt,
                                ut + ((size_t)i * B + k) * Dt, Dt);
                la += sl1(as - at);
            }
    la /= (double)bb * B;
    kd = r->w_dist * ld + r->w_angle * la;

    if (gf) {
        const double cd = (1 - a) * r->w_dist / (double)bb;
        const double ca = (1 - a) * r->w_angle / ((double)bb * B);
        double gsum = 0;
        double *du = calloc(bb * Ds, sizeof(double));
        memset(gf, 0, sizeof(double) * B * Ds);
        /* distance: through dn = d / mean(d > 0) and d = sqrt(max(s, eps)) */
        for (size_t p = 0; p < bb; p++)
            gsum += cd * sl1_grad(dns[p] - dnt[p]) * dns[p];
        for (int k = 0; k < B; k++)
            for (int l = 0; l < B; l++) {
                double dd, ds, s = sqs[k * B + l];
                if (k == l || mus <= 0 || !(s > 1e-12))
                    continue;
                dd = (cd * sl1_grad(dns[k * B + l] - dnt[k * B + l])
                      - gsum / nps) / mus;
                ds = dd / (2 * sqrt(s));
                for (int d = 0; d < Ds; d++) {
                    double x = 2 * (fs[k * Ds + d] - fs[l * Ds + d]);
                    gf[k * Ds + d] += ds * x;
                    gf[l * Ds + d] -= ds * x;
                }
            }
        /* angle: a(i,j,k) = u_ij . u_ik */
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++)
                for (int k = 0; k < B; k++) {
                    double *uj = us + ((size_t)i * B + j) * Ds;
                    double *uk = us + ((size_t)i * B + k) * Ds;
                    double f = ca * sl1_grad(
                        dot(uj, uk, Ds)
                        - dot(ut + ((size_t)i * B + j) * Dt,
                              ut + ((size_t)i * B + k) * Dt, Dt));
                    for (int d = 0; d < Ds; d++) {
                        du[((size_t)i * B + j) * Ds + d] += f * uk[d];
                        du[((size_t)i * B + k) * Ds + d] += f * uj[d];
                    }
                }
        /* through u = v / max(|v|, 1e-12), v = e_j - e_i */
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) {
                double *u = us + ((size_t)i * B + j) * Ds;
                double *g = du + ((size_t)i * B + j) * Ds;
                double n = ns[i * B + j], ug = dot(u, g, Ds);
                if (j == i)
                    continue;
                for (int d = 0; d < Ds; d++) {
                    double v = n > 1e-12 ? (g[d] - u[d] * ug) / n
                                         : g[d] / 1e-12;
                    gf[j * Ds + d] += v;
                    gf[i * Ds + d] -= v;
                }
            }
        free(du);
    }
    if (r->y)
        ce = ref_ce(B, r->C, zs, r->y, a, gz);
    if (tm)
        *tm = (struct terms){ce, kd, ld, la};
    free(dns);
    free(dnt);
    free(sqs);
    free(sqt);
    free(us);
    free(ut);
    free(ns);
    free(nt);
    return r->y ? a * ce + (1 - a) * kd : kd;
}

static double ref_fn_feat(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL, NULL);
}

static const double *g_fs; /* the fixed student features for ref_fn_logits */

static double ref_fn_logits(const double *x, void *user)
{
    return ref_loss(user, g_fs, x, NULL, NULL, NULL);
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
    return th_run("rkd", sets, n_sets, in, with_labels ? 4 : 2, loss, terms,
                  4);
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

/* Compare the plugin on k with the reference (loss, terms, gradients);
   chunk > 0 sets anchor_chunk. */
static void check_case(struct case_ *k, double alpha, double w_dist,
                       double w_angle, bool labels, int chunk)
{
    char sa[64], sd[64], sg[64], sc[64];
    const char *sets[4] = {sd, sg, sc, sa};
    double loss, terms[4], want;
    struct terms tm;
    struct dcase d;
    struct ref r;

    to_double_case(k, &d);
    snprintf(sd, sizeof sd, "w_dist=%.17g", w_dist);
    snprintf(sg, sizeof sg, "w_angle=%.17g", w_angle);
    snprintf(sc, sizeof sc, "anchor_chunk=%d", chunk);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    r = (struct ref){k->B, k->Ds, k->Dt, k->C, d.ft, d.zs,
                     labels ? k->y : NULL, alpha, w_dist, w_angle};
    cr_assert_eq(run_case(k, labels, sets, labels ? 4 : 3, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, d.fs, NULL, &tm, d.gf, d.gz);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[0], tm.ce, 1e-6, 1e-4, "ce");
    th_assert_close1(terms[1], tm.kd, 1e-6, 1e-4, "kd");
    th_assert_close1(terms[2], tm.dist, 1e-6, 1e-4, "dist");
    th_assert_close1(terms[3], tm.angle, 1e-6, 1e-4, "angle");
    th_assert_close(k->gf, d.gf, d.nf, 1e-5, 1e-4, "student.feat grad");
    if (labels)
        th_assert_close(k->gz, d.gz, d.nz, 1e-5, 1e-4, "student.logits grad");
    free_dcase(&d);
}

static void check_against_reference(int B, int Ds, int Dt, double alpha,
                                    double w_dist, double w_angle,
                                    bool labels, int chunk, uint64_t seed)
{
    struct case_ k;
    make_case(&k, B, Ds, Dt, 10, -30, 30, seed);
    check_case(&k, alpha, w_dist, w_angle, labels, chunk);
    free_case(&k);
}

/* ---------------------------------------------------------------------- */

Test(rkd, matches_reference)
{
    check_against_reference(8, 6, 9, 0.1, 25, 50, false, 0, 1);
    check_against_reference(6, 17, 3, 0.1, 25, 50, false, 0, 2);
}

Test(rkd, matches_reference_with_labels)
{
    check_against_reference(7, 5, 8, 0.3, 10, 3, true, 0, 3);
    check_against_reference(6, 4, 4, 0.0, 25, 50, true, 0, 4);
    check_against_reference(6, 4, 4, 1.0, 25, 50, true, 0, 5);
}

Test(rkd, matches_reference_each_term_alone)
{
    check_against_reference(7, 5, 6, 0.1, 1, 0, false, 0, 6);
    check_against_reference(7, 5, 6, 0.1, 0, 1, false, 0, 7);
}

Test(rkd, matches_reference_batch16)
{
    check_against_reference(16, 12, 20, 0.2, 25, 50, true, 0, 8);
}

Test(rkd, matches_reference_batch_wider_than_work_group)
{
    /* B > 64: every item of a work-group loops over columns. */
    int B = th_small() ? 20 : 70;
    check_against_reference(B, 8, 5, 0.1, 25, 50, false, 0, 9);
}

Test(rkd, anchor_chunks_match_reference)
{
    /* Chunks of 1, 3, 4 (a ragged last chunk), all and more than B. */
    static const int chunks[] = {1, 3, 4, 11, 100};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
        check_against_reference(11, 7, 5, 0.1, 25, 50, false, chunks[c],
                                10);
}

Test(rkd, single_row)
{
    /* One row: every distance and angle is 0, only CE is left. */
    check_against_reference(1, 6, 9, 0.1, 25, 50, false, 0, 11);
    check_against_reference(1, 6, 9, 0.4, 25, 50, true, 0, 12);
}

Test(rkd, two_rows_give_zero_kd)
{
    /* B = 2: both normalised distances are 1 and every angle is 0 or 1
       for student and teacher alike, so L_KD = 0 with zero gradient. */
    struct case_ k;
    double loss, t[4];
    make_case(&k, 2, 5, 7, 3, -30, 30, 13);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, t), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert(fabs(loss) < 1e-6 && fabs(t[2]) < 1e-6 && fabs(t[3]) < 1e-6,
              "loss %g dist %g angle %g", loss, t[2], t[3]);
    for (int i = 0; i < 10; i++)
        cr_assert(fabs(k.gf[i]) < 1e-6, "grad[%d] = %g", i, k.gf[i]);
    check_case(&k, 0.1, 25, 50, false, 0);
    free_case(&k);
}

Test(rkd, flattens_higher_rank_features)
{
    struct case_ k;
    double l1, l2, t[4];
    float *g = malloc(sizeof(float) * 5 * 6);
    struct th_input in[2];
    make_case(&k, 5, 6, 4, 3, -30, 30, 14);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 3, {5, 2, 3},
                              k.fs, g};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 4,
                              {5, 1, 2, 2}, k.ft, NULL};
    cr_assert_eq(th_run("rkd", NULL, 0, in, 2, &l1, t, 4), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(run_case(&k, false, NULL, 0, &l2, t), KDCL_OK);
    cr_assert(l1 == l2, "loss %.9g vs flat %.9g", l1, l2);
    cr_assert(memcmp(g, k.gf, sizeof(float) * 30) == 0,
              "gradient differs from the flat run");
    check_case(&k, 0.1, 25, 50, false, 0);
    free(g);
    free_case(&k);
}

Test(rkd, gradient_matches_finite_differences)
{
    const char *sets[] = {"alpha=0.25"};
    struct case_ k;
    struct dcase d;
    struct ref r;
    double loss, terms[4];
    double *g;
    float g0[5 * 4];

    make_case(&k, 5, 4, 6, 3, -3, 3, 16);
    to_double_case(&k, &d);
    g = malloc(sizeof(double) * d.nf);
    r = (struct ref){5, 4, 6, 3, d.ft, d.zs, k.y, 0.25, 25, 50};
    cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
    th_fd_grad(ref_fn_feat, &r, d.fs, d.nf, 1e-6, g);
    th_assert_close(k.gf, g, d.nf, 1e-6, 1e-4,
                    "student.feat grad vs finite differences");
    g_fs = d.fs;
    th_fd_grad(ref_fn_logits, &r, d.zs, d.nz, 1e-6, d.gz);
    th_assert_close(k.gz, d.gz, d.nz, 1e-6, 1e-4,
                    "student.logits grad vs finite differences");

    /* And the device's own loss, perturbed in float32 (coarse).  Without
       the CE term, whose size would drown the differences in rounding;
       RKD's normalisations curve enough that h must stay small. */
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    memcpy(g0, k.gf, sizeof g0);
    for (size_t i = 0; i < d.nf; i += 3) {
        const float h = 4e-3f, x0 = k.fs[i];
        double lp, lm;
        k.fs[i] = x0 + h;
        cr_assert_eq(run_case(&k, false, NULL, 0, &lp, terms), KDCL_OK);
        k.fs[i] = x0 - h;
        cr_assert_eq(run_case(&k, false, NULL, 0, &lm, terms), KDCL_OK);
        k.fs[i] = x0;
        th_assert_close1(g0[i], (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                         "device finite difference");
    }
    free(g);
    free_dcase(&d);
    free_case(&k);
}

Test(rkd, deterministic_bitwise)
{
    /* Large enough for several anchor chunks with anchor_chunk=7 (and one
       or more with the automatic size). */
    int B = th_small() ? 24 : 128, Ds = th_small() ? 16 : 64,
        Dt = th_small() ? 8 : 32;
    static const char *const chunk_sets[] = {"anchor_chunk=0",
                                             "anchor_chunk=7"};
    for (int c = 0; c < 2; c++) {
        const char *sets[] = {chunk_sets[c]};
        struct case_ k;
        double l1, l2, t1[4], t2[4];
        float *g1 = malloc(sizeof(float) * B * Ds);
        float *z1 = malloc(sizeof(float) * B * 10);
        make_case(&k, B, Ds, Dt, 10, -10, 10, 21);
        cr_assert_eq(run_case(&k, true, sets, 1, &l1, t1), KDCL_OK, "%s",
                     kdcl_context_errmsg(th_ctx()));
        memcpy(g1, k.gf, sizeof(float) * B * Ds);
        memcpy(z1, k.gz, sizeof(float) * B * 10);
        cr_assert_eq(run_case(&k, true, sets, 1, &l2, t2), KDCL_OK);
        cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g",
                  l1, l2);
        cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ");
        cr_assert(memcmp(g1, k.gf, sizeof(float) * B * Ds) == 0,
                  "student.feat gradients differ between runs");
        cr_assert(memcmp(z1, k.gz, sizeof(float) * B * 10) == 0,
                  "student.logits gradients differ between runs");
        for (int i = 0; i < B * Ds; i++)
            cr_assert(isfinite(g1[i]), "grad[%d] = %g", i, g1[i]);
        free(g1);
        free(z1);
        free_case(&k);
    }
}

Test(rkd, extreme_inputs_stay_finite)
{
    struct case_ k;
    double loss, terms[4];
    make_case(&k, 6, 20, 12, 5, -1e4, 1e4, 31);
    cr_assert_eq(run_case(&k, true, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(isfinite(loss), "loss %g", loss);
    for (int i = 0; i < 4; i++)
        cr_assert(isfinite(terms[i]), "term %d = %g", i, terms[i]);
    for (int i = 0; i < 6 * 20; i++)
        cr_assert(isfinite(k.gf[i]), "grad[%d] = %g", i, k.gf[i]);
    for (int i = 0; i < 6 * 5; i++)
        cr_assert(isfinite(k.gz[i]), "logits grad[%d] = %g", i, k.gz[i]);
    free_case(&k);
}

Test(rkd, identical_features_give_zero_loss)
{
    struct case_ k;
    double loss, terms[4];
    make_case(&k, 6, 13, 13, 3, -5, 5, 41);
    memcpy(k.ft, k.fs, sizeof(float) * 6 * 13);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(fabs(k.gf[i]) < 1e-7, "grad[%d] = %g", i, k.gf[i]);
    free_case(&k);
}

Test(rkd, invariant_to_translation_and_scale)
{
    /* Normalised distances and angles do not change when the student's
       features are scaled and shifted; the gradient scales by 1/3. */
    struct case_ k;
    double l1, l2, t[4];
    float *g1 = malloc(sizeof(float) * 9 * 6);
    make_case(&k, 9, 6, 8, 3, -10, 10, 43);
    cr_assert_eq(run_case(&k, false, NULL, 0, &l1, t), KDCL_OK);
    memcpy(g1, k.gf, sizeof(float) * 9 * 6);
    for (int i = 0; i < 9 * 6; i++)
        k.fs[i] = 3.0f * k.fs[i] + 5.0f;
    cr_assert_eq(run_case(&k, false, NULL, 0, &l2, t), KDCL_OK);
    th_assert_close1(l2, l1, 1e-6, 1e-4, "loss after x -> 3x + 5");
    for (int i = 0; i < 9 * 6; i++)
        th_assert_close1(3.0 * k.gf[i], g1[i], 1e-5, 1e-3,
                         "3 * grad after x -> 3x + 5");
    free(g1);
    free_case(&k);
}

Test(rkd, coincident_rows_follow_the_clamps)
{
    /* Student rows 1 and 4 coincide: d(1,4) = sqrt(1e-12) (> 0, counted
       in the mean) with zero gradient, and u_14 = 0, whose gradient
       passes through max(||v||, 1e-12) as v / 1e-12 (as RepDistiller). */
    struct case_ k;
    make_case(&k, 6, 5, 4, 3, -30, 30, 45);
    memcpy(k.fs + 4 * 5, k.fs + 1 * 5, sizeof(float) * 5);
    check_case(&k, 0.1, 25, 0, false, 0);
    check_case(&k, 0.1, 25, 50, false, 0);
    free_case(&k);
}

Test(rkd, logits_without_labels_get_zero_gradient)
{
    struct case_ k;
    double loss, t[4], want;
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
    cr_assert_eq(th_run("rkd", NULL, 0, in, 3, &loss, t, 4), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    to_double_case(&k, &d);
    r = (struct ref){5, 4, 6, 3, d.ft, NULL, NULL, 0.1, 25, 50};
    want = ref_loss(&r, d.fs, NULL, NULL, d.gf, NULL);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close(k.gf, d.gf, d.nf, 1e-5, 1e-4, "student.feat grad");
    for (int i = 0; i < 15; i++)
        cr_assert(k.gz[i] == 0.0f, "logits grad[%d] = %g", i, k.gz[i]);
    free_dcase(&d);
    free_case(&k);
}

Test(rkd, loss_without_gradients_asked)
{
    /* No gradient wanted: the backward work is skipped, the loss is the
       same (also over several anchor chunks). */
    const char *sets[] = {"alpha=0.3", "anchor_chunk=3"};
    struct case_ k;
    double l1, l2, t1[4], t2[4];
    struct th_input in[4];
    make_case(&k, 7, 5, 6, 4, -30, 30, 50);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {7, 5},
                              k.fs, NULL};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {7, 6},
                              k.ft, NULL};
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {7, 4},
                              k.zs, NULL};
    in[3] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {7}, k.y, NULL};
    cr_assert_eq(th_run("rkd", sets, 2, in, 4, &l1, t1, 4), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(run_case(&k, true, sets, 2, &l2, t2), KDCL_OK);
    cr_assert(l1 == l2 && memcmp(t1, t2, sizeof t1) == 0,
              "loss %.9g vs %.9g with gradients", l1, l2);
    check_case(&k, 0.3, 25, 50, true, 3);
    free_case(&k);
}

Test(rkd, rejects_alpha_without_labels)
{
    struct case_ k;
    double loss, t[4];
    const char *sets[] = {"alpha=0.5"};
    make_case(&k, 2, 3, 3, 3, -1, 1, 51);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(rkd, rejects_labels_without_logits)
{
    struct case_ k;
    double loss, t[4];
    struct th_input in[3];
    make_case(&k, 3, 2, 2, 3, -1, 1, 52);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {3, 2},
                              k.fs, NULL};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {3, 2},
                              k.ft, NULL};
    in[2] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {3}, k.y, NULL};
    cr_assert_eq(th_run("rkd", NULL, 0, in, 3, &loss, t, 4), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    free_case(&k);
}

Test(rkd, rejects_mismatched_batch)
{
    float fs[6] = {0}, ft[8] = {0};
    double loss, t[4];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {4, 2}, ft, NULL},
    };
    const char *msg;
    cr_assert_eq(th_run("rkd", NULL, 0, in, 2, &loss, t, 4), KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "teacher.feat") && strstr(msg, "[4,2]")
                  && strstr(msg, "[2,3]"),
              "%s", msg);
}

Test(rkd, rejects_rank_one_features)
{
    float fs[4] = {0}, ft[8] = {0};
    double loss, t[4];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {4, 2}, ft, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 1, {4}, fs, NULL},
    };
    cr_assert_eq(th_run("rkd", NULL, 0, in, 2, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
}

Test(rkd, rejects_bad_logits_and_labels_shapes)
{
    struct case_ k;
    double loss, t[4];
    struct th_input in[4];
    make_case(&k, 4, 3, 3, 5, -1, 1, 53);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {4, 3},
                              k.fs, NULL};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {4, 3},
                              k.ft, NULL};
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {2, 10},
                              k.zs, NULL};
    in[3] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {2}, k.y, NULL};
    cr_assert_eq(th_run("rkd", NULL, 0, in, 4, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {4, 5},
                              k.zs, NULL};
    cr_assert_eq(th_run("rkd", NULL, 0, in, 4, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(rkd, rejects_missing_inputs)
{
    float f[6] = {0};
    double loss, t[4];
    struct th_input s[1] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, f, NULL},
    };
    struct th_input te[1] = {
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 3}, f, NULL},
    };
    cr_assert_eq(th_run("rkd", NULL, 0, s, 1, &loss, t, 4), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
    cr_assert_eq(th_run("rkd", NULL, 0, te, 1, &loss, t, 4), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.feat"));
}

Test(rkd, rejects_negative_weights)
{
    struct case_ k;
    double loss, t[4];
    const char *s1[] = {"w_dist=-1"}, *s2[] = {"w_angle=-1"},
               *s3[] = {"anchor_chunk=-2"};
    make_case(&k, 2, 3, 3, 3, -1, 1, 54);
    cr_assert_neq(run_case(&k, false, s1, 1, &loss, t), KDCL_OK);
    cr_assert_neq(run_case(&k, false, s2, 1, &loss, t), KDCL_OK);
    cr_assert_neq(run_case(&k, false, s3, 1, &loss, t), KDCL_OK);
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
Test(rkd, cli_golden_values)
{
    struct case_ k;
    char s[512], t[512], z[512], y[512], gf[512], gz[512], args[4096],
        out[4096], err[4096];
    const int64_t fshape[2] = {6, 5}, tshape[2] = {6, 7}, zshape[2] = {6, 4};
    double want;
    float gff[30], gzf[24];
    struct terms tm;
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
             "loss --plugin rkd --input student.feat=%s "
             "--input teacher.feat=%s --input student.logits=%s "
             "--labels %s --set alpha=0.25 --set w_dist=20 --set w_angle=40 "
             "--grad-out student.feat=%s --grad-out student.logits=%s",
             s, t, z, y, gf, gz);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    to_double_case(&k, &d);
    r = (struct ref){6, 5, 7, 4, d.ft, d.zs, k.y, 0.25, 20, 40};
    want = ref_loss(&r, d.fs, NULL, &tm, d.gf, d.gz);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), tm.ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), tm.kd, 1e-6, 1e-4, "kd");
    th_assert_close1(th_parse_value(out, "term dist"), tm.dist, 1e-6, 1e-4,
                     "dist");
    th_assert_close1(th_parse_value(out, "term angle"), tm.angle, 1e-6, 1e-4,
                     "angle");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 8.46171364, 0, 1e-4,
                     "golden loss");
    th_assert_close1(th_parse_value(out, "term dist"), 0.0963264958, 0, 1e-4,
                     "golden dist");
    th_assert_close1(th_parse_value(out, "term angle"), 0.0978497995, 0, 1e-4,
                     "golden angle");
    read_npy_tail(gf, gff, 30);
    read_npy_tail(gz, gzf, 24);
    th_assert_close(gff, d.gf, 30, 1e-5, 1e-4, "cli student.feat grad");
    th_assert_close(gzf, d.gz, 24, 1e-5, 1e-4, "cli student.logits grad");
    free_dcase(&d);
    free_case(&k);
}
