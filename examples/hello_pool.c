/* hello_pool: open 4 local nodes, bootstrap them (write a file, set env), broadcast a command,
 * print each rank's output, close. Every node is a real sshd on a loopback address.
 *
 *   ./hello_pool            (KITE_LOG=info shows more of what happens inside)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kite/kite.h"
#include "kite/bootstrap.h"
#include "kite/pool.h"
#include "kite/provider.h"
#include "kite/transport.h"

typedef struct demo {
  kite_runtime_t *rt;
  kite_pool_t *pool;
  uint64_t t0;
  char *out[4];
  size_t out_len[4];
  int exit_code;
} demo_t;

static double since(demo_t *d) {
  return (double)(uv_hrtime() - d->t0) / 1e9;
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev,
                     const kite_ev_node_state_changed_t *p, void *data) {
  (void)bus;
  (void)ev;
  printf("[%6.3fs] rank %u: %-13s -> %-13s (%s)\n", since(data), p->rank,
         kite_node_state_name(p->from), kite_node_state_name(p->to), p->reason ? p->reason : "");
}

static void on_progress(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_bootstrap_progress_t *p, void *data) {
  (void)bus;
  (void)ev;
  printf("[%6.3fs] rank %u: bootstrap step %u/%u %s\n", since(data), p->rank, p->step, p->total,
         p->name ? p->name : "");
}

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  demo_t *d = data;
  (void)pool;
  (void)attempt;
  (void)stream;
  if (rank >= 4)
    return;
  char *g = realloc(d->out[rank], d->out_len[rank] + len + 1);
  if (g == NULL)
    return;
  memcpy(g + d->out_len[rank], buf, len);
  d->out_len[rank] += len;
  g[d->out_len[rank]] = '\0';
  d->out[rank] = g;
}

/* The event comes after the node events that led to it (callbacks run at once; events are
 * delivered in order), so the story prints in order. */
static void on_pool_closed(kite_bus_t *bus, const kite_event_t *ev,
                           const kite_ev_pool_closed_t *p, void *data) {
  (void)bus;
  (void)ev;
  printf("[%6.3fs] pool %s closed: every instance terminated and confirmed\n", since(data),
         p->name);
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  demo_t *d = data;
  (void)pool;
  if (status != 0) {
    fprintf(stderr, "closing the pool: %s\n", kite_strerror(status));
    d->exit_code = 1;
  }
  kite_runtime_shutdown(d->rt, NULL, NULL);
}

static void on_broadcast(kite_pool_t *pool, int status, const kite_task_result_t *res,
                         void *data) {
  demo_t *d = data;
  printf("[%6.3fs] broadcast finished: %u ranks, %u failed\n", since(d),
         status == 0 ? res->count : 0, status == 0 ? res->failed : 0);
  for (unsigned i = 0; status == 0 && i < res->count; i++) {
    const kite_rank_result_t *r = &res->ranks[i];
    printf("--- rank %u (exit %d%s%s) ---\n%s", r->rank, r->exit_status,
           r->error ? ", " : "", r->error ? kite_strerror(r->error) : "",
           r->rank < 4 && d->out[r->rank] ? d->out[r->rank] : "");
  }
  if (status != 0 || res->failed)
    d->exit_code = 1;
  kite_pool_close(pool, on_closed, d);
}

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  demo_t *d = data;
  if (status != 0) {
    fprintf(stderr, "pool failed to open: %s\n", message ? message : kite_strerror(status));
    d->exit_code = 1;
    kite_pool_close(pool, on_closed, d);
    return;
  }
  printf("[%6.3fs] pool ready: %u nodes READY\n", since(d), kite_pool_ready_count(pool));
  kite_cmd_t cmd = {.shell = "uname -n; echo \"rank $KITE_NODE_RANK of $KITE_NUM_NODES, "
                             "head $KITE_HEAD_IP, greeting: $GREETING\"; cat motd.txt"};
  int rc = kite_pool_broadcast(pool, &cmd, NULL, on_output, on_broadcast, d, NULL);
  if (rc != 0) {
    fprintf(stderr, "broadcast: %s\n", kite_strerror(rc));
    d->exit_code = 1;
    kite_pool_close(pool, on_closed, d);
  }
}

int main(void) {
  demo_t d = {.t0 = uv_hrtime()};
  int rc = kite_runtime_new(&d.rt, NULL);
  if (rc != 0) {
    fprintf(stderr, "kite: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_bus_t *bus = kite_runtime_bus(d.rt);
  kite_on_node_state_changed(bus, KITE_KEY_ANY, on_state, &d, NULL);
  kite_on_bootstrap_progress(bus, KITE_KEY_ANY, on_progress, &d, NULL);
  kite_on_pool_closed(bus, KITE_KEY_ANY, on_pool_closed, &d, NULL);
  if ((rc = kite_local_provider_new(d.rt, NULL, NULL)) != 0 ||
      (rc = kite_transport_new(d.rt, NULL, NULL)) != 0 ||
      (rc = kite_bootstrap_runner_new(d.rt, NULL)) != 0) {
    fprintf(stderr, "kite: cannot start: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_bootstrap_t *b = NULL;
  kite_bootstrap_new(&b);
  kite_bootstrap_env(b, "GREETING", "hello from kite", false);
  static const char motd[] = "this file was written by the bootstrap\n";
  kite_bootstrap_file(b, "motd.txt", motd, sizeof(motd) - 1, 0644);
  kite_bootstrap_run(b, "check the shell", "test -n \"$GREETING\"");
  kite_pool_spec_t spec = {.name = "hello", .nodes = 4, .bootstrap = b};
  printf("opening a pool of 4 local nodes (each a real sshd on its own loopback address)\n");
  rc = kite_pool_open(d.rt, &spec, on_open, &d, &d.pool);
  kite_bootstrap_free(b);
  if (rc != 0) {
    fprintf(stderr, "kite_pool_open: %s\n", kite_strerror(rc));
    return 1;
  }
  kite_runtime_run(d.rt);
  kite_runtime_free(d.rt);
  for (int i = 0; i < 4; i++)
    free(d.out[i]);
  printf("total %.3fs\n", since(&d));
  return d.exit_code;
}
