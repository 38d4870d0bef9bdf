/*
 * tests/test-plugin-skewkl.c - the skewkl plugin against an independent
 * float64 reference (LOSSES.md `skewkl`), the lambda = 0 reductions to
 * forward and reverse KL and lambda = 1 to zero, finite differences, -100
 * row masking, determinism, extreme logits, degenerate cases, bad input
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
    int B, V;
    const double *zt;
    const int32_t *y; /* NULL: no labels */
    double lambda, T;
    int reverse;
};

static void log_softmax(const double *z, int V, double scale, double *out)
{
    double m = -INFINITY, s = 0;
    for (int c = 0; c < V; c++)
        m = fmax(m, z[c] * scale);
    for (int c = 0; c < V; c++)
        s += exp(z[c] * scale - m);
    for (int c = 0; c < V; c++)
        out[c] = z[c] * scale - m - log(s);
}

static bool row_valid(const struct ref *r, int b)
{
    return !r->y || r->y[b] != -100;
}

/*
 * Loss (and the gradient when non-NULL).  A row's loss is
 * forward KL(p || lambda p + (1 - lambda) q) or
 * reverse KL(q || (1 - lambda) p + lambda q), entropy included; the
 * gradient is the chain rule through the softmax Jacobian applied to the
 * unsimplified partial derivatives dD/dq_i of that row divergence D.
 */
static double ref_loss(const struct ref *r, const double *zs, double *grad)
{
    int B = r->B, V = r->V, n = 0;
    double *lq = malloc(sizeof(double) * V), *lp = malloc(sizeof(double) * V),
           *dq = malloc(sizeof(double) * V);
    double loss = 0, lam = r->lambda;
    for (int b = 0; b < B; b++)
        n += row_valid(r, b);
    for (int b = 0; b < B; b++) {
        double *g = grad ? grad + (size_t)b * V : NULL;
        double d = 0, dot = 0;
        if (!row_valid(r, b)) {
            for (int c = 0; g && c < V; c++)
                g[c] = 0;
            continue;
        }
        log_softmax(zs + (size_t)b * V, V, 1.0 / r->T, lq);
        log_softmax(r->zt + (size_t)b * V, V, 1.0 / r->T, lp);
        for (int c = 0; c < V; c++) {
            double p = exp(lp[c]), q = exp(lq[c]);
            if (!r->reverse) {
                double m = lam * p + (1 - lam) * q;
                if (p > 0)
                    d += p * (lp[c] - log(m));
                dq[c] = -p * (1 - lam) / m;
            } else {
                double m = (1 - lam) * p + lam * q;
                if (q > 0)
                    d += q * (lq[c] - log(m));
                dq[c] = lq[c] + 1 - log(m) - q * lam / m;
            }
        }
        loss += d;
        for (int c = 0; c < V; c++)
            dot += exp(lq[c]) * dq[c];
        for (int c = 0; g && c < V; c++)
            g[c] = exp(lq[c]) * (dq[c] - dot) / r->T / n;
    }
    free(lq);
    free(lp);
    free(dq);
    return n ? loss / n : 0;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL);
}

/* Mean KL(softmax(a / T) || softmax(b / T)) over all rows, plainly. */
static double plain_kl(const double *a, const double *b, int B, int V,
                       double T)
{
    double *la = malloc(sizeof(double) * V), *lb = malloc(sizeof(double) * V);
    double s = 0;
    for (int r = 0; r < B; r++) {
        log_softmax(a + (size_t)r * V, V, 1.0 / T, la);
        log_softmax(b + (size_t)r * V, V, 1.0 / T, lb);
        for (int c = 0; c < V; c++)
            s += exp(la[c]) * (la[c] - lb[c]);
    }
    free(la);
    free(lb);
    return s / B;
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

struct case_ {
    int B, V;
    float *zs, *zt, *grad;
    int32_t *y;
};

static void make_case(struct case_ *k, int B, int V, double lo, double hi,
                      uint64_t seed)
{
    k->B = B;
    k->V = V;
    k->zs = malloc(sizeof(float) * B * V);
    k->zt = malloc(sizeof(float) * B * V);
    k->grad = malloc(sizeof(float) * B * V);
    k->y = malloc(sizeof(int32_t) * B);
    th_fill_uniform(k->zs, (size_t)B * V, lo, hi, seed);
    th_fill_uniform(k->zt, (size_t)B * V, lo, hi, seed + 1);
    th_fill_labels(k->y, (size_t)B, V, seed + 2);
}

static void free_case(struct case_ *k)
{
    free(k->zs);
    free(k->zt);
    free(k->grad);
    free(k->y);
}

/* Run the plugin on k with lambda, reverse and T; labels only when
   with_labels; no gradient requested when want_grad is false. */
static int run_full(struct case_ *k, bool with_labels, bool want_grad,
                    double lambda, int reverse, double T, double *loss,
                    double *terms)
{
    char sl[64], sr[64], st[64];
    const char *sets[3] = {sl, sr, st};
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->V}, k->zs,
         want_grad ? k->grad : NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {k->B, k->V}, k->zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    snprintf(sl, sizeof sl, "lambda=%.17g", lambda);
    snprintf(sr, sizeof sr, "reverse=%d", reverse);
    snprintf(st, sizeof st, "temperature=%.17g", T);
    return th_run("skewkl", sets, 3, in, with_labels ? 3 : 2, loss, terms, 1);
}

static int run_case(struct case_ *k, bool with_labels, double lambda,
                    int reverse, double T, double *loss, double *terms)
{
    return run_full(k, with_labels, true, lambda, reverse, T, loss, terms);
}

/* With spiky set, check_full gives every row two large logits that
   student and teacher weigh the other way round: most of the mass sits
   there, so that the gradient has elements of order 0.1 to check even
   when V is large (uniform logits spread it to ~1/V). */
static bool spiky;

static void add_spikes(struct case_ *k)
{
    for (int b = 0; b < k->B; b++) {
        int a = (b * 7919) % k->V, c = (a + k->V / 2) % k->V;
        k->zs[(size_t)b * k->V + a] = 28.0f;
        k->zs[(size_t)b * k->V + c] = 27.0f;
        k->zt[(size_t)b * k->V + a] = 27.0f;
        k->zt[(size_t)b * k->V + c] = 28.0f;
    }
}

/* Compare the plugin with the reference for one configuration; rows listed
   in masked (terminated by -1) get label -100. */
static void check_full(int B, int V, double lambda, int reverse, double T,
                       double range, bool labels, const int *masked,
                       uint64_t seed)
{
    struct case_ k;
    double loss, terms[1], want;
    size_t n = (size_t)B * V;
    double *zs = malloc(sizeof(double) * n), *zt = malloc(sizeof(double) * n),
           *g = malloc(sizeof(double) * n);
    struct ref r;

    make_case(&k, B, V, -range, range, seed);
    if (spiky)
        add_spikes(&k);
    for (int i = 0; masked && masked[i] >= 0; i++)
        k.y[masked[i]] = -100;
    th_to_double(k.zs, zs, n);
    th_to_double(k.zt, zt, n);
    r = (struct ref){B, V, zt, labels ? k.y : NULL, lambda, T, reverse};
    cr_assert_eq(run_case(&k, labels, lambda, reverse, T, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, zs, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[0], want, 1e-6, 1e-4, "skew_kl");
    th_assert_close(k.grad, g, n, 1e-5, 1e-4, "grad");
    free_case(&k);
    free(zs);
    free(zt);
    free(g);
}

static void check(int B, int V, double lambda, int reverse, double T,
                  uint64_t seed)
{
    check_full(B, V, lambda, reverse, T, 30, false, NULL, seed);
}

/* ---------------------------------------------------------------------- */

Test(skewkl, matches_reference_default_lambda)
{
    static const int masked[] = {1, 5, -1};
    for (int rev = 0; rev < 2; rev++) {
        check(8, 37, 0.1, rev, 1.0, 1 + rev);
        check_full(8, 37, 0.1, rev, 1.0, 30, true, masked, 3 + rev);
    }
}

Test(skewkl, matches_reference_other_lambdas)
{
    static const double lambdas[] = {0.5, 0.9, 1e-3, 0.3};
    for (int rev = 0; rev < 2; rev++)
        for (int i = 0; i < 4; i++)
            check(5, 19, lambdas[i], rev, i == 1 ? 2.0 : 1.0,
                  5 + 10 * rev + i);
}

Test(skewkl, matches_reference_temperature)
{
    for (int rev = 0; rev < 2; rev++) {
        check(6, 29, 0.1, rev, 4.0, 31 + rev);
        check(6, 29, 0.0, rev, 2.5, 33 + rev);
        /* T < 1 sharpens: logits in [-15, 15] keep z / T in [-30, 30] */
        check_full(6, 29, 0.2, rev, 0.5, 15, false, NULL, 35 + rev);
    }
}

Test(skewkl, matches_reference_wide_rows)
{
    /* V much larger than a work-group (GPUs) and than a float16 chunk
       (CPUs): a partial last chunk (5000 = 312 * 16 + 8), none (2048),
       several chunks per item (3077), fewer columns than items (7, 100) */
    static const int masked[] = {1, -1};
    if (th_small()) {
        check(2, 300, 0.1, 0, 1.0, 41);
        check(2, 300, 0.1, 1, 1.0, 42);
        return;
    }
    for (int rev = 0; rev < 2; rev++) {
        check(3, 5000, 0.1, rev, 1.0, 41 + rev);
        check_full(3, 5000, 0.0, rev, 2.0, 30, true, masked, 43 + rev);
        check(2, 2048, 0.5, rev, 1.0, 45 + rev);
        check(2, 3077, 0.7, rev, 1.0, 47 + rev);
        check(4, 7, 0.1, rev, 1.0, 49 + rev);
        check(4, 100, 0.1, rev, 1.0, 51 + rev);
    }
}

Test(skewkl, matches_reference_huge_vocabulary)
{
    /* 140000 floats per row are more than the row copy a CPU device keeps
       in local memory (half of PoCL's 1 MiB): the other code path */
    if (th_small())
        return;
    for (int rev = 0; rev < 2; rev++) {
        check(2, 140000, 0.1, rev, 1.0, 53 + rev);
        check(2, 140000, 0.0, rev, 1.0, 55 + rev);
        spiky = true;
        check_full(2, 140000, 0.1, rev, 1.0, 10, false, NULL, 97 + rev);
        check_full(2, 140000, 0.0, rev, 2.0, 10, false, NULL, 99 + rev);
        spiky = false;
    }
}

Test(skewkl, single_row)
{
    for (int rev = 0; rev < 2; rev++) {
        check(1, 10, 0.1, rev, 2.0, 57 + rev);
        check(1, 10, 0.0, rev, 1.0, 59 + rev);
    }
}

Test(skewkl, lambda0_is_forward_and_reverse_kl)
{
    const int B = 4, V = 33;
    struct case_ k;
    double loss, terms[1], zs[4 * 33], zt[4 * 33];

    make_case(&k, B, V, -30, 30, 61);
    th_to_double(k.zs, zs, (size_t)B * V);
    th_to_double(k.zt, zt, (size_t)B * V);
    /* forward: KL(p_t || p_s); gradient (p_s - p_t) / (T B) */
    cr_assert_eq(run_case(&k, false, 0.0, 0, 2.0, &loss, terms), KDCL_OK);
    th_assert_close1(loss, plain_kl(zt, zs, B, V, 2.0), 1e-6, 1e-4,
                     "lambda=0 forward loss");
    {
        double g[4 * 33], ls[33], lt[33];
        for (int b = 0; b < B; b++) {
            log_softmax(zs + b * V, V, 0.5, ls);
            log_softmax(zt + b * V, V, 0.5, lt);
            for (int c = 0; c < V; c++)
                g[b * V + c] = (exp(ls[c]) - exp(lt[c])) / (2.0 * B);
        }
        th_assert_close(k.grad, g, (size_t)B * V, 1e-5, 1e-4,
                        "lambda=0 forward grad");
    }
    /* reverse: KL(p_s || p_t) */
    cr_assert_eq(run_case(&k, false, 0.0, 1, 2.0, &loss, terms), KDCL_OK);
    th_assert_close1(loss, plain_kl(zs, zt, B, V, 2.0), 1e-6, 1e-4,
                     "lambda=0 reverse loss");
    free_case(&k);
}

Test(skewkl, lambda1_gives_zero)
{
    struct case_ k;
    double loss, terms[1];
    make_case(&k, 3, 40, -30, 30, 62);
    for (int rev = 0; rev < 2; rev++) {
        cr_assert_eq(run_case(&k, false, 1.0, rev, 1.0, &loss, terms),
                     KDCL_OK);
        cr_assert(loss == 0.0 && terms[0] == 0.0, "loss %g", loss);
        for (int j = 0; j < 120; j++)
            cr_assert(k.grad[j] == 0.0f, "grad[%d] = %g", j, k.grad[j]);
    }
    free_case(&k);
}

Test(skewkl, skew_is_between_zero_and_kl)
{
    /* KL(p || lambda p + (1 - lambda) q) decreases from KL(p || q) at
       lambda = 0 to 0 at lambda = 1 (convexity of KL in its second
       argument) */
    struct case_ k;
    double prev[2] = {INFINITY, INFINITY}, loss, terms[1];
    static const double lambdas[] = {0.0, 0.05, 0.3, 0.7, 0.99};
    make_case(&k, 3, 40, -10, 10, 63);
    for (int i = 0; i < 5; i++)
        for (int rev = 0; rev < 2; rev++) {
            cr_assert_eq(run_case(&k, false, lambdas[i], rev, 1.0, &loss,
                                  terms),
                         KDCL_OK);
            cr_assert(loss > 0 && loss < prev[rev],
                      "lambda %g reverse %d: %g after %g", lambdas[i], rev,
                      loss, prev[rev]);
            prev[rev] = loss;
        }
    free_case(&k);
}

Test(skewkl, gradient_matches_finite_differences)
{
    static const double lambdas[] = {0.1, 0.0, 0.5};
    const int B = 3, V = 7;
    for (int i = 0; i < 6; i++) {
        const double lam = lambdas[i / 2];
        const int rev = i % 2;
        struct case_ k;
        double loss, terms[1], zs[21], zt[21], g[21];
        struct ref r;

        make_case(&k, B, V, -3, 3, 71 + i);
        k.y[1] = -100;
        th_to_double(k.zs, zs, 21);
        th_to_double(k.zt, zt, 21);
        r = (struct ref){B, V, zt, k.y, lam, 2.0, rev};
        cr_assert_eq(run_case(&k, true, lam, rev, 2.0, &loss, terms),
                     KDCL_OK);
        th_fd_grad(ref_fn, &r, zs, 21, 1e-5, g);
        th_assert_close(k.grad, g, 21, 1e-6, 1e-4,
                        "grad vs finite differences");

        /* and the device's own loss, perturbed in float32 (coarse) */
        for (int j = 0; j < 21; j += 4) {
            const float h = 1e-2f, x0 = k.zs[j];
            double lp, lm, gj = k.grad[j];
            k.zs[j] = x0 + h;
            cr_assert_eq(run_case(&k, true, lam, rev, 2.0, &lp, terms),
                         KDCL_OK);
            k.zs[j] = x0 - h;
            cr_assert_eq(run_case(&k, true, lam, rev, 2.0, &lm, terms),
                         KDCL_OK);
            k.zs[j] = x0;
            th_assert_close1(gj, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                             "device finite difference");
        }
        free_case(&k);
    }
}

Test(skewkl, masked_rows_get_zero_gradient_and_do_not_count)
{
    const int B = 6, V = 40;
    int keep[] = {0, 2, 3};
    for (int rev = 0; rev < 2; rev++) {
        struct case_ k, sub;
        double loss, terms[1], sub_loss, sub_terms[1];
        make_case(&k, B, V, -30, 30, 81 + rev);
        k.y[1] = k.y[4] = k.y[5] = -100;
        cr_assert_eq(run_case(&k, true, 0.1, rev, 1.5, &loss, terms),
                     KDCL_OK);
        /* the same three rows alone, without labels */
        make_case(&sub, 3, V, 0, 1, 83);
        for (int i = 0; i < 3; i++) {
            memcpy(sub.zs + i * V, k.zs + keep[i] * V, sizeof(float) * V);
            memcpy(sub.zt + i * V, k.zt + keep[i] * V, sizeof(float) * V);
        }
        cr_assert_eq(run_case(&sub, false, 0.1, rev, 1.5, &sub_loss,
                              sub_terms),
                     KDCL_OK);
        th_assert_close1(loss, sub_loss, 1e-7, 1e-5, "loss over valid rows");
        for (int i = 0; i < 3; i++)
            for (int c = 0; c < V; c++)
                cr_assert(fabsf(k.grad[keep[i] * V + c] - sub.grad[i * V + c])
                              <= 1e-7f + 1e-5f * fabsf(sub.grad[i * V + c]),
                          "valid row %d grad[%d]", keep[i], c);
        for (int b = 1; b < B; b += (b == 1 ? 3 : 1))
            for (int c = 0; c < V; c++)
                cr_assert(k.grad[b * V + c] == 0.0f,
                          "masked row %d grad[%d] = %g", b, c,
                          k.grad[b * V + c]);
        free_case(&sub);
        free_case(&k);
    }
}

Test(skewkl, all_rows_masked_give_zero)
{
    static const double lambdas[] = {0.1, 0.0};
    struct case_ k;
    double loss, terms[1];
    make_case(&k, 3, 50, -5, 5, 84);
    for (int b = 0; b < 3; b++)
        k.y[b] = -100;
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(run_case(&k, true, lambdas[i / 2], i % 2, 1.0, &loss,
                              terms),
                     KDCL_OK);
        cr_assert(loss == 0.0 && terms[0] == 0.0, "loss %g", loss);
        for (int j = 0; j < 150; j++)
            cr_assert(k.grad[j] == 0.0f, "grad[%d] = %g", j, k.grad[j]);
    }
}

Test(skewkl, forward_without_gradient)
{
    /* no gradient requested: the loss alone, computed another way; small
       logits, so that padding lanes of a partial chunk would show */
    static const double lambdas[] = {0.1, 0.0};
    for (int i = 0; i < 4; i++) {
        struct case_ k;
        double loss, terms[1], zs[5 * 300], zt[5 * 300], want;
        struct ref r;
        make_case(&k, 5, 300, -2, 2, 85 + i);
        k.y[2] = -100;
        th_to_double(k.zs, zs, 1500);
        th_to_double(k.zt, zt, 1500);
        r = (struct ref){5, 300, zt, k.y, lambdas[i / 2], 1.5, i % 2};
        cr_assert_eq(run_full(&k, true, false, lambdas[i / 2], i % 2, 1.5,
                              &loss, terms),
                     KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
        want = ref_loss(&r, zs, NULL);
        th_assert_close1(loss, want, 1e-6, 1e-4, "loss without gradient");
        free_case(&k);
    }
}

Test(skewkl, deterministic_bitwise)
{
    int B = th_small() ? 4 : 64, V = th_small() ? 100 : 1000;
    struct case_ k;
    float *g1 = malloc(sizeof(float) * B * V);
    make_case(&k, B, V, -10, 10, 91);
    k.y[3] = -100;
    for (int rev = 0; rev < 2; rev++) {
        double l1, l2, t1[1], t2[1];
        cr_assert_eq(run_case(&k, true, 0.1, rev, 1.0, &l1, t1), KDCL_OK);
        memcpy(g1, k.grad, sizeof(float) * B * V);
        cr_assert_eq(run_case(&k, true, 0.1, rev, 1.0, &l2, t2), KDCL_OK);
        cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g",
                  l1, l2);
        cr_assert(memcmp(g1, k.grad, sizeof(float) * B * V) == 0,
                  "gradients differ between runs");
    }
    free(g1);
    free_case(&k);
}

Test(skewkl, extreme_logits_stay_finite)
{
    static const double lambdas[] = {0.1, 0.0, 1e-6};
    struct case_ k;
    double loss, terms[1];
    make_case(&k, 4, 50, -1e4, 1e4, 92);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(run_case(&k, false, lambdas[i / 2], i % 2, 1.0, &loss,
                              terms),
                     KDCL_OK);
        cr_assert(isfinite(loss) && isfinite(terms[0]), "loss %g", loss);
        for (int j = 0; j < 200; j++)
            cr_assert(isfinite(k.grad[j]), "grad[%d] = %g", j, k.grad[j]);
    }
    free_case(&k);
}

Test(skewkl, identical_logits_give_zero)
{
    static const double lambdas[] = {0.1, 0.0, 0.6};
    struct case_ k;
    double loss, terms[1];
    make_case(&k, 6, 113, -20, 20, 93);
    memcpy(k.zt, k.zs, sizeof(float) * 6 * 113);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(run_case(&k, false, lambdas[i / 2], i % 2, 1.0, &loss,
                              terms),
                     KDCL_OK);
        cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
        for (int j = 0; j < 6 * 113; j++)
            cr_assert(fabs(k.grad[j]) < 1e-7, "lambda %g rev %d: grad[%d] = %g",
                      lambdas[i / 2], i % 2, j, k.grad[j]);
    }
    free_case(&k);
}

Test(skewkl, identical_logits_give_zero_huge_vocabulary)
{
    /* the path without a row copy in local memory (see above) */
    struct case_ k;
    double loss, terms[1];
    if (th_small())
        return;
    make_case(&k, 1, 140000, -20, 20, 94);
    memcpy(k.zt, k.zs, sizeof(float) * 140000);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(run_case(&k, false, i < 2 ? 0.1 : 0.0, i % 2, 1.0, &loss,
                              terms),
                     KDCL_OK);
        cr_assert(fabs(loss) < 1e-6, "loss %g", loss);
        for (int j = 0; j < 140000; j++)
            cr_assert(fabs(k.grad[j]) < 1e-7, "grad[%d] = %g", j, k.grad[j]);
    }
    free_case(&k);
}

Test(skewkl, one_column_gives_zero)
{
    struct case_ k;
    double loss, terms[1];
    make_case(&k, 3, 1, -5, 5, 95);
    for (int rev = 0; rev < 2; rev++) {
        cr_assert_eq(run_case(&k, false, 0.1, rev, 1.0, &loss, terms),
                     KDCL_OK);
        cr_assert(fabs(loss) < 1e-7, "loss %g", loss);
        for (int j = 0; j < 3; j++)
            cr_assert(fabs(k.grad[j]) < 1e-7, "grad[%d] = %g", j, k.grad[j]);
    }
    free_case(&k);
}

Test(skewkl, rejects_mismatched_shapes)
{
    th_logitpair_rejects_mismatched_shapes("skewkl");
}

Test(skewkl, rejects_non_2d_logits)
{
    th_logitpair_rejects_non_2d_logits("skewkl");
}

Test(skewkl, rejects_missing_teacher)
{
    float zs[6] = {0};
    double loss, t[1];
    struct th_input in[1] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
    };
    cr_assert_eq(th_run("skewkl", NULL, 0, in, 1, &loss, t, 1),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.logits"));
}

Test(skewkl, rejects_bad_labels)
{
    th_logitpair_rejects_bad_labels("skewkl");
}

Test(skewkl, rejects_bad_params)
{
    float zs[6] = {0};
    double loss, t[1];
    const char *bad[] = {"lambda=1.5", "lambda=-0.1", "temperature=0",
                         "reverse=2"};
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
    };
    for (int i = 0; i < 4; i++)
        cr_assert_neq(th_run("skewkl", &bad[i], 1, in, 2, &loss, t, 1),
                      KDCL_OK, "%s accepted", bad[i]);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(skewkl, cli_golden_values)
{
    static const double golden[2] = {1.01990925, 1.0140478};
    struct case_ k;
    char s[512], t[512], y[512], g[512], args[4096], out[4096], err[4096];
    const int64_t shape[2] = {4, 10};
    double zs[40], zt[40], gr[40], want;
    struct ref r;

    /* wide logits: forward and reverse differ well beyond the tolerance */
    make_case(&k, 4, 10, -15, 15, 96);
    k.y[2] = -100;
    snprintf(s, sizeof s, "%s/s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/t.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/g.npy", th_tmpdir());
    th_npy_f32(s, k.zs, 2, shape);
    th_npy_f32(t, k.zt, 2, shape);
    th_npy_i32(y, k.y, 1, shape);
    th_to_double(k.zs, zs, 40);
    th_to_double(k.zt, zt, 40);
    for (int rev = 0; rev < 2; rev++) {
        snprintf(args, sizeof args,
                 "loss --plugin skewkl --student %s --teacher %s --labels %s "
                 "--set lambda=0.2 --set reverse=%d --set temperature=2 "
                 "--grad-out %s",
                 s, t, y, rev, g);
        cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                     err);
        r = (struct ref){4, 10, zt, k.y, 0.2, 2.0, rev};
        want = ref_loss(&r, zs, gr);
        th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4,
                         "loss");
        th_assert_close1(th_parse_value(out, "term skew_kl"), want, 1e-6,
                         1e-4, "skew_kl");
        /* Golden values recorded from the float64 reference on these
           inputs. */
        th_assert_close1(th_parse_value(out, "loss"), golden[rev], 0, 1e-4,
                         "golden loss");
        {
            float gf[40];
            FILE *f = fopen(g, "rb");
            cr_assert_not_null(f, "gradient file not written");
            fseek(f, -160, SEEK_END);
            cr_assert_eq(fread(gf, sizeof(float), 40, f), 40u);
            fclose(f);
            th_assert_close(gf, gr, 40, 1e-5, 1e-4, "cli grad");
            for (int c = 20; c < 30; c++)
                cr_assert(gf[c] == 0.0f, "masked row grad[%d] = %g", c,
                          gf[c]);
        }
    }
    free_case(&k);
}
