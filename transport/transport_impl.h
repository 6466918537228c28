#ifndef KITE_TRANSPORT_IMPL_H
#define KITE_TRANSPORT_IMPL_H

/* Internals shared by the files of transport/: the session (session.c), its exec channels
 * (exec.c), SFTP transfers (sftp.c), host key checks (hostkey.c) and the component
 * (component.c). Never installed. */

#include <libssh2.h>
#include <libssh2_sftp.h>

#include "kite/transport.h"
#include "kite_impl.h"

typedef enum ssh_state {
  SSH_RESOLVING,
  SSH_CONNECTING, /* TCP connect in progress, or waiting to retry */
  SSH_HANDSHAKE,
  SSH_AUTH,
  SSH_READY,
  SSH_DEAD, /* failed or lost; only close remains */
} ssh_state_t;

/* An operation driven by the session's pump: an exec channel or a transfer. step() advances
 * it as far as it can without blocking and returns 0 (go on later), 1 (finished: remove it),
 * or a libssh2 error that is the session's (the socket died). fail() completes it with an
 * error without touching libssh2 (used when the session is dead). */
typedef struct ssh_op ssh_op_t;
struct ssh_op {
  int (*step)(ssh_op_t *op);
  void (*fail)(ssh_op_t *op, int error, const char *message);
  ssh_op_t *prev, *next;
  kite_ssh_t *s;
  bool high;     /* a control channel (a kill): opens before queued work */
  bool has_slot; /* holds one of the session's channel slots */
};

struct kite_ssh {
  kite_runtime_t *rt;
  uv_loop_t *loop;
  char *host, *user, *key_path, *host_key, *known_hosts;
  unsigned port;
  kite_hostkey_mode_t mode;
  uint64_t deadline; /* loop ms */
  unsigned keepalive_s;
  unsigned max_channels;

  ssh_state_t state;
  int fd;
  int poll_events;
  uv_poll_t *poll;  /* one per socket; closed with it */
  uv_timer_t timer; /* connect retry backoff, then keepalive */
  uv_idle_t kick;   /* runs the pump on the next loop turn */
  uv_getaddrinfo_t gai;
  bool gai_active;
  struct addrinfo *addrs;
  unsigned attempt;
  LIBSSH2_SESSION *ss;
  LIBSSH2_AGENT *agent; /* while authenticating through ssh-agent */
  struct libssh2_agent_publickey *agent_id;
  char *server_key; /* "TYPE BASE64" */

  ssh_op_t *ops_head, *ops_tail;
  unsigned slots_used;
  bool opening; /* a channel open is in progress (libssh2 allows one at a time) */
  bool pumping;
  bool pump_again;
  uint64_t rx_bytes; /* read from the socket so far */

  LIBSSH2_SFTP *sftp;
  int sftp_state; /* 0 none, 1 starting, 2 ready */
  unsigned sftp_users;

  char errmsg[512];
  kite_ssh_connect_cb connect_cb;
  void *connect_data;
  kite_ssh_lost_cb lost_cb;
  void *lost_data;
  kite_ssh_closed_cb closed_cb;
  void *closed_data;
  bool closing;
  bool finishing_handshake; /* closed, but its key exchange is let to end first */
  bool close_deferred;      /* kite_ssh_close called while pumping */
  char *lost_deferred;      /* kite__ssh_lost called while pumping: the reason */
  int deferred_error;       /* and the error for the connect callback */
  bool idle_data;           /* bytes wait on the socket while no op reads them */
  unsigned handles_open;
};

/* session.c */
void kite__ssh_add_op(kite_ssh_t *s, ssh_op_t *op);
void kite__ssh_remove_op(kite_ssh_t *s, ssh_op_t *op);
/* Runs every op's step on the next loop turn (never inside the caller). */
void kite__ssh_pump(kite_ssh_t *s);
/* Takes a channel slot if one is free and no other open is in progress. */
bool kite__ssh_take_slot(kite_ssh_t *s, ssh_op_t *op);
void kite__ssh_release_slot(kite_ssh_t *s, ssh_op_t *op);
/* Opens a session channel for op, which holds a slot and the session's one open (take_slot,
 * then s->opening): 1 with *ch set, 0 to try again later, KITE_ESSH when the server refused,
 * or a fatal libssh2 error (the connection is gone). */
int kite__ssh_open_channel(kite_ssh_t *s, ssh_op_t *op, LIBSSH2_CHANNEL **ch);
/* Whether a libssh2 error code means the connection itself is gone. */
bool kite__ssh_fatal(int rc);
/* libssh2's last error message for the session ("" if none). */
const char *kite__ssh_lasterr(kite_ssh_t *s);
/* Marks the session lost: every op fails with KITE_ECONNLOST, the lost callback runs. */
void kite__ssh_lost(kite_ssh_t *s, const char *why);
/* Maps a libssh2 error to a kite error code. */
int kite__ssh_err(int rc);
/* The shared SFTP handle, started on demand: returns 1 when ready, 0 while starting, < 0 on
 * error. */
int kite__ssh_sftp(kite_ssh_t *s, LIBSSH2_SFTP **out);

/* hostkey.c: verifies the server's key after the handshake. 0, or an error with s->errmsg set. */
int kite__ssh_verify_hostkey(kite_ssh_t *s);
/* "TYPE BASE64" of the server's key, malloc'd; NULL with *rc KITE_EHOSTKEY (none, or a type kite
 * does not know) or KITE_ENOMEM. */
char *kite__ssh_server_key(LIBSSH2_SESSION *ss, int *rc);

/* exec.c: the remote command line (the KITE_TASK marker, env, then the command) for a
 * script, or for an argv already joined and quoted. */
char *kite__exec_command(const char *script, bool argv, const char *const *env, const char *marker);

#endif
