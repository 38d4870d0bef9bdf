/*
 * core/npy.c - reading and writing NumPy .npy files (see npy.h).
 *
 * The format (numpy/lib/format.py): the magic "\x93NUMPY", a major and a
 * minor version byte, the header length as a little-endian u16 (1.0) or u32
 * (2.0, 3.0), then the header: a Python dict literal such as
 *
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 *
 * padded with spaces and ended by '\n', then the raw C-order data.  The
 * dict is read by a small strict recursive-descent parser that accepts
 * exactly the Python literals such a dict may hold: the three keys in any
 * order, single or double quoted strings without escapes, True/False, and
 * tuples of non-negative integers (an old Python 2 'L' suffix is allowed).
 *
 * Files and memory go through one reader (struct npy_src), so both paths
 * make the same checks and give the same messages.  Writes go to a
 * temporary file that is renamed over the target, so a reader never sees
 * a partial file.
 */
#include "npy.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(sizeof(float) == 4 && FLT_MANT_DIG == 24,
               "kdcl needs IEEE 754 binary32 floats");
_Static_assert(sizeof(double) == 8 && DBL_MANT_DIG == 53,
               "kdcl needs IEEE 754 binary64 doubles");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_MAX_HEADER ((size_t)1 << 20) /* longest header we accept */
#define NPY_ALIGN 64                     /* header alignment of writes */
#define NPY_MAX_STR 64                   /* longest key or descr string */
#define NPY_IO_CHUNK ((size_t)1 << 30)   /* largest single write() */
#define NPY_MEM_NAME "<memory>"

#if defined(__GNUC__)
#define NPY_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define NPY_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- */
/* Helpers                                                            */
/* ---------------------------------------------------------------- */

static void npy_err(char *err, size_t errlen, const char *name,
                    const char *fmt, ...) NPY_PRINTF(4, 5);

/* Formats "name: message" into err, on one line. */
static void npy_err(char *err, size_t errlen, const char *name,
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

static int npy_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;

    memcpy(&first, &one, 1);
    return first == 1;
}

static size_t npy_dtype_size(int dtype)
{
    switch (dtype) {
    case KDCL_DTYPE_F32: return 4;
    case KDCL_DTYPE_F64: return 8;
    case KDCL_DTYPE_I32: return 4;
    case KDCL_DTYPE_I64: return 8;
    case KDCL_DTYPE_U8: return 1;
    default: return 0;
    }
}

/* The numpy name of a dtype, for messages. */
static const char *npy_dtype_numpy_name(int dtype)
{
    switch (dtype) {
    case KDCL_DTYPE_F32: return "float32";
    case KDCL_DTYPE_F64: return "float64";
    case KDCL_DTYPE_I32: return "int32";
    case KDCL_DTYPE_I64: return "int64";
    case KDCL_DTYPE_U8: return "uint8";
    default: return "?";
    }
}

/* The descr a write stores. */
static const char *npy_dtype_descr(int dtype)
{
    switch (dtype) {
    case KDCL_DTYPE_F32: return "<f4";
    case KDCL_DTYPE_F64: return "<f8";
    case KDCL_DTYPE_I32: return "<i4";
    case KDCL_DTYPE_I64: return "<i8";
    case KDCL_DTYPE_U8: return "|u1";
    default: return NULL;
    }
}

static int npy_dtype_is_float(int dtype)
{
    return dtype == KDCL_DTYPE_F32 || dtype == KDCL_DTYPE_F64;
}

/*
 * Writes a shape as Python's repr of a tuple: "()", "(5,)", "(3, 4)".
 * 256 bytes always suffice (8 dims of at most 19 digits).
 */
static void npy_shape_str(char *buf, size_t n, const int64_t *shape,
                          uint32_t ndim)
{
    size_t pos = 0;
    int w;

    w = snprintf(buf, n, "(");
    for (uint32_t i = 0; i < ndim && w >= 0 && pos + (size_t)w < n; i++) {
        pos += (size_t)w;
        w = snprintf(buf + pos, n - pos, "%s%lld", i > 0 ? ", " : "",
                     (long long)shape[i]);
    }
    if (w >= 0 && pos + (size_t)w < n) {
        pos += (size_t)w;
        snprintf(buf + pos, n - pos, "%s", ndim == 1 ? ",)" : ")");
    }
}

/*
 * Counts the elements and bytes of a shape.  Returns -1 when either does
 * not fit in int64_t or size_t.
 */
static int npy_count(const int64_t *shape, uint32_t ndim, size_t esize,
                     int64_t *numel, size_t *bytes)
{
    int64_t n = 1;
    int zero = 0;

    for (uint32_t i = 0; i < ndim; i++) {
        if (shape[i] == 0)
            zero = 1;
    }
    for (uint32_t i = 0; i < ndim && !zero; i++) {
        if (n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    if (zero)
        n = 0;
    if ((uint64_t)n > (uint64_t)INT64_MAX / esize
        || (uint64_t)n > (uint64_t)SIZE_MAX / esize)
        return -1;
    *numel = n;
    *bytes = (size_t)n * esize;
    return 0;
}

/* Checks that an array handed to us is consistent; finds its byte size. */
static int npy_check_array(const struct kdcl__array *a, const char *name,
                           size_t *bytes, char *err, size_t errlen)
{
    char sh[256];
    size_t esize = npy_dtype_size(a->dtype);
    int64_t numel;

    if (esize == 0) {
        npy_err(err, errlen, name, "invalid dtype %d", a->dtype);
        return KDCL_EINVAL;
    }
    if (a->ndim > KDCL_MAX_DIMS) {
        npy_err(err, errlen, name, "%u dimensions, at most %d are supported",
                (unsigned)a->ndim, KDCL_MAX_DIMS);
        return KDCL_EINVAL;
    }
    for (uint32_t i = 0; i < a->ndim; i++) {
        if (a->shape[i] < 0) {
            npy_err(err, errlen, name, "negative dimension %lld in shape",
                    (long long)a->shape[i]);
            return KDCL_EINVAL;
        }
    }
    npy_shape_str(sh, sizeof sh, a->shape, a->ndim);
    if (npy_count(a->shape, a->ndim, esize, &numel, bytes) != 0) {
        npy_err(err, errlen, name, "shape %s has too many elements", sh);
        return KDCL_EINVAL;
    }
    if (numel != a->numel) {
        npy_err(err, errlen, name,
                "numel %lld does not match shape %s (%lld elements)",
                (long long)a->numel, sh, (long long)numel);
        return KDCL_EINVAL;
    }
    if (*bytes > 0 && a->data == NULL) {
        npy_err(err, errlen, name, "data is NULL");
        return KDCL_EINVAL;
    }
    return KDCL_OK;
}

/* ---------------------------------------------------------------- */
/* Header dict parser                                                 */
/* ---------------------------------------------------------------- */

struct npy_parser {
    const char *s;    /* header text, not NUL-terminated */
    size_t len;
    size_t pos;
    const char *name; /* file name for messages */
    char *err;
    size_t errlen;
};

/* The next character, or -1 at the end of the header. */
static int p_peek(const struct npy_parser *p)
{
    if (p->pos >= p->len)
        return -1;
    return (unsigned char)p->s[p->pos];
}

static void p_skip_ws(struct npy_parser *p)
{
    int c = p_peek(p);

    while (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
        p->pos++;
        c = p_peek(p);
    }
}

/* Reports that `expected` was wanted at the current position. */
static int p_fail(struct npy_parser *p, const char *expected)
{
    char found[32];
    int c = p_peek(p);

    if (c < 0)
        snprintf(found, sizeof found, "end of header");
    else if (c > 0x20 && c < 0x7f)
        snprintf(found, sizeof found, "'%c'", c);
    else
        snprintf(found, sizeof found, "byte 0x%02x", (unsigned)c);
    npy_err(p->err, p->errlen, p->name,
            "malformed header: expected %s at offset %zu, found %s",
            expected, p->pos, found);
    return KDCL_EFORMAT;
}

static int p_expect(struct npy_parser *p, int ch, const char *expected)
{
    if (p_peek(p) != ch)
        return p_fail(p, expected);
    p->pos++;
    return KDCL_OK;
}

/* A quoted string without escapes, of printable ASCII, into out. */
static int p_string(struct npy_parser *p, char *out, size_t outlen,
                    const char *expected)
{
    size_t start = p->pos;
    size_t n = 0;
    int quote = p_peek(p);
    int c;

    if (quote != '\'' && quote != '"')
        return p_fail(p, expected);
    p->pos++;
    for (;;) {
        c = p_peek(p);
        if (c == quote)
            break;
        if (c < 0) {
            npy_err(p->err, p->errlen, p->name,
                    "malformed header: unterminated string at offset %zu",
                    start);
            return KDCL_EFORMAT;
        }
        if (c == '\\' || c < 0x20 || c >= 0x7f) {
            npy_err(p->err, p->errlen, p->name,
                    "malformed header: unsupported character in string at "
                    "offset %zu", p->pos);
            return KDCL_EFORMAT;
        }
        if (n + 1 >= outlen) {
            npy_err(p->err, p->errlen, p->name,
                    "malformed header: string at offset %zu is too long",
                    start);
            return KDCL_EFORMAT;
        }
        out[n++] = (char)c;
        p->pos++;
    }
    p->pos++;
    out[n] = '\0';
    return KDCL_OK;
}

static int p_is_ident(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_';
}

/* Matches the word w, not followed by an identifier character. */
static int p_word(struct npy_parser *p, const char *w)
{
    size_t n = strlen(w);

    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0)
        return 0;
    if (p->pos + n < p->len && p_is_ident((unsigned char)p->s[p->pos + n]))
        return 0;
    p->pos += n;
    return 1;
}

static int p_bool(struct npy_parser *p, int *out)
{
    if (p_word(p, "True")) {
        *out = 1;
        return KDCL_OK;
    }
    if (p_word(p, "False")) {
        *out = 0;
        return KDCL_OK;
    }
    return p_fail(p, "True or False");
}

/* A decimal integer, optionally negative, optionally with an 'L' suffix. */
static int p_int(struct npy_parser *p, int64_t *out)
{
    size_t start = p->pos;
    int neg = 0;
    int64_t v = 0;
    int c;

    if (p_peek(p) == '-') {
        neg = 1;
        p->pos++;
    }
    c = p_peek(p);
    if (c < '0' || c > '9')
        return p_fail(p, "an integer");
    if (c == '0' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '0'
        && p->s[p->pos + 1] <= '9')
        return p_fail(p, "an integer without leading zeros");
    while (c >= '0' && c <= '9') {
        if (v > (INT64_MAX - (c - '0')) / 10) {
            npy_err(p->err, p->errlen, p->name,
                    "malformed header: dimension at offset %zu is too large",
                    start);
            return KDCL_EFORMAT;
        }
        v = v * 10 + (c - '0');
        p->pos++;
        c = p_peek(p);
    }
    if (c == 'L' || c == 'l') {
        p->pos++;
        c = p_peek(p);
    }
    if (p_is_ident(c) || c == '.')
        return p_fail(p, "',' or ')' after an integer");
    *out = neg ? -v : v;
    return KDCL_OK;
}

/* A tuple of at most KDCL_MAX_DIMS non-negative integers. */
static int p_shape(struct npy_parser *p, uint32_t *ndim, int64_t *shape)
{
    uint32_t n = 0;
    int64_t v = 0;
    int rc;

    rc = p_expect(p, '(', "a shape tuple '('");
    if (rc != KDCL_OK)
        return rc;
    p_skip_ws(p);
    if (p_peek(p) == ')') {
        p->pos++;
        *ndim = 0;
        return KDCL_OK;
    }
    for (;;) {
        p_skip_ws(p);
        rc = p_int(p, &v);
        if (rc != KDCL_OK)
            return rc;
        if (n == KDCL_MAX_DIMS) {
            npy_err(p->err, p->errlen, p->name,
                    "shape has more than %d dimensions", KDCL_MAX_DIMS);
            return KDCL_EFORMAT;
        }
        if (v < 0) {
            npy_err(p->err, p->errlen, p->name,
                    "negative dimension %lld in shape", (long long)v);
            return KDCL_EFORMAT;
        }
        shape[n++] = v;
        p_skip_ws(p);
        if (p_peek(p) == ',') {
            p->pos++;
            p_skip_ws(p);
            if (p_peek(p) == ')') {
                p->pos++;
                break;
            }
            continue;
        }
        if (p_peek(p) == ')') {
            if (n == 1) {
                npy_err(p->err, p->errlen, p->name,
                        "malformed header: shape (%lld) is not a tuple; "
                        "a one-dimensional shape is written (%lld,)",
                        (long long)v, (long long)v);
                return KDCL_EFORMAT;
            }
            p->pos++;
            break;
        }
        return p_fail(p, "',' or ')' in shape");
    }
    *ndim = n;
    return KDCL_OK;
}

/* Maps a descr string to a dtype. */
static int npy_parse_descr(const char *d, int *dtype, const char *name,
                           char *err, size_t errlen)
{
    static const struct {
        const char *code;
        int dtype;
    } multi[] = {
        {"f4", KDCL_DTYPE_F32},
        {"f8", KDCL_DTYPE_F64},
        {"i4", KDCL_DTYPE_I32},
        {"i8", KDCL_DTYPE_I64},
    };
    char order = d[0];

    /* One byte has no byte order: numpy writes '|u1', accept any mark. */
    if (order != '\0' && strchr("<>=|", order) != NULL
        && strcmp(d + 1, "u1") == 0) {
        *dtype = KDCL_DTYPE_U8;
        return KDCL_OK;
    }
    for (size_t i = 0; i < sizeof multi / sizeof multi[0]; i++) {
        if (order == '\0' || strcmp(d + 1, multi[i].code) != 0)
            continue;
        if (order == '<' || order == '=') {
            *dtype = multi[i].dtype;
            return KDCL_OK;
        }
        if (order == '>') {
            npy_err(err, errlen, name,
                    "big-endian dtype '%s' is not supported; save with "
                    "a.astype(a.dtype.newbyteorder('<'))", d);
            return KDCL_EDTYPE;
        }
    }
    npy_err(err, errlen, name,
            "unsupported dtype '%s' (supported: <f4, <f8, <i4, <i8, |u1)", d);
    return KDCL_EDTYPE;
}

/*
 * Parses the header dict into a's dtype, ndim and shape.
 */
static int npy_parse_header(const char *s, size_t len, const char *name,
                            struct kdcl__array *a, char *err, size_t errlen)
{
    struct npy_parser p = {s, len, 0, name, err, errlen};
    char key[NPY_MAX_STR];
    char descr[NPY_MAX_STR] = "";
    int have_descr = 0;
    int have_fortran = 0;
    int have_shape = 0;
    int fortran = 0;
    int rc;

    p_skip_ws(&p);
    rc = p_expect(&p, '{', "'{'");
    if (rc != KDCL_OK)
        return rc;
    for (;;) {
        p_skip_ws(&p);
        if (p_peek(&p) == '}') {
            p.pos++;
            break;
        }
        rc = p_string(&p, key, sizeof key, "a quoted key or '}'");
        if (rc != KDCL_OK)
            return rc;
        p_skip_ws(&p);
        rc = p_expect(&p, ':', "':'");
        if (rc != KDCL_OK)
            return rc;
        p_skip_ws(&p);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (p_peek(&p) == '[' || p_peek(&p) == '{') {
                npy_err(err, errlen, name,
                        "unsupported dtype: structured dtypes are not "
                        "supported (supported: <f4, <f8, <i4, <i8, |u1)");
                return KDCL_EDTYPE;
            }
            rc = p_string(&p, descr, sizeof descr, "a quoted dtype");
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            rc = p_bool(&p, &fortran);
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            rc = p_shape(&p, &a->ndim, a->shape);
            have_shape = 1;
        } else if (strcmp(key, "descr") == 0
                   || strcmp(key, "fortran_order") == 0
                   || strcmp(key, "shape") == 0) {
            npy_err(err, errlen, name, "malformed header: duplicate key '%s'",
                    key);
            rc = KDCL_EFORMAT;
        } else {
            npy_err(err, errlen, name, "malformed header: unexpected key '%s'",
                    key);
            rc = KDCL_EFORMAT;
        }
        if (rc != KDCL_OK)
            return rc;
        p_skip_ws(&p);
        if (p_peek(&p) == ',') {
            p.pos++;
            continue;
        }
        if (p_peek(&p) == '}') {
            p.pos++;
            break;
        }
        return p_fail(&p, "',' or '}'");
    }
    p_skip_ws(&p);
    if (p.pos != p.len)
        return p_fail(&p, "end of header after '}'");
    if (!have_descr || !have_fortran || !have_shape) {
        npy_err(err, errlen, name, "header is missing key '%s'",
                !have_descr ? "descr"
                : !have_fortran ? "fortran_order" : "shape");
        return KDCL_EFORMAT;
    }
    rc = npy_parse_descr(descr, &a->dtype, name, err, errlen);
    if (rc != KDCL_OK)
        return rc;
    if (fortran) {
        npy_err(err, errlen, name,
                "Fortran-order arrays are not supported; save with "
                "np.ascontiguousarray");
        return KDCL_EFORMAT;
    }
    return KDCL_OK;
}

/* ---------------------------------------------------------------- */
/* Reading                                                            */
/* ---------------------------------------------------------------- */

/* Where bytes come from: a FILE or a memory buffer. */
struct npy_src {
    FILE *f;                  /* NULL when reading memory */
    const unsigned char *buf; /* the memory, when f is NULL */
    size_t len;               /* bytes in all, when size_known */
    int size_known;
    size_t pos;               /* bytes consumed so far */
};

/*
 * Reads up to n bytes into dst; *got says how many came.  A short count is
 * the end of the input, which the caller reports; an I/O error is reported
 * here.
 */
static int npy_src_take(struct npy_src *s, void *dst, size_t n, size_t *got,
                        const char *name, char *err, size_t errlen)
{
    size_t g;

    if (s->f == NULL) {
        g = s->len - s->pos < n ? s->len - s->pos : n;
        if (g > 0)
            memcpy(dst, s->buf + s->pos, g);
    } else {
        errno = 0;
        g = fread(dst, 1, n, s->f);
        if (g < n && ferror(s->f)) {
            npy_err(err, errlen, name, "read error: %s",
                    strerror(errno != 0 ? errno : EIO));
            return KDCL_EIO;
        }
    }
    s->pos += g;
    *got = g;
    return KDCL_OK;
}

static int npy_read_src(struct npy_src *s, const char *name,
                        struct kdcl__array *out, char *err, size_t errlen)
{
    struct kdcl__array a;
    unsigned char pre[12];
    char *hdr = NULL;
    size_t got, lsize, hlen, bytes;
    unsigned major, minor;
    char sh[256];
    int rc;

    memset(&a, 0, sizeof a);
    if (!npy_host_is_little_endian()) {
        npy_err(err, errlen, name, "big-endian hosts are not supported");
        rc = KDCL_EUNSUPPORTED;
        goto cleanup;
    }

    /* Magic and version. */
    rc = npy_src_take(s, pre, 8, &got, name, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (memcmp(pre, NPY_MAGIC, got < NPY_MAGIC_LEN ? got : NPY_MAGIC_LEN)
        != 0) {
        npy_err(err, errlen, name, "not a .npy file (bad magic)");
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (got < 8) {
        npy_err(err, errlen, name,
                "truncated header: expected at least 10 bytes, found %zu",
                got);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    major = pre[6];
    minor = pre[7];
    if (major < 1 || major > 3 || minor != 0) {
        npy_err(err, errlen, name,
                "unsupported .npy format version %u.%u (supported: 1.0, "
                "2.0, 3.0)", major, minor);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }

    /* Header length and header. */
    lsize = major == 1 ? 2 : 4;
    rc = npy_src_take(s, pre + 8, lsize, &got, name, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (got < lsize) {
        npy_err(err, errlen, name,
                "truncated header: expected at least %zu bytes, found %zu",
                8 + lsize, 8 + got);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    if (lsize == 4)
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    if (hlen > NPY_MAX_HEADER) {
        npy_err(err, errlen, name,
                "header too long: %zu bytes (at most %zu)", hlen,
                NPY_MAX_HEADER);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    hdr = malloc(hlen + 1);
    if (hdr == NULL) {
        npy_err(err, errlen, name, "out of memory reading the header");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    rc = npy_src_take(s, hdr, hlen, &got, name, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (got < hlen) {
        npy_err(err, errlen, name,
                "truncated header: expected %zu bytes, found %zu",
                8 + lsize + hlen, 8 + lsize + got);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    hdr[hlen] = '\0';
    rc = npy_parse_header(hdr, hlen, name, &a, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;

    /* Data. */
    if (npy_count(a.shape, a.ndim, npy_dtype_size(a.dtype), &a.numel,
                  &bytes) != 0) {
        npy_shape_str(sh, sizeof sh, a.shape, a.ndim);
        npy_err(err, errlen, name, "shape %s has too many elements", sh);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (s->size_known && s->len - s->pos < bytes) {
        npy_err(err, errlen, name,
                "truncated data: expected %zu bytes, found %zu", bytes,
                s->len - s->pos);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    a.data = malloc(bytes > 0 ? bytes : 1);
    if (a.data == NULL) {
        npy_err(err, errlen, name, "out of memory allocating %zu bytes",
                bytes);
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    rc = npy_src_take(s, a.data, bytes, &got, name, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (got < bytes) {
        npy_err(err, errlen, name,
                "truncated data: expected %zu bytes, found %zu", bytes, got);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    *out = a;
    a.data = NULL;
    rc = KDCL_OK;

cleanup:
    free(hdr);
    free(a.data);
    return rc;
}

int kdcl__npy_read(const char *path, struct kdcl__array *out, char *err,
                   size_t errlen)
{
    struct npy_src s;
    struct stat st;
    int rc;

    memset(&s, 0, sizeof s);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (path == NULL || out == NULL) {
        npy_err(err, errlen, path != NULL ? path : "(null)",
                "invalid argument to kdcl__npy_read");
        return KDCL_EINVAL;
    }
    s.f = fopen(path, "rb");
    if (s.f == NULL) {
        npy_err(err, errlen, path, "cannot open: %s", strerror(errno));
        return KDCL_EIO;
    }
    if (fstat(fileno(s.f), &st) == 0 && S_ISREG(st.st_mode)
        && (uintmax_t)st.st_size <= SIZE_MAX) {
        s.len = (size_t)st.st_size;
        s.size_known = 1;
    }
    rc = npy_read_src(&s, path, out, err, errlen);
    fclose(s.f);
    return rc;
}

int kdcl__npy_read_mem(const void *buf, size_t len, struct kdcl__array *out,
                       char *err, size_t errlen)
{
    struct npy_src s;

    memset(&s, 0, sizeof s);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if ((buf == NULL && len > 0) || out == NULL) {
        npy_err(err, errlen, NPY_MEM_NAME,
                "invalid argument to kdcl__npy_read_mem");
        return KDCL_EINVAL;
    }
    s.buf = buf;
    s.len = len;
    s.size_known = 1;
    return npy_read_src(&s, NPY_MEM_NAME, out, err, errlen);
}

/* ---------------------------------------------------------------- */
/* Writing                                                            */
/* ---------------------------------------------------------------- */

static int npy_write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n < NPY_IO_CHUNK ? n : NPY_IO_CHUNK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/*
 * Formats the magic, version 1.0, header length and header dict of a into
 * buf, padded with spaces and a '\n' to a multiple of NPY_ALIGN bytes, the
 * same dict numpy writes.  Returns the length, or 0 if buf is too small.
 */
static size_t npy_format_header(const struct kdcl__array *a, char *buf,
                                size_t n)
{
    char sh[256];
    size_t total, hlen;
    int w;

    npy_shape_str(sh, sizeof sh, a->shape, a->ndim);
    if (n < 10)
        return 0;
    w = snprintf(buf + 10, n - 10,
                 "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                 npy_dtype_descr(a->dtype), sh);
    if (w < 0)
        return 0;
    total = 10 + (size_t)w + 1;
    total = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    if (total > n)
        return 0;
    memset(buf + 10 + w, ' ', total - 10 - (size_t)w);
    buf[total - 1] = '\n';
    hlen = total - 10;
    memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)(hlen & 0xff);
    buf[9] = (char)(hlen >> 8);
    return total;
}

int kdcl__npy_write(const char *path, const struct kdcl__array *a, char *err,
                    size_t errlen)
{
    static const char suffix[] = ".tmpXXXXXX";
    char hdr[512];
    char *tmp = NULL;
    int fd = -1;
    int created = 0;
    int closed;
    size_t bytes = 0;
    size_t hlen, plen;
    int rc;

    if (path == NULL || a == NULL) {
        npy_err(err, errlen, path != NULL ? path : "(null)",
                "invalid argument to kdcl__npy_write");
        rc = KDCL_EINVAL;
        goto cleanup;
    }
    if (!npy_host_is_little_endian()) {
        npy_err(err, errlen, path, "big-endian hosts are not supported");
        rc = KDCL_EUNSUPPORTED;
        goto cleanup;
    }
    rc = npy_check_array(a, path, &bytes, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    hlen = npy_format_header(a, hdr, sizeof hdr);
    if (hlen == 0) {
        npy_err(err, errlen, path, "cannot format the header");
        rc = KDCL_EINVAL;
        goto cleanup;
    }

    plen = strlen(path);
    tmp = malloc(plen + sizeof suffix);
    if (tmp == NULL) {
        npy_err(err, errlen, path, "out of memory");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);
    fd = mkstemp(tmp);
    if (fd < 0) {
        npy_err(err, errlen, path, "cannot create temporary file: %s",
                strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    created = 1;
    /* mkstemp makes the file 0600; give it the mode of a normal file. */
    if (fchmod(fd, 0644) != 0 || npy_write_all(fd, hdr, hlen) != 0
        || npy_write_all(fd, a->data, bytes) != 0 || fsync(fd) != 0) {
        npy_err(err, errlen, path, "write error: %s", strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    closed = close(fd);
    fd = -1;
    if (closed != 0) {
        npy_err(err, errlen, path, "write error: %s", strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        npy_err(err, errlen, path, "cannot replace the file: %s",
                strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    rc = KDCL_OK;

cleanup:
    if (fd >= 0)
        close(fd);
    if (rc != KDCL_OK && created)
        unlink(tmp);
    free(tmp);
    return rc;
}

/* ---------------------------------------------------------------- */
/* Arrays                                                             */
/* ---------------------------------------------------------------- */

void kdcl__array_free(struct kdcl__array *a)
{
    if (a == NULL)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}

static int64_t npy_get_int(const void *data, int dtype, int64_t i)
{
    switch (dtype) {
    case KDCL_DTYPE_I32: return ((const int32_t *)data)[i];
    case KDCL_DTYPE_I64: return ((const int64_t *)data)[i];
    default: return ((const uint8_t *)data)[i];
    }
}

static void npy_set_int(void *data, int dtype, int64_t i, int64_t v)
{
    switch (dtype) {
    case KDCL_DTYPE_I32: ((int32_t *)data)[i] = (int32_t)v; break;
    case KDCL_DTYPE_I64: ((int64_t *)data)[i] = v; break;
    default: ((uint8_t *)data)[i] = (uint8_t)v; break;
    }
}

int kdcl__array_convert(const struct kdcl__array *src, int dtype,
                        struct kdcl__array *dst, char *err, size_t errlen)
{
    static const char name[] = "convert";
    struct kdcl__array r;
    size_t bytes = 0;
    size_t dbytes;
    int64_t lo, hi;
    int rc;

    memset(&r, 0, sizeof r);
    if (src == NULL || dst == NULL) {
        npy_err(err, errlen, name, "invalid argument");
        rc = KDCL_EINVAL;
        goto cleanup;
    }
    rc = npy_check_array(src, name, &bytes, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (npy_dtype_size(dtype) == 0) {
        npy_err(err, errlen, name, "invalid target dtype %d", dtype);
        rc = KDCL_EINVAL;
        goto cleanup;
    }
    if (npy_dtype_is_float(src->dtype) != npy_dtype_is_float(dtype)) {
        npy_err(err, errlen, name,
                "cannot convert %s to %s: float <-> integer conversions are "
                "not supported", npy_dtype_numpy_name(src->dtype),
                npy_dtype_numpy_name(dtype));
        rc = KDCL_EDTYPE;
        goto cleanup;
    }
    r = *src;
    r.dtype = dtype;
    for (uint32_t i = r.ndim; i < KDCL_MAX_DIMS; i++)
        r.shape[i] = 0;
    dbytes = (size_t)src->numel * npy_dtype_size(dtype);
    r.data = malloc(dbytes > 0 ? dbytes : 1);
    if (r.data == NULL) {
        npy_err(err, errlen, name, "out of memory allocating %zu bytes",
                dbytes);
        rc = KDCL_ENOMEM;
        goto cleanup;
    }

    if (src->dtype == dtype) {
        if (bytes > 0)
            memcpy(r.data, src->data, bytes);
    } else if (src->dtype == KDCL_DTYPE_F32) {
        const float *s = src->data;
        double *d = r.data;

        for (int64_t i = 0; i < src->numel; i++)
            d[i] = s[i];
    } else if (src->dtype == KDCL_DTYPE_F64) {
        const double *s = src->data;
        float *d = r.data;

        for (int64_t i = 0; i < src->numel; i++) {
            if (isfinite(s[i]) && (s[i] > FLT_MAX || s[i] < -FLT_MAX)) {
                npy_err(err, errlen, name,
                        "element %lld (%g) does not fit in float32",
                        (long long)i, s[i]);
                rc = KDCL_ERANGE;
                goto cleanup;
            }
            d[i] = (float)s[i];
        }
    } else {
        lo = dtype == KDCL_DTYPE_I32 ? INT32_MIN
             : dtype == KDCL_DTYPE_U8 ? 0 : INT64_MIN;
        hi = dtype == KDCL_DTYPE_I32 ? INT32_MAX
             : dtype == KDCL_DTYPE_U8 ? UINT8_MAX : INT64_MAX;
        for (int64_t i = 0; i < src->numel; i++) {
            int64_t v = npy_get_int(src->data, src->dtype, i);

            if (v < lo || v > hi) {
                npy_err(err, errlen, name,
                        "element %lld (%lld) of the %s array does not fit "
                        "in %s", (long long)i, (long long)v,
                        npy_dtype_numpy_name(src->dtype),
                        npy_dtype_numpy_name(dtype));
                rc = KDCL_ERANGE;
                goto cleanup;
            }
            npy_set_int(r.data, dtype, i, v);
        }
    }
    if (dst == src)
        free(dst->data);
    *dst = r;
    r.data = NULL;
    rc = KDCL_OK;

cleanup:
    free(r.data);
    if (rc != KDCL_OK && dst != NULL && dst != src)
        memset(dst, 0, sizeof *dst);
    return rc;
}
