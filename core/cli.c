/*
 * core/cli.c - the kdcl command: dispatch, help, `kdcl devices` and
 * `kdcl plugins`.  `kdcl loss` is in cli_loss.c, `kdcl bench` in
 * cli_bench.c.
 */
#include "cli.h"
#include "params.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: kdcl <command> [options]\n"
    "\n"
    "commands:\n"
    "  devices [--json]                 list OpenCL devices\n"
    "  plugins [--plugin-dir DIR]... [--json]\n"
    "                                   list distillation plugins\n"
    "  loss --plugin NAME [--input NAME=FILE.npy]... [--student S.npy]\n"
    "       [--teacher T.npy] [--labels Y.npy] [--set KEY=VALUE]...\n"
    "       [--grad-out [NAME=]FILE.npy]... [--device SPEC] [--json]\n"
    "                                   compute a plugin's loss and "
    "gradients\n"
    "  bench [--device SPEC] [--plugin NAME]... [--json OUT.json]\n"
    "                                   measure bandwidth and plugin speed\n"
    "  train CONFIG.yaml [--set KEY=VALUE]... [--json OUT.json]\n"
    "                                   train a model (cross-entropy)\n"
    "  distill CONFIG.yaml [--set KEY=VALUE]... [--baseline] [--json OUT]\n"
    "                                   distil a student from a teacher\n"
    "  version                          print the version\n"
    "\n"
    "Run 'kdcl <command> --help' for a command's options.\n"
    "Device specs: auto, an index, cpu, gpu, gpu:1, or a name substring.\n";

int cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("kdcl: error: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "kdcl %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'kdcl %s --help' for usage.\n", cmd);
    return CLI_USAGE;
}

void cli_log(void *user, int level, const char *msg)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    (void)user;
    fprintf(stderr, "kdcl: %s: %s\n",
            level >= 0 && level <= 3 ? names[level] : "log", msg);
}

static int log_level(void)
{
    const char *e = getenv("KDCL_LOG");
    return e ? atoi(e) : KDCL_LOG_WARN;
}

void cli_training_threads(void)
{
    const char *layers = getenv("KDCL_LAYERS");
    if (layers && !strcmp(layers, "kernel"))
        return;
    setenv("POCL_MAX_PTHREAD_COUNT", "1", 0); /* 0: the user's value wins */
}

kdcl_context *cli_open(const char *spec)
{
    kdcl_context *ctx = NULL;
    int status = kdcl_context_init(&ctx);
    if (ctx)
        kdcl_context_set_log(ctx, cli_log, NULL, log_level());
    if (!status)
        status = kdcl_context_open(ctx, spec);
    if (status) {
        cli_error("%s", kdcl_context_errmsg(ctx));
        kdcl_context_free(ctx);
        return NULL;
    }
    return ctx;
}

kdcl_registry *cli_registry(const char *const *dirs, size_t n_dirs)
{
    kdcl_registry *reg = NULL;
    if (kdcl_registry_init(&reg) || kdcl_registry_load_default(reg, dirs,
                                                                n_dirs)) {
        cli_error("out of memory while loading plugins");
        kdcl_registry_free(reg);
        return NULL;
    }
    return reg;
}

int cli_list_add(struct cli_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *grow = realloc(l->v, cap * sizeof *l->v);
        if (!grow)
            return KDCL_ENOMEM;
        l->v = grow;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return KDCL_OK;
}

void cli_list_free(struct cli_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

int cli_json_write(cJSON *doc, const char *path)
{
    char *text = cJSON_Print(doc);
    int rc = CLI_OK;
    cJSON_Delete(doc);
    if (!text)
        return cli_error("out of memory");
    if (!path || strcmp(path, "-") == 0) {
        printf("%s\n", text);
    } else {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        f = fopen(tmp, "w");
        if (!f || fprintf(f, "%s\n", text) < 0 || fclose(f) != 0
            || rename(tmp, path) != 0) {
            rc = cli_error("cannot write %s", path);
            remove(tmp);
        }
    }
    cJSON_free(text);
    return rc;
}

static const char *device_type_name(uint32_t t)
{
    switch (t) {
    case KDCL_DEVICE_CPU: return "cpu";
    case KDCL_DEVICE_GPU: return "gpu";
    case KDCL_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

cJSON *cli_device_json(const struct kdcl_device_info *d)
{
    cJSON *o = cJSON_CreateObject();
    char ver[16];
    cJSON_AddNumberToObject(o, "index", d->index);
    cJSON_AddStringToObject(o, "name", d->name);
    cJSON_AddStringToObject(o, "type", device_type_name(d->type));
    cJSON_AddStringToObject(o, "vendor", d->vendor);
    cJSON_AddNumberToObject(o, "vendor_id", d->vendor_id);
    cJSON_AddStringToObject(o, "platform", d->platform_name);
    cJSON_AddStringToObject(o, "platform_version", d->platform_version);
    cJSON_AddStringToObject(o, "device_version", d->device_version);
    cJSON_AddStringToObject(o, "driver_version", d->driver_version);
    snprintf(ver, sizeof ver, "%u.%u", d->cl_c_version / 100,
             d->cl_c_version % 100 / 10);
    cJSON_AddStringToObject(o, "opencl_c_version", ver);
    cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
    cJSON_AddNumberToObject(o, "clock_mhz", d->clock_mhz);
    cJSON_AddNumberToObject(o, "global_mem_bytes", (double)d->global_mem);
    cJSON_AddNumberToObject(o, "max_alloc_bytes", (double)d->max_alloc);
    cJSON_AddNumberToObject(o, "local_mem_bytes", (double)d->local_mem);
    cJSON_AddBoolToObject(o, "local_mem_dedicated", d->local_mem_is_local);
    cJSON_AddNumberToObject(o, "max_work_group_size",
                            (double)d->max_wg_size);
    cJSON_AddBoolToObject(o, "fp64", d->fp64);
    cJSON_AddBoolToObject(o, "fp16", d->fp16);
    cJSON_AddBoolToObject(o, "subgroups", d->subgroups);
    cJSON_AddBoolToObject(o, "work_group_collectives", d->wg_collectives);
    return o;
}

static void human_bytes(uint64_t b, char *buf, size_t len)
{
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static int cmd_devices(int argc, char **argv)
{
    static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bool json = false;
    kdcl_context *ctx = NULL;
    int c, status;

    optind = 1;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        if (c == 'j')
            json = true;
        else if (c == 'h') {
            printf("usage: kdcl devices [--json]\n\nLists every OpenCL "
                   "device with the capabilities kdcl reads from it.\n");
            return CLI_OK;
        } else
            return cli_usage("devices", "unknown option");
    }
    if (optind < argc)
        return cli_usage("devices", "unexpected argument '%s'", argv[optind]);
    status = kdcl_context_init(&ctx);
    if (status) {
        cli_error("%s", kdcl_context_errmsg(ctx));
        kdcl_context_free(ctx);
        return CLI_FAIL;
    }
    if (json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; i < kdcl_context_device_count(ctx); i++)
            cJSON_AddItemToArray(
                arr, cli_device_json(kdcl_context_device_info(ctx, i)));
        kdcl_context_free(ctx);
        return cli_json_write(arr, "-");
    }
    {
        size_t best = 0;
        kdcl_context_select(ctx, "auto", &best);
        for (size_t i = 0; i < kdcl_context_device_count(ctx); i++) {
            const struct kdcl_device_info *d =
                kdcl_context_device_info(ctx, i);
            char gm[32], lm[32], ma[32];
            human_bytes(d->global_mem, gm, sizeof gm);
            human_bytes(d->local_mem, lm, sizeof lm);
            human_bytes(d->max_alloc, ma, sizeof ma);
            printf("%zu%s %s: %s\n", i, i == best ? "*" : "",
                   device_type_name(d->type), d->name);
            printf("    platform   %s (%s)\n", d->platform_name,
                   d->platform_version);
            printf("    vendor     %s (id 0x%x), driver %s\n", d->vendor,
                   d->vendor_id, d->driver_version);
            printf("    version    %s, OpenCL C %u.%u\n", d->device_version,
                   d->cl_c_version / 100, d->cl_c_version % 100 / 10);
            printf("    compute    %u units at %u MHz, work-group <= %llu\n",
                   d->compute_units, d->clock_mhz,
                   (unsigned long long)d->max_wg_size);
            printf("    memory     %s global (max alloc %s), %s local%s\n",
                   gm, ma, lm, d->local_mem_is_local ? "" : " (emulated)");
            printf("    features   fp64 %s, fp16 %s, subgroups %s, "
                   "work-group collectives %s\n",
                   d->fp64 ? "yes" : "no", d->fp16 ? "yes" : "no",
                   d->subgroups ? "yes" : "no",
                   d->wg_collectives ? "yes" : "no");
        }
        printf("(* = the device 'auto' selects)\n");
    }
    kdcl_context_free(ctx);
    return CLI_OK;
}

static const char *param_type_name(uint32_t t)
{
    static const char *names[] = {"float", "int", "bool", "enum", "string"};
    return t <= KDCL_PARAM_STRING ? names[t] : "?";
}

static void range_str(const struct kdcl_param_desc *d, char *buf, size_t len)
{
    if (d->type == KDCL_PARAM_ENUM) {
        snprintf(buf, len, "%s", d->choices);
        return;
    }
    if (!(d->flags & (KDCL_PARAM_HAS_MIN | KDCL_PARAM_HAS_MAX))) {
        snprintf(buf, len, "%s", d->type == KDCL_PARAM_BOOL ? "0|1" : "any");
        return;
    }
    if (!(d->flags & KDCL_PARAM_HAS_MAX))
        snprintf(buf, len, "%s %g", (d->flags & KDCL_PARAM_MIN_OPEN) ? ">"
                                                                      : ">=",
                 d->min);
    else if (!(d->flags & KDCL_PARAM_HAS_MIN))
        snprintf(buf, len, "%s %g", (d->flags & KDCL_PARAM_MAX_OPEN) ? "<"
                                                                      : "<=",
                 d->max);
    else
        snprintf(buf, len, "%s%g, %g%s",
                 (d->flags & KDCL_PARAM_MIN_OPEN) ? "(" : "[", d->min, d->max,
                 (d->flags & KDCL_PARAM_MAX_OPEN) ? ")" : "]");
}

static cJSON *plugin_json(const struct kdcl_plugin *p, const char *path)
{
    cJSON *o = cJSON_CreateObject(), *arr;
    char range[256];
    cJSON_AddStringToObject(o, "name", p->name);
    cJSON_AddStringToObject(o, "family", p->family);
    cJSON_AddStringToObject(o, "version", p->version ? p->version : "");
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddStringToObject(o, "summary", p->summary);
    cJSON_AddStringToObject(o, "citation", p->citation ? p->citation : "");
    cJSON_AddNumberToObject(o, "abi_version", p->abi_version);
    arr = cJSON_AddArrayToObject(o, "params");
    for (uint32_t i = 0; i < p->n_params; i++) {
        const struct kdcl_param_desc *d = kdcl__param_desc(p, i);
        cJSON *q = cJSON_CreateObject();
        range_str(d, range, sizeof range);
        cJSON_AddStringToObject(q, "name", d->name);
        cJSON_AddStringToObject(q, "type", param_type_name(d->type));
        if (d->def)
            cJSON_AddStringToObject(q, "default", d->def);
        else
            cJSON_AddNullToObject(q, "default");
        cJSON_AddStringToObject(q, "range", range);
        cJSON_AddStringToObject(q, "doc", d->doc ? d->doc : "");
        cJSON_AddItemToArray(arr, q);
    }
    arr = cJSON_AddArrayToObject(o, "inputs");
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(p, i);
        cJSON *q = cJSON_CreateObject();
        cJSON_AddStringToObject(q, "name", d->name);
        cJSON_AddStringToObject(q, "shape", d->shape ? d->shape : "");
        cJSON_AddBoolToObject(q, "required", d->flags & KDCL_INPUT_REQUIRED);
        cJSON_AddBoolToObject(q, "gradient", d->flags & KDCL_INPUT_GRAD);
        cJSON_AddStringToObject(q, "dtype",
                                (d->flags & KDCL_INPUT_INT) ? "int" : "float");
        cJSON_AddStringToObject(q, "doc", d->doc ? d->doc : "");
        cJSON_AddItemToArray(arr, q);
    }
    arr = cJSON_AddArrayToObject(o, "terms");
    for (uint32_t i = 0; i < p->n_terms; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(p->terms[i]));
    return o;
}

static void plugin_print(const struct kdcl_plugin *p, const char *path)
{
    char range[256];
    printf("%s %s (%s)\n", p->name, p->version ? p->version : "",
           p->family);
    printf("  %s\n", p->summary);
    if (p->citation)
        printf("  cites: %s\n", p->citation);
    printf("  file:  %s\n", path);
    if (p->n_params)
        printf("  params:\n");
    for (uint32_t i = 0; i < p->n_params; i++) {
        const struct kdcl_param_desc *d = kdcl__param_desc(p, i);
        range_str(d, range, sizeof range);
        printf("    %-14s %-6s default %-8s range %-16s %s\n", d->name,
               param_type_name(d->type), d->def ? d->def : "-", range,
               d->doc ? d->doc : "");
    }
    if (p->n_inputs)
        printf("  inputs:\n");
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(p, i);
        printf("    %-18s %-10s %-9s%s %s\n", d->name,
               d->shape ? d->shape : "",
               (d->flags & KDCL_INPUT_REQUIRED) ? "required" : "optional",
               (d->flags & KDCL_INPUT_GRAD) ? ", grad" : "",
               d->doc ? d->doc : "");
    }
    if (p->n_terms) {
        printf("  terms: ");
        for (uint32_t i = 0; i < p->n_terms; i++)
            printf("%s%s", i ? ", " : "", p->terms[i]);
        printf("\n");
    }
}

static int cmd_plugins(int argc, char **argv)
{
    static const struct option opts[] = {
        {"plugin-dir", required_argument, NULL, 'd'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct cli_list dirs = {0};
    bool json = false;
    kdcl_registry *reg;
    int c, rc = CLI_OK;

    optind = 1;
    while ((c = getopt_long(argc, argv, "d:jh", opts, NULL)) != -1) {
        if (c == 'd')
            cli_list_add(&dirs, optarg);
        else if (c == 'j')
            json = true;
        else if (c == 'h') {
            printf("usage: kdcl plugins [--plugin-dir DIR]... [--json]\n\n"
                   "Lists the plugins found on the search path "
                   "(--plugin-dir, $KDCL_PLUGIN_PATH,\n"
                   "~/.local/lib/kdcl/plugins, the installed directory, the "
                   "build tree)\nand the files rejected, with the reason.\n");
            cli_list_free(&dirs);
            return CLI_OK;
        } else {
            cli_list_free(&dirs);
            return cli_usage("plugins", "unknown option");
        }
    }
    if (optind < argc) {
        cli_list_free(&dirs);
        return cli_usage("plugins", "unexpected argument '%s'", argv[optind]);
    }
    reg = cli_registry(dirs.v, dirs.n);
    cli_list_free(&dirs);
    if (!reg)
        return CLI_FAIL;
    if (json) {
        cJSON *doc = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(doc, "plugins");
        cJSON *rej = cJSON_AddArrayToObject(doc, "rejected");
        for (size_t i = 0; i < kdcl_registry_count(reg); i++) {
            const char *path;
            const struct kdcl_plugin *p = kdcl_registry_get(reg, i, &path);
            cJSON_AddItemToArray(arr, plugin_json(p, path));
        }
        for (size_t i = 0; i < kdcl_registry_rejected_count(reg); i++) {
            const char *why;
            const char *path = kdcl_registry_rejected(reg, i, &why);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "file", path);
            cJSON_AddStringToObject(o, "reason", why);
            cJSON_AddItemToArray(rej, o);
        }
        rc = cli_json_write(doc, "-");
    } else {
        for (size_t i = 0; i < kdcl_registry_count(reg); i++) {
            const char *path;
            const struct kdcl_plugin *p = kdcl_registry_get(reg, i, &path);
            if (i)
                printf("\n");
            plugin_print(p, path);
        }
        if (kdcl_registry_count(reg) == 0)
            printf("no plugins found\n");
        for (size_t i = 0; i < kdcl_registry_rejected_count(reg); i++) {
            const char *why;
            const char *path = kdcl_registry_rejected(reg, i, &why);
            printf("%srejected %s: %s\n", i ? "" : "\n", path, why);
        }
    }
    kdcl_registry_free(reg);
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;
    if (!cmd || !strcmp(cmd, "help") || !strcmp(cmd, "--help")
        || !strcmp(cmd, "-h")) {
        fputs(usage_text, cmd ? stdout : stderr);
        return cmd ? CLI_OK : CLI_USAGE;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("kdcl %s (plugin ABI %u)\n", kdcl_version(),
               kdcl_plugin_abi());
        return CLI_OK;
    }
    if (!strcmp(cmd, "devices"))
        return cmd_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "plugins"))
        return cmd_plugins(argc - 1, argv + 1);
    if (!strcmp(cmd, "loss"))
        return cli_loss(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return cli_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "train"))
        return cli_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "distill"))
        return cli_distill(argc - 1, argv + 1);
    fprintf(stderr, "kdcl: unknown command '%s'\n\n%s", cmd, usage_text);
    return CLI_USAGE;
}
