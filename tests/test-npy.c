/*
 * tests/test-npy.c - tests of the .npy reader and writer (core/npy.c):
 * files written by numpy, round trips of every dtype and rank, every
 * rejection the reader makes, dtype conversions, and that a failed write
 * leaves nothing behind.
 *
 * The byte arrays below were produced with numpy 2.4 (np.save, or
 * np.lib.format.write_array for versions 2.0 and 3.0); running the tests
 * needs no Python.
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "npy.h"

/* ---------------------------------------------------------------- */
/* Files written by numpy                                             */
/* ---------------------------------------------------------------- */

/*
 * np.array([[1, -2.5, 3.25], [0, 1e-3, -7]], dtype='<f4'),
 * saved by numpy as version 1.0
 */
static const unsigned char np_f32_2x3[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x32, 0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x80, 0x3f,
    0x00, 0x00, 0x20, 0xc0, 0x00, 0x00, 0x50, 0x40, 0x00, 0x00, 0x00, 0x00,
    0x6f, 0x12, 0x83, 0x3a, 0x00, 0x00, 0xe0, 0xc0,
};

/* np.array(3.141592653589793, dtype='<f8'), saved by numpy as version 1.0 */
static const unsigned char np_f64_scalar[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x38,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x18, 0x2d, 0x44, 0x54,
    0xfb, 0x21, 0x09, 0x40,
};

/* np.array([-1, 0, 2**40], dtype='<i8'), saved by numpy as version 1.0 */
static const unsigned char np_i64_1d[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x69, 0x38,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x33, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
};

/*
 * np.array([[1, -2], [2147483647, -2147483648]], dtype='<i4'), saved by
 * numpy as version 1.0
 */
static const unsigned char np_i32_2x2[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x69, 0x34,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x32, 0x2c, 0x20, 0x32, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x01, 0x00, 0x00, 0x00,
    0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x00, 0x80,
};

/* np.array([0, 1, 128, 255], dtype='u1'), saved by numpy as version 1.0 */
static const unsigned char np_u8_4[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x7c, 0x75, 0x31,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x34, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x01, 0x80, 0xff,
};

/* np.array([1, 2, 3], dtype='<f4'), saved by numpy as version 2.0 */
static const unsigned char np_f32_v2[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x02, 0x00, 0x74, 0x00, 0x00, 0x00,
    0x7b, 0x27, 0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c,
    0x66, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61,
    0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27,
    0x3a, 0x20, 0x28, 0x33, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x80, 0x3f,
    0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,
};

/* np.array([7, -7], dtype='<i4'), saved by numpy as version 3.0 */
static const unsigned char np_i32_v3[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x03, 0x00, 0x74, 0x00, 0x00, 0x00,
    0x7b, 0x27, 0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c,
    0x69, 0x34, 0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61,
    0x6e, 0x5f, 0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61,
    0x6c, 0x73, 0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27,
    0x3a, 0x20, 0x28, 0x32, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x07, 0x00, 0x00, 0x00,
    0xf9, 0xff, 0xff, 0xff,
};

/* np.zeros((0, 3), dtype='<f4'), saved by numpy as version 1.0 */
static const unsigned char np_f32_0x3[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x30, 0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a,
};

/*
 * np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)),
 * saved by numpy as version 1.0
 */
static const unsigned char np_f32_fortran[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3c, 0x66, 0x34,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x54, 0x72, 0x75, 0x65,
    0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20, 0x28,
    0x32, 0x2c, 0x20, 0x33, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x80, 0x40,
    0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0xa0, 0x40,
};

/* np.array([1, 2], dtype='>f4'), saved by numpy as version 1.0 */
static const unsigned char np_f4_be[] = {
    0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00, 0x76, 0x00, 0x7b, 0x27,
    0x64, 0x65, 0x73, 0x63, 0x72, 0x27, 0x3a, 0x20, 0x27, 0x3e, 0x66, 0x34,
    0x27, 0x2c, 0x20, 0x27, 0x66, 0x6f, 0x72, 0x74, 0x72, 0x61, 0x6e, 0x5f,
    0x6f, 0x72, 0x64, 0x65, 0x72, 0x27, 0x3a, 0x20, 0x46, 0x61, 0x6c, 0x73,
    0x65, 0x2c, 0x20, 0x27, 0x73, 0x68, 0x61, 0x70, 0x65, 0x27, 0x3a, 0x20,
    0x28, 0x32, 0x2c, 0x29, 0x2c, 0x20, 0x7d, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
    0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20, 0x0a, 0x3f, 0x80, 0x00, 0x00,
    0x40, 0x00, 0x00, 0x00,
};

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
    strcpy(g_dir, "/tmp/kdcl-test-npy-XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir), "mkdtemp: %s", strerror(errno));
}

/* Removes the scratch directory and what is in it (one level of dirs). */
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

TestSuite(npy, .init = setup, .fini = teardown);

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

/*
 * Builds a .npy image by hand: magic, version major.minor, the header
 * length (u16 for major 1, u32 otherwise), the header text as given (no
 * padding added), then dlen bytes of data.
 */
static unsigned char *make_npy(int major, int minor, const char *header,
                               const void *data, size_t dlen, size_t *len)
{
    size_t hlen = strlen(header);
    size_t lsize = major == 1 ? 2 : 4;
    size_t n = 8 + lsize + hlen + dlen;
    unsigned char *b = malloc(n + 1);

    cr_assert_not_null(b);
    memcpy(b, "\x93NUMPY", 6);
    b[6] = (unsigned char)major;
    b[7] = (unsigned char)minor;
    for (size_t i = 0; i < lsize; i++)
        b[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8 + lsize, header, hlen);
    if (dlen > 0)
        memcpy(b + 8 + lsize + hlen, data, dlen);
    *len = n;
    return b;
}

static const float six_floats[6] = {1, 2, 3, 4, 5, 6};

/* Reads a hand-made v1 image of `header` followed by six floats. */
static int read_header(const char *header, struct kdcl__array *a, char *err,
                       size_t errlen)
{
    size_t len;
    unsigned char *b = make_npy(1, 0, header, six_floats,
                                sizeof six_floats, &len);
    int rc = kdcl__npy_read_mem(b, len, a, err, errlen);

    free(b);
    return rc;
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
/* Reading numpy's files                                              */
/* ---------------------------------------------------------------- */

Test(npy, reads_v1_float32)
{
    struct kdcl__array a;
    char err[256] = "";
    const float *v;

    cr_assert_eq(kdcl__npy_read_mem(np_f32_2x3, sizeof np_f32_2x3, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_F32);
    cr_assert_eq(a.ndim, 2);
    cr_assert_eq(a.shape[0], 2);
    cr_assert_eq(a.shape[1], 3);
    cr_assert_eq(a.numel, 6);
    v = a.data;
    cr_assert_eq(v[0], 1.0f);
    cr_assert_eq(v[1], -2.5f);
    cr_assert_eq(v[2], 3.25f);
    cr_assert_eq(v[3], 0.0f);
    cr_assert_eq(v[4], 1e-3f);
    cr_assert_eq(v[5], -7.0f);
    kdcl__array_free(&a);
}

Test(npy, reads_float64_scalar)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(np_f64_scalar, sizeof np_f64_scalar, &a,
                                    err, sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_F64);
    cr_assert_eq(a.ndim, 0);
    cr_assert_eq(a.numel, 1);
    cr_assert_eq(*(const double *)a.data, 3.141592653589793);
    kdcl__array_free(&a);
}

Test(npy, reads_int64_1d)
{
    struct kdcl__array a;
    char err[256] = "";
    const int64_t *v;

    cr_assert_eq(kdcl__npy_read_mem(np_i64_1d, sizeof np_i64_1d, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_I64);
    cr_assert_eq(a.ndim, 1);
    cr_assert_eq(a.shape[0], 3);
    cr_assert_eq(a.numel, 3);
    v = a.data;
    cr_assert_eq(v[0], -1);
    cr_assert_eq(v[1], 0);
    cr_assert_eq(v[2], INT64_C(1099511627776));
    kdcl__array_free(&a);
}

Test(npy, reads_int32_extremes)
{
    struct kdcl__array a;
    char err[256] = "";
    const int32_t *v;

    cr_assert_eq(kdcl__npy_read_mem(np_i32_2x2, sizeof np_i32_2x2, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_I32);
    cr_assert_eq(a.ndim, 2);
    cr_assert_eq(a.shape[0], 2);
    cr_assert_eq(a.shape[1], 2);
    v = a.data;
    cr_assert_eq(v[0], 1);
    cr_assert_eq(v[1], -2);
    cr_assert_eq(v[2], INT32_MAX);
    cr_assert_eq(v[3], INT32_MIN);
    kdcl__array_free(&a);
}

Test(npy, reads_uint8)
{
    struct kdcl__array a;
    char err[256] = "";
    const uint8_t *v;

    cr_assert_eq(kdcl__npy_read_mem(np_u8_4, sizeof np_u8_4, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_U8);
    cr_assert_eq(a.ndim, 1);
    cr_assert_eq(a.numel, 4);
    v = a.data;
    cr_assert_eq(v[0], 0);
    cr_assert_eq(v[1], 1);
    cr_assert_eq(v[2], 128);
    cr_assert_eq(v[3], 255);
    kdcl__array_free(&a);
}

Test(npy, reads_v2_header)
{
    struct kdcl__array a;
    char err[256] = "";
    const float *v;

    cr_assert_eq(np_f32_v2[6], 2);
    cr_assert_eq(kdcl__npy_read_mem(np_f32_v2, sizeof np_f32_v2, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_F32);
    cr_assert_eq(a.ndim, 1);
    cr_assert_eq(a.shape[0], 3);
    v = a.data;
    cr_assert_eq(v[0], 1.0f);
    cr_assert_eq(v[1], 2.0f);
    cr_assert_eq(v[2], 3.0f);
    kdcl__array_free(&a);
}

Test(npy, reads_v3_header)
{
    struct kdcl__array a;
    char err[256] = "";
    const int32_t *v;

    cr_assert_eq(np_i32_v3[6], 3);
    cr_assert_eq(kdcl__npy_read_mem(np_i32_v3, sizeof np_i32_v3, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_I32);
    cr_assert_eq(a.ndim, 1);
    cr_assert_eq(a.shape[0], 2);
    v = a.data;
    cr_assert_eq(v[0], 7);
    cr_assert_eq(v[1], -7);
    kdcl__array_free(&a);
}

Test(npy, reads_empty_array)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(np_f32_0x3, sizeof np_f32_0x3, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.ndim, 2);
    cr_assert_eq(a.shape[0], 0);
    cr_assert_eq(a.shape[1], 3);
    cr_assert_eq(a.numel, 0);
    cr_assert_not_null(a.data);
    kdcl__array_free(&a);
}

Test(npy, reads_numpy_file_from_disk)
{
    struct kdcl__array a;
    char path[256];
    char err[256] = "";

    tpath(path, sizeof path, "numpy.npy");
    write_file(path, np_i64_1d, sizeof np_i64_1d);
    cr_assert_eq(kdcl__npy_read(path, &a, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_I64);
    cr_assert_eq(a.numel, 3);
    cr_assert_eq(((const int64_t *)a.data)[2], INT64_C(1099511627776));
    kdcl__array_free(&a);
}

Test(npy, allows_trailing_garbage)
{
    struct kdcl__array a;
    unsigned char buf[sizeof np_u8_4 + 5];
    char err[256] = "";

    memcpy(buf, np_u8_4, sizeof np_u8_4);
    memcpy(buf + sizeof np_u8_4, "junk!", 5);
    cr_assert_eq(kdcl__npy_read_mem(buf, sizeof buf, &a, err, sizeof err),
                 KDCL_OK, "%s", err);
    cr_assert_eq(a.numel, 4);
    cr_assert_eq(((const uint8_t *)a.data)[3], 255);
    kdcl__array_free(&a);
}

/* ---------------------------------------------------------------- */
/* Header syntax                                                      */
/* ---------------------------------------------------------------- */

Test(npy, accepts_header_variants)
{
    static const char *const headers[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
        "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 3)}",
        "{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}",
        " \t{ 'descr' :'<f4' ,\n'fortran_order'\t:\tFalse ,'shape':( 2 ,"
        " 3 , ) , }   \n",
        "{'descr':'<f4','fortran_order':False,'shape':(2,3)}",
        "{'descr': '=f4', 'fortran_order': False, 'shape': (2, 3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3,), }",
    };

    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        struct kdcl__array a;
        char err[256] = "";
        int rc = read_header(headers[i], &a, err, sizeof err);

        cr_assert_eq(rc, KDCL_OK, "header %zu: %s", i, err);
        cr_assert_eq(a.dtype, KDCL_DTYPE_F32, "header %zu", i);
        cr_assert_eq(a.ndim, 2, "header %zu", i);
        cr_assert_eq(a.shape[0], 2, "header %zu", i);
        cr_assert_eq(a.shape[1], 3, "header %zu", i);
        cr_assert_eq(((const float *)a.data)[5], 6.0f, "header %zu", i);
        kdcl__array_free(&a);
    }
}

Test(npy, accepts_any_byte_order_mark_on_uint8)
{
    static const char *const headers[] = {
        "{'descr': '|u1', 'fortran_order': False, 'shape': (24,), }",
        "{'descr': '<u1', 'fortran_order': False, 'shape': (24,), }",
        "{'descr': '=u1', 'fortran_order': False, 'shape': (24,), }",
    };

    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        struct kdcl__array a;
        char err[256] = "";

        cr_assert_eq(read_header(headers[i], &a, err, sizeof err), KDCL_OK,
                     "header %zu: %s", i, err);
        cr_assert_eq(a.dtype, KDCL_DTYPE_U8, "header %zu", i);
        cr_assert_eq(a.numel, 24, "header %zu", i);
        kdcl__array_free(&a);
    }
}

Test(npy, accepts_eight_dims)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(read_header("{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (1, 2, 1, 3, 1, 1, 1, 1), }",
                             &a, err, sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.ndim, 8);
    cr_assert_eq(a.numel, 6);
    kdcl__array_free(&a);
}

Test(npy, rejects_malformed_dict)
{
    static const char *const headers[] = {
        "",
        "   \n",
        "'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)",
        "x{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x",
        "{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{descr: '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr\": '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr: <f4, fortran_order: False, shape: (2, 3)}",
        "{'descr': b'<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': 'a\\'b', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3)}",
        "{,'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4',, 'fortran_order': False, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': false, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': Falsey, 'shape': (2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (6)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3]}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': 6}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3.0)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3e0)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2,, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (, )}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (,)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (02, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (+2, 3)}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}",
        "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
        "'shape': (2, 3)}",
        "{'descr': 5, 'fortran_order': False, 'shape': (2, 3)}",
    };

    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        struct kdcl__array a;
        char err[256] = "";
        int rc = read_header(headers[i], &a, err, sizeof err);

        cr_assert_eq(rc, KDCL_EFORMAT, "header %zu [%s]: rc %d, %s", i,
                     headers[i], rc, err);
        cr_assert_not_null(strstr(err, "<memory>: malformed header"),
                           "header %zu: %s", i, err);
        assert_zeroed(&a);
    }
}

Test(npy, rejects_missing_keys)
{
    static const struct {
        const char *header;
        const char *key;
    } cases[] = {
        {"{'fortran_order': False, 'shape': (2, 3), }", "'descr'"},
        {"{'descr': '<f4', 'shape': (2, 3), }", "'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': False, }", "'shape'"},
        {"{}", "'descr'"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct kdcl__array a;
        char err[256] = "";

        cr_assert_eq(read_header(cases[i].header, &a, err, sizeof err),
                     KDCL_EFORMAT, "case %zu", i);
        cr_assert_not_null(strstr(err, "missing key"), "case %zu: %s", i,
                           err);
        cr_assert_not_null(strstr(err, cases[i].key), "case %zu: %s", i,
                           err);
    }
}

Test(npy, rejects_too_many_dims)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(read_header("{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (1, 1, 1, 1, 1, 1, 1, 6, 1), }",
                             &a, err, sizeof err), KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "more than 8 dimensions"), "%s", err);
    assert_zeroed(&a);
}

Test(npy, rejects_negative_dim)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(read_header("{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (2, -3), }", &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "negative dimension -3"), "%s", err);
}

Test(npy, rejects_element_count_overflow)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(read_header("{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (4294967296, 4294967296, 4), }",
                             &a, err, sizeof err), KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "too many elements"), "%s", err);
}

Test(npy, rejects_byte_count_overflow)
{
    struct kdcl__array a;
    char err[256] = "";

    /* 2^61 elements fit in int64_t; 2^64 bytes do not. */
    cr_assert_eq(read_header("{'descr': '<f8', 'fortran_order': False, "
                             "'shape': (1152921504606846976, 2), }",
                             &a, err, sizeof err), KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "too many elements"), "%s", err);
}

Test(npy, rejects_huge_shape_as_truncated_without_allocating)
{
    static const char header[] = "{'descr': '<f8', 'fortran_order': False, "
                                 "'shape': (1099511627776,), }";
    struct kdcl__array a;
    char path[256];
    char want[512];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    /* 8 TiB announced, 24 bytes present: truncated, not out of memory. */
    b = make_npy(1, 0, header, six_floats, sizeof six_floats, &len);
    cr_assert_eq(kdcl__npy_read_mem(b, len, &a, err, sizeof err),
                 KDCL_EFORMAT, "%s", err);
    cr_assert_str_eq(err, "<memory>: truncated data: expected 8796093022208 "
                          "bytes, found 24");
    tpath(path, sizeof path, "huge.npy");
    write_file(path, b, len);
    cr_assert_eq(kdcl__npy_read(path, &a, err, sizeof err), KDCL_EFORMAT,
                 "%s", err);
    snprintf(want, sizeof want,
             "%s: truncated data: expected 8796093022208 bytes, found 24",
             path);
    cr_assert_str_eq(err, want);
    free(b);
}

Test(npy, rejects_dimension_beyond_int64)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(read_header("{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (99999999999999999999,), }",
                             &a, err, sizeof err), KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "too large"), "%s", err);
}

/* ---------------------------------------------------------------- */
/* Other rejections                                                   */
/* ---------------------------------------------------------------- */

Test(npy, rejects_bad_magic)
{
    static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n',
                                        0x1a, '\n', 0, 0, 0, 13};
    unsigned char bad[sizeof np_u8_4];
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(png, sizeof png, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_str_eq(err, "<memory>: not a .npy file (bad magic)");
    memcpy(bad, np_u8_4, sizeof bad);
    bad[5] = 'Z'; /* "\x93NUMPZ" */
    err[0] = '\0';
    cr_assert_eq(kdcl__npy_read_mem(bad, sizeof bad, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "bad magic"), "%s", err);
    assert_zeroed(&a);
}

Test(npy, rejects_empty_and_short_input)
{
    struct kdcl__array a;
    char err[256] = "";
    char path[256];

    cr_assert_eq(kdcl__npy_read_mem(np_u8_4, 0, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "truncated header"), "%s", err);
    cr_assert_eq(kdcl__npy_read_mem(np_u8_4, 7, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "truncated header"), "%s", err);
    cr_assert_eq(kdcl__npy_read_mem(np_u8_4, 9, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "truncated header"), "%s", err);
    tpath(path, sizeof path, "empty.npy");
    write_file(path, "", 0);
    cr_assert_eq(kdcl__npy_read(path, &a, err, sizeof err), KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "truncated header"), "%s", err);
}

Test(npy, rejects_unsupported_versions)
{
    static const int versions[][2] = {{9, 0}, {0, 0}, {4, 0}, {1, 1},
                                      {2, 5}};

    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        char want[64];
        unsigned char buf[sizeof np_u8_4];
        struct kdcl__array a;
        char err[256] = "";

        memcpy(buf, np_u8_4, sizeof buf);
        buf[6] = (unsigned char)versions[i][0];
        buf[7] = (unsigned char)versions[i][1];
        cr_assert_eq(kdcl__npy_read_mem(buf, sizeof buf, &a, err, sizeof err),
                     KDCL_EFORMAT, "version %d.%d", versions[i][0],
                     versions[i][1]);
        snprintf(want, sizeof want, "unsupported .npy format version %d.%d",
                 versions[i][0], versions[i][1]);
        cr_assert_not_null(strstr(err, want), "%s", err);
    }
}

Test(npy, rejects_header_too_long)
{
    /* A v2.0 preamble announcing a 2 MiB header, and nothing else. */
    static const unsigned char buf[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0,
                                        0x00, 0x00, 0x20, 0x00};
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(buf, sizeof buf, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_not_null(strstr(err, "header too long: 2097152 bytes"), "%s",
                       err);
}

Test(npy, rejects_truncated_header)
{
    struct kdcl__array a;
    char err[256] = "";

    /* np_f32_2x3 has a 118-byte header; give it 50 of them. */
    cr_assert_eq(kdcl__npy_read_mem(np_f32_2x3, 60, &a, err, sizeof err),
                 KDCL_EFORMAT);
    cr_assert_str_eq(err, "<memory>: truncated header: expected 128 bytes, "
                          "found 60");
}

Test(npy, rejects_fortran_order)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(np_f32_fortran, sizeof np_f32_fortran,
                                    &a, err, sizeof err), KDCL_EFORMAT);
    cr_assert_str_eq(err, "<memory>: Fortran-order arrays are not supported; "
                          "save with np.ascontiguousarray");
    assert_zeroed(&a);
}

Test(npy, rejects_big_endian)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(np_f4_be, sizeof np_f4_be, &a, err,
                                    sizeof err), KDCL_EDTYPE);
    cr_assert_not_null(strstr(err, "big-endian dtype '>f4'"), "%s", err);
    cr_assert_eq(read_header("{'descr': '>i8', 'fortran_order': False, "
                             "'shape': (3,), }", &a, err, sizeof err),
                 KDCL_EDTYPE);
    cr_assert_not_null(strstr(err, "big-endian dtype '>i8'"), "%s", err);
}

Test(npy, rejects_unsupported_dtype)
{
    static const char *const descrs[] = {
        "<f2", "|i1", "<u4", "<u8", "<i2", "<c8", "|b1", "f4", "|f4",
        "<U5", "|O", "|V24", "",
    };

    for (size_t i = 0; i < sizeof descrs / sizeof descrs[0]; i++) {
        char header[128];
        char want[64];
        struct kdcl__array a;
        char err[256] = "";

        snprintf(header, sizeof header,
                 "{'descr': '%s', 'fortran_order': False, 'shape': (6,), }",
                 descrs[i]);
        cr_assert_eq(read_header(header, &a, err, sizeof err), KDCL_EDTYPE,
                     "descr '%s': %s", descrs[i], err);
        snprintf(want, sizeof want, "unsupported dtype '%s'", descrs[i]);
        cr_assert_not_null(strstr(err, want), "%s", err);
        assert_zeroed(&a);
    }
}

Test(npy, rejects_structured_dtype)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(read_header("{'descr': [('x', '<f4'), ('y', '<f4')], "
                             "'fortran_order': False, 'shape': (3,), }",
                             &a, err, sizeof err), KDCL_EDTYPE);
    cr_assert_not_null(strstr(err, "structured"), "%s", err);
}

Test(npy, rejects_truncated_data)
{
    struct kdcl__array a;
    char err[256] = "";

    /* 24 bytes of data expected, 10 present. */
    cr_assert_eq(kdcl__npy_read_mem(np_f32_2x3, sizeof np_f32_2x3 - 14, &a,
                                    err, sizeof err), KDCL_EFORMAT);
    cr_assert_str_eq(err, "<memory>: truncated data: expected 24 bytes, "
                          "found 10");
    assert_zeroed(&a);
}

Test(npy, rejects_truncated_data_in_file_naming_it)
{
    struct kdcl__array a;
    char path[256];
    char want[512];
    char err[512] = "";

    tpath(path, sizeof path, "short.npy");
    write_file(path, np_f32_2x3, sizeof np_f32_2x3 - 14);
    cr_assert_eq(kdcl__npy_read(path, &a, err, sizeof err), KDCL_EFORMAT);
    snprintf(want, sizeof want,
             "%s: truncated data: expected 24 bytes, found 10", path);
    cr_assert_str_eq(err, want);
    cr_assert_null(strchr(err, '\n'));
    assert_zeroed(&a);
}

Test(npy, rejects_missing_file)
{
    struct kdcl__array a;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "nope.npy");
    cr_assert_eq(kdcl__npy_read(path, &a, err, sizeof err), KDCL_EIO);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
    cr_assert_not_null(strstr(err, "No such file"), "%s", err);
}

Test(npy, error_buffer_is_optional_and_always_terminated)
{
    struct kdcl__array a;
    char err[8];

    cr_assert_eq(kdcl__npy_read_mem(np_f4_be, sizeof np_f4_be, &a, NULL, 0),
                 KDCL_EDTYPE);
    memset(err, 'x', sizeof err);
    cr_assert_eq(kdcl__npy_read_mem(np_f4_be, sizeof np_f4_be, &a, err,
                                    sizeof err), KDCL_EDTYPE);
    cr_assert_str_eq(err, "<memory");
    memset(err, 'x', sizeof err);
    cr_assert_eq(kdcl__npy_read_mem(np_f4_be, sizeof np_f4_be, &a, err, 0),
                 KDCL_EDTYPE);
    cr_assert_eq(err[0], 'x');
}

Test(npy, rejects_null_arguments)
{
    struct kdcl__array a;

    cr_assert_eq(kdcl__npy_read(NULL, &a, NULL, 0), KDCL_EINVAL);
    cr_assert_eq(kdcl__npy_read_mem(np_u8_4, sizeof np_u8_4, NULL, NULL, 0),
                 KDCL_EINVAL);
    cr_assert_eq(kdcl__npy_read_mem(NULL, 10, &a, NULL, 0), KDCL_EINVAL);
    cr_assert_eq(kdcl__npy_write(NULL, &a, NULL, 0), KDCL_EINVAL);
}

/* ---------------------------------------------------------------- */
/* Writing and round trips                                            */
/* ---------------------------------------------------------------- */

/* Fills an array of the given dtype and shape with distinctive values. */
static void make_array(struct kdcl__array *a, int dtype, uint32_t ndim,
                       const int64_t *shape)
{
    static const size_t sizes[] = {4, 8, 4, 8, 1};
    unsigned char *p;
    size_t bytes;

    memset(a, 0, sizeof *a);
    a->dtype = dtype;
    a->ndim = ndim;
    a->numel = 1;
    for (uint32_t i = 0; i < ndim; i++) {
        a->shape[i] = shape[i];
        a->numel *= shape[i];
    }
    bytes = (size_t)a->numel * sizes[dtype];
    a->data = malloc(bytes > 0 ? bytes : 1);
    cr_assert_not_null(a->data);
    p = a->data;
    for (int64_t i = 0; i < a->numel; i++) {
        switch (dtype) {
        case KDCL_DTYPE_F32: ((float *)p)[i] = 0.5f * (float)i - 3.0f; break;
        case KDCL_DTYPE_F64: ((double *)p)[i] = 1e300 / (double)(i + 1); break;
        case KDCL_DTYPE_I32: ((int32_t *)p)[i] = INT32_MIN + (int32_t)i; break;
        case KDCL_DTYPE_I64: ((int64_t *)p)[i] = INT64_MAX - i; break;
        default: ((uint8_t *)p)[i] = (uint8_t)(255 - i); break;
        }
    }
}

/* Writes a, reads it back and checks that nothing changed. */
static void round_trip(const struct kdcl__array *a, const char *leaf)
{
    static const size_t sizes[] = {4, 8, 4, 8, 1};
    struct kdcl__array b;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, leaf);
    cr_assert_eq(kdcl__npy_write(path, a, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(kdcl__npy_read(path, &b, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(b.dtype, a->dtype, "%s", leaf);
    cr_assert_eq(b.ndim, a->ndim, "%s", leaf);
    cr_assert_eq(b.numel, a->numel, "%s", leaf);
    for (uint32_t i = 0; i < KDCL_MAX_DIMS; i++)
        cr_assert_eq(b.shape[i], i < a->ndim ? a->shape[i] : 0, "%s dim %u",
                     leaf, (unsigned)i);
    cr_assert_eq(memcmp(b.data, a->data, (size_t)a->numel * sizes[a->dtype]),
                 0, "%s: data differs", leaf);
    kdcl__array_free(&b);
}

Test(npy, round_trips_every_dtype)
{
    static const int dtypes[] = {KDCL_DTYPE_F32, KDCL_DTYPE_F64,
                                 KDCL_DTYPE_I32, KDCL_DTYPE_I64,
                                 KDCL_DTYPE_U8};
    static const int64_t shape[] = {2, 3};

    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        struct kdcl__array a;
        char leaf[32];

        make_array(&a, dtypes[i], 2, shape);
        snprintf(leaf, sizeof leaf, "dtype%d.npy", dtypes[i]);
        round_trip(&a, leaf);
        kdcl__array_free(&a);
    }
}

Test(npy, round_trips_scalar)
{
    struct kdcl__array a;

    make_array(&a, KDCL_DTYPE_F64, 0, NULL);
    cr_assert_eq(a.numel, 1);
    round_trip(&a, "scalar.npy");
    kdcl__array_free(&a);
}

Test(npy, round_trips_1d)
{
    static const int64_t shape[] = {5};
    struct kdcl__array a;

    make_array(&a, KDCL_DTYPE_I64, 1, shape);
    round_trip(&a, "vec.npy");
    kdcl__array_free(&a);
}

Test(npy, round_trips_4d)
{
    static const int64_t shape[] = {2, 3, 4, 5};
    struct kdcl__array a;

    make_array(&a, KDCL_DTYPE_F32, 4, shape);
    round_trip(&a, "nchw.npy");
    kdcl__array_free(&a);
}

Test(npy, round_trips_empty)
{
    static const int64_t shape[] = {0, 3};
    struct kdcl__array a;

    make_array(&a, KDCL_DTYPE_I32, 2, shape);
    round_trip(&a, "empty.npy");
    kdcl__array_free(&a);
}

/* Checks the header of a written file byte by byte. */
static void check_written_header(const struct kdcl__array *a,
                                 const char *dict)
{
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len, hlen, dlen = strlen(dict);

    tpath(path, sizeof path, "hdr.npy");
    cr_assert_eq(kdcl__npy_write(path, a, err, sizeof err), KDCL_OK, "%s",
                 err);
    b = slurp(path, &len);
    cr_assert_geq(len, 10);
    cr_assert_eq(memcmp(b, "\x93NUMPY\x01\x00", 8), 0);
    hlen = (size_t)b[8] | (size_t)b[9] << 8;
    cr_assert_eq((10 + hlen) % 64, 0, "header ends at %zu", 10 + hlen);
    cr_assert_geq(hlen, dlen + 1);
    cr_assert_eq(memcmp(b + 10, dict, dlen), 0, "header: %.*s", (int)hlen,
                 (const char *)b + 10);
    for (size_t i = 10 + dlen; i < 10 + hlen - 1; i++)
        cr_assert_eq(b[i], ' ', "byte %zu", i);
    cr_assert_eq(b[10 + hlen - 1], '\n');
    cr_assert_eq(len, 10 + hlen + (size_t)a->numel * (a->dtype == 1 ? 8 : 4));
    free(b);
}

Test(npy, writes_numpy_header_64_byte_aligned)
{
    static const int64_t s2[] = {3, 4};
    static const int64_t s1[] = {5};
    static const int64_t s8[] = {1, 1, 1, 1, 1, 1, 1, 1};
    struct kdcl__array a;

    make_array(&a, KDCL_DTYPE_F32, 2, s2);
    check_written_header(&a, "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (3, 4), }");
    kdcl__array_free(&a);
    make_array(&a, KDCL_DTYPE_I32, 1, s1);
    check_written_header(&a, "{'descr': '<i4', 'fortran_order': False, "
                             "'shape': (5,), }");
    kdcl__array_free(&a);
    make_array(&a, KDCL_DTYPE_F64, 0, NULL);
    check_written_header(&a, "{'descr': '<f8', 'fortran_order': False, "
                             "'shape': (), }");
    kdcl__array_free(&a);
    make_array(&a, KDCL_DTYPE_F32, 8, s8);
    check_written_header(&a, "{'descr': '<f4', 'fortran_order': False, "
                             "'shape': (1, 1, 1, 1, 1, 1, 1, 1), }");
    kdcl__array_free(&a);
}

Test(npy, writes_uint8_descr_and_mode_0644)
{
    static const int64_t shape[] = {3};
    struct kdcl__array a;
    struct stat st;
    char path[256];
    char err[512] = "";
    unsigned char *b;
    size_t len;

    make_array(&a, KDCL_DTYPE_U8, 1, shape);
    tpath(path, sizeof path, "u8.npy");
    cr_assert_eq(kdcl__npy_write(path, &a, err, sizeof err), KDCL_OK, "%s",
                 err);
    b = slurp(path, &len);
    cr_assert_eq(len, 128 + 3);
    cr_assert_eq(memcmp(b + 10, "{'descr': '|u1',", 16), 0);
    cr_assert_eq(memcmp(b + 128, "\xff\xfe\xfd", 3), 0);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0644, "mode %o",
                 (unsigned)(st.st_mode & 0777));
    free(b);
    kdcl__array_free(&a);
}

Test(npy, write_replaces_existing_file)
{
    static const int64_t shape[] = {4};
    struct kdcl__array a, b;
    char path[256];
    char names[512];
    char err[512] = "";

    tpath(path, sizeof path, "out.npy");
    write_file(path, "old contents", 12);
    make_array(&a, KDCL_DTYPE_I32, 1, shape);
    cr_assert_eq(kdcl__npy_write(path, &a, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(kdcl__npy_read(path, &b, err, sizeof err), KDCL_OK, "%s",
                 err);
    cr_assert_eq(b.numel, 4);
    cr_assert_eq(dir_entries(names, sizeof names), 1, "%s", names);
    kdcl__array_free(&a);
    kdcl__array_free(&b);
}

Test(npy, failed_rename_leaves_no_temp_file)
{
    static const int64_t shape[] = {4};
    struct kdcl__array a;
    struct stat st;
    char path[256];
    char names[512];
    char err[512] = "";

    /* A directory in the way makes the final rename() fail. */
    tpath(path, sizeof path, "out.npy");
    cr_assert_eq(mkdir(path, 0755), 0);
    make_array(&a, KDCL_DTYPE_F32, 1, shape);
    cr_assert_eq(kdcl__npy_write(path, &a, err, sizeof err), KDCL_EIO);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
    cr_assert_eq(dir_entries(names, sizeof names), 1, "left: %s", names);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    kdcl__array_free(&a);
}

Test(npy, failed_write_keeps_old_file_and_no_temp_file)
{
    static const int64_t shape[] = {64, 64};
    struct kdcl__array a;
    struct rlimit old, lim;
    char path[256];
    char names[512];
    char err[512] = "";
    unsigned char *b;
    size_t len;
    int rc;

    tpath(path, sizeof path, "out.npy");
    write_file(path, "old contents", 12);
    make_array(&a, KDCL_DTYPE_F64, 2, shape);
    /* Files may grow to 1000 bytes only: the 32 KiB of data cannot fit. */
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    rc = kdcl__npy_write(path, &a, err, sizeof err);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    cr_assert_eq(rc, KDCL_EIO, "%s", err);
    cr_assert_not_null(strstr(err, "write error"), "%s", err);
    cr_assert_eq(dir_entries(names, sizeof names), 1, "left: %s", names);
    b = slurp(path, &len);
    cr_assert_eq(len, 12);
    cr_assert_eq(memcmp(b, "old contents", 12), 0);
    free(b);
    kdcl__array_free(&a);
}

Test(npy, write_into_missing_directory_fails)
{
    static const int64_t shape[] = {4};
    struct kdcl__array a;
    char path[256];
    char err[512] = "";

    tpath(path, sizeof path, "no/such/dir/out.npy");
    make_array(&a, KDCL_DTYPE_F32, 1, shape);
    cr_assert_eq(kdcl__npy_write(path, &a, err, sizeof err), KDCL_EIO);
    cr_assert_eq(strncmp(err, path, strlen(path)), 0, "%s", err);
    cr_assert_not_null(strstr(err, "temporary file"), "%s", err);
    kdcl__array_free(&a);
}

Test(npy, write_rejects_inconsistent_arrays)
{
    static const int64_t shape[] = {2, 3};
    struct kdcl__array good, bad;
    char path[256];
    char names[512];
    char err[512];

    tpath(path, sizeof path, "bad.npy");
    make_array(&good, KDCL_DTYPE_F32, 2, shape);
    for (int i = 0; i < 6; i++) {
        bad = good;
        switch (i) {
        case 0: bad.dtype = 5; break;
        case 1: bad.dtype = -1; break;
        case 2: bad.ndim = KDCL_MAX_DIMS + 1; break;
        case 3: bad.shape[1] = -3; bad.numel = -6; break;
        case 4: bad.numel = 7; break;
        default: bad.data = NULL; break;
        }
        err[0] = '\0';
        cr_assert_eq(kdcl__npy_write(path, &bad, err, sizeof err),
                     KDCL_EINVAL, "case %d", i);
        cr_assert_eq(strncmp(err, path, strlen(path)), 0, "case %d: %s", i,
                     err);
        cr_assert_eq(dir_entries(names, sizeof names), 0, "case %d: %s", i,
                     names);
    }
    kdcl__array_free(&good);
}

/* ---------------------------------------------------------------- */
/* Conversions                                                        */
/* ---------------------------------------------------------------- */

/* A 1-d array over caller-owned data (never freed). */
static struct kdcl__array view(int dtype, void *data, int64_t n)
{
    struct kdcl__array a;

    memset(&a, 0, sizeof a);
    a.dtype = dtype;
    a.ndim = 1;
    a.shape[0] = n;
    a.numel = n;
    a.data = data;
    return a;
}

Test(npy, converts_f64_to_f32)
{
    double v[] = {1.5, -0.1, 3e38, INFINITY, NAN};
    struct kdcl__array src = view(KDCL_DTYPE_F64, v, 5);
    struct kdcl__array dst;
    char err[256] = "";
    const float *f;

    cr_assert_eq(kdcl__array_convert(&src, KDCL_DTYPE_F32, &dst, err,
                                     sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(dst.dtype, KDCL_DTYPE_F32);
    cr_assert_eq(dst.ndim, 1);
    cr_assert_eq(dst.shape[0], 5);
    cr_assert_eq(dst.numel, 5);
    f = dst.data;
    cr_assert_eq(f[0], 1.5f);
    cr_assert_eq(f[1], -0.1f);
    cr_assert_eq(f[2], 3e38f);
    cr_assert(isinf(f[3]) && f[3] > 0);
    cr_assert(isnan(f[4]));
    kdcl__array_free(&dst);
}

Test(npy, converts_f32_to_f64)
{
    float v[] = {0.1f, -2.0f};
    struct kdcl__array src = view(KDCL_DTYPE_F32, v, 2);
    struct kdcl__array dst;

    cr_assert_eq(kdcl__array_convert(&src, KDCL_DTYPE_F64, &dst, NULL, 0),
                 KDCL_OK);
    cr_assert_eq(dst.dtype, KDCL_DTYPE_F64);
    cr_assert_eq(((const double *)dst.data)[0], (double)0.1f);
    cr_assert_eq(((const double *)dst.data)[1], -2.0);
    kdcl__array_free(&dst);
}

Test(npy, rejects_f64_beyond_float32_range)
{
    double v[] = {1.0, -1e300};
    struct kdcl__array src = view(KDCL_DTYPE_F64, v, 2);
    struct kdcl__array dst;
    char err[256] = "";

    cr_assert_eq(kdcl__array_convert(&src, KDCL_DTYPE_F32, &dst, err,
                                     sizeof err), KDCL_ERANGE);
    cr_assert_not_null(strstr(err, "element 1"), "%s", err);
    assert_zeroed(&dst);
}

Test(npy, converts_between_integer_types)
{
    int32_t i32[] = {INT32_MIN, -1, INT32_MAX};
    uint8_t u8[] = {0, 200, 255};
    struct kdcl__array a = view(KDCL_DTYPE_I32, i32, 3);
    struct kdcl__array b = view(KDCL_DTYPE_U8, u8, 3);
    struct kdcl__array dst;
    const int64_t *w;
    const int32_t *n;

    cr_assert_eq(kdcl__array_convert(&a, KDCL_DTYPE_I64, &dst, NULL, 0),
                 KDCL_OK);
    w = dst.data;
    cr_assert_eq(w[0], INT32_MIN);
    cr_assert_eq(w[1], -1);
    cr_assert_eq(w[2], INT32_MAX);
    kdcl__array_free(&dst);
    cr_assert_eq(kdcl__array_convert(&b, KDCL_DTYPE_I32, &dst, NULL, 0),
                 KDCL_OK);
    n = dst.data;
    cr_assert_eq(n[0], 0);
    cr_assert_eq(n[1], 200);
    cr_assert_eq(n[2], 255);
    kdcl__array_free(&dst);
}

Test(npy, converts_i64_to_i32_within_range)
{
    int64_t v[] = {INT32_MIN, -5, 0, INT32_MAX};
    struct kdcl__array src = view(KDCL_DTYPE_I64, v, 4);
    struct kdcl__array dst;
    char err[256] = "";
    const int32_t *n;

    cr_assert_eq(kdcl__array_convert(&src, KDCL_DTYPE_I32, &dst, err,
                                     sizeof err), KDCL_OK, "%s", err);
    n = dst.data;
    cr_assert_eq(n[0], INT32_MIN);
    cr_assert_eq(n[1], -5);
    cr_assert_eq(n[2], 0);
    cr_assert_eq(n[3], INT32_MAX);
    kdcl__array_free(&dst);
}

Test(npy, rejects_i64_out_of_int32_range)
{
    int64_t hi[] = {1, 2, (int64_t)INT32_MAX + 1};
    int64_t lo[] = {(int64_t)INT32_MIN - 1};
    struct kdcl__array src = view(KDCL_DTYPE_I64, hi, 3);
    struct kdcl__array dst;
    char err[256] = "";

    cr_assert_eq(kdcl__array_convert(&src, KDCL_DTYPE_I32, &dst, err,
                                     sizeof err), KDCL_ERANGE);
    cr_assert_str_eq(err, "convert: element 2 (2147483648) of the int64 "
                          "array does not fit in int32");
    assert_zeroed(&dst);
    src = view(KDCL_DTYPE_I64, lo, 1);
    cr_assert_eq(kdcl__array_convert(&src, KDCL_DTYPE_I32, &dst, err,
                                     sizeof err), KDCL_ERANGE);
    cr_assert_not_null(strstr(err, "-2147483649"), "%s", err);
}

Test(npy, rejects_integers_out_of_uint8_range)
{
    int32_t neg[] = {5, -1};
    int64_t big[] = {256};
    struct kdcl__array a = view(KDCL_DTYPE_I32, neg, 2);
    struct kdcl__array b = view(KDCL_DTYPE_I64, big, 1);
    struct kdcl__array dst;

    cr_assert_eq(kdcl__array_convert(&a, KDCL_DTYPE_U8, &dst, NULL, 0),
                 KDCL_ERANGE);
    cr_assert_eq(kdcl__array_convert(&b, KDCL_DTYPE_U8, &dst, NULL, 0),
                 KDCL_ERANGE);
    b.numel = 0;
    b.shape[0] = 0;
    cr_assert_eq(kdcl__array_convert(&b, KDCL_DTYPE_U8, &dst, NULL, 0),
                 KDCL_OK);
    cr_assert_eq(dst.numel, 0);
    kdcl__array_free(&dst);
}

Test(npy, refuses_float_integer_conversions)
{
    float f[] = {1.0f};
    int32_t i[] = {1};
    uint8_t u[] = {1};
    struct kdcl__array fa = view(KDCL_DTYPE_F32, f, 1);
    struct kdcl__array ia = view(KDCL_DTYPE_I32, i, 1);
    struct kdcl__array ua = view(KDCL_DTYPE_U8, u, 1);
    struct kdcl__array dst;
    char err[256] = "";

    cr_assert_eq(kdcl__array_convert(&fa, KDCL_DTYPE_I32, &dst, err,
                                     sizeof err), KDCL_EDTYPE);
    cr_assert_not_null(strstr(err, "float32 to int32"), "%s", err);
    assert_zeroed(&dst);
    cr_assert_eq(kdcl__array_convert(&ia, KDCL_DTYPE_F64, &dst, NULL, 0),
                 KDCL_EDTYPE);
    cr_assert_eq(kdcl__array_convert(&ua, KDCL_DTYPE_F32, &dst, NULL, 0),
                 KDCL_EDTYPE);
    cr_assert_eq(kdcl__array_convert(&fa, 17, &dst, NULL, 0), KDCL_EINVAL);
}

Test(npy, convert_to_same_dtype_copies)
{
    static const int64_t shape[] = {2, 2, 2};
    struct kdcl__array a, b;

    make_array(&a, KDCL_DTYPE_I64, 3, shape);
    cr_assert_eq(kdcl__array_convert(&a, KDCL_DTYPE_I64, &b, NULL, 0),
                 KDCL_OK);
    cr_assert_neq(b.data, a.data);
    cr_assert_eq(b.ndim, 3);
    cr_assert_eq(b.shape[2], 2);
    cr_assert_eq(memcmp(a.data, b.data, 8 * 8), 0);
    kdcl__array_free(&a);
    kdcl__array_free(&b);
}

Test(npy, convert_in_place)
{
    struct kdcl__array a;
    char err[256] = "";

    cr_assert_eq(kdcl__npy_read_mem(np_f32_2x3, sizeof np_f32_2x3, &a, err,
                                    sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(kdcl__array_convert(&a, KDCL_DTYPE_F64, &a, err,
                                     sizeof err), KDCL_OK, "%s", err);
    cr_assert_eq(a.dtype, KDCL_DTYPE_F64);
    cr_assert_eq(a.numel, 6);
    cr_assert_eq(((const double *)a.data)[1], -2.5);
    kdcl__array_free(&a);
}

Test(npy, array_free_zeroes_and_accepts_null)
{
    struct kdcl__array a;

    kdcl__array_free(NULL);
    cr_assert_eq(kdcl__npy_read_mem(np_u8_4, sizeof np_u8_4, &a, NULL, 0),
                 KDCL_OK);
    cr_assert_not_null(a.data);
    kdcl__array_free(&a);
    assert_zeroed(&a);
    kdcl__array_free(&a);
}
