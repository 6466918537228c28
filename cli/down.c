/* `kite down NAME|--all`: close a pool and terminate its instances.
 *
 * With a live owner, the owner closes the pool (it holds the sessions and the provider
 * state). With a dead one (killed, crashed), this process reads the store and terminates
 * every recorded live instance through the provider itself: it starts the provider, sends it
 * instance_terminate for each, and marks a record terminated only when the provider confirms.
 * Local nodes of a dead owner are handed to the local provider with
 * kite_local_provider_adopt(), which finds them by the pool's tag. A launch whose instance id
 * was never recorded (the owner died while launching) is matched by the provider's own list of
 * instances carrying the pool's tag (store reconciliation); for the local provider, the tag's
 * processes are what is terminated. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct down_op {
  struct down *d;
  int64_t row;
  int64_t rank;
  char *instance_id; /* the provider's id, or NULL (then id is our placeholder) */
  char *id;
} down_op_t;

typedef struct down {
  cli_engine_t eng;
  kite_store_t *st;
  const char *name;
  const char *provider;
  const char *tag;
  down_op_t *ops;
  size_t n, pending;
  unsigned confirmed, failed;
  bool listed;
} down_t;

static void finish_if_done(down_t *d) {
  if (d->pending == 0)
    kite_runtime_shutdown(d->eng.rt, NULL, NULL);
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
      printf("  rank %-4lld %-28s terminated (confirmed by the provider)\n", (long long)op->rank,
             op->instance_id ? op->instance_id : "(launching, no id yet)");
    }
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    cli_err("down: rank %lld, instance %s: %s; it stays recorded: run `kite down %s` again",
            (long long)op->rank, op->id, e && e->message ? e->message : kite_strerror(status),
            d->name);
    d->failed++;
  }
  finish_if_done(d);
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
  bool local = strcmp(d->provider, "local") == 0;
  d->ops = calloc(n ? n : 1, sizeof(*d->ops));
  for (size_t i = 0; d->ops && i < n; i++) {
    down_op_t *op = &d->ops[d->n];
    op->d = d;
    op->row = v[i].row;
    op->rank = v[i].rank;
    op->instance_id = v[i].instance_id ? strdup(v[i].instance_id) : NULL;
    op->id = v[i].instance_id ? strdup(v[i].instance_id)
                              : cli_sprintf("launching-row-%lld", (long long)v[i].row);
    if (op->instance_id == NULL && !local) {
      cli_err("down: the launch of rank %lld (token %s) never reported an instance to the "
              "store and %s does not list one; check the provider's console for instances "
              "tagged %s",
              (long long)v[i].rank, v[i].launch_token ? v[i].launch_token : "-", d->provider,
              d->tag);
      free(op->id);
      d->failed++;
      continue;
    }
    if (local) {
      int rc = kite_local_provider_adopt(d->eng.local, op->id, d->tag);
      if (rc != 0 && rc != KITE_EEXIST) {
        cli_err("down: the local provider cannot take charge of %s: %s", op->id,
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
                                      .instance_id = op->id};
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
  finish_if_done(d);
}

/* The provider's own list of the tag's instances, reconciled into the store first, so a
 * launch whose reply was lost with its owner is found by its token. */
static void on_listed(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  down_t *d = data;
  (void)bus;
  const kite_ev_instance_listed_t *l = kite_ev_as_instance_listed(ev);
  if (status == 0 && l && l->ids && *l->ids) {
    size_t n = 1;
    for (const char *p = l->ids; *p; p++)
      n += *p == '\n';
    kite_store_listed_t *v = calloc(n, sizeof(*v));
    char *ids = strdup(l->ids);
    size_t k = 0;
    for (char *save = NULL, *tok = ids ? strtok_r(ids, "\n", &save) : NULL; v && tok && k < n;
         tok = strtok_r(NULL, "\n", &save))
      v[k++].instance_id = tok;
    kite_store_reconcile_result_t res = {0};
    if (v && kite_store_reconcile(d->st, d->name, d->provider, v, k, NULL, &res) == 0 &&
        (res.found || res.adopted))
      printf("  the provider lists %u instance(s) of the pool that the store did not know\n",
             res.found + res.adopted);
    free(ids);
    free(v);
  }
  terminate_all(d);
}

static int down_dead_owner(kite_store_t *st, const kite_store_pool_t *p) {
  down_t d = {.st = st, .name = p->name, .provider = p->provider, .tag = p->tag};
  if (p->owner_pid > 0)
    printf("kite: the owner of pool %s (pid %lld) is gone; terminating its %u recorded "
           "instance(s) through the %s provider\n",
           p->name, (long long)p->owner_pid, p->live_instances, p->provider);
  else
    printf("kite: pool %s has %u instance(s) recorded live; terminating them through the %s "
           "provider\n",
           p->name, p->live_instances, p->provider);
  fflush(stdout);
  if (cli_engine_start(&d.eng, p->provider, NULL) != 0)
    return CLI_EXIT_FAIL;
  if (strcmp(p->provider, "local") != 0) {
    kite_ev_instance_list_t l = {.provider = p->provider, .tag = p->tag};
    if (kite_request_instance_list(kite_runtime_bus(d.eng.rt), &l, 0, on_listed, &d, NULL) != 0)
      terminate_all(&d);
  } else {
    terminate_all(&d);
  }
  cli_engine_finish(&d.eng);
  for (size_t i = 0; i < d.n; i++) {
    free(d.ops[i].instance_id);
    free(d.ops[i].id);
  }
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
      printf("kite: closing pool %s: cancelling its commands and terminating its instances\n",
             p->name);
      fflush(stdout);
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
  if (code < 0) {
    cli_err("down: the owner of pool %s went away before it said the pool was closed; "
            "run `kite down %s` again to finish from the store",
            p->name, p->name);
    code = CLI_EXIT_FAIL;
  }
  return code;
}

static int down_one(const char *name) {
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
    printf("kite: pool %s has no live instance; nothing to terminate\n", name);
    code = 0;
  } else {
    code = down_dead_owner(st, &p);
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
      char *sock = cli_socket_path(name);
      if (sock)
        unlink(sock);
      free(sock);
      printf("kite: pool %s is down: no live instance left\n", name);
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

int cli_cmd_down(int argc, char **argv) {
  const char *name = NULL;
  bool all = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("down", stdout);
      return 0;
    } else if (strcmp(argv[i], "--all") == 0) {
      all = true;
    } else if (argv[i][0] == '-') {
      return cli_usage("down", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("down", "unexpected argument '%s'", argv[i]);
    }
  }
  if ((name == NULL) == !all)
    return cli_usage("down", "give a pool name or --all");
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  int code = 0;
  if (name) {
    kite_store_close(st);
    st = NULL;
    code = down_one(name);
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
    for (size_t i = 0; i < n; i++) {
      bool owned = v[i].owner_pid > 0 && cli_pid_alive(v[i].owner_pid);
      if (!owned && v[i].live_instances == 0)
        continue;
      touched++;
      if (down_one(v[i].name) != 0)
        code = CLI_EXIT_FAIL;
    }
    if (touched == 0)
      printf("kite: no pool is up or has a live instance\n");
    kite_store_pools_free(v, n);
  }
  kite_store_close(st);
  return code;
}
