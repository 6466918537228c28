#ifndef KITE_MONITOR_H
#define KITE_MONITOR_H

/* Monitors: interval checks on uv timers (DESIGN.md, "Monitors").
 *
 * A monitor runs a check every interval (plus a random jitter, so that many monitors do not
 * fire together), never two checks of one monitor at once (a tick that comes while a check
 * still runs is skipped and counted), and gives each check a timeout. Each result is
 * reported through a callback; the health and preemption monitors turn results into
 * events (metric, node_lost, node_preempting, node_preempted).
 *
 * Loop-thread only. */

#include <stdbool.h>
#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_monitor kite_monitor_t;

/* Starts one check. The check reports its end with kite_monitor_done(m, token, status);
 * token identifies this run (a late report of a run that timed out is ignored). */
typedef void (*kite_monitor_check_fn)(kite_monitor_t *m, uint64_t token, void *data);
/* Called when a run ends: status 0 passed, < 0 failed (KITE_ETIMEDOUT when it timed out). */
typedef void (*kite_monitor_result_fn)(kite_monitor_t *m, int status, void *data);

typedef struct kite_monitor_options {
  uint64_t interval_ms; /* > 0 */
  uint64_t jitter_ms;   /* each wait is interval + uniform [0, jitter) */
  uint64_t timeout_ms;  /* per check; 0: interval */
  bool run_at_start;    /* first check right away instead of after one interval */
} kite_monitor_options_t;

typedef struct kite_monitor_stats {
  uint64_t runs, passed, failed, timeouts, skipped_overlaps;
} kite_monitor_stats_t;

int kite_monitor_new(kite_runtime_t *rt, const kite_monitor_options_t *opts,
                     kite_monitor_check_fn check, kite_monitor_result_fn result, void *data,
                     kite_monitor_t **out);
/* Reports the end of run `token`. Ignored when that run already ended (timed out). */
void kite_monitor_done(kite_monitor_t *m, uint64_t token, int status);
/* True while a run is in progress. */
bool kite_monitor_busy(const kite_monitor_t *m);
void kite_monitor_stats(const kite_monitor_t *m, kite_monitor_stats_t *out);
/* Stops the timers and frees the monitor once its handles are closed. A run in progress is
 * abandoned: its later kite_monitor_done() must not be called (its owner cancels it). */
void kite_monitor_free(kite_monitor_t *m);

/* ---- pool monitors ------------------------------------------------------------------------ */

typedef struct kite_pool_monitor_options {
  uint64_t health_interval_ms;   /* 0: 5000 */
  uint64_t health_timeout_ms;    /* 0: health interval */
  unsigned health_failures;      /* consecutive failures → node_lost; 0: 3 */
  uint64_t preempt_interval_ms;  /* 0: 5000 */
  uint64_t jitter_ms;            /* 0: a tenth of each interval */
  /* By default a health check pings the node's SSH server (nothing starts on the node) and,
   * five times per dead-man timeout, runs a tiny command that refreshes the dead-man's
   * switch's heartbeat. A health_command runs on every check instead (it must refresh
   * ~/.kite/heartbeat itself when the dead-man's switch is on). NULL: kite's own. */
  const char *health_command;
  /* How often the cost monitor emits each instance's and the pool's `cost` event (it also
   * emits one whenever an instance ends); 0: 60000. It runs with the monitors off too. */
  uint64_t cost_interval_ms;
} kite_pool_monitor_options_t;

#endif
