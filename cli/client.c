/* The client side of the control socket (see owner.c for the protocol) and the commands
 * that only talk to a pool's owner: exec, upload, download, events, logs.
 *
 * These processes have no loop of their own: each sends one request and reads replies until
 * the owner closes the connection, so plain blocking reads are what they need.
 *
 * Interrupting `kite exec` (SIGINT, SIGTERM) sends {"op":"cancel"} from the signal handler
 * (one write of a fixed line, async-signal-safe) and goes on reading: the owner answers with
 * the result once the command is stopped on every node, and only then does kite exit 130. A
 * second signal exits at once; the owner then sees the connection close, which cancels too. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

int cli_conn_open(cli_conn_t *c, const char *name, const char **why) {
  memset(c, 0, sizeof(*c));
  c->fd = -1;
  char *path = cli_socket_path(name);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
    free(path);
    *why = "its socket path is too long (use a shorter KITE_HOME)";
    return -1;
  }
  memcpy(sa.sun_path, path, strlen(path) + 1);
  free(path);
  c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    *why = errno == ENOENT || errno == ECONNREFUSED ? "its owner process is not running"
                                                    : strerror(errno);
    if (c->fd >= 0)
      close(c->fd);
    c->fd = -1;
    return -1;
  }
  return 0;
}

int cli_conn_send(cli_conn_t *c, json_t *req) {
  json_object_set_new(req, "v", json_integer(CLI_PROTO_VERSION));
  char *s = json_dumps(req, JSON_COMPACT);
  json_decref(req);
  if (s == NULL)
    return -1;
  size_t len = strlen(s);
  char *line = malloc(len + 1);
  if (line == NULL) {
    free(s);
    return -1;
  }
  memcpy(line, s, len);
  line[len] = '\n';
  free(s);
  size_t off = 0;
  while (off < len + 1) {
    ssize_t w = write(c->fd, line + off, len + 1 - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      free(line);
      return -1;
    }
    off += (size_t)w;
  }
  free(line);
  return 0;
}

/* The next line (without its newline), NUL-terminated inside c->buf; NULL at EOF. */
static char *next_line(cli_conn_t *c) {
  if (c->used) {
    memmove(c->buf, c->buf + c->used, c->len - c->used);
    c->len -= c->used;
    c->used = 0;
  }
  for (;;) {
    char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
    if (nl) {
      *nl = '\0';
      c->used = (size_t)(nl - c->buf) + 1;
      return c->buf;
    }
    if (c->cap - c->len < 65536) {
      size_t cap = c->cap ? c->cap * 2 : 131072;
      char *g = realloc(c->buf, cap);
      if (g == NULL)
        return NULL;
      c->buf = g;
      c->cap = cap;
    }
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return NULL;
    c->len += (size_t)r;
  }
}

json_t *cli_conn_recv(cli_conn_t *c, const char **raw) {
  for (;;) {
    char *line = next_line(c);
    if (line == NULL)
      return NULL;
    if (raw)
      *raw = line;
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    if (json_is_object(j))
      return j;
    json_decref(j);
  }
}

void cli_conn_close(cli_conn_t *c) {
  if (c->fd >= 0)
    close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof(*c));
  c->fd = -1;
}

/* Connects to NAME's owner or says why not and what to do. */
static int connect_owner(cli_conn_t *c, const char *cmd, const char *name) {
  const char *why = NULL;
  if (cli_conn_open(c, name, &why) == 0)
    return 0;
  /* Say what to do from what the store knows of the pool. */
  kite_store_t *st = cli_store_open();
  kite_store_pool_t p = {0};
  int rc = st ? kite_store_pool_get(st, name, &p) : KITE_ESTORE;
  if (rc == KITE_ENOENT)
    cli_err("%s: there is no pool named %s (`kite status` lists them; `kite up SPEC` opens one)",
            cmd, name);
  else if (rc == 0 && p.live_instances > 0 && !(p.owner_pid > 0 && cli_pid_alive(p.owner_pid)))
    cli_err("%s: the owner of pool %s (pid %lld) is gone and %u instance(s) are still recorded "
            "live; `kite down %s` terminates them, then `kite up SPEC` opens the pool again",
            cmd, name, (long long)p.owner_pid, p.live_instances, name);
  else if (rc == 0 && p.live_instances == 0)
    cli_err("%s: pool %s is not up (it is %s); `kite up SPEC` opens it", cmd, name,
            p.state ? p.state : "closed");
  else
    cli_err("%s: cannot reach pool %s: %s (see `kite status %s`)", cmd, name, why, name);
  kite_store_pool_clear(&p);
  kite_store_close(st);
  return -1;
}

static void print_rank_failure(json_t *r) {
  int rank = (int)json_integer_value(json_object_get(r, "rank"));
  const char *err = json_string_value(json_object_get(r, "error"));
  const char *msg = json_string_value(json_object_get(r, "message"));
  const char *sig = json_string_value(json_object_get(r, "signal"));
  int st = (int)json_integer_value(json_object_get(r, "exit_status"));
  if (err)
    fprintf(stderr, "kite: rank %d failed: %s%s%s\n", rank, err, msg ? ": " : "", msg ? msg : "");
  else if (sig)
    fprintf(stderr, "kite: rank %d failed: killed by signal %s\n", rank, sig);
  else if (st != 0)
    fprintf(stderr, "kite: rank %d failed: exit status %d\n", rank, st);
}

/* Labels by rank for pdsh's "host: line" form (NULL: "[rank] "). */
static char **host_labels;
static size_t host_labels_n;

int cli_print_task_replies(cli_conn_t *c, const cli_opts_t *o, bool single_rank) {
  cli_lines_t lines[2] = {{0}};
  uint32_t last_rank[2] = {0, 0};
  int code = CLI_EXIT_FAIL;
  bool got_result = false;
  const char *raw = NULL;
  json_t *j;
  while ((j = cli_conn_recv(c, &raw)) != NULL) {
    const char *t = json_string_value(json_object_get(j, "t"));
    if (o->json) {
      printf("%s\n", raw);
      fflush(stdout);
    }
    if (t && strcmp(t, "out") == 0 && !o->json) {
      int s = json_integer_value(json_object_get(j, "stream")) == 2 ? 1 : 0;
      uint32_t rank = (uint32_t)json_integer_value(json_object_get(j, "rank"));
      size_t len = 0;
      unsigned char *b = cli_b64_decode(json_string_value(json_object_get(j, "data"))
                                            ? json_string_value(json_object_get(j, "data"))
                                            : "",
                                        &len);
      if ((lines[s].len || lines[s].mid) && last_rank[s] != rank)
        cli_lines_flush(&lines[s], s ? stderr : stdout, last_rank[s]);
      last_rank[s] = rank;
      lines[s].host = host_labels && rank < host_labels_n ? host_labels[rank] : NULL;
      cli_lines_attempt(&lines[s], s ? stderr : stdout, rank,
                        (unsigned)json_integer_value(json_object_get(j, "attempt")));
      if (b)
        cli_lines_feed(&lines[s], s ? stderr : stdout, rank, b, len);
      free(b);
    } else if (t && strcmp(t, "result") == 0) {
      got_result = true;
      cli_lines_flush(&lines[0], stdout, last_rank[0]);
      cli_lines_flush(&lines[1], stderr, last_rank[1]);
      const char *err = json_string_value(json_object_get(j, "error"));
      int failed = (int)json_integer_value(json_object_get(j, "failed"));
      json_t *ranks = json_object_get(j, "ranks");
      if (!o->json)
        for (size_t i = 0; i < json_array_size(ranks); i++)
          print_rank_failure(json_array_get(ranks, i));
      if (err) {
        if (!o->json)
          cli_err("the request failed: %s", err);
        code = CLI_EXIT_FAIL;
      } else if (single_rank && json_array_size(ranks) == 1) {
        json_t *r = json_array_get(ranks, 0);
        code = json_string_value(json_object_get(r, "error")) ||
                       json_string_value(json_object_get(r, "signal"))
                   ? CLI_EXIT_FAIL
                   : (int)json_integer_value(json_object_get(r, "exit_status"));
      } else {
        if (failed && !o->json)
          fprintf(stderr, "kite: %d of %d ranks failed\n", failed,
                  (int)json_integer_value(json_object_get(j, "count")));
        code = failed ? CLI_EXIT_FAIL : 0;
      }
    } else if (t && strcmp(t, "error") == 0) {
      got_result = true;
      if (!o->json)
        cli_err("%s", json_string_value(json_object_get(j, "message")));
      code = json_is_true(json_object_get(j, "usage")) ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
    }
    json_decref(j);
  }
  cli_lines_flush(&lines[0], stdout, last_rank[0]);
  cli_lines_flush(&lines[1], stderr, last_rank[1]);
  if (!got_result)
    cli_err("the pool's owner closed the connection before answering (see its log, "
            "$KITE_HOME/logs/NAME.log)");
  return code;
}

/* ---- exec, upload, download --------------------------------------------------------------- */

#define STR_(x) #x
#define STR(x) STR_(x)

static volatile sig_atomic_t interrupted;
static int cancel_fd = -1;

static void on_interrupt(int signum) {
  (void)signum;
  if (interrupted)
    _exit(CLI_EXIT_INTERRUPTED);
  interrupted = 1;
  static const char msg[] = "\nkite: interrupted: stopping the command on the nodes (again to "
                            "exit at once)\n";
  static const char req[] = "{\"op\":\"cancel\",\"v\":" STR(CLI_PROTO_VERSION) "}\n";
  int saved = errno;
  ssize_t w = write(2, msg, sizeof(msg) - 1);
  w = write(cancel_fd, req, sizeof(req) - 1);
  (void)w;
  errno = saved;
}

/* From here on, SIGINT and SIGTERM cancel the request running on c (see the top). No
 * SA_RESTART: the blocking read returns EINTR and goes on reading. */
static void cancel_on_signals(cli_conn_t *c) {
  cancel_fd = c->fd;
  struct sigaction sa = {.sa_handler = on_interrupt};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

/* The nodes' addresses by rank, from the owner's status, as line labels. */
static void load_host_labels(const char *name) {
  cli_conn_t c;
  const char *why;
  if (cli_conn_open(&c, name, &why) != 0)
    return;
  json_t *j = NULL;
  if (cli_conn_send(&c, json_pack("{s:s}", "op", "status")) == 0)
    j = cli_conn_recv(&c, NULL);
  json_t *nodes = json_object_get(j, "nodes");
  host_labels_n = json_array_size(nodes);
  host_labels = calloc(host_labels_n ? host_labels_n : 1, sizeof(*host_labels));
  for (size_t k = 0; host_labels && k < host_labels_n; k++) {
    json_t *n = json_array_get(nodes, k);
    size_t r = (size_t)json_integer_value(json_object_get(n, "rank"));
    const char *a = json_string_value(json_object_get(n, "address"));
    if (r < host_labels_n && a && host_labels[r] == NULL)
      host_labels[r] = strdup(a);
  }
  json_decref(j);
  cli_conn_close(&c);
}

int cli_cmd_exec(int argc, char **argv) {
  cli_opts_t o = {0};
  const char *name = NULL;
  long timeout_s = 0, fanout = 0, retries = -1;
  bool labels = false;
  json_t *ranks = json_array(), *exclude = json_array(), *env = json_array();
  const char *hosts = NULL, *hostfile = NULL;
  bool dashdash = false;
  int i = 1, code = CLI_EXIT_USAGE;
#define EXEC_USAGE(...)                                                                            \
  do {                                                                                             \
    code = cli_usage("exec", __VA_ARGS__);                                                         \
    goto out;                                                                                      \
  } while (0)
  for (; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (strcmp(a, "--") == 0) {
      i++;
      dashdash = true;
      break;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      cli_help_for("exec", stdout);
      code = 0;
      goto out;
    } else if (strcmp(a, "--json") == 0) {
      o.json = true;
    } else if (strcmp(a, "--rank") == 0 || strcmp(a, "-r") == 0) {
      if (!has_val || !cli_parse_rank_list(argv[i + 1], ranks))
        EXEC_USAGE("%s needs ranks: a number, a range or a list (0, 2-5, 0,3,7)", a);
      i++;
    } else if (strcmp(a, "-x") == 0 || strcmp(a, "--exclude") == 0) {
      if (!has_val || !cli_parse_rank_list(argv[i + 1], exclude))
        EXEC_USAGE("%s needs ranks to leave out: a number, a range or a list", a);
      i++;
    } else if (strcmp(a, "--env") == 0 || strcmp(a, "-e") == 0) {
      const char *v = has_val ? argv[i + 1] : NULL;
      size_t nl = v ? strcspn(v, "=") : 0;
      bool ok = v && v[nl] == '=' && nl > 0 && (v[0] < '0' || v[0] > '9');
      for (size_t k = 0; ok && k < nl; k++)
        ok = v[k] == '_' || (v[k] >= 'a' && v[k] <= 'z') || (v[k] >= 'A' && v[k] <= 'Z') ||
             (v[k] >= '0' && v[k] <= '9');
      if (!ok)
        EXEC_USAGE("%s needs NAME=VALUE, NAME a shell variable name", a);
      json_array_append_new(env, json_string(v));
      i++;
    } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "-f") == 0 || strcmp(a, "--fanout") == 0) {
      char *end = NULL;
      long v = has_val ? strtol(argv[i + 1], &end, 10) : 0;
      if (v <= 0 || *end)
        EXEC_USAGE("%s needs a positive number", a);
      *(strcmp(a, "--timeout") == 0 ? &timeout_s : &fanout) = v;
      i++;
    } else if (strcmp(a, "--host-labels") == 0 || strcmp(a, "-L") == 0) {
      labels = true;
    } else if (strcmp(a, "--retries") == 0) {
      char *end = NULL;
      retries = has_val ? strtol(argv[i + 1], &end, 10) : -1;
      if (retries < 0 || retries > 100 || *end)
        EXEC_USAGE("--retries needs a number from 0 to 100");
      i++;
    } else if (strcmp(a, "-w") == 0 || strcmp(a, "--hosts") == 0) {
      if (!has_val)
        EXEC_USAGE("%s needs hosts: host1,user@host2:port,...", a);
      hosts = argv[++i];
    } else if (strcmp(a, "--hostfile") == 0) {
      if (!has_val)
        EXEC_USAGE("--hostfile needs a file with one host per line");
      hostfile = argv[++i];
    } else if (a[0] == '-') {
      EXEC_USAGE("unknown option %s", a);
    } else if (name == NULL && hosts == NULL && hostfile == NULL) {
      name = a;
    } else {
      break; /* the command, as one shell string (pdsh's way) */
    }
  }
  if (labels && o.json)
    EXEC_USAGE("-L labels text lines; --json output carries the rank in each object");
  if (hosts || hostfile) {
    if (json_array_size(ranks) || json_array_size(exclude))
      EXEC_USAGE("--rank and -x select ranks of a pool; with -w, list only the hosts you want");
    if (i >= argc)
      EXEC_USAGE("missing the command (kite exec -w HOSTS -- CMD...)");
    code = cli_exec_hosts(hosts, hostfile, (const char *const *)&argv[i], argc - i, dashdash, env,
                          timeout_s, fanout, labels, o.json);
    goto out;
  }
  if (name == NULL)
    EXEC_USAGE("missing the pool name (kite exec NAME [--rank R] -- CMD...)");
  if (i >= argc)
    EXEC_USAGE("missing the command (kite exec %s -- CMD..., or one shell string)", name);
  json_t *req = json_pack("{s:s}", "op", "exec");
  if (dashdash) {
    json_t *av = json_array();
    for (; i < argc; i++)
      json_array_append_new(av, json_string(argv[i]));
    json_object_set_new(req, "argv", av);
  } else {
    /* Words after the pool name without --: one shell command line, as pdsh runs it. */
    size_t len = 1;
    for (int k = i; k < argc; k++)
      len += strlen(argv[k]) + 1;
    char *line = calloc(1, len);
    for (int k = i; line && k < argc; k++) {
      if (k > i)
        strcat(line, " ");
      strcat(line, argv[k]);
    }
    json_object_set_new(req, "shell", json_string(line ? line : ""));
    free(line);
  }
  bool single = json_array_size(ranks) == 1 && json_array_size(exclude) == 0;
  if (single) {
    json_object_set(req, "rank", json_array_get(ranks, 0));
  } else {
    if (json_array_size(ranks))
      json_object_set(req, "ranks", ranks);
    if (json_array_size(exclude))
      json_object_set(req, "exclude", exclude);
  }
  if (json_array_size(env))
    json_object_set(req, "env", env);
  if (timeout_s > 0)
    json_object_set_new(req, "timeout_ms", json_integer((json_int_t)timeout_s * 1000));
  if (fanout > 0)
    json_object_set_new(req, "fanout", json_integer((json_int_t)fanout));
  if (retries >= 0)
    json_object_set_new(req, "retries", json_integer((json_int_t)retries));
  if (labels)
    load_host_labels(name);
  cli_conn_t c;
  code = CLI_EXIT_FAIL;
  if (connect_owner(&c, "exec", name) != 0) {
    json_decref(req);
    goto out;
  }
  if (cli_conn_send(&c, req) == 0) {
    cancel_on_signals(&c);
    code = cli_print_task_replies(&c, &o, single);
  }
  if (interrupted)
    code = CLI_EXIT_INTERRUPTED;
  cli_conn_close(&c);
out:
  for (size_t k = 0; host_labels && k < host_labels_n; k++)
    free(host_labels[k]);
  free(host_labels);
  host_labels = NULL;
  json_decref(ranks);
  json_decref(exclude);
  json_decref(env);
  return code;
#undef EXEC_USAGE
}

static int transfer(const char *cmd, const char *name, int64_t rank, const char *src,
                    const char *dst) {
  bool up = strcmp(cmd, "upload") == 0;
  char *local = NULL;
  if (up) {
    local = realpath(src, NULL);
    if (local == NULL) {
      cli_err("upload: cannot read %s: %s", src, strerror(errno));
      return CLI_EXIT_FAIL;
    }
  } else if (dst[0] == '/') {
    local = strdup(dst);
  } else {
    char cwd[PATH_MAX];
    local = getcwd(cwd, sizeof(cwd)) ? cli_sprintf("%s/%s", cwd, dst) : NULL;
    if (local == NULL) {
      cli_err("download: cannot resolve %s: %s", dst, strerror(errno));
      return CLI_EXIT_FAIL;
    }
  }
  json_t *req = json_pack("{s:s, s:s, s:s}", "op", cmd, "local", local, "remote", up ? dst : src);
  if (rank >= 0)
    json_object_set_new(req, "rank", json_integer(rank));
  cli_conn_t c;
  int code = CLI_EXIT_FAIL;
  cli_opts_t o = {0};
  if (connect_owner(&c, cmd, name) == 0) {
    code = cli_conn_send(&c, req) == 0 ? cli_print_task_replies(&c, &o, false) : CLI_EXIT_FAIL;
    req = NULL;
    cli_conn_close(&c);
  }
  json_decref(req);
  if (code == 0)
    fprintf(stderr, "kite: %s %s: %s -> %s\n", up ? "uploaded to every node of" : "downloaded from",
            name, up ? local : src, up ? dst : local);
  free(local);
  return code;
}

int cli_cmd_upload(int argc, char **argv) {
  const char *pos[3];
  int n = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("upload", stdout);
      return 0;
    }
    if (argv[i][0] == '-' && argv[i][1] != '\0')
      return cli_usage("upload", "unknown option %s", argv[i]);
    if (n == 3)
      return cli_usage("upload", "too many arguments (kite upload NAME SRC DST)");
    pos[n++] = argv[i];
  }
  if (n != 3)
    return cli_usage("upload", "needs NAME SRC DST");
  return transfer("upload", pos[0], -1, pos[1], pos[2]);
}

int cli_cmd_download(int argc, char **argv) {
  const char *pos[3];
  int n = 0;
  int64_t rank = -1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("download", stdout);
      return 0;
    }
    if (strcmp(argv[i], "--rank") == 0 || strcmp(argv[i], "-r") == 0) {
      uint32_t r;
      if (i + 1 >= argc || !cli_parse_rank(argv[i + 1], &r))
        return cli_usage("download", "--rank needs a rank number (0, 1, ...)");
      rank = r;
      i++;
      continue;
    }
    if (argv[i][0] == '-' && argv[i][1] != '\0')
      return cli_usage("download", "unknown option %s", argv[i]);
    if (n == 3)
      return cli_usage("download", "too many arguments (kite download NAME --rank R SRC DST)");
    pos[n++] = argv[i];
  }
  if (n != 3)
    return cli_usage("download", "needs NAME SRC DST");
  if (rank < 0)
    return cli_usage("download", "needs --rank R: which node to copy from");
  return transfer("download", pos[0], rank, pos[1], pos[2]);
}

/* ---- events, logs ------------------------------------------------------------------------- */

int cli_cmd_events(int argc, char **argv) {
  const char *name = NULL;
  bool follow = true;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("events", stdout);
      return 0;
    } else if (strcmp(argv[i], "--no-follow") == 0) {
      follow = false;
    } else if (argv[i][0] == '-') {
      return cli_usage("events", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("events", "unexpected argument '%s'", argv[i]);
    }
  }
  if (name == NULL)
    return cli_usage("events", "missing the pool name");
  cli_conn_t c;
  if (connect_owner(&c, "events", name) != 0)
    return CLI_EXIT_FAIL;
  if (cli_conn_send(&c, json_pack("{s:s, s:b}", "op", "events", "follow", follow)) != 0) {
    cli_conn_close(&c);
    return CLI_EXIT_FAIL;
  }
  const char *raw;
  json_t *j;
  int code = 0;
  while ((j = cli_conn_recv(&c, &raw)) != NULL) {
    const char *t = json_string_value(json_object_get(j, "t"));
    if (t && strcmp(t, "error") == 0) {
      cli_err("%s", json_string_value(json_object_get(j, "message")));
      code = CLI_EXIT_FAIL;
    } else if (t == NULL) {
      printf("%s\n", raw);
      fflush(stdout);
    }
    json_decref(j);
  }
  cli_conn_close(&c);
  return code;
}

static void print_output(const char *b64, uint32_t rank) {
  size_t len = 0;
  unsigned char *b = cli_b64_decode(b64 ? b64 : "", &len);
  cli_lines_t l = {0};
  if (b)
    cli_lines_feed(&l, stdout, rank, b, len);
  cli_lines_flush(&l, stdout, rank);
  free(b);
}

/* The store's task history as the owner's "task" lines: {"t":"task","id","what",
 * "started_ms","ranks":[{"rank","done","error","exit_status","signal","instance","output",
 * "truncated","attempts"}]}, oldest first, then {"t":"end"}. */
static void emit_task(json_t **task) {
  if (*task == NULL)
    return;
  char *s = json_dumps(*task, JSON_COMPACT);
  printf("%s\n", s ? s : "{}");
  free(s);
  json_decref(*task);
  *task = NULL;
}

static void logs_json(const kite_store_task_t *v, size_t n, int64_t rank) {
  json_t *task = NULL;
  uint64_t id = 0;
  for (size_t i = n; i-- > 0;) { /* the store lists newest first */
    const kite_store_task_t *x = &v[i];
    if (rank >= 0 && x->rank != (uint32_t)rank)
      continue;
    if (task && x->task_id != id)
      emit_task(&task);
    if (task == NULL) {
      id = x->task_id;
      task =
          json_pack("{s:s, s:I, s:s, s:I, s:[]}", "t", "task", "id", (json_int_t)id, "what",
                    x->command ? x->command : "", "started_ms", (json_int_t)x->started_ms, "ranks");
    }
    char *b = cli_b64_encode(x->output ? x->output : "", x->output_len);
    json_array_append_new(json_object_get(task, "ranks"),
                          json_pack("{s:i, s:b, s:s?, s:i, s:s?, s:s?, s:s, s:b, s:i}", "rank",
                                    (int)x->rank, "done", x->finished_ms != 0, "error", x->error,
                                    "exit_status", x->exit_status, "signal", x->signal, "instance",
                                    x->instance_id, "output", b ? b : "", "truncated",
                                    x->output_truncated, "attempts", (int)x->attempt));
    free(b);
  }
  emit_task(&task);
  printf("{\"t\":\"end\"}\n");
}

static int logs_from_store(const char *name, int64_t rank, bool json) {
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  kite_store_pool_t p = {0};
  if (kite_store_pool_get(st, name, &p) != 0) {
    cli_err("logs: there is no pool named %s (`kite status --all` lists them)", name);
    kite_store_close(st);
    return CLI_EXIT_FAIL;
  }
  kite_store_pool_clear(&p);
  kite_store_task_t *v = NULL;
  size_t n = 0;
  int rc = kite_store_tasks(st, name, 2000, &v, &n);
  if (rc != 0) {
    cli_err("logs: %s", kite_store_errmsg(st));
    kite_store_close(st);
    return CLI_EXIT_FAIL;
  }
  if (json) {
    logs_json(v, n, rank);
    kite_store_tasks_free(v, n);
    kite_store_close(st);
    return 0;
  }
  printf("pool %s: its owner is not running; the task history from the state store:\n", name);
  /* Oldest first, one block per task, as the owner shows them. */
  uint64_t shown = 0;
  for (size_t i = n; i-- > 0;) {
    if (rank >= 0 && v[i].rank != (uint32_t)rank)
      continue;
    if (v[i].task_id != shown) {
      shown = v[i].task_id;
      printf("== task %llu: %s (started %s) ==\n", (unsigned long long)v[i].task_id,
             v[i].command ? v[i].command : "", cli_clock(v[i].started_ms));
    }
    if (v[i].output_truncated)
      printf("[%u] (earlier output not kept)\n", v[i].rank);
    if (v[i].output) {
      char *b64 = cli_b64_encode(v[i].output, v[i].output_len);
      print_output(b64, v[i].rank);
      free(b64);
    }
    const char *on = v[i].instance_id ? v[i].instance_id : "-";
    if (v[i].finished_ms == 0)
      printf("[%u] (did not finish; on %s)\n", v[i].rank, on);
    else if (v[i].error)
      printf("[%u] (failed: %s; on %s, attempt %u)\n", v[i].rank, v[i].error, on, v[i].attempt);
    else if (v[i].signal)
      printf("[%u] (killed by signal %s; on %s, attempt %u)\n", v[i].rank, v[i].signal, on,
             v[i].attempt);
    else
      printf("[%u] (exit %d; on %s, attempt %u)\n", v[i].rank, v[i].exit_status, on, v[i].attempt);
  }
  kite_store_tasks_free(v, n);
  kite_store_close(st);
  char *log = cli_log_path(name);
  FILE *fp = log ? fopen(log, "r") : NULL;
  if (fp) {
    /* The end of the owner's log: the last 40 lines. */
    char *lines[40] = {0};
    size_t k = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
      free(lines[k % 40]);
      lines[k % 40] = strdup(line);
      k++;
    }
    free(line);
    fclose(fp);
    printf("\nthe end of the owner's log %s:\n", log);
    for (size_t m = k > 40 ? k - 40 : 0; m < k; m++)
      fputs(lines[m % 40] ? lines[m % 40] : "", stdout);
    for (size_t m = 0; m < 40; m++)
      free(lines[m]);
  }
  free(log);
  return 0;
}

int cli_cmd_logs(int argc, char **argv) {
  const char *name = NULL;
  int64_t rank = -1;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("logs", stdout);
      return 0;
    } else if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (strcmp(argv[i], "--rank") == 0 || strcmp(argv[i], "-r") == 0) {
      uint32_t r;
      if (i + 1 >= argc || !cli_parse_rank(argv[i + 1], &r))
        return cli_usage("logs", "--rank needs a rank number (0, 1, ...)");
      rank = r;
      i++;
    } else if (argv[i][0] == '-') {
      return cli_usage("logs", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("logs", "unexpected argument '%s'", argv[i]);
    }
  }
  if (name == NULL)
    return cli_usage("logs", "missing the pool name");
  cli_conn_t c;
  const char *why;
  if (cli_conn_open(&c, name, &why) != 0)
    return logs_from_store(name, rank, json);
  json_t *req = json_pack("{s:s}", "op", "logs");
  if (rank >= 0)
    json_object_set_new(req, "rank", json_integer(rank));
  if (cli_conn_send(&c, req) != 0) {
    cli_conn_close(&c);
    return CLI_EXIT_FAIL;
  }
  json_t *j;
  int code = 0;
  const char *raw = NULL;
  while ((j = cli_conn_recv(&c, &raw)) != NULL) {
    const char *t = json_string_value(json_object_get(j, "t"));
    if (json) {
      printf("%s\n", raw);
      if (t && strcmp(t, "error") == 0)
        code = CLI_EXIT_FAIL;
    } else if (t && strcmp(t, "task") == 0) {
      printf("== task %lld: %s (started %s) ==\n",
             (long long)json_integer_value(json_object_get(j, "id")),
             json_string_value(json_object_get(j, "what")),
             cli_clock(json_integer_value(json_object_get(j, "started_ms"))));
      json_t *ranks = json_object_get(j, "ranks");
      for (size_t i = 0; i < json_array_size(ranks); i++) {
        json_t *r = json_array_get(ranks, i);
        uint32_t rk = (uint32_t)json_integer_value(json_object_get(r, "rank"));
        if (json_is_true(json_object_get(r, "truncated")))
          printf("[%u] (earlier output not kept)\n", rk);
        print_output(json_string_value(json_object_get(r, "output")), rk);
        const char *err = json_string_value(json_object_get(r, "error"));
        const char *sig = json_string_value(json_object_get(r, "signal"));
        if (!json_is_true(json_object_get(r, "done")))
          printf("[%u] (running)\n", rk);
        else if (err)
          printf("[%u] (failed: %s)\n", rk, err);
        else if (sig)
          printf("[%u] (killed by signal %s)\n", rk, sig);
        else
          printf("[%u] (exit %d)\n", rk,
                 (int)json_integer_value(json_object_get(r, "exit_status")));
      }
    } else if (t && strcmp(t, "error") == 0) {
      cli_err("%s", json_string_value(json_object_get(j, "message")));
      code = CLI_EXIT_FAIL;
    }
    json_decref(j);
  }
  cli_conn_close(&c);
  return code;
}
