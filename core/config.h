/*
 * core/config.h - YAML run configurations as cJSON trees (internal).
 */
#ifndef KDCL_CONFIG_H
#define KDCL_CONFIG_H

#include "internal.h"

#include <cjson/cJSON.h>

/* Parse YAML text (one document whose top level is a mapping). */
int kdcl__config_parse(const char *text, size_t len, cJSON **out, char *err,
                       size_t errlen);
/* Read and parse a YAML file; errors name the file and line. */
int kdcl__config_load(const char *path, cJSON **out, char *err,
                      size_t errlen);
/* Apply "a.b.c=value" (value parsed as a YAML plain scalar). */
int kdcl__config_set(cJSON *root, const char *kv, char *err, size_t errlen);
/* The node at a dotted path, or NULL. */
cJSON *kdcl__config_get(const cJSON *root, const char *path);
/* Typed getters: absent or null gives def; a wrong type or a value
   outside [lo, hi] is an error naming the key. */
int kdcl__config_num(const cJSON *root, const char *path, double def,
                     double lo, double hi, double *out, char *err,
                     size_t errlen);
int kdcl__config_int(const cJSON *root, const char *path, int64_t def,
                     int64_t lo, int64_t hi, int64_t *out, char *err,
                     size_t errlen);
int kdcl__config_bool(const cJSON *root, const char *path, int def, int *out,
                      char *err, size_t errlen);
const char *kdcl__config_str(const cJSON *root, const char *path,
                             const char *def);
/* Every key of node must be in known (NULL-terminated). */
int kdcl__config_check_keys(const cJSON *node, const char *section,
                            const char *const *known, char *err,
                            size_t errlen);

#endif /* KDCL_CONFIG_H */
