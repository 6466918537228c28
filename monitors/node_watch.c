/* Watching a pool's nodes: the health and preemption monitors, and the dead-man's switch's
 * heartbeat.
 *
 * A watch follows one pool through the bus only: node_ready starts watching a node,
 * node_state_changed to anything but READY or DRAINING stops it. Per watched node there
 * are two monitors (monitor.c), unless the pool's monitors are off:
 *
 *  - health: pings the node's SSH server on the existing session (ssh_ping: a channel
 *    opened and closed, nothing started on the node), or runs the custom health command.
 *    `failures` consecutive failed or timed-out checks → node_lost. A session_lost fact
 *    from the transport counts as enough failures at once: the session is already known dead.
 *  - preemption: asks the node's provider (preempt_check). A notice → node_preempting with
 *    the deadline (once); the instance gone → node_preempted (once).
 *
 * The heartbeat is separate from both, so that how health is checked (a ping, a custom
 * command, or not at all) never decides whether a live controller's nodes stay on: one timer
 * per pool refreshes the heartbeat file of every node whose watchdog may be running
 * (BOOTSTRAPPING, READY, DRAINING), five times per dead-man timeout, one command per node at a
 * time. With the monitors off, a node whose SSH session dies is still reported lost (nothing
 * else would notice, and its watchdog will power it off), so the pool never calls it READY.
 *
 * Every check's result is a metric event ("health_ms" with the round-trip time, or
 * "health_failures"; "preempt_state"), so a UI can show it. The watch never touches the
 * node itself: the pool reacts to node_lost / node_preempted by replacing the node. */
#include <stdio.h>

#include "hash.h"
#include "kite/monitor.h"
#include "kite/provider.h"
#include "kite_impl.h"
#include "monitors_impl.h"

#define HEARTBEAT_CMD                                                                              \
  ": > .kite/heartbeat 2>/dev/null || { mkdir -p .kite && : > .kite/heartbeat; }"

typedef struct watched {
  uint64_t node;
  uint32_t rank;
  char *instance_id;
  char *provider; /* whose instance it is (a pool may launch on several) */
  struct kite__watch *w;
  kite_monitor_t *health, *preempt;
  uint64_t health_token, preempt_token;
  uint64_t health_corr, preempt_corr; /* the current check's request, or 0 */
  /* Requests whose replies have not arrived, counting those given up on (a check that timed
   * out is canceled, and its cancel is still answered): n is freed only when this is 0. */
  unsigned replies_due;
  uint64_t health_started;
  unsigned failures;
  bool lost_sent, notice_sent, gone_sent;
  bool dead; /* unwatched; freed when its outstanding requests are answered */
  /* The provider's on-node probe: its output goes back with the next preempt_check. */
  uint64_t probe_corr;
  kite_sub_t probe_sub;
  char *probe_out;
  size_t probe_len;
  kite_sub_t session_sub;
  UT_hash_handle hh;
} watched_t;

/* A node whose watchdog may be running: it gets heartbeats. */
typedef struct beating {
  uint64_t node;
  uint32_t rank;
  struct kite__watch *w;
  uint64_t corr; /* the heartbeat in flight, or 0 */
  bool dead;     /* untracked; freed when its heartbeat is answered */
  bool lost_sent;
  kite_sub_t session_sub; /* only with the monitors off */
  UT_hash_handle hh;
} beating_t;

struct kite__watch {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  uint64_t pool;
  char *provider;
  bool monitors; /* health and preemption monitors on */
  kite_pool_monitor_options_t o;
  char *health_cmd;      /* custom health command, or NULL: ping */
  uint64_t heartbeat_ms; /* 0: no heartbeat */
  uv_timer_t *heartbeat; /* its timer (freed in its close callback) */
  watched_t *nodes;
  beating_t *beating;
  kite_sub_t sub_ready, sub_state;
};

static void emit_metric(kite__watch_t *w, uint64_t node, const char *name, double v,
                        const char *unit) {
  kite_ev_metric_t m = {.node = node, .name = name, .value = v, .unit = unit};
  kite_emit_metric(w->bus, &m);
}

/* ---- health ---------------------------------------------------------------------------- */

static void lose(watched_t *n, const char *why) {
  if (n->lost_sent)
    return;
  n->lost_sent = true;
  KITE_INFO(n->w->rt, "monitor", "rank %u lost: %s", n->rank, why);
  kite_ev_node_lost_t l = {.pool = n->w->pool, .node = n->node, .rank = n->rank, .reason = why};
  kite_emit_node_lost(n->w->bus, &l);
}

static void health_failed(watched_t *n, const char *why) {
  n->failures++;
  emit_metric(n->w, n->node, "health_failures", n->failures, "count");
  if (n->failures >= n->w->o.health_failures) {
    char *msg = kite__sprintf("%u health checks failed in a row (last: %s)", n->failures, why);
    lose(n, msg ? msg : why);
    free(msg);
  }
}

/* A reply to an unwatched node: forget it once nothing else is outstanding. */
static bool reap_dead(watched_t *n) {
  if (!n->dead)
    return false;
  if (n->replies_due == 0) {
    free(n->probe_out);
    free(n);
  }
  return true;
}

/* Accounts for one reply to n's request *corr: true when it answers that request, false when
 * it is the late answer of one given up on (then *corr is a later request's, or 0). */
static bool reply_current(watched_t *n, uint64_t *corr, const kite_event_t *ev) {
  n->replies_due--;
  if (ev == NULL || *corr == 0 || ev->corr != *corr)
    return false;
  *corr = 0;
  return true;
}

static void on_health_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  watched_t *n = data;
  (void)bus;
  bool current = reply_current(n, &n->health_corr, ev);
  if (reap_dead(n) || !current)
    return;
  const kite_ev_task_finished_t *f = kite_ev_as_task_finished(ev);
  int rc = status;
  if (rc == 0 && f)
    rc = f->error ? f->error : (f->exit_status == 0 ? 0 : KITE_ETASK);
  kite_monitor_done(n->health, n->health_token, rc);
}

static void health_result(kite_monitor_t *m, int status, void *data) {
  watched_t *n = data;
  (void)m;
  if (status == KITE_ETIMEDOUT && n->health_corr) {
    kite_bus_cancel(n->w->bus, n->health_corr);
    n->health_corr = 0;
  }
  if (status == 0) {
    n->failures = 0;
    emit_metric(n->w, n->node, "health_ms",
                (double)(uv_now(kite_runtime_loop(n->w->rt)) - n->health_started), "ms");
    return;
  }
  health_failed(n, kite_strerror(status));
}

static void health_check(kite_monitor_t *m, uint64_t token, void *data) {
  watched_t *n = data;
  (void)m;
  n->health_token = token;
  uint64_t now = uv_now(kite_runtime_loop(n->w->rt));
  n->health_started = now;
  kite__watch_t *w = n->w;
  int rc;
  if (w->health_cmd) {
    kite_ev_ssh_exec_t x = {.pool = w->pool,
                            .node = n->node,
                            .task = kite__next_id(),
                            .rank = n->rank,
                            .cmd = w->health_cmd,
                            .timeout_ms = (int64_t)w->o.health_timeout_ms};
    rc = kite_request_ssh_exec(w->bus, &x, 0, on_health_reply, n, &n->health_corr);
  } else {
    kite_ev_ssh_ping_t p = {.node = n->node, .timeout_ms = (int64_t)w->o.health_timeout_ms};
    rc = kite_request_ssh_ping(w->bus, &p, 0, on_health_reply, n, &n->health_corr);
  }
  if (rc == 0)
    n->replies_due++;
  else
    kite_monitor_done(n->health, token, rc);
}

static void on_session_lost(kite_bus_t *bus, const kite_event_t *ev,
                            const kite_ev_session_lost_t *p, void *data) {
  watched_t *n = data;
  (void)bus;
  (void)ev;
  char *msg =
      kite__sprintf("SSH session lost: %s", p->message ? p->message : kite_strerror(p->error));
  n->failures = n->w->o.health_failures;
  lose(n, msg ? msg : "SSH session lost");
  free(msg);
}

/* ---- preemption ----------------------------------------------------------------------- */

static void on_probe_output(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_output_t *p,
                            void *data) {
  watched_t *n = data;
  (void)bus;
  (void)ev;
  if (p->stream != 1 || n->probe_len + p->data.len > 65536)
    return;
  char *g = realloc(n->probe_out, n->probe_len + p->data.len + 1);
  if (g == NULL)
    return;
  n->probe_out = g;
  memcpy(n->probe_out + n->probe_len, p->data.ptr, p->data.len);
  n->probe_len += p->data.len;
}

static void on_probe_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  watched_t *n = data;
  (void)status;
  bool current = reply_current(n, &n->probe_corr, ev);
  if (reap_dead(n) || !current)
    return;
  kite_bus_unsubscribe(bus, n->probe_sub);
  n->probe_sub.id = 0;
}

/* Runs the provider's probe on the node; its output rides on the next preempt_check. */
static void run_probe(watched_t *n, const char *cmd) {
  if (n->probe_corr || n->notice_sent)
    return;
  n->probe_len = 0;
  uint64_t task = kite__next_id();
  if (kite_on_task_output(n->w->bus, task, on_probe_output, n, &n->probe_sub) != 0)
    return;
  kite_ev_ssh_exec_t x = {.pool = n->w->pool,
                          .node = n->node,
                          .task = task,
                          .rank = n->rank,
                          .cmd = cmd,
                          .timeout_ms = 10000};
  if (kite_request_ssh_exec(n->w->bus, &x, 0, on_probe_reply, n, &n->probe_corr) != 0) {
    kite_bus_unsubscribe(n->w->bus, n->probe_sub);
    n->probe_sub.id = 0;
  } else {
    n->replies_due++;
  }
}

static void on_preempt_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  watched_t *n = data;
  (void)bus;
  bool current = reply_current(n, &n->preempt_corr, ev);
  if (reap_dead(n) || !current)
    return;
  const kite_ev_preempt_status_t *s = kite_ev_as_preempt_status(ev);
  if (status == 0 && s) {
    emit_metric(n->w, n->node, "preempt_state", s->state, "state");
    if (s->state == KITE_PREEMPT_NOTICE && !n->notice_sent) {
      n->notice_sent = true;
      kite_ev_node_preempting_t p = {
          .pool = n->w->pool, .node = n->node, .rank = n->rank, .deadline_ms = s->deadline_ms};
      kite_emit_node_preempting(n->w->bus, &p);
    } else if (s->state == KITE_PREEMPT_GONE && !n->gone_sent) {
      n->gone_sent = true;
      kite_ev_node_preempted_t p = {.pool = n->w->pool,
                                    .node = n->node,
                                    .rank = n->rank,
                                    .reason = "the provider reports the instance preempted"};
      kite_emit_node_preempted(n->w->bus, &p);
    } else if (s->state == KITE_PREEMPT_NONE && s->probe) {
      run_probe(n, s->probe);
    }
  }
  kite_monitor_done(n->preempt, n->preempt_token, status);
}

static void preempt_result(kite_monitor_t *m, int status, void *data) {
  watched_t *n = data;
  (void)m;
  if (status == KITE_ETIMEDOUT && n->preempt_corr) {
    kite_bus_cancel(n->w->bus, n->preempt_corr);
    n->preempt_corr = 0;
  }
}

static void preempt_check(kite_monitor_t *m, uint64_t token, void *data) {
  watched_t *n = data;
  (void)m;
  n->preempt_token = token;
  kite_ev_preempt_check_t c = {.provider = n->provider,
                               .pool = n->w->pool,
                               .node = n->node,
                               .rank = n->rank,
                               .instance_id = n->instance_id};
  if (n->probe_corr == 0 && n->probe_len) {
    c.probe_output.ptr = n->probe_out;
    c.probe_output.len = n->probe_len;
  }
  int rc = kite_request_preempt_check(n->w->bus, &c, 0, on_preempt_reply, n, &n->preempt_corr);
  if (n->probe_corr == 0)
    n->probe_len = 0; /* copied into the request */
  if (rc == 0)
    n->replies_due++;
  else
    kite_monitor_done(n->preempt, token, rc);
}

/* ---- heartbeat -------------------------------------------------------------------------- */

static void beating_free_if_idle(beating_t *b) {
  if (b->dead && b->corr == 0)
    free(b);
}

static void on_heartbeat_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  beating_t *b = data;
  (void)bus;
  b->corr = 0;
  if (b->dead) {
    beating_free_if_idle(b);
    return;
  }
  const kite_ev_task_finished_t *f = kite_ev_as_task_finished(ev);
  int rc = status           ? status
           : !f             ? KITE_EINTERNAL
           : f->error       ? f->error
           : f->exit_status ? KITE_ETASK
                            : 0;
  /* Not fatal by itself: the health monitor (or session_lost) decides that a node is lost; the
   * next tick tries again. */
  if (rc != 0)
    KITE_DEBUG(b->w->rt, "monitor", "rank %u: heartbeat not refreshed: %s", b->rank,
               kite_strerror(rc));
}

static void on_heartbeat_tick(uv_timer_t *t) {
  kite__watch_t *w = t->data;
  beating_t *b, *tmp;
  HASH_ITER(hh, w->beating, b, tmp) {
    if (b->corr)
      continue; /* the last one is still on its way: never two at once */
    kite_ev_ssh_exec_t x = {.pool = w->pool,
                            .node = b->node,
                            .task = kite__next_id(),
                            .rank = b->rank,
                            .cmd = HEARTBEAT_CMD,
                            .timeout_ms = (int64_t)w->heartbeat_ms};
    if (kite_request_ssh_exec(w->bus, &x, 0, on_heartbeat_reply, b, &b->corr) != 0)
      b->corr = 0;
  }
}

static void on_beating_session_lost(kite_bus_t *bus, const kite_event_t *ev,
                                    const kite_ev_session_lost_t *p, void *data) {
  beating_t *b = data;
  (void)bus;
  (void)ev;
  if (b->lost_sent)
    return;
  b->lost_sent = true;
  char *msg =
      kite__sprintf("SSH session lost: %s", p->message ? p->message : kite_strerror(p->error));
  KITE_INFO(b->w->rt, "monitor", "rank %u lost: %s", b->rank, msg ? msg : "SSH session lost");
  kite_ev_node_lost_t l = {.pool = b->w->pool,
                           .node = b->node,
                           .rank = b->rank,
                           .reason = msg ? msg : "SSH session lost"};
  kite_emit_node_lost(b->w->bus, &l);
  free(msg);
}

static void untrack_beating(kite__watch_t *w, beating_t *b) {
  HASH_DEL(w->beating, b);
  kite_bus_unsubscribe(w->bus, b->session_sub);
  b->dead = true;
  if (b->corr)
    kite_bus_cancel(w->bus, b->corr); /* answered with KITE_ECANCELED; freed then */
  beating_free_if_idle(b);
}

/* Keeps the set of nodes that get heartbeats in step with their states. */
static void track_beating(kite__watch_t *w, const kite_ev_node_state_changed_t *p) {
  beating_t *b = NULL;
  HASH_FIND(hh, w->beating, &p->node, sizeof(p->node), b);
  bool wants =
      p->to == KITE_NODE_BOOTSTRAPPING || p->to == KITE_NODE_READY || p->to == KITE_NODE_DRAINING;
  if (!wants) {
    if (b)
      untrack_beating(w, b);
    return;
  }
  if (b)
    return;
  b = calloc(1, sizeof(*b));
  if (b == NULL) {
    kite_log(w->rt, KITE_LOG_ERROR, "monitor",
             "rank %u: out of memory: its dead-man's switch "
             "gets no heartbeat",
             p->rank);
    return;
  }
  b->node = p->node;
  b->rank = p->rank;
  b->w = w;
  int rc;
  KITE_HASH_TRY(rc, HASH_ADD(hh, w->beating, node, sizeof(b->node), b));
  if (rc != 0) {
    kite_log(w->rt, KITE_LOG_ERROR, "monitor",
             "rank %u: out of memory: its dead-man's switch gets no heartbeat", p->rank);
    free(b);
    return;
  }
  if (!w->monitors)
    kite_on_session_lost(w->bus, p->node, on_beating_session_lost, b, &b->session_sub);
}

/* ---- tracking ------------------------------------------------------------------------------ */

static void unwatch(kite__watch_t *w, watched_t *n) {
  HASH_DEL(w->nodes, n);
  kite_monitor_free(n->health);
  kite_monitor_free(n->preempt);
  if (n->health_corr)
    kite_bus_cancel(w->bus, n->health_corr);
  if (n->preempt_corr)
    kite_bus_cancel(w->bus, n->preempt_corr);
  if (n->probe_corr)
    kite_bus_cancel(w->bus, n->probe_corr);
  kite_bus_unsubscribe(w->bus, n->probe_sub);
  kite_bus_unsubscribe(w->bus, n->session_sub);
  free(n->instance_id);
  free(n->provider);
  n->instance_id = NULL;
  n->health = n->preempt = NULL;
  /* The canceled requests are still answered (with KITE_ECANCELED) and their replies point
   * at n: it is freed when the last one arrives. */
  n->dead = true;
  if (n->replies_due == 0) {
    free(n->probe_out);
    free(n);
  }
}

static void on_ready(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_ready_t *p,
                     void *data) {
  kite__watch_t *w = data;
  (void)ev;
  watched_t *n = NULL;
  HASH_FIND(hh, w->nodes, &p->node, sizeof(p->node), n);
  if (n)
    unwatch(w, n);
  n = calloc(1, sizeof(*n));
  if (n == NULL)
    return;
  n->node = p->node;
  n->rank = p->rank;
  n->w = w;
  int rc;
  KITE_HASH_TRY(rc, HASH_ADD(hh, w->nodes, node, sizeof(n->node), n));
  if (rc != 0) {
    kite_log(w->rt, KITE_LOG_ERROR, "monitor", "cannot watch rank %u: %s", p->rank,
             kite_strerror(rc));
    free(n);
    return;
  }
  n->instance_id = kite__strdup(p->instance_id);
  n->provider = kite__strdup(p->provider ? p->provider : w->provider);
  kite_monitor_options_t h = {.interval_ms = w->o.health_interval_ms,
                              .jitter_ms =
                                  w->o.jitter_ms ? w->o.jitter_ms : w->o.health_interval_ms / 10,
                              .timeout_ms = w->o.health_timeout_ms};
  kite_monitor_options_t q = {.interval_ms = w->o.preempt_interval_ms,
                              .jitter_ms =
                                  w->o.jitter_ms ? w->o.jitter_ms : w->o.preempt_interval_ms / 10,
                              .timeout_ms = w->o.preempt_interval_ms};
  rc = kite_monitor_new(w->rt, &h, health_check, health_result, n, &n->health);
  if (rc == 0)
    rc = kite_monitor_new(w->rt, &q, preempt_check, preempt_result, n, &n->preempt);
  if (rc == 0)
    rc = kite_on_session_lost(bus, p->node, on_session_lost, n, &n->session_sub);
  if (rc != 0) {
    kite_log(w->rt, KITE_LOG_ERROR, "monitor", "cannot watch rank %u: %s", p->rank,
             kite_strerror(rc));
    unwatch(w, n);
  }
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_state_changed_t *p,
                     void *data) {
  kite__watch_t *w = data;
  (void)bus;
  (void)ev;
  if (w->heartbeat_ms)
    track_beating(w, p);
  if (p->to == KITE_NODE_READY || p->to == KITE_NODE_DRAINING)
    return;
  watched_t *n = NULL;
  HASH_FIND(hh, w->nodes, &p->node, sizeof(p->node), n);
  if (n)
    unwatch(w, n);
}

static void on_heartbeat_closed(uv_handle_t *h) {
  free(h);
}

int kite__watch_new(kite_runtime_t *rt, uint64_t pool, const char *provider,
                    const kite_pool_monitor_options_t *opts, uint64_t heartbeat_ms,
                    kite__watch_t **out) {
  kite__watch_t *w = calloc(1, sizeof(*w));
  if (w == NULL)
    return KITE_ENOMEM;
  w->rt = rt;
  w->bus = kite_runtime_bus(rt);
  w->pool = pool;
  w->monitors = opts != NULL;
  if (opts)
    w->o = *opts;
  if (w->o.health_interval_ms == 0)
    w->o.health_interval_ms = 5000;
  if (w->o.health_timeout_ms == 0)
    w->o.health_timeout_ms = w->o.health_interval_ms;
  if (w->o.health_failures == 0)
    w->o.health_failures = 3;
  if (w->o.preempt_interval_ms == 0)
    w->o.preempt_interval_ms = 5000;
  w->provider = kite__strdup(provider);
  w->heartbeat_ms = heartbeat_ms;
  w->health_cmd = w->o.health_command ? kite__strdup(w->o.health_command) : NULL;
  int rc = w->provider && (w->health_cmd || !w->o.health_command) ? 0 : KITE_ENOMEM;
  w->o.health_command = NULL;
  if (rc == 0 && heartbeat_ms) {
    w->heartbeat = malloc(sizeof(*w->heartbeat));
    if (w->heartbeat == NULL) {
      rc = KITE_ENOMEM;
    } else {
      uv_timer_init(kite_runtime_loop(rt), w->heartbeat);
      w->heartbeat->data = w;
      uv_timer_start(w->heartbeat, on_heartbeat_tick, heartbeat_ms, heartbeat_ms);
    }
  }
  if (rc == 0 && w->monitors)
    rc = kite_on_node_ready(w->bus, pool, on_ready, w, &w->sub_ready);
  if (rc == 0)
    rc = kite_on_node_state_changed(w->bus, pool, on_state, w, &w->sub_state);
  if (rc != 0) {
    kite__watch_free(w);
    return rc;
  }
  *out = w;
  return 0;
}

void kite__watch_free(kite__watch_t *w) {
  if (w == NULL)
    return;
  kite_bus_unsubscribe(w->bus, w->sub_ready);
  kite_bus_unsubscribe(w->bus, w->sub_state);
  watched_t *n, *tmp;
  HASH_ITER(hh, w->nodes, n, tmp) {
    unwatch(w, n);
  }
  beating_t *b, *btmp;
  HASH_ITER(hh, w->beating, b, btmp) {
    untrack_beating(w, b);
  }
  if (w->heartbeat)
    uv_close((uv_handle_t *)w->heartbeat, on_heartbeat_closed);
  free(w->provider);
  free(w->health_cmd);
  free(w);
}
