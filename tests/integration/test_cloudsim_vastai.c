/* kite-cloudsim's Vast.ai front (/api/v0/, /api/v1/), driven over HTTP as a provider would drive
 * Vast's API: offer search with filters and ordering, SSH keys, on-demand and interruptible
 * instances from loading to running, real SSH to the node with the host key handed over in env,
 * an outbid instance, an offer whose launches fail, destroy that completes only when the node's
 * processes are gone, the refusals (token, onstart, bid, offer, key) and injected faults in Vast's
 * shapes, and the same requests through Stoplight Prism checking them against vastai.yaml. */
#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "kite/kite.h"

#define TOKEN "vast_cloudsim_test_key_5c0e93a1"

#include "cloudsim_client.h"
#include "prism.h"

/* Offers of the emulator's catalog. */
#define ASK_4090 3200101
#define ASK_3090 3200103
#define ASK_A100 3200104
#define ASK_UNVERIFIED 3200105
#define ASK_RENTED_OUT 3200107

/* ---- HTTP ----------------------------------------------------------------------------------- */

typedef struct reply {
  long status;
  char body[1 << 18];
  size_t body_len;
  json_t *json; /* the body, parsed (or NULL) */
} reply_t;

static size_t on_body(char *p, size_t size, size_t n, void *data) {
  reply_t *r = data;
  size_t len = size * n;
  if (r->body_len + len < sizeof(r->body)) {
    memcpy(r->body + r->body_len, p, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
  }
  return len;
}

/* One blocking request (test code) to base + path with the bearer token (or none). */
static reply_t *call(const char *base, const char *token, const char *method, const char *path,
                     const char *body) {
  reply_t *r = calloc(1, sizeof(*r));
  CURL *c = curl_easy_init();
  char url[1024], auth[256];
  snprintf(url, sizeof(url), "%s%s", base, path);
  struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
  h = curl_slist_append(h, "Accept: application/json");
  if (token) {
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
    h = curl_slist_append(h, auth);
  }
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  if (body)
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK)
    print_error("%s %s: %s\n", method, url, curl_easy_strerror(rc));
  assert_int_equal(rc, CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_error_t e;
  r->json = r->body_len ? json_loadb(r->body, r->body_len, 0, &e) : NULL;
  return r;
}

static void reply_free(reply_t *r) {
  json_decref(r->json);
  free(r);
}

static const char *str(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "(none)";
}

/* Asserts reply r is Vast's error shape {"success": false, "error", "msg"} with this status. */
static void assert_error(const reply_t *r, long status, const char *error) {
  if (r->status != status || r->json == NULL)
    print_error("wanted %ld %s, got %ld: %s\n", status, error, r->status, r->body);
  assert_int_equal(r->status, status);
  assert_true(json_is_false(json_object_get(r->json, "success")));
  assert_string_equal(str(r->json, "error"), error);
  assert_true(json_is_string(json_object_get(r->json, "msg")));
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct ctx {
  sim_t sim;
  char api[128];   /* where API calls go: the emulator's root URL, or Prism in front of it */
  const char *end; /* what ends every API path: "/" as Vast's CLI writes them, or "" */
  char dir[64];    /* keys and known_hosts */
  char tag[48];    /* the labels' prefix (and so the nodes' tags) */
  char pub[512], host_pub[512], env[4096];
} ctx_t;

static void read_file(const char *path, char *out, size_t n) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t len = fread(out, 1, n - 1, fp);
  out[len] = '\0';
  fclose(fp);
}

/* The base64 of a file's text, without line breaks. */
static void base64_file(const char *path, char *out, size_t n) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "base64 -w0 %s", path);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, n - 1, p);
  out[len] = '\0';
  assert_int_equal(pclose(p), 0);
}

static void ctx_init(ctx_t *c, const char *what, const char *const *flags) {
  memset(c, 0, sizeof(*c));
  sim_start(&c->sim, TOKEN, flags);
  snprintf(c->api, sizeof(c->api), "%s", c->sim.url);
  c->end = "/";
  snprintf(c->dir, sizeof(c->dir), "/tmp/kite-test-vast-XXXXXX");
  assert_non_null(mkdtemp(c->dir));
  snprintf(c->tag, sizeof(c->tag), "kite-t%d-%s", (int)getpid(), what);
  char cmd[512], path[128];
  snprintf(cmd, sizeof(cmd),
           "ssh-keygen -q -t ed25519 -N '' -C kite -f %s/id && "
           "ssh-keygen -q -t ed25519 -N '' -C host -f %s/host",
           c->dir, c->dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof(path), "%s/id.pub", c->dir);
  read_file(path, c->pub, sizeof(c->pub));
  c->pub[strcspn(c->pub, "\r\n")] = '\0';
  snprintf(path, sizeof(path), "%s/host.pub", c->dir);
  read_file(path, c->host_pub, sizeof(c->host_pub));
  c->host_pub[strcspn(c->host_pub, "\r\n")] = '\0';
  /* The host key as kite's onstart takes it: the files' text in base64, in env. */
  char priv64[2048], pub64[512];
  snprintf(path, sizeof(path), "%s/host", c->dir);
  base64_file(path, priv64, sizeof(priv64));
  snprintf(path, sizeof(path), "%s/host.pub", c->dir);
  base64_file(path, pub64, sizeof(pub64));
  snprintf(c->env, sizeof(c->env),
           "-e KITE_SSH_HOST_KEY=%s -e KITE_SSH_HOST_KEY_PUB=%s -e OTHER=1 -p 8000:8000", priv64,
           pub64);
}

static void ctx_done(ctx_t *c) {
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
  assert_int_equal(system(cmd), 0);
}

/* An API path: fmt, then the path's end ("/" or ""). */
static const char *path(ctx_t *c, char *out, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const char *path(ctx_t *c, char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(out, n, fmt, ap);
  va_end(ap);
  char *q = strchr(out, '?');
  if (q) { /* the end goes before the query */
    char query[512];
    snprintf(query, sizeof(query), "%s", q);
    snprintf(q, n - (size_t)(q - out), "%s%s", c->end, query);
  } else {
    snprintf(out + len, n - (size_t)len, "%s", c->end);
  }
  return out;
}

static reply_t *api(ctx_t *c, const char *method, const char *p, const char *body) {
  return call(c->api, TOKEN, method, p, body);
}

static void sim_faults(ctx_t *c, const char *json) {
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults", json));
}

/* ---- offers --------------------------------------------------------------------------------- */

static json_t *search(ctx_t *c, const char *body) {
  char p[64];
  reply_t *r = api(c, "POST", path(c, p, sizeof(p), "/api/v0/bundles"), body);
  if (r->status != 200)
    print_error("search %s: %ld %s\n", body, r->status, r->body);
  assert_int_equal(r->status, 200);
  json_t *offers = json_incref(json_object_get(r->json, "offers"));
  assert_true(json_is_array(offers));
  reply_free(r);
  return offers;
}

static bool has_offer(json_t *offers, json_int_t id) {
  for (size_t i = 0; i < json_array_size(offers); i++)
    if (json_integer_value(json_object_get(json_array_get(offers, i), "id")) == id)
      return true;
  return false;
}

/* Filters on each operator, the defaults (verified, rentable), ordering and limit. The
 * description gives order minItems 2 and maxItems 2 beside its items, so as written it wants
 * exactly two [field, direction] pairs (the emulator takes any number): these send two. */
static void offers_searched(ctx_t *c) {
  json_t *o = search(c, "{\"gpu_name\": {\"eq\": \"RTX 4090\"}}");
  assert_true(json_array_size(o) >= 2);
  for (size_t i = 0; i < json_array_size(o); i++)
    assert_string_equal(str(json_array_get(o, i), "gpu_name"), "RTX 4090");
  json_decref(o);

  /* One GPU, on-demand, cheapest first: the RTX 3090 at $0.20 leads. */
  o = search(c, "{\"num_gpus\": {\"eq\": 1}, \"type\": \"ondemand\", \"rentable\": {\"eq\": "
                "true}, \"order\": [[\"dph_total\", \"asc\"], [\"reliability\", \"desc\"]]}");
  assert_true(json_array_size(o) >= 3);
  json_t *first = json_array_get(o, 0);
  assert_int_equal(json_integer_value(json_object_get(first, "id")), ASK_3090);
  assert_string_equal(str(first, "gpu_name"), "RTX 3090");
  assert_true(json_number_value(json_object_get(first, "dph_total")) == 0.20);
  assert_true(json_number_value(json_object_get(first, "min_bid")) == 0.08);
  double last = 0;
  for (size_t i = 0; i < json_array_size(o); i++) {
    json_t *x = json_array_get(o, i);
    double d = json_number_value(json_object_get(x, "dph_total"));
    assert_true(d >= last);
    last = d;
    assert_int_equal(json_integer_value(json_object_get(x, "num_gpus")), 1);
    assert_true(json_is_true(json_object_get(x, "rentable")));
    assert_true(json_is_false(json_object_get(x, "rented")));
    assert_string_equal(str(x, "verification"), "verified");
    /* The fields a provider reads. */
    static const char *const fields[] = {"machine_id", "gpu_ram",     "cpu_cores", "cpu_ram",
                                         "disk_space", "reliability", "inet_down", "inet_up"};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
      assert_true(json_is_number(json_object_get(x, fields[f])));
    const char *geo = str(x, "geolocation");
    assert_non_null(strstr(geo, ", "));
    assert_int_equal(strlen(strstr(geo, ", ") + 2), 2);
  }
  assert_false(has_offer(o, ASK_UNVERIFIED)); /* verified by default */
  assert_false(has_offer(o, ASK_RENTED_OUT)); /* rentable by default */
  json_decref(o);

  /* in with Vast's CLI spelling, a country, numbers, a limit; descending. */
  o = search(c,
             "{\"gpu_name\": {\"in\": [\"RTX_3090\", \"RTX_4090\"]}, \"geolocation\": {\"in\": "
             "[\"US\"]}, \"order\": [[\"dph_total\", \"desc\"], [\"id\", \"asc\"]], \"limit\": 2}");
  assert_int_equal(json_array_size(o), 2);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 0), "id")), ASK_4090);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 1), "id")), ASK_3090);
  assert_string_equal(str(json_array_get(o, 0), "geolocation"), "Texas, US");
  json_decref(o);
  o = search(c, "{\"dph_total\": {\"gte\": 1.0, \"lt\": 2.0}, \"reliability\": {\"gt\": 0.99}, "
                "\"geolocation\": {\"notin\": [\"US\", \"CA\"]}}");
  assert_int_equal(json_array_size(o), 1);
  json_t *a100 = json_array_get(o, 0);
  assert_int_equal(json_integer_value(json_object_get(a100, "id")), ASK_A100);
  assert_string_equal(str(a100, "gpu_name"), "A100 SXM4");
  assert_true(json_number_value(json_object_get(a100, "dph_total")) == 1.10);
  assert_true(json_number_value(json_object_get(a100, "min_bid")) == 0.45);
  json_decref(o);
  o = search(c, "{\"gpu_name\": {\"eq\": \"H100 SXM\"}, \"num_gpus\": {\"gte\": 8}}");
  assert_int_equal(json_array_size(o), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 0), "num_gpus")), 8);
  json_decref(o);
  /* neq, the unverified offer on asking for it, and a bid search priced at the minimum bid. */
  o = search(c, "{\"verified\": {\"eq\": false}, \"num_gpus\": {\"neq\": 8}}");
  assert_int_equal(json_array_size(o), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(o, 0), "id")), ASK_UNVERIFIED);
  json_decref(o);
  o = search(c, "{\"type\": \"bid\", \"gpu_name\": {\"eq\": \"RTX 4090\"}, \"num_gpus\": {\"eq\": "
                "1}}");
  assert_int_equal(json_array_size(o), 1);
  assert_true(json_number_value(json_object_get(json_array_get(o, 0), "dph_total")) == 0.15);
  assert_true(json_is_true(json_object_get(json_array_get(o, 0), "is_bid")));
  json_decref(o);
}

/* ---- keys and instances --------------------------------------------------------------------- */

/* POST /api/v0/ssh/ with kite's key; it is listed with its id. */
static uint64_t add_key(ctx_t *c) {
  char p[64], body[768];
  snprintf(body, sizeof(body), "{\"ssh_key\": \"%s\"}", c->pub);
  reply_t *r = api(c, "POST", path(c, p, sizeof(p), "/api/v0/ssh"), body);
  if (r->status != 200)
    print_error("ssh: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 200);
  assert_true(json_is_true(json_object_get(r->json, "success")));
  json_t *k = json_object_get(r->json, "key");
  uint64_t id = (uint64_t)json_integer_value(json_object_get(k, "id"));
  assert_true(id > 0);
  assert_string_equal(str(k, "public_key"), c->pub);
  reply_free(r);
  r = api(c, "GET", path(c, p, sizeof(p), "/api/v0/ssh"), NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_is_array(r->json));
  bool found = false;
  for (size_t i = 0; i < json_array_size(r->json); i++) {
    json_t *x = json_array_get(r->json, i);
    if ((uint64_t)json_integer_value(json_object_get(x, "id")) == id) {
      found = true;
      assert_string_equal(str(x, "key"), c->pub);
    }
  }
  assert_true(found);
  reply_free(r);
  return id;
}

static void delete_key(ctx_t *c, uint64_t id) {
  char p[64];
  reply_t *r =
      api(c, "DELETE", path(c, p, sizeof(p), "/api/v0/ssh/%llu", (unsigned long long)id), NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_is_true(json_object_get(r->json, "success")));
  reply_free(r);
  r = api(c, "DELETE", path(c, p, sizeof(p), "/api/v0/ssh/%llu", (unsigned long long)id), NULL);
  assert_error(r, 400, "no_ssh_key");
  reply_free(r);
}

/* PUT /api/v0/asks/{ask}/ with the label, kite's env and extra fields ("" or ", \"k\": v…");
 * the new contract's id, or 0 with *out holding the refusal. */
static uint64_t create(ctx_t *c, long ask, const char *label, const char *extra, reply_t **out) {
  char p[64], body[8192], full[96];
  snprintf(full, sizeof(full), "%s-%s", c->tag, label);
  snprintf(body, sizeof(body),
           "{\"image\": \"vastai/base-image:@vastai-automatic-tag\", \"label\": \"%s\", \"disk\": "
           "16, \"runtype\": \"ssh_direct\", \"env\": \"%s\", \"onstart\": \"echo hi\"%s}",
           full, c->env, extra ? extra : "");
  reply_t *r = api(c, "PUT", path(c, p, sizeof(p), "/api/v0/asks/%ld", ask), body);
  uint64_t id = 0;
  if (r->status == 200) {
    assert_true(json_is_true(json_object_get(r->json, "success")));
    id = (uint64_t)json_integer_value(json_object_get(r->json, "new_contract"));
    assert_true(id > 0);
  }
  if (out)
    *out = r;
  else
    reply_free(r);
  return id;
}

/* GET /api/v0/instances/{id}/ (through base: the API's, or the emulator's own). */
static json_t *show(ctx_t *c, const char *base, uint64_t id, long *status) {
  char p[64];
  reply_t *r = call(base, TOKEN, "GET",
                    path(c, p, sizeof(p), "/api/v0/instances/%llu", (unsigned long long)id), NULL);
  *status = r->status;
  json_t *j = json_incref(json_object_get(r->json, "instances"));
  /* An id the account does not have: {"instances": null}, as Vast answers. */
  if (r->status == 200 && json_is_null(j))
    *status = 404;
  else
    assert_true(r->status != 200 || json_is_object(j));
  reply_free(r);
  return j;
}

/* Polls until actual_status is want (every status seen goes into seen, comma-joined); fails on
 * "running" when want is not it. */
static json_t *wait_status(ctx_t *c, uint64_t id, const char *want, char *seen, size_t n) {
  seen[0] = '\0';
  for (int i = 0; i < 600; i++) {
    long st;
    json_t *s = show(c, c->api, id, &st);
    assert_int_equal(st, 200);
    const char *status = str(s, "actual_status");
    const char *lastc = strrchr(seen, ',');
    if (strcmp(lastc ? lastc + 1 : seen, status) != 0)
      snprintf(seen + strlen(seen), n - strlen(seen), "%s%s", seen[0] ? "," : "", status);
    if (strcmp(status, want) == 0)
      return s;
    json_decref(s);
    usleep(50000);
  }
  fail_msg("instance %llu never was %s: %s", (unsigned long long)id, want, seen);
  return NULL;
}

static void assert_fields(json_t *s, const char *actual, const char *intended, const char *cur,
                          const char *next) {
  if (strcmp(str(s, "actual_status"), actual) || strcmp(str(s, "intended_status"), intended) ||
      strcmp(str(s, "cur_state"), cur) || strcmp(str(s, "next_state"), next))
    print_error("instance: %s\n", json_dumps(s, JSON_COMPACT));
  assert_string_equal(str(s, "actual_status"), actual);
  assert_string_equal(str(s, "intended_status"), intended);
  assert_string_equal(str(s, "cur_state"), cur);
  assert_string_equal(str(s, "next_state"), next);
}

/* ssh to address:port with kite's key, verifying the host key handed over in env. */
static int ssh_run(ctx_t *c, const char *address, const char *port, char *out, size_t n) {
  char kh[128], cmd[1024];
  snprintf(kh, sizeof(kh), "%s/known_hosts", c->dir);
  FILE *fp = fopen(kh, "w");
  assert_non_null(fp);
  fprintf(fp, "[%s]:%s %s\n", address, port, c->host_pub);
  fclose(fp);
  snprintf(cmd, sizeof(cmd),
           "ssh -i %s/id -p %s -o BatchMode=yes -o StrictHostKeyChecking=yes "
           "-o UserKnownHostsFile=%s -o ConnectTimeout=10 -o LogLevel=ERROR %s@%s "
           "'echo kite-was-here' 2>&1",
           c->dir, port, kh, kite_local_login_user(), address);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, n - 1, p);
  out[len] = '\0';
  return pclose(p);
}

/* The instances /api/v1/instances/ finds with select_filters (as a query value). */
static json_t *list_v1(ctx_t *c, const char *filters_q, const char *extra_q) {
  char p[512];
  reply_t *r = api(c, "GET",
                   path(c, p, sizeof(p), "/api/v1/instances?select_filters=%s%s", filters_q,
                        extra_q ? extra_q : ""),
                   NULL);
  if (r->status != 200)
    print_error("v1: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 200);
  assert_true(json_is_true(json_object_get(r->json, "success")));
  json_t *j = json_incref(r->json);
  reply_free(r);
  return j;
}

/* DELETE; while it is still listed it is exited and stopped; then it is gone (shown null), absent
 * from the lists, and so is every process of its node (of every node labelled label, unless
 * label is NULL). */
static void destroy_and_wait(ctx_t *c, uint64_t id, const char *label) {
  char p[64], full[96];
  reply_t *r = api(c, "DELETE",
                   path(c, p, sizeof(p), "/api/v0/instances/%llu", (unsigned long long)id), NULL);
  if (r->status != 200)
    print_error("destroy: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 200);
  assert_true(json_is_true(json_object_get(r->json, "success")));
  reply_free(r);
  bool gone = false;
  for (int i = 0; i < 400 && !gone; i++) {
    long st;
    json_t *s = show(c, c->sim.url, id, &st);
    gone = st == 404;
    if (!gone) {
      assert_int_equal(st, 200);
      assert_fields(s, "exited", "stopped", "stopped", "stopped");
      usleep(20000);
    }
    json_decref(s);
  }
  assert_true(gone);
  snprintf(full, sizeof(full), "%s-%s", c->tag, label ? label : "");
  assert_true(label == NULL || kite_local_count_tagged(full) == 0);
  char q[64];
  snprintf(q, sizeof(q), "%%7B%%22id%%22%%3A%%7B%%22eq%%22%%3A%llu%%7D%%7D",
           (unsigned long long)id);
  json_t *l = list_v1(c, q, NULL);
  assert_int_equal(json_array_size(json_object_get(l, "instances")), 0);
  json_decref(l);
  r = call(c->sim.url, TOKEN, "GET", "/api/v0/instances/", NULL);
  assert_int_equal(r->status, 200);
  json_t *all = json_object_get(r->json, "instances");
  for (size_t i = 0; i < json_array_size(all); i++)
    assert_int_not_equal(json_integer_value(json_object_get(json_array_get(all, i), "id")),
                         (json_int_t)id);
  reply_free(r);
}

/* ---- the scenarios (also run through Prism) ------------------------------------------------- */

/* On-demand: loading, then running; SSH at public_ipaddr:HostPort with the pinned host key;
 * found by label; billed at dph_total; destroyed. */
static void on_demand(ctx_t *c) {
  reply_t *r = NULL;
  uint64_t id = create(c, ASK_4090, "od", NULL, &r);
  if (id == 0)
    print_error("create: %ld %s\n", r->status, r->body);
  assert_true(id > 0);
  reply_free(r);
  char seen[256], full[96];
  json_t *s = wait_status(c, id, "running", seen, sizeof(seen));
  if (strcmp(seen, "loading,running") != 0)
    fail_msg("statuses seen: %s", seen);
  assert_fields(s, "running", "running", "running", "running");
  snprintf(full, sizeof(full), "%s-od", c->tag);
  assert_string_equal(str(s, "label"), full);
  assert_int_equal(json_integer_value(json_object_get(s, "id")), (json_int_t)id);
  assert_false(json_is_true(json_object_get(s, "is_bid")));
  assert_true(json_number_value(json_object_get(s, "dph_total")) == 0.35);
  assert_string_equal(str(s, "gpu_name"), "RTX 4090");
  assert_int_equal(json_integer_value(json_object_get(s, "num_gpus")), 1);
  assert_string_equal(str(s, "geolocation"), "Texas, US");
  assert_string_equal(str(s, "image_uuid"), "vastai/base-image:@vastai-automatic-tag");
  assert_non_null(strstr(str(s, "status_msg"), "running"));
  assert_true(json_is_number(json_object_get(s, "start_date")));
  assert_true(json_is_integer(json_object_get(s, "machine_id")));
  assert_true(json_is_integer(json_object_get(s, "ssh_port")));
  assert_true(json_is_integer(json_object_get(s, "direct_port_start")));
  assert_true(json_is_integer(json_object_get(s, "direct_port_end")));
  char address[64], port[16];
  snprintf(address, sizeof(address), "%s", str(s, "public_ipaddr"));
  assert_int_equal(strncmp(address, "127.", 4), 0);
  assert_string_equal(str(s, "ssh_host"), address);
  json_t *p22 = json_array_get(json_object_get(json_object_get(s, "ports"), "22/tcp"), 0);
  assert_string_equal(str(p22, "HostIp"), "0.0.0.0");
  snprintf(port, sizeof(port), "%s", str(p22, "HostPort"));
  assert_string_equal(port, "2222");
  json_decref(s);

  char out[1024];
  int rc = ssh_run(c, address, port, out, sizeof(out));
  if (rc != 0 || strstr(out, "kite-was-here") == NULL)
    print_error("ssh: %d %s\n", rc, out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "kite-was-here"));
  assert_true(kite_local_count_tagged(full) > 0);

  /* By label, with chosen columns. */
  char q[256];
  snprintf(q, sizeof(q), "%%7B%%22label%%22%%3A%%7B%%22eq%%22%%3A%%22%s%%22%%7D%%7D", full);
  json_t *l = list_v1(c, q, "&select_cols=%5B%22id%22%2C%22actual_status%22%5D&limit=10");
  json_t *items = json_object_get(l, "instances");
  assert_int_equal(json_array_size(items), 1);
  assert_int_equal(json_integer_value(json_object_get(l, "total_instances")), 1);
  assert_true(json_is_null(json_object_get(l, "next_token")));
  assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 0), "id")),
                   (json_int_t)id);
  assert_string_equal(str(json_array_get(items, 0), "actual_status"), "running");
  assert_null(json_object_get(json_array_get(items, 0), "label"));
  json_decref(l);

  /* Billed by the second at dph_total. */
  json_t *bill = sim_call(&c->sim, "GET", "/_sim/bill", NULL);
  json_t *line = NULL;
  for (size_t i = 0; i < json_array_size(json_object_get(bill, "machines")); i++) {
    json_t *x = json_array_get(json_object_get(bill, "machines"), i);
    if (json_integer_value(json_object_get(x, "id")) == (json_int_t)id)
      line = x;
  }
  assert_non_null(line);
  assert_string_equal(str(line, "cloud"), "vastai");
  assert_true(json_number_value(json_object_get(line, "price_hourly")) == 0.35);
  assert_true(json_is_false(json_object_get(line, "spot")));
  json_decref(bill);

  destroy_and_wait(c, id, "od");
}

/* Interruptible (a bid): is_bid, priced at the bid; outbid: stopped with its node's processes
 * gone, and told apart from a crash by its fields. */
static void interruptible_outbid(ctx_t *c) {
  uint64_t id = create(c, ASK_4090, "bid", ", \"price\": 0.2", NULL);
  assert_true(id > 0);
  char seen[256], full[96], cp[96];
  json_t *s = wait_status(c, id, "running", seen, sizeof(seen));
  assert_true(json_is_true(json_object_get(s, "is_bid")));
  assert_true(json_number_value(json_object_get(s, "dph_total")) == 0.2);
  json_decref(s);
  snprintf(full, sizeof(full), "%s-bid", c->tag);
  assert_true(kite_local_count_tagged(full) > 0);
  snprintf(cp, sizeof(cp), "/_sim/vastai/instances/%llu/outbid", (unsigned long long)id);
  json_decref(sim_call(&c->sim, "POST", cp, NULL));
  s = wait_status(c, id, "exited", seen, sizeof(seen));
  assert_fields(s, "exited", "running", "stopped", "stopped");
  assert_non_null(strstr(str(s, "status_msg"), "outbid"));
  json_decref(s);
  for (int i = 0; i < 200 && kite_local_count_tagged(full) > 0; i++)
    usleep(20000);
  assert_int_equal(kite_local_count_tagged(full), 0);
  /* It stays so: listed, not running. */
  long st;
  s = show(c, c->api, id, &st);
  assert_int_equal(st, 200);
  assert_fields(s, "exited", "running", "stopped", "stopped");
  json_decref(s);
  json_t *bill = sim_call(&c->sim, "GET", "/_sim/bill", NULL);
  json_t *line = json_array_get(json_object_get(bill, "machines"), 0);
  for (size_t i = 0; i < json_array_size(json_object_get(bill, "machines")); i++)
    if (json_integer_value(json_object_get(json_array_get(json_object_get(bill, "machines"), i),
                                           "id")) == (json_int_t)id)
      line = json_array_get(json_object_get(bill, "machines"), i);
  assert_true(json_number_value(json_object_get(line, "price_hourly")) == 0.2);
  assert_true(json_is_true(json_object_get(line, "spot")));
  json_decref(bill);
  destroy_and_wait(c, id, "bid");
}

/* An offer whose launches end "unknown": loading, then unknown, never running, no node left;
 * undone, the next launch runs. */
static void offer_failure(ctx_t *c) {
  char cp[96], seen[256], full[96];
  snprintf(cp, sizeof(cp), "/_sim/vastai/offers/%d/fail", ASK_3090);
  json_decref(sim_call(&c->sim, "POST", cp, "{\"status\": \"unknown\"}"));
  uint64_t id = create(c, ASK_3090, "fail", NULL, NULL);
  assert_true(id > 0);
  json_t *s = wait_status(c, id, "unknown", seen, sizeof(seen));
  if (strcmp(seen, "loading,unknown") != 0)
    fail_msg("statuses seen: %s", seen);
  assert_fields(s, "unknown", "running", "running", "running");
  json_decref(s);
  snprintf(full, sizeof(full), "%s-fail", c->tag);
  assert_int_equal(kite_local_count_tagged(full), 0);
  usleep(500000);
  long st;
  s = show(c, c->api, id, &st);
  assert_string_equal(str(s, "actual_status"), "unknown");
  json_decref(s);
  destroy_and_wait(c, id, "fail");
  json_decref(sim_call(&c->sim, "POST", cp, "{\"status\": null}"));
  id = create(c, ASK_3090, "fixed", NULL, NULL);
  json_decref(wait_status(c, id, "running", seen, sizeof(seen)));
  destroy_and_wait(c, id, "fixed");
}

/* Refusals in Vast's shapes that the description defines. */
static void refusals(ctx_t *c) {
  char p[64];
  reply_t *r =
      call(c->api, "not-the-key", "GET", path(c, p, sizeof(p), "/api/v0/instances/1"), NULL);
  assert_error(r, 401, "auth_error");
  reply_free(r);
  r = call(c->api, "not-the-key", "PUT", path(c, p, sizeof(p), "/api/v0/asks/%d", ASK_4090),
           "{\"image\": \"x\"}");
  assert_error(r, 401, "auth_error");
  reply_free(r);
  /* onstart over 4048 characters. */
  char extra[4200];
  snprintf(extra, sizeof(extra), ", \"onstart\": \"%04049d\"", 0);
  r = NULL;
  assert_int_equal(create(c, ASK_4090, "long", extra, &r), 0);
  assert_error(r, 400, "invalid_args");
  assert_int_equal(json_integer_value(json_object_get(r->json, "ask_id")), ASK_4090);
  reply_free(r);
  snprintf(extra, sizeof(extra), ", \"onstart\": \"%04048d\", \"price\": 0.1", 0);
  assert_int_equal(create(c, ASK_4090, "low", extra, &r), 0); /* 4048 is fine; the bid is not */
  assert_error(r, 400, "invalid_price");
  reply_free(r);
  /* An offer that is not there, one rented out. */
  assert_int_equal(create(c, 99, "none", NULL, &r), 0);
  assert_int_equal(r->status, 404);
  assert_non_null(strstr(str(r->json, "msg"), "no_such_ask"));
  reply_free(r);
  assert_int_equal(create(c, ASK_RENTED_OUT, "none", NULL, &r), 0);
  assert_int_equal(r->status, 404);
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "vastai_instances"), 0);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_offers_search_filters_and_order(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "offers", NULL);
  offers_searched(c);
  reply_t *r = api(c, "POST", "/api/v0/bundles/", "{\"num_gpus\": {\"about\": 1}}");
  assert_int_equal(r->status, 400);
  assert_string_equal(str(r->json, "error"), "invalid_request");
  reply_free(r);
  ctx_done(c);
  free(c);
}

static void test_on_demand_lifecycle(void **state) {
  (void)state;
  static const char *const flags[] = {"--provision-ms", "800", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "life", flags);
  uint64_t key = add_key(c);
  on_demand(c);
  delete_key(c, key);
  ctx_done(c);
  free(c);
}

static void test_interruptible_outbid(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "outbid", NULL);
  add_key(c);
  interruptible_outbid(c);
  /* An on-demand instance is not outbid. */
  uint64_t id = create(c, ASK_4090, "od", NULL, NULL);
  char cp[96];
  snprintf(cp, sizeof(cp), "/_sim/vastai/instances/%llu/outbid", (unsigned long long)id);
  json_t *j = sim_call(&c->sim, "POST", cp, NULL);
  assert_string_equal(str(j, "id"), "bad_request");
  json_decref(j);
  destroy_and_wait(c, id, "od");
  ctx_done(c);
  free(c);
}

static void test_offer_failure_never_runs(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "fail", NULL);
  add_key(c);
  offer_failure(c);
  ctx_done(c);
  free(c);
}

/* A crash (the generic kill, kept listed) is offline, not exited: no outbid in status_msg. */
static void test_crashed_instance_is_offline(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "crash", NULL);
  add_key(c);
  uint64_t id = create(c, ASK_4090, "crash", ", \"price\": 0.15", NULL);
  char seen[256], cp[96];
  json_decref(wait_status(c, id, "running", seen, sizeof(seen)));
  snprintf(cp, sizeof(cp), "/_sim/machines/%llu/kill", (unsigned long long)id);
  json_decref(sim_call(&c->sim, "POST", cp, "{\"vanish\": false}"));
  json_t *s = wait_status(c, id, "offline", seen, sizeof(seen));
  assert_fields(s, "offline", "running", "running", "running");
  assert_null(strstr(str(s, "status_msg"), "outbid"));
  json_decref(s);
  destroy_and_wait(c, id, "crash");
  ctx_done(c);
  free(c);
}

static void test_refusals_in_vast_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "refuse", NULL);
  /* No key on the account yet. */
  reply_t *r = NULL;
  assert_int_equal(create(c, ASK_4090, "nokey", NULL, &r), 0);
  assert_error(r, 400, "no_ssh_key_for_vm");
  reply_free(r);
  r = api(c, "POST", "/api/v0/ssh/", "{\"ssh_key\": \"\"}");
  assert_error(r, 400, "no_ssh_key");
  reply_free(r);
  r = call(c->api, NULL, "GET", "/api/v0/ssh/", NULL);
  assert_error(r, 401, "auth_error");
  reply_free(r);
  r = call(c->api, NULL, "POST", "/api/v0/bundles/", "{}");
  assert_error(r, 401, "auth_error");
  reply_free(r);
  add_key(c);
  refusals(c);
  /* Paths with and without the final '/'; an id that never was; a bad one. */
  r = api(c, "GET", "/api/v0/instances/12", NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_is_null(json_object_get(r->json, "instances")));
  reply_free(r);
  r = api(c, "GET", "/api/v0/instances/12/", NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_is_null(json_object_get(r->json, "instances")));
  reply_free(r);
  r = api(c, "DELETE", "/api/v0/instances/12", NULL);
  assert_error(r, 404, "not_found");
  reply_free(r);
  r = api(c, "GET", "/api/v0/instances/abc/", NULL);
  assert_error(r, 400, "invalid_args");
  reply_free(r);
  r = api(c, "POST", "/api/v0/bundles", "{\"limit\": 1}");
  assert_int_equal(r->status, 200);
  assert_int_equal(json_array_size(json_object_get(r->json, "offers")), 1);
  reply_free(r);
  r = api(c, "GET", "/api/v1/instances?select_filters=%7B%22dph_total%22%3A%7B%22lt%22%3A1%7D%7D",
          NULL);
  assert_int_equal(r->status, 400);
  assert_string_equal(str(r->json, "error"), "invalid_request");
  reply_free(r);
  r = api(c, "GET", "/api/v1/instances/?after_token=bm90LWEtdG9rZW4%3D", NULL);
  assert_int_equal(r->status, 400);
  assert_string_equal(str(r->json, "error"), "invalid_token");
  reply_free(r);
  /* No capacity: 404 no_such_ask (410 with cancel_unavail); then the account's limit. */
  sim_faults(c, "{\"no_capacity\": true}");
  assert_int_equal(create(c, ASK_A100, "cap", ", \"cancel_unavail\": false", &r), 0);
  assert_int_equal(r->status, 404);
  assert_non_null(strstr(str(r->json, "msg"), "no_such_ask"));
  reply_free(r);
  assert_int_equal(create(c, ASK_A100, "cap", ", \"cancel_unavail\": true", &r), 0);
  assert_error(r, 410, "no_such_ask");
  reply_free(r);
  sim_faults(c, "{\"no_capacity\": false, \"droplet_limit\": 1}");
  uint64_t one = create(c, ASK_A100, "one", NULL, NULL);
  assert_true(one > 0);
  assert_int_equal(create(c, ASK_A100, "two", NULL, &r), 0);
  assert_error(r, 400, "invalid_args");
  reply_free(r);
  destroy_and_wait(c, one, "one");
  ctx_done(c);
  free(c);
}

/* Listing: v0 every instance, v1 paged by next_token (25 at most), filtered, label_counts. */
static void test_lists_and_pages(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "list", NULL);
  add_key(c);
  uint64_t ids[3];
  ids[0] = create(c, ASK_3090, "a", NULL, NULL);
  ids[1] = create(c, ASK_3090, "b", NULL, NULL);
  ids[2] = create(c, ASK_4090, "b", NULL, NULL); /* a label used twice */
  reply_t *r = api(c, "GET", "/api/v0/instances", NULL);
  assert_int_equal(r->status, 200);
  assert_int_equal(json_array_size(json_object_get(r->json, "instances")), 3);
  reply_free(r);
  json_t *p1 = list_v1(c, "%7B%7D",
                       "&limit=2&order_by=%5B%7B%22col%22%3A%22id%22%2C%22dir%22%3A"
                       "%22desc%22%7D%5D");
  assert_int_equal(json_array_size(json_object_get(p1, "instances")), 2);
  assert_int_equal(json_integer_value(json_object_get(p1, "instances_found")), 2);
  assert_int_equal(json_integer_value(json_object_get(p1, "total_instances")), 3);
  assert_int_equal(json_integer_value(
                       json_object_get(json_array_get(json_object_get(p1, "instances"), 0), "id")),
                   (json_int_t)ids[2]);
  char label_b[96];
  snprintf(label_b, sizeof(label_b), "%s-b", c->tag);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(p1, "label_counts"), label_b)), 2);
  char *next = curl_easy_escape(NULL, str(p1, "next_token"), 0);
  char q[512];
  snprintf(q, sizeof(q),
           "&limit=2&order_by=%%5B%%7B%%22col%%22%%3A%%22id%%22%%2C%%22dir%%22%%3A%%22desc%%22%%7D"
           "%%5D&after_token=%s",
           next);
  curl_free(next);
  json_t *p2 = list_v1(c, "%7B%7D", q);
  assert_int_equal(json_array_size(json_object_get(p2, "instances")), 1);
  assert_int_equal(json_integer_value(
                       json_object_get(json_array_get(json_object_get(p2, "instances"), 0), "id")),
                   (json_int_t)ids[0]);
  assert_true(json_is_null(json_object_get(p2, "next_token")));
  json_decref(p1);
  json_decref(p2);
  json_t *g = list_v1(c, "%7B%22gpu_name%22%3A%7B%22in%22%3A%5B%22RTX%204090%22%5D%7D%7D", NULL);
  assert_int_equal(json_array_size(json_object_get(g, "instances")), 1);
  json_decref(g);
  destroy_and_wait(c, ids[0], "a");
  destroy_and_wait(c, ids[1], NULL); /* ids[2] has the same label */
  destroy_and_wait(c, ids[2], "b");
  ctx_done(c);
  free(c);
}

/* The fault layer answers in Vast's shapes: 429 {"detail"} with Retry-After, 500 the error. */
static void test_injected_faults_in_vast_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "faults", NULL);
  sim_faults(c, "{\"next\": [\"429\", \"500\"]}");
  reply_t *r = api(c, "GET", "/api/v0/instances/", NULL);
  assert_int_equal(r->status, 429);
  assert_non_null(strstr(str(r->json, "detail"), "API requests too frequent"));
  reply_free(r);
  r = api(c, "GET", "/api/v0/instances/", NULL);
  assert_error(r, 500, "server_error");
  reply_free(r);
  r = api(c, "GET", "/api/v0/instances/", NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "faults_injected"), 2);
  ctx_done(c);
  free(c);
}

static void test_requests_through_prism(void **state) {
  (void)state;
  const char *prism = prism_find();
  char spec[512];
  if (prism == NULL || !prism_spec("vastai.yaml", spec, sizeof(spec))) {
    print_message("skipped: Prism or the Vast.ai spec is not installed\n");
    skip();
  }
  static const char *const flags[] = {"--provision-ms", "800", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "prism", flags);
  char pspec[128], log_path[128];
  snprintf(pspec, sizeof(pspec), "%s/vastai.yaml", c->dir);
  prism_vastai_as_answered(spec, pspec);
  snprintf(log_path, sizeof(log_path), "%s/prism.log", c->dir);
  /* The description's paths carry /api/v0 (its server is https://console.vast.ai): Prism
   * forwards to the emulator's root. Its paths have no final '/', and Prism matches them only
   * so. */
  int pport = 0;
  pid_t pid = prism_start(prism, pspec, c->sim.url, log_path, &pport);
  snprintf(c->api, sizeof(c->api), "http://127.0.0.1:%d", pport);
  c->end = "";
  offers_searched(c);
  reply_t *r = NULL;
  assert_int_equal(create(c, ASK_4090, "nokey", NULL, &r), 0);
  assert_error(r, 400, "no_ssh_key_for_vm");
  reply_free(r);
  uint64_t key = add_key(c);
  refusals(c);
  on_demand(c);
  interruptible_outbid(c);
  offer_failure(c);
  delete_key(c, key);
  char *plog = prism_stop(pid, log_path);
  assert_non_null(plog);
  if (strstr(plog, "iolation") || strstr(plog, "Forwarding") == NULL)
    print_error("prism:\n%s\n", plog);
  assert_non_null(strstr(plog, "Forwarding"));
  assert_null(strstr(plog, "Violation"));
  assert_null(strstr(plog, "violation"));
  free(plog);
  ctx_done(c);
  free(c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_offers_search_filters_and_order),
      cmocka_unit_test(test_on_demand_lifecycle),
      cmocka_unit_test(test_interruptible_outbid),
      cmocka_unit_test(test_offer_failure_never_runs),
      cmocka_unit_test(test_crashed_instance_is_offline),
      cmocka_unit_test(test_refusals_in_vast_shapes),
      cmocka_unit_test(test_lists_and_pages),
      cmocka_unit_test(test_injected_faults_in_vast_shapes),
      cmocka_unit_test(test_requests_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
