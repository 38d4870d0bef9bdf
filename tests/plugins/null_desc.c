/* tests/plugins/null_desc.c - the entry returns NULL. */
#include <kdcl/plugin.h>
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v);
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v)
{
    (void)v;
    return NULL;
}
