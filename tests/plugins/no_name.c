/* tests/plugins/no_name.c - a descriptor without a name. */
#include "fixture.h"
static const struct kdcl_plugin desc = {FX_DESC(NULL)};
KDCL_PLUGIN_DEFINE(no_name, desc)
