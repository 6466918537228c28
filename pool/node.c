/* The node actor: one per rank, a state machine driven by replies from the provider, the
 * transport and the bootstrap runner.
 *
 * Reacts to: replies to instance_launch, ssh_connect, bootstrap, ssh_disconnect and
 * instance_terminate requests it sent itself. Emits: node_state_changed on every transition,
 * node_ready. It never calls a provider or the transport directly.
 *
 * The state machine is two tables. allowed[] says which transitions exist; states[] gives each
 * state its entry (and exit) work and its reactions to what the pool asks (close, lost,
 * drain), each a small function. Any change goes through set_state(), which checks the
 * transition, logs "rank 3: BOOTSTRAPPING -> READY (bootstrap done)", emits the event, and
 * runs the old state's exit and the new state's entry. A node in no known state is reported
 * as an internal error (log and error event), never ignored. The pool is not called back
 * inside a change: the node marks itself dirty (kite__pool_node_dirty) and the pool reacts to
 * every dirty node once per loop turn.
 *
 * Cleaning up an instance is tied to its existence, not to the state: a FAILED node whose
 * instance still exists terminates it and stays FAILED; a node closed while its launch is
 * under way waits for the launch's reply and then terminates what was created. */
#include <assert.h>
#include <stdio.h>
#include <unistd.h>

#include "kite/transport.h"
#include "pool_impl.h"

#define S(x) KITE_NODE_##x
/* allowed[from] is a bit set of the states it may go to. */
static const unsigned allowed[KITE_NODE__COUNT] = {
    [S(INIT)] = 1u << S(PROVISIONING) | 1u << S(TERMINATING) | 1u << S(TERMINATED),
    [S(PROVISIONING)] =
        1u << S(BOOTSTRAPPING) | 1u << S(REPLACING) | 1u << S(TERMINATING) | 1u << S(FAILED),
    [S(BOOTSTRAPPING)] =
        1u << S(READY) | 1u << S(REPLACING) | 1u << S(TERMINATING) | 1u << S(FAILED),
    [S(READY)] = 1u << S(DRAINING) | 1u << S(REPLACING) | 1u << S(TERMINATING) | 1u << S(FAILED),
    [S(DRAINING)] = 1u << S(REPLACING) | 1u << S(TERMINATING) | 1u << S(FAILED),
    [S(REPLACING)] = 1u << S(PROVISIONING) | 1u << S(TERMINATING) | 1u << S(FAILED),
    [S(TERMINATING)] = 1u << S(TERMINATED) | 1u << S(FAILED),
    [S(TERMINATED)] = 0,
    [S(FAILED)] = 1u << S(TERMINATING),
};

/* Each state's work and reactions (curl's multi.c: one init function per state, one small
 * function per state's reaction). */
typedef struct state_def {
  /* Entering it takes the instance out of service: commands started on it before are stale
   * (the node's epoch moves). */
  bool leaves_service;
  /* The work of leaving and of entering it, done once the change is recorded and announced:
   * the old state's exit first, then the new state's entry. NULL: nothing. */
  void (*exit)(kite__node_t *n);
  void (*enter)(kite__node_t *n);
  /* Its reactions: the pool closes; the instance was found lost or preempted; a preemption
   * notice came. */
  void (*close)(kite__node_t *n);
  void (*lost)(kite__node_t *n, const char *reason);
  void (*drain)(kite__node_t *n, const char *reason);
} state_def_t;

static void exit_bootstrapping(kite__node_t *n);
static void enter_provisioning(kite__node_t *n);
static void enter_bootstrapping(kite__node_t *n);
static void enter_ready(kite__node_t *n);
static void enter_replacing(kite__node_t *n);
static void enter_terminating(kite__node_t *n);
static void enter_failed(kite__node_t *n);
static void close_unlaunched(kite__node_t *n);
static void close_active(kite__node_t *n);
static void close_failed(kite__node_t *n);
static void close_nothing(kite__node_t *n);
static void lost_provisioning(kite__node_t *n, const char *reason);
static void lost_replace(kite__node_t *n, const char *reason);
static void lost_nothing(kite__node_t *n, const char *reason);
static void drain_ready(kite__node_t *n, const char *reason);
static void drain_nothing(kite__node_t *n, const char *reason);

static const state_def_t states[KITE_NODE__COUNT] = {
    [S(INIT)] = {.close = close_unlaunched, .lost = lost_nothing, .drain = drain_nothing},
    [S(PROVISIONING)] = {.enter = enter_provisioning,
                         .close = close_active,
                         .lost = lost_provisioning,
                         .drain = drain_nothing},
    [S(BOOTSTRAPPING)] = {.exit = exit_bootstrapping,
                          .enter = enter_bootstrapping,
                          .close = close_active,
                          .lost = lost_replace,
                          .drain = drain_nothing},
    [S(READY)] = {.enter = enter_ready,
                  .close = close_active,
                  .lost = lost_replace,
                  .drain = drain_ready},
    [S(DRAINING)] = {.close = close_active, .lost = lost_replace, .drain = drain_nothing},
    [S(REPLACING)] = {.leaves_service = true,
                      .enter = enter_replacing,
                      .close = close_active,
                      .lost = lost_nothing,
                      .drain = drain_nothing},
    [S(TERMINATING)] = {.leaves_service = true,
                        .enter = enter_terminating,
                        .close = close_nothing,
                        .lost = lost_nothing,
                        .drain = drain_nothing},
    [S(TERMINATED)] = {.leaves_service = true,
                       .close = close_nothing,
                       .lost = lost_nothing,
                       .drain = drain_nothing},
    [S(FAILED)] = {.leaves_service = true,
                   .enter = enter_failed,
                   .close = close_failed,
                   .lost = lost_nothing,
                   .drain = drain_nothing},
};
#undef S

/* Reports a bug in kite: n is in no known state, or may not go where it was sent. */
static void internal_error(kite__node_t *n, const char *message) {
  kite_pool_t *pool = n->pool;
  kite_ev_error_t e = {.pool = pool->id, .node = n->id, .code = KITE_EINTERNAL, .message = message};
  kite_emit_error(pool->bus, &e);
#ifndef NDEBUG
  assert(!"internal error in the node state machine");
#endif
}

/* The definition of n's state, or NULL (reported as a bug) when n is in none. */
static const state_def_t *state_of(kite__node_t *n, const char *what) {
  if ((unsigned)n->state < KITE_NODE__COUNT)
    return &states[n->state];
  kite_log(n->pool->rt, KITE_LOG_ERROR, "node",
           "%s rank %u: %s in unknown state %d; this is "
           "a bug in kite",
           n->pool->name, n->rank, what, (int)n->state);
  internal_error(n, "node in an unknown state");
  return NULL;
}

/* The one way a node changes state: checks the table, records the change (store, log,
 * node_state_changed, the pool's counts), then runs the old state's exit and the new state's
 * entry. Entry work may change the state again; that change is announced after this one. */
static int set_state(kite__node_t *n, kite_node_state_t to, const char *reason) {
  kite_pool_t *pool = n->pool;
  kite_node_state_t from = n->state;
  if ((unsigned)from >= KITE_NODE__COUNT || (unsigned)to >= KITE_NODE__COUNT ||
      !(allowed[from] & (1u << to))) {
    kite_log(pool->rt, KITE_LOG_ERROR, "node",
             "rank %u: impossible transition %s -> %s (%s); "
             "this is a bug in kite",
             n->rank, kite_node_state_name(from), kite_node_state_name(to), reason ? reason : "");
    internal_error(n, "impossible node state transition");
    return KITE_EINTERNAL;
  }
  n->state = to;
  if (states[to].leaves_service)
    n->epoch++;
  if (pool->store)
    kite_store_node_put(pool->store, pool->name, n->rank, (int)to, n->instance_id, n->address);
  KITE_INFO(pool->rt, "node", "%s rank %u: %s -> %s (%s)", pool->name, n->rank,
            kite_node_state_name(from), kite_node_state_name(to), reason ? reason : "");
  kite_ev_node_state_changed_t ev = {
      .pool = pool->id, .node = n->id, .rank = n->rank, .from = from, .to = to, .reason = reason};
  kite_emit_node_state_changed(pool->bus, &ev);
  kite__pool_node_dirty(pool, n);
  if (states[from].exit)
    states[from].exit(n);
  if (states[to].enter)
    states[to].enter(n);
  return 0;
}

bool kite__node_final(const kite__node_t *n) {
  bool idle = n->launch_corr == 0 && n->term_corr == 0 && n->connect_corr == 0 &&
              n->boot_corr == 0 && n->disc_corr == 0;
  return idle && !n->instance_live &&
         (n->state == KITE_NODE_TERMINATED || n->state == KITE_NODE_FAILED);
}

static void clear_instance(kite__node_t *n) {
  free(n->instance_id);
  free(n->address);
  free(n->user);
  free(n->host_key);
  free(n->key_path);
  n->instance_id = n->address = n->user = n->host_key = n->key_path = NULL;
  n->instance_live = false;
}

void kite__node_free(kite__node_t *n) {
  clear_instance(n);
  free(n->old_instance);
  n->old_instance = NULL;
  free(n->failure);
  n->failure = NULL;
  free(n->provider);
  free(n->reach);
  free(n->failover_trail);
  n->provider = n->reach = n->failover_trail = NULL;
}

static void terminate_instance(kite__node_t *n);
static void fail(kite__node_t *n, int code, const char *why);
static void connect_node(kite__node_t *n);

/* ---- the instance and its session --------------------------------------------------------- */

/* Terminating the instance failed: it stays recorded as live and the node cannot be brought
 * back. */
static void terminate_failed(kite__node_t *n, int status, const kite_event_t *ev) {
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  char *msg = kite__sprintf("could not terminate instance %s: %s", n->instance_id,
                            e && e->message ? e->message : kite_strerror(status));
  kite_log(n->pool->rt, KITE_LOG_ERROR, "node",
           "%s rank %u: %s; it may still be running "
           "(and cost money): run `kite down %s` to retry",
           n->pool->name, n->rank, msg, n->pool->name);
  n->pool->close_status = status;
  if (n->state != KITE_NODE_FAILED)
    fail(n, status, msg);
  else
    kite__pool_node_dirty(n->pool, n);
  free(msg);
}

/* The provider confirmed the instance gone: what that means depends on why it was ended. */
static void instance_gone(kite__node_t *n) {
  if (n->state == KITE_NODE_TERMINATING)
    set_state(n, KITE_NODE_TERMINATED, "instance terminated");
  else if (n->state == KITE_NODE_REPLACING)
    kite__node_relaunch(n);
  else
    kite__pool_node_dirty(n->pool, n);
}

static void on_terminated(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__node_t *n = data;
  (void)bus;
  n->term_corr = 0;
  if (status != 0) {
    terminate_failed(n, status, ev);
    return;
  }
  if (n->pool->store && n->instance_id)
    kite_store_instance_terminated(n->pool->store, n->provider, n->instance_id);
  n->store_row = 0;
  clear_instance(n);
  instance_gone(n);
}

static void on_disconnected(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__node_t *n = data;
  (void)bus;
  (void)status;
  (void)ev;
  n->disc_corr = 0;
  n->session_open = false;
  if (n->state == KITE_NODE_REPLACING)
    kite__node_relaunch(n);
  else
    kite__pool_node_dirty(n->pool, n);
}

static void disconnect(kite__node_t *n) {
  if (!n->session_open || n->disc_corr)
    return;
  kite_ev_ssh_disconnect_t d = {.node = n->id};
  if (kite_request_ssh_disconnect(n->pool->bus, &d, 0, on_disconnected, n, &n->disc_corr) != 0)
    n->session_open = false;
}

/* Asks n's provider to terminate instance id. */
static int ask_terminate(kite__node_t *n, const char *id, kite_reply_fn cb, void *data,
                         uint64_t *corr) {
  kite_ev_instance_terminate_t t = {.provider = n->provider,
                                    .pool = n->pool->id,
                                    .reach = n->reach,
                                    .node = n->id,
                                    .rank = n->rank,
                                    .instance_id = id};
  return kite_request_instance_terminate(n->pool->bus, &t, 0, cb, data, corr);
}

static void terminate_instance(kite__node_t *n) {
  if (!n->instance_live || n->term_corr)
    return;
  disconnect(n);
  if (n->pool->store && n->store_row)
    kite_store_instance_terminating(n->pool->store, n->store_row);
  int rc = ask_terminate(n, n->instance_id, on_terminated, n, &n->term_corr);
  if (rc != 0) {
    /* The instance runs on: ask again in a second, for as long as it takes. */
    n->term_corr = 0;
    kite_log(n->pool->rt, KITE_LOG_ERROR, "node",
             "rank %u: cannot request termination of %s: %s; asking again in 1 s", n->rank,
             n->instance_id, kite_strerror(rc));
    n->term_retry = true;
    kite__pool_term_later(n->pool);
  }
}

void kite__node_terminate_again(kite__node_t *n) {
  n->term_retry = false;
  terminate_instance(n);
}

/* The node cannot be brought back: FAILED (whose entry terminates the instance), keeping the
 * first reason it was given. */
static void fail(kite__node_t *n, int code, const char *why) {
  if (n->failure == NULL) {
    n->failure = kite__strdup(why);
    n->failure_code = code;
  }
  if (n->state == KITE_NODE_FAILED || n->state == KITE_NODE_TERMINATED ||
      set_state(n, KITE_NODE_FAILED, why) != 0)
    terminate_instance(n);
}

/* ---- BOOTSTRAPPING: connect, the dead-man's switch, the bootstrap -------------------------- */

/* The connection died under the bootstrap: the instance is lost (preempted, crashed), which
 * replacement handles like any other loss; it is not a bootstrap failure. */
static void lost_while_bootstrapping(kite__node_t *n, const char *message) {
  char *why = kite__sprintf("connection lost while bootstrapping: %s",
                            message ? message : "the session died");
  kite__node_lost(n, why ? why : "connection lost while bootstrapping");
  free(why);
}

/* A reply of the bootstrap phase arrived: false when the node has moved on meanwhile
 * (closing, lost), which the pool is then told about. */
static bool reply_still_wanted(kite__node_t *n) {
  n->boot_corr = 0;
  if (n->state == KITE_NODE_BOOTSTRAPPING)
    return true;
  kite__pool_node_dirty(n->pool, n);
  return false;
}

static void on_bootstrapped(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__node_t *n = data;
  (void)bus;
  if (!reply_still_wanted(n))
    return;
  const kite_ev_bootstrap_done_t *b = kite_ev_as_bootstrap_done(ev);
  if (status == 0 && b && b->status == 0) {
    set_state(n, KITE_NODE_READY, "bootstrap done");
    return;
  }
  if ((b && b->status == KITE_ECONNLOST) || status == KITE_ECONNLOST) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    lost_while_bootstrapping(n, b ? b->output : e ? e->message : NULL);
    return;
  }
  char *why;
  if (b && b->status == KITE_ETIMEDOUT) {
    uint64_t ms = n->pool->bootstrap_timeout_ms;
    why = kite__sprintf("bootstrap step %s did not end within %llu%s, the bootstrap's time limit "
                        "(its processes were killed): raise bootstrap.timeout in the spec "
                        "(default 1h) if the step needs longer",
                        b->failed_step ? b->failed_step : "?",
                        (unsigned long long)(ms % 1000 ? ms : ms / 1000), ms % 1000 ? " ms" : " s");
  } else if (b) {
    why = kite__sprintf("bootstrap step %s failed: %s", b->failed_step ? b->failed_step : "?",
                        b->output && *b->output ? b->output : kite_strerror(b->status));
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    why = kite__sprintf("bootstrap could not run: %s",
                        e && e->message ? e->message : kite_strerror(status));
  }
  fail(n,
       b && b->status ? b->status
       : status       ? status
                      : KITE_EBOOTSTRAP,
       why ? why : "bootstrap failed");
  free(why);
}

static void start_bootstrap(kite__node_t *n) {
  kite_pool_t *pool = n->pool;
  if (pool->script == NULL) {
    set_state(n, KITE_NODE_READY, "connected; no bootstrap");
    return;
  }
  kite_ev_bootstrap_t b = {.pool = pool->id,
                           .node = n->id,
                           .rank = n->rank,
                           .script = pool->script,
                           .timeout_ms = (int64_t)pool->bootstrap_timeout_ms};
  int rc = kite_request_bootstrap(pool->bus, &b, 0, on_bootstrapped, n, &n->boot_corr);
  if (rc != 0)
    fail(n, rc, "cannot start the bootstrap");
}

/* The dead-man's switch: a watchdog on the node (outside any command's process group) that
 * powers the node off when .kite/heartbeat, refreshed by every health check, grows older than
 * the pool's deadman timeout. Idempotent: a watchdog already running is kept. Powering off:
 * the node's power switch when it has one (local nodes: $KITE_POWEROFF), else shutdown. */
static char *deadman_script(uint64_t timeout_ms) {
  unsigned long secs = (unsigned long)((timeout_ms + 999) / 1000);
  unsigned long every = secs < 10 ? 1 : 5;
  return kite__sprintf(
      "d=\"$HOME/.kite\"; mkdir -p \"$d\" && : > \"$d/heartbeat\" || exit 1\n"
      "if [ -f \"$d/watchdog.pid\" ] && kill -0 \"$(cat \"$d/watchdog.pid\")\" 2>/dev/null; "
      "then exit 0; fi\n"
      "setsid sh -c '\n"
      "echo $$ > \"$1/watchdog.pid\"\n"
      "while sleep %lu; do\n"
      "  hb=$(stat -c %%Y \"$1/heartbeat\" 2>/dev/null || echo 0)\n"
      "  if [ $(( $(date +%%s) - hb )) -gt %lu ]; then\n"
      "    if [ -n \"${KITE_POWEROFF:-}\" ] && [ -p \"$KITE_POWEROFF\" ]; then\n"
      "      echo deadman > \"$KITE_POWEROFF\"\n"
      "    elif [ \"$(id -u)\" = 0 ]; then shutdown -h now || poweroff\n"
      "    else sudo -n shutdown -h now || sudo -n poweroff; fi\n"
      "    exit 0\n"
      "  fi\n"
      "done' kite-watchdog \"$d\" </dev/null >/dev/null 2>&1 &\n",
      every, secs);
}

static void on_watchdog(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__node_t *n = data;
  (void)bus;
  if (!reply_still_wanted(n))
    return;
  const kite_ev_task_finished_t *f = kite_ev_as_task_finished(ev);
  if (status == 0 && f && f->error == 0 && f->exit_status == 0) {
    start_bootstrap(n);
    return;
  }
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  if ((f && f->error == KITE_ECONNLOST) || status == KITE_ECONNLOST) {
    lost_while_bootstrapping(n, f && f->message ? f->message : e ? e->message : NULL);
    return;
  }
  char *why = kite__sprintf("cannot install the dead-man's switch: %s",
                            f && f->message   ? f->message
                            : f               ? "the install command failed"
                            : e && e->message ? e->message
                                              : kite_strerror(status));
  fail(n,
       f && f->error ? f->error
       : status      ? status
                     : KITE_EBOOTSTRAP,
       why ? why : "cannot install the dead-man's switch");
  free(why);
}

static void start_watchdog(kite__node_t *n) {
  kite_pool_t *pool = n->pool;
  if (pool->deadman_ms == 0) {
    start_bootstrap(n);
    return;
  }
  char *script = deadman_script(pool->deadman_ms);
  if (script == NULL) {
    fail(n, KITE_ENOMEM, "out of memory");
    return;
  }
  kite_ev_ssh_exec_t x = {.pool = pool->id,
                          .node = n->id,
                          .task = kite__next_id(),
                          .rank = n->rank,
                          .cmd = script,
                          .timeout_ms = 30000};
  int rc = kite_request_ssh_exec(pool->bus, &x, 0, on_watchdog, n, &n->boot_corr);
  free(script);
  if (rc != 0)
    fail(n, rc, "cannot install the dead-man's switch");
}

/* The connect was answered after the node moved on (closed, lost): a session that came up
 * for a closing node is closed. */
static void connected_late(kite__node_t *n) {
  if (n->session_open && n->state == KITE_NODE_TERMINATING)
    disconnect(n);
  kite__pool_node_dirty(n->pool, n);
}

static void on_connected(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__node_t *n = data;
  (void)bus;
  n->connect_corr = 0;
  if (n->state != KITE_NODE_BOOTSTRAPPING) {
    connected_late(n);
    return;
  }
  if (status != 0) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    char *why = kite__sprintf("SSH to %s@%s:%u failed: %s", n->user ? n->user : "?",
                              n->address ? n->address : "?", n->port,
                              e && e->message ? e->message : kite_strerror(status));
    fail(n, status, why ? why : "SSH connect failed");
    free(why);
    return;
  }
  start_watchdog(n);
}

static void connect_node(kite__node_t *n) {
  kite_pool_t *pool = n->pool;
  kite_ev_ssh_connect_t c = {.node = n->id,
                             .host = n->address,
                             .port = n->port,
                             .user = n->user,
                             .key_path = n->key_path,
                             .host_key = n->host_key,
                             .hostkey_mode = n->host_key ? KITE_HOSTKEY_STRICT : pool->hostkey_mode,
                             .timeout_ms = (int64_t)pool->connect_timeout_ms};
  int rc = kite_request_ssh_connect(pool->bus, &c, 0, on_connected, n, &n->connect_corr);
  /* From here the transport may hold a session for this node, even if we stop waiting. */
  n->session_open = rc == 0;
  if (rc != 0)
    fail(n, rc, "cannot request an SSH connection (is the transport started?)");
}

/* ---- PROVISIONING: the launch ------------------------------------------------------------ */

/* A copy of s, NULL only for NULL; *lost set when memory ran out. */
static char *copy_or_lost(const char *s, bool *lost) {
  char *c = s ? kite__strdup(s) : NULL;
  if (s && c == NULL)
    *lost = true;
  return c;
}

/* What the launch's reply says exists (or that nothing does) is recorded, whatever state the
 * node is in now. KITE_ENOMEM when part of it could not be kept: the instance exists and is
 * terminated by whoever fails the node (with its id; see on_launched). */
static int record_launch(kite__node_t *n, int status, const kite_ev_instance_launched_t *l,
                         const kite_event_t *ev) {
  bool lost = false;
  if (status == 0 && l) {
    clear_instance(n);
    n->instance_id = copy_or_lost(l->instance_id, &lost);
    n->address = copy_or_lost(l->address, &lost);
    n->user = copy_or_lost(l->user, &lost);
    n->host_key = copy_or_lost(l->host_key, &lost);
    n->key_path = copy_or_lost(l->key_path, &lost);
    n->port = l->port;
    n->price_hourly = l->price_hourly;
    n->instance_live = true;
    if (n->pool->store && n->store_row &&
        kite_store_instance_launched(n->pool->store, n->store_row, l->instance_id, l->address,
                                     l->port, l->user, l->host_key,
                                     l->price_hourly > 0 ? l->price_hourly : -1) != 0)
      kite_log(n->pool->rt, KITE_LOG_ERROR, "node", "%s rank %u: cannot record instance %s: %s",
               n->pool->name, n->rank, l->instance_id, kite_store_errmsg(n->pool->store));
    else if (n->pool->store && n->store_row && l->key_path)
      kite_store_instance_set_key(n->pool->store, n->store_row, l->key_path);
    if (n->pool->store && n->store_row)
      kite_store_instance_bought(n->pool->store, n->store_row, NULL, NULL, NULL, l->spot,
                                 l->price_hourly > 0 ? l->price_hourly : -1,
                                 l->ondemand_hourly > 0 ? l->ondemand_hourly : -1);
  } else if (n->pool->store && n->store_row) {
    /* The provider answered that the launch created nothing. */
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    kite_store_instance_terminated_row(n->pool->store, n->store_row,
                                       e && e->message ? e->message : "launch failed");
    n->store_row = 0;
  }
  return lost ? KITE_ENOMEM : 0;
}

/* Closed (or failed) while launching: whatever was created goes now. */
static void launched_late(kite__node_t *n) {
  if (n->instance_live)
    terminate_instance(n);
  else if (n->state == KITE_NODE_TERMINATING)
    set_state(n, KITE_NODE_TERMINATED, "launch did not create an instance");
  else
    kite__pool_node_dirty(n->pool, n);
}

static void launch(kite__node_t *n);

/* The reply to the termination of an instance whose id the node could not keep. */
static void on_lost_terminated(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  (void)bus;
  if (status != 0) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    kite_log(data, KITE_LOG_ERROR, "node",
             "terminating an instance after running out of memory: %s",
             e && e->message ? e->message : kite_strerror(status));
  }
}

static void on_launched(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__node_t *n = data;
  (void)bus;
  n->launch_corr = 0;
  n->launch_price = 0;
  const kite_ev_instance_launched_t *l = kite_ev_as_instance_launched(ev);
  if (record_launch(n, status, l, ev) != 0) {
    /* The instance exists and must go: with its id kept (a second try), the node's failure
     * terminates it; without, the termination is asked for here, with the reply's id. */
    if (n->instance_id == NULL)
      n->instance_id = kite__strdup(l->instance_id);
    if (n->instance_id == NULL) {
      n->instance_live = false;
      if (ask_terminate(n, l->instance_id, on_lost_terminated, n->pool->rt, NULL) != 0)
        kite_log(n->pool->rt, KITE_LOG_ERROR, "node",
                 "%s rank %u: out of memory: cannot terminate instance %s; it may still run: "
                 "run `kite down %s`",
                 n->pool->name, n->rank, l->instance_id, n->pool->name);
    }
    fail(n, KITE_ENOMEM, "out of memory while recording the launch");
    return;
  }
  if (n->state != KITE_NODE_PROVISIONING) {
    launched_late(n);
    return;
  }
  if (status != 0 || l == NULL) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    const char *said = e && e->message ? e->message : kite_strerror(status);
    char *trail = NULL;
    if (kite__plan_fails_over(status) && !n->instance_live) {
      if (kite__plan_failover(n->pool->plan, n, n->pool->id, status, said,
                              kite__pool_hourly(n->pool, n), &trail)) {
        launch(n); /* the next candidate */
        return;
      }
    }
    char *why = trail ? kite__sprintf("launch failed: %s", trail)
                      : kite__sprintf("launch failed: %s", said);
    fail(n, status ? status : KITE_EPROVIDER, why ? why : "launch failed");
    free(why);
    free(trail);
    return;
  }
  set_state(n, KITE_NODE_BOOTSTRAPPING, "instance launched");
}

/* Records the launch in the state store, then asks the candidate's provider for the
 * instance. */
static void launch(kite__node_t *n) {
  kite_pool_t *pool = n->pool;
  char token[128];
  snprintf(token, sizeof(token), "%s-%u-%u-%u-%d-%llx", pool->tag, n->rank, n->replacements,
           n->failover_attempts, (int)getpid(), (unsigned long long)kite__wall_ms());
  const kite__cand_t *c = NULL;
  const kite__site_t *site = NULL;
  char *why = NULL;
  int rc = kite__plan_target(pool->plan, n, &c, &site, &why);
  if (rc == 0 && pool->plan->want.max_hourly_cost > 0 &&
      kite__pool_hourly(pool, n) + c->price > pool->plan->want.max_hourly_cost + 1e-9) {
    rc = KITE_EPRICE;
    why = kite__sprintf("a launch of %s at $%.4f/h would take the pool to $%.4f/h, above "
                        "max_hourly_cost $%.4f; nothing was launched",
                        c->offer.instance_type, c->price, kite__pool_hourly(pool, n) + c->price,
                        pool->plan->want.max_hourly_cost);
  }
  if (rc != 0) {
    fail(n, rc, why ? why : "no place to launch it");
    free(why);
    return;
  }
  free(n->provider);
  free(n->reach);
  n->provider = kite__strdup(c->offer.provider);
  n->reach = kite__strdup(site->reach);
  if (n->provider == NULL || n->reach == NULL) {
    fail(n, KITE_ENOMEM, "out of memory");
    return;
  }
  /* Recorded before the launch call, with what it takes to reach the instance from any other
   * process: if this process dies during the call, the record remains. */
  int src = pool->store
                ? kite_store_instance_launching_at(pool->store, pool->name, n->rank, n->provider,
                                                   pool->tag, token, n->reach, &n->store_row)
                : 0;
  if (src != 0) {
    why = kite__sprintf("cannot record the launch in the state store: %s",
                        kite_store_errmsg(pool->store));
    fail(n, src == KITE_ENOMEM ? KITE_ENOMEM : KITE_ESTORE, why ? why : "cannot record the launch");
    free(why);
    return;
  }
  const kite_offer_t *o = &c->offer;
  kite_ev_instance_launch_t l = {.provider = n->provider,
                                 .pool = pool->id,
                                 .node = n->id,
                                 .rank = n->rank,
                                 .tag = pool->tag,
                                 .region = o->region[0] ? o->region : NULL,
                                 .zone = o->zone[0] ? o->zone : NULL,
                                 .instance_type = o->instance_type[0] ? o->instance_type : NULL,
                                 .spot = c->spot,
                                 .image = pool->image,
                                 .launch_token = token,
                                 .options = site->options,
                                 .price_hourly = c->price > 0 ? c->price : 0,
                                 .ondemand_hourly = c->ondemand > 0 ? c->ondemand : 0,
                                 .accelerator = o->accelerator[0] ? o->accelerator : NULL,
                                 .accelerator_count = o->accelerator[0] ? o->accelerator_count : 0};
  n->launch_price = c->price > 0 ? c->price : 0;
  /* What it is bought as, for `kite cost` (the provider's report refines it). */
  if (pool->store)
    kite_store_instance_bought(pool->store, n->store_row, l.region, l.zone, l.instance_type, l.spot,
                               l.price_hourly > 0 ? l.price_hourly : -1,
                               l.ondemand_hourly > 0 ? l.ondemand_hourly : -1);
  /* No timeout: a launch is answered with what it created, however late. */
  rc = kite_request_instance_launch(pool->bus, &l, 0, on_launched, n, &n->launch_corr);
  if (rc != 0)
    fail(n, rc, "cannot request a launch");
}

/* ---- entering and leaving states ---------------------------------------------------------- */

/* A fresh launch (first, or a replacement): from the rank's planned candidate. */
static void enter_provisioning(kite__node_t *n) {
  kite__plan_begin(n->pool->plan, n);
  launch(n);
}

/* The instance exists: connect to it (then the watchdog, then the bootstrap). */
static void enter_bootstrapping(kite__node_t *n) {
  connect_node(n);
}

/* What is under way is abandoned, the connect and the bootstrap: their replies still come,
 * and find the node moved on. */
static void exit_bootstrapping(kite__node_t *n) {
  if (n->connect_corr)
    kite_bus_cancel(n->pool->bus, n->connect_corr);
  if (n->boot_corr)
    kite_bus_cancel(n->pool->bus, n->boot_corr);
}

/* node_ready, and node_replaced when this is a replacement coming up. */
static void enter_ready(kite__node_t *n) {
  kite_pool_t *pool = n->pool;
  kite_ev_node_ready_t r = {.pool = pool->id,
                            .node = n->id,
                            .rank = n->rank,
                            .instance_id = n->instance_id,
                            .address = n->address,
                            .provider = n->provider};
  kite_emit_node_ready(pool->bus, &r);
  char *old = n->old_instance;
  n->old_instance = NULL;
  if (old) {
    kite_ev_node_replaced_t e = {.pool = pool->id,
                                 .node = n->id,
                                 .rank = n->rank,
                                 .old_instance = old,
                                 .new_instance = n->instance_id};
    KITE_INFO(pool->rt, "node", "%s rank %u: replaced instance %s by %s", pool->name, n->rank, old,
              n->instance_id);
    kite_emit_node_replaced(pool->bus, &e);
  }
  free(old);
}

/* The old instance is terminated explicitly and confirmed before its replacement starts: an
 * instance left behind is a leak that costs money. */
static void enter_replacing(kite__node_t *n) {
  if (n->instance_live)
    terminate_instance(n);
  else if (n->term_corr == 0)
    kite__node_relaunch(n);
}

/* The launch is not abandoned: its reply says what to terminate. */
static void enter_terminating(kite__node_t *n) {
  if (n->launch_corr)
    return;
  if (n->instance_live)
    terminate_instance(n);
  else if (n->term_corr == 0)
    set_state(n, KITE_NODE_TERMINATED, "nothing to terminate");
}

/* A failed node's instance still goes; the node stays FAILED. */
static void enter_failed(kite__node_t *n) {
  terminate_instance(n);
}

/* ---- reactions: the pool closes ------------------------------------------------------------ */

static void close_unlaunched(kite__node_t *n) {
  set_state(n, KITE_NODE_TERMINATED, "pool closed before launch");
}

static void close_active(kite__node_t *n) {
  set_state(n, KITE_NODE_TERMINATING, "pool closing");
}

static void close_failed(kite__node_t *n) {
  terminate_instance(n);
  kite__pool_node_dirty(n->pool, n);
}

static void close_nothing(kite__node_t *n) {
  (void)n;
}

/* ---- reactions: lost, preemption notice ---------------------------------------------------- */

/* While the launch is under way nothing exists that could be lost. */
static void lost_provisioning(kite__node_t *n, const char *reason) {
  if (n->launch_corr == 0)
    lost_replace(n, reason);
}

/* Replaced when the policy permits, else FAILED (and the pool shrinks). */
static void lost_replace(kite__node_t *n, const char *reason) {
  kite_pool_t *pool = n->pool;
  if (kite__pool_replace_permit(pool) < 0) {
    char *why = kite__sprintf("%s; %s", reason,
                              pool->replace ? "no replacements left (max_replacements)"
                                            : "replacement is off");
    fail(n, KITE_ENODELOST, why ? why : reason);
    free(why);
    /* What remains: every node not FAILED (READY, or on its way back). */
    unsigned ready = pool->nodes_n - pool->state_n[KITE_NODE_FAILED];
    char *msg = kite__sprintf("rank %u was lost and not replaced; %u of %u nodes remain", n->rank,
                              ready, pool->nodes_n);
    kite_ev_pool_shrunk_t ev = {.pool = pool->id,
                                .nodes = ready,
                                .min_nodes = pool->min_nodes,
                                .usable = ready >= pool->min_nodes,
                                .reason = msg};
    kite_log(pool->rt, KITE_LOG_WARN, "pool", "%s: %s%s", pool->name, msg,
             ready >= pool->min_nodes ? "" : " (below min_nodes: the pool is not usable)");
    kite_emit_pool_shrunk(pool->bus, &ev);
    free(msg);
    return;
  }
  n->replacements++;
  if (pool->store && n->store_row)
    kite_store_instance_note(pool->store, n->store_row, "replaced", reason);
  free(n->old_instance);
  n->old_instance = kite__strdup(n->instance_id);
  set_state(n, KITE_NODE_REPLACING, reason);
}

/* Already replacing, closing or failed; or never launched. */
static void lost_nothing(kite__node_t *n, const char *reason) {
  (void)n;
  (void)reason;
}

static void drain_ready(kite__node_t *n, const char *reason) {
  set_state(n, KITE_NODE_DRAINING, reason);
}

static void drain_nothing(kite__node_t *n, const char *reason) {
  (void)n;
  (void)reason;
}

/* ---- what the pool asks of a node ---------------------------------------------------------- */

void kite__node_start(kite__node_t *n) {
  set_state(n, KITE_NODE_PROVISIONING, n->replacements ? "launching a replacement" : "launching");
}

void kite__node_close(kite__node_t *n) {
  const state_def_t *d = state_of(n, "closed");
  if (d)
    d->close(n);
}

void kite__node_lost(kite__node_t *n, const char *reason) {
  const state_def_t *d = state_of(n, "lost");
  if (d)
    d->lost(n, reason);
}

void kite__node_drain(kite__node_t *n, const char *reason) {
  const state_def_t *d = state_of(n, "drained");
  if (d)
    d->drain(n, reason);
}

void kite__node_relaunch(kite__node_t *n) {
  if (n->state != KITE_NODE_REPLACING || n->instance_live || n->term_corr)
    return;
  if (n->session_open) {
    disconnect(n); /* the new instance gets a new session; on_disconnected comes back here */
    return;
  }
  if (!kite__pool_rate_take(n->pool)) {
    n->replace_held = true;
    kite__pool_node_dirty(n->pool, n);
    return;
  }
  n->replace_held = false;
  kite__node_start(n);
}
