#ifndef KITE_LOCAL_H
#define KITE_LOCAL_H

/* Local nodes: each one a real OpenSSH sshd on its own loopback address (127.0.1.0 and up,
 * so thousands fit on one port), with its own host key, its own working directory (its
 * "disk"; commands start there), its own config, and its own PID namespace, so that stopping
 * it kills everything that ran on it, as a machine's death would. This is the engine of the
 * `local` provider; tests and programs may also use it directly.
 *
 * Loop-thread only. */

#include <stdbool.h>
#include <stdint.h>

#include "kite/provider.h"
#include "kite/runtime.h"
#include "kite/transport.h" /* kite_keypair_ensure */

typedef struct kite_local_node kite_local_node_t;

typedef struct kite_local_node_options {
  /* Directory under which the node's own directory is made; NULL: $KITE_HOME/local. */
  const char *base_dir;
  /* A tag naming the pool (or test) the node belongs to. Every process of the node carries
   * KITE_NODE_TAG=<tag> in its environment, so kite_local_count_tagged() can find them.
   * 1-64 of [A-Za-z0-9-_.:]; NULL: "kite-local". (sshd's own processes overwrite their
   * environment with their process title, so the count sees the node's first process and
   * everything its sessions run, not the sshd processes themselves.) */
  const char *tag;
  /* The public key (one OpenSSH authorized_keys line) allowed to log in. Required. */
  const char *authorized_key;
  /* TCP port; 0: 2222. The same port serves every node (each has its own address). */
  uint16_t port;
  /* sshd's MaxSessions (channels per connection); 0: 256. */
  unsigned max_sessions;
  /* By default a node dies with the process that started it. With outlive_controller it
   * does not, as a cloud machine would not: it dies by kite_local_node_stop(), by its power
   * switch (a line written to the FIFO named by $KITE_POWEROFF on the node, which is how its
   * dead-man's switch shuts it down), or with the machine. */
  bool outlive_controller;
} kite_local_node_options_t;

/* Called once when the node's sshd is listening (status 0) or could not be started (the reason
 * is logged). A node that failed to start, or that died later, still holds its address and
 * directory until kite_local_node_stop(). */
typedef void (*kite_local_node_cb)(kite_local_node_t *node, int status, void *data);

/* Starts a node: allocates an address (safe across processes running at once), generates
 * a host key, writes the config and starts sshd. On a 0 return, cb runs exactly once later; on
 * an error return cb is never called and *out is untouched. */
int kite_local_node_start(kite_runtime_t *rt, const kite_local_node_options_t *opts,
                          kite_local_node_cb cb, void *data, kite_local_node_t **out);

/* Stops the node: kills every process that runs on it, releases its address and removes its
 * directory. cb (may be NULL) runs when all of that is done; the node is freed after cb
 * returns. Valid in any state, also while starting (the start cb then gets KITE_ECANCELED
 * first). Double stop asserts. */
void kite_local_node_stop(kite_local_node_t *node, kite_local_node_cb cb, void *data);

const char *kite_local_node_address(const kite_local_node_t *node); /* "127.0.1.7" */
uint16_t kite_local_node_port(const kite_local_node_t *node);
const char *kite_local_node_user(const kite_local_node_t *node);    /* login user */
/* The host public key as "ssh-ed25519 AAAA…" (type and base64), for pinning. */
const char *kite_local_node_host_key(const kite_local_node_t *node);
const char *kite_local_node_dir(const kite_local_node_t *node);     /* working directory */
/* The working directory as commands on the node see it: what `pwd` prints right after login,
 * where relative paths (also SFTP's) land. The same path as kite_local_node_dir() unless the
 * login user cannot reach that path (root running with a private $KITE_HOME): then the node's
 * directory is mounted over the login user's home inside the node, and this is that home. */
const char *kite_local_node_remote_dir(const kite_local_node_t *node);
/* pid of the node's first process (pid 1 of its PID namespace, as seen from here); 0 if not
 * known yet or not running. Killing it with SIGKILL kills the whole node, like a crash. */
int kite_local_node_pid(const kite_local_node_t *node);

/* Counts live processes whose environment has KITE_NODE_TAG=<tag> (reads /proc). */
int kite_local_count_tagged(const char *tag);

/* The login user local nodes use: "kite-node" when running as root (created by the install
 * step), else the current user. */
const char *kite_local_login_user(void);


/* ---- the local provider ------------------------------------------------------------------ */

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

#endif
