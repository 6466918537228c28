/* Liveness on an existing session: a channel opened and closed again. The server has to read
 * and answer two requests, so a hung or dead peer is found, and no process starts on the node
 * (an exec would fork a shell there for every check). */

#include "transport_impl.h"

enum { G_QUEUED, G_OPENING, G_CLOSING, G_FREEING };

typedef struct ping {
  ssh_op_t op;
  int phase;
  LIBSSH2_CHANNEL *ch;
  kite_ssh_ping_cb cb;
  void *data;
  uv_timer_t *timer;
  bool timed_out;
} ping_t;

static void on_timer_closed(uv_handle_t *h) {
  free(h);
}

static void ping_finish(ping_t *p, int status) {
  if (p->timer) {
    p->timer->data = NULL;
    uv_close((uv_handle_t *)p->timer, on_timer_closed);
  }
  if (p->cb)
    p->cb(p->op.s, status, p->data);
  free(p);
}

static void ping_fail(ssh_op_t *op, int error, const char *message) {
  (void)message;
  ping_t *p = container_of(op, ping_t, op);
  ping_finish(p, p->timed_out ? KITE_ETIMEDOUT : error);
}

static int done_now(ping_t *p, int status) {
  kite__ssh_remove_op(p->op.s, &p->op);
  ping_finish(p, p->timed_out ? KITE_ETIMEDOUT : status);
  return 1;
}

static int ping_step(ssh_op_t *op) {
  ping_t *p = container_of(op, ping_t, op);
  kite_ssh_t *s = op->s;
  int rc;
  if (p->phase == G_QUEUED) {
    if (p->timed_out)
      return done_now(p, KITE_ETIMEDOUT);
    if (!kite__ssh_take_slot(s, op))
      return 0;
    s->opening = true;
    p->phase = G_OPENING;
  }
  if (p->phase == G_OPENING) {
    rc = kite__ssh_open_channel(s, op, &p->ch);
    if (rc == 0)
      return 0;
    if (rc == KITE_ESSH)
      return done_now(p, KITE_ESSH);
    if (rc < 0)
      return rc;
    p->phase = G_CLOSING;
  }
  if (p->phase == G_CLOSING) {
    rc = libssh2_channel_close(p->ch);
    if (rc == 0 && !p->timed_out)
      rc = libssh2_channel_wait_closed(p->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return 0;
    if (rc != 0 && kite__ssh_fatal(rc))
      return rc;
    p->phase = G_FREEING;
  }
  rc = libssh2_channel_free(p->ch);
  if (rc == LIBSSH2_ERROR_EAGAIN)
    return 0;
  p->ch = NULL;
  return done_now(p, 0);
}

static void on_timeout(uv_timer_t *t) {
  ping_t *p = t->data;
  if (p == NULL)
    return;
  /* The server did not answer in time: say so now. The op itself finishes when the session
   * lets it (libssh2 cannot abandon a channel open half-way), or dies with the session. */
  p->timed_out = true;
  kite_ssh_ping_cb cb = p->cb;
  p->cb = NULL;
  if (cb)
    cb(p->op.s, KITE_ETIMEDOUT, p->data);
  kite__ssh_pump(p->op.s);
}

int kite_ssh_ping(kite_ssh_t *s, uint64_t timeout_ms, kite_ssh_ping_cb cb, void *data) {
  if (s == NULL)
    return KITE_EINVAL;
  if (s->closing || s->state != SSH_READY)
    return s->state == SSH_DEAD ? KITE_ECONNLOST : KITE_ESTATE;
  ping_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return KITE_ENOMEM;
  p->cb = cb;
  p->data = data;
  p->op.step = ping_step;
  p->op.fail = ping_fail;
  if (timeout_ms) {
    p->timer = malloc(sizeof(*p->timer));
    if (p->timer == NULL) {
      free(p);
      return KITE_ENOMEM;
    }
    uv_timer_init(s->loop, p->timer);
    p->timer->data = p;
    uv_timer_start(p->timer, on_timeout, timeout_ms, 0);
  }
  kite__ssh_add_op(s, &p->op);
  return 0;
}
