/*
 * tests/test-plugin-load.c - the plugin loader: every way a plugin can be
 * bad is rejected with its own message and never stops the others; the
 * search path order; build failures surface with the log.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX(name) KDCL_TEST_FIXTURE_DIR "/" name ".so"

static kdcl_registry *fresh(void)
{
    kdcl_registry *reg = NULL;
    cr_assert_eq(kdcl_registry_init(&reg), KDCL_OK);
    return reg;
}

/* Load one fixture, expect status, and a reason containing `needle`. */
static void expect_rejected(const char *file, int status, const char *needle)
{
    kdcl_registry *reg = fresh();
    const char *why = NULL, *path;
    cr_assert_eq(kdcl_registry_load_file(reg, file), status,
                 "loading %s", file);
    cr_assert_eq(kdcl_registry_count(reg), 0u);
    cr_assert_eq(kdcl_registry_rejected_count(reg), 1u);
    path = kdcl_registry_rejected(reg, 0, &why);
    cr_assert_str_eq(path, file);
    cr_assert(strstr(why, needle), "reason '%s' lacks '%s'", why, needle);
    kdcl_registry_free(reg);
}

Test(plugin_load, accepts_valid_plugin)
{
    kdcl_registry *reg = fresh();
    const char *path;
    const struct kdcl_plugin *p;
    cr_assert_eq(kdcl_registry_load_file(reg, FIX("fixture_good")), KDCL_OK);
    cr_assert_eq(kdcl_registry_count(reg), 1u);
    p = kdcl_registry_get(reg, 0, &path);
    cr_assert_str_eq(p->name, "fixture-good");
    cr_assert_str_eq(path, FIX("fixture_good"));
    cr_assert_eq(kdcl_registry_find(reg, "fixture-good"), p);
    cr_assert_null(kdcl_registry_find(reg, "nope"));
    kdcl_registry_free(reg);
}

Test(plugin_load, rejects_non_shared_object)
{
    expect_rejected(FIX("not_a_plugin"), KDCL_EPLUGIN,
                    "not a loadable shared object");
}

Test(plugin_load, rejects_missing_entry_symbol)
{
    expect_rejected(FIX("fixture_no_entry"), KDCL_EPLUGIN,
                    "no entry symbol kdcl_plugin_entry");
}

Test(plugin_load, rejects_newer_abi)
{
    expect_rejected(FIX("fixture_abi_new"), KDCL_EABI, "newer");
    /* Both numbers are named. */
    expect_rejected(FIX("fixture_abi_new"), KDCL_EABI, "ABI 2");
}

Test(plugin_load, rejects_older_abi)
{
    expect_rejected(FIX("fixture_abi_old"), KDCL_EABI, "older");
}

Test(plugin_load, rejects_null_descriptor)
{
    expect_rejected(FIX("fixture_null_desc"), KDCL_EPLUGIN, "NULL");
}

Test(plugin_load, rejects_bad_schema)
{
    expect_rejected(FIX("fixture_bad_schema"), KDCL_EPLUGIN,
                    "default of 'alpha' is invalid");
}

Test(plugin_load, rejects_missing_name)
{
    expect_rejected(FIX("fixture_no_name"), KDCL_EPLUGIN, "name");
}

Test(plugin_load, rejects_truncated_descriptor)
{
    expect_rejected(FIX("fixture_small_desc"), KDCL_EPLUGIN, "too small");
}

Test(plugin_load, first_of_duplicate_names_wins)
{
    kdcl_registry *reg = fresh();
    const char *why, *path;
    cr_assert_eq(kdcl_registry_load_file(reg, KDCL_TEST_PLUGIN_DIR
                                         "/kdcl-hinton.so"),
                 KDCL_OK);
    cr_assert_eq(kdcl_registry_load_file(reg, FIX("fixture_dup_hinton")),
                 KDCL_EEXIST);
    cr_assert_eq(kdcl_registry_count(reg), 1u);
    kdcl_registry_get(reg, 0, &path);
    cr_assert(strstr(path, "plugins/kdcl-hinton.so"));
    kdcl_registry_rejected(reg, 0, &why);
    cr_assert(strstr(why, "duplicate plugin name 'hinton'"), "%s", why);
    kdcl_registry_free(reg);
}

Test(plugin_load, bad_plugins_do_not_stop_others)
{
    /* The fixture directory holds every bad case plus one good plugin. */
    kdcl_registry *reg = fresh();
    cr_assert_eq(kdcl_registry_load_dir(reg, KDCL_TEST_FIXTURE_DIR), KDCL_OK);
    cr_assert_not_null(kdcl_registry_find(reg, "fixture-good"));
    cr_assert_not_null(kdcl_registry_find(reg, "fixture-bad-kernel"));
    cr_assert_not_null(kdcl_registry_find(reg, "hinton"),
                       "dup_hinton is the only hinton here");
    cr_assert_geq(kdcl_registry_rejected_count(reg), 7u);
    kdcl_registry_free(reg);
}

Test(plugin_load, missing_directory_is_not_an_error)
{
    kdcl_registry *reg = fresh();
    cr_assert_eq(kdcl_registry_load_dir(reg, "/nonexistent/kdcl/plugins"),
                 KDCL_OK);
    cr_assert_eq(kdcl_registry_count(reg), 0u);
    kdcl_registry_free(reg);
}

Test(plugin_load, search_path_order)
{
    /* --plugin-dir before KDCL_PLUGIN_PATH: the fixture's "hinton" from
       the first directory wins over the real one from the second. */
    kdcl_registry *reg = fresh();
    const char *dirs[] = {KDCL_TEST_FIXTURE_DIR};
    const char *path;
    const struct kdcl_plugin *p;
    setenv("KDCL_PLUGIN_PATH", KDCL_TEST_PLUGIN_DIR, 1);
    cr_assert_eq(kdcl_registry_load_default(reg, dirs, 1), KDCL_OK);
    p = kdcl_registry_find(reg, "hinton");
    cr_assert_not_null(p);
    cr_assert_str_eq(p->family, "test", "the fixture should win");
    for (size_t i = 0; i < kdcl_registry_count(reg); i++)
        if (kdcl_registry_get(reg, i, &path) == p)
            cr_assert(strstr(path, "dup_hinton"));
    kdcl_registry_free(reg);

    /* Without --plugin-dir the environment path supplies the real one. */
    reg = fresh();
    cr_assert_eq(kdcl_registry_load_default(reg, NULL, 0), KDCL_OK);
    p = kdcl_registry_find(reg, "hinton");
    cr_assert_not_null(p);
    cr_assert_str_eq(p->family, "response");
    kdcl_registry_free(reg);
}

Test(plugin_load, build_tree_plugins_found_without_configuration)
{
    /* Tests run from the build tree: the default path includes
       build/plugins even with no directories and an empty environment. */
    kdcl_registry *reg = fresh();
    setenv("KDCL_PLUGIN_PATH", "", 1);
    setenv("HOME", "/nonexistent", 1);
    cr_assert_eq(kdcl_registry_load_default(reg, NULL, 0), KDCL_OK);
    cr_assert_not_null(kdcl_registry_find(reg, "hinton"));
    kdcl_registry_free(reg);
}

Test(plugin_load, user_directory_is_searched)
{
    char home[512], dir[600], cmd[1400];
    kdcl_registry *reg = fresh();
    snprintf(home, sizeof home, "%s/home", th_tmpdir());
    snprintf(dir, sizeof dir, "%s/.local/lib/kdcl/plugins", home);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s %s/", dir,
             FIX("fixture_good"), dir);
    cr_assert_eq(system(cmd), 0);
    setenv("HOME", home, 1);
    setenv("KDCL_PLUGIN_PATH", "", 1);
    cr_assert_eq(kdcl_registry_load_default(reg, NULL, 0), KDCL_OK);
    cr_assert_not_null(kdcl_registry_find(reg, "fixture-good"));
    kdcl_registry_free(reg);
}

Test(plugin_load, kernel_build_failure_reported_when_used)
{
    kdcl_registry *reg = fresh();
    const struct kdcl_plugin *p;
    kdcl_run *run = NULL;
    kdcl_context *ctx = th_ctx();
    const char *msg;
    if (th_checking())
        cr_skip_test("provokes a build failure, which the checker reports");
    cr_assert_eq(kdcl_registry_load_file(reg, FIX("fixture_bad_kernel")),
                 KDCL_OK, "a bad kernel is only found when used");
    p = kdcl_registry_find(reg, "fixture-bad-kernel");
    cr_assert_eq(kdcl_run_init(ctx, p, NULL, &run), KDCL_EBUILD);
    cr_assert_null(run);
    msg = kdcl_context_errmsg(ctx);
    cr_assert(strstr(msg, "plugin fixture-bad-kernel"), "%s", msg);
    cr_assert(strstr(msg, "undeclared_identifier"), "no build log: %s", msg);
    kdcl_registry_free(reg);
}

Test(plugin_load, static_registration)
{
    kdcl_registry *reg = fresh();
    const struct kdcl_plugin *p = th_plugin("hinton");
    kdcl_registry *r2 = fresh();
    cr_assert_eq(kdcl_registry_add(r2, p, NULL), KDCL_OK);
    cr_assert_eq(kdcl_registry_find(r2, "hinton"), p);
    cr_assert_eq(kdcl_registry_add(r2, p, NULL), KDCL_EEXIST);
    kdcl_registry_free(r2);
    kdcl_registry_free(reg);
}

Test(plugin_load, unknown_input_name_is_rejected)
{
    kdcl_run *run = NULL;
    kdcl_context *ctx = th_ctx();
    int64_t shape[2] = {2, 3};
    kdcl_tensor *t = NULL;
    cr_assert_eq(kdcl_run_init(ctx, th_plugin("hinton"), NULL, &run),
                 KDCL_OK);
    cr_assert_eq(kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 2, shape, &t),
                 KDCL_OK);
    cr_assert_eq(kdcl_run_set_input(run, "student.feat", t), KDCL_ENOTFOUND);
    cr_assert(strstr(kdcl_context_errmsg(ctx), "student.feat"));
    cr_assert_eq(kdcl_run_set_grad(run, "teacher.logits", t), KDCL_EINVAL,
                 "the teacher gets no gradient");
    kdcl_tensor_free(t);
    kdcl_run_free(run);
}
