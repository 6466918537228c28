/* Orphans: instances carrying kite's pool tags at a provider that no live pool owns.
 *
 * Every place the store has ever recorded an instance (each distinct provider and reach
 * record) is asked for every instance carrying any kite pool tag (instance_list with tag "*").
 * One that the store does not record live under a pool whose owner runs is an orphan: a leak
 * of a crashed process, maybe on another machine that shares the account. `kite status
 * --orphans` prints them; `kite down --orphans` records each under its pool (creating the
 * pool's record when this store never knew it) and takes those pools down through the
 * ordinary `kite down` path, which terminates and confirms. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct scan {
  cli_engine_t eng;
  const char *provider;
  size_t pending;
  cli_orphans_t *out;
} scan_t;

typedef struct ask {
  scan_t *s;
  const char *reach;
} ask_t;

/* Where a reach record points, without whose credentials: the endpoint and the region. Two
 * records of one place under different accounts list the same instances when both are asked
 * with this shell's credentials. */
static bool same_place(const char *a, const char *b) {
  static const char *const keys[] = {"api_url", "endpoint", "region"};
  json_error_t e;
  json_t *ja = a ? json_loads(a, 0, &e) : NULL, *jb = b ? json_loads(b, 0, &e) : NULL;
  bool eq = true;
  for (size_t k = 0; eq && k < sizeof(keys) / sizeof(keys[0]); k++) {
    const char *x = json_string_value(json_object_get(ja, keys[k]));
    const char *y = json_string_value(json_object_get(jb, keys[k]));
    eq = (x == NULL && y == NULL) || (x && y && strcmp(x, y) == 0);
  }
  json_decref(ja);
  json_decref(jb);
  return eq;
}

static void add(cli_orphans_t *o, const char *provider, const char *reach, const char *id,
                const char *tag) {
  for (size_t i = 0; i < o->n; i++)
    if (strcmp(o->v[i].provider, provider) == 0 && strcmp(o->v[i].instance_id, id) == 0 &&
        same_place(o->v[i].reach, reach))
      return; /* listed by another record of the same place */
  if (o->n == o->cap) {
    size_t cap = o->cap ? o->cap * 2 : 8;
    cli_orphan_t *v = realloc(o->v, cap * sizeof(*v));
    if (v == NULL)
      return;
    o->v = v;
    o->cap = cap;
  }
  cli_orphan_t *x = &o->v[o->n++];
  memset(x, 0, sizeof(*x));
  x->provider = strdup(provider);
  x->reach = reach ? strdup(reach) : NULL;
  x->instance_id = strdup(id);
  x->tag = strdup(tag);
}

static void on_listed(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ask_t *a = data;
  scan_t *s = a->s;
  (void)bus;
  const kite_ev_instance_listed_t *l = kite_ev_as_instance_listed(ev);
  if (status == 0 && l) {
    char *ids = strdup(l->ids ? l->ids : "");
    for (char *save = NULL, *line = ids ? strtok_r(ids, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
      char *sp = strchr(line, ' ');
      if (sp == NULL)
        continue;
      *sp = '\0';
      add(s->out, s->provider, a->reach, line, sp + 1);
    }
    free(ids);
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    cli_err("orphans: %s could not be asked for kite's instances: %s", s->provider,
            e && e->message ? e->message : kite_strerror(status));
    s->out->failed++;
  }
  if (--s->pending == 0)
    kite_runtime_shutdown(s->eng.rt, NULL, NULL);
}

/* Asks provider at every reach record in reaches (n of them). */
static void scan_provider(const char *provider, const char *const *reaches, size_t n,
                          cli_orphans_t *out) {
  scan_t s = {.provider = provider, .out = out};
  if (cli_engine_start(&s.eng, provider, NULL) != 0) {
    out->failed++;
    return;
  }
  ask_t *asks = calloc(n ? n : 1, sizeof(*asks));
  for (size_t i = 0; asks && i < n; i++) {
    asks[i].s = &s;
    asks[i].reach = reaches[i];
    kite_ev_instance_list_t l = {.provider = provider, .tag = "*", .reach = reaches[i]};
    if (kite_request_instance_list(kite_runtime_bus(s.eng.rt), &l, 0, on_listed, &asks[i], NULL) ==
        0)
      s.pending++;
    else
      out->failed++;
  }
  if (s.pending == 0)
    kite_runtime_shutdown(s.eng.rt, NULL, NULL);
  cli_engine_finish(&s.eng);
  free(asks);
}

/* Whether the store records id live under a pool whose owner runs. */
static bool owned(kite_store_t *st, const kite_store_instance_t *v, size_t n,
                  const cli_orphan_t *o) {
  for (size_t i = 0; i < n; i++) {
    if (v[i].instance_id == NULL || strcmp(v[i].instance_id, o->instance_id) != 0 ||
        strcmp(v[i].provider, o->provider) != 0 || v[i].state == KITE_STORE_TERMINATED)
      continue;
    kite_store_pool_t p = {0};
    bool alive = kite_store_pool_get(st, v[i].pool, &p) == 0 && p.owner_pid > 0 &&
                 cli_pid_alive(p.owner_pid);
    kite_store_pool_clear(&p);
    if (alive)
      return true;
  }
  return false;
}

int cli_orphans_find(kite_store_t *st, cli_orphans_t *out) {
  memset(out, 0, sizeof(*out));
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  if (kite_store_instances(st, NULL, false, &v, &n) != 0) {
    cli_err("orphans: %s", kite_store_errmsg(st));
    return CLI_EXIT_FAIL;
  }
  /* Distinct (provider, reach) pairs of the clouds; instances that are processes of this
   * host, or the user's own machines, are never listed by tag. */
  const char **provs = calloc(n ? n : 1, sizeof(*provs));
  const char **reaches = calloc(n ? n : 1, sizeof(*reaches));
  size_t m = 0;
  for (size_t i = 0; provs && reaches && i < n; i++) {
    const kite_provider_info_t *info = kite_registry_find(v[i].provider);
    if (v[i].reach == NULL || info == NULL || info->host_processes || info->user_machines)
      continue;
    bool seen = false;
    for (size_t k = 0; k < m && !seen; k++)
      seen = strcmp(provs[k], v[i].provider) == 0 && strcmp(reaches[k], v[i].reach) == 0;
    if (!seen) {
      provs[m] = v[i].provider;
      reaches[m++] = v[i].reach;
    }
  }
  out->places = (unsigned)m;
  for (size_t i = 0; i < m; i++) {
    if (provs[i] == NULL)
      continue;
    /* every reach of this provider in one runtime */
    const char **mine = calloc(m, sizeof(*mine));
    size_t k = 0;
    const char *prov = provs[i];
    for (size_t j = i; mine && j < m; j++)
      if (provs[j] && strcmp(provs[j], prov) == 0) {
        mine[k++] = reaches[j];
        if (j != i)
          provs[j] = NULL;
      }
    scan_provider(prov, mine, k, out);
    free(mine);
  }
  /* Keep only what no live pool owns. */
  size_t keep = 0;
  for (size_t i = 0; i < out->n; i++) {
    if (owned(st, v, n, &out->v[i])) {
      cli_orphan_t x = out->v[i];
      free(x.provider);
      free(x.reach);
      free(x.instance_id);
      free(x.tag);
      continue;
    }
    out->v[keep++] = out->v[i];
  }
  out->n = keep;
  free(provs);
  free(reaches);
  kite_store_instances_free(v, n);
  return out->failed ? CLI_EXIT_FAIL : 0;
}

void cli_orphans_free(cli_orphans_t *o) {
  for (size_t i = 0; i < o->n; i++) {
    free(o->v[i].provider);
    free(o->v[i].reach);
    free(o->v[i].instance_id);
    free(o->v[i].tag);
  }
  free(o->v);
  memset(o, 0, sizeof(*o));
}

/* The pool a tag names ("kite-pool-NAME" → NAME), or NULL. */
static const char *pool_of(const char *tag) {
  return strncmp(tag, "kite-pool-", 10) == 0 && tag[10] ? tag + 10 : NULL;
}

void cli_orphans_print(FILE *fp, const cli_orphans_t *o) {
  if (o->n == 0 && o->failed) {
    fprintf(fp,
            "no orphans found where kite could ask, but %u of the %u place(s) the store has "
            "used could not be asked (above): that is no proof; fix what stopped it and ask "
            "again\n",
            o->failed, o->places);
    return;
  }
  if (o->n == 0) {
    fprintf(fp,
            "no orphans: every instance carrying a kite pool tag at the %u place(s) the "
            "store has used is owned by a running pool\n",
            o->places);
    return;
  }
  fprintf(fp, "%-13s %-24s %-28s %s\n", "PROVIDER", "INSTANCE", "POOL TAG", "WHERE");
  for (size_t i = 0; i < o->n; i++) {
    json_error_t e;
    json_t *j = o->v[i].reach ? json_loads(o->v[i].reach, 0, &e) : NULL;
    const char *region = json_string_value(json_object_get(j, "region"));
    const char *ep = json_string_value(json_object_get(j, "endpoint"));
    if (ep == NULL)
      ep = json_string_value(json_object_get(j, "api_url"));
    fprintf(fp, "%-13s %-24s %-28s %s%s%s\n", o->v[i].provider, o->v[i].instance_id, o->v[i].tag,
            region ? region : "", region ? " " : "", ep ? ep : "");
    json_decref(j);
  }
  fprintf(fp, "%zu orphan(s): `kite down --orphans` terminates them\n", o->n);
}

/* Records every orphan under its pool, then takes those pools down. */
int cli_orphans_down(kite_store_t *st, const cli_orphans_t *o) {
  int code = 0;
  char **done = calloc(o->n ? o->n : 1, sizeof(*done));
  size_t nd = 0;
  for (size_t i = 0; done && i < o->n; i++) {
    const char *name = pool_of(o->v[i].tag);
    if (name == NULL || strlen(name) > 48) {
      cli_err("down: %s %s carries the tag %s, which names no kite pool; terminate it in the "
              "provider's console",
              o->v[i].provider, o->v[i].instance_id, o->v[i].tag);
      code = CLI_EXIT_FAIL;
      continue;
    }
    kite_store_pool_t p = {0};
    int rc = kite_store_pool_get(st, name, &p);
    if (rc == 0 && p.owner_pid > 0 && cli_pid_alive(p.owner_pid)) {
      cli_err("down: %s %s carries the tag of pool %s, which is open in process %lld but does "
              "not own it; close that pool first, then run `kite down --orphans` again",
              o->v[i].provider, o->v[i].instance_id, name, (long long)p.owner_pid);
      kite_store_pool_clear(&p);
      code = CLI_EXIT_FAIL;
      continue;
    }
    if (rc == 0 && strcmp(p.provider, o->v[i].provider) != 0) {
      cli_err("down: %s %s carries the tag of pool %s, which this store records on %s; "
              "terminate it in the provider's console",
              o->v[i].provider, o->v[i].instance_id, name, p.provider);
      kite_store_pool_clear(&p);
      code = CLI_EXIT_FAIL;
      continue;
    }
    kite_store_pool_clear(&p);
    if (rc == KITE_ENOENT) {
      kite_store_pool_t rec = {
          .name = name, .provider = o->v[i].provider, .tag = o->v[i].tag, .state = "orphaned"};
      rc = kite_store_pool_put(st, &rec);
    }
    kite_store_listed_t l = {.instance_id = o->v[i].instance_id};
    kite_store_reconcile_opts_t ro = {.reach = o->v[i].reach};
    if (rc == 0)
      rc = kite_store_reconcile(st, name, o->v[i].provider, &l, 1, &ro, NULL);
    if (rc != 0) {
      cli_err("down: cannot record %s in the store: %s", o->v[i].instance_id,
              kite_store_errmsg(st));
      code = CLI_EXIT_FAIL;
      continue;
    }
    bool seen = false;
    for (size_t k = 0; k < nd && !seen; k++)
      seen = strcmp(done[k], name) == 0;
    if (!seen)
      done[nd++] = strdup(name);
  }
  for (size_t k = 0; k < nd; k++) {
    if (cli_down_pool(done[k]) != 0)
      code = CLI_EXIT_FAIL;
    free(done[k]);
  }
  free(done);
  return code;
}
