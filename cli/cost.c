/* `kite cost [--json] [POOL]`: what every pool (or one) has cost, from the state store, which
 * keeps every instance's price, when its bill started and when it ended: per pool, per
 * provider, per instance, with totals and what spot saved. Billable time follows the
 * provider's granularity through kite/cost.h, the function the cost monitor's events use. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "kite/cost.h"
#include "kite/registry.h"

kite_cost_bill_t cli_instance_bill(const kite_store_instance_t *x, int64_t now) {
  kite_cost_bill_t none = {0};
  if (x->instance_id == NULL)
    return none; /* the launch created nothing */
  int64_t start = x->running_ms > 0 ? x->running_ms : x->created_ms;
  int64_t end = x->state == KITE_STORE_TERMINATED ? x->terminated_ms : now;
  const kite_provider_info_t *info = kite_registry_find(x->provider);
  return kite_cost_bill(end - start, info ? info->billing_increment_s : 0,
                        info ? info->billing_minimum_s : 0, x->price, x->ondemand_price, x->spot);
}

/* Why an instance's bill ended, or "running" while it is live. */
static const char *ended_why(const kite_store_instance_t *x) {
  if (x->state != KITE_STORE_TERMINATED)
    return x->state == KITE_STORE_RUNNING ? "running" : kite_store_instance_state_name(x->state);
  if (x->note && strncmp(x->note, "replaced", 8) == 0)
    return strstr(x->note, "preempt") ? "preempted" : "replaced";
  return "terminated";
}

static json_t *provider_entry(json_t *providers, const char *name) {
  for (size_t i = 0; i < json_array_size(providers); i++) {
    json_t *p = json_array_get(providers, i);
    if (strcmp(json_string_value(json_object_get(p, "provider")), name) == 0)
      return p;
  }
  json_t *p = json_pack("{s:s, s:[], s:f, s:f, s:f}", "provider", name, "instances", "cost", 0.0,
                        "savings", 0.0, "rate_hourly", 0.0);
  json_array_append_new(providers, p);
  return p;
}

static void add_real(json_t *o, const char *key, double v) {
  json_object_set_new(o, key, json_real(json_real_value(json_object_get(o, key)) + v));
}

static json_t *pool_cost(kite_store_t *st, const char *name, const char *provider, int64_t now) {
  json_t *j =
      json_pack("{s:s, s:s, s:[], s:f, s:f, s:f, s:i}", "name", name, "provider", provider,
                "providers", "cost", 0.0, "savings", 0.0, "rate_hourly", 0.0, "instances", 0);
  json_t *providers = json_object_get(j, "providers");
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  if (kite_store_instances(st, name, false, &v, &n) != 0)
    return j;
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    const kite_store_instance_t *x = &v[i];
    if (x->instance_id == NULL)
      continue;
    count++;
    kite_cost_bill_t b = cli_instance_bill(x, now);
    bool live = x->state != KITE_STORE_TERMINATED;
    double rate = live && x->price > 0 ? x->price : 0;
    json_t *e =
        json_pack("{s:s, s:I, s:s?, s:s?, s:s?, s:b, s:o, s:o, s:I, s:o, s:f, s:f, s:f, s:s, s:s?}",
                  "id", x->instance_id, "rank", (json_int_t)x->rank, "type", x->instance_type,
                  "region", x->region, "zone", x->zone, "spot", x->spot, "price_hourly",
                  x->price >= 0 ? json_real(x->price) : json_null(), "ondemand_hourly",
                  x->ondemand_price >= 0 ? json_real(x->ondemand_price) : json_null(), "started_ms",
                  (json_int_t)(x->running_ms > 0 ? x->running_ms : x->created_ms), "ended_ms",
                  live ? json_null() : json_integer(x->terminated_ms), "billable_s", b.billable_s,
                  "cost", b.cost, "savings", b.savings, "end", ended_why(x), "note", x->note);
    json_t *p = provider_entry(providers, x->provider);
    json_array_append_new(json_object_get(p, "instances"), e);
    add_real(p, "cost", b.cost);
    add_real(p, "savings", b.savings);
    add_real(p, "rate_hourly", rate);
    add_real(j, "cost", b.cost);
    add_real(j, "savings", b.savings);
    add_real(j, "rate_hourly", rate);
  }
  json_object_set_new(j, "instances", json_integer(count));
  kite_store_instances_free(v, n);
  return j;
}

static const char *duration(double s) {
  static char buf[32];
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, sizeof(buf), "%ldh%02ldm%02lds", t / 3600, t / 60 % 60, t % 60);
  else if (t >= 60)
    snprintf(buf, sizeof(buf), "%ldm%02lds", t / 60, t % 60);
  else
    snprintf(buf, sizeof(buf), "%lds", t);
  return buf;
}

static double num(json_t *o, const char *key) {
  return json_number_value(json_object_get(o, key));
}

static void print_pool(json_t *p) {
  printf("pool %s: $%.6f", json_string_value(json_object_get(p, "name")), num(p, "cost"));
  if (num(p, "rate_hourly") > 0)
    printf(", $%.6f/h now", num(p, "rate_hourly"));
  if (num(p, "savings") > 0)
    printf(", spot saved $%.6f", num(p, "savings"));
  printf(" (%d instance%s)\n", (int)json_integer_value(json_object_get(p, "instances")),
         json_integer_value(json_object_get(p, "instances")) == 1 ? "" : "s");
  json_t *providers = json_object_get(p, "providers");
  for (size_t i = 0; i < json_array_size(providers); i++) {
    json_t *pr = json_array_get(providers, i);
    json_t *insts = json_object_get(pr, "instances");
    printf("  %s: $%.6f", json_string_value(json_object_get(pr, "provider")), num(pr, "cost"));
    if (num(pr, "savings") > 0)
      printf(", spot saved $%.6f", num(pr, "savings"));
    printf("\n    %-20s %-4s %-14s %-10s %-4s %-9s %-19s %-19s %-9s %-10s %s\n", "INSTANCE", "RANK",
           "TYPE", "REGION", "SPOT", "$/H", "STARTED", "ENDED", "BILLED", "COST", "END");
    for (size_t k = 0; k < json_array_size(insts); k++) {
      json_t *x = json_array_get(insts, k);
      const char *type = json_string_value(json_object_get(x, "type"));
      const char *region = json_string_value(json_object_get(x, "region"));
      json_t *price = json_object_get(x, "price_hourly");
      char rate[24], started[24], ended[24];
      snprintf(rate, sizeof(rate), json_is_number(price) ? "%.5f" : "?", num(x, "price_hourly"));
      snprintf(started, sizeof(started), "%s",
               cli_clock(json_integer_value(json_object_get(x, "started_ms"))));
      json_t *end = json_object_get(x, "ended_ms");
      snprintf(ended, sizeof(ended), "%s",
               json_is_integer(end) ? cli_clock(json_integer_value(end)) : "running");
      long long rank = (long long)json_integer_value(json_object_get(x, "rank"));
      char rank_s[16];
      snprintf(rank_s, sizeof(rank_s), rank >= 0 ? "%lld" : "-", rank);
      printf("    %-20s %-4s %-14s %-10s %-4s %-9s %-19s %-19s %-9s $%-9.6f %s\n",
             json_string_value(json_object_get(x, "id")), rank_s, type ? type : "-",
             region ? region : "-", json_is_true(json_object_get(x, "spot")) ? "yes" : "no", rate,
             started, ended, duration(num(x, "billable_s")), num(x, "cost"),
             json_string_value(json_object_get(x, "end")));
    }
  }
}

int cli_cmd_cost(int argc, char **argv) {
  bool json = false;
  const char *name = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("cost", stdout);
      return 0;
    } else if (strcmp(argv[i], "--json") == 0) {
      json = true;
    } else if (argv[i][0] == '-') {
      return cli_usage("cost", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("cost", "unexpected argument '%s' (give at most one pool)", argv[i]);
    }
  }
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  kite_store_pool_t *v = NULL, one = {0};
  size_t n = 0;
  int rc;
  if (name) {
    rc = kite_store_pool_get(st, name, &one);
    v = &one;
    n = rc == 0;
  } else {
    rc = kite_store_pools(st, &v, &n);
  }
  if (rc != 0) {
    if (rc == KITE_ENOENT)
      cli_err("cost: there is no pool named %s (`kite cost` lists every pool's)", name);
    else
      cli_err("cost: %s", kite_store_errmsg(st));
    kite_store_close(st);
    return CLI_EXIT_FAIL;
  }
  int64_t now = cli_now_ms();
  json_t *pools = json_array();
  double total = 0, savings = 0, rate = 0;
  for (size_t i = 0; i < n; i++) {
    json_t *p = pool_cost(st, v[i].name, v[i].provider, now);
    total += num(p, "cost");
    savings += num(p, "savings");
    rate += num(p, "rate_hourly");
    json_array_append_new(pools, p);
  }
  if (name)
    kite_store_pool_clear(&one);
  else
    kite_store_pools_free(v, n);
  kite_store_close(st);
  if (json) {
    json_t *j = json_pack("{s:i, s:o, s:f, s:f, s:f}", "v", CLI_PROTO_VERSION, "pools", pools,
                          "cost", total, "savings", savings, "rate_hourly", rate);
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(12));
    printf("%s\n", s ? s : "{}");
    free(s);
    json_decref(j);
    return 0;
  }
  if (json_array_size(pools) == 0)
    printf("no pools in the store (`kite run SPEC` or `kite up SPEC` opens one)\n");
  for (size_t i = 0; i < json_array_size(pools); i++) {
    if (i)
      printf("\n");
    print_pool(json_array_get(pools, i));
  }
  if (json_array_size(pools) > 1)
    printf("\ntotal: $%.6f over %zu pools (spot saved $%.6f)\n", total, json_array_size(pools),
           savings);
  json_decref(pools);
  return 0;
}
