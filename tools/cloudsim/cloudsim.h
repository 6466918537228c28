#ifndef KITE_CLOUDSIM_H
#define KITE_CLOUDSIM_H

/* kite-cloudsim: an emulator of cloud APIs backed by real local sshd nodes.
 *
 * Three layers, so that another cloud's API is one more front on the same backend:
 *   httpd.c     a minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length bodies)
 *               that applies the injected faults around every API request;
 *   machines.c  the backend: machines, each one kite_local_node_t (local.h), with a
 *               provisioning delay, deletion that completes only when every process of the
 *               node is gone, and death on demand (preemption);
 *   do_api.c    the DigitalOcean v2 front (droplets, account keys) on top of machines;
 *   main.c      flags, the control endpoint (/_sim/…) and the loop. */

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
} http_resp_t;

const char *http_req_header(const http_req_t *r, const char *name);
/* The value of query parameter name (URL-decoded, malloc'd), or NULL. */
char *http_query_param(const http_req_t *r, const char *name);
/* Sets resp to status with a JSON body (takes the string). */
void http_json(http_resp_t *resp, int status, char *json);
/* DigitalOcean-style error body {"id":…,"message":…}. */
void http_error(http_resp_t *resp, int status, const char *id, const char *message);

typedef void (*http_handler_fn)(sim_t *sim, const http_req_t *req, http_resp_t *resp);
/* Listens on host:port (port 0: any); *port_out gets the port. */
int httpd_start(sim_t *sim, const char *host, int port, http_handler_fn fn, int *port_out);
void httpd_stop(sim_t *sim);

/* ---- faults --------------------------------------------------------------------------------- */

typedef enum fault_kind {
  FAULT_NONE = 0,
  FAULT_429,       /* not processed: 429 with Retry-After */
  FAULT_500,       /* not processed: 500 */
  FAULT_RESET,     /* processed, then the connection is reset instead of answered */
  FAULT_MALFORMED, /* processed, then a truncated JSON body is sent with the real status */
  FAULT_SLOW,      /* processed, answered after slow_ms */
} fault_kind_t;

typedef struct faults {
  double p429, p500, preset, pmalformed, pslow; /* probability per API request */
  unsigned retry_after_s;                       /* in a 429; 0: 1 */
  unsigned slow_ms;                             /* for FAULT_SLOW; 0: 2000 */
  unsigned delay_ms;                            /* every API response */
  unsigned provision_ms;                        /* extra time before a machine is active */
  bool no_capacity;                             /* creates fail: size unavailable */
  unsigned droplet_limit;                       /* 0: 25 */
  fault_kind_t queue[64];                       /* one-shot faults for the next requests */
  size_t queue_n;
  uint64_t seed;
} faults_t;

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
  const char *cloud; /* the front that made it: CLOUD_DO or CLOUD_EC2 (static text) */
  char *name;
  char **tags;
  size_t tag_n;
  char *region, *size, *image;
  char *user_data;
  char *authorized_key;
  char created_at[32];
  machine_state_t state;
  bool vanish_when_dead; /* a kill that deletes the machine (preemption-like) */
  bool hostkey_applied;  /* the DigitalOcean front applied user_data's host key */
  kite_local_node_t *node;
  bool node_stopping;
  char address[64];
  uv_timer_t timer; /* provision delay */
  struct machine *next;
} machine_t;

#define CLOUD_DO "digitalocean"
#define CLOUD_EC2 "ec2"

typedef struct machine_opts {
  const char *cloud; /* CLOUD_DO or CLOUD_EC2 (static text) */
  const char *name;
  const char *const *tags;
  size_t tag_n;
  const char *region, *size, *image, *user_data, *authorized_key;
} machine_opts_t;

machine_t *machine_create(sim_t *sim, const machine_opts_t *o);
machine_t *machine_find(sim_t *sim, uint64_t id);
bool machine_has_tag(const machine_t *m, const char *tag);
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

/* ---- the DigitalOcean front ----------------------------------------------------------------- */

/* Handles /v2/…; returns false when the path is not one of its routes. */
bool do_api_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp);
void do_api_free(sim_t *sim);

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
  char *node_dir;
  faults_t faults;
  uint64_t rng;
  /* the backend */
  machine_t *machines;
  uint64_t next_machine_id;
  unsigned created_total, deleted_total, peak;
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
char *sim_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
