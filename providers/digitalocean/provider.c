/* The DigitalOcean provider: droplets through the v2 API, on the cloud skeleton
 * (providers/cloud/cloud.h owns the lifecycle; this file is DigitalOcean's shapes).
 *
 * Design notes
 * - Prepare (once per endpoint and token): kite's SSH key in the account, by its MD5
 *   fingerprint (GET /v2/account/keys/{fingerprint}, POST /v2/account/keys when missing).
 * - Create: POST /v2/droplets with "name", or "names" for a batch of up to 10; the pool's tag,
 *   kite's key by fingerprint, and the user_data. DigitalOcean has no idempotency token, so
 *   after an ambiguous answer find looks for the droplet by tag and name.
 * - Describe: GET /v2/droplets/{id}: "new" is pending, "active" running, "off" stopped,
 *   "archive" gone; the public IPv4 and size.price_hourly.
 * - Destroy: DELETE /v2/droplets/{id}. List: GET /v2/droplets?tag_name=TAG, following
 *   links.pages.next on the API's own origin only.
 * - Catalog: GET /v2/sizes?per_page=200 (following links.pages.next the same way): one offer
 *   per size and region it lists (only the request's region when it names one), with its
 *   vCPUs, memory, disk, hourly price, gpu_info's model, count and VRAM; no spot; a size that
 *   is not "available" is offered with none available. An answer with a size kite cannot read
 *   is refused whole, saying which.
 * - Credentials: "token" in the request's provider options, the provider's options,
 *   $DIGITALOCEAN_TOKEN, $DIGITALOCEAN_ACCESS_TOKEN, or doctl's config file, in that order;
 *   registered as a secret before use. The API base URL: "api_url", $KITE_DO_API_URL, or the
 *   public API. A reach record names the API URL and the account (a keyed hash of the token). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "../cloud/rest.h"
#include "../provider_info.h"
#include "kite/digitalocean.h"
#include "kite/offer.h"
#include "kite_impl.h"

#define NAME "digitalocean"
#define DEFAULT_API "https://api.digitalocean.com"
#define DEFAULT_REGION "nyc3"
#define DEFAULT_SIZE "s-1vcpu-1gb"
#define DEFAULT_IMAGE "ubuntu-24-04-x64"
#define TOKEN_HELP                                                                                 \
  "set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN) to an API token with read and write "     \
  "scope from https://cloud.digitalocean.com/account/api/tokens, or put \"token\" in the "         \
  "provider options"

struct kite_do_provider {
  kite_cloud_t *cloud;
  char *token, *api_url, *user, *region, *size, *image;
  unsigned port;
  char *fingerprint; /* of kite's key, once known */
  /* The token of the doctl command's configuration, read once (the first request that needs
   * it), and the file it came from. */
  char *cli_token, *cli_where;
  bool cli_read;
};

/* ---- configuration -------------------------------------------------------------------------- */

static char *doctl_token(char **where) {
  const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
  char *path = xdg && *xdg ? kite__sprintf("%s/doctl/config.yaml", xdg)
               : home      ? kite__sprintf("%s/.config/doctl/config.yaml", home)
                           : NULL;
  *where = path;
  char *text = NULL;
  if (path == NULL || kite__read_file(path, &text, NULL) != 0)
    return NULL;
  char *tok = NULL;
  for (char *line = text; line && *line && tok == NULL;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    if (strncmp(line, "access-token:", 13) == 0) {
      char *v = line + 13;
      v += strspn(v, " \t\"'");
      size_t n = strcspn(v, " \t\"'\r");
      if (n)
        tok = strndup(v, n);
    }
    line = nl ? nl + 1 : NULL;
  }
  free(text);
  return tok;
}

bool kite__do_configured(void) {
  if (kite_cloud_first(getenv("DIGITALOCEAN_TOKEN"), getenv("DIGITALOCEAN_ACCESS_TOKEN"), NULL))
    return true;
  char *where = NULL, *tok = doctl_token(&where);
  bool found = tok != NULL;
  if (tok)
    memset(tok, 0, strlen(tok));
  free(tok);
  free(where);
  return found;
}

static const kite_cloud_rest_errors_t do_errors = {NULL, "id", "message"};

static int do_configure(kite_cloud_t *c, const char *options,
                        const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                        char **msg) {
  kite_do_provider_t *dp = kite_cloud_provider(c);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(c), options, msg);
  if (o == NULL)
    return KITE_EINVAL;
  const char *tok = kite_cloud_first(dp->token, getenv("DIGITALOCEAN_TOKEN"),
                                     getenv("DIGITALOCEAN_ACCESS_TOKEN"));
  if (tok == NULL && json_object_get(o, "token") == NULL) {
    if (!dp->cli_read) {
      dp->cli_token = doctl_token(&dp->cli_where);
      dp->cli_read = true;
    }
    tok = dp->cli_token;
  }
  char *looked = kite__sprintf("the provider options, $DIGITALOCEAN_TOKEN, "
                               "$DIGITALOCEAN_ACCESS_TOKEN and %s",
                               dp->cli_where ? dp->cli_where : "doctl's config.yaml");
  kite_cloud_rest_defaults_t d = {
      .token = tok,
      .token_help = TOKEN_HELP,
      .looked_in = looked ? looked : "the provider options and the environment",
      .url = kite_cloud_first(dp->api_url, getenv("KITE_DO_API_URL"), NULL),
      .url_default = DEFAULT_API,
      .url_hint = "api_url in the provider options or KITE_DO_API_URL",
      .errors = &do_errors,
      .account = "token",
      .user = dp->user,
      .port = dp->port,
      .region = dp->region,
      .type = dp->size,
      .image = dp->image,
      .region_builtin = DEFAULT_REGION,
      .type_builtin = DEFAULT_SIZE,
      .image_builtin = DEFAULT_IMAGE};
  int rc = kite_cloud_rest_configure(c, o, &d, launch, cfg, msg);
  free(looked);
  json_decref(o);
  return rc;
}

/* ---- requests and answers ------------------------------------------------------------------- */

static const char *droplet_ipv4(json_t *d) {
  json_t *v4 = json_object_get(json_object_get(d, "networks"), "v4");
  size_t i;
  json_t *n;
  json_array_foreach(v4, i, n) {
    const char *type = json_string_value(json_object_get(n, "type"));
    const char *ip = json_string_value(json_object_get(n, "ip_address"));
    if (type && ip && strcmp(type, "public") == 0)
      return ip;
  }
  return NULL;
}

/* links.pages.next, when it is on the API's own origin (the token goes nowhere else). */
static const char *next_page(const kite_cloud_call_t *call, json_t *j) {
  const kite_cloud_rest_t *api = call->cfg->api;
  const char *url = json_string_value(
      json_object_get(json_object_get(json_object_get(j, "links"), "pages"), "next"));
  size_t n = strlen(api->url);
  return url && strncmp(url, api->url, n) == 0 && url[n] == '/' && kite_http_url_allowed(url)
             ? url
             : NULL;
}

/* "/v2/droplets?tag_name=TAG&per_page=200" (every droplet for "*"). */
static char *list_path(const char *tag) {
  if (strcmp(tag, "*") == 0)
    return kite__strdup("/v2/droplets?per_page=200");
  char *t = kite_cloud_escape(tag);
  char *path = t ? kite__sprintf("/v2/droplets?tag_name=%s&per_page=200", t) : NULL;
  free(t);
  return path;
}

/* ---- prepare: kite's key in the account ----------------------------------------------------- */

static void on_key_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  if (status == 0 || (status == KITE_EHTTP && r->status == 422 && strstr(r->body, "already")))
    kite_cloud_answer_ok(call);
  else
    kite_cloud_rest_fail(call, status, r, NULL);
}

static void on_key_got(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_cloud_t *c = call->cloud;
  if (status != KITE_EHTTP || r->status != 404) {
    if (status == 0)
      kite_cloud_answer_ok(call);
    else
      kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  char host[256] = "";
  gethostname(host, sizeof(host) - 1);
  char *name = kite__sprintf("kite-%s", host[0] ? host : "key");
  json_t *body =
      json_pack("{s:s, s:s}", "name", name ? name : "kite", "public_key", kite_cloud_pubkey(c));
  free(name);
  int rc = body
               ? kite_cloud_rest_http(call, "POST", "/v2/account/keys", false, body, on_key_created)
               : KITE_ENOMEM;
  json_decref(body);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

static void do_prepare(kite_cloud_call_t *call) {
  kite_do_provider_t *dp = kite_cloud_provider(call->cloud);
  if (dp->fingerprint == NULL)
    dp->fingerprint = kite_cloud_md5_fingerprint(kite_cloud_pubkey(call->cloud));
  char *path = dp->fingerprint ? kite__sprintf("/v2/account/keys/%s", dp->fingerprint) : NULL;
  int rc = path ? kite_cloud_rest_http(call, "GET", path, false, NULL, on_key_got) : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- create, find --------------------------------------------------------------------------- */

static void created_from(kite_cloud_call_t *call, json_t *d) {
  const char *name = json_string_value(json_object_get(d, "name"));
  for (size_t i = 0; name && i < call->n; i++)
    if (strcmp(name, call->launches[i]->name) == 0) {
      char *id = kite_cloud_rest_id(d);
      kite_cloud_created(call, i, id);
      free(id);
    }
}

static void on_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  if (status != 0 || j == NULL) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  created_from(call, json_object_get(j, "droplet"));
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(j, "droplets"), i, d) created_from(call, d);
  json_decref(j);
  kite_cloud_answer_ok(call);
}

static void do_create(kite_cloud_call_t *call) {
  kite_do_provider_t *dp = kite_cloud_provider(call->cloud);
  const kite_cloud_cfg_t *cfg = call->cfg;
  const kite_cloud_launch_t *first = call->launches[0];
  json_t *body = json_pack("{s:s, s:s, s:s, s:[s], s:[s], s:b}", "region", cfg->region, "size",
                           cfg->type, "image", cfg->image, "ssh_keys", dp->fingerprint, "tags",
                           first->tag, "monitoring", 0);
  if (body && call->n == 1) {
    json_object_set_new(body, "name", json_string(first->name));
  } else if (body) {
    json_t *names = json_array();
    for (size_t i = 0; i < call->n; i++)
      json_array_append_new(names, json_string(call->launches[i]->name));
    json_object_set_new(body, "names", names);
  }
  if (body && first->user_data && *first->user_data)
    json_object_set_new(body, "user_data", json_string(first->user_data));
  int rc = body ? kite_cloud_rest_http(call, "POST", "/v2/droplets", false, body, on_created)
                : KITE_ENOMEM;
  json_decref(body);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

static void on_find_page(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *list = kite_cloud_rest_member(call, status, r, "droplets", JSON_ARRAY, &j, NULL);
  if (list == NULL)
    return;
  size_t i;
  json_t *d;
  json_array_foreach(list, i, d) created_from(call, d);
  const char *next = call->launches[0]->id ? NULL : next_page(call, j);
  int rc = next && ++call->step < 100
               ? kite_cloud_rest_http(call, "GET", next, true, NULL, on_find_page)
               : -1;
  json_decref(j);
  if (rc == 0)
    return;
  if (call->launches[0]->id || rc == -1)
    kite_cloud_answer_ok(call); /* found, or not there */
  else
    kite_cloud_rest_unsent(call, rc);
}

static void do_find(kite_cloud_call_t *call) {
  char *path = list_path(call->launches[0]->tag);
  int rc = path ? kite_cloud_rest_http(call, "GET", path, false, NULL, on_find_page) : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- describe, destroy, list ---------------------------------------------------------------- */

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *d = kite_cloud_rest_member(call, status, r, "droplet", JSON_OBJECT, &j, NULL);
  if (d == NULL)
    return;
  const char *st = json_string_value(json_object_get(d, "status"));
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  a.instance.state = st == NULL                   ? KITE_CLOUD_PENDING
                     : strcmp(st, "active") == 0  ? KITE_CLOUD_RUNNING
                     : strcmp(st, "off") == 0     ? KITE_CLOUD_STOPPED
                     : strcmp(st, "archive") == 0 ? KITE_CLOUD_GONE
                                                  : KITE_CLOUD_PENDING;
  a.instance.address = droplet_ipv4(d);
  a.instance.price_hourly =
      json_number_value(json_object_get(json_object_get(d, "size"), "price_hourly"));
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void do_describe(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "GET", NULL, on_described, "/v2/droplets/%s", call->id);
}

static void do_destroy(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "DELETE", NULL, kite_cloud_rest_done, "/v2/droplets/%s", call->id);
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *list = kite_cloud_rest_member(call, status, r, "droplets", JSON_ARRAY, &j, NULL);
  if (list == NULL)
    return;
  size_t i;
  json_t *d;
  json_array_foreach(list, i, d) {
    const char *pool_tag = NULL;
    size_t t;
    json_t *tv;
    json_array_foreach(json_object_get(d, "tags"), t, tv) {
      const char *s = json_string_value(tv);
      if (s && strncmp(s, "kite-pool-", 10) == 0)
        pool_tag = s;
    }
    char *id = kite_cloud_rest_id(d);
    kite_cloud_listed(call, id, pool_tag);
    free(id);
  }
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK, .next = next_page(call, j)};
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void do_list_page(kite_cloud_call_t *call) {
  char *path = call->cursor ? NULL : list_path(call->tag);
  int rc = call->cursor || path
               ? kite_cloud_rest_http(call, "GET", call->cursor ? call->cursor : path,
                                      call->cursor != NULL, NULL, on_listed)
               : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- catalog: the sizes ---------------------------------------------------------------------- */

/* gpu_info's model as offers name accelerators: "nvidia_h100" → "H100", "amd_mi300x" → "MI300X". */
static bool gpu_model(const char *model, char *out, size_t size) {
  const char *u = strchr(model, '_');
  const char *m = u && u[1] ? u + 1 : model;
  size_t n = strlen(m);
  if (n == 0 || n >= size)
    return false;
  for (size_t i = 0; i <= n; i++)
    out[i] = (char)toupper((unsigned char)m[i]);
  return true;
}

/* gpu_info into o: NULL when it is absent or right, else what is wrong. VRAM is what the size
 * has in all (gpu-h100x8-640gb: 640 GiB), shared out per GPU. */
static const char *gpu_into(json_t *g, kite_offer_t *o) {
  if (g == NULL || json_is_null(g))
    return NULL;
  const char *model = json_string_value(json_object_get(g, "model"));
  json_t *vram = json_object_get(g, "vram");
  uint64_t count = 0, amount = 0;
  if (!json_is_object(g) || model == NULL ||
      !gpu_model(model, o->accelerator, sizeof(o->accelerator)))
    return "gpu_info.model is not a GPU model";
  if (!kite_cloud_rest_whole(json_object_get(g, "count"), 1024, &count) || count == 0)
    return "gpu_info.count is not a count of GPUs";
  if (vram && !kite_cloud_rest_whole(json_object_get(vram, "amount"), 1 << 24, &amount))
    return "gpu_info.vram.amount is not a whole number of GiB";
  const char *unit = json_string_value(json_object_get(vram, "unit"));
  uint64_t mb = unit == NULL || strcasecmp(unit, "gib") == 0 || strcasecmp(unit, "gb") == 0
                    ? amount * 1024
                : strcasecmp(unit, "mib") == 0 || strcasecmp(unit, "mb") == 0 ? amount
                                                                              : 0;
  o->accelerator_count = (unsigned)count;
  o->accelerator_memory_mb = mb / count;
  return NULL;
}

/* One size into o (but its region): NULL, or what is wrong with it. */
static const char *size_into(json_t *z, kite_offer_t *o) {
  uint64_t vcpus = 0, memory = 0, disk = 0;
  const char *slug = json_string_value(json_object_get(z, "slug"));
  if (slug == NULL || *slug == '\0' || KITE_OFFER_SET(o, instance_type, slug) != 0)
    return "slug is not a size's name";
  if (!kite_cloud_rest_whole(json_object_get(z, "vcpus"), 1 << 16, &vcpus) || vcpus == 0)
    return "vcpus is not a count of CPUs";
  if (!kite_cloud_rest_whole(json_object_get(z, "memory"), 1 << 30, &memory) || memory == 0)
    return "memory is not a whole number of MB";
  if (!kite_cloud_rest_whole(json_object_get(z, "disk"), 1 << 24, &disk))
    return "disk is not a whole number of GB";
  if (!kite_cloud_rest_price(json_object_get(z, "price_hourly"), &o->price))
    return "price_hourly is not a price";
  json_t *av = json_object_get(z, "available");
  if (av && !json_is_boolean(av))
    return "available is not true or false";
  if (!json_is_array(json_object_get(z, "regions")))
    return "regions is not a list";
  o->vcpus = (unsigned)vcpus;
  o->memory_mb = memory;
  o->disk_gb = (unsigned)disk;
  o->spot_price = -1;
  o->available = json_is_false(av) ? 0 : -1;
  KITE_OFFER_SET(o, arch, "x86_64");
  return gpu_into(json_object_get(z, "gpu_info"), o);
}

/* The offers of one size: one per region it lists (the asked one only). */
static const char *size_offers(kite_cloud_call_t *call, json_t *z) {
  kite_offer_t o = {0};
  const char *why = size_into(z, &o);
  const char *want = call->cfg->region;
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(z, "regions"), i, r) {
    const char *region = json_string_value(r);
    if (why == NULL && (region == NULL || *region == '\0' || KITE_OFFER_SET(&o, region, region)))
      why = "regions has an entry that is not a region's name";
    if (why)
      return why;
    if (want == NULL || strcmp(want, region) == 0)
      kite_cloud_offer(call, &o);
  }
  return why;
}

static void on_sizes(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *list = kite_cloud_rest_member(call, status, r, "sizes", JSON_ARRAY, &j, NULL);
  if (list == NULL)
    return;
  if (!kite_cloud_rest_offers(call, list, "sizes", "slug", size_offers)) {
    json_decref(j);
    return;
  }
  const char *next = next_page(call, j);
  int rc = next && ++call->step < 100
               ? kite_cloud_rest_http(call, "GET", next, true, NULL, on_sizes)
               : -1;
  json_decref(j);
  if (rc == -1)
    kite_cloud_answer_ok(call);
  else if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

static void do_catalog(kite_cloud_call_t *call) {
  int rc = kite_cloud_rest_http(call, "GET", "/v2/sizes?per_page=200", false, NULL, on_sizes);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const kite_cloud_advice_t do_advice[] = {
    {"unauthorized", 0, NULL, KITE_ECREDENTIALS, "the API token was rejected: " TOKEN_HELP},
    {NULL, 401, NULL, KITE_ECREDENTIALS, "the API token was rejected: " TOKEN_HELP},
    {NULL, 403, NULL, KITE_ECREDENTIALS,
     "the API token may not do this: give it write scope (droplet, ssh_key, tag)"},
    {"unprocessable_entity", 0, "droplet limit", KITE_EQUOTA,
     "raise the account's droplet limit (Settings → Droplet limit) or ask for fewer nodes"},
    {"unprocessable_entity", 0, "invalid size", KITE_EUNAVAILABLE,
     "DigitalOcean has no such size: check resources.instance_type against its sizes (`doctl "
     "compute size list`)"},
    {"unprocessable_entity", 0, "not available", KITE_ECAPACITY, "choose another region or size"},
    {"unprocessable_entity", 0, "unavailable", KITE_ECAPACITY, "choose another region or size"},
    {"unprocessable_entity", 0, "capacity", KITE_ECAPACITY, "choose another region or size"},
    {"unprocessable_entity", 0, NULL, KITE_EPROVIDER,
     "check region, size (instance_type) and image"},
    {NULL, 400, NULL, KITE_EPROVIDER, "check region, size (instance_type) and image"},
    {NULL, 429, NULL, KITE_EAGAIN,
     "rate limited even after backing off: retry later, or run fewer kite processes on this "
     "account"},
};

static const kite_cloud_ops_t do_ops = {
    .name = NAME,
    .title = "DigitalOcean",
    .noun = "droplet",
    .batch_max = 10, /* names per create, DigitalOcean's limit */
    .endpoint_hint = "api_url in the provider options or KITE_DO_API_URL",
    .configure = do_configure,
    .configure_reach = kite_cloud_rest_configure_reach,
    .free_api = kite_cloud_rest_free,
    .prepare = do_prepare,
    .create = do_create,
    .find = do_find,
    .describe = do_describe,
    .destroy = do_destroy,
    .list_page = do_list_page,
    .catalog = do_catalog,
    .advice = do_advice,
    .n_advice = KITE_ARRAY_SIZE(do_advice),
};

static void free_provider(kite_do_provider_t *dp) {
  if (dp == NULL)
    return;
  free(dp->token);
  free(dp->api_url);
  free(dp->user);
  free(dp->region);
  free(dp->size);
  free(dp->image);
  free(dp->fingerprint);
  if (dp->cli_token)
    memset(dp->cli_token, 0, strlen(dp->cli_token));
  free(dp->cli_token);
  free(dp->cli_where);
  free(dp);
}

/* The skeleton frees the provider's state when it stops: see kite_cloud_new. */
static void on_cloud_freed(void *provider) {
  free_provider(provider);
}

int kite_do_provider_new(kite_runtime_t *rt, const kite_do_provider_options_t *opts,
                         kite_do_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_do_provider_options_t o = {0};
  if (opts)
    o = *opts;
  kite_do_provider_t *dp = calloc(1, sizeof(*dp));
  if (dp == NULL)
    return KITE_ENOMEM;
  dp->token = kite__strdup(o.token);
  dp->api_url = kite__strdup(o.api_url);
  dp->user = kite__strdup(o.ssh_user);
  dp->region = kite__strdup(o.region);
  dp->size = kite__strdup(o.size);
  dp->image = kite__strdup(o.image);
  dp->port = o.ssh_port;
  if ((o.token && !dp->token) || (o.api_url && !dp->api_url) || (o.ssh_user && !dp->user) ||
      (o.region && !dp->region) || (o.size && !dp->size) || (o.image && !dp->image)) {
    free_provider(dp);
    return KITE_ENOMEM;
  }
  if (dp->token)
    kite_secret_add(rt, dp->token);
  kite_cloud_options_t co = {.ca_file = o.ca_file,
                             .max_retries = o.max_retries,
                             .backoff_base_ms = o.backoff_base_ms,
                             .http_timeout_ms = o.http_timeout_ms,
                             .poll_ms = o.poll_ms,
                             .running_timeout_ms = o.active_timeout_ms,
                             .gone_timeout_ms = o.delete_timeout_ms,
                             .free_provider = on_cloud_freed};
  int rc = kite_cloud_new(rt, &do_ops, &co, dp, &dp->cloud);
  if (rc != 0) {
    free_provider(dp);
    return rc;
  }
  if (out)
    *out = dp;
  return 0;
}
