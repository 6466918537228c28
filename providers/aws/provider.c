/* The AWS EC2 provider: instances through the EC2 Query API (signed with SigV4), on the shared
 * HTTP client.
 *
 * Answers, for the name "aws": instance_launch, instance_terminate, instance_describe,
 * instance_list and preempt_check (provider.h).
 *
 * A launch: (once per endpoint and region) kite's SSH key is imported as a key pair and a
 * security group that allows SSH is found or created; then a host key is generated for the
 * instance and passed in cloud-init user data, RunInstances is called with the pool's launch
 * token as ClientToken (a retried call, or a retried launch, never makes a second instance),
 * the pool's tag and, for spot, InstanceMarketOptions; DescribeInstances is polled until the
 * instance runs and has an address; the reply pins the host key.
 *
 * A termination is confirmed only when DescribeInstances says "terminated" (or no longer knows
 * the instance). Preemption: an instance that AWS took back shows the state reason
 * Server.SpotInstanceTermination, and preempt_check answers GONE; the two-minute notice on the
 * node is read by the probe of kite_aws_provider_probe() (probe.c).
 *
 * Calls that fail transiently (throttling, 5xx after the HTTP client's own retries, a body
 * that does not parse) are sent again, re-signed, after a short wait: every call kite makes is
 * safe to repeat (ClientToken, or a duplicate that is recognised).
 *
 * At stop, instances still held are terminated and confirmed, and the key pair and security
 * group are deleted when kite created them (tag kite:managed) and no instance uses them. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "aws_impl.h"
#include "kite/http.h"
#include "kite/local.h"
#include "kite/provider.h"
#include "kite_impl.h"

#define PROVIDER_NAME "aws"
#define COMP "aws"
#define TAG_POOL "kite:pool"
#define TAG_MANAGED "kite:managed"
#define CALL_ATTEMPTS 6
#define TICK_MS 100
#define LIVE_STATES "pending", "running", "shutting-down", "stopping", "stopped"

typedef struct kite_aws_provider aws_t;
typedef struct region region_t;
typedef struct inst inst_t;
typedef struct call call_t;

typedef void (*call_cb)(call_t *c, int status, kite__aws_xml_t *x, const char *code,
                        const char *message);

struct call {
  aws_t *aws;
  region_t *reg;
  char *action;
  char *body;
  call_cb cb;
  void *data;
  unsigned attempt;
  uint64_t due_ms; /* when waiting to be sent again; 0 while in flight */
  kite_http_req_t *req;
  call_t *next;
};

typedef enum reg_state { R_NEW, R_SETUP, R_READY, R_FAILED } reg_state_t;

struct region {
  aws_t *aws;
  char *name;
  char *endpoint; /* URL */
  char *host;     /* Host header value */
  char *path;     /* the URL's path, for signing */
  reg_state_t state;
  int error;
  char *error_msg;
  bool key_managed, sg_managed, sg_dup_seen;
  char *sg_id;
  bool cleanup_started, cleaned;
  /* This process terminated instances here that another one launched (`kite down`): at stop it
   * looks up kite's key pair and security group and deletes them when nothing uses them. */
  bool touched;
  region_t *next;
};

typedef enum inst_state {
  I_WAIT,    /* for the provider's key and the region's setup */
  I_HOSTKEY, /* generating its host key */
  I_RUN,     /* RunInstances in flight */
  I_POLL,    /* waiting for running + address */
  I_UP,      /* launched and reported */
  I_TERM,    /* TerminateInstances sent / waiting for "terminated" */
} inst_state_t;

struct inst {
  aws_t *aws;
  region_t *reg;
  inst_state_t state;
  char *id; /* NULL until RunInstances answered */
  char *tag;
  uint64_t pool, node;
  uint32_t rank;
  char client_token[48];
  bool spot;
  char *image, *type, *user, *max_price, *subnet, *sg_name, *user_data_in;
  unsigned port;
  char *address;
  char *hostkey_path, *host_pub;
  char *imds_tmpl;
  uint64_t launch_corr; /* 0 once answered */
  uint64_t *term_corrs;
  size_t term_n;
  bool term_wanted, term_sent, call_busy;
  /* May "not found" be taken as gone? Only when this process launched it, or when it is asked
   * in the region and endpoint its reach record names, under the account it was launched with
   * (or once EC2 accepted its termination there). */
  bool trust_not_found;
  bool setup_redone; /* the region was set up again after RunInstances missed its key or group */
  uint64_t poll_due, deadline;
  char *launch_error; /* set when the launch failed after the instance existed */
  inst_t *next;
};

typedef enum prep_state { P_NEW, P_KEY, P_READY, P_FAILED } prep_state_t;

struct kite_aws_provider {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  kite_aws_provider_options_t o;
  char *opt_strings[16];
  kite_http_t *http;
  kite__aws_creds_t creds;
  prep_state_t prep;
  int prep_error;
  char *prep_msg;
  char *key_path, *pubkey, *key_name;
  char *hostkey_dir;
  region_t *regions;
  inst_t *insts;
  call_t *calls;
  uv_timer_t tick;
  kite_sub_t subs[6];
  bool stopping, http_closing;
  uint64_t stop_deadline;
  kite_component_stopped_fn stop_done;
};

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t now_ms(aws_t *a) {
  return uv_now(kite_runtime_loop(a->rt));
}

static char *b64(const void *p, size_t n) {
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
  return out;
}

static const char *env_or(const char *v, const char *env, const char *dflt) {
  if (v && *v)
    return v;
  const char *e = env ? getenv(env) : NULL;
  return e && *e ? e : dflt;
}

static inst_t *find_inst(aws_t *a, const char *id) {
  for (inst_t *i = a->insts; id && i; i = i->next)
    if (i->id && strcmp(i->id, id) == 0)
      return i;
  return NULL;
}

static void inst_free(inst_t *i) {
  aws_t *a = i->aws;
  for (inst_t **pp = &a->insts; *pp; pp = &(*pp)->next)
    if (*pp == i) {
      *pp = i->next;
      break;
    }
  if (i->hostkey_path) {
    unlink(i->hostkey_path);
    char *pub = kite__sprintf("%s.pub", i->hostkey_path);
    if (pub)
      unlink(pub);
    free(pub);
  }
  free(i->id);
  free(i->tag);
  free(i->image);
  free(i->type);
  free(i->user);
  free(i->max_price);
  free(i->subnet);
  free(i->sg_name);
  free(i->user_data_in);
  free(i->address);
  free(i->hostkey_path);
  free(i->host_pub);
  free(i->imds_tmpl);
  free(i->term_corrs);
  free(i->launch_error);
  free(i);
}

static void stop_progress(aws_t *a);

/* ---- calls -------------------------------------------------------------------------------- */

static void call_send(call_t *c);

static void call_free(call_t *c) {
  aws_t *a = c->aws;
  for (call_t **pp = &a->calls; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  free(c->action);
  free(c->body);
  free(c);
}

static void call_finish(call_t *c, int status, kite__aws_xml_t *x, const char *code,
                        const char *msg) {
  call_cb cb = c->cb;
  cb(c, status, x, code, msg);
  call_free(c);
}

/* A transient failure: try again later (re-signed), or give up after CALL_ATTEMPTS. */
static bool call_again(call_t *c, const char *why) {
  aws_t *a = c->aws;
  if (a->http_closing || c->attempt >= CALL_ATTEMPTS)
    return false;
  uint64_t wait = 250ull << (c->attempt < 5 ? c->attempt : 5);
  KITE_DEBUG(a->rt, COMP, "%s: %s; again in %llu ms", c->action, why, (unsigned long long)wait);
  c->due_ms = now_ms(a) + wait;
  return true;
}

static void on_http(kite_http_t *h, int status, const kite_http_response_t *resp, void *data) {
  call_t *c = data;
  (void)h;
  c->req = NULL;
  if (status == KITE_ECANCELED) {
    call_finish(c, KITE_ECANCELED, NULL, NULL, "canceled");
    return;
  }
  kite__aws_xml_t *x = NULL;
  int prc = resp->body_len ? kite__aws_xml_parse(resp->body, resp->body_len, &x) : KITE_EPROTO;
  char *code = NULL, *msg = NULL;
  if (prc == 0 && kite__aws_xml_error(x, &code, &msg, NULL)) {
    kite__aws_xml_free(x);
    x = NULL;
    if (kite__aws_error_transient(code) && call_again(c, code)) {
      free(code);
      free(msg);
      return;
    }
    int kc = KITE_EPROVIDER;
    kite__aws_error_advice(code, &kc);
    call_finish(c, kc, NULL, code, msg ? msg : code);
    free(code);
    free(msg);
    return;
  }
  if (status == 0 && prc == 0) {
    call_finish(c, 0, x, NULL, NULL);
    kite__aws_xml_free(x);
    return;
  }
  kite__aws_xml_free(x);
  /* No usable answer: a transport error, a non-XML error page, or a truncated body. */
  char why[256];
  snprintf(why, sizeof(why), "%s",
           status != 0 ? (resp->message && *resp->message ? resp->message : kite_strerror(status))
                       : "the response is not EC2 XML");
  bool credentials = resp->status == 401 || resp->status == 403;
  if (!credentials && call_again(c, why))
    return;
  call_finish(c, status != 0 ? status : KITE_EPROTO, NULL, NULL, why);
}

static void call_send(call_t *c) {
  aws_t *a = c->aws;
  region_t *r = c->reg;
  c->attempt++;
  c->due_ms = 0;
  char date[17];
  kite__aws_amz_date((int64_t)(kite__wall_ms() / 1000), date);
  static const char ctype[] = "application/x-www-form-urlencoded; charset=utf-8";
  char *h_host = kite__sprintf("Host:%s", r->host);
  char *h_date = kite__sprintf("X-Amz-Date:%s", date);
  char *h_ct = kite__sprintf("Content-Type:%s", ctype);
  char *h_tok = a->creds.session_token
                    ? kite__sprintf("X-Amz-Security-Token:%s", a->creds.session_token)
                    : NULL;
  const char *sign_h[4] = {h_host, h_date, h_ct, h_tok};
  kite__aws_sig_req_t sr = {.method = "POST",
                            .path = r->path,
                            .headers = sign_h,
                            .header_n = h_tok ? 4 : 3,
                            .payload = c->body,
                            .payload_len = strlen(c->body),
                            .region = r->name,
                            .service = "ec2",
                            .amz_date = date,
                            .access_key = a->creds.access_key,
                            .secret_key = a->creds.secret_key};
  kite__aws_sig_t sig = {0};
  int rc = h_host && h_date && h_ct ? kite__aws_sign(&sr, &sig) : KITE_ENOMEM;
  char *h_auth = rc == 0 ? kite__sprintf("Authorization: %s", sig.authorization) : NULL;
  char *h_host2 = kite__sprintf("Host: %s", r->host);
  char *h_date2 = kite__sprintf("X-Amz-Date: %s", date);
  char *h_tok2 = h_tok ? kite__sprintf("X-Amz-Security-Token: %s", a->creds.session_token) : NULL;
  const char *hdrs[] = {h_host2, h_date2, h_auth, h_tok2, NULL};
  /* The signature is not registered as a secret: it is good for this request only, for five
   * minutes, and the HTTP client never logs headers. */
  kite_http_request_t q = {.method = "POST",
                           .url = r->endpoint,
                           .headers = hdrs,
                           .body = c->body,
                           .body_len = strlen(c->body),
                           .content_type = ctype,
                           .idempotent = true};
  if (rc == 0 && (h_auth == NULL || h_host2 == NULL || h_date2 == NULL))
    rc = KITE_ENOMEM;
  if (rc == 0)
    rc = kite_http_request(a->http, &q, on_http, c, &c->req);
  kite__aws_sig_free(&sig);
  free(h_host);
  free(h_date);
  free(h_ct);
  free(h_tok);
  free(h_auth);
  free(h_host2);
  free(h_date2);
  free(h_tok2);
  if (rc != 0) {
    char msg[160];
    snprintf(msg, sizeof(msg), "cannot send %s to %s: %s", c->action, r->endpoint,
             kite_strerror(rc));
    call_finish(c, rc, NULL, NULL, msg);
  }
}

/* Starts a call; the form is consumed. cb runs exactly once (never inside this call when it
 * returns 0). */
static int call_start(aws_t *a, region_t *r, kite__aws_form_t *f, call_cb cb, void *data) {
  if (f->error) {
    int err = f->error;
    kite__aws_form_free(f);
    return err;
  }
  call_t *c = calloc(1, sizeof(*c));
  if (c == NULL) {
    kite__aws_form_free(f);
    return KITE_ENOMEM;
  }
  const char *act = strstr(f->buf, "Action=");
  size_t al = act ? strcspn(act + 7, "&") : 0;
  c->action = act ? strndup(act + 7, al) : strdup("?");
  c->aws = a;
  c->reg = r;
  c->body = f->buf;
  f->buf = NULL;
  c->cb = cb;
  c->data = data;
  c->next = a->calls;
  a->calls = c;
  /* Sent on the next tick, so cb never runs inside this call. */
  c->due_ms = now_ms(a);
  return 0;
}

/* The message for a failed call: AWS's code and message, and what to do about it. */
static char *call_message(const char *action, int status, const char *code, const char *msg) {
  const char *advice = code ? kite__aws_error_advice(code, NULL) : NULL;
  if (code)
    return kite__sprintf("EC2 %s failed: %s: %s%s%s", action, code, msg ? msg : "",
                         advice ? " — " : "", advice ? advice : "");
  return kite__sprintf("EC2 %s failed: %s", action, msg ? msg : kite_strerror(status));
}

/* ---- regions: key pair and security group ----------------------------------------------- */

static void launch_continue(inst_t *i);
static void launch_fail(inst_t *i, int code, const char *msg);
static void reg_setup_step(region_t *r, int step);

static void reg_done(region_t *r, int status, const char *msg) {
  aws_t *a = r->aws;
  r->state = status == 0 ? R_READY : R_FAILED;
  r->error = status;
  free(r->error_msg);
  r->error_msg = kite__strdup(msg);
  if (status != 0)
    kite_log(a->rt, KITE_LOG_ERROR, COMP, "%s", msg);
  for (inst_t *i = a->insts, *next; i; i = next) {
    next = i->next;
    if (i->reg == r && i->state == I_WAIT)
      launch_continue(i);
  }
}

static bool has_managed_tag(const kite__aws_xml_t *x, const char *set) {
  /* {set}/item/tagSet/item[key=kite:managed] — only the first item is looked at. */
  const char *const p[] = {set, "item", "tagSet", "item", "key"};
  char *k = kite__aws_xml_text(x, p, 5);
  bool yes = k && strcmp(k, TAG_MANAGED) == 0;
  free(k);
  return yes;
}

static void on_setup(call_t *c, int status, kite__aws_xml_t *x, const char *code, const char *msg) {
  region_t *r = c->reg;
  int step = (int)(intptr_t)c->data;
  if (status == KITE_ECANCELED) {
    reg_done(r, KITE_ECLOSED, "the aws provider is stopping");
    return;
  }
  switch (step) {
  case 1: /* DescribeKeyPairs */
    if (status == 0) {
      r->key_managed = has_managed_tag(x, "keySet");
      reg_setup_step(r, 3);
    } else if (code && strcmp(code, "InvalidKeyPair.NotFound") == 0) {
      reg_setup_step(r, 2);
    } else {
      char *m = call_message(c->action, status, code, msg);
      reg_done(r, status, m);
      free(m);
    }
    return;
  case 2: /* ImportKeyPair */
    if (status == 0 || (code && strcmp(code, "InvalidKeyPair.Duplicate") == 0)) {
      r->key_managed = true;
      reg_setup_step(r, 3);
    } else {
      char *m = call_message(c->action, status, code, msg);
      reg_done(r, status, m);
      free(m);
    }
    return;
  case 3: { /* DescribeSecurityGroups */
    if (status != 0) {
      char *m = call_message(c->action, status, code, msg);
      reg_done(r, status, m);
      free(m);
      return;
    }
    const char *const p[] = {"securityGroupInfo", "item", "groupId"};
    char *id = kite__aws_xml_text(x, p, 3);
    if (id && *id) {
      free(r->sg_id);
      r->sg_id = id;
      r->sg_managed = r->sg_managed || has_managed_tag(x, "securityGroupInfo");
      reg_done(r, 0, NULL);
    } else {
      free(id);
      reg_setup_step(r, 4);
    }
    return;
  }
  case 4: { /* CreateSecurityGroup */
    if (status == 0) {
      const char *const p[] = {"groupId"};
      r->sg_id = kite__aws_xml_text(x, p, 1);
      r->sg_managed = true;
      if (r->sg_id && *r->sg_id) {
        reg_setup_step(r, 5);
        return;
      }
      reg_done(r, KITE_EPROTO, "EC2 CreateSecurityGroup answered without a groupId");
    } else if (code && strcmp(code, "InvalidGroup.Duplicate") == 0 && !r->sg_dup_seen) {
      /* A retried create whose first attempt worked: find it. */
      r->sg_dup_seen = true;
      r->sg_managed = true;
      reg_setup_step(r, 3);
    } else {
      char *m = call_message(c->action, status, code, msg);
      reg_done(r, status, m);
      free(m);
    }
    return;
  }
  case 5: /* AuthorizeSecurityGroupIngress */
    if (status == 0 || (code && strcmp(code, "InvalidPermission.Duplicate") == 0)) {
      reg_done(r, 0, NULL);
    } else {
      char *m = call_message(c->action, status, code, msg);
      reg_done(r, status, m);
      free(m);
    }
    return;
  default:
    reg_done(r, KITE_EINTERNAL, "internal error in the aws provider's setup");
  }
}

static const char *sg_name_of(aws_t *a) {
  return a->o.security_group ? a->o.security_group : "kite-ssh";
}

static void reg_setup_step(region_t *r, int step) {
  aws_t *a = r->aws;
  kite__aws_form_t f;
  switch (step) {
  case 1:
    kite__aws_form_init(&f, "DescribeKeyPairs");
    kite__aws_form_add(&f, "KeyName.1", a->key_name);
    break;
  case 2: {
    kite__aws_form_init(&f, "ImportKeyPair");
    kite__aws_form_add(&f, "KeyName", a->key_name);
    char *mat = b64(a->pubkey, strlen(a->pubkey));
    kite__aws_form_add(&f, "PublicKeyMaterial", mat);
    free(mat);
    kite__aws_form_add(&f, "TagSpecification.1.ResourceType", "key-pair");
    kite__aws_form_add(&f, "TagSpecification.1.Tag.1.Key", TAG_MANAGED);
    kite__aws_form_add(&f, "TagSpecification.1.Tag.1.Value", "true");
    break;
  }
  case 3:
    kite__aws_form_init(&f, "DescribeSecurityGroups");
    kite__aws_form_add(&f, "Filter.1.Name", "group-name");
    kite__aws_form_add(&f, "Filter.1.Value.1", sg_name_of(a));
    break;
  case 4:
    kite__aws_form_init(&f, "CreateSecurityGroup");
    kite__aws_form_add(&f, "GroupName", sg_name_of(a));
    kite__aws_form_add(&f, "GroupDescription", "SSH to kite nodes (created by kite)");
    kite__aws_form_add(&f, "TagSpecification.1.ResourceType", "security-group");
    kite__aws_form_add(&f, "TagSpecification.1.Tag.1.Key", TAG_MANAGED);
    kite__aws_form_add(&f, "TagSpecification.1.Tag.1.Value", "true");
    break;
  case 5:
    kite__aws_form_init(&f, "AuthorizeSecurityGroupIngress");
    kite__aws_form_add(&f, "GroupId", r->sg_id);
    kite__aws_form_add(&f, "IpPermissions.1.IpProtocol", "tcp");
    kite__aws_form_add(&f, "IpPermissions.1.FromPort", "22");
    kite__aws_form_add(&f, "IpPermissions.1.ToPort", "22");
    kite__aws_form_add(&f, "IpPermissions.1.IpRanges.1.CidrIp",
                       a->o.ssh_cidr ? a->o.ssh_cidr : "0.0.0.0/0");
    kite__aws_form_add(&f, "IpPermissions.1.IpRanges.1.Description", "SSH for kite");
    break;
  default:
    return;
  }
  int rc = call_start(a, r, &f, on_setup, (void *)(intptr_t)step);
  if (rc != 0)
    reg_done(r, rc, "cannot start the aws provider's setup");
}

/* Splits "scheme://authority/path" into host (the authority) and path. */
static int split_url(const char *url, char **host, char **path) {
  const char *p = strstr(url, "://");
  if (p == NULL)
    return KITE_EINVAL;
  p += 3;
  size_t hl = strcspn(p, "/?#");
  if (hl == 0)
    return KITE_EINVAL;
  *host = strndup(p, hl);
  const char *rest = p + hl;
  *path = *rest == '/' ? strndup(rest, strcspn(rest, "?#")) : strdup("/");
  return *host && *path ? 0 : KITE_ENOMEM;
}

static region_t *region_get(aws_t *a, const char *name, const char *endpoint) {
  char *ep = NULL;
  if (endpoint && *endpoint)
    ep = kite__strdup(endpoint);
  else
    ep = kite__sprintf("https://ec2.%s.amazonaws.com/", name);
  if (ep == NULL)
    return NULL;
  for (region_t *r = a->regions; r; r = r->next)
    if (strcmp(r->name, name) == 0 && strcmp(r->endpoint, ep) == 0) {
      free(ep);
      return r;
    }
  region_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    free(ep);
    return NULL;
  }
  r->aws = a;
  r->name = kite__strdup(name);
  r->endpoint = ep;
  if (split_url(ep, &r->host, &r->path) != 0 || r->name == NULL) {
    r->state = R_FAILED;
    r->error = KITE_EINVAL;
    r->error_msg = kite__sprintf("the EC2 endpoint \"%s\" is not a URL", ep);
  } else if (!kite_http_url_allowed(ep)) {
    r->state = R_FAILED;
    r->error = KITE_EINVAL;
    r->error_msg = kite__sprintf("the EC2 endpoint \"%s\" must be https:// (plain http:// only "
                                 "for a loopback emulator)",
                                 ep);
  }
  r->next = a->regions;
  a->regions = r;
  return r;
}

/* ---- launch ------------------------------------------------------------------------------- */

static void reply_terminated(inst_t *i) {
  aws_t *a = i->aws;
  kite_ev_instance_terminated_t t = {.pool = i->pool,
                                     .node = i->node,
                                     .rank = i->rank,
                                     .provider = PROVIDER_NAME,
                                     .instance_id = i->id};
  for (size_t k = 0; k < i->term_n; k++)
    kite_reply_instance_terminated(a->bus, i->term_corrs[k], &t);
  i->term_n = 0;
}

/* The launch failed before any instance existed. */
static void launch_fail(inst_t *i, int code, const char *msg) {
  aws_t *a = i->aws;
  if (i->launch_corr) {
    kite_bus_reply_error(a->bus, i->launch_corr, code, msg);
    i->launch_corr = 0;
  }
  reply_terminated(i);
  inst_free(i);
  stop_progress(a);
}

static void terminate_start(inst_t *i);

/* The launch failed after the instance was created: answer, then make sure it goes. */
static void launch_fail_existing(inst_t *i, int code, const char *msg) {
  aws_t *a = i->aws;
  if (i->launch_corr) {
    kite_bus_reply_error(a->bus, i->launch_corr, code, msg);
    i->launch_corr = 0;
  }
  terminate_start(i);
}

static char *cloud_config(inst_t *i, const char *priv) {
  /* Indent the private key by four spaces under a literal block. */
  size_t n = strlen(priv), lines = 1;
  for (size_t k = 0; k < n; k++)
    lines += priv[k] == '\n';
  char *ind = malloc(n + lines * 4 + 1);
  if (ind == NULL)
    return NULL;
  size_t o = 0;
  bool bol = true;
  for (size_t k = 0; k < n; k++) {
    if (bol && priv[k] != '\n') {
      memcpy(ind + o, "    ", 4);
      o += 4;
    }
    ind[o++] = priv[k];
    bol = priv[k] == '\n';
  }
  while (o && ind[o - 1] == '\n')
    o--;
  ind[o] = '\0';
  char *extra = NULL;
  if (i->user_data_in && *i->user_data_in) {
    char *enc = b64(i->user_data_in, strlen(i->user_data_in));
    extra = enc ? kite__sprintf("write_files:\n  - path: /var/lib/kite/user-data\n"
                                "    permissions: '0700'\n    encoding: b64\n"
                                "    content: %s\nruncmd:\n  - [sh, /var/lib/kite/user-data]\n",
                                enc)
                : NULL;
    free(enc);
  }
  char *cc = kite__sprintf("#cloud-config\n"
                           "ssh_deletekeys: true\n"
                           "ssh_genkeytypes: []\n"
                           "ssh_keys:\n"
                           "  ed25519_private: |\n%s\n"
                           "  ed25519_public: %s\n%s",
                           ind, i->host_pub, extra ? extra : "");
  free(ind);
  free(extra);
  return cc;
}

static void on_poll(call_t *c, int status, kite__aws_xml_t *x, const char *code, const char *msg);

static void on_run(call_t *c, int status, kite__aws_xml_t *x, const char *code, const char *msg) {
  inst_t *i = c->data;
  aws_t *a = i->aws;
  i->call_busy = false;
  bool setup_gone = code && (strcmp(code, "InvalidKeyPair.NotFound") == 0 ||
                             strcmp(code, "InvalidGroup.NotFound") == 0);
  if (status != 0 && setup_gone && !i->setup_redone && !i->term_wanted && !a->stopping) {
    /* Another kite process deleted the key pair or security group it saw unused a moment ago
     * (its pool closed): set the region up again, once, and launch. */
    KITE_INFO(a->rt, COMP, "rank %u: %s; setting region %s up again", i->rank, code, i->reg->name);
    i->setup_redone = true;
    if (i->reg->state == R_READY) {
      i->reg->state = R_NEW;
      free(i->reg->sg_id);
      i->reg->sg_id = NULL;
    }
    i->state = I_WAIT;
    launch_continue(i);
    return;
  }
  if (status != 0) {
    char *m = call_message("RunInstances", status, code, msg);
    if (status == KITE_ECANCELED) {
      /* The provider stops with a launch in flight: the ClientToken finds what it made. */
      KITE_WARN(a->rt, COMP,
                "rank %u: stopping while RunInstances was in flight; if it "
                "created an instance, `kite down` finds it by its tag",
                i->rank);
    }
    launch_fail(i, status == KITE_ECANCELED ? KITE_ECLOSED : status, m ? m : "launch failed");
    free(m);
    return;
  }
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  if (kite__aws_xml_instances(x, &v, &n, NULL) != 0 || n == 0) {
    launch_fail(i, KITE_EPROTO, "EC2 RunInstances answered without an instance");
    return;
  }
  i->id = kite__strdup(v[0].id);
  kite__aws_instances_free(v, n);
  i->trust_not_found = true;
  KITE_INFO(a->rt, COMP, "rank %u: instance %s launched (%s%s)", i->rank, i->id, i->type,
            i->spot ? ", spot" : "");
  kite_ev_instance_created_t cr = {.pool = i->pool,
                                   .node = i->node,
                                   .rank = i->rank,
                                   .provider = PROVIDER_NAME,
                                   .instance_id = i->id,
                                   .launch_token = i->client_token};
  kite_emit_instance_created(a->bus, &cr);
  if (i->term_wanted || a->stopping) {
    launch_fail_existing(i, KITE_ECLOSED, "terminated before it was running");
    return;
  }
  i->state = I_POLL;
  i->poll_due = now_ms(a) + a->o.poll_ms / 2;
  i->deadline = now_ms(a) + a->o.running_timeout_ms;
}

static void run_instance(inst_t *i) {
  aws_t *a = i->aws;
  char *priv = NULL;
  int rc = kite__read_file(i->hostkey_path, &priv, NULL);
  char *pubpath = kite__sprintf("%s.pub", i->hostkey_path);
  char *pub = NULL;
  if (rc == 0)
    rc = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
  free(pubpath);
  if (rc != 0) {
    free(priv);
    launch_fail(i, rc, "cannot read the host key kite generated for the instance");
    return;
  }
  char type[64], key[512];
  if (sscanf(pub, "%63s %511s", type, key) != 2) {
    free(priv);
    free(pub);
    launch_fail(i, KITE_EPROTO, "the generated host key is unreadable");
    return;
  }
  free(pub);
  i->host_pub = kite__sprintf("%s %s", type, key);
  kite_secret_add(a->rt, priv);
  char *cc = i->host_pub ? cloud_config(i, priv) : NULL;
  free(priv);
  char *ud = cc ? b64(cc, strlen(cc)) : NULL;
  free(cc);
  if (ud == NULL) {
    launch_fail(i, KITE_ENOMEM, "out of memory");
    return;
  }
  kite_secret_add(a->rt, ud);
  kite__aws_form_t f;
  kite__aws_form_init(&f, "RunInstances");
  kite__aws_form_add(&f, "ImageId", i->image);
  kite__aws_form_add(&f, "InstanceType", i->type);
  kite__aws_form_add(&f, "MinCount", "1");
  kite__aws_form_add(&f, "MaxCount", "1");
  kite__aws_form_add(&f, "ClientToken", i->client_token);
  kite__aws_form_add(&f, "KeyName", a->key_name);
  kite__aws_form_add(&f, "SecurityGroupId.1", i->reg->sg_id);
  if (i->subnet)
    kite__aws_form_add(&f, "SubnetId", i->subnet);
  kite__aws_form_add(&f, "UserData", ud);
  kite__aws_form_add(&f, "InstanceInitiatedShutdownBehavior", "terminate");
  kite__aws_form_add(&f, "TagSpecification.1.ResourceType", "instance");
  kite__aws_form_add(&f, "TagSpecification.1.Tag.1.Key", TAG_POOL);
  kite__aws_form_add(&f, "TagSpecification.1.Tag.1.Value", i->tag);
  char name[160], rank[16];
  snprintf(name, sizeof(name), "%s-%u", i->tag, i->rank);
  snprintf(rank, sizeof(rank), "%u", i->rank);
  kite__aws_form_add(&f, "TagSpecification.1.Tag.2.Key", "Name");
  kite__aws_form_add(&f, "TagSpecification.1.Tag.2.Value", name);
  kite__aws_form_add(&f, "TagSpecification.1.Tag.3.Key", "kite:rank");
  kite__aws_form_add(&f, "TagSpecification.1.Tag.3.Value", rank);
  if (i->spot) {
    kite__aws_form_add(&f, "InstanceMarketOptions.MarketType", "spot");
    kite__aws_form_add(&f, "InstanceMarketOptions.SpotOptions.SpotInstanceType", "one-time");
    kite__aws_form_add(&f, "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
                       "terminate");
    if (i->max_price)
      kite__aws_form_add(&f, "InstanceMarketOptions.SpotOptions.MaxPrice", i->max_price);
  }
  free(ud);
  i->state = I_RUN;
  i->call_busy = true;
  rc = call_start(a, i->reg, &f, on_run, i);
  if (rc != 0) {
    i->call_busy = false;
    launch_fail(i, rc, "cannot call RunInstances");
  }
}

static void on_hostkey(kite_runtime_t *rt, int status, void *data) {
  inst_t *i = data;
  (void)rt;
  if (status != 0) {
    launch_fail(i, status,
                "cannot generate a host key for the instance (is ssh-keygen "
                "installed?)");
    return;
  }
  if (i->term_wanted || i->aws->stopping) {
    launch_fail(i, KITE_ECLOSED, "terminated before it was launched");
    return;
  }
  run_instance(i);
}

/* Moves a launch on once the provider and the region are ready. */
static void launch_continue(inst_t *i) {
  aws_t *a = i->aws;
  if (i->term_wanted || a->stopping) {
    launch_fail(i, KITE_ECLOSED, "terminated before it was launched");
    return;
  }
  if (a->prep == P_FAILED) {
    launch_fail(i, a->prep_error, a->prep_msg);
    return;
  }
  if (a->prep != P_READY)
    return;
  region_t *r = i->reg;
  if (r->state == R_NEW) {
    r->state = R_SETUP;
    reg_setup_step(r, 1);
    return;
  }
  if (r->state == R_FAILED) {
    launch_fail(i, r->error, r->error_msg ? r->error_msg : "the region's setup failed");
    return;
  }
  if (r->state != R_READY)
    return;
  i->state = I_HOSTKEY;
  int rc = kite_keypair_ensure(a->rt, i->hostkey_path, on_hostkey, i);
  if (rc != 0)
    launch_fail(i, rc, "cannot generate a host key for the instance");
}

static void on_kite_key(kite_runtime_t *rt, int status, void *data) {
  aws_t *a = data;
  (void)rt;
  if (status == 0) {
    char *pubpath = kite__sprintf("%s.pub", a->key_path);
    char *pub = NULL;
    status = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
    free(pubpath);
    if (status == 0) {
      pub[strcspn(pub, "\r\n")] = '\0';
      a->pubkey = pub;
      if (a->o.key_name == NULL) {
        char h[65];
        kite__aws_sha256_hex(pub, strlen(pub), h);
        a->key_name = kite__sprintf("kite-%.16s", h);
      } else {
        a->key_name = kite__strdup(a->o.key_name);
      }
    }
  }
  if (status != 0) {
    a->prep = P_FAILED;
    a->prep_error = status;
    a->prep_msg = kite__sprintf("kite's SSH key could not be created at %s (is ssh-keygen "
                                "installed and $KITE_HOME writable?)",
                                a->key_path);
  } else {
    a->prep = P_READY;
  }
  for (inst_t *i = a->insts, *next; i; i = next) {
    next = i->next;
    if (i->state == I_WAIT)
      launch_continue(i);
  }
  stop_progress(a);
}

/* Loads the credentials and starts the key on the first launch. */
static void prep_start(aws_t *a) {
  if (a->prep != P_NEW)
    return;
  char *msg = NULL;
  kite__aws_creds_opts_t co = {.profile = a->o.profile};
  int rc = kite__aws_creds_load(a->rt, &co, &a->creds, &msg);
  if (rc != 0) {
    a->prep = P_FAILED;
    a->prep_error = rc;
    a->prep_msg = msg ? msg : kite__sprintf("cannot load AWS credentials: %s", kite_strerror(rc));
    return;
  }
  KITE_INFO(a->rt, COMP, "credentials from %s", a->creds.source);
  a->prep = P_KEY;
  rc = kite_keypair_ensure(a->rt, a->key_path, on_kite_key, a);
  if (rc != 0) {
    a->prep = P_FAILED;
    a->prep_error = rc;
    a->prep_msg = kite__sprintf("cannot create kite's SSH key: %s", kite_strerror(rc));
  }
}

static const char *jstr(json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static void on_launch(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                      void *data) {
  aws_t *a = data;
  if (a->stopping) {
    kite_bus_reply_error(bus, ev->corr, KITE_ECLOSED, "the aws provider is stopping");
    return;
  }
  json_t *opt = NULL;
  if (p->options && *p->options) {
    json_error_t je;
    opt = json_loads(p->options, 0, &je);
    if (!json_is_object(opt)) {
      json_decref(opt);
      kite_bus_reply_error(bus, ev->corr, KITE_ESPEC,
                           "aws: provider_options must be a JSON object");
      return;
    }
  }
  const char *image = p->image && *p->image ? p->image : a->o.image;
  if (image == NULL) {
    json_decref(opt);
    kite_bus_reply_error(bus, ev->corr, KITE_ESPEC,
                         "aws: no image: give the pool an AMI id (image: ami-…) of the region "
                         "it runs in");
    return;
  }
  prep_start(a);
  const char *region = p->region && *p->region ? p->region : a->o.region;
  if (region == NULL)
    region = a->creds.region;
  if (region == NULL)
    region = "us-east-1";
  const char *endpoint = jstr(opt, "endpoint");
  if (endpoint == NULL)
    endpoint = a->o.endpoint;
  inst_t *i = calloc(1, sizeof(*i));
  region_t *r = i ? region_get(a, region, endpoint) : NULL;
  if (i == NULL || r == NULL) {
    free(i);
    json_decref(opt);
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  i->aws = a;
  i->reg = r;
  i->state = I_WAIT;
  i->tag = kite__strdup(p->tag ? p->tag : "kite-untagged");
  i->pool = p->pool;
  i->node = p->node;
  i->rank = p->rank;
  i->spot = p->spot;
  i->launch_corr = ev->corr;
  kite__aws_client_token(p->launch_token ? p->launch_token : i->tag, i->client_token);
  i->image = kite__strdup(image);
  i->type = kite__strdup(p->instance_type && *p->instance_type ? p->instance_type
                         : a->o.instance_type                  ? a->o.instance_type
                                                               : "t3.micro");
  const char *user = jstr(opt, "ssh_user");
  i->user = kite__strdup(user ? user : a->o.ssh_user ? a->o.ssh_user : "ubuntu");
  json_t *port = json_object_get(opt, "ssh_port");
  i->port = json_is_integer(port) ? (unsigned)json_integer_value(port)
                                  : (a->o.ssh_port ? a->o.ssh_port : 22);
  json_t *mp = json_object_get(opt, "max_price");
  if (json_is_number(mp))
    i->max_price = kite__sprintf("%g", json_number_value(mp));
  else if (json_is_string(mp))
    i->max_price = kite__strdup(json_string_value(mp));
  i->subnet = kite__strdup(jstr(opt, "subnet_id") ? jstr(opt, "subnet_id") : a->o.subnet_id);
  i->user_data_in = kite__strdup(p->user_data);
  const char *imds = jstr(opt, "imds_endpoint");
  i->imds_tmpl = kite__strdup(imds ? imds : a->o.imds_endpoint);
  i->hostkey_path = kite__sprintf("%s/%s", a->hostkey_dir, i->client_token);
  json_decref(opt);
  i->next = a->insts;
  a->insts = i;
  if (i->tag == NULL || i->image == NULL || i->type == NULL || i->user == NULL ||
      i->hostkey_path == NULL || i->imds_tmpl == NULL) {
    launch_fail(i, KITE_ENOMEM, "out of memory");
    return;
  }
  launch_continue(i);
}

/* ---- polling and termination --------------------------------------------------------------- */

static void not_trusted(inst_t *i);

/* The termination is not confirmed: every request for it gets the error, and the instance
 * stays recorded in the pool's store for `kite down`. */
static void term_fail(inst_t *i, int code, const char *msg) {
  aws_t *a = i->aws;
  kite_log(a->rt, KITE_LOG_ERROR, COMP, "instance %s: %s", i->id, msg ? msg : "");
  for (size_t k = 0; k < i->term_n; k++)
    kite_bus_reply_error(a->bus, i->term_corrs[k], code, msg);
  i->term_n = 0;
  inst_free(i);
  stop_progress(a);
}

static void poll_instance(inst_t *i) {
  kite__aws_form_t f;
  kite__aws_form_init(&f, "DescribeInstances");
  kite__aws_form_add(&f, "InstanceId.1", i->id);
  i->call_busy = true;
  int rc = call_start(i->aws, i->reg, &f, on_poll, i);
  if (rc != 0)
    i->call_busy = false;
}

static bool gone_state(const char *s) {
  return s && (strcmp(s, "terminated") == 0 || strcmp(s, "shutting-down") == 0 ||
               strcmp(s, "stopped") == 0 || strcmp(s, "stopping") == 0);
}

static void on_poll(call_t *c, int status, kite__aws_xml_t *x, const char *code, const char *msg) {
  inst_t *i = c->data;
  aws_t *a = i->aws;
  i->call_busy = false;
  uint64_t now = now_ms(a);
  i->poll_due = now + a->o.poll_ms;
  bool not_found = code && strcmp(code, "InvalidInstanceID.NotFound") == 0;
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  if (status == 0 && kite__aws_xml_instances(x, &v, &n, NULL) != 0)
    n = 0;
  const char *state = n ? v[0].state : NULL;
  if (i->state == I_TERM) {
    if ((not_found || (status == 0 && n == 0)) && !i->trust_not_found) {
      kite__aws_instances_free(v, n);
      not_trusted(i);
      return;
    }
    if (not_found || (n && state && strcmp(state, "terminated") == 0) ||
        (status == 0 && n == 0 && i->term_sent)) {
      KITE_INFO(a->rt, COMP, "instance %s terminated", i->id);
      reply_terminated(i);
      kite__aws_instances_free(v, n);
      inst_free(i);
      stop_progress(a);
      return;
    }
    kite__aws_instances_free(v, n);
    if (now > i->deadline) {
      char *m = kite__sprintf("instance %s is not confirmed terminated after %llu s; it stays "
                              "recorded for `kite down`",
                              i->id, (unsigned long long)(a->o.terminate_timeout_ms / 1000));
      for (size_t k = 0; k < i->term_n; k++)
        kite_bus_reply_error(a->bus, i->term_corrs[k], KITE_ETIMEDOUT, m);
      i->term_n = 0;
      kite_log(a->rt, KITE_LOG_ERROR, COMP, "%s", m);
      free(m);
      inst_free(i);
      stop_progress(a);
    }
    return;
  }
  if (i->state != I_POLL) {
    kite__aws_instances_free(v, n);
    return;
  }
  if (status != 0 && !not_found) {
    KITE_DEBUG(a->rt, COMP, "instance %s: DescribeInstances failed: %s", i->id,
               msg ? msg : kite_strerror(status));
  } else if (n && state && strcmp(state, "running") == 0 && (v[0].public_ip || v[0].private_ip)) {
    const char *addr = v[0].public_ip ? v[0].public_ip : v[0].private_ip;
    i->address = kite__strdup(addr);
    i->state = I_UP;
    uint64_t corr = i->launch_corr;
    i->launch_corr = 0;
    kite_ev_instance_launched_t l = {.pool = i->pool,
                                     .node = i->node,
                                     .rank = i->rank,
                                     .provider = PROVIDER_NAME,
                                     .instance_id = i->id,
                                     .address = i->address,
                                     .port = i->port,
                                     .user = i->user,
                                     .host_key = i->host_pub,
                                     .price_hourly = 0.0,
                                     .tag = i->tag,
                                     .key_path = a->key_path};
    KITE_INFO(a->rt, COMP, "rank %u: instance %s running at %s", i->rank, i->id, i->address);
    kite_reply_instance_launched(a->bus, corr, &l);
  } else if (n && gone_state(state)) {
    char *m = kite__sprintf("instance %s went %s before it was running%s%s%s", i->id, state,
                            v[0].reason_message ? " (" : "",
                            v[0].reason_message ? v[0].reason_message : "",
                            v[0].reason_message ? ")" : "");
    int code2 =
        v[0].reason_code && strstr(v[0].reason_code, "Spot") ? KITE_ECAPACITY : KITE_EPROVIDER;
    launch_fail_existing(i, code2, m ? m : "the instance went away");
    free(m);
  } else if (now > i->deadline) {
    char *m = kite__sprintf("instance %s is not running after %llu s (state %s)", i->id,
                            (unsigned long long)(a->o.running_timeout_ms / 1000),
                            state ? state : "unknown");
    launch_fail_existing(i, KITE_ETIMEDOUT, m ? m : "timed out");
    free(m);
  }
  /* not_found right after RunInstances is EC2's eventual consistency: poll again. */
  kite__aws_instances_free(v, n);
}

static void on_terminate_call(call_t *c, int status, kite__aws_xml_t *x, const char *code,
                              const char *msg) {
  inst_t *i = c->data;
  aws_t *a = i->aws;
  (void)x;
  i->call_busy = false;
  bool not_found = code && strcmp(code, "InvalidInstanceID.NotFound") == 0;
  if (not_found && !i->trust_not_found) {
    not_trusted(i);
    return;
  }
  if (status == 0 || not_found) {
    i->trust_not_found = true; /* EC2 knew it here: what it says of it later holds */
    i->term_sent = true;
    i->poll_due = now_ms(a) + a->o.poll_ms / 2;
    return;
  }
  char *m = call_message("TerminateInstances", status, code, msg);
  term_fail(i, status, m);
  free(m);
}

/* EC2 says it does not know the instance, but it was not asked where the instance was created
 * (or under other credentials): that proves nothing, so the termination is not confirmed and
 * the instance stays recorded. */
static void not_trusted(inst_t *i) {
  char *m = kite__sprintf(
      "EC2 at %s (region %s) does not know instance %s, but its record does not say it was "
      "launched there with these credentials, so that is no proof it is gone; it stays "
      "recorded. Run `kite down` with the credentials it was launched with, or check the EC2 "
      "console of every region",
      i->reg->endpoint, i->reg->name, i->id);
  term_fail(i, KITE_EPROVIDER, m ? m : "instance not found");
  free(m);
}

static void terminate_start(inst_t *i) {
  aws_t *a = i->aws;
  if (i->state == I_TERM)
    return;
  i->state = I_TERM;
  i->deadline = now_ms(a) + a->o.terminate_timeout_ms;
  kite__aws_form_t f;
  kite__aws_form_init(&f, "TerminateInstances");
  kite__aws_form_add(&f, "InstanceId.1", i->id);
  i->call_busy = true;
  int rc = call_start(a, i->reg, &f, on_terminate_call, i);
  if (rc != 0)
    i->call_busy = false;
}

/* ---- reach records ------------------------------------------------------------------------ */

/* The account the credentials in use belong to, as a public name (never the key itself). */
static void account_name(aws_t *a, char out[32]) {
  char fp[17];
  kite__fingerprint("aws-access-key-id", a->creds.access_key ? a->creds.access_key : "", fp);
  snprintf(out, 32, "akid-%s", fp);
}

/* The region a request of this process uses when it names none. */
static const char *own_region(aws_t *a, const char *asked) {
  if (asked && *asked)
    return asked;
  if (a->o.region)
    return a->o.region;
  return a->creds.region ? a->creds.region : "us-east-1";
}

/* The region (and endpoint) a reach record names; without one, this process's default. *trusted
 * says whether EC2's "not found" there means gone: the record names this account. */
static region_t *reach_region(aws_t *a, const char *reach, bool *trusted) {
  *trusted = false;
  json_error_t je;
  json_t *j = reach && *reach ? json_loads(reach, 0, &je) : NULL;
  const char *region = json_string_value(json_object_get(j, "region"));
  const char *endpoint = json_string_value(json_object_get(j, "endpoint"));
  const char *account = json_string_value(json_object_get(j, "account"));
  region_t *r = region_get(a, own_region(a, region), region ? endpoint : a->o.endpoint);
  char mine[32];
  account_name(a, mine);
  *trusted = region && account && strcmp(account, mine) == 0;
  json_decref(j);
  return r;
}

static void on_reach_resolve(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_reach_resolve_t *p, void *data) {
  aws_t *a = data;
  prep_start(a);
  if (a->prep == P_FAILED) {
    kite_bus_reply_error(bus, ev->corr, a->prep_error, a->prep_msg);
    return;
  }
  json_error_t je;
  json_t *opt = p->options && *p->options ? json_loads(p->options, 0, &je) : NULL;
  const char *endpoint = jstr(opt, "endpoint");
  region_t *r = region_get(a, own_region(a, p->region), endpoint ? endpoint : a->o.endpoint);
  json_decref(opt);
  if (r == NULL || r->state == R_FAILED) {
    kite_bus_reply_error(bus, ev->corr, r ? r->error : KITE_ENOMEM,
                         r ? r->error_msg : "out of memory");
    return;
  }
  char account[32];
  account_name(a, account);
  const char *profile = a->o.profile ? a->o.profile : getenv("AWS_PROFILE");
  json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "provider", PROVIDER_NAME, "region", r->name,
                        "endpoint", r->endpoint, "account", account, "profile",
                        profile && *profile ? profile : NULL);
  char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(j);
  if (text == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  kite_ev_reach_t out = {.provider = PROVIDER_NAME, .reach = text};
  kite_reply_reach(bus, ev->corr, &out);
  free(text);
}

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  aws_t *a = data;
  inst_t *i = find_inst(a, p->instance_id);
  if (i == NULL && p->instance_id && strncmp(p->instance_id, "i-", 2) == 0 && !a->stopping) {
    /* Not launched by this process (`kite down`, or a run that crashed): adopt it. */
    prep_start(a);
    if (a->prep == P_FAILED) {
      kite_bus_reply_error(bus, ev->corr, a->prep_error, a->prep_msg);
      return;
    }
    bool trusted = false;
    i = calloc(1, sizeof(*i));
    region_t *r = i ? reach_region(a, p->reach, &trusted) : NULL;
    if (r == NULL || r->state == R_FAILED) {
      kite_bus_reply_error(bus, ev->corr, r ? r->error : KITE_ENOMEM,
                           r ? r->error_msg : "out of memory");
      free(i);
      return;
    }
    i->aws = a;
    i->reg = r;
    i->id = kite__strdup(p->instance_id);
    i->pool = p->pool;
    i->node = p->node;
    i->rank = p->rank;
    i->state = I_UP;
    i->trust_not_found = trusted;
    r->touched = true;
    i->next = a->insts;
    a->insts = i;
  }
  if (i == NULL) {
    kite_ev_instance_terminated_t t = {.pool = p->pool,
                                       .node = p->node,
                                       .rank = p->rank,
                                       .provider = PROVIDER_NAME,
                                       .instance_id = p->instance_id};
    kite_reply_instance_terminated(bus, ev->corr, &t);
    return;
  }
  uint64_t *g = realloc(i->term_corrs, (i->term_n + 1) * sizeof(*g));
  if (g == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  i->term_corrs = g;
  i->term_corrs[i->term_n++] = ev->corr;
  i->term_wanted = true;
  if (i->state == I_UP || i->state == I_POLL) {
    if (i->launch_corr) {
      kite_bus_reply_error(bus, i->launch_corr, KITE_ECANCELED, "terminated while launching");
      i->launch_corr = 0;
    }
    if (!i->call_busy)
      terminate_start(i);
    /* else: started when the call in flight is answered (see tick). */
  }
}

/* ---- describe, list, preemption ---------------------------------------------------------- */

typedef struct query {
  aws_t *a;
  uint64_t corr;
  int kind; /* 0 describe, 1 preempt, 2 list */
  char *provider_id, *tag;
  uint64_t node;
  char *ids;
  size_t ids_len;
  uint32_t count;
  unsigned pages;
} query_t;

static void query_free(query_t *q) {
  free(q->provider_id);
  free(q->tag);
  free(q->ids);
  free(q);
}

static region_t *default_region(aws_t *a) {
  if (a->regions)
    return a->regions;
  prep_start(a);
  const char *region = a->o.region ? a->o.region : a->creds.region;
  return region_get(a, region ? region : "us-east-1", a->o.endpoint);
}

static void on_query(call_t *c, int status, kite__aws_xml_t *x, const char *code, const char *msg);

static int list_page(query_t *q, region_t *r, const char *next) {
  kite__aws_form_t f;
  kite__aws_form_init(&f, "DescribeInstances");
  if (strcmp(q->tag, "*") == 0) {
    kite__aws_form_add(&f, "Filter.1.Name", "tag-key");
    kite__aws_form_add(&f, "Filter.1.Value.1", TAG_POOL);
  } else {
    kite__aws_form_add(&f, "Filter.1.Name", "tag:" TAG_POOL);
    kite__aws_form_add(&f, "Filter.1.Value.1", q->tag);
  }
  kite__aws_form_add(&f, "Filter.2.Name", "instance-state-name");
  static const char *const live[] = {LIVE_STATES};
  for (unsigned k = 0; k < KITE_ARRAY_SIZE(live); k++)
    kite__aws_form_addf(&f, live[k], "Filter.2.Value.%u", k + 1);
  char mr[16];
  snprintf(mr, sizeof(mr), "%u", q->a->o.page_size ? q->a->o.page_size : 1000);
  kite__aws_form_add(&f, "MaxResults", mr);
  if (next)
    kite__aws_form_add(&f, "NextToken", next);
  return call_start(q->a, r, &f, on_query, q);
}

static void on_query(call_t *c, int status, kite__aws_xml_t *x, const char *code, const char *msg) {
  query_t *q = c->data;
  aws_t *a = q->a;
  bool not_found = code && strcmp(code, "InvalidInstanceID.NotFound") == 0;
  if (status != 0 && !not_found) {
    char *m = call_message(c->action, status, code, msg);
    kite_bus_reply_error(a->bus, q->corr, status, m);
    free(m);
    query_free(q);
    return;
  }
  kite__aws_instance_t *v = NULL;
  size_t n = 0;
  char *next = NULL;
  if (status == 0 && kite__aws_xml_instances(x, &v, &n, &next) != 0) {
    kite_bus_reply_error(a->bus, q->corr, KITE_EPROTO, "EC2 DescribeInstances: bad answer");
    query_free(q);
    return;
  }
  if (q->kind == 2) {
    bool any = strcmp(q->tag, "*") == 0;
    for (size_t k = 0; k < n; k++) {
      const char *tag = "";
      for (size_t t = 0; any && t < v[k].tag_n; t++)
        if (strcmp(v[k].tags[t].key, TAG_POOL) == 0 && v[k].tags[t].value)
          tag = v[k].tags[t].value;
      char *line = any ? kite__sprintf("%s %s", v[k].id, tag) : kite__strdup(v[k].id);
      size_t l = line ? strlen(line) : 0;
      char *g = line ? realloc(q->ids, q->ids_len + l + 2) : NULL;
      if (g == NULL) {
        free(line);
        break;
      }
      q->ids = g;
      if (q->ids_len)
        q->ids[q->ids_len++] = '\n';
      memcpy(q->ids + q->ids_len, line, l + 1);
      q->ids_len += l;
      q->count++;
      free(line);
    }
    kite__aws_instances_free(v, n);
    if (next && ++q->pages < 1000 && list_page(q, c->reg, next) == 0) {
      free(next);
      return;
    }
    free(next);
    kite_ev_instance_listed_t l = {
        .provider = PROVIDER_NAME, .tag = q->tag, .count = q->count, .ids = q->ids ? q->ids : ""};
    kite_reply_instance_listed(a->bus, q->corr, &l);
    query_free(q);
    return;
  }
  free(next);
  const char *state = n ? v[0].state : "terminated";
  if (q->kind == 0) {
    kite_ev_instance_state_t s = {.provider = PROVIDER_NAME,
                                  .node = q->node,
                                  .instance_id = q->provider_id,
                                  .state = state,
                                  .address = n ? (v[0].public_ip ? v[0].public_ip : v[0].private_ip)
                                               : NULL};
    kite_reply_instance_state(a->bus, q->corr, &s);
  } else {
    kite_ev_preempt_status_t s = {.provider = PROVIDER_NAME,
                                  .node = q->node,
                                  .instance_id = q->provider_id,
                                  .state = KITE_PREEMPT_NONE};
    char *probe = NULL;
    if (n && strcmp(state, "running") == 0 &&
        kite_aws_provider_probe(a, q->provider_id, &probe) == 0)
      s.probe = probe;
    if (n == 0 || gone_state(state)) {
      s.state = KITE_PREEMPT_GONE;
      if (n && v[0].reason_code && strcmp(v[0].reason_code, "Server.SpotInstanceTermination") == 0)
        KITE_INFO(a->rt, COMP, "instance %s: spot instance taken back by EC2 (%s)", q->provider_id,
                  v[0].reason_code);
    }
    kite_reply_preempt_status(a->bus, q->corr, &s);
    free(probe);
  }
  kite__aws_instances_free(v, n);
  query_free(q);
}

static void start_query(aws_t *a, uint64_t corr, int kind, const char *id, const char *tag,
                        uint64_t node, const char *reach) {
  if (a->stopping) {
    kite_bus_reply_error(a->bus, corr, KITE_ECLOSED, "the aws provider is stopping");
    return;
  }
  inst_t *i = find_inst(a, id);
  bool trusted;
  region_t *r = i       ? i->reg
                : reach ? (prep_start(a), reach_region(a, reach, &trusted))
                        : default_region(a);
  if (a->prep == P_FAILED || r == NULL || r->state == R_FAILED) {
    kite_bus_reply_error(a->bus, corr, a->prep == P_FAILED ? a->prep_error : KITE_EINVAL,
                         a->prep == P_FAILED ? a->prep_msg
                         : r                 ? r->error_msg
                                             : "no EC2 region");
    return;
  }
  query_t *q = calloc(1, sizeof(*q));
  if (q == NULL) {
    kite_bus_reply_error(a->bus, corr, KITE_ENOMEM, "out of memory");
    return;
  }
  q->a = a;
  q->corr = corr;
  q->kind = kind;
  q->provider_id = kite__strdup(id);
  q->tag = kite__strdup(tag);
  q->node = node;
  int rc;
  if (kind == 2) {
    rc = list_page(q, r, NULL);
  } else {
    kite__aws_form_t f;
    kite__aws_form_init(&f, "DescribeInstances");
    kite__aws_form_add(&f, "InstanceId.1", id ? id : "");
    rc = call_start(a, r, &f, on_query, q);
  }
  if (rc != 0) {
    kite_bus_reply_error(a->bus, corr, rc, "cannot call DescribeInstances");
    query_free(q);
  }
}

static void on_describe(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_describe_t *p, void *data) {
  (void)bus;
  start_query(data, ev->corr, 0, p->instance_id, NULL, p->node, NULL);
}

static void on_preempt_check(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_preempt_check_t *p, void *data) {
  int64_t deadline = 0;
  if (p->probe_output.len && kite__aws_probe_parse(p->probe_output.ptr, p->probe_output.len,
                                                   &deadline) == KITE_PREEMPT_NOTICE) {
    /* The node itself was told: EC2 takes it back at the deadline. */
    kite_ev_preempt_status_t s = {.provider = PROVIDER_NAME,
                                  .node = p->node,
                                  .instance_id = p->instance_id,
                                  .state = KITE_PREEMPT_NOTICE,
                                  .deadline_ms = deadline};
    kite_reply_preempt_status(bus, ev->corr, &s);
    return;
  }
  start_query(data, ev->corr, 1, p->instance_id, NULL, p->node, NULL);
}

static void on_list(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_list_t *p,
                    void *data) {
  (void)bus;
  start_query(data, ev->corr, 2, NULL, p->tag ? p->tag : "", 0, p->reach);
}

/* ---- the tick: sends due calls and due polls ------------------------------------------------ */

static void on_tick(uv_timer_t *t) {
  aws_t *a = kite_container_of(t, aws_t, tick);
  uint64_t now = now_ms(a);
  for (call_t *c = a->calls, *next; c; c = next) {
    next = c->next; /* a call that cannot be sent is finished (and freed) at once */
    if (c->due_ms && c->due_ms <= now && c->req == NULL && !a->http_closing)
      call_send(c);
  }
  for (inst_t *i = a->insts; i; i = i->next) {
    if (i->call_busy)
      continue;
    if (i->state == I_POLL && i->term_wanted) {
      terminate_start(i);
    } else if (i->state == I_UP && i->term_wanted) {
      terminate_start(i);
    } else if ((i->state == I_POLL || (i->state == I_TERM && i->term_sent)) && i->poll_due <= now) {
      poll_instance(i);
    } else if (i->state == I_TERM && !i->term_sent) {
      /* The first TerminateInstances failed to start: try again. */
      i->state = I_UP;
      terminate_start(i);
    }
  }
  if (a->stopping)
    stop_progress(a);
}

/* ---- the probe ------------------------------------------------------------------------------ */

int kite_aws_provider_probe(kite_aws_provider_t *a, const char *instance_id, char **command) {
  *command = NULL;
  inst_t *i = find_inst(a, instance_id);
  if (i == NULL || i->address == NULL)
    return KITE_ENOENT;
  char *ep = kite__aws_imds_endpoint(i->imds_tmpl, i->address);
  *command = ep ? kite__aws_probe_command(ep) : NULL;
  free(ep);
  return *command ? 0 : KITE_ENOMEM;
}

int kite_aws_probe_parse(const char *output, size_t len, int64_t *deadline_ms) {
  return kite__aws_probe_parse(output, len, deadline_ms);
}

/* ---- component ----------------------------------------------------------------------------- */

static void on_tick_closed(uv_handle_t *h);

static void on_http_closed(kite_http_t *h, void *data) {
  aws_t *a = data;
  (void)h;
  a->http = NULL;
  /* a is freed when the tick's handle has closed, after done() returned. */
  uv_close((uv_handle_t *)&a->tick, on_tick_closed);
  kite_component_stopped_fn done = a->stop_done;
  a->stop_done = NULL;
  for (size_t k = 0; k < KITE_ARRAY_SIZE(a->subs); k++)
    kite_bus_unsubscribe(a->bus, a->subs[k]);
  done(&a->comp);
}

static void on_tick_closed(uv_handle_t *h) {
  aws_t *a = kite_container_of((uv_timer_t *)h, aws_t, tick);
  for (size_t k = 0; k < KITE_ARRAY_SIZE(a->opt_strings); k++)
    free(a->opt_strings[k]);
  for (region_t *r = a->regions, *next; r; r = next) {
    next = r->next;
    free(r->name);
    free(r->endpoint);
    free(r->host);
    free(r->path);
    free(r->error_msg);
    free(r->sg_id);
    free(r);
  }
  kite__aws_creds_free(&a->creds);
  free(a->prep_msg);
  free(a->key_path);
  free(a->pubkey);
  free(a->key_name);
  free(a->hostkey_dir);
  free(a);
}

typedef struct cleanup {
  aws_t *a;
  region_t *r;
  int step; /* -1 find the key pair, 0 find the SG, 1 SG users, 2 delete SG, 3 key users,
                4 delete key */
} cleanup_t;

static void cleanup_next(cleanup_t *cl);

static void on_cleanup(call_t *c, int status, kite__aws_xml_t *x, const char *code,
                       const char *msg) {
  cleanup_t *cl = c->data;
  aws_t *a = cl->a;
  region_t *r = cl->r;
  if (status == KITE_ECANCELED) {
    r->cleaned = true;
    free(cl);
    return;
  }
  switch (cl->step) {
  case -1:
    r->key_managed = status == 0 && has_managed_tag(x, "keySet");
    break;
  case 0: {
    const char *const p[] = {"securityGroupInfo", "item", "groupId"};
    char *id = status == 0 ? kite__aws_xml_text(x, p, 3) : NULL;
    if (id && *id && has_managed_tag(x, "securityGroupInfo")) {
      free(r->sg_id);
      r->sg_id = id;
      r->sg_managed = true;
    } else {
      free(id);
    }
    break;
  }
  case 1:
  case 3: {
    const char *const p[] = {"reservationSet"};
    size_t users = status == 0 ? kite__aws_xml_count(x, p, 1) : 1;
    if (users) {
      KITE_INFO(a->rt, COMP, "%s %s is still used; kept",
                cl->step == 1 ? "security group" : "key pair",
                cl->step == 1 ? r->sg_id : a->key_name);
      cl->step++;
    }
    break;
  }
  case 2:
  case 4:
    if (status == 0)
      KITE_INFO(a->rt, COMP, "deleted the %s kite created (%s)",
                cl->step == 2 ? "security group" : "key pair",
                cl->step == 2 ? r->sg_id : a->key_name);
    else
      kite_log(a->rt, KITE_LOG_WARN, COMP,
               "could not delete the %s %s (%s: %s); kite deletes "
               "it on a later run when nothing uses it",
               cl->step == 2 ? "security group" : "key pair",
               cl->step == 2 ? r->sg_id : a->key_name, code ? code : "error", msg ? msg : "");
    break;
  }
  cl->step++;
  cleanup_next(cl);
}

static void cleanup_next(cleanup_t *cl) {
  aws_t *a = cl->a;
  region_t *r = cl->r;
  kite__aws_form_t f;
  static const char *const live[] = {LIVE_STATES};
  while (cl->step <= 4) {
    if ((cl->step >= 1 && cl->step <= 2 && !(r->sg_managed && r->sg_id)) ||
        (cl->step >= 3 && !r->key_managed)) {
      cl->step++;
      continue;
    }
    if (cl->step == -1) {
      kite__aws_form_init(&f, "DescribeKeyPairs");
      kite__aws_form_add(&f, "KeyName.1", a->key_name);
    } else if (cl->step == 0) {
      kite__aws_form_init(&f, "DescribeSecurityGroups");
      kite__aws_form_add(&f, "Filter.1.Name", "group-name");
      kite__aws_form_add(&f, "Filter.1.Value.1", sg_name_of(a));
    } else if (cl->step == 1 || cl->step == 3) {
      kite__aws_form_init(&f, "DescribeInstances");
      kite__aws_form_add(&f, "Filter.1.Name", cl->step == 1 ? "instance.group-id" : "key-name");
      kite__aws_form_add(&f, "Filter.1.Value.1", cl->step == 1 ? r->sg_id : a->key_name);
      kite__aws_form_add(&f, "Filter.2.Name", "instance-state-name");
      for (unsigned k = 0; k < KITE_ARRAY_SIZE(live); k++)
        kite__aws_form_addf(&f, live[k], "Filter.2.Value.%u", k + 1);
    } else if (cl->step == 2) {
      kite__aws_form_init(&f, "DeleteSecurityGroup");
      kite__aws_form_add(&f, "GroupId", r->sg_id);
    } else {
      kite__aws_form_init(&f, "DeleteKeyPair");
      kite__aws_form_add(&f, "KeyName", a->key_name);
    }
    if (call_start(a, r, &f, on_cleanup, cl) == 0)
      return;
    cl->step++;
  }
  r->cleaned = true;
  free(cl);
  stop_progress(a);
}

/* Advances the stop: instances first, then the account's resources, then the HTTP client. */
static void stop_progress(aws_t *a) {
  if (!a->stopping || a->http_closing)
    return;
  bool timed_out = now_ms(a) > a->stop_deadline;
  if (a->insts && !timed_out)
    return;
  if (a->prep == P_KEY && !timed_out)
    return; /* the key generation still runs */
  for (region_t *r = a->regions; r && !timed_out; r = r->next) {
    if (r->cleaned)
      continue;
    bool found_here = r->state != R_READY && r->touched && a->prep == P_READY && a->key_name;
    if ((r->state != R_READY && !found_here) || a->o.keep_resources) {
      r->cleaned = true;
      continue;
    }
    if (r->cleanup_started)
      return; /* cleanup_next reports back through stop_progress */
    cleanup_t *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
      r->cleaned = true;
      continue;
    }
    cl->a = a;
    cl->r = r;
    cl->step = found_here ? -1 : 1;
    r->cleanup_started = true;
    cleanup_next(cl);
    return;
  }
  if (a->insts)
    kite_log(a->rt, KITE_LOG_ERROR, COMP,
             "stopping with instances not confirmed terminated; "
             "`kite down` finds them by their tag");
  while (a->insts) {
    inst_t *i = a->insts;
    if (i->launch_corr)
      kite_bus_reply_error(a->bus, i->launch_corr, KITE_ECLOSED, "the aws provider stopped");
    i->launch_corr = 0;
    for (size_t k = 0; k < i->term_n; k++)
      kite_bus_reply_error(a->bus, i->term_corrs[k], KITE_ETIMEDOUT,
                           "the aws provider stopped before the termination was confirmed");
    i->term_n = 0;
    inst_free(i);
  }
  a->http_closing = true;
  uv_timer_stop(&a->tick);
  kite_http_close(a->http, on_http_closed, a);
}

static void aws_stop(kite_component_t *c, kite_component_stopped_fn done) {
  aws_t *a = kite_container_of(c, aws_t, comp);
  a->stopping = true;
  a->stop_done = done;
  a->stop_deadline = now_ms(a) + a->o.terminate_timeout_ms;
  for (inst_t *i = a->insts, *next; i; i = next) {
    next = i->next;
    if (i->state == I_WAIT) {
      launch_fail(i, KITE_ECLOSED, "the aws provider is stopping");
    } else if ((i->state == I_UP || i->state == I_POLL) && !i->call_busy) {
      if (i->launch_corr) {
        kite_bus_reply_error(a->bus, i->launch_corr, KITE_ECLOSED, "the aws provider stopped");
        i->launch_corr = 0;
      }
      KITE_WARN(a->rt, COMP, "stopping with instance %s still running: terminating it", i->id);
      terminate_start(i);
    } else if (i->state == I_UP || i->state == I_POLL) {
      i->term_wanted = true;
    }
  }
  stop_progress(a);
}

static int aws_start(kite_component_t *c, kite_runtime_t *rt) {
  aws_t *a = kite_container_of(c, aws_t, comp);
  kite_key_t key = kite_key_str(PROVIDER_NAME);
  kite_http_options_t ho = {.ca_file = a->o.ca_file,
                            .max_retries = a->o.max_retries,
                            .timeout_ms = a->o.http_timeout_ms,
                            .backoff_base_ms = a->o.backoff_base_ms,
                            .log_name = COMP};
  int rc = kite_http_new(rt, &ho, &a->http);
  if (rc == 0)
    rc = kite_respond_instance_launch(a->bus, key, on_launch, a, &a->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(a->bus, key, on_terminate, a, &a->subs[1]);
  if (rc == 0)
    rc = kite_respond_instance_describe(a->bus, key, on_describe, a, &a->subs[2]);
  if (rc == 0)
    rc = kite_respond_instance_list(a->bus, key, on_list, a, &a->subs[3]);
  if (rc == 0)
    rc = kite_respond_preempt_check(a->bus, key, on_preempt_check, a, &a->subs[4]);
  if (rc == 0)
    rc = kite_respond_reach_resolve(a->bus, key, on_reach_resolve, a, &a->subs[5]);
  if (rc == 0) {
    uv_timer_init(kite_runtime_loop(rt), &a->tick);
    uv_timer_start(&a->tick, on_tick, TICK_MS, TICK_MS);
  }
  if (rc != 0) {
    for (size_t k = 0; k < KITE_ARRAY_SIZE(a->subs); k++)
      kite_bus_unsubscribe(a->bus, a->subs[k]);
    if (a->http)
      kite_http_close(a->http, NULL, NULL);
    a->http = NULL;
  }
  return rc;
}

static const char *keep(aws_t *a, size_t k, const char *s) {
  a->opt_strings[k] = kite__strdup(s);
  return a->opt_strings[k];
}

int kite_aws_provider_new(kite_runtime_t *rt, const kite_aws_provider_options_t *opts,
                          kite_aws_provider_t **out) {
  aws_t *a = calloc(1, sizeof(*a));
  if (a == NULL)
    return KITE_ENOMEM;
  a->rt = rt;
  a->bus = kite_runtime_bus(rt);
  if (opts)
    a->o = *opts;
  /* Own copies of every string option. */
  a->o.profile = keep(a, 0, a->o.profile);
  a->o.region = keep(a, 1, a->o.region);
  a->o.endpoint = keep(a, 2, env_or(a->o.endpoint, "KITE_AWS_ENDPOINT", NULL));
  a->o.ca_file = keep(a, 3, a->o.ca_file);
  a->o.image = keep(a, 4, a->o.image);
  a->o.instance_type = keep(a, 5, a->o.instance_type);
  a->o.ssh_user = keep(a, 6, a->o.ssh_user);
  a->o.subnet_id = keep(a, 7, a->o.subnet_id);
  a->o.key_name = keep(a, 8, a->o.key_name);
  a->o.security_group = keep(a, 9, a->o.security_group);
  a->o.ssh_cidr = keep(a, 10, a->o.ssh_cidr);
  a->o.imds_endpoint =
      keep(a, 11, env_or(a->o.imds_endpoint, "KITE_AWS_IMDS_ENDPOINT", "http://169.254.169.254"));
  if (a->o.poll_ms == 0)
    a->o.poll_ms = 2000;
  if (a->o.running_timeout_ms == 0)
    a->o.running_timeout_ms = 10 * 60 * 1000;
  if (a->o.terminate_timeout_ms == 0)
    a->o.terminate_timeout_ms = 10 * 60 * 1000;
  a->key_path = kite__sprintf("%s/keys/id_ed25519", kite_runtime_home(rt));
  a->hostkey_dir = kite__sprintf("%s/aws/hostkeys", kite_runtime_home(rt));
  char *kdir = kite__sprintf("%s/keys", kite_runtime_home(rt));
  int rc = a->key_path && a->hostkey_dir && kdir ? kite__mkdir_p(kdir, 0700) : KITE_ENOMEM;
  if (rc == 0)
    rc = kite__mkdir_p(a->hostkey_dir, 0700);
  free(kdir);
  if (rc == 0 && a->o.imds_endpoint == NULL)
    rc = KITE_ENOMEM;
  if (rc == 0) {
    a->comp.name = PROVIDER_NAME;
    a->comp.tier = KITE_TIER_PROVIDER;
    a->comp.start = aws_start;
    a->comp.stop = aws_stop;
    rc = kite_runtime_add(rt, &a->comp);
  }
  if (rc != 0) {
    for (size_t k = 0; k < KITE_ARRAY_SIZE(a->opt_strings); k++)
      free(a->opt_strings[k]);
    free(a->key_path);
    free(a->hostkey_dir);
    free(a);
    return rc;
  }
  if (out)
    *out = a;
  return 0;
}
