/* `kite status [NAME] [--json]`: pools, nodes and live instances from the state store, which
 * needs no owner (a crashed owner's pool shows up with its live instances), plus the owner's
 * live view when it is up. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_print_nodes(FILE *fp, json_t *nodes) {
  fprintf(fp, "  %-5s %-14s %-16s %s\n", "RANK", "STATE", "ADDRESS", "INSTANCE");
  for (size_t i = 0; i < json_array_size(nodes); i++) {
    json_t *n = json_array_get(nodes, i);
    const char *addr = json_string_value(json_object_get(n, "address"));
    const char *id = json_string_value(json_object_get(n, "instance_id"));
    fprintf(fp, "  %-5d %-14s %-16s %s\n", (int)json_integer_value(json_object_get(n, "rank")),
            json_string_value(json_object_get(n, "state")), addr ? addr : "-", id ? id : "-");
  }
}

/* The owner's status reply, or NULL when it is not up. */
static json_t *owner_status(const kite_store_pool_t *p) {
  if (p->owner_pid <= 0 || !cli_pid_alive(p->owner_pid))
    return NULL;
  cli_conn_t c;
  const char *why;
  if (cli_conn_open(&c, p->name, &why) != 0)
    return NULL;
  json_t *j = NULL;
  if (cli_conn_send(&c, json_pack("{s:s}", "op", "status")) == 0)
    j = cli_conn_recv(&c, NULL);
  cli_conn_close(&c);
  const char *t = json_string_value(json_object_get(j, "t"));
  if (t == NULL || strcmp(t, "status") != 0) {
    json_decref(j);
    return NULL;
  }
  json_object_del(j, "t");
  json_object_del(j, "v");
  return j;
}

static json_t *pool_json(kite_store_t *st, const kite_store_pool_t *p) {
  bool alive = p->owner_pid > 0 && cli_pid_alive(p->owner_pid);
  json_t *j = json_pack("{s:s, s:s, s:s, s:s?, s:I, s:b, s:s?, s:i, s:I, s:I}", "name", p->name,
                        "provider", p->provider, "tag", p->tag, "state", p->state, "owner_pid",
                        (json_int_t)p->owner_pid, "owner_alive", alive, "socket", p->socket_path,
                        "live_instances", (int)p->live_instances, "created_ms",
                        (json_int_t)p->created_ms, "updated_ms", (json_int_t)p->updated_ms);
  json_t *nodes = json_array();
  kite_store_node_t *nv = NULL;
  size_t nn = 0;
  if (kite_store_nodes(st, p->name, &nv, &nn) == 0) {
    for (size_t i = 0; i < nn; i++)
      json_array_append_new(
          nodes, json_pack("{s:i, s:s, s:s?, s:s?, s:I}", "rank", (int)nv[i].rank, "state",
                           kite_node_state_name(nv[i].state), "instance_id", nv[i].instance_id,
                           "address", nv[i].address, "updated_ms", (json_int_t)nv[i].updated_ms));
    kite_store_nodes_free(nv, nn);
  }
  json_object_set_new(j, "nodes", nodes);
  json_t *insts = json_array();
  kite_store_instance_t *iv = NULL;
  size_t in = 0;
  if (kite_store_instances(st, p->name, true, &iv, &in) == 0) {
    for (size_t i = 0; i < in; i++)
      json_array_append_new(insts,
                            json_pack("{s:I, s:I, s:s, s:s?, s:s, s:s?, s:i}", "row",
                                      (json_int_t)iv[i].row, "rank", (json_int_t)iv[i].rank,
                                      "provider", iv[i].provider, "instance_id", iv[i].instance_id,
                                      "state", kite_store_instance_state_name(iv[i].state),
                                      "address", iv[i].address, "port", (int)iv[i].port));
    kite_store_instances_free(iv, in);
  }
  json_object_set_new(j, "instances", insts);
  /* What its running instances cost per hour, and what every instance it had has cost. */
  double rate = 0, total = 0;
  int64_t now = cli_now_ms();
  if (kite_store_instances(st, p->name, false, &iv, &in) == 0) {
    for (size_t i = 0; i < in; i++) {
      total += cli_instance_bill(&iv[i], now).cost;
      if (iv[i].state != KITE_STORE_TERMINATED && iv[i].instance_id && iv[i].price > 0)
        rate += iv[i].price;
    }
    kite_store_instances_free(iv, in);
  }
  json_object_set_new(j, "rate_hourly", json_real(rate));
  json_object_set_new(j, "cost", json_real(total));
  json_t *live = alive ? owner_status(p) : NULL;
  json_object_set_new(j, "owner", live ? live : json_null());
  return j;
}

static void print_pool(json_t *p, bool detail, int wname, int wprov) {
  json_t *owner = json_object_get(p, "owner");
  const char *state = json_is_object(owner) ? json_string_value(json_object_get(owner, "state"))
                                            : json_string_value(json_object_get(p, "state"));
  char who[48];
  if (json_is_object(owner))
    snprintf(who, sizeof(who), "pid %lld",
             (long long)json_integer_value(json_object_get(p, "owner_pid")));
  else if (json_integer_value(json_object_get(p, "owner_pid")) > 0)
    snprintf(who, sizeof(who), "pid %lld (dead)",
             (long long)json_integer_value(json_object_get(p, "owner_pid")));
  else
    snprintf(who, sizeof(who), "-");
  json_t *nodes =
      json_is_object(owner) ? json_object_get(owner, "nodes") : json_object_get(p, "nodes");
  unsigned ready = 0;
  for (size_t i = 0; i < json_array_size(nodes); i++)
    ready +=
        strcmp(json_string_value(json_object_get(json_array_get(nodes, i), "state")), "READY") == 0;
  /* "-" when nothing it ran had a price (its own machines, the local provider). */
  char money[64] = "-";
  double rate = json_number_value(json_object_get(p, "rate_hourly")),
         cost = json_number_value(json_object_get(p, "cost"));
  if (rate > 0 || cost > 0)
    snprintf(money, sizeof(money), "$%.4f/h, $%.6f so far", rate, cost);
  printf("%-*s %-*s %-13s %-18s %u/%-6zu %-14d %s\n", wname,
         json_string_value(json_object_get(p, "name")), wprov,
         json_string_value(json_object_get(p, "provider")), state ? state : "-", who, ready,
         json_array_size(nodes), (int)json_integer_value(json_object_get(p, "live_instances")),
         money);
  if (!detail)
    return;
  if (json_array_size(nodes)) {
    printf("\nnodes (%s):\n", json_is_object(owner) ? "live, from the owner" : "from the store");
    cli_print_nodes(stdout, nodes);
  }
  json_t *insts = json_object_get(p, "instances");
  if (json_array_size(insts)) {
    printf("\nlive instances (recorded in the store until the provider confirms them gone):\n");
    printf("  %-5s %-12s %-24s %s\n", "RANK", "STATE", "INSTANCE", "ADDRESS");
    for (size_t i = 0; i < json_array_size(insts); i++) {
      json_t *x = json_array_get(insts, i);
      const char *id = json_string_value(json_object_get(x, "instance_id"));
      const char *addr = json_string_value(json_object_get(x, "address"));
      printf("  %-5lld %-12s %-24s %s\n", (long long)json_integer_value(json_object_get(x, "rank")),
             json_string_value(json_object_get(x, "state")), id ? id : "(launching)",
             addr ? addr : "-");
    }
    if (!json_is_object(owner))
      printf("\nits owner is not running: `kite down %s` terminates them\n",
             json_string_value(json_object_get(p, "name")));
  }
}

/* `kite status --orphans`: what carries kite's pool tags at the providers and no live pool
 * owns. */
static int status_orphans(kite_store_t *st, const cli_opts_t *o) {
  cli_orphans_t v;
  int code = cli_orphans_find(st, &v);
  kite_store_close(st);
  if (o->json) {
    json_t *a = json_array();
    for (size_t i = 0; i < v.n; i++)
      json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s?}", "provider", v.v[i].provider,
                                         "instance_id", v.v[i].instance_id, "tag", v.v[i].tag,
                                         "reach", v.v[i].reach));
    json_t *j = json_pack("{s:i, s:o, s:i, s:i}", "v", CLI_PROTO_VERSION, "orphans", a, "places",
                          (int)v.places, "failed", (int)v.failed);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(j);
  } else {
    cli_orphans_print(stdout, &v);
  }
  cli_orphans_free(&v);
  return code;
}

int cli_cmd_status(int argc, char **argv) {
  cli_opts_t o = {0};
  bool orphans = false, all = false;
  const char *name = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("status", stdout);
      return 0;
    } else if (strcmp(argv[i], "--json") == 0) {
      o.json = true;
    } else if (strcmp(argv[i], "--all") == 0 || strcmp(argv[i], "-a") == 0) {
      all = true;
    } else if (strcmp(argv[i], "--orphans") == 0) {
      orphans = true;
    } else if (argv[i][0] == '-') {
      return cli_usage("status", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("status", "unexpected argument '%s'", argv[i]);
    }
  }
  if (orphans && name)
    return cli_usage("status", "--orphans takes no pool name");
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  if (orphans)
    return status_orphans(st, &o);
  kite_store_pool_t *v = NULL;
  size_t n = 0;
  int rc = name ? 0 : kite_store_pools(st, &v, &n);
  kite_store_pool_t one = {0};
  if (name) {
    rc = kite_store_pool_get(st, name, &one);
    if (rc == KITE_ENOENT) {
      cli_err("status: there is no pool named %s (`kite status` lists them)", name);
      kite_store_close(st);
      return CLI_EXIT_FAIL;
    }
    v = &one;
    n = rc == 0 ? 1 : 0;
  }
  if (rc != 0) {
    cli_err("status: %s", kite_store_errmsg(st));
    kite_store_close(st);
    return CLI_EXIT_FAIL;
  }
  /* By default the pools that are up or still hold an instance; --all adds the history. */
  json_t *pools = json_array();
  unsigned hidden = 0;
  for (size_t i = 0; i < n; i++) {
    bool live = v[i].live_instances > 0 || (v[i].owner_pid > 0 && cli_pid_alive(v[i].owner_pid));
    if (!name && !all && !live) {
      hidden++;
      continue;
    }
    json_array_append_new(pools, pool_json(st, &v[i]));
  }
  if (name)
    kite_store_pool_clear(&one);
  else
    kite_store_pools_free(v, n);
  kite_store_close(st);
  if (o.json) {
    json_t *j =
        json_pack("{s:i, s:o, s:i}", "v", CLI_PROTO_VERSION, "pools", pools, "hidden", (int)hidden);
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(j);
    return 0;
  }
  if (json_array_size(pools) == 0) {
    printf("no pools (`kite up SPEC` opens one)\n");
  } else {
    /* Columns as wide as their widest value, so long names never shift the rest. */
    int wname = 20, wprov = 9;
    for (size_t i = 0; i < json_array_size(pools); i++) {
      json_t *p = json_array_get(pools, i);
      int a = (int)strlen(json_string_value(json_object_get(p, "name")));
      int b = (int)strlen(json_string_value(json_object_get(p, "provider")));
      wname = a > wname ? a : wname;
      wprov = b > wprov ? b : wprov;
    }
    printf("%-*s %-*s %-13s %-18s %-8s %-14s %s\n", wname, "POOL", wprov, "PROVIDER", "STATE",
           "OWNER", "READY", "LIVE INSTANCES", "COST");
    for (size_t i = 0; i < json_array_size(pools); i++)
      print_pool(json_array_get(pools, i), name != NULL, wname, wprov);
  }
  if (hidden)
    printf("(%u closed pool%s not shown: `kite status --all` lists them, `kite forget NAME` "
           "forgets one)\n",
           hidden, hidden == 1 ? "" : "s");
  json_decref(pools);
  return 0;
}

/* `kite forget NAME...`: drops closed pools from the store (their history with them). A pool
 * with an instance still recorded live is refused: it may cost money. */
int cli_cmd_forget(int argc, char **argv) {
  int names = 0, code = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("forget", stdout);
      return 0;
    }
    if (argv[i][0] == '-')
      return cli_usage("forget", "unknown option %s", argv[i]);
    names++;
  }
  if (names == 0)
    return cli_usage("forget", "give the pools to forget (`kite status --all` lists them)");
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  for (int i = 1; i < argc; i++) {
    kite_store_pool_t p = {0};
    int rc = kite_store_pool_get(st, argv[i], &p);
    if (rc == 0 && p.owner_pid > 0 && cli_pid_alive(p.owner_pid)) {
      cli_err("forget: pool %s is open in process %lld; `kite down %s` first", argv[i],
              (long long)p.owner_pid, argv[i]);
      code = CLI_EXIT_FAIL;
    } else if (rc == 0 && (rc = kite_store_pool_delete(st, argv[i])) == 0) {
      printf("kite: forgot pool %s\n", argv[i]);
    } else if (rc == KITE_ENOENT) {
      cli_err("forget: there is no pool named %s", argv[i]);
      code = CLI_EXIT_FAIL;
    } else if (rc != 0) {
      cli_err("forget: %s", kite_store_errmsg(st));
      code = CLI_EXIT_FAIL;
    }
    kite_store_pool_clear(&p);
  }
  kite_store_close(st);
  return code;
}

/* `kite check SPEC...`: loads each spec and checks it against its provider, as `kite run` and
 * `kite up` do before anything is recorded or launched; launches nothing. */
int cli_cmd_check(int argc, char **argv) {
  int n = 0, code = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("check", stdout);
      return 0;
    }
    if (argv[i][0] == '-' && argv[i][1] != '\0')
      return cli_usage("check", "unknown option %s", argv[i]);
    n++;
  }
  if (n == 0)
    return cli_usage("check", "give the spec files to check");
  for (int i = 1; i < argc; i++) {
    kite_spec_t *spec = NULL;
    char *errmsg = NULL;
    int rc = kite_spec_load_file(argv[i], &spec, &errmsg);
    if (rc == 0)
      rc = kite_registry_check_spec(spec, &errmsg);
    if (rc != 0) {
      fprintf(stderr, "%s\n", errmsg ? errmsg : kite_strerror(rc));
      code = CLI_EXIT_USAGE;
    } else {
      const kite_pool_spec_t *ps = kite_spec_pool(spec);
      char where[200];
      printf("%s: ok: pool %s, %u %s node%s\n", argv[i], ps->name, ps->nodes,
             cli_spec_providers(ps, where, sizeof(where)), ps->nodes == 1 ? "" : "s");
    }
    free(errmsg);
    kite_spec_free(spec);
  }
  return code;
}
