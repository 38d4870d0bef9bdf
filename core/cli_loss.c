/*
 * core/cli_loss.c - `kdcl loss`: read .npy inputs, run one plugin's forward
 * and backward on a device, print the loss and terms, write gradients.
 * Everything is checked before any output file is touched; on failure
 * nothing is written.
 */
#include "cli.h"
#include "npy.h"
#include "params.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

struct input {
    const char *name;
    const char *path;
    struct kdcl__array host;
    kdcl_tensor *dev;
};

struct grad_out {
    const char *name; /* NULL: the plugin's only gradient input */
    const char *path;
    kdcl_tensor *dev;
};

static const char loss_help[] =
    "usage: kdcl loss --plugin NAME [options]\n"
    "\n"
    "Computes a plugin's loss on .npy inputs on one device, prints\n"
    "'loss <value>' and one 'term <name> <value>' line per named term,\n"
    "and writes gradients with --grad-out.\n"
    "\n"
    "  --plugin NAME             the plugin (see 'kdcl plugins')\n"
    "  --input NAME=FILE.npy     bind an input by its LOSSES.md name\n"
    "  --student FILE.npy        same as --input student.logits=FILE\n"
    "  --teacher FILE.npy        same as --input teacher.logits=FILE\n"
    "  --labels FILE.npy         same as --input labels=FILE\n"
    "  --set KEY=VALUE           set a hyperparameter\n"
    "  --grad-out [NAME=]FILE    write the gradient of input NAME (default:\n"
    "                            the plugin's only student input)\n"
    "  --device SPEC             auto (default), index, cpu, gpu, name...\n"
    "  --plugin-dir DIR          look for plugins in DIR first\n"
    "  --json                    print {plugin, loss, terms, device}\n";

/* Split "NAME=VALUE"; returns false when there is no '='. */
static bool split_kv(const char *s, char *name, size_t len, const char **val)
{
    const char *eq = strchr(s, '=');
    size_t n;
    if (!eq || eq == s || (size_t)(eq - s) >= len)
        return false;
    n = (size_t)(eq - s);
    memcpy(name, s, n);
    name[n] = '\0';
    *val = eq + 1;
    return true;
}

/* Convert a host array to what the input expects (f32 or i32). */
static int prepare_host(struct input *in, uint32_t flags)
{
    char err[512];
    int want = (flags & KDCL_INPUT_INT) ? KDCL_DTYPE_I32 : KDCL_DTYPE_F32;
    bool is_int = in->host.dtype == KDCL_DTYPE_I32
                  || in->host.dtype == KDCL_DTYPE_I64
                  || in->host.dtype == KDCL_DTYPE_U8;
    if ((want == KDCL_DTYPE_I32) != is_int)
        return cli_error("%s: input %s must hold %s, the file holds %s",
                         in->path, in->name,
                         want == KDCL_DTYPE_I32 ? "integers" : "floats",
                         kdcl_dtype_name(in->host.dtype));
    if (in->host.dtype == want)
        return CLI_OK;
    if (kdcl__array_convert(&in->host, want, &in->host, err, sizeof err))
        return cli_error("%s (input %s)", err, in->name);
    return CLI_OK;
}

static uint32_t input_flags(const struct kdcl_plugin *p, const char *name,
                            bool *found)
{
    const struct kdcl_input_desc *d = kdcl__input_find(p, name);
    *found = d != NULL;
    return d ? d->flags : 0;
}

int cli_loss(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plugin", required_argument, NULL, 'p'},
        {"input", required_argument, NULL, 'i'},
        {"student", required_argument, NULL, 's'},
        {"teacher", required_argument, NULL, 't'},
        {"labels", required_argument, NULL, 'y'},
        {"set", required_argument, NULL, 'S'},
        {"grad-out", required_argument, NULL, 'g'},
        {"device", required_argument, NULL, 'D'},
        {"plugin-dir", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *plugin_name = NULL, *device = "auto";
    struct cli_list dirs = {0}, sets = {0}, in_args = {0}, grad_args = {0};
    struct input *ins = NULL;
    struct grad_out *gouts = NULL;
    size_t n_in = 0, n_gout = 0;
    bool json = false;
    kdcl_registry *reg = NULL;
    kdcl_context *ctx = NULL;
    kdcl_params *params = NULL;
    kdcl_run *run = NULL;
    const struct kdcl_plugin *plugin;
    double loss = 0, terms[64] = {0};
    char names[8][256];
    int c, rc = CLI_FAIL;

    optind = 1;
    while ((c = getopt_long(argc, argv, "p:i:s:t:y:S:g:D:d:jh", opts, NULL))
           != -1) {
        int n = -1;
        switch (c) {
        case 'p': plugin_name = optarg; break;
        case 'i': cli_list_add(&in_args, optarg); break;
        case 's': n = 0; break;
        case 't': n = 1; break;
        case 'y': n = 2; break;
        case 'S': cli_list_add(&sets, optarg); break;
        case 'g': cli_list_add(&grad_args, optarg); break;
        case 'D': device = optarg; break;
        case 'd': cli_list_add(&dirs, optarg); break;
        case 'j': json = true; break;
        case 'h':
            fputs(loss_help, stdout);
            rc = CLI_OK;
            goto out;
        default:
            rc = cli_usage("loss", "unknown option");
            goto out;
        }
        if (n >= 0) {
            static const char *const shorthand[] = {
                "student.logits", "teacher.logits", "labels"};
            snprintf(names[n], sizeof names[n], "%s=%s", shorthand[n], optarg);
            cli_list_add(&in_args, names[n]);
        }
    }
    if (optind < argc) {
        rc = cli_usage("loss", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    if (!plugin_name) {
        rc = cli_usage("loss", "--plugin NAME is required");
        goto out;
    }

    reg = cli_registry(dirs.v, dirs.n);
    if (!reg)
        goto out;
    plugin = kdcl_registry_find(reg, plugin_name);
    if (!plugin) {
        cli_error("unknown plugin '%s' (run 'kdcl plugins' to list them)",
                  plugin_name);
        goto out;
    }

    /* Parameters first: they need no device and fail fast. */
    if (kdcl_context_init(&ctx) && !ctx) {
        cli_error("out of memory");
        goto out;
    }
    kdcl_context_set_log(ctx, cli_log, NULL, KDCL_LOG_WARN);
    if (kdcl_params_init(ctx, plugin, &params)) {
        cli_error("%s", kdcl_context_errmsg(ctx));
        goto out;
    }
    for (size_t i = 0; i < sets.n; i++)
        if (kdcl_params_set_kv(params, sets.v[i])) {
            cli_error("%s", kdcl_context_errmsg(ctx));
            goto out;
        }

    /* Inputs: parse, read and convert every file before touching the
       device. */
    ins = calloc(in_args.n ? in_args.n : 1, sizeof *ins);
    gouts = calloc(grad_args.n ? grad_args.n : 1, sizeof *gouts);
    if (!ins || !gouts) {
        cli_error("out of memory");
        goto out;
    }
    for (size_t i = 0; i < in_args.n; i++) {
        char name[256], err[1024];
        const char *path;
        bool known;
        uint32_t flags;
        struct input *in = &ins[n_in];
        if (!split_kv(in_args.v[i], name, sizeof name, &path) || !*path) {
            rc = cli_usage("loss", "--input takes NAME=FILE.npy, got '%s'",
                           in_args.v[i]);
            goto out;
        }
        flags = input_flags(plugin, name, &known);
        if (!known) {
            cli_error("plugin %s reads no input named '%s'", plugin->name,
                      name);
            goto out;
        }
        for (size_t j = 0; j < n_in; j++)
            if (!strcmp(ins[j].name, name)) {
                cli_error("input %s given twice", name);
                goto out;
            }
        in->name = kdcl__strdup(name);
        in->path = path;
        n_in++;
        if (kdcl__npy_read(path, &in->host, err, sizeof err)) {
            cli_error("%s", err);
            goto out;
        }
        if (prepare_host(in, flags))
            goto out;
    }
    for (size_t i = 0; i < grad_args.n; i++) {
        char name[256];
        const char *path;
        struct grad_out *g = &gouts[n_gout];
        if (split_kv(grad_args.v[i], name, sizeof name, &path)) {
            bool known;
            uint32_t flags = input_flags(plugin, name, &known);
            if (!known || !(flags & KDCL_INPUT_GRAD)) {
                cli_error("plugin %s gives no gradient for '%s'",
                          plugin->name, name);
                goto out;
            }
            g->name = kdcl__strdup(name);
        } else {
            /* The one student input that was given. */
            const char *only = NULL;
            int count = 0;
            for (size_t j = 0; j < n_in; j++) {
                bool known;
                if (input_flags(plugin, ins[j].name, &known) & KDCL_INPUT_GRAD) {
                    only = ins[j].name;
                    count++;
                }
            }
            if (count != 1) {
                rc = cli_usage("loss",
                               "--grad-out %s: name the input (NAME=FILE); "
                               "%d inputs of %s take gradients",
                               grad_args.v[i], count, plugin->name);
                goto out;
            }
            path = grad_args.v[i];
            g->name = kdcl__strdup(only);
        }
        g->path = path;
        n_gout++;
        {
            bool given = false;
            for (size_t j = 0; j < n_in; j++)
                given = given || !strcmp(ins[j].name, g->name);
            if (!given) {
                cli_error("--grad-out %s: input %s is not given", path,
                          g->name);
                goto out;
            }
        }
    }

    /* Device work. */
    if (kdcl_context_open(ctx, device)) {
        cli_error("%s", kdcl_context_errmsg(ctx));
        goto out;
    }
    if (kdcl_run_init(ctx, plugin, params, &run)) {
        cli_error("%s", kdcl_context_errmsg(ctx));
        goto out;
    }
    for (size_t i = 0; i < n_in; i++) {
        struct input *in = &ins[i];
        if (kdcl_tensor_init(ctx, in->host.dtype, in->host.ndim,
                             in->host.shape, &in->dev)
            || kdcl_tensor_write(in->dev, in->host.data,
                                 kdcl_tensor_bytes(in->dev))
            || kdcl_run_set_input(run, in->name, in->dev)) {
            cli_error("%s", kdcl_context_errmsg(ctx));
            goto out;
        }
    }
    for (size_t i = 0; i < n_gout; i++) {
        struct grad_out *g = &gouts[i];
        const struct input *in = NULL;
        for (size_t j = 0; j < n_in; j++)
            if (!strcmp(ins[j].name, g->name))
                in = &ins[j];
        if (kdcl_tensor_init(ctx, KDCL_DTYPE_F32, in->host.ndim,
                             in->host.shape, &g->dev)
            || kdcl_run_set_grad(run, g->name, g->dev)) {
            cli_error("%s", kdcl_context_errmsg(ctx));
            goto out;
        }
    }
    if (kdcl_run_forward(run) || kdcl_run_backward(run)
        || kdcl_run_result(run, &loss, terms, plugin->n_terms)) {
        cli_error("%s", kdcl_context_errmsg(ctx));
        goto out;
    }

    /* Outputs, only now that everything succeeded. */
    for (size_t i = 0; i < n_gout; i++) {
        struct grad_out *g = &gouts[i];
        struct kdcl__array a = {0};
        char err[1024];
        int status;
        a.dtype = KDCL_DTYPE_F32;
        a.ndim = kdcl_tensor_ndim(g->dev);
        for (uint32_t d = 0; d < a.ndim; d++)
            a.shape[d] = kdcl_tensor_dim(g->dev, (int)d);
        a.numel = kdcl_tensor_numel(g->dev);
        a.data = malloc(kdcl_tensor_bytes(g->dev) + 1);
        if (!a.data) {
            cli_error("out of memory");
            goto out;
        }
        status = kdcl_tensor_read(g->dev, a.data, kdcl_tensor_bytes(g->dev));
        if (status) {
            free(a.data);
            cli_error("%s", kdcl_context_errmsg(ctx));
            goto out;
        }
        status = kdcl__npy_write(g->path, &a, err, sizeof err);
        free(a.data);
        if (status) {
            cli_error("%s", err);
            goto out;
        }
    }
    if (json) {
        cJSON *doc = cJSON_CreateObject(), *t;
        cJSON_AddStringToObject(doc, "plugin", plugin->name);
        cJSON_AddNumberToObject(doc, "loss", loss);
        t = cJSON_AddObjectToObject(doc, "terms");
        for (uint32_t i = 0; i < plugin->n_terms && i < 64; i++)
            cJSON_AddNumberToObject(t, plugin->terms[i], terms[i]);
        cJSON_AddItemToObject(doc, "device",
                              cli_device_json(kdcl_context_device(ctx)));
        rc = cli_json_write(doc, "-");
    } else {
        printf("loss %.9g\n", loss);
        for (uint32_t i = 0; i < plugin->n_terms && i < 64; i++)
            printf("term %s %.9g\n", plugin->terms[i], terms[i]);
        rc = CLI_OK;
    }
out:
    kdcl_run_free(run);
    for (size_t i = 0; i < n_in; i++) {
        kdcl_tensor_free(ins[i].dev);
        kdcl__array_free(&ins[i].host);
        free((char *)ins[i].name);
    }
    for (size_t i = 0; i < n_gout; i++) {
        kdcl_tensor_free(gouts[i].dev);
        free((char *)gouts[i].name);
    }
    free(ins);
    free(gouts);
    kdcl_params_free(params);
    kdcl_context_free(ctx);
    kdcl_registry_free(reg);
    cli_list_free(&dirs);
    cli_list_free(&sets);
    cli_list_free(&in_args);
    cli_list_free(&grad_args);
    return rc;
}
