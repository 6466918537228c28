/* The runtime of a `kite` process that opens or cleans up pools: the providers a spec may
 * name, the transport, the bootstrap runner, and a guard component that tells the command a
 * shutdown has begun (a signal, or its own), so it never closes a pool the shutdown is
 * already closing. */
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

/* Local provider options a spec may give in provider_options: outlive_controller, port. */
static int local_options(const char *json, kite_local_provider_options_t *o) {
  memset(o, 0, sizeof(*o));
  if (json == NULL)
    return 0;
  json_error_t jerr;
  json_t *j = json_loads(json, 0, &jerr);
  if (!json_is_object(j)) {
    json_decref(j);
    return 0; /* the spec loader checked it; nothing for us */
  }
  json_t *v = json_object_get(j, "outlive_controller");
  if (json_is_boolean(v))
    o->outlive_controller = json_is_true(v);
  v = json_object_get(j, "port");
  if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 65536)
    o->port = (unsigned)json_integer_value(v);
  json_decref(j);
  return 0;
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
  kite_local_provider_options_t lo;
  local_options(provider && strcmp(provider, "local") == 0 ? provider_options : NULL, &lo);
  const char *what = "the guard";
  rc = kite_runtime_add(e->rt, &e->guard);
  if (rc == 0 && (what = "the local provider"))
    rc = kite_local_provider_new(e->rt, &lo, &e->local);
  if (rc == 0 && provider && strcmp(provider, "ssh") == 0 && (what = "the ssh provider"))
    rc = kite_ssh_provider_new(e->rt, NULL, NULL);
  if (rc == 0 && provider && strcmp(provider, "aws") == 0 && (what = "the aws provider"))
    rc = kite_aws_provider_new(e->rt, NULL, NULL);
  if (rc == 0 && provider && strcmp(provider, "digitalocean") == 0 &&
      (what = "the DigitalOcean provider"))
    rc = kite_do_provider_new(e->rt, NULL, NULL);
  if (rc == 0 && (what = "the SSH transport"))
    rc = kite_transport_new(e->rt, NULL, NULL);
  if (rc == 0 && (what = "the bootstrap runner"))
    rc = kite_bootstrap_runner_new(e->rt, NULL);
  if (rc != 0) {
    cli_err("cannot start %s: %s", what, kite_strerror(rc));
    kite_runtime_shutdown(e->rt, NULL, NULL);
    kite_runtime_run(e->rt);
    kite_runtime_free(e->rt);
    e->rt = NULL;
  }
  return rc;
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
