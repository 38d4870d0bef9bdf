/* tests/plugins/bad_kernel.c - loads fine, but its kernel does not
   compile: the build log must reach the user when it is used. */
#include "fixture.h"

static int bk_create(const struct kdcl_host *h, const kdcl_params *p,
                     void **out)
{
    kdcl_program *prog;
    (void)p;
    *out = NULL;
    return h->program_build(h->ctx,
                            "__kernel void broken(__global float *x)\n"
                            "{ x[0] = undeclared_identifier; }\n",
                            NULL, &prog);
}

static struct kdcl_plugin desc = {FX_DESC("fixture-bad-kernel")};
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v);
KDCL_PLUGIN_EXPORT const struct kdcl_plugin *kdcl_plugin_entry(uint32_t v)
{
    (void)v;
    desc.create = bk_create;
    return &desc;
}
