#ifndef KITE_POOL_IMPL_H
#define KITE_POOL_IMPL_H

/* The pool and its node actors share this layout (pool.c, node.c); the spec schema (spec.c)
 * shares the pool's name rule. */

#include "../monitors/monitors_impl.h"
#include "kite/pool.h"
#include "kite_impl.h"

typedef struct kite__node kite__node_t;

struct kite__node {
  kite_pool_t *pool;
  uint64_t id;
  uint32_t rank;
  kite_node_state_t state;

  /* The instance behind the node now (changes on replacement). */
  char *instance_id;
  char *address;
  char *user;
  char *host_key;
  char *key_path;
  uint32_t port;
  double price_hourly;
  bool instance_live;   /* exists at the provider and is not confirmed terminated */

  /* Outstanding requests (0: none). The launch has no timeout and is never canceled: its
   * reply says what exists. */
  uint64_t launch_corr;
  uint64_t connect_corr;
  uint64_t boot_corr;
  uint64_t term_corr;
  uint64_t disc_corr;
  bool session_open;

  unsigned replacements;
  char *old_instance;   /* while REPLACING: the instance being replaced */
  bool replace_held;    /* REPLACING, waiting for the rate limit */
  char *failure; /* why the node FAILED, for the pool's error */
  int failure_code;     /* and the error code that goes with it */
  int64_t store_row;    /* the state store's row of the instance behind it now, or 0 */
  /* Bumped each time the node leaves service (REPLACING, FAILED, TERMINATING, TERMINATED): a
   * command started at an older epoch runs on an instance that is going away. */
  uint32_t epoch;

  /* The pool's bookkeeping (pool.c), kept by kite__pool_node_dirty(). */
  bool dirty;                 /* on the pool's dirty list: changed since the pool's last turn */
  kite__node_t *dirty_next;
  kite_node_state_t counted;  /* the state this node is counted under in pool->state_n */
  bool counted_final;         /* counted in pool->final_n (final is for good) */
};

struct kite_pool {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  uint64_t id;
  char *name;
  char *tag;
  char *provider;
  char *region, *instance_type, *image, *provider_options;
  bool spot;
  /* The reach record of the pool's launches (provider.h), resolved by the provider before the
   * first launch and written with every instance's launch record. */
  char *reach;
  uint64_t reach_corr;   /* the outstanding reach_resolve, or 0 */
  int reach_status;      /* why it could not be resolved (then every launch fails), or 0 */
  char *reach_message;
  char *script;          /* rendered bootstrap, or NULL */
  kite_store_t *store;   /* the runtime's state store */
  char **env;            /* spec env, NULL-terminated */
  int hostkey_mode;
  uint64_t connect_timeout_ms;
  uint64_t deadman_ms;   /* 0: no watchdog */
  bool replace;
  unsigned max_replacements;
  unsigned replace_per_minute;
  unsigned replacements;
  uint64_t replace_window_start; /* loop time (ms) of the current one-minute window */
  unsigned replace_window_n;     /* replacements started in it */
  uv_timer_t replace_timer;      /* retries replacements held back by the rate limit */
  bool replace_timer_open;
  kite__watch_t *watch;
  kite__cost_t *cost; /* accounts for what its instances cost, until the pool is freed */
  kite_sub_t subs[4];

  unsigned nodes_n, min_nodes;
  kite__node_t *nodes;
  /* Kept up to date as nodes change, so that no node change costs a pass over the nodes. */
  unsigned state_n[KITE_NODE__COUNT]; /* nodes per state */
  unsigned final_n;                   /* nodes that are final (kite__node_final) */
  bool min_reached;                   /* min_nodes were READY at once (the pool is usable) */
  unsigned ready_at_min;              /* the READY count at that moment */
  /* Nodes that changed since the pool's last turn, oldest first. The turn (an idle handle,
   * active only while the list is not empty) reacts to all of them at once: the tasks that
   * wait for them or run on them, the open, the close. */
  kite__node_t *dirty_head, *dirty_tail;
  uv_idle_t turn;
  bool turn_open;

  kite_pool_open_cb open_cb;
  void *open_data;
  bool open_reported;
  int open_status;
  char *open_message;

  struct kite__task *tasks; /* running tasks */

  bool closing;
  bool nodes_closing;       /* every node was told to close (after the cancels were confirmed) */
  bool close_reported;
  bool user_closed;
  int close_status;
  kite_pool_close_cb close_cb;
  void *close_data;
  kite_component_stopped_fn comp_done;
  bool in_runtime;
  int refs; /* held around callbacks into user code */
  bool freed;
};

/* node.c */
int kite__node_set_state(kite__node_t *n, kite_node_state_t to, const char *reason);
void kite__node_start(kite__node_t *n);
void kite__node_close(kite__node_t *n);
/* The node was found lost or preempted: replace it (policy permitting) or fail it. */
void kite__node_lost(kite__node_t *n, const char *reason);
/* Launches the replacement of a REPLACING node whose old instance is gone. */
void kite__node_relaunch(kite__node_t *n);
/* A preemption notice: a READY node takes no new tasks (DRAINING). */
void kite__node_drain(kite__node_t *n, const char *reason);
bool kite__node_final(const kite__node_t *n);
void kite__node_free(kite__node_t *n);

/* pool.c */
/* Whether s is a valid pool name: 1-48 of [A-Za-z0-9_-], not starting with '-'. */
bool kite__pool_name_valid(const char *s);
/* called by nodes: */
/* n changed: its state, or a request of its own ended. Counts n's state at once and puts it on
 * the pool's dirty list; the pool reacts on its next turn, never inside the node's change. */
void kite__pool_node_dirty(kite_pool_t *pool, kite__node_t *n);
/* May this node be replaced at all (replace on, max_replacements not reached)? Counts the
 * replacement when it may: 0 yes, < 0 no. */
int kite__pool_replace_permit(kite_pool_t *pool);
/* Takes one start from the replacement rate limit; false: not now (the pool retries the held
 * nodes when the window allows). */
bool kite__pool_rate_take(kite_pool_t *pool);

#endif
