/* tests/plugins/small_desc.c - struct_size smaller than ABI 1 needs. */
#include "fixture.h"
static struct kdcl_plugin desc = {FX_DESC("fixture-small")};
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v);
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v)
{
    (void)v;
    desc.struct_size = 16;
    return &desc;
}
