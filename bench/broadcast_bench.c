/* Broadcast over SSH: one command on every node of a pool at once, over warm sessions.
 *
 * Design notes
 *
 * Starts N local nodes (real sshd, each in its own PID namespace, all tagged with one tag),
 * connects one kite session per node with its host key pinned, then runs `true` on every
 * node at once, round after round. A round starts when the N execs are issued and ends when
 * the N exit statuses have arrived; warm-up rounds are not counted.
 *
 * The floor. Every process of a node descends from the node's pid 1, so the CPU the node
 * side spends (sshd and the shells it starts) is the sum of utime+stime+cutime+cstime over
 * those descendants, read from /proc before and after the counted rounds; processes that
 * exit in between are reaped by a living ancestor and show up in its cutime/cstime. That CPU
 * per round divided by the cores is the shortest a round could take if kite itself cost
 * nothing and the node side kept every core busy: floor_ms. kite's own CPU (getrusage) is
 * printed beside it, since kite and the nodes share the cores.
 *
 * The peers run against the same nodes in the same run, as separate processes spawned on
 * the loop (which stays otherwise idle meanwhile; the kite sessions stay open):
 *   pdsh -R ssh -f N: a new SSH connection per node per round, system ssh, host keys
 *     checked against a known_hosts file written from the nodes' pinned keys;
 *   bench/broadcast_asyncssh.py: warm asyncssh connections, asyncio.gather of conn.run.
 * Ratios are peer / kite at p50, so > 1 means kite is faster.
 *
 * At exit every session is closed and every node stopped, and no process carrying the
 * nodes' tag may be left (kite_local_count_tagged); the program fails otherwise.
 *
 * Output: key=value lines. Options: see usage(). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"

extern char **environ;

typedef struct opts {
  int nodes;
  int rounds;
  int warmup;
  int single;      /* sequential one-node execs, for the latency of one exec alone */
  int pdsh_rounds; /* 0: skip pdsh */
  int asyncssh;    /* 0: skip asyncssh */
  const char *python;
  const char *asyncssh_script;
  const char *asyncssh_command; /* NULL: true (another command, to compare what kite sends) */
  uint16_t port;
} opts_t;

typedef struct bench bench_t;

typedef struct node {
  bench_t *b;
  int i;
  kite_local_node_t *ln;
  int start_status;
  kite_ssh_t *s;
  int conn_status;
  char conn_msg[256];
  uint64_t done_ns; /* when this node's exit arrived in the current round */
} node_t;

struct bench {
  uv_loop_t loop;
  kite_runtime_t *rt;
  opts_t o;
  char home[64];
  char tag[64];
  char *key_path;
  char *pub_key;
  char *known_hosts;
  node_t *nodes;
  int pending; /* callbacks still awaited by the current phase */
  int failures;
};

static void run_until_zero(bench_t *b) {
  while (b->pending > 0)
    uv_run(&b->loop, UV_RUN_ONCE);
}

static double ms_since(uint64_t t0) {
  return (double)(uv_hrtime() - t0) / 1e6;
}

static char *xsprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xsprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) {
    perror("vasprintf");
    exit(1);
  }
  va_end(ap);
  return s;
}

/* ---- statistics ---------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest rank, as the asyncssh peer computes it. */
static double percentile(const double *v, int n, double p) {
  double *s = malloc((size_t)n * sizeof(*s));
  memcpy(s, v, (size_t)n * sizeof(*s));
  qsort(s, (size_t)n, sizeof(*s), cmp_double);
  int rank = (int)ceil(p * n);
  if (rank < 1)
    rank = 1;
  double r = s[rank - 1];
  free(s);
  return r;
}

static double mean(const double *v, int n) {
  double sum = 0;
  for (int i = 0; i < n; i++)
    sum += v[i];
  return sum / n;
}

/* ---- CPU of the node side, from /proc ------------------------------------------------------ */

typedef struct proc_row {
  int pid, ppid;
  unsigned long long self;     /* utime + stime */
  unsigned long long children; /* cutime + cstime: children it reaped */
  bool mark;
} proc_row_t;

/* Reads pid, ppid and the four time fields of /proc/<pid>/stat. The command name may hold
 * spaces and parentheses, so fields are counted from the last ')'. */
static bool read_stat(int pid, proc_row_t *row) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0)
    return false;
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  if (p == NULL)
    return false;
  /* After ')': state(3) ppid(4) pgrp session tty_nr tpgid flags minflt cminflt majflt
   * cmajflt utime(14) stime(15) cutime(16) cstime(17). */
  char state;
  int ppid;
  unsigned long long ut, st;
  long long cut, cst;
  if (sscanf(p + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &state, &ppid,
             &ut, &st, &cut, &cst) != 6)
    return false;
  row->pid = pid;
  row->ppid = ppid;
  row->self = ut + st;
  row->children = (unsigned long long)cut + (unsigned long long)cst;
  row->mark = false;
  return true;
}

typedef struct ticks {
  unsigned long long self;     /* of the processes alive at the snapshot: sshd, mostly */
  unsigned long long children; /* of those they reaped: the commands (forked sshd + shells) */
} ticks_t;

/* CPU ticks of every process that descends from (or is) one of the nodes' pid 1. */
static int node_ticks(bench_t *b, ticks_t *out) {
  DIR *d = opendir("/proc");
  if (d == NULL)
    return -1;
  size_t cap = 512, n = 0;
  proc_row_t *rows = malloc(cap * sizeof(*rows));
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    if (n == cap)
      rows = realloc(rows, (cap *= 2) * sizeof(*rows));
    if (read_stat((int)pid, &rows[n]))
      n++;
  }
  closedir(d);
  int roots = 0;
  for (size_t i = 0; i < n; i++)
    for (int k = 0; k < b->o.nodes; k++)
      if (rows[i].pid == kite_local_node_pid(b->nodes[k].ln)) {
        rows[i].mark = true;
        roots++;
      }
  /* Mark children of marked processes until nothing changes (the trees are shallow). */
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = 0; i < n; i++) {
      if (rows[i].mark)
        continue;
      for (size_t j = 0; j < n; j++)
        if (rows[j].mark && rows[j].pid == rows[i].ppid) {
          rows[i].mark = changed = true;
          break;
        }
    }
  }
  *out = (ticks_t){0};
  for (size_t i = 0; i < n; i++)
    if (rows[i].mark) {
      out->self += rows[i].self;
      out->children += rows[i].children;
    }
  free(rows);
  return roots == b->o.nodes ? 0 : -1;
}

static double self_cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* ---- nodes and sessions -------------------------------------------------------------------- */

static void on_key(kite_runtime_t *rt, int status, void *data) {
  bench_t *b = data;
  (void)rt;
  if (status != 0) {
    fprintf(stderr, "key pair: %s\n", kite_strerror(status));
    b->failures++;
  }
  b->pending--;
}

static void on_node_started(kite_local_node_t *ln, int status, void *data) {
  node_t *nd = data;
  (void)ln;
  nd->start_status = status;
  if (status != 0) {
    fprintf(stderr, "node %d did not start: %s\n", nd->i, kite_strerror(status));
    nd->b->failures++;
  }
  nd->b->pending--;
}

static void on_connected(kite_ssh_t *s, int status, const char *message, void *data) {
  node_t *nd = data;
  (void)s;
  nd->conn_status = status;
  if (status != 0) {
    snprintf(nd->conn_msg, sizeof(nd->conn_msg), "%s", message ? message : "");
    fprintf(stderr, "connect to node %d (%s): %s: %s\n", nd->i, kite_local_node_address(nd->ln),
            kite_strerror(status), nd->conn_msg);
    nd->b->failures++;
  }
  nd->b->pending--;
}

static int read_line_file(const char *path, char **out) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return -1;
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, f);
  fclose(f);
  if (n <= 0) {
    free(line);
    return -1;
  }
  line[strcspn(line, "\n")] = '\0';
  *out = line;
  return 0;
}

/* known_hosts lines from the keys the nodes were launched with, for the peers' clients. */
static int write_known_hosts(bench_t *b) {
  b->known_hosts = xsprintf("%s/known_hosts.peers", b->home);
  FILE *f = fopen(b->known_hosts, "w");
  if (f == NULL)
    return -1;
  for (int i = 0; i < b->o.nodes; i++) {
    const kite_local_node_t *ln = b->nodes[i].ln;
    if (kite_local_node_port(ln) == 22)
      fprintf(f, "%s %s\n", kite_local_node_address(ln), kite_local_node_host_key(ln));
    else
      fprintf(f, "[%s]:%u %s\n", kite_local_node_address(ln), kite_local_node_port(ln),
              kite_local_node_host_key(ln));
  }
  return fclose(f) == 0 ? 0 : -1;
}

static int start_nodes(bench_t *b) {
  uint64_t t0 = uv_hrtime();
  b->pending = b->o.nodes;
  for (int i = 0; i < b->o.nodes; i++) {
    node_t *nd = &b->nodes[i];
    kite_local_node_options_t no = {.tag = b->tag, .authorized_key = b->pub_key, .port = b->o.port};
    int rc = kite_local_node_start(b->rt, &no, on_node_started, nd, &nd->ln);
    if (rc != 0) {
      fprintf(stderr, "kite_local_node_start: %s\n", kite_strerror(rc));
      nd->ln = NULL;
      b->failures++;
      b->pending--;
    }
  }
  run_until_zero(b);
  printf("nodes_start_s=%.2f\n", ms_since(t0) / 1e3);
  return b->failures ? -1 : 0;
}

static int connect_all(bench_t *b) {
  uint64_t t0 = uv_hrtime();
  b->pending = b->o.nodes;
  for (int i = 0; i < b->o.nodes; i++) {
    node_t *nd = &b->nodes[i];
    kite_ssh_options_t so = {.host = kite_local_node_address(nd->ln),
                             .port = kite_local_node_port(nd->ln),
                             .user = kite_local_node_user(nd->ln),
                             .key_path = b->key_path,
                             .host_key = kite_local_node_host_key(nd->ln),
                             .hostkey_mode = KITE_HOSTKEY_STRICT,
                             .connect_timeout_ms = 30000};
    int rc = kite_ssh_connect(b->rt, &so, on_connected, nd, &nd->s);
    if (rc != 0) {
      fprintf(stderr, "kite_ssh_connect: %s\n", kite_strerror(rc));
      nd->s = NULL;
      b->failures++;
      b->pending--;
    }
  }
  run_until_zero(b);
  printf("connect_all_ms=%.1f\n", ms_since(t0));
  return b->failures ? -1 : 0;
}

/* ---- rounds -------------------------------------------------------------------------------- */

static void on_exec_done(kite_exec_t *x, int error, int exit_status, const char *signal,
                         const char *message, void *data) {
  node_t *nd = data;
  (void)x;
  nd->done_ns = uv_hrtime();
  if (error != 0 || exit_status != 0 || signal != NULL) {
    fprintf(stderr, "node %d: true: %s, exit %d%s%s: %s\n", nd->i,
            error ? kite_strerror(error) : "ran", exit_status, signal ? ", signal " : "",
            signal ? signal : "", message ? message : "");
    nd->b->failures++;
  }
  nd->b->pending--;
}

/* Runs `true` on the first `count` nodes at once; returns the round's time in ms (and the
 * time of the first exit), or a negative number if any exec failed. */
static double round_on(bench_t *b, int count, double *first_ms) {
  static const kite_exec_opts_t eo = {.shell = "true"};
  int failures = b->failures;
  uint64_t t0 = uv_hrtime();
  b->pending = count;
  for (int i = 0; i < count; i++) {
    int rc = kite_ssh_exec(b->nodes[i].s, &eo, NULL, on_exec_done, &b->nodes[i], NULL);
    if (rc != 0) {
      fprintf(stderr, "kite_ssh_exec: %s\n", kite_strerror(rc));
      b->failures++;
      b->pending--;
      b->nodes[i].done_ns = t0;
    }
  }
  run_until_zero(b);
  double ms = ms_since(t0);
  if (first_ms) {
    uint64_t first = UINT64_MAX;
    for (int i = 0; i < count; i++)
      if (b->nodes[i].done_ns < first)
        first = b->nodes[i].done_ns;
    *first_ms = (double)(first - t0) / 1e6;
  }
  return b->failures == failures ? ms : -1;
}

typedef struct kite_result {
  double p50;
} kite_result_t;

static int run_kite(bench_t *b, kite_result_t *res) {
  int n = b->o.nodes, rounds = b->o.rounds;
  for (int r = 0; r < b->o.warmup; r++)
    if (round_on(b, n, NULL) < 0)
      return -1;

  double *ms = calloc((size_t)rounds, sizeof(*ms));
  double *first = calloc((size_t)rounds, sizeof(*first));
  ticks_t ticks0, ticks1;
  if (node_ticks(b, &ticks0) != 0) {
    fprintf(stderr, "cannot find every node's processes in /proc\n");
    return -1;
  }
  double cpu0 = self_cpu_ms();
  for (int r = 0; r < rounds; r++)
    if ((ms[r] = round_on(b, n, &first[r])) < 0)
      return -1;
  double cpu1 = self_cpu_ms();
  if (node_ticks(b, &ticks1) != 0) {
    fprintf(stderr, "cannot find every node's processes in /proc\n");
    return -1;
  }

  long hz = sysconf(_SC_CLK_TCK), cores = sysconf(_SC_NPROCESSORS_ONLN);
  double per_tick = 1e3 / (double)hz / rounds;
  double node_self = (double)(ticks1.self - ticks0.self) * per_tick;
  double node_children = (double)(ticks1.children - ticks0.children) * per_tick;
  double node_cpu = node_self + node_children;
  double floor_ms = node_cpu / (double)cores;
  res->p50 = percentile(ms, rounds, 0.50);
  printf("broadcast_nodes=%d\n", n);
  printf("broadcast_rounds=%d\n", rounds);
  printf("broadcast_warmup_rounds=%d\n", b->o.warmup);
  printf("broadcast_p50_ms=%.2f\n", res->p50);
  printf("broadcast_p99_ms=%.2f\n", percentile(ms, rounds, 0.99));
  printf("broadcast_mean_ms=%.2f\n", mean(ms, rounds));
  printf("broadcast_first_exit_p50_ms=%.2f\n", percentile(first, rounds, 0.50));
  printf("cores=%ld\n", cores);
  printf("node_cpu_per_round_ms=%.2f\n", node_cpu);
  printf("node_cpu_per_exec_ms=%.3f\n", node_cpu / n);
  printf("node_cpu_sshd_per_exec_ms=%.3f\n", node_self / n);
  printf("node_cpu_commands_per_exec_ms=%.3f\n", node_children / n);
  printf("floor_ms=%.2f\n", floor_ms);
  printf("kite_vs_floor=%.2f\n", floor_ms > 0 ? res->p50 / floor_ms : NAN);
  printf("kite_cpu_per_round_ms=%.2f\n", (cpu1 - cpu0) / rounds);
  printf("kite_cpu_per_exec_ms=%.3f\n", (cpu1 - cpu0) / rounds / n);
  free(first);
  free(ms);

  /* One exec at a time on one node: the latency of a lone command, with the cores idle. */
  if (b->o.single > 0) {
    double *one = calloc((size_t)b->o.single, sizeof(*one));
    for (int r = 0; r < b->o.single; r++)
      if ((one[r] = round_on(b, 1, NULL)) < 0)
        return -1;
    printf("single_exec_p50_ms=%.2f\n", percentile(one, b->o.single, 0.50));
    free(one);
  }
  return 0;
}

/* ---- peers --------------------------------------------------------------------------------- */

typedef struct child {
  uv_process_t proc;
  bool exited, closed;
  int64_t status;
  int term_signal;
} child_t;

static void on_child_exit(uv_process_t *p, int64_t status, int term_signal) {
  child_t *c = kite_container_of(p, child_t, proc);
  c->exited = true;
  c->status = status;
  c->term_signal = term_signal;
}

static void on_child_closed(uv_handle_t *h) {
  child_t *c = kite_container_of((uv_process_t *)h, child_t, proc);
  c->closed = true;
}

/* Runs argv to its end on the loop (the kite sessions stay open and idle), stdout into
 * out_path and stderr into err_path. Returns 0 when it exited with status 0. */
static int run_child(bench_t *b, char **argv, char **env, const char *out_path,
                     const char *err_path, double *elapsed_ms) {
  int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0 || err < 0) {
    perror("open");
    return -1;
  }
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_INHERIT_FD, .data.fd = out},
      {.flags = UV_INHERIT_FD, .data.fd = err},
  };
  child_t c = {0};
  uv_process_options_t po = {.exit_cb = on_child_exit,
                             .file = argv[0],
                             .args = argv,
                             .env = env,
                             .stdio_count = 3,
                             .stdio = stdio};
  uint64_t t0 = uv_hrtime();
  int rc = uv_spawn(&b->loop, &c.proc, &po);
  close(out);
  close(err);
  if (rc != 0) {
    fprintf(stderr, "cannot run %s: %s\n", argv[0], uv_strerror(rc));
    uv_close((uv_handle_t *)&c.proc, on_child_closed);
    while (!c.closed)
      uv_run(&b->loop, UV_RUN_ONCE);
    return -1;
  }
  while (!c.exited)
    uv_run(&b->loop, UV_RUN_ONCE);
  if (elapsed_ms)
    *elapsed_ms = ms_since(t0);
  uv_close((uv_handle_t *)&c.proc, on_child_closed);
  while (!c.closed)
    uv_run(&b->loop, UV_RUN_ONCE);
  return c.status == 0 && c.term_signal == 0 ? 0 : -1;
}

static void show_file(const char *path, FILE *to) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
    fwrite(buf, 1, n, to);
  fclose(f);
}

static off_t file_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? st.st_size : -1;
}

/* The value of the last `key=` line of path, or NAN. */
static double file_value(const char *path, const char *key) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return NAN;
  char line[512];
  size_t kl = strlen(key);
  double v = NAN;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, key, kl) == 0 && line[kl] == '=')
      v = strtod(line + kl + 1, NULL);
  fclose(f);
  return v;
}

/* environ plus the given NAME=VALUE entries (which replace any of the same name). */
static char **env_with(char *const *add) {
  size_t n = 0, m = 0;
  while (environ[n])
    n++;
  while (add[m])
    m++;
  char **env = calloc(n + m + 1, sizeof(*env));
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    bool replaced = false;
    for (size_t j = 0; j < m; j++) {
      size_t nl = strcspn(add[j], "=");
      if (strncmp(environ[i], add[j], nl + 1) == 0)
        replaced = true;
    }
    if (!replaced)
      env[k++] = environ[i];
  }
  for (size_t j = 0; j < m; j++)
    env[k++] = add[j];
  return env;
}

static int run_pdsh(bench_t *b, double kite_p50) {
  const kite_local_node_t *ln0 = b->nodes[0].ln;
  size_t cap = 1;
  for (int i = 0; i < b->o.nodes; i++)
    cap += strlen(kite_local_node_address(b->nodes[i].ln)) + 1;
  char *list = calloc(1, cap);
  for (int i = 0; i < b->o.nodes; i++) {
    if (i)
      strcat(list, ",");
    strcat(list, kite_local_node_address(b->nodes[i].ln));
  }
  char *fanout = xsprintf("%d", b->o.nodes);
  char *user = xsprintf("%s", kite_local_node_user(ln0));
  /* Every node listens on the same port. Host keys are checked, never skipped. */
  char *ssh_args = xsprintf("PDSH_SSH_ARGS_APPEND=-F /dev/null -i %s -p %u -l %s "
                            "-o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null "
                            "-o StrictHostKeyChecking=yes -o BatchMode=yes "
                            "-o IdentitiesOnly=yes",
                            b->key_path, kite_local_node_port(ln0), user, b->known_hosts);
  char *add[] = {ssh_args, "PDSH_RCMD_TYPE=ssh", NULL};
  char **env = env_with(add);
  char *argv[] = {"pdsh", "-R", "ssh", "-f", fanout, "-l", user, "-w", list, "true", NULL};
  char *out = xsprintf("%s/pdsh.out", b->home), *err = xsprintf("%s/pdsh.err", b->home);
  int rounds = b->o.pdsh_rounds, rc = 0;
  double *ms = calloc((size_t)rounds, sizeof(*ms));
  /* One round first, not counted: it pays for loading ssh and pdsh from disk. */
  for (int r = -1; r < rounds && rc == 0; r++) {
    double t;
    if (run_child(b, argv, env, out, err, &t) != 0 || file_size(out) != 0 || file_size(err) != 0) {
      fprintf(stderr, "pdsh round failed:\n");
      show_file(out, stderr);
      show_file(err, stderr);
      rc = -1;
    } else if (r >= 0) {
      ms[r] = t;
    }
  }
  if (rc == 0) {
    double p50 = percentile(ms, rounds, 0.50);
    printf("pdsh_rounds=%d\n", rounds);
    printf("pdsh_p50_ms=%.1f\n", p50);
    printf("pdsh_mean_ms=%.1f\n", mean(ms, rounds));
    printf("ratio_vs_pdsh_p50=%.1f\n", p50 / kite_p50);
  }
  unlink(out);
  unlink(err);
  free(out);
  free(err);
  free(ms);
  free(env);
  free(ssh_args);
  free(user);
  free(fanout);
  free(list);
  return rc;
}

static int run_asyncssh(bench_t *b, double kite_p50) {
  int n = b->o.nodes, a = 0;
  char **argv = calloc((size_t)n + 20, sizeof(*argv));
  char *rounds = xsprintf("%d", b->o.rounds), *warmup = xsprintf("%d", b->o.warmup);
  argv[a++] = (char *)b->o.python;
  argv[a++] = (char *)b->o.asyncssh_script;
  argv[a++] = "--user";
  argv[a++] = (char *)kite_local_node_user(b->nodes[0].ln);
  argv[a++] = "--key";
  argv[a++] = b->key_path;
  argv[a++] = "--known-hosts";
  argv[a++] = b->known_hosts;
  argv[a++] = "--rounds";
  argv[a++] = rounds;
  argv[a++] = "--warmup";
  argv[a++] = warmup;
  if (b->o.asyncssh_command) {
    argv[a++] = "--command";
    argv[a++] = (char *)b->o.asyncssh_command;
  }
  /* So that the peer measures the node side's CPU the way run_kite() does. */
  size_t cap = 1;
  for (int i = 0; i < n; i++)
    cap += 12;
  char *pids = calloc(1, cap);
  for (int i = 0; i < n; i++)
    sprintf(pids + strlen(pids), "%s%d", i ? "," : "", kite_local_node_pid(b->nodes[i].ln));
  argv[a++] = "--node-pids";
  argv[a++] = pids;
  int first = a;
  for (int i = 0; i < n; i++)
    argv[a++] = xsprintf("%s:%u", kite_local_node_address(b->nodes[i].ln),
                         kite_local_node_port(b->nodes[i].ln));
  char *add[] = {"PYTHONWARNINGS=ignore", NULL};
  char **env = env_with(add);
  char *out = xsprintf("%s/asyncssh.out", b->home), *err = xsprintf("%s/asyncssh.err", b->home);
  int rc = run_child(b, argv, env, out, err, NULL);
  show_file(out, stdout);
  double p50 = file_value(out, "asyncssh_p50_ms");
  if (rc != 0 || isnan(p50)) {
    fprintf(stderr, "asyncssh peer failed:\n");
    show_file(err, stderr);
    rc = -1;
  } else {
    printf("ratio_vs_asyncssh_p50=%.2f\n", p50 / kite_p50);
  }
  unlink(out);
  unlink(err);
  free(out);
  free(err);
  free(env);
  for (int i = first; i < a; i++)
    free(argv[i]);
  free(pids);
  free(rounds);
  free(warmup);
  free(argv);
  return rc;
}

/* ---- teardown ------------------------------------------------------------------------------ */

static void on_session_closed(kite_ssh_t *s, void *data) {
  (void)s;
  ((bench_t *)data)->pending--;
}

static void on_node_stopped(kite_local_node_t *ln, int status, void *data) {
  (void)ln;
  (void)status;
  ((bench_t *)data)->pending--;
}

static void on_shut(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(bool *)data = true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  remove(path);
  return 0;
}

static int teardown(bench_t *b) {
  int rc = 0;
  b->pending = 0;
  for (int i = 0; i < b->o.nodes; i++)
    if (b->nodes[i].s) {
      b->pending++;
      kite_ssh_close(b->nodes[i].s, on_session_closed, b);
    }
  run_until_zero(b);
  for (int i = 0; i < b->o.nodes; i++)
    if (b->nodes[i].ln) {
      b->pending++;
      kite_local_node_stop(b->nodes[i].ln, on_node_stopped, b);
    }
  run_until_zero(b);
  bool shut = false;
  kite_runtime_shutdown(b->rt, on_shut, &shut);
  uv_run(&b->loop, UV_RUN_DEFAULT);
  if (!shut || kite_runtime_free(b->rt) != 0 || uv_loop_close(&b->loop) != 0) {
    fprintf(stderr, "the runtime or the loop did not close cleanly\n");
    rc = -1;
  }
  int left = kite_local_count_tagged(b->tag);
  printf("leftover_processes=%d\n", left);
  if (left != 0) {
    fprintf(stderr, "%d process(es) tagged %s are still running\n", left, b->tag);
    rc = -1;
  }
  nftw(b->home, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void usage(const char *argv0) {
  fprintf(stderr,
          "usage: %s [--nodes N] [--rounds R] [--warmup W] [--single S] [--pdsh-rounds P]\n"
          "          [--no-pdsh] [--no-asyncssh] [--python PATH] [--asyncssh-script PATH]\n"
          "          [--asyncssh-command CMD] [--port PORT]\n",
          argv0);
}

static const char *default_script(void) {
  /* Beside this source file (CMake compiles it by its absolute path). */
  static char path[PATH_MAX];
  char src[PATH_MAX];
  snprintf(src, sizeof(src), "%s", __FILE__);
  snprintf(path, sizeof(path), "%s/broadcast_asyncssh.py", dirname(src));
  return path;
}

int main(int argc, char **argv) {
  static bench_t B;
  bench_t *b = &B;
  b->o = (opts_t){.nodes = 32,
                  .rounds = 50,
                  .warmup = 5,
                  .single = 20,
                  .pdsh_rounds = 5,
                  .asyncssh = 1,
                  .python = "/usr/bin/python3",
                  .asyncssh_script = default_script()};
  for (int i = 1; i < argc; i++) {
    bool more = i + 1 < argc;
    if (more && strcmp(argv[i], "--nodes") == 0)
      b->o.nodes = atoi(argv[++i]);
    else if (more && strcmp(argv[i], "--rounds") == 0)
      b->o.rounds = atoi(argv[++i]);
    else if (more && strcmp(argv[i], "--warmup") == 0)
      b->o.warmup = atoi(argv[++i]);
    else if (more && strcmp(argv[i], "--single") == 0)
      b->o.single = atoi(argv[++i]);
    else if (more && strcmp(argv[i], "--pdsh-rounds") == 0)
      b->o.pdsh_rounds = atoi(argv[++i]);
    else if (strcmp(argv[i], "--no-pdsh") == 0)
      b->o.pdsh_rounds = 0;
    else if (strcmp(argv[i], "--no-asyncssh") == 0)
      b->o.asyncssh = 0;
    else if (more && strcmp(argv[i], "--python") == 0)
      b->o.python = argv[++i];
    else if (more && strcmp(argv[i], "--asyncssh-script") == 0)
      b->o.asyncssh_script = argv[++i];
    else if (more && strcmp(argv[i], "--asyncssh-command") == 0)
      b->o.asyncssh_command = argv[++i];
    else if (more && strcmp(argv[i], "--port") == 0)
      b->o.port = (uint16_t)atoi(argv[++i]);
    else {
      usage(argv[0]);
      return 2;
    }
  }
  if (b->o.nodes <= 0 || b->o.rounds <= 0 || b->o.warmup < 0 || b->o.single < 0 ||
      b->o.pdsh_rounds < 0) {
    usage(argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);

  char *load = NULL;
  if (read_line_file("/proc/loadavg", &load) == 0)
    printf("loadavg=%s\n", load);
  free(load);

  snprintf(b->home, sizeof(b->home), "/tmp/kite-bench-broadcast-XXXXXX");
  if (mkdtemp(b->home) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  /* As root, the nodes' unprivileged login user must reach the directories below. */
  chmod(b->home, 0755);
  snprintf(b->tag, sizeof(b->tag), "bench-broadcast-%ld", (long)getpid());
  if (uv_loop_init(&b->loop) != 0) {
    fprintf(stderr, "uv_loop_init failed\n");
    return 1;
  }
  kite_runtime_options_t ro = {.loop = &b->loop, .home = b->home, .log_level = KITE_LOG_ERROR};
  int rc = kite_runtime_new(&b->rt, &ro);
  if (rc != 0) {
    fprintf(stderr, "kite_runtime_new: %s\n", kite_strerror(rc));
    return 1;
  }
  b->nodes = calloc((size_t)b->o.nodes, sizeof(*b->nodes));
  for (int i = 0; i < b->o.nodes; i++) {
    b->nodes[i].b = b;
    b->nodes[i].i = i;
  }

  int bad = 0;
  b->key_path = xsprintf("%s/id_ed25519", b->home);
  b->pending = 1;
  rc = kite_keypair_ensure(b->rt, b->key_path, on_key, b);
  if (rc != 0) {
    fprintf(stderr, "kite_keypair_ensure: %s\n", kite_strerror(rc));
    bad = 1;
  } else {
    run_until_zero(b);
    char *pub = xsprintf("%s.pub", b->key_path);
    if (b->failures || read_line_file(pub, &b->pub_key) != 0) {
      fprintf(stderr, "no public key at %s\n", pub);
      bad = 1;
    }
    free(pub);
  }

  kite_result_t kr = {0};
  if (!bad)
    bad = start_nodes(b) != 0;
  if (!bad)
    bad = write_known_hosts(b) != 0;
  if (!bad)
    bad = connect_all(b) != 0;
  if (!bad)
    bad = run_kite(b, &kr) != 0;
  if (!bad && b->o.asyncssh)
    bad = run_asyncssh(b, kr.p50) != 0;
  if (!bad && b->o.pdsh_rounds > 0)
    bad = run_pdsh(b, kr.p50) != 0;

  if (teardown(b) != 0)
    bad = 1;
  free(b->nodes);
  free(b->key_path);
  free(b->pub_key);
  free(b->known_hosts);
  if (bad)
    fprintf(stderr, "broadcast_bench: FAILED\n");
  return bad;
}
