/* kite-cloudsim's Hetzner Cloud front (/v1/), driven over HTTP as a provider would drive
 * Hetzner's API: SSH keys, a server created with kite's key and a pinned host key in its
 * cloud-config, its status from initializing to running, real SSH to it, listing by label with
 * pagination, deletion that completes only when the machine's processes are gone, the error
 * shapes (wrong token, bad input, capacity, limit, injected faults), death by the control
 * endpoint, and the same requests through Stoplight Prism checking every request and answer
 * against Hetzner's OpenAPI description. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"

#define TOKEN "hcloud_cloudsim_test_token_8d1e6b0f"

#include "cloudsim_client.h"
#include "prism.h"

/* ---- HTTP ----------------------------------------------------------------------------------- */

typedef struct reply {
  long status;
  char headers[8192];
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

static size_t on_header(char *p, size_t size, size_t n, void *data) {
  reply_t *r = data;
  size_t len = size * n, have = strlen(r->headers);
  if (have + len < sizeof(r->headers))
    memcpy(r->headers + have, p, len);
  return len;
}

/* One blocking request (test code) to base + path (the API's base URL and a path of the
 * description, "/servers") with the bearer token (or none); freed with reply_free. */
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
  r->json = r->body_len ? json_loadb(r->body, r->body_len, 0, &e) : NULL;
  return r;
}

static void reply_free(reply_t *r) {
  json_decref(r->json);
  free(r);
}

/* The value of a reply header (case-insensitive name), or "". */
static const char *header(const reply_t *r, const char *name, char *out, size_t n) {
  out[0] = '\0';
  size_t nl = strlen(name);
  for (const char *l = r->headers; l && *l;) {
    if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
      const char *v = l + nl + 1;
      while (*v == ' ')
        v++;
      snprintf(out, n, "%.*s", (int)strcspn(v, "\r\n"), v);
      return out;
    }
    l = strchr(l, '\n');
    l = l ? l + 1 : NULL;
  }
  return out;
}

/* Asserts reply r is Hetzner's error shape with this status and code. */
static void assert_error(const reply_t *r, long status, const char *code) {
  if (r->status != status || r->json == NULL)
    print_error("wanted %ld %s, got %ld: %s\n", status, code, r->status, r->body);
  assert_int_equal(r->status, status);
  json_t *err = json_object_get(r->json, "error");
  assert_true(json_is_object(err));
  assert_string_equal(json_string_value(json_object_get(err, "code")), code);
  assert_true(json_is_string(json_object_get(err, "message")));
  json_t *d = json_object_get(err, "details");
  assert_true(d == NULL || json_is_null(d) || json_is_object(d));
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct ctx {
  sim_t sim;
  char api[128]; /* the API's base URL (Hetzner's is https://api.hetzner.cloud/v1): the
                    emulator's /v1, or Prism in front of it */
  char dir[64];  /* keys and known_hosts */
  char pool[64]; /* the kite-pool label, also the nodes' tag */
  char pub[512], host_pub[512], user_data[4096];
  uint64_t key_id;
  char fingerprint[64];
} ctx_t;

static void read_line(const char *path, char *out, size_t n) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  assert_non_null(fgets(out, (int)n, fp));
  fclose(fp);
  out[strcspn(out, "\r\n")] = '\0';
}

static void ctx_init(ctx_t *c, const char *what, const char *const *flags) {
  memset(c, 0, sizeof(*c));
  sim_start(&c->sim, TOKEN, flags);
  snprintf(c->api, sizeof(c->api), "%s/v1", c->sim.url);
  snprintf(c->dir, sizeof(c->dir), "/tmp/kite-test-hz-XXXXXX");
  assert_non_null(mkdtemp(c->dir));
  snprintf(c->pool, sizeof(c->pool), "kite-pool-t%d-%s", (int)getpid(), what);
  /* kite's client key, and the host key kite would pin and hand over in user_data. */
  char cmd[512];
  snprintf(cmd, sizeof(cmd),
           "ssh-keygen -q -t ed25519 -N '' -C kite -f %s/id && "
           "ssh-keygen -q -t ed25519 -N '' -C host -f %s/host",
           c->dir, c->dir);
  assert_int_equal(system(cmd), 0);
  char path[128];
  snprintf(path, sizeof(path), "%s/id.pub", c->dir);
  read_line(path, c->pub, sizeof(c->pub));
  snprintf(path, sizeof(path), "%s/host.pub", c->dir);
  read_line(path, c->host_pub, sizeof(c->host_pub));
  snprintf(path, sizeof(path), "%s/host", c->dir);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t o = (size_t)snprintf(c->user_data, sizeof(c->user_data),
                              "#cloud-config\nssh_keys:\n  ed25519_private: |\n");
  char line[256];
  while (fgets(line, sizeof(line), fp))
    o += (size_t)snprintf(c->user_data + o, sizeof(c->user_data) - o, "    %s", line);
  fclose(fp);
  snprintf(c->user_data + o, sizeof(c->user_data) - o,
           "  ed25519_public: %s\nruncmd:\n  - [sh, -c, 'echo hi']\n", c->host_pub);
}

static void ctx_done(ctx_t *c) {
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(kite_local_count_tagged(c->pool), 0);
}

static void sim_faults(ctx_t *c, const char *json) {
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults", json));
}

/* POST /v1/ssh_keys with kite's key; remembers its id. */
static void add_key(ctx_t *c) {
  json_t *b = json_pack("{s:s, s:s, s:{s:s}}", "name", "kite-test", "public_key", c->pub, "labels",
                        "managed-by", "kite");
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  reply_t *r = call(c->api, TOKEN, "POST", "/ssh_keys", s);
  free(s);
  if (r->status != 201)
    print_error("ssh_keys: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 201);
  json_t *k = json_object_get(r->json, "ssh_key");
  c->key_id = (uint64_t)json_integer_value(json_object_get(k, "id"));
  assert_true(c->key_id > 0);
  assert_string_equal(json_string_value(json_object_get(k, "public_key")), c->pub);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(k, "labels"), "managed-by")), "kite");
  /* The fingerprint is the MD5 of the key blob, as ssh-keygen -E md5 shows it. */
  char cmd[256], want[128] = "";
  snprintf(cmd, sizeof(cmd), "ssh-keygen -l -E md5 -f %s/id.pub", c->dir);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  assert_non_null(fgets(want, sizeof(want), p));
  pclose(p);
  const char *fp = json_string_value(json_object_get(k, "fingerprint"));
  assert_non_null(fp);
  char *md5 = strstr(want, "MD5:");
  assert_non_null(md5);
  assert_int_equal(strncmp(md5 + 4, fp, strlen(fp)), 0);
  assert_int_equal(strlen(fp), 47);
  snprintf(c->fingerprint, sizeof(c->fingerprint), "%s", fp);
  reply_free(r);
}

/* The key is found by fingerprint, deleted (204), then gone (404). */
static void find_and_delete_key(ctx_t *c) {
  char path[160];
  snprintf(path, sizeof(path), "/ssh_keys?fingerprint=%s", c->fingerprint);
  reply_t *r = call(c->api, TOKEN, "GET", path, NULL);
  assert_int_equal(r->status, 200);
  json_t *keys = json_object_get(r->json, "ssh_keys");
  assert_int_equal(json_array_size(keys), 1);
  assert_int_equal(json_integer_value(json_object_get(json_array_get(keys, 0), "id")),
                   (json_int_t)c->key_id);
  reply_free(r);
  snprintf(path, sizeof(path), "/ssh_keys/%llu", (unsigned long long)c->key_id);
  r = call(c->api, TOKEN, "DELETE", path, NULL);
  assert_int_equal(r->status, 204);
  reply_free(r);
  r = call(c->api, TOKEN, "GET", path, NULL);
  assert_error(r, 404, "not_found");
  reply_free(r);
}

/* POST /v1/servers; returns the server's id (0 when the create was refused: *out keeps the
 * reply then). */
static uint64_t create(ctx_t *c, const char *name, const char *extra_label, reply_t **out) {
  char kid[32];
  snprintf(kid, sizeof(kid), "%llu", (unsigned long long)c->key_id);
  json_t *b = json_pack("{s:s, s:s, s:s, s:s, s:[s], s:s, s:{s:s, s:s}}", "name", name,
                        "server_type", "cx22", "image", "ubuntu-24.04", "location", "nbg1",
                        "ssh_keys", kid, "user_data", c->user_data, "labels", "kite-pool", c->pool,
                        "role", extra_label ? extra_label : "worker");
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  reply_t *r = call(c->api, TOKEN, "POST", "/servers", s);
  free(s);
  uint64_t id = 0;
  if (r->status == 201) {
    json_t *srv = json_object_get(r->json, "server");
    id = (uint64_t)json_integer_value(json_object_get(srv, "id"));
  }
  if (out)
    *out = r;
  else
    reply_free(r);
  return id;
}

static json_t *get_server(ctx_t *c, uint64_t id, long *status) {
  char path[64];
  snprintf(path, sizeof(path), "/servers/%llu", (unsigned long long)id);
  reply_t *r = call(c->api, TOKEN, "GET", path, NULL);
  *status = r->status;
  json_t *s = json_incref(json_object_get(r->json, "server"));
  reply_free(r);
  return s;
}

/* Polls until the server is running (every status seen goes into seen, comma-joined). */
static json_t *wait_running(ctx_t *c, uint64_t id, char *seen, size_t n) {
  seen[0] = '\0';
  for (int i = 0; i < 600; i++) {
    long st;
    json_t *s = get_server(c, id, &st);
    assert_int_equal(st, 200);
    const char *status = json_string_value(json_object_get(s, "status"));
    assert_non_null(status);
    const char *last = strrchr(seen, ',');
    if (strcmp(last ? last + 1 : seen, status) != 0)
      snprintf(seen + strlen(seen), n - strlen(seen), "%s%s", seen[0] ? "," : "", status);
    if (strcmp(status, "running") == 0)
      return s;
    json_decref(s);
    usleep(50000);
  }
  fail_msg("server %llu never ran: %s", (unsigned long long)id, seen);
  return NULL;
}

/* DELETE, then polls until the server is gone (404). */
static void delete_and_wait(ctx_t *c, uint64_t id) {
  char path[64];
  snprintf(path, sizeof(path), "/servers/%llu", (unsigned long long)id);
  reply_t *r = call(c->api, TOKEN, "DELETE", path, NULL);
  assert_int_equal(r->status, 200);
  json_t *a = json_object_get(r->json, "action");
  assert_string_equal(json_string_value(json_object_get(a, "command")), "delete_server");
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(json_object_get(a, "resources"), 0), "id")),
      (json_int_t)id);
  reply_free(r);
  for (int i = 0; i < 400; i++) {
    long st;
    json_t *s = get_server(c, id, &st);
    json_decref(s);
    if (st == 404)
      return;
    assert_int_equal(st, 200);
    usleep(50000);
  }
  fail_msg("server %llu was never gone", (unsigned long long)id);
}

/* ssh to the server with kite's key, verifying the host key handed over in user_data. */
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

/* ---- the requests (also run through Prism) -------------------------------------------------- */

/* Create → initializing, starting, running → SSH with the key from ssh_keys and the host key
 * from user_data → delete → gone, with every process of the machine. */
static void lifecycle(ctx_t *c) {
  add_key(c);
  reply_t *r = NULL;
  uint64_t id = create(c, "srv-life", NULL, &r);
  if (id == 0)
    print_error("create: %ld %s\n", r->status, r->body);
  assert_true(id > 0);
  assert_int_equal(r->status, 201);
  json_t *srv = json_object_get(r->json, "server");
  assert_string_equal(json_string_value(json_object_get(srv, "status")), "initializing");
  assert_string_equal(json_string_value(json_object_get(srv, "name")), "srv-life");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(srv, "labels"), "kite-pool")), c->pool);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(srv, "server_type"), "name")), "cx22");
  assert_true(json_array_size(json_object_get(json_object_get(srv, "server_type"), "prices")) > 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(srv, "location"), "name")),
                      "nbg1");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(r->json, "action"), "command")),
      "create_server");
  assert_int_equal(json_array_size(json_object_get(r->json, "next_actions")), 1);
  assert_true(json_is_null(json_object_get(r->json, "root_password")));
  reply_free(r);

  char seen[256];
  json_t *s = wait_running(c, id, seen, sizeof(seen));
  /* --provision-ms keeps it starting for a while after its node listens. */
  if (strcmp(seen, "initializing,starting,running") != 0 && strcmp(seen, "starting,running") != 0)
    fail_msg("statuses seen: %s", seen);
  const char *ip = json_string_value(
      json_object_get(json_object_get(json_object_get(s, "public_net"), "ipv4"), "ip"));
  assert_non_null(ip);
  char address[64];
  snprintf(address, sizeof(address), "%s", ip);
  json_decref(s);
  assert_int_equal(strncmp(address, "127.", 4), 0);
  json_t *st = sim_call(&c->sim, "GET", "/_sim/hetzner/state", NULL);
  json_t *first = json_array_get(json_object_get(st, "servers"), 0);
  assert_string_equal(json_string_value(json_object_get(first, "address")), address);
  assert_string_equal(json_string_value(json_object_get(first, "status")), "running");
  json_decref(st);

  char out[1024];
  int rc = ssh_run(c, address, out, sizeof(out));
  if (rc != 0 || strstr(out, "kite-was-here") == NULL)
    print_error("ssh: %d %s\n", rc, out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "kite-was-here"));
  assert_true(kite_local_count_tagged(c->pool) > 0);

  delete_and_wait(c, id);
  /* Gone from the API only when every process of its machine is gone. */
  assert_int_equal(kite_local_count_tagged(c->pool), 0);
}

static json_t *list(ctx_t *c, const char *query, long *status) {
  char path[512];
  snprintf(path, sizeof(path), "/servers?%s", query);
  reply_t *r = call(c->api, TOKEN, "GET", path, NULL);
  *status = r->status;
  if (r->status != 200)
    print_error("GET %s: %ld %s\n", path, r->status, r->body);
  json_t *j = json_incref(r->json);
  reply_free(r);
  return j;
}

static void assert_page(json_t *j, long page, json_t *prev, json_t *next, long last, long total) {
  json_t *p = json_object_get(json_object_get(j, "meta"), "pagination");
  assert_int_equal(json_integer_value(json_object_get(p, "page")), page);
  assert_int_equal(json_integer_value(json_object_get(p, "per_page")), 2);
  assert_true(json_equal(json_object_get(p, "previous_page"), prev));
  assert_true(json_equal(json_object_get(p, "next_page"), next));
  assert_int_equal(json_integer_value(json_object_get(p, "last_page")), last);
  assert_int_equal(json_integer_value(json_object_get(p, "total_entries")), total);
}

/* Three servers of the pool and one of another: label_selector finds the three, two per page. */
static void list_by_label(ctx_t *c) {
  uint64_t ids[3];
  char name[32];
  for (int i = 0; i < 3; i++) {
    snprintf(name, sizeof(name), "srv-list-%d", i);
    ids[i] = create(c, name, i == 1 ? "head" : NULL, NULL);
    assert_true(ids[i] > 0);
  }
  /* Another pool's, with the key by name. */
  json_t *b = json_pack("{s:s, s:s, s:s, s:[s], s:{s:s}}", "name", "srv-other", "server_type",
                        "cpx11", "image", "debian-12", "ssh_keys", "kite-test", "labels",
                        "kite-pool", "someone-else");
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  reply_t *r = call(c->api, TOKEN, "POST", "/servers", s);
  free(s);
  if (r->status != 201)
    print_error("create: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 201);
  uint64_t other =
      (uint64_t)json_integer_value(json_object_get(json_object_get(r->json, "server"), "id"));
  reply_free(r);

  char q[256];
  long st;
  snprintf(q, sizeof(q), "label_selector=kite-pool%%3D%s&per_page=2", c->pool);
  json_t *p1 = list(c, q, &st);
  assert_int_equal(st, 200);
  json_t *one = json_integer(1), *two = json_integer(2), *null = json_null();
  assert_int_equal(json_array_size(json_object_get(p1, "servers")), 2);
  assert_page(p1, 1, null, two, 2, 3);
  snprintf(q, sizeof(q), "label_selector=kite-pool%%3D%s&per_page=2&page=2", c->pool);
  json_t *p2 = list(c, q, &st);
  assert_int_equal(json_array_size(json_object_get(p2, "servers")), 1);
  assert_page(p2, 2, one, null, 2, 3);
  /* The two pages hold the three servers, oldest (lowest id) first. */
  uint64_t got[3];
  for (size_t i = 0; i < 3; i++) {
    json_t *srv = json_array_get(json_object_get(i < 2 ? p1 : p2, "servers"), i < 2 ? i : 0);
    got[i] = (uint64_t)json_integer_value(json_object_get(srv, "id"));
    assert_int_equal(got[i], ids[i]);
  }
  json_decref(p1);
  json_decref(p2);
  /* A conjunction, and a name. */
  snprintf(q, sizeof(q), "label_selector=kite-pool%%3D%s%%2Crole%%3Dhead", c->pool);
  json_t *h = list(c, q, &st);
  assert_int_equal(json_array_size(json_object_get(h, "servers")), 1);
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(json_object_get(h, "servers"), 0), "id")),
      (json_int_t)ids[1]);
  json_decref(h);
  json_t *byname = list(c, "name=srv-other", &st);
  assert_int_equal(json_array_size(json_object_get(byname, "servers")), 1);
  json_decref(byname);
  json_decref(one);
  json_decref(two);
  json_decref(null);

  for (int i = 0; i < 3; i++)
    delete_and_wait(c, ids[i]);
  delete_and_wait(c, other);
  snprintf(q, sizeof(q), "label_selector=kite-pool%%3D%s", c->pool);
  json_t *none = list(c, q, &st);
  assert_int_equal(json_array_size(json_object_get(none, "servers")), 0);
  json_decref(none);
}

/* A wrong token: 401 in Hetzner's error shape, and nothing is created. */
static void wrong_token(ctx_t *c) {
  reply_t *r = call(c->api, "not-the-token", "GET", "/servers", NULL);
  assert_error(r, 401, "unauthorized");
  reply_free(r);
  r = call(c->api, "not-the-token", "POST", "/servers",
           "{\"name\":\"x\",\"server_type\":\"cx22\",\"image\":\"ubuntu-24.04\"}");
  assert_error(r, 401, "unauthorized");
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "hetzner_servers"), 0);
}

/* Refusals in Hetzner's shapes: bad input, unknown ids, duplicate names and keys. */
static void refusals(ctx_t *c) {
  reply_t *r = call(c->api, TOKEN, "GET", "/servers/42", NULL);
  assert_error(r, 404, "not_found");
  reply_free(r);
  r = call(c->api, TOKEN, "POST", "/servers",
           "{\"name\":\"bad name!\",\"server_type\":\"cx22\",\"image\":\"ubuntu-24.04\"}");
  assert_error(r, 400, "invalid_input");
  assert_string_equal(
      json_string_value(json_object_get(
          json_array_get(
              json_object_get(json_object_get(json_object_get(r->json, "error"), "details"),
                              "fields"),
              0),
          "name")),
      "name");
  reply_free(r);
  r = call(c->api, TOKEN, "POST", "/servers",
           "{\"name\":\"x\",\"server_type\":\"cx22\",\"image\":\"ubuntu-24.04\","
           "\"ssh_keys\":[\"no-such-key\"]}");
  assert_error(r, 400, "invalid_input");
  reply_free(r);
  json_t *b = json_pack("{s:s, s:s}", "name", "another-name", "public_key", c->pub);
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  r = call(c->api, TOKEN, "POST", "/ssh_keys", s);
  free(s);
  assert_error(r, 409, "uniqueness_error");
  reply_free(r);
  char path[256];
  snprintf(path, sizeof(path), "/ssh_keys?name=kite-test");
  r = call(c->api, TOKEN, "GET", path, NULL);
  assert_int_equal(r->status, 200);
  assert_int_equal(json_array_size(json_object_get(r->json, "ssh_keys")), 1);
  reply_free(r);
  snprintf(path, sizeof(path), "/ssh_keys/%llu", (unsigned long long)c->key_id);
  r = call(c->api, TOKEN, "GET", path, NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_server_lifecycle(void **state) {
  (void)state;
  static const char *const flags[] = {"--provision-ms", "800", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "life", flags);
  lifecycle(c);
  ctx_done(c);
  free(c);
}

static void test_list_by_label_paginated(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "list", NULL);
  add_key(c);
  list_by_label(c);
  ctx_done(c);
  free(c);
}

static void test_wrong_token_is_401(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "token", NULL);
  wrong_token(c);
  ctx_done(c);
  free(c);
}

static void test_refusals_in_hetzner_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "refuse", NULL);
  add_key(c);
  refusals(c);
  uint64_t id = create(c, "srv-dup", NULL, NULL);
  assert_true(id > 0);
  reply_t *r = NULL;
  assert_int_equal(create(c, "srv-dup", NULL, &r), 0);
  assert_error(r, 409, "uniqueness_error");
  reply_free(r);
  /* No capacity, then the account's limit (one server is there already). */
  sim_faults(c, "{\"no_capacity\": true}");
  assert_int_equal(create(c, "srv-cap", NULL, &r), 0);
  assert_error(r, 412, "resource_unavailable");
  reply_free(r);
  sim_faults(c, "{\"no_capacity\": false, \"droplet_limit\": 1}");
  assert_int_equal(create(c, "srv-lim", NULL, &r), 0);
  assert_error(r, 403, "resource_limit_exceeded");
  reply_free(r);
  sim_faults(c, "{\"droplet_limit\": 25}");
  delete_and_wait(c, id);
  find_and_delete_key(c);
  ctx_done(c);
  free(c);
}

/* The fault layer answers in Hetzner's shapes: 429 rate_limit_exceeded with Retry-After and
 * RateLimit-Remaining 0, 500 server_error; and every answer has the RateLimit headers. */
static void test_injected_faults_in_hetzner_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "faults", NULL);
  sim_faults(c, "{\"next\": [\"429\", \"500\"], \"retry_after_s\": 3}");
  char v[64];
  reply_t *r = call(c->api, TOKEN, "GET", "/servers", NULL);
  assert_error(r, 429, "rate_limit_exceeded");
  assert_string_equal(header(r, "Retry-After", v, sizeof(v)), "3");
  assert_string_equal(header(r, "RateLimit-Remaining", v, sizeof(v)), "0");
  assert_string_equal(header(r, "RateLimit-Limit", v, sizeof(v)), "3600");
  reply_free(r);
  r = call(c->api, TOKEN, "GET", "/servers", NULL);
  assert_error(r, 500, "server_error");
  reply_free(r);
  r = call(c->api, TOKEN, "GET", "/servers", NULL);
  assert_int_equal(r->status, 200);
  assert_true(atoi(header(r, "RateLimit-Remaining", v, sizeof(v))) > 0);
  assert_true(atoll(header(r, "RateLimit-Reset", v, sizeof(v))) > 1700000000LL);
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "faults_injected"), 2);
  ctx_done(c);
  free(c);
}

/* A machine killed through the control endpoint: "off" when it stays, 404 when it vanishes
 * (as a dead DigitalOcean droplet). */
static void test_killed_server_is_off_or_gone(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "kill", NULL);
  add_key(c);
  uint64_t stays = create(c, "srv-stays", NULL, NULL), goes = create(c, "srv-goes", NULL, NULL);
  char seen[256], path[96];
  json_decref(wait_running(c, stays, seen, sizeof(seen)));
  json_decref(wait_running(c, goes, seen, sizeof(seen)));
  snprintf(path, sizeof(path), "/_sim/hetzner/servers/%llu/kill", (unsigned long long)stays);
  json_decref(sim_call(&c->sim, "POST", path, "{\"vanish\": false}"));
  snprintf(path, sizeof(path), "/_sim/machines/%llu/kill", (unsigned long long)goes);
  json_decref(sim_call(&c->sim, "POST", path, NULL));
  bool off = false, gone = false;
  for (int i = 0; i < 200 && !(off && gone); i++) {
    long st;
    json_t *s = get_server(c, stays, &st);
    off = st == 200 && strcmp(json_string_value(json_object_get(s, "status")), "off") == 0;
    json_decref(s);
    s = get_server(c, goes, &st);
    json_decref(s);
    gone = st == 404;
    usleep(50000);
  }
  assert_true(off);
  assert_true(gone);
  assert_int_equal(kite_local_count_tagged(c->pool), 0);
  delete_and_wait(c, stays);
  ctx_done(c);
  free(c);
}

static void test_requests_through_prism(void **state) {
  (void)state;
  const char *prism = prism_find();
  char spec[512];
  if (prism == NULL || !prism_spec("hetzner-cloud.json", spec, sizeof(spec))) {
    print_message("skipped: Prism or the Hetzner Cloud spec is not installed\n");
    skip();
  }
  static const char *const flags[] = {"--provision-ms", "800", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "prism", flags);
  char pspec[128], log_path[128], upstream[160];
  snprintf(pspec, sizeof(pspec), "%s/hetzner-cloud.json", c->dir);
  prism_upper_wildcards(spec, pspec);
  snprintf(log_path, sizeof(log_path), "%s/prism.log", c->dir);
  /* The description's paths are relative to its server, https://api.hetzner.cloud/v1: Prism
   * is asked for /servers and forwards to the emulator's /v1/servers. */
  snprintf(upstream, sizeof(upstream), "%s/v1", c->sim.url);
  int pport = 0;
  pid_t pid = prism_start(prism, pspec, upstream, log_path, &pport);
  snprintf(c->api, sizeof(c->api), "http://127.0.0.1:%d", pport);
  lifecycle(c);
  list_by_label(c);
  wrong_token(c);
  refusals(c);
  find_and_delete_key(c);
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
      cmocka_unit_test(test_server_lifecycle),
      cmocka_unit_test(test_list_by_label_paginated),
      cmocka_unit_test(test_wrong_token_is_401),
      cmocka_unit_test(test_refusals_in_hetzner_shapes),
      cmocka_unit_test(test_injected_faults_in_hetzner_shapes),
      cmocka_unit_test(test_killed_server_is_off_or_gone),
      cmocka_unit_test(test_requests_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
