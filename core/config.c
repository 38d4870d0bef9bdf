/*
 * core/config.c - run configurations: YAML files (parsed with libyaml)
 * loaded into a cJSON tree, `--set a.b.c=value` overrides, and typed
 * getters with clear errors naming the key.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* A scalar: numbers and booleans as such, the rest as strings. */
static cJSON *scalar(const char *v, size_t len, int plain)
{
    char *end;
    double d;
    if (!plain)
        return cJSON_CreateString(v);
    if (len == 0 || !strcmp(v, "~") || !strcasecmp(v, "null"))
        return cJSON_CreateNull();
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes"))
        return cJSON_CreateTrue();
    if (!strcasecmp(v, "false") || !strcasecmp(v, "no"))
        return cJSON_CreateFalse();
    errno = 0;
    d = strtod(v, &end);
    if (*end == '\0' && errno == 0 && isfinite(d))
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(v);
}

/* Build the node starting at the current event (recursive descent). */
static cJSON *parse_node(yaml_parser_t *p, yaml_event_t *ev, char *err,
                         size_t len, int depth)
{
    cJSON *node = NULL;
    if (depth > 64) {
        snprintf(err, len, "nesting deeper than 64 levels");
        return NULL;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        return scalar((const char *)ev->data.scalar.value,
                      ev->data.scalar.length,
                      ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        node = is_map ? cJSON_CreateObject() : cJSON_CreateArray();
        for (;;) {
            yaml_event_t e;
            cJSON *key = NULL, *val;
            if (!yaml_parser_parse(p, &e)) {
                snprintf(err, len, "line %zu: %s",
                         p->problem_mark.line + 1,
                         p->problem ? p->problem : "syntax error");
                cJSON_Delete(node);
                return NULL;
            }
            if (e.type == YAML_SEQUENCE_END_EVENT
                || e.type == YAML_MAPPING_END_EVENT) {
                yaml_event_delete(&e);
                return node;
            }
            if (is_map) {
                if (e.type != YAML_SCALAR_EVENT) {
                    snprintf(err, len, "line %zu: keys must be plain text",
                             e.start_mark.line + 1);
                    yaml_event_delete(&e);
                    cJSON_Delete(node);
                    return NULL;
                }
                key = cJSON_CreateString((const char *)e.data.scalar.value);
                yaml_event_delete(&e);
                if (!yaml_parser_parse(p, &e)) {
                    snprintf(err, len, "line %zu: %s",
                             p->problem_mark.line + 1,
                             p->problem ? p->problem : "syntax error");
                    cJSON_Delete(key);
                    cJSON_Delete(node);
                    return NULL;
                }
            }
            val = parse_node(p, &e, err, len, depth + 1);
            yaml_event_delete(&e);
            if (!val) {
                cJSON_Delete(key);
                cJSON_Delete(node);
                return NULL;
            }
            if (is_map) {
                if (cJSON_GetObjectItemCaseSensitive(node, key->valuestring))
                    cJSON_ReplaceItemInObjectCaseSensitive(
                        node, key->valuestring, val);
                else
                    cJSON_AddItemToObject(node, key->valuestring, val);
                cJSON_Delete(key);
            } else {
                cJSON_AddItemToArray(node, val);
            }
        }
    }
    case YAML_ALIAS_EVENT:
        snprintf(err, len, "line %zu: YAML aliases are not supported",
                 ev->start_mark.line + 1);
        return NULL;
    default:
        snprintf(err, len, "line %zu: unexpected YAML event",
                 ev->start_mark.line + 1);
        return NULL;
    }
}

int kdcl__config_parse(const char *text, size_t len, cJSON **out, char *err,
                       size_t errlen)
{
    yaml_parser_t p;
    yaml_event_t ev;
    cJSON *root = NULL;
    int status = KDCL_EFORMAT;

    *out = NULL;
    if (!yaml_parser_initialize(&p)) {
        snprintf(err, errlen, "out of memory");
        return KDCL_ENOMEM;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) {
            snprintf(err, errlen, "line %zu: %s", p.problem_mark.line + 1,
                     p.problem ? p.problem : "syntax error");
            break;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            if (!root)
                root = cJSON_CreateObject(); /* an empty file */
            status = KDCL_OK;
            break;
        }
        if (ev.type == YAML_MAPPING_START_EVENT && !root) {
            root = parse_node(&p, &ev, err, errlen, 0);
            yaml_event_delete(&ev);
            if (!root)
                break;
            continue;
        }
        if (ev.type == YAML_SEQUENCE_START_EVENT
            || (ev.type == YAML_SCALAR_EVENT && !root)) {
            snprintf(err, errlen, "the top level must be a mapping of keys");
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_MAPPING_START_EVENT && root) {
            snprintf(err, errlen, "only one YAML document is allowed");
            yaml_event_delete(&ev);
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    if (status) {
        cJSON_Delete(root);
        return status;
    }
    *out = root;
    return KDCL_OK;
}

int kdcl__config_load(const char *path, cJSON **out, char *err,
                      size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    int status;
    char inner[512];

    *out = NULL;
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return KDCL_EIO;
    }
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)
        || n > (16l << 20)) {
        fclose(f);
        snprintf(err, errlen, "%s: cannot read (or larger than 16 MiB)",
                 path);
        return KDCL_EIO;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        snprintf(err, errlen, "%s: cannot read", path);
        return KDCL_EIO;
    }
    fclose(f);
    buf[n] = '\0';
    status = kdcl__config_parse(buf, (size_t)n, out, inner, sizeof inner);
    free(buf);
    if (status)
        snprintf(err, errlen, "%s: %s", path, inner);
    return status;
}

int kdcl__config_set(cJSON *root, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    char path[512], *save = NULL, *tok, *next;
    cJSON *node = root, *val;
    if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof path) {
        snprintf(err, errlen, "--set takes KEY=VALUE (dotted keys), got '%s'",
                 kv);
        return KDCL_EINVAL;
    }
    memcpy(path, kv, (size_t)(eq - kv));
    path[eq - kv] = '\0';
    val = scalar(eq + 1, strlen(eq + 1), 1);
    for (tok = strtok_r(path, ".", &save); tok; tok = next) {
        next = strtok_r(NULL, ".", &save);
        if (!next) {
            if (cJSON_GetObjectItemCaseSensitive(node, tok))
                cJSON_ReplaceItemInObjectCaseSensitive(node, tok, val);
            else
                cJSON_AddItemToObject(node, tok, val);
            return KDCL_OK;
        }
        {
            cJSON *child = cJSON_GetObjectItemCaseSensitive(node, tok);
            if (!child) {
                child = cJSON_CreateObject();
                cJSON_AddItemToObject(node, tok, child);
            } else if (!cJSON_IsObject(child)) {
                snprintf(err, errlen, "--set %s: '%s' is not a section",
                         kv, tok);
                cJSON_Delete(val);
                return KDCL_EINVAL;
            }
            node = child;
        }
    }
    cJSON_Delete(val);
    snprintf(err, errlen, "--set %s: empty key", kv);
    return KDCL_EINVAL;
}

cJSON *kdcl__config_get(const cJSON *root, const char *path)
{
    char buf[512], *save = NULL;
    const cJSON *node = root;
    if (strlen(path) >= sizeof buf)
        return NULL;
    strcpy(buf, path);
    for (char *tok = strtok_r(buf, ".", &save); tok && node;
         tok = strtok_r(NULL, ".", &save))
        node = cJSON_IsObject(node)
                   ? cJSON_GetObjectItemCaseSensitive(node, tok)
                   : NULL;
    return (cJSON *)node;
}

int kdcl__config_num(const cJSON *root, const char *path, double def,
                     double lo, double hi, double *out, char *err,
                     size_t errlen)
{
    const cJSON *n = kdcl__config_get(root, path);
    if (!n || cJSON_IsNull(n)) {
        *out = def;
        return KDCL_OK;
    }
    if (!cJSON_IsNumber(n)) {
        snprintf(err, errlen, "config %s: expected a number", path);
        return KDCL_EINVAL;
    }
    if (n->valuedouble < lo || n->valuedouble > hi) {
        snprintf(err, errlen, "config %s = %g is out of range [%g, %g]", path,
                 n->valuedouble, lo, hi);
        return KDCL_ERANGE;
    }
    *out = n->valuedouble;
    return KDCL_OK;
}

int kdcl__config_int(const cJSON *root, const char *path, int64_t def,
                     int64_t lo, int64_t hi, int64_t *out, char *err,
                     size_t errlen)
{
    double d;
    int status = kdcl__config_num(root, path, (double)def, (double)lo,
                                  (double)hi, &d, err, errlen);
    if (status)
        return status;
    if (d != floor(d)) {
        snprintf(err, errlen, "config %s: expected an integer, got %g", path,
                 d);
        return KDCL_EINVAL;
    }
    *out = (int64_t)d;
    return KDCL_OK;
}

int kdcl__config_bool(const cJSON *root, const char *path, int def, int *out,
                      char *err, size_t errlen)
{
    const cJSON *n = kdcl__config_get(root, path);
    if (!n || cJSON_IsNull(n)) {
        *out = def;
        return KDCL_OK;
    }
    if (cJSON_IsBool(n)) {
        *out = cJSON_IsTrue(n);
        return KDCL_OK;
    }
    if (cJSON_IsNumber(n) && (n->valuedouble == 0 || n->valuedouble == 1)) {
        *out = n->valuedouble != 0;
        return KDCL_OK;
    }
    snprintf(err, errlen, "config %s: expected true or false", path);
    return KDCL_EINVAL;
}

const char *kdcl__config_str(const cJSON *root, const char *path,
                             const char *def)
{
    const cJSON *n = kdcl__config_get(root, path);
    return cJSON_IsString(n) ? n->valuestring : def;
}

int kdcl__config_check_keys(const cJSON *node, const char *section,
                            const char *const *known, char *err,
                            size_t errlen)
{
    const cJSON *c;
    if (!cJSON_IsObject(node))
        return KDCL_OK;
    cJSON_ArrayForEach(c, node)
    {
        bool ok = false;
        for (size_t i = 0; known[i] && !ok; i++)
            ok = !strcmp(known[i], c->string);
        if (!ok) {
            char list[512] = "";
            size_t used = 0;
            for (size_t i = 0; known[i] && used < sizeof list; i++) {
                int w = snprintf(list + used, sizeof list - used, "%s%s",
                                 i ? ", " : "", known[i]);
                if (w > 0)
                    used += (size_t)w;
            }
            snprintf(err, errlen, "config: unknown key '%s%s%s' (known: %s)",
                     section ? section : "", section ? "." : "", c->string,
                     list);
            return KDCL_ENOTFOUND;
        }
    }
    return KDCL_OK;
}
