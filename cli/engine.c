/* The runtime of a `kite` process that opens or cleans up pools: the providers a spec may
 * name, the transport, the bootstrap runner, and a guard component that tells the command a
 * shutdown has begun (a signal, or its own), so it never closes a pool the shutdown is
 * already closing. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int guard_start(kite_component_t *c, kite_runtime_t *rt) {
  (void)c;
  (void)rt;
  return 0;
}

static void guard_stop(kite_component_t *c, kite_component_stopped_fn done) {
  cli_engine_t *e = kite_container_of(c, cli_engine_t, guard);
  e->shutting_down = true;
  if (e->on_shutdown)
    e->on_shutdown(e, e->data);
  done(c);
}

int cli_engine_start(cli_engine_t *e, const char *provider, const char *provider_options) {
  void (*hook)(struct cli_engine *, void *) = e->on_shutdown;
  void *hook_data = e->data;
  memset(e, 0, sizeof(*e));
  e->on_shutdown = hook;
  e->data = hook_data;
  char *home = cli_home();
  kite_runtime_options_t ro = {.home = home, .log_level = -1};
  int rc = kite_runtime_new(&e->rt, &ro);
  free(home);
  if (rc != 0) {
    cli_err("cannot start: %s", kite_strerror(rc));
    return rc;
  }
  e->guard.name = "cli";
  e->guard.tier = KITE_TIER_POOL;
  e->guard.start = guard_start;
  e->guard.stop = guard_stop;
  /* The providers of this host's processes always run (kite down and kite status --orphans of
   * their pools need them whatever the spec names); each takes the spec's options only when
   * the spec names it. */
  const kite_provider_info_t *named_info =
      provider ? kite_registry_find(provider) : kite_registry_default();
  const char *what = "the guard";
  char named[96];
  rc = kite_runtime_add(e->rt, &e->guard);
  for (size_t i = 0; rc == 0 && kite_registry_at(i); i++) {
    const kite_provider_info_t *p = kite_registry_at(i);
    if (!p->host_processes || e->host_n == sizeof(e->host) / sizeof(e->host[0]))
      continue;
    snprintf(named, sizeof(named), "the %.60s provider", p->name);
    what = named;
    rc = kite_registry_start(e->rt, p->name, p == named_info ? provider_options : NULL,
                             &e->host_handle[e->host_n]);
    e->host[e->host_n++] = p;
  }
  snprintf(named, sizeof(named), "the %.60s provider", provider ? provider : "default");
  if (rc == 0 && (named_info == NULL || !named_info->host_processes) && (what = named))
    rc = kite_registry_start(e->rt, provider, provider_options, NULL);
  if (rc == 0 && (what = "the SSH transport"))
    rc = kite_transport_new(e->rt, NULL, NULL);
  if (rc == 0 && (what = "the bootstrap runner"))
    rc = kite_bootstrap_runner_new(e->rt, NULL);
  if (rc != 0) {
    if (rc == KITE_ENOENT && what == named) {
      char *known = NULL;
      for (size_t i = 0; kite_registry_at(i); i++) {
        char *k =
            cli_sprintf("%s%s%s", known ? known : "", i ? ", " : "", kite_registry_at(i)->name);
        free(known);
        known = k;
      }
      cli_err("kite has no provider called '%s'; it knows: %s", provider, known ? known : "");
      free(known);
    } else {
      cli_err("cannot start %s: %s", what, kite_strerror(rc));
    }
    kite_runtime_shutdown(e->rt, NULL, NULL);
    kite_runtime_run(e->rt);
    kite_runtime_free(e->rt);
    e->rt = NULL;
  }
  return rc;
}

void *cli_engine_host(const cli_engine_t *e, const char *name) {
  for (size_t i = 0; name && i < e->host_n; i++)
    if (strcmp(e->host[i]->name, name) == 0)
      return e->host_handle[i];
  return NULL;
}

void cli_engine_finish(cli_engine_t *e) {
  if (e->rt == NULL)
    return;
  kite_runtime_run(e->rt);
  int rc = kite_runtime_free(e->rt);
  if (rc != 0)
    cli_err("internal: the runtime still had open handles (%s)", kite_strerror(rc));
  e->rt = NULL;
}

int cli_engine_start_spec(cli_engine_t *e, const kite_pool_spec_t *ps) {
  bool multi = ps->provider_any || (ps->providers && ps->providers[0] && ps->providers[1]);
  if (!multi)
    return cli_engine_start(e,
                            ps->provider    ? ps->provider
                            : ps->providers ? ps->providers[0]
                                            : NULL,
                            ps->provider_options);
  /* Several providers: each started with its own options (under its name). */
  json_t *opts = ps->provider_options ? json_loads(ps->provider_options, 0, NULL) : NULL;
  const kite_provider_info_t *list[32];
  size_t n = 0;
  for (size_t i = 0; kite_registry_at(i) && n < 32; i++) {
    const kite_provider_info_t *p = kite_registry_at(i);
    bool named = false;
    for (size_t k = 0; ps->providers && ps->providers[k] && !named; k++)
      named = strcmp(ps->providers[k], p->name) == 0;
    if (ps->provider_any ? (p->catalog && !p->needs_image && p->configured && p->configured())
                         : named)
      list[n++] = p;
  }
  int rc = KITE_ENOENT;
  char *first = NULL;
  if (n == 0) {
    cli_err("provider: any, and no provider with a catalog finds credentials here; set "
            "one's credentials (kite providers says where each looks) or name the providers");
  } else {
    first = json_object_get(opts, list[0]->name)
                ? json_dumps(json_object_get(opts, list[0]->name), JSON_COMPACT)
                : NULL;
    rc = cli_engine_start(e, list[0]->name, first);
  }
  for (size_t i = 1; rc == 0 && i < n; i++) {
    if (list[i]->host_processes)
      continue; /* started already, by cli_engine_start */
    json_t *sub = json_object_get(opts, list[i]->name);
    char *text = sub ? json_dumps(sub, JSON_COMPACT) : NULL;
    rc = kite_registry_start(e->rt, list[i]->name, text, NULL);
    free(text);
    if (rc != 0) {
      cli_err("cannot start the %s provider: %s", list[i]->name, kite_strerror(rc));
      kite_runtime_shutdown(e->rt, NULL, NULL);
      kite_runtime_run(e->rt);
      kite_runtime_free(e->rt);
      e->rt = NULL;
    }
  }
  free(first);
  json_decref(opts);
  return rc;
}
