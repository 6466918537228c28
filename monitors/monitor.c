/* The monitor framework: one tick timer and one deadline timer per monitor.
 *
 * A tick starts a run unless one is in progress (then the tick is counted as skipped: runs
 * never overlap). A run gets a token; its deadline timer fails it with KITE_ETIMEDOUT, and
 * a report that comes after that (with the old token) is ignored. The next tick is armed
 * when a run ends, so a slow check stretches the period instead of piling up. */
#include <stdlib.h>

#include "kite/monitor.h"
#include "kite_impl.h"

struct kite_monitor {
  kite_runtime_t *rt;
  kite_monitor_options_t o;
  kite_monitor_check_fn check;
  kite_monitor_result_fn result;
  void *data;
  uv_timer_t tick, deadline;
  int handles;
  uint64_t token; /* of the run in progress, or 0 */
  uint64_t next_token;
  unsigned rng;
  bool freeing;
  int in_cb;
  kite_monitor_stats_t st;
};

static uint64_t next_wait(kite_monitor_t *m) {
  if (m->o.jitter_ms == 0)
    return m->o.interval_ms;
  m->rng = m->rng * 1664525u + 1013904223u;
  return m->o.interval_ms + (uint64_t)(m->rng >> 8) % m->o.jitter_ms;
}

static void end_run(kite_monitor_t *m, int status) {
  m->token = 0;
  uv_timer_stop(&m->deadline);
  m->st.passed += status == 0;
  m->st.failed += status != 0;
  m->st.timeouts += status == KITE_ETIMEDOUT;
  if (!m->freeing)
    uv_timer_again(&m->tick);
  m->in_cb++;
  if (m->result && !m->freeing)
    m->result(m, status, m->data);
  m->in_cb--;
}

static void on_deadline(uv_timer_t *t) {
  kite_monitor_t *m = kite_container_of(t, kite_monitor_t, deadline);
  if (m->token)
    end_run(m, KITE_ETIMEDOUT);
}

static void on_tick(uv_timer_t *t) {
  kite_monitor_t *m = kite_container_of(t, kite_monitor_t, tick);
  if (m->token) {
    m->st.skipped_overlaps++;
    return;
  }
  uv_timer_set_repeat(&m->tick, next_wait(m));
  m->token = ++m->next_token;
  m->st.runs++;
  uv_timer_start(&m->deadline, on_deadline, m->o.timeout_ms, 0);
  uint64_t token = m->token;
  m->in_cb++;
  m->check(m, token, m->data);
  m->in_cb--;
}

int kite_monitor_new(kite_runtime_t *rt, const kite_monitor_options_t *opts,
                     kite_monitor_check_fn check, kite_monitor_result_fn result, void *data,
                     kite_monitor_t **out) {
  if (opts == NULL || opts->interval_ms == 0 || check == NULL)
    return KITE_EINVAL;
  kite_monitor_t *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return KITE_ENOMEM;
  m->rt = rt;
  m->o = *opts;
  if (m->o.timeout_ms == 0)
    m->o.timeout_ms = m->o.interval_ms;
  m->check = check;
  m->result = result;
  m->data = data;
  m->rng = (unsigned)(uintptr_t)m ^ (unsigned)uv_hrtime();
  uv_loop_t *loop = kite_runtime_loop(rt);
  uv_timer_init(loop, &m->tick);
  uv_timer_init(loop, &m->deadline);
  m->handles = 2;
  /* The tick repeats; it is re-armed (uv_timer_again) when each run ends. */
  uint64_t first = m->o.run_at_start ? 0 : next_wait(m);
  uv_timer_start(&m->tick, on_tick, first, next_wait(m));
  *out = m;
  return 0;
}

void kite_monitor_done(kite_monitor_t *m, uint64_t token, int status) {
  if (m->freeing || token == 0 || token != m->token)
    return;
  end_run(m, status);
}

bool kite_monitor_busy(const kite_monitor_t *m) { return m->token != 0; }

void kite_monitor_stats(const kite_monitor_t *m, kite_monitor_stats_t *out) { *out = m->st; }

static void on_closed(uv_handle_t *h) {
  kite_monitor_t *m = h->data;
  if (--m->handles == 0)
    free(m);
}

void kite_monitor_free(kite_monitor_t *m) {
  if (m == NULL || m->freeing)
    return;
  m->freeing = true;
  m->token = 0;
  m->tick.data = m->deadline.data = m;
  uv_close((uv_handle_t *)&m->tick, on_closed);
  uv_close((uv_handle_t *)&m->deadline, on_closed);
}
