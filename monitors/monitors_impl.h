#ifndef KITE_MONITORS_IMPL_H
#define KITE_MONITORS_IMPL_H

/* The pool's view of its monitors (node_watch.c, cost.c). */

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

typedef struct kite__cost kite__cost_t;

/* Starts accounting for what the instances of pool `pool` cost (through its events), with a
 * `cost` event per running instance and one for the pool every interval_ms (0: 60 s) and
 * whenever an instance ends. Free it once the pool's instances are confirmed gone. */
int kite__cost_new(kite_runtime_t *rt, uint64_t pool, uint64_t interval_ms, kite__cost_t **out);
/* What every instance the pool ever had has cost so far (USD), running ones up to now. */
double kite__cost_total(const kite__cost_t *c);
/* Stops it (no event after this). NULL is ignored. */
void kite__cost_free(kite__cost_t *c);

#endif
