/* The Verda provider at the bus level, against kite-cloudsim's Verda front (/verda/v1, a real
 * HTTP server on loopback whose instances are real sshd nodes): the access token (fetched,
 * cached, fetched again when it expired), launch, reach the instance over SSH with the host key
 * kite gave it in its startup script (pinned; the script deleted once the instance runs), list
 * by tag, describe, terminate confirmed only when the API no longer knows the instance, kite's
 * key registered on the project, credentials ($VERDA_CLIENT_ID/$VERDA_CLIENT_SECRET), error
 * mapping, injected API faults without duplicate instances, a discontinued spot instance as a
 * preemption (its OS volume deleted), an instance type whose instances never run as a capacity
 * failure (deleted), spot pools (with faults, with a replacement), the catalog, hostile answers
 * and the lifecycle through Prism. The cases every cloud shares are in cloud_cases.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kite/kite.h"

#define TOKEN "verda_cloudsim_secret_9a4f2b7c" /* the client secret */
#define CLIENT "kite-cloudsim-client"
#define TYPE "1V100.6V"

#include "cloudsim_client.h"

#include "cloud_cases.h"

static int vd_provider_new(kite_runtime_t *rt, const cloud_timing_t *t) {
  kite_verda_provider_options_t po = {.client_id = CLIENT,
                                      .poll_ms = t->poll_ms,
                                      .backoff_base_ms = t->backoff_base_ms,
                                      .max_retries = t->max_retries,
                                      .running_timeout_ms = t->running_timeout_ms,
                                      .delete_timeout_ms = t->delete_timeout_ms};
  return kite_verda_provider_new(rt, &po, NULL);
}

/* The launches' options name the secret as "client_secret" (cloud_cases.h writes "token"). */
static void vd_options_more(const char *url, char *out, size_t size) {
  (void)url;
  snprintf(out, size, ",\"client_secret\":\"%s\"", TOKEN);
}

#define TOKEN_OK                                                                                   \
  "{\"access_token\": \"hostile-access\", \"token_type\": \"Bearer\", \"expires_in\": 3600, "      \
  "\"refresh_token\": \"hostile-refresh\", \"scope\": \"cloud-api-v1\"}"
#define TOKEN_CALL "POST /verda/v1/oauth2/token"
#define KEYS "GET /verda/v1/sshkeys"
#define KEY_NEW "POST /verda/v1/sshkeys"
#define SCRIPT_NEW "POST /verda/v1/scripts"
#define CREATE "POST /verda/v1/instances"
#define LIST "GET /verda/v1/instances?"
#define DESCRIBE "GET /verda/v1/instances/"
#define ACTION "PUT /verda/v1/instances"
static const cloud_answer_t hostile[] = {
    {200, TOKEN_OK, TOKEN_CALL},
    {200, "{\"access_token\": 5}", TOKEN_CALL},
    {200, TOKEN_OK, TOKEN_CALL},
    {401, "{\"code\": \"unauthorized_request\", \"message\": null}", TOKEN_CALL},
    {200, "[{\"id\": \"k1\", \"key\": 7}]", KEYS},
    {200, "{\"keys\": []}", KEYS},
    {200, "[]", KEYS},
    {500, "\xff\xfe\xfd not json at all \x01\x02", KEYS},
    {201, "\"k2; rm -rf /\"", KEY_NEW},
    {201, "", KEY_NEW},
    {201, "s1", SCRIPT_NEW},
    {201, "[\"s2\"]", SCRIPT_NEW},
    {202, "\"9f1c2d3e-0000-4000-8000-000000000001\"", CREATE},
    {202, "{\"id\": 5}", CREATE},
    {503, "{\"code\": \"service_unavailable\", \"message\": \"No capacity available\"}", CREATE},
    {202, "not an id at all", CREATE},
    {200, "{\"instances\": 1}", LIST},
    {200, "[null, 1, \"x\", {\"id\": 5, \"hostname\": [], \"tags\": 3}]", LIST},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", LIST},
    {429, "{\"code\": \"rate_limit_exceeded\", \"message\": \"slow down\"}", LIST},
    {200, "{\"id\": \"x\", \"status\": \"running\", \"ip\": 7}", DESCRIBE},
    {200,
     "{\"id\": \"x\", \"status\": \"running\", \"ip\": \"127.0.0.1; touch /tmp/kite-hostile\", "
     "\"price_per_hour\": \"1e999\"}",
     DESCRIBE},
    {200, "{\"id\": \"x\", \"status\": 3, \"is_spot\": \"yes\"}", DESCRIBE},
    {200, "{\"id\": \"x\", \"status\": \"discontinued\", \"ip\": null}", DESCRIBE},
    {200, "[]", DESCRIBE},
    {204, "", DESCRIBE},
    {404, "{\"code\": \"not_found\", \"message\": \"Instance not found\"}", DESCRIBE},
    {202, "{}", ACTION},
    {500, "\xff\xfe\xfd not json at all \x01\x02", ACTION},
    {404, "{\"code\": \"not_found\", \"message\": \"Instance not found\"}", ACTION},
    {200, "{}", NULL},
    {500, "{\"code\": \"server_error\"}", NULL},
};

#define TYPE_OK                                                                                    \
  "{\"instance_type\": \"1V100.6V\", \"price_per_hour\": \"0.39\", \"spot_price\": \"0.13\", "     \
  "\"cpu\": {\"number_of_cores\": 6}, \"memory\": {\"size_in_gigabytes\": 23}, \"gpu\": "          \
  "{\"number_of_gpus\": 1}, \"gpu_memory\": {\"size_in_gigabytes\": 16}}"
static const cloud_answer_t hostile_catalog[] = {
    {200, TOKEN_OK, TOKEN_CALL},
    {200, "[{\"location_code\": \"FIN-01\", \"availabilities\": [\"1V100.6V\"]}]",
     "instance-availability"},
    {200, "{\"instance_type\": \"1V100.6V\"}", NULL},
    {200, "[{\"instance_type\": 5, \"price_per_hour\": \"0.39\"}]", NULL},
    {200,
     "[{\"instance_type\": \"1V100.6V\", \"price_per_hour\": \"cheap\", \"cpu\": "
     "{\"number_of_cores\": 6}, \"memory\": {\"size_in_gigabytes\": 23}}]",
     NULL},
    {200,
     "[{\"instance_type\": \"1V100.6V\", \"price_per_hour\": \"1e400\", \"cpu\": "
     "{\"number_of_cores\": 6}, \"memory\": {\"size_in_gigabytes\": 23}}]",
     NULL},
    {200,
     "[{\"instance_type\": \"1V100.6V\", \"price_per_hour\": \"0.39\", \"spot_price\": \"-1\", "
     "\"cpu\": {\"number_of_cores\": 6}, \"memory\": {\"size_in_gigabytes\": 23}}]",
     NULL},
    {200,
     "[{\"instance_type\": \"1V100.6V\", \"price_per_hour\": \"0.39\", \"cpu\": "
     "{\"number_of_cores\": \"six\"}, \"memory\": {\"size_in_gigabytes\": 23}}]",
     NULL},
    {200,
     "[{\"instance_type\": \"1V100.6V\", \"price_per_hour\": \"0.39\", \"cpu\": "
     "{\"number_of_cores\": 6}, \"memory\": {\"size_in_gigabytes\": -3}}]",
     NULL},
    {200, "[7, " TYPE_OK "]", NULL},
    {200, "\"instance_types\"", NULL},
    {500, "\xff\xfe not json", NULL},
};

static const cloud_case_t verda = {.provider = "verda",
                                   .token = TOKEN,
                                   .tmp = "vd",
                                   .type = TYPE,
                                   .region = "FIN-01",
                                   .image = "ubuntu-24.04",
                                   .api_suffix = "/verda/v1",
                                   .live_path = "/_sim/state",
                                   .live_field = "verda_instances",
                                   .keys_path = "/_sim/state",
                                   .keys_field = "verda_ssh_keys",
                                   .kill_fmt = "/_sim/verda/instances/%s/kill",
                                   .url_env = "KITE_VERDA_API_URL",
                                   .token_env = "VERDA_CLIENT_SECRET",
                                   .spec = "verda-openapi.json",
                                   .prism_upstream_suffix = "/verda",
                                   .prism_api_suffix = "/v1",
                                   .prism_spec = prism_verda_without_proxy_headers,
                                   .provider_new = vd_provider_new,
                                   .hostile = hostile,
                                   .n_hostile = sizeof(hostile) / sizeof(hostile[0]),
                                   .options_more = vd_options_more,
                                   .pool_spot = true};

static void test_launch_list_terminate(void **state) {
  (void)state;
  case_launch_list_terminate();
}

static void test_bad_secret_is_credentials(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "badsecret", NULL, TOKEN);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"client_secret\":\"verda_wrong_secret_0000\",\"ssh_user\":\"%s\","
           "\"ssh_port\":2222}",
           ctx_api(&c), kite_local_login_user());
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "VERDA_CLIENT_SECRET"));
  assert_null(strstr(c.in[0].msg, "wrong_secret"));
  assert_null(strstr(c.log, "wrong_secret"));
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* No secret anywhere: the message names the variables and creates nothing. */
static void test_missing_secret_says_where_kite_looked(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  unsetenv("VERDA_CLIENT_SECRET");
  unsetenv("DATACRUNCH_CLIENT_SECRET");
  ctx_init(&c, "nosecret", NULL, TOKEN);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222}", ctx_api(&c),
           kite_local_login_user());
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "$VERDA_CLIENT_ID/$VERDA_CLIENT_SECRET"));
  assert_non_null(strstr(c.in[0].msg, "$DATACRUNCH_CLIENT_SECRET"));
  ctx_done(&c);
}

/* Tokens live 3 s: launches spread over more than that fetch a new one (or refresh it) and
 * every call still succeeds; no token reaches a log line. */
static void test_expired_token_is_fetched_again(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  static const char *const flags[] = {"--verda-token-ttl", "3", NULL};
  ctx_init(&c, "ttl", flags, TOKEN);
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, 0);
  sleep(4);
  memset(&c.in[0], 0, sizeof(c.in[0]));
  c.replies = c.term_replies = 0;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  if (c.in[0].status != 0)
    print_error("launch after expiry: %s\n", c.in[0].msg);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  assert_null(strstr(c.log, "eyJ"));
  ctx_done(&c);
}

static void test_no_capacity_leaks_nothing(void **state) {
  (void)state;
  static const char *const want[] = {"No capacity", "another location", NULL};
  case_no_capacity(want);
}

static void test_api_faults_no_duplicates(void **state) {
  (void)state;
  case_api_faults_no_duplicates();
}

static void test_random_faults_20_percent(void **state) {
  (void)state;
  case_random_faults("13");
}

/* A type whose instances end in error never runs: KITE_ECAPACITY, the instance deleted, and its
 * startup script (which holds the host key) deleted too. */
static void test_type_that_never_runs_is_capacity(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "never", NULL, TOKEN);
  json_decref(sim_call(&c.sim, "POST", "/_sim/verda/instance-types/" TYPE "/fail",
                       "{\"status\": \"installation_failed\"}"));
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECAPACITY);
  assert_non_null(strstr(c.in[0].msg, "will never run"));
  assert_non_null(strstr(c.in[0].msg, "installation_failed"));
  assert_int_equal(sim_count(&c.sim, "created"), 1);
  assert_int_equal(sim_live(&c.sim), 0);
  json_t *st = sim_call(&c.sim, "GET", "/_sim/verda/state", NULL);
  assert_int_equal(json_array_size(json_object_get(st, "scripts")), 0);
  json_decref(st);
  ctx_done(&c);
}

/* A discontinued spot instance is gone to a preemption check (its OS volume deleted at once, as
 * kite asked); one still running is not; the startup scripts are gone once they ran. */
static void test_discontinued_is_preempted(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "discont", NULL, TOKEN);
  c.n = 2;
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_instance_launch_t l = {.provider = "verda",
                                   .pool = 7,
                                   .node = 100 + i,
                                   .rank = i,
                                   .tag = c.tag,
                                   .options = c.options,
                                   .instance_type = TYPE,
                                   .region = "FIN-01",
                                   .spot = true};
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
  json_t *st = sim_call(&c.sim, "GET", "/_sim/verda/state", NULL);
  assert_int_equal(json_array_size(json_object_get(st, "scripts")), 0);
  json_decref(st);
  char path[192];
  snprintf(path, sizeof(path), "/_sim/verda/instances/%s/discontinue", c.in[0].id);
  json_decref(sim_call(&c.sim, "POST", path, "{}"));
  int seen[2] = {-1, -1};
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_preempt_check_t q = {
        .provider = "verda", .pool = 7, .node = 100 + i, .instance_id = c.in[i].id};
    assert_int_equal(
        kite_request_preempt_check(kite_runtime_bus(c.rt), &q, 0, on_preempt_state, &seen[i], NULL),
        0);
  }
  kite_runtime_run(c.rt);
  assert_int_equal(seen[0], KITE_PREEMPT_GONE);
  assert_int_equal(seen[1], KITE_PREEMPT_NONE);
  st = sim_call(&c.sim, "GET", "/_sim/verda/state", NULL);
  size_t i;
  json_t *v;
  bool found = false;
  json_array_foreach(json_object_get(st, "volumes"), i, v) {
    const char *inst = json_string_value(json_object_get(v, "instance_id"));
    if (inst && strcmp(inst, c.in[0].id) == 0) {
      found = true;
      assert_false(json_is_true(json_object_get(v, "billing")));
    }
  }
  (void)found;
  json_decref(st);
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
  case_pool_of_four("poolfaults", FAULTS_20_PERCENT("17"));
}

static void test_pool_replaces_dead_instance(void **state) {
  (void)state;
  case_pool_replaces_dead();
}

/* The catalog: a type per location where it is sold, on demand and spot as available. */
static void test_catalog_types_and_availability(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "catalog", NULL, TOKEN);
  cat_t k = {0}, fin2 = {0};
  ask_catalog(c.rt, c.options, NULL, &k);
  ask_catalog(c.rt, c.options, "FIN-02", &fin2);
  kite_runtime_run(c.rt);
  if (k.status)
    print_error("catalog: %s\n", k.msg);
  assert_int_equal(k.status, 0);
  const kite_offer_t *v100 = offer_find(k.offers, k.n, "FIN-01", "1V100.6V");
  assert_non_null(v100);
  assert_string_equal(v100->accelerator, "V100");
  assert_int_equal(v100->accelerator_count, 1);
  assert_true(v100->price > 0.38 && v100->price < 0.40);
  assert_int_equal(v100->vcpus, 6);
  const kite_offer_t *a100 = offer_find(k.offers, k.n, "FIN-01", "1A100.22V");
  assert_non_null(a100);
  assert_true(a100->price > 0 && a100->spot_price < 0); /* no spot A100 in FIN-01 */
  const kite_offer_t *a100b = offer_find(k.offers, k.n, "FIN-02", "1A100.22V");
  assert_non_null(a100b);
  assert_true(a100b->spot_price > 0);
  assert_null(offer_find(k.offers, k.n, "FIN-01", "1RTX6000ADA.10V")); /* ICE-01 only */
  const kite_offer_t *cpu = offer_find(k.offers, k.n, "FIN-01", "CPU.4V.16G");
  assert_non_null(cpu);
  assert_string_equal(cpu->accelerator, "");
  assert_int_equal(fin2.status, 0);
  for (size_t i = 0; i < fin2.n; i++)
    assert_string_equal(fin2.offers[i].region, "FIN-02");
  assert_true(fin2.n > 0 && fin2.n < k.n);
  free(k.offers);
  free(fin2.offers);
  ctx_done(&c);
}

static void test_hostile_bodies_do_not_crash(void **state) {
  (void)state;
  case_hostile_bodies();
}

/* Each hostile instance-types answer (with a good token and availability) is refused whole. */
static void test_hostile_catalog_refused(void **state) {
  (void)state;
  char home[64];
  snprintf(home, sizeof(home), "/tmp/kite-test-vd-XXXXXX");
  assert_non_null(mkdtemp(home));
  for (size_t i = 2; i < sizeof(hostile_catalog) / sizeof(hostile_catalog[0]); i++) {
    cloud_answer_t three[3] = {hostile_catalog[0], hostile_catalog[1], hostile_catalog[i]};
    three[2].match = "instance-types";
    int port = 0;
    pid_t pid = hostile_start_with(&port, three, 3);
    kite_runtime_t *rt = NULL;
    kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_OFF};
    assert_int_equal(kite_runtime_new(&rt, &o), 0);
    cloud_timing_t t = {.poll_ms = 20, .backoff_base_ms = 5, .max_retries = 1};
    assert_int_equal(vd_provider_new(rt, &t), 0);
    char options[256];
    snprintf(options, sizeof(options),
             "{\"api_url\":\"http://127.0.0.1:%d/verda/v1\",\"token\":\"%s\"}", port, TOKEN);
    cat_t k = {0};
    ask_catalog(rt, options, NULL, &k);
    kite_runtime_run(rt);
    if (k.status == 0)
      fail_msg("hostile catalog answer %zu was taken: %s", i, hostile_catalog[i].body);
    assert_null(strstr(k.msg, TOKEN));
    free(k.offers);
    assert_int_equal(kite_runtime_shutdown(rt, on_shutdown, NULL), 0);
    kite_runtime_run(rt);
    assert_int_equal(kite_runtime_free(rt), 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

static void test_lifecycle_through_prism(void **state) {
  (void)state;
  case_lifecycle_through_prism();
}

/* The cases of cloud_cases.h this cloud has no use for: spot is sold; the catalog is three
 * answers (types and availability), checked above; a type is sold in several locations, but
 * capacity is per type and location, checked by test_no_capacity_leaks_nothing; Verda's
 * documented limit error is not specific to instances. */
static void unused_cases(void) {
  (void)case_spot_refused;
  (void)case_capacity_per_region;
  (void)case_limit;
  (void)case_catalog;
  (void)case_catalog_faults;
  (void)case_hostile_catalog;
  (void)case_bad_token;
  (void)case_missing_token;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  cloud = &verda;
  unused_cases();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_bad_secret_is_credentials),
      cmocka_unit_test(test_missing_secret_says_where_kite_looked),
      cmocka_unit_test(test_expired_token_is_fetched_again),
      cmocka_unit_test(test_no_capacity_leaks_nothing),
      cmocka_unit_test(test_type_that_never_runs_is_capacity),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_discontinued_is_preempted),
      cmocka_unit_test(test_dead_instance_is_preempted),
      cmocka_unit_test(test_spot_pool_of_four),
      cmocka_unit_test(test_spot_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_instance),
      cmocka_unit_test(test_catalog_types_and_availability),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_hostile_catalog_refused),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
