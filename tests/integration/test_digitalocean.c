/* The DigitalOcean provider at the bus level, against kite-cloudsim (a real HTTP server on
 * loopback whose droplets are real sshd nodes): launch, reach the droplet over SSH, list by
 * tag, describe, preemption, terminate confirmed only when the droplet and its processes are
 * gone, error mapping, and injected API faults without duplicate droplets. The cases every
 * cloud shares are in cloud_cases.h; DigitalOcean's own (batched creates with names, doctl's
 * config, its messages) are here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kite/http.h"
#include "kite/kite.h"
#include "kite/offer.h"

#define TOKEN "dop_v1_cloudsim_test_token_5f2a9c"

#include "cloudsim_client.h"

#include "cloud_cases.h"

static int do_provider_new(kite_runtime_t *rt, const cloud_timing_t *t) {
  kite_do_provider_options_t po = {.poll_ms = t->poll_ms,
                                   .backoff_base_ms = t->backoff_base_ms,
                                   .max_retries = t->max_retries,
                                   .active_timeout_ms = t->running_timeout_ms,
                                   .delete_timeout_ms = t->delete_timeout_ms};
  return kite_do_provider_new(rt, &po, NULL);
}

/* What the hostile server answers, one after the other, round and round. */
static const cloud_answer_t hostile[] = {
    {200, "{}", NULL}, /* the key lookup: "present" */
    {202, "{\"droplet\": {\"id\": \"3164444\"}}", NULL},
    {200, "{\"droplets\": {\"a\": 1}}", NULL},
    {200, "{\"droplets\": [null, 1, \"x\", {\"name\": 5, \"id\": -1}, {\"name\": []}]}", NULL},
    {202, "{\"droplet\": {\"id\": 1e400}}", NULL},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", NULL},
    {202, "{\"droplet\": null, \"links\": 7}", NULL},
    {200, "{\"droplets\": [], \"links\": {\"pages\": {\"next\": \"https://evil.example/v2/x\"}}}",
     NULL},
    {422, "{\"id\": 5, \"message\": [\"\\u0000\", {}]}", NULL},
    {500, "\xff\xfe\xfd not json at all \x01\x02", NULL},
    {200,
     "{\"droplet\": {\"id\": 9, \"status\": \"active\", \"networks\": {\"v4\": [{\"type\": "
     "\"public\", \"ip_address\": 7}, \"x\", null]}, \"size\": \"big\"}}",
     NULL},
    {200, "{\"droplet\": {\"id\": 9, \"status\": 1, \"networks\": []}}", NULL},
    {204, "", NULL},
    {200, "{\"droplets\": [{\"id\": 18446744073709551615, \"name\": \"\"}], \"meta\": null}", NULL},
    {429, "{\"message\": \"slow down\"}", NULL},
    {200, "\"just a string\"", NULL},
    {200, "{\"droplet\": {\"id\": 0}}", NULL},
};

/* The offers of /v2/sizes as the test reads them: one per size and region it lists. */
static size_t do_expect(json_t *raw, const char *region, kite_offer_t *out, size_t max) {
  size_t n = 0, i, k;
  json_t *z, *r;
  json_array_foreach(json_object_get(raw, "sizes"), i, z) {
    json_array_foreach(json_object_get(z, "regions"), k, r) {
      if (region && strcmp(region, json_string_value(r)) != 0)
        continue;
      assert_true(n < max);
      kite_offer_t *o = &out[n++];
      memset(o, 0, sizeof(*o));
      snprintf(o->region, sizeof(o->region), "%s", json_string_value(r));
      snprintf(o->instance_type, sizeof(o->instance_type), "%s",
               json_string_value(json_object_get(z, "slug")));
      o->vcpus = (unsigned)json_integer_value(json_object_get(z, "vcpus"));
      o->memory_mb = (uint64_t)json_integer_value(json_object_get(z, "memory"));
      o->disk_gb = (unsigned)json_integer_value(json_object_get(z, "disk"));
      o->price = json_number_value(json_object_get(z, "price_hourly"));
      o->available = json_is_false(json_object_get(z, "available")) ? 0 : -1;
      snprintf(o->arch, sizeof(o->arch), "x86_64");
      json_t *g = json_object_get(z, "gpu_info");
      if (g) {
        const char *model = json_string_value(json_object_get(g, "model"));
        assert_string_equal(model, "nvidia_h100"); /* the emulator's only GPU */
        snprintf(o->accelerator, sizeof(o->accelerator), "H100");
        o->accelerator_count = (unsigned)json_integer_value(json_object_get(g, "count"));
        o->accelerator_memory_mb =
            (uint64_t)json_integer_value(json_object_get(json_object_get(g, "vram"), "amount")) *
            1024 / o->accelerator_count;
      }
    }
  }
  return n;
}

/* Sizes kite must not take: each answer alone for every request. */
#define SIZE_OK                                                                                    \
  "\"slug\": \"s-1vcpu-1gb\", \"vcpus\": 1, \"memory\": 1024, \"disk\": 25, \"price_hourly\": "    \
  "0.00893, \"available\": true"
static const cloud_answer_t hostile_catalog[] = {
    {200, "{\"sizes\": {\"slug\": \"x\"}}", NULL},
    {200, "{\"sizes\": [{" SIZE_OK ", \"regions\": \"nyc1\"}]}", NULL},
    {200, "{\"sizes\": [{" SIZE_OK ", \"regions\": [7]}]}", NULL},
    {200,
     "{\"sizes\": [{\"slug\": 5, \"vcpus\": 1, \"memory\": 1024, \"disk\": 25, "
     "\"price_hourly\": 0.1, \"regions\": [\"nyc1\"]}]}",
     NULL},
    {200,
     "{\"sizes\": [{\"slug\": \"a\", \"vcpus\": 1e300, \"memory\": 1024, \"disk\": 25, "
     "\"price_hourly\": 0.1, \"regions\": [\"nyc1\"]}]}",
     NULL},
    {200,
     "{\"sizes\": [{\"slug\": \"a\", \"vcpus\": -4, \"memory\": 1024, \"disk\": 25, "
     "\"price_hourly\": 0.1, \"regions\": [\"nyc1\"]}]}",
     NULL},
    {200,
     "{\"sizes\": [{\"slug\": \"a\", \"vcpus\": 2, \"memory\": \"lots\", \"disk\": 25, "
     "\"price_hourly\": 0.1, \"regions\": [\"nyc1\"]}]}",
     NULL},
    {200,
     "{\"sizes\": [{\"slug\": \"a\", \"vcpus\": 2, \"memory\": 2048, \"disk\": 25, "
     "\"price_hourly\": 1e308, \"regions\": [\"nyc1\"]}]}",
     NULL},
    {200,
     "{\"sizes\": [{\"slug\": \"a\", \"vcpus\": 2, \"memory\": 2048, \"disk\": 25, "
     "\"regions\": [\"nyc1\"]}]}",
     NULL},
    {200,
     "{\"sizes\": [{" SIZE_OK ", \"regions\": [\"nyc1\"], \"gpu_info\": {\"count\": 0, "
     "\"model\": \"nvidia_h100\"}}]}",
     NULL},
    {200,
     "{\"sizes\": [{" SIZE_OK ", \"regions\": [\"nyc1\"], \"gpu_info\": {\"count\": 1, "
     "\"model\": \"nvidia_an_accelerator_whose_name_is_far_too_long_for_an_offer\"}}]}",
     NULL},
    {200,
     "{\"sizes\": [{" SIZE_OK ", \"regions\": [\"a-region-name-that-goes-on-and-on-and-on-"
     "and-on-and-on\"]}]}",
     NULL},
    {200, "{\"sizes\": [{" SIZE_OK ", \"available\": \"yes\", \"regions\": [\"nyc1\"]}]}", NULL},
    {200, "{\"sizes\": [{" SIZE_OK ", \"regions\": [\"nyc1\"]}, 17]}", NULL},
    {200,
     "{\"sizes\": [{\"slug\": \"a\", \"vcpus\": 2, \"memory\": 18446744073709551615, "
     "\"disk\": 25, \"price_hourly\": 0.1, \"regions\": [\"nyc1\"]}]}",
     NULL},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", NULL},
    {500, "\xff\xfe not json", NULL},
};

static const cloud_case_t digitalocean = {
    .provider = "digitalocean",
    .token = TOKEN,
    .tmp = "do",
    .type = "s-1vcpu-1gb",
    .region = "nyc3",
    .image = "ubuntu-24-04-x64",
    .api_suffix = "",
    .live_path = "/_sim/state",
    .live_field = "droplets",
    .keys_path = "/_sim/state",
    .keys_field = "keys",
    .kill_fmt = "/_sim/droplets/%s/kill",
    .url_env = "KITE_DO_API_URL",
    .token_env = "DIGITALOCEAN_TOKEN",
    .spec = "digitalocean-v2.yaml",
    .prism_upstream_suffix = "",
    .prism_spec = NULL,
    .provider_new = do_provider_new,
    .hostile = hostile,
    .n_hostile = sizeof(hostile) / sizeof(hostile[0]),
    .catalog_path = "/v2/sizes?per_page=200",
    .expect_offers = do_expect,
    .other_region = "sfo3",
    .catalog_ok = "{\"sizes\": [{" SIZE_OK
                  ", \"regions\": [\"nyc1\"]}], \"links\": {}, \"meta\": {\"total\": 1}}",
    .hostile_catalog = hostile_catalog,
    .n_hostile_catalog = sizeof(hostile_catalog) / sizeof(hostile_catalog[0])};

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void test_launch_list_terminate(void **state) {
  (void)state;
  case_launch_list_terminate();
}

/* Launches asked for in the same loop turn, alike, go out as one create with names. */
static void test_alike_launches_are_one_create(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "batch", NULL, TOKEN);
  /* Each droplet's own host key makes each create different: batches are for unpinned ones. */
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"token\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222,"
           "\"pin_host_key\":false}",
           c.sim.url, TOKEN, kite_local_login_user());
  c.n = 4;
  c.after_launch = terminate_all;
  for (unsigned i = 0; i < 4; i++)
    launch(&c, i, "#!/bin/sh\necho same\n");
  kite_runtime_run(c.rt);
  for (unsigned i = 0; i < 4; i++) {
    assert_int_equal(c.in[i].status, 0);
    assert_true(c.in[i].terminated);
    assert_string_equal(c.in[i].host_key, "");
  }
  char want[128];
  snprintf(want, sizeof(want), "creating 4 droplets tagged %s in one request", c.tag);
  assert_non_null(strstr(c.log, want));
  assert_int_equal(sim_count(&c.sim, "created"), 4);
  assert_int_equal(sim_count(&c.sim, "droplets"), 0);
  ctx_done(&c);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_bad_token_is_credentials(void **state) {
  (void)state;
  case_bad_token("dop_v1_wrong_token_0000", "wrong_token");
}

static void test_missing_token_says_where_kite_looked(void **state) {
  (void)state;
  static const char *const unset[] = {"DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN",
                                      "XDG_CONFIG_HOME", NULL};
  case_missing_token(unset, "doctl/config.yaml");
}

static void test_doctl_config_token(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("DIGITALOCEAN_TOKEN");
  unsetenv("DIGITALOCEAN_ACCESS_TOKEN");
  ctx_init(&c, "doctl", NULL, TOKEN);
  char path[256];
  snprintf(path, sizeof(path), "%s/doctl", c.home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/doctl/config.yaml", c.home);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "context: default\naccess-token: %s\noutput: text\n", TOKEN);
  fclose(fp);
  setenv("XDG_CONFIG_HOME", c.home, 1);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"ssh_user\":\"%s\","
           "\"ssh_port\":2222}",
           c.sim.url, kite_local_login_user());
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  unsetenv("XDG_CONFIG_HOME");
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

/* DigitalOcean refuses both with 422 and a message of its own. */
static void test_capacity_error_leaks_nothing(void **state) {
  (void)state;
  static const char *const want[] = {"not available in this region", "another region or size",
                                     NULL};
  case_no_capacity(want);
}

static void test_droplet_limit_is_quota(void **state) {
  (void)state;
  case_limit("droplet limit");
}

/* A size DigitalOcean does not have is KITE_EUNAVAILABLE; one it has, but not in that region,
 * KITE_ECAPACITY (DigitalOcean says "not available in this region" for both kinds). */
static void test_unknown_size_is_unavailable(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "nosize", NULL, TOKEN);
  c.n = 2;
  static const char *const types[] = {"s-99vcpu-1tb", "gpu-h100x1-80gb"};
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_instance_launch_t l = {.provider = "digitalocean",
                                   .pool = 7,
                                   .node = 100 + i,
                                   .rank = i,
                                   .tag = c.tag,
                                   .options = c.options,
                                   .instance_type = types[i],
                                   .region = "nyc3",
                                   .image = cloud->image};
    assert_int_equal(
        kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[i], NULL),
        0);
  }
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_EUNAVAILABLE);
  assert_non_null(strstr(c.in[0].msg, "invalid size"));
  assert_int_equal(c.in[1].status, KITE_ECAPACITY);
  assert_non_null(strstr(c.in[1].msg, "nyc3"));
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* ---- the catalog ---------------------------------------------------------------------------- */

static void test_catalog_is_the_sizes(void **state) {
  (void)state;
  case_catalog();
}

/* The GPU sizes: H100s, with their count and memory, in tor1 only. */
static void test_catalog_has_the_gpus(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "catgpu", NULL, TOKEN);
  cat_t k = {0};
  ask_catalog(c.rt, c.options, "tor1", &k);
  kite_runtime_run(c.rt);
  assert_int_equal(k.status, 0);
  assert_int_equal(k.n, 2);
  const kite_offer_t *o = offer_find(k.offers, k.n, "tor1", "gpu-h100x8-640gb");
  assert_non_null(o);
  assert_string_equal(o->accelerator, "H100");
  assert_int_equal(o->accelerator_count, 8);
  assert_int_equal(o->accelerator_memory_mb, 80 * 1024);
  assert_int_equal(o->vcpus, 160);
  catalog_matches(&c.sim, &k, "tor1");
  free(k.offers);
  ctx_done(&c);
}

static void test_catalog_with_20_percent_faults(void **state) {
  (void)state;
  case_catalog_faults();
}

static void test_no_capacity_in_one_region(void **state) {
  (void)state;
  case_capacity_per_region();
}

static void test_hostile_catalog_refused(void **state) {
  (void)state;
  case_hostile_catalog();
}

static void test_spot_refused(void **state) {
  (void)state;
  case_spot_refused();
}

/* ---- faults --------------------------------------------------------------------------------- */

static void test_api_faults_no_duplicates(void **state) {
  (void)state;
  case_api_faults_no_duplicates();
}

static void test_random_faults_20_percent(void **state) {
  (void)state;
  case_random_faults("42");
}

/* ---- preemption and describe ---------------------------------------------------------------- */

static void test_dead_droplet_is_preempted(void **state) {
  (void)state;
  case_dead_instance_is_preempted();
}

/* ---- pools on DigitalOcean ------------------------------------------------------------------ */

static void test_pool_on_digitalocean(void **state) {
  (void)state;
  case_pool_of_four("pool", NULL);
}

static void test_pool_with_20_percent_api_faults(void **state) {
  (void)state;
  case_pool_of_four("poolfaults", FAULTS_20_PERCENT("7"));
}

static void test_pool_replaces_dead_droplet(void **state) {
  (void)state;
  case_pool_replaces_dead();
}

/* ---- what the pool costs -------------------------------------------------------------------- */

typedef struct costs {
  uint64_t pool;
  unsigned node_events, pool_events;
  uint64_t nodes[8];
  unsigned nodes_n;
  double node_final[8]; /* each instance's last accumulated */
  char ids[8][32];
  unsigned ids_n;
  double pool_accumulated, pool_rate, pool_max_rate;
  bool pool_ticked_while_running;
} costs_t;

static void on_cost(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_cost_t *p, void *data) {
  costs_t *k = data;
  (void)bus;
  (void)ev;
  if (p->node == 0) {
    assert_null(p->instance_id);
    k->pool_events++;
    /* The pool's total never goes down: ended instances stay in it. */
    assert_true(p->accumulated >= k->pool_accumulated - 1e-12);
    k->pool_accumulated = p->accumulated;
    k->pool_rate = p->rate_hourly;
    if (p->rate_hourly > k->pool_max_rate)
      k->pool_max_rate = p->rate_hourly;
    if (p->rate_hourly > 0 && p->accumulated > 0)
      k->pool_ticked_while_running = true;
    return;
  }
  k->node_events++;
  assert_non_null(p->instance_id);
  assert_string_equal(p->provider, "digitalocean");
  unsigned i = 0;
  while (i < k->ids_n && strcmp(k->ids[i], p->instance_id) != 0)
    i++;
  if (i == k->ids_n && k->ids_n < 8)
    snprintf(k->ids[k->ids_n++], sizeof(k->ids[0]), "%s", p->instance_id);
  if (i < 8)
    k->node_final[i] = p->accumulated;
  unsigned j = 0;
  while (j < k->nodes_n && k->nodes[j] != p->node)
    j++;
  if (j == k->nodes_n && k->nodes_n < 8)
    k->nodes[k->nodes_n++] = p->node;
}

/* A pool of 2 on DigitalOcean whose rank 1 is reclaimed and replaced: cost events arrive per
 * instance and for the pool every interval, and the pool's final total (the replaced droplet
 * included) is what the emulator bills for its three droplets. */
static void test_pool_cost_matches_the_bill(void **state) {
  (void)state;
  ctx_t c;
  pctx_t p;
  costs_t k = {0};
  current = &c;
  ctx_init(&c, "cost", NULL, cloud->token);
  pool_cost_interval_ms = 200;
  assert_int_equal(kite_on_cost(kite_runtime_bus(c.rt), KITE_KEY_ANY, on_cost, &k, NULL), 0);
  pool_run(&c, &p, 2, true);
  pool_cost_interval_ms = 0;
  assert_int_equal(p.open_status, 0);
  assert_int_equal(p.task_status, 0);
  assert_int_equal(p.close_status, 0);
  assert_int_equal(sim_count(&c.sim, "created"), 3);
  /* Per instance (three droplets, two nodes) and for the pool, on the interval and at ends. */
  assert_int_equal(k.ids_n, 3);
  assert_int_equal(k.nodes_n, 2);
  assert_true(k.node_events >= 6);
  assert_true(k.pool_events >= 4);
  assert_true(k.pool_ticked_while_running);
  /* Two droplets of 1 vCPU ran at once, at the emulator's price; nothing runs at the end. */
  assert_true(k.pool_max_rate > 2 * 0.00893 - 1e-9 && k.pool_max_rate < 2 * 0.00893 + 1e-9);
  assert_true(k.pool_rate == 0);
  double sum = 0;
  for (unsigned i = 0; i < k.ids_n; i++) {
    assert_true(k.node_final[i] > 0);
    sum += k.node_final[i];
  }
  assert_true(fabs(sum - k.pool_accumulated) < 1e-12);
  /* The emulator's bill, machine by machine and in total. kite's bill of an instance runs from
   * the create call's answer to the confirmation that it is gone; the emulator's from the
   * create to the moment it is gone. Both clocks are this host's wall clock, so the two differ
   * by the request's latency at the start (milliseconds) and by the confirmation's poll
   * (100 ms growing by half each time) at the end; rounded up to whole seconds, that is at most
   * two billed seconds per droplet. */
  json_t *bill = sim_call(&c.sim, "GET", "/_sim/bill", NULL);
  json_t *machines = json_object_get(bill, "machines");
  assert_int_equal(json_array_size(machines), 3);
  double total = json_real_value(json_object_get(bill, "total"));
  double second = 0.00893 / 3600;
  for (size_t i = 0; i < json_array_size(machines); i++) {
    json_t *m = json_array_get(machines, i);
    assert_true(json_integer_value(json_object_get(m, "gone_ms")) > 0);
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(m, "id")));
    unsigned j = 0;
    while (j < k.ids_n && strcmp(k.ids[j], id) != 0)
      j++;
    assert_true(j < k.ids_n);
    double sim_cost = json_real_value(json_object_get(m, "cost"));
    assert_true(sim_cost > 0);
    assert_true(fabs(k.node_final[j] - sim_cost) <= 2 * second + 1e-12);
  }
  print_message("pool: kite %.9f USD, emulator %.9f USD (%+.1f billed s)\n", k.pool_accumulated,
                total, (k.pool_accumulated - total) / second);
  assert_true(total > 0);
  assert_true(fabs(k.pool_accumulated - total) <= 3 * 2 * second + 1e-12);
  json_decref(bill);
  ctx_done(&c);
}

/* ---- hostile answers, Prism ----------------------------------------------------------------- */

static void test_hostile_bodies_do_not_crash(void **state) {
  (void)state;
  case_hostile_bodies();
}

static void test_lifecycle_through_prism(void **state) {
  (void)state;
  case_lifecycle_through_prism();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  cloud = &digitalocean;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_alike_launches_are_one_create),
      cmocka_unit_test(test_bad_token_is_credentials),
      cmocka_unit_test(test_missing_token_says_where_kite_looked),
      cmocka_unit_test(test_doctl_config_token),
      cmocka_unit_test(test_capacity_error_leaks_nothing),
      cmocka_unit_test(test_droplet_limit_is_quota),
      cmocka_unit_test(test_unknown_size_is_unavailable),
      cmocka_unit_test(test_catalog_is_the_sizes),
      cmocka_unit_test(test_catalog_has_the_gpus),
      cmocka_unit_test(test_catalog_with_20_percent_faults),
      cmocka_unit_test(test_no_capacity_in_one_region),
      cmocka_unit_test(test_hostile_catalog_refused),
      cmocka_unit_test(test_spot_refused),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_dead_droplet_is_preempted),
      cmocka_unit_test(test_pool_on_digitalocean),
      cmocka_unit_test(test_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_droplet),
      cmocka_unit_test(test_pool_cost_matches_the_bill),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
