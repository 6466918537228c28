/* kite-cloudsim's RunPod front (/runpod/v1/), driven over HTTP as a provider would drive RunPod's
 * REST API: on-demand and interruptible pods from RUNNING without an address to reachable, real
 * SSH to publicIp:portMappings["22"] with the host key handed over in env, an interruption, a
 * GPU type whose launches fail, stop, terminate that completes only when the node's processes
 * are gone, the refusals (key, GPU type, placement) and injected faults in RunPod's shapes, and
 * the same requests through Stoplight Prism checking them against runpod.json. */
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
#include <unistd.h>

#include "kite/kite.h"

#define TOKEN "rpa_CLOUDSIMTEST0KEY0b41f9e2"

#include "cloudsim_client.h"
#include "prism.h"

#define RTX4090 "NVIDIA GeForce RTX 4090"
#define A100 "NVIDIA A100 80GB PCIe"
#define A6000 "NVIDIA RTX A6000"
#define RTX3090 "NVIDIA GeForce RTX 3090"
#define NO_CAPACITY "create pod: There are no instances currently available"

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

/* One blocking request (test code) to base + path, with the bearer token unless it is NULL. */
static reply_t *call(const char *base, const char *token, const char *method, const char *path,
                     const char *body) {
  reply_t *r = calloc(1, sizeof(*r));
  CURL *c = curl_easy_init();
  char url[1024], auth[256];
  snprintf(url, sizeof(url), "%s%s", base, path);
  struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
  if (body)
    h = curl_slist_append(h, "Content-Type: application/json");
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

/* Asserts r is RunPod's error {"error", "status"} with this status (and, unless NULL, this
 * message). */
static void assert_error(const reply_t *r, long status, const char *error) {
  if (r->status != status || r->json == NULL)
    print_error("wanted %ld, got %ld: %s\n", status, r->status, r->body);
  assert_int_equal(r->status, status);
  assert_int_equal(json_integer_value(json_object_get(r->json, "status")), status);
  assert_true(json_is_string(json_object_get(r->json, "error")));
  if (error)
    assert_string_equal(str(r->json, "error"), error);
}

/* Asserts r is the description's UnauthorizedError: 401 {"message"}. */
static void assert_unauthorized(const reply_t *r) {
  if (r->status != 401)
    print_error("wanted 401, got %ld: %s\n", r->status, r->body);
  assert_int_equal(r->status, 401);
  assert_true(json_is_string(json_object_get(r->json, "message")));
}

/* ---- fixture -------------------------------------------------------------------------------- */

typedef struct ctx {
  sim_t sim;
  char api[128];     /* the base URL: the emulator's /runpod/v1, or Prism in front of it */
  char sim_api[128]; /* the emulator's own */
  char dir[64];      /* keys and known_hosts */
  char tag[48];      /* the names' prefix (and so the nodes' tags) */
  char pub[512], host_pub[512], host64[2048], host_pub64[512];
} ctx_t;

static void read_text(const char *path, char *out, size_t n) {
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  size_t len = fread(out, 1, n - 1, fp);
  out[len] = '\0';
  fclose(fp);
  out[strcspn(out, "\r\n")] = '\0';
}

/* The base64 of a file, on one line. */
static void base64_of(const char *path, char *out, size_t n) {
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
  snprintf(c->sim_api, sizeof(c->sim_api), "%s/runpod/v1", c->sim.url);
  snprintf(c->api, sizeof(c->api), "%s", c->sim_api);
  snprintf(c->dir, sizeof(c->dir), "/tmp/kite-test-runpod-XXXXXX");
  assert_non_null(mkdtemp(c->dir));
  snprintf(c->tag, sizeof(c->tag), "kite-t%d-%s", (int)getpid(), what);
  char cmd[512], path[128];
  snprintf(cmd, sizeof(cmd),
           "ssh-keygen -q -t ed25519 -N '' -C kite -f %s/id && "
           "ssh-keygen -q -t ed25519 -N '' -C host -f %s/host",
           c->dir, c->dir);
  assert_int_equal(system(cmd), 0);
  snprintf(path, sizeof(path), "%s/id.pub", c->dir);
  read_text(path, c->pub, sizeof(c->pub));
  snprintf(path, sizeof(path), "%s/host.pub", c->dir);
  read_text(path, c->host_pub, sizeof(c->host_pub));
  base64_of(path, c->host_pub64, sizeof(c->host_pub64));
  snprintf(path, sizeof(path), "%s/host", c->dir);
  base64_of(path, c->host64, sizeof(c->host64));
}

static void ctx_done(ctx_t *c) {
  sim_stop(&c->sim);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
  assert_int_equal(system(cmd), 0);
}

static reply_t *api(ctx_t *c, const char *method, const char *path, const char *body) {
  return call(c->api, TOKEN, method, path, body);
}

static void sim_faults(ctx_t *c, const char *json) {
  json_decref(sim_call(&c->sim, "POST", "/_sim/faults", json));
}

/* ---- pods ----------------------------------------------------------------------------------- */

/* The create body kite sends: the name TAG-label, the GPU type, kite's key and host key and the
 * pool tag in env; more (a JSON object, or NULL) is merged over it. */
static char *create_body(ctx_t *c, const char *label, const char *gpu, const char *more) {
  char name[96];
  snprintf(name, sizeof(name), "%s-%s", c->tag, label);
  json_t *b = json_pack(
      "{s:s, s:s, s:[s], s:i, s:s, s:s, s:b, s:i, s:i, s:[s], s:b, s:[], s:[], "
      "s:{s:s, s:s, s:s, s:s, s:s}}",
      "name", name, "imageName", "runpod/base:0.6.2-cuda12.4.1", "gpuTypeIds", gpu, "gpuCount", 1,
      "cloudType", "SECURE", "computeType", "GPU", "interruptible", 0, "containerDiskInGb", 20,
      "volumeInGb", 0, "ports", "22/tcp", "supportPublicIp", 1, "dockerStartCmd",
      "dockerEntrypoint", "env", "PUBLIC_KEY", c->pub, "KITE_SSH_HOST_KEY", c->host64,
      "KITE_SSH_HOST_KEY_PUB", c->host_pub64, "KITE_POOL_TAG", name, "OTHER", "1");
  if (more) {
    json_error_t e;
    json_t *m = json_loads(more, 0, &e);
    assert_non_null(m);
    json_object_update(b, m);
    json_decref(m);
  }
  char *s = json_dumps(b, JSON_COMPACT);
  json_decref(b);
  return s;
}

/* POST /pods; the new pod (201), or NULL with *out holding the refusal. */
static json_t *create(ctx_t *c, const char *label, const char *gpu, const char *more,
                      reply_t **out) {
  char *body = create_body(c, label, gpu, more);
  reply_t *r = api(c, "POST", "/pods", body);
  free(body);
  json_t *pod = NULL;
  if (r->status == 201) {
    pod = json_incref(r->json);
    assert_true(json_is_object(pod));
    assert_int_equal(strlen(str(pod, "id")), 14);
    assert_string_equal(str(pod, "desiredStatus"), "RUNNING");
    assert_true(json_is_null(json_object_get(pod, "publicIp")));
    assert_int_equal(json_object_size(json_object_get(pod, "portMappings")), 0);
  } else if (out == NULL) {
    print_error("create: %ld %s\n", r->status, r->body);
  }
  if (out)
    *out = r;
  else
    reply_free(r);
  assert_true(out || pod);
  return pod;
}

/* GET /pods/{id} through base (the API's, or the emulator's own); the pod, or NULL (*status). */
static json_t *get_pod(const char *base, const char *id, long *status) {
  char p[64];
  snprintf(p, sizeof(p), "/pods/%s", id);
  reply_t *r = call(base, TOKEN, "GET", p, NULL);
  *status = r->status;
  json_t *j = r->status == 200 ? json_incref(r->json) : NULL;
  if (r->status == 404)
    assert_error(r, 404, "pod not found");
  reply_free(r);
  return j;
}

static bool has_address(json_t *pod) {
  return json_is_string(json_object_get(pod, "publicIp")) &&
         json_object_get(json_object_get(pod, "portMappings"), "22") != NULL;
}

/* Polls until the pod has an address (want_address) or desiredStatus is want; every status seen
 * goes into seen, comma-joined. Fails when an address shows and was not wanted. */
static json_t *wait_pod(ctx_t *c, const char *id, bool want_address, const char *want, char *seen,
                        size_t n) {
  seen[0] = '\0';
  for (int i = 0; i < 600; i++) {
    long st;
    json_t *p = get_pod(c->api, id, &st);
    assert_int_equal(st, 200);
    const char *s = str(p, "desiredStatus");
    const char *last = strrchr(seen, ',');
    if (strcmp(last ? last + 1 : seen, s) != 0)
      snprintf(seen + strlen(seen), n - strlen(seen), "%s%s", seen[0] ? "," : "", s);
    if (!want_address && has_address(p))
      fail_msg("pod %s got an address: %s", id, json_dumps(p, JSON_COMPACT));
    if (want_address ? has_address(p) : strcmp(s, want) == 0)
      return p;
    json_decref(p);
    usleep(50000);
  }
  fail_msg("pod %s never was %s: %s", id, want_address ? "reachable" : want, seen);
  return NULL;
}

/* The pods GET /pods answers for a query ("" or "?…"). */
static json_t *list(ctx_t *c, const char *base, const char *query) {
  char p[512];
  snprintf(p, sizeof(p), "/pods%s", query);
  reply_t *r = call(base, TOKEN, "GET", p, NULL);
  if (r->status != 200)
    print_error("list: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 200);
  assert_true(json_is_array(r->json));
  json_t *j = json_incref(r->json);
  reply_free(r);
  return j;
}

static bool listed(json_t *pods, const char *id) {
  for (size_t i = 0; i < json_array_size(pods); i++)
    if (strcmp(str(json_array_get(pods, i), "id"), id) == 0)
      return true;
  return false;
}

static int node_procs(ctx_t *c, const char *label) {
  char tag[96];
  snprintf(tag, sizeof(tag), "%s-%s", c->tag, label);
  return kite_local_count_tagged(tag);
}

static void wait_no_procs(ctx_t *c, const char *label) {
  for (int i = 0; i < 250 && node_procs(c, label) > 0; i++)
    usleep(20000);
  assert_int_equal(node_procs(c, label), 0);
}

/* ssh to address:port with kite's key, verifying the host key handed over in env. */
static int ssh_run(ctx_t *c, const char *address, long port, char *out, size_t n) {
  char kh[128], cmd[1024];
  snprintf(kh, sizeof(kh), "%s/known_hosts", c->dir);
  FILE *fp = fopen(kh, "w");
  assert_non_null(fp);
  fprintf(fp, "[%s]:%ld %s\n", address, port, c->host_pub);
  fclose(fp);
  snprintf(cmd, sizeof(cmd),
           "ssh -i %s/id -p %ld -o BatchMode=yes -o StrictHostKeyChecking=yes "
           "-o UserKnownHostsFile=%s -o ConnectTimeout=10 -o LogLevel=ERROR %s@%s "
           "'echo kite-was-here' 2>&1",
           c->dir, port, kh, kite_local_login_user(), address);
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t len = fread(out, 1, n - 1, p);
  out[len] = '\0';
  return pclose(p);
}

/* The pod's line in /_sim/runpod/state. */
static json_t *state_of(ctx_t *c, const char *pod_id) {
  json_t *state = sim_call(&c->sim, "GET", "/_sim/runpod/state", NULL);
  json_t *pods = json_object_get(state, "pods"), *pod = NULL;
  for (size_t i = 0; i < json_array_size(pods); i++)
    if (strcmp(str(json_array_get(pods, i), "id"), pod_id) == 0)
      pod = json_incref(json_array_get(pods, i));
  json_decref(state);
  assert_non_null(pod);
  return pod;
}

/* The pod's line of /_sim/bill (by its machine's id). */
static json_t *bill_line(ctx_t *c, const char *pod_id) {
  json_t *pod = state_of(c, pod_id);
  json_t *bill = sim_call(&c->sim, "GET", "/_sim/bill", NULL);
  json_t *lines = json_object_get(bill, "machines"), *line = NULL;
  for (size_t i = 0; i < json_array_size(lines); i++)
    if (json_equal(json_object_get(json_array_get(lines, i), "id"),
                   json_object_get(pod, "machine")))
      line = json_incref(json_array_get(lines, i));
  assert_non_null(line);
  assert_string_equal(str(line, "cloud"), "runpod");
  assert_string_equal(str(line, "size"), str(pod, "gpuTypeId"));
  json_decref(pod);
  json_decref(bill);
  return line;
}

/* POST /_sim/machines/{id}/kill for the pod's machine, with body (or none). */
static void kill_machine(ctx_t *c, const char *pod_id, const char *body) {
  json_t *pod = state_of(c, pod_id);
  char cp[96];
  snprintf(cp, sizeof(cp), "/_sim/machines/%lld/kill",
           (long long)json_integer_value(json_object_get(pod, "machine")));
  json_decref(pod);
  json_decref(sim_call(&c->sim, "POST", cp, body));
}

/* DELETE: 204; while it is still shown it is TERMINATED without an address; then 404, absent
 * from the list, and every process of its node is gone. */
static void delete_and_wait(ctx_t *c, const char *id, const char *label) {
  char p[64];
  snprintf(p, sizeof(p), "/pods/%s", id);
  reply_t *r = api(c, "DELETE", p, NULL);
  if (r->status != 204)
    print_error("delete: %ld %s\n", r->status, r->body);
  assert_int_equal(r->status, 204);
  assert_int_equal(r->body_len, 0);
  reply_free(r);
  bool gone = false;
  for (int i = 0; i < 400 && !gone; i++) {
    long st;
    json_t *pod = get_pod(c->sim_api, id, &st);
    gone = st == 404;
    if (!gone) {
      assert_int_equal(st, 200);
      assert_string_equal(str(pod, "desiredStatus"), "TERMINATED");
      assert_false(has_address(pod));
      assert_non_null(strstr(str(pod, "lastStatusChange"), "Terminated by User"));
      usleep(20000);
    }
    json_decref(pod);
  }
  assert_true(gone);
  long st;
  assert_null(get_pod(c->api, id, &st));
  assert_int_equal(st, 404);
  assert_int_equal(node_procs(c, label), 0);
  json_t *all = list(c, c->api, "");
  assert_false(listed(all, id));
  json_decref(all);
}

/* ---- the scenarios (also run through Prism) ------------------------------------------------- */

/* On demand in the data center asked for: RUNNING without an address, then reachable; SSH with
 * the pinned host key; found by name; billed at the secure price; terminated. */
static void on_demand(ctx_t *c) {
  json_t *pod =
      create(c, "od", RTX4090,
             "{\"dataCenterIds\": [\"EU-RO-1\", \"EU-SE-1\"], \"countryCodes\": [\"RO\"]}", NULL);
  char id[32], seen[128], name[96];
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  json_decref(pod);
  json_t *p = wait_pod(c, id, true, NULL, seen, sizeof(seen));
  assert_string_equal(seen, "RUNNING");
  snprintf(name, sizeof(name), "%s-od", c->tag);
  assert_string_equal(str(p, "name"), name);
  assert_true(json_number_value(json_object_get(p, "costPerHr")) == 0.69);
  assert_true(json_number_value(json_object_get(p, "adjustedCostPerHr")) == 0.69);
  assert_true(json_is_false(json_object_get(p, "interruptible")));
  json_t *gpu = json_object_get(p, "gpu");
  assert_string_equal(str(gpu, "id"), RTX4090);
  assert_int_equal(json_integer_value(json_object_get(gpu, "count")), 1);
  assert_true(json_number_value(json_object_get(gpu, "secureSpotPrice")) == 0.34);
  json_t *machine = json_object_get(p, "machine");
  assert_string_equal(str(machine, "dataCenterId"), "EU-RO-1");
  assert_string_equal(str(machine, "location"), "RO");
  assert_true(json_is_true(json_object_get(machine, "secureCloud")));
  assert_int_equal(json_integer_value(json_object_get(p, "vcpuCount")), 16);
  assert_string_equal(str(p, "image"), "runpod/base:0.6.2-cuda12.4.1");
  assert_string_equal(str(json_object_get(p, "env"), "OTHER"), "1");
  assert_non_null(strstr(str(p, "lastStatusChange"), "Rented by User: "));
  assert_int_equal(strlen(str(p, "lastStartedAt")), 24);
  char address[64];
  snprintf(address, sizeof(address), "%s", str(p, "publicIp"));
  assert_int_equal(strncmp(address, "127.", 4), 0);
  long port = (long)json_integer_value(json_object_get(json_object_get(p, "portMappings"), "22"));
  assert_int_equal(port, 2222);
  json_decref(p);

  char out[1024];
  int rc = ssh_run(c, address, port, out, sizeof(out));
  if (rc != 0 || strstr(out, "kite-was-here") == NULL)
    print_error("ssh: %d %s\n", rc, out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "kite-was-here"));
  assert_true(node_procs(c, "od") > 0);

  /* By name, by GPU type and data center, by status; a name that is not there. */
  char q[256];
  snprintf(q, sizeof(q), "?name=%s", name);
  json_t *l = list(c, c->api, q);
  assert_int_equal(json_array_size(l), 1);
  assert_string_equal(str(json_array_get(l, 0), "id"), id);
  json_decref(l);
  l = list(c, c->api,
           "?gpuTypeId=NVIDIA%20RTX%20A6000&gpuTypeId=NVIDIA%20GeForce%20RTX%204090"
           "&dataCenterId=EU-RO-1&desiredStatus=RUNNING&computeType=GPU");
  assert_true(listed(l, id));
  json_decref(l);
  l = list(c, c->api, "?name=not-a-pod-of-this-test");
  assert_int_equal(json_array_size(l), 0);
  json_decref(l);
  l = list(c, c->api, "?desiredStatus=EXITED");
  assert_false(listed(l, id));
  json_decref(l);

  json_t *line = bill_line(c, id);
  assert_true(json_number_value(json_object_get(line, "price_hourly")) == 0.69);
  assert_true(json_is_false(json_object_get(line, "spot")));
  assert_string_equal(str(line, "region"), "EU-RO-1");
  json_decref(line);
  delete_and_wait(c, id, "od");
}

/* Interruptible, two GPUs: the spot price twice; reachable over SSH; interrupted: EXITED, no
 * address, its node's processes gone, and it stays so until terminated. */
static void interruptible(ctx_t *c) {
  json_t *pod = create(c, "spot", A100, "{\"interruptible\": true, \"gpuCount\": 2}", NULL);
  char id[32], seen[128], cp[96];
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  assert_true(json_is_true(json_object_get(pod, "interruptible")));
  assert_true(json_number_value(json_object_get(pod, "costPerHr")) == 2.38);
  json_decref(pod);
  json_t *p = wait_pod(c, id, true, NULL, seen, sizeof(seen));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "gpu"), "count")), 2);
  assert_int_equal(json_integer_value(json_object_get(p, "memoryInGb")), 160);
  char out[1024];
  assert_int_equal(ssh_run(c, str(p, "publicIp"), 2222, out, sizeof(out)), 0);
  json_decref(p);
  assert_true(node_procs(c, "spot") > 0);
  json_t *line = bill_line(c, id);
  assert_true(json_number_value(json_object_get(line, "price_hourly")) == 2.38);
  assert_true(json_is_true(json_object_get(line, "spot")));
  json_decref(line);

  snprintf(cp, sizeof(cp), "/_sim/runpod/pods/%s/interrupt", id);
  json_t *j = sim_call(&c->sim, "POST", cp, NULL);
  assert_true(json_is_true(json_object_get(j, "ok")));
  json_decref(j);
  long st;
  p = get_pod(c->api, id, &st);
  assert_int_equal(st, 200);
  assert_string_equal(str(p, "desiredStatus"), "EXITED");
  assert_true(json_is_null(json_object_get(p, "publicIp")));
  assert_int_equal(json_object_size(json_object_get(p, "portMappings")), 0);
  assert_int_equal(strncmp(str(p, "lastStatusChange"), "Exited by RunPod: interrupted: ", 31), 0);
  json_decref(p);
  wait_no_procs(c, "spot");
  usleep(300000);
  p = get_pod(c->api, id, &st);
  assert_string_equal(str(p, "desiredStatus"), "EXITED");
  assert_false(has_address(p));
  json_decref(p);
  json_t *l = list(c, c->api, "?desiredStatus=EXITED");
  assert_true(listed(l, id));
  json_decref(l);
  /* A second interruption has nothing to take. */
  j = sim_call(&c->sim, "POST", cp, NULL);
  assert_string_equal(str(j, "id"), "bad_request");
  json_decref(j);
  delete_and_wait(c, id, "spot");
}

/* A GPU type whose launches end EXITED: RUNNING for a while, then EXITED, never an address, no
 * node left; undone, the next launch runs. */
static void gpu_type_failure(ctx_t *c) {
  json_t *j = sim_call(&c->sim, "POST", "/_sim/runpod/gpu-types/NVIDIA%20RTX%20A6000/fail",
                       "{\"status\": \"EXITED\"}");
  assert_true(json_is_true(json_object_get(j, "ok")));
  json_decref(j);
  json_t *pod = create(c, "fail", A6000, NULL, NULL);
  char id[32], seen[128];
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  json_decref(pod);
  json_t *p = wait_pod(c, id, false, "EXITED", seen, sizeof(seen));
  assert_string_equal(seen, "RUNNING,EXITED");
  assert_true(json_is_null(json_object_get(p, "publicIp")));
  assert_non_null(strstr(str(p, "lastStatusChange"), "Exited by RunPod"));
  json_decref(p);
  assert_int_equal(node_procs(c, "fail"), 0);
  usleep(500000);
  long st;
  p = get_pod(c->api, id, &st);
  assert_string_equal(str(p, "desiredStatus"), "EXITED");
  assert_false(has_address(p));
  json_decref(p);
  delete_and_wait(c, id, "fail");
  json_decref(sim_call(&c->sim, "POST", "/_sim/runpod/gpu-types/NVIDIA+RTX+A6000/fail",
                       "{\"status\": null}"));
  pod = create(c, "fixed", A6000, NULL, NULL);
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  json_decref(pod);
  json_decref(wait_pod(c, id, true, NULL, seen, sizeof(seen)));
  delete_and_wait(c, id, "fixed");
}

/* Stop: 200, EXITED without an address, its node stopped, still listed; then terminated. */
static void stopped(ctx_t *c) {
  json_t *pod = create(c, "stop", RTX3090, NULL, NULL);
  char id[32], seen[128], p[64];
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  json_decref(pod);
  json_decref(wait_pod(c, id, true, NULL, seen, sizeof(seen)));
  snprintf(p, sizeof(p), "/pods/%s/stop", id);
  reply_t *r = api(c, "POST", p, NULL);
  assert_int_equal(r->status, 200);
  reply_free(r);
  long st;
  json_t *s = get_pod(c->api, id, &st);
  assert_string_equal(str(s, "desiredStatus"), "EXITED");
  assert_false(has_address(s));
  assert_non_null(strstr(str(s, "lastStatusChange"), "Exited by User: "));
  json_decref(s);
  wait_no_procs(c, "stop");
  json_t *l = list(c, c->api, "");
  assert_true(listed(l, id));
  json_decref(l);
  delete_and_wait(c, id, "stop");
}

/* Refusals the description defines a status for. */
static void refusals(ctx_t *c) {
  reply_t *r = call(c->api, "not-the-key", "GET", "/pods", NULL);
  assert_unauthorized(r);
  reply_free(r);
  r = call(c->api, "not-the-key", "GET", "/pods/abc", NULL);
  assert_unauthorized(r);
  reply_free(r);
  char *body = create_body(c, "bad", RTX4090, NULL);
  r = call(c->api, "not-the-key", "POST", "/pods", body);
  free(body);
  assert_unauthorized(r);
  reply_free(r);
  /* No PUBLIC_KEY; an interruptible type without a spot price; a data center without the type. */
  json_t *pod = create(c, "nokey", RTX4090, "{\"env\": {\"OTHER\": \"1\"}}", &r);
  assert_null(pod);
  assert_error(r, 400, NULL);
  assert_non_null(strstr(str(r->json, "error"), "PUBLIC_KEY"));
  reply_free(r);
  assert_null(create(c, "nospot", RTX3090, "{\"interruptible\": true}", &r));
  assert_error(r, 400, NO_CAPACITY);
  reply_free(r);
  assert_null(create(c, "where", RTX4090, "{\"dataCenterIds\": [\"EU-SE-1\"]}", &r));
  assert_error(r, 400, NO_CAPACITY);
  reply_free(r);
  /* A GPU type RunPod has and the catalog does not. */
  assert_null(create(c, "l4", "NVIDIA L4", NULL, &r));
  assert_error(r, 400, NO_CAPACITY);
  reply_free(r);
  long st;
  assert_null(get_pod(c->api, "nosuchpod00000", &st));
  assert_int_equal(st, 404);
  r = api(c, "DELETE", "/pods/nosuchpod00000", NULL);
  assert_error(r, 400, NULL);
  reply_free(r);
  r = api(c, "POST", "/pods/nosuchpod00000/stop", NULL);
  assert_error(r, 400, NULL);
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "runpod_pods"), 0);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_on_demand_lifecycle(void **state) {
  (void)state;
  static const char *const flags[] = {"--provision-ms", "600", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "life", flags);
  on_demand(c);
  ctx_done(c);
  free(c);
}

static void test_interruptible_interrupted(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "intr", NULL);
  interruptible(c);
  /* An on-demand pod is not interrupted. */
  json_t *pod = create(c, "od", RTX4090, NULL, NULL);
  char cp[96];
  snprintf(cp, sizeof(cp), "/_sim/runpod/pods/%s/interrupt", str(pod, "id"));
  json_t *j = sim_call(&c->sim, "POST", cp, NULL);
  assert_string_equal(str(j, "id"), "bad_request");
  json_decref(j);
  /* The state shows env's keys, never its values. */
  json_t *s = sim_call(&c->sim, "GET", "/_sim/runpod/state", NULL);
  char *text = json_dumps(s, JSON_COMPACT);
  assert_non_null(strstr(text, "\"KITE_SSH_HOST_KEY\""));
  assert_null(strstr(text, c->host64));
  assert_null(strstr(text, "ssh-ed25519"));
  free(text);
  json_decref(s);
  delete_and_wait(c, str(pod, "id"), "od");
  json_decref(pod);
  ctx_done(c);
  free(c);
}

static void test_gpu_type_failure_never_has_an_address(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "fail", NULL);
  gpu_type_failure(c);
  /* TERMINATED too; an unknown type or status is refused. */
  json_decref(sim_call(&c->sim, "POST", "/_sim/runpod/gpu-types/NVIDIA%20A40/fail",
                       "{\"status\": \"TERMINATED\"}"));
  json_t *pod = create(c, "term", "NVIDIA A40", NULL, NULL);
  char seen[128];
  json_decref(wait_pod(c, str(pod, "id"), false, "TERMINATED", seen, sizeof(seen)));
  assert_string_equal(seen, "RUNNING,TERMINATED");
  delete_and_wait(c, str(pod, "id"), "term");
  json_decref(pod);
  json_t *j = sim_call(&c->sim, "POST", "/_sim/runpod/gpu-types/NVIDIA%20L4/fail",
                       "{\"status\": \"EXITED\"}");
  assert_string_equal(str(j, "id"), "not_found");
  json_decref(j);
  j = sim_call(&c->sim, "POST", "/_sim/runpod/gpu-types/NVIDIA%20A40/fail",
               "{\"status\": \"exited\"}");
  assert_string_equal(str(j, "id"), "bad_request");
  json_decref(j);
  ctx_done(c);
  free(c);
}

static void test_stop(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "stop", NULL);
  stopped(c);
  ctx_done(c);
  free(c);
}

/* A crash (the generic kill, kept listed) keeps desiredStatus RUNNING without an address; the
 * default kill makes the pod vanish. */
static void test_crashed_pod(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "crash", NULL);
  json_t *pod = create(c, "crash", RTX4090, NULL, NULL);
  char id[32], seen[128];
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  json_decref(pod);
  json_decref(wait_pod(c, id, true, NULL, seen, sizeof(seen)));
  kill_machine(c, id, "{\"vanish\": false}");
  wait_no_procs(c, "crash");
  long status;
  json_t *p = get_pod(c->api, id, &status);
  assert_string_equal(str(p, "desiredStatus"), "RUNNING");
  assert_false(has_address(p));
  json_decref(p);
  delete_and_wait(c, id, "crash");
  pod = create(c, "gone", RTX4090, NULL, NULL);
  snprintf(id, sizeof(id), "%s", str(pod, "id"));
  json_decref(pod);
  json_decref(wait_pod(c, id, true, NULL, seen, sizeof(seen)));
  kill_machine(c, id, NULL);
  bool gone = false;
  for (int i = 0; i < 250 && !gone; i++) {
    json_decref(get_pod(c->api, id, &status));
    gone = status == 404;
    usleep(20000);
  }
  assert_true(gone);
  ctx_done(c);
  free(c);
}

static void test_refusals_in_runpod_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "refuse", NULL);
  refusals(c);
  /* What Prism would refuse itself (the description forbids it): no key at all, a GPU type that
   * is not in the GPUTypeId enum, a data center that is not either. */
  reply_t *r = call(c->api, NULL, "GET", "/pods", NULL);
  assert_unauthorized(r);
  reply_free(r);
  json_t *pod = create(c, "gpu", "NVIDIA GeForce GTX 1080", NULL, &r);
  assert_null(pod);
  assert_error(r, 400, NULL);
  assert_non_null(strstr(str(r->json, "error"), "NVIDIA GeForce GTX 1080"));
  reply_free(r);
  assert_null(create(c, "dc", RTX4090, "{\"dataCenterIds\": [\"MARS-1\"]}", &r));
  assert_error(r, 400, NULL);
  reply_free(r);
  assert_null(create(c, "cpu", RTX4090, "{\"computeType\": \"CPU\"}", &r));
  assert_error(r, 400, NULL);
  reply_free(r);
  assert_null(create(c, "hk", RTX4090,
                     "{\"env\": {\"PUBLIC_KEY\": \"ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIJhQLKv6Ck+vQRw5c5QwufMxaPjwzrXk+/5lZeATQM6V x\", "
                     "\"KITE_SSH_HOST_KEY\": \"bm90IGEga2V5\"}}",
                     &r));
  assert_error(r, 400, NULL);
  reply_free(r);
  r = api(c, "POST", "/pods", "{not json");
  assert_error(r, 400, NULL);
  reply_free(r);
  r = api(c, "GET", "/pods?desiredStatus=SLEEPING", NULL);
  assert_error(r, 400, NULL);
  reply_free(r);
  /* No capacity anywhere, a capacity rule in one data center, then the account's limit. */
  sim_faults(c, "{\"no_capacity\": true}");
  assert_null(create(c, "cap", RTX4090, NULL, &r));
  assert_error(r, 400, NO_CAPACITY);
  reply_free(r);
  sim_faults(c, "{\"no_capacity\": false}");
  json_decref(sim_call(&c->sim, "POST", "/_sim/capacity",
                       "{\"front\": \"runpod\", \"region\": \"EU-RO-1\", \"type\": \"" RTX4090
                       "\", \"available\": 0}"));
  assert_null(create(c, "rule", RTX4090, "{\"dataCenterIds\": [\"EU-RO-1\"]}", &r));
  assert_error(r, 400, NO_CAPACITY);
  reply_free(r);
  pod = create(c, "moved", RTX4090, "{\"dataCenterIds\": [\"EU-RO-1\", \"CA-MTL-1\"]}", NULL);
  assert_string_equal(str(json_object_get(pod, "machine"), "dataCenterId"), "CA-MTL-1");
  sim_faults(c, "{\"droplet_limit\": 1}");
  assert_null(create(c, "two", RTX4090, NULL, &r));
  assert_error(r, 400, NULL);
  reply_free(r);
  delete_and_wait(c, str(pod, "id"), "moved");
  json_decref(pod);
  ctx_done(c);
  free(c);
}

/* The fault layer answers in RunPod's shapes: 429 with Retry-After, 500, a truncated body. */
static void test_injected_faults_in_runpod_shapes(void **state) {
  (void)state;
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "faults", NULL);
  sim_faults(c, "{\"next\": [\"429\", \"500\", \"malformed\"]}");
  reply_t *r = api(c, "GET", "/pods", NULL);
  assert_error(r, 429, NULL);
  reply_free(r);
  r = api(c, "GET", "/pods", NULL);
  assert_error(r, 500, "Internal Server Error");
  reply_free(r);
  r = api(c, "GET", "/pods", NULL);
  assert_int_equal(r->status, 200);
  assert_null(r->json);
  reply_free(r);
  r = api(c, "GET", "/pods", NULL);
  assert_int_equal(r->status, 200);
  assert_int_equal(json_array_size(r->json), 0);
  reply_free(r);
  assert_int_equal(sim_state_count(&c->sim, "/_sim/state", "faults_injected"), 3);
  ctx_done(c);
  free(c);
}

/* runpod.json as RunPod answers it, where the two disagree (nothing else changes): the
 * description requires the API key on every operation (its global security) and RunPod answers
 * a wrong one 401, but it declares 401 only on some operations; the copy at `to` declares it,
 * with the description's own UnauthorizedError, on the pod operations that lack it. */
static void prism_runpod_as_answered(const char *from, const char *to) {
  json_error_t e;
  json_t *spec = json_load_file(from, 0, &e);
  assert_non_null(spec);
  static const char *const ops[][2] = {
      {"/pods", "get"}, {"/pods", "post"}, {"/pods/{podId}", "get"}};
  for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
    json_t *responses = json_object_get(
        json_object_get(json_object_get(json_object_get(spec, "paths"), ops[i][0]), ops[i][1]),
        "responses");
    assert_non_null(responses);
    assert_null(json_object_get(responses, "401"));
    json_object_set_new(responses, "401",
                        json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", "Unauthorized.",
                                  "content", "application/json", "schema", "$ref",
                                  "#/components/schemas/UnauthorizedError"));
  }
  assert_int_equal(json_dump_file(spec, to, JSON_COMPACT), 0);
  json_decref(spec);
}

static void test_requests_through_prism(void **state) {
  (void)state;
  const char *prism = prism_find();
  char spec[512];
  if (prism == NULL || !prism_spec("runpod.json", spec, sizeof(spec))) {
    print_message("skipped: Prism or the RunPod spec is not installed\n");
    skip();
  }
  static const char *const flags[] = {"--provision-ms", "600", NULL};
  ctx_t *c = calloc(1, sizeof(*c));
  ctx_init(c, "prism", flags);
  char pspec[128], log_path[128];
  snprintf(pspec, sizeof(pspec), "%s/runpod.json", c->dir);
  prism_runpod_as_answered(spec, pspec);
  snprintf(log_path, sizeof(log_path), "%s/prism.log", c->dir);
  /* The description's server is https://rest.runpod.io/v1 and its paths (/pods) are relative to
   * it: Prism forwards to the emulator's /runpod/v1, joining the paths. */
  int pport = 0;
  pid_t pid = prism_start(prism, pspec, c->sim_api, log_path, &pport);
  snprintf(c->api, sizeof(c->api), "http://127.0.0.1:%d", pport);
  refusals(c);
  on_demand(c);
  interruptible(c);
  gpu_type_failure(c);
  stopped(c);
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
      cmocka_unit_test(test_on_demand_lifecycle),
      cmocka_unit_test(test_interruptible_interrupted),
      cmocka_unit_test(test_gpu_type_failure_never_has_an_address),
      cmocka_unit_test(test_stop),
      cmocka_unit_test(test_crashed_pod),
      cmocka_unit_test(test_refusals_in_runpod_shapes),
      cmocka_unit_test(test_injected_faults_in_runpod_shapes),
      cmocka_unit_test(test_requests_through_prism),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  curl_global_cleanup();
  return rc;
}
