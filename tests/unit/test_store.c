/* The state store on real SQLite files: permissions, schema, the instance lifecycle, records
 * that survive a crash, reconciliation, refusal to forget live instances, readers in other
 * processes while one writes, and the errors a user can cause. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/store.h"
#include "kite_impl.h"

static char dir[64];
static char db[128];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/kite-test-store-XXXXXX");
  if (mkdtemp(dir) == NULL)
    return -1;
  snprintf(db, sizeof(db), "%s/state.db", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  chmod(dir, 0700);
  return kite__rm_rf(dir);
}

static kite_store_t *open_store(void) {
  kite_store_t *s = NULL;
  int rc = kite_store_open(db, &s);
  if (rc != 0)
    fail_msg("kite_store_open: %s: %s", kite_err_name(rc), kite_store_errmsg(NULL));
  return s;
}

static void put_pool(kite_store_t *s, const char *name) {
  char tag[64];
  snprintf(tag, sizeof(tag), "kite-pool-%s", name);
  kite_store_pool_t p = {.name = name,
                         .provider = "local",
                         .tag = tag,
                         .spec = "name: x\nnodes: 2\n",
                         .owner_pid = getpid(),
                         .state = "open"};
  assert_int_equal(kite_store_pool_put(s, &p), 0);
}

static mode_t file_mode(const char *path) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return st.st_mode & 0777;
}

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- files and schema ------------------------------------------------------------------- */

static void test_file_mode_0600(void **state) {
  (void)state;
  mode_t old = umask(0); /* the widest umask: the store must not depend on it */
  kite_store_t *s = open_store();
  assert_int_equal(file_mode(db), 0600);
  put_pool(s, "p");
  char wal[160], shm[160];
  snprintf(wal, sizeof(wal), "%s-wal", db);
  snprintf(shm, sizeof(shm), "%s-shm", db);
  assert_int_equal(file_mode(wal), 0600);
  assert_int_equal(file_mode(shm), 0600);
  kite_store_close(s);

  /* Someone widened the files: reopening narrows them again. The -wal must hold frames (SQLite
   * itself resets the mode of an empty one), so write without a checkpoint on close. */
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
  assert_int_equal(sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(raw, "UPDATE pools SET state = 'x'", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(raw);
  struct stat st;
  assert_int_equal(stat(wal, &st), 0);
  assert_true(st.st_size > 0);
  assert_int_equal(chmod(db, 0644), 0);
  assert_int_equal(chmod(wal, 0666), 0);
  s = open_store();
  assert_int_equal(file_mode(db), 0600);
  assert_int_equal(file_mode(wal), 0600);
  kite_store_pool_t p;
  assert_int_equal(kite_store_pool_get(s, "p", &p), 0);
  kite_store_pool_clear(&p);
  kite_store_close(s);
  umask(old);
}

static void test_default_path_under_kite_home(void **state) {
  (void)state;
  char home[160];
  snprintf(home, sizeof(home), "%s/home/nested", dir);
  setenv("KITE_HOME", home, 1);
  char *path = kite_store_default_path(NULL);
  char want[200];
  snprintf(want, sizeof(want), "%s/state.db", home);
  assert_string_equal(path, want);
  free(path);
  path = kite_store_default_path("/x/y");
  assert_string_equal(path, "/x/y/state.db");
  free(path);

  kite_store_t *s = NULL;
  assert_int_equal(kite_store_open(NULL, &s), 0);
  assert_string_equal(kite_store_path(s), want);
  assert_int_equal(file_mode(home), 0700);
  assert_int_equal(file_mode(want), 0600);
  kite_store_close(s);
  unsetenv("KITE_HOME");
}

static int count_rows(sqlite3 *raw, const char *sql) {
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int n = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return n;
}

static void test_schema_created_once(void **state) {
  (void)state;
  kite_store_close(open_store());
  kite_store_close(open_store()); /* a second open migrates nothing */
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(count_rows(raw, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                   "name IN ('schema_version', 'pools', 'nodes', 'instances', "
                                   "'tasks')"),
                   5);
  assert_int_equal(count_rows(raw, "SELECT count(*) FROM schema_version"),
                   KITE_STORE_SCHEMA_VERSION);
  assert_int_equal(count_rows(raw, "SELECT max(version) FROM schema_version"),
                   KITE_STORE_SCHEMA_VERSION);
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_prepare_v2(raw, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);

  /* A file from a newer kite is refused, not rewritten. */
  assert_int_equal(sqlite3_exec(raw, "INSERT INTO schema_version VALUES (99, 0)", NULL, NULL, NULL),
                   SQLITE_OK);
  sqlite3_close(raw);
  kite_store_t *s = NULL;
  assert_int_equal(kite_store_open(db, &s), KITE_ESTORE);
  assert_null(s);
  assert_non_null(strstr(kite_store_errmsg(NULL), "newer"));
}

static void test_not_a_store_refused(void **state) {
  (void)state;
  FILE *f = fopen(db, "w");
  assert_non_null(f);
  fputs("this is not a database, it is a text file that someone left here\n", f);
  for (int i = 0; i < 200; i++)
    fputs("padding padding padding padding\n", f);
  fclose(f);
  kite_store_t *s = NULL;
  assert_int_equal(kite_store_open(db, &s), KITE_ESTORE);
  assert_null(s);
  assert_non_null(strstr(kite_store_errmsg(NULL), "not a kite state store"));

  /* An SQLite database of something else is not taken over either. */
  unlink(db);
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
  assert_int_equal(sqlite3_exec(raw, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(raw);
  assert_int_equal(kite_store_open(db, &s), KITE_ESTORE);
  assert_non_null(strstr(kite_store_errmsg(NULL), "not a kite state store"));
}

/* Runs fn in a child that cannot bypass permissions (root drops to nobody); returns its exit
 * status. */
static int as_unprivileged(int (*fn)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
      _exit(90);
    _exit(fn());
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  return WEXITSTATUS(st);
}

static int open_in_readonly_dir(void) {
  char path[160];
  snprintf(path, sizeof(path), "%s/ro/state.db", dir);
  kite_store_t *s = NULL;
  int rc = kite_store_open(path, &s);
  if (rc != KITE_EIO || s != NULL) {
    fprintf(stderr, "want KITE_EIO, got %s: %s\n", kite_err_name(rc), kite_store_errmsg(NULL));
    return 1;
  }
  const char *msg = kite_store_errmsg(NULL);
  if (strstr(msg, path) == NULL || strstr(msg, "writable") == NULL) {
    fprintf(stderr, "unclear message: %s\n", msg);
    return 2;
  }
  return 0;
}

static void test_bad_path_clear_error(void **state) {
  (void)state;
  /* A directory that does not exist. */
  char path[160];
  snprintf(path, sizeof(path), "%s/missing/state.db", dir);
  kite_store_t *s = NULL;
  assert_int_equal(kite_store_open(path, &s), KITE_ENOENT);
  assert_null(s);
  assert_non_null(strstr(kite_store_errmsg(NULL), "does not exist"));
  assert_non_null(strstr(kite_store_errmsg(NULL), path));

  /* A directory the user cannot write. */
  char ro[160];
  snprintf(ro, sizeof(ro), "%s/ro", dir);
  assert_int_equal(mkdir(ro, 0555), 0);
  assert_int_equal(chmod(dir, 0755), 0);
  assert_int_equal(as_unprivileged(open_in_readonly_dir), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), -1);

  /* A file that belongs to someone else (only root can set one up). */
  if (geteuid() == 0) {
    kite_store_close(open_store());
    assert_int_equal(chown(db, 65534, 65534), 0);
    assert_int_equal(kite_store_open(db, &s), KITE_ESTORE);
    assert_non_null(strstr(kite_store_errmsg(NULL), "belongs to uid 65534"));
  }
}

/* ---- instances -------------------------------------------------------------------------- */

static void test_lifecycle(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  put_pool(s, "p");
  int64_t row = 0;
  assert_int_equal(kite_store_instance_launching(s, "p", 0, "local", "kite-pool-p", "tok-1", &row),
                   0);
  assert_true(row > 0);
  kite_store_instance_t x;
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_int_equal(x.state, KITE_STORE_LAUNCHING);
  assert_null(x.instance_id);
  assert_string_equal(x.launch_token, "tok-1");
  assert_int_equal(x.rank, 0);
  assert_true(x.price < 0);
  kite_store_instance_clear(&x);

  /* The same token twice is a bug in the caller. */
  int64_t row2 = 0;
  assert_int_equal(kite_store_instance_launching(s, "p", 1, "local", NULL, "tok-1", &row2),
                   KITE_EEXIST);
  /* So is a launch for a pool that was never recorded. */
  assert_int_equal(kite_store_instance_launching(s, "nope", 0, "local", NULL, "tok-x", &row2),
                   KITE_ENOENT);
  assert_non_null(strstr(kite_store_errmsg(s), "nope"));

  assert_int_equal(
      kite_store_instance_launched(s, row, "i-1", NULL, 0, "kite", "ssh-ed25519 AAAA", 0.25), 0);
  /* The address arrives later; what is NULL keeps its value. */
  assert_int_equal(kite_store_instance_launched(s, row, "i-1", "127.0.0.5", 2222, NULL, NULL, -1),
                   0);
  assert_int_equal(kite_store_instance_launched(s, row, "i-other", NULL, 0, NULL, NULL, -1),
                   KITE_EEXIST);
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_int_equal(x.state, KITE_STORE_RUNNING);
  assert_string_equal(x.instance_id, "i-1");
  assert_string_equal(x.address, "127.0.0.5");
  assert_int_equal(x.port, 2222);
  assert_string_equal(x.user, "kite");
  assert_string_equal(x.host_key, "ssh-ed25519 AAAA");
  assert_true(x.price > 0.24 && x.price < 0.26);
  assert_string_equal(x.tag, "kite-pool-p");
  assert_int_equal(x.terminated_ms, 0);
  kite_store_instance_clear(&x);

  assert_int_equal(kite_store_instance_terminating(s, row), 0);
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_int_equal(x.state, KITE_STORE_TERMINATING);
  kite_store_instance_clear(&x);

  /* Still live until the provider confirms. */
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(s, "p", true, &v, &n), 0);
  assert_int_equal(n, 1);
  kite_store_instances_free(v, n);

  assert_int_equal(kite_store_instance_terminated(s, "local", "i-1"), 0);
  assert_int_equal(kite_store_instance_terminated(s, "local", "i-1"), 0); /* idempotent */
  assert_int_equal(kite_store_instance_terminated(s, "local", "i-never"), KITE_ENOENT);
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_int_equal(x.state, KITE_STORE_TERMINATED);
  assert_true(x.terminated_ms > 0);
  kite_store_instance_clear(&x);
  assert_int_equal(kite_store_instances(s, "p", true, &v, &n), 0);
  assert_int_equal(n, 0);
  assert_null(v);
  assert_int_equal(kite_store_instances(s, NULL, false, &v, &n), 0);
  assert_int_equal(n, 1);
  kite_store_instances_free(v, n);

  /* A launch the provider refused is closed by row. */
  assert_int_equal(kite_store_instance_launching(s, "p", 1, "local", NULL, "tok-2", &row2), 0);
  assert_int_equal(kite_store_instance_terminated_row(s, row2, "launch failed: no capacity"), 0);
  assert_int_equal(kite_store_instance_get(s, row2, &x), 0);
  assert_int_equal(x.state, KITE_STORE_TERMINATED);
  assert_string_equal(x.note, "launch failed: no capacity");
  kite_store_instance_clear(&x);
  assert_int_equal(kite_store_instance_terminated_row(s, 9999, NULL), KITE_ENOENT);
  assert_int_equal(kite_store_instance_terminating(s, 9999), KITE_ENOENT);
  assert_int_equal(kite_store_instance_get(s, 9999, &x), KITE_ENOENT);

  assert_string_equal(kite_store_instance_state_name(KITE_STORE_UNKNOWN), "unknown");
  assert_string_equal(kite_store_instance_state_name(77), "invalid");
  kite_store_close(s);
}

/* A process that records launches and dies without closing anything. */
static void crash_after_launches(void) {
  kite_store_t *s = NULL;
  if (kite_store_open(db, &s) != 0)
    _exit(10);
  kite_store_pool_t p = {.name = "c", .provider = "local", .tag = "kite-pool-c", .state = "open"};
  int64_t a = 0, b = 0;
  if (kite_store_pool_put(s, &p) != 0 ||
      kite_store_instance_launching(s, "c", 0, "local", "kite-pool-c", "tok-a", &a) != 0 ||
      kite_store_instance_launched(s, a, "i-a", "127.0.0.9", 22, "kite", NULL, -1) != 0 ||
      kite_store_instance_launching(s, "c", 1, "local", "kite-pool-c", "tok-b", &b) != 0)
    _exit(11);
  kill(getpid(), SIGKILL); /* no close, no atexit, no flush: the launch call "was in flight" */
  _exit(12);
}

static void test_crash_leaves_live_records(void **state) {
  (void)state;
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    crash_after_launches();
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);

  kite_store_t *s = open_store();
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(s, NULL, true, &v, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(v[0].state, KITE_STORE_RUNNING);
  assert_string_equal(v[0].instance_id, "i-a");
  assert_string_equal(v[0].address, "127.0.0.9");
  assert_int_equal(v[1].state, KITE_STORE_LAUNCHING);
  assert_null(v[1].instance_id);
  assert_string_equal(v[1].launch_token, "tok-b");
  assert_int_equal(v[1].rank, 1);
  kite_store_instances_free(v, n);
  kite_store_pool_t p;
  assert_int_equal(kite_store_pool_get(s, "c", &p), 0);
  assert_int_equal(p.live_instances, 2);
  kite_store_pool_clear(&p);
  /* And the pool cannot be forgotten while they are live. */
  assert_int_equal(kite_store_pool_delete(s, "c"), KITE_EBUSY);
  kite_store_close(s);
}

static const kite_store_instance_t *find(const kite_store_instance_t *v, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (v[i].instance_id && strcmp(v[i].instance_id, id) == 0)
      return &v[i];
  return NULL;
}

static void test_reconcile(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  put_pool(s, "p");
  int64_t r1, r2, r3;
  assert_int_equal(kite_store_instance_launching(s, "p", 0, "local", "kite-pool-p", "tok-1", &r1),
                   0);
  assert_int_equal(kite_store_instance_launched(s, r1, "i-1", "10.0.0.1", 22, NULL, NULL, -1), 0);
  assert_int_equal(kite_store_instance_launching(s, "p", 1, "local", "kite-pool-p", "tok-2", &r2),
                   0);
  assert_int_equal(kite_store_instance_launching(s, "p", 2, "local", "kite-pool-p", "tok-3", &r3),
                   0);

  /* The provider lists i-1 (known), i-2 (the lost reply of tok-2) and i-9 (never recorded). */
  kite_store_listed_t listed[] = {
      {.instance_id = "i-1"},
      {.instance_id = "i-2", .launch_token = "tok-2", .address = "10.0.0.2"},
      {.instance_id = "i-9", .address = "10.0.0.9"},
      {.instance_id = "i-9"}, /* duplicates in a list are harmless */
  };
  kite_store_reconcile_result_t r;
  assert_int_equal(kite_store_reconcile(s, "p", "local", listed, 4, NULL, &r), 0);
  assert_int_equal(r.found, 1);
  assert_int_equal(r.adopted, 1);
  assert_int_equal(r.gone, 0);
  assert_int_equal(r.abandoned, 0);
  assert_int_equal(r.launching_kept, 1);
  assert_int_equal(r.live, 4);

  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(s, "p", true, &v, &n), 0);
  assert_int_equal(n, 4);
  const kite_store_instance_t *f = find(v, n, "i-9");
  assert_non_null(f);
  assert_int_equal(f->state, KITE_STORE_UNKNOWN);
  assert_int_equal(f->rank, -1);
  assert_string_equal(f->tag, "kite-pool-p");
  assert_string_equal(f->address, "10.0.0.9");
  assert_string_equal(f->note, "found by reconciliation");
  f = find(v, n, "i-2");
  assert_non_null(f);
  assert_int_equal(f->row, r2);
  assert_int_equal(f->state, KITE_STORE_RUNNING);
  kite_store_instances_free(v, n);

  /* Running it again changes nothing. */
  assert_int_equal(kite_store_reconcile(s, "p", "local", listed, 4, NULL, &r), 0);
  assert_int_equal(r.found + r.adopted + r.gone, 0);
  assert_int_equal(r.live, 4);

  /* A list that is not authoritative never removes anything. */
  assert_int_equal(kite_store_reconcile(s, "p", "local", NULL, 0, NULL, &r), 0);
  assert_int_equal(r.live, 4);

  /* An authoritative list with only i-9: i-1 and i-2 are gone; tok-3 is kept (nothing proves
   * its launch created nothing)… */
  kite_store_reconcile_opts_t auth = {.authoritative = true};
  assert_int_equal(kite_store_reconcile(s, "p", "local", &listed[2], 1, &auth, &r), 0);
  assert_int_equal(r.gone, 2);
  assert_int_equal(r.launching_kept, 1);
  assert_int_equal(r.live, 2);
  kite_store_instance_t x;
  assert_int_equal(kite_store_instance_get(s, r1, &x), 0);
  assert_int_equal(x.state, KITE_STORE_TERMINATED);
  kite_store_instance_clear(&x);

  /* … unless the caller gives it a grace period that it has outlived. */
  usleep(20 * 1000);
  auth.launching_grace_ms = 10 * 60 * 1000;
  assert_int_equal(kite_store_reconcile(s, "p", "local", &listed[2], 1, &auth, &r), 0);
  assert_int_equal(r.abandoned, 0);
  auth.launching_grace_ms = 5;
  assert_int_equal(kite_store_reconcile(s, "p", "local", &listed[2], 1, &auth, &r), 0);
  assert_int_equal(r.abandoned, 1);
  assert_int_equal(r.launching_kept, 0);
  assert_int_equal(r.live, 1);

  /* Its reply arrives after all: the instance exists, so the row is live again. */
  assert_int_equal(kite_store_instance_launched(s, r3, "i-3", "10.0.0.3", 22, NULL, NULL, -1), 0);
  assert_int_equal(kite_store_instance_get(s, r3, &x), 0);
  assert_int_equal(x.state, KITE_STORE_RUNNING);
  assert_int_equal(x.terminated_ms, 0);
  kite_store_instance_clear(&x);

  /* Another provider's instances are not touched by this provider's list. */
  assert_int_equal(kite_store_reconcile(s, "p", "aws", NULL, 0, &auth, &r), 0);
  assert_int_equal(r.gone, 0);
  assert_int_equal(r.live, 0);

  assert_int_equal(kite_store_reconcile(s, "nope", "local", NULL, 0, NULL, &r), KITE_ENOENT);
  kite_store_close(s);
}

static void test_found_then_reported_is_one_record(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  put_pool(s, "p");
  int64_t row;
  assert_int_equal(kite_store_instance_launching(s, "p", 0, "local", NULL, "tok-5", &row), 0);
  kite_store_listed_t l = {.instance_id = "i-5"};
  kite_store_reconcile_result_t r;
  assert_int_equal(kite_store_reconcile(s, "p", "local", &l, 1, NULL, &r), 0);
  assert_int_equal(r.found, 1);
  assert_int_equal(r.live, 2);
  /* The launch reply names the instance that reconciliation found: one live record remains. */
  assert_int_equal(kite_store_instance_launched(s, row, "i-5", NULL, 0, NULL, NULL, -1), 0);
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(s, "p", true, &v, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(v[0].row, row);
  assert_int_equal(v[0].state, KITE_STORE_RUNNING);
  kite_store_instances_free(v, n);
  kite_store_close(s);
}

/* What an instance was bought as, when its bill started, and why it ended, for `kite cost`. */
static void test_instance_bought_and_running_time(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  put_pool(s, "p");
  int64_t row;
  assert_int_equal(kite_store_instance_launching(s, "p", 1, "aws", NULL, "tok-b", &row), 0);
  /* The launch request's values, then what the provider reported (NULL keeps the place). */
  assert_int_equal(
      kite_store_instance_bought(s, row, "us-east-1", "us-east-1a", "m5.large", true, 0.03, -1), 0);
  kite_store_instance_t x;
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_int_equal(x.running_ms, 0); /* not reported yet: no bill */
  kite_store_instance_clear(&x);
  int64_t before = (int64_t)kite__wall_ms();
  assert_int_equal(kite_store_instance_launched(s, row, "i-b", NULL, 0, NULL, NULL, -1), 0);
  assert_int_equal(kite_store_instance_bought(s, row, NULL, "", NULL, true, 0.031, 0.096), 0);
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_string_equal(x.region, "us-east-1");
  assert_string_equal(x.zone, "us-east-1a");
  assert_string_equal(x.instance_type, "m5.large");
  assert_true(x.spot);
  assert_true(x.price == 0.031);
  assert_true(x.ondemand_price == 0.096);
  int64_t running = x.running_ms;
  assert_true(running >= before && running <= (int64_t)kite__wall_ms());
  kite_store_instance_clear(&x);
  /* A later report (the address) keeps when the bill started. */
  assert_int_equal(kite_store_instance_launched(s, row, "i-b", "10.0.0.5", 22, "u", NULL, -1), 0);
  assert_int_equal(kite_store_instance_note(s, row, "replaced", "preempted"), 0);
  assert_int_equal(kite_store_instance_terminated(s, "aws", "i-b"), 0);
  assert_int_equal(kite_store_instance_get(s, row, &x), 0);
  assert_true(x.running_ms == running);
  assert_string_equal(x.note, "replaced: preempted");
  assert_true(x.terminated_ms >= running);
  kite_store_instance_clear(&x);
  /* An instance never priced reads as unknown. */
  int64_t other;
  assert_int_equal(kite_store_instance_launching(s, "p", 2, "aws", NULL, "tok-c", &other), 0);
  assert_int_equal(kite_store_instance_get(s, other, &x), 0);
  assert_true(x.price < 0 && x.ondemand_price < 0 && !x.spot && x.region == NULL);
  kite_store_instance_clear(&x);
  assert_int_equal(kite_store_instance_bought(s, 9999, "r", NULL, NULL, false, 1, 1), KITE_ENOENT);
  kite_store_close(s);
}

static void test_pool_delete_refused_while_live(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  put_pool(s, "p");
  put_pool(s, "q");
  int64_t row;
  assert_int_equal(kite_store_instance_launching(s, "p", 0, "local", NULL, "tok-1", &row), 0);
  assert_int_equal(kite_store_pool_delete(s, "p"), KITE_EBUSY);
  assert_non_null(strstr(kite_store_errmsg(s), "kite down p"));
  assert_non_null(strstr(kite_store_errmsg(s), "tok-1"));

  /* Not even SQL that bypasses the store can forget a live instance. */
  sqlite3 *raw = NULL;
  assert_int_equal(sqlite3_open(db, &raw), SQLITE_OK);
  sqlite3_exec(raw, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
  assert_int_not_equal(sqlite3_exec(raw, "DELETE FROM pools WHERE name = 'p'", NULL, NULL, NULL),
                       SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(raw, "DELETE FROM instances", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(raw);

  assert_int_equal(kite_store_instance_launched(s, row, "i-1", NULL, 0, NULL, NULL, -1), 0);
  assert_int_equal(kite_store_pool_delete(s, "p"), KITE_EBUSY);
  assert_int_equal(kite_store_instance_terminating(s, row), 0);
  assert_int_equal(kite_store_pool_delete(s, "p"), KITE_EBUSY);
  assert_int_equal(kite_store_instance_terminated(s, "local", "i-1"), 0);
  assert_int_equal(kite_store_node_put(s, "p", 0, KITE_NODE_TERMINATED, "i-1", NULL), 0);
  int64_t task;
  assert_int_equal(kite_store_task_started(s, "p", 1, 0, 1, "true", &task), 0);

  assert_int_equal(kite_store_pool_delete(s, "p"), 0);
  kite_store_pool_t p;
  assert_int_equal(kite_store_pool_get(s, "p", &p), KITE_ENOENT);
  assert_int_equal(kite_store_pool_delete(s, "p"), KITE_ENOENT);
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(s, "p", false, &v, &n), 0);
  assert_int_equal(n, 0);
  kite_store_pool_t *pv = NULL;
  assert_int_equal(kite_store_pools(s, &pv, &n), 0);
  assert_int_equal(n, 1);
  assert_string_equal(pv[0].name, "q");
  kite_store_pools_free(pv, n);
  kite_store_close(s);
}

/* ---- pools, nodes, tasks ---------------------------------------------------------------- */

static void test_pools_nodes_tasks(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  kite_store_pool_t bad = {.name = "x"};
  assert_int_equal(kite_store_pool_put(s, &bad), KITE_EINVAL);
  put_pool(s, "b");
  put_pool(s, "a");
  kite_store_pool_t p;
  assert_int_equal(kite_store_pool_get(s, "a", &p), 0);
  int64_t created = p.created_ms;
  assert_string_equal(p.tag, "kite-pool-a");
  assert_string_equal(p.spec, "name: x\nnodes: 2\n");
  assert_int_equal(p.owner_pid, getpid());
  kite_store_pool_clear(&p);
  assert_int_equal(kite_store_pool_set_state(s, "a", "closed", 0, NULL), 0);
  assert_int_equal(kite_store_pool_set_state(s, "zz", "closed", 0, NULL), KITE_ENOENT);
  assert_int_equal(kite_store_pool_get(s, "a", &p), 0);
  assert_string_equal(p.state, "closed");
  assert_int_equal(p.owner_pid, 0);
  assert_int_equal(p.created_ms, created);
  kite_store_pool_clear(&p);

  kite_store_pool_t *pv = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_pools(s, &pv, &n), 0);
  assert_int_equal(n, 2);
  assert_string_equal(pv[0].name, "a");
  assert_string_equal(pv[1].name, "b");
  kite_store_pools_free(pv, n);

  assert_int_equal(kite_store_node_put(s, "a", 1, KITE_NODE_PROVISIONING, NULL, NULL), 0);
  assert_int_equal(kite_store_node_put(s, "a", 0, KITE_NODE_READY, "i-0", "10.0.0.1"), 0);
  assert_int_equal(kite_store_node_put(s, "a", 1, KITE_NODE_BOOTSTRAPPING, "i-1", "10.0.0.2"), 0);
  assert_int_equal(kite_store_node_put(s, "nope", 0, KITE_NODE_READY, NULL, NULL), KITE_ENOENT);
  assert_int_equal(kite_store_node_put(s, "a", 0, 99, NULL, NULL), KITE_EINVAL);
  kite_store_node_t *nv = NULL;
  assert_int_equal(kite_store_nodes(s, "a", &nv, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(nv[0].rank, 0);
  assert_int_equal(nv[0].state, KITE_NODE_READY);
  assert_int_equal(nv[1].state, KITE_NODE_BOOTSTRAPPING);
  assert_string_equal(nv[1].instance_id, "i-1");
  kite_store_nodes_free(nv, n);

  int64_t t1, t2;
  assert_int_equal(kite_store_task_started(s, "a", 7, 0, 1, "echo [REDACTED]", &t1), 0);
  assert_int_equal(kite_store_task_started(s, "a", 7, 1, 2, "echo [REDACTED]", &t2), 0);
  assert_int_equal(kite_store_task_finished(s, t1, 0, NULL), 0);
  assert_int_equal(kite_store_task_finished(s, t2, -1, "rank 1: node was lost"), 0);
  assert_int_equal(kite_store_task_finished(s, 12345, 0, NULL), KITE_ENOENT);
  assert_int_equal(kite_store_task_started(s, "nope", 1, 0, 1, "x", &t1), KITE_ENOENT);
  kite_store_task_t *tv = NULL;
  assert_int_equal(kite_store_tasks(s, "a", 0, &tv, &n), 0);
  assert_int_equal(n, 2);
  assert_int_equal(tv[0].row, t2); /* newest first */
  assert_int_equal(tv[0].exit_status, -1);
  assert_int_equal(tv[0].attempt, 2);
  assert_string_equal(tv[0].error, "rank 1: node was lost");
  assert_int_equal(tv[1].exit_status, 0);
  assert_null(tv[1].error);
  assert_true(tv[1].finished_ms >= tv[1].started_ms);
  assert_int_equal(tv[1].task_id, 7);
  kite_store_tasks_free(tv, n);
  assert_int_equal(kite_store_tasks(s, "a", 1, &tv, &n), 0);
  assert_int_equal(n, 1);
  kite_store_tasks_free(tv, n);
  kite_store_close(s);
}

/* A pool's task history keeps its newest KITE_STORE_TASKS_KEPT rows, another pool's untouched. */
static void test_task_history_bounded(void **state) {
  (void)state;
  kite_store_t *s = open_store();
  put_pool(s, "a");
  put_pool(s, "b");
  enum { EXTRA = 37, BATCH = 500 };
  kite_store_task_t one = {.pool = "b", .task_id = 1, .command = "true", .started_ms = 1};
  assert_int_equal(kite_store_tasks_record(s, &one, 1), 0);
  kite_store_task_t *batch = calloc(BATCH, sizeof(*batch));
  assert_non_null(batch);
  uint64_t id = 0;
  while (id < KITE_STORE_TASKS_KEPT + EXTRA) {
    size_t k = 0;
    for (; k < BATCH && id < KITE_STORE_TASKS_KEPT + EXTRA; k++, id++)
      batch[k] = (kite_store_task_t){.pool = "a",
                                     .task_id = id + 1,
                                     .command = "echo",
                                     .started_ms = (int64_t)id + 1,
                                     .finished_ms = (int64_t)id + 2,
                                     .exit_status = 0};
    assert_int_equal(kite_store_tasks_record(s, batch, k), 0);
  }
  free(batch);
  kite_store_task_t *tv = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_tasks(s, "a", 0, &tv, &n), 0);
  assert_int_equal(n, KITE_STORE_TASKS_KEPT);
  assert_int_equal(tv[0].task_id, KITE_STORE_TASKS_KEPT + EXTRA); /* the newest stays */
  assert_int_equal(tv[n - 1].task_id, EXTRA + 1);                 /* the oldest EXTRA went */
  kite_store_tasks_free(tv, n);
  assert_int_equal(kite_store_tasks(s, "b", 0, &tv, &n), 0);
  assert_int_equal(n, 1);
  kite_store_tasks_free(tv, n);
  kite_store_close(s);
}

/* ---- concurrency ------------------------------------------------------------------------ */

/* One `kite status`-like reader in its own process: reads the pools and the instances until
 * the writer says it is done. Exit 0 when every read succeeded and was consistent. */
static int reader(int ready_fd, int id) {
  int64_t deadline = mono_ms() + 60000;
  size_t last_n = 0, distinct = 0;
  unsigned reads = 0;
  kite_store_t *s = NULL;
  bool signalled = false;
  for (;;) {
    if (mono_ms() > deadline) {
      fprintf(stderr, "reader %d: the writer never finished\n", id);
      return 5;
    }
    /* Every other round opens afresh, as separate `kite status` runs do. */
    if (s == NULL || reads % 2 == 0) {
      kite_store_close(s);
      int rc = kite_store_open(db, &s);
      if (rc != 0) {
        fprintf(stderr, "reader %d: open: %s: %s\n", id, kite_err_name(rc),
                kite_store_errmsg(NULL));
        return 2;
      }
    }
    if (!signalled) {
      if (write(ready_fd, "r", 1) != 1)
        return 9;
      close(ready_fd);
      signalled = true;
    }
    kite_store_pool_t *pv = NULL;
    size_t np = 0;
    int rc = kite_store_pools(s, &pv, &np);
    if (rc != 0) {
      fprintf(stderr, "reader %d: pools: %s: %s\n", id, kite_err_name(rc), kite_store_errmsg(s));
      return 2;
    }
    long expected = -1;
    for (size_t i = 0; i < np; i++)
      if (strcmp(pv[i].name, "done") == 0)
        expected = strtol(pv[i].spec, NULL, 10);
    kite_store_pools_free(pv, np);

    kite_store_instance_t *v = NULL;
    size_t n = 0;
    rc = kite_store_instances(s, "p", false, &v, &n);
    if (rc != 0) {
      fprintf(stderr, "reader %d: instances: %s: %s\n", id, kite_err_name(rc),
              kite_store_errmsg(s));
      return 2;
    }
    for (size_t i = 0; i < n; i++) {
      /* launched() writes the id, the address and the state in one transaction. */
      bool running = v[i].state == KITE_STORE_RUNNING;
      if (running != (v[i].instance_id != NULL) || running != (v[i].address != NULL)) {
        fprintf(stderr, "reader %d: half-written row %lld\n", id, (long long)v[i].row);
        kite_store_instances_free(v, n);
        return 3;
      }
    }
    kite_store_instances_free(v, n);
    if (n < last_n) {
      fprintf(stderr, "reader %d: count went back from %zu to %zu\n", id, last_n, n);
      return 4;
    }
    if (n != last_n)
      distinct++;
    last_n = n;
    reads++;
    if (expected >= 0) {
      if ((long)n != expected) {
        fprintf(stderr, "reader %d: done with %ld, but read %zu\n", id, expected, n);
        return 6;
      }
      break;
    }
  }
  kite_store_close(s);
  if (distinct < 3) {
    fprintf(stderr, "reader %d: saw only %zu distinct counts in %u reads: no overlap\n", id,
            distinct, reads);
    return 7;
  }
  return 0;
}

static void test_readers_while_one_writes(void **state) {
  (void)state;
  /* The file exists before the readers start; the writer's handle is opened after the fork
   * (an SQLite connection must not cross a fork). */
  kite_store_t *s = open_store();
  put_pool(s, "p");
  kite_store_close(s);

  enum { READERS = 2 };
  pid_t pids[READERS];
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  for (int i = 0; i < READERS; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      close(fds[0]);
      _exit(reader(fds[1], i));
    }
  }
  close(fds[1]);
  char c;
  for (int i = 0; i < READERS; i++)
    assert_int_equal(read(fds[0], &c, 1), 1);
  close(fds[0]);

  s = open_store();
  int64_t start = mono_ms();
  int count = 0;
  while (count < 300 || mono_ms() - start < 1500) {
    char token[32], id[32], addr[32];
    snprintf(token, sizeof(token), "tok-%d", count);
    snprintf(id, sizeof(id), "i-%d", count);
    snprintf(addr, sizeof(addr), "10.0.%d.%d", count / 250, count % 250);
    int64_t row = 0;
    int rc = kite_store_instance_launching(s, "p", count, "local", "kite-pool-p", token, &row);
    if (rc == 0)
      rc = kite_store_instance_launched(s, row, id, addr, 22, "kite", NULL, 0.01);
    if (rc == 0 && count % 10 == 0)
      rc = kite_store_node_put(s, "p", (uint32_t)count, KITE_NODE_READY, id, addr);
    if (rc == 0 && count % 5 == 0) {
      int64_t t;
      rc = kite_store_task_started(s, "p", (uint64_t)count, 0, 1, "hostname", &t);
      if (rc == 0)
        rc = kite_store_task_finished(s, t, 0, NULL);
    }
    if (rc != 0)
      fail_msg("writer: %s: %s", kite_err_name(rc), kite_store_errmsg(s));
    count++;
    if (count > 100000)
      break;
  }
  char total[16];
  snprintf(total, sizeof(total), "%d", count);
  kite_store_pool_t done = {
      .name = "done", .provider = "local", .tag = "t", .spec = total, .state = "done"};
  assert_int_equal(kite_store_pool_put(s, &done), 0);
  print_message("writer: %d launches in %lld ms\n", count, (long long)(mono_ms() - start));

  for (int i = 0; i < READERS; i++) {
    int st = 0;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  kite_store_close(s);
}

/* Processes that open one new store at the same moment: each must see either no schema or
 * the whole schema, never "not a kite state store" while another is creating it. */
static void test_many_open_a_new_store_at_once(void **state) {
  (void)state;
  enum { ROUNDS = 60, OPENERS = 4 };
  for (int round = 0; round < ROUNDS; round++) {
    assert_int_equal(kite_store_remove(db), 0);
    pid_t kids[OPENERS];
    for (int k = 0; k < OPENERS; k++) {
      kids[k] = fork();
      assert_true(kids[k] >= 0);
      if (kids[k] == 0) {
        kite_store_t *s = NULL;
        int rc = kite_store_open(db, &s);
        if (rc != 0)
          fprintf(stderr, "round %d opener %d: %s\n", round, k, kite_store_errmsg(NULL));
        kite_store_close(s);
        _exit(rc == 0 ? 0 : 1);
      }
    }
    int failed = 0;
    for (int k = 0; k < OPENERS; k++) {
      int st = 0;
      assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
      failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(failed, 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_file_mode_0600, setup, teardown),
      cmocka_unit_test_setup_teardown(test_default_path_under_kite_home, setup, teardown),
      cmocka_unit_test_setup_teardown(test_schema_created_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_not_a_store_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_path_clear_error, setup, teardown),
      cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_crash_leaves_live_records, setup, teardown),
      cmocka_unit_test_setup_teardown(test_reconcile, setup, teardown),
      cmocka_unit_test_setup_teardown(test_found_then_reported_is_one_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_instance_bought_and_running_time, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pool_delete_refused_while_live, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pools_nodes_tasks, setup, teardown),
      cmocka_unit_test_setup_teardown(test_task_history_bounded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_readers_while_one_writes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_many_open_a_new_store_at_once, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
