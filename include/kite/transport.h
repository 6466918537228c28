#ifndef KITE_TRANSPORT_H
#define KITE_TRANSPORT_H

/* The SSH transport (DESIGN.md, "Transport").
 *
 * Two faces:
 *  - the plain C API below (kite_ssh_*): a session to one host, exec channels with streamed
 *    output, SFTP. For programs and tests that want SSH without a pool.
 *  - the transport component (kite_transport_new): owns one session per node and answers the
 *    ssh_connect, ssh_exec, ssh_cancel, ssh_upload, ssh_download and ssh_disconnect requests
 *    of the event table, streaming task_output and emitting session_lost.
 *
 * libssh2 runs non-blocking; each session's socket is watched by one uv_poll_t whose events
 * follow libssh2_session_block_directions(). Loop thread only. Callbacks: when a function
 * returns an error its callback is never called; otherwise exactly once (done callbacks). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/runtime.h"

typedef enum kite_hostkey_mode {
  /* The key pinned at launch, else a matching entry of the known_hosts file. */
  KITE_HOSTKEY_STRICT = 0,
  /* Trust on first use: an unknown host's key is recorded in the known_hosts file; a changed
   * key is refused. Pinned keys take precedence and are never written to the file. */
  KITE_HOSTKEY_ACCEPT_NEW = 1,
  /* No verification (logged as a warning). Only when explicitly asked for. */
  KITE_HOSTKEY_OFF = 2,
} kite_hostkey_mode_t;

/* "strict", "accept-new", "off" → mode; -1 for anything else. */
int kite_hostkey_mode_parse(const char *s);
const char *kite_hostkey_mode_name(kite_hostkey_mode_t m);

typedef struct kite_ssh kite_ssh_t;
typedef struct kite_exec kite_exec_t;
typedef struct kite_xfer kite_xfer_t;

typedef struct kite_ssh_options {
  const char *host;        /* name or address */
  unsigned port;           /* 0: 22 */
  const char *user;        /* required */
  const char *key_path;    /* private key file (ed25519, ECDSA); NULL: ssh-agent */
  const char *host_key;    /* pinned key "TYPE BASE64" (several: one per line), or NULL */
  const char *known_hosts; /* NULL: $KITE_HOME/known_hosts */
  kite_hostkey_mode_t hostkey_mode;
  uint64_t connect_timeout_ms; /* deadline for connect retries and handshake; 0: 30 s */
  unsigned keepalive_s;        /* 0: 15; keepalives also detect a dead peer */
  unsigned max_channels;       /* channels open at once; more are queued; 0: 10 */
} kite_ssh_options_t;

typedef void (*kite_ssh_connect_cb)(kite_ssh_t *s, int status, const char *message, void *data);
/* The session died after it was connected (peer gone, keepalive unanswered): every running
 * exec and transfer completes with KITE_ECONNLOST first. */
typedef void (*kite_ssh_lost_cb)(kite_ssh_t *s, int error, const char *message, void *data);
typedef void (*kite_ssh_closed_cb)(kite_ssh_t *s, void *data);

/* Connects, retrying refused connections with backoff until the deadline, verifies the host
 * key and authenticates. cb gets 0 or an error with a message naming host and port. On error
 * the session is still allocated: free it with kite_ssh_close(). */
int kite_ssh_connect(kite_runtime_t *rt, const kite_ssh_options_t *opts, kite_ssh_connect_cb cb,
                     void *data, kite_ssh_t **out);
void kite_ssh_on_lost(kite_ssh_t *s, kite_ssh_lost_cb cb, void *data);
/* Closes the session (cancels what runs: those complete with KITE_ECANCELED first) and frees
 * it after cb (which may be NULL). */
void kite_ssh_close(kite_ssh_t *s, kite_ssh_closed_cb cb, void *data);
bool kite_ssh_connected(const kite_ssh_t *s);
/* The last error's message (libssh2's text kept), or "". */
const char *kite_ssh_errmsg(const kite_ssh_t *s);
/* The host key the server presented, "TYPE BASE64" (after the handshake), or NULL. */
const char *kite_ssh_host_key(const kite_ssh_t *s);

/* ---- exec -------------------------------------------------------------------------------- */

typedef struct kite_exec_opts {
  const char *const *argv; /* quoted by kite; or */
  const char *shell;       /* a shell script for /bin/sh */
  const char *const *env;  /* NULL-terminated NAME=VALUE list exported first, or NULL */
  const void *stdin_data;  /* written to the command's stdin, then EOF; or NULL (EOF at once) */
  size_t stdin_len;
  uint64_t timeout_ms; /* 0: none; on expiry the remote process group is killed */
} kite_exec_opts_t;

/* stream 1 stdout, 2 stderr; binary-safe chunks as they arrive. Return 0 to go on, or
 * KITE_EAGAIN to pause reading this channel until kite_exec_resume(). */
typedef int (*kite_exec_output_cb)(kite_exec_t *x, int stream, const void *buf, size_t len,
                                   void *data);
/* error 0: the command ran to its end; exit_status (or signal, e.g. "KILL", when it died of
 * one). Else KITE_ETIMEDOUT, KITE_ECANCELED, KITE_ECONNLOST… with a message. */
typedef void (*kite_exec_done_cb)(kite_exec_t *x, int error, int exit_status, const char *signal,
                                  const char *message, void *data);

int kite_ssh_exec(kite_ssh_t *s, const kite_exec_opts_t *opts, kite_exec_output_cb out,
                  kite_exec_done_cb done, void *data, kite_exec_t **xout);
/* Stops the remote command (its whole process group) and completes with KITE_ECANCELED. */
int kite_exec_cancel(kite_exec_t *x);
void kite_exec_resume(kite_exec_t *x);
/* hold true: reads no more of the command's output until hold false, whatever the output
 * callback returns (a pause by KITE_EAGAIN and a hold are separate: reading resumes when
 * neither stands). */
void kite_exec_hold(kite_exec_t *x, bool hold);

/* Liveness: opens a channel on the session and closes it again — the server must answer, and
 * nothing starts on the node. cb gets 0, or KITE_ETIMEDOUT / KITE_ECONNLOST / an SSH error. */
typedef void (*kite_ssh_ping_cb)(kite_ssh_t *s, int status, void *data);
int kite_ssh_ping(kite_ssh_t *s, uint64_t timeout_ms, kite_ssh_ping_cb cb, void *data);

/* ---- SFTP -------------------------------------------------------------------------------- */

typedef void (*kite_xfer_progress_cb)(kite_xfer_t *t, uint64_t done, uint64_t total, void *data);
typedef void (*kite_xfer_done_cb)(kite_xfer_t *t, int error, uint64_t bytes, const char *message,
                                  void *data);

/* Copies a local file or directory tree to remote (streamed, constant memory), keeping mode
 * bits (mode >= 0 overrides a single file's mode). Relative remote paths are relative to the
 * login directory. Files are written to a temporary name and renamed into place. */
int kite_ssh_upload(kite_ssh_t *s, const char *local, const char *remote, int mode,
                    kite_xfer_progress_cb progress, kite_xfer_done_cb done, void *data,
                    kite_xfer_t **out);
/* Copies a remote file or tree to local. */
int kite_ssh_download(kite_ssh_t *s, const char *remote, const char *local,
                      kite_xfer_progress_cb progress, kite_xfer_done_cb done, void *data,
                      kite_xfer_t **out);
/* Writes buf to remote atomically (temp + rename) with mode. */
int kite_ssh_write(kite_ssh_t *s, const char *remote, const void *buf, size_t len, int mode,
                   kite_xfer_done_cb done, void *data, kite_xfer_t **out);
int kite_xfer_cancel(kite_xfer_t *t);

/* The keys an OpenSSH known_hosts file records for host:port (plain and hashed names; lines
 * with wildcards, negations, @cert-authority or @revoked are not used), as "TYPE BASE64"
 * lines for kite_ssh_options_t.host_key; malloc'd, or NULL when there are none or the file
 * cannot be read. */
char *kite_known_hosts_keys(const char *path, const char *host, unsigned port);

/* ---- the transport component --------------------------------------------------------------- */

typedef struct kite_transport kite_transport_t;

typedef struct kite_transport_options {
  const char *known_hosts; /* NULL: $KITE_HOME/known_hosts */
  unsigned max_channels;   /* per session; 0: 10 (OpenSSH's MaxSessions default) */
  unsigned keepalive_s;    /* 0: 15 */
} kite_transport_options_t;

/* Adds the transport component ("transport", tier KITE_TIER_TRANSPORT) to rt. opts and out
 * may be NULL. */
int kite_transport_new(kite_runtime_t *rt, const kite_transport_options_t *opts,
                       kite_transport_t **out);

/* ---- kite's key pair (transport/keypair.c) ---------------------------------------------- */

/* Makes sure an ed25519 key pair exists at path (private) and path.pub (public), mode 0600,
 * generating it if missing. Runs ssh-keygen without blocking the loop; cb runs once. */
typedef void (*kite_keypair_cb)(kite_runtime_t *rt, int status, void *data);
int kite_keypair_ensure(kite_runtime_t *rt, const char *path, kite_keypair_cb cb, void *data);

#endif
