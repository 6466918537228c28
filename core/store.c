/* The state store: pools, nodes, instances and task history in one SQLite file.
 *
 * Design notes
 * - What it owns: one SQLite connection and its prepared statements. It reacts to nothing and
 *   emits nothing; the pool, the nodes and the CLI call it.
 * - Why it exists: every resource that costs money is recorded before it exists and forgotten
 *   only after the provider confirms it is gone. An instance row is written LAUNCHING (with its
 *   launch token) before the launch call, RUNNING with the provider's id when that is known, and
 *   TERMINATED only on the provider's confirmation. A trigger refuses to delete a live row, so
 *   not even a cascading pool delete can forget one.
 * - Durability: WAL mode. Commits that concern money (pools, nodes, instances) run with
 *   synchronous=FULL: the WAL is fsynced before the commit returns, so a launch recorded just
 *   before the launch call survives a crash of the process and of the machine. Task history
 *   runs with synchronous=NORMAL (durable across a process crash, may lose the last entries on
 *   power loss), because a broadcast to thousands of nodes must not cost thousands of fsyncs on
 *   the loop thread. Switching the pragma between commits costs no I/O, and a FULL commit also
 *   makes every NORMAL commit before it durable.
 * - Concurrency: several kite processes read while one writes (WAL readers never block and are
 *   never blocked). Writers wait for each other through the busy timeout. Every multi-statement
 *   write is BEGIN IMMEDIATE, so it takes the write lock up front and never fails half-way with
 *   a stale snapshot (SQLITE_BUSY_SNAPSHOT bypasses the busy handler); single statements are
 *   their own transaction. Each list is one SELECT, hence one consistent snapshot.
 * - Permissions: the file is created with open(O_CREAT, 0600) before SQLite sees it, so there
 *   is no moment with wider permissions; SQLite creates -wal and -shm with the database's mode.
 *   Existing files with wider permissions are narrowed at open.
 * - SQL is constant text; every value is a bound parameter. Every statement goes through one
 *   loop, query(): the cached prepared statement, its arguments (ARGS(A_STR(..), A_I64(..))),
 *   its rows handed to a row callback, SQLite's errors mapped, the statement reset.
 * - Schema: a schema_version table and a list of migrations, each applied once in one
 *   IMMEDIATE transaction (so two processes opening a new file at once do not race). */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/store.h"
#include "kite_impl.h"

#define BUSY_TIMEOUT_MS 5000
#define ERRLEN 512

struct kite_store {
  sqlite3 *db;
  char *path;
  int sync; /* the synchronous level in force: 0 not set yet, 1 NORMAL, 2 FULL */
  sqlite3_stmt **stmts;
  char err[ERRLEN];
};

/* The last kite_store_open failure of this thread (there is no store to hold it). */
static _Thread_local char open_err[ERRLEN];

/* ---- schema -------------------------------------------------------------------------------- */

/* migrations[i] takes the schema from version i to version i + 1. */
/* The offers table's columns, as migrations 3 and 4 create them (4 changes only the key). */
#define OFFERS_COLUMNS                                                                             \
  "  provider TEXT NOT NULL,"                                                                      \
  "  region TEXT NOT NULL,"                                                                        \
  "  zone TEXT NOT NULL,"                                                                          \
  "  instance_type TEXT NOT NULL,"                                                                 \
  "  snapshot INTEGER NOT NULL,"                                                                   \
  "  vcpus INTEGER NOT NULL,"                                                                      \
  "  memory_mb INTEGER NOT NULL,"                                                                  \
  "  accelerator TEXT NOT NULL,"                                                                   \
  "  accelerator_count INTEGER NOT NULL,"                                                          \
  "  accelerator_memory_mb INTEGER NOT NULL,"                                                      \
  "  disk_gb INTEGER NOT NULL,"                                                                    \
  "  arch TEXT NOT NULL,"                                                                          \
  "  price REAL,"                                                                                  \
  "  spot_price REAL,"                                                                             \
  "  available INTEGER NOT NULL,"                                                                  \
  "  fetched_ms INTEGER NOT NULL,"                                                                 \
  "  source TEXT NOT NULL,"

static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE schema_version("
    "  version INTEGER PRIMARY KEY,"
    "  applied_ms INTEGER NOT NULL);"
    "CREATE TABLE pools("
    "  name TEXT PRIMARY KEY NOT NULL,"
    "  provider TEXT NOT NULL,"
    "  tag TEXT NOT NULL,"
    "  spec TEXT,"
    "  owner_pid INTEGER NOT NULL DEFAULT 0,"
    "  socket_path TEXT,"
    "  state TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE TABLE nodes("
    "  pool TEXT NOT NULL REFERENCES pools(name) ON DELETE CASCADE,"
    "  rank INTEGER NOT NULL,"
    "  state TEXT NOT NULL,"
    "  instance_id TEXT,"
    "  address TEXT,"
    "  updated_ms INTEGER NOT NULL,"
    "  PRIMARY KEY(pool, rank));"
    "CREATE TABLE instances("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  pool TEXT NOT NULL REFERENCES pools(name) ON DELETE CASCADE,"
    "  rank INTEGER,"
    "  provider TEXT NOT NULL,"
    "  launch_token TEXT UNIQUE,"
    "  instance_id TEXT,"
    "  state TEXT NOT NULL CHECK(state IN"
    "    ('launching','running','terminating','terminated','unknown')),"
    "  address TEXT,"
    "  port INTEGER,"
    "  user TEXT,"
    "  host_key TEXT,"
    "  price REAL,"
    "  tag TEXT,"
    "  note TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL,"
    "  terminated_ms INTEGER);"
    /* One live record per provider instance; terminated history may repeat an id. */
    "CREATE UNIQUE INDEX instances_live_id ON instances(provider, instance_id)"
    "  WHERE instance_id IS NOT NULL AND state != 'terminated';"
    "CREATE INDEX instances_pool_state ON instances(pool, state);"
    "CREATE TRIGGER instances_keep_live BEFORE DELETE ON instances"
    "  WHEN OLD.state != 'terminated'"
    "  BEGIN SELECT RAISE(ABORT, 'a live instance cannot be forgotten'); END;"
    "CREATE TABLE tasks("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  pool TEXT NOT NULL REFERENCES pools(name) ON DELETE CASCADE,"
    "  task_id INTEGER NOT NULL,"
    "  rank INTEGER NOT NULL,"
    "  attempt INTEGER NOT NULL DEFAULT 1,"
    "  command TEXT,"
    "  started_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER,"
    "  exit_status INTEGER,"
    "  error TEXT);"
    "CREATE INDEX tasks_pool ON tasks(pool, id);",
    /* 2: every instance's reach record (what it takes to find it again from any process). */
    "ALTER TABLE instances ADD COLUMN reach TEXT;"
    "ALTER TABLE instances ADD COLUMN key_path TEXT;"
    /* and every task's signal, instance and a bounded tail of its output. */
    "ALTER TABLE tasks ADD COLUMN signal TEXT;"
    "ALTER TABLE tasks ADD COLUMN instance_id TEXT;"
    "ALTER TABLE tasks ADD COLUMN output BLOB;"
    "ALTER TABLE tasks ADD COLUMN output_truncated INTEGER NOT NULL DEFAULT 0;",
    /* 3: the catalog's cache (catalog.h): offers as each provider answered them (snapshot 0)
     * or as a snapshot of public price data gave them (snapshot 1), with their fetch time. */
    "CREATE TABLE offers(" OFFERS_COLUMNS
    "  PRIMARY KEY(provider, snapshot, region, zone, instance_type));"
    /* what the cache holds of each provider (kite_store_offers_summary) without its rows */
    "CREATE INDEX offers_fetched ON offers(provider, snapshot, fetched_ms);"
    /* and what each instance was bought as, for `kite cost`: where, which type, spot or not,
     * the on-demand price beside its own, and when it started running. */
    "ALTER TABLE instances ADD COLUMN region TEXT;"
    "ALTER TABLE instances ADD COLUMN zone TEXT;"
    "ALTER TABLE instances ADD COLUMN instance_type TEXT;"
    "ALTER TABLE instances ADD COLUMN spot INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE instances ADD COLUMN ondemand_price REAL;"
    "ALTER TABLE instances ADD COLUMN running_ms INTEGER;",
    /* 4: one type may be offered with several sets of accelerators (Compute Engine's N1 with
     * 1, 2 or 4 T4s): they are part of an offer's key. The offers are a cache: read again. */
    "DROP INDEX offers_fetched;"
    "DROP TABLE offers;"
    "CREATE TABLE offers(" OFFERS_COLUMNS
    "  PRIMARY KEY(provider, snapshot, region, zone, instance_type, accelerator,"
    "              accelerator_count));"
    "CREATE INDEX offers_fetched ON offers(provider, snapshot, fetched_ms);",
};

_Static_assert(KITE_ARRAY_SIZE(migrations) == KITE_STORE_SCHEMA_VERSION,
               "one migration per schema version");

/* ---- statements ---------------------------------------------------------------------------- */

#define POOL_COLS                                                                                  \
  "p.name, p.provider, p.tag, p.spec, p.owner_pid, p.socket_path, p.state, p.created_ms, "         \
  "p.updated_ms, (SELECT count(*) FROM instances i WHERE i.pool = p.name AND "                     \
  "i.state != 'terminated')"
#define INST_COLS                                                                                  \
  "id, pool, rank, provider, launch_token, instance_id, state, address, port, user, host_key, "    \
  "price, tag, note, created_ms, updated_ms, terminated_ms, reach, key_path, region, zone, "       \
  "instance_type, spot, ondemand_price, running_ms"
#define TASK_COLS                                                                                  \
  "id, pool, task_id, rank, attempt, command, started_ms, finished_ms, exit_status, error, "       \
  "signal, instance_id, output, output_truncated"

#define OFFER_COLS                                                                                 \
  "provider, snapshot, region, zone, instance_type, vcpus, memory_mb, accelerator, "               \
  "accelerator_count, accelerator_memory_mb, disk_gb, arch, price, spot_price, available, "        \
  "fetched_ms, source"

#define STMT_TABLE(X)                                                                              \
  X(SCHEMA_SEEN, "SELECT count(*) FILTER (WHERE name = 'schema_version'), count(*) "               \
                 "FROM sqlite_master WHERE type = 'table'")                                        \
  X(VERSION_GET, "SELECT coalesce(max(version), 0) FROM schema_version")                           \
  X(VERSION_PUT, "INSERT INTO schema_version(version, applied_ms) VALUES(?1, ?2)")                 \
  X(POOL_PUT, "INSERT INTO pools(name, provider, tag, spec, owner_pid, socket_path, state, "       \
              "created_ms, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) "                \
              "ON CONFLICT(name) DO UPDATE SET provider = excluded.provider, "                     \
              "tag = excluded.tag, spec = excluded.spec, owner_pid = excluded.owner_pid, "         \
              "socket_path = excluded.socket_path, state = excluded.state, "                       \
              "updated_ms = excluded.updated_ms")                                                  \
  X(POOL_SET_STATE, "UPDATE pools SET state = ?2, owner_pid = ?3, socket_path = ?4, "              \
                    "updated_ms = ?5 WHERE name = ?1")                                             \
  X(POOL_GET, "SELECT " POOL_COLS " FROM pools p WHERE p.name = ?1")                               \
  X(POOL_LIST, "SELECT " POOL_COLS " FROM pools p ORDER BY p.name")                                \
  X(POOL_TAG, "SELECT tag FROM pools WHERE name = ?1")                                             \
  X(POOL_LIVE, "SELECT count(*), (SELECT coalesce(instance_id, 'launch ' || "                      \
               "coalesce(launch_token, '#' || id)) || ' at ' || provider || ' (' || state || "     \
               "')' FROM instances WHERE pool = ?1 AND state != 'terminated' ORDER BY id "         \
               "LIMIT 1) FROM instances WHERE pool = ?1 AND state != 'terminated'")                \
  X(POOL_DELETE, "DELETE FROM pools WHERE name = ?1")                                              \
  X(NODE_PUT, "INSERT INTO nodes(pool, rank, state, instance_id, address, updated_ms) "            \
              "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(pool, rank) DO UPDATE SET "              \
              "state = excluded.state, instance_id = excluded.instance_id, "                       \
              "address = excluded.address, updated_ms = excluded.updated_ms")                      \
  X(NODE_LIST, "SELECT pool, rank, state, instance_id, address, updated_ms FROM nodes "            \
               "WHERE pool = ?1 ORDER BY rank")                                                    \
  X(INST_LAUNCHING, "INSERT INTO instances(pool, rank, provider, launch_token, state, tag, "       \
                    "created_ms, updated_ms, reach) VALUES(?1, ?2, ?3, ?4, 'launching', ?5, ?6, "  \
                    "?6, ?7)")                                                                     \
  X(INST_IDENTITY, "SELECT provider, instance_id FROM instances WHERE id = ?1")                    \
  X(INST_LIVE_BY_ID, "SELECT id, state FROM instances WHERE provider = ?1 AND "                    \
                     "instance_id = ?2 AND state != 'terminated' AND id != ?3")                    \
  X(INST_MERGE, "UPDATE instances SET state = 'terminated', terminated_ms = ?2, "                  \
                "updated_ms = ?2, note = 'duplicate record of row ' || ?3 || "                     \
                "', which tracks the same instance' WHERE id = ?1 AND state = 'unknown'")          \
  X(INST_LAUNCHED, "UPDATE instances SET instance_id = ?2, address = coalesce(?3, address), "      \
                   "port = coalesce(?4, port), user = coalesce(?5, user), "                        \
                   "host_key = coalesce(?6, host_key), price = coalesce(?7, price), "              \
                   "state = CASE state WHEN 'terminating' THEN 'terminating' "                     \
                   "ELSE 'running' END, terminated_ms = NULL, updated_ms = ?8, "                   \
                   "running_ms = coalesce(running_ms, ?8) WHERE id = ?1")                          \
  X(INST_BOUGHT, "UPDATE instances SET region = coalesce(?2, region), zone = coalesce(?3, zone), " \
                 "instance_type = coalesce(?4, instance_type), spot = ?5, "                        \
                 "price = coalesce(?6, price), ondemand_price = coalesce(?7, ondemand_price), "    \
                 "updated_ms = ?8 WHERE id = ?1")                                                  \
  X(INST_NOTE, "UPDATE instances SET note = ?2 || coalesce(': ' || ?3, ''), updated_ms = ?4 "      \
               "WHERE id = ?1")                                                                    \
  X(INST_SET_KEY, "UPDATE instances SET key_path = ?2, updated_ms = ?3 WHERE id = ?1")             \
  X(INST_TERMINATING, "UPDATE instances SET state = 'terminating', updated_ms = ?2 "               \
                      "WHERE id = ?1 AND state != 'terminated'")                                   \
  X(INST_TERMINATED_ID, "UPDATE instances SET state = 'terminated', terminated_ms = ?3, "          \
                        "updated_ms = ?3 WHERE provider = ?1 AND instance_id = ?2 AND "            \
                        "state != 'terminated'")                                                   \
  X(INST_ANY_BY_ID, "SELECT count(*) FROM instances WHERE provider = ?1 AND instance_id = ?2")     \
  X(INST_TERMINATED_ROW, "UPDATE instances SET state = 'terminated', terminated_ms = ?2, "         \
                         "updated_ms = ?2, note = coalesce(?3, note) WHERE id = ?1 AND "           \
                         "state != 'terminated'")                                                  \
  X(INST_EXISTS, "SELECT count(*) FROM instances WHERE id = ?1")                                   \
  X(INST_GET, "SELECT " INST_COLS " FROM instances WHERE id = ?1")                                 \
  X(INST_LIST, "SELECT " INST_COLS " FROM instances WHERE (?1 IS NULL OR pool = ?1) AND "          \
               "(?2 = 0 OR state != 'terminated') ORDER BY id")                                    \
  X(REC_CLEAR, "DELETE FROM temp.kite_listed")                                                     \
  X(REC_ADD, "INSERT OR IGNORE INTO temp.kite_listed(id, address) VALUES(?1, ?2)")                 \
  X(REC_TOKEN, "SELECT id FROM instances WHERE pool = ?1 AND provider = ?2 AND "                   \
               "launch_token = ?3 AND state = 'launching' AND instance_id IS NULL")                \
  X(REC_ADOPT, "UPDATE instances SET instance_id = ?2, state = 'running', "                        \
               "address = coalesce(?3, address), updated_ms = ?4, "                                \
               "note = 'launch reply lost; adopted by reconciliation' WHERE id = ?1")              \
  X(REC_FOUND, "INSERT INTO instances(pool, rank, provider, instance_id, state, address, tag, "    \
               "note, created_ms, updated_ms, reach) SELECT ?1, NULL, ?2, l.id, 'unknown', "       \
               "l.address, ?3, 'found by reconciliation', ?4, ?4, ?5 FROM temp.kite_listed l "     \
               "WHERE NOT EXISTS (SELECT 1 FROM instances i WHERE i.provider = ?2 AND "            \
               "i.instance_id = l.id AND i.state != 'terminated') ORDER BY l.id")                  \
  X(REC_GONE, "UPDATE instances SET state = 'terminated', terminated_ms = ?3, updated_ms = ?3, "   \
              "note = 'not in the provider''s list of the pool''s instances' "                     \
              "WHERE pool = ?1 AND provider = ?2 AND instance_id IS NOT NULL AND "                 \
              "state != 'terminated' AND instance_id NOT IN (SELECT id FROM temp.kite_listed)")    \
  X(REC_ABANDON, "UPDATE instances SET state = 'terminated', terminated_ms = ?3, "                 \
                 "updated_ms = ?3, note = 'launch never appeared in the provider''s list' "        \
                 "WHERE pool = ?1 AND provider = ?2 AND state = 'launching' AND "                  \
                 "instance_id IS NULL AND created_ms < ?4")                                        \
  X(REC_COUNT, "SELECT coalesce(sum(state = 'launching' AND instance_id IS NULL), 0), "            \
               "count(*) FROM instances WHERE pool = ?1 AND provider = ?2 AND "                    \
               "state != 'terminated'")                                                            \
  X(TASK_START, "INSERT INTO tasks(pool, task_id, rank, attempt, command, started_ms) "            \
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6)")                                                  \
  X(TASK_FINISH, "UPDATE tasks SET finished_ms = ?2, exit_status = ?3, error = ?4 "                \
                 "WHERE id = ?1")                                                                  \
  X(TASK_RECORD,                                                                                   \
    "INSERT INTO tasks(pool, task_id, rank, attempt, command, started_ms, "                        \
    "finished_ms, exit_status, error, signal, instance_id, output, output_truncated) "             \
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)")                              \
  X(TASK_TRIM, "DELETE FROM tasks WHERE pool = ?1 AND id <= (SELECT id FROM tasks WHERE "          \
               "pool = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)")                                    \
  X(TASK_LIST, "SELECT " TASK_COLS " FROM tasks WHERE pool = ?1 ORDER BY id DESC LIMIT ?2")        \
  X(OFFERS_CLEAR, "DELETE FROM offers WHERE provider = ?1 AND snapshot = ?2 AND "                  \
                  "(?3 IS NULL OR region = ?3)")                                                   \
  X(OFFERS_PUT, "INSERT OR REPLACE INTO offers(" OFFER_COLS ") VALUES(?1, ?2, ?3, ?4, ?5, ?6, "    \
                "?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)")                             \
  X(OFFERS_GET, "SELECT " OFFER_COLS " FROM offers WHERE (?1 IS NULL OR provider = ?1)")           \
  X(OFFERS_SUMMARY, "SELECT provider, coalesce(max(CASE snapshot WHEN 0 THEN fetched_ms END), "    \
                    "0), sum(snapshot = 0), sum(snapshot = 1) FROM offers GROUP BY provider "      \
                    "ORDER BY provider")

enum stmt_id {
#define STMT_ENUM(name, sql) ST_##name,
  STMT_TABLE(STMT_ENUM)
#undef STMT_ENUM
      ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
#define STMT_SQL(name, sql) sql,
    STMT_TABLE(STMT_SQL)
#undef STMT_SQL
};

/* ---- errors -------------------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int set_err(kite_store_t *s, int code, const char *fmt,
                                                         ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s ? s->err : open_err, ERRLEN, fmt, ap);
  va_end(ap);
  return code;
}

/* Maps the connection's last SQLite error to a kite code and keeps SQLite's message. */
static int db_fail(kite_store_t *s, const char *what) {
  int rc = sqlite3_errcode(s->db);
  const char *msg = sqlite3_errmsg(s->db);
  switch (rc) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return set_err(s, KITE_EBUSY,
                   "%s: %s (another kite process held the state store %s for more than %d ms; "
                   "try again)",
                   what, msg, s->path, BUSY_TIMEOUT_MS);
  case SQLITE_NOMEM:
    return set_err(s, KITE_ENOMEM, "%s: %s", what, msg);
  default:
    return set_err(s, KITE_ESTORE, "%s: %s (state store %s)", what, msg, s->path);
  }
}

static bool is_constraint(kite_store_t *s, int extended) {
  return sqlite3_extended_errcode(s->db) == extended;
}

/* ---- the statement loop -------------------------------------------------------------------- */

/* The prepared statement id, reset and with no bindings; NULL on failure (s->err says why). */
static sqlite3_stmt *stmt(kite_store_t *s, enum stmt_id id) {
  if (s->stmts[id] == NULL && sqlite3_prepare_v3(s->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                                 &s->stmts[id], NULL) != SQLITE_OK) {
    db_fail(s, "preparing a statement");
    return NULL;
  }
  sqlite3_reset(s->stmts[id]);
  sqlite3_clear_bindings(s->stmts[id]);
  return s->stmts[id];
}

/* Ends a statement's use; bound strings (SQLITE_STATIC) are not referenced afterwards. */
static void finish(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* A value for one parameter, ?1 … ?N in order. A NULL string and A_NULL bind SQL NULL. */
typedef struct arg {
  enum { ARG_NULL, ARG_STR, ARG_I64, ARG_DBL, ARG_BLOB } type;
  const void *p;
  int64_t i;
  double d;
  size_t n;
} arg_t;

#define A_NULL ((arg_t){.type = ARG_NULL})
#define A_STR(v) ((arg_t){.type = ARG_STR, .p = (v)})
#define A_I64(v) ((arg_t){.type = ARG_I64, .i = (int64_t)(v)})
#define A_DBL(v) ((arg_t){.type = ARG_DBL, .d = (v)})
/* Copied by SQLite (the caller's buffer may go before the statement is reset). */
#define A_BLOB(ptr, len) ((arg_t){.type = ARG_BLOB, .p = (ptr), .n = (len)})
/* The arguments of one statement: ARGS(A_STR(name), A_I64(rank)) → an array and its length. */
#define ARGS(...) (const arg_t[]){__VA_ARGS__}, KITE_ARRAY_SIZE(((const arg_t[]){__VA_ARGS__}))
#define NO_ARGS NULL, 0

/* A row callback returns 0 for the next row, ROW_STOP to end the statement there (successfully),
 * or a negative kite error (with s->err set), which ends it with that error. */
#define ROW_STOP 1
typedef int (*row_fn)(kite_store_t *s, sqlite3_stmt *st, void *data);

static void bind_args(sqlite3_stmt *st, const arg_t *args, size_t n) {
  for (size_t k = 0; k < n; k++) {
    int i = (int)k + 1;
    const arg_t *a = &args[k];
    if (a->type == ARG_STR && a->p)
      sqlite3_bind_text(st, i, a->p, -1, SQLITE_STATIC);
    else if (a->type == ARG_I64)
      sqlite3_bind_int64(st, i, a->i);
    else if (a->type == ARG_DBL)
      sqlite3_bind_double(st, i, a->d);
    else if (a->type == ARG_BLOB && a->p && a->n)
      sqlite3_bind_blob(st, i, a->p, (int)a->n, SQLITE_TRANSIENT);
    else
      sqlite3_bind_null(st, i);
  }
}

/* The one statement loop: prepares (once) the statement id, binds args, steps it to its end
 * giving each row to row(s, st, data) (row NULL: the statement gives no rows), and resets it.
 * *rows (when not NULL) counts the rows handed over. Returns 0, the row callback's error, or
 * SQLite's mapped to a kite code with what naming the operation; KITE_ESTORE when the
 * statement cannot be prepared (KITE_ENOMEM when for want of memory). */
static int query(kite_store_t *s, enum stmt_id id, const arg_t *args, size_t nargs, row_fn row,
                 void *data, size_t *rows, const char *what) {
  if (rows)
    *rows = 0;
  sqlite3_stmt *st = stmt(s, id);
  if (st == NULL)
    return sqlite3_errcode(s->db) == SQLITE_NOMEM ? KITE_ENOMEM : KITE_ESTORE;
  bind_args(st, args, nargs);
  int rc = 0, step;
  while ((step = sqlite3_step(st)) == SQLITE_ROW && row) {
    if (rows)
      (*rows)++;
    if ((rc = row(s, st, data)) != 0)
      break;
  }
  if (rc == 0 && step != SQLITE_DONE)
    rc = db_fail(s, what);
  finish(st);
  return rc == ROW_STOP ? 0 : rc;
}

/* A statement that gives no rows. */
static int run(kite_store_t *s, enum stmt_id id, const arg_t *args, size_t nargs,
               const char *what) {
  return query(s, id, args, nargs, NULL, NULL, NULL, what);
}

typedef struct ints {
  int64_t *a, *b;
} ints_t;

static int ints_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  ints_t *v = data;
  (void)s;
  if (v->a)
    *v->a = sqlite3_column_int64(st, 0);
  if (v->b)
    *v->b = sqlite3_column_int64(st, 1);
  return ROW_STOP;
}

/* A one-row, integer-column query: *a and *b (either may be NULL) get columns 0 and 1. */
static int query_ints(kite_store_t *s, enum stmt_id id, const arg_t *args, size_t nargs,
                      const char *what, int64_t *a, int64_t *b) {
  ints_t v = {a, b};
  size_t rows;
  int rc = query(s, id, args, nargs, ints_row, &v, &rows, what);
  if (rc == 0 && rows == 0)
    rc = set_err(s, KITE_EINTERNAL, "%s: no row", what);
  return rc;
}

static int64_t now_ms(void) {
  return (int64_t)kite__wall_ms();
}

static int exec_sql(kite_store_t *s, const char *sql, const char *what) {
  if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    return db_fail(s, what);
  return 0;
}

static int begin(kite_store_t *s) {
  return exec_sql(s, "BEGIN IMMEDIATE", "starting a write");
}
static int commit(kite_store_t *s) {
  return exec_sql(s, "COMMIT", "committing");
}
static void rollback(kite_store_t *s) {
  if (!sqlite3_get_autocommit(s->db))
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Sets synchronous to FULL (money) or NORMAL (history) when it is not already. */
static int set_sync(kite_store_t *s, bool full) {
  int want = full ? 2 : 1;
  if (s->sync == want)
    return 0;
  int rc = exec_sql(s, full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                    "setting synchronous");
  if (rc == 0)
    s->sync = want;
  return rc;
}

/* A copy of column i, NULL when the column is NULL; *oom set when the copy failed. */
static const char *col_str(sqlite3_stmt *st, int i, bool *oom) {
  const unsigned char *t = sqlite3_column_text(st, i);
  if (t == NULL)
    return NULL;
  char *c = strdup((const char *)t);
  if (c == NULL)
    *oom = true;
  return c;
}

static void free_str(const char *p) {
  free((char *)p);
}

/* Grows *v (elements of size sz) to hold one more than *n; NULL on allocation failure. */
static void *grow(void **v, size_t *cap, size_t n, size_t sz) {
  if (n == *cap) {
    size_t ncap = *cap ? *cap * 2 : 8;
    void *g = realloc(*v, ncap * sz);
    if (g == NULL)
      return NULL;
    *v = g;
    *cap = ncap;
  }
  return (char *)*v + n * sz;
}

static bool empty(const char *s) {
  return s == NULL || *s == '\0';
}

/* ---- names --------------------------------------------------------------------------------- */

static const char *const istate_names[KITE_STORE__STATE_COUNT] = {
    "launching", "running", "terminating", "terminated", "unknown"};

const char *kite_store_instance_state_name(int state) {
  return state >= 0 && state < KITE_STORE__STATE_COUNT ? istate_names[state] : "invalid";
}

static kite_store_instance_state_t istate_from(const char *name) {
  for (int i = 0; name && i < KITE_STORE__STATE_COUNT; i++)
    if (strcmp(name, istate_names[i]) == 0)
      return (kite_store_instance_state_t)i;
  return KITE_STORE_UNKNOWN; /* the CHECK constraint makes this unreachable */
}

/* Node states are stored by name, so the file stays readable if the enum is renumbered. */
static const char *const node_names[] = {
#define NODE_NAME(n) #n,
    KITE_NODE_STATE_MAP(NODE_NAME)
#undef NODE_NAME
};

static int node_state_from(const char *name) {
  for (size_t i = 0; name && i < KITE_ARRAY_SIZE(node_names); i++)
    if (strcmp(name, node_names[i]) == 0)
      return (int)i;
  return -1;
}

/* ---- opening ------------------------------------------------------------------------------- */

char *kite_store_default_path(const char *home) {
  if (home && *home)
    return kite__sprintf("%s/state.db", home);
  const char *env = getenv("KITE_HOME");
  if (env && *env)
    return kite__sprintf("%s/state.db", env);
  const char *h = getenv("HOME");
  if (h == NULL || *h == '\0') {
    struct passwd *pw = getpwuid(getuid());
    h = pw ? pw->pw_dir : "/tmp";
  }
  return kite__sprintf("%s/.kite/state.db", h);
}

/* Narrows an existing file's permissions to 0600; a missing file is fine. */
static int narrow_mode(kite_store_t *s, const char *path) {
  struct stat st;
  if (stat(path, &st) != 0)
    return errno == ENOENT ? 0 : set_err(s, KITE_EIO, "cannot stat %s: %s", path, strerror(errno));
  if ((st.st_mode & 077) != 0 && chmod(path, 0600) != 0)
    return set_err(s, KITE_EIO, "%s is readable by other users and cannot be narrowed to 0600: %s",
                   path, strerror(errno));
  return 0;
}

/* Creates the file (0600) when it is missing and checks an existing one by path only: closing
 * any descriptor of a file drops every POSIX lock this process holds on it, SQLite's own
 * included, so an existing store is never opened here (another connection of this process
 * may be using it). */
static int create_file(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) {
    int e = errno;
    if (e != ENOENT)
      return set_err(NULL, KITE_EIO, "cannot stat the state store %s: %s", path, strerror(e));
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      e = errno;
      if (e == EEXIST)
        return create_file(path); /* created meanwhile by another process: check it */
      if (e == ENOENT)
        return set_err(NULL, KITE_ENOENT,
                       "cannot create the state store %s: its directory does not exist (create "
                       "it, or set KITE_HOME to a directory that exists)",
                       path);
      if (e == EACCES || e == EPERM || e == EROFS)
        return set_err(NULL, KITE_EIO,
                       "cannot create or open the state store %s: %s (make the directory and "
                       "the file writable by you, or set KITE_HOME to a directory that is)",
                       path, strerror(e));
      return set_err(NULL, KITE_EIO, "cannot open the state store %s: %s", path, strerror(e));
    }
    close(fd); /* a new file: nobody holds locks on it yet */
    return 0;
  }
  if (!S_ISREG(st.st_mode))
    return set_err(NULL, KITE_ESTORE, "the state store %s is not a regular file", path);
  if (st.st_uid != geteuid())
    return set_err(NULL, KITE_ESTORE,
                   "the state store %s belongs to uid %ld, not to you (uid %ld); use your own "
                   "KITE_HOME",
                   path, (long)st.st_uid, (long)geteuid());
  if (access(path, R_OK | W_OK) != 0)
    return set_err(NULL, KITE_EIO,
                   "cannot open the state store %s: %s (make the file writable by you, or set "
                   "KITE_HOME to a directory that is)",
                   path, strerror(errno));
  if ((st.st_mode & 077) != 0 && chmod(path, 0600) != 0)
    return set_err(NULL, KITE_EIO,
                   "the state store %s is readable by other users and cannot be narrowed to "
                   "0600: %s",
                   path, strerror(errno));
  return 0;
}

/* One statement, so one snapshot: read in two, a store another process creates between them
 * would look like some other database with tables but no schema version. */
static int schema_version(kite_store_t *s, int64_t *v) {
  int64_t has = 0, tables = 0;
  int rc = query_ints(s, ST_SCHEMA_SEEN, NO_ARGS, "reading the schema", &has, &tables);
  if (rc != 0)
    return rc;
  if (!has) {
    if (tables > 0)
      return set_err(s, KITE_ESTORE,
                     "%s is an SQLite database but not a kite state store; move it away or set "
                     "KITE_HOME elsewhere",
                     s->path);
    *v = 0;
    return 0;
  }
  return query_ints(s, ST_VERSION_GET, NO_ARGS, "reading the schema version", v, NULL);
}

static int migrate(kite_store_t *s) {
  int64_t v = 0;
  int rc = schema_version(s, &v);
  if (rc == 0 && v == KITE_STORE_SCHEMA_VERSION)
    return 0; /* the common case, without taking the write lock */
  if (rc == 0)
    rc = begin(s);
  if (rc == 0)
    rc = schema_version(s, &v); /* again, now that no other process can migrate */
  if (rc == 0 && v > KITE_STORE_SCHEMA_VERSION)
    rc = set_err(s, KITE_ESTORE,
                 "the state store %s has schema version %lld, newer than this kite's (%d); use "
                 "a newer kite",
                 s->path, (long long)v, KITE_STORE_SCHEMA_VERSION);
  for (; rc == 0 && v < KITE_STORE_SCHEMA_VERSION; v++) {
    rc = exec_sql(s, migrations[v], "creating the schema");
    if (rc == 0)
      rc = run(s, ST_VERSION_PUT, ARGS(A_I64(v + 1), A_I64(now_ms())),
               "recording the schema version");
  }
  if (rc == 0)
    rc = commit(s);
  if (rc != 0)
    rollback(s);
  return rc;
}

/* Pragmas that are per connection, and the schema. */
static int setup(kite_store_t *s) {
  sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
  /* The first statement is where a file that is not a database, or a directory where the -wal
   * and -shm files cannot be created, shows up: say so in words. */
  sqlite3_stmt *st = NULL;
  int step = SQLITE_ERROR;
  if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL) == SQLITE_OK)
    step = sqlite3_step(st);
  /* Switching a new file to WAL needs it alone, and SQLite answers busy at once, without its
   * busy handler, while another process is switching it too: wait here as the handler would. */
  for (int waited = 0; step == SQLITE_BUSY && waited < BUSY_TIMEOUT_MS; waited += 10) {
    sqlite3_reset(st);
    sqlite3_sleep(10);
    step = sqlite3_step(st);
  }
  int err = sqlite3_errcode(s->db), rc = 0;
  if (step != SQLITE_ROW && err == SQLITE_NOTADB)
    rc = set_err(s, KITE_ESTORE,
                 "%s is not a kite state store (not an SQLite database); move it away or set "
                 "KITE_HOME elsewhere",
                 s->path);
  else if (step != SQLITE_ROW && err == SQLITE_CANTOPEN)
    rc = set_err(s, KITE_EIO,
                 "cannot open the state store %s: %s (kite needs to create %s-wal and %s-shm "
                 "beside it: make the directory writable, or set KITE_HOME to one that is)",
                 s->path, sqlite3_errmsg(s->db), s->path, s->path);
  else if (step != SQLITE_ROW)
    rc = db_fail(s, "switching the state store to WAL mode");
  else if (sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") != 0)
    rc = set_err(s, KITE_ESTORE,
                 "the state store %s cannot use WAL mode (journal mode stays %s); put KITE_HOME "
                 "on a local file system",
                 s->path, (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  if (rc == 0)
    rc = exec_sql(s, "PRAGMA foreign_keys = ON", "enabling foreign keys");
  if (rc == 0)
    rc = exec_sql(s, "PRAGMA temp_store = MEMORY", "configuring the state store");
  if (rc == 0)
    rc = set_sync(s, true);
  if (rc == 0)
    rc = migrate(s);
  if (rc == 0)
    rc = exec_sql(s,
                  "CREATE TEMP TABLE IF NOT EXISTS kite_listed(id TEXT PRIMARY KEY, "
                  "address TEXT)",
                  "creating a scratch table");
  /* SQLite gives -wal and -shm the database's mode; narrow any left from older, wider ones. */
  char *wal = rc == 0 ? kite__sprintf("%s-wal", s->path) : NULL;
  char *shm = rc == 0 ? kite__sprintf("%s-shm", s->path) : NULL;
  if (rc == 0 && (wal == NULL || shm == NULL))
    rc = set_err(s, KITE_ENOMEM, "out of memory");
  if (rc == 0)
    rc = narrow_mode(s, wal);
  if (rc == 0)
    rc = narrow_mode(s, shm);
  free(wal);
  free(shm);
  return rc;
}

int kite_store_remove(const char *path) {
  static const char *const sides[] = {"", "-wal", "-shm"};
  int rc = 0;
  for (size_t i = 0; i < KITE_ARRAY_SIZE(sides); i++) {
    char *p = kite__sprintf("%s%s", path, sides[i]);
    if (p == NULL)
      return KITE_ENOMEM;
    if (unlink(p) != 0 && errno != ENOENT)
      rc = KITE_EIO;
    free(p);
  }
  return rc;
}

int kite_store_open(const char *path, kite_store_t **out) {
  *out = NULL;
  open_err[0] = '\0';
  kite_store_t *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->stmts = calloc(ST__COUNT, sizeof(*s->stmts))) == NULL) {
    free(s);
    return set_err(NULL, KITE_ENOMEM, "out of memory");
  }
  s->path = path ? kite__strdup(path) : kite_store_default_path(NULL);
  if (s->path == NULL) {
    kite_store_close(s);
    return set_err(NULL, KITE_ENOMEM, "out of memory");
  }
  if (path == NULL) {
    /* The default home is kite's own: create it, private. */
    char *dir = kite__strdup(s->path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash && slash != dir) {
      *slash = '\0';
      kite__mkdir_p(dir, 0700);
    }
    free(dir);
  }
  int rc = create_file(s->path);
  if (rc != 0) {
    kite_store_close(s);
    return rc;
  }
  if (sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
      SQLITE_OK) {
    rc = s->db ? db_fail(s, "opening the state store")
               : set_err(s, KITE_ENOMEM, "out of memory opening the state store");
  }
  if (rc == 0)
    rc = setup(s);
  if (rc != 0) {
    snprintf(open_err, sizeof(open_err), "%s", s->err);
    kite_store_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

void kite_store_close(kite_store_t *s) {
  if (s == NULL)
    return;
  if (s->stmts)
    for (int i = 0; i < ST__COUNT; i++)
      sqlite3_finalize(s->stmts[i]);
  sqlite3_close(s->db); /* every statement is finalized, so this cannot be left pending */
  free(s->stmts);
  free(s->path);
  free(s);
}

const char *kite_store_errmsg(const kite_store_t *s) {
  return s ? s->err : open_err;
}

const char *kite_store_path(const kite_store_t *s) {
  return s->path;
}

/* ---- pools --------------------------------------------------------------------------------- */

static int read_pool(sqlite3_stmt *st, kite_store_pool_t *p) {
  bool oom = false;
  memset(p, 0, sizeof(*p));
  p->name = col_str(st, 0, &oom);
  p->provider = col_str(st, 1, &oom);
  p->tag = col_str(st, 2, &oom);
  p->spec = col_str(st, 3, &oom);
  p->owner_pid = sqlite3_column_int64(st, 4);
  p->socket_path = col_str(st, 5, &oom);
  p->state = col_str(st, 6, &oom);
  p->created_ms = sqlite3_column_int64(st, 7);
  p->updated_ms = sqlite3_column_int64(st, 8);
  p->live_instances = (unsigned)sqlite3_column_int64(st, 9);
  if (oom) {
    kite_store_pool_clear(p);
    return KITE_ENOMEM;
  }
  return 0;
}

void kite_store_pool_clear(kite_store_pool_t *p) {
  if (p == NULL)
    return;
  free_str(p->name);
  free_str(p->provider);
  free_str(p->tag);
  free_str(p->spec);
  free_str(p->socket_path);
  free_str(p->state);
  memset(p, 0, sizeof(*p));
}

/* A list being read: an array of elements and how many are filled. */
typedef struct list {
  void *arr;
  size_t cap, cnt;
} list_t;

static int pool_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  return read_pool(st, data) ? set_err(s, KITE_ENOMEM, "out of memory") : ROW_STOP;
}

static int pools_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  list_t *l = data;
  kite_store_pool_t *p = grow(&l->arr, &l->cap, l->cnt, sizeof(*p));
  if (p == NULL || read_pool(st, p) != 0)
    return set_err(s, KITE_ENOMEM, "out of memory listing pools");
  l->cnt++;
  return 0;
}

/* Writes (inserts or updates) p. */
static int put_pool(kite_store_t *s, const kite_store_pool_t *p) {
  return run(s, ST_POOL_PUT,
             ARGS(A_STR(p->name), A_STR(p->provider), A_STR(p->tag), A_STR(p->spec),
                  A_I64(p->owner_pid), A_STR(p->socket_path), A_STR(p->state), A_I64(now_ms())),
             "recording a pool");
}

/* A pool may be forgotten only without live instances: the count and an example. */
static int live_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  const char *name = data;
  if (sqlite3_column_int64(st, 0) > 0)
    return set_err(s, KITE_EBUSY,
                   "pool %s still has %lld live instance(s), for example %s; run `kite down %s` "
                   "to terminate them before forgetting the pool",
                   name, (long long)sqlite3_column_int64(st, 0),
                   (const char *)sqlite3_column_text(st, 1), name);
  return ROW_STOP;
}

int kite_store_pool_put(kite_store_t *s, const kite_store_pool_t *p) {
  if (p == NULL || empty(p->name) || empty(p->provider) || empty(p->tag) || empty(p->state))
    return set_err(s, KITE_EINVAL, "a pool record needs a name, a provider, a tag and a state");
  int rc = set_sync(s, true);
  return rc ? rc : put_pool(s, p);
}

int kite_store_pool_claim(kite_store_t *s, const kite_store_pool_t *p,
                          bool (*owner_alive)(int64_t pid, void *data), void *data,
                          kite_store_pool_t *held) {
  memset(held, 0, sizeof(*held));
  if (p == NULL || empty(p->name) || empty(p->provider) || empty(p->tag) || empty(p->state))
    return set_err(s, KITE_EINVAL, "a pool record needs a name, a provider, a tag and a state");
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = begin(s);
  if (rc != 0)
    return rc;
  /* BEGIN IMMEDIATE holds the write lock from here to the commit: no other process can claim
   * the name between the read and the write. */
  size_t rows = 0;
  rc = query(s, ST_POOL_GET, ARGS(A_STR(p->name)), pool_row, held, &rows, "reading a pool");
  if (rc == 0 && rows > 0) {
    bool owned = held->owner_pid > 0 && held->owner_pid != p->owner_pid && owner_alive &&
                 owner_alive(held->owner_pid, data);
    if (owned)
      rc = set_err(s, KITE_EBUSY, "pool %s is open in process %lld", p->name,
                   (long long)held->owner_pid);
    else if (held->live_instances > 0)
      rc = set_err(s, KITE_EBUSY, "pool %s has %u instance(s) recorded as live", p->name,
                   held->live_instances);
    else
      kite_store_pool_clear(held);
  }
  if (rc == 0)
    rc = put_pool(s, p);
  if (rc == 0)
    rc = commit(s);
  if (rc != 0) {
    rollback(s);
    if (rc != KITE_EBUSY || held->name == NULL)
      kite_store_pool_clear(held);
  }
  return rc;
}

int kite_store_pool_set_state(kite_store_t *s, const char *name, const char *state,
                              int64_t owner_pid, const char *socket_path) {
  if (empty(name) || empty(state))
    return set_err(s, KITE_EINVAL, "a pool state change needs the pool's name and a state");
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = run(s, ST_POOL_SET_STATE,
             ARGS(A_STR(name), A_STR(state), A_I64(owner_pid), A_STR(socket_path), A_I64(now_ms())),
             "recording a pool's state");
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = set_err(s, KITE_ENOENT, "no pool named %s in the state store", name);
  return rc;
}

int kite_store_pool_get(kite_store_t *s, const char *name, kite_store_pool_t *out) {
  memset(out, 0, sizeof(*out));
  if (empty(name))
    return set_err(s, KITE_EINVAL, "no pool name given");
  size_t rows;
  int rc = query(s, ST_POOL_GET, ARGS(A_STR(name)), pool_row, out, &rows, "reading a pool");
  if (rc == 0 && rows == 0)
    rc = set_err(s, KITE_ENOENT, "no pool named %s in the state store", name);
  return rc;
}

void kite_store_pools_free(kite_store_pool_t *v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    kite_store_pool_clear(&v[i]);
  free(v);
}

int kite_store_pools(kite_store_t *s, kite_store_pool_t **v, size_t *n) {
  *v = NULL;
  *n = 0;
  list_t l = {0};
  int rc = query(s, ST_POOL_LIST, NO_ARGS, pools_row, &l, NULL, "listing pools");
  if (rc != 0) {
    kite_store_pools_free(l.arr, l.cnt);
    return rc;
  }
  *v = l.arr;
  *n = l.cnt;
  return 0;
}

int kite_store_pool_delete(kite_store_t *s, const char *name) {
  if (empty(name))
    return set_err(s, KITE_EINVAL, "no pool name given");
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = begin(s);
  if (rc != 0)
    return rc;
  size_t rows;
  rc = query(s, ST_POOL_LIVE, ARGS(A_STR(name)), live_row, (void *)name, &rows,
             "counting a pool's live instances");
  if (rc == 0 && rows == 0)
    rc = db_fail(s, "counting a pool's live instances");
  if (rc == 0) {
    rc = run(s, ST_POOL_DELETE, ARGS(A_STR(name)), "deleting a pool");
    if (rc == 0 && sqlite3_changes(s->db) == 0)
      rc = set_err(s, KITE_ENOENT, "no pool named %s in the state store", name);
  }
  if (rc == 0)
    rc = commit(s);
  if (rc != 0)
    rollback(s);
  return rc;
}

/* ---- nodes --------------------------------------------------------------------------------- */

int kite_store_node_put(kite_store_t *s, const char *pool, uint32_t rank, int state,
                        const char *instance_id, const char *address) {
  if (empty(pool) || state < 0 || (size_t)state >= KITE_ARRAY_SIZE(node_names))
    return set_err(s, KITE_EINVAL, "a node record needs a pool name and a valid node state");
  int rc = set_sync(s, true);
  if (rc != 0)
    return rc;
  rc = run(s, ST_NODE_PUT,
           ARGS(A_STR(pool), A_I64(rank), A_STR(node_names[state]), A_STR(instance_id),
                A_STR(address), A_I64(now_ms())),
           "recording a node");
  if (rc != 0 && is_constraint(s, SQLITE_CONSTRAINT_FOREIGNKEY))
    rc =
        set_err(s, KITE_ENOENT, "no pool named %s in the state store; record the pool first", pool);
  return rc;
}

static int nodes_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  list_t *l = data;
  kite_store_node_t *nd = grow(&l->arr, &l->cap, l->cnt, sizeof(*nd));
  if (nd == NULL)
    return set_err(s, KITE_ENOMEM, "out of memory listing nodes");
  bool oom = false;
  memset(nd, 0, sizeof(*nd));
  l->cnt++;
  nd->pool = col_str(st, 0, &oom);
  nd->rank = (uint32_t)sqlite3_column_int64(st, 1);
  nd->state = node_state_from((const char *)sqlite3_column_text(st, 2));
  nd->instance_id = col_str(st, 3, &oom);
  nd->address = col_str(st, 4, &oom);
  nd->updated_ms = sqlite3_column_int64(st, 5);
  return oom ? set_err(s, KITE_ENOMEM, "out of memory listing nodes") : 0;
}

void kite_store_nodes_free(kite_store_node_t *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) {
    free_str(v[i].pool);
    free_str(v[i].instance_id);
    free_str(v[i].address);
  }
  free(v);
}

int kite_store_nodes(kite_store_t *s, const char *pool, kite_store_node_t **v, size_t *n) {
  *v = NULL;
  *n = 0;
  list_t l = {0};
  int rc = query(s, ST_NODE_LIST, ARGS(A_STR(pool)), nodes_row, &l, NULL, "listing nodes");
  if (rc != 0) {
    kite_store_nodes_free(l.arr, l.cnt);
    return rc;
  }
  *v = l.arr;
  *n = l.cnt;
  return 0;
}

/* ---- instances ----------------------------------------------------------------------------- */

static int read_instance(sqlite3_stmt *st, kite_store_instance_t *x) {
  bool oom = false;
  memset(x, 0, sizeof(*x));
  x->row = sqlite3_column_int64(st, 0);
  x->pool = col_str(st, 1, &oom);
  x->rank = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
  x->provider = col_str(st, 3, &oom);
  x->launch_token = col_str(st, 4, &oom);
  x->instance_id = col_str(st, 5, &oom);
  x->state = istate_from((const char *)sqlite3_column_text(st, 6));
  x->address = col_str(st, 7, &oom);
  x->port = (unsigned)sqlite3_column_int64(st, 8);
  x->user = col_str(st, 9, &oom);
  x->host_key = col_str(st, 10, &oom);
  x->price = sqlite3_column_type(st, 11) == SQLITE_NULL ? -1.0 : sqlite3_column_double(st, 11);
  x->tag = col_str(st, 12, &oom);
  x->note = col_str(st, 13, &oom);
  x->created_ms = sqlite3_column_int64(st, 14);
  x->updated_ms = sqlite3_column_int64(st, 15);
  x->terminated_ms = sqlite3_column_int64(st, 16);
  x->reach = col_str(st, 17, &oom);
  x->key_path = col_str(st, 18, &oom);
  x->region = col_str(st, 19, &oom);
  x->zone = col_str(st, 20, &oom);
  x->instance_type = col_str(st, 21, &oom);
  x->spot = sqlite3_column_int64(st, 22) != 0;
  x->ondemand_price =
      sqlite3_column_type(st, 23) == SQLITE_NULL ? -1.0 : sqlite3_column_double(st, 23);
  x->running_ms = sqlite3_column_int64(st, 24);
  if (oom) {
    kite_store_instance_clear(x);
    return KITE_ENOMEM;
  }
  return 0;
}

void kite_store_instance_clear(kite_store_instance_t *x) {
  if (x == NULL)
    return;
  free_str(x->pool);
  free_str(x->provider);
  free_str(x->launch_token);
  free_str(x->instance_id);
  free_str(x->address);
  free_str(x->user);
  free_str(x->host_key);
  free_str(x->tag);
  free_str(x->note);
  free_str(x->reach);
  free_str(x->key_path);
  free_str(x->region);
  free_str(x->zone);
  free_str(x->instance_type);
  memset(x, 0, sizeof(*x));
}

void kite_store_instances_free(kite_store_instance_t *v, size_t n) {
  for (size_t i = 0; v && i < n; i++)
    kite_store_instance_clear(&v[i]);
  free(v);
}

static int instance_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  return read_instance(st, data) ? set_err(s, KITE_ENOMEM, "out of memory") : ROW_STOP;
}

static int instances_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  list_t *l = data;
  kite_store_instance_t *x = grow(&l->arr, &l->cap, l->cnt, sizeof(*x));
  if (x == NULL || read_instance(st, x) != 0)
    return set_err(s, KITE_ENOMEM, "out of memory listing instances");
  l->cnt++;
  return 0;
}

/* Column 0 as an integer into *(int64_t *)data. */
static int int_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  (void)s;
  *(int64_t *)data = sqlite3_column_int64(st, 0);
  return ROW_STOP;
}

/* The live record of an instance id other than the row being written. */
typedef struct live_by_id {
  int64_t dup; /* a reconciliation record (UNKNOWN) to merge, or 0 */
  int other;   /* 1: a live record that is not UNKNOWN */
} live_by_id_t;

static int live_by_id_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  live_by_id_t *r = data;
  (void)s;
  if (strcmp((const char *)sqlite3_column_text(st, 1), "unknown") == 0)
    r->dup = sqlite3_column_int64(st, 0);
  else
    r->other = 1;
  return ROW_STOP;
}

/* An instance row's provider, checked against the id about to be recorded. */
typedef struct identity {
  int64_t row;
  const char *instance_id;
  char *provider; /* malloc'd */
} identity_t;

static int identity_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  identity_t *id = data;
  const char *have = (const char *)sqlite3_column_text(st, 1);
  if (have && strcmp(have, id->instance_id) != 0)
    return set_err(s, KITE_EEXIST, "instance row %lld already records instance %s, not %s",
                   (long long)id->row, have, id->instance_id);
  if ((id->provider = kite__strdup((const char *)sqlite3_column_text(st, 0))) == NULL)
    return set_err(s, KITE_ENOMEM, "out of memory");
  return ROW_STOP;
}

int kite_store_instance_launching(kite_store_t *s, const char *pool, int64_t rank,
                                  const char *provider, const char *tag, const char *launch_token,
                                  int64_t *row_id) {
  return kite_store_instance_launching_at(s, pool, rank, provider, tag, launch_token, NULL, row_id);
}

int kite_store_instance_launching_at(kite_store_t *s, const char *pool, int64_t rank,
                                     const char *provider, const char *tag,
                                     const char *launch_token, const char *reach, int64_t *row_id) {
  if (row_id)
    *row_id = 0;
  if (empty(pool) || empty(provider))
    return set_err(s, KITE_EINVAL, "a launch record needs a pool name and a provider");
  int rc = set_sync(s, true);
  if (rc != 0)
    return rc;
  rc = run(s, ST_INST_LAUNCHING,
           ARGS(A_STR(pool), rank >= 0 ? A_I64(rank) : A_NULL, A_STR(provider), A_STR(launch_token),
                A_STR(tag), A_I64(now_ms()), A_STR(reach)),
           "recording a launch");
  if (rc != 0 && is_constraint(s, SQLITE_CONSTRAINT_FOREIGNKEY))
    return set_err(s, KITE_ENOENT,
                   "no pool named %s in the state store; record the pool before launching", pool);
  if (rc != 0 && is_constraint(s, SQLITE_CONSTRAINT_UNIQUE))
    return set_err(s, KITE_EEXIST, "launch token %s is already recorded; use a fresh token",
                   launch_token);
  if (rc == 0 && row_id)
    *row_id = sqlite3_last_insert_rowid(s->db);
  return rc;
}

int kite_store_instance_set_key(kite_store_t *s, int64_t row, const char *key_path) {
  return run(s, ST_INST_SET_KEY, ARGS(A_I64(row), A_STR(key_path), A_I64(now_ms())),
             "recording an instance's login key");
}

/* Closes a reconciliation record (state UNKNOWN) of (provider, instance_id) that duplicates
 * row `into`. *other gets 1 when a live record that is not UNKNOWN already holds that id. */
static int merge_unknown(kite_store_t *s, const char *provider, const char *instance_id,
                         int64_t into, int *other) {
  *other = 0;
  live_by_id_t r = {0};
  int rc = query(s, ST_INST_LIVE_BY_ID, ARGS(A_STR(provider), A_STR(instance_id), A_I64(into)),
                 live_by_id_row, &r, NULL, "looking up an instance");
  *other = r.other;
  if (rc != 0 || r.dup == 0)
    return rc;
  return run(s, ST_INST_MERGE, ARGS(A_I64(r.dup), A_I64(now_ms()), A_I64(into)),
             "merging a duplicate instance record");
}

int kite_store_instance_launched(kite_store_t *s, int64_t row, const char *instance_id,
                                 const char *address, unsigned port, const char *user,
                                 const char *host_key, double price) {
  if (empty(instance_id))
    return set_err(s, KITE_EINVAL, "a launched instance needs the provider's id");
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = begin(s);
  if (rc != 0)
    return rc;
  identity_t id = {.row = row, .instance_id = instance_id};
  size_t rows;
  rc =
      query(s, ST_INST_IDENTITY, ARGS(A_I64(row)), identity_row, &id, &rows, "reading an instance");
  if (rc == 0 && rows == 0)
    rc = set_err(s, KITE_ENOENT, "no instance row %lld in the state store", (long long)row);
  int other = 0;
  if (rc == 0)
    rc = merge_unknown(s, id.provider, instance_id, row, &other);
  if (rc == 0 && other)
    rc = set_err(s, KITE_EEXIST, "instance %s at %s is already recorded by another live row",
                 instance_id, id.provider);
  if (rc == 0)
    rc =
        run(s, ST_INST_LAUNCHED,
            ARGS(A_I64(row), A_STR(instance_id), A_STR(address), port > 0 ? A_I64(port) : A_NULL,
                 A_STR(user), A_STR(host_key), price >= 0 ? A_DBL(price) : A_NULL, A_I64(now_ms())),
            "recording a launched instance");
  if (rc == 0)
    rc = commit(s);
  if (rc != 0)
    rollback(s);
  free(id.provider);
  return rc;
}

/* 0 when row exists, KITE_ENOENT when it does not. */
static int row_exists(kite_store_t *s, int64_t row) {
  int64_t n = 0;
  int rc = query_ints(s, ST_INST_EXISTS, ARGS(A_I64(row)), "looking up an instance", &n, NULL);
  if (rc == 0 && n == 0)
    rc = set_err(s, KITE_ENOENT, "no instance row %lld in the state store", (long long)row);
  return rc;
}

int kite_store_instance_bought(kite_store_t *s, int64_t row, const char *region, const char *zone,
                               const char *instance_type, bool spot, double price,
                               double ondemand_price) {
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = run(s, ST_INST_BOUGHT,
             ARGS(A_I64(row), empty(region) ? A_NULL : A_STR(region),
                  empty(zone) ? A_NULL : A_STR(zone),
                  empty(instance_type) ? A_NULL : A_STR(instance_type), A_I64(spot ? 1 : 0),
                  price >= 0 ? A_DBL(price) : A_NULL,
                  ondemand_price >= 0 ? A_DBL(ondemand_price) : A_NULL, A_I64(now_ms())),
             "recording what an instance was bought as");
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = row_exists(s, row);
  return rc;
}

int kite_store_instance_note(kite_store_t *s, int64_t row, const char *what, const char *why) {
  if (empty(what))
    return set_err(s, KITE_EINVAL, "an instance's note needs what happened");
  int rc = run(s, ST_INST_NOTE, ARGS(A_I64(row), A_STR(what), A_STR(why), A_I64(now_ms())),
               "recording why an instance ends");
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = row_exists(s, row);
  return rc;
}

int kite_store_instance_terminating(kite_store_t *s, int64_t row) {
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = run(s, ST_INST_TERMINATING, ARGS(A_I64(row), A_I64(now_ms())),
             "recording a termination request");
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = row_exists(s, row);
  return rc;
}

int kite_store_instance_terminated(kite_store_t *s, const char *provider, const char *instance_id) {
  if (empty(provider) || empty(instance_id))
    return set_err(s, KITE_EINVAL, "a termination needs the provider and the instance id");
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = run(s, ST_INST_TERMINATED_ID, ARGS(A_STR(provider), A_STR(instance_id), A_I64(now_ms())),
             "recording a termination");
  if (rc != 0 || sqlite3_changes(s->db) > 0)
    return rc;
  int64_t n = 0;
  rc = query_ints(s, ST_INST_ANY_BY_ID, ARGS(A_STR(provider), A_STR(instance_id)),
                  "looking up an instance", &n, NULL);
  if (rc == 0 && n == 0)
    rc = set_err(s, KITE_ENOENT, "instance %s at %s is not in the state store", instance_id,
                 provider);
  return rc;
}

int kite_store_instance_terminated_row(kite_store_t *s, int64_t row, const char *note) {
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = run(s, ST_INST_TERMINATED_ROW, ARGS(A_I64(row), A_I64(now_ms()), A_STR(note)),
             "recording a termination");
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = row_exists(s, row);
  return rc;
}

int kite_store_instance_get(kite_store_t *s, int64_t row, kite_store_instance_t *out) {
  memset(out, 0, sizeof(*out));
  size_t rows;
  int rc = query(s, ST_INST_GET, ARGS(A_I64(row)), instance_row, out, &rows, "reading an instance");
  if (rc == 0 && rows == 0)
    rc = set_err(s, KITE_ENOENT, "no instance row %lld in the state store", (long long)row);
  return rc;
}

int kite_store_instances(kite_store_t *s, const char *pool, bool live_only,
                         kite_store_instance_t **v, size_t *n) {
  *v = NULL;
  *n = 0;
  list_t l = {0};
  int rc = query(s, ST_INST_LIST, ARGS(A_STR(pool), A_I64(live_only ? 1 : 0)), instances_row, &l,
                 NULL, "listing instances");
  if (rc != 0) {
    kite_store_instances_free(l.arr, l.cnt);
    return rc;
  }
  *v = l.arr;
  *n = l.cnt;
  return 0;
}

/* ---- reconciliation ------------------------------------------------------------------------ */

/* Column 0 as a string into *(char **)data (malloc'd). */
static int tag_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  if ((*(char **)data = kite__strdup((const char *)sqlite3_column_text(st, 0))) == NULL)
    return set_err(s, KITE_ENOMEM, "out of memory");
  return ROW_STOP;
}

/* Rule 1 for one listed instance: adopts it into the LAUNCHING row with its token, if any. */
static int adopt(kite_store_t *s, const char *pool, const char *provider,
                 const kite_store_listed_t *l, unsigned *adopted) {
  int64_t row = 0;
  int rc = query(s, ST_REC_TOKEN, ARGS(A_STR(pool), A_STR(provider), A_STR(l->launch_token)),
                 int_row, &row, NULL, "matching a launch token");
  if (rc != 0 || row == 0)
    return rc;
  int other = 0;
  rc = merge_unknown(s, provider, l->instance_id, row, &other);
  if (rc != 0 || other)
    return rc; /* another live row already tracks this id: leave both as they are */
  rc = run(s, ST_REC_ADOPT,
           ARGS(A_I64(row), A_STR(l->instance_id), A_STR(l->address), A_I64(now_ms())),
           "adopting a launched instance");
  if (rc == 0)
    (*adopted)++;
  return rc;
}

static int reconcile(kite_store_t *s, const char *pool, const char *provider,
                     const kite_store_listed_t *listed, size_t n,
                     const kite_store_reconcile_opts_t *o, kite_store_reconcile_result_t *r) {
  char *tag = NULL;
  size_t rows;
  int rc = query(s, ST_POOL_TAG, ARGS(A_STR(pool)), tag_row, &tag, &rows, "reading a pool");
  if (rc == 0 && rows == 0)
    rc = set_err(s, KITE_ENOENT, "no pool named %s in the state store", pool);
  if (rc != 0)
    return rc;

  rc = run(s, ST_REC_CLEAR, NO_ARGS, "reconciling");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (empty(listed[i].instance_id)) {
      rc = set_err(s, KITE_EINVAL, "listed instance %zu has no id", i);
      break;
    }
    rc = run(s, ST_REC_ADD, ARGS(A_STR(listed[i].instance_id), A_STR(listed[i].address)),
             "reconciling");
    if (rc == 0 && !empty(listed[i].launch_token))
      rc = adopt(s, pool, provider, &listed[i], &r->adopted);
  }
  int64_t now = now_ms();
  if (rc == 0)
    rc = run(s, ST_REC_FOUND,
             ARGS(A_STR(pool), A_STR(provider), A_STR(tag), A_I64(now), A_STR(o->reach)),
             "recording found instances");
  if (rc == 0)
    r->found = (unsigned)sqlite3_changes(s->db);
  if (rc == 0 && o->authoritative) {
    rc = run(s, ST_REC_GONE, ARGS(A_STR(pool), A_STR(provider), A_I64(now)),
             "recording vanished instances");
    if (rc == 0)
      r->gone = (unsigned)sqlite3_changes(s->db);
    if (rc == 0 && o->launching_grace_ms > 0) {
      rc = run(s, ST_REC_ABANDON,
               ARGS(A_STR(pool), A_STR(provider), A_I64(now),
                    A_I64(now - (int64_t)o->launching_grace_ms)),
               "closing abandoned launches");
      if (rc == 0)
        r->abandoned = (unsigned)sqlite3_changes(s->db);
    }
  }
  int64_t launching = 0, live = 0;
  if (rc == 0)
    rc = query_ints(s, ST_REC_COUNT, ARGS(A_STR(pool), A_STR(provider)), "counting live instances",
                    &launching, &live);
  if (rc == 0) {
    r->launching_kept = (unsigned)launching;
    r->live = (unsigned)live;
  }
  free(tag);
  return rc;
}

int kite_store_reconcile(kite_store_t *s, const char *pool, const char *provider,
                         const kite_store_listed_t *listed, size_t n,
                         const kite_store_reconcile_opts_t *opts,
                         kite_store_reconcile_result_t *result) {
  kite_store_reconcile_opts_t o = {0};
  kite_store_reconcile_result_t r = {0};
  if (opts)
    o = *opts;
  if (result)
    *result = r;
  if (empty(pool) || empty(provider) || (n > 0 && listed == NULL))
    return set_err(s, KITE_EINVAL, "reconciliation needs a pool, a provider and the list");
  int rc = set_sync(s, true);
  if (rc == 0)
    rc = begin(s);
  if (rc != 0)
    return rc;
  rc = reconcile(s, pool, provider, listed, n, &o, &r);
  if (rc == 0)
    rc = commit(s);
  if (rc != 0) {
    rollback(s);
    return rc;
  }
  if (result)
    *result = r;
  return 0;
}

/* ---- task history -------------------------------------------------------------------------- */

int kite_store_task_started(kite_store_t *s, const char *pool, uint64_t task_id, uint32_t rank,
                            unsigned attempt, const char *command, int64_t *row) {
  if (row)
    *row = 0;
  if (empty(pool))
    return set_err(s, KITE_EINVAL, "a task record needs a pool name");
  int rc = set_sync(s, false);
  if (rc != 0)
    return rc;
  rc = run(s, ST_TASK_START,
           ARGS(A_STR(pool), A_I64(task_id), A_I64(rank), A_I64(attempt ? attempt : 1),
                A_STR(command), A_I64(now_ms())),
           "recording a task");
  if (rc != 0 && is_constraint(s, SQLITE_CONSTRAINT_FOREIGNKEY))
    return set_err(s, KITE_ENOENT, "no pool named %s in the state store", pool);
  if (rc == 0 && row)
    *row = sqlite3_last_insert_rowid(s->db);
  return rc;
}

int kite_store_task_finished(kite_store_t *s, int64_t row, int exit_status, const char *error) {
  int rc = set_sync(s, false);
  if (rc == 0)
    rc = run(s, ST_TASK_FINISH,
             ARGS(A_I64(row), A_I64(now_ms()), exit_status >= 0 ? A_I64(exit_status) : A_NULL,
                  A_STR(error)),
             "recording a task's end");
  if (rc == 0 && sqlite3_changes(s->db) == 0)
    rc = set_err(s, KITE_ENOENT, "no task row %lld in the state store", (long long)row);
  return rc;
}

int kite_store_tasks_record(kite_store_t *s, const kite_store_task_t *v, size_t n) {
  int rc = set_sync(s, false);
  if (rc == 0 && n > 0)
    rc = begin(s);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const kite_store_task_t *t = &v[i];
    if (empty(t->pool)) {
      rc = set_err(s, KITE_EINVAL, "a task record needs a pool name");
      break;
    }
    rc = run(s, ST_TASK_RECORD,
             ARGS(A_STR(t->pool), A_I64(t->task_id), A_I64(t->rank),
                  A_I64(t->attempt ? t->attempt : 1), A_STR(t->command), A_I64(t->started_ms),
                  t->finished_ms ? A_I64(t->finished_ms) : A_NULL,
                  t->exit_status >= 0 ? A_I64(t->exit_status) : A_NULL, A_STR(t->error),
                  A_STR(t->signal), A_STR(t->instance_id), A_BLOB(t->output, t->output_len),
                  A_I64(t->output_truncated ? 1 : 0)),
             "recording a task");
    if (rc != 0 && is_constraint(s, SQLITE_CONSTRAINT_FOREIGNKEY))
      rc = set_err(s, KITE_ENOENT, "no pool named %s in the state store", t->pool);
    /* The history is bounded: the pool's oldest rows go (once per pool of the batch). */
    if (rc == 0 && (i + 1 == n || strcmp(v[i + 1].pool ? v[i + 1].pool : "", t->pool) != 0))
      rc = run(s, ST_TASK_TRIM, ARGS(A_STR(t->pool), A_I64(KITE_STORE_TASKS_KEPT)),
               "trimming the task history");
  }
  if (n > 0 && rc == 0)
    rc = commit(s);
  else if (n > 0)
    rollback(s);
  return rc;
}

void kite_store_tasks_free(kite_store_task_t *v, size_t n) {
  for (size_t i = 0; v && i < n; i++) {
    free_str(v[i].pool);
    free_str(v[i].command);
    free_str(v[i].error);
    free_str(v[i].signal);
    free_str(v[i].instance_id);
    free((void *)v[i].output);
  }
  free(v);
}

static int tasks_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  list_t *l = data;
  kite_store_task_t *t = grow(&l->arr, &l->cap, l->cnt, sizeof(*t));
  if (t == NULL)
    return set_err(s, KITE_ENOMEM, "out of memory listing tasks");
  bool oom = false;
  memset(t, 0, sizeof(*t));
  l->cnt++;
  t->row = sqlite3_column_int64(st, 0);
  t->pool = col_str(st, 1, &oom);
  t->task_id = (uint64_t)sqlite3_column_int64(st, 2);
  t->rank = (uint32_t)sqlite3_column_int64(st, 3);
  t->attempt = (unsigned)sqlite3_column_int64(st, 4);
  t->command = col_str(st, 5, &oom);
  t->started_ms = sqlite3_column_int64(st, 6);
  t->finished_ms = sqlite3_column_int64(st, 7);
  t->exit_status =
      sqlite3_column_type(st, 8) == SQLITE_NULL ? -1 : (int)sqlite3_column_int64(st, 8);
  t->error = col_str(st, 9, &oom);
  t->signal = col_str(st, 10, &oom);
  t->instance_id = col_str(st, 11, &oom);
  int ol = sqlite3_column_bytes(st, 12);
  const void *ob = sqlite3_column_blob(st, 12);
  if (ob && ol > 0) {
    char *o = malloc((size_t)ol + 1);
    if (o == NULL) {
      oom = true;
    } else {
      memcpy(o, ob, (size_t)ol);
      o[ol] = '\0';
      t->output = o;
      t->output_len = (size_t)ol;
    }
  }
  t->output_truncated = sqlite3_column_int64(st, 13) != 0;
  return oom ? set_err(s, KITE_ENOMEM, "out of memory listing tasks") : 0;
}

int kite_store_tasks(kite_store_t *s, const char *pool, size_t limit, kite_store_task_t **v,
                     size_t *n) {
  *v = NULL;
  *n = 0;
  list_t l = {0};
  int rc = query(s, ST_TASK_LIST,
                 ARGS(A_STR(pool), A_I64(limit > 0 && limit < INT64_MAX ? (int64_t)limit : -1)),
                 tasks_row, &l, NULL, "listing tasks");
  if (rc != 0) {
    kite_store_tasks_free(l.arr, l.cnt);
    return rc;
  }
  *v = l.arr;
  *n = l.cnt;
  return 0;
}

/* ---- the offers cache ---------------------------------------------------------------------- */

/* The catalog's cache is not money: a lost last write costs one more catalog request, so its
 * commits do not wait for the disk, as task history does not. */
int kite_store_offers_put(kite_store_t *s, const char *provider, const char *region, bool snapshot,
                          const kite_offer_t *offers, size_t n) {
  if (empty(provider))
    return set_err(s, KITE_EINVAL, "offers are stored under a provider's name");
  for (size_t i = 0; i < n; i++)
    if (strcmp(offers[i].provider, provider) != 0 || offers[i].instance_type[0] == '\0')
      return set_err(s, KITE_EINVAL, "offer %zu (%s %s) is not an offer of %s", i,
                     offers[i].provider, offers[i].instance_type, provider);
  int rc = set_sync(s, false);
  if (rc == 0)
    rc = begin(s);
  if (rc != 0)
    return rc;
  rc = run(s, ST_OFFERS_CLEAR, ARGS(A_STR(provider), A_I64(snapshot ? 1 : 0), A_STR(region)),
           "replacing cached offers");
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const kite_offer_t *o = &offers[i];
    rc = run(s, ST_OFFERS_PUT,
             ARGS(A_STR(o->provider), A_I64(snapshot ? 1 : 0), A_STR(o->region), A_STR(o->zone),
                  A_STR(o->instance_type), A_I64(o->vcpus), A_I64(o->memory_mb),
                  A_STR(o->accelerator), A_I64(o->accelerator_count),
                  A_I64(o->accelerator_memory_mb), A_I64(o->disk_gb), A_STR(o->arch),
                  o->price >= 0 ? A_DBL(o->price) : A_NULL,
                  o->spot_price >= 0 ? A_DBL(o->spot_price) : A_NULL, A_I64(o->available),
                  A_I64(o->fetched_ms), A_STR(o->source)),
             "caching an offer");
  }
  if (rc == 0)
    rc = commit(s);
  if (rc != 0)
    rollback(s);
  return rc;
}

/* Column i's text into a fixed field; text that does not fit (written by another program) is
 * cut rather than overflowing. */
static void col_field(sqlite3_stmt *st, int i, char *field, size_t size) {
  const unsigned char *t = sqlite3_column_text(st, i);
  size_t len = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
  len = len < size ? len : size - 1;
  if (len)
    memcpy(field, t, len);
  field[len] = '\0';
}

static double col_price(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? -1 : sqlite3_column_double(st, i);
}

static int offers_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  list_t *l = data;
  kite_offer_t *o = grow(&l->arr, &l->cap, l->cnt, sizeof(*o));
  if (o == NULL)
    return set_err(s, KITE_ENOMEM, "out of memory reading cached offers");
  l->cnt++;
  memset(o, 0, sizeof(*o)); /* whole fixed fields: an offer compares and copies as bytes */
  col_field(st, 0, o->provider, sizeof(o->provider));
  col_field(st, 2, o->region, sizeof(o->region));
  col_field(st, 3, o->zone, sizeof(o->zone));
  col_field(st, 4, o->instance_type, sizeof(o->instance_type));
  o->vcpus = (unsigned)sqlite3_column_int64(st, 5);
  o->memory_mb = (uint64_t)sqlite3_column_int64(st, 6);
  col_field(st, 7, o->accelerator, sizeof(o->accelerator));
  o->accelerator_count = (unsigned)sqlite3_column_int64(st, 8);
  o->accelerator_memory_mb = (uint64_t)sqlite3_column_int64(st, 9);
  o->disk_gb = (unsigned)sqlite3_column_int64(st, 10);
  col_field(st, 11, o->arch, sizeof(o->arch));
  o->price = col_price(st, 12);
  o->spot_price = col_price(st, 13);
  o->available = (int)sqlite3_column_int64(st, 14);
  o->fetched_ms = sqlite3_column_int64(st, 15);
  col_field(st, 16, o->source, sizeof(o->source));
  return 0;
}

int kite_store_offers_get(kite_store_t *s, const char *provider, kite_offer_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  list_t l = {0};
  int rc =
      query(s, ST_OFFERS_GET, ARGS(A_STR(provider)), offers_row, &l, NULL, "reading cached offers");
  if (rc != 0) {
    free(l.arr);
    return rc;
  }
  *out = l.arr;
  *n = l.cnt;
  return 0;
}

static int summary_row(kite_store_t *s, sqlite3_stmt *st, void *data) {
  list_t *l = data;
  kite_store_offers_summary_t *o = grow(&l->arr, &l->cap, l->cnt, sizeof(*o));
  if (o == NULL)
    return set_err(s, KITE_ENOMEM, "out of memory reading cached offers");
  l->cnt++;
  col_field(st, 0, o->provider, sizeof(o->provider));
  o->newest_api_ms = sqlite3_column_int64(st, 1);
  o->api = (size_t)sqlite3_column_int64(st, 2);
  o->snapshot = (size_t)sqlite3_column_int64(st, 3);
  return 0;
}

int kite_store_offers_summary(kite_store_t *s, kite_store_offers_summary_t **out, size_t *n) {
  *out = NULL;
  *n = 0;
  list_t l = {0};
  int rc = query(s, ST_OFFERS_SUMMARY, NO_ARGS, summary_row, &l, NULL, "reading cached offers");
  if (rc != 0) {
    free(l.arr);
    return rc;
  }
  *out = l.arr;
  *n = l.cnt;
  return 0;
}
