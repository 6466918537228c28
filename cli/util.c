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
  if (l->attempt > 1)
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

void cli_lines_feed(cli_lines_t *l, FILE *fp, uint32_t rank, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    const char *nl = memchr(p, '\n', len);
    size_t take = nl ? (size_t)(nl - p) + 1 : len;
    if (nl == NULL) {
      char *g = realloc(l->buf, l->len + take);
      if (g == NULL)
        return;
      memcpy(g + l->len, p, take);
      l->buf = g;
      l->len += take;
    } else {
      line_label(l, fp, rank);
      if (l->len)
        fwrite(l->buf, 1, l->len, fp);
      fwrite(p, 1, take, fp);
      l->len = 0;
    }
    p += take;
    len -= take;
  }
  fflush(fp);
}

void cli_lines_flush(cli_lines_t *l, FILE *fp, uint32_t rank) {
  if (l->len) {
    line_label(l, fp, rank);
    fwrite(l->buf, 1, l->len, fp);
    fputc('\n', fp);
    fflush(fp);
  }
  free(l->buf);
  l->buf = NULL;
  l->len = 0;
}
