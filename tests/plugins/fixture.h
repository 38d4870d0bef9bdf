/*
 * tests/plugins/fixture.h - a minimal valid descriptor that each fixture
 * plugin copies and breaks in one way.
 */
#include <kdcl/plugin.h>

static int fx_create(const struct kdcl_host *h, const kdcl_params *p,
                     void **out)
{
    (void)h;
    (void)p;
    *out = (void *)1;
    return KDCL_OK;
}

static void fx_destroy(void *s)
{
    (void)s;
}

static int fx_forward(void *s, kdcl_io *io)
{
    (void)s;
    (void)io;
    return KDCL_OK;
}

static const struct kdcl_param_desc fx_params[] = {
    {"scale", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "a scale"},
};

static const struct kdcl_input_desc fx_inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits"},
};

#define FX_DESC(nm)                                                          \
    KDCL_PLUGIN_HEAD, .name = nm, .family = "test", .summary = "fixture",   \
    .citation = "none", .version = "0.0.1", .params = fx_params,            \
    .n_params = 1, .param_desc_size = sizeof fx_params[0],                  \
    .inputs = fx_inputs, .n_inputs = 1,                                      \
    .input_desc_size = sizeof fx_inputs[0], .create = fx_create,            \
    .destroy = fx_destroy, .forward = fx_forward
