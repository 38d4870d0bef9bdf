/* tests/plugins/good.c - a valid plugin that computes nothing. */
#include "fixture.h"
static const struct kdcl_plugin desc = {FX_DESC("fixture-good")};
KDCL_PLUGIN_DEFINE(good, desc)
