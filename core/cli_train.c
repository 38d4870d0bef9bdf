/*
 * core/cli_train.c - `kdcl train CONFIG.yaml` (a model from scratch with
 * cross-entropy) and `kdcl distill CONFIG.yaml` (a student from a teacher
 * through a plugin, optionally with the same student trained alone as a
 * baseline): YAML config with --set overrides, a progress bar on a
 * terminal, per-epoch lines otherwise, and a JSON summary.
 */
#include "cli.h"
#include "params.h"
#include "train.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char train_help[] =
    "usage: kdcl train CONFIG.yaml [--set KEY=VALUE]... [--json OUT.json]\n"
    "       kdcl distill CONFIG.yaml [--set KEY=VALUE]... [--baseline]\n"
    "                    [--json OUT.json]\n"
    "\n"
    "train trains the `model` section with cross-entropy; distill trains\n"
    "the `student` section from the `teacher` through the `plugin`\n"
    "(training the teacher first, and caching it, when its weights file\n"
    "does not exist).  Keys (dotted for --set, e.g. train.epochs=3):\n"
    "  device, seed\n"
    "  data.dir (default /usr/share/datasets/fashion-mnist), data.batch_size,\n"
    "  data.mean, data.std, data.limit, data.test_limit, data.validation,\n"
    "      data.student_limit (distill: the students train on the first N\n"
    "      training samples, the teacher on all)\n"
    "  model|teacher|student: arch (mlp|lenet5|custom), width, hidden,\n"
    "      sizes, dropout, layers, taps; teacher.weights, teacher.epochs\n"
    "  plugin.name, plugin.params.<name>, plugin.dir\n"
    "  train.epochs, train.optimizer (sgd|adam), train.lr, train.momentum,\n"
    "      train.nesterov, train.weight_decay, train.schedule\n"
    "      (const|step|cosine), train.step_size, train.gamma, train.min_lr\n"
    "  output.weights (the trained model / student, safetensors)\n"
    "  --baseline  also train the student alone (same seed) and compare\n"
    "  --json OUT  write a summary: accuracies, epochs, seconds, device,\n"
    "              plugin, params\n";

/* Settings shared by every fit of a command. */
struct run_cfg {
    cJSON *cfg;
    kdcl_context *ctx;
    struct kdcl__dataset train, val, test;
    struct kdcl__devdata dtrain, dtest, dval;
    int has_val;
    int64_t batch, epochs;
    uint64_t seed;
    struct kdcl__opt_spec opt;
    struct kdcl__sched sched;
    bool tty;
    const char *label;
};

static void progress(void *user, const struct kdcl__progress *p)
{
    struct run_cfg *rc = user;
    double frac = ((double)p->epoch + (double)p->step / (double)p->steps)
                  / (double)p->epochs;
    double eta = frac > 0 ? p->seconds * (1 - frac) / frac : 0;
    if (rc->tty) {
        char bar[21];
        int fill = (int)(20.0 * (double)p->step / (double)p->steps);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        fprintf(stderr,
                "\r%-8s epoch %lld/%lld [%s] %lld/%lld loss %.4f ETA "
                "%02d:%02d   ",
                rc->label, (long long)p->epoch + 1, (long long)p->epochs, bar,
                (long long)p->step, (long long)p->steps, p->loss,
                (int)(eta / 60), (int)fmod(eta, 60));
    }
    if (p->accuracy >= 0) {
        if (rc->tty)
            fputc('\r', stderr);
        fprintf(stderr,
                "%-8s epoch %lld/%lld loss %.4f %s %.2f%% (%.1f s, ETA "
                "%02d:%02d)%s\n",
                rc->label, (long long)p->epoch + 1, (long long)p->epochs,
                p->loss, rc->has_val ? "validation" : "test",
                100.0 * p->accuracy, p->seconds, (int)(eta / 60),
                (int)fmod(eta, 60), rc->tty ? "                    " : "");
    }
    fflush(stderr);
}

static int read_settings(struct run_cfg *rc, char *err, size_t len)
{
    static const char *const top[] = {"device", "seed", "data", "model",
                                      "teacher", "student", "plugin",
                                      "train", "output", NULL};
    static const char *const data_keys[] = {
        "dir",        "batch_size", "mean",          "std", "limit",
        "test_limit", "validation", "student_limit", NULL};
    static const char *const train_keys[] = {
        "epochs",   "optimizer", "lr",        "momentum", "nesterov",
        "weight_decay", "schedule", "step_size", "gamma", "min_lr",
        "beta1", "beta2", "eps", NULL};
    const cJSON *c = rc->cfg;
    const char *s;
    int64_t v;
    int status, b;

    if ((status = kdcl__config_check_keys(c, NULL, top, err, len))
        || (status = kdcl__config_check_keys(kdcl__config_get(c, "data"),
                                             "data", data_keys, err, len))
        || (status = kdcl__config_check_keys(kdcl__config_get(c, "train"),
                                             "train", train_keys, err, len)))
        return status;
    if ((status = kdcl__config_int(c, "seed", 1, 0, INT64_MAX / 2, &v, err,
                                   len)))
        return status;
    rc->seed = (uint64_t)v;
    if ((status = kdcl__config_int(c, "data.batch_size", 128, 1, 1 << 16,
                                   &rc->batch, err, len))
        || (status = kdcl__config_int(c, "train.epochs", 10, 0, 100000,
                                      &rc->epochs, err, len)))
        return status;
    memset(&rc->opt, 0, sizeof rc->opt);
    s = kdcl__config_str(c, "train.optimizer", "sgd");
    if (!strcmp(s, "sgd"))
        rc->opt.kind = KDCL__OPT_SGD;
    else if (!strcmp(s, "adam"))
        rc->opt.kind = KDCL__OPT_ADAM;
    else {
        snprintf(err, len, "config train.optimizer: '%s' is not sgd or adam",
                 s);
        return KDCL_EINVAL;
    }
    if ((status = kdcl__config_num(c, "train.lr",
                                   rc->opt.kind == KDCL__OPT_SGD ? 0.05
                                                                 : 1e-3,
                                   0, 10, &rc->opt.lr, err, len))
        || (status = kdcl__config_num(c, "train.momentum", 0.9, 0, 1,
                                      &rc->opt.momentum, err, len))
        || (status = kdcl__config_bool(c, "train.nesterov", 0, &b, err, len))
        || (status = kdcl__config_num(c, "train.weight_decay", 5e-4, 0, 1,
                                      &rc->opt.weight_decay, err, len))
        || (status = kdcl__config_num(c, "train.beta1", 0.9, 0, 1,
                                      &rc->opt.beta1, err, len))
        || (status = kdcl__config_num(c, "train.beta2", 0.999, 0, 1,
                                      &rc->opt.beta2, err, len))
        || (status = kdcl__config_num(c, "train.eps", 1e-8, 0, 1,
                                      &rc->opt.eps, err, len)))
        return status;
    rc->opt.nesterov = b;
    memset(&rc->sched, 0, sizeof rc->sched);
    rc->sched.base_lr = rc->opt.lr;
    s = kdcl__config_str(c, "train.schedule", "cosine");
    if (!strcmp(s, "const"))
        rc->sched.kind = KDCL__SCHED_CONST;
    else if (!strcmp(s, "step"))
        rc->sched.kind = KDCL__SCHED_STEP;
    else if (!strcmp(s, "cosine"))
        rc->sched.kind = KDCL__SCHED_COSINE;
    else {
        snprintf(err, len,
                 "config train.schedule: '%s' is not const, step or cosine",
                 s);
        return KDCL_EINVAL;
    }
    rc->sched.total = rc->epochs;
    if ((status = kdcl__config_int(c, "train.step_size", 10, 1, 100000,
                                   &rc->sched.step_size, err, len))
        || (status = kdcl__config_num(c, "train.gamma", 0.1, 0, 1,
                                      &rc->sched.gamma, err, len))
        || (status = kdcl__config_num(c, "train.min_lr", 0, 0, 10,
                                      &rc->sched.min_lr, err, len)))
        return status;
    return KDCL_OK;
}

static int load_data(struct run_cfg *rc, char *err, size_t len)
{
    const cJSON *c = rc->cfg;
    const char *dir = kdcl__config_str(c, "data.dir",
                                       "/usr/share/datasets/fashion-mnist");
    double mean, std;
    int64_t limit, test_limit, val;
    int status;
    if ((status = kdcl__config_num(c, "data.mean", 0.2860, -1e6, 1e6, &mean,
                                   err, len))
        || (status = kdcl__config_num(c, "data.std", 0.3530, 1e-9, 1e6, &std,
                                      err, len))
        || (status = kdcl__config_int(c, "data.limit", 0, 0, INT32_MAX,
                                      &limit, err, len))
        || (status = kdcl__config_int(c, "data.test_limit", 0, 0, INT32_MAX,
                                      &test_limit, err, len))
        || (status = kdcl__config_int(c, "data.validation", 0, 0, INT32_MAX,
                                      &val, err, len)))
        return status;
    if ((status = kdcl__dataset_load(dir, 1, mean, std, limit, &rc->train,
                                     err, len))
        || (status = kdcl__dataset_load(dir, 0, mean, std, test_limit,
                                        &rc->test, err, len)))
        return status;
    if (val > 0) {
        if ((status = kdcl__dataset_split(&rc->train, val, &rc->val, err,
                                          len)))
            return status;
        rc->has_val = 1;
    }
    status = kdcl__devdata_init(rc->ctx, &rc->train, &rc->dtrain);
    if (!status)
        status = kdcl__devdata_init(rc->ctx, &rc->test, &rc->dtest);
    if (!status && rc->has_val)
        status = kdcl__devdata_init(rc->ctx, &rc->val, &rc->dval);
    if (status)
        snprintf(err, len, "%s", kdcl_context_errmsg(rc->ctx));
    return status;
}

/* Train m with cross-entropy for epochs; returns the final accuracy. */
static int fit_plain(struct run_cfg *rc, struct kdcl__model *m,
                     int64_t epochs, const char *label, double *acc,
                     double *seconds, char *err, size_t len)
{
    struct kdcl__fit f;
    int status;
    memset(&f, 0, sizeof f);
    f.ctx = rc->ctx;
    f.student = m;
    f.opt = rc->opt;
    f.sched = rc->sched;
    f.sched.total = epochs;
    f.epochs = epochs;
    f.batch = rc->batch;
    f.seed = rc->seed;
    f.train = &rc->dtrain;
    f.test = rc->has_val ? &rc->dval : &rc->dtest;
    f.progress = progress;
    f.user = rc;
    rc->label = label;
    status = kdcl__fit_run(&f, err, len);
    if (!status)
        status = kdcl__evaluate(rc->ctx, m, &rc->dtest, rc->batch, acc);
    *seconds = f.seconds;
    free(f.epoch_accuracy);
    return status;
}

/* With KDCL_PROFILE=1: device time per kernel, largest first. */
static void print_profile(kdcl_context *ctx)
{
    const struct kdcl_profile_record *r;
    size_t n;
    struct agg {
        const char *name;
        double ms;
        size_t calls;
    } a[128];
    size_t na = 0;
    double total = 0;
    const char *e = getenv("KDCL_PROFILE");
    if (!e || strcmp(e, "1") != 0 || kdcl_context_profile(ctx, &r, &n))
        return;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < na && strcmp(a[j].name, r[i].name))
            j++;
        if (j == na && na < 128) {
            a[na].name = r[i].name;
            a[na].ms = 0;
            a[na++].calls = 0;
        }
        if (j < na) {
            a[j].ms += (double)r[i].ns * 1e-6;
            a[j].calls++;
        }
        total += (double)r[i].ns * 1e-6;
    }
    for (size_t i = 0; i < na; i++)
        for (size_t j = i + 1; j < na; j++)
            if (a[j].ms > a[i].ms) {
                struct agg t = a[i];
                a[i] = a[j];
                a[j] = t;
            }
    fprintf(stderr, "profile: %.1f ms of device time in %zu launches\n",
            total, n);
    for (size_t i = 0; i < na && i < 20; i++)
        fprintf(stderr, "  %-24s %9.1f ms %5.1f%% %7zu calls\n", a[i].name,
                a[i].ms, 100.0 * a[i].ms / (total > 0 ? total : 1),
                a[i].calls);
}

static void free_run(struct run_cfg *rc)
{
    if (rc->ctx)
        print_profile(rc->ctx);
    kdcl__devdata_free(&rc->dtrain);
    kdcl__devdata_free(&rc->dtest);
    kdcl__devdata_free(&rc->dval);
    kdcl__dataset_free(&rc->train);
    kdcl__dataset_free(&rc->test);
    kdcl__dataset_free(&rc->val);
    kdcl_context_free(rc->ctx);
    cJSON_Delete(rc->cfg);
}

/* Parse argv: CONFIG, --set..., --json, --baseline. */
static int parse_args(const char *cmd, int argc, char **argv, cJSON **cfg,
                      const char **json, int *baseline)
{
    static const struct option opts[] = {
        {"set", required_argument, NULL, 's'},
        {"json", required_argument, NULL, 'j'},
        {"baseline", no_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct cli_list sets = {0};
    char err[1024];
    int c, rc = -1;
    optind = 1;
    *json = NULL;
    *baseline = 0;
    while ((c = getopt_long(argc, argv, "s:j:bh", opts, NULL)) != -1) {
        if (c == 's')
            cli_list_add(&sets, optarg);
        else if (c == 'j')
            *json = optarg;
        else if (c == 'b' && !strcmp(cmd, "distill"))
            *baseline = 1;
        else if (c == 'h') {
            fputs(train_help, stdout);
            rc = CLI_OK;
            goto out;
        } else {
            rc = cli_usage(cmd, "unknown option");
            goto out;
        }
    }
    if (optind != argc - 1) {
        rc = cli_usage(cmd, "takes one CONFIG.yaml");
        goto out;
    }
    if (kdcl__config_load(argv[optind], cfg, err, sizeof err)) {
        rc = cli_error("%s", err);
        goto out;
    }
    for (size_t i = 0; i < sets.n; i++)
        if (kdcl__config_set(*cfg, sets.v[i], err, sizeof err)) {
            rc = cli_error("%s", err);
            cJSON_Delete(*cfg);
            *cfg = NULL;
            goto out;
        }
out:
    cli_list_free(&sets);
    return rc;
}

static cJSON *summary_base(struct run_cfg *rc)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "device",
                          cli_device_json(kdcl_context_device(rc->ctx)));
    cJSON_AddNumberToObject(doc, "epochs", (double)rc->epochs);
    cJSON_AddNumberToObject(doc, "seed", (double)rc->seed);
    cJSON_AddItemToObject(doc, "config", cJSON_Duplicate(rc->cfg, 1));
    return doc;
}

static int open_run(struct run_cfg *rc, char *err, size_t len)
{
    int status;
    rc->tty = isatty(STDERR_FILENO);
    if ((status = read_settings(rc, err, len)))
        return status;
    cli_training_threads();
    rc->ctx = cli_open(kdcl__config_str(rc->cfg, "device", "auto"));
    if (!rc->ctx) {
        snprintf(err, len, "no device");
        return KDCL_ENODEV;
    }
    if (getenv("KDCL_PROFILE"))
        kdcl_context_set_profiling(rc->ctx, 1);
    return load_data(rc, err, len);
}

int cli_train(int argc, char **argv)
{
    struct run_cfg rc;
    const char *json;
    int baseline, status;
    char err[2048] = "";
    struct kdcl__model *m = NULL;
    double acc = 0, secs = 0;
    const char *out;
    int r;

    memset(&rc, 0, sizeof rc);
    r = parse_args("train", argc, argv, &rc.cfg, &json, &baseline);
    if (r >= 0)
        return r;
    status = kdcl__config_get(rc.cfg, "data.student_limit") ? KDCL_EINVAL
                                                            : KDCL_OK;
    if (status)
        snprintf(err, sizeof err,
                 "data.student_limit is for kdcl distill (the students' "
                 "samples); kdcl train takes data.limit");
    if (!status)
        status = open_run(&rc, err, sizeof err);
    if (!status)
        status = kdcl__arch_build(rc.ctx, kdcl__config_get(rc.cfg, "model"),
                                  "model", &rc.train, rc.seed, &m, err,
                                  sizeof err);
    if (!status) {
        fprintf(stderr, "train: %lld samples, %lld parameters, device %s\n",
                (long long)rc.train.n, (long long)kdcl__model_n_params(m),
                kdcl_context_device(rc.ctx)->name);
        status = fit_plain(&rc, m, rc.epochs, "train", &acc, &secs, err,
                           sizeof err);
    }
    out = kdcl__config_str(rc.cfg, "output.weights", NULL);
    if (!status && out)
        status = kdcl__model_save(m, out,
                                  kdcl__config_str(rc.cfg, "model.arch", ""),
                                  err, sizeof err);
    if (!status) {
        printf("test accuracy %.2f%% after %lld epochs (%.1f s)\n",
               100.0 * acc, (long long)rc.epochs, secs);
        if (json) {
            cJSON *doc = summary_base(&rc);
            cJSON_AddNumberToObject(doc, "accuracy", acc);
            cJSON_AddNumberToObject(doc, "seconds", secs);
            status = cli_json_write(doc, json) ? KDCL_EIO : KDCL_OK;
        }
    } else {
        cli_error("%s", err);
    }
    kdcl__model_free(m);
    free_run(&rc);
    return status ? CLI_FAIL : CLI_OK;
}

/* The cached teacher's path when teacher.weights is not set. */
static void teacher_cache_path(struct run_cfg *rc, char *path, size_t len)
{
    char *text = cJSON_PrintUnformatted(kdcl__config_get(rc->cfg,
                                                         "teacher"));
    const char *dir = getenv("KDCL_CACHE_DIR");
    const char *home = getenv("HOME");
    char base[2048];
    uint64_t h = kdcl__fnv1a(KDCL__FNV_OFFSET, text ? text : "", text ? strlen(text) : 0);
    char key[256];
    snprintf(key, sizeof key, "|%lld|%llu|%lld|%g|%s", (long long)rc->batch,
             (unsigned long long)rc->seed, (long long)rc->train.n,
             rc->opt.lr, kdcl__config_str(rc->cfg, "data.dir", ""));
    h = kdcl__fnv1a(h, key, strlen(key));
    cJSON_free(text);
    if (dir && *dir)
        snprintf(base, sizeof base, "%s/teachers", dir);
    else
        snprintf(base, sizeof base, "%s/.cache/kdcl/teachers",
                 home && *home ? home : "/tmp");
    kdcl__mkdirs(base); /* a failure shows when the teacher is saved */
    snprintf(path, len, "%s/%016llx.safetensors", base, (unsigned long long)h);
}

int cli_distill(int argc, char **argv)
{
    struct run_cfg rc;
    const char *json, *pname, *wpath;
    int baseline, status;
    char err[2048] = "", cache_path[4096];
    struct kdcl__model *teacher = NULL, *student = NULL, *alone = NULL;
    const struct kdcl_plugin *plugin = NULL;
    kdcl_registry *reg = NULL;
    kdcl_params *params = NULL;
    kdcl_run *run = NULL;
    double t_acc = 0, s_acc = 0, b_acc = -1, secs = 0, bsecs = 0;
    int64_t t_epochs;
    int r;
    struct kdcl__fit f;

    memset(&rc, 0, sizeof rc);
    memset(&f, 0, sizeof f);
    r = parse_args("distill", argc, argv, &rc.cfg, &json, &baseline);
    if (r >= 0)
        return r;
    status = open_run(&rc, err, sizeof err);
    /* The plugin and its parameters, checked before any training. */
    if (!status) {
        const cJSON *dirs = kdcl__config_get(rc.cfg, "plugin.dir");
        const char *d[1] = {cJSON_IsString(dirs) ? dirs->valuestring : NULL};
        reg = cli_registry(d, d[0] ? 1 : 0);
        pname = kdcl__config_str(rc.cfg, "plugin.name", "hinton");
        plugin = reg ? kdcl_registry_find(reg, pname) : NULL;
        if (!plugin) {
            snprintf(err, sizeof err,
                     "unknown plugin '%s' (run 'kdcl plugins' to list them)",
                     pname);
            status = KDCL_ENOTFOUND;
        }
    }
    if (!status)
        status = kdcl_params_init(rc.ctx, plugin, &params);
    if (!status) {
        const cJSON *ps = kdcl__config_get(rc.cfg, "plugin.params"), *p;
        cJSON_ArrayForEach(p, ps)
        {
            char text[128];
            if (cJSON_IsNumber(p)) {
                /* The shortest text that reads back as the same double
                   (0.1, not 0.10000000000000001, in --json). */
                for (int prec = 15; prec <= 17; prec++) {
                    snprintf(text, sizeof text, "%.*g", prec, p->valuedouble);
                    if (strtod(text, NULL) == p->valuedouble)
                        break;
                }
            } else if (cJSON_IsBool(p))
                snprintf(text, sizeof text, "%d", cJSON_IsTrue(p));
            else
                snprintf(text, sizeof text, "%s",
                         p->valuestring ? p->valuestring : "");
            if ((status = kdcl_params_set(params, p->string, text)))
                break;
        }
        if (status)
            snprintf(err, sizeof err, "%s", kdcl_context_errmsg(rc.ctx));
    }
    /* Models. */
    if (!status)
        status = kdcl__arch_build(rc.ctx, kdcl__config_get(rc.cfg, "teacher"),
                                  "teacher", &rc.train, rc.seed + 1000,
                                  &teacher, err, sizeof err);
    if (!status)
        status = kdcl__arch_build(rc.ctx, kdcl__config_get(rc.cfg, "student"),
                                  "student", &rc.train, rc.seed, &student,
                                  err, sizeof err);
    if (!status) {
        status = kdcl__config_int(rc.cfg, "teacher.epochs", rc.epochs, 1,
                                  100000, &t_epochs, err, sizeof err);
    }
    /* The teacher: load it, or train and cache it. */
    if (!status) {
        wpath = kdcl__config_str(rc.cfg, "teacher.weights", NULL);
        if (!wpath) {
            teacher_cache_path(&rc, cache_path, sizeof cache_path);
            wpath = cache_path;
        }
        if (access(wpath, R_OK) == 0) {
            status = kdcl__model_load(teacher, wpath, err, sizeof err);
            if (!status)
                fprintf(stderr, "teacher: loaded %s\n", wpath);
        } else {
            fprintf(stderr, "teacher: training %lld epochs (%lld parameters),"
                            " saved to %s\n",
                    (long long)t_epochs,
                    (long long)kdcl__model_n_params(teacher), wpath);
            status = fit_plain(&rc, teacher, t_epochs, "teacher", &t_acc,
                               &secs, err, sizeof err);
            if (!status)
                status = kdcl__model_save(teacher, wpath, "teacher", err,
                                          sizeof err);
        }
        if (!status)
            status = kdcl__evaluate(rc.ctx, teacher, &rc.dtest, rc.batch,
                                    &t_acc);
        if (status && !err[0])
            snprintf(err, sizeof err, "%s", kdcl_context_errmsg(rc.ctx));
    }
    /* The students may train on fewer samples than the teacher (Hinton
       et al. 2015: soft targets as regularisers on a small transfer
       set): the first N of the training set. */
    if (!status) {
        int64_t n;
        status = kdcl__config_int(rc.cfg, "data.student_limit", 0, 0,
                                  INT32_MAX, &n, err, sizeof err);
        if (!status && n > 0 && n < rc.dtrain.n) {
            fprintf(stderr,
                    "distill: the students train on the first %lld of %lld "
                    "training samples\n",
                    (long long)n, (long long)rc.dtrain.n);
            rc.dtrain.n = n;
        }
    }
    /* Default taps for the feature inputs the plugin reads. */
    for (uint32_t i = 0; !status && i < plugin->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(plugin, i);
        const char *who[2] = {"student.feat", "teacher.feat"};
        struct kdcl__model *ms[2] = {student, teacher};
        for (int k = 0; k < 2; k++) {
            int want_maps = d->shape && strchr(d->shape, 'H') != NULL;
            int at;
            if (strncmp(d->name, who[k], strlen(who[k])) != 0)
                continue;
            if (kdcl__model_tap(ms[k], who[k]) || kdcl__model_tap_count(ms[k]))
                continue; /* set in the config */
            at = kdcl__arch_default_tap(ms[k], want_maps);
            if (at < 0) {
                snprintf(err, sizeof err,
                         "plugin %s reads %s but the %s has no layer to tap",
                         plugin->name, who[k], k ? "teacher" : "student");
                status = KDCL_EINVAL;
                break;
            }
            kdcl__model_set_tap(ms[k], (size_t)at, who[k]);
        }
    }
    /* The distillation. */
    if (!status) {
        status = kdcl_run_init(rc.ctx, plugin, params, &run);
        if (status)
            snprintf(err, sizeof err, "%s", kdcl_context_errmsg(rc.ctx));
    }
    if (!status) {
        fprintf(stderr,
                "distill: teacher %.2f%%, student %lld parameters, plugin "
                "%s, %lld epochs, device %s\n",
                100.0 * t_acc, (long long)kdcl__model_n_params(student),
                plugin->name, (long long)rc.epochs,
                kdcl_context_device(rc.ctx)->name);
        f.ctx = rc.ctx;
        f.student = student;
        f.teacher = teacher;
        f.kd = run;
        f.opt = rc.opt;
        f.sched = rc.sched;
        f.epochs = rc.epochs;
        f.batch = rc.batch;
        f.seed = rc.seed;
        f.train = &rc.dtrain;
        f.test = rc.has_val ? &rc.dval : &rc.dtest;
        f.progress = progress;
        f.user = &rc;
        rc.label = "distill";
        status = kdcl__fit_run(&f, err, sizeof err);
        if (!status)
            status = kdcl__evaluate(rc.ctx, student, &rc.dtest, rc.batch,
                                    &s_acc);
        secs = f.seconds;
    }
    if (!status && baseline) {
        status = kdcl__arch_build(rc.ctx, kdcl__config_get(rc.cfg, "student"),
                                  "student", &rc.train, rc.seed, &alone, err,
                                  sizeof err);
        if (!status)
            status = fit_plain(&rc, alone, rc.epochs, "baseline", &b_acc,
                               &bsecs, err, sizeof err);
    }
    if (!status) {
        const char *out = kdcl__config_str(rc.cfg, "output.weights", NULL);
        if (out)
            status = kdcl__model_save(student, out, "student", err,
                                      sizeof err);
    }
    if (!status) {
        printf("\n%-28s %s\n", "model", "test accuracy");
        printf("%-28s %6.2f%%\n", "teacher", 100.0 * t_acc);
        if (baseline)
            printf("%-28s %6.2f%%\n", "student alone", 100.0 * b_acc);
        printf("student with %-15s %6.2f%%\n", plugin->name, 100.0 * s_acc);
        if (json) {
            cJSON *doc = summary_base(&rc), *ps;
            cJSON_AddNumberToObject(doc, "teacher_accuracy", t_acc);
            cJSON_AddNumberToObject(doc, "student_accuracy", s_acc);
            if (baseline)
                cJSON_AddNumberToObject(doc, "baseline_accuracy", b_acc);
            else
                cJSON_AddNullToObject(doc, "baseline_accuracy");
            cJSON_AddNumberToObject(doc, "seconds", secs + bsecs);
            cJSON_AddStringToObject(doc, "plugin", plugin->name);
            ps = cJSON_AddObjectToObject(doc, "params");
            for (uint32_t i = 0; i < plugin->n_params; i++) {
                const char *n = kdcl__param_desc(plugin, i)->name;
                cJSON_AddStringToObject(ps, n, kdcl_params_get(params, n));
            }
            if (f.epoch_accuracy) {
                cJSON *arr = cJSON_AddArrayToObject(doc, "epoch_accuracy");
                for (int64_t e = 0; e < rc.epochs; e++)
                    cJSON_AddItemToArray(
                        arr, cJSON_CreateNumber(f.epoch_accuracy[e]));
            }
            status = cli_json_write(doc, json) ? KDCL_EIO : KDCL_OK;
        }
    } else {
        cli_error("%s", err[0] ? err : kdcl_context_errmsg(rc.ctx));
    }
    free(f.epoch_accuracy);
    kdcl_run_free(run);
    kdcl_params_free(params);
    kdcl__model_free(teacher);
    kdcl__model_free(student);
    kdcl__model_free(alone);
    kdcl_registry_free(reg);
    free_run(&rc);
    return status ? CLI_FAIL : CLI_OK;
}
