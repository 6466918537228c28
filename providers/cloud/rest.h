#ifndef KITE_CLOUD_REST_H
#define KITE_CLOUD_REST_H

/* What the table of a JSON REST API with a bearer token (DigitalOcean, Hetzner, ...) shares:
 * its configuration (token, endpoint, login, launch defaults), its reach records and its
 * requests. cfg->api is a kite_cloud_rest_t. Never installed. */

#include <jansson.h>

#include "cloud.h"

/* Where an API's error body names the error: DigitalOcean {"id", "message"} (object NULL),
 * Hetzner {"error": {"code", "message"}} (object "error"). */
typedef struct kite_cloud_rest_errors {
  const char *object, *code, *message;
} kite_cloud_rest_errors_t;

typedef struct kite_cloud_rest {
  char *url; /* base URL without a trailing slash */
  char *token;
  const kite_cloud_rest_errors_t *errors;
} kite_cloud_rest_t;

/* What a provider found and prefers; kite_cloud_rest_configure() takes the request's options
 * over these. */
typedef struct kite_cloud_rest_defaults {
  const char *token;      /* from the provider's options, its environment or CLI config */
  const char *token_help; /* what to do when there is none: "set HCLOUD_TOKEN ..." */
  const char *looked_in;  /* where kite looked: "the provider options, $HCLOUD_TOKEN and ..." */
  const char *url;        /* from the provider's options or the environment, or NULL */
  const char *url_default;
  const char *url_hint; /* how to set it: "api_url in the provider options or KITE_..." */
  const kite_cloud_rest_errors_t *errors; /* how its error bodies read */
  const char *account;                    /* the account's public name prefix: "token", "project" */
  const char *user;                       /* default login, before "root" */
  unsigned port;                          /* default SSH port, before 22 */
  const char *region, *type, *image;      /* launch defaults: the provider's own, then built in */
  const char *region_builtin, *type_builtin, *image_builtin;
} kite_cloud_rest_defaults_t;

/* Fills cfg from the options object o ("token", "api_url", "ssh_user", "ssh_port",
 * "pin_host_key") over d, and, for a launch, its region/instance_type/image over d's.
 * The token is registered as a secret. cfg->site is "URL ACCOUNT", cfg->reach
 * {"provider", "api_url", "account"} with the account a keyed hash of the token. */
int kite_cloud_rest_configure(kite_cloud_t *c, json_t *o, const kite_cloud_rest_defaults_t *d,
                              const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                              char **msg);
/* configure_reach for such tables: the record's api_url with this process's token, through
 * the table's configure; *same_account when the record's account is this token's. */
int kite_cloud_rest_configure_reach(kite_cloud_t *c, const char *reach, kite_cloud_cfg_t *cfg,
                                    bool *same_account, char **msg);
void kite_cloud_rest_free(void *api);

/* Sends method to the API's path (or, with full_url, to that URL) with the JSON body (or
 * none), as the call's request. */
int kite_cloud_rest_http(kite_cloud_call_t *call, const char *method, const char *path,
                         bool full_url, json_t *body, kite_cloud_http_cb cb);
/* The same with the path made by printf (fmt, ...); ends call when it could not be sent. */
void kite_cloud_rest_sendf(kite_cloud_call_t *call, const char *method, json_t *body,
                           kite_cloud_http_cb cb, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Ends call after a failed exchange (status != 0, the API's error read from the body), or an
 * answer without what was asked for (status 0: unreadable). again, when not NULL, says from
 * the API's error code and message whether what prepare made is gone (prepare_again). */
typedef bool (*kite_cloud_rest_again_fn)(const kite_cloud_call_t *call, const char *code,
                                         const char *message);
void kite_cloud_rest_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *r,
                          kite_cloud_rest_again_fn again);
/* The body's member key, of type type (JSON_OBJECT, JSON_ARRAY), when the exchange succeeded
 * and the body has it; *doc is then the body, to json_decref when done. Else ends call with
 * kite_cloud_rest_fail and returns NULL (*doc NULL). */
json_t *kite_cloud_rest_member(kite_cloud_call_t *call, int status, const kite_http_response_t *r,
                               const char *key, json_type type, json_t **doc,
                               kite_cloud_rest_again_fn again);
/* A kite_cloud_http_cb that ends the call: OK on success, else kite_cloud_rest_fail. */
void kite_cloud_rest_done(kite_cloud_call_t *call, int status, const kite_http_response_t *r);
/* The body as a JSON object, or NULL when it is not one. */
json_t *kite_cloud_rest_body(const kite_http_response_t *r);
/* o's "id" as decimal text (malloc'd), or NULL when it is not a positive integer. */
char *kite_cloud_rest_id(json_t *o);
/* CATALOG: a whole number 0..max (a JSON integer, or a real without a fraction), false for
 * anything else. */
bool kite_cloud_rest_whole(json_t *v, double max, uint64_t *out);
/* CATALOG: a price in 0..1e6 per hour, a JSON number or (as Hetzner writes them) the text of
 * one; false for anything else. */
bool kite_cloud_rest_price(json_t *v, double *out);
/* CATALOG: ends call refusing its answer: entry i of list (called name, or unnamed) is wrong
 * (what: "vcpus is not a whole number"). */
void kite_cloud_rest_refuse(kite_cloud_call_t *call, const char *list, size_t i, const char *name,
                            const char *what);
/* CATALOG: each item of list (the answer's member called member) through offers, which gives
 * its offers with kite_cloud_offer() and returns NULL, or what is wrong with it; at the first
 * wrong item the call is refused (kite_cloud_rest_refuse, naming the item by its name_key
 * member) and false is returned. */
bool kite_cloud_rest_offers(kite_cloud_call_t *call, json_t *list, const char *member,
                            const char *name_key,
                            const char *(*offers)(kite_cloud_call_t *call, json_t *item));
/* s in base64 (no line breaks; malloc'd), or NULL when out of memory: how tables hand a host
 * key or a script to APIs whose fields take plain text (env values, startup scripts). */
char *kite_cloud_base64(const char *s);
/* Ends call after kite_cloud_rest_http() could not send (rc). */
void kite_cloud_rest_unsent(kite_cloud_call_t *call, int rc);

#endif
