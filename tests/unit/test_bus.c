/* The event bus: ordering, keyed routing, (un)subscribe during dispatch, requests, timeouts,
 * back-pressure, JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kite/kite.h"

typedef struct fixture {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  char home[64];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  snprintf(f->home, sizeof(f->home), "/tmp/kite-test-bus-XXXXXX");
  assert_non_null(mkdtemp(f->home));
  kite_runtime_options_t o = {.home = f->home, .log_level = KITE_LOG_ERROR,
                              .bus_queue_bytes = 64 * 1024};
  assert_int_equal(kite_runtime_new(&f->rt, &o), 0);
  f->bus = kite_runtime_bus(f->rt);
  *state = f;
  return 0;
}

static void on_shut(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(int *)data += 1;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  int done = 0;
  assert_int_equal(kite_runtime_shutdown(f->rt, on_shut, &done), 0);
  kite_runtime_run(f->rt);
  assert_int_equal(done, 1);
  assert_int_equal(kite_runtime_free(f->rt), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->home);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

/* ---- ordering and queueing ---- */

typedef struct rec {
  uint64_t seen[64];
  int n;
  int in_emit;
  kite_bus_t *bus;
  kite_sub_t sub, other;
} rec_t;

static void rec_metric(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_metric_t *p,
                       void *data) {
  rec_t *r = data;
  (void)bus;
  (void)ev;
  assert_int_equal(r->in_emit, 0);
  if (r->n < 64)
    r->seen[r->n++] = (uint64_t)p->value;
}

static void test_fifo_and_queued(void **state) {
  fixture_t *f = *state;
  rec_t r = {0};
  assert_int_equal(kite_on_metric(f->bus, KITE_KEY_ANY, rec_metric, &r, NULL), 0);
  for (int i = 0; i < 20; i++) {
    kite_ev_metric_t m = {.node = (uint64_t)(i % 3), .name = "x", .value = i};
    r.in_emit = 1;
    assert_int_equal(kite_emit_metric(f->bus, &m), 0);
    r.in_emit = 0;
  }
  assert_int_equal(r.n, 0); /* nothing delivered inside emit */
  kite_runtime_run(f->rt);
  assert_int_equal(r.n, 20);
  for (int i = 0; i < 20; i++)
    assert_int_equal(r.seen[i], i);
}

static void test_strings_copied(void **state) {
  fixture_t *f = *state;
  char name[16] = "before";
  rec_t r = {0};
  kite_ev_metric_t m = {.node = 1, .name = name, .value = 7};
  assert_int_equal(kite_emit_metric(f->bus, &m), 0);
  strcpy(name, "after!");
  (void)r;
  /* A generic subscriber checks the string it sees. */
  kite_runtime_run(f->rt); /* delivered to nobody; now check a delivered one */
  static char seen[16];
  void check(kite_bus_t *, const kite_event_t *, const kite_ev_metric_t *, void *);
  strcpy(name, "copy-me");
  assert_int_equal(kite_on_metric(f->bus, 1, (kite_on_metric_fn)check, seen, NULL), 0);
  assert_int_equal(kite_emit_metric(f->bus, &m), 0);
  strcpy(name, "changed");
  kite_runtime_run(f->rt);
  assert_string_equal(seen, "copy-me");
}

void check(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_metric_t *p, void *data) {
  (void)bus;
  (void)ev;
  strcpy((char *)data, p->name);
}

/* ---- keyed routing ---- */

static void count_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                     void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  (*(int *)data)++;
}

static void test_keyed_routing(void **state) {
  fixture_t *f = *state;
  int c1 = 0, c2 = 0, any = 0;
  assert_int_equal(kite_on_node_lost(f->bus, 1, count_cb, &c1, NULL), 0);
  assert_int_equal(kite_on_node_lost(f->bus, 2, count_cb, &c2, NULL), 0);
  assert_int_equal(kite_on_node_lost(f->bus, KITE_KEY_ANY, count_cb, &any, NULL), 0);
  kite_ev_node_lost_t a = {.pool = 1, .rank = 0, .reason = "r"};
  kite_ev_node_lost_t b = {.pool = 2, .rank = 0, .reason = "r"};
  kite_ev_node_lost_t c = {.pool = 3, .rank = 0, .reason = "r"};
  kite_emit_node_lost(f->bus, &a);
  kite_emit_node_lost(f->bus, &a);
  kite_emit_node_lost(f->bus, &b);
  kite_emit_node_lost(f->bus, &c);
  kite_runtime_run(f->rt);
  assert_int_equal(c1, 2);
  assert_int_equal(c2, 1);
  assert_int_equal(any, 4);
}

static void test_string_key(void **state) {
  fixture_t *f = *state;
  assert_int_not_equal(kite_key_str("local"), kite_key_str("aws"));
  assert_int_not_equal(kite_key_str("local"), KITE_KEY_ANY);
  assert_int_equal(kite_key_str("local"), kite_key_str("local"));
  (void)f;
}

/* ---- (un)subscribe during dispatch ---- */

typedef struct dyn {
  kite_bus_t *bus;
  kite_sub_t self, victim, added;
  int self_calls, victim_calls, added_calls;
} dyn_t;

static void victim_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_log_t *p,
                      void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((dyn_t *)data)->victim_calls++;
}

static void added_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_log_t *p,
                     void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((dyn_t *)data)->added_calls++;
}

static void self_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_log_t *p, void *data) {
  dyn_t *d = data;
  (void)ev;
  (void)p;
  d->self_calls++;
  if (d->self_calls == 1) {
    kite_bus_unsubscribe(bus, d->victim);      /* registered after us: must not be called */
    kite_bus_unsubscribe(bus, d->self);        /* ourselves */
    kite_on_log(bus, KITE_KEY_ANY, added_cb, d, &d->added); /* must not see this event */
  }
}

static void test_unsubscribe_during_dispatch(void **state) {
  fixture_t *f = *state;
  dyn_t d = {.bus = f->bus};
  assert_int_equal(kite_on_log(f->bus, KITE_KEY_ANY, self_cb, &d, &d.self), 0);
  assert_int_equal(kite_on_log(f->bus, KITE_KEY_ANY, victim_cb, &d, &d.victim), 0);
  kite_ev_log_t l = {.level = 1, .component = "t", .message = "m"};
  kite_emit_log(f->bus, &l);
  kite_emit_log(f->bus, &l);
  kite_runtime_run(f->rt);
  assert_int_equal(d.self_calls, 1);
  assert_int_equal(d.victim_calls, 0);
  assert_int_equal(d.added_calls, 1); /* only the second event */
  kite_bus_unsubscribe(f->bus, d.added);
  kite_bus_unsubscribe(f->bus, d.added); /* idempotent */
}

/* ---- requests ---- */

typedef struct req {
  int calls;
  int status;
  char msg[256];
  uint32_t rank;
  uint64_t corr;
} req_t;

static void on_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  req_t *r = data;
  (void)bus;
  r->calls++;
  r->status = status;
  if (status == 0) {
    const kite_ev_instance_launched_t *p = kite_ev_as_instance_launched(ev);
    assert_non_null(p);
    r->rank = p->rank;
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    assert_non_null(e);
    assert_int_equal(e->code, status);
    snprintf(r->msg, sizeof(r->msg), "%s", e->message ? e->message : "");
  }
}

static void launcher(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                     void *data) {
  (void)data;
  kite_ev_instance_launched_t out = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                     .provider = p->provider, .instance_id = "i-1"};
  assert_int_equal(kite_reply_instance_launched(bus, ev->corr, &out), 0);
}

static void test_request_reply(void **state) {
  fixture_t *f = *state;
  req_t r = {0};
  int seen_by_subscriber = 0;
  assert_int_equal(kite_respond_instance_launch(f->bus, kite_key_str("local"), launcher, NULL,
                                                NULL), 0);
  /* A second responder for the same (type, key) is refused. */
  assert_int_equal(kite_respond_instance_launch(f->bus, kite_key_str("local"), launcher, NULL,
                                                NULL), KITE_EEXIST);
  void fact_cb(kite_bus_t *, const kite_event_t *, const kite_ev_instance_launched_t *, void *);
  kite_on_instance_launched(f->bus, KITE_KEY_ANY, fact_cb, &seen_by_subscriber, NULL);
  kite_ev_instance_launch_t l = {.provider = "local", .pool = 9, .rank = 5};
  assert_int_equal(kite_request_instance_launch(f->bus, &l, 0, on_reply, &r, &r.corr), 0);
  assert_int_equal(r.calls, 0);
  kite_runtime_run(f->rt);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.rank, 5);
  assert_int_equal(seen_by_subscriber, 1);
}

void fact_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launched_t *p,
             void *data) {
  (void)bus;
  (void)p;
  assert_int_not_equal(ev->corr, 0);
  (*(int *)data)++;
}

static void test_request_no_responder(void **state) {
  fixture_t *f = *state;
  req_t r = {0};
  kite_ev_instance_launch_t l = {.provider = "nowhere", .rank = 1};
  assert_int_equal(kite_request_instance_launch(f->bus, &l, 0, on_reply, &r, NULL), 0);
  assert_int_equal(r.calls, 0); /* asynchronous */
  kite_runtime_run(f->rt);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, KITE_ENORESPONDER);
  assert_non_null(strstr(r.msg, "instance_launch"));
}

static void silent(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_preempt_check_t *p,
                   void *data) {
  (void)bus;
  (void)p;
  *(uint64_t *)data = ev->corr; /* never answers now */
}

static void test_request_timeout_and_late_reply(void **state) {
  fixture_t *f = *state;
  req_t r = {0};
  uint64_t corr = 0;
  int late = 0;
  void late_cb(kite_bus_t *, const kite_event_t *, const kite_ev_preempt_status_t *, void *);
  kite_respond_preempt_check(f->bus, KITE_KEY_ANY, silent, &corr, NULL);
  kite_on_preempt_status(f->bus, KITE_KEY_ANY, late_cb, &late, NULL);
  kite_ev_preempt_check_t c = {.provider = "p", .node = 3};
  uint64_t t0 = uv_now(kite_runtime_loop(f->rt));
  assert_int_equal(kite_request_preempt_check(f->bus, &c, 50, (kite_reply_fn)on_reply, &r, NULL),
                   0);
  kite_runtime_run(f->rt);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, KITE_ETIMEDOUT);
  assert_true(uv_now(kite_runtime_loop(f->rt)) - t0 >= 50);
  assert_int_not_equal(corr, 0);
  /* The late reply does not call the requester again, but subscribers still get the fact. */
  kite_ev_preempt_status_t st = {.provider = "p", .node = 3, .state = 0};
  assert_int_equal(kite_reply_preempt_status(f->bus, corr, &st), 0);
  kite_runtime_run(f->rt);
  assert_int_equal(r.calls, 1);
  assert_int_equal(late, 1);
}

void late_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_preempt_status_t *p,
             void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  (*(int *)data)++;
}

static void test_request_cancel(void **state) {
  fixture_t *f = *state;
  req_t r = {0};
  uint64_t corr = 0, seen = 0;
  kite_respond_preempt_check(f->bus, KITE_KEY_ANY, silent, &seen, NULL);
  kite_ev_preempt_check_t c = {.provider = "p", .node = 3};
  assert_int_equal(kite_request_preempt_check(f->bus, &c, 0, (kite_reply_fn)on_reply, &r, &corr),
                   0);
  assert_int_equal(kite_bus_cancel(f->bus, corr), 0);
  assert_int_equal(r.calls, 0);
  kite_runtime_run(f->rt);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, KITE_ECANCELED);
}

static void test_emit_request_refused(void **state) {
  fixture_t *f = *state;
  kite_ev_shutdown_t s = {.reason = "x"};
  assert_int_equal(kite_bus_emit(f->bus, KITE_EV_SHUTDOWN, &s), KITE_EINVAL);
}

/* ---- back-pressure ---- */

static void on_space(kite_bus_t *bus, void *data) {
  (void)bus;
  (*(int *)data)++;
}

static void out_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_output_t *p,
                   void *data) {
  (void)bus;
  (void)ev;
  *(size_t *)data += p->data.len;
}

static void test_backpressure(void **state) {
  fixture_t *f = *state;
  char chunk[4096];
  memset(chunk, 'a', sizeof(chunk));
  size_t got = 0;
  kite_on_task_output(f->bus, 7, out_cb, &got, NULL);
  kite_ev_task_output_t o = {.task = 7, .stream = 1, .data = {chunk, sizeof(chunk)}};
  int accepted = 0, rc;
  while ((rc = kite_emit_task_output(f->bus, &o)) == 0)
    accepted++;
  assert_int_equal(rc, KITE_EAGAIN);
  assert_true(accepted >= 10); /* 64 KiB queue, 4 KiB chunks */
  assert_true(kite_bus_queued_bytes(f->bus) <= kite_bus_capacity(f->bus));
  /* Facts are never refused: they overflow, in order. */
  rec_t r = {0};
  kite_on_metric(f->bus, KITE_KEY_ANY, rec_metric, &r, NULL);
  for (int i = 0; i < 5; i++) {
    kite_ev_metric_t m = {.name = "after", .value = i};
    assert_int_equal(kite_emit_metric(f->bus, &m), 0);
  }
  assert_true(kite_bus_queued_bytes(f->bus) > kite_bus_capacity(f->bus) - 8192);
  int woken = 0;
  kite_bus_waiter_t w = {.cb = on_space, .data = &woken};
  kite_bus_wait_space(f->bus, &w);
  kite_runtime_run(f->rt);
  assert_int_equal(woken, 1);
  assert_int_equal(got, (size_t)accepted * sizeof(chunk));
  assert_int_equal(r.n, 5);
  for (int i = 0; i < 5; i++)
    assert_int_equal(r.seen[i], i);
  assert_int_equal(kite_bus_queued_bytes(f->bus), 0);
  /* A bulk event larger than half the queue is refused outright. */
  static char big[40000];
  kite_ev_task_output_t b = {.task = 7, .data = {big, sizeof(big)}};
  assert_int_equal(kite_emit_task_output(f->bus, &b), KITE_E2BIG);
}

/* Many events through a small ring: wrap-around keeps order and content. */
static void seq_cb(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_output_t *p,
                   void *data) {
  uint64_t *next = data;
  (void)bus;
  (void)ev;
  char want[64];
  int n = snprintf(want, sizeof(want), "chunk-%llu-", (unsigned long long)*next);
  assert_int_equal(p->data.len >= (size_t)n, 1);
  assert_memory_equal(p->data.ptr, want, (size_t)n);
  (*next)++;
}

static void test_ring_wraparound(void **state) {
  fixture_t *f = *state;
  uint64_t next = 0, sent = 0;
  kite_on_task_output(f->bus, 9, seq_cb, &next, NULL);
  char buf[3000];
  for (int round = 0; round < 200; round++) {
    for (int k = 0; k < 7; k++) {
      int n = snprintf(buf, sizeof(buf), "chunk-%llu-", (unsigned long long)sent);
      size_t len = (size_t)n + (size_t)((sent * 7919) % 2000);
      memset(buf + n, 'z', len - (size_t)n);
      kite_ev_task_output_t o = {.task = 9, .data = {buf, len}};
      if (kite_emit_task_output(f->bus, &o) == 0)
        sent++;
    }
    kite_bus_drain(f->bus, 3);
  }
  kite_runtime_run(f->rt);
  assert_int_equal(next, sent);
  assert_true(sent > 600);
}

/* ---- JSON ---- */

static void test_json_every_type(void **state) {
  fixture_t *f = *state;
  assert_int_equal(kite_secret_add(f->rt, "hunter2-secret"), 0);
  unsigned char payload[512];
  memset(payload, 0, sizeof(payload));
  for (int t = 0; t < KITE_EV__COUNT; t++) {
    const char *name = kite_event_name(t);
    assert_non_null(name);
    assert_int_equal(kite_event_type_from_name(name), t);
    kite_event_t ev = {.type = t, .seq = 42, .ts_ms = 1000, .key = 0, .payload = payload};
    char *line = kite_event_to_json(f->bus, &ev);
    assert_non_null(line);
    json_error_t err;
    json_t *j = json_loads(line, 0, &err);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "v")), KITE_EVENT_JSON_VERSION);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 42);
    assert_string_equal(json_string_value(json_object_get(j, "type")), name);
    assert_true(json_is_object(json_object_get(j, "data")));
    json_decref(j);
    free(line);
  }
  /* Bytes are base64, secrets are redacted in strings and bytes, bad UTF-8 is repaired. */
  const char out[] = "pw=hunter2-secret\xff";
  kite_ev_task_output_t o = {.task = 1, .rank = 2, .stream = 1, .data = {out, sizeof(out) - 1}};
  kite_event_t ev = {.type = KITE_EV_TASK_OUTPUT, .seq = 1, .key = 1, .payload = &o};
  char *line = kite_event_to_json(f->bus, &ev);
  assert_null(strstr(line, "hunter2"));
  json_t *j = json_loads(line, 0, NULL);
  const char *b64 = json_string_value(json_object_get(json_object_get(j, "data"), "data"));
  assert_string_equal(b64, "cHc9W1JFREFDVEVEXf8="); /* base64("pw=[REDACTED]\xff") */
  json_decref(j);
  free(line);
  kite_ev_node_state_changed_t s = {.pool = 1, .rank = 3, .from = KITE_NODE_BOOTSTRAPPING,
                                    .to = KITE_NODE_READY, .reason = "bad \xc3 utf8 hunter2-secret"};
  kite_event_t ev2 = {.type = KITE_EV_NODE_STATE_CHANGED, .seq = 2, .payload = &s};
  line = kite_event_to_json(f->bus, &ev2);
  j = json_loads(line, 0, NULL);
  assert_non_null(j);
  json_t *d = json_object_get(j, "data");
  assert_string_equal(json_string_value(json_object_get(d, "from")), "BOOTSTRAPPING");
  assert_string_equal(json_string_value(json_object_get(d, "to")), "READY");
  assert_string_equal(json_string_value(json_object_get(d, "reason")),
                      "bad \xef\xbf\xbd utf8 [REDACTED]");
  assert_string_equal(json_string_value(json_object_get(j, "key")), "1");
  json_decref(j);
  free(line);
}

static void test_json_sink(void **state) {
  fixture_t *f = *state;
  char *buf = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&buf, &len);
  kite_sub_t sub;
  assert_int_equal(kite_bus_json_sink(f->bus, fp, &sub), 0);
  kite_ev_instance_launch_t l = {.provider = "local", .rank = 1, .user_data = "tok-ABCDEFG"};
  kite_secret_add(f->rt, "tok-ABCDEFG");
  req_t r = {0};
  kite_request_instance_launch(f->bus, &l, 0, on_reply, &r, NULL);
  kite_runtime_run(f->rt);
  kite_bus_unsubscribe(f->bus, sub);
  fclose(fp);
  /* Two lines: the request, then the error reply (nobody answers). */
  int lines = 0;
  for (size_t i = 0; i < len; i++)
    lines += buf[i] == '\n';
  assert_int_equal(lines, 2);
  assert_non_null(strstr(buf, "\"type\":\"instance_launch\""));
  assert_non_null(strstr(buf, "\"key\":\"local\""));
  assert_non_null(strstr(buf, "\"type\":\"reply_error\""));
  assert_null(strstr(buf, "tok-ABCDEFG"));
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_fifo_and_queued, setup, teardown),
      cmocka_unit_test_setup_teardown(test_strings_copied, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keyed_routing, setup, teardown),
      cmocka_unit_test_setup_teardown(test_string_key, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unsubscribe_during_dispatch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_no_responder, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_timeout_and_late_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(test_request_cancel, setup, teardown),
      cmocka_unit_test_setup_teardown(test_emit_request_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ring_wraparound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_every_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_sink, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
