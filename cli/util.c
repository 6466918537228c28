/* Small helpers of the `kite` command: messages, paths under $KITE_HOME, base64, lines. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>

void cli_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("kite: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

int cli_usage(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "kite %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see `kite %s --help`)\n", cmd);
  va_end(ap);
  return CLI_EXIT_USAGE;
}

char *cli_sprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : s;
}

char *cli_home(void) {
  const char *h = getenv("KITE_HOME");
  if (h && *h) {
    char *s = strdup(h);
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/')
      s[--n] = '\0';
    return s;
  }
  const char *home = getenv("HOME");
  return cli_sprintf("%s/.kite", home && *home ? home : ".");
}

int cli_mkdir_p(const char *path, int mode) {
  char *p = strdup(path);
  if (p == NULL)
    return -ENOMEM;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
        int e = errno;
        free(p);
        return -e;
      }
      *s = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  return 0;
}

kite_store_t *cli_store_open(void) {
  char *home = cli_home();
  if (home == NULL || cli_mkdir_p(home, 0700) != 0) {
    cli_err("cannot create kite's home directory %s: %s", home ? home : "?", strerror(errno));
    free(home);
    return NULL;
  }
  char *path = kite_store_default_path(home);
  kite_store_t *st = NULL;
  if (path == NULL || kite_store_open(path, &st) != 0) {
    cli_err("cannot open the state store: %s", kite_store_errmsg(NULL));
    st = NULL;
  }
  free(path);
  free(home);
  return st;
}

bool cli_pid_alive(int64_t pid) {
  if (pid <= 0)
    return false;
  if (kill((pid_t)pid, 0) != 0 && errno != EPERM)
    return false;
  /* A killed process stays a zombie until its parent reaps it: that is not alive. */
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return true; /* no /proc: trust kill() */
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  fclose(fp);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return !(rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'));
}

bool cli_wait_exit(int64_t pid, int timeout_ms) {
  /* A pidfd becomes readable when the process ends: no polling (Linux 5.3 and later). */
  int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  if (fd < 0)
    return !cli_pid_alive(pid); /* already gone (ESRCH), or no pidfd: say what is known */
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  int rc;
  while ((rc = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR)
    ;
  close(fd);
  /* A zombie child is readable too, and is not alive. */
  return rc > 0 || !cli_pid_alive(pid);
}

static char *home_file(const char *dir, const char *name, const char *ext) {
  char *home = cli_home();
  char *s = home ? cli_sprintf("%s/%s/%s%s", home, dir, name, ext) : NULL;
  free(home);
  return s;
}

char *cli_socket_path(const char *name) {
  return home_file("run", name, ".sock");
}

char *cli_log_path(const char *name) {
  return home_file("logs", name, ".log");
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *cli_b64_encode(const void *buf, size_t len) {
  const unsigned char *in = buf;
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0, i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = b64[(v >> 6) & 63];
    out[o++] = b64[v & 63];
  }
  if (i < len) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
    out[o++] = b64[v >> 18];
    out[o++] = b64[(v >> 12) & 63];
    out[o++] = i + 1 < len ? b64[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  out[o] = '\0';
  return out;
}

unsigned char *cli_b64_decode(const char *s, size_t *len) {
  size_t n = strlen(s);
  unsigned char *out = malloc(n / 4 * 3 + 3);
  if (out == NULL)
    return NULL;
  unsigned v = 0;
  int bits = 0;
  size_t o = 0;
  for (size_t i = 0; i < n && s[i] != '='; i++) {
    const char *p = strchr(b64, s[i]);
    if (p == NULL || s[i] == '\0') {
      free(out);
      return NULL;
    }
    v = v << 6 | (unsigned)(p - b64);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(v >> bits);
      v &= (1u << bits) - 1;
    }
  }
  *len = o;
  return out;
}

bool cli_parse_rank(const char *s, uint32_t *out) {
  if (s == NULL || *s < '0' || *s > '9')
    return false;
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (*end != '\0' || errno != 0 || v > UINT32_MAX)
    return false;
  *out = (uint32_t)v;
  return true;
}

bool cli_parse_rank_list(const char *s, json_t *out) {
  if (s == NULL || *s == '\0')
    return false;
  char *copy = strdup(s);
  bool ok = copy != NULL;
  for (char *save = NULL, *part = ok ? strtok_r(copy, ",", &save) : NULL; ok && part;
       part = strtok_r(NULL, ",", &save)) {
    char *dash = strchr(part, '-');
    uint32_t a, b;
    if (dash) {
      *dash = '\0';
      ok = cli_parse_rank(part, &a) && cli_parse_rank(dash + 1, &b) && a <= b && b - a < 1000000;
    } else {
      ok = cli_parse_rank(part, &a);
      b = a;
    }
    for (uint64_t r = a; ok && r <= b; r++)
      json_array_append_new(out, json_integer((json_int_t)r));
  }
  free(copy);
  return ok;
}

bool cli_is_live(FILE *fp, const cli_opts_t *o) {
  if (o->plain || o->json || !isatty(fileno(fp)))
    return false;
  const char *term = getenv("TERM");
  return term == NULL || strcmp(term, "dumb") != 0;
}

int64_t cli_now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

const char *cli_clock(int64_t ms) {
  static char buf[32];
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

static void line_label(const cli_lines_t *l, FILE *fp, uint32_t rank) {
  if (l->host)
    fprintf(fp, "%s: ", l->host);
  else if (l->attempt > 1)
    fprintf(fp, "[%u #%u] ", rank, l->attempt);
  else
    fprintf(fp, "[%u] ", rank);
}

void cli_lines_attempt(cli_lines_t *l, FILE *fp, uint32_t rank, unsigned attempt) {
  if (attempt == l->attempt)
    return;
  cli_lines_flush(l, fp, rank);
  l->attempt = attempt;
}

/* A line's start is held (so that its label goes first, whole) up to this many bytes; a longer
 * line is written as it comes, so output without newlines takes no more memory than this. */
#define CLI_LINE_HOLD 65536

/* Writes what is held and then n bytes of p; the label first when a line starts. */
static void lines_out(cli_lines_t *l, FILE *fp, uint32_t rank, const char *p, size_t n) {
  if (!l->mid)
    line_label(l, fp, rank);
  if (l->len)
    fwrite(l->buf, 1, l->len, fp);
  fwrite(p, 1, n, fp);
  l->len = 0;
}

void cli_lines_feed(cli_lines_t *l, FILE *fp, uint32_t rank, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    const char *nl = memchr(p, '\n', len);
    size_t take = nl ? (size_t)(nl - p) + 1 : len;
    if (nl) {
      lines_out(l, fp, rank, p, take);
      l->mid = false;
    } else if (l->mid || l->len + take > CLI_LINE_HOLD) {
      lines_out(l, fp, rank, p, take);
      l->mid = true;
    } else {
      if (l->buf == NULL && (l->buf = malloc(CLI_LINE_HOLD)) == NULL) {
        lines_out(l, fp, rank, p, take); /* cannot hold it: write it as it is */
        l->mid = true;
      } else {
        memcpy(l->buf + l->len, p, take);
        l->len += take;
      }
    }
    p += take;
    len -= take;
  }
  fflush(fp);
}

void cli_lines_flush(cli_lines_t *l, FILE *fp, uint32_t rank) {
  if (l->len || l->mid) {
    lines_out(l, fp, rank, "\n", 1);
    fflush(fp);
  }
  free(l->buf);
  l->buf = NULL;
  l->len = 0;
  l->mid = false;
}

/* Binds and listens on path with mode 0600. Returns the fd or -1 (errno set). */
int cli_listen_on(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
  umask(old);
  if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 64) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* Does something accept connections on the unix socket at path? */
bool cli_socket_answers(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof(sa.sun_path))
    return false;
  memcpy(sa.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

/* One process at a time prepares and serves a pool's socket: an flock on run/NAME.lock, held
 * (and inherited by a forked owner) until the process ends, so two commands opening one name
 * at once never take each other's socket. */
static int lock_fd = -1;

/* The lock file holds the pid of the process that holds it, for the message of another. */
void cli_pool_lock_mine(void) {
  if (lock_fd < 0)
    return;
  char b[32];
  int n = snprintf(b, sizeof(b), "%d\n", (int)getpid());
  if (ftruncate(lock_fd, 0) == 0 && pwrite(lock_fd, b, (size_t)n, 0) != n)
    return;
}

static bool take_pool_lock(const char *name, long *holder) {
  *holder = 0;
  char *path = home_file("run", name, ".lock");
  int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
  free(path);
  if (fd < 0)
    return true; /* no lock to be had: the socket check below still applies */
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    /* The holder writes its pid just after it locks: give it that moment (this runs before
     * any loop, in a command that is about to refuse). */
    for (int tries = 0; tries < 50 && *holder <= 0; tries++) {
      char b[32] = "";
      if (pread(fd, b, sizeof(b) - 1, 0) > 0)
        *holder = strtol(b, NULL, 10);
      if (*holder <= 0) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
    }
    close(fd);
    return false;
  }
  lock_fd = fd; /* stays open: the lock lasts as long as this process (and its owner) */
  cli_pool_lock_mine();
  return true;
}

int cli_pool_listen(const char *cmd, const char *name, char **sock_out) {
  *sock_out = NULL;
  char *home = cli_home();
  char *run_dir = home ? cli_sprintf("%s/run", home) : NULL;
  char *sock = cli_socket_path(name);
  free(home);
  int fd = -1;
  long holder = 0;
  if (run_dir == NULL || sock == NULL || cli_mkdir_p(run_dir, 0700) != 0) {
    cli_err("%s: cannot create %s: %s", cmd, run_dir ? run_dir : "the run directory",
            strerror(errno));
  } else if (chmod(run_dir, 0700), !take_pool_lock(name, &holder) || cli_socket_answers(sock)) {
    /* Another process serves this pool: never take its socket. Say which, from the store
     * (closed again before this process opens its own connection). */
    kite_store_t *st = cli_store_open();
    kite_store_pool_t p = {0};
    long pid = holder;
    if (pid <= 0 && st && kite_store_pool_get(st, name, &p) == 0 && p.owner_pid > 0)
      pid = (long)p.owner_pid;
    if (pid > 0)
      cli_err("%s: pool %s is open in process %ld (its socket %s); use it, or `kite down %s` "
              "first",
              cmd, name, pid, sock, name);
    else
      cli_err("%s: pool %s is open in another process (its socket %s answers); use it, or "
              "`kite down %s` first",
              cmd, name, sock, name);
    kite_store_pool_clear(&p);
    kite_store_close(st);
  } else {
    unlink(sock); /* a dead owner's socket */
    fd = cli_listen_on(sock);
    if (fd < 0)
      cli_err("%s: cannot listen on %s: %s%s", cmd, sock, strerror(errno),
              errno == ENAMETOOLONG ? " (use a shorter KITE_HOME)" : "");
  }
  free(run_dir);
  if (fd < 0)
    free(sock);
  else
    *sock_out = sock;
  return fd;
}

void cli_spec_notes(const kite_spec_t *spec) {
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  const kite_provider_info_t *p =
      ps->provider ? kite_registry_find(ps->provider) : kite_registry_default();
  if (p && !ps->deadman_off && kite_registry_can(p, KITE_FIELD_DEADMAN) && p->deadman_still_billed)
    fprintf(stderr,
            "kite: note: pool %s: the dead-man's switch powers a node off when its controller is "
            "gone, but on %s %s\n",
            ps->name, p->title, p->deadman_still_billed);
}

const char *cli_spec_providers(const kite_pool_spec_t *ps, char *buf, size_t size) {
  if (ps->provider_any)
    return "any provider's";
  if (ps->providers && ps->providers[0] && ps->providers[1]) {
    size_t off = 0;
    for (size_t i = 0; ps->providers[i] && off + 1 < size; i++) {
      int k = snprintf(buf + off, size - off, "%s%s",
                       i ? (ps->providers[i + 1] ? ", " : " or ") : "", ps->providers[i]);
      if (k < 0)
        break;
      off += (size_t)k;
    }
    return buf;
  }
  return ps->provider ? ps->provider : kite_registry_default()->name;
}
