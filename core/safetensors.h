/*
 * core/safetensors.h - reading and writing safetensors files (internal).
 *
 * safetensors is how PyTorch and Hugging Face exchange model weights, so
 * kdcl loads and saves weights in it.  A file is an 8-byte little-endian
 * header length N, N bytes of UTF-8 JSON, then the data buffer:
 *
 *     {"__metadata__": {"format": "pt"},
 *      "fc.weight": {"dtype": "F32", "shape": [10, 784],
 *                    "data_offsets": [0, 31360]}, ...}
 *
 * Offsets are relative to the start of the data buffer; the tensors must
 * tile it exactly, without overlaps or holes.  kdcl reads and writes the
 * dtypes it has: F32, F64, I32, I64 and U8, little-endian, C order, at most
 * KDCL_MAX_DIMS dimensions.  Other dtypes (F16, BF16, ...) are recognised
 * and refused with a message saying what conversion is needed.
 *
 * Every function that can fail returns a kdcl_status and, when err is not
 * NULL and errlen is not 0, stores a one-line, NUL-terminated message that
 * names the file and, where there is one, the tensor ("w.safetensors:
 * tensor 'fc.weight': shape [10, 784] needs 31360 bytes, data_offsets
 * [0, 100] hold 100").  Nothing here prints or keeps global state of its
 * own, but cJSON, which parses and prints the header, stores its last
 * parse error in a global variable (which kdcl never reads): concurrent
 * reads from several threads race on it, so serialise them.  A big-endian
 * host is refused with KDCL_EUNSUPPORTED.
 */
#ifndef KDCL_CORE_SAFETENSORS_H
#define KDCL_CORE_SAFETENSORS_H

#include <stddef.h>

#include "kdcl/common.h"
#include "npy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest header the reader accepts, as in the reference reader. */
#define KDCL__ST_MAX_HEADER 100000000u

/* One named tensor: a NUL-terminated UTF-8 name and a host array. */
struct kdcl__st_tensor {
    char *name;
    struct kdcl__array a;
};

/*
 * A whole file.  t holds n tensors in the order the header lists them;
 * meta_keys[i] / meta_values[i] are the n_meta "__metadata__" pairs, also
 * in header order.  Everything is malloc'd and owned by the struct:
 * release it with kdcl__st_free.
 */
struct kdcl__st_file {
    struct kdcl__st_tensor *t;
    size_t n;
    char **meta_keys;
    char **meta_values;
    size_t n_meta;
};

/*
 * Reads the safetensors file at path into *out, which is overwritten, not
 * freed first; on failure it is left zeroed.  Every tensor's data is read
 * into its own buffer (never NULL, even for zero elements).
 *
 * Returns KDCL_OK; KDCL_EINVAL (path or out NULL); KDCL_EIO (cannot open or
 * read); KDCL_EFORMAT (a file shorter than 8 bytes, a header length beyond
 * the file or KDCL__ST_MAX_HEADER, a header that is not UTF-8 JSON or not
 * an object, an entry that is not an object, a missing or mistyped dtype,
 * shape or data_offsets, an unknown dtype, a negative, fractional or huge
 * dimension or offset, more than KDCL_MAX_DIMS dimensions, a shape whose
 * byte count differs from its data_offsets, offsets out of range,
 * overlapping tensors, holes between or after them, a duplicate name,
 * "__metadata__" that is not an object of strings, data cut short);
 * KDCL_EDTYPE (a well-formed file with a dtype kdcl does not handle, such
 * as F16 or BF16: the message names the tensor and its dtype);
 * KDCL_ENOMEM; KDCL_EUNSUPPORTED (big-endian host).  Format errors win over
 * KDCL_EDTYPE: the whole header is checked first.
 */
int kdcl__st_read(const char *path, struct kdcl__st_file *out, char *err,
                  size_t errlen);

/*
 * The array of the tensor called name in f, or NULL when there is none (or
 * f or name is NULL).  The pointer is owned by f and valid until
 * kdcl__st_free(f).  A linear search.
 */
const struct kdcl__array *kdcl__st_find(const struct kdcl__st_file *f,
                                        const char *name);

/*
 * Writes the n tensors t[0..n) to path, in the order given, with
 * n_meta_pairs metadata pairs meta_kv[0], meta_kv[1] (key, value),
 * meta_kv[2], meta_kv[3], ... (meta_kv may be NULL when n_meta_pairs is
 * 0).  The header is compact JSON, "__metadata__" first when there is any,
 * padded with spaces to a multiple of 8 bytes as the reference writer
 * does; tensor data follows back to back.  Given the reference writer's
 * order (alignment, then name), the bytes match its output exactly.
 *
 * The write is atomic: the file is built as "<path>.tmpXXXXXX" in the same
 * directory, flushed to disk and renamed over path, with mode 0644.  On
 * failure no temporary file is left and an existing file at path is
 * untouched.  Returns KDCL_OK; KDCL_EINVAL (NULL path, NULL t with n > 0,
 * NULL meta_kv with n_meta_pairs > 0, a NULL, non-UTF-8 or duplicate
 * tensor name or metadata key, the tensor name "__metadata__", a NULL or
 * non-UTF-8 metadata value, an inconsistent array: bad dtype or ndim,
 * negative dimension, numel not matching the shape, NULL data, a total
 * size that overflows); KDCL_EIO; KDCL_ENOMEM; KDCL_EUNSUPPORTED
 * (big-endian host).
 */
int kdcl__st_write(const char *path, const struct kdcl__st_tensor *t,
                   size_t n, const char *const *meta_kv, size_t n_meta_pairs,
                   char *err, size_t errlen);

/* Frees everything f holds and zeroes *f.  f may be NULL. */
void kdcl__st_free(struct kdcl__st_file *f);

#ifdef __cplusplus
}
#endif

#endif /* KDCL_CORE_SAFETENSORS_H */
