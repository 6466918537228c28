/* kite-cloudsim's Verda front (/verda/v1/), driven over HTTP as a provider would drive Verda's
 * API: OAuth2 tokens (client credentials, refresh, expiry), the catalog without a token,
 * availability and locations, SSH keys and startup scripts, on-demand and spot instances from
 * ordered to running, real SSH to the node with the host key from the startup script, a spot
 * eviction and what becomes of its OS volume, a type whose launches fail, delete that completes
 * only when the node's processes are gone, the refusals and injected faults in Verda's shapes,
 * and the same requests through Stoplight Prism checking them against verda-openapi.json. */
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

#define SECRET "verda_cloudsim_secret_71c2"
#define CLIENT_ID "kite-cloudsim-client"

#include "cloudsim_client.h"
#include "prism.h"

/* ---- HTTP ----------------------------------------------------------------------------------- */

typedef struct reply {
  long status;
  char body[1 << 18];
  size_t body_len;
  char headers[8192];
  size_t headers_len;
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

static size_t on_header(char *p, size_t size, size_t n, void *data) {
  reply_t *r = data;
  size_t len = size * n;
  if (r->headers_len + len < sizeof(r->headers)) {
    memcpy(r->headers + r->headers_len, p, len);
    r->headers_len += len;
    r->headers[r->headers_len] = '\0';
  }
  return len;
}

/* One blocking request (test code) to base + path with the bearer token (or none). */
static reply_t *call(const char *base, const char *token, const char *method, const char *path,
                     const char *body) {
  reply_t *r = calloc(1, sizeof(*r));
  CURL *c = curl_easy_init();
  char url[2048], auth[256];
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
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK)
    print_error("%s %s: %s\n", method, url, curl_easy_strerror(rc));
  assert_int_equal(rc, CURLE_OK);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
  curl_slist_free_all(h);
  curl_easy_cleanup(c);
  json_error_t e;
  r->json = r->body_len ? json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &e) : NULL;
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

/* Asserts reply r is Verda's error shape {code, message} with this status. */
static void assert_error(const reply_t *r, long status, const char *code) {
  if (r->status != status || r->json == NULL)
    print_error("wanted %ld %s, got %ld: %s\n", status, code, r->status, r->body);
  assert_int_equal(r->status, status);
  assert_string_equal(str(r->json, "code"), code);
  assert_true(json_is_string(json_object_get(r->json, "message")));
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct ctx {
  sim_t sim;
  char direct[128]; /* the emulator's API base: http://127.0.0.1:PORT/verda */
  char api[128];    /* where API calls go: direct, or Prism (which adds nothing to the path) */
  char dir[64];     /* keys and known_hosts */
  char tag[48];     /* the kite-pool tags' prefix (and so the nodes' tags) */
  char token[256];
  char pub[512], host_pub[512], script[8192];
  char key_id[64], script_id[64];
  const char *os_policy; /* the on_spot_discontinue of the next creates' OS volume, or NULL */
} ctx_t;

static void read_file(const char *path, char *out, size_t n) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t len = fread(out, 1, n - 1, fp);
  out[len] = '\0';
  fclose(fp);
}

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
  sim_start(&c->sim, SECRET, flags);
  snprintf(c->direct, sizeof(c->direct), "%s/verda", c->sim.url);
  snprintf(c->api, sizeof(c->api), "%s", c->direct);
  snprintf(c->dir, sizeof(c->dir), "/tmp/kite-test-verda-XXXXXX");
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
  /* The host key as kite's startup script carries it: the files' text in base64, quoted. */
  char priv64[2048], pub64[512];
  snprintf(path, sizeof(path), "%s/host", c->dir);
  base64_file(path, priv64, sizeof(priv64));
  snprintf(path, sizeof(path), "%s/host.pub", c->dir);
  base64_file(path, pub64, sizeof(pub64));
  snprintf(c->script, sizeof(c->script),
           "#!/bin/sh\nset -e\nKITE_SSH_HOST_KEY='%s'\nKITE_SSH_HOST_KEY_PUB=%s\necho ready\n",
           priv64, pub64);
}

static void ctx_done(ctx_t *c) {
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
  assert_int_equal(system(cmd), 0);
}

static reply_t *api(ctx_t *c, const char *method, const char *p, const char *body) {
  return call(c->api, c->token, method, p, body);
}

static reply_t *direct(ctx_t *c, const char *method, const char *p, const char *body) {
  return call(c->direct, c->token, method, p, body);
}

/* The id a create answers: a JSON string. */
static void take_id(const reply_t *r, char *out, size_t n) {
  assert_true(json_is_string(r->json));
  snprintf(out, n, "%s", json_string_value(r->json));
  assert_int_equal(strlen(out), 36);
  assert_int_equal(out[14], '4'); /* a version 4 UUID */
}

static bool has_header(const reply_t *r, const char *text) {
  return strcasestr(r->headers, text) != NULL;
}

/* ---- tokens --------------------------------------------------------------------------------- */

static json_t *token_call(ctx_t *c, const char *body, long want) {
  reply_t *r = call(c->api, NULL, "POST", "/v1/oauth2/token", body);
  if (r->status != want)
    print_error("token: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, want);
  json_t *j = json_incref(r->json);
  reply_free(r);
  return j;
}

/* Client credentials, a wrong secret, a refresh: the token c uses from then on. */
static void tokens(ctx_t *c) {
  json_t *t = token_call(c,
                         "{\"grant_type\": \"client_credentials\", \"client_id\": \"" CLIENT_ID
                         "\", \"client_secret\": \"" SECRET "\"}",
                         200);
  assert_string_equal(str(t, "token_type"), "Bearer");
  assert_string_equal(str(t, "scope"), "cloud-api-v1");
  assert_true(json_integer_value(json_object_get(t, "expires_in")) > 0);
  assert_true(strlen(str(t, "access_token")) > 20);
  char refresh[256], body[512];
  snprintf(refresh, sizeof(refresh), "%s", str(t, "refresh_token"));
  json_decref(t);
  t = token_call(c,
                 "{\"grant_type\": \"client_credentials\", \"client_id\": \"" CLIENT_ID
                 "\", \"client_secret\": \"not-it\"}",
                 401);
  assert_string_equal(str(t, "code"), "unauthorized_request");
  assert_string_equal(str(t, "message"), "Invalid client id or client secret");
  json_decref(t);
  snprintf(body, sizeof(body), "{\"grant_type\": \"refresh_token\", \"refresh_token\": \"%s\"}",
           refresh);
  t = token_call(c, body, 200);
  snprintf(c->token, sizeof(c->token), "%s", str(t, "access_token"));
  assert_string_equal(str(t, "scope"), "cloud-api-v1");
  json_decref(t);
}

/* ---- catalog -------------------------------------------------------------------------------- */

static json_t *find_by(json_t *list, const char *field, const char *value) {
  for (size_t i = 0; i < json_array_size(list); i++)
    if (strcmp(str(json_array_get(list, i), field), value) == 0)
      return json_array_get(list, i);
  return NULL;
}

static bool in_list(json_t *list, const char *value) {
  for (size_t i = 0; i < json_array_size(list); i++)
    if (json_is_string(json_array_get(list, i)) &&
        strcmp(json_string_value(json_array_get(list, i)), value) == 0)
      return true;
  return false;
}

/* The instance types without a token (prices as strings), locations, availability. */
static void catalog(ctx_t *c) {
  reply_t *r = call(c->api, NULL, "GET", "/v1/instance-types?currency=usd", NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_array_size(r->json) >= 6);
  json_t *h100 = find_by(r->json, "instance_type", "1H100.80S.30V");
  assert_non_null(h100);
  assert_string_equal(str(h100, "price_per_hour"), "2.19");
  assert_string_equal(str(h100, "spot_price"), "0.73");
  assert_string_equal(str(h100, "currency"), "usd");
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(h100, "gpu"), "number_of_gpus")), 1);
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(h100, "gpu_memory"), "size_in_gigabytes")),
      80);
  assert_true(json_is_integer(json_object_get(json_object_get(h100, "cpu"), "number_of_cores")));
  assert_true(
      json_is_integer(json_object_get(json_object_get(h100, "memory"), "size_in_gigabytes")));
  json_t *cpu = find_by(r->json, "instance_type", "CPU.4V.16G");
  assert_int_equal(
      json_integer_value(json_object_get(json_object_get(cpu, "gpu"), "number_of_gpus")), 0);
  assert_string_equal(str(find_by(r->json, "instance_type", "1V100.6V"), "price_per_hour"), "0.39");
  reply_free(r);

  r = api(c, "GET", "/v1/locations", NULL);
  assert_int_equal(r->status, 200);
  assert_string_equal(str(find_by(r->json, "code", "FIN-01"), "country_code"), "FI");
  assert_string_equal(str(find_by(r->json, "code", "ICE-01"), "name"), "Iceland 1");
  assert_non_null(find_by(r->json, "code", "FIN-02"));
  reply_free(r);

  r = api(c, "GET", "/v1/instance-availability?is_spot=true", NULL);
  assert_int_equal(r->status, 200);
  assert_int_equal(json_array_size(r->json), 3);
  json_t *fin1 = json_object_get(find_by(r->json, "location_code", "FIN-01"), "availabilities");
  assert_true(in_list(fin1, "1V100.6V"));
  assert_false(in_list(fin1, "1A100.22V")); /* spot A100s only in FIN-02 */
  reply_free(r);
  r = api(c, "GET", "/v1/instance-availability?is_spot=false&location_code=FIN-01", NULL);
  assert_int_equal(json_array_size(r->json), 1);
  assert_true(in_list(json_object_get(json_array_get(r->json, 0), "availabilities"), "1A100.22V"));
  reply_free(r);
  r = api(c, "GET", "/v1/instance-availability/1A100.22V?is_spot=true&location_code=FIN-01", NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_is_false(r->json));
  reply_free(r);
  r = api(c, "GET", "/v1/instance-availability/1A100.22V?is_spot=true&location_code=FIN-02", NULL);
  assert_true(json_is_true(r->json));
  reply_free(r);
}

/* ---- keys and scripts ----------------------------------------------------------------------- */

static void add_key(ctx_t *c) {
  char body[1024], p[128];
  snprintf(body, sizeof(body), "{\"name\": \"kite\", \"key\": \"%s\"}", c->pub);
  reply_t *r = api(c, "POST", "/v1/ssh-keys", body);
  if (r->status != 201)
    print_error("ssh-keys: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 201);
  take_id(r, c->key_id, sizeof(c->key_id));
  reply_free(r);
  r = api(c, "GET", "/v1/sshkeys", NULL); /* the deprecated alias, as the Python SDK uses */
  assert_int_equal(r->status, 200);
  json_t *k = find_by(r->json, "id", c->key_id);
  assert_non_null(k);
  assert_string_equal(str(k, "key"), c->pub);
  assert_string_equal(str(k, "name"), "kite");
  assert_int_equal(strlen(str(k, "fingerprint")), 47); /* MD5, colon hex */
  reply_free(r);
  snprintf(p, sizeof(p), "/v1/ssh-keys/%s", c->key_id);
  r = api(c, "GET", p, NULL);
  assert_int_equal(r->status, 200);
  assert_string_equal(str(r->json, "id"), c->key_id);
  reply_free(r);
}

static void delete_key(ctx_t *c) {
  char p[128];
  snprintf(p, sizeof(p), "/v1/sshkeys/%s", c->key_id);
  reply_t *r = api(c, "DELETE", p, NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  r = direct(c, "DELETE", p, NULL);
  assert_error(r, 404, "not_found");
  reply_free(r);
}

static void add_script(ctx_t *c) {
  json_t *b = json_pack("{s:s, s:s}", "name", "kite-host-key", "script", c->script);
  char *body = json_dumps(b, 0), p[128];
  json_decref(b);
  reply_t *r = api(c, "POST", "/v1/scripts", body);
  free(body);
  assert_int_equal(r->status, 201);
  take_id(r, c->script_id, sizeof(c->script_id));
  reply_free(r);
  r = api(c, "POST", "/v1/scripts", "{\"name\": \"other\", \"script\": \"#!/bin/sh\\ntrue\\n\"}");
  assert_int_equal(r->status, 201);
  char other[64];
  take_id(r, other, sizeof(other));
  reply_free(r);
  /* Newest first, ten a page by default; the counts in headers. */
  r = api(c, "GET", "/v1/scripts", NULL);
  assert_int_equal(r->status, 200);
  assert_int_equal(json_array_size(r->json), 2);
  assert_string_equal(str(json_array_get(r->json, 0), "id"), other);
  assert_true(has_header(r, "X-Total-Count: 2"));
  reply_free(r);
  r = api(c, "GET", "/v1/scripts?page=2&pageSize=1&orderDirection=desc", NULL);
  assert_int_equal(json_array_size(r->json), 1);
  assert_string_equal(str(json_array_get(r->json, 0), "id"), c->script_id);
  assert_true(has_header(r, "X-Page: 2"));
  reply_free(r);
  snprintf(p, sizeof(p), "/v1/scripts/%s", c->script_id);
  r = api(c, "GET", p, NULL);
  assert_int_equal(r->status, 200);
  assert_string_equal(str(r->json, "script"), c->script);
  assert_string_equal(str(r->json, "name"), "kite-host-key");
  reply_free(r);
  snprintf(p, sizeof(p), "/v1/scripts/%s", other);
  r = api(c, "DELETE", p, NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  r = direct(c, "GET", p, NULL);
  assert_error(r, 404, "not_found");
  reply_free(r);
}

/* ---- instances ------------------------------------------------------------------------------ */

/* POST /v1/instances for label (its hostname is TAG-label, its kite-pool tag the same) with extra
 * fields ("" or ", \"k\": v…"); the reply. */
static reply_t *create_reply(ctx_t *c, const char *type, const char *loc, const char *label,
                             const char *extra) {
  char body[4096], policy[96] = "";
  if (c->os_policy)
    snprintf(policy, sizeof(policy), ", \"on_spot_discontinue\": \"%s\"", c->os_policy);
  snprintf(body, sizeof(body),
           "{\"instance_type\": \"%s\", \"image\": \"ubuntu-24.04-cuda-12.8-open-docker\", "
           "\"hostname\": \"%s-%s\", \"location_code\": \"%s\", \"ssh_key_ids\": [\"%s\"], "
           "\"startup_script_id\": \"%s\", \"description\": \"kite node\", \"tags\": [{\"key\": "
           "\"kite-pool\", \"value\": \"%s-%s\"}, {\"key\": \"Kite\"}], \"os_volume\": {\"name\": "
           "\"%s-%s-os\", \"size\": 60%s}%s}",
           type, c->tag, label, loc, c->key_id, c->script_id, c->tag, label, c->tag, label, policy,
           extra ? extra : "");
  return api(c, "POST", "/v1/instances", body);
}

static void create(ctx_t *c, const char *type, const char *loc, const char *label,
                   const char *extra, char *id, size_t n) {
  reply_t *r = create_reply(c, type, loc, label, extra);
  if (r->status != 202)
    print_error("create: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 202);
  take_id(r, id, n);
  reply_free(r);
}

static json_t *show(ctx_t *c, const char *base, const char *id, long *status) {
  char p[128];
  snprintf(p, sizeof(p), "/v1/instances/%s", id);
  reply_t *r = call(base, c->token, "GET", p, NULL);
  *status = r->status;
  json_t *j = json_incref(r->json);
  reply_free(r);
  return j;
}

/* Polls until status is want (every status seen goes into seen, comma-joined); fails on
 * "running" when want is "error". */
static json_t *wait_status(ctx_t *c, const char *id, const char *want, char *seen, size_t n) {
  seen[0] = '\0';
  for (int i = 0; i < 600; i++) {
    long st;
    json_t *s = show(c, c->api, id, &st);
    assert_int_equal(st, 200);
    const char *status = str(s, "status");
    const char *lastc = strrchr(seen, ',');
    if (strcmp(lastc ? lastc + 1 : seen, status) != 0)
      snprintf(seen + strlen(seen), n - strlen(seen), "%s%s", seen[0] ? "," : "", status);
    if (strcmp(status, want) == 0)
      return s;
    if (strcmp(status, "running") == 0 && strcmp(want, "error") == 0)
      fail_msg("instance %s ran (wanted %s): %s", id, want, seen);
    json_decref(s);
    usleep(50000);
  }
  fail_msg("instance %s never was %s: %s", id, want, seen);
  return NULL;
}

static int ssh_run(ctx_t *c, const char *address, char *out, size_t n) {
  char kh[128], cmd[1024];
  snprintf(kh, sizeof(kh), "%s/known_hosts", c->dir);
  FILE *fp = fopen(kh, "w");
  assert_non_null(fp);
  fprintf(fp, "[%s]:2222 %s\n", address, c->host_pub);
  fclose(fp);
  snprintf(cmd, sizeof(cmd),
           "ssh -i %s/id -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=yes "
           "-o UserKnownHostsFile=%s -o ConnectTimeout=10 -o LogLevel=ERROR %s@%s "
           "'echo kite-was-here' 2>&1",
           c->dir, kh, kite_local_login_user(), address);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, n - 1, p);
  out[len] = '\0';
  return pclose(p);
}

/* The instances GET /v1/instances answers for the query ("" or "?…"). */
static json_t *list(ctx_t *c, const char *query) {
  char p[512];
  snprintf(p, sizeof(p), "/v1/instances%s", query);
  reply_t *r = api(c, "GET", p, NULL);
  assert_int_equal(r->status, 200);
  assert_true(json_is_array(r->json));
  json_t *j = json_incref(r->json);
  reply_free(r);
  return j;
}

static json_t *state_volume(ctx_t *c, const char *id) {
  json_t *s = sim_call(&c->sim, "GET", "/_sim/verda/state", NULL);
  json_t *v = json_incref(find_by(json_object_get(s, "volumes"), "id", id));
  json_decref(s);
  assert_non_null(v);
  return v;
}

static json_t *bill_line(ctx_t *c, const char *id) {
  json_t *s = sim_call(&c->sim, "GET", "/_sim/verda/state", NULL);
  json_int_t mid = json_integer_value(
      json_object_get(find_by(json_object_get(s, "instances"), "id", id), "machine"));
  json_decref(s);
  json_t *bill = sim_call(&c->sim, "GET", "/_sim/bill", NULL), *line = NULL;
  for (size_t i = 0; i < json_array_size(json_object_get(bill, "machines")); i++) {
    json_t *x = json_array_get(json_object_get(bill, "machines"), i);
    if (json_integer_value(json_object_get(x, "id")) == mid)
      line = json_incref(x);
  }
  json_decref(bill);
  assert_non_null(line);
  return line;
}

/* PUT delete; deleting while listed, then 404 (asked of the emulator itself: the description
 * gives the by-id call no 404), absent from the list, no process of its node left. */
static void delete_and_wait(ctx_t *c, const char *id, const char *label) {
  char body[256], full[96];
  snprintf(body, sizeof(body), "{\"action\": \"delete\", \"id\": [\"%s\"], \"volume_ids\": null}",
           id);
  reply_t *r = api(c, "PUT", "/v1/instances", body);
  if (r->status != 202)
    print_error("delete: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 202);
  json_t *res = json_array_get(r->json, 0);
  assert_string_equal(str(res, "instanceId"), id);
  assert_string_equal(str(res, "action"), "delete");
  assert_string_equal(str(res, "status"), "success");
  reply_free(r);
  bool gone = false;
  for (int i = 0; i < 400 && !gone; i++) {
    long st;
    json_t *s = show(c, c->direct, id, &st);
    gone = st == 404;
    if (gone) {
      assert_string_equal(str(s, "code"), "not_found");
    } else {
      assert_int_equal(st, 200);
      assert_string_equal(str(s, "status"), "deleting");
      usleep(20000);
    }
    json_decref(s);
  }
  assert_true(gone);
  snprintf(full, sizeof(full), "%s-%s", c->tag, label);
  assert_int_equal(kite_local_count_tagged(full), 0);
  json_t *l = list(c, "");
  assert_null(find_by(l, "id", id));
  json_decref(l);
}

/* On demand: ordered, then running with ip; SSH with the script's host key; found by tag;
 * billed at price_per_hour; deleted. */
static void on_demand(ctx_t *c) {
  char id[64], seen[256], full[96];
  create(c, "CPU.4V.16G", "FIN-01", "od", NULL, id, sizeof(id));
  long st;
  json_t *s = show(c, c->api, id, &st);
  assert_string_equal(str(s, "status"), "ordered");
  assert_true(json_is_null(json_object_get(s, "ip")));
  json_decref(s);
  s = wait_status(c, id, "running", seen, sizeof(seen));
  if (strcmp(seen, "ordered,provisioning,running") != 0)
    fail_msg("statuses seen: %s", seen);
  snprintf(full, sizeof(full), "%s-od", c->tag);
  assert_string_equal(str(s, "id"), id);
  assert_string_equal(str(s, "hostname"), full);
  assert_string_equal(str(s, "instance_type"), "CPU.4V.16G");
  assert_string_equal(str(s, "location"), "FIN-01");
  assert_string_equal(str(s, "description"), "kite node");
  assert_string_equal(str(s, "startup_script_id"), c->script_id);
  assert_string_equal(str(s, "contract"), "PAY_AS_YOU_GO");
  assert_string_equal(str(s, "os_name"), "Ubuntu 24.04");
  assert_false(json_is_true(json_object_get(s, "is_spot")));
  assert_true(json_number_value(json_object_get(s, "price_per_hour")) == 0.05);
  assert_string_equal(json_string_value(json_array_get(json_object_get(s, "ssh_key_ids"), 0)),
                      c->key_id);
  json_t *tags = json_object_get(s, "tags");
  assert_string_equal(str(find_by(tags, "key", "kite-pool"), "value"), full);
  assert_string_equal(str(find_by(tags, "key", "kite"), "value"), ""); /* lowercased, no value */
  assert_true(in_list(json_object_get(s, "volume_ids"), str(s, "os_volume_id")));
  char address[64];
  snprintf(address, sizeof(address), "%s", str(s, "ip"));
  assert_int_equal(strncmp(address, "127.", 4), 0);
  json_decref(s);

  char out[1024];
  int rc = ssh_run(c, address, out, sizeof(out));
  if (rc != 0 || strstr(out, "kite-was-here") == NULL)
    print_error("ssh: %d %s\n", rc, out);
  assert_int_equal(rc, 0);
  assert_true(kite_local_count_tagged(full) > 0);

  char q[256];
  snprintf(q, sizeof(q), "?tag=kite-pool%%3D%s&tag=kite&status=running", full);
  json_t *l = list(c, q);
  assert_int_equal(json_array_size(l), 1);
  assert_string_equal(str(json_array_get(l, 0), "id"), id);
  json_decref(l);
  l = list(c, "?tag=kite-pool%3Dnot-this-one");
  assert_int_equal(json_array_size(l), 0);
  json_decref(l);

  json_t *line = bill_line(c, id);
  assert_string_equal(str(line, "cloud"), "verda");
  assert_true(json_number_value(json_object_get(line, "price_hourly")) == 0.05);
  assert_true(json_is_false(json_object_get(line, "spot")));
  json_decref(line);
  delete_and_wait(c, id, "od");
}

/* Spot: billed at spot_price; discontinued: its node's processes gone, ip null, its OS volume
 * deleted as on_spot_discontinue asked (or kept detached, by default), its bill line closed. */
static void spot_discontinue(ctx_t *c, const char *policy, const char *volume_state) {
  char id[64], seen[256], full[96], label[32];
  snprintf(label, sizeof(label), "spot-%c", policy ? policy[0] : 'k');
  c->os_policy = policy;
  create(c, "1V100.6V", "FIN-01", label, ", \"is_spot\": true, \"contract\": \"SPOT\"", id,
         sizeof(id));
  c->os_policy = NULL;
  json_t *s = wait_status(c, id, "running", seen, sizeof(seen));
  assert_true(json_is_true(json_object_get(s, "is_spot")));
  assert_string_equal(str(s, "contract"), "SPOT");
  assert_true(json_number_value(json_object_get(s, "price_per_hour")) == 0.13);
  char vol[64];
  snprintf(vol, sizeof(vol), "%s", str(s, "os_volume_id"));
  json_decref(s);
  snprintf(full, sizeof(full), "%s-%s", c->tag, label);
  assert_true(kite_local_count_tagged(full) > 0);
  char cp[160];
  snprintf(cp, sizeof(cp), "/_sim/verda/instances/%s/discontinue", id);
  json_t *j = sim_call(&c->sim, "POST", cp, NULL);
  assert_true(json_is_true(json_object_get(j, "ok")));
  json_decref(j);
  s = wait_status(c, id, "discontinued", seen, sizeof(seen));
  assert_true(json_is_null(json_object_get(s, "ip")));
  assert_string_equal(str(s, "os_volume_id"), vol);
  json_decref(s);
  for (int i = 0; i < 200 && kite_local_count_tagged(full) > 0; i++)
    usleep(20000);
  assert_int_equal(kite_local_count_tagged(full), 0);
  json_t *v = state_volume(c, vol);
  assert_string_equal(str(v, "state"), volume_state);
  assert_true(json_is_null(json_object_get(v, "instance_id")));
  assert_true(json_is_boolean(json_object_get(v, "billing")));
  assert_int_equal(json_is_true(json_object_get(v, "billing")),
                   strcmp(volume_state, "deleted") != 0);
  json_decref(v);
  /* The instance no longer costs anything: its bill line has ended, at the spot price. */
  json_t *line = NULL;
  for (int i = 0; i < 200; i++) {
    json_decref(line);
    line = bill_line(c, id);
    if (json_integer_value(json_object_get(line, "gone_ms")) != 0)
      break;
    usleep(20000);
  }
  assert_true(json_integer_value(json_object_get(line, "gone_ms")) != 0);
  assert_true(json_number_value(json_object_get(line, "price_hourly")) == 0.13);
  assert_true(json_is_true(json_object_get(line, "spot")));
  json_decref(line);
  /* Still listed, by its status too. */
  json_t *l = list(c, "?status=discontinued");
  assert_non_null(find_by(l, "id", id));
  json_decref(l);
  delete_and_wait(c, id, label);
}

/* A type whose launches end in error: ordered, provisioning, error, never running, no node. */
static void type_failure(ctx_t *c) {
  char id[64], seen[256], full[96];
  json_decref(sim_call(&c->sim, "POST", "/_sim/verda/instance-types/1A100.22V/fail",
                       "{\"status\": \"error\"}"));
  create(c, "1A100.22V", "FIN-01", "fail", NULL, id, sizeof(id));
  json_t *s = wait_status(c, id, "error", seen, sizeof(seen));
  if (strcmp(seen, "ordered,provisioning,error") != 0)
    fail_msg("statuses seen: %s", seen);
  assert_true(json_is_null(json_object_get(s, "ip")));
  json_decref(s);
  snprintf(full, sizeof(full), "%s-fail", c->tag);
  assert_int_equal(kite_local_count_tagged(full), 0);
  usleep(300000);
  long st;
  s = show(c, c->api, id, &st);
  assert_string_equal(str(s, "status"), "error");
  json_decref(s);
  delete_and_wait(c, id, "fail");
  json_decref(
      sim_call(&c->sim, "POST", "/_sim/verda/instance-types/1A100.22V/fail", "{\"status\": null}"));
  create(c, "1A100.22V", "FIN-01", "fixed", NULL, id, sizeof(id));
  json_decref(wait_status(c, id, "running", seen, sizeof(seen)));
  delete_and_wait(c, id, "fixed");
}

/* Refusals whose answers the description defines: no capacity, an unknown single instance. */
static void described_refusals(ctx_t *c) {
  reply_t *r = create_reply(c, "1RTX6000ADA.10V", "FIN-01", "nocap", NULL);
  assert_error(r, 503, "service_unavailable");
  assert_string_equal(str(r->json, "message"), "No capacity available");
  reply_free(r);
  r = create_reply(c, "1A100.22V", "FIN-01", "nocap", ", \"is_spot\": true");
  assert_error(r, 503, "service_unavailable");
  reply_free(r);
  r = api(c, "PUT", "/v1/instances",
          "{\"action\": \"delete\", \"id\": \"0dc16ed0-f7fb-4eec-a5e6-004e082bb1f4\"}");
  assert_error(r, 404, "not_found");
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "verda_instances"), 0);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_tokens_and_catalog(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "cat", NULL);
  tokens(c);
  catalog(c);
  /* A bad grant, missing credentials, an unknown refresh token. */
  json_decref(token_call(c, "{\"grant_type\": \"password\"}", 400));
  json_t *t = token_call(c, "{\"grant_type\": \"client_credentials\"}", 400);
  assert_string_equal(str(t, "code"), "invalid_request");
  json_decref(t);
  t = token_call(c, "{\"grant_type\": \"refresh_token\", \"refresh_token\": \"nope\"}", 401);
  assert_string_equal(str(t, "code"), "unauthorized_request");
  json_decref(t);
  /* A wrong or missing token on the calls that need one. */
  reply_t *r = call(c->api, "not-a-token", "GET", "/v1/instances", NULL);
  assert_error(r, 401, "unauthorized_request");
  reply_free(r);
  r = call(c->api, NULL, "GET", "/v1/instance-availability", NULL);
  assert_error(r, 401, "unauthorized_request");
  reply_free(r);
  r = api(c, "GET", "/v1/instances", NULL);
  assert_int_equal(r->status, 200);
  assert_true(has_header(r, "RateLimit-Policy: \"project\";q=500;w=60, \"endpoint\";q=120;w=60"));
  assert_true(has_header(r, "RateLimit: \"project\";r="));
  reply_free(r);
  ctx_done(c);
  free(c);
}

/* With a 1 s lifetime a token stops working; a refresh gives one that works. */
static void test_token_expires_and_refreshes(void **state) {
  (void)state;
  static const char *const flags[] = {"--verda-token-ttl", "1", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "ttl", flags);
  json_t *t = token_call(c,
                         "{\"grant_type\": \"client_credentials\", \"client_id\": \"" CLIENT_ID
                         "\", \"client_secret\": \"" SECRET "\"}",
                         200);
  assert_int_equal(json_integer_value(json_object_get(t, "expires_in")), 1);
  snprintf(c->token, sizeof(c->token), "%s", str(t, "access_token"));
  char body[512];
  snprintf(body, sizeof(body), "{\"grant_type\": \"refresh_token\", \"refresh_token\": \"%s\"}",
           str(t, "refresh_token"));
  json_decref(t);
  reply_t *r = api(c, "GET", "/v1/ssh-keys", NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  usleep(1200000);
  r = api(c, "GET", "/v1/ssh-keys", NULL);
  assert_error(r, 401, "unauthorized_request");
  assert_string_equal(str(r->json, "message"), "Access token expired");
  reply_free(r);
  t = token_call(c, body, 200);
  snprintf(c->token, sizeof(c->token), "%s", str(t, "access_token"));
  json_decref(t);
  r = api(c, "GET", "/v1/ssh-keys", NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  /* The lifetime is set at run time too. */
  json_t *j = sim_call(&c->sim, "POST", "/_sim/verda/token-ttl", "{\"seconds\": 600}");
  assert_int_equal(json_integer_value(json_object_get(j, "seconds")), 600);
  json_decref(j);
  t = token_call(c, body, 200);
  assert_int_equal(json_integer_value(json_object_get(t, "expires_in")), 600);
  json_decref(t);
  ctx_done(c);
  free(c);
}

static void test_on_demand_lifecycle(void **state) {
  (void)state;
  static const char *const flags[] = {"--provision-ms", "800", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "life", flags);
  tokens(c);
  add_key(c);
  add_script(c);
  on_demand(c);
  delete_key(c);
  ctx_done(c);
  free(c);
}

static void test_spot_discontinued(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "spot", NULL);
  tokens(c);
  add_key(c);
  add_script(c);
  spot_discontinue(c, "delete_permanently", "deleted");
  spot_discontinue(c, NULL, "detached");
  spot_discontinue(c, "move_to_trash", "trash");
  /* An on-demand instance is not discontinued. */
  char id[64], cp[160];
  create(c, "CPU.4V.16G", "FIN-02", "od", NULL, id, sizeof(id));
  snprintf(cp, sizeof(cp), "/_sim/verda/instances/%s/discontinue", id);
  json_t *j = sim_call(&c->sim, "POST", cp, NULL);
  assert_string_equal(str(j, "id"), "bad_request");
  json_decref(j);
  delete_and_wait(c, id, "od");
  ctx_done(c);
  free(c);
}

static void test_type_failure_never_runs(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "fail", NULL);
  tokens(c);
  add_key(c);
  add_script(c);
  type_failure(c);
  ctx_done(c);
  free(c);
}

/* Shutdown: offline, ip null, node stopped, still billed; a crash (the generic kill, kept) shows
 * offline too. */
static void test_shutdown_and_crash_are_offline(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "off", NULL);
  tokens(c);
  add_key(c);
  add_script(c);
  char a[64], b[64], seen[256], body[256], full[96];
  create(c, "CPU.4V.16G", "ICE-01", "a", NULL, a, sizeof(a));
  create(c, "CPU.4V.16G", "ICE-01", "b", NULL, b, sizeof(b));
  json_decref(wait_status(c, a, "running", seen, sizeof(seen)));
  json_decref(wait_status(c, b, "running", seen, sizeof(seen)));
  snprintf(body, sizeof(body), "{\"action\": \"shutdown\", \"id\": \"%s\"}", a);
  reply_t *r = api(c, "PUT", "/v1/instances", body);
  assert_int_equal(r->status, 202);
  reply_free(r);
  r = api(c, "PUT", "/v1/instances", body);
  assert_int_equal(r->status, 204); /* already so */
  reply_free(r);
  json_t *s = wait_status(c, a, "offline", seen, sizeof(seen));
  assert_true(json_is_null(json_object_get(s, "ip")));
  json_decref(s);
  snprintf(full, sizeof(full), "%s-a", c->tag);
  for (int i = 0; i < 200 && kite_local_count_tagged(full) > 0; i++)
    usleep(20000);
  assert_int_equal(kite_local_count_tagged(full), 0);
  json_t *line = bill_line(c, a);
  assert_int_equal(json_integer_value(json_object_get(line, "gone_ms")), 0);
  json_decref(line);
  json_t *st = sim_call(&c->sim, "GET", "/_sim/verda/state", NULL);
  json_int_t mid = json_integer_value(
      json_object_get(find_by(json_object_get(st, "instances"), "id", b), "machine"));
  json_decref(st);
  char cp[96];
  snprintf(cp, sizeof(cp), "/_sim/machines/%lld/kill", (long long)mid);
  json_decref(sim_call(&c->sim, "POST", cp, "{\"vanish\": false}"));
  json_decref(wait_status(c, b, "offline", seen, sizeof(seen)));
  /* Both at once: one result each. */
  snprintf(body, sizeof(body), "{\"action\": \"delete\", \"id\": [\"%s\", \"%s\"]}", a, b);
  r = api(c, "PUT", "/v1/instances", body);
  assert_int_equal(r->status, 202);
  assert_int_equal(json_array_size(r->json), 2);
  reply_free(r);
  for (int i = 0; i < 200 && sim_state_count(&c->sim, "/_sim/state", "verda_instances") > 0; i++)
    usleep(20000);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "verda_instances"), 0);
  ctx_done(c);
  free(c);
}

static void test_refusals_in_verda_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "refuse", NULL);
  tokens(c);
  add_key(c);
  add_script(c);
  described_refusals(c);
  reply_t *r = create_reply(c, "9Z999.1V", "FIN-01", "x", NULL);
  assert_error(r, 400, "invalid_request");
  reply_free(r);
  r = create_reply(c, "CPU.4V.16G", "MARS-01", "x", NULL);
  assert_error(r, 400, "invalid_request");
  reply_free(r);
  r = api(c, "POST", "/v1/instances",
          "{\"instance_type\": \"CPU.4V.16G\", \"image\": \"ubuntu-24.04\", \"hostname\": \"x\"}");
  assert_error(r, 400, "invalid_request"); /* no location_code */
  reply_free(r);
  char bad_key[64];
  snprintf(bad_key, sizeof(bad_key), "%s", c->key_id);
  snprintf(c->key_id, sizeof(c->key_id), "0dc16ed0-f7fb-4eec-a5e6-004e082bb1f4");
  r = create_reply(c, "CPU.4V.16G", "FIN-01", "x", NULL);
  assert_error(r, 400, "invalid_request");
  reply_free(r);
  snprintf(c->key_id, sizeof(c->key_id), "%s", bad_key);
  r = create_reply(c, "CPU.4V.16G", "FIN-01", "x", ", \"startup_script_id\": \"nope\"");
  assert_error(r, 400, "invalid_request");
  reply_free(r);
  r = api(c, "GET", "/v1/instances/0dc16ed0-f7fb-4eec-a5e6-004e082bb1f4", NULL);
  assert_error(r, 404, "not_found");
  reply_free(r);
  /* No capacity anywhere; then the project's limit. */
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults", "{\"no_capacity\": true}"));
  r = create_reply(c, "CPU.4V.16G", "FIN-01", "x", NULL);
  assert_error(r, 503, "service_unavailable");
  reply_free(r);
  r = api(c, "GET", "/v1/instance-availability/CPU.4V.16G?location_code=FIN-01", NULL);
  assert_true(json_is_false(r->json));
  reply_free(r);
  json_decref(
      sim_call(&c->sim, "POST", "/_sim/faults", "{\"no_capacity\": false, \"droplet_limit\": 1}"));
  char one[64];
  create(c, "CPU.4V.16G", "FIN-01", "one", NULL, one, sizeof(one));
  r = create_reply(c, "CPU.4V.16G", "FIN-01", "two", NULL);
  assert_error(r, 403, "forbidden_action");
  reply_free(r);
  delete_and_wait(c, one, "one");
  /* Injected faults in Verda's shapes. */
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults", "{\"next\": [\"429\", \"500\"]}"));
  r = api(c, "GET", "/v1/instances", NULL);
  assert_error(r, 429, "rate_limit_exceeded");
  assert_true(has_header(r, "Retry-After: 1"));
  assert_true(has_header(r, "\"endpoint\";r=0;"));
  reply_free(r);
  r = api(c, "GET", "/v1/instances", NULL);
  assert_error(r, 500, "server_error");
  reply_free(r);
  r = api(c, "GET", "/v1/instances", NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "faults_injected"), 2);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "verda_ssh_keys"), 1);
  ctx_done(c);
  free(c);
}

static void test_requests_through_prism(void **state) {
  (void)state;
  const char *prism = prism_find();
  char spec[512];
  if (prism == NULL || !prism_spec("verda-openapi.json", spec, sizeof(spec))) {
    print_message("skipped: Prism or the Verda spec is not installed\n");
    skip();
  }
  static const char *const flags[] = {"--provision-ms", "800", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "prism", flags);
  char pspec[128], log_path[128];
  snprintf(pspec, sizeof(pspec), "%s/verda.json", c->dir);
  prism_verda_without_proxy_headers(spec, pspec);
  snprintf(log_path, sizeof(log_path), "%s/prism.log", c->dir);
  /* The description's server is https://api.verda.com and its paths carry /v1: Prism forwards
   * /v1/… to the emulator's /verda, so the emulator sees /verda/v1/…. */
  int pport = 0;
  pid_t pid = prism_start(prism, pspec, c->direct, log_path, &pport);
  snprintf(c->api, sizeof(c->api), "http://127.0.0.1:%d", pport);
  tokens(c);
  catalog(c);
  add_key(c);
  add_script(c);
  described_refusals(c);
  on_demand(c);
  spot_discontinue(c, "delete_permanently", "deleted");
  type_failure(c);
  delete_key(c);
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
      cmocka_unit_test(test_tokens_and_catalog),
      cmocka_unit_test(test_token_expires_and_refreshes),
      cmocka_unit_test(test_on_demand_lifecycle),
      cmocka_unit_test(test_spot_discontinued),
      cmocka_unit_test(test_type_failure_never_runs),
      cmocka_unit_test(test_shutdown_and_crash_are_offline),
      cmocka_unit_test(test_refusals_in_verda_shapes),
      cmocka_unit_test(test_requests_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
