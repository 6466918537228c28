/* The DigitalOcean provider at the bus level, against kite-cloudsim (a real HTTP server on
 * loopback whose droplets are real sshd nodes): launch, reach the droplet over SSH, list by
 * tag, describe, preemption, terminate confirmed only when the droplet and its processes are
 * gone, error mapping, and injected API faults without duplicate droplets. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/http.h"
#include "kite/kite.h"

#define TOKEN "dop_v1_cloudsim_test_token_5f2a9c"
#define MAXI 8

#include "cloudsim_client.h"

/* ---- the emulator --------------------------------------------------------------------------- */

static int sim_count(sim_t *s, const char *field) {
  return sim_state_count(s, "/_sim/state", field);
}

static void sim_faults(sim_t *s, const char *json) {
  json_decref(sim_call(s, "POST", "/_sim/faults", json));
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct inst {
  int status;
  char msg[1024];
  char id[32], address[64], user[64], key_path[256], host_key[256];
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
  int droplets_before_confirm;
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

static void ctx_init(ctx_t *c, const char *what, const char *const *sim_flags, const char *token) {
  memset(c, 0, sizeof(*c));
  sim_start(&c->sim, TOKEN, sim_flags);
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-do-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  snprintf(c->tag, sizeof(c->tag), "kite-pool-t%d-%s", (int)getpid(), what);
  snprintf(c->options, sizeof(c->options),
           "{\"api_url\":\"%s\",\"token\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222}",
           c->sim.url, token, kite_local_login_user());
  kite_runtime_options_t o = {.home = c->home, .log_level = KITE_LOG_DEBUG};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  kite_log_set_sink(c->rt, on_log, c);
  kite_do_provider_options_t po = {.poll_ms = 100, .backoff_base_ms = 20, .max_retries = 4};
  assert_int_equal(kite_do_provider_new(c->rt, &po, NULL), 0);
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static void ctx_done(ctx_t *c) {
  assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
  kite_runtime_run(c->rt);
  assert_int_equal(kite_runtime_free(c->rt), 0);
  /* The token and the droplets' private host keys never reached a log line. */
  assert_null(strstr(c->log, TOKEN));
  assert_null(strstr(c->log, "PRIVATE KEY"));
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(kite_local_count_tagged(c->tag), 0);
}

static void on_launched(kite_bus_t *bus, int status, const kite_event_t *ev, void *data);

static void launch(ctx_t *c, unsigned i, const char *user_data) {
  kite_ev_instance_launch_t l = {.provider = "digitalocean",
                                 .pool = 7,
                                 .node = 100 + i,
                                 .rank = i,
                                 .tag = c->tag,
                                 .user_data = user_data,
                                 .options = c->options,
                                 .instance_type = "s-1vcpu-1gb",
                                 .region = "nyc3",
                                 .image = "ubuntu-24-04-x64"};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c->rt), &l, 0, on_launched, &c->in[i], NULL),
      0);
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
    assert_string_equal(l->provider, "digitalocean");
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
    kite_ev_instance_terminate_t t = {.provider = "digitalocean",
                                      .pool = 7,
                                      .node = 100 + i,
                                      .rank = i,
                                      .instance_id = c->in[i].id};
    assert_int_equal(kite_request_instance_terminate(kite_runtime_bus(c->rt), &t, 0, on_terminated,
                                                     &c->in[i], NULL),
                     0);
  }
}

/* Runs cmd on the droplet with OpenSSH, verifying the pinned host key. */
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

/* ---- lifecycle --------------------------------------------------------------------------------
 */

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
    /* The host key kite gave the droplet in its user_data is pinned … */
    assert_non_null(strstr(in->host_key, "ssh-ed25519 "));
    /* … and it is the key the droplet presents: OpenSSH logs in with strict checking. */
    char out[256];
    assert_int_equal(run_ssh(in, "echo hello-from-droplet; echo $KITE_NODE_TAG", out, sizeof(out)),
                     0);
    assert_non_null(strstr(out, "hello-from-droplet"));
  }
  assert_true(kite_local_count_tagged(c->tag) > 0);
  assert_string_not_equal(c->in[0].address, c->in[1].address);
  assert_string_not_equal(c->in[0].host_key, c->in[1].host_key);
  kite_ev_instance_list_t l = {.provider = "digitalocean", .tag = c->tag};
  assert_int_equal(kite_request_instance_list(kite_runtime_bus(c->rt), &l, 0, on_list, c, NULL), 0);
}

static void lifecycle_after_terminate(ctx_t *c) {
  /* Confirmed only once the emulator deleted the droplets and their nodes' processes. */
  c->droplets_before_confirm = sim_count(&c->sim, "droplets");
}

static void test_launch_list_terminate(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "life", NULL, TOKEN);
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
  assert_int_equal(c.droplets_before_confirm, 0);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  /* kite's key was registered once, for both launches. */
  assert_int_equal(sim_count(&c.sim, "keys"), 1);
  assert_int_equal(sim_count(&c.sim, "created"), 2);
  assert_null(strstr(c.log, "kite-user-data-secret-7d1e"));
  ctx_done(&c);
}

/* Launches asked for in the same loop turn, alike, go out as one create with names. */
static void test_alike_launches_are_one_create(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "batch", NULL, TOKEN);
  /* Each droplet's own host key makes each create different: batches are for unpinned ones. */
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"token\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222,"
           "\"pin_host_key\":false}",
           c.sim.url, TOKEN, kite_local_login_user());
  c.n = 4;
  c.after_launch = terminate_all;
  for (unsigned i = 0; i < 4; i++)
    launch(&c, i, "#!/bin/sh\necho same\n");
  kite_runtime_run(c.rt);
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(c.in[i].status, 0);
    assert_true(c.in[i].terminated);
    assert_string_equal(c.in[i].host_key, "");
  }
  char want[128];
  snprintf(want, sizeof(want), "creating 4 droplets tagged %s in one request", c.tag);
  assert_non_null(strstr(c.log, want));
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_int_equal(sim_count(&c.sim, "droplets"), 0);
  ctx_done(&c);
}

/* ---- errors -----------------------------------------------------------------------------------
 */

static void test_bad_token_is_credentials(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "badtok", NULL, "dop_v1_wrong_token_0000");
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "401"));
  assert_non_null(strstr(c.in[0].msg, "DIGITALOCEAN_TOKEN"));
  assert_null(strstr(c.in[0].msg, "wrong_token"));
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

static void test_missing_token_says_where_kite_looked(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("DIGITALOCEAN_TOKEN");
  unsetenv("DIGITALOCEAN_ACCESS_TOKEN");
  unsetenv("XDG_CONFIG_HOME");
  ctx_init(&c, "notok", NULL, TOKEN);
  setenv("HOME", c.home, 1); /* no doctl config there */
  snprintf(c.options, sizeof(c.options), "{\"api_url\":\"%s\"}", c.sim.url);
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  assert_int_equal(c.in[0].status, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "no API token found"));
  assert_non_null(strstr(c.in[0].msg, "DIGITALOCEAN_TOKEN"));
  assert_non_null(strstr(c.in[0].msg, "doctl/config.yaml"));
  assert_int_equal(sim_count(&c.sim, "requests"), 0);
  ctx_done(&c);
}

static void test_doctl_config_token(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("DIGITALOCEAN_TOKEN");
  unsetenv("DIGITALOCEAN_ACCESS_TOKEN");
  ctx_init(&c, "doctl", NULL, TOKEN);
  char path[256];
  snprintf(path, sizeof(path), "%s/doctl", c.home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/doctl/config.yaml", c.home);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "context: default\naccess-token: %s\noutput: text\n", TOKEN);
  fclose(fp);
  setenv("XDG_CONFIG_HOME", c.home, 1);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"ssh_user\":\"%s\","
           "\"ssh_port\":2222}",
           c.sim.url, kite_local_login_user());
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  unsetenv("XDG_CONFIG_HOME");
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

static void test_capacity_error_leaks_nothing(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  const char *flags[] = {"--no-capacity", NULL};
  ctx_init(&c, "cap", flags, TOKEN);
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECAPACITY);
  assert_non_null(strstr(c.in[0].msg, "not available in this region"));
  assert_non_null(strstr(c.in[0].msg, "another region or size"));
  assert_int_equal(sim_count(&c.sim, "droplets"), 0);
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

static void test_droplet_limit_is_capacity(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  const char *flags[] = {"--droplet-limit", "1", NULL};
  ctx_init(&c, "limit", flags, TOKEN);
  c.n = 2;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  launch(&c, 1, NULL);
  kite_runtime_run(c.rt);
  int ok = (c.in[0].status == 0) + (c.in[1].status == 0);
  assert_int_equal(ok, 1);
  inst_t *bad = c.in[0].status ? &c.in[0] : &c.in[1];
  assert_int_equal(bad->status, KITE_ECAPACITY);
  assert_non_null(strstr(bad->msg, "droplet limit"));
  assert_int_equal(sim_count(&c.sim, "droplets"), 0);
  ctx_done(&c);
}

static void test_spot_refused(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "spot", NULL, TOKEN);
  c.n = 1;
  kite_ev_instance_launch_t l = {.provider = "digitalocean",
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

/* ---- faults -----------------------------------------------------------------------------------
 */

static void test_api_faults_no_duplicates(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "faults", NULL, TOKEN);
  /* First the account key's lookup meets a 429 (retried after Retry-After) and a reset (a
   * GET, so retried at once). */
  sim_faults(&c.sim, "{\"next\":[\"429\",\"reset\"]}");
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  /* Now the creates: an answer lost after the droplet was created, a truncated body after
   * it was created, a 500 before, and a slow answer and a reset for what follows. A lost or
   * unreadable create is looked for by tag and name before it is sent again. */
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
  /* Never more droplets than asked for, and each created exactly once. */
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_true(sim_count(&c.sim, "peak") <= 3);
  assert_int_equal(sim_count(&c.sim, "droplets"), 0);
  assert_true(sim_count(&c.sim, "faults_injected") >= 7);
  ctx_done(&c);
}

static void test_random_faults_20_percent(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  const char *flags[] = {"--fault-429", "0.07",          "--fault-500", "0.07",   "--fault-reset",
                         "0.06",        "--retry-after", "0",           "--seed", "42",
                         NULL};
  ctx_init(&c, "rand", flags, TOKEN);
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
  assert_int_equal(sim_count(&c.sim, "droplets"), 0);
  ctx_done(&c);
}

/* ---- preemption and describe ------------------------------------------------------------------
 */

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
    /* First check: running. Now the droplet dies. */
    assert_int_equal(s->state, KITE_PREEMPT_NONE);
    char path[128];
    snprintf(path, sizeof(path), "/_sim/droplets/%s/kill", c->in[0].id);
    json_decref(sim_call(&c->sim, "POST", path, "{\"vanish\":true}"));
    c->preempt_state = -2;
    /* The kill is asynchronous in the emulator: wait until its node is gone and the emulator
     * itself has seen it go (the droplet vanishes from its state then). */
    while (kite_local_count_tagged(c->tag) > 0 || sim_count(&c->sim, "droplets") > 0)
      usleep(20000);
    kite_ev_preempt_check_t q = {
        .provider = "digitalocean", .pool = 7, .node = 100, .instance_id = c->in[0].id};
    assert_int_equal(kite_request_preempt_check(bus, &q, 0, on_preempt, c, NULL), 0);
    return;
  }
  c->preempt_state = s->state;
  kite_ev_instance_describe_t d = {
      .provider = "digitalocean", .node = 100, .instance_id = c->in[0].id};
  assert_int_equal(kite_request_instance_describe(bus, &d, 0, on_describe, c, NULL), 0);
}

static void preempt_after_launch(ctx_t *c) {
  assert_int_equal(c->in[0].status, 0);
  c->preempt_state = -1;
  kite_ev_preempt_check_t q = {
      .provider = "digitalocean", .pool = 7, .node = 100, .instance_id = c->in[0].id};
  assert_int_equal(kite_request_preempt_check(kite_runtime_bus(c->rt), &q, 0, on_preempt, c, NULL),
                   0);
}

static void test_dead_droplet_is_preempted(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "dies", NULL, TOKEN);
  c.n = 1;
  c.after_launch = preempt_after_launch;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.preempt_state, KITE_PREEMPT_GONE);
  assert_int_equal(c.describe_status, 0);
  assert_string_equal(c.describe_state, "terminated");
  /* Terminating a droplet that is already gone is confirmed at once. */
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

/* ---- pools on DigitalOcean ------------------------------------------------------------------ */

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
  p->c->droplets_before_confirm = sim_count(&p->c->sim, "droplets");
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
    /* Rank 1's droplet dies as a reclaimed machine does: the monitors find out, the node is
     * replaced by a new droplet, and the broadcast runs once that is READY. */
    char path[128];
    snprintf(path, sizeof(path), "/_sim/droplets/%s/kill", kite_pool_instance_id(pool, 1));
    json_decref(sim_call(&p->c->sim, "POST", path, NULL));
    return;
  }
  pool_broadcast(p);
}

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
                        .provider = "digitalocean",
                        .nodes = nodes,
                        .region = "nyc3",
                        .instance_type = "s-1vcpu-1gb",
                        .image = "ubuntu-24-04-x64",
                        .provider_options = c->options,
                        .bootstrap = b,
                        .replace = true,
                        .replace_per_minute = 100};
  /* Every droplet's host key is pinned at launch: no trust on first use, also for a
   * replacement that answers on a recycled address. */
  s.hostkey_mode = KITE_HOSTKEY_STRICT;
  s.monitors.health_interval_ms = 300;
  s.monitors.health_timeout_ms = 1000;
  s.monitors.health_failures = 2;
  s.monitors.preempt_interval_ms = 300;
  kite_on_node_replaced(kite_runtime_bus(c->rt), KITE_KEY_ANY, pool_replaced, p, NULL);
  assert_int_equal(kite_pool_open(c->rt, &s, pool_opened, p, &p->pool), 0);
  kite_bootstrap_free(b);
  kite_runtime_run(c->rt);
}

/* A pool of 4 over SSH on droplets: open, broadcast, close; when flags are given the emulator
 * fails a share of the API calls and the pool must still work, with no extra droplet. */
static void pool_of_four(const char *what, const char *const *flags) {
  ctx_t c;
  pctx_t p;
  current = &c;
  ctx_init(&c, what, flags, TOKEN);
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
  /* The pool closed only when the API said every droplet was gone, and by the emulator's own
   * count there never were more droplets than asked for. */
  assert_int_equal(c.droplets_before_confirm, 0);
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_true(sim_count(&c.sim, "peak") <= 4);
  if (flags)
    assert_true(sim_count(&c.sim, "faults_injected") > 0);
  ctx_done(&c);
}

static void test_pool_on_digitalocean(void **state) {
  (void)state;
  pool_of_four("pool", NULL);
}

static void test_pool_with_20_percent_api_faults(void **state) {
  (void)state;
  const char *flags[] = {"--fault-429", "0.07",          "--fault-500", "0.07",   "--fault-reset",
                         "0.06",        "--retry-after", "0",           "--seed", "7",
                         NULL};
  pool_of_four("poolfaults", flags);
}

static void test_pool_replaces_dead_droplet(void **state) {
  (void)state;
  ctx_t c;
  pctx_t p;
  current = &c;
  ctx_init(&c, "repl", NULL, TOKEN);
  pool_run(&c, &p, 2, true);
  assert_int_equal(p.open_status, 0);
  assert_true(p.replaced >= 1);
  assert_int_equal(p.task_status, 0);
  assert_int_equal(p.failed, 0);
  assert_string_equal(p.out[1], "rank=1 of 2 booted\n");
  assert_true(p.closed);
  assert_int_equal(p.close_status, 0);
  assert_int_equal(c.droplets_before_confirm, 0);
  assert_int_equal(sim_count(&c.sim, "created"), 3);
  ctx_done(&c);
}

/* ---- hostile API answers -------------------------------------------------------------------- */

/* A server (a child process, blocking) that answers every request with the next of these. */
static const struct {
  int status;
  const char *body;
} hostile[] = {
    {200, "{}"}, /* the key lookup: "present" */
    {202, "{\"droplet\": {\"id\": \"3164444\"}}"},
    {200, "{\"droplets\": {\"a\": 1}}"},
    {200, "{\"droplets\": [null, 1, \"x\", {\"name\": 5, \"id\": -1}, {\"name\": []}]}"},
    {202, "{\"droplet\": {\"id\": 1e400}}"},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["},
    {202, "{\"droplet\": null, \"links\": 7}"},
    {200, "{\"droplets\": [], \"links\": {\"pages\": {\"next\": \"https://evil.example/v2/x\"}}}"},
    {422, "{\"id\": 5, \"message\": [\"\\u0000\", {}]}"},
    {500, "\xff\xfe\xfd not json at all \x01\x02"},
    {200, "{\"droplet\": {\"id\": 9, \"status\": \"active\", \"networks\": {\"v4\": [{\"type\": "
          "\"public\", \"ip_address\": 7}, \"x\", null]}, \"size\": \"big\"}}"},
    {200, "{\"droplet\": {\"id\": 9, \"status\": 1, \"networks\": []}}"},
    {204, ""},
    {200, "{\"droplets\": [{\"id\": 18446744073709551615, \"name\": \"\"}], \"meta\": null}"},
    {429, "{\"message\": \"slow down\"}"},
    {200, "\"just a string\""},
    {200, "{\"droplet\": {\"id\": 0}}"},
};

static void hostile_serve(int lfd) {
  for (unsigned k = 0;; k++) {
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
    unsigned i = k % (sizeof(hostile) / sizeof(hostile[0]));
    char out[70000];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d X\r\nConnection: close\r\nRetry-After: 0\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     hostile[i].status, strlen(hostile[i].body), hostile[i].body);
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

static void test_hostile_bodies_do_not_crash(void **state) {
  (void)state;
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
    hostile_serve(lfd);
  }
  close(lfd);
  char home[64];
  snprintf(home, sizeof(home), "/tmp/kite-test-do-XXXXXX");
  assert_non_null(mkdtemp(home));
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_OFF};
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  kite_do_provider_options_t po = {.poll_ms = 20,
                                   .backoff_base_ms = 5,
                                   .max_retries = 1,
                                   .active_timeout_ms = 1500,
                                   .delete_timeout_ms = 1500};
  assert_int_equal(kite_do_provider_new(rt, &po, NULL), 0);
  char options[256];
  snprintf(options, sizeof(options), "{\"api_url\":\"http://127.0.0.1:%d\",\"token\":\"%s\"}",
           ntohs(a.sin_port), TOKEN);
  kite_bus_t *bus = kite_runtime_bus(rt);
  unsigned replies = 0, asked = 0;
  for (unsigned i = 0; i < 3; i++, asked++) {
    kite_ev_instance_launch_t l = {.provider = "digitalocean",
                                   .pool = 1,
                                   .node = i,
                                   .rank = i,
                                   .tag = "kite-pool-hostile",
                                   .options = options};
    assert_int_equal(kite_request_instance_launch(bus, &l, 0, on_hostile_reply, &replies, NULL), 0);
  }
  /* Requests without options find the endpoint through the tag and the environment. */
  setenv("KITE_DO_API_URL", options + strlen("{\"api_url\":\""), 1);
  char *q = strchr(getenv("KITE_DO_API_URL"), '"');
  char url[64];
  snprintf(url, sizeof(url), "%.*s", (int)(q - getenv("KITE_DO_API_URL")),
           getenv("KITE_DO_API_URL"));
  setenv("KITE_DO_API_URL", url, 1);
  setenv("DIGITALOCEAN_TOKEN", TOKEN, 1);
  kite_ev_instance_list_t li = {.provider = "digitalocean", .tag = "kite-pool-hostile"};
  assert_int_equal(kite_request_instance_list(bus, &li, 0, on_hostile_reply, &replies, NULL), 0);
  asked++;
  kite_ev_instance_describe_t d = {.provider = "digitalocean", .node = 1, .instance_id = "9"};
  assert_int_equal(kite_request_instance_describe(bus, &d, 0, on_hostile_reply, &replies, NULL), 0);
  asked++;
  kite_ev_preempt_check_t pc = {.provider = "digitalocean", .node = 1, .instance_id = "9"};
  assert_int_equal(kite_request_preempt_check(bus, &pc, 0, on_hostile_reply, &replies, NULL), 0);
  asked++;
  kite_ev_instance_terminate_t t = {.provider = "digitalocean", .instance_id = "9"};
  assert_int_equal(kite_request_instance_terminate(bus, &t, 0, on_hostile_reply, &replies, NULL),
                   0);
  asked++;
  kite_runtime_run(rt);
  unsetenv("KITE_DO_API_URL");
  unsetenv("DIGITALOCEAN_TOKEN");
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

/* ---- the lifecycle through Stoplight Prism -------------------------------------------------- */

/* Prism (npm @stoplight/prism-cli) in proxy mode with --errors between kite and the emulator:
 * any request kite sends or answer the emulator gives that breaks DigitalOcean's OpenAPI
 * description becomes an error, and the lifecycle fails. Skipped when Prism is not installed
 * ($KITE_PRISM, /opt/kite-prism/node_modules/.bin/prism, or prism on the PATH). */
static const char *find_prism(void) {
  static char path[512];
  const char *e = getenv("KITE_PRISM");
  if (e && access(e, X_OK) == 0)
    return e;
  if (access("/opt/kite-prism/node_modules/.bin/prism", X_OK) == 0)
    return "/opt/kite-prism/node_modules/.bin/prism";
  FILE *p = popen("command -v prism 2>/dev/null", "r");
  if (p == NULL)
    return NULL;
  size_t n = fread(path, 1, sizeof(path) - 1, p);
  pclose(p);
  path[n] = '\0';
  path[strcspn(path, "\n")] = '\0';
  return path[0] ? path : NULL;
}

static void test_lifecycle_through_prism(void **state) {
  (void)state;
  const char *prism = find_prism();
  char spec[512];
  snprintf(spec, sizeof(spec), "%s/../shared/specs/digitalocean-v2.yaml",
           getenv("KITE_SOURCE_DIR") ? getenv("KITE_SOURCE_DIR") : ".");
  if (prism == NULL || access(spec, R_OK) != 0) {
    print_message("skipped: Prism or the DigitalOcean spec is not installed\n");
    skip();
  }
  ctx_t c;
  current = &c;
  ctx_init(&c, "prism", NULL, TOKEN);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  bind(fd, (struct sockaddr *)&a, sizeof(a));
  socklen_t al = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &al);
  close(fd);
  int pport = ntohs(a.sin_port);
  char port_s[16], log_path[128];
  snprintf(port_s, sizeof(port_s), "%d", pport);
  snprintf(log_path, sizeof(log_path), "%s/prism.log", c.home);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int lf = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(lf, 1);
    dup2(lf, 2);
    execl(prism, prism, "proxy", spec, c.sim.url, "--errors", "-p", port_s, "-h", "127.0.0.1",
          (char *)NULL);
    _exit(127);
  }
  /* Prism parses a 3 MB description first: wait (test code) until it listens. */
  bool up = false;
  for (int i = 0; i < 600 && !up; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in b = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)pport),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    up = connect(s, (struct sockaddr *)&b, sizeof(b)) == 0;
    close(s);
    if (!up)
      usleep(100000);
  }
  assert_true(up);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"http://127.0.0.1:%d\",\"token\":\"%s\",\"ssh_user\":\"%s\","
           "\"ssh_port\":2222}",
           pport, TOKEN, kite_local_login_user());
  c.n = 2;
  c.after_launch = lifecycle_after_launch;
  c.after_terminate = lifecycle_after_terminate;
  launch(&c, 0, "#!/bin/sh\necho hi\n");
  launch(&c, 1, NULL);
  kite_runtime_run(c.rt);
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  char *plog = NULL;
  FILE *fp = fopen(log_path, "r");
  if (fp) {
    plog = calloc(1, 1 << 20);
    size_t n = fread(plog, 1, (1 << 20) - 1, fp);
    plog[n] = '\0';
    fclose(fp);
  }
  if (c.in[0].status || c.in[1].status || c.list_status)
    print_error("launch: %s | %s\nprism:\n%s\n", c.in[0].msg, c.in[1].msg,
                plog ? plog : "(no log)");
  assert_int_equal(c.in[0].status, 0);
  assert_int_equal(c.in[1].status, 0);
  assert_int_equal(c.list_status, 0);
  assert_int_equal(c.list_count, 2);
  assert_true(c.in[0].terminated && c.in[1].terminated);
  assert_int_equal(c.droplets_before_confirm, 0);
  assert_non_null(plog);
  assert_null(strstr(plog, "Violation"));
  assert_null(strstr(plog, "violation"));
  free(plog);
  ctx_done(&c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_alike_launches_are_one_create),
      cmocka_unit_test(test_bad_token_is_credentials),
      cmocka_unit_test(test_missing_token_says_where_kite_looked),
      cmocka_unit_test(test_doctl_config_token),
      cmocka_unit_test(test_capacity_error_leaks_nothing),
      cmocka_unit_test(test_droplet_limit_is_capacity),
      cmocka_unit_test(test_spot_refused),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_dead_droplet_is_preempted),
      cmocka_unit_test(test_pool_on_digitalocean),
      cmocka_unit_test(test_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_droplet),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
