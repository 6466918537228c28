#ifndef KITE_MONITORS_IMPL_H
#define KITE_MONITORS_IMPL_H

/* The pool's view of its monitors (node_watch.c). */

#include "kite/monitor.h"

typedef struct kite__watch kite__watch_t;

/* Starts watching the nodes of pool `pool` (through its events): with the health and
 * preemption monitors unless opts is NULL (the pool's monitors are off), and, when
 * heartbeat_ms is not 0, by refreshing the dead-man's switch's heartbeat on every node whose
 * watchdog may run, every heartbeat_ms, whatever the health checks do. */
int kite__watch_new(kite_runtime_t *rt, uint64_t pool, const char *provider,
                    const kite_pool_monitor_options_t *opts, uint64_t heartbeat_ms,
                    kite__watch_t **out);
/* Stops every monitor of the watch. */
void kite__watch_free(kite__watch_t *w);

#endif
