#ifndef KITE_STORE_H
#define KITE_STORE_H

/* The state store (DESIGN.md, "Spec and state"): one SQLite file, $KITE_HOME/state.db by
 * default, mode 0600, that records pools, nodes, instances and task history so that a process
 * that crashed leaves a record and `kite down` can always clean up.
 *
 * The rule it serves: every resource that costs money is recorded before it exists and
 * forgotten only after the provider confirms it is gone. So an instance is written as
 * LAUNCHING (with its launch token) before the provider's launch call is made, gets its
 * provider id as soon as it is known, and becomes TERMINATED only when the provider confirms.
 *
 * Concurrency: the file is in WAL mode. Any number of kite processes may read while one writes;
 * a writer waits (up to the busy timeout, 5 s) for another writer instead of failing. Every
 * function is one short local transaction, acceptable on the loop thread. A store handle is
 * used by one thread and must not be used across fork(): a child opens its own.
 *
 * Errors: functions return 0 or a negative KITE_E* code (KITE_ESTORE for SQLite failures,
 * KITE_EBUSY when another process held the write lock longer than the busy timeout). The
 * message of the last failure, with SQLite's own text, is kite_store_errmsg(). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/offer.h"

typedef struct kite_store kite_store_t;

/* ---- opening ------------------------------------------------------------------------------ */

/* The default store path: "<home>/state.db", where home NULL means $KITE_HOME, else
 * $HOME/.kite. Returns a malloc'd string the caller frees, or NULL on allocation failure. */
char *kite_store_default_path(const char *home);

/* Opens (creating if missing) the store at path; path NULL means kite_store_default_path(NULL),
 * whose directory is then created with mode 0700 if missing (an explicit path's directory must
 * exist). A new file is created with mode 0600 before SQLite touches it; an existing file with
 * wider permissions is narrowed to 0600, and so are its -wal and -shm files. A file owned by
 * another user is refused. The schema is created or migrated to the current version; a file
 * written by a newer kite (a higher schema version) is refused.
 *
 * On failure *out is NULL and kite_store_errmsg(NULL) says what was wrong and what to do:
 * KITE_ENOENT (the directory does not exist), KITE_EIO (permission denied or another OS
 * error), KITE_ESTORE (not a kite store, newer schema, SQLite failure). */
int kite_store_open(const char *path, kite_store_t **out);

/* Removes the store at path with its -wal and -shm files (missing ones are fine); only for a
 * store no process has open. KITE_EIO when one cannot be removed. */
int kite_store_remove(const char *path);

/* Closes the store. NULL is ignored. */
void kite_store_close(kite_store_t *store);

/* The message of the last failure of a call on store ("" if none). With NULL: the message of
 * this thread's last failed kite_store_open(). Valid until the next call on the same store. */
const char *kite_store_errmsg(const kite_store_t *store);

/* The path the store was opened with. */
const char *kite_store_path(const kite_store_t *store);

/* The schema version this build writes (2: instances carry their reach record). */
#define KITE_STORE_SCHEMA_VERSION 4

/* ---- pools -------------------------------------------------------------------------------- */

/* A pool's record. As input (kite_store_pool_put) the strings are borrowed; as output (get,
 * list) they are owned by the record and freed by kite_store_pool_clear / kite_store_pools_free.
 * Timestamps are wall-clock milliseconds since the epoch. */
typedef struct kite_store_pool {
  const char *name;        /* unique; required */
  const char *provider;    /* required */
  const char *tag;         /* the tag its instances carry at the provider; required */
  const char *spec;        /* the spec as text (YAML or JSON), or NULL */
  int64_t owner_pid;       /* process that has the pool open, or 0 */
  const char *socket_path; /* that process's control socket, or NULL */
  const char *state;       /* free text chosen by the pool ("opening", "open", "closed"…) */
  int64_t created_ms;      /* output only */
  int64_t updated_ms;      /* output only */
  unsigned live_instances; /* output only: instances not (confirmed) terminated */
} kite_store_pool_t;

/* Records a pool, or replaces every field of an existing one of that name except created_ms. */
int kite_store_pool_put(kite_store_t *store, const kite_store_pool_t *pool);

/* Records a pool the way kite_store_pool_put does, but only when its name is free, all in one
 * write transaction, so that of two processes opening one name at once exactly one gets it.
 * The name is taken, and the call returns KITE_EBUSY with *held (cleared first; free it with
 * kite_store_pool_clear) filled with the record that holds it, when that record names another
 * owner for which owner_alive(pid, data) is true, or still has live instances. A record with
 * no live owner and no live instance is replaced. Any other failure leaves held->name NULL
 * (KITE_EBUSY then means the store itself stayed locked too long). */
int kite_store_pool_claim(kite_store_t *store, const kite_store_pool_t *pool,
                          bool (*owner_alive)(int64_t pid, void *data), void *data,
                          kite_store_pool_t *held);

/* Changes a pool's state and owner (owner_pid 0 and socket_path NULL when nobody has it open).
 * KITE_ENOENT if there is no such pool. */
int kite_store_pool_set_state(kite_store_t *store, const char *name, const char *state,
                              int64_t owner_pid, const char *socket_path);

/* Reads one pool into *out (cleared first); free its strings with kite_store_pool_clear.
 * KITE_ENOENT if there is no such pool. */
int kite_store_pool_get(kite_store_t *store, const char *name, kite_store_pool_t *out);
void kite_store_pool_clear(kite_store_pool_t *pool);

/* Every pool, by name, as one malloc'd array (*v NULL when *n is 0). */
int kite_store_pools(kite_store_t *store, kite_store_pool_t **v, size_t *n);
void kite_store_pools_free(kite_store_pool_t *v, size_t n);

/* Forgets a pool with its nodes, its terminated instances and its task history. Refused with
 * KITE_EBUSY while any of its instances is not confirmed terminated (the message names one and
 * says to run `kite down`); KITE_ENOENT if there is no such pool. */
int kite_store_pool_delete(kite_store_t *store, const char *name);

/* ---- nodes -------------------------------------------------------------------------------- */

typedef struct kite_store_node {
  const char *pool;
  uint32_t rank;
  int state;               /* a kite_node_state_t */
  const char *instance_id; /* provider id of the instance behind it now, or NULL */
  const char *address;     /* or NULL */
  int64_t updated_ms;
} kite_store_node_t;

/* Records the state of (pool, rank), creating the row if needed. The pool must exist
 * (KITE_ENOENT otherwise). state is a kite_node_state_t. */
int kite_store_node_put(kite_store_t *store, const char *pool, uint32_t rank, int state,
                        const char *instance_id, const char *address);

/* The nodes of a pool, by rank. Free with kite_store_nodes_free. */
int kite_store_nodes(kite_store_t *store, const char *pool, kite_store_node_t **v, size_t *n);
void kite_store_nodes_free(kite_store_node_t *v, size_t n);

/* ---- instances ---------------------------------------------------------------------------- */

typedef enum kite_store_instance_state {
  KITE_STORE_LAUNCHING = 0, /* recorded before the launch call; provider id may be unknown */
  KITE_STORE_RUNNING,       /* the provider reported it */
  KITE_STORE_TERMINATING,   /* termination asked, not yet confirmed */
  KITE_STORE_TERMINATED,    /* the provider confirmed it is gone (or it never existed) */
  KITE_STORE_UNKNOWN,       /* listed by the provider under the pool's tag but never recorded
                               as launched by kite: found by reconciliation; live */
  KITE_STORE__STATE_COUNT
} kite_store_instance_state_t;

/* "launching", "running", …; "invalid" outside the enum. */
const char *kite_store_instance_state_name(int state);

/* An instance's record; strings owned by the record (free with kite_store_instance_clear or
 * kite_store_instances_free). Every state but TERMINATED is live: it may cost money. */
typedef struct kite_store_instance {
  int64_t row; /* the store's id for this record */
  const char *pool;
  int64_t rank; /* -1 when unknown (found by reconciliation) */
  const char *provider;
  const char *launch_token; /* idempotency token of the launch, or NULL */
  const char *instance_id;  /* provider's id, NULL while launching */
  kite_store_instance_state_t state;
  const char *address;
  unsigned port; /* 0 when unknown */
  const char *user;
  const char *host_key;
  double price; /* per hour; < 0 when unknown */
  const char *tag;
  const char *note; /* why it reached its state, when not the ordinary path */
  int64_t created_ms;
  int64_t updated_ms;
  int64_t terminated_ms; /* 0 unless terminated */
  /* What it takes to reach the instance again from any process (a JSON object text, never a
   * secret: provider, region, endpoint, profile, account fingerprint), or NULL. */
  const char *reach;
  /* The private key file that logs in to it (not the key itself), or NULL (the user's own
   * ssh setup: agent, ~/.ssh/config). */
  const char *key_path;
  /* What it was bought as (kite_store_instance_bought): where, which type, spot or not, and
   * its on-demand price beside price (USD/h; < 0 when unknown); each NULL when not recorded. */
  const char *region, *zone, *instance_type;
  bool spot;
  double ondemand_price;
  /* When the provider first reported it (its create answered, or its launch): its bill runs
   * from here. 0 while it was never reported. */
  int64_t running_ms;
} kite_store_instance_t;

/* Records an instance about to be launched, in state LAUNCHING, and returns its row id. Call
 * this BEFORE the provider's launch call: if kite dies during the call, the row (and its
 * launch_token, which the provider may report back) is what lets a later process find the
 * instance. The pool must exist (KITE_ENOENT); launch_token, when not NULL, must be unique
 * (KITE_EEXIST). rank < 0 means none. The commit is synced to disk before this returns. */
int kite_store_instance_launching(kite_store_t *store, const char *pool, int64_t rank,
                                  const char *provider, const char *tag, const char *launch_token,
                                  int64_t *row_id);

/* The same, with the instance's reach record (provider.h: what it takes to find the instance
 * again from another process; NULL: none), written in the same commit. */
int kite_store_instance_launching_at(kite_store_t *store, const char *pool, int64_t rank,
                                     const char *provider, const char *tag,
                                     const char *launch_token, const char *reach, int64_t *row_id);

/* Records what the provider reported for the instance of row: its id, and, when known, its
 * address, SSH port, login user, host key and hourly price (NULL, 0 or a negative price leave
 * the stored value, so it may be called again when the address becomes known). The state
 * becomes RUNNING (TERMINATING stays TERMINATING; a row already marked TERMINATED comes back
 * to RUNNING, because a late report proves the instance exists). The first report sets
 * running_ms, when its bill starts. A row that records a
 * different provider id is refused with KITE_EEXIST; an unknown row is KITE_ENOENT. A record
 * of the same instance found by reconciliation (state UNKNOWN) is merged into this row. */
int kite_store_instance_launched(kite_store_t *store, int64_t row, const char *instance_id,
                                 const char *address, unsigned port, const char *user,
                                 const char *host_key, double price);

/* Records what the instance of row was bought as, for `kite cost`: region, zone and
 * instance_type (NULL or "" leave the stored value), spot, its hourly price (spot price when
 * spot) and the on-demand price of the same type (a negative price leaves the stored value).
 * Called with the launch request's values before the launch, and again with what the provider
 * reported. KITE_ENOENT for an unknown row. */
int kite_store_instance_bought(kite_store_t *store, int64_t row, const char *region,
                               const char *zone, const char *instance_type, bool spot, double price,
                               double ondemand_price);

/* Records why the instance of row is on its way out, as its note: "WHAT: WHY" ("replaced: the
 * provider reports the instance preempted"). `kite cost` tells replaced and preempted
 * instances apart by it. */
int kite_store_instance_note(kite_store_t *store, int64_t row, const char *what, const char *why);

/* Records the private key file that logs in to the instance of row (NULL: none). */
int kite_store_instance_set_key(kite_store_t *store, int64_t row, const char *key_path);

/* Records that termination of row was asked (no-op if already terminated). */
int kite_store_instance_terminating(kite_store_t *store, int64_t row);

/* Records that the provider CONFIRMED the instance is gone: every live row of (provider,
 * instance_id) becomes TERMINATED. Idempotent; KITE_ENOENT if no row of that id exists at all.
 * Never call it on a request alone: a termination that was only asked is
 * kite_store_instance_terminating. */
int kite_store_instance_terminated(kite_store_t *store, const char *provider,
                                   const char *instance_id);

/* The same by row, for a row that may have no provider id: a launch the provider definitely
 * refused (nothing was created) is closed this way, with note saying why (may be NULL). */
int kite_store_instance_terminated_row(kite_store_t *store, int64_t row, const char *note);

/* Reads one row. KITE_ENOENT if there is none. */
int kite_store_instance_get(kite_store_t *store, int64_t row, kite_store_instance_t *out);
void kite_store_instance_clear(kite_store_instance_t *inst);

/* Instances of pool (NULL: of every pool), by row id; live_only keeps every state but
 * TERMINATED, LAUNCHING rows with no provider id included. One consistent snapshot. */
int kite_store_instances(kite_store_t *store, const char *pool, bool live_only,
                         kite_store_instance_t **v, size_t *n);
void kite_store_instances_free(kite_store_instance_t *v, size_t n);

/* ---- reconciliation ------------------------------------------------------------------------ */

/* One instance from the provider's own list of instances carrying the pool's tag. */
typedef struct kite_store_listed {
  const char *instance_id;  /* required */
  const char *launch_token; /* the token it was launched with, if the provider reports it */
  const char *address;      /* or NULL */
} kite_store_listed_t;

typedef struct kite_store_reconcile_opts {
  /* The caller vouches that the list is complete and current (not paginated away, not
   * eventually consistent behind recent launches). Without it, reconciliation only adds. */
  bool authoritative;
  /* With authoritative: LAUNCHING rows with no provider id, not matched by token, older than
   * this are closed as never created. 0 keeps them. Only for a caller that knows no process
   * is still launching for the pool (its owner is gone). */
  uint64_t launching_grace_ms;
  /* Where the list was asked (a reach record); instances found get it as theirs. */
  const char *reach;
} kite_store_reconcile_opts_t;

typedef struct kite_store_reconcile_result {
  unsigned found;          /* listed, unknown to the store: inserted as UNKNOWN */
  unsigned adopted;        /* listed with a token matching a LAUNCHING row: that row got the id */
  unsigned gone;           /* live rows the authoritative list lacks: marked TERMINATED */
  unsigned abandoned;      /* LAUNCHING rows closed by launching_grace_ms */
  unsigned launching_kept; /* LAUNCHING rows left as they are */
  unsigned live;           /* live rows of the pool and provider afterwards */
} kite_store_reconcile_result_t;

/* Reconciles the store's record of pool's instances at provider with the provider's own list
 * of instances carrying the pool's tag, in one transaction. The rules:
 *
 *  1. A listed instance whose launch_token matches a LAUNCHING row of the pool with no id yet
 *     is adopted: the row gets the id and becomes RUNNING (a launch whose reply was lost).
 *  2. A listed instance with a live row of the same (provider, id) is left as it is.
 *  3. Any other listed instance is inserted as UNKNOWN (rank -1, note "found by
 *     reconciliation"), so that `kite down` terminates it. Rows already TERMINATED do not
 *     count: a provider that lists an instance is saying it is not gone.
 *  4. A live row with a provider id that the list lacks is marked TERMINATED only when
 *     opts->authoritative; otherwise it is kept (a list can lag behind a launch).
 *  5. A LAUNCHING row with no id that nothing matched is kept: nothing proves the launch did
 *     not create an instance. Only with authoritative and launching_grace_ms, and only when it
 *     is older than that, is it closed as TERMINATED (note "never appeared").
 *
 * The pool must exist (KITE_ENOENT). opts and result may be NULL. */
int kite_store_reconcile(kite_store_t *store, const char *pool, const char *provider,
                         const kite_store_listed_t *listed, size_t n,
                         const kite_store_reconcile_opts_t *opts,
                         kite_store_reconcile_result_t *result);

/* ---- task history ------------------------------------------------------------------------- */

typedef struct kite_store_task {
  int64_t row;
  const char *pool;
  uint64_t task_id; /* the process's task id */
  uint32_t rank;
  unsigned attempt;
  const char *command; /* as recorded (the caller redacts secrets) */
  int64_t started_ms;
  int64_t finished_ms;     /* 0 while running */
  int exit_status;         /* -1 when none (running, or no exit status) */
  const char *error;       /* or NULL */
  const char *signal;      /* the signal that killed it ("KILL"), or NULL */
  const char *instance_id; /* the instance that ran it, or NULL */
  const char *output;      /* the last bytes of its output (stdout and stderr as they came; the
                              caller redacts secrets), or NULL; output_len bytes */
  size_t output_len;
  bool output_truncated; /* earlier output was dropped */
} kite_store_task_t;

/* Records a task started on one rank; command must already be redacted. Task history is
 * committed without waiting for the disk (losing the last entries on power loss is
 * acceptable; it never decides what costs money). */
int kite_store_task_started(kite_store_t *store, const char *pool, uint64_t task_id, uint32_t rank,
                            unsigned attempt, const char *command, int64_t *row);

/* Records its end: exit_status (-1: none) and error (NULL: none). */
int kite_store_task_finished(kite_store_t *store, int64_t row, int exit_status, const char *error);

/* Records finished tasks (every field as given) in one transaction, without waiting for the
 * disk, as task history always is. A pool's history keeps its newest KITE_STORE_TASKS_KEPT
 * rows (one per rank and attempt); older ones are deleted in the same transaction, so a pool
 * that runs for weeks does not grow its store without bound. */
#define KITE_STORE_TASKS_KEPT 10000
int kite_store_tasks_record(kite_store_t *store, const kite_store_task_t *v, size_t n);

/* The newest `limit` tasks of pool (0: all), newest first. Free with kite_store_tasks_free. */
int kite_store_tasks(kite_store_t *store, const char *pool, size_t limit, kite_store_task_t **v,
                     size_t *n);
void kite_store_tasks_free(kite_store_task_t *v, size_t n);

/* ---- the offers cache (catalog.h) ------------------------------------------------------- */

/* Replaces provider's cached offers of one kind (snapshot: imported from public price data;
 * else answered by the provider's API) in region (NULL: in every region) with offers, in one
 * transaction; the other kind is left as it is. Every offer must be provider's (KITE_EINVAL).
 * An offer repeating another's (region, zone, instance_type) replaces it. */
int kite_store_offers_put(kite_store_t *store, const char *provider, const char *region,
                          bool snapshot, const kite_offer_t *offers, size_t n);

/* Every cached offer of provider (NULL: of every provider), API and snapshot alike (source
 * tells them apart), as one malloc'd array the caller frees (*out NULL when *n is 0). */
int kite_store_offers_get(kite_store_t *store, const char *provider, kite_offer_t **out, size_t *n);

/* What the cache holds of each provider, without reading the offers. */
typedef struct kite_store_offers_summary {
  char provider[24];     /* as kite_offer_t's */
  int64_t newest_api_ms; /* the latest fetch time of its API offers; 0 when it has none */
  size_t api, snapshot;  /* how many offers of each kind */
} kite_store_offers_summary_t;

/* One row per provider with cached offers, by name, as one malloc'd array the caller frees. */
int kite_store_offers_summary(kite_store_t *store, kite_store_offers_summary_t **out, size_t *n);

#endif
