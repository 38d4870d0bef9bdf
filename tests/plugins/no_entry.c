/* tests/plugins/no_entry.c - a shared object without the entry symbol. */
#include <kdcl/plugin.h>
KDCL_PLUGIN_EXPORT int not_the_entry(void);
KDCL_PLUGIN_EXPORT int not_the_entry(void)
{
    return 42;
}
