/* How the controller's CPU grows with the size of a pool.
 *
 * Design notes
 *
 * The figure is the CPU time of this process (getrusage(RUSAGE_SELF), user + system) from
 * kite_pool_open() to the close callback: the pool opened, every node READY, the pool closed
 * and every instance confirmed terminated. Nothing else runs in the process, so that is what
 * the pool, its node actors, the bus, the monitors and the state store cost the controller.
 *
 * What would dominate a real open (sshd processes, SSH handshakes, bootstrap scripts) is
 * taken away: the nodes come from a fake provider, a component that lives only in this
 * program. It answers the provider's requests (instance_launch, instance_terminate) and the
 * transport's (ssh_connect, ssh_disconnect) at once, on the bus, the way the real components
 * answer them, so the node actors walk their whole state machine
 * (INIT → PROVISIONING → BOOTSTRAPPING → READY → TERMINATING → TERMINATED) with no time
 * spent outside the controller. The spec has no bootstrap and no dead-man's switch; the
 * health and preemption monitors are on, with intervals far beyond the run, so every node is
 * watched but never checked. The state store is the real one (SQLite in the runtime's home,
 * on /dev/shm when it exists, so fsync costs nothing).
 *
 * Each size runs --repeat times (default 3), each time in a fresh runtime and home, and the
 * smallest figure is kept. The table gives nodes, the CPU ms of the open and of the close, their
 * sum, the sum per node, and the ratios of the sum and of the sum per node to the first
 * size's: with sizes that double, linear growth doubles x_cpu and keeps x_per_node flat;
 * quadratic growth quadruples x_cpu and doubles x_per_node.
 *
 *   pool_scale [--nodes 250,500,1000,2000] [--repeat N]
 *
 * Not part of the tests: `cmake --build build --target pool_scale && build/bench/pool_scale`,
 * or `bench/run.sh scale`. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "kite/kite.h"

#define FAKE "benchfake"
#define MAX_SIZES 16
#define NEVER_MS (24ull * 3600 * 1000)

typedef struct fake {
  kite_component_t comp;
  kite_bus_t *bus;
  kite_sub_t subs[4];
  unsigned launched, terminated;
} fake_t;

static void on_launch(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                      void *data) {
  fake_t *f = data;
  char id[32];
  snprintf(id, sizeof(id), "fake-%u-%u", p->rank, f->launched++);
  kite_ev_instance_launched_t l = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                   .provider = FAKE, .instance_id = id, .address = "127.0.0.1",
                                   .port = 22, .user = "bench", .tag = p->tag};
  kite_reply_instance_launched(bus, ev->corr, &l);
}

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  fake_t *f = data;
  f->terminated++;
  kite_ev_instance_terminated_t t = {.pool = p->pool, .node = p->node, .rank = p->rank,
                                     .provider = FAKE, .instance_id = p->instance_id};
  kite_reply_instance_terminated(bus, ev->corr, &t);
}

static void on_connect(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_ssh_connect_t *p,
                       void *data) {
  (void)data;
  kite_ev_session_ready_t s = {.node = p->node, .host = p->host, .port = p->port};
  kite_reply_session_ready(bus, ev->corr, &s);
}

static void on_disconnect(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_ssh_disconnect_t *p, void *data) {
  (void)data;
  kite_ev_session_closed_t c = {.node = p->node};
  kite_reply_session_closed(bus, ev->corr, &c);
}

static int fake_start(kite_component_t *c, kite_runtime_t *rt) {
  fake_t *f = kite_container_of(c, fake_t, comp);
  f->bus = kite_runtime_bus(rt);
  kite_key_t key = kite_key_str(FAKE);
  int rc = kite_respond_instance_launch(f->bus, key, on_launch, f, &f->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(f->bus, key, on_terminate, f, &f->subs[1]);
  if (rc == 0)
    rc = kite_respond_ssh_connect(f->bus, KITE_KEY_ANY, on_connect, f, &f->subs[2]);
  if (rc == 0)
    rc = kite_respond_ssh_disconnect(f->bus, KITE_KEY_ANY, on_disconnect, f, &f->subs[3]);
  return rc;
}

static void fake_stop(kite_component_t *c, kite_component_stopped_fn done) {
  fake_t *f = kite_container_of(c, fake_t, comp);
  for (size_t k = 0; k < sizeof(f->subs) / sizeof(f->subs[0]); k++)
    kite_bus_unsubscribe(f->bus, f->subs[k]);
  done(c);
}

/* ---- one run --------------------------------------------------------------------------- */

typedef struct run {
  kite_runtime_t *rt;
  kite_pool_t *pool;
  unsigned nodes;
  int open_status, close_status;
  bool opened, closed;
  double cpu_start_ms, cpu_open_ms, cpu_close_ms;
} run_t;

static double cpu_ms(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  run_t *r = data;
  (void)pool;
  r->cpu_close_ms = cpu_ms();
  r->closed = true;
  r->close_status = status;
}

static void on_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  run_t *r = data;
  r->cpu_open_ms = cpu_ms();
  r->opened = true;
  r->open_status = status;
  if (status != 0)
    fprintf(stderr, "pool_scale: the pool did not open: %s\n", msg ? msg : kite_strerror(status));
  else if (kite_pool_ready_count(pool) != r->nodes)
    fprintf(stderr, "pool_scale: %u of %u nodes READY\n", kite_pool_ready_count(pool), r->nodes);
  kite_pool_close(pool, on_closed, r);
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static int run_once(const char *base, unsigned nodes, unsigned seq, double *open_ms,
                    double *close_ms) {
  char home[256];
  snprintf(home, sizeof(home), "%s/kite-pool-scale-XXXXXX", base);
  if (mkdtemp(home) == NULL) {
    perror("pool_scale: mkdtemp");
    return 1;
  }
  run_t r = {.nodes = nodes};
  kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_ERROR};
  if (kite_runtime_new(&r.rt, &o) != 0) {
    fprintf(stderr, "pool_scale: cannot create a runtime\n");
    return 1;
  }
  fake_t fake = {.comp = {.name = FAKE, .tier = KITE_TIER_PROVIDER, .start = fake_start,
                          .stop = fake_stop}};
  int rc = kite_runtime_add(r.rt, &fake.comp);
  char name[48];
  snprintf(name, sizeof(name), "scale-%u-%u", nodes, seq);
  kite_pool_spec_t spec = {.name = name, .provider = FAKE, .nodes = nodes, .deadman_off = true};
  spec.monitors.health_interval_ms = NEVER_MS;
  spec.monitors.preempt_interval_ms = NEVER_MS;
  if (rc == 0) {
    r.cpu_start_ms = cpu_ms();
    rc = kite_pool_open(r.rt, &spec, on_open, &r, &r.pool);
  }
  if (rc == 0)
    kite_runtime_run(r.rt);
  if (rc != 0)
    fprintf(stderr, "pool_scale: cannot open the pool: %s\n", kite_strerror(rc));
  else if (!r.opened || !r.closed || r.open_status != 0 || r.close_status != 0 ||
           fake.terminated != nodes) {
    fprintf(stderr, "pool_scale: %u nodes: opened %d (%s), closed %d (%s), %u terminated\n",
            nodes, r.opened, kite_strerror(r.open_status), r.closed,
            kite_strerror(r.close_status), fake.terminated);
    rc = 1;
  }
  kite_runtime_shutdown(r.rt, on_shutdown, NULL);
  kite_runtime_run(r.rt);
  if (kite_runtime_free(r.rt) != 0) {
    fprintf(stderr, "pool_scale: the runtime still has handles\n");
    rc = 1;
  }
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
  if (system(cmd) != 0)
    fprintf(stderr, "pool_scale: cannot remove %s\n", home);
  *open_ms = r.cpu_open_ms - r.cpu_start_ms;
  *close_ms = r.cpu_close_ms - r.cpu_open_ms;
  return rc != 0;
}

/* ---- main ------------------------------------------------------------------------------ */

static int parse_sizes(const char *s, unsigned *out, unsigned *n) {
  *n = 0;
  while (*s) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || v == 0 || v > 100000 || *n == MAX_SIZES)
      return -1;
    out[(*n)++] = (unsigned)v;
    s = *end == ',' ? end + 1 : end;
    if (*end && *end != ',')
      return -1;
  }
  return *n ? 0 : -1;
}

int main(int argc, char **argv) {
  unsigned sizes[MAX_SIZES] = {250, 500, 1000, 2000}, nsizes = 4, repeat = 3;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc) {
      if (parse_sizes(argv[++i], sizes, &nsizes) != 0) {
        fprintf(stderr, "pool_scale: --nodes wants sizes like 250,500,1000\n");
        return 2;
      }
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = (unsigned)strtoul(argv[++i], NULL, 10);
      if (repeat == 0)
        repeat = 1;
    } else {
      fprintf(stderr, "usage: pool_scale [--nodes 250,500,1000,2000] [--repeat N]\n");
      return 2;
    }
  }
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  printf("%8s %10s %10s %10s %12s %8s %11s\n", "nodes", "open_ms", "close_ms", "cpu_ms",
         "cpu_ms/node", "x_cpu", "x_per_node");
  double first = 0, first_per = 0;
  for (unsigned s = 0; s < nsizes; s++) {
    double best_open = 0, best_close = 0, best = -1;
    for (unsigned k = 0; k < repeat; k++) {
      double o, c;
      if (run_once(base, sizes[s], k, &o, &c) != 0)
        return 1;
      if (best < 0 || o + c < best) {
        best = o + c;
        best_open = o;
        best_close = c;
      }
    }
    double per = best / sizes[s];
    if (s == 0) {
      first = best;
      first_per = per;
    }
    printf("%8u %10.1f %10.1f %10.1f %12.3f %8.2f %11.2f\n", sizes[s], best_open, best_close,
           best, per, first > 0 ? best / first : 0.0, first_per > 0 ? per / first_per : 0.0);
    fflush(stdout);
  }
  return 0;
}
