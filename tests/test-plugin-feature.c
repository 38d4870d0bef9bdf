/*
 * tests/test-plugin-feature.c - the feature (FitNets hints) plugin against
 * an independent float64 reference (LOSSES.md `feature`), with and without
 * the linear regressor and the task term; finite differences for
 * student.feat and the regressor's W and b (read through kdcl_run_trainable);
 * the documented regressor initialisation; determinism; extreme and
 * degenerate inputs; bad input; cost; and `kdcl loss` golden values.
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
    const double *w, *b;   /* [Dt,Ds], [Dt]; NULL: no regressor */
    const double *z;       /* student logits [B,C] or NULL */
    const int32_t *y;      /* labels or NULL */
    double alpha, weight;
};

struct ref_out {
    double loss, ce, kd;
    double *gfs, *gw, *gb, *gz; /* each optional */
};

/* L = alpha*CE + (1-alpha)*weight*mean((F_T - r(F_S))^2), or the hint term
   alone without logits+labels; gradients by the chain rule. */
static void ref_eval(const struct ref *r, struct ref_out *o)
{
    const int B = r->B, Ds = r->Ds, Dt = r->Dt, C = r->C;
    const bool ce_on = r->z && r->y;
    const double a = ce_on ? r->alpha : 0.0;
    double sq = 0, ce = 0;
    double *rs = malloc(sizeof(double) * Dt);

    if (o->gw)
        memset(o->gw, 0, sizeof(double) * Dt * Ds);
    if (o->gb)
        memset(o->gb, 0, sizeof(double) * Dt);
    if (o->gfs)
        memset(o->gfs, 0, sizeof(double) * B * Ds);
    for (int b = 0; b < B; b++) {
        const double *f = r->fs + (size_t)b * Ds;
        for (int j = 0; j < Dt; j++) {
            /* r(F_S) = F_S W^T + b, or F_S itself (then Ds == Dt). */
            double v = r->w ? r->b[j] : f[j];
            for (int k = 0; r->w && k < Ds; k++)
                v += r->w[(size_t)j * Ds + k] * f[k];
            rs[j] = v;
        }
        for (int j = 0; j < Dt; j++) {
            double d = rs[j] - r->ft[(size_t)b * Dt + j];
            double g = (1 - a) * r->weight * 2 * d / ((double)B * Dt);
            sq += d * d;
            if (!r->w) {
                if (o->gfs)
                    o->gfs[(size_t)b * Ds + j] = g;
                continue;
            }
            if (o->gb)
                o->gb[j] += g;
            for (int k = 0; k < Ds; k++) {
                if (o->gw)
                    o->gw[(size_t)j * Ds + k] += g * f[k];
                if (o->gfs)
                    o->gfs[(size_t)b * Ds + k] += g * r->w[(size_t)j * Ds + k];
            }
        }
        if (ce_on) {
            const double *z = r->z + (size_t)b * C;
            double m = -INFINITY, s = 0;
            for (int c = 0; c < C; c++)
                m = fmax(m, z[c]);
            for (int c = 0; c < C; c++)
                s += exp(z[c] - m);
            ce += m + log(s) - z[r->y[b]];
            if (o->gz)
                for (int c = 0; c < C; c++)
                    o->gz[(size_t)b * C + c] =
                        a * (exp(z[c] - m) / s - (c == r->y[b])) / B;
        } else if (o->gz) {
            for (int c = 0; c < C; c++)
                o->gz[(size_t)b * C + c] = 0;
        }
    }
    free(rs);
    o->kd = r->weight * sq / ((double)B * Dt);
    o->ce = ce / B;
    o->loss = ce_on ? a * o->ce + (1 - a) * o->kd : o->kd;
}

/* Loss as a function of one of fs, w, b (for finite differences). */
struct fd_ctx {
    struct ref r;
    int which; /* 0: fs, 1: w, 2: b */
};

static double fd_fn(const double *x, void *user)
{
    struct fd_ctx *c = user;
    struct ref r = c->r;
    struct ref_out o = {0};
    if (c->which == 0)
        r.fs = x;
    else if (c->which == 1)
        r.w = x;
    else
        r.b = x;
    ref_eval(&r, &o);
    return o.loss;
}

/* ---------------------------------------------------------------------- */
/* Driving a kdcl_run directly (the trainables live in the run)            */

enum { IN_FS, IN_FT, IN_Z, IN_Y, N_IN };

struct drv {
    kdcl_run *run;
    kdcl_tensor *t[N_IN], *g[N_IN];
};

struct case_ {
    int B, Ds, Dt, C;
    float *fs, *ft, *z, *gfs, *gz;
    int32_t *y;
    bool logits, labels;
};

static void make_case(struct case_ *k, int B, int Ds, int Dt, int C,
                      double lo, double hi, uint64_t seed)
{
    memset(k, 0, sizeof *k);
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
    th_fill_uniform(k->z, (size_t)B * C, lo, hi, seed + 2);
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

static int drv_open(struct drv *d, struct case_ *k, const char *const *sets,
                    size_t n_sets)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_plugin *p = th_plugin("feature");
    kdcl_params *params = NULL;
    const int64_t sfs[2] = {k->B, k->Ds}, sft[2] = {k->B, k->Dt},
                  sz[2] = {k->B, k->C}, sy[1] = {k->B};
    int status;

    memset(d, 0, sizeof *d);
    status = kdcl_params_init(ctx, p, &params);
    for (size_t i = 0; !status && i < n_sets; i++)
        status = kdcl_params_set_kv(params, sets[i]);
    if (!status)
        status = kdcl_run_init(ctx, p, params, &d->run);
    kdcl_params_free(params);
    if (status)
        return status;
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, sfs, &d->t[IN_FS]),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, sfs, &d->g[IN_FS]),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, sft, &d->t[IN_FT]),
                 KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(d->run, "student.feat", d->t[IN_FS]),
                 KDCL_OK);
    cr_assert_eq(kdcl_run_set_grad(d->run, "student.feat", d->g[IN_FS]),
                 KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(d->run, "teacher.feat", d->t[IN_FT]),
                 KDCL_OK);
    if (k->logits) {
        cr_assert_eq(
            kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, sz, &d->t[IN_Z]),
            KDCL_OK);
        cr_assert_eq(
            kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, sz, &d->g[IN_Z]),
            KDCL_OK);
        cr_assert_eq(kdcl_run_set_input(d->run, "student.logits", d->t[IN_Z]),
                     KDCL_OK);
        cr_assert_eq(kdcl_run_set_grad(d->run, "student.logits", d->g[IN_Z]),
                     KDCL_OK);
    }
    if (k->labels) {
        cr_assert_eq(
            kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, sy, &d->t[IN_Y]),
            KDCL_OK);
        cr_assert_eq(
            kdcl_tensor_write(d->t[IN_Y], k->y, sizeof(int32_t) * k->B),
            KDCL_OK);
        cr_assert_eq(kdcl_run_set_input(d->run, "labels", d->t[IN_Y]),
                     KDCL_OK);
    }
    return KDCL_OK;
}

static void drv_close(struct drv *d)
{
    kdcl_run_free(d->run);
    for (int i = 0; i < N_IN; i++) {
        kdcl_tensor_free(d->t[i]);
        kdcl_tensor_free(d->g[i]);
    }
}

/* Upload k's inputs, poison every gradient (the trainables' too), run, and
   read loss, terms and the input gradients back. */
static int drv_step(struct drv *d, struct case_ *k, double *loss,
                    double *terms)
{
    struct kdcl_trainable tr;
    int status;
    cr_assert_eq(kdcl_tensor_write(d->t[IN_FS], k->fs,
                                   sizeof(float) * k->B * k->Ds),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_write(d->t[IN_FT], k->ft,
                                   sizeof(float) * k->B * k->Dt),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(d->g[IN_FS], NAN), KDCL_OK);
    if (d->t[IN_Z]) {
        cr_assert_eq(kdcl_tensor_write(d->t[IN_Z], k->z,
                                       sizeof(float) * k->B * k->C),
                     KDCL_OK);
        cr_assert_eq(kdcl_tensor_fill(d->g[IN_Z], NAN), KDCL_OK);
    }
    for (uint32_t i = 0; kdcl_run_trainable(d->run, i, &tr) == KDCL_OK; i++)
        cr_assert_eq(kdcl_tensor_fill(tr.grad, NAN), KDCL_OK);
    status = kdcl_run_forward(d->run);
    if (!status)
        status = kdcl_run_backward(d->run);
    if (!status)
        status = kdcl_run_result(d->run, loss, terms, 2);
    if (status)
        return status;
    cr_assert_eq(kdcl_tensor_read(d->g[IN_FS], k->gfs,
                                  sizeof(float) * k->B * k->Ds),
                 KDCL_OK);
    if (d->t[IN_Z])
        cr_assert_eq(kdcl_tensor_read(d->g[IN_Z], k->gz,
                                      sizeof(float) * k->B * k->C),
                     KDCL_OK);
    return KDCL_OK;
}

/* Read trainable i's value and gradient as doubles / floats. */
static void drv_trainable(struct drv *d, uint32_t i, const char *name,
                          size_t n, double *value, float *grad)
{
    struct kdcl_trainable tr;
    float *v = malloc(sizeof(float) * n);
    cr_assert_eq(kdcl_run_trainable(d->run, i, &tr), KDCL_OK);
    cr_assert_str_eq(tr.name, name);
    cr_assert_eq(kdcl_tensor_numel(tr.value), (int64_t)n);
    cr_assert_eq(kdcl_tensor_numel(tr.grad), (int64_t)n);
    cr_assert_eq(kdcl_tensor_read(tr.value, v, sizeof(float) * n), KDCL_OK);
    th_to_double(v, value, n);
    if (grad)
        cr_assert_eq(kdcl_tensor_read(tr.grad, grad, sizeof(float) * n),
                     KDCL_OK);
    free(v);
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

static double *to_double(const float *v, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    th_to_double(v, d, n);
    return d;
}

/*
 * Run k through the plugin (a fresh run with sets) and compare loss,
 * terms and every gradient, the regressor's included, with the reference.
 */
static void check_case(struct case_ *k, const char *const *sets,
                       size_t n_sets, bool linear, double alpha,
                       double weight)
{
    struct drv d;
    double loss, terms[2];
    const int B = k->B, Ds = k->Ds, Dt = k->Dt, C = k->C;
    double *fs = to_double(k->fs, (size_t)B * Ds),
           *ft = to_double(k->ft, (size_t)B * Dt),
           *z = to_double(k->z, (size_t)B * C);
    double *w = NULL, *b = NULL, *gw = NULL, *gb = NULL;
    float *gwf = NULL, *gbf = NULL;
    double *gfs = malloc(sizeof(double) * B * Ds),
           *gz = malloc(sizeof(double) * B * C);
    struct ref r;
    struct ref_out o = {0};

    cr_assert_eq(drv_open(&d, k, sets, n_sets), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(drv_step(&d, k, &loss, terms), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    if (linear) {
        w = malloc(sizeof(double) * Dt * Ds);
        b = malloc(sizeof(double) * Dt);
        gw = malloc(sizeof(double) * Dt * Ds);
        gb = malloc(sizeof(double) * Dt);
        gwf = malloc(sizeof(float) * Dt * Ds);
        gbf = malloc(sizeof(float) * Dt);
        drv_trainable(&d, 0, "regressor.weight", (size_t)Dt * Ds, w, gwf);
        drv_trainable(&d, 1, "regressor.bias", (size_t)Dt, b, gbf);
    } else {
        struct kdcl_trainable tr;
        cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_ENOTFOUND,
                     "no regressor, no trainable");
    }
    r = (struct ref){B,  Ds, Dt, C,     fs,
                     ft, w,  b,  k->logits ? z : NULL,
                     k->labels ? k->y : NULL, alpha, weight};
    o.gfs = gfs;
    o.gw = gw;
    o.gb = gb;
    o.gz = gz;
    ref_eval(&r, &o);
    th_assert_close1(loss, o.loss, 1e-6, 1e-4, "loss");
    th_assert_close1(terms[1], o.kd, 1e-6, 1e-4, "kd");
    if (k->logits && k->labels)
        th_assert_close1(terms[0], o.ce, 1e-6, 1e-4, "ce");
    assert_grad(k->gfs, gfs, (size_t)B * Ds, "grad student.feat");
    if (k->logits)
        assert_grad(k->gz, gz, (size_t)B * C, "grad student.logits");
    if (linear) {
        assert_grad(gwf, gw, (size_t)Dt * Ds, "grad regressor.weight");
        assert_grad(gbf, gb, (size_t)Dt, "grad regressor.bias");
    }
    drv_close(&d);
    free(fs);
    free(ft);
    free(z);
    free(w);
    free(b);
    free(gw);
    free(gb);
    free(gwf);
    free(gbf);
    free(gfs);
    free(gz);
}

/* ---------------------------------------------------------------------- */

Test(feature, matches_reference_identity)
{
    struct case_ k;
    make_case(&k, 8, 37, 37, 5, -30, 30, 1);
    check_case(&k, NULL, 0, false, 0.0, 1.0);
    free_case(&k);
}

Test(feature, matches_reference_identity_with_task_term)
{
    struct case_ k;
    const char *sets[] = {"alpha=0.3", "weight=2.5"};
    make_case(&k, 8, 37, 37, 11, -30, 30, 2);
    k.logits = k.labels = true;
    check_case(&k, sets, 2, false, 0.3, 2.5);
    free_case(&k);
}

Test(feature, matches_reference_linear)
{
    struct case_ k;
    make_case(&k, 6, 10, 13, 4, -30, 30, 3);
    check_case(&k, NULL, 0, true, 0.0, 1.0);
    free_case(&k);
}

Test(feature, matches_reference_linear_with_task_term)
{
    struct case_ k;
    const char *sets[] = {"alpha=0.6", "weight=0.5", "seed=9"};
    make_case(&k, 7, 13, 6, 9, -30, 30, 4);
    k.logits = k.labels = true;
    check_case(&k, sets, 3, true, 0.6, 0.5);
    free_case(&k);
}

Test(feature, linear_regressor_with_equal_widths)
{
    struct case_ k;
    const char *sets[] = {"regressor=linear"};
    make_case(&k, 5, 9, 9, 3, -30, 30, 5);
    check_case(&k, sets, 1, true, 0.0, 1.0);
    free_case(&k);
}

Test(feature, matches_reference_wide_rows)
{
    /* Dt much larger than a work-group: every item loops over columns. */
    struct case_ k;
    const char *lin[] = {"regressor=linear"};
    int D = th_small() ? 300 : 5000;
    make_case(&k, 3, D, D, 3, -30, 30, 6);
    check_case(&k, NULL, 0, false, 0.0, 1.0);
    free_case(&k);
    make_case(&k, 3, 5, D, 3, -30, 30, 7);
    check_case(&k, lin, 1, true, 0.0, 1.0);
    free_case(&k);
}

Test(feature, single_row)
{
    struct case_ k;
    const char *sets[] = {"alpha=0.2"};
    make_case(&k, 1, 6, 4, 7, -30, 30, 8);
    k.logits = k.labels = true;
    check_case(&k, sets, 1, true, 0.2, 1.0);
    free_case(&k);
    make_case(&k, 1, 6, 6, 7, -30, 30, 9);
    check_case(&k, NULL, 0, false, 0.0, 1.0);
    free_case(&k);
}

Test(feature, flattens_higher_rank_features)
{
    /* [B,2,3,4] student and [B,3,8] teacher read as [B,24] and [B,24]. */
    float fs[3 * 24], ft[3 * 24], g4[3 * 24], g2[3 * 24];
    double l4, l2, t[2];
    struct th_input in4[2] = {
        {"student.feat", KDCL_DTYPE_F32, 4, {3, 2, 3, 4}, fs, g4},
        {"teacher.feat", KDCL_DTYPE_F32, 3, {3, 3, 8}, ft, NULL},
    };
    struct th_input in2[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {3, 24}, fs, g2},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {3, 24}, ft, NULL},
    };
    th_fill_uniform(fs, 72, -3, 3, 10);
    th_fill_uniform(ft, 72, -3, 3, 11);
    cr_assert_eq(th_run("feature", NULL, 0, in4, 2, &l4, t, 2), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    cr_assert_eq(th_run("feature", NULL, 0, in2, 2, &l2, t, 2), KDCL_OK);
    cr_assert(l4 == l2 && memcmp(g4, g2, sizeof g4) == 0);
    cr_assert(l4 > 0);
}

Test(feature, gradient_matches_finite_differences)
{
    const int B = 3, Ds = 4, Dt = 5, C = 3;
    const char *sets[] = {"alpha=0.25", "seed=3"};
    struct case_ k;
    struct drv d;
    double loss, terms[2], fs[12], ft[15], z[9], w[20], b[5], g[20];
    float gw[20], gb[5];
    struct fd_ctx c;
    struct kdcl_trainable tr;

    make_case(&k, B, Ds, Dt, C, -3, 3, 12);
    k.logits = k.labels = true;
    cr_assert_eq(drv_open(&d, &k, sets, 2), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &loss, terms), KDCL_OK, "%s",
                 kdcl_context_errmsg(th_ctx()));
    drv_trainable(&d, 0, "regressor.weight", 20, w, gw);
    drv_trainable(&d, 1, "regressor.bias", 5, b, gb);
    /* A non-zero bias, so that its effect is checked too. */
    for (int j = 0; j < Dt; j++)
        b[j] = 0.3 * (j - 2);
    {
        float bf[5];
        for (int j = 0; j < Dt; j++)
            bf[j] = (float)b[j];
        cr_assert_eq(kdcl_run_trainable(d.run, 1, &tr), KDCL_OK);
        cr_assert_eq(kdcl_tensor_write(tr.value, bf, sizeof bf), KDCL_OK);
    }
    cr_assert_eq(drv_step(&d, &k, &loss, terms), KDCL_OK);
    drv_trainable(&d, 0, "regressor.weight", 20, w, gw);
    drv_trainable(&d, 1, "regressor.bias", 5, b, gb);
    th_to_double(k.fs, fs, 12);
    th_to_double(k.ft, ft, 15);
    th_to_double(k.z, z, 9);
    c.r = (struct ref){B, Ds, Dt, C, fs, ft, w, b, z, k.y, 0.25, 1.0};

    c.which = 0;
    th_fd_grad(fd_fn, &c, fs, 12, 1e-5, g);
    th_assert_close(k.gfs, g, 12, 1e-6, 1e-4, "student.feat vs fd");
    c.which = 1;
    th_fd_grad(fd_fn, &c, w, 20, 1e-5, g);
    th_assert_close(gw, g, 20, 1e-6, 1e-4, "regressor.weight vs fd");
    c.which = 2;
    th_fd_grad(fd_fn, &c, b, 5, 1e-5, g);
    th_assert_close(gb, g, 5, 1e-6, 1e-4, "regressor.bias vs fd");

    /* The device's own loss, perturbed in float32 (coarse): features... */
    for (int i = 0; i < 12; i += 5) {
        const float h = 1e-2f, x0 = k.fs[i];
        double lp, lm, gi = k.gfs[i];
        k.fs[i] = x0 + h;
        cr_assert_eq(drv_step(&d, &k, &lp, terms), KDCL_OK);
        k.fs[i] = x0 - h;
        cr_assert_eq(drv_step(&d, &k, &lm, terms), KDCL_OK);
        k.fs[i] = x0;
        th_assert_close1(gi, (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                         "device finite difference, student.feat");
    }
    /* ...and the regressor, written into the trainables' value tensors. */
    for (uint32_t which = 0; which < 2; which++) {
        const size_t n = which ? 5 : 20;
        double *v = which ? b : w;
        const float *gv = which ? gb : gw;
        float *vf = malloc(sizeof(float) * n);
        cr_assert_eq(kdcl_run_trainable(d.run, which, &tr), KDCL_OK);
        for (size_t i = 0; i < n; i += 3) {
            const float h = 1e-2f;
            double lp, lm;
            for (size_t e = 0; e < n; e++)
                vf[e] = (float)v[e];
            vf[i] = (float)v[i] + h;
            cr_assert_eq(kdcl_tensor_write(tr.value, vf, sizeof(float) * n),
                         KDCL_OK);
            cr_assert_eq(drv_step(&d, &k, &lp, terms), KDCL_OK);
            vf[i] = (float)v[i] - h;
            cr_assert_eq(kdcl_tensor_write(tr.value, vf, sizeof(float) * n),
                         KDCL_OK);
            cr_assert_eq(drv_step(&d, &k, &lm, terms), KDCL_OK);
            th_assert_close1(gv[i], (lp - lm) / (2.0 * h), 2e-4, 2e-2,
                             which ? "device fd, regressor.bias"
                                   : "device fd, regressor.weight");
        }
        for (size_t e = 0; e < n; e++)
            vf[e] = (float)v[e];
        cr_assert_eq(kdcl_tensor_write(tr.value, vf, sizeof(float) * n),
                     KDCL_OK);
        free(vf);
    }
    drv_close(&d);
    free_case(&k);
}

/* The documented initialisation: splitmix64 from `seed`, top 24 bits,
   W = bound * (2u - 1), bound = sqrt(6 / (Ds + Dt)), b = 0. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void documented_init(uint64_t seed, int Ds, int Dt, double *w)
{
    const double bound = sqrt(6.0 / (Ds + Dt));
    for (int i = 0; i < Ds * Dt; i++) {
        double u = (double)(splitmix64(&seed) >> 40) / 16777216.0;
        w[i] = (float)(bound * (2 * u - 1));
    }
}

Test(feature, regressor_init_is_documented_xavier_uniform)
{
    enum { Ds = 16, Dt = 24 };
    const char *s5[] = {"seed=5"}, *s6[] = {"seed=6"};
    struct case_ k;
    struct drv d;
    double loss, t[2], w[Ds * Dt], b[Dt], w2[Ds * Dt], want[Ds * Dt];
    double bound = sqrt(6.0 / (Ds + Dt)), mean = 0, lo = 1, hi = -1;

    make_case(&k, 2, Ds, Dt, 2, -1, 1, 13);
    cr_assert_eq(drv_open(&d, &k, s5, 1), KDCL_OK);
    {
        struct kdcl_trainable tr;
        cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_ENOTFOUND,
                     "the regressor exists only after the first forward");
    }
    cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
    drv_trainable(&d, 0, "regressor.weight", Ds * Dt, w, NULL);
    drv_trainable(&d, 1, "regressor.bias", Dt, b, NULL);
    {
        struct kdcl_trainable tr;
        cr_assert_eq(kdcl_run_trainable(d.run, 2, &tr), KDCL_ENOTFOUND);
        cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_OK);
        cr_assert_eq(kdcl_tensor_ndim(tr.value), 2u);
        cr_assert_eq(kdcl_tensor_dim(tr.value, 0), Dt, "W is [Dt,Ds]");
        cr_assert_eq(kdcl_tensor_dim(tr.value, 1), Ds);
    }
    drv_close(&d);
    documented_init(5, Ds, Dt, want);
    for (int i = 0; i < Ds * Dt; i++) {
        cr_assert(w[i] == want[i], "W[%d] = %.9g, documented %.9g", i, w[i],
                  want[i]);
        cr_assert(fabs(w[i]) <= bound);
        mean += w[i] / (Ds * Dt);
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
    }
    cr_assert(fabs(mean) < 0.1 * bound && lo < -0.8 * bound
                  && hi > 0.8 * bound,
              "W does not look uniform on [-%g, %g]", bound, bound);
    for (int j = 0; j < Dt; j++)
        cr_assert(b[j] == 0.0, "b[%d] = %g", j, b[j]);
    /* Another seed, another W. */
    cr_assert_eq(drv_open(&d, &k, s6, 1), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
    drv_trainable(&d, 0, "regressor.weight", Ds * Dt, w2, NULL);
    drv_close(&d);
    cr_assert(memcmp(w, w2, sizeof w) != 0);
    free_case(&k);
}

Test(feature, gradients_follow_updated_trainables)
{
    /* The regressor persists across calls: a W written by an optimizer is
       the one the next forward uses. */
    enum { B = 4, Ds = 5, Dt = 3 };
    struct case_ k;
    struct drv d;
    struct kdcl_trainable tr;
    double loss, t[2], w[Dt * Ds], b[Dt], gw[Dt * Ds], gb[Dt], fs[B * Ds],
        ft[B * Dt], gfs[B * Ds];
    float wf[Dt * Ds], gwf[Dt * Ds], gbf[Dt];
    struct ref_out o = {0};
    struct ref r;

    make_case(&k, B, Ds, Dt, 2, -30, 30, 14);
    cr_assert_eq(drv_open(&d, &k, NULL, 0), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
    th_fill_uniform(wf, Dt * Ds, -2, 2, 15);
    cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_OK);
    cr_assert_eq(kdcl_tensor_write(tr.value, wf, sizeof wf), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
    drv_trainable(&d, 0, "regressor.weight", Dt * Ds, w, gwf);
    drv_trainable(&d, 1, "regressor.bias", Dt, b, gbf);
    th_to_double(k.fs, fs, B * Ds);
    th_to_double(k.ft, ft, B * Dt);
    r = (struct ref){B, Ds, Dt, 2, fs, ft, w, b, NULL, NULL, 0, 1};
    o.gfs = gfs;
    o.gw = gw;
    o.gb = gb;
    ref_eval(&r, &o);
    for (int i = 0; i < Dt * Ds; i++)
        cr_assert(w[i] == wf[i]);
    th_assert_close1(loss, o.loss, 1e-6, 1e-4, "loss");
    assert_grad(k.gfs, gfs, B * Ds, "grad student.feat");
    assert_grad(gwf, gw, Dt * Ds, "grad regressor.weight");
    assert_grad(gbf, gb, Dt, "grad regressor.bias");
    drv_close(&d);
    free_case(&k);
}

Test(feature, deterministic_bitwise)
{
    struct case_ k;
    struct drv d;
    struct kdcl_trainable tr;
    const int B = th_small() ? 8 : 64, Ds = th_small() ? 20 : 300,
              Dt = th_small() ? 30 : 500;
    double l1, l2, t[2];
    float *g1 = malloc(sizeof(float) * B * Ds),
          *w1 = malloc(sizeof(float) * Dt * Ds),
          *w2 = malloc(sizeof(float) * Dt * Ds), b1[500], b2[500];

    make_case(&k, B, Ds, Dt, 10, -10, 10, 16);
    k.logits = k.labels = true;
    {
        const char *sets[] = {"alpha=0.5"};
        cr_assert_eq(drv_open(&d, &k, sets, 1), KDCL_OK);
    }
    cr_assert_eq(drv_step(&d, &k, &l1, t), KDCL_OK);
    memcpy(g1, k.gfs, sizeof(float) * B * Ds);
    cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(tr.grad, w1, sizeof(float) * Dt * Ds),
                 KDCL_OK);
    cr_assert_eq(kdcl_run_trainable(d.run, 1, &tr), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(tr.grad, b1, sizeof(float) * Dt), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &l2, t), KDCL_OK);
    cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(tr.grad, w2, sizeof(float) * Dt * Ds),
                 KDCL_OK);
    cr_assert_eq(kdcl_run_trainable(d.run, 1, &tr), KDCL_OK);
    cr_assert_eq(kdcl_tensor_read(tr.grad, b2, sizeof(float) * Dt), KDCL_OK);
    cr_assert(memcmp(&l1, &l2, sizeof l1) == 0, "loss %.17g vs %.17g", l1,
              l2);
    cr_assert(memcmp(g1, k.gfs, sizeof(float) * B * Ds) == 0,
              "student.feat gradients differ between runs");
    cr_assert(memcmp(w1, w2, sizeof(float) * Dt * Ds) == 0,
              "regressor.weight gradients differ between runs");
    cr_assert(memcmp(b1, b2, sizeof(float) * Dt) == 0,
              "regressor.bias gradients differ between runs");
    drv_close(&d);
    free(g1);
    free(w1);
    free(w2);
    free_case(&k);
}

Test(feature, extreme_inputs_stay_finite)
{
    for (int lin = 0; lin < 2; lin++) {
        struct case_ k;
        struct drv d;
        struct kdcl_trainable tr;
        double loss, t[2];
        float gw[40 * 30];
        const char *sets[] = {"alpha=0.5"};
        make_case(&k, 4, 40, lin ? 30 : 40, 20, -1e4, 1e4, 17);
        k.logits = k.labels = true;
        cr_assert_eq(drv_open(&d, &k, sets, 1), KDCL_OK);
        cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
        cr_assert(isfinite(loss) && isfinite(t[0]) && isfinite(t[1]));
        for (int i = 0; i < 4 * 40; i++)
            cr_assert(isfinite(k.gfs[i]), "grad[%d] = %g", i, k.gfs[i]);
        for (int i = 0; i < 4 * 20; i++)
            cr_assert(isfinite(k.gz[i]), "logits grad[%d] = %g", i, k.gz[i]);
        if (lin) {
            cr_assert_eq(kdcl_run_trainable(d.run, 0, &tr), KDCL_OK);
            cr_assert_eq(kdcl_tensor_read(tr.grad, gw, sizeof gw), KDCL_OK);
            for (int i = 0; i < 40 * 30; i++)
                cr_assert(isfinite(gw[i]), "W grad[%d] = %g", i, gw[i]);
        }
        drv_close(&d);
        free_case(&k);
    }
}

Test(feature, identical_features_give_zero)
{
    float f[6 * 13], g[6 * 13];
    double loss, t[2];
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {6, 13}, f, g},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {6, 13}, f, NULL},
    };
    th_fill_uniform(f, 6 * 13, -30, 30, 18);
    cr_assert_eq(th_run("feature", NULL, 0, in, 2, &loss, t, 2), KDCL_OK);
    cr_assert(loss == 0.0, "loss %g", loss);
    for (int i = 0; i < 6 * 13; i++)
        cr_assert(g[i] == 0.0f, "grad[%d] = %g", i, g[i]);
}

Test(feature, logits_without_labels_get_zero_gradient)
{
    struct case_ k;
    double loss, t[2], fs[20], ft[20], gfs[20];
    struct th_input in[3];
    struct ref r;
    struct ref_out o = {0};
    make_case(&k, 4, 5, 5, 3, -3, 3, 19);
    in[0] = (struct th_input){"student.feat", KDCL_DTYPE_F32, 2, {4, 5},
                              k.fs, k.gfs};
    in[1] = (struct th_input){"teacher.feat", KDCL_DTYPE_F32, 2, {4, 5},
                              k.ft, NULL};
    in[2] = (struct th_input){"student.logits", KDCL_DTYPE_F32, 2, {4, 3},
                              k.z, k.gz};
    cr_assert_eq(th_run("feature", NULL, 0, in, 3, &loss, t, 2), KDCL_OK);
    th_to_double(k.fs, fs, 20);
    th_to_double(k.ft, ft, 20);
    r = (struct ref){4, 5, 5, 3, fs, ft, NULL, NULL, NULL, NULL, 0, 1};
    o.gfs = gfs;
    ref_eval(&r, &o);
    th_assert_close1(loss, o.loss, 1e-6, 1e-4, "loss");
    assert_grad(k.gfs, gfs, 20, "grad student.feat");
    for (int i = 0; i < 12; i++)
        cr_assert(k.gz[i] == 0.0f, "logits grad[%d] = %g", i, k.gz[i]);
    free_case(&k);
}

Test(feature, rejects_none_regressor_with_different_widths)
{
    float fs[8] = {0}, ft[6] = {0};
    double loss, t[2];
    const char *sets[] = {"regressor=none"};
    struct th_input in[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 3}, ft, NULL},
    };
    const char *msg;
    cr_assert_eq(th_run("feature", sets, 1, in, 2, &loss, t, 2), KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.feat") && strstr(msg, "teacher.feat")
                  && strstr(msg, "[2,4]") && strstr(msg, "[2,3]"),
              "%s", msg);
}

Test(feature, rejects_bad_shapes)
{
    float fs[8] = {0}, ft[9] = {0};
    double loss, t[2];
    const char *msg;
    struct th_input one_d[2] = {
        {"student.feat", KDCL_DTYPE_F32, 1, {8}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 4}, ft, NULL},
    };
    struct th_input batch[2] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {3, 3}, ft, NULL},
    };
    struct th_input logits[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 4}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 4}, ft, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {3, 3}, ft, NULL},
    };
    cr_assert_eq(th_run("feature", NULL, 0, one_d, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.feat") && strstr(msg, "[8]"), "%s", msg);
    cr_assert_eq(th_run("feature", NULL, 0, batch, 2, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.feat [2,4]")
                  && strstr(msg, "teacher.feat [3,3]"),
              "%s", msg);
    cr_assert_eq(th_run("feature", NULL, 0, logits, 3, &loss, t, 2),
                 KDCL_ESHAPE);
    msg = kdcl_context_errmsg(th_ctx());
    cr_assert(strstr(msg, "student.logits [3,3]"), "%s", msg);
}

Test(feature, rejects_regressor_width_change)
{
    struct case_ k;
    struct drv d;
    double loss, t[2];
    make_case(&k, 2, 4, 3, 2, -1, 1, 20);
    cr_assert_eq(drv_open(&d, &k, NULL, 0), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
    {
        /* Rebind student.feat with another width. */
        kdcl_tensor *f = NULL, *g = NULL;
        const int64_t sh[2] = {2, 5};
        float v[10] = {0};
        cr_assert_eq(kdcl_tensor_init(th_ctx(), KDCL_DTYPE_F32, 2, sh, &f),
                     KDCL_OK);
        cr_assert_eq(kdcl_tensor_init(th_ctx(), KDCL_DTYPE_F32, 2, sh, &g),
                     KDCL_OK);
        cr_assert_eq(kdcl_tensor_write(f, v, sizeof v), KDCL_OK);
        cr_assert_eq(kdcl_run_set_input(d.run, "student.feat", f), KDCL_OK);
        cr_assert_eq(kdcl_run_set_grad(d.run, "student.feat", g), KDCL_OK);
        cr_assert_eq(kdcl_run_forward(d.run), KDCL_ESHAPE);
        cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "regressor"), "%s",
                  kdcl_context_errmsg(th_ctx()));
        drv_close(&d);
        kdcl_tensor_free(f);
        kdcl_tensor_free(g);
    }
    free_case(&k);
}

Test(feature, rejects_missing_teacher)
{
    float fs[6] = {0};
    double loss, t[2];
    struct th_input in[1] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
    };
    cr_assert_eq(th_run("feature", NULL, 0, in, 1, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "teacher.feat"));
}

Test(feature, rejects_alpha_without_labels)
{
    float fs[6] = {0}, z[4] = {0};
    int32_t y[2] = {0, 1};
    double loss, t[2];
    const char *sets[] = {"alpha=0.5"};
    struct th_input in[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"student.logits", KDCL_DTYPE_F32, 2, {2, 2}, z, NULL},
    };
    struct th_input no_logits[3] = {
        {"student.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"teacher.feat", KDCL_DTYPE_F32, 2, {2, 3}, fs, NULL},
        {"labels", KDCL_DTYPE_I32, 1, {2}, y, NULL},
    };
    cr_assert_eq(th_run("feature", sets, 1, in, 3, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    cr_assert_eq(th_run("feature", sets, 1, in, 2, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "labels"));
    /* Labels alone cannot make a task term either. */
    cr_assert_eq(th_run("feature", NULL, 0, no_logits, 3, &loss, t, 2),
                 KDCL_EMISSING);
    cr_assert(strstr(kdcl_context_errmsg(th_ctx()), "student.logits"));
}

Test(feature, cost_counts_regressor_gemms)
{
    struct case_ k;
    struct drv d;
    double flops, bytes, loss, t[2];
    make_case(&k, 8, 16, 32, 2, -1, 1, 21);
    cr_assert_eq(drv_open(&d, &k, NULL, 0), KDCL_OK);
    cr_assert_eq(drv_step(&d, &k, &loss, t), KDCL_OK);
    cr_assert_eq(kdcl_run_cost(d.run, &flops, &bytes), KDCL_OK);
    cr_assert(flops >= 6.0 * 8 * 16 * 32 && flops < 7.0 * 8 * 16 * 32,
              "flops %g", flops);
    cr_assert(bytes >= 4.0 * (2 * 8 * 16 + 8 * 32 + 2 * 16 * 32), "bytes %g",
              bytes);
    drv_close(&d);
    free_case(&k);
}

/* The last n floats of a .npy file. */
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
Test(feature, cli_golden_values_identity)
{
    struct case_ k;
    char s[512], t[512], z[512], y[512], g[512], gz[512], args[4096],
        out[4096], err[4096];
    const int64_t sf[2] = {4, 6}, sz[2] = {4, 5}, sy[1] = {4};
    double fs[24], ft[24], zz[20], gr[24], grz[20];
    float gf[24], gzf[20];
    struct ref r;
    struct ref_out o = {0};

    make_case(&k, 4, 6, 6, 5, -5, 5, 71);
    snprintf(s, sizeof s, "%s/fi_s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/fi_t.npy", th_tmpdir());
    snprintf(z, sizeof z, "%s/fi_z.npy", th_tmpdir());
    snprintf(y, sizeof y, "%s/fi_y.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/fi_g.npy", th_tmpdir());
    snprintf(gz, sizeof gz, "%s/fi_gz.npy", th_tmpdir());
    th_npy_f32(s, k.fs, 2, sf);
    th_npy_f32(t, k.ft, 2, sf);
    th_npy_f32(z, k.z, 2, sz);
    th_npy_i32(y, k.y, 1, sy);
    snprintf(args, sizeof args,
             "loss --plugin feature --input student.feat=%s "
             "--input teacher.feat=%s --input student.logits=%s --labels %s "
             "--set alpha=0.25 --set weight=2 --grad-out student.feat=%s "
             "--grad-out student.logits=%s",
             s, t, z, y, g, gz);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.fs, fs, 24);
    th_to_double(k.ft, ft, 24);
    th_to_double(k.z, zz, 20);
    r = (struct ref){4, 6, 6, 5, fs, ft, NULL, NULL, zz, k.y, 0.25, 2.0};
    o.gfs = gr;
    o.gz = grz;
    ref_eval(&r, &o);
    th_assert_close1(th_parse_value(out, "loss"), o.loss, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term ce"), o.ce, 1e-6, 1e-4, "ce");
    th_assert_close1(th_parse_value(out, "term kd"), o.kd, 1e-6, 1e-4, "kd");
    /* Golden value recorded from the float64 reference on these inputs. */
    th_assert_close1(th_parse_value(out, "loss"), 24.3920728, 0, 1e-4,
                     "golden loss");
    read_npy_tail(g, gf, 24);
    read_npy_tail(gz, gzf, 20);
    assert_grad(gf, gr, 24, "cli grad student.feat");
    assert_grad(gzf, grz, 20, "cli grad student.logits");
    free_case(&k);
}

Test(feature, cli_golden_values_linear)
{
    /* The regressor is made from the documented initialisation, so the
       command line's result is reproducible from the seed alone. */
    struct case_ k;
    char s[512], t[512], g[512], args[4096], out[4096], err[4096];
    const int64_t ss[4] = {3, 2, 2, 2}, st[2] = {3, 5};
    double fs[24], ft[15], w[40], b[5] = {0}, gr[24];
    float gf[24];
    struct ref r;
    struct ref_out o = {0};

    make_case(&k, 3, 8, 5, 2, -5, 5, 72);
    snprintf(s, sizeof s, "%s/fl_s.npy", th_tmpdir());
    snprintf(t, sizeof t, "%s/fl_t.npy", th_tmpdir());
    snprintf(g, sizeof g, "%s/fl_g.npy", th_tmpdir());
    th_npy_f32(s, k.fs, 4, ss);
    th_npy_f32(t, k.ft, 2, st);
    snprintf(args, sizeof args,
             "loss --plugin feature --input student.feat=%s "
             "--input teacher.feat=%s --set seed=7 "
             "--grad-out student.feat=%s",
             s, t, g);
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    th_to_double(k.fs, fs, 24);
    th_to_double(k.ft, ft, 15);
    documented_init(7, 8, 5, w);
    r = (struct ref){3, 8, 5, 2, fs, ft, w, b, NULL, NULL, 0, 1};
    o.gfs = gr;
    ref_eval(&r, &o);
    th_assert_close1(th_parse_value(out, "loss"), o.loss, 1e-6, 1e-4, "loss");
    th_assert_close1(th_parse_value(out, "term kd"), o.kd, 1e-6, 1e-4, "kd");
    th_assert_close1(th_parse_value(out, "loss"), 10.5629818, 0, 1e-4,
                     "golden loss");
    read_npy_tail(g, gf, 24);
    assert_grad(gf, gr, 24, "cli grad student.feat");
    free_case(&k);
}
