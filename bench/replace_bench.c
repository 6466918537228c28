/* Replacement of preempted nodes, and what the monitors cost the controller.
 *
 * Design notes
 *
 * Part 1, replace_s. A pool of --nodes local nodes (default 4) with replacement on and both
 * monitors at 1 s intervals; the local provider's notice period is --notice-ms (default 1000).
 * --preemptions times (default 6), one rank at a time, the bench preempts a READY node,
 * alternately abruptly (the node dies at once) and with notice (it dies when the notice period
 * is over), and waits for node_replaced of that rank. For each preemption:
 *
 *   replace_s  the node's death → its replacement READY (node_replaced). The death is the
 *              preempt call (abrupt) or the call + the notice period (with notice).
 *   notice_seen  (with notice) the preempt call → node_preempting: the preemption monitor's
 *              1 s poll of the provider at work (the node drains meanwhile)
 *   detect     death → REPLACING        the monitors (or the session's loss) noticed it
 *   terminate  REPLACING → PROVISIONING  the old instance terminated and confirmed
 *   relaunch   PROVISIONING → READY      launch, connect, watchdog, bootstrap of the new one
 *
 * printed per preemption and as medians (all, abrupt, notice). Between preemptions the bench
 * waits a fraction of a second that varies, so the deaths fall at different points of the
 * monitors' 1 s cycle.
 *
 * Part 2, monitor_cpu_pct. A pool of --cpu-nodes (default 256) READY nodes is held open for
 * --window seconds (default 20) twice: first with monitors_off, then with the health and
 * preemption monitors at 1 s intervals. The controller's CPU over each window comes from
 * getrusage(RUSAGE_SELF), so the nodes' own processes (sshd answering the checks) are not in
 * it; the difference of the two windows, as a share of one core, is the monitors' cost with
 * the pool's and the transport's idle cost subtracted. Checks run in the window are counted
 * from their metric events (health_ms / health_failures, preempt_state), which gives the cost
 * per check; node_lost and node_replaced in the window are counted too, since a loaded
 * machine can make health checks time out and a replacement would cost far more than a check.
 * The machine's busy share (/proc/stat) is printed for each window.
 *
 *   replace_bench [--nodes N] [--preemptions K] [--notice-ms MS] [--cpu-nodes N]
 *                 [--window S] [--split] [--skip-replace] [--skip-cpu]
 *
 * --split adds two windows, each monitor alone (the other one's interval set beyond the
 * window), to say which of the two costs what.
 *
 * At exit the runtime is shut down and no process of the bench's pools may be left. */
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

#define MAX_PREEMPTIONS 64
#define MAX_TAGS 8

typedef struct sample {
  uint32_t rank;
  bool abrupt;
  uint64_t preempt_ms, death_ms; /* wall ms: the preempt call, the node's death */
  uint64_t notice_ms;            /* node_preempting (the preemption monitor saw the notice) */
  uint64_t replacing_ms, provisioning_ms, ready_ms, replaced_ms;
} sample_t;

typedef struct bench {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  kite_local_provider_t *lp;
  char home[64];
  kite_pool_t *pool;
  char name[48];
  bool opened, closed, timer_fired;
  int open_status, close_status;
  char open_msg[512];
  uv_timer_t timer;
  /* part 1 */
  sample_t *cur; /* the preemption being waited for, or NULL */
  /* part 2: counters of the current window */
  bool counting;
  uint64_t health_checks, health_failures, preempt_checks, lost, replaced;
  char tags[MAX_TAGS][64];
  int ntags;
  int failures;
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

static double median(double *v, unsigned n) {
  if (n == 0)
    return NAN;
  qsort(v, n, sizeof(*v), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- waiting on the loop ------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  bench_t *b = kite_container_of(t, bench_t, timer);
  b->timer_fired = true;
}

/* Runs the loop until *flag is set or timeout_ms passed; returns *flag. */
static bool run_until(bench_t *b, const bool *flag, uint64_t timeout_ms) {
  b->timer_fired = false;
  uv_timer_start(&b->timer, on_timer, timeout_ms, 0);
  while (!*flag && !b->timer_fired)
    uv_run(kite_runtime_loop(b->rt), UV_RUN_ONCE);
  uv_timer_stop(&b->timer);
  return *flag;
}

static void run_for(bench_t *b, uint64_t ms) {
  bool never = false;
  run_until(b, &never, ms);
}

/* ---- events --------------------------------------------------------------------------------- */

static bool ours(bench_t *b, uint64_t pool) {
  return b->pool != NULL && pool == kite_pool_id(b->pool);
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_state_changed_t *p,
                     void *data) {
  bench_t *b = data;
  (void)bus;
  sample_t *s = b->cur;
  if (!ours(b, p->pool) || s == NULL || p->rank != s->rank)
    return;
  if (p->to == KITE_NODE_REPLACING && s->replacing_ms == 0)
    s->replacing_ms = ev->ts_ms;
  else if (p->to == KITE_NODE_PROVISIONING && s->replacing_ms && s->provisioning_ms == 0)
    s->provisioning_ms = ev->ts_ms;
  else if (p->to == KITE_NODE_READY && s->provisioning_ms && s->ready_ms == 0)
    s->ready_ms = ev->ts_ms;
}

static void on_replaced(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_replaced_t *p,
                        void *data) {
  bench_t *b = data;
  (void)bus;
  if (!ours(b, p->pool))
    return;
  if (b->counting)
    b->replaced++;
  if (b->cur && p->rank == b->cur->rank && b->cur->replaced_ms == 0)
    b->cur->replaced_ms = ev->ts_ms;
}

static void on_preempting(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_node_preempting_t *p, void *data) {
  bench_t *b = data;
  (void)bus;
  if (ours(b, p->pool) && b->cur && p->rank == b->cur->rank && b->cur->notice_ms == 0)
    b->cur->notice_ms = ev->ts_ms;
}

static void on_lost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                    void *data) {
  bench_t *b = data;
  (void)bus;
  (void)ev;
  if (ours(b, p->pool) && b->counting)
    b->lost++;
}

static void on_metric(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_metric_t *p,
                      void *data) {
  bench_t *b = data;
  (void)bus;
  (void)ev;
  if (!b->counting || p->name == NULL)
    return;
  if (strcmp(p->name, "health_ms") == 0)
    b->health_checks++;
  else if (strcmp(p->name, "health_failures") == 0)
    b->health_checks++, b->health_failures++;
  else if (strcmp(p->name, "preempt_state") == 0)
    b->preempt_checks++;
}

/* ---- pools ---------------------------------------------------------------------------------- */

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  bench_t *b = data;
  (void)pool;
  b->opened = true;
  b->open_status = status;
  snprintf(b->open_msg, sizeof(b->open_msg), "%s", message ? message : "");
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  bench_t *b = data;
  (void)pool;
  b->closed = true;
  b->close_status = status;
}

static kite_bootstrap_t *three_steps(void) {
  kite_bootstrap_t *bs = NULL;
  static const char content[] = "written by replace_bench's bootstrap\n";
  if (kite_bootstrap_new(&bs) != 0 ||
      kite_bootstrap_env(bs, "BENCH_GREETING", "hello", false) != 0 ||
      kite_bootstrap_file(bs, "bench/motd.txt", content, sizeof(content) - 1, 0644) != 0 ||
      kite_bootstrap_run(bs, "check", "test -n \"$BENCH_GREETING\" && test -s bench/motd.txt")) {
    fprintf(stderr, "replace_bench: cannot build the bootstrap\n");
    exit(1);
  }
  return bs;
}

/* Opens a pool and runs the loop until it is READY; returns the open's status, and the time it
 * took in *ready_s. */
/* Which monitors a pool runs. */
typedef enum mon_mode { MON_OFF, MON_BOTH, MON_HEALTH, MON_PREEMPT } mon_mode_t;

/* An interval no window reaches: the monitor exists but never ticks within it. */
#define NEVER_MS (24ull * 3600 * 1000)

static int pool_open(bench_t *b, const char *what, unsigned nodes, mon_mode_t mode,
                     double *ready_s) {
  snprintf(b->name, sizeof(b->name), "rb%d-%s", (int)getpid(), what);
  if (b->ntags < MAX_TAGS)
    snprintf(b->tags[b->ntags++], sizeof(b->tags[0]), "kite-pool-%s", b->name);
  kite_bootstrap_t *bs = three_steps();
  kite_pool_spec_t spec = {.name = b->name,
                           .nodes = nodes,
                           .bootstrap = bs,
                           .replace = true,
                           .monitors_off = mode == MON_OFF,
                           .connect_timeout_ms = 120000};
  spec.monitors.health_interval_ms = mode == MON_PREEMPT ? NEVER_MS : 1000;
  spec.monitors.health_timeout_ms = 1000;
  spec.monitors.preempt_interval_ms = mode == MON_HEALTH ? NEVER_MS : 1000;
  spec.monitors.jitter_ms = 100;
  b->opened = b->closed = false;
  uint64_t t0 = uv_hrtime();
  int rc = kite_pool_open(b->rt, &spec, on_open, b, &b->pool);
  kite_bootstrap_free(bs);
  if (rc != 0) {
    fprintf(stderr, "replace_bench: kite_pool_open: %s\n", kite_strerror(rc));
    b->pool = NULL;
    return rc;
  }
  while (!b->opened)
    uv_run(kite_runtime_loop(b->rt), UV_RUN_ONCE);
  *ready_s = (double)(uv_hrtime() - t0) / 1e9;
  if (b->open_status != 0)
    fprintf(stderr, "replace_bench: %s: open failed: %s (%s)\n", b->name,
            kite_strerror(b->open_status), b->open_msg);
  return b->open_status;
}

static int pool_close(bench_t *b, double *close_s) {
  uint64_t t0 = uv_hrtime();
  kite_pool_close(b->pool, on_closed, b);
  while (!b->closed)
    uv_run(kite_runtime_loop(b->rt), UV_RUN_ONCE);
  *close_s = (double)(uv_hrtime() - t0) / 1e9;
  b->pool = NULL;
  if (b->close_status != 0)
    fprintf(stderr, "replace_bench: %s: close: %s\n", b->name, kite_strerror(b->close_status));
  return b->close_status;
}

/* ---- part 1: replacement time -----------------------------------------------------------------
 */

static int bench_replace(bench_t *b, unsigned nodes, unsigned preemptions, uint64_t notice_ms) {
  double ready_s, close_s;
  if (pool_open(b, "replace", nodes, MON_BOTH, &ready_s) != 0)
    return -1;
  printf("replace_pool_nodes=%u\n", nodes);
  printf("replace_pool_ready_s=%.3f\n", ready_s);
  sample_t samples[MAX_PREEMPTIONS] = {{0}};
  unsigned done = 0;
  int rc = 0;
  for (unsigned k = 0; k < preemptions && k < MAX_PREEMPTIONS; k++) {
    /* Let the monitors settle into their cycle; vary where in it the death falls. */
    run_for(b, 1000 + (k * 370) % 1000);
    sample_t *s = &samples[k];
    s->rank = k % nodes;
    s->abrupt = k % 2 == 0;
    if (kite_pool_node_state(b->pool, s->rank) != KITE_NODE_READY) {
      fprintf(stderr, "replace_bench: rank %u is %s, not READY\n", s->rank,
              kite_node_state_name(kite_pool_node_state(b->pool, s->rank)));
      rc = -1;
      break;
    }
    const char *id = kite_pool_instance_id(b->pool, s->rank);
    b->cur = s;
    uint64_t now = wall_ms();
    if (kite_local_provider_preempt(b->lp, id, s->abrupt) != 0) {
      fprintf(stderr, "replace_bench: cannot preempt %s\n", id);
      rc = -1;
      break;
    }
    s->preempt_ms = now;
    s->death_ms = now + (s->abrupt ? 0 : notice_ms);
    bool replaced = false;
    /* Generous: a loaded machine may be slow; a miss is reported, not hidden. */
    uint64_t deadline = uv_hrtime() + (notice_ms + 30000) * 1000000ull;
    while (s->replaced_ms == 0 && uv_hrtime() < deadline)
      run_for(b, 50);
    replaced = s->replaced_ms != 0;
    b->cur = NULL;
    if (!replaced) {
      fprintf(stderr, "replace_bench: rank %u was not replaced within %llu ms\n", s->rank,
              (unsigned long long)(notice_ms + 30000));
      rc = -1;
      break;
    }
    if (!s->abrupt)
      printf("preemption=%u notice_seen_ms=%lld\n", k + 1,
             s->notice_ms ? (long long)s->notice_ms - (long long)s->preempt_ms : -1LL);
    printf("preemption=%u rank=%u kind=%s replace_s=%.3f detect_ms=%lld terminate_ms=%lld "
           "relaunch_ms=%lld\n",
           k + 1, s->rank, s->abrupt ? "abrupt" : "notice",
           (double)((int64_t)s->replaced_ms - (int64_t)s->death_ms) / 1e3,
           (long long)s->replacing_ms - (long long)s->death_ms,
           (long long)s->provisioning_ms - (long long)s->replacing_ms,
           (long long)s->ready_ms - (long long)s->provisioning_ms);
    done++;
  }
  double all[MAX_PREEMPTIONS], ab[MAX_PREEMPTIONS], no[MAX_PREEMPTIONS];
  double det[MAX_PREEMPTIONS], term[MAX_PREEMPTIONS], rel[MAX_PREEMPTIONS];
  unsigned na = 0, nab = 0, nno = 0;
  for (unsigned k = 0; k < done; k++) {
    const sample_t *s = &samples[k];
    double v = (double)((int64_t)s->replaced_ms - (int64_t)s->death_ms) / 1e3;
    det[na] = (double)((int64_t)s->replacing_ms - (int64_t)s->death_ms);
    term[na] = (double)(s->provisioning_ms - s->replacing_ms);
    rel[na] = (double)(s->ready_ms - s->provisioning_ms);
    all[na++] = v;
    if (s->abrupt)
      ab[nab++] = v;
    else
      no[nno++] = v;
  }
  printf("replace_samples=%u\n", na);
  printf("replace_s=%.3f\n", median(all, na));
  printf("replace_abrupt_s=%.3f\n", median(ab, nab));
  printf("replace_notice_s=%.3f\n", median(no, nno));
  printf("replace_detect_p50_ms=%.0f\n", median(det, na));
  printf("replace_terminate_p50_ms=%.0f\n", median(term, na));
  printf("replace_relaunch_p50_ms=%.0f\n", median(rel, na));
  printf("replace_target_s=%.3f\n", 1.0 + 1.0); /* interval + 1 s */
  if (pool_close(b, &close_s) != 0)
    rc = -1;
  return rc;
}

/* ---- part 2: the monitors' CPU ------------------------------------------------------------- */

typedef struct window {
  double cpu_s, wall_s, machine_busy_pct;
  uint64_t health_checks, health_failures, preempt_checks, lost, replaced;
  double ready_s, close_s;
  unsigned ready_at_end;
} window_t;

static int cpu_window(bench_t *b, unsigned nodes, mon_mode_t mode, unsigned window_s, window_t *w) {
  static const char *const what[] = {"mon-off", "mon-on", "mon-health", "mon-preempt"};
  memset(w, 0, sizeof(*w));
  if (pool_open(b, what[mode], nodes, mode, &w->ready_s) != 0) {
    if (b->pool)
      pool_close(b, &w->close_s);
    return -1;
  }
  /* The open's aftermath (bootstrap sessions closing, first monitor ticks) settles first. */
  run_for(b, 3000);
  unsigned long long busy0, total0, busy1, total1;
  b->health_checks = b->health_failures = b->preempt_checks = b->lost = b->replaced = 0;
  b->counting = true;
  machine_jiffies(&busy0, &total0);
  double c0 = cpu_s();
  uint64_t t0 = uv_hrtime();
  run_for(b, (uint64_t)window_s * 1000);
  w->cpu_s = cpu_s() - c0;
  w->wall_s = (double)(uv_hrtime() - t0) / 1e9;
  machine_jiffies(&busy1, &total1);
  b->counting = false;
  w->machine_busy_pct =
      total1 > total0 ? 100.0 * (double)(busy1 - busy0) / (double)(total1 - total0) : NAN;
  w->health_checks = b->health_checks;
  w->health_failures = b->health_failures;
  w->preempt_checks = b->preempt_checks;
  w->lost = b->lost;
  w->replaced = b->replaced;
  w->ready_at_end = kite_pool_ready_count(b->pool);
  return pool_close(b, &w->close_s);
}

static void print_window(const char *key, unsigned nodes, const window_t *w) {
  printf("%s_pool_ready_s=%.3f\n", key, w->ready_s);
  printf("%s_cpu_pct=%.2f\n", key, 100.0 * w->cpu_s / w->wall_s);
  printf("%s_machine_busy_pct=%.0f\n", key, w->machine_busy_pct);
  printf("%s_health_checks_per_s=%.1f\n", key, (double)w->health_checks / w->wall_s);
  printf("%s_preempt_checks_per_s=%.1f\n", key, (double)w->preempt_checks / w->wall_s);
  printf("%s_health_failures=%llu\n", key, (unsigned long long)w->health_failures);
  printf("%s_lost=%llu\n", key, (unsigned long long)w->lost);
  printf("%s_replaced=%llu\n", key, (unsigned long long)w->replaced);
  printf("%s_ready_at_end=%u/%u\n", key, w->ready_at_end, nodes);
  printf("%s_close_s=%.3f\n", key, w->close_s);
}

static int bench_cpu(bench_t *b, unsigned nodes, unsigned window_s, bool split) {
  window_t off, on;
  printf("cpu_nodes=%u\n", nodes);
  printf("cpu_window_s=%u\n", window_s);
  if (cpu_window(b, nodes, MON_OFF, window_s, &off) != 0)
    return -1;
  print_window("monitors_off", nodes, &off);
  if (cpu_window(b, nodes, MON_BOTH, window_s, &on) != 0)
    return -1;
  print_window("monitors_on", nodes, &on);
  if (split) {
    /* Each monitor alone, for where the cost is. */
    window_t h, q;
    if (cpu_window(b, nodes, MON_HEALTH, window_s, &h) != 0)
      return -1;
    print_window("health_only", nodes, &h);
    if (cpu_window(b, nodes, MON_PREEMPT, window_s, &q) != 0)
      return -1;
    print_window("preempt_only", nodes, &q);
    double hp = 100.0 * (h.cpu_s / h.wall_s - off.cpu_s / off.wall_s);
    double qp = 100.0 * (q.cpu_s / q.wall_s - off.cpu_s / off.wall_s);
    printf("health_monitor_cpu_pct=%.2f\n", hp);
    printf("health_monitor_cpu_us_per_check=%.0f\n",
           h.health_checks ? hp / 100.0 * 1e6 * h.wall_s / (double)h.health_checks : NAN);
    printf("preempt_monitor_cpu_pct=%.2f\n", qp);
    printf("preempt_monitor_cpu_us_per_check=%.0f\n",
           q.preempt_checks ? qp / 100.0 * 1e6 * q.wall_s / (double)q.preempt_checks : NAN);
  }
  double pct = 100.0 * (on.cpu_s / on.wall_s - off.cpu_s / off.wall_s);
  double checks = (double)(on.health_checks + on.preempt_checks) / on.wall_s;
  printf("monitor_cpu_pct=%.2f\n", pct);
  printf("monitor_cpu_us_per_check=%.0f\n", checks > 0 ? pct / 100.0 * 1e6 / checks : NAN);
  printf("monitor_cpu_target_pct=2\n");
  return 0;
}

/* ---- main -------------------------------------------------------------------------------------
 */

static void usage(void) {
  fprintf(stderr, "usage: replace_bench [--nodes N] [--preemptions K] [--notice-ms MS] "
                  "[--cpu-nodes N] [--window S] [--split] [--skip-replace] [--skip-cpu]\n");
  exit(2);
}

int main(int argc, char **argv) {
  unsigned nodes = 4, preemptions = 6, cpu_nodes = 256, window_s = 20;
  uint64_t notice_ms = 1000;
  bool skip_replace = false, skip_cpu = false, split = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--skip-replace") == 0)
      skip_replace = true;
    else if (strcmp(a, "--skip-cpu") == 0)
      skip_cpu = true;
    else if (strcmp(a, "--split") == 0)
      split = true;
    else if (v == NULL)
      usage();
    else if (strcmp(a, "--nodes") == 0)
      nodes = (unsigned)strtoul(v, NULL, 10), i++;
    else if (strcmp(a, "--preemptions") == 0)
      preemptions = (unsigned)strtoul(v, NULL, 10), i++;
    else if (strcmp(a, "--notice-ms") == 0)
      notice_ms = strtoull(v, NULL, 10), i++;
    else if (strcmp(a, "--cpu-nodes") == 0)
      cpu_nodes = (unsigned)strtoul(v, NULL, 10), i++;
    else if (strcmp(a, "--window") == 0)
      window_s = (unsigned)strtoul(v, NULL, 10), i++;
    else
      usage();
  }
  if (nodes == 0 || cpu_nodes == 0 || window_s == 0 || notice_ms == 0 ||
      preemptions > MAX_PREEMPTIONS)
    usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  print_loadavg();

  bench_t b = {0};
  snprintf(b.home, sizeof(b.home), "/tmp/kite-bench-replace-XXXXXX");
  if (mkdtemp(b.home) == NULL || chmod(b.home, 0755) != 0) {
    perror("replace_bench: mkdtemp");
    return 1;
  }
  kite_runtime_options_t ro = {.home = b.home, .log_level = KITE_LOG_ERROR};
  kite_local_provider_options_t lo = {.notice_ms = notice_ms};
  int rc = kite_runtime_new(&b.rt, &ro);
  if (rc == 0)
    rc = kite_local_provider_new(b.rt, &lo, &b.lp);
  if (rc == 0)
    rc = kite_transport_new(b.rt, NULL, NULL);
  if (rc == 0)
    rc = kite_bootstrap_runner_new(b.rt, NULL);
  if (rc != 0) {
    fprintf(stderr, "replace_bench: cannot start kite: %s\n", kite_strerror(rc));
    return 1;
  }
  uv_timer_init(kite_runtime_loop(b.rt), &b.timer);
  b.bus = kite_runtime_bus(b.rt);
  kite_on_node_state_changed(b.bus, KITE_KEY_ANY, on_state, &b, NULL);
  kite_on_node_replaced(b.bus, KITE_KEY_ANY, on_replaced, &b, NULL);
  kite_on_node_lost(b.bus, KITE_KEY_ANY, on_lost, &b, NULL);
  kite_on_node_preempting(b.bus, KITE_KEY_ANY, on_preempting, &b, NULL);
  kite_on_metric(b.bus, KITE_KEY_ANY, on_metric, &b, NULL);

  if (!skip_replace && bench_replace(&b, nodes, preemptions, notice_ms) != 0)
    b.failures++;
  if (!skip_cpu && b.failures == 0 && bench_cpu(&b, cpu_nodes, window_s, split) != 0)
    b.failures++;

  uv_close((uv_handle_t *)&b.timer, NULL);
  kite_runtime_shutdown(b.rt, NULL, NULL);
  kite_runtime_run(b.rt);
  if (kite_runtime_free(b.rt) != 0) {
    fprintf(stderr, "replace_bench: the runtime still had handles at exit\n");
    b.failures++;
  }
  for (int t = 0; t < b.ntags; t++) {
    int left = kite_local_count_tagged(b.tags[t]);
    if (left != 0) {
      fprintf(stderr, "replace_bench: %d process(es) of %s left behind\n", left, b.tags[t]);
      b.failures++;
    }
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b.home);
  if (system(cmd) != 0)
    b.failures++;
  return b.failures ? 1 : 0;
}
