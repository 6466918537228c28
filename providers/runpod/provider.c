/* The RunPod provider: GPU pods through RunPod's REST API (rest.runpod.io/v1, bearer API
 * key), on the cloud skeleton (providers/cloud/cloud.h owns the lifecycle; this file is
 * RunPod's shapes, from the official OpenAPI description).
 *
 * Design notes
 * - Instance types are written as the public RunPod price snapshot writes them (SkyPilot's
 *   catalog, ../shared/catalogs/runpod-vms.csv): "COUNTx_GPU_CLOUD", e.g. 1x_RTX4090_SECURE:
 *   gpuCount 1, the GPU type "NVIDIA GeForce RTX 4090" (gpu_types below maps the short names
 *   to the description's GPUTypeId values), cloudType SECURE. A region is a country code
 *   (countryCodes), a zone a data centre (dataCenterIds, e.g. US-TX-3).
 * - Catalog: RunPod's REST API lists no GPU prices, so the catalog request is answered
 *   KITE_ENOTSUP with what to do; `kite offers --import runpod-vms.csv --provider runpod`
 *   puts the snapshot's offers in the catalog (kite's catalog falls back to them, marked as a
 *   snapshot). What a pod really costs is the pod's costPerHr.
 * - Create: POST /pods with name, imageName, gpuTypeIds, gpuCount, cloudType, computeType GPU,
 *   interruptible (spot), the country and data centre, containerDiskInGb, ports 22/tcp,
 *   supportPublicIp, and env: PUBLIC_KEY (kite's key: RunPod's images authorize it for root),
 *   KITE_POOL_TAG (the pool's tag: a list finds a pool's pods by it) and, pinned, the host key
 *   kite made (KITE_SSH_HOST_KEY, KITE_SSH_HOST_KEY_PUB, base64) with a start command that
 *   installs it as the ed25519 host key and then runs the image's own /start.sh (RunPod's
 *   images have one; for an image without, set pin_host_key: false). The pool's user data
 *   runs from that start command too. The API has no idempotency token: after an ambiguous
 *   answer find lists pods by name.
 * - Describe: GET /pods/{podId}: desiredStatus RUNNING with a publicIp and a port mapped to
 *   22 runs (kite connects to publicIp at portMappings["22"]); RUNNING without them is
 *   pending; EXITED is stopped and TERMINATED gone — on an interruptible pod both are RunPod
 *   taking it back (no notice is given): preempted, and the pool replaces the node. A pod
 *   that exits before it ever ran never runs: it is terminated and the launch fails over.
 * - Destroy: DELETE /pods/{podId}, confirmed when the pod is not found. List: GET /pods, kept
 *   by env KITE_POOL_TAG.
 * - Credentials: "token" in the options, $RUNPOD_API_KEY, or the apikey of runpodctl's
 *   ~/.runpod/config.toml; registered as a secret. The endpoint: "api_url",
 *   $KITE_RUNPOD_API_URL, or https://rest.runpod.io/v1. */
#include <jansson.h>
#include <stdio.h>
#include <strings.h>

#include "../cloud/rest.h"
#include "../provider_info.h"
#include "kite/runpod.h"
#include "kite_impl.h"

#define NAME "runpod"
#define DEFAULT_API "https://rest.runpod.io/v1"
#define DEFAULT_TYPE "1x_RTX4090_SECURE"
#define DEFAULT_IMAGE "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
#define ANYWHERE "any"
#define KEY_HELP                                                                                   \
  "set RUNPOD_API_KEY to an API key of the account (RunPod console → Settings → API Keys), "   \
  "run `runpodctl config --apiKey KEY`, or put \"token\" in the provider options"

/* The snapshot's GPU names and RunPod's GPUTypeId for them. */
static const struct {
  const char *name, *id;
} gpu_types[] = {
    {"A100-80GB", "NVIDIA A100 80GB PCIe"},
    {"A100-80GB-SXM", "NVIDIA A100-SXM4-80GB"},
    {"A40", "NVIDIA A40"},
    {"B200", "NVIDIA B200"},
    {"H100", "NVIDIA H100 PCIe"},
    {"H100-NVL", "NVIDIA H100 NVL"},
    {"H100-SXM", "NVIDIA H100 80GB HBM3"},
    {"H200-SXM", "NVIDIA H200"},
    {"L4", "NVIDIA L4"},
    {"L40", "NVIDIA L40"},
    {"L40S", "NVIDIA L40S"},
    {"MI300X", "AMD Instinct MI300X OAM"},
    {"RTX3090", "NVIDIA GeForce RTX 3090"},
    {"RTX4000-Ada", "NVIDIA RTX 4000 Ada Generation"},
    {"RTX4090", "NVIDIA GeForce RTX 4090"},
    {"RTX6000-Ada", "NVIDIA RTX 6000 Ada Generation"},
    {"RTXA4000", "NVIDIA RTX A4000"},
    {"RTXA4500", "NVIDIA RTX A4500"},
    {"RTXA5000", "NVIDIA RTX A5000"},
    {"RTXA6000", "NVIDIA RTX A6000"},
};

struct kite_runpod_provider {
  kite_cloud_t *cloud;
  char *token, *api_url, *user, *image;
  unsigned port, disk_gb;
  char *cli_key, *cli_where;
  bool cli_read;
};

typedef struct runpod_api {
  kite_cloud_rest_t rest; /* first: the rest helpers read cfg->api as one */
  unsigned disk_gb;
} runpod_api_t;

/* An instance type read: "2x_H100-SXM_SECURE". */
typedef struct pod_type {
  unsigned count;
  const char *gpu_id;
  char cloud[16];
} pod_type_t;

static bool type_parse(const char *type, pod_type_t *t) {
  char *end = NULL;
  unsigned long n = strtoul(type, &end, 10);
  if (end == type || n == 0 || n > 64 || strncmp(end, "x_", 2) != 0)
    return false;
  const char *g = end + 2, *u = strrchr(g, '_');
  if (u == NULL || u == g)
    return false;
  t->count = (unsigned)n;
  t->gpu_id = NULL;
  for (size_t i = 0; i < KITE_ARRAY_SIZE(gpu_types); i++)
    if (strlen(gpu_types[i].name) == (size_t)(u - g) &&
        strncmp(gpu_types[i].name, g, (size_t)(u - g)) == 0)
      t->gpu_id = gpu_types[i].id;
  if (t->gpu_id == NULL || (strcmp(u + 1, "SECURE") != 0 && strcmp(u + 1, "COMMUNITY") != 0))
    return false;
  snprintf(t->cloud, sizeof(t->cloud), "%s", u + 1);
  return true;
}

/* ---- configuration -------------------------------------------------------------------------- */

/* runpodctl's key: `apikey = "..."` (or 'apikey = ...') in ~/.runpod/config.toml. */
static char *cli_key(char **where) {
  const char *home = getenv("HOME");
  char *path = home ? kite__sprintf("%s/.runpod/config.toml", home) : NULL;
  *where = path;
  char *text = NULL, *key = NULL;
  if (path == NULL || kite__read_file(path, &text, NULL) != 0)
    return NULL;
  for (char *line = text; line && *line && key == NULL;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    line += strspn(line, " \t");
    if (strncasecmp(line, "apikey", 6) == 0) {
      char *v = line + 6;
      v += strspn(v, " \t");
      if (*v == '=') {
        v++;
        v += strspn(v, " \t\"'");
        size_t n = strcspn(v, "\"' \t\r");
        if (n > 0)
          key = strndup(v, n);
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  memset(text, 0, strlen(text));
  free(text);
  return key;
}

bool kite__runpod_configured(void) {
  if (kite_cloud_first(getenv("RUNPOD_API_KEY"), NULL, NULL))
    return true;
  char *where = NULL, *key = cli_key(&where);
  bool found = key != NULL;
  if (key)
    memset(key, 0, strlen(key));
  free(key);
  free(where);
  return found;
}

/* RunPod's error bodies: {"error": "..."} (the description gives none; its UnauthorizedError
 * has error). */
static const kite_cloud_rest_errors_t runpod_errors = {NULL, "code", "error"};

static void runpod_free_api(void *p) {
  runpod_api_t *a = p;
  if (a == NULL)
    return;
  free(a->rest.url);
  free(a->rest.token);
  free(a);
}

static int runpod_configure(kite_cloud_t *c, const char *options,
                            const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                            char **msg) {
  kite_runpod_provider_t *rp = kite_cloud_provider(c);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(c), options, msg);
  if (o == NULL)
    return KITE_EINVAL;
  const char *tok = kite_cloud_first(rp->token, getenv("RUNPOD_API_KEY"), NULL);
  if (tok == NULL && json_object_get(o, "token") == NULL) {
    if (!rp->cli_read) {
      rp->cli_key = cli_key(&rp->cli_where);
      rp->cli_read = true;
    }
    tok = rp->cli_key;
  }
  char *looked = kite__sprintf("the provider options, $RUNPOD_API_KEY and %s",
                               rp->cli_where ? rp->cli_where : "~/.runpod/config.toml");
  kite_cloud_rest_defaults_t d = {
      .token = tok,
      .token_help = KEY_HELP,
      .looked_in = looked ? looked : "the provider options and the environment",
      .url = kite_cloud_first(rp->api_url, getenv("KITE_RUNPOD_API_URL"), NULL),
      .url_default = DEFAULT_API,
      .url_hint = "api_url in the provider options or KITE_RUNPOD_API_URL",
      .errors = &runpod_errors,
      .account = "account",
      .user = rp->user,
      .port = rp->port,
      .image = rp->image,
      .region_builtin = ANYWHERE,
      .type_builtin = DEFAULT_TYPE,
      .image_builtin = DEFAULT_IMAGE};
  int rc = kite_cloud_rest_configure(c, o, &d, launch, cfg, msg);
  free(looked);
  kite_cloud_rest_t *rest = cfg->api;
  runpod_api_t *api = rest ? calloc(1, sizeof(*api)) : NULL;
  if (rest && api == NULL && rc == 0)
    rc = KITE_ENOMEM;
  if (api) {
    api->rest = *rest;
    free(rest);
    cfg->api = api;
    json_t *disk = json_object_get(o, "disk_gb");
    api->disk_gb = json_is_integer(disk) ? (unsigned)json_integer_value(disk)
                   : rp->disk_gb         ? rp->disk_gb
                                         : 50;
  }
  pod_type_t t;
  if (rc == 0 && launch && !type_parse(cfg->type, &t)) {
    *msg = kite__sprintf("runpod: instance type %s is not one kite can launch: write COUNTx_GPU_"
                         "SECURE or COUNTx_GPU_COMMUNITY with a GPU of RunPod's (A100-80GB, "
                         "H100-SXM, L40S, RTX4090, RTXA6000, ...; `kite offers --provider "
                         "runpod` lists an imported snapshot's)",
                         cfg->type);
    rc = KITE_EINVAL;
  }
  json_decref(o);
  return rc;
}

/* ---- first boot: env and the start command ------------------------------------------------ */

/* {"env": {...}, "start": "shell text"} as JSON text: what create sends. */
static char *runpod_first_boot(kite_cloud_t *c, const char *priv, const char *pub,
                               const char *user_data) {
  bool ud = user_data && *user_data;
  char *k = priv ? kite_cloud_base64(priv) : NULL, *kp = pub ? kite_cloud_base64(pub) : NULL,
       *u = ud ? kite_cloud_base64(user_data) : NULL;
  char *out = NULL;
  if ((priv == NULL || (k && kp)) && (!ud || u)) {
    if (k)
      kite_secret_add(kite_cloud_runtime(c), k);
    if (u && strlen(u) >= 4)
      kite_secret_add(kite_cloud_runtime(c), u);
    json_t *env = json_object();
    if (env && k) {
      json_object_set_new(env, "KITE_SSH_HOST_KEY", json_string(k));
      json_object_set_new(env, "KITE_SSH_HOST_KEY_PUB", json_string(kp));
    }
    if (env && u)
      json_object_set_new(env, "KITE_USER_DATA", json_string(u));
    const char *keys =
        k ? "umask 077; mkdir -p /etc/ssh; "
            "printf %s \"$KITE_SSH_HOST_KEY\" | base64 -d > /etc/ssh/ssh_host_ed25519_key; "
            "printf %s \"$KITE_SSH_HOST_KEY_PUB\" | base64 -d > /etc/ssh/ssh_host_ed25519_key.pub; "
            "unset KITE_SSH_HOST_KEY; umask 022; "
          : "";
    const char *run = u ? "mkdir -p /var/lib/kite; printf %s \"$KITE_USER_DATA\" | base64 -d > "
                          "/var/lib/kite/user-data; chmod 700 /var/lib/kite/user-data; "
                          "(/var/lib/kite/user-data > /var/lib/kite/user-data.log 2>&1 &); "
                        : "";
    char *start = k || u ? kite__sprintf("%s%sexec /start.sh", keys, run) : kite__strdup("");
    json_t *j = env && start ? json_pack("{s:o, s:s}", "env", env, "start", start) : NULL;
    if (j == NULL)
      json_decref(env);
    out = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    free(start);
  }
  if (k)
    memset(k, 0, strlen(k));
  free(k);
  free(kp);
  free(u);
  return out;
}

/* ---- create, find --------------------------------------------------------------------------- */

static void on_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  const char *id = json_string_value(json_object_get(j, "id"));
  bool ok = id && *id && strlen(id) < 64 &&
            strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(id);
  if (!ok) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  kite_cloud_created(call, 0, id);
  json_decref(j);
  kite_cloud_answer_ok(call);
}

static void runpod_create(kite_cloud_call_t *call) {
  const kite_cloud_cfg_t *cfg = call->cfg;
  const runpod_api_t *api = cfg->api;
  const kite_cloud_launch_t *l = call->launches[0];
  pod_type_t t;
  if (!type_parse(cfg->type, &t)) {
    kite_cloud_answer_fail(call, KITE_EINVAL, "not a RunPod instance type");
    return;
  }
  json_t *boot = NULL;
  if (l->user_data && *l->user_data) {
    json_error_t jerr;
    boot = json_loads(l->user_data, 0, &jerr);
  }
  json_t *env = json_object_get(boot, "env");
  const char *start = json_string_value(json_object_get(boot, "start"));
  json_t *e = json_is_object(env) ? json_deep_copy(env) : json_object();
  if (e) {
    json_object_set_new(e, "PUBLIC_KEY", json_string(kite_cloud_pubkey(call->cloud)));
    json_object_set_new(e, "KITE_POOL_TAG", json_string(l->tag));
  }
  json_t *body = e ? json_pack("{s:s, s:s, s:[s], s:i, s:s, s:s, s:b, s:i, s:i, s:[s], s:b, s:o}",
                               "name", l->name, "imageName", cfg->image, "gpuTypeIds", t.gpu_id,
                               "gpuCount", (int)t.count, "cloudType", t.cloud, "computeType", "GPU",
                               "interruptible", l->spot, "containerDiskInGb", (int)api->disk_gb,
                               "volumeInGb", 0, "ports", "22/tcp", "supportPublicIp", 1, "env", e)
                   : NULL;
  if (body && start && *start)
    json_object_set_new(body, "dockerStartCmd", json_pack("[s, s, s]", "bash", "-c", start));
  if (body && cfg->region && strcmp(cfg->region, ANYWHERE) != 0)
    json_object_set_new(body, "countryCodes", json_pack("[s]", cfg->region));
  if (body && cfg->zone)
    json_object_set_new(body, "dataCenterIds", json_pack("[s]", cfg->zone));
  json_decref(boot);
  if (body == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite_cloud_rest_sendf(call, "POST", body, on_created, "/pods");
  json_decref(body);
}

static json_t *pods_of(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  if (status == 0 && r && r->body_len) {
    json_error_t jerr;
    j = json_loadb(r->body, r->body_len, 0, &jerr);
  }
  if (status != 0 || !json_is_array(j)) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return NULL;
  }
  return j;
}

static void on_found(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = pods_of(call, status, r);
  if (j == NULL)
    return;
  size_t i;
  json_t *p;
  json_array_foreach(j, i, p) {
    const char *n = json_string_value(json_object_get(p, "name"));
    const char *id = json_string_value(json_object_get(p, "id"));
    if (n && id && strcmp(n, call->launches[0]->name) == 0)
      kite_cloud_created(call, 0, id);
  }
  json_decref(j);
  kite_cloud_answer_ok(call);
}

static void runpod_find(kite_cloud_call_t *call) {
  char *n = kite_cloud_escape(call->launches[0]->name);
  if (n)
    kite_cloud_rest_sendf(call, "GET", NULL, on_found, "/pods?name=%s", n);
  else
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
  free(n);
}

/* ---- describe, destroy, list ---------------------------------------------------------------- */

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  if (j == NULL) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  const char *st = json_string_value(json_object_get(j, "desiredStatus"));
  bool spot = json_is_true(json_object_get(j, "interruptible"));
  const char *ip = json_string_value(json_object_get(j, "publicIp"));
  json_t *pm = json_object_get(json_object_get(j, "portMappings"), "22");
  long long port = json_is_integer(pm) ? json_integer_value(pm) : 0;
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  if (st && strcmp(st, "RUNNING") == 0) {
    bool up = ip && *ip && port > 0 && port < 65536;
    a.instance.state = up ? KITE_CLOUD_RUNNING : KITE_CLOUD_PENDING;
    a.instance.address = up ? ip : NULL;
    a.instance.port = up ? (unsigned)port : 0;
  } else if (st && (strcmp(st, "EXITED") == 0 || strcmp(st, "TERMINATED") == 0)) {
    a.instance.state = strcmp(st, "EXITED") == 0 ? KITE_CLOUD_STOPPED : KITE_CLOUD_GONE;
    a.instance.preempted = spot;
    /* A launch that sees it has a pod that never ran (and never will). */
    a.instance.never_runs = strcmp(st, "EXITED") == 0 ? "EXITED" : "TERMINATED";
  } else {
    a.instance.state = KITE_CLOUD_PENDING;
  }
  double cost = 0;
  if (kite_cloud_rest_price(json_object_get(j, "costPerHr"), &cost))
    a.instance.price_hourly = cost;
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void runpod_describe(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "GET", NULL, on_described, "/pods/%s", call->id);
}

/* A DELETE of a pod RunPod no longer has is answered 400 "invalid pod id" (the description
 * gives it no 404): after a repeated delete, that is the pod gone, as the skeleton then
 * confirms with a describe. */
static void on_destroyed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  if (status == KITE_EHTTP && r && r->status == 400 && r->body &&
      memmem(r->body, r->body_len, "invalid pod id", 14)) {
    kite_cloud_answer_t a = {.outcome = KITE_CLOUD_NOT_FOUND};
    kite_cloud_answer(call, &a);
    return;
  }
  kite_cloud_rest_done(call, status, r);
}

static void runpod_destroy(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "DELETE", NULL, on_destroyed, "/pods/%s", call->id);
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = pods_of(call, status, r);
  if (j == NULL)
    return;
  bool any = strcmp(call->tag, "*") == 0;
  size_t i;
  json_t *p;
  json_array_foreach(j, i, p) {
    const char *tag =
        json_string_value(json_object_get(json_object_get(p, "env"), "KITE_POOL_TAG"));
    const char *id = json_string_value(json_object_get(p, "id"));
    if (tag && id && (any || strcmp(tag, call->tag) == 0))
      kite_cloud_listed(call, id, tag);
  }
  json_decref(j);
  kite_cloud_answer_ok(call);
}

static void runpod_list_page(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "GET", NULL, on_listed, "/pods");
}

static void runpod_catalog(kite_cloud_call_t *call) {
  kite_cloud_answer_fail(call, KITE_ENOTSUP,
                         "RunPod's REST API lists no GPU prices: import a price snapshot (`kite "
                         "offers --import runpod-vms.csv --provider runpod`, the public catalog "
                         "SkyPilot publishes), or name resources.instance_type");
}

/* ---- the table ------------------------------------------------------------------------------ */

static const kite_cloud_advice_t runpod_advice[] = {
    {NULL, 401, NULL, KITE_ECREDENTIALS, "the API key was rejected: " KEY_HELP},
    {NULL, 403, NULL, KITE_ECREDENTIALS,
     "the API key may not do this: use a key with read and write permission"},
    /* RunPod answers this with 500 (as its clients report) or 400 (the description's only
     * create refusal). */
    {NULL, 400, "no instances currently available", KITE_ECAPACITY,
     "no GPU of that type is free there now: choose another type, country or data centre"},
    {NULL, 500, "no instances currently available", KITE_ECAPACITY,
     "no GPU of that type is free there now: choose another type, country or data centre"},
    {NULL, 400, NULL, KITE_EPROVIDER, "check the instance type, image and options"},
    {NULL, 429, NULL, KITE_EAGAIN,
     "rate limited even after backing off: retry later, or run fewer kite processes on this "
     "account"},
};

static const kite_cloud_ops_t runpod_ops = {
    .name = NAME,
    .title = "RunPod",
    .noun = "pod",
    .batch_max = 1,
    .spot = true,
    .endpoint_hint = "api_url in the provider options or KITE_RUNPOD_API_URL",
    .configure = runpod_configure,
    .configure_reach = kite_cloud_rest_configure_reach,
    .free_api = runpod_free_api,
    .create = runpod_create,
    .find = runpod_find,
    .describe = runpod_describe,
    .destroy = runpod_destroy,
    .list_page = runpod_list_page,
    .catalog = runpod_catalog,
    .free_site_data = free,
    .first_boot = runpod_first_boot,
    .advice = runpod_advice,
    .n_advice = KITE_ARRAY_SIZE(runpod_advice),
};

static void free_provider(void *p) {
  kite_runpod_provider_t *rp = p;
  if (rp == NULL)
    return;
  free(rp->token);
  free(rp->api_url);
  free(rp->user);
  free(rp->image);
  if (rp->cli_key)
    memset(rp->cli_key, 0, strlen(rp->cli_key));
  free(rp->cli_key);
  free(rp->cli_where);
  free(rp);
}

int kite_runpod_provider_new(kite_runtime_t *rt, const kite_runpod_provider_options_t *opts,
                             kite_runpod_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_runpod_provider_options_t o = {0};
  if (opts)
    o = *opts;
  kite_runpod_provider_t *rp = calloc(1, sizeof(*rp));
  if (rp == NULL)
    return KITE_ENOMEM;
  const char *in[] = {o.token, o.api_url, o.ssh_user, o.image};
  char **to[] = {&rp->token, &rp->api_url, &rp->user, &rp->image};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(in); i++)
    if (in[i] && (*to[i] = kite__strdup(in[i])) == NULL) {
      free_provider(rp);
      return KITE_ENOMEM;
    }
  rp->port = o.ssh_port;
  rp->disk_gb = o.disk_gb;
  if (rp->token)
    kite_secret_add(rt, rp->token);
  kite_cloud_options_t co = KITE_CLOUD_OPTIONS_OF(o, free_provider);
  int rc = kite_cloud_new(rt, &runpod_ops, &co, rp, &rp->cloud);
  if (rc != 0) {
    free_provider(rp);
    return rc;
  }
  if (out)
    *out = rp;
  return 0;
}
