/* The Google Compute Engine front: the Compute Engine API v1 (/compute/v1/), the OAuth token
 * endpoint (/token), the Cloud Billing Catalog's Compute Engine SKUs (/v1/services/.../skus)
 * and the metadata server, on the shared machines.
 *
 * - Auth: every API call carries Authorization: Bearer TOKEN (the emulator's token), else 401
 *   in Google's error shape. POST /token exchanges a service-account JWT (grant_type
 *   urn:ietf:params:oauth:grant-type:jwt-bearer; RS256, its claims checked, and its signature
 *   against the key in $KITE_CLOUDSIM_GCP_KEY_FILE when that is set) or a refresh token for
 *   that token. GET /computeMetadata/v1/instance/service-accounts/default/token gives it too,
 *   with Metadata-Flavor: Google.
 * - instances.insert (POST .../zones/ZONE/instances?requestId=UUID): a repeated requestId is the
 *   same operation; a taken name is 409 alreadyExists; a machine type not sold in the zone is
 *   400 notFound; capacity and the account limit are operations that end in
 *   ZONE_RESOURCE_POOL_EXHAUSTED or QUOTA_EXCEEDED, as is the next code queued with POST
 *   /_sim/gcp/op_errors {"next": [CODE, ...]}. Operations are RUNNING when made and DONE when
 *   waited for (POST .../operations/OP/wait) or read.
 * - Spot VMs (scheduling.provisioningModel SPOT) serve the metadata server on their address,
 *   port $KITE_CLOUDSIM_GCE_METADATA_PORT (default 8170): instance/preempted is FALSE, and TRUE
 *   after POST /_sim/gcp/instances/ZONE/NAME/preempt[?notice_ms=N], which takes the VM 2 s (or
 *   N ms) later (deleted with
 *   instanceTerminationAction DELETE, else TERMINATED).
 * - Control: GET /_sim/gcp/state, POST /_sim/gcp/instances/ZONE/NAME/kill. */
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudsim.h"
#include "ec2_impl.h"

#define CLOUD "gcp"
#define PREEMPT_NOTICE_MS 2000

typedef struct mtype {
  const char *name;
  unsigned cpus, memory_mb;
  const char *zones; /* space-separated, "" every zone */
  const char *gpu;   /* the accelerator type it comes with (A2, G2), or NULL */
  unsigned gpus;
} mtype_t;

static const char *const zones[] = {
    "us-central1-a", "us-central1-b",  "us-central1-c",  "us-east1-b",
    "us-east1-c",    "europe-west4-a", "europe-west4-b", NULL};

static const mtype_t mtypes[] = {
    {"e2-micro", 2, 1024, "", NULL, 0},
    {"e2-small", 2, 2048, "", NULL, 0},
    {"e2-medium", 2, 4096, "", NULL, 0},
    {"e2-standard-2", 2, 8192, "", NULL, 0},
    {"e2-standard-4", 4, 16384, "", NULL, 0},
    {"n2-standard-2", 2, 8192,
     "us-central1-a us-central1-b us-central1-c us-east1-b europe-west4-a", NULL, 0},
    {"n2-standard-4", 4, 16384, "us-central1-a us-central1-b us-east1-b europe-west4-a", NULL, 0},
    {"n1-standard-1", 1, 3840, "", NULL, 0},
    {"n1-standard-2", 2, 7680, "", NULL, 0},
    {"n1-standard-4", 4, 15360, "us-central1-a us-central1-b us-east1-c europe-west4-a", NULL, 0},
    {"n1-standard-8", 8, 30720, "us-central1-a us-central1-b", NULL, 0},
    {"c3-standard-4", 4, 16384, "us-central1-a", NULL, 0},
    {"a2-highgpu-1g", 12, 87040, "us-central1-a us-central1-b", "nvidia-tesla-a100", 1},
    {"g2-standard-4", 4, 16384, "us-central1-a us-east1-b", "nvidia-l4", 1},
};

/* Accelerator types per zone, and their hourly prices per GPU by region (emulator data). */
typedef struct atype {
  const char *name, *description;
  unsigned max_per_vm;
  const char *zones;
  const char *sku; /* what its SKUs' descriptions start with */
} atype_t;

static const atype_t atypes[] = {
    {"nvidia-tesla-t4", "NVIDIA T4", 4, "us-central1-a us-central1-b us-east1-c europe-west4-a",
     "Nvidia Tesla T4 GPU"},
    {"nvidia-tesla-v100", "NVIDIA V100", 8, "us-central1-a", "Nvidia Tesla V100 GPU"},
    {"nvidia-tesla-a100", "NVIDIA A100 40GB", 16, "us-central1-a us-central1-b",
     "Nvidia Tesla A100 GPU"},
    {"nvidia-l4", "NVIDIA L4", 8, "us-central1-a us-east1-b", "Nvidia L4 GPU"},
};

typedef struct gpu_rate {
  const char *type, *region;
  double price, spot;
} gpu_rate_t;

static const gpu_rate_t gpu_rates[] = {
    {"nvidia-tesla-t4", "us-central1", 0.35, 0.14},
    {"nvidia-tesla-t4", "us-east1", 0.35, 0.14},
    {"nvidia-tesla-t4", "europe-west4", 0.41, 0.165},
    {"nvidia-tesla-v100", "us-central1", 2.48, 0.992},
    {"nvidia-tesla-a100", "us-central1", 2.933908, 1.173563},
    {"nvidia-l4", "us-central1", 0.560034, 0.224014},
    {"nvidia-l4", "us-east1", 0.560034, 0.224014},
};

/* Per family and region: core and GiB-hour prices, on demand and spot (USD). */
typedef struct rate {
  const char *family, *sku, *region;
  double core, ram, spot_core, spot_ram;
} rate_t;

static const rate_t rates[] = {
    {"e2-", "E2 Instance", "us-central1", 0.021811, 0.002923, 0.006543, 0.000877},
    {"e2-", "E2 Instance", "us-east1", 0.021811, 0.002923, 0.007170, 0.000961},
    {"e2-", "E2 Instance", "europe-west4", 0.023964, 0.003212, 0.007189, 0.000963},
    {"n2-", "N2 Instance", "us-central1", 0.031611, 0.004237, 0.007646, 0.001025},
    {"n2-", "N2 Instance", "us-east1", 0.031611, 0.004237, 0.008421, 0.001128},
    {"n2-", "N2 Instance", "europe-west4", 0.034806, 0.004664, 0.008374, 0.001122},
    {"n1-", "N1 Predefined Instance", "us-central1", 0.031611, 0.004237, 0.006655, 0.000892},
    {"n1-", "N1 Predefined Instance", "us-east1", 0.031611, 0.004237, 0.006655, 0.000892},
    {"n1-", "N1 Predefined Instance", "europe-west4", 0.034773, 0.004661, 0.007321, 0.000981},
    {"a2-", "A2 Instance", "us-central1", 0.031611, 0.004237, 0.012644, 0.001695},
    {"g2-", "G2 Instance", "us-central1", 0.024988, 0.002927, 0.009995, 0.001171},
    {"g2-", "G2 Instance", "us-east1", 0.024988, 0.002927, 0.009995, 0.001171},
};

typedef struct op {
  char name[40], zone[64], type[16], target[64], request_id[40];
  char *error_code, *error_message;
  long http_status;
  struct op *next;
} op_t;

typedef struct vm {
  char name[64], zone[64], project[64];
  uint64_t machine_id;
  const mtype_t *type;
  const atype_t *gpu; /* attached (guestAccelerators), or NULL */
  unsigned gpus;
  char *image;
  bool spot, stop_on_preempt;
  bool preempt_notice, preempted_stopped, delete_requested;
  json_t *labels, *metadata;
  imds_t *mds;
  uv_timer_t timer;
  bool timer_on;
  struct vm *next;
} vm_t;

static struct {
  vm_t *vms;
  op_t *ops;
  uint64_t seq;
  char *keys_seen[32]; /* the distinct ssh-keys metadata values of the VMs made */
  size_t keys_n;
  char *op_errors[32];
  size_t op_errors_n;
  int mds_port;
} gcp;

/* ---- shapes --------------------------------------------------------------------------------- */

static void gcp_error(http_resp_t *resp, int status, const char *reason, const char *message) {
  const char *st = status == 401   ? "UNAUTHENTICATED"
                   : status == 403 ? "PERMISSION_DENIED"
                   : status == 404 ? "NOT_FOUND"
                   : status == 409 ? "ALREADY_EXISTS"
                   : status == 429 ? "RESOURCE_EXHAUSTED"
                   : status >= 500 ? "INTERNAL"
                                   : "INVALID_ARGUMENT";
  json_t *j = json_pack("{s:{s:i, s:s, s:[{s:s, s:s, s:s}], s:s}}", "error", "code", status,
                        "message", message, "errors", "message", message, "domain", "global",
                        "reason", reason, "status", st);
  http_json(resp, status, json_dumps(j, JSON_COMPACT));
  json_decref(j);
}

/* A JSON string that takes a malloc'd text. */
static json_t *own(char *s) {
  json_t *j = json_string(s ? s : "");
  free(s);
  return j;
}

static void rfc3339(char out[40]) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 40, "%Y-%m-%dT%H:%M:%S.000-00:00", &tm);
}

static bool zone_known(const char *z) {
  for (size_t i = 0; zones[i]; i++)
    if (strcmp(zones[i], z) == 0)
      return true;
  return false;
}

static void region_of(const char *zone, char out[64]) {
  snprintf(out, 64, "%s", zone);
  char *d = strrchr(out, '-');
  if (d)
    *d = '\0';
}

/* Whether zone is in a space-separated list ("" is every zone). */
static bool in_zones(const char *list, const char *zone) {
  if (list[0] == '\0')
    return true;
  size_t n = strlen(zone);
  for (const char *p = strstr(list, zone); p; p = strstr(p + 1, zone))
    if ((p == list || p[-1] == ' ') && (p[n] == '\0' || p[n] == ' '))
      return true;
  return false;
}

static bool sold_in(const mtype_t *t, const char *zone) {
  return in_zones(t->zones, zone);
}

static const mtype_t *mtype_find(const char *name) {
  for (size_t i = 0; i < sizeof(mtypes) / sizeof(mtypes[0]); i++)
    if (strcmp(mtypes[i].name, name) == 0)
      return &mtypes[i];
  return NULL;
}

static const rate_t *rate_find(const char *type, const char *region) {
  for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++)
    if (strncmp(type, rates[i].family, strlen(rates[i].family)) == 0 &&
        strcmp(rates[i].region, region) == 0)
      return &rates[i];
  return NULL;
}

static const atype_t *atype_find(const char *name) {
  for (size_t i = 0; name && i < sizeof(atypes) / sizeof(atypes[0]); i++)
    if (strcmp(atypes[i].name, name) == 0)
      return &atypes[i];
  return NULL;
}

static const gpu_rate_t *gpu_rate_find(const char *type, const char *region) {
  for (size_t i = 0; type && i < sizeof(gpu_rates) / sizeof(gpu_rates[0]); i++)
    if (strcmp(gpu_rates[i].type, type) == 0 && strcmp(gpu_rates[i].region, region) == 0)
      return &gpu_rates[i];
  return NULL;
}

/* count GPUs of type in zone's region, per hour. */
static double gpus_hourly(const char *type, unsigned count, const char *zone, bool spot) {
  char region[64];
  region_of(zone, region);
  const gpu_rate_t *g = gpu_rate_find(type, region);
  return g ? count * (spot ? g->spot : g->price) : 0;
}

static double hourly(const mtype_t *t, const char *zone, bool spot) {
  char region[64];
  region_of(zone, region);
  const rate_t *r = rate_find(t->name, region);
  if (r == NULL)
    return 0.05;
  double gpus = t->gpu ? gpus_hourly(t->gpu, t->gpus, zone, spot) : 0;
  double cores = strcmp(t->name, "e2-micro") == 0    ? 0.25
                 : strcmp(t->name, "e2-small") == 0  ? 0.5
                 : strcmp(t->name, "e2-medium") == 0 ? 1
                                                     : t->cpus;
  double gib = t->memory_mb / 1024.0;
  return gpus + (spot ? cores * r->spot_core + gib * r->spot_ram : cores * r->core + gib * r->ram);
}

static const char *host(void) {
  return "https://compute.googleapis.com/compute/v1";
}

static json_t *op_json(const op_t *o, const char *project, bool done) {
  char now[40];
  rfc3339(now);
  json_t *j = json_pack(
      "{s:s, s:o, s:s, s:o, s:s, s:o, s:s, s:s, s:i, s:o}", "kind", "compute#operation", "id",
      own(sim_sprintf("%llu", (unsigned long long)(1000 + gcp.seq))), "name", o->name, "zone",
      own(sim_sprintf("%s/projects/%s/zones/%s", host(), project, o->zone)), "operationType",
      o->type, "targetLink",
      own(sim_sprintf("%s/projects/%s/zones/%s/instances/%s", host(), project, o->zone, o->target)),
      "status", done ? "DONE" : "RUNNING", "insertTime", now, "progress", done ? 100 : 0,
      "selfLink",
      own(sim_sprintf("%s/projects/%s/zones/%s/operations/%s", host(), project, o->zone, o->name)));
  if (done && o->error_code) {
    json_object_set_new(j, "error",
                        json_pack("{s:[{s:s, s:s}]}", "errors", "code", o->error_code, "message",
                                  o->error_message ? o->error_message : o->error_code));
    json_object_set_new(j, "httpErrorStatusCode", json_integer(o->http_status));
    json_object_set_new(j, "httpErrorMessage",
                        json_string(o->http_status == 403 ? "FORBIDDEN" : "SERVICE UNAVAILABLE"));
  }
  if (done)
    json_object_set_new(j, "endTime", json_string(now));
  return j;
}

static const char *vm_status(const vm_t *v, machine_t *m) {
  if (v->preempted_stopped)
    return "TERMINATED";
  if (m == NULL)
    return "TERMINATED";
  switch (m->state) {
  case M_PROVISIONING:
    return m->node_up ? "STAGING" : "PROVISIONING";
  case M_RUNNING:
    return "RUNNING";
  case M_OFF:
    return "TERMINATED";
  case M_DELETING:
  default:
    return "STOPPING";
  }
}

static json_t *vm_json(const vm_t *v, machine_t *m) {
  char region[64];
  region_of(v->zone, region);
  json_t *nic =
      json_pack("{s:s, s:s, s:s}", "name", "nic0", "network",
                "https://www.googleapis.com/compute/v1/projects/p/global/networks/default",
                "networkIP", "10.128.0.2");
  json_t *ac = json_pack("{s:s, s:s, s:s}", "kind", "compute#accessConfig", "type",
                         "ONE_TO_ONE_NAT", "name", "External NAT");
  const char *addr = m ? machine_node_address(m) : "";
  if (m && m->state == M_RUNNING && addr[0])
    json_object_set_new(ac, "natIP", json_string(addr));
  json_object_set_new(nic, "accessConfigs", json_pack("[o]", ac));
  char *mt = sim_sprintf("%s/projects/%s/zones/%s/machineTypes/%s", host(), v->project, v->zone,
                         v->type->name);
  char *zl = sim_sprintf("%s/projects/%s/zones/%s", host(), v->project, v->zone);
  char *sl = sim_sprintf("%s/instances/%s", zl, v->name);
  bool gpus = v->gpu || v->type->gpu;
  json_t *sched = json_pack("{s:s, s:b, s:s}", "provisioningModel", v->spot ? "SPOT" : "STANDARD",
                            "automaticRestart", !v->spot, "onHostMaintenance",
                            v->spot || gpus ? "TERMINATE" : "MIGRATE");
  if (v->spot) {
    json_object_set_new(sched, "preemptible", json_false());
    json_object_set_new(sched, "instanceTerminationAction",
                        json_string(v->stop_on_preempt ? "STOP" : "DELETE"));
  }
  json_t *j = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s, s:O, s:{s:s, s:O}, s:[o], s:o, s:s}",
                        "kind", "compute#instance", "id",
                        own(sim_sprintf("%llu", (unsigned long long)v->machine_id)), "name",
                        v->name, "zone", zl, "machineType", mt, "status", vm_status(v, m), "labels",
                        v->labels, "metadata", "kind", "compute#metadata", "items", v->metadata,
                        "networkInterfaces", nic, "scheduling", sched, "selfLink", sl);
  if (gpus) {
    char *at = sim_sprintf("%s/projects/%s/zones/%s/acceleratorTypes/%s", host(), v->project,
                           v->zone, v->gpu ? v->gpu->name : v->type->gpu);
    json_object_set_new(j, "guestAccelerators",
                        json_pack("[{s:o, s:i}]", "acceleratorType", own(at), "acceleratorCount",
                                  (int)(v->gpu ? v->gpus : v->type->gpus)));
  }
  free(mt);
  free(zl);
  free(sl);
  return j;
}

/* ---- VMs ------------------------------------------------------------------------------------ */

static vm_t *vm_find(const char *project, const char *zone, const char *name) {
  for (vm_t *v = gcp.vms; v; v = v->next)
    if (strcmp(v->zone, zone) == 0 && strcmp(v->name, name) == 0 &&
        strcmp(v->project, project) == 0)
      return v;
  return NULL;
}

static void vm_timer_closed(uv_handle_t *h) {
  vm_t *v = h->data;
  json_decref(v->labels);
  json_decref(v->metadata);
  free(v->image);
  free(v);
}

static void vm_free(vm_t *v) {
  for (vm_t **pp = &gcp.vms; *pp; pp = &(*pp)->next)
    if (*pp == v) {
      *pp = v->next;
      break;
    }
  imds_stop(v->mds);
  v->mds = NULL;
  uv_close((uv_handle_t *)&v->timer, vm_timer_closed);
}

/* A VM whose machine is gone is gone from the API too (deleted, or reclaimed), unless it is a
 * spot VM Compute Engine stopped. */
static machine_t *vm_machine(sim_t *sim, vm_t *v) {
  machine_t *m = machine_find_of(sim, v->machine_id, CLOUD);
  if (m == NULL && !v->preempted_stopped) {
    vm_free(v);
    return NULL;
  }
  if (m && m->state == M_RUNNING && v->spot && v->mds == NULL && !v->preempted_stopped) {
    int rc = 0;
    extern char *gcp_mds_answer(void *data, const char *method, const char *path, const char *head,
                                int *status);
    rc = imds_serve(sim->loop, m->address, gcp.mds_port, gcp_mds_answer, v, &v->mds);
    if (rc != 0)
      fprintf(stderr, "kite-cloudsim: gcp %s: cannot serve metadata on %s:%d: %s\n", v->name,
              m->address, gcp.mds_port, uv_strerror(rc));
  }
  return m;
}

static sim_t *the_sim;

char *gcp_mds_answer(void *data, const char *method, const char *path, const char *head,
                     int *status);
char *gcp_mds_answer(void *data, const char *method, const char *path, const char *head,
                     int *status) {
  vm_t *v = data;
  char flavor[32];
  if (imds_header(head, "Metadata-Flavor", flavor, sizeof(flavor)) == NULL ||
      strcmp(flavor, "Google") != 0) {
    *status = 403;
    return strdup("Missing required header \"Metadata-Flavor\": \"Google\"\n");
  }
  if (strcmp(method, "GET") != 0) {
    *status = 405;
    return NULL;
  }
  *status = 200;
  if (strncmp(path, "/computeMetadata/v1/instance/preempted", 38) == 0)
    return strdup(v->preempt_notice ? "TRUE" : "FALSE");
  if (strcmp(path, "/computeMetadata/v1/instance/name") == 0)
    return strdup(v->name);
  if (strcmp(path, "/computeMetadata/v1/instance/service-accounts/default/token") == 0)
    return sim_sprintf("{\"access_token\":\"%s\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
                       the_sim->token);
  *status = 404;
  return NULL;
}

static void on_preempt_due(uv_timer_t *t) {
  vm_t *v = t->data;
  machine_t *m = machine_find_of(the_sim, v->machine_id, CLOUD);
  fprintf(stderr, "kite-cloudsim: gcp %s/%s preempted (%s)\n", v->zone, v->name,
          v->stop_on_preempt ? "stopped" : "deleted");
  imds_stop(v->mds);
  v->mds = NULL;
  if (v->stop_on_preempt)
    v->preempted_stopped = true;
  if (m)
    machine_kill(m, true);
}

static op_t *op_new(const char *zone, const char *type, const char *target, const char *rid) {
  op_t *o = calloc(1, sizeof(*o));
  snprintf(o->name, sizeof(o->name), "operation-%llu-%llx", (unsigned long long)time(NULL),
           (unsigned long long)++gcp.seq);
  snprintf(o->zone, sizeof(o->zone), "%s", zone);
  snprintf(o->type, sizeof(o->type), "%s", type);
  snprintf(o->target, sizeof(o->target), "%s", target);
  snprintf(o->request_id, sizeof(o->request_id), "%s", rid ? rid : "");
  o->next = gcp.ops;
  gcp.ops = o;
  return o;
}

static bool valid_name(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 63 || s[0] < 'a' || s[0] > 'z' || s[n - 1] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return false;
  return true;
}

static const char *metadata_value(json_t *items, const char *key) {
  size_t i;
  json_t *it;
  json_array_foreach(items, i, it) {
    const char *k = json_string_value(json_object_get(it, "key"));
    if (k && strcmp(k, key) == 0)
      return json_string_value(json_object_get(it, "value"));
  }
  return NULL;
}

static void vm_insert(sim_t *sim, const char *project, const char *zone, const http_req_t *req,
                      http_resp_t *resp) {
  char *rid = http_query_param(req, "requestId");
  for (op_t *o = gcp.ops; rid && *rid && o; o = o->next)
    if (strcmp(o->request_id, rid) == 0 && strcmp(o->zone, zone) == 0) {
      http_json(resp, 200, sim_dump(op_json(o, project, false)));
      free(rid);
      return;
    }
  json_error_t e;
  json_t *b = json_loadb(req->body, req->body_len, 0, &e);
  const char *name = json_string_value(json_object_get(b, "name"));
  const char *mt = json_string_value(json_object_get(b, "machineType"));
  const char *slash = mt ? strrchr(mt, '/') : NULL;
  const mtype_t *t = mtype_find(slash ? slash + 1 : mt ? mt : "");
  json_t *disk = json_array_get(json_object_get(b, "disks"), 0);
  const char *image =
      json_string_value(json_object_get(json_object_get(disk, "initializeParams"), "sourceImage"));
  json_t *items = json_object_get(json_object_get(b, "metadata"), "items");
  json_t *sched = json_object_get(b, "scheduling");
  const char *model = json_string_value(json_object_get(sched, "provisioningModel"));
  const char *action = json_string_value(json_object_get(sched, "instanceTerminationAction"));
  json_t *labels = json_object_get(b, "labels");
  const char *maint = json_string_value(json_object_get(sched, "onHostMaintenance"));
  json_t *ga = json_array_get(json_object_get(b, "guestAccelerators"), 0);
  const char *at_path = json_string_value(json_object_get(ga, "acceleratorType"));
  const char *at_slash = at_path ? strrchr(at_path, '/') : NULL;
  const atype_t *at = atype_find(at_slash ? at_slash + 1 : at_path);
  json_int_t at_n = json_integer_value(json_object_get(ga, "acceleratorCount"));
  bool many_kinds = json_array_size(json_object_get(b, "guestAccelerators")) > 1;
  if (!json_is_object(b) || !valid_name(name)) {
    gcp_error(resp, 400, "invalid", "Invalid value for field 'resource.name'");
  } else if (!zone_known(zone)) {
    gcp_error(resp, 404, "notFound", "The resource 'zone' was not found");
  } else if (t == NULL || !sold_in(t, zone)) {
    char *m = sim_sprintf("Invalid value for field 'resource.machineType': '%s'. Machine type "
                          "with name '%s' does not exist in zone '%s'. (machineTypes)",
                          mt ? mt : "", slash ? slash + 1 : "", zone);
    gcp_error(resp, 400, "notFound", m);
    free(m);
  } else if (image == NULL || json_array_size(json_object_get(b, "networkInterfaces")) == 0) {
    gcp_error(resp, 400, "required",
              "Required field 'resource.disks[0].initializeParams' or "
              "networkInterfaces not specified");
  } else if (many_kinds) {
    gcp_error(resp, 400, "invalid",
              "Invalid value for field 'resource.guestAccelerators': the emulator attaches one "
              "accelerator type per VM.");
  } else if (ga && (at == NULL || !in_zones(at->zones, zone))) {
    char *m = sim_sprintf("Invalid value for field 'resource.guestAccelerators[0].acceleratorType'"
                          ": '%s'. Accelerator type '%s' does not exist in zone '%s'.",
                          at_path ? at_path : "", at_slash ? at_slash + 1 : "", zone);
    gcp_error(resp, 400, "notFound", m);
    free(m);
  } else if (ga && (at_n < 1 || at_n > at->max_per_vm)) {
    char *m = sim_sprintf("Invalid value for field 'resource.guestAccelerators[0]."
                          "acceleratorCount': %lld. At most %u of %s may be attached to one VM.",
                          (long long)at_n, at->max_per_vm, at->name);
    gcp_error(resp, 400, "invalid", m);
    free(m);
  } else if (ga && strncmp(t->name, "n1-", 3) != 0) {
    char *m = sim_sprintf("Invalid value for field 'resource.guestAccelerators': machine type %s "
                          "does not take attached accelerators (the emulator attaches them to N1 "
                          "types only).",
                          t->name);
    gcp_error(resp, 400, "invalid", m);
    free(m);
  } else if ((ga || t->gpu) && (maint == NULL || strcmp(maint, "TERMINATE") != 0)) {
    gcp_error(resp, 400, "invalid",
              "Invalid value for field 'resource.scheduling.onHostMaintenance': 'MIGRATE'. "
              "Instances with guest accelerators do not support live migration.");
  } else if (vm_find(project, zone, name)) {
    char *m = sim_sprintf("The resource 'projects/%s/zones/%s/instances/%s' already exists",
                          project, zone, name);
    gcp_error(resp, 409, "alreadyExists", m);
    free(m);
  } else {
    op_t *o = op_new(zone, "insert", name, rid);
    http_resp_t refusal = {0};
    if (gcp.op_errors_n) {
      o->error_code = gcp.op_errors[0];
      memmove(gcp.op_errors, gcp.op_errors + 1, (--gcp.op_errors_n) * sizeof(char *));
      o->error_message = sim_sprintf("%s (the emulator's queued operation error)", o->error_code);
      o->http_status = 503;
    } else if (!sim_admit(sim, &gcp_front, machine_count_of(sim, CLOUD), 1, t->name, zone,
                          model && strcmp(model, "SPOT") == 0, &refusal)) {
      json_t *r = json_loadb(refusal.body, refusal.body_len, 0, &e);
      o->error_code = strdup(json_string_value(json_object_get(r, "code")) ?: "INTERNAL_ERROR");
      o->error_message = strdup(json_string_value(json_object_get(r, "message")) ?: "");
      o->http_status = refusal.status;
      json_decref(r);
    } else {
      bool spot = model && strcmp(model, "SPOT") == 0;
      const char *ud = metadata_value(items, "user-data");
      const char *keys = metadata_value(items, "ssh-keys");
      const char *colon = keys ? strchr(keys, ':') : NULL;
      const char *tag = metadata_value(items, "kite-pool");
      bool seen = keys == NULL;
      for (size_t i = 0; !seen && i < gcp.keys_n; i++)
        seen = strcmp(gcp.keys_seen[i], keys) == 0;
      if (!seen && gcp.keys_n < 32)
        gcp.keys_seen[gcp.keys_n++] = strdup(keys);
      char *tagline = sim_sprintf("kite-pool=%s", tag ? tag : "");
      const char *tagv[] = {tagline};
      machine_opts_t mo = {.cloud = CLOUD,
                           .name = name,
                           .tags = tagv,
                           .tag_n = 1,
                           .node_tag = tag,
                           .region = zone,
                           .size = t->name,
                           .image = image,
                           .user_data = ud,
                           .authorized_key = colon ? colon + 1 : NULL,
                           .price_hourly =
                               hourly(t, zone, spot) +
                               (ga ? gpus_hourly(at->name, (unsigned)at_n, zone, spot) : 0),
                           .bill_increment_s = 1,
                           .bill_minimum_s = 60,
                           .spot = spot};
      machine_t *m = machine_create(sim, &mo);
      free(tagline);
      if (m == NULL) {
        o->error_code = strdup("INTERNAL_ERROR");
        o->http_status = 500;
      } else {
        vm_t *v = calloc(1, sizeof(*v));
        snprintf(v->name, sizeof(v->name), "%s", name);
        snprintf(v->zone, sizeof(v->zone), "%s", zone);
        snprintf(v->project, sizeof(v->project), "%s", project);
        v->machine_id = m->id;
        v->type = t;
        v->gpu = ga ? at : NULL;
        v->gpus = ga ? (unsigned)at_n : 0;
        v->image = strdup(image);
        v->spot = spot;
        v->stop_on_preempt = action && strcmp(action, "STOP") == 0;
        v->labels = json_is_object(labels) ? json_deep_copy(labels) : json_object();
        v->metadata = json_is_array(items) ? json_deep_copy(items) : json_array();
        uv_timer_init(sim->loop, &v->timer);
        v->timer.data = v;
        v->next = gcp.vms;
        gcp.vms = v;
        fprintf(stderr, "kite-cloudsim: gcp VM %s/%s created%s\n", zone, name,
                spot ? " (spot)" : "");
      }
    }
    free(refusal.body);
    free(refusal.headers);
    http_json(resp, 200, sim_dump(op_json(o, project, false)));
  }
  free(rid);
  json_decref(b);
}

static void vm_delete(sim_t *sim, vm_t *v, const char *project, http_resp_t *resp) {
  machine_t *m = vm_machine(sim, v);
  op_t *o = op_new(v->zone, "delete", v->name, NULL);
  if (m) {
    v->delete_requested = true;
    machine_delete(m);
  } else {
    vm_free(v); /* a stopped spot VM: deleted at once */
  }
  http_json(resp, 200, sim_dump(op_json(o, project, false)));
}

/* labels.kite-pool=VALUE or labels.kite-pool:* */
static bool filter_match(const vm_t *v, const char *filter) {
  if (filter == NULL || *filter == '\0')
    return true;
  if (strncmp(filter, "labels.", 7) != 0)
    return false;
  const char *k = filter + 7;
  size_t kl = strcspn(k, "=:");
  char key[64];
  if (kl >= sizeof(key))
    return false;
  memcpy(key, k, kl);
  key[kl] = '\0';
  const char *val = json_string_value(json_object_get(v->labels, key));
  if (k[kl] == ':' && strcmp(k + kl + 1, "*") == 0)
    return val != NULL;
  return k[kl] == '=' && val && strcmp(val, k + kl + 1) == 0;
}

static void vm_aggregated(sim_t *sim, const char *project, const http_req_t *req,
                          http_resp_t *resp) {
  char *filter = http_query_param(req, "filter");
  char *ptok = http_query_param(req, "pageToken");
  char *maxs = http_query_param(req, "maxResults");
  long max = maxs ? atol(maxs) : 500, skip = ptok ? atol(ptok) : 0;
  if (max < 1 || max > 500)
    max = 500;
  if (filter && *filter && strncmp(filter, "labels.", 7) != 0) {
    gcp_error(resp, 400, "invalid", "Invalid value for field 'filter'");
    free(filter);
    free(ptok);
    free(maxs);
    return;
  }
  /* Two per page at most, so that pageToken is followed. */
  if (max > 2)
    max = 2;
  json_t *items = json_object();
  long seen = 0, put = 0;
  bool more = false;
  for (vm_t *v = gcp.vms, *next; v; v = next) {
    next = v->next;
    if (strcmp(v->project, project) != 0 || !filter_match(v, filter))
      continue;
    machine_t *m = vm_machine(sim, v);
    if (m == NULL && !v->preempted_stopped)
      continue;
    if (seen++ < skip)
      continue;
    if (put == max) {
      more = true;
      break;
    }
    put++;
    char *scope = sim_sprintf("zones/%s", v->zone);
    json_t *sc = json_object_get(items, scope);
    if (sc == NULL) {
      sc = json_pack("{s:[]}", "instances");
      json_object_set_new(items, scope, sc);
    }
    json_array_append_new(json_object_get(sc, "instances"), vm_json(v, m));
    free(scope);
  }
  json_t *out = json_pack("{s:s, s:s, s:o}", "kind", "compute#instanceAggregatedList", "id",
                          "projects/p/aggregated/instances", "items", items);
  if (more)
    json_object_set_new(out, "nextPageToken", own(sim_sprintf("%ld", skip + put)));
  http_json(resp, 200, sim_dump(out));
  free(filter);
  free(ptok);
  free(maxs);
}

/* The aggregated list of machine types (accel false) or accelerator types: one zone per
 * page. */
static void zone_types(bool accel, const http_req_t *req, http_resp_t *resp) {
  char *ptok = http_query_param(req, "pageToken");
  long page = ptok ? atol(ptok) : 0;
  free(ptok);
  json_t *items = json_object();
  if (page >= 0 && zones[page]) {
    const char *z = zones[page];
    json_t *list = json_array();
    for (size_t i = 0; !accel && i < sizeof(mtypes) / sizeof(mtypes[0]); i++) {
      const mtype_t *t = &mtypes[i];
      if (!sold_in(t, z))
        continue;
      json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:b}", "kind", "compute#machineType",
                            "name", t->name, "description", t->name, "guestCpus", t->cpus,
                            "memoryMb", t->memory_mb, "zone", z, "isSharedCpu",
                            strncmp(t->name, "e2-m", 4) == 0 || strcmp(t->name, "e2-small") == 0);
      if (t->gpu)
        json_object_set_new(j, "accelerators",
                            json_pack("[{s:s, s:i}]", "guestAcceleratorType", t->gpu,
                                      "guestAcceleratorCount", (int)t->gpus));
      json_array_append_new(list, j);
    }
    for (size_t i = 0; accel && i < sizeof(atypes) / sizeof(atypes[0]); i++)
      if (in_zones(atypes[i].zones, z))
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:i, s:s}", "kind", "compute#acceleratorType", "name",
                            atypes[i].name, "description", atypes[i].description,
                            "maximumCardsPerInstance", (int)atypes[i].max_per_vm, "zone", z));
    char *scope = sim_sprintf("zones/%s", z);
    json_object_set_new(items, scope,
                        json_pack("{s:o}", accel ? "acceleratorTypes" : "machineTypes", list));
    free(scope);
  }
  json_t *out = json_pack(
      "{s:s, s:s, s:o}", "kind",
      accel ? "compute#acceleratorTypeAggregatedList" : "compute#machineTypeAggregatedList", "id",
      accel ? "projects/p/aggregated/acceleratorTypes" : "projects/p/aggregated/machineTypes",
      "items", items);
  if (page >= 0 && zones[page] && zones[page + 1])
    json_object_set_new(out, "nextPageToken", own(sim_sprintf("%ld", page + 1)));
  http_json(resp, 200, sim_dump(out));
}

/* One SKU: group CPU, RAM (per GiB hour) or GPU, in one region. */
static json_t *sku_json(const char *id, const char *desc, const char *group, bool spot,
                        const char *region, double price) {
  bool ram = strcmp(group, "RAM") == 0;
  long long units = (long long)price;
  return json_pack(
      "{s:o, s:s, s:s, s:{s:s, s:s, s:s, s:s}, s:[s], s:[{s:{s:s, s:s, s:[{s:i, s:{s:s, s:o, "
      "s:I}}]}}]}",
      "name", own(sim_sprintf("services/6F81-5844-456A/skus/%s", id)), "skuId", id, "description",
      desc, "category", "serviceDisplayName", "Compute Engine", "resourceFamily", "Compute",
      "resourceGroup", group, "usageType", spot ? "Preemptible" : "OnDemand", "serviceRegions",
      region, "pricingInfo", "pricingExpression", "usageUnit", ram ? "GiBy.h" : "h",
      "usageUnitDescription", ram ? "gibibyte hour" : "hour", "tieredRates", "startUsageAmount", 0,
      "unitPrice", "currencyCode", "USD", "units", own(sim_sprintf("%lld", units)), "nanos",
      (json_int_t)((price - (double)units) * 1e9 + 0.5));
}

static void family_skus(json_t *list, const rate_t *r) {
  for (int k = 0; k < 4; k++) {
    bool ram = k & 1, spot = k & 2;
    char *desc = sim_sprintf("%s%s %s running in %s", spot ? "Spot Preemptible " : "", r->sku,
                             ram ? "Ram" : "Core", r->region);
    char *id = sim_sprintf("%04X-%04X-%04X", (unsigned)(r - rates), (unsigned)k, 0x5EED);
    json_array_append_new(
        list, sku_json(id, desc, ram ? "RAM" : "CPU", spot, r->region,
                       spot ? (ram ? r->spot_ram : r->spot_core) : (ram ? r->ram : r->core)));
    free(desc);
    free(id);
  }
}

static void gpu_skus(json_t *list, const gpu_rate_t *g) {
  const atype_t *a = atype_find(g->type);
  for (int spot = 0; spot < 2; spot++) {
    char *desc = sim_sprintf("%s %srunning in %s", a->sku,
                             spot ? "attached to Spot Preemptible VMs " : "", g->region);
    char *id = sim_sprintf("%04X-%04X-%04X", (unsigned)(g - gpu_rates), (unsigned)spot, 0x6E0F);
    json_array_append_new(list,
                          sku_json(id, desc, "GPU", spot, g->region, spot ? g->spot : g->price));
    free(desc);
    free(id);
  }
}

static void skus(const http_req_t *req, http_resp_t *resp) {
  char *ptok = http_query_param(req, "pageToken");
  long page = ptok ? atol(ptok) : 0;
  free(ptok);
  size_t n = sizeof(rates) / sizeof(rates[0]), ng = sizeof(gpu_rates) / sizeof(gpu_rates[0]);
  json_t *list = json_array();
  /* One family-region per page (four SKUs), then one GPU-region per page (two); the first
   * page also has a GPU kite does not know, without a price. */
  if (page >= 0 && (size_t)page < n)
    family_skus(list, &rates[page]);
  else if (page >= 0 && (size_t)page < n + ng)
    gpu_skus(list, &gpu_rates[page - (long)n]);
  if (page == 0)
    json_array_append_new(
        list, json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:[s]}", "skuId", "0000-GPU0-K80K",
                        "description", "Nvidia Tesla K80 GPU running in Americas", "category",
                        "resourceFamily", "Compute", "resourceGroup", "GPU", "usageType",
                        "OnDemand", "serviceRegions", "us-central1"));
  json_t *out = json_pack("{s:o}", "skus", list);
  if (page >= 0 && (size_t)page + 1 < n + ng)
    json_object_set_new(out, "nextPageToken", own(sim_sprintf("%ld", page + 1)));
  http_json(resp, 200, sim_dump(out));
}

/* ---- the token endpoint ------------------------------------------------------------------- */

static char *b64url_decode(const char *s, size_t n, size_t *out_len) {
  char *t = calloc(1, n + 4);
  unsigned char *out = calloc(1, n + 5);
  if (n == 0 || t == NULL || out == NULL) {
    free(t);
    free(out);
    return NULL;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    t[k++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
  while (k % 4)
    t[k++] = '=';
  int len = EVP_DecodeBlock(out, (unsigned char *)t, (int)k);
  free(t);
  if (len < 0) {
    free(out);
    return NULL;
  }
  size_t pad = 0;
  while (pad < 2 && n + pad < k)
    pad++;
  *out_len = (size_t)len - pad;
  out[*out_len] = '\0'; /* the decoded text is a C string: JSON, or the signature's bytes */
  return (char *)out;
}

/* NULL when the JWT is right (RS256, iss, aud, a live exp; the signature checked when
 * $KITE_CLOUDSIM_GCP_KEY_FILE names the key); else what is wrong. */
static const char *jwt_check(const char *jwt, const char *aud_want) {
  const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (d2 == NULL)
    return "the assertion is not a JWT";
  size_t hl, cl, sl;
  char *h = b64url_decode(jwt, (size_t)(d1 - jwt), &hl);
  char *c = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
  char *sig = b64url_decode(d2 + 1, strlen(d2 + 1), &sl);
  json_error_t e;
  json_t *hj = h ? json_loads(h, 0, &e) : NULL, *cj = c ? json_loads(c, 0, &e) : NULL;
  const char *why = NULL;
  json_int_t exp = json_integer_value(json_object_get(cj, "exp"));
  const char *aud = json_string_value(json_object_get(cj, "aud"));
  if (!hj || !cj || sig == NULL)
    why = "the JWT's parts are not base64url JSON";
  else if (!json_string_value(json_object_get(hj, "alg")) ||
           strcmp(json_string_value(json_object_get(hj, "alg")), "RS256") != 0)
    why = "the JWT is not RS256";
  else if (!json_string_value(json_object_get(cj, "iss")) ||
           !json_string_value(json_object_get(cj, "scope")))
    why = "the JWT has no iss or scope";
  else if (aud == NULL || strcmp(aud, aud_want) != 0)
    why = "the JWT's aud is not this token endpoint";
  else if (exp < (json_int_t)time(NULL))
    why = "the JWT has expired";
  const char *kf = getenv("KITE_CLOUDSIM_GCP_KEY_FILE");
  if (why == NULL && kf && *kf) {
    json_t *k = json_load_file(kf, 0, &e);
    const char *pem = json_string_value(json_object_get(k, "private_key"));
    BIO *b = pem ? BIO_new_mem_buf(pem, -1) : NULL;
    EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (key == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestVerify(md, (unsigned char *)sig, sl, (const unsigned char *)jwt,
                         (size_t)(d2 - jwt)) != 1)
      why = "Invalid JWT Signature.";
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(key);
    BIO_free(b);
    json_decref(k);
  }
  json_decref(hj);
  json_decref(cj);
  free(h);
  free(c);
  free(sig);
  return why;
}

static char *form_param(const char *body, const char *key) {
  http_req_t r = {.query = (char *)body};
  return http_query_param(&r, key);
}

static void token(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  char *body = strndup(req->body ? req->body : "", req->body_len);
  char *grant = form_param(body, "grant_type");
  char *assertion = form_param(body, "assertion"), *refresh = form_param(body, "refresh_token");
  const char *hosth = http_req_header(req, "host");
  char *aud = sim_sprintf("http://%s/token", hosth ? hosth : "127.0.0.1");
  const char *why = NULL;
  if (grant && strcmp(grant, "urn:ietf:params:oauth:grant-type:jwt-bearer") == 0)
    why = assertion ? jwt_check(assertion, aud) : "no assertion";
  else if (grant && strcmp(grant, "refresh_token") == 0)
    why = refresh && strcmp(refresh, sim->token) == 0 ? NULL : "Token has been expired or revoked.";
  else
    why = "Invalid grant_type";
  if (why)
    http_json(
        resp, 400,
        sim_dump(json_pack("{s:s, s:s}", "error", "invalid_grant", "error_description", why)));
  else
    http_json(resp, 200,
              sim_dump(json_pack("{s:s, s:i, s:s}", "access_token", sim->token, "expires_in", 3599,
                                 "token_type", "Bearer")));
  free(body);
  free(grant);
  free(assertion);
  free(refresh);
  free(aud);
}

/* ---- routing -------------------------------------------------------------------------------- */

static bool gcp_match(const http_req_t *req) {
  return strncmp(req->path, "/compute/v1/", 12) == 0 ||
         strncmp(req->path, "/v1/services/6F81-5844-456A/", 28) == 0 ||
         strcmp(req->path, "/token") == 0 ||
         strcmp(req->path, "/computeMetadata/v1/instance/service-accounts/default/token") == 0;
}

static void gcp_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  the_sim = sim;
  const char *p = req->path;
  if (strcmp(p, "/token") == 0 && strcmp(req->method, "POST") == 0) {
    token(sim, req, resp);
    return;
  }
  if (strncmp(p, "/computeMetadata/", 17) == 0) {
    const char *f = http_req_header(req, "metadata-flavor");
    if (f == NULL || strcmp(f, "Google") != 0) {
      http_json(resp, 403, strdup("{}"));
      return;
    }
    http_json(resp, 200,
              sim_sprintf("{\"access_token\":\"%s\",\"expires_in\":3599,\"token_type\":\"Bearer\"}",
                          sim->token));
    return;
  }
  if (!http_bearer_is(req, sim->token)) {
    gcp_error(resp, 401, "authError",
              "Request had invalid authentication credentials. Expected OAuth 2 access token.");
    return;
  }
  if (strncmp(p, "/v1/services/", 13) == 0) {
    skus(req, resp);
    return;
  }
  char project[64] = "", zone[64] = "", kind[32] = "", name[64] = "", tail[16] = "";
  int n = sscanf(p, "/compute/v1/projects/%63[^/]/zones/%63[^/]/%31[^/]/%63[^/]/%15s", project,
                 zone, kind, name, tail);
  if (n >= 3 && strcmp(kind, "instances") == 0) {
    if (n == 3 && strcmp(req->method, "POST") == 0) {
      vm_insert(sim, project, zone, req, resp);
      return;
    }
    vm_t *v = n == 4 ? vm_find(project, zone, name) : NULL;
    machine_t *m = v ? vm_machine(sim, v) : NULL;
    if (v && m == NULL && !v->preempted_stopped)
      v = NULL; /* gone */
    if (n == 4 && v == NULL) {
      char *msg = sim_sprintf("The resource 'projects/%s/zones/%s/instances/%s' was not found",
                              project, zone, name);
      gcp_error(resp, 404, "notFound", msg);
      free(msg);
    } else if (n == 4 && strcmp(req->method, "GET") == 0) {
      http_json(resp, 200, sim_dump(vm_json(v, m)));
    } else if (n == 4 && strcmp(req->method, "DELETE") == 0) {
      vm_delete(sim, v, project, resp);
    } else {
      gcp_error(resp, 405, "invalid", "method not supported here");
    }
    return;
  }
  if (n >= 4 && strcmp(kind, "operations") == 0) {
    op_t *o = gcp.ops;
    while (o && !(strcmp(o->name, name) == 0 && strcmp(o->zone, zone) == 0))
      o = o->next;
    if (o == NULL) {
      gcp_error(resp, 404, "notFound", "The resource 'operation' was not found");
      return;
    }
    http_json(resp, 200, sim_dump(op_json(o, project, true)));
    return;
  }
  if (sscanf(p, "/compute/v1/projects/%63[^/]/aggregated/%31s", project, kind) == 2) {
    if (strcmp(kind, "instances") == 0) {
      vm_aggregated(sim, project, req, resp);
      return;
    }
    if (strcmp(kind, "machineTypes") == 0 || strcmp(kind, "acceleratorTypes") == 0) {
      zone_types(strcmp(kind, "acceleratorTypes") == 0, req, resp);
      return;
    }
  }
  gcp_error(resp, 404, "notFound", "The requested URL was not found on this server.");
}

static unsigned live_count(sim_t *sim) {
  return machine_count_of(sim, CLOUD);
}

static bool gcp_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (strncmp(req->path, "/_sim/gcp/", 10) != 0)
    return false;
  the_sim = sim;
  char zone[64], name[64], tail[16];
  if (strcmp(req->path, "/_sim/gcp/state") == 0) {
    json_t *list = json_array();
    for (vm_t *v = gcp.vms, *next; v; v = next) {
      next = v->next;
      machine_t *m = vm_machine(sim, v);
      if (m || v->preempted_stopped)
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:b, s:s, s:o, s:s}", "zone", v->zone, "name", v->name,
                            "status", vm_status(v, m), "spot", v->spot, "machine_type",
                            v->type->name, "accelerators",
                            v->gpu || v->type->gpu
                                ? own(sim_sprintf("%s:%u", v->gpu ? v->gpu->name : v->type->gpu,
                                                  v->gpu ? v->gpus : v->type->gpus))
                                : json_string(""),
                            "on_host_maintenance",
                            v->spot || v->gpu || v->type->gpu ? "TERMINATE" : "MIGRATE"));
    }
    http_json(resp, 200,
              sim_dump(json_pack("{s:i, s:i, s:o}", "live", live_count(sim), "ssh_keys",
                                 (int)gcp.keys_n, "instances", list)));
  } else if (strcmp(req->path, "/_sim/gcp/op_errors") == 0 && strcmp(req->method, "POST") == 0) {
    json_error_t e;
    json_t *j = json_loadb(req->body, req->body_len, 0, &e);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "next"), i, c) {
      if (json_is_string(c) && gcp.op_errors_n < 32)
        gcp.op_errors[gcp.op_errors_n++] = strdup(json_string_value(c));
    }
    json_decref(j);
    http_json(resp, 200, strdup("{\"ok\":true}"));
  } else if (sscanf(req->path, "/_sim/gcp/instances/%63[^/]/%63[^/]/%15s", zone, name, tail) == 3) {
    vm_t *v = NULL;
    for (vm_t *x = gcp.vms; x && !v; x = x->next)
      if (strcmp(x->zone, zone) == 0 && strcmp(x->name, name) == 0)
        v = x;
    machine_t *m = v ? machine_find_of(sim, v->machine_id, CLOUD) : NULL;
    if (m == NULL) {
      http_error(resp, 404, "not_found", "no such VM");
    } else if (strcmp(tail, "kill") == 0) {
      fprintf(stderr, "kite-cloudsim: gcp VM %s/%s dies\n", zone, name);
      machine_kill(m, true);
      http_json(resp, 200, strdup("{\"ok\":true}"));
    } else if (strcmp(tail, "preempt") == 0) {
      char *ms = http_query_param(req, "notice_ms");
      long notice = ms && atol(ms) > 0 && atol(ms) <= 120000 ? atol(ms) : PREEMPT_NOTICE_MS;
      free(ms);
      v->preempt_notice = true;
      uv_timer_start(&v->timer, on_preempt_due, (uint64_t)notice, 0);
      fprintf(stderr, "kite-cloudsim: gcp VM %s/%s: preemption notice\n", zone, name);
      http_json(resp, 200, strdup("{\"ok\":true}"));
    } else {
      http_error(resp, 404, "not_found", "no such control route");
    }
  } else {
    http_error(resp, 404, "not_found", "no such control route");
  }
  return true;
}

static void gcp_state(sim_t *sim, json_t *state) {
  json_object_set_new(state, "gcp_instances", json_integer(live_count(sim)));
}

/* Refusals of sim_admit, read back by vm_insert into the operation's error. */
static void gcp_no_capacity(http_resp_t *resp, const char *type, const char *zone) {
  char *m = sim_sprintf("The zone 'projects/p/zones/%s' does not have enough resources available "
                        "to fulfill the request. Try a different zone, or try again later. (%s)",
                        zone, type);
  http_json(
      resp, 503,
      sim_dump(json_pack("{s:s, s:s}", "code", "ZONE_RESOURCE_POOL_EXHAUSTED", "message", m)));
  free(m);
}

static void gcp_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  char *m =
      sim_sprintf("Quota 'INSTANCES' exceeded. Limit: %u.0 in region (wanted %u)", limit, wanted);
  http_json(resp, 403, sim_dump(json_pack("{s:s, s:s}", "code", "QUOTA_EXCEEDED", "message", m)));
  free(m);
}

static void gcp_error_shape(http_resp_t *resp, int status, const char *code, const char *message) {
  gcp_error(resp, status, code, message);
}

static void gcp_free(sim_t *sim) {
  (void)sim;
  while (gcp.ops) {
    op_t *o = gcp.ops;
    gcp.ops = o->next;
    free(o->error_code);
    free(o->error_message);
    free(o);
  }
  for (size_t i = 0; i < gcp.op_errors_n; i++)
    free(gcp.op_errors[i]);
  for (size_t i = 0; i < gcp.keys_n; i++)
    free(gcp.keys_seen[i]);
}

static bool gcp_match_init(const http_req_t *req) {
  if (gcp.mds_port == 0) {
    const char *p = getenv("KITE_CLOUDSIM_GCE_METADATA_PORT");
    gcp.mds_port = p && *p ? atoi(p) : 8170;
  }
  return gcp_match(req);
}

const sim_front_t gcp_front = {
    .name = CLOUD,
    .match = gcp_match_init,
    .handle = gcp_handle,
    .control = gcp_control,
    .state = gcp_state,
    .error = gcp_error_shape,
    .rate_limited = {429, "rateLimitExceeded", "Rate Limit Exceeded"},
    .server_error = {500, "backendError", "Internal error. Please try again."},
    .malformed_body = "{\"kind\": \"compute#operation\", \"status\": [}",
    .no_capacity = gcp_no_capacity,
    .over_limit = gcp_over_limit,
    .free = gcp_free,
};
