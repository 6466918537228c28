/* The Google Compute Engine provider: VMs through the Compute Engine API v1 on the cloud
 * skeleton (providers/cloud/cloud.h owns the lifecycle; this file is Compute Engine's shapes,
 * from the official description, and auth.c its credentials).
 *
 * Design notes
 * - Places: a VM lives in a zone ("us-central1-a"); its region is the zone less its last part.
 *   A launch's zone is the launch's (the offer's), else its region when that names a zone, else
 *   the "zone" option when it is in the launch's region, else the region's first zone.
 * - Ids are "ZONE/NAME": every call on a VM names its zone, and names are unique in a project.
 * - Create: POST .../zones/ZONE/instances?requestId=UUID, the UUID made from the launch token,
 *   so that a repeated insert (an ambiguous answer, a retry) is the same operation and never a
 *   second VM (create_token). The operation is waited for (operations.wait, which answers when
 *   it is DONE or after a while; asked again until DONE); its error, when it has one, is the
 *   launch's (ZONE_RESOURCE_POOL_EXHAUSTED → KITE_ECAPACITY, QUOTA_EXCEEDED → KITE_EQUOTA, ...,
 *   which the pool fails over on). The VM: machine type, a boot disk from the image (disk_gb),
 *   the default network with an external address, labels kite-pool=LABEL (the tag in the
 *   labels' character set), metadata ssh-keys (USER:kite's key), user-data (the cloud-config
 *   with the pinned host key), kite-pool (the tag itself); spot: scheduling provisioningModel
 *   SPOT, instanceTerminationAction DELETE (or STOP), no automatic restart.
 * - Describe: GET .../instances/NAME: PROVISIONING and STAGING are pending, RUNNING runs,
 *   STOPPING, SUSPENDING are on their way out, TERMINATED, STOPPED and SUSPENDED are stopped;
 *   a spot VM stopped is preempted (Compute Engine took it back). The address is
 *   networkInterfaces[0].accessConfigs[0].natIP.
 * - Destroy: DELETE .../instances/NAME, its operation waited for; the skeleton then describes
 *   until the API answers 404.
 * - List: GET .../aggregated/instances?filter=labels.kite-pool=LABEL (every zone), pageToken
 *   as the cursor; the pool tag of each VM is its kite-pool metadata item.
 * - Probe: on a spot VM, the metadata server's instance/preempted (TRUE once Compute Engine
 *   has decided to take the VM back, about 30 s before it does).
 * - Nothing is prepared in the project: kite's key travels in each VM's metadata, so there is
 *   nothing to clean up but the VMs. */
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "../cloud/rest.h"
#include "../provider_info.h"
#include "gcp_impl.h"
#include "kite/offer.h"
#include "kite/provider.h"
#include "kite_impl.h"

#define NAME "gcp"
#define DEFAULT_API "https://compute.googleapis.com/compute/v1"
#define DEFAULT_BILLING "https://cloudbilling.googleapis.com/v1"
#define DEFAULT_ZONE "us-central1-a"
#define DEFAULT_TYPE "e2-small"
#define DEFAULT_IMAGE "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
#define DEFAULT_METADATA "http://metadata.google.internal"
/* The metadata server's address for kite's own requests (kite_http allows it over http://). */
#define METADATA_IP "http://169.254.169.254"
#define POOL_LABEL "kite-pool"
#define MAX_WAITS 40
#define CREDS_HELP                                                                                  \
  "set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file (IAM → Service accounts → " \
  "Keys → Add key → JSON), run `gcloud auth application-default login`, or put \"token\" (an "  \
  "access token) in the provider options"

/* ---- places and names ----------------------------------------------------------------------- */

/* Whether s is a Compute Engine resource name: [a-z]([-a-z0-9]{0,61}[a-z0-9])?. */
static bool gce_name(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > 63 || !(s[0] >= 'a' && s[0] <= 'z') || s[n - 1] == '-')
    return false;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
      return false;
  return true;
}

bool kite__gcp_zone_region(const char *zone, char *out, size_t size) {
  const char *dash = zone ? strrchr(zone, '-') : NULL;
  /* us-central1-a, europe-west4-b, me-central2-c: a region and one letter. */
  if (!gce_name(zone) || dash == NULL || strlen(dash) != 2 || dash[1] < 'a' || dash[1] > 'z' ||
      memchr(zone, '-', (size_t)(dash - zone)) == NULL || (size_t)(dash - zone) >= size)
    return false;
  memcpy(out, zone, (size_t)(dash - zone));
  out[dash - zone] = '\0';
  return true;
}

/* The first zone of a region: "-a", but for the regions that have none. */
static char *first_zone(const char *region) {
  static const char *const b_first[] = {"us-east1", "europe-west1"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(b_first); i++)
    if (strcmp(region, b_first[i]) == 0)
      return kite__sprintf("%s-b", region);
  return kite__sprintf("%s-a", region);
}

/* An id "ZONE/NAME" split; false when it is not one. */
static bool split_id(const char *id, char zone[64], char name[64]) {
  const char *slash = id ? strchr(id, '/') : NULL;
  if (slash == NULL || slash - id >= 64 || strlen(slash + 1) >= 64)
    return false;
  memcpy(zone, id, (size_t)(slash - id));
  zone[slash - id] = '\0';
  snprintf(name, 64, "%s", slash + 1);
  char region[64];
  return kite__gcp_zone_region(zone, region, sizeof(region)) && gce_name(name);
}

/* The pool tag as a label value: itself when it fits the labels' character set
 * ([a-z0-9_-], at most 63), else "t-" and a hash of it. */
static void tag_label(const char *tag, char out[64]) {
  size_t n = strlen(tag);
  bool ok = n > 0 && n <= 63;
  for (size_t i = 0; ok && i < n; i++)
    ok = (tag[i] >= 'a' && tag[i] <= 'z') || (tag[i] >= '0' && tag[i] <= '9') || tag[i] == '-' ||
         tag[i] == '_';
  if (ok) {
    memcpy(out, tag, n + 1);
    return;
  }
  char fp[17];
  kite__fingerprint("gcp-label", tag, fp);
  snprintf(out, 64, "t-%s", fp);
}

/* requestId: a UUID (version 4 layout) from the launch token, the VM's name and the attempt:
 * the HTTP client's repeats of one insert are one operation. A later attempt is a new
 * operation of the same name, which the API refuses (alreadyExists) when the VM was made. */
static void request_id(const char *token, const char *name, unsigned attempt, char out[37]) {
  char a[17], b[17], *v = kite__sprintf("%s/%s/%u", token ? token : "", name, attempt);
  kite__fingerprint("gcp-request-1", v ? v : name, a);
  kite__fingerprint("gcp-request-2", v ? v : name, b);
  free(v);
  snprintf(out, 37, "%.8s-%.4s-4%.3s-a%.3s-%.12s", a, a + 8, a + 12, b, b + 3);
}

/* ---- configuration -------------------------------------------------------------------------- */

static void api_free(void *p) {
  kite__gcp_api_t *a = p;
  if (a == NULL)
    return;
  free(a->url);
  free(a->billing_url);
  free(a->project);
  free(a->metadata_endpoint);
  kite__gcp_creds_free(&a->creds);
  free(a);
}

/* The DMI product name says Google Compute Engine (as Google's libraries check on Linux). */
static bool on_gce(void) {
  char *text = NULL;
  bool yes = kite__read_file("/sys/class/dmi/id/product_name", &text, NULL) == 0 && text &&
             strstr(text, "Google");
  free(text);
  return yes;
}

static char *adc_path(void) {
  const char *cfg = getenv("CLOUDSDK_CONFIG"), *home = getenv("HOME");
  if (cfg && *cfg)
    return kite__sprintf("%s/application_default_credentials.json", cfg);
  return home ? kite__sprintf("%s/.config/gcloud/application_default_credentials.json", home)
              : NULL;
}

/* The GPUs a launch attaches beside its machine type (N1's), into cfg; a type that comes with
 * its own (A2, G2, A3) attaches none. */
static int attach_gpus(const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg, char **msg) {
  if (launch->accelerator == NULL || *launch->accelerator == '\0' ||
      kite__gcp_type_has_gpus(cfg->type))
    return 0;
  const kite__gcp_gpu_t *g = kite__gcp_gpu_by_model(launch->accelerator);
  if (g == NULL || !g->attached || strncmp(cfg->type, "n1-", 3) != 0) {
    *msg = kite__sprintf("%s: kite cannot attach %s GPUs to %s: it attaches T4, V100, P100 and "
                         "P4 to N1 types; A100, L4 and H100 come with A2, G2 and A3 types (the "
                         "GPUs kite knows: %s)",
                         NAME, launch->accelerator, cfg->type, kite__gcp_gpu_models());
    return KITE_EINVAL;
  }
  free(cfg->accelerator);
  cfg->accelerator = kite__strdup(g->type);
  cfg->accelerator_count = launch->accelerator_count ? launch->accelerator_count : 1;
  return cfg->accelerator ? 0 : KITE_ENOMEM;
}

/* Finds the credentials: o's token, o's credentials_file, the provider's, the environment's,
 * gcloud's, the metadata server's. KITE_ENOENT with *looked (where kite looked) when none. */
static int find_creds(kite_gcp_provider_t *p, json_t *o, kite__gcp_creds_t *c, char **looked,
                      char **msg) {
  memset(c, 0, sizeof(*c));
  const char *tok = json_string_value(json_object_get(o, "token"));
  if (tok && *tok) {
    c->kind = KITE_GCP_TOKEN;
    c->token = kite__strdup(tok);
    c->source = kite__strdup("the access token in the provider options");
    kite_secret_add(p->rt, tok);
    return c->token && c->source ? 0 : KITE_ENOMEM;
  }
  const char *file =
      kite_cloud_first(json_string_value(json_object_get(o, "credentials_file")),
                       p->credentials_file, getenv("GOOGLE_APPLICATION_CREDENTIALS"));
  if (file)
    return kite__gcp_creds_file(p->rt, file, c, msg);
  char *adc = adc_path();
  if (adc && access(adc, F_OK) == 0) {
    int rc = kite__gcp_creds_file(p->rt, adc, c, msg);
    free(adc);
    return rc;
  }
  const char *host = getenv("GCE_METADATA_HOST");
  if ((host && *host) || on_gce()) {
    c->kind = KITE_GCP_METADATA;
    c->metadata_url = host && *host ? kite__sprintf("http://%s", host) : kite__strdup(METADATA_IP);
    c->source = kite__strdup("the metadata server");
    free(adc);
    if (c->metadata_url && !kite_http_url_allowed(c->metadata_url) && host && *host) {
      *msg = kite__sprintf("GCE_METADATA_HOST=%s: kite asks a metadata server only on a loopback "
                           "address or Compute Engine's own",
                           host);
      return KITE_EINVAL;
    }
    return c->metadata_url && c->source ? 0 : KITE_ENOMEM;
  }
  *looked = kite__sprintf("the provider options (token, credentials_file), "
                          "$GOOGLE_APPLICATION_CREDENTIALS, %s and the metadata server "
                          "($GCE_METADATA_HOST is not set and this is not a Compute Engine VM)",
                          adc ? adc : "gcloud's application_default_credentials.json");
  free(adc);
  return KITE_ENOENT;
}

static int gcp_configure(kite_cloud_t *cl, const char *options,
                         const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                         char **msg) {
  kite_gcp_provider_t *p = kite_cloud_provider(cl);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(cl), options, msg);
  if (o == NULL)
    return KITE_EINVAL;
  kite__gcp_api_t *api = calloc(1, sizeof(*api));
  cfg->api = api;
  char *looked = NULL;
  int rc = api ? find_creds(p, o, &api->creds, &looked, msg) : KITE_ENOMEM;
  if (rc == KITE_ENOENT) {
    *msg = kite__sprintf("%s: no API token found: %s (kite looked in %s)", NAME, CREDS_HELP,
                         looked ? looked : "the options and the environment");
    rc = KITE_ECREDENTIALS;
  } else if (rc != 0 && *msg) {
    char *m = kite__sprintf("%s: %s", NAME, *msg);
    free(*msg);
    *msg = m;
  }
  free(looked);
  const char *project = NULL, *url = NULL, *billing = NULL;
  if (rc == 0) {
    kite__gcp_creds_name(&api->creds, api->creds_name);
    project = kite_cloud_first(json_string_value(json_object_get(o, "project")), p->project,
                               getenv("CLOUDSDK_CORE_PROJECT"));
    project = kite_cloud_first(project, getenv("GOOGLE_CLOUD_PROJECT"), api->creds.project);
    url = kite_cloud_first(json_string_value(json_object_get(o, "api_url")), p->api_url,
                           getenv("KITE_GCP_API_URL"));
    billing = kite_cloud_first(json_string_value(json_object_get(o, "billing_url")), p->billing_url,
                               getenv("KITE_GCP_BILLING_URL"));
    if (project == NULL) {
      *msg = kite__sprintf("%s: no project: put \"project\" in the provider options, or set "
                           "CLOUDSDK_CORE_PROJECT or GOOGLE_CLOUD_PROJECT (the credentials from "
                           "%s name none)",
                           NAME, api->creds.source);
      rc = KITE_EINVAL;
    } else if (!gce_name(project) && strchr(project, ':') == NULL) {
      *msg = kite__sprintf("%s: \"%s\" is not a project id (lowercase letters, digits and "
                           "hyphens); use the id `gcloud projects list` shows",
                           NAME, project);
      rc = KITE_EINVAL;
    }
  }
  if (rc == 0) {
    api->url = kite__strdup(url ? url : DEFAULT_API);
    api->billing_url = kite__strdup(billing ? billing : DEFAULT_BILLING);
    api->project = kite__strdup(project);
    rc = api->url && api->billing_url && api->project ? 0 : KITE_ENOMEM;
  }
  for (char **u = api && rc == 0 ? (char *[]){api->url, api->billing_url, NULL} : NULL; u && *u;
       u++) {
    size_t n = strlen(*u);
    while (n > 0 && (*u)[n - 1] == '/')
      (*u)[--n] = '\0';
    if (!kite_http_url_allowed(*u)) {
      *msg = kite__sprintf("%s: the API URL %s is not allowed: use https://, or http:// only to a "
                           "loopback address (an emulator); set api_url or billing_url in the "
                           "provider options, or KITE_GCP_API_URL / KITE_GCP_BILLING_URL",
                           NAME, *u);
      rc = KITE_EINVAL;
      break;
    }
  }
  if (rc == 0) {
    json_t *disk = json_object_get(o, "disk_gb"), *port = json_object_get(o, "ssh_port");
    api->disk_gb = json_is_integer(disk) ? (unsigned)json_integer_value(disk) : 20;
    const char *md = json_string_value(json_object_get(o, "metadata_endpoint"));
    api->metadata_endpoint = kite__strdup(md && *md ? md : DEFAULT_METADATA);
    const char *action = json_string_value(json_object_get(o, "preemption_action"));
    api->stop_on_preempt = action && strcmp(action, "STOP") == 0;
    char reach_account[17];
    memcpy(reach_account, api->creds_name, sizeof(reach_account));
    cfg->site = kite__sprintf("%s %s", api->url, api->project);
    cfg->reach = kite_cloud_reach_json(NAME, "api_url", api->url, "project", api->project, NULL);
    cfg->user = kite__strdup(
        kite_cloud_first(json_string_value(json_object_get(o, "ssh_user")), p->user, "kite"));
    cfg->port = json_is_integer(port) ? (unsigned)json_integer_value(port) : p->port ? p->port : 22;
    cfg->pin = !json_is_false(json_object_get(o, "pin_host_key"));
    rc = cfg->site && cfg->reach && cfg->user && api->metadata_endpoint ? 0 : KITE_ENOMEM;
  }
  if (rc == 0 && launch) {
    /* Where: the launch's zone, its region when it names a zone, the option's zone when in the
     * region, else the region's first zone. */
    const char *zone_opt =
        kite_cloud_first(json_string_value(json_object_get(o, "zone")), p->zone, NULL);
    char region[64] = "";
    const char *want = kite_cloud_first(launch->region, NULL, NULL);
    char *zone = NULL;
    if (cfg->zone)
      zone = kite__strdup(cfg->zone);
    else if (want && kite__gcp_zone_region(want, region, sizeof(region)))
      zone = kite__strdup(want);
    else if (want == NULL)
      zone = kite__strdup(zone_opt ? zone_opt : DEFAULT_ZONE);
    else if (zone_opt && kite__gcp_zone_region(zone_opt, region, sizeof(region)) &&
             strcmp(region, want) == 0)
      zone = kite__strdup(zone_opt);
    else
      zone = first_zone(want);
    if (zone && !kite__gcp_zone_region(zone, region, sizeof(region))) {
      *msg = kite__sprintf("%s: \"%s\" is not a zone (like us-central1-a) or region (like "
                           "us-central1); `gcloud compute zones list` lists them",
                           NAME, zone);
      rc = KITE_EINVAL;
    }
    free(cfg->zone);
    cfg->zone = zone;
    free(cfg->region);
    cfg->region = rc == 0 ? kite__strdup(region) : NULL;
    cfg->type =
        kite__strdup(kite_cloud_first(launch->instance_type, p->machine_type, DEFAULT_TYPE));
    cfg->image = kite__strdup(kite_cloud_first(launch->image, p->image, DEFAULT_IMAGE));
    if (rc == 0 && !(cfg->zone && cfg->region && cfg->type && cfg->image))
      rc = KITE_ENOMEM;
    if (rc == 0 && !gce_name(cfg->type)) {
      *msg = kite__sprintf("%s: \"%s\" is not a machine type (like e2-standard-2); `gcloud "
                           "compute machine-types list` lists them",
                           NAME, cfg->type);
      rc = KITE_EINVAL;
    }
    if (rc == 0)
      rc = attach_gpus(launch, cfg, msg);
  } else if (rc == 0 && cfg->region) {
    /* A region that names a zone (a catalog or reach of a zone) is that zone's region. */
    char region[64];
    if (kite__gcp_zone_region(cfg->region, region, sizeof(region))) {
      free(cfg->zone);
      cfg->zone = cfg->region;
      cfg->region = kite__strdup(region);
      rc = cfg->region ? 0 : KITE_ENOMEM;
    }
  }
  json_decref(o);
  return rc;
}

static int gcp_configure_reach(kite_cloud_t *c, const char *reach, kite_cloud_cfg_t *cfg,
                               bool *same_account, char **msg) {
  char *url = kite__json_str(reach, "api_url"), *project = kite__json_str(reach, "project");
  json_t *o = json_object();
  if (url)
    json_object_set_new(o, "api_url", json_string(url));
  if (project)
    json_object_set_new(o, "project", json_string(project));
  char *opts = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  int rc = opts ? gcp_configure(c, opts, NULL, cfg, msg) : KITE_ENOMEM;
  if (rc == 0 && project) {
    /* The project is the place: "not found" in it is proof, whoever asks. */
    const kite__gcp_api_t *api = cfg->api;
    *same_account = strcmp(api->project, project) == 0;
  }
  free(opts);
  free(url);
  free(project);
  return rc;
}

/* ---- answers -------------------------------------------------------------------------------- */

json_t *kite__gcp_body(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  if (j == NULL)
    kite__gcp_fail(call, status, r);
  return j;
}

void kite__gcp_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status != 0 ? kite_cloud_rest_body(r) : NULL;
  json_t *e = json_object_get(j, "error");
  const char *reason =
      json_string_value(json_object_get(json_array_get(json_object_get(e, "errors"), 0), "reason"));
  const char *code =
      kite_cloud_first(reason, json_string_value(json_object_get(e, "status")), NULL);
  kite_cloud_answer_t a;
  kite_cloud_http_outcome(status, r, code, json_string_value(json_object_get(e, "message")), &a);
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static char *zone_url(const kite_cloud_call_t *call, const char *zone, const char *fmt,
                      const char *arg) {
  const kite__gcp_api_t *api = call->cfg->api;
  char *tail = kite__sprintf(fmt, arg ? arg : "");
  char *url =
      tail ? kite__sprintf("%s/projects/%s/zones/%s%s", api->url, api->project, zone, tail) : NULL;
  free(tail);
  return url;
}

/* ---- operations ----------------------------------------------------------------------------- */

/* An operation's first error ends the call, as the API's error; false when it has none. */
static bool op_failed(kite_cloud_call_t *call, json_t *op) {
  json_t *err = json_array_get(json_object_get(json_object_get(op, "error"), "errors"), 0);
  if (err == NULL)
    return false;
  const char *code = json_string_value(json_object_get(err, "code"));
  const char *message = json_string_value(json_object_get(err, "message"));
  json_t *hs = json_object_get(op, "httpErrorStatusCode");
  /* Compute Engine's own trouble: nothing was made, and trying again may work. */
  bool transient =
      code && (strcmp(code, "INTERNAL_ERROR") == 0 || strcmp(code, "SERVICE_UNAVAILABLE") == 0 ||
               strcmp(code, "RESOURCE_OPERATION_RATE_EXCEEDED") == 0);
  kite_cloud_answer_t a = {.outcome = transient ? KITE_CLOUD_RETRY : KITE_CLOUD_FAILED,
                           .code = KITE_EPROVIDER,
                           .api_code = code ? code : "operation_error",
                           .http_status = json_is_integer(hs) ? (long)json_integer_value(hs) : 0,
                           .message = message ? message : "the operation failed"};
  kite_cloud_answer(call, &a);
  return true;
}

static void op_wait(kite_cloud_call_t *call, json_t *op);

/* After a DONE operation without error: the create's VM exists, a delete is done. */
static void op_done(kite_cloud_call_t *call) {
  if (call->kind == KITE_CLOUD_CALL_CREATE) {
    const kite_cloud_launch_t *l = call->launches[0];
    char *id = kite__sprintf("%s/%s", call->cfg->zone, l->name);
    if (id == NULL) {
      kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
      return;
    }
    kite_cloud_created(call, 0, id);
    free(id);
  }
  kite_cloud_answer_ok(call);
}

/* The error reason of a failed exchange's body, or NULL. */
static const char *error_reason(json_t *j) {
  return json_string_value(json_object_get(
      json_array_get(json_object_get(json_object_get(j, "error"), "errors"), 0), "reason"));
}

static void on_op(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  if (status != 0 && call->kind == KITE_CLOUD_CALL_CREATE && r->status == 409 && call->step == 0) {
    /* A VM of this launch's name (unique to it) exists: an earlier attempt made it. */
    json_t *j = kite_cloud_rest_body(r);
    const char *reason = error_reason(j);
    bool exists = reason && strcmp(reason, "alreadyExists") == 0;
    json_decref(j);
    if (exists) {
      op_done(call);
      return;
    }
  }
  json_t *op = kite__gcp_body(call, status, r);
  if (op == NULL)
    return;
  op_wait(call, op);
  json_decref(op);
}

static void op_wait(kite_cloud_call_t *call, json_t *op) {
  const char *st = json_string_value(json_object_get(op, "status"));
  const char *name = json_string_value(json_object_get(op, "name"));
  if (op_failed(call, op))
    return;
  if (st && strcmp(st, "DONE") == 0) {
    op_done(call);
    return;
  }
  if (st == NULL || !gce_name(name) || call->step++ >= MAX_WAITS) {
    /* Unreadable, or not done after many waits: asked again later (the requestId makes the
     * insert the same operation). */
    kite_cloud_answer_t a = {.outcome = KITE_CLOUD_RETRY,
                             .message = st == NULL || !gce_name(name)
                                            ? "the operation in the answer cannot be read"
                                            : "the operation is not done yet"};
    kite_cloud_answer(call, &a);
    return;
  }
  char zone[64] = "", vm[64];
  if (call->kind == KITE_CLOUD_CALL_CREATE)
    snprintf(zone, sizeof(zone), "%s", call->cfg->zone);
  else
    split_id(call->id, zone, vm);
  char *url = zone_url(call, zone, "/operations/%s/wait", name);
  if (url == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite__gcp_send(call, "POST", url, NULL, on_op);
  free(url);
}

/* ---- create --------------------------------------------------------------------------------- */

static json_t *metadata_item(const char *key, const char *value) {
  return json_pack("{s:s, s:s}", "key", key, "value", value);
}

static void gcp_create(kite_cloud_call_t *call) {
  const kite_cloud_cfg_t *cfg = call->cfg;
  const kite__gcp_api_t *api = cfg->api;
  const kite_cloud_launch_t *l = call->launches[0];
  char label[64], rid[37];
  tag_label(l->tag, label);
  request_id(l->token, l->name, call->attempt, rid);
  char *mt = kite__sprintf("zones/%s/machineTypes/%s", cfg->zone, cfg->type);
  char *keys = kite__sprintf("%s:%s", cfg->user, kite_cloud_pubkey(call->cloud));
  char *disk = kite__sprintf("%u", api->disk_gb);
  json_t *items = json_array();
  json_array_append_new(items, metadata_item("ssh-keys", keys ? keys : ""));
  json_array_append_new(items, metadata_item(POOL_LABEL, l->tag));
  if (l->user_data && *l->user_data)
    json_array_append_new(items, metadata_item("user-data", l->user_data));
  /* A VM with GPUs cannot move to another host for maintenance: it stops instead. */
  bool gpus = cfg->accelerator || kite__gcp_type_has_gpus(cfg->type);
  json_t *sched =
      l->spot ? json_pack("{s:s, s:s, s:b, s:s}", "provisioningModel", "SPOT",
                          "instanceTerminationAction", api->stop_on_preempt ? "STOP" : "DELETE",
                          "automaticRestart", 0, "onHostMaintenance", "TERMINATE")
      : gpus  ? json_pack("{s:s, s:s, s:b}", "provisioningModel", "STANDARD", "onHostMaintenance",
                          "TERMINATE", "automaticRestart", 1)
              : json_pack("{s:s}", "provisioningModel", "STANDARD");
  json_t *body = json_pack(
      "{s:s, s:s, s:{s:s}, s:{s:o}, s:[{s:b, s:b, s:{s:s, s:s}}], s:[{s:s, s:[{s:s, s:s}]}], "
      "s:o}",
      "name", l->name, "machineType", mt ? mt : "", "labels", POOL_LABEL, label, "metadata",
      "items", items, "disks", "boot", 1, "autoDelete", 1, "initializeParams", "sourceImage",
      cfg->image, "diskSizeGb", disk ? disk : "20", "networkInterfaces", "network",
      "global/networks/default", "accessConfigs", "type", "ONE_TO_ONE_NAT", "name", "External NAT",
      "scheduling", sched);
  if (body && cfg->accelerator) {
    char *at = kite__sprintf("zones/%s/acceleratorTypes/%s", cfg->zone, cfg->accelerator);
    json_object_set_new(body, "guestAccelerators",
                        json_pack("[{s:s, s:i}]", "acceleratorType", at ? at : "",
                                  "acceleratorCount", (int)cfg->accelerator_count));
    free(at);
  }
  char *url = zone_url(call, cfg->zone, "/instances?requestId=%s", rid);
  free(mt);
  free(keys);
  free(disk);
  call->step = 0;
  if (body == NULL || url == NULL) {
    json_decref(body);
    free(url);
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite__gcp_send(call, "POST", url, body, on_op);
  json_decref(body);
  free(url);
}

/* ---- describe, destroy, list ---------------------------------------------------------------- */

static kite_cloud_state_t state_of(const char *st) {
  static const struct {
    const char *status;
    kite_cloud_state_t state;
  } map[] = {{"PROVISIONING", KITE_CLOUD_PENDING}, {"STAGING", KITE_CLOUD_PENDING},
             {"RUNNING", KITE_CLOUD_RUNNING},      {"STOPPING", KITE_CLOUD_STOPPING},
             {"SUSPENDING", KITE_CLOUD_STOPPING},  {"REPAIRING", KITE_CLOUD_PENDING},
             {"TERMINATED", KITE_CLOUD_STOPPED},   {"STOPPED", KITE_CLOUD_STOPPED},
             {"SUSPENDED", KITE_CLOUD_STOPPED}};
  for (size_t i = 0; st && i < KITE_ARRAY_SIZE(map); i++)
    if (strcmp(map[i].status, st) == 0)
      return map[i].state;
  return KITE_CLOUD_PENDING;
}

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = kite__gcp_body(call, status, r);
  if (j == NULL)
    return;
  json_t *sched = json_object_get(j, "scheduling");
  const char *model = json_string_value(json_object_get(sched, "provisioningModel"));
  bool spot =
      (model && strcmp(model, "SPOT") == 0) || json_is_true(json_object_get(sched, "preemptible"));
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  a.instance.state = state_of(json_string_value(json_object_get(j, "status")));
  json_t *nic = json_array_get(json_object_get(j, "networkInterfaces"), 0);
  a.instance.address = json_string_value(
      json_object_get(json_array_get(json_object_get(nic, "accessConfigs"), 0), "natIP"));
  /* A spot VM that stopped without kite asking: Compute Engine took it back. */
  a.instance.preempted =
      spot && (a.instance.state == KITE_CLOUD_STOPPED || a.instance.state == KITE_CLOUD_STOPPING);
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static bool call_vm(kite_cloud_call_t *call, char zone[64], char name[64]) {
  if (split_id(call->id, zone, name))
    return true;
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_NOT_FOUND,
                           .message = "not a Compute Engine instance id (ZONE/NAME)"};
  kite_cloud_answer(call, &a);
  return false;
}

static void gcp_describe(kite_cloud_call_t *call) {
  char zone[64], name[64];
  if (!call_vm(call, zone, name))
    return;
  char *url = zone_url(call, zone, "/instances/%s", name);
  if (url == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite__gcp_send(call, "GET", url, NULL, on_described);
  free(url);
}

static void gcp_destroy(kite_cloud_call_t *call) {
  char zone[64], name[64];
  if (!call_vm(call, zone, name))
    return;
  char *url = zone_url(call, zone, "/instances/%s", name);
  if (url == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->step = 0;
  kite__gcp_send(call, "DELETE", url, NULL, on_op);
  free(url);
}

/* The value of the metadata item key of a VM, or NULL. */
static const char *metadata_of(json_t *vm, const char *key) {
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(json_object_get(vm, "metadata"), "items"), i, it) {
    const char *k = json_string_value(json_object_get(it, "key"));
    if (k && strcmp(k, key) == 0)
      return json_string_value(json_object_get(it, "value"));
  }
  return NULL;
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = kite__gcp_body(call, status, r);
  if (j == NULL)
    return;
  const char *scope;
  json_t *sc;
  json_object_foreach(json_object_get(j, "items"), scope, sc) {
    char zone[64], region[64];
    const char *z = strncmp(scope, "zones/", 6) == 0 ? scope + 6 : "";
    if (strlen(z) >= sizeof(zone) || !kite__gcp_zone_region(z, region, sizeof(region)))
      continue;
    snprintf(zone, sizeof(zone), "%s", z);
    size_t i;
    json_t *vm;
    json_array_foreach(json_object_get(sc, "instances"), i, vm) {
      const char *name = json_string_value(json_object_get(vm, "name"));
      if (!gce_name(name))
        continue;
      char *id = kite__sprintf("%s/%s", zone, name);
      kite_cloud_listed(call, id, metadata_of(vm, POOL_LABEL));
      free(id);
    }
  }
  const char *next = json_string_value(json_object_get(j, "nextPageToken"));
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK,
                           .next = next && *next && strlen(next) < 1024 ? next : NULL};
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void gcp_list_page(kite_cloud_call_t *call) {
  const kite__gcp_api_t *api = call->cfg->api;
  char label[64];
  bool any = strcmp(call->tag, "*") == 0;
  if (!any)
    tag_label(call->tag, label);
  char *filter = any ? kite__sprintf("labels.%s:*", POOL_LABEL)
                     : kite__sprintf("labels.%s=%s", POOL_LABEL, label);
  char *f = filter ? kite_cloud_escape(filter) : NULL;
  char *cur = call->cursor ? kite_cloud_escape(call->cursor) : NULL;
  char *url =
      f && (cur || !call->cursor)
          ? kite__sprintf("%s/projects/%s/aggregated/instances?filter=%s&maxResults=100%s%s",
                          api->url, api->project, f, cur ? "&pageToken=" : "", cur ? cur : "")
          : NULL;
  free(filter);
  free(f);
  free(cur);
  if (url == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite__gcp_send(call, "GET", url, NULL, on_listed);
  free(url);
}

/* ---- the preemption notice on the node ------------------------------------------------------ */

static char *gcp_probe(kite_cloud_t *c, const kite_cloud_cfg_t *cfg, const char *id,
                       const char *address) {
  (void)c;
  (void)id;
  const kite__gcp_api_t *api = cfg->api;
  /* "{address}" in the endpoint is the node's address (an emulator serves each node's). */
  char *ep = kite__strdup(api->metadata_endpoint);
  const char *mark = ep ? strstr(ep, "{address}") : NULL;
  if (mark) {
    char *x = kite__sprintf("%.*s%s%s", (int)(mark - ep), ep, address ? address : "",
                            mark + strlen("{address}"));
    free(ep);
    ep = x;
  }
  char *q = ep ? kite__shell_quote(ep) : NULL;
  char *cmd = q ? kite__sprintf("curl -s -m 3 -H 'Metadata-Flavor: Google' "
                                "%s/computeMetadata/v1/instance/preempted || true\n",
                                q)
                : NULL;
  free(ep);
  free(q);
  return cmd;
}

static int gcp_probe_parse(const char *out, size_t len, int64_t *deadline_ms) {
  *deadline_ms = 0;
  while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' '))
    len--;
  /* The metadata server answers TRUE once the VM is being preempted; Compute Engine stops it
   * about 30 seconds later. */
  if (len == 4 && memcmp(out, "TRUE", 4) == 0) {
    *deadline_ms = (int64_t)kite__wall_ms() + 30000;
    return KITE_PREEMPT_NOTICE;
  }
  return KITE_PREEMPT_NONE;
}

/* ---- the table ------------------------------------------------------------------------------ */

#define OTHER_ZONE                                                                                 \
  "Compute Engine has no room for this machine type in that zone now: allow other zones "          \
  "(region: [us-central1-a, us-central1-b, ...]) or another machine type"

static const kite_cloud_advice_t gcp_advice[] = {
    {"ZONE_RESOURCE_POOL_EXHAUSTED*", 0, NULL, KITE_ECAPACITY, OTHER_ZONE},
    {"RESOURCE_POOL_EXHAUSTED", 0, NULL, KITE_ECAPACITY, OTHER_ZONE},
    {"STOCKOUT", 0, NULL, KITE_ECAPACITY, OTHER_ZONE},
    {"QUOTA_EXCEEDED", 0, NULL, KITE_EQUOTA,
     "the project's quota is reached: ask for more (IAM & Admin → Quotas) or ask for fewer "
     "nodes, another region or machine type"},
    {"quotaExceeded", 0, NULL, KITE_EQUOTA,
     "the project's quota is reached: ask for more (IAM & Admin → Quotas) or ask for fewer "
     "nodes"},
    {"UNSUPPORTED_OPERATION", 0, "machine type", KITE_EUNAVAILABLE,
     "that machine type is not sold in that zone: `gcloud compute machine-types list --zones "
     "ZONE` lists those that are"},
    {"notFound", 0, "machineTypes", KITE_EUNAVAILABLE,
     "that machine type is not sold in that zone: `gcloud compute machine-types list --zones "
     "ZONE` lists those that are"},
    {"token", 0, NULL, KITE_ECREDENTIALS, "the credentials were refused: " CREDS_HELP},
    {NULL, 401, NULL, KITE_ECREDENTIALS,
     "the access token was refused: " CREDS_HELP " (GOOGLE_APPLICATION_CREDENTIALS)"},
    {"forbidden", 0, NULL, KITE_ECREDENTIALS,
     "the credentials may not do this: give the service account the Compute Instance Admin "
     "role in the project"},
    {NULL, 403, NULL, KITE_ECREDENTIALS,
     "the credentials may not do this (or the Compute Engine API is not enabled in the "
     "project): give the service account the Compute Instance Admin role"},
    {"rateLimitExceeded", 0, NULL, KITE_EAGAIN,
     "rate limited even after backing off: retry later, or run fewer kite processes on this "
     "project"},
    {"alreadyExists", 0, NULL, KITE_EPROVIDER, "a VM of that name exists in the project already"},
};

static const kite_cloud_ops_t gcp_ops = {
    .name = NAME,
    .title = "Google Compute Engine",
    .noun = "VM",
    .batch_max = 1,
    .spot = true,
    .create_token = true,
    .endpoint_hint = "api_url in the provider options or KITE_GCP_API_URL",
    .configure = gcp_configure,
    .configure_reach = gcp_configure_reach,
    .free_api = api_free,
    .create = gcp_create,
    .describe = gcp_describe,
    .destroy = gcp_destroy,
    .list_page = gcp_list_page,
    .catalog = kite__gcp_catalog,
    .probe = gcp_probe,
    .probe_parse = gcp_probe_parse,
    .advice = gcp_advice,
    .n_advice = KITE_ARRAY_SIZE(gcp_advice),
};

bool kite__gcp_configured(void) {
  if (kite_cloud_first(getenv("GOOGLE_APPLICATION_CREDENTIALS"), NULL, NULL))
    return true;
  char *adc = adc_path();
  bool yes = (adc && access(adc, R_OK) == 0) ||
             kite_cloud_first(getenv("GCE_METADATA_HOST"), NULL, NULL) || on_gce();
  free(adc);
  return yes;
}

static void free_provider(void *v) {
  kite_gcp_provider_t *p = v;
  if (p == NULL)
    return;
  kite__gcp_tokens_free(p);
  free(p->credentials_file);
  free(p->project);
  free(p->zone);
  free(p->api_url);
  free(p->billing_url);
  free(p->machine_type);
  free(p->image);
  free(p->user);
  free(p);
}

int kite_gcp_provider_new(kite_runtime_t *rt, const kite_gcp_provider_options_t *opts,
                          kite_gcp_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_gcp_provider_options_t o = {0};
  if (opts)
    o = *opts;
  kite_gcp_provider_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return KITE_ENOMEM;
  p->rt = rt;
  const char *in[] = {o.credentials_file, o.project,      o.zone,  o.api_url,
                      o.billing_url,      o.machine_type, o.image, o.ssh_user};
  char **to[] = {&p->credentials_file, &p->project,      &p->zone,  &p->api_url,
                 &p->billing_url,      &p->machine_type, &p->image, &p->user};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(in); i++)
    if (in[i] && (*to[i] = kite__strdup(in[i])) == NULL) {
      free_provider(p);
      return KITE_ENOMEM;
    }
  p->port = o.ssh_port;
  kite_cloud_options_t co = KITE_CLOUD_OPTIONS_OF(o, free_provider);
  int rc = kite_cloud_new(rt, &gcp_ops, &co, p, &p->cloud);
  if (rc != 0) {
    free_provider(p);
    return rc;
  }
  if (out)
    *out = p;
  return 0;
}
