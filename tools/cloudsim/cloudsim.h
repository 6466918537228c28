#ifndef KITE_CLOUDSIM_H
#define KITE_CLOUDSIM_H

/* kite-cloudsim: an emulator of cloud APIs backed by real local sshd nodes.
 *
 * Layers, so that another cloud's API is one more front on the same backend:
 *   httpd.c     a minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies);
 *   faults.c    the injected faults, applied around every request of a front in that front's
 *               own shapes (its error bodies, its rate-limit headers), and the capacity and
 *               limit checks of creates;
 *   machines.c  the backend: machines, each one kite_local_node_t (local.h), with a
 *               provisioning delay, cloud-init's host key from user data, deletion that
 *               completes only when every process of the node is gone, and death on demand
 *               (preemption);
 *   fronts      one sim_front_t each: do_api.c (DigitalOcean v2 at /v2/), hetzner_api.c
 *               (Hetzner Cloud at /v1/), vastai_api.c (Vast.ai at /api/v0/ and /api/v1/),
 *               verda_api.c (Verda, formerly DataCrunch, at /verda/v1/),
 *               gcp_api.c (Compute Engine at /compute/v1/), ec2_*.c (the EC2 Query API at
 *               POST /), pricing_api.c (AWS's Price List, JSON 1.1 at POST / with X-Amz-Target);
 *               runpod_api.c (RunPod's REST API at /runpod/v1/);
 *   main.c      flags, the table of fronts, the control endpoint (/_sim/…) and the loop. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "kite/kite.h"

typedef struct sim sim_t;

/* ---- httpd ---------------------------------------------------------------------------------- */

typedef struct http_req {
  char *method;
  char *path;  /* without the query */
  char *query; /* after '?', or "" */
  char *body;
  size_t body_len;
  char **headers; /* "name: value" lines */
  size_t header_n;
} http_req_t;

typedef struct http_resp {
  int status;
  char *headers; /* extra header lines, each ending in \r\n (malloc'd), or NULL */
  char *body;    /* malloc'd, or NULL */
  size_t body_len;
  const char *content_type; /* of the body (static text); NULL: JSON */
  unsigned delay_ms;        /* the answer waits this long */
  bool reset;               /* the connection is reset instead of answered */
} http_resp_t;

const char *http_req_header(const http_req_t *r, const char *name);
/* The value of query parameter name (URL-decoded, malloc'd), or NULL. With several, the first. */
char *http_query_param(const http_req_t *r, const char *name);
/* The i-th (0-based) value of a query parameter that may repeat (malloc'd), or NULL. */
char *http_query_param_nth(const http_req_t *r, const char *name, size_t i);
/* Whether the request carries Authorization: Bearer <token>. */
bool http_bearer_is(const http_req_t *r, const char *token);
/* Sets resp to status with a JSON body (takes the string). */
void http_json(http_resp_t *resp, int status, char *json);
/* Appends one header line ("Name: value", without CRLF) to resp's extra headers. */
void http_add_header(http_resp_t *resp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The control endpoint's error body {"id":…,"message":…} (DigitalOcean's shape as well). */
void http_error(http_resp_t *resp, int status, const char *id, const char *message);

typedef void (*http_handler_fn)(sim_t *sim, const http_req_t *req, http_resp_t *resp);
/* Listens on host:port (port 0: any); *port_out gets the port. Every request is answered by fn,
 * which fills resp (status, body, and when to answer: delay_ms, reset). */
int httpd_start(sim_t *sim, const char *host, int port, http_handler_fn fn, int *port_out);
void httpd_stop(sim_t *sim);

/* ---- fronts --------------------------------------------------------------------------------- */

/* An error a front answers in its own shape: an injected fault's, for instance. */
typedef struct sim_error {
  int status;
  const char *code, *message;
} sim_error_t;

/* One cloud's API on the shared backend. main.c lists every front in one table; the fault
 * layer answers each request of a front with the faults injected in that front's shapes, so no
 * generic code names a cloud. Every field but name and handle may be NULL or 0. */
typedef struct sim_front {
  const char *name; /* also the cloud of its machines (machine_t.cloud) and of /_sim/state */
  /* Which requests are its API calls: a path prefix ("/v2/"; the path without the final '/'
   * matches too), else match(). */
  const char *path_prefix;
  bool (*match)(const http_req_t *req);
  /* Answers one of its API calls (after the fault layer decided the call goes through). */
  void (*handle)(sim_t *sim, const http_req_t *req, http_resp_t *resp);
  /* Its own routes under /_sim/; false when req is not one of them. */
  bool (*control)(sim_t *sim, const http_req_t *req, http_resp_t *resp);
  /* Adds its fields to GET /_sim/state. */
  void (*state)(sim_t *sim, json_t *state);
  /* Sets resp to an error in its shape. */
  void (*error)(http_resp_t *resp, int status, const char *code, const char *message);
  const char *content_type;   /* of its bodies; NULL: JSON */
  unsigned ratelimit_limit;   /* answers carry ratelimit-limit/-remaining/-reset; 0: none */
  sim_error_t rate_limited;   /* the injected 429 (its status is 429 whatever this says) */
  sim_error_t server_error;   /* the injected 500 */
  const char *malformed_body; /* the broken body a malformed answer that had none sends */
  /* A create refused for capacity (--no-capacity), and beyond the account's limit. */
  void (*no_capacity)(http_resp_t *resp, const char *size, const char *region);
  void (*over_limit)(http_resp_t *resp, unsigned limit, unsigned wanted);
  void (*free)(sim_t *sim);
} sim_front_t;

/* The front whose API req is a call of, or NULL (a control or unknown path). */
const sim_front_t *sim_front_of(const sim_t *sim, const http_req_t *req);

/* ---- faults (faults.c) ---------------------------------------------------------------------- */

typedef enum fault_kind {
  FAULT_NONE = 0,
  FAULT_429,       /* not processed: 429 with Retry-After */
  FAULT_500,       /* not processed: 500 */
  FAULT_RESET,     /* processed, then the connection is reset instead of answered */
  FAULT_MALFORMED, /* processed, then a truncated body is sent with the real status */
  FAULT_SLOW,      /* processed, answered after slow_ms */
} fault_kind_t;

#define SIM_ANY_MARKET (-1)

typedef struct faults {
  double p429, p500, preset, pmalformed, pslow; /* probability per API request */
  unsigned retry_after_s;                       /* in a 429; 0: 1 */
  unsigned slow_ms;                             /* for FAULT_SLOW; 0: 2000 */
  unsigned delay_ms;                            /* every API response */
  unsigned provision_ms;                        /* extra time before a machine is active */
  bool no_capacity;                             /* creates fail: size unavailable */
  unsigned droplet_limit;                       /* machines per front; 0: 25 */
  fault_kind_t queue[64];                       /* one-shot faults for the next requests */
  size_t queue_n;
  uint64_t seed;
  /* Capacity per place (POST /_sim/capacity): at most available live machines of a front in a
   * region, of one type or ("*") of all types. */
  struct sim_capacity {
    char front[24], region[48], type[64];
    int market; /* 0 on-demand, 1 spot, SIM_ANY_MARKET */
    unsigned available;
  } capacity[64];
  size_t capacity_n;
} faults_t;

/* Answers one API call of front f: picks the fault, then either answers it in f's shape
 * without processing, or lets f handle the call and breaks, resets or delays the answer. */
void faults_serve(sim_t *sim, const sim_front_t *f, const http_req_t *req, http_resp_t *resp);
/* POST /_sim/faults: merges a JSON object of fault settings. */
void faults_set(sim_t *sim, const http_req_t *req, http_resp_t *resp);
/* POST /_sim/capacity: one rule {"front", "region", "type" ("*": every type), "available": N
 * (-1 removes the rule)}, or a list of them. GET /_sim/capacity: the rules. */
void sim_capacity_set(sim_t *sim, const http_req_t *req, http_resp_t *resp);
void sim_capacity_get(sim_t *sim, http_resp_t *resp);
/* Whether front f may create want more machines of type size in region while it has live:
 * false, with f's refusal in resp, when creates fail for capacity (--no-capacity, or a capacity
 * rule of that place that want more would pass) or the account's limit would be passed. */
bool sim_admit(sim_t *sim, const sim_front_t *f, unsigned live, unsigned want, const char *size,
               const char *region, bool spot, http_resp_t *resp);
/* The account limit of every front (--droplet-limit). */
unsigned sim_machine_limit(const sim_t *sim);

/* ---- machines ------------------------------------------------------------------------------- */

typedef enum machine_state {
  M_PROVISIONING = 0, /* node starting, or waiting out provision_ms */
  M_RUNNING,
  M_OFF,      /* the node died (or failed to start); the record stays until deleted */
  M_DELETING, /* node being stopped; gone from the API when that is done */
} machine_state_t;

typedef struct machine {
  sim_t *sim;
  uint64_t id;
  const char *cloud; /* the front that made it: its sim_front_t.name (static text) */
  char *name;
  char **tags; /* the front's tags or labels, as the front writes them */
  size_t tag_n;
  char *region, *size, *image;
  char *user_data;
  char *authorized_key;
  char *more_authorized_keys; /* further key lines authorized with it, or NULL */
  char created_at[32];
  /* Billing: what the front charges per hour for it (spot price when spot) and how (in
   * increments of bill_increment_s seconds, at least bill_minimum_s; 0: by the second), from
   * created_ms until gone_ms (0 while it exists). GET /_sim/bill sums it. */
  double price_hourly;
  unsigned bill_increment_s, bill_minimum_s;
  bool spot;
  uint64_t created_ms, gone_ms; /* wall-clock ms since the epoch */
  size_t bill_line;             /* its line of sim->bill */
  machine_state_t state;
  bool node_up;          /* the node listened once (PROVISIONING: booting, then starting) */
  bool vanish_when_dead; /* a kill that deletes the machine (preemption-like) */
  kite_local_node_t *node;
  bool node_stopping;
  char address[64];
  uv_timer_t timer; /* provision delay */
  struct machine *next;
} machine_t;

typedef struct machine_opts {
  const char *cloud; /* the front's name (static text); required */
  const char *name;
  const char *const *tags;
  size_t tag_n;
  const char *node_tag; /* the node's tag (kite_local_count_tagged); NULL: tags[0] */
  const char *region, *size, *image, *user_data, *authorized_key;
  /* Further OpenSSH public key lines (newline-separated) authorized as well, or NULL: they are
   * added to the node's authorized_keys before the machine is RUNNING. */
  const char *more_authorized_keys;
  /* Billing (machine_t): the front's price for size in region, and its granularity. */
  double price_hourly;
  unsigned bill_increment_s, bill_minimum_s;
  bool spot;
} machine_opts_t;

/* Creates a machine. A cloud-config user_data with an ed25519 host key under ssh_keys
 * (ed25519_private, ed25519_public) becomes the node's host key before the machine is RUNNING,
 * as cloud-init installs it at first boot. */
machine_t *machine_create(sim_t *sim, const machine_opts_t *o);
machine_t *machine_find(sim_t *sim, uint64_t id);
bool machine_has_tag(const machine_t *m, const char *tag);
/* The address the machine's node has (from its creation on), or "" once the node is gone. */
const char *machine_node_address(const machine_t *m);
/* Deletes: the node is stopped; the machine disappears when every process of it is gone. */
void machine_delete(machine_t *m);
/* The machine dies like a preempted or crashed one: its node is killed at once. With vanish it
 * then disappears from the API (as a reclaimed spot machine does), else it stays "off". */
void machine_kill(machine_t *m, bool vanish);
unsigned machine_count(sim_t *sim);
/* Machines of one front (a DigitalOcean account never sees EC2's instances). */
unsigned machine_count_of(sim_t *sim, const char *cloud);
/* machine_find, of one front only. */
machine_t *machine_find_of(sim_t *sim, uint64_t id, const char *cloud);
void machines_stop_all(sim_t *sim, void (*done)(sim_t *sim));

/* One machine's line of the bill, which outlives the machine (machines are freed when gone). */
typedef struct bill_line {
  uint64_t id;
  const char *cloud;
  char *size, *region;
  bool spot;
  double price_hourly;
  unsigned increment_s, minimum_s;
  uint64_t created_ms, gone_ms; /* gone_ms 0 while it exists */
} bill_line_t;

/* The bill: GET /_sim/bill's JSON text (malloc'd), every machine ever made, its billable
 * seconds under its front's granularity up to when it was gone (or now), and the total. */
char *machines_bill_json(sim_t *sim);
void machines_bill_free(sim_t *sim);

/* MD5 of an OpenSSH public key's blob as colon-separated hex (malloc'd), as DigitalOcean and
 * Hetzner show fingerprints; NULL when the key is not "type base64 [comment]". */
char *sim_key_fingerprint(const char *public_key);
/* The first key of a cloud-config's ssh_authorized_keys (malloc'd), or NULL. */
char *sim_cloud_config_authorized_key(const char *user_data);

/* ---- the simulator -------------------------------------------------------------------------- */

typedef struct ssh_key {
  uint64_t id;
  char *name, *public_key, *fingerprint;
  struct ssh_key *next;
} ssh_key_t;

struct sim {
  kite_runtime_t *rt;
  uv_loop_t *loop;
  char *token;
  unsigned ssh_port;
  unsigned verda_token_ttl_s; /* the Verda front's access token lifetime (--verda-token-ttl) */
  char *node_dir;
  faults_t faults;
  uint64_t rng;
  const sim_front_t *const *fronts; /* NULL-terminated, from main.c */
  /* the backend */
  machine_t *machines;
  uint64_t next_machine_id;
  unsigned created_total, deleted_total, peak;
  bill_line_t *bill; /* every machine ever made, in creation order */
  size_t bill_n, bill_cap;
  /* the DigitalOcean front's account */
  ssh_key_t *keys;
  uint64_t next_key_id;
  /* counters for /_sim/state */
  unsigned requests, faults_injected;
  /* httpd */
  void *httpd;
  bool stopping;
  void (*stopped_cb)(sim_t *sim);
};

double sim_rand01(sim_t *sim);
/* POST /_sim/machines/{id}/kill: machine id dies at once (the body's "vanish": false keeps it
 * listed as off); for the fronts whose own ids are not machine ids, their kill routes too. */
void sim_kill_machine(sim_t *sim, const http_req_t *req, uint64_t id, http_resp_t *resp);
char *sim_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* j as compact JSON text (malloc'd), j released. */
char *sim_dump(json_t *j);

/* The fronts (each in its own file). */
extern const sim_front_t do_front, hetzner_front, ec2_front, pricing_front, gcp_front, vastai_front,
    verda_front, runpod_front;

#endif
