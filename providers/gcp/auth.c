/* Google credentials and access tokens, as Google's client libraries find and use them.
 *
 * Design notes
 * - A service-account key (type "service_account": client_email, private_key, private_key_id,
 *   token_uri, project_id) becomes a JWT signed RS256 with libcrypto (EVP_DigestSign, SHA-256,
 *   PKCS #1 v1.5), exchanged at token_uri with grant_type
 *   urn:ietf:params:oauth:grant-type:jwt-bearer for an access token (RFC 7523).
 * - gcloud's application-default credentials (type "authorized_user": client_id,
 *   client_secret, refresh_token) are exchanged at token_uri with grant_type refresh_token.
 * - On Compute Engine, the metadata server's
 *   /computeMetadata/v1/instance/service-accounts/default/token (Metadata-Flavor: Google).
 * - Tokens are cached per credentials (kite__gcp_creds_name) in the provider and fetched again
 *   when less than a minute is left; the fetch is one more HTTP exchange of the call that needs
 *   it, on the loop like every other. Keys, refresh tokens and access tokens are registered as
 *   secrets before they are used. */
#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>

#include "../cloud/rest.h"
#include "gcp_impl.h"
#include "kite_impl.h"

void kite__gcp_creds_free(kite__gcp_creds_t *c) {
  char **secret[] = {&c->token, &c->key_pem, &c->client_secret, &c->refresh_token};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(secret); i++)
    if (*secret[i])
      memset(*secret[i], 0, strlen(*secret[i]));
  free(c->source);
  free(c->token);
  free(c->email);
  free(c->key_pem);
  free(c->key_id);
  free(c->token_uri);
  free(c->client_id);
  free(c->client_secret);
  free(c->refresh_token);
  free(c->metadata_url);
  free(c->project);
  memset(c, 0, sizeof(*c));
}

void kite__gcp_creds_name(const kite__gcp_creds_t *c, char out[17]) {
  const char *who = c->kind == KITE_GCP_SERVICE_ACCOUNT   ? c->email
                    : c->kind == KITE_GCP_AUTHORIZED_USER ? c->refresh_token
                    : c->kind == KITE_GCP_METADATA        ? c->metadata_url
                                                          : c->token;
  char *v = kite__sprintf("%d:%s", (int)c->kind, who ? who : "");
  kite__fingerprint("gcp-credentials", v ? v : "", out);
  free(v);
}

char *kite__gcp_b64url(const void *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out == NULL)
    return NULL;
  int len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
  while (len > 0 && out[len - 1] == '=')
    len--;
  out[len] = '\0';
  for (char *s = out; *s; s++)
    *s = *s == '+' ? '-' : *s == '/' ? '_' : *s;
  return out;
}

static EVP_PKEY *read_key(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  if (k && EVP_PKEY_base_id(k) != EVP_PKEY_RSA) {
    EVP_PKEY_free(k);
    k = NULL;
  }
  ERR_clear_error();
  return k;
}

int kite__gcp_jwt(const char *email, const char *key_pem, const char *key_id, const char *aud,
                  const char *scope, int64_t now_s, char **out, char **msg) {
  *out = NULL;
  json_t *h = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");
  if (h && key_id && *key_id)
    json_object_set_new(h, "kid", json_string(key_id));
  json_t *claims =
      json_pack("{s:s, s:s, s:s, s:I, s:I}", "iss", email ? email : "", "scope", scope, "aud", aud,
                "iat", (json_int_t)now_s, "exp", (json_int_t)(now_s + 3600));
  char *ht = h ? json_dumps(h, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  char *ct = claims ? json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(h);
  json_decref(claims);
  char *h64 = ht ? kite__gcp_b64url(ht, strlen(ht)) : NULL;
  char *c64 = ct ? kite__gcp_b64url(ct, strlen(ct)) : NULL;
  char *input = h64 && c64 ? kite__sprintf("%s.%s", h64, c64) : NULL;
  free(ht);
  free(ct);
  free(h64);
  free(c64);
  if (input == NULL)
    return KITE_ENOMEM;
  EVP_PKEY *key = read_key(key_pem);
  if (key == NULL) {
    free(input);
    *msg = kite__strdup("the private_key is not a PEM RSA private key");
    return KITE_ECREDENTIALS;
  }
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  size_t sl = (size_t)EVP_PKEY_size(key);
  unsigned char *sig = malloc(sl);
  int rc = md && sig && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
                   EVP_DigestSign(md, sig, &sl, (const unsigned char *)input, strlen(input)) == 1
               ? 0
               : KITE_ECREDENTIALS;
  char *s64 = rc == 0 ? kite__gcp_b64url(sig, sl) : NULL;
  EVP_MD_CTX_free(md);
  EVP_PKEY_free(key);
  free(sig);
  ERR_clear_error();
  if (rc == 0 && s64)
    *out = kite__sprintf("%s.%s", input, s64);
  free(input);
  free(s64);
  if (rc != 0) {
    *msg = kite__strdup("signing the token request with the private_key failed");
    return rc;
  }
  return *out ? 0 : KITE_ENOMEM;
}

/* A member of the key file as a copy; NULL when it is missing or not a non-empty string. */
static char *member(json_t *j, const char *key) {
  const char *v = json_string_value(json_object_get(j, key));
  return v && *v ? kite__strdup(v) : NULL;
}

int kite__gcp_creds_file(kite_runtime_t *rt, const char *path, kite__gcp_creds_t *c, char **msg) {
  memset(c, 0, sizeof(*c));
  char *text = NULL;
  size_t len = 0;
  if (kite__read_file(path, &text, &len) != 0) {
    *msg = kite__sprintf("cannot read the credentials file %s: %s; point "
                         "GOOGLE_APPLICATION_CREDENTIALS (or credentials_file) at a key file",
                         path, strerror(errno));
    return KITE_ECREDENTIALS;
  }
  json_error_t e;
  json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
  memset(text, 0, len);
  free(text);
  const char *type = json_string_value(json_object_get(j, "type"));
  const char *missing = NULL;
  int rc = 0;
  if (!json_is_object(j)) {
    *msg = kite__sprintf("the credentials file %s is not a JSON object (line %d: %s); download a "
                         "service-account key again (IAM → Service accounts → Keys → Add key → "
                         "JSON)",
                         path, e.line, e.text);
    json_decref(j);
    return KITE_ECREDENTIALS;
  }
  c->source = kite__strdup(path);
  c->project = member(j, "project_id");
  if (c->project == NULL)
    c->project = member(j, "quota_project_id");
  c->token_uri = member(j, "token_uri");
  if (c->token_uri == NULL)
    c->token_uri = kite__strdup(KITE_GCP_TOKEN_URI);
  if (type && strcmp(type, "service_account") == 0) {
    c->kind = KITE_GCP_SERVICE_ACCOUNT;
    c->email = member(j, "client_email");
    c->key_pem = member(j, "private_key");
    c->key_id = member(j, "private_key_id");
    missing = c->email == NULL ? "client_email" : c->key_pem == NULL ? "private_key" : NULL;
    if (c->key_pem && rt)
      kite_secret_add(rt, c->key_pem);
    EVP_PKEY *k = missing ? NULL : read_key(c->key_pem);
    if (missing == NULL && k == NULL) {
      *msg = kite__sprintf("the credentials file %s has a private_key that is not a PEM RSA "
                           "private key; download a new JSON key for %s",
                           path, c->email);
      rc = KITE_ECREDENTIALS;
    }
    EVP_PKEY_free(k);
  } else if (type && strcmp(type, "authorized_user") == 0) {
    c->kind = KITE_GCP_AUTHORIZED_USER;
    c->client_id = member(j, "client_id");
    c->client_secret = member(j, "client_secret");
    c->refresh_token = member(j, "refresh_token");
    missing = c->client_id == NULL       ? "client_id"
              : c->client_secret == NULL ? "client_secret"
              : c->refresh_token == NULL ? "refresh_token"
                                         : NULL;
    if (rt && c->client_secret)
      kite_secret_add(rt, c->client_secret);
    if (rt && c->refresh_token)
      kite_secret_add(rt, c->refresh_token);
  } else {
    *msg = kite__sprintf("the credentials file %s has type %s%s%s; kite takes \"service_account\" "
                         "keys and gcloud's \"authorized_user\" credentials (`gcloud auth "
                         "application-default login`)",
                         path, type ? "\"" : "no", type ? type : "", type ? "\"" : "");
    rc = KITE_ECREDENTIALS;
  }
  json_decref(j);
  if (rc == 0 && missing) {
    *msg =
        kite__sprintf("the credentials file %s has no %s; download the key again", path, missing);
    rc = KITE_ECREDENTIALS;
  }
  if (rc == 0 && !kite_http_url_allowed(c->token_uri)) {
    *msg = kite__sprintf("the credentials file %s names token_uri %s: kite sends tokens only to "
                         "https://, or http:// to a loopback address",
                         path, c->token_uri);
    rc = KITE_ECREDENTIALS;
  }
  if (rc == 0 && (c->source == NULL || c->token_uri == NULL))
    rc = KITE_ENOMEM;
  if (rc != 0)
    kite__gcp_creds_free(c);
  return rc;
}

/* ---- the access token ----------------------------------------------------------------------- */

static kite__gcp_token_t *token_find(kite_gcp_provider_t *p, const char *name) {
  for (kite__gcp_token_t *t = p->tokens; t; t = t->next)
    if (strcmp(t->name, name) == 0)
      return t;
  return NULL;
}

/* The request waiting for its token (call->data while the token is fetched). */
typedef struct kite__gcp_pending {
  kite_cloud_call_t *call;
  char *method, *url, *body;
  kite_cloud_http_cb cb;
  struct kite__gcp_pending *next;
} pending_t;

/* The request of call that waits for its token, taken out of the provider's list; or NULL. */
static pending_t *pending_take(kite_gcp_provider_t *p, const kite_cloud_call_t *call) {
  for (pending_t **pp = &p->pending; *pp; pp = &(*pp)->next)
    if ((*pp)->call == call) {
      pending_t *q = *pp;
      *pp = q->next;
      return q;
    }
  return NULL;
}

static void pending_free(pending_t *q) {
  if (q == NULL)
    return;
  free(q->method);
  free(q->url);
  free(q->body);
  free(q);
}

/* What the call holds (the catalog's pages) is freed before auth.c ends it. */
static void drop_data(kite_cloud_call_t *call) {
  if (call->kind == KITE_CLOUD_CALL_CATALOG)
    kite__gcp_catalog_drop(call);
}

static int send_now(kite_cloud_call_t *call, const char *method, const char *url, const char *body,
                    const char *token, kite_cloud_http_cb cb) {
  kite_http_request_t q = {.method = method,
                           .url = url,
                           .bearer_token = token,
                           .body = body,
                           .body_len = body ? strlen(body) : 0,
                           .idempotent = strcmp(method, "POST") == 0 && strstr(url, "requestId=")};
  return kite_cloud_http(call, &q, cb);
}

static void on_token(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  kite_gcp_provider_t *p = kite_cloud_provider(call->cloud);
  const kite__gcp_api_t *api = call->cfg->api;
  pending_t *q = pending_take(p, call);
  json_t *j = kite_cloud_rest_body(r);
  const char *tok = status == 0 ? json_string_value(json_object_get(j, "access_token")) : NULL;
  json_t *exp = json_object_get(j, "expires_in");
  if (tok == NULL || *tok == '\0' || strlen(tok) > 8192 || strchr(tok, '\n') || strchr(tok, '\r')) {
    const char *err = json_string_value(json_object_get(j, "error"));
    const char *desc = json_string_value(json_object_get(j, "error_description"));
    kite_cloud_answer_t a;
    kite_cloud_http_outcome(status, r, err, desc, &a);
    if (status == 0) {
      a.outcome = KITE_CLOUD_RETRY; /* an answer without a token: read again later */
      a.message = "the token endpoint's answer has no access_token";
    } else if (a.outcome == KITE_CLOUD_FAILED || r->status == 400) {
      a.outcome = KITE_CLOUD_FAILED;
      a.code = KITE_ECREDENTIALS;
      a.api_code = "token";
    } else if (a.outcome == KITE_CLOUD_MAYBE) {
      a.outcome = KITE_CLOUD_RETRY; /* nothing was made */
    }
    char *m = kite__sprintf(
        "getting an access token from %s for %s failed: %s%s%s",
        api->creds.kind == KITE_GCP_METADATA ? "the metadata server" : api->creds.token_uri,
        api->creds.source, err ? err : r->message, desc ? ": " : "", desc ? desc : "");
    if (m)
      a.message = m;
    drop_data(call);
    kite_cloud_answer(call, &a);
    free(m);
    json_decref(j);
    pending_free(q);
    return;
  }
  kite_secret_add(p->rt, tok);
  kite__gcp_token_t *t = token_find(p, api->creds_name);
  if (t == NULL && (t = calloc(1, sizeof(*t))) != NULL) {
    memcpy(t->name, api->creds_name, sizeof(t->name));
    t->next = p->tokens;
    p->tokens = t;
  }
  char *copy = kite__strdup(tok);
  json_int_t secs = json_is_integer(exp) ? json_integer_value(exp) : 3600;
  if (secs < 60 || secs > 86400)
    secs = secs < 60 ? 60 : 86400;
  if (t && copy) {
    if (t->token)
      memset(t->token, 0, strlen(t->token));
    free(t->token);
    t->token = copy;
    t->expires_ms = kite__wall_ms() + (uint64_t)secs * 1000;
    copy = NULL;
  }
  free(copy);
  json_decref(j);
  int rc = t && t->token && q ? send_now(call, q->method, q->url, q->body, t->token, q->cb)
                              : KITE_ENOMEM;
  pending_free(q);
  if (rc != 0) {
    drop_data(call);
    kite_cloud_answer_fail(call, rc, "the request could not be sent");
  }
}

/* "a=b&c=d" with the values escaped; malloc'd. */
static char *form(const char *const *kv, size_t n) {
  char *out = kite__strdup("");
  for (size_t i = 0; out && i + 1 < n; i += 2) {
    char *v = kite_cloud_escape(kv[i + 1]);
    char *next = v ? kite__sprintf("%s%s%s=%s", out, *out ? "&" : "", kv[i], v) : NULL;
    if (v)
      memset(v, 0, strlen(v));
    free(v);
    memset(out, 0, strlen(out));
    free(out);
    out = next;
  }
  return out;
}

static int fetch_token(kite_cloud_call_t *call) {
  const kite__gcp_api_t *api = call->cfg->api;
  const kite__gcp_creds_t *c = &api->creds;
  if (c->kind == KITE_GCP_METADATA) {
    char *url = kite__sprintf("%s/computeMetadata/v1/instance/service-accounts/default/token",
                              c->metadata_url);
    static const char *const headers[] = {"Metadata-Flavor: Google", NULL};
    kite_http_request_t q = {.method = "GET", .url = url, .headers = headers};
    int rc = url ? kite_cloud_http(call, &q, on_token) : KITE_ENOMEM;
    free(url);
    return rc;
  }
  char *body = NULL;
  if (c->kind == KITE_GCP_SERVICE_ACCOUNT) {
    char *jwt = NULL, *msg = NULL;
    int rc = kite__gcp_jwt(c->email, c->key_pem, c->key_id, c->token_uri, KITE_GCP_SCOPE,
                           (int64_t)(kite__wall_ms() / 1000), &jwt, &msg);
    if (rc != 0) {
      pending_free(pending_take(kite_cloud_provider(call->cloud), call));
      char *m = kite__sprintf("%s: %s", c->source, msg ? msg : kite_strerror(rc));
      drop_data(call);
      kite_cloud_answer_fail(call, rc, m ? m : msg);
      free(m);
      free(msg);
      return 1; /* answered */
    }
    kite_secret_add(kite_cloud_runtime(call->cloud), jwt);
    const char *kv[] = {"grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion",
                        jwt};
    body = form(kv, KITE_ARRAY_SIZE(kv));
    memset(jwt, 0, strlen(jwt));
    free(jwt);
  } else {
    const char *kv[] = {"grant_type",    "refresh_token",  "client_id",     c->client_id,
                        "client_secret", c->client_secret, "refresh_token", c->refresh_token};
    body = form(kv, KITE_ARRAY_SIZE(kv));
  }
  if (body == NULL)
    return KITE_ENOMEM;
  kite_http_request_t q = {.method = "POST",
                           .url = c->token_uri,
                           .body = body,
                           .body_len = strlen(body),
                           .content_type = "application/x-www-form-urlencoded",
                           .idempotent = true /* a token more or less makes nothing */};
  int rc = kite_cloud_http(call, &q, on_token);
  memset(body, 0, strlen(body));
  free(body);
  return rc;
}

void kite__gcp_send(kite_cloud_call_t *call, const char *method, const char *url, json_t *body,
                    kite_cloud_http_cb cb) {
  kite_gcp_provider_t *p = kite_cloud_provider(call->cloud);
  const kite__gcp_api_t *api = call->cfg->api;
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  int rc = body && text == NULL ? KITE_ENOMEM : 0;
  const kite__gcp_token_t *t = rc == 0 ? token_find(p, api->creds_name) : NULL;
  if (rc == 0 && api->creds.kind == KITE_GCP_TOKEN) {
    rc = send_now(call, method, url, text, api->creds.token, cb);
  } else if (rc == 0 && t && t->token && t->expires_ms > kite__wall_ms() + 60000) {
    rc = send_now(call, method, url, text, t->token, cb);
  } else if (rc == 0) {
    pending_t *q = calloc(1, sizeof(*q));
    if (q == NULL || (q->method = kite__strdup(method)) == NULL ||
        (q->url = kite__strdup(url)) == NULL || (text && (q->body = kite__strdup(text)) == NULL)) {
      pending_free(q);
      rc = KITE_ENOMEM;
    } else {
      q->cb = cb;
      q->call = call;
      q->next = p->pending;
      p->pending = q;
      rc = fetch_token(call);
      if (rc == 1) { /* fetch_token answered the call, and freed q */
        free(text);
        return;
      }
      if (rc != 0)
        pending_free(pending_take(p, call));
    }
  }
  free(text);
  if (rc != 0) {
    drop_data(call);
    kite_cloud_answer_fail(call, rc, "the request could not be sent");
  }
}

void kite__gcp_tokens_free(kite_gcp_provider_t *p) {
  while (p->pending) {
    struct kite__gcp_pending *q = p->pending;
    p->pending = q->next;
    pending_free(q);
  }
  while (p->tokens) {
    kite__gcp_token_t *t = p->tokens;
    p->tokens = t->next;
    if (t->token)
      memset(t->token, 0, strlen(t->token));
    free(t->token);
    free(t);
  }
}
