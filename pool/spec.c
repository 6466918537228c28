/* Pool specs in YAML: text → kite_spec_t (a kite_pool_spec_t, its bootstrap and `run:`).
 *
 * Design notes
 * - This is kite's schema: which keys a spec has, their types and ranges, what is required,
 *   and how they fill a kite_pool_spec_t. Reading YAML with positions and types is the typed
 *   reader's (core/yaml.c); the bootstrap section is bootstrap/'s (bootstrap/spec.c).
 * - What it owns: each kite_spec_t owns every string its pool spec points to and where each
 *   key was written (kept by the reader, freed together), the env array and the bootstrap
 *   builder. It reacts to nothing and emits nothing.
 * - The first problem found ends the load with one message naming file, line and column.
 *   Nothing outside the new kite_spec_t is touched until the load has succeeded, so an error
 *   frees that one object and leaves the caller's pointer as it was. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>

#include "../bootstrap/bootstrap_impl.h"
#include "kite/spec.h"
#include "pool_impl.h"
#include "yaml_impl.h"

#define MAX_SPEC_BYTES (16u << 20)

struct kite_spec {
  kite_pool_spec_t pool;
  char *run;
  unsigned retries; /* re-runs of run: (and of kite exec's commands) on a lost node's replacement */
  char *source;
  char **env;
  kite_bootstrap_t *bootstrap;
  kite__ykept_t kept; /* every string the pool spec points to; where every key was */
};

/* A read of one spec: the reader and the spec it fills. */
typedef struct loader {
  kite__yaml_t y;
  kite_spec_t *spec;
} loader_t;

static kite_spec_t *spec_of(kite__yaml_t *y) {
  return container_of(y, loader_t, y)->spec;
}

/* ---- sections ------------------------------------------------------------------------- */

/* "NAME" or "NAME:COUNT" at n (text), into *name (kept by y) and *count. */
static int accel_text(kite__yaml_t *y, const yaml_node_t *n, const char *path, const char *acc,
                      const char **name, unsigned *count) {
  const char *colon = strchr(acc, ':');
  size_t name_len = colon ? (size_t)(colon - acc) : strlen(acc);
  bool ok = name_len > 0 && name_len <= 31;
  for (size_t i = 0; ok && i < name_len; i++)
    ok = (acc[i] >= 'A' && acc[i] <= 'Z') || (acc[i] >= 'a' && acc[i] <= 'z') ||
         (acc[i] >= '0' && acc[i] <= '9') || acc[i] == '-' || acc[i] == '_' || acc[i] == '.';
  long c = 1;
  if (ok && colon) {
    const char *d = colon + 1;
    ok = *d >= '0' && *d <= '9' && strlen(d) <= 5;
    for (; ok && *d; d++)
      ok = *d >= '0' && *d <= '9';
    c = ok ? strtol(colon + 1, NULL, 10) : 0;
  }
  if (!ok)
    return kite__yaml_fail(y, n, "%s: '%.60s' is not NAME or NAME:COUNT; expected e.g. A100:8",
                           path, acc);
  if (c < 1 || c > 1024)
    return kite__yaml_fail(y, n, "%s: count %ld is out of range; expected 1 to 1024", path, c);
  *count = (unsigned)c;
  return kite__yaml_own(y, strndup(acc, name_len), name);
}

/* accelerators: "A100:8" (one), {A10: 1, L4: 1} (the cheapest of a set), or [A100:1, V100:1]
 * (ordered preferences: the first that has an offer, the next ones as failover). */
static int read_accelerators(kite__yaml_t *y, const yaml_node_t *n) {
  const char *path = "resources.accelerators";
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  if (n->type == YAML_SCALAR_NODE) {
    const char *acc = NULL;
    int rc = kite__yaml_str(y, n, path, &acc);
    return rc || acc == NULL
               ? rc
               : accel_text(y, n, path, acc, &ps->accelerator, &ps->accelerator_count);
  }
  bool map = n->type == YAML_MAPPING_NODE;
  size_t count = map ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
                     : (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (count == 0 || count > 64)
    return kite__yaml_fail(y, n, "%s: expected 1 to 64 accelerators, got %zu", path, count);
  int rc = map ? kite__yaml_free_keys(y, n, path) : 0;
  kite_accelerator_choice_t *v = calloc(count, sizeof(*v));
  if (v == NULL || kite__yaml_keep(y->kept, (char *)v) != 0) {
    free(v);
    return kite__yaml_oom(y);
  }
  for (size_t i = 0; rc == 0 && i < count; i++) {
    char sub[64];
    snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
    if (map) {
      yaml_node_t *key = kite__yaml_node(y, n->data.mapping.pairs.start[i].key);
      yaml_node_t *val = kite__yaml_node(y, n->data.mapping.pairs.start[i].value);
      const char *name = NULL;
      rc = kite__yaml_str(y, key, sub, &name);
      if (rc == 0 && name)
        rc = accel_text(y, key, sub, name, &v[i].name, &v[i].count);
      v[i].count = 1;
      if (rc == 0 && kite__yaml_is_null(val))
        rc = kite__yaml_fail(y, key, "%s: %s has no count; expected e.g. {%s: 1}", path, v[i].name,
                             v[i].name);
      if (rc == 0)
        rc = kite__yaml_uint(y, val, sub, 1, 1024, &v[i].count);
    } else {
      yaml_node_t *it = kite__yaml_node(y, n->data.sequence.items.start[i]);
      const char *acc = NULL;
      if (it->type != YAML_SCALAR_NODE)
        rc = kite__yaml_fail(y, it, "%s: expected NAME or NAME:COUNT, got %s", sub,
                             kite__yaml_kind_name(it));
      if (rc == 0)
        rc = kite__yaml_str(y, it, sub, &acc);
      if (rc == 0 && acc == NULL)
        rc = kite__yaml_fail(y, it, "%s: the item is empty; expected NAME or NAME:COUNT", sub);
      if (rc == 0)
        rc = accel_text(y, it, sub, acc, &v[i].name, &v[i].count);
    }
  }
  if (rc == 0) {
    ps->accelerators = v;
    ps->n_accelerators = count;
    ps->accelerators_ordered = !map;
  }
  return rc;
}

static int read_allocation(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const names[] = {"spot", "on-demand", "spot-if-available", "cheapest"};
  static const kite_allocation_t values[] = {KITE_ALLOC_SPOT, KITE_ALLOC_ON_DEMAND,
                                             KITE_ALLOC_SPOT_IF_AVAILABLE, KITE_ALLOC_CHEAPEST};
  const char *s = NULL;
  int rc = kite__yaml_str(y, n, "resources.allocation", &s);
  for (size_t i = 0; rc == 0 && s && i < KITE_ARRAY_SIZE(names); i++)
    if (strcmp(s, names[i]) == 0) {
      spec_of(y)->pool.allocation = values[i];
      return 0;
    }
  return rc ? rc
            : kite__yaml_fail(y, n,
                              "resources.allocation: '%.40s' is not an allocation; expected spot, "
                              "on-demand, spot-if-available or cheapest",
                              s ? s : "");
}

static int read_resources(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const keys[] = {"cpus", "memory",  "accelerators", "instance_type",
                                     "spot", "disk_gb", "allocation",   "max_hourly_cost"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  int rc = kite__yaml_expect_mapping(y, n, "resources");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "resources", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = kite__yaml_uint(y, v[0], "resources.cpus", 1, 100000, &ps->cpus);
  if (rc == 0 && v[1]) {
    /* A number of GiB, or a number with a unit. */
    static const struct {
      const char *unit;
      double mb;
    } units[] = {{"", 1024},   {"M", 1},      {"MB", 1},      {"MiB", 1},      {"G", 1024},
                 {"GB", 1024}, {"GiB", 1024}, {"T", 1048576}, {"TB", 1048576}, {"TiB", 1048576}};
    const char *path = "resources.memory";
    if (v[1]->type != YAML_SCALAR_NODE)
      return kite__yaml_fail(y, v[1], "%s: expected a size such as 16GB or 512MB, got %s", path,
                             kite__yaml_kind_name(v[1]));
    char *text;
    kite__ykind_t kind;
    rc = kite__yaml_scalar(y, v[1], path, &text, &kind);
    if (rc != 0)
      return rc;
    double mb = -1;
    if (text[0] >= '0' && text[0] <= '9') {
      char *end;
      double x = strtod(text, &end);
      while (*end == ' ')
        end++;
      for (size_t i = 0; i < KITE_ARRAY_SIZE(units); i++)
        if (strcmp(end, units[i].unit) == 0)
          mb = x * units[i].mb;
    }
    if (kind == KITE__Y_NULL)
      mb = 0;
    else if (mb < 0)
      rc = kite__yaml_fail(y, v[1],
                           "%s: '%.60s' is not a size; expected a number of GiB or a number with "
                           "a unit, such as 16GB or 512MB",
                           path, text);
    else if (mb < 1 || mb > 1024.0 * 1048576)
      rc = kite__yaml_fail(y, v[1], "%s: %s is out of range; expected 1MB to 1024TB", path, text);
    free(text);
    if (rc != 0)
      return rc;
    ps->memory_mb = (uint64_t)(mb + 0.5);
  }
  if (rc == 0 && v[2])
    rc = read_accelerators(y, v[2]);
  if (rc == 0 && v[3])
    rc = kite__yaml_str(y, v[3], "resources.instance_type", &ps->instance_type);
  if (rc == 0 && v[4])
    rc = kite__yaml_bool(y, v[4], "resources.spot", &ps->spot);
  if (rc == 0 && v[5])
    rc = kite__yaml_uint(y, v[5], "resources.disk_gb", 1, 1000000, &ps->disk_gb);
  if (rc == 0 && v[6])
    rc = read_allocation(y, v[6]);
  if (rc == 0 && v[7])
    rc = kite__yaml_real(y, v[7], "resources.max_hourly_cost", 0.0001, 1e6,
                         &ps->max_hourly_cost_node);
  if (rc == 0 && ps->spot && ps->allocation != KITE_ALLOC_DEFAULT &&
      ps->allocation != KITE_ALLOC_SPOT)
    rc = kite__yaml_fail(y, v[6],
                         "resources.allocation: spot: true asks for spot only; remove spot, or "
                         "set allocation: spot");
  return rc;
}

/* provider: NAME, [NAME, ...] or any; region: NAME, [NAME, ...] or any. */
static int read_places(kite__yaml_t *y, const yaml_node_t *n, const char *path, const char **one,
                       const char *const **list, bool *any) {
  if (n->type == YAML_SEQUENCE_NODE) {
    char **v = NULL;
    int rc = kite__yaml_str_list(y, n, path, &v);
    if (rc == 0 && kite__yaml_keep(y->kept, (char *)v) != 0) {
      free(v);
      return kite__yaml_oom(y);
    }
    if (rc == 0 && v[0] == NULL)
      return kite__yaml_fail(y, n, "%s: the list is empty; expected at least one name", path);
    for (size_t i = 0; rc == 0 && v[i]; i++)
      if (strcmp(v[i], "any") == 0)
        return kite__yaml_fail(y, n, "%s: 'any' stands alone; write %s: any, or list names", path,
                               path);
    if (rc == 0) {
      *list = (const char *const *)v;
      *one = v[1] ? NULL : v[0];
    }
    return rc;
  }
  int rc = kite__yaml_str(y, n, path, one);
  if (rc == 0 && *one && strcmp(*one, "any") == 0) {
    *one = NULL;
    *any = true;
  }
  return rc;
}

static int read_failover(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const keys[] = {"block", "attempts", "timeout"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  int rc = kite__yaml_expect_mapping(y, n, "failover");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "failover", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = kite__yaml_duration(y, v[0], "failover.block", 0, 24 * 3600000ull, &ps->failover_block_ms);
  if (rc == 0 && v[1])
    rc = kite__yaml_uint(y, v[1], "failover.attempts", 1, 1000, &ps->failover_attempts);
  if (rc == 0 && v[2])
    rc = kite__yaml_duration(y, v[2], "failover.timeout", 1000, 24 * 3600000ull,
                             &ps->failover_timeout_ms);
  return rc;
}

static int read_env(kite__yaml_t *y, const yaml_node_t *n) {
  const char *where = "env";
  int rc = kite__yaml_expect_mapping(y, n, where);
  if (rc == 0)
    rc = kite__yaml_free_keys(y, n, where);
  if (rc != 0)
    return rc;
  size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  char **env = calloc(count + 1, sizeof(*env));
  if (env == NULL)
    return kite__yaml_oom(y);
  spec_of(y)->env = env;
  size_t i = 0;
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = kite__yaml_node(y, p->key), *v = kite__yaml_node(y, p->value);
    const char *name = (const char *)k->data.scalar.value;
    char path[300];
    snprintf(path, sizeof(path), "env.%s", name);
    if (!kite__shell_name(name, k->data.scalar.length))
      return kite__yaml_fail(y, k,
                             "env: '%s' is not a valid variable name; expected letters, digits and "
                             "'_', not starting with a digit",
                             name);
    if (v->type != YAML_SCALAR_NODE)
      return kite__yaml_fail(y, v,
                             "%s: expected a string, got %s (secrets belong in bootstrap.env)",
                             path, kite__yaml_kind_name(v));
    char *text;
    kite__ykind_t kind;
    rc = kite__yaml_scalar(y, v, path, &text, &kind);
    if (rc != 0)
      return rc;
    env[i] = kite__sprintf("%s=%s", name, kind == KITE__Y_NULL ? "" : text);
    free(text);
    if (env[i++] == NULL)
      return kite__yaml_oom(y);
  }
  spec_of(y)->pool.env = (const char *const *)env;
  return 0;
}

static int read_replace(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const keys[] = {"on_preemption", "max_replacements", "per_minute"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  int rc = kite__yaml_expect_mapping(y, n, "replace");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "replace", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = kite__yaml_bool(y, v[0], "replace.on_preemption", &ps->replace);
  if (rc == 0 && v[1])
    rc = kite__yaml_uint(y, v[1], "replace.max_replacements", 0, 1000000, &ps->max_replacements);
  if (rc == 0 && v[2])
    rc = kite__yaml_uint(y, v[2], "replace.per_minute", 1, 10000, &ps->replace_per_minute);
  return rc;
}

#define DAY_MS (24ull * 3600 * 1000)

static int read_monitors(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const keys[] = {"enabled",         "health_interval",  "health_timeout",
                                     "health_failures", "preempt_interval", "jitter",
                                     "health_command",  "cost_interval"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  kite_pool_monitor_options_t *m = &ps->monitors;
  bool enabled = true;
  int rc = kite__yaml_expect_mapping(y, n, "monitors");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "monitors", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = kite__yaml_bool(y, v[0], "monitors.enabled", &enabled);
  ps->monitors_off = !enabled;
  if (rc == 0 && v[1])
    rc = kite__yaml_duration(y, v[1], "monitors.health_interval", 100, DAY_MS,
                             &m->health_interval_ms);
  if (rc == 0 && v[2])
    rc =
        kite__yaml_duration(y, v[2], "monitors.health_timeout", 100, DAY_MS, &m->health_timeout_ms);
  if (rc == 0 && v[3])
    rc = kite__yaml_uint(y, v[3], "monitors.health_failures", 1, 1000, &m->health_failures);
  if (rc == 0 && v[4])
    rc = kite__yaml_duration(y, v[4], "monitors.preempt_interval", 100, DAY_MS,
                             &m->preempt_interval_ms);
  if (rc == 0 && v[5])
    rc = kite__yaml_duration(y, v[5], "monitors.jitter", 1, DAY_MS, &m->jitter_ms);
  if (rc == 0 && v[6])
    rc = kite__yaml_str(y, v[6], "monitors.health_command", &m->health_command);
  if (rc == 0 && v[7])
    rc = kite__yaml_duration(y, v[7], "monitors.cost_interval", 100, DAY_MS, &m->cost_interval_ms);
  return rc;
}

static int read_deadman(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const keys[] = {"enabled", "timeout"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  bool enabled = true;
  int rc = kite__yaml_expect_mapping(y, n, "deadman");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "deadman", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = kite__yaml_bool(y, v[0], "deadman.enabled", &enabled);
  ps->deadman_off = !enabled;
  if (rc == 0 && v[1])
    rc = kite__yaml_duration(y, v[1], "deadman.timeout", 10000, 30 * DAY_MS,
                             &ps->deadman_timeout_ms);
  return rc;
}

static int read_ssh(kite__yaml_t *y, const yaml_node_t *n) {
  static const char *const keys[] = {"user", "key", "host_key_mode", "connect_timeout"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  int rc = kite__yaml_expect_mapping(y, n, "ssh");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "ssh", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = kite__yaml_str(y, v[0], "ssh.user", &ps->ssh_user);
  if (rc == 0 && v[1]) {
    const char *key = NULL;
    rc = kite__yaml_str(y, v[1], "ssh.key", &key);
    if (rc == 0 && key) {
      /* ~/ is the user's home; a relative path is relative to the spec's directory. */
      const char *home = getenv("HOME");
      if (key[0] == '~' && key[1] == '/' && home)
        rc = kite__yaml_own(y, kite__sprintf("%s%s", home, key + 1), &ps->ssh_key);
      else if (key[0] != '/' && y->basedir)
        rc = kite__yaml_own(y, kite__sprintf("%s/%s", y->basedir, key), &ps->ssh_key);
      else
        ps->ssh_key = key;
    }
  }
  if (rc == 0 && v[2]) {
    const char *mode = NULL;
    rc = kite__yaml_str(y, v[2], "ssh.host_key_mode", &mode);
    if (rc == 0 && mode) {
      int m = kite_hostkey_mode_parse(mode);
      if (m < 0)
        return kite__yaml_fail(
            y, v[2],
            "ssh.host_key_mode: '%.60s' is not a host key mode; expected strict, "
            "accept-new or off",
            mode);
      ps->hostkey_mode = m;
    }
  }
  if (rc == 0 && v[3])
    rc = kite__yaml_duration(y, v[3], "ssh.connect_timeout", 100, DAY_MS, &ps->connect_timeout_ms);
  return rc;
}

enum {
  T_NAME,
  T_PROVIDER,
  T_PROVIDER_OPTIONS,
  T_REGION,
  T_NODES,
  T_MIN_NODES,
  T_IMAGE,
  T_RESOURCES,
  T_ENV,
  T_BOOTSTRAP,
  T_RUN,
  T_REPLACE,
  T_MONITORS,
  T_DEADMAN,
  T_SSH,
  T_RETRIES,
  T_MAX_HOURLY,
  T_MAX_TOTAL,
  T_FAILOVER,
  T__COUNT
};

static int read_top(kite__yaml_t *y, const yaml_node_t *root) {
  static const char *const keys[T__COUNT] = {
      "name",      "provider",        "provider_options", "region",  "nodes",
      "min_nodes", "image",           "resources",        "env",     "bootstrap",
      "run",       "replace",         "monitors",         "deadman", "ssh",
      "retries",   "max_hourly_cost", "max_total_cost",   "failover"};
  yaml_node_t *v[T__COUNT], *k[T__COUNT];
  kite_pool_spec_t *ps = &spec_of(y)->pool;
  if (root->type != YAML_MAPPING_NODE)
    return kite__yaml_fail(y, root, "the spec is %s; expected a mapping of keys (name, nodes, ...)",
                           root->type == YAML_SEQUENCE_NODE ? "a sequence" : "a single value");
  int rc = kite__yaml_mapping(y, root, "", keys, T__COUNT, v, k);
  if (rc != 0)
    return rc;
  if (v[T_NAME] == NULL)
    return k[T_NAME]
               ? kite__yaml_fail(y, k[T_NAME], "name: the value is empty; expected a pool name")
               : kite__yaml_fail(y, root,
                                 "missing required key 'name'; expected a pool name "
                                 "(1-48 letters, digits, '-' or '_')");
  rc = kite__yaml_str(y, v[T_NAME], "name", &ps->name);
  if (rc == 0 && ps->name == NULL)
    rc = kite__yaml_fail(y, v[T_NAME], "name: the value is empty; expected a pool name");
  if (rc == 0 && !kite__pool_name_valid(ps->name))
    rc = kite__yaml_fail(y, v[T_NAME],
                         "name: '%.60s' is not a valid pool name; expected 1-48 letters, "
                         "digits, '-' or '_', not starting with '-'",
                         ps->name);
  if (rc != 0)
    return rc;
  if (v[T_NODES] == NULL)
    return k[T_NODES] ? kite__yaml_fail(y, k[T_NODES],
                                        "nodes: the value is empty; expected an integer "
                                        "from 1 to 100000")
                      : kite__yaml_fail(y, root,
                                        "missing required key 'nodes'; expected the number of "
                                        "nodes (1 to 100000)");
  rc = kite__yaml_uint(y, v[T_NODES], "nodes", 1, 100000, &ps->nodes);
  if (rc == 0 && v[T_MIN_NODES]) {
    rc = kite__yaml_uint(y, v[T_MIN_NODES], "min_nodes", 0, 100000, &ps->min_nodes);
    if (rc == 0 && ps->min_nodes > ps->nodes)
      rc = kite__yaml_fail(y, v[T_MIN_NODES],
                           "min_nodes: %u is more than nodes (%u); expected 0 to %u", ps->min_nodes,
                           ps->nodes, ps->nodes);
  }
  bool region_any = false;
  if (rc == 0 && v[T_PROVIDER])
    rc =
        read_places(y, v[T_PROVIDER], "provider", &ps->provider, &ps->providers, &ps->provider_any);
  if (rc == 0 && v[T_PROVIDER_OPTIONS]) {
    rc = kite__yaml_expect_mapping(y, v[T_PROVIDER_OPTIONS], "provider_options");
    json_t *j = NULL;
    if (rc == 0)
      rc = kite__yaml_to_json(y, v[T_PROVIDER_OPTIONS], "provider_options", &j);
    if (rc == 0) {
      rc = kite__yaml_own(y, json_dumps(j, JSON_COMPACT), &ps->provider_options);
      json_decref(j);
    }
  }
  if (rc == 0 && v[T_REGION])
    rc = read_places(y, v[T_REGION], "region", &ps->region, &ps->regions, &region_any);
  if (rc == 0 && v[T_MAX_HOURLY])
    rc = kite__yaml_real(y, v[T_MAX_HOURLY], "max_hourly_cost", 0.0001, 1e9, &ps->max_hourly_cost);
  if (rc == 0 && v[T_MAX_TOTAL])
    rc = kite__yaml_real(y, v[T_MAX_TOTAL], "max_total_cost", 0.0001, 1e12, &ps->max_total_cost);
  if (rc == 0 && v[T_FAILOVER])
    rc = read_failover(y, v[T_FAILOVER]);
  if (rc == 0 && v[T_IMAGE])
    rc = kite__yaml_str(y, v[T_IMAGE], "image", &ps->image);
  if (rc == 0 && v[T_RESOURCES])
    rc = read_resources(y, v[T_RESOURCES]);
  if (rc == 0 && v[T_ENV])
    rc = read_env(y, v[T_ENV]);
  if (rc == 0 && v[T_BOOTSTRAP]) {
    kite_spec_t *sp = spec_of(y);
    rc = kite__bootstrap_read(y, v[T_BOOTSTRAP], &sp->bootstrap, &ps->bootstrap_timeout_ms);
    if (rc == 0)
      ps->bootstrap = sp->bootstrap;
  }
  if (rc == 0 && v[T_RUN]) {
    const char *run = NULL;
    rc = kite__yaml_str(y, v[T_RUN], "run", &run);
    if (rc == 0 && run && (spec_of(y)->run = kite__strdup(run)) == NULL)
      rc = kite__yaml_oom(y);
  }
  if (rc == 0 && v[T_REPLACE])
    rc = read_replace(y, v[T_REPLACE]);
  if (rc == 0 && v[T_MONITORS])
    rc = read_monitors(y, v[T_MONITORS]);
  if (rc == 0 && v[T_DEADMAN])
    rc = read_deadman(y, v[T_DEADMAN]);
  if (rc == 0 && v[T_SSH])
    rc = read_ssh(y, v[T_SSH]);
  if (rc == 0 && v[T_RETRIES])
    rc = kite__yaml_uint(y, v[T_RETRIES], "retries", 0, 100, &spec_of(y)->retries);
  /* A re-run happens on the replacement of a lost node: without replacement there is none. */
  if (rc == 0 && spec_of(y)->retries > 0 && !ps->replace)
    rc = kite__yaml_fail(
        y, k[T_RETRIES],
        "retries: a command is re-run on the replacement of a lost node, and replacement "
        "is off; add replace: {on_preemption: true}, or remove retries");
  return rc;
}

/* ---- the document ----------------------------------------------------------------------- */

static int load(kite__yaml_t *y) {
  if (y->len > MAX_SPEC_BYTES) {
    y->err = kite__sprintf("%s: the file is larger than 16 MiB; expected a pool spec", y->file);
    return KITE_E2BIG;
  }
  yaml_node_t *root;
  int rc = kite__yaml_load(y, &root);
  if (rc != 0)
    return rc;
  if (root == NULL) {
    yaml_mark_t m = {0};
    return kite__yaml_fail_at(y, m,
                              "the spec is empty; expected a mapping with at least name and nodes");
  }
  return read_top(y, root);
}

static void spec_free(kite_spec_t *s) {
  if (s == NULL)
    return;
  kite__yaml_kept_free(&s->kept);
  if (s->env)
    for (size_t i = 0; s->env[i]; i++)
      free(s->env[i]);
  free(s->env);
  kite_bootstrap_free(s->bootstrap);
  free(s->run);
  free(s->source);
  free(s);
}

static int load_text(const char *text, size_t len, const char *name, const char *basedir,
                     kite_spec_t **out, char **errmsg) {
  loader_t l = {.y = {.file = name, .unit = "spec", .basedir = basedir, .text = text, .len = len}};
  kite__yaml_t *y = &l.y;
  int rc = 0;
  l.spec = calloc(1, sizeof(*l.spec));
  if (l.spec == NULL || (l.spec->source = kite__strdup(name)) == NULL)
    rc = kite__yaml_oom(y);
  if (rc == 0) {
    y->kept = &l.spec->kept;
    rc = load(y);
  }
  kite__yaml_release(y);
  if (rc != 0) {
    spec_free(l.spec);
    if (errmsg)
      *errmsg = y->err;
    else
      free(y->err);
    return rc;
  }
  free(y->err);
  *out = l.spec;
  return 0;
}

/* ---- API ------------------------------------------------------------------------------ */

int kite_spec_load_string(const char *text, size_t len, const char *name, kite_spec_t **out,
                          char **errmsg) {
  if (errmsg)
    *errmsg = NULL;
  if ((text == NULL && len) || out == NULL)
    return KITE_EINVAL;
  return load_text(text ? text : "", len, name ? name : "<string>", NULL, out, errmsg);
}

int kite_spec_load_file(const char *path, kite_spec_t **out, char **errmsg) {
  if (errmsg)
    *errmsg = NULL;
  if (path == NULL || out == NULL)
    return KITE_EINVAL;
  char *text = NULL;
  size_t len = 0;
  int rc = kite__read_file(path, &text, &len);
  if (rc != 0) {
    int e = errno;
    if (errmsg)
      *errmsg = rc == KITE_ENOMEM ? NULL
                                  : kite__sprintf("%s: cannot read the spec: %s; expected a "
                                                  "readable YAML file",
                                                  path, strerror(e));
    return rc;
  }
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
  if (slash && dir == NULL)
    rc = KITE_ENOMEM;
  else
    rc = load_text(text, len, path, dir, out, errmsg);
  free(dir);
  free(text);
  return rc;
}

const kite_pool_spec_t *kite_spec_pool(const kite_spec_t *spec) {
  return spec ? &spec->pool : NULL;
}

const char *kite_spec_run(const kite_spec_t *spec) {
  return spec ? spec->run : NULL;
}

unsigned kite_spec_retries(const kite_spec_t *spec) {
  return spec ? spec->retries : 0;
}

const char *kite_spec_source(const kite_spec_t *spec) {
  return spec ? spec->source : NULL;
}

int kite_spec_where(const kite_spec_t *spec, const char *path, kite_spec_pos_t *key,
                    kite_spec_pos_t *value) {
  if (spec == NULL || path == NULL)
    return KITE_EINVAL;
  kite__ypos_t k, v;
  int rc = kite__yaml_where(&spec->kept, path, &k, &v);
  if (rc == 0 && key)
    *key = (kite_spec_pos_t){.line = k.line, .column = k.column};
  if (rc == 0 && value)
    *value = (kite_spec_pos_t){.line = v.line, .column = v.column};
  return rc;
}

int kite_spec_set_provider_options(kite_spec_t *spec, const char *json) {
  if (spec == NULL)
    return KITE_EINVAL;
  if (json == NULL) {
    spec->pool.provider_options = NULL;
    return 0;
  }
  char *copy = kite__strdup(json);
  int rc = kite__yaml_keep(&spec->kept, copy);
  if (rc == 0)
    spec->pool.provider_options = copy;
  return rc;
}

void kite_spec_free(kite_spec_t *spec) {
  spec_free(spec);
}
