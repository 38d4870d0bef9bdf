/*
 * core/run.c - plugin runs: the host service table, binding named inputs
 * and gradients, input checks, and calling a plugin's hooks.
 */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
    char *name;
    const kdcl_tensor *input;
    kdcl_tensor *grad;
    uint32_t flags; /* of the matching input descriptor */
    bool checked;   /* labels range already checked */
};

struct kdcl_io {
    kdcl_run *run;
    struct slot *slots;
    size_t n, cap;
    kdcl_tensor *output;
};

struct kdcl_run {
    kdcl_context *ctx;
    const struct kdcl_plugin *plugin;
    kdcl_params *params;
    void *state;
    kdcl_io io;
};

/* ---------------------------------------------------------------------- */
/* Host services that need a wrapper                                       */

static void host_log(kdcl_context *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kdcl__vlog(ctx, level, fmt, ap);
    va_end(ap);
}

static int host_error(kdcl_context *ctx, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kdcl__verror(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

static const struct kdcl_device_info *host_device(kdcl_context *ctx)
{
    return kdcl_context_device(ctx);
}

static const kdcl_tensor *io_input(const kdcl_io *io, const char *name)
{
    for (size_t i = 0; i < io->n; i++)
        if (strcmp(io->slots[i].name, name) == 0)
            return io->slots[i].input;
    return NULL;
}

static kdcl_tensor *io_grad(const kdcl_io *io, const char *name)
{
    for (size_t i = 0; i < io->n; i++)
        if (strcmp(io->slots[i].name, name) == 0)
            return io->slots[i].grad;
    return NULL;
}

static kdcl_tensor *io_output(const kdcl_io *io)
{
    return io->output;
}

static cl_context host_cl_context(kdcl_context *ctx)
{
    return ctx->cl_ctx;
}

static cl_command_queue host_cl_queue(kdcl_context *ctx)
{
    return ctx->queue;
}

static cl_device_id host_cl_device(kdcl_context *ctx)
{
    return ctx->opened ? ctx->device_ids[ctx->dev_index] : NULL;
}

static const void *host_service(kdcl_context *ctx, const char *name,
                                uint32_t version)
{
    (void)ctx;
    (void)name;
    (void)version;
    return NULL; /* no optional services yet */
}

static void *host_alloc(size_t n)
{
    return malloc(n);
}

static void *host_alloc_zero(size_t n, size_t sz)
{
    return calloc(n, sz);
}

static void host_free(void *p)
{
    free(p);
}

void kdcl__host_init(kdcl_context *ctx)
{
    struct kdcl_host *h = &ctx->host;
    h->abi_version = KDCL_PLUGIN_ABI_VERSION;
    h->struct_size = sizeof *h;
    h->ctx = ctx;
    h->alloc = host_alloc;
    h->alloc_zero = host_alloc_zero;
    h->free = host_free;
    h->log = host_log;
    h->error = host_error;
    h->device = host_device;
    h->program_build = kdcl_program_build;
    h->kernel_init = kdcl_kernel_init;
    h->kernel_free = kdcl_kernel_free;
    h->launch = kdcl_kernel_launch;
    h->kernel_wg_size = kdcl_kernel_wg_size;
    h->tensor_init = kdcl_tensor_init;
    h->tensor_free = kdcl_tensor_free;
    h->tensor_dtype = kdcl_tensor_dtype;
    h->tensor_ndim = kdcl_tensor_ndim;
    h->tensor_dim = kdcl_tensor_dim;
    h->tensor_numel = kdcl_tensor_numel;
    h->tensor_write = kdcl_tensor_write;
    h->tensor_read = kdcl_tensor_read;
    h->tensor_fill = kdcl_tensor_fill;
    h->gemm = kdcl_gemm;
    h->gemm_batched = kdcl_gemm_batched;
    h->param_f64 = kdcl__param_f64;
    h->param_i64 = kdcl__param_i64;
    h->param_str = kdcl__param_str;
    h->param_is_set = kdcl__param_is_set;
    h->io_input = io_input;
    h->io_grad = io_grad;
    h->io_output = io_output;
    h->cl_context = host_cl_context;
    h->cl_queue = host_cl_queue;
    h->cl_device = host_cl_device;
    h->tensor_mem = kdcl_tensor_mem;
    h->service = host_service;
}

/* ---------------------------------------------------------------------- */
/* Runs                                                                    */

/* Does name match pattern?  '*' after a '.' matches a decimal index; a '*'
   anywhere else matches nothing or '.' and a decimal index. */
static bool name_matches(const char *pat, const char *name)
{
    const char *p = pat;
    while (*p) {
        if (*p == '*') {
            bool after_dot = p > pat && p[-1] == '.';
            p++;
            if (!after_dot) {
                if (*name != '.')
                    continue; /* matched nothing */
                name++;
            }
            if (*name < '0' || *name > '9')
                return false;
            while (*name >= '0' && *name <= '9')
                name++;
            continue;
        }
        if (*p != *name)
            return false;
        p++;
        name++;
    }
    return *name == '\0';
}

const struct kdcl_input_desc *kdcl__input_find(const struct kdcl_plugin *p,
                                               const char *name)
{
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(p, i);
        if (name_matches(d->name, name))
            return d;
    }
    return NULL;
}

int kdcl_run_init(kdcl_context *ctx, const struct kdcl_plugin *plugin,
                  const kdcl_params *params, kdcl_run **out)
{
    kdcl_run *run;
    int64_t shape[1] = {1 + (int64_t)plugin->n_terms};
    int status;

    *out = NULL;
    if (!ctx->opened)
        return kdcl__error(ctx, KDCL_EINVAL, "no device open");
    if (params && params->plugin != plugin)
        return kdcl__error(ctx, KDCL_EINVAL,
                           "parameters were made for plugin %s, not %s",
                           params->plugin->name, plugin->name);
    run = calloc(1, sizeof *run);
    if (!run)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    run->ctx = ctx;
    run->plugin = plugin;
    run->io.run = run;
    if (params) {
        run->params = kdcl__params_dup(params);
        status = run->params ? KDCL_OK
                             : kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    } else {
        status = kdcl_params_init(ctx, plugin, &run->params);
    }
    if (status)
        goto fail;
    status = kdcl_tensor_init(ctx, KDCL_DTYPE_F32, 1, shape, &run->io.output);
    if (status)
        goto fail;
    ctx->errmsg[0] = '\0';
    status = plugin->create(&ctx->host, run->params, &run->state);
    if (status) {
        if (!ctx->errmsg[0])
            kdcl__error(ctx, status, "plugin %s failed to start: %s",
                        plugin->name, kdcl_status_str(status));
        else if (status == KDCL_EBUILD) {
            /* Say whose kernel failed, ahead of the build log. */
            char head[160];
            size_t hl = (size_t)snprintf(head, sizeof head, "plugin %s: ",
                                         plugin->name);
            size_t ml = strlen(ctx->errmsg);
            if (hl < sizeof head && hl + ml < sizeof ctx->errmsg) {
                memmove(ctx->errmsg + hl, ctx->errmsg, ml + 1);
                memcpy(ctx->errmsg, head, hl);
            }
        }
        run->state = NULL;
        goto fail;
    }
    *out = run;
    return KDCL_OK;
fail:
    kdcl_run_free(run);
    return status;
}

void kdcl_run_free(kdcl_run *run)
{
    if (!run)
        return;
    if (run->state)
        run->plugin->destroy(run->state);
    for (size_t i = 0; i < run->io.n; i++)
        free(run->io.slots[i].name);
    free(run->io.slots);
    kdcl_tensor_free(run->io.output);
    kdcl_params_free(run->params);
    free(run);
}

static struct slot *get_slot(kdcl_run *run, const char *name, bool create,
                             int *status)
{
    const struct kdcl_input_desc *d = kdcl__input_find(run->plugin, name);
    kdcl_io *io = &run->io;
    *status = KDCL_OK;
    if (!d) {
        *status = kdcl__error(run->ctx, KDCL_ENOTFOUND,
                              "plugin %s reads no input named '%s'",
                              run->plugin->name, name);
        return NULL;
    }
    for (size_t i = 0; i < io->n; i++)
        if (strcmp(io->slots[i].name, name) == 0)
            return &io->slots[i];
    if (!create)
        return NULL;
    if (io->n == io->cap) {
        size_t cap = io->cap ? io->cap * 2 : 8;
        void *grow = realloc(io->slots, cap * sizeof *io->slots);
        if (!grow) {
            *status = kdcl__error(run->ctx, KDCL_ENOMEM, "out of memory");
            return NULL;
        }
        io->slots = grow;
        io->cap = cap;
    }
    memset(&io->slots[io->n], 0, sizeof io->slots[0]);
    io->slots[io->n].name = kdcl__strdup(name);
    if (!io->slots[io->n].name) {
        *status = kdcl__error(run->ctx, KDCL_ENOMEM, "out of memory");
        return NULL;
    }
    io->slots[io->n].flags = d->flags;
    return &io->slots[io->n++];
}

int kdcl_run_set_input(kdcl_run *run, const char *name, const kdcl_tensor *t)
{
    int status;
    struct slot *s = get_slot(run, name, t != NULL, &status);
    if (!s)
        return status;
    if (t) {
        int want = (s->flags & KDCL_INPUT_INT) ? KDCL_DTYPE_I32
                                               : KDCL_DTYPE_F32;
        if (t->dtype != want)
            return kdcl__error(run->ctx, KDCL_EDTYPE,
                               "input %s must be %s, got %s", name,
                               kdcl_dtype_name(want),
                               kdcl_dtype_name(t->dtype));
    }
    /* Labels are range-checked when a tensor is first bound; rebinding
       the same tensor (a training loop refilling it) does not re-read. */
    if (s->input != t)
        s->checked = false;
    s->input = t;
    return KDCL_OK;
}

int kdcl_run_set_grad(kdcl_run *run, const char *name, kdcl_tensor *grad)
{
    int status;
    struct slot *s = get_slot(run, name, grad != NULL, &status);
    if (!s)
        return status;
    if (grad && !(s->flags & KDCL_INPUT_GRAD))
        return kdcl__error(run->ctx, KDCL_EINVAL,
                           "plugin %s gives no gradient for input %s",
                           run->plugin->name, name);
    if (grad && grad->dtype != KDCL_DTYPE_F32)
        return kdcl__error(run->ctx, KDCL_EDTYPE,
                           "gradient of %s must be f32", name);
    s->grad = grad;
    return KDCL_OK;
}

/* Labels must lie in [0, C) (or be -100 where allowed). */
static int check_labels(kdcl_run *run, struct slot *s)
{
    const kdcl_tensor *logits = io_input(&run->io, "student.logits");
    int64_t c, n = s->input->numel;
    int32_t *buf;
    int status = KDCL_OK;
    if (!logits || s->checked)
        return KDCL_OK;
    c = kdcl_tensor_dim(logits, -1);
    buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
    if (!buf)
        return kdcl__error(run->ctx, KDCL_ENOMEM, "out of memory");
    status = kdcl_tensor_read(s->input, buf, (size_t)n * sizeof *buf);
    for (int64_t i = 0; !status && i < n; i++) {
        bool ignored = buf[i] == -100 && (s->flags & KDCL_INPUT_IGNORE);
        if (!ignored && (buf[i] < 0 || buf[i] >= c))
            status = kdcl__error(run->ctx, KDCL_ERANGE,
                                 "%s[%lld] = %d is out of range [0, %lld)%s",
                                 s->name, (long long)i, (int)buf[i],
                                 (long long)c,
                                 (s->flags & KDCL_INPUT_IGNORE)
                                     ? " (or -100 to ignore the row)"
                                     : "");
    }
    free(buf);
    if (!status)
        s->checked = true;
    return status;
}

static int check_inputs(kdcl_run *run)
{
    const struct kdcl_plugin *p = run->plugin;
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(p, i);
        bool found = false;
        if (!(d->flags & KDCL_INPUT_REQUIRED))
            continue;
        for (size_t j = 0; j < run->io.n && !found; j++)
            found = run->io.slots[j].input
                    && name_matches(d->name, run->io.slots[j].name);
        if (!found)
            return kdcl__error(run->ctx, KDCL_EMISSING,
                               "plugin %s needs input %s %s", p->name,
                               d->name, d->shape ? d->shape : "");
    }
    for (size_t j = 0; j < run->io.n; j++) {
        struct slot *s = &run->io.slots[j];
        int status;
        if (s->grad && !s->input)
            return kdcl__error(run->ctx, KDCL_EMISSING,
                               "a gradient of %s was asked for but the "
                               "input is not given",
                               s->name);
        if (s->grad && s->input && s->grad->numel != s->input->numel)
            return kdcl__error(run->ctx, KDCL_ESHAPE,
                               "gradient of %s has %lld elements, the input "
                               "%lld",
                               s->name, (long long)s->grad->numel,
                               (long long)s->input->numel);
        if (s->input && (s->flags & KDCL_INPUT_LABELS)) {
            status = check_labels(run, s);
            if (status)
                return status;
        }
    }
    return KDCL_OK;
}

int kdcl_run_forward(kdcl_run *run)
{
    int status = check_inputs(run);
    if (status)
        return status;
    status = kdcl_tensor_fill(run->io.output, 0.0);
    if (status)
        return status;
    return run->plugin->forward(run->state, &run->io);
}

int kdcl_run_backward(kdcl_run *run)
{
    int (*backward)(void *, kdcl_io *) = KDCL__PLUGIN_FN(run->plugin,
                                                         backward);
    return backward ? backward(run->state, &run->io) : KDCL_OK;
}

int kdcl_run_result(kdcl_run *run, double *loss, double *terms,
                    size_t n_terms)
{
    float buf[64];
    float *vals = buf;
    size_t n = (size_t)run->io.output->numel;
    int status;
    if (n > 64 && !(vals = malloc(n * sizeof *vals)))
        return kdcl__error(run->ctx, KDCL_ENOMEM, "out of memory");
    status = kdcl_tensor_read(run->io.output, vals, n * sizeof *vals);
    if (!status) {
        if (loss)
            *loss = vals[0];
        for (size_t i = 0; i < n_terms && i + 1 < n; i++)
            terms[i] = vals[i + 1];
    }
    if (vals != buf)
        free(vals);
    return status;
}

int kdcl_run_trainable(kdcl_run *run, uint32_t i, struct kdcl_trainable *out)
{
    memset(out, 0, sizeof *out);
    out->struct_size = sizeof *out;
    int (*fn)(void *, uint32_t, struct kdcl_trainable *) =
        KDCL__PLUGIN_FN(run->plugin, trainable);
    return fn ? fn(run->state, i, out) : KDCL_ENOTFOUND;
}

int kdcl_run_event(kdcl_run *run, int event, int64_t index)
{
    int (*fn)(void *, int, int64_t) = KDCL__PLUGIN_FN(run->plugin, event);
    return fn ? fn(run->state, event, index) : KDCL_OK;
}

int kdcl_run_cost(kdcl_run *run, double *flops, double *bytes)
{
    *flops = 0;
    *bytes = 0;
    int (*cost)(void *, const kdcl_io *, double *, double *) =
        KDCL__PLUGIN_FN(run->plugin, cost);
    if (cost)
        return cost(run->state, &run->io, flops, bytes);
    for (size_t i = 0; i < run->io.n; i++) {
        const struct slot *s = &run->io.slots[i];
        if (s->input)
            *bytes += (double)s->input->bytes;
        if (s->grad)
            *bytes += (double)s->grad->bytes;
    }
    return KDCL_OK;
}

const struct kdcl_plugin *kdcl__run_plugin(const kdcl_run *run)
{
    return run->plugin;
}
