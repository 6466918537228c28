/* The Verda (formerly DataCrunch) front of the emulator: OAuth2 client-credentials tokens, the
 * instance type catalog, availability, locations, SSH keys, startup scripts and instances, with
 * the paths, field names, status codes and error bodies ({code, message}) of Verda's OpenAPI
 * description (specs/verda-openapi.json, paths relative to https://api.verda.com) and of the
 * digest beside it (specs/verda-api.md). The Hetzner front owns /v1/, so this one serves the
 * description's paths under /verda: a client's base URL is http://127.0.0.1:PORT/verda/v1.
 *
 *   POST   /v1/oauth2/token            {grant_type client_credentials, client_id, client_secret}
 *                                      or {grant_type refresh_token, refresh_token} → 200
 *                                      {access_token, token_type, expires_in, refresh_token, scope}
 *   GET    /v1/instance-types          the catalog (no token); prices are strings
 *   GET    /v1/instance-availability[/{type}]  ?is_spot=&location_code= → per location / bool
 *   GET    /v1/locations
 *   GET|POST|DELETE /v1/ssh-keys, GET|DELETE /v1/ssh-keys/{id} (and the /v1/sshkeys aliases)
 *   GET|POST|DELETE /v1/scripts, GET|DELETE /v1/scripts/{id}
 *   POST   /v1/instances               DeployInstancePublicDto → 202, the id as a JSON string
 *   GET    /v1/instances[?status=&tag=&computeId=], GET /v1/instances/{id}
 *   PUT    /v1/instances (and the deprecated POST /v1/instances/action): delete, shutdown
 *
 *   POST   /_sim/verda/instances/{id}/discontinue   (control) a spot instance is evicted
 *   POST   /_sim/verda/instance-types/{type}/fail   (control) {"status": "error"|
 *                                      "installation_failed"|"no_capacity"|null}
 *   POST   /_sim/verda/token-ttl                    (control) {"seconds": N}: tokens issued from
 *                                                   then on expire after N s
 *   GET    /_sim/verda/state                        (control)
 *
 * An instance is a machine (machines.c): its node is named by the hostname and tagged with the
 * value of the instance's "kite-pool" tag (else the hostname); the keys named in ssh_key_ids are
 * authorized on it. kite's startup script installs a host key kite made; the emulator runs no
 * script but does what that one would: the lines KITE_SSH_HOST_KEY=<base64 of an OpenSSH ed25519
 * private key file> and KITE_SSH_HOST_KEY_PUB=<base64 of its public key line> make that key the
 * node's before the instance is first reported running.
 *
 * Statuses: ordered (the first ORDER_MS), provisioning (until the node listens and
 * --provision-ms passed), running (ip set); offline after a shutdown or a crash (ip null);
 * discontinued after a spot eviction; error, installation_failed or no_capacity for a launch of a
 * failing type; deleting until every process of the node is gone, then 404. A discontinued or
 * failed instance has no machine left (so its bill line ends) but stays listed until deleted.
 * Every instance has an OS volume; volumes are tracked (attached, detached, trash, deleted) so a
 * test can see what would still cost money. Billing is by the second (an assumption: the
 * description says nothing of the granularity), at price_per_hour, or spot_price for spot. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cloudsim.h"

#define CLOUD "verda"
#define MOUNT "/verda"
#define SCOPE "cloud-api-v1"
#define USER_ID "4f7d8a2e-3b1c-4e5f-9a6b-7c8d9e0f1a2b"
#define DEFAULT_CLIENT_ID "kite-cloudsim-client"
#define DEFAULT_TTL_S 3600
#define DEFAULT_OS_VOLUME_GB 50
/* A new instance is "ordered" this long, as a real order is before a host takes it. */
#define ORDER_MS 300
/* A launch that fails is "provisioning" until this age, then shows its failure. */
#define FAIL_AFTER_MS 1000
#define PROJECT_QUOTA 500
#define ENDPOINT_QUOTA 60
#define LIST_QUOTA 120 /* GET /v1/instances and GET /v1/volumes */
#define WINDOW_S 60

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the catalog ---------------------------------------------------------------------------- */

static const struct location {
  const char *code, *name, *country;
} locations[] = {
    {"FIN-01", "Finland 1", "FI"}, {"FIN-02", "Finland 2", "FI"}, {"ICE-01", "Iceland 1", "IS"}};

#define FIN01 1u
#define FIN02 2u
#define ICE01 4u

typedef struct itype {
  const char *name, *id;
  const char *model, *gpu_name, *display_name, *manufacturer, *p2p;
  int gpus, gpu_gb; /* gpu_gb: all GPUs together */
  int cores, ram_gb;
  double price, spot;
  unsigned on_demand, spot_at; /* where it is available: FIN01 | FIN02 | ICE01 */
  const char *best_for[3];
} itype_t;

static const itype_t types[] = {
    {"1V100.6V",
     "b7d4c3a1-0f4e-4d61-9c55-1a2b3c4d5e01",
     "V100",
     "Tesla V100 16GB",
     "NVIDIA Tesla V100 16GB",
     "NVIDIA",
     "",
     1,
     16,
     6,
     23,
     0.39,
     0.13,
     FIN01 | FIN02,
     FIN01 | FIN02,
     {"Small ML models", "Inference", "Development"}},
    {"1A100.22V",
     "b7d4c3a1-0f4e-4d61-9c55-1a2b3c4d5e02",
     "A100",
     "A100 SXM4 40GB",
     "NVIDIA A100 SXM4 40GB",
     "NVIDIA",
     "",
     1,
     40,
     22,
     120,
     1.29,
     0.43,
     FIN01 | FIN02,
     FIN02,
     {"Large ML models", "FP64 HPC", "Fine-tuning"}},
    {"1H100.80S.30V",
     "b7d4c3a1-0f4e-4d61-9c55-1a2b3c4d5e03",
     "H100",
     "H100 SXM5 80GB",
     "NVIDIA H100 SXM5 80GB",
     "NVIDIA",
     "",
     1,
     80,
     30,
     120,
     2.19,
     0.73,
     FIN01 | FIN02 | ICE01,
     FIN01 | ICE01,
     {"Giant ML models", "Fine-tuning", "Inference"}},
    {"8H100.80S.176V",
     "b7d4c3a1-0f4e-4d61-9c55-1a2b3c4d5e04",
     "H100",
     "H100 SXM5 80GB",
     "NVIDIA H100 SXM5 80GB",
     "NVIDIA",
     "900 GB/s",
     8,
     640,
     176,
     1480,
     17.52,
     5.84,
     FIN02 | ICE01,
     ICE01,
     {"Giant ML models", "Multi-GPU training", "NVLINK"}},
    {"CPU.4V.16G",
     "b7d4c3a1-0f4e-4d61-9c55-1a2b3c4d5e05",
     "CPU Node",
     "CPU Node",
     "AMD EPYC CPU Node",
     "AMD",
     "",
     0,
     0,
     4,
     16,
     0.05,
     0.02,
     FIN01 | FIN02 | ICE01,
     FIN01 | FIN02,
     {"Web services", "Data processing", "Development"}},
    {"1RTX6000ADA.10V",
     "b7d4c3a1-0f4e-4d61-9c55-1a2b3c4d5e06",
     "RTX6000 Ada",
     "RTX 6000 Ada 48GB",
     "NVIDIA RTX 6000 Ada 48GB",
     "NVIDIA",
     "",
     1,
     48,
     10,
     60,
     0.89,
     0.30,
     ICE01,
     ICE01,
     {"Rendering", "Inference", "Small ML models"}},
};

static const struct image {
  const char *type, *os_name;
} images[] = {
    {"ubuntu-24.04-cuda-12.8-open-docker", "Ubuntu 24.04"},
    {"ubuntu-24.04-cuda-12.8-open", "Ubuntu 24.04"},
    {"ubuntu-22.04-cuda-12.4-docker", "Ubuntu 22.04"},
    {"ubuntu-24.04", "Ubuntu 24.04"},
    {"ubuntu-22.04", "Ubuntu 22.04"},
};

static const itype_t *type_find(const char *name) {
  for (size_t i = 0; name && i < COUNT(types); i++)
    if (strcmp(types[i].name, name) == 0)
      return &types[i];
  return NULL;
}

static int location_index(const char *code) {
  for (size_t i = 0; code && i < COUNT(locations); i++)
    if (strcmp(locations[i].code, code) == 0)
      return (int)i;
  return -1;
}

static const struct image *image_find(const char *type) {
  for (size_t i = 0; type && i < COUNT(images); i++)
    if (strcmp(images[i].type, type) == 0)
      return &images[i];
  return NULL;
}

/* Whether the catalog has type t at location li for that market (--no-capacity: nowhere). */
static bool available(const sim_t *sim, const itype_t *t, int li, bool spot) {
  return !sim->faults.no_capacity && li >= 0 && ((spot ? t->spot_at : t->on_demand) >> li) & 1u;
}

/* ---- the project ---------------------------------------------------------------------------- */

typedef struct token {
  char access[128], refresh[128];
  const char *grant;
  uint64_t issued_ms, expires_ms;
  struct token *next;
} token_t;

typedef struct vkey {
  char id[40];
  char *name, *key, *fingerprint;
  struct vkey *next; /* oldest first */
} vkey_t;

typedef struct vscript {
  char id[40];
  char *name, *script;
  char created_at[32];
  uint64_t seq; /* the order of creation, for created_at ties */
  struct vscript *next;
} vscript_t;

typedef struct volume {
  char id[40], instance_id[40]; /* instance_id "" once detached */
  char *name;
  double size;
  char type[24], location[8], on_spot_discontinue[24];
  char state[12]; /* attached, detached, trash, deleted */
  bool os;
  struct volume *next;
} volume_t;

/* What the front keeps of an instance beside its machine. */
typedef struct inst {
  uint64_t mid; /* its machine's id */
  char id[40];
  const itype_t *type;
  int loc;
  char *hostname, *description, *image, *os_name, *script_id;
  json_t *ssh_key_ids, *tags; /* [id...], [{id, key, value}...] */
  char os_volume_id[40];
  bool spot;
  const char *contract;
  double price;
  char created_at[32];
  uint64_t created_ms;
  char jupyter_token[40];
  char fail[24]; /* its type's failure when it was launched, or "" */
  bool discontinued, shut_down, deleted;
  struct inst *next; /* oldest first */
} inst_t;

static struct {
  token_t *tokens;
  vkey_t *keys;
  vscript_t *scripts;
  uint64_t script_seq;
  volume_t *volumes;
  inst_t *insts;
  char fail[COUNT(types)][24]; /* per type: how its launches fail, or "" */
  unsigned ttl_s;              /* 0: the --verda-token-ttl */
  /* rate-limit accounting of the current window */
  time_t window_start;
  unsigned project_used;
  struct {
    char key[160];
    unsigned used;
  } endpoints[128];
  size_t endpoint_n;
} vs;

/* ---- small things --------------------------------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void iso_now(char *out, size_t n) {
  uint64_t ms = now_ms();
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char base[24];
  strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, n, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

/* A random version 4 UUID. */
static void new_uuid(char out[40]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1)
    for (size_t i = 0; i < sizeof(b); i++)
      b[i] = (unsigned char)rand();
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
           b[15]);
}

static void random_hex(char *out, size_t bytes) {
  unsigned char b[48];
  if (bytes > sizeof(b))
    bytes = sizeof(b);
  if (RAND_bytes(b, (int)bytes) != 1)
    for (size_t i = 0; i < bytes; i++)
      b[i] = (unsigned char)rand();
  for (size_t i = 0; i < bytes; i++)
    sprintf(out + 2 * i, "%02x", b[i]);
}

/* Standard base64 text decoded (malloc'd, NUL-terminated), or NULL. */
static char *base64_text(const char *b64) {
  size_t n = strlen(b64);
  if (n == 0 || n % 4 != 0 || n > 64 * 1024)
    return NULL;
  unsigned char *out = malloc(n + 1);
  int len = out ? EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n) : -1;
  if (len < 0) {
    free(out);
    return NULL;
  }
  for (size_t i = n; i > 0 && b64[i - 1] == '='; i--) /* the padding decodes as zero bytes */
    len--;
  out[len] = '\0';
  if (strlen((char *)out) != (size_t)len) {
    free(out);
    return NULL;
  }
  return (char *)out;
}

/* j as compact JSON text (malloc'd), j released; prices to ten significant digits. */
static char *dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
  json_decref(j);
  return s;
}

static char *price_text(double p) {
  return sim_sprintf("%.2f", p);
}

static json_t *body_json(const http_req_t *req) {
  json_error_t e;
  return req->body_len ? json_loadb(req->body, req->body_len, 0, &e) : NULL;
}

/* ---- errors and rate limits ----------------------------------------------------------------- */

static void add_ratelimit(http_resp_t *resp, unsigned endpoint_quota, unsigned endpoint_used,
                          bool limited) {
  if (resp->headers && strstr(resp->headers, "RateLimit-Policy:"))
    return;
  time_t now = time(NULL);
  long t = WINDOW_S - (long)(now - vs.window_start);
  if (t < 1)
    t = 1;
  unsigned pr = vs.project_used < PROJECT_QUOTA ? PROJECT_QUOTA - vs.project_used : 0;
  unsigned er = limited ? 0 : endpoint_used < endpoint_quota ? endpoint_quota - endpoint_used : 0;
  http_add_header(resp, "RateLimit-Policy: \"project\";q=%u;w=%u, \"endpoint\";q=%u;w=%u",
                  PROJECT_QUOTA, WINDOW_S, endpoint_quota, WINDOW_S);
  http_add_header(resp, "RateLimit: \"project\";r=%u;t=%ld, \"endpoint\";r=%u;t=%ld", pr, t, er, t);
}

/* Counts one authenticated request of (method, path) in the current 60 s window. The limits are
 * reported, not enforced (an injected 429 stands for one that was hit). */
static void count_request(const char *method, const char *path, unsigned *quota, unsigned *used) {
  time_t now = time(NULL);
  if (vs.window_start == 0 || now - vs.window_start >= WINDOW_S) {
    vs.window_start = now;
    vs.project_used = 0;
    vs.endpoint_n = 0;
  }
  vs.project_used++;
  char key[160];
  snprintf(key, sizeof(key), "%s %s", method, path);
  *quota = strcmp(method, "GET") == 0 &&
                   (strcmp(path, "/v1/instances") == 0 || strcmp(path, "/v1/volumes") == 0)
               ? LIST_QUOTA
               : ENDPOINT_QUOTA;
  size_t i = 0;
  while (i < vs.endpoint_n && strcmp(vs.endpoints[i].key, key) != 0)
    i++;
  if (i == vs.endpoint_n && i < COUNT(vs.endpoints)) {
    snprintf(vs.endpoints[i].key, sizeof(vs.endpoints[i].key), "%s", key);
    vs.endpoints[i].used = 0;
    vs.endpoint_n++;
  }
  *used = i < COUNT(vs.endpoints) ? ++vs.endpoints[i].used : 1;
}

/* The description's PublicApiErrorResponseDto {code, message}. An injected 429 or 500 (the fault
 * layer calls this directly) carries the rate-limit headers as every authenticated answer does. */
static void verda_error(http_resp_t *resp, int status, const char *code, const char *message) {
  http_json(resp, status, dump(json_pack("{s:s, s:s}", "code", code, "message", message)));
  if (status == 429 || status == 500)
    add_ratelimit(resp, ENDPOINT_QUOTA, 0, status == 429);
}

static void bad_request(http_resp_t *resp, const char *message) {
  verda_error(resp, 400, "invalid_request", message);
}

static void not_found(http_resp_t *resp, const char *message) {
  verda_error(resp, 404, "not_found", message);
}

/* ---- tokens --------------------------------------------------------------------------------- */

static const char *client_id(void) {
  const char *c = getenv("KITE_CLOUDSIM_VERDA_CLIENT_ID");
  return c && *c ? c : DEFAULT_CLIENT_ID;
}

static unsigned token_ttl(const sim_t *sim) {
  return vs.ttl_s ? vs.ttl_s : sim->verda_token_ttl_s ? sim->verda_token_ttl_s : DEFAULT_TTL_S;
}

/* A JWT-shaped token (the description's bearerFormat), random in its payload and signature. */
static void token_text(char *out, size_t n) {
  char a[40], b[40];
  random_hex(a, 16);
  random_hex(b, 16);
  snprintf(out, n, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%s.%s", a, b);
}

static void token_issue(sim_t *sim, const char *grant, http_resp_t *resp) {
  token_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    verda_error(resp, 500, "server_error", "Internal server error");
    return;
  }
  token_text(t->access, sizeof(t->access));
  token_text(t->refresh, sizeof(t->refresh));
  t->grant = grant;
  unsigned ttl = token_ttl(sim);
  t->issued_ms = now_ms();
  t->expires_ms = t->issued_ms + (uint64_t)ttl * 1000;
  t->next = vs.tokens;
  vs.tokens = t;
  kite_secret_add(sim->rt, t->access);
  kite_secret_add(sim->rt, t->refresh);
  http_json(
      resp, 200,
      dump(json_pack("{s:s, s:s, s:i, s:s, s:s}", "access_token", t->access, "token_type", "Bearer",
                     "expires_in", (int)ttl, "refresh_token", t->refresh, "scope", SCOPE)));
}

/* POST /v1/oauth2/token. A refresh gives a new access token and a new refresh token; the old
 * refresh token stays good (so a refresh whose answer was lost can be sent again). */
static void token_grant(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_t *b = body_json(req);
  const char *grant = json_string_value(json_object_get(b, "grant_type"));
  if (!json_is_object(b)) {
    bad_request(resp, "Request body is not valid JSON");
  } else if (grant && strcmp(grant, "client_credentials") == 0) {
    const char *id = json_string_value(json_object_get(b, "client_id"));
    const char *secret = json_string_value(json_object_get(b, "client_secret"));
    if (id == NULL || secret == NULL)
      bad_request(resp, "client_id and client_secret are required");
    else if (strcmp(id, client_id()) != 0 || strcmp(secret, sim->token) != 0)
      verda_error(resp, 401, "unauthorized_request", "Invalid client id or client secret");
    else
      token_issue(sim, "client_credentials", resp);
  } else if (grant && strcmp(grant, "refresh_token") == 0) {
    const char *rt = json_string_value(json_object_get(b, "refresh_token"));
    const token_t *t = vs.tokens;
    while (t && rt && strcmp(t->refresh, rt) != 0)
      t = t->next;
    if (rt == NULL)
      bad_request(resp, "refresh_token is required");
    else if (t == NULL)
      verda_error(resp, 401, "unauthorized_request", "Invalid refresh token");
    else
      token_issue(sim, "refresh_token", resp);
  } else {
    bad_request(resp, "unsupported grant type");
  }
  json_decref(b);
}

/* Whether req carries a live access token; *why says what is wrong when not. */
static bool authorized(const http_req_t *req, const char **why) {
  const char *a = http_req_header(req, "Authorization");
  if (a == NULL || strncmp(a, "Bearer ", 7) != 0) {
    *why = "Missing bearer token";
    return false;
  }
  for (const token_t *t = vs.tokens; t; t = t->next)
    if (strcmp(t->access, a + 7) == 0) {
      *why = "Access token expired";
      return now_ms() < t->expires_ms;
    }
  *why = "Invalid access token";
  return false;
}

/* ---- catalog answers ------------------------------------------------------------------------ */

static json_t *spec_objects(const itype_t *t, json_t *j) {
  char cpu[32], gpu[64], gmem[32], mem[32];
  snprintf(cpu, sizeof(cpu), "%d CPU", t->cores);
  if (t->gpus)
    snprintf(gpu, sizeof(gpu), "%dx %s", t->gpus, t->gpu_name);
  else
    gpu[0] = '\0';
  if (t->gpu_gb)
    snprintf(gmem, sizeof(gmem), "%dGB GPU RAM", t->gpu_gb);
  else
    gmem[0] = '\0';
  snprintf(mem, sizeof(mem), "%dGB RAM", t->ram_gb);
  json_object_set_new(j, "cpu",
                      json_pack("{s:s, s:i, s:s}", "description", cpu, "number_of_cores", t->cores,
                                "model", t->gpus ? "AMD EPYC Genoa" : "AMD EPYC Milan"));
  json_object_set_new(j, "gpu",
                      json_pack("{s:s, s:i}", "description", gpu, "number_of_gpus", t->gpus));
  json_object_set_new(j, "gpu_memory",
                      json_pack("{s:s, s:i}", "description", gmem, "size_in_gigabytes", t->gpu_gb));
  json_object_set_new(j, "memory",
                      json_pack("{s:s, s:i}", "description", mem, "size_in_gigabytes", t->ram_gb));
  json_object_set_new(j, "storage", json_pack("{s:s}", "description", "dynamic"));
  return j;
}

static json_t *type_json(const itype_t *t, const char *currency) {
  /* EUR prices at a fixed rate: the emulator has no exchange rates. */
  double k = strcmp(currency, "eur") == 0 ? 0.92 : 1.0;
  char *pp = price_text(t->price * k), *sp = price_text(t->spot * k);
  char *sv = price_text(t->price * k * 0.8), *svs = price_text(t->spot * k * 0.8);
  char *dyn = price_text(t->price * k * 2.0);
  json_t *best = json_array(), *os = json_array();
  for (size_t i = 0; i < COUNT(t->best_for); i++)
    json_array_append_new(best, json_string(t->best_for[i]));
  for (size_t i = 0; i < COUNT(images); i++)
    if (t->gpus || strstr(images[i].type, "cuda") == NULL)
      json_array_append_new(os, json_string(images[i].type));
  json_t *j = json_pack(
      "{s:o, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o}",
      "best_for", best, "deploy_warning", "", "description", "Dedicated Hardware Instance", "id",
      t->id, "instance_type", t->name, "model", t->model, "name", t->gpu_name, "p2p", t->p2p,
      "price_per_hour", pp, "spot_price", sp, "dynamic_price", pp, "max_dynamic_price", dyn,
      "serverless_price", sv, "serverless_spot_price", svs, "currency", currency, "manufacturer",
      t->manufacturer, "supported_os", os);
  json_object_set_new(j, "display_name", json_string(t->display_name));
  free(pp);
  free(sp);
  free(sv);
  free(svs);
  free(dyn);
  return spec_objects(t, j);
}

static void types_list(const http_req_t *req, http_resp_t *resp) {
  char *cur = http_query_param(req, "currency");
  if (cur && strcmp(cur, "usd") != 0 && strcmp(cur, "eur") != 0) {
    bad_request(resp, "currency must be usd or eur");
  } else {
    json_t *list = json_array();
    for (size_t i = 0; i < COUNT(types); i++)
      json_array_append_new(list, type_json(&types[i], cur ? cur : "usd"));
    http_json(resp, 200, dump(list));
  }
  free(cur);
}

/* is_spot (or the deprecated isSpot) as the query has it: "true" or anything else. */
static bool query_spot(const http_req_t *req) {
  char *v = http_query_param(req, "is_spot");
  if (v == NULL)
    v = http_query_param(req, "isSpot");
  bool spot = v && strcmp(v, "true") == 0;
  free(v);
  return spot;
}

static char *query_location(const http_req_t *req) {
  char *v = http_query_param(req, "location_code");
  return v ? v : http_query_param(req, "locationCode");
}

static void availability_list(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  bool spot = query_spot(req);
  char *loc = query_location(req);
  json_t *list = json_array();
  for (size_t l = 0; l < COUNT(locations); l++) {
    if (loc && strcmp(loc, locations[l].code) != 0)
      continue;
    json_t *av = json_array();
    for (size_t i = 0; i < COUNT(types); i++)
      if (available(sim, &types[i], (int)l, spot))
        json_array_append_new(av, json_string(types[i].name));
    json_array_append_new(
        list, json_pack("{s:s, s:o}", "location_code", locations[l].code, "availabilities", av));
  }
  free(loc);
  http_json(resp, 200, dump(list));
}

/* true when the type is available at the location (at any location when none is given). */
static void availability_one(sim_t *sim, const char *type, const http_req_t *req,
                             http_resp_t *resp) {
  const itype_t *t = type_find(type);
  bool spot = query_spot(req), yes = false;
  char *loc = query_location(req);
  for (size_t l = 0; t && l < COUNT(locations); l++)
    if (loc == NULL || strcmp(loc, locations[l].code) == 0)
      yes = yes || available(sim, t, (int)l, spot);
  free(loc);
  http_json(resp, 200, strdup(yes ? "true" : "false"));
}

static void locations_list(http_resp_t *resp) {
  json_t *list = json_array();
  for (size_t i = 0; i < COUNT(locations); i++)
    json_array_append_new(list, json_pack("{s:s, s:s, s:s}", "code", locations[i].code, "name",
                                          locations[i].name, "country_code", locations[i].country));
  http_json(resp, 200, dump(list));
}

/* ---- SSH keys ------------------------------------------------------------------------------- */

static vkey_t *key_find(const char *id) {
  for (vkey_t *k = vs.keys; k && id; k = k->next)
    if (strcmp(k->id, id) == 0)
      return k;
  return NULL;
}

static json_t *key_json(const vkey_t *k) {
  return json_pack("{s:s, s:s, s:s, s:s?, s:s}", "id", k->id, "name", k->name, "key", k->key,
                   "fingerprint", k->fingerprint, "created_by_user_id", USER_ID);
}

static void keys_list(http_resp_t *resp) {
  json_t *list = json_array();
  for (vkey_t *k = vs.keys; k; k = k->next)
    json_array_append_new(list, key_json(k));
  http_json(resp, 200, dump(list));
}

static void keys_create(const http_req_t *req, http_resp_t *resp) {
  json_t *b = body_json(req);
  const char *name = json_string_value(json_object_get(b, "name"));
  const char *key = json_string_value(json_object_get(b, "key"));
  char *fp = key ? sim_key_fingerprint(key) : NULL;
  if (name == NULL || *name == '\0' || key == NULL || *key == '\0') {
    bad_request(resp, "name and key are required");
  } else if (fp == NULL || strchr(key, '\n') != NULL) {
    bad_request(resp, "key must be one OpenSSH public key line");
  } else {
    vkey_t *k = calloc(1, sizeof(*k));
    new_uuid(k->id);
    k->name = strdup(name);
    k->key = strdup(key);
    k->fingerprint = fp;
    fp = NULL;
    vkey_t **pp = &vs.keys;
    while (*pp)
      pp = &(*pp)->next;
    *pp = k;
    http_json(resp, 201, dump(json_string(k->id)));
  }
  free(fp);
  json_decref(b);
}

static void key_free(vkey_t *k) {
  free(k->name);
  free(k->key);
  free(k->fingerprint);
  free(k);
}

static bool key_remove(const char *id) {
  for (vkey_t **pp = &vs.keys; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->id, id) == 0) {
      vkey_t *k = *pp;
      *pp = k->next;
      key_free(k);
      return true;
    }
  return false;
}

/* The ids of a DELETE's body field (an array of strings), checked against find; NULL with resp
 * set when the body is wrong or an id is unknown (then nothing is deleted). */
static json_t *ids_to_delete(const http_req_t *req, const char *field, bool (*known)(const char *),
                             const char *what, http_resp_t *resp) {
  json_t *b = body_json(req), *ids = json_object_get(b, field);
  char msg[160];
  if (!json_is_array(ids)) {
    snprintf(msg, sizeof(msg), "%s must be an array of ids", field);
    bad_request(resp, msg);
    json_decref(b);
    return NULL;
  }
  for (size_t i = 0; i < json_array_size(ids); i++) {
    const char *id = json_string_value(json_array_get(ids, i));
    if (id == NULL || !known(id)) {
      snprintf(msg, sizeof(msg), "%s not found: %s", what, id ? id : "(not a string)");
      not_found(resp, msg);
      json_decref(b);
      return NULL;
    }
  }
  json_incref(ids);
  json_decref(b);
  return ids;
}

static bool key_known(const char *id) {
  return key_find(id) != NULL;
}

static void keys_delete_many(const http_req_t *req, http_resp_t *resp) {
  json_t *ids = ids_to_delete(req, "keys", key_known, "SSH key", resp);
  for (size_t i = 0; ids && i < json_array_size(ids); i++)
    key_remove(json_string_value(json_array_get(ids, i)));
  if (ids)
    http_json(resp, 200, NULL);
  json_decref(ids);
}

static void key_one(const char *id, bool del, http_resp_t *resp) {
  vkey_t *k = key_find(id);
  if (k == NULL)
    not_found(resp, "SSH key not found");
  else if (del) {
    key_remove(id);
    http_json(resp, 200, NULL);
  } else
    http_json(resp, 200, dump(key_json(k)));
}

/* ---- startup scripts ------------------------------------------------------------------------ */

static vscript_t *script_find(const char *id) {
  for (vscript_t *s = vs.scripts; s && id; s = s->next)
    if (strcmp(s->id, id) == 0)
      return s;
  return NULL;
}

static bool script_known(const char *id) {
  return script_find(id) != NULL;
}

static json_t *script_json(const vscript_t *s) {
  return json_pack("{s:s, s:s, s:s, s:s}", "id", s->id, "name", s->name, "script", s->script,
                   "created_at", s->created_at);
}

static void script_free(vscript_t *s) {
  free(s->name);
  free(s->script);
  free(s);
}

static bool script_remove(const char *id) {
  for (vscript_t **pp = &vs.scripts; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->id, id) == 0) {
      vscript_t *s = *pp;
      *pp = s->next;
      script_free(s);
      return true;
    }
  return false;
}

static int script_cmp_asc(const void *a, const void *b) {
  const vscript_t *x = *(vscript_t *const *)a, *y = *(vscript_t *const *)b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* GET /v1/scripts: name (a part of it), orderBy created_at, orderDirection (desc by default),
 * page (from 1) and pageSize (10 by default, at most 100); the body is the page, the counts are
 * in X-Page, X-Page-Size and X-Total-Count. */
static void scripts_list(const http_req_t *req, http_resp_t *resp) {
  char *name = http_query_param(req, "name"), *page_s = http_query_param(req, "page");
  char *size_s = http_query_param(req, "pageSize"), *dir = http_query_param(req, "orderDirection");
  char *order = http_query_param(req, "orderBy");
  long page = page_s ? atol(page_s) : 1, size = size_s ? atol(size_s) : 10;
  if (page < 1 || size < 1 || size > 100 || (dir && strcmp(dir, "asc") && strcmp(dir, "desc")) ||
      (order && strcmp(order, "created_at"))) {
    bad_request(resp, "page is from 1, pageSize from 1 to 100, orderBy created_at, "
                      "orderDirection asc or desc");
  } else {
    size_t n = 0, total = 0;
    for (vscript_t *s = vs.scripts; s; s = s->next)
      n++;
    vscript_t **all = calloc(n + 1, sizeof(*all));
    for (vscript_t *s = vs.scripts; s; s = s->next)
      if (name == NULL || strstr(s->name, name))
        all[total++] = s;
    qsort(all, total, sizeof(*all), script_cmp_asc);
    bool desc = dir == NULL || strcmp(dir, "desc") == 0;
    json_t *list = json_array();
    for (size_t i = (size_t)(page - 1) * (size_t)size; i < total && i < (size_t)(page * size); i++)
      json_array_append_new(list, script_json(all[desc ? total - 1 - i : i]));
    free(all);
    http_json(resp, 200, dump(list));
    http_add_header(resp, "X-Page: %ld", page);
    http_add_header(resp, "X-Page-Size: %ld", size);
    http_add_header(resp, "X-Total-Count: %zu", total);
  }
  free(name);
  free(page_s);
  free(size_s);
  free(dir);
  free(order);
}

static void scripts_create(const http_req_t *req, http_resp_t *resp) {
  json_t *b = body_json(req);
  const char *name = json_string_value(json_object_get(b, "name"));
  const char *script = json_string_value(json_object_get(b, "script"));
  if (name == NULL || *name == '\0' || script == NULL) {
    bad_request(resp, "name and script are required");
  } else {
    vscript_t *s = calloc(1, sizeof(*s));
    new_uuid(s->id);
    s->name = strdup(name);
    s->script = strdup(script);
    s->seq = ++vs.script_seq;
    iso_now(s->created_at, sizeof(s->created_at));
    s->next = vs.scripts;
    vs.scripts = s;
    http_json(resp, 201, dump(json_string(s->id)));
  }
  json_decref(b);
}

static void scripts_delete_many(const http_req_t *req, http_resp_t *resp) {
  json_t *ids = ids_to_delete(req, "scripts", script_known, "Startup script", resp);
  for (size_t i = 0; ids && i < json_array_size(ids); i++)
    script_remove(json_string_value(json_array_get(ids, i)));
  if (ids)
    http_json(resp, 200, NULL);
  json_decref(ids);
}

static void script_one(const char *id, bool del, http_resp_t *resp) {
  vscript_t *s = script_find(id);
  if (s == NULL)
    not_found(resp, "Startup script not found");
  else if (del) {
    script_remove(id);
    http_json(resp, 200, NULL);
  } else
    http_json(resp, 200, dump(script_json(s)));
}

/* ---- the host key of a startup script ------------------------------------------------------- */

/* The value of a line NAME=value of a script (quotes ' or " around it taken off; "export "
 * before it allowed), malloc'd, or NULL. */
static char *script_value(const char *script, const char *name) {
  size_t nl = strlen(name);
  for (const char *l = script; l && *l;) {
    size_t n = strcspn(l, "\r\n");
    const char *p = l, *end = l + n;
    while (p < end && (*p == ' ' || *p == '\t'))
      p++;
    if ((size_t)(end - p) > 7 && strncmp(p, "export ", 7) == 0)
      p += 7;
    if ((size_t)(end - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
      const char *v = p + nl + 1, *ve = end;
      while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      if (ve - v >= 2 && (*v == '\'' || *v == '"') && ve[-1] == *v) {
        v++;
        ve--;
      }
      return strndup(v, (size_t)(ve - v));
    }
    l = end;
    while (*l == '\r' || *l == '\n')
      l++;
  }
  return NULL;
}

/* The cloud-config that makes the script's host key the node's (machines.c installs its
 * ssh_keys' ed25519 pair before the machine runs); *out NULL when the script hands over no key.
 * False when it hands over one that is not an OpenSSH ed25519 pair. */
static bool host_key_user_data(const char *script, char **out) {
  *out = NULL;
  char *b64 = script ? script_value(script, "KITE_SSH_HOST_KEY") : NULL;
  char *b64pub = script ? script_value(script, "KITE_SSH_HOST_KEY_PUB") : NULL;
  if (b64 == NULL && b64pub == NULL)
    return true;
  char *priv = b64 ? base64_text(b64) : NULL, *pub = b64pub ? base64_text(b64pub) : NULL;
  bool ok = priv && pub && strstr(priv, "-----BEGIN OPENSSH PRIVATE KEY-----") &&
            strncmp(pub, "ssh-ed25519 ", 12) == 0;
  if (ok) {
    size_t cap = strlen(priv) * 2 + strlen(pub) + 256, o = 0;
    char *ud = malloc(cap);
    if (ud) {
      o += (size_t)snprintf(ud + o, cap - o, "#cloud-config\nssh_keys:\n  ed25519_private: |\n");
      for (const char *l = priv; *l;) {
        size_t n = strcspn(l, "\r\n");
        if (n)
          o += (size_t)snprintf(ud + o, cap - o, "    %.*s\n", (int)n, l);
        l += n;
        while (*l == '\r' || *l == '\n')
          l++;
      }
      snprintf(ud + o, cap - o, "  ed25519_public: %.*s\n", (int)strcspn(pub, "\r\n"), pub);
    }
    *out = ud;
    ok = ud != NULL;
  }
  free(b64);
  free(b64pub);
  free(priv);
  free(pub);
  return ok;
}

/* ---- volumes -------------------------------------------------------------------------------- */

static volume_t *volume_find(const char *id) {
  for (volume_t *v = vs.volumes; v && id; v = v->next)
    if (strcmp(v->id, id) == 0)
      return v;
  return NULL;
}

static volume_t *volume_add(const char *name, double size, const char *type, const char *loc,
                            const char *instance_id, bool os, const char *on_spot) {
  volume_t *v = calloc(1, sizeof(*v));
  if (v == NULL)
    return NULL;
  new_uuid(v->id);
  v->name = strdup(name);
  v->size = size;
  snprintf(v->type, sizeof(v->type), "%s", type);
  snprintf(v->location, sizeof(v->location), "%s", loc);
  snprintf(v->instance_id, sizeof(v->instance_id), "%s", instance_id);
  snprintf(v->on_spot_discontinue, sizeof(v->on_spot_discontinue), "%s",
           on_spot ? on_spot : "keep_detached");
  snprintf(v->state, sizeof(v->state), "attached");
  v->os = os;
  volume_t **pp = &vs.volumes;
  while (*pp)
    pp = &(*pp)->next;
  *pp = v;
  return v;
}

static void volume_set(volume_t *v, const char *state) {
  snprintf(v->state, sizeof(v->state), "%s", state);
  if (strcmp(state, "attached") != 0)
    v->instance_id[0] = '\0';
}

/* ---- instances ------------------------------------------------------------------------------ */

static void inst_free(inst_t *v) {
  free(v->hostname);
  free(v->description);
  free(v->image);
  free(v->os_name);
  free(v->script_id);
  json_decref(v->ssh_key_ids);
  json_decref(v->tags);
  free(v);
}

/* Forgets the instances whose machines are gone, but for discontinued and failed ones, which
 * stay listed (without a machine) until they are deleted. */
static void prune(sim_t *sim) {
  for (inst_t **pp = &vs.insts; *pp;) {
    inst_t *v = *pp;
    bool keep = !v->deleted && (v->discontinued || v->fail[0]);
    if (!keep && machine_find_of(sim, v->mid, CLOUD) == NULL) {
      *pp = v->next;
      inst_free(v);
    } else {
      pp = &v->next;
    }
  }
}

static inst_t *inst_find(sim_t *sim, const char *id) {
  prune(sim);
  for (inst_t *v = vs.insts; v && id; v = v->next)
    if (strcmp(v->id, id) == 0)
      return v;
  return NULL;
}

/* The instance's status, and its ip when it has one (NULL otherwise). */
static const char *inst_status(const inst_t *v, const machine_t *m, const char **ip) {
  uint64_t age = now_ms() - v->created_ms;
  *ip = NULL;
  if (v->deleted)
    return "deleting";
  if (v->discontinued)
    return "discontinued";
  if (v->fail[0])
    return age < ORDER_MS ? "ordered" : age < FAIL_AFTER_MS ? "provisioning" : v->fail;
  if (m == NULL || m->state == M_DELETING)
    return "deleting";
  if (v->shut_down || m->state == M_OFF)
    return "offline";
  if (age < ORDER_MS)
    return "ordered";
  if (m->state == M_PROVISIONING)
    return "provisioning";
  *ip = m->address[0] ? m->address : NULL;
  return "running";
}

/* GetInstanceResponsePublicApiDto. startup_script_id is null for an instance without one, as the
 * Go SDK reads it (the description types it a string). */
static json_t *inst_json(sim_t *sim, const inst_t *v) {
  const machine_t *m = machine_find_of(sim, v->mid, CLOUD);
  const char *ip;
  const char *status = inst_status(v, m, &ip);
  json_t *vols = json_array();
  for (volume_t *x = vs.volumes; x; x = x->next)
    if (strcmp(x->instance_id, v->id) == 0)
      json_array_append_new(vols, json_string(x->id));
  json_t *j = json_pack("{s:s, s:s?, s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:f, s:b, s:s, s:s, s:s}",
                        "id", v->id, "ip", ip, "status", status, "created_at", v->created_at,
                        "created_by_user_id", USER_ID, "hostname", v->hostname, "description",
                        v->description, "tags", v->tags, "location", locations[v->loc].code,
                        "price_per_hour", v->price, "is_spot", v->spot, "instance_type",
                        v->type->name, "image", v->image, "os_name", v->os_name);
  json_object_update_new(j,
                         json_pack("{s:s?, s:O, s:s, s:s, s:s, s:s, s:o}", "startup_script_id",
                                   v->script_id, "ssh_key_ids", v->ssh_key_ids, "os_volume_id",
                                   v->os_volume_id, "jupyter_token", v->jupyter_token, "contract",
                                   v->contract, "pricing", "FIXED_PRICE", "volume_ids", vols));
  return spec_objects(v->type, j);
}

static void instance_show(sim_t *sim, const char *id, http_resp_t *resp) {
  inst_t *v = inst_find(sim, id);
  if (v == NULL)
    not_found(resp, "Instance not found");
  else
    http_json(resp, 200, dump(inst_json(sim, v)));
}

/* Whether instance v carries every tag of the list's filters (key, or key=value). */
static bool tags_match(const inst_t *v, const http_req_t *req) {
  for (size_t i = 0;; i++) {
    char *f = http_query_param_nth(req, "tag", i);
    if (f == NULL)
      return true;
    char *eq = strchr(f, '=');
    if (eq)
      *eq = '\0';
    bool found = false;
    size_t k;
    json_t *t;
    json_array_foreach(v->tags, k, t) {
      const char *key = json_string_value(json_object_get(t, "key"));
      const char *val = json_string_value(json_object_get(t, "value"));
      if (key && strcasecmp(key, f) == 0 && (eq == NULL || (val && strcmp(val, eq + 1) == 0)))
        found = true;
    }
    free(f);
    if (!found)
      return false;
  }
}

static void instances_list(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  prune(sim);
  char *status = http_query_param(req, "status"), *cid = http_query_param(req, "computeId");
  json_t *list = json_array();
  for (inst_t *v = vs.insts; v; v = v->next) {
    const char *ip;
    const char *st = inst_status(v, machine_find_of(sim, v->mid, CLOUD), &ip);
    if ((status && strcmp(status, st) != 0) || (cid && strcmp(cid, v->id) != 0) ||
        !tags_match(v, req))
      continue;
    json_array_append_new(list, inst_json(sim, v));
  }
  free(status);
  free(cid);
  http_json(resp, 200, dump(list));
}

/* ---- create --------------------------------------------------------------------------------- */

typedef struct deploy {
  const itype_t *type;
  int loc;
  const struct image *image;
  const char *hostname, *description;
  json_t *key_ids; /* the keys' ids, as an array (new reference) */
  const vscript_t *script;
  json_t *tags; /* [{id, key, value}] (new reference) */
  bool spot;
  const char *contract;
  const char *os_name_vol, *os_on_spot;
  double os_size;
  json_t *volumes, *existing;
  char *user_data;
} deploy_t;

static bool hostname_ok(const char *h) {
  size_t n = strlen(h);
  if (n == 0 || n > 253 || h[0] == '-' || h[0] == '.')
    return false;
  for (const char *p = h; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
      return false;
  return true;
}

static bool enum_ok(const char *v, const char *const *values) {
  for (size_t i = 0; v && values[i]; i++)
    if (strcmp(values[i], v) == 0)
      return true;
  return false;
}

static const char *const spot_policies[] = {"keep_detached", "move_to_trash", "delete_permanently",
                                            NULL};

/* Checks the tags of a create ([{key, value?}], at most 10) into d->tags; NULL or the error. */
static const char *read_tags(json_t *tags, deploy_t *d) {
  d->tags = json_array();
  if (tags == NULL || json_is_null(tags))
    return NULL;
  if (!json_is_array(tags) || json_array_size(tags) > 10)
    return "tags must be an array of at most 10 {key, value}";
  size_t i;
  json_t *t;
  json_array_foreach(tags, i, t) {
    const char *key = json_string_value(json_object_get(t, "key"));
    json_t *val = json_object_get(t, "value");
    if (key == NULL || *key == '\0' || strlen(key) > 63)
      return "a tag's key is a string of 1 to 63 characters";
    if (val && (!json_is_string(val) || strlen(json_string_value(val)) > 127))
      return "a tag's value is a string of at most 127 characters";
    char lower[64], tid[40], rnd[24];
    size_t n = 0;
    for (; key[n] && n < sizeof(lower) - 1; n++)
      lower[n] = (char)tolower((unsigned char)key[n]);
    lower[n] = '\0';
    random_hex(rnd, 11);
    snprintf(tid, sizeof(tid), "tag_%s", rnd);
    json_array_append_new(d->tags, json_pack("{s:s, s:s, s:s}", "id", tid, "key", lower, "value",
                                             val ? json_string_value(val) : ""));
  }
  return NULL;
}

/* Checks the volumes of a create: os_volume, volumes and existing_volumes. */
static const char *read_volumes(json_t *b, deploy_t *d) {
  static const char *const vtypes[] = {"HDD",
                                       "NVMe",
                                       "HDD_Shared",
                                       "NVMe_Shared",
                                       "NVMe_Local_Storage",
                                       "NVMe_Shared_Cluster",
                                       "NVMe_OS_Cluster",
                                       NULL};
  json_t *os = json_object_get(b, "os_volume");
  d->os_size = DEFAULT_OS_VOLUME_GB;
  if (os && !json_is_null(os)) {
    json_t *size = json_object_get(os, "size"), *pol = json_object_get(os, "on_spot_discontinue");
    d->os_name_vol = json_string_value(json_object_get(os, "name"));
    if (!json_is_object(os) || d->os_name_vol == NULL || !json_is_number(size) ||
        json_number_value(size) <= 0)
      return "os_volume needs a name and a size in GB";
    d->os_size = json_number_value(size);
    d->os_on_spot = json_string_value(pol);
    if (pol && !json_is_null(pol) && !enum_ok(d->os_on_spot, spot_policies))
      return "os_volume.on_spot_discontinue is keep_detached, move_to_trash or "
             "delete_permanently";
  }
  d->volumes = json_object_get(b, "volumes");
  if (d->volumes && !json_is_null(d->volumes)) {
    if (!json_is_array(d->volumes))
      return "volumes must be an array";
    size_t i;
    json_t *v;
    json_array_foreach(d->volumes, i, v) {
      const char *type = json_string_value(json_object_get(v, "type"));
      json_t *pol = json_object_get(v, "on_spot_discontinue");
      if (json_string_value(json_object_get(v, "name")) == NULL ||
          !json_is_number(json_object_get(v, "size")) || !enum_ok(type, vtypes))
        return "each of volumes needs a name, a size in GB and a type";
      if (strcmp(type, "HDD") == 0)
        return "HDD volumes can no longer be created";
      if (pol && !json_is_null(pol) && !enum_ok(json_string_value(pol), spot_policies))
        return "a volume's on_spot_discontinue is keep_detached, move_to_trash or "
               "delete_permanently";
    }
  }
  d->existing = json_object_get(b, "existing_volumes");
  if (d->existing && !json_is_null(d->existing)) {
    if (!json_is_array(d->existing))
      return "existing_volumes must be an array of volume ids";
    size_t i;
    json_t *v;
    json_array_foreach(d->existing, i, v) {
      volume_t *x = volume_find(json_string_value(v));
      if (x == NULL || strcmp(x->state, "detached") != 0)
        return "existing_volumes must name detached volumes";
      if (strcmp(x->location, locations[d->loc].code) != 0)
        return "an existing volume is in another location";
    }
  }
  return NULL;
}

/* Reads and checks a create's body into d; false with resp set. */
static bool read_deploy(sim_t *sim, json_t *b, deploy_t *d, http_resp_t *resp) {
  memset(d, 0, sizeof(*d));
  const char *type = json_string_value(json_object_get(b, "instance_type"));
  const char *image = json_string_value(json_object_get(b, "image"));
  const char *loc = json_string_value(json_object_get(b, "location_code"));
  json_t *keys = json_object_get(b, "ssh_key_ids"),
         *script = json_object_get(b, "startup_script_id");
  json_t *spot = json_object_get(b, "is_spot"), *contract = json_object_get(b, "contract");
  json_t *pricing = json_object_get(b, "pricing"), *desc = json_object_get(b, "description");
  static const char *const contracts[] = {"LONG_TERM", "PAY_AS_YOU_GO", "SPOT", NULL};
  d->hostname = json_string_value(json_object_get(b, "hostname"));
  d->type = type_find(type);
  d->loc = location_index(loc);
  d->image = image_find(image);
  d->description = json_string_value(desc);
  d->contract = json_string_value(contract);
  d->spot = json_is_true(spot) || (d->contract && strcmp(d->contract, "SPOT") == 0);
  d->key_ids = json_array();
  const char *err = NULL;
  char msg[256];
  if (type == NULL || image == NULL || d->hostname == NULL || loc == NULL)
    err = "instance_type, image, hostname and location_code are required";
  else if (d->type == NULL)
    err = "Invalid instance type";
  else if (d->loc < 0)
    err = "Invalid location code";
  else if (d->image == NULL)
    err = "Invalid image: kite-cloudsim has the image types ubuntu-24.04-cuda-12.8-open-docker, "
          "ubuntu-24.04-cuda-12.8-open, ubuntu-22.04-cuda-12.4-docker, ubuntu-24.04 and "
          "ubuntu-22.04";
  else if (!hostname_ok(d->hostname))
    err = "hostname may have letters, digits, '-' and '.' (at most 253 characters)";
  else if (desc && !json_is_null(desc) && d->description == NULL)
    err = "description must be a string";
  else if (spot && !json_is_null(spot) && !json_is_boolean(spot))
    err = "is_spot must be a boolean";
  else if (contract && !json_is_null(contract) && !enum_ok(d->contract, contracts))
    err = "contract is LONG_TERM, PAY_AS_YOU_GO or SPOT";
  else if (pricing && !json_is_null(pricing) &&
           (!json_is_string(pricing) || strcmp(json_string_value(pricing), "FIXED_PRICE") != 0))
    err = "pricing: only FIXED_PRICE is supported";
  if (err == NULL && json_is_string(keys))
    json_array_append(d->key_ids, keys);
  else if (err == NULL && json_is_array(keys))
    json_array_extend(d->key_ids, keys);
  else if (err == NULL && keys && !json_is_null(keys))
    err = "ssh_key_ids is an id or an array of ids";
  for (size_t i = 0; err == NULL && i < json_array_size(d->key_ids); i++) {
    const char *id = json_string_value(json_array_get(d->key_ids, i));
    if (key_find(id) == NULL) {
      snprintf(msg, sizeof(msg), "SSH key not found: %s", id ? id : "(not a string)");
      err = msg;
    }
  }
  if (err == NULL && json_array_size(d->key_ids) == 0)
    err = "ssh_key_ids: kite-cloudsim emulates instances reached over SSH only, give at least "
          "one key";
  if (err == NULL && script && !json_is_null(script)) {
    d->script = script_find(json_string_value(script));
    if (d->script == NULL)
      err = "Startup script not found";
  }
  if (err == NULL)
    err = read_tags(json_object_get(b, "tags"), d);
  if (err == NULL)
    err = read_volumes(b, d);
  if (err == NULL && !host_key_user_data(d->script ? d->script->script : NULL, &d->user_data))
    err = "the startup script's KITE_SSH_HOST_KEY and KITE_SSH_HOST_KEY_PUB must be the base64 of "
          "an OpenSSH ed25519 private key file and of its public key line";
  (void)sim;
  if (err) {
    bad_request(resp, err);
    return false;
  }
  return true;
}

static void deploy_free(deploy_t *d) {
  json_decref(d->key_ids);
  json_decref(d->tags);
  free(d->user_data);
}

/* The node's tag: the value of the instance's kite-pool tag, else its hostname. */
static const char *node_tag_of(const deploy_t *d) {
  size_t i;
  json_t *t;
  json_array_foreach(d->tags, i, t) {
    const char *v = json_string_value(json_object_get(t, "value"));
    if (strcmp(json_string_value(json_object_get(t, "key")), "kite-pool") == 0 && v && *v)
      return v;
  }
  return d->hostname;
}

/* The keys named, the first as the node's own and the others (newline-joined) in *more. */
static const char *named_keys(const deploy_t *d, char **more) {
  *more = NULL;
  const char *first = NULL;
  for (size_t i = 0; i < json_array_size(d->key_ids); i++) {
    const vkey_t *k = key_find(json_string_value(json_array_get(d->key_ids, i)));
    if (first == NULL) {
      first = k->key;
      continue;
    }
    char *m = sim_sprintf("%s%s\n", *more ? *more : "", k->key);
    free(*more);
    *more = m;
  }
  return first;
}

static void attach_volumes(inst_t *v, const deploy_t *d) {
  const char *loc = locations[d->loc].code;
  char osname[300];
  snprintf(osname, sizeof(osname), "%s", d->os_name_vol ? d->os_name_vol : "");
  if (osname[0] == '\0')
    snprintf(osname, sizeof(osname), "%s-os", d->hostname);
  volume_t *os = volume_add(osname, d->os_size, "NVMe", loc, v->id, true, d->os_on_spot);
  if (os)
    snprintf(v->os_volume_id, sizeof(v->os_volume_id), "%s", os->id);
  size_t i;
  json_t *x;
  json_array_foreach(d->volumes, i, x) {
    volume_add(json_string_value(json_object_get(x, "name")),
               json_number_value(json_object_get(x, "size")),
               json_string_value(json_object_get(x, "type")), loc, v->id, false,
               json_string_value(json_object_get(x, "on_spot_discontinue")));
  }
  json_array_foreach(d->existing, i, x) {
    volume_t *e = volume_find(json_string_value(x));
    volume_set(e, "attached");
    snprintf(e->instance_id, sizeof(e->instance_id), "%s", v->id);
  }
}

/* POST /v1/instances: 202 with the new id as a JSON string (the description's answer is
 * application/json with a UUID as its example; the SDKs read the text). */
static void instance_create(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_t *b = body_json(req);
  deploy_t d;
  if (!json_is_object(b)) {
    bad_request(resp, "Request body is not valid JSON");
    json_decref(b);
    return;
  }
  if (!read_deploy(sim, b, &d, resp)) {
    deploy_free(&d);
    json_decref(b);
    return;
  }
  prune(sim);
  if (!available(sim, d.type, d.loc, d.spot)) {
    verda_error(resp, 503, "service_unavailable", "No capacity available");
  } else if (sim_admit(sim, &verda_front, machine_count_of(sim, CLOUD), 1, d.type->name,
                       locations[d.loc].code, d.spot, resp)) {
    char *more = NULL;
    const char *key = named_keys(&d, &more);
    size_t tag_n = json_array_size(d.tags);
    char **mtags = calloc(tag_n + 1, sizeof(*mtags));
    for (size_t i = 0; i < tag_n; i++) {
      json_t *t = json_array_get(d.tags, i);
      const char *val = json_string_value(json_object_get(t, "value"));
      mtags[i] = *val ? sim_sprintf("%s=%s", json_string_value(json_object_get(t, "key")), val)
                      : strdup(json_string_value(json_object_get(t, "key")));
    }
    machine_opts_t mo = {.cloud = CLOUD,
                         .name = d.hostname,
                         .tags = (const char *const *)mtags,
                         .tag_n = tag_n,
                         .node_tag = node_tag_of(&d),
                         .region = locations[d.loc].code,
                         .size = d.type->name,
                         .image = d.image->type,
                         .user_data = d.user_data,
                         .authorized_key = key,
                         .more_authorized_keys = more,
                         .price_hourly = d.spot ? d.type->spot : d.type->price,
                         .spot = d.spot};
    machine_t *m = machine_create(sim, &mo);
    inst_t *v = m ? calloc(1, sizeof(*v)) : NULL;
    if (v == NULL) {
      if (m)
        machine_delete(m);
      verda_error(resp, 500, "server_error", "the instance could not be created");
    } else {
      v->mid = m->id;
      new_uuid(v->id);
      v->type = d.type;
      v->loc = d.loc;
      v->hostname = strdup(d.hostname);
      v->description = strdup(d.description ? d.description : "");
      v->image = strdup(d.image->type);
      v->os_name = strdup(d.image->os_name);
      v->script_id = d.script ? strdup(d.script->id) : NULL;
      v->ssh_key_ids = json_incref(d.key_ids);
      v->tags = json_incref(d.tags);
      v->spot = d.spot;
      v->contract = d.contract ? (strcmp(d.contract, "LONG_TERM") == 0 ? "LONG_TERM"
                                  : strcmp(d.contract, "SPOT") == 0    ? "SPOT"
                                                                       : "PAY_AS_YOU_GO")
                    : d.spot   ? "SPOT"
                               : "PAY_AS_YOU_GO";
      v->price = mo.price_hourly;
      v->created_ms = now_ms();
      iso_now(v->created_at, sizeof(v->created_at));
      random_hex(v->jupyter_token, 16);
      snprintf(v->fail, sizeof(v->fail), "%s", vs.fail[d.type - types]);
      attach_volumes(v, &d);
      inst_t **pp = &vs.insts;
      while (*pp)
        pp = &(*pp)->next;
      *pp = v;
      fprintf(stderr, "kite-cloudsim: verda instance %s (%s, machine %llu) created: %s in %s%s%s\n",
              v->id, v->hostname, (unsigned long long)m->id, d.type->name, locations[d.loc].code,
              d.spot ? ", spot" : "", v->fail[0] ? ", to fail" : "");
      if (v->fail[0]) { /* it never runs, and is not billed */
        machine_kill(m, false);
        machine_delete(m);
      }
      http_json(resp, 202, dump(json_string(v->id)));
    }
    for (size_t i = 0; i < tag_n; i++)
      free(mtags[i]);
    free(mtags);
    free(more);
  }
  deploy_free(&d);
  json_decref(b);
}

/* ---- actions -------------------------------------------------------------------------------- */

/* What a delete does to the instance's volumes: volume_ids left out (or null), the OS volume is
 * deleted and the others detached; [] deletes none; a list deletes those. Deleted volumes go to
 * the trash unless delete_permanently. */
static void delete_volumes(const inst_t *v, json_t *volume_ids, bool permanently) {
  for (volume_t *x = vs.volumes; x; x = x->next) {
    if (strcmp(x->instance_id, v->id) != 0)
      continue;
    bool del = false;
    if (volume_ids == NULL || json_is_null(volume_ids)) {
      del = x->os;
    } else {
      for (size_t i = 0; i < json_array_size(volume_ids); i++)
        if (json_string_value(json_array_get(volume_ids, i)) &&
            strcmp(json_string_value(json_array_get(volume_ids, i)), x->id) == 0)
          del = true;
    }
    volume_set(x, del ? (permanently ? "deleted" : "trash") : "detached");
  }
}

/* One action on one instance: 0 done (202), 204 already so, or an error status with *err. */
static int act(sim_t *sim, inst_t *v, const char *action, json_t *volume_ids, bool permanently,
               const char **err) {
  machine_t *m = machine_find_of(sim, v->mid, CLOUD);
  if (strcmp(action, "delete") == 0) {
    if (v->deleted)
      return 204;
    fprintf(stderr, "kite-cloudsim: verda instance %s (%s) deleted\n", v->id, v->hostname);
    v->deleted = true;
    delete_volumes(v, volume_ids, permanently);
    if (m)
      machine_delete(m);
    return 0;
  }
  if (strcmp(action, "shutdown") == 0 || strcmp(action, "force_shutdown") == 0) {
    if (v->shut_down)
      return 204;
    if (v->deleted || v->discontinued || v->fail[0] || m == NULL || m->state != M_RUNNING) {
      *err = "Only a running instance can be shut down";
      return 400;
    }
    fprintf(stderr, "kite-cloudsim: verda instance %s (%s) shut down\n", v->id, v->hostname);
    v->shut_down = true;
    machine_kill(m, false); /* it stays, and is billed, as a shut-down instance is */
    return 0;
  }
  *err = "kite-cloudsim emulates the actions delete, shutdown and force_shutdown only";
  return 400;
}

/* PUT /v1/instances (and POST /v1/instances/action): one id or several. */
static void instances_action(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  static const char *const actions[] = {
      "boot",           "start",          "shutdown",     "delete", "discontinue", "hibernate",
      "configure_spot", "force_shutdown", "delete_stuck", "deploy", "transfer",    NULL};
  json_t *b = body_json(req);
  const char *action = json_string_value(json_object_get(b, "action"));
  json_t *id = json_object_get(b, "id"), *vol = json_object_get(b, "volume_ids");
  json_t *perm = json_object_get(b, "delete_permanently");
  if (!json_is_object(b) || !enum_ok(action, actions)) {
    bad_request(resp, "action is one of boot, start, shutdown, delete, discontinue, hibernate, "
                      "configure_spot, force_shutdown, delete_stuck, deploy, transfer");
  } else if (!json_is_string(id) && !(json_is_array(id) && json_array_size(id) > 0)) {
    bad_request(resp, "id is an instance id or an array of them");
  } else if (vol && !json_is_null(vol) && !json_is_array(vol)) {
    bad_request(resp, "volume_ids is an array of volume ids");
  } else if (perm && !json_is_boolean(perm)) {
    bad_request(resp, "delete_permanently is a boolean");
  } else if (json_is_string(id) || json_array_size(id) == 1) {
    const char *one = json_string_value(json_is_string(id) ? id : json_array_get(id, 0));
    inst_t *v = inst_find(sim, one);
    const char *err = NULL;
    int st = v ? act(sim, v, action, vol, json_is_true(perm), &err) : 404;
    if (st == 404)
      not_found(resp, "Instance not found");
    else if (st == 204)
      http_json(resp, 204, NULL);
    else if (st)
      verda_error(resp, st, "invalid_request", err);
    else
      http_json(resp, 202,
                dump(json_pack("[{s:s, s:s, s:s}]", "instanceId", one, "action", action, "status",
                               "success")));
  } else {
    json_t *results = json_array();
    bool all = true;
    for (size_t i = 0; i < json_array_size(id); i++) {
      const char *one = json_string_value(json_array_get(id, i));
      inst_t *v = inst_find(sim, one);
      const char *err = "Instance not found";
      int st = v ? act(sim, v, action, vol, json_is_true(perm), &err) : 404;
      if (st == 0 || st == 204) {
        json_array_append_new(results, json_pack("{s:s, s:s, s:s}", "instanceId", one ? one : "",
                                                 "action", action, "status", "success"));
      } else {
        all = false;
        json_array_append_new(results, json_pack("{s:s, s:s, s:s, s:s, s:i}", "instanceId",
                                                 one ? one : "", "action", action, "status",
                                                 "error", "error", err, "statusCode", st));
      }
    }
    http_json(resp, all ? 202 : 207, dump(results));
  }
  json_decref(b);
}

/* ---- routing -------------------------------------------------------------------------------- */

static void verda_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  char p[512];
  snprintf(p, sizeof(p), "%s", req->path + strlen(MOUNT));
  size_t pl = strlen(p);
  if (pl > 1 && p[pl - 1] == '/')
    p[--pl] = '\0';
  const char *m = req->method;
  bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, put = strcmp(m, "PUT") == 0;
  bool del = strcmp(m, "DELETE") == 0;
  if (strcmp(p, "/v1/oauth2/token") == 0 && post) {
    token_grant(sim, req, resp);
    return;
  }
  if (strcmp(p, "/v1/instance-types") == 0 && get) {
    types_list(req, resp);
    return;
  }
  const char *why = NULL;
  if (!authorized(req, &why)) {
    verda_error(resp, 401, "unauthorized_request", why);
    return;
  }
  unsigned quota = ENDPOINT_QUOTA, used = 0;
  count_request(m, p, &quota, &used);
  add_ratelimit(resp, quota, used, false);
  const char *keys = strncmp(p, "/v1/ssh-keys", 12) == 0  ? p + 12
                     : strncmp(p, "/v1/sshkeys", 11) == 0 ? p + 11
                                                          : NULL;
  if (strcmp(p, "/v1/instance-availability") == 0 && get)
    availability_list(sim, req, resp);
  else if (strncmp(p, "/v1/instance-availability/", 26) == 0 && get)
    availability_one(sim, p + 26, req, resp);
  else if (strcmp(p, "/v1/locations") == 0 && get)
    locations_list(resp);
  else if (keys && *keys == '\0' && (get || post || del))
    get ? keys_list(resp) : post ? keys_create(req, resp) : keys_delete_many(req, resp);
  else if (keys && *keys == '/' && !strchr(keys + 1, '/') && (get || del))
    key_one(keys + 1, del, resp);
  else if (strcmp(p, "/v1/scripts") == 0 && (get || post || del))
    get    ? scripts_list(req, resp)
    : post ? scripts_create(req, resp)
           : scripts_delete_many(req, resp);
  else if (strncmp(p, "/v1/scripts/", 12) == 0 && !strchr(p + 12, '/') && (get || del))
    script_one(p + 12, del, resp);
  else if (strcmp(p, "/v1/instances") == 0 && get)
    instances_list(sim, req, resp);
  else if (strcmp(p, "/v1/instances") == 0 && post)
    instance_create(sim, req, resp);
  else if ((strcmp(p, "/v1/instances") == 0 && put) ||
           (strcmp(p, "/v1/instances/action") == 0 && post))
    instances_action(sim, req, resp);
  else if (strncmp(p, "/v1/instances/", 14) == 0 && !strchr(p + 14, '/') && get)
    instance_show(sim, p + 14, resp);
  else
    not_found(resp, "Resource not found, or invalid path (kite-cloudsim does not emulate it)");
}

/* ---- control -------------------------------------------------------------------------------- */

/* A spot instance is evicted: its node is killed at once, its machine goes (its bill line ends),
 * its volumes are kept detached, trashed or deleted as their on_spot_discontinue says. */
static void discontinue(sim_t *sim, const char *id, http_resp_t *resp) {
  inst_t *v = inst_find(sim, id);
  machine_t *m = v ? machine_find_of(sim, v->mid, CLOUD) : NULL;
  if (v == NULL) {
    http_error(resp, 404, "not_found", "no such instance");
  } else if (!v->spot) {
    http_error(resp, 400, "bad_request", "only a spot instance is discontinued");
  } else if (v->deleted || v->discontinued || v->fail[0]) {
    http_error(resp, 400, "bad_request", "the instance is deleted, discontinued or failed");
  } else {
    fprintf(stderr, "kite-cloudsim: verda spot instance %s (%s) is discontinued\n", v->id,
            v->hostname);
    v->discontinued = true;
    for (volume_t *x = vs.volumes; x; x = x->next)
      if (strcmp(x->instance_id, v->id) == 0) {
        const char *pol = x->on_spot_discontinue;
        volume_set(x, strcmp(pol, "move_to_trash") == 0        ? "trash"
                      : strcmp(pol, "delete_permanently") == 0 ? "deleted"
                                                               : "detached");
      }
    if (m) {
      machine_kill(m, false);
      machine_delete(m);
    }
    http_json(resp, 200, strdup("{\"ok\":true}"));
  }
}

static void type_fail(const http_req_t *req, const char *name, http_resp_t *resp) {
  static const char *const fails[] = {"error", "installation_failed", "no_capacity", NULL};
  const itype_t *t = type_find(name);
  json_t *j = body_json(req), *st = json_object_get(j, "status");
  const char *s = json_string_value(st);
  if (t == NULL)
    http_error(resp, 404, "not_found", "no such instance type");
  else if (!json_is_null(st) && !enum_ok(s, fails))
    http_error(resp, 400, "bad_request",
               "{\"status\": \"error\", \"installation_failed\", \"no_capacity\" or null}");
  else {
    snprintf(vs.fail[t - types], sizeof(vs.fail[0]), "%s", s ? s : "");
    fprintf(stderr, "kite-cloudsim: verda type %s: launches %s%s\n", name, s ? "end " : "run again",
            s ? s : "");
    http_json(resp, 200, strdup("{\"ok\":true}"));
  }
  json_decref(j);
}

static void set_ttl(const http_req_t *req, http_resp_t *resp) {
  json_t *j = body_json(req), *s = json_object_get(j, "seconds");
  if (!json_is_integer(s) || json_integer_value(s) < 1 || json_integer_value(s) > 86400 * 30) {
    http_error(resp, 400, "bad_request", "{\"seconds\": N}, N from 1 to 2592000");
  } else {
    vs.ttl_s = (unsigned)json_integer_value(s);
    http_json(resp, 200, dump(json_pack("{s:b, s:i}", "ok", 1, "seconds", (int)vs.ttl_s)));
  }
  json_decref(j);
}

static json_t *state_json(sim_t *sim) {
  prune(sim);
  json_t *list = json_array(), *keys = json_array(), *scripts = json_array();
  json_t *vols = json_array(), *tokens = json_array(), *fails = json_object();
  for (inst_t *v = vs.insts; v; v = v->next) {
    machine_t *m = machine_find_of(sim, v->mid, CLOUD);
    const char *ip;
    const char *st = inst_status(v, m, &ip);
    json_array_append_new(
        list,
        json_pack("{s:s, s:I, s:s, s:s, s:b, s:s, s:s, s:s?, s:i, s:O, s:s?, s:s, s:f}", "id",
                  v->id, "machine", (json_int_t)v->mid, "hostname", v->hostname, "status", st,
                  "is_spot", v->spot, "type", v->type->name, "location", locations[v->loc].code,
                  "ip", ip, "pid", m && m->node ? kite_local_node_pid(m->node) : 0, "tags", v->tags,
                  "startup_script_id", v->script_id, "os_volume_id", v->os_volume_id,
                  "price_per_hour", v->price));
  }
  for (vkey_t *k = vs.keys; k; k = k->next)
    json_array_append_new(
        keys, json_pack("{s:s, s:s, s:s}", "id", k->id, "name", k->name, "key", k->key));
  for (vscript_t *s = vs.scripts; s; s = s->next)
    json_array_append_new(scripts, json_pack("{s:s, s:s}", "id", s->id, "name", s->name));
  for (volume_t *x = vs.volumes; x; x = x->next)
    json_array_append_new(
        vols, json_pack("{s:s, s:s, s:f, s:s, s:s, s:s, s:s?, s:b, s:s, s:b}", "id", x->id, "name",
                        x->name, "size", x->size, "type", x->type, "location", x->location, "state",
                        x->state, "instance_id", x->instance_id[0] ? x->instance_id : NULL, "os",
                        x->os, "on_spot_discontinue", x->on_spot_discontinue, "billing",
                        strcmp(x->state, "deleted") != 0));
  uint64_t now = now_ms();
  for (token_t *t = vs.tokens; t; t = t->next)
    json_array_append_new(tokens,
                          json_pack("{s:s, s:s, s:I, s:b}", "access_token", t->access, "grant_type",
                                    t->grant, "expires_ms", (json_int_t)t->expires_ms, "expired",
                                    now >= t->expires_ms));
  for (size_t i = 0; i < COUNT(types); i++)
    if (vs.fail[i][0])
      json_object_set_new(fails, types[i].name, json_string(vs.fail[i]));
  return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:i}", "instances", list, "ssh_keys", keys,
                   "scripts", scripts, "volumes", vols, "tokens", tokens, "type_failures", fails,
                   "token_ttl", (int)token_ttl(sim));
}

static bool verda_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  const char *p = req->path;
  if (strncmp(p, "/_sim/verda/", 12) != 0)
    return false;
  p += 12;
  bool post = strcmp(req->method, "POST") == 0;
  const char *slash = strrchr(p, '/');
  if (strcmp(p, "state") == 0 && strcmp(req->method, "GET") == 0)
    http_json(resp, 200, dump(state_json(sim)));
  else if (strcmp(p, "token-ttl") == 0 && post)
    set_ttl(req, resp);
  else if (post && strncmp(p, "instances/", 10) == 0 && slash &&
           strcmp(slash, "/discontinue") == 0) {
    char id[64];
    snprintf(id, sizeof(id), "%.*s", (int)(slash - (p + 10)), p + 10);
    discontinue(sim, id, resp);
  } else if (post && strncmp(p, "instances/", 10) == 0 && slash && strcmp(slash, "/kill") == 0) {
    /* The generic machine kill, by the instance's id (a crash, or a reclaim without notice). */
    char id[64];
    snprintf(id, sizeof(id), "%.*s", (int)(slash - (p + 10)), p + 10);
    inst_t *v = inst_find(sim, id);
    if (v)
      sim_kill_machine(sim, req, v->mid, resp);
    else
      http_error(resp, 404, "not_found", "no such instance");
  } else if (post && strncmp(p, "instance-types/", 15) == 0 && slash &&
             strcmp(slash, "/fail") == 0) {
    char name[64];
    snprintf(name, sizeof(name), "%.*s", (int)(slash - (p + 15)), p + 15);
    type_fail(req, name, resp);
  } else
    http_error(resp, 404, "not_found", "no such control route");
  return true;
}

static void verda_state(sim_t *sim, json_t *state) {
  unsigned keys = 0;
  for (vkey_t *k = vs.keys; k; k = k->next)
    keys++;
  json_object_set_new(state, "verda_instances", json_integer(machine_count_of(sim, CLOUD)));
  json_object_set_new(state, "verda_ssh_keys", json_integer(keys));
}

/* ---- the front ------------------------------------------------------------------------------ */

static void verda_no_capacity(http_resp_t *resp, const char *type, const char *loc) {
  (void)type;
  (void)loc;
  verda_error(resp, 503, "service_unavailable", "No capacity available");
}

/* The account's instance quota: the documented code closest to it is 403 forbidden_action. */
static void verda_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  char msg[160];
  snprintf(msg, sizeof(msg), "Instance quota exceeded: the project may have %u instances, not %u",
           limit, wanted);
  verda_error(resp, 403, "forbidden_action", msg);
}

static void verda_free(sim_t *sim) {
  (void)sim;
  while (vs.tokens) {
    token_t *t = vs.tokens;
    vs.tokens = t->next;
    free(t);
  }
  while (vs.keys) {
    vkey_t *k = vs.keys;
    vs.keys = k->next;
    key_free(k);
  }
  while (vs.scripts) {
    vscript_t *s = vs.scripts;
    vs.scripts = s->next;
    script_free(s);
  }
  while (vs.volumes) {
    volume_t *v = vs.volumes;
    vs.volumes = v->next;
    free(v->name);
    free(v);
  }
  while (vs.insts) {
    inst_t *v = vs.insts;
    vs.insts = v->next;
    inst_free(v);
  }
}

const sim_front_t verda_front = {
    .name = CLOUD,
    .path_prefix = MOUNT "/v1/",
    .handle = verda_handle,
    .control = verda_control,
    .state = verda_state,
    .error = verda_error,
    .rate_limited = {429, "rate_limit_exceeded",
                     "Too many requests for the current project or endpoint window"},
    .server_error = {500, "server_error", "Internal server error"},
    .malformed_body = "{\"code\": \"server_error\", \"mess",
    .no_capacity = verda_no_capacity,
    .over_limit = verda_over_limit,
    .free = verda_free,
};
