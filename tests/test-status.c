/*
 * tests/test-status.c - tests of the name and message tables (core/status.c):
 * every kdcl status, every OpenCL error code the CL headers define, dtype
 * names and sizes, and the run-time version getters.  No device is needed.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <CL/cl_ext.h>

#include "kdcl/kdcl.h"

/* ---------------------------------------------------------------------- */
/* kdcl statuses                                                           */

struct status_row {
    int value;
    const char *name; /* "KDCL_<NAME>" as the map spells it */
    const char *msg;
};

static const struct status_row statuses[] = {
#define ROW(name, value, msg) {value, "KDCL_" #name, msg},
    KDCL_STATUS_MAP(ROW)
#undef ROW
};

#define N_STATUSES (sizeof statuses / sizeof statuses[0])

Test(status, every_status_has_its_map_name)
{
    for (size_t i = 0; i < N_STATUSES; i++)
        cr_assert_str_eq(kdcl_status_name(statuses[i].value),
                         statuses[i].name, "status %d",
                         statuses[i].value);
}

Test(status, status_names_and_values_are_distinct)
{
    for (size_t i = 0; i < N_STATUSES; i++)
        for (size_t j = i + 1; j < N_STATUSES; j++) {
            cr_assert_neq(statuses[i].value, statuses[j].value,
                          "%s and %s share a value", statuses[i].name,
                          statuses[j].name);
            cr_assert_str_neq(kdcl_status_name(statuses[i].value),
                              kdcl_status_name(statuses[j].value),
                              "statuses %d and %d share a name",
                              statuses[i].value, statuses[j].value);
        }
}

Test(status, ok_is_zero_and_errors_are_negative)
{
    cr_assert_eq(KDCL_OK, 0);
    cr_assert_str_eq(kdcl_status_name(0), "KDCL_OK");
    for (size_t i = 0; i < N_STATUSES; i++)
        if (strcmp(statuses[i].name, "KDCL_OK") != 0)
            cr_assert_lt(statuses[i].value, 0, "%s is %d", statuses[i].name,
                         statuses[i].value);
}

Test(status, every_status_has_a_nonempty_message)
{
    for (size_t i = 0; i < N_STATUSES; i++) {
        const char *m = kdcl_status_str(statuses[i].value);
        cr_assert_not_null(m, "%s", statuses[i].name);
        cr_assert_gt(strlen(m), 0, "%s has an empty message",
                     statuses[i].name);
        cr_assert_str_eq(m, statuses[i].msg, "%s", statuses[i].name);
    }
}

Test(status, unknown_status_is_kdcl_unknown)
{
    static const int unknown[] = {1, 42, -19, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *m = kdcl_status_str(unknown[i]);
        cr_assert_str_eq(kdcl_status_name(unknown[i]), "KDCL_UNKNOWN",
                         "status %d", unknown[i]);
        cr_assert_not_null(m);
        cr_assert_gt(strlen(m), 0, "status %d has an empty message",
                     unknown[i]);
    }
}

/* ---------------------------------------------------------------------- */
/* OpenCL error codes                                                      */

struct cl_row {
    int code;
    const char *name;
};

/* Every error code in [0, -72] the headers define, by their own macros. */
#define E(x) {x, #x},
static const struct cl_row cl_codes[] = {
    E(CL_SUCCESS) E(CL_DEVICE_NOT_FOUND) E(CL_DEVICE_NOT_AVAILABLE)
    E(CL_COMPILER_NOT_AVAILABLE) E(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    E(CL_OUT_OF_RESOURCES) E(CL_OUT_OF_HOST_MEMORY)
    E(CL_PROFILING_INFO_NOT_AVAILABLE) E(CL_MEM_COPY_OVERLAP)
    E(CL_IMAGE_FORMAT_MISMATCH) E(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    E(CL_BUILD_PROGRAM_FAILURE) E(CL_MAP_FAILURE)
#ifdef CL_MISALIGNED_SUB_BUFFER_OFFSET
    E(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    E(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
#endif
#ifdef CL_COMPILE_PROGRAM_FAILURE
    E(CL_COMPILE_PROGRAM_FAILURE) E(CL_LINKER_NOT_AVAILABLE)
    E(CL_LINK_PROGRAM_FAILURE) E(CL_DEVICE_PARTITION_FAILED)
    E(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
#endif
    E(CL_INVALID_VALUE) E(CL_INVALID_DEVICE_TYPE) E(CL_INVALID_PLATFORM)
    E(CL_INVALID_DEVICE) E(CL_INVALID_CONTEXT) E(CL_INVALID_QUEUE_PROPERTIES)
    E(CL_INVALID_COMMAND_QUEUE) E(CL_INVALID_HOST_PTR)
    E(CL_INVALID_MEM_OBJECT) E(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    E(CL_INVALID_IMAGE_SIZE) E(CL_INVALID_SAMPLER) E(CL_INVALID_BINARY)
    E(CL_INVALID_BUILD_OPTIONS) E(CL_INVALID_PROGRAM)
    E(CL_INVALID_PROGRAM_EXECUTABLE) E(CL_INVALID_KERNEL_NAME)
    E(CL_INVALID_KERNEL_DEFINITION) E(CL_INVALID_KERNEL)
    E(CL_INVALID_ARG_INDEX) E(CL_INVALID_ARG_VALUE) E(CL_INVALID_ARG_SIZE)
    E(CL_INVALID_KERNEL_ARGS) E(CL_INVALID_WORK_DIMENSION)
    E(CL_INVALID_WORK_GROUP_SIZE) E(CL_INVALID_WORK_ITEM_SIZE)
    E(CL_INVALID_GLOBAL_OFFSET) E(CL_INVALID_EVENT_WAIT_LIST)
    E(CL_INVALID_EVENT) E(CL_INVALID_OPERATION) E(CL_INVALID_GL_OBJECT)
    E(CL_INVALID_BUFFER_SIZE) E(CL_INVALID_MIP_LEVEL)
    E(CL_INVALID_GLOBAL_WORK_SIZE)
#ifdef CL_INVALID_PROPERTY
    E(CL_INVALID_PROPERTY)
#endif
#ifdef CL_INVALID_IMAGE_DESCRIPTOR
    E(CL_INVALID_IMAGE_DESCRIPTOR) E(CL_INVALID_COMPILER_OPTIONS)
    E(CL_INVALID_LINKER_OPTIONS) E(CL_INVALID_DEVICE_PARTITION_COUNT)
#endif
#ifdef CL_INVALID_PIPE_SIZE
    E(CL_INVALID_PIPE_SIZE) E(CL_INVALID_DEVICE_QUEUE)
#endif
#ifdef CL_INVALID_SPEC_ID
    E(CL_INVALID_SPEC_ID)
#endif
#ifdef CL_MAX_SIZE_RESTRICTION_EXCEEDED
    E(CL_MAX_SIZE_RESTRICTION_EXCEEDED)
#endif
};
#undef E

#define N_CL_CODES (sizeof cl_codes / sizeof cl_codes[0])

static const char *header_name(int code)
{
    for (size_t i = 0; i < N_CL_CODES; i++)
        if (cl_codes[i].code == code)
            return cl_codes[i].name;
    return NULL;
}

static void assert_known_cl_name(int code)
{
    const char *name = kdcl_cl_error_name(code);
    cr_assert_not_null(name, "code %d", code);
    cr_assert(strncmp(name, "CL_", 3) == 0, "code %d is named '%s'", code,
              name);
    cr_assert_str_neq(name, "CL_UNKNOWN_ERROR", "code %d has no name", code);
}

Test(status, cl_codes_defined_by_headers_have_their_names)
{
    size_t checked = 0;
    for (int code = 0; code >= -72; code--) {
        const char *want = header_name(code);
        if (!want)
            continue;
        assert_known_cl_name(code);
        cr_assert_str_eq(kdcl_cl_error_name(code), want, "code %d", code);
        checked++;
    }
    /* The OpenCL 1.1 headers and later define 0..-14 and -30..-63. */
    cr_assert_geq(checked, 15 + 34, "only %zu codes checked", checked);
}

Test(status, cl_codes_0_to_19_and_30_to_72_are_all_named)
{
    /* Codes a newer header defines must be known even when built against
       an older one: the library, not the header, is under test. */
    for (int code = 0; code >= -72; code--)
        if (code > -20 || code <= -30)
            assert_known_cl_name(code);
}

Test(status, cl_reserved_codes_20_to_29_are_unknown)
{
    for (int code = -20; code > -30; code--)
        cr_assert_str_eq(kdcl_cl_error_name(code), "CL_UNKNOWN_ERROR",
                         "code %d", code);
}

Test(status, cl_extension_codes_have_their_names)
{
    assert_known_cl_name(-1001);
    assert_known_cl_name(-1121);
#ifdef CL_PLATFORM_NOT_FOUND_KHR
    cr_assert_eq(CL_PLATFORM_NOT_FOUND_KHR, -1001);
#endif
#ifdef CL_CONTEXT_TERMINATED_KHR
    cr_assert_eq(CL_CONTEXT_TERMINATED_KHR, -1121);
#endif
    cr_assert_str_eq(kdcl_cl_error_name(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
    cr_assert_str_eq(kdcl_cl_error_name(-1121), "CL_CONTEXT_TERMINATED_KHR");
}

Test(status, cl_header_macros_map_to_their_own_names)
{
    cr_assert_str_eq(kdcl_cl_error_name(CL_OUT_OF_RESOURCES),
                     "CL_OUT_OF_RESOURCES");
    cr_assert_str_eq(kdcl_cl_error_name(CL_SUCCESS), "CL_SUCCESS");
    cr_assert_str_eq(kdcl_cl_error_name(CL_INVALID_KERNEL_NAME),
                     "CL_INVALID_KERNEL_NAME");
    cr_assert_str_eq(kdcl_cl_error_name(CL_BUILD_PROGRAM_FAILURE),
                     "CL_BUILD_PROGRAM_FAILURE");
    cr_assert_str_eq(kdcl_cl_error_name(CL_INVALID_GLOBAL_WORK_SIZE),
                     "CL_INVALID_GLOBAL_WORK_SIZE");
}

Test(status, cl_names_are_distinct)
{
    int codes[80];
    size_t n = 0;
    for (int code = 0; code >= -72; code--)
        if (code > -20 || code <= -30)
            codes[n++] = code;
    codes[n++] = -1001;
    codes[n++] = -1121;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            cr_assert_str_neq(kdcl_cl_error_name(codes[i]),
                              kdcl_cl_error_name(codes[j]),
                              "codes %d and %d share a name", codes[i],
                              codes[j]);
}

Test(status, unknown_cl_code_is_cl_unknown_error)
{
    static const int unknown[] = {1, 100, -73, -99, -999, -2000, INT_MIN,
                                  INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
        cr_assert_str_eq(kdcl_cl_error_name(unknown[i]), "CL_UNKNOWN_ERROR",
                         "code %d", unknown[i]);
}

/* ---------------------------------------------------------------------- */
/* dtypes and versions                                                     */

Test(status, dtype_names)
{
    cr_assert_str_eq(kdcl_dtype_name(KDCL_DTYPE_F32), "f32");
    cr_assert_str_eq(kdcl_dtype_name(KDCL_DTYPE_F64), "f64");
    cr_assert_str_eq(kdcl_dtype_name(KDCL_DTYPE_I32), "i32");
    cr_assert_str_eq(kdcl_dtype_name(KDCL_DTYPE_I64), "i64");
    cr_assert_str_eq(kdcl_dtype_name(KDCL_DTYPE_U8), "u8");
    cr_assert_str_eq(kdcl_dtype_name(5), "?");
    cr_assert_str_eq(kdcl_dtype_name(-1), "?");
    cr_assert_str_eq(kdcl_dtype_name(INT_MAX), "?");
}

Test(status, dtype_sizes)
{
    cr_assert_eq(kdcl_dtype_size(KDCL_DTYPE_F32), sizeof(float));
    cr_assert_eq(kdcl_dtype_size(KDCL_DTYPE_F64), sizeof(double));
    cr_assert_eq(kdcl_dtype_size(KDCL_DTYPE_I32), sizeof(int32_t));
    cr_assert_eq(kdcl_dtype_size(KDCL_DTYPE_I64), sizeof(int64_t));
    cr_assert_eq(kdcl_dtype_size(KDCL_DTYPE_U8), sizeof(uint8_t));
    cr_assert_eq(kdcl_dtype_size(5), 0);
    cr_assert_eq(kdcl_dtype_size(-1), 0);
}

Test(status, dtype_numbers_are_the_abi_numbers)
{
    cr_assert_eq(KDCL_DTYPE_F32, 0);
    cr_assert_eq(KDCL_DTYPE_F64, 1);
    cr_assert_eq(KDCL_DTYPE_I32, 2);
    cr_assert_eq(KDCL_DTYPE_I64, 3);
    cr_assert_eq(KDCL_DTYPE_U8, 4);
}

Test(status, version_matches_the_header)
{
    char want[64];
    cr_assert_str_eq(kdcl_version(), KDCL_VERSION_STRING);
    snprintf(want, sizeof want, "%d.%d.%d", KDCL_VERSION_MAJOR,
             KDCL_VERSION_MINOR, KDCL_VERSION_PATCH);
    cr_assert_str_eq(kdcl_version(), want);
}

Test(status, plugin_abi_matches_the_header)
{
    cr_assert_eq(kdcl_plugin_abi(), (uint32_t)KDCL_PLUGIN_ABI_VERSION);
    cr_assert_geq(kdcl_plugin_abi(), 1);
}
