/* tests/plugins/abi_old.c - claims ABI 0, older than any host serves. */
#include "fixture.h"
static struct kdcl_plugin desc = {FX_DESC("fixture-abi-old")};
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v);
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v)
{
    (void)v;
    desc.abi_version = 0;
    return &desc;
}
