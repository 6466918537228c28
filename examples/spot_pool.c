/* spot_pool: a spot workload that keeps running through preemptions.
 *
 * Opens a pool of local nodes with replacement on, while the local provider's chaos option
 * preempts nodes the way a cloud reclaims spot capacity: a notice first, then the node dies.
 * The program runs rounds of a broadcast; a rank whose node is lost mid-command is re-run on
 * its replacement (opts.retries), so every round ends with a result for every rank. The
 * preemption and replacement events are printed as they happen. At the end each rank's total
 * is checked against what it should be, the pool is closed, and nothing is left running.
 *
 *   ./spot_pool [--nodes N] [--rounds R]     (defaults: 6 nodes, 20 rounds)
 *
 * Exit status 0 when every round had every rank's right result and the pool closed cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kite/kite.h"

#define MAX_NODES 64

typedef struct spot {
  kite_runtime_t *rt;
  kite_pool_t *pool;
  uint64_t t0;
  unsigned nodes, rounds, round;
  /* the current round's output per rank, from its latest attempt */
  char out[MAX_NODES][64];
  size_t out_len[MAX_NODES];
  unsigned attempt[MAX_NODES];
  bool was_ready[MAX_NODES]; /* the rank has been READY once: its changes are news */
  long total[MAX_NODES];
  unsigned preempting, preempted, lost, replaced, reruns;
  int exit_code;
} spot_t;

static double since(const spot_t *s) {
  return (double)(uv_hrtime() - s->t0) / 1e9;
}

/* ---- events, printed as they happen ------------------------------------------------------ */

static void on_state(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_state_changed_t *p,
                     void *data) {
  spot_t *s = data;
  (void)bus;
  (void)ev;
  /* While opening, every node goes through the same states; after that, a change is news. */
  if (p->rank >= MAX_NODES)
    return;
  if (!s->was_ready[p->rank]) {
    s->was_ready[p->rank] = p->to == KITE_NODE_READY;
    return;
  }
  printf("[%6.2fs]   rank %u: %s -> %s (%s)\n", since(s), p->rank, kite_node_state_name(p->from),
         kite_node_state_name(p->to), p->reason ? p->reason : "");
}

static void on_preempting(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_node_preempting_t *p, void *data) {
  spot_t *s = data;
  (void)bus;
  long long left = p->deadline_ms - (long long)ev->ts_ms;
  s->preempting++;
  printf("[%6.2fs] ! rank %u: preemption notice, the node dies in %lld ms\n", since(s), p->rank,
         left > 0 ? left : 0);
}

static void on_preempted(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_preempted_t *p,
                         void *data) {
  spot_t *s = data;
  (void)bus;
  (void)ev;
  s->preempted++;
  printf("[%6.2fs] ! rank %u: preempted (%s)\n", since(s), p->rank, p->reason ? p->reason : "");
}

static void on_lost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_lost_t *p,
                    void *data) {
  spot_t *s = data;
  (void)bus;
  (void)ev;
  s->lost++;
  printf("[%6.2fs] ! rank %u: lost (%s)\n", since(s), p->rank, p->reason ? p->reason : "");
}

static void on_replaced(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_replaced_t *p,
                        void *data) {
  spot_t *s = data;
  (void)bus;
  (void)ev;
  s->replaced++;
  printf("[%6.2fs] + rank %u: replaced, instance %s -> %s\n", since(s), p->rank,
         p->old_instance ? p->old_instance : "?", p->new_instance ? p->new_instance : "?");
}

static void on_shrunk(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_pool_shrunk_t *p,
                      void *data) {
  spot_t *s = data;
  (void)bus;
  (void)ev;
  printf("[%6.2fs] - pool shrunk: %s\n", since(s), p->reason ? p->reason : "");
}

/* ---- the rounds --------------------------------------------------------------------------------
 */

static void on_closed(kite_pool_t *pool, int status, void *data) {
  spot_t *s = data;
  (void)pool;
  if (status != 0) {
    fprintf(stderr, "closing the pool: %s\n", kite_strerror(status));
    s->exit_code = 1;
  }
  kite_runtime_shutdown(s->rt, NULL, NULL);
}

/* Delivered after the node events that led to it, so the story prints in order. */
static void on_pool_closed(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_pool_closed_t *p,
                           void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  printf("[%6.2fs] pool closed: every instance terminated and confirmed\n", since(data));
}

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  spot_t *s = data;
  (void)pool;
  if (rank >= s->nodes || stream != 1)
    return;
  if (attempt != s->attempt[rank]) {
    /* A re-run on a replacement: what the lost attempt printed is superseded. */
    s->attempt[rank] = attempt;
    s->out_len[rank] = 0;
  }
  if (s->out_len[rank] + len >= sizeof(s->out[rank]))
    len = sizeof(s->out[rank]) - 1 - s->out_len[rank];
  memcpy(s->out[rank] + s->out_len[rank], buf, len);
  s->out_len[rank] += len;
  s->out[rank][s->out_len[rank]] = '\0';
}

static void next_round(spot_t *s);

static void on_round(kite_pool_t *pool, int status, const kite_task_result_t *res, void *data) {
  spot_t *s = data;
  if (status != 0) {
    fprintf(stderr, "round %u could not run: %s\n", s->round + 1, kite_strerror(status));
    s->exit_code = 1;
    kite_pool_close(pool, on_closed, s);
    return;
  }
  unsigned ok = 0;
  char reruns[256] = "";
  for (unsigned i = 0; i < res->count; i++) {
    const kite_rank_result_t *r = &res->ranks[i];
    long v = strtol(s->out[r->rank], NULL, 10);
    long want = (long)(s->round + 1) * (long)(r->rank + 1);
    if (r->error == 0 && r->exit_status == 0 && v == want) {
      ok++;
      s->total[r->rank] += v;
    } else {
      fprintf(stderr, "round %u rank %u: error %s, exit %d, output '%s' (%s)\n", s->round + 1,
              r->rank, kite_err_name(r->error), r->exit_status, s->out[r->rank],
              r->message ? r->message : "");
      s->exit_code = 1;
    }
    if (r->attempts > 1) {
      size_t l = strlen(reruns);
      snprintf(reruns + l, sizeof(reruns) - l, " rank %u ran %u times;", r->rank, r->attempts);
      s->reruns += r->attempts - 1;
    }
  }
  printf("[%6.2fs] round %u/%u: %u/%u ranks ok%s%s\n", since(s), s->round + 1, s->rounds, ok,
         res->count, *reruns ? " —" : "", reruns);
  s->round++;
  next_round(s);
}

static void next_round(spot_t *s) {
  if (s->round == s->rounds || s->exit_code != 0) {
    printf("[%6.2fs] results after %u rounds (each round adds (round) x (rank + 1)):\n", since(s),
           s->round);
    long sum = (long)s->round * (long)(s->round + 1) / 2;
    for (unsigned r = 0; r < s->nodes; r++) {
      bool right = s->total[r] == sum * (long)(r + 1);
      printf("  rank %u: %ld%s\n", r, s->total[r], right ? "" : " (wrong)");
      if (!right)
        s->exit_code = 1;
    }
    printf("[%6.2fs] %u notices, %u preempted, %u lost, %u replaced, %u re-runs; closing\n",
           since(s), s->preempting, s->preempted, s->lost, s->replaced, s->reruns);
    kite_pool_close(s->pool, on_closed, s);
    return;
  }
  memset(s->out_len, 0, sizeof(s->out_len));
  memset(s->out, 0, sizeof(s->out));
  memset(s->attempt, 0, sizeof(s->attempt));
  char round_env[32];
  snprintf(round_env, sizeof(round_env), "ROUND=%u", s->round + 1);
  const char *env[] = {round_env, NULL};
  /* A piece of work that takes a while, so preemptions land in the middle of some. */
  kite_cmd_t cmd = {.shell = "sleep 0.4; echo $(( ROUND * (KITE_NODE_RANK + 1) ))"};
  kite_task_opts_t o = {.retries = 5, .timeout_ms = 30000, .env = env};
  int rc = kite_pool_broadcast(s->pool, &cmd, &o, on_output, on_round, s, NULL);
  if (rc != 0) {
    fprintf(stderr, "broadcast: %s\n", kite_strerror(rc));
    s->exit_code = 1;
    kite_pool_close(s->pool, on_closed, s);
  }
}

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  spot_t *s = data;
  if (status != 0) {
    fprintf(stderr, "pool failed to open: %s\n", message ? message : kite_strerror(status));
    s->exit_code = 1;
    kite_pool_close(pool, on_closed, s);
    return;
  }
  printf("[%6.2fs] pool ready: %u nodes READY; running %u rounds\n", since(s),
         kite_pool_ready_count(pool), s->rounds);
  next_round(s);
}

int main(int argc, char **argv) {
  spot_t s = {.nodes = 6, .rounds = 20};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--nodes") == 0)
      s.nodes = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--rounds") == 0)
      s.rounds = (unsigned)atoi(argv[i + 1]);
  }
  if (argc % 2 == 0 || s.nodes == 0 || s.nodes > MAX_NODES || s.rounds == 0) {
    fprintf(stderr, "usage: spot_pool [--nodes 1..%d] [--rounds R]\n", MAX_NODES);
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  s.t0 = uv_hrtime();
  int rc = kite_runtime_new(&s.rt, NULL);
  if (rc != 0) {
    fprintf(stderr, "kite: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_bus_t *bus = kite_runtime_bus(s.rt);
  kite_on_node_state_changed(bus, KITE_KEY_ANY, on_state, &s, NULL);
  kite_on_node_preempting(bus, KITE_KEY_ANY, on_preempting, &s, NULL);
  kite_on_node_preempted(bus, KITE_KEY_ANY, on_preempted, &s, NULL);
  kite_on_node_lost(bus, KITE_KEY_ANY, on_lost, &s, NULL);
  kite_on_node_replaced(bus, KITE_KEY_ANY, on_replaced, &s, NULL);
  kite_on_pool_shrunk(bus, KITE_KEY_ANY, on_shrunk, &s, NULL);
  kite_on_pool_closed(bus, KITE_KEY_ANY, on_pool_closed, &s, NULL);
  /* Spot capacity that comes and goes: each node is reclaimed with probability 4 per minute,
   * with a 1.5 s notice (AWS gives two minutes). With 6 nodes that is a preemption every 2-3
   * seconds. */
  kite_local_provider_options_t lo = {.notice_ms = 1500, .chaos_per_minute = 4.0};
  if ((rc = kite_local_provider_new(s.rt, &lo, NULL)) != 0 ||
      (rc = kite_transport_new(s.rt, NULL, NULL)) != 0 ||
      (rc = kite_bootstrap_runner_new(s.rt, NULL)) != 0) {
    fprintf(stderr, "kite: cannot start: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_bootstrap_t *b = NULL;
  kite_bootstrap_new(&b);
  kite_bootstrap_env(b, "WORKLOAD", "spot-demo", false);
  kite_bootstrap_run(b, "prepare", "mkdir -p work && echo ready > work/state");
  char name[32];
  snprintf(name, sizeof(name), "spot-%d", (int)getpid());
  kite_pool_spec_t spec = {.name = name,
                           .nodes = s.nodes,
                           .bootstrap = b,
                           .spot = true,
                           .replace = true,
                           .replace_per_minute = 60};
  /* Monitors every second: a notice is seen within about a second, and the node drains. */
  spec.monitors.health_interval_ms = 1000;
  spec.monitors.preempt_interval_ms = 1000;
  printf("opening a spot pool of %u local nodes (preempted at random, with notice)\n", s.nodes);
  rc = kite_pool_open(s.rt, &spec, on_open, &s, &s.pool);
  kite_bootstrap_free(b);
  if (rc != 0) {
    fprintf(stderr, "kite_pool_open: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_runtime_run(s.rt);
  if (kite_runtime_free(s.rt) != 0) {
    fprintf(stderr, "kite: handles left open at exit\n");
    s.exit_code = 1;
  }
  char tag[64];
  snprintf(tag, sizeof(tag), "kite-pool-%s", name);
  int left = kite_local_count_tagged(tag);
  if (left != 0) {
    fprintf(stderr, "%d process(es) of the pool left running\n", left);
    s.exit_code = 1;
  }
  printf("total %.2fs, %s\n", since(&s), s.exit_code == 0 ? "every round complete" : "FAILED");
  return s.exit_code;
}
