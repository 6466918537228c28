/* The AWS EC2 provider against kite-cloudsim's EC2 front (a real HTTP server on loopback that
 * verifies every SigV4 signature, and whose instances are real sshd nodes): a spot pool's whole
 * life, the spot interruption notice read on the node through the metadata service, drain and
 * replacement with the work re-run, API faults without duplicate instances, and a wrong secret
 * key refused with AuthFailure's message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"
#include "cloudsim_client.h"

#define AK "AKIAKITETEST00000001"
#define SK "kite/test+secret/wJalrXUtnFEMI/K7MDENG"
#define SIM_TOKEN "cloudsim-test-token-7c1e"
#define IMDS_PORT "8169"
#define MAXR 8

/* ---- the emulator --------------------------------------------------------------------------- */

/* The emulator of the running test, stopped by the teardown when an assertion ended the test
 * before its own sim_stop(). */
static sim_t *running_sim;

static void aws_sim_start(sim_t *s) {
  /* The emulator's EC2 credentials and metadata port come from its environment. */
  setenv("KITE_CLOUDSIM_AWS_ACCESS_KEY_ID", AK, 1);
  setenv("KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY", SK, 1);
  setenv("KITE_CLOUDSIM_IMDS_PORT", IMDS_PORT, 1);
  const char *extra[] = {"--seed", "7", NULL};
  sim_start(s, SIM_TOKEN, extra);
  running_sim = s;
}

static void aws_sim_stop(sim_t *s) {
  running_sim = NULL;
  sim_stop(s);
}

static int teardown(void **state) {
  (void)state;
  if (running_sim) {
    kill(running_sim->pid, SIGTERM);
    waitpid(running_sim->pid, NULL, 0);
    running_sim = NULL;
  }
  return 0;
}

static int ec2_count(sim_t *s, const char *field) {
  return sim_state_count(s, "/_sim/ec2/state", field);
}

/* ---- fixture -------------------------------------------------------------------------------- */


typedef struct ctx {
  sim_t sim;
  kite_runtime_t *rt;
  kite_aws_provider_t *aws;
  kite_pool_t *pool;
  char home[64];
  char name[48];
  char tag[64];
  char options[512];
  unsigned nodes;
  /* outcome */
  int open_status;
  char open_msg[2048];
  bool opened, closed;
  int close_status;
  unsigned bcast_done, bcast_failed;
  unsigned attempts[MAXR];
  char out[MAXR][64];
  unsigned list_count;
  int list_status;
  /* events */
  unsigned preempting, preempted, lost, replaced, draining;
  /* spot notice */
  bool interrupt;
  char interrupted_id[40];
  uv_timer_t interrupt_timer;
  int preempt_state_after;
  char log[1 << 17];
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

static void on_preempting(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_node_preempting_t *p, void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((ctx_t *)data)->preempting++;
}

static void on_preempted(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_preempted_t *p,
                         void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((ctx_t *)data)->preempted++;
}

static void on_lost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                    void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((ctx_t *)data)->lost++;
}

static void on_replaced(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_replaced_t *p,
                        void *data) {
  (void)bus;
  (void)ev;
  assert_string_not_equal(p->old_instance, p->new_instance);
  ((ctx_t *)data)->replaced++;
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_state_changed_t *p,
                     void *data) {
  (void)bus;
  (void)ev;
  if (p->to == KITE_NODE_DRAINING)
    ((ctx_t *)data)->draining++;
}

static void ctx_init(ctx_t *c, const char *what, const char *secret, unsigned page_size) {
  memset(c, 0, sizeof(*c));
  aws_sim_start(&c->sim);
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-aws-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  assert_int_equal(chmod(c->home, 0755), 0);
  snprintf(c->name, sizeof(c->name), "a%d-%s", (int)getpid(), what);
  snprintf(c->tag, sizeof(c->tag), "kite-pool-%s", c->name);
  /* Credentials come from the environment; no file of the user's is read. */
  setenv("AWS_ACCESS_KEY_ID", AK, 1);
  setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
  unsetenv("AWS_SESSION_TOKEN");
  unsetenv("AWS_PROFILE");
  unsetenv("KITE_AWS_ENDPOINT");
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kite-test/credentials", 1);
  setenv("AWS_CONFIG_FILE", "/nonexistent/kite-test/config", 1);
  setenv("AWS_REGION", "us-east-1", 1);
  snprintf(c->options, sizeof(c->options), "{\"endpoint\":\"%s/\",\"ssh_user\":\"%s\"}", c->sim.url,
           kite_local_login_user());
  kite_runtime_options_t o = {.home = c->home, .log_level = KITE_LOG_DEBUG};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  kite_log_set_sink(c->rt, on_log, c);
  kite_aws_provider_options_t po = {.ssh_port = 2222,
                                    .poll_ms = 200,
                                    .backoff_base_ms = 20,
                                    .max_retries = 4,
                                    .page_size = page_size,
                                    .imds_endpoint = "http://{address}:" IMDS_PORT};
  assert_int_equal(kite_aws_provider_new(c->rt, &po, &c->aws), 0);
  assert_int_equal(kite_transport_new(c->rt, NULL, NULL), 0);
  assert_int_equal(kite_bootstrap_runner_new(c->rt, NULL), 0);
  kite_bus_t *bus = kite_runtime_bus(c->rt);
  kite_on_node_preempting(bus, KITE_KEY_ANY, on_preempting, c, NULL);
  kite_on_node_preempted(bus, KITE_KEY_ANY, on_preempted, c, NULL);
  kite_on_node_lost(bus, KITE_KEY_ANY, on_lost, c, NULL);
  kite_on_node_replaced(bus, KITE_KEY_ANY, on_replaced, c, NULL);
  kite_on_node_state_changed(bus, KITE_KEY_ANY, on_state, c, NULL);
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static void ctx_done(ctx_t *c) {
  assert_int_equal(kite_runtime_free(c->rt), 0);
  /* The secret key and the signatures never reached a log line. */
  assert_null(strstr(c->log, SK));
  assert_null(strstr(c->log, "Signature="));
  assert_null(strstr(c->log, "PRIVATE KEY"));
  /* Nothing of the pool runs any more, and kite's own resources in the account are gone. */
  assert_int_equal(ec2_count(&c->sim, "live"), 0);
  assert_int_equal(kite_local_count_tagged(c->tag), 0);
  aws_sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
}

static kite_pool_spec_t spec_of(ctx_t *c, unsigned nodes) {
  kite_pool_spec_t s = {.name = c->name,
                        .provider = "aws",
                        .nodes = nodes,
                        .spot = true,
                        .image = "ami-0kite0test0image",
                        .instance_type = "t3.micro",
                        .region = "us-east-1",
                        .provider_options = c->options,
                        .hostkey_mode = 0 /* strict: only the pinned key is accepted */,
                        .replace = true,
                        .replace_per_minute = 100};
  s.monitors.health_interval_ms = 300;
  s.monitors.health_timeout_ms = 2000;
  s.monitors.health_failures = 2;
  s.monitors.preempt_interval_ms = 300;
  c->nodes = nodes;
  return s;
}

/* ---- pool flow ---------------------------------------------------------------------------- */

static void on_closed(kite_pool_t *pool, int status, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->closed = true;
  c->close_status = status;
  if (c->interrupt) {
    uv_close((uv_handle_t *)&c->interrupt_timer, NULL);
  }
  assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
}

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  ctx_t *c = data;
  (void)pool;
  if (stream != 1 || rank >= MAXR)
    return;
  if (attempt != c->attempts[rank]) {
    c->attempts[rank] = attempt;
    c->out[rank][0] = '\0';
  }
  size_t have = strlen(c->out[rank]);
  if (have + len < sizeof(c->out[rank])) {
    memcpy(c->out[rank] + have, buf, len);
    c->out[rank][have + len] = '\0';
  }
}

static void on_preempt_after(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ctx_t *c = data;
  (void)bus;
  const kite_ev_preempt_status_t *s = kite_ev_as_preempt_status(ev);
  c->preempt_state_after = status == 0 && s ? s->state : -1;
  kite_pool_close(c->pool, on_closed, c);
}

static void on_broadcast(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  assert_int_equal(status, 0);
  c->bcast_done = r->count;
  for (unsigned i = 0; i < r->count; i++) {
    char want[32];
    snprintf(want, sizeof(want), "work %u\n", i);
    if (r->ranks[i].error || r->ranks[i].exit_status || strcmp(c->out[i], want) != 0) {
      print_error("rank %u: %s exit %d attempts %u out '%s' (%s)\n", i,
                  kite_err_name(r->ranks[i].error), r->ranks[i].exit_status, r->ranks[i].attempts,
                  c->out[i], r->ranks[i].message ? r->ranks[i].message : "");
      c->bcast_failed++;
    }
    if (i < MAXR)
      c->attempts[i] = r->ranks[i].attempts;
  }
  if (c->interrupt && c->interrupted_id[0]) {
    /* The interrupted instance, asked about directly: EC2's state reason says spot → GONE. */
    kite_ev_preempt_check_t q = {
        .provider = "aws", .pool = kite_pool_id(pool), .instance_id = c->interrupted_id};
    assert_int_equal(
        kite_request_preempt_check(kite_runtime_bus(c->rt), &q, 0, on_preempt_after, c, NULL), 0);
    return;
  }
  kite_pool_close(pool, on_closed, c);
}

static void on_listed(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ctx_t *c = data;
  (void)bus;
  const kite_ev_instance_listed_t *l = kite_ev_as_instance_listed(ev);
  c->list_status = status;
  c->list_count = l ? l->count : 0;
  kite_cmd_t cmd = {.shell = c->interrupt ? "sleep 5; echo \"work $KITE_NODE_RANK\""
                                          : "echo \"work $KITE_NODE_RANK\""};
  kite_task_opts_t o = {.retries = 3, .timeout_ms = 120000};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, &o, on_output, on_broadcast, c, NULL), 0);
}

static void on_interrupt_timer(uv_timer_t *t) {
  ctx_t *c = t->data;
  const char *id = kite_pool_instance_id(c->pool, 0);
  assert_non_null(id);
  snprintf(c->interrupted_id, sizeof(c->interrupted_id), "%s", id);
  char path[128];
  snprintf(path, sizeof(path), "/_sim/ec2/instances/%s/interrupt", id);
  json_t *j = sim_call(&c->sim, "POST", path, "{\"notice_ms\": 2500}");
  assert_true(json_is_true(json_object_get(j, "ok")));
  json_decref(j);
}

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  ctx_t *c = data;
  c->opened = true;
  c->open_status = status;
  snprintf(c->open_msg, sizeof(c->open_msg), "%s", message ? message : "");
  if (status != 0) {
    kite_pool_close(pool, on_closed, c);
    return;
  }
  if (c->interrupt)
    uv_timer_start(&c->interrupt_timer, on_interrupt_timer, 1500, 0);
  /* List the pool's instances by tag (paginated when page_size is small). */
  kite_ev_instance_list_t l = {.provider = "aws", .tag = c->tag};
  assert_int_equal(kite_request_instance_list(kite_runtime_bus(c->rt), &l, 0, on_listed, c, NULL),
                   0);
}

static void run_pool(ctx_t *c, unsigned nodes) {
  kite_pool_spec_t s = spec_of(c, nodes);
  if (c->interrupt) {
    uv_timer_init(kite_runtime_loop(c->rt), &c->interrupt_timer);
    c->interrupt_timer.data = c;
  }
  assert_int_equal(kite_pool_open(c->rt, &s, on_open, c, &c->pool), 0);
  kite_runtime_run(c->rt);
}

/* ---- tests ---------------------------------------------------------------------------------- */

/* 4 spot nodes → READY over pinned host keys → broadcast → close → zero instances; the key pair
 * and the security group kite created are deleted at stop. */
static void test_lifecycle(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "life", SK, 0);
  run_pool(c, 4);
  if (c->open_status != 0)
    print_error("open: %s\n%s", c->open_msg, c->log);
  assert_int_equal(c->open_status, 0);
  assert_int_equal(c->list_status, 0);
  assert_int_equal(c->list_count, 4);
  assert_int_equal(c->bcast_done, 4);
  assert_int_equal(c->bcast_failed, 0);
  assert_true(c->closed);
  assert_int_equal(c->close_status, 0);
  assert_int_equal(ec2_count(&c->sim, "created"), 4);
  assert_int_equal(ec2_count(&c->sim, "terminated"), 4);
  assert_int_equal(ec2_count(&c->sim, "key_pairs"), 0);
  assert_int_equal(ec2_count(&c->sim, "security_groups"), 0);
  json_t *j = sim_call(&c->sim, "GET", "/_sim/ec2/state", NULL);
  json_t *list = json_object_get(j, "instances");
  size_t i;
  json_t *x;
  json_array_foreach(list, i, x) {
    assert_true(json_is_true(json_object_get(x, "spot")));
    assert_string_equal(json_string_value(json_object_get(x, "pool")), c->tag);
  }
  json_decref(j);
  ctx_done(c);
  free(c);
}

/* A spot interruption: the notice is read on the node from the metadata service (IMDSv2), the
 * node drains, the instance dies with Server.SpotInstanceTermination, the pool replaces it and
 * the broadcast's work on that rank is run again on the replacement. */
static void test_spot_notice_drain_replace(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "spot", SK, 0);
  c->interrupt = true;
  run_pool(c, 2);
  if (c->open_status != 0 || c->bcast_failed)
    print_error("open: %s\n%s", c->open_msg, c->log);
  assert_int_equal(c->open_status, 0);
  assert_int_equal(c->bcast_done, 2);
  assert_int_equal(c->bcast_failed, 0);
  assert_true(c->preempting >= 1); /* the notice, from the node */
  assert_true(c->draining >= 1);   /* the node drained */
  assert_true(c->replaced >= 1);
  assert_true(c->attempts[0] >= 2); /* rank 0's work ran again on the replacement */
  assert_int_equal(c->preempt_state_after, KITE_PREEMPT_GONE);
  assert_int_equal(c->close_status, 0);
  assert_int_equal(ec2_count(&c->sim, "created"), 3);
  ctx_done(c);
  free(c);
}

/* 20% of API calls fail (500s, resets after processing, truncated bodies): the pool still gets
 * READY, the ClientToken keeps every launch to one instance, the list paginates, and close
 * leaves nothing. */
static void test_faults_no_duplicates(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "faults", SK, 5);
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults",
                       "{\"p500\": 0.08, \"reset\": 0.06, \"malformed\": 0.06, \"seed\": 11}"));
  run_pool(c, 6);
  if (c->open_status != 0)
    print_error("open: %s\n%s", c->open_msg, c->log);
  assert_int_equal(c->open_status, 0);
  assert_int_equal(c->list_status, 0);
  assert_int_equal(c->list_count, 6); /* two pages of at most 5 */
  assert_int_equal(c->bcast_failed, 0);
  assert_int_equal(c->close_status, 0);
  assert_int_equal(ec2_count(&c->sim, "created"), 6);
  assert_true(ec2_count(&c->sim, "peak") <= 6);
  json_t *j = sim_call(&c->sim, "GET", "/_sim/state", NULL);
  assert_true(json_integer_value(json_object_get(j, "faults_injected")) > 0);
  json_decref(j);
  ctx_done(c);
  free(c);
}

/* A wrong secret key: EC2 refuses every call with AuthFailure; the pool fails to open with a
 * message that says so and what to check, and nothing is created. */
static void test_wrong_secret(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "badkey", "not-the-right-secret-key", 0);
  run_pool(c, 2);
  assert_true(c->open_status < 0);
  if (strstr(c->open_msg, "AuthFailure") == NULL)
    print_error("open message: %s\n", c->open_msg);
  assert_non_null(strstr(c->open_msg, "AuthFailure"));
  assert_non_null(strstr(c->open_msg, "secret key"));
  assert_null(strstr(c->open_msg, "not-the-right-secret-key"));
  assert_int_equal(ec2_count(&c->sim, "created"), 0);
  ctx_done(c);
  free(c);
}

/* ---- bus level: idempotent launches and error messages ------------------------------------ */

typedef struct steps {
  ctx_t *c;
  int step;
  char first_id[40];
  char second_id[40];
  int err[4];
  char msg[4][1024];
  unsigned terminated;
} steps_t;

static void next_step(steps_t *st);

static void on_step_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  steps_t *st = data;
  (void)bus;
  const kite_ev_instance_launched_t *l = kite_ev_as_instance_launched(ev);
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  switch (st->step) {
  case 0:
    assert_int_equal(status, 0);
    snprintf(st->first_id, sizeof(st->first_id), "%s", l->instance_id);
    assert_non_null(l->host_key);
    assert_int_equal(strncmp(l->host_key, "ssh-ed25519 ", 12), 0);
    break;
  case 1:
    assert_int_equal(status, 0);
    snprintf(st->second_id, sizeof(st->second_id), "%s", l->instance_id);
    break;
  case 2:
  case 3:
  case 4:
    st->err[st->step - 2] = status;
    snprintf(st->msg[st->step - 2], sizeof(st->msg[0]), "%s", e && e->message ? e->message : "");
    break;
  case 5:
  case 6:
    if (status == 0 && kite_ev_as_instance_terminated(ev))
      st->terminated++;
    if (st->step == 5) {
      st->step++; /* the second terminate's reply */
      return;
    }
    break;
  }
  st->step++;
  next_step(st);
}

static void launch(steps_t *st, const char *token, const char *image, const char *options) {
  ctx_t *c = st->c;
  kite_ev_instance_launch_t l = {.provider = "aws",
                                 .pool = 1,
                                 .node = 1,
                                 .rank = 0,
                                 .tag = c->tag,
                                 .region = "us-east-1",
                                 .instance_type = "t3.micro",
                                 .spot = true,
                                 .image = image,
                                 .launch_token = token,
                                 .options = options};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c->rt), &l, 0, on_step_reply, st, NULL), 0);
}

static void next_step(steps_t *st) {
  ctx_t *c = st->c;
  char opts[600];
  switch (st->step) {
  case 0:
  case 1: /* the same launch token twice: one instance */
    launch(st, "kite-pool-x-0-0-1-abc", "ami-0kite0test0image", c->options);
    return;
  case 2:
    launch(st, "kite-pool-x-1-0-1-abc", "ami-0notfound", c->options);
    return;
  case 3:
    snprintf(opts, sizeof(opts), "{\"endpoint\":\"%s/\",\"max_price\":0.0001}", c->sim.url);
    launch(st, "kite-pool-x-2-0-1-abc", "ami-0kite0test0image", opts);
    return;
  case 4:
    json_decref(sim_call(&c->sim, "POST", "/_sim/faults", "{\"no_capacity\": true}"));
    launch(st, "kite-pool-x-3-0-1-abc", "ami-0kite0test0image", c->options);
    return;
  case 5: { /* two terminations of one instance: both confirmed */
    kite_ev_instance_terminate_t t = {
        .provider = "aws", .pool = 1, .node = 1, .instance_id = st->first_id};
    kite_bus_t *bus = kite_runtime_bus(c->rt);
    assert_int_equal(kite_request_instance_terminate(bus, &t, 0, on_step_reply, st, NULL), 0);
    assert_int_equal(kite_request_instance_terminate(bus, &t, 0, on_step_reply, st, NULL), 0);
    return;
  }
  default:
    assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
  }
}

static void test_idempotent_launch_and_errors(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "errors", SK, 0);
  steps_t st = {.c = c};
  next_step(&st);
  kite_runtime_run(c->rt);
  assert_string_equal(st.first_id, st.second_id);
  assert_int_equal(ec2_count(&c->sim, "created"), 1);
  assert_int_equal(st.err[0], KITE_EPROVIDER);
  assert_non_null(strstr(st.msg[0], "InvalidAMIID.NotFound"));
  assert_non_null(strstr(st.msg[0], "per region"));
  assert_int_equal(st.err[1], KITE_EPRICE);
  assert_non_null(strstr(st.msg[1], "SpotMaxPriceTooLow"));
  assert_non_null(strstr(st.msg[1], "max_price"));
  assert_int_equal(st.err[2], KITE_ECAPACITY);
  assert_non_null(strstr(st.msg[2], "InsufficientInstanceCapacity"));
  assert_non_null(strstr(st.msg[2], "another instance type or region"));
  assert_int_equal(st.terminated, 2);
  ctx_done(c);
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_wrong_secret, teardown),
      cmocka_unit_test_teardown(test_idempotent_launch_and_errors, teardown),
      cmocka_unit_test_teardown(test_lifecycle, teardown),
      cmocka_unit_test_teardown(test_spot_notice_drain_replace, teardown),
      cmocka_unit_test_teardown(test_faults_no_duplicates, teardown),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
