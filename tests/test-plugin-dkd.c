/*
 * tests/test-plugin-dkd.c - the dkd plugin against an independent float64
 * reference (LOSSES.md `dkd`), finite differences, determinism, extreme
 * logits, degenerate cases (identical logits, two classes, one class),
 * agreement with mdistiller's masked formulation, bad input and
 * `kdcl loss` golden values.
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
    const int32_t *y;
    double T, tw, nw, alpha;
    int mdistiller; /* non-target softmax by mdistiller's -1000 mask */
};

/* Softmax of z * scale over the entries with keep[c] (others get 0). */
static void softmax_masked(const double *z, int C, double scale,
                           const int *keep, double *p)
{
    double m = -INFINITY, s = 0;
    for (int c = 0; c < C; c++)
        if (keep[c])
            m = fmax(m, z[c] * scale);
    for (int c = 0; c < C; c++) {
        p[c] = keep[c] ? exp(z[c] * scale - m) : 0.0;
        s += p[c];
    }
    for (int c = 0; c < C; c++)
        p[c] /= s;
}

/* sum p log(p / q) with 0 log 0 = 0. */
static double kl(const double *p, const double *q, int n)
{
    double r = 0;
    for (int i = 0; i < n; i++)
        if (p[i] > 0)
            r += p[i] * log(p[i] / q[i]);
    return r;
}

/* Loss (and the terms and the gradient, when non-NULL).  The gradient goes
   through the probabilities: dL/du_c = p_c (g_c - sum_k p_k g_k) with
   g = dL/dp, and for NCKD the non-target softmax the same way. */
static double ref_loss(const struct ref *r, const double *zs, double *ce_out,
                       double *tckd_out, double *nckd_out, double *grad)
{
    int B = r->B, C = r->C;
    int *all = malloc(sizeof(int) * C), *other = malloc(sizeof(int) * C);
    double *ps = malloc(sizeof(double) * C), *pt = malloc(sizeof(double) * C),
           *qs = malloc(sizeof(double) * C), *qt = malloc(sizeof(double) * C),
           *pu = malloc(sizeof(double) * C), *zm = malloc(sizeof(double) * C),
           *zn = malloc(sizeof(double) * C);
    double tckd = 0, nckd = 0, ce = 0, T = r->T, a = r->alpha;
    for (int c = 0; c < C; c++)
        all[c] = 1;
    for (int b = 0; b < B; b++) {
        const double *s = zs + (size_t)b * C, *t = r->zt + (size_t)b * C;
        const int y = r->y[b];
        double bs[2], bt[2], gt[2], dot = 0;
        for (int c = 0; c < C; c++)
            other[c] = c != y;
        softmax_masked(s, C, 1.0 / T, all, ps);
        softmax_masked(t, C, 1.0 / T, all, pt);
        softmax_masked(s, C, 1.0, all, pu);
        if (r->mdistiller) {
            /* softmax(z / T - 1000 * onehot(y)) over all classes */
            for (int c = 0; c < C; c++) {
                zm[c] = s[c] / T - (c == y ? 1000.0 : 0.0);
                zn[c] = t[c] / T - (c == y ? 1000.0 : 0.0);
            }
            softmax_masked(zm, C, 1.0, all, qs);
            softmax_masked(zn, C, 1.0, all, qt);
        } else {
            softmax_masked(s, C, 1.0 / T, other, qs);
            softmax_masked(t, C, 1.0 / T, other, qt);
        }
        bs[0] = ps[y];
        bt[0] = pt[y];
        bs[1] = bt[1] = 0;
        for (int c = 0; c < C; c++)
            if (c != y) {
                bs[1] += ps[c];
                bt[1] += pt[c];
            }
        tckd += kl(bt, bs, 2);
        nckd += kl(qt, qs, C);
        ce -= log(pu[y]);
        if (!grad)
            continue;
        /* TCKD: d/dp_c of -sum bt log bs */
        gt[0] = -bt[0] / bs[0];
        gt[1] = bs[1] > 0 ? -bt[1] / bs[1] : 0.0;
        for (int c = 0; c < C; c++)
            dot += ps[c] * gt[c == y ? 0 : 1];
        for (int c = 0; c < C; c++) {
            double dt = ps[c] * (gt[c == y ? 0 : 1] - dot);
            double dn = c == y ? 0.0 : qs[c] - qt[c];
            double kd = T * T * (r->tw * dt + r->nw * dn) / T / B;
            double dce = (pu[c] - (c == y)) / B;
            grad[(size_t)b * C + c] = a * dce + (1 - a) * kd;
        }
    }
    free(all);
    free(other);
    free(ps);
    free(pt);
    free(qs);
    free(qt);
    free(pu);
    free(zm);
    free(zn);
    tckd = T * T * tckd / B;
    nckd = T * T * nckd / B;
    ce /= B;
    if (ce_out)
        *ce_out = ce;
    if (tckd_out)
        *tckd_out = tckd;
    if (nckd_out)
        *nckd_out = nckd;
    return a * ce + (1 - a) * (r->tw * tckd + r->nw * nckd);
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

static int run_case(struct case_ *k, const char *const *sets, size_t n_sets,
                    double *loss, double *terms)
{
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zs, k->grad},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    return th_run("dkd", sets, n_sets, in, 3, loss, terms, 4);
}

/* Run k with the given settings and compare everything with r. */
static void compare(struct case_ *k, const struct ref *r,
                    const char *const *sets, size_t n_sets)
{
    size_t n = (size_t)k->B * k->C;
    double *zs = malloc(sizeof(double) * n), *g = malloc(sizeof(double) * n);
    double loss, terms[4], ce, tckd, nckd, want;
    th_to_double(k->zs, zs, n);
    cr_assert_eq(run_case(k, sets, n_sets, &loss, terms), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    want = ref_loss(r, zs, &ce, &tckd, &nckd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    th_assert_close1(terms[1], r->tw * tckd + r->nw * nckd, 1e-6, 1e-4,
                     "kd");
    th_assert_close1(terms[2], tckd, 1e-6, 1e-4, "tckd");
    th_assert_close1(terms[3], nckd, 1e-6, 1e-4, "nckd");
    th_assert_close(k->grad, g, n, 1e-5, 1e-4, "grad");
    free(zs);
    free(g);
}

static void check_against_reference(int B, int C, double T, double tw,
                                     double nw, double alpha, uint64_t seed)
{
    struct case_ k;
    char st[64], sa[64], s1[64], s2[64];
    const char *sets[4] = {st, sa, s1, s2};
    size_t n = (size_t)B * C;
    double *zt = malloc(sizeof(double) * n);
    struct ref r;

    make_case(&k, B, C, -30, 30, seed);
    th_to_double(k.zt, zt, n);
    r = (struct ref){B, C, zt, k.y, T, tw, nw, alpha, 0};
    snprintf(st, sizeof st, "temperature=%.17g", T);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    snprintf(s1, sizeof s1, "tckd_weight=%.17g", tw);
    snprintf(s2, sizeof s2, "nckd_weight=%.17g", nw);
    compare(&k, &r, sets, 4);
    free_case(&k);
    free(zt);
}

/* ---------------------------------------------------------------------- */

Test(dkd, matches_reference_defaults)
{
    check_against_reference(8, 37, 4.0, 1.0, 8.0, 0.5, 1);
}

Test(dkd, matches_reference_other_params)
{
    check_against_reference(5, 19, 1.0, 1.0, 8.0, 0.0, 2);
    check_against_reference(5, 19, 1.0, 2.0, 0.5, 1.0, 3);
    check_against_reference(5, 19, 20.0, 0.0, 3.0, 0.3, 4);
    check_against_reference(6, 11, 2.0, 1.5, 0.0, 0.1, 5);
}

Test(dkd, matches_reference_wide_rows)
{
    /* C much larger than a work-group: every item loops over columns. */
    if (th_small())
        check_against_reference(2, 300, 4.0, 1.0, 8.0, 0.5, 6);
    else
        check_against_reference(3, 5000, 4.0, 1.0, 8.0, 0.5, 6);
}

Test(dkd, single_row)
{
    check_against_reference(1, 10, 2.0, 1.0, 8.0, 0.3, 7);
}

Test(dkd, target_in_first_and_last_column)
{
    struct case_ k;
    double zt[40];
    struct ref r;
    make_case(&k, 4, 10, -30, 30, 8);
    k.y[0] = 0;
    k.y[1] = 9;
    k.y[2] = 0;
    k.y[3] = 9;
    th_to_double(k.zt, zt, 40);
    r = (struct ref){4, 10, zt, k.y, 4.0, 1.0, 8.0, 0.5, 0};
    compare(&k, &r, NULL, 0);
    free_case(&k);
}

/* C = 2: one non-target class, whose non-target softmax is 1 on both
   sides, so NCKD = 0 and only TCKD (and CE) remain. */
Test(dkd, two_classes_have_zero_nckd)
{
    struct case_ k;
    double zt[14], loss, terms[4];
    struct ref r;
    make_case(&k, 7, 2, -30, 30, 9);
    th_to_double(k.zt, zt, 14);
    r = (struct ref){7, 2, zt, k.y, 4.0, 1.0, 8.0, 0.5, 0};
    compare(&k, &r, NULL, 0);
    cr_assert_eq(run_case(&k, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(terms[3] == 0.0, "nckd %g", terms[3]);
    cr_assert(terms[2] > 1e-3, "tckd %g", terms[2]);
    free_case(&k);
}

/* C = 1: every distribution is [1]; KD, CE and the gradient vanish. */
Test(dkd, single_class_gives_zero)
{
    struct case_ k;
    double loss, terms[4];
    make_case(&k, 3, 1, -30, 30, 10);
    cr_assert_eq(run_case(&k, NULL, 0, &loss, terms), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert(loss == 0.0 && terms[0] == 0.0 && terms[2] == 0.0
                  && terms[3] == 0.0,
              "loss %g ce %g tckd %g nckd %g", loss, terms[0], terms[2],
              terms[3]);
    for (int i = 0; i < 3; i++)
        cr_assert(k.grad[i] == 0.0f, "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

/* mdistiller masks the target logit with -1000 instead of leaving it out;
   for moderate logits that is the same number. */
Test(dkd, agrees_with_mdistiller_masking_for_moderate_logits)
{
    struct case_ k;
    double zt[8 * 23];
    struct ref r;
    make_case(&k, 8, 23, -30, 30, 12);
    th_to_double(k.zt, zt, 8 * 23);
    r = (struct ref){8, 23, zt, k.y, 4.0, 1.0, 8.0, 0.5, 1};
    compare(&k, &r, NULL, 0);
    free_case(&k);
}

Test(dkd, gradient_matches_finite_differences)
{
    const int B = 3, C = 7;
    struct case_ k;
    double loss, terms[4], zs[21], zt[21], g[21];
    struct ref r;

    make_case(&k, B, C, -3, 3, 11);
    th_to_double(k.zs, zs, 21);
    th_to_double(k.zt, zt, 21);
    r = (struct ref){B, C, zt, k.y, 4.0, 1.0, 8.0, 0.5, 0};
    cr_assert_eq(run_case(&k, NULL, 0, &loss, terms), KDCL_OK);
    th_fd_grad(ref_fn, &r, zs, 21, 1e-5, g);
    th_assert_close(k.grad, g, 21, 1e-6, 1e-4, "grad vs finite differences");

    /* And the device's own loss, perturbed in float32 (coarse). */
    for (int i = 0; i < 21; i += 4) {
        const float h = 1e-2f, x0 = k.zs[i];
        double lp, lm, gi = k.grad[i];
        k.zs[i] = x0 + h;
        cr_assert_eq(run_case(&k, NULL, 0, &lp, terms), KDCL_OK);
        k.zs[i] = x0 - h;
        cr_assert_eq(run_case(&k, NULL, 0, &lm, terms), KDCL_OK);
        k.zs[i] = x0;
        th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                         "device finite difference");
    }
    free_case(&k);
}

Test(dkd, deterministic_bitwise)
{
    struct case_ k;
    double l1, l2, t1[4], t2[4];
    const int C = th_small() ? 100 : 1000, B = th_small() ? 4 : 64;
    const int n = B * C;
    float *g1 = malloc(sizeof(float) * n);
    make_case(&k, B, C, -10, 10, 21);
    cr_assert_eq(run_case(&k, NULL, 0, &l1, t1), KDCL_OK);
    memcpy(g1, k.grad, sizeof(float) * n);
    cr_assert_eq(run_case(&k, NULL, 0, &l2, t2), KDCL_OK);
    cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g", l1,
              l2);
    cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ between runs");
    cr_assert(memcmp(g1, k.grad, sizeof(float) * n) == 0,
              "gradients differ between runs");
    free(g1);
    free_case(&k);
}

Test(dkd, extreme_logits_stay_finite)
{
    struct case_ k;
    double loss, terms[4];
    make_case(&k, 4, 50, -1e4, 1e4, 31);
    cr_assert_eq(run_case(&k, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(isfinite(loss), "loss %g", loss);
    for (int i = 0; i < 4; i++)
        cr_assert(isfinite(terms[i]), "term %d = %g", i, terms[i]);
    for (int i = 0; i < 200; i++)
        cr_assert(isfinite(k.grad[i]), "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

Test(dkd, identical_logits_give_zero_kd)
{
    struct case_ k;
    double loss, terms[4];
    const char *sets[] = {"alpha=0"};
    make_case(&k, 6, 13, -5, 5, 41);
    memcpy(k.zt, k.zs, sizeof(float) * 6 * 13);
    cr_assert_eq(run_case(&k, sets, 1, &loss, terms), KDCL_OK);
    cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
    cr_assert(fabs(terms[2]) < 1e-6 && fabs(terms[3]) < 1e-6,
              "tckd %g nckd %g", terms[2], terms[3]);
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(fabs(k.grad[i]) < 1e-7, "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

/* warmup: before any epoch end the DKD weights are scaled by 1/warmup,
   which is the reference with those weights scaled. */
Test(dkd, warmup_scales_the_weights_in_the_first_epoch)
{
    struct case_ k;
    const char *sets[] = {"warmup=4", "temperature=3", "alpha=0.3"};
    double *zt;
    struct ref r;
    make_case(&k, 5, 9, -6, 6, 51);
    zt = malloc(sizeof(double) * 45);
    th_to_double(k.zt, zt, 45);
    r = (struct ref){5, 9, zt, k.y, 3.0, 1.0 / 4, 8.0 / 4, 0.3, 0};
    compare(&k, &r, sets, 3);
    free(zt);
    free_case(&k);
}

/* ... and by min(e / warmup, 1) in epoch e, as epoch ends arrive. */
Test(dkd, warmup_ramps_over_epochs)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_plugin *p = th_plugin("dkd");
    struct case_ k;
    kdcl_params *params;
    kdcl_run *run;
    kdcl_tensor *zs, *zt, *y;
    int64_t shape[2] = {4, 7};
    double base[4], loss, terms[4], want[] = {1.0 / 3, 2.0 / 3, 1, 1};
    make_case(&k, 4, 7, -5, 5, 61);
    /* ce and the full kd term, from a run without warm-up */
    {
        double l;
        cr_assert_eq(run_case(&k, NULL, 0, &l, base), KDCL_OK);
    }
    cr_assert_eq(kdcl_params_init(ctx, p, &params), 0);
    cr_assert_eq(kdcl_params_set_kv(params, "warmup=3"), 0);
    cr_assert_eq(kdcl_run_init(ctx, p, params, &run), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, shape, &zs), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, shape, &zt), 0);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, shape, &y), 0);
    kdcl_tensor_write(zs, k.zs, sizeof(float) * 28);
    kdcl_tensor_write(zt, k.zt, sizeof(float) * 28);
    kdcl_tensor_write(y, k.y, sizeof(int32_t) * 4);
    cr_assert_eq(kdcl_run_set_input(run, "student.logits", zs), 0);
    cr_assert_eq(kdcl_run_set_input(run, "teacher.logits", zt), 0);
    cr_assert_eq(kdcl_run_set_input(run, "labels", y), 0);
    for (int e = 0; e < 4; e++) {
        cr_assert_eq(kdcl_run_forward(run), 0, "%s",
                     kdcl_context_errmsg(ctx));
        cr_assert_eq(kdcl_run_result(run, &loss, terms, 4), 0);
        th_assert_close1(terms[1], want[e] * base[1], 1e-6, 1e-5,
                         "kd term in epoch");
        th_assert_close1(loss, 0.5 * base[0] + 0.5 * want[e] * base[1],
                         1e-6, 1e-5, "loss in epoch");
        /* steps end too; only epoch ends move the ramp */
        cr_assert_eq(kdcl_run_event(run, KDCL_EVENT_STEP_END, 10 * e), 0);
        cr_assert_eq(kdcl_run_event(run, KDCL_EVENT_EPOCH_END, e), 0);
    }
    kdcl_tensor_free(zs);
    kdcl_tensor_free(zt);
    kdcl_tensor_free(y);
    kdcl_run_free(run);
    kdcl_params_free(params);
    free_case(&k);
}

Test(dkd, rejects_missing_labels)
{
    struct case_ k;
    double loss, t[4];
    struct th_input in[2];
    make_case(&k, 2, 3, -1, 1, 51);
    in[0] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {2, 3},
                              k.zs, k.grad};
    in[1] = (struct th_input){"teacher.logits", KDCL_DTYPE_F32, 2, {2, 3},
                              k.zt, NULL};
    cr_assert_eq(th_run("dkd", NULL, 0, in, 2, &loss, t, 4), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"), "%s",
              kdcl_context_errmsg(th_ctx()));
    free_case(&k);
}

Test(dkd, rejects_mismatched_shapes)
{
    float zs[6] = {0}, zt[8] = {0};
    int32_t y[2] = {0, 1};
    double loss, t[4];
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 4}, zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {2}, y, NULL},
    };
    cr_assert_eq(th_run("dkd", NULL, 0, in, 3, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "[2,4]"));
}

Test(dkd, rejects_wrong_rank_and_label_count)
{
    float zs[6] = {0}, zt[6] = {0};
    int32_t y[3] = {0, 1, 2};
    double loss, t[4];
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 1, {6}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 1, {6}, zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {3}, y, NULL},
    };
    cr_assert_eq(th_run("dkd", NULL, 0, in, 3, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
    in[0] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {2, 3},
                              zs, NULL};
    in[1] = (struct th_input){"teacher.logits", KDCL_DTYPE_F32, 2, {2, 3},
                              zt, NULL};
    cr_assert_eq(th_run("dkd", NULL, 0, in, 3, &loss, t, 4), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
}

Test(dkd, rejects_missing_teacher)
{
    float zs[6] = {0};
    int32_t y[2] = {0, 1};
    double loss, t[4];
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {2}, y, NULL},
    };
    cr_assert_eq(th_run("dkd", NULL, 0, in, 2, &loss, t, 4), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

Test(dkd, rejects_out_of_range_label)
{
    struct case_ k;
    double loss, t[4];
    make_case(&k, 2, 3, -1, 1, 61);
    k.y[1] = 3;
    cr_assert_eq(run_case(&k, NULL, 0, &loss, t), KDCL_ERANGE);
    k.y[1] = -100; /* dkd does not accept -100 row masking */
    cr_assert_eq(run_case(&k, NULL, 0, &loss, t), KDCL_ERANGE);
    free_case(&k);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(dkd, cli_golden_values)
{
    struct case_ k;
    char s[512], t[512], y[512], g[512], args[4096], out[4096], err[4096];
    const int64_t shape[2] = {4, 10};
    double zs[40], zt[40], gr[40], ce, tckd, nckd, want;
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
             "loss --plugin dkd --student %s --teacher %s --labels %s "
             "--set temperature=2 --set alpha=0.25 --set nckd_weight=4 "
             "--grad-out %s",
             s, t, y, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.zs, zs, 40);
    th_to_double(k.zt, zt, 40);
    r = (struct ref){4, 10, zt, k.y, 2.0, 1.0, 4.0, 0.25, 0};
    want = ref_loss(&r, zs, &ce, &tckd, &nckd, gr);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), tckd + 4.0 * nckd, 1e-6,
                     1e-4, "kd");
    th_assert_close1(th_parse_value(out, "term tckd"), tckd, 1e-6, 1e-4,
                     "tckd");
    th_assert_close1(th_parse_value(out, "term nckd"), nckd, 1e-6, 1e-4,
                     "nckd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(want, 22.1890863, 0, 1e-6, "reference golden loss");
    th_assert_close1(th_parse_value(out, "loss"), 22.1890863, 0, 1e-4,
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
