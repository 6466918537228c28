/* The bootstrap runner: the component that answers `bootstrap` requests (any node).
 *
 * For each request (a job):
 *   ssh_upload  the script to .kite/bootstrap.sh (content, mode 0700)  → transfer_done
 *   subscribe   task_output of a fresh task id, then ssh_exec the script → task_finished
 *   as output arrives: the progress parser (progress.c) finds the markers → bootstrap_progress
 *   at the exit: reply bootstrap_done{status, failed_step, output}
 * status is 0, KITE_EBOOTSTRAP (the script failed: failed_step is the step that was running,
 * output its output), or the transport's error (KITE_ETIMEDOUT, KITE_ECONNLOST…). A failed
 * upload is answered with a reply error. Completion is the exit the transport reports; nothing
 * here waits, sleeps or polls.
 *
 * Every request is answered exactly once. At stop the responder goes away, every pending
 * request is answered KITE_ECANCELED at once, a running script is canceled on the node
 * (ssh_cancel, which kills its process group), and the component reports stopped when the
 * replies of its own requests have come back, so nothing it owns is touched after. */

#include <stdio.h>

#include "bootstrap_impl.h"
#include "kite/bootstrap.h"
#include "kite_impl.h"

typedef struct runner runner_t;

typedef struct job {
  runner_t *r;
  uint64_t corr; /* the bootstrap request */
  bool answered;
  uint64_t pool, node, task;
  uint32_t rank;
  uint64_t started_ms;
  uint64_t timeout_ms;         /* the request's, else the runner's; 0: none */
  uint64_t up_corr, exec_corr; /* our own requests while they are pending */
  kite_sub_t out_sub;
  kite__boot_progress_t progress;
  struct job *prev, *next;
} job_t;

struct runner {
  kite_component_t comp;
  kite_bus_t *bus;
  uint64_t timeout_ms;
  kite_sub_t sub;
  job_t *jobs;
  kite_component_stopped_fn stopped; /* set while stopping */
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
  kite__boot_progress_free(&j->progress);
  free(j);
  if (r->stopped && r->jobs == NULL) {
    kite_component_stopped_fn done = r->stopped;
    r->stopped = NULL;
    done(&r->comp);
    free(r);
  }
}

/* Answers the job's request with an error and frees the job. */
static void fail_job(job_t *j, int code, const char *message) {
  if (!j->answered)
    kite_bus_reply_error(j->r->bus, j->corr, code, message);
  j->answered = true;
  job_free(j);
}

static void finish_job(job_t *j, int status, const char *failed_step, const char *output) {
  if (!j->answered) {
    kite_ev_bootstrap_done_t d = {.pool = j->pool,
                                  .node = j->node,
                                  .rank = j->rank,
                                  .status = status,
                                  .failed_step = failed_step,
                                  .output = output};
    kite_reply_bootstrap_done(j->r->bus, j->corr, &d);
  }
  j->answered = true;
  job_free(j);
}

static void on_step(void *data, unsigned step, unsigned total, const char *name) {
  job_t *j = data;
  kite_ev_bootstrap_progress_t p = {.pool = j->pool,
                                    .node = j->node,
                                    .rank = j->rank,
                                    .step = step,
                                    .total = total,
                                    .name = name};
  kite_emit_bootstrap_progress(j->r->bus, &p);
}

static void on_output(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_output_t *p,
                      void *data) {
  job_t *j = data;
  (void)bus;
  (void)ev;
  kite__boot_progress_feed(&j->progress, (int)p->stream, p->data.ptr, p->data.len);
}

static void on_exec_done(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  job_t *j = data;
  (void)bus;
  j->exec_corr = 0;
  kite__boot_progress_finish(&j->progress);
  const kite_ev_task_finished_t *f = kite_ev_as_task_finished(ev);
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  int code = status != 0 ? status : f == NULL ? KITE_EINTERNAL : f->error;
  if (code == 0 && f->exit_status == 0 && f->signal == NULL) {
    finish_job(j, 0, NULL, NULL);
    return;
  }
  const char *step = j->progress.name ? j->progress.name : "(before the first step)";
  char *tail = kite__boot_progress_output(&j->progress);
  const char *t = tail ? tail : "";
  const char *sep = *t && t[strlen(t) - 1] != '\n' ? "\n" : "";
  char *out;
  if (code != 0) {
    const char *why = f && f->message ? f->message : e && e->message ? e->message : NULL;
    out = kite__sprintf("%s%s%s", t, sep, why ? why : kite_strerror(code));
  } else if (f->signal) {
    out = kite__sprintf("%s%s(killed by signal %s)", t, sep, f->signal);
  } else {
    out = kite__sprintf("%s%s(exit status %d)", t, sep, f->exit_status);
  }
  finish_job(j, code ? code : KITE_EBOOTSTRAP, step, out ? out : t);
  free(out);
  free(tail);
}

static void on_uploaded(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  job_t *j = data;
  j->up_corr = 0;
  if (j->answered) {
    job_free(j);
    return;
  }
  const kite_ev_transfer_done_t *t = kite_ev_as_transfer_done(ev);
  int code = status != 0 ? status : t == NULL ? KITE_EINTERNAL : t->error;
  if (code != 0) {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    const char *why = t && t->message ? t->message : e && e->message ? e->message : NULL;
    char *msg = kite__sprintf("cannot write the bootstrap script to the node: %s",
                              why ? why : kite_strerror(code));
    fail_job(j, code, msg ? msg : "cannot write the bootstrap script to the node");
    free(msg);
    return;
  }
  /* What is left of the job's time budget goes to the script. */
  int64_t timeout = 0;
  if (j->timeout_ms) {
    uint64_t spent = kite__wall_ms() - j->started_ms;
    timeout = spent < j->timeout_ms ? (int64_t)(j->timeout_ms - spent) : 1;
  }
  char env[48];
  snprintf(env, sizeof(env), "KITE_NODE_RANK=%u", j->rank);
  /* Subscribed before the exec is sent: no output can come before. */
  int rc = kite_on_task_output(bus, j->task, on_output, j, &j->out_sub);
  kite_ev_ssh_exec_t x = {.pool = j->pool,
                          .node = j->node,
                          .task = j->task,
                          .rank = j->rank,
                          .attempt = 1,
                          .cmd = "exec /bin/sh ./" KITE_BOOTSTRAP_SCRIPT,
                          .env = env,
                          .timeout_ms = timeout};
  if (rc == 0)
    rc = kite_request_ssh_exec(bus, &x, 0, on_exec_done, j, &j->exec_corr);
  if (rc != 0)
    fail_job(j, rc, "cannot run the bootstrap script");
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
  j->started_ms = kite__wall_ms();
  j->timeout_ms = p->timeout_ms > 0 ? (uint64_t)p->timeout_ms : r->timeout_ms;
  kite__boot_progress_init(&j->progress, on_step, j);
  j->next = r->jobs;
  if (r->jobs)
    r->jobs->prev = j;
  r->jobs = j;
  kite_ev_ssh_upload_t u = {.node = p->node,
                            .task = kite__next_id(),
                            .remote = KITE_BOOTSTRAP_SCRIPT,
                            .mode = 0700,
                            .content = {p->script, strlen(p->script)}};
  int rc = kite_request_ssh_upload(bus, &u, j->timeout_ms, on_uploaded, j, &j->up_corr);
  if (rc != 0)
    fail_job(j, rc, "cannot write the bootstrap script to the node");
}

static int runner_start(kite_component_t *c, kite_runtime_t *rt) {
  runner_t *r = container_of(c, runner_t, comp);
  r->bus = kite_runtime_bus(rt);
  return kite_respond_bootstrap(r->bus, KITE_KEY_ANY, on_bootstrap, r, &r->sub);
}

static void on_cancel_sent(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  /* Best effort: the transport may be stopping too, and then it ends the script itself. */
  (void)bus;
  (void)status;
  (void)ev;
  (void)data;
}

static void runner_stop(kite_component_t *c, kite_component_stopped_fn done) {
  runner_t *r = container_of(c, runner_t, comp);
  kite_bus_unsubscribe(r->bus, r->sub);
  if (r->jobs == NULL) {
    done(c);
    free(r);
    return;
  }
  /* Each job is answered now; it is freed when the reply to its own pending request (canceled
   * here, so it comes on a later turn of the loop) runs. */
  r->stopped = done;
  for (job_t *j = r->jobs; j; j = j->next) {
    if (!j->answered)
      kite_bus_reply_error(r->bus, j->corr, KITE_ECANCELED, "the bootstrap runner stopped");
    j->answered = true;
    if (j->exec_corr) {
      kite_ev_ssh_cancel_t x = {.node = j->node, .task = j->task};
      kite_request_ssh_cancel(r->bus, &x, 0, on_cancel_sent, NULL, NULL);
      kite_bus_cancel(r->bus, j->exec_corr);
    }
    if (j->up_corr)
      kite_bus_cancel(r->bus, j->up_corr);
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
