/*
 * core/cli_bench.c - `kdcl bench`: the device's copy bandwidth from a kdcl
 * stream kernel, then every plugin's forward+backward at standard shapes,
 * as medians after warm-up, with effective bandwidth (and GFLOP/s where a
 * plugin states its flops) and the ratio to the measured copy bandwidth.
 *
 * Inputs are made from each plugin's input descriptors: the symbols of
 * their shape strings ("[B,C]", "[N,Ds]", "[E,2]") are bound by a size
 * set below, so a new plugin is benchmarked without any change here.
 */
#include "cli.h"
#include "params.h"
#include "train.h"

#include <ctype.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core_cl.h"

/* The most timed repetitions --reps takes (the arrays of times). */
#define MAX_REPS 200

struct size_set {
    const char *label;
    int64_t B, C, D, Ds, Dt, H, W, Cs, Ct, N, E;
    bool llm_only; /* vocabulary-scale: only plugins of family "llm" */
};

static const struct size_set sizes[] = {
    /* label         B     C       D     Ds    Dt    H   W   Cs  Ct   N     E */
    {"256x100", 256, 100, 128, 128, 256, 8, 8, 16, 32, 256, 2048, false},
    {"256x1000", 256, 1000, 512, 512, 1024, 16, 16, 32, 64, 1024, 8192,
     false},
    {"1024x32000", 1024, 32000, 2048, 2048, 4096, 32, 32, 64, 128, 2048,
     16384, false},
    {"4096x32000", 4096, 32000, 0, 0, 0, 0, 0, 0, 0, 0, 0, true},
    {"1024x128256", 1024, 128256, 0, 0, 0, 0, 0, 0, 0, 0, 0, true},
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* xorshift64*: fast, seeded, reproducible. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static double rng_uniform(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---------------------------------------------------------------------- */
/* Copy bandwidth                                                          */

static int copy_bandwidth(kdcl_context *ctx, int reps, double *gbps)
{
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    kdcl_program *prog;
    kdcl_kernel *k = NULL;
    kdcl_tensor *src = NULL, *dst = NULL;
    uint64_t bytes = 256ull << 20;
    int64_t n;
    double best = 1e30;
    int status;

    if (d->type == KDCL_DEVICE_GPU)
        bytes = 1024ull << 20;
    while (bytes > d->max_alloc || bytes * 2 > d->global_mem / 2)
        bytes /= 2;
    n = (int64_t)(bytes / 4);
    status = kdcl_program_build(ctx, kdcl__stream_cl, NULL, &prog);
    if (!status)
        status = kdcl_kernel_init(ctx, prog, "kdcl_stream_copy", &k);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &n, &src);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &n, &dst);
    if (!status)
        status = kdcl_tensor_fill(src, 1.0);
    if (!status)
        status = kdcl_tensor_fill(dst, 0.0);
    for (int r = 0; !status && r < reps + 2; r++) {
        size_t g = (size_t)n / 4, l = 256;
        struct kdcl_arg args[] = {KDCL_A_TENSOR(src), KDCL_A_TENSOR(dst),
                                  KDCL_A_U32((uint32_t)(n / 4))};
        double t0 = now_s(), dt;
        status = kdcl_kernel_launch(ctx, k, 1, &g,
                                    d->max_wg_size >= 256 ? &l : NULL, 3,
                                    args);
        if (!status)
            status = kdcl_context_finish(ctx);
        dt = now_s() - t0;
        if (r >= 2 && dt < best)
            best = dt; /* the first two runs warm up */
    }
    if (!status)
        *gbps = 2.0 * (double)bytes / best * 1e-9;
    kdcl_tensor_free(src);
    kdcl_tensor_free(dst);
    kdcl_kernel_free(k);
    return status;
}

/* ---------------------------------------------------------------------- */
/* Plugins                                                                 */

/* The value of a shape symbol in set, or -1. */
static int64_t symbol(const struct size_set *s, const char *sym, int64_t m)
{
    static const struct {
        const char *name;
        size_t off;
    } table[] = {
        {"B", offsetof(struct size_set, B)},
        {"C", offsetof(struct size_set, C)},
        {"V", offsetof(struct size_set, C)},
        {"D", offsetof(struct size_set, D)},
        {"Ds", offsetof(struct size_set, Ds)},
        {"Dt", offsetof(struct size_set, Dt)},
        {"H", offsetof(struct size_set, H)},
        {"W", offsetof(struct size_set, W)},
        {"Cs", offsetof(struct size_set, Cs)},
        {"Ct", offsetof(struct size_set, Ct)},
        {"N", offsetof(struct size_set, N)},
        {"E", offsetof(struct size_set, E)},
    };
    if (isdigit((unsigned char)sym[0]))
        return strtoll(sym, NULL, 10);
    if (!strcmp(sym, "M"))
        return m;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, sym)) {
            int64_t v;
            memcpy(&v, (const char *)s + table[i].off, sizeof v);
            return v > 0 ? v : -1;
        }
    return -1;
}

/* Parse "[B,C]" with set's bindings; false when a symbol is unbound. */
static bool bind_shape(const char *text, const struct size_set *s,
                       uint32_t *ndim, int64_t *shape)
{
    char sym[32];
    size_t n = 0;
    *ndim = 0;
    if (!text || *text != '[')
        return false;
    for (const char *p = text + 1; *p; p++) {
        if (*p == ',' || *p == ']') {
            int64_t v;
            sym[n] = '\0';
            v = symbol(s, sym, 2);
            if (v < 1 || *ndim >= KDCL_MAX_DIMS)
                return false;
            shape[(*ndim)++] = v;
            n = 0;
            if (*p == ']')
                return true;
        } else if (!isspace((unsigned char)*p) && n + 1 < sizeof sym) {
            sym[n++] = *p;
        }
    }
    return false;
}

struct bench_input {
    char name[64];
    kdcl_tensor *t, *grad;
};

struct bench_result {
    const char *plugin;
    const char *size;
    char shapes[256];
    double ms, gbps, gflops;
    const char *skipped;
};

/* Make one input per bound descriptor; returns the count or -1. */
static int make_inputs(kdcl_context *ctx, kdcl_run *run,
                       const struct kdcl_plugin *p, const struct size_set *s,
                       struct bench_input *ins, int max, char *shapes,
                       size_t shapes_len, const char **why)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    bool has_logits = false;
    int n = 0;
    size_t used = 0;
    shapes[0] = '\0';
    for (uint32_t i = 0; i < p->n_inputs; i++)
        if (!strcmp(kdcl__input_desc(p, i)->name, "student.logits")
            && (kdcl__input_desc(p, i)->flags & KDCL_INPUT_REQUIRED))
            has_logits = true;
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(p, i);
        bool want = (d->flags & KDCL_INPUT_REQUIRED)
                    || ((d->flags & KDCL_INPUT_LABELS) && has_logits);
        int copies = strstr(d->name, ".*.") ? 2 : 1;
        uint32_t ndim;
        int64_t shape[KDCL_MAX_DIMS];
        if (!want)
            continue;
        if (!bind_shape(d->shape, s, &ndim, shape)) {
            *why = "input shape has symbols this size set does not bind";
            return -1;
        }
        for (int c = 0; c < copies && n < max; c++) {
            struct bench_input *in = &ins[n];
            const char *star = strchr(d->name, '*');
            int64_t numel = 1, range = symbol(s, "C", 2);
            if (star && star[-1] == '.')
                snprintf(in->name, sizeof in->name, "%.*s%d%s",
                         (int)(star - d->name), d->name, c, star + 1);
            else if (star)
                snprintf(in->name, sizeof in->name, "%.*s",
                         (int)(star - d->name), d->name);
            else
                snprintf(in->name, sizeof in->name, "%s", d->name);
            for (uint32_t k = 0; k < ndim; k++)
                numel *= shape[k];
            if (!strcmp(d->name, "graph.edges") || strstr(d->name, "edges"))
                range = symbol(s, "N", 2);
            if (kdcl_tensor_init(ctx,
                                 (d->flags & KDCL_INPUT_INT) ? KDCL_DTYPE_I32
                                                             : KDCL_DTYPE_F32,
                                 ndim, shape, &in->t)) {
                *why = kdcl_context_errmsg(ctx);
                return -1;
            }
            n++;
            {
                size_t bytes = kdcl_tensor_bytes(in->t);
                void *buf = malloc(bytes ? bytes : 1);
                int status;
                if (!buf) {
                    *why = "out of host memory";
                    return -1;
                }
                if (d->flags & KDCL_INPUT_INT) {
                    int32_t *v = buf;
                    for (int64_t e = 0; e < numel; e++)
                        v[e] = (int32_t)(rng_next(&seed) % (uint64_t)range);
                } else {
                    float *v = buf;
                    for (int64_t e = 0; e < numel; e++)
                        v[e] = (float)(8.0 * rng_uniform(&seed) - 4.0);
                }
                status = kdcl_tensor_write(in->t, buf, bytes);
                free(buf);
                if (status || kdcl_run_set_input(run, in->name, in->t)) {
                    *why = kdcl_context_errmsg(ctx);
                    return -1;
                }
            }
            if (d->flags & KDCL_INPUT_GRAD) {
                if (kdcl_tensor_init(ctx, KDCL_DTYPE_F32, ndim, shape,
                                     &in->grad)
                    || kdcl_run_set_grad(run, in->name, in->grad)) {
                    *why = kdcl_context_errmsg(ctx);
                    return -1;
                }
            }
            if (used < shapes_len) {
                int w = snprintf(shapes + used, shapes_len - used, "%s%s%s",
                                 used ? " " : "", in->name, d->shape);
                if (w > 0)
                    used += (size_t)w;
            }
        }
    }
    return n;
}

static void bench_plugin(kdcl_context *ctx, const struct kdcl_plugin *p,
                         const struct size_set *s, int reps, double copy_gbps,
                         struct bench_result *r)
{
    struct bench_input ins[16];
    kdcl_run *run = NULL;
    double times[MAX_REPS], flops = 0, bytes = 0, total = 0;
    int n_in, n = 0;
    const char *why = NULL;

    memset(ins, 0, sizeof ins);
    memset(r, 0, sizeof *r);
    r->plugin = p->name;
    r->size = s->label;
    if (kdcl_run_init(ctx, p, NULL, &run)) {
        why = kdcl_context_errmsg(ctx);
        goto out;
    }
    n_in = make_inputs(ctx, run, p, s, ins, 16, r->shapes, sizeof r->shapes,
                       &why);
    if (n_in < 0)
        goto out;
    for (int w = 0; w < 2; w++)
        if (kdcl_run_forward(run) || kdcl_run_backward(run)
            || kdcl_context_finish(ctx)) {
            why = kdcl_context_errmsg(ctx);
            goto out;
        }
    while (n < MAX_REPS && (n < reps || (total < 0.5 && n < 50))) {
        double t0 = now_s();
        if (kdcl_run_forward(run) || kdcl_run_backward(run)
            || kdcl_context_finish(ctx)) {
            why = kdcl_context_errmsg(ctx);
            goto out;
        }
        times[n] = now_s() - t0;
        total += times[n++];
    }
    kdcl_run_cost(run, &flops, &bytes);
    r->ms = median(times, (size_t)n) * 1e3;
    r->gbps = bytes / (r->ms * 1e-3) * 1e-9;
    r->gflops = flops > 0 ? flops / (r->ms * 1e-3) * 1e-9 : 0;
    (void)copy_gbps;
out:
    if (why) {
        static char msg[16][512];
        static int slot;
        snprintf(msg[slot], sizeof msg[slot], "%s", why);
        /* keep the first line */
        msg[slot][strcspn(msg[slot], "\n")] = '\0';
        r->skipped = msg[slot];
        slot = (slot + 1) % 16;
    }
    kdcl_run_free(run);
    for (int i = 0; i < 16; i++) {
        kdcl_tensor_free(ins[i].t);
        kdcl_tensor_free(ins[i].grad);
    }
}

/* ---------------------------------------------------------------------- */
/* GEMM and training steps                                                 */

/* GFLOP/s of C[m,n] = A[m,k] B[k,n] with the active provider. */
static int bench_gemm(kdcl_context *ctx, size_t m, size_t n, size_t k,
                      int reps, double *gflops)
{
    int64_t as[2] = {(int64_t)m, (int64_t)k}, bs[2] = {(int64_t)k,
                                                        (int64_t)n},
            cs[2] = {(int64_t)m, (int64_t)n};
    kdcl_tensor *a = NULL, *b = NULL, *c = NULL;
    double t[MAX_REPS];
    int status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, as, &a);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, bs, &b);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, cs, &c);
    if (!status)
        status = kdcl_tensor_fill(a, 0.5);
    if (!status)
        status = kdcl_tensor_fill(b, 0.25);
    for (int r = 0; !status && r < reps + 2; r++) {
        double t0 = now_s();
        status = kdcl_gemm(ctx, 0, 0, m, n, k, 1.0f, a, 0, k, b, 0, n, 0.0f,
                           c, 0, n);
        if (!status)
            status = kdcl_context_finish(ctx);
        if (r >= 2)
            t[r - 2] = now_s() - t0;
    }
    if (!status)
        *gflops = 2.0 * (double)m * (double)n * (double)k
                  / median(t, (size_t)reps) * 1e-9;
    kdcl_tensor_free(a);
    kdcl_tensor_free(b);
    kdcl_tensor_free(c);
    return status;
}

static void gemm_section(kdcl_context *ctx, int reps, cJSON *doc)
{
    static const struct {
        const char *what;
        size_t m, n, k;
    } shapes[] = {
        {"square 512", 512, 512, 512},
        {"square 1024", 1024, 1024, 1024},
        {"lenet5 conv1 fwd", 128 * 784, 6, 25},
        {"lenet5 conv2 fwd", 128 * 100, 16, 150},
        {"lenet5 conv2 dW", 16, 150, 128 * 100},
        {"mlp 784-1200 fwd", 128, 1200, 784},
    };
    const bool cpu = kdcl_context_device(ctx)->type == KDCL_DEVICE_CPU;
    const char *saved = getenv("KDCL_GEMM");
    cJSON *arr = cJSON_AddArrayToObject(doc, "gemm");
    if (cpu && kdcl__host_blas()) {
        printf("\nhost BLAS: %s\n", kdcl__host_blas());
        cJSON_AddStringToObject(doc, "host_blas", kdcl__host_blas());
    }
    printf("\n%-20s %22s %10s %10s\n", "gemm", "m x n x k", "GFLOP/s",
           cpu ? "CLBlast" : "");
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        double g = 0, gc = 0;
        char dims[64];
        cJSON *o = cJSON_CreateObject();
        snprintf(dims, sizeof dims, "%zux%zux%zu", shapes[i].m, shapes[i].n,
                 shapes[i].k);
        if (bench_gemm(ctx, shapes[i].m, shapes[i].n, shapes[i].k, reps, &g))
            g = 0;
        if (cpu) {
            /* The same product through CLBlast, for the comparison. */
            setenv("KDCL_GEMM", "clblast", 1);
            if (bench_gemm(ctx, shapes[i].m, shapes[i].n, shapes[i].k, reps,
                           &gc))
                gc = 0;
            if (saved)
                setenv("KDCL_GEMM", saved, 1);
            else
                unsetenv("KDCL_GEMM");
        }
        printf("%-20s %22s %10.1f", shapes[i].what, dims, g);
        if (cpu)
            printf(" %10.1f", gc);
        printf("\n");
        fflush(stdout);
        cJSON_AddStringToObject(o, "shape", shapes[i].what);
        cJSON_AddStringToObject(o, "mnk", dims);
        cJSON_AddNumberToObject(o, "gflops", g);
        if (cpu)
            cJSON_AddNumberToObject(o, "clblast_gflops", gc);
        cJSON_AddItemToArray(arr, o);
    }
}

/* What a training step's profile holds, per layer type: milliseconds
   per step and the FLOPs of one step (0: not counted). */
#define N_PARTS 5
static const char *const part_names[N_PARTS] = {
    "conv fwd", "conv bwd", "linear fwd", "linear bwd", "other"};
static const char *const part_ops[N_PARTS - 1] = {
    "host_conv_forward", "host_conv_backward", "host_linear_forward",
    "host_linear_backward"};

struct step_profile {
    double ms[N_PARTS], flops[N_PARTS];
};

/* A distillation step's teacher (frozen) and its KD loss. */
struct kd_step {
    struct kdcl__model *teacher;
    kdcl_run *run;
};

/* The loss of a distillation step, as kdcl distill runs it: the
   teacher's forward pass, then the plugin's (kdcl__kd_loss), which writes
   the gradient of the student's logits into dl. */
static int kd_loss(struct kd_step *kd, struct kdcl__model *student,
                   const kdcl_tensor *x, const kdcl_tensor *y,
                   const kdcl_tensor *logits, kdcl_tensor *dl, int64_t B)
{
    const kdcl_tensor *tlog;
    double loss;
    int status = kdcl__model_forward(kd->teacher, x, B, 0, &tlog);
    if (!status)
        status = kdcl__kd_loss(kd->run, student, kd->teacher, logits, tlog,
                               y, dl, &loss);
    return status;
}

/* One training step: forward, cross-entropy (or, with kd, the
   distillation loss), backward, SGD. */
static int train_step(kdcl_context *ctx, struct kdcl__model *m,
                      struct kdcl__opt *opt, struct kd_step *kd,
                      const kdcl_tensor *x, const kdcl_tensor *y,
                      kdcl_tensor *dl, kdcl_tensor *rows, int64_t B)
{
    const kdcl_tensor *logits;
    const char *name;
    kdcl_tensor *val, *grad;
    int status = kdcl__model_forward(m, x, B, 1, &logits);
    if (!status)
        status = kd ? kd_loss(kd, m, x, y, logits, dl, B)
                    : kdcl__ce_rows(ctx, logits, y, dl, rows, B, 10);
    if (!status)
        status = kdcl__model_backward(m, dl);
    for (size_t i = 0;
         !status && kdcl__model_param(m, i, &name, &val, &grad) == 0; i++)
        status = kdcl__opt_step(opt, val, grad, 0.01);
    if (!status)
        status = kdcl_context_finish(ctx);
    return status;
}

/* reps more steps with profiling on: the time of each layer type's host
   work (the host path of CPU devices; on other devices its kernels and
   GEMMs all count as "other"). */
static int profile_steps(kdcl_context *ctx, struct kdcl__model *m,
                         struct kdcl__opt *opt, struct kd_step *kd,
                         const kdcl_tensor *x,
                         const kdcl_tensor *y, kdcl_tensor *dl,
                         kdcl_tensor *rows, int64_t B, int reps,
                         struct step_profile *p)
{
    const struct kdcl_profile_record *rec;
    size_t n;
    int status = KDCL_OK;
    memset(p, 0, sizeof *p);
    kdcl__model_flops(m, B, p->flops);
    if (kd) { /* the teacher's forward pass counts with the student's */
        double t[4];
        kdcl__model_flops(kd->teacher, B, t);
        p->flops[0] += t[0];
        p->flops[2] += t[2];
    }
    kdcl_context_profile_clear(ctx);
    kdcl_context_set_profiling(ctx, 1);
    for (int r = 0; !status && r < reps; r++)
        status = train_step(ctx, m, opt, kd, x, y, dl, rows, B);
    if (!status)
        status = kdcl_context_profile(ctx, &rec, &n);
    for (size_t i = 0; !status && i < n; i++) {
        int k = 0;
        while (k < N_PARTS - 1 && strcmp(rec[i].name, part_ops[k]))
            k++;
        p->ms[k] += (double)rec[i].ns * 1e-6 / reps;
    }
    kdcl_context_set_profiling(ctx, 0);
    kdcl_context_profile_clear(ctx);
    return status;
}

/* Median time of one training step (forward, CE, backward, SGD) of a
   built-in architecture on random data, and its profile; with a teacher
   architecture and a plugin, of a distillation step (the teacher keeps
   its random initialisation: the time does not depend on its weights). */
static int bench_train_step(kdcl_context *ctx, const char *spec_json,
                            const char *teacher_json,
                            const struct kdcl_plugin *plugin,
                            const char *const *sets, int64_t B, int reps,
                            double *ms, struct step_profile *prof)
{
    struct kd_step kd = {NULL, NULL};
    kdcl_params *params = NULL;
    cJSON *tspec = teacher_json ? cJSON_Parse(teacher_json) : NULL;
    struct kdcl__dataset d;
    struct kdcl__model *m = NULL;
    struct kdcl__opt *opt = NULL;
    struct kdcl__opt_spec os = {KDCL__OPT_SGD, 0.01, 0.9, 0, 5e-4, 0, 0, 0};
    cJSON *spec = cJSON_Parse(spec_json);
    char err[512];
    int64_t xs[2] = {B, 784}, ls[2] = {B, 10};
    kdcl_tensor *x = NULL, *y = NULL, *dl = NULL, *rows = NULL;
    float *host = malloc((size_t)(B * 784) * sizeof *host);
    int32_t *lab = malloc((size_t)B * sizeof *lab);
    uint64_t seed = 1;
    double t[MAX_REPS];
    int status;

    memset(&d, 0, sizeof d);
    d.ndim = 3;
    d.shape[0] = 1;
    d.shape[1] = d.shape[2] = 28;
    d.per = 784;
    d.classes = 10;
    if (!host || !lab || !spec) {
        status = KDCL_ENOMEM;
        goto out;
    }
    for (int64_t i = 0; i < B * 784; i++)
        host[i] = (float)(2.0 * rng_uniform(&seed) - 1.0);
    for (int64_t i = 0; i < B; i++)
        lab[i] = (int32_t)(rng_next(&seed) % 10);
    status = kdcl__arch_build(ctx, spec, "bench", &d, 1, &m, err, sizeof err);
    if (!status && teacher_json)
        status = tspec ? kdcl__arch_build(ctx, tspec, "bench teacher", &d, 2,
                                          &kd.teacher, err, sizeof err)
                       : KDCL_ENOMEM;
    if (!status && plugin)
        status = kdcl_params_init(ctx, plugin, &params);
    for (size_t i = 0; !status && plugin && sets[i]; i++)
        status = kdcl_params_set_kv(params, sets[i]);
    if (!status && plugin)
        status = kdcl_run_init(ctx, plugin, params, &kd.run);
    if (!status)
        status = kdcl__opt_init(ctx, &os, &opt);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, xs, &x);
    if (!status)
        status = kdcl_tensor_write(x, host, kdcl_tensor_bytes(x));
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, &B, &y);
    if (!status)
        status = kdcl_tensor_write(y, lab, kdcl_tensor_bytes(y));
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, ls, &dl);
    if (!status)
        status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, &B, &rows);
    for (int r = 0; !status && r < reps + 2; r++) {
        double t0 = now_s();
        status = train_step(ctx, m, opt, kd.run ? &kd : NULL, x, y, dl, rows,
                            B);
        if (r >= 2)
            t[r - 2] = now_s() - t0;
    }
    if (!status)
        status = profile_steps(ctx, m, opt, kd.run ? &kd : NULL, x, y, dl,
                               rows, B, reps, prof);
    if (!status)
        *ms = median(t, (size_t)reps) * 1e3;
out:
    kdcl_tensor_free(x);
    kdcl_tensor_free(y);
    kdcl_tensor_free(dl);
    kdcl_tensor_free(rows);
    kdcl__opt_free(opt);
    kdcl__model_free(m);
    kdcl__model_free(kd.teacher);
    kdcl_run_free(kd.run);
    kdcl_params_free(params);
    cJSON_Delete(spec);
    cJSON_Delete(tspec);
    free(host);
    free(lab);
    return status;
}

static void train_section(kdcl_context *ctx, kdcl_registry *reg, int reps,
                          cJSON *doc)
{
    /* The last: the main job's distillation step, LeNet-5 teaching
       LeNet-5-half with hinton at its config's T and alpha. */
    static const char *const kd_sets[] = {"temperature=2", "alpha=0.5",
                                          NULL};
    static const struct {
        const char *what;
        const char *spec;
        const char *teacher;
    } models[] = {
        {"lenet5", "{\"arch\": \"lenet5\"}", NULL},
        {"lenet5-half", "{\"arch\": \"lenet5\", \"width\": 0.5}", NULL},
        {"mlp 784-1200-1200-10", "{\"arch\": \"mlp\"}", NULL},
        {"mlp 784-32-10", "{\"arch\": \"mlp\", \"hidden\": [32]}", NULL},
        {"kd lenet5->half hinton",
         "{\"arch\": \"lenet5\", \"width\": 0.5}",
         "{\"arch\": \"lenet5\"}"},
    };
    const struct kdcl_plugin *hinton = kdcl_registry_find(reg, "hinton");
    cJSON *arr = cJSON_AddArrayToObject(doc, "train_step");
    printf("\n%-24s %8s %12s %12s\n", "training step (B=128)", "", "median ms",
           "samples/s");
    struct step_profile prof[sizeof models / sizeof models[0]];
    int ok[sizeof models / sizeof models[0]];
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        double ms = 0;
        cJSON *o = cJSON_CreateObject();
        int status;
        if (models[i].teacher && !hinton) {
            ok[i] = 0;
            printf("%-24s skipped: the hinton plugin is not loaded\n",
                   models[i].what);
            cJSON_Delete(o);
            continue;
        }
        status = bench_train_step(ctx, models[i].spec, models[i].teacher,
                                  models[i].teacher ? hinton : NULL, kd_sets,
                                  128, reps, &ms, &prof[i]);
        ok[i] = !status;
        if (status)
            printf("%-24s skipped: %s\n", models[i].what,
                   kdcl_context_errmsg(ctx));
        else
            printf("%-24s %8s %12.2f %12.0f\n", models[i].what, "", ms,
                   128.0 / (ms * 1e-3));
        fflush(stdout);
        cJSON_AddStringToObject(o, "model", models[i].what);
        cJSON_AddNumberToObject(o, "median_ms", status ? 0 : ms);
        cJSON_AddNumberToObject(o, "samples_per_s",
                                status ? 0 : 128.0 / (ms * 1e-3));
        if (!status) {
            cJSON *parts = cJSON_AddArrayToObject(o, "layers");
            for (int k = 0; k < N_PARTS; k++) {
                cJSON *q = cJSON_CreateObject();
                cJSON_AddStringToObject(q, "layer", part_names[k]);
                cJSON_AddNumberToObject(q, "ms", prof[i].ms[k]);
                cJSON_AddNumberToObject(
                    q, "gflops",
                    prof[i].ms[k] > 0 ? prof[i].flops[k] / prof[i].ms[k] * 1e-6
                                      : 0);
                cJSON_AddItemToArray(parts, q);
            }
        }
        cJSON_AddItemToArray(arr, o);
    }
    /* Per layer type, from further steps with profiling on. */
    printf("\n%-24s", "per step: ms (GFLOP/s)");
    for (int k = 0; k < N_PARTS; k++)
        printf(" %16s", part_names[k]);
    printf("\n");
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        if (!ok[i])
            continue;
        printf("%-24s", models[i].what);
        for (int k = 0; k < N_PARTS; k++) {
            char cell[32];
            if (prof[i].ms[k] > 0 && prof[i].flops[k] > 0)
                snprintf(cell, sizeof cell, "%.2f (%.0f)", prof[i].ms[k],
                         prof[i].flops[k] / prof[i].ms[k] * 1e-6);
            else if (prof[i].flops[k] > 0 || k == N_PARTS - 1)
                snprintf(cell, sizeof cell, "%.2f", prof[i].ms[k]);
            else
                snprintf(cell, sizeof cell, "-");
            printf(" %16s", cell);
        }
        printf("\n");
    }
}

static const char bench_help[] =
    "usage: kdcl bench [options]\n"
    "\n"
    "Measures the device's copy bandwidth with a stream kernel, then each\n"
    "plugin's forward+backward at standard shapes (median after warm-up),\n"
    "with effective GB/s and its ratio to the copy bandwidth.\n"
    "\n"
    "  --device SPEC      device to measure (default auto)\n"
    "  --plugin NAME      only this plugin (repeatable)\n"
    "  --size LABEL       only this size set (repeatable): 256x100,\n"
    "                     256x1000, 1024x32000, 4096x32000, 1024x128256\n"
    "  --reps N           timed repetitions at least (default 5)\n"
    "  --gemm             also measure GEMM (on CPU devices: host BLAS and\n"
    "                     CLBlast side by side)\n"
    "  --train            also measure training steps of the built-in\n"
    "                     models and the main job's distillation step\n"
    "                     (samples per second; time and GFLOP/s per\n"
    "                     layer type)\n"
    "  --no-plugins       skip the plugin measurements\n"
    "  --plugin-dir DIR   look for plugins in DIR first\n"
    "  --json OUT.json    also write the results as JSON\n";

static bool listed(const struct cli_list *l, const char *s)
{
    if (l->n == 0)
        return true;
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i], s))
            return true;
    return false;
}

int cli_bench(int argc, char **argv)
{
    static const struct option opts[] = {
        {"device", required_argument, NULL, 'D'},
        {"plugin", required_argument, NULL, 'p'},
        {"size", required_argument, NULL, 'z'},
        {"reps", required_argument, NULL, 'r'},
        {"plugin-dir", required_argument, NULL, 'd'},
        {"json", required_argument, NULL, 'j'},
        {"gemm", no_argument, NULL, 'G'},
        {"train", no_argument, NULL, 'T'},
        {"no-plugins", no_argument, NULL, 'N'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct cli_list plugins = {0}, dirs = {0}, want_sizes = {0};
    bool do_gemm = false, do_train = false, do_plugins = true;
    const char *device = "auto", *json_path = NULL;
    int reps = 5, c, rc = CLI_FAIL;
    kdcl_registry *reg = NULL;
    kdcl_context *ctx = NULL;
    double copy_gbps = 0;
    cJSON *doc = NULL, *arr;

    optind = 1;
    while ((c = getopt_long(argc, argv, "D:p:z:r:d:j:GTNh", opts, NULL))
           != -1) {
        switch (c) {
        case 'G': do_gemm = true; break;
        case 'T': do_train = true; break;
        case 'N': do_plugins = false; break;
        case 'D': device = optarg; break;
        case 'p': cli_list_add(&plugins, optarg); break;
        case 'z': cli_list_add(&want_sizes, optarg); break;
        case 'r':
            reps = atoi(optarg);
            if (reps < 1 || reps > MAX_REPS) {
                rc = cli_usage("bench", "--reps takes 1..200");
                goto out;
            }
            break;
        case 'd': cli_list_add(&dirs, optarg); break;
        case 'j': json_path = optarg; break;
        case 'h':
            fputs(bench_help, stdout);
            rc = CLI_OK;
            goto out;
        default:
            rc = cli_usage("bench", "unknown option");
            goto out;
        }
    }
    if (optind < argc) {
        rc = cli_usage("bench", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    for (size_t i = 0; i < want_sizes.n; i++) {
        bool ok = false;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
            ok = ok || !strcmp(sizes[s].label, want_sizes.v[i]);
        if (!ok) {
            rc = cli_usage("bench", "unknown size set '%s'", want_sizes.v[i]);
            goto out;
        }
    }
    reg = cli_registry(dirs.v, dirs.n);
    if (!reg)
        goto out;
    for (size_t i = 0; i < plugins.n; i++)
        if (!kdcl_registry_find(reg, plugins.v[i])) {
            cli_error("unknown plugin '%s'", plugins.v[i]);
            goto out;
        }
    /* Training steps alone are measured as kdcl train runs them; beside
       plugins or GEMM, PoCL keeps the threads those are measured with. */
    if (do_train && !do_plugins && !do_gemm)
        cli_training_threads();
    ctx = cli_open(device);
    if (!ctx)
        goto out;
    printf("device: %s (%s, %s)\n", kdcl_context_device(ctx)->name,
           kdcl_context_device(ctx)->platform_name,
           kdcl_context_device(ctx)->driver_version);
    if (copy_bandwidth(ctx, 10, &copy_gbps)) {
        cli_error("copy bandwidth: %s", kdcl_context_errmsg(ctx));
        goto out;
    }
    printf("copy bandwidth: %.2f GB/s (stream kernel, best of 10)\n\n",
           copy_gbps);
    doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "device",
                          cli_device_json(kdcl_context_device(ctx)));
    cJSON_AddNumberToObject(doc, "copy_gbps", copy_gbps);
    arr = cJSON_AddArrayToObject(doc, "results");
    if (do_plugins) {
        printf("%-14s %-12s %10s %9s %7s %9s  %s\n", "plugin", "size",
               "median ms", "GB/s", "of copy", "GFLOP/s", "inputs");
        fflush(stdout);
    }
    for (size_t i = 0; do_plugins && i < kdcl_registry_count(reg); i++) {
        const struct kdcl_plugin *p = kdcl_registry_get(reg, i, NULL);
        if (!listed(&plugins, p->name))
            continue;
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            struct bench_result r;
            cJSON *o;
            if (!listed(&want_sizes, sizes[s].label))
                continue;
            if (sizes[s].llm_only && strcmp(p->family, "llm") != 0)
                continue;
            bench_plugin(ctx, p, &sizes[s], reps, copy_gbps, &r);
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "plugin", r.plugin);
            cJSON_AddStringToObject(o, "size", r.size);
            cJSON_AddStringToObject(o, "inputs", r.shapes);
            if (r.skipped) {
                printf("%-14s %-12s skipped: %s\n", r.plugin, r.size,
                       r.skipped);
                cJSON_AddStringToObject(o, "skipped", r.skipped);
            } else {
                char gf[32] = "-";
                if (r.gflops > 0)
                    snprintf(gf, sizeof gf, "%.1f", r.gflops);
                printf("%-14s %-12s %10.3f %9.2f %6.0f%% %9s  %s\n", r.plugin,
                       r.size, r.ms, r.gbps, 100.0 * r.gbps / copy_gbps, gf,
                       r.shapes);
                cJSON_AddNumberToObject(o, "median_ms", r.ms);
                cJSON_AddNumberToObject(o, "gbps", r.gbps);
                cJSON_AddNumberToObject(o, "ratio_to_copy",
                                        r.gbps / copy_gbps);
                cJSON_AddNumberToObject(o, "gflops", r.gflops);
            }
            cJSON_AddItemToArray(arr, o);
            fflush(stdout);
        }
    }
    if (do_gemm)
        gemm_section(ctx, reps, doc);
    if (do_train)
        train_section(ctx, reg, reps, doc);
    rc = CLI_OK;
    if (json_path) {
        rc = cli_json_write(doc, json_path);
        doc = NULL;
    }
out:
    cJSON_Delete(doc);
    kdcl_context_free(ctx);
    kdcl_registry_free(reg);
    cli_list_free(&plugins);
    cli_list_free(&dirs);
    cli_list_free(&want_sizes);
    return rc;
}
