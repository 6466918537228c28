/* The RunPod front of the emulator: RunPod's REST API (specs/runpod.json, server
 * https://rest.runpod.io/v1), mounted at /runpod/v1 because the Hetzner front owns /v1/. It
 * owns the pods, the fixed catalog of GPU types and where they are placed, and the control
 * routes that interrupt a pod or make a GPU type's launches fail.
 *
 *   POST   /runpod/v1/pods                PodCreateInput → 201 {Pod}; the machine starts at once
 *   GET    /runpod/v1/pods                ?name=&id=&desiredStatus=&gpuTypeId=&dataCenterId=
 *                                         &imageName=&computeType=… → 200 [Pod…]
 *   GET    /runpod/v1/pods/{podId}        200 {Pod}; 404 once it is gone
 *   DELETE /runpod/v1/pods/{podId}        204; TERMINATED until every process of its node is
 *                                         gone, then 404 and absent from the list
 *   POST   /runpod/v1/pods/{podId}/stop   200; EXITED, its node stopped
 *
 *   POST   /_sim/runpod/pods/{id}/interrupt       (control) an interruptible pod is taken back
 *   POST   /_sim/runpod/gpu-types/{id}/fail       (control) {"status": "EXITED"|"TERMINATED"|
 *                                                 null}: later launches of the type fail
 *   GET    /_sim/runpod/state                     (control)
 *
 * A pod is a machine (machines.c). Its node's authorized key is the env value PUBLIC_KEY, which
 * RunPod's images authorize; its tag is the env value KITE_POOL_TAG, else the pod's name. kite's
 * start command installs a host key it hands over in env (KITE_SSH_HOST_KEY, the base64 of an
 * OpenSSH ed25519 private key file, and KITE_SSH_HOST_KEY_PUB, the base64 of its public key
 * line); the emulator runs no start command, it gives the machine the cloud-config that makes
 * that key the node's before the pod first shows an address.
 *
 * What a pod shows (desiredStatus, then publicIp and portMappings):
 *   created, node starting      RUNNING, null, {}
 *   the node listens            RUNNING, its loopback address, {"22": --ssh-port}
 *   stopped (POST …/stop)       EXITED, null, {}          "Exited by User: DATE"
 *   interrupted (control)       EXITED, null, {}          "Exited by RunPod: interrupted: DATE"
 *   its GPU type fails          RUNNING for a second, then EXITED or TERMINATED, never an address
 *   its node died (the generic  RUNNING, null, {}         (the host is down; the pod stays)
 *   /_sim/machines/kill)
 *   deleted                     TERMINATED, null, {}      "Terminated by User: DATE"
 *
 * Errors: a wrong or missing key is 401 with the description's UnauthorizedError {"message"};
 * every other error is RunPod's {"error", "status"} (the description gives those answers no
 * body). Billing is by the second at costPerHr. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudsim.h"

#define CLOUD "runpod"
#define PREFIX "/runpod/v1"
#define USER_ID "user_2kTq8cVYbLmR3eWs6NfH0pXzAi9"
#define MAX_GPUS 8
#define NAME_MAX_LEN 191
/* A pod of a failing GPU type shows RUNNING this long before its failure, as a real one would. */
#define FAIL_AFTER_MS 1000
#define NO_CAPACITY_MSG "create pod: There are no instances currently available"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the catalog ---------------------------------------------------------------------------- */

/* One GPU type, from the SECURE rows of catalogs/runpod-vms.csv (SkyPilot's snapshot): the
 * on-demand and spot price per GPU and hour, and the vCPUs and memory that come with each GPU.
 * The snapshot has no Community Cloud rows: a COMMUNITY pod is priced as a SECURE one. */
typedef struct gpu_type {
  const char *id;      /* RunPod's GPUTypeId */
  const char *display; /* displayName */
  double price, spot;  /* $/h per GPU; spot 0: none published, so no interruptible pods */
  int vcpus, mem_gb;   /* per GPU */
  const char *dcs[3];  /* the data centers that have it */
} gpu_type_t;

static const gpu_type_t gpu_types[] = {
    {"NVIDIA GeForce RTX 4090", "RTX 4090", 0.69, 0.34, 16, 24, {"US-TX-3", "EU-RO-1", "CA-MTL-1"}},
    {"NVIDIA A100 80GB PCIe", "A100 PCIe", 1.64, 1.19, 8, 80, {"US-TX-3", "CA-MTL-1", "EU-CZ-1"}},
    {"NVIDIA RTX A6000", "RTX A6000", 0.49, 0.33, 4, 48, {"EU-RO-1", "US-IL-1", "EU-SE-1"}},
    {"NVIDIA H100 80GB HBM3", "H100 SXM", 2.99, 2.69, 20, 80, {"US-TX-3", "EUR-IS-1", "CA-MTL-1"}},
    {"NVIDIA GeForce RTX 3090", "RTX 3090", 0.43, 0, 16, 24, {"EU-RO-1", "CA-MTL-1", "US-KS-2"}},
    {"NVIDIA A40", "A40", 0.44, 0, 9, 48, {"EU-SE-1", "US-KS-2", "EU-CZ-1"}},
};

/* The data centers of the catalog and their countries (the snapshot's Region column). */
static const char *const dc_country[][2] = {
    {"US-TX-3", "US"}, {"EU-RO-1", "RO"}, {"CA-MTL-1", "CA"}, {"EU-CZ-1", "CZ"},
    {"US-IL-1", "US"}, {"EU-SE-1", "SE"}, {"EUR-IS-1", "IS"}, {"US-KS-2", "US"},
};

/* PodCreateInput's gpuTypeIds enum: a GPU type RunPod knows. One the catalog does not have is
 * placed nowhere (no capacity); one outside this list is invalid input. */
static const char *const gpu_type_ids[] = {
    "NVIDIA GeForce RTX 4090",
    "NVIDIA A40",
    "NVIDIA RTX A5000",
    "NVIDIA GeForce RTX 5090",
    "NVIDIA H100 80GB HBM3",
    "NVIDIA GeForce RTX 3090",
    "NVIDIA RTX A4500",
    "NVIDIA L40S",
    "NVIDIA H200",
    "NVIDIA L4",
    "NVIDIA RTX 6000 Ada Generation",
    "NVIDIA A100-SXM4-80GB",
    "NVIDIA RTX 4000 Ada Generation",
    "NVIDIA RTX A6000",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA RTX 2000 Ada Generation",
    "NVIDIA RTX A4000",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition",
    "NVIDIA H100 PCIe",
    "NVIDIA H100 NVL",
    "NVIDIA L40",
    "NVIDIA B200",
    "NVIDIA GeForce RTX 3080 Ti",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
    "NVIDIA GeForce RTX 3080",
    "NVIDIA GeForce RTX 3070",
    "AMD Instinct MI300X OAM",
    "NVIDIA GeForce RTX 4080 SUPER",
    "Tesla V100-PCIE-16GB",
    "Tesla V100-SXM2-32GB",
    "NVIDIA RTX 5000 Ada Generation",
    "NVIDIA GeForce RTX 4070 Ti",
    "NVIDIA RTX 4000 SFF Ada Generation",
    "NVIDIA GeForce RTX 3090 Ti",
    "NVIDIA RTX A2000",
    "NVIDIA GeForce RTX 4080",
    "NVIDIA A30",
    "NVIDIA GeForce RTX 5080",
    "Tesla V100-FHHL-16GB",
    "NVIDIA H200 NVL",
    "Tesla V100-SXM2-16GB",
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
    "NVIDIA A5000 Ada",
    "Tesla V100-PCIE-32GB",
    "NVIDIA  RTX A4500",
    "NVIDIA  A30",
    "NVIDIA GeForce RTX 3080TI",
    "Tesla T4",
    "NVIDIA RTX A30"};

/* PodCreateInput's dataCenterIds enum. */
static const char *const dc_ids[] = {
    "EU-RO-1",  "CA-MTL-1", "EU-SE-1", "US-IL-1", "EUR-IS-1", "EU-CZ-1",  "US-TX-3",
    "EUR-IS-2", "US-KS-2",  "US-GA-2", "US-WA-1", "US-TX-1",  "CA-MTL-3", "EU-NL-1",
    "US-TX-4",  "US-CA-2",  "US-NC-1", "OC-AU-1", "US-DE-1",  "EUR-IS-3", "CA-MTL-2",
    "AP-JP-1",  "EUR-NO-1", "EU-FR-1", "US-KS-3", "US-GA-1"};

static bool listed(const char *const *list, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(list[i], s) == 0)
      return true;
  return false;
}

static const gpu_type_t *gpu_find(const char *id) {
  for (size_t i = 0; i < COUNT(gpu_types); i++)
    if (strcmp(gpu_types[i].id, id) == 0)
      return &gpu_types[i];
  return NULL;
}

static const char *country_of(const char *dc) {
  for (size_t i = 0; i < COUNT(dc_country); i++)
    if (strcmp(dc_country[i][0], dc) == 0)
      return dc_country[i][1];
  return "";
}

/* ---- pods ----------------------------------------------------------------------------------- */

/* What the front keeps of a pod beside its machine; dropped once the machine is gone. */
typedef struct pod {
  uint64_t mid;  /* its machine's id */
  char id[16];   /* RunPod's pod id, 14 characters of [a-z0-9] */
  char host[16]; /* machineId */
  const gpu_type_t *gpu;
  const char *dc; /* the data center it was placed in (static text) */
  int gpu_count;
  bool interruptible, secure;
  char *name, *image;
  json_t *env, *ports, *start_cmd, *entrypoint;
  json_int_t disk_gb, volume_gb;
  char *mount;
  double cost;         /* costPerHr */
  uint64_t created_ms; /* wall clock */
  char started_at[32]; /* lastStartedAt */
  char change[160];    /* lastStatusChange */
  char fail[12];       /* its GPU type's failure when it was launched, or "" */
  char fail_change[160];
  bool stopped, interrupted, terminated;
  struct pod *next; /* oldest first */
} pod_t;

static struct {
  pod_t *pods;
  char fail[COUNT(gpu_types)][12]; /* per GPU type: how its launches end, or "" */
} rp;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A time as lastStatusChange writes it (JavaScript's Date string, in UTC). */
static void js_date(uint64_t ms, char *out, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", &tm);
}

static void set_change(pod_t *p, const char *event, uint64_t ms) {
  char date[96];
  js_date(ms, date, sizeof(date));
  snprintf(p->change, sizeof(p->change), "%s: %s", event, date);
}

static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* n characters of [a-z0-9] derived from seed: RunPod's ids look so ("xedezhzb9la3ye"). */
static void make_id(uint64_t seed, char *out, size_t n) {
  static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  uint64_t x = mix(seed);
  for (size_t i = 0; i < n; i++) {
    if (i % 12 == 0)
      x = mix(x + i);
    out[i] = alphabet[x % 36];
    x /= 36;
  }
  out[n] = '\0';
}

static void pod_free(pod_t *p) {
  free(p->name);
  free(p->image);
  free(p->mount);
  json_decref(p->env);
  json_decref(p->ports);
  json_decref(p->start_cmd);
  json_decref(p->entrypoint);
  free(p);
}

/* Forgets the pods whose machines are gone (deleted, or vanished when killed). */
static void prune(sim_t *sim) {
  for (pod_t **pp = &rp.pods; *pp;) {
    pod_t *p = *pp;
    if (machine_find_of(sim, p->mid, CLOUD) == NULL) {
      *pp = p->next;
      pod_free(p);
    } else {
      pp = &p->next;
    }
  }
}

static pod_t *pod_find(sim_t *sim, const char *id) {
  prune(sim);
  for (pod_t *p = rp.pods; p; p = p->next)
    if (strcmp(p->id, id) == 0)
      return p;
  return NULL;
}

/* Whether a pod of a failing GPU type shows its failure yet. */
static bool failed(const pod_t *p) {
  return p->fail[0] && now_ms() - p->created_ms >= FAIL_AFTER_MS;
}

static const char *desired_status(const pod_t *p, const machine_t *m) {
  if (p->terminated || m->state == M_DELETING)
    return "TERMINATED";
  if (failed(p))
    return p->fail;
  if (p->stopped || p->interrupted)
    return "EXITED";
  return "RUNNING";
}

/* Whether the pod shows its address: it should run, and its node listens. */
static bool reachable(const pod_t *p, const machine_t *m) {
  return strcmp(desired_status(p, m), "RUNNING") == 0 && !p->fail[0] && m->state == M_RUNNING;
}

/* The description's gpu object (and machine.gpuType): prices per GPU. The spot prices are left
 * out when the snapshot publishes none. */
static json_t *gpu_json(const gpu_type_t *g, int count) {
  json_t *j = json_pack("{s:s, s:i, s:s, s:f, s:f}", "id", g->id, "count", count, "displayName",
                        g->display, "securePrice", g->price, "communityPrice", g->price);
  if (g->spot > 0) {
    json_object_set_new(j, "secureSpotPrice", json_real(g->spot));
    json_object_set_new(j, "communitySpotPrice", json_real(g->spot));
  }
  return j;
}

/* The description's Pod. The fields the description types as strings but RunPod answers null
 * for (aiApiId, endpointId, templateId, networkVolumeId…) are left out. */
static json_t *pod_json(sim_t *sim, const pod_t *p, const machine_t *m) {
  bool up = reachable(p, m);
  const char *status = desired_status(p, m);
  const char *change = failed(p) && !p->terminated ? p->fail_change : p->change;
  json_t *mappings = json_object();
  bool has22 = false;
  for (size_t i = 0; i < json_array_size(p->ports); i++)
    has22 = has22 || strcmp(json_string_value(json_array_get(p->ports, i)), "22/tcp") == 0;
  if (up && has22)
    json_object_set_new(mappings, "22", json_integer(sim->ssh_port));
  json_t *machine =
      json_pack("{s:i, s:s, s:o, s:s, s:s, s:b, s:b, s:f, s:s, s:i}", "minPodGpuCount", 1,
                "gpuTypeId", p->gpu->id, "gpuType", gpu_json(p->gpu, p->gpu_count), "dataCenterId",
                p->dc, "location", country_of(p->dc), "secureCloud", p->secure, "supportPublicIp",
                true, "currentPricePerGpu", p->cost / p->gpu_count, "gpuDisplayName",
                p->gpu->display, "cpuCount", p->gpu->vcpus * MAX_GPUS);
  json_t *j = json_pack(
      "{s:s, s:s, s:s, s:o, s:o, s:f, s:f, s:b, s:o, s:s, s:o, s:O, s:s, s:s, s:s, s:I, s:I}", "id",
      p->id, "name", p->name, "desiredStatus", status, "publicIp",
      up ? json_string(m->address) : json_null(), "portMappings", mappings, "costPerHr", p->cost,
      "adjustedCostPerHr", p->cost, "interruptible", p->interruptible, "gpu",
      gpu_json(p->gpu, p->gpu_count), "machineId", p->host, "machine", machine, "env", p->env,
      "image", p->image, "lastStartedAt", p->started_at, "lastStatusChange", change,
      "containerDiskInGb", p->disk_gb, "volumeInGb", p->volume_gb);
  json_object_update_new(
      j, json_pack("{s:s, s:i, s:i, s:O, s:O, s:O, s:s, s:b, s:[], s:i, s:b}", "volumeMountPath",
                   p->mount, "vcpuCount", p->gpu->vcpus * p->gpu_count, "memoryInGb",
                   p->gpu->mem_gb * p->gpu_count, "ports", p->ports, "dockerStartCmd", p->start_cmd,
                   "dockerEntrypoint", p->entrypoint, "consumerUserId", USER_ID, "locked", false,
                   "savingsPlans", "slsVersion", 0, "volumeEncrypted", false));
  return j;
}

/* ---- errors --------------------------------------------------------------------------------- */

/* j as compact JSON text (malloc'd), j released; prices to ten significant digits. */
static char *dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
  json_decref(j);
  return s;
}

/* A 401 is the description's UnauthorizedError {"message"}; every other error RunPod's
 * {"error", "status"}. */
static void rp_error(http_resp_t *resp, int status, const char *code, const char *message) {
  (void)code;
  json_t *j = status == 401 ? json_pack("{s:s}", "message", message)
                            : json_pack("{s:s, s:i}", "error", message, "status", status);
  http_json(resp, status, dump(j));
}

static void bad_input(http_resp_t *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void bad_input(http_resp_t *resp, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  rp_error(resp, 400, "invalid_input", msg);
}

/* ---- the host key --------------------------------------------------------------------------- */

/* base64 text decoded (malloc'd, NUL-terminated), or NULL when it is not base64 of text. */
static char *unbase64(const char *in) {
  size_t n = strlen(in);
  if (n == 0 || n % 4 || n > 65536)
    return NULL;
  unsigned char *out = malloc(n / 4 * 3 + 1);
  int len = out ? EVP_DecodeBlock(out, (const unsigned char *)in, (int)n) : -1;
  if (len < 0) {
    free(out);
    return NULL;
  }
  len -= (in[n - 1] == '=') + (in[n - 2] == '='); /* padding decodes as NUL bytes */
  out[len] = '\0';
  if (memchr(out, '\0', (size_t)len)) {
    free(out);
    return NULL;
  }
  return (char *)out;
}

/* The cloud-config whose ssh_keys make the env's host key the node's, as machines.c installs it
 * (*out stays NULL when env hands over no key). False when env hands over half a pair, or one
 * that is not an OpenSSH ed25519 pair. */
static bool host_key_cloud_config(json_t *env, char **out) {
  *out = NULL;
  const char *b64 = json_string_value(json_object_get(env, "KITE_SSH_HOST_KEY"));
  const char *b64pub = json_string_value(json_object_get(env, "KITE_SSH_HOST_KEY_PUB"));
  if (b64 == NULL && b64pub == NULL)
    return true;
  char *key = b64 ? unbase64(b64) : NULL, *pub = b64pub ? unbase64(b64pub) : NULL;
  bool ok = key && pub && strstr(key, "-----BEGIN OPENSSH PRIVATE KEY-----") &&
            strncmp(pub, "ssh-ed25519 ", 12) == 0;
  size_t cap = ok ? 2 * strlen(key) + strlen(pub) + 128 : 0, o = 0;
  char *cc = ok ? malloc(cap) : NULL;
  if (cc) {
    o += (size_t)snprintf(cc, cap, "#cloud-config\nssh_keys:\n  ed25519_private: |\n");
    char *save = NULL;
    for (char *line = strtok_r(key, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save))
      o += (size_t)snprintf(cc + o, cap - o, "    %s\n", line);
    snprintf(cc + o, cap - o, "  ed25519_public: %.*s\n", (int)strcspn(pub, "\r\n"), pub);
  }
  free(key);
  free(pub);
  *out = cc;
  return cc != NULL;
}

/* ---- create --------------------------------------------------------------------------------- */

typedef struct create_args {
  const char *name, *image, *mount;
  json_t *gpus, *dcs, *countries; /* borrowed from the body; NULL: any */
  json_t *env, *ports, *start_cmd, *entrypoint;
  int gpu_count;
  bool interruptible, secure, public_ip;
  json_int_t disk_gb, volume_gb;
  const char *public_key, *pool_tag;
  char *user_data; /* the host key's cloud-config, or NULL */
} create_args_t;

/* Whether v is absent, null, or an array of strings (each one of allowed, unless it is NULL). */
static bool strings_ok(json_t *v, const char *const *allowed, size_t n, const char **bad) {
  *bad = NULL;
  if (v == NULL || json_is_null(v))
    return true;
  if (!json_is_array(v))
    return false;
  for (size_t i = 0; i < json_array_size(v); i++) {
    const char *s = json_string_value(json_array_get(v, i));
    if (s == NULL)
      return false;
    if (allowed && !listed(allowed, n, s)) {
      *bad = s;
      return false;
    }
  }
  return true;
}

static bool port_ok(const char *p) {
  char *end = NULL;
  long n = strtol(p, &end, 10);
  return end != p && n > 0 && n < 65536 && (strcmp(end, "/tcp") == 0 || strcmp(end, "/http") == 0);
}

static bool enum_ok(json_t *v, const char *a, const char *b) {
  const char *s = json_string_value(v);
  return v == NULL || (s && (strcmp(s, a) == 0 || strcmp(s, b) == 0));
}

static bool size_ok(json_t *v) {
  return v == NULL || json_is_null(v) ||
         (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 10000);
}

/* Reads and checks a create's body; false with resp set. */
static bool create_args(json_t *b, create_args_t *a, http_resp_t *resp) {
  memset(a, 0, sizeof(*a));
  json_t *name = json_object_get(b, "name"), *image = json_object_get(b, "imageName");
  json_t *count = json_object_get(b, "gpuCount"), *cloud = json_object_get(b, "cloudType");
  json_t *compute = json_object_get(b, "computeType"), *intr = json_object_get(b, "interruptible");
  json_t *pub_ip = json_object_get(b, "supportPublicIp"),
         *mount = json_object_get(b, "volumeMountPath");
  json_t *disk = json_object_get(b, "containerDiskInGb"), *vol = json_object_get(b, "volumeInGb");
  json_t *env = json_object_get(b, "env"), *ports = json_object_get(b, "ports");
  json_t *cmd = json_object_get(b, "dockerStartCmd"), *ep = json_object_get(b, "dockerEntrypoint");
  a->gpus = json_object_get(b, "gpuTypeIds");
  a->dcs = json_object_get(b, "dataCenterIds");
  a->countries = json_object_get(b, "countryCodes");
  a->name = name ? json_string_value(name) : "my pod";
  a->image = json_string_value(image);
  a->mount = mount ? json_string_value(mount) : "/workspace";
  a->gpu_count = count ? (int)json_integer_value(count) : 1;
  a->secure = cloud == NULL ||
              strcmp(json_string_value(cloud) ? json_string_value(cloud) : "", "SECURE") == 0;
  a->interruptible = json_is_true(intr);
  a->public_ip = pub_ip == NULL || json_is_true(pub_ip);
  a->disk_gb = disk && !json_is_null(disk) ? json_integer_value(disk) : 50;
  a->volume_gb = vol && !json_is_null(vol) ? json_integer_value(vol) : 20;
  const char *bad = NULL;
  if (a->name == NULL || strlen(a->name) > NAME_MAX_LEN) {
    bad_input(resp, "name must be a string of at most %d characters", NAME_MAX_LEN);
  } else if (a->image == NULL || *a->image == '\0') {
    bad_input(resp, "imageName is required (kite-cloudsim emulates no templates)");
  } else if (!enum_ok(compute, "GPU", "CPU")) {
    bad_input(resp, "computeType must be GPU or CPU");
  } else if (compute && strcmp(json_string_value(compute), "CPU") == 0) {
    bad_input(resp, "kite-cloudsim emulates GPU pods only, not computeType CPU");
  } else if (!enum_ok(cloud, "SECURE", "COMMUNITY")) {
    bad_input(resp, "cloudType must be SECURE or COMMUNITY");
  } else if (!enum_ok(json_object_get(b, "gpuTypePriority"), "availability", "custom") ||
             !enum_ok(json_object_get(b, "dataCenterPriority"), "availability", "custom")) {
    bad_input(resp, "gpuTypePriority and dataCenterPriority must be availability or custom");
  } else if (count && (!json_is_integer(count) || a->gpu_count < 1)) {
    bad_input(resp, "gpuCount must be an integer of at least 1");
  } else if ((intr && !json_is_boolean(intr)) ||
             (pub_ip && !json_is_boolean(pub_ip) && !json_is_null(pub_ip))) {
    bad_input(resp, "interruptible and supportPublicIp must be booleans");
  } else if (a->gpus == NULL || !json_is_array(a->gpus) || json_array_size(a->gpus) == 0) {
    bad_input(resp, "gpuTypeIds must list at least one GPU type for a GPU pod");
  } else if (!strings_ok(a->gpus, gpu_type_ids, COUNT(gpu_type_ids), &bad)) {
    bad_input(resp, "gpuTypeIds: %s%s%s", bad ? "\"" : "",
              bad ? bad : "must be a list of GPU type ids", bad ? "\" is not a GPU type" : "");
  } else if (!strings_ok(a->dcs, dc_ids, COUNT(dc_ids), &bad)) {
    bad_input(resp, "dataCenterIds: %s%s%s", bad ? "\"" : "",
              bad ? bad : "must be a list of data center ids",
              bad ? "\" is not a data center" : "");
  } else if (!strings_ok(a->countries, NULL, 0, &bad)) {
    bad_input(resp, "countryCodes must be a list of country codes");
  } else if (!size_ok(disk) || !size_ok(vol)) {
    bad_input(resp, "containerDiskInGb and volumeInGb must be integers from 0 to 10000");
  } else if (a->mount == NULL || a->mount[0] != '/') {
    bad_input(resp, "volumeMountPath must be an absolute path");
  } else if (!strings_ok(cmd, NULL, 0, &bad) || !strings_ok(ep, NULL, 0, &bad)) {
    bad_input(resp, "dockerStartCmd and dockerEntrypoint must be lists of strings");
  } else if (!strings_ok(ports, NULL, 0, &bad)) {
    bad_input(resp, "ports must be a list of \"port/protocol\" strings");
  } else {
    for (size_t i = 0; i < json_array_size(ports); i++)
      if (!port_ok(json_string_value(json_array_get(ports, i)))) {
        bad_input(resp, "ports: \"%s\" is not [port number]/http or [port number]/tcp",
                  json_string_value(json_array_get(ports, i)));
        return false;
      }
    if (env && !json_is_null(env) && !json_is_object(env)) {
      bad_input(resp, "env must be an object of names and values");
      return false;
    }
    const char *k;
    json_t *v;
    json_object_foreach(env, k, v) {
      if (!json_is_string(v)) {
        bad_input(resp, "env: the value of %s must be a string", k);
        return false;
      }
    }
    a->public_key = json_string_value(json_object_get(env, "PUBLIC_KEY"));
    a->pool_tag = json_string_value(json_object_get(env, "KITE_POOL_TAG"));
    char *fp = a->public_key ? sim_key_fingerprint(a->public_key) : NULL;
    bool key_ok = fp != NULL && strchr(a->public_key, '\n') == NULL;
    free(fp);
    if (!key_ok) {
      bad_input(resp, "env must carry PUBLIC_KEY, one OpenSSH public key line (kite-cloudsim "
                      "emulates pods reached by SSH only)");
      return false;
    }
    if (!host_key_cloud_config(env, &a->user_data)) {
      bad_input(resp, "env: KITE_SSH_HOST_KEY and KITE_SSH_HOST_KEY_PUB must be the base64 of an "
                      "OpenSSH ed25519 private key file and of its public key line");
      return false;
    }
    a->env = json_is_object(env) ? json_incref(env) : json_object();
    a->ports = ports && !json_is_null(ports) ? json_incref(ports)
                                             : json_pack("[s, s]", "8888/http", "22/tcp");
    a->start_cmd = cmd && !json_is_null(cmd) ? json_incref(cmd) : json_array();
    a->entrypoint = ep && !json_is_null(ep) ? json_incref(ep) : json_array();
    return true;
  }
  return false;
}

static void create_args_free(create_args_t *a) {
  free(a->user_data);
  json_decref(a->env);
  json_decref(a->ports);
  json_decref(a->start_cmd);
  json_decref(a->entrypoint);
}

static bool in_list(json_t *list, const char *s) {
  if (list == NULL || json_is_null(list) || json_array_size(list) == 0)
    return true;
  for (size_t i = 0; i < json_array_size(list); i++)
    if (strcmp(json_string_value(json_array_get(list, i)), s) == 0)
      return true;
  return false;
}

/* Picks where the pod goes: the first GPU type of gpuTypeIds, in order, that the catalog has in
 * one of dataCenterIds and countryCodes, with a spot price if it is interruptible and room under
 * the capacity rules. False with resp set (no capacity) when there is none. */
static bool place(sim_t *sim, const create_args_t *a, unsigned live, const gpu_type_t **g,
                  size_t *dc, http_resp_t *resp) {
  for (size_t i = 0; i < json_array_size(a->gpus); i++) {
    const gpu_type_t *t = gpu_find(json_string_value(json_array_get(a->gpus, i)));
    if (t == NULL || (a->interruptible && t->spot <= 0) || a->gpu_count > MAX_GPUS)
      continue;
    for (size_t d = 0; d < COUNT(t->dcs); d++) {
      if (!in_list(a->dcs, t->dcs[d]) || !in_list(a->countries, country_of(t->dcs[d])))
        continue;
      if (sim_admit(sim, &runpod_front, live, 1, t->id, t->dcs[d], a->interruptible, resp)) {
        *g = t;
        *dc = d;
        return true;
      }
    }
  }
  rp_error(resp, 400, "no_capacity", NO_CAPACITY_MSG);
  return false;
}

static void pod_create(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  create_args_t a;
  const gpu_type_t *g = NULL;
  size_t d = 0;
  unsigned live = (prune(sim), machine_count_of(sim, CLOUD)), limit = sim_machine_limit(sim);
  if (!json_is_object(body)) {
    bad_input(resp, "the body must be a JSON object (PodCreateInput)");
    json_decref(body);
    return;
  }
  if (!create_args(body, &a, resp)) {
    json_decref(body);
    return;
  }
  if (live + 1 > limit) {
    runpod_front.over_limit(resp, limit, live + 1);
  } else if (place(sim, &a, live, &g, &d, resp)) {
    const char *dc = g->dcs[d];
    double cost = (a.interruptible ? g->spot : g->price) * a.gpu_count;
    const char *tags[1] = {a.pool_tag && *a.pool_tag ? a.pool_tag : a.name};
    machine_opts_t mo = {.cloud = CLOUD,
                         .name = a.name,
                         .tags = tags,
                         .tag_n = 1,
                         .node_tag = tags[0],
                         .region = dc,
                         .size = g->id,
                         .image = a.image,
                         .user_data = a.user_data,
                         .authorized_key = a.public_key,
                         .price_hourly = cost,
                         .spot = a.interruptible};
    machine_t *m = machine_create(sim, &mo);
    pod_t *p = m ? calloc(1, sizeof(*p)) : NULL;
    if (p == NULL) {
      if (m)
        machine_delete(m);
      rp_error(resp, 500, "server_error", "create pod: the pod could not be created");
    } else {
      p->mid = m->id;
      make_id(m->id, p->id, 14);
      make_id((uint64_t)(g - gpu_types) * COUNT(g->dcs) + d + 7919, p->host,
              12); /* one host each */
      p->gpu = g;
      p->dc = dc;
      p->gpu_count = a.gpu_count;
      p->interruptible = a.interruptible;
      p->secure = a.secure;
      p->name = strdup(a.name);
      p->image = strdup(a.image);
      p->mount = strdup(a.mount);
      p->env = json_incref(a.env);
      p->ports = json_incref(a.ports);
      p->start_cmd = json_incref(a.start_cmd);
      p->entrypoint = json_incref(a.entrypoint);
      p->disk_gb = a.disk_gb;
      p->volume_gb = a.volume_gb;
      p->cost = cost;
      p->created_ms = now_ms();
      time_t t = (time_t)(p->created_ms / 1000);
      struct tm tm;
      gmtime_r(&t, &tm);
      size_t n = strftime(p->started_at, sizeof(p->started_at), "%Y-%m-%dT%H:%M:%S", &tm);
      snprintf(p->started_at + n, sizeof(p->started_at) - n, ".%03uZ",
               (unsigned)(p->created_ms % 1000));
      set_change(p, "Rented by User", p->created_ms);
      snprintf(p->fail, sizeof(p->fail), "%s", rp.fail[g - gpu_types]);
      if (p->fail[0]) {
        char date[96];
        js_date(p->created_ms + FAIL_AFTER_MS, date, sizeof(date));
        snprintf(p->fail_change, sizeof(p->fail_change), "%s: %s",
                 strcmp(p->fail, "EXITED") == 0
                     ? "Exited by RunPod: the container exited while starting"
                     : "Terminated by RunPod: the machine failed while starting",
                 date);
      }
      pod_t **pp = &rp.pods;
      while (*pp)
        pp = &(*pp)->next;
      *pp = p;
      fprintf(stderr, "kite-cloudsim: runpod pod %s (%s) created: %dx %s in %s%s%s\n", p->id,
              p->name, p->gpu_count, g->id, dc, p->interruptible ? ", interruptible" : "",
              p->fail[0] ? ", to fail" : "");
      if (p->fail[0])
        machine_kill(m, false); /* it never runs */
      http_json(resp, 201, dump(pod_json(sim, p, m)));
    }
  }
  create_args_free(&a);
  json_decref(body);
}

/* ---- get, list, delete, stop ---------------------------------------------------------------- */

static void pod_not_found(http_resp_t *resp) {
  rp_error(resp, 404, "not_found", "pod not found");
}

/* An id a delete or stop cannot act on: the description's 400 "Invalid Pod ID". */
static void pod_invalid(http_resp_t *resp, const char *id) {
  char msg[128];
  snprintf(msg, sizeof(msg), "invalid pod id: %.40s", id);
  rp_error(resp, 400, "invalid_pod_id", msg);
}

static void pod_get(sim_t *sim, const char *id, http_resp_t *resp) {
  pod_t *p = pod_find(sim, id);
  if (p == NULL)
    pod_not_found(resp);
  else
    http_json(resp, 200, dump(pod_json(sim, p, machine_find_of(sim, p->mid, CLOUD))));
}

/* Whether the pod passes the list's query filters (the description's; a repeated array
 * parameter means any of its values). */
static bool list_match(const http_req_t *req, const pod_t *p, const machine_t *m) {
  static const char *const single[] = {"name", "id", "imageName", "desiredStatus"};
  const char *have[] = {p->name, p->id, p->image, desired_status(p, m)};
  bool ok = true;
  for (size_t i = 0; ok && i < COUNT(single); i++) {
    char *v = http_query_param(req, single[i]);
    ok = v == NULL || strcmp(v, have[i]) == 0;
    free(v);
  }
  static const char *const multi[] = {"gpuTypeId", "dataCenterId"};
  const char *mhave[] = {p->gpu->id, p->dc};
  for (size_t i = 0; ok && i < COUNT(multi); i++) {
    char *v = http_query_param_nth(req, multi[i], 0);
    bool any = v == NULL;
    for (size_t k = 1; v && !any; k++) {
      any = strcmp(v, mhave[i]) == 0;
      free(v);
      v = any ? NULL : http_query_param_nth(req, multi[i], k);
    }
    free(v);
    ok = any;
  }
  /* Every pod is a GPU pod with neither endpoint, template, network volume nor CPU flavor. */
  static const char *const none[] = {"endpointId", "templateId", "networkVolumeId", "cpuFlavorId"};
  for (size_t i = 0; ok && i < COUNT(none); i++) {
    char *v = http_query_param(req, none[i]);
    ok = v == NULL;
    free(v);
  }
  char *ct = http_query_param(req, "computeType");
  ok = ok && (ct == NULL || strcmp(ct, "GPU") == 0);
  free(ct);
  return ok;
}

static void pods_list(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  prune(sim);
  char *ds = http_query_param(req, "desiredStatus"), *ct = http_query_param(req, "computeType");
  bool bad = (ds && strcmp(ds, "RUNNING") && strcmp(ds, "EXITED") && strcmp(ds, "TERMINATED")) ||
             (ct && strcmp(ct, "GPU") && strcmp(ct, "CPU"));
  free(ds);
  free(ct);
  if (bad) {
    bad_input(resp, "desiredStatus must be RUNNING, EXITED or TERMINATED; computeType GPU or CPU");
    return;
  }
  json_t *list = json_array();
  for (pod_t *p = rp.pods; p; p = p->next) {
    machine_t *m = machine_find_of(sim, p->mid, CLOUD);
    if (list_match(req, p, m))
      json_array_append_new(list, pod_json(sim, p, m));
  }
  http_json(resp, 200, dump(list));
}

static void pod_delete(sim_t *sim, const char *id, http_resp_t *resp) {
  pod_t *p = pod_find(sim, id);
  if (p == NULL) {
    pod_invalid(resp, id);
    return;
  }
  machine_t *m = machine_find_of(sim, p->mid, CLOUD);
  if (!p->terminated) {
    fprintf(stderr, "kite-cloudsim: runpod pod %s (%s) terminated\n", p->id, p->name);
    p->terminated = true;
    set_change(p, "Terminated by User", now_ms());
  }
  machine_delete(m);
  http_json(resp, 204, NULL);
}

static void pod_stop(sim_t *sim, const char *id, http_resp_t *resp) {
  pod_t *p = pod_find(sim, id);
  machine_t *m = p ? machine_find_of(sim, p->mid, CLOUD) : NULL;
  if (p == NULL || strcmp(desired_status(p, m), "TERMINATED") == 0) {
    pod_invalid(resp, id);
    return;
  }
  if (!p->stopped && !p->interrupted && !failed(p)) {
    fprintf(stderr, "kite-cloudsim: runpod pod %s (%s) stopped\n", p->id, p->name);
    p->stopped = true;
    set_change(p, "Exited by User", now_ms());
    machine_kill(m, false);
  }
  http_json(resp, 200, NULL);
}

/* ---- routing -------------------------------------------------------------------------------- */

static void rp_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (!http_bearer_is(req, sim->token)) {
    rp_error(resp, 401, "unauthorized", "Unauthorized: a valid API key is required");
    return;
  }
  char p[256];
  snprintf(p, sizeof(p), "%s", req->path + strlen(PREFIX));
  size_t n = strlen(p);
  if (n > 1 && p[n - 1] == '/')
    p[--n] = '\0';
  const char *m = req->method;
  bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
  char id[64], tail[16];
  int parts = sscanf(p, "/pods/%63[^/]/%15s", id, tail);
  if (strcmp(p, "/pods") == 0 && post)
    pod_create(sim, req, resp);
  else if (strcmp(p, "/pods") == 0 && get)
    pods_list(sim, req, resp);
  else if (parts == 1 && get)
    pod_get(sim, id, resp);
  else if (parts == 1 && del)
    pod_delete(sim, id, resp);
  else if (parts == 2 && strcmp(tail, "stop") == 0 && post)
    pod_stop(sim, id, resp);
  else
    rp_error(resp, 404, "not_found", "kite-cloudsim does not emulate this endpoint");
}

static bool rp_match(const http_req_t *req) {
  return strncmp(req->path, PREFIX "/", strlen(PREFIX) + 1) == 0 || strcmp(req->path, PREFIX) == 0;
}

/* ---- control -------------------------------------------------------------------------------- */

static void interrupt(sim_t *sim, const char *id, http_resp_t *resp) {
  pod_t *p = pod_find(sim, id);
  machine_t *m = p ? machine_find_of(sim, p->mid, CLOUD) : NULL;
  if (p == NULL) {
    http_error(resp, 404, "not_found", "no such pod");
  } else if (!p->interruptible) {
    http_error(resp, 400, "bad_request", "only an interruptible pod is interrupted");
  } else if (strcmp(desired_status(p, m), "RUNNING") != 0) {
    http_error(resp, 400, "bad_request", "the pod is not running");
  } else {
    fprintf(stderr, "kite-cloudsim: runpod pod %s (%s) is interrupted\n", p->id, p->name);
    p->interrupted = true;
    set_change(p, "Exited by RunPod: interrupted", now_ms());
    machine_kill(m, false);
    http_json(resp, 200, strdup("{\"ok\":true}"));
  }
}

/* The GPU type id of a control path, URL-decoded (%20 and '+' for spaces). */
static void path_decode(const char *s, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 1 < cap; i++) {
    if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
        isxdigit((unsigned char)s[i + 2])) {
      char hex[3] = {s[i + 1], s[i + 2], '\0'};
      out[o++] = (char)strtol(hex, NULL, 16);
      i += 2;
    } else {
      out[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  out[o] = '\0';
}

static void gpu_fail(const http_req_t *req, const char *gpu_id, http_resp_t *resp) {
  const gpu_type_t *g = gpu_find(gpu_id);
  json_error_t e;
  json_t *j = json_loadb(req->body, req->body_len, 0, &e);
  json_t *st = json_object_get(j, "status");
  const char *s = json_string_value(st);
  if (g == NULL) {
    http_error(resp, 404, "not_found", "no such GPU type in kite-cloudsim's catalog");
  } else if (!json_is_null(st) && (s == NULL || (strcmp(s, "EXITED") && strcmp(s, "TERMINATED")))) {
    http_error(resp, 400, "bad_request", "{\"status\": \"EXITED\", \"TERMINATED\" or null}");
  } else {
    snprintf(rp.fail[g - gpu_types], sizeof(rp.fail[0]), "%s", s ? s : "");
    fprintf(stderr, "kite-cloudsim: runpod %s: launches %s%s\n", g->id, s ? "end " : "run again",
            s ? s : "");
    http_json(resp, 200, strdup("{\"ok\":true}"));
  }
  json_decref(j);
}

static json_t *state_json(sim_t *sim) {
  prune(sim);
  json_t *pods = json_array(), *fails = json_object();
  for (pod_t *p = rp.pods; p; p = p->next) {
    machine_t *m = machine_find_of(sim, p->mid, CLOUD);
    json_t *keys = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(p->env, k, v) {
      json_array_append_new(keys, json_string(k));
    }
    json_array_append_new(
        pods, json_pack("{s:s, s:I, s:s, s:s, s:b, s:s, s:i, s:s, s:s, s:f, s:i, s:o}", "id", p->id,
                        "machine", (json_int_t)p->mid, "name", p->name, "desiredStatus",
                        desired_status(p, m), "interruptible", p->interruptible, "gpuTypeId",
                        p->gpu->id, "gpuCount", p->gpu_count, "dataCenterId", p->dc, "address",
                        reachable(p, m) ? m->address : "", "costPerHr", p->cost, "pid",
                        m->node ? kite_local_node_pid(m->node) : 0, "env", keys));
  }
  for (size_t i = 0; i < COUNT(gpu_types); i++)
    if (rp.fail[i][0])
      json_object_set_new(fails, gpu_types[i].id, json_string(rp.fail[i]));
  return json_pack("{s:o, s:o}", "pods", pods, "gpu_type_failures", fails);
}

static bool rp_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  static const char base[] = "/_sim/runpod/";
  if (strncmp(req->path, base, sizeof(base) - 1) != 0)
    return false;
  const char *p = req->path + sizeof(base) - 1;
  bool post = strcmp(req->method, "POST") == 0;
  const char *slash = strrchr(p, '/');
  char id[128];
  if (strcmp(p, "state") == 0 && strcmp(req->method, "GET") == 0) {
    http_json(resp, 200, dump(state_json(sim)));
  } else if (post && strncmp(p, "pods/", 5) == 0 && slash && strcmp(slash, "/interrupt") == 0 &&
             slash > p + 5) {
    path_decode(p + 5, (size_t)(slash - p - 5), id, sizeof(id));
    interrupt(sim, id, resp);
  } else if (post && strncmp(p, "pods/", 5) == 0 && slash && strcmp(slash, "/kill") == 0 &&
             slash > p + 5) {
    /* The generic machine kill, by the pod's id (a crash of its host). */
    path_decode(p + 5, (size_t)(slash - p - 5), id, sizeof(id));
    pod_t *pd = pod_find(sim, id);
    if (pd)
      sim_kill_machine(sim, req, pd->mid, resp);
    else
      http_error(resp, 404, "not_found", "no such pod");
  } else if (post && strncmp(p, "gpu-types/", 10) == 0 && slash && strcmp(slash, "/fail") == 0 &&
             slash > p + 10) {
    path_decode(p + 10, (size_t)(slash - p - 10), id, sizeof(id));
    gpu_fail(req, id, resp);
  } else {
    http_error(resp, 404, "not_found", "no such control route");
  }
  return true;
}

static void rp_state(sim_t *sim, json_t *state) {
  json_object_set_new(state, "runpod_pods", json_integer(machine_count_of(sim, CLOUD)));
}

/* ---- the front ------------------------------------------------------------------------------ */

/* A create that cannot be placed: the description's only refusal of a create is 400 ("Invalid
 * input."), so 400, with the message RunPod gives (RunPod itself answers it with 500). */
static void rp_no_capacity(http_resp_t *resp, const char *gpu, const char *dc) {
  (void)gpu;
  (void)dc;
  rp_error(resp, 400, "no_capacity", NO_CAPACITY_MSG);
}

static void rp_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  char msg[160];
  snprintf(msg, sizeof(msg), "create pod: the account may have %u pods, not %u", limit, wanted);
  rp_error(resp, 400, "over_limit", msg);
}

static void rp_free(sim_t *sim) {
  (void)sim;
  while (rp.pods) {
    pod_t *p = rp.pods;
    rp.pods = p->next;
    pod_free(p);
  }
}

const sim_front_t runpod_front = {
    .name = CLOUD,
    .match = rp_match,
    .handle = rp_handle,
    .control = rp_control,
    .state = rp_state,
    .error = rp_error,
    .rate_limited = {429, "rate_limited", "Too Many Requests: slow down"},
    .server_error = {500, "server_error", "Internal Server Error"},
    .malformed_body = "[{\"id\": \"",
    .no_capacity = rp_no_capacity,
    .over_limit = rp_over_limit,
    .free = rp_free,
};
