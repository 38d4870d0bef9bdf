/*
 * core/cli.h - shared pieces of the kdcl command (internal).
 */
#ifndef KDCL_CLI_H
#define KDCL_CLI_H

#include "internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>

/* Exit codes of the kdcl command. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Print "kdcl: error: ..." on stderr; returns CLI_FAIL. */
int cli_error(const char *fmt, ...) KDCL__PRINTF(1, 2);
/* Print "kdcl <cmd>: ..." usage error and the hint; returns CLI_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) KDCL__PRINTF(2, 3);
/* The log callback of the command: warnings and errors to stderr. */
void cli_log(void *user, int level, const char *msg);

/* Make a context (with the command's logging) and open spec; prints the
   error and returns NULL on failure. */
/*
 * Training runs the heavy layers of a CPU device on the host (BLAS and
 * OpenMP threads, core/host.c); PoCL's worker threads, running the small
 * kernels in between, then compete with them for the same cores.  Ask
 * PoCL for one worker (POCL_MAX_PTHREAD_COUNT=1) unless the user set it
 * or KDCL_LAYERS=kernel; other platforms ignore the variable.  Call before
 * cli_open: PoCL reads it once, when the platform is first listed.
 */
void cli_training_threads(void);
kdcl_context *cli_open(const char *spec);
/* Load plugins from --plugin-dir dirs then the default path. */
kdcl_registry *cli_registry(const char *const *dirs, size_t n_dirs);
/* Print and free a JSON document into path ("-" = stdout); returns a CLI
   exit code. */
int cli_json_write(cJSON *doc, const char *path);
/* The device as a JSON object. */
cJSON *cli_device_json(const struct kdcl_device_info *d);

/* Growable list of strings (repeated options). */
struct cli_list {
    const char **v;
    size_t n, cap;
};
int cli_list_add(struct cli_list *l, const char *s);
void cli_list_free(struct cli_list *l);

int cli_loss(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_train(int argc, char **argv);
int cli_distill(int argc, char **argv);

#endif /* KDCL_CLI_H */
