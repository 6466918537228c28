/* The Google Compute Engine provider at the bus level, against kite-cloudsim's GCP front
 * (/compute/v1, /token, the billing catalog, the metadata server; real HTTP on loopback, VMs that
 * are real sshd nodes): launch, SSH with the pinned host key, list by label, terminate confirmed
 * by a 404, credentials (an access token, a service-account key whose JWT the emulator verifies,
 * gcloud's authorized-user file, the metadata server; bad key files), a zone out of resources,
 * operations that end in error, 20% API faults, spot pools, the preemption notice, the catalog,
 * hostile answers and the lifecycle through Prism. The cases every cloud shares are in
 * cloud_cases.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kite/kite.h"

#define TOKEN "ya29.cloudsim_gcp_test_token_51c0ffee"
#define PROJECT "kite-test-project"

#include "cloudsim_client.h"

#include "cloud_cases.h"

static int gcp_provider_new(kite_runtime_t *rt, const cloud_timing_t *t) {
  kite_gcp_provider_options_t po = {.poll_ms = t->poll_ms,
                                    .backoff_base_ms = t->backoff_base_ms,
                                    .max_retries = t->max_retries,
                                    .running_timeout_ms = t->running_timeout_ms,
                                    .delete_timeout_ms = t->delete_timeout_ms};
  return kite_gcp_provider_new(rt, &po, NULL);
}

static void gcp_options_more(const char *url, char *out, size_t size) {
  snprintf(out, size, ",\"billing_url\":\"%s/v1\",\"project\":\"%s\"", url, PROJECT);
}

#define INSERT "POST /compute/v1/projects/"
#define WAIT "/wait"
#define DESCRIBE "GET /compute/v1/projects/" PROJECT "/zones/us-central1-a/instances/"
#define LIST "GET /compute/v1/projects/" PROJECT "/aggregated/instances"
#define DELETE "DELETE /compute/v1/"
static const cloud_answer_t hostile[] = {
    {200, "{\"kind\": \"compute#operation\", \"name\": \"op-1\", \"status\": \"RUNNING\"}", INSERT},
    {200, "{\"name\": \"op; rm -rf /\", \"status\": \"RUNNING\"}", INSERT},
    {200, "{\"name\": \"op-2\", \"status\": 7}", INSERT},
    {200, "{\"name\": \"op-3\", \"status\": \"DONE\", \"error\": {\"errors\": [7, null]}}", INSERT},
    {200, "{\"name\": \"op-4\", \"status\": \"DONE\", \"error\": {\"errors\": [{\"code\": 5}]}}",
     INSERT},
    {409, "{\"error\": {\"errors\": \"alreadyExists\"}}", INSERT},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", INSERT},
    {200, "{\"name\": \"op-1\", \"status\": \"DONE\"}", WAIT},
    {200, "{\"name\": \"op-1\", \"status\": \"RUNNING\"}", WAIT},
    {500, "\xff\xfe\xfd not json at all \x01\x02", WAIT},
    {200,
     "{\"status\": \"RUNNING\", \"networkInterfaces\": [{\"accessConfigs\": [{\"natIP\": "
     "\"127.0.0.1; touch /tmp/kite-hostile\"}]}]}",
     DESCRIBE},
    {200, "{\"status\": [], \"networkInterfaces\": {\"a\": 1}, \"scheduling\": 5}", DESCRIBE},
    {200, "{\"status\": \"TERMINATED\", \"scheduling\": {\"provisioningModel\": \"SPOT\"}}",
     DESCRIBE},
    {404,
     "{\"error\": {\"code\": 404, \"message\": \"not found\", \"errors\": [{\"reason\": "
     "\"notFound\"}]}}",
     DESCRIBE},
    {200,
     "{\"items\": {\"zones/us-central1-a\": {\"instances\": [null, 5, {\"name\": 7}, "
     "{\"name\": \"a; b\"}]}, \"zones/../../etc\": {\"instances\": [{\"name\": \"x\"}]}}, "
     "\"nextPageToken\": 5}",
     LIST},
    {200, "{\"items\": [], \"nextPageToken\": \"\"}", LIST},
    {200, "{\"items\": {\"zones/us-central1-a\": 3}}", LIST},
    {401, "{\"error\": {\"code\": 401, \"errors\": [{\"reason\": [\"x\"]}], \"message\": {}}}",
     LIST},
    {200, "{\"name\": \"op-9\", \"status\": \"DONE\"}", DELETE},
    {500, "{}", DELETE},
    {200, "{}", NULL},
    {500, "{\"error\": {\"code\": 500}}", NULL},
};

/* The description is converted from Google's discovery document, which lists no error answers
 * (every API of Google answers errors in one shape, documented apart): as shipped, the 404 that
 * confirms a deletion would be a violation. The copy at `to` gives each operation a "default"
 * answer with that shape; nothing else changes. */
static void prism_google_errors(const char *from, const char *to) {
  json_error_t e;
  json_t *spec = json_load_file(from, 0, &e);
  assert_non_null(spec);
  const char *path, *method;
  json_t *item, *op;
  json_object_foreach(json_object_get(spec, "paths"), path, item) {
    json_object_foreach(item, method, op) {
      json_t *responses = json_object_get(op, "responses");
      if (json_is_object(responses) && json_object_get(responses, "default") == NULL)
        json_object_set_new(responses, "default",
                            json_pack("{s:s, s:{s:{s:{s:s, s:{s:{s:s}}, s:[s]}}}}", "description",
                                      "Google's error answer", "content", "application/json",
                                      "schema", "type", "object", "properties", "error", "type",
                                      "object", "required", "error"));
    }
  }
  assert_int_equal(json_dump_file(spec, to, JSON_COMPACT), 0);
  json_decref(spec);
}

static const cloud_case_t gcp = {
    .provider = "gcp",
    .token = TOKEN,
    .tmp = "gcp",
    .type = "e2-small",
    .region = "us-central1-a",
    .image = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
    .api_suffix = "/compute/v1",
    .live_path = "/_sim/gcp/state",
    .live_field = "live",
    .keys_path = "/_sim/gcp/state",
    .keys_field = "ssh_keys",
    .kill_fmt = "/_sim/gcp/instances/%s/kill",
    .url_env = "KITE_GCP_API_URL",
    .token_env = "GOOGLE_APPLICATION_CREDENTIALS",
    .spec = "gcp-compute.json",
    .prism_upstream_suffix = "/compute/v1",
    .prism_spec = prism_google_errors,
    .provider_new = gcp_provider_new,
    .hostile = hostile,
    .n_hostile = sizeof(hostile) / sizeof(hostile[0]),
    .other_region = "us-central1-b",
    .options_more = gcp_options_more,
    .pool_spot = true,
};

/* ---- the shared cases ----------------------------------------------------------------------- */

static void test_launch_list_terminate(void **state) {
  (void)state;
  case_launch_list_terminate();
}

static void test_bad_token_is_credentials(void **state) {
  (void)state;
  case_bad_token("ya29.wrong_token_0000", "wrong_token");
}

static void test_missing_credentials_says_where_kite_looked(void **state) {
  (void)state;
  static const char *const unset[] = {"GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG",
                                      "GCE_METADATA_HOST", NULL};
  case_missing_token(unset, "$HOME/.config/gcloud/application_default_credentials.json");
}

/* A capacity rule of 0 in the zone: the insert's operation ends in
 * ZONE_RESOURCE_POOL_EXHAUSTED, KITE_ECAPACITY; the launch in the other zone works. */
static void test_zone_exhausted_is_capacity(void **state) {
  (void)state;
  case_capacity_per_region();
}

static void test_quota_exceeded_is_quota(void **state) {
  (void)state;
  case_limit("quota");
}

static void test_api_faults_no_duplicates(void **state) {
  (void)state;
  case_api_faults_no_duplicates();
}

static void test_random_faults_20_percent(void **state) {
  (void)state;
  case_random_faults("42");
}

static void test_dead_vm_is_preempted(void **state) {
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

static void test_pool_replaces_dead_vm(void **state) {
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

/* ---- operations that end in error ----------------------------------------------------------- */

/* Two inserts whose operations end in INTERNAL_ERROR: tried again with a new requestId, one VM
 * made, none left. */
static void test_operation_error_is_retried(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "operr", NULL, TOKEN);
  json_decref(sim_call(&c.sim, "POST", "/_sim/gcp/op_errors",
                       "{\"next\": [\"INTERNAL_ERROR\", \"INTERNAL_ERROR\"]}"));
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  if (c.in[0].status)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  assert_int_equal(sim_count(&c.sim, "created"), 1);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
}

/* ---- credentials ---------------------------------------------------------------------------- */

/* A fresh RSA key (openssl genpkey) in a service-account key file at path whose token_uri is
 * the emulator's. */
static void write_key_file(const char *dir, const char *path, const char *token_uri) {
  char cmd[512], pem_path[256];
  snprintf(pem_path, sizeof(pem_path), "%s/sa.pem", dir);
  snprintf(cmd, sizeof(cmd),
           "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
           pem_path);
  assert_int_equal(system(cmd), 0);
  char *pem = NULL;
  FILE *fp = fopen(pem_path, "r");
  assert_non_null(fp);
  static char buf[8192];
  size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
  buf[n] = '\0';
  fclose(fp);
  pem = buf;
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "service_account",
                        "project_id", PROJECT, "private_key_id", "0123abcd", "private_key", pem,
                        "client_email", "kite@" PROJECT ".iam.gserviceaccount.com", "client_id",
                        "1234567890", "token_uri", token_uri);
  assert_int_equal(json_dump_file(j, path, JSON_INDENT(2)), 0);
  json_decref(j);
}

/* A launch with the credentials in credentials (options text after api_url), nothing else. */
static int launch_with(ctx_t *c, const char *creds_options) {
  snprintf(c->options, sizeof(c->options),
           "{\"api_url\":\"%s\",%s\"ssh_user\":\"%s\",\"ssh_port\":2222}", ctx_api(c),
           creds_options, kite_local_login_user());
  c->n = 1;
  c->replies = c->term_replies = 0;
  memset(&c->in[0], 0, sizeof(c->in[0]));
  c->after_launch = terminate_all;
  launch(c, 0, NULL);
  kite_runtime_run(c->rt);
  return c->in[0].status;
}

/* The service-account key's JWT is verified by the emulator with the key itself: the token it
 * gives runs the launch. A key the emulator does not know (same account, another key) is
 * refused with KITE_ECREDENTIALS naming the file, never showing the key. */
static void test_service_account_key(void **state) {
  (void)state;
  char dir[64] = "/tmp/kite-test-gcpkey-XXXXXX", key[128], other[128], env[160];
  assert_non_null(mkdtemp(dir));
  snprintf(key, sizeof(key), "%s/key.json", dir);
  snprintf(other, sizeof(other), "%s/other.json", dir);
  setenv("KITE_CLOUDSIM_GCP_KEY_FILE", key, 1);
  ctx_t c;
  current = &c;
  ctx_init(&c, "sakey", NULL, TOKEN);
  char uri[128];
  snprintf(uri, sizeof(uri), "%s/token", c.sim.url);
  write_key_file(dir, key, uri);
  write_key_file(dir, other, uri);
  snprintf(env, sizeof(env), "\"credentials_file\":\"%s\",", key);
  int rc = launch_with(&c, env);
  if (rc)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(rc, 0);
  assert_true(c.in[0].terminated);
  /* The same through $GOOGLE_APPLICATION_CREDENTIALS. */
  setenv("GOOGLE_APPLICATION_CREDENTIALS", key, 1);
  rc = launch_with(&c, "");
  if (rc)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(rc, 0);
  unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
  /* A new process: the token of the account is not cached. */
  ctx_runtime_free(&c);
  ctx_runtime_new(&c);
  snprintf(env, sizeof(env), "\"credentials_file\":\"%s\",", other);
  rc = launch_with(&c, env);
  assert_int_equal(rc, KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "Invalid JWT Signature"));
  assert_non_null(strstr(c.in[0].msg, other));
  assert_int_equal(sim_count(&c.sim, "created"), 2);
  unsetenv("KITE_CLOUDSIM_GCP_KEY_FILE");
  ctx_done(&c);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
}

/* Key files kite cannot use: each a clear KITE_ECREDENTIALS that names the file and what is
 * wrong, and not one request. */
static void test_bad_key_files(void **state) {
  (void)state;
  static const struct {
    const char *body, *want;
  } bad[] = {
      {"not json {", "is not a JSON object"},
      {"{\"type\": \"service_account\", \"client_email\": \"a@b\"}", "has no private_key"},
      {"{\"type\": \"service_account\", \"client_email\": \"a@b\", \"private_key\": \"-----BEGIN "
       "PRIVATE KEY-----\\nAAAA\\n-----END PRIVATE KEY-----\\n\"}",
       "not a PEM RSA private key"},
      {"{\"type\": \"external_account\"}", "has type \"external_account\""},
      {"{\"type\": \"authorized_user\", \"client_id\": \"x\"}", "has no client_secret"},
  };
  ctx_t c;
  current = &c;
  ctx_init(&c, "badkey", NULL, TOKEN);
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char path[128], opt[200];
    snprintf(path, sizeof(path), "%s/bad%zu.json", c.home, i);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(bad[i].body, fp);
    fclose(fp);
    snprintf(opt, sizeof(opt), "\"credentials_file\":\"%s\",", path);
    assert_int_equal(launch_with(&c, opt), KITE_ECREDENTIALS);
    if (strstr(c.in[0].msg, bad[i].want) == NULL)
      fail_msg("%zu: %s", i, c.in[0].msg);
    assert_non_null(strstr(c.in[0].msg, path));
  }
  char opt[200];
  snprintf(opt, sizeof(opt), "\"credentials_file\":\"%s/none.json\",", c.home);
  assert_int_equal(launch_with(&c, opt), KITE_ECREDENTIALS);
  assert_non_null(strstr(c.in[0].msg, "cannot read"));
  assert_int_equal(sim_count(&c.sim, "requests"), 0);
  ctx_done(&c);
}

/* gcloud's application-default credentials (authorized_user, a refresh token) under $HOME, and
 * the metadata server's token ($GCE_METADATA_HOST). */
static void test_gcloud_and_metadata_credentials(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
  unsetenv("CLOUDSDK_CONFIG");
  ctx_init(&c, "adc", NULL, TOKEN);
  char path[256];
  snprintf(path, sizeof(path), "%s/.config/gcloud", c.home);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "mkdir -p %s", path);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof(path), "%s/.config/gcloud/application_default_credentials.json", c.home);
  char uri[128];
  snprintf(uri, sizeof(uri), "%s/token", c.sim.url);
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "authorized_user", "client_id",
                        "764086051850.apps.googleusercontent.com", "client_secret",
                        "d-FL95Q19q7MQmFpd7hHD0Ty", "refresh_token", TOKEN, "token_uri", uri);
  assert_int_equal(json_dump_file(j, path, 0), 0);
  json_decref(j);
  setenv("HOME", c.home, 1);
  int rc = launch_with(&c, "");
  if (rc)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(rc, 0);
  unlink(path);
  setenv("GCE_METADATA_HOST", c.sim.url + strlen("http://"), 1);
  rc = launch_with(&c, "");
  unsetenv("GCE_METADATA_HOST");
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  if (rc)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(rc, 0);
  assert_null(strstr(c.log, "d-FL95Q19q7MQmFpd7hHD0Ty"));
  ctx_done(&c);
}

/* ---- the preemption notice ------------------------------------------------------------------ */

typedef struct notice {
  ctx_t *c;
  int first, second;
} notice_t;

static void on_notice_check(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  notice_t *n = data;
  (void)bus;
  assert_int_equal(status, 0);
  const kite_ev_preempt_status_t *s = kite_ev_as_preempt_status(ev);
  assert_non_null(s);
  if (n->first < 0)
    n->first = s->state;
  else
    n->second = s->state;
}

static void check_with(ctx_t *c, notice_t *n, const char *out) {
  kite_ev_preempt_check_t q = {.provider = "gcp",
                               .pool = 7,
                               .node = 100,
                               .instance_id = c->in[0].id,
                               .probe_output = {out, strlen(out)}};
  assert_int_equal(
      kite_request_preempt_check(kite_runtime_bus(c->rt), &q, 0, on_notice_check, n, NULL), 0);
  kite_runtime_run(c->rt);
}

/* A spot VM: the metadata server on the node says FALSE, then TRUE after the emulator's notice;
 * the probe's output read by the provider is a notice; two seconds later the VM is gone. */
static void test_preemption_notice_from_metadata(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "notice", NULL, TOKEN);
  c.n = 1;
  kite_ev_instance_launch_t l = {.provider = "gcp",
                                 .pool = 7,
                                 .node = 100,
                                 .tag = c.tag,
                                 .options = c.options,
                                 .instance_type = gcp.type,
                                 .region = gcp.region,
                                 .spot = true};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[0], NULL), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.in[0].status, 0);
  char probe[512], out[256];
  snprintf(probe, sizeof(probe),
           "curl -s -m 3 -H \"Metadata-Flavor: Google\" "
           "http://%s:8170/computeMetadata/v1/instance/preempted",
           c.in[0].address);
  assert_int_equal(run_ssh(&c.in[0], probe, out, sizeof(out)), 0);
  assert_string_equal(out, "FALSE");
  notice_t n = {.c = &c, .first = -1, .second = -1};
  check_with(&c, &n, out);
  assert_int_equal(n.first, KITE_PREEMPT_NONE);
  char path[160];
  snprintf(path, sizeof(path), "/_sim/gcp/instances/%s/preempt", c.in[0].id);
  json_decref(sim_call(&c.sim, "POST", path, "{}"));
  assert_int_equal(run_ssh(&c.in[0], probe, out, sizeof(out)), 0);
  assert_string_equal(out, "TRUE");
  check_with(&c, &n, out);
  assert_int_equal(n.second, KITE_PREEMPT_NOTICE);
  while (sim_live(&c.sim) > 0)
    usleep(50000);
  n.first = -1;
  check_with(&c, &n, "");
  assert_int_equal(n.first, KITE_PREEMPT_GONE);
  terminate_all(&c);
  kite_runtime_run(c.rt);
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

/* ---- the catalog ---------------------------------------------------------------------------- */

/* The offer of type in zone with count accelerators of model ("" and 0: none). */
static const kite_offer_t *find_with(const cat_t *k, const char *zone, const char *type,
                                     const char *model, unsigned count) {
  for (size_t i = 0; i < k->n; i++)
    if (strcmp(k->offers[i].zone, zone) == 0 && strcmp(k->offers[i].instance_type, type) == 0 &&
        strcmp(k->offers[i].accelerator, model) == 0 && k->offers[i].accelerator_count == count)
      return &k->offers[i];
  return NULL;
}

static const kite_offer_t *find(const cat_t *k, const char *zone, const char *type) {
  return find_with(k, zone, type, "", 0);
}

/* Machine types per zone priced from the billing SKUs (vCPUs × core + GiB × RAM, on demand and
 * spot), e2's shared cores counted as their share, families kite cannot price left out; A2 and
 * G2 types with their GPUs' price added; N1 hosts with 1, 2, 4 or 8 attached T4s or V100s where
 * the zone has them and sells the host; one region's catalog has only its zones. */
/* The cases of cloud_cases.h this cloud has no use for: spot is sold, and GCP's catalog (with
 * spot prices, from two APIs) has cases of its own below. */
static void unused_cases(void) {
  (void)case_hostile_catalog;
  (void)case_catalog_faults;
  (void)case_catalog;
  (void)case_spot_refused;
  (void)case_no_capacity;
}

static void test_catalog_machine_types_and_skus(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "catalog", NULL, TOKEN);
  cat_t all = {0}, one = {0};
  ask_catalog(c.rt, c.options, NULL, &all);
  ask_catalog(c.rt, c.options, "europe-west4", &one);
  kite_runtime_run(c.rt);
  if (all.status || one.status)
    print_error("catalog: %s | %s\n", all.msg, one.msg);
  assert_int_equal(all.status, 0);
  assert_int_equal(one.status, 0);
  const kite_offer_t *o = find(&all, "us-central1-a", "e2-standard-2");
  assert_non_null(o);
  assert_string_equal(o->region, "us-central1");
  assert_int_equal(o->vcpus, 2);
  assert_int_equal(o->memory_mb, 8192);
  assert_true(fabs(o->price - (2 * 0.021811 + 8 * 0.002923)) < 1e-9);
  assert_true(fabs(o->spot_price - (2 * 0.006543 + 8 * 0.000877)) < 1e-9);
  assert_string_equal(o->source, "api");
  const kite_offer_t *small = find(&all, "us-east1-b", "e2-small");
  assert_non_null(small);
  assert_true(fabs(small->price - (0.5 * 0.021811 + 2 * 0.002923)) < 1e-9);
  assert_null(find(&all, "us-central1-a", "c3-standard-4"));  /* not priced */
  assert_null(find(&all, "europe-west4-b", "n2-standard-2")); /* not sold there */
  assert_non_null(find(&all, "europe-west4-a", "n1-standard-1"));
  /* A T4 on n1-standard-4: the host's price plus the GPU's, spot too. */
  const kite_offer_t *t4 = find_with(&all, "us-central1-a", "n1-standard-4", "T4", 1);
  assert_non_null(t4);
  assert_true(fabs(t4->price - (4 * 0.031611 + 15 * 0.004237 + 0.35)) < 1e-9);
  assert_true(fabs(t4->spot_price - (4 * 0.006655 + 15 * 0.000892 + 0.14)) < 1e-9);
  assert_int_equal(t4->accelerator_memory_mb, 16384);
  assert_non_null(find_with(&all, "us-central1-b", "n1-standard-8", "T4", 2));
  assert_null(find_with(&all, "us-central1-a", "n1-standard-16", "T4", 4)); /* no such host */
  assert_null(find_with(&all, "us-east1-b", "n1-standard-4", "T4", 1));     /* no T4 there */
  assert_non_null(find_with(&all, "us-central1-a", "n1-standard-8", "V100", 2));
  /* A2 comes with its A100. */
  const kite_offer_t *a2 = find_with(&all, "us-central1-a", "a2-highgpu-1g", "A100", 1);
  assert_non_null(a2);
  assert_true(fabs(a2->price - (12 * 0.031611 + 85 * 0.004237 + 2.933908)) < 1e-9);
  assert_null(find(&all, "us-central1-a", "a2-highgpu-1g"));
  assert_non_null(find_with(&all, "us-east1-b", "g2-standard-4", "L4", 1));
  /* 7 zones × (5 e2 + 2 n1) + n2 where sold (5 + 4) + n1-standard-4 (4 zones) and -8 (2) + a2
   * (2) + g2 (2); then T4 × 1 (4 zones), T4 × 2 (2), V100 × 1 and × 2 (1 each). */
  assert_int_equal(all.n, 7 * 7 + 5 + 4 + 4 + 2 + 2 + 2 + 4 + 2 + 2);
  for (size_t i = 0; i < one.n; i++)
    assert_string_equal(one.offers[i].region, "europe-west4");
  assert_int_equal(one.n, 2 * 7 + 1 + 1 + 1 + 1);
  free(all.offers);
  free(one.offers);
  ctx_done(&c);
}

/* Billing answers kite cannot read are refused, saying which SKU. */
static void test_catalog_bad_sku_refused(void **state) {
  (void)state;
  static const cloud_answer_t answers[] = {
      {200,
       "{\"items\": {\"zones/us-central1-a\": {\"machineTypes\": [{\"name\": \"e2-standard-2\", "
       "\"guestCpus\": 2, \"memoryMb\": 8192}]}}}",
       "GET /compute/v1/projects/" PROJECT "/aggregated/machineTypes"},
      {200, "{\"items\": {}}", "GET /compute/v1/projects/" PROJECT "/aggregated/acceleratorTypes"},
      {200,
       "{\"skus\": [{\"skuId\": \"BAD-SKU\", \"description\": \"E2 Instance Core running in "
       "Americas\", \"category\": {\"resourceFamily\": \"Compute\", \"resourceGroup\": \"CPU\", "
       "\"usageType\": \"OnDemand\"}, \"serviceRegions\": [\"us-central1\"], \"pricingInfo\": "
       "[{\"pricingExpression\": {\"usageUnit\": \"h\", \"tieredRates\": [{\"unitPrice\": "
       "{\"units\": \"1e999\", \"nanos\": -4}}]}}]}]}",
       "GET /v1/services/"},
      {500, "{}", NULL},
  };
  cloud_case_t scripted = *cloud;
  const cloud_case_t *was = cloud;
  cloud = &scripted;
  int port = 0;
  pid_t pid = hostile_start_with(&port, answers, sizeof(answers) / sizeof(answers[0]));
  char home[64] = "/tmp/kite-test-gcp-XXXXXX";
  assert_non_null(mkdtemp(home));
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_OFF};
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  cloud_timing_t t = {.poll_ms = 20, .backoff_base_ms = 5, .max_retries = 1};
  assert_int_equal(cloud->provider_new(rt, &t), 0);
  char options[300];
  snprintf(options, sizeof(options),
           "{\"api_url\":\"http://127.0.0.1:%d/compute/v1\",\"billing_url\":\"http://"
           "127.0.0.1:%d/v1\",\"token\":\"%s\",\"project\":\"%s\"}",
           port, port, TOKEN, PROJECT);
  cat_t k = {0};
  ask_catalog(rt, options, NULL, &k);
  kite_runtime_run(rt);
  assert_int_equal(k.status, KITE_EPROTO);
  assert_non_null(strstr(k.msg, "BAD-SKU"));
  assert_non_null(strstr(k.msg, "not a price"));
  free(k.offers);
  assert_int_equal(kite_runtime_shutdown(rt, NULL, NULL), 0);
  kite_runtime_run(rt);
  assert_int_equal(kite_runtime_free(rt), 0);
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
  cloud = was;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  cloud = &gcp;
  unused_cases();
  setenv("GOOGLE_CLOUD_PROJECT", PROJECT, 1);
  /* Nothing of these tests leaves the machine: a billing URL the options do not set is a port
   * nobody listens on. */
  setenv("KITE_GCP_BILLING_URL", "http://127.0.0.1:9/v1", 1);
  unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
  unsetenv("GCE_METADATA_HOST");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_bad_token_is_credentials),
      cmocka_unit_test(test_missing_credentials_says_where_kite_looked),
      cmocka_unit_test(test_service_account_key),
      cmocka_unit_test(test_bad_key_files),
      cmocka_unit_test(test_gcloud_and_metadata_credentials),
      cmocka_unit_test(test_zone_exhausted_is_capacity),
      cmocka_unit_test(test_quota_exceeded_is_quota),
      cmocka_unit_test(test_operation_error_is_retried),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_dead_vm_is_preempted),
      cmocka_unit_test(test_preemption_notice_from_metadata),
      cmocka_unit_test(test_spot_pool_of_four),
      cmocka_unit_test(test_spot_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_vm),
      cmocka_unit_test(test_catalog_machine_types_and_skus),
      cmocka_unit_test(test_catalog_bad_sku_refused),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
