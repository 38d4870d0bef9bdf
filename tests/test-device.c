/*
 * tests/test-device.c - tests of the device layer (core/context.c): the
 * device spec grammar of kdcl_context_select, checked against the
 * enumeration of whatever devices are present; the capabilities read from
 * the opened device; lifecycle errors; and the message given when there is
 * no OpenCL platform at all (a child process with an empty ICD directory).
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* A fresh context with every device enumerated and none opened. */
static kdcl_context *fresh(void)
{
    kdcl_context *ctx = NULL;
    int status = kdcl_context_init(&ctx);
    cr_assert_eq(status, KDCL_OK, "kdcl_context_init: %s",
                 kdcl_context_errmsg(ctx));
    cr_assert_gt(kdcl_context_device_count(ctx), 0);
    cr_assert_null(kdcl_context_device(ctx));
    return ctx;
}

static const char *test_spec(void)
{
    const char *spec = getenv("KDCL_TEST_DEVICE");
    return spec && *spec ? spec : "auto";
}

/* Index of the nth device of type, or -1. */
static long nth_of_type(const kdcl_context *ctx, uint32_t type, long nth)
{
    for (size_t i = 0; i < kdcl_context_device_count(ctx); i++)
        if (kdcl_context_device_info(ctx, i)->type == type && nth-- == 0)
            return (long)i;
    return -1;
}

/* spec must select index want; want < 0: it must be KDCL_ENODEV with a
   message naming the spec and listing every device. */
static void expect_select(kdcl_context *ctx, const char *spec, long want)
{
    size_t idx = (size_t)-1;
    int status = kdcl_context_select(ctx, spec, &idx);
    if (want >= 0) {
        cr_assert_eq(status, KDCL_OK, "select '%s': %s", spec,
                     kdcl_context_errmsg(ctx));
        cr_assert_eq(idx, (size_t)want, "select '%s' gave %zu, want %ld",
                     spec, idx, want);
        return;
    }
    cr_assert_eq(status, KDCL_ENODEV, "select '%s' gave %s (index %zu)",
                 spec, kdcl_status_name(status), idx);
    cr_assert(strstr(kdcl_context_errmsg(ctx), spec) != NULL,
              "message does not name '%s': %s", spec,
              kdcl_context_errmsg(ctx));
    for (size_t i = 0; i < kdcl_context_device_count(ctx); i++) {
        const char *name = kdcl_context_device_info(ctx, i)->name;
        cr_assert(strstr(kdcl_context_errmsg(ctx), name) != NULL,
                  "message does not list device %zu (%s): %s", i, name,
                  kdcl_context_errmsg(ctx));
    }
}

/* s with the case of every letter swapped. */
static void swap_case(char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        *s = (char)(isupper(c) ? tolower(c) : toupper(c));
    }
}

/* A substring of at least 4 characters of s with a letter, not starting
   with a digit (which would read as an index), case-swapped. */
static bool pick_substring(const char *s, char *out, size_t len)
{
    size_t n = strlen(s);
    for (size_t start = 0; start + 4 <= n; start++) {
        size_t take = n - start < 8 ? n - start : 8;
        bool letter = false;
        unsigned char c0 = (unsigned char)s[start];
        if (isdigit(c0) || isspace(c0))
            continue;
        if (take + 1 > len)
            return false;
        memcpy(out, s + start, take);
        out[take] = '\0';
        for (size_t i = 0; i < take; i++)
            letter |= isalpha((unsigned char)out[i]) != 0;
        if (!letter)
            continue;
        swap_case(out);
        return true;
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* Enumeration                                                             */

Test(device, enumeration_fills_index_and_struct_size)
{
    kdcl_context *ctx = fresh();
    size_t n = kdcl_context_device_count(ctx);
    for (size_t i = 0; i < n; i++) {
        const struct kdcl_device_info *d = kdcl_context_device_info(ctx, i);
        cr_assert_not_null(d);
        cr_assert_eq(d->struct_size, sizeof(struct kdcl_device_info));
        cr_assert_eq(d->index, (uint32_t)i);
        cr_assert_leq(d->type, (uint32_t)KDCL_DEVICE_ACCELERATOR);
        cr_assert_gt(strlen(d->name), 0, "device %zu has no name", i);
    }
    cr_assert_null(kdcl_context_device_info(ctx, n));
    cr_assert_null(kdcl_context_device_info(ctx, (size_t)-1));
    kdcl_context_free(ctx);
}

/* ---------------------------------------------------------------------- */
/* Device specs                                                            */

Test(device, spec_auto_picks_gpu_then_accelerator_then_cpu)
{
    kdcl_context *ctx = fresh();
    long want = nth_of_type(ctx, KDCL_DEVICE_GPU, 0);
    if (want < 0)
        want = nth_of_type(ctx, KDCL_DEVICE_ACCELERATOR, 0);
    if (want < 0)
        want = nth_of_type(ctx, KDCL_DEVICE_CPU, 0);
    if (want < 0)
        want = 0;
    expect_select(ctx, "auto", want);
    expect_select(ctx, "AUTO", want);
    expect_select(ctx, "", want);
    expect_select(ctx, NULL, want);
    kdcl_context_free(ctx);
}

Test(device, spec_decimal_index_selects_that_device)
{
    kdcl_context *ctx = fresh();
    for (size_t i = 0; i < kdcl_context_device_count(ctx); i++) {
        char spec[32];
        snprintf(spec, sizeof spec, "%zu", i);
        expect_select(ctx, spec, (long)i);
    }
    kdcl_context_free(ctx);
}

Test(device, spec_index_past_the_end_is_enodev_listing_devices)
{
    kdcl_context *ctx = fresh();
    char spec[32];
    snprintf(spec, sizeof spec, "%zu", kdcl_context_device_count(ctx));
    expect_select(ctx, spec, -1);
    expect_select(ctx, "4096", -1);
    kdcl_context_free(ctx);
}

Test(device, spec_cpu_selects_first_cpu)
{
    kdcl_context *ctx = fresh();
    long want = nth_of_type(ctx, KDCL_DEVICE_CPU, 0);
    expect_select(ctx, "cpu", want);
    expect_select(ctx, "cpu:0", want);
    expect_select(ctx, "cpu:1", nth_of_type(ctx, KDCL_DEVICE_CPU, 1));
    kdcl_context_free(ctx);
}

Test(device, spec_type_words_are_case_insensitive)
{
    kdcl_context *ctx = fresh();
    expect_select(ctx, "CPU", nth_of_type(ctx, KDCL_DEVICE_CPU, 0));
    expect_select(ctx, "Cpu:0", nth_of_type(ctx, KDCL_DEVICE_CPU, 0));
    expect_select(ctx, "GPU", nth_of_type(ctx, KDCL_DEVICE_GPU, 0));
    expect_select(ctx, "Accelerator",
                  nth_of_type(ctx, KDCL_DEVICE_ACCELERATOR, 0));
    kdcl_context_free(ctx);
}

Test(device, spec_gpu_selects_a_gpu_or_is_enodev)
{
    kdcl_context *ctx = fresh();
    long want = nth_of_type(ctx, KDCL_DEVICE_GPU, 0);
    expect_select(ctx, "gpu", want);
    expect_select(ctx, "gpu:0", want);
    if (want >= 0)
        cr_assert_eq(kdcl_context_device_info(ctx, (size_t)want)->type,
                     (uint32_t)KDCL_DEVICE_GPU);
    kdcl_context_free(ctx);
}

Test(device, spec_gpu_1_selects_the_second_gpu)
{
    kdcl_context *ctx = fresh();
    expect_select(ctx, "gpu:1", nth_of_type(ctx, KDCL_DEVICE_GPU, 1));
    kdcl_context_free(ctx);
}

Test(device, spec_accelerator_selects_an_accelerator_or_is_enodev)
{
    kdcl_context *ctx = fresh();
    expect_select(ctx, "accelerator",
                  nth_of_type(ctx, KDCL_DEVICE_ACCELERATOR, 0));
    kdcl_context_free(ctx);
}

Test(device, spec_name_substring_in_other_case_selects_device)
{
    kdcl_context *ctx = fresh();
    const struct kdcl_device_info *d0 = kdcl_context_device_info(ctx, 0);
    char sub[16];
    cr_assert(pick_substring(d0->name, sub, sizeof sub),
              "no usable substring in '%s'", d0->name);
    /* The swapped case must not occur verbatim: the match is then
       case-insensitive by necessity. */
    cr_assert_null(strstr(d0->name, sub), "'%s' occurs verbatim", sub);
    /* Device 0 matches, so the first match is device 0. */
    expect_select(ctx, sub, 0);
    kdcl_context_free(ctx);
}

Test(device, spec_platform_substring_in_other_case_selects_device)
{
    kdcl_context *ctx = fresh();
    const struct kdcl_device_info *d0 = kdcl_context_device_info(ctx, 0);
    char sub[16];
    cr_assert(pick_substring(d0->platform_name, sub, sizeof sub),
              "no usable substring in '%s'", d0->platform_name);
    expect_select(ctx, sub, 0);
    kdcl_context_free(ctx);
}

Test(device, spec_vendor_substring_selects_device)
{
    kdcl_context *ctx = fresh();
    const struct kdcl_device_info *d0 = kdcl_context_device_info(ctx, 0);
    char sub[16];
    if (!pick_substring(d0->vendor, sub, sizeof sub))
        cr_skip_test("vendor '%s' is too short to take a substring of",
                     d0->vendor);
    expect_select(ctx, sub, 0);
    kdcl_context_free(ctx);
}

Test(device, spec_matching_nothing_is_enodev_naming_the_spec)
{
    kdcl_context *ctx = fresh();
    expect_select(ctx, "no-such-device-xyz", -1);
    expect_select(ctx, "gpu:99", -1);
    kdcl_context_free(ctx);
}

/* ---------------------------------------------------------------------- */
/* The opened device                                                       */

Test(device, opened_device_reports_its_capabilities)
{
    kdcl_context *ctx = th_ctx();
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    cr_assert_not_null(d);
    cr_assert_eq(d->struct_size, sizeof(struct kdcl_device_info));
    cr_assert_eq(d, kdcl_context_device_info(ctx, d->index));
    cr_assert_gt(strlen(d->name), 0, "empty name");
    cr_assert_gt(strlen(d->vendor), 0, "empty vendor");
    cr_assert_gt(strlen(d->platform_name), 0, "empty platform name");
    cr_assert_gt(strlen(d->platform_version), 0, "empty platform version");
    cr_assert_gt(strlen(d->device_version), 0, "empty device version");
    cr_assert_gt(strlen(d->driver_version), 0, "empty driver version");
    cr_assert_geq(d->cl_version, 120, "cl_version %u ('%s')", d->cl_version,
                  d->device_version);
    cr_assert_geq(d->cl_c_version, 120, "cl_c_version %u", d->cl_c_version);
    cr_assert_eq(d->cl_version % 10, 0);
    cr_assert_geq(d->compute_units, 1);
    cr_assert_gt(d->global_mem, 0);
    cr_assert_gt(d->max_alloc, 0);
    cr_assert_leq(d->max_alloc, d->global_mem, "max_alloc %llu > %llu",
                  (unsigned long long)d->max_alloc,
                  (unsigned long long)d->global_mem);
    cr_assert_gt(d->local_mem, 0);
    cr_assert_geq(d->max_wg_size, 1);
    cr_assert_geq(d->mem_base_align, 4, "mem_base_align %u",
                  d->mem_base_align);
    cr_assert(d->type == KDCL_DEVICE_OTHER || d->type == KDCL_DEVICE_CPU
                  || d->type == KDCL_DEVICE_GPU
                  || d->type == KDCL_DEVICE_ACCELERATOR,
              "type %u", d->type);
    cr_assert(d->fp64 == 0 || d->fp64 == 1, "fp64 %u", d->fp64);
    cr_assert(d->fp16 == 0 || d->fp16 == 1, "fp16 %u", d->fp16);
}

Test(device, fp64_flag_matches_whether_double_kernels_build)
{
    static const char *src =
        "/* tests/test-device.c: fp64 probe */\n"
        "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
        "kernel void twice(global double *x)\n"
        "{\n"
        "    size_t i = get_global_id(0);\n"
        "    double v = x[i];\n"
        "    x[i] = v * 2.0 + 1e-300;\n"
        "}\n";
    kdcl_context *ctx = th_ctx();
    const struct kdcl_device_info *d = kdcl_context_device(ctx);
    kdcl_program *prog = NULL;
    int status;
    if (!d->fp64 && th_checking())
        cr_skip_test("a failing build would be reported by the checker");
    status = kdcl_program_build(ctx, src, NULL, &prog);
    if (d->fp64) {
        cr_assert_eq(status, KDCL_OK, "fp64 reported but: %s",
                     kdcl_context_errmsg(ctx));
        cr_assert_not_null(prog);
    } else {
        cr_assert_eq(status, KDCL_EBUILD,
                     "fp64 not reported but a double kernel built (%s)",
                     kdcl_status_name(status));
    }
}

Test(device, opening_twice_is_an_error)
{
    kdcl_context *ctx = fresh();
    const struct kdcl_device_info *d;
    cr_assert_eq(kdcl_context_open(ctx, test_spec()), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    d = kdcl_context_device(ctx);
    cr_assert_not_null(d);
    cr_assert_eq(kdcl_context_open(ctx, test_spec()), KDCL_EINVAL);
    cr_assert_gt(strlen(kdcl_context_errmsg(ctx)), 0);
    cr_assert_eq(kdcl_context_device(ctx), d, "the open device changed");
    cr_assert_eq(kdcl_context_finish(ctx), KDCL_OK);
    kdcl_context_free(ctx);
}

Test(device, open_with_unmatched_spec_opens_nothing)
{
    kdcl_context *ctx = fresh();
    cr_assert_eq(kdcl_context_open(ctx, "no-such-device-xyz"), KDCL_ENODEV);
    cr_assert_null(kdcl_context_device(ctx));
    cr_assert(strstr(kdcl_context_errmsg(ctx), "no-such-device-xyz"));
    /* A failed open leaves the context free to open a device. */
    cr_assert_eq(kdcl_context_open(ctx, test_spec()), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    cr_assert_not_null(kdcl_context_device(ctx));
    kdcl_context_free(ctx);
}

Test(device, finish_without_a_device_is_an_error)
{
    kdcl_context *ctx = fresh();
    cr_assert_eq(kdcl_context_finish(ctx), KDCL_EINVAL);
    cr_assert_gt(strlen(kdcl_context_errmsg(ctx)), 0);
    kdcl_context_free(ctx);
}

Test(device, errmsg_is_never_null)
{
    kdcl_context *ctx = fresh();
    cr_assert_not_null(kdcl_context_errmsg(NULL));
    cr_assert_gt(strlen(kdcl_context_errmsg(NULL)), 0);
    cr_assert_not_null(kdcl_context_errmsg(ctx));
    cr_assert_str_eq(kdcl_context_errmsg(ctx), "",
                     "fresh context has message '%s'",
                     kdcl_context_errmsg(ctx));
    kdcl_context_free(ctx);
    kdcl_context_free(NULL); /* a no-op */
}

/* ---------------------------------------------------------------------- */
/* No platform                                                             */

Test(device, no_opencl_platform_is_a_clear_message)
{
    char dir[] = "/tmp/kdcl-test-noicd-XXXXXX";
    char buf[2048];
    const char *preload = getenv("LD_PRELOAD");
    int fds[2], wstatus = 0, child_status = 0;
    ssize_t got;
    size_t used = 0;
    pid_t pid;

    /* A preloaded OpenCL (Oclgrind) ignores the ICD loader's variables. */
    if (preload && strstr(preload, "oclgrind"))
        cr_skip_test("OpenCL is preloaded (%s); no ICD to empty", preload);
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(pipe(fds), 0);
    pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) {
        kdcl_context *ctx = NULL;
        int status;
        close(fds[0]);
        setenv("OCL_ICD_VENDORS", dir, 1);
        setenv("OPENCL_VENDOR_PATH", dir, 1);
        unsetenv("OCL_ICD_FILENAMES");
        status = kdcl_context_init(&ctx);
        dprintf(fds[1], "%d\n%s", status, kdcl_context_errmsg(ctx));
        close(fds[1]);
        kdcl_context_free(ctx);
        _exit(status == KDCL_ENODEV ? 0 : 1);
    }
    close(fds[1]);
    while ((got = read(fds[0], buf + used, sizeof buf - 1 - used)) > 0)
        used += (size_t)got;
    buf[used] = '\0';
    close(fds[0]);
    cr_assert_eq(waitpid(pid, &wstatus, 0), pid);
    rmdir(dir);
    cr_assert(WIFEXITED(wstatus), "child died (status %d)", wstatus);
    cr_assert_eq(sscanf(buf, "%d", &child_status), 1, "child said '%s'",
                 buf);
    cr_assert_eq(child_status, KDCL_ENODEV, "status %s, message: %s",
                 kdcl_status_name(child_status), buf);
    cr_assert(strstr(buf, "no OpenCL platform") != NULL, "message: %s",
              buf);
    cr_assert_eq(WEXITSTATUS(wstatus), 0);
}
