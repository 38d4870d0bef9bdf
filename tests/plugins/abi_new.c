/* tests/plugins/abi_new.c - claims an ABI newer than the host's. */
#include "fixture.h"
static struct kdcl_plugin desc = {FX_DESC("fixture-abi-new")};
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v);
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v)
{
    (void)v;
    desc.abi_version = KDCL_PLUGIN_ABI_VERSION + 1;
    return &desc;
}
