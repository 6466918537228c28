/* The DigitalOcean provider: droplets through the v2 API, over the shared HTTP client.
 *
 * Design notes
 *
 * Answers, for the name "digitalocean": instance_launch, instance_terminate,
 * instance_describe, instance_list and preempt_check. Each request becomes one operation
 * (op_t) that owns its HTTP request in flight and one uv timer for its polls; the reply is
 * sent when the operation ends, and an operation is freed only after its timer closed.
 *
 * Launch. Kite's SSH key ($KITE_HOME/keys/id_ed25519) is registered in the account once per
 * API endpoint (GET /v2/account/keys/{fingerprint}, POST when missing); then one droplet is
 * created with a name unique to the launch, the pool's tag, the key, and the user_data. The
 * create is a POST, so the client does not repeat it by itself after an ambiguous failure (a
 * 5xx, a reset, a timeout, an unreadable answer): the operation then looks for its droplet by
 * tag and name and creates it again only when it is not there — a droplet is never created
 * twice. It then polls GET /v2/droplets/{id} (backing off from poll_ms to 10 s) until the
 * droplet is "active" with a public IPv4 address. A launch that cannot finish after its
 * droplet exists deletes the droplet before it reports the error.
 *
 * Terminate confirms only when the API says the droplet is gone: DELETE, then GET until 404
 * (re-sending the DELETE now and then).
 *
 * Host keys: the API does not report a droplet's SSH host key, so kite makes one per droplet
 * (ssh-keygen into $KITE_HOME/digitalocean/hostkeys, read, then deleted), hands it to the
 * droplet in a cloud-config user_data (cloud-init's ssh_keys; the pool's own user_data rides
 * along as a script it runs), registers the private key and that user_data as secrets, and
 * pins the public key in instance_launched: the first SSH connection is already verified.
 *
 * Credentials: the token from the request's provider options ("token"), the provider's
 * options, $DIGITALOCEAN_TOKEN, $DIGITALOCEAN_ACCESS_TOKEN, or doctl's config file, in that
 * order. It is registered as a secret before it is used and never appears in an event. The
 * API base URL comes from "api_url" in the options, $KITE_DO_API_URL, or the public API. */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

#include "kite/http.h"
#include "kite/local.h"
#include "kite/provider.h"
#include "kite_impl.h"

#define NAME "digitalocean"
#define DEFAULT_API "https://api.digitalocean.com"
#define DEFAULT_REGION "nyc3"
#define DEFAULT_SIZE "s-1vcpu-1gb"
#define DEFAULT_IMAGE "ubuntu-24-04-x64"
#define POLL_MAX_MS 10000
#define CREATE_TRIES 6
#define RECOVER_TRIES 20
#define MAX_PAGES 100
#define MAX_BATCH 10 /* names per create, DigitalOcean's limit */
#define TOKEN_HELP                                                                                 \
  "set DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN) to an API token with read and write "     \
  "scope from https://cloud.digitalocean.com/account/api/tokens, or put \"token\" in the "         \
  "provider options"

typedef enum op_kind { OP_LAUNCH, OP_TERMINATE, OP_DESCRIBE, OP_LIST, OP_PREEMPT } op_kind_t;

typedef enum launch_step {
  L_KEY_WAIT, /* waiting for the account key */
  L_CREATE,   /* POST /v2/droplets in flight */
  L_RECOVER,  /* looking for our droplet after an ambiguous create */
  L_POLL,     /* waiting for active */
  L_UNDO,     /* deleting the droplet of a failed launch */
} launch_step_t;

typedef struct cfg {
  char *api; /* base URL without a trailing slash */
  char *token;
  char *user;
  unsigned port;
  bool pin; /* give each droplet a host key kite made, and pin it */
} cfg_t;

typedef struct keyreg keyreg_t;

typedef struct op {
  struct kite_do_provider *dp;
  op_kind_t kind;
  uint64_t corr;
  cfg_t cfg;
  /* request fields kept */
  uint64_t pool, node;
  uint32_t rank;
  char *tag, *instance_id, *region, *size, *image, *user_data;
  /* pinning: the host key kite made for the droplet, and the user_data that carries it */
  char *hk_path, *host_pub, *ud_final;
  /* progress */
  launch_step_t step;
  char *droplet_name;
  char *droplet_id;
  unsigned create_tries, recover_tries, pages;
  uint64_t poll_ms, deadline_ms;
  unsigned polls;
  int fail_code;
  char *fail_msg;
  /* list */
  json_t *ids;
  kite_http_req_t *req;
  uv_timer_t timer;
  bool done;
  /* May a 404 be taken as gone? Only for a droplet this process knows, one asked at the API
   * and under the account of its reach record, or once the API accepted its deletion. */
  bool trust_404;
  keyreg_t *waiting_on;
  struct op *next_waiter; /* in a key's waiters, or in the provider's create queue */
  struct op *next, *prev;
} op_t;

/* Kite's key in one account (per API endpoint and token). */
struct keyreg {
  char *api, *token;
  int state; /* 0 unknown, 1 registering, 2 ready, < 0 failed */
  char *fail_msg;
  op_t *waiters;
  struct keyreg *next;
};

/* Where an instance (or a tag) was created: requests that carry no options (terminate,
 * describe, list) reach the same endpoint with the same token. */
/* One create request for several droplets (names), launched in the same loop turn with the
 * same endpoint, token, region, size, image, tag and user_data. */
typedef struct batch {
  struct kite_do_provider *dp;
  op_t *ops[MAX_BATCH];
  size_t n;
  kite_http_req_t *req;
  struct batch *next;
} batch_t;

typedef struct known {
  char *key; /* a droplet id, or "tag:" + tag */
  cfg_t cfg;
  struct known *next;
} known_t;

struct kite_do_provider {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  kite_http_t *http;
  kite_do_provider_options_t opts;
  char *opt_token, *opt_api, *opt_user, *opt_region, *opt_size, *opt_image;
  char *key_path, *pubkey, *fingerprint;
  int key_status;
  bool key_ready;
  op_t *ops;
  keyreg_t *keys;
  known_t *known;
  op_t *queued; /* first creates waiting for the batch timer */
  uv_timer_t batch_timer;
  bool batch_timer_on;
  batch_t *batches; /* create requests in flight */
  kite_sub_t subs[6];
  bool stopping;
  kite_component_stopped_fn stop_done;
  int handles_open;
  bool http_closed;
  uint64_t seq;
};

static void op_step_launch(op_t *op);
static void op_poll(op_t *op);
static void op_terminate_poll(op_t *op);

/* ---- small helpers ----------------------------------------------------------------------------
 */

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

static void cfg_free(cfg_t *c) {
  free(c->api);
  free(c->token);
  free(c->user);
  memset(c, 0, sizeof(*c));
}

/* The request's configuration: its options JSON over the provider's options over the
 * environment. On a missing token, *msg says where kite looked. */
static int cfg_resolve(kite_do_provider_t *dp, const char *options, cfg_t *c, char **msg) {
  json_error_t jerr;
  json_t *o = options && *options ? json_loads(options, 0, &jerr) : NULL;
  if (options && *options && !json_is_object(o)) {
    json_decref(o);
    *msg =
        kite__sprintf("digitalocean: the provider options are not a JSON object (%s)", jerr.text);
    return KITE_EINVAL;
  }
  const char *tok = json_string_value(json_object_get(o, "token"));
  const char *api = json_string_value(json_object_get(o, "api_url"));
  const char *user = json_string_value(json_object_get(o, "ssh_user"));
  json_t *port = json_object_get(o, "ssh_port");
  json_t *pin = json_object_get(o, "pin_host_key");
  char *where = NULL, *from_doctl = NULL;
  if (tok == NULL)
    tok = dp->opt_token;
  if (tok == NULL || *tok == '\0')
    tok = getenv("DIGITALOCEAN_TOKEN");
  if (tok == NULL || *tok == '\0')
    tok = getenv("DIGITALOCEAN_ACCESS_TOKEN");
  if (tok == NULL || *tok == '\0')
    tok = from_doctl = doctl_token(&where);
  if (api == NULL)
    api = dp->opt_api;
  if (api == NULL || *api == '\0')
    api = getenv("KITE_DO_API_URL");
  if (api == NULL || *api == '\0')
    api = DEFAULT_API;
  int rc = 0;
  if (tok == NULL || *tok == '\0') {
    *msg = kite__sprintf("digitalocean: no API token found: %s (kite looked in the provider "
                         "options, $DIGITALOCEAN_TOKEN, $DIGITALOCEAN_ACCESS_TOKEN and %s)",
                         TOKEN_HELP, where ? where : "doctl's config.yaml");
    rc = KITE_ECREDENTIALS;
  } else {
    c->token = kite__strdup(tok);
    c->api = kite__strdup(api);
    size_t n = strlen(c->api);
    while (n > 0 && c->api[n - 1] == '/')
      c->api[--n] = '\0';
    c->user = kite__strdup(user ? user : dp->opt_user ? dp->opt_user : "root");
    c->pin = !json_is_false(pin);
    c->port = json_is_integer(port) ? (unsigned)json_integer_value(port)
              : dp->opts.ssh_port   ? dp->opts.ssh_port
                                    : 22;
    if (c->token == NULL || c->api == NULL || c->user == NULL)
      rc = KITE_ENOMEM;
    else if (kite_secret_add(dp->rt, c->token) == KITE_ENOMEM)
      rc = KITE_ENOMEM;
    else if (!kite_http_url_allowed(c->api)) {
      *msg = kite__sprintf("digitalocean: the API URL %s is not allowed: use https://, or "
                           "http:// only to a loopback address (an emulator); set api_url in "
                           "the provider options or KITE_DO_API_URL",
                           c->api);
      rc = KITE_EINVAL;
    }
  }
  if (from_doctl)
    memset(from_doctl, 0, strlen(from_doctl));
  free(from_doctl);
  free(where);
  json_decref(o);
  if (rc != 0)
    cfg_free(c);
  return rc;
}

static int cfg_copy(cfg_t *dst, const cfg_t *src) {
  dst->api = kite__strdup(src->api);
  dst->token = kite__strdup(src->token);
  dst->user = kite__strdup(src->user);
  dst->port = src->port;
  dst->pin = src->pin;
  if (dst->api && dst->token && dst->user)
    return 0;
  cfg_free(dst);
  return KITE_ENOMEM;
}

static known_t *known_find(kite_do_provider_t *dp, const char *prefix, const char *key) {
  size_t pl = strlen(prefix);
  for (known_t *k = dp->known; key && k; k = k->next)
    if (strncmp(k->key, prefix, pl) == 0 && strcmp(k->key + pl, key) == 0)
      return k;
  return NULL;
}

static void known_add(kite_do_provider_t *dp, const char *prefix, const char *key,
                      const cfg_t *cfg) {
  if (key == NULL || known_find(dp, prefix, key))
    return;
  known_t *k = calloc(1, sizeof(*k));
  if (k == NULL)
    return;
  k->key = kite__sprintf("%s%s", prefix, key);
  if (k->key == NULL || cfg_copy(&k->cfg, cfg) != 0) {
    free(k->key);
    free(k);
    return;
  }
  k->next = dp->known;
  dp->known = k;
}

static void known_remove(kite_do_provider_t *dp, const char *id) {
  for (known_t **pp = &dp->known; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->key, id) == 0) {
      known_t *k = *pp;
      *pp = k->next;
      cfg_free(&k->cfg);
      free(k->key);
      free(k);
      return;
    }
}

/* The configuration for a request without options: where the instance or tag was created,
 * else the provider's options and the environment. */
static int cfg_for(kite_do_provider_t *dp, const char *prefix, const char *key, cfg_t *c,
                   char **msg) {
  known_t *k = known_find(dp, prefix, key);
  if (k)
    return cfg_copy(c, &k->cfg);
  return cfg_resolve(dp, NULL, c, msg);
}

/* The account a token belongs to, as a public name (never the token). */
static void account_name(const char *token, char out[32]) {
  char fp[17];
  kite__fingerprint("digitalocean-token", token ? token : "", fp);
  snprintf(out, 32, "token-%s", fp);
}

/* The configuration for a droplet or tag this process may not know: its own record when it
 * has one (*trusted), else the API URL of the reach record (another process made it) with
 * this process's token; *trusted when the record names the same account. */
static int cfg_reach(kite_do_provider_t *dp, const char *prefix, const char *key, const char *reach,
                     cfg_t *c, bool *trusted, char **msg) {
  *trusted = false;
  if (known_find(dp, prefix, key) || reach == NULL || *reach == '\0') {
    *trusted = known_find(dp, prefix, key) != NULL;
    return cfg_for(dp, prefix, key, c, msg);
  }
  json_error_t je;
  json_t *j = json_loads(reach, 0, &je);
  json_t *o = json_object();
  const char *api = json_string_value(json_object_get(j, "api_url"));
  if (api)
    json_object_set_new(o, "api_url", json_string(api));
  char *opts = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  int rc = opts ? cfg_resolve(dp, opts, c, msg) : KITE_ENOMEM;
  free(opts);
  const char *account = json_string_value(json_object_get(j, "account"));
  if (rc == 0 && account) {
    char mine[32];
    account_name(c->token, mine);
    *trusted = strcmp(mine, account) == 0;
  }
  json_decref(j);
  return rc;
}

static void on_reach_resolve(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_reach_resolve_t *p, void *data) {
  kite_do_provider_t *dp = data;
  cfg_t c = {0};
  char *msg = NULL;
  int rc = cfg_resolve(dp, p->options, &c, &msg);
  if (rc != 0) {
    kite_bus_reply_error(bus, ev->corr, rc, msg ? msg : kite_strerror(rc));
    free(msg);
    return;
  }
  char account[32];
  account_name(c.token, account);
  json_t *j = json_pack("{s:s, s:s, s:s}", "provider", NAME, "api_url", c.api, "account", account);
  char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  cfg_free(&c);
  if (text == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  kite_ev_reach_t out = {.provider = NAME, .reach = text};
  kite_reply_reach(bus, ev->corr, &out);
  free(text);
}

/* MD5 of the key blob, colon-separated hex: how DigitalOcean names keys. */
static char *md5_fingerprint(const char *pub) {
  const char *sp = strchr(pub, ' ');
  if (sp == NULL)
    return NULL;
  const char *b64 = sp + 1;
  size_t n = strcspn(b64, " \r\n");
  if (n == 0 || n % 4)
    return NULL;
  unsigned char *blob = malloc(n);
  if (blob == NULL)
    return NULL;
  int len = EVP_DecodeBlock(blob, (const unsigned char *)b64, (int)n);
  for (size_t k = n; len > 0 && k > 0 && b64[k - 1] == '='; k--)
    len--;
  char *out = NULL;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (len > 0 && EVP_Digest(blob, (size_t)len, md, &mdlen, EVP_md5(), NULL) == 1) {
    out = calloc(mdlen * 3 + 1, 1);
    for (unsigned i = 0; out && i < mdlen; i++)
      snprintf(out + i * 3, 4, i + 1 < mdlen ? "%02x:" : "%02x", md[i]);
  }
  free(blob);
  return out;
}

/* What went wrong, for a human, from an HTTP failure. */
static int map_failure(int status, const kite_http_response_t *r, const char *what, char **msg) {
  if (status == KITE_EHTTP) {
    json_error_t jerr;
    json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
    const char *m = json_string_value(json_object_get(j, "message"));
    char *sm = kite__strdup(m ? m : "");
    json_decref(j);
    int code = KITE_EPROVIDER;
    if (r->status == 401) {
      code = KITE_ECREDENTIALS;
      *msg = kite__sprintf("digitalocean: %s: the API token was rejected (HTTP 401: %s): %s", what,
                           sm, TOKEN_HELP);
    } else if (r->status == 403) {
      code = KITE_ECREDENTIALS;
      *msg = kite__sprintf("digitalocean: %s: the API token may not do this (HTTP 403: %s): "
                           "give it write scope (droplet, ssh_key, tag)",
                           what, sm);
    } else if (r->status == 422 && (strstr(sm, "limit") || strstr(sm, "not available") ||
                                    strstr(sm, "unavailable") || strstr(sm, "capacity"))) {
      code = KITE_ECAPACITY;
      *msg = kite__sprintf("digitalocean: %s: %s (HTTP 422): %s", what, sm,
                           strstr(sm, "limit") ? "raise the account's droplet limit or ask for "
                                                 "fewer nodes"
                                               : "choose another region or size");
    } else if (r->status == 429) {
      code = KITE_EAGAIN;
      *msg = kite__sprintf("digitalocean: %s: rate limited even after backing off (HTTP 429: "
                           "%s): retry later, or run fewer kite processes on this account",
                           what, sm);
    } else if (r->status == 422 || r->status == 400) {
      *msg = kite__sprintf("digitalocean: %s: the API refused the request (HTTP %ld: %s): check "
                           "region, size (instance_type) and image",
                           what, r->status, sm);
    } else {
      *msg = kite__sprintf("digitalocean: %s: HTTP %ld: %s", what, r->status,
                           *sm ? sm : "(no message)");
    }
    free(sm);
    return code;
  }
  *msg = kite__sprintf("digitalocean: %s: %s%s", what, r->message,
                       status == KITE_ECONNREFUSED || status == KITE_EHOSTUNREACH
                           ? " (is the API URL right? api_url in the provider options or "
                             "KITE_DO_API_URL)"
                           : "");
  return status;
}

/* A JSON body, or NULL when it is not one (then the answer was unreadable). */
static json_t *body_json(const kite_http_response_t *r) {
  json_error_t jerr;
  json_t *j = json_loadb(r->body, r->body_len, 0, &jerr);
  if (!json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* The droplet's public IPv4 address, or NULL. */
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

static char *droplet_id_str(json_t *d) {
  json_t *id = json_object_get(d, "id");
  if (!json_is_integer(id) || json_integer_value(id) <= 0)
    return NULL;
  return kite__sprintf("%lld", (long long)json_integer_value(id));
}

/* A pagination link we may follow with the token: on the API's own origin, nowhere else. */
static bool next_link_ok(const cfg_t *c, const char *url) {
  size_t n = strlen(c->api);
  return url && strncmp(url, c->api, n) == 0 && url[n] == '/' && kite_http_url_allowed(url);
}

/* ---- operations -------------------------------------------------------------------------------
 */

static void maybe_stopped(kite_do_provider_t *dp);

static void on_op_closed(uv_handle_t *h) {
  op_t *op = kite_container_of((uv_timer_t *)h, op_t, timer);
  kite_do_provider_t *dp = op->dp;
  cfg_free(&op->cfg);
  free(op->tag);
  free(op->instance_id);
  free(op->region);
  free(op->size);
  free(op->image);
  free(op->user_data);
  if (op->hk_path) {
    unlink(op->hk_path);
    char *pub = kite__sprintf("%s.pub", op->hk_path);
    if (pub)
      unlink(pub);
    free(pub);
  }
  free(op->hk_path);
  free(op->host_pub);
  free(op->ud_final);
  free(op->droplet_name);
  free(op->droplet_id);
  free(op->fail_msg);
  json_decref(op->ids);
  free(op);
  dp->handles_open--;
  maybe_stopped(dp);
}

static void op_free(op_t *op) {
  kite_do_provider_t *dp = op->dp;
  if (op->prev)
    op->prev->next = op->next;
  else
    dp->ops = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->done = true;
  uv_timer_stop(&op->timer);
  uv_close((uv_handle_t *)&op->timer, on_op_closed);
}

static op_t *op_new(kite_do_provider_t *dp, op_kind_t kind, uint64_t corr) {
  op_t *op = calloc(1, sizeof(*op));
  if (op == NULL)
    return NULL;
  op->dp = dp;
  op->kind = kind;
  op->corr = corr;
  uv_timer_init(kite_runtime_loop(dp->rt), &op->timer);
  dp->handles_open++;
  op->next = dp->ops;
  if (dp->ops)
    dp->ops->prev = op;
  dp->ops = op;
  return op;
}

static void op_fail(op_t *op, int code, char *msg) {
  kite_bus_reply_error(op->dp->bus, op->corr, code, msg ? msg : kite_strerror(code));
  if (msg)
    KITE_WARN(op->dp->rt, NAME, "%s", msg);
  free(msg);
  op_free(op);
}

static int op_http(op_t *op, const char *method, const char *path, json_t *body, bool full_url,
                   kite_http_cb cb) {
  char *url = full_url ? kite__strdup(path) : kite__sprintf("%s%s", op->cfg.api, path);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  kite_http_request_t q = {.method = method,
                           .url = url,
                           .bearer_token = op->cfg.token,
                           .body = text,
                           .body_len = text ? strlen(text) : 0};
  int rc = url && (body == NULL || text) ? kite_http_request(op->dp->http, &q, cb, op, &op->req)
                                         : KITE_ENOMEM;
  free(url);
  free(text);
  return rc;
}

/* ---- the account key --------------------------------------------------------------------------
 */

static keyreg_t *keyreg_for(kite_do_provider_t *dp, const cfg_t *c) {
  for (keyreg_t *k = dp->keys; k; k = k->next)
    if (strcmp(k->api, c->api) == 0 && strcmp(k->token, c->token) == 0)
      return k;
  keyreg_t *k = calloc(1, sizeof(*k));
  if (k == NULL)
    return NULL;
  k->api = kite__strdup(c->api);
  k->token = kite__strdup(c->token);
  k->next = dp->keys;
  dp->keys = k;
  return k;
}

static void keyreg_settle(kite_do_provider_t *dp, keyreg_t *k, int state, char *msg) {
  k->state = state;
  free(k->fail_msg);
  k->fail_msg = msg;
  op_t *w = k->waiters;
  k->waiters = NULL;
  while (w) {
    op_t *next = w->next_waiter;
    w->next_waiter = NULL;
    w->waiting_on = NULL;
    if (state < 0) {
      op_fail(w, state, kite__strdup(msg));
    } else {
      w->step = L_CREATE;
      op_step_launch(w);
    }
    w = next;
  }
  /* A failed registration is tried again by the next launch. */
  if (state < 0)
    k->state = 0;
  (void)dp;
}

typedef struct keyctx {
  kite_do_provider_t *dp;
  keyreg_t *k;
  cfg_t cfg;
} keyctx_t;

static void on_key_created(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  keyctx_t *kc = data;
  (void)h;
  if (status == 0 || (status == KITE_EHTTP && r->status == 422 && strstr(r->body, "already"))) {
    keyreg_settle(kc->dp, kc->k, 2, NULL);
  } else if (status == KITE_ECANCELED) {
    keyreg_settle(kc->dp, kc->k, KITE_ECANCELED, kite__strdup("digitalocean: canceled"));
  } else {
    char *msg = NULL;
    int code = map_failure(status, r, "registering kite's SSH key", &msg);
    keyreg_settle(kc->dp, kc->k, code, msg);
  }
  cfg_free(&kc->cfg);
  free(kc);
}

static void on_key_got(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  keyctx_t *kc = data;
  kite_do_provider_t *dp = kc->dp;
  if (status == 0) {
    keyreg_settle(dp, kc->k, 2, NULL);
  } else if (status == KITE_EHTTP && r->status == 404) {
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    char *name = kite__sprintf("kite-%s", host[0] ? host : "key");
    json_t *body = json_pack("{s:s, s:s}", "name", name ? name : "kite", "public_key", dp->pubkey);
    free(name);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *url = kite__sprintf("%s/v2/account/keys", kc->cfg.api);
    kite_http_request_t q = {.method = "POST",
                             .url = url,
                             .bearer_token = kc->cfg.token,
                             .body = text,
                             .body_len = text ? strlen(text) : 0};
    int rc = text && url ? kite_http_request(h, &q, on_key_created, kc, NULL) : KITE_ENOMEM;
    free(text);
    free(url);
    if (rc == 0)
      return;
    keyreg_settle(
        dp, kc->k, rc,
        kite__sprintf("digitalocean: cannot register kite's SSH key: %s", kite_strerror(rc)));
  } else {
    char *msg = NULL;
    int code = status == KITE_ECANCELED ? KITE_ECANCELED
                                        : map_failure(status, r, "looking up kite's SSH key", &msg);
    keyreg_settle(dp, kc->k, code, msg ? msg : kite__strdup("digitalocean: canceled"));
  }
  cfg_free(&kc->cfg);
  free(kc);
}

/* Makes sure kite's key is in the account; the op continues when it is. */
static void key_ensure(op_t *op) {
  kite_do_provider_t *dp = op->dp;
  keyreg_t *k = keyreg_for(dp, &op->cfg);
  if (k == NULL) {
    op_fail(op, KITE_ENOMEM, NULL);
    return;
  }
  if (k->state == 2) {
    op->step = L_CREATE;
    op_step_launch(op);
    return;
  }
  op->step = L_KEY_WAIT;
  op->waiting_on = k;
  op->next_waiter = k->waiters;
  k->waiters = op;
  if (k->state == 1)
    return;
  k->state = 1;
  keyctx_t *kc = calloc(1, sizeof(*kc));
  char *url = kite__sprintf("%s/v2/account/keys/%s", op->cfg.api, dp->fingerprint);
  int rc = kc && url ? 0 : KITE_ENOMEM;
  if (rc == 0) {
    kc->dp = dp;
    kc->k = k;
    kc->cfg.api = kite__strdup(op->cfg.api);
    kc->cfg.token = kite__strdup(op->cfg.token);
    kite_http_request_t q = {.url = url, .bearer_token = op->cfg.token};
    rc = kite_http_request(dp->http, &q, on_key_got, kc, NULL);
  }
  free(url);
  if (rc != 0) {
    if (kc)
      cfg_free(&kc->cfg);
    free(kc);
    keyreg_settle(
        dp, k, rc,
        kite__sprintf("digitalocean: cannot look up kite's SSH key: %s", kite_strerror(rc)));
  }
}

/* ---- launch -----------------------------------------------------------------------------------
 */

static void launch_undo(op_t *op, int code, char *msg);

static void on_launch_timer(uv_timer_t *t) {
  op_t *op = kite_container_of(t, op_t, timer);
  op_step_launch(op);
}

static void retry_later(op_t *op, uint64_t ms) {
  uv_timer_start(&op->timer, on_launch_timer, ms, 0);
}

static void on_created(kite_http_t *h, int status, const kite_http_response_t *r, void *data);
static void maybe_stopped(kite_do_provider_t *dp);
static void on_recover(kite_http_t *h, int status, const kite_http_response_t *r, void *data);
static void on_polled(kite_http_t *h, int status, const kite_http_response_t *r, void *data);

static void launch_create_one(op_t *op);
static void on_batch_timer(uv_timer_t *t);

/* A first create waits for the end of this loop turn, to go out with its siblings. */
static void launch_create(op_t *op) {
  kite_do_provider_t *dp = op->dp;
  if (op->create_tries > 0 || !dp->batch_timer_on) {
    launch_create_one(op);
    return;
  }
  op->step = L_CREATE;
  op->next_waiter = NULL;
  op_t **pp = &dp->queued;
  while (*pp)
    pp = &(*pp)->next_waiter;
  *pp = op;
  if (!uv_is_active((uv_handle_t *)&dp->batch_timer))
    uv_timer_start(&dp->batch_timer, on_batch_timer, 0, 0);
}

static void launch_create_one(op_t *op) {
  kite_do_provider_t *dp = op->dp;
  if (++op->create_tries > CREATE_TRIES) {
    op_fail(op, op->fail_code ? op->fail_code : KITE_EPROVIDER,
            op->fail_msg ? kite__strdup(op->fail_msg)
                         : kite__sprintf("digitalocean: creating droplet %s failed %d times",
                                         op->droplet_name, CREATE_TRIES));
    return;
  }
  json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:[s], s:[s], s:b}", "name", op->droplet_name,
                           "region", op->region, "size", op->size, "image", op->image, "ssh_keys",
                           dp->fingerprint, "tags", op->tag, "monitoring", 0);
  const char *ud = op->ud_final ? op->ud_final : op->user_data;
  if (body && ud && *ud)
    json_object_set_new(body, "user_data", json_string(ud));
  int rc = body ? op_http(op, "POST", "/v2/droplets", body, false, on_created) : KITE_ENOMEM;
  json_decref(body);
  if (rc != 0)
    op_fail(op, rc,
            kite__sprintf("digitalocean: cannot send the create request: %s", kite_strerror(rc)));
}

/* "/v2/droplets?tag_name=TAG&per_page=200" with the tag escaped. */
static char *tag_list_path(const char *tag) {
  if (strcmp(tag, "*") == 0)
    return kite__strdup("/v2/droplets?per_page=200");
  CURL *e = curl_easy_init();
  char *t = e ? curl_easy_escape(e, tag, 0) : NULL;
  char *path = t ? kite__sprintf("/v2/droplets?tag_name=%s&per_page=200", t) : NULL;
  curl_free(t);
  if (e)
    curl_easy_cleanup(e);
  return path;
}

/* After an ambiguous create: is our droplet there? url: a next page, or NULL for the first. */
static void launch_recover(op_t *op, const char *url) {
  char *path = url ? NULL : tag_list_path(op->tag);
  int rc = url || path ? op_http(op, "GET", url ? url : path, NULL, url != NULL, on_recover)
                       : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    op_fail(op, rc,
            kite__sprintf("digitalocean: cannot look for droplet %s: %s", op->droplet_name,
                          kite_strerror(rc)));
}

static void op_step_launch(op_t *op) {
  if (op->dp->stopping && op->step != L_UNDO && op->droplet_id == NULL) {
    op_fail(op, KITE_ECLOSED, kite__strdup("digitalocean: the provider is stopping"));
    return;
  }
  switch (op->step) {
  case L_KEY_WAIT:
    key_ensure(op);
    break;
  case L_CREATE:
    launch_create(op);
    break;
  case L_RECOVER:
    launch_recover(op, NULL);
    break;
  case L_POLL:
    op_poll(op);
    break;
  case L_UNDO:
    launch_undo(op, op->fail_code, NULL);
    break;
  default:
    op_fail(op, KITE_EINTERNAL, kite__strdup("digitalocean: bad launch step"));
  }
}

static bool ambiguous(int status, const kite_http_response_t *r) {
  return status == KITE_ETIMEDOUT || status == KITE_ECONNLOST ||
         (status == KITE_EHTTP && (r->status >= 500 || r->status == 0));
}

/* The outcome of a create for one op: d is its droplet from the answer, or NULL. */
/* The create answered: the droplet exists, so its id goes to the pool's store now. */
static void note_created(op_t *op) {
  kite_ev_instance_created_t c = {.pool = op->pool,
                                  .node = op->node,
                                  .rank = op->rank,
                                  .provider = NAME,
                                  .instance_id = op->droplet_id};
  kite_emit_instance_created(op->dp->bus, &c);
}

static void created_result(op_t *op, int status, const kite_http_response_t *r, json_t *d,
                           bool readable) {
  if (status == KITE_ECANCELED) {
    /* Closing: the droplet may exist, and there is no time left to look for it. */
    op_fail(op, KITE_ECANCELED,
            kite__sprintf("digitalocean: launch of %s canceled (check the account for droplets "
                          "tagged %s)",
                          op->droplet_name, op->tag));
    return;
  }
  char *id = status == 0 ? droplet_id_str(d) : NULL;
  if (id) {
    op->droplet_id = id;
    known_add(op->dp, "", id, &op->cfg);
    note_created(op);
    KITE_INFO(op->dp->rt, NAME, "droplet %s (%s) created for rank %u", id, op->droplet_name,
              op->rank);
    op->step = L_POLL;
    op->poll_ms = op->dp->opts.poll_ms ? op->dp->opts.poll_ms : 2000;
    uv_timer_start(&op->timer, on_launch_timer, op->poll_ms, 0);
    return;
  }
  if (status == 0 || ambiguous(status, r)) {
    /* The droplet may or may not exist: find out before creating it again. */
    const char *why = status != 0 ? r->message
                      : readable  ? "the answer does not list this droplet"
                                  : "unreadable answer";
    KITE_INFO(op->dp->rt, NAME, "create of %s: %s; looking for it before trying again",
              op->droplet_name, why);
    free(op->fail_msg);
    op->fail_code = status == 0 ? KITE_EPROTO : status;
    op->fail_msg = kite__sprintf("digitalocean: creating %s: %s", op->droplet_name, why);
    op->step = L_RECOVER;
    launch_recover(op, NULL);
    return;
  }
  char *msg = NULL;
  char *what = kite__sprintf("creating droplet %s (region %s, size %s, image %s)", op->droplet_name,
                             op->region, op->size, op->image);
  int code = map_failure(status, r, what ? what : "creating a droplet", &msg);
  free(what);
  op_fail(op, code, msg);
}

static void on_created(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  (void)h;
  op->req = NULL;
  json_t *j = status == 0 ? body_json(r) : NULL;
  created_result(op, status, r, json_object_get(j, "droplet"), j != NULL);
  json_decref(j);
}

static void on_batch_created(kite_http_t *h, int status, const kite_http_response_t *r,
                             void *data) {
  batch_t *b = data;
  kite_do_provider_t *dp = b->dp;
  (void)h;
  for (batch_t **pp = &dp->batches; *pp; pp = &(*pp)->next)
    if (*pp == b) {
      *pp = b->next;
      break;
    }
  if (status == KITE_EHTTP && r->status == 422) {
    /* Refused as a whole (a limit, a size out of stock): some may still fit one by one. */
    KITE_INFO(dp->rt, NAME, "create of %zu droplets refused (%s); trying them one by one", b->n,
              r->message);
    for (size_t i = 0; i < b->n; i++)
      launch_create_one(b->ops[i]);
    free(b);
    return;
  }
  json_t *j = status == 0 ? body_json(r) : NULL;
  json_t *list = json_object_get(j, "droplets");
  for (size_t i = 0; i < b->n; i++) {
    op_t *op = b->ops[i];
    json_t *mine = NULL, *d;
    size_t k;
    json_array_foreach(list, k, d) {
      const char *name = json_string_value(json_object_get(d, "name"));
      if (name && strcmp(name, op->droplet_name) == 0)
        mine = d;
    }
    created_result(op, status, r, mine, json_is_array(list));
  }
  json_decref(j);
  free(b);
  maybe_stopped(dp);
}

static bool same_str(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static bool batchable(const op_t *a, const op_t *b) {
  return strcmp(a->cfg.api, b->cfg.api) == 0 && strcmp(a->cfg.token, b->cfg.token) == 0 &&
         strcmp(a->region, b->region) == 0 && strcmp(a->size, b->size) == 0 &&
         strcmp(a->image, b->image) == 0 && strcmp(a->tag, b->tag) == 0 &&
         same_str(a->user_data, b->user_data) && same_str(a->ud_final, b->ud_final);
}

/* Sends the queued first creates: one request per group of up to MAX_BATCH alike. */
static void on_batch_timer(uv_timer_t *t) {
  kite_do_provider_t *dp = kite_container_of(t, kite_do_provider_t, batch_timer);
  while (dp->queued) {
    batch_t *b = calloc(1, sizeof(*b));
    op_t *first = dp->queued;
    dp->queued = first->next_waiter;
    first->next_waiter = NULL;
    if (b == NULL) {
      launch_create_one(first);
      continue;
    }
    b->dp = dp;
    b->ops[b->n++] = first;
    for (op_t **pp = &dp->queued; *pp && b->n < MAX_BATCH;) {
      if (batchable(first, *pp)) {
        op_t *o = *pp;
        *pp = o->next_waiter;
        o->next_waiter = NULL;
        b->ops[b->n++] = o;
      } else {
        pp = &(*pp)->next_waiter;
      }
    }
    if (b->n == 1) {
      free(b);
      launch_create_one(first);
      continue;
    }
    json_t *names = json_array();
    for (size_t i = 0; i < b->n; i++) {
      b->ops[i]->create_tries++;
      json_array_append_new(names, json_string(b->ops[i]->droplet_name));
    }
    json_t *body = json_pack("{s:o, s:s, s:s, s:s, s:[s], s:[s], s:b}", "names", names, "region",
                             first->region, "size", first->size, "image", first->image, "ssh_keys",
                             dp->fingerprint, "tags", first->tag, "monitoring", 0);
    const char *ud = first->ud_final ? first->ud_final : first->user_data;
    if (body && ud && *ud)
      json_object_set_new(body, "user_data", json_string(ud));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    char *url = kite__sprintf("%s/v2/droplets", first->cfg.api);
    kite_http_request_t q = {.method = "POST",
                             .url = url,
                             .bearer_token = first->cfg.token,
                             .body = text,
                             .body_len = text ? strlen(text) : 0};
    int rc =
        text && url ? kite_http_request(dp->http, &q, on_batch_created, b, &b->req) : KITE_ENOMEM;
    free(text);
    free(url);
    if (rc != 0) {
      for (size_t i = 0; i < b->n; i++)
        op_fail(
            b->ops[i], rc,
            kite__sprintf("digitalocean: cannot send the create request: %s", kite_strerror(rc)));
      free(b);
      continue;
    }
    KITE_INFO(dp->rt, NAME, "creating %zu droplets tagged %s in one request", b->n, first->tag);
    b->next = dp->batches;
    dp->batches = b;
  }
}

static void on_recover(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  (void)h;
  op->req = NULL;
  if (status == KITE_ECANCELED) {
    op_fail(op, KITE_ECANCELED, kite__strdup("digitalocean: canceled"));
    return;
  }
  json_t *j = status == 0 ? body_json(r) : NULL;
  json_t *list = json_object_get(j, "droplets");
  if (status != 0 || !json_is_array(list)) {
    json_decref(j);
    if (++op->recover_tries >= RECOVER_TRIES) {
      op_fail(op, op->fail_code ? op->fail_code : KITE_EPROTO,
              kite__sprintf("digitalocean: creating %s: the API answered ambiguously and the "
                            "droplet list could not be read %d times; the droplet may exist: "
                            "`kite down` deletes everything tagged %s",
                            op->droplet_name, RECOVER_TRIES, op->tag));
      return;
    }
    /* Cannot tell yet: ask again a little later (the client already retried). */
    retry_later(op, op->dp->opts.poll_ms ? op->dp->opts.poll_ms : 2000);
    return;
  }
  size_t i;
  json_t *d;
  json_array_foreach(list, i, d) {
    const char *name = json_string_value(json_object_get(d, "name"));
    if (name && strcmp(name, op->droplet_name) == 0) {
      op->droplet_id = droplet_id_str(d);
      if (op->droplet_id) {
        known_add(op->dp, "", op->droplet_id, &op->cfg);
        note_created(op);
        KITE_INFO(op->dp->rt, NAME, "droplet %s (%s) exists after all", op->droplet_id, name);
        json_decref(j);
        op->step = L_POLL;
        op->poll_ms = op->dp->opts.poll_ms ? op->dp->opts.poll_ms : 2000;
        op_poll(op);
        return;
      }
    }
  }
  const char *next = json_string_value(
      json_object_get(json_object_get(json_object_get(j, "links"), "pages"), "next"));
  if (next_link_ok(&op->cfg, next) && ++op->pages < MAX_PAGES) {
    char *n = kite__strdup(next);
    json_decref(j);
    launch_recover(op, n);
    free(n);
    return;
  }
  json_decref(j);
  op->pages = 0;
  op->step = L_CREATE;
  launch_create(op);
}

static void op_poll(op_t *op) {
  char *path = kite__sprintf("/v2/droplets/%s", op->droplet_id);
  int rc = path ? op_http(op, "GET", path, NULL, false, on_polled) : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    retry_later(op, op->poll_ms);
}

static void poll_again(op_t *op) {
  op->poll_ms = op->poll_ms * 3 / 2;
  if (op->poll_ms > POLL_MAX_MS)
    op->poll_ms = POLL_MAX_MS;
  retry_later(op, op->poll_ms);
}

static void on_polled(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  kite_do_provider_t *dp = op->dp;
  (void)h;
  op->req = NULL;
  if (status == KITE_ECANCELED) {
    op_fail(op, KITE_ECANCELED,
            kite__sprintf("digitalocean: launch canceled; droplet %s may "
                          "still exist",
                          op->droplet_id));
    return;
  }
  if (op->deadline_ms == 0)
    op->deadline_ms =
        kite__wall_ms() + (dp->opts.active_timeout_ms ? dp->opts.active_timeout_ms : 600000);
  if (status == KITE_EHTTP && r->status == 404) {
    launch_undo(op, KITE_EPROVIDER,
                kite__sprintf("digitalocean: droplet %s disappeared before it became active",
                              op->droplet_id));
    return;
  }
  if (status == KITE_EHTTP && (r->status == 401 || r->status == 403)) {
    char *msg = NULL;
    int code = map_failure(status, r, "waiting for the droplet", &msg);
    launch_undo(op, code, msg);
    return;
  }
  json_t *j = status == 0 ? body_json(r) : NULL;
  json_t *d = json_object_get(j, "droplet");
  const char *st = json_string_value(json_object_get(d, "status"));
  const char *ip = droplet_ipv4(d);
  if (st && strcmp(st, "active") == 0 && ip) {
    double price = json_number_value(json_object_get(json_object_get(d, "size"), "price_hourly"));
    kite_ev_instance_launched_t l = {.pool = op->pool,
                                     .node = op->node,
                                     .rank = op->rank,
                                     .provider = NAME,
                                     .instance_id = op->droplet_id,
                                     .address = ip,
                                     .port = op->cfg.port,
                                     .user = op->cfg.user,
                                     .host_key = op->host_pub,
                                     .price_hourly = price,
                                     .tag = op->tag,
                                     .key_path = dp->key_path};
    KITE_INFO(dp->rt, NAME, "droplet %s active at %s", op->droplet_id, ip);
    kite_reply_instance_launched(dp->bus, op->corr, &l);
    json_decref(j);
    op_free(op);
    return;
  }
  bool dead = st && (strcmp(st, "off") == 0 || strcmp(st, "archive") == 0);
  json_decref(j);
  if (dead) {
    launch_undo(op, KITE_EPROVIDER,
                kite__sprintf("digitalocean: droplet %s went %s before it became active",
                              op->droplet_id, st));
    return;
  }
  if (kite__wall_ms() > op->deadline_ms) {
    launch_undo(op, KITE_ETIMEDOUT,
                kite__sprintf("digitalocean: droplet %s did not become active in time; deleted "
                              "it",
                              op->droplet_id));
    return;
  }
  poll_again(op);
}

/* A launch that failed after its droplet was created deletes it, then reports. */
static void on_undo_deleted(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  (void)h;
  op->req = NULL;
  if (status == 0 || (status == KITE_EHTTP && r->status == 404)) {
    op_fail(op, op->fail_code, op->fail_msg);
    op->fail_msg = NULL;
    return;
  }
  if (status == KITE_ECANCELED || op->polls++ > 20) {
    char *m = kite__sprintf("%s; deleting droplet %s failed too: delete it by hand or run "
                            "`kite down`",
                            op->fail_msg ? op->fail_msg : "", op->droplet_id);
    op_fail(op, op->fail_code, m);
    return;
  }
  retry_later(op, 2000);
}

static void launch_undo(op_t *op, int code, char *msg) {
  if (msg) {
    free(op->fail_msg);
    op->fail_msg = msg;
    op->fail_code = code;
  }
  op->step = L_UNDO;
  char *path = kite__sprintf("/v2/droplets/%s", op->droplet_id);
  int rc = path ? op_http(op, "DELETE", path, NULL, false, on_undo_deleted) : KITE_ENOMEM;
  free(path);
  if (rc != 0) {
    op_fail(op, op->fail_code, op->fail_msg);
    op->fail_msg = NULL;
  }
}

/* Lowercase hostname characters only: the pool's tag may carry underscores. */
static char *droplet_name_for(kite_do_provider_t *dp, const char *tag, uint32_t rank) {
  char *n = kite__sprintf("%s-r%u-%llx%04x", tag, rank, (unsigned long long)kite__wall_ms(),
                          (unsigned)(++dp->seq & 0xffff));
  for (char *p = n; p && *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
      *p = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : '-';
  return n;
}

/* The cloud-config that installs the host key (cloud-init's ssh_keys) and then runs the pool's
 * own user_data as a script. */
static char *cloud_config(const char *priv, const char *pub, const char *user_data) {
  size_t n = strlen(priv);
  char *ind = malloc(n * 5 + 8), *o = ind;
  if (ind == NULL)
    return NULL;
  bool bol = true;
  for (size_t k = 0; k < n; k++) {
    if (bol && priv[k] != '\n') {
      memcpy(o, "    ", 4);
      o += 4;
    }
    *o++ = priv[k];
    bol = priv[k] == '\n';
  }
  while (o > ind && o[-1] == '\n')
    o--;
  *o = '\0';
  char *extra = NULL;
  if (user_data && *user_data) {
    size_t ul = strlen(user_data);
    unsigned char *enc = malloc(4 * ((ul + 2) / 3) + 1);
    if (enc)
      EVP_EncodeBlock(enc, (const unsigned char *)user_data, (int)ul);
    extra = enc ? kite__sprintf("write_files:\n  - path: /var/lib/kite/user-data\n"
                                "    permissions: '0700'\n    encoding: b64\n"
                                "    content: %s\nruncmd:\n  - [sh, /var/lib/kite/user-data]\n",
                                (const char *)enc)
                : NULL;
    free(enc);
    if (extra == NULL) {
      free(ind);
      return NULL;
    }
  }
  char *cc = kite__sprintf("#cloud-config\nssh_deletekeys: true\nssh_genkeytypes: []\n"
                           "ssh_keys:\n  ed25519_private: |\n%s\n  ed25519_public: %s\n%s",
                           ind, pub, extra ? extra : "");
  memset(ind, 0, strlen(ind));
  free(ind);
  free(extra);
  return cc;
}

static void on_op_hostkey(kite_runtime_t *rt, int status, void *data) {
  op_t *op = data;
  kite_do_provider_t *dp = op->dp;
  (void)rt;
  char *priv = NULL, *pub = NULL;
  char *pubpath = kite__sprintf("%s.pub", op->hk_path);
  if (status == 0)
    status = kite__read_file(op->hk_path, &priv, NULL);
  if (status == 0)
    status = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
  /* The controller keeps no copy: the key lives on in the droplet only. */
  unlink(op->hk_path);
  if (pubpath)
    unlink(pubpath);
  free(pubpath);
  char type[64], b64[512];
  if (status == 0 && sscanf(pub, "%63s %511s", type, b64) != 2)
    status = KITE_EPROTO;
  if (status == 0) {
    kite_secret_add(dp->rt, priv);
    op->host_pub = kite__sprintf("%s %s", type, b64);
    op->ud_final = op->host_pub ? cloud_config(priv, op->host_pub, op->user_data) : NULL;
    if (op->ud_final)
      kite_secret_add(dp->rt, op->ud_final);
    else
      status = KITE_ENOMEM;
  }
  if (priv)
    memset(priv, 0, strlen(priv));
  free(priv);
  free(pub);
  if (dp->stopping) {
    op_fail(op, KITE_ECLOSED, kite__strdup("digitalocean: the provider is stopping"));
    return;
  }
  if (status != 0) {
    op_fail(op, status,
            kite__sprintf("digitalocean: cannot generate a host key for droplet %s (is "
                          "ssh-keygen installed and $KITE_HOME writable?)",
                          op->droplet_name));
    return;
  }
  key_ensure(op);
}

/* Kite's key pair exists (or could not be made): go on to the account key. */
static void launch_with_key(op_t *op) {
  kite_do_provider_t *dp = op->dp;
  if (dp->stopping) {
    op_fail(op, KITE_ECLOSED, kite__strdup("digitalocean: the provider is stopping"));
    return;
  }
  if (dp->key_status != 0) {
    op_fail(op, dp->key_status,
            kite__sprintf("digitalocean: kite's SSH key %s could not be created or read (is "
                          "ssh-keygen installed and the directory writable?)",
                          dp->key_path));
    return;
  }
  /* A cloud-config of the pool's own cannot be merged with ours: then the droplet makes its
   * own host key and the pool's host-key mode applies. */
  bool own_cc = op->user_data && strncmp(op->user_data, "#cloud-config", 13) == 0;
  if (op->cfg.pin && !own_cc && op->host_pub == NULL) {
    op->hk_path =
        kite__sprintf("%s/digitalocean/hostkeys/%s", kite_runtime_home(dp->rt), op->droplet_name);
    int rc =
        op->hk_path ? kite_keypair_ensure(dp->rt, op->hk_path, on_op_hostkey, op) : KITE_ENOMEM;
    if (rc != 0)
      op_fail(op, rc,
              kite__sprintf("digitalocean: cannot generate a host key for droplet %s",
                            op->droplet_name));
    return;
  }
  key_ensure(op);
}

static void on_launch(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                      void *data) {
  kite_do_provider_t *dp = data;
  if (dp->stopping) {
    kite_bus_reply_error(bus, ev->corr, KITE_ECLOSED, "digitalocean: the provider is stopping");
    return;
  }
  if (p->spot) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOTSUP,
                         "digitalocean: DigitalOcean has no spot droplets: remove spot: true "
                         "from the spec");
    return;
  }
  op_t *op = op_new(dp, OP_LAUNCH, ev->corr);
  if (op == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  char *msg = NULL;
  int rc = cfg_resolve(dp, p->options, &op->cfg, &msg);
  if (rc != 0) {
    op_fail(op, rc, msg);
    return;
  }
  op->pool = p->pool;
  op->node = p->node;
  op->rank = p->rank;
  op->tag = kite__strdup(p->tag && *p->tag ? p->tag : "kite-untagged");
  op->region = kite__strdup(p->region && *p->region ? p->region
                            : dp->opt_region        ? dp->opt_region
                                                    : DEFAULT_REGION);
  op->size = kite__strdup(p->instance_type && *p->instance_type ? p->instance_type
                          : dp->opt_size                        ? dp->opt_size
                                                                : DEFAULT_SIZE);
  op->image = kite__strdup(p->image && *p->image ? p->image
                           : dp->opt_image       ? dp->opt_image
                                                 : DEFAULT_IMAGE);
  op->user_data = kite__strdup(p->user_data);
  if (op->user_data && strlen(op->user_data) >= 4)
    kite_secret_add(dp->rt, op->user_data);
  op->droplet_name = droplet_name_for(dp, op->tag, op->rank);
  if (!op->tag || !op->region || !op->size || !op->image || !op->droplet_name ||
      (p->user_data && !op->user_data)) {
    op_fail(op, KITE_ENOMEM, NULL);
    return;
  }
  known_add(dp, "tag:", op->tag, &op->cfg);
  if (!dp->key_ready) {
    op->step = L_KEY_WAIT; /* on_key continues it */
    return;
  }
  launch_with_key(op);
}

/* ---- terminate --------------------------------------------------------------------------------
 */

static void on_term_deleted(kite_http_t *h, int status, const kite_http_response_t *r, void *data);

static void on_term_timer(uv_timer_t *t) {
  op_t *op = kite_container_of(t, op_t, timer);
  op_terminate_poll(op);
}

static void term_confirmed(op_t *op) {
  kite_ev_instance_terminated_t t = {.pool = op->pool,
                                     .node = op->node,
                                     .rank = op->rank,
                                     .provider = NAME,
                                     .instance_id = op->instance_id};
  KITE_INFO(op->dp->rt, NAME, "droplet %s is gone", op->instance_id);
  known_remove(op->dp, op->instance_id);
  kite_reply_instance_terminated(op->dp->bus, op->corr, &t);
  op_free(op);
}

static void term_delete(op_t *op) {
  char *path = kite__sprintf("/v2/droplets/%s", op->instance_id);
  int rc = path ? op_http(op, "DELETE", path, NULL, false, on_term_deleted) : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    op_fail(op, rc,
            kite__sprintf("digitalocean: cannot delete droplet %s: %s", op->instance_id,
                          kite_strerror(rc)));
}

/* A 404 from an API or account the droplet was not created in proves nothing. */
static void term_not_proven(op_t *op) {
  op_fail(op, KITE_EPROVIDER,
          kite__sprintf("digitalocean: %s does not know droplet %s, but its record does not say "
                        "it was created there with this token, so that is no proof it is gone; "
                        "it stays recorded. Run `kite down` with the token it was created with",
                        op->cfg.api, op->instance_id));
}

static void on_term_polled(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  (void)h;
  op->req = NULL;
  if (status == KITE_EHTTP && r->status == 404) {
    if (op->trust_404)
      term_confirmed(op);
    else
      term_not_proven(op);
    return;
  }
  if (status == KITE_ECANCELED) {
    op_fail(op, KITE_ECANCELED,
            kite__sprintf("digitalocean: deletion of droplet %s not "
                          "confirmed (canceled)",
                          op->instance_id));
    return;
  }
  if (kite__wall_ms() > op->deadline_ms) {
    op_fail(op, KITE_ETIMEDOUT,
            kite__sprintf("digitalocean: droplet %s is still there after the deletion timeout; "
                          "check the account and run `kite down` again",
                          op->instance_id));
    return;
  }
  /* Still there: ask again, and now and then repeat the DELETE. */
  op->poll_ms = op->poll_ms * 3 / 2 > POLL_MAX_MS ? POLL_MAX_MS : op->poll_ms * 3 / 2;
  if (++op->polls % 6 == 0) {
    term_delete(op);
    return;
  }
  uv_timer_start(&op->timer, on_term_timer, op->poll_ms, 0);
}

static void op_terminate_poll(op_t *op) {
  char *path = kite__sprintf("/v2/droplets/%s", op->instance_id);
  int rc = path ? op_http(op, "GET", path, NULL, false, on_term_polled) : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    op_fail(op, rc,
            kite__sprintf("digitalocean: cannot check droplet %s: %s", op->instance_id,
                          kite_strerror(rc)));
}

static void on_term_deleted(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  (void)h;
  op->req = NULL;
  if (status == KITE_EHTTP && r->status == 404 && !op->trust_404) {
    term_not_proven(op);
    return;
  }
  if (status == 0)
    op->trust_404 = true; /* the API knew it: its 404 later means it is gone */
  if (status == 0 || (status == KITE_EHTTP && r->status == 404)) {
    /* Accepted (or already gone): confirmed only when a GET says 404. */
    uv_timer_start(&op->timer, on_term_timer, status == 0 ? op->poll_ms / 4 + 1 : 0, 0);
    return;
  }
  char *msg = NULL;
  char *what = kite__sprintf("deleting droplet %s", op->instance_id);
  int code = status == KITE_ECANCELED ? KITE_ECANCELED
                                      : map_failure(status, r, what ? what : "deleting", &msg);
  free(what);
  op_fail(op, code, msg);
}

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  kite_do_provider_t *dp = data;
  char *end = NULL;
  if (p->instance_id == NULL || strtoull(p->instance_id, &end, 10) == 0 || *end) {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL,
                         "digitalocean: a droplet id is a positive integer");
    return;
  }
  op_t *op = op_new(dp, OP_TERMINATE, ev->corr);
  if (op == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  char *msg = NULL;
  int rc = cfg_reach(dp, "", p->instance_id, p->reach, &op->cfg, &op->trust_404, &msg);
  if (rc != 0) {
    op_fail(op, rc, msg);
    return;
  }
  op->pool = p->pool;
  op->node = p->node;
  op->rank = p->rank;
  op->instance_id = kite__strdup(p->instance_id);
  op->poll_ms = dp->opts.poll_ms ? dp->opts.poll_ms : 2000;
  op->deadline_ms =
      kite__wall_ms() + (dp->opts.delete_timeout_ms ? dp->opts.delete_timeout_ms : 600000);
  term_delete(op);
}

/* ---- describe, preemption, list ---------------------------------------------------------------
 */

static void on_described(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  kite_do_provider_t *dp = op->dp;
  (void)h;
  op->req = NULL;
  const char *state = NULL, *ip = NULL;
  json_t *j = status == 0 ? body_json(r) : NULL;
  json_t *d = json_object_get(j, "droplet");
  if (status == KITE_EHTTP && r->status == 404) {
    state = "terminated";
  } else if (d) {
    const char *st = json_string_value(json_object_get(d, "status"));
    ip = droplet_ipv4(d);
    state = st == NULL                   ? "unknown"
            : strcmp(st, "new") == 0     ? "pending"
            : strcmp(st, "active") == 0  ? "running"
            : strcmp(st, "off") == 0     ? "stopped"
            : strcmp(st, "archive") == 0 ? "terminated"
                                         : "unknown";
  }
  if (state == NULL) {
    char *msg = NULL;
    char *what = kite__sprintf("describing droplet %s", op->instance_id);
    int code = status == 0 ? KITE_EPROTO : map_failure(status, r, what ? what : "describe", &msg);
    free(what);
    json_decref(j);
    op_fail(op, code, msg ? msg : kite__strdup("digitalocean: unreadable answer from the API"));
    return;
  }
  if (op->kind == OP_DESCRIBE) {
    kite_ev_instance_state_t s = {.provider = NAME,
                                  .node = op->node,
                                  .instance_id = op->instance_id,
                                  .state = state,
                                  .address = ip};
    kite_reply_instance_state(dp->bus, op->corr, &s);
  } else {
    bool gone = strcmp(state, "terminated") == 0 || strcmp(state, "stopped") == 0;
    kite_ev_preempt_status_t s = {.provider = NAME,
                                  .node = op->node,
                                  .instance_id = op->instance_id,
                                  .state = gone ? KITE_PREEMPT_GONE : KITE_PREEMPT_NONE};
    kite_reply_preempt_status(dp->bus, op->corr, &s);
  }
  json_decref(j);
  op_free(op);
}

static void describe_start(kite_do_provider_t *dp, op_kind_t kind, uint64_t corr, uint64_t node,
                           const char *id) {
  op_t *op = op_new(dp, kind, corr);
  if (op == NULL) {
    kite_bus_reply_error(dp->bus, corr, KITE_ENOMEM, "out of memory");
    return;
  }
  char *msg = NULL;
  int rc = cfg_for(dp, "", id, &op->cfg, &msg);
  if (rc != 0) {
    op_fail(op, rc, msg);
    return;
  }
  op->node = node;
  op->instance_id = kite__strdup(id ? id : "");
  char *path = kite__sprintf("/v2/droplets/%s", op->instance_id);
  rc = path ? op_http(op, "GET", path, NULL, false, on_described) : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    op_fail(op, rc, NULL);
}

static void on_describe(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_describe_t *p, void *data) {
  (void)bus;
  describe_start(data, OP_DESCRIBE, ev->corr, p->node, p->instance_id);
}

static void on_preempt_check(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_preempt_check_t *p, void *data) {
  (void)bus;
  describe_start(data, OP_PREEMPT, ev->corr, p->node, p->instance_id);
}

static void list_page(op_t *op, const char *url);

static void on_listed(kite_http_t *h, int status, const kite_http_response_t *r, void *data) {
  op_t *op = data;
  kite_do_provider_t *dp = op->dp;
  (void)h;
  op->req = NULL;
  json_t *j = status == 0 ? body_json(r) : NULL;
  json_t *list = json_object_get(j, "droplets");
  if (!json_is_array(list)) {
    char *msg = NULL;
    int code = status == 0 ? KITE_EPROTO : map_failure(status, r, "listing droplets by tag", &msg);
    json_decref(j);
    op_fail(op, code, msg ? msg : kite__strdup("digitalocean: unreadable droplet list"));
    return;
  }
  size_t i;
  json_t *d;
  bool any = strcmp(op->tag, "*") == 0;
  json_array_foreach(list, i, d) {
    const char *pool_tag = NULL;
    size_t t;
    json_t *tv;
    json_array_foreach(json_object_get(d, "tags"), t, tv) {
      const char *s = json_string_value(tv);
      if (s && strncmp(s, "kite-pool-", 10) == 0)
        pool_tag = s;
    }
    char *id = droplet_id_str(d);
    if (id && (!any || pool_tag)) {
      char *line = any ? kite__sprintf("%s %s", id, pool_tag) : kite__strdup(id);
      if (line)
        json_array_append_new(op->ids, json_string(line));
      free(line);
    }
    free(id);
  }
  const char *next = json_string_value(
      json_object_get(json_object_get(json_object_get(j, "links"), "pages"), "next"));
  if (next_link_ok(&op->cfg, next) && ++op->pages < MAX_PAGES) {
    char *n = kite__strdup(next);
    json_decref(j);
    list_page(op, n);
    free(n);
    return;
  }
  json_decref(j);
  size_t len = 1;
  json_array_foreach(op->ids, i, d) len += json_string_length(d) + 1;
  char *ids = calloc(len, 1);
  if (ids == NULL) {
    op_fail(op, KITE_ENOMEM, NULL);
    return;
  }
  json_array_foreach(op->ids, i, d) {
    if (i)
      strcat(ids, "\n");
    strcat(ids, json_string_value(d));
  }
  kite_ev_instance_listed_t l = {
      .provider = NAME, .tag = op->tag, .count = (uint32_t)json_array_size(op->ids), .ids = ids};
  kite_reply_instance_listed(dp->bus, op->corr, &l);
  free(ids);
  op_free(op);
}

static void list_page(op_t *op, const char *url) {
  char *path = url ? NULL : tag_list_path(op->tag);
  int rc = url || path ? op_http(op, "GET", url ? url : path, NULL, url != NULL, on_listed)
                       : KITE_ENOMEM;
  free(path);
  if (rc != 0)
    op_fail(op, rc, NULL);
}

static void on_list(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_list_t *p,
                    void *data) {
  kite_do_provider_t *dp = data;
  if (p->tag == NULL || *p->tag == '\0') {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL,
                         "digitalocean: listing needs a tag (kite only lists what it tagged)");
    return;
  }
  op_t *op = op_new(dp, OP_LIST, ev->corr);
  if (op == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  char *msg = NULL;
  bool trusted;
  int rc = cfg_reach(dp, "tag:", p->tag, p->reach, &op->cfg, &trusted, &msg);
  if (rc != 0) {
    op_fail(op, rc, msg);
    return;
  }
  op->tag = kite__strdup(p->tag);
  op->ids = json_array();
  if (op->tag == NULL || op->ids == NULL) {
    op_fail(op, KITE_ENOMEM, NULL);
    return;
  }
  list_page(op, NULL);
}

/* ---- component --------------------------------------------------------------------------------
 */

static void free_provider(kite_do_provider_t *dp) {
  while (dp->known) {
    known_t *k = dp->known;
    dp->known = k->next;
    cfg_free(&k->cfg);
    free(k->key);
    free(k);
  }
  while (dp->keys) {
    keyreg_t *k = dp->keys;
    dp->keys = k->next;
    free(k->api);
    free(k->token);
    free(k->fail_msg);
    free(k);
  }
  free(dp->opt_token);
  free(dp->opt_api);
  free(dp->opt_user);
  free(dp->opt_region);
  free(dp->opt_size);
  free(dp->opt_image);
  free(dp->key_path);
  free(dp->pubkey);
  free(dp->fingerprint);
  free(dp);
}

static void on_http_closed(kite_http_t *h, void *data) {
  kite_do_provider_t *dp = data;
  (void)h;
  dp->http = NULL;
  dp->http_closed = true;
  maybe_stopped(dp);
}

static void maybe_stopped(kite_do_provider_t *dp) {
  if (!dp->stopping || !dp->key_ready)
    return;
  if (dp->ops == NULL && dp->batches == NULL && dp->http && !dp->http_closed) {
    kite_http_t *h = dp->http;
    dp->http_closed = true; /* closing */
    kite_http_close(h, on_http_closed, dp);
    return;
  }
  if (dp->ops == NULL && dp->http == NULL && dp->handles_open == 0 && dp->stop_done) {
    kite_component_stopped_fn done = dp->stop_done;
    dp->stop_done = NULL;
    for (size_t k = 0; k < KITE_ARRAY_SIZE(dp->subs); k++)
      kite_bus_unsubscribe(dp->bus, dp->subs[k]);
    done(&dp->comp);
    free_provider(dp);
  }
}

static void on_key(kite_runtime_t *rt, int status, void *data) {
  kite_do_provider_t *dp = data;
  (void)rt;
  dp->key_ready = true;
  dp->key_status = status;
  if (status == 0) {
    char *pubpath = kite__sprintf("%s.pub", dp->key_path);
    char *pub = NULL;
    int rc = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
    free(pubpath);
    if (rc == 0) {
      pub[strcspn(pub, "\r\n")] = '\0';
      dp->pubkey = pub;
      dp->fingerprint = md5_fingerprint(pub);
      if (dp->fingerprint == NULL)
        rc = KITE_EINVAL;
    }
    dp->key_status = rc;
  }
  if (dp->key_status != 0)
    KITE_ERROR(dp->rt, NAME, "cannot use kite's SSH key %s: %s", dp->key_path,
               kite_strerror(dp->key_status));
  /* Launches that came before the key: on with them. */
  for (op_t *op = dp->ops, *next; op; op = next) {
    next = op->next;
    if (op->kind == OP_LAUNCH && op->step == L_KEY_WAIT && op->waiting_on == NULL &&
        op->req == NULL)
      launch_with_key(op);
  }
  maybe_stopped(dp);
}

static int dp_start(kite_component_t *c, kite_runtime_t *rt) {
  kite_do_provider_t *dp = kite_container_of(c, kite_do_provider_t, comp);
  kite_key_t key = kite_key_str(NAME);
  int rc = kite_respond_instance_launch(dp->bus, key, on_launch, dp, &dp->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(dp->bus, key, on_terminate, dp, &dp->subs[1]);
  if (rc == 0)
    rc = kite_respond_instance_describe(dp->bus, key, on_describe, dp, &dp->subs[2]);
  if (rc == 0)
    rc = kite_respond_instance_list(dp->bus, key, on_list, dp, &dp->subs[3]);
  if (rc == 0)
    rc = kite_respond_preempt_check(dp->bus, key, on_preempt_check, dp, &dp->subs[4]);
  if (rc == 0)
    rc = kite_respond_reach_resolve(dp->bus, key, on_reach_resolve, dp, &dp->subs[5]);
  if (rc == 0)
    rc = kite_keypair_ensure(rt, dp->key_path, on_key, dp);
  if (rc != 0) {
    for (size_t k = 0; k < KITE_ARRAY_SIZE(dp->subs); k++)
      kite_bus_unsubscribe(dp->bus, dp->subs[k]);
    return rc;
  }
  uv_timer_init(kite_runtime_loop(rt), &dp->batch_timer);
  dp->batch_timer_on = true;
  dp->handles_open++;
  return 0;
}

static void on_batch_timer_closed(uv_handle_t *h) {
  kite_do_provider_t *dp = kite_container_of((uv_timer_t *)h, kite_do_provider_t, batch_timer);
  dp->handles_open--;
  maybe_stopped(dp);
}

static void dp_stop(kite_component_t *c, kite_component_stopped_fn done) {
  kite_do_provider_t *dp = kite_container_of(c, kite_do_provider_t, comp);
  dp->stopping = true;
  dp->stop_done = done;
  if (dp->ops)
    KITE_WARN(dp->rt, NAME, "stopping with requests in flight; they are canceled");
  /* Waiting launches fail now; requests in flight end through their callbacks. */
  for (keyreg_t *k = dp->keys; k; k = k->next)
    if (k->waiters)
      keyreg_settle(dp, k, KITE_ECLOSED, kite__strdup("digitalocean: the provider is stopping"));
  while (dp->queued) {
    op_t *op = dp->queued;
    dp->queued = op->next_waiter;
    op->next_waiter = NULL;
    op_fail(op, KITE_ECLOSED, kite__strdup("digitalocean: the provider is stopping"));
  }
  for (batch_t *b = dp->batches; b; b = b->next)
    kite_http_cancel(b->req);
  if (dp->batch_timer_on) {
    dp->batch_timer_on = false;
    uv_timer_stop(&dp->batch_timer);
    uv_close((uv_handle_t *)&dp->batch_timer, on_batch_timer_closed);
  }
  for (op_t *op = dp->ops, *next; op; op = next) {
    next = op->next;
    if (op->req)
      kite_http_cancel(op->req);
    else if (uv_is_active((uv_handle_t *)&op->timer)) {
      uv_timer_stop(&op->timer);
      op_fail(op, KITE_ECLOSED,
              op->droplet_id ? kite__sprintf("digitalocean: the provider is stopping; droplet "
                                             "%s may still exist",
                                             op->droplet_id)
                             : kite__strdup("digitalocean: the provider is stopping"));
    }
  }
  maybe_stopped(dp);
}

int kite_do_provider_new(kite_runtime_t *rt, const kite_do_provider_options_t *opts,
                         kite_do_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_do_provider_t *dp = calloc(1, sizeof(*dp));
  if (dp == NULL)
    return KITE_ENOMEM;
  dp->rt = rt;
  dp->bus = kite_runtime_bus(rt);
  if (opts)
    dp->opts = *opts;
  dp->opt_token = kite__strdup(dp->opts.token);
  dp->opt_api = kite__strdup(dp->opts.api_url);
  dp->opt_user = kite__strdup(dp->opts.ssh_user);
  dp->opt_region = kite__strdup(dp->opts.region);
  dp->opt_size = kite__strdup(dp->opts.size);
  dp->opt_image = kite__strdup(dp->opts.image);
  dp->opts.token = dp->opts.api_url = dp->opts.ssh_user = NULL;
  dp->opts.region = dp->opts.size = dp->opts.image = dp->opts.ca_file = NULL;
  if (dp->opt_token)
    kite_secret_add(rt, dp->opt_token);
  dp->key_path = kite__sprintf("%s/keys/id_ed25519", kite_runtime_home(rt));
  char *dir = kite__sprintf("%s/keys", kite_runtime_home(rt));
  char *hdir = kite__sprintf("%s/digitalocean/hostkeys", kite_runtime_home(rt));
  int rc = dp->key_path && dir && hdir ? kite__mkdir_p(dir, 0700) : KITE_ENOMEM;
  if (rc == 0)
    rc = kite__mkdir_p(hdir, 0700);
  free(dir);
  free(hdir);
  if (rc == 0) {
    kite_http_options_t ho = {.ca_file = opts ? opts->ca_file : NULL,
                              .max_retries = opts && opts->max_retries ? opts->max_retries : -1,
                              .backoff_base_ms = opts ? opts->backoff_base_ms : 0,
                              .timeout_ms = opts ? opts->http_timeout_ms : 0,
                              .log_name = NAME};
    rc = kite_http_new(rt, &ho, &dp->http);
  }
  if (rc == 0) {
    dp->comp.name = NAME;
    dp->comp.tier = KITE_TIER_PROVIDER;
    dp->comp.start = dp_start;
    dp->comp.stop = dp_stop;
    rc = kite_runtime_add(rt, &dp->comp);
  }
  if (rc != 0) {
    if (dp->http) {
      /* Nothing ran on it yet; its close completes on the loop. */
      kite_http_close(dp->http, NULL, NULL);
    }
    free_provider(dp);
    return rc;
  }
  if (out)
    *out = dp;
  return 0;
}
