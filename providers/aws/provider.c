/* The AWS EC2 provider: instances through the EC2 Query API (signed with SigV4), on the cloud
 * skeleton (providers/cloud/cloud.h owns the lifecycle; this file is EC2's shapes).
 *
 * Design notes
 * - Configure: credentials as AWS's own tools find them (credentials.c; read once), the region
 *   (the pool's, the options', the environment's or profile's, us-east-1) and the endpoint
 *   ("endpoint" in the options, $KITE_AWS_ENDPOINT, https://ec2.REGION.amazonaws.com/). A site
 *   is one endpoint, region and account (a keyed hash of the access key id); the reach record
 *   names them, and the profile.
 * - Prepare (once per site): kite's key imported as a key pair ("kite-" + a hash of the key) and
 *   a security group that allows SSH, found by name or created, both tagged kite:managed; the
 *   group's id is the site's data.
 * - Create: RunInstances with the pool's launch token as ClientToken (a repeated create never
 *   makes a second instance), tagged kite:pool, Name and kite:rank, as spot through
 *   InstanceMarketOptions, with the cloud-init user data. A create that finds the key pair or
 *   the group gone (another kite process deleted it) prepares the site again.
 * - Describe: DescribeInstances; a spot instance EC2 took back has the state reason
 *   Server.SpotInstanceTermination. Destroy: TerminateInstances. List: DescribeInstances by the
 *   kite:pool tag in the live states, page by page (NextToken).
 * - Cleanup (at stop, for every site used): the key pair and the group are deleted when they
 *   carry kite:managed and no live instance uses them.
 * - Catalog (catalog.c): the region's instance types, spot prices and Price List prices; the
 *   Price List is another service (JSON 1.1, signed for "pricing" in us-east-1) at its own
 *   endpoint ("pricing_endpoint" in the options, $AWS_ENDPOINT_URL_PRICING, AWS's).
 * - Errors: EC2's <Error> code picks the advice (what to do) and the kite code; throttling and
 *   EC2's internal errors are tried again. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>

#include "../cloud/cloud.h"
#include "aws_impl.h"
#include "kite/aws.h"
#include "kite_impl.h"

#define NAME "aws"
#define TAG_POOL "kite:pool"
#define TAG_MANAGED "kite:managed"

static const char *const live_states[] = {"pending", "running", "shutting-down", "stopping",
                                          "stopped"};

struct kite_aws_provider {
  kite_cloud_t *cloud;
  kite_aws_provider_options_t o; /* its strings point into strs */
  char *strs[13];
  kite__aws_creds_t creds; /* once loaded */
  char *key_name;
};

/* A request's signing context and EC2 options. */
typedef struct api {
  char *endpoint, *host, *path;                /* the URL, its authority, its path (signed) */
  char *pricing, *pricing_host, *pricing_path; /* the Price List's */
  char *access_key, *secret_key, *session_token;
  char *subnet, *max_price, *imds;
} api_t;

static void api_free(void *p) {
  api_t *api = p;
  if (api == NULL)
    return;
  if (api->secret_key)
    memset(api->secret_key, 0, strlen(api->secret_key));
  char *v[] = {api->endpoint,      api->host,         api->path,       api->pricing,
               api->pricing_host,  api->pricing_path, api->access_key, api->secret_key,
               api->session_token, api->subnet,       api->max_price,  api->imds};
  for (size_t k = 0; k < KITE_ARRAY_SIZE(v); k++)
    free(v[k]);
  free(api);
}

static bool copy(char **dst, const char *src) {
  *dst = kite__strdup(src);
  return src == NULL || *dst != NULL;
}

static const char *jstr(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static char *b64(const void *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
  return out;
}

/* ---- configuration -------------------------------------------------------------------------- */

/* The account the access key id belongs to, as a public name (never the key itself). */
static void account_name(const char *access_key, char out[32]) {
  char fp[17];
  kite__fingerprint("aws-access-key-id", access_key ? access_key : "", fp);
  snprintf(out, 32, "akid-%s", fp);
}

/* Splits "scheme://authority/path" into host (the authority) and path. */
static int split_url(const char *url, char **host, char **path) {
  const char *p = strstr(url, "://");
  size_t hl = p ? strcspn(p + 3, "/?#") : 0;
  if (hl == 0)
    return KITE_EINVAL;
  p += 3;
  *host = strndup(p, hl);
  const char *rest = p + hl;
  *path = *rest == '/' ? strndup(rest, strcspn(rest, "?#")) : strdup("/");
  return *host && *path ? 0 : KITE_ENOMEM;
}

/* Splits an endpoint URL into host and path, refusing what is not an https:// URL (http://
 * only to loopback). */
static int check_endpoint(const char *what, const char *option, const char *url, char **host,
                          char **path, char **msg) {
  int rc = split_url(url, host, path);
  if (rc == KITE_EINVAL)
    *msg = kite__sprintf("the %s \"%s\" is not a URL; give one like https://host/ in %s", what, url,
                         option);
  if (rc == 0 && !kite_http_url_allowed(url)) {
    *msg = kite__sprintf("the %s \"%s\" must be https:// (plain http:// only for a loopback "
                         "emulator); fix %s",
                         what, url, option);
    rc = KITE_EINVAL;
  }
  return rc;
}

static int load_creds(kite_aws_provider_t *a, char **msg) {
  if (a->creds.access_key)
    return 0;
  kite__aws_creds_opts_t co = {.profile = a->o.profile};
  kite_runtime_t *rt = kite_cloud_runtime(a->cloud);
  int rc = kite__aws_creds_load(rt, &co, &a->creds, msg);
  if (rc != 0 && *msg == NULL)
    *msg = kite__sprintf("cannot load AWS credentials: %s", kite_strerror(rc));
  if (rc == 0)
    KITE_INFO(rt, NAME, "credentials from %s", a->creds.source);
  return rc;
}

/* Fills cfg for a region and an endpoint (NULL: the defaults), with the options o (or NULL)
 * and, for a launch, what it asks for. */
static int configure_at(kite_cloud_t *c, json_t *o, const char *region, const char *endpoint,
                        const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                        char **msg) {
  kite_aws_provider_t *a = kite_cloud_provider(c);
  int rc = load_creds(a, msg);
  if (rc != 0)
    return rc;
  region = kite_cloud_first(region, a->o.region, a->creds.region);
  region = region ? region : "us-east-1";
  api_t *api = calloc(1, sizeof(*api));
  if (api == NULL)
    return KITE_ENOMEM;
  cfg->api = api;
  api->endpoint = endpoint && *endpoint ? kite__strdup(endpoint)
                                        : kite__sprintf("https://ec2.%s.amazonaws.com/", region);
  if (api->endpoint == NULL)
    return KITE_ENOMEM;
  const char *pricing = kite_cloud_first(jstr(o, "pricing_endpoint"), a->o.pricing_endpoint,
                                         "https://api.pricing.us-east-1.amazonaws.com/");
  api->pricing = kite__strdup(pricing);
  if (api->pricing == NULL)
    return KITE_ENOMEM;
  rc = check_endpoint("EC2 endpoint", "endpoint", api->endpoint, &api->host, &api->path, msg);
  if (rc == 0)
    rc = check_endpoint("Price List endpoint", "pricing_endpoint", api->pricing, &api->pricing_host,
                        &api->pricing_path, msg);
  if (rc != 0)
    return rc;
  char account[32];
  account_name(a->creds.access_key, account);
  const char *profile = kite_cloud_first(a->o.profile, getenv("AWS_PROFILE"), NULL);
  json_t *port = json_object_get(o, "ssh_port"), *price = json_object_get(o, "max_price");
  api->max_price = json_is_number(price) ? kite__sprintf("%g", json_number_value(price))
                                         : kite__strdup(json_string_value(price));
  bool ok = (price == NULL || api->max_price) && copy(&api->access_key, a->creds.access_key) &&
            copy(&api->secret_key, a->creds.secret_key) &&
            copy(&api->session_token, a->creds.session_token) &&
            copy(&api->subnet, kite_cloud_first(jstr(o, "subnet_id"), a->o.subnet_id, NULL)) &&
            copy(&api->imds, kite_cloud_first(jstr(o, "imds_endpoint"), a->o.imds_endpoint, NULL));
  cfg->region = kite__strdup(region);
  cfg->site = kite__sprintf("%s %s %s", api->endpoint, region, account);
  cfg->reach = kite_cloud_reach_json(NAME, "account", account, "endpoint", api->endpoint, "profile",
                                     profile, "region", region, NULL);
  cfg->user = kite__strdup(kite_cloud_first(jstr(o, "ssh_user"), a->o.ssh_user, "ubuntu"));
  cfg->port = json_is_integer(port) ? (unsigned)json_integer_value(port)
              : a->o.ssh_port       ? a->o.ssh_port
                                    : 22;
  cfg->pin = true;
  if (launch) {
    cfg->type =
        kite__strdup(kite_cloud_first(launch->instance_type, a->o.instance_type, "t3.micro"));
    cfg->image = kite__strdup(kite_cloud_first(launch->image, a->o.image, NULL));
    ok = ok && cfg->type && cfg->image;
  }
  return ok && cfg->region && cfg->site && cfg->reach && cfg->user ? 0 : KITE_ENOMEM;
}

static int aws_configure(kite_cloud_t *c, const char *options,
                         const kite_ev_instance_launch_t *launch, kite_cloud_cfg_t *cfg,
                         char **msg) {
  kite_aws_provider_t *a = kite_cloud_provider(c);
  json_t *o = kite_cloud_options_json(kite_cloud_ops(c), options, msg);
  if (o == NULL)
    return KITE_ESPEC;
  int rc = 0;
  if (launch && kite_cloud_first(launch->image, a->o.image, NULL) == NULL) {
    *msg = kite__strdup("aws: no image: give the pool an AMI id (image: ami-…) of the region it "
                        "runs in");
    rc = KITE_ESPEC;
  }
  char *asked = cfg->region; /* a reach_resolve's */
  cfg->region = NULL;
  if (rc == 0)
    rc = configure_at(c, o, launch ? launch->region : asked,
                      kite_cloud_first(jstr(o, "endpoint"), a->o.endpoint, NULL), launch, cfg, msg);
  free(asked);
  json_decref(o);
  return rc;
}

/* Reaches what a record names: its region at its endpoint, with this process's credentials. */
static int aws_configure_reach(kite_cloud_t *c, const char *reach, kite_cloud_cfg_t *cfg,
                               bool *same_account, char **msg) {
  kite_aws_provider_t *a = kite_cloud_provider(c);
  json_error_t je;
  json_t *j = json_loads(reach, 0, &je);
  const char *region = jstr(j, "region"), *account = jstr(j, "account");
  /* The record's endpoint belongs to its region; without a region, this process's defaults. */
  int rc =
      configure_at(c, NULL, region, region ? jstr(j, "endpoint") : a->o.endpoint, NULL, cfg, msg);
  char mine[32];
  account_name(a->creds.access_key, mine);
  *same_account = rc == 0 && region && account && strcmp(account, mine) == 0;
  json_decref(j);
  return rc;
}

/* ---- requests and answers ------------------------------------------------------------------- */

/* Where a signed request goes and what it carries. */
typedef struct signed_req {
  const char *url, *host, *path; /* the endpoint, its authority and its path */
  const char *region, *service;  /* the credential scope */
  const char *content_type;
  const char *target; /* X-Amz-Target, or NULL */
  const char *body;
  size_t len;
} signed_req_t;

/* Sends r for the call, signed with SigV4; false when it could not be signed or sent (the call
 * is still to be answered). */
static int signed_send(kite_cloud_call_t *call, const signed_req_t *r, kite_cloud_http_cb cb) {
  const api_t *api = call->cfg->api;
  char date[17];
  kite__aws_amz_date((int64_t)(kite__wall_ms() / 1000), date);
  char *host = kite__sprintf("Host: %s", r->host);
  char *amz = kite__sprintf("X-Amz-Date: %s", date);
  char *ct = kite__sprintf("Content-Type: %s", r->content_type);
  char *tok =
      api->session_token ? kite__sprintf("X-Amz-Security-Token: %s", api->session_token) : NULL;
  char *target = r->target ? kite__sprintf("X-Amz-Target: %s", r->target) : NULL;
  const char *signed_h[5] = {host, amz, ct};
  size_t hn = 3;
  if (tok)
    signed_h[hn++] = tok;
  if (target)
    signed_h[hn++] = target;
  kite__aws_sig_req_t sr = {.method = "POST",
                            .path = r->path,
                            .headers = signed_h,
                            .header_n = hn,
                            .payload = r->body,
                            .payload_len = r->len,
                            .region = r->region,
                            .service = r->service,
                            .amz_date = date,
                            .access_key = api->access_key,
                            .secret_key = api->secret_key};
  kite__aws_sig_t sig = {0};
  bool made = host && amz && ct && (tok || !api->session_token) && (target || !r->target);
  int rc = made ? kite__aws_sign(&sr, &sig) : KITE_ENOMEM;
  char *auth = rc == 0 ? kite__sprintf("Authorization: %s", sig.authorization) : NULL;
  const char *hdrs[] = {host, amz, auth, tok ? tok : target, tok ? target : NULL, NULL};
  /* The signature is good for this request only, for five minutes, and the HTTP client never
   * logs headers: it is not registered as a secret. */
  kite_http_request_t q = {.method = "POST",
                           .url = r->url,
                           .headers = hdrs,
                           .body = r->body,
                           .body_len = r->len,
                           .content_type = r->content_type,
                           .idempotent = true};
  if (rc == 0)
    rc = auth ? kite_cloud_http(call, &q, cb) : KITE_ENOMEM;
  kite__aws_sig_free(&sig);
  free(host);
  free(amz);
  free(ct);
  free(tok);
  free(target);
  free(auth);
  return rc;
}

/* Sends the form (consumed) to the call's endpoint, signed; cb runs with the exchange. When it
 * cannot be sent, the call ends. */
/* Signs and sends the form for the call; the form stays the caller's. */
static int form_send(kite_cloud_call_t *call, const kite__aws_form_t *f, kite_cloud_http_cb cb) {
  const api_t *api = call->cfg->api;
  signed_req_t r = {.url = api->endpoint,
                    .host = api->host,
                    .path = api->path,
                    .region = call->cfg->region,
                    .service = "ec2",
                    .content_type = "application/x-www-form-urlencoded; charset=utf-8",
                    .body = f->buf,
                    .len = f->len};
  return f->error ? f->error : signed_send(call, &r, cb);
}

int kite__aws_ec2_send(kite_cloud_call_t *call, kite__aws_form_t *f, kite__aws_http_cb cb) {
  int rc = form_send(call, f, cb);
  kite__aws_form_free(f);
  return rc;
}

/* Sends the form (consumed) to the call's endpoint, signed; cb runs with the exchange. When it
 * cannot be sent, the call ends. */
static void ec2_send(kite_cloud_call_t *call, kite__aws_form_t *f, kite_cloud_http_cb cb) {
  int rc = form_send(call, f, cb);
  if (f->buf)
    memset(f->buf, 0, f->len); /* user data carries a host key */
  kite__aws_form_free(f);
  if (rc != 0)
    kite_cloud_answer_fail(call, rc, "the EC2 request could not be signed or sent");
}

int kite__aws_pricing_send(kite_cloud_call_t *call, const char *op, const char *body,
                           kite__aws_http_cb cb) {
  const api_t *api = call->cfg->api;
  char *target = kite__sprintf("AWSPriceListService.%s", op);
  /* The Price List lives in us-east-1 whatever region it prices. */
  signed_req_t r = {.url = api->pricing,
                    .host = api->pricing_host,
                    .path = api->pricing_path,
                    .region = "us-east-1",
                    .service = "pricing",
                    .content_type = "application/x-amz-json-1.1",
                    .target = target,
                    .body = body,
                    .len = body ? strlen(body) : 0};
  int rc = target && body ? signed_send(call, &r, cb) : KITE_ENOMEM;
  free(target);
  return rc;
}

void kite__aws_pricing_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  char *code = NULL, *message = NULL;
  kite__aws_json_error(resp->body, resp->body_len, &code, &message);
  if (code && kite__aws_error_transient(code)) {
    kite_cloud_answer_t a = {.outcome = KITE_CLOUD_RETRY,
                             .code = KITE_EAGAIN,
                             .api_code = code,
                             .message = message,
                             .http_status = resp->status};
    kite_cloud_answer(call, &a);
  } else {
    kite_cloud_answer_http(call, status, resp, code,
                           code || status ? message
                                          : "the answer is not the JSON the Price List sends");
  }
  free(code);
  free(message);
}

/* An exchange as read: the document of an answer, or EC2's error. */
typedef struct reply {
  kite__aws_xml_t *x;
  char *code, *message;
} reply_t;

/* Reads an exchange; true when it is an answer (r->x). */
static bool ec2_read(int status, const kite_http_response_t *resp, reply_t *r) {
  memset(r, 0, sizeof(*r));
  kite__aws_xml_t *x = NULL;
  if (status == KITE_ECANCELED || resp->body_len == 0 ||
      kite__aws_xml_parse(resp->body, resp->body_len, &x) != 0)
    return false;
  if (kite__aws_xml_error(x, &r->code, &r->message, NULL) || status != 0) {
    kite__aws_xml_free(x);
    return false;
  }
  r->x = x;
  return true;
}

static void reply_free(reply_t *r) {
  kite__aws_xml_free(r->x);
  free(r->code);
  free(r->message);
}

static bool is(const reply_t *r, const char *code) {
  return r->code && strcmp(r->code, code) == 0;
}

/* Ends call with a failed exchange (r read from it, and freed here). */
static void ec2_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *resp,
                     reply_t *r) {
  kite_cloud_answer_t a = {.api_code = r->code, .message = r->message, .http_status = resp->status};
  bool key_or_group = is(r, "InvalidKeyPair.NotFound") || is(r, "InvalidGroup.NotFound");
  if (key_or_group || is(r, "InvalidInstanceID.NotFound")) {
    a.outcome = KITE_CLOUD_NOT_FOUND;
    a.prepare_again = key_or_group && call->kind == KITE_CLOUD_CALL_CREATE;
    kite_cloud_answer(call, &a);
  } else if (r->code && kite__aws_error_transient(r->code)) {
    a.outcome = KITE_CLOUD_RETRY;
    a.code = KITE_EAGAIN;
    kite_cloud_answer(call, &a);
  } else {
    kite_cloud_answer_http(call, status, resp, r->code,
                           r->code || status ? r->message : "the answer is not the XML EC2 sends");
  }
  reply_free(r);
}

/* Reads an exchange's instances; false when it is not an answer (the call has ended). */
static bool ec2_instances(kite_cloud_call_t *call, int status, const kite_http_response_t *resp,
                          kite__aws_instance_t **v, size_t *n, char **next) {
  reply_t r;
  if (!ec2_read(status, resp, &r)) {
    ec2_fail(call, status, resp, &r);
    return false;
  }
  int rc = kite__aws_xml_instances(r.x, v, n, next);
  reply_free(&r);
  if (rc != 0)
    kite_cloud_answer_http(call, 0, resp, NULL, "the answer is not the XML EC2 sends");
  return rc == 0;
}

bool kite__aws_ec2_answer(kite_cloud_call_t *call, int status, const kite_http_response_t *resp,
                          kite__aws_xml_t **x, void (*release)(kite_cloud_call_t *call)) {
  reply_t r;
  *x = NULL;
  if (!ec2_read(status, resp, &r)) {
    if (release)
      release(call);
    ec2_fail(call, status, resp, &r);
    return false;
  }
  *x = r.x;
  r.x = NULL;
  reply_free(&r);
  return true;
}

static void on_ok(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  reply_t r;
  if (!ec2_read(status, resp, &r)) {
    ec2_fail(call, status, resp, &r);
    return;
  }
  reply_free(&r);
  kite_cloud_answer_ok(call);
}

static void add_tag(kite__aws_form_t *f, unsigned n, const char *key, const char *value) {
  kite__aws_form_addf(f, key, "TagSpecification.1.Tag.%u.Key", n);
  kite__aws_form_addf(f, value, "TagSpecification.1.Tag.%u.Value", n);
}

static void add_filter(kite__aws_form_t *f, unsigned n, const char *name, const char *value) {
  kite__aws_form_addf(f, name, "Filter.%u.Name", n);
  kite__aws_form_addf(f, value, "Filter.%u.Value.1", n);
}

static void add_live(kite__aws_form_t *f, unsigned n) {
  kite__aws_form_addf(f, "instance-state-name", "Filter.%u.Name", n);
  for (unsigned k = 0; k < KITE_ARRAY_SIZE(live_states); k++)
    kite__aws_form_addf(f, live_states[k], "Filter.%u.Value.%u", n, k + 1);
}

/* ---- the account: key pair and security group (prepare, cleanup) ---------------------------- */

typedef enum step {
  /* prepare */
  FIND_KEY,
  IMPORT_KEY,
  FIND_GROUP,
  CREATE_GROUP,
  REFIND_GROUP, /* after CreateSecurityGroup said it exists */
  OPEN_SSH,
  /* cleanup */
  C_FIND_KEY,
  KEY_USERS,
  DELETE_KEY,
  C_FIND_GROUP,
  GROUP_USERS,
  DELETE_GROUP,
  DONE,
} step_t;

static const char *key_name(kite_aws_provider_t *a) {
  const char *pub = kite_cloud_pubkey(a->cloud);
  if (a->key_name == NULL && a->o.key_name) {
    a->key_name = kite__strdup(a->o.key_name);
  } else if (a->key_name == NULL && pub) {
    char h[65];
    kite__aws_sha256_hex(pub, strlen(pub), h);
    a->key_name = kite__sprintf("kite-%.16s", h);
  }
  return a->key_name;
}

static bool has_managed_tag(const kite__aws_xml_t *x, const char *set) {
  /* {set}/item/tagSet/item[key=kite:managed]: only the first item is looked at. */
  const char *const p[] = {set, "item", "tagSet", "item", "key"};
  char *k = kite__aws_xml_text(x, p, 5);
  bool yes = k && strcmp(k, TAG_MANAGED) == 0;
  free(k);
  return yes;
}

static char *group_id(const kite__aws_xml_t *x, bool created) {
  const char *const listed[] = {"securityGroupInfo", "item", "groupId"};
  const char *const made[] = {"groupId"};
  char *id = created ? kite__aws_xml_text(x, made, 1) : kite__aws_xml_text(x, listed, 3);
  if (id && *id == '\0') {
    free(id);
    id = NULL;
  }
  return id;
}

/* Sends the call's step (prepare's or cleanup's). */
static void account_send(kite_cloud_call_t *call, kite_cloud_http_cb cb) {
  kite_aws_provider_t *a = kite_cloud_provider(call->cloud);
  const char *key = key_name(a), *sg = *call->site_data;
  const char *group = a->o.security_group ? a->o.security_group : "kite-ssh";
  kite__aws_form_t f;
  switch (call->step) {
  case FIND_KEY:
  case C_FIND_KEY:
    kite__aws_form_init(&f, "DescribeKeyPairs");
    kite__aws_form_add(&f, "KeyName.1", key);
    break;
  case IMPORT_KEY: {
    const char *pub = kite_cloud_pubkey(call->cloud);
    char *material = b64(pub, strlen(pub));
    kite__aws_form_init(&f, "ImportKeyPair");
    kite__aws_form_add(&f, "KeyName", key);
    kite__aws_form_add(&f, "PublicKeyMaterial", material);
    kite__aws_form_add(&f, "TagSpecification.1.ResourceType", "key-pair");
    add_tag(&f, 1, TAG_MANAGED, "true");
    f.error = material ? f.error : KITE_ENOMEM;
    free(material);
    break;
  }
  case FIND_GROUP:
  case REFIND_GROUP:
  case C_FIND_GROUP:
    kite__aws_form_init(&f, "DescribeSecurityGroups");
    add_filter(&f, 1, "group-name", group);
    break;
  case CREATE_GROUP:
    kite__aws_form_init(&f, "CreateSecurityGroup");
    kite__aws_form_add(&f, "GroupName", group);
    kite__aws_form_add(&f, "GroupDescription", "SSH to kite nodes (created by kite)");
    kite__aws_form_add(&f, "TagSpecification.1.ResourceType", "security-group");
    add_tag(&f, 1, TAG_MANAGED, "true");
    break;
  case OPEN_SSH:
    kite__aws_form_init(&f, "AuthorizeSecurityGroupIngress");
    kite__aws_form_add(&f, "GroupId", sg);
    kite__aws_form_add(&f, "IpPermissions.1.IpProtocol", "tcp");
    kite__aws_form_add(&f, "IpPermissions.1.FromPort", "22");
    kite__aws_form_add(&f, "IpPermissions.1.ToPort", "22");
    kite__aws_form_add(&f, "IpPermissions.1.IpRanges.1.CidrIp",
                       a->o.ssh_cidr ? a->o.ssh_cidr : "0.0.0.0/0");
    kite__aws_form_add(&f, "IpPermissions.1.IpRanges.1.Description", "SSH for kite");
    break;
  case KEY_USERS:
  case GROUP_USERS:
    kite__aws_form_init(&f, "DescribeInstances");
    add_filter(&f, 1, call->step == KEY_USERS ? "key-name" : "instance.group-id",
               call->step == KEY_USERS ? key : sg);
    add_live(&f, 2);
    break;
  case DELETE_KEY:
    kite__aws_form_init(&f, "DeleteKeyPair");
    kite__aws_form_add(&f, "KeyName", key);
    break;
  case DELETE_GROUP:
    kite__aws_form_init(&f, "DeleteSecurityGroup");
    kite__aws_form_add(&f, "GroupId", sg);
    break;
  default:
    kite_cloud_answer_fail(call, KITE_EINTERNAL, "internal error in the aws provider's setup");
    return;
  }
  ec2_send(call, &f, cb);
}

static void set_group(kite_cloud_call_t *call, char *id) {
  free(*call->site_data);
  *call->site_data = id;
}

static void on_prepare(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  reply_t r;
  bool ok = ec2_read(status, resp, &r);
  step_t step = call->step, next = DONE;
  char *id = NULL;
  switch (step) {
  case FIND_KEY:
    next = ok ? FIND_GROUP : IMPORT_KEY;
    ok = ok || is(&r, "InvalidKeyPair.NotFound");
    break;
  case IMPORT_KEY:
    next = FIND_GROUP;
    ok = ok || is(&r, "InvalidKeyPair.Duplicate");
    break;
  case FIND_GROUP:
  case REFIND_GROUP:
  case CREATE_GROUP:
    id = ok ? group_id(r.x, step == CREATE_GROUP) : NULL;
    if (id) {
      set_group(call, id);
      next = step == CREATE_GROUP ? OPEN_SSH : DONE;
    } else if (ok && step != FIND_GROUP) {
      reply_free(&r);
      kite_cloud_answer_http(call, 0, resp, NULL,
                             step == CREATE_GROUP
                                 ? "EC2 CreateSecurityGroup answered without a groupId"
                                 : "EC2 says the security group exists but does not list it");
      return;
    } else if (ok) {
      next = CREATE_GROUP;
    } else if (step == CREATE_GROUP && is(&r, "InvalidGroup.Duplicate")) {
      next = REFIND_GROUP; /* a repeated create whose first attempt worked */
      ok = true;
    }
    break;
  case OPEN_SSH:
    ok = ok || is(&r, "InvalidPermission.Duplicate");
    break;
  default:
    ok = false;
  }
  if (!ok) {
    ec2_fail(call, status, resp, &r);
    return;
  }
  reply_free(&r);
  if (next == DONE) {
    kite_cloud_answer_ok(call);
    return;
  }
  call->step = next;
  account_send(call, on_prepare);
}

static void aws_prepare(kite_cloud_call_t *call) {
  if (key_name(kite_cloud_provider(call->cloud)) == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->step = FIND_KEY;
  account_send(call, on_prepare);
}

static void on_cleanup(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  kite_aws_provider_t *a = kite_cloud_provider(call->cloud);
  kite_runtime_t *rt = kite_cloud_runtime(call->cloud);
  reply_t r;
  bool ok = ec2_read(status, resp, &r);
  step_t step = call->step, next = DONE;
  bool key = step <= DELETE_KEY;
  const char *what = key ? "key pair" : "security group";
  const char *which = key ? a->key_name : *call->site_data; /* not logged once replaced */
  const char *const users[] = {"reservationSet"};
  switch (step) {
  case C_FIND_KEY:
    next = ok && has_managed_tag(r.x, "keySet") ? KEY_USERS : C_FIND_GROUP;
    break;
  case C_FIND_GROUP:
    set_group(call, ok && has_managed_tag(r.x, "securityGroupInfo") ? group_id(r.x, false) : NULL);
    next = *call->site_data ? GROUP_USERS : DONE;
    break;
  case KEY_USERS:
  case GROUP_USERS:
    next = step + 1;
    if (!ok || kite__aws_xml_count(r.x, users, 1)) {
      KITE_INFO(rt, NAME, "%s %s is still used; kept", what, which);
      next = key ? C_FIND_GROUP : DONE;
    }
    break;
  case DELETE_KEY:
  case DELETE_GROUP:
    if (ok)
      KITE_INFO(rt, NAME, "deleted the %s kite created (%s)", what, which);
    else
      KITE_WARN(rt, NAME,
                "could not delete the %s %s (%s: %s); kite deletes it on a later run when "
                "nothing uses it",
                what, which, r.code ? r.code : "error",
                r.message ? r.message : kite_strerror(status));
    next = key ? C_FIND_GROUP : DONE;
    break;
  default:
    break;
  }
  reply_free(&r);
  if (status == KITE_ECANCELED || next == DONE) {
    kite_cloud_answer_ok(call);
    return;
  }
  call->step = next;
  account_send(call, on_cleanup);
}

static void aws_cleanup(kite_cloud_call_t *call) {
  call->step = key_name(kite_cloud_provider(call->cloud)) ? C_FIND_KEY : C_FIND_GROUP;
  account_send(call, on_cleanup);
}

static void free_site_data(void *data) {
  free(data);
}

/* ---- instances ------------------------------------------------------------------------------ */

static void on_run(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  if (!ec2_instances(call, status, resp, &v, &n, NULL))
    return;
  if (n)
    kite_cloud_created(call, 0, v[0].id);
  kite__aws_instances_free(v, n);
  if (n)
    kite_cloud_answer_ok(call);
  else
    kite_cloud_answer_http(call, 0, resp, NULL, "EC2 RunInstances answered without an instance");
}

static void aws_create(kite_cloud_call_t *call) {
  kite_aws_provider_t *a = kite_cloud_provider(call->cloud);
  const kite_cloud_cfg_t *cfg = call->cfg;
  const api_t *api = cfg->api;
  const kite_cloud_launch_t *l = call->launches[0];
  char token[48], rank[16];
  kite__aws_client_token(l->token ? l->token : l->name, token);
  snprintf(rank, sizeof(rank), "%u", l->rank);
  kite__aws_form_t f;
  kite__aws_form_init(&f, "RunInstances");
  kite__aws_form_add(&f, "ImageId", cfg->image);
  kite__aws_form_add(&f, "InstanceType", cfg->type);
  kite__aws_form_add(&f, "MinCount", "1");
  kite__aws_form_add(&f, "MaxCount", "1");
  kite__aws_form_add(&f, "ClientToken", token);
  kite__aws_form_add(&f, "KeyName", key_name(a));
  kite__aws_form_add(&f, "SecurityGroupId.1", *call->site_data);
  if (api->subnet)
    kite__aws_form_add(&f, "SubnetId", api->subnet);
  if (cfg->zone && *cfg->zone)
    kite__aws_form_add(&f, "Placement.AvailabilityZone", cfg->zone);
  if (l->user_data && *l->user_data) {
    char *ud = b64(l->user_data, strlen(l->user_data));
    if (ud)
      kite_secret_add(kite_cloud_runtime(call->cloud), ud);
    kite__aws_form_add(&f, "UserData", ud);
    f.error = ud ? f.error : KITE_ENOMEM;
    free(ud);
  }
  kite__aws_form_add(&f, "InstanceInitiatedShutdownBehavior", "terminate");
  kite__aws_form_add(&f, "TagSpecification.1.ResourceType", "instance");
  add_tag(&f, 1, TAG_POOL, l->tag);
  add_tag(&f, 2, "Name", l->name);
  add_tag(&f, 3, "kite:rank", rank);
  if (l->spot) {
    kite__aws_form_add(&f, "InstanceMarketOptions.MarketType", "spot");
    kite__aws_form_add(&f, "InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time");
    kite__aws_form_add(&f, "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
                       "terminate");
    if (api->max_price)
      kite__aws_form_add(&f, "InstanceMarketOptions.SpotOptions.MaxPrice", api->max_price);
  }
  ec2_send(call, &f, on_run);
}

static kite_cloud_state_t state_of(const char *s) {
  return s == NULL                         ? KITE_CLOUD_PENDING
         : strcmp(s, "running") == 0       ? KITE_CLOUD_RUNNING
         : strcmp(s, "stopped") == 0       ? KITE_CLOUD_STOPPED
         : strcmp(s, "stopping") == 0      ? KITE_CLOUD_STOPPING
         : strcmp(s, "shutting-down") == 0 ? KITE_CLOUD_STOPPING
         : strcmp(s, "terminated") == 0    ? KITE_CLOUD_GONE
                                           : KITE_CLOUD_PENDING;
}

static void on_described(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  if (!ec2_instances(call, status, resp, &v, &n, NULL))
    return;
  kite_cloud_answer_t a = {.outcome = n ? KITE_CLOUD_OK : KITE_CLOUD_NOT_FOUND};
  if (n) {
    a.instance.state = state_of(v[0].state);
    a.instance.address = v[0].public_ip ? v[0].public_ip : v[0].private_ip;
    a.instance.preempted =
        v[0].reason_code && strcmp(v[0].reason_code, "Server.SpotInstanceTermination") == 0;
  }
  kite_cloud_answer(call, &a);
  kite__aws_instances_free(v, n);
}

static void aws_describe(kite_cloud_call_t *call) {
  kite__aws_form_t f;
  kite__aws_form_init(&f, "DescribeInstances");
  kite__aws_form_add(&f, "InstanceId.1", call->id);
  ec2_send(call, &f, on_described);
}

static void aws_destroy(kite_cloud_call_t *call) {
  kite__aws_form_t f;
  kite__aws_form_init(&f, "TerminateInstances");
  kite__aws_form_add(&f, "InstanceId.1", call->id);
  ec2_send(call, &f, on_ok);
}

static void on_listed(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  char *next = NULL;
  if (!ec2_instances(call, status, resp, &v, &n, &next))
    return;
  for (size_t k = 0; k < n; k++) {
    const char *pool = NULL;
    for (size_t t = 0; t < v[k].tag_n; t++)
      if (strcmp(v[k].tags[t].key, TAG_POOL) == 0)
        pool = v[k].tags[t].value;
    kite_cloud_listed(call, v[k].id, pool);
  }
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK, .next = next};
  kite_cloud_answer(call, &a);
  free(next);
  kite__aws_instances_free(v, n);
}

static void aws_list_page(kite_cloud_call_t *call) {
  kite_aws_provider_t *a = kite_cloud_provider(call->cloud);
  char max[16];
  snprintf(max, sizeof(max), "%u", a->o.page_size ? a->o.page_size : 1000);
  kite__aws_form_t f;
  kite__aws_form_init(&f, "DescribeInstances");
  if (strcmp(call->tag, "*") == 0)
    add_filter(&f, 1, "tag-key", TAG_POOL);
  else
    add_filter(&f, 1, "tag:" TAG_POOL, call->tag);
  add_live(&f, 2);
  kite__aws_form_add(&f, "MaxResults", max);
  if (call->cursor)
    kite__aws_form_add(&f, "NextToken", call->cursor);
  ec2_send(call, &f, on_listed);
}

/* The spot interruption notice, read on the node from the metadata service (probe.c). */
static char *aws_probe(kite_cloud_t *c, const kite_cloud_cfg_t *cfg, const char *id,
                       const char *address) {
  const api_t *api = cfg->api;
  char *ep = address ? kite__aws_imds_endpoint(api->imds, address) : NULL;
  char *cmd = ep ? kite__aws_probe_command(ep) : NULL;
  free(ep);
  return cmd;
}

/* ---- what EC2's error codes mean ------------------------------------------------------------ */

static const kite_cloud_advice_t aws_advice[] = {
    {"AuthFailure", 0, NULL, KITE_ECREDENTIALS,
     "AWS did not accept the credentials: check the access key id and the secret key (a "
     "wrong secret is refused like this), that the key is active in IAM, and that the "
     "computer's clock is right (signatures expire after 5 minutes)"},
    {"SignatureDoesNotMatch", 0, NULL, KITE_ECREDENTIALS,
     "the request signature did not match: the secret access key is wrong for this access "
     "key id"},
    {"InvalidClientTokenId", 0, NULL, KITE_ECREDENTIALS,
     "AWS does not know this access key id: check AWS_ACCESS_KEY_ID or the profile's "
     "aws_access_key_id"},
    {"AuthFailure.ServiceLinkedRoleCreationNotPermitted", 0, NULL, KITE_ECREDENTIALS,
     "the IAM user may not create the EC2 Spot service-linked role: create it once with "
     "`aws iam create-service-linked-role --aws-service-name spot.amazonaws.com` or grant "
     "iam:CreateServiceLinkedRole"},
    {"RequestExpired", 0, NULL, KITE_ECREDENTIALS,
     "AWS says the request expired: the computer's clock is off by more than 5 minutes"},
    {"UnauthorizedOperation", 0, NULL, KITE_ECREDENTIALS,
     "the IAM user or role may not do this: grant it the EC2 permissions listed in the "
     "README (ec2:RunInstances, ec2:DescribeInstances, ec2:TerminateInstances, ec2:CreateTags, "
     "ec2:ImportKeyPair, ec2:DescribeKeyPairs, ec2:CreateSecurityGroup, …)"},
    {"OptInRequired", 0, NULL, KITE_ECREDENTIALS,
     "the account is not subscribed to EC2 (or to this AMI's marketplace product)"},
    {"InsufficientInstanceCapacity", 0, NULL, KITE_ECAPACITY,
     "AWS has no capacity for this instance type in this availability zone right now: try "
     "another instance type or region, or try again later"},
    {"InsufficientCapacity", 0, NULL, KITE_ECAPACITY,
     "AWS has no capacity for this request right now: try again later or elsewhere"},
    {"InstanceLimitExceeded", 0, NULL, KITE_EQUOTA,
     "the account's instance limit for this type and region is reached: terminate instances "
     "or ask AWS for a higher limit (Service Quotas, 'Running On-Demand instances')"},
    {"VcpuLimitExceeded", 0, NULL, KITE_EQUOTA,
     "the account's vCPU limit for this instance family and region is reached: ask AWS for "
     "a higher limit in Service Quotas"},
    {"MaxSpotInstanceCountExceeded", 0, NULL, KITE_EQUOTA,
     "the account's spot instance limit is reached: ask AWS for a higher 'All Standard Spot "
     "Instance Requests' quota, or use on-demand instances (spot: false)"},
    {"SpotMaxPriceTooLow", 0, NULL, KITE_EPRICE,
     "the spot price is above the maximum price set in provider_options.max_price: raise it "
     "or leave it out (then the on-demand price is the maximum)"},
    {"InvalidAMIID.NotFound", 0, NULL, KITE_EPROVIDER,
     "the image (AMI) does not exist in this region: AMI ids are per region; look the image "
     "up in the region the pool uses"},
    {"InvalidAMIID.Malformed", 0, NULL, KITE_EPROVIDER,
     "the image is not an AMI id: give one like ami-0123456789abcdef0"},
    {"InvalidInstanceType", 0, NULL, KITE_EPROVIDER,
     "this instance type does not exist or is not offered here"},
    {"Unsupported", 0, NULL, KITE_EUNAVAILABLE,
     "AWS does not support this request here (often an instance type not offered in this "
     "availability zone, or not as spot)"},
    {"InvalidParameterValue", 0, NULL, KITE_EPROVIDER, NULL},
    {"InvalidParameterCombination", 0, NULL, KITE_EPROVIDER, NULL},
    {"MissingParameter", 0, NULL, KITE_EPROVIDER, NULL},
    {"IdempotentParameterMismatch", 0, NULL, KITE_EPROVIDER,
     "a launch with this client token was made before with other parameters"},
    /* The Price List (JSON protocol: the code is __type's name). */
    {"AccessDeniedException", 0, NULL, KITE_ECREDENTIALS,
     "the IAM user or role may not read the Price List: grant it pricing:GetProducts"},
    {"UnrecognizedClientException", 0, NULL, KITE_ECREDENTIALS,
     "AWS does not know this access key id: check AWS_ACCESS_KEY_ID or the profile's "
     "aws_access_key_id"},
    {"InvalidSignatureException", 0, NULL, KITE_ECREDENTIALS,
     "the Price List did not accept the request signature: the secret access key is wrong for "
     "this access key id, or the computer's clock is off by more than 5 minutes"},
    {"MissingAuthenticationTokenException", 0, NULL, KITE_ECREDENTIALS,
     "the Price List request carried no signature"},
    {"InvalidParameterException", 0, NULL, KITE_EPROVIDER, NULL},
    {"ThrottlingException", 0, NULL, KITE_EAGAIN, "AWS is throttling this account's API calls"},
    {"InternalErrorException", 0, NULL, KITE_EAGAIN, "the Price List had an internal error"},
    {"RequestLimitExceeded", 0, NULL, KITE_EAGAIN, "AWS is throttling this account's API calls"},
    {"Throttling", 0, NULL, KITE_EAGAIN, "AWS is throttling this account's API calls"},
    {"InternalError", 0, NULL, KITE_EAGAIN, "AWS had an internal error"},
    {"ServiceUnavailable", 0, NULL, KITE_EAGAIN, "the EC2 API is unavailable right now"},
    {"Unavailable", 0, NULL, KITE_EAGAIN, "the EC2 API is unavailable right now"},
};

const char *kite__aws_error_advice(const char *code, int *kite_code) {
  for (size_t i = 0; code && i < KITE_ARRAY_SIZE(aws_advice); i++)
    if (strcmp(aws_advice[i].api_code, code) == 0) {
      if (kite_code)
        *kite_code = aws_advice[i].code;
      return aws_advice[i].what_to_do;
    }
  if (kite_code)
    *kite_code = KITE_EPROVIDER;
  return NULL;
}

bool kite__aws_error_transient(const char *code) {
  int k = 0;
  kite__aws_error_advice(code, &k);
  return k == KITE_EAGAIN;
}

/* ---- the table ------------------------------------------------------------------------------ */

static const kite_cloud_ops_t aws_ops = {
    .name = NAME,
    .title = "AWS EC2",
    .noun = "instance",
    .batch_max = 1, /* a ClientToken per RunInstances: one launch each */
    .spot = true,
    .create_token = true,
    .endpoint_hint = "endpoint in the provider options or KITE_AWS_ENDPOINT",
    .configure = aws_configure,
    .configure_reach = aws_configure_reach,
    .free_api = api_free,
    .prepare = aws_prepare,
    .create = aws_create,
    .describe = aws_describe,
    .destroy = aws_destroy,
    .list_page = aws_list_page,
    .cleanup = aws_cleanup,
    .free_site_data = free_site_data,
    .catalog = kite__aws_catalog,
    .probe = aws_probe,
    .probe_parse = kite__aws_probe_parse,
    .advice = aws_advice,
    .n_advice = KITE_ARRAY_SIZE(aws_advice),
};

static void free_provider(kite_aws_provider_t *a) {
  for (size_t k = 0; k < KITE_ARRAY_SIZE(a->strs); k++)
    free(a->strs[k]);
  kite__aws_creds_free(&a->creds);
  free(a->key_name);
  free(a);
}

/* The skeleton frees the provider's state when it stops: see kite_cloud_new. */
static void on_cloud_freed(void *provider) {
  free_provider(provider);
}

int kite_aws_provider_new(kite_runtime_t *rt, const kite_aws_provider_options_t *opts,
                          kite_aws_provider_t **out) {
  if (rt == NULL)
    return KITE_EINVAL;
  kite_aws_provider_t *a = calloc(1, sizeof(*a));
  if (a == NULL)
    return KITE_ENOMEM;
  if (opts)
    a->o = *opts;
  kite_aws_provider_options_t *o = &a->o;
  o->endpoint = kite_cloud_first(o->endpoint, getenv("KITE_AWS_ENDPOINT"), NULL);
  /* AWS's own tools take a service's endpoint from AWS_ENDPOINT_URL_<SERVICE>. */
  o->pricing_endpoint =
      kite_cloud_first(o->pricing_endpoint, getenv("AWS_ENDPOINT_URL_PRICING"), NULL);
  o->imds_endpoint = kite_cloud_first(o->imds_endpoint, getenv("KITE_AWS_IMDS_ENDPOINT"),
                                      "http://169.254.169.254");
  /* Own copies of every string option. */
  const char **s[] = {&o->profile,         &o->region,         &o->endpoint, &o->ca_file,
                      &o->image,           &o->instance_type,  &o->ssh_user, &o->subnet_id,
                      &o->key_name,        &o->security_group, &o->ssh_cidr, &o->imds_endpoint,
                      &o->pricing_endpoint};
  bool ok = true;
  for (size_t k = 0; k < KITE_ARRAY_SIZE(s); k++) {
    ok = copy(&a->strs[k], *s[k]) && ok;
    *s[k] = a->strs[k];
  }
  kite_cloud_options_t co = {.ca_file = o->ca_file,
                             .max_retries = o->max_retries,
                             .backoff_base_ms = o->backoff_base_ms,
                             .http_timeout_ms = o->http_timeout_ms,
                             .poll_ms = o->poll_ms,
                             .running_timeout_ms = o->running_timeout_ms,
                             .gone_timeout_ms = o->terminate_timeout_ms,
                             .keep_resources = o->keep_resources,
                             .free_provider = on_cloud_freed};
  int rc = ok ? kite_cloud_new(rt, &aws_ops, &co, a, &a->cloud) : KITE_ENOMEM;
  if (rc != 0) {
    free_provider(a);
    return rc;
  }
  if (out)
    *out = a;
  return 0;
}

int kite_aws_provider_probe(kite_aws_provider_t *a, const char *instance_id, char **command) {
  return kite_cloud_probe(a->cloud, instance_id, command);
}

int kite_aws_probe_parse(const char *output, size_t len, int64_t *deadline_ms) {
  return kite__aws_probe_parse(output, len, deadline_ms);
}
