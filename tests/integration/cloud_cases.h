#ifndef KITE_TEST_CLOUD_CASES_H
#define KITE_TEST_CLOUD_CASES_H

/* The cases every cloud provider built on providers/cloud/ must pass against kite-cloudsim, at
 * the bus level: launch, SSH to the instance with its pinned host key, list by tag, terminate
 * confirmed only when the instance is gone, error mapping, injected API faults without
 * duplicates, preemption, pools (with faults, with a replacement), hostile HTTP bodies from a
 * fake server, the lifecycle through Stoplight Prism, and the catalog (offers against the
 * emulator's own answer, capacity per region, faults, hostile answers).
 *
 * The including file defines a cloud_case_t (the provider's name, the emulator's token, paths
 * and fields, a constructor wrapper, its hostile answers), points `cloud` at it in main()
 * before running the tests, and wraps each case_* in a test of its own name, giving the
 * provider's own messages where a case checks one. Include after cmocka.h and
 * cloudsim_client.h; needs kite/kite.h. */

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "prism.h"

#define MAXI 8

/* What the provider's constructor gets: the polls and retries of the tests, kept short. */
typedef struct cloud_timing {
  uint64_t poll_ms, backoff_base_ms, running_timeout_ms, delete_timeout_ms;
  int max_retries;
} cloud_timing_t;

/* One answer of the hostile server, for requests whose request line ("GET /v1/ssh_keys?...")
 * contains match; an answer without match is for requests no answer names. */
typedef struct cloud_answer {
  int status;
  const char *body;
  const char *match;
} cloud_answer_t;

typedef struct cloud_case {
  const char *provider;              /* its name on the bus: "digitalocean" */
  const char *token;                 /* the emulator's token */
  const char *tmp;                   /* temporary homes: /tmp/kite-test-<tmp>-XXXXXX */
  const char *type, *region, *image; /* what the launches ask for */
  const char *api_suffix;            /* the emulator's URL + this is the api_url: "", "/v1" */
  /* Where the emulator counts this cloud's live instances and SSH keys: a state path and an
   * integer field of it. */
  const char *live_path, *live_field;
  const char *keys_path, *keys_field; /* NULL: the cloud keeps no keys (RunPod) */
  const char *kill_fmt;               /* the control path that kills instance %s at once */
  const char *url_env;   /* the environment variables a request without options falls back */
  const char *token_env; /* on for its endpoint and token */
  const char *spec;      /* the OpenAPI description, under ../shared/specs of the sources */
  /* The emulator's URL + this is Prism's upstream (the description's server path); Prism's URL
   * + prism_api_suffix (NULL: "") is the api_url kite is given through it. */
  const char *prism_upstream_suffix, *prism_api_suffix;
  /* Writes the copy of the description Prism reads (NULL: Prism reads it as it is). */
  void (*prism_spec)(const char *from, const char *to);
  int (*provider_new)(kite_runtime_t *rt, const cloud_timing_t *t);
  const cloud_answer_t *hostile;
  size_t n_hostile;
  /* The catalog: the emulator's API path that lists what it sells (every page at once), and
   * the offers the test reads from its answer itself (region NULL: all), into out (up to max);
   * how many. */
  const char *catalog_path;
  const char *catalog_body; /* set: the catalog is asked for with POST and this body */
  size_t (*expect_offers)(json_t *raw, const char *region, kite_offer_t *out, size_t max);
  const char *other_region; /* a region where cloud->type is sold too */
  /* A catalog answer of one offer kite must take, and answers it must refuse (each served
   * alone, for every request). */
  const char *catalog_ok;
  const cloud_answer_t *hostile_catalog;
  size_t n_hostile_catalog;
  /* More provider options the launches need beside api_url and token (a second endpoint of the
   * emulator, say): ",\"key\":..." for the emulator at url, into out; or NULL. */
  void (*options_more)(const char *url, char *out, size_t size);
  bool pool_spot; /* the pools' instances are spot instances */
  /* Its catalog request is refused (KITE_ENOTSUP): its API lists no prices. */
  bool catalog_unsupported;
} cloud_case_t;

/* The cloud under test; set by main() before the tests run. */
static const cloud_case_t *cloud;

/* About a fifth of the API calls fail (429, 500, reset), reproducibly for a seed. */
#define FAULTS_20_PERCENT(seed)                                                                    \
  ((const char *const[]){"--fault-429", "0.07", "--fault-500", "0.07", "--fault-reset", "0.06",    \
                         "--retry-after", "0", "--seed", seed, NULL})

/* ---- the emulator --------------------------------------------------------------------------- */

/* A global counter of /_sim/state: created, peak, faults_injected, requests. */
static int sim_count(sim_t *s, const char *field) {
  return sim_state_count(s, "/_sim/state", field);
}

/* How many of this cloud's instances the emulator holds (deleted ones count until their
 * processes are gone). */
static int sim_live(sim_t *s) {
  return sim_state_count(s, cloud->live_path, cloud->live_field);
}

static int sim_keys(sim_t *s) {
  return sim_state_count(s, cloud->keys_path, cloud->keys_field);
}

static void sim_faults(sim_t *s, const char *json) {
  json_decref(sim_call(s, "POST", "/_sim/faults", json));
}

static void sim_kill(sim_t *s, const char *id, const char *body) {
  char path[128];
  snprintf(path, sizeof(path), cloud->kill_fmt, id);
  json_decref(sim_call(s, "POST", path, body));
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct inst {
  int status;
  char msg[1024];
  char id[128], address[64], user[64], key_path[256], host_key[256];
  unsigned port;
  bool launched, terminated;
  int term_status;
} inst_t;

typedef struct ctx {
  sim_t sim;
  kite_runtime_t *rt;
  char home[64];
  char tag[64];
  char options[512];
  inst_t in[MAXI];
  unsigned n, replies, term_replies;
  void (*after_launch)(struct ctx *c);
  void (*after_terminate)(struct ctx *c);
  /* list / describe / preempt */
  int list_status;
  unsigned list_count;
  char list_ids[512];
  int describe_status;
  char describe_state[32];
  int preempt_state;
  int live_before_confirm;
  char log[65536];
  size_t log_len;
} ctx_t;

static void on_log(kite_runtime_t *rt, kite_log_level_t level, const char *line, void *data) {
  ctx_t *c = data;
  (void)rt;
  (void)level;
  size_t room = sizeof(c->log) - c->log_len;
  int n = snprintf(c->log + c->log_len, room, "%s\n", line);
  if (n > 0 && (size_t)n < room)
    c->log_len += (size_t)n;
}

/* The emulator's API base URL (what api_url names). */
static const char *ctx_api(const ctx_t *c) {
  static char url[128];
  snprintf(url, sizeof(url), "%s%s", c->sim.url, cloud->api_suffix);
  return url;
}

/* A runtime on the ctx's home with the provider, its log in c->log. */
static void ctx_runtime_new(ctx_t *c) {
  kite_runtime_options_t o = {.home = c->home, .log_level = KITE_LOG_DEBUG};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  kite_log_set_sink(c->rt, on_log, c);
  cloud_timing_t t = {.poll_ms = 100, .backoff_base_ms = 20, .max_retries = 4};
  assert_int_equal(cloud->provider_new(c->rt, &t), 0);
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

/* options with the case's options_more added before its closing brace. */
static void options_add_more(char *options, size_t size, const char *url) {
  char more[256] = "";
  size_t n = strlen(options);
  if (cloud->options_more == NULL || n == 0 || options[n - 1] != '}')
    return;
  cloud->options_more(url, more, sizeof(more));
  snprintf(options + n - 1, size - (n - 1), "%s}", more);
}

static void ctx_runtime_free(ctx_t *c) {
  assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
  kite_runtime_run(c->rt);
  assert_int_equal(kite_runtime_free(c->rt), 0);
  c->rt = NULL;
}

static void ctx_init(ctx_t *c, const char *what, const char *const *sim_flags, const char *token) {
  assert_non_null(cloud);
  memset(c, 0, sizeof(*c));
  sim_start(&c->sim, cloud->token, sim_flags);
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-%s-XXXXXX", cloud->tmp);
  assert_non_null(mkdtemp(c->home));
  snprintf(c->tag, sizeof(c->tag), "kite-pool-t%d-%s", (int)getpid(), what);
  snprintf(c->options, sizeof(c->options),
           "{\"api_url\":\"%s\",\"token\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222}",
           ctx_api(c), token, kite_local_login_user());
  options_add_more(c->options, sizeof(c->options), c->sim.url);
  ctx_runtime_new(c);
}

static void ctx_done(ctx_t *c) {
  ctx_runtime_free(c);
  /* The token and the instances' private host keys never reached a log line. */
  assert_null(strstr(c->log, cloud->token));
  assert_null(strstr(c->log, "PRIVATE KEY"));
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(kite_local_count_tagged(c->tag), 0);
}

static void on_launched(kite_bus_t *bus, int status, const kite_event_t *ev, void *data);

static void launch_in(ctx_t *c, unsigned i, const char *user_data, const char *region) {
  kite_ev_instance_launch_t l = {.provider = cloud->provider,
                                 .pool = 7,
                                 .node = 100 + i,
                                 .rank = i,
                                 .tag = c->tag,
                                 .user_data = user_data,
                                 .options = c->options,
                                 .instance_type = cloud->type,
                                 .region = region,
                                 .image = cloud->image};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c->rt), &l, 0, on_launched, &c->in[i], NULL),
      0);
}

static void launch(ctx_t *c, unsigned i, const char *user_data) {
  launch_in(c, i, user_data, cloud->region);
}

/* The test's context, for reply callbacks whose data is one instance. */
static ctx_t *current;

static void on_launched(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  inst_t *in = data;
  ctx_t *c = current;
  (void)bus;
  in->status = status;
  if (status == 0) {
    const kite_ev_instance_launched_t *l = kite_ev_as_instance_launched(ev);
    assert_non_null(l);
    in->launched = true;
    snprintf(in->id, sizeof(in->id), "%s", l->instance_id);
    snprintf(in->address, sizeof(in->address), "%s", l->address);
    snprintf(in->user, sizeof(in->user), "%s", l->user);
    snprintf(in->key_path, sizeof(in->key_path), "%s", l->key_path);
    snprintf(in->host_key, sizeof(in->host_key), "%s", l->host_key ? l->host_key : "");
    assert_string_equal(l->tag, c->tag);
    assert_string_equal(l->provider, cloud->provider);
    in->port = l->port;
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    snprintf(in->msg, sizeof(in->msg), "%s", e && e->message ? e->message : "");
  }
  if (++c->replies == c->n && c->after_launch)
    c->after_launch(c);
}

static void on_terminated(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  inst_t *in = data;
  ctx_t *c = current;
  (void)bus;
  in->term_status = status;
  if (status == 0) {
    const kite_ev_instance_terminated_t *t = kite_ev_as_instance_terminated(ev);
    assert_non_null(t);
    assert_string_equal(t->instance_id, in->id);
    in->terminated = true;
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    snprintf(in->msg, sizeof(in->msg), "%s", e && e->message ? e->message : "");
  }
  if (++c->term_replies == c->n && c->after_terminate)
    c->after_terminate(c);
}

static void terminate_all(ctx_t *c) {
  for (unsigned i = 0; i < c->n; i++) {
    if (!c->in[i].launched) {
      c->term_replies++;
      continue;
    }
    kite_ev_instance_terminate_t t = {.provider = cloud->provider,
                                      .pool = 7,
                                      .node = 100 + i,
                                      .rank = i,
                                      .instance_id = c->in[i].id};
    assert_int_equal(kite_request_instance_terminate(kite_runtime_bus(c->rt), &t, 0, on_terminated,
                                                     &c->in[i], NULL),
                     0);
  }
}

/* Runs cmd on the instance with OpenSSH, verifying the pinned host key. */
static int run_ssh(const inst_t *in, const char *cmd, char *out, size_t outlen) {
  char kh[512], line[2048];
  snprintf(kh, sizeof(kh), "%s.known_hosts", in->key_path);
  FILE *fp = fopen(kh, "w");
  assert_non_null(fp);
  fprintf(fp, "[%s]:%u %s\n", in->address, in->port, in->host_key);
  fclose(fp);
  snprintf(line, sizeof(line),
           "ssh -i %s -p %u -o BatchMode=yes -o StrictHostKeyChecking=yes "
           "-o UserKnownHostsFile=%s -o LogLevel=ERROR -o ConnectTimeout=10 %s@%s '%s'",
           in->key_path, in->port, kh, in->user, in->address, cmd);
  FILE *p = popen(line, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, outlen - 1, p);
  out[n] = '\0';
  return pclose(p);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void on_list(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ctx_t *c = data;
  (void)bus;
  c->list_status = status;
  const kite_ev_instance_listed_t *l = kite_ev_as_instance_listed(ev);
  if (l) {
    c->list_count = l->count;
    snprintf(c->list_ids, sizeof(c->list_ids), "%s", l->ids ? l->ids : "");
  }
  terminate_all(c);
}

static void lifecycle_after_launch(ctx_t *c) {
  for (unsigned i = 0; i < c->n; i++) {
    inst_t *in = &c->in[i];
    assert_int_equal(in->status, 0);
    assert_non_null(strstr(in->address, "127."));
    assert_int_equal(in->port, 2222);
    /* The host key kite gave the instance in its user_data is pinned … */
    assert_non_null(strstr(in->host_key, "ssh-ed25519 "));
    /* … and it is the key the instance presents: OpenSSH logs in with strict checking. */
    char out[256];
    assert_int_equal(run_ssh(in, "echo hello-from-droplet; echo $KITE_NODE_TAG", out, sizeof(out)),
                     0);
    assert_non_null(strstr(out, "hello-from-droplet"));
  }
  assert_true(kite_local_count_tagged(c->tag) > 0);
  assert_string_not_equal(c->in[0].address, c->in[1].address);
  assert_string_not_equal(c->in[0].host_key, c->in[1].host_key);
  kite_ev_instance_list_t l = {.provider = cloud->provider, .tag = c->tag};
  assert_int_equal(kite_request_instance_list(kite_runtime_bus(c->rt), &l, 0, on_list, c, NULL), 0);
}

static void lifecycle_after_terminate(ctx_t *c) {
  /* Confirmed only once the emulator deleted the instances and their nodes' processes. */
  c->live_before_confirm = sim_live(&c->sim);
}

/* Two launches, SSH to each, list by tag, terminate both. */
static void case_launch_list_terminate(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "life", NULL, cloud->token);
  c.n = 2;
  c.after_launch = lifecycle_after_launch;
  c.after_terminate = lifecycle_after_terminate;
  launch(&c, 0, "#!/bin/sh\n# kite-user-data-secret-7d1e\n");
  launch(&c, 1, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.replies, 2);
  assert_int_equal(c.list_status, 0);
  assert_int_equal(c.list_count, 2);
  assert_non_null(strstr(c.list_ids, c.in[0].id));
  assert_non_null(strstr(c.list_ids, c.in[1].id));
  assert_int_equal(c.term_replies, 2);
  assert_true(c.in[0].terminated && c.in[1].terminated);
  assert_int_equal(c.live_before_confirm, 0);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  /* kite's key was registered once, for both launches (where the cloud keeps keys). */
  if (cloud->keys_path)
    assert_int_equal(sim_keys(&c.sim), 1);
  assert_int_equal(sim_count(&c.sim, "created"), 2);
  assert_null(strstr(c.log, "kite-user-data-secret-7d1e"));
  ctx_done(&c);
}

/* ---- errors --------------------------------------------------------------------------------- */

/* A rejected token: KITE_ECREDENTIALS naming the 401 and the variable to set, never the token
 * (no part of it: fragment is one). */
static void case_bad_token(const char *wrong, const char *fragment) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "badtok", NULL, wrong);
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "401"));
  assert_non_null(strstr(c.in[0].msg, cloud->token_env));
  assert_null(strstr(c.in[0].msg, fragment));
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* No token anywhere (the variables in unset are removed, HOME is an empty directory): the
 * message says so and names where kite looked, config (where "$HOME" is the empty home) among
 * them; not one request is sent. */
static void case_missing_token(const char *const *unset, const char *config) {
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  for (unsigned i = 0; unset[i]; i++)
    unsetenv(unset[i]);
  ctx_init(&c, "notok", NULL, cloud->token);
  setenv("HOME", c.home, 1); /* no config of the cloud's command there */
  snprintf(c.options, sizeof(c.options), "{\"api_url\":\"%s\"}", ctx_api(&c));
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  char want[256];
  if (strncmp(config, "$HOME", 5) == 0)
    snprintf(want, sizeof(want), "%s%s", c.home, config + 5);
  else
    snprintf(want, sizeof(want), "%s", config);
  assert_int_equal(c.in[0].status, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "no API token found"));
  assert_non_null(strstr(c.in[0].msg, cloud->token_env));
  assert_non_null(strstr(c.in[0].msg, want));
  assert_int_equal(sim_count(&c.sim, "requests"), 0);
  ctx_done(&c);
}

/* --no-capacity: KITE_ECAPACITY with every one of want in the message, nothing created. */
static void case_no_capacity(const char *const *want) {
  ctx_t c;
  current = &c;
  const char *flags[] = {"--no-capacity", NULL};
  ctx_init(&c, "cap", flags, cloud->token);
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECAPACITY);
  for (unsigned i = 0; want[i]; i++)
    assert_non_null(strstr(c.in[0].msg, want[i]));
  assert_int_equal(sim_live(&c.sim), 0);
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* A limit of one instance and two launches: one is made, the other is KITE_EQUOTA with want
 * in its message. */
static void case_limit(const char *want) {
  ctx_t c;
  current = &c;
  const char *flags[] = {"--droplet-limit", "1", NULL};
  ctx_init(&c, "limit", flags, cloud->token);
  c.n = 2;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  launch(&c, 1, NULL);
  kite_runtime_run(c.rt);
  int ok = (c.in[0].status == 0) + (c.in[1].status == 0);
  assert_int_equal(ok, 1);
  inst_t *bad = c.in[0].status ? &c.in[0] : &c.in[1];
  assert_int_equal(bad->status, KITE_EQUOTA);
  assert_non_null(strstr(bad->msg, want));
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

static void case_spot_refused(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "spot", NULL, cloud->token);
  c.n = 1;
  kite_ev_instance_launch_t l = {.provider = cloud->provider,
                                 .pool = 7,
                                 .node = 100,
                                 .rank = 0,
                                 .tag = c.tag,
                                 .spot = true,
                                 .options = c.options};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[0], NULL), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ENOTSUP);
  assert_non_null(strstr(c.in[0].msg, "spot"));
  ctx_done(&c);
}

/* ---- faults --------------------------------------------------------------------------------- */

static void case_api_faults_no_duplicates(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "faults", NULL, cloud->token);
  /* First the account key's lookup meets a 429 (retried after Retry-After) and a reset (a
   * GET, so retried at once). */
  sim_faults(&c.sim, "{\"next\":[\"429\",\"reset\"]}");
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  /* Now the creates: an answer lost after the instance was created, a truncated body after
   * it was created, a 500 before, and a slow answer and a reset for what follows. A lost or
   * unreadable create is looked for before it is sent again. */
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  c.replies = c.term_replies = 0;
  c.n = 3;
  sim_faults(&c.sim, "{\"next\":[\"reset\",\"malformed\",\"500\",\"slow\",\"reset\"],"
                     "\"slow_ms\":300}");
  for (unsigned i = 0; i < 3; i++) {
    memset(&c.in[i], 0, sizeof(c.in[i]));
    launch(&c, i, NULL);
  }
  kite_runtime_run(c.rt);
  for (unsigned i = 0; i < 3; i++) {
    assert_int_equal(c.in[i].status, 0);
    assert_true(c.in[i].terminated);
  }
  /* Never more instances than asked for, and each created exactly once. */
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_true(sim_count(&c.sim, "peak") <= 3);
  assert_int_equal(sim_live(&c.sim), 0);
  assert_true(sim_count(&c.sim, "faults_injected") >= 7);
  ctx_done(&c);
}

static void case_random_faults(const char *seed) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "rand", FAULTS_20_PERCENT(seed), cloud->token);
  c.n = 4;
  c.after_launch = terminate_all;
  for (unsigned i = 0; i < 4; i++)
    launch(&c, i, NULL);
  kite_runtime_run(c.rt);
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(c.in[i].status, 0);
    assert_true(c.in[i].terminated);
  }
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_true(sim_count(&c.sim, "peak") <= 4);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

/* ---- preemption and describe ---------------------------------------------------------------- */

static void on_preempt(kite_bus_t *bus, int status, const kite_event_t *ev, void *data);

static void on_describe(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ctx_t *c = data;
  (void)bus;
  c->describe_status = status;
  const kite_ev_instance_state_t *s = kite_ev_as_instance_state(ev);
  if (s)
    snprintf(c->describe_state, sizeof(c->describe_state), "%s", s->state);
  terminate_all(c);
}

static void on_preempt(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ctx_t *c = data;
  assert_int_equal(status, 0);
  const kite_ev_preempt_status_t *s = kite_ev_as_preempt_status(ev);
  assert_non_null(s);
  if (c->preempt_state == -1) {
    /* First check: running. Now the instance dies. */
    assert_int_equal(s->state, KITE_PREEMPT_NONE);
    sim_kill(&c->sim, c->in[0].id, "{\"vanish\":true}");
    c->preempt_state = -2;
    /* The kill is asynchronous in the emulator: wait until its node is gone and the emulator
     * itself has seen it go (the instance vanishes from its state then). */
    while (kite_local_count_tagged(c->tag) > 0 || sim_live(&c->sim) > 0)
      usleep(20000);
    kite_ev_preempt_check_t q = {
        .provider = cloud->provider, .pool = 7, .node = 100, .instance_id = c->in[0].id};
    assert_int_equal(kite_request_preempt_check(bus, &q, 0, on_preempt, c, NULL), 0);
    return;
  }
  c->preempt_state = s->state;
  kite_ev_instance_describe_t d = {
      .provider = cloud->provider, .node = 100, .instance_id = c->in[0].id};
  assert_int_equal(kite_request_instance_describe(bus, &d, 0, on_describe, c, NULL), 0);
}

/* A preemption check's answer: its state into *(int *)data. */
__attribute__((unused)) static void on_preempt_state(kite_bus_t *bus, int status,
                                                     const kite_event_t *ev, void *data) {
  int *seen = data;
  (void)bus;
  assert_int_equal(status, 0);
  const kite_ev_preempt_status_t *s = kite_ev_as_preempt_status(ev);
  assert_non_null(s);
  *seen = s->state;
}

static void preempt_after_launch(ctx_t *c) {
  assert_int_equal(c->in[0].status, 0);
  c->preempt_state = -1;
  kite_ev_preempt_check_t q = {
      .provider = cloud->provider, .pool = 7, .node = 100, .instance_id = c->in[0].id};
  assert_int_equal(kite_request_preempt_check(kite_runtime_bus(c->rt), &q, 0, on_preempt, c, NULL),
                   0);
}

/* Running, then killed: preempt_check says GONE, describe "terminated". */
static void case_dead_instance_is_preempted(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "dies", NULL, cloud->token);
  c.n = 1;
  c.after_launch = preempt_after_launch;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.preempt_state, KITE_PREEMPT_GONE);
  assert_int_equal(c.describe_status, 0);
  assert_string_equal(c.describe_state, "terminated");
  /* Terminating an instance that is already gone is confirmed at once. */
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

/* ---- pools on the cloud --------------------------------------------------------------------- */

typedef struct pctx {
  ctx_t *c;
  kite_pool_t *pool;
  char name[48];
  int open_status, close_status, task_status;
  char open_msg[2048];
  bool closed;
  unsigned failed, replaced;
  char out[4][128];
  bool kill_rank1;
} pctx_t;

static void pool_closed(kite_pool_t *pool, int status, void *data) {
  pctx_t *p = data;
  (void)pool;
  p->closed = true;
  p->close_status = status;
  p->c->live_before_confirm = sim_live(&p->c->sim);
}

static void pool_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                        const void *buf, size_t len, void *data) {
  pctx_t *p = data;
  (void)pool;
  (void)attempt;
  if (stream == 1 && rank < 4)
    snprintf(p->out[rank] + strlen(p->out[rank]), sizeof(p->out[rank]) - strlen(p->out[rank]),
             "%.*s", (int)len, (const char *)buf);
}

static void pool_task_done(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  pctx_t *p = data;
  p->task_status = status;
  p->failed = status == 0 ? r->failed : 99;
  kite_pool_close(pool, pool_closed, p);
}

static void pool_broadcast(pctx_t *p) {
  kite_cmd_t cmd = {.shell = "echo \"rank=$KITE_NODE_RANK of $KITE_NUM_NODES $(cat boot.txt)\""};
  for (int i = 0; i < 4; i++)
    p->out[i][0] = '\0';
  assert_int_equal(kite_pool_broadcast(p->pool, &cmd, NULL, pool_output, pool_task_done, p, NULL),
                   0);
}

static void pool_replaced(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_replaced_t *r,
                          void *data) {
  pctx_t *p = data;
  (void)bus;
  (void)ev;
  assert_string_not_equal(r->old_instance, r->new_instance);
  if (p->replaced++ == 0)
    pool_broadcast(p);
}

static void pool_opened(kite_pool_t *pool, int status, const char *msg, void *data) {
  pctx_t *p = data;
  p->open_status = status;
  snprintf(p->open_msg, sizeof(p->open_msg), "%s", msg ? msg : "");
  if (status != 0) {
    kite_pool_close(pool, pool_closed, p);
    return;
  }
  if (p->kill_rank1) {
    /* Rank 1's instance dies as a reclaimed machine does: the monitors find out, the node is
     * replaced by a new instance, and the broadcast runs once that is READY. */
    sim_kill(&p->c->sim, kite_pool_instance_id(pool, 1), NULL);
    return;
  }
  pool_broadcast(p);
}

/* The cost monitor's interval for the pools pool_run opens (0: the default). */
static uint64_t pool_cost_interval_ms;

static void pool_run(ctx_t *c, pctx_t *p, unsigned nodes, bool kill_rank1) {
  memset(p, 0, sizeof(*p));
  p->c = c;
  p->kill_rank1 = kill_rank1;
  /* The pool's tag is "kite-pool-" + its name: the same tag the ctx counts processes by. */
  snprintf(p->name, sizeof(p->name), "%s", c->tag + strlen("kite-pool-"));
  assert_int_equal(kite_transport_new(c->rt, NULL, NULL), 0);
  assert_int_equal(kite_bootstrap_runner_new(c->rt, NULL), 0);
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_file(b, "boot.txt", "booted", 6, 0600), 0);
  kite_pool_spec_t s = {.name = p->name,
                        .provider = cloud->provider,
                        .nodes = nodes,
                        .region = cloud->region,
                        .instance_type = cloud->type,
                        .image = cloud->image,
                        .provider_options = c->options,
                        .bootstrap = b,
                        .replace = true,
                        .replace_per_minute = 100,
                        .spot = cloud->pool_spot};
  /* Every instance's host key is pinned at launch: no trust on first use, also for a
   * replacement that answers on a recycled address. */
  s.hostkey_mode = KITE_HOSTKEY_STRICT;
  s.monitors.health_interval_ms = 300;
  s.monitors.health_timeout_ms = 1000;
  s.monitors.health_failures = 2;
  s.monitors.preempt_interval_ms = 300;
  s.monitors.cost_interval_ms = pool_cost_interval_ms;
  kite_on_node_replaced(kite_runtime_bus(c->rt), KITE_KEY_ANY, pool_replaced, p, NULL);
  assert_int_equal(kite_pool_open(c->rt, &s, pool_opened, p, &p->pool), 0);
  kite_bootstrap_free(b);
  kite_runtime_run(c->rt);
}

/* A pool of 4 over SSH on the cloud: open, broadcast, close; when flags are given the emulator
 * fails a share of the API calls and the pool must still work, with no extra instance. */
static void case_pool_of_four(const char *what, const char *const *flags) {
  ctx_t c;
  pctx_t p;
  current = &c;
  ctx_init(&c, what, flags, cloud->token);
  pool_run(&c, &p, 4, false);
  if (p.open_status != 0)
    fail_msg("open: %s", p.open_msg);
  assert_int_equal(p.task_status, 0);
  assert_int_equal(p.failed, 0);
  for (unsigned r = 0; r < 4; r++) {
    char want[64];
    snprintf(want, sizeof(want), "rank=%u of 4 booted\n", r);
    assert_string_equal(p.out[r], want);
  }
  assert_true(p.closed);
  assert_int_equal(p.close_status, 0);
  /* The pool closed only when the API said every instance was gone, and by the emulator's own
   * count there never were more instances than asked for. */
  assert_int_equal(c.live_before_confirm, 0);
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_true(sim_count(&c.sim, "peak") <= 4);
  if (flags)
    assert_true(sim_count(&c.sim, "faults_injected") > 0);
  ctx_done(&c);
}

/* A pool of 2 whose rank 1 dies once it is open: replaced, and the broadcast runs on it. */
static void case_pool_replaces_dead(void) {
  ctx_t c;
  pctx_t p;
  current = &c;
  ctx_init(&c, "repl", NULL, cloud->token);
  pool_run(&c, &p, 2, true);
  assert_int_equal(p.open_status, 0);
  assert_true(p.replaced >= 1);
  assert_int_equal(p.task_status, 0);
  assert_int_equal(p.failed, 0);
  assert_string_equal(p.out[1], "rank=1 of 2 booted\n");
  assert_true(p.closed);
  assert_int_equal(p.close_status, 0);
  assert_int_equal(c.live_before_confirm, 0);
  assert_int_equal(sim_count(&c.sim, "created"), 3);
  ctx_done(&c);
}

/* ---- hostile API answers -------------------------------------------------------------------- */

/* Whether answer a is for request line `line`: its match is in the line, or (when no answer's
 * match is: unnamed) it has none. */
static bool hostile_for(const cloud_answer_t *a, const char *line, bool named) {
  return named ? a->match != NULL && strstr(line, a->match) != NULL : a->match == NULL;
}

/* The answer to request line `line`: the next, round and round, of the answers for it.
 * served[i] counts the requests answered from the group whose first answer is i. */
static const cloud_answer_t *hostile_answer(const char *line, unsigned *served) {
  const cloud_answer_t *h = cloud->hostile;
  size_t n = cloud->n_hostile, first = n, count = 0;
  bool named = false;
  for (size_t i = 0; i < n && !named; i++)
    named = h[i].match != NULL && strstr(line, h[i].match) != NULL;
  for (size_t i = 0; i < n; i++)
    if (hostile_for(&h[i], line, named) && count++ == 0)
      first = i;
  if (count == 0)
    return &h[0];
  size_t want = served[first]++ % count;
  for (size_t i = first; i < n; i++)
    if (hostile_for(&h[i], line, named) && want-- == 0)
      return &h[i];
  return &h[first];
}

/* A server (a child process, blocking) that answers every request with the next of the cloud's
 * hostile answers for it. */
static void hostile_serve(int lfd, const cloud_answer_t *answers, size_t n_answers) {
  unsigned served[256] = {0};
  for (;;) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
      _exit(0);
    char buf[65536];
    size_t len = 0;
    for (;;) {
      ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
      if (r <= 0)
        break;
      len += (size_t)r;
      buf[len] = '\0';
      char *end = strstr(buf, "\r\n\r\n");
      if (end) {
        char *cl = strcasestr(buf, "content-length:");
        size_t body = cl ? (size_t)atol(cl + 15) : 0;
        if (len >= (size_t)(end - buf) + 4 + body)
          break;
      }
    }
    buf[len] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    const cloud_answer_t *h =
        answers ? &answers[served[0]++ % n_answers] : hostile_answer(buf, served);
    char out[70000];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d X\r\nConnection: close\r\nRetry-After: 0\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     h->status, strlen(h->body), h->body);
    if (write(fd, out, (size_t)n) < 0)
      _exit(1);
    close(fd);
  }
}

static void on_hostile_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  unsigned *replies = data;
  (void)bus;
  (void)ev;
  (void)status;
  (*replies)++;
}

/* Starts the hostile server (a child process) on a free loopback port: *port gets it; it
 * answers with answers round and round, or (NULL) with the cloud's hostile answers. */
static pid_t hostile_start_with(int *port, const cloud_answer_t *answers, size_t n_answers) {
  assert_true(cloud->n_hostile > 0 && cloud->n_hostile <= 256);
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(lfd, 64), 0);
  socklen_t al = sizeof(a);
  getsockname(lfd, (struct sockaddr *)&a, &al);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    hostile_serve(lfd, answers, n_answers);
  }
  close(lfd);
  *port = ntohs(a.sin_port);
  return pid;
}

/* The hostile server with the cloud's own hostile answers, each for the requests it names. */
static pid_t hostile_start(int *port) {
  return hostile_start_with(port, NULL, 0);
}

/* Every request kite can send, answered with garbage: each is answered, nothing crashes or
 * leaks (run it under ASan). */
static void case_hostile_bodies(void) {
  int port = 0;
  pid_t pid = hostile_start(&port);
  char home[64];
  snprintf(home, sizeof(home), "/tmp/kite-test-%s-XXXXXX", cloud->tmp);
  assert_non_null(mkdtemp(home));
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_OFF};
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  cloud_timing_t t = {.poll_ms = 20,
                      .backoff_base_ms = 5,
                      .max_retries = 1,
                      .running_timeout_ms = 1500,
                      .delete_timeout_ms = 1500};
  assert_int_equal(cloud->provider_new(rt, &t), 0);
  char url[96], options[256];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, cloud->api_suffix);
  snprintf(options, sizeof(options), "{\"api_url\":\"%s\",\"token\":\"%s\"}", url, cloud->token);
  kite_bus_t *bus = kite_runtime_bus(rt);
  unsigned replies = 0, asked = 0;
  for (unsigned i = 0; i < 3; i++, asked++) {
    kite_ev_instance_launch_t l = {.provider = cloud->provider,
                                   .pool = 1,
                                   .node = i,
                                   .rank = i,
                                   .tag = "kite-pool-hostile",
                                   .options = options};
    assert_int_equal(kite_request_instance_launch(bus, &l, 0, on_hostile_reply, &replies, NULL), 0);
  }
  /* Requests without options find the endpoint through the tag and the environment. */
  setenv(cloud->url_env, url, 1);
  setenv(cloud->token_env, cloud->token, 1);
  kite_ev_instance_list_t li = {.provider = cloud->provider, .tag = "kite-pool-hostile"};
  assert_int_equal(kite_request_instance_list(bus, &li, 0, on_hostile_reply, &replies, NULL), 0);
  asked++;
  kite_ev_instance_describe_t d = {.provider = cloud->provider, .node = 1, .instance_id = "9"};
  assert_int_equal(kite_request_instance_describe(bus, &d, 0, on_hostile_reply, &replies, NULL), 0);
  asked++;
  kite_ev_preempt_check_t pc = {.provider = cloud->provider, .node = 1, .instance_id = "9"};
  assert_int_equal(kite_request_preempt_check(bus, &pc, 0, on_hostile_reply, &replies, NULL), 0);
  asked++;
  kite_ev_instance_terminate_t t9 = {.provider = cloud->provider, .instance_id = "9"};
  assert_int_equal(kite_request_instance_terminate(bus, &t9, 0, on_hostile_reply, &replies, NULL),
                   0);
  asked++;
  kite_runtime_run(rt);
  unsetenv(cloud->url_env);
  unsetenv(cloud->token_env);
  /* Every request was answered (whatever the answer), nothing crashed or leaked. */
  assert_int_equal(replies, asked);
  assert_int_equal(kite_runtime_shutdown(rt, on_shutdown, NULL), 0);
  kite_runtime_run(rt);
  assert_int_equal(kite_runtime_free(rt), 0);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

/* ---- the catalog ---------------------------------------------------------------------------- */

#define MAX_OFFERS 512

typedef struct cat {
  int status;
  char msg[1024];
  kite_offer_t *offers;
  size_t n;
  uint32_t count;
  char region[48];
  unsigned replies;
} cat_t;

static void on_catalog(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  cat_t *k = data;
  (void)bus;
  k->status = status;
  k->replies++;
  if (status != 0) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    snprintf(k->msg, sizeof(k->msg), "%s", e && e->message ? e->message : "");
    return;
  }
  const kite_ev_catalog_t *cv = kite_ev_as_catalog(ev);
  assert_non_null(cv);
  assert_string_equal(cv->provider, cloud->provider);
  k->count = cv->count;
  snprintf(k->region, sizeof(k->region), "%s", cv->region ? cv->region : "");
  char *msg = NULL;
  free(k->offers);
  k->offers = NULL;
  assert_int_equal(kite_offers_parse(cv->offers, &k->offers, &k->n, &msg), 0);
}

static void ask_catalog(kite_runtime_t *rt, const char *options, const char *region, cat_t *k) {
  kite_ev_catalog_request_t q = {.provider = cloud->provider, .region = region, .options = options};
  assert_int_equal(kite_request_catalog_request(kite_runtime_bus(rt), &q, 0, on_catalog, k, NULL),
                   0);
}

static const kite_offer_t *offer_find(const kite_offer_t *v, size_t n, const char *region,
                                      const char *type) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].region, region) == 0 && strcmp(v[i].instance_type, type) == 0)
      return &v[i];
  return NULL;
}

/* The cheapest offer of region in v (the first of equal prices), or NULL. */
static const kite_offer_t *offer_cheapest(const kite_offer_t *v, size_t n, const char *region) {
  const kite_offer_t *best = NULL;
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i].region, region) == 0 && (best == NULL || v[i].price < best->price))
      best = &v[i];
  return best;
}

/* k's offers are exactly what the emulator's own answer says (read by the test itself). */
static void catalog_matches(sim_t *sim, const cat_t *k, const char *region) {
  json_t *raw = sim_call_as(sim, cloud->token, cloud->catalog_body ? "POST" : "GET",
                            cloud->catalog_path, cloud->catalog_body);
  static kite_offer_t want[MAX_OFFERS];
  size_t nw = cloud->expect_offers(raw, region, want, MAX_OFFERS);
  json_decref(raw);
  assert_true(nw > 0);
  assert_int_equal(k->n, nw);
  assert_int_equal(k->count, nw);
  for (size_t i = 0; i < nw; i++) {
    const kite_offer_t *w = &want[i];
    const kite_offer_t *o = offer_find(k->offers, k->n, w->region, w->instance_type);
    if (o == NULL)
      fail_msg("no offer of %s in %s", w->instance_type, w->region);
    assert_string_equal(o->provider, cloud->provider);
    assert_int_equal(o->vcpus, w->vcpus);
    assert_int_equal(o->memory_mb, w->memory_mb);
    assert_int_equal(o->disk_gb, w->disk_gb);
    assert_true(o->price > w->price - 1e-9 && o->price < w->price + 1e-9);
    /* Offers without a spot price (expect_offers leaves it 0) have none (< 0). */
    if (w->spot_price > 0)
      assert_true(o->spot_price > w->spot_price - 1e-9 && o->spot_price < w->spot_price + 1e-9);
    else
      assert_true(o->spot_price < 0);
    assert_int_equal(o->available, w->available);
    assert_string_equal(o->arch, w->arch);
    assert_string_equal(o->accelerator, w->accelerator);
    assert_int_equal(o->accelerator_count, w->accelerator_count);
    assert_int_equal(o->accelerator_memory_mb, w->accelerator_memory_mb);
    assert_string_equal(o->source, "api");
    assert_true(o->fetched_ms > 0);
    if (region)
      assert_string_equal(o->region, region);
    /* The cheapest of each region is the same offer. */
    const kite_offer_t *a = offer_cheapest(k->offers, k->n, w->region);
    const kite_offer_t *b = offer_cheapest(want, nw, w->region);
    assert_string_equal(a->instance_type, b->instance_type);
  }
}

/* The catalog of every region, then of one: the offers the emulator's answer says, no more. */
static void case_catalog(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "catalog", NULL, cloud->token);
  cat_t all = {0}, one = {0};
  ask_catalog(c.rt, c.options, NULL, &all);
  ask_catalog(c.rt, c.options, cloud->other_region, &one);
  kite_runtime_run(c.rt);
  if (all.status || one.status)
    print_error("catalog: %s | %s\n", all.msg, one.msg);
  assert_int_equal(all.status, 0);
  assert_int_equal(one.status, 0);
  catalog_matches(&c.sim, &all, NULL);
  catalog_matches(&c.sim, &one, cloud->other_region);
  assert_string_equal(one.region, cloud->other_region);
  assert_true(one.n < all.n);
  free(all.offers);
  free(one.offers);
  ctx_done(&c);
}

/* About a fifth of the calls fail: each catalog request still answers with every offer (it was
 * retried), or fails with a message saying what kite was doing. */
static void case_catalog_faults(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "catfaults", FAULTS_20_PERCENT("11"), cloud->token);
  cat_t k[6] = {{0}};
  for (unsigned i = 0; i < 6; i++)
    ask_catalog(c.rt, c.options, NULL, &k[i]);
  kite_runtime_run(c.rt);
  sim_faults(&c.sim, "{\"p429\": 0, \"p500\": 0, \"reset\": 0}");
  unsigned ok = 0;
  for (unsigned i = 0; i < 6; i++) {
    assert_int_equal(k[i].replies, 1);
    if (k[i].status == 0) {
      catalog_matches(&c.sim, &k[i], NULL);
      ok++;
    } else {
      assert_non_null(strstr(k[i].msg, "reading what"));
    }
    free(k[i].offers);
  }
  assert_true(ok >= 4);
  assert_true(sim_count(&c.sim, "faults_injected") > 0);
  ctx_done(&c);
}

/* No capacity left in one region: a launch there is KITE_ECAPACITY naming the region, and the
 * same launch in another region is made. */
static void case_capacity_per_region(void) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "capreg", NULL, cloud->token);
  char rule[256];
  snprintf(rule, sizeof(rule),
           "{\"front\": \"%s\", \"region\": \"%s\", \"type\": \"*\", "
           "\"available\": 0}",
           cloud->provider, cloud->region);
  json_t *rules = sim_call(&c.sim, "POST", "/_sim/capacity", rule);
  assert_int_equal(json_array_size(rules), 1);
  json_decref(rules);
  c.n = 2;
  c.after_launch = terminate_all;
  launch_in(&c, 0, NULL, cloud->region);
  launch_in(&c, 1, NULL, cloud->other_region);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECAPACITY);
  assert_non_null(strstr(c.in[0].msg, cloud->region));
  assert_int_equal(c.in[1].status, 0);
  assert_true(c.in[1].terminated);
  assert_int_equal(sim_count(&c.sim, "created"), 1);
  /* -1 removes the rule. */
  snprintf(rule, sizeof(rule), "[{\"front\": \"%s\", \"region\": \"%s\", \"available\": -1}]",
           cloud->provider, cloud->region);
  rules = sim_call(&c.sim, "POST", "/_sim/capacity", rule);
  assert_int_equal(json_array_size(rules), 0);
  json_decref(rules);
  ctx_done(&c);
}

/* Catalog answers with wrong types, absurd numbers or missing fields: each request is refused
 * with a message, nothing crashes or leaks (run it under ASan). */
static void case_hostile_catalog(void) {
  char home[64];
  snprintf(home, sizeof(home), "/tmp/kite-test-%s-XXXXXX", cloud->tmp);
  assert_non_null(mkdtemp(home));
  /* First (i = -1) an answer that is right: the harness itself gets offers. */
  for (long i = -1; i < (long)cloud->n_hostile_catalog; i++) {
    int port = 0;
    const cloud_answer_t good = {200, cloud->catalog_ok, NULL};
    pid_t pid = hostile_start_with(&port, i < 0 ? &good : &cloud->hostile_catalog[i], 1);
    kite_runtime_t *rt = NULL;
    kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_OFF};
    assert_int_equal(kite_runtime_new(&rt, &o), 0);
    cloud_timing_t t = {.poll_ms = 20, .backoff_base_ms = 5, .max_retries = 1};
    assert_int_equal(cloud->provider_new(rt, &t), 0);
    char options[256];
    snprintf(options, sizeof(options), "{\"api_url\":\"http://127.0.0.1:%d%s\",\"token\":\"%s\"}",
             port, cloud->api_suffix, cloud->token);
    cat_t k = {0};
    ask_catalog(rt, options, NULL, &k);
    kite_runtime_run(rt);
    if (i < 0) {
      if (k.status != 0)
        fail_msg("a right catalog answer was refused: %s", k.msg);
      assert_int_equal(k.n, 1);
      free(k.offers);
      assert_int_equal(kite_runtime_shutdown(rt, on_shutdown, NULL), 0);
      kite_runtime_run(rt);
      assert_int_equal(kite_runtime_free(rt), 0);
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
      continue;
    }
    if (k.status == 0)
      fail_msg("hostile catalog answer %ld was taken: %s", i, cloud->hostile_catalog[i].body);
    assert_int_equal(k.replies, 1);
    assert_true(strlen(k.msg) > 0);
    assert_null(strstr(k.msg, cloud->token));
    free(k.offers);
    assert_int_equal(kite_runtime_shutdown(rt, on_shutdown, NULL), 0);
    kite_runtime_run(rt);
    assert_int_equal(kite_runtime_free(rt), 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

/* ---- the lifecycle through Stoplight Prism -------------------------------------------------- */

static void case_lifecycle_through_prism(void) {
  const char *prism = prism_find();
  char spec[512];
  if (prism == NULL || !prism_spec(cloud->spec, spec, sizeof(spec))) {
    print_message("skipped: Prism or %s is not installed\n", cloud->spec);
    skip();
  }
  ctx_t c;
  current = &c;
  ctx_init(&c, "prism", NULL, cloud->token);
  char pspec[600], upstream[160], log_path[128];
  snprintf(pspec, sizeof(pspec), "%s", spec);
  if (cloud->prism_spec) {
    snprintf(pspec, sizeof(pspec), "%s/%s", c.home, cloud->spec);
    cloud->prism_spec(spec, pspec);
  }
  /* The description's paths are relative to its server: Prism is asked for them at its root
   * and forwards to the same path under the emulator's API prefix. */
  snprintf(upstream, sizeof(upstream), "%s%s", c.sim.url, cloud->prism_upstream_suffix);
  snprintf(log_path, sizeof(log_path), "%s/prism.log", c.home);
  int pport = 0;
  pid_t pid = prism_start(prism, pspec, upstream, log_path, &pport);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"http://127.0.0.1:%d%s\",\"token\":\"%s\",\"ssh_user\":\"%s\","
           "\"ssh_port\":2222}",
           pport, cloud->prism_api_suffix ? cloud->prism_api_suffix : "", cloud->token,
           kite_local_login_user());
  options_add_more(c.options, sizeof(c.options), c.sim.url);
  c.n = 2;
  c.after_launch = lifecycle_after_launch;
  c.after_terminate = lifecycle_after_terminate;
  launch(&c, 0, "#!/bin/sh\necho hi\n");
  launch(&c, 1, NULL);
  cat_t k = {0};
  ask_catalog(c.rt, c.options, NULL, &k); /* the catalog's calls through Prism as well */
  kite_runtime_run(c.rt);
  char *plog = prism_stop(pid, log_path);
  if (k.status && !cloud->catalog_unsupported)
    print_error("catalog: %s\n", k.msg);
  assert_int_equal(k.status, cloud->catalog_unsupported ? KITE_ENOTSUP : 0);
  if (cloud->catalog_unsupported)
    assert_int_equal(k.n, 0);
  else if (cloud->expect_offers)
    catalog_matches(&c.sim, &k, NULL);
  else
    assert_true(k.n > 0); /* a catalog the including file checks on its own */
  free(k.offers);
  if (c.in[0].status || c.in[1].status || c.list_status || (plog && strstr(plog, "iolation")))
    print_error("launch: %s | %s\nprism:\n%s\n", c.in[0].msg, c.in[1].msg,
                plog ? plog : "(no log)");
  assert_int_equal(c.in[0].status, 0);
  assert_int_equal(c.in[1].status, 0);
  assert_int_equal(c.list_status, 0);
  assert_int_equal(c.list_count, 2);
  assert_true(c.in[0].terminated && c.in[1].terminated);
  assert_int_equal(c.live_before_confirm, 0);
  assert_non_null(plog);
  assert_null(strstr(plog, "Violation"));
  assert_null(strstr(plog, "violation"));
  free(plog);
  ctx_done(&c);
}

#endif
