#ifndef KITE_GCP_IMPL_H
#define KITE_GCP_IMPL_H

/* What the files of the Compute Engine provider share: credentials and the access token
 * (auth.c), the provider's state and configuration (provider.c), the catalog (catalog.c).
 * Never installed. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../cloud/cloud.h"
#include "kite/gcp.h"

#define KITE_GCP_SCOPE "https://www.googleapis.com/auth/cloud-platform"
#define KITE_GCP_TOKEN_URI "https://oauth2.googleapis.com/token"

typedef enum kite__gcp_kind {
  KITE_GCP_TOKEN = 0,       /* an access token given as it is */
  KITE_GCP_SERVICE_ACCOUNT, /* a key: a signed JWT exchanged at token_uri */
  KITE_GCP_AUTHORIZED_USER, /* gcloud's user credentials: a refresh token */
  KITE_GCP_METADATA,        /* the metadata server of the VM kite runs on */
} kite__gcp_kind_t;

typedef struct kite__gcp_creds {
  kite__gcp_kind_t kind;
  char *source;                                    /* where they were found, for messages */
  char *token;                                     /* KITE_GCP_TOKEN */
  char *email, *key_pem, *key_id, *token_uri;      /* service account (token_uri also user) */
  char *client_id, *client_secret, *refresh_token; /* authorized user */
  char *metadata_url;                              /* KITE_GCP_METADATA: http://HOST */
  char *project;                                   /* the file's project_id, or NULL */
} kite__gcp_creds_t;

/* Reads a service-account key or authorized-user file at path into c (its private key checked
 * to be a readable RSA key, its token_uri https:// or http:// to loopback). The key and the
 * refresh token are registered as secrets with rt (may be NULL). On failure a kite code and
 * *msg ("what is wrong with the file; what to do"). */
int kite__gcp_creds_file(kite_runtime_t *rt, const char *path, kite__gcp_creds_t *c, char **msg);
void kite__gcp_creds_free(kite__gcp_creds_t *c);
/* A public name of the credentials for caches and reach records (16 hex digits). */
void kite__gcp_creds_name(const kite__gcp_creds_t *c, char out[17]);

/* base64url without padding (RFC 7515); malloc'd. */
char *kite__gcp_b64url(const void *p, size_t n);
/* A JWT signed RS256 (RFC 7519, 7515) with the PEM private key: header {alg, typ, kid}, claims
 * {iss: email, scope, aud, iat: now_s, exp: now_s + 3600}; malloc'd in *out. On failure a kite
 * code and *msg. */
int kite__gcp_jwt(const char *email, const char *key_pem, const char *key_id, const char *aud,
                  const char *scope, int64_t now_s, char **out, char **msg);

/* The configuration a request resolved to (cfg->api). */
typedef struct kite__gcp_api {
  char *url, *billing_url, *project;
  kite__gcp_creds_t creds;
  char creds_name[17];
  unsigned disk_gb;
  char *metadata_endpoint; /* the notice's metadata server as the node sees it */
  bool stop_on_preempt;    /* instanceTerminationAction STOP instead of DELETE */
} kite__gcp_api_t;

/* An access token kept for the credentials it came from. */
typedef struct kite__gcp_token {
  char name[17];
  char *token;
  uint64_t expires_ms;
  struct kite__gcp_token *next;
} kite__gcp_token_t;

struct kite_gcp_provider {
  kite_cloud_t *cloud;
  kite_runtime_t *rt;
  char *credentials_file, *project, *zone, *api_url, *billing_url, *machine_type, *image, *user;
  unsigned port;
  kite__gcp_token_t *tokens;
  struct kite__gcp_pending *pending; /* requests waiting for their token (auth.c) */
};

/* Sends method url (absolute) with the JSON body (or none) as the call's request, with a
 * bearer token from the call's credentials: the cached one while it has more than a minute
 * left, else a new one first (a JWT exchanged at the key's token_uri, a refresh token, or the
 * metadata server's). Ends the call when it could not be sent or no token was had. */
void kite__gcp_send(kite_cloud_call_t *call, const char *method, const char *url, json_t *body,
                    kite_cloud_http_cb cb);
void kite__gcp_tokens_free(kite_gcp_provider_t *p);

/* Ends call after a failed exchange, with Google's error body {"error": {"code", "message",
 * "errors": [{"reason"}], "status"}} read for the advice table. */
void kite__gcp_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *r);
/* The body as a JSON object when the exchange succeeded; else ends call (NULL). */
json_t *kite__gcp_body(kite_cloud_call_t *call, int status, const kite_http_response_t *r);

/* The catalog operation (catalog.c). */
void kite__gcp_catalog(kite_cloud_call_t *call);
/* Frees what a catalog call holds (before the call is ended elsewhere). */
void kite__gcp_catalog_drop(kite_cloud_call_t *call);
/* A GPU Compute Engine sells, as kite names it and as Compute Engine and its bill do. */
typedef struct kite__gcp_gpu {
  const char *type;   /* the accelerator type: "nvidia-tesla-t4" */
  const char *model;  /* kite's (and the offers') name: "T4" */
  const char *sku;    /* what its SKUs' descriptions say: "Tesla T4 GPU" */
  unsigned memory_mb; /* per GPU */
  bool attached;      /* attached to N1 VMs as guestAccelerators; else it comes with its
                         machine type (A2, G2, A3) */
} kite__gcp_gpu_t;

/* The GPU of a kite model name (case-insensitive) or of an accelerator type; NULL when kite
 * does not know it. */
const kite__gcp_gpu_t *kite__gcp_gpu_by_model(const char *model);
const kite__gcp_gpu_t *kite__gcp_gpu_by_type(const char *type);
/* The GPUs kite knows, "T4, V100, ..." (static text). */
const char *kite__gcp_gpu_models(void);
/* Whether a machine type comes with GPUs of its own (a2-, a3-, g2-). */
bool kite__gcp_type_has_gpus(const char *type);

/* The region of a zone ("us-central1-a" → "us-central1") into out; false when zone is not a
 * zone's name. */
bool kite__gcp_zone_region(const char *zone, char *out, size_t size);

bool kite__gcp_configured(void);

#endif
