/*
 * core/npy.h - reading and writing NumPy .npy files (internal).
 *
 * kdcl exchanges tensors with Python (teacher logits, datasets, checkpoints)
 * as plain .npy files.  This module reads format versions 1.0, 2.0 and 3.0
 * and writes version 1.0, for the five element types kdcl knows: <f4, <f8,
 * <i4, <i8 and |u1, C order only, at most KDCL_MAX_DIMS dimensions.
 *
 * Every function that can fail returns a kdcl_status and, when err is not
 * NULL and errlen is not 0, stores a one-line, NUL-terminated message that
 * names the file and what is wrong ("x.npy: truncated data: expected 4096
 * bytes, found 100").  Nothing here prints, keeps global state or assumes
 * more than a little-endian host with IEEE 754 floats.
 */
#ifndef KDCL_CORE_NPY_H
#define KDCL_CORE_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "kdcl/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A host array: C-order, densely packed elements of one dtype.  A 0-d
 * array (a scalar) has ndim 0 and numel 1.  After a successful read or
 * convert, data is never NULL (even when numel is 0); release it with
 * kdcl__array_free.  Entries of shape past ndim are 0.
 */
struct kdcl__array {
    int dtype;                     /* enum kdcl_dtype */
    uint32_t ndim;
    int64_t shape[KDCL_MAX_DIMS];
    int64_t numel;
    void *data;                    /* malloc'd, numel * element size bytes */
};

/*
 * Reads the .npy file at path into *out.  *out is overwritten, not freed
 * first; on failure it is left zeroed.  Returns KDCL_OK, KDCL_EINVAL,
 * KDCL_EIO (cannot open or read), KDCL_EFORMAT (not a .npy file, a
 * malformed or unsupported header, truncated data), KDCL_EDTYPE (an element
 * type other than the five), KDCL_ENOMEM or KDCL_EUNSUPPORTED (big-endian
 * host).  Bytes after the array data are ignored.
 */
int kdcl__npy_read(const char *path, struct kdcl__array *out, char *err,
                   size_t errlen);

/* Same as kdcl__npy_read, from len bytes at buf; messages name "<memory>". */
int kdcl__npy_read_mem(const void *buf, size_t len, struct kdcl__array *out,
                       char *err, size_t errlen);

/*
 * Writes *a to path as a version 1.0 .npy file with a 64-byte aligned
 * header, atomically: the data goes to a temporary file "<path>.tmpXXXXXX"
 * in the same directory, which is flushed to disk and renamed over path.
 * On failure no temporary file is left and an existing file at path is
 * untouched.  The new file gets mode 0644.  Returns KDCL_OK, KDCL_EINVAL
 * (an inconsistent array: bad dtype, ndim, negative dim, numel that does
 * not match shape, NULL data), KDCL_EIO, KDCL_ENOMEM or KDCL_EUNSUPPORTED.
 */
int kdcl__npy_write(const char *path, const struct kdcl__array *a, char *err,
                    size_t errlen);

/* Frees a->data and zeroes *a.  a may be NULL. */
void kdcl__array_free(struct kdcl__array *a);

/*
 * Converts src to dtype into *dst (a new buffer; dst may equal src, in
 * which case the old buffer is freed on success).  Allowed: any type to
 * itself (a copy), f32 <-> f64, and between the integer types i32, i64 and
 * u8.  A value that does not fit (an integer out of range, a finite f64
 * beyond the f32 range) fails with KDCL_ERANGE naming the element; float
 * <-> integer conversions are refused with KDCL_EDTYPE.  On failure *dst is
 * zeroed unless dst == src, which is then left as it was.
 */
int kdcl__array_convert(const struct kdcl__array *src, int dtype,
                        struct kdcl__array *dst, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* KDCL_CORE_NPY_H */
