/* The runtime: home directory, ordered component shutdown, the thread-safe post, the logger's
 * levels and redaction, opt-in signal handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"

static char home[64];

static kite_runtime_t *new_rt(void) {
  snprintf(home, sizeof(home), "/tmp/kite-test-rt-XXXXXX");
  assert_non_null(mkdtemp(home));
  char sub[128];
  snprintf(sub, sizeof(sub), "%s/h/nested", home);
  kite_runtime_options_t o = {.home = sub, .log_level = KITE_LOG_INFO};
  kite_runtime_t *rt = NULL;
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  return rt;
}

static void shut_cb(kite_runtime_t *rt, void *data) {
  (void)rt;
  (*(int *)data)++;
}

static void finish(kite_runtime_t *rt) {
  int done = 0;
  if (kite_runtime_shutdown(rt, shut_cb, &done) == 0) {
    kite_runtime_run(rt);
    assert_int_equal(done, 1);
  } else {
    kite_runtime_run(rt);
  }
  assert_int_equal(kite_runtime_free(rt), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

static void test_home_created_0700(void **state) {
  (void)state;
  kite_runtime_t *rt = new_rt();
  struct stat st;
  assert_int_equal(stat(kite_runtime_home(rt), &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0700);
  assert_non_null(strstr(kite_runtime_home(rt), "/h/nested"));
  finish(rt);
}

/* Components record the order they were stopped in; asynchronous stops use a timer. */
typedef struct comp {
  kite_component_t c;
  uv_timer_t t;
  kite_component_stopped_fn done;
  char *log;
  int started;
  int delay_ms;
} comp_t;

static int comp_start(kite_component_t *c, kite_runtime_t *rt) {
  comp_t *x = kite_container_of(c, comp_t, c);
  x->started = 1;
  uv_timer_init(kite_runtime_loop(rt), &x->t);
  return 0;
}

static void comp_closed(uv_handle_t *h) {
  comp_t *x = kite_container_of((uv_timer_t *)h, comp_t, t);
  strcat(x->log, x->c.name);
  strcat(x->log, " ");
  x->done(&x->c);
}

static void comp_timer(uv_timer_t *t) { uv_close((uv_handle_t *)t, comp_closed); }

static void comp_stop(kite_component_t *c, kite_component_stopped_fn done) {
  comp_t *x = kite_container_of(c, comp_t, c);
  x->done = done;
  uv_timer_start(&x->t, comp_timer, (uint64_t)x->delay_ms, 0);
}

static void test_shutdown_order(void **state) {
  (void)state;
  kite_runtime_t *rt = new_rt();
  char log[256] = "";
  /* Added in an order unlike the shutdown order; the pool is slow to stop. */
  comp_t prov = {.c = {.name = "provider", .tier = KITE_TIER_PROVIDER}, .log = log};
  comp_t tr = {.c = {.name = "transport", .tier = KITE_TIER_TRANSPORT}, .log = log};
  comp_t mon = {.c = {.name = "monitor", .tier = KITE_TIER_MONITOR}, .log = log, .delay_ms = 5};
  comp_t pool = {.c = {.name = "pool", .tier = KITE_TIER_POOL}, .log = log, .delay_ms = 60};
  comp_t *all[] = {&prov, &tr, &mon, &pool};
  for (int i = 0; i < 4; i++) {
    all[i]->c.start = comp_start;
    all[i]->c.stop = comp_stop;
    assert_int_equal(kite_runtime_add(rt, &all[i]->c), 0);
    assert_int_equal(all[i]->started, 1);
  }
  assert_int_equal(kite_runtime_add(rt, &pool.c), KITE_EEXIST);
  assert_ptr_equal(kite_runtime_find(rt, "transport"), &tr.c);
  assert_null(kite_runtime_find(rt, "nope"));
  int done = 0;
  assert_int_equal(kite_runtime_shutdown(rt, shut_cb, &done), 0);
  assert_int_equal(kite_runtime_shutdown(rt, shut_cb, &done), KITE_EBUSY);
  comp_t late = {.c = {.name = "late", .tier = KITE_TIER_POOL, .stop = comp_stop}};
  assert_int_equal(kite_runtime_add(rt, &late.c), KITE_ECLOSED);
  kite_runtime_run(rt);
  assert_int_equal(done, 1);
  assert_string_equal(log, "pool monitor transport provider ");
  assert_int_equal(kite_runtime_free(rt), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

/* Another thread posts work; it runs on the loop thread. */
typedef struct posted {
  kite_runtime_t *rt;
  pthread_t loop_thread;
  int ran;
  int on_loop_thread;
  uv_timer_t keepalive;
} posted_t;

static void posted_fn(kite_runtime_t *rt, void *data) {
  posted_t *p = data;
  (void)rt;
  p->ran++;
  p->on_loop_thread += pthread_equal(pthread_self(), p->loop_thread) ? 1 : 0;
  if (p->ran == 100) {
    uv_timer_stop(&p->keepalive);
    uv_close((uv_handle_t *)&p->keepalive, NULL);
  }
}

static void *poster(void *arg) {
  posted_t *p = arg;
  for (int i = 0; i < 100; i++)
    assert_int_equal(kite_runtime_post(p->rt, posted_fn, p), 0);
  return NULL;
}

static void noop_timer(uv_timer_t *t) { (void)t; }

static void test_post_from_thread(void **state) {
  (void)state;
  kite_runtime_t *rt = new_rt();
  posted_t p = {.rt = rt, .loop_thread = pthread_self()};
  /* The program keeps the loop alive while it expects posts (here: a timer). */
  uv_timer_init(kite_runtime_loop(rt), &p.keepalive);
  uv_timer_start(&p.keepalive, noop_timer, 10000, 0);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, poster, &p), 0);
  kite_runtime_run(rt);
  pthread_join(th, NULL);
  assert_int_equal(p.ran, 100);
  assert_int_equal(p.on_loop_thread, 100);
  finish(rt);
}

typedef struct lines {
  char buf[4096];
  int n;
} lines_t;

static void sink(kite_runtime_t *rt, kite_log_level_t lvl, const char *line, void *data) {
  lines_t *l = data;
  (void)rt;
  (void)lvl;
  strncat(l->buf, line, sizeof(l->buf) - strlen(l->buf) - 2);
  strcat(l->buf, "\n");
  l->n++;
}

static void test_log_levels_and_redaction(void **state) {
  (void)state;
  kite_runtime_t *rt = new_rt();
  lines_t l = {{0}, 0};
  kite_log_set_sink(rt, sink, &l);
  assert_int_equal(kite_secret_add(rt, "s3cr3t-token"), 0);
  assert_int_equal(kite_secret_add(rt, "ab"), KITE_EINVAL);
  kite_log(rt, KITE_LOG_DEBUG, "t", "hidden %d", 1);
  kite_log(rt, KITE_LOG_INFO, "t", "token=%s and again s3cr3t-token!", "s3cr3t-token");
  kite_log(rt, KITE_LOG_ERROR, "t", "boom");
  assert_int_equal(l.n, 2);
  assert_null(strstr(l.buf, "s3cr3t"));
  assert_null(strstr(l.buf, "hidden"));
  assert_non_null(strstr(l.buf, "kite: info t: token=[REDACTED] and again [REDACTED]!"));
  assert_non_null(strstr(l.buf, "kite: error t: boom"));
  kite_log_level_t lv;
  assert_int_equal(kite_log_level_parse("debug", &lv), 0);
  assert_int_equal(lv, KITE_LOG_DEBUG);
  assert_int_equal(kite_log_level_parse("loud", &lv), KITE_EINVAL);
  size_t n;
  char *r = kite_redact(rt, "xs3cr3t-tokens3cr3t-token", 25, &n);
  assert_string_equal(r, "x[REDACTED][REDACTED]");
  free(r);
  finish(rt);
}

static void test_errors(void **state) {
  (void)state;
  assert_string_equal(kite_err_name(KITE_ETIMEDOUT), "KITE_ETIMEDOUT");
  assert_string_equal(kite_strerror(KITE_ECONNLOST), "connection lost");
  assert_string_equal(kite_strerror(0), "success");
  assert_true(KITE_EINVAL < 0);
  assert_string_equal(kite_version(), KITE_VERSION_STRING);
}

static void test_signals_opt_in(void **state) {
  (void)state;
  kite_runtime_t *rt = new_rt();
  int done = 0;
  assert_int_equal(kite_runtime_handle_signals(rt, shut_cb, NULL, &done), 0);
  comp_t pool = {.c = {.name = "pool", .tier = KITE_TIER_POOL, .start = comp_start,
                       .stop = comp_stop}, .log = (char[64]){0}};
  assert_int_equal(kite_runtime_add(rt, &pool.c), 0);
  /* The pool's timer handle is not running; a self-sent SIGTERM starts the clean shutdown. */
  uv_timer_t kick;
  uv_timer_init(kite_runtime_loop(rt), &kick);
  void send_term(uv_timer_t *);
  uv_timer_start(&kick, send_term, 10, 0);
  kite_runtime_run(rt);
  uv_close((uv_handle_t *)&kick, NULL);
  kite_runtime_run(rt);
  assert_int_equal(done, 1);
  assert_string_equal(pool.log, "pool ");
  assert_int_equal(kite_runtime_free(rt), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

void send_term(uv_timer_t *t) {
  (void)t;
  kill(getpid(), SIGTERM);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_home_created_0700),
      cmocka_unit_test(test_shutdown_order),
      cmocka_unit_test(test_post_from_thread),
      cmocka_unit_test(test_log_levels_and_redaction),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_signals_opt_in),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
