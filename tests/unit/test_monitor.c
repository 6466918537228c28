/* The monitor framework: interval, no overlapping runs, per-check timeout, late reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/monitor.h"

typedef struct t {
  kite_runtime_t *rt;
  kite_monitor_t *m;
  int checks, concurrent, max_concurrent;
  int passed, failed, timeouts;
  uint64_t tokens[64];
  uv_timer_t finish, stopper;
  int hang; /* 1: checks never report; 0: report after delay_ms */
  uint64_t delay_ms;
  char home[64];
  uint64_t t0, first_check_at;
} t_t;

static void report_later(uv_timer_t *tm) {
  t_t *t = tm->data;
  t->concurrent--;
  kite_monitor_done(t->m, t->tokens[t->checks - 1], 0);
}

static void check(kite_monitor_t *m, uint64_t token, void *data) {
  t_t *t = data;
  (void)m;
  if (t->checks == 0)
    t->first_check_at = uv_now(kite_runtime_loop(t->rt));
  t->tokens[t->checks++ % 64] = token;
  t->concurrent++;
  if (t->concurrent > t->max_concurrent)
    t->max_concurrent = t->concurrent;
  if (!t->hang)
    uv_timer_start(&t->finish, report_later, t->delay_ms, 0);
}

static void result(kite_monitor_t *m, int status, void *data) {
  t_t *t = data;
  (void)m;
  if (status == 0)
    t->passed++;
  else
    t->failed++;
  if (status == KITE_ETIMEDOUT) {
    t->timeouts++;
    t->concurrent--; /* the hung check is abandoned */
  }
}

static void stop_all(uv_timer_t *tm) {
  t_t *t = tm->data;
  kite_monitor_free(t->m);
  uv_close((uv_handle_t *)&t->finish, NULL);
  uv_close((uv_handle_t *)&t->stopper, NULL);
}

static void run_for(t_t *t, const kite_monitor_options_t *o, uint64_t ms) {
  snprintf(t->home, sizeof(t->home), "/tmp/kite-test-mon-XXXXXX");
  assert_non_null(mkdtemp(t->home));
  kite_runtime_options_t ro = {.home = t->home, .log_level = KITE_LOG_ERROR};
  assert_int_equal(kite_runtime_new(&t->rt, &ro), 0);
  uv_loop_t *loop = kite_runtime_loop(t->rt);
  uv_timer_init(loop, &t->finish);
  uv_timer_init(loop, &t->stopper);
  t->finish.data = t->stopper.data = t;
  t->t0 = uv_now(loop);
  assert_int_equal(kite_monitor_new(t->rt, o, check, result, t, &t->m), 0);
  uv_timer_start(&t->stopper, stop_all, ms, 0);
  kite_runtime_run(t->rt);
  assert_int_equal(kite_runtime_shutdown(t->rt, NULL, NULL), 0);
  kite_runtime_run(t->rt);
  assert_int_equal(kite_runtime_free(t->rt), 0);
  char cmd[100];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", t->home);
  assert_int_equal(system(cmd), 0);
}

static void test_interval(void **state) {
  (void)state;
  t_t t = {.delay_ms = 1};
  kite_monitor_options_t o = {.interval_ms = 20, .jitter_ms = 5, .timeout_ms = 15};
  run_for(&t, &o, 330);
  /* about 330 / (20 + ~2.5 + 1) runs; generous bounds */
  assert_true(t.checks >= 8 && t.checks <= 16);
  assert_int_equal(t.failed, 0);
  assert_int_equal(t.max_concurrent, 1);
  assert_true(t.first_check_at - t.t0 >= 20);
}

static void test_hanging_check_never_overlaps_and_times_out(void **state) {
  (void)state;
  t_t t = {.hang = 1};
  /* Interval 10 ms, timeout 50 ms: ticks keep coming while a check hangs. */
  kite_monitor_options_t o = {.interval_ms = 10, .timeout_ms = 50, .run_at_start = true};
  run_for(&t, &o, 280);
  assert_int_equal(t.max_concurrent, 1);
  assert_true(t.timeouts >= 3);
  assert_int_equal(t.timeouts, t.failed);
  assert_int_equal(t.passed, 0);
  /* each run lasted its full timeout: at most 280 / 50 + 1 runs */
  assert_true(t.checks <= 6);
}

static void late(kite_monitor_t *m, uint64_t token, void *data) {
  t_t *t = data;
  (void)m;
  t->tokens[t->checks++ % 64] = token;
  if (t->checks == 2) /* report run 1 now: it already timed out; must be ignored */
    kite_monitor_done(t->m, t->tokens[0], 0);
}

static void test_late_report_ignored(void **state) {
  (void)state;
  t_t t = {0};
  snprintf(t.home, sizeof(t.home), "/tmp/kite-test-mon-XXXXXX");
  assert_non_null(mkdtemp(t.home));
  kite_runtime_options_t ro = {.home = t.home, .log_level = KITE_LOG_ERROR};
  assert_int_equal(kite_runtime_new(&t.rt, &ro), 0);
  uv_loop_t *loop = kite_runtime_loop(t.rt);
  uv_timer_init(loop, &t.finish);
  uv_timer_init(loop, &t.stopper);
  t.finish.data = t.stopper.data = &t;
  kite_monitor_options_t o = {.interval_ms = 5, .timeout_ms = 20, .run_at_start = true};
  assert_int_equal(kite_monitor_new(t.rt, &o, late, result, &t, &t.m), 0);
  uv_timer_start(&t.stopper, stop_all, 100, 0);
  kite_runtime_run(t.rt);
  assert_int_equal(t.passed, 0); /* the late "pass" of run 1 did not count */
  assert_true(t.failed >= 2);
  kite_monitor_options_t bad = {.interval_ms = 0};
  kite_monitor_t *m = NULL;
  assert_int_equal(kite_monitor_new(t.rt, &bad, late, result, &t, &m), KITE_EINVAL);
  assert_int_equal(kite_runtime_shutdown(t.rt, NULL, NULL), 0);
  kite_runtime_run(t.rt);
  assert_int_equal(kite_runtime_free(t.rt), 0);
  char cmd[100];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", t.home);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_interval),
      cmocka_unit_test(test_hanging_check_never_overlaps_and_times_out),
      cmocka_unit_test(test_late_report_ignored),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
