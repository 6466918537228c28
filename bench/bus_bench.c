/* Throughput of the event bus: emit + delivery, measured together.
 *
 * Two workloads, each run several times; the median run is reported.
 *   one_sub:   one subscriber (any key) of node_lost; emit a batch, drain it, repeat.
 *   keyed_10k: 10,000 subscribers of node_lost, one per routing key 0..9999; each event goes
 *              to a pseudo-random key, so exactly one of the 10,000 handlers runs for it.
 *
 * Every event is copied into the queue by kite_emit_node_lost() and delivered by
 * kite_bus_drain(). Handlers sum a payload field and count calls; the keyed handler also
 * checks that the event reached the subscriber of its own key. The sums are compared with
 * the expected values and a mismatch fails the program.
 *
 * Output: key=value lines (bus_one_sub_events_per_sec=…, bus_keyed_10k_events_per_sec=…).
 * Options: --events N (per run, one_sub), --keyed-events N, --runs R, --batch B, --verbose
 * (every run's rate on stderr). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kite/kite.h"

#define NKEYS 10000

typedef struct opts {
  uint64_t events;       /* per run, one_sub */
  uint64_t keyed_events; /* per run, keyed_10k */
  int runs;
  uint64_t batch;
  int verbose; /* print every run's rate to stderr */
} opts_t;

static double now_sec(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* ---- one subscriber --------------------------------------------------------------------- */

typedef struct acc {
  uint64_t calls;
  uint64_t sum;
} acc_t;

static void on_lost_sum(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                        void *data) {
  acc_t *a = data;
  (void)bus;
  (void)ev;
  a->calls++;
  a->sum += p->node;
}

static int bench_one_sub(kite_bus_t *bus, const opts_t *o) {
  acc_t acc = {0};
  kite_sub_t sub;
  if (kite_on_node_lost(bus, KITE_KEY_ANY, on_lost_sum, &acc, &sub) != 0) {
    fprintf(stderr, "subscribe failed\n");
    return 1;
  }
  double *rates = calloc((size_t)o->runs, sizeof(*rates));
  int bad = 0;
  for (int r = 0; r < o->runs && !bad; r++) {
    acc = (acc_t){0};
    uint64_t expect_sum = 0;
    kite_ev_node_lost_t ev = {.pool = 1, .node = 0, .rank = 0, .reason = NULL};
    double t0 = now_sec();
    for (uint64_t done = 0; done < o->events;) {
      uint64_t n = o->events - done < o->batch ? o->events - done : o->batch;
      for (uint64_t i = 0; i < n; i++) {
        ev.node = done + i;
        if (kite_emit_node_lost(bus, &ev) != 0) {
          fprintf(stderr, "emit failed\n");
          bad = 1;
          break;
        }
      }
      kite_bus_drain(bus, 0);
      done += n;
    }
    double dt = now_sec() - t0;
    expect_sum = o->events * (o->events - 1) / 2;
    if (acc.calls != o->events || acc.sum != expect_sum) {
      fprintf(stderr,
              "one_sub: calls %" PRIu64 " sum %" PRIu64 ", expected %" PRIu64 " and %" PRIu64 "\n",
              acc.calls, acc.sum, o->events, expect_sum);
      bad = 1;
    }
    rates[r] = (double)o->events / dt;
    if (o->verbose)
      fprintf(stderr, "one_sub run %d: %.0f events/s\n", r, rates[r]);
  }
  kite_bus_unsubscribe(bus, sub);
  if (!bad) {
    printf("bus_one_sub_events=%" PRIu64 "\n", o->events);
    printf("bus_one_sub_checked_calls=%" PRIu64 "\n", acc.calls);
    printf("bus_one_sub_events_per_sec=%.0f\n", median(rates, o->runs));
  }
  free(rates);
  return bad;
}

/* ---- 10,000 keyed subscribers ----------------------------------------------------------- */

typedef struct keyed {
  uint64_t key;
  uint64_t calls;
  uint64_t sum;
  uint64_t misrouted;
} keyed_t;

static void on_lost_keyed(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                          void *data) {
  keyed_t *k = data;
  (void)bus;
  (void)ev;
  k->calls++;
  k->sum += p->node;
  k->misrouted += p->pool != k->key;
}

static int bench_keyed(kite_bus_t *bus, const opts_t *o) {
  keyed_t *ks = calloc(NKEYS, sizeof(*ks));
  kite_sub_t *subs = calloc(NKEYS, sizeof(*subs));
  double *rates = calloc((size_t)o->runs, sizeof(*rates));
  int bad = 0;
  for (uint64_t k = 0; k < NKEYS; k++) {
    ks[k].key = k;
    if (kite_on_node_lost(bus, k, on_lost_keyed, &ks[k], &subs[k]) != 0) {
      fprintf(stderr, "subscribe failed\n");
      return 1;
    }
  }
  uint64_t calls = 0;
  for (int r = 0; r < o->runs && !bad; r++) {
    for (int k = 0; k < NKEYS; k++)
      ks[k].calls = ks[k].sum = ks[k].misrouted = 0;
    uint64_t rng = 0x9E3779B97F4A7C15ull + (uint64_t)r;
    uint64_t expect_sum = 0;
    kite_ev_node_lost_t ev = {.pool = 0, .node = 0, .rank = 0, .reason = NULL};
    double t0 = now_sec();
    for (uint64_t done = 0; done < o->keyed_events;) {
      uint64_t n = o->keyed_events - done < o->batch ? o->keyed_events - done : o->batch;
      for (uint64_t i = 0; i < n; i++) {
        /* xorshift64: a cheap pseudo-random key per event. */
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        ev.pool = rng % NKEYS;
        ev.node = done + i;
        if (kite_emit_node_lost(bus, &ev) != 0) {
          fprintf(stderr, "emit failed\n");
          bad = 1;
          break;
        }
      }
      kite_bus_drain(bus, 0);
      done += n;
    }
    double dt = now_sec() - t0;
    expect_sum = o->keyed_events * (o->keyed_events - 1) / 2;
    uint64_t sum = 0, misrouted = 0;
    calls = 0;
    for (int k = 0; k < NKEYS; k++) {
      calls += ks[k].calls;
      sum += ks[k].sum;
      misrouted += ks[k].misrouted;
    }
    if (calls != o->keyed_events || sum != expect_sum || misrouted != 0) {
      fprintf(stderr,
              "keyed_10k: calls %" PRIu64 " sum %" PRIu64 " misrouted %" PRIu64
              ", expected %" PRIu64 " and %" PRIu64 "\n",
              calls, sum, misrouted, o->keyed_events, expect_sum);
      bad = 1;
    }
    rates[r] = (double)o->keyed_events / dt;
    if (o->verbose)
      fprintf(stderr, "keyed_10k run %d: %.0f events/s\n", r, rates[r]);
  }
  for (int k = 0; k < NKEYS; k++)
    kite_bus_unsubscribe(bus, subs[k]);
  if (!bad) {
    printf("bus_keyed_10k_events=%" PRIu64 "\n", o->keyed_events);
    printf("bus_keyed_10k_checked_calls=%" PRIu64 "\n", calls);
    printf("bus_keyed_10k_events_per_sec=%.0f\n", median(rates, o->runs));
  }
  free(rates);
  free(subs);
  free(ks);
  return bad;
}

/* ---- main ------------------------------------------------------------------------------- */

static void on_shut(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(int *)data = 1;
}

static void usage(const char *argv0) {
  fprintf(stderr, "usage: %s [--events N] [--keyed-events N] [--runs R] [--batch B] [--verbose]\n",
          argv0);
}

int main(int argc, char **argv) {
  opts_t o = {.events = 10000000, .keyed_events = 5000000, .runs = 7, .batch = 4096};
  for (int i = 1; i < argc; i++) {
    if (i + 1 < argc && strcmp(argv[i], "--events") == 0)
      o.events = strtoull(argv[++i], NULL, 10);
    else if (i + 1 < argc && strcmp(argv[i], "--keyed-events") == 0)
      o.keyed_events = strtoull(argv[++i], NULL, 10);
    else if (i + 1 < argc && strcmp(argv[i], "--runs") == 0)
      o.runs = atoi(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--batch") == 0)
      o.batch = strtoull(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--verbose") == 0)
      o.verbose = 1;
    else {
      usage(argv[0]);
      return 2;
    }
  }
  if (o.events == 0 || o.keyed_events == 0 || o.runs <= 0 || o.batch == 0) {
    usage(argv[0]);
    return 2;
  }

  char home[] = "/tmp/kite-bench-bus-XXXXXX";
  if (mkdtemp(home) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  kite_runtime_t *rt;
  kite_runtime_options_t ro = {.home = home, .log_level = KITE_LOG_ERROR};
  if (kite_runtime_new(&rt, &ro) != 0) {
    fprintf(stderr, "kite_runtime_new failed\n");
    return 1;
  }
  kite_bus_t *bus = kite_runtime_bus(rt);
  /* The batch must fit in the queue so that no event takes the overflow path. */
  if (o.batch * 128 > kite_bus_capacity(bus)) {
    fprintf(stderr, "batch %" PRIu64 " is too big for the queue (%zu bytes)\n", o.batch,
            kite_bus_capacity(bus));
    return 2;
  }
  printf("bus_batch=%" PRIu64 "\n", o.batch);
  printf("bus_runs=%d\n", o.runs);

  int bad = bench_one_sub(bus, &o);
  if (!bad)
    bad = bench_keyed(bus, &o);

  int done = 0;
  kite_runtime_shutdown(rt, on_shut, &done);
  kite_runtime_run(rt);
  kite_runtime_free(rt);
  rmdir(home);
  if (bad)
    fprintf(stderr, "bus_bench: FAILED (events lost, duplicated or misrouted)\n");
  return bad;
}
