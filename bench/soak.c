/* A long run: does the controller stay flat?
 *
 * Design notes
 *
 * One pool of --nodes local nodes (default 16), replacement on, both monitors at 1 s, is held
 * open for --minutes (default 10). It works in rounds, one after another; a round is
 *
 *   broadcast  a command on every rank (retries 3), whose output each rank must print exactly
 *   upload     a new file of random size (16 KiB-1 MiB, random bytes) to every rank, then a
 *              broadcast of `cksum` on it, which must match the local file's
 *
 * (four rounds in ten are uploads) and, in about one round of six, a preemption of a random
 * READY node (abrupt or with the provider's notice) at a random moment of the round, so it
 * falls on running commands and transfers. A broadcast re-runs a lost rank's command on the
 * replacement; an upload has no retries, so a rank preempted while its transfer runs may end
 * KITE_ENODELOST: that is counted as "lost", and the round still passes. Anything else is a
 * failure. Each round prints one line
 * (round=, action=, ok=, lost=, failed=, ms=, and what was preempted).
 *
 * Every --sample-s (default 30) it prints the controller's RSS (VmRSS), its open file
 * descriptors (/proc/self/fd), events per second since the last sample (every event on the
 * bus), the READY count, replacements so far and the store's size on disk. At the end it
 * compares the last sample with the one taken a quarter into the run (after the caches and the
 * store's pages have warmed), and, for RSS, with the one taken half-way:
 *
 *   flat_fds   the fd count has not grown (a leaked socket or pipe would show)
 *   flat_heap  the heap in use (malloc's, mallinfo2) grew by at most 5% + 1 MiB: a leak shows
 *              here first
 *   flat_rss   RSS grew by at most 5% + 2 MiB over the second half (RSS moves in steps: malloc
 *              keeps the arenas a burst of transfers made, which is no leak; a leak keeps
 *              climbing)
 *
 * and exits 1 when a round failed, when one is not flat, or when processes of the pool are
 * left at exit. For hours: soak --minutes 240 (make soak SOAK_MINUTES=240).
 *
 * --preempt-in N preempts in about one round of N (default 6; 0: never), and --uploads PCT
 * makes that share of the rounds uploads (default 40): with them, a growth can be traced to
 * the replacement path or to transfers.
 *
 *   soak [--minutes M] [--nodes N] [--sample-s S] [--seed X] [--preempt-in N] [--uploads PCT] */
#include <dirent.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"

#define MAX_SAMPLES 4096
#define ROUND_TIMEOUT_MS (180u * 1000)

typedef struct sample {
  double t_s;
  long rss_kb, anon_kb, heap_kb;
  int fds;
} sample_t;

typedef struct soak {
  kite_runtime_t *rt;
  kite_local_provider_t *lp;
  kite_pool_t *pool;
  char home[64], name[48], tag[64], file[96];
  unsigned nodes;
  uint64_t seed, t0_ns, events, events_at_sample, replaced;
  bool opened, closed, task_done;
  int open_status;
  char open_msg[256];
  uv_timer_t wait, preempt, tick;
  bool waited;
  unsigned sample_s, nsamples;
  unsigned preempt_in, upload_pct; /* a preemption in one round of preempt_in (0: none) */
  sample_t samples[MAX_SAMPLES];
  uint64_t last_sample_ns;
  /* the round in progress */
  const char *expect; /* each rank's output, exactly */
  char **out;         /* per rank, what it printed (the last attempt's) */
  size_t *out_len;
  unsigned *out_attempt;
  char (*inst)[64]; /* per rank, the instance an upload reached */
  unsigned ok, lost, failed;
  char preempted[64];
  char first_error[256];
} soak_t;

/* xorshift64*: reproducible with --seed. */
static uint64_t rnd(soak_t *s) {
  s->seed ^= s->seed >> 12;
  s->seed ^= s->seed << 25;
  s->seed ^= s->seed >> 27;
  return s->seed * 2685821657736338717ull;
}

static double elapsed_s(const soak_t *s) {
  return (double)(uv_hrtime() - s->t0_ns) / 1e9;
}

/* A field of /proc/self/status in kB ("VmRSS", "RssAnon"), or -1. */
static long status_kb(const char *field) {
  char line[256];
  size_t n = strlen(field);
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, field, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%ld", &kb) == 1)
      break;
  fclose(f);
  return kb;
}

static int open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL)
    return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir(d);
  return n - 1; /* the directory's own descriptor */
}

static long long store_bytes(const soak_t *s) {
  char path[128];
  long long total = 0;
  static const char *const parts[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    struct stat st;
    snprintf(path, sizeof(path), "%s/state.db%s", s->home, parts[i]);
    if (stat(path, &st) == 0)
      total += (long long)st.st_size;
  }
  return total;
}

static void take_sample(soak_t *s) {
  uint64_t now = uv_hrtime();
  double dt = s->last_sample_ns ? (double)(now - s->last_sample_ns) / 1e9 : elapsed_s(s);
  sample_t *x = &s->samples[s->nsamples < MAX_SAMPLES ? s->nsamples++ : MAX_SAMPLES - 1];
  x->t_s = elapsed_s(s);
  x->rss_kb = status_kb("VmRSS");
  x->anon_kb = status_kb("RssAnon"); /* less the store's mapped files */
  x->fds = open_fds();
  struct mallinfo2 mi = mallinfo2(); /* what malloc has handed out and not had back */
  x->heap_kb = (long)((mi.uordblks + mi.hblkhd) / 1024);
  printf("sample t_s=%.0f rss_kb=%ld anon_kb=%ld heap_kb=%ld fds=%d events_per_s=%.1f ready=%u/%u "
         "replaced=%" PRIu64 " store_bytes=%lld\n",
         x->t_s, x->rss_kb, x->anon_kb, x->heap_kb, x->fds,
         dt > 0 ? (double)(s->events - s->events_at_sample) / dt : 0,
         s->pool ? kite_pool_ready_count(s->pool) : 0, s->nodes, s->replaced, store_bytes(s));
  s->events_at_sample = s->events;
  s->last_sample_ns = now;
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void on_wait(uv_timer_t *t) {
  kite_container_of(t, soak_t, wait)->waited = true;
}

static void on_tick(uv_timer_t *t) {
  take_sample(kite_container_of(t, soak_t, tick));
}

/* Runs the loop until *flag or timeout_ms; returns *flag. */
static bool run_until(soak_t *s, const bool *flag, uint64_t timeout_ms) {
  s->waited = false;
  uv_timer_start(&s->wait, on_wait, timeout_ms, 0);
  while (!*flag && !s->waited)
    uv_run(kite_runtime_loop(s->rt), UV_RUN_ONCE);
  uv_timer_stop(&s->wait);
  return *flag;
}

static void on_any(kite_bus_t *bus, const kite_event_t *ev, const void *payload, void *data) {
  (void)bus, (void)ev, (void)payload;
  ((soak_t *)data)->events++;
}

static void on_replaced(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_replaced_t *p,
                        void *data) {
  soak_t *s = data;
  (void)bus, (void)ev;
  if (s->pool && p->pool == kite_pool_id(s->pool))
    s->replaced++;
}

/* ---- a round ------------------------------------------------------------------------------- */

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  soak_t *s = data;
  (void)pool;
  if (stream != 1 || rank >= s->nodes)
    return;
  if (attempt != s->out_attempt[rank]) { /* a re-run's output replaces the lost attempt's */
    s->out_attempt[rank] = attempt;
    s->out_len[rank] = 0;
  }
  char *grown = realloc(s->out[rank], s->out_len[rank] + len + 1);
  if (grown == NULL)
    abort();
  memcpy(grown + s->out_len[rank], buf, len);
  s->out_len[rank] += len;
  grown[s->out_len[rank]] = '\0';
  s->out[rank] = grown;
}

static void note_error(soak_t *s, const char *fmt, uint32_t rank, const char *what) {
  if (s->first_error[0] == '\0')
    snprintf(s->first_error, sizeof(s->first_error), fmt, rank, what);
}

static void on_task(kite_pool_t *pool, int status, const kite_task_result_t *res, void *data) {
  soak_t *s = data;
  (void)pool;
  s->task_done = true;
  if (status < 0 || res == NULL) {
    s->failed = s->nodes;
    note_error(s, "the task did not run (rank %u): %s", 0, kite_strerror(status));
    return;
  }
  for (unsigned i = 0; i < res->count; i++) {
    const kite_rank_result_t *r = &res->ranks[i];
    if (r->error == KITE_ENODELOST && s->expect == NULL)
      s->lost++; /* an upload to a node preempted meanwhile */
    else if (r->error != 0 || r->exit_status != 0) {
      s->failed++;
      note_error(s, "rank %u: %s", r->rank,
                 r->message ? r->message
                 : r->error ? kite_strerror(r->error)
                            : "exit status");
    } else if (s->expect && (s->out[r->rank] == NULL || strcmp(s->out[r->rank], s->expect))) {
      s->failed++;
      note_error(s, "rank %u printed: %s", r->rank, s->out[r->rank] ? s->out[r->rank] : "");
    } else
      s->ok++;
  }
}

static void on_preempt(uv_timer_t *t) {
  soak_t *s = kite_container_of(t, soak_t, preempt);
  uint32_t rank = (uint32_t)(rnd(s) % s->nodes);
  for (unsigned k = 0; k < s->nodes; k++, rank = (rank + 1) % s->nodes) {
    if (kite_pool_node_state(s->pool, rank) != KITE_NODE_READY)
      continue;
    bool abrupt = rnd(s) % 2 == 0;
    const char *id = kite_pool_instance_id(s->pool, rank);
    if (id && kite_local_provider_preempt(s->lp, id, abrupt) == 0)
      snprintf(s->preempted, sizeof(s->preempted), "rank%u/%s", rank, abrupt ? "abrupt" : "notice");
    return;
  }
}

static void round_reset(soak_t *s) {
  for (unsigned i = 0; i < s->nodes; i++) {
    free(s->out[i]);
    s->out[i] = NULL;
    s->out_len[i] = 0;
    s->out_attempt[i] = 0;
  }
  s->ok = s->lost = s->failed = 0;
  s->preempted[0] = s->first_error[0] = '\0';
  s->task_done = false;
  s->expect = NULL;
}

/* Broadcasts shell; each rank must print expect (NULL: anything). */
static int broadcast(soak_t *s, const char *shell, const char *expect) {
  kite_cmd_t cmd = {.shell = shell};
  kite_task_opts_t o = {.timeout_ms = 60000, .retries = 3};
  for (unsigned i = 0; i < s->nodes; i++) {
    free(s->out[i]);
    s->out[i] = NULL;
    s->out_len[i] = 0;
    s->out_attempt[i] = 0;
  }
  s->expect = expect;
  s->task_done = false;
  int rc = kite_pool_broadcast(s->pool, &cmd, &o, on_output, on_task, s, NULL);
  if (rc == 0 && !run_until(s, &s->task_done, ROUND_TIMEOUT_MS))
    rc = KITE_ETIMEDOUT;
  return rc;
}

/* A new local file of random bytes; its cksum line ("CRC SIZE") into crc. */
static int make_file(soak_t *s, char *crc, size_t cap) {
  size_t size = 16384 + (size_t)(rnd(s) % (1024 * 1024 - 16384));
  FILE *f = fopen(s->file, "wb");
  if (f == NULL)
    return -1;
  for (size_t i = 0; i < size; i += 8) {
    uint64_t v = rnd(s);
    fwrite(&v, 1, size - i < 8 ? size - i : 8, f);
  }
  if (fclose(f) != 0)
    return -1;
  char cmd[160];
  snprintf(cmd, sizeof(cmd), "cksum < '%s'", s->file);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return -1;
  bool got = fgets(crc, (int)cap, p) != NULL;
  return pclose(p) == 0 && got ? 0 : -1;
}

static int round_upload(soak_t *s) {
  char crc[64];
  if (make_file(s, crc, sizeof(crc)) != 0)
    return KITE_EIO;
  /* The instances before the upload: a rank replaced from here on may have had its file
   * written on the instance that went, and its check run on the new one. */
  for (unsigned i = 0; i < s->nodes; i++) {
    const char *id = kite_pool_instance_id(s->pool, i);
    snprintf(s->inst[i], sizeof(s->inst[i]), "%s", id ? id : "");
  }
  int rc = kite_pool_upload(s->pool, s->file, "soak.bin", on_task, s);
  if (rc == 0 && !run_until(s, &s->task_done, ROUND_TIMEOUT_MS))
    rc = KITE_ETIMEDOUT;
  if (rc != 0 || s->failed)
    return rc;
  /* Ranks whose upload was lost have an older file (or none): check only the others. */
  unsigned lost = s->lost, uploaded = s->ok;
  s->ok = 0;
  char shell[160];
  snprintf(shell, sizeof(shell), "cksum < soak.bin || true");
  rc = broadcast(s, shell, NULL);
  /* A replacement never got the file (uploads are not part of the bootstrap). */
  unsigned match = 0, replaced = 0;
  for (unsigned i = 0; i < s->nodes; i++) {
    const char *now = kite_pool_instance_id(s->pool, i);
    if (now == NULL || strcmp(now, s->inst[i]) != 0)
      replaced++;
    else if (s->out[i] && strcmp(s->out[i], crc) == 0)
      match++;
    else if (s->first_error[0] == '\0')
      snprintf(s->first_error, sizeof(s->first_error),
               "rank %u (instance %s, state %s) printed \"%.80s\" for cksum, not \"%.40s\"", i, now,
               kite_node_state_name(kite_pool_node_state(s->pool, i)), s->out[i] ? s->out[i] : "",
               crc);
  }
  if (rc == 0 && match + replaced < uploaded)
    s->failed++;
  else if (rc == 0)
    s->first_error[0] = '\0'; /* a rank whose upload was lost: no file, as expected */
  lost += replaced;
  s->ok = match;
  s->lost = lost;
  return rc;
}

static int round_broadcast(soak_t *s, unsigned n) {
  static char expect[64];
  snprintf(expect, sizeof(expect), "round %u 5050\n", n);
  char shell[128];
  snprintf(shell, sizeof(shell), "echo \"round %u $(seq 1 100 | awk '{s += $1} END {print s}')\"",
           n);
  return broadcast(s, shell, expect);
}

static int one_round(soak_t *s, unsigned n) {
  round_reset(s);
  bool upload = rnd(s) % 100 < s->upload_pct;
  /* A preemption at some moment of the round (rounds take ~50-150 ms). */
  if (s->preempt_in && rnd(s) % s->preempt_in == 0)
    uv_timer_start(&s->preempt, on_preempt, rnd(s) % 60, 0);
  uint64_t t0 = uv_hrtime();
  int rc = upload ? round_upload(s) : round_broadcast(s, n);
  uv_timer_stop(&s->preempt);
  double ms = (double)(uv_hrtime() - t0) / 1e6;
  printf("round=%u t_s=%.0f action=%s ok=%u lost=%u failed=%u ms=%.0f preempted=%s%s%s%s\n", n,
         elapsed_s(s), upload ? "upload" : "broadcast", s->ok, s->lost, s->failed, ms,
         s->preempted[0] ? s->preempted : "-", rc ? " error=" : "", rc ? kite_strerror(rc) : "",
         s->first_error[0] ? " first_error=" : "");
  if (s->first_error[0])
    printf("  %s\n", s->first_error);
  return rc != 0 || s->failed ? -1 : 0;
}

/* ---- the pool ------------------------------------------------------------------------------ */

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  soak_t *s = data;
  (void)pool;
  s->opened = true;
  s->open_status = status;
  snprintf(s->open_msg, sizeof(s->open_msg), "%s", message ? message : "");
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  (void)pool, (void)status;
  ((soak_t *)data)->closed = true;
}

static int open_pool(soak_t *s) {
  snprintf(s->name, sizeof(s->name), "soak%d", (int)getpid());
  snprintf(s->tag, sizeof(s->tag), "kite-pool-%s", s->name);
  kite_pool_spec_t spec = {
      /* The rounds preempt ~10 nodes a minute, the default cap on replacements: above it. */
      .name = s->name,
      .nodes = s->nodes,
      .replace = true,
      .replace_per_minute = 60,
      .connect_timeout_ms = 120000};
  spec.monitors.health_interval_ms = 1000;
  spec.monitors.health_timeout_ms = 3000;
  spec.monitors.preempt_interval_ms = 1000;
  spec.monitors.jitter_ms = 200;
  int rc = kite_pool_open(s->rt, &spec, on_open, s, &s->pool);
  if (rc != 0) {
    s->pool = NULL;
    return rc;
  }
  while (!s->opened)
    uv_run(kite_runtime_loop(s->rt), UV_RUN_ONCE);
  return s->open_status;
}

static void usage(void) {
  fprintf(stderr,
          "usage: soak [--minutes M] [--nodes N] [--sample-s S] [--seed X] [--preempt-in N] "
          "[--uploads PCT]\n");
  exit(2);
}

int main(int argc, char **argv) {
  soak_t *s = calloc(1, sizeof(*s));
  double minutes = 10;
  if (s == NULL)
    return 1;
  s->nodes = 16;
  s->sample_s = 30;
  s->preempt_in = 6;
  s->upload_pct = 40;
  s->seed = (uint64_t)time(NULL) | 1;
  for (int i = 1; i + 1 < argc || i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (v == NULL)
      usage();
    if (strcmp(a, "--minutes") == 0)
      minutes = strtod(v, NULL);
    else if (strcmp(a, "--nodes") == 0)
      s->nodes = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(a, "--sample-s") == 0)
      s->sample_s = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(a, "--seed") == 0)
      s->seed = strtoull(v, NULL, 10) | 1;
    else if (strcmp(a, "--preempt-in") == 0)
      s->preempt_in = (unsigned)strtoul(v, NULL, 10);
    else if (strcmp(a, "--uploads") == 0 && strtoul(v, NULL, 10) <= 100)
      s->upload_pct = (unsigned)strtoul(v, NULL, 10);
    else
      usage();
  }
  if (!(minutes > 0) || s->nodes == 0 || s->sample_s == 0)
    usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("soak nodes=%u minutes=%g sample_s=%u seed=%" PRIu64 "\n", s->nodes, minutes, s->sample_s,
         s->seed);
  s->out = calloc(s->nodes, sizeof(*s->out));
  s->out_len = calloc(s->nodes, sizeof(*s->out_len));
  s->out_attempt = calloc(s->nodes, sizeof(*s->out_attempt));
  s->inst = calloc(s->nodes, sizeof(*s->inst));
  snprintf(s->home, sizeof(s->home), "/tmp/kite-soak-XXXXXX");
  if (s->out == NULL || s->out_len == NULL || s->out_attempt == NULL || s->inst == NULL ||
      mkdtemp(s->home) == NULL || chmod(s->home, 0755) != 0) {
    perror("soak: set-up");
    return 1;
  }
  snprintf(s->file, sizeof(s->file), "%s/upload.bin", s->home);

  /* $KITE_LOG=info shows what the pool does (on stderr). */
  kite_runtime_options_t ro = {.home = s->home,
                               .log_level = getenv("KITE_LOG") ? -1 : KITE_LOG_ERROR};
  kite_local_provider_options_t lo = {.notice_ms = 2000};
  int rc = kite_runtime_new(&s->rt, &ro);
  if (rc == 0)
    rc = kite_local_provider_new(s->rt, &lo, &s->lp);
  if (rc == 0)
    rc = kite_transport_new(s->rt, NULL, NULL);
  if (rc == 0)
    rc = kite_bootstrap_runner_new(s->rt, NULL);
  if (rc != 0) {
    fprintf(stderr, "soak: cannot start kite: %s\n", kite_strerror(rc));
    return 1;
  }
  uv_loop_t *loop = kite_runtime_loop(s->rt);
  uv_timer_init(loop, &s->wait);
  uv_timer_init(loop, &s->preempt);
  uv_timer_init(loop, &s->tick);
  kite_bus_t *bus = kite_runtime_bus(s->rt);
  kite_bus_subscribe_all(bus, on_any, s, NULL);
  kite_on_node_replaced(bus, KITE_KEY_ANY, on_replaced, s, NULL);

  int failures = 0;
  unsigned rounds = 0, failed_rounds = 0;
  unsigned long long lost = 0;
  s->t0_ns = uv_hrtime();
  if ((rc = open_pool(s)) != 0) {
    fprintf(stderr, "soak: the pool did not open: %s (%s)\n", kite_strerror(rc), s->open_msg);
    failures++;
  } else {
    printf("pool_ready_s=%.1f\n", elapsed_s(s));
    take_sample(s);
    uv_timer_start(&s->tick, on_tick, (uint64_t)s->sample_s * 1000, (uint64_t)s->sample_s * 1000);
    uint64_t end = s->t0_ns + (uint64_t)(minutes * 60e9);
    while (uv_hrtime() < end) {
      rounds++;
      if (one_round(s, rounds) != 0)
        failed_rounds++;
      lost += s->lost;
      bool never = false;
      run_until(s, &never, 200 + rnd(s) % 800);
    }
    uv_timer_stop(&s->tick);
    take_sample(s);
    if (getenv("SOAK_EXIT_OPEN")) /* what is held now, for a heap profiler (nodes are left) */
      exit(0);
  }
  if (s->pool) {
    kite_pool_close(s->pool, on_closed, s);
    while (!s->closed)
      uv_run(loop, UV_RUN_ONCE);
    s->pool = NULL;
  }

  /* Flat: a quarter into the run against the end. */
  bool flat_fds = true, flat_rss = true, flat_heap = true;
  if (s->nsamples >= 2) {
    const sample_t *q = &s->samples[s->nsamples / 4], *h = &s->samples[s->nsamples / 2],
                   *z = &s->samples[s->nsamples - 1];
    flat_fds = z->fds <= q->fds;
    flat_heap = z->heap_kb <= q->heap_kb + q->heap_kb / 20 + 1024;
    flat_rss = z->rss_kb <= h->rss_kb + h->rss_kb / 20 + 2048;
    printf("from_t_s=%.0f to_t_s=%.0f rss_kb=%ld->%ld anon_kb=%ld->%ld heap_kb=%ld->%ld "
           "fds=%d->%d half_t_s=%.0f half_rss_kb=%ld\n",
           q->t_s, z->t_s, q->rss_kb, z->rss_kb, q->anon_kb, z->anon_kb, q->heap_kb, z->heap_kb,
           q->fds, z->fds, h->t_s, h->rss_kb);
  }
  printf("rounds=%u failed_rounds=%u lost_uploads=%llu replaced=%" PRIu64
         " flat_fds=%s flat_heap=%s flat_rss=%s\n",
         rounds, failed_rounds, lost, s->replaced, flat_fds ? "yes" : "no",
         flat_heap ? "yes" : "no", flat_rss ? "yes" : "no");
  failures += failed_rounds > 0 || !flat_fds || !flat_heap || !flat_rss;

  uv_close((uv_handle_t *)&s->wait, NULL);
  uv_close((uv_handle_t *)&s->preempt, NULL);
  uv_close((uv_handle_t *)&s->tick, NULL);
  kite_runtime_shutdown(s->rt, NULL, NULL);
  kite_runtime_run(s->rt);
  if (kite_runtime_free(s->rt) != 0) {
    fprintf(stderr, "soak: the runtime still had handles at exit\n");
    failures++;
  }
  int left = kite_local_count_tagged(s->tag);
  if (left != 0) {
    fprintf(stderr, "soak: %d process(es) of the pool left behind\n", left);
    failures++;
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->home);
  if (system(cmd) != 0)
    failures++;
  for (unsigned i = 0; i < s->nodes; i++)
    free(s->out[i]);
  free(s->out);
  free(s->out_len);
  free(s->out_attempt);
  free(s->inst);
  free(s);
  return failures ? 1 : 0;
}
