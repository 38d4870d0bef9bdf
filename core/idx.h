/*
 * core/idx.h - reading IDX files, the format of MNIST and Fashion-MNIST
 * (internal).
 *
 * An IDX file is a 4-byte magic (two zero bytes, an element type byte and
 * the number of dimensions), one big-endian u32 per dimension, then the
 * elements in C order, big-endian.  The files are usually distributed
 * gzip-compressed; this module reads "x-idx3-ubyte.gz" directly through
 * zlib, and a plain uncompressed file just as well.
 *
 * Every function that can fail returns a kdcl_status and, when err is not
 * NULL and errlen is not 0, stores a one-line, NUL-terminated message that
 * names the file and what is wrong ("x.gz: truncated data: expected 784
 * bytes, found 100").  Nothing here prints or keeps global state; all
 * functions are safe to call from several threads on different outputs.
 */
#ifndef KDCL_CORE_IDX_H
#define KDCL_CORE_IDX_H

#include <stddef.h>

#include "kdcl/common.h"
#include "npy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest path kdcl__fashion_mnist_find hands back, NUL included. */
#define KDCL__IDX_PATH_MAX 4096

/*
 * Reads the IDX file at path (gzip-compressed or not) into *out, which is
 * overwritten, not freed first; on failure it is left zeroed.  Element
 * types: 0x08 (unsigned byte) becomes KDCL_DTYPE_U8, 0x0C (i32) becomes
 * KDCL_DTYPE_I32, 0x0D (f32) KDCL_DTYPE_F32 and 0x0E (f64) KDCL_DTYPE_F64,
 * all converted to host byte order.  out->data is malloc'd (never NULL on
 * success, even for zero elements) and owned by the caller: release it
 * with kdcl__array_free.
 *
 * Returns KDCL_OK; KDCL_EINVAL (path or out NULL); KDCL_EIO (the file
 * cannot be opened or read); KDCL_EFORMAT (bad magic, an unknown element
 * type, 0 or more than KDCL_MAX_DIMS dimensions, a shape whose byte count
 * overflows, a truncated header or data, bytes after the data, a corrupt
 * gzip stream); KDCL_EDTYPE (the signed 8-bit (0x09) and 16-bit (0x0B)
 * types, which kdcl has no dtype for); KDCL_ENOMEM.  Unlike .npy, the
 * elements are decoded byte by byte, so this works on any host.
 */
int kdcl__idx_read(const char *path, struct kdcl__array *out, char *err,
                   size_t errlen);

/* Indices into the paths kdcl__fashion_mnist_find fills. */
enum kdcl__mnist_file {
    KDCL__MNIST_TRAIN_IMAGES = 0, /* train-images-idx3-ubyte */
    KDCL__MNIST_TRAIN_LABELS = 1, /* train-labels-idx1-ubyte */
    KDCL__MNIST_TEST_IMAGES = 2,  /* t10k-images-idx3-ubyte */
    KDCL__MNIST_TEST_LABELS = 3   /* t10k-labels-idx1-ubyte */
};

/*
 * Finds the four files of (Fashion-)MNIST in the directory dir, in the
 * order of enum kdcl__mnist_file, each either plain or with a ".gz" suffix
 * (the plain file wins when both are there, being faster to read), and
 * writes their paths "dir/name" into paths.  Only regular files (or links
 * to them) count.  Debian's dataset-fashion-mnist package installs them
 * gzip-compressed in /usr/share/datasets/fashion-mnist.  The files are
 * found, not opened: kdcl__idx_read checks them.
 *
 * Returns KDCL_OK; KDCL_EINVAL (dir or paths NULL, or a path longer than
 * KDCL__IDX_PATH_MAX - 1); KDCL_EIO (dir cannot be searched: missing, not
 * a directory, no permission); KDCL_ENOTFOUND with a message that lists
 * every missing file.  On failure paths holds empty strings.
 */
int kdcl__fashion_mnist_find(const char *dir,
                             char paths[4][KDCL__IDX_PATH_MAX], char *err,
                             size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* KDCL_CORE_IDX_H */
