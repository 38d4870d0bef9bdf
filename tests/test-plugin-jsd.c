/*
 * tests/test-plugin-jsd.c - the jsd plugin against an independent float64
 * reference (LOSSES.md `jsd`), the beta = 0 / 1 end points against plain
 * KL references, finite differences, -100 row masking, determinism,
 * extreme logits, degenerate cases, bad input and `kdcl loss` golden
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
    int B, V;
    const double *zt;
    const int32_t *y; /* NULL: no labels */
    double beta, T;
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

/* KL(a || b) of two distributions given by their logs; 0 log 0 = 0. */
static double kl(const double *la, const double *lb, int V)
{
    double s = 0;
    for (int c = 0; c < V; c++)
        if (exp(la[c]) > 0)
            s += exp(la[c]) * (la[c] - lb[c]);
    return s;
}

static bool row_valid(const struct ref *r, int b)
{
    return !r->y || r->y[b] != -100;
}

/*
 * Loss (and the mean KL(p||M), KL(q||M) and the gradient when non-NULL).
 * The gradient is the chain rule through the softmax Jacobian applied to
 * the unsimplified partial derivatives dD/dq_i of the row divergence D.
 */
static double ref_loss(const struct ref *r, const double *zs, double *klp_out,
                       double *klq_out, double *grad)
{
    int B = r->B, V = r->V, n = 0;
    double *lq = malloc(sizeof(double) * V), *lp = malloc(sizeof(double) * V),
           *lm = malloc(sizeof(double) * V), *dq = malloc(sizeof(double) * V);
    double loss = 0, klp = 0, klq = 0, beta = r->beta;
    for (int b = 0; b < B; b++)
        n += row_valid(r, b);
    for (int b = 0; b < B; b++) {
        double *g = grad ? grad + (size_t)b * V : NULL;
        double d, dot = 0;
        if (!row_valid(r, b)) {
            for (int c = 0; g && c < V; c++)
                g[c] = 0;
            continue;
        }
        log_softmax(zs + (size_t)b * V, V, 1.0 / r->T, lq);
        log_softmax(r->zt + (size_t)b * V, V, 1.0 / r->T, lp);
        for (int c = 0; c < V; c++)
            lm[c] = log(beta * exp(lp[c]) + (1 - beta) * exp(lq[c]));
        if (beta == 0) {
            d = kl(lp, lq, V);
            klp += d;
            for (int c = 0; c < V; c++)
                dq[c] = -exp(lp[c]) / exp(lq[c]);
        } else if (beta == 1) {
            d = kl(lq, lp, V);
            klq += d;
            for (int c = 0; c < V; c++)
                dq[c] = lq[c] + 1 - lp[c];
        } else {
            double a = kl(lp, lm, V), q = kl(lq, lm, V);
            d = beta * a + (1 - beta) * q;
            klp += a;
            klq += q;
            for (int c = 0; c < V; c++) {
                double pc = exp(lp[c]), qc = exp(lq[c]), mc = exp(lm[c]);
                dq[c] = -beta * pc * (1 - beta) / mc
                        + (1 - beta) * (lq[c] - lm[c] + 1)
                        - (1 - beta) * qc * (1 - beta) / mc;
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
    free(lm);
    free(dq);
    if (klp_out)
        *klp_out = n ? klp / n : 0;
    if (klq_out)
        *klq_out = n ? klq / n : 0;
    return n ? loss / n : 0;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL);
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

/* Run the plugin on k with beta and T; labels only when with_labels; no
   gradient requested when want_grad is false. */
static int run_full(struct case_ *k, bool with_labels, bool want_grad,
                    double beta, double T, double *loss, double *terms)
{
    char sb[64], st[64];
    const char *sets[2] = {sb, st};
    struct th_input in[3] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {k->B, k->V}, k->zs,
         want_grad ? k->grad : NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {k->B, k->V}, k->zt, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {k->B}, k->y, NULL},
    };
    snprintf(sb, sizeof sb, "beta=%.17g", beta);
    snprintf(st, sizeof st, "temperature=%.17g", T);
    return th_run("jsd", sets, 2, in, with_labels ? 3 : 2, loss, terms, 2);
}

static int run_case(struct case_ *k, bool with_labels, double beta, double T,
                    double *loss, double *terms)
{
    return run_full(k, with_labels, true, beta, T, loss, terms);
}

/* With spiky set, check_full gives every row two large logits that
   student and teacher weigh the other way round: most of the mass sits
   there, so that the gradient has elements of order 0.1 to check even
   when V is large (uniform logits spread it to ~1/V). */
static bool spiky;

/* With rising set, check_full adds a ramp from -40 to 40 along every row
   (the teacher's a little steeper): on CPU devices, which take a row in
   blocks and raise the exps' reference maximum block by block, every
   block raises it, and the first blocks' exps end up ~e^-80 of the
   last's. */
static bool rising;

static void add_ramp(struct case_ *k)
{
    for (int b = 0; b < k->B; b++)
        for (int j = 0; j < k->V; j++) {
            const double x = -40.0 + 80.0 * j / (k->V - 1);
            k->zs[(size_t)b * k->V + j] += (float)x;
            k->zt[(size_t)b * k->V + j] += (float)(1.05 * x);
        }
}

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
static void check_full(int B, int V, double beta, double T, double range,
                       bool labels, const int *masked, uint64_t seed)
{
    struct case_ k;
    double loss, terms[2], klp, klq, want;
    size_t n = (size_t)B * V;
    double *zs = malloc(sizeof(double) * n), *zt = malloc(sizeof(double) * n),
           *g = malloc(sizeof(double) * n);
    struct ref r;

    make_case(&k, B, V, -range, range, seed);
    if (spiky)
        add_spikes(&k);
    if (rising)
        add_ramp(&k);
    for (int i = 0; masked && masked[i] >= 0; i++)
        k.y[masked[i]] = -100;
    th_to_double(k.zs, zs, n);
    th_to_double(k.zt, zt, n);
    r = (struct ref){B, V, zt, labels ? k.y : NULL, beta, T};
    cr_assert_eq(run_case(&k, labels, beta, T, &loss, terms), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, zs, &klp, &klq, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[0], klp, 1e-6, 1e-4, "kl_teacher");
    th_assert_close1(terms[1], klq, 1e-6, 1e-4, "kl_student");
    th_assert_close(k.grad, g, n, 1e-5, 1e-4, "grad");
    free_case(&k);
    free(zs);
    free(zt);
    free(g);
}

static void check(int B, int V, double beta, double T, uint64_t seed)
{
    check_full(B, V, beta, T, 30, false, NULL, seed);
}

/* ---------------------------------------------------------------------- */

Test(jsd, matches_reference_default_beta)
{
    static const int masked[] = {1, 5, -1};
    check(8, 37, 0.5, 1.0, 1);
    check_full(8, 37, 0.5, 1.0, 30, true, masked, 2);
}

Test(jsd, matches_reference_other_betas)
{
    check(5, 19, 0.1, 1.0, 3);
    check(5, 19, 0.9, 2.0, 4);
    check(5, 19, 0.3, 1.0, 5);
    check(5, 19, 1e-3, 1.0, 6);
}

Test(jsd, matches_reference_temperature)
{
    check(6, 29, 0.5, 4.0, 7);
    check(6, 29, 0.0, 2.5, 8);
    check(6, 29, 1.0, 2.5, 9);
    /* T < 1 sharpens: logits in [-15, 15] keep z / T in [-30, 30] */
    check_full(6, 29, 0.5, 0.5, 15, false, NULL, 10);
}

Test(jsd, matches_reference_wide_rows)
{
    /* V much larger than a work-group (GPUs) and than a float16 chunk
       (CPUs): a partial last chunk (5000 = 312 * 16 + 8), none (2048),
       several chunks per item (3077), fewer columns than items (7, 100) */
    static const int masked[] = {1, -1};
    if (th_small()) {
        check(2, 300, 0.5, 1.0, 11);
        return;
    }
    check(3, 5000, 0.5, 1.0, 11);
    check_full(3, 5000, 0.0, 2.0, 30, true, masked, 12);
    check(3, 5000, 1.0, 1.0, 13);
    check(2, 2048, 0.5, 1.0, 14);
    check(2, 3077, 0.7, 1.0, 15);
    check(4, 7, 0.5, 1.0, 16);
    check(4, 100, 0.5, 1.0, 17);
}

Test(jsd, matches_reference_huge_vocabulary)
{
    /* 140000 floats per row are more than the row copy a CPU device keeps
       in local memory (half of PoCL's 1 MiB): the other code path */
    if (th_small())
        return;
    check(2, 140000, 0.5, 1.0, 18);
    check(2, 140000, 1.0, 1.0, 19);
    check(2, 140000, 0.0, 1.0, 20);
    spiky = true;
    check_full(2, 140000, 0.5, 1.0, 10, false, NULL, 25);
    check_full(2, 140000, 1.0, 2.0, 10, false, NULL, 26);
    check_full(2, 140000, 0.0, 1.0, 10, false, NULL, 27);
}

Test(jsd, matches_reference_rising_rows)
{
    rising = true;
    check_full(2, 5000, 0.5, 1.0, 2, false, NULL, 28);
    check_full(2, 20000, 0.0, 2.0, 2, false, NULL, 29);
    check_full(2, 20000, 1.0, 1.0, 2, false, NULL, 30);
    rising = false;
}

Test(jsd, single_row)
{
    check(1, 10, 0.5, 2.0, 21);
    check(1, 10, 0.0, 1.0, 22);
    check(1, 10, 1.0, 1.0, 23);
}

Test(jsd, beta_end_points_are_forward_and_reverse_kl)
{
    const int B = 4, V = 33;
    struct case_ k;
    double loss, terms[2], zs[4 * 33], zt[4 * 33];

    make_case(&k, B, V, -30, 30, 24);
    th_to_double(k.zs, zs, (size_t)B * V);
    th_to_double(k.zt, zt, (size_t)B * V);
    /* beta = 0: KL(p_t || p_s); gradient (p_s - p_t) / (T B) */
    cr_assert_eq(run_case(&k, false, 0.0, 2.0, &loss, terms), KDCL_OK);
    th_assert_close1(loss, plain_kl(zt, zs, B, V, 2.0), 1e-6, 1e-4,
                     "beta=0 loss");
    th_assert_close1(terms[0], loss, 1e-7, 1e-6, "kl_teacher at beta=0");
    cr_assert(terms[1] == 0.0, "kl_student at beta=0 is %g", terms[1]);
    {
        double g[4 * 33], ls[33], lt[33];
        for (int b = 0; b < B; b++) {
            log_softmax(zs + b * V, V, 0.5, ls);
            log_softmax(zt + b * V, V, 0.5, lt);
            for (int c = 0; c < V; c++)
                g[b * V + c] = (exp(ls[c]) - exp(lt[c])) / (2.0 * B);
        }
        th_assert_close(k.grad, g, (size_t)B * V, 1e-5, 1e-4,
                        "beta=0 grad");
    }
    /* beta = 1: KL(p_s || p_t) */
    cr_assert_eq(run_case(&k, false, 1.0, 2.0, &loss, terms), KDCL_OK);
    th_assert_close1(loss, plain_kl(zs, zt, B, V, 2.0), 1e-6, 1e-4,
                     "beta=1 loss");
    th_assert_close1(terms[1], loss, 1e-7, 1e-6, "kl_student at beta=1");
    cr_assert(terms[0] == 0.0, "kl_teacher at beta=1 is %g", terms[0]);
    /* and not the mixture's limit, which vanishes */
    cr_assert(loss > 1.0, "beta=1 loss %g", loss);
    free_case(&k);
}

Test(jsd, gradient_matches_finite_differences)
{
    static const double betas[] = {0.5, 0.0, 1.0, 0.2};
    const int B = 3, V = 7;
    for (int i = 0; i < 4; i++) {
        struct case_ k;
        double loss, terms[2], zs[21], zt[21], g[21];
        struct ref r;

        make_case(&k, B, V, -3, 3, 31 + i);
        k.y[1] = -100;
        th_to_double(k.zs, zs, 21);
        th_to_double(k.zt, zt, 21);
        r = (struct ref){B, V, zt, k.y, betas[i], 2.0};
        cr_assert_eq(run_case(&k, true, betas[i], 2.0, &loss, terms),
                     KDCL_OK);
        th_fd_grad(ref_fn, &r, zs, 21, 1e-5, g);
        th_assert_close(k.grad, g, 21, 1e-6, 1e-4,
                        "grad vs finite differences");

        /* and the device's own loss, perturbed in float32 (coarse) */
        for (int j = 0; j < 21; j += 4) {
            const float h = 1e-2f, x0 = k.zs[j];
            double lp, lm, gj = k.grad[j];
            k.zs[j] = x0 + h;
            cr_assert_eq(run_case(&k, true, betas[i], 2.0, &lp, terms),
                         KDCL_OK);
            k.zs[j] = x0 - h;
            cr_assert_eq(run_case(&k, true, betas[i], 2.0, &lm, terms),
                         KDCL_OK);
            k.zs[j] = x0;
            th_assert_close1(gj, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                             "device finite difference");
        }
        free_case(&k);
    }
}

Test(jsd, masked_rows_get_zero_gradient_and_do_not_count)
{
    const int B = 6, V = 40;
    struct case_ k, sub;
    double loss, terms[2], sub_loss, sub_terms[2];
    int keep[] = {0, 2, 3};

    make_case(&k, B, V, -30, 30, 41);
    k.y[1] = k.y[4] = k.y[5] = -100;
    for (int i = 0; i < B * V; i++)
        k.grad[i] = NAN;
    cr_assert_eq(run_case(&k, true, 0.5, 1.5, &loss, terms), KDCL_OK);
    /* the same three rows alone, without labels */
    make_case(&sub, 3, V, 0, 1, 42);
    for (int i = 0; i < 3; i++) {
        memcpy(sub.zs + i * V, k.zs + keep[i] * V, sizeof(float) * V);
        memcpy(sub.zt + i * V, k.zt + keep[i] * V, sizeof(float) * V);
    }
    cr_assert_eq(run_case(&sub, false, 0.5, 1.5, &sub_loss, sub_terms),
                 KDCL_OK);
    th_assert_close1(loss, sub_loss, 1e-7, 1e-5, "loss over valid rows");
    for (int i = 0; i < 3; i++)
        for (int c = 0; c < V; c++)
            cr_assert(fabsf(k.grad[keep[i] * V + c] - sub.grad[i * V + c])
                          <= 1e-7f + 1e-5f * fabsf(sub.grad[i * V + c]),
                      "valid row %d grad[%d]", keep[i], c);
    for (int b = 1; b < B; b += (b == 1 ? 3 : 1))
        for (int c = 0; c < V; c++)
            cr_assert(k.grad[b * V + c] == 0.0f, "masked row %d grad[%d] = %g",
                      b, c, k.grad[b * V + c]);
    free_case(&sub);
    free_case(&k);
}

Test(jsd, all_rows_masked_give_zero)
{
    static const double betas[] = {0.5, 0.0, 1.0};
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 3, 50, -5, 5, 43);
    for (int b = 0; b < 3; b++)
        k.y[b] = -100;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run_case(&k, true, betas[i], 1.0, &loss, terms),
                     KDCL_OK);
        cr_assert(loss == 0.0 && terms[0] == 0.0 && terms[1] == 0.0,
                  "loss %g", loss);
        for (int j = 0; j < 150; j++)
            cr_assert(k.grad[j] == 0.0f, "grad[%d] = %g", j, k.grad[j]);
    }
    free_case(&k);
}

Test(jsd, forward_without_gradient)
{
    /* no gradient requested: the loss alone, computed another way; small
       logits, so that padding lanes of a partial chunk would show */
    static const double betas[] = {0.5, 0.0, 1.0};
    for (int i = 0; i < 3; i++) {
        struct case_ k;
        double loss, terms[2], zs[5 * 300], zt[5 * 300], want;
        struct ref r;
        make_case(&k, 5, 300, -2, 2, 44 + i);
        k.y[2] = -100;
        th_to_double(k.zs, zs, 1500);
        th_to_double(k.zt, zt, 1500);
        r = (struct ref){5, 300, zt, k.y, betas[i], 1.5};
        cr_assert_eq(run_full(&k, true, false, betas[i], 1.5, &loss, terms),
                     KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
        want = ref_loss(&r, zs, NULL, NULL, NULL);
        th_assert_close1(loss, want, 1e-6, 1e-4, "loss without gradient");
        free_case(&k);
    }
}

Test(jsd, deterministic_bitwise)
{
    static const double betas[] = {0.5, 0.0, 1.0};
    int B = th_small() ? 4 : 64, V = th_small() ? 100 : 1000;
    struct case_ k;
    float *g1 = malloc(sizeof(float) * B * V);
    make_case(&k, B, V, -10, 10, 51);
    k.y[3] = -100;
    for (int i = 0; i < 3; i++) {
        double l1, l2, t1[2], t2[2];
        cr_assert_eq(run_case(&k, true, betas[i], 1.0, &l1, t1), KDCL_OK);
        memcpy(g1, k.grad, sizeof(float) * B * V);
        cr_assert_eq(run_case(&k, true, betas[i], 1.0, &l2, t2), KDCL_OK);
        cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g",
                  l1, l2);
        cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ");
        cr_assert(memcmp(g1, k.grad, sizeof(float) * B * V) == 0,
                  "gradients differ between runs");
    }
    free(g1);
    free_case(&k);
}

Test(jsd, extreme_logits_stay_finite)
{
    static const double betas[] = {0.5, 0.0, 1.0, 1e-6};
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 4, 50, -1e4, 1e4, 61);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(run_case(&k, false, betas[i], 1.0, &loss, terms),
                     KDCL_OK);
        cr_assert(isfinite(loss) && isfinite(terms[0])
                      && isfinite(terms[1]),
                  "beta %g: loss %g", betas[i], loss);
        for (int j = 0; j < 200; j++)
            cr_assert(isfinite(k.grad[j]), "grad[%d] = %g", j, k.grad[j]);
    }
    free_case(&k);
}

Test(jsd, identical_logits_give_zero)
{
    static const double betas[] = {0.5, 0.0, 1.0, 0.9};
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 6, 113, -20, 20, 71);
    memcpy(k.zt, k.zs, sizeof(float) * 6 * 113);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(run_case(&k, false, betas[i], 1.0, &loss, terms),
                     KDCL_OK);
        cr_assert(fabs(loss) < 1e-6, "beta %g: loss %g", betas[i], loss);
        for (int j = 0; j < 6 * 113; j++)
            cr_assert(fabs(k.grad[j]) < 1e-7, "beta %g: grad[%d] = %g",
                      betas[i], j, k.grad[j]);
    }
    free_case(&k);
}

Test(jsd, identical_logits_give_zero_huge_vocabulary)
{
    /* the path without a row copy in local memory (see above) */
    static const double betas[] = {0.5, 0.0, 1.0};
    struct case_ k;
    double loss, terms[2];
    if (th_small())
        return;
    make_case(&k, 1, 140000, -20, 20, 74);
    memcpy(k.zt, k.zs, sizeof(float) * 140000);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(run_case(&k, false, betas[i], 1.0, &loss, terms),
                     KDCL_OK);
        cr_assert(fabs(loss) < 1e-6, "beta %g: loss %g", betas[i], loss);
        for (int j = 0; j < 140000; j++)
            cr_assert(fabs(k.grad[j]) < 1e-7, "beta %g: grad[%d] = %g",
                      betas[i], j, k.grad[j]);
    }
    free_case(&k);
}

Test(jsd, one_column_gives_zero)
{
    struct case_ k;
    double loss, terms[2];
    make_case(&k, 3, 1, -5, 5, 72);
    cr_assert_eq(run_case(&k, false, 0.5, 1.0, &loss, terms), KDCL_OK);
    cr_assert(fabs(loss) < 1e-7, "loss %g", loss);
    for (int j = 0; j < 3; j++)
        cr_assert(fabs(k.grad[j]) < 1e-7, "grad[%d] = %g", j, k.grad[j]);
    free_case(&k);
}

Test(jsd, rejects_mismatched_shapes)
{
    th_logitpair_rejects_mismatched_shapes("jsd");
}

Test(jsd, rejects_non_2d_logits)
{
    th_logitpair_rejects_non_2d_logits("jsd");
}

Test(jsd, rejects_missing_teacher)
{
    th_logitpair_rejects_missing_teacher("jsd");
}

Test(jsd, rejects_bad_labels)
{
    th_logitpair_rejects_bad_labels("jsd");
}

Test(jsd, rejects_beta_out_of_range)
{
    float zs[6] = {0};
    double loss, t[2];
    const char *bad[] = {"beta=1.5", "beta=-0.1", "temperature=0"};
    struct th_input in[2] = {
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
        {"teacher.logits", KDCL_DTYPE_F32, 2, {2, 3}, zs, NULL},
    };
    for (int i = 0; i < 3; i++)
        cr_assert_neq(th_run("jsd", &bad[i], 1, in, 2, &loss, t, 2), KDCL_OK,
                      "%s accepted", bad[i]);
}

/* `kdcl loss` end to end: printed values equal the reference and the
   recorded golden values; the gradient file equals the reference. */
Test(jsd, cli_golden_values)
{
    struct case_ k;
    char s[512], t[512], y[512], g[512], args[4096], out[4096], err[4096];
    const int64_t shape[2] = {4, 10};
    double zs[40], zt[40], gr[40], klp, klq, want;
    struct ref r;

    make_case(&k, 4, 10, -5, 5, 81);
    k.y[2] = -100;
    snprintf(s, sizeof s, "%s/s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/t.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/g.npy", th_tmpdir());
    th_npy_f32(s, k.zs, 2, shape);
    th_npy_f32(t, k.zt, 2, shape);
    th_npy_i32(y, k.y, 1, shape);
    snprintf(args, sizeof args,
             "loss --plugin jsd --student %s --teacher %s --labels %s "
             "--set beta=0.3 --set temperature=2 --grad-out %s",
             s, t, y, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.zs, zs, 40);
    th_to_double(k.zt, zt, 40);
    r = (struct ref){4, 10, zt, k.y, 0.3, 2.0};
    want = ref_loss(&r, zs, &klp, &klq, gr);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term kl_teacher"), klp, 1e-6, 1e-4,
                     "kl_teacher");
    th_assert_close1(th_parse_value(out, "term kl_student"), klq, 1e-6, 1e-4,
                     "kl_student");
    /* Golden value recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 0.24745025, 0, 1e-4,
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
            cr_assert(gf[c] == 0.0f, "masked row grad[%d] = %g", c, gf[c]);
    }
    free_case(&k);
}
