/* `kite down NAME|--all`: close a pool and terminate its instances.
 *
 * With a live owner, the owner closes the pool (it holds the sessions and the provider
 * state). With a dead one (killed, crashed), this process reads the store and terminates
 * every recorded live instance through the provider itself: it starts the provider, sends it
 * instance_terminate for each, and marks a record terminated only when the provider confirms.
 * Instances of a dead owner on a provider whose machines are processes of this host are handed
 * to it with the registry's adopt, which finds them by the pool's tag. A launch whose instance
 * id was never recorded (the owner died while launching) is matched by the provider's own list
 * of instances carrying the pool's tag (store reconciliation); for host processes, the tag's
 * processes are what is terminated. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Where the progress lines go: stdout, or stderr with --json (stdout then carries only the
 * JSON result). */
static FILE *prog;

typedef struct down_op {
  struct down *d;
  int64_t row;
  int64_t rank;
  char *instance_id; /* the provider's id, or NULL (then id is our placeholder) */
  char *id;
} down_op_t;

/* One place the pool's instances were created (a distinct reach record), asked for its list
 * of the pool's tag. */
typedef struct down_reach {
  struct down *d;
  char *reach; /* or NULL: a record from before reach records (asked where this process would) */
  bool listed; /* the provider answered with its whole list */
} down_reach_t;

typedef struct down {
  cli_engine_t eng;
  kite_store_t *st;
  const char *name;
  const char *provider;
  const char *tag;
  down_op_t *ops;
  size_t n, pending;
  down_reach_t *reaches;
  size_t reaches_n, lists_pending;
  unsigned confirmed, failed;
  uv_timer_t grace;
  bool grace_open;
} down_t;

/* How long a launch begun by a dead owner may take to show in the provider's list: a create
 * sent just before the owner died is listed by then (the clouds kite knows list a new instance
 * within seconds). A launch older than that which no list shows created nothing. */
#define LAUNCH_GRACE_MS 10000

static void finish_if_done(down_t *d) {
  if (d->pending == 0 && d->lists_pending == 0)
    kite_runtime_shutdown(d->eng.rt, NULL, NULL);
}

/* A string field of a reach record (malloc'd), or NULL. */
static char *reach_field(const char *reach, const char *key) {
  json_error_t e;
  json_t *j = reach ? json_loads(reach, 0, &e) : NULL;
  const char *v = json_string_value(json_object_get(j, key));
  char *out = v ? strdup(v) : NULL;
  json_decref(j);
  return out;
}

static const char *reach_where(const char *reach, char *buf, size_t len) {
  char *region = reach_field(reach, "region");
  char *ep = reach_field(reach, "endpoint");
  char *api = reach_field(reach, "api_url");
  snprintf(buf, len, "%s%s%s%s", region ? region : "", region && (ep || api) ? " at " : "",
           ep    ? ep
           : api ? api
                 : "",
           !region && !ep && !api ? "its default place" : "");
  free(region);
  free(ep);
  free(api);
  return buf;
}

static void on_terminated(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  down_op_t *op = data;
  down_t *d = op->d;
  (void)bus;
  d->pending--;
  if (status == 0) {
    int rc = op->instance_id
                 ? kite_store_instance_terminated(d->st, d->provider, op->instance_id)
                 : kite_store_instance_terminated_row(
                       d->st, op->row,
                       "never reported by the provider; none of its tag's processes is left");
    if (rc != 0) {
      cli_err("down: %s terminated, but the store could not record it: %s", op->id,
              kite_store_errmsg(d->st));
      d->failed++;
    } else {
      d->confirmed++;
      char rank[24] = "-";
      if (op->rank >= 0)
        snprintf(rank, sizeof(rank), "%lld", (long long)op->rank);
      const kite_provider_info_t *info = kite_registry_find(d->provider);
      fprintf(prog, "  rank %-4s %-28s %s\n", rank,
              op->instance_id ? op->instance_id : "(launching, no id yet)",
              info && info->user_machines ? "released (your machine; left running)"
                                          : "terminated (confirmed by the provider)");
    }
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    cli_err("down: rank %lld, instance %s: %s; it stays recorded: run `kite down %s` again",
            (long long)op->rank, op->id, e && e->message ? e->message : kite_strerror(status),
            d->name);
    d->failed++;
  }
  fflush(prog);
  finish_if_done(d);
}

/* Whether every place the pool's instances were created answered with its whole list. */
static bool all_listed(const down_t *d) {
  for (size_t i = 0; i < d->reaches_n; i++)
    if (!d->reaches[i].listed)
      return false;
  return d->reaches_n > 0;
}

static void terminate_all(down_t *d) {
  kite_bus_t *bus = kite_runtime_bus(d->eng.rt);
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  if (kite_store_instances(d->st, d->name, true, &v, &n) != 0) {
    cli_err("down: %s", kite_store_errmsg(d->st));
    d->failed++;
    kite_runtime_shutdown(d->eng.rt, NULL, NULL);
    return;
  }
  const kite_provider_info_t *info = kite_registry_find(d->provider);
  bool local = info && info->host_processes;
  bool listed = all_listed(d);
  d->ops = calloc(n ? n : 1, sizeof(*d->ops));
  for (size_t i = 0; d->ops && i < n; i++) {
    if (strcmp(v[i].provider, d->provider) != 0)
      continue; /* another provider's: its own pass */
    down_op_t *op = &d->ops[d->n];
    op->d = d;
    op->row = v[i].row;
    op->rank = v[i].rank;
    if (v[i].instance_id == NULL && !local) {
      /* A launch the dead owner began whose create never answered it. Every place the pool
       * used listed the tag's instances (and those are terminated here, found by the
       * reconciliation), so this launch created nothing. */
      char where[256];
      if (listed && kite_store_instance_terminated_row(
                        d->st, v[i].row,
                        "the provider, asked where the pool launches, lists no instance of "
                        "this launch") == 0) {
        fprintf(prog,
                "  rank %-4lld %-28s no instance: %s lists none beyond those terminated here\n",
                (long long)v[i].rank, "(launch never answered)",
                reach_where(v[i].reach, where, sizeof(where)));
        d->confirmed++;
      } else {
        cli_err("down: the launch of rank %lld (token %s) never reported an instance and %s "
                "could not be asked for the instances tagged %s; run `kite down %s` again",
                (long long)v[i].rank, v[i].launch_token ? v[i].launch_token : "-", d->provider,
                d->tag, d->name);
        d->failed++;
      }
      continue;
    }
    op->instance_id = v[i].instance_id ? strdup(v[i].instance_id) : NULL;
    op->id = v[i].instance_id ? strdup(v[i].instance_id)
                              : cli_sprintf("launching-row-%lld", (long long)v[i].row);
    if (local) {
      void *h = cli_engine_host(&d->eng, d->provider);
      int rc = h && info->adopt ? info->adopt(h, op->id, d->tag) : KITE_ENOTSUP;
      if (rc != 0 && rc != KITE_EEXIST) {
        cli_err("down: the %s provider cannot take charge of %s: %s", d->provider, op->id,
                kite_strerror(rc));
        free(op->instance_id);
        free(op->id);
        d->failed++;
        continue;
      }
    }
    kite_store_instance_terminating(d->st, op->row);
    kite_ev_instance_terminate_t t = {.provider = d->provider,
                                      .rank = op->rank >= 0 ? (uint32_t)op->rank : 0,
                                      .instance_id = op->id,
                                      .reach = v[i].reach};
    if (kite_request_instance_terminate(bus, &t, 0, on_terminated, op, NULL) != 0) {
      cli_err("down: cannot ask %s to terminate %s", d->provider, op->id);
      free(op->instance_id);
      free(op->id);
      d->failed++;
      continue;
    }
    d->n++;
    d->pending++;
  }
  kite_store_instances_free(v, n);
  fflush(prog);
  finish_if_done(d);
}

/* The provider's own list of the tag's instances where the pool's instances were created,
 * reconciled into the store first: what a dead owner created but never recorded is found. */
static void on_listed(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  down_reach_t *r = data;
  down_t *d = r->d;
  (void)bus;
  d->lists_pending--;
  const kite_ev_instance_listed_t *l = kite_ev_as_instance_listed(ev);
  if (status == 0 && l) {
    size_t n = 1;
    for (const char *p = l->ids ? l->ids : ""; *p; p++)
      n += *p == '\n';
    kite_store_listed_t *v = calloc(n, sizeof(*v));
    char *ids = strdup(l->ids ? l->ids : "");
    size_t k = 0;
    for (char *save = NULL, *tok = ids ? strtok_r(ids, "\n", &save) : NULL; v && tok && k < n;
         tok = strtok_r(NULL, "\n", &save))
      v[k++].instance_id = tok;
    kite_store_reconcile_opts_t o = {.reach = r->reach};
    kite_store_reconcile_result_t res = {0};
    if (v && ids && kite_store_reconcile(d->st, d->name, d->provider, v, k, &o, &res) == 0) {
      r->listed = true;
      if (res.found || res.adopted)
        fprintf(prog,
                "  the provider lists %u instance(s) of the pool that the store did not know\n",
                res.found + res.adopted);
    } else {
      cli_err("down: cannot record the provider's list: %s", kite_store_errmsg(d->st));
    }
    free(ids);
    free(v);
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    cli_err("down: %s could not list the instances tagged %s: %s", d->provider, d->tag,
            e && e->message ? e->message : kite_strerror(status));
  }
  if (d->lists_pending == 0)
    terminate_all(d);
}

static void list_everywhere(down_t *d) {
  kite_bus_t *bus = kite_runtime_bus(d->eng.rt);
  for (size_t i = 0; i < d->reaches_n; i++) {
    kite_ev_instance_list_t l = {
        .provider = d->provider, .tag = d->tag, .reach = d->reaches[i].reach};
    if (kite_request_instance_list(bus, &l, 0, on_listed, &d->reaches[i], NULL) == 0)
      d->lists_pending++;
  }
  if (d->lists_pending == 0)
    terminate_all(d);
}

static void on_grace(uv_timer_t *t) {
  down_t *d = kite_container_of(t, down_t, grace);
  list_everywhere(d);
}

/* The distinct reach records of the pool's live instances, and the youngest launch without an
 * id. */
static int collect_reaches(down_t *d, int64_t *youngest_launch) {
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  *youngest_launch = 0;
  if (kite_store_instances(d->st, d->name, true, &v, &n) != 0)
    return -1;
  d->reaches = calloc(n ? n : 1, sizeof(*d->reaches));
  for (size_t i = 0; d->reaches && i < n; i++) {
    if (strcmp(v[i].provider, d->provider) != 0)
      continue; /* another provider's: its own pass */
    if (v[i].instance_id == NULL && v[i].created_ms > *youngest_launch)
      *youngest_launch = v[i].created_ms;
    bool seen = false;
    for (size_t k = 0; k < d->reaches_n && !seen; k++)
      seen = (v[i].reach == NULL && d->reaches[k].reach == NULL) ||
             (v[i].reach && d->reaches[k].reach && strcmp(v[i].reach, d->reaches[k].reach) == 0);
    if (!seen) {
      d->reaches[d->reaches_n].d = d;
      d->reaches[d->reaches_n++].reach = v[i].reach ? strdup(v[i].reach) : NULL;
    }
  }
  kite_store_instances_free(v, n);
  return d->reaches ? 0 : -1;
}

static void on_grace_closed(uv_handle_t *h) {
  (void)h;
}

static void grace_stop(cli_engine_t *e, void *data) {
  down_t *d = data;
  (void)e;
  if (d->grace_open && !uv_is_closing((uv_handle_t *)&d->grace))
    uv_close((uv_handle_t *)&d->grace, on_grace_closed);
}

static int down_dead_owner(kite_store_t *st, const kite_store_pool_t *p);

/* A pool that failed over between providers has instances at several: each provider's are
 * terminated through it, one after the other. */
static int down_each_provider(kite_store_t *st, const kite_store_pool_t *p) {
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  if (kite_store_instances(st, p->name, true, &v, &n) != 0 || n == 0) {
    kite_store_instances_free(v, n);
    return down_dead_owner(st, p);
  }
  int code = 0;
  for (size_t i = 0; i < n; i++) {
    bool seen = false;
    for (size_t k = 0; k < i && !seen; k++)
      seen = strcmp(v[k].provider, v[i].provider) == 0;
    if (seen)
      continue;
    kite_store_pool_t one = *p;
    one.provider = v[i].provider;
    unsigned live = 0;
    for (size_t k = 0; k < n; k++)
      live += strcmp(v[k].provider, v[i].provider) == 0;
    one.live_instances = live;
    int c = down_dead_owner(st, &one);
    if (c > code)
      code = c;
  }
  kite_store_instances_free(v, n);
  return code;
}

static int down_dead_owner(kite_store_t *st, const kite_store_pool_t *p) {
  down_t d = {.st = st, .name = p->name, .provider = p->provider, .tag = p->tag};
  if (p->owner_pid > 0)
    fprintf(prog,
            "kite: the owner of pool %s (pid %lld) is gone; terminating its %u recorded "
            "instance(s) through the %s provider\n",
            p->name, (long long)p->owner_pid, p->live_instances, p->provider);
  else
    fprintf(prog,
            "kite: pool %s has %u instance(s) recorded live; terminating them through the %s "
            "provider\n",
            p->name, p->live_instances, p->provider);
  fflush(prog);
  d.eng.on_shutdown = grace_stop;
  d.eng.data = &d;
  if (cli_engine_start(&d.eng, p->provider, NULL) != 0)
    return CLI_EXIT_FAIL;
  int64_t youngest = 0;
  const kite_provider_info_t *pinfo = kite_registry_find(p->provider);
  if (pinfo && pinfo->host_processes) {
    terminate_all(&d);
  } else if (collect_reaches(&d, &youngest) != 0) {
    cli_err("down: %s", kite_store_errmsg(st));
    d.failed++;
    kite_runtime_shutdown(d.eng.rt, NULL, NULL);
  } else {
    int64_t wait = youngest ? youngest + LAUNCH_GRACE_MS - cli_now_ms() : 0;
    if (wait > 0) {
      fprintf(prog,
              "  a launch began %.1f s ago and never answered its owner; waiting %.1f s for "
              "the provider to list what it made\n",
              (double)(cli_now_ms() - youngest) / 1000.0, (double)wait / 1000.0);
      fflush(prog);
      uv_timer_init(kite_runtime_loop(d.eng.rt), &d.grace);
      d.grace_open = true;
      uv_timer_start(&d.grace, on_grace, (uint64_t)wait, 0);
    } else {
      list_everywhere(&d);
    }
  }
  cli_engine_finish(&d.eng);
  for (size_t i = 0; i < d.n; i++) {
    free(d.ops[i].instance_id);
    free(d.ops[i].id);
  }
  for (size_t i = 0; i < d.reaches_n; i++)
    free(d.reaches[i].reach);
  free(d.reaches);
  free(d.ops);
  return d.failed ? CLI_EXIT_FAIL : 0;
}

/* Asks a live owner to close the pool and follows it to the end. */
static int down_via_owner(const kite_store_pool_t *p) {
  cli_conn_t c;
  const char *why = NULL;
  if (cli_conn_open(&c, p->name, &why) != 0) {
    cli_err("down: pool %s is held by process %lld, which does not answer on its socket (%s); "
            "if it is a `kite run`, stop it there with Ctrl-C",
            p->name, (long long)p->owner_pid, why);
    return CLI_EXIT_FAIL;
  }
  if (cli_conn_send(&c, json_pack("{s:s}", "op", "down")) != 0) {
    cli_conn_close(&c);
    return CLI_EXIT_FAIL;
  }
  json_t *j;
  int code = -1;
  while ((j = cli_conn_recv(&c, NULL)) != NULL) {
    const char *t = json_string_value(json_object_get(j, "t"));
    if (t && strcmp(t, "closing") == 0) {
      fprintf(prog,
              "kite: closing pool %s: cancelling its commands and terminating its instances\n",
              p->name);
      fflush(prog);
    } else if (t && strcmp(t, "closed") == 0) {
      int st = (int)json_integer_value(json_object_get(j, "status"));
      code = st == 0 ? 0 : CLI_EXIT_FAIL;
      if (st != 0)
        cli_err("down: pool %s closed, but some instances could not be confirmed terminated "
                "(%s); run `kite down %s` again",
                p->name, kite_strerror(st), p->name);
    } else if (t && strcmp(t, "error") == 0) {
      cli_err("down: %s", json_string_value(json_object_get(j, "message")));
      code = CLI_EXIT_FAIL;
    }
    json_decref(j);
  }
  cli_conn_close(&c);
  /* The pool is closed, but the owner still stops its providers, which delete what kite made
   * in the account (key pair, security group) when nothing uses it: the pool is down only when
   * the owner is gone. */
  if (code >= 0 && !cli_wait_exit(p->owner_pid, 120000)) {
    char *log = cli_log_path(p->name);
    cli_err("down: the owner of pool %s (pid %lld) closed the pool but has not exited after "
            "120 s; see its log %s",
            p->name, (long long)p->owner_pid, log ? log : "");
    free(log);
    code = CLI_EXIT_FAIL;
  }
  if (code < 0) {
    cli_err("down: the owner of pool %s went away before it said the pool was closed; "
            "run `kite down %s` again to finish from the store",
            p->name, p->name);
    code = CLI_EXIT_FAIL;
  }
  return code;
}

/* The nodes of a pool that is down are terminated, whatever an owner that died last wrote of
 * them: `kite status NAME` must not show READY nodes of a pool with no instance left. */
static void nodes_terminated(kite_store_t *st, const char *name) {
  kite_store_node_t *v = NULL;
  size_t n = 0;
  if (kite_store_nodes(st, name, &v, &n) != 0)
    return;
  for (size_t i = 0; i < n; i++)
    if (v[i].state != KITE_NODE_TERMINATED && v[i].state != KITE_NODE_FAILED &&
        kite_store_node_put(st, name, v[i].rank, KITE_NODE_TERMINATED, v[i].instance_id,
                            v[i].address) != 0)
      cli_err("down: cannot record rank %u of pool %s as terminated: %s", v[i].rank, name,
              kite_store_errmsg(st));
  kite_store_nodes_free(v, n);
}

int cli_down_pool(const char *name) {
  if (prog == NULL)
    prog = stdout;
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  kite_store_pool_t p = {0};
  int rc = kite_store_pool_get(st, name, &p);
  if (rc != 0) {
    if (rc == KITE_ENOENT)
      cli_err("down: there is no pool named %s (`kite status` lists them)", name);
    else
      cli_err("down: %s", kite_store_errmsg(st));
    kite_store_close(st);
    return CLI_EXIT_FAIL;
  }
  int code;
  if (p.owner_pid > 0 && p.owner_pid != getpid() && cli_pid_alive(p.owner_pid)) {
    code = down_via_owner(&p);
  } else if (p.live_instances == 0) {
    fprintf(prog, "kite: pool %s has no live instance; nothing to terminate\n", name);
    code = 0;
  } else {
    code = down_each_provider(st, &p);
  }
  /* Whatever happened, say what is left according to the store, read afresh: another
   * process (the owner) wrote it meanwhile. */
  kite_store_close(st);
  st = cli_store_open();
  kite_store_pool_t after = {0};
  if (st && kite_store_pool_get(st, name, &after) == 0) {
    bool owner_gone = after.owner_pid <= 0 || !cli_pid_alive(after.owner_pid);
    if (after.live_instances == 0 && owner_gone) {
      kite_store_pool_set_state(st, name, "down", 0, NULL);
      nodes_terminated(st, name);
      char *sock = cli_socket_path(name);
      if (sock)
        unlink(sock);
      free(sock);
      fprintf(prog, "kite: pool %s is down: no live instance left\n", name);
    } else if (after.live_instances > 0 && owner_gone) {
      cli_err("down: pool %s still has %u live instance(s) in the store; run `kite down %s` "
              "again",
              name, after.live_instances, name);
      code = CLI_EXIT_FAIL;
    }
    kite_store_pool_clear(&after);
  } else {
    cli_err("down: cannot read pool %s back from the store: %s", name,
            st ? kite_store_errmsg(st) : "it did not open");
    code = CLI_EXIT_FAIL;
  }
  kite_store_pool_clear(&p);
  kite_store_close(st);
  return code;
}

/* `kite down --orphans`: lists them, asks (unless --yes), then takes them down. */
static int down_orphans(bool yes) {
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  cli_orphans_t o;
  int code = cli_orphans_find(st, &o);
  cli_orphans_print(prog, &o);
  fflush(prog);
  if (o.n && !yes) {
    if (!isatty(STDIN_FILENO)) {
      cli_err("down: not terminating without confirmation: run `kite down --orphans --yes`");
      cli_orphans_free(&o);
      kite_store_close(st);
      return CLI_EXIT_FAIL;
    }
    fprintf(prog, "terminate these %zu instance(s)? [y/N] ", o.n);
    fflush(prog);
    char line[16] = "";
    if (fgets(line, sizeof(line), stdin) == NULL || (line[0] != 'y' && line[0] != 'Y')) {
      fprintf(prog, "kite: nothing terminated\n");
      cli_orphans_free(&o);
      kite_store_close(st);
      return CLI_EXIT_FAIL;
    }
  }
  if (o.n && cli_orphans_down(st, &o) != 0)
    code = CLI_EXIT_FAIL;
  cli_orphans_free(&o);
  kite_store_close(st);
  return code;
}

/* The store's word on pool name after a down, as JSON. */
static json_t *down_json(const char *name) {
  kite_store_t *st = cli_store_open();
  kite_store_pool_t p = {0};
  json_t *j = NULL;
  if (st && kite_store_pool_get(st, name, &p) == 0) {
    json_t *insts = json_array();
    kite_store_instance_t *v = NULL;
    size_t n = 0;
    if (kite_store_instances(st, name, true, &v, &n) == 0)
      for (size_t i = 0; i < n; i++)
        json_array_append_new(
            insts, json_pack("{s:I, s:s?, s:s, s:s?}", "rank", (json_int_t)v[i].rank, "instance_id",
                             v[i].instance_id, "state", kite_store_instance_state_name(v[i].state),
                             "note", v[i].note));
    kite_store_instances_free(v, n);
    j = json_pack("{s:s, s:b, s:s?, s:i, s:o}", "pool", name, "down", p.live_instances == 0,
                  "state", p.state, "live_instances", (int)p.live_instances, "live", insts);
    kite_store_pool_clear(&p);
  } else {
    j = json_pack("{s:s, s:b, s:s}", "pool", name, "down", 0, "error", "no such pool");
  }
  kite_store_close(st);
  return j;
}

int cli_cmd_down(int argc, char **argv) {
  const char *name = NULL;
  bool all = false, orphans = false, yes = false, json = false;
  prog = stdout;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("down", stdout);
      return 0;
    } else if (strcmp(argv[i], "--all") == 0) {
      all = true;
    } else if (strcmp(argv[i], "--orphans") == 0) {
      orphans = true;
    } else if (strcmp(argv[i], "--yes") == 0) {
      yes = true;
    } else if (strcmp(argv[i], "--json") == 0) {
      json = true;
      prog = stderr;
    } else if (argv[i][0] == '-') {
      return cli_usage("down", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("down", "unexpected argument '%s'", argv[i]);
    }
  }
  if (orphans && (name || all))
    return cli_usage("down", "--orphans takes no pool name and no --all");
  if (orphans)
    return down_orphans(yes);
  if (yes)
    return cli_usage("down", "--yes goes with --orphans");
  if ((name == NULL) == !all)
    return cli_usage("down", "give a pool name, --all or --orphans");
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  int code = 0;
  if (name) {
    kite_store_close(st);
    st = NULL;
    code = cli_down_pool(name);
    if (json) {
      json_t *j = down_json(name);
      json_object_set_new(j, "v", json_integer(CLI_PROTO_VERSION));
      json_object_set_new(j, "exit", json_integer(code));
      char *t = json_dumps(j, JSON_COMPACT);
      printf("%s\n", t ? t : "{}");
      free(t);
      json_decref(j);
    }
  } else {
    kite_store_pool_t *v = NULL;
    size_t n = 0;
    if (kite_store_pools(st, &v, &n) != 0) {
      cli_err("down: %s", kite_store_errmsg(st));
      kite_store_close(st);
      return CLI_EXIT_FAIL;
    }
    kite_store_close(st);
    st = NULL;
    unsigned touched = 0;
    json_t *pools = json_array();
    for (size_t i = 0; i < n; i++) {
      bool owned = v[i].owner_pid > 0 && cli_pid_alive(v[i].owner_pid);
      if (!owned && v[i].live_instances == 0)
        continue;
      touched++;
      if (cli_down_pool(v[i].name) != 0)
        code = CLI_EXIT_FAIL;
      json_array_append_new(pools, down_json(v[i].name));
    }
    if (json) {
      json_t *j =
          json_pack("{s:i, s:o, s:i}", "v", CLI_PROTO_VERSION, "pools", pools, "exit", code);
      char *t = json_dumps(j, JSON_COMPACT);
      printf("%s\n", t ? t : "{}");
      free(t);
      json_decref(j);
    } else {
      json_decref(pools);
    }
    if (touched == 0)
      fprintf(prog, "kite: no pool is up or has a live instance\n");
    kite_store_pools_free(v, n);
  }
  kite_store_close(st);
  return code;
}
