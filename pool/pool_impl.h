#ifndef KITE_POOL_IMPL_H
#define KITE_POOL_IMPL_H

/* The pool and its node actors share this layout (pool.c, node.c); the spec schema (spec.c)
 * shares the pool's name rule. */

#include "../monitors/monitors_impl.h"
#include "kite/offer.h"
#include "kite/pool.h"
#include "kite_impl.h"

/* A node's bootstrap deadline when the spec names none (bootstrap.timeout). */
#define KITE_BOOTSTRAP_TIMEOUT_MS (3600ull * 1000)

typedef struct kite__node kite__node_t;
typedef struct kite__plan kite__plan_t;

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
  bool instance_live; /* exists at the provider and is not confirmed terminated */

  /* Outstanding requests (0: none). The launch has no timeout and is never canceled: its
   * reply says what exists. */
  uint64_t launch_corr;
  uint64_t connect_corr;
  uint64_t boot_corr;
  uint64_t term_corr;
  uint64_t disc_corr;
  bool session_open;

  unsigned replacements;
  char *old_instance; /* while REPLACING: the instance being replaced */
  bool replace_held;  /* REPLACING, waiting for the rate limit */
  bool term_retry;    /* its termination could not be asked for: asked again (term_timer) */
  char *failure;      /* why the node FAILED, for the pool's error */
  int failure_code;   /* and the error code that goes with it */
  int64_t store_row;  /* the state store's row of the instance behind it now, or 0 */
  /* Bumped each time the node leaves service (REPLACING, FAILED, TERMINATING, TERMINATED): a
   * command started at an older epoch runs on an instance that is going away. */
  uint32_t epoch;

  /* Where it launches (plan.c): its candidate, the launches of this chain, since when, and
   * what each refusal said; the provider and reach record of the instance behind it now. */
  unsigned cand;
  unsigned failover_attempts;
  uint64_t failover_start_ms;
  char *failover_trail;
  char *provider;
  char *reach;
  double launch_price; /* the candidate's price while launching (for max_hourly_cost) */

  /* The pool's bookkeeping (pool.c), kept by kite__pool_node_dirty(). */
  bool dirty; /* on the pool's dirty list: changed since the pool's last turn */
  kite__node_t *dirty_next;
  kite_node_state_t counted; /* the state this node is counted under in pool->state_n */
  bool counted_final;        /* counted in pool->final_n (final is for good) */
};

struct kite_pool {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  uint64_t id;
  char *name;
  char *tag;
  char *provider; /* the spec's provider (the first when several) */
  char *image;
  /* Where each rank launches (plan.c): candidates and their sites' reach records, resolved
   * before the first launch and written with every instance's launch record. */
  kite__plan_t *plan;
  double max_total_cost;
  kite_sub_t cost_sub;
  char *script;        /* rendered bootstrap, or NULL */
  kite_store_t *store; /* the runtime's state store */
  char **env;          /* spec env, NULL-terminated */
  int hostkey_mode;
  uint64_t connect_timeout_ms;
  uint64_t bootstrap_timeout_ms;
  uint64_t deadman_ms; /* 0: no watchdog */
  bool replace;
  unsigned max_replacements;
  unsigned replace_per_minute;
  unsigned replacements;
  uint64_t replace_window_start; /* loop time (ms) of the current one-minute window */
  unsigned replace_window_n;     /* replacements started in it */
  uv_timer_t replace_timer;      /* retries replacements held back by the rate limit */
  bool replace_timer_open;
  uv_timer_t term_timer; /* asks again for terminations that could not be sent */
  bool term_timer_open;
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
  bool nodes_closing; /* every node was told to close (after the cancels were confirmed) */
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
/* Asks again for a termination that could not be sent (term_retry). */
void kite__node_terminate_again(kite__node_t *n);
/* Arms the pool's term_timer: a second from now, every node with term_retry asks again. */
void kite__pool_term_later(kite_pool_t *pool);
/* A preemption notice: a READY node takes no new tasks (DRAINING). */
void kite__node_drain(kite__node_t *n, const char *reason);
bool kite__node_final(const kite__node_t *n);
void kite__node_free(kite__node_t *n);

/* optimizer.c: one way of buying an offer, in failover order. */
typedef struct kite__cand {
  kite_offer_t offer;
  bool spot;
  double price;    /* USD/h as bought (the spot price when spot) */
  double ondemand; /* the offer's on-demand price, or < 0 */
  unsigned group;  /* preference group: ordered accelerators */
  unsigned phase;  /* spot-if-available: 0 spot, 1 on-demand */
} kite__cand_t;

/* The candidates (malloc'd, cheapest first within preference) for ps among offers; when none
 * fits, KITE_ESPEC and *why (malloc'd) names the closest offers and what made each miss. */
int kite__optimize(const kite_pool_spec_t *ps, const kite_offer_t *offers, size_t n,
                   kite__cand_t **out, size_t *n_out, char **why);
/* "provider/region[/zone]/type[ spot]", malloc'd. */
char *kite__cand_name(const kite__cand_t *c);

/* plan.c: where each rank launches, and where it goes when a cloud says no. */

typedef struct kite__site {
  kite__plan_t *plan;
  char *provider, *region; /* region "" when the provider's default */
  char *options;           /* the provider's options (JSON text), or NULL */
  char *reach;             /* the reach record of its launches, once resolved */
  uint64_t corr;           /* the outstanding reach_resolve, or 0 */
  int status;              /* why it cannot be reached, or 0 */
  char *message;
} kite__site_t;

struct kite__plan {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  kite_pool_spec_t want; /* the spec's choosing part, strings owned below */
  char *owned[256];
  size_t n_owned;
  bool oom, chooses, multi, making;
  kite__cand_t *cands; /* in failover order */
  size_t n;
  size_t *site_of; /* per candidate */
  kite__site_t *sites;
  size_t n_sites;
  uint64_t *blocked_until; /* per candidate, wall ms */
  char **blocked_why;
  unsigned *rank_cand; /* per rank: its planned candidate */
  double hourly;       /* the planned pool's rate */
  uint64_t block_ms, timeout_ms;
  unsigned attempts;
  int status; /* the plan could not be made: every launch fails with message */
  char *message;
  void (*done)(kite__plan_t *pl, int status, void *data);
  void *done_data;
};

/* Whether the spec asks kite to choose (then the catalog is read at open). */
bool kite__plan_chooses(const kite_pool_spec_t *s);
kite__plan_t *kite__plan_new(kite_runtime_t *rt, const kite_pool_spec_t *spec);
/* Makes the plan: done runs once (perhaps inside this call when nothing had to be asked). */
int kite__plan_make(kite__plan_t *pl, void (*done)(kite__plan_t *, int, void *), void *data);
void kite__plan_free(kite__plan_t *pl);
/* The plan as pool_planned's JSON text (malloc'd). */
char *kite__plan_json(const kite__plan_t *pl);
/* A fresh launch of n (first, or a replacement): its planned candidate, or the first one after
 * it that is not blocked. */
void kite__plan_begin(kite__plan_t *pl, kite__node_t *n);
/* n's candidate and its site now; or an error code and *why (malloc'd). */
int kite__plan_target(kite__plan_t *pl, const kite__node_t *n, const kite__cand_t **c,
                      const kite__site_t **s, char **why);
/* Whether a launch refused with code goes elsewhere (capacity, quota, price, unavailable). */
bool kite__plan_fails_over(int code);
/* n's launch was refused with code and message: blocks the candidate and moves n to the next
 * (true: launch again), or false: n fails, with *why (malloc'd, the whole trail) when there
 * was somewhere else to try. pool_hourly: the rate of the pool's other nodes, for
 * max_hourly_cost. Emits launch_failover either way. */
bool kite__plan_failover(kite__plan_t *pl, kite__node_t *n, uint64_t pool_id, int code,
                         const char *message, double pool_hourly, char **why);

/* pool.c */
/* The hourly rate of the pool's nodes that have or are getting an instance, but n. */
double kite__pool_hourly(const kite_pool_t *pool, const kite__node_t *n);
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
