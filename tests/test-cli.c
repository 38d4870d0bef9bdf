/*
 * tests/test-cli.c - the kdcl command end to end: devices, plugins, loss
 * (every bad-input case exits non-zero with one clear line and writes
 * nothing), JSON output, bench.
 */
#include "harness.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char out[65536], err[8192];

static int cli(const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return th_cli(args, out, sizeof out, err, sizeof err);
}

static char S[512], T[512], Y[512], G[512];

/* Valid 2x3 inputs in the test's directory. */
static void inputs(void)
{
    const float s[6] = {1, 2, 3, 0, -1, 2}, t[6] = {0, 1, 1, 2, 2, -1};
    const int32_t y[2] = {2, 0};
    const int64_t sh[2] = {2, 3};
    snprintf(S, sizeof S, "%s/s.npy", th_tmpdir());
    snprintf(T, sizeof T, "%s/t.npy", th_tmpdir());
    snprintf(Y, sizeof Y, "%s/y.npy", th_tmpdir());
    snprintf(G, sizeof G, "%s/g.npy", th_tmpdir());
    th_npy_f32(S, s, 2, sh);
    th_npy_f32(T, t, 2, sh);
    th_npy_i32(Y, y, 1, sh);
}

/* The command failed with one line naming `needle`, wrote no G. */
static void expect_failure(int rc, const char *needle)
{
    cr_assert_neq(rc, 0, "expected failure, got output: %s", out);
    cr_assert(strstr(err, needle), "stderr lacks '%s': %s", needle, err);
    cr_assert_eq(access(G, F_OK), -1, "a gradient file was written");
}

Test(cli, no_arguments_prints_usage)
{
    cr_assert_eq(cli(""), 2);
    cr_assert(strstr(err, "usage: kdcl"));
    cr_assert_eq(cli("frobnicate"), 2);
    cr_assert(strstr(err, "unknown command 'frobnicate'"));
    cr_assert_eq(cli("--help"), 0);
    cr_assert(strstr(out, "devices"));
    cr_assert_eq(cli("version"), 0);
    cr_assert(strstr(out, KDCL_VERSION_STRING));
}

Test(cli, devices_lists_the_test_device)
{
    cr_assert_eq(cli("devices"), 0, "%s", err);
    cr_assert(strstr(out, kdcl_context_device(th_ctx())->name));
    cr_assert_eq(cli("devices --json"), 0, "%s", err);
    cr_assert(strstr(out, "\"opencl_c_version\""));
    cr_assert(strstr(out, "\"max_work_group_size\""));
}

Test(cli, plugins_lists_schema_and_rejections)
{
    cr_assert_eq(cli("plugins --plugin-dir %s", KDCL_TEST_FIXTURE_DIR), 0,
                 "%s", err);
    cr_assert(strstr(out, "fixture-good"));
    cr_assert(strstr(out, "rejected"));
    cr_assert(strstr(out, "newer than this host"));
    cr_assert_eq(cli("plugins --json"), 0);
    cr_assert(strstr(out, "\"name\":\t\"hinton\""), "%s", out);
    cr_assert(strstr(out, "\"temperature\""));
    cr_assert(strstr(out, "\"range\":\t\"> 0\""));
}

Test(cli, loss_prints_loss_and_terms)
{
    inputs();
    cr_assert_eq(cli("loss --plugin hinton --student %s --teacher %s "
                     "--labels %s --grad-out %s",
                     S, T, Y, G),
                 0, "%s", err);
    cr_assert(strstr(out, "loss "));
    cr_assert(strstr(out, "term ce "));
    cr_assert(strstr(out, "term kd "));
    cr_assert_eq(access(G, F_OK), 0);
    unlink(G);
}

Test(cli, loss_json)
{
    inputs();
    cr_assert_eq(cli("loss --plugin hinton --input student.logits=%s "
                     "--input teacher.logits=%s --json",
                     S, T),
                 0, "%s", err);
    cr_assert(strstr(out, "\"plugin\":\t\"hinton\""), "%s", out);
    cr_assert(strstr(out, "\"loss\":"));
    cr_assert(strstr(out, "\"terms\":"));
    cr_assert(strstr(out, "\"device\":"));
}

Test(cli, loss_rejects_missing_file)
{
    inputs();
    expect_failure(cli("loss --plugin hinton --student /nonexistent.npy "
                       "--teacher %s --grad-out %s",
                       T, G),
                   "/nonexistent.npy");
}

Test(cli, loss_rejects_fortran_order)
{
    char path[600];
    FILE *f;
    const char hdr[] = "{'descr': '<f4', 'fortran_order': True, "
                       "'shape': (2, 3), }";
    inputs();
    snprintf(path, sizeof path, "%s/f.npy", th_tmpdir());
    f = fopen(path, "wb");
    {
        char h[128];
        unsigned short len;
        memset(h, ' ', sizeof h);
        memcpy(h, hdr, strlen(hdr));
        h[117] = '\n';
        len = 118;
        fwrite("\x93NUMPY\x01\x00", 1, 8, f);
        fwrite(&len, 2, 1, f);
        fwrite(h, 1, 118, f);
        for (int i = 0; i < 6; i++) {
            float v = (float)i;
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--grad-out %s",
                       path, T, G),
                   "Fortran");
}

Test(cli, loss_rejects_truncated_and_bad_dtype)
{
    char path[600], cmd[1400];
    inputs();
    snprintf(path, sizeof path, "%s/trunc.npy", th_tmpdir());
    snprintf(cmd, sizeof cmd, "head -c 100 %s > %s", S, path);
    cr_assert_eq(system(cmd), 0);
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--grad-out %s",
                       path, T, G),
                   "truncated");
    /* Float labels: the wrong kind of data. */
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--labels %s --grad-out %s",
                       S, T, S, G),
                   "must hold integers");
}

Test(cli, loss_rejects_shape_mismatch)
{
    char path[600];
    const float v[8] = {0};
    const int64_t sh[2] = {2, 4};
    inputs();
    snprintf(path, sizeof path, "%s/wide.npy", th_tmpdir());
    th_npy_f32(path, v, 2, sh);
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--grad-out %s",
                       S, path, G),
                   "differ in shape");
}

Test(cli, loss_rejects_label_out_of_range)
{
    char path[600];
    const int32_t y[2] = {0, 3};
    const int64_t sh[1] = {2};
    inputs();
    snprintf(path, sizeof path, "%s/ybad.npy", th_tmpdir());
    th_npy_i32(path, y, 1, sh);
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--labels %s --grad-out %s",
                       S, T, path, G),
                   "labels[1] = 3 is out of range [0, 3)");
}

Test(cli, loss_rejects_unknown_plugin_and_parameters)
{
    inputs();
    expect_failure(cli("loss --plugin nosuch --student %s --teacher %s "
                       "--grad-out %s",
                       S, T, G),
                   "unknown plugin 'nosuch'");
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--set temprature=2 --grad-out %s",
                       S, T, G),
                   "no parameter 'temprature'");
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--set temperature=0 --grad-out %s",
                       S, T, G),
                   "out of range");
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--set alpha=2 --grad-out %s",
                       S, T, G),
                   "alpha");
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--input student.feat=%s --grad-out %s",
                       S, T, S, G),
                   "no input named 'student.feat'");
}

Test(cli, loss_rejects_missing_input_and_bad_device)
{
    inputs();
    expect_failure(cli("loss --plugin hinton --student %s --grad-out %s", S,
                       G),
                   "teacher.logits");
    expect_failure(cli("loss --plugin hinton --student %s --teacher %s "
                       "--device no-such-device-xyz --grad-out %s",
                       S, T, G),
                   "no OpenCL device matches 'no-such-device-xyz'");
    cr_assert_eq(cli("loss --student %s", S), 2);
    cr_assert(strstr(err, "--plugin NAME is required"));
}

Test(cli, bench_measures_bandwidth_and_plugin)
{
    if (th_small())
        cr_skip_test("bench is not run under the checking implementation");
    cr_assert_eq(cli("bench --plugin hinton --size 256x100 --reps 1 "
                     "--json %s/bench.json",
                     th_tmpdir()),
                 0, "%s", err);
    cr_assert(strstr(out, "copy bandwidth:"), "%s", out);
    cr_assert(strstr(out, "hinton"));
    cr_assert(strstr(out, "256x100"));
    cr_assert_eq(cli("bench --size 999x1"), 2);
}

/* Training steps: the four built-in models and the distillation step,
   each with its time per layer type in the JSON. */
Test(cli, bench_train_steps_per_layer_type)
{
    char path[600], *text;
    FILE *f;
    long n;
    cJSON *doc, *steps, *s;
    int count = 0, cpu;
    if (th_small())
        cr_skip_test("bench is not run under the checking implementation");
    snprintf(path, sizeof path, "%s/train-bench.json", th_tmpdir());
    cr_assert_eq(cli("bench --no-plugins --train --reps 2 --json %s", path),
                 0, "%s", err);
    cr_assert(strstr(out, "kd lenet5->half hinton"), "%s", out);
    cr_assert(strstr(out, "per step: ms (GFLOP/s)"), "%s", out);
    cr_assert(!strstr(out, "skipped"), "%s", out);
    f = fopen(path, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    text = calloc(1, (size_t)n + 1);
    cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    doc = cJSON_Parse(text);
    cr_assert(doc);
    steps = cJSON_GetObjectItemCaseSensitive(doc, "train_step");
    cpu = !strcmp(cJSON_GetObjectItemCaseSensitive(
                      cJSON_GetObjectItemCaseSensitive(doc, "device"), "type")
                      ->valuestring,
                  "cpu");
    cJSON_ArrayForEach(s, steps)
    {
        cJSON *layers = cJSON_GetObjectItemCaseSensitive(s, "layers");
        double total = 0, ms = cJSON_GetObjectItemCaseSensitive(
                                  s, "median_ms")->valuedouble;
        cJSON *l;
        cr_assert_gt(ms, 0);
        cr_assert_eq(cJSON_GetArraySize(layers), 5);
        cJSON_ArrayForEach(l, layers)
            total += cJSON_GetObjectItemCaseSensitive(l, "ms")->valuedouble;
        cr_assert_gt(total, 0);
        /* On a CPU device the layers run on the host path, timed per
           layer type: every model has linear layers. */
        if (cpu)
            cr_assert_gt(cJSON_GetObjectItemCaseSensitive(
                             cJSON_GetArrayItem(layers, 2), "gflops")
                             ->valuedouble,
                         0, "no linear GFLOP/s: %s", text);
        count++;
    }
    cr_assert_eq(count, 5);
    cJSON_Delete(doc);
    free(text);
}

/* More repetitions than a fixed array of 64 times held (it overflowed). */
Test(cli, bench_gemm_takes_many_reps)
{
    if (th_small())
        cr_skip_test("bench is not run under the checking implementation");
    cr_assert_eq(cli("bench --no-plugins --gemm --reps 70"), 0, "%s", err);
    cr_assert(strstr(out, "mlp 784-1200 fwd"), "%s", out);
    cr_assert_eq(cli("bench --reps 201"), 2);
}
