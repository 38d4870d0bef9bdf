/*
 * tests/test-train.c - run configurations, weights files and the training
 * commands end to end on a small Fashion-MNIST subset: a model learns,
 * distillation runs with logit and feature (tap) plugins, the teacher is
 * cached, weights round-trip.
 */
#include "harness.h"
#include "config.h"
#include "train.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FMNIST "/usr/share/datasets/fashion-mnist"

static void need_data(void)
{
    if (access(FMNIST "/train-images-idx3-ubyte.gz", R_OK) != 0)
        cr_skip_test("Fashion-MNIST is not installed (dataset-fashion-mnist)");
    if (th_small())
        cr_skip_test("training runs are not repeated under the checker");
}

static char out[65536], err[65536];

/* Write a config into the test's directory and return its path. */
static const char *write_cfg(const char *name, const char *text)
{
    static char path[600];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", th_tmpdir(), name);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static double json_number(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    char buf[65536];
    size_t n;
    cJSON *doc, *v;
    double d;
    cr_assert_not_null(f, "no JSON summary %s", path);
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    doc = cJSON_Parse(buf);
    cr_assert_not_null(doc, "bad JSON: %s", buf);
    v = cJSON_GetObjectItemCaseSensitive(doc, key);
    cr_assert(cJSON_IsNumber(v), "no number '%s' in %s", key, buf);
    d = v->valuedouble;
    cJSON_Delete(doc);
    return d;
}

/* ---------------------------------------------------------------------- */

Test(config, yaml_types_and_overrides)
{
    const char text[] = "seed: 3\n"
                        "train:\n"
                        "  lr: 0.01\n"
                        "  nesterov: true\n"
                        "  schedule: cosine\n"
                        "plugin:\n"
                        "  name: hinton\n"
                        "  params: {temperature: 4, alpha: 0.1}\n"
                        "student:\n"
                        "  hidden: [100, 50]\n";
    cJSON *c;
    char e[512];
    double d;
    int64_t i;
    int b;
    cr_assert_eq(kdcl__config_parse(text, sizeof text - 1, &c, e, sizeof e),
                 KDCL_OK, "%s", e);
    cr_assert_eq(kdcl__config_int(c, "seed", 1, 0, 100, &i, e, sizeof e), 0);
    cr_assert_eq(i, 3);
    cr_assert_eq(kdcl__config_bool(c, "train.nesterov", 0, &b, e, sizeof e),
                 0);
    cr_assert_eq(b, 1);
    cr_assert_str_eq(kdcl__config_str(c, "train.schedule", ""), "cosine");
    cr_assert_eq(kdcl__config_set(c, "plugin.params.temperature=2", e,
                                  sizeof e),
                 0);
    cr_assert_eq(kdcl__config_num(c, "plugin.params.temperature", 0, 0, 100,
                                  &d, e, sizeof e),
                 0);
    cr_assert_float_eq(d, 2.0, 0);
    cr_assert_eq(kdcl__config_set(c, "new.section.key=abc", e, sizeof e), 0);
    cr_assert_str_eq(kdcl__config_str(c, "new.section.key", ""), "abc");
    cr_assert_eq(kdcl__config_set(c, "seed.x=1", e, sizeof e), KDCL_EINVAL);
    cr_assert_eq(kdcl__config_num(c, "train.lr", 0, 0.1, 1, &d, e, sizeof e),
                 KDCL_ERANGE);
    cr_assert(strstr(e, "train.lr"));
    cr_assert_eq(kdcl__config_int(c, "train.schedule", 0, 0, 1, &i, e,
                                  sizeof e),
                 KDCL_EINVAL);
    cJSON_Delete(c);
}

Test(config, yaml_errors_name_the_line)
{
    const char bad[] = "a: 1\nb: [1, 2\nc: 3\n";
    const char list[] = "- 1\n- 2\n";
    cJSON *c;
    char e[512];
    cr_assert_eq(kdcl__config_parse(bad, sizeof bad - 1, &c, e, sizeof e),
                 KDCL_EFORMAT);
    cr_assert(strstr(e, "line "), "%s", e);
    cr_assert_eq(kdcl__config_parse(list, sizeof list - 1, &c, e, sizeof e),
                 KDCL_EFORMAT);
    cr_assert(strstr(e, "mapping"), "%s", e);
}

Test(train, cli_rejects_bad_configs)
{
    const char *p = write_cfg("bad.yaml", "train:\n  epocs: 3\n");
    char args[1024];
    snprintf(args, sizeof args, "train %s", p);
    cr_assert_neq(th_cli(args, out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(err, "unknown key 'train.epocs'"), "%s", err);
    snprintf(args, sizeof args, "distill %s/none.yaml", th_tmpdir());
    cr_assert_neq(th_cli(args, out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(err, "cannot open"), "%s", err);
    p = write_cfg("student-limit.yaml", "model: {arch: mlp}\n");
    snprintf(args, sizeof args, "train %s --set data.student_limit=10", p);
    cr_assert_neq(th_cli(args, out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(err, "data.student_limit is for kdcl distill"), "%s",
              err);
    p = write_cfg("arch.yaml", "model: {arch: resnet}\n");
    snprintf(args, sizeof args, "train %s --set data.limit=10", p);
    cr_assert_neq(th_cli(args, out, sizeof out, err, sizeof err), 0);
    cr_assert(strstr(err, "resnet"), "%s", err);
}

Test(train, mlp_learns_fashion_mnist_subset)
{
    const char *p;
    char args[2048], js[600];
    need_data();
    p = write_cfg("mlp.yaml", "data: {limit: 2000, test_limit: 1000, "
                              "batch_size: 64}\n"
                              "model: {arch: mlp, hidden: [64]}\n"
                              "train: {epochs: 3, lr: 0.1}\n");
    snprintf(js, sizeof js, "%s/train.json", th_tmpdir());
    snprintf(args, sizeof args, "train %s --json %s --set output.weights=%s/m.safetensors", p, js, th_tmpdir());
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    cr_assert(strstr(err, "epoch 3/3"), "no progress lines: %s", err);
    cr_assert_gt(json_number(js, "accuracy"), 0.6,
                 "an MLP should beat chance (10%%) by far");
}

Test(train, distill_hinton_with_baseline_and_cached_teacher)
{
    const char *p;
    char args[2048], js[600];
    need_data();
    p = write_cfg("kd.yaml", "data: {limit: 1500, test_limit: 500}\n"
                             "teacher: {arch: mlp, hidden: [128], "
                             "epochs: 2}\n"
                             "student: {arch: mlp, hidden: [16]}\n"
                             "plugin: {name: hinton, params: "
                             "{temperature: 4}}\n"
                             "train: {epochs: 2, lr: 0.1}\n");
    snprintf(js, sizeof js, "%s/kd.json", th_tmpdir());
    snprintf(args, sizeof args,
             "distill %s --baseline --json %s --set teacher.weights=%s/t.st",
             p, js, th_tmpdir());
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    cr_assert(strstr(out, "student with hinton"), "%s", out);
    cr_assert(strstr(out, "student alone"), "%s", out);
    cr_assert_gt(json_number(js, "teacher_accuracy"), 0.5);
    cr_assert_gt(json_number(js, "student_accuracy"), 0.3);
    cr_assert_gt(json_number(js, "baseline_accuracy"), 0.3);
    /* The second run reuses the saved teacher. */
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    cr_assert(strstr(err, "teacher: loaded"), "%s", err);
}

/* One short distillation of an MLP pair with plugin NAME (and PARAMS, a
   YAML flow map) on a subset; the student must beat chance. */
static void distill_small(const char *name, const char *params)
{
    const char *p;
    char args[2048], js[600], cfg[512], file[64];
    need_data();
    if (!kdcl_registry_find(th_registry(), name))
        cr_skip_test("the %s plugin is not built", name);
    snprintf(cfg, sizeof cfg,
             "data: {limit: 1000, test_limit: 500}\n"
             "teacher: {arch: mlp, hidden: [64], epochs: 1}\n"
             "student: {arch: mlp, hidden: [32]}\n"
             "plugin: {name: %s, params: %s}\n"
             "train: {epochs: 1, lr: 0.05}\n",
             name, params);
    snprintf(file, sizeof file, "%s.yaml", name);
    p = write_cfg(file, cfg);
    snprintf(js, sizeof js, "%s/%s.json", th_tmpdir(), name);
    snprintf(args, sizeof args,
             "distill %s --json %s --set teacher.weights=%s/t2.st", p, js,
             th_tmpdir());
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s",
                 err);
    cr_assert_gt(json_number(js, "student_accuracy"), 0.2);
}

Test(train, distill_with_feature_taps)
{
    distill_small("feature", "{alpha: 0.5}");
}

/* A multi-teacher plugin reads the one teacher as teacher.0.logits. */
Test(train, distill_multiteacher_with_one_teacher)
{
    distill_small("multiteacher", "{}");
}

/* data.student_limit: the students train on the first N samples, the
   teacher (cached from the first run) on all of them. */
Test(train, distill_student_limit_trains_the_students_on_fewer_samples)
{
    const char *p;
    char args[2048], js[600];
    double all, same, fewer, teacher;
    need_data();
    p = write_cfg("limit.yaml", "data: {limit: 1000, test_limit: 500}\n"
                                "teacher: {arch: mlp, hidden: [64], "
                                "epochs: 1}\n"
                                "student: {arch: mlp, hidden: [32]}\n"
                                "plugin: {name: hinton}\n"
                                "train: {epochs: 1, lr: 0.05}\n");
    snprintf(js, sizeof js, "%s/limit.json", th_tmpdir());
#define RUN_LIMIT(extra)                                                     \
    snprintf(args, sizeof args,                                              \
             "distill %s --json %s --set teacher.weights=%s/t3.st %s", p, js, \
             th_tmpdir(), extra);                                            \
    cr_assert_eq(th_cli(args, out, sizeof out, err, sizeof err), 0, "%s", err)
    RUN_LIMIT("");
    all = json_number(js, "student_accuracy");
    teacher = json_number(js, "teacher_accuracy");
    RUN_LIMIT("--set data.student_limit=5000"); /* more than there are */
    same = json_number(js, "student_accuracy");
    cr_assert(!strstr(err, "students train on the first"), "%s", err);
    RUN_LIMIT("--set data.student_limit=128");
    fewer = json_number(js, "student_accuracy");
    cr_assert(strstr(err, "students train on the first 128 of 1000"), "%s",
              err);
#undef RUN_LIMIT
    cr_assert_eq(same, all, "a limit above the set size changes nothing");
    cr_assert_neq(fewer, all, "128 samples train a different student");
    cr_assert_eq(json_number(js, "teacher_accuracy"), teacher,
                 "the teacher is the same");
}

Test(train, weights_round_trip_with_pytorch_names)
{
    kdcl_context *ctx = th_ctx();
    struct kdcl__dataset d;
    struct kdcl__model *a, *b;
    cJSON *spec = cJSON_Parse("{\"arch\": \"lenet5\", \"width\": 0.5}");
    char e[1024], path[600];
    int64_t xs[2] = {2, 784};
    kdcl_tensor *x;
    const kdcl_tensor *ya, *yb;
    float in[2 * 784], oa[20], ob[20];
    const char *name;
    kdcl_tensor *val;

    memset(&d, 0, sizeof d);
    d.ndim = 3;
    d.shape[0] = 1;
    d.shape[1] = d.shape[2] = 28;
    d.per = 784;
    d.classes = 10;
    cr_assert_eq(kdcl__arch_build(ctx, spec, "m", &d, 1, &a, e, sizeof e), 0,
                 "%s", e);
    cr_assert_eq(kdcl__arch_build(ctx, spec, "m", &d, 2, &b, e, sizeof e), 0,
                 "%s", e);
    cr_assert_eq(kdcl__model_state(a, 0, &name, &val), 0);
    cr_assert_str_eq(name, "0.weight"); /* nn.Sequential index names */
    cr_assert_eq(kdcl__model_state(a, 9, &name, &val), 0);
    cr_assert_str_eq(name, "11.bias");
    snprintf(path, sizeof path, "%s/lenet.safetensors", th_tmpdir());
    cr_assert_eq(kdcl__model_save(a, path, "lenet5", e, sizeof e), 0, "%s",
                 e);
    cr_assert_eq(kdcl__model_load(b, path, e, sizeof e), 0, "%s", e);
    th_fill_uniform(in, 2 * 784, -1, 1, 4);
    kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, xs, &x);
    kdcl_tensor_write(x, in, sizeof in);
    cr_assert_eq(kdcl__model_forward(a, x, 2, 0, &ya), 0);
    kdcl_tensor_read(ya, oa, sizeof oa);
    cr_assert_eq(kdcl__model_forward(b, x, 2, 0, &yb), 0);
    kdcl_tensor_read(yb, ob, sizeof ob);
    cr_assert(memcmp(oa, ob, sizeof oa) == 0, "loaded model differs");
    /* A model of another shape is refused, naming the tensor. */
    {
        struct kdcl__model *c;
        cJSON *other = cJSON_Parse("{\"arch\": \"lenet5\", \"width\": 1}");
        cr_assert_eq(kdcl__arch_build(ctx, other, "m", &d, 1, &c, e,
                                      sizeof e),
                     0);
        cr_assert_eq(kdcl__model_load(c, path, e, sizeof e), KDCL_ESHAPE);
        cr_assert(strstr(e, "0.weight"), "%s", e);
        kdcl__model_free(c);
        cJSON_Delete(other);
    }
    kdcl_tensor_free(x);
    kdcl__model_free(a);
    kdcl__model_free(b);
    cJSON_Delete(spec);
}
