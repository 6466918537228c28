/* The local sshd node: one real OpenSSH sshd per node, on its own loopback address.
 *
 * Design notes
 *
 * Owns, per node: an address lock, the node's directory, and one process tree. The tree is
 *
 *   unshare --pid --fork --kill-child --mount [--user ...]   (spawned here; our child, in a
 *                                                            session of its own: setsid)
 *     /bin/sh -c SCRIPT                                       (pid 1 of the new namespace)
 *       sshd -D, the sessions it serves, whatever they start
 *
 * Stopping kills the namespace's pid 1; the kernel then kills every other process of the
 * namespace and unshare's own wait for its child returns only when all of them are gone. So
 * our uv_process_t exit callback means "nothing of this node runs any more", with no
 * polling. Two more ways down: the script keeps a lifeline (a pipe from us on its stdin) and
 * exits when it reads EOF, so a crashed kite leaves no node behind; and unshare's
 * --kill-child kills pid 1 if unshare itself dies.
 *
 * Readiness. sshd daemonizes before it binds its socket, so "sshd returned" does not mean
 * "listening". It writes its PidFile only after the listen socket is bound; the PidFile is a
 * FIFO in the node's sshd directory, and the script blocks reading it. The script prints
 * "kite-node-pid <host pid>" first (for stop), then "kite-node-ready <sshd pid>" when the
 * FIFO delivers, on a pipe that the loop reads. If sshd exits before writing, the subshell
 * that ran it writes "exit N" into the FIFO instead and the script prints sshd's log.
 *
 * Working directory. sshd starts sessions (and SFTP) in the login user's home from
 * getpwnam(). Inside the node's mount namespace /etc/passwd is replaced (a bind mount) by a
 * copy whose entry for the login user has the node's work directory as its home and /bin/sh
 * as its shell; so `pwd` on login prints kite_local_node_dir() and relative paths land there.
 * When the login user cannot reach that path (running as root with a private $KITE_HOME),
 * the work directory is mounted over the login user's real home instead, and
 * kite_local_node_remote_dir() says which path the node sees.
 *
 * The client key is authorized the way a real machine does it, in .ssh/authorized_keys of
 * the node's directory, because sshd reads that file as the login user. sshd's own files
 * (config, host key, FIFO, log, the passwd copy) live in a separate sshd/ directory beside
 * the work directory, out of the sessions' way.
 *
 * Users. As root, sshd runs as root and sessions log in as the unprivileged "kite-node". As
 * anyone else, a user namespace maps us to ourselves; --keep-caps lets the script make its
 * bind mounts, and sshd starts with those capabilities dropped (setpriv).
 *
 * Addresses. 127.0.1.1 and up (never .0 or .255), one port for all. An address belongs to
 * whoever holds flock(LOCK_EX) on /tmp/kite-local-addrs/<address>; the lock dies with its
 * process. Lock files are never unlinked (unlinking would let two holders lock two different
 * files of one name).
 *
 * Emits nothing on the bus; this is the engine the local provider and the tests use. */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kite/local.h"
#include "kite_impl.h"

#define COMP "local"
#define ADDR_LOCK_DIR "/tmp/kite-local-addrs"
#define SSHD_PATH "/usr/sbin/sshd"
#define DEFAULT_PORT 2222
#define DEFAULT_MAX_SESSIONS 256
#define START_TIMEOUT_MS 60000
#define STOP_GRACE_MS 10000
#define DIAG_MAX 4096

extern char **environ;

typedef enum node_state {
  ST_STARTING = 0,
  ST_RUNNING,
  ST_FAILED, /* start failed; waits for stop */
  ST_DEAD,   /* was running, its processes are gone; waits for stop */
} node_state_t;

struct kite_local_node {
  kite_runtime_t *rt;
  node_state_t state;

  char addr[INET_ADDRSTRLEN];
  uint16_t port;
  int lock_fd;

  char *tag;
  char *root;     /* base/<addr>: everything of the node */
  char *sshd_dir; /* root/sshd: config, keys, FIFO, log (not the user's) */
  char *work_dir; /* root/work: the node's "disk" */
  char *view_dir; /* where the node sees work_dir */
  char *host_key; /* "ssh-ed25519 AAAA..." once running */
  const char *login;

  uv_process_t proc;
  uv_pipe_t out;      /* stdout+stderr of the whole tree */
  uv_pipe_t lifeline; /* our end of the script's stdin */
  uv_timer_t timer;   /* start timeout, then stop grace */
  int handles_open;
  bool proc_exited, out_eof, lifeline_open;
  int64_t exit_status;
  int term_signal;
  int pid1;

  int start_err; /* why the start failed, once known */
  bool start_cb_pending;
  kite_local_node_cb start_cb;
  void *start_data;

  bool stopping, detached;
  bool outlive; /* survives its controller (no lifeline), as a cloud machine does */
  bool killing; /* terminate() ran: the timer now means "kill harder" */
  kite_local_node_cb stop_cb;
  void *stop_data;
  uv_work_t rm_work;
  bool rm_failed; /* written by the threadpool, read after it is done */
  int pidfd;      /* pid 1 of the node, once known; -1 before */

  char line[1024];
  size_t line_len;
  char diag[DIAG_MAX];
  size_t diag_len;
  uint64_t started_ms;
};

/* pid 1 of the node. $1 sshd dir, $2 work dir, $3 the path the node sees it at, $4 a
 * command prefix for sshd (drops capabilities when we are in a user namespace), $5 the login
 * user, $6 "1" when the node outlives its controller (no lifeline). */
static const char node_script[] =
    "exec 3<&0 </dev/null\n"
    "read -r pid rest </proc/self/stat\n"
    "echo \"kite-node-pid $pid\"\n"
    /* The node's own /proc (its host pid is known now): commands on it see only its
     * processes, with the pids they know, as on a machine of its own. */
    "mount -t proc proc /proc || exit 1\n"
    "d=$1 w=$2 v=$3 wrap=$4 login=$5 outlive=$6\n"
    "mount --bind \"$d/passwd\" /etc/passwd || exit 1\n"
    "if [ \"$v\" != \"$w\" ]; then mount --bind \"$w\" \"$v\" || exit 1; fi\n"
    /* The power switch: whoever writes a line into $KITE_POWEROFF turns the node off, as
     * `shutdown -h now` would a machine (the dead-man's switch uses it). */
    "rm -f \"$w/.kite-poweroff\"; mkfifo -m 0600 \"$w/.kite-poweroff\" || exit 1\n"
    "chown \"$login\" \"$w/.kite-poweroff\" 2>/dev/null\n"
    "ssh-keygen -q -t ed25519 -N '' -C kite-node -f \"$d/host_key\" </dev/null || exit 1\n"
    "( exec 3<&-; $wrap " SSHD_PATH " -D -f \"$d/sshd_config\" -E \"$d/sshd.log\"\n"
    "  echo \"exit $?\" >\"$d/ready\" ) &\n"
    "read -r line <\"$d/ready\"\n"
    "case $line in exit*)\n"
    "  cat \"$d/sshd.log\" 2>/dev/null; echo \"kite-node-failed sshd $line\"; exit 1;; esac\n"
    "echo \"kite-node-ready $line\"\n"
    /* The lifeline: EOF on our stdin ends the node (unless it outlives its controller, as a
     * cloud machine does). While waiting, this shell reaps the orphans the sessions leave
     * behind. */
    "if [ \"$outlive\" = 1 ]; then ( exec 3<&-; while :; do sleep 3600; done ) &\n"
    "else cat <&3 >/dev/null & fi\n"
    "life=$!\n"
    "( exec 3<&-; read -r off <\"$w/.kite-poweroff\"; kill \"$life\" ) &\n"
    "exec 3<&-\n"
    "wait \"$life\"\n";

static void node_maybe_finish(kite_local_node_t *n);
static void node_terminate(kite_local_node_t *n);

/* ---- login user ---------------------------------------------------------------------- */

const char *kite_local_login_user(void) {
  static char name[256];
  if (geteuid() == 0)
    return "kite-node";
  if (name[0] == '\0') {
    struct passwd *pw = getpwuid(geteuid());
    const char *s = pw ? pw->pw_name : getenv("USER");
    snprintf(name, sizeof(name), "%s", s && *s ? s : "kite-node");
  }
  return name;
}

/* ---- addresses ------------------------------------------------------------------------- */

static bool addr_bindable(struct in_addr a, uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return true; /* let sshd report the real problem */
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = a};
  bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno != EADDRINUSE;
  close(fd);
  return ok;
}

/* Locks the first free address; fills n->addr and n->lock_fd. */
static int addr_allocate(kite_local_node_t *n) {
  if (mkdir(ADDR_LOCK_DIR, 01777) == 0) {
    chmod(ADDR_LOCK_DIR, 01777); /* umask may have narrowed it; every user shares it */
  } else if (errno != EEXIST) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot create %s: %s", ADDR_LOCK_DIR, strerror(errno));
    return KITE_EIO;
  }
  uint32_t first = (127u << 24) | (1u << 8), last = (127u << 24) | 0xfffffeu;
  for (uint32_t h = first; h <= last; h++) {
    uint32_t low = h & 0xffu;
    if (low == 0 || low == 255)
      continue;
    struct in_addr a = {.s_addr = htonl(h)};
    char name[INET_ADDRSTRLEN], path[sizeof(ADDR_LOCK_DIR) + INET_ADDRSTRLEN + 8];
    inet_ntop(AF_INET, &a, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", ADDR_LOCK_DIR, name);
    /* Read-only is enough for flock, and lets users share files another user created. */
    int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot open address lock %s: %s", path,
               strerror(errno));
      return KITE_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      continue;
    }
    if (!addr_bindable(a, n->port)) {
      kite_log(n->rt, KITE_LOG_WARN, COMP,
               "%s:%u is in use by a process that holds no kite lock; skipping it", name, n->port);
      close(fd);
      continue;
    }
    memcpy(n->addr, name, sizeof(name));
    n->lock_fd = fd;
    return 0;
  }
  kite_log(n->rt, KITE_LOG_ERROR, COMP, "no free loopback address left for a local node");
  return KITE_ECAPACITY;
}

/* ---- files ----------------------------------------------------------------------------- */

/* Can uid/gid search every directory on the way to path? */
static bool path_reachable(const char *path, uid_t uid, gid_t gid) {
  char *p = kite__strdup(path);
  if (p == NULL)
    return false;
  bool ok = true;
  for (char *s = p + strlen(p); ok && s > p;) {
    struct stat st;
    if (stat(p, &st) != 0) {
      ok = false;
      break;
    }
    mode_t need = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
    if ((st.st_mode & need) == 0)
      ok = false;
    while (s > p && *s != '/')
      s--;
    *s = '\0';
  }
  free(p);
  return ok;
}

/* Writes sshd_dir/name. */
static int write_in(kite_local_node_t *n, const char *name, const char *data, size_t len,
                    int mode) {
  char *path = kite__sprintf("%s/%s", n->sshd_dir, name);
  if (path == NULL)
    return KITE_ENOMEM;
  int rc = kite__write_file(path, data, len, mode);
  if (rc != 0)
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot write %s: %s", path, kite_strerror(rc));
  free(path);
  return rc;
}

/* Writes the node's /etc/passwd: the system's, with the login user's home replaced. */
static int write_passwd(kite_local_node_t *n, uid_t uid, gid_t gid) {
  char *sys = NULL;
  size_t len = 0;
  int rc = kite__read_file("/etc/passwd", &sys, &len);
  if (rc != 0) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot read /etc/passwd: %s", kite_strerror(rc));
    return rc;
  }
  size_t cap = len + strlen(n->login) + strlen(n->view_dir) + 64;
  char *out = malloc(cap);
  if (out == NULL) {
    free(sys);
    return KITE_ENOMEM;
  }
  size_t ll = strlen(n->login), o = 0;
  for (char *line = sys; *line;) {
    char *nl = strchr(line, '\n');
    size_t l = nl ? (size_t)(nl - line) : strlen(line);
    bool mine = l > ll && memcmp(line, n->login, ll) == 0 && line[ll] == ':';
    if (!mine && l > 0) {
      memcpy(out + o, line, l);
      o += l;
      out[o++] = '\n';
    }
    line += l + (nl ? 1 : 0);
  }
  o += (size_t)snprintf(out + o, cap - o, "%s:x:%u:%u:kite node:%s:/bin/sh\n", n->login,
                        (unsigned)uid, (unsigned)gid, n->view_dir);
  rc = write_in(n, "passwd", out, o, 0644);
  free(out);
  free(sys);
  return rc;
}

static int write_config(kite_local_node_t *n, const kite_local_node_options_t *opts) {
  unsigned max_sessions = opts->max_sessions ? opts->max_sessions : DEFAULT_MAX_SESSIONS;
  const char *d = n->sshd_dir;
  char *cfg = kite__sprintf("# written by kite for one local node; sshd reads nothing else\n"
                            "ListenAddress %s:%u\n"
                            "AddressFamily inet\n"
                            "HostKey %s/host_key\n"
                            "PidFile %s/ready\n"
                            "AuthorizedKeysFile .ssh/authorized_keys\n"
                            "AllowUsers %s\n"
                            "StrictModes no\n"
                            "UsePAM no\n"
                            "PasswordAuthentication no\n"
                            "KbdInteractiveAuthentication no\n"
                            "PubkeyAuthentication yes\n"
                            "PermitRootLogin no\n"
                            "UseDNS no\n"
                            "MaxSessions %u\n"
                            "MaxStartups 1000:30:2000\n"
                            "MaxAuthTries 6\n"
                            "LoginGraceTime 60\n"
                            "LogLevel ERROR\n"
                            "PrintMotd no\n"
                            "PrintLastLog no\n"
                            "X11Forwarding no\n"
                            "AcceptEnv LANG LC_* KITE_*\n"
                            "SetEnv KITE_NODE_TAG=%s KITE_POWEROFF=%s/.kite-poweroff\n"
                            "Subsystem sftp internal-sftp\n",
                            n->addr, n->port, d, d, n->login, max_sessions, n->tag, n->view_dir);
  if (cfg == NULL)
    return KITE_ENOMEM;
  int rc = write_in(n, "sshd_config", cfg, strlen(cfg), 0644);
  free(cfg);
  return rc;
}

/* The key goes where a real machine keeps it, ~/.ssh/authorized_keys in the node's directory:
 * sshd reads it as the login user, who may not be able to reach the sshd directory. */
static int write_authorized_keys(kite_local_node_t *n, const char *key, uid_t uid, gid_t gid) {
  char *ssh_dir = kite__sprintf("%s/.ssh", n->work_dir);
  char *path = kite__sprintf("%s/.ssh/authorized_keys", n->work_dir);
  size_t kl = strlen(key);
  char *keys = kite__sprintf("%s%s", key, kl && key[kl - 1] == '\n' ? "" : "\n");
  int rc = ssh_dir && path && keys ? 0 : KITE_ENOMEM;
  if (rc == 0 && mkdir(ssh_dir, 0700) != 0)
    rc = KITE_EIO;
  if (rc == 0)
    rc = kite__write_file(path, keys, strlen(keys), 0600);
  if (rc == 0 && geteuid() == 0 && (chown(ssh_dir, uid, gid) != 0 || chown(path, uid, gid) != 0))
    rc = KITE_EIO;
  if (rc != 0)
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot write %s: %s", path ? path : ssh_dir,
             strerror(errno));
  free(keys);
  free(path);
  free(ssh_dir);
  return rc;
}

/* Makes base/<addr>/{sshd,work} and everything sshd needs but its host key. */
static int prepare_dirs(kite_local_node_t *n, const kite_local_node_options_t *opts) {
  bool root = geteuid() == 0;
  uid_t uid = geteuid();
  gid_t gid = getegid();
  const char *login_home = NULL;
  struct passwd *pw = getpwnam(n->login);
  if (root) {
    if (pw == NULL) {
      kite_log(n->rt, KITE_LOG_ERROR, COMP,
               "running as root, local nodes log in as user %s, which does not exist; create "
               "it with: useradd -m -s /bin/sh -p '*' %s",
               n->login, n->login);
      return KITE_ENOENT;
    }
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  if (pw != NULL && pw->pw_uid == uid)
    login_home = pw->pw_dir;
  char *base = opts->base_dir ? kite__strdup(opts->base_dir)
                              : kite__sprintf("%s/local", kite_runtime_home(n->rt));
  if (base == NULL)
    return KITE_ENOMEM;
  n->root = kite__sprintf("%s/%s", base, n->addr);
  n->sshd_dir = kite__sprintf("%s/sshd", n->root ? n->root : "");
  n->work_dir = kite__sprintf("%s/work", n->root ? n->root : "");
  if (n->root == NULL || n->sshd_dir == NULL || n->work_dir == NULL) {
    free(base);
    return KITE_ENOMEM;
  }
  int rc = kite__mkdir_p(base, 0755);
  if (rc != 0)
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot create %s: %s", base, strerror(errno));
  free(base);
  if (rc != 0)
    return rc;
  struct stat st;
  if (lstat(n->root, &st) == 0) {
    /* We hold the address, so whoever made this directory is gone. */
    kite_log(n->rt, KITE_LOG_WARN, COMP, "removing stale node directory %s", n->root);
    if (kite__rm_rf(n->root) != 0) {
      kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot remove stale %s", n->root);
      return KITE_EIO;
    }
  }
  if (mkdir(n->root, 0755) != 0 || mkdir(n->sshd_dir, 0755) != 0 || mkdir(n->work_dir, 0755) != 0) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot create node directory %s: %s", n->root,
             strerror(errno));
    return KITE_EIO;
  }
  /* mkdir obeys the umask; the node's user must be able to enter and write. */
  chmod(n->root, 0755);
  chmod(n->sshd_dir, 0755);
  chmod(n->work_dir, 0755);
  if (root && chown(n->work_dir, uid, gid) != 0) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot give %s to %s: %s", n->work_dir, n->login,
             strerror(errno));
    return KITE_EIO;
  }
  if (path_reachable(n->work_dir, uid, gid)) {
    n->view_dir = kite__strdup(n->work_dir);
  } else if (login_home != NULL && stat(login_home, &st) == 0 && S_ISDIR(st.st_mode)) {
    kite_log(n->rt, KITE_LOG_INFO, COMP,
             "%s cannot reach %s (a directory on the way is private); the node sees its "
             "work directory at %s",
             n->login, n->work_dir, login_home);
    n->view_dir = kite__strdup(login_home);
  } else {
    kite_log(n->rt, KITE_LOG_ERROR, COMP,
             "%s cannot reach %s and has no home directory to mount it on; use a base_dir "
             "every user may enter",
             n->login, n->work_dir);
    return KITE_EINVAL;
  }
  if (n->view_dir == NULL)
    return KITE_ENOMEM;

  char *fifo = kite__sprintf("%s/ready", n->sshd_dir);
  if (fifo == NULL)
    return KITE_ENOMEM;
  rc = mkfifo(fifo, 0600) == 0 ? 0 : KITE_EIO;
  if (rc != 0)
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot make FIFO %s: %s", fifo, strerror(errno));
  free(fifo);
  if (rc == 0)
    rc = write_passwd(n, uid, gid);
  if (rc == 0)
    rc = write_authorized_keys(n, opts->authorized_key, uid, gid);
  if (rc == 0)
    rc = write_config(n, opts);
  if (rc == 0 && root && mkdir("/run/sshd", 0755) != 0 && errno != EEXIST) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "cannot create sshd's /run/sshd: %s", strerror(errno));
    rc = KITE_EIO;
  }
  return rc;
}

/* ---- lifetime -------------------------------------------------------------------------- */

static void node_free(kite_local_node_t *n) {
  if (n->lock_fd >= 0)
    close(n->lock_fd);
  free(n->tag);
  free(n->root);
  free(n->sshd_dir);
  free(n->work_dir);
  free(n->view_dir);
  free(n->host_key);
  free(n);
}

static void rm_work(uv_work_t *w) {
  kite_local_node_t *n = container_of(w, kite_local_node_t, rm_work);
  n->rm_failed = n->root && kite__rm_rf(n->root) != 0;
}

static void rm_done(uv_work_t *w, int status) {
  kite_local_node_t *n = container_of(w, kite_local_node_t, rm_work);
  if (n->rm_failed)
    kite_log(n->rt, KITE_LOG_WARN, COMP, "could not remove all of %s", n->root);
  /* The address is free only once the directory named after it is gone. */
  if (n->lock_fd >= 0) {
    close(n->lock_fd);
    n->lock_fd = -1;
  }
  kite_log(n->rt, KITE_LOG_DEBUG, COMP, "node %s stopped", n->addr);
  if (n->start_cb_pending) {
    n->start_cb_pending = false;
    n->start_cb(n, KITE_ECANCELED, n->start_data);
  }
  if (n->stop_cb)
    n->stop_cb(n, 0, n->stop_data);
  node_free(n);
}

static void queue_removal(kite_local_node_t *n) {
  int err = uv_queue_work(kite_runtime_loop(n->rt), &n->rm_work, rm_work, rm_done);
  if (err != 0) {
    /* Cannot happen with a valid loop and callbacks; remove here rather than leak. */
    kite_log(n->rt, KITE_LOG_WARN, COMP, "uv_queue_work: %s", uv_strerror(err));
    rm_work(&n->rm_work);
    rm_done(&n->rm_work, 0);
  }
}

static void on_handle_closed(uv_handle_t *h) {
  kite_local_node_t *n = h->data;
  if (--n->handles_open > 0)
    return;
  if (n->pidfd >= 0) {
    close(n->pidfd);
    n->pidfd = -1;
  }
  if (n->detached) {
    /* The start failed synchronously: nobody holds this node. */
    if (n->root)
      kite__rm_rf(n->root);
    node_free(n);
  } else if (n->stopping) {
    queue_removal(n);
  }
}

static void close_handle(kite_local_node_t *n, uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, on_handle_closed);
}

static void timer_cb(uv_timer_t *t);

static void arm_timer(kite_local_node_t *n, uint64_t ms) {
  if (!uv_is_closing((uv_handle_t *)&n->timer))
    uv_timer_start(&n->timer, timer_cb, ms, 0);
}

static void kill_pid1(kite_local_node_t *n) {
  if (n->pidfd >= 0 && !n->proc_exited)
    syscall(SYS_pidfd_send_signal, n->pidfd, SIGKILL, NULL, 0);
}

/* Starts taking the node down; the exit callback says when it is gone. */
static void node_terminate(kite_local_node_t *n) {
  if (n->lifeline_open) {
    n->lifeline_open = false;
    close_handle(n, (uv_handle_t *)&n->lifeline);
  }
  if (n->proc_exited)
    return;
  /* Killing pid 1 takes the whole namespace with it. Before its pid is known the script has
   * not reached anything that could hang for long, and the lifeline ends it; the timer is
   * the backstop (killing unshare makes the kernel kill pid 1 through --kill-child). */
  kill_pid1(n);
  n->killing = true;
  arm_timer(n, STOP_GRACE_MS);
}

static void timer_cb(uv_timer_t *t) {
  kite_local_node_t *n = container_of(t, kite_local_node_t, timer);
  if (n->proc_exited)
    return;
  if (n->killing) {
    kite_log(n->rt, KITE_LOG_WARN, COMP, "node %s: still running %d ms after stop; killing it",
             n->addr, STOP_GRACE_MS);
    uv_process_kill(&n->proc, SIGKILL);
    kill_pid1(n);
    return;
  }
  if (n->state == ST_STARTING) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "node %s: sshd did not start within %d ms", n->addr,
             START_TIMEOUT_MS);
    n->start_err = KITE_ETIMEDOUT;
    node_terminate(n);
  }
}

static void diag_add(kite_local_node_t *n, const char *s, size_t len) {
  size_t room = sizeof(n->diag) - 1 - n->diag_len;
  if (len + 1 > room)
    return;
  memcpy(n->diag + n->diag_len, s, len);
  n->diag_len += len;
  n->diag[n->diag_len++] = '\n';
  n->diag[n->diag_len] = '\0';
}

/* "ssh-ed25519 AAAA... comment\n" -> "ssh-ed25519 AAAA..." */
static int read_host_key(kite_local_node_t *n) {
  char *path = kite__sprintf("%s/host_key.pub", n->sshd_dir);
  if (path == NULL)
    return KITE_ENOMEM;
  char *text = NULL;
  int rc = kite__read_file(path, &text, NULL);
  free(path);
  if (rc != 0)
    return rc;
  char type[64], b64[512];
  if (sscanf(text, "%63s %511s", type, b64) != 2) {
    free(text);
    return KITE_EPROTO;
  }
  free(text);
  n->host_key = kite__sprintf("%s %s", type, b64);
  return n->host_key ? 0 : KITE_ENOMEM;
}

static void on_ready(kite_local_node_t *n) {
  if (n->state != ST_STARTING || n->start_err != 0)
    return; /* a start that timed out stays failed even if sshd comes up late */
  int rc = read_host_key(n);
  if (rc != 0) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP, "node %s: cannot read its host key: %s", n->addr,
             kite_strerror(rc));
    n->start_err = rc;
    node_terminate(n);
    return;
  }
  n->state = ST_RUNNING;
  if (!n->killing)
    uv_timer_stop(&n->timer);
  kite_log(n->rt, KITE_LOG_DEBUG, COMP, "node %s:%u listening after %llu ms (dir %s)", n->addr,
           n->port, (unsigned long long)(kite__wall_ms() - n->started_ms), n->work_dir);
  if (n->stopping || !n->start_cb_pending)
    return; /* the cancel is reported when the stop completes */
  n->start_cb_pending = false;
  n->start_cb(n, 0, n->start_data);
}

static void on_line(kite_local_node_t *n, char *line) {
  static const char pid_tag[] = "kite-node-pid ", ready_tag[] = "kite-node-ready ";
  if (strncmp(line, pid_tag, sizeof(pid_tag) - 1) == 0) {
    long pid = strtol(line + sizeof(pid_tag) - 1, NULL, 10);
    if (pid > 1 && n->pidfd < 0 && !n->proc_exited) {
      /* pid 1 just wrote this, so it is alive: a pidfd pins it against pid reuse. */
      n->pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
      n->pid1 = (int)pid;
      if (n->killing)
        kill_pid1(n);
    }
  } else if (strncmp(line, ready_tag, sizeof(ready_tag) - 1) == 0) {
    on_ready(n);
  } else {
    kite_log(n->rt, KITE_LOG_DEBUG, COMP, "node %s: %s", n->addr, line);
    diag_add(n, line, strlen(line));
  }
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char slab[4096];
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_out_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  kite_local_node_t *n = container_of((uv_pipe_t *)s, kite_local_node_t, out);
  for (ssize_t i = 0; i < nread; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      n->line[n->line_len] = '\0';
      on_line(n, n->line);
      n->line_len = 0;
    } else if (n->line_len + 1 < sizeof(n->line)) {
      n->line[n->line_len++] = c;
    }
  }
  if (nread < 0) {
    if (n->line_len > 0) {
      n->line[n->line_len] = '\0';
      on_line(n, n->line);
      n->line_len = 0;
    }
    n->out_eof = true;
    close_handle(n, (uv_handle_t *)s);
    node_maybe_finish(n);
  }
}

static void on_node_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  kite_local_node_t *n = container_of(p, kite_local_node_t, proc);
  n->proc_exited = true;
  n->exit_status = exit_status;
  n->term_signal = term_signal;
  close_handle(n, (uv_handle_t *)p);
  node_maybe_finish(n);
}

/* Runs when both the process has exited and its output has ended. */
static void node_maybe_finish(kite_local_node_t *n) {
  if (!n->proc_exited || !n->out_eof)
    return;
  if (n->lifeline_open) {
    n->lifeline_open = false;
    close_handle(n, (uv_handle_t *)&n->lifeline);
  }
  close_handle(n, (uv_handle_t *)&n->timer);
  if (n->state == ST_STARTING) {
    n->state = ST_FAILED;
    if (n->stopping)
      return;
    if (n->start_err == 0)
      n->start_err = KITE_EIO;
    kite_log(n->rt, KITE_LOG_ERROR, COMP,
             "node %s:%u could not be started (exit %lld, signal %d)%s%s", n->addr, n->port,
             (long long)n->exit_status, n->term_signal, n->diag_len ? ":\n" : "", n->diag);
    n->start_cb_pending = false;
    n->start_cb(n, n->start_err, n->start_data);
  } else if (n->state == ST_RUNNING) {
    n->state = ST_DEAD;
    if (!n->stopping)
      kite_log(n->rt, KITE_LOG_WARN, COMP, "node %s:%u died (exit %lld, signal %d)", n->addr,
               n->port, (long long)n->exit_status, n->term_signal);
  }
}

/* ---- start and stop -------------------------------------------------------------------- */

static bool tag_valid(const char *t) {
  size_t len = strlen(t);
  if (len == 0 || len > 64)
    return false;
  for (const char *p = t; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '-' || *p == '_' || *p == '.' || *p == ':'))
      return false;
  return true;
}

/* environ without any KITE_NODE_TAG, plus ours. The strings are borrowed but tag_entry. */
static char **child_env(const char *tag_entry) {
  size_t count = 0;
  for (char **e = environ; e && *e; e++)
    count++;
  char **env = calloc(count + 2, sizeof(char *));
  if (env == NULL)
    return NULL;
  size_t o = 0;
  for (char **e = environ; e && *e; e++)
    if (strncmp(*e, "KITE_NODE_TAG=", 14) != 0)
      env[o++] = *e;
  env[o++] = (char *)tag_entry;
  env[o] = NULL;
  return env;
}

static int spawn_node(kite_local_node_t *n) {
  uv_loop_t *loop = kite_runtime_loop(n->rt);
  bool root = geteuid() == 0;
  char map_user[40], map_group[40];
  snprintf(map_user, sizeof(map_user), "--map-user=%u", (unsigned)geteuid());
  snprintf(map_group, sizeof(map_group), "--map-group=%u", (unsigned)getegid());
  const char *wrap = root ? "" : "setpriv --inh-caps=-all --ambient-caps=-all";
  const char *args[24];
  size_t a = 0;
  args[a++] = "unshare";
  if (!root) {
    args[a++] = "--user";
    args[a++] = map_user;
    args[a++] = map_group;
    args[a++] = "--keep-caps";
  }
  args[a++] = "--pid";
  args[a++] = "--fork";
  args[a++] = "--kill-child";
  args[a++] = "--mount";
  args[a++] = "/bin/sh";
  args[a++] = "-c";
  args[a++] = node_script;
  args[a++] = "kite-node";
  args[a++] = n->sshd_dir;
  args[a++] = n->work_dir;
  args[a++] = n->view_dir;
  args[a++] = wrap;
  args[a++] = n->login;
  args[a++] = n->outlive ? "1" : "0";
  args[a] = NULL;

  char *tag_entry = kite__sprintf("KITE_NODE_TAG=%s", n->tag);
  char **env = tag_entry ? child_env(tag_entry) : NULL;
  if (env == NULL) {
    free(tag_entry);
    return KITE_ENOMEM;
  }
  /* One pipe for stdout and stderr of the whole tree, so unshare's own errors arrive in
   * order with the script's lines. Both ends are close-on-exec for everyone else. */
  uv_file fds[2];
  int err = uv_pipe(fds, 0, 0);
  if (err != 0) {
    free(env);
    free(tag_entry);
    return kite_err_from_uv(err);
  }
  uv_timer_init(loop, &n->timer);
  uv_pipe_init(loop, &n->out, 0);
  uv_pipe_init(loop, &n->lifeline, 0);
  n->timer.data = n->out.data = n->lifeline.data = n->proc.data = n;
  n->handles_open = 4; /* timer, out, lifeline, proc: all closed through on_handle_closed */

  uv_stdio_container_t stdio[3] = {
      {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&n->lifeline},
      {.flags = UV_INHERIT_FD, .data.fd = fds[1]},
      {.flags = UV_INHERIT_FD, .data.fd = fds[1]}};
  /* UV_PROCESS_DETACHED: the node starts a session of its own (setsid), as a machine of its
   * own would be. A terminal's Ctrl-C signals kite's process group and must not reach the
   * nodes: only kite's shutdown ends them, after cancelling what runs on them. */
  uv_process_options_t po = {.exit_cb = on_node_exit,
                             .flags = UV_PROCESS_DETACHED,
                             .file = "unshare",
                             .args = (char **)args,
                             .env = env,
                             .stdio_count = 3,
                             .stdio = stdio};
  err = uv_spawn(loop, &n->proc, &po);
  free(env);
  free(tag_entry);
  close(fds[1]);
  if (err == 0)
    err = uv_pipe_open(&n->out, fds[0]);
  else
    close(fds[0]);
  if (err == 0)
    err = uv_read_start((uv_stream_t *)&n->out, alloc_cb, on_out_read);
  if (err != 0) {
    kite_log(n->rt, KITE_LOG_ERROR, COMP,
             "cannot start node %s: unshare: %s; util-linux's unshare must be installed", n->addr,
             uv_strerror(err));
    if (uv_is_active((uv_handle_t *)&n->proc))
      uv_process_kill(&n->proc, SIGKILL);
    return kite_err_from_uv(err);
  }
  n->lifeline_open = true;
  uv_timer_start(&n->timer, timer_cb, START_TIMEOUT_MS, 0);
  return 0;
}

int kite_local_node_start(kite_runtime_t *rt, const kite_local_node_options_t *opts,
                          kite_local_node_cb cb, void *data, kite_local_node_t **out) {
  if (rt == NULL || opts == NULL || cb == NULL || out == NULL)
    return KITE_EINVAL;
  if (opts->authorized_key == NULL || *opts->authorized_key == '\0' ||
      strchr(opts->authorized_key, '\n') != strrchr(opts->authorized_key, '\n') ||
      (strchr(opts->authorized_key, '\n') && strchr(opts->authorized_key, '\n')[1] != '\0')) {
    kite_log(rt, KITE_LOG_ERROR, COMP,
             "a local node needs authorized_key: one OpenSSH public key line");
    return KITE_EINVAL;
  }
  const char *tag = opts->tag ? opts->tag : "kite-local";
  if (!tag_valid(tag)) {
    kite_log(rt, KITE_LOG_ERROR, COMP,
             "node tag \"%s\" is not 1-64 letters, digits or - _ . :", tag);
    return KITE_EINVAL;
  }
  kite_local_node_t *n = calloc(1, sizeof(*n));
  if (n == NULL)
    return KITE_ENOMEM;
  n->rt = rt;
  n->lock_fd = -1;
  n->pidfd = -1;
  n->port = opts->port ? opts->port : DEFAULT_PORT;
  n->outlive = opts->outlive_controller;
  n->login = kite_local_login_user();
  n->started_ms = kite__wall_ms();
  n->tag = kite__strdup(tag);
  int rc = n->tag ? addr_allocate(n) : KITE_ENOMEM;
  if (rc == 0)
    rc = prepare_dirs(n, opts);
  if (rc == 0)
    rc = spawn_node(n);
  if (rc != 0 && n->handles_open == 0) {
    /* Failed before any handle was made: nothing to wait for. */
    if (n->root && n->lock_fd >= 0)
      kite__rm_rf(n->root);
    node_free(n);
    return rc;
  }
  if (rc != 0) {
    /* Handles exist now: free after they close; the directory goes with them. */
    n->detached = true;
    close_handle(n, (uv_handle_t *)&n->timer);
    close_handle(n, (uv_handle_t *)&n->out);
    close_handle(n, (uv_handle_t *)&n->lifeline);
    close_handle(n, (uv_handle_t *)&n->proc);
    return rc;
  }
  n->start_cb = cb;
  n->start_data = data;
  n->start_cb_pending = true;
  kite_log(rt, KITE_LOG_DEBUG, COMP, "node %s:%u starting in %s", n->addr, n->port, n->root);
  *out = n;
  return 0;
}

void kite_local_node_stop(kite_local_node_t *node, kite_local_node_cb cb, void *data) {
  assert(node != NULL && !node->stopping);
  node->stopping = true;
  node->stop_cb = cb;
  node->stop_data = data;
  node_terminate(node);
  if (node->handles_open == 0)
    queue_removal(node);
}

/* ---- accessors ------------------------------------------------------------------------- */

const char *kite_local_node_address(const kite_local_node_t *node) {
  return node->addr;
}
uint16_t kite_local_node_port(const kite_local_node_t *node) {
  return node->port;
}
const char *kite_local_node_user(const kite_local_node_t *node) {
  return node->login;
}
const char *kite_local_node_host_key(const kite_local_node_t *node) {
  return node->host_key;
}
const char *kite_local_node_dir(const kite_local_node_t *node) {
  return node->work_dir;
}
const char *kite_local_node_remote_dir(const kite_local_node_t *node) {
  return node->view_dir;
}
int kite_local_node_pid(const kite_local_node_t *node) {
  return node->proc_exited ? 0 : node->pid1;
}
