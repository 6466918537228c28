/* The owner of a pool opened by `kite up`: a background process that holds the pool open and
 * serves it on a unix socket, all on its one loop.
 *
 * The control protocol (version 1): a client connects, writes one request line (a JSON
 * object with "v" and "op") and reads reply lines (JSON objects with "t") until the owner
 * closes the connection. Requests:
 *
 *   {"op":"status"}                       → {"t":"status",…}
 *   {"op":"watch"}                        → kept events, live events, then {"t":"open",…}
 *                                           once the pool is open or failed
 *   {"op":"events","follow":B}            → kept events, then (follow) live ones; every
 *                                           event is the bus's JSON line as it is
 *   {"op":"exec","argv":[…] | "shell":S,"rank":R | "ranks":[…],"exclude":[…],"env":["N=V"…],
 *    "fanout":N,"timeout_ms":N,"retries":N (default: the spec's retries)}
 *                                         → {"t":"out","rank","attempt","stream","data"}…
 *                                           then {"t":"result",…}; meanwhile the client
 *                                           may send {"op":"cancel"}: the result then
 *                                           follows once the command is stopped on every
 *                                           node (ranks with error KITE_ECANCELED)
 *   {"op":"upload","local":P,"remote":P}  → {"t":"result",…}
 *   {"op":"download","rank":R,"remote":P,"local":P} → {"t":"result",…}
 *   {"op":"logs","rank":R}                → {"t":"task",…}… then {"t":"end"}
 *   {"op":"down"}                         → {"t":"closing"}, then {"t":"closed","status"}
 *
 * Any request may be answered {"t":"error","message":…} instead. Output bytes are base64.
 * A client that goes away (closes its end, or dies) while its command runs cancels it, as
 * {"op":"cancel"} would: nothing it started keeps running on the nodes unwatched. What the
 * command printed is kept for `kite logs`. `down` cancels every running command the same
 * way before any instance is terminated (kite_pool_close does).
 *
 * The owner keeps the last events (4 MiB of JSON lines) for `kite events` and `kite up`'s
 * view, and the last commands with their output for `kite logs`; each command's end is also a
 * line in its log. It opens no state store connection of its own: the pool's is the only one
 * in this process (a second kite_store_open in a process would close a descriptor of the
 * database file, which drops the POSIX locks SQLite holds on it for the first connection).
 * `kite up` records the socket path once the pool is open. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define HISTORY_BYTES (4u << 20)
#define OUTPUT_KEEP (64u << 10)
#define TASKS_KEEP 50
#define CLIENT_QUEUE_MAX (32u << 20)
/* A command's client with more than HOLD_HIGH bytes not yet written to it holds the command's
 * output on the nodes (kite_pool_hold) until its queue is under HOLD_LOW again: a reader on a
 * slow pipe slows the command down instead of being cut off. */
#define HOLD_HIGH (4u << 20)
#define HOLD_LOW (1u << 20)
#define REQUEST_MAX (1u << 20)

typedef enum { CL_NEW, CL_EVENTS, CL_WATCH, CL_TASK, CL_DOWN, CL_DONE } client_kind_t;

typedef struct owner owner_t;

typedef struct client {
  owner_t *o;
  uv_pipe_t pipe;
  char *in;
  size_t in_len;
  client_kind_t kind;
  bool finishing, closed;
  bool holding;    /* its tasks' output is held (HOLD_HIGH) */
  bool overflowed; /* CLIENT_QUEUE_MAX was passed: its last line is being queued */
  uv_shutdown_t sreq;
  struct client *next;
} client_t;

typedef struct rank_rec {
  char *out;
  size_t len;
  bool truncated, done;
  bool used; /* the task runs on this rank (a rank list may leave gaps in the span) */
  int error, exit_status;
  char *signal, *message;
} rank_rec_t;

typedef struct task_rec {
  owner_t *o;
  client_t *cl;
  uint64_t id;
  uint64_t pool_task; /* kite_pool_run/broadcast's task id, 0 for transfers */
  bool cancel_asked;
  char *what;
  uint32_t first_rank;
  unsigned count;
  rank_rec_t *ranks;
  int64_t started_ms, finished_ms;
  bool finished;
  bool print; /* `kite run`'s command: its output goes to this terminal */
  struct task_rec *next;
} task_rec_t;

typedef struct hist {
  char *line;
  size_t len;
  struct hist *next;
} hist_t;

struct owner {
  char where[200]; /* the spec's providers, for messages */
  cli_engine_t eng;
  kite_bus_t *bus;
  kite_spec_t *spec;
  const char *name;
  char *sock_path;
  kite_pool_t *pool;
  cli_view_t *view;
  uv_pipe_t server;
  uv_timer_t later;
  bool server_open, cleaned;
  client_t *clients;
  task_rec_t *tasks;
  unsigned task_count;
  uint64_t next_task;
  hist_t *hist_head, *hist_tail;
  size_t hist_bytes;
  bool open_done, close_asked, closed;
  int open_status;
  char *open_msg;
  int close_status;
  int exit_code;
  kite_sub_t all_sub;
  /* `kite run`: the owner runs in the foreground, runs one command on every node once the
   * pool is open, prints its output, and closes the pool; the socket serves the pool to
   * other kite commands meanwhile, as for `kite up`. NULL under `kite up`. */
  const cli_run_opts_t *run;
  cli_lines_t (*lines)[2];
  bool interrupted;
  bool closed_said;
};

static void client_finish(client_t *cl);

/* The owner's own log lines (its log file under `kite up`); `kite run` has none: its
 * terminal shows the pool's progress and the command's output instead. */
__attribute__((format(printf, 2, 3))) static void olog(owner_t *o, const char *fmt, ...) {
  if (o->run)
    return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
}

/* ---- writing to clients ----------------------------------------------------------------- */

typedef struct wreq {
  uv_write_t req;
  char data[];
} wreq_t;

static void client_hold(client_t *cl, bool hold);

static void on_written(uv_write_t *req, int status) {
  client_t *cl = kite_container_of((uv_pipe_t *)req->handle, client_t, pipe);
  free(kite_container_of(req, wreq_t, req));
  if (status == 0 && cl->holding && !cl->closed &&
      uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) < HOLD_LOW)
    client_hold(cl, false);
}

static void client_drop(client_t *cl);
static void send_error(client_t *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void send_raw(client_t *cl, const char *line, size_t len) {
  if (cl->finishing || cl->closed)
    return;
  if (!cl->overflowed &&
      uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) > CLIENT_QUEUE_MAX) {
    /* A reader that does not keep up is cut off rather than letting memory grow: what is
     * queued is written, then one line saying why, then the connection ends. */
    fprintf(stderr,
            "kite-owner: a client did not read its replies (over %u MiB queued); "
            "disconnecting it\n",
            CLIENT_QUEUE_MAX >> 20);
    cl->overflowed = true;
    send_error(cl,
               "this client did not read what the pool's owner sent fast enough (over %u MiB "
               "waited to be written), so the owner ended the connection; the pool is not "
               "affected: read the output faster, or ask for less (kite events --no-follow, "
               "kite logs)",
               CLIENT_QUEUE_MAX >> 20);
    return;
  }
  wreq_t *w = malloc(sizeof(*w) + len + 1);
  if (w == NULL)
    return;
  memcpy(w->data, line, len);
  w->data[len] = '\n';
  uv_buf_t b = uv_buf_init(w->data, (unsigned)len + 1);
  if (uv_write(&w->req, (uv_stream_t *)&cl->pipe, &b, 1, on_written) != 0)
    free(w);
  else if (!cl->holding && cl->kind == CL_TASK &&
           uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) > HOLD_HIGH)
    client_hold(cl, true);
}

static void send_json(client_t *cl, json_t *j) {
  if (j == NULL)
    return;
  json_object_set_new(j, "v", json_integer(CLI_PROTO_VERSION));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  /* Output bytes are redacted by the transport already; this catches a secret in any text
   * (a command line, an error message) on its way to a client. */
  size_t len = 0;
  char *clean = s ? kite_redact(cl->o->eng.rt, s, strlen(s), &len) : NULL;
  free(s);
  if (clean) {
    send_raw(cl, clean, len);
    free(clean);
  }
}

static void send_error(client_t *cl, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    msg = NULL;
  va_end(ap);
  send_json(cl, json_pack("{s:s, s:s}", "t", "error", "message", msg ? msg : "error"));
  free(msg);
  client_finish(cl);
}

/* ---- client lifetime --------------------------------------------------------------------- */

static void on_client_closed(uv_handle_t *h) {
  client_t *cl = kite_container_of((uv_pipe_t *)h, client_t, pipe);
  free(cl->in);
  free(cl);
}

static void client_drop(client_t *cl) {
  if (cl->closed)
    return;
  cl->closed = true;
  owner_t *o = cl->o;
  for (client_t **pp = &o->clients; *pp; pp = &(*pp)->next)
    if (*pp == cl) {
      *pp = cl->next;
      break;
    }
  if (cl->holding)
    client_hold(cl, false); /* what it ran goes on without it */
  for (task_rec_t *t = o->tasks; t; t = t->next)
    if (t->cl == cl)
      t->cl = NULL;
  uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void client_hold(client_t *cl, bool hold) {
  owner_t *o = cl->o;
  cl->holding = hold;
  for (task_rec_t *t = o->tasks; t && o->pool; t = t->next)
    if (t->cl == cl && t->pool_task && !t->finished)
      kite_pool_hold(o->pool, t->pool_task, hold);
}

static void on_client_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  client_drop(req->data);
}

/* Closes the connection once every queued reply is written. */
static void client_finish(client_t *cl) {
  if (cl->finishing || cl->closed)
    return;
  cl->finishing = true;
  cl->kind = CL_DONE;
  uv_read_stop((uv_stream_t *)&cl->pipe);
  cl->sreq.data = cl;
  if (uv_shutdown(&cl->sreq, (uv_stream_t *)&cl->pipe, on_client_shutdown) != 0)
    client_drop(cl);
}

/* ---- the pool's state ----------------------------------------------------------------------- */

static const char *pool_state(owner_t *o) {
  if (o->closed)
    return "closed";
  if (o->close_asked || o->eng.shutting_down)
    return "closing";
  if (!o->open_done)
    return "opening";
  if (o->open_status != 0)
    return "failed";
  /* Below min_nodes (nodes failed and were not replaced) the pool is not what was asked. */
  return o->pool && kite_pool_ready_count(o->pool) < kite_pool_min_nodes(o->pool) ? "degraded"
                                                                                  : "ready";
}

static json_t *nodes_json(owner_t *o) {
  json_t *a = json_array();
  if (o->pool == NULL)
    return a;
  for (uint32_t r = 0; r < kite_pool_size(o->pool); r++) {
    const char *id = kite_pool_instance_id(o->pool, r);
    const char *addr = kite_pool_address(o->pool, r);
    json_array_append_new(a, json_pack("{s:i, s:s, s:s?, s:s?}", "rank", (int)r, "state",
                                       kite_node_state_name(kite_pool_node_state(o->pool, r)),
                                       "instance_id", id, "address", addr));
  }
  return a;
}

static json_t *status_json(owner_t *o, const char *t) {
  return json_pack("{s:s, s:s, s:s, s:I, s:i, s:i, s:o}", "t", t, "name", o->name, "state",
                   pool_state(o), "pid", (json_int_t)getpid(), "size",
                   o->pool ? (int)kite_pool_size(o->pool) : 0, "ready",
                   o->pool ? (int)kite_pool_ready_count(o->pool) : 0, "nodes", nodes_json(o));
}

static void send_open_result(owner_t *o, client_t *cl) {
  json_t *j = status_json(o, "open");
  json_object_set_new(j, "status", json_integer(o->open_status));
  if (o->open_status != 0)
    json_object_set_new(j, "message",
                        json_string(o->open_msg ? o->open_msg : kite_strerror(o->open_status)));
  send_json(cl, j);
  client_finish(cl);
}

/* ---- events ------------------------------------------------------------------------------- */

static void hist_add(owner_t *o, char *line, size_t len) {
  hist_t *h = malloc(sizeof(*h));
  if (h == NULL) {
    free(line);
    return;
  }
  h->line = line;
  h->len = len;
  h->next = NULL;
  if (o->hist_tail)
    o->hist_tail->next = h;
  else
    o->hist_head = h;
  o->hist_tail = h;
  o->hist_bytes += len;
  while (o->hist_bytes > HISTORY_BYTES && o->hist_head != o->hist_tail) {
    hist_t *old = o->hist_head;
    o->hist_head = old->next;
    o->hist_bytes -= old->len;
    free(old->line);
    free(old);
  }
}

static void on_shutdown_later(uv_timer_t *t) {
  owner_t *o = kite_container_of(t, owner_t, later);
  kite_runtime_shutdown(o->eng.rt, NULL, NULL);
}

static void on_any_event(kite_bus_t *bus, const kite_event_t *ev, const void *payload, void *data) {
  owner_t *o = data;
  (void)payload;
  char *line = kite_event_to_json(bus, ev);
  if (line == NULL)
    return;
  size_t len = strlen(line);
  for (client_t *cl = o->clients; cl; cl = cl->next)
    if (cl->kind == CL_EVENTS || cl->kind == CL_WATCH)
      send_raw(cl, line, len);
  hist_add(o, line, len);
  /* The pool's last word has reached every follower: now the owner may go (on the next
   * loop turn, outside this dispatch). */
  if (ev->type == KITE_EV_POOL_CLOSED && o->closed && !o->eng.shutting_down)
    uv_timer_start(&o->later, on_shutdown_later, 0, 0);
}

static void send_history(owner_t *o, client_t *cl) {
  for (hist_t *h = o->hist_head; h; h = h->next)
    send_raw(cl, h->line, h->len);
}

/* ---- tasks ----------------------------------------------------------------------------------- */

static void task_free(task_rec_t *t) {
  for (unsigned i = 0; i < t->count; i++) {
    free(t->ranks[i].out);
    free(t->ranks[i].signal);
    free(t->ranks[i].message);
  }
  free(t->ranks);
  free(t->what);
  free(t);
}

static task_rec_t *task_new(owner_t *o, client_t *cl, const char *what, uint32_t first,
                            unsigned count) {
  task_rec_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->ranks = calloc(count, sizeof(*t->ranks));
  /* The command line as typed may hold a secret: what is kept, logged and shown is redacted. */
  t->what = kite_redact(o->eng.rt, what, strlen(what), NULL);
  if (t->ranks == NULL || t->what == NULL) {
    free(t->ranks);
    free(t->what);
    free(t);
    return NULL;
  }
  t->o = o;
  t->cl = cl;
  t->id = ++o->next_task;
  t->first_rank = first;
  t->count = count;
  for (unsigned i = 0; i < count; i++)
    t->ranks[i].used = true;
  t->started_ms = cli_now_ms();
  /* Newest first; the oldest finished ones beyond TASKS_KEEP are forgotten. */
  t->next = o->tasks;
  o->tasks = t;
  o->task_count++;
  task_rec_t **pp = &o->tasks;
  unsigned n = 0;
  while (*pp) {
    if (++n > TASKS_KEEP && (*pp)->finished) {
      task_rec_t *old = *pp;
      *pp = old->next;
      task_free(old);
      o->task_count--;
      continue;
    }
    pp = &(*pp)->next;
  }
  return t;
}

static rank_rec_t *task_rank(task_rec_t *t, uint32_t rank) {
  if (rank < t->first_rank || rank - t->first_rank >= t->count)
    return NULL;
  return &t->ranks[rank - t->first_rank];
}

static void on_task_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                           const void *buf, size_t len, void *data) {
  task_rec_t *t = data;
  (void)pool;
  rank_rec_t *r = task_rank(t, rank);
  if (r) {
    /* Keep the last OUTPUT_KEEP bytes. */
    if (len >= OUTPUT_KEEP) {
      free(r->out);
      r->out = malloc(OUTPUT_KEEP);
      if (r->out)
        memcpy(r->out, (const char *)buf + len - OUTPUT_KEEP, OUTPUT_KEEP);
      r->len = r->out ? OUTPUT_KEEP : 0;
      r->truncated = true;
    } else {
      if (r->len + len > OUTPUT_KEEP) {
        size_t drop = r->len + len - OUTPUT_KEEP;
        memmove(r->out, r->out + drop, r->len - drop);
        r->len -= drop;
        r->truncated = true;
      }
      char *g = realloc(r->out, r->len + len);
      if (g) {
        memcpy(g + r->len, buf, len);
        r->out = g;
        r->len += len;
      }
    }
  }
  if (t->print && t->o->run->json) {
    char *b = cli_b64_encode(buf, len);
    json_t *j =
        json_pack("{s:s, s:i, s:i, s:i, s:s, s:i}", "t", "out", "rank", (int)rank, "attempt",
                  (int)attempt, "stream", stream, "data", b ? b : "", "v", CLI_PROTO_VERSION);
    char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
    if (line)
      printf("%s\n", line);
    fflush(stdout);
    free(line);
    json_decref(j);
    free(b);
  } else if (t->print && t->o->lines && rank < kite_pool_size(t->o->pool)) {
    int s = stream == 2 ? 1 : 0;
    cli_lines_t *l = &t->o->lines[rank][s];
    l->host = t->o->run->labels ? t->o->run->labels[rank] : NULL;
    cli_lines_attempt(l, s ? stderr : stdout, rank, attempt);
    cli_lines_feed(l, s ? stderr : stdout, rank, buf, len);
  }
  if (t->cl) {
    char *b = cli_b64_encode(buf, len);
    send_json(t->cl, json_pack("{s:s, s:i, s:i, s:i, s:s}", "t", "out", "rank", (int)rank,
                               "attempt", (int)attempt, "stream", stream, "data", b ? b : ""));
    free(b);
  }
}

static json_t *result_json(int status, const kite_task_result_t *res) {
  json_t *ranks = json_array();
  for (unsigned i = 0; res && i < res->count; i++) {
    const kite_rank_result_t *r = &res->ranks[i];
    json_array_append_new(
        ranks, json_pack("{s:i, s:s?, s:i, s:s?, s:s?, s:i}", "rank", (int)r->rank, "error",
                         r->error ? kite_err_name(r->error) : NULL, "exit_status", r->exit_status,
                         "signal", r->signal, "message", r->message, "attempts", (int)r->attempts));
  }
  return json_pack("{s:s, s:s?, s:i, s:i, s:o}", "t", "result", "error",
                   status ? kite_err_name(status) : NULL, "count", res ? (int)res->count : 0,
                   "failed", res ? (int)res->failed : 0, "ranks", ranks);
}

static void run_done(owner_t *o, int status, const kite_task_result_t *res);

static void on_task_done(kite_pool_t *pool, int status, const kite_task_result_t *res, void *data) {
  task_rec_t *t = data;
  (void)pool;
  t->finished = true;
  t->finished_ms = cli_now_ms();
  for (unsigned i = 0; res && i < res->count; i++) {
    const kite_rank_result_t *rr = &res->ranks[i];
    rank_rec_t *r = task_rank(t, rr->rank);
    if (r == NULL)
      continue;
    r->done = true;
    r->error = rr->error;
    r->exit_status = rr->exit_status;
    r->signal = rr->signal ? strdup(rr->signal) : NULL;
    r->message = rr->message ? strdup(rr->message) : NULL;
  }
  olog(t->o, "kite-owner: task %llu (%s) finished: %u rank(s), %u failed\n",
       (unsigned long long)t->id, t->what, res ? res->count : 0, res ? res->failed : 0);
  if (t->cl) {
    send_json(t->cl, result_json(status, res));
    client_finish(t->cl);
    t->cl = NULL;
  }
  if (t->print)
    run_done(t->o, status, res);
}

/* ---- requests --------------------------------------------------------------------------- */

static bool pool_usable(owner_t *o, client_t *cl) {
  if (o->pool && o->open_done && o->open_status == 0 && !o->close_asked && !o->eng.shutting_down)
    return true;
  send_error(cl, "pool %s is %s, not ready; see `kite status %s`", o->name, pool_state(o), o->name);
  return false;
}

/* A usage error of the client (exit status 2): a rank that does not exist, a bad list. */
static void send_usage_error(client_t *cl, const char *msg) {
  send_json(cl, json_pack("{s:s, s:s, s:b}", "t", "error", "message", msg, "usage", 1));
  client_finish(cl);
}

/* The ranks a request selects ("ranks" minus "exclude"; every rank when "ranks" is absent),
 * into sel (pool size entries); *n_out of them. false (the error sent) on a bad list. */
static bool ranks_arg(owner_t *o, client_t *cl, json_t *req, uint32_t *sel, unsigned *n_out) {
  unsigned size = kite_pool_size(o->pool);
  bool *want = calloc(size, sizeof(*want));
  if (want == NULL) {
    send_error(cl, "out of memory");
    return false;
  }
  json_t *ranks = json_object_get(req, "ranks"), *excl = json_object_get(req, "exclude");
  for (unsigned r = 0; r < size; r++)
    want[r] = ranks == NULL;
  for (int pass = 0; pass < 2; pass++) {
    json_t *list = pass ? excl : ranks;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
      if (!json_is_integer(v) || json_integer_value(v) < 0 ||
          json_integer_value(v) >= (json_int_t)size) {
        char *m = NULL;
        if (json_is_integer(v))
          m = cli_sprintf("pool %s has ranks 0 to %u; rank %lld does not exist", o->name, size - 1,
                          (long long)json_integer_value(v));
        send_usage_error(cl, m ? m : "a rank must be a number");
        free(m);
        free(want);
        return false;
      }
      want[json_integer_value(v)] = pass == 0;
    }
  }
  unsigned n = 0;
  for (unsigned r = 0; r < size; r++)
    if (want[r])
      sel[n++] = r;
  free(want);
  if (n == 0) {
    send_usage_error(cl, "no rank is left to run on (every selected rank is excluded)");
    return false;
  }
  *n_out = n;
  return true;
}

static bool rank_arg(owner_t *o, client_t *cl, json_t *req, bool required, int64_t *rank) {
  json_t *r = json_object_get(req, "rank");
  *rank = -1;
  if (r == NULL || json_is_null(r)) {
    if (required)
      send_error(cl, "this request needs a rank");
    return !required;
  }
  if (!json_is_integer(r) || json_integer_value(r) < 0 ||
      json_integer_value(r) >= (json_int_t)kite_pool_size(o->pool)) {
    char *m = json_is_integer(r)
                  ? cli_sprintf("pool %s has ranks 0 to %u; rank %lld does not exist", o->name,
                                kite_pool_size(o->pool) - 1, (long long)json_integer_value(r))
                  : NULL;
    send_usage_error(cl, m ? m : "a rank must be a number");
    free(m);
    return false;
  }
  *rank = json_integer_value(r);
  return true;
}

static void req_exec(owner_t *o, client_t *cl, json_t *req) {
  int64_t rank;
  if (!pool_usable(o, cl) || !rank_arg(o, cl, req, false, &rank))
    return;
  json_t *argv = json_object_get(req, "argv");
  const char *shell = json_string_value(json_object_get(req, "shell"));
  size_t n = json_array_size(argv);
  if (n == 0 && (shell == NULL || *shell == '\0')) {
    send_error(cl, "exec needs a command (argv or shell)");
    return;
  }
  unsigned size = kite_pool_size(o->pool), nsel = 0;
  uint32_t *sel = calloc(size, sizeof(*sel));
  const char **v = calloc(n + 1, sizeof(*v));
  json_t *jenv = json_object_get(req, "env");
  const char **env = calloc(json_array_size(jenv) + 1, sizeof(*env));
  if (sel == NULL || v == NULL || env == NULL) {
    free(sel);
    free(v);
    free(env);
    send_error(cl, "out of memory");
    return;
  }
  if (rank >= 0) {
    sel[0] = (uint32_t)rank;
    nsel = 1;
  } else if (!ranks_arg(o, cl, req, sel, &nsel)) {
    free(sel);
    free(v);
    free(env);
    return;
  }
  size_t wlen = 6 + (shell ? strlen(shell) + 1 : 0);
  for (size_t i = 0; i < n; i++) {
    v[i] = json_string_value(json_array_get(argv, i));
    if (v[i] == NULL) {
      free(sel);
      free(v);
      free(env);
      send_error(cl, "argv must be an array of strings");
      return;
    }
    wlen += strlen(v[i]) + 1;
  }
  for (size_t i = 0; i < json_array_size(jenv); i++) {
    env[i] = json_string_value(json_array_get(jenv, i));
    if (env[i] == NULL || strchr(env[i], '=') == NULL) {
      free(sel);
      free(v);
      free(env);
      send_usage_error(cl, "env entries are NAME=VALUE");
      return;
    }
  }
  char *what = malloc(wlen + 1);
  if (what == NULL) {
    free(sel);
    free(v);
    free(env);
    send_error(cl, "out of memory");
    return;
  }
  strcpy(what, "exec:");
  if (shell) {
    strcat(what, " ");
    strcat(what, shell);
  }
  for (size_t i = 0; i < n; i++) {
    strcat(what, " ");
    strcat(what, v[i]);
  }
  json_t *to = json_object_get(req, "timeout_ms"), *fo = json_object_get(req, "fanout");
  json_t *re = json_object_get(req, "retries");
  kite_task_opts_t opts = {
      .timeout_ms =
          json_is_integer(to) && json_integer_value(to) > 0 ? (uint64_t)json_integer_value(to) : 0,
      .fanout =
          json_is_integer(fo) && json_integer_value(fo) > 0 ? (unsigned)json_integer_value(fo) : 0,
      .env = json_array_size(jenv) ? env : NULL,
      .retries = json_is_integer(re) && json_integer_value(re) >= 0
                     ? (unsigned)json_integer_value(re)
                     : kite_spec_retries(o->spec)};
  /* The record spans the lowest to the highest selected rank. */
  uint32_t lo = sel[0], hi = sel[0];
  for (unsigned i = 1; i < nsel; i++) {
    lo = sel[i] < lo ? sel[i] : lo;
    hi = sel[i] > hi ? sel[i] : hi;
  }
  if (opts.retries > 0 && !kite_spec_pool(o->spec)->replace) {
    free(sel);
    free(v);
    free(env);
    free(what);
    send_usage_error(cl, "--retries re-runs a command on the replacement of a lost node, and "
                         "this pool has replacement off (its spec's replace.on_preemption)");
    return;
  }
  task_rec_t *t = task_new(o, cl, what, lo, hi - lo + 1);
  for (unsigned i = 0; t && nsel != hi - lo + 1 && i < hi - lo + 1; i++)
    t->ranks[i].used = false;
  for (unsigned i = 0; t && nsel != hi - lo + 1 && i < nsel; i++)
    t->ranks[sel[i] - lo].used = true;
  free(what);
  if (t == NULL) {
    free(sel);
    free(v);
    free(env);
    send_error(cl, "out of memory");
    return;
  }
  cl->kind = CL_TASK;
  kite_cmd_t cmd = {.argv = shell ? NULL : v, .shell = shell};
  int rc = nsel == size && rank < 0
               ? kite_pool_broadcast(o->pool, &cmd, &opts, on_task_output, on_task_done, t,
                                     &t->pool_task)
               : kite_pool_run_ranks(o->pool, sel, nsel, &cmd, &opts, on_task_output, on_task_done,
                                     t, &t->pool_task);
  free(sel);
  free(v);
  free(env);
  if (rc != 0) {
    t->cl = NULL;
    on_task_done(o->pool, rc, NULL, t);
    send_error(cl, "cannot run the command: %s", kite_strerror(rc));
  }
}

static void req_transfer(owner_t *o, client_t *cl, json_t *req, bool up) {
  int64_t rank = -1;
  if (!pool_usable(o, cl) || (!up && !rank_arg(o, cl, req, true, &rank)))
    return;
  const char *local = json_string_value(json_object_get(req, "local"));
  const char *remote = json_string_value(json_object_get(req, "remote"));
  if (local == NULL || remote == NULL || local[0] != '/') {
    send_error(cl, "%s needs \"local\" (an absolute path) and \"remote\"",
               up ? "upload" : "download");
    return;
  }
  char *what =
      cli_sprintf("%s %s %s", up ? "upload" : "download", up ? local : remote, up ? remote : local);
  task_rec_t *t =
      what ? task_new(o, cl, what, up ? 0 : (uint32_t)rank, up ? kite_pool_size(o->pool) : 1)
           : NULL;
  free(what);
  if (t == NULL) {
    send_error(cl, "out of memory");
    return;
  }
  cl->kind = CL_TASK;
  int rc = up ? kite_pool_upload(o->pool, local, remote, on_task_done, t)
              : kite_pool_download(o->pool, (uint32_t)rank, remote, local, on_task_done, t);
  if (rc != 0) {
    t->cl = NULL;
    on_task_done(o->pool, rc, NULL, t);
    send_error(cl, "cannot start the transfer: %s", kite_strerror(rc));
  }
}

static void req_logs(owner_t *o, client_t *cl, json_t *req) {
  json_t *jr = json_object_get(req, "rank");
  int64_t want = json_is_integer(jr) ? json_integer_value(jr) : -1;
  /* Oldest first: collect, then walk backwards. */
  task_rec_t *v[TASKS_KEEP * 2 + 8];
  size_t n = 0;
  for (task_rec_t *t = o->tasks; t && n < sizeof(v) / sizeof(v[0]); t = t->next)
    v[n++] = t;
  while (n-- > 0) {
    task_rec_t *t = v[n];
    json_t *ranks = json_array();
    for (unsigned i = 0; i < t->count; i++) {
      rank_rec_t *r = &t->ranks[i];
      uint32_t rank = t->first_rank + i;
      if (!r->used || (want >= 0 && (int64_t)rank != want))
        continue;
      char *b = cli_b64_encode(r->out ? r->out : "", r->len);
      json_array_append_new(
          ranks, json_pack("{s:i, s:b, s:s?, s:i, s:s?, s:s?, s:s, s:b}", "rank", (int)rank, "done",
                           r->done, "error", r->error ? kite_err_name(r->error) : NULL,
                           "exit_status", r->exit_status, "signal", r->signal, "message",
                           r->message, "output", b ? b : "", "truncated", r->truncated));
      free(b);
    }
    if (json_array_size(ranks) == 0) {
      json_decref(ranks);
      continue;
    }
    send_json(cl,
              json_pack("{s:s, s:I, s:s, s:I, s:I, s:b, s:o}", "t", "task", "id", (json_int_t)t->id,
                        "what", t->what, "started_ms", (json_int_t)t->started_ms, "finished_ms",
                        (json_int_t)t->finished_ms, "finished", t->finished, "ranks", ranks));
  }
  send_json(cl, json_pack("{s:s}", "t", "end"));
  client_finish(cl);
}

static void on_pool_closed(kite_pool_t *pool, int status, void *data);

static void req_down(owner_t *o, client_t *cl) {
  cl->kind = CL_DOWN;
  send_json(cl, json_pack("{s:s, s:s}", "t", "closing", "name", o->name));
  if (o->close_asked || o->eng.shutting_down)
    return; /* already closing: this client hears the end with the others */
  o->close_asked = true;
  olog(o, "kite-owner: closing pool %s as asked by `kite down`\n", o->name);
  if (o->pool)
    kite_pool_close(o->pool, on_pool_closed, o);
}

static void handle_request(owner_t *o, client_t *cl, const char *line) {
  json_error_t jerr;
  json_t *req = json_loads(line, 0, &jerr);
  const char *op = json_string_value(json_object_get(req, "op"));
  if (!json_is_object(req) || op == NULL) {
    send_error(cl, "a request is one JSON object with \"op\" (%s)", jerr.text);
  } else if (strcmp(op, "status") == 0) {
    send_json(cl, status_json(o, "status"));
    client_finish(cl);
  } else if (strcmp(op, "watch") == 0) {
    send_history(o, cl);
    if (o->open_done) {
      send_open_result(o, cl);
    } else {
      cl->kind = CL_WATCH;
    }
  } else if (strcmp(op, "events") == 0) {
    send_history(o, cl);
    if (json_is_false(json_object_get(req, "follow")))
      client_finish(cl);
    else
      cl->kind = CL_EVENTS;
  } else if (strcmp(op, "exec") == 0) {
    req_exec(o, cl, req);
  } else if (strcmp(op, "upload") == 0) {
    req_transfer(o, cl, req, true);
  } else if (strcmp(op, "download") == 0) {
    req_transfer(o, cl, req, false);
  } else if (strcmp(op, "logs") == 0) {
    req_logs(o, cl, req);
  } else if (strcmp(op, "down") == 0) {
    req_down(o, cl);
  } else {
    send_error(cl, "unknown request \"%s\"", op);
  }
  json_decref(req);
}

static void on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

/* Cancels the running commands cl asked for. gone: cl has closed its end, so it hears no
 * more (its tasks forget it first); else the results follow as usual. */
static void cancel_client_tasks(owner_t *o, client_t *cl, bool gone) {
  task_rec_t *mine[8];
  size_t n = 0;
  for (task_rec_t *t = o->tasks; t && n < sizeof(mine) / sizeof(mine[0]); t = t->next)
    if (t->cl == cl && !t->finished) {
      if (gone)
        t->cl = NULL;
      if (t->pool_task && !t->cancel_asked)
        mine[n++] = t;
    }
  for (size_t i = 0; i < n && o->pool; i++) {
    task_rec_t *t = mine[i];
    t->cancel_asked = true;
    olog(o, "kite-owner: task %llu (%s): %s; stopping it on the nodes\n", (unsigned long long)t->id,
         t->what, gone ? "its client went away" : "canceled by its client");
    kite_pool_cancel(o->pool, t->pool_task);
  }
}

/* A line after the request: only a running command's client has something to say. */
static void handle_followup(owner_t *o, client_t *cl, const char *line) {
  json_t *req = json_loads(line, 0, NULL);
  const char *op = json_string_value(json_object_get(req, "op"));
  if (cl->kind == CL_TASK && op && strcmp(op, "cancel") == 0)
    cancel_client_tasks(o, cl, false);
  json_decref(req);
}

/* The connection is over: what its client started stops too. */
static void client_gone(client_t *cl) {
  if (cl->kind == CL_TASK)
    cancel_client_tasks(cl->o, cl, true);
  client_drop(cl);
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  client_t *cl = kite_container_of((uv_pipe_t *)s, client_t, pipe);
  if (nread < 0) {
    free(buf->base);
    client_gone(cl);
    return;
  }
  if (nread == 0 || cl->finishing || cl->closed) {
    free(buf->base);
    return;
  }
  char *g = realloc(cl->in, cl->in_len + (size_t)nread + 1);
  if (g == NULL || cl->in_len + (size_t)nread > REQUEST_MAX) {
    free(buf->base);
    if (g)
      cl->in = g; /* freed with the client */
    client_gone(cl);
    return;
  }
  memcpy(g + cl->in_len, buf->base, (size_t)nread);
  free(buf->base);
  cl->in = g;
  cl->in_len += (size_t)nread;
  cl->in[cl->in_len] = '\0';
  size_t off = 0;
  char *nl;
  while (!cl->finishing && !cl->closed &&
         (nl = memchr(cl->in + off, '\n', cl->in_len - off)) != NULL) {
    char *line = cl->in + off;
    *nl = '\0';
    off = (size_t)(nl - cl->in) + 1;
    if (cl->kind == CL_NEW) {
      cl->kind = CL_DONE; /* until the request says otherwise */
      handle_request(cl->o, cl, line);
    } else {
      handle_followup(cl->o, cl, line);
    }
  }
  memmove(cl->in, cl->in + off, cl->in_len - off + 1);
  cl->in_len -= off;
}

static void on_connection(uv_stream_t *server, int status) {
  owner_t *o = kite_container_of((uv_pipe_t *)server, owner_t, server);
  if (status != 0)
    return;
  client_t *cl = calloc(1, sizeof(*cl));
  if (cl == NULL)
    return;
  cl->o = o;
  uv_pipe_init(kite_runtime_loop(o->eng.rt), &cl->pipe, 0);
  if (uv_accept(server, (uv_stream_t *)&cl->pipe) != 0) {
    uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
    return;
  }
  cl->next = o->clients;
  o->clients = cl;
  uv_read_start((uv_stream_t *)&cl->pipe, on_client_alloc, on_client_read);
}

/* ---- the pool's life --------------------------------------------------------------------- */

/* Closes the socket and every connection (replies already queued are still written). */
static void cleanup(owner_t *o) {
  if (o->cleaned)
    return;
  o->cleaned = true;
  if (o->server_open) {
    o->server_open = false;
    uv_close((uv_handle_t *)&o->server, NULL);
    unlink(o->sock_path);
  }
  for (client_t *cl = o->clients, *next; cl; cl = next) {
    next = cl->next;
    if (cl->kind == CL_DOWN && o->closed)
      send_json(cl, json_pack("{s:s, s:i, s:s}", "t", "closed", "status", o->close_status, "name",
                              o->name));
    else if (cl->kind != CL_DONE && cl->kind != CL_EVENTS)
      send_json(cl, json_pack("{s:s, s:s}", "t", "error", "message",
                              "the pool's owner is shutting down"));
    client_finish(cl);
  }
  uv_close((uv_handle_t *)&o->later, NULL);
}

static void on_engine_shutdown(cli_engine_t *e, void *data) {
  owner_t *o = data;
  (void)e;
  if (!o->close_asked)
    olog(o, "kite-owner: shutting down (signal): closing pool %s\n", o->name);
  if (o->run && !o->close_asked) {
    /* A signal (Ctrl-C, SIGTERM): the pool's close cancels the command on every node. */
    o->interrupted = true;
    o->exit_code = CLI_EXIT_INTERRUPTED;
    if (o->view)
      cli_view_end(o->view);
    fprintf(stderr,
            "kite: interrupted: cancelling the running commands and terminating the instances "
            "of pool %s (Ctrl-C again to exit at once; `kite down %s` finishes the job)\n",
            o->name, o->name);
  }
  if (o->view)
    cli_view_detach(o->view, o->bus);
  kite_bus_unsubscribe(o->bus, o->all_sub);
  cleanup(o);
}

static void on_pool_closed(kite_pool_t *pool, int status, void *data) {
  owner_t *o = data;
  (void)pool;
  o->pool = NULL;
  o->closed = true;
  o->close_status = status;
  olog(o, "kite-owner: pool %s closed%s\n", o->name,
       status ? ": some instances could not be confirmed terminated" : "");
  if (status != 0)
    o->exit_code = CLI_EXIT_FAIL;
  if (o->run && status != 0)
    cli_err("pool %s: some instances could not be confirmed terminated (%s); they stay "
            "recorded: run `kite down %s` to retry",
            o->name, kite_strerror(status), o->name);
  /* The shutdown follows the pool_closed event (on_any_event), so followers get it. */
}

static void on_later(uv_timer_t *t) {
  owner_t *o = kite_container_of(t, owner_t, later);
  if (o->eng.shutting_down || o->close_asked || o->pool == NULL)
    return;
  o->close_asked = true;
  kite_pool_close(o->pool, on_pool_closed, o);
}

/* ---- kite run: one command on every node, then close ------------------------------------- */

static void print_rank_failure(const kite_rank_result_t *rr) {
  if (rr->error != 0)
    fprintf(stderr, "kite: rank %u failed: %s%s%s\n", rr->rank, kite_strerror(rr->error),
            rr->message ? ": " : "", rr->message ? rr->message : "");
  else if (rr->signal)
    fprintf(stderr, "kite: rank %u failed: killed by signal %s\n", rr->rank, rr->signal);
  else
    fprintf(stderr, "kite: rank %u failed: exit status %d\n", rr->rank, rr->exit_status);
}

/* The pool is open (or failed): start the command, or close. */
static void run_open(owner_t *o, int status, const char *message) {
  if (o->view)
    cli_view_end(o->view);
  if (status != 0 || o->eng.shutting_down) {
    if (status != 0 && !o->interrupted) {
      cli_err("pool %s could not be opened: %s", o->name,
              message ? message : kite_strerror(status));
      o->exit_code = CLI_EXIT_FAIL;
    }
    if (!o->cleaned)
      uv_timer_start(&o->later, on_later, 0, 0);
    return;
  }
  if (!o->run->quiet)
    fprintf(stderr, "kite: pool %s ready: %u of %u nodes READY\n", o->name,
            kite_pool_ready_count(o->pool), kite_pool_size(o->pool));
  const cli_run_opts_t *r = o->run;
  kite_cmd_t cmd = {.argv = r->argv, .shell = r->argv ? NULL : r->shell};
  char *what = NULL;
  if (r->argv) {
    /* "run: ARG ARG ...", as the owner names the commands it keeps for `kite logs`. */
    size_t len = 6;
    for (size_t i = 0; r->argv[i]; i++)
      len += strlen(r->argv[i]) + 1;
    what = malloc(len);
    if (what) {
      strcpy(what, "run:");
      for (size_t i = 0; r->argv[i]; i++) {
        strcat(what, " ");
        strcat(what, r->argv[i]);
      }
    }
  } else {
    what = cli_sprintf("run: %s", r->shell ? r->shell : "");
  }
  task_rec_t *t = what ? task_new(o, NULL, what, 0, kite_pool_size(o->pool)) : NULL;
  free(what);
  int rc = t ? kite_pool_broadcast(o->pool, &cmd, &r->task, on_task_output, on_task_done, t,
                                   &t->pool_task)
             : KITE_ENOMEM;
  if (t)
    t->print = rc == 0;
  if (rc != 0) {
    if (t)
      on_task_done(o->pool, rc, NULL, t);
    cli_err("cannot start the command: %s", kite_strerror(rc));
    o->exit_code = CLI_EXIT_FAIL;
    if (!o->cleaned)
      uv_timer_start(&o->later, on_later, 0, 0);
  }
}

/* The command ended on every rank: say how, then close the pool. */
static void run_done(owner_t *o, int status, const kite_task_result_t *res) {
  if (o->run->json) {
    json_t *j = result_json(status, res);
    json_object_set_new(j, "v", json_integer(CLI_PROTO_VERSION));
    char *line = json_dumps(j, JSON_COMPACT);
    if (line)
      printf("%s\n", line);
    fflush(stdout);
    free(line);
    json_decref(j);
  }
  for (unsigned i = 0; o->lines && o->pool && i < kite_pool_size(o->pool); i++) {
    cli_lines_flush(&o->lines[i][0], stdout, i);
    cli_lines_flush(&o->lines[i][1], stderr, i);
  }
  if (status != 0) {
    cli_err("the command could not run: %s", kite_strerror(status));
    if (!o->interrupted)
      o->exit_code = CLI_EXIT_FAIL;
  } else {
    for (unsigned i = 0; res && i < res->count; i++)
      if (res->ranks[i].error != 0 || res->ranks[i].exit_status != 0 || res->ranks[i].signal)
        print_rank_failure(&res->ranks[i]);
    if (res && res->failed) {
      fprintf(stderr, "kite: %u of %u ranks failed\n", res->failed, res->count);
      if (!o->interrupted)
        o->exit_code = CLI_EXIT_FAIL;
    }
  }
  /* Decided on the next loop turn: a shutdown that began meanwhile closes the pool instead. */
  if (!o->cleaned)
    uv_timer_start(&o->later, on_later, 0, 0);
}

/* The pool's last event, however it closed (done, or a signal's shutdown). */
static void on_run_pool_closed(kite_bus_t *bus, const kite_event_t *ev,
                               const kite_ev_pool_closed_t *p, void *data) {
  owner_t *o = data;
  (void)bus;
  (void)ev;
  if (o->closed_said || o->run->quiet)
    return;
  o->closed_said = true;
  fprintf(stderr, "kite: pool %s closed: every instance terminated and confirmed\n", p->name);
}

static void on_second_signal(kite_runtime_t *rt, int signum) {
  (void)rt;
  (void)signum;
  /* The store is written before every launch and after every confirmed termination, so it
   * is accurate whatever this process was doing. */
  static const char msg[] = "\nkite: interrupted again: exiting now; instances that were not "
                            "confirmed terminated are still recorded: run `kite down` with the "
                            "pool's name to terminate them\n";
  ssize_t w = write(2, msg, sizeof(msg) - 1);
  (void)w;
  _exit(CLI_EXIT_INTERRUPTED);
}

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  owner_t *o = data;
  o->open_done = true;
  o->open_status = status;
  o->open_msg = message ? strdup(message) : NULL;
  if (o->run) {
    run_open(o, status, message);
  } else if (status == 0) {
    olog(o, "kite-owner: pool %s ready: %u of %u nodes READY\n", o->name,
         kite_pool_ready_count(pool), kite_pool_size(pool));
  } else {
    olog(o, "kite-owner: pool %s could not be opened: %s\n", o->name,
         message ? message : kite_strerror(status));
    o->exit_code = CLI_EXIT_FAIL;
    /* Decided on the next loop turn: a shutdown that began meanwhile closes it instead. */
    uv_timer_start(&o->later, on_later, 0, 0);
  }
  for (client_t *cl = o->clients, *next; cl; cl = next) {
    next = cl->next;
    if (cl->kind == CL_WATCH)
      send_open_result(o, cl);
  }
}

int cli_owner_main(kite_spec_t *spec, const char *sock_path, int listen_fd,
                   const cli_run_opts_t *run) {
  owner_t *o = calloc(1, sizeof(*o));
  if (o == NULL)
    return CLI_EXIT_FAIL;
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  o->spec = spec;
  o->run = run;
  o->name = ps->name;
  o->sock_path = strdup(sock_path);
  o->eng.on_shutdown = on_engine_shutdown;
  o->eng.data = o;
  olog(o, "kite-owner: pid %d owns pool %s (%u %s nodes), socket %s\n", (int)getpid(), o->name,
       ps->nodes, cli_spec_providers(ps, o->where, sizeof(o->where)), sock_path);
  if (cli_engine_start_spec(&o->eng, ps) != 0) {
    free(o->sock_path);
    free(o);
    return CLI_EXIT_FAIL;
  }
  kite_runtime_t *rt = o->eng.rt;
  uv_loop_t *loop = kite_runtime_loop(rt);
  o->bus = kite_runtime_bus(rt);
  uv_timer_init(loop, &o->later);
  uv_pipe_init(loop, &o->server, 0);
  int err = uv_pipe_open(&o->server, listen_fd);
  if (err == 0)
    err = uv_listen((uv_stream_t *)&o->server, 64, on_connection);
  o->server_open = true;
  if (err != 0) {
    olog(o, "kite-owner: cannot serve %s: %s\n", sock_path, uv_strerror(err));
    o->exit_code = CLI_EXIT_FAIL;
    o->close_asked = true;
    kite_runtime_shutdown(rt, NULL, NULL);
  } else {
    o->view = run && run->quiet ? NULL : cli_view_new(stderr, ps->nodes, run && run->live);
    if (o->view)
      cli_view_attach(o->view, o->bus);
    kite_bus_subscribe_all(o->bus, on_any_event, o, &o->all_sub);
    if (run) {
      kite_sub_t closed_sub;
      kite_on_pool_closed(o->bus, KITE_KEY_ANY, on_run_pool_closed, o, &closed_sub);
      o->lines = calloc(ps->nodes, sizeof(*o->lines));
      if (!run->quiet)
        fprintf(stderr, "kite: opening pool %s: %u %s node%s\n", o->name, ps->nodes,
                cli_spec_providers(ps, o->where, sizeof(o->where)), ps->nodes == 1 ? "" : "s");
    }
    kite_runtime_handle_signals(rt, NULL, run ? on_second_signal : NULL, NULL);
    int rc = kite_pool_open(rt, ps, on_open, o, &o->pool);
    if (rc != 0) {
      olog(o, "kite-owner: cannot open pool %s: %s\n", o->name, kite_strerror(rc));
      o->pool = NULL;
      o->open_done = true;
      o->open_status = rc;
      o->open_msg =
          cli_sprintf("cannot open pool %s: %s (see the log above)", o->name, kite_strerror(rc));
      o->exit_code = CLI_EXIT_FAIL;
      o->close_asked = true;
      kite_runtime_shutdown(rt, NULL, NULL);
    }
  }
  cli_engine_finish(&o->eng);
  cli_view_free(o->view);
  while (o->hist_head) {
    hist_t *h = o->hist_head;
    o->hist_head = h->next;
    free(h->line);
    free(h);
  }
  while (o->tasks) {
    task_rec_t *t = o->tasks;
    o->tasks = t->next;
    task_free(t);
  }
  int code = o->exit_code;
  for (unsigned k = 0; o->lines && k < ps->nodes; k++) {
    free(o->lines[k][0].buf);
    free(o->lines[k][1].buf);
  }
  free(o->lines);
  free(o->open_msg);
  free(o->sock_path);
  free(o);
  return code;
}
