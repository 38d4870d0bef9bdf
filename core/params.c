/*
 * core/params.c - hyperparameter values: parsing user text against a
 * plugin's schema (types, ranges, enum choices) and reading them back.
 */
#include "params.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const struct kdcl_param_desc *kdcl__param_desc(const struct kdcl_plugin *p,
                                               uint32_t i)
{
    return (const struct kdcl_param_desc *)((const char *)p->params
                                            + (size_t)i * p->param_desc_size);
}

const struct kdcl_input_desc *kdcl__input_desc(const struct kdcl_plugin *p,
                                               uint32_t i)
{
    return (const struct kdcl_input_desc *)((const char *)p->inputs
                                            + (size_t)i * p->input_desc_size);
}

static void range_text(const struct kdcl_param_desc *d, char *buf, size_t len)
{
    char lo[64] = "-inf", hi[64] = "inf";
    if (d->flags & KDCL_PARAM_HAS_MIN)
        snprintf(lo, sizeof lo, "%g", d->min);
    if (d->flags & KDCL_PARAM_HAS_MAX)
        snprintf(hi, sizeof hi, "%g", d->max);
    snprintf(buf, len, "%s%s, %s%s",
             (d->flags & KDCL_PARAM_MIN_OPEN) ? "(" : "[", lo, hi,
             (d->flags & KDCL_PARAM_MAX_OPEN) ? ")" : "]");
}

/* The index of text among "a|b|c", or -1. */
static int choice_index(const char *choices, const char *text)
{
    size_t n = strlen(text);
    int idx = 0;
    for (const char *c = choices; *c; idx++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, text, n) == 0)
            return idx;
        if (!bar)
            break;
        c = bar + 1;
    }
    return -1;
}

int kdcl__param_check(const struct kdcl_param_desc *d, const char *text,
                      struct kdcl__value *out, char *err, size_t len)
{
    struct kdcl__value v = {0};
    char *end = NULL;
    char range[160];

    if (!text)
        text = "";
    switch (d->type) {
    case KDCL_PARAM_FLOAT:
        errno = 0;
        v.f = strtod(text, &end);
        if (!*text || *end || errno == ERANGE || !isfinite(v.f)) {
            snprintf(err, len, "'%s' is not a finite number", text);
            return KDCL_EINVAL;
        }
        v.i = (int64_t)v.f;
        break;
    case KDCL_PARAM_INT:
        errno = 0;
        v.i = strtoll(text, &end, 10);
        if (!*text || *end || errno == ERANGE) {
            snprintf(err, len, "'%s' is not an integer", text);
            return KDCL_EINVAL;
        }
        v.f = (double)v.i;
        break;
    case KDCL_PARAM_BOOL:
        if (!strcasecmp(text, "1") || !strcasecmp(text, "true")
            || !strcasecmp(text, "yes") || !strcasecmp(text, "on"))
            v.i = 1;
        else if (!strcasecmp(text, "0") || !strcasecmp(text, "false")
                 || !strcasecmp(text, "no") || !strcasecmp(text, "off"))
            v.i = 0;
        else {
            snprintf(err, len, "'%s' is not a boolean (0/1, true/false)",
                     text);
            return KDCL_EINVAL;
        }
        v.f = (double)v.i;
        text = v.i ? "1" : "0";
        break;
    case KDCL_PARAM_ENUM: {
        int idx = choice_index(d->choices, text);
        if (idx < 0) {
            snprintf(err, len, "'%s' is not one of %s", text, d->choices);
            return KDCL_EINVAL;
        }
        v.i = idx;
        v.f = idx;
        break;
    }
    default:
        break;
    }
    if (d->type == KDCL_PARAM_FLOAT || d->type == KDCL_PARAM_INT) {
        bool lo_bad = (d->flags & KDCL_PARAM_HAS_MIN)
                      && ((d->flags & KDCL_PARAM_MIN_OPEN) ? v.f <= d->min
                                                           : v.f < d->min);
        bool hi_bad = (d->flags & KDCL_PARAM_HAS_MAX)
                      && ((d->flags & KDCL_PARAM_MAX_OPEN) ? v.f >= d->max
                                                           : v.f > d->max);
        if (lo_bad || hi_bad) {
            range_text(d, range, sizeof range);
            snprintf(err, len, "%s is out of range %s", text, range);
            return KDCL_ERANGE;
        }
    }
    if (out) {
        v.s = kdcl__strdup(text);
        if (!v.s) {
            snprintf(err, len, "out of memory");
            return KDCL_ENOMEM;
        }
        *out = v;
    }
    return KDCL_OK;
}

int kdcl_params_init(kdcl_context *ctx, const struct kdcl_plugin *plugin,
                     kdcl_params **out)
{
    kdcl_params *p = calloc(1, sizeof *p);
    *out = NULL;
    if (!p)
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    p->ctx = ctx;
    p->plugin = plugin;
    p->v = calloc(plugin->n_params ? plugin->n_params : 1, sizeof *p->v);
    if (!p->v) {
        free(p);
        return kdcl__error(ctx, KDCL_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < plugin->n_params; i++) {
        const struct kdcl_param_desc *d = kdcl__param_desc(plugin, i);
        char err[512];
        int status;
        if (!d->def)
            continue;
        status = kdcl__param_check(d, d->def, &p->v[i], err, sizeof err);
        if (status) {
            kdcl_params_free(p);
            return kdcl__error(ctx, status, "%s: default of %s: %s",
                               plugin->name, d->name, err);
        }
    }
    *out = p;
    return KDCL_OK;
}

void kdcl_params_free(kdcl_params *p)
{
    if (!p)
        return;
    for (uint32_t i = 0; i < p->plugin->n_params; i++)
        free(p->v[i].s);
    free(p->v);
    free(p);
}

kdcl_params *kdcl__params_dup(const kdcl_params *src)
{
    kdcl_params *p = calloc(1, sizeof *p);
    uint32_t n = src->plugin->n_params;
    if (!p)
        return NULL;
    *p = *src;
    p->v = calloc(n ? n : 1, sizeof *p->v);
    if (!p->v) {
        free(p);
        return NULL;
    }
    for (uint32_t i = 0; i < n; i++) {
        p->v[i] = src->v[i];
        if (src->v[i].s && !(p->v[i].s = kdcl__strdup(src->v[i].s))) {
            kdcl_params_free(p);
            return NULL;
        }
    }
    return p;
}

static int find(const kdcl_params *p, const char *key)
{
    for (uint32_t i = 0; i < p->plugin->n_params; i++)
        if (strcmp(kdcl__param_desc(p->plugin, i)->name, key) == 0)
            return (int)i;
    return -1;
}

int kdcl_params_set(kdcl_params *p, const char *key, const char *value)
{
    int i = find(p, key);
    struct kdcl__value v;
    char err[512];
    int status;
    if (i < 0) {
        char names[1024] = "";
        size_t used = 0;
        for (uint32_t j = 0; j < p->plugin->n_params && used < sizeof names;
             j++) {
            int n = snprintf(names + used, sizeof names - used, "%s%s",
                             j ? ", " : "",
                             kdcl__param_desc(p->plugin, j)->name);
            if (n > 0)
                used += (size_t)n;
        }
        return kdcl__error(p->ctx, KDCL_ENOTFOUND,
                           "plugin %s has no parameter '%s' (it has: %s)",
                           p->plugin->name, key,
                           p->plugin->n_params ? names : "none");
    }
    status = kdcl__param_check(kdcl__param_desc(p->plugin, (uint32_t)i),
                               value, &v, err, sizeof err);
    if (status)
        return kdcl__error(p->ctx, status, "%s: parameter %s: %s",
                           p->plugin->name, key, err);
    free(p->v[i].s);
    v.set = true;
    p->v[i] = v;
    return KDCL_OK;
}

int kdcl_params_set_kv(kdcl_params *p, const char *kv)
{
    const char *eq = strchr(kv, '=');
    char key[256];
    size_t n;
    if (!eq || eq == kv)
        return kdcl__error(p->ctx, KDCL_EINVAL,
                           "'%s' is not KEY=VALUE", kv);
    n = (size_t)(eq - kv);
    if (n >= sizeof key)
        return kdcl__error(p->ctx, KDCL_EINVAL, "parameter name too long");
    memcpy(key, kv, n);
    key[n] = '\0';
    return kdcl_params_set(p, key, eq + 1);
}

const char *kdcl_params_get(const kdcl_params *p, const char *key)
{
    int i = find(p, key);
    return i < 0 ? NULL : p->v[i].s;
}

double kdcl__param_f64(const kdcl_params *p, uint32_t i)
{
    return i < p->plugin->n_params ? p->v[i].f : 0.0;
}

int64_t kdcl__param_i64(const kdcl_params *p, uint32_t i)
{
    return i < p->plugin->n_params ? p->v[i].i : 0;
}

const char *kdcl__param_str(const kdcl_params *p, uint32_t i)
{
    return i < p->plugin->n_params ? p->v[i].s : NULL;
}

int kdcl__param_is_set(const kdcl_params *p, uint32_t i)
{
    return i < p->plugin->n_params && p->v[i].set;
}
