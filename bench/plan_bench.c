/* How long the optimizer's choice takes over N offers (default 10,000): kite_pool_choose() (the
 * choice alone, over offers in memory) and kite_pool_plan() for 4 nodes with resources over the
 * same offers cached in the store, from the call to its callback (the cache read, the choice,
 * the reach record of the chosen site). Their peer in the same run is the cache read alone
 * (kite_store_offers_get of the same offers).
 *
 *   plan_bench [--offers N] [--repeat R]     prints key=value lines (medians of R runs) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kite/kite.h"

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef struct run {
  kite_runtime_t *rt;
  double t0, t1;
  int status;
} run_t;

static void on_plan(int status, const char *plan, const char *message, void *data) {
  run_t *r = data;
  (void)plan;
  r->t1 = now_ms();
  r->status = status;
  if (status)
    fprintf(stderr, "plan_bench: %s\n", message ? message : kite_strerror(status));
  kite_runtime_shutdown(r->rt, NULL, NULL);
}

int main(int argc, char **argv) {
  size_t n = 10000, repeat = 21;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--offers") == 0)
      n = strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--repeat") == 0)
      repeat = strtoul(argv[i + 1], NULL, 10);
  }
  if (n == 0 || repeat == 0 || repeat > 1000)
    return 2;
  char home[] = "/tmp/kite-plan-bench-XXXXXX";
  if (mkdtemp(home) == NULL)
    return 1;
  setenv("DIGITALOCEAN_TOKEN", "plan-bench-token", 1);
  setenv("KITE_DO_API_URL", "http://127.0.0.1:9", 1); /* never called: the cache is fresh */
  /* N offers of one provider over 20 regions; a fifth of them fit, at random prices. */
  kite_offer_t *v = calloc(n, sizeof(*v));
  srand(7);
  for (size_t i = 0; v && i < n; i++) {
    kite_offer_t *o = &v[i];
    KITE_OFFER_SET(o, provider, "digitalocean");
    snprintf(o->region, sizeof(o->region), "region-%02zu", i % 20);
    snprintf(o->instance_type, sizeof(o->instance_type), "type-%zu", i / 20);
    o->vcpus = 1u << (rand() % 6);
    o->memory_mb = 1024ull << (rand() % 7);
    o->price = 0.005 + (double)(rand() % 100000) / 10000.0;
    o->spot_price = -1;
    o->available = -1;
    o->fetched_ms = (int64_t)time(NULL) * 1000;
    KITE_OFFER_SET(o, source, "api");
  }
  double *plan_ms = calloc(repeat, sizeof(double)), *read_ms = calloc(repeat, sizeof(double));
  double *choose_ms = calloc(repeat, sizeof(double));
  int status = 0;
  for (size_t k = 0; k < repeat && status == 0; k++) {
    kite_runtime_options_t ro = {.home = home, .log_level = KITE_LOG_ERROR};
    run_t r = {0};
    if (kite_runtime_new(&r.rt, &ro) != 0 ||
        kite_registry_start(r.rt, "digitalocean", NULL, NULL) != 0)
      return 1;
    if (k == 0) {
      /* The cache the runs read: the runtime's own store. */
      char path[300];
      snprintf(path, sizeof(path), "%s/state.db", home);
      kite_store_t *st = NULL;
      if (kite_store_open(path, &st) != 0 ||
          kite_store_offers_put(st, "digitalocean", NULL, false, v, n) != 0) {
        fprintf(stderr, "plan_bench: cannot fill the cache at %s\n", path);
        return 1;
      }
      kite_store_close(st);
    }
    char path[300];
    snprintf(path, sizeof(path), "%s/state.db", home);
    kite_store_t *st = NULL;
    kite_offer_t *got = NULL;
    size_t got_n = 0;
    double a = now_ms();
    if (kite_store_open(path, &st) != 0 || kite_store_offers_get(st, NULL, &got, &got_n) != 0 ||
        got_n != n)
      return 1;
    read_ms[k] = now_ms() - a;
    free(got);
    kite_store_close(st);
    kite_pool_spec_t spec = {.name = "plan-bench",
                             .provider = "digitalocean",
                             .nodes = 4,
                             .cpus = 8,
                             .memory_mb = 16384};
    char *plan = NULL, *why = NULL;
    double c0 = now_ms();
    if (kite_pool_choose(&spec, v, n, &plan, &why) != 0) {
      fprintf(stderr, "plan_bench: %s\n", why ? why : "no choice");
      return 1;
    }
    choose_ms[k] = now_ms() - c0;
    free(plan);
    r.t0 = now_ms();
    if (kite_pool_plan(r.rt, &spec, on_plan, &r) != 0)
      return 1;
    kite_runtime_run(r.rt);
    kite_runtime_free(r.rt);
    plan_ms[k] = r.t1 - r.t0;
    status = r.status;
  }
  if (status != 0)
    return 1;
  qsort(plan_ms, repeat, sizeof(double), cmp);
  qsort(read_ms, repeat, sizeof(double), cmp);
  qsort(choose_ms, repeat, sizeof(double), cmp);
  printf("plan_offers=%zu\nplan_repeat=%zu\nchoose_median_ms=%.3f\nchoose_max_ms=%.3f\n"
         "plan_median_ms=%.3f\nplan_max_ms=%.3f\ncache_read_median_ms=%.3f\n"
         "choose_over_read=%.2f\nplan_over_read=%.2f\n",
         n, repeat, choose_ms[repeat / 2], choose_ms[repeat - 1], plan_ms[repeat / 2],
         plan_ms[repeat - 1], read_ms[repeat / 2], choose_ms[repeat / 2] / read_ms[repeat / 2],
         plan_ms[repeat / 2] / read_ms[repeat / 2]);
  free(choose_ms);
  free(v);
  free(plan_ms);
  free(read_ms);
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
  return system(cmd) == 0 ? 0 : 1;
}
