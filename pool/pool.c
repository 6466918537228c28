/* The pool: desired size, the node actors, and the tasks run on them.
 *
 * Owns: the nodes (one per rank, keeping its rank across replacements) and the running tasks.
 * Sends: ssh_exec, ssh_upload, ssh_download requests for tasks (the nodes send the rest).
 * Reacts to: its nodes' changes, task_output facts of its own tasks, and the replies to its
 * requests.
 *
 * A node that changes marks itself dirty (kite__pool_node_dirty), which counts its state at
 * once and arms the pool's turn: an idle handle, active only while some node is dirty. The
 * turn reacts to every dirty node together, in one pass over the running tasks: so a pool of
 * N nodes that opens or closes costs O(N) reactions, not one pass over every task and node
 * per change. The counts (per state, final nodes) make the open's and the close's checks
 * O(1). Whatever a reaction decides is what it would have decided inside the change: a
 * command started on an instance that has left service since (the node's epoch moved) is
 * canceled even when the node is back by the time of the turn, and the pool became usable if
 * min_nodes were READY at any moment (min_reached).
 *
 * Opening completes when min_nodes are READY, or fails (after every instance is terminated)
 * when that can no longer happen. Closing cancels what runs and waits until each canceled
 * command is confirmed stopped on its node (the transport kills its process group: a
 * machine the provider leaves up, like an `ssh` inventory's, must not keep running it), then
 * closes every node and completes when every node is final: no request outstanding and no
 * instance left. kite_pool_cancel() stops one task the same way. The pool is a
 * component of the first shutdown tier, so a runtime shutdown closes it before anything it
 * needs goes away. */
#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "kite/bootstrap.h"
#include "pool_impl.h"

typedef enum task_kind { TASK_EXEC, TASK_UPLOAD, TASK_DOWNLOAD } task_kind_t;

typedef struct rank_run {
  struct kite__task *task;
  uint32_t rank;
  uint64_t sub_id;     /* task id of this rank's attempt (routing key of its output) */
  uint64_t node_id;    /* the node this attempt runs on */
  uint64_t corr;       /* outstanding request, or 0 */
  uint32_t node_epoch; /* the node's epoch when this attempt started */
  kite_sub_t out_sub;
  bool started, finished;
  bool cancel_sent; /* ssh_cancel asked for this attempt; its own reply ends it */
  unsigned attempt;
  char *signal;
  char *message;
  /* For the task history (the state store): when the last attempt ran, on which instance,
   * and the last TASK_TAIL bytes of its output. */
  int64_t started_ms, finished_ms;
  char *instance;
  char *tail;
  size_t tail_len;
  bool tail_dropped;
  bool await_replacement; /* a lost attempt: the re-run waits for a new instance */
} rank_run_t;

#define TASK_TAIL 4096

typedef struct kite__task {
  kite_pool_t *pool;
  uint64_t id;
  task_kind_t kind;
  char *script; /* command as a shell script (without the env prefix) */
  bool argv;    /* script is an argument vector, quoted: it replaces the shell (exec) */
  char **env;   /* extra env for this task */
  char *local, *remote;
  kite_task_opts_t opts;
  kite_output_cb out;
  kite_task_cb cb;
  void *data;
  unsigned count, next, inflight, done;
  bool canceled; /* kite_pool_cancel or the pool's close: nothing more starts */
  bool held;     /* kite_pool_hold: its commands' output is not read */
  rank_run_t *runs;
  kite_rank_result_t *results;
  struct kite__task *next_task;
} task_t;

static void maybe_report_open(kite_pool_t *pool);
static void on_turn(uv_idle_t *h);
static void start_close(kite_pool_t *pool);
static void close_nodes(kite_pool_t *pool);
static void maybe_finish_close(kite_pool_t *pool);
static void schedule(task_t *t);
static void run_finished(rank_run_t *r, int error, int exit_status, const char *signal,
                         const char *message);

/* ---- helpers ------------------------------------------------------------------------------ */

/* A copy of env; *rc (left alone on success: an earlier failure stays) KITE_ENOMEM or
 * KITE_EINVAL (an entry that is not NAME=VALUE) when NULL comes back. */
static char **dup_env(const char *const *env, int *rc) {
  size_t n = 0;
  while (env && env[n])
    n++;
  char **out = calloc(n + 1, sizeof(*out));
  if (out == NULL) {
    *rc = KITE_ENOMEM;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const char *eq = strchr(env[i], '=');
    if (eq == NULL || !kite__shell_name(env[i], (size_t)(eq - env[i]))) {
      *rc = KITE_EINVAL;
      for (size_t k = 0; k < i; k++)
        free(out[k]);
      free(out);
      return NULL;
    }
    out[i] = kite__strdup(env[i]);
    if (out[i] == NULL) {
      *rc = KITE_ENOMEM;
      for (size_t k = 0; k < i; k++)
        free(out[k]);
      free(out);
      return NULL;
    }
  }
  return out;
}

static void free_env(char **env) {
  for (size_t i = 0; env && env[i]; i++)
    free(env[i]);
  free(env);
}

/* Appends "export NAME='value'\n" for one NAME=VALUE entry. */
static int append_export(char **buf, size_t *len, const char *name, size_t name_len,
                         const char *value) {
  char *q = kite__shell_quote(value);
  if (q == NULL)
    return KITE_ENOMEM;
  size_t add = 7 + name_len + 1 + strlen(q) + 1;
  char *g = realloc(*buf, *len + add + 1);
  if (g == NULL) {
    free(q);
    return KITE_ENOMEM;
  }
  *buf = g;
  *len += (size_t)sprintf(*buf + *len, "export %.*s=%s\n", (int)name_len, name, q);
  free(q);
  return 0;
}

static int append_env_list(char **buf, size_t *len, char *const *env) {
  for (size_t i = 0; env && env[i]; i++) {
    const char *eq = strchr(env[i], '=');
    int rc = append_export(buf, len, env[i], (size_t)(eq - env[i]), eq + 1);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* The full command for one rank: kite's variables, the spec's env, the task's env, then the
 * command itself. */
static char *render_command(kite_pool_t *pool, uint32_t rank, const task_t *t) {
  /* What the bootstrap's env steps left on the node comes first; kite's own variables and the
   * spec's and task's env override it. */
  static const char env_file[] = "if [ -r \"$HOME/" KITE_BOOTSTRAP_ENV_FILE
                                 "\" ]; then . \"$HOME/" KITE_BOOTSTRAP_ENV_FILE "\"; fi\n";
  char *buf = kite__strdup(env_file);
  size_t len = sizeof(env_file) - 1;
  if (buf == NULL)
    return NULL;
  char num[32];
  snprintf(num, sizeof(num), "%u", rank);
  int rc = append_export(&buf, &len, "KITE_NODE_RANK", 14, num);
  snprintf(num, sizeof(num), "%u", pool->nodes_n);
  if (rc == 0)
    rc = append_export(&buf, &len, "KITE_NUM_NODES", 14, num);
  size_t ipl = 0;
  for (unsigned i = 0; i < pool->nodes_n; i++)
    ipl += (pool->nodes[i].address ? strlen(pool->nodes[i].address) : 0) + 1;
  char *ips = calloc(ipl + 1, 1);
  if (ips == NULL)
    rc = KITE_ENOMEM;
  /* The head is the lowest rank that is READY now (rank 0 unless it failed or is being
   * replaced). */
  const char *head = NULL;
  for (size_t i = 0, at = 0; rc == 0 && i < pool->nodes_n; i++) {
    const kite__node_t *n = &pool->nodes[i];
    size_t l = n->address ? strlen(n->address) : 0;
    if (i)
      ips[at++] = '\n';
    memcpy(ips + at, n->address ? n->address : "", l);
    at += l;
    if (head == NULL && n->state == KITE_NODE_READY && n->address)
      head = n->address;
  }
  if (rc == 0)
    rc = append_export(&buf, &len, "KITE_NODE_IPS", 13, ips);
  if (rc == 0)
    rc = append_export(&buf, &len, "KITE_HEAD_IP", 12, head ? head : "");
  free(ips);
  if (rc == 0)
    rc = append_env_list(&buf, &len, pool->env);
  if (rc == 0)
    rc = append_env_list(&buf, &len, t->env);
  if (rc == 0) {
    /* An argv replaces the shell, so its exit status, or the signal that killed it, is what
     * sshd reports; a script's children report a signal only as 128+N. */
    const char *pre = t->argv ? "exec " : "";
    size_t sl = strlen(t->script), pl = strlen(pre);
    char *g = realloc(buf, len + pl + sl + 1);
    if (g == NULL) {
      rc = KITE_ENOMEM;
    } else {
      buf = g;
      memcpy(buf + len, pre, pl);
      memcpy(buf + len + pl, t->script, sl + 1);
    }
  }
  if (rc != 0) {
    free(buf);
    return NULL;
  }
  return buf;
}

static void pool_hold(kite_pool_t *pool) {
  pool->refs++;
}
static void pool_free(kite_pool_t *pool);
static void pool_release(kite_pool_t *pool) {
  if (--pool->refs == 0 && pool->freed)
    pool_free(pool);
}

/* ---- open -------------------------------------------------------------------------------- */

static void comp_stop(kite_component_t *c, kite_component_stopped_fn done);

static void pool_free(kite_pool_t *pool) {
  /* An open refused before the nodes existed frees a pool without them. */
  for (unsigned i = 0; pool->nodes && i < pool->nodes_n; i++)
    kite__node_free(&pool->nodes[i]);
  kite__cost_free(pool->cost);
  free(pool->nodes);
  free(pool->name);
  free(pool->tag);
  free(pool->provider);
  free(pool->image);
  kite__plan_free(pool->plan);
  free(pool->script);
  free(pool->open_message);
  free_env(pool->env);
  free(pool);
}

static int register_secret_options(kite_runtime_t *rt, const kite_provider_info_t *info,
                                   json_t *o) {
  int rc = 0;
  for (size_t i = 0; info && o && rc == 0 && i < info->n_options; i++) {
    const char *v = info->options[i].type == KITE_OPTION_SECRET
                        ? json_string_value(json_object_get(o, info->options[i].name))
                        : NULL;
    if (v && *v && kite_secret_add(rt, v) == KITE_ENOMEM)
      rc = KITE_ENOMEM;
  }
  return rc;
}

/* The secret options of the spec's provider, or, with several, of each under its name. */
static int register_secrets(kite_runtime_t *rt, const kite_pool_spec_t *spec) {
  json_t *o = spec->provider_options ? json_loads(spec->provider_options, 0, NULL) : NULL;
  int rc = 0;
  if (spec->provider_any || (spec->providers && spec->providers[0] && spec->providers[1])) {
    const char *name;
    json_t *sub;
    json_object_foreach(o, name, sub) {
      if (rc == 0)
        rc = register_secret_options(rt, kite_registry_find(name), sub);
    }
  } else {
    const char *name = spec->provider    ? spec->provider
                       : spec->providers ? spec->providers[0]
                                         : kite_registry_default()->name;
    rc = register_secret_options(rt, kite_registry_find(name), o);
  }
  json_decref(o);
  return rc;
}

double kite__pool_hourly(const kite_pool_t *pool, const kite__node_t *n) {
  double sum = 0;
  for (unsigned i = 0; i < pool->nodes_n; i++) {
    const kite__node_t *m = &pool->nodes[i];
    if (m != n && (m->instance_live || m->launch_corr))
      sum += m->instance_live ? m->price_hourly : m->launch_price;
  }
  return sum;
}

bool kite__pool_name_valid(const char *s) {
  /* A leading '-' would read as an option on every command line that names the pool. */
  if (s == NULL || *s == '\0' || *s == '-' || strlen(s) > 48)
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '-' || *s == '_'))
      return false;
  return true;
}

/* ---- loss, preemption, replacement -------------------------------------------------------- */

static kite__node_t *node_by_id(kite_pool_t *pool, uint64_t id, uint32_t rank) {
  if (rank < pool->nodes_n && pool->nodes[rank].id == id)
    return &pool->nodes[rank];
  return NULL;
}

/* A node found lost (health) or preempted (provider) is replaced the same way. */
static void node_gone(kite_pool_t *pool, uint64_t node, uint32_t rank, const char *reason) {
  kite__node_t *n = node_by_id(pool, node, rank);
  if (n && !pool->closing)
    kite__node_lost(n, reason);
}

static void on_node_lost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                         void *data) {
  (void)bus;
  (void)ev;
  node_gone(data, p->node, p->rank, p->reason ? p->reason : "lost");
}

static void on_node_preempted(kite_bus_t *bus, const kite_event_t *ev,
                              const kite_ev_node_preempted_t *p, void *data) {
  (void)bus;
  (void)ev;
  node_gone(data, p->node, p->rank, p->reason ? p->reason : "preempted");
}

static void on_node_preempting(kite_bus_t *bus, const kite_event_t *ev,
                               const kite_ev_node_preempting_t *p, void *data) {
  kite_pool_t *pool = data;
  (void)bus;
  (void)ev;
  kite__node_t *n = node_by_id(pool, p->node, p->rank);
  if (n && !pool->closing && n->state == KITE_NODE_READY) {
    char why[96];
    int64_t left = p->deadline_ms - (int64_t)kite__wall_ms();
    snprintf(why, sizeof(why), "preemption notice: gone in %lld ms; no new tasks",
             (long long)(left > 0 ? left : 0));
    kite__node_drain(n, why);
  }
}

int kite__pool_replace_permit(kite_pool_t *pool) {
  if (!pool->replace || pool->closing)
    return -1;
  if (pool->max_replacements && pool->replacements >= pool->max_replacements)
    return -1;
  pool->replacements++;
  return 0;
}

static void on_replace_timer(uv_timer_t *t) {
  kite_pool_t *pool = kite_container_of(t, kite_pool_t, replace_timer);
  pool_hold(pool);
  for (unsigned i = 0; i < pool->nodes_n; i++)
    if (pool->nodes[i].replace_held)
      kite__node_relaunch(&pool->nodes[i]);
  pool_release(pool);
}

static void on_term_timer(uv_timer_t *t) {
  kite_pool_t *pool = kite_container_of(t, kite_pool_t, term_timer);
  pool_hold(pool);
  for (unsigned i = 0; i < pool->nodes_n; i++)
    if (pool->nodes[i].term_retry)
      kite__node_terminate_again(&pool->nodes[i]);
  pool_release(pool);
}

void kite__pool_term_later(kite_pool_t *pool) {
  if (pool->term_timer_open && !uv_is_active((uv_handle_t *)&pool->term_timer))
    uv_timer_start(&pool->term_timer, on_term_timer, 1000, 0);
}

bool kite__pool_rate_take(kite_pool_t *pool) {
  uint64_t now = uv_now(kite_runtime_loop(pool->rt));
  if (pool->replace_window_n == 0 || now - pool->replace_window_start >= 60000) {
    pool->replace_window_start = now;
    pool->replace_window_n = 0;
  }
  if (pool->replace_window_n < pool->replace_per_minute) {
    pool->replace_window_n++;
    return true;
  }
  uint64_t wait = 60000 - (now - pool->replace_window_start);
  kite_log(pool->rt, KITE_LOG_WARN, "pool",
           "%s: %u replacements in the last minute; holding "
           "the next one for %llu ms (replace_per_minute)",
           pool->name, pool->replace_window_n, (unsigned long long)wait);
  if (!uv_is_active((uv_handle_t *)&pool->replace_timer))
    uv_timer_start(&pool->replace_timer, on_replace_timer, wait, 0);
  return false;
}

/* Is pid a running process? A zombie (killed, not yet reaped) is not. A pid we may not signal
 * (EPERM) is someone's live process. */
static bool owner_alive(int64_t pid, void *data) {
  (void)data;
  if (pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != EPERM))
    return false;
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return true;
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return !(rp && rp[1] == ' ' && rp[2] == 'Z');
}

/* Records the pool in the state store before anything is launched. A pool of the same name
 * with instances still recorded live (a process that crashed, or one that has it open now) is
 * refused: those instances must be cleaned up first, never forgotten. */
static int record_pool(kite_pool_t *pool) {
  kite_store_t *st = NULL;
  int rc = kite__runtime_store(pool->rt, &st);
  if (rc != 0) {
    kite_log(pool->rt, KITE_LOG_ERROR, "pool",
             "pool %s: no state store, so instances could "
             "not be recorded before they exist; refusing to launch",
             pool->name);
    return rc;
  }
  kite_store_pool_t rec = {.name = pool->name,
                           .provider = pool->provider,
                           .tag = pool->tag,
                           .owner_pid = getpid(),
                           .state = "opening"};
  kite_store_pool_t held = {0};
  rc = kite_store_pool_claim(st, &rec, owner_alive, NULL, &held);
  if (rc == KITE_EBUSY && held.name != NULL) {
    if (held.owner_pid > 0 && held.owner_pid != getpid() && owner_alive(held.owner_pid, NULL))
      kite_log(pool->rt, KITE_LOG_ERROR, "pool",
               "pool %s is open in process %lld; close it "
               "there or pick another name",
               pool->name, (long long)held.owner_pid);
    else
      kite_log(pool->rt, KITE_LOG_ERROR, "pool",
               "pool %s has %u instance(s) recorded as live "
               "by an earlier run that did not close it; run `kite down %s` first (they may "
               "still be running and cost money)",
               pool->name, held.live_instances, pool->name);
  } else if (rc != 0) {
    kite_log(pool->rt, KITE_LOG_ERROR, "pool", "pool %s: cannot record it: %s", pool->name,
             kite_store_errmsg(st));
  }
  kite_store_pool_clear(&held);
  pool->store = rc == 0 ? st : NULL;
  return rc;
}

static void start_nodes(kite_pool_t *pool);
static void on_planned(kite__plan_t *pl, int status, void *data);
static void on_cost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_cost_t *c, void *data);
static void on_instance_created(kite_bus_t *bus, const kite_event_t *ev,
                                const kite_ev_instance_created_t *c, void *data);

int kite_pool_open(kite_runtime_t *rt, const kite_pool_spec_t *spec, kite_pool_open_cb cb,
                   void *data, kite_pool_t **out) {
  if (rt == NULL || spec == NULL || cb == NULL || out == NULL)
    return KITE_EINVAL;
  if (!kite__pool_name_valid(spec->name)) {
    kite_log(rt, KITE_LOG_ERROR, "pool",
             "pool name '%s' is not valid: use 1-48 letters, digits, "
             "'-' or '_', not starting with '-'",
             spec->name ? spec->name : "(none)");
    return KITE_EINVAL;
  }
  /* Honoured or refused, for programs that fill the spec by hand too (a YAML spec is checked
   * against its provider when it is loaded): resources the provider cannot honour. */
  const kite_provider_info_t *named =
      spec->provider ? kite_registry_find(spec->provider) : kite_registry_default();
  bool multi = spec->provider_any || (spec->providers && spec->providers[0] && spec->providers[1]);
  if (!multi && named) {
    const char *unhonoured = spec->disk_gb && named->refused[KITE_FIELD_DISK_GB] ? "disk_gb"
                             : kite__plan_chooses(spec) && !named->catalog ? "choosing by resources"
                                                                           : NULL;
    if (unhonoured) {
      kite_log(rt, KITE_LOG_ERROR, "pool",
               "pool %s: %s is not honoured by the %s provider: choose the instance with "
               "instance_type; nothing was launched",
               spec->name, unhonoured, named->name);
      return KITE_ENOTSUP;
    }
  }
  if (spec->nodes == 0 || spec->nodes > 100000 || spec->min_nodes > spec->nodes) {
    kite_log(rt, KITE_LOG_ERROR, "pool",
             "pool %s: nodes must be 1..100000 and min_nodes at most "
             "nodes (got nodes=%u min_nodes=%u)",
             spec->name, spec->nodes, spec->min_nodes);
    return KITE_EINVAL;
  }
  kite_pool_t *pool = calloc(1, sizeof(*pool));
  if (pool == NULL)
    return KITE_ENOMEM;
  int rc = 0;
  pool->rt = rt;
  pool->bus = kite_runtime_bus(rt);
  pool->id = kite__next_id();
  pool->name = kite__strdup(spec->name);
  pool->tag = kite__sprintf("kite-pool-%s", spec->name);
  pool->provider = kite__strdup(spec->provider       ? spec->provider
                                : spec->providers    ? spec->providers[0]
                                : spec->provider_any ? "any"
                                                     : kite_registry_default()->name);
  pool->image = kite__strdup(spec->image);
  pool->max_total_cost = spec->max_total_cost;
  pool->plan = kite__plan_new(rt, spec);
  if (pool->plan == NULL)
    rc = KITE_ENOMEM;
  pool->hostkey_mode = spec->hostkey_mode;
  pool->connect_timeout_ms = spec->connect_timeout_ms ? spec->connect_timeout_ms : 30000;
  pool->bootstrap_timeout_ms =
      spec->bootstrap_timeout_ms ? spec->bootstrap_timeout_ms : KITE_BOOTSTRAP_TIMEOUT_MS;
  pool->deadman_ms = spec->deadman_off          ? 0
                     : spec->deadman_timeout_ms ? spec->deadman_timeout_ms
                                                : 10 * 60 * 1000;
  /* Machines the user already has are never powered off by kite's watchdog. */
  const kite_provider_info_t *info = kite_registry_find(pool->provider);
  if (info && !kite_registry_can(info, KITE_FIELD_DEADMAN))
    pool->deadman_ms = 0;
  if (info && pool->deadman_ms && info->deadman_still_billed)
    kite_log(rt, KITE_LOG_WARN, "pool",
             "pool %s: the dead-man's switch powers a node off when this controller is gone, "
             "but on %s %s",
             spec->name, info->title, info->deadman_still_billed);
  /* Secret options (tokens) are secrets before the first event carries the options. */
  if (rc == 0)
    rc = register_secrets(rt, spec);
  pool->replace = spec->replace;
  pool->max_replacements = spec->max_replacements;
  pool->replace_per_minute = spec->replace_per_minute ? spec->replace_per_minute : 10;
  pool->nodes_n = spec->nodes;
  pool->min_nodes = spec->min_nodes ? spec->min_nodes : spec->nodes;
  pool->open_cb = cb;
  pool->open_data = data;
  if (rc == 0)
    pool->env = dup_env(spec->env, &rc);
  if (rc == KITE_EINVAL)
    kite_log(rt, KITE_LOG_ERROR, "pool",
             "pool %s: env entries must be NAME=VALUE with NAME a "
             "shell identifier",
             spec->name);
  if (rc == 0 && (pool->name == NULL || pool->tag == NULL || pool->provider == NULL))
    rc = KITE_ENOMEM;
  if (rc == 0 && spec->bootstrap) {
    size_t len;
    rc = kite_bootstrap_render(spec->bootstrap, &pool->script, &len);
    if (rc == 0)
      rc = kite_bootstrap_register_secrets(spec->bootstrap, rt);
  }
  if (rc == 0) {
    /* The store records one owner per name, so a second open in this process is refused the
     * same way as one in another process. */
    kite_component_t *same = kite_runtime_find(rt, pool->name);
    if (same && same->tier == KITE_TIER_POOL) {
      kite_log(rt, KITE_LOG_ERROR, "pool",
               "pool %s is already open in this process; close it "
               "first or pick another name",
               pool->name);
      rc = KITE_EBUSY;
    }
  }
  if (rc == 0)
    rc = record_pool(pool);
  if (rc == 0) {
    pool->nodes = calloc(pool->nodes_n, sizeof(*pool->nodes));
    if (pool->nodes == NULL)
      rc = KITE_ENOMEM;
  }
  if (rc == 0) {
    pool->comp.name = pool->name;
    pool->comp.tier = KITE_TIER_POOL;
    pool->comp.stop = comp_stop;
    rc = kite_runtime_add(rt, &pool->comp);
    pool->in_runtime = rc == 0;
  }
  if (rc == 0)
    rc = kite_on_node_lost(pool->bus, pool->id, on_node_lost, pool, &pool->subs[0]);
  if (rc == 0)
    rc = kite_on_node_preempted(pool->bus, pool->id, on_node_preempted, pool, &pool->subs[1]);
  if (rc == 0)
    rc = kite_on_node_preempting(pool->bus, pool->id, on_node_preempting, pool, &pool->subs[2]);
  if (rc == 0)
    rc = kite_on_instance_created(pool->bus, pool->id, on_instance_created, pool, &pool->subs[3]);
  if (rc == 0 && pool->max_total_cost > 0)
    rc = kite_on_cost(pool->bus, pool->id, on_cost, pool, &pool->cost_sub);
  if (rc == 0 && (!spec->monitors_off || pool->deadman_ms))
    /* The heartbeat is refreshed five times per dead-man timeout, so a few failed refreshes
     * never let a live node's watchdog fire; it runs with the monitors off too. */
    rc = kite__watch_new(rt, pool->id, pool->provider, spec->monitors_off ? NULL : &spec->monitors,
                         pool->deadman_ms / 5, &pool->watch);
  if (rc == 0)
    rc = kite__cost_new(rt, pool->id, spec->monitors.cost_interval_ms, &pool->cost);
  if (rc == 0) {
    uv_timer_init(kite_runtime_loop(rt), &pool->replace_timer);
    pool->replace_timer_open = true;
    uv_timer_init(kite_runtime_loop(rt), &pool->term_timer);
    pool->term_timer_open = true;
    uv_idle_init(kite_runtime_loop(rt), &pool->turn);
    pool->turn_open = true;
  }
  if (rc != 0) {
    /* The name was claimed but nothing was launched: give it back. */
    if (pool->store)
      kite_store_pool_set_state(pool->store, pool->name, "closed", 0, NULL);
    for (size_t k = 0; k < KITE_ARRAY_SIZE(pool->subs); k++)
      kite_bus_unsubscribe(pool->bus, pool->subs[k]);
    kite_bus_unsubscribe(pool->bus, pool->cost_sub);
    kite__watch_free(pool->watch);
    if (pool->in_runtime)
      kite_runtime_remove(rt, &pool->comp);
    pool_free(pool);
    return rc;
  }
  for (unsigned i = 0; i < pool->nodes_n; i++) {
    kite__node_t *n = &pool->nodes[i];
    n->pool = pool;
    n->id = kite__next_id();
    n->rank = i;
    n->state = KITE_NODE_INIT;
    n->counted = KITE_NODE_INIT;
  }
  pool->state_n[KITE_NODE_INIT] = pool->nodes_n;
  KITE_INFO(rt, "pool", "opening pool %s: %u nodes on %s", pool->name, pool->nodes_n,
            pool->provider);
  *out = pool;
  /* Where the instances will live is settled first (the catalog read and the optimizer's
   * choice when the spec asks kite to choose; every site's reach record), so that every
   * launch record carries it. */
  pool_hold(pool);
  int prc = kite__plan_make(pool->plan, on_planned, pool);
  if (prc != 0) {
    pool->plan->status = prc == KITE_ENOMEM ? KITE_ENOMEM : KITE_EINTERNAL;
    free(pool->plan->message);
    pool->plan->message = kite__sprintf("pool %s: cannot make its plan", pool->name);
    on_planned(pool->plan, pool->plan->status, pool);
  }
  return 0;
}

static void start_nodes(kite_pool_t *pool) {
  pool_hold(pool);
  for (unsigned i = 0; i < pool->nodes_n && !pool->closing; i++)
    kite__node_start(&pool->nodes[i]);
  pool_release(pool);
}

/* max_total_cost: the pool closes itself once what it spent reaches it. */
static void on_cost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_cost_t *c, void *data) {
  kite_pool_t *pool = data;
  (void)bus;
  (void)ev;
  if (c->node != 0 || pool->closing || pool->max_total_cost <= 0 ||
      c->accumulated < pool->max_total_cost)
    return;
  char *msg = kite__sprintf("pool %s spent $%.4f, reaching max_total_cost $%.4f: closing it "
                            "(every instance is terminated)",
                            pool->name, c->accumulated, pool->max_total_cost);
  kite_log(pool->rt, KITE_LOG_ERROR, "pool", "%s", msg ? msg : "max_total_cost reached");
  kite_ev_error_t e = {.pool = pool->id, .code = KITE_EPRICE, .message = msg};
  kite_emit_error(pool->bus, &e);
  if (!pool->open_reported && pool->open_status == 0) {
    pool->open_status = KITE_EPRICE;
    free(pool->open_message);
    pool->open_message = msg;
    msg = NULL;
  }
  free(msg);
  start_close(pool); /* the user still calls kite_pool_close */
}

static void on_planned(kite__plan_t *pl, int status, void *data) {
  kite_pool_t *pool = data;
  if (status == 0 && pl->chooses) {
    char *json = kite__plan_json(pl);
    kite_ev_pool_planned_t ev = {.pool = pool->id,
                                 .name = pool->name,
                                 .nodes = pool->nodes_n,
                                 .hourly = pl->hourly,
                                 .plan = json};
    kite_emit_pool_planned(pool->bus, &ev);
    free(json);
    const kite_offer_t *o = &pl->cands[0].offer;
    KITE_INFO(pool->rt, "pool", "pool %s: %s %s %s at $%.4f/h each, $%.4f/h in all", pool->name,
              o->provider, o->region, o->instance_type, pl->cands[0].price, pl->hourly);
  }
  if (status != 0)
    kite_log(pool->rt, KITE_LOG_ERROR, "pool", "%s",
             pl->message ? pl->message : kite_strerror(status));
  if (!pool->closing)
    start_nodes(pool);
  pool_release(pool);
}

/* The create call of a node's launch answered: its id is recorded now, not when the instance
 * runs, so that a process killed while it boots leaves the id behind. */
static void on_instance_created(kite_bus_t *bus, const kite_event_t *ev,
                                const kite_ev_instance_created_t *c, void *data) {
  kite_pool_t *pool = data;
  (void)bus;
  (void)ev;
  kite__node_t *n = node_by_id(pool, c->node, c->rank);
  if (n == NULL || c->instance_id == NULL || n->store_row == 0 || pool->store == NULL)
    return;
  if (kite_store_instance_launched(pool->store, n->store_row, c->instance_id, NULL, 0, NULL, NULL,
                                   -1) != 0)
    kite_log(pool->rt, KITE_LOG_ERROR, "pool", "%s rank %u: cannot record instance %s: %s",
             pool->name, n->rank, c->instance_id, kite_store_errmsg(pool->store));
}

/* The open callback runs once the events that led to it (the last rank's READY, pool_ready)
 * have been delivered, so a UI printing from both never sees "ready" before the step. */
static void on_open_after(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite_pool_t *pool = data;
  (void)bus;
  (void)ev;
  (void)status; /* a bus closing under us still owes the caller its one callback */
  pool->open_cb(pool, pool->open_status, pool->open_status ? pool->open_message : NULL,
                pool->open_data);
  pool_release(pool);
}

static void report_open(kite_pool_t *pool, int status, const char *message) {
  if (pool->open_reported)
    return;
  pool->open_reported = true;
  pool_hold(pool);
  if (status == 0) {
    kite_ev_pool_ready_t ev = {
        .pool = pool->id, .name = pool->name, .ready = pool->ready_at_min, .nodes = pool->nodes_n};
    kite_emit_pool_ready(pool->bus, &ev);
  }
  if (message != pool->open_message) {
    char *m = kite__strdup(message);
    free(pool->open_message);
    pool->open_message = m;
  }
  pool->open_status = status;
  if (kite_bus_after(pool->bus, on_open_after, pool, NULL) != 0)
    on_open_after(pool->bus, 0, NULL, pool);
}

/* Whether every node is final. */
static bool all_final(const kite_pool_t *pool) {
#ifndef NDEBUG
  unsigned final = 0;
  for (unsigned i = 0; i < pool->nodes_n; i++)
    final += kite__node_final(&pool->nodes[i]);
  assert(final == pool->final_n && "a node became final without marking itself dirty");
#endif
  return pool->final_n == pool->nodes_n;
}

static void maybe_report_open(kite_pool_t *pool) {
  if (pool->open_reported)
    return;
  /* Usable at some moment since the last turn: that is when it opened. */
  if (pool->min_reached) {
    report_open(pool, 0, NULL);
    return;
  }
  const unsigned *sn = pool->state_n;
  unsigned possible =
      pool->nodes_n - sn[KITE_NODE_FAILED] - sn[KITE_NODE_TERMINATED] - sn[KITE_NODE_TERMINATING];
  if (pool->closing) {
    /* Closed before it was usable: report once every node is final. */
    if (!all_final(pool))
      return;
    if (pool->open_status == 0) {
      pool->open_status = KITE_ECANCELED;
      free(pool->open_message);
      pool->open_message = kite__sprintf("pool %s was closed before it was ready", pool->name);
    }
    report_open(pool, pool->open_status, pool->open_message);
    return;
  }
  if (possible >= pool->min_nodes)
    return;
  /* It cannot become usable: say which rank failed and why, terminate everything, and only
   * then tell the caller. */
  for (unsigned i = 0; i < pool->nodes_n && pool->open_status == 0; i++) {
    kite__node_t *n = &pool->nodes[i];
    if (n->state == KITE_NODE_FAILED) {
      pool->open_status = n->failure_code < 0 ? n->failure_code : KITE_EINTERNAL;
      pool->open_message = kite__sprintf("pool %s: rank %u failed: %s", pool->name, n->rank,
                                         n->failure ? n->failure : "unknown error");
    }
  }
  if (pool->open_status == 0) {
    pool->open_status = KITE_EINTERNAL;
    pool->open_message =
        kite__sprintf("pool %s cannot reach %u ready nodes", pool->name, pool->min_nodes);
  }
  kite_log(pool->rt, KITE_LOG_ERROR, "pool", "%s; terminating every instance", pool->open_message);
  start_close(pool); /* internal teardown; the user still calls kite_pool_close */
}

void kite__pool_node_dirty(kite_pool_t *pool, kite__node_t *n) {
  if (n->counted != n->state) {
    pool->state_n[n->counted]--;
    pool->state_n[n->state]++;
    n->counted = n->state;
    if (n->state == KITE_NODE_READY && !pool->min_reached &&
        pool->state_n[KITE_NODE_READY] >= pool->min_nodes) {
      pool->min_reached = true;
      pool->ready_at_min = pool->state_n[KITE_NODE_READY];
    }
  }
  if (!n->counted_final && kite__node_final(n)) {
    n->counted_final = true;
    pool->final_n++;
  }
  if (n->dirty)
    return;
  n->dirty = true;
  n->dirty_next = NULL;
  if (pool->dirty_tail)
    pool->dirty_tail->dirty_next = n;
  else
    pool->dirty_head = n;
  pool->dirty_tail = n;
  if (pool->turn_open && !uv_is_active((uv_handle_t *)&pool->turn))
    uv_idle_start(&pool->turn, on_turn);
}

/* The reactions to the nodes marked dirty (n->dirty): the tasks that wait for one of them or
 * run on one that is gone, then every task's scheduling, the open and the close. */
static void react(kite_pool_t *pool) {
  for (task_t *t = pool->tasks; t; t = t->next_task) {
    for (unsigned i = 0; i < t->count; i++) {
      rank_run_t *r = &t->runs[i];
      if (r->finished)
        continue;
      kite__node_t *n = &pool->nodes[r->rank];
      if (!n->dirty)
        continue;
      bool gone = n->state == KITE_NODE_FAILED || n->state == KITE_NODE_TERMINATING ||
                  n->state == KITE_NODE_TERMINATED;
      if (r->started && r->corr && r->node_epoch != n->epoch) {
        kite_bus_cancel(pool->bus, r->corr); /* its reply finishes the run */
      } else if (gone && !r->started && i < t->next) {
        run_finished(r, KITE_ENODELOST, -1, NULL, n->failure ? n->failure : "node is gone");
      }
    }
  }
}

static void on_turn(uv_idle_t *h) {
  kite_pool_t *pool = kite_container_of(h, kite_pool_t, turn);
  pool_hold(pool);
  /* A reaction may change nodes again (an open that failed closes them): those are reacted
   * to in the same turn. */
  while (pool->dirty_head && !pool->freed) {
    kite__node_t *dirty = pool->dirty_head;
    pool->dirty_head = pool->dirty_tail = NULL;
    react(pool);
    for (kite__node_t *n = dirty, *next; n; n = next) {
      next = n->dirty_next;
      n->dirty_next = NULL;
      n->dirty = false;
    }
    for (task_t *t = pool->tasks, *nt; t; t = nt) {
      nt = t->next_task;
      schedule(t);
    }
    maybe_report_open(pool);
    maybe_finish_close(pool);
  }
  if (pool->turn_open && pool->dirty_head == NULL)
    uv_idle_stop(&pool->turn);
  pool_release(pool);
}

/* ---- tasks ------------------------------------------------------------------------------- */

static void task_free(task_t *t) {
  for (unsigned i = 0; i < t->count; i++) {
    free(t->runs[i].signal);
    free(t->runs[i].message);
    free(t->runs[i].instance);
    free(t->runs[i].tail);
  }
  free(t->runs);
  free(t->results);
  free(t->script);
  free(t->local);
  free(t->remote);
  free_env(t->env);
  free(t);
}

/* Where the kept tail begins: after the first newline when earlier output was dropped, so
 * the history never starts in the middle of a line. */
static const char *tail_start(const rank_run_t *r) {
  if (r->tail == NULL || !r->tail_dropped)
    return r->tail;
  const char *nl = memchr(r->tail, '\n', r->tail_len);
  return nl && nl + 1 < r->tail + r->tail_len ? nl + 1 : r->tail;
}

/* Every rank of a finished task goes to the store's task history in one transaction: what ran
 * (secrets redacted), where, when, how it ended, and the tail of its output, so `kite logs`
 * shows it after the pool is gone. */
static void record_task(task_t *t) {
  kite_pool_t *pool = t->pool;
  if (pool->store == NULL || t->count == 0)
    return;
  char *what = t->kind == TASK_EXEC     ? kite__strdup(t->script)
               : t->kind == TASK_UPLOAD ? kite__sprintf("upload %s -> %s", t->local, t->remote)
                                        : kite__sprintf("download %s -> %s", t->remote, t->local);
  size_t wl = 0;
  char *cmd = what ? kite_redact(pool->rt, what, strlen(what), &wl) : NULL;
  free(what);
  kite_store_task_t *v = calloc(t->count, sizeof(*v));
  char **errs = calloc(t->count, sizeof(*errs));
  for (unsigned i = 0; v && errs && i < t->count; i++) {
    rank_run_t *r = &t->runs[i];
    const kite_rank_result_t *res = &t->results[i];
    if (res->error)
      errs[i] = kite__sprintf("%s%s%s", kite_err_name(res->error), r->message ? ": " : "",
                              r->message ? r->message : "");
    v[i] = (kite_store_task_t){.pool = pool->name,
                               .task_id = t->id,
                               .rank = r->rank,
                               .attempt = r->attempt,
                               .command = cmd,
                               .started_ms = r->started_ms ? r->started_ms : r->finished_ms,
                               .finished_ms = r->finished_ms,
                               .exit_status = res->error ? -1 : res->exit_status,
                               .error = errs[i],
                               .signal = r->signal,
                               .instance_id = r->instance,
                               .output = tail_start(r),
                               .output_len = r->tail_len - (size_t)(tail_start(r) - r->tail),
                               .output_truncated = r->tail_dropped};
  }
  if (v && errs && kite_store_tasks_record(pool->store, v, t->count) != 0)
    kite_log(pool->rt, KITE_LOG_WARN, "pool",
             "pool %s: the task history could not be recorded: "
             "%s",
             pool->name, kite_store_errmsg(pool->store));
  for (unsigned i = 0; errs && i < t->count; i++)
    free(errs[i]);
  free(errs);
  free(v);
  free(cmd);
}

static void task_complete(task_t *t) {
  kite_pool_t *pool = t->pool;
  for (task_t **pp = &pool->tasks; *pp; pp = &(*pp)->next_task)
    if (*pp == t) {
      *pp = t->next_task;
      break;
    }
  unsigned failed = 0;
  for (unsigned i = 0; i < t->count; i++) {
    rank_run_t *r = &t->runs[i];
    kite_rank_result_t *res = &t->results[i];
    res->rank = r->rank;
    res->signal = r->signal;
    res->message = r->message;
    res->attempts = r->attempt;
    if (res->error != 0 || res->exit_status != 0 || res->signal)
      failed++;
  }
  record_task(t);
  kite_task_result_t result = {.count = t->count, .failed = failed, .ranks = t->results};
  pool_hold(pool);
  if (t->cb)
    t->cb(pool, 0, &result, t->data);
  task_free(t);
  pool_release(pool);
}

static void run_finished(rank_run_t *r, int error, int exit_status, const char *signal,
                         const char *message) {
  task_t *t = r->task;
  if (r->finished)
    return;
  if (r->out_sub.id) {
    kite_bus_unsubscribe(t->pool->bus, r->out_sub);
    r->out_sub.id = 0;
  }
  if (r->started && t->inflight > 0)
    t->inflight--;
  r->corr = 0;
  /* A lost node's work is re-run on its replacement when the caller asked for retries. */
  kite__node_t *n = &t->pool->nodes[r->rank];
  bool lost = error == KITE_ECONNLOST || error == KITE_ENODELOST;
  if (lost && r->attempt <= t->opts.retries && !t->pool->closing && !t->canceled &&
      t->pool->replace && n->state != KITE_NODE_FAILED && n->state != KITE_NODE_TERMINATED) {
    r->started = false;
    /* Not on the instance that was lost (its node may still look READY for a moment): on the
     * replacement. */
    r->await_replacement = true;
    return; /* schedule() starts it again when the replacement is READY */
  }
  r->finished = true;
  r->finished_ms = (int64_t)kite__wall_ms();
  kite_rank_result_t *res = &t->results[r - t->runs];
  res->error = lost ? KITE_ENODELOST : error;
  res->exit_status = exit_status;
  free(r->signal);
  free(r->message);
  r->signal = kite__strdup(signal && *signal ? signal : NULL);
  r->message = kite__strdup(message && *message ? message : NULL);
  t->done++;
}

/* Keeps the last TASK_TAIL bytes of a rank's output. */
static void keep_tail(rank_run_t *r, const void *buf, size_t len) {
  if (r->tail == NULL && (r->tail = malloc(TASK_TAIL)) == NULL)
    return;
  if (len >= TASK_TAIL) {
    memcpy(r->tail, (const char *)buf + len - TASK_TAIL, TASK_TAIL);
    r->tail_dropped = r->tail_dropped || len > TASK_TAIL || r->tail_len > 0;
    r->tail_len = TASK_TAIL;
    return;
  }
  if (r->tail_len + len > TASK_TAIL) {
    size_t drop = r->tail_len + len - TASK_TAIL;
    memmove(r->tail, r->tail + drop, r->tail_len - drop);
    r->tail_len -= drop;
    r->tail_dropped = true;
  }
  memcpy(r->tail + r->tail_len, buf, len);
  r->tail_len += len;
}

static void on_output(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_output_t *p,
                      void *data) {
  rank_run_t *r = data;
  (void)bus;
  (void)ev;
  task_t *t = r->task;
  if (r->finished)
    return;
  keep_tail(r, p->data.ptr, p->data.len);
  if (t->out)
    t->out(t->pool, r->rank, p->attempt, (int)p->stream, p->data.ptr, p->data.len, t->data);
}

/* ---- cancel ------------------------------------------------------------------------------ */

/* The reply to an ssh_hold: nothing to do (a command that has just ended has nothing to hold). */
static void on_hold_sent(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  (void)bus;
  (void)status;
  (void)ev;
  (void)data;
}

static void run_hold(rank_run_t *r, bool hold) {
  kite_ev_ssh_hold_t h = {.node = r->node_id, .task = r->sub_id, .hold = hold};
  (void)kite_request_ssh_hold(r->task->pool->bus, &h, 0, on_hold_sent, NULL, NULL);
}

static void on_cancel_sent(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  /* Nothing to do: the canceled request's own reply ends the run (an ENOENT here means it
   * had already ended, and that reply is on its way). */
  (void)bus;
  (void)status;
  (void)ev;
  (void)data;
}

/* Whether a started rank of any task still waits for its request's reply. */
static bool runs_in_flight(kite_pool_t *pool) {
  for (task_t *t = pool->tasks; t; t = t->next_task)
    for (unsigned i = 0; i < t->count; i++)
      if (t->runs[i].started && t->runs[i].corr && !t->runs[i].finished)
        return true;
  return false;
}

/* Stops what t still runs. A rank not started ends now with KITE_ECANCELED; a started one is
 * stopped on its node (ssh_cancel: the transport kills the command's process group, or stops
 * the transfer) and ends when its own request's reply says it has, so the task's completion
 * means "nothing of it runs any more". Does not complete the task: schedule() does. */
static void task_cancel(task_t *t, const char *why) {
  kite_pool_t *pool = t->pool;
  t->canceled = true;
  for (unsigned i = 0; i < t->count; i++) {
    rank_run_t *r = &t->runs[i];
    if (r->finished)
      continue;
    if (!r->started) {
      run_finished(r, KITE_ECANCELED, -1, NULL, why);
    } else if (r->corr && !r->cancel_sent) {
      r->cancel_sent = true;
      kite_ev_ssh_cancel_t c = {.node = r->node_id, .task = r->sub_id};
      if (kite_request_ssh_cancel(pool->bus, &c, 0, on_cancel_sent, NULL, NULL) != 0)
        kite_bus_cancel(pool->bus, r->corr); /* cannot ask: at least stop waiting */
    }
  }
}

int kite_pool_hold(kite_pool_t *pool, uint64_t task_id, bool hold) {
  if (pool == NULL)
    return KITE_EINVAL;
  task_t *t = pool->tasks;
  while (t && t->id != task_id)
    t = t->next_task;
  if (t == NULL)
    return KITE_ENOENT;
  if (t->held == hold || t->kind != TASK_EXEC)
    return 0;
  t->held = hold;
  for (unsigned i = 0; i < t->count; i++)
    if (t->runs[i].started && !t->runs[i].finished && t->runs[i].corr)
      run_hold(&t->runs[i], hold);
  return 0;
}

int kite_pool_cancel(kite_pool_t *pool, uint64_t task_id) {
  if (pool == NULL)
    return KITE_EINVAL;
  task_t *t = pool->tasks;
  while (t && t->id != task_id)
    t = t->next_task;
  if (t == NULL)
    return KITE_ENOENT;
  pool_hold(pool);
  task_cancel(t, "the task was canceled");
  schedule(t);
  pool_release(pool);
  return 0;
}

static void on_exec_done(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  rank_run_t *r = data;
  task_t *t = r->task;
  kite_pool_t *pool = t->pool;
  (void)bus;
  r->corr = 0;
  const kite_ev_task_finished_t *f = kite_ev_as_task_finished(ev);
  const kite_ev_transfer_done_t *x = kite_ev_as_transfer_done(ev);
  if (status == 0 && f)
    run_finished(r, f->error, f->exit_status, f->signal, f->message);
  else if (status == 0 && x)
    run_finished(r, x->error, x->error ? -1 : 0, NULL, x->message);
  else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    int err = status ? status : KITE_EINTERNAL;
    kite__node_t *n = &pool->nodes[r->rank];
    /* Canceled because its instance left service, even if the node is READY again by now. */
    if (err == KITE_ECANCELED && !pool->closing &&
        (n->state != KITE_NODE_READY || n->epoch != r->node_epoch))
      err = KITE_ENODELOST;
    run_finished(r, err, -1, NULL, e ? e->message : NULL);
  }
  pool_hold(pool);
  schedule(t); /* may complete and free t */
  /* Closing, and the last canceled command is confirmed stopped: the nodes may go now. */
  if (pool->closing && !pool->nodes_closing && !runs_in_flight(pool))
    close_nodes(pool);
  maybe_finish_close(pool);
  pool_release(pool);
}

static int start_run(task_t *t, rank_run_t *r) {
  kite_pool_t *pool = t->pool;
  kite__node_t *n = &pool->nodes[r->rank];
  r->attempt++;
  r->sub_id = kite__next_id();
  r->node_id = n->id;
  r->node_epoch = n->epoch;
  r->started_ms = (int64_t)kite__wall_ms();
  free(r->instance);
  r->instance = kite__strdup(n->instance_id);
  /* A re-run's output replaces the lost attempt's in the history. */
  r->tail_len = 0;
  r->tail_dropped = false;
  r->cancel_sent = false;
  r->started = true;
  t->inflight++;
  int rc;
  if (t->kind == TASK_EXEC) {
    char *cmd = render_command(pool, r->rank, t);
    if (cmd == NULL)
      return KITE_ENOMEM;
    rc = kite_on_task_output(pool->bus, r->sub_id, on_output, r, &r->out_sub);
    if (rc == 0) {
      kite_ev_task_started_t s = {.pool = pool->id,
                                  .node = n->id,
                                  .task = r->sub_id,
                                  .rank = r->rank,
                                  .attempt = r->attempt};
      kite_emit_task_started(pool->bus, &s);
      kite_ev_ssh_exec_t x = {.pool = pool->id,
                              .node = n->id,
                              .task = r->sub_id,
                              .rank = r->rank,
                              .attempt = r->attempt,
                              .cmd = cmd,
                              .timeout_ms = (int64_t)t->opts.timeout_ms};
      rc = kite_request_ssh_exec(pool->bus, &x, 0, on_exec_done, r, &r->corr);
    }
    if (rc == 0 && t->held)
      run_hold(r, true);
    free(cmd);
  } else if (t->kind == TASK_UPLOAD) {
    kite_ev_ssh_upload_t u = {
        .node = n->id, .task = r->sub_id, .local = t->local, .remote = t->remote, .mode = -1};
    rc = kite_request_ssh_upload(pool->bus, &u, 0, on_exec_done, r, &r->corr);
  } else {
    kite_ev_ssh_download_t d = {
        .node = n->id, .task = r->sub_id, .remote = t->remote, .local = t->local};
    rc = kite_request_ssh_download(pool->bus, &d, 0, on_exec_done, r, &r->corr);
  }
  return rc;
}

/* Starts what may start (READY nodes, within the fan-out) and completes the task when every
 * rank has a final result. */
static void schedule(task_t *t) {
  kite_pool_t *pool = t->pool;
  unsigned limit = t->opts.fanout ? t->opts.fanout : t->count;
  for (unsigned i = 0; i < t->count; i++) {
    rank_run_t *r = &t->runs[i];
    if (r->finished || r->started)
      continue;
    if (i >= t->next && t->inflight >= limit)
      break;
    kite__node_t *n = &pool->nodes[r->rank];
    if (pool->closing || t->canceled) {
      run_finished(r, KITE_ECANCELED, -1, NULL,
                   pool->closing ? "the pool is closing" : "the task was canceled");
    } else if (n->state == KITE_NODE_READY &&
               !(r->await_replacement && r->instance && n->instance_id &&
                 strcmp(r->instance, n->instance_id) == 0)) {
      r->await_replacement = false;
      if (t->inflight >= limit)
        break;
      if (i >= t->next)
        t->next = i + 1;
      int rc = start_run(t, r);
      if (rc != 0)
        run_finished(r, rc, -1, NULL, "could not start the command");
    } else if (n->state == KITE_NODE_FAILED || n->state == KITE_NODE_TERMINATED ||
               n->state == KITE_NODE_TERMINATING) {
      if (i >= t->next)
        t->next = i + 1;
      run_finished(r, KITE_ENODELOST, -1, NULL,
                   n->failure ? n->failure : "the node is not available");
    }
    /* Other states (provisioning, replacing, draining): the run waits for READY. */
  }
  if (t->done == t->count)
    task_complete(t);
}

static int task_new(kite_pool_t *pool, task_kind_t kind, const kite_cmd_t *cmd,
                    const kite_task_opts_t *opts, const uint32_t *ranks, unsigned count,
                    kite_output_cb out, kite_task_cb cb, void *data, task_t **tout) {
  if (pool->closing)
    return KITE_ECLOSED;
  if (!pool->open_reported || pool->open_status != 0)
    return KITE_ESTATE;
  task_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return KITE_ENOMEM;
  int rc = 0;
  t->pool = pool;
  t->id = kite__next_id();
  t->kind = kind;
  if (opts)
    t->opts = *opts;
  t->opts.env = NULL;
  t->out = out;
  t->cb = cb;
  t->data = data;
  if (kind == TASK_EXEC) {
    if (cmd == NULL || (cmd->argv == NULL) == (cmd->shell == NULL) ||
        (cmd->argv && cmd->argv[0] == NULL)) {
      free(t);
      return KITE_EINVAL;
    }
    t->script = cmd->shell ? kite__strdup(cmd->shell) : kite__shell_join(cmd->argv);
    t->argv = cmd->shell == NULL;
    if (t->script == NULL)
      rc = KITE_ENOMEM;
    if (rc == 0 && opts && opts->env)
      t->env = dup_env(opts->env, &rc);
  }
  t->count = count;
  t->runs = calloc(count, sizeof(*t->runs));
  t->results = calloc(count, sizeof(*t->results));
  if (rc == 0 && (t->runs == NULL || t->results == NULL))
    rc = KITE_ENOMEM;
  if (rc != 0) {
    task_free(t);
    return rc;
  }
  for (unsigned i = 0; i < count; i++) {
    t->runs[i].task = t;
    t->runs[i].rank = ranks ? ranks[i] : i;
    t->results[i].exit_status = -1;
  }
  *tout = t;
  return 0;
}

static void task_go(task_t *t) {
  kite_pool_t *pool = t->pool;
  t->next_task = pool->tasks;
  pool->tasks = t;
  pool_hold(pool);
  schedule(t);
  pool_release(pool);
}

int kite_pool_run(kite_pool_t *pool, uint32_t rank, const kite_cmd_t *cmd,
                  const kite_task_opts_t *opts, kite_output_cb out, kite_task_cb cb, void *data,
                  uint64_t *task_id) {
  if (pool == NULL || rank >= pool->nodes_n)
    return KITE_EINVAL;
  task_t *t;
  int rc = task_new(pool, TASK_EXEC, cmd, opts, &rank, 1, out, cb, data, &t);
  if (rc != 0)
    return rc;
  if (task_id)
    *task_id = t->id;
  task_go(t);
  return 0;
}

int kite_pool_run_ranks(kite_pool_t *pool, const uint32_t *ranks, unsigned n, const kite_cmd_t *cmd,
                        const kite_task_opts_t *opts, kite_output_cb out, kite_task_cb cb,
                        void *data, uint64_t *task_id) {
  if (pool == NULL || ranks == NULL || n == 0 || n > pool->nodes_n)
    return KITE_EINVAL;
  for (unsigned i = 0; i < n; i++) {
    if (ranks[i] >= pool->nodes_n)
      return KITE_EINVAL;
    for (unsigned k = 0; k < i; k++)
      if (ranks[k] == ranks[i])
        return KITE_EINVAL;
  }
  task_t *t;
  int rc = task_new(pool, TASK_EXEC, cmd, opts, ranks, n, out, cb, data, &t);
  if (rc != 0)
    return rc;
  if (task_id)
    *task_id = t->id;
  task_go(t);
  return 0;
}

int kite_pool_broadcast(kite_pool_t *pool, const kite_cmd_t *cmd, const kite_task_opts_t *opts,
                        kite_output_cb out, kite_task_cb cb, void *data, uint64_t *task_id) {
  if (pool == NULL)
    return KITE_EINVAL;
  task_t *t;
  int rc = task_new(pool, TASK_EXEC, cmd, opts, NULL, pool->nodes_n, out, cb, data, &t);
  if (rc != 0)
    return rc;
  if (task_id)
    *task_id = t->id;
  task_go(t);
  return 0;
}

int kite_pool_upload(kite_pool_t *pool, const char *local, const char *remote, kite_task_cb cb,
                     void *data) {
  if (pool == NULL || local == NULL || remote == NULL || *local == '\0' || *remote == '\0')
    return KITE_EINVAL;
  task_t *t;
  int rc = task_new(pool, TASK_UPLOAD, NULL, NULL, NULL, pool->nodes_n, NULL, cb, data, &t);
  if (rc != 0)
    return rc;
  t->local = kite__strdup(local);
  t->remote = kite__strdup(remote);
  if (t->local == NULL || t->remote == NULL) {
    task_free(t);
    return KITE_ENOMEM;
  }
  task_go(t);
  return 0;
}

int kite_pool_download(kite_pool_t *pool, uint32_t rank, const char *remote, const char *local,
                       kite_task_cb cb, void *data) {
  if (pool == NULL || rank >= pool->nodes_n || local == NULL || remote == NULL)
    return KITE_EINVAL;
  task_t *t;
  int rc = task_new(pool, TASK_DOWNLOAD, NULL, NULL, &rank, 1, NULL, cb, data, &t);
  if (rc != 0)
    return rc;
  t->local = kite__strdup(local);
  t->remote = kite__strdup(remote);
  if (t->local == NULL || t->remote == NULL) {
    task_free(t);
    return KITE_ENOMEM;
  }
  task_go(t);
  return 0;
}

/* ---- inspection -------------------------------------------------------------------------- */

uint64_t kite_pool_id(const kite_pool_t *pool) {
  return pool->id;
}
const char *kite_pool_name(const kite_pool_t *pool) {
  return pool->name;
}
unsigned kite_pool_size(const kite_pool_t *pool) {
  return pool->nodes_n;
}

unsigned kite_pool_min_nodes(const kite_pool_t *pool) {
  return pool->min_nodes;
}

unsigned kite_pool_ready_count(const kite_pool_t *pool) {
  return pool->state_n[KITE_NODE_READY];
}

int kite_pool_node_state(const kite_pool_t *pool, uint32_t rank) {
  return rank < pool->nodes_n ? (int)pool->nodes[rank].state : KITE_EINVAL;
}

const char *kite_pool_instance_id(const kite_pool_t *pool, uint32_t rank) {
  return rank < pool->nodes_n ? pool->nodes[rank].instance_id : NULL;
}

const char *kite_pool_address(const kite_pool_t *pool, uint32_t rank) {
  return rank < pool->nodes_n ? pool->nodes[rank].address : NULL;
}

uint64_t kite_pool_node_id(const kite_pool_t *pool, uint32_t rank) {
  return rank < pool->nodes_n ? pool->nodes[rank].id : 0;
}

/* ---- close ------------------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  kite_pool_t *pool = h->data;
  pool_release(pool);
}

static void maybe_finish_close(kite_pool_t *pool) {
  if (!pool->closing || pool->close_reported || (!pool->user_closed && !pool->comp_done))
    return;
  if (pool->tasks || !pool->nodes_closing)
    return;
  if (!all_final(pool))
    return;
  if (!pool->open_reported)
    return; /* maybe_report_open reports first, then calls us again */
  pool->close_reported = true;
  kite_ev_pool_closed_t ev = {.pool = pool->id, .name = pool->name};
  kite_emit_pool_closed(pool->bus, &ev);
  KITE_INFO(pool->rt, "pool", "pool %s closed: every instance terminated", pool->name);
  if (pool->store)
    kite_store_pool_set_state(pool->store, pool->name,
                              pool->close_status ? "close-failed" : "closed", 0, NULL);
  pool_hold(pool);
  if (pool->close_cb)
    pool->close_cb(pool, pool->close_status, pool->close_data);
  if (pool->in_runtime) {
    /* Leaving the runtime: a pool closed by the program stops being a component. */
    pool->in_runtime = false;
    if (pool->comp_done) {
      kite_component_stopped_fn done = pool->comp_done;
      pool->comp_done = NULL;
      done(&pool->comp);
    } else {
      kite_runtime_remove(pool->rt, &pool->comp);
    }
  }
  pool->freed = true;
  /* Freed when the handles have closed. */
  if (pool->replace_timer_open) {
    pool->replace_timer_open = false;
    pool->replace_timer.data = pool;
    pool_hold(pool);
    uv_close((uv_handle_t *)&pool->replace_timer, on_handle_closed);
  }
  if (pool->term_timer_open) {
    pool->term_timer_open = false;
    pool->term_timer.data = pool;
    pool_hold(pool);
    uv_close((uv_handle_t *)&pool->term_timer, on_handle_closed);
  }
  if (pool->turn_open) {
    pool->turn_open = false;
    pool->turn.data = pool;
    pool_hold(pool);
    uv_close((uv_handle_t *)&pool->turn, on_handle_closed);
  }
  pool_release(pool);
}

static void close_nodes(kite_pool_t *pool) {
  pool->nodes_closing = true;
  for (unsigned i = 0; i < pool->nodes_n; i++)
    kite__node_close(&pool->nodes[i]);
}

static void start_close(kite_pool_t *pool) {
  pool_hold(pool);
  pool->closing = true;
  kite_bus_unsubscribe(pool->bus, pool->cost_sub);
  pool->cost_sub.id = 0;
  kite__watch_free(pool->watch);
  pool->watch = NULL;
  for (size_t k = 0; k < KITE_ARRAY_SIZE(pool->subs); k++) {
    kite_bus_unsubscribe(pool->bus, pool->subs[k]);
    pool->subs[k].id = 0;
  }
  if (pool->replace_timer_open)
    uv_timer_stop(&pool->replace_timer);
  /* The nodes close once every canceled command is confirmed stopped (on_exec_done). */
  for (task_t *t = pool->tasks; t; t = t->next_task)
    task_cancel(t, "the pool is closing");
  if (!runs_in_flight(pool))
    close_nodes(pool);
  for (task_t *t = pool->tasks, *nt; t; t = nt) {
    nt = t->next_task;
    schedule(t);
  }
  maybe_report_open(pool);
  maybe_finish_close(pool);
  pool_release(pool);
}

void kite_pool_close(kite_pool_t *pool, kite_pool_close_cb cb, void *data) {
  assert(!pool->user_closed && "kite_pool_close called twice");
  pool->user_closed = true;
  pool->close_cb = cb;
  pool->close_data = data;
  start_close(pool);
}

static void comp_stop(kite_component_t *c, kite_component_stopped_fn done) {
  kite_pool_t *pool = kite_container_of(c, kite_pool_t, comp);
  pool->comp_done = done;
  start_close(pool);
}
