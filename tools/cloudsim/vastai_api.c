/* The Vast.ai front of the emulator: offer search, instance create, show, list and destroy, and
 * the account's SSH keys, with the paths, field names, status codes and error bodies of Vast's
 * OpenAPI description (specs/vastai.yaml; paths relative to https://console.vast.ai, so /api/v0
 * and /api/v1 here too). Every path is accepted with and without its final '/'.
 *
 *   POST   /api/v0/bundles/          search offers: filters {field: {eq|neq|gt|lt|gte|lte|in|
 *                                    notin: v}}, type (ondemand, bid), limit, order
 *                                    → {"offers": [...]} from a fixed catalog of hosts
 *   PUT    /api/v0/asks/{id}/        create: accept offer id {image, label, disk, runtype, env,
 *                                    onstart, price (a bid: interruptible), target_state,
 *                                    cancel_unavail} → {"success": true, "new_contract": id}
 *   GET    /api/v0/instances/{id}/   {"instances": {Instance}}; 404 once it is gone
 *   GET    /api/v0/instances/        {"instances": [...]}: every instance of the account
 *   GET    /api/v1/instances/        ?select_filters=&select_cols=&order_by=&limit=&after_token=
 *                                    → {success, instances_found, total_instances,
 *                                    label_counts, next_token, instances}
 *   DELETE /api/v0/instances/{id}/   {"success": true}; listed as exited/stopped until every
 *                                    process of its node is gone
 *   GET    /api/v0/ssh/, POST /api/v0/ssh/ {ssh_key}, DELETE /api/v0/ssh/{id}/
 *
 *   POST   /_sim/vastai/instances/{id}/outbid   (control) an interruptible instance is outbid
 *   POST   /_sim/vastai/offers/{id}/fail        (control) {"status": "exited"|"unknown"|
 *                                               "offline"|null}: later launches of the offer fail
 *   GET    /_sim/vastai/state                   (control)
 *
 * An instance is a machine (machines.c) whose id is the contract id; its node carries the label
 * as its name and tag, every SSH key of the account is authorized on it, and the host key kite
 * hands over in env (-e KITE_SSH_HOST_KEY=<base64 of the private key file>
 * -e KITE_SSH_HOST_KEY_PUB=<base64 of the public key line>, which kite's onstart installs)
 * becomes the node's host key before the instance is first reported running: the emulator does
 * not run onstart, it does what kite's onstart would do.
 *
 * The status fields (the description: actual_status is the container's status, intended_status
 * the one it should have, cur_state and next_state the machine contract's):
 *   loading   actual loading, intended running, cur running, next running (node starting)
 *   running   actual running, intended running, cur running, next running
 *   outbid    actual exited, intended running, cur stopped, next stopped, status_msg "outbid: …"
 *   failed    actual exited|unknown|offline (the offer's failure), intended running, cur running
 *   crashed   actual offline, intended running, cur running (the node died: /_sim/machines/kill)
 *   destroyed actual exited, intended stopped, cur stopped, next stopped, until it is gone
 *
 * Errors are the description's {"success": false, "error", "msg"} (a 429 is {"detail"}).
 * Billing is by the second at dph_total, or at the bid for an interruptible instance. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cloudsim.h"

#define CLOUD "vastai"
#define MAX_ONSTART 4048
#define USER_ID 418201
#define PAGE_MAX 25
/* A launch that fails is reported loading for at least this long, as a real one would be. */
#define FAIL_LOADING_MS 1000

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- the catalog ---------------------------------------------------------------------------- */

typedef struct offer {
  uint64_t id; /* the ask id a create accepts */
  uint64_t machine_id, host_id, bundle_id;
  const char *gpu_name;
  int num_gpus, gpu_ram;  /* MB per GPU */
  int cpu_cores, cpu_ram; /* MB */
  double disk_space;      /* GB */
  double dph_total, min_bid;
  const char *geolocation; /* "place, CC" */
  double reliability;
  bool verified, rentable;
  double inet_down, inet_up; /* Mb/s */
  const char *cpu_name;
  double gpu_mem_bw, total_flops; /* GB/s, TFLOPS */
  int compute_cap;
} offer_t;

static const offer_t offers[] = {
    {3200101,
     14211,
     90021,
     771201,
     "RTX 4090",
     1,
     24564,
     16,
     64302,
     240,
     0.35,
     0.15,
     "Texas, US",
     0.9962,
     true,
     true,
     942.1,
     811.4,
     "AMD Ryzen 9 7950X",
     1008.0,
     82.6,
     890},
    {3200102, 14302,  90021,        771202,           "RTX 4090",
     2,       24564,  32,           128604,           500,
     0.70,    0.30,   "Quebec, CA", 0.9931,           true,
     true,    1810.5, 1702.2,       "AMD EPYC 7443P", 1008.0,
     165.2,   890},
    {3200103,
     20877,
     90344,
     771203,
     "RTX 3090",
     1,
     24576,
     8,
     32084,
     120,
     0.20,
     0.08,
     "Oregon, US",
     0.9874,
     true,
     true,
     512.3,
     498.7,
     "Intel Core i9-10900K",
     936.2,
     35.6,
     860},
    {3200104,         31140,  90512,  771204, "A100 SXM4", 1,
     81920,           30,     225280, 400,    1.10,        0.45,
     "Hesse, DE",     0.9981, true,   true,   4712.9,      4290.3,
     "AMD EPYC 7J13", 2039.0, 19.5,   800},
    {3200105,
     31201,
     90512,
     771205,
     "A100 PCIE",
     1,
     40960,
     16,
     112640,
     200,
     0.78,
     0.31,
     "Stockholm, SE",
     0.9702,
     false,
     true,
     920.4,
     870.0,
     "Intel Xeon Gold 6338",
     1555.0,
     19.5,
     800},
    {3200106,
     40001,
     90777,
     771206,
     "H100 SXM",
     8,
     81559,
     192,
     2063912,
     3000,
     19.60,
     10.40,
     "Virginia, US",
     0.9990,
     true,
     true,
     9410.2,
     9120.6,
     "Intel Xeon Platinum 8480+",
     3352.0,
     534.4,
     900},
    {3200107, 20915, 90344,         771207, "RTX 3090", 4,     24576, 48,    257432,          1000,
     0.84,    0.34,  "Ontario, CA", 0.9815, true,       false, 870.6, 760.8, "AMD EPYC 7302", 936.2,
     142.4,   860},
    {3200108,         31288,  90611, 771208, "RTX A6000", 1,
     49140,           14,     96480, 300,    0.47,        0.20,
     "Stockholm, SE", 0.9933, true,  true,   1620.0,      1580.4,
     "AMD EPYC 7413", 768.0,  38.7,  860},
};

static const offer_t *offer_find(uint64_t id) {
  for (size_t i = 0; i < COUNT(offers); i++)
    if (offers[i].id == id)
      return &offers[i];
  return NULL;
}

/* ---- the account ---------------------------------------------------------------------------- */

typedef struct vast_key {
  uint64_t id;
  char *key;
  char created_at[32];
  struct vast_key *next; /* oldest first */
} vast_key_t;

/* What the front keeps of an instance beside its machine; dropped once the machine is gone. */
typedef struct inst {
  uint64_t id; /* its machine's */
  const offer_t *offer;
  char *label, *image, *runtype, *onstart;
  bool is_bid;
  double dph;        /* what it costs per hour: dph_total, or the bid */
  double disk;       /* GB */
  double start_date; /* epoch seconds */
  uint64_t created_ms;
  char address[64]; /* its node's loopback address, from the create on */
  char fail[16];    /* its offer's failure when it was launched, or "" */
  bool outbid, destroyed;
  struct inst *next; /* oldest first */
} inst_t;

static struct {
  vast_key_t *keys;
  uint64_t next_key_id;
  inst_t *insts;
  char fail[COUNT(offers)][16]; /* per offer: how its launches fail, or "" */
  uint64_t cur_ask;             /* the offer of the create being admitted */
} vs = {.next_key_id = 61001};

/* ---- small things --------------------------------------------------------------------------- */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool parse_id(const char *s, uint64_t *id) {
  char *end = NULL;
  if (s == NULL || !isdigit((unsigned char)*s))
    return false;
  *id = strtoull(s, &end, 10);
  return *end == '\0';
}

/* The two-letter country code of a "place, CC" geolocation. */
static const char *country_of(const char *geo) {
  const char *c = strrchr(geo, ',');
  return c ? c + 1 + (c[1] == ' ') : geo;
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

/* j as compact JSON text (malloc'd), j released; prices to ten significant digits, so 0.35 reads
 * 0.35. */
static char *dump(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(10));
  json_decref(j);
  return s;
}

/* ---- errors --------------------------------------------------------------------------------- */

/* The description's error body, {"success": false, "error", "msg"}; a 429 is {"detail"}. */
static void vast_error(http_resp_t *resp, int status, const char *code, const char *message) {
  json_t *j = status == 429
                  ? json_pack("{s:s}", "detail", message)
                  : json_pack("{s:b, s:s, s:s}", "success", 0, "error", code, "msg", message);
  http_json(resp, status, dump(j));
}

/* A create's refusal: the error body with the offer's ask_id. */
static void ask_error(http_resp_t *resp, int status, const char *code, uint64_t ask,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void ask_error(http_resp_t *resp, int status, const char *code, uint64_t ask,
                      const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  http_json(resp, status,
            dump(json_pack("{s:b, s:s, s:s, s:I}", "success", 0, "error", code, "msg", msg,
                           "ask_id", (json_int_t)ask)));
}

static void no_such_ask(http_resp_t *resp, int status, uint64_t ask) {
  if (status == 410)
    ask_error(resp, 410, "no_such_ask", ask,
              "error 410/3907: no_such_ask Instance type %llu is no longer available.",
              (unsigned long long)ask);
  else
    ask_error(resp, 404, "invalid_args", ask,
              "error 404/3603: no_such_ask Instance type by id %llu is not available.",
              (unsigned long long)ask);
}

static void instance_not_found(http_resp_t *resp) {
  vast_error(resp, 404, "not_found", "Instance not found");
}

/* ---- instances ------------------------------------------------------------------------------ */

static void inst_free(inst_t *v) {
  free(v->label);
  free(v->image);
  free(v->runtype);
  free(v->onstart);
  free(v);
}

/* Forgets the instances whose machines are gone (deleted, or vanished when killed). */
static void prune(sim_t *sim) {
  for (inst_t **pp = &vs.insts; *pp;) {
    inst_t *v = *pp;
    if (machine_find_of(sim, v->id, CLOUD) == NULL) {
      *pp = v->next;
      inst_free(v);
    } else {
      pp = &v->next;
    }
  }
}

static inst_t *inst_find(sim_t *sim, uint64_t id) {
  prune(sim);
  for (inst_t *v = vs.insts; v; v = v->next)
    if (v->id == id)
      return v;
  return NULL;
}

typedef struct status {
  const char *actual, *intended, *cur, *next;
  char msg[256];
} status_t;

static void set_status(status_t *s, const char *actual, const char *intended, const char *cur,
                       const char *next) {
  s->actual = actual;
  s->intended = intended;
  s->cur = cur;
  s->next = next;
}

/* The instance's status fields, from its machine's state and what happened to it. */
static void inst_status(const inst_t *v, const machine_t *m, status_t *s) {
  if (v->destroyed || m->state == M_DELETING) {
    set_status(s, "exited", "stopped", "stopped", "stopped");
    snprintf(s->msg, sizeof(s->msg),
             "destroying: the instance is destroyed, its container is "
             "being removed");
  } else if (v->outbid) {
    set_status(s, "exited", "running", "stopped", "stopped");
    snprintf(s->msg, sizeof(s->msg),
             "outbid: a higher bid took the machine; the interruptible instance is stopped");
  } else if (v->fail[0] && (m->state != M_OFF || now_ms() - v->created_ms < FAIL_LOADING_MS)) {
    set_status(s, "loading", "running", "running", "running");
    snprintf(s->msg, sizeof(s->msg), "loading: creating the container for %s", v->image);
  } else if (v->fail[0]) {
    set_status(s, v->fail, "running", "running", "running");
    snprintf(s->msg, sizeof(s->msg),
             strcmp(v->fail, "exited") == 0 ? "Error: the container exited while starting"
             : strcmp(v->fail, "offline") == 0
                 ? "the host machine is offline"
                 : "the host stopped reporting the container's state");
  } else if (m->state == M_PROVISIONING) {
    set_status(s, "loading", "running", "running", "running");
    snprintf(s->msg, sizeof(s->msg), "loading: creating the container for %s", v->image);
  } else if (m->state == M_RUNNING) {
    set_status(s, "running", "running", "running", "running");
    snprintf(s->msg, sizeof(s->msg), "success, running %s/%s", v->image, v->runtype);
  } else {
    set_status(s, "offline", "running", "running", "running");
    snprintf(s->msg, sizeof(s->msg), "the host machine is offline");
  }
}

/* The description's Instance (GET /api/v0/instances/{id}/ and the lists' items). ports has the
 * Docker shape of /api/v1/instances (the Instance schema's "array of integers" is not what Vast
 * answers); it is {} until the instance runs. extra_env is left out: its two schemas disagree,
 * and it would carry the host key. */
static json_t *inst_json(sim_t *sim, const inst_t *v, const machine_t *m) {
  const offer_t *o = v->offer;
  status_t s;
  inst_status(v, m, &s);
  bool running = strcmp(s.actual, "running") == 0;
  char port[16];
  snprintf(port, sizeof(port), "%u", sim->ssh_port);
  json_t *ports =
      running ? json_pack("{s:[{s:s, s:s}]}", "22/tcp", "HostIp", "0.0.0.0", "HostPort", port)
              : json_object();
  double now = (double)now_ms() / 1000.0;
  double dph_base = v->is_bid ? v->dph : o->dph_total;
  json_t *j = json_pack(
      "{s:I, s:s, s:s, s:s, s:s, s:o, s:n, s:n, s:n, s:s, s:[], s:s, s:s, s:s, s:s, s:s, s:s, "
      "s:i, s:i}",
      "id", (json_int_t)v->id, "actual_status", s.actual, "intended_status", s.intended,
      "cur_state", s.cur, "next_state", s.next, "label",
      v->label ? json_string(v->label) : json_null(), "template_id", "template_hash_id",
      "template_name", "image_uuid", v->image, "image_args", "image_runtype", v->runtype, "onstart",
      v->onstart ? v->onstart : "", "status_msg", s.msg, "public_ipaddr", v->address,
      "local_ipaddrs", v->address, "ssh_host", v->address, "ssh_port", (int)sim->ssh_port,
      "machine_dir_ssh_port", (int)sim->ssh_port);
  json_object_update_new(
      j, json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:n, s:f, s:s, s:i, s:f, s:s, s:i, s:s, "
                   "s:s, s:i, s:i, s:f, s:i, s:f, s:i}",
                   "ssh_idx", "", "machine_id", (json_int_t)o->machine_id, "host_id",
                   (json_int_t)o->host_id, "bundle_id", (json_int_t)o->bundle_id, "start_date",
                   v->start_date, "end_date", v->start_date + 30 * 86400.0, "uptime_mins",
                   "duration", now - v->start_date, "cpu_arch", "amd64", "cpu_cores", o->cpu_cores,
                   "cpu_cores_effective", (double)o->cpu_cores, "cpu_name", o->cpu_name, "cpu_ram",
                   o->cpu_ram, "gpu_name", o->gpu_name, "gpu_arch", "nvidia", "gpu_totalram",
                   o->gpu_ram, "gpu_ram", o->gpu_ram, "gpu_frac", 1.0, "num_gpus", o->num_gpus,
                   "gpu_mem_bw", o->gpu_mem_bw, "gpu_lanes", 16));
  json_object_update_new(
      j, json_pack("{s:f, s:f, s:s, s:f, s:i, s:i, s:i, s:o, s:b, s:s, s:s, s:s, s:b, s:i, s:f, "
                   "s:b, s:f, s:f, s:f, s:s, s:f, s:f}",
                   "disk_space", v->disk, "disk_bw", 2400.0, "disk_name", "NVMe SSD", "bw_nvlink",
                   0.0, "direct_port_count", 1, "direct_port_start", (int)sim->ssh_port,
                   "direct_port_end", (int)sim->ssh_port, "ports", ports, "static_ip", 1,
                   "geolocation", o->geolocation, "country_code", country_of(o->geolocation),
                   "verification", o->verified ? "verified" : "unverified", "rentable", o->rentable,
                   "hosting_type", 0, "min_bid", o->min_bid, "is_bid", v->is_bid, "dph_base",
                   dph_base, "dph_total", v->dph, "reliability2", o->reliability, "os_version",
                   "22.04", "total_flops", o->total_flops, "inet_down", o->inet_down));
  json_object_update_new(
      j, json_pack("{s:f, s:{s:f, s:f, s:f, s:i, s:f}, s:{s:f, s:f, s:f, s:i, s:f}, s:f, s:f, "
                   "s:n, s:n, s:f, s:f, s:f, s:b, s:s, s:s, s:[]}",
                   "inet_up", o->inet_up, "search", "gpuCostPerHour", dph_base, "diskHour", 0.0,
                   "totalHour", v->dph, "discountTotalHour", 0, "discountedTotalPerHour", v->dph,
                   "instance", "gpuCostPerHour", running ? dph_base : 0.0, "diskHour", 0.0,
                   "totalHour", running ? v->dph : 0.0, "discountTotalHour", 0,
                   "discountedTotalPerHour", running ? v->dph : 0.0, "storage_cost", 0.15,
                   "storage_total_cost", 0.0, "credit_balance", "credit_discount",
                   "credit_discount_max", 0.4, "client_run_time", (now - v->start_date) / 3600.0,
                   "host_run_time", 2592000.0, "external", 0, "time_remaining", "",
                   "time_remaining_isbid", "", "volume_info"));
  return j;
}

/* The instance's node tag (so a test can count what runs for it): its label, or, for a label
 * written GROUP:NAME (as kite writes "POOL-TAG:NAME"), the group. */
static const char *node_tag_of(const char *label, char *buf, size_t cap) {
  if (label == NULL || *label == '\0')
    return "kite-cloudsim-vastai";
  const char *colon = strchr(label, ':');
  if (colon == NULL || colon == label || (size_t)(colon - label) >= cap)
    return label;
  memcpy(buf, label, (size_t)(colon - label));
  buf[colon - label] = '\0';
  return buf;
}

/* ---- env and the host key ------------------------------------------------------------------- */

/* The value of "-e NAME=value" in a Docker-flag env string (malloc'd), or NULL. Tokens are
 * separated by white space; quotes are not interpreted. */
static char *env_value(const char *env, const char *name) {
  size_t nl = strlen(name);
  const char *p = env;
  bool after_e = false;
  while (p && *p) {
    while (isspace((unsigned char)*p))
      p++;
    size_t n = strcspn(p, " \t\r\n");
    if (n == 0)
      break;
    if (after_e && n > nl && strncmp(p, name, nl) == 0 && p[nl] == '=')
      return strndup(p + nl + 1, n - nl - 1);
    after_e = (n == 2 && strncmp(p, "-e", 2) == 0) || (n == 5 && strncmp(p, "--env", 5) == 0);
    p += n;
  }
  return NULL;
}

/* The cloud-config that makes the env's host key the node's (machines.c installs its ssh_keys'
 * ed25519 pair before the machine runs); *out NULL when env hands over no key. False when it
 * hands over one that is not an OpenSSH ed25519 pair. */
static bool host_key_user_data(const char *env, char **out) {
  *out = NULL;
  char *b64 = env ? env_value(env, "KITE_SSH_HOST_KEY") : NULL;
  char *b64pub = env ? env_value(env, "KITE_SSH_HOST_KEY_PUB") : NULL;
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

/* ---- offers --------------------------------------------------------------------------------- */

/* An offer as the search answers it; in a "bid" search its price is the minimum bid. */
static json_t *offer_json(const offer_t *o, bool bid) {
  double dph = bid ? o->min_bid : o->dph_total;
  json_t *j = json_pack(
      "{s:I, s:I, s:I, s:n, s:f, s:i, s:s, s:i, s:f, s:f, s:s, s:i, s:f, s:i, s:f, s:s, s:f, "
      "s:f, s:f, s:f, s:s}",
      "id", (json_int_t)o->id, "ask_contract_id", (json_int_t)o->id, "bundle_id",
      (json_int_t)o->bundle_id, "bundled_results", "bw_nvlink", 0.0, "compute_cap", o->compute_cap,
      "cpu_arch", "amd64", "cpu_cores", o->cpu_cores, "cpu_cores_effective", (double)o->cpu_cores,
      "cpu_ghz", 3.2, "cpu_name", o->cpu_name, "cpu_ram", o->cpu_ram, "cuda_max_good", 12.4,
      "direct_port_count", 64, "disk_bw", 2400.0, "disk_name", "NVMe SSD", "disk_space",
      o->disk_space, "dlperf", o->total_flops * 1.1, "dlperf_per_dphtotal",
      o->total_flops * 1.1 / dph, "dph_base", dph, "driver_version", "550.54.14");
  json_object_update_new(
      j,
      json_pack("{s:f, s:f, s:f, s:b, s:f, s:s, s:s, s:i, s:b, s:f, s:i, s:s, s:i, s:i, s:f, "
                "s:i, s:I, s:n, s:f, s:f, s:f, s:f}",
                "dph_total", dph, "duration", 2592000.0, "end_date", 1893456000.0, "external", 0,
                "flops_per_dphtotal", o->total_flops / dph, "geolocation", o->geolocation,
                "gpu_arch", "nvidia", "gpu_ram", o->gpu_ram, "gpu_display_active", 0, "gpu_frac",
                1.0, "gpu_lanes", 16, "gpu_name", o->gpu_name, "gpu_total_ram",
                o->gpu_ram * o->num_gpus, "has_avx", 1, "gpu_mem_bw", o->gpu_mem_bw, "hosting_type",
                0, "host_id", (json_int_t)o->host_id, "hostname", "inet_down", o->inet_down,
                "inet_down_cost", 0.004, "inet_up", o->inet_up, "inet_up_cost", 0.004));
  json_object_update_new(
      j,
      json_pack("{s:b, s:I, s:f, s:s, s:i, s:s, s:i, s:f, s:f, s:f, s:b, s:b, s:f, s:b, "
                "s:f, s:f, s:f, s:s, s:b, s:i, s:b, s:n, s:s, s:{s:f, s:f, s:f, s:i, s:f}, "
                "s:s, s:s}",
                "is_bid", bid, "machine_id", (json_int_t)o->machine_id, "min_bid", o->min_bid,
                "mobo_name", "ROMED8-2T", "num_gpus", o->num_gpus, "os_version", "22.04", "pci_gen",
                4, "pcie_bw", 24.6, "reliability", o->reliability, "reliability2", o->reliability,
                "rentable", o->rentable, "rented", 0, "score", o->total_flops * o->reliability,
                "static_ip", 1, "start_date", 1761000000.0, "storage_cost", 0.15, "total_flops",
                o->total_flops, "verification", o->verified ? "verified" : "unverified", "verified",
                o->verified, "vericode", o->verified ? 1 : 0, "vms_enabled", 0, "webpage",
                "public_ipaddr", "127.0.0.1", "search", "gpuCostPerHour", dph, "diskHour", 0.0,
                "totalHour", dph, "discountTotalHour", 0, "discountedTotalPerHour", dph,
                "time_remaining", "", "time_remaining_isbid", ""));
  json_object_set_new(j, "storage_total_cost", json_real(0.0));
  json_object_set_new(j, "vram_costperhour", json_real(dph / (o->gpu_ram * o->num_gpus)));
  return j;
}

/* Whether two JSON values are equal for a filter: gpu names with '_' for ' ' and in any case
 * (Vast's CLI writes RTX_4090), a geolocation by its country code or whole. */
static bool value_eq(const char *field, json_t *have, json_t *want) {
  if (json_is_number(have) && json_is_number(want))
    return fabs(json_number_value(have) - json_number_value(want)) < 1e-9;
  if (json_is_boolean(have) || json_is_boolean(want)) {
    bool w = json_is_boolean(want) ? json_is_true(want)
                                   : json_is_integer(want) && json_integer_value(want) != 0;
    bool h = json_is_boolean(have) ? json_is_true(have)
                                   : json_is_integer(have) && json_integer_value(have) != 0;
    return (json_is_boolean(want) || json_is_integer(want)) && h == w;
  }
  if (!json_is_string(have) || !json_is_string(want))
    return json_is_null(have) && json_is_null(want);
  const char *h = json_string_value(have), *w = json_string_value(want);
  if (strcmp(field, "geolocation") == 0 && strcasecmp(country_of(h), w) == 0)
    return true;
  if (strcmp(field, "gpu_name") == 0) {
    for (; *h && *w; h++, w++) {
      char a = *h == '_' ? ' ' : (char)tolower((unsigned char)*h);
      char b = *w == '_' ? ' ' : (char)tolower((unsigned char)*w);
      if (a != b)
        return false;
    }
    return *h == *w;
  }
  return strcmp(h, w) == 0;
}

/* Orders two JSON values: null first, then numbers (and booleans), then strings. */
static int value_cmp(json_t *a, json_t *b) {
  int ra = json_is_null(a) || a == NULL ? 0 : json_is_string(a) ? 2 : 1;
  int rb = json_is_null(b) || b == NULL ? 0 : json_is_string(b) ? 2 : 1;
  if (ra != rb || ra == 0)
    return ra - rb;
  if (ra == 2)
    return strcmp(json_string_value(a), json_string_value(b));
  double x = json_is_boolean(a) ? json_is_true(a) : json_number_value(a);
  double y = json_is_boolean(b) ? json_is_true(b) : json_number_value(b);
  return x < y ? -1 : x > y;
}

/* Whether value have of field satisfies ops ({op: value…}, all of them; a bare value is eq);
 * *err names what was wrong with ops, else stays NULL. */
static bool ops_match(const char *field, json_t *have, json_t *ops, const char **err) {
  if (!json_is_object(ops))
    return value_eq(field, have, ops);
  const char *op;
  json_t *w;
  bool all = true;
  json_object_foreach(ops, op, w) {
    bool m;
    if (strcmp(op, "eq") == 0 || strcmp(op, "neq") == 0) {
      m = value_eq(field, have, w) == (op[0] == 'e');
    } else if (strcmp(op, "in") == 0 || strcmp(op, "notin") == 0) {
      if (!json_is_array(w)) {
        *err = "the operators in and notin take a list";
        return false;
      }
      bool found = false;
      for (size_t i = 0; i < json_array_size(w) && !found; i++)
        found = value_eq(field, have, json_array_get(w, i));
      m = found == (op[0] == 'i');
    } else if (strcmp(op, "gt") == 0 || strcmp(op, "gte") == 0 || strcmp(op, "lt") == 0 ||
               strcmp(op, "lte") == 0) {
      if (!json_is_number(w) && !json_is_string(w)) {
        *err = "the operators gt, gte, lt and lte take a number";
        return false;
      }
      int c = have == NULL || json_is_null(have) ? 0 : value_cmp(have, w);
      bool comparable = have && !json_is_null(have) && json_is_string(have) == json_is_string(w);
      m = comparable && (op[0] == 'g' ? (op[2] ? c >= 0 : c > 0) : (op[2] ? c <= 0 : c < 0));
    } else {
      *err = "unknown operator: the operators are eq, neq, gt, gte, lt, lte, in and notin";
      return false;
    }
    all = all && m;
  }
  return all;
}

/* The keys of a search body that are not filters. */
static bool search_setting(const char *k) {
  return strcmp(k, "type") == 0 || strcmp(k, "limit") == 0 || strcmp(k, "order") == 0 ||
         strcmp(k, "allocated_storage") == 0;
}

typedef struct order {
  const char *col[8];
  bool desc[8];
  size_t n;
} order_t;

/* Orders rows a and b by the columns of o, then by id ascending. */
static int rows_cmp(const order_t *o, json_t *a, json_t *b) {
  for (size_t i = 0; i < o->n; i++) {
    int c = value_cmp(json_object_get(a, o->col[i]), json_object_get(b, o->col[i]));
    if (c)
      return o->desc[i] ? -c : c;
  }
  return value_cmp(json_object_get(a, "id"), json_object_get(b, "id"));
}

static void sort_rows(const order_t *o, json_t **v, size_t n) {
  for (size_t i = 1; i < n; i++) /* insertion: a handful of rows */
    for (size_t j = i; j > 0 && rows_cmp(o, v[j - 1], v[j]) > 0; j--) {
      json_t *t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
}

static void search_error(http_resp_t *resp, const char *msg) {
  http_json(resp, 400, dump(json_pack("{s:s, s:s}", "error", "invalid_request", "msg", msg)));
}

/* POST /api/v0/bundles/. Unless the body says otherwise the search has Vast's defaults:
 * verified, rentable and not rented (which no offer ever is: an emulated host has room for
 * every contract). Filters on fields an offer does not have are ignored. */
static void offers_search(const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : json_object();
  if (!json_is_object(body)) {
    json_decref(body);
    search_error(resp, "Invalid json body");
    return;
  }
  json_t *type = json_object_get(body, "type"), *limit = json_object_get(body, "limit");
  const char *ts = type ? json_string_value(type) : "ondemand";
  bool bid = ts && strcmp(ts, "bid") == 0;
  order_t o = {.col = {"score"}, .desc = {true}, .n = 1};
  json_t *order = json_object_get(body, "order");
  const char *err = NULL;
  if (ts == NULL || (!bid && strcmp(ts, "ondemand") != 0 && strcmp(ts, "on-demand") != 0 &&
                     strcmp(ts, "reserved") != 0))
    err = "type must be ondemand, bid or reserved";
  else if (limit && (!json_is_integer(limit) || json_integer_value(limit) < 0))
    err = "limit must be a positive integer";
  else if (order && (!json_is_array(order) || json_array_size(order) > COUNT(o.col)))
    err = "order must be a list of [field, direction] pairs";
  for (size_t i = 0; err == NULL && order && i < json_array_size(order); i++) {
    json_t *e = json_array_get(order, i);
    const char *f = json_string_value(json_array_get(e, 0));
    const char *d = json_string_value(json_array_get(e, 1));
    if (!json_is_array(e) || json_array_size(e) != 2 || f == NULL || d == NULL)
      err = "order must be a list of [field, direction] pairs";
    o.col[i] = f;
    o.desc[i] = d && strcmp(d, "desc") == 0;
    o.n = i + 1;
  }
  if (order && json_array_size(order) == 0)
    o.n = 0;
  json_t *rows[COUNT(offers)];
  size_t n = 0;
  for (size_t i = 0; err == NULL && i < COUNT(offers); i++) {
    json_t *j = offer_json(&offers[i], bid);
    bool ok = true;
    static const char *const defaults[][2] = {{"verified", "true"}, {"rentable", "true"}};
    for (size_t d = 0; d < COUNT(defaults); d++)
      if (json_object_get(body, defaults[d][0]) == NULL)
        ok = ok && json_is_true(json_object_get(j, defaults[d][0]));
    const char *k;
    json_t *ops;
    json_object_foreach(body, k, ops) {
      json_t *have = json_object_get(j, k);
      if (!search_setting(k) && have && !ops_match(k, have, ops, &err))
        ok = false;
    }
    if (ok && err == NULL)
      rows[n++] = j;
    else
      json_decref(j);
  }
  if (err) {
    for (size_t i = 0; i < n; i++)
      json_decref(rows[i]);
    search_error(resp, err);
    json_decref(body);
    return;
  }
  sort_rows(&o, rows, n);
  size_t max = limit ? (size_t)json_integer_value(limit) : n;
  json_t *list = json_array();
  for (size_t i = 0; i < n; i++)
    if (i < max)
      json_array_append_new(list, rows[i]);
    else
      json_decref(rows[i]);
  http_json(resp, 200, dump(json_pack("{s:o}", "offers", list)));
  json_decref(body);
}

/* ---- create --------------------------------------------------------------------------------- */

static bool runtype_known(const char *r) {
  static const char *const known[] = {"ssh",        "jupyter",       "args",          "ssh_proxy",
                                      "ssh_direct", "jupyter_proxy", "jupyter_direct"};
  for (size_t i = 0; i < COUNT(known); i++)
    if (strcmp(known[i], r) == 0)
      return true;
  return false;
}

/* The account's keys: the newest as the node's own, the others (newline-joined, malloc'd) in
 * *more; NULL when there is none. */
static const char *account_keys(char **more) {
  *more = NULL;
  const char *newest = NULL;
  for (vast_key_t *k = vs.keys; k; k = k->next) {
    if (newest) {
      char *m = sim_sprintf("%s%s\n", *more ? *more : "", newest);
      free(*more);
      *more = m;
    }
    newest = k->key;
  }
  return newest;
}

typedef struct create_args {
  const offer_t *offer;
  const char *image, *label, *runtype, *onstart;
  double disk, price;
  bool is_bid, cancel_unavail;
  char *user_data; /* the host key's cloud-config, or NULL */
} create_args_t;

/* Reads and checks a create's body; false with resp set. */
static bool create_args(json_t *body, const offer_t *o, create_args_t *a, http_resp_t *resp) {
  memset(a, 0, sizeof(*a));
  a->offer = o;
  json_t *image = json_object_get(body, "image"), *label = json_object_get(body, "label");
  json_t *runtype = json_object_get(body, "runtype"), *onstart = json_object_get(body, "onstart");
  json_t *price = json_object_get(body, "price"), *disk = json_object_get(body, "disk");
  json_t *env = json_object_get(body, "env"), *target = json_object_get(body, "target_state");
  json_t *cancel = json_object_get(body, "cancel_unavail");
  a->image = json_string_value(image);
  a->label = json_string_value(label);
  a->runtype = runtype ? json_string_value(runtype) : "ssh";
  a->onstart = json_string_value(onstart);
  a->disk = disk ? json_number_value(disk) : 10.0;
  a->is_bid = price != NULL && !json_is_null(price);
  a->price = a->is_bid ? json_number_value(price) : o->dph_total;
  a->cancel_unavail = cancel ? json_is_true(cancel) : !a->is_bid;
  uint64_t ask = o->id;
  if (a->image == NULL || *a->image == '\0')
    ask_error(resp, 400, "invalid_args", ask, "error 400: Invalid args: 'image' is required");
  else if (label && !json_is_null(label) && a->label == NULL)
    ask_error(resp, 400, "invalid_args", ask, "error 400: Invalid args: 'label' must be a string");
  else if (a->runtype == NULL || !runtype_known(a->runtype))
    ask_error(resp, 400, "invalid_args", ask,
              "error 400: Invalid args: runtype must be one of ssh, jupyter, args, ssh_proxy, "
              "ssh_direct, jupyter_proxy, jupyter_direct");
  else if (onstart && !json_is_null(onstart) && a->onstart == NULL)
    ask_error(resp, 400, "invalid_args", ask,
              "error 400: Invalid args: 'onstart' must be a string");
  else if (a->onstart && strlen(a->onstart) > MAX_ONSTART)
    ask_error(resp, 400, "invalid_args", ask,
              "error 400: Invalid args: onstart is %zu characters, at most %d are allowed "
              "(gzip and base64 a longer script)",
              strlen(a->onstart), MAX_ONSTART);
  else if (disk && (!json_is_number(disk) || a->disk <= 0))
    ask_error(resp, 400, "invalid_args", ask, "error 400: Invalid args: 'disk' must be a number");
  else if (env && !json_is_null(env) && !json_is_string(env))
    ask_error(resp, 400, "invalid_args", ask,
              "error 400: Invalid args: 'env' must be a string of Docker flags");
  else if (target && !json_is_null(target) &&
           (!json_is_string(target) || strcmp(json_string_value(target), "running") != 0))
    ask_error(resp, 400, "invalid_args", ask,
              "error 400: Invalid args: kite-cloudsim starts every instance it creates "
              "(target_state running)");
  else if (a->is_bid && (!json_is_number(price) || a->price < 0.001 || a->price > 128.0))
    ask_error(resp, 400, "invalid_price", ask,
              "error 400: Invalid price: a bid is a number of $/hour from 0.001 to 128");
  else if (a->is_bid && a->price + 1e-9 < o->min_bid)
    ask_error(resp, 400, "invalid_price", ask,
              "error 400: Invalid price: the bid %.4f $/hour is below the offer's minimum bid "
              "%.4f $/hour",
              a->price, o->min_bid);
  else if (vs.keys == NULL)
    ask_error(resp, 400, "no_ssh_key_for_vm", ask,
              "error 400: no_ssh_key_for_vm: the account has no SSH key; register one first "
              "(kite-cloudsim emulates instances reached by SSH only)");
  else if (!host_key_user_data(json_string_value(env), &a->user_data))
    ask_error(resp, 400, "invalid_args", ask,
              "error 400: Invalid args: KITE_SSH_HOST_KEY and KITE_SSH_HOST_KEY_PUB must be the "
              "base64 of an OpenSSH ed25519 private key file and of its public key line");
  else
    return true;
  return false;
}

static void instance_create(sim_t *sim, const char *idp, const http_req_t *req, http_resp_t *resp) {
  uint64_t ask = 0;
  const offer_t *o = parse_id(idp, &ask) ? offer_find(ask) : NULL;
  size_t oi = o ? (size_t)(o - offers) : 0;
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  create_args_t a = {0};
  if (!json_is_object(body)) {
    ask_error(resp, 400, "invalid_args", ask, "error 400: Invalid json body");
  } else if (o == NULL || !o->rentable) {
    no_such_ask(resp, 404, ask);
  } else if (create_args(body, o, &a, resp)) {
    vs.cur_ask = ask;
    prune(sim);
    if (sim->faults.no_capacity && a.cancel_unavail) {
      no_such_ask(resp, 410, ask);
    } else if (sim_admit(sim, &vastai_front, machine_count_of(sim, CLOUD), 1, o->gpu_name,
                         o->geolocation, a.is_bid, resp)) {
      char *more = NULL;
      const char *key = account_keys(&more);
      char *name = a.label && *a.label
                       ? strdup(a.label)
                       : sim_sprintf("C.%llu", (unsigned long long)sim->next_machine_id);
      char group[256];
      const char *tags[1] = {node_tag_of(a.label, group, sizeof(group))};
      machine_opts_t mo = {.cloud = CLOUD,
                           .name = name,
                           .tags = tags,
                           .tag_n = 1,
                           .node_tag = tags[0],
                           .region = o->geolocation,
                           .size = o->gpu_name,
                           .image = a.image,
                           .user_data = a.user_data,
                           .authorized_key = key,
                           .more_authorized_keys = more,
                           .price_hourly = a.price,
                           .spot = a.is_bid};
      machine_t *m = machine_create(sim, &mo);
      inst_t *v = m ? calloc(1, sizeof(*v)) : NULL;
      if (v == NULL) {
        if (m)
          machine_delete(m);
        vast_error(resp, 500, "server_error", "the instance could not be created");
      } else {
        v->id = m->id;
        v->offer = o;
        v->label = a.label ? strdup(a.label) : NULL;
        v->image = strdup(a.image);
        v->runtype = strdup(a.runtype);
        v->onstart = a.onstart ? strdup(a.onstart) : NULL;
        v->is_bid = a.is_bid;
        v->dph = a.price;
        v->disk = a.disk;
        v->created_ms = now_ms();
        v->start_date = (double)v->created_ms / 1000.0;
        snprintf(v->address, sizeof(v->address), "%s", machine_node_address(m));
        snprintf(v->fail, sizeof(v->fail), "%s", vs.fail[oi]);
        inst_t **pp = &vs.insts;
        while (*pp)
          pp = &(*pp)->next;
        *pp = v;
        fprintf(stderr, "kite-cloudsim: vastai instance %llu (%s) created from offer %llu%s%s\n",
                (unsigned long long)m->id, m->name, (unsigned long long)ask,
                v->is_bid ? ", interruptible" : "", v->fail[0] ? ", to fail" : "");
        if (v->fail[0])
          machine_kill(m, false); /* it never runs */
        http_json(resp, 200,
                  dump(json_pack("{s:b, s:I}", "success", 1, "new_contract", (json_int_t)m->id)));
      }
      free(name);
      free(more);
    }
  }
  free(a.user_data);
  json_decref(body);
}

/* ---- show, list, destroy -------------------------------------------------------------------- */

static void instance_show(sim_t *sim, const char *idp, http_resp_t *resp) {
  uint64_t id;
  if (!parse_id(idp, &id)) {
    vast_error(resp, 400, "invalid_args", "invalid instance_id");
    return;
  }
  inst_t *v = inst_find(sim, id);
  if (v == NULL) {
    /* What Vast answers for an id the account does not have (a destroyed instance, say); the
     * description gives this endpoint no answer for it. */
    http_json(resp, 200, strdup("{\"instances\": null}"));
    return;
  }
  json_t *j = inst_json(sim, v, machine_find_of(sim, id, CLOUD));
  http_json(resp, 200, dump(json_pack("{s:o}", "instances", j)));
}

static void instance_destroy(sim_t *sim, const char *idp, http_resp_t *resp) {
  uint64_t id;
  if (!parse_id(idp, &id)) {
    vast_error(resp, 400, "invalid_args", "invalid instance_id");
    return;
  }
  inst_t *v = inst_find(sim, id);
  if (v == NULL) {
    instance_not_found(resp);
    return;
  }
  machine_t *m = machine_find_of(sim, id, CLOUD);
  if (!v->destroyed)
    fprintf(stderr, "kite-cloudsim: vastai instance %llu (%s) destroyed\n", (unsigned long long)id,
            m->name);
  v->destroyed = true;
  machine_delete(m);
  http_json(resp, 200, dump(json_pack("{s:b, s:s}", "success", 1, "msg", "destroying instance")));
}

static void instances_list_v0(sim_t *sim, http_resp_t *resp) {
  prune(sim);
  json_t *list = json_array();
  for (inst_t *v = vs.insts; v; v = v->next)
    json_array_append_new(list, inst_json(sim, v, machine_find_of(sim, v->id, CLOUD)));
  http_json(resp, 200, dump(json_pack("{s:o}", "instances", list)));
}

/* The columns /api/v1/instances filters on: those of the contract record. dph_total, num_gpus
 * and the other computed ones are refused, as the description says. */
static bool filterable(const char *col) {
  static const char *const cols[] = {"id",
                                     "label",
                                     "actual_status",
                                     "intended_status",
                                     "cur_state",
                                     "next_state",
                                     "gpu_name",
                                     "verification",
                                     "machine_id",
                                     "host_id",
                                     "bundle_id",
                                     "image_uuid",
                                     "image_runtype",
                                     "is_bid",
                                     "geolocation",
                                     "public_ipaddr",
                                     "start_date"};
  for (size_t i = 0; i < COUNT(cols); i++)
    if (strcmp(cols[i], col) == 0)
      return true;
  return false;
}

static void v1_error(http_resp_t *resp, const char *code, const char *msg) {
  http_json(resp, 400, dump(json_pack("{s:s, s:s}", "error", code, "msg", msg)));
}

/* A query parameter's JSON (new reference), def's when it is absent; NULL when it is not JSON. */
static json_t *json_param(const http_req_t *req, const char *name, const char *def) {
  char *v = http_query_param(req, name);
  json_error_t e;
  json_t *j = json_loads(v ? v : def, 0, &e);
  free(v);
  return j;
}

/* The after_token's values (base64 of {"values": {"id": …, the order's columns…}}), or NULL. */
static json_t *token_values(const char *token) {
  char *text = base64_text(token);
  json_error_t e;
  json_t *j = text ? json_loads(text, 0, &e) : NULL;
  free(text);
  json_t *values = json_incref(json_object_get(j, "values"));
  json_decref(j);
  if (!json_is_integer(json_object_get(values, "id"))) {
    json_decref(values);
    return NULL;
  }
  return values;
}

static char *token_of(const order_t *o, json_t *row) {
  json_t *values = json_pack("{s:O}", "id", json_object_get(row, "id"));
  for (size_t i = 0; i < o->n; i++)
    json_object_set(values, o->col[i], json_object_get(row, o->col[i]));
  char *text = dump(json_pack("{s:o}", "values", values));
  size_t n = strlen(text);
  char *b64 = malloc(4 * ((n + 2) / 3) + 1);
  if (b64)
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)text, (int)n);
  free(text);
  return b64;
}

/* Reads order_by ([{"col", "dir"}…]) into o; false when it is not that or names no column. */
static bool parse_order_by(json_t *ob, json_t *sample, order_t *o) {
  o->n = 0;
  if (!json_is_array(ob) || json_array_size(ob) > COUNT(o->col))
    return false;
  for (size_t i = 0; i < json_array_size(ob); i++) {
    json_t *e = json_array_get(ob, i);
    const char *col = json_string_value(json_object_get(e, "col"));
    const char *dir = json_string_value(json_object_get(e, "dir"));
    if (col == NULL || (sample && json_object_get(sample, col) == NULL))
      return false;
    o->col[o->n] = col;
    o->desc[o->n++] = dir && strcmp(dir, "desc") == 0;
  }
  return true;
}

/* GET /api/v1/instances/: filtered, sorted, one page of at most 25 after after_token. */
static void instances_list_v1(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  prune(sim);
  json_t *filters = json_param(req, "select_filters", "{}");
  json_t *cols = json_param(req, "select_cols", "[\"*\"]");
  json_t *ob = json_param(req, "order_by", "[]");
  char *lim = http_query_param(req, "limit"), *after = http_query_param(req, "after_token");
  long limit = lim ? atol(lim) : PAGE_MAX;
  limit = limit <= 0 ? 5 : limit > PAGE_MAX ? PAGE_MAX : limit;
  size_t total = 0, cap = 0;
  for (inst_t *v = vs.insts; v; v = v->next)
    cap++;
  json_t **rows = calloc(cap + 1, sizeof(*rows));
  for (inst_t *v = vs.insts; v; v = v->next)
    rows[total++] = inst_json(sim, v, machine_find_of(sim, v->id, CLOUD));
  json_t *sample = total ? rows[0] : NULL;
  order_t o = {.n = 0};
  json_t *values = after ? token_values(after) : NULL;
  const char *err = NULL, *code = "invalid_request";
  char msg[256];
  if (!json_is_object(filters))
    err = "Error in query parameters: select_filters must be a JSON object";
  else if (!json_is_array(cols))
    err = "Error in query parameters: select_cols must be a JSON list of column names";
  else if (!parse_order_by(ob, sample, &o))
    err = "Error in query parameters: order_by must be a JSON list of {\"col\", \"dir\"} of "
          "existing columns";
  else if (after && values == NULL) {
    err = "Invalid after_token";
    code = "invalid_token";
  }
  const char *k;
  json_t *ops;
  json_object_foreach(json_is_object(filters) ? filters : NULL, k, ops) {
    if (err == NULL && !filterable(k)) {
      snprintf(msg, sizeof(msg), "Error in query parameters: %s is not a valid search key", k);
      err = msg;
    }
  }
  /* Filter, in the page's order. */
  size_t n = 0;
  for (size_t i = 0; i < total; i++) {
    bool ok = err == NULL;
    json_object_foreach(json_is_object(filters) ? filters : NULL, k, ops) {
      if (ok && !ops_match(k, json_object_get(rows[i], k), ops, &err))
        ok = false;
    }
    if (ok)
      rows[n++] = rows[i];
    else
      json_decref(rows[i]);
  }
  if (err) {
    for (size_t i = 0; i < n; i++)
      json_decref(rows[i]);
    v1_error(resp, code, err);
  } else {
    sort_rows(&o, rows, n);
    json_t *counts = json_object(), *page = json_array();
    size_t first = 0;
    while (values && first < n && rows_cmp(&o, rows[first], values) <= 0)
      first++;
    for (size_t i = 0; i < n; i++) {
      json_t *l = json_object_get(rows[i], "label");
      const char *label = json_is_string(l) ? json_string_value(l) : "";
      json_object_set_new(counts, label,
                          json_integer(json_integer_value(json_object_get(counts, label)) + 1));
    }
    size_t last = first + (size_t)limit < n ? first + (size_t)limit : n;
    bool all = json_array_size(cols) == 0 ||
               (json_is_string(json_array_get(cols, 0)) &&
                strcmp(json_string_value(json_array_get(cols, 0)), "*") == 0);
    for (size_t i = first; i < last; i++) {
      if (all) {
        json_array_append(page, rows[i]);
        continue;
      }
      json_t *sel = json_object();
      for (size_t c = 0; c < json_array_size(cols); c++) {
        const char *col = json_string_value(json_array_get(cols, c));
        json_t *val = col ? json_object_get(rows[i], col) : NULL;
        if (col)
          json_object_set(sel, col, val ? val : json_null());
      }
      json_array_append_new(page, sel);
    }
    char *next = last < n ? token_of(&o, rows[last - 1]) : NULL;
    http_json(
        resp, 200,
        dump(json_pack("{s:b, s:i, s:i, s:o, s:o, s:o}", "success", 1, "instances_found",
                       (int)(last - first), "total_instances", (int)n, "label_counts", counts,
                       "next_token", next ? json_string(next) : json_null(), "instances", page)));
    free(next);
    for (size_t i = 0; i < n; i++)
      json_decref(rows[i]);
  }
  free(rows);
  free(lim);
  free(after);
  json_decref(values);
  json_decref(filters);
  json_decref(cols);
  json_decref(ob);
}

/* ---- SSH keys ------------------------------------------------------------------------------- */

static void keys_list(http_resp_t *resp) {
  json_t *list = json_array();
  for (vast_key_t *k = vs.keys; k; k = k->next)
    json_array_append_new(list, json_pack("{s:I, s:i, s:s, s:s, s:n}", "id", (json_int_t)k->id,
                                          "user_id", USER_ID, "key", k->key, "created_at",
                                          k->created_at, "deleted_at"));
  http_json(resp, 200, dump(list));
}

static void keys_create(const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  const char *key = json_string_value(json_object_get(body, "ssh_key"));
  char *fp = key ? sim_key_fingerprint(key) : NULL;
  if (key == NULL || *key == '\0') {
    vast_error(resp, 400, "no_ssh_key", "No ssh key provided");
  } else if (fp == NULL || strchr(key, '\n') != NULL) {
    vast_error(resp, 400, "no_ssh_key", "Invalid ssh key: one OpenSSH public key line");
  } else {
    vast_key_t *k = calloc(1, sizeof(*k));
    k->id = vs.next_key_id++;
    k->key = strdup(key);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(k->created_at, sizeof(k->created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    vast_key_t **pp = &vs.keys;
    while (*pp)
      pp = &(*pp)->next;
    *pp = k;
    http_json(resp, 200,
              dump(json_pack("{s:b, s:{s:I, s:i, s:s, s:s, s:n}}", "success", 1, "key", "id",
                             (json_int_t)k->id, "user_id", USER_ID, "public_key", k->key,
                             "created_at", k->created_at, "deleted_at")));
  }
  free(fp);
  json_decref(body);
}

static void keys_delete(const char *idp, http_resp_t *resp) {
  uint64_t id = 0;
  bool ok = parse_id(idp, &id);
  for (vast_key_t **pp = &vs.keys; ok && *pp; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      vast_key_t *k = *pp;
      *pp = k->next;
      free(k->key);
      free(k);
      http_json(resp, 200, strdup("{\"success\":true}"));
      return;
    }
  vast_error(resp, 400, "no_ssh_key", "No ssh key with that id");
}

/* ---- routing -------------------------------------------------------------------------------- */

static bool vast_match(const http_req_t *req) {
  const char *p = req->path;
  return strncmp(p, "/api/v0/", 8) == 0 || strncmp(p, "/api/v1/", 8) == 0 ||
         strcmp(p, "/api/v0") == 0 || strcmp(p, "/api/v1") == 0;
}

static void vast_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (!http_bearer_is(req, sim->token)) {
    vast_error(resp, 401, "auth_error", "Invalid user key");
    return;
  }
  /* With or without the final '/'. */
  char p[512];
  snprintf(p, sizeof(p), "%s", req->path);
  size_t pl = strlen(p);
  if (pl > 1 && p[pl - 1] == '/')
    p[--pl] = '\0';
  const char *m = req->method;
  bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, put = strcmp(m, "PUT") == 0;
  bool del = strcmp(m, "DELETE") == 0;
  if (strcmp(p, "/api/v0/bundles") == 0 && post)
    offers_search(req, resp);
  else if (strncmp(p, "/api/v0/asks/", 13) == 0 && put)
    instance_create(sim, p + 13, req, resp);
  else if (strcmp(p, "/api/v0/instances") == 0 && get)
    instances_list_v0(sim, resp);
  else if (strcmp(p, "/api/v1/instances") == 0 && get)
    instances_list_v1(sim, req, resp);
  else if (strncmp(p, "/api/v0/instances/", 18) == 0 && !strchr(p + 18, '/') && (get || del))
    (get ? instance_show : instance_destroy)(sim, p + 18, resp);
  else if (strcmp(p, "/api/v0/ssh") == 0 && get)
    keys_list(resp);
  else if (strcmp(p, "/api/v0/ssh") == 0 && post)
    keys_create(req, resp);
  else if (strncmp(p, "/api/v0/ssh/", 12) == 0 && del)
    keys_delete(p + 12, resp);
  else
    vast_error(resp, 404, "not_found", "kite-cloudsim does not emulate this endpoint");
}

/* ---- control -------------------------------------------------------------------------------- */

static void outbid(sim_t *sim, uint64_t id, http_resp_t *resp) {
  inst_t *v = inst_find(sim, id);
  if (v == NULL) {
    http_error(resp, 404, "not_found", "no such instance");
  } else if (!v->is_bid) {
    http_error(resp, 400, "bad_request", "only an interruptible (bid) instance is outbid");
  } else if (v->destroyed) {
    http_error(resp, 400, "bad_request", "the instance is destroyed");
  } else {
    fprintf(stderr, "kite-cloudsim: vastai instance %llu is outbid\n", (unsigned long long)id);
    v->outbid = true;
    machine_kill(machine_find_of(sim, id, CLOUD), false);
    http_json(resp, 200, strdup("{\"ok\":true}"));
  }
}

static void offer_fail(const http_req_t *req, uint64_t id, http_resp_t *resp) {
  const offer_t *o = offer_find(id);
  json_error_t e;
  json_t *j = json_loadb(req->body, req->body_len, 0, &e);
  json_t *st = json_object_get(j, "status");
  const char *s = json_string_value(st);
  if (o == NULL) {
    http_error(resp, 404, "not_found", "no such offer");
  } else if (!json_is_null(st) &&
             (s == NULL || (strcmp(s, "exited") && strcmp(s, "unknown") && strcmp(s, "offline")))) {
    http_error(resp, 400, "bad_request",
               "{\"status\": \"exited\", \"unknown\", \"offline\" or null}");
  } else {
    snprintf(vs.fail[o - offers], sizeof(vs.fail[0]), "%s", s ? s : "");
    fprintf(stderr, "kite-cloudsim: vastai offer %llu: launches %s%s\n", (unsigned long long)id,
            s ? "end " : "run again", s ? s : "");
    http_json(resp, 200, strdup("{\"ok\":true}"));
  }
  json_decref(j);
}

static json_t *state_json(sim_t *sim) {
  prune(sim);
  json_t *list = json_array(), *keys = json_array(), *fails = json_object();
  for (inst_t *v = vs.insts; v; v = v->next) {
    machine_t *m = machine_find_of(sim, v->id, CLOUD);
    status_t s;
    inst_status(v, m, &s);
    json_array_append_new(
        list,
        json_pack("{s:I, s:o, s:s, s:s, s:s, s:b, s:I, s:s, s:f, s:i}", "id", (json_int_t)v->id,
                  "label", v->label ? json_string(v->label) : json_null(), "actual_status",
                  s.actual, "cur_state", s.cur, "intended_status", s.intended, "is_bid", v->is_bid,
                  "offer", (json_int_t)v->offer->id, "address", v->address, "dph", v->dph, "pid",
                  m->node ? kite_local_node_pid(m->node) : 0));
  }
  for (vast_key_t *k = vs.keys; k; k = k->next)
    json_array_append_new(keys, json_pack("{s:I, s:s}", "id", (json_int_t)k->id, "key", k->key));
  for (size_t i = 0; i < COUNT(offers); i++)
    if (vs.fail[i][0]) {
      char id[24];
      snprintf(id, sizeof(id), "%llu", (unsigned long long)offers[i].id);
      json_object_set_new(fails, id, json_string(vs.fail[i]));
    }
  return json_pack("{s:o, s:o, s:o}", "instances", list, "ssh_keys", keys, "offer_failures", fails);
}

static bool vast_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (strncmp(req->path, "/_sim/vastai/", 13) != 0)
    return false;
  unsigned long long id;
  char tail[16];
  bool post = strcmp(req->method, "POST") == 0;
  if (strcmp(req->path, "/_sim/vastai/state") == 0 && strcmp(req->method, "GET") == 0)
    http_json(resp, 200, dump(state_json(sim)));
  else if (sscanf(req->path, "/_sim/vastai/instances/%llu/%15s", &id, tail) == 2 &&
           strcmp(tail, "outbid") == 0 && post)
    outbid(sim, id, resp);
  else if (sscanf(req->path, "/_sim/vastai/offers/%llu/%15s", &id, tail) == 2 &&
           strcmp(tail, "fail") == 0 && post)
    offer_fail(req, id, resp);
  else
    http_error(resp, 404, "not_found", "no such control route");
  return true;
}

static void vast_state(sim_t *sim, json_t *state) {
  unsigned keys = 0;
  for (vast_key_t *k = vs.keys; k; k = k->next)
    keys++;
  json_object_set_new(state, "vastai_instances", json_integer(machine_count_of(sim, CLOUD)));
  json_object_set_new(state, "vastai_ssh_keys", json_integer(keys));
}

/* ---- the front ------------------------------------------------------------------------------ */

static void vast_no_capacity(http_resp_t *resp, const char *gpu, const char *place) {
  (void)gpu;
  (void)place;
  no_such_ask(resp, 404, vs.cur_ask);
}

static void vast_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  ask_error(resp, 400, "invalid_args", vs.cur_ask,
            "error 400: Invalid args: the account may have %u instances, not %u", limit, wanted);
}

static void vast_free(sim_t *sim) {
  (void)sim;
  while (vs.keys) {
    vast_key_t *k = vs.keys;
    vs.keys = k->next;
    free(k->key);
    free(k);
  }
  while (vs.insts) {
    inst_t *v = vs.insts;
    vs.insts = v->next;
    inst_free(v);
  }
}

const sim_front_t vastai_front = {
    .name = CLOUD,
    .match = vast_match,
    .handle = vast_handle,
    .control = vast_control,
    .state = vast_state,
    .error = vast_error,
    .rate_limited = {429, "rate_limit_exceeded",
                     "API requests too frequent endpoint threshold=2.0"},
    .server_error = {500, "server_error", "Internal Server Error"},
    .malformed_body = "{\"instances\": [}",
    .no_capacity = vast_no_capacity,
    .over_limit = vast_over_limit,
    .free = vast_free,
};
