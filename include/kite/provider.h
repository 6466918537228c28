#ifndef KITE_PROVIDER_H
#define KITE_PROVIDER_H

/* The provider interface.
 *
 * A provider is a component (runtime.h, tier KITE_TIER_PROVIDER) that answers the instance
 * requests of the event table for its name, i.e. it registers responders keyed by
 * kite_key_str(name):
 *
 *   instance_launch    → instance_launched  (one instance for (pool, node, rank); no timeout:
 *                        an instance that exists is always reported, however late)
 *   instance_terminate → instance_terminated (only once the provider confirmed it is gone)
 *   instance_describe  → instance_state
 *   instance_list      → instance_listed     (instances carrying a pool's tag, to find leaks)
 *   preempt_check      → preempt_status      (0 running, 1 notice with deadline, 2 preempted)
 *
 * or with kite_bus_reply_error() and a message that says what was wrong and what to do.
 *
 * An instance (the instance_launched payload) carries: the provider's id for it, its address
 * and SSH port, the login user, its host key when known at launch (pinned, so the first
 * connection is verified), its hourly price when known, the tag naming its pool, and the
 * private key file that logs in to it.
 *
 * The pool and the nodes never call a provider directly; they send these requests. A new
 * provider is one folder under providers/ and one constructor. */

#include "kite/bus.h"
#include "kite/runtime.h"

/* Values of preempt_status.state. */
enum { KITE_PREEMPT_NONE = 0, KITE_PREEMPT_NOTICE = 1, KITE_PREEMPT_GONE = 2 };

/* ---- the local provider (providers/local/) --------------------------------------------- */

typedef struct kite_local_provider kite_local_provider_t;

typedef struct kite_local_provider_options {
  /* sshd port for every node; 0: 2222. */
  unsigned port;
  /* Simulated spot capacity: notice period before a preempted node dies (ms); 0: 2000. AWS
   * gives two minutes; tests and demos use less. */
  uint64_t notice_ms;
  /* Chaos: each node is preempted with this probability per minute (0: never) … */
  double chaos_per_minute;
  /* … or once, this long after it started (0: never). */
  uint64_t chaos_after_ms;
  /* Seed for the chaos choice (0: from the clock). */
  unsigned chaos_seed;
  /* Nodes outlive this process when it dies without closing its pools, as cloud machines
   * would (then only their dead-man's switch or `kite down` stops them). By default they die
   * with it. */
  bool outlive_controller;
} kite_local_provider_options_t;

/* Creates the "local" provider and adds it to the runtime. Each instance is a real sshd node
 * (local.h) tagged with the pool's tag; it logs in with kite's key ($KITE_HOME/keys/id_ed25519,
 * created if missing). opts may be NULL. */
int kite_local_provider_new(kite_runtime_t *rt, const kite_local_provider_options_t *opts,
                            kite_local_provider_t **out);

/* Simulated preemption of one instance: a notice first (preempt_check answers NOTICE with the
 * deadline), then after the notice period the node dies as a machine would. With abrupt, the
 * node dies at once without notice. */
int kite_local_provider_preempt(kite_local_provider_t *lp, const char *instance_id, bool abrupt);

/* Number of instances the provider holds now. */
unsigned kite_local_provider_count(const kite_local_provider_t *lp);

/* Takes charge of an instance that another process started and can no longer stop (it died:
 * `kite down` of a pool whose owner was killed). Local nodes are found by their pool's tag
 * (every process of a node carries KITE_NODE_TAG=<tag>), so an instance_terminate of
 * instance_id then kills every process carrying tag and is confirmed only once none is left
 * (kite_local_count_tagged(tag) == 0); instance_list lists it under tag until then. That ends
 * every node of the tag at once: adopt only tags whose owner is gone. KITE_EBUSY when this
 * provider runs instances of tag itself, KITE_EEXIST when it knows instance_id already. */
int kite_local_provider_adopt(kite_local_provider_t *lp, const char *instance_id,
                              const char *tag);

/* ---- the ssh provider (providers/ssh/) ------------------------------------------------------ */

/* Machines the user already has, like pdsh: rank r is the r-th inventory entry. Each entry is
 * "[user@]host[:port]" (IPv6 as "[::1]:22"), resolved through ssh_config (HostName, User,
 * Port, IdentityFile; the first value wins, as in ssh). Host keys recorded in the user's
 * known_hosts are pinned; a host not there falls to the pool's host key mode. Nothing is
 * created, so terminating an instance only releases the machine, untouched. A pool's
 * provider_options JSON may override every field: {"hosts": [...], "ssh_config": P,
 * "known_hosts": P, "user": U, "key": P}. */
typedef struct kite_ssh_provider kite_ssh_provider_t;

typedef struct kite_ssh_provider_options {
  const char *const *hosts; /* NULL-terminated inventory, or NULL (then from the pool) */
  const char *ssh_config;   /* NULL: ~/.ssh/config (missing is fine) */
  const char *known_hosts;  /* NULL: ~/.ssh/known_hosts */
  const char *user;         /* when neither the entry nor ssh_config says; NULL: $USER */
  const char *key;          /* when ssh_config names none; NULL: ~/.ssh/id_ed25519 or
                               id_ecdsa if present, else ssh-agent */
} kite_ssh_provider_options_t;

/* Creates the "ssh" provider and adds it to the runtime. opts may be NULL. */
int kite_ssh_provider_new(kite_runtime_t *rt, const kite_ssh_provider_options_t *opts,
                          kite_ssh_provider_t **out);

#endif
