/*
 * tests/test-plugin-attention.c - the attention plugin against an
 * independent float64 reference (LOSSES.md `attention`), finite
 * differences, determinism, extreme and degenerate maps, bad input and
 * `kdcl loss` golden values.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXP 4

/* ---------------------------------------------------------------------- */
/* float64 reference, written from LOSSES.md, not from the kernel          */

struct rpair {
    int Cs, Ct, H, W;
    const double *t; /* teacher [B,Ct,H,W] */
};

/* The student maps (pair by pair) and then the logits live in one flat
   vector x, so that finite differences can perturb every student input. */
struct ref {
    int B, n;
    struct rpair pr[MAXP];
    double p, weight, alpha;
    int C;               /* logit classes; 0: no logits */
    const int32_t *y;    /* NULL: no labels */
};

static size_t pair_len(const struct ref *r, int k, int which)
{
    const struct rpair *q = &r->pr[k];
    return (size_t)r->B * (which ? q->Ct : q->Cs) * q->H * q->W;
}

static size_t x_len(const struct ref *r)
{
    size_t n = (size_t)r->B * r->C;
    for (int k = 0; k < r->n; k++)
        n += pair_len(r, k, 0);
    return n;
}

/* f(A) = v / max(||v||, 1e-12), v = mean over channels of |A|^p, per row;
   also returns each row's norm ||v||. */
static void at_map(const double *A, int B, int C, int P, double p, double *f,
                   double *norm)
{
    for (int b = 0; b < B; b++) {
        double ss = 0;
        for (int q = 0; q < P; q++) {
            double v = 0;
            for (int c = 0; c < C; c++)
                v += pow(fabs(A[((size_t)b * C + c) * P + q]), p);
            f[(size_t)b * P + q] = v / C;
            ss += (v / C) * (v / C);
        }
        norm[b] = sqrt(ss);
        for (int q = 0; q < P; q++)
            f[(size_t)b * P + q] /= fmax(norm[b], 1e-12);
    }
}

/* Loss, and ce, kd and the gradient (laid out like x) when non-NULL. */
static double ref_loss(const struct ref *r, const double *x, double *ce_out,
                       double *kd_out, double *grad)
{
    const int B = r->B;
    const int has_ce = r->y != NULL && r->C > 0;
    const double a = has_ce ? r->alpha : 0.0;
    double kd = 0, ce = 0;
    size_t off = 0;

    for (int k = 0; k < r->n; k++) {
        const struct rpair *q = &r->pr[k];
        const int P = q->H * q->W;
        double *fs = malloc(sizeof(double) * B * P),
               *ft = malloc(sizeof(double) * B * P),
               *ns = malloc(sizeof(double) * B),
               *nt = malloc(sizeof(double) * B);
        double sum = 0;
        at_map(x + off, B, q->Cs, P, r->p, fs, ns);
        at_map(q->t, B, q->Ct, P, r->p, ft, nt);
        for (int i = 0; i < B * P; i++)
            sum += (fs[i] - ft[i]) * (fs[i] - ft[i]);
        kd += r->weight * sum / ((double)B * P);
        if (grad) {
            for (int b = 0; b < B; b++) {
                double *gf = malloc(sizeof(double) * P), dot = 0;
                for (int i = 0; i < P; i++) {
                    size_t j = (size_t)b * P + i;
                    gf[i] = (1 - a) * r->weight * 2 * (fs[j] - ft[j])
                            / ((double)B * P);
                    dot += gf[i] * fs[j];
                }
                for (int i = 0; i < P; i++) {
                    /* dL/dv through f = v / max(||v||, eps) */
                    double dv = ns[b] >= 1e-12
                                    ? (gf[i] - fs[(size_t)b * P + i] * dot)
                                          / ns[b]
                                    : gf[i] / 1e-12;
                    for (int c = 0; c < q->Cs; c++) {
                        size_t e = ((size_t)b * q->Cs + c) * P + i;
                        double A = x[off + e];
                        grad[off + e] =
                            A == 0 ? 0
                                   : dv * r->p * pow(fabs(A), r->p - 1)
                                         * (A > 0 ? 1 : -1) / q->Cs;
                    }
                }
                free(gf);
            }
        }
        off += pair_len(r, k, 0);
        free(fs);
        free(ft);
        free(ns);
        free(nt);
    }
    if (r->C > 0) {
        const double *z = x + off;
        for (int b = 0; b < B; b++) {
            const double *zb = z + (size_t)b * r->C;
            double m = -INFINITY, s = 0, lse;
            for (int c = 0; c < r->C; c++)
                m = fmax(m, zb[c]);
            for (int c = 0; c < r->C; c++)
                s += exp(zb[c] - m);
            lse = m + log(s);
            if (has_ce)
                ce += lse - zb[r->y[b]];
            if (grad)
                for (int c = 0; c < r->C; c++)
                    grad[off + (size_t)b * r->C + c] =
                        has_ce ? a * (exp(zb[c] - lse) - (c == r->y[b])) / B
                               : 0.0;
        }
        ce /= B;
    }
    if (ce_out)
        *ce_out = ce;
    if (kd_out)
        *kd_out = kd;
    return has_ce ? a * ce + (1 - a) * kd : kd;
}

static double ref_fn(const double *x, void *user)
{
    return ref_loss(user, x, NULL, NULL, NULL);
}

/* ---------------------------------------------------------------------- */
/* Cases                                                                   */

struct shp {
    int Cs, Ct, H, W;
};

struct case_ {
    int B, n, C;
    int indexed; /* names student.feat.K (else the plain names, n = 1) */
    struct shp sh[MAXP];
    float *s[MAXP], *t[MAXP], *g[MAXP];
    float *z, *gz;
    int32_t *y;
    char sname[MAXP][32], tname[MAXP][32];
};

static void make_case(struct case_ *k, int B, int n, const struct shp *sh,
                      int C, double lo, double hi, uint64_t seed)
{
    memset(k, 0, sizeof *k);
    k->B = B;
    k->n = n;
    k->C = C;
    k->indexed = n > 1;
    for (int i = 0; i < n; i++) {
        size_t ns = (size_t)B * sh[i].Cs * sh[i].H * sh[i].W;
        size_t nt = (size_t)B * sh[i].Ct * sh[i].H * sh[i].W;
        k->sh[i] = sh[i];
        k->s[i] = malloc(sizeof(float) * ns);
        k->t[i] = malloc(sizeof(float) * nt);
        k->g[i] = malloc(sizeof(float) * ns);
        th_fill_uniform(k->s[i], ns, lo, hi, seed + 10 * i);
        th_fill_uniform(k->t[i], nt, lo, hi, seed + 10 * i + 1);
    }
    if (C > 0) {
        k->z = malloc(sizeof(float) * B * C);
        k->gz = malloc(sizeof(float) * B * C);
        k->y = malloc(sizeof(int32_t) * B);
        th_fill_uniform(k->z, (size_t)B * C, lo, hi, seed + 100);
        th_fill_labels(k->y, (size_t)B, C, seed + 101);
    }
}

static void free_case(struct case_ *k)
{
    for (int i = 0; i < k->n; i++) {
        free(k->s[i]);
        free(k->t[i]);
        free(k->g[i]);
    }
    free(k->z);
    free(k->gz);
    free(k->y);
}

/* Run the plugin; logits when the case has them, labels when asked. */
static int run_case(struct case_ *k, bool labels, const char *const *sets,
                    size_t n_sets, double *loss, double *terms)
{
    struct th_input in[2 * MAXP + 2];
    size_t n = 0;
    for (int i = 0; i < k->n; i++) {
        const struct shp *s = &k->sh[i];
        if (k->indexed) {
            snprintf(k->sname[i], 32, "student.feat.%d", i);
            snprintf(k->tname[i], 32, "teacher.feat.%d", i);
        } else {
            snprintf(k->sname[i], 32, "student.feat");
            snprintf(k->tname[i], 32, "teacher.feat");
        }
        in[n++] = (struct th_input){k->sname[i], KDCL_DTYPE_F32, 4,
                                    {k->B, s->Cs, s->H, s->W}, k->s[i],
                                    k->g[i]};
        in[n++] = (struct th_input){k->tname[i], KDCL_DTYPE_F32, 4,
                                    {k->B, s->Ct, s->H, s->W}, k->t[i],
                                    NULL};
    }
    if (k->C > 0)
        in[n++] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2,
                                    {k->B, k->C}, k->z, k->gz};
    if (k->C > 0 && labels)
        in[n++] = (struct th_input){"labels", KDCL_DTYPE_I32, 1, {k->B},
                                    k->y, NULL};
    return th_run("attention", sets, n_sets, in, n, loss, terms, 2);
}

/* The case as a reference plus its flat student vector x (caller frees
   x and the teacher copies through free_ref). */
static double *make_ref(const struct case_ *k, struct ref *r, double p,
                        double weight, double alpha, bool labels)
{
    double *x;
    size_t off = 0;
    memset(r, 0, sizeof *r);
    r->B = k->B;
    r->n = k->n;
    r->p = p;
    r->weight = weight;
    r->alpha = alpha;
    r->C = k->C;
    r->y = labels ? k->y : NULL;
    for (int i = 0; i < k->n; i++) {
        size_t nt = (size_t)k->B * k->sh[i].Ct * k->sh[i].H * k->sh[i].W;
        double *t = malloc(sizeof(double) * nt);
        th_to_double(k->t[i], t, nt);
        r->pr[i] = (struct rpair){k->sh[i].Cs, k->sh[i].Ct, k->sh[i].H,
                                  k->sh[i].W, t};
    }
    x = malloc(sizeof(double) * x_len(r));
    for (int i = 0; i < k->n; i++) {
        size_t ns = pair_len(r, i, 0);
        th_to_double(k->s[i], x + off, ns);
        off += ns;
    }
    if (k->C > 0)
        th_to_double(k->z, x + off, (size_t)k->B * k->C);
    return x;
}

static void free_ref(struct ref *r)
{
    for (int i = 0; i < r->n; i++)
        free((double *)r->pr[i].t);
}

/* Compare every gradient the plugin wrote with g (laid out like x). */
static void check_grads(const struct case_ *k, const struct ref *r,
                        const double *g, double atol, double rtol,
                        const char *what)
{
    size_t off = 0;
    char name[96];
    for (int i = 0; i < k->n; i++) {
        size_t ns = pair_len(r, i, 0);
        snprintf(name, sizeof name, "%s %s", what, k->sname[i]);
        th_assert_close(k->g[i], g + off, ns, atol, rtol, name);
        off += ns;
    }
    if (k->C > 0) {
        snprintf(name, sizeof name, "%s student.logits", what);
        th_assert_close(k->gz, g + off, (size_t)k->B * k->C, atol, rtol,
                        name);
    }
}

static void check_against_reference(int B, int n, const struct shp *sh,
                                    int C, double p, double alpha,
                                    bool labels, double lo, double hi,
                                    uint64_t seed)
{
    struct case_ k;
    struct ref r;
    char sp[64], sa[64];
    const char *sets[2] = {sp, sa};
    double loss, terms[2], ce, kd, want, *x, *g;

    make_case(&k, B, n, sh, C, lo, hi, seed);
    x = make_ref(&k, &r, p, 1000.0, alpha, labels);
    g = malloc(sizeof(double) * x_len(&r));
    snprintf(sp, sizeof sp, "p=%.17g", p);
    snprintf(sa, sizeof sa, "alpha=%.17g", alpha);
    cr_assert_eq(run_case(&k, labels, sets, labels ? 2 : 1, &loss, terms),
                 KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], kd, 1e-6, 1e-4, "kd");
    th_assert_close1(terms[0], ce, 1e-6, 1e-4, "ce");
    check_grads(&k, &r, g, 1e-5, 1e-4, "grad");
    free(x);
    free(g);
    free_ref(&r);
    free_case(&k);
}

/* ---------------------------------------------------------------------- */

Test(attention, matches_reference_one_pair)
{
    const struct shp sh[] = {{3, 5, 4, 6}};
    check_against_reference(4, 1, sh, 0, 2.0, 0.1, false, -30, 30, 1);
}

Test(attention, matches_reference_several_pairs)
{
    const struct shp sh[] = {{3, 5, 4, 6}, {8, 2, 2, 3}, {1, 1, 7, 1}};
    check_against_reference(3, 3, sh, 0, 2.0, 0.1, false, -30, 30, 2);
}

Test(attention, matches_reference_with_labels)
{
    const struct shp sh[] = {{4, 6, 3, 3}, {2, 3, 5, 4}};
    check_against_reference(5, 2, sh, 11, 2.0, 0.3, true, -30, 30, 3);
    check_against_reference(5, 2, sh, 11, 2.0, 1.0, true, -30, 30, 4);
    check_against_reference(5, 2, sh, 11, 2.0, 0.0, true, -30, 30, 5);
}

Test(attention, matches_reference_other_exponents)
{
    /* Non-integer p on signed maps: |A|^p (see docs/plugins.md, attention). */
    const struct shp sh[] = {{3, 4, 4, 5}};
    const double ps[] = {1.0, 0.5, 2.5, 3.0, 4.0};
    for (int i = 0; i < 5; i++)
        check_against_reference(3, 1, sh, 0, ps[i], 0.1, false, -30, 30,
                                10 + i);
}

Test(attention, matches_reference_wide_maps)
{
    /* H*W and channels much larger than a work-group. */
    if (th_small()) {
        const struct shp sh[] = {{3, 4, 10, 12}};
        check_against_reference(2, 1, sh, 0, 2.0, 0.1, false, -30, 30, 20);
    } else {
        const struct shp sh[] = {{96, 130, 40, 50}};
        check_against_reference(2, 1, sh, 0, 2.0, 0.1, false, -30, 30, 20);
    }
}

Test(attention, single_row)
{
    const struct shp sh[] = {{2, 3, 3, 4}, {5, 1, 1, 1}};
    check_against_reference(1, 2, sh, 7, 2.0, 0.2, true, -30, 30, 30);
}

Test(attention, gradient_matches_finite_differences)
{
    const struct shp sh[] = {{2, 3, 3, 2}, {3, 2, 2, 2}};
    const char *sets[] = {"alpha=0.2"};
    struct case_ k;
    struct ref r;
    double loss, terms[2], *x, *g;
    size_t n;

    make_case(&k, 2, 2, sh, 5, -3, 3, 40);
    x = make_ref(&k, &r, 2.0, 1000.0, 0.2, true);
    n = x_len(&r);
    g = malloc(sizeof(double) * n);
    cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    th_fd_grad(ref_fn, &r, x, n, 1e-6, g);
    check_grads(&k, &r, g, 1e-5, 1e-4, "grad vs finite differences");

    /* Non-integer p too (the reference's derivative of |A|^p). */
    {
        const char *sets2[] = {"alpha=0.2", "p=1.5"};
        double *g2 = malloc(sizeof(double) * n);
        r.p = 1.5;
        cr_assert_eq(run_case(&k, true, sets2, 2, &loss, terms), KDCL_OK);
        th_fd_grad(ref_fn, &r, x, n, 1e-6, g2);
        check_grads(&k, &r, g2, 1e-5, 1e-4, "p=1.5 grad vs finite diff");
        free(g2);
    }

    /* And the device's own loss, perturbed in float32 (coarse). */
    cr_assert_eq(run_case(&k, true, sets, 1, &loss, terms), KDCL_OK);
    /* pair 0 is [2,2,3,2]: 24 values */
    for (int i = 0; i < 24; i += 3) {
        const float h = 1e-2f, x0 = k.s[0][i];
        double lp, lm, gi = k.g[0][i];
        float *keep = malloc(sizeof(float) * 24);
        memcpy(keep, k.g[0], sizeof(float) * 24);
        k.s[0][i] = x0 + h;
        cr_assert_eq(run_case(&k, true, sets, 1, &lp, terms), KDCL_OK);
        k.s[0][i] = x0 - h;
        cr_assert_eq(run_case(&k, true, sets, 1, &lm, terms), KDCL_OK);
        k.s[0][i] = x0;
        memcpy(k.g[0], keep, sizeof(float) * 24);
        free(keep);
        th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-2, 2e-2,
                         "device finite difference");
    }
    free(x);
    free(g);
    free_ref(&r);
    free_case(&k);
}

Test(attention, deterministic_bitwise)
{
    const struct shp sh[] = {{16, 32, 16, 16}, {8, 8, 9, 7}};
    const struct shp sm[] = {{4, 6, 6, 6}, {2, 3, 3, 5}};
    struct case_ k;
    double l1, l2, t1[2], t2[2];
    float *g1[2];
    size_t n[2];

    make_case(&k, th_small() ? 3 : 16, 2, th_small() ? sm : sh, 10, -10, 10,
              50);
    cr_assert_eq(run_case(&k, true, NULL, 0, &l1, t1), KDCL_OK);
    for (int i = 0; i < 2; i++) {
        n[i] = (size_t)k.B * k.sh[i].Cs * k.sh[i].H * k.sh[i].W;
        g1[i] = malloc(sizeof(float) * n[i]);
        memcpy(g1[i], k.g[i], sizeof(float) * n[i]);
    }
    cr_assert_eq(run_case(&k, true, NULL, 0, &l2, t2), KDCL_OK);
    cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g", l1,
              l2);
    cr_assert(memcmp(t1, t2, sizeof t1) == 0, "terms differ between runs");
    for (int i = 0; i < 2; i++) {
        cr_assert(memcmp(g1[i], k.g[i], sizeof(float) * n[i]) == 0,
                  "gradients of pair %d differ between runs", i);
        free(g1[i]);
    }
    free_case(&k);
}

Test(attention, extreme_inputs_stay_finite)
{
    const struct shp sh[] = {{4, 6, 5, 5}};
    const char *p4[] = {"p=4"};
    struct case_ k;
    double loss, terms[2];
    size_t n = 3 * 4 * 25;
    make_case(&k, 3, 1, sh, 7, -1e4, 1e4, 60);
    for (int pass = 0; pass < 2; pass++) {
        cr_assert_eq(run_case(&k, true, pass ? p4 : NULL, pass, &loss, terms),
                     KDCL_OK, "%s", kdcl_context_errmsg(th_ctx()));
        cr_assert(isfinite(loss) && isfinite(terms[0]) && isfinite(terms[1]),
                  "loss %g", loss);
        for (size_t i = 0; i < n; i++)
            cr_assert(isfinite(k.g[0][i]), "grad[%zu] = %g", i, k.g[0][i]);
    }
    /* p = 4 at 1e4: |A|^p = 1e16, still against the reference. */
    {
        struct ref r;
        double *x = make_ref(&k, &r, 4.0, 1000.0, 0.5, true), kd, ce,
               *g = malloc(sizeof(double) * x_len(&r));
        double want = ref_loss(&r, x, &ce, &kd, g);
        th_assert_close1(loss, want, 1e-6, 1e-4, "p=4 loss at 1e4");
        check_grads(&k, &r, g, 1e-5, 1e-4, "p=4 grad at 1e4");
        free(x);
        free(g);
        free_ref(&r);
    }
    free_case(&k);
}

Test(attention, identical_attention_gives_zero)
{
    const struct shp sh[] = {{3, 6, 4, 5}};
    const struct shp same[] = {{3, 3, 4, 5}};
    struct case_ k;
    double loss, terms[2];
    size_t per = 3 * 20;

    /* The same maps: bitwise the same f, exactly zero. */
    make_case(&k, 2, 1, same, 0, -5, 5, 70);
    memcpy(k.t[0], k.s[0], sizeof(float) * 2 * per);
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(loss == 0.0, "loss %g", loss);
    for (size_t i = 0; i < 2 * per; i++)
        cr_assert(k.g[0][i] == 0.0f, "grad[%zu] = %g", i, k.g[0][i]);
    free_case(&k);

    /* The teacher repeats the student's channels twice: the same mean over
       channels, so f_S = f_T up to float rounding of the channel sums. */
    make_case(&k, 2, 1, sh, 0, -5, 5, 71);
    for (int b = 0; b < 2; b++) {
        memcpy(k.t[0] + (size_t)b * 2 * per, k.s[0] + (size_t)b * per,
               sizeof(float) * per);
        memcpy(k.t[0] + (size_t)b * 2 * per + per, k.s[0] + (size_t)b * per,
               sizeof(float) * per);
    }
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    cr_assert(fabs(loss) < 1e-9, "loss %g", loss);
    for (size_t i = 0; i < 2 * per; i++)
        cr_assert(fabs(k.g[0][i]) < 1e-6, "grad[%zu] = %g", i, k.g[0][i]);
    free_case(&k);
}

Test(attention, zero_student_map)
{
    /* ||v|| = 0 < 1e-12: f_S = 0, the loss is weight * mean f_T^2 =
       weight / (H*W), and the gradient of |A|^2 at A = 0 is 0. */
    const struct shp sh[] = {{3, 4, 4, 5}};
    struct case_ k;
    struct ref r;
    double loss, terms[2], *x, *g, kd, ce, want;
    make_case(&k, 2, 1, sh, 0, -5, 5, 80);
    memset(k.s[0], 0, sizeof(float) * 2 * 3 * 20);
    x = make_ref(&k, &r, 2.0, 1000.0, 0.1, false);
    g = malloc(sizeof(double) * x_len(&r));
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(want, 1000.0 / 20.0, 1e-9, 1e-9, "reference");
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    for (size_t i = 0; i < 2 * 3 * 20; i++)
        cr_assert(k.g[0][i] == 0.0f, "grad[%zu] = %g", i, k.g[0][i]);
    free(x);
    free(g);
    free_ref(&r);
    free_case(&k);
}

Test(attention, logits_without_labels_do_not_count)
{
    const struct shp sh[] = {{2, 3, 3, 3}};
    struct case_ k;
    struct ref r;
    double loss, terms[2], *x, *g, kd, ce, want;
    make_case(&k, 3, 1, sh, 4, -3, 3, 90);
    x = make_ref(&k, &r, 2.0, 1000.0, 0.1, false);
    g = malloc(sizeof(double) * x_len(&r));
    cr_assert_eq(run_case(&k, false, NULL, 0, &loss, terms), KDCL_OK);
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(loss, want, 1e-6, 1e-4, "loss");
    th_assert_close1(loss, terms[1], 0, 0, "loss = kd");
    for (int i = 0; i < 12; i++)
        cr_assert(k.gz[i] == 0.0f, "logit grad[%d] = %g", i, k.gz[i]);
    free(x);
    free(g);
    free_ref(&r);
    free_case(&k);
}

Test(attention, rejects_hw_mismatch)
{
    float s[2 * 3 * 16] = {0}, t[2 * 3 * 12] = {0};
    double loss, tr[2];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 4, {2, 3, 4, 4}, s, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 4, {2, 3, 4, 3}, t, NULL},
    };
    const char *msg;
    cr_assert_eq(th_run("attention", NULL, 0, in, 2, &loss, tr, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.feat [2,3,4,4]")
                  && strstr(msg, "teacher.feat [2,3,4,3]"),
              "%s", msg);
}

Test(attention, rejects_batch_mismatch_between_pairs)
{
    float s0[2 * 4] = {0}, t0[2 * 4] = {0}, s1[3 * 4] = {0},
          t1[3 * 4] = {0};
    double loss, tr[2];
    struct th_input in[4] = {
        {"student.feat.0", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s0, NULL},
        {"teacher.feat.0", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, t0, NULL},
        {"student.feat.1", KDCL_DTYPE_F32, 4, {3, 1, 2, 2}, s1, NULL},
        {"teacher.feat.1", KDCL_DTYPE_F32, 4, {3, 1, 2, 2}, t1, NULL},
    };
    cr_assert_eq(th_run("attention", NULL, 0, in, 4, &loss, tr, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.feat.1"));
    in[3].shape[0] = 2;
    cr_assert_eq(th_run("attention", NULL, 0, in, 4, &loss, tr, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat.1"));
}

Test(attention, rejects_wrong_rank)
{
    float s[12] = {0}, t[12] = {0};
    double loss, tr[2];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 6}, s, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 4, {2, 1, 2, 3}, t, NULL},
    };
    cr_assert_eq(th_run("attention", NULL, 0, in, 2, &loss, tr, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.feat"));
}

Test(attention, rejects_missing_teacher_of_a_pair)
{
    float s[8] = {0};
    double loss, tr[2];
    struct th_input in[3] = {
        {"student.feat.0", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
        {"teacher.feat.0", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
        {"student.feat.1", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
    };
    cr_assert_eq(th_run("attention", NULL, 0, in, 3, &loss, tr, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat.1"), "%s",
              kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(th_run("attention", NULL, 0, in, 1, &loss, tr, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
}

Test(attention, rejects_alpha_without_labels)
{
    const struct shp sh[] = {{2, 2, 2, 2}};
    const char *sets[] = {"alpha=0.5"};
    struct case_ k;
    double loss, t[2];
    make_case(&k, 2, 1, sh, 3, -1, 1, 100);
    cr_assert_eq(run_case(&k, false, sets, 1, &loss, t), KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    free_case(&k);
}

Test(attention, rejects_labels_without_logits)
{
    float s[8] = {0};
    int32_t y[2] = {0, 1};
    double loss, tr[2];
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {2}, y, NULL},
    };
    cr_assert_eq(th_run("attention", NULL, 0, in, 3, &loss, tr, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

Test(attention, rejects_logits_of_another_batch)
{
    float s[8] = {0}, z[9] = {0};
    double loss, tr[2];
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 4, {2, 1, 2, 2}, s, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {3, 3}, z, NULL},
    };
    cr_assert_eq(th_run("attention", NULL, 0, in, 3, &loss, tr, 2),
                 KDCL_ESHAPE);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

Test(attention, rejects_bad_p)
{
    kdcl_params *p = NULL;
    cr_assert_eq(kdcl_params_init(th_ctx(), th_plugin("attention"), &p),
                 KDCL_OK);
    cr_assert_neq(kdcl_params_set_kv(p, "p=0"), KDCL_OK);
    cr_assert_neq(kdcl_params_set_kv(p, "p=-1"), KDCL_OK);
    cr_assert_eq(kdcl_params_set_kv(p, "p=0.5"), KDCL_OK);
    kdcl_params_free(p);
}

/* Read the n floats at the end of an .npy file. */
static void read_npy_tail(const char *path, float *v, size_t n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s not written", path);
    fseek(f, -(long)(n * sizeof(float)), SEEK_END);
    cr_assert_eq(fread(v, sizeof(float), n, f), n);
    fclose(f);
}

/* `kdcl loss` end to end with two pairs, logits and labels: printed values
   equal the reference and the recorded golden values; the gradient files
   equal the reference. */
Test(attention, cli_golden_values)
{
    const struct shp sh[] = {{3, 4, 3, 4}, {2, 5, 2, 2}};
    struct case_ k;
    struct ref r;
    char f[7][512], args[8192], out[4096], err[4096];
    double *x, *g, ce, kd, want;
    const char *d = th_tmpdir();
    const char *names[7] = {"s0", "t0", "s1", "t1", "z", "y", "g"};

    make_case(&k, 3, 2, sh, 6, -5, 5, 110);
    for (int i = 0; i < 7; i++)
        snprintf(f[i], sizeof f[i], "%s/at_%s.npy", d, names[i]);
    for (int i = 0; i < 2; i++) {
        const int64_t ss[4] = {3, sh[i].Cs, sh[i].H, sh[i].W};
        const int64_t ts[4] = {3, sh[i].Ct, sh[i].H, sh[i].W};
        th_npy_f32(f[2 * i], k.s[i], 4, ss);
        th_npy_f32(f[2 * i + 1], k.t[i], 4, ts);
    }
    {
        const int64_t zs[2] = {3, 6}, ys[1] = {3};
        th_npy_f32(f[4], k.z, 2, zs);
        th_npy_i32(f[5], k.y, 1, ys);
    }
    snprintf(args, sizeof args,
             "loss --plugin attention --input student.feat.0=%s "
             "--input teacher.feat.0=%s --input student.feat.1=%s "
             "--input teacher.feat.1=%s --input student.logits=%s "
             "--labels %s --set alpha=0.25 --set weight=500 "
             "--grad-out student.feat.0=%s.0 --grad-out student.feat.1=%s.1 "
             "--grad-out student.logits=%s.z",
             f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[6], f[6]);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    k.indexed = 1;
    snprintf(k.sname[0], 32, "student.feat.0");
    snprintf(k.sname[1], 32, "student.feat.1");
    x = make_ref(&k, &r, 2.0, 500.0, 0.25, true);
    g = malloc(sizeof(double) * x_len(&r));
    want = ref_loss(&r, x, &ce, &kd, g);
    th_assert_close1(th_parse_value(out, "loss"), want, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), kd, 1e-6, 1e-4, "kd");
    /* Golden values recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 41.9108312, 0, 1e-4,
                     "golden loss");
    th_assert_close1(th_parse_value(out, "term kd"), 54.9096363, 0, 1e-4,
                     "golden kd");
    {
        char p[600];
        snprintf(p, sizeof p, "%s.0", f[6]);
        read_npy_tail(p, k.g[0], 3 * 3 * 12);
        snprintf(p, sizeof p, "%s.1", f[6]);
        read_npy_tail(p, k.g[1], 3 * 2 * 4);
        snprintf(p, sizeof p, "%s.z", f[6]);
        read_npy_tail(p, k.gz, 3 * 6);
        check_grads(&k, &r, g, 1e-5, 1e-4, "cli grad");
    }
    free(x);
    free(g);
    free_ref(&r);
    free_case(&k);
}
