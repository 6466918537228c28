/* The transport component: the face the rest of kite uses. It owns one SSH session per node
 * and answers the ssh_* requests of the event table:
 *
 *   ssh_connect    → session_ready (or an error naming host, port and why)
 *   ssh_exec       → task_finished, with task_output facts (keyed by task) as output arrives
 *   ssh_cancel     → done (the exec then finishes with KITE_ECANCELED)
 *   ssh_hold       → done (the exec's output is not read until the hold is lifted)
 *   ssh_upload     → transfer_done, with transfer_progress facts
 *   ssh_download   → transfer_done
 *   ssh_disconnect → session_closed
 *
 * and emits session_lost when a connected session dies. Output back-pressure: when the bus
 * queue is full, the chunk is held, the channel stops being read, and reading resumes when
 * the queue has room; nothing is dropped. */

#include <stdarg.h>
#include <stdio.h>

#include "hash.h"
#include "transport_impl.h"

typedef struct tsess tsess_t;
typedef struct top top_t;

struct kite_transport {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  char *known_hosts;
  unsigned max_channels;
  unsigned keepalive_s;
  tsess_t *sessions; /* by node */
  kite_sub_t subs[8];
  unsigned closing_sessions;
  kite_component_stopped_fn stopped;
};

struct tsess {
  uint64_t node;
  kite_transport_t *t;
  kite_ssh_t *s;
  uint64_t connect_corr; /* while connecting */
  uint64_t disconnect_corr;
  bool ready;
  bool closing;
  top_t *ops; /* by task */
  UT_hash_handle hh;
};

/* One exec or transfer in flight, for cancel and for held output. */
struct top {
  uint64_t task;
  uint64_t corr;
  tsess_t *ts;
  kite_exec_t *x;
  kite_xfer_t *xf;
  kite_ev_task_output_t out; /* identity fields of this exec's output */
  char *held;                /* a chunk the bus had no room for */
  size_t held_len;
  int held_stream;
  kite__redactor_t red[2]; /* stdout, stderr: registered secrets never leave the transport */
  kite_bus_waiter_t waiter;
  bool hashed;
  UT_hash_handle hh;
};

static void top_free(top_t *o) {
  if (o->held)
    kite_bus_wait_cancel(o->ts->t->bus, &o->waiter);
  if (o->hashed)
    HASH_DEL(o->ts->ops, o);
  free(o->held);
  kite__redactor_clear(&o->red[0]);
  kite__redactor_clear(&o->red[1]);
  free(o);
}

static top_t *top_new(tsess_t *ts, uint64_t task, uint64_t corr) {
  top_t *o = calloc(1, sizeof(*o));
  if (o == NULL)
    return NULL;
  o->task = task;
  o->corr = corr;
  o->ts = ts;
  top_t *old = NULL;
  HASH_FIND(hh, ts->ops, &task, sizeof(task), old);
  o->hashed = old == NULL; /* a duplicate task id runs, but cannot be canceled by id */
  if (o->hashed) {
    int rc;
    KITE_HASH_TRY(rc, HASH_ADD(hh, ts->ops, task, sizeof(o->task), o));
    o->hashed = rc == 0; /* out of memory: it runs, but cannot be canceled by id */
  }
  return o;
}

static void reply_err(kite_bus_t *bus, uint64_t corr, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_err(kite_bus_t *bus, uint64_t corr, int code, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  kite_bus_reply_error(bus, corr, code, buf);
}

static tsess_t *find(kite_transport_t *t, uint64_t node) {
  tsess_t *ts = NULL;
  HASH_FIND(hh, t->sessions, &node, sizeof(node), ts);
  return ts;
}

/* ---- sessions ----------------------------------------------------------------------------- */

static void maybe_stopped(kite_transport_t *t) {
  if (t->stopped && t->sessions == NULL && t->closing_sessions == 0) {
    kite_component_stopped_fn done = t->stopped;
    t->stopped = NULL;
    free(t->known_hosts);
    kite_runtime_t *rt = t->rt;
    (void)rt;
    done(&t->comp);
    free(t);
  }
}

static void on_session_closed(kite_ssh_t *s, void *data) {
  tsess_t *ts = data;
  kite_transport_t *t = ts->t;
  (void)s;
  if (ts->disconnect_corr) {
    kite_ev_session_closed_t p = {.node = ts->node};
    kite_reply_session_closed(t->bus, ts->disconnect_corr, &p);
  }
  free(ts);
  t->closing_sessions--;
  maybe_stopped(t);
}

/* Takes ts out of the table and closes its session; ts is freed when it is closed. */
static void session_close(tsess_t *ts) {
  kite_transport_t *t = ts->t;
  if (ts->closing)
    return;
  ts->closing = true;
  HASH_DEL(t->sessions, ts);
  t->closing_sessions++;
  if (ts->connect_corr) {
    kite_bus_reply_error(t->bus, ts->connect_corr, KITE_ECANCELED, "the SSH connect was canceled");
    ts->connect_corr = 0;
  }
  kite_ssh_close(ts->s, on_session_closed, ts);
}

static void on_lost(kite_ssh_t *s, int error, const char *message, void *data) {
  tsess_t *ts = data;
  kite_transport_t *t = ts->t;
  if (ts->closing)
    return;
  (void)s;
  kite_log(t->rt, KITE_LOG_WARN, "transport", "node %llu: %s", (unsigned long long)ts->node,
           message);
  kite_ev_session_lost_t p = {.node = ts->node, .error = error, .message = message};
  kite_emit_session_lost(t->bus, &p);
  session_close(ts);
}

static void on_connected(kite_ssh_t *s, int status, const char *message, void *data) {
  tsess_t *ts = data;
  kite_transport_t *t = ts->t;
  if (ts->closing)
    return; /* closed while connecting: the connect request was answered then */
  uint64_t corr = ts->connect_corr;
  ts->connect_corr = 0;
  if (status != 0) {
    kite_bus_reply_error(t->bus, corr, status, message);
    session_close(ts);
    return;
  }
  ts->ready = true;
  kite_ev_session_ready_t p = {.node = ts->node, .host = s->host, .port = s->port};
  kite_reply_session_ready(t->bus, corr, &p);
}

static void on_connect(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_connect_t *p,
                       void *data) {
  kite_transport_t *t = data;
  tsess_t *old = find(t, p->node);
  if (old)
    session_close(old); /* a new instance behind the same node: start over */
  if (p->host == NULL || p->user == NULL) {
    reply_err(bus, ev->corr, KITE_EINVAL, "ssh_connect for node %llu needs a host and a user",
              (unsigned long long)p->node);
    return;
  }
  tsess_t *ts = calloc(1, sizeof(*ts));
  if (ts == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, NULL);
    return;
  }
  ts->node = p->node;
  ts->t = t;
  ts->connect_corr = ev->corr;
  kite_ssh_options_t o = {.host = p->host,
                          .port = p->port,
                          .user = p->user,
                          .key_path = p->key_path,
                          .host_key = p->host_key,
                          .known_hosts = t->known_hosts,
                          .hostkey_mode = (kite_hostkey_mode_t)p->hostkey_mode,
                          .connect_timeout_ms = p->timeout_ms > 0 ? (uint64_t)p->timeout_ms : 0,
                          .keepalive_s = t->keepalive_s,
                          .max_channels = t->max_channels};
  int rc;
  KITE_HASH_TRY(rc, HASH_ADD(hh, t->sessions, node, sizeof(ts->node), ts));
  if (rc == 0 && (rc = kite_ssh_connect(t->rt, &o, on_connected, ts, &ts->s)) != 0)
    HASH_DEL(t->sessions, ts);
  if (rc != 0) {
    reply_err(bus, ev->corr, rc, "cannot connect to %s:%u: %s", p->host, p->port,
              kite_strerror(rc));
    free(ts);
    return;
  }
  kite_ssh_on_lost(ts->s, on_lost, ts);
}

static void on_disconnect(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_ssh_disconnect_t *p, void *data) {
  kite_transport_t *t = data;
  tsess_t *ts = find(t, p->node);
  if (ts == NULL) {
    kite_ev_session_closed_t c = {.node = p->node};
    kite_reply_session_closed(bus, ev->corr, &c);
    return;
  }
  ts->disconnect_corr = ev->corr;
  session_close(ts);
}

/* A session that exists and is connected, or NULL after replying with the error. */
static tsess_t *ready_session(kite_transport_t *t, uint64_t corr, uint64_t node) {
  tsess_t *ts = find(t, node);
  if (ts == NULL || !ts->ready) {
    reply_err(t->bus, corr, ts ? KITE_ESTATE : KITE_ECONNLOST,
              ts ? "node %llu: the SSH session is still connecting"
                 : "node %llu has no SSH session (never connected, or lost)",
              (unsigned long long)node);
    return NULL;
  }
  return ts;
}

/* ---- exec ------------------------------------------------------------------------------------ */

static void on_space(kite_bus_t *bus, void *data) {
  top_t *o = data;
  kite_ev_task_output_t p = o->out;
  p.stream = (uint32_t)o->held_stream;
  p.data = (kite_bytes_t){o->held, o->held_len};
  if (kite_emit_task_output(bus, &p) == KITE_EAGAIN) {
    kite_bus_wait_space(bus, &o->waiter);
    return;
  }
  free(o->held);
  o->held = NULL;
  kite_exec_resume(o->x);
}

static int on_exec_output(kite_exec_t *x, int stream, const void *buf, size_t len, void *data) {
  top_t *o = data;
  (void)x;
  kite_bus_t *bus = o->ts->t->bus;
  /* Redacted here, at the source, so that every consumer of the output (events, the pool's
   * callbacks, what the kite command prints and keeps) sees the same redacted bytes, and a
   * secret split across reads is still caught. */
  const char *clean;
  size_t clean_len;
  bool owned;
  if (kite__redact_feed(o->ts->t->rt, &o->red[stream == 2], buf, len, false, &clean, &clean_len,
                        &owned) != 0)
    return 0; /* out of memory: drop the chunk rather than let a secret through */
  if (clean_len == 0) {
    if (owned)
      free((char *)clean);
    return 0; /* all of it held back: it may begin a secret */
  }
  kite_ev_task_output_t p = o->out;
  p.stream = (uint32_t)stream;
  p.data = (kite_bytes_t){clean, clean_len};
  if (kite_emit_task_output(bus, &p) != KITE_EAGAIN) {
    if (owned)
      free((char *)clean);
    return 0;
  }
  if (owned) {
    o->held = (char *)clean;
  } else {
    o->held = malloc(clean_len);
    if (o->held == NULL)
      return 0; /* cannot hold it either; the bus said why */
    memcpy(o->held, clean, clean_len);
  }
  o->held_len = clean_len;
  o->held_stream = stream;
  o->waiter.cb = on_space;
  o->waiter.data = o;
  kite_bus_wait_space(bus, &o->waiter);
  return KITE_EAGAIN;
}

/* Emits a chunk at the end of an exec, when there is no channel left to pause. */
static void emit_now(kite_bus_t *bus, const top_t *o, int stream, const char *buf, size_t len) {
  kite_ev_task_output_t p = o->out;
  p.stream = (uint32_t)stream;
  p.data = (kite_bytes_t){buf, len};
  while (kite_emit_task_output(bus, &p) == KITE_EAGAIN && kite_bus_drain(bus, 64) == 0)
    ;
}

static void on_exec_done(kite_exec_t *x, int error, int exit_status, const char *signal,
                         const char *message, void *data) {
  top_t *o = data;
  (void)x;
  kite_bus_t *bus = o->ts->t->bus;
  if (o->held) {
    /* Output the bus had no room for still goes out first, in order. */
    kite_bus_wait_cancel(bus, &o->waiter);
    emit_now(bus, o, o->held_stream, o->held, o->held_len);
    free(o->held);
    o->held = NULL;
  }
  /* Then what the redactors held back (it turned out not to be a secret). */
  for (int k = 0; k < 2; k++) {
    if (o->red[k].held_len == 0)
      continue;
    const char *rest;
    size_t rest_len;
    bool owned;
    if (kite__redact_feed(o->ts->t->rt, &o->red[k], NULL, 0, true, &rest, &rest_len, &owned) == 0 &&
        rest_len)
      emit_now(bus, o, k + 1, rest, rest_len);
    if (owned)
      free((char *)rest);
  }
  kite_ev_task_finished_t f = {.pool = o->out.pool,
                               .node = o->out.node,
                               .task = o->out.task,
                               .rank = o->out.rank,
                               .attempt = o->out.attempt,
                               .exit_status = exit_status,
                               .signal = signal,
                               .error = error,
                               .message = message};
  kite_reply_task_finished(bus, o->corr, &f);
  top_free(o);
}

/* "A=1\nB=2" → a NULL-terminated list (one allocation). */
static char **split_env(const char *env) {
  size_t n = 1;
  for (const char *c = env; *c; c++)
    n += *c == '\n';
  size_t len = strlen(env);
  char **list = malloc((n + 1) * sizeof(char *) + len + 1);
  if (list == NULL)
    return NULL;
  char *copy = (char *)(list + n + 1);
  memcpy(copy, env, len + 1);
  size_t i = 0;
  for (char *line = copy, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    if (*line)
      list[i++] = line;
  }
  list[i] = NULL;
  return list;
}

static void on_exec(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_exec_t *p,
                    void *data) {
  kite_transport_t *t = data;
  tsess_t *ts = ready_session(t, ev->corr, p->node);
  if (ts == NULL)
    return;
  if (p->cmd == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL, "ssh_exec needs a command");
    return;
  }
  char **env = p->env && *p->env ? split_env(p->env) : NULL;
  top_t *o = top_new(ts, p->task, ev->corr);
  if (o == NULL || (p->env && *p->env && env == NULL)) {
    free(env);
    if (o)
      top_free(o);
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, NULL);
    return;
  }
  o->out = (kite_ev_task_output_t){
      .pool = p->pool, .node = p->node, .task = p->task, .rank = p->rank, .attempt = p->attempt};
  kite_exec_opts_t xo = {.shell = p->cmd,
                         .env = (const char *const *)env,
                         .timeout_ms = p->timeout_ms > 0 ? (uint64_t)p->timeout_ms : 0};
  int rc = kite_ssh_exec(ts->s, &xo, on_exec_output, on_exec_done, o, &o->x);
  free(env);
  if (rc != 0) {
    top_free(o);
    reply_err(bus, ev->corr, rc, "cannot run the command on node %llu: %s",
              (unsigned long long)p->node,
              rc == KITE_EINVAL ? "bad environment variable name" : kite_strerror(rc));
  }
}

/* The running task a request names, or NULL after replying that none runs. */
static top_t *task_of(kite_transport_t *t, uint64_t corr, uint64_t node, uint64_t task) {
  tsess_t *ts = find(t, node);
  top_t *o = NULL;
  if (ts)
    HASH_FIND(hh, ts->ops, &task, sizeof(task), o);
  if (o == NULL)
    reply_err(t->bus, corr, KITE_ENOENT, "no task %llu runs on node %llu", (unsigned long long)task,
              (unsigned long long)node);
  return o;
}

static void reply_done(kite_bus_t *bus, uint64_t corr, uint64_t task) {
  kite_ev_done_t d = {.id = task};
  kite_bus_reply(bus, corr, KITE_EV_DONE, &d);
}

static void on_cancel(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_cancel_t *p,
                      void *data) {
  top_t *o = task_of(data, ev->corr, p->node, p->task);
  if (o == NULL)
    return;
  if (o->x)
    kite_exec_cancel(o->x);
  else if (o->xf)
    kite_xfer_cancel(o->xf);
  reply_done(bus, ev->corr, p->task);
}

static void on_hold(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_hold_t *p,
                    void *data) {
  top_t *o = task_of(data, ev->corr, p->node, p->task);
  if (o == NULL)
    return;
  if (o->x)
    kite_exec_hold(o->x, p->hold);
  reply_done(bus, ev->corr, p->task);
}

/* ---- ping ---------------------------------------------------------------------------------- */

typedef struct pinging {
  kite_bus_t *bus;
  uint64_t corr, node;
} pinging_t;

static void on_pinged(kite_ssh_t *s, int status, void *data) {
  pinging_t *g = data;
  if (status == 0) {
    kite_ev_done_t d = {.id = g->node};
    kite_bus_reply(g->bus, g->corr, KITE_EV_DONE, &d);
  } else {
    reply_err(g->bus, g->corr, status, "node %llu: SSH ping failed: %s",
              (unsigned long long)g->node,
              status == KITE_ETIMEDOUT ? "no answer in time" : kite_ssh_errmsg(s));
  }
  free(g);
}

static void on_ping(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_ping_t *p,
                    void *data) {
  kite_transport_t *t = data;
  tsess_t *ts = ready_session(t, ev->corr, p->node);
  if (ts == NULL)
    return;
  pinging_t *g = malloc(sizeof(*g));
  if (g == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, NULL);
    return;
  }
  *g = (pinging_t){.bus = bus, .corr = ev->corr, .node = p->node};
  int rc = kite_ssh_ping(ts->s, p->timeout_ms > 0 ? (uint64_t)p->timeout_ms : 0, on_pinged, g);
  if (rc != 0) {
    free(g);
    reply_err(bus, ev->corr, rc, "node %llu: cannot ping: %s", (unsigned long long)p->node,
              kite_strerror(rc));
  }
}

/* ---- transfers --------------------------------------------------------------------------- */

static void on_xfer_progress(kite_xfer_t *x, uint64_t done, uint64_t total, void *data) {
  top_t *o = data;
  (void)x;
  kite_ev_transfer_progress_t p = {
      .node = o->ts->node, .task = o->task, .done = done, .total = total};
  kite_emit_transfer_progress(o->ts->t->bus, &p);
}

static void on_xfer_done(kite_xfer_t *x, int error, uint64_t bytes, const char *message,
                         void *data) {
  top_t *o = data;
  (void)x;
  kite_ev_transfer_done_t p = {
      .node = o->ts->node, .task = o->task, .error = error, .bytes = bytes, .message = message};
  kite_reply_transfer_done(o->ts->t->bus, o->corr, &p);
  top_free(o);
}

static void on_upload(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_upload_t *p,
                      void *data) {
  kite_transport_t *t = data;
  tsess_t *ts = ready_session(t, ev->corr, p->node);
  if (ts == NULL)
    return;
  if (p->remote == NULL || (p->local == NULL && p->content.ptr == NULL)) {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL,
                         "ssh_upload needs a remote path and a "
                         "local path or content");
    return;
  }
  top_t *o = top_new(ts, p->task, ev->corr);
  if (o == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, NULL);
    return;
  }
  int rc;
  if (p->content.ptr)
    rc = kite_ssh_write(ts->s, p->remote, p->content.ptr, p->content.len,
                        p->mode >= 0 ? p->mode : 0644, on_xfer_done, o, &o->xf);
  else
    rc = kite_ssh_upload(ts->s, p->local, p->remote, p->mode, on_xfer_progress, on_xfer_done, o,
                         &o->xf);
  if (rc != 0) {
    top_free(o);
    reply_err(bus, ev->corr, rc, "cannot upload to node %llu: %s", (unsigned long long)p->node,
              kite_strerror(rc));
  }
}

static void on_download(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_download_t *p,
                        void *data) {
  kite_transport_t *t = data;
  tsess_t *ts = ready_session(t, ev->corr, p->node);
  if (ts == NULL)
    return;
  if (p->remote == NULL || p->local == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL, "ssh_download needs remote and local paths");
    return;
  }
  top_t *o = top_new(ts, p->task, ev->corr);
  if (o == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, NULL);
    return;
  }
  int rc = kite_ssh_download(ts->s, p->remote, p->local, on_xfer_progress, on_xfer_done, o, &o->xf);
  if (rc != 0) {
    top_free(o);
    reply_err(bus, ev->corr, rc, "cannot download from node %llu: %s", (unsigned long long)p->node,
              kite_strerror(rc));
  }
}

/* ---- the component -------------------------------------------------------------------------- */

static int transport_start(kite_component_t *c, kite_runtime_t *rt) {
  kite_transport_t *t = container_of(c, kite_transport_t, comp);
  t->rt = rt;
  t->bus = kite_runtime_bus(rt);
  int rc = kite_respond_ssh_connect(t->bus, KITE_KEY_ANY, on_connect, t, &t->subs[0]);
  if (rc == 0)
    rc = kite_respond_ssh_exec(t->bus, KITE_KEY_ANY, on_exec, t, &t->subs[1]);
  if (rc == 0)
    rc = kite_respond_ssh_cancel(t->bus, KITE_KEY_ANY, on_cancel, t, &t->subs[2]);
  if (rc == 0)
    rc = kite_respond_ssh_upload(t->bus, KITE_KEY_ANY, on_upload, t, &t->subs[3]);
  if (rc == 0)
    rc = kite_respond_ssh_download(t->bus, KITE_KEY_ANY, on_download, t, &t->subs[4]);
  if (rc == 0)
    rc = kite_respond_ssh_disconnect(t->bus, KITE_KEY_ANY, on_disconnect, t, &t->subs[5]);
  if (rc == 0)
    rc = kite_respond_ssh_ping(t->bus, KITE_KEY_ANY, on_ping, t, &t->subs[6]);
  if (rc == 0)
    rc = kite_respond_ssh_hold(t->bus, KITE_KEY_ANY, on_hold, t, &t->subs[7]);
  if (rc != 0)
    for (size_t i = 0; i < KITE_ARRAY_SIZE(t->subs); i++)
      kite_bus_unsubscribe(t->bus, t->subs[i]);
  return rc;
}

static void transport_stop(kite_component_t *c, kite_component_stopped_fn done) {
  kite_transport_t *t = container_of(c, kite_transport_t, comp);
  for (size_t i = 0; i < KITE_ARRAY_SIZE(t->subs); i++)
    kite_bus_unsubscribe(t->bus, t->subs[i]);
  t->stopped = done;
  tsess_t *ts, *tmp;
  HASH_ITER(hh, t->sessions, ts, tmp) {
    session_close(ts);
  }
  maybe_stopped(t);
}

int kite_transport_new(kite_runtime_t *rt, const kite_transport_options_t *opts,
                       kite_transport_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_transport_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return KITE_ENOMEM;
  t->known_hosts = opts && opts->known_hosts ? kite__strdup(opts->known_hosts) : NULL;
  t->max_channels = opts ? opts->max_channels : 0;
  t->keepalive_s = opts ? opts->keepalive_s : 0;
  t->comp.name = "transport";
  t->comp.tier = KITE_TIER_TRANSPORT;
  t->comp.start = transport_start;
  t->comp.stop = transport_stop;
  int rc = kite_runtime_add(rt, &t->comp);
  if (rc != 0) {
    free(t->known_hosts);
    free(t);
    return rc;
  }
  if (out)
    *out = t;
  return 0;
}
