/*
 * core/params.h - hyperparameter parsing against a plugin's schema, and
 * stride-aware access to a descriptor's arrays (internal).
 */
#ifndef KDCL_PARAMS_H
#define KDCL_PARAMS_H

#include "internal.h"

struct kdcl__value {
    bool set;   /* given by the user, not the default */
    double f;   /* FLOAT, INT */
    int64_t i;  /* INT, BOOL, ENUM index */
    char *s;    /* the text, always (normalised for ENUM and BOOL) */
};

struct kdcl_params {
    kdcl_context *ctx;
    const struct kdcl_plugin *plugin;
    struct kdcl__value *v; /* n_params values */
};

/* Element i of the plugin's params/inputs, walked with its stated size. */
const struct kdcl_param_desc *kdcl__param_desc(const struct kdcl_plugin *p,
                                               uint32_t i);
const struct kdcl_input_desc *kdcl__input_desc(const struct kdcl_plugin *p,
                                               uint32_t i);
/* The input descriptor whose name pattern matches name, or NULL. */
const struct kdcl_input_desc *kdcl__input_find(const struct kdcl_plugin *p,
                                               const char *name);
/* The plugin of a run. */
const struct kdcl_plugin *kdcl__run_plugin(const kdcl_run *run);
/* Parse text for d into out (may be NULL to only check). */
int kdcl__param_check(const struct kdcl_param_desc *d, const char *text,
                      struct kdcl__value *out, char *err, size_t len);
/* Copy p (for a run); NULL on out of memory. */
kdcl_params *kdcl__params_dup(const kdcl_params *p);
/* The host services that read values. */
double kdcl__param_f64(const kdcl_params *p, uint32_t i);
int64_t kdcl__param_i64(const kdcl_params *p, uint32_t i);
const char *kdcl__param_str(const kdcl_params *p, uint32_t i);
int kdcl__param_is_set(const kdcl_params *p, uint32_t i);

#endif /* KDCL_PARAMS_H */
