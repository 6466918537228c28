/* The bootstrap runner end to end: bootstrap requests on the bus, the script uploaded and run
 * on a real sshd node through the transport component, progress events per step, and the
 * answer: done, a failed step with its output, a timeout, a cancel at shutdown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/local.h"
#include "kite/transport.h"
#include "kite_impl.h"

#define NODE_ID 7
#define RUNNER_TIMEOUT_MS 4000

static struct world {
  uv_loop_t loop;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  char home[64], tag[64];
  char *key_path, *pub_key;
  kite_local_node_t *node;
  bool shut, shutting;
} W;

typedef struct result {
  bool done;
  int status;     /* of the request */
  int boot;       /* bootstrap_done's status */
  char *failed_step, *output, *message;
  unsigned steps; /* progress events seen */
  unsigned last_step, total;
  char names[512];
  bool shutdown_at_sleep;
} result_t;

static void run_until(const bool *flag) {
  while (!*flag)
    uv_run(&W.loop, UV_RUN_ONCE);
}

static void on_flag(kite_runtime_t *rt, int status, void *data) {
  (void)rt;
  assert_int_equal(status, 0);
  *(bool *)data = true;
}

static void on_node(kite_local_node_t *n, int status, void *data) {
  (void)n;
  assert_int_equal(status, 0);
  *(bool *)data = true;
}

static void on_connected(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  (void)bus;
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  if (status != 0)
    fail_msg("connect: %s", e && e->message ? e->message : kite_strerror(status));
  *(bool *)data = true;
}

static int setup(void **state) {
  (void)state;
  snprintf(W.home, sizeof(W.home), "/tmp/kite-test-bootrun-XXXXXX");
  assert_non_null(mkdtemp(W.home));
  chmod(W.home, 0755);
  snprintf(W.tag, sizeof(W.tag), "bootrun-%ld", (long)getpid());
  assert_int_equal(uv_loop_init(&W.loop), 0);
  kite_runtime_options_t o = {.loop = &W.loop, .home = W.home, .log_level = -1};
  assert_int_equal(kite_runtime_new(&W.rt, &o), 0);
  W.bus = kite_runtime_bus(W.rt);
  W.key_path = kite__sprintf("%s/id_ed25519", W.home);
  bool done = false;
  assert_int_equal(kite_keypair_ensure(W.rt, W.key_path, on_flag, &done), 0);
  run_until(&done);
  char *pub = kite__sprintf("%s.pub", W.key_path);
  assert_int_equal(kite__read_file(pub, &W.pub_key, NULL), 0);
  free(pub);
  W.pub_key[strcspn(W.pub_key, "\n")] = '\0';
  kite_local_node_options_t no = {.tag = W.tag, .authorized_key = W.pub_key};
  done = false;
  assert_int_equal(kite_local_node_start(W.rt, &no, on_node, &done, &W.node), 0);
  run_until(&done);
  assert_int_equal(kite_transport_new(W.rt, NULL, NULL), 0);
  kite_bootstrap_runner_options_t ro = {.timeout_ms = RUNNER_TIMEOUT_MS};
  assert_int_equal(kite_bootstrap_runner_new(W.rt, &ro), 0);
  kite_ev_ssh_connect_t c = {.node = NODE_ID, .host = kite_local_node_address(W.node),
                             .port = kite_local_node_port(W.node),
                             .user = kite_local_node_user(W.node), .key_path = W.key_path,
                             .host_key = kite_local_node_host_key(W.node),
                             .hostkey_mode = KITE_HOSTKEY_STRICT, .timeout_ms = 10000};
  done = false;
  assert_int_equal(kite_request_ssh_connect(W.bus, &c, 0, on_connected, &done, NULL), 0);
  run_until(&done);
  return 0;
}

static void on_node_stopped(kite_local_node_t *n, int status, void *data) {
  (void)n;
  (void)status;
  *(bool *)data = true;
}

static void on_shut(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(bool *)data = true;
}

static int teardown(void **state) {
  (void)state;
  bool stopped = false;
  kite_local_node_stop(W.node, on_node_stopped, &stopped);
  if (!W.shutting)
    assert_int_equal(kite_runtime_shutdown(W.rt, on_shut, &W.shut), 0);
  uv_run(&W.loop, UV_RUN_DEFAULT);
  assert_true(W.shut);
  assert_true(stopped);
  assert_int_equal(kite_runtime_free(W.rt), 0);
  assert_int_equal(uv_loop_close(&W.loop), 0);
  assert_int_equal(kite_local_count_tagged(W.tag), 0);
  kite__rm_rf(W.home);
  free(W.key_path);
  free(W.pub_key);
  return 0;
}

static void on_progress(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_bootstrap_progress_t *p, void *data) {
  result_t *r = data;
  (void)ev;
  assert_int_equal(p->node, NODE_ID);
  assert_int_equal(p->rank, 3);
  assert_int_equal(p->step, r->last_step + 1);
  r->steps++;
  r->last_step = p->step;
  r->total = p->total;
  size_t l = strlen(r->names);
  snprintf(r->names + l, sizeof(r->names) - l, "%s|", p->name);
  if (r->shutdown_at_sleep && strcmp(p->name, "sleeps") == 0) {
    W.shutting = true;
    assert_int_equal(kite_runtime_shutdown(W.rt, on_shut, &W.shut), 0);
  }
  (void)bus;
}

static void on_bootstrapped(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  result_t *r = data;
  (void)bus;
  r->done = true;
  r->status = status;
  const kite_ev_bootstrap_done_t *d = kite_ev_as_bootstrap_done(ev);
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  if (d) {
    assert_int_equal(d->node, NODE_ID);
    assert_int_equal(d->rank, 3);
    r->boot = d->status;
    r->failed_step = kite__strdup(d->failed_step);
    r->output = kite__strdup(d->output);
  }
  if (e)
    r->message = kite__strdup(e->message);
}

static void bootstrap(const kite_bootstrap_t *b, result_t *r) {
  char *script = NULL;
  assert_int_equal(kite_bootstrap_render(b, &script, NULL), 0);
  kite_sub_t sub;
  assert_int_equal(kite_on_bootstrap_progress(W.bus, KITE_KEY_ANY, on_progress, r, &sub), 0);
  kite_ev_bootstrap_t req = {.pool = 1, .node = NODE_ID, .rank = 3, .script = script};
  assert_int_equal(kite_request_bootstrap(W.bus, &req, 0, on_bootstrapped, r, NULL), 0);
  free(script);
  run_until(&r->done);
  kite_bus_unsubscribe(W.bus, sub);
}

static void result_free(result_t *r) {
  free(r->failed_step);
  free(r->output);
  free(r->message);
}

static void test_bootstrap_runs_every_step(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_env(b, "GREETING", "it's $(not) run", false), 0);
  assert_int_equal(kite_bootstrap_file(b, "boot/hello.txt", "hello\0bytes", 11, 0600), 0);
  assert_int_equal(kite_bootstrap_checkpoint(b, "halfway"), 0);
  /* Plenty of output on both streams, so markers and output come in many chunks. */
  assert_int_equal(kite_bootstrap_run(b, "chatty",
                                      "i=0; while [ $i -lt 3000 ]; do echo \"out $i\"; "
                                      "echo \"err $i\" >&2; i=$((i+1)); done; "
                                      "printf '%s' \"$GREETING\" > greeting; "
                                      "printf '%s' \"$KITE_NODE_RANK\" > rank"),
                   0);
  for (int round = 0; round < 2; round++) {
    result_t r = {0};
    bootstrap(b, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.boot, 0);
    assert_null(r.failed_step);
    assert_int_equal(r.steps, 4);
    assert_int_equal(r.total, 4);
    assert_string_equal(r.names, "env GREETING|file boot/hello.txt|halfway|chatty|");
    result_free(&r);
  }
  const char *dir = kite_local_node_dir(W.node);
  char *p = kite__sprintf("%s/boot/hello.txt", dir), *data = NULL;
  size_t len = 0;
  assert_int_equal(kite__read_file(p, &data, &len), 0);
  assert_int_equal(len, 11);
  assert_memory_equal(data, "hello\0bytes", 11);
  free(data);
  free(p);
  p = kite__sprintf("%s/greeting", dir);
  assert_int_equal(kite__read_file(p, &data, NULL), 0);
  assert_string_equal(data, "it's $(not) run");
  free(data);
  free(p);
  p = kite__sprintf("%s/rank", dir);
  assert_int_equal(kite__read_file(p, &data, NULL), 0);
  assert_string_equal(data, "3");
  free(data);
  free(p);
  kite_bootstrap_free(b);
}

static void test_failed_step_is_reported_with_its_output(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_run(b, "fine", "echo fine-output"), 0);
  assert_int_equal(kite_bootstrap_run(b, "breaks", "echo on-stdout; echo on-stderr >&2; exit 7"),
                   0);
  assert_int_equal(kite_bootstrap_run(b, "never", "touch never-ran"), 0);
  result_t r = {0};
  bootstrap(b, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.boot, KITE_EBOOTSTRAP);
  assert_string_equal(r.failed_step, "breaks");
  assert_non_null(strstr(r.output, "on-stdout\n"));
  assert_non_null(strstr(r.output, "on-stderr\n"));
  assert_non_null(strstr(r.output, "(exit status 7)"));
  assert_null(strstr(r.output, "fine-output"));
  assert_int_equal(r.steps, 2);
  char *p = kite__sprintf("%s/never-ran", kite_local_node_dir(W.node));
  assert_int_not_equal(access(p, F_OK), 0);
  free(p);
  result_free(&r);
  kite_bootstrap_free(b);
}

static void test_unknown_node_is_an_error(void **state) {
  (void)state;
  result_t r = {0};
  kite_ev_bootstrap_t req = {.pool = 1, .node = 999, .rank = 3, .script = "true\n"};
  assert_int_equal(kite_request_bootstrap(W.bus, &req, 0, on_bootstrapped, &r, NULL), 0);
  run_until(&r.done);
  assert_true(r.status < 0);
  assert_non_null(r.message);
  assert_non_null(strstr(r.message, "bootstrap script"));
  result_free(&r);
}

static void test_timeout_stops_the_script(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_run(b, "sleeps", "echo napping; sleep 60"), 0);
  uint64_t t0 = kite__wall_ms();
  result_t r = {0};
  bootstrap(b, &r);
  uint64_t took = kite__wall_ms() - t0;
  assert_int_equal(r.status, 0);
  assert_int_equal(r.boot, KITE_ETIMEDOUT);
  assert_string_equal(r.failed_step, "sleeps");
  assert_non_null(strstr(r.output, "napping"));
  /* The reply waits for the transport to report the command stopped: its kill takes up to
   * 6 s and it gives up on the channel 10 s after that. */
  if (took < RUNNER_TIMEOUT_MS - 500 || took > RUNNER_TIMEOUT_MS + 30000)
    fail_msg("the timed-out bootstrap was answered after %llu ms", (unsigned long long)took);
  result_free(&r);
  kite_bootstrap_free(b);
}

/* Last: shuts the runtime down while a script runs; the request is answered ECANCELED. */
static void test_shutdown_cancels_a_running_bootstrap(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_run(b, "sleeps", "sleep 60"), 0);
  result_t r = {.shutdown_at_sleep = true};
  bootstrap(b, &r);
  assert_int_equal(r.status, KITE_ECANCELED);
  assert_non_null(r.message);
  result_free(&r);
  kite_bootstrap_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bootstrap_runs_every_step),
      cmocka_unit_test(test_failed_step_is_reported_with_its_output),
      cmocka_unit_test(test_unknown_node_is_an_error),
      cmocka_unit_test(test_timeout_stops_the_script),
      cmocka_unit_test(test_shutdown_cancels_a_running_bootstrap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
