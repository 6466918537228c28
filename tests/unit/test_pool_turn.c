/* The pool against a provider and a transport that answer at once (a fake component in this
 * file), so that whole chains of node changes happen inside one drain of the bus, before the
 * pool's turn: what the pool decides must be what it would have decided inside each change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite_impl.h"

#define FAKE "turnfake"
#define MAXN 64

typedef struct fake {
  kite_component_t comp;
  kite_bus_t *bus;
  kite_sub_t subs[6];
  unsigned launched, terminated, execs;
  char hang_instance[32]; /* an exec on this instance is never answered */
  char instance[MAXN][32];
} fake_t;

static void on_launch(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                      void *data) {
  fake_t *f = data;
  assert_true(p->rank < MAXN);
  snprintf(f->instance[p->rank], sizeof(f->instance[p->rank]), "fake-%u-%u", p->rank,
           f->launched++);
  kite_ev_instance_launched_t l = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                   .provider = FAKE, .instance_id = f->instance[p->rank],
                                   .address = "127.0.0.1", .port = 22, .user = "t", .tag = p->tag};
  kite_reply_instance_launched(bus, ev->corr, &l);
}

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  fake_t *f = data;
  f->terminated++;
  kite_ev_instance_terminated_t t = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                     .provider = FAKE, .instance_id = p->instance_id};
  kite_reply_instance_terminated(bus, ev->corr, &t);
}

static void on_connect(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_connect_t *p,
                       void *data) {
  (void)data;
  kite_ev_session_ready_t s = {.node = p->node, .host = p->host, .port = p->port};
  kite_reply_session_ready(bus, ev->corr, &s);
}

static void on_disconnect(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_ssh_disconnect_t *p, void *data) {
  (void)data;
  kite_ev_session_closed_t c = {.node = p->node};
  kite_reply_session_closed(bus, ev->corr, &c);
}

static void on_exec(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_exec_t *p,
                    void *data) {
  fake_t *f = data;
  f->execs++;
  if (p->rank < MAXN && strcmp(f->instance[p->rank], f->hang_instance) == 0)
    return; /* runs until it is canceled */
  kite_ev_task_finished_t t = {.pool = p->pool, .node = p->node, .task = p->task,
                               .rank = p->rank, .attempt = p->attempt, .exit_status = 0};
  kite_reply_task_finished(bus, ev->corr, &t);
}

static void on_cancel(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_cancel_t *p,
                      void *data) {
  (void)p;
  (void)data;
  kite_bus_reply_error(bus, ev->corr, KITE_ENOENT, "nothing runs");
}

static int fake_start(kite_component_t *c, kite_runtime_t *rt) {
  fake_t *f = kite_container_of(c, fake_t, comp);
  f->bus = kite_runtime_bus(rt);
  kite_key_t key = kite_key_str(FAKE);
  int rc = kite_respond_instance_launch(f->bus, key, on_launch, f, &f->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(f->bus, key, on_terminate, f, &f->subs[1]);
  if (rc == 0)
    rc = kite_respond_ssh_connect(f->bus, KITE_KEY_ANY, on_connect, f, &f->subs[2]);
  if (rc == 0)
    rc = kite_respond_ssh_disconnect(f->bus, KITE_KEY_ANY, on_disconnect, f, &f->subs[3]);
  if (rc == 0)
    rc = kite_respond_ssh_exec(f->bus, KITE_KEY_ANY, on_exec, f, &f->subs[4]);
  if (rc == 0)
    rc = kite_respond_ssh_cancel(f->bus, KITE_KEY_ANY, on_cancel, f, &f->subs[5]);
  return rc;
}

static void fake_stop(kite_component_t *c, kite_component_stopped_fn done) {
  fake_t *f = kite_container_of(c, fake_t, comp);
  for (size_t k = 0; k < KITE_ARRAY_SIZE(f->subs); k++)
    kite_bus_unsubscribe(f->bus, f->subs[k]);
  done(c);
}

/* ---- the context ------------------------------------------------------------------------ */

typedef struct ctx {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  fake_t fake;
  kite_pool_t *pool;
  char home[64];
  char name[48];
  unsigned nodes;
  /* the order things happened in: every event's sequence number */
  uint64_t seq;
  uint64_t ready_seq[MAXN], terminated_seq[MAXN];
  uint64_t pool_ready_seq, open_seq, close_seq;
  unsigned pool_ready_ready;
  int open_calls, open_status, close_calls, close_status;
  unsigned ready_at_open;
  int task_calls;
  kite_rank_result_t res;
  unsigned retries;
  unsigned replaced;
} ctx_t;

static void on_any(kite_bus_t *bus, const kite_event_t *ev, const void *payload, void *data) {
  ctx_t *c = data;
  (void)bus;
  c->seq++;
  if (ev->type == KITE_EV_NODE_STATE_CHANGED) {
    const kite_ev_node_state_changed_t *s = payload;
    if (s->to == KITE_NODE_READY && s->rank < MAXN)
      c->ready_seq[s->rank] = c->seq;
    if (s->to == KITE_NODE_TERMINATED && s->rank < MAXN)
      c->terminated_seq[s->rank] = c->seq;
  } else if (ev->type == KITE_EV_POOL_READY) {
    const kite_ev_pool_ready_t *r = payload;
    c->pool_ready_seq = c->seq;
    c->pool_ready_ready = r->ready;
  } else if (ev->type == KITE_EV_NODE_REPLACED) {
    c->replaced++;
  }
}

static void ctx_init(ctx_t *c, const char *what) {
  memset(c, 0, sizeof(*c));
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-turn-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  snprintf(c->name, sizeof(c->name), "t%d-%s", (int)getpid(), what);
  kite_runtime_options_t o = {.home = c->home, .log_level = KITE_LOG_ERROR};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  c->bus = kite_runtime_bus(c->rt);
  c->fake.comp = (kite_component_t){.name = FAKE, .tier = KITE_TIER_PROVIDER,
                                    .start = fake_start, .stop = fake_stop};
  assert_int_equal(kite_runtime_add(c->rt, &c->fake.comp), 0);
  assert_int_equal(kite_bus_subscribe_all(c->bus, on_any, c, NULL), 0);
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static void ctx_done(ctx_t *c) {
  assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
  kite_runtime_run(c->rt);
  assert_int_equal(kite_runtime_free(c->rt), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
}

static kite_pool_spec_t spec_of(ctx_t *c, unsigned nodes) {
  c->nodes = nodes;
  kite_pool_spec_t s = {.name = c->name, .provider = FAKE, .nodes = nodes, .deadman_off = true,
                        .monitors_off = true};
  return s;
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->close_calls++;
  c->close_status = status;
  c->close_seq = c->seq;
}

static void on_open_close(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  (void)msg;
  c->open_calls++;
  c->open_status = status;
  c->open_seq = c->seq;
  c->ready_at_open = kite_pool_ready_count(pool);
  kite_pool_close(pool, on_closed, c);
}

/* ---- open and close: the order of events -------------------------------------------------- */

static void test_open_close_order(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "order");
  kite_pool_spec_t s = spec_of(&c, MAXN);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open_close, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_calls, 1);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(c.ready_at_open, MAXN);
  assert_int_equal(c.pool_ready_ready, MAXN);
  assert_int_equal(c.close_calls, 1);
  assert_int_equal(c.close_status, 0);
  assert_int_equal(c.fake.launched, MAXN);
  assert_int_equal(c.fake.terminated, MAXN);
  /* Every rank's READY before pool_ready, pool_ready before the open callback; every rank
   * TERMINATED before the close callback. */
  for (unsigned r = 0; r < MAXN; r++) {
    assert_true(c.ready_seq[r] > 0 && c.ready_seq[r] < c.pool_ready_seq);
    assert_true(c.terminated_seq[r] > 0 && c.terminated_seq[r] <= c.close_seq);
  }
  assert_true(c.pool_ready_seq <= c.open_seq);
  ctx_done(&c);
}

/* min_nodes of 8 nodes READY: pool_ready says how many were READY when the pool became usable,
 * even when the rest became READY in the same loop turn. */
static void test_min_nodes_ready_count(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "min");
  kite_pool_spec_t s = spec_of(&c, 8);
  s.min_nodes = 3;
  assert_int_equal(kite_pool_open(c.rt, &s, on_open_close, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(c.pool_ready_ready, 3);
  assert_int_equal(c.close_status, 0);
  assert_int_equal(c.fake.terminated, 8);
  ctx_done(&c);
}

/* ---- a node lost and back READY within one turn, under a running command ------------------- */

static void on_task(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  c->task_calls++;
  assert_int_equal(status, 0);
  assert_int_equal(r->count, 1);
  c->res = r->ranks[0];
  c->res.message = NULL;
  c->res.signal = NULL;
  kite_pool_close(pool, on_closed, c);
}

static void run_then_lose(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  (void)msg;
  c->open_calls++;
  c->open_status = status;
  if (status != 0) {
    kite_pool_close(pool, on_closed, c);
    return;
  }
  /* The command on rank 0 never ends by itself; the fake's replacement is instant, so rank 0
   * is READY again on a new instance before the pool's next turn. */
  snprintf(c->fake.hang_instance, sizeof(c->fake.hang_instance), "%s",
           kite_pool_instance_id(pool, 0));
  kite_cmd_t cmd = {.shell = "sleep 1000"};
  kite_task_opts_t o = {.retries = c->retries};
  assert_int_equal(kite_pool_run(pool, 0, &cmd, &o, NULL, on_task, c, NULL), 0);
  kite_ev_node_lost_t l = {.pool = kite_pool_id(pool), .node = kite_pool_node_id(pool, 0),
                           .rank = 0, .reason = "lost in the test"};
  assert_int_equal(kite_emit_node_lost(c->bus, &l), 0);
}

static void lost_under_command(unsigned retries) {
  ctx_t c;
  ctx_init(&c, retries ? "lostretry" : "lost");
  c.retries = retries;
  kite_pool_spec_t s = spec_of(&c, 2);
  s.replace = true;
  assert_int_equal(kite_pool_open(c.rt, &s, run_then_lose, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(c.replaced, 1);
  assert_int_equal(c.task_calls, 1);
  if (retries) {
    /* Re-run on the replacement, where it ends. */
    assert_int_equal(c.res.error, 0);
    assert_int_equal(c.res.exit_status, 0);
    assert_int_equal(c.res.attempts, 2);
  } else {
    /* The node was lost under it: not "canceled", although the node is READY again. */
    assert_int_equal(c.res.error, KITE_ENODELOST);
    assert_int_equal(c.res.attempts, 1);
  }
  assert_int_equal(c.close_calls, 1);
  assert_int_equal(c.close_status, 0);
  assert_int_equal(c.fake.terminated, 3);
  ctx_done(&c);
}

static void test_lost_and_back_within_a_turn(void **state) {
  (void)state;
  lost_under_command(0);
}

static void test_lost_and_back_within_a_turn_retried(void **state) {
  (void)state;
  lost_under_command(1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_close_order),
      cmocka_unit_test(test_min_nodes_ready_count),
      cmocka_unit_test(test_lost_and_back_within_a_turn),
      cmocka_unit_test(test_lost_and_back_within_a_turn_retried),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
