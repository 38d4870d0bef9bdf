/*
 * core/idx.c - reading IDX (MNIST, Fashion-MNIST) files (see idx.h).
 *
 * The format (Y. LeCun, "THE MNIST DATABASE of handwritten digits"): bytes
 * 0 and 1 are zero, byte 2 is the element type (0x08 u8, 0x09 i8, 0x0B
 * i16, 0x0C i32, 0x0D f32, 0x0E f64), byte 3 the number of dimensions;
 * then one big-endian u32 per dimension and the elements, big-endian, in C
 * order.  Nothing may follow the elements (torchvision's reader refuses
 * that too), though zlib skips anything after the end of a gzip stream,
 * as gzip -d does.
 *
 * All reads go through zlib's gzread, which inflates a gzip file and
 * passes any other file through unchanged, so "x-idx3-ubyte" and
 * "x-idx3-ubyte.gz" need no separate paths.  A gzip file's size says
 * nothing about its contents, so the data buffer grows as bytes arrive
 * instead of trusting the header: a corrupt header announcing terabytes
 * ends as "truncated data", not as an allocation failure.
 */
#include "idx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#define IDX_CHUNK ((size_t)1 << 30)     /* largest single gzread() */
#define IDX_FIRST_ALLOC ((size_t)1 << 20) /* data buffer to start with */
#define IDX_GZ_BUFFER (128u * 1024u)    /* zlib's input buffer */

#if defined(__GNUC__)
#define IDX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define IDX_PRINTF(f, a)
#endif

static void idx_err(char *err, size_t errlen, const char *name,
                    const char *fmt, ...) IDX_PRINTF(4, 5);

/* Formats "name: message" into err, on one line. */
static void idx_err(char *err, size_t errlen, const char *name,
                    const char *fmt, ...)
{
    va_list ap;
    int n;

    if (err == NULL || errlen == 0)
        return;
    n = snprintf(err, errlen, "%s: ", name);
    if (n < 0) {
        err[0] = '\0';
        return;
    }
    if ((size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    /* A path may hold control characters; keep the message one line. */
    for (char *c = err; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    }
}

/* ---------------------------------------------------------------- */
/* Reading through zlib                                               */
/* ---------------------------------------------------------------- */

/*
 * Turns zlib's error state after a failed or short gzread into a status
 * and message.  Returns KDCL_OK when zlib saw nothing wrong (a plain end
 * of file).  zlib inflates ahead of what is asked for, so where in the
 * file a corrupt stream was met says little; the messages do not guess.
 */
static int idx_gz_status(gzFile f, int saved_errno, const char *name,
                         char *err, size_t errlen)
{
    int zerr = Z_OK;
    const char *msg = gzerror(f, &zerr);
    size_t nlen = strlen(name);

    /* zlib's message is "<path>: <what>"; ours names the path already. */
    if (msg != NULL && strncmp(msg, name, nlen) == 0 && msg[nlen] == ':'
        && msg[nlen + 1] == ' ')
        msg += nlen + 2;
    switch (zerr) {
    case Z_OK:
    case Z_STREAM_END:
        return KDCL_OK;
    case Z_ERRNO:
        idx_err(err, errlen, name, "read error: %s", strerror(saved_errno));
        return KDCL_EIO;
    case Z_MEM_ERROR:
        idx_err(err, errlen, name, "out of memory decompressing");
        return KDCL_ENOMEM;
    case Z_BUF_ERROR:
        /* zlib's word for a gzip stream cut short. */
        idx_err(err, errlen, name,
                "corrupt gzip stream: %s (the file is truncated)",
                msg != NULL ? msg : "unexpected end of file");
        return KDCL_EFORMAT;
    default:
        idx_err(err, errlen, name, "corrupt gzip stream: %s",
                msg != NULL ? msg : "data error");
        return KDCL_EFORMAT;
    }
}

/*
 * Reads up to n bytes into buf; *got says how many came (fewer only at
 * the end of the data).  A read error or corrupt stream is an error; an
 * early end is not, the caller reports it with the counts.
 */
static int idx_take(gzFile f, void *buf, size_t n, size_t *got,
                    const char *name, char *err, size_t errlen)
{
    unsigned char *p = buf;
    size_t want;
    int r;

    *got = 0;
    while (*got < n) {
        want = n - *got < IDX_CHUNK ? n - *got : IDX_CHUNK;
        errno = 0;
        r = gzread(f, p + *got, (unsigned)want);
        if (r < 0)
            return idx_gz_status(f, errno, name, err, errlen);
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return KDCL_OK;
}

/*
 * After the data: the stream must end here.  Reading on also makes zlib
 * check the gzip trailer (CRC-32 and length), which it only does on
 * reaching it.
 */
static int idx_expect_end(gzFile f, const char *name, char *err,
                          size_t errlen)
{
    unsigned char buf[4096];
    uintmax_t extra = 0;
    int r;
    int rc;

    for (;;) {
        errno = 0;
        r = gzread(f, buf, sizeof buf);
        if (r <= 0)
            break;
        extra += (uintmax_t)r;
    }
    rc = idx_gz_status(f, errno, name, err, errlen);
    if (rc != KDCL_OK)
        return rc;
    if (extra > 0) {
        idx_err(err, errlen, name,
                "%ju unexpected bytes after the data (not an IDX file, or "
                "a wrong shape in its header)", extra);
        return KDCL_EFORMAT;
    }
    return KDCL_OK;
}

/* ---------------------------------------------------------------- */
/* The header                                                         */
/* ---------------------------------------------------------------- */

struct idx_type {
    unsigned code;   /* the type byte */
    int dtype;       /* enum kdcl_dtype, or -1: known but not supported */
    size_t size;     /* bytes per element */
    const char *name;
};

static const struct idx_type idx_types[] = {
    {0x08, KDCL_DTYPE_U8, 1, "unsigned 8-bit"},
    {0x09, -1, 1, "signed 8-bit"},
    {0x0B, -1, 2, "signed 16-bit"},
    {0x0C, KDCL_DTYPE_I32, 4, "signed 32-bit"},
    {0x0D, KDCL_DTYPE_F32, 4, "32-bit float"},
    {0x0E, KDCL_DTYPE_F64, 8, "64-bit float"},
};

static const struct idx_type *idx_type_find(unsigned code)
{
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++) {
        if (idx_types[i].code == code)
            return &idx_types[i];
    }
    return NULL;
}

/* Formats a shape as "60000x28x28" for messages. */
static void idx_shape_str(char *buf, size_t n, const int64_t *shape,
                          uint32_t ndim)
{
    size_t pos = 0;
    int w;

    buf[0] = '\0';
    for (uint32_t i = 0; i < ndim && pos < n; i++) {
        w = snprintf(buf + pos, n - pos, "%s%lld", i > 0 ? "x" : "",
                     (long long)shape[i]);
        if (w < 0)
            break;
        pos += (size_t)w;
    }
}

/*
 * Reads the magic and dimensions into *a (dtype, ndim, shape, numel) and
 * the data's byte count into *bytes.
 */
static int idx_read_header(gzFile f, const char *name, struct kdcl__array *a,
                           size_t *esize, size_t *bytes, char *err,
                           size_t errlen)
{
    unsigned char magic[4];
    unsigned char dims[4 * KDCL_MAX_DIMS];
    const struct idx_type *t;
    char sh[256];
    uint64_t numel = 1;
    uint32_t ndim;
    size_t got;
    int rc;

    rc = idx_take(f, magic, sizeof magic, &got, name, err, errlen);
    if (rc != KDCL_OK)
        return rc;
    if (got < sizeof magic) {
        idx_err(err, errlen, name,
                "not an IDX file: truncated header: expected 4 bytes, "
                "found %zu", got);
        return KDCL_EFORMAT;
    }
    if (magic[0] != 0 || magic[1] != 0) {
        idx_err(err, errlen, name,
                "not an IDX file: bad magic 0x%02x 0x%02x 0x%02x 0x%02x "
                "(expected 0x00 0x00, a type and a dimension count)",
                magic[0], magic[1], magic[2], magic[3]);
        return KDCL_EFORMAT;
    }
    t = idx_type_find(magic[2]);
    if (t == NULL) {
        idx_err(err, errlen, name,
                "unknown IDX element type 0x%02x (expected 0x08, 0x09, "
                "0x0B, 0x0C, 0x0D or 0x0E)", magic[2]);
        return KDCL_EFORMAT;
    }
    if (t->dtype < 0) {
        idx_err(err, errlen, name,
                "IDX element type 0x%02x (%s) is not supported; kdcl reads "
                "unsigned 8-bit, signed 32-bit, 32-bit and 64-bit float",
                t->code, t->name);
        return KDCL_EDTYPE;
    }
    ndim = magic[3];
    if (ndim == 0 || ndim > KDCL_MAX_DIMS) {
        idx_err(err, errlen, name,
                "%u dimensions in the header (1 to %d are supported)",
                (unsigned)ndim, KDCL_MAX_DIMS);
        return KDCL_EFORMAT;
    }
    rc = idx_take(f, dims, 4 * (size_t)ndim, &got, name, err, errlen);
    if (rc != KDCL_OK)
        return rc;
    if (got < 4 * (size_t)ndim) {
        idx_err(err, errlen, name,
                "truncated header: expected %zu bytes, found %zu",
                4 + 4 * (size_t)ndim, 4 + got);
        return KDCL_EFORMAT;
    }

    a->dtype = t->dtype;
    a->ndim = ndim;
    for (uint32_t i = 0; i < ndim; i++) {
        const unsigned char *d = dims + 4 * i;

        a->shape[i] = (int64_t)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16
                                | (uint32_t)d[2] << 8 | (uint32_t)d[3]);
    }
    /*
     * Each dimension is below 2^32; a zero anywhere makes the array empty
     * however large the others are.
     */
    for (uint32_t i = 0; i < ndim; i++) {
        if (a->shape[i] == 0)
            numel = 0;
    }
    for (uint32_t i = 0; i < ndim && numel != 0; i++) {
        if (numel > (uint64_t)INT64_MAX / (uint64_t)a->shape[i]) {
            numel = UINT64_MAX;
            break;
        }
        numel *= (uint64_t)a->shape[i];
    }
    if (numel == UINT64_MAX || numel > (uint64_t)INT64_MAX / t->size
        || numel > (uint64_t)SIZE_MAX / t->size) {
        idx_shape_str(sh, sizeof sh, a->shape, ndim);
        idx_err(err, errlen, name,
                "shape %s is too large: its byte count overflows", sh);
        return KDCL_EFORMAT;
    }
    a->numel = (int64_t)numel;
    *esize = t->size;
    *bytes = (size_t)numel * t->size;
    return KDCL_OK;
}

/* ---------------------------------------------------------------- */
/* Reading                                                            */
/* ---------------------------------------------------------------- */

/* Converts n big-endian elements of esize bytes to host order, in place. */
static void idx_to_host(unsigned char *p, size_t n, size_t esize)
{
    if (esize == 4) {
        for (size_t i = 0; i < n; i++, p += 4) {
            uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16
                         | (uint32_t)p[2] << 8 | (uint32_t)p[3];

            memcpy(p, &v, 4);
        }
    } else if (esize == 8) {
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t v = 0;

            for (int b = 0; b < 8; b++)
                v = v << 8 | p[b];
            memcpy(p, &v, 8);
        }
    }
}

int kdcl__idx_read(const char *path, struct kdcl__array *out, char *err,
                   size_t errlen)
{
    struct kdcl__array a;
    gzFile f = NULL;
    unsigned char *buf = NULL;
    unsigned char *nbuf;
    size_t esize = 0, bytes = 0, cap, have = 0, got;
    int rc;

    memset(&a, 0, sizeof a);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (path == NULL || out == NULL) {
        idx_err(err, errlen, path != NULL ? path : "(null)",
                "invalid argument to kdcl__idx_read");
        return KDCL_EINVAL;
    }
    errno = 0;
    f = gzopen(path, "rb");
    if (f == NULL) {
        if (errno == 0) {
            idx_err(err, errlen, path, "cannot open: out of memory");
            return KDCL_ENOMEM;
        }
        idx_err(err, errlen, path, "cannot open: %s", strerror(errno));
        return KDCL_EIO;
    }
    gzbuffer(f, IDX_GZ_BUFFER);

    rc = idx_read_header(f, path, &a, &esize, &bytes, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;

    cap = bytes < IDX_FIRST_ALLOC ? bytes : IDX_FIRST_ALLOC;
    buf = malloc(cap > 0 ? cap : 1);
    if (buf == NULL) {
        idx_err(err, errlen, path, "out of memory allocating %zu bytes",
                cap);
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    for (;;) {
        rc = idx_take(f, buf + have, cap - have, &got, path, err, errlen);
        if (rc != KDCL_OK)
            goto cleanup;
        have += got;
        if (have < cap || have == bytes)
            break;
        cap = bytes - cap < cap ? bytes : 2 * cap;
        nbuf = realloc(buf, cap);
        if (nbuf == NULL) {
            idx_err(err, errlen, path, "out of memory allocating %zu bytes",
                    cap);
            rc = KDCL_ENOMEM;
            goto cleanup;
        }
        buf = nbuf;
    }
    if (have < bytes) {
        /* A gzip stream cut short is the likelier story; say so. */
        int zerr = Z_OK;

        gzerror(f, &zerr);
        idx_err(err, errlen, path,
                "truncated data: expected %zu bytes, found %zu%s", bytes,
                have, zerr == Z_BUF_ERROR ? " (the gzip stream ends early)"
                                          : "");
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    rc = idx_expect_end(f, path, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;

    idx_to_host(buf, (size_t)a.numel, esize);
    a.data = buf;
    buf = NULL;
    *out = a;
    rc = KDCL_OK;

cleanup:
    free(buf);
    if (f != NULL)
        gzclose(f);
    return rc;
}

/* ---------------------------------------------------------------- */
/* Finding (Fashion-)MNIST                                            */
/* ---------------------------------------------------------------- */

static const char *const mnist_names[4] = {
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
};

static int idx_is_file(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int kdcl__fashion_mnist_find(const char *dir,
                             char paths[4][KDCL__IDX_PATH_MAX], char *err,
                             size_t errlen)
{
    char missing[512];
    size_t dlen, mpos = 0;
    const char *sep;
    struct stat st;
    int n_missing = 0;
    int w;

    if (paths != NULL) {
        for (int i = 0; i < 4; i++)
            paths[i][0] = '\0';
    }
    if (dir == NULL || paths == NULL) {
        idx_err(err, errlen, dir != NULL ? dir : "(null)",
                "invalid argument to kdcl__fashion_mnist_find");
        return KDCL_EINVAL;
    }
    if (stat(dir, &st) != 0) {
        idx_err(err, errlen, dir, "cannot open the data set directory: %s",
                strerror(errno));
        return KDCL_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        idx_err(err, errlen, dir, "not a directory");
        return KDCL_EIO;
    }
    if (access(dir, X_OK) != 0) {
        idx_err(err, errlen, dir, "cannot search the directory: %s",
                strerror(errno));
        return KDCL_EIO;
    }
    dlen = strlen(dir);
    sep = dlen > 0 && dir[dlen - 1] == '/' ? "" : "/";

    missing[0] = '\0';
    for (int i = 0; i < 4; i++) {
        int found = 0;

        for (int gz = 0; gz < 2 && !found; gz++) {
            w = snprintf(paths[i], KDCL__IDX_PATH_MAX, "%s%s%s%s", dir, sep,
                         mnist_names[i], gz ? ".gz" : "");
            if (w < 0 || (size_t)w >= KDCL__IDX_PATH_MAX) {
                idx_err(err, errlen, dir,
                        "path too long (at most %d bytes)",
                        KDCL__IDX_PATH_MAX - 1);
                for (int j = 0; j < 4; j++)
                    paths[j][0] = '\0';
                return KDCL_EINVAL;
            }
            found = idx_is_file(paths[i]);
        }
        if (!found) {
            paths[i][0] = '\0';
            w = snprintf(missing + mpos, sizeof missing - mpos, "%s%s(.gz)",
                         n_missing > 0 ? ", " : "", mnist_names[i]);
            if (w > 0 && (size_t)w < sizeof missing - mpos)
                mpos += (size_t)w;
            n_missing++;
        }
    }
    if (n_missing > 0) {
        for (int i = 0; i < 4; i++)
            paths[i][0] = '\0';
        idx_err(err, errlen, dir,
                "not a (Fashion-)MNIST directory: missing %s", missing);
        return KDCL_ENOTFOUND;
    }
    return KDCL_OK;
}
