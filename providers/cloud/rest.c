/* The configuration, reach records and requests of JSON REST APIs with a bearer token
 * (rest.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "kite_impl.h"
#include "rest.h"

void kite_cloud_rest_free(void *p) {
  kite_cloud_rest_t *a = p;
  if (a == NULL)
    return;
  free(a->url);
  free(a->token);
  free(a);
}

static void account_name(const kite_cloud_ops_t *ops, const char *prefix, const char *token,
                         char out[48]) {
  char purpose[64], fp[17];
  snprintf(purpose, sizeof(purpose), "%s-token", ops->name);
  kite__fingerprint(purpose, token ? token : "", fp);
  snprintf(out, 48, "%.20s-%s", prefix, fp);
}

static int launch_defaults(const kite_cloud_rest_defaults_t *d,
                           const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg) {
  cfg->region = kite__strdup(kite_cloud_first(launch->region, d->region, d->region_builtin));
  cfg->type = kite__strdup(kite_cloud_first(launch->instance_type, d->type, d->type_builtin));
  cfg->image = kite__strdup(kite_cloud_first(launch->image, d->image, d->image_builtin));
  return cfg->region && cfg->type && cfg->image ? 0 : KITE_ENOMEM;
}

int kite_cloud_rest_configure(kite_cloud_t *c, json_t *o, const kite_cloud_rest_defaults_t *d,
                              const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                              char **msg) {
  const kite_cloud_ops_t *ops = kite_cloud_ops(c);
  const char *tok =
      kite_cloud_first(json_string_value(json_object_get(o, "token")), d->token, NULL);
  const char *url =
      kite_cloud_first(json_string_value(json_object_get(o, "api_url")), d->url, d->url_default);
  if (tok == NULL) {
    *msg = kite__sprintf("%s: no API token found: %s (kite looked in %s)", ops->name, d->token_help,
                         d->looked_in);
    return KITE_ECREDENTIALS;
  }
  kite_cloud_rest_t *api = calloc(1, sizeof(*api));
  cfg->api = api;
  if (api)
    api->errors = d->errors;
  if (api == NULL || (api->token = kite__strdup(tok)) == NULL ||
      (api->url = kite__strdup(url)) == NULL ||
      kite_secret_add(kite_cloud_runtime(c), tok) == KITE_ENOMEM)
    return KITE_ENOMEM;
  size_t n = strlen(api->url);
  while (n > 0 && api->url[n - 1] == '/')
    api->url[--n] = '\0';
  if (!kite_http_url_allowed(api->url)) {
    *msg = kite__sprintf("%s: the API URL %s is not allowed: use https://, or http:// only to a "
                         "loopback address (an emulator); set %s",
                         ops->name, api->url, d->url_hint);
    return KITE_EINVAL;
  }
  char account[48];
  account_name(ops, d->account, api->token, account);
  json_t *port = json_object_get(o, "ssh_port");
  cfg->site = kite__sprintf("%s %s", api->url, account);
  cfg->reach = kite_cloud_reach_json(ops->name, "api_url", api->url, "account", account, NULL);
  cfg->user = kite__strdup(
      kite_cloud_first(json_string_value(json_object_get(o, "ssh_user")), d->user, "root"));
  cfg->port = json_is_integer(port) ? (unsigned)json_integer_value(port) : d->port ? d->port : 22;
  cfg->pin = !json_is_false(json_object_get(o, "pin_host_key"));
  if (!cfg->site || !cfg->reach || !cfg->user)
    return KITE_ENOMEM;
  return launch ? launch_defaults(d, launch, cfg) : 0;
}

int kite_cloud_rest_configure_reach(kite_cloud_t *c, const char *reach, kite_cloud_cfg_t *cfg,
                                    bool *same_account, char **msg) {
  char *url = kite__json_str(reach, "api_url");
  char *account = kite__json_str(reach, "account");
  json_t *o = json_object();
  if (url)
    json_object_set_new(o, "api_url", json_string(url));
  char *opts = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  int rc = opts ? kite_cloud_ops(c)->configure(c, opts, NULL, cfg, msg) : KITE_ENOMEM;
  if (rc == 0 && account) {
    char *mine = kite__json_str(cfg->reach, "account");
    *same_account = mine && strcmp(mine, account) == 0;
    free(mine);
  }
  free(opts);
  free(url);
  free(account);
  return rc;
}

int kite_cloud_rest_http(kite_cloud_call_t *call, const char *method, const char *path,
                         bool full_url, json_t *body, kite_cloud_http_cb cb) {
  const kite_cloud_rest_t *api = call->cfg->api;
  char *url = full_url ? kite__strdup(path) : kite__sprintf("%s%s", api->url, path);
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  /* A create is never repeated by the HTTP client whatever its method: after an answer that
   * leaves it unknown, the skeleton looks for what it made first (cloud.h). */
  kite_http_request_t q = {.method = method,
                           .url = url,
                           .bearer_token = api->token,
                           .body = text,
                           .body_len = text ? strlen(text) : 0,
                           .not_idempotent = call->kind == KITE_CLOUD_CALL_CREATE};
  int rc = url && (body == NULL || text) ? kite_cloud_http(call, &q, cb) : KITE_ENOMEM;
  free(url);
  free(text);
  return rc;
}

json_t *kite_cloud_rest_body(const kite_http_response_t *r) {
  json_error_t jerr;
  json_t *j = r && r->body_len ? json_loadb(r->body, r->body_len, 0, &jerr) : NULL;
  if (!json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

char *kite_cloud_rest_id(json_t *o) {
  json_t *id = json_object_get(o, "id");
  if (!json_is_integer(id) || json_integer_value(id) <= 0)
    return NULL;
  return kite__sprintf("%lld", (long long)json_integer_value(id));
}

void kite_cloud_rest_unsent(kite_cloud_call_t *call, int rc) {
  kite_cloud_answer_fail(call, rc, "the request could not be sent");
}

void kite_cloud_rest_sendf(kite_cloud_call_t *call, const char *method, json_t *body,
                           kite_cloud_http_cb cb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *path = NULL;
  int n = vasprintf(&path, fmt, ap);
  va_end(ap);
  int rc = n >= 0 ? kite_cloud_rest_http(call, method, path, false, body, cb) : KITE_ENOMEM;
  if (n >= 0)
    free(path);
  if (rc != 0)
    kite_cloud_rest_unsent(call, rc);
}

void kite_cloud_rest_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *r,
                          kite_cloud_rest_again_fn again) {
  const kite_cloud_rest_t *api = call->cfg->api;
  const kite_cloud_rest_errors_t *e = api->errors;
  json_t *j = status != 0 && e ? kite_cloud_rest_body(r) : NULL;
  json_t *o = e && e->object ? json_object_get(j, e->object) : j;
  const char *code = e ? json_string_value(json_object_get(o, e->code)) : NULL;
  const char *message = e ? json_string_value(json_object_get(o, e->message)) : NULL;
  kite_cloud_answer_t a;
  kite_cloud_http_outcome(status, r, code, message, &a);
  a.prepare_again = status != 0 && again && again(call, code, message);
  kite_cloud_answer(call, &a);
  json_decref(j);
}

void kite_cloud_rest_done(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  if (status == 0)
    kite_cloud_answer_ok(call);
  else
    kite_cloud_rest_fail(call, status, r, NULL);
}

json_t *kite_cloud_rest_member(kite_cloud_call_t *call, int status, const kite_http_response_t *r,
                               const char *key, json_type type, json_t **doc,
                               kite_cloud_rest_again_fn again) {
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  json_t *m = json_object_get(j, key);
  if (m == NULL || json_typeof(m) != type) {
    json_decref(j);
    *doc = NULL;
    kite_cloud_rest_fail(call, status, r, again);
    return NULL;
  }
  *doc = j;
  return m;
}

bool kite_cloud_rest_whole(json_t *v, double max, uint64_t *out) {
  double d = json_is_integer(v) ? (double)json_integer_value(v)
             : json_is_real(v)  ? json_real_value(v)
                                : -1;
  if (!(d >= 0 && d <= max) || d != floor(d))
    return false;
  *out = (uint64_t)d;
  return true;
}

bool kite_cloud_rest_price(json_t *v, double *out) {
  double d = -1;
  if (json_is_number(v)) {
    d = json_number_value(v);
  } else if (json_is_string(v) && json_string_length(v) > 0 && json_string_length(v) < 32) {
    char *end = NULL;
    d = strtod(json_string_value(v), &end);
    if (*end != '\0')
      d = -1;
  }
  if (!(d >= 0 && d <= 1e6))
    return false;
  *out = d;
  return true;
}

void kite_cloud_rest_refuse(kite_cloud_call_t *call, const char *list, size_t i, const char *name,
                            const char *what) {
  char *msg = kite__sprintf("the answer's %s[%zu]%s%.64s%s: %s", list, i, name ? " (" : "",
                            name ? name : "", name ? ")" : "", what);
  kite_cloud_answer_fail(call, KITE_EPROTO, msg ? msg : what);
  free(msg);
}

bool kite_cloud_rest_offers(kite_cloud_call_t *call, json_t *list, const char *member,
                            const char *name_key,
                            const char *(*offers)(kite_cloud_call_t *call, json_t *item)) {
  size_t i;
  json_t *item;
  json_array_foreach(list, i, item) {
    const char *why = offers(call, item);
    if (why) {
      kite_cloud_rest_refuse(call, member, i, json_string_value(json_object_get(item, name_key)),
                             why);
      return false;
    }
  }
  return true;
}

char *kite_cloud_base64(const char *s) {
  size_t n = strlen(s);
  char *out = n < (1u << 28) ? malloc(4 * ((n + 2) / 3) + 1) : NULL;
  if (out)
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}
