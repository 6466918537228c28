#ifndef KITE_BOOTSTRAP_H
#define KITE_BOOTSTRAP_H

/* Bootstrap: a small builder of steps (apt, pip, env, file, run, checkpoint) that renders one
 * POSIX shell script (DESIGN.md, "Bootstrap").
 *
 * - The script runs with `set -eu` from the node's working directory (its $HOME).
 * - Every value is shell-quoted; names are checked (env names are [A-Za-z_][A-Za-z0-9_]*).
 * - Steps are idempotent: each step that completes records a marker under
 *   $HOME/.kite/steps/ named after its position and a hash of its content, and a re-run skips
 *   the steps whose marker exists (a changed step runs again).
 * - env steps are exported for the rest of the script and written to KITE_BOOTSTRAP_ENV_FILE
 *   (mode 0600), which every later command of a pool sources, so tasks see them too. The file
 *   is written whole, atomically, when the script starts, and env steps are never skipped, so
 *   a re-run leaves it complete and free of an older bootstrap's variables.
 * - The builder functions return 0, KITE_ENOMEM, or KITE_EINVAL for a bad argument (an env
 *   name outside [A-Za-z_][A-Za-z0-9_]*, a package name outside its alphabet, an empty list,
 *   a file path that is empty or ends in '/', a mode outside 0..07777); a refused step is not
 *   added.
 * - Before each step the script prints a progress marker line on stdout:
 *       "\n@kite-step N TOTAL NAME\n"  (N from 1; NAME with newlines replaced by spaces)
 *   and at the very end "\n@kite-done TOTAL\n". The runner turns these into
 *   bootstrap_progress events; nothing else in the output is interpreted.
 *
 * The runner (kite_bootstrap_runner_new) is a component that answers `bootstrap` requests:
 * it writes the script to the node (mode 0700) through the transport, runs it, emits
 * bootstrap_progress per marker, and replies bootstrap_done{status, failed_step, output}: on
 * failure, failed_step is the name of the step that was running and output is that step's
 * output (stdout and stderr, the last 64 KiB). Completion is the script's exit. */

#include <stdbool.h>
#include <stddef.h>

#include "kite/runtime.h"

/* Relative to the node's working directory ($HOME). */
#define KITE_BOOTSTRAP_DIR ".kite"
#define KITE_BOOTSTRAP_ENV_FILE ".kite/env"
#define KITE_BOOTSTRAP_SCRIPT ".kite/bootstrap.sh"

typedef struct kite_bootstrap kite_bootstrap_t;

int kite_bootstrap_new(kite_bootstrap_t **out);
void kite_bootstrap_free(kite_bootstrap_t *b);

/* Debian packages; installs only those not already installed (dpkg-query), with
 * `sudo -n` when not root. packages is NULL-terminated. */
int kite_bootstrap_apt(kite_bootstrap_t *b, const char *const *packages);

typedef struct kite_bootstrap_pip_opts {
  bool no_index;          /* pip --no-index (offline nodes) */
  const char *find_links; /* pip --find-links DIR_OR_URL, or NULL */
  const char *python;     /* interpreter; NULL: python3 */
} kite_bootstrap_pip_opts_t;
/* Python packages; installs only those `pip show` does not find. opts may be NULL. */
int kite_bootstrap_pip(kite_bootstrap_t *b, const char *const *packages,
                       const kite_bootstrap_pip_opts_t *opts);

/* An environment variable for the rest of the bootstrap and every later command. A secret
 * value reaches the node but is registered with the runtime (kite_bootstrap_register_secrets)
 * so it never appears in an event's JSON form or a log line. */
int kite_bootstrap_env(kite_bootstrap_t *b, const char *name, const char *value, bool secret);

/* Writes content (binary-safe) to path (relative to $HOME or absolute) with mode, creating
 * parent directories; atomically (temp file + rename). */
int kite_bootstrap_file(kite_bootstrap_t *b, const char *path, const void *content, size_t len,
                        int mode);

/* A shell step. name is what progress and errors show. */
int kite_bootstrap_run(kite_bootstrap_t *b, const char *name, const char *script);

/* A named checkpoint: a step that does nothing but is recorded, so progress shows it. */
int kite_bootstrap_checkpoint(kite_bootstrap_t *b, const char *name);

/* Number of steps so far. */
unsigned kite_bootstrap_steps(const kite_bootstrap_t *b);

/* Renders the script; *script is malloc'd, NUL-terminated, *len its length (len may be NULL). */
int kite_bootstrap_render(const kite_bootstrap_t *b, char **script, size_t *len);

/* Registers every secret env value with rt (kite_secret_add). */
int kite_bootstrap_register_secrets(const kite_bootstrap_t *b, kite_runtime_t *rt);

typedef struct kite_bootstrap_runner_options {
  unsigned long long timeout_ms; /* per bootstrap; 0: none */
} kite_bootstrap_runner_options_t;

/* Adds the bootstrap runner component to rt (tier KITE_TIER_TRANSPORT: it stops with the
 * transport). opts may be NULL. */
int kite_bootstrap_runner_new(kite_runtime_t *rt, const kite_bootstrap_runner_options_t *opts);

#endif
