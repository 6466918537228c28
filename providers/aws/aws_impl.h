#ifndef KITE_AWS_IMPL_H
#define KITE_AWS_IMPL_H

/* Declarations shared by the AWS provider's files (and by the emulator's EC2 front, which
 * verifies signatures with the same code). Never installed. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/runtime.h"

/* ---- sigv4.c: Signature Version 4 ----------------------------------------------------------- */

typedef struct kite__aws_sig_req {
  const char *method;         /* "GET", "POST" */
  const char *path;           /* the URI path, not yet percent-encoded ("/" for EC2) */
  const char *query;          /* the raw query string (after '?'), or NULL */
  const char *const *headers; /* "Name:value" lines to sign, in any order; duplicates allowed */
  size_t header_n;
  const void *payload; /* the request body, or NULL */
  size_t payload_len;
  const char *region;   /* "us-east-1" */
  const char *service;  /* "ec2" */
  const char *amz_date; /* ISO 8601 basic: "20150830T123600Z" */
  const char *access_key;
  const char *secret_key;
} kite__aws_sig_req_t;

typedef struct kite__aws_sig {
  char *canonical_request;
  char *string_to_sign;
  char *signed_headers; /* "host;x-amz-date" */
  char signature[65];   /* lowercase hex */
  char *authorization;  /* the Authorization header's value */
} kite__aws_sig_t;

/* Signs r. On success out's strings are malloc'd; free them with kite__aws_sig_free(). */
int kite__aws_sign(const kite__aws_sig_req_t *r, kite__aws_sig_t *out);
void kite__aws_sig_free(kite__aws_sig_t *s);
/* Percent-encodes s[0..n) as SigV4 wants: every byte but A-Z a-z 0-9 - _ . ~ as %XY (upper
 * case hex); '/' is kept when keep_slash. */
char *kite__aws_uri_encode(const char *s, size_t n, bool keep_slash);
/* SHA-256 of p[0..n) as 64 lowercase hex digits and a NUL. */
void kite__aws_sha256_hex(const void *p, size_t n, char out[65]);
/* "20150830T123600Z" for t (seconds since the epoch). */
void kite__aws_amz_date(int64_t t, char out[17]);
/* Constant-time comparison of two NUL-terminated strings. */
bool kite__aws_str_equal_ct(const char *a, const char *b);

/* ---- credentials.c ------------------------------------------------------------------------- */

typedef struct kite__aws_creds {
  char *access_key;
  char *secret_key;
  char *session_token; /* or NULL */
  char *region;        /* from the environment or the config file, or NULL */
  char *source;        /* where the keys came from, for messages ("environment", a path) */
} kite__aws_creds_t;

typedef struct kite__aws_creds_opts {
  const char *profile; /* NULL: $AWS_PROFILE, else "default" */
  /* Where to read the environment from: a lookup function (NULL: getenv). Tests pass their own
   * so that they never depend on the process environment. */
  const char *(*getenv_fn)(const char *name, void *data);
  void *getenv_data;
} kite__aws_creds_opts_t;

/* Finds credentials the way AWS's own tools do: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
 * (and AWS_SESSION_TOKEN) in the environment; else the profile's keys in the shared
 * credentials file ($AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials), else in the config
 * file ($AWS_CONFIG_FILE or ~/.aws/config, section [profile NAME] or [default]). The region
 * comes from AWS_REGION, AWS_DEFAULT_REGION or the profile's `region` in the config file.
 * When rt is not NULL the secret key and the session token are registered as secrets.
 * On KITE_ECREDENTIALS *errmsg (malloc'd) lists every place that was looked at. */
int kite__aws_creds_load(kite_runtime_t *rt, const kite__aws_creds_opts_t *o,
                         kite__aws_creds_t *out, char **errmsg);
void kite__aws_creds_free(kite__aws_creds_t *c);

/* ---- xml.c: EC2 responses ------------------------------------------------------------------ */

/* A parsed response document; opaque (a libxml2 document underneath). */
typedef struct kite__aws_xml kite__aws_xml_t;

/* Parses body without network access, without loading or expanding DTDs or entities. A body
 * with a DOCTYPE is refused (EC2 never sends one; it is how entity bombs come in), as are
 * bodies over 16 MiB and documents libxml2 finds malformed: KITE_EPROTO. */
int kite__aws_xml_parse(const char *body, size_t len, kite__aws_xml_t **out);
void kite__aws_xml_free(kite__aws_xml_t *x);
/* The root element's local name ("RunInstancesResponse", "Response"), or "". */
const char *kite__aws_xml_root(const kite__aws_xml_t *x);

/* An EC2 error response: <Response><Errors><Error><Code/><Message/></Error></Errors>
 * <RequestID/></Response>. Returns true and fills code/message (malloc'd) when x is one. */
bool kite__aws_xml_error(const kite__aws_xml_t *x, char **code, char **message, char **request_id);

typedef struct kite__aws_tag {
  char *key, *value;
} kite__aws_tag_t;

typedef struct kite__aws_instance {
  char *id;
  char *state;          /* pending running shutting-down terminated stopping stopped */
  char *public_ip;      /* ipAddress, or NULL */
  char *private_ip;     /* privateIpAddress, or NULL */
  char *reason_code;    /* stateReason/code, or NULL ("Server.SpotInstanceTermination") */
  char *reason_message; /* stateReason/message, or NULL */
  char *client_token;   /* or NULL */
  char *lifecycle;      /* instanceLifecycle: "spot", or NULL */
  kite__aws_tag_t *tags;
  size_t tag_n;
} kite__aws_instance_t;

/* Every instance in a RunInstances (instancesSet) or DescribeInstances (reservationSet/…/
 * instancesSet) or TerminateInstances (instancesSet with currentState) response; *next_token
 * gets nextToken (malloc'd) or NULL. KITE_EPROTO when x is not one of these. */
int kite__aws_xml_instances(const kite__aws_xml_t *x, kite__aws_instance_t **out, size_t *n,
                            char **next_token);
void kite__aws_instances_free(kite__aws_instance_t *v, size_t n);

/* The text of the first element reached by a path of local names from the root, e.g.
 * {"securityGroupInfo", "item", "groupId"}; NULL when absent. malloc'd. */
char *kite__aws_xml_text(const kite__aws_xml_t *x, const char *const *path, size_t depth);
/* How many <item> children the element at path has (0 when absent). */
size_t kite__aws_xml_count(const kite__aws_xml_t *x, const char *const *path, size_t depth);

/* The instance types of a DescribeInstanceTypes answer (instanceTypeSet/item). */
typedef struct kite__aws_itype {
  char name[64];
  unsigned vcpus;      /* vCpuInfo/defaultVCpus */
  uint64_t memory_mib; /* memoryInfo/sizeInMiB */
  char gpu[32];        /* gpuInfo/gpus/item/name of the first, or "" */
  unsigned gpu_count;  /* its count */
  uint64_t gpu_mib;    /* its memoryInfo/sizeInMiB (each) */
  char arch[16];       /* "x86_64" when supported, else "arm64"; "" for neither */
  bool spot;           /* "spot" is among supportedUsageClasses */
  uint64_t disk_gb;    /* instanceStorageInfo/totalSizeInGB; 0 EBS only */
} kite__aws_itype_t;

/* Appends a DescribeInstanceTypes answer's types to *v (n used, cap allocated); *next_token
 * gets nextToken (malloc'd) or NULL. KITE_EPROTO when x is not such an answer or a value is
 * not what the API description says (a type without a name, a count that is not a number). */
int kite__aws_xml_instance_types(const kite__aws_xml_t *x, kite__aws_itype_t **v, size_t *n,
                                 size_t *cap, char **next_token);

/* One entry of a DescribeSpotPriceHistory answer (spotPriceHistorySet/item). */
typedef struct kite__aws_spot {
  char type[64], zone[48], product[32];
  char timestamp[40]; /* ISO 8601 as EC2 writes it: compares as text */
  double price;       /* USD per hour, >= 0 */
} kite__aws_spot_t;

/* Appends a DescribeSpotPriceHistory answer's entries, like kite__aws_xml_instance_types. */
int kite__aws_xml_spot_prices(const kite__aws_xml_t *x, kite__aws_spot_t **v, size_t *n,
                              size_t *cap, char **next_token);

/* ---- pricing.c: the Price List (GetProducts, JSON 1.1) -------------------------------------- */

/* The GetProducts body for region's Linux, shared-tenancy, on-demand EC2 products; next is
 * the page's NextToken or NULL. malloc'd, or NULL when memory ran out. */
char *kite__aws_pricing_body(const char *region, const char *next);
/* Reads a GetProducts answer: calls price(type, usd_per_hour, data) for each product's
 * on-demand hourly price; *next gets NextToken (malloc'd) or NULL. KITE_EPROTO (with *msg,
 * malloc'd, saying what is wrong) when body is not the answer the API describes. */
int kite__aws_pricing_parse(const char *body, size_t len,
                            void (*price)(const char *type, double usd, void *data), void *data,
                            char **next, char **msg);
/* A JSON protocol error body ({"__type": "...#Code", "message": ...}): code and message,
 * malloc'd; false when body is not one. */
bool kite__aws_json_error(const char *body, size_t len, char **code, char **message);

/* ---- query.c: EC2 Query API requests -------------------------------------------------------- */

/* A form body under construction: "Action=…&Version=2016-11-15&…". */
typedef struct kite__aws_form {
  char *buf;
  size_t len, cap;
  int error; /* KITE_ENOMEM once an append failed */
} kite__aws_form_t;

void kite__aws_form_init(kite__aws_form_t *f, const char *action);
/* Appends name=value, percent-encoding both. */
void kite__aws_form_add(kite__aws_form_t *f, const char *name, const char *value);
/* Appends a name made with printf (name_fmt), e.g. "Filter.%u.Value.%u". */
void kite__aws_form_addf(kite__aws_form_t *f, const char *value, const char *name_fmt, ...)
    __attribute__((format(printf, 3, 4)));
void kite__aws_form_free(kite__aws_form_t *f);

/* The ClientToken for a pool's launch token: the same token always maps to the same
 * 64-character-at-most ASCII string. out must hold 48 bytes. */
void kite__aws_client_token(const char *launch_token, char out[48]);

/* ---- provider.c: requests, and what EC2's error codes mean ---------------------------------- */

struct kite_cloud_call;
struct kite_http_response;
typedef void (*kite__aws_http_cb)(struct kite_cloud_call *call, int status,
                                  const struct kite_http_response *resp);

/* Sends an EC2 form (consumed) for the call, signed; cb runs with the exchange. 0, or why it
 * could not be sent (then cb never runs and the call is still the caller's to answer). */
int kite__aws_ec2_send(struct kite_cloud_call *call, kite__aws_form_t *f, kite__aws_http_cb cb);
/* Reads an EC2 exchange: the document (*x, free it) when it is an answer; else false and the
 * call has ended with the error the exchange carries, release(call) (when not NULL) having run
 * just before. */
bool kite__aws_ec2_answer(struct kite_cloud_call *call, int status,
                          const struct kite_http_response *resp, kite__aws_xml_t **x,
                          void (*release)(struct kite_cloud_call *call));
/* Sends a Pricing (Price List) call: POST of a JSON 1.1 body with X-Amz-Target
 * "AWSPriceListService.<op>", signed for the service "pricing" in us-east-1. 0, or why it could
 * not be sent, as kite__aws_ec2_send. */
int kite__aws_pricing_send(struct kite_cloud_call *call, const char *op, const char *body,
                           kite__aws_http_cb cb);
/* Ends the call with a failed Pricing exchange (its JSON error read from the body). */
void kite__aws_pricing_fail(struct kite_cloud_call *call, int status,
                            const struct kite_http_response *resp);

/* ---- catalog.c ------------------------------------------------------------------------------ */

/* The catalog operation: types, spot prices and on-demand prices of cfg->region as offers. */
void kite__aws_catalog(struct kite_cloud_call *call);

/* The user message for an EC2 error code (what was wrong and what to do), or NULL when kite
 * has nothing to add to AWS's own message. *kite_code gets the kite error code. */
const char *kite__aws_error_advice(const char *code, int *kite_code);
/* Whether an error code is worth retrying the same call for (throttling, internal errors). */
bool kite__aws_error_transient(const char *code);

/* ---- probe.c: the on-node spot interruption notice ----------------------------------------- */

/* Parses what the probe command printed: the body of /latest/meta-data/spot/instance-action
 * and, on the last line, the HTTP status. Returns KITE_PREEMPT_NONE or KITE_PREEMPT_NOTICE
 * (then *deadline_ms is the instance-action's time in ms since the epoch). */
int kite__aws_probe_parse(const char *out, size_t len, int64_t *deadline_ms);
/* The probe command for a metadata endpoint ("http://169.254.169.254"). malloc'd. */
char *kite__aws_probe_command(const char *endpoint);
/* The metadata endpoint of a node: tmpl with every "{address}" replaced by address. */
char *kite__aws_imds_endpoint(const char *tmpl, const char *address);

#endif
