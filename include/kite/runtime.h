#ifndef KITE_RUNTIME_H
#define KITE_RUNTIME_H

#include <stddef.h>
/* libuv's header needs POSIX types (pthread_rwlock_t…), which a strict -std=c11 hides. */
#if defined(__STRICT_ANSI__) && !defined(_DEFAULT_SOURCE) && !defined(_POSIX_C_SOURCE) &&        \
    !defined(_GNU_SOURCE) && !defined(_XOPEN_SOURCE)
#error "kite's headers need POSIX: compile with -D_DEFAULT_SOURCE (pkg-config --cflags kite has it)"
#endif
#include <uv.h>

#include "kite/log.h"

/* The runtime owns (or borrows) one uv_loop_t and everything kite hangs off it: the event bus,
 * the components, the logger and its secrets, and kite's home directory.
 *
 * Threads: everything in kite runs on the loop's thread and must be called from it. The one
 * exception is kite_runtime_post(), which any thread may call to hand work to the loop. */

/* From a pointer to a member back to the struct that embeds it (a component, a uv handle). */
#define kite_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

typedef struct kite_runtime kite_runtime_t;
typedef struct kite_bus kite_bus_t;
typedef struct kite_component kite_component_t;

typedef struct kite_runtime_options {
  uv_loop_t *loop;          /* borrowed loop, or NULL to create and own one */
  const char *home;         /* kite's directory; NULL: $KITE_HOME, else ~/.kite */
  size_t bus_queue_bytes;   /* bound of the event queue; 0: 8 MiB */
  int log_level;            /* -1: from $KITE_LOG (default warn); else a kite_log_level_t */
} kite_runtime_options_t;

/* Shutdown order: lower tiers stop first, and a tier stops only when every component of the
 * tier before it has reported stopped. Pools go first so that every instance is terminated
 * while the transport and the providers it needs are still there. */
typedef enum kite_tier {
  KITE_TIER_POOL = 0,
  KITE_TIER_MONITOR,
  KITE_TIER_TRANSPORT,
  KITE_TIER_PROVIDER,
  KITE_TIER__COUNT
} kite_tier_t;

typedef void (*kite_component_stopped_fn)(kite_component_t *c);

/* A component: something with a name, a start and an asynchronous stop. Embed it in your own
 * struct and get back to it with container_of. Fill name, tier, start and stop, then call
 * kite_runtime_add(). */
struct kite_component {
  const char *name;
  kite_tier_t tier;
  /* Called by kite_runtime_add(); a non-zero return refuses the component. */
  int (*start)(kite_component_t *c, kite_runtime_t *rt);
  /* Called once at shutdown (or by kite_runtime_remove); must call done(c) exactly once when
   * everything the component owns is closed — from inside stop or later on the loop. */
  void (*stop)(kite_component_t *c, kite_component_stopped_fn done);
  /* private */
  kite_runtime_t *rt_;
  kite_component_t *next_;
  int state_;
};

/* Creates a runtime. opts may be NULL. Creates the home directory (mode 0700) if missing. */
int kite_runtime_new(kite_runtime_t **out, const kite_runtime_options_t *opts);

uv_loop_t *kite_runtime_loop(kite_runtime_t *rt);
kite_bus_t *kite_runtime_bus(kite_runtime_t *rt);
/* kite's home directory, without a trailing slash. */
const char *kite_runtime_home(const kite_runtime_t *rt);

/* Registers and starts c. The runtime does not own c's memory. */
int kite_runtime_add(kite_runtime_t *rt, kite_component_t *c);
/* Unregisters a component that stopped on its own (its stop is not called). */
int kite_runtime_remove(kite_runtime_t *rt, kite_component_t *c);
/* Finds a started component by name, or NULL. */
kite_component_t *kite_runtime_find(kite_runtime_t *rt, const char *name);

/* Runs the loop until it has nothing left to do (uv_run DEFAULT). */
int kite_runtime_run(kite_runtime_t *rt);

typedef void (*kite_runtime_shutdown_fn)(kite_runtime_t *rt, void *data);
/* Stops every component, tier by tier (pools, monitors, transport, providers), then the bus and
 * the runtime's own handles. cb runs once, on the loop, when all are stopped. A second call
 * while shutting down returns KITE_EBUSY and its cb is not called. */
int kite_runtime_shutdown(kite_runtime_t *rt, kite_runtime_shutdown_fn cb, void *data);

/* Opt-in: SIGINT and SIGTERM start kite_runtime_shutdown() (cb may be NULL). A second signal
 * while shutting down calls cb2 if given (for example to exit at once). Never installed unless
 * asked for. */
int kite_runtime_handle_signals(kite_runtime_t *rt, kite_runtime_shutdown_fn on_done,
                                void (*on_second)(kite_runtime_t *rt, int signum), void *data);

/* The one thread-safe entry point: queues fn(rt, data) to run on the loop thread. Safe from any
 * thread, at any time until kite_runtime_free(). Returns KITE_ECLOSED after shutdown began. */
int kite_runtime_post(kite_runtime_t *rt, void (*fn)(kite_runtime_t *rt, void *data), void *data);

/* Frees the runtime after shutdown completed (and the loop has run until the runtime's handles
 * closed). Closes the loop if the runtime created it. Returns KITE_EBUSY if handles remain. */
int kite_runtime_free(kite_runtime_t *rt);

#endif
