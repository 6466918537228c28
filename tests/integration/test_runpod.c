/* The RunPod provider at the bus level, against kite-cloudsim's RunPod front (/runpod/v1, a
 * real HTTP server on loopback whose pods are real sshd nodes): launch, reach the pod over SSH
 * at its public IP and mapped port with the host key kite gave it in its env (pinned), list by
 * the pool's tag, describe, terminate confirmed only when the API no longer knows the pod,
 * credentials ($RUNPOD_API_KEY, runpodctl's config), error mapping, injected API faults
 * without duplicate pods, an interrupted pod as a preemption, a GPU type whose pods never run
 * as a capacity failure (terminated), pools of interruptible pods (with faults, with a
 * replacement), the catalog's refusal (no prices in the API), hostile answers and the
 * lifecycle through Prism. The cases every cloud shares are in cloud_cases.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kite/kite.h"

#define TOKEN "rpa_cloudsim_test_key_61c0d9e2b4"
#define TYPE "1x_RTX4090_SECURE"

#include "cloudsim_client.h"

#include "cloud_cases.h"

static int rp_provider_new(kite_runtime_t *rt, const cloud_timing_t *t) {
  kite_runpod_provider_options_t po = {.poll_ms = t->poll_ms,
                                       .backoff_base_ms = t->backoff_base_ms,
                                       .max_retries = t->max_retries,
                                       .running_timeout_ms = t->running_timeout_ms,
                                       .delete_timeout_ms = t->delete_timeout_ms};
  return kite_runpod_provider_new(rt, &po, NULL);
}

#define CREATE "POST /runpod/v1/pods"
#define LIST "GET /runpod/v1/pods?"
#define LIST_ALL "GET /runpod/v1/pods "
#define DESCRIBE "GET /runpod/v1/pods/"
#define DELETE "DELETE /runpod/v1/pods/"
static const cloud_answer_t hostile[] = {
    {201, "{\"id\": \"pod; rm -rf /\", \"desiredStatus\": \"RUNNING\"}", CREATE},
    {201, "{\"id\": 5}", CREATE},
    {201, "[]", CREATE},
    {400,
     "{\"error\": \"create pod: There are no instances currently available\", \"status\": "
     "400}",
     CREATE},
    {201, "{\"id\": \"abc123\"}", CREATE},
    {200, "{\"pods\": 1}", LIST},
    {200, "[null, 1, \"x\", {\"id\": 5, \"name\": [], \"env\": 3}]", LIST},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", LIST},
    {200, "[{\"id\": \"p1\", \"env\": {\"KITE_POOL_TAG\": 7}}]", LIST_ALL},
    {429, "{\"error\": \"slow down\", \"status\": 429}", LIST_ALL},
    {200,
     "{\"id\": \"x\", \"desiredStatus\": \"RUNNING\", \"publicIp\": 7, \"portMappings\": {\"22\": "
     "\"2222\"}}",
     DESCRIBE},
    {200,
     "{\"id\": \"x\", \"desiredStatus\": \"RUNNING\", \"publicIp\": \"127.0.0.1; touch "
     "/tmp/kite-hostile\", \"portMappings\": {\"22\": 2222}, \"costPerHr\": 1e999}",
     DESCRIBE},
    {200,
     "{\"id\": \"x\", \"desiredStatus\": \"RUNNING\", \"publicIp\": \"127.0.0.1\", "
     "\"portMappings\": {\"22\": 99999}}",
     DESCRIBE},
    {200, "{\"id\": \"x\", \"desiredStatus\": 3, \"interruptible\": \"yes\"}", DESCRIBE},
    {200, "{\"id\": \"x\", \"desiredStatus\": \"EXITED\", \"interruptible\": true}", DESCRIBE},
    {200, "[]", DESCRIBE},
    {204, "", DESCRIBE},
    {404, "{\"error\": \"pod not found\", \"status\": 404}", DESCRIBE},
    {204, "", DELETE},
    {500, "\xff\xfe\xfd not json at all \x01\x02", DELETE},
    {404, "{\"error\": \"pod not found\", \"status\": 404}", DELETE},
    {200, "{}", NULL},
    {500, "{\"error\": \"server error\"}", NULL},
};

static const cloud_case_t runpod = {.provider = "runpod",
                                    .token = TOKEN,
                                    .tmp = "rp",
                                    .type = TYPE,
                                    .region = "US",
                                    .image =
                                        "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
                                    .api_suffix = "/runpod/v1",
                                    .live_path = "/_sim/state",
                                    .live_field = "runpod_pods",
                                    .kill_fmt = "/_sim/runpod/pods/%s/kill",
                                    .url_env = "KITE_RUNPOD_API_URL",
                                    .token_env = "RUNPOD_API_KEY",
                                    .spec = "runpod.json",
                                    .prism_upstream_suffix = "/runpod/v1",
                                    .provider_new = rp_provider_new,
                                    .hostile = hostile,
                                    .n_hostile = sizeof(hostile) / sizeof(hostile[0]),
                                    .pool_spot = true,
                                    .catalog_unsupported = true};

static void test_launch_list_terminate(void **state) {
  (void)state;
  case_launch_list_terminate();
}

static void test_bad_key_is_credentials(void **state) {
  (void)state;
  case_bad_token("rpa_wrong_key_0000", "wrong_key");
}

static void test_missing_key_says_where_kite_looked(void **state) {
  (void)state;
  static const char *const unset[] = {"RUNPOD_API_KEY", NULL};
  case_missing_token(unset, "config.toml");
}

/* runpodctl's ~/.runpod/config.toml is read for its apikey. */
static void test_runpodctl_config(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("RUNPOD_API_KEY");
  ctx_init(&c, "rpctl", NULL, TOKEN);
  char path[256];
  snprintf(path, sizeof(path), "%s/.runpod", c.home);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof(path), "%s/.runpod/config.toml", c.home);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp, "apikey = \"%s\"\napiurl = \"https://api.runpod.io/graphql\"\n", TOKEN);
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

static void test_no_capacity_leaks_nothing(void **state) {
  (void)state;
  static const char *const want[] = {"no instances currently available", "another type", NULL};
  case_no_capacity(want);
}

static void test_api_faults_no_duplicates(void **state) {
  (void)state;
  case_api_faults_no_duplicates();
}

static void test_random_faults_20_percent(void **state) {
  (void)state;
  case_random_faults("5");
}

/* A type kite cannot read is refused before any call. */
static void test_type_not_known(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "badtype", NULL, TOKEN);
  c.n = 1;
  kite_ev_instance_launch_t l = {.provider = "runpod",
                                 .pool = 7,
                                 .node = 100,
                                 .tag = c.tag,
                                 .options = c.options,
                                 .instance_type = "1x_GTX1080_SECURE"};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[0], NULL), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_EINVAL);
  assert_non_null(strstr(c.in[0].msg, "COUNTx_GPU_SECURE"));
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* A GPU type whose pods exit before they run: KITE_ECAPACITY (a pool fails over), the pod
 * terminated. */
static void test_pod_that_never_runs_is_capacity(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "never", NULL, TOKEN);
  json_decref(sim_call(&c.sim, "POST", "/_sim/runpod/gpu-types/NVIDIA%20GeForce%20RTX%204090/fail",
                       "{\"status\": \"EXITED\"}"));
  c.n = 1;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, KITE_ECAPACITY);
  assert_non_null(strstr(c.in[0].msg, "will never run"));
  assert_int_equal(sim_count(&c.sim, "created"), 1);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

/* An interruptible pod that RunPod takes back is gone to a preemption check; another is not. */
static void test_interrupted_is_preempted(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "interrupt", NULL, TOKEN);
  c.n = 2;
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_instance_launch_t l = {.provider = "runpod",
                                   .pool = 7,
                                   .node = 100 + i,
                                   .rank = i,
                                   .tag = c.tag,
                                   .options = c.options,
                                   .instance_type = TYPE,
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
  char path[192];
  snprintf(path, sizeof(path), "/_sim/runpod/pods/%s/interrupt", c.in[0].id);
  json_decref(sim_call(&c.sim, "POST", path, "{}"));
  int seen[2] = {-1, -1};
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_preempt_check_t q = {
        .provider = "runpod", .pool = 7, .node = 100 + i, .instance_id = c.in[i].id};
    assert_int_equal(
        kite_request_preempt_check(kite_runtime_bus(c.rt), &q, 0, on_preempt_state, &seen[i], NULL),
        0);
  }
  kite_runtime_run(c.rt);
  assert_int_equal(seen[0], KITE_PREEMPT_GONE);
  assert_int_equal(seen[1], KITE_PREEMPT_NONE);
  terminate_all(&c);
  kite_runtime_run(c.rt);
  assert_true(c.in[0].terminated && c.in[1].terminated);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

static void test_spot_pool_of_four(void **state) {
  (void)state;
  case_pool_of_four("pool", NULL);
}

static void test_spot_pool_with_20_percent_api_faults(void **state) {
  (void)state;
  case_pool_of_four("poolfaults", FAULTS_20_PERCENT("9"));
}

static void test_pool_replaces_dead_pod(void **state) {
  (void)state;
  case_pool_replaces_dead();
}

static void test_hostile_bodies_do_not_crash(void **state) {
  (void)state;
  case_hostile_bodies();
}

static void test_lifecycle_through_prism(void **state) {
  (void)state;
  case_lifecycle_through_prism();
}

/* The catalog request says what to do: the API lists no prices. */
static void test_catalog_says_import(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "catalog", NULL, TOKEN);
  cat_t k = {0};
  ask_catalog(c.rt, c.options, NULL, &k);
  kite_runtime_run(c.rt);
  assert_int_equal(k.status, KITE_ENOTSUP);
  assert_non_null(strstr(k.msg, "kite offers --import"));
  ctx_done(&c);
}

/* The cases of cloud_cases.h this cloud has no use for: interruptible pods are sold; its
 * catalog is a snapshot, not an API; a dead pod's host stays listed (the pool's health check
 * replaces the node); RunPod documents no account pod limit. */
static void unused_cases(void) {
  (void)case_spot_refused;
  (void)case_capacity_per_region;
  (void)case_limit;
  (void)case_catalog;
  (void)case_catalog_faults;
  (void)case_hostile_catalog;
  (void)case_dead_instance_is_preempted;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  cloud = &runpod;
  unused_cases();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_bad_key_is_credentials),
      cmocka_unit_test(test_missing_key_says_where_kite_looked),
      cmocka_unit_test(test_runpodctl_config),
      cmocka_unit_test(test_no_capacity_leaks_nothing),
      cmocka_unit_test(test_type_not_known),
      cmocka_unit_test(test_pod_that_never_runs_is_capacity),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_interrupted_is_preempted),
      cmocka_unit_test(test_spot_pool_of_four),
      cmocka_unit_test(test_spot_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_pod),
      cmocka_unit_test(test_catalog_says_import),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
