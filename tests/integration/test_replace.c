/* Monitors and replacement on real local nodes with simulated spot preemption: chaos during
 * broadcasts, detection time, a replacement storm, and the dead-man's switch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kite/kite.h"

#define MAXR 8

typedef struct ctx {
  kite_runtime_t *rt;
  kite_local_provider_t *lp;
  kite_pool_t *pool;
  char home[64];
  char name[48];
  char tag[64];
  int open_status;
  bool opened, closed;
  int close_status;
  /* broadcasts */
  unsigned rounds, rounds_done, round_failures;
  unsigned attempt[MAXR];
  char out[MAXR][64];
  size_t out_len[MAXR];
  /* events */
  unsigned replaced, lost, preempting, preempted, shrunk, failed_nodes;
  bool shrunk_usable;
  uint64_t lost_at_ms;
  uint64_t killed_at_ms;
  unsigned preempts_sent;
  bool opened_close;
  uv_timer_t chaos;
  unsigned seed;
} ctx_t;

static void ctx_init(ctx_t *c, const char *what, const kite_local_provider_options_t *lo) {
  memset(c, 0, sizeof(*c));
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-replace-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  snprintf(c->name, sizeof(c->name), "r%d-%s", (int)getpid(), what);
  snprintf(c->tag, sizeof(c->tag), "kite-pool-%s", c->name);
  kite_runtime_options_t o = {.home = c->home, .log_level = -1};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  assert_int_equal(kite_local_provider_new(c->rt, lo, &c->lp), 0);
  assert_int_equal(kite_transport_new(c->rt, NULL, NULL), 0);
  assert_int_equal(kite_bootstrap_runner_new(c->rt, NULL), 0);
}

static void ctx_done(ctx_t *c) {
  assert_int_equal(kite_runtime_shutdown(c->rt, NULL, NULL), 0);
  kite_runtime_run(c->rt);
  /* Every instance the store ever recorded for the pool is confirmed terminated. */
  kite_store_t *st = NULL;
  char *path = kite_store_default_path(c->home);
  assert_int_equal(kite_store_open(path, &st), 0);
  free(path);
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(st, c->name, true, &v, &n), 0);
  assert_int_equal(n, 0);
  kite_store_instances_free(v, n);
  kite_store_close(st);
  assert_int_equal(kite_runtime_free(c->rt), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(kite_local_count_tagged(c->tag), 0);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->closed = true;
  c->close_status = status;
}

static void on_replaced(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_replaced_t *p,
                        void *data) {
  (void)bus;
  (void)ev;
  ctx_t *c = data;
  assert_string_not_equal(p->old_instance, p->new_instance);
  c->replaced++;
}

static void on_lost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                    void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ctx_t *c = data;
  if (c->lost++ == 0)
    c->lost_at_ms = now_ms();
}

static void on_preempting(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_node_preempting_t *p, void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((ctx_t *)data)->preempting++;
}

static void on_preempted(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_node_preempted_t *p, void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ctx_t *c = data;
  if (c->preempted++ == 0 && c->lost_at_ms == 0)
    c->lost_at_ms = now_ms();
}

static void on_shrunk(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_pool_shrunk_t *p,
                      void *data) {
  (void)bus;
  (void)ev;
  ctx_t *c = data;
  c->shrunk++;
  c->shrunk_usable = p->usable;
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev,
                     const kite_ev_node_state_changed_t *p, void *data) {
  (void)bus;
  (void)ev;
  ctx_t *c = data;
  if (p->to == KITE_NODE_FAILED)
    c->failed_nodes++;
}

static void subscribe(ctx_t *c) {
  kite_bus_t *bus = kite_runtime_bus(c->rt);
  kite_on_node_replaced(bus, KITE_KEY_ANY, on_replaced, c, NULL);
  kite_on_node_lost(bus, KITE_KEY_ANY, on_lost, c, NULL);
  kite_on_node_preempting(bus, KITE_KEY_ANY, on_preempting, c, NULL);
  kite_on_node_preempted(bus, KITE_KEY_ANY, on_preempted, c, NULL);
  kite_on_pool_shrunk(bus, KITE_KEY_ANY, on_shrunk, c, NULL);
  kite_on_node_state_changed(bus, KITE_KEY_ANY, on_state, c, NULL);
}

static kite_pool_spec_t fast_spec(ctx_t *c, unsigned nodes) {
  kite_pool_spec_t s = {.name = c->name, .nodes = nodes, .replace = true};
  s.monitors.health_interval_ms = 300;
  s.monitors.health_timeout_ms = 1000;
  s.monitors.health_failures = 2;
  s.monitors.preempt_interval_ms = 200;
  s.replace_per_minute = 100;
  return s;
}

/* ---- chaos: preemptions during 30 broadcast rounds ------------------------------------- */

static void next_round(ctx_t *c);

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  ctx_t *c = data;
  (void)pool;
  assert_true(rank < MAXR);
  if (stream != 1)
    return;
  if (attempt != c->attempt[rank]) {
    /* A re-run on the replacement: what the lost attempt printed is superseded. */
    assert_true(attempt > c->attempt[rank]);
    c->attempt[rank] = attempt;
    c->out_len[rank] = 0;
  }
  assert_true(c->out_len[rank] + len < sizeof(c->out[rank]));
  memcpy(c->out[rank] + c->out_len[rank], buf, len);
  c->out_len[rank] += len;
  c->out[rank][c->out_len[rank]] = '\0';
}

static void on_round(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  (void)pool;
  assert_int_equal(status, 0);
  for (unsigned i = 0; i < r->count; i++) {
    char want[32];
    snprintf(want, sizeof(want), "rank %u\n", i);
    if (r->ranks[i].error != 0 || r->ranks[i].exit_status != 0 ||
        strcmp(c->out[i], want) != 0) {
      print_error("round %u rank %u: error %s exit %d attempts %u output '%s' (%s)\n",
                  c->rounds_done, i, kite_err_name(r->ranks[i].error), r->ranks[i].exit_status,
                  r->ranks[i].attempts, c->out[i],
                  r->ranks[i].message ? r->ranks[i].message : "");
      c->round_failures++;
    }
  }
  c->rounds_done++;
  next_round(c);
}

static void next_round(ctx_t *c) {
  if (c->rounds_done == c->rounds) {
    uv_timer_stop(&c->chaos);
    uv_close((uv_handle_t *)&c->chaos, NULL);
    kite_pool_close(c->pool, on_closed, c);
    return;
  }
  memset(c->attempt, 0, sizeof(c->attempt));
  memset(c->out_len, 0, sizeof(c->out_len));
  memset(c->out, 0, sizeof(c->out));
  kite_cmd_t cmd = {.shell = "sleep 0.2; echo \"rank $KITE_NODE_RANK\""};
  kite_task_opts_t o = {.retries = 5, .timeout_ms = 20000};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, &o, on_output, on_round, c, NULL), 0);
}

static void on_chaos(uv_timer_t *t) {
  ctx_t *c = t->data;
  if (c->preempts_sent >= 6)
    return;
  unsigned rank = getenv("KITE_CHAOS_RANK") ? (unsigned)atoi(getenv("KITE_CHAOS_RANK")) : (unsigned)rand_r(&c->seed) % 8;
  if (kite_pool_node_state(c->pool, rank) != KITE_NODE_READY)
    return;
  const char *id = kite_pool_instance_id(c->pool, rank);
  bool abrupt = c->preempts_sent % 2 == 0;
  if (id && kite_local_provider_preempt(c->lp, id, abrupt) == 0)
    c->preempts_sent++;
}

static void chaos_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  c->opened = true;
  c->open_status = status;
  if (status != 0) {
    print_error("open: %s\n", msg ? msg : "");
    kite_pool_close(pool, on_closed, c);
    return;
  }
  uv_timer_init(kite_runtime_loop(c->rt), &c->chaos);
  c->chaos.data = c;
  uv_timer_start(&c->chaos, on_chaos, 700, 900);
  next_round(c);
}

static void test_chaos(void **state) {
  (void)state;
  ctx_t c;
  kite_local_provider_options_t lo = {.notice_ms = 300};
  ctx_init(&c, "chaos", &lo);
  c.seed = (unsigned)getpid();
  c.rounds = 30;
  subscribe(&c);
  kite_pool_spec_t s = fast_spec(&c, 8);
  assert_int_equal(kite_pool_open(c.rt, &s, chaos_open, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_true(c.closed);
  assert_int_equal(c.close_status, 0);
  assert_int_equal(c.rounds_done, 30);
  assert_int_equal(c.round_failures, 0);
  print_message("chaos: %u preemptions sent, %u notices, %u lost, %u preempted, %u replaced\n",
                c.preempts_sent, c.preempting, c.lost, c.preempted, c.replaced);
  assert_true(c.preempts_sent >= 4);
  /* Every preempted instance was replaced, and only those. */
  assert_int_equal(c.replaced, c.preempts_sent);
  assert_int_equal(c.failed_nodes, 0);
  assert_int_equal(kite_local_provider_count(c.lp), 0);
  ctx_done(&c);
}

/* ---- detection time of an abrupt death ------------------------------------------------- */

static void detect_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  (void)msg;
  c->opened = true;
  c->open_status = status;
  if (status != 0) {
    kite_pool_close(pool, on_closed, c);
    return;
  }
  c->lost_at_ms = 0;
  const char *id = kite_pool_instance_id(pool, 1);
  c->killed_at_ms = now_ms();
  assert_int_equal(kite_local_provider_preempt(c->lp, id, true), 0);
}

static void detect_replaced(kite_bus_t *bus, const kite_event_t *ev,
                            const kite_ev_node_replaced_t *p, void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ctx_t *c = data;
  kite_pool_close(c->pool, on_closed, c);
}

static void test_detection_time(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "detect", NULL);
  subscribe(&c);
  kite_on_node_replaced(kite_runtime_bus(c.rt), KITE_KEY_ANY, detect_replaced, &c, NULL);
  kite_pool_spec_t s = fast_spec(&c, 2);
  assert_int_equal(kite_pool_open(c.rt, &s, detect_open, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_true(c.lost_at_ms != 0);
  uint64_t took = c.lost_at_ms - c.killed_at_ms;
  /* interval × failures + timeout, with generous room for a loaded machine. */
  uint64_t bound = 300 * 2 + 1000;
  print_message("abrupt death detected after %llu ms (bound %llu ms + 2000 ms slack)\n",
                (unsigned long long)took, (unsigned long long)bound);
  assert_true(took <= bound + 2000);
  assert_int_equal(c.replaced, 1);
  ctx_done(&c);
}

/* ---- replacement storm ------------------------------------------------------------------- */

static void storm_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  (void)msg;
  c->opened = true;
  c->open_status = status;
  if (status != 0)
    kite_pool_close(pool, on_closed, c);
}

/* Once all six are READY, every node is preempted at once; once three were replaced, three
 * failed and the three replacements are READY, the pool is closed. */
static void storm_check(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_node_state_changed_t *p, void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ctx_t *c = data;
  if (!c->opened || c->open_status != 0 || c->closed)
    return;
  if (c->preempts_sent == 0 && kite_pool_ready_count(c->pool) == 6) {
    for (unsigned r = 0; r < 6; r++)
      assert_int_equal(
          kite_local_provider_preempt(c->lp, kite_pool_instance_id(c->pool, r), true), 0);
    c->preempts_sent = 6;
  } else if (c->preempts_sent == 6 && c->replaced == 3 && c->failed_nodes == 3 &&
             kite_pool_ready_count(c->pool) == 3 && !c->opened_close) {
    c->opened_close = true;
    kite_pool_close(c->pool, on_closed, c);
  }
}

static void storm_replaced(kite_bus_t *bus, const kite_event_t *ev,
                           const kite_ev_node_replaced_t *p, void *data) {
  (void)p;
  storm_check(bus, ev, NULL, data);
}

static void test_replacement_storm(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "storm", NULL);
  subscribe(&c);
  kite_bus_t *bus = kite_runtime_bus(c.rt);
  kite_on_node_state_changed(bus, KITE_KEY_ANY, storm_check, &c, NULL);
  kite_on_node_replaced(bus, KITE_KEY_ANY, storm_replaced, &c, NULL);
  kite_pool_spec_t s = fast_spec(&c, 6);
  s.max_replacements = 3;
  s.min_nodes = 2;
  assert_int_equal(kite_pool_open(c.rt, &s, storm_open, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_true(c.opened_close);
  assert_int_equal(c.replaced, 3);
  assert_int_equal(c.failed_nodes, 3);
  assert_true(c.shrunk >= 1);
  assert_true(c.shrunk_usable);
  ctx_done(&c);
}

/* ---- the dead-man's switch ------------------------------------------------------------------ */

static void deadman_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  int fd = *(int *)data;
  (void)pool;
  (void)msg;
  char b = status == 0 ? 'y' : 'n';
  if (write(fd, &b, 1) != 1)
    _exit(3);
}

/* The controller (a child process) opens a pool whose nodes outlive it, then is killed with
 * SIGKILL: nothing closes the pool. The nodes must shut themselves down. */
static void test_deadman_switch(void **state) {
  (void)state;
  char home[64];
  snprintf(home, sizeof(home), "/tmp/kite-test-deadman-XXXXXX");
  assert_non_null(mkdtemp(home));
  char name[48], tag[64];
  snprintf(name, sizeof(name), "d%d", (int)getpid());
  snprintf(tag, sizeof(tag), "kite-pool-%s", name);
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t child = fork();
  assert_true(child >= 0);
  if (child == 0) {
    close(p[0]);
    kite_runtime_t *rt;
    kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_ERROR};
    kite_local_provider_options_t lo = {.outlive_controller = true};
    if (kite_runtime_new(&rt, &o) || kite_local_provider_new(rt, &lo, NULL) ||
        kite_transport_new(rt, NULL, NULL) || kite_bootstrap_runner_new(rt, NULL))
      _exit(2);
    kite_pool_spec_t s = {.name = name, .nodes = 2, .deadman_timeout_ms = 2000};
    s.monitors.health_interval_ms = 300;
    kite_pool_t *pool;
    if (kite_pool_open(rt, &s, deadman_open, &p[1], &pool) != 0)
      _exit(2);
    kite_runtime_run(rt);
    _exit(0);
  }
  close(p[1]);
  char b = 0;
  assert_int_equal(read(p[0], &b, 1), 1);
  assert_int_equal(b, 'y');
  close(p[0]);
  kill(child, SIGKILL);
  int st;
  assert_int_equal(waitpid(child, &st, 0), child);
  uint64_t t0 = now_ms();
  /* The nodes are still there right after the controller died … */
  assert_true(kite_local_count_tagged(tag) > 0);
  /* … and gone within the dead-man timeout (2 s) plus the watchdog's period and slack. */
  while (kite_local_count_tagged(tag) > 0 && now_ms() - t0 < 15000) {
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  uint64_t took = now_ms() - t0;
  print_message("nodes gone %llu ms after their controller was killed\n",
                (unsigned long long)took);
  assert_int_equal(kite_local_count_tagged(tag), 0);
  assert_true(took >= 1000);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_detection_time),
      cmocka_unit_test(test_replacement_storm),
      cmocka_unit_test(test_deadman_switch),
      cmocka_unit_test(test_chaos),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  if (getenv("KITE_TEST_SKIP"))
    cmocka_set_skip_filter(getenv("KITE_TEST_SKIP"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
