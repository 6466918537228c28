/* The Vast.ai provider: instances (Docker containers on rented hosts) through Vast.ai's REST
 * API (api/v0, bearer API key), on the cloud skeleton (providers/cloud/cloud.h owns the
 * lifecycle; this file is Vast.ai's shapes, from the official OpenAPI description).
 *
 * Design notes
 * - What Vast.ai sells are offers ("asks"): one host's GPUs at a price, each with an id that
 *   lasts while the host lists it. An offer is kite's instance type, written "ask-ID"; its
 *   region is the country code that ends its geolocation ("Texas, US" → "US"). The catalog
 *   is one search (POST /api/v0/bundles, rentable and not rented, verified, the request's
 *   country when it names one, cheapest first), each offer with its GPUs as the accelerator
 *   (see accel_name), its on-demand price (dph_total) and its least bid (min_bid) as the spot
 *   price. A launch of type "cheapest" (none named) searches the same way and takes the first.
 * - Prepare (once per endpoint and key): kite's SSH key on the account (GET /api/v0/ssh,
 *   else POST /api/v0/ssh): Vast.ai installs the account's keys in every instance it starts,
 *   so the key must be there before the create.
 * - Create: PUT /api/v0/asks/{id} with image, disk, runtype ssh_direct (kite connects to the
 *   instance's public address and the host port mapped to its port 22), label and env; an
 *   interruptible launch sends price, the bid (the plan's spot price, else the offer's
 *   min_bid). The label is "TAG:NAME" (the pool's tag, then the skeleton's unique name), so a
 *   list finds a pool's instances by the prefix and find finds one launch by the whole label.
 *   The API has no idempotency token: after an ambiguous answer find asks for the label.
 * - The host key: Vast.ai runs no cloud-init. first_boot puts the key kite made (base64) into
 *   the env (KITE_SSH_HOST_KEY, KITE_SSH_HOST_KEY_PUB) and an onstart script that installs it
 *   as the container's ed25519 host key, makes sshd read it again, then runs the pool's user
 *   data; onstart is limited to 4048 characters, and a longer one is refused at the launch.
 * - Describe: GET /api/v0/instances/{id} → {"instances": {...}}: an absent or null instance
 *   is not found. actual_status "running" runs (address public_ipaddr, port from ports
 *   "22/tcp"), loading/created/null are pending; "exited", "unknown" or "offline" before the
 *   instance ever ran never run (the spec's warning: destroy and retry) and the launch fails
 *   over to another offer. An interruptible instance (is_bid) that Vast.ai stopped while it
 *   was meant to run (intended_status running, or a status_msg that says outbid) was outbid:
 *   preempted, so the pool replaces it. Destroyed instances are stopping until the API no
 *   longer has them.
 * - Destroy: DELETE /api/v0/instances/{id} (a stopped instance still bills its disk, so an
 *   outbid one is destroyed like any other). List: GET /api/v1/instances (id and label, 25 a
 *   page, next_token the cursor), every page, kept by the label's prefix; find asks it for
 *   the label (select_filters). Paths are written as the description writes them, without a
 *   final slash.
 * - Credentials: "token" in the options, $VAST_API_KEY, or the vastai command's key file
 *   ($XDG_CONFIG_HOME/vastai/vast_api_key, ~/.config/vastai/vast_api_key, ~/.vast_api_key);
 *   registered as a secret before use. The endpoint: "api_url", $KITE_VASTAI_API_URL, or
 *   https://console.vast.ai. A reach record names the endpoint and the account (a keyed hash
 *   of the key).
 * - Not cleaned up at stop: the SSH key (free; other kite processes may be about to use it). */
#include <jansson.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>

#include "../cloud/rest.h"
#include "../provider_info.h"
#include "kite/offer.h"
#include "kite/vastai.h"
#include "kite_impl.h"

#define NAME "vastai"
#define DEFAULT_API "https://console.vast.ai"
#define DEFAULT_IMAGE "vastai/base-image:@vastai-automatic-tag"
#define ANYWHERE "any"
#define CHEAPEST "cheapest"
#define ASK_PREFIX "ask-"
#define ONSTART_MAX 4048
#define SEARCH_LIMIT 64
#define KEY_HELP                                                                                   \
  "set VAST_API_KEY to an API key of the account (cloud.vast.ai → Account → Keys), run "       \
  "`vastai set api-key KEY`, or put \"token\" in the provider options"

struct kite_vastai_provider {
  kite_cloud_t *cloud;
  char *token, *api_url, *user, *image;
  unsigned port, disk_gb;
  char *cli_key, *cli_where; /* the vastai command's key, read once, and its file */
  bool cli_read;
};

/* What a launch needs beside the skeleton's cfg. */
typedef struct vast_api {
  kite_cloud_rest_t rest; /* first: the rest helpers read cfg->api as one */
  unsigned disk_gb;
} vast_api_t;

/* ---- configuration -------------------------------------------------------------------------- */

/* The vastai command's key: the first of its key files that holds one. */
static char *cli_key(char **where) {
  const char *home = getenv("HOME"), *xdg = getenv("XDG_CONFIG_HOME");
  char *paths[3] = {
      xdg && *xdg ? kite__sprintf("%s/vastai/vast_api_key", xdg) : NULL,
      home ? kite__sprintf("%s/.config/vastai/vast_api_key", home) : NULL,
      home ? kite__sprintf("%s/.vast_api_key", home) : NULL,
  };
  char *key = NULL;
  *where = NULL;
  for (size_t i = 0; i < KITE_ARRAY_SIZE(paths); i++) {
    char *text = NULL;
    if (key == NULL && paths[i] && kite__read_file(paths[i], &text, NULL) == 0) {
      size_t n = strcspn(text, " \t\r\n");
      if (n > 0)
        key = strndup(text, n);
      memset(text, 0, strlen(text));
      free(text);
    }
    if (*where == NULL && (key || i == KITE_ARRAY_SIZE(paths) - 1))
      *where = paths[i] ? kite__strdup(paths[i]) : NULL;
    free(paths[i]);
  }
  return key;
}

bool kite__vastai_configured(void) {
  if (kite_cloud_first(getenv("VAST_API_KEY"), NULL, NULL))
    return true;
  char *where = NULL, *key = cli_key(&where);
  bool found = key != NULL;
  if (key)
    memset(key, 0, strlen(key));
  free(key);
  free(where);
  return found;
}

static const kite_cloud_rest_errors_t vast_errors = {NULL, "error", "msg"};

static void vast_free_api(void *p) {
  vast_api_t *a = p;
  if (a == NULL)
    return;
  free(a->rest.url);
  free(a->rest.token);
  free(a);
}

static int vast_configure(kite_cloud_t *c, const char *options,
                          const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                          char **msg) {
  kite_vastai_provider_t *vp = kite_cloud_provider(c);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(c), options, msg);
  if (o == NULL)
    return KITE_EINVAL;
  const char *tok = kite_cloud_first(vp->token, getenv("VAST_API_KEY"), NULL);
  if (tok == NULL && json_object_get(o, "token") == NULL) {
    if (!vp->cli_read) {
      vp->cli_key = cli_key(&vp->cli_where);
      vp->cli_read = true;
    }
    tok = vp->cli_key;
  }
  char *looked = kite__sprintf("the provider options, $VAST_API_KEY and %s",
                               vp->cli_where ? vp->cli_where : "the vastai command's key file");
  kite_cloud_rest_defaults_t d = {
      .token = tok,
      .token_help = KEY_HELP,
      .looked_in = looked ? looked : "the provider options and the environment",
      .url = kite_cloud_first(vp->api_url, getenv("KITE_VASTAI_API_URL"), NULL),
      .url_default = DEFAULT_API,
      .url_hint = "api_url in the provider options or KITE_VASTAI_API_URL",
      .errors = &vast_errors,
      .account = "account",
      .user = vp->user,
      .port = vp->port,
      .image = vp->image,
      .region_builtin = ANYWHERE,
      .type_builtin = CHEAPEST,
      .image_builtin = DEFAULT_IMAGE};
  int rc = kite_cloud_rest_configure(c, o, &d, launch, cfg, msg);
  free(looked);
  /* The rest helpers made a kite_cloud_rest_t; this table keeps one with the disk beside it. */
  kite_cloud_rest_t *rest = cfg->api;
  vast_api_t *api = rest ? calloc(1, sizeof(*api)) : NULL;
  if (rest && api == NULL && rc == 0)
    rc = KITE_ENOMEM;
  if (api) {
    api->rest = *rest;
    free(rest);
    cfg->api = api;
    if (rc == 0 && launch && launch->accelerator && *launch->accelerator) {
      cfg->accelerator = kite__strdup(launch->accelerator);
      cfg->accelerator_count = launch->accelerator_count ? launch->accelerator_count : 1;
      if (cfg->accelerator == NULL)
        rc = KITE_ENOMEM;
    }
    json_t *disk = json_object_get(o, "disk_gb");
    api->disk_gb = json_is_integer(disk) ? (unsigned)json_integer_value(disk)
                   : vp->disk_gb         ? vp->disk_gb
                                         : 16;
  }
  if (rc == 0 && launch && strcmp(cfg->type, CHEAPEST) != 0 &&
      (strncmp(cfg->type, ASK_PREFIX, strlen(ASK_PREFIX)) != 0 ||
       strspn(cfg->type + strlen(ASK_PREFIX), "0123456789") !=
           strlen(cfg->type + strlen(ASK_PREFIX)) ||
       cfg->type[strlen(ASK_PREFIX)] == '\0')) {
    *msg = kite__sprintf("vastai: instance type %s is not an offer: Vast.ai's instance types are "
                         "its offers, \"ask-ID\" (`kite offers --provider vastai` lists them), or "
                         "leave instance_type out and ask for resources.accelerators",
                         cfg->type);
    rc = KITE_EINVAL;
  }
  json_decref(o);
  return rc;
}

static int vast_configure_reach(kite_cloud_t *c, const char *reach, kite_cloud_cfg_t *cfg,
                                bool *same_account, char **msg) {
  return kite_cloud_rest_configure_reach(c, reach, cfg, same_account, msg);
}

/* ---- small readers -------------------------------------------------------------------------- */

/* Vast.ai's GPU model as kite's accelerator name: the data-centre models by their family
 * ("A100 SXM4" and "A100 PCIE" are A100, "H100 NVL" is H100), the rest with underscores for
 * spaces ("RTX 4090" is RTX_4090). Names longer than the field are refused. */
static int accel_name(const char *gpu, char *out, size_t cap) {
  static const char *const families[] = {"A100", "H100", "H200", "B200", "L40S", "L40", "A40",
                                         "A10",  "A30",  "L4",   "V100", "T4",   "P100"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(families); i++) {
    size_t n = strlen(families[i]);
    if (strncasecmp(gpu, families[i], n) == 0 && (gpu[n] == '\0' || gpu[n] == ' '))
      return kite_offer_set(out, cap, families[i]);
  }
  int rc = kite_offer_set(out, cap, gpu);
  for (char *p = out; rc == 0 && *p; p++)
    if (*p == ' ')
      *p = '_';
  return rc;
}

/* The country code that ends a geolocation ("Texas, US" → "US"), or NULL. */
static const char *country_of(const char *geo, char out[8]) {
  const char *comma = geo ? strrchr(geo, ',') : NULL;
  const char *cc = comma ? comma + 1 : geo;
  while (cc && *cc == ' ')
    cc++;
  if (cc == NULL || strlen(cc) != 2 ||
      !((cc[0] >= 'A' && cc[0] <= 'Z') && cc[1] >= 'A' && cc[1] <= 'Z'))
    return NULL;
  memcpy(out, cc, 3);
  return out;
}

/* The label kite gives launch l: "TAG:NAME". */
static char *label_of(const kite_cloud_launch_t *l) {
  return kite__sprintf("%s:%s", l->tag, l->name);
}

/* The pool tag a label carries, into out, or false when it is not one of kite's. */
static bool tag_of(const char *label, char *out, size_t cap) {
  const char *colon = label ? strchr(label, ':') : NULL;
  if (colon == NULL || strncmp(label, "kite-", 5) != 0 || (size_t)(colon - label) >= cap)
    return false;
  memcpy(out, label, (size_t)(colon - label));
  out[colon - label] = '\0';
  return true;
}

/* The offer id of an "ask-ID" type, or 0. */
static long long ask_id(const char *type) {
  if (type == NULL || strncmp(type, ASK_PREFIX, strlen(ASK_PREFIX)) != 0)
    return 0;
  return strtoll(type + strlen(ASK_PREFIX), NULL, 10);
}

/* ---- the search: catalog, and a launch of the cheapest offer --------------------------------- */

/* Whether an offer's region is one cfg asks for (a host's country is matched here: the search's
 * geolocation filter compares the whole "Place, CC" text). */
static bool region_wanted(const kite_cloud_cfg_t *cfg, const kite_offer_t *o) {
  return cfg->region == NULL || strcmp(cfg->region, ANYWHERE) == 0 ||
         strcasecmp(cfg->region, o->region) == 0;
}

static json_t *search_body(const kite_cloud_cfg_t *cfg, long long id) {
  json_t *q = json_pack("{s:{s:b}, s:{s:b}, s:{s:b}, s:s, s:i, s:[[s,s],[s,s]]}", "rentable", "eq",
                        1, "rented", "eq", 0, "verified", "eq", 1, "type", "ondemand", "limit",
                        SEARCH_LIMIT, "order", "dph_total", "asc", "reliability", "desc");
  if (q && id > 0)
    json_object_set_new(q, "id", json_pack("{s:I}", "eq", (json_int_t)id));
  if (q && cfg->accelerator) {
    json_object_set_new(q, "num_gpus", json_pack("{s:i}", "eq", (int)cfg->accelerator_count));
  }
  return q;
}

/* One offer into o: NULL, or what is wrong with it. */
static const char *offer_into(json_t *b, kite_offer_t *o) {
  uint64_t id = 0, gpus = 0;
  const char *gpu = json_string_value(json_object_get(b, "gpu_name"));
  const char *geo = json_string_value(json_object_get(b, "geolocation"));
  char ty[32], cc[8];
  if (!kite_cloud_rest_whole(json_object_get(b, "id"), 1e15, &id) || id == 0)
    return "id is not an offer's id";
  snprintf(ty, sizeof(ty), ASK_PREFIX "%llu", (unsigned long long)id);
  KITE_OFFER_SET(o, instance_type, ty);
  if (gpu == NULL || *gpu == '\0' || accel_name(gpu, o->accelerator, sizeof(o->accelerator)))
    return "gpu_name is not a GPU model";
  if (!kite_cloud_rest_whole(json_object_get(b, "num_gpus"), 1024, &gpus) || gpus == 0)
    return "num_gpus is not a count of GPUs";
  o->accelerator_count = (unsigned)gpus;
  if (!kite_cloud_rest_price(json_object_get(b, "dph_total"), &o->price))
    return "dph_total is not a price";
  double bid = -1;
  json_t *min_bid = json_object_get(b, "min_bid");
  if (min_bid && !json_is_null(min_bid) && !kite_cloud_rest_price(min_bid, &bid))
    return "min_bid is not a price";
  o->spot_price = min_bid && !json_is_null(min_bid) ? bid : -1;
  /* Each host lists its own place; a host without a country is offered anywhere. */
  KITE_OFFER_SET(o, region, country_of(geo, cc) ? cc : ANYWHERE);
  double cores = json_number_value(json_object_get(b, "cpu_cores_effective"));
  if (!(cores > 0))
    cores = json_number_value(json_object_get(b, "cpu_cores"));
  o->vcpus = cores > 0 && cores < 1 << 16 ? (unsigned)cores : 0;
  double ram = json_number_value(json_object_get(b, "cpu_ram")); /* MB */
  o->memory_mb = ram > 0 && ram < 1e9 ? (uint64_t)ram : 0;
  double gram = json_number_value(json_object_get(b, "gpu_ram")); /* MB */
  o->accelerator_memory_mb = gram > 0 && gram < 1e8 ? (uint64_t)gram : 0;
  double disk = json_number_value(json_object_get(b, "disk_space")); /* GB */
  o->disk_gb = disk > 0 && disk < 1e7 ? (unsigned)disk : 0;
  KITE_OFFER_SET(o, arch, "x86_64");
  json_t *rentable = json_object_get(b, "rentable");
  o->available = json_is_false(rentable) ? 0 : 1;
  return NULL;
}

static const char *offer_one(kite_cloud_call_t *call, json_t *b) {
  kite_offer_t o = {0};
  const char *why = offer_into(b, &o);
  if (why == NULL && region_wanted(call->cfg, &o))
    kite_cloud_offer(call, &o);
  return why;
}

static void on_catalog(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *list = kite_cloud_rest_member(call, status, r, "offers", JSON_ARRAY, &j, NULL);
  if (list == NULL)
    return;
  if (kite_cloud_rest_offers(call, list, "offers", "gpu_name", offer_one))
    kite_cloud_answer_ok(call);
  json_decref(j);
}

static void vast_catalog(kite_cloud_call_t *call) {
  json_t *q = search_body(call->cfg, 0);
  /* The catalog is every GPU count: only launches narrow the search. */
  if (q)
    json_object_del(q, "num_gpus");
  if (q)
    json_object_set_new(q, "limit", json_integer(1000));
  kite_cloud_rest_sendf(call, "POST", q, on_catalog, "/api/v0/bundles");
  json_decref(q);
}

/* ---- first boot: the host key through env and onstart ------------------------------------- */

/* {"env": "-e K=V ...", "onstart": "..."} as JSON text: what create sends. */
static char *vast_first_boot(kite_cloud_t *c, const char *priv, const char *pub,
                             const char *user_data) {
  char *k = priv ? kite_cloud_base64(priv) : NULL, *kp = pub ? kite_cloud_base64(pub) : NULL;
  char *ud = user_data && *user_data ? kite_cloud_base64(user_data) : NULL;
  if ((priv && !k) || (pub && !kp) || (user_data && *user_data && !ud)) {
    free(k);
    free(kp);
    free(ud);
    return NULL;
  }
  if (k)
    kite_secret_add(kite_cloud_runtime(c), k);
  if (ud && strlen(ud) >= 4)
    kite_secret_add(kite_cloud_runtime(c), ud);
  char *env = k ? kite__sprintf("-e KITE_SSH_HOST_KEY=%s -e KITE_SSH_HOST_KEY_PUB=%s", k, kp)
                : kite__strdup("");
  /* The container's sshd is Vast.ai's (runtype ssh_direct); the key is put where it reads it,
   * then it is told to read it again. */
  char *keys =
      k ? kite__strdup(
              "umask 077; mkdir -p /etc/ssh; "
              "printf %s \"$KITE_SSH_HOST_KEY\" | base64 -d > /etc/ssh/ssh_host_ed25519_key; "
              "printf %s \"$KITE_SSH_HOST_KEY_PUB\" | base64 -d > "
              "/etc/ssh/ssh_host_ed25519_key.pub; "
              "unset KITE_SSH_HOST_KEY; pkill -HUP -x sshd || true; ")
        : kite__strdup("");
  char *script = ud ? kite__sprintf("mkdir -p /var/lib/kite; printf %%s '%s' | base64 -d > "
                                    "/var/lib/kite/user-data; chmod 700 /var/lib/kite/user-data; "
                                    "/var/lib/kite/user-data > /var/lib/kite/user-data.log 2>&1 &",
                                    ud)
                    : kite__strdup("");
  char *onstart = keys && script ? kite__sprintf("%s%s", keys, script) : NULL;
  json_t *j = env && onstart ? json_pack("{s:s, s:s}", "env", env, "onstart", onstart) : NULL;
  char *out = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  if (k)
    memset(k, 0, strlen(k));
  if (env)
    memset(env, 0, strlen(env));
  free(k);
  free(kp);
  free(ud);
  free(env);
  free(keys);
  free(script);
  free(onstart);
  return out;
}

/* ---- prepare: kite's key on the account --------------------------------------------------- */

/* The key part of an OpenSSH public key line ("type base64"), for comparing. */
static bool same_key(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return false;
  size_t na = strcspn(a, " "), nb = strcspn(b, " ");
  if (na != nb || strncmp(a, b, na) != 0)
    return false;
  a += na + (a[na] == ' ');
  b += nb + (b[nb] == ' ');
  na = strcspn(a, " \n");
  nb = strcspn(b, " \n");
  return na == nb && strncmp(a, b, na) == 0;
}

static void on_key_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  char *id = kite_cloud_rest_id(j);
  if (id == NULL)
    id = kite_cloud_rest_id(json_object_get(j, "key"));
  json_decref(j);
  if (status != 0) {
    kite_cloud_rest_fail(call, status, r, NULL);
    free(id);
    return;
  }
  free(*call->site_data);
  *call->site_data = id ? id : kite__strdup("registered");
  kite_cloud_answer_ok(call);
}

/* The keys list: a bare list (as Vast.ai answers) or {"ssh_keys": [...]}, each key's text in
 * key, public_key or ssh_key. */
static void on_keys(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  if (status == 0 && r && r->body_len) {
    json_error_t jerr;
    j = json_loadb(r->body, r->body_len, 0, &jerr);
  }
  json_t *keys = json_is_array(j) ? j : json_object_get(j, "ssh_keys");
  if (status != 0 || !json_is_array(keys)) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  const char *mine = kite_cloud_pubkey(call->cloud);
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *pk = json_string_value(json_object_get(k, "key"));
    if (pk == NULL)
      pk = json_string_value(json_object_get(k, "public_key"));
    if (pk == NULL)
      pk = json_string_value(json_object_get(k, "ssh_key"));
    if (same_key(pk, mine)) {
      char *id = kite_cloud_rest_id(k);
      free(*call->site_data);
      *call->site_data = id ? id : kite__strdup("registered");
      json_decref(j);
      kite_cloud_answer_ok(call);
      return;
    }
  }
  json_decref(j);
  json_t *body = json_pack("{s:s}", "ssh_key", mine);
  kite_cloud_rest_sendf(call, "POST", body, on_key_created, "/api/v0/ssh");
  json_decref(body);
}

static void vast_prepare(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "GET", NULL, on_keys, "/api/v0/ssh");
}

/* ---- create, find --------------------------------------------------------------------------- */

/* A create refused because the account has no key any more: prepared again. */
static bool key_gone(const kite_cloud_call_t *call, const char *code, const char *message) {
  return call->kind == KITE_CLOUD_CALL_CREATE &&
         ((code && strstr(code, "ssh_key")) || (message && strstr(message, "ssh key")));
}

static void on_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  json_t *id = json_object_get(j, "new_contract");
  if (status != 0 || !json_is_integer(id) || json_integer_value(id) <= 0 ||
      json_is_false(json_object_get(j, "success"))) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, key_gone);
    return;
  }
  char text[24];
  snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(id));
  json_decref(j);
  kite_cloud_created(call, 0, text);
  kite_cloud_answer_ok(call);
}

static void create_on(kite_cloud_call_t *call, long long ask, double min_bid) {
  const kite_cloud_cfg_t *cfg = call->cfg;
  const vast_api_t *api = cfg->api;
  const kite_cloud_launch_t *l = call->launches[0];
  json_t *boot = NULL;
  if (l->user_data) {
    json_error_t jerr;
    boot = json_loads(l->user_data, 0, &jerr);
  }
  const char *env = json_string_value(json_object_get(boot, "env"));
  const char *onstart = json_string_value(json_object_get(boot, "onstart"));
  if (onstart && strlen(onstart) > ONSTART_MAX) {
    json_decref(boot);
    char *m = kite__sprintf("the instance's start script would be %zu characters, and Vast.ai "
                            "takes at most %d: shorten bootstrap.user_data (or move it into the "
                            "bootstrap steps)",
                            strlen(onstart), ONSTART_MAX);
    kite_cloud_answer_fail(call, KITE_E2BIG, m ? m : "the start script is too long");
    free(m);
    return;
  }
  char *label = label_of(l);
  json_t *body =
      label ? json_pack("{s:s, s:s, s:i, s:s, s:s}", "image", cfg->image, "label", label, "disk",
                        (int)api->disk_gb, "runtype", "ssh_direct", "target_state", "running")
            : NULL;
  if (body && env && *env)
    json_object_set_new(body, "env", json_string(env));
  if (body && onstart && *onstart)
    json_object_set_new(body, "onstart", json_string(onstart));
  if (body && l->spot) {
    double bid = l->price > 0 ? l->price : min_bid;
    json_object_set_new(body, "price", json_real(bid > 0.001 ? bid : 0.001));
  }
  json_decref(boot);
  free(label);
  if (body == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite_cloud_rest_sendf(call, "PUT", body, on_created, "/api/v0/asks/%lld", ask);
  json_decref(body);
}

/* The search before a create: the cheapest offer, or the named one's least bid. */
static void on_search(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *list = kite_cloud_rest_member(call, status, r, "offers", JSON_ARRAY, &j, NULL);
  if (list == NULL)
    return;
  long long want = ask_id(call->cfg->type);
  size_t i;
  json_t *b;
  json_array_foreach(list, i, b) {
    kite_offer_t o = {0};
    if (offer_into(b, &o) != NULL || (want && ask_id(o.instance_type) != want) ||
        (!want && !region_wanted(call->cfg, &o)))
      continue;
    if (call->cfg->accelerator && strcasecmp(o.accelerator, call->cfg->accelerator) != 0)
      continue;
    if (call->launches[0]->spot && o.spot_price < 0)
      continue;
    json_decref(j);
    create_on(call, ask_id(o.instance_type), o.spot_price);
    return;
  }
  json_decref(j);
  char *m =
      want ? kite__sprintf("offer %s is no longer listed: it was rented or withdrawn; "
                           "another offer is tried",
                           call->cfg->type)
           : kite__sprintf(
                 "no rentable offer%s%s: ask for another accelerator or region",
                 call->cfg->region && strcmp(call->cfg->region, ANYWHERE) != 0 ? " in " : "",
                 call->cfg->region && strcmp(call->cfg->region, ANYWHERE) != 0 ? call->cfg->region
                                                                               : "");
  kite_cloud_answer_fail(call, KITE_ECAPACITY, m ? m : "no offer");
  free(m);
}

static void vast_create(kite_cloud_call_t *call) {
  const kite_cloud_launch_t *l = call->launches[0];
  long long ask = ask_id(call->cfg->type);
  if (ask && (!l->spot || l->price > 0)) {
    create_on(call, ask, 0);
    return;
  }
  json_t *q = search_body(call->cfg, ask);
  if (q && l->spot)
    json_object_set_new(q, "type", json_string("bid"));
  kite_cloud_rest_sendf(call, "POST", q, on_search, "/api/v0/bundles");
  json_decref(q);
}

/* A page of the account's instances: GET /api/v1/instances with the columns kite reads, the
 * filter (JSON text, or NULL) and the cursor of the page (NULL: the first). */
static void instances_page(kite_cloud_call_t *call, const char *filter, const char *after,
                           kite_cloud_http_cb cb) {
  char *cols = kite_cloud_escape("[\"id\",\"label\"]");
  char *f = filter ? kite_cloud_escape(filter) : NULL;
  char *a = after ? kite_cloud_escape(after) : NULL;
  if (cols == NULL || (filter && f == NULL) || (after && a == NULL)) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
  } else {
    kite_cloud_rest_sendf(
        call, "GET", NULL, cb, "/api/v1/instances?limit=25&select_cols=%s%s%s%s%s", cols,
        f ? "&select_filters=" : "", f ? f : "", a ? "&after_token=" : "", a ? a : "");
  }
  free(cols);
  free(f);
  free(a);
}

/* The page's instances, and its next_token (NULL at the last page) in *next. */
static json_t *instances_of(kite_cloud_call_t *call, int status, const kite_http_response_t *r,
                            json_t **doc, const char **next) {
  json_t *list = kite_cloud_rest_member(call, status, r, "instances", JSON_ARRAY, doc, NULL);
  const char *n = list ? json_string_value(json_object_get(*doc, "next_token")) : NULL;
  *next = n && *n && strlen(n) < 4096 ? n : NULL;
  return list;
}

static void on_found(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  const char *next = NULL;
  json_t *list = instances_of(call, status, r, &j, &next);
  if (list == NULL)
    return;
  char *label = label_of(call->launches[0]);
  size_t i;
  json_t *in;
  json_array_foreach(list, i, in) {
    const char *l = json_string_value(json_object_get(in, "label"));
    char *id = l && label && strcmp(l, label) == 0 ? kite_cloud_rest_id(in) : NULL;
    if (id)
      kite_cloud_created(call, 0, id);
    free(id);
  }
  free(label);
  json_decref(j);
  kite_cloud_answer_ok(call); /* found, or not there (labels are unique: one page) */
}

static void vast_find(kite_cloud_call_t *call) {
  char *label = label_of(call->launches[0]);
  json_t *f = label ? json_pack("{s:{s:s}}", "label", "eq", label) : NULL;
  char *text = f ? json_dumps(f, JSON_COMPACT) : NULL;
  if (text)
    instances_page(call, text, NULL, on_found);
  else
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
  free(text);
  json_decref(f);
  free(label);
}

/* ---- describe, destroy, list ---------------------------------------------------------------- */

static bool is(const char *s, const char *v) {
  return s && strcmp(s, v) == 0;
}

/* The host port mapped to the container's port 22: ports {"22/tcp": [{"HostPort": "N"}]}. */
static unsigned ssh_port_of(json_t *in) {
  json_t *m = json_array_get(json_object_get(json_object_get(in, "ports"), "22/tcp"), 0);
  json_t *hp = json_object_get(m, "HostPort");
  long long p = json_is_string(hp)    ? strtoll(json_string_value(hp), NULL, 10)
                : json_is_integer(hp) ? json_integer_value(hp)
                                      : 0;
  return p > 0 && p < 65536 ? (unsigned)p : 0;
}

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  json_t *in = json_object_get(j, "instances");
  if (status == 0 && j &&
      (in == NULL || json_is_null(in) || (json_is_object(in) && json_object_size(in) == 0))) {
    json_decref(j); /* the account has no such instance */
    kite_cloud_answer_t a = {.outcome = KITE_CLOUD_NOT_FOUND};
    kite_cloud_answer(call, &a);
    return;
  }
  if (!json_is_object(in)) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  const char *actual = json_string_value(json_object_get(in, "actual_status"));
  const char *intended = json_string_value(json_object_get(in, "intended_status"));
  const char *msg = json_string_value(json_object_get(in, "status_msg"));
  bool bid = json_is_true(json_object_get(in, "is_bid"));
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  if (is(actual, "running")) {
    a.instance.state = KITE_CLOUD_RUNNING;
    a.instance.address = json_string_value(json_object_get(in, "public_ipaddr"));
    a.instance.port = ssh_port_of(in);
    if (a.instance.port == 0)
      a.instance.address = NULL; /* not reachable directly (yet) */
  } else if (is(actual, "exited") || is(actual, "unknown") || is(actual, "offline") ||
             is(actual, "stopped")) {
    bool outbid = bid && (is(intended, "running") || (msg && strstr(msg, "outbid")));
    a.instance.state =
        is(intended, "stopped") && !outbid ? KITE_CLOUD_STOPPING : KITE_CLOUD_STOPPED;
    a.instance.preempted = outbid;
    /* Before it ever ran, one of these is never left (the description says so). */
    if (!outbid && !is(intended, "stopped"))
      a.instance.never_runs = actual;
  } else {
    a.instance.state = KITE_CLOUD_PENDING; /* created, loading, null */
  }
  double price = json_number_value(json_object_get(in, "dph_total"));
  a.instance.price_hourly = price > 0 && price < 1e6 ? price : 0;
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void vast_describe(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "GET", NULL, on_described, "/api/v0/instances/%s", call->id);
}

static void vast_destroy(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "DELETE", NULL, kite_cloud_rest_done, "/api/v0/instances/%s",
                        call->id);
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  const char *next = NULL;
  json_t *list = instances_of(call, status, r, &j, &next);
  if (list == NULL)
    return;
  bool any = strcmp(call->tag, "*") == 0;
  size_t i;
  json_t *in;
  json_array_foreach(list, i, in) {
    char tag[128];
    if (!tag_of(json_string_value(json_object_get(in, "label")), tag, sizeof(tag)) ||
        (!any && strcmp(tag, call->tag) != 0))
      continue;
    char *id = kite_cloud_rest_id(in);
    kite_cloud_listed(call, id, tag);
    free(id);
  }
  /* The filter cannot say "begins with": every page of the account is read. */
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK, .next = next};
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void vast_list_page(kite_cloud_call_t *call) {
  instances_page(call, NULL, call->cursor, on_listed);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const kite_cloud_advice_t vast_advice[] = {
    {"auth_error", 0, NULL, KITE_ECREDENTIALS, "the API key was rejected: " KEY_HELP},
    {NULL, 401, NULL, KITE_ECREDENTIALS, "the API key was rejected: " KEY_HELP},
    {NULL, 403, NULL, KITE_ECREDENTIALS,
     "the API key may not do this: use a key with "
     "instance read and write permissions"},
    {"no_such_ask", 0, NULL, KITE_ECAPACITY,
     "the offer was rented or withdrawn meanwhile; another offer is tried"},
    {NULL, 404, "ask", KITE_ECAPACITY,
     "the offer was rented or withdrawn meanwhile; another offer is tried"},
    {NULL, 410, NULL, KITE_ECAPACITY, "the offer cannot start now; another offer is tried"},
    {"invalid_price", 0, NULL, KITE_EPRICE,
     "the bid is below what the host takes now: let kite choose the offer again, or raise "
     "max_hourly_cost"},
    {"no_ssh_key*", 0, NULL, KITE_ECREDENTIALS,
     "kite's SSH key is not on the account: check that the key may be registered"},
    {"invalid_args", 0, NULL, KITE_EPROVIDER, "check image, instance type (an offer) and options"},
    {"rate_limit_exceeded", 0, NULL, KITE_EAGAIN,
     "rate limited even after backing off: retry later, or run fewer kite processes on this "
     "account"},
};

static const kite_cloud_ops_t vast_ops = {
    .name = NAME,
    .title = "Vast.ai",
    .noun = "instance",
    .batch_max = 1,
    .spot = true,
    .endpoint_hint = "api_url in the provider options or KITE_VASTAI_API_URL",
    .configure = vast_configure,
    .configure_reach = vast_configure_reach,
    .free_api = vast_free_api,
    .prepare = vast_prepare,
    .create = vast_create,
    .find = vast_find,
    .describe = vast_describe,
    .destroy = vast_destroy,
    .list_page = vast_list_page,
    .catalog = vast_catalog,
    .free_site_data = free,
    .first_boot = vast_first_boot,
    .advice = vast_advice,
    .n_advice = KITE_ARRAY_SIZE(vast_advice),
};

static void free_provider(void *p) {
  kite_vastai_provider_t *vp = p;
  if (vp == NULL)
    return;
  free(vp->token);
  free(vp->api_url);
  free(vp->user);
  free(vp->image);
  if (vp->cli_key)
    memset(vp->cli_key, 0, strlen(vp->cli_key));
  free(vp->cli_key);
  free(vp->cli_where);
  free(vp);
}

int kite_vastai_provider_new(kite_runtime_t *rt, const kite_vastai_provider_options_t *opts,
                             kite_vastai_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_vastai_provider_options_t o = {0};
  if (opts)
    o = *opts;
  kite_vastai_provider_t *vp = calloc(1, sizeof(*vp));
  if (vp == NULL)
    return KITE_ENOMEM;
  const char *in[] = {o.token, o.api_url, o.ssh_user, o.image};
  char **to[] = {&vp->token, &vp->api_url, &vp->user, &vp->image};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(in); i++)
    if (in[i] && (*to[i] = kite__strdup(in[i])) == NULL) {
      free_provider(vp);
      return KITE_ENOMEM;
    }
  vp->port = o.ssh_port;
  vp->disk_gb = o.disk_gb;
  if (vp->token)
    kite_secret_add(rt, vp->token);
  kite_cloud_options_t co = KITE_CLOUD_OPTIONS_OF(o, free_provider);
  int rc = kite_cloud_new(rt, &vast_ops, &co, vp, &vp->cloud);
  if (rc != 0) {
    free_provider(vp);
    return rc;
  }
  if (out)
    *out = vp;
  return 0;
}
