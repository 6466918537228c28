#ifndef KITE_SPEC_H
#define KITE_SPEC_H

/* Pool specs in YAML (DESIGN.md, "Spec and state").
 *
 * A spec file maps one to one onto kite_pool_spec_t (pool.h); its bootstrap section becomes a
 * kite_bootstrap_t (bootstrap.h), and `run:` is kept beside the pool spec for the command line.
 * A key left out means the C struct's zero, i.e. the same default as in C.
 *
 * Values may use ${VAR} (an error when VAR is unset) and ${VAR:-default} (default when VAR
 * is unset or empty), expanded from the process environment when the spec is loaded, in every
 * value (never in keys). $$ is a literal '$'; a '$' not followed by '{' or '$' is kept as is,
 * so `$KITE_NODE_RANK` in a script reaches the shell untouched while `${HOME}` must be
 * written `$${HOME}` to do the same. Inside a flow collection ({a: b} or [a, b]) braces
 * end the collection, so a ${VAR} there must be quoted ("${VAR}", which makes it a string);
 * write numbers from the environment in block style (`nodes: ${N}`).
 *
 * Honoured or refused: this loader checks the schema, which is the same for every provider.
 * Whether the provider the spec names honours each key it gives (region, resources, ssh.key,
 * each provider option, ...) is the provider registry's to say: kite_registry_check_spec()
 * (registry.h) refuses what it would drop, at the key's FILE:LINE:COL, using the positions
 * kept here (kite_spec_where()). The loader sits below the providers, so it cannot ask them;
 * a program that loads specs for any provider calls both, as the `kite` command does.
 *
 * Errors: loading never half-applies anything. On failure *out is untouched, everything the
 * loader allocated is freed, and *errmsg (when errmsg is not NULL) receives one malloc'd line
 *     FILE:LINE:COL: what was wrong; what was expected
 * (LINE and COL count from 1) that the caller frees with free(). Spec mistakes return
 * KITE_ESPEC; an unreadable file KITE_ENOENT or KITE_EIO; KITE_ENOMEM when memory ran out.
 *
 * The schema, in short (every key optional unless marked required):
 *
 *   name: NAME                  required; 1-48 letters, digits, '-', '_' (not first: '-')
 *   provider: local             provider name (default local)
 *   provider_options: {...}     a mapping; handed to the provider as JSON (the registry
 *                               checks its keys against the provider's option table)
 *   region: REGION
 *   nodes: N                    required; 1..100000
 *   min_nodes: N                0..nodes (0: nodes)
 *   image: IMAGE
 *   resources: {cpus: N, memory: 16GB, accelerators: "A100:8", instance_type: T,
 *               spot: BOOL, disk_gb: N}
 *   env: {NAME: VALUE, ...}     passed to every command
 *   bootstrap:
 *     env: {NAME: VALUE, NAME: {value: V, secret: BOOL}}
 *     apt: [PKG, ...]
 *     pip: [PKG, ...]  or  {packages: [...], no_index: BOOL, find_links: DIR, python: PY}
 *     files: [{path: P, content: TEXT | source: LOCAL_FILE, mode: 0644}, ...]
 *     setup: SCRIPT  or  [{name: NAME, run: SCRIPT}, ...]
 *     timeout: 1h               a node's whole bootstrap, 1s..168h (kite_pool_spec_t)
 *   run: SCRIPT                 what `kite run` runs on every node
 *   retries: N                  re-runs of run: (and kite exec's commands) on the replacement of
 *                               a lost node, 0..100; needs replace.on_preemption
 *   replace: {on_preemption: BOOL, max_replacements: N, per_minute: N}
 *   monitors: {enabled: BOOL, health_interval: 5s, health_timeout: 5s, health_failures: N,
 *              preempt_interval: 5s, jitter: 500ms, health_command: CMD,
 *              cost_interval: 60s}
 *   deadman: {enabled: BOOL, timeout: 10m}
 *   ssh: {user: U, key: PATH, host_key_mode: strict|accept-new|off, connect_timeout: 30s}
 *
 * Durations are a number with a unit: ms, s, m or h. Memory is a number of GiB or a number
 * with a unit (MB/MiB, GB/GiB, TB/TiB; all binary). File modes are octal. A file's `source`
 * is relative to the spec file's directory (to the working directory for a string). */

#include <stddef.h>

#include "kite/pool.h"

typedef struct kite_spec kite_spec_t;

/* Loads the spec at path. */
int kite_spec_load_file(const char *path, kite_spec_t **out, char **errmsg);

/* Loads a spec from text (len bytes; text need not be NUL-terminated). name is what error
 * messages call it (NULL: "<string>"). */
int kite_spec_load_string(const char *text, size_t len, const char *name, kite_spec_t **out,
                          char **errmsg);

/* The pool spec; owned by spec, valid until kite_spec_free(). Pass it to kite_pool_open(). */
const kite_pool_spec_t *kite_spec_pool(const kite_spec_t *spec);

/* The `run:` command (a shell script), or NULL when the spec has none. Owned by spec. */
const char *kite_spec_run(const kite_spec_t *spec);

/* `retries:` (0..100): how many times a command of the spec's pool (`run:`, and the `kite`
 * command's exec) is re-run on the replacement when its node is lost. 0 when absent. */
unsigned kite_spec_retries(const kite_spec_t *spec);

/* Where the spec came from: its path, or the name given to kite_spec_load_string(). */
const char *kite_spec_source(const kite_spec_t *spec);

/* A line and a column in the spec's text, both from 1. */
typedef struct kite_spec_pos {
  unsigned line, column;
} kite_spec_pos_t;

/* Where the spec writes the key at path, a dotted path from the top: "region",
 * "resources.cpus", "ssh.key", "provider_options.port" (also nested: "bootstrap.files[0].mode",
 * "provider_options.a.b"). *key gets the key's position and *value its value's (either may be
 * NULL). Keys given with an empty value are found too. KITE_ENOENT when the spec has no such
 * key, KITE_EINVAL on NULL arguments. */
int kite_spec_where(const kite_spec_t *spec, const char *path, kite_spec_pos_t *key,
                    kite_spec_pos_t *value);

/* Replaces the pool spec's provider options with a copy of json (a JSON object's text, or NULL
 * for none); the old text stays owned by spec until kite_spec_free(). Used by the registry to
 * hand the provider what it takes from other keys (ssh.user, ssh.key). */
int kite_spec_set_provider_options(kite_spec_t *spec, const char *json);

/* Frees spec and everything it owns (the bootstrap included). NULL is a no-op. */
void kite_spec_free(kite_spec_t *spec);

#endif
