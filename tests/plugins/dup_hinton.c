/* tests/plugins/dup_hinton.c - reuses the name of the in-tree hinton. */
#include "fixture.h"
static const struct kdcl_plugin desc = {FX_DESC("hinton")};
KDCL_PLUGIN_DEFINE(dup_hinton, desc)
