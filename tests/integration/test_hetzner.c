/* The Hetzner Cloud provider at the bus level, against kite-cloudsim's Hetzner front (/v1, a
 * real HTTP server on loopback whose servers are real sshd nodes): launch, reach the server
 * over SSH with its pinned host key, list by label, describe, preemption, terminate confirmed
 * only when the server and its processes are gone, kite's key registered once per project,
 * credentials (options, $HCLOUD_TOKEN, hcloud's cli.toml), error mapping, injected API faults
 * without duplicate servers, pools, hostile answers and the lifecycle through Prism. The
 * cases every cloud shares are in cloud_cases.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kite/kite.h"

#define TOKEN "hcloud_cloudsim_test_token_3b7c1e9a"

#include "cloudsim_client.h"

#include "cloud_cases.h"

static int hz_provider_new(kite_runtime_t *rt, const cloud_timing_t *t) {
  kite_hetzner_provider_options_t po = {.poll_ms = t->poll_ms,
                                        .backoff_base_ms = t->backoff_base_ms,
                                        .max_retries = t->max_retries,
                                        .running_timeout_ms = t->running_timeout_ms,
                                        .delete_timeout_ms = t->delete_timeout_ms};
  return kite_hetzner_provider_new(rt, &po, NULL);
}

/* What the hostile server answers: Hetzner's shapes with the wrong types, missing or absurd
 * values, and no JSON at all, each request kind round and round its own answers, so that the
 * key is found first and creates, finds, polls, deletes and lists all meet garbage. */
#define KEYS "GET /v1/ssh_keys"
#define KEY_NEW "POST /v1/ssh_keys"
#define CREATE "POST /v1/servers"
#define FIND "GET /v1/servers?name="
#define LIST "GET /v1/servers?label_selector="
#define DESCRIBE "GET /v1/servers/"
#define DELETE "DELETE /v1/servers/"
static const cloud_answer_t hostile[] = {
    {200, "{\"ssh_keys\": [{\"id\": 4711, \"name\": \"kite\"}]}", KEYS}, /* found */
    {200, "{\"ssh_keys\": [{\"id\": {}}]}", KEYS},
    {200, "{\"ssh_keys\": \"none\"}", KEYS},
    {200, "{\"ssh_keys\": []}", KEYS},
    {500, "\xff\xfe\xfd not json at all \x01\x02", KEYS},
    {201, "{\"ssh_key\": {\"id\": -5}}", KEY_NEW},
    {201, "{\"ssh_key\": {\"id\": 4712, \"name\": 3}}", KEY_NEW},
    {409,
     "{\"error\": {\"code\": \"uniqueness_error\", \"message\": \"SSH key with the same "
     "fingerprint already exists\"}}",
     KEY_NEW},
    {201, "{\"server\": {\"id\": \"3164444\"}, \"action\": {}}", CREATE},
    {201, "{\"server\": {\"id\": 1e400}}", CREATE},
    {201, "{\"server\": null, \"next_actions\": 7, \"root_password\": []}", CREATE},
    {422, "{\"error\": {\"code\": \"invalid_input\", \"message\": \"ssh_key 4711 not found\"}}",
     CREATE},
    {201, "{\"server\": {\"id\": 9, \"status\": \"initializing\"}}", CREATE},
    {403, "{\"error\": {\"code\": [\"x\"], \"message\": {}, \"details\": 5}}", CREATE},
    {201, "{\"server\": {\"id\": 0}}", CREATE},
    {412, "{\"error\": {\"code\": \"resource_unavailable\", \"message\": null}}", CREATE},
    {200, "{\"servers\": {\"a\": 1}}", FIND},
    {200,
     "{\"servers\": [null, 1, \"x\", {\"name\": 5, \"id\": -1}, {\"name\": [], \"labels\": 3}]}",
     FIND},
    {200, "{\"servers\": []}", FIND},
    {200, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", FIND},
    {200, "{\"servers\": [{\"id\": 18446744073709551615, \"name\": \"\"}]}", FIND},
    {200, "{\"servers\": [], \"meta\": {\"pagination\": {\"next_page\": 2}}}", LIST},
    {200, "{\"servers\": [], \"meta\": {\"pagination\": {\"next_page\": 9223372036854775807}}}",
     LIST},
    {200,
     "{\"servers\": [{\"id\": 18446744073709551615, \"name\": \"\", \"labels\": {\"kite-pool\": "
     "5}}], \"meta\": null}",
     LIST},
    {200,
     "{\"servers\": [{\"id\": 7, \"labels\": {\"kite-pool\": \"kite-pool-hostile\"}}], \"meta\": "
     "{\"pagination\": {\"next_page\": \"3\"}}}",
     LIST},
    {429, "{\"error\": {\"code\": \"rate_limit_exceeded\", \"message\": \"slow down\"}}", LIST},
    {200, "\"just a string\"", LIST},
    {401, "{\"error\": {\"code\": \"unauthorized\", \"message\": null, \"details\": []}}", LIST},
    {200,
     "{\"server\": {\"id\": 9, \"status\": \"running\", \"public_net\": {\"ipv4\": {\"ip\": 7}}, "
     "\"server_type\": {\"prices\": [5, null, {\"location\": 3, \"price_hourly\": {\"gross\": "
     "1}}]}, "
     "\"datacenter\": {\"location\": []}}}",
     DESCRIBE},
    {200, "{\"server\": {\"id\": 9, \"status\": 1, \"public_net\": []}}", DESCRIBE},
    {200,
     "{\"server\": {\"id\": 9, \"status\": \"running\", \"public_net\": {\"ipv4\": {\"ip\": "
     "\"127.0.0.1; touch /tmp/kite-hostile\"}}, \"location\": {\"name\": \"fsn1\"}, "
     "\"server_type\": {\"prices\": [{\"location\": \"fsn1\", \"price_hourly\": {\"gross\": "
     "\"1e999\"}}]}}}",
     DESCRIBE},
    {200, "{\"server\": {\"id\": 9, \"status\": \"deleting\", \"public_net\": null}}", DESCRIBE},
    {201, "{\"server\": {\"id\": 9}}", DESCRIBE},
    {204, "", DESCRIBE},
    {200, "{\"error\": \"not an error\", \"server\": \"x\"}", DESCRIBE},
    {404, "{\"error\": {\"code\": \"not_found\", \"message\": \"server not found\"}}", DESCRIBE},
    {200,
     "{\"server\": {\"id\": 9, \"status\": \"running\", \"public_net\": {\"ipv4\": {\"ip\": "
     "\"127.0.0.1\"}}, \"location\": {\"name\": \"fsn1\"}, \"server_type\": {\"prices\": "
     "[{\"location\": \"fsn1\", \"price_hourly\": {\"gross\": \"-1\"}}]}}}",
     DESCRIBE},
    {200, "{\"action\": 5}", DELETE},
    {500, "\xff\xfe\xfd not json at all \x01\x02", DELETE},
    {423, "{\"error\": {\"code\": \"locked\", \"message\": \"server is locked\"}}", DELETE},
    {404, "{\"error\": {\"code\": \"not_found\", \"message\": \"server not found\"}}", DELETE},
    {200, "{}", NULL},
    {500, "{\"error\": {\"code\": \"server_error\"}}", NULL},
};

/* The offers of /v1/server_types as the test reads them: one per price of each type that is not
 * deprecated. */
static size_t hz_expect(json_t *raw, const char *region, kite_offer_t *out, size_t max) {
  size_t n = 0, i, k;
  json_t *t, *p;
  json_array_foreach(json_object_get(raw, "server_types"), i, t) {
    if (json_is_true(json_object_get(t, "deprecated")))
      continue;
    json_array_foreach(json_object_get(t, "prices"), k, p) {
      const char *loc = json_string_value(json_object_get(p, "location"));
      if (region && strcmp(region, loc) != 0)
        continue;
      assert_true(n < max);
      kite_offer_t *o = &out[n++];
      memset(o, 0, sizeof(*o));
      snprintf(o->region, sizeof(o->region), "%s", loc);
      snprintf(o->instance_type, sizeof(o->instance_type), "%s",
               json_string_value(json_object_get(t, "name")));
      o->vcpus = (unsigned)json_integer_value(json_object_get(t, "cores"));
      o->memory_mb = (uint64_t)(json_number_value(json_object_get(t, "memory")) * 1024);
      o->disk_gb = (unsigned)json_number_value(json_object_get(t, "disk"));
      o->price =
          atof(json_string_value(json_object_get(json_object_get(p, "price_hourly"), "gross")));
      o->available = -1;
      const char *arch = json_string_value(json_object_get(t, "architecture"));
      snprintf(o->arch, sizeof(o->arch), "%s", strcmp(arch, "arm") == 0 ? "arm64" : "x86_64");
    }
  }
  return n;
}

#define TYPE_OK                                                                                    \
  "\"name\": \"cx22\", \"cores\": 2, \"memory\": 4.0, \"disk\": 40, \"architecture\": \"x86\", "   \
  "\"deprecated\": false"
#define PRICE_OK "{\"location\": \"fsn1\", \"price_hourly\": {\"gross\": \"0.0071\"}}"
static const cloud_answer_t hostile_catalog[] = {
    {200, "{\"server_types\": {\"name\": \"cx22\"}}", NULL},
    {200, "{\"server_types\": [{" TYPE_OK ", \"prices\": \"cheap\"}]}", NULL},
    {200,
     "{\"server_types\": [{" TYPE_OK ", \"prices\": [{\"location\": 1, \"price_hourly\": "
     "{\"gross\": \"0.1\"}}]}]}",
     NULL},
    {200,
     "{\"server_types\": [{" TYPE_OK ", \"prices\": [{\"location\": \"fsn1\", "
     "\"price_hourly\": {\"gross\": \"0.1abc\"}}]}]}",
     NULL},
    {200,
     "{\"server_types\": [{" TYPE_OK ", \"prices\": [{\"location\": \"fsn1\", "
     "\"price_hourly\": {\"gross\": \"1e400\"}}]}]}",
     NULL},
    {200,
     "{\"server_types\": [{" TYPE_OK ", \"prices\": [{\"location\": \"fsn1\", "
     "\"price_hourly\": {\"gross\": \"-0.5\"}}]}]}",
     NULL},
    {200,
     "{\"server_types\": [{" TYPE_OK ", \"prices\": [{\"location\": \"fsn1\", "
     "\"price_hourly\": {\"gross\": \"nan\"}}]}]}",
     NULL},
    {200, "{\"server_types\": [{" TYPE_OK ", \"prices\": [{\"location\": \"fsn1\"}]}]}", NULL},
    {200,
     "{\"server_types\": [{\"name\": \"cx22\", \"cores\": \"two\", \"memory\": 4, \"disk\": "
     "40, \"architecture\": \"x86\", \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200,
     "{\"server_types\": [{\"name\": \"cx22\", \"cores\": 2, \"memory\": 1e300, \"disk\": "
     "40, \"architecture\": \"x86\", \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200,
     "{\"server_types\": [{\"name\": \"cx22\", \"cores\": 2, \"memory\": -4, \"disk\": 40, "
     "\"architecture\": \"x86\", \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200,
     "{\"server_types\": [{\"name\": \"cx22\", \"cores\": 2, \"memory\": 4, \"disk\": 40.5, "
     "\"architecture\": \"x86\", \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200,
     "{\"server_types\": [{\"name\": \"cx22\", \"cores\": 2, \"memory\": 4, \"disk\": 40, "
     "\"architecture\": 86, \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200,
     "{\"server_types\": [{\"name\": null, \"cores\": 2, \"memory\": 4, \"disk\": 40, "
     "\"architecture\": \"x86\", \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200, "{\"server_types\": [{" TYPE_OK ", \"deprecated\": \"no\", \"prices\": [" PRICE_OK "]}]}",
     NULL},
    {200, "{\"server_types\": [7, {" TYPE_OK ", \"prices\": [" PRICE_OK "]}]}", NULL},
    {200, "{\"meta\": {\"pagination\": {\"next_page\": 2}}}", NULL},
    {200, "\"server_types\"", NULL},
    {500, "\xff\xfe not json", NULL},
};

static const cloud_case_t hetzner = {
    .provider = "hetzner",
    .token = TOKEN,
    .tmp = "hz",
    .type = "cx22",
    .region = "nbg1",
    .image = "ubuntu-24.04",
    .api_suffix = "/v1",
    .live_path = "/_sim/hetzner/state",
    .live_field = "live",
    .keys_path = "/_sim/hetzner/state",
    .keys_field = "ssh_keys",
    .kill_fmt = "/_sim/hetzner/servers/%s/kill",
    .url_env = "KITE_HETZNER_API_URL",
    .token_env = "HCLOUD_TOKEN",
    .spec = "hetzner-cloud.json",
    .prism_upstream_suffix = "/v1",
    .prism_spec = prism_upper_wildcards,
    .provider_new = hz_provider_new,
    .hostile = hostile,
    .n_hostile = sizeof(hostile) / sizeof(hostile[0]),
    .catalog_path = "/v1/server_types?per_page=50",
    .expect_offers = hz_expect,
    .other_region = "hel1",
    .catalog_ok = "{\"server_types\": [{" TYPE_OK ", \"prices\": [" PRICE_OK
                  "]}], \"meta\": {\"pagination\": {\"next_page\": null}}}",
    .hostile_catalog = hostile_catalog,
    .n_hostile_catalog = sizeof(hostile_catalog) / sizeof(hostile_catalog[0])};

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void test_launch_list_terminate(void **state) {
  (void)state;
  case_launch_list_terminate();
}

/* One launch in a runtime, terminated; counts the calls. */
static void launch_one(ctx_t *c) {
  c->n = 1;
  c->replies = c->term_replies = 0;
  memset(&c->in[0], 0, sizeof(c->in[0]));
  c->after_launch = terminate_all;
  launch(c, 0, NULL);
  kite_runtime_run(c->rt);
  assert_int_equal(c->in[0].status, 0);
  assert_true(c->in[0].terminated);
}

/* A second kite process with the same key finds it in the project (by its fingerprint) and
 * registers nothing; a kite with another key registers that one. */
static void test_key_registered_once_per_project(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "key", NULL, TOKEN);
  launch_one(&c);
  assert_int_equal(sim_keys(&c.sim), 1);
  ctx_runtime_free(&c);
  ctx_runtime_new(&c);
  launch_one(&c);
  assert_int_equal(sim_keys(&c.sim), 1);
  ctx_runtime_free(&c);
  /* Another home, another key pair (ctx_done removes this home, the first one here). */
  char first[64], cmd[128];
  snprintf(first, sizeof(first), "%s", c.home);
  snprintf(c.home, sizeof(c.home), "/tmp/kite-test-hz-XXXXXX");
  assert_non_null(mkdtemp(c.home));
  ctx_runtime_new(&c);
  launch_one(&c);
  assert_int_equal(sim_keys(&c.sim), 2);
  assert_int_equal(sim_count(&c.sim, "created"), 3);
  assert_int_equal(sim_live(&c.sim), 0);
  ctx_done(&c);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", first);
  assert_int_equal(system(cmd), 0);
}

/* A pool name of 48 characters, the longest kite takes: its tag is a valid label value (at most
 * 63 characters) and each server's name a valid hostname (labels of at most 63), as Hetzner
 * requires; the launch works. */
static void test_longest_pool_name(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "long", NULL, TOKEN);
  int n = snprintf(c.tag, sizeof(c.tag), "kite-pool-t%d-longest-", (int)getpid());
  while (n < (int)strlen("kite-pool-") + 48)
    c.tag[n++] = 'n';
  c.tag[n] = '\0';
  assert_int_equal(strlen(c.tag), strlen("kite-pool-") + 48);
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  if (c.in[0].status != 0)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  ctx_done(&c);
}

/* ---- credentials ---------------------------------------------------------------------------- */

static void test_bad_token_is_credentials(void **state) {
  (void)state;
  case_bad_token("hcloud_wrong_token_0000", "wrong_token");
}

static void test_missing_token_says_where_kite_looked(void **state) {
  (void)state;
  static const char *const unset[] = {"HCLOUD_TOKEN", "HCLOUD_CONFIG", NULL};
  case_missing_token(unset, "$HOME/.config/hcloud/cli.toml");
}

/* hcloud's cli.toml with two contexts: the active one's token is used (it is the second, and
 * the other's is wrong), and neither reaches a log line. */
/* A cli.toml with two contexts; active names the one in active_context, and $HCLOUD_CONTEXT,
 * when context is not NULL, names another (as hcloud takes it). The token used is the one of
 * the context named last; the other never shows. */
static void hcloud_contexts(const char *active, const char *context) {
  ctx_t c;
  current = &c;
  char *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
  unsetenv("HCLOUD_TOKEN");
  unsetenv("HCLOUD_CONFIG");
  ctx_init(&c, "hcloud", NULL, TOKEN);
  char path[256];
  snprintf(path, sizeof(path), "%s/.config", c.home);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof(path), "%s/.config/hcloud", c.home);
  assert_int_equal(mkdir(path, 0700), 0);
  snprintf(path, sizeof(path), "%s/.config/hcloud/cli.toml", c.home);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fprintf(fp,
          "active_context = \"%s\"\n\n"
          "[preferences]\n  sort = \"id\"\n\n"
          "[[contexts]]\n  name = \"old-project\"\n  token = \"hcloud_other_context_token_77\"\n\n"
          "[[contexts]]\n  name = \"kite-project\"\n  token = \"%s\"\n",
          active, TOKEN);
  fclose(fp);
  setenv("HOME", c.home, 1);
  if (context)
    setenv("HCLOUD_CONTEXT", context, 1);
  snprintf(c.options, sizeof(c.options),
           "{\"api_url\":\"%s\",\"ssh_user\":\"%s\",\"ssh_port\":2222}", ctx_api(&c),
           kite_local_login_user());
  c.n = 1;
  c.after_launch = terminate_all;
  launch(&c, 0, NULL);
  kite_runtime_run(c.rt);
  unsetenv("HCLOUD_CONTEXT");
  if (saved_home)
    setenv("HOME", saved_home, 1);
  free(saved_home);
  if (c.in[0].status != 0)
    print_error("launch: %s\n", c.in[0].msg);
  assert_int_equal(c.in[0].status, 0);
  assert_true(c.in[0].terminated);
  assert_null(strstr(c.log, "hcloud_other_context_token_77"));
  ctx_done(&c);
}

static void test_hcloud_cli_toml_token(void **state) {
  (void)state;
  hcloud_contexts("kite-project", NULL);
}

/* $HCLOUD_CONTEXT picks the context, over the file's active_context. */
static void test_hcloud_context_variable(void **state) {
  (void)state;
  hcloud_contexts("old-project", "kite-project");
}

/* ---- errors --------------------------------------------------------------------------------- */

/* 412 resource_unavailable. */
static void test_capacity_error_leaks_nothing(void **state) {
  (void)state;
  static const char *const want[] = {"unavailable", "another location", NULL};
  case_no_capacity(want);
}

/* 403 resource_limit_exceeded. */
static void test_server_limit_is_quota(void **state) {
  (void)state;
  case_limit("server limit");
}

/* A server type not sold in the location (CX types are sold in Germany and Finland only), and
 * a deprecated one: invalid_input on server_type, KITE_EUNAVAILABLE. */
static void test_type_not_sold_there_is_unavailable(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "nosold", NULL, TOKEN);
  c.n = 2;
  static const char *const types[] = {"cx22", "cx11"}, *const where[] = {"ash", "fsn1"};
  for (unsigned i = 0; i < 2; i++) {
    kite_ev_instance_launch_t l = {.provider = "hetzner",
                                   .pool = 7,
                                   .node = 100 + i,
                                   .rank = i,
                                   .tag = c.tag,
                                   .options = c.options,
                                   .instance_type = types[i],
                                   .region = where[i],
                                   .image = cloud->image};
    assert_int_equal(
        kite_request_instance_launch(kite_runtime_bus(c.rt), &l, 0, on_launched, &c.in[i], NULL),
        0);
  }
  kite_runtime_run(c.rt);
  for (unsigned i = 0; i < 2; i++) {
    assert_int_equal(c.in[i].status, KITE_EUNAVAILABLE);
    assert_non_null(strstr(c.in[i].msg, "server_type"));
    assert_non_null(strstr(c.in[i].msg, where[i]));
  }
  assert_int_equal(sim_count(&c.sim, "created"), 0);
  ctx_done(&c);
}

/* ---- the catalog ---------------------------------------------------------------------------- */

static void test_catalog_is_the_server_types(void **state) {
  (void)state;
  case_catalog();
}

/* Prices differ by location, Arm types are arm64, and the deprecated type is not offered. */
static void test_catalog_prices_per_location(void **state) {
  (void)state;
  ctx_t c;
  current = &c;
  ctx_init(&c, "catloc", NULL, TOKEN);
  cat_t k = {0};
  ask_catalog(c.rt, c.options, NULL, &k);
  kite_runtime_run(c.rt);
  assert_int_equal(k.status, 0);
  const kite_offer_t *eu = offer_find(k.offers, k.n, "fsn1", "cpx11");
  const kite_offer_t *us = offer_find(k.offers, k.n, "ash", "cpx11");
  assert_non_null(eu);
  assert_non_null(us);
  assert_true(us->price > eu->price);
  assert_null(offer_find(k.offers, k.n, "ash", "cx22"));
  assert_null(offer_find(k.offers, k.n, "fsn1", "cx11"));
  const kite_offer_t *arm = offer_find(k.offers, k.n, "hel1", "cax11");
  assert_non_null(arm);
  assert_string_equal(arm->arch, "arm64");
  assert_int_equal(arm->memory_mb, 4096);
  free(k.offers);
  ctx_done(&c);
}

static void test_catalog_with_20_percent_faults(void **state) {
  (void)state;
  case_catalog_faults();
}

static void test_no_capacity_in_one_location(void **state) {
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

static void test_dead_server_is_preempted(void **state) {
  (void)state;
  case_dead_instance_is_preempted();
}

/* ---- pools on Hetzner ----------------------------------------------------------------------- */

static void test_pool_on_hetzner(void **state) {
  (void)state;
  case_pool_of_four("pool", NULL);
}

static void test_pool_with_20_percent_api_faults(void **state) {
  (void)state;
  case_pool_of_four("poolfaults", FAULTS_20_PERCENT("7"));
}

static void test_pool_replaces_dead_server(void **state) {
  (void)state;
  case_pool_replaces_dead();
}

/* An API that says a server runs at an "address" that is not an IP address (here a shell
 * command): the launch fails and the server is deleted; the address never reaches a command
 * line or known_hosts. */
static const cloud_answer_t bad_address[] = {
    {200, "{\"ssh_keys\": [{\"id\": 1}]}", "GET /v1/ssh_keys"},
    {201, "{\"server\": {\"id\": 42}}", "POST /v1/servers"},
    {200,
     "{\"server\": {\"id\": 42, \"status\": \"running\", \"public_net\": {\"ipv4\": {\"ip\": "
     "\"127.0.0.1; touch /tmp/kite-hostile\"}}}}",
     "GET /v1/servers/42"},
    {404, "{\"error\": {\"code\": \"not_found\", \"message\": \"not found\"}}",
     "GET /v1/servers/42"},
    {200, "{\"action\": {\"id\": 1}}", "DELETE /v1/servers/42"},
    {500, "{}", NULL},
};

static void on_bad_address(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  inst_t *in = data;
  (void)bus;
  in->status = status;
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  snprintf(in->msg, sizeof(in->msg), "%s", e && e->message ? e->message : "");
}

static void test_address_must_be_an_ip(void **state) {
  (void)state;
  cloud_case_t scripted = *cloud;
  scripted.hostile = bad_address;
  scripted.n_hostile = sizeof(bad_address) / sizeof(bad_address[0]);
  const cloud_case_t *was = cloud;
  cloud = &scripted;
  int port = 0;
  pid_t pid = hostile_start(&port);
  char home[64];
  snprintf(home, sizeof(home), "/tmp/kite-test-hz-XXXXXX");
  assert_non_null(mkdtemp(home));
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_OFF};
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  cloud_timing_t t = {.poll_ms = 20, .backoff_base_ms = 5, .max_retries = 1};
  assert_int_equal(cloud->provider_new(rt, &t), 0);
  char options[256];
  snprintf(options, sizeof(options),
           "{\"api_url\":\"http://127.0.0.1:%d/v1\",\"token\":\"%s\",\"pin_host_key\":false}", port,
           TOKEN);
  inst_t in = {0};
  kite_ev_instance_launch_t l = {
      .provider = "hetzner", .pool = 1, .tag = "kite-pool-badaddr", .options = options};
  assert_int_equal(
      kite_request_instance_launch(kite_runtime_bus(rt), &l, 0, on_bad_address, &in, NULL), 0);
  kite_runtime_run(rt);
  assert_int_equal(in.status, KITE_EPROTO);
  assert_non_null(strstr(in.msg, "not an IP address"));
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
  cloud = &hetzner;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_launch_list_terminate),
      cmocka_unit_test(test_key_registered_once_per_project),
      cmocka_unit_test(test_longest_pool_name),
      cmocka_unit_test(test_bad_token_is_credentials),
      cmocka_unit_test(test_missing_token_says_where_kite_looked),
      cmocka_unit_test(test_hcloud_cli_toml_token),
      cmocka_unit_test(test_hcloud_context_variable),
      cmocka_unit_test(test_capacity_error_leaks_nothing),
      cmocka_unit_test(test_server_limit_is_quota),
      cmocka_unit_test(test_type_not_sold_there_is_unavailable),
      cmocka_unit_test(test_catalog_is_the_server_types),
      cmocka_unit_test(test_catalog_prices_per_location),
      cmocka_unit_test(test_catalog_with_20_percent_faults),
      cmocka_unit_test(test_no_capacity_in_one_location),
      cmocka_unit_test(test_hostile_catalog_refused),
      cmocka_unit_test(test_spot_refused),
      cmocka_unit_test(test_api_faults_no_duplicates),
      cmocka_unit_test(test_random_faults_20_percent),
      cmocka_unit_test(test_dead_server_is_preempted),
      cmocka_unit_test(test_pool_on_hetzner),
      cmocka_unit_test(test_pool_with_20_percent_api_faults),
      cmocka_unit_test(test_pool_replaces_dead_server),
      cmocka_unit_test(test_hostile_bodies_do_not_crash),
      cmocka_unit_test(test_address_must_be_an_ip),
      cmocka_unit_test(test_lifecycle_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
