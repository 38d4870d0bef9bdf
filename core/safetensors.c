/*
 * core/safetensors.c - reading and writing safetensors files (see
 * safetensors.h).
 *
 * The format (github.com/huggingface/safetensors): an 8-byte little-endian
 * header length N, N bytes of JSON, then the data buffer.  The JSON object
 * maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
 * end]} (offsets relative to the buffer) and may hold "__metadata__", an
 * object of strings.  The reference reader refuses headers over 100 MB,
 * headers that do not start with '{', and tensors that do not tile the
 * buffer exactly: sorted by offset, each must begin where the previous
 * one ended and the last must end at the end of the file.  This reader
 * makes the same checks and the reference writer's checks on top
 * (duplicate names, sizes matching shapes).
 *
 * The JSON is parsed with cJSON.  cJSON holds numbers as doubles, so
 * dimensions and offsets must be integral and below 2^53, where a double
 * is exact; that is 8 PiB, far past any real file.  Numbers are written
 * as raw decimal text, never through a double.
 *
 * A read checks the whole header before touching the data, then reads
 * every tensor straight into its own buffer in file order: one pass, no
 * seeking, no second copy of the weights.
 */
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define ST_META_KEY "__metadata__"
#define ST_MAX_EXACT 9007199254740991.0 /* 2^53 - 1 */
#define ST_IO_CHUNK ((size_t)1 << 30)   /* largest single write() */

#if defined(__GNUC__)
#define ST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ST_PRINTF(f, a)
#endif

/* ---------------------------------------------------------------- */
/* Helpers                                                            */
/* ---------------------------------------------------------------- */

static void st_err(char *err, size_t errlen, const char *name,
                   const char *fmt, ...) ST_PRINTF(4, 5);

/* Formats "name: message" into err, on one line. */
static void st_err(char *err, size_t errlen, const char *name,
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
    /* Paths and tensor names may hold control characters; one line. */
    for (char *c = err; *c != '\0'; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    }
}

static int st_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;

    memcpy(&first, &one, 1);
    return first == 1;
}

/*
 * Every dtype the format defines, with its size in bits; kdcl handles the
 * ones with a kdcl dtype.  Knowing the others lets a valid file with,
 * say, BF16 weights get KDCL_EDTYPE and a useful message instead of a
 * format error.
 */
struct st_dtype {
    const char *name;
    unsigned bits;
    int dtype;        /* enum kdcl_dtype, or -1 */
    const char *hint; /* for the others: what to convert to */
};

static const struct st_dtype st_dtypes[] = {
    {"F32", 32, KDCL_DTYPE_F32, NULL},
    {"F64", 64, KDCL_DTYPE_F64, NULL},
    {"I32", 32, KDCL_DTYPE_I32, NULL},
    {"I64", 64, KDCL_DTYPE_I64, NULL},
    {"U8", 8, KDCL_DTYPE_U8, NULL},
    {"BOOL", 8, -1, "U8"},
    {"I8", 8, -1, "I32"},
    {"I16", 16, -1, "I32"},
    {"U16", 16, -1, "I32"},
    {"U32", 32, -1, "I64"},
    {"U64", 64, -1, "I64 (if the values fit)"},
    {"F16", 16, -1, "F32"},
    {"BF16", 16, -1, "F32"},
    {"F8_E4M3", 8, -1, "F32"},
    {"F8_E5M2", 8, -1, "F32"},
    {"F8_E8M0", 8, -1, "F32"},
    {"F6_E2M3", 6, -1, "F32"},
    {"F6_E3M2", 6, -1, "F32"},
    {"F4", 4, -1, "F32"},
    {"C64", 64, -1, "two F32 tensors (real and imaginary parts)"},
};

#define ST_N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

static const struct st_dtype *st_dtype_by_name(const char *name)
{
    for (size_t i = 0; i < ST_N_DTYPES; i++) {
        if (strcmp(st_dtypes[i].name, name) == 0)
            return &st_dtypes[i];
    }
    return NULL;
}

static const struct st_dtype *st_dtype_by_kdcl(int dtype)
{
    for (size_t i = 0; i < ST_N_DTYPES; i++) {
        if (st_dtypes[i].dtype >= 0 && st_dtypes[i].dtype == dtype)
            return &st_dtypes[i];
    }
    return NULL;
}

/*
 * Checks that s[0..n) is UTF-8 (no overlong forms, surrogates or code
 * points past U+10FFFF).  With json set, also refuses the control
 * characters JSON never holds raw (everything below 0x20 except tab, LF
 * and CR, NUL included).  Returns the offset of the first bad byte, or n.
 */
static size_t st_utf8_check(const unsigned char *s, size_t n, int json)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i];
        unsigned need, cp, min;

        if (c < 0x80) {
            if (json && c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return i;
            if (!json && c == 0)
                return i;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
            min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
            min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else {
            return i;
        }
        if (n - i <= need)
            return i;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += need + 1;
    }
    return n;
}

/* Writes a shape as "[2, 3]" for messages. */
static void st_shape_str(char *buf, size_t n, const int64_t *shape,
                         uint32_t ndim)
{
    size_t pos = 1;
    int w;

    snprintf(buf, n, "[");
    for (uint32_t i = 0; i < ndim && pos < n; i++) {
        w = snprintf(buf + pos, n - pos, "%s%lld", i > 0 ? ", " : "",
                     (long long)shape[i]);
        if (w < 0)
            return;
        pos += (size_t)w;
    }
    if (pos < n)
        snprintf(buf + pos, n - pos, "]");
}

/*
 * Element count and size in bits of a shape; -1 when they do not fit in
 * int64_t (bits: uint64_t).
 */
static int st_count(const int64_t *shape, uint32_t ndim, unsigned bits,
                    int64_t *numel, uint64_t *nbits)
{
    int64_t n = 1;

    for (uint32_t i = 0; i < ndim; i++) {
        if (shape[i] == 0) {
            *numel = 0;
            *nbits = 0;
            return 0;
        }
    }
    for (uint32_t i = 0; i < ndim; i++) {
        if (n > INT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    if ((uint64_t)n > (uint64_t)INT64_MAX / bits)
        return -1;
    *numel = n;
    *nbits = (uint64_t)n * bits;
    return 0;
}

/* ---------------------------------------------------------------- */
/* Reading: the header                                                */
/* ---------------------------------------------------------------- */

/* One tensor entry of the header, checked. */
struct st_entry {
    const char *name;            /* owned by the cJSON tree */
    const struct st_dtype *type;
    uint32_t ndim;
    int64_t shape[KDCL_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;
};

/* A non-negative integral JSON number below 2^53 into *out. */
static int st_json_uint(const cJSON *v, uint64_t *out)
{
    double d;

    if (!cJSON_IsNumber(v))
        return -1;
    d = v->valuedouble;
    /* The comparisons are false for NaN, which cJSON never makes anyway. */
    if (!(d >= 0.0 && d <= ST_MAX_EXACT))
        return -1;
    if ((double)(uint64_t)d != d)
        return -1;
    *out = (uint64_t)d;
    return 0;
}

/* The printable form of a JSON value's type, for messages. */
static const char *st_json_kind(const cJSON *v)
{
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    return "an invalid value";
}

/* Checks one tensor entry and fills *e. */
static int st_parse_entry(const cJSON *item, struct st_entry *e,
                          const char *path, char *err, size_t errlen)
{
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    const cJSON *c;
    const cJSON *b, *en;
    char sh[256];
    uint64_t v, nbits;
    int n;

    e->name = item->string;
    if (!cJSON_IsObject(item)) {
        st_err(err, errlen, path,
               "tensor '%s': entry is %s, expected an object with dtype, "
               "shape and data_offsets", e->name, st_json_kind(item));
        return KDCL_EFORMAT;
    }
    /* Keys are case-sensitive; a repeated key is as wrong as in serde. */
    for (c = item->child; c != NULL; c = c->next) {
        const cJSON **slot = NULL;

        if (strcmp(c->string, "dtype") == 0)
            slot = &dtype;
        else if (strcmp(c->string, "shape") == 0)
            slot = &shape;
        else if (strcmp(c->string, "data_offsets") == 0)
            slot = &offs;
        if (slot == NULL)
            continue;
        if (*slot != NULL) {
            st_err(err, errlen, path, "tensor '%s': duplicate key '%s'",
                   e->name, c->string);
            return KDCL_EFORMAT;
        }
        *slot = c;
    }
    if (dtype == NULL || shape == NULL || offs == NULL) {
        st_err(err, errlen, path, "tensor '%s': missing '%s'", e->name,
               dtype == NULL ? "dtype"
               : shape == NULL ? "shape" : "data_offsets");
        return KDCL_EFORMAT;
    }

    if (!cJSON_IsString(dtype)) {
        st_err(err, errlen, path, "tensor '%s': dtype is %s, expected a "
               "string", e->name, st_json_kind(dtype));
        return KDCL_EFORMAT;
    }
    e->type = st_dtype_by_name(dtype->valuestring);
    if (e->type == NULL) {
        st_err(err, errlen, path, "tensor '%s': unknown dtype '%s'",
               e->name, dtype->valuestring);
        return KDCL_EFORMAT;
    }

    if (!cJSON_IsArray(shape)) {
        st_err(err, errlen, path, "tensor '%s': shape is %s, expected an "
               "array", e->name, st_json_kind(shape));
        return KDCL_EFORMAT;
    }
    n = cJSON_GetArraySize(shape);
    if (n > KDCL_MAX_DIMS) {
        st_err(err, errlen, path, "tensor '%s': %d dimensions, at most %d "
               "are supported", e->name, n, KDCL_MAX_DIMS);
        return KDCL_EFORMAT;
    }
    e->ndim = 0;
    for (c = shape->child; c != NULL; c = c->next) {
        if (st_json_uint(c, &v) != 0) {
            st_err(err, errlen, path, "tensor '%s': shape entry %u is not "
                   "an integer in [0, 2^53)", e->name, (unsigned)e->ndim);
            return KDCL_EFORMAT;
        }
        e->shape[e->ndim++] = (int64_t)v;
    }
    st_shape_str(sh, sizeof sh, e->shape, e->ndim);
    if (st_count(e->shape, e->ndim, e->type->bits, &e->numel, &nbits)
        != 0) {
        st_err(err, errlen, path, "tensor '%s': shape %s is too large: its "
               "byte count overflows", e->name, sh);
        return KDCL_EFORMAT;
    }

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2) {
        st_err(err, errlen, path, "tensor '%s': data_offsets is %s, "
               "expected an array [begin, end]", e->name,
               cJSON_IsArray(offs) ? "an array of the wrong length"
                                   : st_json_kind(offs));
        return KDCL_EFORMAT;
    }
    b = offs->child;
    en = b->next;
    if (st_json_uint(b, &e->begin) != 0 || st_json_uint(en, &e->end) != 0) {
        st_err(err, errlen, path, "tensor '%s': data_offsets out of range: "
               "both must be integers in [0, 2^53)", e->name);
        return KDCL_EFORMAT;
    }
    if (e->begin > e->end) {
        st_err(err, errlen, path, "tensor '%s': data_offsets [%" PRIu64
               ", %" PRIu64 "] out of range: begin is past end", e->name,
               e->begin, e->end);
        return KDCL_EFORMAT;
    }
    if (nbits % 8 != 0 || nbits / 8 != e->end - e->begin) {
        st_err(err, errlen, path, "tensor '%s': shape %s of %s needs %"
               PRIu64 "%s bytes, data_offsets [%" PRIu64 ", %" PRIu64
               "] hold %" PRIu64, e->name, sh, e->type->name, nbits / 8,
               nbits % 8 != 0 ? " and a fraction of" : "", e->begin,
               e->end, e->end - e->begin);
        return KDCL_EFORMAT;
    }
    return KDCL_OK;
}

/* Checks "__metadata__": an object whose values are all strings. */
static int st_parse_meta(const cJSON *meta, size_t *n_meta, const char *path,
                         char *err, size_t errlen)
{
    const cJSON *c;

    if (!cJSON_IsObject(meta)) {
        st_err(err, errlen, path, "__metadata__ is %s, expected an object "
               "of strings", st_json_kind(meta));
        return KDCL_EFORMAT;
    }
    *n_meta = 0;
    for (c = meta->child; c != NULL; c = c->next) {
        if (!cJSON_IsString(c)) {
            st_err(err, errlen, path, "__metadata__ entry '%s' is %s, "
                   "expected a string", c->string, st_json_kind(c));
            return KDCL_EFORMAT;
        }
        (*n_meta)++;
    }
    return KDCL_OK;
}

static int st_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Finds a repeated string among n; returns it, or NULL. */
static const char *st_find_dup(const char **names, size_t n)
{
    qsort(names, n, sizeof names[0], st_cmp_str);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0)
            return names[i];
    }
    return NULL;
}

static int st_cmp_offsets(const void *a, const void *b)
{
    const struct st_entry *x = *(const struct st_entry *const *)a;
    const struct st_entry *y = *(const struct st_entry *const *)b;

    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ---------------------------------------------------------------- */
/* Reading: the whole file                                            */
/* ---------------------------------------------------------------- */

/* Reads n bytes or reports how many came; a read error is KDCL_EIO. */
static int st_fread(FILE *f, void *buf, size_t n, size_t *got,
                    const char *path, char *err, size_t errlen)
{
    *got = fread(buf, 1, n, f);
    if (*got < n && ferror(f)) {
        st_err(err, errlen, path, "read error: %s", strerror(errno));
        return KDCL_EIO;
    }
    return KDCL_OK;
}

void kdcl__st_free(struct kdcl__st_file *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n && f->t != NULL; i++) {
        free(f->t[i].name);
        kdcl__array_free(&f->t[i].a);
    }
    for (size_t i = 0; i < f->n_meta; i++) {
        if (f->meta_keys != NULL)
            free(f->meta_keys[i]);
        if (f->meta_values != NULL)
            free(f->meta_values[i]);
    }
    free(f->t);
    free(f->meta_keys);
    free(f->meta_values);
    memset(f, 0, sizeof *f);
}

static char *st_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);

    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

int kdcl__st_read(const char *path, struct kdcl__st_file *out, char *err,
                  size_t errlen)
{
    struct kdcl__st_file r;
    struct st_entry *ents = NULL;
    struct st_entry **order = NULL;
    const char **names = NULL;
    const struct st_entry *unsupported = NULL;
    const cJSON *meta = NULL;
    const cJSON *c;
    const char *dup;
    const char *parse_end = NULL;
    unsigned char pre[8];
    char *hdr = NULL;
    cJSON *root = NULL;
    FILE *f = NULL;
    struct stat st;
    uint64_t hlen = 0, data_len = 0, cursor = 0;
    size_t n_ent = 0, n_meta = 0, got, bad, k;
    int size_known = 0;
    int rc;

    memset(&r, 0, sizeof r);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (path == NULL || out == NULL) {
        st_err(err, errlen, path != NULL ? path : "(null)",
               "invalid argument to kdcl__st_read");
        return KDCL_EINVAL;
    }
    if (!st_host_is_little_endian()) {
        st_err(err, errlen, path, "big-endian hosts are not supported");
        return KDCL_EUNSUPPORTED;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        st_err(err, errlen, path, "cannot open: %s", strerror(errno));
        return KDCL_EIO;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 8)
        size_known = 1;

    /* The header length. */
    rc = st_fread(f, pre, sizeof pre, &got, path, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (got < sizeof pre) {
        st_err(err, errlen, path, "not a safetensors file: %zu bytes, "
               "shorter than the 8-byte header length", got);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | pre[i];
    if (hlen > KDCL__ST_MAX_HEADER) {
        st_err(err, errlen, path, "header length %" PRIu64 " is larger "
               "than the %u-byte limit (not a safetensors file?)", hlen,
               KDCL__ST_MAX_HEADER);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (size_known && hlen > (uint64_t)st.st_size - 8) {
        st_err(err, errlen, path, "header length %" PRIu64 " is larger "
               "than the file (%jd bytes)", hlen, (intmax_t)st.st_size);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (size_known)
        data_len = (uint64_t)st.st_size - 8 - hlen;

    /* The header. */
    hdr = malloc((size_t)hlen + 1);
    if (hdr == NULL) {
        st_err(err, errlen, path, "out of memory reading the header");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    rc = st_fread(f, hdr, (size_t)hlen, &got, path, err, errlen);
    if (rc != KDCL_OK)
        goto cleanup;
    if (got < hlen) {
        st_err(err, errlen, path, "truncated header: expected %" PRIu64
               " bytes, found %zu", hlen, got);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    hdr[hlen] = '\0';
    bad = st_utf8_check((const unsigned char *)hdr, (size_t)hlen, 1);
    if (bad < hlen) {
        st_err(err, errlen, path, "header is not JSON text: byte 0x%02x at "
               "offset %zu is not valid UTF-8 or a raw control character",
               (unsigned char)hdr[bad], bad);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (hlen == 0 || hdr[0] != '{') {
        st_err(err, errlen, path, "header does not start with '{' (not a "
               "safetensors file?)");
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    /* Length hlen + 1 takes in our NUL, which ends the trailing spaces. */
    root = cJSON_ParseWithLengthOpts(hdr, (size_t)hlen + 1, &parse_end, 1);
    if (root == NULL) {
        size_t at = parse_end != NULL && parse_end >= hdr
                    ? (size_t)(parse_end - hdr) : 0;

        st_err(err, errlen, path, "header is not valid JSON (error at "
               "offset %zu of %" PRIu64 ")", at, hlen);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (!cJSON_IsObject(root)) {
        st_err(err, errlen, path, "header is %s, expected a JSON object",
               st_json_kind(root));
        rc = KDCL_EFORMAT;
        goto cleanup;
    }

    /* Entries. */
    for (c = root->child; c != NULL; c = c->next) {
        if (strcmp(c->string, ST_META_KEY) == 0) {
            if (meta != NULL) {
                st_err(err, errlen, path, "duplicate __metadata__");
                rc = KDCL_EFORMAT;
                goto cleanup;
            }
            meta = c;
        } else {
            n_ent++;
        }
    }
    if (meta != NULL) {
        rc = st_parse_meta(meta, &n_meta, path, err, errlen);
        if (rc != KDCL_OK)
            goto cleanup;
    }
    ents = calloc(n_ent > 0 ? n_ent : 1, sizeof *ents);
    order = calloc(n_ent > 0 ? n_ent : 1, sizeof *order);
    k = n_ent > n_meta ? n_ent : n_meta;
    names = calloc(k > 0 ? k : 1, sizeof *names);
    if (ents == NULL || order == NULL || names == NULL) {
        st_err(err, errlen, path, "out of memory reading the header");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    k = 0;
    for (c = root->child; c != NULL; c = c->next) {
        if (c == meta)
            continue;
        rc = st_parse_entry(c, &ents[k], path, err, errlen);
        if (rc != KDCL_OK)
            goto cleanup;
        if (unsupported == NULL && ents[k].type->dtype < 0)
            unsupported = &ents[k];
        order[k] = &ents[k];
        names[k] = ents[k].name;
        k++;
    }
    dup = st_find_dup(names, n_ent);
    if (dup != NULL) {
        st_err(err, errlen, path, "duplicate tensor name '%s'", dup);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (meta != NULL) {
        k = 0;
        for (c = meta->child; c != NULL; c = c->next)
            names[k++] = c->string;
        dup = st_find_dup(names, n_meta);
        if (dup != NULL) {
            st_err(err, errlen, path, "duplicate __metadata__ key '%s'",
                   dup);
            rc = KDCL_EFORMAT;
            goto cleanup;
        }
    }

    /* The tensors must tile the data buffer exactly. */
    qsort(order, n_ent, sizeof order[0], st_cmp_offsets);
    for (size_t i = 0; i < n_ent; i++) {
        const struct st_entry *e = order[i];

        if (e->begin < cursor) {
            st_err(err, errlen, path, "tensor '%s': data_offsets [%" PRIu64
                   ", %" PRIu64 "] overlap tensor '%s' [%" PRIu64 ", %"
                   PRIu64 "]", e->name, e->begin, e->end, order[i - 1]->name,
                   order[i - 1]->begin, order[i - 1]->end);
            rc = KDCL_EFORMAT;
            goto cleanup;
        }
        if (e->begin > cursor) {
            st_err(err, errlen, path, "hole in the data: bytes [%" PRIu64
                   ", %" PRIu64 ") before tensor '%s' belong to no tensor",
                   cursor, e->begin, e->name);
            rc = KDCL_EFORMAT;
            goto cleanup;
        }
        cursor = e->end;
    }
    if (size_known && cursor > data_len) {
        st_err(err, errlen, path, "truncated data: tensor '%s' ends at "
               "offset %" PRIu64 ", the data holds %" PRIu64 " bytes",
               order[n_ent - 1]->name, cursor, data_len);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (size_known && cursor < data_len) {
        st_err(err, errlen, path, "hole in the data: bytes [%" PRIu64 ", %"
               PRIu64 ") after the last tensor belong to no tensor", cursor,
               data_len);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    if (unsupported != NULL) {
        st_err(err, errlen, path, "tensor '%s': dtype %s is not supported "
               "(kdcl reads F32, F64, I32, I64 and U8); convert it to %s "
               "first", unsupported->name, unsupported->type->name,
               unsupported->type->hint);
        rc = KDCL_EDTYPE;
        goto cleanup;
    }

    /* The result: tensors in header order, read in file order. */
    r.t = calloc(n_ent > 0 ? n_ent : 1, sizeof *r.t);
    r.meta_keys = calloc(n_meta > 0 ? n_meta : 1, sizeof *r.meta_keys);
    r.meta_values = calloc(n_meta > 0 ? n_meta : 1, sizeof *r.meta_values);
    if (r.t == NULL || r.meta_keys == NULL || r.meta_values == NULL) {
        st_err(err, errlen, path, "out of memory");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    r.n = n_ent;
    r.n_meta = n_meta;
    k = 0;
    for (c = meta != NULL ? meta->child : NULL; c != NULL; c = c->next) {
        r.meta_keys[k] = st_strdup(c->string);
        r.meta_values[k] = st_strdup(c->valuestring);
        if (r.meta_keys[k] == NULL || r.meta_values[k] == NULL) {
            st_err(err, errlen, path, "out of memory");
            rc = KDCL_ENOMEM;
            goto cleanup;
        }
        k++;
    }
    for (size_t i = 0; i < n_ent; i++) {
        struct kdcl__st_tensor *t = &r.t[i];
        size_t bytes = (size_t)(ents[i].end - ents[i].begin);

        t->name = st_strdup(ents[i].name);
        t->a.data = malloc(bytes > 0 ? bytes : 1);
        if (t->name == NULL || t->a.data == NULL) {
            st_err(err, errlen, path, "out of memory allocating %zu bytes "
                   "for tensor '%s'", bytes, ents[i].name);
            rc = KDCL_ENOMEM;
            goto cleanup;
        }
        t->a.dtype = ents[i].type->dtype;
        t->a.ndim = ents[i].ndim;
        memcpy(t->a.shape, ents[i].shape, sizeof t->a.shape);
        t->a.numel = ents[i].numel;
    }
    for (size_t i = 0; i < n_ent; i++) {
        const struct st_entry *e = order[i];
        size_t bytes = (size_t)(e->end - e->begin);

        rc = st_fread(f, r.t[e - ents].a.data, bytes, &got, path, err,
                      errlen);
        if (rc != KDCL_OK)
            goto cleanup;
        if (got < bytes) {
            st_err(err, errlen, path, "truncated data: expected %" PRIu64
                   " bytes, found %" PRIu64 " (in tensor '%s')", cursor,
                   e->begin + got, e->name);
            rc = KDCL_EFORMAT;
            goto cleanup;
        }
    }
    if (!size_known && fgetc(f) != EOF) {
        st_err(err, errlen, path, "hole in the data: bytes after offset %"
               PRIu64 " (the last tensor's end) belong to no tensor",
               cursor);
        rc = KDCL_EFORMAT;
        goto cleanup;
    }
    *out = r;
    memset(&r, 0, sizeof r);
    rc = KDCL_OK;

cleanup:
    kdcl__st_free(&r);
    cJSON_Delete(root);
    free(hdr);
    free(ents);
    free(order);
    free(names);
    if (f != NULL)
        fclose(f);
    return rc;
}

const struct kdcl__array *kdcl__st_find(const struct kdcl__st_file *f,
                                        const char *name)
{
    if (f == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i].a;
    }
    return NULL;
}

/* ---------------------------------------------------------------- */
/* Writing                                                            */
/* ---------------------------------------------------------------- */

static int st_write_all(int fd, const void *buf, size_t n)
{
    const unsigned char *p = buf;
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n < ST_IO_CHUNK ? n : ST_IO_CHUNK);
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

/* Writes every tensor's data, back to back. */
static int st_write_data(int fd, const struct kdcl__st_tensor *t, size_t n,
                         const size_t *bytes)
{
    for (size_t i = 0; i < n; i++) {
        if (st_write_all(fd, t[i].a.data, bytes[i]) != 0)
            return -1;
    }
    return 0;
}

/* Checks one array handed to the writer; finds its byte size. */
static int st_check_array(const struct kdcl__st_tensor *t, const char *path,
                          size_t *bytes, char *err, size_t errlen)
{
    const struct kdcl__array *a = &t->a;
    const struct st_dtype *type = st_dtype_by_kdcl(a->dtype);
    char sh[256];
    int64_t numel;
    uint64_t nbits;

    if (type == NULL) {
        st_err(err, errlen, path, "tensor '%s': invalid dtype %d", t->name,
               a->dtype);
        return KDCL_EINVAL;
    }
    if (a->ndim > KDCL_MAX_DIMS) {
        st_err(err, errlen, path, "tensor '%s': %u dimensions, at most %d "
               "are supported", t->name, (unsigned)a->ndim, KDCL_MAX_DIMS);
        return KDCL_EINVAL;
    }
    for (uint32_t i = 0; i < a->ndim; i++) {
        if (a->shape[i] < 0) {
            st_err(err, errlen, path, "tensor '%s': negative dimension %lld",
                   t->name, (long long)a->shape[i]);
            return KDCL_EINVAL;
        }
    }
    st_shape_str(sh, sizeof sh, a->shape, a->ndim);
    if (st_count(a->shape, a->ndim, type->bits, &numel, &nbits) != 0
        || nbits / 8 > SIZE_MAX) {
        st_err(err, errlen, path, "tensor '%s': shape %s is too large",
               t->name, sh);
        return KDCL_EINVAL;
    }
    if (numel != a->numel) {
        st_err(err, errlen, path, "tensor '%s': numel %lld does not match "
               "shape %s (%lld elements)", t->name, (long long)a->numel, sh,
               (long long)numel);
        return KDCL_EINVAL;
    }
    if (a->data == NULL) {
        st_err(err, errlen, path, "tensor '%s': data is NULL", t->name);
        return KDCL_EINVAL;
    }
    *bytes = (size_t)(nbits / 8);
    return KDCL_OK;
}

/* Adds item to obj under key; takes ownership of item either way. */
static int st_json_add(cJSON *obj, const char *key, cJSON *item)
{
    if (item == NULL)
        return -1;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

/* Appends an integer, as exact decimal text, to the array arr. */
static int st_json_push_uint(cJSON *arr, uint64_t v)
{
    char buf[24];
    cJSON *item;

    snprintf(buf, sizeof buf, "%" PRIu64, v);
    item = cJSON_CreateRaw(buf);
    if (item == NULL)
        return -1;
    if (!cJSON_AddItemToArray(arr, item)) {
        cJSON_Delete(item);
        return -1;
    }
    return 0;
}

/* Builds the header JSON; *root is NULL only when memory ran out. */
static int st_build_header(const struct kdcl__st_tensor *t, size_t n,
                           const size_t *bytes, const char *const *meta_kv,
                           size_t n_meta, cJSON **root)
{
    cJSON *meta, *entry, *arr;
    uint64_t off = 0;

    *root = cJSON_CreateObject();
    if (*root == NULL)
        return -1;
    if (n_meta > 0) {
        meta = cJSON_CreateObject();
        if (st_json_add(*root, ST_META_KEY, meta) != 0)
            return -1;
        for (size_t i = 0; i < n_meta; i++) {
            if (st_json_add(meta, meta_kv[2 * i],
                            cJSON_CreateString(meta_kv[2 * i + 1])) != 0)
                return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        entry = cJSON_CreateObject();
        if (st_json_add(*root, t[i].name, entry) != 0)
            return -1;
        if (st_json_add(entry, "dtype", cJSON_CreateString(
                            st_dtype_by_kdcl(t[i].a.dtype)->name)) != 0)
            return -1;
        arr = cJSON_CreateArray();
        if (st_json_add(entry, "shape", arr) != 0)
            return -1;
        for (uint32_t d = 0; d < t[i].a.ndim; d++) {
            if (st_json_push_uint(arr, (uint64_t)t[i].a.shape[d]) != 0)
                return -1;
        }
        arr = cJSON_CreateArray();
        if (st_json_add(entry, "data_offsets", arr) != 0
            || st_json_push_uint(arr, off) != 0
            || st_json_push_uint(arr, off + bytes[i]) != 0)
            return -1;
        off += bytes[i];
    }
    return 0;
}

/* Checks a name or metadata string handed to the writer. */
static int st_check_string(const char *s, const char *what, size_t i,
                           const char *path, char *err, size_t errlen)
{
    size_t n;

    if (s == NULL) {
        st_err(err, errlen, path, "%s %zu is NULL", what, i);
        return KDCL_EINVAL;
    }
    n = strlen(s);
    if (st_utf8_check((const unsigned char *)s, n, 0) != n) {
        st_err(err, errlen, path, "%s %zu is not valid UTF-8", what, i);
        return KDCL_EINVAL;
    }
    return KDCL_OK;
}

int kdcl__st_write(const char *path, const struct kdcl__st_tensor *t,
                   size_t n, const char *const *meta_kv, size_t n_meta_pairs,
                   char *err, size_t errlen)
{
    static const char suffix[] = ".tmpXXXXXX";
    const char **names = NULL;
    const char *dup;
    size_t *bytes = NULL;
    size_t total = 0, jlen, hlen, plen, k;
    cJSON *root = NULL;
    char *json = NULL;
    unsigned char *hdr = NULL;
    char *tmp = NULL;
    int fd = -1;
    int created = 0;
    int closed;
    int rc;

    if (path == NULL || (t == NULL && n > 0)
        || (meta_kv == NULL && n_meta_pairs > 0)) {
        st_err(err, errlen, path != NULL ? path : "(null)",
               "invalid argument to kdcl__st_write");
        rc = KDCL_EINVAL;
        goto cleanup;
    }
    if (!st_host_is_little_endian()) {
        st_err(err, errlen, path, "big-endian hosts are not supported");
        rc = KDCL_EUNSUPPORTED;
        goto cleanup;
    }
    bytes = calloc(n > 0 ? n : 1, sizeof *bytes);
    k = n > n_meta_pairs ? n : n_meta_pairs;
    names = calloc(k > 0 ? k : 1, sizeof *names);
    if (bytes == NULL || names == NULL) {
        st_err(err, errlen, path, "out of memory");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }

    /* Validate everything before creating a file. */
    for (size_t i = 0; i < n; i++) {
        rc = st_check_string(t[i].name, "tensor name", i, path, err,
                             errlen);
        if (rc != KDCL_OK)
            goto cleanup;
        if (strcmp(t[i].name, ST_META_KEY) == 0) {
            st_err(err, errlen, path, "tensor %zu: the name '%s' is "
                   "reserved", i, ST_META_KEY);
            rc = KDCL_EINVAL;
            goto cleanup;
        }
        rc = st_check_array(&t[i], path, &bytes[i], err, errlen);
        if (rc != KDCL_OK)
            goto cleanup;
        if (bytes[i] > SIZE_MAX - total) {
            st_err(err, errlen, path, "the tensors' total size overflows");
            rc = KDCL_EINVAL;
            goto cleanup;
        }
        total += bytes[i];
        names[i] = t[i].name;
    }
    dup = st_find_dup(names, n);
    if (dup != NULL) {
        st_err(err, errlen, path, "duplicate tensor name '%s'", dup);
        rc = KDCL_EINVAL;
        goto cleanup;
    }
    for (size_t i = 0; i < n_meta_pairs; i++) {
        rc = st_check_string(meta_kv[2 * i], "metadata key", i, path, err,
                             errlen);
        if (rc == KDCL_OK)
            rc = st_check_string(meta_kv[2 * i + 1], "metadata value", i,
                                 path, err, errlen);
        if (rc != KDCL_OK)
            goto cleanup;
        names[i] = meta_kv[2 * i];
    }
    dup = st_find_dup(names, n_meta_pairs);
    if (dup != NULL) {
        st_err(err, errlen, path, "duplicate metadata key '%s'", dup);
        rc = KDCL_EINVAL;
        goto cleanup;
    }

    /* The header, padded with spaces to a multiple of 8 bytes. */
    if (st_build_header(t, n, bytes, meta_kv, n_meta_pairs, &root) != 0) {
        st_err(err, errlen, path, "out of memory building the header");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    json = cJSON_PrintUnformatted(root);
    if (json == NULL) {
        st_err(err, errlen, path, "out of memory printing the header");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    jlen = strlen(json);
    hlen = (jlen + 7) / 8 * 8;
    hdr = malloc(8 + hlen);
    if (hdr == NULL) {
        st_err(err, errlen, path, "out of memory");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    for (int i = 0; i < 8; i++)
        hdr[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(hdr + 8, json, jlen);
    memset(hdr + 8 + jlen, ' ', hlen - jlen);

    /* The file, atomically. */
    plen = strlen(path);
    tmp = malloc(plen + sizeof suffix);
    if (tmp == NULL) {
        st_err(err, errlen, path, "out of memory");
        rc = KDCL_ENOMEM;
        goto cleanup;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);
    fd = mkstemp(tmp);
    if (fd < 0) {
        st_err(err, errlen, path, "cannot create temporary file: %s",
               strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    created = 1;
    /* mkstemp makes the file 0600; give it the mode of a normal file. */
    if (fchmod(fd, 0644) != 0 || st_write_all(fd, hdr, 8 + hlen) != 0
        || st_write_data(fd, t, n, bytes) != 0 || fsync(fd) != 0) {
        st_err(err, errlen, path, "write error: %s", strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    closed = close(fd);
    fd = -1;
    if (closed != 0) {
        st_err(err, errlen, path, "write error: %s", strerror(errno));
        rc = KDCL_EIO;
        goto cleanup;
    }
    if (rename(tmp, path) != 0) {
        st_err(err, errlen, path, "cannot replace the file: %s",
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
    free(hdr);
    if (json != NULL)
        cJSON_free(json);
    cJSON_Delete(root);
    free(names);
    free(bytes);
    return rc;
}
