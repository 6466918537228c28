/* Allocation failure, the k-th allocation for every k: loading a spec, the bus (subscribe,
 * emit, dispatch), the state store (a pool and an instance recorded, launched, terminated), a
 * runtime's life, and a local pool of one real sshd node opened and closed (every 3rd k here,
 * every k with KITE_ALLOC_STRIDE=1: make alloc-fail), after which no node process may be left. Each
 * k runs in its own process whose k-th allocation fails — kite's own (malloc, calloc, realloc,
 * strdup, strndup, vasprintf, linked with --wrap), jansson's and SQLite's (given these allocators)
 * — and must end without a crash, with success or a clean error, and (in the ASan build) without a
 * leak; after a failed store scenario the store must be consistent (integrity and foreign keys)
 * with the instance recorded only if its pool is. The scenarios run until a k past their last
 * allocation. libyaml's own allocations are not counted (it takes no allocator), nor libuv's (it
 * aborts on some of its own failures). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/local.h"
#include "kite/spec.h"
#include "kite/store.h"
#include "kite_impl.h"

/* ---- the failing allocator ------------------------------------------------------------------ */

static long alloc_n, fail_at; /* fail_at 0: never */

static bool fail_now(void) {
  return fail_at > 0 && ++alloc_n == fail_at;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n) {
  return fail_now() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t n, size_t size) {
  return fail_now() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n) {
  return fail_now() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s) {
  return fail_now() ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n) {
  return fail_now() ? NULL : __real_strndup(s, n);
}
int __wrap_vasprintf(char **out, const char *fmt, va_list ap) {
  if (fail_now()) {
    *out = NULL;
    return -1;
  }
  return __real_vasprintf(out, fmt, ap);
}

/* SQLite's allocator: the size kept before each block. */
static void *sq_malloc(int n) {
  if (fail_now())
    return NULL;
  sqlite3_int64 *p = __real_malloc((size_t)n + sizeof(*p));
  if (p == NULL)
    return NULL;
  p[0] = n;
  return p + 1;
}
static void sq_free(void *p) {
  if (p)
    free((sqlite3_int64 *)p - 1);
}
static void *sq_realloc(void *p, int n) {
  if (p == NULL)
    return sq_malloc(n);
  if (fail_now())
    return NULL;
  sqlite3_int64 *q = __real_realloc((sqlite3_int64 *)p - 1, (size_t)n + sizeof(*q));
  if (q == NULL)
    return NULL;
  q[0] = n;
  return q + 1;
}
static int sq_size(void *p) {
  return p ? (int)((sqlite3_int64 *)p)[-1] : 0;
}
static int sq_roundup(int n) {
  return (n + 7) & ~7;
}
static int sq_init(void *d) {
  (void)d;
  return SQLITE_OK;
}
static void sq_shutdown(void *d) {
  (void)d;
}

static void *json_malloc(size_t n) {
  return __wrap_malloc(n);
}

/* Every allocator counted, once, before anything allocates. */
static void count_every_allocator(void) {
  static const sqlite3_mem_methods sq = {sq_malloc,  sq_free, sq_realloc,  sq_size,
                                         sq_roundup, sq_init, sq_shutdown, NULL};
  assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &sq), SQLITE_OK);
  json_set_alloc_funcs(json_malloc, free);
  /* libuv's are left alone: it aborts on some failed allocations of its own (uv_loop_init's
   * signal handling), which no caller can recover from. */
}

/* ---- the scenarios -------------------------------------------------------------------------- */

static char dir[64];
static pid_t test_pid; /* names the pool of the local pool scenario */
static char why[512];  /* what the failing scenario said */

static const char spec_text[] =
    "name: alloc-${KITE_ALLOC_SUFFIX:-x}\n"
    "provider: local\n"
    "nodes: 3\n"
    "env: {A: \"1\", B: \"${HOME}\"}\n"
    "bootstrap:\n"
    "  env: {GREETING: hello, TOKEN: {value: \"${HOME}\", secret: true}}\n"
    "  files:\n"
    "    - {path: hello.txt, content: \"hi\\n\", mode: 0644}\n"
    "  setup: echo ready\n"
    "run: echo \"rank $KITE_NODE_RANK\"\n"
    "monitors: {health_interval: 2s, health_failures: 3}\n"
    "replace: {on_preemption: true, max_replacements: 4}\n"
    "retries: 2\n";

static int scenario_spec(void) {
  kite_spec_t *s = NULL;
  char *err = NULL;
  int rc = kite_spec_load_string(spec_text, sizeof(spec_text) - 1, "alloc.yaml", &s, &err);
  if (rc != 0)
    snprintf(why, sizeof(why), "%s", err ? err : "(no message)");
  if (rc == 0 && strcmp(kite_spec_pool(s)->name, "alloc-x") != 0)
    rc = KITE_EINTERNAL;
  kite_spec_free(s);
  free(err);
  return rc;
}

typedef struct seen {
  int n;
} seen_t;

static void on_metric(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_metric_t *p,
                      void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  ((seen_t *)data)->n++;
}

static void on_shut(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(int *)data = 1;
}

static int scenario_bus(void) {
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t o = {.home = dir, .log_level = KITE_LOG_ERROR};
  int rc = kite_runtime_new(&rt, &o);
  if (rc != 0)
    return rc;
  kite_bus_t *bus = kite_runtime_bus(rt);
  seen_t seen = {0};
  kite_sub_t sub;
  rc = kite_on_metric(bus, KITE_KEY_ANY, on_metric, &seen, &sub);
  for (int i = 0; rc == 0 && i < 8; i++) {
    kite_ev_metric_t m = {.node = (uint64_t)i, .name = "load", .value = i};
    rc = kite_emit_metric(bus, &m);
  }
  int done = 0;
  if (kite_runtime_shutdown(rt, on_shut, &done) == 0)
    kite_runtime_run(rt);
  int frc = kite_runtime_free(rt);
  if (rc == 0 && seen.n != 8)
    rc = KITE_EINTERNAL;
  return rc ? rc : frc;
}

static char db[128];

static int scenario_store(void) {
  kite_store_t *s = NULL;
  int rc = kite_store_open(db, &s);
  if (rc != 0) {
    snprintf(why, sizeof(why), "%s", kite_store_errmsg(NULL));
    return rc;
  }
  kite_store_pool_t p = {.name = "alloc",
                         .provider = "local",
                         .tag = "kite-pool-alloc",
                         .spec = "name: alloc\nnodes: 1\n",
                         .owner_pid = getpid(),
                         .state = "open"};
  int64_t row = 0;
  rc = kite_store_pool_put(s, &p);
  if (rc == 0)
    rc = kite_store_instance_launching_at(s, "alloc", 0, "local", p.tag, "tok-1",
                                          "{\"provider\":\"local\"}", &row);
  if (rc == 0)
    rc = kite_store_instance_launched(s, row, "local-1", "127.0.0.9", 22, "kite", NULL, 0.5);
  if (rc == 0)
    rc = kite_store_instance_terminating(s, row);
  if (rc == 0)
    rc = kite_store_instance_terminated_row(s, row, "confirmed");
  if (rc != 0)
    snprintf(why, sizeof(why), "%s", kite_store_errmsg(s));
  kite_store_close(s);
  return rc;
}

/* After a store scenario, with allocation working again: the file is a consistent store. */
static int store_consistent(void) {
  sqlite3 *raw = NULL;
  if (access(db, F_OK) != 0)
    return 0; /* never created */
  if (sqlite3_open_v2(db, &raw, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    sqlite3_close(raw);
    return 1;
  }
  int bad = 0;
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(raw, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
      sqlite3_step(st) != SQLITE_ROW || strcmp((const char *)sqlite3_column_text(st, 0), "ok"))
    bad = 1;
  sqlite3_finalize(st);
  st = NULL;
  if (!bad && (sqlite3_prepare_v2(raw, "PRAGMA foreign_key_check", -1, &st, NULL) != SQLITE_OK ||
               sqlite3_step(st) != SQLITE_DONE))
    bad = 1; /* an instance without its pool, or worse */
  sqlite3_finalize(st);
  sqlite3_close(raw);
  return bad;
}

/* ---- a local pool, opened and closed ----------------------------------------------------------
 */

typedef struct pool_run {
  kite_runtime_t *rt;
  int open_status, close_status;
  bool closed;
} pool_run_t;

static void pool_closed(kite_pool_t *pool, int status, void *data) {
  pool_run_t *r = data;
  (void)pool;
  r->close_status = status;
  r->closed = true;
  kite_runtime_shutdown(r->rt, NULL, NULL);
}

static void pool_opened(kite_pool_t *pool, int status, const char *message, void *data) {
  pool_run_t *r = data;
  r->open_status = status;
  if (status != 0)
    snprintf(why, sizeof(why), "pool open: %s", message ? message : kite_strerror(status));
  kite_pool_close(pool, pool_closed, r);
}

/* The processes of the pool's node (its sshd and anything under it): none may outlive a run. */
static unsigned node_processes(void) {
  char cmd[160];
  snprintf(cmd, sizeof(cmd),
           "grep -lsxzF KITE_NODE_TAG=kite-pool-alloc-%d /proc/[0-9]*/environ 2>/dev/null | wc -l",
           (int)test_pid);
  FILE *fp = popen(cmd, "r");
  unsigned n = 0;
  if (fp) {
    if (fscanf(fp, "%u", &n) != 1)
      n = 0;
    pclose(fp);
  }
  return n;
}

/* Every run starts from the state the first run left (a store with the schema, one closed pool
 * and its terminated instance; kite's key): a run cut short by a failed allocation may leave
 * an instance recorded as terminating (not confirmed gone, so kept), which would make the next
 * open of the same name wait for `kite down`. */
static char clean_db[160];

static void copy_file(const char *from, const char *to) {
  char buf[65536];
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(in >= 0 && out >= 0);
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0)
    assert_int_equal(write(out, buf, (size_t)n), n);
  close(in);
  close(out);
}

static void pool_restore(void) {
  char p[200];
  snprintf(p, sizeof(p), "%s-wal", db);
  unlink(p);
  snprintf(p, sizeof(p), "%s-shm", db);
  unlink(p);
  copy_file(clean_db, db);
  snprintf(p, sizeof(p), "%s/local", dir);
  kite__rm_rf(p);
}

static int scenario_pool(void) {
  pool_run_t r = {0};
  kite_runtime_options_t o = {.home = dir, .log_level = KITE_LOG_OFF};
  int rc = kite_runtime_new(&r.rt, &o);
  if (rc != 0)
    return rc;
  rc = kite_local_provider_new(r.rt, NULL, NULL);
  if (rc == 0)
    rc = kite_transport_new(r.rt, NULL, NULL);
  if (rc == 0)
    rc = kite_bootstrap_runner_new(r.rt, NULL);
  char name[48];
  snprintf(name, sizeof(name), "alloc-%d", (int)test_pid);
  kite_pool_spec_t spec = {.name = name, .nodes = 1, .monitors_off = true, .deadman_off = true};
  kite_pool_t *pool = NULL;
  if (rc == 0)
    rc = kite_pool_open(r.rt, &spec, pool_opened, &r, &pool);
  if (rc != 0) {
    snprintf(why, sizeof(why), "setting up: %s", kite_strerror(rc));
    kite_runtime_shutdown(r.rt, NULL, NULL);
  }
  kite_runtime_run(r.rt);
  if (kite_runtime_free(r.rt) != 0 && rc == 0)
    rc = KITE_EINTERNAL;
  if (rc == 0 && !r.closed)
    rc = KITE_EINTERNAL;
  if (rc == 0)
    rc = r.open_status ? r.open_status : r.close_status;
  if (node_processes() != 0) {
    snprintf(why, sizeof(why), "a node process outlived the pool");
    return KITE_EINTERNAL;
  }
  return rc;
}

/* ---- the loop ------------------------------------------------------------------------------- */

enum { RAN_OK = 0, RAN_ABSORBED = 10, RAN_NOMEM = 3, RAN_OTHER = 4, RAN_INCONSISTENT = 5 };

/* Runs scenario in a child whose k-th allocation fails (k 0: none); its exit status, or
 * -signal. Only children run scenarios: libuv's threadpool threads started in this process
 * would not exist in a child, and its exit would wait for them. */
static void (*before_run)(void); /* in the child, before its allocations are counted */

static int run_once(int (*scenario)(void), bool store, long k, int *code) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    /* A crash is the child's own death by its signal (cmocka's handler would make it exit 1). */
    signal(SIGSEGV, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    if (store)
      assert_int_equal(kite_store_remove(db), 0);
    if (before_run)
      before_run();
    alloc_n = 0;
    fail_at = k;
    int rc = scenario();
    bool reached = alloc_n >= k;
    fail_at = 0;
    int out = rc == 0             ? (reached ? RAN_ABSORBED : RAN_OK)
              : rc == KITE_ENOMEM ? RAN_NOMEM
                                  : RAN_OTHER;
    if (store && rc != 0 && store_consistent())
      out = RAN_INCONSISTENT;
    if (out == RAN_OTHER)
      fprintf(stderr, "  allocation %ld: %s\n", k, why);
    if (write(fds[1], &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
      out = RAN_OTHER;
    close(fds[1]);
    exit(out); /* exit, not _exit: the leak check runs at exit in the ASan build */
  }
  close(fds[1]);
  *code = 0;
  if (read(fds[0], code, sizeof(*code)) != (ssize_t)sizeof(*code))
    *code = 0;
  close(fds[0]);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

/* Fails every allocation of scenario in turn, or every stride-th (k = 1, 1 + stride, ...). */
static void every_k(const char *name, int (*scenario)(void), bool store, long stride) {
  if (getenv("KITE_ALLOC_AT")) { /* one k, in this process: for a debugger */
    alloc_n = 0;
    fail_at = atol(getenv("KITE_ALLOC_AT"));
    if (before_run)
      before_run();
    int rc = scenario();
    fail_at = 0;
    fprintf(stderr, "%s: allocation %s failed: %s (%s); %ld allocations made\n", name,
            getenv("KITE_ALLOC_AT"), kite_err_name(rc), why, alloc_n);
    return;
  }
  const char *from = getenv("KITE_ALLOC_FROM"); /* to look at one stretch */
  long k = from && atol(from) > 0 ? atol(from) : 1, nomem = 0, absorbed = 0, other = 0;
  int bad = 0;
  for (;; k += stride) {
    int code = 0;
    if (getenv("KITE_ALLOC_VERBOSE"))
      fprintf(stderr, "%s: failing allocation %ld\n", name, k);
    int r = run_once(scenario, store, k, &code);
    if (r == RAN_OK)
      break; /* the k-th allocation was never made: every one before it has failed once */
    if (r == RAN_NOMEM)
      nomem++;
    else if (r == RAN_ABSORBED)
      absorbed++;
    else if (r == RAN_OTHER) {
      other++;
      fprintf(stderr, "%s: allocation %ld failed: kite said %s, not KITE_ENOMEM\n", name, k,
              kite_err_name(code));
    } else {
      bad++;
      fprintf(stderr, "%s: allocation %ld failed: %s %d\n", name, k,
              r < 0 ? "the process died of signal" : "the process exited", r < 0 ? -r : r);
    }
    if (k > 200000)
      fail_msg("%s: more than 200000 allocations", name);
  }
  fprintf(stderr,
          "%s: %ld allocations failed in turn (every %ld%s of %ld): %ld clean KITE_ENOMEM, %ld "
          "absorbed, %ld other errors, %d crashes, leaks or inconsistent stores\n",
          name, (k - 1) / stride + (stride > 1), stride,
          stride == 1   ? "st"
          : stride == 2 ? "nd"
          : stride == 3 ? "rd"
                        : "th",
          k - 1, nomem, absorbed, other, bad);
  assert_true(k > 2); /* the scenario allocates: the counting works */
  assert_int_equal(bad, 0);
  assert_int_equal(other, 0);
}

static void test_spec_load(void **state) {
  (void)state;
  setenv("KITE_ALLOC_SUFFIX", "x", 1);
  every_k("spec", scenario_spec, false, 1);
}

static void test_bus(void **state) {
  (void)state;
  every_k("bus", scenario_bus, false, 1);
}

static void test_store(void **state) {
  (void)state;
  every_k("store", scenario_store, true, 1);
}

static void test_local_pool(void **state) {
  (void)state;
  /* Each run starts a real sshd node: every 3rd allocation in `make test`;
   * KITE_ALLOC_STRIDE=1 (make alloc-fail) fails every one. */
  const char *st = getenv("KITE_ALLOC_STRIDE");
  /* Once without a failure first: the state store's schema and kite's key exist after it, so
   * the allocations failed are the pool's (the store's own are test_store's). */
  int code = -1, r = run_once(scenario_pool, false, 0, &code); /* in a child: see run_once */
  assert_true(r == RAN_OK || r == RAN_ABSORBED);
  assert_int_equal(code, 0);
  snprintf(clean_db, sizeof(clean_db), "%s.clean", db);
  copy_file(db, clean_db);
  before_run = pool_restore;
  every_k("local pool", scenario_pool, false, st && atol(st) > 0 ? atol(st) : 3);
}

int main(void) {
  /* On tmpfs when there is one: the store scenario syncs every commit, thousands of times. */
  snprintf(dir, sizeof(dir), "/dev/shm/kite-test-alloc-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    snprintf(dir, sizeof(dir), "/tmp/kite-test-alloc-XXXXXX");
    if (mkdtemp(dir) == NULL)
      return 1;
  }
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  snprintf(db, sizeof(db), "%s/state.db", dir);
  test_pid = getpid();
  count_every_allocator();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_load),
      cmocka_unit_test(test_bus),
      cmocka_unit_test(test_store),
      cmocka_unit_test(test_local_pool),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  if (getenv("KITE_ALLOC_KEEP"))
    fprintf(stderr, "kept %s\n", dir);
  else
    kite__rm_rf(dir);
  return rc;
}
