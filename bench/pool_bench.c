/* Pool open and close on the local provider: how long until every node is READY, and where
 * that time goes.
 *
 * Design notes
 *
 * One runtime with the local provider, the transport and the bootstrap runner. A warm-up pool
 * of one node is opened and closed first, so kite's SSH key exists and the binaries are in the
 * page cache; its time is printed but is not one of the figures. Then, for each size, a pool
 * is opened with a three-step bootstrap (env, file, run) and the defaults a user gets
 * (monitors on, dead-man's switch on), and closed once every node is READY:
 *
 *   pool_ready_s  kite_pool_open() → the open callback (every node READY)
 *   close_s       kite_pool_close() → its callback (every instance confirmed gone)
 *
 * Phases per node come from the bus, stamped with each event's emission time (ev->ts_ms):
 * node_state_changed, session_ready, bootstrap_progress, and the replies the node's own requests
 * get, which are also delivered to subscribers of their fact type (task_finished of the watchdog
 * install, transfer_done of the script upload):
 *
 *   launch            PROVISIONING → BOOTSTRAPPING   the local provider starts the sshd
 *   connect           BOOTSTRAPPING → session_ready  TCP connect, SSH handshake, auth
 *   watchdog          session_ready → task_finished  the dead-man's switch install (one exec)
 *   connect_watchdog  connect + watchdog
 *   upload            task_finished → transfer_done  the bootstrap script written over SFTP
 *   script            transfer_done → READY          running the script, split into
 *   exec_start        transfer_done → first step     its exec (channel, sshd's fork, sh)
 *   steps             first step → READY             its three steps and its exit
 *   bootstrap         upload + script
 *
 * For each phase the median and the maximum over the nodes are printed, and for the whole
 * pool the moments (from the open) when the last node left each phase: since the nodes run
 * in parallel, those say which phase the pool actually waits for. The controller's own CPU
 * (getrusage) during the open is printed beside the whole machine's (/proc/stat, busy share
 * of all cores): kite, the nodes' sshds and shells, and anyone else share the cores, so a
 * machine near 100% busy while kite's share is small means the open waits for CPU on the
 * node side.
 *
 * At exit the runtime is shut down and no process carrying one of the pools' tags may be
 * left (kite_local_count_tagged); the program fails otherwise.
 *
 *   pool_bench [--nodes 16,64]
 *
 * Output: key=value lines, each size's keys prefixed by nodes=N on the line before. */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kite/kite.h"

#define MAX_SIZES 8

enum {
  PH_LAUNCH,
  PH_CONNECT,
  PH_WATCHDOG,
  PH_CONNECT_WATCHDOG,
  PH_UPLOAD,
  PH_SCRIPT,
  PH_EXEC_START,
  PH_STEPS,
  PH_BOOTSTRAP,
  PH__COUNT
};
static const char *const phase_names[PH__COUNT] = {"launch",           "connect", "watchdog",
                                                   "connect_watchdog", "upload",  "script",
                                                   "exec_start",       "steps",   "bootstrap"};

/* Emission times (wall ms) of the events that bound the phases of one rank; 0: not seen. */
typedef struct marks {
  uint64_t node_id;
  uint64_t provisioning, bootstrapping, session, watchdog, uploaded, first_step, ready;
} marks_t;

/* ---- the nodes' CPU, by program ---------------------------------------------------------- */

/* Every process that descends from this one is a node's (unshare, its sh, sshd, the
 * sessions, their shells). Per program name (comm) the CPU it used itself and the CPU of the
 * children it reaped (ssh-keygen and mount under the node's sh, the shells under sshd) is
 * summed; both are read at READY, while every node's processes are still alive. */
typedef struct prow {
  int pid, ppid;
  char comm[32];
  unsigned long long self, reaped;
} prow_t;

typedef struct cpu_by_comm {
  char comm[32];
  unsigned long long self, reaped;
  unsigned procs;
} cpu_by_comm_t;

static bool read_prow(int pid, prow_t *row) {
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
  char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
  if (open_paren == NULL || close_paren == NULL || close_paren < open_paren)
    return false;
  size_t len = (size_t)(close_paren - open_paren - 1);
  if (len >= sizeof(row->comm))
    len = sizeof(row->comm) - 1;
  memcpy(row->comm, open_paren + 1, len);
  row->comm[len] = '\0';
  unsigned long long ut, st;
  long long cut, cst;
  if (sscanf(close_paren + 1, " %*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld",
             &row->ppid, &ut, &st, &cut, &cst) != 5)
    return false;
  row->pid = pid;
  row->self = ut + st;
  row->reaped = (unsigned long long)cut + (unsigned long long)cst;
  return true;
}

/* Fills out[] (at most max entries, sorted by total CPU) and returns the count. */
static int node_cpu(cpu_by_comm_t *out, int max) {
  DIR *d = opendir("/proc");
  if (d == NULL)
    return 0;
  size_t cap = 1024, n = 0;
  prow_t *rows = malloc(cap * sizeof(*rows));
  struct dirent *e;
  while (rows && (e = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    if (n == cap) {
      prow_t *g = realloc(rows, 2 * cap * sizeof(*rows));
      if (g == NULL)
        break;
      rows = g;
      cap *= 2;
    }
    if (read_prow((int)pid, &rows[n]))
      n++;
  }
  closedir(d);
  int used = 0;
  int self = (int)getpid();
  for (size_t i = 0; rows && i < n; i++) {
    /* Is rows[i] a descendant of this process? Walk up its parents (depth is small). */
    int p = rows[i].ppid, depth = 0;
    while (p > 1 && p != self && depth++ < 64) {
      size_t k;
      for (k = 0; k < n && rows[k].pid != p; k++)
        ;
      p = k < n ? rows[k].ppid : 0;
    }
    if (p != self)
      continue;
    int k;
    for (k = 0; k < used && strcmp(out[k].comm, rows[i].comm) != 0; k++)
      ;
    if (k == used) {
      if (used == max)
        continue;
      memset(&out[used], 0, sizeof(out[used]));
      snprintf(out[used].comm, sizeof(out[used].comm), "%s", rows[i].comm);
      used++;
    }
    out[k].self += rows[i].self;
    out[k].reaped += rows[i].reaped;
    out[k].procs++;
  }
  free(rows);
  /* Largest first. */
  for (int i = 1; i < used; i++)
    for (int j = i; j > 0 && out[j].self + out[j].reaped > out[j - 1].self + out[j - 1].reaped;
         j--) {
      cpu_by_comm_t t = out[j];
      out[j] = out[j - 1];
      out[j - 1] = t;
    }
  return used;
}

typedef struct bench {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  char home[64];
  kite_pool_t *pool;
  unsigned nodes;
  marks_t *marks;
  char name[48];
  uint64_t open_wall_ms;
  uint64_t t_open, t_ready, t_close_start, t_closed;
  double cpu_open, cpu_ready; /* controller CPU seconds at the open and at READY */
  unsigned long long busy_open, total_open, busy_ready, total_ready; /* machine jiffies */
  cpu_by_comm_t comm[16];                                            /* the nodes' CPU at READY */
  int ncomm;
  int open_status;
  char open_msg[512];
  int close_status;
  bool opened, closed;
  int failures;
  char tags[MAX_SIZES + 1][64];
  int ntags;
} bench_t;

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Busy and total jiffies of the whole machine (the "cpu" line of /proc/stat). */
static void machine_jiffies(unsigned long long *busy, unsigned long long *total) {
  unsigned long long v[8] = {0};
  *busy = *total = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL)
    return;
  if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
             &v[5], &v[6], &v[7]) == 8) {
    for (int i = 0; i < 8; i++)
      *total += v[i];
    *busy = *total - v[3] - v[4]; /* minus idle and iowait */
  }
  fclose(f);
}

static void print_loadavg(void) {
  char buf[128] = "";
  FILE *f = fopen("/proc/loadavg", "r");
  if (f) {
    if (fgets(buf, sizeof(buf), f) == NULL)
      buf[0] = '\0';
    fclose(f);
  }
  buf[strcspn(buf, "\n")] = '\0';
  printf("loadavg=%s\n", buf);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median (mean of the two middle values for an even count) and maximum of v[0..n). */
static void median_max(double *v, unsigned n, double *med, double *max) {
  if (n == 0) {
    *med = *max = NAN;
    return;
  }
  qsort(v, n, sizeof(*v), cmp_double);
  *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  *max = v[n - 1];
}

/* ---- events ------------------------------------------------------------------------------ */

static marks_t *marks_of_rank(bench_t *b, uint64_t pool, uint32_t rank) {
  if (b->pool == NULL || pool != kite_pool_id(b->pool) || rank >= b->nodes)
    return NULL;
  return &b->marks[rank];
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_state_changed_t *p,
                     void *data) {
  (void)bus;
  marks_t *m = marks_of_rank(data, p->pool, p->rank);
  if (m == NULL)
    return;
  m->node_id = p->node;
  if (p->to == KITE_NODE_PROVISIONING && m->provisioning == 0)
    m->provisioning = ev->ts_ms;
  else if (p->to == KITE_NODE_BOOTSTRAPPING && m->bootstrapping == 0)
    m->bootstrapping = ev->ts_ms;
  else if (p->to == KITE_NODE_READY && m->ready == 0)
    m->ready = ev->ts_ms;
}

static void on_session(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_session_ready_t *p,
                       void *data) {
  bench_t *b = data;
  (void)bus;
  for (unsigned r = 0; r < b->nodes; r++)
    if (b->marks[r].node_id == p->node) {
      if (b->marks[r].session == 0)
        b->marks[r].session = ev->ts_ms;
      return;
    }
}

/* The first command a node runs while BOOTSTRAPPING is the watchdog install. */
static void on_finished(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_finished_t *p,
                        void *data) {
  (void)bus;
  marks_t *m = marks_of_rank(data, p->pool, p->rank);
  if (m && m->session && m->watchdog == 0 && m->ready == 0)
    m->watchdog = ev->ts_ms;
}

static void on_transfer(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_transfer_done_t *p,
                        void *data) {
  bench_t *b = data;
  (void)bus;
  for (unsigned r = 0; r < b->nodes; r++)
    if (b->marks[r].node_id == p->node) {
      if (b->marks[r].uploaded == 0 && b->marks[r].ready == 0)
        b->marks[r].uploaded = ev->ts_ms;
      return;
    }
}

static void on_progress(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_bootstrap_progress_t *p, void *data) {
  (void)bus;
  marks_t *m = marks_of_rank(data, p->pool, p->rank);
  if (m && m->first_step == 0)
    m->first_step = ev->ts_ms;
}

/* ---- one pool ------------------------------------------------------------------------------ */

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  bench_t *b = data;
  (void)pool;
  b->t_ready = uv_hrtime();
  b->cpu_ready = cpu_s();
  machine_jiffies(&b->busy_ready, &b->total_ready);
  b->ncomm = node_cpu(b->comm, (int)(sizeof(b->comm) / sizeof(b->comm[0])));
  b->opened = true;
  b->open_status = status;
  snprintf(b->open_msg, sizeof(b->open_msg), "%s", message ? message : "");
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  bench_t *b = data;
  (void)pool;
  b->t_closed = uv_hrtime();
  b->closed = true;
  b->close_status = status;
}

static kite_bootstrap_t *three_steps(void) {
  kite_bootstrap_t *bs = NULL;
  static const char content[] = "written by pool_bench's bootstrap\n";
  if (kite_bootstrap_new(&bs) != 0 ||
      kite_bootstrap_env(bs, "BENCH_GREETING", "hello", false) != 0 ||
      kite_bootstrap_file(bs, "bench/motd.txt", content, sizeof(content) - 1, 0644) != 0 ||
      kite_bootstrap_run(bs, "check", "test -n \"$BENCH_GREETING\" && test -s bench/motd.txt")) {
    fprintf(stderr, "pool_bench: cannot build the bootstrap\n");
    exit(1);
  }
  return bs;
}

/* Opens a pool of n nodes, waits for READY, closes it. Returns 0 when both succeeded. */
static int open_close(bench_t *b, unsigned n, const char *what) {
  b->nodes = n;
  free(b->marks);
  b->marks = calloc(n, sizeof(*b->marks));
  b->opened = b->closed = false;
  snprintf(b->name, sizeof(b->name), "pb%d-%s", (int)getpid(), what);
  if (b->ntags < MAX_SIZES + 1)
    snprintf(b->tags[b->ntags++], sizeof(b->tags[0]), "kite-pool-%s", b->name);
  kite_bootstrap_t *bs = three_steps();
  kite_pool_spec_t spec = {.name = b->name, .nodes = n, .bootstrap = bs};
  b->cpu_open = cpu_s();
  machine_jiffies(&b->busy_open, &b->total_open);
  b->open_wall_ms = wall_ms();
  b->t_open = uv_hrtime();
  int rc = kite_pool_open(b->rt, &spec, on_open, b, &b->pool);
  kite_bootstrap_free(bs);
  if (rc != 0) {
    fprintf(stderr, "pool_bench: kite_pool_open: %s\n", kite_strerror(rc));
    return rc;
  }
  uv_loop_t *loop = kite_runtime_loop(b->rt);
  while (!b->opened)
    uv_run(loop, UV_RUN_ONCE);
  /* Deliver what the nodes emitted up to READY before the pool changes again. */
  kite_bus_drain(b->bus, 0);
  if (b->open_status != 0)
    fprintf(stderr, "pool_bench: %u nodes: open failed: %s (%s)\n", n,
            kite_strerror(b->open_status), b->open_msg);
  b->t_close_start = uv_hrtime();
  kite_pool_close(b->pool, on_closed, b);
  while (!b->closed)
    uv_run(loop, UV_RUN_ONCE);
  b->pool = NULL;
  if (b->close_status != 0)
    fprintf(stderr, "pool_bench: %u nodes: close: %s\n", n, kite_strerror(b->close_status));
  return b->open_status != 0 ? b->open_status : b->close_status;
}

static void report(bench_t *b) {
  unsigned n = b->nodes;
  double *v = calloc(n, sizeof(*v));
  uint64_t last[PH__COUNT] = {0};
  for (int ph = 0; ph < PH__COUNT; ph++) {
    unsigned k = 0;
    for (unsigned r = 0; r < n; r++) {
      const marks_t *m = &b->marks[r];
      uint64_t from = 0, to = 0;
      switch (ph) {
      case PH_LAUNCH:
        from = m->provisioning, to = m->bootstrapping;
        break;
      case PH_CONNECT:
        from = m->bootstrapping, to = m->session;
        break;
      case PH_WATCHDOG:
        from = m->session, to = m->watchdog;
        break;
      case PH_CONNECT_WATCHDOG:
        from = m->bootstrapping, to = m->watchdog;
        break;
      case PH_UPLOAD:
        from = m->watchdog, to = m->uploaded;
        break;
      case PH_SCRIPT:
        from = m->uploaded, to = m->ready;
        break;
      case PH_EXEC_START:
        from = m->uploaded, to = m->first_step;
        break;
      case PH_STEPS:
        from = m->first_step, to = m->ready;
        break;
      case PH_BOOTSTRAP:
        from = m->watchdog, to = m->ready;
        break;
      default:
        abort();
      }
      if (from && to >= from) {
        v[k++] = (double)(to - from);
        if (to > last[ph])
          last[ph] = to;
      }
    }
    double med, max;
    median_max(v, k, &med, &max);
    if (k != n)
      printf("phase_%s_samples=%u\n", phase_names[ph], k);
    printf("phase_%s_p50_ms=%.0f\n", phase_names[ph], med);
    printf("phase_%s_max_ms=%.0f\n", phase_names[ph], max);
  }
  /* Critical path: when (from the open) the last node left each phase. */
  for (int ph = 0; ph < PH__COUNT; ph++)
    printf("last_%s_end_ms=%lld\n", phase_names[ph],
           last[ph] ? (long long)(last[ph] - b->open_wall_ms) : -1LL);
  printf("open_controller_cpu_s=%.3f\n", b->cpu_ready - b->cpu_open);
  /* Everything the machine did meanwhile: the nodes' sshds and shells, kite, other users. */
  unsigned long long busy = b->busy_ready - b->busy_open, total = b->total_ready - b->total_open;
  long hz = sysconf(_SC_CLK_TCK);
  printf("open_machine_cpu_s=%.2f\n", (double)busy / (double)(hz > 0 ? hz : 100));
  printf("open_machine_busy_pct=%.0f\n", total ? 100.0 * (double)busy / (double)total : NAN);
  /* The nodes' share of it, by program: self, and what it reaped (its short-lived children). */
  for (int k = 0; k < b->ncomm; k++)
    printf("node_cpu_s[%s]=%.2f procs=%u self=%.2f reaped=%.2f\n", b->comm[k].comm,
           (double)(b->comm[k].self + b->comm[k].reaped) / (double)(hz > 0 ? hz : 100),
           b->comm[k].procs, (double)b->comm[k].self / (double)(hz > 0 ? hz : 100),
           (double)b->comm[k].reaped / (double)(hz > 0 ? hz : 100));
  free(v);
}

static void usage(void) {
  fprintf(stderr, "usage: pool_bench [--nodes N[,N...]]\n");
  exit(2);
}

int main(int argc, char **argv) {
  unsigned sizes[MAX_SIZES] = {16, 64};
  int nsizes = 2;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
      nsizes = 0;
      for (char *s = strtok(argv[++i], ","); s && nsizes < MAX_SIZES; s = strtok(NULL, ","))
        if ((sizes[nsizes++] = (unsigned)strtoul(s, NULL, 10)) == 0)
          usage();
    } else {
      usage();
    }
  }
  if (nsizes == 0)
    usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  print_loadavg();

  bench_t b = {0};
  snprintf(b.home, sizeof(b.home), "/tmp/kite-bench-pool-XXXXXX");
  if (mkdtemp(b.home) == NULL || chmod(b.home, 0755) != 0) {
    perror("pool_bench: mkdtemp");
    return 1;
  }
  kite_runtime_options_t ro = {.home = b.home, .log_level = KITE_LOG_ERROR};
  int rc = kite_runtime_new(&b.rt, &ro);
  if (rc == 0)
    rc = kite_local_provider_new(b.rt, NULL, NULL);
  if (rc == 0)
    rc = kite_transport_new(b.rt, NULL, NULL);
  if (rc == 0)
    rc = kite_bootstrap_runner_new(b.rt, NULL);
  if (rc != 0) {
    fprintf(stderr, "pool_bench: cannot start kite: %s\n", kite_strerror(rc));
    return 1;
  }
  b.bus = kite_runtime_bus(b.rt);
  kite_on_node_state_changed(b.bus, KITE_KEY_ANY, on_state, &b, NULL);
  kite_on_session_ready(b.bus, KITE_KEY_ANY, on_session, &b, NULL);
  kite_on_bootstrap_progress(b.bus, KITE_KEY_ANY, on_progress, &b, NULL);
  kite_on_task_finished(b.bus, KITE_KEY_ANY, on_finished, &b, NULL);
  kite_on_transfer_done(b.bus, KITE_KEY_ANY, on_transfer, &b, NULL);

  /* Warm-up: the SSH key, the page cache, the address locks' directory. */
  if (open_close(&b, 1, "warmup") != 0)
    b.failures++;
  printf("warmup_ready_s=%.3f\n", (double)(b.t_ready - b.t_open) / 1e9);

  for (int s = 0; s < nsizes && b.failures == 0; s++) {
    char what[16];
    snprintf(what, sizeof(what), "n%u", sizes[s]);
    rc = open_close(&b, sizes[s], what);
    printf("nodes=%u\n", sizes[s]);
    if (rc != 0) {
      b.failures++;
      break;
    }
    printf("pool_ready_s=%.3f\n", (double)(b.t_ready - b.t_open) / 1e9);
    printf("close_s=%.3f\n", (double)(b.t_closed - b.t_close_start) / 1e9);
    report(&b);
  }

  kite_runtime_shutdown(b.rt, NULL, NULL);
  kite_runtime_run(b.rt);
  if (kite_runtime_free(b.rt) != 0) {
    fprintf(stderr, "pool_bench: the runtime still had handles at exit\n");
    b.failures++;
  }
  free(b.marks);
  for (int t = 0; t < b.ntags; t++) {
    int left = kite_local_count_tagged(b.tags[t]);
    if (left != 0) {
      fprintf(stderr, "pool_bench: %d process(es) of %s left behind\n", left, b.tags[t]);
      b.failures++;
    }
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b.home);
  if (system(cmd) != 0)
    b.failures++;
  return b.failures ? 1 : 0;
}
