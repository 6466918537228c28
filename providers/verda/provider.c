/* The Verda (formerly DataCrunch) provider: GPU instances through Verda's public API (v1,
 * OAuth2 client credentials), on the cloud skeleton (providers/cloud/cloud.h owns the
 * lifecycle; this file is Verda's shapes, from the official OpenAPI description and the digest
 * beside it, ../shared/specs/verda-api.md).
 *
 * Design notes
 * - Credentials: a client id and secret ("client_id", "client_secret" in the options, else
 *   $VERDA_CLIENT_ID and $VERDA_CLIENT_SECRET, else $DATACRUNCH_CLIENT_ID and
 *   $DATACRUNCH_CLIENT_SECRET), exchanged at POST /oauth2/token (client_credentials) for an
 *   access token, cached per site (endpoint and client) and used until a minute before it
 *   expires; then the refresh token is tried, and the client credentials again when that is
 *   refused. A call answered 401 gets a new token and is sent once more. The secret, the
 *   access and the refresh tokens are registered as secrets. A reach record names the
 *   endpoint and the account (a keyed hash of the secret).
 * - Every call goes through verda_send(): the token first when there is none, then the
 *   request; call->data holds what is to be sent meanwhile.
 * - Prepare (once per site): kite's SSH key on the project, found by its key text in
 *   GET /sshkeys or created (POST /sshkeys, answered with the new id as text).
 * - Create: a startup script first when the instance needs one (POST /scripts, named after the
 *   launch): it installs the host key kite made (first_boot: the key in the script, base64,
 *   installed as the ed25519 host key, sshd told to read it again), then runs the pool's user
 *   data. Then POST /instances with instance_type, image, hostname (the launch's name),
 *   location_code (the region), ssh_key_ids, startup_script_id, description, the tag
 *   kite-pool=TAG, is_spot with contract SPOT or PAY_AS_YOU_GO, and an OS volume of disk_gb
 *   whose on_spot_discontinue is delete_permanently (a discontinued spot instance leaves nothing
 *   billing). The answer is the id (text, or a JSON string). The API has no idempotency token:
 *   after an ambiguous answer find lists the pool's instances by tag and looks for the
 *   hostname.
 * - A startup script holds a private host key: it is deleted as soon as its instance is seen
 *   running, when the instance is destroyed, and at the latest when the provider stops.
 * - Describe: GET /instances/{id}: ordered, new, validating, provisioning and pending are
 *   pending; running runs (ip); offline is stopped; deleting stopping; notfound gone;
 *   discontinued is stopped and, for a spot instance, preempted (Verda evicts spot instances
 *   without notice); error, installation_failed and no_capacity never run (the launch fails
 *   over).
 * - Destroy: PUT /instances {action delete, id [ID]} (the OS volume is deleted with it). List:
 *   GET /instances?tag=kite-pool=TAG (tag=kite-pool for every pool), one answer.
 * - Catalog: GET /instance-types?currency=usd (no token needed) and the availability of each
 *   type per location, on demand and spot (GET /instance-availability?is_spot=...): one offer
 *   per type and location where it can be launched, the on-demand price where it is available
 *   on demand, the spot price where it is available as spot. Prices are text in the answer.
 * - Not cleaned up at stop: kite's SSH key (free, and other kite processes may use it). */
#include <jansson.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>

#include "../cloud/rest.h"
#include "../provider_info.h"
#include "kite/offer.h"
#include "kite/verda.h"
#include "kite_impl.h"

#define NAME "verda"
#define DEFAULT_API "https://api.verda.com/v1"
#define DEFAULT_LOCATION "FIN-01"
#define DEFAULT_TYPE "CPU.4V.16G"
#define DEFAULT_IMAGE "ubuntu-24.04"
#define POOL_TAG "kite-pool"
#define TOKEN_MARGIN_MS 60000
#define CRED_HELP                                                                                   \
  "set VERDA_CLIENT_ID and VERDA_CLIENT_SECRET to an API client of the project (Verda console → " \
  "Keys → Cloud API credentials), or put \"client_id\" and \"client_secret\" in the provider "    \
  "options"

/* A cached access token of one site. */
typedef struct vtoken {
  char *site, *access, *refresh;
  uint64_t expires_ms;
  struct vtoken *next;
} vtoken_t;

/* A startup script kite made for a launch (it holds the instance's private host key), until it
 * is deleted; instance_id once the create answered. */
typedef struct vscript {
  char *site, *launch_name, *instance_id, *script_id;
  struct vscript *next;
} vscript_t;

struct kite_verda_provider {
  kite_cloud_t *cloud;
  char *client_id, *client_secret, *api_url, *user, *location, *instance_type, *image;
  unsigned port, disk_gb;
  vtoken_t *tokens;
  vscript_t *scripts;
};

typedef struct verda_api {
  kite_cloud_rest_t rest; /* first: the rest helpers read cfg->api as one; token: the secret */
  char *client_id;
  unsigned disk_gb;
} verda_api_t;

/* ---- configuration -------------------------------------------------------------------------- */

static const char *env_id(void) {
  return kite_cloud_first(getenv("VERDA_CLIENT_ID"), getenv("DATACRUNCH_CLIENT_ID"), NULL);
}
static const char *env_secret(void) {
  return kite_cloud_first(getenv("VERDA_CLIENT_SECRET"), getenv("DATACRUNCH_CLIENT_SECRET"), NULL);
}

bool kite__verda_configured(void) {
  return env_id() && env_secret();
}

static const kite_cloud_rest_errors_t verda_errors = {NULL, "code", "message"};

static void verda_free_api(void *p) {
  verda_api_t *a = p;
  if (a == NULL)
    return;
  free(a->rest.url);
  free(a->rest.token);
  free(a->client_id);
  free(a);
}

static int verda_configure(kite_cloud_t *c, const char *options,
                           const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                           char **msg) {
  kite_verda_provider_t *vp = kite_cloud_provider(c);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(c), options, msg);
  if (o == NULL)
    return KITE_EINVAL;
  const char *id =
      kite_cloud_first(json_string_value(json_object_get(o, "client_id")), vp->client_id, env_id());
  /* "token" is the skeleton's name for an account's secret (kite_cloud_rest_configure reads
   * it): the same as "client_secret". */
  const char *secret = kite_cloud_first(json_string_value(json_object_get(o, "client_secret")),
                                        json_string_value(json_object_get(o, "token")),
                                        kite_cloud_first(vp->client_secret, env_secret(), NULL));
  if (id == NULL || secret == NULL) {
    *msg = kite__sprintf("verda: no API client found (%s missing): %s (kite looked in the provider "
                         "options, $VERDA_CLIENT_ID/$VERDA_CLIENT_SECRET and "
                         "$DATACRUNCH_CLIENT_ID/$DATACRUNCH_CLIENT_SECRET)",
                         id ? "the secret" : "the client id", CRED_HELP);
    json_decref(o);
    return KITE_ECREDENTIALS;
  }
  kite_cloud_rest_defaults_t d = {
      .token = secret,
      .token_help = CRED_HELP,
      .looked_in = "the provider options and the environment",
      .url = kite_cloud_first(vp->api_url, getenv("KITE_VERDA_API_URL"), NULL),
      .url_default = DEFAULT_API,
      .url_hint = "api_url in the provider options or KITE_VERDA_API_URL",
      .errors = &verda_errors,
      .account = "client",
      .user = vp->user,
      .port = vp->port,
      .region = vp->location,
      .type = vp->instance_type,
      .image = vp->image,
      .region_builtin = DEFAULT_LOCATION,
      .type_builtin = DEFAULT_TYPE,
      .image_builtin = DEFAULT_IMAGE};
  int rc = kite_cloud_rest_configure(c, o, &d, launch, cfg, msg);
  kite_cloud_rest_t *rest = cfg->api;
  verda_api_t *api = rest ? calloc(1, sizeof(*api)) : NULL;
  if (rest && api == NULL && rc == 0)
    rc = KITE_ENOMEM;
  if (api) {
    api->rest = *rest;
    free(rest);
    cfg->api = api;
    api->client_id = kite__strdup(id);
    if (api->client_id == NULL && rc == 0)
      rc = KITE_ENOMEM;
    json_t *disk = json_object_get(o, "disk_gb");
    api->disk_gb = json_is_integer(disk) ? (unsigned)json_integer_value(disk)
                   : vp->disk_gb         ? vp->disk_gb
                                         : 50;
  }
  json_decref(o);
  return rc;
}

/* ---- requests: the token first -------------------------------------------------------------- */

static vtoken_t *token_of(kite_verda_provider_t *vp, const char *site) {
  for (vtoken_t *t = vp->tokens; t; t = t->next)
    if (strcmp(t->site, site) == 0)
      return t;
  return NULL;
}

static void token_wipe(char **s) {
  if (*s)
    memset(*s, 0, strlen(*s));
  free(*s);
  *s = NULL;
}

/* What a call is to send once it has a token. */
typedef struct pending {
  char *method, *path, *body;
  kite_cloud_http_cb cb;
  void *carry;    /* given back to cb in call->data (cb frees it) */
  bool retried;   /* sent again once after a 401 */
  bool refreshed; /* the refresh token was tried */
} pending_t;

static void pending_free(pending_t *p) {
  if (p == NULL)
    return;
  free(p->carry); /* a plain allocation where one is left unclaimed */
  free(p->method);
  free(p->path);
  if (p->body)
    memset(p->body, 0, strlen(p->body));
  free(p->body);
  free(p);
}

static void send_now(kite_cloud_call_t *call);
static void get_token(kite_cloud_call_t *call);

/* Ends the call with a failure and frees what waited. */
static void pending_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  pending_free(call->data);
  call->data = NULL;
  kite_cloud_rest_fail(call, status, r, NULL);
}

static void on_api(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  pending_t *p = call->data;
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  if (status == KITE_EHTTP && r && r->status == 401 && !p->retried) {
    /* The token was refused (expired early, revoked): a new one, and this request again. */
    vtoken_t *t = token_of(vp, call->cfg->site);
    if (t) {
      token_wipe(&t->access);
      t->expires_ms = 0;
    }
    p->retried = true;
    get_token(call);
    return;
  }
  kite_cloud_http_cb cb = p->cb;
  void *carry = p->carry;
  p->carry = NULL;
  pending_free(p);
  call->data = carry;
  cb(call, status, r);
}

static void send_now(kite_cloud_call_t *call) {
  pending_t *p = call->data;
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  const verda_api_t *api = call->cfg->api;
  vtoken_t *t = token_of(vp, call->cfg->site);
  char *url = kite__sprintf("%s%s", api->rest.url, p->path);
  kite_http_request_t q = {.method = p->method,
                           .url = url,
                           .bearer_token = t ? t->access : NULL,
                           .body = p->body,
                           .body_len = p->body ? strlen(p->body) : 0,
                           .not_idempotent = call->kind == KITE_CLOUD_CALL_CREATE};
  int rc = url ? kite_cloud_http(call, &q, on_api) : KITE_ENOMEM;
  free(url);
  if (rc != 0) {
    pending_free(p);
    call->data = NULL;
    kite_cloud_rest_unsent(call, rc);
  }
}

static void on_token(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  pending_t *p = call->data;
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  const char *access = json_string_value(json_object_get(j, "access_token"));
  const char *refresh = json_string_value(json_object_get(j, "refresh_token"));
  json_t *exp = json_object_get(j, "expires_in");
  if (access == NULL || *access == '\0') {
    json_decref(j);
    if (p->refreshed && status == KITE_EHTTP && r && (r->status == 400 || r->status == 401)) {
      /* The refresh token was refused: the client credentials again. */
      vtoken_t *t = token_of(vp, call->cfg->site);
      if (t)
        token_wipe(&t->refresh);
      p->refreshed = false;
      get_token(call);
      return;
    }
    pending_fail(call, status, r);
    return;
  }
  kite_runtime_t *rt = kite_cloud_runtime(call->cloud);
  vtoken_t *t = token_of(vp, call->cfg->site);
  if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL) {
    t->site = kite__strdup(call->cfg->site);
    t->next = vp->tokens;
    vp->tokens = t;
  }
  if (t == NULL || t->site == NULL) {
    json_decref(j);
    pending_free(p);
    call->data = NULL;
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  token_wipe(&t->access);
  t->access = kite__strdup(access);
  if (refresh && *refresh) {
    token_wipe(&t->refresh);
    t->refresh = kite__strdup(refresh);
  }
  kite_secret_add(rt, access);
  if (refresh && *refresh)
    kite_secret_add(rt, refresh);
  double s = json_is_number(exp) ? json_number_value(exp) : 0;
  t->expires_ms = kite__wall_ms() + (s > 0 && s < 1e7 ? (uint64_t)(s * 1000) : 300000);
  json_decref(j);
  send_now(call);
}

/* Asks for a token: with the refresh token when there is one (and it was not tried yet), else
 * with the client credentials. */
static void get_token(kite_cloud_call_t *call) {
  pending_t *p = call->data;
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  const verda_api_t *api = call->cfg->api;
  vtoken_t *t = token_of(vp, call->cfg->site);
  json_t *b = NULL;
  if (t && t->refresh && !p->refreshed) {
    p->refreshed = true;
    b = json_pack("{s:s, s:s}", "grant_type", "refresh_token", "refresh_token", t->refresh);
  } else {
    b = json_pack("{s:s, s:s, s:s}", "grant_type", "client_credentials", "client_id",
                  api->client_id, "client_secret", api->rest.token);
  }
  char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
  json_decref(b);
  char *url = kite__sprintf("%s/oauth2/token", api->rest.url);
  kite_http_request_t q = {
      .method = "POST", .url = url, .body = text, .body_len = text ? strlen(text) : 0};
  int rc = url && text ? kite_cloud_http(call, &q, on_token) : KITE_ENOMEM;
  if (text)
    memset(text, 0, strlen(text));
  free(text);
  free(url);
  if (rc != 0) {
    pending_free(p);
    call->data = NULL;
    kite_cloud_rest_unsent(call, rc);
  }
}

/* Sends method path (with body, or none) as the call's request, a token first when needed; cb
 * gets the answer, and carry (malloc'd, or NULL) in call->data, to free. */
static void verda_send_carry(kite_cloud_call_t *call, const char *method, const char *path,
                             json_t *body, kite_cloud_http_cb cb, void *carry) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  pending_t *p = calloc(1, sizeof(*p));
  if (p) {
    p->method = kite__strdup(method);
    p->path = kite__strdup(path);
    p->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
    p->cb = cb;
    p->carry = carry;
  } else {
    free(carry);
  }
  if (p == NULL || !p->method || !p->path || (body && !p->body)) {
    pending_free(p);
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->data = p; /* a call sends one request at a time; what it carried was taken */
  vtoken_t *t = token_of(vp, call->cfg->site);
  if (t && t->access && kite__wall_ms() + TOKEN_MARGIN_MS < t->expires_ms)
    send_now(call);
  else
    get_token(call);
}

static void verda_send(kite_cloud_call_t *call, const char *method, const char *path, json_t *body,
                       kite_cloud_http_cb cb) {
  verda_send_carry(call, method, path, body, cb, NULL);
}

/* ---- small readers -------------------------------------------------------------------------- */

/* An id answer: the body as text ("uuid"), or a JSON string; malloc'd, or NULL. */
static char *id_answer(const kite_http_response_t *r) {
  if (r == NULL || r->body == NULL || r->body_len == 0 || r->body_len > 200)
    return NULL;
  json_error_t jerr;
  json_t *j = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &jerr);
  char *id = NULL;
  if (json_is_string(j))
    id = kite__strdup(json_string_value(j));
  else if (j == NULL)
    id = strndup(r->body, r->body_len);
  json_decref(j);
  /* An id goes into paths and bodies: letters, digits and '-' only. */
  for (char *c = id; c && *c; c++)
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
          *c == '-')) {
      free(id);
      return NULL;
    }
  if (id && *id == '\0') {
    free(id);
    id = NULL;
  }
  return id;
}

static const char *sval(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

/* The pool tag among an instance's tags [{key, value}], or NULL. */
static const char *pool_tag_of(json_t *in) {
  size_t i;
  json_t *t;
  json_array_foreach(json_object_get(in, "tags"), i, t) {
    const char *k = sval(t, "key");
    if (k && strcmp(k, POOL_TAG) == 0)
      return sval(t, "value");
  }
  return NULL;
}

/* ---- first boot: the host key in a startup script ------------------------------------------ */

static char *verda_first_boot(kite_cloud_t *c, const char *priv, const char *pub,
                              const char *user_data) {
  bool ud = user_data && *user_data;
  if (priv == NULL && !ud)
    return kite__strdup(""); /* no script */
  char *k = priv ? kite_cloud_base64(priv) : NULL, *kp = pub ? kite_cloud_base64(pub) : NULL,
       *u = ud ? kite_cloud_base64(user_data) : NULL;
  char *out = NULL;
  if ((priv == NULL || (k && kp)) && (!ud || u)) {
    if (k)
      kite_secret_add(kite_cloud_runtime(c), k);
    char *keys =
        k ? kite__sprintf(
                "KITE_SSH_HOST_KEY='%s'\nKITE_SSH_HOST_KEY_PUB='%s'\n"
                "umask 077; mkdir -p /etc/ssh\n"
                "printf %%s \"$KITE_SSH_HOST_KEY\" | base64 -d > /etc/ssh/ssh_host_ed25519_key\n"
                "printf %%s \"$KITE_SSH_HOST_KEY_PUB\" | base64 -d > "
                "/etc/ssh/ssh_host_ed25519_key.pub\n"
                "unset KITE_SSH_HOST_KEY\n"
                "systemctl reload ssh 2>/dev/null || systemctl reload sshd 2>/dev/null || "
                "pkill -HUP -x sshd || true\n",
                k, kp)
          : kite__strdup("");
    char *run = u ? kite__sprintf("mkdir -p /var/lib/kite\nprintf %%s '%s' | base64 -d > "
                                  "/var/lib/kite/user-data\nchmod 700 /var/lib/kite/user-data\n"
                                  "/var/lib/kite/user-data > /var/lib/kite/user-data.log 2>&1\n",
                                  u)
                  : kite__strdup("");
    out = keys && run ? kite__sprintf("#!/bin/sh\n%s%s", keys, run) : NULL;
    if (keys)
      memset(keys, 0, strlen(keys));
    free(keys);
    free(run);
  }
  if (k)
    memset(k, 0, strlen(k));
  free(k);
  free(kp);
  free(u);
  return out;
}

/* ---- prepare: kite's key on the project ----------------------------------------------------- */

static bool same_key(const char *a, const char *b) {
  if (a == NULL || b == NULL)
    return false;
  size_t na = strcspn(a, " \n"), nb = strcspn(b, " \n");
  if (na != nb || strncmp(a, b, na) != 0 || a[na] != ' ' || b[nb] != ' ')
    return false;
  a += na + 1;
  b += nb + 1;
  na = strcspn(a, " \n");
  nb = strcspn(b, " \n");
  return na == nb && strncmp(a, b, na) == 0;
}

static void on_key_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  char *id = status == 0 ? id_answer(r) : NULL;
  if (id == NULL) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  free(*call->site_data);
  *call->site_data = id;
  kite_cloud_answer_ok(call);
}

static void on_keys(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  if (status == 0 && r && r->body_len) {
    json_error_t jerr;
    j = json_loadb(r->body, r->body_len, 0, &jerr);
  }
  if (status != 0 || !json_is_array(j)) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  const char *mine = kite_cloud_pubkey(call->cloud);
  size_t i;
  json_t *k;
  json_array_foreach(j, i, k) {
    const char *id = sval(k, "id");
    if (id && *id && same_key(sval(k, "key"), mine)) {
      free(*call->site_data);
      *call->site_data = kite__strdup(id);
      json_decref(j);
      kite_cloud_answer_ok(call);
      return;
    }
  }
  json_decref(j);
  char host[64] = "";
  gethostname(host, sizeof(host) - 1);
  char *name = kite__sprintf("kite-%s", host[0] ? host : "key");
  json_t *body = json_pack("{s:s, s:s}", "name", name ? name : "kite", "key", mine);
  free(name);
  verda_send(call, "POST", "/sshkeys", body, on_key_created);
  json_decref(body);
}

static void verda_prepare(kite_cloud_call_t *call) {
  verda_send(call, "GET", "/sshkeys", NULL, on_keys);
}

/* ---- create, find --------------------------------------------------------------------------- */

/* The script made for the launch called name, or the one of instance id. */
static vscript_t *script_find(kite_verda_provider_t *vp, const char *name, const char *id) {
  for (vscript_t *s = vp->scripts; s; s = s->next)
    if ((name && strcmp(s->launch_name, name) == 0) ||
        (id && s->instance_id && strcmp(s->instance_id, id) == 0))
      return s;
  return NULL;
}

static void script_drop(kite_verda_provider_t *vp, vscript_t *gone) {
  for (vscript_t **pp = &vp->scripts; *pp; pp = &(*pp)->next)
    if (*pp == gone) {
      *pp = gone->next;
      free(gone->site);
      free(gone->instance_id);
      free(gone->launch_name);
      free(gone->script_id);
      free(gone);
      return;
    }
}

static void on_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  char *id = status == 0 ? id_answer(r) : NULL;
  if (id == NULL) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  /* The launch's script now belongs to the instance. */
  vscript_t *s = script_find(vp, call->launches[0]->name, NULL);
  if (s && s->instance_id == NULL)
    s->instance_id = kite__strdup(id);
  kite_cloud_created(call, 0, id);
  free(id);
  kite_cloud_answer_ok(call);
}

static void create_instance(kite_cloud_call_t *call, const char *script_id) {
  const kite_cloud_cfg_t *cfg = call->cfg;
  const verda_api_t *api = cfg->api;
  const kite_cloud_launch_t *l = call->launches[0];
  const char *key = *call->site_data;
  char *desc = kite__sprintf("kite pool %s, rank %u", l->tag, (unsigned)l->rank);
  json_t *body =
      json_pack("{s:s, s:s, s:s, s:s, s:[s], s:s, s:[{s:s, s:s}], s:b, s:s, s:{s:s, s:i, s:s}}",
                "instance_type", cfg->type, "image", cfg->image, "hostname", l->name,
                "location_code", cfg->region, "ssh_key_ids", key ? key : "", "description",
                desc ? desc : "kite", "tags", "key", POOL_TAG, "value", l->tag, "is_spot", l->spot,
                "contract", l->spot ? "SPOT" : "PAY_AS_YOU_GO", "os_volume", "name", l->name,
                "size", (int)api->disk_gb, "on_spot_discontinue", "delete_permanently");
  free(desc);
  if (body && script_id)
    json_object_set_new(body, "startup_script_id", json_string(script_id));
  if (body == NULL || key == NULL) {
    json_decref(body);
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  verda_send(call, "POST", "/instances", body, on_created);
  json_decref(body);
}

static void on_script_created(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  char *id = status == 0 ? id_answer(r) : NULL;
  if (id == NULL) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  /* Kept until its instance runs, is destroyed, or the provider stops. */
  vscript_t *s = calloc(1, sizeof(*s));
  if (s) {
    s->site = kite__strdup(call->cfg->site);
    s->launch_name = kite__strdup(call->launches[0]->name);
    s->script_id = kite__strdup(id);
    s->next = vp->scripts;
    vp->scripts = s;
  }
  create_instance(call, id);
  free(id);
}

static void verda_create(kite_cloud_call_t *call) {
  const kite_cloud_launch_t *l = call->launches[0];
  if (l->user_data == NULL || *l->user_data == '\0') {
    create_instance(call, NULL);
    return;
  }
  char *name = kite__sprintf("kite-%s", l->name);
  json_t *body = name ? json_pack("{s:s, s:s}", "name", name, "script", l->user_data) : NULL;
  free(name);
  if (body == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  verda_send(call, "POST", "/scripts", body, on_script_created);
  json_decref(body);
}

static void on_found(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  if (status == 0 && r && r->body_len) {
    json_error_t jerr;
    j = json_loadb(r->body, r->body_len, 0, &jerr);
  }
  if (status != 0 || !json_is_array(j)) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  size_t i;
  json_t *in;
  json_array_foreach(j, i, in) {
    const char *h = sval(in, "hostname"), *id = sval(in, "id");
    if (h && id && strcmp(h, call->launches[0]->name) == 0)
      kite_cloud_created(call, 0, id);
  }
  json_decref(j);
  kite_cloud_answer_ok(call);
}

/* GET /instances?tag=kite-pool=TAG (tag NULL: tag=kite-pool). */
static void list_by_tag(kite_cloud_call_t *call, const char *tag, kite_cloud_http_cb cb) {
  char *sel = tag ? kite__sprintf("%s=%s", POOL_TAG, tag) : kite__strdup(POOL_TAG);
  char *esc = sel ? kite_cloud_escape(sel) : NULL;
  char *path = esc ? kite__sprintf("/instances?tag=%s", esc) : NULL;
  if (path)
    verda_send(call, "GET", path, NULL, cb);
  else
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
  free(sel);
  free(esc);
  free(path);
}

static void verda_find(kite_cloud_call_t *call) {
  list_by_tag(call, call->launches[0]->tag, on_found);
}

/* ---- describe, destroy, list ---------------------------------------------------------------- */

static bool is(const char *s, const char *v) {
  return s && strcmp(s, v) == 0;
}

/* What describe found, kept while the instance's script is deleted. */
typedef struct described {
  kite_cloud_answer_t a;
  char address[64];
  vscript_t *script;
} described_t;

static void on_script_deleted(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  described_t *d = call->data;
  call->data = NULL;
  (void)r;
  /* Deleted, or already gone; else it is tried again at the next look, or at stop. */
  if (status == 0 || (status == KITE_EHTTP && r && r->status == 404))
    script_drop(vp, d->script);
  d->a.instance.address = d->address[0] ? d->address : NULL;
  kite_cloud_answer(call, &d->a);
  free(d);
}

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  if (j == NULL) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  const char *st = sval(j, "status");
  bool spot = json_is_true(json_object_get(j, "is_spot"));
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  if (is(st, "running")) {
    a.instance.state = KITE_CLOUD_RUNNING;
    a.instance.address = sval(j, "ip");
  } else if (is(st, "offline")) {
    a.instance.state = KITE_CLOUD_STOPPED;
  } else if (is(st, "discontinued")) {
    a.instance.state = KITE_CLOUD_STOPPED;
    a.instance.preempted = spot;
  } else if (is(st, "deleting")) {
    a.instance.state = KITE_CLOUD_STOPPING;
  } else if (is(st, "notfound")) {
    a.instance.state = KITE_CLOUD_GONE;
  } else if (is(st, "error") || is(st, "installation_failed") || is(st, "no_capacity")) {
    a.instance.state = KITE_CLOUD_STOPPED;
    a.instance.never_runs = st;
  } else {
    a.instance.state = KITE_CLOUD_PENDING; /* ordered, new, validating, provisioning, ... */
  }
  double price = 0;
  if (kite_cloud_rest_price(json_object_get(j, "price_per_hour"), &price))
    a.instance.price_hourly = price;
  /* Running (or never to run): its script, which holds its private host key, goes now. */
  vscript_t *s = a.instance.state != KITE_CLOUD_PENDING ? script_find(vp, NULL, call->id) : NULL;
  described_t *d = s ? calloc(1, sizeof(*d)) : NULL;
  const char *ip = a.instance.address;
  if (d && (ip == NULL || strlen(ip) < sizeof(d->address))) {
    d->a = a;
    d->script = s;
    snprintf(d->address, sizeof(d->address), "%s", ip ? ip : "");
    d->a.instance.never_runs = a.instance.never_runs ? "a state that never runs" : NULL;
    if (st && a.instance.never_runs)
      d->a.instance.never_runs = is(st, "error")                 ? "error"
                                 : is(st, "installation_failed") ? "installation_failed"
                                                                 : "no_capacity";
    json_decref(j);
    char *path = kite__sprintf("/scripts/%s", s->script_id);
    if (path)
      verda_send_carry(call, "DELETE", path, NULL, on_script_deleted, d);
    else {
      free(d);
      kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    }
    free(path);
    return;
  }
  free(d);
  kite_cloud_answer(call, &a);
  json_decref(j);
}

static void verda_describe(kite_cloud_call_t *call) {
  char *path = kite__sprintf("/instances/%s", call->id);
  if (path)
    verda_send(call, "GET", path, NULL, on_described);
  else
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
  free(path);
}

static void on_script_after_destroy(kite_cloud_call_t *call, int status,
                                    const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  vscript_t *sc = script_find(vp, NULL, call->id);
  if (sc && (status == 0 || (status == KITE_EHTTP && r && r->status == 404)))
    script_drop(vp, sc);
  kite_cloud_answer_ok(call); /* the instance's deletion was accepted */
}

static void on_destroyed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  if (status != 0) {
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  vscript_t *sc = script_find(vp, NULL, call->id);
  char *path = sc ? kite__sprintf("/scripts/%s", sc->script_id) : NULL;
  if (path)
    verda_send(call, "DELETE", path, NULL, on_script_after_destroy);
  else
    kite_cloud_answer_ok(call);
  free(path);
}

static void verda_destroy(kite_cloud_call_t *call) {
  json_t *body = json_pack("{s:s, s:[s]}", "action", "delete", "id", call->id);
  verda_send(call, "PUT", "/instances", body, on_destroyed);
  json_decref(body);
}

/* At stop: every script of the site still kept is deleted (one at a time). */
static void cleanup_next(kite_cloud_call_t *call);

static void on_cleanup_deleted(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  (void)status;
  (void)r;
  /* Deleted, or not: either way not asked again by this process (a warning says which). */
  for (vscript_t *sc = vp->scripts; sc; sc = sc->next)
    if (sc->site && strcmp(sc->site, call->cfg->site) == 0) {
      if (status != 0 && !(status == KITE_EHTTP && r && r->status == 404))
        KITE_WARN(kite_cloud_runtime(call->cloud), NAME,
                  "startup script %s could not be deleted: delete it in the console (it holds an "
                  "instance's host key)",
                  sc->script_id);
      script_drop(vp, sc);
      break;
    }
  cleanup_next(call);
}

static void cleanup_next(kite_cloud_call_t *call) {
  kite_verda_provider_t *vp = kite_cloud_provider(call->cloud);
  for (vscript_t *sc = vp->scripts; sc; sc = sc->next)
    if (sc->site && strcmp(sc->site, call->cfg->site) == 0) {
      char *path = kite__sprintf("/scripts/%s", sc->script_id);
      if (path)
        verda_send(call, "DELETE", path, NULL, on_cleanup_deleted);
      else
        kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
      free(path);
      return;
    }
  kite_cloud_answer_ok(call);
}

static void verda_cleanup(kite_cloud_call_t *call) {
  cleanup_next(call);
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  json_t *j = NULL;
  if (status == 0 && r && r->body_len) {
    json_error_t jerr;
    j = json_loadb(r->body, r->body_len, 0, &jerr);
  }
  if (status != 0 || !json_is_array(j)) {
    json_decref(j);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  size_t i;
  json_t *in;
  json_array_foreach(j, i, in) {
    const char *id = sval(in, "id");
    if (id && *id)
      kite_cloud_listed(call, id, pool_tag_of(in));
  }
  json_decref(j);
  kite_cloud_answer_ok(call);
}

static void verda_list_page(kite_cloud_call_t *call) {
  list_by_tag(call, strcmp(call->tag, "*") == 0 ? NULL : call->tag, on_listed);
}

/* ---- catalog: instance types and where they are available ----------------------------------- */

/* The catalog's three answers, kept until the last. */
typedef struct catalog {
  json_t *types, *ondemand, *spot;
} catalog_t;

/* The GPU model and count an instance type's name says: "1H100.80S.30V" is H100 x1,
 * "8A100.176V" A100 x8, "CPU.4V.16G" none. */
static void gpu_of(const char *type, char *model, size_t cap, unsigned *count) {
  *count = 0;
  model[0] = '\0';
  size_t d = strspn(type, "0123456789");
  if (d == 0 || d > 4)
    return;
  size_t m = strcspn(type + d, ".");
  if (m == 0 || m >= cap)
    return;
  *count = (unsigned)strtoul(type, NULL, 10);
  memcpy(model, type + d, m);
  model[m] = '\0';
}

/* Whether type is in availability's list for location (an answer [{location_code,
 * availabilities}]). */
static bool available(json_t *avail, const char *location, const char *type) {
  size_t i, k;
  json_t *l, *t;
  json_array_foreach(avail, i, l) {
    if (!is(sval(l, "location_code"), location))
      continue;
    json_array_foreach(json_object_get(l, "availabilities"), k, t) {
      if (is(json_string_value(t), type))
        return true;
    }
  }
  return false;
}

/* The offers of one type: NULL, or what is wrong with it. */
static const char *type_offers(kite_cloud_call_t *call, json_t *t) {
  catalog_t *k = call->data;
  kite_offer_t o = {0};
  const char *name = sval(t, "instance_type");
  if (name == NULL || *name == '\0' || KITE_OFFER_SET(&o, instance_type, name) != 0)
    return "instance_type is not an instance type's name";
  double od = -1, sp = -1;
  json_t *p = json_object_get(t, "price_per_hour"), *q = json_object_get(t, "spot_price");
  if (!kite_cloud_rest_price(p, &od))
    return "price_per_hour is not a price";
  if (q && !json_is_null(q) && !kite_cloud_rest_price(q, &sp))
    return "spot_price is not a price";
  uint64_t cores = 0, gpus = 0;
  json_t *cpu = json_object_get(json_object_get(t, "cpu"), "number_of_cores");
  if (!kite_cloud_rest_whole(cpu, 1 << 16, &cores) || cores == 0)
    return "cpu.number_of_cores is not a count of CPUs";
  double mem =
      json_number_value(json_object_get(json_object_get(t, "memory"), "size_in_gigabytes"));
  if (!(mem > 0 && mem < 1 << 20))
    return "memory.size_in_gigabytes is not a size";
  o.vcpus = (unsigned)cores;
  o.memory_mb = (uint64_t)(mem * 1024 + 0.5);
  unsigned count = 0;
  gpu_of(name, o.accelerator, sizeof(o.accelerator), &count);
  json_t *ng = json_object_get(json_object_get(t, "gpu"), "number_of_gpus");
  if (ng && !json_is_null(ng) && !kite_cloud_rest_whole(ng, 1024, &gpus))
    return "gpu.number_of_gpus is not a count of GPUs";
  if (gpus > 0 && o.accelerator[0])
    count = (unsigned)gpus;
  o.accelerator_count = o.accelerator[0] ? count : 0;
  double gm =
      json_number_value(json_object_get(json_object_get(t, "gpu_memory"), "size_in_gigabytes"));
  if (o.accelerator_count && gm > 0 && gm < 1e6)
    o.accelerator_memory_mb = (uint64_t)(gm * 1024 / o.accelerator_count + 0.5);
  KITE_OFFER_SET(&o, arch, "x86_64");
  o.available = -1;
  /* One offer per location where it can be launched at all. */
  size_t i;
  json_t *l;
  json_t *locs = json_array();
  json_array_foreach(k->ondemand, i, l)
      json_array_append(locs, json_object_get(l, "location_code"));
  json_array_foreach(k->spot, i, l) json_array_append(locs, json_object_get(l, "location_code"));
  json_t *loc;
  json_array_foreach(locs, i, loc) {
    const char *code = json_string_value(loc);
    bool seen = false;
    for (size_t m = 0; m < i && !seen; m++)
      seen = is(json_string_value(json_array_get(locs, m)), code);
    if (code == NULL || seen || KITE_OFFER_SET(&o, region, code) != 0)
      continue;
    if (call->cfg->region && strcmp(call->cfg->region, code) != 0)
      continue;
    bool on = available(k->ondemand, code, name), on_spot = available(k->spot, code, name);
    if (!on && !on_spot)
      continue;
    o.price = on ? od : -1;
    o.spot_price = on_spot ? sp : -1;
    kite_cloud_offer(call, &o);
  }
  json_decref(locs);
  return NULL;
}

static void catalog_free(catalog_t *k) {
  if (k == NULL)
    return;
  json_decref(k->types);
  json_decref(k->ondemand);
  json_decref(k->spot);
  free(k);
}

static json_t *array_body(const kite_http_response_t *r) {
  json_error_t jerr;
  json_t *j = r && r->body_len ? json_loadb(r->body, r->body_len, 0, &jerr) : NULL;
  if (!json_is_array(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

static void on_catalog_part(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  catalog_t *k = call->data;
  call->data = NULL;
  json_t *j = status == 0 ? array_body(r) : NULL;
  if (j == NULL) {
    catalog_free(k);
    kite_cloud_rest_fail(call, status, r, NULL);
    return;
  }
  json_t **slot = call->step == 0 ? &k->types : call->step == 1 ? &k->ondemand : &k->spot;
  *slot = j;
  if (++call->step < 3) {
    const char *spot = call->step == 1 ? "false" : "true";
    char *path = kite__sprintf("/instance-availability?is_spot=%s", spot);
    if (path)
      verda_send_carry(call, "GET", path, NULL, on_catalog_part, k);
    else {
      catalog_free(k);
      kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    }
    free(path);
    return;
  }
  call->data = k; /* type_offers reads it */
  bool ok = kite_cloud_rest_offers(call, k->types, "instance_types", "instance_type", type_offers);
  call->data = NULL;
  catalog_free(k);
  if (ok)
    kite_cloud_answer_ok(call);
}

static void verda_catalog(kite_cloud_call_t *call) {
  catalog_t *k = calloc(1, sizeof(*k));
  if (k == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->step = 0;
  verda_send_carry(call, "GET", "/instance-types?currency=usd", NULL, on_catalog_part, k);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const kite_cloud_advice_t verda_advice[] = {
    {"unauthorized_request", 0, NULL, KITE_ECREDENTIALS, "the API client was rejected: " CRED_HELP},
    {NULL, 401, NULL, KITE_ECREDENTIALS, "the API client was rejected: " CRED_HELP},
    {"forbidden_action", 0, NULL, KITE_ECREDENTIALS,
     "the API client may not do this: use a client of the project with full access"},
    {"insufficient_funds", 0, NULL, KITE_EQUOTA, "the project's balance is too low: add funds"},
    {"service_unavailable", 0, NULL, KITE_ECAPACITY,
     "no capacity for that instance type there now: choose another location (region) or type"},
    {NULL, 503, NULL, KITE_ECAPACITY,
     "no capacity for that instance type there now: choose another location (region) or type"},
    {"invalid_request", 0, "location", KITE_EUNAVAILABLE,
     "check the location (region): `kite offers --provider verda` lists where each type is"},
    {"invalid_request", 0, "instance type", KITE_EUNAVAILABLE,
     "check the instance type: `kite offers --provider verda` lists them"},
    {"invalid_request", 0, NULL, KITE_EPROVIDER, "check instance type, image and location"},
    {"rate_limit_exceeded", 0, NULL, KITE_EAGAIN,
     "rate limited even after backing off: retry later, or run fewer kite processes on this "
     "project"},
};

static const kite_cloud_ops_t verda_ops = {
    .name = NAME,
    .title = "Verda",
    .noun = "instance",
    .batch_max = 1,
    .spot = true,
    .endpoint_hint = "api_url in the provider options or KITE_VERDA_API_URL",
    .configure = verda_configure,
    .configure_reach = kite_cloud_rest_configure_reach,
    .free_api = verda_free_api,
    .prepare = verda_prepare,
    .create = verda_create,
    .find = verda_find,
    .describe = verda_describe,
    .destroy = verda_destroy,
    .list_page = verda_list_page,
    .cleanup = verda_cleanup,
    .catalog = verda_catalog,
    .free_site_data = free,
    .first_boot = verda_first_boot,
    .advice = verda_advice,
    .n_advice = KITE_ARRAY_SIZE(verda_advice),
};

static void free_provider(void *p) {
  kite_verda_provider_t *vp = p;
  if (vp == NULL)
    return;
  if (vp->client_secret)
    memset(vp->client_secret, 0, strlen(vp->client_secret));
  free(vp->client_secret);
  free(vp->client_id);
  free(vp->api_url);
  free(vp->user);
  free(vp->location);
  free(vp->instance_type);
  free(vp->image);
  while (vp->tokens) {
    vtoken_t *t = vp->tokens;
    vp->tokens = t->next;
    token_wipe(&t->access);
    token_wipe(&t->refresh);
    free(t->site);
    free(t);
  }
  while (vp->scripts)
    script_drop(vp, vp->scripts);
  free(vp);
}

int kite_verda_provider_new(kite_runtime_t *rt, const kite_verda_provider_options_t *opts,
                            kite_verda_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_verda_provider_options_t o = {0};
  if (opts)
    o = *opts;
  kite_verda_provider_t *vp = calloc(1, sizeof(*vp));
  if (vp == NULL)
    return KITE_ENOMEM;
  const char *in[] = {o.client_id, o.client_secret, o.api_url, o.ssh_user,
                      o.location,  o.instance_type, o.image};
  char **to[] = {&vp->client_id, &vp->client_secret, &vp->api_url, &vp->user,
                 &vp->location,  &vp->instance_type, &vp->image};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(in); i++)
    if (in[i] && (*to[i] = kite__strdup(in[i])) == NULL) {
      free_provider(vp);
      return KITE_ENOMEM;
    }
  vp->port = o.ssh_port;
  vp->disk_gb = o.disk_gb;
  if (vp->client_secret)
    kite_secret_add(rt, vp->client_secret);
  kite_cloud_options_t co = KITE_CLOUD_OPTIONS_OF(o, free_provider);
  int rc = kite_cloud_new(rt, &verda_ops, &co, vp, &vp->cloud);
  if (rc != 0) {
    free_provider(vp);
    return rc;
  }
  if (out)
    *out = vp;
  return 0;
}
