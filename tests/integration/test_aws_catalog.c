/* The AWS provider's catalog against kite-cloudsim (its EC2 front and its Price List front,
 * real HTTP over loopback, every request's SigV4 signature checked): the offers a
 * catalog_request gets equal what this test computes from the emulator's own table; the Price
 * List request is signed for "pricing" in us-east-1 and a bad signature is refused; API faults
 * end in offers or a clean failure; hostile answers of the three calls are refused; a launch
 * with a zone lands in that zone at the launch's price. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudsim_client.h"
#include "kite/kite.h"
#include "providers/aws/aws_impl.h"

#define AK "AKIAKITETEST00000002"
#define SK "kite/test+catalog/wJalrXUtnFEMI/K7MDENG"
#define SIM_TOKEN "cloudsim-test-token-catalog"

static sim_t *running_sim;

static int teardown(void **state) {
  (void)state;
  if (running_sim) {
    kill(running_sim->pid, SIGTERM);
    waitpid(running_sim->pid, NULL, 0);
    running_sim = NULL;
  }
  return 0;
}

typedef struct ctx {
  sim_t sim;
  kite_runtime_t *rt;
  char home[64];
  char options[512];
  /* the catalog replies, in order */
  unsigned asked, answered, want;
  const char *region;
  int status[16];
  char *offers[16];
  char msg[16][1024];
  char log[1 << 16];
  size_t log_len;
  bool down; /* shut down already */
} ctx_t;

static void on_log(kite_runtime_t *rt, kite_log_level_t level, const char *line, void *data) {
  ctx_t *c = data;
  (void)rt;
  (void)level;
  size_t room = sizeof(c->log) - c->log_len;
  int n = snprintf(c->log + c->log_len, room, "%s\n", line);
  if (n > 0 && (size_t)n < room)
    c->log_len += (size_t)n;
}

static void ctx_init(ctx_t *c) {
  memset(c, 0, sizeof(*c));
  setenv("KITE_CLOUDSIM_AWS_ACCESS_KEY_ID", AK, 1);
  setenv("KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY", SK, 1);
  setenv("KITE_CLOUDSIM_IMDS_PORT", "8170", 1);
  const char *extra[] = {"--seed", "11", NULL};
  sim_start(&c->sim, SIM_TOKEN, extra);
  running_sim = &c->sim;
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-awscat-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  assert_int_equal(chmod(c->home, 0755), 0);
  setenv("AWS_ACCESS_KEY_ID", AK, 1);
  setenv("AWS_SECRET_ACCESS_KEY", SK, 1);
  unsetenv("AWS_SESSION_TOKEN");
  unsetenv("AWS_PROFILE");
  unsetenv("KITE_AWS_ENDPOINT");
  setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/kite-test/credentials", 1);
  setenv("AWS_CONFIG_FILE", "/nonexistent/kite-test/config", 1);
  setenv("AWS_REGION", "us-east-1", 1);
  /* The Price List endpoint the way AWS's tools take it: AWS_ENDPOINT_URL_PRICING. */
  char pricing[96];
  snprintf(pricing, sizeof(pricing), "%s/", c->sim.url);
  setenv("AWS_ENDPOINT_URL_PRICING", pricing, 1);
  snprintf(c->options, sizeof(c->options),
           "{\"endpoint\":\"%s/\",\"ssh_user\":\"%s\",\"ssh_port\":2222}", c->sim.url,
           kite_local_login_user());
  kite_runtime_options_t o = {.home = c->home, .log_level = KITE_LOG_DEBUG};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  kite_log_set_sink(c->rt, on_log, c);
  kite_aws_provider_options_t po = {.poll_ms = 200, .backoff_base_ms = 20, .max_retries = 4};
  assert_int_equal(kite_aws_provider_new(c->rt, &po, NULL), 0);
}

static void on_shutdown(kite_runtime_t *rt, void *data);

static void ctx_done(ctx_t *c) {
  if (!c->down) {
    assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
    kite_runtime_run(c->rt);
  }
  assert_int_equal(kite_runtime_free(c->rt), 0);
  assert_null(strstr(c->log, SK));
  assert_null(strstr(c->log, "Signature="));
  for (unsigned i = 0; i < 16; i++)
    free(c->offers[i]);
  running_sim = NULL;
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
  unsetenv("AWS_ENDPOINT_URL_PRICING");
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static void ask(ctx_t *c);

static void on_catalog(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  ctx_t *c = data;
  (void)bus;
  unsigned i = c->answered++;
  c->status[i] = status;
  const kite_ev_catalog_t *cat = kite_ev_as_catalog(ev);
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  if (cat && cat->offers)
    c->offers[i] = strdup(cat->offers);
  snprintf(c->msg[i], sizeof(c->msg[i]), "%s", e && e->message ? e->message : "");
  if (c->answered < c->want)
    ask(c);
  else
    uv_stop(kite_runtime_loop(c->rt)); /* the test goes on with the same runtime */
}

static void ask(ctx_t *c) {
  kite_ev_catalog_request_t r = {.provider = "aws", .region = c->region, .options = c->options};
  c->asked++;
  assert_int_equal(
      kite_request_catalog_request(kite_runtime_bus(c->rt), &r, 0, on_catalog, c, NULL), 0);
}

/* Asks for the catalog n times, one after another, and runs the loop until the last reply. */
static void run_catalog(ctx_t *c, const char *region, unsigned n) {
  for (unsigned i = 0; i < 16; i++) {
    free(c->offers[i]);
    c->offers[i] = NULL;
  }
  c->answered = 0;
  c->region = region;
  c->want = n;
  ask(c);
  kite_runtime_run(c->rt);
  assert_int_equal(c->answered, n);
}

/* ---- what the offers should be, from the emulator's table ---------------------------------- */

static json_t *find_offer(json_t *offers, const char *type, const char *zone) {
  size_t i;
  json_t *o;
  json_array_foreach(offers, i, o) {
    if (strcmp(json_string_value(json_object_get(o, "instance_type")), type) == 0 &&
        strcmp(json_string_value(json_object_get(o, "zone")), zone) == 0)
      return o;
  }
  return NULL;
}

static double num_or(json_t *v, double none) {
  return json_is_number(v) ? json_number_value(v) : none;
}

/* Checks offers (a catalog reply's JSON) against the table's region; returns how many offers
 * the table makes. */
static size_t check_offers(ctx_t *c, const char *region, const char *offers_text) {
  json_t *table = sim_call(&c->sim, "GET", "/_sim/ec2/catalog", NULL);
  json_t *types = json_object_get(table, region);
  assert_true(json_array_size(types) >= 12);
  json_error_t je;
  json_t *offers = json_loads(offers_text, 0, &je);
  assert_non_null(offers);
  size_t expected = 0, i;
  json_t *t;
  json_array_foreach(types, i, t) {
    const char *type = json_string_value(json_object_get(t, "instance_type"));
    json_t *spot = json_object_get(t, "spot");
    double price = num_or(json_object_get(t, "price"), -1);
    /* One offer per zone with a spot price, else one without a zone. */
    const char *zone;
    json_t *sp;
    size_t zones = json_object_size(spot);
    json_t *want = json_object();
    json_object_foreach(spot, zone, sp) {
      json_object_set(want, zone, sp);
    }
    if (zones == 0)
      json_object_set_new(want, "", json_null());
    json_object_foreach(want, zone, sp) {
      expected++;
      json_t *o = find_offer(offers, type, zone);
      if (o == NULL)
        print_error("no offer for %s in zone '%s'\n", type, zone);
      assert_non_null(o);
      assert_string_equal(json_string_value(json_object_get(o, "provider")), "aws");
      assert_string_equal(json_string_value(json_object_get(o, "region")), region);
      assert_int_equal(json_integer_value(json_object_get(o, "vcpus")),
                       json_integer_value(json_object_get(t, "vcpus")));
      assert_int_equal(json_integer_value(json_object_get(o, "memory_mb")),
                       json_integer_value(json_object_get(t, "memory_mib")));
      assert_string_equal(json_string_value(json_object_get(o, "arch")),
                          json_string_value(json_object_get(t, "arch")));
      const char *gpu = json_string_value(json_object_get(t, "gpu"));
      assert_string_equal(json_string_value(json_object_get(o, "accelerator")), gpu ? gpu : "");
      assert_int_equal(json_integer_value(json_object_get(o, "accelerator_count")),
                       json_integer_value(json_object_get(t, "gpu_count")));
      assert_int_equal(json_integer_value(json_object_get(o, "accelerator_memory_mb")),
                       json_integer_value(json_object_get(t, "gpu_mib")));
      assert_int_equal(json_integer_value(json_object_get(o, "disk_gb")),
                       json_integer_value(json_object_get(t, "disk_gb")));
      assert_true(fabs(num_or(json_object_get(o, "price"), -1) - price) < 1e-9);
      assert_true(fabs(num_or(json_object_get(o, "spot_price"), -1) - num_or(sp, -1)) < 1e-9);
    }
    json_decref(want);
  }
  assert_int_equal(json_array_size(offers), expected);
  json_decref(offers);
  json_decref(table);
  return expected;
}

/* The cheapest offer by one price ("price" or "spot_price"). */
static json_t *cheapest(json_t *offers, const char *key) {
  json_t *best = NULL, *o;
  size_t i;
  json_array_foreach(offers, i, o) {
    double p = num_or(json_object_get(o, key), -1);
    if (p >= 0 && (best == NULL || p < json_number_value(json_object_get(best, key))))
      best = o;
  }
  return best;
}

static void test_catalog_offers(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c);
  /* Small pages: every call is read page after page. */
  json_decref(sim_call(&c->sim, "POST", "/_sim/ec2/catalog", "{\"page_max\": 5}"));
  run_catalog(c, "us-east-1", 1);
  if (c->status[0] != 0)
    print_error("catalog: %s\n", c->msg[0]);
  assert_int_equal(c->status[0], 0);
  size_t n = check_offers(c, "us-east-1", c->offers[0]);
  assert_true(n > 40);
  json_error_t je;
  json_t *offers = json_loads(c->offers[0], 0, &je);
  /* The cheapest: t3.micro, spot in us-east-1a and on demand. */
  json_t *s = cheapest(offers, "spot_price"), *d = cheapest(offers, "price");
  assert_string_equal(json_string_value(json_object_get(s, "instance_type")), "t3.micro");
  assert_string_equal(json_string_value(json_object_get(s, "zone")), "us-east-1a");
  assert_true(fabs(json_number_value(json_object_get(s, "spot_price")) - 0.0031) < 1e-9);
  assert_string_equal(json_string_value(json_object_get(d, "instance_type")), "t3.micro");
  assert_true(fabs(json_number_value(json_object_get(d, "price")) - 0.0104) < 1e-9);
  /* A100:8 is p4d.24xlarge, in the two zones that have it. */
  size_t i, a100 = 0;
  json_t *o;
  json_array_foreach(offers, i, o) {
    if (strcmp(json_string_value(json_object_get(o, "accelerator")), "A100") == 0 &&
        json_integer_value(json_object_get(o, "accelerator_count")) == 8) {
      assert_string_equal(json_string_value(json_object_get(o, "instance_type")), "p4d.24xlarge");
      a100++;
    }
  }
  assert_int_equal(a100, 2);
  /* No spot history: one offer without a zone; not in the Price List: no on-demand price. */
  assert_true(json_is_null(json_object_get(find_offer(offers, "p3.2xlarge", ""), "spot_price")));
  assert_true(
      json_is_null(json_object_get(find_offer(offers, "m6a.large", "us-east-1a"), "price")));
  assert_string_equal(
      json_string_value(json_object_get(find_offer(offers, "m7g.large", "us-east-1a"), "arch")),
      "arm64");
  json_decref(offers);
  ctx_done(c);
  free(c);
}

static void test_catalog_other_region(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c);
  run_catalog(c, "eu-west-1", 1);
  assert_int_equal(c->status[0], 0);
  check_offers(c, "eu-west-1", c->offers[0]);
  ctx_done(c);
  free(c);
}

/* ---- the Price List's signature ------------------------------------------------------------- */

/* POSTs a GetProducts body to the emulator, signed with secret for service in region; returns
 * the HTTP status, body into out. */
static int pricing_post(ctx_t *c, const char *secret, const char *service, const char *region,
                        const char *body, char *out, size_t size) {
  char date[17], host[64];
  kite__aws_amz_date((int64_t)time(NULL), date);
  snprintf(host, sizeof(host), "127.0.0.1:%d", c->sim.port);
  char h1[96], h2[64], h3[80], h4[80];
  snprintf(h1, sizeof(h1), "host:%s", host);
  snprintf(h2, sizeof(h2), "x-amz-date:%s", date);
  snprintf(h3, sizeof(h3), "content-type:application/x-amz-json-1.1");
  snprintf(h4, sizeof(h4), "x-amz-target:AWSPriceListService.GetProducts");
  const char *hs[] = {h1, h2, h3, h4};
  kite__aws_sig_req_t r = {.method = "POST",
                           .path = "/",
                           .headers = hs,
                           .header_n = 4,
                           .payload = body,
                           .payload_len = strlen(body),
                           .region = region,
                           .service = service,
                           .amz_date = date,
                           .access_key = AK,
                           .secret_key = secret};
  kite__aws_sig_t sig;
  assert_int_equal(kite__aws_sign(&r, &sig), 0);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)c->sim.port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  char req[4096];
  int n = snprintf(req, sizeof(req),
                   "POST / HTTP/1.1\r\nHost: %s\r\nX-Amz-Date: %s\r\nContent-Type: "
                   "application/x-amz-json-1.1\r\nX-Amz-Target: AWSPriceListService.GetProducts"
                   "\r\nAuthorization: %s\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                   host, date, sig.authorization, strlen(body), body);
  kite__aws_sig_free(&sig);
  assert_int_equal(write(fd, req, (size_t)n), n);
  static char resp[1 << 20];
  size_t len = 0;
  ssize_t rd;
  while ((rd = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
    len += (size_t)rd;
  close(fd);
  resp[len] = '\0';
  char *b = strstr(resp, "\r\n\r\n");
  assert_non_null(b);
  snprintf(out, size, "%s", b + 4);
  return atoi(resp + 9);
}

/* Whether j has only the members shape (in the model) lists. */
static void assert_members_of(json_t *model, const char *shape, json_t *j) {
  json_t *members =
      json_object_get(json_object_get(json_object_get(model, "shapes"), shape), "members");
  assert_non_null(members);
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    if (json_object_get(members, k) == NULL)
      print_error("%s has no member %s\n", shape, k);
    assert_non_null(json_object_get(members, k));
  }
}

static void test_pricing_signed(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c);
  /* The Pricing model says where and how. */
  char path[512];
  snprintf(path, sizeof(path), "%s/tests/data/aws-pricing-service-2.json",
           getenv("KITE_SOURCE_DIR"));
  json_error_t je;
  json_t *model = json_load_file(path, 0, &je);
  assert_non_null(model);
  json_t *meta = json_object_get(model, "metadata");
  assert_string_equal(json_string_value(json_object_get(meta, "signingName")), "pricing");
  assert_string_equal(json_string_value(json_object_get(meta, "targetPrefix")),
                      "AWSPriceListService");
  assert_string_equal(json_string_value(json_object_get(meta, "jsonVersion")), "1.1");
  /* kite's request body has GetProductsRequest's members only, and the answer
   * GetProductsResponse's, its PriceList strings. */
  char *body = kite__aws_pricing_body("us-east-1", NULL);
  json_t *req = json_loads(body, 0, &je);
  assert_members_of(model, "GetProductsRequest", req);
  size_t i;
  json_t *fl;
  /* Exactly the products a Linux on-demand launch is billed at. */
  static const char *const want[][2] = {
      {"regionCode", "us-east-1"}, {"operatingSystem", "Linux"},
      {"tenancy", "Shared"},       {"preInstalledSw", "NA"},
      {"capacitystatus", "Used"},  {"licenseModel", "No License required"}};
  unsigned found = 0;
  json_array_foreach(json_object_get(req, "Filters"), i, fl) {
    assert_members_of(model, "Filter", fl);
    assert_string_equal(json_string_value(json_object_get(fl, "Type")), "TERM_MATCH");
    for (size_t k = 0; k < 6; k++)
      found += strcmp(json_string_value(json_object_get(fl, "Field")), want[k][0]) == 0 &&
               strcmp(json_string_value(json_object_get(fl, "Value")), want[k][1]) == 0;
  }
  assert_int_equal(found, 6);
  assert_string_equal(json_string_value(json_object_get(req, "ServiceCode")), "AmazonEC2");
  json_decref(req);
  static char out[1 << 20];
  assert_int_equal(pricing_post(c, SK, "pricing", "us-east-1", body, out, sizeof(out)), 200);
  json_t *ans = json_loads(out, 0, &je);
  assert_members_of(model, "GetProductsResponse", ans);
  assert_true(json_array_size(json_object_get(ans, "PriceList")) > 10);
  json_array_foreach(json_object_get(ans, "PriceList"), i, fl) {
    assert_true(json_is_string(fl));
  }
  json_decref(ans);
  /* A wrong secret, another service's scope, another region's: refused. */
  assert_int_equal(pricing_post(c, "wrong-secret", "pricing", "us-east-1", body, out, sizeof(out)),
                   400);
  assert_non_null(strstr(out, "InvalidSignatureException"));
  assert_int_equal(pricing_post(c, SK, "ec2", "us-east-1", body, out, sizeof(out)), 400);
  assert_non_null(strstr(out, "InvalidSignatureException"));
  assert_int_equal(pricing_post(c, SK, "pricing", "eu-west-1", body, out, sizeof(out)), 400);
  free(body);
  json_decref(model);
  /* What kite says when the Price List refuses its signature. */
  json_decref(sim_call(
      &c->sim, "POST", "/_sim/ec2/override",
      "{\"action\":\"GetProducts\",\"status\":400,\"body\":\"{\\\"__type\\\":\\\"com.amazon.coral."
      "service#InvalidSignatureException\\\",\\\"message\\\":\\\"The request signature we "
      "calculated does not match the signature you provided.\\\"}\"}"));
  run_catalog(c, "us-east-1", 1);
  print_message("kite says: %s\n", c->msg[0]);
  assert_int_equal(c->status[0], KITE_ECREDENTIALS);
  assert_non_null(strstr(c->msg[0], "InvalidSignatureException"));
  assert_non_null(strstr(c->msg[0], "secret access key"));
  ctx_done(c);
  free(c);
}

/* ---- faults and hostile answers ------------------------------------------------------------- */

static void test_catalog_faults(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c);
  run_catalog(c, "us-east-1", 1);
  assert_int_equal(c->status[0], 0);
  json_error_t je;
  json_t *clean = json_loads(c->offers[0], 0, &je);
  size_t n = json_array_size(clean);
  json_decref(clean);
  /* 20% of the API calls fail one way or another. */
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults",
                       "{\"p429\": 0.05, \"p500\": 0.05, \"reset\": 0.05, \"malformed\": 0.05}"));
  json_decref(sim_call(&c->sim, "POST", "/_sim/ec2/catalog", "{\"page_max\": 5}"));
  c->answered = 0;
  run_catalog(c, "us-east-1", 6);
  unsigned ok = 0;
  for (unsigned i = 0; i < 6; i++) {
    if (c->status[i] == 0) {
      ok++;
      json_t *o = json_loads(c->offers[i], 0, &je);
      assert_int_equal(json_array_size(o), n); /* whole, never a part */
      json_decref(o);
    } else {
      print_message("failed cleanly: %s (%s)\n", c->msg[i], kite_err_name(c->status[i]));
      assert_true(strlen(c->msg[i]) > 20);
    }
  }
  print_message("%u of 6 catalogs read through the faults\n", ok);
  assert_true(ok >= 1);
  ctx_done(c);
  free(c);
}

/* POSTs a one-shot answer for action to the emulator (any size). */
static void override(ctx_t *c, const char *action, const char *body) {
  /* Every attempt gets it: what kite retries meets it again. */
  json_t *j =
      json_pack("{s:s, s:i, s:s, s:i}", "action", action, "status", 200, "body", body, "times", 20);
  char *text = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  size_t len = strlen(text);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)c->sim.port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  char head[256];
  int n = snprintf(head, sizeof(head),
                   "POST /_sim/ec2/override HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "Content-Length: %zu\r\n\r\n",
                   len);
  assert_int_equal(write(fd, head, (size_t)n), n);
  for (size_t off = 0; off < len;) {
    ssize_t w = write(fd, text + off, len - off);
    assert_true(w > 0);
    off += (size_t)w;
  }
  char resp[512] = "";
  ssize_t r = read(fd, resp, sizeof(resp) - 1);
  close(fd);
  assert_true(r > 0);
  assert_non_null(strstr(resp, "200 OK"));
  free(text);
}

static char *nested(const char *open, const char *close, const char *pre, const char *post,
                    size_t depth) {
  size_t lo = strlen(open), lc = strlen(close);
  char *s = malloc(strlen(pre) + strlen(post) + depth * (lo + lc) + 1);
  char *p = s;
  p += sprintf(p, "%s", pre);
  for (size_t i = 0; i < depth; i++)
    p += sprintf(p, "%s", open);
  for (size_t i = 0; i < depth; i++)
    p += sprintf(p, "%s", close);
  sprintf(p, "%s", post);
  return s;
}

#define ITYPES_HEAD                                                                                \
  "<?xml version=\"1.0\"?><DescribeInstanceTypesResponse xmlns=\"http://ec2.amazonaws.com/doc/"    \
  "2016-11-15/\"><instanceTypeSet><item><instanceType>m5.large</instanceType>"
#define ITYPES_TAIL "</item></instanceTypeSet></DescribeInstanceTypesResponse>"
#define SPOT_HEAD                                                                                  \
  "<DescribeSpotPriceHistoryResponse><spotPriceHistorySet><item><instanceType>m5.large"            \
  "</instanceType><availabilityZone>us-east-1a</availabilityZone>"
#define SPOT_TAIL "</item></spotPriceHistorySet></DescribeSpotPriceHistoryResponse>"

static void test_catalog_hostile_answers(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c);
  char *deep_xml = nested("<a>", "</a>", ITYPES_HEAD, ITYPES_TAIL, 100000);
  char *deep_json = nested("[", "]", "{\"PriceList\":", "}", 200000);
  char *long_name = malloc(5000);
  memset(long_name, 'x', 4999);
  long_name[4999] = '\0';
  char *long_type = malloc(6000);
  snprintf(long_type, 6000,
           "<DescribeInstanceTypesResponse><instanceTypeSet><item><instanceType>%s"
           "</instanceType><vCpuInfo><defaultVCpus>2</defaultVCpus></vCpuInfo><memoryInfo>"
           "<sizeInMiB>8</sizeInMiB></memoryInfo></item></instanceTypeSet>"
           "</DescribeInstanceTypesResponse>",
           long_name);
  const struct {
    const char *action;
    const char *body;
  } cases[] = {
      {"DescribeInstanceTypes",
       "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 "
       "\"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]><DescribeInstanceTypesResponse>"
       "<instanceTypeSet><item><instanceType>&lol2;</instanceType></item></instanceTypeSet>"
       "</DescribeInstanceTypesResponse>"},
      {"DescribeInstanceTypes", deep_xml},
      {"DescribeInstanceTypes", long_type},
      {"DescribeInstanceTypes",
       ITYPES_HEAD "<vCpuInfo><defaultVCpus>-2</defaultVCpus></vCpuInfo>"
                   "<memoryInfo><sizeInMiB>8192</sizeInMiB></memoryInfo>" ITYPES_TAIL},
      {"DescribeInstanceTypes",
       ITYPES_HEAD "<vCpuInfo><defaultVCpus>99999999999999999999999</defaultVCpus></vCpuInfo>"
                   "<memoryInfo><sizeInMiB>8192</sizeInMiB></memoryInfo>" ITYPES_TAIL},
      {"DescribeInstanceTypes", ITYPES_HEAD "<vCpuInfo><defaultVCpus>2</defaultVCpus></vCpuInfo>"
                                            "<memoryInfo><sizeInMiB>8192</sizeInMiB></memoryInfo>"
                                            "<gpuInfo><gpus><item><name>A100</name><count>lots"
                                            "</count></item></gpus></gpuInfo>" ITYPES_TAIL},
      {"DescribeInstanceTypes", "<DescribeInstanceTypesResponse><instanceTypeSet><item>"},
      {"DescribeInstanceTypes", "{\"not\": \"xml\"}"},
      {"DescribeSpotPriceHistory", SPOT_HEAD "<spotPrice>nan</spotPrice>" SPOT_TAIL},
      {"DescribeSpotPriceHistory", SPOT_HEAD "<spotPrice>1e308</spotPrice>" SPOT_TAIL},
      {"DescribeSpotPriceHistory", SPOT_HEAD "<spotPrice>-0.5</spotPrice>" SPOT_TAIL},
      {"DescribeSpotPriceHistory",
       "<DescribeSpotPriceHistoryResponse><spotPriceHistorySet><item><spotPrice>0.1</spotPrice>"
       "</item></spotPriceHistorySet></DescribeSpotPriceHistoryResponse>"},
      {"GetProducts", "{\"PriceList\": \"everything\"}"},
      {"GetProducts", "{\"PriceList\": [42]}"},
      {"GetProducts", "{\"PriceList\": [\"{not json\"]}"},
      {"GetProducts", "{\"PriceList\": [\"{\\\"product\\\":{\\\"attributes\\\":{\\\"instanceType"
                      "\\\":\\\"m5.large\\\"}},\\\"terms\\\":{\\\"OnDemand\\\":{\\\"t\\\":{"
                      "\\\"priceDimensions\\\":{\\\"d\\\":{\\\"unit\\\":\\\"Hrs\\\",\\\"price"
                      "PerUnit\\\":{\\\"USD\\\":\\\"-1\\\"}}}}}}}\"]}"},
      {"GetProducts", "{\"PriceList\": [], \"NextToken\": 5}"},
      {"GetProducts", deep_json},
      {"GetProducts", "[]"},
  };
  size_t n = sizeof(cases) / sizeof(cases[0]);
  for (size_t i = 0; i < n; i++) {
    override(c, cases[i].action, cases[i].body);
    c->answered = 0;
    run_catalog(c, "us-east-1", 1);
    /* The message says which answer was wrong, or that it was not EC2's XML at all. */
    bool says = strstr(c->msg[0], cases[i].action) || strstr(c->msg[0], "not the XML EC2 sends");
    if (c->status[0] == 0 || !says)
      print_error("case %zu (%s): %d %s\n", i, cases[i].action, c->status[0], c->msg[0]);
    assert_true(c->status[0] < 0);
    assert_true(says);
    /* Clear what is left of the one-shot answers. */
    json_decref(sim_call(&c->sim, "POST", "/_sim/ec2/override",
                         "{\"action\":\"none\",\"body\":\"\",\"clear\":true}"));
    free(c->offers[0]);
    c->offers[0] = NULL;
  }
  free(deep_xml);
  free(deep_json);
  free(long_name);
  free(long_type);
  ctx_done(c);
  free(c);
}

/* ---- a launch with a zone ------------------------------------------------------------------- */

typedef struct launch_st {
  ctx_t *c;
  int status[3];
  char msg[3][1024];
  char id[40];
  double price;
  unsigned step;
} launch_st_t;

static void launch_next(launch_st_t *st);

static void on_launch_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  launch_st_t *st = data;
  (void)bus;
  const kite_ev_instance_launched_t *l = kite_ev_as_instance_launched(ev);
  const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
  if (st->step < 3) {
    st->status[st->step] = status;
    snprintf(st->msg[st->step], sizeof(st->msg[0]), "%s", e && e->message ? e->message : "");
  }
  if (st->step == 0 && l) {
    snprintf(st->id, sizeof(st->id), "%s", l->instance_id);
    st->price = l->price_hourly;
  }
  st->step++;
  launch_next(st);
}

static void launch_next(launch_st_t *st) {
  ctx_t *c = st->c;
  kite_bus_t *bus = kite_runtime_bus(c->rt);
  kite_ev_instance_launch_t l = {.provider = "aws",
                                 .pool = 1,
                                 .node = 1,
                                 .tag = "kite-pool-zone-test",
                                 .region = "us-east-1",
                                 .image = "ami-0kite0test0image",
                                 .options = c->options};
  switch (st->step) {
  case 0: /* m5.large on demand in us-east-1c, at the catalog's price */
    l.instance_type = "m5.large";
    l.zone = "us-east-1c";
    l.launch_token = "kite-pool-zone-0-0-1-abc";
    l.price_hourly = 0.096;
    l.ondemand_hourly = 0.096;
    break;
  case 1: /* p4d.24xlarge is not offered in us-east-1a */
    l.instance_type = "p4d.24xlarge";
    l.zone = "us-east-1a";
    l.launch_token = "kite-pool-zone-1-0-1-abc";
    break;
  case 2: {
    kite_ev_instance_terminate_t t = {
        .provider = "aws", .pool = 1, .node = 1, .instance_id = st->id};
    assert_int_equal(kite_request_instance_terminate(bus, &t, 0, on_launch_reply, st, NULL), 0);
    return;
  }
  default:
    assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
    return;
  }
  assert_int_equal(kite_request_instance_launch(bus, &l, 0, on_launch_reply, st, NULL), 0);
}

static void test_launch_in_zone(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c);
  assert_int_equal(kite_transport_new(c->rt, NULL, NULL), 0);
  launch_st_t st = {.c = c};
  launch_next(&st);
  kite_runtime_run(c->rt);
  c->down = true;
  if (st.status[0] != 0)
    print_error("launch: %s\n", st.msg[0]);
  assert_int_equal(st.status[0], 0);
  /* EC2 does not say what an instance costs: the launch's price is reported. */
  assert_true(fabs(st.price - 0.096) < 1e-9);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/ec2/state", "created"), 1);
  json_t *s = sim_call(&c->sim, "GET", "/_sim/ec2/state", NULL);
  json_t *inst = json_array_get(json_object_get(s, "instances"), 0);
  assert_string_equal(json_string_value(json_object_get(inst, "id")), st.id);
  assert_string_equal(json_string_value(json_object_get(inst, "zone")), "us-east-1c");
  assert_string_equal(json_string_value(json_object_get(inst, "instance_type")), "m5.large");
  json_decref(s);
  print_message("not offered: %s\n", st.msg[1]);
  assert_int_equal(st.status[1], KITE_EUNAVAILABLE);
  assert_non_null(strstr(st.msg[1], "Unsupported"));
  assert_non_null(strstr(st.msg[1], "us-east-1b"));
  assert_int_equal(st.status[2], 0);
  ctx_done(c);
  free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_catalog_offers, teardown),
      cmocka_unit_test_teardown(test_catalog_other_region, teardown),
      cmocka_unit_test_teardown(test_pricing_signed, teardown),
      cmocka_unit_test_teardown(test_catalog_faults, teardown),
      cmocka_unit_test_teardown(test_catalog_hostile_answers, teardown),
      cmocka_unit_test_teardown(test_launch_in_zone, teardown),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
