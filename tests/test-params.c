/*
 * tests/test-params.c - hyperparameter parsing against a plugin's schema:
 * defaults, types, ranges (open and closed), enums, unknown keys.
 */
#include "harness.h"
#include "params.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static const struct kdcl_param_desc schema[] = {
    {"t", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_MIN_OPEN, "4",
     0.0, 0.0, NULL, "open lower bound"},
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX,
     "0.1", 0.0, 1.0, NULL, "closed range"},
    {"n", KDCL_PARAM_INT, KDCL_PARAM_HAS_MIN, "3", 1.0, 0.0, NULL, "int"},
    {"flag", KDCL_PARAM_BOOL, 0, "false", 0, 0, NULL, "bool"},
    {"mode", KDCL_PARAM_ENUM, 0, "auto", 0, 0, "auto|none|linear", "enum"},
    {"tag", KDCL_PARAM_STRING, 0, NULL, 0, 0, NULL, "no default"},
};

static const struct kdcl_plugin plugin = {
    KDCL_PLUGIN_HEAD,
    .name = "params-test",
    .family = "test",
    .summary = "schema",
    .params = schema,
    .n_params = 6,
    .param_desc_size = sizeof schema[0],
};

static kdcl_context *ctx;
static kdcl_params *p;

static void setup(void)
{
    kdcl_context_init(&ctx); /* a device is not needed for parameters */
    cr_assert_not_null(ctx);
    cr_assert_eq(kdcl_params_init(ctx, &plugin, &p), KDCL_OK);
}

static void teardown(void)
{
    kdcl_params_free(p);
    kdcl_context_free(ctx);
}

TestSuite(params, .init = setup, .fini = teardown);

Test(params, defaults_apply_and_are_not_marked_set)
{
    cr_assert_float_eq(kdcl__param_f64(p, 0), 4.0, 0);
    cr_assert_float_eq(kdcl__param_f64(p, 1), 0.1, 1e-15);
    cr_assert_eq(kdcl__param_i64(p, 2), 3);
    cr_assert_eq(kdcl__param_i64(p, 3), 0);
    cr_assert_eq(kdcl__param_i64(p, 4), 0);
    cr_assert_null(kdcl__param_str(p, 5));
    for (uint32_t i = 0; i < 6; i++)
        cr_assert_not(kdcl__param_is_set(p, i));
    cr_assert_str_eq(kdcl_params_get(p, "mode"), "auto");
}

Test(params, set_values_of_every_type)
{
    cr_assert_eq(kdcl_params_set(p, "t", "2.5"), KDCL_OK);
    cr_assert_eq(kdcl_params_set_kv(p, "alpha=1"), KDCL_OK);
    cr_assert_eq(kdcl_params_set(p, "n", "12"), KDCL_OK);
    cr_assert_eq(kdcl_params_set(p, "flag", "yes"), KDCL_OK);
    cr_assert_eq(kdcl_params_set(p, "mode", "linear"), KDCL_OK);
    cr_assert_eq(kdcl_params_set(p, "tag", "hello world"), KDCL_OK);
    cr_assert_float_eq(kdcl__param_f64(p, 0), 2.5, 0);
    cr_assert_float_eq(kdcl__param_f64(p, 1), 1.0, 0);
    cr_assert_eq(kdcl__param_i64(p, 2), 12);
    cr_assert_eq(kdcl__param_i64(p, 3), 1);
    cr_assert_str_eq(kdcl__param_str(p, 3), "1");
    cr_assert_eq(kdcl__param_i64(p, 4), 2);
    cr_assert_str_eq(kdcl__param_str(p, 4), "linear");
    cr_assert_str_eq(kdcl__param_str(p, 5), "hello world");
    cr_assert(kdcl__param_is_set(p, 0) && kdcl__param_is_set(p, 5));
}

Test(params, open_lower_bound_rejects_the_bound)
{
    cr_assert_eq(kdcl_params_set(p, "t", "0"), KDCL_ERANGE);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "out of range (0, inf]"),
              "%s", kdcl_context_errmsg(ctx));
    cr_assert_eq(kdcl_params_set(p, "t", "-1"), KDCL_ERANGE);
    cr_assert_eq(kdcl_params_set(p, "t", "1e-9"), KDCL_OK);
    /* A rejected value leaves the previous one. */
    cr_assert_eq(kdcl_params_set(p, "t", "-3"), KDCL_ERANGE);
    cr_assert_float_eq(kdcl__param_f64(p, 0), 1e-9, 0);
}

Test(params, closed_range_accepts_bounds)
{
    cr_assert_eq(kdcl_params_set(p, "alpha", "0"), KDCL_OK);
    cr_assert_eq(kdcl_params_set(p, "alpha", "1"), KDCL_OK);
    cr_assert_eq(kdcl_params_set(p, "alpha", "1.0000001"), KDCL_ERANGE);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "params-test"));
    cr_assert(strstr(kdcl_context_errmsg(ctx), "alpha"));
}

Test(params, rejects_malformed_numbers)
{
    const char *bad[] = {"", "abc", "1.5x", "nan", "inf", "1e999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(kdcl_params_set(p, "t", bad[i]), KDCL_EINVAL, "'%s'",
                     bad[i]);
    cr_assert_eq(kdcl_params_set(p, "n", "2.5"), KDCL_EINVAL);
    cr_assert_eq(kdcl_params_set(p, "n", "0"), KDCL_ERANGE);
    cr_assert_eq(kdcl_params_set(p, "flag", "maybe"), KDCL_EINVAL);
}

Test(params, rejects_unknown_enum_choice)
{
    cr_assert_eq(kdcl_params_set(p, "mode", "cubic"), KDCL_EINVAL);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "auto|none|linear"));
    cr_assert_eq(kdcl_params_set(p, "mode", "lin"), KDCL_EINVAL,
                 "no prefix matching");
}

Test(params, rejects_unknown_key_listing_known_ones)
{
    cr_assert_eq(kdcl_params_set(p, "temperature", "2"), KDCL_ENOTFOUND);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "'temperature'"));
    cr_assert(strstr(kdcl_context_errmsg(ctx), "t, alpha, n, flag"));
    cr_assert_eq(kdcl_params_set_kv(p, "noequals"), KDCL_EINVAL);
    cr_assert_eq(kdcl_params_set_kv(p, "=1"), KDCL_EINVAL);
}

Test(params, run_copies_parameters)
{
    /* A run keeps its own copy: changing p afterwards changes nothing. */
    kdcl_params *copy;
    cr_assert_eq(kdcl_params_set(p, "t", "7"), KDCL_OK);
    copy = kdcl__params_dup(p);
    cr_assert_not_null(copy);
    cr_assert_eq(kdcl_params_set(p, "t", "8"), KDCL_OK);
    cr_assert_float_eq(kdcl__param_f64(copy, 0), 7.0, 0);
    cr_assert(kdcl__param_is_set(copy, 0));
    kdcl_params_free(copy);
}
