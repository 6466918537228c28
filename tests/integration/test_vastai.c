/* The Vast.ai provider at the bus level, against kite-cloudsim's Vast.ai front (a real HTTP
 * server on loopback whose instances are real sshd nodes): launch on an offer, reach the
 * instance over SSH with the host key kite gave it in its env (pinned), list by label,
 * describe, terminate confirmed only when the API no longer has it, kite's key registered on
 * the account, credentials ($VAST_API_KEY, the vastai command's key file), error mapping,
 * injected API faults without duplicate instances, an outbid interruptible instance as a
 * preemption, an offer whose instances never run as a capacity failure (destroyed), pools of
 * interruptible instances (with faults, with a replacement), the catalog, hostile answers and
 * the lifecycle through Prism. The cases every cloud shares are in cloud_cases.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kite/kite.h"

#define TOKEN "vast_cloudsim_test_key_5d2e8c41f7"
#define ASK_4090 "ask-3200101" /* RTX 4090 x1, Texas, US: $0.35, min_bid $0.15 */
#define ASK_A100 "ask-3200104" /* A100 SXM4 x1, Hesse, DE: $1.10, min_bid $0.45 */

#include "cloudsim_client.h"

#include "cloud_cases.h"

static int va_provider_new(kite_runtime_t *rt, const cloud_timing_t *t) {
  kite_vastai_provider_options_t po = {.poll_ms = t->poll_ms,
                                       .backoff_base_ms = t->backoff_base_ms,
                                       .max_retries = t->max_retries,
                                       .running_timeout_ms = t->running_timeout_ms,
                                       .delete_timeout_ms = t->delete_timeout_ms,
                                       .image = "ubuntu:22.04"};
  return kite_vastai_provider_new(rt, &po, NULL);
}

/* What the hostile server answers: Vast.ai's shapes with wrong types, missing or absurd values
 * and no JSON at all, each request kind round and round its own answers. */
#define KEYS "GET /api/v0/ssh"
#define KEY_NEW "POST /api/v0/ssh"
#define SEARCH "POST /api/v0/bundles"
#define CREATE "PUT /api/v0/asks/"
#define LIST "GET /api/v1/instances"
#define DESCRIBE "GET /api/v0/instances/"
#define DELETE "DELETE /api/v0/instances/"
static const cloud_answer_t hostile[] = {
    {200, "[{\"id\": 4711, \"key\": 7}]", KEYS},
    {200, "{\"ssh_keys\": \"none\"}", KEYS},
    {200, "[]", KEYS},
    {500, "\xff\xfe\xfd not json at all \x01\x02", KEYS},
    {200, "{\"success\": true, \"key\": {\"id\": -5}}", KEY_NEW},
    {200, "{\"success\": false}", KEY_NEW},
    {200, "{\"success\": true, \"new_contract\": \"3164444\"}", CREATE},
    {200, "{\"success\": true, \"new_contract\": 1e400}", CREATE},
    {200, "{\"success\": false, \"new_contract\": 9}", CREATE},
    {400, "{\"success\": false, \"error\": \"no_ssh_key_for_vm\", \"msg\": 5}", CREATE},
    {200, "{\"success\": true, \"new_contract\": 0}", CREATE},
    {410, "{\"success\": false, \"error\": \"no_such_ask\", \"msg\": null}", CREATE},
    {200, "{\"success\": true, \"new_contract\": 9}", CREATE},
    {200, "{\"instances\": {\"a\": 1}, \"next_token\": 5}", LIST},
    {200, "{\"instances\": [null, 1, \"x\", {\"label\": 5, \"id\": -1}], \"next_token\": \"\"}",
     LIST},
    {200, "{\"instances\": [], \"next_token\": \"abc\"}", LIST},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", LIST},
    {200, "{\"instances\": [{\"id\": 18446744073709551615, \"label\": \"kite-pool-x:\"}]}", LIST},
    {429, "{\"detail\": \"API requests too frequent endpoint threshold=2.0\"}", LIST},
    {200,
     "{\"instances\": {\"id\": 9, \"actual_status\": \"running\", \"public_ipaddr\": 7, "
     "\"ports\": {\"22/tcp\": [{\"HostPort\": \"99999\"}]}}}",
     DESCRIBE},
    {200, "{\"instances\": {\"id\": 9, \"actual_status\": 1, \"ports\": []}}", DESCRIBE},
    {200,
     "{\"instances\": {\"id\": 9, \"actual_status\": \"running\", \"public_ipaddr\": \"127.0.0.1; "
     "touch /tmp/kite-hostile\", \"ports\": {\"22/tcp\": [{\"HostPort\": \"2222\"}]}, "
     "\"dph_total\": 1e999}}",
     DESCRIBE},
    {200,
     "{\"instances\": {\"id\": 9, \"actual_status\": \"exited\", \"is_bid\": \"yes\", "
     "\"status_msg\": []}}",
     DESCRIBE},
    {200, "{\"instances\": []}", DESCRIBE},
    {204, "", DESCRIBE},
    {200, "{\"instances\": null}", DESCRIBE},
    {200,
     "{\"instances\": {\"id\": 9, \"actual_status\": \"running\", \"public_ipaddr\": "
     "\"127.0.0.1\", \"ports\": {\"22/tcp\": [{\"HostPort\": -3}]}, \"dph_total\": -1}}",
     DESCRIBE},
    {200, "{\"success\": 5}", DELETE},
    {500, "\xff\xfe\xfd not json at all \x01\x02", DELETE},
    {404, "{\"success\": false, \"error\": \"not_found\", \"msg\": \"Instance not found\"}",
     DELETE},
    {200, "{}", NULL},
    {500, "{\"success\": false, \"error\": \"server_error\"}", NULL},
};

#define OFFER_OK                                                                                   \
  "{\"id\": 77, \"gpu_name\": \"RTX 4090\", \"num_gpus\": 1, \"dph_total\": 0.4, \"min_bid\": "    \
  "0.2, \"geolocation\": \"Oslo, NO\", \"cpu_cores\": 8, \"cpu_ram\": 32000, \"gpu_ram\": "        \
  "24564, \"disk_space\": 100, \"rentable\": true}"
static const cloud_answer_t hostile_catalog[] = {
    {200, "{\"offers\": {\"id\": 77}}", NULL},
    {200,
     "{\"offers\": [{\"id\": -1, \"gpu_name\": \"RTX 4090\", \"num_gpus\": 1, "
     "\"dph_total\": 0.4}]}",
     NULL},
    {200, "{\"offers\": [{\"id\": 77, \"gpu_name\": 4090, \"num_gpus\": 1, \"dph_total\": 0.4}]}",
     NULL},
    {200,
     "{\"offers\": [{\"id\": 77, \"gpu_name\": \"RTX 4090\", \"num_gpus\": 0, "
     "\"dph_total\": 0.4}]}",
     NULL},
    {200,
     "{\"offers\": [{\"id\": 77, \"gpu_name\": \"RTX 4090\", \"num_gpus\": 1, "
     "\"dph_total\": \"cheap\"}]}",
     NULL},
    {200,
     "{\"offers\": [{\"id\": 77, \"gpu_name\": \"RTX 4090\", \"num_gpus\": 1, "
     "\"dph_total\": 1e400}]}",
     NULL},
    {200,
     "{\"offers\": [{\"id\": 77, \"gpu_name\": \"RTX 4090\", \"num_gpus\": 1, "
     "\"dph_total\": 0.4, \"min_bid\": -2}]}",
     NULL},
    {200,
     "{\"offers\": [{\"id\": 77, \"gpu_name\": \"an accelerator whose name is far too long "
     "to be one\", \"num_gpus\": 1, \"dph_total\": 0.4}]}",
     NULL},
    {200, "{\"offers\": [7, " OFFER_OK "]}", NULL},
    {200, "\"offers\"", NULL},
    {500, "\xff\xfe not json", NULL},
};

/* The emulator's offers as the test reads them (every verified, rentable one; region: the
 * country code). */
static size_t va_expect(json_t *raw, const char *region, kite_offer_t *out, size_t max) {
  size_t n = 0, i;
  json_t *b;
  json_array_foreach(json_object_get(raw, "offers"), i, b) {
    const char *geo = json_string_value(json_object_get(b, "geolocation"));
    const char *cc = geo ? strrchr(geo, ',') : NULL;
    cc = cc ? cc + 2 : "any";
    if (region && strcmp(region, cc) != 0)
      continue;
    assert_true(n < max);
    kite_offer_t *o = &out[n++];
    memset(o, 0, sizeof(*o));
    snprintf(o->region, sizeof(o->region), "%s", cc);
    snprintf(o->instance_type, sizeof(o->instance_type), "ask-%lld",
             (long long)json_integer_value(json_object_get(b, "id")));
    o->vcpus = (unsigned)json_number_value(json_object_get(b, "cpu_cores"));
    o->memory_mb = (uint64_t)json_number_value(json_object_get(b, "cpu_ram"));
    o->disk_gb = (unsigned)json_number_value(json_object_get(b, "disk_space"));
    o->price = json_number_value(json_object_get(b, "dph_total"));
    o->spot_price = json_number_value(json_object_get(b, "min_bid"));
    o->available = 1;
    snprintf(o->arch, sizeof(o->arch), "x86_64");
    /* A100 SXM4 and A100 PCIE are A100, H100 SXM is H100; others with _ for a space. */
    const char *gpu = json_string_value(json_object_get(b, "gpu_name"));
    if (strncmp(gpu, "A100 ", 5) == 0 || strncmp(gpu, "H100 ", 5) == 0)
      snprintf(o->accelerator, sizeof(o->accelerator), "%.4s", gpu);
    else
      for (size_t k = 0; gpu[k] && k + 1 < sizeof(o->accelerator); k++)
        o->accelerator[k] = gpu[k] == ' ' ? '_' : gpu[k];
    o->accelerator_count = (unsigned)json_integer_value(json_object_get(b, "num_gpus"));
    o->accelerator_memory_mb = (uint64_t)json_number_value(json_object_get(b, "gpu_ram"));
  }
  return n;
}

static const cloud_case_t vastai = {
    .provider = "vastai",
    .token = TOKEN,
    .tmp = "va",
    .type = ASK_4090,
    .region = "US",
    .image = "ubuntu:22.04",
    .api_suffix = "",
    .live_path = "/_sim/state",
    .live_field = "vastai_instances",
    .keys_path = "/_sim/state",
    .keys_field = "vastai_ssh_keys",
    .kill_fmt = "/_sim/machines/%s/kill",
    .url_env = "KITE_VASTAI_API_URL",
    .token_env = "VAST_API_KEY",
    .spec = "vastai.yaml",
    .prism_upstream_suffix = "",
    .prism_spec = prism_vastai_as_answered,
    .provider_new = va_provider_new,
    .hostile = hostile,
    .n_hostile = sizeof(hostile) / sizeof(hostile[0]),
    .catalog_path = "/api/v0/bundles",
    .catalog_body = "{\"limit\": 1000, \"order\": [[\"dph_total\", \"asc\"]]}",
    .expect_offers = va_expect,
    .other_region = "DE",
    .catalog_ok = "{\"offers\": [" OFFER_OK "]}",
    .hostile_catalog = hostile_catalog,
    .n_hostile_catalog = sizeof(hostile_catalog) / sizeof(hostile_catalog[0]),
    .pool_spot = true};

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void test_launch_list_terminate(void **state) {
  (void)state;
  case_launch_list_terminate();
}

/* Each instance is labelled TAG:NAME, and kite's key is on the account once. */
static void test_label_and_key(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "label", NULL, TOKEN);
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, 0);
  json_t *st = sim_call(&c.sim, "GET", "/_sim/vastai/state", NULL);
  json_t *in = json_array_get(json_object_get(st, "instances"), 0);
  const char *label = json_string_value(json_object_get(in, "label"));
  assert_non_null(label);
  assert_int_equal(strncmp(label, c.tag, strlen(c.tag)), 0);
  assert_int_equal(label[strlen(c.tag)], ':');
  assert_int_equal(json_integer_value(json_object_get(in, "offer")), 3200101);
  assert_false(json_is_true(json_object_get(in, "is_bid")));
  assert_int_equal(json_array_size(json_object_get(st, "ssh_keys")), 1);
  json_decref(st);
  terminate_all(&c);
  kite_runtime_run(c.rt);
  assert_true(c.in[0].terminated);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

/* ---- credentials ---------------------------------------------------------------------------- */

static void test_bad_key_is_credentials(void **state) {
  (void)state;
  case_bad_token("vast_wrong_key_0000", "wrong_key");
}

static void test_missing_key_says_where_kite_looked(void **state) {
  (void)state;
  static const char *const unset[] = {"VAST_API_KEY", "XDG_CONFIG_HOME", NULL};
  case_missing_token(unset, "vast_api_key");
}

/* The vastai command's key file (~/.config/vastai/vast_api_key) is used, and its key never
 * reaches a log line. */
static void test_vastai_key_file(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("VAST_API_KEY");
  unsetenv("XDG_CONFIG_HOME");
  ctx_init(&c, "keyfile", NULL, TOKEN);
  char path[256];
  snprintf(path, sizeof(path), "%s/.config", c.home);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof(path), "%s/.config/vastai", c.home);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof(path), "%s/.config/vastai/vast_api_key", c.home);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "%s\n", TOKEN);
  fclose(fp);
  setenv("HOME", c.home, 1);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222}", ctx_api(&c),
           kite_local_login_user());
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  if (c.in[0].status != 0)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void test_no_capacity_leaks_nothing(void **state) {
  (void)state;
  static const char *const want[] = {"rented or withdrawn", "another offer", NULL};
  case_no_capacity(want);
}

static void test_api_faults_no_duplicates(void **state) {
  (void)state;
  case_api_faults_no_duplicates();
}

static void test_random_faults_20_percent(void **state) {
  (void)state;
  case_random_faults("3");
}

/* An instance type that is not an offer is refused before any call. */
static void test_type_not_an_offer(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "notoffer", NULL, TOKEN);
  c.n = 1;
  kite_ev_instance_launch_t l = {.provider = "vastai",
                                 .pool = 7,
                                 .node = 100,
                                 .rank = 0,
                                 .tag = c.tag,
                                 .options = c.options,
                                 .instance_type = "g5.xlarge",
                                 .image = "ubuntu:22.04"};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[0], NULL), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_EINVAL);
  assert_non_null(strstr(c.in[0].msg, "ask-ID"));
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* An offer whose instances go exited (or unknown, offline) and never run: the launch fails
 * with KITE_ECAPACITY (so a pool fails over to another offer), saying so, and the instance is
 * destroyed. */
static void never_runs(const char *status) {
  ctx_t c;
  current = &c;
  ctx_init(&c, "never", NULL, TOKEN);
  char body[64];
  snprintf(body, sizeof(body), "{\"status\": \"%s\"}", status);
  json_decref(sim_call(&c.sim, "POST", "/_sim/vastai/offers/3200101/fail", body));
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECAPACITY);
  assert_non_null(strstr(c.in[0].msg, "will never run"));
  assert_non_null(strstr(c.in[0].msg, status));
  assert_int_equal(sim_count(&c.sim, "created"), 1);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

static void test_offer_that_never_runs_is_capacity(void **state) {
  (void)state;
  never_runs("exited");
  never_runs("offline");
}

/* ---- interruptible instances ---------------------------------------------------------------- */

/* A spot launch is an interruptible instance bidding the plan's price (else the offer's least
 * bid); outbid, a preemption check says it is gone. */
static void test_outbid_is_preempted(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "outbid", NULL, TOKEN);
  c.n = 2;
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_instance_launch_t l = {.provider = "vastai",
                                   .pool = 7,
                                   .node = 100 + i,
                                   .rank = i,
                                   .tag = c.tag,
                                   .options = c.options,
                                   .instance_type = ASK_4090,
                                   .spot = true,
                                   .price_hourly = i == 0 ? 0.21 : 0,
                                   .image = "ubuntu:22.04"};
    assert_int_equal(
        kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[i], NULL),
        0);
  }
  kite_runtime_run(c.rt);
  for (unsigned i = 0; i < 2; i++) {
    if (c.in[i].status != 0)
      print_error("launch %u: %s\n", i, c.in[i].msg);
    assert_int_equal(c.in[i].status, 0);
  }
  json_t *st = sim_call(&c.sim, "GET", "/_sim/vastai/state", NULL);
  size_t k;
  json_t *in;
  json_array_foreach(json_object_get(st, "instances"), k, in) {
    assert_true(json_is_true(json_object_get(in, "is_bid")));
    char id[32];
    snprintf(id, sizeof(id), "%lld", (long long)json_integer_value(json_object_get(in, "id")));
    double dph = json_number_value(json_object_get(in, "dph"));
    /* Rank 0 bid the plan's price, rank 1 the offer's least bid. */
    assert_true(strcmp(id, c.in[0].id) == 0 ? dph > 0.2 && dph < 0.22 : dph > 0.14 && dph < 0.16);
  }
  json_decref(st);
  char path[192];
  snprintf(path, sizeof(path), "/_sim/vastai/instances/%s/outbid", c.in[0].id);
  json_decref(sim_call(&c.sim, "POST", path, "{}"));
  int seen[2] = {-1, -1};
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_preempt_check_t q = {
        .provider = "vastai", .pool = 7, .node = 100 + i, .instance_id = c.in[i].id};
    assert_int_equal(
        kite_request_preempt_check(kite_runtime_bus(c.rt), &q, 0, on_preempt_state, &seen[i], NULL),
        0);
  }
  kite_runtime_run(c.rt);
  assert_int_equal(seen[0], KITE_PREEMPT_GONE);
  assert_int_equal(seen[1], KITE_PREEMPT_NONE); /* the one still running is not */
  terminate_all(&c);
  kite_runtime_run(c.rt);
  assert_true(c.in[0].terminated && c.in[1].terminated);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

static void test_dead_instance_is_preempted(void **state) {
  (void)state;
  case_dead_instance_is_preempted();
}

static void test_spot_pool_of_four(void **state) {
  (void)state;
  case_pool_of_four("pool", NULL);
}

static void test_spot_pool_with_20_percent_api_faults(void **state) {
  (void)state;
  case_pool_of_four("poolfaults", FAULTS_20_PERCENT("7"));
}

static void test_pool_replaces_dead_instance(void **state) {
  (void)state;
  case_pool_replaces_dead();
}

/* ---- the catalog ---------------------------------------------------------------------------- */

/* Every verified, rentable offer, with its GPUs as the accelerator, the on-demand price and the
 * least bid as the spot price, in its host's country; then one country's. */
static void test_catalog_is_the_offers(void **state) {
  (void)state;
  case_catalog();
  ctx_t c;
  current = &c;
  ctx_init(&c, "catgpu", NULL, TOKEN);
  cat_t k = {0};
  ask_catalog(c.rt, c.options, NULL, &k);
  kite_runtime_run(c.rt);
  assert_int_equal(k.status, 0);
  const kite_offer_t *a100 = offer_find(k.offers, k.n, "DE", ASK_A100);
  assert_non_null(a100);
  assert_string_equal(a100->accelerator, "A100");
  assert_int_equal(a100->accelerator_count, 1);
  assert_true(a100->price > 1.09 && a100->price < 1.11);
  assert_true(a100->spot_price > 0.44 && a100->spot_price < 0.46);
  const kite_offer_t *rtx = offer_find(k.offers, k.n, "US", ASK_4090);
  assert_non_null(rtx);
  assert_string_equal(rtx->accelerator, "RTX_4090");
  free(k.offers);
  ctx_done(&c);
}

static void test_catalog_faults(void **state) {
  (void)state;
  case_catalog_faults();
}

static void test_hostile_catalog_refused(void **state) {
  (void)state;
  case_hostile_catalog();
}

static void test_hostile_bodies_do_not_crash(void **state) {
  (void)state;
  case_hostile_bodies();
}

static void test_lifecycle_through_prism(void **state) {
  (void)state;
  case_lifecycle_through_prism();
}

/* The cases of cloud_cases.h this cloud has no use for: interruptible instances are sold; an
 * offer is one host in one place (no type is sold in two regions); and Vast.ai documents no
 * error for an account's instance limit, so there is none to map. */
static void unused_cases(void) {
  (void)case_spot_refused;
  (void)case_capacity_per_region;
  (void)case_limit;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  cloud = &vastai;
  unused_cases();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_label_and_key),
      cmocka_unit_test(test_bad_key_is_credentials),
      cmocka_unit_test(test_missing_key_says_where_kite_looked),
      cmocka_unit_test(test_vastai_key_file),
      cmocka_unit_test(test_no_capacity_leaks_nothing),
      cmocka_unit_test(test_type_not_an_offer),
      cmocka_unit_test(test_offer_that_never_runs_is_capacity),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_outbid_is_preempted),
      cmocka_unit_test(test_dead_instance_is_preempted),
      cmocka_unit_test(test_spot_pool_of_four),
      cmocka_unit_test(test_spot_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_instance),
      cmocka_unit_test(test_catalog_is_the_offers),
      cmocka_unit_test(test_catalog_faults),
      cmocka_unit_test(test_hostile_catalog_refused),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
