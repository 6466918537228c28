/* An SSH session on the loop: resolve, connect (retrying while a fresh node's sshd is not up
 * yet), handshake, host key check, authentication, keepalive; then a pump that drives every
 * operation (exec channels, transfers) as far as it can without blocking.
 *
 * libssh2 runs non-blocking. The socket is watched by one uv_poll_t whose events follow
 * libssh2_session_block_directions(); when the session is READY it is always watched for
 * reading too, so a peer that goes away is noticed even between commands. */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transport_impl.h"

#define DEFAULT_CONNECT_MS 30000
#define DEFAULT_KEEPALIVE_S 15
#define DEFAULT_CHANNELS 10
#define RETRY_FIRST_MS 20
#define RETRY_MAX_MS 500

static uv_once_t lib_once = UV_ONCE_INIT;
static int lib_rc;
static void lib_init(void) {
  lib_rc = libssh2_init(0);
}

static void pump_now(kite_ssh_t *s);
static void retry_or_fail(kite_ssh_t *s, const char *why);
static void update_poll(kite_ssh_t *s);
static void try_connect(kite_ssh_t *s);
static void maybe_free(kite_ssh_t *s);
static void finish_close(kite_ssh_t *s);
static void on_poll(uv_poll_t *p, int status, int events);

/* ---- errors ---------------------------------------------------------------------------- */

bool kite__ssh_fatal(int rc) {
  switch (rc) {
  case LIBSSH2_ERROR_SOCKET_NONE:
  case LIBSSH2_ERROR_BANNER_RECV:
  case LIBSSH2_ERROR_BANNER_SEND:
  case LIBSSH2_ERROR_INVALID_MAC:
  case LIBSSH2_ERROR_KEX_FAILURE:
  case LIBSSH2_ERROR_SOCKET_SEND:
  case LIBSSH2_ERROR_KEY_EXCHANGE_FAILURE:
  case LIBSSH2_ERROR_TIMEOUT:
  case LIBSSH2_ERROR_DECRYPT:
  case LIBSSH2_ERROR_SOCKET_DISCONNECT:
  case LIBSSH2_ERROR_PROTO:
  case LIBSSH2_ERROR_SOCKET_TIMEOUT:
  case LIBSSH2_ERROR_SOCKET_RECV:
  case LIBSSH2_ERROR_ENCRYPT:
  case LIBSSH2_ERROR_BAD_SOCKET:
    return true;
  default:
    return false;
  }
}

int kite__ssh_err(int rc) {
  if (kite__ssh_fatal(rc))
    return KITE_ECONNLOST;
  switch (rc) {
  case LIBSSH2_ERROR_ALLOC:
    return KITE_ENOMEM;
  case LIBSSH2_ERROR_AUTHENTICATION_FAILED:
  case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
  case LIBSSH2_ERROR_FILE:
  case LIBSSH2_ERROR_KEYFILE_AUTH_FAILED:
    return KITE_EAUTH;
  case LIBSSH2_ERROR_SFTP_PROTOCOL:
    return KITE_ESFTP;
  default:
    return KITE_ESSH;
  }
}

const char *kite__ssh_lasterr(kite_ssh_t *s) {
  char *msg = NULL;
  if (s->ss == NULL)
    return "";
  libssh2_session_last_error(s->ss, &msg, NULL, 0);
  return msg ? msg : "";
}

const char *kite_ssh_errmsg(const kite_ssh_t *s) {
  return s ? s->errmsg : "";
}
bool kite_ssh_connected(const kite_ssh_t *s) {
  return s && s->state == SSH_READY;
}
const char *kite_ssh_host_key(const kite_ssh_t *s) {
  return s ? s->server_key : NULL;
}

static void set_err(kite_ssh_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(kite_ssh_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
  va_end(ap);
}

/* ---- ops ------------------------------------------------------------------------------- */

void kite__ssh_add_op(kite_ssh_t *s, ssh_op_t *op) {
  op->s = s;
  op->next = NULL;
  op->prev = s->ops_tail;
  if (s->ops_tail)
    s->ops_tail->next = op;
  else
    s->ops_head = op;
  s->ops_tail = op;
  kite__ssh_pump(s);
}

static void on_kick(uv_idle_t *h) {
  kite_ssh_t *s = h->data;
  uv_idle_stop(h);
  pump_now(s);
}

void kite__ssh_remove_op(kite_ssh_t *s, ssh_op_t *op) {
  if (op->prev)
    op->prev->next = op->next;
  else
    s->ops_head = op->next;
  if (op->next)
    op->next->prev = op->prev;
  else
    s->ops_tail = op->prev;
  op->prev = op->next = NULL;
  kite__ssh_release_slot(s, op);
}

bool kite__ssh_take_slot(kite_ssh_t *s, ssh_op_t *op) {
  if (op->has_slot)
    return true;
  if (s->opening || s->slots_used >= s->max_channels)
    return false;
  /* Control channels jump the queue: a waiting ordinary op never blocks a kill. */
  if (!op->high)
    for (ssh_op_t *o = s->ops_head; o && o != op; o = o->next)
      if (o->high && !o->has_slot)
        return false;
  op->has_slot = true;
  s->slots_used++;
  return true;
}

int kite__ssh_open_channel(kite_ssh_t *s, ssh_op_t *op, LIBSSH2_CHANNEL **ch) {
  assert(op->has_slot && s->opening);
  *ch = libssh2_channel_open_session(s->ss);
  if (*ch == NULL) {
    int rc = libssh2_session_last_errno(s->ss);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return 0;
    s->opening = false;
    return kite__ssh_fatal(rc) ? rc : KITE_ESSH;
  }
  s->opening = false;
  kite__ssh_pump(s); /* the next queued open may go */
  return 1;
}

void kite__ssh_release_slot(kite_ssh_t *s, ssh_op_t *op) {
  if (!op->has_slot)
    return;
  op->has_slot = false;
  s->slots_used--;
}

static void fail_all_ops(kite_ssh_t *s, int error, const char *message) {
  ssh_op_t *op;
  while ((op = s->ops_head) != NULL) {
    kite__ssh_remove_op(s, op);
    op->fail(op, error, message);
  }
}

/* ---- close and free -------------------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h) {
  kite_ssh_t *s = h->data;
  if ((void *)h != (void *)&s->timer && (void *)h != (void *)&s->kick)
    free(h);
  s->handles_open--;
  maybe_free(s);
}

static void close_socket(kite_ssh_t *s) {
  if (s->poll) {
    uv_close((uv_handle_t *)s->poll, on_handle_closed);
    s->poll = NULL;
    s->poll_events = 0;
  }
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
  }
}

/* Frees libssh2's state. The socket is shut down first so that nothing libssh2 sends on the
 * way out can wait for the peer: every send fails at once and every free completes. */
static void drop_agent(kite_ssh_t *s);

static void drop_libssh2(kite_ssh_t *s) {
  if (s->ss == NULL)
    return;
  drop_agent(s);
  if (s->state == SSH_READY)
    libssh2_session_disconnect(s->ss, "closed by kite");
  if (s->fd >= 0)
    shutdown(s->fd, SHUT_RDWR);

  if (s->sftp) {
    for (int i = 0; i < 8 && libssh2_sftp_shutdown(s->sftp) == LIBSSH2_ERROR_EAGAIN; i++)
      ;
    s->sftp = NULL;
    s->sftp_state = 0;
  }
  for (int i = 0; i < 8 && libssh2_session_free(s->ss) == LIBSSH2_ERROR_EAGAIN; i++)
    ;
  s->ss = NULL;
}

static void maybe_free(kite_ssh_t *s) {
  if (!s->closing || s->handles_open > 0 || s->pumping)
    return;
  kite_ssh_closed_cb cb = s->closed_cb;
  void *data = s->closed_data;
  if (s->addrs)
    uv_freeaddrinfo(s->addrs);
  free(s->host);
  free(s->user);
  free(s->key_path);
  free(s->host_key);
  free(s->known_hosts);
  free(s->server_key);
  free(s->lost_deferred);
  /* cb gets s as an identity only: it is freed right after. */
  if (cb)
    cb(s, data);
  free(s);
}

static void do_close(kite_ssh_t *s) {
  s->closing = true;
  bool was_connecting = s->state < SSH_READY && s->state != SSH_DEAD;
  fail_all_ops(s, KITE_ECANCELED, "the SSH session was closed");
  if (was_connecting && s->connect_cb) {
    kite_ssh_connect_cb cb = s->connect_cb;
    s->connect_cb = NULL;
    set_err(s, "connection to %s:%u canceled", s->host, s->port);
    cb(s, KITE_ECANCELED, s->errmsg, s->connect_data);
  }
  /* libssh2 1.10 leaks the state of a key exchange that is cut short: a session closed during
   * its handshake lets the handshake end (either way, bounded by the connect deadline) before
   * it is freed. */
  if (s->state == SSH_HANDSHAKE && s->ss && s->poll) {
    s->finishing_handshake = true;
    return;
  }
  finish_close(s);
}

static void finish_close(kite_ssh_t *s) {
  s->finishing_handshake = false;
  drop_libssh2(s);
  s->state = SSH_DEAD;
  close_socket(s);
  if (s->gai_active)
    uv_cancel((uv_req_t *)&s->gai);
  if (!uv_is_closing((uv_handle_t *)&s->timer)) {
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    uv_close((uv_handle_t *)&s->kick, on_handle_closed);
  }
  maybe_free(s);
}

/* A closed session waiting for its handshake to end: step it; done when it is not EAGAIN. */
static void step_closing_handshake(kite_ssh_t *s) {
  int rc = libssh2_session_handshake(s->ss, s->fd);
  if (rc == LIBSSH2_ERROR_EAGAIN) {
    int dirs = libssh2_session_block_directions(s->ss);
    int want = (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND ? UV_WRITABLE : 0) | UV_READABLE;
    if (want != s->poll_events) {
      s->poll_events = want;
      uv_poll_start(s->poll, want, on_poll);
    }
    return;
  }
  finish_close(s);
}

void kite_ssh_close(kite_ssh_t *s, kite_ssh_closed_cb cb, void *data) {
  if (s == NULL)
    return;
  assert(!s->closing && !s->close_deferred);
  s->closed_cb = cb;
  s->closed_data = data;
  if (s->pumping) {
    s->close_deferred = true;
    return;
  }
  do_close(s);
}

void kite_ssh_on_lost(kite_ssh_t *s, kite_ssh_lost_cb cb, void *data) {
  s->lost_cb = cb;
  s->lost_data = data;
}

/* The session is gone: fail what runs, tell the owner. During connect, the connect callback
 * gets the error instead. */
static void lose(kite_ssh_t *s, int error, const char *why) {
  if (s->state == SSH_DEAD || s->closing)
    return;
  bool was_ready = s->state == SSH_READY;
  s->state = SSH_DEAD;
  uv_timer_stop(&s->timer);
  if (s->poll) {
    uv_poll_stop(s->poll);
    s->poll_events = 0;
  }
  if (why != s->errmsg)
    set_err(s, "%s", why);
  fail_all_ops(s, KITE_ECONNLOST, s->errmsg);
  if (!was_ready) {
    kite_ssh_connect_cb cb = s->connect_cb;
    s->connect_cb = NULL;
    if (cb)
      cb(s, error, s->errmsg, s->connect_data);
  } else if (s->lost_cb) {
    s->lost_cb(s, KITE_ECONNLOST, s->errmsg, s->lost_data);
  }
}

void kite__ssh_lost(kite_ssh_t *s, const char *why) {
  if (s->pumping) {
    if (s->lost_deferred == NULL)
      s->lost_deferred = kite__strdup(why);
    return;
  }
  lose(s, KITE_ECONNLOST, why);
}

static void connect_failed(kite_ssh_t *s, int error) {
  if (s->pumping) {
    if (s->lost_deferred == NULL) {
      s->lost_deferred = kite__strdup(s->errmsg);
      s->deferred_error = error;
    }
    return;
  }
  lose(s, error, s->errmsg);
}

/* ---- socket I/O callbacks for libssh2 (no SIGPIPE) ----------------------------------- */

static LIBSSH2_SEND_FUNC(sock_send) {
  (void)abstract;
  ssize_t n = send(socket, buffer, length, flags | MSG_NOSIGNAL);
  return n < 0 ? -errno : n;
}

static LIBSSH2_RECV_FUNC(sock_recv) {
  ssize_t n = recv(socket, buffer, length, flags);
  if (n > 0)
    ((kite_ssh_t *)*abstract)->rx_bytes += (uint64_t)n;
  return n < 0 ? -errno : n;
}

/* ---- the pump -------------------------------------------------------------------------- */

static void on_keepalive(uv_timer_t *t);
static void on_deadline(uv_timer_t *t);

static bool is_rsa_key(const char *path) {
  bool rsa = false;
  char *text = NULL;
  char *pub = kite__sprintf("%s.pub", path);
  if (pub && kite__read_file(pub, &text, NULL) == 0)
    rsa = strncmp(text, "ssh-rsa ", 8) == 0;
  free(text);
  free(pub);
  text = NULL;
  if (!rsa && kite__read_file(path, &text, NULL) == 0)
    rsa = strstr(text, "BEGIN RSA PRIVATE KEY") != NULL;
  free(text);
  return rsa;
}

/* One step of authentication through ssh-agent: each identity in turn, resumed after every
 * EAGAIN from the server. The agent's own socket is local and answers at once. Returns
 * EAGAIN, 0 when authenticated, or an error once every identity was refused. */
static int auth_agent(kite_ssh_t *s) {
  if (s->agent == NULL) {
    s->agent = libssh2_agent_init(s->ss);
    if (s->agent == NULL)
      return LIBSSH2_ERROR_ALLOC;
    if (libssh2_agent_connect(s->agent) != 0 || libssh2_agent_list_identities(s->agent) != 0 ||
        libssh2_agent_get_identity(s->agent, &s->agent_id, NULL) != 0)
      return LIBSSH2_ERROR_FILE; /* no agent, or an agent without keys */
  }
  for (;;) {
    int rc = libssh2_agent_userauth(s->agent, s->user, s->agent_id);
    if (rc == LIBSSH2_ERROR_EAGAIN || rc == 0 || kite__ssh_fatal(rc))
      return rc;
    struct libssh2_agent_publickey *prev = s->agent_id;
    if (libssh2_agent_get_identity(s->agent, &s->agent_id, prev) != 0)
      return LIBSSH2_ERROR_AUTHENTICATION_FAILED;
  }
}

static void drop_agent(kite_ssh_t *s) {
  if (s->agent) {
    libssh2_agent_disconnect(s->agent);
    libssh2_agent_free(s->agent);
    s->agent = NULL;
    s->agent_id = NULL;
  }
}

static void became_ready(kite_ssh_t *s) {
  s->state = SSH_READY;
  uv_timer_stop(&s->timer);
  libssh2_keepalive_config(s->ss, 0, s->keepalive_s);
  uint64_t every = (uint64_t)s->keepalive_s * 1000;
  uv_timer_start(&s->timer, on_keepalive, every, every);
  kite_ssh_connect_cb cb = s->connect_cb;
  s->connect_cb = NULL;
  s->errmsg[0] = '\0';
  if (cb)
    cb(s, 0, NULL, s->connect_data);
}

static void step_connecting(kite_ssh_t *s) {
  if (s->state == SSH_HANDSHAKE) {
    int rc = libssh2_session_handshake(s->ss, s->fd);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return;
    if (rc != 0) {
      set_err(s, "SSH handshake with %s:%u failed: %s", s->host, s->port, kite__ssh_lasterr(s));
      connect_failed(s, KITE_ESSH);
      return;
    }
    s->server_key = kite__ssh_server_key(s->ss, &rc);
    if (rc == KITE_ENOMEM)
      set_err(s, "out of memory reading the host key of %s:%u", s->host, s->port);
    else
      rc = kite__ssh_verify_hostkey(s);
    if (rc != 0) {
      connect_failed(s, rc);
      return;
    }
    s->state = SSH_AUTH;
  }
  if (s->state == SSH_AUTH) {
    int rc;
    if (s->key_path)
      rc = libssh2_userauth_publickey_fromfile_ex(s->ss, s->user, (unsigned)strlen(s->user), NULL,
                                                  s->key_path, NULL);
    else
      rc = auth_agent(s);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return;
    drop_agent(s);
    if (rc != 0) {
      const char *lib = kite__ssh_lasterr(s);
      if (s->key_path && is_rsa_key(s->key_path))
        set_err(s,
                "authentication as %s to %s:%u failed: %s is an RSA key, and this libssh2 "
                "signs RSA keys only with SHA-1 (ssh-rsa), which OpenSSH 8.8 and later refuse; "
                "use an ed25519 or ECDSA key (ssh-keygen -t ed25519)",
                s->user, s->host, s->port, s->key_path);
      else if (s->key_path)
        set_err(s,
                "authentication as %s to %s:%u with key %s failed (%s); check that its public "
                "half is in the host's authorized_keys and the user name is right",
                s->user, s->host, s->port, s->key_path, lib);
      else
        set_err(s,
                "authentication as %s to %s:%u through ssh-agent failed (%s); is SSH_AUTH_SOCK "
                "set and the key added (ssh-add)?",
                s->user, s->host, s->port, lib);
      connect_failed(s, kite__ssh_fatal(rc) ? KITE_ECONNLOST : KITE_EAUTH);
      return;
    }
    became_ready(s);
  }
}

static int step_ops(kite_ssh_t *s) {
  for (ssh_op_t *op = s->ops_head, *next; op; op = next) {
    next = op->next;
    int rc = op->step(op);
    if (rc < 0)
      return rc;
    if (s->close_deferred || s->lost_deferred)
      return 0;
  }
  return 0;
}

static void pump_now(kite_ssh_t *s) {
  if (s->closing || s->state == SSH_DEAD)
    return;
  uv_idle_stop(&s->kick);
  if (s->pumping) {
    s->pump_again = true;
    return;
  }
  s->pumping = true;
  int fatal = 0;
  for (int rounds = 0; rounds < 64; rounds++) {
    s->pump_again = false;
    if (s->state == SSH_HANDSHAKE || s->state == SSH_AUTH)
      step_connecting(s);
    if (s->state == SSH_READY && !s->close_deferred && !s->lost_deferred) {
      /* An op's reads may take packets meant for an op already stepped in this pass (libssh2
       * buffers them); while a pass took bytes off the socket, pass again. */
      uint64_t rx = s->rx_bytes;
      fatal = step_ops(s);
      if (s->rx_bytes != rx && s->ops_head)
        s->pump_again = true;
    }
    if (fatal || !s->pump_again || s->close_deferred || s->lost_deferred)
      break;
  }
  s->pumping = false;
  if (s->close_deferred) {
    s->close_deferred = false;
    do_close(s);
    return;
  }
  if (fatal && !s->lost_deferred) {
    set_err(s, "SSH connection to %s:%u lost: %s", s->host, s->port, kite__ssh_lasterr(s));
    s->lost_deferred = kite__strdup(s->errmsg);
  }
  if (s->lost_deferred) {
    char *why = s->lost_deferred;
    s->lost_deferred = NULL;
    int error = s->deferred_error ? s->deferred_error : KITE_ECONNLOST;
    s->deferred_error = 0;
    set_err(s, "%s", why);
    free(why);
    lose(s, error, s->errmsg);
    return;
  }
  if (s->pump_again) {
    /* More to do than the passes allowed: come back on the next loop turn. */
    s->pump_again = false;
    uv_idle_start(&s->kick, on_kick);
  }
  update_poll(s);
}

void kite__ssh_pump(kite_ssh_t *s) {
  if (s->closing || s->state == SSH_DEAD)
    return;
  if (s->pumping)
    s->pump_again = true;
  else
    uv_idle_start(&s->kick, on_kick);
}

/* Why the socket failed. libuv reports any POLLERR as UV_EBADF; the socket's own error
 * (ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT…) is the cause worth telling. Static text. */
static const char *socket_error(kite_ssh_t *s, int status) {
  int err = 0;
  socklen_t len = sizeof(err);
  if (s->fd >= 0 && getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
    return strerror(err);
  return uv_strerror(status);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  kite_ssh_t *s = p->data;
  if (s->finishing_handshake) {
    if (status < 0)
      finish_close(s);
    else
      step_closing_handshake(s);
    return;
  }
  if (status < 0 && s->state == SSH_CONNECTING) {
    const char *why = socket_error(s, status);
    close_socket(s);
    retry_or_fail(s, why);
    return;
  }
  if (status < 0) {
    set_err(s, "socket to %s:%u failed: %s", s->host, s->port, socket_error(s, status));
    kite__ssh_lost(s, s->errmsg);
    return;
  }
  if (s->state == SSH_CONNECTING) {
    int err = 0;
    socklen_t l = sizeof(err);
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    uv_timer_stop(&s->timer);
    if (err != 0) {
      close_socket(s);
      retry_or_fail(s, strerror(err));
      return;
    }
    s->ss = libssh2_session_init_ex(NULL, NULL, NULL, s);
    if (s->ss == NULL) {
      set_err(s, "out of memory creating the SSH session");
      connect_failed(s, KITE_ENOMEM);
      return;
    }
    libssh2_session_callback_set(s->ss, LIBSSH2_CALLBACK_SEND, (void *)sock_send);
    libssh2_session_callback_set(s->ss, LIBSSH2_CALLBACK_RECV, (void *)sock_recv);
    libssh2_session_set_blocking(s->ss, 0);
    s->state = SSH_HANDSHAKE;
    uint64_t now = uv_now(s->loop);
    uv_timer_start(&s->timer, on_deadline, s->deadline > now ? s->deadline - now : 1, 0);
  }
  if (s->state == SSH_READY && s->ops_head == NULL && (events & UV_READABLE)) {
    /* Nothing reads the socket now: see whether the peer closed it. */
    char c;
    ssize_t n = recv(s->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      set_err(s, "SSH connection to %s:%u lost: %s", s->host, s->port,
              n == 0 ? "closed by the host" : strerror(errno));
      kite__ssh_lost(s, s->errmsg);
      return;
    }
    if (n > 0)
      s->idle_data = true; /* the next op's reads will take it */
  }
  pump_now(s);
}

static void update_poll(kite_ssh_t *s) {
  if (s->poll == NULL || s->closing || s->state == SSH_DEAD)
    return;
  int want = 0;
  if (s->state == SSH_CONNECTING) {
    want = UV_WRITABLE;
  } else {
    int dirs = s->ss ? libssh2_session_block_directions(s->ss) : 0;
    if (dirs & LIBSSH2_SESSION_BLOCK_INBOUND)
      want |= UV_READABLE;
    if (dirs & LIBSSH2_SESSION_BLOCK_OUTBOUND)
      want |= UV_WRITABLE;
    if (s->state == SSH_READY && !(s->ops_head == NULL && s->idle_data))
      want |= UV_READABLE;
    if (s->ops_head)
      s->idle_data = false;
    if (want == 0)
      want = UV_READABLE;
  }
  if (want != s->poll_events) {
    s->poll_events = want;
    uv_poll_start(s->poll, want, on_poll);
  }
}

/* ---- timers ---------------------------------------------------------------------------- */

static void on_keepalive(uv_timer_t *t) {
  kite_ssh_t *s = t->data;
  if (s->state != SSH_READY || s->pumping)
    return;
  int next = 0;
  int rc = libssh2_keepalive_send(s->ss, &next);
  if (rc < 0 && rc != LIBSSH2_ERROR_EAGAIN) {
    set_err(s, "SSH connection to %s:%u lost (keepalive): %s", s->host, s->port,
            kite__ssh_lasterr(s));
    kite__ssh_lost(s, s->errmsg);
    return;
  }
  update_poll(s);
}

static void on_deadline(uv_timer_t *t) {
  kite_ssh_t *s = t->data;
  if (s->finishing_handshake) {
    finish_close(s); /* the peer never finished: free what can be freed */
    return;
  }
  if (s->state == SSH_CONNECTING) {
    /* A connect that neither succeeds nor fails (a filtered port). */
    close_socket(s);
    set_err(s, "cannot connect to %s:%u: no answer before the connect deadline", s->host, s->port);
    connect_failed(s, KITE_ETIMEDOUT);
    return;
  }
  if (s->state == SSH_HANDSHAKE || s->state == SSH_AUTH) {
    set_err(s, "SSH %s with %s:%u did not complete before the connect deadline",
            s->state == SSH_HANDSHAKE ? "handshake" : "authentication", s->host, s->port);
    connect_failed(s, KITE_ETIMEDOUT);
  }
}

static void on_retry(uv_timer_t *t) {
  try_connect(t->data);
}

/* ---- connect --------------------------------------------------------------------------- */

static void retry_or_fail(kite_ssh_t *s, const char *why) {
  uint64_t now = uv_now(s->loop);
  uint64_t wait = RETRY_FIRST_MS << (s->attempt < 5 ? s->attempt : 5);
  if (wait > RETRY_MAX_MS)
    wait = RETRY_MAX_MS;
  s->attempt++;
  if (now + wait >= s->deadline) {
    set_err(s, "cannot connect to %s:%u: %s (tried %u times until the connect deadline)", s->host,
            s->port, why, s->attempt);
    lose(s, KITE_ECONNREFUSED, s->errmsg);
    return;
  }
  uv_timer_start(&s->timer, on_retry, wait, 0);
}

static void try_connect(kite_ssh_t *s) {
  if (s->closing)
    return;
  if (s->errmsg[0] == '\0')
    set_err(s, "connection refused");
  struct addrinfo *ai = s->addrs;
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    set_err(s, "cannot create a socket: %s", strerror(errno));
    lose(s, kite_err_from_uv(-errno), s->errmsg);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  unsigned user_timeout = s->keepalive_s * 3000u;
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
  int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
  if (rc != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    retry_or_fail(s, strerror(e));
    return;
  }
  s->fd = fd;
  s->poll = malloc(sizeof(*s->poll));
  if (s->poll == NULL || uv_poll_init_socket(s->loop, s->poll, fd) != 0) {
    free(s->poll);
    s->poll = NULL;
    close(fd);
    s->fd = -1;
    set_err(s, "cannot watch the socket");
    lose(s, KITE_ENOMEM, s->errmsg);
    return;
  }
  s->poll->data = s;
  s->handles_open++;
  s->state = SSH_CONNECTING;
  s->poll_events = UV_WRITABLE;
  uv_poll_start(s->poll, UV_WRITABLE, on_poll);
  uint64_t now = uv_now(s->loop);
  uv_timer_start(&s->timer, on_deadline, s->deadline > now ? s->deadline - now : 1, 0);
}

/* A refused connect comes back through on_poll with SO_ERROR set; try_connect is re-entered
 * from there via close_socket + retry. This wrapper keeps the retry logic in one place. */
static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  kite_ssh_t *s = req->data;
  s->gai_active = false;
  s->handles_open--;
  if (s->closing) {
    if (res)
      uv_freeaddrinfo(res);
    maybe_free(s);
    return;
  }
  if (status != 0 || res == NULL) {
    set_err(s, "cannot resolve %s: %s", s->host, uv_strerror(status));
    lose(s, KITE_EHOSTUNREACH, s->errmsg);
    return;
  }
  s->addrs = res;
  s->errmsg[0] = '\0';
  try_connect(s);
}

int kite_ssh_connect(kite_runtime_t *rt, const kite_ssh_options_t *o, kite_ssh_connect_cb cb,
                     void *data, kite_ssh_t **out) {
  if (rt == NULL || o == NULL || o->host == NULL || o->user == NULL || out == NULL ||
      o->hostkey_mode < KITE_HOSTKEY_STRICT || o->hostkey_mode > KITE_HOSTKEY_OFF)
    return KITE_EINVAL;
  uv_once(&lib_once, lib_init);
  if (lib_rc != 0)
    return KITE_EINTERNAL;
  kite_ssh_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return KITE_ENOMEM;
  s->rt = rt;
  s->loop = kite_runtime_loop(rt);
  s->fd = -1;
  s->port = o->port ? o->port : 22;
  s->mode = o->hostkey_mode;
  s->keepalive_s = o->keepalive_s ? o->keepalive_s : DEFAULT_KEEPALIVE_S;
  s->max_channels = o->max_channels ? o->max_channels : DEFAULT_CHANNELS;
  s->deadline =
      uv_now(s->loop) + (o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS);
  s->host = kite__strdup(o->host);
  s->user = kite__strdup(o->user);
  s->key_path = kite__strdup(o->key_path);
  s->host_key = kite__strdup(o->host_key);
  s->known_hosts = o->known_hosts ? kite__strdup(o->known_hosts)
                                  : kite__sprintf("%s/known_hosts", kite_runtime_home(rt));
  s->connect_cb = cb;
  s->connect_data = data;
  s->state = SSH_RESOLVING;
  if (s->host == NULL || s->user == NULL || s->known_hosts == NULL ||
      (o->key_path && s->key_path == NULL) || (o->host_key && s->host_key == NULL)) {
    s->closing = true;
    maybe_free(s);
    return KITE_ENOMEM;
  }
  uv_timer_init(s->loop, &s->timer);
  s->timer.data = s;
  uv_idle_init(s->loop, &s->kick);
  s->kick.data = s;
  s->handles_open = 2;
  s->gai.data = s;
  char port[16];
  snprintf(port, sizeof(port), "%u", s->port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = uv_getaddrinfo(s->loop, &s->gai, on_resolved, s->host, port, &hints);
  if (rc != 0) {
    s->connect_cb = NULL;
    do_close(s);
    return kite_err_from_uv(rc);
  }
  s->gai_active = true;
  s->handles_open++;
  *out = s;
  return 0;
}

/* ---- SFTP subsystem, shared by the transfers of one session ---------------------------- */

int kite__ssh_sftp(kite_ssh_t *s, LIBSSH2_SFTP **out) {
  if (s->sftp_state == 2) {
    *out = s->sftp;
    return 1;
  }
  if (s->sftp_state == 0) {
    if (s->opening || s->slots_used >= s->max_channels)
      return 0;
    s->sftp_state = 1;
    s->opening = true;
    s->slots_used++;
  }
  s->sftp = libssh2_sftp_init(s->ss);
  if (s->sftp == NULL) {
    int rc = libssh2_session_last_errno(s->ss);
    if (rc == LIBSSH2_ERROR_EAGAIN)
      return 0;
    s->opening = false;
    s->slots_used--;
    s->sftp_state = 0;
    return rc ? rc : LIBSSH2_ERROR_SFTP_PROTOCOL;
  }
  s->opening = false;
  s->sftp_state = 2;
  *out = s->sftp;
  return 1;
}
