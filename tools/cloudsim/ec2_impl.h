#ifndef KITE_CLOUDSIM_EC2_IMPL_H
#define KITE_CLOUDSIM_EC2_IMPL_H

/* The EC2 front of kite-cloudsim, in four files behind this one internal header:
 *   ec2_wire.c       the Query API's wire format: form bodies, the actions' parameter shapes,
 *                    Signature Version 4, XML answers and <Response><Errors> bodies;
 *   ec2_resources.c  the account: instances (on top of machines), key pairs and security
 *                    groups, per region; spot interruptions and the metadata services;
 *   ec2_api.c        the actions (RunInstances, …), the /_sim/ec2/ control routes, and the
 *                    front (ec2_front);
 *   ec2_imds.c       the instance metadata service spot instances serve. */

#include <stdio.h>

#include "cloudsim.h"

#define EC2_CLOUD "ec2"
#define EC2_NS "http://ec2.amazonaws.com/doc/2016-11-15/"
#define EC2_OWNER "123456789012"
#define EC2_VERSION "2016-11-15"

/* ---- wire format (ec2_wire.c) --------------------------------------------------------------- */

/* An XML answer being written. */
typedef struct ec2_out {
  char *buf;
  size_t len;
  FILE *fp;
} ec2_out_t;

void ec2_outf(ec2_out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes s with XML's five special characters escaped. */
void ec2_outx(ec2_out_t *o, const char *s);
/* <name>value</name>, value escaped. */
void ec2_elem(ec2_out_t *o, const char *name, const char *value);
/* Starts <ActionResponse xmlns=…> with its requestId. */
void ec2_begin(ec2_out_t *o, const char *action);
/* Closes the answer and makes it resp's 200 body. */
void ec2_finish(http_resp_t *resp, ec2_out_t *o, const char *action);
/* Drops an answer begun but not finished. */
void ec2_discard(ec2_out_t *o);
/* An EC2 error answer: <Response><Errors><Error><Code>…<Message>…</Error></Errors>…. */
void ec2_error(http_resp_t *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same, as the front's error formatter. */
void ec2_error_body(http_resp_t *resp, int status, const char *code, const char *message);

/* A form-encoded request body, decoded. */
typedef struct ec2_form {
  char **names, **values;
  size_t n;
} ec2_form_t;

void ec2_form_parse(const char *body, size_t len, ec2_form_t *f);
void ec2_form_free(ec2_form_t *f);
const char *ec2_param(const ec2_form_t *f, const char *name);
/* The parameter whose name is printf(fmt, …), or NULL. */
const char *ec2_paramf(const ec2_form_t *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The call's Action when it is one this emulator knows, with Version 2016-11-15 and only the
 * parameters of the action's input shape; else NULL, with EC2's refusal in resp. */
const char *ec2_check_call(const ec2_form_t *f, http_resp_t *resp);
/* What a SigV4 signature check found; each front answers a refusal in its own shape. */
typedef enum aws_sig_verdict {
  AWS_SIG_OK = 0,
  AWS_SIG_MISSING,       /* no Authorization or X-Amz-Date */
  AWS_SIG_MALFORMED,     /* an Authorization header that is not SigV4's */
  AWS_SIG_UNKNOWN_KEY,   /* another access key id than the account's */
  AWS_SIG_BAD_DATE,      /* X-Amz-Date unreadable or not the scope's day */
  AWS_SIG_EXPIRED,       /* more than 5 minutes off */
  AWS_SIG_WRONG_SERVICE, /* scoped to another service */
  AWS_SIG_MISMATCH,      /* the signature is not the one the secret makes */
} aws_sig_verdict_t;

/* Recomputes the request's SigV4 signature for service with the account's keys; region gets
 * the credential scope's region. */
aws_sig_verdict_t aws_sig_verify(const http_req_t *req, const char *access_key, const char *secret,
                                 const char *service, char region[64]);
/* Checks the request's SigV4 signature against the account's keys. Returns false (resp set)
 * when it is refused; region gets the credential scope's region. */
bool ec2_check_signature(const http_req_t *req, const char *access_key, const char *secret,
                         http_resp_t *resp, char region[64]);

/* ---- the account (ec2_resources.c) ---------------------------------------------------------- */

typedef struct imds imds_t;

typedef struct ec2_kv {
  char *key, *value;
} ec2_kv_t;

typedef struct imds_info {
  const char *instance_id;
  const char *instance_action; /* the spot notice JSON, or NULL (then 404) */
} imds_info_t;

typedef struct ec2_inst {
  char id[32];
  uint64_t machine_id;
  char *client_token, *image, *type, *key_name, *sg_id, *subnet, *region;
  char zone[64]; /* its availability zone: "us-east-1a" */
  ec2_kv_t *tags;
  size_t tag_n;
  bool spot;
  char launch_time[32];
  char reservation[32];
  bool terminate_requested, interrupted, final_;
  char final_reason[96];
  char address[64];
  imds_t *imds;
  char *notice_json;
  uint64_t interrupt_due; /* loop time of the spot interruption, or 0 */
  imds_info_t info;
  struct ec2_inst *next;
} ec2_inst_t;

typedef struct ec2_key_pair {
  char *name, *id, *material, *fingerprint, *region;
  bool managed;
  struct ec2_key_pair *next;
} ec2_key_pair_t;

typedef struct ec2_sgroup {
  char *id, *name, *description, *region;
  bool managed;
  char *perms; /* "tcp:22-22:0.0.0.0/0" lines */
  struct ec2_sgroup *next;
} ec2_sgroup_t;

/* The one EC2 account of the emulator. */
typedef struct ec2_account {
  bool init;
  /* The region of the request being answered (its signature's credential scope), or "" for
   * control calls: instances, key pairs and security groups live in one region, as on EC2. */
  char region[64];
  char *access_key, *secret;
  int imds_port;
  ec2_inst_t *insts; /* newest first */
  ec2_key_pair_t *keys;
  ec2_sgroup_t *groups;
  unsigned created, peak;
  uint64_t seq;
  sim_t *sim;
  uv_timer_t sync; /* keeps instances' metadata services and interruptions in step */
  bool sync_closed;
} ec2_account_t;

extern ec2_account_t ec2;

/* Reads the account's keys from the environment and starts the sync timer, once. */
void ec2_init(sim_t *sim);
/* Whether something of region r is visible to the request being answered. */
bool ec2_here(const char *r);

/* What RunInstances asks for, checked. */
typedef struct ec2_launch {
  const char *client_token, *image, *type, *key_name, *sg_id, *subnet, *region, *name;
  const char *zone;      /* an availability zone of region, checked */
  double price_hourly;   /* what it is billed per hour (the zone's spot price when spot) */
  const char *user_data; /* decoded */
  const char *authorized_key;
  const ec2_kv_t *tags;
  size_t tag_n;
  bool spot;
} ec2_launch_t;

/* A new instance on a new machine, or NULL when no machine could be made. */
ec2_inst_t *ec2_inst_launch(sim_t *sim, const ec2_launch_t *l);
/* The instance of this region with this id, or NULL. */
ec2_inst_t *ec2_inst_find(const char *id);
/* Its state now ("pending", "running", "shutting-down", "terminated"), from its machine, with
 * the state reason once it is terminated. */
const char *ec2_inst_state(sim_t *sim, ec2_inst_t *e, const char **reason_code,
                           const char **reason_msg);
const char *ec2_inst_tag(const ec2_inst_t *e, const char *key);
void ec2_inst_terminate(sim_t *sim, ec2_inst_t *e);
/* A spot interruption: the notice now (instance-action), the machine dies notice_ms later.
 * Returns the notice's time (static text). */
const char *ec2_inst_interrupt(sim_t *sim, ec2_inst_t *e, uint64_t notice_ms);
/* Instances not terminated, across regions. */
unsigned ec2_live_count(sim_t *sim);

ec2_key_pair_t *ec2_key_find(const char *name);
/* Adds a key pair (material: one OpenSSH public key line) to this region. */
ec2_key_pair_t *ec2_key_add(const char *name, char *material_taken, bool managed);
void ec2_key_delete(const char *name);

ec2_sgroup_t *ec2_group_find(const char *id, const char *name);
ec2_sgroup_t *ec2_group_add(const char *name, const char *description, bool managed);
/* Whether an instance not terminated uses the group. */
bool ec2_group_in_use(sim_t *sim, const ec2_sgroup_t *s);
/* Adds one ingress rule; false when it is there already. */
bool ec2_group_allow(ec2_sgroup_t *s, const char *proto, const char *from, const char *to,
                     const char *cidr);
void ec2_group_delete(ec2_sgroup_t *s);

/* Frees the account's memory (the loop is gone by then). */
void ec2_account_free(void);

/* ---- what it sells (ec2_catalog.c) ------------------------------------------------------- */

/* Whether type is in the table; sold in region; offered in zone (an availability zone of
 * region, "us-east-1b"). */
bool ec2_type_exists(const char *type);
bool ec2_type_sold(const char *type, const char *region);
bool ec2_type_offered(const char *type, const char *region, const char *zone);
/* Whether zone is one of region's availability zones. */
bool ec2_zone_valid(const char *region, const char *zone);
/* The first zone type is offered in, in region (static text). */
const char *ec2_zone_default(const char *type, const char *region);
/* The zones type is offered in, "us-east-1b, us-east-1c", into out. */
const char *ec2_type_zones(const char *type, const char *region, char *out, size_t size);
/* What a launch of type in zone is billed per hour: its spot price there when spot and the
 * zone has one, else the on-demand price; 0 when it is not sold there. */
double ec2_type_price(const char *type, const char *region, const char *zone, bool spot);
/* The most items a page of the catalog calls holds (POST /_sim/ec2/catalog); 0: no cap. */
unsigned ec2_page_max(void);
void ec2_describe_instance_types(const ec2_form_t *f, const char *region, http_resp_t *resp);
void ec2_describe_spot_price_history(const ec2_form_t *f, const char *region, http_resp_t *resp);
/* The Price List products (JSON objects) passing filters (an array of {Field, Value}), from
 * the skip-th, at most max; *next gets the index of the next page's first, or -1. */
json_t *ec2_price_list(json_t *filters, long skip, long max, long *next);
/* The one-shot answer POST /_sim/ec2/override set for action, into resp; false when none. */
bool ec2_override_take(const char *action, http_resp_t *resp);
/* GET and POST /_sim/ec2/catalog, POST /_sim/ec2/override; false for other routes. */
bool ec2_catalog_control(const http_req_t *req, http_resp_t *resp);
void ec2_catalog_free(void);

/* ---- the metadata service (ec2_imds.c) ------------------------------------------------------ */

typedef const imds_info_t *(*imds_lookup_fn)(void *data);

/* Listens on address:port (IMDSv2 only: PUT /latest/api/token first). */
int imds_start(uv_loop_t *loop, const char *address, int port, imds_lookup_fn fn, void *data,
               imds_t **out);
/* Closes the listener and every connection; frees itself when they are closed. */
void imds_stop(imds_t *m);
/* Another cloud's metadata server on the same plumbing: fn answers each request (method, path,
 * the whole head for imds_header) with a body (malloc'd, or NULL) and *status. */
typedef char *(*imds_answer_fn)(void *data, const char *method, const char *path, const char *head,
                                int *status);
int imds_serve(uv_loop_t *loop, const char *address, int port, imds_answer_fn fn, void *data,
               imds_t **out);
/* The value of header name in a request head, into out (cap bytes); NULL when absent. */
const char *imds_header(const char *head, const char *name, char *out, size_t cap);

#endif
