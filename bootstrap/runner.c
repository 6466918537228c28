/* The bootstrap runner: a component that answers `bootstrap` requests. It writes the script
 * to the node through the transport (ssh_upload with content: atomic, mode 0700), runs it
 * (ssh_exec), turns the script's progress markers into bootstrap_progress events as output
 * arrives, and replies bootstrap_done when the script exits — with, on failure, the name of
 * the step that was running and that step's output. Completion is the exit, never a poll. */

#include <stdio.h>

#include "kite_impl.h"
#include "kite/bootstrap.h"

#define TAIL_MAX (64 * 1024)
#define LINE_MAX_ 1024

typedef struct runner runner_t;

typedef struct job {
  runner_t *r;
  uint64_t corr; /* the bootstrap request */
  uint64_t pool, node, task;
  uint32_t rank;
  uint64_t up_corr, exec_corr;
  kite_sub_t out_sub;
  char line[LINE_MAX_];
  size_t line_len;
  unsigned step, total;
  char *step_name;
  char *tail; /* the current step's output (both streams), at most TAIL_MAX */
  size_t tail_len;
  struct job *prev, *next;
} job_t;

struct runner {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  uint64_t timeout_ms;
  kite_sub_t sub;
  job_t *jobs;
  kite_component_stopped_fn stopped;
};

static void job_free(job_t *j) {
  runner_t *r = j->r;
  kite_bus_unsubscribe(r->bus, j->out_sub);
  if (j->prev)
    j->prev->next = j->next;
  else
    r->jobs = j->next;
  if (j->next)
    j->next->prev = j->prev;
  free(j->step_name);
  free(j->tail);
  free(j);
  if (r->stopped && r->jobs == NULL) {
    kite_component_stopped_fn done = r->stopped;
    r->stopped = NULL;
    done(&r->comp);
    free(r);
  }
}

/* ---- output: markers and the failing step's output -------------------------------------- */

static void tail_add(job_t *j, const char *buf, size_t len) {
  if (len >= TAIL_MAX) {
    buf += len - TAIL_MAX;
    len = TAIL_MAX;
  }
  if (j->tail == NULL) {
    j->tail = malloc(TAIL_MAX + 1);
    if (j->tail == NULL)
      return;
  }
  if (j->tail_len + len > TAIL_MAX) {
    size_t drop = j->tail_len + len - TAIL_MAX;
    memmove(j->tail, j->tail + drop, j->tail_len - drop);
    j->tail_len -= drop;
  }
  memcpy(j->tail + j->tail_len, buf, len);
  j->tail_len += len;
  j->tail[j->tail_len] = '\0';
}

/* One complete stdout line (without its newline). */
static void on_line(job_t *j, const char *line, size_t len) {
  static const char step[] = "@kite-step ";
  if (len > sizeof(step) - 1 && memcmp(line, step, sizeof(step) - 1) == 0) {
    char copy[LINE_MAX_ + 1];
    memcpy(copy, line, len);
    copy[len] = '\0';
    unsigned n = 0, total = 0;
    int used = 0;
    if (sscanf(copy + sizeof(step) - 1, "%u %u %n", &n, &total, &used) == 2 && used > 0) {
      free(j->step_name);
      j->step_name = kite__strdup(copy + sizeof(step) - 1 + used);
      j->step = n;
      j->total = total;
      j->tail_len = 0;
      kite_ev_bootstrap_progress_t p = {.pool = j->pool, .node = j->node, .rank = j->rank,
                                        .step = n, .total = total, .name = j->step_name};
      kite_emit_bootstrap_progress(j->r->bus, &p);
      return;
    }
  }
  if (len >= 10 && memcmp(line, "@kite-done", 10) == 0)
    return;
  tail_add(j, line, len);
  tail_add(j, "\n", 1);
}

static void on_output(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_output_t *p,
                      void *data) {
  job_t *j = data;
  (void)bus;
  (void)ev;
  const char *buf = p->data.ptr;
  size_t len = p->data.len;
  if (p->stream != 1) {
    tail_add(j, buf, len);
    return;
  }
  for (size_t i = 0; i < len; i++) {
    if (buf[i] == '\n') {
      on_line(j, j->line, j->line_len);
      j->line_len = 0;
    } else if (j->line_len < sizeof(j->line)) {
      j->line[j->line_len++] = buf[i];
    } else {
      /* A long line is never a marker: keep it as output. */
      tail_add(j, j->line, j->line_len);
      j->line_len = 0;
      j->line[j->line_len++] = buf[i];
    }
  }
}

/* ---- the run ------------------------------------------------------------------------------ */

static void reply(job_t *j, int status, const char *failed_step, const char *output) {
  kite_ev_bootstrap_done_t d = {.pool = j->pool, .node = j->node, .rank = j->rank,
                                .status = status, .failed_step = failed_step,
                                .output = output};
  kite_reply_bootstrap_done(j->r->bus, j->corr, &d);
  job_free(j);
}

static void on_exec_done(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  job_t *j = data;
  (void)bus;
  j->exec_corr = 0;
  const kite_ev_task_finished_t *f = kite_ev_as_task_finished(ev);
  if (status != 0 || f == NULL) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    reply(j, status ? status : KITE_EINTERNAL, "(running the script)",
          e && e->message ? e->message : kite_strerror(status));
    return;
  }
  if (j->line_len) {
    tail_add(j, j->line, j->line_len);
    j->line_len = 0;
  }
  if (f->error == 0 && f->exit_status == 0 && f->signal == NULL) {
    reply(j, 0, NULL, NULL);
    return;
  }
  const char *name = j->step_name ? j->step_name : "(before the first step)";
  char *out = NULL;
  if (f->error != 0)
    out = kite__sprintf("%s%s%s", j->tail ? j->tail : "", j->tail_len ? "\n" : "",
                        f->message ? f->message : kite_strerror(f->error));
  else if (f->signal)
    out = kite__sprintf("%skilled by signal %s", j->tail ? j->tail : "", f->signal);
  else
    out = kite__sprintf("%s(exit status %d)", j->tail ? j->tail : "", f->exit_status);
  reply(j, f->error ? f->error : KITE_EBOOTSTRAP, name, out ? out : "");
  free(out);
}

static void on_uploaded(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  job_t *j = data;
  j->up_corr = 0;
  const kite_ev_transfer_done_t *t = kite_ev_as_transfer_done(ev);
  if (status != 0 || t == NULL || t->error != 0) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    const char *why = t && t->message ? t->message
                      : e && e->message ? e->message
                                        : kite_strerror(status ? status : t ? t->error : 0);
    char *msg = kite__sprintf("cannot write the bootstrap script to the node: %s", why);
    kite_bus_reply_error(bus, j->corr, status ? status : t ? t->error : KITE_EINTERNAL, msg);
    free(msg);
    job_free(j);
    return;
  }
  char env[48];
  snprintf(env, sizeof(env), "KITE_NODE_RANK=%u", j->rank);
  int rc = kite_on_task_output(bus, j->task, on_output, j, &j->out_sub);
  kite_ev_ssh_exec_t x = {.pool = j->pool, .node = j->node, .task = j->task, .rank = j->rank,
                          .attempt = 1, .cmd = "exec /bin/sh ./" KITE_BOOTSTRAP_SCRIPT,
                          .env = env, .timeout_ms = (int64_t)j->r->timeout_ms};
  if (rc == 0)
    rc = kite_request_ssh_exec(bus, &x, 0, on_exec_done, j, &j->exec_corr);
  if (rc != 0) {
    kite_bus_reply_error(bus, j->corr, rc, "cannot run the bootstrap script");
    job_free(j);
  }
}

static void on_bootstrap(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_bootstrap_t *p,
                         void *data) {
  runner_t *r = data;
  if (p->script == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL, "bootstrap request without a script");
    return;
  }
  job_t *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, NULL);
    return;
  }
  j->r = r;
  j->corr = ev->corr;
  j->pool = p->pool;
  j->node = p->node;
  j->rank = p->rank;
  j->task = kite__next_id();
  j->next = r->jobs;
  if (r->jobs)
    r->jobs->prev = j;
  r->jobs = j;
  kite_ev_ssh_upload_t u = {.node = p->node, .task = kite__next_id(),
                            .remote = KITE_BOOTSTRAP_SCRIPT, .mode = 0700,
                            .content = {p->script, strlen(p->script)}};
  int rc = kite_request_ssh_upload(bus, &u, 0, on_uploaded, j, &j->up_corr);
  if (rc != 0) {
    kite_bus_reply_error(bus, ev->corr, rc, "cannot write the bootstrap script to the node");
    job_free(j);
  }
}

static int runner_start(kite_component_t *c, kite_runtime_t *rt) {
  runner_t *r = container_of(c, runner_t, comp);
  r->rt = rt;
  r->bus = kite_runtime_bus(rt);
  return kite_respond_bootstrap(r->bus, KITE_KEY_ANY, on_bootstrap, r, &r->sub);
}

static void runner_stop(kite_component_t *c, kite_component_stopped_fn done) {
  runner_t *r = container_of(c, runner_t, comp);
  kite_bus_unsubscribe(r->bus, r->sub);
  if (r->jobs == NULL) {
    done(c);
    free(r);
    return;
  }
  /* Their requests are canceled; each reply callback answers and frees its job. */
  r->stopped = done;
  for (job_t *j = r->jobs; j; j = j->next) {
    if (j->up_corr)
      kite_bus_cancel(r->bus, j->up_corr);
    if (j->exec_corr)
      kite_bus_cancel(r->bus, j->exec_corr);
  }
}

int kite_bootstrap_runner_new(kite_runtime_t *rt, const kite_bootstrap_runner_options_t *opts) {
  if (rt == NULL)
    return KITE_EINVAL;
  runner_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return KITE_ENOMEM;
  r->timeout_ms = opts ? opts->timeout_ms : 0;
  r->comp.name = "bootstrap";
  r->comp.tier = KITE_TIER_TRANSPORT;
  r->comp.start = runner_start;
  r->comp.stop = runner_stop;
  int rc = kite_runtime_add(rt, &r->comp);
  if (rc != 0)
    free(r);
  return rc;
}
