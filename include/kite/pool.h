#ifndef KITE_POOL_H
#define KITE_POOL_H

/* Pools of nodes (DESIGN.md, "Pool" and "Node actor").
 *
 * kite_pool_open() creates one node actor per rank; each provisions an instance through its
 * provider, connects to it over SSH (host key pinned by the provider, else known_hosts), runs
 * the bootstrap script and becomes READY. The pool then runs commands on one rank or all of
 * them with streamed output, copies files, and on close terminates every instance, completing
 * only when the provider has confirmed each one gone.
 *
 * Every command runs with KITE_NODE_RANK, KITE_NUM_NODES, KITE_NODE_IPS (newline-separated,
 * by rank), KITE_HEAD_IP (the address of the lowest rank READY when the command starts: rank 0
 * unless it failed or is being replaced) and the spec's env in its environment.
 *
 * Loop-thread only. Callbacks follow the library's contract: when a function returns an
 * error its callback is never called; otherwise exactly once. */

#include <stdbool.h>
#include <stdint.h>

#include "kite/bus.h"
#include "kite/monitor.h"
#include "kite/runtime.h"

typedef struct kite_pool kite_pool_t;
typedef struct kite_bootstrap kite_bootstrap_t;

/* How the optimizer buys instances. */
typedef enum kite_allocation {
  KITE_ALLOC_DEFAULT = 0,       /* on-demand, or spot when kite_pool_spec_t.spot */
  KITE_ALLOC_SPOT,              /* spot only */
  KITE_ALLOC_ON_DEMAND,         /* on-demand only */
  KITE_ALLOC_SPOT_IF_AVAILABLE, /* spot first; on-demand when spot has no capacity */
  KITE_ALLOC_CHEAPEST,          /* whichever is cheaper, spot or on-demand */
} kite_allocation_t;

/* One accelerator that would do: model and count per node. */
typedef struct kite_accelerator_choice {
  const char *name;
  unsigned count;
} kite_accelerator_choice_t;

typedef struct kite_pool_spec {
  const char *name;     /* required; names the pool (and its tag, "kite-pool-NAME") */
  const char *provider; /* provider name; NULL: the registry's default */
  unsigned nodes;       /* desired size, >= 1 */
  unsigned min_nodes;   /* usable at this many READY nodes; 0: nodes */
  const char *region;
  const char *instance_type;
  const char *image;
  bool spot;
  const char *provider_options;      /* JSON object text handed to the provider, or NULL */
  const kite_bootstrap_t *bootstrap; /* rendered at open (borrowed during the call); or NULL */
  /* How long a node's bootstrap may run (spec: bootstrap.timeout); past it the script's
   * process group is killed and the node fails with KITE_ETIMEDOUT. 0: 1 hour. */
  uint64_t bootstrap_timeout_ms;
  const char *const *env;      /* NULL-terminated "NAME=VALUE" list for every command, or NULL */
  int hostkey_mode;            /* kite_hostkey_mode_t for instances without a pinned key */
  uint64_t connect_timeout_ms; /* SSH connect deadline per node; 0: 30 s */
  /* Replacement policy: a node found lost or preempted by the monitors is replaced (same
   * rank, same bootstrap) when replace is on, at most max_replacements times per pool (0:
   * unlimited) and at most replace_per_minute times a minute (0: 10), so a provider outage
   * cannot cause a replacement storm. Otherwise the node FAILS and the pool shrinks
   * (pool_shrunk says whether min_nodes still holds). */
  bool replace;
  unsigned max_replacements;
  unsigned replace_per_minute;
  /* Health and preemption monitors; zeroes mean the defaults of monitor.h. */
  kite_pool_monitor_options_t monitors;
  bool monitors_off; /* no monitors at all (nothing detects a lost node) */
  /* Dead-man's switch: every node runs a watchdog that shuts the node down when the health
   * monitor's heartbeat has not arrived for this long (the last defence against a leak when
   * the controller dies and nobody runs `kite down`). 0: 10 minutes. */
  uint64_t deadman_timeout_ms;
  bool deadman_off; /* no watchdog (only when explicitly asked for; always off on
                       the ssh provider: those machines are the user's own) */
  /* Resources to choose an instance by when instance_type is NULL; zero or NULL means no
   * constraint. The optimizer (DESIGN.md, "Choosing and paying") picks the cheapest offer of
   * the providers' catalogs that has them, among the providers and regions allowed. */
  unsigned cpus;              /* at least this many vCPUs */
  uint64_t memory_mb;         /* at least this much memory, MiB */
  const char *accelerator;    /* accelerator model, e.g. "A100" */
  unsigned accelerator_count; /* accelerators per node; 0 with accelerator set: 1 */
  unsigned disk_gb;           /* root disk size, GiB */
  /* Several accelerators that would do instead of accelerator (which is then NULL): the
   * cheapest offer of any of them, or, when accelerators_ordered, the first of them (in this
   * order) that has an offer, the next ones only as failover. */
  const kite_accelerator_choice_t *accelerators;
  size_t n_accelerators;
  bool accelerators_ordered;
  /* Where the optimizer may launch: providers (NULL-terminated; NULL: provider alone), or
   * every configured provider with a catalog (provider_any); regions (NULL-terminated; NULL:
   * region alone, and with region NULL too: any region). With several providers,
   * provider_options is a JSON object of {NAME: {options}}. */
  const char *const *providers;
  bool provider_any;
  const char *const *regions;
  /* Spot or on-demand: KITE_ALLOC_DEFAULT is on-demand, or spot when spot is set. */
  kite_allocation_t allocation;
  /* Cost ceilings in USD (0: none): per node per hour (offers above it are never chosen),
   * per pool per hour (a launch that would take the pool's rate above it is refused before
   * it is sent), and in all (the pool closes itself when what it spent reaches it). */
  double max_hourly_cost_node;
  double max_hourly_cost;
  double max_total_cost;
  /* Launch failover: a failed candidate is not tried again by any node for this long (0: 5
   * minutes); a node gives up after failover_attempts launches (0: 12) or failover_timeout_ms
   * (0: 15 minutes) and fails with the trail of every attempt. */
  uint64_t failover_block_ms;
  unsigned failover_attempts;
  uint64_t failover_timeout_ms;
  /* SSH login for instances whose provider does not supply one (e.g. an `ssh` inventory);
   * NULL: the provider's default. kite_registry_check_spec() turns them into the provider's
   * own options; kite_pool_open itself does not read them. */
  const char *ssh_user;
  const char *ssh_key; /* private key file */
} kite_pool_spec_t;

/* Called once when the pool is usable (status 0: min_nodes READY) or cannot become so
 * (status < 0, message says which rank and why; every instance has been terminated by
 * then). In both cases the pool must eventually be closed with kite_pool_close(). */
typedef void (*kite_pool_open_cb)(kite_pool_t *pool, int status, const char *message, void *data);

int kite_pool_open(kite_runtime_t *rt, const kite_pool_spec_t *spec, kite_pool_open_cb cb,
                   void *data, kite_pool_t **out);

/* What kite_pool_open would launch, without launching anything: status 0 and plan, a JSON
 * object text {"pool", "nodes", "ranks": [{"rank", "provider", "region", "zone",
 * "instance_type", "spot", "price", "ondemand_price", ...}], "candidates": [the same, in
 * failover order], "hourly": the pool's rate in USD, "chosen": whether the catalog chose};
 * or status < 0 and message (no offer fits: the closest ones and what made each miss; a
 * ceiling the cheapest plan breaks). Reads the providers' catalogs (catalog.h) when the spec
 * asks kite to choose; those providers must be started in rt. cb runs once. */
typedef void (*kite_pool_plan_cb)(int status, const char *plan, const char *message, void *data);

/* The optimizer alone, over offers the caller holds (kite_catalog_get's, or its own): *plan as
 * kite_pool_plan gives it (malloc'd; no reach records are asked), or KITE_ESPEC / KITE_EPRICE
 * and *why (malloc'd) when no offer fits or the cheapest plan breaks max_hourly_cost. Needs
 * no runtime. */
struct kite_offer;
int kite_pool_choose(const kite_pool_spec_t *spec, const struct kite_offer *offers, size_t n,
                     char **plan, char **why);
int kite_pool_plan(kite_runtime_t *rt, const kite_pool_spec_t *spec, kite_pool_plan_cb cb,
                   void *data);

/* ---- commands ---------------------------------------------------------------------------- */

typedef struct kite_cmd {
  const char *const *argv; /* argv, quoted by kite; or */
  const char *shell;       /* a shell script, run by /bin/sh */
} kite_cmd_t;

typedef struct kite_task_opts {
  uint64_t timeout_ms;    /* per rank; 0: none */
  unsigned fanout;        /* broadcast: ranks in flight at once; 0: all */
  unsigned retries;       /* re-run on the replacement when the node is lost */
  const char *const *env; /* extra "NAME=VALUE" for this task */
} kite_task_opts_t;

/* One rank's outcome. error is 0 when the command ran to its end (then exit_status, or signal
 * when it was killed by one), else why it did not (KITE_ETIMEDOUT, KITE_ENODELOST, …). */
typedef struct kite_rank_result {
  uint32_t rank;
  int error;
  int exit_status;
  const char *signal;  /* "KILL", … or NULL */
  const char *message; /* or NULL */
  unsigned attempts;
} kite_rank_result_t;

typedef struct kite_task_result {
  unsigned count;  /* ranks in the task */
  unsigned failed; /* ranks with error != 0 or exit_status != 0 */
  const kite_rank_result_t *ranks;
} kite_task_result_t;

/* Streaming output: any number of times, before the completion. stream 1 stdout, 2 stderr.
 * attempt counts from 1; output of an attempt lost with its node has a lower attempt number
 * than the re-run's. */
typedef void (*kite_output_cb)(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                               const void *buf, size_t len, void *data);
/* Completion: the result is valid during the callback only. status < 0 only when the task
 * could not run at all (e.g. the pool closed). */
typedef void (*kite_task_cb)(kite_pool_t *pool, int status, const kite_task_result_t *result,
                             void *data);

/* Runs cmd on one rank. */
int kite_pool_run(kite_pool_t *pool, uint32_t rank, const kite_cmd_t *cmd,
                  const kite_task_opts_t *opts, kite_output_cb out, kite_task_cb cb, void *data,
                  uint64_t *task_id);
/* Runs cmd on the n ranks of ranks (each at most once, each < kite_pool_size(); KITE_EINVAL
 * otherwise), as one task: the result has those ranks, in the order given. */
int kite_pool_run_ranks(kite_pool_t *pool, const uint32_t *ranks, unsigned n, const kite_cmd_t *cmd,
                        const kite_task_opts_t *opts, kite_output_cb out, kite_task_cb cb,
                        void *data, uint64_t *task_id);
/* Runs cmd on every rank. */
int kite_pool_broadcast(kite_pool_t *pool, const kite_cmd_t *cmd, const kite_task_opts_t *opts,
                        kite_output_cb out, kite_task_cb cb, void *data, uint64_t *task_id);

/* Cancels the task that kite_pool_run() or kite_pool_broadcast() named *task_id: ranks not
 * started end at once, and a running command is stopped on its node (its process group gets
 * TERM, then KILL after 3 s). The task's cb runs once every rank has ended, those canceled
 * with error KITE_ECANCELED, so by then nothing of the task runs on any node. KITE_ENOENT
 * when no such task runs (it has completed). Closing the pool cancels every task this way
 * before it terminates any instance. */
int kite_pool_cancel(kite_pool_t *pool, uint64_t task_id);

/* Flow control for a consumer of a task's output that falls behind (a client on a slow pipe):
 * hold true stops reading the output of the task's commands on every node (a command blocks
 * on its next write once SSH's window is full; what was read is delivered), hold false reads
 * on. Ranks that start while the task is held start held. Nothing is dropped; the task's
 * timeout still runs. KITE_ENOENT when no such task runs. */
int kite_pool_hold(kite_pool_t *pool, uint64_t task_id, bool hold);

/* Copies a local file or tree to the same path on every node (relative paths are relative to
 * the node's working directory). */
int kite_pool_upload(kite_pool_t *pool, const char *local, const char *remote, kite_task_cb cb,
                     void *data);
/* Copies a file or tree from one rank to a local path. */
int kite_pool_download(kite_pool_t *pool, uint32_t rank, const char *remote, const char *local,
                       kite_task_cb cb, void *data);

/* ---- inspection -------------------------------------------------------------------------- */

uint64_t kite_pool_id(const kite_pool_t *pool);
const char *kite_pool_name(const kite_pool_t *pool);
unsigned kite_pool_size(const kite_pool_t *pool);
unsigned kite_pool_ready_count(const kite_pool_t *pool);
/* The READY count the pool needs to be usable (the spec's min_nodes, or its size). */
unsigned kite_pool_min_nodes(const kite_pool_t *pool);
int kite_pool_node_state(const kite_pool_t *pool, uint32_t rank);
/* Provider instance id / address of a rank (NULL while it has none). */
const char *kite_pool_instance_id(const kite_pool_t *pool, uint32_t rank);
const char *kite_pool_address(const kite_pool_t *pool, uint32_t rank);
uint64_t kite_pool_node_id(const kite_pool_t *pool, uint32_t rank);

/* ---- close ------------------------------------------------------------------------------- */

typedef void (*kite_pool_close_cb)(kite_pool_t *pool, int status, void *data);
/* Cancels running tasks, terminates every instance (also ones still being launched) and calls
 * cb when the provider has confirmed each gone; the pool is freed after cb returns. status is
 * 0, or < 0 when an instance could not be confirmed terminated (the message was logged, and
 * the instance stays recorded so `kite down` can retry). Double close asserts. */
void kite_pool_close(kite_pool_t *pool, kite_pool_close_cb cb, void *data);

#endif
