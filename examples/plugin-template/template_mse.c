/*
 * template_mse.c - a minimal, complete kdcl plugin: logit matching by mean
 * squared error (Ba & Caruana 2014), L = weight * mean((z_s - z_t)^2),
 * dL/dz_s = 2 * weight * (z_s - z_t) / (B * C).
 *
 * It shows everything a plugin needs: the descriptor (name, family, params,
 * inputs, terms), create/destroy, a kernel built through the host's
 * program cache, shape checks with clear errors, a deterministic reduction
 * and the entry point.  It includes kdcl/plugin.h only and does not link
 * against libkdcl.
 */
#include <kdcl/plugin.h>

#include <stdio.h>

/* The kernels, as OpenCL C.  One work-group of WG items reduces all rows
   in a fixed order (deterministic) and writes the gradient. */
static const char source[] =
    "__kernel __attribute__((reqd_work_group_size(WG, 1, 1)))\n"
    "void mse(__global const float *s, __global const float *t,\n"
    "         __global float *grad, __global float *out, const int n,\n"
    "         const float weight, const int want_grad)\n"
    "{\n"
    "    __local float sum[WG];\n"
    "    const int lid = get_local_id(0);\n"
    "    float acc = 0.0f;\n"
    "    for (int i = lid; i < n; i += WG) {\n"
    "        const float d = s[i] - t[i];\n"
    "        acc += d * d;\n"
    "        if (want_grad)\n"
    "            grad[i] = 2.0f * weight * d / (float)n;\n"
    "    }\n"
    "    sum[lid] = acc;\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (int k = WG / 2; k > 0; k >>= 1) {\n"
    "        if (lid < k)\n"
    "            sum[lid] += sum[lid + k];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    if (lid == 0) {\n"
    "        out[0] = weight * sum[0] / (float)n;\n"
    "        out[1] = sum[0] / (float)n;\n"
    "    }\n"
    "}\n";

enum { P_WEIGHT };

static const struct kdcl_param_desc params[] = {
    {"weight", KDCL_PARAM_FLOAT, KDCL_PARAM_HAS_MIN, "1", 0.0, 0.0, NULL,
     "scale of the loss"},
};

static const struct kdcl_input_desc inputs[] = {
    {"student.logits", KDCL_INPUT_REQUIRED | KDCL_INPUT_GRAD, 0, "[B,C]",
     "student logits"},
    {"teacher.logits", KDCL_INPUT_REQUIRED, 0, "[B,C]", "teacher logits"},
};

static const char *const terms[] = {"mse"};

#define WG 64

struct state {
    const struct kdcl_host *h;
    double weight;
    kdcl_kernel *kernel;
};

static void destroy(void *p)
{
    struct state *s = p;
    if (!s)
        return;
    s->h->kernel_free(s->kernel);
    s->h->free(s);
}

static int create(const struct kdcl_host *h, const kdcl_params *p,
                  void **out)
{
    struct state *s = h->alloc_zero(1, sizeof *s);
    kdcl_program *prog;
    char opts[32];
    int status;
    if (!s)
        return h->error(h->ctx, KDCL_ENOMEM, "out of memory");
    s->h = h;
    s->weight = h->param_f64(p, P_WEIGHT);
    snprintf(opts, sizeof opts, "-DWG=%d", WG);
    status = h->program_build(h->ctx, source, opts, &prog);
    if (!status)
        status = h->kernel_init(h->ctx, prog, "mse", &s->kernel);
    if (status) {
        destroy(s);
        return status;
    }
    *out = s;
    return KDCL_OK;
}

static int forward(void *p, kdcl_io *io)
{
    struct state *s = p;
    const struct kdcl_host *h = s->h;
    const kdcl_tensor *zs = h->io_input(io, "student.logits");
    const kdcl_tensor *zt = h->io_input(io, "teacher.logits");
    kdcl_tensor *grad = h->io_grad(io, "student.logits");
    int64_t n;

    if (!zs || !zt)
        return h->error(h->ctx, KDCL_EMISSING,
                        "template_mse needs student.logits and "
                        "teacher.logits");
    n = h->tensor_numel(zs);
    if (h->tensor_numel(zt) != n || n == 0 || n > INT32_MAX)
        return h->error(h->ctx, KDCL_ESHAPE,
                        "student.logits and teacher.logits must have the "
                        "same, non-zero number of elements");
    {
        const size_t g = WG, l = WG;
        const struct kdcl_arg args[] = {
            KDCL_A_TENSOR(zs),
            KDCL_A_TENSOR(zt),
            KDCL_A_TENSOR(grad),
            KDCL_A_TENSOR(h->io_output(io)),
            KDCL_A_I32((int32_t)n),
            KDCL_A_F32((float)s->weight),
            KDCL_A_I32(grad != NULL),
        };
        return h->launch(h->ctx, s->kernel, 1, &g, &l,
                         sizeof args / sizeof args[0], args);
    }
}

static const struct kdcl_plugin template_mse = {
    KDCL_PLUGIN_HEAD,
    .name = "template_mse",
    .family = "response",
    .summary = "logit matching by mean squared error (template plugin)",
    .citation = "Ba & Caruana 2014, 'Do deep nets really need to be deep?'",
    .version = "1.0.0",
    .params = params,
    .n_params = sizeof params / sizeof params[0],
    .param_desc_size = sizeof params[0],
    .inputs = inputs,
    .n_inputs = sizeof inputs / sizeof inputs[0],
    .input_desc_size = sizeof inputs[0],
    .terms = terms,
    .n_terms = 1,
    .create = create,
    .destroy = destroy,
    .forward = forward,
};

KDCL_PLUGIN_DEFINE(template_mse, template_mse)
