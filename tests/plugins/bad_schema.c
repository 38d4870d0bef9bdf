/* tests/plugins/bad_schema.c - a parameter whose default is out of its
   own range. */
#include "fixture.h"
static const struct kdcl_param_desc bad_params[] = {
    {"alpha", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX, "2",
     0.0, 1.0, NULL, "weight"},
};
static struct kdcl_plugin desc = {FX_DESC("fixture-bad-schema")};
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v);
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v)
{
    (void)v;
    desc.params = bad_params;
    return &desc;
}
