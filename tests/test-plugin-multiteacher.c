/*
 * tests/test-plugin-multiteacher.c - the multiteacher plugin against an
 * independent float64 reference (LOSSES.md `multiteacher`), finite
 * differences, determinism, extreme logits, degenerate cases (one teacher,
 * identical teachers, a dominant confident teacher), more teachers than one
 * kernel launch takes, bad input and `kdcl loss` golden values.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_T 13 /* th_run takes 16 inputs: student, labels and 13 teachers */

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernel          */

struct ref {
    int B, C, M;
    const double *zt[MAX_T];
    const int32_t *y; /* NULL: no labels */
    double T, alpha;
    int confidence;
};

static void log_softmax(const double *z, int C, double scale, double *out)
{
    double m = -INFINITY, s = 0;
    for (int c = 0; c < C; c++)
        m = fmax(m, z[c] * scale);
    for (int c = 0; c < C; c++)
        s += exp(z[c] * scale - m);
    for (int c = 0; c < C; c++)
        out[c] = z[c] * scale - m - log(s);
}

/* Loss (and ce, kd, gradient when non-NULL). */
static double ref_loss(const struct ref *r, const double *zs, double *ce_out,
                       double *kd_out, double *grad)
{
    int B = r->B, C = r->C, M = r->M;
    double *ls = malloc(sizeof(double) * C), *lt = malloc(sizeof(double) * C),
           *lu = malloc(sizeof(double) * C);
    double kd = 0, ce = 0, T = r->T, a = r->y ? r->alpha : 0.0;
    if (grad)
        memset(grad, 0, sizeof(double) * B * C);
    for (int b = 0; b < B; b++) {
        const double *s = zs + (size_t)b * C;
        double w[MAX_T], wsum = 0, hi = -INFINITY;
        log_softmax(s, C, 1.0 / T, ls);
        log_softmax(s, C, 1.0, lu);
        /* teacher weights of this row */
        for (int m = 0; m < M; m++) {
            if (r->confidence) {
                log_softmax(r->zt[m] + (size_t)b * C, C, 1.0, lt);
                w[m] = lt[r->y[b]]; /* -CE(z_m, y) */
                hi = fmax(hi, w[m]);
            } else {
                w[m] = 1.0 / M;
            }
        }
        if (r->confidence) {
            for (int m = 0; m < M; m++)
                wsum += w[m] = exp(w[m] - hi);
            for (int m = 0; m < M; m++)
                w[m] /= wsum;
        }
        for (int m = 0; m < M; m++) {
            double klm = 0;
            log_softmax(r->zt[m] + (size_t)b * C, C, 1.0 / T, lt);
            for (int c = 0; c < C; c++)
                klm += exp(lt[c]) * (lt[c] - ls[c]);
            kd += w[m] * T * T * klm / B;
            if (grad)
                for (int c = 0; c < C; c++)
                    grad[(size_t)b * C + c] += (1 - a) * w[m] * T
                                               * (exp(ls[c]) - exp(lt[c]))
                                               / B;
        }
        if (r->y) {
            ce -= lu[r->y[b]] / B;
            if (grad)
                for (int c = 0; c < C; c++)
                    grad[(size_t)b * C + c] +=
                        a * (exp(lu[c]) - (c == r->y[b])) / B;
        }
    }
    free(ls);
    free(lt);
    free(lu);
    if (ce_out)
        *ce_out = ce;
    if (kd_out)
        *kd_out = kd;
    return r->y ? a * ce + (1 - a) * kd : kd;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

struct case_ {
    int B, C, M;
    float *zs, *zt[MAX_T], *grad;
    double *dzt[MAX_T];
    int32_t *y;
};

static void make_case(struct case_ *k, int B, int C, int M, double lo,
                      double hi, uint64_t seed)
{
    cr_assert(M <= MAX_T);
    memset(k, 0, sizeof *k);
    k->B = B;
    k->C = C;
    k->M = M;
    k->zs = malloc(sizeof(float) * B * C);
    k->grad = malloc(sizeof(float) * B * C);
    k->y = malloc(sizeof(int32_t) * B);
    th_fill_uniform(k->zs, (size_t)B * C, lo, hi, seed);
    th_fill_labels(k->y, (size_t)B, C, seed + 1);
    for (int m = 0; m < M; m++) {
        k->zt[m] = malloc(sizeof(float) * B * C);
        k->dzt[m] = malloc(sizeof(double) * B * C);
        th_fill_uniform(k->zt[m], (size_t)B * C, lo, hi, seed + 2 + m);
    }
}

/* Refresh the float64 copies of the teachers after editing them. */
static void sync_case(struct case_ *k)
{
    for (int m = 0; m < k->M; m++)
        th_to_double(k->zt[m], k->dzt[m], (size_t)k->B * k->C);
}

static void free_case(struct case_ *k)
{
    free(k->zs);
    free(k->grad);
    free(k->y);
    for (int m = 0; m < k->M; m++) {
        free(k->zt[m]);
        free(k->dzt[m]);
    }
}

static char tnames[MAX_T][32];

static int run_case(struct case_ *k, bool with_labels, const char *const *sets,
                    size_t n_sets, double *loss, double *terms)
{
    struct th_input in[2 + MAX_T];
    size_t n = 0;
    in[n++] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2,
                                {k->B, k->C}, k->zs, k->grad};
    for (int m = 0; m < k->M; m++) {
        snprintf(tnames[m], sizeof tnames[m], "teacher.%d.logits", m);
        in[n++] = (struct th_input){tnames[m], KDCL_DTYPE_F32, 2,
                                    {k->B, k->C}, k->zt[m], NULL};
    }
    if (with_labels)
        in[n++] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y,
                                    NULL};
    return th_run("multiteacher", sets, n_sets, in, n, loss, terms, 2);
}

static struct ref make_ref(struct case_ *k, bool labels, double T,
                           double alpha, int confidence)
{
    struct ref r;
    memset(&r, 0, sizeof r);
    sync_case(k);
    r.B = k->B;
    r.C = k->C;
    r.M = k->M;
    for (int m = 0; m < k->M; m++)
        r.zt[m] = k->dzt[m];
    r.y = labels ? k->y : NULL;
    r.T = T;
    r.alpha = alpha;
    r.confidence = confidence;
    return r;
}

/* Run k with (T, alpha, weighting) and compare with the reference. */
static void compare(struct case_ *k, bool labels, double T, double alpha,
                    int confidence)
{
    char st[64], sa[64];
    const char *sets[3] = {st, confidence ? "weighting=confidence"
                                          : "weighting=uniform",
                           sa};
    size_t n = (size_t)k->B * k->C;
    double *zs = malloc(sizeof(double) * n), *g = malloc(sizeof(double) * n);
    double loss, terms[2], ce, kd, want;
    struct ref r = make_ref(k, labels, T, alpha, confidence);
    snprintf(st, sizeof st, "temperature=%.17g", T);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    th_to_double(k->zs, zs, n);
    cr_assert_eq(run_case(k, labels, sets, labels ? 3 : 2, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, zs, &ce, &kd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], kd, 1e-6, 1e-4, "kd");
    if (labels)
        th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    th_assert_close(k->grad, g, n, 1e-5, 1e-4, "grad");
    free(zs);
    free(g);
}

static void check_against_reference(int B, int C, int M, double T,
                                     double alpha, bool labels,
                                     int confidence, uint64_t seed)
{
    struct case_ k;
    make_case(&k, B, C, M, -30, 30, seed);
    compare(&k, labels, T, alpha, confidence);
    free_case(&k);
}

/* ---------------------------------------------------------------------- */

Test(multiteacher, matches_reference_uniform)
{
    check_against_reference(8, 37, 3, 4.0, 0.1, true, 0, 1);
    check_against_reference(8, 37, 2, 4.0, 0.1, false, 0, 2);
}

Test(multiteacher, matches_reference_confidence)
{
    check_against_reference(8, 37, 3, 4.0, 0.1, true, 1, 3);
    check_against_reference(7, 19, 5, 2.0, 0.0, true, 1, 4);
}

Test(multiteacher, matches_reference_other_params)
{
    check_against_reference(5, 19, 2, 1.0, 0.0, true, 0, 5);
    check_against_reference(5, 19, 2, 1.0, 1.0, true, 1, 6);
    check_against_reference(5, 19, 4, 20.0, 0.5, true, 0, 7);
}

Test(multiteacher, matches_reference_one_teacher)
{
    check_against_reference(6, 23, 1, 4.0, 0.1, true, 0, 8);
    check_against_reference(6, 23, 1, 4.0, 0.1, true, 1, 9);
}

/* One launch takes 4 teachers; more run in chunks that accumulate into the
   gradient, and confidence weights then come from a separate CE pass. */
Test(multiteacher, matches_reference_many_teachers)
{
    check_against_reference(4, 21, 4, 4.0, 0.1, true, 1, 10);
    check_against_reference(4, 21, 5, 4.0, 0.1, true, 0, 11);
    check_against_reference(4, 21, 5, 4.0, 0.1, true, 1, 12);
    check_against_reference(3, 17, 13, 2.0, 0.3, true, 1, 13);
    check_against_reference(3, 17, 13, 2.0, 0.3, false, 0, 14);
}

Test(multiteacher, matches_reference_wide_rows)
{
    /* C much larger than a work-group: every item loops over columns. */
    if (th_small())
        check_against_reference(2, 300, 2, 4.0, 0.1, true, 1, 15);
    else
        check_against_reference(3, 5000, 2, 4.0, 0.1, true, 1, 15);
}

Test(multiteacher, single_row)
{
    check_against_reference(1, 10, 3, 2.0, 0.3, true, 1, 16);
    check_against_reference(1, 10, 3, 2.0, 0.3, true, 0, 17);
}

Test(multiteacher, gradient_matches_finite_differences)
{
    const int B = 3, C = 7;
    for (int conf = 0; conf < 2; conf++) {
        struct case_ k;
        double loss, terms[2], zs[21], g[21];
        const char *sets[] = {conf ? "weighting=confidence"
                                   : "weighting=uniform"};
        struct ref r;

        make_case(&k, B, C, 3, -3, 3, 18 + conf);
        r = make_ref(&k, true, 4.0, 0.1, conf);
        th_to_double(k.zs, zs, 21);
        cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
        th_fd_grad(ref_fn, &r, zs, 21, 1e-5, g);
        th_assert_close(k.grad, g, 21, 1e-6, 1e-4,
                        "grad vs finite differences");

        /* And the device's own loss, perturbed in float32 (coarse). */
        for (int i = 0; i < 21; i += 5) {
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
        free_case(&k);
    }
}

Test(multiteacher, deterministic_bitwise)
{
    const int C = th_small() ? 100 : 1000, B = th_small() ? 4 : 32;
    const int n = B * C;
    const char *sets[] = {"weighting=confidence"};
    for (int M = 3; M <= 10; M += 7) {
        struct case_ k;
        double l1, l2, t1[2], t2[2];
        float *g1 = malloc(sizeof(float) * n);
        make_case(&k, B, C, M, -10, 10, 21);
        cr_assert_eq(run_case(&k, true, sets, 1, &l1, t1), KDCL_OK);
        memcpy(g1, k.grad, sizeof(float) * n);
        cr_assert_eq(run_case(&k, true, sets, 1, &l2, t2), KDCL_OK);
        cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g",
                  l1, l2);
        cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ");
        cr_assert(memcmp(g1, k.grad, sizeof(float) * n) == 0,
                  "gradients differ between runs (M = %d)", M);
        free(g1);
        free_case(&k);
    }
}

Test(multiteacher, extreme_logits_stay_finite)
{
    for (int conf = 0; conf < 2; conf++) {
        struct case_ k;
        double loss, terms[2];
        const char *sets[] = {conf ? "weighting=confidence"
                                   : "weighting=uniform"};
        make_case(&k, 4, 50, 3, -1e4, 1e4, 31);
        cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
        cr_assert(isfinite(loss) && isfinite(terms[0]) && isfinite(terms[1]),
                  "loss %g ce %g kd %g", loss, terms[0], terms[1]);
        for (int i = 0; i < 200; i++)
            cr_assert(isfinite(k.grad[i]), "grad[%d] = %g", i, k.grad[i]);
        free_case(&k);
    }
}

Test(multiteacher, identical_logits_give_zero_kd)
{
    for (int conf = 0; conf < 2; conf++) {
        struct case_ k;
        double loss, terms[2];
        const char *sets[] = {conf ? "weighting=confidence"
                                   : "weighting=uniform",
                              "alpha=0"};
        make_case(&k, 6, 13, 3, -5, 5, 41);
        for (int m = 0; m < 3; m++)
            memcpy(k.zt[m], k.zs, sizeof(float) * 6 * 13);
        cr_assert_eq(run_case(&k, true, sets, 2, &loss, terms), KDCL_OK);
        cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
        for (int i = 0; i < 6 * 13; i++)
            cr_assert(fabs(k.grad[i]) < 1e-7, "grad[%d] = %g", i, k.grad[i]);
        free_case(&k);
    }
}

/* M copies of one teacher give exactly the one-teacher loss (both
   weightings give every copy 1/M). */
Test(multiteacher, copies_of_one_teacher_act_as_one)
{
    for (int conf = 0; conf < 2; conf++) {
        struct case_ k1, k3;
        double l1, l3, t1[2], t3[2];
        const char *sets[] = {conf ? "weighting=confidence"
                                   : "weighting=uniform"};
        make_case(&k1, 5, 17, 1, -30, 30, 42);
        make_case(&k3, 5, 17, 3, -30, 30, 42);
        for (int m = 0; m < 3; m++)
            memcpy(k3.zt[m], k1.zt[0], sizeof(float) * 5 * 17);
        cr_assert_eq(run_case(&k1, true, sets, 1, &l1, t1), KDCL_OK);
        cr_assert_eq(run_case(&k3, true, sets, 1, &l3, t3), KDCL_OK);
        th_assert_close1(l3, l1, 1e-6, 1e-5, "loss");
        for (int i = 0; i < 5 * 17; i++)
            th_assert_close1(k3.grad[i], k1.grad[i], 1e-7, 1e-5, "grad");
        free_case(&k1);
        free_case(&k3);
    }
}

/* Confidence weights: a teacher that puts its mass on the label outweighs
   one that does not (softmax of -CE), so the loss is that teacher's. */
Test(multiteacher, confident_teacher_dominates)
{
    struct case_ k2, k1;
    double l2, l1, t2[2], t1[2];
    const char *sets[] = {"weighting=confidence"};
    make_case(&k2, 4, 9, 2, -3, 3, 43);
    make_case(&k1, 4, 9, 1, -3, 3, 43);
    memcpy(k1.zt[0], k2.zt[0], sizeof(float) * 4 * 9);
    for (int b = 0; b < 4; b++) {
        k2.zt[0][b * 9 + k2.y[b]] = 40.0f;  /* right, confidently */
        k2.zt[1][b * 9 + k2.y[b]] = -40.0f; /* wrong */
        k1.zt[0][b * 9 + k1.y[b]] = 40.0f;
    }
    cr_assert_eq(run_case(&k2, true, sets, 1, &l2, t2), KDCL_OK);
    cr_assert_eq(run_case(&k1, true, sets, 1, &l1, t1), KDCL_OK);
    th_assert_close1(l2, l1, 1e-6, 1e-5, "loss");
    for (int i = 0; i < 36; i++)
        th_assert_close1(k2.grad[i], k1.grad[i], 1e-7, 1e-5, "grad");
    free_case(&k1);
    free_case(&k2);
}

Test(multiteacher, rejects_confidence_without_labels)
{
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"weighting=confidence"};
    make_case(&k, 2, 3, 2, -1, 1, 51);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"), "%s",
              kdcl_context_errmsg(th_ctx()));
    free_case(&k);
}

Test(multiteacher, rejects_alpha_without_labels)
{
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"alpha=0.5"};
    make_case(&k, 2, 3, 2, -1, 1, 52);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(multiteacher, rejects_missing_or_gapped_teachers)
{
    float zs[6] = {0}, t0[6] = {0}, t2[6] = {0};
    double loss, t[2];
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.1.logits", KDCL_DTYPE_F32, 2, {2, 3}, t0, NULL},
        {"teacher.2.logits", KDCL_DTYPE_F32, 2, {2, 3}, t2, NULL},
    };
    /* no teacher at all */
    cr_assert_eq(th_run("multiteacher", NULL, 0, in, 1, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher"), "%s",
              kdcl_context_errmsg(th_ctx()));
    /* teacher.1 without teacher.0 */
    cr_assert_eq(th_run("multiteacher", NULL, 0, in, 2, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.0.logits"),
              "%s", kdcl_context_errmsg(th_ctx()));
    /* teacher.0 and teacher.2 without teacher.1 */
    in[1].name = "teacher.0.logits";
    cr_assert_eq(th_run("multiteacher", NULL, 0, in, 3, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.1.logits"),
              "%s", kdcl_context_errmsg(th_ctx()));
}

Test(multiteacher, rejects_mismatched_shapes)
{
    float zs[6] = {0}, t0[6] = {0}, t1[8] = {0};
    int32_t y[3] = {0, 1, 2};
    double loss, t[2];
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.0.logits", KDCL_DTYPE_F32, 2, {2, 3}, t0, NULL},
        {"teacher.1.logits", KDCL_DTYPE_F32, 2, {2, 4}, t1, NULL},
    };
    cr_assert_eq(th_run("multiteacher", NULL, 0, in, 3, &loss, t, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.1.logits"),
              "%s", kdcl_context_errmsg(th_ctx()));
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "[2,4]"));
    /* student not 2-D */
    in[0].ndim = 1;
    in[0].shape[0] = 6;
    cr_assert_eq(th_run("multiteacher", NULL, 0, in, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    /* labels of the wrong length */
    in[0].ndim = 2;
    in[0].shape[0] = 2;
    in[0].shape[1] = 3;
    in[2] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {3}, y, NULL};
    cr_assert_eq(th_run("multiteacher", NULL, 0, in, 3, &loss, t, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
}

Test(multiteacher, rejects_out_of_range_label)
{
    struct case_ k;
    double loss, t[2];
    make_case(&k, 2, 3, 2, -1, 1, 61);
    k.y[1] = 3;
    cr_assert_eq(run_case(&k, true, NULL, 0, &loss, t), KDCL_ERANGE);
    free_case(&k);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(multiteacher, cli_golden_values)
{
    struct case_ k;
    char s[512], t0[512], t1[512], y[512], g[512], args[4096], out[4096],
        err[4096];
    const int64_t shape[2] = {4, 10};
    double zs[40], gr[40], ce, kd, want;
    struct ref r;

    make_case(&k, 4, 10, 2, -5, 5, 71);
    snprintf(s, sizeof s, "%s/s.npy", th_tmpdir());
    snprintf(t0, sizeof t0, "%s/t0.npy", th_tmpdir());
    snprintf(t1, sizeof t1, "%s/t1.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/g.npy", th_tmpdir());
    th_npy_f32(s, k.zs, 2, shape);
    th_npy_f32(t0, k.zt[0], 2, shape);
    th_npy_f32(t1, k.zt[1], 2, shape);
    th_npy_i32(y, k.y, 1, shape);
    snprintf(args, sizeof args,
             "loss --plugin multiteacher --student %s "
             "--input teacher.0.logits=%s --input teacher.1.logits=%s "
             "--labels %s --set temperature=2 --set alpha=0.25 "
             "--set weighting=confidence --grad-out %s",
             s, t0, t1, y, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.zs, zs, 40);
    r = make_ref(&k, true, 2.0, 0.25, 1);
    want = ref_loss(&r, zs, &ce, &kd, gr);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), kd, 1e-6, 1e-4, "kd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(want, 4.25857067, 0, 1e-6, "reference golden loss");
    th_assert_close1(th_parse_value(out, "loss"), 4.25857067, 0, 1e-4,
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
