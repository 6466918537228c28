#ifndef KITE_CLOUD_H
#define KITE_CLOUD_H

/* The lifecycle every HTTP-API cloud provider shares (DESIGN.md, "Providers").
 *
 * A cloud provider is a table of operations (kite_cloud_ops_t) handed to kite_cloud_new().
 * The skeleton is the component: it registers the responders of the provider interface
 * (provider.h) under the table's name and owns everything that is the same on every cloud:
 *
 *   - one record per request (launch, terminate, describe, list, preemption check), each with
 *     its own timer; nothing ticks while nothing waits;
 *   - prerequisites (kite's key in the account, a firewall rule: the table's prepare) done
 *     once per site (one account in one region) while the launches that need them wait;
 *   - batching: first creates of one loop turn that differ only in their names go out as one
 *     create of up to batch_max instances; a batch refused as a whole is retried one by one;
 *   - idempotent create: with create_token the launch token is sent and a repeated create is
 *     safe; without, after an answer that leaves it unknown whether the instance was made
 *     (a 5xx, a reset, a timeout, an unreadable body) the table's find looks for it by its
 *     name before anything is created again — an instance is never created twice;
 *   - the instance_created fact the moment an id is known (the pool's store records it);
 *   - polling describe with backoff (poll_ms × 1.5 up to 10 s) until the instance runs with
 *     an address, under a deadline; undo (destroy, then confirmed) of a launch that fails
 *     after its instance exists;
 *   - termination: destroy, then describe until the API says the instance is gone (the
 *     destroy repeated now and then); several terminate requests for one instance share one
 *     record and all get the answer; "not found" is taken as gone only where the instance was
 *     made (this process made it, the API accepted its destroy, or the reach record names
 *     this account);
 *   - reach records: where an instance lives, for processes that did not launch it;
 *   - list by tag, following the table's cursor page by page;
 *   - error messages: "NAME: what kite was doing: the API's message (HTTP n, code): what to
 *     do", the last part from the table's advice;
 *   - kite's SSH key ($KITE_HOME/keys/id_ed25519) and, with pin_host_key, a host key per
 *     instance handed to it in cloud-init (ssh_keys) and pinned in instance_launched;
 *   - stop: waiting launches fail, requests in flight are canceled and end, then the table's
 *     cleanup runs for every site this process used, then the HTTP client closes.
 *
 * The table's operations are asynchronous: each gets a call (kite_cloud_call_t), starts its
 * HTTP requests with kite_cloud_http() and ends the call with exactly one kite_cloud_answer().
 * What a provider keeps is its API's shapes: building requests, parsing answers, its
 * configuration and its account setup. Loop thread only. Never installed. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/events.h"
#include "kite/http.h"
#include "kite/runtime.h"

typedef struct kite_cloud kite_cloud_t;
typedef struct kite_cloud_call kite_cloud_call_t;
typedef struct kite_cloud_site kite_cloud_site_t;

/* What one request resolves to: where to send it and as whom. The table's configure fills
 * one; the skeleton shares it (reference counted) between the requests and instances that use
 * it, and frees api with the table's free_api. */
typedef struct kite_cloud_cfg {
  /* The site: the account and region prerequisites belong to, as a public key (an endpoint,
   * an account fingerprint, a region; never a secret). Launches of one site share prepare and
   * cleanup. */
  char *site;
  /* The reach record (JSON text; never a secret): what another process needs to reach an
   * instance made with this configuration again — "provider", the endpoint, "account",
   * "region". */
  char *reach;
  char *region;
  /* Launches only: the availability zone inside region the launch names (the skeleton sets it
   * before configure), or NULL: the provider's choice. */
  char *zone;
  /* Launches only: what to create (the request's values over the provider's defaults), and the
   * accelerators to attach beside the type (a provider whose types carry theirs leaves these
   * NULL and 0). */
  char *type, *image;
  char *accelerator;
  unsigned accelerator_count;
  /* The login on its instances. */
  char *user;
  unsigned port;
  /* Give each instance a host key kite made (cloud-init's ssh_keys) and pin it; false when
   * the options say so or the launch's user_data is a cloud-config of its own. */
  bool pin;
  /* The provider's own: endpoint, credentials, options. */
  void *api;
  unsigned refs_;
} kite_cloud_cfg_t;

/* One launch as the table's create sees it. */
typedef struct kite_cloud_launch {
  const char *name;  /* unique to this launch, valid as a host name; find() looks for it */
  const char *token; /* the pool's launch token (create_token: send it) */
  const char *tag;   /* the pool's tag: every instance carries it */
  uint32_t rank;
  bool spot;
  double price;          /* the plan's price per hour for it (a spot bid), or 0: not known */
  const char *user_data; /* what cloud-init gets (with the pinned host key), or NULL */
  /* Set by kite_cloud_created(). */
  const char *id;
} kite_cloud_launch_t;

/* Instance states as the skeleton understands them. */
typedef enum kite_cloud_state {
  KITE_CLOUD_PENDING = 0, /* being made or booting */
  KITE_CLOUD_RUNNING,     /* running (with an address once it has one) */
  KITE_CLOUD_STOPPED,     /* off or stopped: exists, does not run */
  KITE_CLOUD_STOPPING,    /* being deleted or shut down */
  KITE_CLOUD_GONE,        /* deleted or terminated: described but no longer there */
} kite_cloud_state_t;

/* What describe found. */
typedef struct kite_cloud_instance {
  kite_cloud_state_t state;
  const char *address; /* public IPv4, or NULL */
  double price_hourly; /* 0 when the API does not say */
  bool preempted;      /* the cloud took it back (spot) */
  int64_t notice_ms;   /* a preemption announced for this time (ms since the epoch), or 0 */
  unsigned port;       /* its SSH port where the API maps one per instance; 0: cfg's port */
  /* The API's word for a state this instance will never leave for running ("exited"), or
   * NULL: a launch seeing it is undone with KITE_ECAPACITY, so the plan's next offer is
   * tried. */
  const char *never_runs;
} kite_cloud_instance_t;

typedef enum kite_cloud_outcome {
  KITE_CLOUD_OK = 0,
  /* The API says there is no such instance (or key, or group) there. */
  KITE_CLOUD_NOT_FOUND,
  /* Not done, and safe to try again later: throttled, unavailable, unreadable. */
  KITE_CLOUD_RETRY,
  /* Perhaps done: the request left and no readable answer came back. For everything but
   * create this is RETRY. */
  KITE_CLOUD_MAYBE,
  /* Refused; code and the API's message say why. */
  KITE_CLOUD_FAILED,
} kite_cloud_outcome_t;

/* The end of a call. */
typedef struct kite_cloud_answer {
  kite_cloud_outcome_t outcome;
  /* FAILED (and RETRY/MAYBE when it comes to that): the kite error code (KITE_ECAPACITY,
   * KITE_ECREDENTIALS, KITE_EPROVIDER, ...; 0: KITE_EPROVIDER), the API's error
   * code ("InsufficientInstanceCapacity", "rate_limit_exceeded") looked up in the advice
   * table, the HTTP status, and the API's own message. Copied. */
  int code;
  const char *api_code;
  long http_status;
  const char *message;
  /* RETRY: the server's Retry-After, or 0. */
  uint64_t retry_after_ms;
  /* describe: what it found. */
  kite_cloud_instance_t instance;
  /* list_page: the cursor of the next page, or NULL at the last. Copied. */
  const char *next;
  /* NOT_FOUND or FAILED of a create: what prepare made is gone (a deleted key or firewall
   * group); the site is prepared again and the create repeated once. */
  bool prepare_again;
} kite_cloud_answer_t;

/* An API error code's meaning for kite's user. The first entry that matches wins: by api_code
 * (exactly; a code ending in '*' matches every code it begins), or, for entries without one, by
 * http_status (0 matches none); and, when message_has is set, only if the API's message
 * contains it (for APIs that give one code to several causes). */
typedef struct kite_cloud_advice {
  const char *api_code;
  long http_status;
  const char *message_has;
  int code;               /* the kite error code it becomes (0: KITE_EPROVIDER) */
  const char *what_to_do; /* appended to the message; NULL: nothing to add */
} kite_cloud_advice_t;

typedef enum kite_cloud_call_kind {
  KITE_CLOUD_CALL_PREPARE,
  KITE_CLOUD_CALL_CREATE,
  KITE_CLOUD_CALL_FIND,
  KITE_CLOUD_CALL_DESCRIBE,
  KITE_CLOUD_CALL_DESTROY,
  KITE_CLOUD_CALL_LIST,
  KITE_CLOUD_CALL_CLEANUP,
  KITE_CLOUD_CALL_CATALOG,
} kite_cloud_call_kind_t;

/* One asynchronous operation of the table. Fields are read-only for the table except step,
 * data and those the kite_cloud_* functions set. */
struct kite_cloud_call {
  kite_cloud_t *cloud;
  kite_cloud_call_kind_t kind;
  const kite_cloud_cfg_t *cfg;
  /* PREPARE, CLEANUP: the site, and its data (the table's, e.g. a security group id; freed
   * with free_site_data). Every other call of a prepared site sees them too. */
  kite_cloud_site_t *site;
  void **site_data;
  /* CREATE: the launches (1..batch_max), alike but for name, token and rank. FIND: one. */
  kite_cloud_launch_t *const *launches;
  size_t n;
  /* DESCRIBE, DESTROY: the instance. */
  const char *id;
  /* LIST: the tag ("*": every kite-tagged instance) and the cursor (NULL: the first page). */
  const char *tag;
  const char *cursor;
  /* How many times this call was made before (0 the first time). */
  unsigned attempt;
  /* Free for the table while the call runs: a step number, a pointer (free it before the
   * answer). */
  int step;
  void *data;
  /* internal */
  void *owner_;
  kite_http_req_t *req_;
  void *http_cb_;
  bool answered_;
};

typedef struct kite_cloud_ops {
  const char *name;   /* the provider's name (the bus key, "provider:" in a spec) */
  const char *title;  /* for people: "DigitalOcean" */
  const char *noun;   /* what the API calls an instance: "droplet", "server", "instance" */
  unsigned batch_max; /* instances one create makes; 0 or 1: one per create */
  bool spot;          /* it launches spot instances; else a spot launch is refused */
  bool create_token;  /* create sends the launch token: repeating it never makes two */
  /* A hint in error messages about the connection: "api_url in the provider options or
   * KITE_DO_API_URL". */
  const char *endpoint_hint;
  /* First poll interval (ms), and how long an instance may take to run and to be gone;
   * 0: 2000, 10 min, 10 min. kite_cloud_options_t may override them. */
  uint64_t poll_ms, running_timeout_ms, gone_timeout_ms;

  /* Fills cfg from the request's provider options (JSON text, or NULL) and, for a launch,
   * the request (region, instance_type, image, user_data; NULL for other requests), over the
   * provider's own defaults and the environment. A reach_resolve's region (the pool's, or
   * NULL) is in cfg->region when it is called. On failure: a kite code and *msg (malloc'd,
   * "what was wrong; what to do"). */
  int (*configure)(kite_cloud_t *c, const char *options, const kite_ev_instance_launch_t *launch,
                   kite_cloud_cfg_t *cfg, char **msg);
  /* Fills cfg to reach what a reach record names, with this process's credentials;
   * *same_account when they are the record's account (then "not found" there is proof). */
  int (*configure_reach)(kite_cloud_t *c, const char *reach, kite_cloud_cfg_t *cfg,
                         bool *same_account, char **msg);
  void (*free_api)(void *api);

  /* The operations. prepare and cleanup may be NULL (nothing to do); find is needed without
   * create_token. */
  void (*prepare)(kite_cloud_call_t *call);
  void (*create)(kite_cloud_call_t *call);
  void (*find)(kite_cloud_call_t *call);
  void (*describe)(kite_cloud_call_t *call);
  void (*destroy)(kite_cloud_call_t *call);
  void (*list_page)(kite_cloud_call_t *call);
  void (*cleanup)(kite_cloud_call_t *call);
  void (*free_site_data)(void *data);
  /* What the account can launch in cfg->region (NULL: everywhere it launches), with prices:
   * each offer through kite_cloud_offer(), then the answer. May be NULL (no catalog). */
  void (*catalog)(kite_cloud_call_t *call);

  /* Optional: what an instance gets at first boot (kite_cloud_launch_t's user_data), in the
   * table's own form, from the host key kite made for it (priv, and pub "ssh-ed25519 BASE64";
   * both NULL when it is not pinned) and the pool's user data (or NULL); malloc'd, NULL when
   * out of memory. The skeleton registers the result as a secret; anything secret the table
   * derives from priv otherwise it registers itself. NULL: cloud-init's cloud-config when
   * pinned (cloudinit.h), else the pool's user data as it is. */
  char *(*first_boot)(kite_cloud_t *c, const char *priv, const char *pub, const char *user_data);

  /* Optional: the on-node preemption probe (a command the preemption monitor runs on the
   * node; malloc'd) and its output's parser (KITE_PREEMPT_NOTICE with *deadline_ms, or
   * KITE_PREEMPT_NONE). */
  char *(*probe)(kite_cloud_t *c, const kite_cloud_cfg_t *cfg, const char *id, const char *address);
  int (*probe_parse)(const char *output, size_t len, int64_t *deadline_ms);

  const kite_cloud_advice_t *advice;
  size_t n_advice;
} kite_cloud_ops_t;

/* The skeleton's options: what every cloud provider's library options share. */
typedef struct kite_cloud_options {
  const char *ca_file; /* CA bundle instead of the system's; or NULL */
  int max_retries;     /* the HTTP client's retries; 0: its default */
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
  uint64_t poll_ms, running_timeout_ms, gone_timeout_ms; /* 0: the table's */
  bool keep_resources;                                   /* never run cleanup */
  /* Frees the table's own state (kite_cloud_new's provider) once the provider has stopped;
   * or NULL. Not called when kite_cloud_new fails. */
  void (*free_provider)(void *provider);
} kite_cloud_options_t;

/* The skeleton's options from a provider's library options o, whose fields carry the names
 * kite/hetzner.h gives them (ca_file, max_retries, backoff_base_ms, http_timeout_ms, poll_ms,
 * running_timeout_ms, delete_timeout_ms), with free_fn as free_provider. */
#define KITE_CLOUD_OPTIONS_OF(o, free_fn)                                                          \
  ((kite_cloud_options_t){.ca_file = (o).ca_file,                                                  \
                          .max_retries = (o).max_retries,                                          \
                          .backoff_base_ms = (o).backoff_base_ms,                                  \
                          .http_timeout_ms = (o).http_timeout_ms,                                  \
                          .poll_ms = (o).poll_ms,                                                  \
                          .running_timeout_ms = (o).running_timeout_ms,                            \
                          .gone_timeout_ms = (o).delete_timeout_ms,                                \
                          .free_provider = (free_fn)})

/* Creates the provider described by ops (static; it must outlive the provider) and adds it to
 * rt. provider is the table's own state (kite_cloud_provider() gives it back). */
int kite_cloud_new(kite_runtime_t *rt, const kite_cloud_ops_t *ops, const kite_cloud_options_t *o,
                   void *provider, kite_cloud_t **out);

void *kite_cloud_provider(const kite_cloud_t *c);
kite_runtime_t *kite_cloud_runtime(const kite_cloud_t *c);
const kite_cloud_ops_t *kite_cloud_ops(const kite_cloud_t *c);
/* Kite's public key ("ssh-ed25519 AAAA... comment", one line). */
const char *kite_cloud_pubkey(const kite_cloud_t *c);
/* The table's probe command (malloc'd) for an instance this process launched and saw running;
 * KITE_ENOENT for any other, KITE_ENOTSUP without a probe in the table. */
int kite_cloud_probe(kite_cloud_t *c, const char *id, char **command);

/* Starts an HTTP request for call; cb runs once with its outcome (KITE_ECANCELED when the
 * provider stops). At most one request per call at a time. */
typedef void (*kite_cloud_http_cb)(kite_cloud_call_t *call, int status,
                                   const kite_http_response_t *resp);
int kite_cloud_http(kite_cloud_call_t *call, const kite_http_request_t *q, kite_cloud_http_cb cb);

/* CREATE and FIND: launch i exists with id (before the answer; the rest of a batch without an
 * id are taken as "not in the answer": looked for, then created again). */
void kite_cloud_created(kite_cloud_call_t *call, size_t i, const char *id);
/* LIST: one instance of the page: its id and, for the tag "*", its pool's tag. */
void kite_cloud_listed(kite_cloud_call_t *call, const char *id, const char *pool_tag);
/* CATALOG: one offer (copied; provider and fetched_ms are filled in when empty). */
struct kite_offer;
void kite_cloud_offer(kite_cloud_call_t *call, const struct kite_offer *offer);
/* Ends the call. After it, call is gone. */
void kite_cloud_answer(kite_cloud_call_t *call, const kite_cloud_answer_t *a);
/* Ends the call with the outcome of an HTTP failure (status, resp from kite_cloud_http's
 * callback) and the API's error code and message the provider read from the body (or NULL):
 * 404 NOT_FOUND; 429 RETRY (with Retry-After); 5xx, timeouts and lost connections MAYBE; a
 * 2xx that could not be read (status 0) MAYBE; 401 and 403 FAILED KITE_ECREDENTIALS; other
 * statuses FAILED KITE_EPROVIDER; connection refused FAILED. The advice table may change the
 * code. */
void kite_cloud_answer_http(kite_cloud_call_t *call, int status, const kite_http_response_t *resp,
                            const char *api_code, const char *message);
/* What kite_cloud_answer_http would answer, in *a, for a provider to add to (prepare_again)
 * before kite_cloud_answer(). a's strings point into the arguments. */
void kite_cloud_http_outcome(int status, const kite_http_response_t *resp, const char *api_code,
                             const char *message, kite_cloud_answer_t *a);
/* Shorthands. */
void kite_cloud_answer_ok(kite_cloud_call_t *call);
void kite_cloud_answer_fail(kite_cloud_call_t *call, int code, const char *message);

/* ---- helpers every provider uses ------------------------------------------------------------ */

/* The first of several strings that is set and not empty, or NULL. */
const char *kite_cloud_first(const char *a, const char *b, const char *c);
/* The provider options JSON as an object (NULL text: an empty object); NULL and *msg when it
 * is not one. */
struct json_t;
struct json_t *kite_cloud_options_json(const kite_cloud_ops_t *ops, const char *options,
                                       char **msg);
/* "{\"provider\":NAME,...}" with the given pairs (key, value; NULL values left out),
 * NULL-terminated, keys sorted. */
char *kite_cloud_reach_json(const char *provider, ...);
/* The MD5 fingerprint of an OpenSSH public key line, colon-separated lowercase hex (how
 * DigitalOcean and Hetzner name keys); malloc'd, or NULL. */
char *kite_cloud_md5_fingerprint(const char *pubkey_line);
/* Query-string escaping (RFC 3986 unreserved kept); malloc'd. */
char *kite_cloud_escape(const char *s);

#endif
