/*
 * tests/test-plugin-dist.c - the dist plugin against an independent
 * float64 reference (LOSSES.md `dist`), finite differences, determinism,
 * extreme logits, degenerate cases (identical logits, one row, constant
 * teacher columns), agreement with torchdistill's formulation, bad input
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

struct ref {
    int B, C;
    const double *zt;
    const int32_t *y; /* NULL: no labels */
    double T, inter_w, intra_w, alpha;
    int torchdistill; /* denominator |a'||b'| + eps instead of max(., eps) */
};

static void softmax_rows(const double *z, int B, int C, double scale,
                         double *p)
{
    for (int b = 0; b < B; b++) {
        const double *x = z + (size_t)b * C;
        double *q = p + (size_t)b * C, m = -INFINITY, s = 0;
        for (int c = 0; c < C; c++)
            m = fmax(m, x[c] * scale);
        for (int c = 0; c < C; c++)
            s += q[c] = exp(x[c] * scale - m);
        for (int c = 0; c < C; c++)
            q[c] /= s;
    }
}

/*
 * Pearson correlation of a and b (n values, element stride st) and, when
 * da is not NULL, its gradient with respect to a, added times w into
 * da (same stride).  The means are computed, not assumed.
 */
static double pearson(const struct ref *r, const double *a, const double *b,
                      int n, int st, double w, double *da)
{
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0, den, res;
    for (int i = 0; i < n; i++) {
        ma += a[i * st] / n;
        mb += b[i * st] / n;
    }
    for (int i = 0; i < n; i++) {
        double x = a[i * st] - ma, y = b[i * st] - mb;
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    den = sqrt(saa) * sqrt(sbb);
    if (r->torchdistill)
        den += 1e-8;
    else
        den = fmax(den, 1e-8);
    res = sab / den;
    if (da) {
        /* d sab = y'; d den = (|b'|/|a'|) a' where den = |a'||b'|, which
           the max() or + eps leaves alone only in the first case. */
        int smooth = r->torchdistill || sqrt(saa) * sqrt(sbb) > 1e-8;
        for (int i = 0; i < n; i++) {
            double x = a[i * st] - ma, y = b[i * st] - mb;
            double g = y / den;
            if (smooth && saa > 0)
                g -= sab / (den * den) * sqrt(sbb) / sqrt(saa) * x;
            da[i * st] += w * g;
        }
    }
    return res;
}

/* Loss (and the terms and the gradient, when non-NULL). */
static double ref_loss(const struct ref *r, const double *zs, double *ce_out,
                       double *inter_out, double *intra_out, double *grad)
{
    int B = r->B, C = r->C;
    size_t n = (size_t)B * C;
    double *ys = malloc(sizeof(double) * n), *yt = malloc(sizeof(double) * n),
           *pu = malloc(sizeof(double) * n), *dy = calloc(n, sizeof(double));
    double T = r->T, a = r->y ? r->alpha : 0.0, inter = 0, intra = 0, ce = 0,
           kd;
    softmax_rows(zs, B, C, 1.0 / T, ys);
    softmax_rows(r->zt, B, C, 1.0 / T, yt);
    softmax_rows(zs, B, C, 1.0, pu);
    /* dL_KD/dy_s in dy */
    for (int b = 0; b < B; b++)
        inter += pearson(r, ys + (size_t)b * C, yt + (size_t)b * C, C, 1,
                         -T * T * r->inter_w / B,
                         grad ? dy + (size_t)b * C : NULL);
    for (int c = 0; c < C; c++)
        intra += pearson(r, ys + c, yt + c, B, C, -T * T * r->intra_w / C,
                         grad ? dy + c : NULL);
    inter = 1 - inter / B;
    intra = 1 - intra / C;
    kd = T * T * (r->inter_w * inter + r->intra_w * intra);
    if (r->y)
        for (int b = 0; b < B; b++)
            ce -= log(pu[(size_t)b * C + r->y[b]]) / B;
    if (grad)
        for (int b = 0; b < B; b++) {
            const double *p = ys + (size_t)b * C, *g = dy + (size_t)b * C;
            for (int c = 0; c < C; c++) {
                /* Jacobian of softmax(z/T): (p_c (delta_ck - p_k)) / T */
                double s = 0;
                for (int k = 0; k < C; k++)
                    s += g[k] * p[k] * ((k == c) - p[c]) / T;
                s *= 1 - a;
                if (r->y)
                    s += a * (pu[(size_t)b * C + c] - (c == r->y[b])) / B;
                grad[(size_t)b * C + c] = s;
            }
        }
    free(ys);
    free(yt);
    free(pu);
    free(dy);
    if (ce_out)
        *ce_out = ce;
    if (inter_out)
        *inter_out = inter;
    if (intra_out)
        *intra_out = intra;
    return r->y ? a * ce + (1 - a) * kd : kd;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

struct case_ {
    int B, C;
    float *zs, *zt, *grad;
    int32_t *y;
};

static void make_case(struct case_ *k, int B, int C, double lo, double hi,
                      uint64_t seed)
{
    k->B = B;
    k->C = C;
    k->zs = malloc(sizeof(float) * B * C);
    k->zt = malloc(sizeof(float) * B * C);
    k->grad = malloc(sizeof(float) * B * C);
    k->y = malloc(sizeof(int32_t) * B);
    th_fill_uniform(k->zs, (size_t)B * C, lo, hi, seed);
    th_fill_uniform(k->zt, (size_t)B * C, lo, hi, seed + 1);
    th_fill_labels(k->y, (size_t)B, C, seed + 2);
}

static void free_case(struct case_ *k)
{
    free(k->zs);
    free(k->zt);
    free(k->grad);
    free(k->y);
}

static int run_case(struct case_ *k, bool with_labels, const char *const *sets,
                    size_t n_sets, double *loss, double *terms)
{
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zs, k->grad},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    return th_run("dist", sets, n_sets, in, with_labels ? 3 : 2, loss, terms,
                  4);
}

/* Run k and compare loss, terms and gradient with r. */
static void compare(struct case_ *k, const struct ref *r,
                    const char *const *sets, size_t n_sets)
{
    size_t n = (size_t)k->B * k->C;
    double *zs = malloc(sizeof(double) * n), *g = malloc(sizeof(double) * n);
    double loss, terms[4], ce, inter, intra, want;
    th_to_double(k->zs, zs, n);
    cr_assert_eq(run_case(k, r->y != NULL, sets, n_sets, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(r, zs, &ce, &inter, &intra, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    if (r->y)
        th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    th_assert_close1(terms[1],
                     r->T * r->T * (r->inter_w * inter + r->intra_w * intra),
                     1e-6, 1e-4, "kd");
    th_assert_close1(terms[2], inter, 1e-6, 1e-4, "inter");
    th_assert_close1(terms[3], intra, 1e-6, 1e-4, "intra");
    th_assert_close(k->grad, g, n, 1e-5, 1e-4, "grad");
    free(zs);
    free(g);
}

static void check_against_reference(int B, int C, double lo, double hi,
                                     double T, double inter_w, double intra_w,
                                     double alpha, bool labels, uint64_t seed)
{
    struct case_ k;
    char st[64], sa[64], s1[64], s2[64];
    const char *sets[4] = {st, s1, s2, sa};
    size_t n = (size_t)B * C;
    double *zt = malloc(sizeof(double) * n);
    struct ref r;

    make_case(&k, B, C, lo, hi, seed);
    th_to_double(k.zt, zt, n);
    r = (struct ref){B,       C,       zt,    labels ? k.y : NULL, T,
                     inter_w, intra_w, alpha, 0};
    snprintf(st, sizeof st, "temperature=%.17g", T);
    snprintf(s1, sizeof s1, "inter_weight=%.17g", inter_w);
    snprintf(s2, sizeof s2, "intra_weight=%.17g", intra_w);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    compare(&k, &r, sets, labels ? 4 : 3);
    free_case(&k);
    free(zt);
}

/* ---------------------------------------------------------------------- */

Test(dist, matches_reference_with_labels)
{
    check_against_reference(8, 37, -30, 30, 1.0, 1.0, 1.0, 0.5, true, 1);
}

Test(dist, matches_reference_without_labels)
{
    check_against_reference(8, 37, -30, 30, 1.0, 1.0, 1.0, 0.5, false, 2);
}

Test(dist, matches_reference_other_params)
{
    check_against_reference(5, 19, -30, 30, 4.0, 1.0, 1.0, 0.0, true, 3);
    check_against_reference(5, 19, -30, 30, 4.0, 2.0, 0.5, 1.0, true, 4);
    check_against_reference(6, 13, -30, 30, 20.0, 0.0, 3.0, 0.3, true, 5);
    check_against_reference(6, 13, -30, 30, 2.0, 1.5, 0.0, 0.1, true, 6);
    /* Moderate logits: dense distributions, every Pearson away from eps. */
    check_against_reference(9, 11, -3, 3, 1.0, 1.0, 1.0, 0.5, true, 7);
}

Test(dist, matches_reference_wide_rows)
{
    /* C much larger than a work-group: every item loops over columns. */
    if (th_small())
        check_against_reference(2, 300, -30, 30, 4.0, 1.0, 1.0, 0.5, true,
                                8);
    else
        check_against_reference(3, 5000, -30, 30, 4.0, 1.0, 1.0, 0.5, true,
                                8);
}

Test(dist, matches_reference_tall_batch)
{
    /* B larger than a work-group: the column pass walks many rows and the
       final sums loop. */
    check_against_reference(th_small() ? 70 : 300, 7, -30, 30, 2.0, 1.0, 1.0,
                            0.5, true, 9);
}

/* One row: every column has one value, its centred column is 0, so every
   intra Pearson is 0 (eps branch), intra = 1 and it adds no gradient. */
Test(dist, single_row)
{
    struct case_ k;
    double zt[10], loss, terms[4];
    struct ref r;
    make_case(&k, 1, 10, -30, 30, 10);
    th_to_double(k.zt, zt, 10);
    r = (struct ref){1, 10, zt, k.y, 2.0, 1.0, 1.0, 0.3, 0};
    {
        const char *sets[] = {"temperature=2", "alpha=0.3"};
        compare(&k, &r, sets, 2);
        cr_assert_eq(run_case(&k, true, sets, 2, &loss, terms), KDCL_OK);
    }
    cr_assert(terms[3] == 1.0, "intra %.9g", terms[3]);
    free_case(&k);
}

/* Every teacher row the same: the teacher's columns are constant, every
   intra Pearson is 0 and intra = 1. */
Test(dist, constant_teacher_columns)
{
    struct case_ k;
    double zt[6 * 9], loss, terms[4];
    struct ref r;
    make_case(&k, 6, 9, -5, 5, 11);
    for (int b = 1; b < 6; b++)
        memcpy(k.zt + b * 9, k.zt, sizeof(float) * 9);
    th_to_double(k.zt, zt, 6 * 9);
    r = (struct ref){6, 9, zt, NULL, 1.0, 1.0, 1.0, 0.0, 0};
    compare(&k, &r, NULL, 0);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(terms[3] == 1.0, "intra %.9g", terms[3]);
    free_case(&k);
}

/* A class whose probabilities are tiny but correlated across the batch:
   its |a'||b'| lies below 1e-8, so the max() picks 1e-8 and the Pearson
   is sab / 1e-8, far from 0.  Checks that branch's value and gradient. */
Test(dist, small_column_uses_eps_branch)
{
    enum { B = 4, C = 3 };
    struct case_ k;
    double zs[B * C], zt[B * C], ys[B], yt[B], g[B * C];
    double ms = 0, mt = 0, sab = 0, saa = 0, sbb = 0, r0;
    struct ref r;
    make_case(&k, B, C, -1, 1, 14);
    for (int b = 0; b < B; b++) {
        /* class 2: p ~ 8e-5 * (b + 1) next to classes of probability ~1 */
        k.zs[b * C + 1] = 0.0f;
        k.zt[b * C + 1] = 0.0f;
        k.zs[b * C + 2] = (float)log(8e-5 * (b + 1));
        k.zt[b * C + 2] = (float)log(8.5e-5 * (b + 1.2));
    }
    th_to_double(k.zs, zs, B * C);
    th_to_double(k.zt, zt, B * C);
    for (int b = 0; b < B; b++) {
        double s = 0, t = 0;
        for (int c = 0; c < C; c++) {
            s += exp(zs[b * C + c]);
            t += exp(zt[b * C + c]);
        }
        ys[b] = exp(zs[b * C + 2]) / s;
        yt[b] = exp(zt[b * C + 2]) / t;
        ms += ys[b] / B;
        mt += yt[b] / B;
    }
    for (int b = 0; b < B; b++) {
        sab += (ys[b] - ms) * (yt[b] - mt);
        saa += (ys[b] - ms) * (ys[b] - ms);
        sbb += (yt[b] - mt) * (yt[b] - mt);
    }
    r0 = sab / 1e-8;
    cr_assert(sqrt(saa) * sqrt(sbb) < 0.9e-8 && r0 > 0.3,
              "test set-up: |a'||b'| = %g, r = %g", sqrt(saa) * sqrt(sbb),
              r0);
    r = (struct ref){B, C, zt, NULL, 1.0, 1.0, 1.0, 0.0, 0};
    compare(&k, &r, NULL, 0);
    /* The reference's gradient in this branch, by finite differences. */
    {
        double want[B * C];
        ref_loss(&r, zs, NULL, NULL, NULL, want);
        th_fd_grad(ref_fn, &r, zs, B * C, 1e-6, g);
        for (int i = 0; i < B * C; i++)
            th_assert_close1(want[i], g[i], 1e-7, 1e-5,
                             "reference grad vs finite differences");
    }
    free_case(&k);
}

/* torchdistill divides by |a'||b'| + 1e-8 instead of max(|a'||b'|, 1e-8);
   for dense distributions that is the same number. */
Test(dist, agrees_with_torchdistill_for_moderate_logits)
{
    struct case_ k;
    double zt[8 * 10];
    struct ref r;
    make_case(&k, 8, 10, -3, 3, 12);
    th_to_double(k.zt, zt, 8 * 10);
    r = (struct ref){8, 10, zt, NULL, 1.0, 1.0, 1.0, 0.0, 1};
    compare(&k, &r, NULL, 0);
    free_case(&k);
}

Test(dist, gradient_matches_finite_differences)
{
    const int B = 4, C = 6;
    struct case_ k;
    double loss, terms[4], zs[24], zt[24], g[24];
    struct ref r;

    make_case(&k, B, C, -3, 3, 13);
    th_to_double(k.zs, zs, 24);
    th_to_double(k.zt, zt, 24);
    r = (struct ref){B, C, zt, k.y, 2.0, 1.0, 1.0, 0.5, 0};
    {
        const char *sets[] = {"temperature=2"};
        cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
        th_fd_grad(ref_fn, &r, zs, 24, 1e-5, g);
        th_assert_close(k.grad, g, 24, 1e-6, 1e-4,
                        "grad vs finite differences");

        /* And the device's own loss, perturbed in float32 (coarse). */
        for (int i = 0; i < 24; i += 5) {
            const float h = 1e-2f, x0 = k.zs[i];
            double lp, lm, gi = k.grad[i];
            k.zs[i] = x0 + h;
            cr_assert_eq(run_case(&k, true, sets, 1, &lp, terms), KDCL_OK);
            k.zs[i] = x0 - h;
            cr_assert_eq(run_case(&k, true, sets, 1, &lm, terms), KDCL_OK);
            k.zs[i] = x0;
            th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                             "device finite difference");
        }
    }
    free_case(&k);
}

Test(dist, deterministic_bitwise)
{
    struct case_ k;
    double l1, l2, t1[4], t2[4];
    const int C = th_small() ? 100 : 1000, B = th_small() ? 4 : 64;
    const int n = B * C;
    float *g1 = malloc(sizeof(float) * n);
    make_case(&k, B, C, -10, 10, 21);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l1, t1), KDCL_OK);
    memcpy(g1, k.grad, sizeof(float) * n);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l2, t2), KDCL_OK);
    cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g", l1,
              l2);
    cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ between runs");
    cr_assert(memcmp(g1, k.grad, sizeof(float) * n) == 0,
              "gradients differ between runs");
    free(g1);
    free_case(&k);
}

Test(dist, extreme_logits_stay_finite)
{
    struct case_ k;
    double loss, terms[4];
    make_case(&k, 4, 50, -1e4, 1e4, 31);
    cr_assert_eq(run_case(&k, true, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(isfinite(loss), "loss %g", loss);
    for (int i = 0; i < 4; i++)
        cr_assert(isfinite(terms[i]), "term %d = %g", i, terms[i]);
    for (int i = 0; i < 200; i++)
        cr_assert(isfinite(k.grad[i]), "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

/* Dense distributions (every |a'||b'| well above eps): identical logits
   correlate perfectly, so both terms and the gradient vanish. */
Test(dist, identical_logits_give_zero_kd)
{
    struct case_ k;
    double loss, terms[4];
    make_case(&k, 6, 13, -2, 2, 41);
    memcpy(k.zt, k.zs, sizeof(float) * 6 * 13);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
    cr_assert(fabs(terms[2]) < 1e-6 && fabs(terms[3]) < 1e-6,
              "inter %g intra %g", terms[2], terms[3]);
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(fabs(k.grad[i]) < 1e-6, "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

Test(dist, rejects_alpha_without_labels)
{
    struct case_ k;
    double loss, t[4];
    const char *sets[] = {"alpha=0.5"};
    make_case(&k, 2, 3, -1, 1, 51);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(dist, rejects_mismatched_shapes)
{
    float zs[6] = {0}, zt[8] = {0};
    double loss, t[4];
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 4}, zt, NULL},
    };
    cr_assert_eq(th_run("dist", NULL, 0, in, 2, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "[2,4]"));
}

Test(dist, rejects_wrong_rank_and_label_count)
{
    float zs[6] = {0}, zt[6] = {0};
    int32_t y[3] = {0, 1, 2};
    double loss, t[4];
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 3, {1, 2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 3, {1, 2, 3}, zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {3}, y, NULL},
    };
    cr_assert_eq(th_run("dist", NULL, 0, in, 2, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    in[0] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {2, 3},
                              zs, NULL};
    in[1] = (struct th_input){"teacher.logits", KDCL_DTYPE_F32, 2, {2, 3},
                              zt, NULL};
    cr_assert_eq(th_run("dist", NULL, 0, in, 3, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
}

Test(dist, rejects_missing_teacher)
{
    float zs[6] = {0};
    double loss, t[4];
    struct th_input in[1] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
    };
    cr_assert_eq(th_run("dist", NULL, 0, in, 1, &loss, t, 4), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(dist, cli_golden_values)
{
    struct case_ k;
    char s[512], t[512], y[512], g[512], args[4096], out[4096], err[4096];
    const int64_t shape[2] = {4, 10};
    double zs[40], zt[40], gr[40], ce, inter, intra, want;
    struct ref r;

    make_case(&k, 4, 10, -5, 5, 71);
    snprintf(s, sizeof s, "%s/s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/t.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/g.npy", th_tmpdir());
    th_npy_f32(s, k.zs, 2, shape);
    th_npy_f32(t, k.zt, 2, shape);
    th_npy_i32(y, k.y, 1, shape);
    snprintf(args, sizeof args,
             "loss --plugin dist --student %s --teacher %s --labels %s "
             "--set temperature=2 --set alpha=0.25 --set intra_weight=2 "
             "--grad-out %s",
             s, t, y, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.zs, zs, 40);
    th_to_double(k.zt, zt, 40);
    r = (struct ref){4, 10, zt, k.y, 2.0, 1.0, 2.0, 0.25, 0};
    want = ref_loss(&r, zs, &ce, &inter, &intra, gr);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"),
                     4.0 * (inter + 2.0 * intra), 1e-6, 1e-4, "kd");
    th_assert_close1(th_parse_value(out, "term inter"), inter, 1e-6, 1e-4,
                     "inter");
    th_assert_close1(th_parse_value(out, "term intra"), intra, 1e-6, 1e-4,
                     "intra");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(want, 11.6807136, 0, 1e-6, "reference golden loss");
    th_assert_close1(th_parse_value(out, "loss"), 11.6807136, 0, 1e-4,
                     "golden loss");
    {
        float gf[40];
        FILE *f = fopen(g, "rb");
        cr_assert_not_null(f, "gradient file not written");
        fseek(f, -160, SEEK_END);
        cr_assert_eq(fread(gf, sizeof(float), 40, f), 40u);
        fclose(f);
        th_assert_close(gf, gr, 40, 1e-5, 1e-4, "cli grad");
    }
    free_case(&k);
}
