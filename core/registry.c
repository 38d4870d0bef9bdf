/*
 * core/registry.c - the plugin loader: search path, dlopen, ABI
 * negotiation and descriptor validation.  Every way a plugin can be bad is
 * recorded with its own message and never stops the other plugins.
 */
#include "internal.h"
#include "params.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct entry {
    const struct kdcl_plugin *plugin;
    char *path;
    void *handle;
};

struct rejected {
    char *path;
    char *reason;
};

struct kdcl_registry {
    struct entry *entries;
    size_t n, cap;
    struct rejected *rej;
    size_t n_rej, cap_rej;
};

int kdcl_registry_init(kdcl_registry **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? KDCL_OK : KDCL_ENOMEM;
}

void kdcl_registry_free(kdcl_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n; i++) {
        free(reg->entries[i].path);
        if (reg->entries[i].handle)
            dlclose(reg->entries[i].handle);
    }
    for (size_t i = 0; i < reg->n_rej; i++) {
        free(reg->rej[i].path);
        free(reg->rej[i].reason);
    }
    free(reg->entries);
    free(reg->rej);
    free(reg);
}

static int reject(kdcl_registry *reg, const char *path, int status,
                  const char *fmt, ...) KDCL__PRINTF(4, 5);

static int reject(kdcl_registry *reg, const char *path, int status,
                  const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (reg->n_rej == reg->cap_rej) {
        size_t cap = reg->cap_rej ? reg->cap_rej * 2 : 8;
        void *grow = realloc(reg->rej, cap * sizeof *reg->rej);
        if (!grow)
            return KDCL_ENOMEM;
        reg->rej = grow;
        reg->cap_rej = cap;
    }
    reg->rej[reg->n_rej].path = kdcl__strdup(path);
    reg->rej[reg->n_rej].reason = kdcl__strdup(msg);
    reg->n_rej++;
    return status;
}

static bool valid_name(const char *s, bool allow_dot_star)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        char c = *s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
                  || c == '-' || (allow_dot_star && (c == '.' || c == '*'));
        if (!ok)
            return false;
    }
    return true;
}

/* Minimal size of an ABI 1 descriptor: up to and including backward. */
#define V1_PLUGIN_SIZE                                                       \
    (offsetof(struct kdcl_plugin, backward) + sizeof(void (*)(void)))
#define V1_PARAM_SIZE                                                        \
    (offsetof(struct kdcl_param_desc, doc) + sizeof(const char *))
#define V1_INPUT_SIZE                                                        \
    (offsetof(struct kdcl_input_desc, doc) + sizeof(const char *))

/* Check a descriptor; on failure write the reason into why. */
static int validate(const struct kdcl_plugin *p, char *why, size_t len)
{
    if (p->struct_size < V1_PLUGIN_SIZE) {
        snprintf(why, len, "descriptor too small (%u bytes, ABI 1 needs %zu)",
                 p->struct_size, (size_t)V1_PLUGIN_SIZE);
        return KDCL_EPLUGIN;
    }
    if (!valid_name(p->name, false)) {
        snprintf(why, len, "descriptor has a missing or invalid name "
                           "(want [a-z0-9_-]+)");
        return KDCL_EPLUGIN;
    }
    if (!p->family || !p->summary) {
        snprintf(why, len, "plugin '%s': descriptor has no family or summary",
                 p->name);
        return KDCL_EPLUGIN;
    }
    if (!p->create || !p->destroy || !p->forward) {
        snprintf(why, len,
                 "plugin '%s': create, destroy and forward are required",
                 p->name);
        return KDCL_EPLUGIN;
    }
    if (p->n_params && (!p->params || p->param_desc_size < V1_PARAM_SIZE)) {
        snprintf(why, len, "plugin '%s': bad parameter schema (params %s, "
                           "param_desc_size %u)",
                 p->name, p->params ? "set" : "NULL", p->param_desc_size);
        return KDCL_EPLUGIN;
    }
    for (uint32_t i = 0; i < p->n_params; i++) {
        const struct kdcl_param_desc *d = kdcl__param_desc(p, i);
        char err[512];
        if (!valid_name(d->name, false)) {
            snprintf(why, len, "plugin '%s': parameter %u has a bad name",
                     p->name, i);
            return KDCL_EPLUGIN;
        }
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(kdcl__param_desc(p, j)->name, d->name) == 0) {
                snprintf(why, len, "plugin '%s': parameter '%s' twice",
                         p->name, d->name);
                return KDCL_EPLUGIN;
            }
        if (d->type > KDCL_PARAM_STRING
            || (d->type == KDCL_PARAM_ENUM && (!d->choices || !*d->choices))) {
            snprintf(why, len,
                     "plugin '%s': parameter '%s' has a bad type or no "
                     "choices",
                     p->name, d->name);
            return KDCL_EPLUGIN;
        }
        if (d->def && kdcl__param_check(d, d->def, NULL, err, sizeof err)) {
            snprintf(why, len, "plugin '%s': default of '%s' is invalid: %s",
                     p->name, d->name, err);
            return KDCL_EPLUGIN;
        }
    }
    if (p->n_inputs && (!p->inputs || p->input_desc_size < V1_INPUT_SIZE)) {
        snprintf(why, len, "plugin '%s': bad input list", p->name);
        return KDCL_EPLUGIN;
    }
    for (uint32_t i = 0; i < p->n_inputs; i++) {
        const struct kdcl_input_desc *d = kdcl__input_desc(p, i);
        if (!valid_name(d->name, true)) {
            snprintf(why, len, "plugin '%s': input %u has a bad name",
                     p->name, i);
            return KDCL_EPLUGIN;
        }
    }
    if (p->n_terms && !p->terms) {
        snprintf(why, len, "plugin '%s': n_terms is %u but terms is NULL",
                 p->name, p->n_terms);
        return KDCL_EPLUGIN;
    }
    for (uint32_t i = 0; i < p->n_terms; i++)
        if (!p->terms[i]) {
            snprintf(why, len, "plugin '%s': term %u has no name", p->name, i);
            return KDCL_EPLUGIN;
        }
    return KDCL_OK;
}

static int add(kdcl_registry *reg, const struct kdcl_plugin *p,
               const char *path, void *handle)
{
    char why[1024];
    int status;
    if (!p)
        return reject(reg, path, KDCL_EPLUGIN,
                      "entry point returned no descriptor (NULL)");
    if (p->abi_version > KDCL_PLUGIN_ABI_VERSION)
        return reject(reg, path, KDCL_EABI,
                      "plugin ABI %u is newer than this host's ABI %u "
                      "(update kdcl)",
                      p->abi_version, KDCL_PLUGIN_ABI_VERSION);
    if (p->abi_version < KDCL_PLUGIN_ABI_MIN)
        return reject(reg, path, KDCL_EABI,
                      "plugin ABI %u is older than the oldest this host "
                      "supports (%u; host ABI %u): rebuild the plugin",
                      p->abi_version, KDCL_PLUGIN_ABI_MIN,
                      KDCL_PLUGIN_ABI_VERSION);
    status = validate(p, why, sizeof why);
    if (status)
        return reject(reg, path, status, "%s", why);
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->entries[i].plugin->name, p->name) == 0)
            return reject(reg, path, KDCL_EEXIST,
                          "duplicate plugin name '%s' (already loaded from "
                          "%s)",
                          p->name, reg->entries[i].path);
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        void *grow = realloc(reg->entries, cap * sizeof *reg->entries);
        if (!grow)
            return KDCL_ENOMEM;
        reg->entries = grow;
        reg->cap = cap;
    }
    reg->entries[reg->n].plugin = p;
    reg->entries[reg->n].path = kdcl__strdup(path);
    reg->entries[reg->n].handle = handle;
    reg->n++;
    return KDCL_OK;
}

int kdcl_registry_add(kdcl_registry *reg, const struct kdcl_plugin *plugin,
                      const char *origin)
{
    return add(reg, plugin, origin ? origin : "(built in)", NULL);
}

int kdcl_registry_load_file(kdcl_registry *reg, const char *path)
{
    void *h;
    kdcl_plugin_entry_fn entry;
    const struct kdcl_plugin *p;
    int status;

    dlerror();
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        return reject(reg, path, KDCL_EPLUGIN,
                      "not a loadable shared object: %s", e ? e : "?");
    }
    *(void **)&entry = dlsym(h, KDCL_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        dlclose(h);
        return reject(reg, path, KDCL_EPLUGIN,
                      "no entry symbol %s (is it a kdcl plugin? use "
                      "KDCL_PLUGIN_DEFINE)",
                      KDCL_PLUGIN_ENTRY_SYMBOL);
    }
    p = entry(KDCL_PLUGIN_ABI_VERSION);
    status = add(reg, p, path, h);
    if (status)
        dlclose(h);
    return status;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int kdcl_registry_load_dir(kdcl_registry *reg, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int status = KDCL_OK;

    if (!d)
        return KDCL_OK;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".so") != 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            void *grow = realloc(names, nc * sizeof *names);
            if (!grow) {
                status = KDCL_ENOMEM;
                goto out;
            }
            names = grow;
            cap = nc;
        }
        names[n] = kdcl__strdup(e->d_name);
        if (!names[n]) {
            status = KDCL_ENOMEM;
            goto out;
        }
        n++;
    }
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (kdcl_registry_load_file(reg, path) == KDCL_ENOMEM) {
            status = KDCL_ENOMEM;
            break;
        }
    }
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return status;
}

/* True when the running program lives under the build tree. */
static bool in_build_tree(void)
{
#ifdef KDCL_BUILD_ROOT
    char exe[PATH_MAX], root[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    size_t rl;
    if (n <= 0 || !realpath(KDCL_BUILD_ROOT, root))
        return false;
    exe[n] = '\0';
    rl = strlen(root);
    return strncmp(exe, root, rl) == 0 && exe[rl] == '/';
#else
    return false;
#endif
}

int kdcl_registry_load_default(kdcl_registry *reg, const char *const *dirs,
                               size_t n_dirs)
{
    const char *env = getenv("KDCL_PLUGIN_PATH");
    const char *home = getenv("HOME");
    char path[PATH_MAX];
    int status;

    for (size_t i = 0; i < n_dirs; i++)
        if ((status = kdcl_registry_load_dir(reg, dirs[i])) != 0)
            return status;
    if (env && *env) {
        char *copy = kdcl__strdup(env), *save = NULL;
        if (!copy)
            return KDCL_ENOMEM;
        for (char *tok = strtok_r(copy, ":", &save); tok;
             tok = strtok_r(NULL, ":", &save))
            kdcl_registry_load_dir(reg, tok);
        free(copy);
    }
    if (home && *home) {
        snprintf(path, sizeof path, "%s/.local/lib/kdcl/plugins", home);
        kdcl_registry_load_dir(reg, path);
    }
#ifdef KDCL_PLUGIN_INSTALL_DIR
    kdcl_registry_load_dir(reg, KDCL_PLUGIN_INSTALL_DIR);
#endif
#ifdef KDCL_BUILD_ROOT
    if (in_build_tree())
        kdcl_registry_load_dir(reg, KDCL_BUILD_ROOT "/plugins");
#endif
    return KDCL_OK;
}

size_t kdcl_registry_count(const kdcl_registry *reg)
{
    return reg->n;
}

const struct kdcl_plugin *kdcl_registry_get(const kdcl_registry *reg,
                                            size_t i, const char **path)
{
    if (i >= reg->n)
        return NULL;
    if (path)
        *path = reg->entries[i].path;
    return reg->entries[i].plugin;
}

const struct kdcl_plugin *kdcl_registry_find(const kdcl_registry *reg,
                                             const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->entries[i].plugin->name, name) == 0)
            return reg->entries[i].plugin;
    return NULL;
}

size_t kdcl_registry_rejected_count(const kdcl_registry *reg)
{
    return reg->n_rej;
}

const char *kdcl_registry_rejected(const kdcl_registry *reg, size_t i,
                                   const char **reason)
{
    if (i >= reg->n_rej)
        return NULL;
    if (reason)
        *reason = reg->rej[i].reason;
    return reg->rej[i].path;
}
