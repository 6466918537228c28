/* Exec channels: one command per channel, many channels per session (queued behind the
 * session's channel cap and libssh2's one-open-at-a-time rule), output streamed as it
 * arrives, exit status and signal at the end.
 *
 * Stopping a remote command: libssh2 1.10 cannot send a channel signal. Every command runs
 * in its own process group (sshd makes the command's shell a session leader) with a marker
 * in its environment, KITE_TASK=<unique id>, that its children inherit. A cancel or a
 * timeout runs a second, high-priority channel that finds the processes carrying the marker
 * (/proc/PID/environ) and kills their process groups: TERM, then KILL after 3 s. Nothing is
 * added to the command's output and no second shell starts on the hot path. */

#include <assert.h>
#include <stdio.h>
#include <unistd.h>

#include "transport_impl.h"

#define KILL_GRACE_MS 10000 /* after this, give up waiting for a killed command's channel */

enum { X_QUEUED, X_OPENING, X_STARTING, X_RUNNING, X_CLOSING, X_FREEING };

struct kite_exec {
  ssh_op_t op;
  char *command;
  char *stdin_buf;
  size_t stdin_len, stdin_off;
  bool eof_sent;
  kite_exec_output_cb out;
  kite_exec_done_cb done;
  void *data;
  LIBSSH2_CHANNEL *ch;
  int phase;
  bool control; /* a kill: no callbacks */
  bool paused;
  bool held; /* kite_exec_hold */
  bool drained[2];
  char marker[48];   /* KITE_TASK value */
  int reason;        /* KITE_ETIMEDOUT / KITE_ECANCELED once stopping */
  bool kill_pending; /* stop asked before the command was started */
  bool forced;       /* stop waiting for the remote end to close the channel */
  uv_timer_t *timer;
  int exit_status;
  char *signal;
};

static void on_timer_closed(uv_handle_t *h) {
  free(h);
}

static void exec_free(kite_exec_t *x) {
  if (x->timer) {
    x->timer->data = NULL;
    uv_close((uv_handle_t *)x->timer, on_timer_closed);
  }
  free(x->command);
  free(x->stdin_buf);
  free(x->signal);
  free(x);
}

static void complete(kite_exec_t *x, int error, const char *message) {
  if (x->reason) {
    error = x->reason;
    message = x->reason == KITE_ETIMEDOUT ? "the command timed out; its process group was killed"
                                          : "the command was canceled; its process group was "
                                            "killed";
  }
  if (!x->control && x->done)
    x->done(x, error, x->exit_status, x->signal, message, x->data);
  exec_free(x);
}

static void exec_fail(ssh_op_t *op, int error, const char *message) {
  kite_exec_t *x = container_of(op, kite_exec_t, op);
  if (x->reason && error == KITE_ECONNLOST)
    x->reason = 0; /* the connection died first: say so */
  complete(x, error, message);
}

/* ---- the remote command line ------------------------------------------------------------ */

char *kite__exec_command(const char *script, bool argv, const char *const *env,
                         const char *marker) {
  /* The command runs in the shell sshd started — an argv by exec, a script by eval — so no
   * second shell starts (a second /bin/sh costs the node ~0.7 ms per command) and its exit
   * status or signal reaches sshd intact. Needs a POSIX login shell (sh, dash, bash). */
  size_t cap = 64 + strlen(marker) + strlen(script) * 4 + 16;
  for (size_t i = 0; env && env[i]; i++)
    cap += 16 + strlen(env[i]) * 4;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  size_t len = (size_t)sprintf(out, "export KITE_TASK=%s;", marker);
  for (size_t i = 0; env && env[i]; i++) {
    const char *eq = strchr(env[i], '=');
    if (eq == NULL || !kite__shell_name(env[i], (size_t)(eq - env[i]))) {
      free(out);
      return NULL;
    }
    char *q = kite__shell_quote(eq + 1);
    if (q == NULL) {
      free(out);
      return NULL;
    }
    len += (size_t)sprintf(out + len, " export %.*s=%s;", (int)(eq - env[i]), env[i], q);
    free(q);
  }
  if (argv) {
    len += (size_t)sprintf(out + len, " exec %s", script);
  } else {
    char *q = kite__shell_quote(script);
    if (q == NULL) {
      free(out);
      return NULL;
    }
    len += (size_t)sprintf(out + len, " eval %s", q);
    free(q);
  }
  assert(len < cap);
  return out;
}

/* ---- stopping ----------------------------------------------------------------------------- */

static int exec_step(ssh_op_t *op);

static void send_kill(kite_exec_t *x) {
  kite_ssh_t *s = x->op.s;
  kite_exec_t *k = calloc(1, sizeof(*k));
  if (k == NULL)
    return;
  /* Every 0.1 s: find the processes carrying the marker and signal their groups (TERM; KILL
   * from 3 s on). Done when they were seen and are gone, or when none appeared in 2 s (the
   * command ended by itself, or never started). */
  k->command =
      kite__sprintf("T='KITE_TASK=%s'; n=0; seen=\n"
                    "while [ $n -lt 60 ]; do\n"
                    "  found=\n"
                    "  for f in $(grep -lsxzF -- \"$T\" /proc/[0-9]*/environ 2>/dev/null); do\n"
                    "    p=${f#/proc/}; p=${p%%/environ}\n"
                    "    st=$(cat \"/proc/$p/stat\" 2>/dev/null) || continue\n"
                    "    st=${st##*) }; set -- $st\n"
                    "    if [ $n -lt 30 ]; then sig=TERM; else sig=KILL; fi\n"
                    "    kill -$sig -$3 2>/dev/null || kill -$sig $p 2>/dev/null\n"
                    "    found=1; seen=1\n"
                    "  done\n"
                    "  if [ -z \"$found\" ]; then\n"
                    "    if [ -n \"$seen\" ] || [ $n -ge 20 ]; then exit 0; fi\n"
                    "  fi\n"
                    "  n=$((n+1)); sleep 0.1\n"
                    "done\n",
                    x->marker);
  if (k->command == NULL) {
    free(k);
    return;
  }
  k->control = true;
  k->op.step = exec_step;
  k->op.fail = exec_fail;
  k->op.high = true;
  k->eof_sent = false;
  kite__ssh_add_op(s, &k->op);
}

static void on_force(uv_timer_t *t) {
  kite_exec_t *x = t->data;
  if (x == NULL)
    return;
  /* The command did not go away (or never told its pid): stop waiting for it. */
  kite_log(x->op.s->rt, KITE_LOG_WARN, "transport",
           "a stopped command on %s:%u did not exit within %d s; closing its channel",
           x->op.s->host, x->op.s->port, KILL_GRACE_MS / 1000);
  x->forced = true;
  if (x->phase == X_RUNNING)
    x->phase = X_CLOSING;
  kite__ssh_pump(x->op.s);
}

static void stop(kite_exec_t *x, int reason) {
  if (x->reason)
    return;
  x->reason = reason;
  if (x->phase == X_RUNNING || x->phase == X_CLOSING)
    send_kill(x);
  else if (x->phase != X_QUEUED)
    x->kill_pending = true; /* sent once the command is started */
  if (x->phase != X_QUEUED && x->timer)
    uv_timer_start(x->timer, on_force, KILL_GRACE_MS, 0);
  kite__ssh_pump(x->op.s);
}

static void on_timeout(uv_timer_t *t) {
  kite_exec_t *x = t->data;
  if (x == NULL)
    return;
  stop(x, KITE_ETIMEDOUT);
}

int kite_exec_cancel(kite_exec_t *x) {
  if (x == NULL)
    return KITE_EINVAL;
  stop(x, KITE_ECANCELED);
  return 0;
}

void kite_exec_resume(kite_exec_t *x) {
  if (x && x->paused) {
    x->paused = false;
    kite__ssh_pump(x->op.s);
  }
}

void kite_exec_hold(kite_exec_t *x, bool hold) {
  if (x == NULL || x->held == hold)
    return;
  x->held = hold;
  if (!hold)
    kite__ssh_pump(x->op.s);
}

/* ---- the step --------------------------------------------------------------------------- */

/* Reads what is there; returns 0, or a fatal libssh2 error. */
static int read_output(kite_exec_t *x) {
  char buf[32768];
  for (int stream = 0; stream < 2; stream++) {
    while (!x->drained[stream] && !x->paused && !x->held) {
      ssize_t n = libssh2_channel_read_ex(x->ch, stream, buf, sizeof(buf));
      if (n == LIBSSH2_ERROR_EAGAIN)
        break;
      if (n < 0)
        return (int)n;
      if (n == 0) {
        x->drained[stream] = true;
        break;
      }
      if (!x->control && x->out && x->out(x, stream + 1, buf, (size_t)n, x->data) == KITE_EAGAIN)
        x->paused = true;
    }
  }
  return 0;
}

static int finish_now(kite_exec_t *x, int error, const char *message) {
  kite__ssh_remove_op(x->op.s, &x->op);
  complete(x, error, message);
  return 1;
}

static int exec_step(ssh_op_t *op) {
  kite_exec_t *x = container_of(op, kite_exec_t, op);
  kite_ssh_t *s = op->s;
  int rc;
  if (x->phase == X_QUEUED) {
    if (x->reason)
      return finish_now(x, x->reason, NULL);
    if (!kite__ssh_take_slot(s, op))
      return 0;
    s->opening = true;
    x->phase = X_OPENING;
  }
  if (x->phase == X_OPENING) {
    rc = kite__ssh_open_channel(s, op, &x->ch);
    if (rc == 0)
      return 0;
    if (rc == KITE_ESSH) {
      char *msg = kite__sprintf("cannot open a channel on %s:%u: %s", s->host, s->port,
                                kite__ssh_lasterr(s));
      finish_now(x, KITE_ESSH, msg);
      free(msg);
      return 1;
    }
    if (rc < 0)
      return rc;
    x->phase = X_STARTING;
  }
  if (x->phase == X_STARTING) {
    rc =
        libssh2_channel_process_startup(x->ch, "exec", 4, x->command, (unsigned)strlen(x->command));
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return 0;
    if (rc != 0) {
      if (kite__ssh_fatal(rc))
        return rc;
      char *msg = kite__sprintf("%s:%u refused to run the command: %s", s->host, s->port,
                                kite__ssh_lasterr(s));
      x->phase = X_CLOSING;
      x->exit_status = -1;
      if (!x->reason)
        x->reason = 0;
      /* Complete after the channel is freed; keep the message by failing now instead. */
      libssh2_channel_free(x->ch);
      x->ch = NULL;
      finish_now(x, KITE_ESSH, msg);
      free(msg);
      return 1;
    }
    x->phase = X_RUNNING;
    if (x->kill_pending) {
      x->kill_pending = false;
      send_kill(x);
    }
  }
  if (x->phase == X_RUNNING) {
    while (!x->eof_sent && x->stdin_off < x->stdin_len) {
      ssize_t n =
          libssh2_channel_write(x->ch, x->stdin_buf + x->stdin_off, x->stdin_len - x->stdin_off);
      if (n == LIBSSH2_ERROR_EAGAIN)
        break;
      if (n < 0) {
        if (kite__ssh_fatal((int)n))
          return (int)n;
        x->stdin_off = x->stdin_len; /* the command closed its stdin; go on reading */
        break;
      }
      x->stdin_off += (size_t)n;
    }
    if (!x->eof_sent && x->stdin_off >= x->stdin_len) {
      rc = libssh2_channel_send_eof(x->ch);
      if (rc == 0 || (rc != LIBSSH2_ERROR_EAGAIN && !kite__ssh_fatal(rc)))
        x->eof_sent = true;
      else if (kite__ssh_fatal(rc))
        return rc;
    }
    rc = read_output(x);
    if (rc < 0) {
      if (kite__ssh_fatal(rc))
        return rc;
      x->drained[0] = x->drained[1] = true;
    }
    if (!(x->drained[0] && x->drained[1]))
      return 0;
    x->phase = X_CLOSING;
  }
  if (x->phase == X_CLOSING) {
    rc = libssh2_channel_close(x->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return 0;
    if (rc == 0 && !x->forced) {
      rc = libssh2_channel_wait_closed(x->ch);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
    }
    if (rc != 0 && kite__ssh_fatal(rc))
      return rc;
    x->exit_status = libssh2_channel_get_exit_status(x->ch);
    char *sig = NULL;
    size_t siglen = 0;
    if (libssh2_channel_get_exit_signal(x->ch, &sig, &siglen, NULL, NULL, NULL, NULL) == 0 && sig &&
        siglen) {
      x->signal = kite__sprintf("%.*s", (int)siglen, sig);
    }
    if (sig)
      libssh2_free(s->ss, sig);
    x->phase = X_FREEING;
  }
  if (x->phase == X_FREEING) {
    rc = libssh2_channel_free(x->ch);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return 0;
    x->ch = NULL;
    return finish_now(x, 0, NULL);
  }
  return 0;
}

int kite_ssh_exec(kite_ssh_t *s, const kite_exec_opts_t *o, kite_exec_output_cb out,
                  kite_exec_done_cb done, void *data, kite_exec_t **xout) {
  if (s == NULL || o == NULL || (o->argv == NULL) == (o->shell == NULL) ||
      (o->argv && o->argv[0] == NULL))
    return KITE_EINVAL;
  if (s->closing || s->state != SSH_READY)
    return s->state == SSH_DEAD ? KITE_ECONNLOST : KITE_ESTATE;
  kite_exec_t *x = calloc(1, sizeof(*x));
  if (x == NULL)
    return KITE_ENOMEM;
  char *script = o->shell ? kite__strdup(o->shell) : kite__shell_join(o->argv);
  snprintf(x->marker, sizeof(x->marker), "%x-%llx-%llx", (unsigned)getpid(),
           (unsigned long long)kite__wall_ms(), (unsigned long long)kite__next_id());
  x->command = script ? kite__exec_command(script, o->argv != NULL, o->env, x->marker) : NULL;
  free(script);
  if (x->command == NULL) {
    free(x);
    return o->env ? KITE_EINVAL : KITE_ENOMEM;
  }
  if (o->stdin_data && o->stdin_len) {
    x->stdin_buf = malloc(o->stdin_len);
    if (x->stdin_buf == NULL) {
      exec_free(x);
      return KITE_ENOMEM;
    }
    memcpy(x->stdin_buf, o->stdin_data, o->stdin_len);
    x->stdin_len = o->stdin_len;
  }
  x->timer = malloc(sizeof(*x->timer));
  if (x->timer == NULL) {
    exec_free(x);
    return KITE_ENOMEM;
  }
  uv_timer_init(s->loop, x->timer);
  x->timer->data = x;
  if (o->timeout_ms)
    uv_timer_start(x->timer, on_timeout, o->timeout_ms, 0);
  x->out = out;
  x->done = done;
  x->data = data;
  x->op.step = exec_step;
  x->op.fail = exec_fail;
  if (xout)
    *xout = x;
  kite__ssh_add_op(s, &x->op);
  return 0;
}
