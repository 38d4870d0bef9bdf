/*
 * tests/test-formats.c - tests of the IDX reader (core/idx.c) and the
 * safetensors reader and writer (core/safetensors.c): the real
 * Fashion-MNIST files when Debian's dataset-fashion-mnist is installed,
 * tiny IDX files of every type written plain and gzipped, files written by
 * the Python safetensors package, round trips, and every rejection both
 * readers make.
 *
 * The safetensors byte arrays below were produced with the Python
 * safetensors package (safetensors.numpy.save); running the tests needs no
 * Python.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#include "idx.h"
#include "safetensors.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* ---------------------------------------------------------------- */
/* Fixtures and helpers                                               */
/* ---------------------------------------------------------------- */

static char g_dir[64]; /* this test's scratch directory */

static void tpath(char *buf, size_t n, const char *leaf)
{
    snprintf(buf, n, "%s/%s", g_dir, leaf);
}

static void setup(void)
{
    strcpy(g_dir, "/tmp/kdcl-test-formats-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
}

/* Removes the scratch directory and what is in it. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    struct stat st;

    if (d == NULL)
        return;
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void teardown(void)
{
    if (g_dir[0] != '\0')
        remove_tree(g_dir);
}

TestSuite(idx, .init = setup, .fini = teardown);
TestSuite(safetensors, .init = setup, .fini = teardown);

/* Number of entries in the scratch directory; names them in `names`. */
static int dir_entries(char *names, size_t n)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;
    int count = 0;

    cr_assert_not_null(d);
    names[0] = '\0';
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        count++;
        strncat(names, e->d_name, n - strlen(names) - 1);
        strncat(names, " ", n - strlen(names) - 1);
    }
    closedir(d);
    return count;
}

static void write_file(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");

    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

/* Writes buf gzip-compressed through zlib. */
static void write_gz(const char *path, const void *buf, size_t len)
{
    gzFile f = gzopen(path, "wb");

    cr_assert_not_null(f, "gzopen %s: %s", path, strerror(errno));
    if (len > 0)
        cr_assert_eq(gzwrite(f, buf, (unsigned)len), (int)len);
    cr_assert_eq(gzclose(f), Z_OK);
}

/* Reads a whole file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;

    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    cr_assert_geq(n, 0);
    rewind(f);
    buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* Asserts that err is "<path>: ..." and contains want. */
static void assert_err(const char *err, const char *path, const char *want)
{
    cr_assert_eq(strncmp(err, path, strlen(path)), 0,
                 "message does not name %s: %s", path, err);
    cr_assert_eq(err[strlen(path)], ':', "%s", err);
    cr_assert_not_null(strstr(err, want), "'%s' not in: %s", want, err);
    cr_assert_null(strchr(err, '\n'), "%s", err);
}

static void assert_zeroed(const struct kdcl__array *a)
{
    cr_assert_null(a->data);
    cr_assert_eq(a->ndim, 0);
    cr_assert_eq(a->numel, 0);
    for (int i = 0; i < KDCL_MAX_DIMS; i++)
        cr_assert_eq(a->shape[i], 0);
}

/* ---------------------------------------------------------------- */
/* IDX: helpers                                                       */
/* ---------------------------------------------------------------- */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/*
 * Builds an IDX image: magic 0 0 type ndim, the dims, then dlen bytes of
 * (already big-endian) data.
 */
static unsigned char *make_idx(unsigned type, unsigned ndim,
                               const uint32_t *dims, const void *data,
                               size_t dlen, size_t *len)
{
    size_t n = 4 + 4 * (size_t)ndim + dlen;
    unsigned char *b = malloc(n + 1);

    cr_assert_not_null(b);
    b[0] = 0;
    b[1] = 0;
    b[2] = (unsigned char)type;
    b[3] = (unsigned char)ndim;
    for (unsigned i = 0; i < ndim; i++)
        put_be32(b + 4 + 4 * i, dims[i]);
    if (dlen > 0)
        memcpy(b + 4 + 4 * (size_t)ndim, data, dlen);
    *len = n;
    return b;
}

/* Writes an IDX image to leaf (gzipped if gz) and reads it back. */
static int idx_roundtrip(const unsigned char *b, size_t len, int gz,
                         const char *leaf, struct kdcl__array *a, char *path,
                         size_t pathlen, char *err, size_t errlen)
{
    tpath(path, pathlen, leaf);
    if (gz)
        write_gz(path, b, len);
    else
        write_file(path, b, len);
    return kdcl__idx_read(path, a, err, errlen);
}

/* Reads a hand-made IDX header (no data) and checks the rejection. */
static void idx_expect_reject(unsigned type, unsigned ndim,
                              const uint32_t *dims, const void *data,
                              size_t dlen, int want_rc, const char *want)
{
    struct kdcl__array a;
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    b = make_idx(type, ndim, dims, data, dlen, &len);
    for (int gz = 0; gz < 2; gz++) {
        memset(&a, 0x5a, sizeof a);
        cr_assert_eq(idx_roundtrip(b, len, gz, gz ? "bad.gz" : "bad", &a,
                                   path, sizeof path, err, sizeof err),
                     want_rc, "gz=%d: %s", gz, err);
        assert_err(err, path, want);
        assert_zeroed(&a);
    }
    free(b);
}

/* ---------------------------------------------------------------- */
/* IDX: Fashion-MNIST                                                 */
/* ---------------------------------------------------------------- */

static void check_mnist_pair(const char *images, const char *labels,
                             int64_t n, uint64_t want_sum,
                             uint64_t want_first_sum, const uint8_t *first)
{
    struct kdcl__array im, lb;
    char err[512] = "";
    int64_t counts[10] = {0};
    uint64_t sum = 0, first_sum = 0;
    const uint8_t *px, *l;

    cr_assert_eq(kdcl__idx_read(images, &im, err, sizeof err), KDCL_OK,
                 "%s", err);
    cr_assert_eq(im.dtype, KDCL_DTYPE_U8);
    cr_assert_eq(im.ndim, 3);
    cr_assert_eq(im.shape[0], n);
    cr_assert_eq(im.shape[1], 28);
    cr_assert_eq(im.shape[2], 28);
    cr_assert_eq(im.numel, n * 784);
    px = im.data;
    for (int64_t i = 0; i < im.numel; i++)
        sum += px[i];
    for (int64_t i = 0; i < 784; i++)
        first_sum += px[i];
    cr_assert_eq(sum, want_sum, "pixel sum %llu", (unsigned long long)sum);
    cr_assert_eq(first_sum, want_first_sum);

    cr_assert_eq(kdcl__idx_read(labels, &lb, err, sizeof err), KDCL_OK,
                 "%s", err);
    cr_assert_eq(lb.dtype, KDCL_DTYPE_U8);
    cr_assert_eq(lb.ndim, 1);
    cr_assert_eq(lb.shape[0], n);
    l = lb.data;
    for (int64_t i = 0; i < n; i++) {
        cr_assert_lt(l[i], 10, "label %lld is %u", (long long)i, l[i]);
        counts[l[i]]++;
    }
    /* Fashion-MNIST is balanced: n / 10 of every class. */
    for (int c = 0; c < 10; c++)
        cr_assert_eq(counts[c], n / 10, "class %d: %lld", c,
                     (long long)counts[c]);
    cr_assert_eq(memcmp(l, first, 10), 0);
    kdcl__array_free(&im);
    kdcl__array_free(&lb);
}

Test(idx, reads_fashion_mnist_from_debian_package)
{
    static const uint8_t train_first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    static const uint8_t test_first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    char paths[4][KDCL__IDX_PATH_MAX];
    char err[512] = "";
    struct stat st;

    if (stat(FASHION_MNIST_DIR, &st) != 0)
        cr_skip_test(FASHION_MNIST_DIR " is absent (install "
                     "dataset-fashion-mnist)");
    cr_assert_eq(kdcl__fashion_mnist_find(FASHION_MNIST_DIR, paths, err,
                                          sizeof err), KDCL_OK, "%s", err);
    cr_assert_str_eq(paths[KDCL__MNIST_TRAIN_IMAGES], FASHION_MNIST_DIR
                     "/train-images-idx3-ubyte.gz");
    cr_assert_str_eq(paths[KDCL__MNIST_TRAIN_LABELS], FASHION_MNIST_DIR
                     "/train-labels-idx1-ubyte.gz");
    cr_assert_str_eq(paths[KDCL__MNIST_TEST_IMAGES], FASHION_MNIST_DIR
                     "/t10k-images-idx3-ubyte.gz");
    cr_assert_str_eq(paths[KDCL__MNIST_TEST_LABELS], FASHION_MNIST_DIR
                     "/t10k-labels-idx1-ubyte.gz");
    /* Sums computed independently with Python's gzip and numpy. */
    check_mnist_pair(paths[0], paths[1], 60000, 3431114169u, 76247,
                     train_first);
    check_mnist_pair(paths[2], paths[3], 10000, 573469082u, 33456,
                     test_first);
}

/* ---------------------------------------------------------------- */
/* IDX: finding the files                                             */
/* ---------------------------------------------------------------- */

static void touch(const char *leaf)
{
    char path[256];

    tpath(path, sizeof path, leaf);
    write_file(path, "x", 1);
}

Test(idx, find_accepts_plain_and_gz_names_preferring_plain)
{
    char paths[4][KDCL__IDX_PATH_MAX];
    char want[256], dir[80];
    char err[512] = "";

    touch("train-images-idx3-ubyte");
    touch("train-labels-idx1-ubyte.gz");
    touch("t10k-images-idx3-ubyte.gz");
    touch("t10k-labels-idx1-ubyte");
    touch("t10k-labels-idx1-ubyte.gz");
    cr_assert_eq(kdcl__fashion_mnist_find(g_dir, paths, err, sizeof err),
                 KDCL_OK, "%s", err);
    tpath(want, sizeof want, "train-images-idx3-ubyte");
    cr_assert_str_eq(paths[0], want);
    tpath(want, sizeof want, "train-labels-idx1-ubyte.gz");
    cr_assert_str_eq(paths[1], want);
    tpath(want, sizeof want, "t10k-images-idx3-ubyte.gz");
    cr_assert_str_eq(paths[2], want);
    tpath(want, sizeof want, "t10k-labels-idx1-ubyte");
    cr_assert_str_eq(paths[3], want);

    /* A trailing slash gives no doubled slash. */
    snprintf(dir, sizeof dir, "%s/", g_dir);
    cr_assert_eq(kdcl__fashion_mnist_find(dir, paths, err, sizeof err),
                 KDCL_OK, "%s", err);
    tpath(want, sizeof want, "train-images-idx3-ubyte");
    cr_assert_str_eq(paths[0], want);
}

Test(idx, find_lists_every_missing_file)
{
    char paths[4][KDCL__IDX_PATH_MAX];
    char sub[256];
    char err[512] = "";

    touch("train-images-idx3-ubyte.gz");
    touch("t10k-images-idx3-ubyte");
    /* A directory with a file's name does not count. */
    tpath(sub, sizeof sub, "t10k-labels-idx1-ubyte");
    cr_assert_eq(mkdir(sub, 0755), 0);
    cr_assert_eq(kdcl__fashion_mnist_find(g_dir, paths, err, sizeof err),
                 KDCL_ENOTFOUND, "%s", err);
    assert_err(err, g_dir, "missing train-labels-idx1-ubyte(.gz), "
                           "t10k-labels-idx1-ubyte(.gz)");
    cr_assert_null(strstr(err, "images"), "%s", err);
    for (int i = 0; i < 4; i++)
        cr_assert_str_empty(paths[i]);
}

Test(idx, find_rejects_missing_directory_and_file)
{
    char paths[4][KDCL__IDX_PATH_MAX];
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "nope");
    cr_assert_eq(kdcl__fashion_mnist_find(path, paths, err, sizeof err),
                 KDCL_EIO);
    assert_err(err, path, strerror(ENOENT));
    touch("plain");
    tpath(path, sizeof path, "plain");
    cr_assert_eq(kdcl__fashion_mnist_find(path, paths, err, sizeof err),
                 KDCL_EIO);
    assert_err(err, path, "not a directory");
    cr_assert_eq(kdcl__fashion_mnist_find(NULL, paths, err, sizeof err),
                 KDCL_EINVAL);
    cr_assert_eq(kdcl__fashion_mnist_find(g_dir, NULL, err, sizeof err),
                 KDCL_EINVAL);
}

/* ---------------------------------------------------------------- */
/* IDX: reading                                                       */
/* ---------------------------------------------------------------- */

Test(idx, reads_u8_plain_and_gzipped)
{
    static const uint32_t dims[] = {2, 3};
    static const uint8_t data[] = {0, 1, 127, 128, 200, 255};
    struct kdcl__array a;
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    b = make_idx(0x08, 2, dims, data, sizeof data, &len);
    for (int gz = 0; gz < 2; gz++) {
        cr_assert_eq(idx_roundtrip(b, len, gz, gz ? "u8.gz" : "u8", &a, path,
                                   sizeof path, err, sizeof err),
                     KDCL_OK, "%s", err);
        cr_assert_eq(a.dtype, KDCL_DTYPE_U8);
        cr_assert_eq(a.ndim, 2);
        cr_assert_eq(a.shape[0], 2);
        cr_assert_eq(a.shape[1], 3);
        cr_assert_eq(a.shape[2], 0);
        cr_assert_eq(a.numel, 6);
        cr_assert_eq(memcmp(a.data, data, sizeof data), 0);
        kdcl__array_free(&a);
    }
    free(b);
}

Test(idx, reads_i32_f32_f64_in_host_order)
{
    static const uint32_t dims3[] = {3};
    static const uint32_t dims2[] = {2};
    /* Big-endian encodings of the expected values. */
    static const unsigned char i32_be[] = {
        0x00, 0x00, 0x00, 0x07, 0xff, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00,
        0x00,
    };
    static const int32_t i32_want[] = {7, -1, INT32_MIN};
    static const unsigned char f32_be[] = {
        0x3f, 0x80, 0x00, 0x00, 0xc0, 0x20, 0x00, 0x00, 0x41, 0x48, 0x00,
        0x00,
    };
    static const float f32_want[] = {1.0f, -2.5f, 12.5f};
    static const unsigned char f64_be[] = {
        0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18,
        0xbf, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    };
    static const double f64_want[] = {3.141592653589793, -1.0};
    struct kdcl__array a;
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    for (int gz = 0; gz < 2; gz++) {
        b = make_idx(0x0C, 1, dims3, i32_be, sizeof i32_be, &len);
        cr_assert_eq(idx_roundtrip(b, len, gz, "i32", &a, path, sizeof path,
                                   err, sizeof err), KDCL_OK, "%s", err);
        cr_assert_eq(a.dtype, KDCL_DTYPE_I32);
        cr_assert_eq(a.numel, 3);
        cr_assert_eq(memcmp(a.data, i32_want, sizeof i32_want), 0);
        kdcl__array_free(&a);
        free(b);

        b = make_idx(0x0D, 1, dims3, f32_be, sizeof f32_be, &len);
        cr_assert_eq(idx_roundtrip(b, len, gz, "f32", &a, path, sizeof path,
                                   err, sizeof err), KDCL_OK, "%s", err);
        cr_assert_eq(a.dtype, KDCL_DTYPE_F32);
        cr_assert_eq(memcmp(a.data, f32_want, sizeof f32_want), 0);
        kdcl__array_free(&a);
        free(b);

        b = make_idx(0x0E, 1, dims2, f64_be, sizeof f64_be, &len);
        cr_assert_eq(idx_roundtrip(b, len, gz, "f64", &a, path, sizeof path,
                                   err, sizeof err), KDCL_OK, "%s", err);
        cr_assert_eq(a.dtype, KDCL_DTYPE_F64);
        cr_assert_eq(a.shape[0], 2);
        cr_assert_eq(memcmp(a.data, f64_want, sizeof f64_want), 0);
        kdcl__array_free(&a);
        free(b);
    }
}

Test(idx, reads_empty_and_eight_dim_arrays)
{
    static const uint32_t empty[] = {0, 70000};
    static const uint32_t eight[] = {1, 2, 1, 2, 1, 2, 1, 2};
    unsigned char data[16];
    struct kdcl__array a;
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    b = make_idx(0x0D, 2, empty, NULL, 0, &len);
    cr_assert_eq(idx_roundtrip(b, len, 1, "empty.gz", &a, path, sizeof path,
                               err, sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.numel, 0);
    cr_assert_eq(a.shape[1], 70000);
    cr_assert_not_null(a.data);
    kdcl__array_free(&a);
    free(b);

    for (int i = 0; i < 16; i++)
        data[i] = (unsigned char)(i * 3);
    b = make_idx(0x08, 8, eight, data, 16, &len);
    cr_assert_eq(idx_roundtrip(b, len, 0, "eight", &a, path, sizeof path,
                               err, sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.ndim, 8);
    cr_assert_eq(a.numel, 16);
    cr_assert_eq(a.shape[7], 2);
    cr_assert_eq(memcmp(a.data, data, 16), 0);
    kdcl__array_free(&a);
    free(b);
}

Test(idx, reads_data_larger_than_first_buffer)
{
    /* 3 MiB of i32: the buffer grows past its 1 MiB start. */
    enum { N = 3 * 1024 * 1024 / 4 + 5 };
    uint32_t dims[] = {N};
    unsigned char *be = malloc((size_t)N * 4);
    struct kdcl__array a;
    char path[256];
    char err[512] = "";
    const int32_t *v;
    unsigned char *b;
    size_t len;

    cr_assert_not_null(be);
    for (uint32_t i = 0; i < N; i++)
        put_be32(be + 4 * (size_t)i, i * 2654435761u);
    b = make_idx(0x0C, 1, dims, be, (size_t)N * 4, &len);
    cr_assert_eq(idx_roundtrip(b, len, 1, "big.gz", &a, path, sizeof path,
                               err, sizeof err), KDCL_OK, "%s", err);
    v = a.data;
    for (uint32_t i = 0; i < N; i++)
        cr_assert_eq((uint32_t)v[i], i * 2654435761u, "element %u", i);
    kdcl__array_free(&a);
    free(b);
    free(be);
}

/* ---------------------------------------------------------------- */
/* IDX: rejections                                                    */
/* ---------------------------------------------------------------- */

Test(idx, rejects_missing_file)
{
    struct kdcl__array a;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "train-images-idx3-ubyte.gz");
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_EIO);
    assert_err(err, path, "cannot open: ");
    assert_err(err, path, strerror(ENOENT));
    assert_zeroed(&a);
}

Test(idx, rejects_directory)
{
    struct kdcl__array a;
    char err[512] = "";

    cr_assert_eq(kdcl__idx_read(g_dir, &a, err, sizeof err), KDCL_EIO, "%s",
                 err);
    assert_err(err, g_dir, strerror(EISDIR));
    assert_zeroed(&a);
}

Test(idx, rejects_bad_magic)
{
    static const unsigned char npy[] = "\x93NUMPY\x01\x00 whatever else";
    static const unsigned char one[] = {0x00, 0x01, 0x08, 0x01, 0, 0, 0, 0};
    struct kdcl__array a;
    char path[256];
    char err[512] = "";

    for (int gz = 0; gz < 2; gz++) {
        cr_assert_eq(idx_roundtrip(npy, sizeof npy - 1, gz, "npy", &a, path,
                                   sizeof path, err, sizeof err),
                     KDCL_EFORMAT);
        assert_err(err, path, "not an IDX file: bad magic 0x93 0x4e");
        cr_assert_eq(idx_roundtrip(one, sizeof one, gz, "one", &a, path,
                                   sizeof path, err, sizeof err),
                     KDCL_EFORMAT);
        assert_err(err, path, "bad magic 0x00 0x01");
        assert_zeroed(&a);
    }
}

Test(idx, rejects_empty_and_short_header)
{
    struct kdcl__array a;
    char path[256];
    char err[512] = "";

    for (int gz = 0; gz < 2; gz++) {
        cr_assert_eq(idx_roundtrip((const unsigned char *)"", 0, gz, "empty",
                                   &a, path, sizeof path, err, sizeof err),
                     KDCL_EFORMAT);
        assert_err(err, path, "truncated header: expected 4 bytes, found 0");
        cr_assert_eq(idx_roundtrip((const unsigned char *)"\0\0\x08", 3, gz,
                                   "three", &a, path, sizeof path, err,
                                   sizeof err), KDCL_EFORMAT);
        assert_err(err, path, "truncated header: expected 4 bytes, found 3");
    }
}

Test(idx, rejects_signed_8_and_16_bit_types)
{
    static const uint32_t dims[] = {2};

    idx_expect_reject(0x09, 1, dims, "ab", 2, KDCL_EDTYPE,
                      "type 0x09 (signed 8-bit) is not supported");
    idx_expect_reject(0x0B, 1, dims, "abcd", 4, KDCL_EDTYPE,
                      "type 0x0b (signed 16-bit) is not supported");
}

Test(idx, rejects_unknown_type)
{
    static const uint32_t dims[] = {2};

    idx_expect_reject(0x0A, 1, dims, "ab", 2, KDCL_EFORMAT,
                      "unknown IDX element type 0x0a");
    idx_expect_reject(0xff, 1, dims, "ab", 2, KDCL_EFORMAT,
                      "unknown IDX element type 0xff");
}

Test(idx, rejects_zero_or_too_many_dimensions)
{
    static const uint32_t dims[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};

    idx_expect_reject(0x08, 0, dims, "a", 1, KDCL_EFORMAT,
                      "0 dimensions in the header (1 to 8 are supported)");
    idx_expect_reject(0x08, 9, dims, "a", 1, KDCL_EFORMAT,
                      "9 dimensions in the header");
}

Test(idx, rejects_dimension_overflow)
{
    static const uint32_t big3[] = {0xffffffffu, 0xffffffffu, 0xffffffffu};
    static const uint32_t big2[] = {0xffffffffu, 0x7fffffffu};

    idx_expect_reject(0x08, 3, big3, NULL, 0, KDCL_EFORMAT,
                      "shape 4294967295x4294967295x4294967295 is too "
                      "large: its byte count overflows");
    /* The elements fit in int64, their bytes do not. */
    idx_expect_reject(0x0E, 2, big2, NULL, 0, KDCL_EFORMAT,
                      "its byte count overflows");
}

Test(idx, rejects_truncated_data)
{
    static const uint32_t dims[] = {2, 3};

    idx_expect_reject(0x08, 2, dims, "abcd", 4, KDCL_EFORMAT,
                      "truncated data: expected 6 bytes, found 4");
    idx_expect_reject(0x0D, 2, dims, "abcdefgh", 8, KDCL_EFORMAT,
                      "truncated data: expected 24 bytes, found 8");
}

Test(idx, rejects_huge_shape_as_truncated_without_allocating)
{
    static const uint32_t dims[] = {65536, 65536, 16};

    /* 64 GiB announced, 6 bytes present. */
    idx_expect_reject(0x08, 3, dims, "abcdef", 6, KDCL_EFORMAT,
                      "truncated data: expected 68719476736 bytes, "
                      "found 6");
}

Test(idx, rejects_truncated_dimensions)
{
    unsigned char b[] = {0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0};
    struct kdcl__array a;
    char path[256];
    char err[512] = "";

    for (int gz = 0; gz < 2; gz++) {
        cr_assert_eq(idx_roundtrip(b, sizeof b, gz, "dims", &a, path,
                                   sizeof path, err, sizeof err),
                     KDCL_EFORMAT);
        assert_err(err, path, "truncated header: expected 16 bytes, found "
                              "10");
    }
}

Test(idx, rejects_bytes_after_the_data)
{
    static const uint32_t dims[] = {2};

    idx_expect_reject(0x08, 1, dims, "abcde", 5, KDCL_EFORMAT,
                      "3 unexpected bytes after the data");
}

/* A gzipped 100-element u8 IDX image, compressed. */
static unsigned char *make_gz_image(const char *path, size_t *len)
{
    static const uint32_t dims[] = {10, 10};
    unsigned char data[100];
    unsigned char *b;
    size_t blen;

    for (int i = 0; i < 100; i++)
        data[i] = (unsigned char)(i * 37 + 11);
    b = make_idx(0x08, 2, dims, data, sizeof data, &blen);
    write_gz(path, b, blen);
    free(b);
    return slurp(path, len);
}

Test(idx, rejects_corrupt_gzip_stream)
{
    struct kdcl__array a;
    char path[256];
    char want[512];
    char err[512] = "";
    unsigned char *gz;
    size_t len;

    tpath(path, sizeof path, "x.gz");
    gz = make_gz_image(path, &len);
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_OK, "%s",
                 err);
    kdcl__array_free(&a);

    /* A wrong CRC-32 in the trailer. */
    gz[len - 8] ^= 0xff;
    write_file(path, gz, len);
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_EFORMAT,
                 "%s", err);
    snprintf(want, sizeof want, "%s: corrupt gzip stream: incorrect data "
             "check", path);
    cr_assert_str_eq(err, want);
    assert_zeroed(&a);
    gz[len - 8] ^= 0xff;

    /* Garbage in the deflate blocks right after the 10-byte header. */
    memset(gz + 10, 0xff, 4);
    write_file(path, gz, len);
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_EFORMAT,
                 "%s", err);
    assert_err(err, path, "corrupt gzip stream");
    assert_zeroed(&a);
    free(gz);
}

Test(idx, rejects_truncated_gzip_file)
{
    struct kdcl__array a;
    char path[256];
    char want[512];
    char err[512] = "";
    unsigned char *gz;
    size_t len;

    tpath(path, sizeof path, "x.gz");
    gz = make_gz_image(path, &len);

    /* Cut inside the compressed data: the elements run short. */
    write_file(path, gz, len / 2);
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_EFORMAT,
                 "%s", err);
    assert_err(err, path, "");
    cr_assert(strstr(err, "truncated") != NULL
              || strstr(err, "corrupt gzip") != NULL, "%s", err);
    assert_zeroed(&a);

    /* Cut in the trailer: every element is there, the stream is not. */
    write_file(path, gz, len - 4);
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_EFORMAT,
                 "%s", err);
    snprintf(want, sizeof want, "%s: corrupt gzip stream: unexpected end "
             "of file (the file is truncated)", path);
    cr_assert_str_eq(err, want);
    assert_zeroed(&a);
    free(gz);
}

Test(idx, rejects_null_arguments_and_tolerates_no_error_buffer)
{
    struct kdcl__array a;
    char path[256];
    char err[8];

    cr_assert_eq(kdcl__idx_read(NULL, &a, NULL, 0), KDCL_EINVAL);
    cr_assert_eq(kdcl__idx_read("x", NULL, NULL, 0), KDCL_EINVAL);
    tpath(path, sizeof path, "missing");
    cr_assert_eq(kdcl__idx_read(path, &a, NULL, 0), KDCL_EIO);
    memset(err, 'z', sizeof err);
    cr_assert_eq(kdcl__idx_read(path, &a, err, sizeof err), KDCL_EIO);
    cr_assert_eq(err[sizeof err - 1], '\0');
}

/* ---------------------------------------------------------------- */
/* safetensors: files written by Python                              */
/* ---------------------------------------------------------------- */

/*
 * Written with safetensors 0.8.0 and numpy 2.4.6 by
 *
 *     from safetensors.numpy import save
 *     save({"logits": np.array([[1, -2.5, 3.25], [0, 1e-3, -7]], np.float32),
 *           "scale": np.array(3.141592653589793),
 *           "labels": np.array([7, -1, 2**31 - 1, -2**31], np.int32),
 *           "steps": np.array([[1, -2**63], [2**63 - 1, 0]], np.int64),
 *           "pixels": np.array([0, 128, 255], np.uint8),
 *           "empty": np.zeros((0, 3), np.float32)},
 *          metadata={"format": "np"})
 */
static const unsigned char py_all_dtypes[] = {
    0x88, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f,
    0x6d, 0x65, 0x74, 0x61, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a,
    0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74, 0x22, 0x3a, 0x22, 0x6e,
    0x70, 0x22, 0x7d, 0x2c, 0x22, 0x73, 0x74, 0x65, 0x70, 0x73, 0x22, 0x3a,
    0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x49, 0x36,
    0x34, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b,
    0x32, 0x2c, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x33,
    0x32, 0x5d, 0x7d, 0x2c, 0x22, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x22, 0x3a,
    0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x36,
    0x34, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b,
    0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x33, 0x32, 0x2c, 0x34, 0x30, 0x5d,
    0x7d, 0x2c, 0x22, 0x65, 0x6d, 0x70, 0x74, 0x79, 0x22, 0x3a, 0x7b, 0x22,
    0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22,
    0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x30, 0x2c,
    0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
    0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x34, 0x30, 0x2c, 0x34, 0x30,
    0x5d, 0x7d, 0x2c, 0x22, 0x6c, 0x6f, 0x67, 0x69, 0x74, 0x73, 0x22, 0x3a,
    0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33,
    0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b,
    0x32, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x34, 0x30, 0x2c,
    0x36, 0x34, 0x5d, 0x7d, 0x2c, 0x22, 0x6c, 0x61, 0x62, 0x65, 0x6c, 0x73,
    0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22,
    0x49, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22,
    0x3a, 0x5b, 0x34, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x36, 0x34, 0x2c,
    0x38, 0x30, 0x5d, 0x7d, 0x2c, 0x22, 0x70, 0x69, 0x78, 0x65, 0x6c, 0x73,
    0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22,
    0x55, 0x38, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a,
    0x5b, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66,
    0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x38, 0x30, 0x2c, 0x38,
    0x33, 0x5d, 0x7d, 0x7d, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x18, 0x2d, 0x44, 0x54, 0xfb, 0x21, 0x09, 0x40, 0x00, 0x00, 0x80, 0x3f,
    0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0x50, 0x40, 0x00, 0x00, 0x00, 0x00,
    0x6f, 0x12, 0x83, 0x3a, 0x00, 0x00, 0xe0, 0xc0, 0x07, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x80,
    0x00, 0x80, 0xff,
};

/*
 *     save({"w": np.arange(6, dtype=np.float32).reshape(2, 3),
 *           "b": np.array([0.5, -0.5]),
 *           "ids": np.array([1, 2, 3], np.uint8)},
 *          metadata={"epoch": "3"})
 */
static const unsigned char py_small[] = {
    0xc8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f,
    0x6d, 0x65, 0x74, 0x61, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a,
    0x7b, 0x22, 0x65, 0x70, 0x6f, 0x63, 0x68, 0x22, 0x3a, 0x22, 0x33, 0x22,
    0x7d, 0x2c, 0x22, 0x62, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70,
    0x65, 0x22, 0x3a, 0x22, 0x46, 0x36, 0x34, 0x22, 0x2c, 0x22, 0x73, 0x68,
    0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61,
    0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a,
    0x5b, 0x30, 0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x77, 0x22, 0x3a,
    0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33,
    0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b,
    0x32, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36, 0x2c,
    0x34, 0x30, 0x5d, 0x7d, 0x2c, 0x22, 0x69, 0x64, 0x73, 0x22, 0x3a, 0x7b,
    0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x55, 0x38, 0x22,
    0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x33, 0x5d,
    0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65,
    0x74, 0x73, 0x22, 0x3a, 0x5b, 0x34, 0x30, 0x2c, 0x34, 0x33, 0x5d, 0x7d,
    0x7d, 0x20, 0x20, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0xbf, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,
    0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xa0, 0x40, 0x01, 0x02, 0x03,
};

/*
 *     save({"h": np.array([1, 2], np.float16),
 *           "w": np.array([1], np.float32)})
 */
static const unsigned char py_f16[] = {
    0x70, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x77, 0x22,
    0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46,
    0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a,
    0x5b, 0x31, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66,
    0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x34, 0x5d,
    0x7d, 0x2c, 0x22, 0x68, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70,
    0x65, 0x22, 0x3a, 0x22, 0x46, 0x31, 0x36, 0x22, 0x2c, 0x22, 0x73, 0x68,
    0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61,
    0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a,
    0x5b, 0x34, 0x2c, 0x38, 0x5d, 0x7d, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x00, 0x00, 0x80, 0x3f, 0x00, 0x3c, 0x00, 0x40,
};

static const float *f32_of(const struct kdcl__array *a)
{
    cr_assert_not_null(a);
    cr_assert_eq(a->dtype, KDCL_DTYPE_F32);
    return a->data;
}

Test(safetensors, reads_file_written_by_python)
{
    static const float logits[] = {1, -2.5f, 3.25f, 0, 1e-3f, -7};
    static const int32_t labels[] = {7, -1, INT32_MAX, INT32_MIN};
    static const int64_t steps[] = {1, INT64_MIN, INT64_MAX, 0};
    static const uint8_t pixels[] = {0, 128, 255};
    struct kdcl__st_file f;
    const struct kdcl__array *a;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "py.safetensors");
    write_file(path, py_all_dtypes, sizeof py_all_dtypes);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(f.n, 6);
    /* Header order, which the Python writer sorts by dtype then name. */
    cr_assert_str_eq(f.t[0].name, "steps");
    cr_assert_str_eq(f.t[1].name, "scale");
    cr_assert_str_eq(f.t[5].name, "pixels");
    cr_assert_eq(f.n_meta, 1);
    cr_assert_str_eq(f.meta_keys[0], "format");
    cr_assert_str_eq(f.meta_values[0], "np");

    a = kdcl__st_find(&f, "logits");
    cr_assert_eq(memcmp(f32_of(a), logits, sizeof logits), 0);
    cr_assert_eq(a->ndim, 2);
    cr_assert_eq(a->shape[0], 2);
    cr_assert_eq(a->shape[1], 3);
    cr_assert_eq(a->numel, 6);

    a = kdcl__st_find(&f, "scale");
    cr_assert_not_null(a);
    cr_assert_eq(a->dtype, KDCL_DTYPE_F64);
    cr_assert_eq(a->ndim, 0);
    cr_assert_eq(a->numel, 1);
    cr_assert_eq(*(const double *)a->data, 3.141592653589793);

    a = kdcl__st_find(&f, "labels");
    cr_assert_not_null(a);
    cr_assert_eq(a->dtype, KDCL_DTYPE_I32);
    cr_assert_eq(memcmp(a->data, labels, sizeof labels), 0);

    a = kdcl__st_find(&f, "steps");
    cr_assert_not_null(a);
    cr_assert_eq(a->dtype, KDCL_DTYPE_I64);
    cr_assert_eq(a->shape[1], 2);
    cr_assert_eq(memcmp(a->data, steps, sizeof steps), 0);

    a = kdcl__st_find(&f, "pixels");
    cr_assert_not_null(a);
    cr_assert_eq(a->dtype, KDCL_DTYPE_U8);
    cr_assert_eq(memcmp(a->data, pixels, sizeof pixels), 0);

    a = kdcl__st_find(&f, "empty");
    cr_assert_not_null(a);
    cr_assert_eq(a->numel, 0);
    cr_assert_eq(a->shape[0], 0);
    cr_assert_eq(a->shape[1], 3);
    cr_assert_not_null(a->data);

    cr_assert_null(kdcl__st_find(&f, "missing"));
    cr_assert_null(kdcl__st_find(&f, "logit"));
    cr_assert_null(kdcl__st_find(NULL, "logits"));
    cr_assert_null(kdcl__st_find(&f, NULL));
    kdcl__st_free(&f);
    cr_assert_null(f.t);
    cr_assert_eq(f.n, 0);
    kdcl__st_free(NULL);
}

Test(safetensors, writes_the_same_bytes_as_python)
{
    static const float w[] = {0, 1, 2, 3, 4, 5};
    static const double bias[] = {0.5, -0.5};
    static const uint8_t ids[] = {1, 2, 3};
    static const char *const meta[] = {"epoch", "3"};
    struct kdcl__st_tensor t[3];
    char path[256];
    char err[512] = "";
    unsigned char *got;
    size_t len;

    /* The Python writer's order: by dtype, then name. */
    memset(t, 0, sizeof t);
    t[0].name = "b";
    t[0].a = (struct kdcl__array){KDCL_DTYPE_F64, 1, {2}, 2, (void *)bias};
    t[1].name = "w";
    t[1].a = (struct kdcl__array){KDCL_DTYPE_F32, 2, {2, 3}, 6, (void *)w};
    t[2].name = "ids";
    t[2].a = (struct kdcl__array){KDCL_DTYPE_U8, 1, {3}, 3, (void *)ids};
    tpath(path, sizeof path, "out.safetensors");
    cr_assert_eq(kdcl__st_write(path, t, 3, meta, 1, err, sizeof err),
                 KDCL_OK, "%s", err);
    got = slurp(path, &len);
    cr_assert_eq(len, sizeof py_small);
    cr_assert_eq(memcmp(got, py_small, len), 0, "header: %.*s",
                 (int)(len - 8), (const char *)got + 8);
    free(got);
}

Test(safetensors, refuses_f16_with_a_conversion_hint)
{
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "half.safetensors");
    write_file(path, py_f16, sizeof py_f16);
    memset(&f, 0x5a, sizeof f);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EDTYPE,
                 "%s", err);
    assert_err(err, path, "tensor 'h': dtype F16 is not supported");
    assert_err(err, path, "convert it to F32");
    cr_assert_null(f.t);
    cr_assert_eq(f.n, 0);
    cr_assert_eq(f.n_meta, 0);
}

/* ---------------------------------------------------------------- */
/* safetensors: round trips                                           */
/* ---------------------------------------------------------------- */

static void assert_same_array(const struct kdcl__array *got,
                              const struct kdcl__array *want, size_t esize)
{
    cr_assert_not_null(got);
    cr_assert_eq(got->dtype, want->dtype);
    cr_assert_eq(got->ndim, want->ndim);
    cr_assert_eq(got->numel, want->numel);
    for (int i = 0; i < KDCL_MAX_DIMS; i++)
        cr_assert_eq(got->shape[i], i < (int)want->ndim ? want->shape[i] : 0);
    cr_assert_not_null(got->data);
    if (want->numel > 0)
        cr_assert_eq(memcmp(got->data, want->data,
                            (size_t)want->numel * esize), 0);
}

Test(safetensors, round_trips_every_dtype_with_metadata)
{
    static const float f32[] = {1.5f, -0.0f, INFINITY, 3e-38f, 7, 8};
    static const double f64[] = {M_PI};
    static const int32_t i32[] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    static const int64_t i64[] = {INT64_MIN, INT64_MAX, 42, -42};
    static const uint8_t u8[] = {255, 0, 1};
    static const uint8_t eight[256] = {1, 2, 3};
    static const size_t esize[] = {4, 8, 4, 8, 1, 4, 1};
    static const char *const meta[] = {
        "format", "pt", "note", "caf\xc3\xa9 \"quoted\" \\ \t\n", "", "",
    };
    struct kdcl__st_tensor t[7];
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    memset(t, 0, sizeof t);
    t[0].name = "layer.0.weight";
    t[0].a = (struct kdcl__array){KDCL_DTYPE_F32, 2, {3, 2}, 6, (void *)f32};
    t[1].name = "temperature";
    t[1].a = (struct kdcl__array){KDCL_DTYPE_F64, 0, {0}, 1, (void *)f64};
    t[2].name = "labels";
    t[2].a = (struct kdcl__array){KDCL_DTYPE_I32, 1, {5}, 5, (void *)i32};
    t[3].name = "step";
    t[3].a = (struct kdcl__array){KDCL_DTYPE_I64, 2, {2, 2}, 4, (void *)i64};
    t[4].name = "mask";
    t[4].a = (struct kdcl__array){KDCL_DTYPE_U8, 1, {3}, 3, (void *)u8};
    t[5].name = "nothing \"here\"";
    t[5].a = (struct kdcl__array){KDCL_DTYPE_F32, 3, {4, 0, 2}, 0, NULL};
    t[5].a.data = (void *)f32; /* numel 0: any non-NULL pointer */
    t[6].name = "\xe2\x88\x82/8d";
    t[6].a = (struct kdcl__array){KDCL_DTYPE_U8, 8,
                                  {2, 2, 2, 2, 2, 2, 2, 8}, 1024, NULL};
    t[6].a.numel = 1024;
    t[6].a.data = calloc(1024, 1);
    cr_assert_not_null(t[6].a.data);
    memcpy(t[6].a.data, eight, sizeof eight);

    tpath(path, sizeof path, "rt.safetensors");
    cr_assert_eq(kdcl__st_write(path, t, 7, meta, 3, err, sizeof err),
                 KDCL_OK, "%s", err);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(f.n, 7);
    for (size_t i = 0; i < 7; i++) {
        cr_assert_str_eq(f.t[i].name, t[i].name, "tensor %zu", i);
        assert_same_array(&f.t[i].a, &t[i].a, esize[i]);
        assert_same_array(kdcl__st_find(&f, t[i].name), &t[i].a, esize[i]);
    }
    cr_assert_eq(f.n_meta, 3);
    for (size_t i = 0; i < 3; i++) {
        cr_assert_str_eq(f.meta_keys[i], meta[2 * i]);
        cr_assert_str_eq(f.meta_values[i], meta[2 * i + 1]);
    }
    kdcl__st_free(&f);
    free(t[6].a.data);
}

Test(safetensors, writes_compact_padded_header_in_given_order)
{
    static const float z[] = {9, 8, 7};
    static const uint8_t a8[] = {1};
    struct kdcl__st_tensor t[2];
    char path[256];
    char err[512] = "";
    unsigned char *b;
    struct stat st;
    uint64_t n = 0;
    size_t len;

    memset(t, 0, sizeof t);
    t[0].name = "z";
    t[0].a = (struct kdcl__array){KDCL_DTYPE_F32, 1, {3}, 3, (void *)z};
    t[1].name = "a";
    t[1].a = (struct kdcl__array){KDCL_DTYPE_U8, 1, {1}, 1, (void *)a8};
    tpath(path, sizeof path, "o.safetensors");
    cr_assert_eq(kdcl__st_write(path, t, 2, NULL, 0, err, sizeof err),
                 KDCL_OK, "%s", err);
    b = slurp(path, &len);
    for (int i = 7; i >= 0; i--)
        n = n << 8 | b[i];
    cr_assert_eq(n % 8, 0);
    cr_assert_eq(len, 8 + n + 13);
    {
        static const char want[] =
            "{\"z\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
            "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[12,13]}}";
        size_t wl = sizeof want - 1;

        cr_assert_eq(n, (wl + 7) / 8 * 8);
        cr_assert_eq(memcmp(b + 8, want, wl), 0, "%.*s", (int)n, b + 8);
        for (size_t i = wl; i < n; i++)
            cr_assert_eq(b[8 + i], ' ');
    }
    cr_assert_eq(memcmp(b + 8 + n, z, 12), 0);
    cr_assert_eq(b[8 + n + 12], 1);
    free(b);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644);
}

Test(safetensors, round_trips_an_empty_file)
{
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    tpath(path, sizeof path, "empty.safetensors");
    cr_assert_eq(kdcl__st_write(path, NULL, 0, NULL, 0, err, sizeof err),
                 KDCL_OK, "%s", err);
    b = slurp(path, &len);
    cr_assert_eq(len, 16);
    cr_assert_eq(memcmp(b, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(f.n, 0);
    cr_assert_eq(f.n_meta, 0);
    kdcl__st_free(&f);
}

Test(safetensors, write_replaces_existing_file)
{
    static const int64_t v[] = {5};
    struct kdcl__st_tensor t = {"v", {KDCL_DTYPE_I64, 1, {1}, 1, (void *)v}};
    struct kdcl__st_file f;
    char path[256];
    char names[512];
    char err[512] = "";

    tpath(path, sizeof path, "w.safetensors");
    write_file(path, "old contents", 12);
    cr_assert_eq(kdcl__st_write(path, &t, 1, NULL, 0, err, sizeof err),
                 KDCL_OK, "%s", err);
    cr_assert_eq(dir_entries(names, sizeof names), 1, "left: %s", names);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(*(const int64_t *)kdcl__st_find(&f, "v")->data, 5);
    kdcl__st_free(&f);
}

/* Reads path through a FIFO fed by a child process. */
static int read_through_fifo(const void *buf, size_t len,
                             struct kdcl__st_file *f, char *fifo, char *err,
                             size_t errlen)
{
    pid_t pid;
    int status, rc;

    tpath(fifo, 256, "fifo");
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        FILE *w = fopen(fifo, "wb");

        signal(SIGPIPE, SIG_IGN);
        if (w != NULL) {
            fwrite(buf, 1, len, w);
            fclose(w);
        }
        _exit(0);
    }
    rc = kdcl__st_read(fifo, f, err, errlen);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return rc;
}

Test(safetensors, reads_from_a_pipe)
{
    struct kdcl__st_file f;
    char fifo[256];
    char err[512] = "";

    cr_assert_eq(read_through_fifo(py_small, sizeof py_small, &f, fifo, err,
                                   sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(f.n, 3);
    cr_assert_eq(f32_of(kdcl__st_find(&f, "w"))[5], 5.0f);
    kdcl__st_free(&f);
}

Test(safetensors, rejects_bytes_after_the_last_tensor_in_a_pipe)
{
    unsigned char buf[sizeof py_small + 3];
    struct kdcl__st_file f;
    char fifo[256];
    char err[512] = "";

    memcpy(buf, py_small, sizeof py_small);
    memset(buf + sizeof py_small, 0, 3);
    cr_assert_eq(read_through_fifo(buf, sizeof buf, &f, fifo, err,
                                   sizeof err), KDCL_EFORMAT, "%s", err);
    assert_err(err, fifo, "hole in the data");
    cr_assert_null(f.t);
}

Test(safetensors, rejects_truncated_data_in_a_pipe)
{
    struct kdcl__st_file f;
    char fifo[256];
    char err[512] = "";

    cr_assert_eq(read_through_fifo(py_small, sizeof py_small - 2, &f, fifo,
                                   err, sizeof err), KDCL_EFORMAT, "%s", err);
    assert_err(err, fifo, "truncated data: expected 43 bytes, found 41 (in "
                          "tensor 'ids')");
}

/* ---------------------------------------------------------------- */
/* safetensors: rejections of hand-made files                         */
/* ---------------------------------------------------------------- */

/*
 * Writes a file of the 8-byte length of header, header (unpadded) and
 * dlen bytes of data, and reads it.  The message must name the file and
 * contain want.
 */
static void st_expect(const char *header, size_t dlen, int want_rc,
                      const char *want)
{
    size_t hlen = strlen(header);
    size_t len = 8 + hlen + dlen;
    unsigned char *b = calloc(len, 1);
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    cr_assert_not_null(b);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(b + 8, header, hlen);
    tpath(path, sizeof path, "bad.safetensors");
    write_file(path, b, len);
    free(b);
    memset(&f, 0x5a, sizeof f);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), want_rc,
                 "header %s: %s", header, err);
    assert_err(err, path, want);
    cr_assert_null(f.t);
    cr_assert_null(f.meta_keys);
    cr_assert_eq(f.n, 0);
    cr_assert_eq(f.n_meta, 0);
}

#define T32(name, shape, b, e)                                               \
    "\"" name "\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[" \
    #b "," #e "]}"

Test(safetensors, accepts_hand_made_file)
{
    /* The baseline the rejections below vary: this one is fine. */
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";
    static const char h[] = "{" T32("a", "[2]", 0, 8) "," T32("b", "[1]", 8,
                                                              12) "}";
    unsigned char b[8 + sizeof h - 1 + 12];

    memset(b, 0, sizeof b);
    b[0] = sizeof h - 1;
    memcpy(b + 8, h, sizeof h - 1);
    tpath(path, sizeof path, "ok.safetensors");
    write_file(path, b, sizeof b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(f.n, 2);
    kdcl__st_free(&f);
}

Test(safetensors, reads_tensors_listed_out_of_offset_order)
{
    static const char h[] = "{" T32("b", "[1]", 8, 12) "," T32("a", "[2]", 0,
                                                              8) "}";
    static const float data[] = {1, 2, 3};
    unsigned char b[8 + sizeof h - 1 + sizeof data];
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    memset(b, 0, 8);
    b[0] = sizeof h - 1;
    memcpy(b + 8, h, sizeof h - 1);
    memcpy(b + 8 + sizeof h - 1, data, sizeof data);
    tpath(path, sizeof path, "order.safetensors");
    write_file(path, b, sizeof b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(f.n, 2);
    cr_assert_str_eq(f.t[0].name, "b");
    cr_assert_eq(f.t[0].a.numel, 1);
    cr_assert_eq(f32_of(&f.t[0].a)[0], 3.0f);
    cr_assert_str_eq(f.t[1].name, "a");
    cr_assert_eq(f32_of(&f.t[1].a)[0], 1.0f);
    cr_assert_eq(f32_of(&f.t[1].a)[1], 2.0f);
    kdcl__st_free(&f);
}

Test(safetensors, rejects_missing_file)
{
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "none.safetensors");
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EIO);
    assert_err(err, path, strerror(ENOENT));
    cr_assert_eq(kdcl__st_read(NULL, &f, err, sizeof err), KDCL_EINVAL);
    cr_assert_eq(kdcl__st_read(path, NULL, err, sizeof err), KDCL_EINVAL);
}

Test(safetensors, rejects_directory)
{
    struct kdcl__st_file f;
    char err[512] = "";

    cr_assert_eq(kdcl__st_read(g_dir, &f, err, sizeof err), KDCL_EIO, "%s",
                 err);
    assert_err(err, g_dir, strerror(EISDIR));
    cr_assert_null(f.t);
}

Test(safetensors, rejects_short_file)
{
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "short.safetensors");
    write_file(path, "\x02\0\0\0", 4);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EFORMAT);
    assert_err(err, path, "4 bytes, shorter than the 8-byte header length");
}

Test(safetensors, rejects_header_length_beyond_file_or_limit)
{
    unsigned char b[8 + 16];
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    memset(b, ' ', sizeof b);
    memset(b, 0, 8);
    b[0] = 17; /* one more than there is */
    memcpy(b + 8, "{}", 2);
    tpath(path, sizeof path, "len.safetensors");
    write_file(path, b, sizeof b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EFORMAT);
    assert_err(err, path, "header length 17 is larger than the file (24 "
                          "bytes)");

    /* 100000001 = 0x05f5e101: over the limit, checked before the size. */
    b[0] = 0x01;
    b[1] = 0xe1;
    b[2] = 0xf5;
    b[3] = 0x05;
    write_file(path, b, sizeof b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EFORMAT);
    assert_err(err, path, "header length 100000001 is larger than the "
                          "100000000-byte limit");
    b[7] = 0x80;
    write_file(path, b, sizeof b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EFORMAT);
    assert_err(err, path, "-byte limit");
}

Test(safetensors, rejects_bad_json)
{
    st_expect("{\"a\":{\"dtype\":\"F32\",", 0, KDCL_EFORMAT,
              "header is not valid JSON");
    st_expect("{} x", 0, KDCL_EFORMAT, "header is not valid JSON");
    st_expect("{\"a\" 1}", 0, KDCL_EFORMAT, "header is not valid JSON");
    st_expect("", 0, KDCL_EFORMAT, "does not start with '{'");
    st_expect("[1, 2]", 0, KDCL_EFORMAT, "does not start with '{'");
    st_expect(" {}", 0, KDCL_EFORMAT, "does not start with '{'");
    st_expect("{}\x01", 0, KDCL_EFORMAT,
              "byte 0x01 at offset 2 is not valid UTF-8 or a raw control");
    st_expect("{\"\xc3\x28\":1}", 0, KDCL_EFORMAT,
              "byte 0xc3 at offset 2 is not valid UTF-8");
}

Test(safetensors, rejects_nul_inside_header)
{
    static const char h[] = "{}\0     ";
    unsigned char b[8 + 8];
    struct kdcl__st_file f;
    char path[256];
    char err[512] = "";

    memset(b, 0, 8);
    b[0] = 8;
    memcpy(b + 8, h, 8);
    tpath(path, sizeof path, "nul.safetensors");
    write_file(path, b, sizeof b);
    cr_assert_eq(kdcl__st_read(path, &f, err, sizeof err), KDCL_EFORMAT);
    assert_err(err, path, "byte 0x00 at offset 2");
}

Test(safetensors, rejects_entries_that_are_not_objects)
{
    st_expect("{\"a\":5}", 0, KDCL_EFORMAT,
              "tensor 'a': entry is a number, expected an object");
    st_expect("{\"w\":[0,4]}", 4, KDCL_EFORMAT,
              "tensor 'w': entry is an array");
}

Test(safetensors, rejects_missing_fields)
{
    st_expect("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
              KDCL_EFORMAT, "tensor 'a': missing 'dtype'");
    st_expect("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
              KDCL_EFORMAT, "tensor 'a': missing 'shape'");
    st_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, KDCL_EFORMAT,
              "tensor 'a': missing 'data_offsets'");
    /* Keys are case-sensitive. */
    st_expect("{\"a\":{\"DTYPE\":\"F32\",\"shape\":[1],\"data_offsets\":"
              "[0,4]}}", 4, KDCL_EFORMAT, "tensor 'a': missing 'dtype'");
    st_expect("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
              "\"data_offsets\":[0,4]}}", 4, KDCL_EFORMAT,
              "tensor 'a': duplicate key 'dtype'");
}

Test(safetensors, rejects_mistyped_fields)
{
    st_expect("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}",
              4, KDCL_EFORMAT, "tensor 'a': dtype is a number");
    st_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}",
              4, KDCL_EFORMAT, "tensor 'a': shape is a number");
    st_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}}",
              4, KDCL_EFORMAT, "tensor 'a': data_offsets is a number");
    st_expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}",
              4, KDCL_EFORMAT, "data_offsets is an array of the wrong length");
    st_expect("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":"
              "[0,4]}}", 4, KDCL_EFORMAT, "tensor 'a': unknown dtype 'f32'");
}

Test(safetensors, rejects_bad_dimensions)
{
    st_expect("{" T32("a", "[-1]", 0, 4) "}", 4, KDCL_EFORMAT,
              "tensor 'a': shape entry 0 is not an integer in [0, 2^53)");
    st_expect("{" T32("a", "[1, 1.5]", 0, 4) "}", 4, KDCL_EFORMAT,
              "tensor 'a': shape entry 1 is not an integer");
    st_expect("{" T32("a", "[\"1\"]", 0, 4) "}", 4, KDCL_EFORMAT,
              "shape entry 0 is not an integer");
    st_expect("{" T32("a", "[1e300]", 0, 4) "}", 4, KDCL_EFORMAT,
              "shape entry 0 is not an integer");
    st_expect("{" T32("a", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, KDCL_EFORMAT,
              "tensor 'a': 9 dimensions, at most 8 are supported");
    st_expect("{" T32("a", "[4294967296,4294967296,4294967296]", 0, 4) "}",
              4, KDCL_EFORMAT, "tensor 'a': shape [4294967296, 4294967296, "
                               "4294967296] is too large");
}

Test(safetensors, rejects_offsets_out_of_range)
{
    st_expect("{" T32("a", "[1]", -4, 0) "}", 4, KDCL_EFORMAT,
              "tensor 'a': data_offsets out of range");
    st_expect("{" T32("a", "[1]", 0, 4.5) "}", 4, KDCL_EFORMAT,
              "tensor 'a': data_offsets out of range");
    st_expect("{" T32("a", "[1]", 0, 18446744073709551616) "}", 4,
              KDCL_EFORMAT, "tensor 'a': data_offsets out of range");
    st_expect("{" T32("a", "[0]", 8, 4) "}", 8, KDCL_EFORMAT,
              "tensor 'a': data_offsets [8, 4] out of range: begin is past "
              "end");
}

Test(safetensors, rejects_shape_offset_size_mismatch)
{
    st_expect("{" T32("a", "[2]", 0, 4) "}", 4, KDCL_EFORMAT,
              "tensor 'a': shape [2] of F32 needs 8 bytes, data_offsets "
              "[0, 4] hold 4");
    st_expect("{" T32("s", "[]", 0, 0) "}", 0, KDCL_EFORMAT,
              "tensor 's': shape [] of F32 needs 4 bytes");
    st_expect("{\"q\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":"
              "[0,1]}}", 1, KDCL_EFORMAT,
              "needs 1 and a fraction of bytes");
}

Test(safetensors, rejects_overlapping_tensors)
{
    st_expect("{" T32("a", "[2]", 0, 8) "," T32("b", "[2]", 4, 12) "}", 12,
              KDCL_EFORMAT, "tensor 'b': data_offsets [4, 12] overlap "
                            "tensor 'a' [0, 8]");
    /* Identical ranges, and an empty tensor inside another. */
    st_expect("{" T32("a", "[1]", 0, 4) "," T32("b", "[1]", 0, 4) "}", 4,
              KDCL_EFORMAT, "overlap tensor 'a' [0, 4]");
    st_expect("{" T32("a", "[2]", 0, 8) "," T32("e", "[0]", 4, 4) "}", 8,
              KDCL_EFORMAT, "tensor 'e': data_offsets [4, 4] overlap "
                            "tensor 'a' [0, 8]");
}

Test(safetensors, rejects_holes)
{
    st_expect("{" T32("a", "[2]", 0, 8) "," T32("b", "[2]", 12, 20) "}",
              20, KDCL_EFORMAT, "hole in the data: bytes [8, 12) before "
                                "tensor 'b' belong to no tensor");
    st_expect("{" T32("a", "[1]", 4, 8) "}", 8, KDCL_EFORMAT,
              "hole in the data: bytes [0, 4) before tensor 'a'");
    st_expect("{" T32("a", "[2]", 0, 8) "}", 12, KDCL_EFORMAT,
              "hole in the data: bytes [8, 12) after the last tensor");
    st_expect("{}", 1, KDCL_EFORMAT, "bytes [0, 1) after the last tensor");
}

Test(safetensors, rejects_truncated_data)
{
    st_expect("{" T32("a", "[2]", 0, 8) "," T32("b", "[3]", 8, 20) "}", 17,
              KDCL_EFORMAT, "truncated data: tensor 'b' ends at offset 20, "
                            "the data holds 17 bytes");
}

Test(safetensors, rejects_duplicate_names)
{
    st_expect("{" T32("a", "[1]", 0, 4) "," T32("b", "[1]", 4, 8) ","
              T32("a", "[1]", 8, 12) "}", 12, KDCL_EFORMAT,
              "duplicate tensor name 'a'");
}

Test(safetensors, rejects_bad_metadata)
{
    st_expect("{\"__metadata__\":[],\"a\":{}}", 0, KDCL_EFORMAT,
              "__metadata__ is an array, expected an object of strings");
    st_expect("{\"__metadata__\":{\"epoch\":3}}", 0, KDCL_EFORMAT,
              "__metadata__ entry 'epoch' is a number, expected a string");
    st_expect("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0,
              KDCL_EFORMAT, "duplicate __metadata__ key 'k'");
    st_expect("{\"__metadata__\":{},\"__metadata__\":{}}", 0, KDCL_EFORMAT,
              "duplicate __metadata__");
}

Test(safetensors, rejects_unsupported_dtypes_naming_them)
{
    static const char *const types[] = {"BF16", "F16", "I8", "BOOL", "U16",
                                        "F8_E4M3", "U64"};
    static const unsigned sizes[] = {2, 2, 1, 1, 2, 1, 8};
    char h[256], want[128];

    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        snprintf(h, sizeof h, "{" T32("a", "[1]", 0, 4) ",\"w\":{\"dtype\":"
                 "\"%s\",\"shape\":[2],\"data_offsets\":[4,%u]}}", types[i],
                 4 + 2 * sizes[i]);
        snprintf(want, sizeof want, "tensor 'w': dtype %s is not supported",
                 types[i]);
        st_expect(h, 4 + 2 * sizes[i], KDCL_EDTYPE, want);
        st_expect(h, 4 + 2 * sizes[i], KDCL_EDTYPE, "; convert it to ");
    }
    st_expect("{\"m\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":"
              "[0,2]}}", 2, KDCL_EDTYPE, "tensor 'm': dtype BOOL is not "
              "supported (kdcl reads F32, F64, I32, I64 and U8); convert it "
              "to U8 first");
    /* A malformed file is a format error even with such a dtype. */
    st_expect("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":"
              "[0,4]}}", 8, KDCL_EFORMAT, "hole in the data");
}

/* ---------------------------------------------------------------- */
/* safetensors: writer rejections                                     */
/* ---------------------------------------------------------------- */

/* Expects kdcl__st_write to fail with want_rc, leaving no file behind. */
static void write_expect(const struct kdcl__st_tensor *t, size_t n,
                         const char *const *meta, size_t n_meta,
                         int want_rc, const char *want)
{
    char path[256];
    char names[512];
    char err[512] = "";

    tpath(path, sizeof path, "w.safetensors");
    cr_assert_eq(kdcl__st_write(path, t, n, meta, n_meta, err, sizeof err),
                 want_rc, "%s", err);
    assert_err(err, path, want);
    cr_assert_eq(dir_entries(names, sizeof names), 0, "left: %s", names);
}

Test(safetensors, write_rejects_bad_names_and_metadata)
{
    static const float v[] = {1, 2};
    struct kdcl__st_tensor t[2] = {
        {"x", {KDCL_DTYPE_F32, 1, {2}, 2, (void *)v}},
        {"x", {KDCL_DTYPE_F32, 1, {1}, 1, (void *)v}},
    };
    static const char *const dup_meta[] = {"k", "1", "k", "2"};
    static const char *const null_meta[] = {"k", NULL};
    static const char *const bad_meta[] = {"k", "\xff"};

    write_expect(t, 2, NULL, 0, KDCL_EINVAL, "duplicate tensor name 'x'");
    t[1].name = "__metadata__";
    write_expect(t, 2, NULL, 0, KDCL_EINVAL,
                 "tensor 1: the name '__metadata__' is reserved");
    t[1].name = NULL;
    write_expect(t, 2, NULL, 0, KDCL_EINVAL, "tensor name 1 is NULL");
    t[1].name = "caf\xe9";
    write_expect(t, 2, NULL, 0, KDCL_EINVAL,
                 "tensor name 1 is not valid UTF-8");
    write_expect(t, 1, dup_meta, 2, KDCL_EINVAL,
                 "duplicate metadata key 'k'");
    write_expect(t, 1, null_meta, 1, KDCL_EINVAL, "metadata value 0 is NULL");
    write_expect(t, 1, bad_meta, 1, KDCL_EINVAL,
                 "metadata value 0 is not valid UTF-8");
    write_expect(t, 1, NULL, 1, KDCL_EINVAL, "invalid argument");
    write_expect(NULL, 1, NULL, 0, KDCL_EINVAL, "invalid argument");
}

Test(safetensors, write_rejects_inconsistent_arrays)
{
    static const float v[] = {1, 2};
    struct kdcl__st_tensor t = {"a", {KDCL_DTYPE_F32, 1, {2}, 2,
                                      (void *)v}};
    struct kdcl__st_tensor bad;

    bad = t;
    bad.a.dtype = 99;
    write_expect(&bad, 1, NULL, 0, KDCL_EINVAL, "tensor 'a': invalid dtype "
                                                "99");
    bad = t;
    bad.a.numel = 3;
    write_expect(&bad, 1, NULL, 0, KDCL_EINVAL,
                 "tensor 'a': numel 3 does not match shape [2] (2 elements)");
    bad = t;
    bad.a.shape[0] = -2;
    write_expect(&bad, 1, NULL, 0, KDCL_EINVAL, "negative dimension -2");
    bad = t;
    bad.a.ndim = 9;
    write_expect(&bad, 1, NULL, 0, KDCL_EINVAL, "9 dimensions");
    bad = t;
    bad.a.data = NULL;
    write_expect(&bad, 1, NULL, 0, KDCL_EINVAL, "tensor 'a': data is NULL");
    bad = t;
    bad.a.ndim = 3;
    bad.a.shape[1] = INT64_MAX / 2;
    bad.a.shape[2] = 4;
    write_expect(&bad, 1, NULL, 0, KDCL_EINVAL, "is too large");
}

Test(safetensors, failed_write_keeps_old_file_and_no_temp_file)
{
    static const float v[] = {1, 2};
    struct kdcl__st_tensor t = {"a", {KDCL_DTYPE_F32, 1, {2}, 2,
                                      (void *)v}};
    char path[256];
    char names[512];
    char err[512] = "";
    struct stat st;

    /* A directory in the way makes the final rename() fail. */
    tpath(path, sizeof path, "out.safetensors");
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_assert_eq(kdcl__st_write(path, &t, 1, NULL, 0, err, sizeof err),
                 KDCL_EIO);
    assert_err(err, path, "cannot replace the file");
    cr_assert_eq(dir_entries(names, sizeof names), 1, "left: %s", names);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));

    tpath(path, sizeof path, "no/such/dir/out.safetensors");
    cr_assert_eq(kdcl__st_write(path, &t, 1, NULL, 0, err, sizeof err),
                 KDCL_EIO);
    assert_err(err, path, "cannot create temporary file");
    cr_assert_eq(dir_entries(names, sizeof names), 1, "left: %s", names);
}
