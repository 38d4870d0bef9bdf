/*
 * tests/test-plugin-hinton.c - the hinton plugin against an independent
 * float64 reference (LOSSES.md `hinton`), finite differences,
 * determinism, extreme logits, degenerate cases, bad input and `kdcl loss`
 * golden values.
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
    const double *zs, *zt;
    const int32_t *y; /* NULL: no labels */
    double T, alpha;
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
    int B = r->B, C = r->C;
    double *ls = malloc(sizeof(double) * C), *lt = malloc(sizeof(double) * C),
           *lu = malloc(sizeof(double) * C);
    double kl = 0, ce = 0;
    double a = r->y ? r->alpha : 0.0;
    for (int b = 0; b < B; b++) {
        const double *s = zs + (size_t)b * C, *t = r->zt + (size_t)b * C;
        log_softmax(s, C, 1.0 / r->T, ls);
        log_softmax(t, C, 1.0 / r->T, lt);
        log_softmax(s, C, 1.0, lu);
        for (int c = 0; c < C; c++)
            kl += exp(lt[c]) * (lt[c] - ls[c]);
        if (r->y)
            ce -= lu[r->y[b]];
        if (grad)
            for (int c = 0; c < C; c++) {
                double g = (1 - a) * r->T * (exp(ls[c]) - exp(lt[c])) / B;
                if (r->y)
                    g += a * (exp(lu[c]) - (c == r->y[b])) / B;
                grad[(size_t)b * C + c] = g;
            }
    }
    free(ls);
    free(lt);
    free(lu);
    kl = r->T * r->T * kl / B;
    ce /= B;
    if (ce_out)
        *ce_out = ce;
    if (kd_out)
        *kd_out = kl;
    return r->y ? a * ce + (1 - a) * kl : kl;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL);
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

/* Run the plugin on k; labels only when with_labels. */
static int run_case(struct case_ *k, bool with_labels, const char *const *sets,
                    size_t n_sets, double *loss, double *terms)
{
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zs, k->grad},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {k->B, k->C}, k->zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    return th_run("hinton", sets, n_sets, in, with_labels ? 3 : 2, loss,
                  terms, 2);
}

/* Compare the plugin with the reference for one configuration. */
static void check_against_reference(int B, int C, double T, double alpha,
                                    bool labels, uint64_t seed)
{
    struct case_ k;
    char st[64], sa[64];
    const char *sets[2] = {st, sa};
    double loss, terms[2], ce, kd, want;
    size_t n = (size_t)B * C;
    double *zs = malloc(sizeof(double) * n), *zt = malloc(sizeof(double) * n),
           *g = malloc(sizeof(double) * n);
    struct ref r;

    make_case(&k, B, C, -30, 30, seed);
    th_to_double(k.zs, zs, n);
    th_to_double(k.zt, zt, n);
    r = (struct ref){B, C, zs, zt, labels ? k.y : NULL, T, alpha};
    snprintf(st, sizeof st, "temperature=%.17g", T);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    cr_assert_eq(run_case(&k, labels, sets, labels ? 2 : 1, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, zs, &ce, &kd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], kd, 1e-6, 1e-4, "kd");
    if (labels)
        th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    th_assert_close(k.grad, g, n, 1e-5, 1e-4, "grad");
    free_case(&k);
    free(zs);
    free(zt);
    free(g);
}

/* ---------------------------------------------------------------------- */

Test(hinton, matches_reference_with_labels)
{
    check_against_reference(8, 37, 4.0, 0.1, true, 1);
}

Test(hinton, matches_reference_without_labels)
{
    check_against_reference(8, 37, 4.0, 0.1, false, 2);
}

Test(hinton, matches_reference_t1_alpha0_alpha1)
{
    check_against_reference(5, 19, 1.0, 0.0, true, 3);
    check_against_reference(5, 19, 1.0, 1.0, true, 4);
    check_against_reference(5, 19, 20.0, 0.5, true, 5);
}

/* The CPU kernel gets the CE exp from exp(z/T)^T when T is an integer
   (odd T multiplies as well as squares) and computes it when not. */
Test(hinton, matches_reference_odd_and_fractional_temperatures)
{
    check_against_reference(4, 53, 7.0, 0.3, true, 9);
    check_against_reference(4, 53, 2.5, 0.3, true, 10);
    check_against_reference(4, 53, 0.5, 0.3, true, 11);
}

Test(hinton, matches_reference_wide_rows)
{
    /* C much larger than a work-group: every item loops over columns. */
    if (th_small())
        check_against_reference(2, 300, 4.0, 0.1, true, 6);
    else
        check_against_reference(3, 5000, 4.0, 0.1, true, 6);
}

/* Rows longer than the device's local memory: the CPU kernel recomputes
   exp(z_s/T) in its second pass instead of keeping it there. */
Test(hinton, matches_reference_rows_beyond_local_memory)
{
    const uint64_t local = kdcl_context_device(th_ctx())->local_mem;
    const uint64_t C = local / sizeof(float) + 17;
    if (C > (th_small() ? 70000u : 4000000u))
        cr_skip_test("row of %llu floats too long for this run",
                     (unsigned long long)C);
    check_against_reference(2, (int)C, 4.0, 0.1, true, 8);
}

Test(hinton, single_row)
{
    check_against_reference(1, 10, 2.0, 0.3, true, 7);
}

Test(hinton, gradient_matches_finite_differences)
{
    const int B = 3, C = 7;
    struct case_ k;
    double loss, terms[2], zs[21], zt[21], g[21];
    struct ref r;

    make_case(&k, B, C, -3, 3, 11);
    th_to_double(k.zs, zs, 21);
    th_to_double(k.zt, zt, 21);
    r = (struct ref){B, C, zs, zt, k.y, 4.0, 0.1};
    cr_assert_eq(run_case(&k, true, NULL, 0, &loss, terms), KDCL_OK);
    th_fd_grad(ref_fn, &r, zs, 21, 1e-5, g);
    th_assert_close(k.grad, g, 21, 1e-6, 1e-4, "grad vs finite differences");

    /* And the device's own loss, perturbed in float32 (coarse). */
    for (int i = 0; i < 21; i += 5) {
        const float h = 1e-2f, x0 = k.zs[i];
        double lp, lm, gi = k.grad[i];
        k.zs[i] = x0 + h;
        cr_assert_eq(run_case(&k, true, NULL, 0, &lp, terms), KDCL_OK);
        k.zs[i] = x0 - h;
        cr_assert_eq(run_case(&k, true, NULL, 0, &lm, terms), KDCL_OK);
        k.zs[i] = x0;
        th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                         "device finite difference");
    }
    free_case(&k);
}

Test(hinton, deterministic_bitwise)
{
    struct case_ k;
    double l1, l2, t[2];
    int n = th_small() ? 4 * 100 : 64 * 1000;
    float *g1 = malloc(sizeof(float) * n);
    make_case(&k, n / (th_small() ? 100 : 1000), th_small() ? 100 : 1000, -10,
              10, 21);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l1, t), KDCL_OK);
    memcpy(g1, k.grad, sizeof(float) * n);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l2, t), KDCL_OK);
    cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g", l1,
              l2);
    cr_assert(memcmp(g1, k.grad, sizeof(float) * n) == 0,
              "gradients differ between runs");
    free(g1);
    free_case(&k);
}

Test(hinton, extreme_logits_stay_finite)
{
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 4, 50, -1e4, 1e4, 31);
    cr_assert_eq(run_case(&k, true, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(isfinite(loss) && isfinite(terms[0]) && isfinite(terms[1]));
    for (int i = 0; i < 200; i++)
        cr_assert(isfinite(k.grad[i]), "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

Test(hinton, identical_logits_give_zero_kd)
{
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 6, 13, -5, 5, 41);
    memcpy(k.zt, k.zs, sizeof(float) * 6 * 13);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(fabs(k.grad[i]) < 1e-7, "grad[%d] = %g", i, k.grad[i]);
    free_case(&k);
}

Test(hinton, rejects_alpha_without_labels)
{
    struct case_ k;
    double loss, t[2];
    const char *sets[] = {"alpha=0.5"};
    make_case(&k, 2, 3, -1, 1, 51);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(hinton, rejects_mismatched_shapes)
{
    float zs[6] = {0}, zt[8] = {0};
    double loss, t[2];
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 4}, zt, NULL},
    };
    cr_assert_eq(th_run("hinton", NULL, 0, in, 2, &loss, t, 2), KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

Test(hinton, rejects_missing_teacher)
{
    float zs[6] = {0};
    double loss, t[2];
    struct th_input in[1] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
    };
    cr_assert_eq(th_run("hinton", NULL, 0, in, 1, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

Test(hinton, rejects_out_of_range_label)
{
    struct case_ k;
    double loss, t[2];
    make_case(&k, 2, 3, -1, 1, 61);
    k.y[1] = 3;
    cr_assert_eq(run_case(&k, true, NULL, 0, &loss, t), KDCL_ERANGE);
    free_case(&k);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(hinton, cli_golden_values)
{
    struct case_ k;
    char s[512], t[512], y[512], g[512], args[4096], out[4096], err[4096];
    const int64_t shape[2] = {4, 10};
    double zs[40], zt[40], gr[40], ce, kd, want;
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
             "loss --plugin hinton --student %s --teacher %s --labels %s "
             "--set temperature=2 --set alpha=0.25 --grad-out %s",
             s, t, y, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.zs, zs, 40);
    th_to_double(k.zt, zt, 40);
    r = (struct ref){4, 10, zs, zt, k.y, 2.0, 0.25};
    want = ref_loss(&r, zs, &ce, &kd, gr);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), kd, 1e-6, 1e-4, "kd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 6.33436918, 0, 1e-4,
                     "golden loss");
    {
        char cmd[1024];
        float gf[40];
        FILE *f;
        snprintf(cmd, sizeof cmd, "%s", g);
        f = fopen(cmd, "rb");
        cr_assert_not_null(f, "gradient file not written");
        fseek(f, -160, SEEK_END);
        cr_assert_eq(fread(gf, sizeof(float), 40, f), 40u);
        fclose(f);
        th_assert_close(gf, gr, 40, 1e-5, 1e-4, "cli grad");
    }
    free_case(&k);
}
