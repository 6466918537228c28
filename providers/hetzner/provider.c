/* The Hetzner Cloud provider: servers through the Hetzner Cloud API (v1, bearer token), on
 * the cloud skeleton (providers/cloud/cloud.h owns the lifecycle; this file is Hetzner's
 * shapes, from the official OpenAPI description).
 *
 * Design notes
 * - Prepare (once per endpoint and token): kite's SSH key in the project, found by its MD5
 *   fingerprint (GET /v1/ssh_keys?fingerprint=...) or created (POST /v1/ssh_keys, labelled
 *   kite=managed); its id is the site's data and goes into every create.
 * - Create: POST /v1/servers, one server per request (the API makes one), with name,
 *   server_type, image, location, ssh_keys, user_data and the label kite-pool=TAG. The API
 *   has no idempotency token: after an ambiguous answer find asks for the server by its name
 *   (names are unique in a project).
 * - Describe: GET /v1/servers/{id}: initializing and starting are pending, running runs, off
 *   is stopped, stopping and deleting are on their way out; public_net.ipv4.ip; the hourly
 *   gross price of its server type at its location.
 * - Destroy: DELETE /v1/servers/{id}. List: GET /v1/servers?label_selector=kite-pool=TAG,
 *   page by page (meta.pagination.next_page is the cursor).
 * - Catalog: GET /v1/server_types page by page; deprecated types are left out, every other
 *   gives one offer per entry of its prices (location → region; only the request's region when
 *   it names one) at the gross hourly price (the project's currency, as Hetzner bills it), with
 *   cores, memory (GB) and disk; architecture x86 is x86_64, arm arm64. An answer with a type
 *   kite cannot read is refused whole, saying which.
 * - No spot servers on Hetzner: the skeleton refuses spot launches (ops.spot is false).
 * - Credentials: "token" in the request's provider options, the provider's options,
 *   $HCLOUD_TOKEN, or the active context of the hcloud command's cli.toml; registered as a
 *   secret before use. The endpoint: "api_url", $KITE_HETZNER_API_URL, or the public API. A
 *   reach record names the endpoint and the project (a keyed hash of the token).
 * - Not cleaned up at stop: the SSH key (free, and other kite processes of the project may be
 *   about to use it; a create that finds it gone prepares the project again). */
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "../cloud/rest.h"
#include "../provider_info.h"
#include "kite/hetzner.h"
#include "kite/offer.h"
#include "kite_impl.h"

#define NAME "hetzner"
#define DEFAULT_API "https://api.hetzner.cloud/v1"
#define DEFAULT_LOCATION "fsn1"
#define DEFAULT_TYPE "cx22"
#define DEFAULT_IMAGE "ubuntu-24.04"
#define POOL_LABEL "kite-pool"
#define PER_PAGE 50
#define TOKEN_HELP                                                                                 \
  "set HCLOUD_TOKEN to a read & write API token of the project (Hetzner Cloud Console → "        \
  "project → Security → API tokens), or put \"token\" in the provider options"

struct kite_hetzner_provider {
  kite_cloud_t *cloud;
  char *token, *api_url, *user, *location, *server_type, *image;
  unsigned port;
  char *fingerprint; /* of kite's key, once known */
  /* The token of the hcloud command's configuration, read once (the first request that needs
   * it), and the file it came from. */
  char *cli_token, *cli_where;
  bool cli_read;
};

/* ---- configuration -------------------------------------------------------------------------- */

/* The value of `key = "..."` on a TOML line, or NULL. */
static char *toml_string(const char *line, const char *key) {
  size_t n = strlen(key);
  line += strspn(line, " \t");
  if (strncmp(line, key, n) != 0)
    return NULL;
  line += n;
  line += strspn(line, " \t");
  if (*line++ != '=')
    return NULL;
  line += strspn(line, " \t");
  if (*line++ != '"')
    return NULL;
  size_t len = strcspn(line, "\"");
  return line[len] == '"' ? strndup(line, len) : NULL;
}

/* The token of the hcloud command's active context ($HCLOUD_CONFIG, else
 * ~/.config/hcloud/cli.toml: active_context = "x", then [[contexts]] name = "x", token = "..."). */
static char *hcloud_token(char **where) {
  const char *cfg = getenv("HCLOUD_CONFIG"), *home = getenv("HOME");
  char *path = cfg && *cfg ? kite__strdup(cfg)
               : home      ? kite__sprintf("%s/.config/hcloud/cli.toml", home)
                           : NULL;
  *where = path;
  char *text = NULL;
  if (path == NULL || kite__read_file(path, &text, NULL) != 0)
    return NULL;
  /* $HCLOUD_CONTEXT names the context instead of active_context, as it does for hcloud. */
  const char *ctx = getenv("HCLOUD_CONTEXT");
  bool named = ctx && *ctx;
  char *active = named ? kite__strdup(ctx) : NULL, *name = NULL, *tok = NULL, *found = NULL;
  for (char *line = text; line && *line;) {
    char *nl = strchr(line, '\n');
    if (nl)
      *nl = '\0';
    char *v;
    if ((v = toml_string(line, "active_context")) != NULL) {
      if (named) {
        free(v);
      } else {
        free(active);
        active = v;
      }
    } else if (strstr(line, "[[contexts]]")) {
      free(name);
      name = NULL;
    } else if ((v = toml_string(line, "name")) != NULL) {
      free(name);
      name = v;
    } else if ((v = toml_string(line, "token")) != NULL) {
      if (name && active && strcmp(name, active) == 0 && found == NULL)
        found = v;
      else {
        memset(v, 0, strlen(v));
        free(v);
      }
    }
    line = nl ? nl + 1 : NULL;
  }
  tok = found;
  free(active);
  free(name);
  memset(text, 0, strlen(text));
  free(text);
  return tok;
}

bool kite__hetzner_configured(void) {
  if (kite_cloud_first(getenv("HCLOUD_TOKEN"), NULL, NULL))
    return true;
  char *where = NULL, *tok = hcloud_token(&where);
  bool found = tok != NULL;
  if (tok)
    memset(tok, 0, strlen(tok));
  free(tok);
  free(where);
  return found;
}

static const kite_cloud_rest_errors_t hz_errors = {"error", "code", "message"};

static int hz_configure(kite_cloud_t *c, const char *options,
                        const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                        char **msg) {
  kite_hetzner_provider_t *hp = kite_cloud_provider(c);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(c), options, msg);
  if (o == NULL)
    return KITE_EINVAL;
  const char *tok = kite_cloud_first(hp->token, getenv("HCLOUD_TOKEN"), NULL);
  if (tok == NULL && json_object_get(o, "token") == NULL) {
    if (!hp->cli_read) {
      hp->cli_token = hcloud_token(&hp->cli_where);
      hp->cli_read = true;
    }
    tok = hp->cli_token;
  }
  char *looked = kite__sprintf("the provider options, $HCLOUD_TOKEN and the active context of %s",
                               hp->cli_where ? hp->cli_where : "hcloud's cli.toml");
  kite_cloud_rest_defaults_t d = {
      .token = tok,
      .token_help = TOKEN_HELP,
      .looked_in = looked ? looked : "the provider options and the environment",
      .url = kite_cloud_first(hp->api_url, getenv("KITE_HETZNER_API_URL"), NULL),
      .url_default = DEFAULT_API,
      .url_hint = "api_url in the provider options or KITE_HETZNER_API_URL",
      .errors = &hz_errors,
      .account = "project",
      .user = hp->user,
      .port = hp->port,
      .region = hp->location,
      .type = hp->server_type,
      .image = hp->image,
      .region_builtin = DEFAULT_LOCATION,
      .type_builtin = DEFAULT_TYPE,
      .image_builtin = DEFAULT_IMAGE};
  int rc = kite_cloud_rest_configure(c, o, &d, launch, cfg, msg);
  free(looked);
  json_decref(o);
  return rc;
}

/* ---- requests and answers ------------------------------------------------------------------- */

/* A create refused because kite's key is not in the project (someone deleted it): the
 * project is prepared again. */
static bool key_gone(const kite_cloud_call_t *call, const char *code, const char *message) {
  (void)code;
  return call->kind == KITE_CLOUD_CALL_CREATE && message &&
         (strstr(message, "ssh_key") || strstr(message, "SSH key"));
}

/* ---- prepare: kite's key in the project ---------------------------------------------------- */

static void on_key_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  char *id = kite_cloud_rest_id(json_object_get(j, "ssh_key"));
  json_decref(j);
  if (id == NULL) {
    kite_cloud_rest_fail(call, status, r, key_gone);
    return;
  }
  free(*call->site_data);
  *call->site_data = id;
  kite_cloud_answer_ok(call);
}

static void on_key_found(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_hetzner_provider_t *hp = kite_cloud_provider(call->cloud);
  json_t *j = NULL;
  json_t *keys = kite_cloud_rest_member(call, status, r, "ssh_keys", JSON_ARRAY, &j, key_gone);
  if (keys == NULL)
    return;
  char *id = kite_cloud_rest_id(json_array_get(keys, 0));
  json_decref(j);
  if (id) {
    free(*call->site_data);
    *call->site_data = id;
    kite_cloud_answer_ok(call);
    return;
  }
  /* Named after the host and the key, so two kite hosts never claim one name. */
  char host[64] = "";
  gethostname(host, sizeof(host) - 1);
  char fp8[12] = "";
  for (size_t i = 0, k = 0; hp->fingerprint[i] && k < 8; i++)
    if (hp->fingerprint[i] != ':')
      fp8[k++] = hp->fingerprint[i];
  char *name = kite__sprintf("kite-%s-%s", host[0] ? host : "key", fp8);
  json_t *body = json_pack("{s:s, s:s, s:{s:s}}", "name", name ? name : "kite", "public_key",
                           kite_cloud_pubkey(call->cloud), "labels", "kite", "managed");
  free(name);
  int rc = body ? kite_cloud_rest_http(call, "POST", "/ssh_keys", false, body, on_key_created)
                : KITE_ENOMEM;
  json_decref(body);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

static void hz_prepare(kite_cloud_call_t *call) {
  kite_hetzner_provider_t *hp = kite_cloud_provider(call->cloud);
  if (hp->fingerprint == NULL)
    hp->fingerprint = kite_cloud_md5_fingerprint(kite_cloud_pubkey(call->cloud));
  char *fp = hp->fingerprint ? kite_cloud_escape(hp->fingerprint) : NULL;
  char *path = fp ? kite__sprintf("/ssh_keys?fingerprint=%s", fp) : NULL;
  int rc = path ? kite_cloud_rest_http(call, "GET", path, false, NULL, on_key_found) : KITE_ENOMEM;
  free(fp);
  free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- create, find --------------------------------------------------------------------------- */

static void on_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  char *id = kite_cloud_rest_id(json_object_get(j, "server"));
  json_decref(j);
  if (id == NULL) {
    kite_cloud_rest_fail(call, status, r, key_gone);
    return;
  }
  kite_cloud_created(call, 0, id);
  free(id);
  kite_cloud_answer_ok(call);
}

static void hz_create(kite_cloud_call_t *call) {
  const kite_cloud_cfg_t *cfg = call->cfg;
  const kite_cloud_launch_t *l = call->launches[0];
  const char *key = *call->site_data;
  json_t *body =
      json_pack("{s:s, s:s, s:s, s:s, s:[s], s:{s:s}, s:b}", "name", l->name, "server_type",
                cfg->type, "image", cfg->image, "location", cfg->region, "ssh_keys", key ? key : "",
                "labels", POOL_LABEL, l->tag, "start_after_create", 1);
  if (body && l->user_data && *l->user_data)
    json_object_set_new(body, "user_data", json_string(l->user_data));
  int rc = body && key ? kite_cloud_rest_http(call, "POST", "/servers", false, body, on_created)
                       : KITE_ENOMEM;
  json_decref(body);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

static void on_found(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *servers = kite_cloud_rest_member(call, status, r, "servers", JSON_ARRAY, &j, key_gone);
  if (servers == NULL)
    return;
  size_t i;
  json_t *s;
  json_array_foreach(servers, i, s) {
    const char *name = json_string_value(json_object_get(s, "name"));
    char *id = name && strcmp(name, call->launches[0]->name) == 0 ? kite_cloud_rest_id(s) : NULL;
    kite_cloud_created(call, 0, id);
    free(id);
  }
  json_decref(j);
  kite_cloud_answer_ok(call); /* found, or not there */
}

static void hz_find(kite_cloud_call_t *call) {
  char *name = kite_cloud_escape(call->launches[0]->name);
  char *path = name ? kite__sprintf("/servers?name=%s", name) : NULL;
  int rc = path ? kite_cloud_rest_http(call, "GET", path, false, NULL, on_found) : KITE_ENOMEM;
  free(name);
  free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- describe, destroy, list ---------------------------------------------------------------- */

static kite_cloud_state_t state_of(const char *st) {
  static const struct {
    const char *status;
    kite_cloud_state_t state;
  } map[] = {{"initializing", KITE_CLOUD_PENDING}, {"starting", KITE_CLOUD_PENDING},
             {"running", KITE_CLOUD_RUNNING},      {"off", KITE_CLOUD_STOPPED},
             {"stopping", KITE_CLOUD_STOPPING},    {"deleting", KITE_CLOUD_STOPPING}};
  for (size_t i = 0; st && i < KITE_ARRAY_SIZE(map); i++)
    if (strcmp(map[i].status, st) == 0)
      return map[i].state;
  return KITE_CLOUD_PENDING; /* migrating, rebuilding, unknown: not yet usable */
}

/* The hourly gross price of the server's type where it is. */
static double price_of(json_t *s) {
  const char *where = json_string_value(
      json_object_get(json_object_get(json_object_get(s, "datacenter"), "location"), "name"));
  if (where == NULL)
    where = json_string_value(json_object_get(json_object_get(s, "location"), "name"));
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(json_object_get(s, "server_type"), "prices"), i, p) {
    const char *loc = json_string_value(json_object_get(p, "location"));
    const char *gross =
        json_string_value(json_object_get(json_object_get(p, "price_hourly"), "gross"));
    if (loc && gross && where && strcmp(loc, where) == 0)
      return strtod(gross, NULL);
  }
  return 0;
}

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *s = kite_cloud_rest_member(call, status, r, "server", JSON_OBJECT, &j, key_gone);
  if (s == NULL)
    return;
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  a.instance.state = state_of(json_string_value(json_object_get(s, "status")));
  a.instance.address = json_string_value(
      json_object_get(json_object_get(json_object_get(s, "public_net"), "ipv4"), "ip"));
  a.instance.price_hourly = price_of(s);
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void hz_describe(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "GET", NULL, on_described, "/servers/%s", call->id);
}

static void hz_destroy(kite_cloud_call_t *call) {
  kite_cloud_rest_sendf(call, "DELETE", NULL, kite_cloud_rest_done, "/servers/%s", call->id);
}

/* The page a list answer says comes next (meta.pagination.next_page), or 0 at the last. */
static json_int_t next_page(json_t *j) {
  json_t *next =
      json_object_get(json_object_get(json_object_get(j, "meta"), "pagination"), "next_page");
  return json_is_integer(next) ? json_integer_value(next) : 0;
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *servers = kite_cloud_rest_member(call, status, r, "servers", JSON_ARRAY, &j, key_gone);
  if (servers == NULL)
    return;
  size_t i;
  json_t *s;
  json_array_foreach(servers, i, s) {
    char *id = kite_cloud_rest_id(s);
    kite_cloud_listed(call, id,
                      json_string_value(json_object_get(json_object_get(s, "labels"), POOL_LABEL)));
    free(id);
  }
  json_int_t page = next_page(j);
  char cursor[24] = "";
  if (page > 1)
    snprintf(cursor, sizeof(cursor), "%lld", (long long)page);
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK, .next = cursor[0] ? cursor : NULL};
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void hz_list_page(kite_cloud_call_t *call) {
  bool any = strcmp(call->tag, "*") == 0;
  char *sel = kite__sprintf(any ? "%s" : "%s=%s", POOL_LABEL, call->tag);
  char *esc = sel ? kite_cloud_escape(sel) : NULL;
  char *path = esc ? kite__sprintf("/servers?label_selector=%s&per_page=%d&page=%s", esc, PER_PAGE,
                                   call->cursor ? call->cursor : "1")
                   : NULL;
  int rc = path ? kite_cloud_rest_http(call, "GET", path, false, NULL, on_listed) : KITE_ENOMEM;
  free(sel);
  free(esc);
  free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

/* ---- catalog: the server types ----------------------------------------------------------------
 */

/* One server type into o (but its region and price): NULL, or what is wrong with it. */
static const char *type_into(json_t *t, kite_offer_t *o) {
  uint64_t cores = 0, disk = 0;
  const char *name = json_string_value(json_object_get(t, "name"));
  const char *arch = json_string_value(json_object_get(t, "architecture"));
  json_t *memory = json_object_get(t, "memory");
  if (name == NULL || *name == '\0' || KITE_OFFER_SET(o, instance_type, name) != 0)
    return "name is not a server type's name";
  if (!kite_cloud_rest_whole(json_object_get(t, "cores"), 1 << 16, &cores) || cores == 0)
    return "cores is not a count of CPUs";
  double gb = json_is_number(memory) ? json_number_value(memory) : -1;
  if (!(gb > 0 && gb <= 1 << 20))
    return "memory is not a size in GB";
  if (!kite_cloud_rest_whole(json_object_get(t, "disk"), 1 << 24, &disk))
    return "disk is not a whole number of GB";
  if (arch == NULL || (strcmp(arch, "x86") != 0 && strcmp(arch, "arm") != 0))
    return "architecture is neither x86 nor arm";
  if (!json_is_array(json_object_get(t, "prices")))
    return "prices is not a list";
  o->vcpus = (unsigned)cores;
  o->memory_mb = (uint64_t)(gb * 1024 + 0.5);
  o->disk_gb = (unsigned)disk;
  o->spot_price = -1;
  o->available = -1;
  KITE_OFFER_SET(o, arch, strcmp(arch, "arm") == 0 ? "arm64" : "x86_64");
  return NULL;
}

/* The offers of one type: one per location it has a price in (the asked one only). */
static const char *type_offers(kite_cloud_call_t *call, json_t *t) {
  json_t *deprecated = json_object_get(t, "deprecated");
  if (deprecated && !json_is_boolean(deprecated) && !json_is_null(deprecated))
    return "deprecated is not true or false";
  if (json_is_true(deprecated))
    return NULL; /* no longer sold */
  kite_offer_t o = {0};
  const char *why = type_into(t, &o);
  const char *want = call->cfg->region;
  size_t i;
  json_t *p;
  json_array_foreach(json_object_get(t, "prices"), i, p) {
    const char *loc = json_string_value(json_object_get(p, "location"));
    if (why == NULL && (loc == NULL || *loc == '\0' || KITE_OFFER_SET(&o, region, loc) != 0))
      why = "prices has an entry without a location";
    if (why == NULL && !kite_cloud_rest_price(
                           json_object_get(json_object_get(p, "price_hourly"), "gross"), &o.price))
      why = "prices has an entry whose price_hourly.gross is not a price";
    if (why)
      return why;
    if (want == NULL || strcmp(want, loc) == 0)
      kite_cloud_offer(call, &o);
  }
  return why;
}

static void on_types(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  json_t *list = kite_cloud_rest_member(call, status, r, "server_types", JSON_ARRAY, &j, NULL);
  if (list == NULL)
    return;
  if (!kite_cloud_rest_offers(call, list, "server_types", "name", type_offers)) {
    json_decref(j);
    return;
  }
  json_int_t page = next_page(j);
  json_decref(j);
  /* Pages go forward, and not for ever. */
  if (page <= call->step + 1 || page > 100) {
    kite_cloud_answer_ok(call);
    return;
  }
  call->step = (int)page - 1;
  kite_cloud_rest_sendf(call, "GET", NULL, on_types, "/server_types?per_page=%d&page=%lld",
                        PER_PAGE, (long long)page);
}

static void hz_catalog(kite_cloud_call_t *call) {
  call->step = 0; /* the page asked for, less one */
  kite_cloud_rest_sendf(call, "GET", NULL, on_types, "/server_types?per_page=%d&page=1", PER_PAGE);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const kite_cloud_advice_t hz_advice[] = {
    {"unauthorized", 0, NULL, KITE_ECREDENTIALS, "the API token was rejected: " TOKEN_HELP},
    {"token_readonly", 0, NULL, KITE_ECREDENTIALS,
     "the API token is read-only: make one with read & write permission"},
    {"forbidden", 0, NULL, KITE_ECREDENTIALS,
     "the API token may not do this: use a read & write token of the project"},
    {NULL, 401, NULL, KITE_ECREDENTIALS, "the API token was rejected: " TOKEN_HELP},
    {"resource_limit_exceeded", 0, NULL, KITE_EQUOTA,
     "the project's server limit is reached: ask Hetzner to raise it (Console → Limits) or ask "
     "for fewer nodes"},
    {"resource_unavailable", 0, NULL, KITE_ECAPACITY,
     "choose another location (region) or server type (instance_type)"},
    {"placement_error", 0, NULL, KITE_ECAPACITY,
     "choose another location (region) or server type (instance_type)"},
    {"invalid_input", 0, "server_type", KITE_EUNAVAILABLE,
     "that server type is not sold there: choose another server type (instance_type) or location "
     "(region); `hcloud server-type list` lists them"},
    {"invalid_input", 0, NULL, KITE_EPROVIDER,
     "check location (region), server type (instance_type) and image"},
    {"uniqueness_error", 0, NULL, KITE_EPROVIDER,
     "a resource of that name exists in the project already"},
    {"rate_limit_exceeded", 0, NULL, KITE_EAGAIN,
     "rate limited even after backing off: retry later, or run fewer kite processes on this "
     "project"},
    {"locked", 0, NULL, KITE_EAGAIN, "the server is busy with another action; retry later"},
};

static const kite_cloud_ops_t hz_ops = {
    .name = NAME,
    .title = "Hetzner Cloud",
    .noun = "server",
    .batch_max = 1,
    .endpoint_hint = "api_url in the provider options or KITE_HETZNER_API_URL",
    .configure = hz_configure,
    .configure_reach = kite_cloud_rest_configure_reach,
    .free_api = kite_cloud_rest_free,
    .prepare = hz_prepare,
    .create = hz_create,
    .find = hz_find,
    .describe = hz_describe,
    .destroy = hz_destroy,
    .list_page = hz_list_page,
    .catalog = hz_catalog,
    .free_site_data = free,
    .advice = hz_advice,
    .n_advice = KITE_ARRAY_SIZE(hz_advice),
};

static void free_provider(void *p) {
  kite_hetzner_provider_t *hp = p;
  if (hp == NULL)
    return;
  free(hp->token);
  free(hp->api_url);
  free(hp->user);
  free(hp->location);
  free(hp->server_type);
  free(hp->image);
  free(hp->fingerprint);
  if (hp->cli_token)
    memset(hp->cli_token, 0, strlen(hp->cli_token));
  free(hp->cli_token);
  free(hp->cli_where);
  free(hp);
}

int kite_hetzner_provider_new(kite_runtime_t *rt, const kite_hetzner_provider_options_t *opts,
                              kite_hetzner_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_hetzner_provider_options_t o = {0};
  if (opts)
    o = *opts;
  kite_hetzner_provider_t *hp = calloc(1, sizeof(*hp));
  if (hp == NULL)
    return KITE_ENOMEM;
  const char *in[] = {o.token, o.api_url, o.ssh_user, o.location, o.server_type, o.image};
  char **to[] = {&hp->token, &hp->api_url, &hp->user, &hp->location, &hp->server_type, &hp->image};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(in); i++)
    if (in[i] && (*to[i] = kite__strdup(in[i])) == NULL) {
      free_provider(hp);
      return KITE_ENOMEM;
    }
  hp->port = o.ssh_port;
  if (hp->token)
    kite_secret_add(rt, hp->token);
  kite_cloud_options_t co = KITE_CLOUD_OPTIONS_OF(o, free_provider);
  int rc = kite_cloud_new(rt, &hz_ops, &co, hp, &hp->cloud);
  if (rc != 0) {
    free_provider(hp);
    return rc;
  }
  if (out)
    *out = hp;
  return 0;
}
