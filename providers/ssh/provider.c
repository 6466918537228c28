/* The ssh provider: a pool over machines the user already has, like pdsh. Rank r is the r-th
 * host of the inventory, resolved through ~/.ssh/config; its host keys come from the user's
 * known_hosts (pinned, so the connection is strict) when recorded there. Nothing is created
 * and nothing costs money: "terminate" releases the machine to the user, untouched, and the
 * provider lists nothing as a leak. */

#include <jansson.h>
#include <pwd.h>
#include <unistd.h>

#include "kite/ssh.h"
#include "ssh_provider_impl.h"

#define PROVIDER_NAME "ssh"

struct kite_ssh_provider {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  char **hosts;
  size_t n_hosts;
  char *ssh_config, *known_hosts, *user, *key;
  kite_sub_t subs[5];
};

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

/* The inventory and settings for one launch: the constructor's, overridden by the pool's
 * provider options {"hosts": [...], "ssh_config": P, "known_hosts": P, "user": U, "key": P}. */
typedef struct settings {
  char **hosts;
  size_t n_hosts;
  char *ssh_config, *known_hosts, *user, *key;
} settings_t;

static void settings_clear(settings_t *s) {
  free_list(s->hosts, s->n_hosts);
  free(s->ssh_config);
  free(s->known_hosts);
  free(s->user);
  free(s->key);
}

static char *json_str(json_t *o, const char *k, const char *fallback) {
  json_t *v = json_object_get(o, k);
  return kite__strdup(json_is_string(v) ? json_string_value(v) : fallback);
}

static int settings_for(kite_ssh_provider_t *sp, const char *options, settings_t *s,
                        char *err, size_t errlen) {
  memset(s, 0, sizeof(*s));
  json_t *o = NULL;
  if (options && *options) {
    json_error_t je;
    o = json_loads(options, 0, &je);
    if (!json_is_object(o)) {
      snprintf(err, errlen, "provider options are not a JSON object: %s", je.text);
      json_decref(o);
      return KITE_EINVAL;
    }
  }
  json_t *hosts = o ? json_object_get(o, "hosts") : NULL;
  if (hosts && !json_is_array(hosts)) {
    snprintf(err, errlen, "provider option \"hosts\" must be a list of [user@]host[:port]");
    json_decref(o);
    return KITE_EINVAL;
  }
  size_t n = hosts ? json_array_size(hosts) : sp->n_hosts;
  s->hosts = calloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; s->hosts && i < n; i++) {
    json_t *h = hosts ? json_array_get(hosts, i) : NULL;
    s->hosts[i] = kite__strdup(hosts ? (json_is_string(h) ? json_string_value(h) : "")
                                     : sp->hosts[i]);
    s->n_hosts++;
  }
  s->ssh_config = json_str(o, "ssh_config", sp->ssh_config);
  s->known_hosts = json_str(o, "known_hosts", sp->known_hosts);
  s->user = json_str(o, "user", sp->user);
  s->key = json_str(o, "key", sp->key);
  json_decref(o);
  return s->hosts ? 0 : KITE_ENOMEM;
}

static const char *default_user(void) {
  const char *u = getenv("USER");
  if (u && *u)
    return u;
  struct passwd *pw = getpwuid(getuid());
  return pw ? pw->pw_name : "root";
}

/* The user's own key when nothing names one: ed25519, then ECDSA; else NULL (ssh-agent). */
static char *default_key(void) {
  static const char *const names[] = {"~/.ssh/id_ed25519", "~/.ssh/id_ecdsa"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(names); i++) {
    char *p = kite__ssh_expand_home(names[i]);
    if (p && access(p, R_OK) == 0)
      return p;
    free(p);
  }
  return NULL;
}

static void on_launch(kite_bus_t *bus, const kite_event_t *ev,
                      const kite_ev_instance_launch_t *p, void *data) {
  kite_ssh_provider_t *sp = data;
  char err[512];
  settings_t s;
  int rc = settings_for(sp, p->options, &s, err, sizeof(err));
  if (rc != 0) {
    kite_bus_reply_error(bus, ev->corr, rc, err);
    return;
  }
  if (p->rank >= s.n_hosts) {
    snprintf(err, sizeof(err),
             "the ssh inventory has %zu host(s) and the pool wants rank %u: list one host per "
             "node (provider option \"hosts\" or kite --hosts), or lower nodes",
             s.n_hosts, p->rank);
    settings_clear(&s);
    kite_bus_reply_error(bus, ev->corr, KITE_ECAPACITY, err);
    return;
  }
  kite__ssh_host_t h;
  rc = kite__ssh_parse_entry(s.hosts[p->rank], &h);
  if (rc != 0) {
    snprintf(err, sizeof(err),
             "ssh inventory entry %u ('%s') is not [user@]host[:port] (IPv6: [addr]:port)",
             p->rank, s.hosts[p->rank]);
    settings_clear(&s);
    kite_bus_reply_error(bus, ev->corr, rc, err);
    return;
  }
  rc = kite__ssh_apply_config(s.ssh_config, &h);
  if (rc != 0) {
    snprintf(err, sizeof(err), "cannot read the ssh config %s", s.ssh_config);
    kite__ssh_host_clear(&h);
    settings_clear(&s);
    kite_bus_reply_error(bus, ev->corr, rc, err);
    return;
  }
  const char *address = h.hostname ? h.hostname : h.alias;
  unsigned port = h.port ? h.port : 22;
  const char *user = h.user ? h.user : s.user ? s.user : default_user();
  char *key = h.key ? kite__strdup(h.key) : s.key ? kite__ssh_expand_home(s.key) : default_key();
  char *kh = kite__ssh_expand_home(s.known_hosts ? s.known_hosts : "~/.ssh/known_hosts");
  /* Keys the user's known_hosts records under the name they use or the address it maps to. */
  char *pinned = kh ? kite_known_hosts_keys(kh, h.alias, port) : NULL;
  if (pinned == NULL && kh && h.hostname)
    pinned = kite_known_hosts_keys(kh, h.hostname, port);
  char *id = kite__sprintf("%s@%s:%u", user, address, port);
  kite_ev_instance_launched_t l = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                   .provider = PROVIDER_NAME, .instance_id = id,
                                   .address = address, .port = port, .user = user,
                                   .host_key = pinned, .price_hourly = 0.0, .tag = p->tag,
                                   .key_path = key};
  if (id == NULL)
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
  else
    kite_reply_instance_launched(bus, ev->corr, &l);
  free(id);
  free(pinned);
  free(kh);
  free(key);
  kite__ssh_host_clear(&h);
  settings_clear(&s);
}

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  (void)data;
  /* The machine is the user's: releasing it from the pool is all there is to do. */
  kite_ev_instance_terminated_t t = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                     .provider = PROVIDER_NAME, .instance_id = p->instance_id};
  kite_reply_instance_terminated(bus, ev->corr, &t);
}

static void on_describe(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_describe_t *p, void *data) {
  (void)data;
  kite_ev_instance_state_t s = {.provider = PROVIDER_NAME, .node = p->node,
                                .instance_id = p->instance_id, .state = "running"};
  kite_reply_instance_state(bus, ev->corr, &s);
}

static void on_list(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_list_t *p,
                    void *data) {
  (void)data;
  /* Nothing was created, so nothing can have leaked. */
  kite_ev_instance_listed_t l = {.provider = PROVIDER_NAME, .tag = p->tag, .count = 0, .ids = ""};
  kite_reply_instance_listed(bus, ev->corr, &l);
}

static void on_preempt_check(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_preempt_check_t *p, void *data) {
  (void)data;
  /* Machines of one's own are not preempted; a dead one is found by the health monitor. */
  kite_ev_preempt_status_t s = {.provider = PROVIDER_NAME, .node = p->node,
                                .instance_id = p->instance_id, .state = KITE_PREEMPT_NONE};
  kite_reply_preempt_status(bus, ev->corr, &s);
}

static int sp_start(kite_component_t *c, kite_runtime_t *rt) {
  kite_ssh_provider_t *sp = kite_container_of(c, kite_ssh_provider_t, comp);
  sp->rt = rt;
  sp->bus = kite_runtime_bus(rt);
  kite_key_t key = kite_key_str(PROVIDER_NAME);
  int rc = kite_respond_instance_launch(sp->bus, key, on_launch, sp, &sp->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(sp->bus, key, on_terminate, sp, &sp->subs[1]);
  if (rc == 0)
    rc = kite_respond_instance_describe(sp->bus, key, on_describe, sp, &sp->subs[2]);
  if (rc == 0)
    rc = kite_respond_instance_list(sp->bus, key, on_list, sp, &sp->subs[3]);
  if (rc == 0)
    rc = kite_respond_preempt_check(sp->bus, key, on_preempt_check, sp, &sp->subs[4]);
  if (rc != 0)
    for (size_t k = 0; k < KITE_ARRAY_SIZE(sp->subs); k++)
      kite_bus_unsubscribe(sp->bus, sp->subs[k]);
  return rc;
}

static void sp_free(kite_ssh_provider_t *sp) {
  free_list(sp->hosts, sp->n_hosts);
  free(sp->ssh_config);
  free(sp->known_hosts);
  free(sp->user);
  free(sp->key);
  free(sp);
}

static void sp_stop(kite_component_t *c, kite_component_stopped_fn done) {
  kite_ssh_provider_t *sp = kite_container_of(c, kite_ssh_provider_t, comp);
  for (size_t k = 0; k < KITE_ARRAY_SIZE(sp->subs); k++)
    kite_bus_unsubscribe(sp->bus, sp->subs[k]);
  done(c);
  sp_free(sp);
}

int kite_ssh_provider_new(kite_runtime_t *rt, const kite_ssh_provider_options_t *opts,
                          kite_ssh_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_ssh_provider_t *sp = calloc(1, sizeof(*sp));
  if (sp == NULL)
    return KITE_ENOMEM;
  int rc = 0;
  if (opts) {
    while (opts->hosts && opts->hosts[sp->n_hosts])
      sp->n_hosts++;
    sp->hosts = calloc(sp->n_hosts ? sp->n_hosts : 1, sizeof(char *));
    for (size_t i = 0; sp->hosts && i < sp->n_hosts; i++) {
      kite__ssh_host_t h;
      rc = kite__ssh_parse_entry(opts->hosts[i], &h);
      kite__ssh_host_clear(&h);
      if (rc != 0)
        break;
      sp->hosts[i] = kite__strdup(opts->hosts[i]);
    }
    sp->ssh_config = kite__strdup(opts->ssh_config);
    sp->known_hosts = kite__strdup(opts->known_hosts);
    sp->user = kite__strdup(opts->user);
    sp->key = kite__strdup(opts->key);
    if (rc == 0 && sp->hosts == NULL)
      rc = KITE_ENOMEM;
  }
  if (rc == 0) {
    sp->comp.name = PROVIDER_NAME;
    sp->comp.tier = KITE_TIER_PROVIDER;
    sp->comp.start = sp_start;
    sp->comp.stop = sp_stop;
    rc = kite_runtime_add(rt, &sp->comp);
  }
  if (rc != 0) {
    sp_free(sp);
    return rc;
  }
  if (out)
    *out = sp;
  return 0;
}
