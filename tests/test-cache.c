/*
 * tests/test-cache.c - tests of the program cache (core/program.c): the
 * in-memory cache per context and the binaries on disk, read through
 * kdcl_context_cache_stats and the files in the cache directory.  Every
 * test gets its own empty KDCL_CACHE_DIR, KDCL_CACHE=1 (unless it tests
 * the default) and its own contexts, and builds sources that name the
 * test, so no entry from elsewhere can interfere.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static char g_dir[256];

/* Remove path and everything under it. */
static void remove_tree(const char *path)
{
    struct stat st;
    DIR *d;
    struct dirent *e;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    d = opendir(path);
    while (d && (e = readdir(d)) != NULL) {
        char sub[1024];
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        remove_tree(sub);
    }
    if (d)
        closedir(d);
    rmdir(path);
}

/* Criterion .fini: the cache directory goes away. */
static void remove_cache_dir(void)
{
    if (g_dir[0])
        remove_tree(g_dir);
}

/* Criterion .init: a fresh, empty cache directory, cache on (whatever
   the default for the device). */
static void fresh_cache_dir(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/kdcl-test-cache-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp failed");
    setenv("KDCL_CACHE_DIR", g_dir, 1);
    setenv("KDCL_CACHE", "1", 1);
    /* .fini is skipped when a test skips itself; exit is not. */
    atexit(remove_cache_dir);
}

TestSuite(cache, .init = fresh_cache_dir, .fini = remove_cache_dir);

/* A new context on the test device. */
static kdcl_context *open_ctx(void)
{
    const char *spec = getenv("KDCL_TEST_DEVICE");
    kdcl_context *ctx = NULL;
    int status = kdcl_context_init(&ctx);
    if (!status)
        status = kdcl_context_open(ctx, spec && *spec ? spec : "auto");
    cr_assert_eq(status, KDCL_OK, "no test device: %s",
                 kdcl_context_errmsg(ctx));
    return ctx;
}

static struct kdcl_cache_stats stats(const kdcl_context *ctx)
{
    struct kdcl_cache_stats s;
    memset(&s, 0xff, sizeof s);
    kdcl_context_cache_stats(ctx, &s);
    return s;
}

#define ASSERT_STATS(ctx, mem, disk, built, writes, bad)                     \
    do {                                                                     \
        struct kdcl_cache_stats s_ = stats(ctx);                             \
        cr_assert(s_.memory_hits == (mem) && s_.disk_hits == (disk)          \
                      && s_.builds == (built)                                \
                      && s_.disk_writes == (writes) && s_.disk_bad == (bad), \
                  "stats memory_hits %llu disk_hits %llu builds %llu "       \
                  "disk_writes %llu disk_bad %llu; want %d %d %d %d %d",     \
                  (unsigned long long)s_.memory_hits,                        \
                  (unsigned long long)s_.disk_hits,                          \
                  (unsigned long long)s_.builds,                             \
                  (unsigned long long)s_.disk_writes,                        \
                  (unsigned long long)s_.disk_bad, mem, disk, built, writes, \
                  bad);                                                      \
    } while (0)

/* Files in dir ending in suffix (NULL: every file); -1 when dir is
   missing. */
static int count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), sl = suffix ? strlen(suffix) : 0;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (!suffix || (len >= sl && strcmp(e->d_name + len - sl, suffix) == 0))
            n++;
    }
    closedir(d);
    return n;
}

/* Every file in the cache dir is a finished *.bin entry. */
static void assert_no_temporaries(const char *dir)
{
    int all = count_files(dir, NULL), bins = count_files(dir, ".bin");
    cr_assert_eq(all, bins, "%d files in %s, of which %d *.bin", all, dir,
                 bins);
}

/* The path of the one *.bin entry in dir. */
static void only_entry(const char *dir, char *path, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    cr_assert_not_null(d, "no cache dir %s", dir);
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".bin") == 0) {
            snprintf(path, len, "%s/%s", dir, e->d_name);
            n++;
        }
    }
    closedir(d);
    cr_assert_eq(n, 1, "%d entries in %s, want 1", n, dir);
}

/* A source unique to tag: kernel fill writes out[i] = 3 * i + FOO. */
static void make_source(char *buf, size_t len, const char *tag)
{
    static int counter;
    snprintf(buf, len,
             "/* tests/test-cache.c: %s #%d */\n"
             "#ifndef FOO\n"
             "#define FOO 0\n"
             "#endif\n"
             "kernel void fill(global int *out, int n)\n"
             "{\n"
             "    int i = (int)get_global_id(0);\n"
             "    if (i < n)\n"
             "        out[i] = 3 * i + FOO;\n"
             "}\n",
             tag, counter++);
}

/* Build source and check that its kernel runs and gives 3 * i + foo. */
static kdcl_program *build_and_run(kdcl_context *ctx, const char *source,
                                   const char *options, int foo)
{
    enum { N = 19 };
    kdcl_program *prog = NULL;
    kdcl_kernel *k = NULL;
    kdcl_tensor *t = NULL;
    int32_t out[N];
    int64_t shape[1] = {N};
    size_t global = N;
    int status = kdcl_program_build(ctx, source, options, &prog);
    cr_assert_eq(status, KDCL_OK, "build: %s", kdcl_context_errmsg(ctx));
    cr_assert_not_null(prog);
    cr_assert_eq(kdcl_kernel_init(ctx, prog, "fill", &k), KDCL_OK, "%s",
                 kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_I32, 1, shape, &t),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_fill(t, -1.0), KDCL_OK);
    status = kdcl_kernel_launch(ctx, k, 1, &global, NULL, 2,
                                (struct kdcl_arg[]){KDCL_A_TENSOR(t),
                                                    KDCL_A_I32(N)});
    cr_assert_eq(status, KDCL_OK, "launch: %s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_tensor_read(t, out, sizeof out), KDCL_OK);
    for (int i = 0; i < N; i++)
        cr_assert_eq(out[i], 3 * i + foo, "out[%d] = %d, want %d", i, out[i],
                     3 * i + foo);
    kdcl_tensor_free(t);
    kdcl_kernel_free(k);
    return prog;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long size;
    cr_assert_not_null(f, "cannot open %s", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    cr_assert_gt(size, 0);
    rewind(f);
    buf = malloc((size_t)size);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* ---------------------------------------------------------------------- */
/* Hits and misses                                                         */

Test(cache, first_build_compiles_and_writes_one_entry)
{
    char src[1024];
    kdcl_context *ctx = open_ctx();
    make_source(src, sizeof src, "first_build");
    cr_assert_eq(count_files(g_dir, NULL), 0);
    build_and_run(ctx, src, NULL, 0);
    ASSERT_STATS(ctx, 0, 0, 1, 1, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), 1);
    assert_no_temporaries(g_dir);
    kdcl_context_free(ctx);
}

Test(cache, same_source_on_same_context_is_a_memory_hit)
{
    char src[1024];
    kdcl_context *ctx = open_ctx();
    kdcl_program *p1, *p2 = NULL;
    make_source(src, sizeof src, "memory_hit");
    p1 = build_and_run(ctx, src, "", 0);
    /* A copy of the source, so that the cache compares text, not
       pointers. */
    {
        char copy[1024];
        memcpy(copy, src, sizeof copy);
        cr_assert_eq(kdcl_program_build(ctx, copy, "", &p2), KDCL_OK);
    }
    cr_assert_eq(p1, p2, "a memory hit returns the same program");
    ASSERT_STATS(ctx, 1, 0, 1, 1, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), 1);
    kdcl_context_free(ctx);
}

Test(cache, second_context_on_same_dir_is_a_disk_hit)
{
    char src[1024];
    kdcl_context *a = open_ctx(), *b;
    make_source(src, sizeof src, "disk_hit");
    build_and_run(a, src, NULL, 0);
    kdcl_context_free(a);
    b = open_ctx();
    /* The kernel of a program loaded from disk must run correctly. */
    build_and_run(b, src, NULL, 0);
    ASSERT_STATS(b, 0, 1, 0, 0, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), 1);
    kdcl_context_free(b);
}

Test(cache, options_change_misses)
{
    char src[1024];
    kdcl_context *a = open_ctx(), *b, *c;
    make_source(src, sizeof src, "options_change");
    build_and_run(a, src, "-DFOO=1", 1);
    kdcl_context_free(a);

    b = open_ctx();
    build_and_run(b, src, "-DFOO=2", 2);
    ASSERT_STATS(b, 0, 0, 1, 1, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), 2);
    kdcl_context_free(b);

    /* Each options string gets its own entry back. */
    c = open_ctx();
    build_and_run(c, src, "-DFOO=2", 2);
    build_and_run(c, src, "-DFOO=1", 1);
    ASSERT_STATS(c, 0, 2, 0, 0, 0);
    kdcl_context_free(c);
}

Test(cache, source_change_misses)
{
    char src1[1024], src2[1024];
    kdcl_context *a = open_ctx(), *b;
    make_source(src1, sizeof src1, "source_change");
    make_source(src2, sizeof src2, "source_change");
    cr_assert_str_neq(src1, src2);
    build_and_run(a, src1, NULL, 0);
    kdcl_context_free(a);

    b = open_ctx();
    build_and_run(b, src2, NULL, 0);
    ASSERT_STATS(b, 0, 0, 1, 1, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), 2);
    build_and_run(b, src1, NULL, 0);
    ASSERT_STATS(b, 0, 1, 1, 1, 0);
    kdcl_context_free(b);
}

Test(cache, missing_cache_dir_is_created)
{
    char src[1024], dir[512];
    kdcl_context *ctx;
    snprintf(dir, sizeof dir, "%s/a/b", g_dir);
    setenv("KDCL_CACHE_DIR", dir, 1);
    ctx = open_ctx();
    make_source(src, sizeof src, "missing_dir");
    build_and_run(ctx, src, NULL, 0);
    ASSERT_STATS(ctx, 0, 0, 1, 1, 0);
    cr_assert_eq(count_files(dir, ".bin"), 1);
    kdcl_context_free(ctx);
}

/* ---------------------------------------------------------------------- */
/* Bad entries                                                             */

/* Write an entry, damage it with damage(), and check that the next context
   rebuilds silently and rewrites it, and that a third one gets a hit. */
static void check_damaged_entry(const char *tag,
                                void (*damage)(const char *path))
{
    char src[1024], path[1024];
    kdcl_context *a = open_ctx(), *b, *c;
    make_source(src, sizeof src, tag);
    build_and_run(a, src, NULL, 0);
    kdcl_context_free(a);
    only_entry(g_dir, path, sizeof path);
    damage(path);

    b = open_ctx();
    build_and_run(b, src, NULL, 0);
    ASSERT_STATS(b, 0, 0, 1, 1, 1);
    cr_assert_str_eq(kdcl_context_errmsg(b), "", "the rebuild was not silent");
    only_entry(g_dir, path, sizeof path);
    assert_no_temporaries(g_dir);
    kdcl_context_free(b);

    c = open_ctx();
    build_and_run(c, src, NULL, 0);
    ASSERT_STATS(c, 0, 1, 0, 0, 0);
    kdcl_context_free(c);
}

static void flip_middle_byte(const char *path)
{
    size_t len;
    unsigned char *buf = slurp(path, &len);
    buf[len / 2] ^= 0x5a;
    spit(path, buf, len);
    free(buf);
}

static void truncate_half(const char *path)
{
    size_t len;
    unsigned char *buf = slurp(path, &len);
    spit(path, buf, len / 2);
    free(buf);
}

static void write_garbage(const char *path)
{
    static const char garbage[] = "this is not a kdcl cache entry\n";
    spit(path, garbage, sizeof garbage - 1);
}

static void empty_file(const char *path)
{
    spit(path, "", 0);
}

static void flip_last_byte(const char *path)
{
    size_t len;
    unsigned char *buf = slurp(path, &len);
    buf[len - 1] ^= 0x01;
    spit(path, buf, len);
    free(buf);
}

Test(cache, flipped_byte_is_rebuilt_and_rewritten)
{
    check_damaged_entry("flipped_byte", flip_middle_byte);
}

Test(cache, flipped_checksum_is_rebuilt_and_rewritten)
{
    check_damaged_entry("flipped_checksum", flip_last_byte);
}

Test(cache, truncated_entry_is_rebuilt_and_rewritten)
{
    check_damaged_entry("truncated", truncate_half);
}

Test(cache, garbage_entry_is_rebuilt_and_rewritten)
{
    check_damaged_entry("garbage", write_garbage);
}

Test(cache, empty_entry_is_rebuilt_and_rewritten)
{
    check_damaged_entry("empty", empty_file);
}

/* ---------------------------------------------------------------------- */
/* KDCL_CACHE=0, temporaries, build failures                               */

Test(cache, cache_off_writes_nothing_and_never_reads)
{
    char src[1024], dir[512];
    kdcl_context *a, *b, *c;
    snprintf(dir, sizeof dir, "%s/sub", g_dir);
    setenv("KDCL_CACHE_DIR", dir, 1);
    make_source(src, sizeof src, "cache_off");

    /* Off: nothing written, not even the directory. */
    setenv("KDCL_CACHE", "0", 1);
    a = open_ctx();
    build_and_run(a, src, NULL, 0);
    ASSERT_STATS(a, 0, 0, 1, 0, 0);
    cr_assert_eq(count_files(dir, NULL), -1, "%s was created", dir);
    kdcl_context_free(a);

    /* On: an entry appears. */
    setenv("KDCL_CACHE", "1", 1);
    b = open_ctx();
    build_and_run(b, src, NULL, 0);
    ASSERT_STATS(b, 0, 0, 1, 1, 0);
    cr_assert_eq(count_files(dir, ".bin"), 1);
    kdcl_context_free(b);

    /* Off again: the valid entry is not read. */
    setenv("KDCL_CACHE", "0", 1);
    c = open_ctx();
    build_and_run(c, src, NULL, 0);
    ASSERT_STATS(c, 0, 0, 1, 0, 0);
    cr_assert_eq(count_files(dir, NULL), 1);
    kdcl_context_free(c);
}

Test(cache, default_is_off_only_on_pocl_with_its_own_cache)
{
    char src[1024];
    kdcl_context *ctx;
    bool pocl;
    unsetenv("KDCL_CACHE");
    unsetenv("POCL_KERNEL_CACHE");
    ctx = open_ctx();
    pocl = strstr(kdcl_context_device(ctx)->platform_name,
                  "Portable Computing Language")
           != NULL;
    make_source(src, sizeof src, "default");
    build_and_run(ctx, src, NULL, 0);
    ASSERT_STATS(ctx, 0, 0, 1, pocl ? 0 : 1, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), pocl ? 0 : 1);
    if (pocl) {
        /* With PoCL's cache off, kdcl's is on again.  (PoCL read its
           variable when the first context was made; this one only changes
           kdcl's mind.) */
        setenv("POCL_KERNEL_CACHE", "0", 1);
        make_source(src, sizeof src, "default");
        build_and_run(ctx, src, NULL, 0);
        ASSERT_STATS(ctx, 0, 0, 2, 1, 0);
        cr_assert_eq(count_files(g_dir, ".bin"), 1);
    }
    kdcl_context_free(ctx);
}

Test(cache, writes_leave_no_temporary_files)
{
    kdcl_context *ctx = open_ctx();
    for (int i = 0; i < 3; i++) {
        char src[1024];
        make_source(src, sizeof src, "no_temporaries");
        build_and_run(ctx, src, NULL, 0);
    }
    ASSERT_STATS(ctx, 0, 0, 3, 3, 0);
    cr_assert_eq(count_files(g_dir, ".bin"), 3);
    assert_no_temporaries(g_dir);
    kdcl_context_free(ctx);
}

Test(cache, build_failure_is_ebuild_with_log_and_writes_nothing)
{
    static const char *src =
        "/* tests/test-cache.c: build_failure */\n"
        "kernel void broken(global int *out)\n"
        "{\n"
        "    out[0] = kdcl_undeclared_identifier_42;\n"
        "}\n";
    kdcl_context *ctx;
    kdcl_program *prog = (kdcl_program *)&prog;
    int status;
    if (th_checking())
        cr_skip_test("a failing build would be reported by the checker");
    ctx = open_ctx();
    status = kdcl_program_build(ctx, src, NULL, &prog);
    cr_assert_eq(status, KDCL_EBUILD, "status %s", kdcl_status_name(status));
    cr_assert_null(prog);
    cr_assert(strstr(kdcl_context_errmsg(ctx),
                     "kdcl_undeclared_identifier_42") != NULL,
              "the build log is missing from the message: %s",
              kdcl_context_errmsg(ctx));
    cr_assert_eq(stats(ctx).disk_writes, 0);
    cr_assert_eq(count_files(g_dir, NULL), 0);
    kdcl_context_free(ctx);
}

Test(cache, build_without_open_device_is_einval)
{
    kdcl_context *ctx = NULL;
    kdcl_program *prog = NULL;
    cr_assert_eq(kdcl_context_init(&ctx), KDCL_OK);
    cr_assert_eq(kdcl_program_build(ctx, "kernel void f(void) {}", NULL,
                                    &prog),
                 KDCL_EINVAL);
    cr_assert_null(prog);
    cr_assert_gt(strlen(kdcl_context_errmsg(ctx)), 0);
    kdcl_context_free(ctx);
}
