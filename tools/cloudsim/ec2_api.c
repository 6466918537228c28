/* The EC2 front of the emulator: the subset of the EC2 Query API (version 2016-11-15) that
 * kite uses, with EC2's XML shapes and namespace, its error format (<Response><Errors>…) and
 * its status codes. Every call's Signature Version 4 is recomputed and checked; a wrong
 * secret is refused as EC2 refuses it (401 AuthFailure).
 *
 *   POST /  Action=RunInstances | DescribeInstances | TerminateInstances | ImportKeyPair |
 *           DescribeKeyPairs | DeleteKeyPair | CreateSecurityGroup | DescribeSecurityGroups |
 *           AuthorizeSecurityGroupIngress | DeleteSecurityGroup
 *   GET  /_sim/ec2/state                     instances by state, created, peak, key pairs and
 *                                            security groups
 *   POST /_sim/ec2/instances/{id}/interrupt  a spot interruption: the notice now (the
 *                                            metadata service serves instance-action), the
 *                                            machine dies notice_ms later ({"notice_ms": N},
 *                                            default 2000) and the instance ends terminated
 *                                            with Server.SpotInstanceTermination
 *
 * Instances are machines (machines.c): the public address is the node's loopback address, the
 * key pair's public key is the node's authorized key, and the ed25519 host key in cloud-init
 * user data becomes the node's host key before the instance is reported running. Parameter
 * names are checked against the operations' input shapes (an unknown one is refused with
 * UnknownParameter, as EC2 does). ClientToken makes RunInstances idempotent. Terminated
 * instances stay visible to DescribeInstances, as on EC2.
 *
 * The account: $KITE_CLOUDSIM_AWS_ACCESS_KEY_ID (default AKIAKITECLOUDSIM0001) with the secret
 * $KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY (default: the emulator's --token). Spot instances serve
 * the metadata service on their address, port $KITE_CLOUDSIM_IMDS_PORT (default 8169). */
#include <ctype.h>
#include <fnmatch.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ec2_api.h"
#include "providers/aws/aws_impl.h"

#define NS "http://ec2.amazonaws.com/doc/2016-11-15/"
#define OWNER "123456789012"
#define MAX_USER_DATA (16 * 1024)

typedef struct kv {
  char *key, *value;
} kv_t;

typedef struct ec2_inst {
  char id[32];
  uint64_t machine_id;
  char *client_token, *image, *type, *key_name, *sg_id, *subnet, *region;
  kv_t *tags;
  size_t tag_n;
  bool spot;
  char launch_time[32];
  char reservation[32];
  bool terminate_requested, interrupted, final_;
  char final_reason[96];
  char *host_priv, *host_pub;
  bool hostkey_applied;
  char address[64];
  imds_t *imds;
  char *notice_json;
  uint64_t interrupt_due; /* loop time of the spot interruption, or 0 */
  imds_info_t info;
  struct ec2_inst *next;
} ec2_inst_t;

typedef struct key_pair {
  char *name, *id, *material, *fingerprint, *region;
  bool managed;
  struct key_pair *next;
} key_pair_t;

typedef struct sgroup {
  char *id, *name, *description, *region;
  bool managed;
  char *perms; /* "tcp:22-22:0.0.0.0/0" lines */
  struct sgroup *next;
} sgroup_t;

static struct {
  bool init;
  /* The region of the request being answered (its signature's credential scope), or "" for
   * control calls: instances, key pairs and security groups live in one region, as on EC2. */
  char region[64];
  char *access_key, *secret;
  int imds_port;
  ec2_inst_t *insts;
  key_pair_t *keys;
  sgroup_t *groups;
  unsigned created, peak;
  uint64_t seq;
  sim_t *sim;
  uv_timer_t sync; /* keeps instances' metadata services and interruptions in step */
  bool sync_closed;
} g;

static void on_sync(uv_timer_t *t);

static void ec2_init(sim_t *sim) {
  if (g.init)
    return;
  g.init = true;
  const char *ak = getenv("KITE_CLOUDSIM_AWS_ACCESS_KEY_ID");
  const char *sk = getenv("KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY");
  const char *port = getenv("KITE_CLOUDSIM_IMDS_PORT");
  g.access_key = strdup(ak && *ak ? ak : "AKIAKITECLOUDSIM0001");
  g.secret = strdup(sk && *sk ? sk : sim->token);
  g.imds_port = port && *port ? atoi(port) : 8169;
  g.seq = (uint64_t)time(NULL) << 20;
  if (strlen(g.secret) >= 4)
    kite_secret_add(sim->rt, g.secret);
  g.sim = sim;
  uv_timer_init(sim->loop, &g.sync);
  uv_timer_start(&g.sync, on_sync, 100, 100);
}

/* ---- output ---------------------------------------------------------------------------------- */

typedef struct out {
  char *buf;
  size_t len;
  FILE *fp;
} out_t;

static void out_open(out_t *o) {
  memset(o, 0, sizeof(*o));
  o->fp = open_memstream(&o->buf, &o->len);
}

static void outf(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(o->fp, fmt, ap);
  va_end(ap);
}

/* Writes s with XML's five special characters escaped. */
static void outx(out_t *o, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<':
      fputs("&lt;", o->fp);
      break;
    case '>':
      fputs("&gt;", o->fp);
      break;
    case '&':
      fputs("&amp;", o->fp);
      break;
    case '"':
      fputs("&quot;", o->fp);
      break;
    case '\'':
      fputs("&apos;", o->fp);
      break;
    default:
      fputc(*s, o->fp);
    }
  }
}

static void elem(out_t *o, const char *name, const char *value) {
  outf(o, "<%s>", name);
  outx(o, value);
  outf(o, "</%s>", name);
}

static char *request_id(void) {
  unsigned char r[16];
  FILE *fp = fopen("/dev/urandom", "rb");
  if (fp == NULL || fread(r, 1, sizeof(r), fp) != sizeof(r))
    for (int i = 0; i < 16; i++)
      r[i] = (unsigned char)rand();
  if (fp)
    fclose(fp);
  return sim_sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
                     r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                     r[13], r[14], r[15]);
}

static void xml_resp(http_resp_t *resp, int status, out_t *o) {
  fclose(o->fp);
  resp->status = status;
  resp->body = o->buf;
  resp->body_len = o->len;
}

static void ec2_error(http_resp_t *resp, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void ec2_error(http_resp_t *resp, int status, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  out_t o;
  out_open(&o);
  char *rid = request_id();
  outf(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>");
  elem(&o, "Code", code);
  elem(&o, "Message", msg);
  outf(&o, "</Error></Errors><RequestID>%s</RequestID></Response>", rid);
  free(rid);
  xml_resp(resp, status, &o);
}

static void begin(out_t *o, const char *action) {
  out_open(o);
  char *rid = request_id();
  outf(o,
       "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<%sResponse xmlns=\"" NS "\">\n"
       "    <requestId>%s</requestId>\n",
       action, rid);
  free(rid);
}

static void finish(http_resp_t *resp, out_t *o, const char *action) {
  outf(o, "</%sResponse>\n", action);
  xml_resp(resp, 200, o);
}

/* ---- the form ----------------------------------------------------------------------------------
 */

typedef struct form {
  char **names, **values;
  size_t n;
} form_t;

static int hexv(int c) {
  return c >= '0' && c <= '9'   ? c - '0'
         : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                : -1;
}

static char *form_decode(const char *s, size_t n) {
  char *out = malloc(n + 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
      out[o++] = (char)(hexv(s[i + 1]) * 16 + hexv(s[i + 2]));
      i += 2;
    } else {
      out[o++] = s[i] == '+' ? ' ' : s[i];
    }
  }
  out[o] = '\0';
  return out;
}

static void form_parse(const char *body, size_t len, form_t *f) {
  memset(f, 0, sizeof(*f));
  for (size_t i = 0; i < len;) {
    const char *p = body + i;
    const char *amp = memchr(p, '&', len - i);
    size_t l = amp ? (size_t)(amp - p) : len - i;
    if (l) {
      const char *eq = memchr(p, '=', l);
      size_t nl = eq ? (size_t)(eq - p) : l;
      f->names = realloc(f->names, (f->n + 1) * sizeof(char *));
      f->values = realloc(f->values, (f->n + 1) * sizeof(char *));
      f->names[f->n] = form_decode(p, nl);
      f->values[f->n] = eq ? form_decode(eq + 1, l - nl - 1) : strdup("");
      f->n++;
    }
    i += l + 1;
  }
}

static void form_free(form_t *f) {
  for (size_t i = 0; i < f->n; i++) {
    free(f->names[i]);
    free(f->values[i]);
  }
  free(f->names);
  free(f->values);
}

static const char *param(const form_t *f, const char *name) {
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->names[i], name) == 0)
      return f->values[i];
  return NULL;
}

static const char *paramf(const form_t *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *paramf(const form_t *f, const char *fmt, ...) {
  char name[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof(name), fmt, ap);
  va_end(ap);
  return param(f, name);
}

/* Parameter names each action accepts (from the input shapes in EC2's API description; '#' is
 * a list index, 1 and up). */
typedef struct action_shape {
  const char *action;
  const char *params[24];
} action_shape_t;

static const action_shape_t shapes[] = {
    {"RunInstances",
     {"ImageId", "InstanceType", "MinCount", "MaxCount", "ClientToken", "KeyName",
      "SecurityGroupId.#", "SubnetId", "UserData", "InstanceInitiatedShutdownBehavior",
      "TagSpecification.#.ResourceType", "TagSpecification.#.Tag.#.Key",
      "TagSpecification.#.Tag.#.Value", "InstanceMarketOptions.MarketType",
      "InstanceMarketOptions.SpotOptions.SpotInstanceType",
      "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
      "InstanceMarketOptions.SpotOptions.MaxPrice", "DryRun", NULL}},
    {"DescribeInstances",
     {"InstanceId.#", "Filter.#.Name", "Filter.#.Value.#", "MaxResults", "NextToken", "DryRun",
      NULL}},
    {"TerminateInstances", {"InstanceId.#", "DryRun", NULL}},
    {"ImportKeyPair",
     {"KeyName", "PublicKeyMaterial", "TagSpecification.#.ResourceType",
      "TagSpecification.#.Tag.#.Key", "TagSpecification.#.Tag.#.Value", "DryRun", NULL}},
    {"DescribeKeyPairs",
     {"KeyName.#", "KeyPairId.#", "Filter.#.Name", "Filter.#.Value.#", "DryRun", NULL}},
    {"DeleteKeyPair", {"KeyName", "KeyPairId", "DryRun", NULL}},
    {"CreateSecurityGroup",
     {"GroupName", "GroupDescription", "VpcId", "TagSpecification.#.ResourceType",
      "TagSpecification.#.Tag.#.Key", "TagSpecification.#.Tag.#.Value", "DryRun", NULL}},
    {"DescribeSecurityGroups",
     {"GroupId.#", "GroupName.#", "Filter.#.Name", "Filter.#.Value.#", "MaxResults", "NextToken",
      "DryRun", NULL}},
    {"AuthorizeSecurityGroupIngress",
     {"GroupId", "GroupName", "IpPermissions.#.IpProtocol", "IpPermissions.#.FromPort",
      "IpPermissions.#.ToPort", "IpPermissions.#.IpRanges.#.CidrIp",
      "IpPermissions.#.IpRanges.#.Description", "CidrIp", "FromPort", "ToPort", "IpProtocol",
      "DryRun", NULL}},
    {"DeleteSecurityGroup", {"GroupId", "GroupName", "DryRun", NULL}},
};

/* Whether name matches pattern, '#' standing for a positive integer. */
static bool name_match(const char *pat, const char *name) {
  while (*pat && *name) {
    if (*pat == '#') {
      if (!isdigit((unsigned char)*name) || *name == '0')
        return false;
      while (isdigit((unsigned char)*name))
        name++;
      pat++;
    } else if (*pat++ != *name++) {
      return false;
    }
  }
  return *pat == '\0' && *name == '\0';
}

static const action_shape_t *shape_of(const char *action) {
  for (size_t i = 0; action && i < sizeof(shapes) / sizeof(shapes[0]); i++)
    if (strcmp(shapes[i].action, action) == 0)
      return &shapes[i];
  return NULL;
}

/* ---- signatures --------------------------------------------------------------------------- */

/* Checks the request's SigV4 signature. Returns false (resp set) when it is refused. *region
 * gets the credential scope's region. */
static bool check_signature(const http_req_t *req, http_resp_t *resp, char region[64]) {
  const char *auth = http_req_header(req, "Authorization");
  const char *date = http_req_header(req, "X-Amz-Date");
  if (auth == NULL || date == NULL) {
    ec2_error(resp, 401, "AuthFailure",
              "AWS was not able to validate the provided access "
              "credentials");
    return false;
  }
  char ak[128], cdate[16], service[32], sh[512], sig[80];
  if (sscanf(auth,
             "AWS4-HMAC-SHA256 Credential=%127[^/]/%15[^/]/%63[^/]/%31[^/]/aws4_request, "
             "SignedHeaders=%511[^,], Signature=%79s",
             ak, cdate, region, service, sh, sig) != 6) {
    ec2_error(resp, 400, "IncompleteSignature",
              "The request signature does not conform to AWS "
              "standards.");
    return false;
  }
  if (strcmp(ak, g.access_key) != 0) {
    ec2_error(resp, 401, "AuthFailure",
              "AWS was not able to validate the provided access credentials");
    return false;
  }
  /* The date must be the scope's day and within 5 minutes of now. */
  struct tm tm = {0};
  if (strlen(date) != 16 || strncmp(date, cdate, 8) != 0 ||
      strptime(date, "%Y%m%dT%H%M%SZ", &tm) == NULL) {
    ec2_error(resp, 401, "AuthFailure",
              "AWS was not able to validate the provided access "
              "credentials");
    return false;
  }
  long skew = (long)(timegm(&tm) - time(NULL));
  if (skew > 300 || skew < -300) {
    ec2_error(resp, 400, "RequestExpired", "Request has expired.");
    return false;
  }
  if (strcmp(service, "ec2") != 0) {
    ec2_error(resp, 401, "AuthFailure",
              "Credential should be scoped to correct service: "
              "'ec2'.");
    return false;
  }
  /* The signed headers, with their values as received. */
  const char *hdrs[32];
  char *owned[32];
  size_t hn = 0;
  bool host_signed = false;
  for (char *save = NULL, *h = strtok_r(sh, ";", &save); h && hn < 32;
       h = strtok_r(NULL, ";", &save)) {
    const char *v = http_req_header(req, h);
    host_signed |= strcmp(h, "host") == 0;
    owned[hn] = sim_sprintf("%s:%s", h, v ? v : "");
    hdrs[hn] = owned[hn];
    hn++;
  }
  kite__aws_sig_req_t r = {.method = req->method,
                           .path = req->path,
                           .query = req->query,
                           .headers = hdrs,
                           .header_n = hn,
                           .payload = req->body,
                           .payload_len = req->body_len,
                           .region = region,
                           .service = "ec2",
                           .amz_date = date,
                           .access_key = ak,
                           .secret_key = g.secret};
  kite__aws_sig_t s;
  int rc = kite__aws_sign(&r, &s);
  for (size_t i = 0; i < hn; i++)
    free(owned[i]);
  bool ok = rc == 0 && host_signed && kite__aws_str_equal_ct(s.signature, sig);
  if (rc == 0)
    kite__aws_sig_free(&s);
  if (!ok) {
    /* EC2 answers a wrong secret with AuthFailure (other services say SignatureDoesNotMatch). */
    ec2_error(resp, 401, "AuthFailure",
              "AWS was not able to validate the provided access credentials");
    return false;
  }
  return true;
}

/* ---- instances --------------------------------------------------------------------------------
 */

static const char *tag_value(const ec2_inst_t *e, const char *key) {
  for (size_t i = 0; i < e->tag_n; i++)
    if (strcmp(e->tags[i].key, key) == 0)
      return e->tags[i].value;
  return NULL;
}

static const imds_info_t *imds_lookup(void *data) {
  ec2_inst_t *e = data;
  e->info.instance_id = e->id;
  e->info.instance_action = e->notice_json;
  return &e->info;
}

/* The node's host key becomes the one cloud-init was given (as cloud-init's ssh_keys does). */
static void apply_host_key(sim_t *sim, ec2_inst_t *e, machine_t *m) {
  (void)sim;
  e->hostkey_applied = true;
  if (e->host_priv == NULL || e->host_pub == NULL || m->node == NULL)
    return;
  const char *work = kite_local_node_dir(m->node);
  char *root = strdup(work);
  char *slash = strrchr(root, '/');
  if (slash)
    *slash = '\0';
  char *priv = sim_sprintf("%s/sshd/host_key", root);
  char *pub = sim_sprintf("%s/sshd/host_key.pub", root);
  char *tmp = sim_sprintf("%s/sshd/host_key.tmp", root);
  FILE *fp = fopen(tmp, "w");
  if (fp) {
    fchmod(fileno(fp), 0600);
    fputs(e->host_priv, fp);
    fclose(fp);
    rename(tmp, priv);
  }
  fp = fopen(tmp, "w");
  if (fp) {
    fprintf(fp, "%s\n", e->host_pub);
    fclose(fp);
    rename(tmp, pub);
  }
  free(root);
  free(priv);
  free(pub);
  free(tmp);
}

/* The instance's state now, from its machine. */
static const char *inst_state(sim_t *sim, ec2_inst_t *e, const char **reason_code,
                              const char **reason_msg) {
  *reason_code = *reason_msg = NULL;
  if (e->final_) {
    if (e->final_reason[0]) {
      *reason_code = e->final_reason;
      *reason_msg = strcmp(e->final_reason, "Server.SpotInstanceTermination") == 0
                        ? "Server.SpotInstanceTermination: Spot instance termination"
                        : "Client.UserInitiatedShutdown: User initiated shutdown";
    }
    return "terminated";
  }
  machine_t *m = machine_find(sim, e->machine_id);
  if (m == NULL) {
    e->final_ = true;
    snprintf(e->final_reason, sizeof(e->final_reason), "%s",
             e->interrupted           ? "Server.SpotInstanceTermination"
             : e->terminate_requested ? "Client.UserInitiatedShutdown"
                                      : "Server.InternalError");
    imds_stop(e->imds);
    e->imds = NULL;
    e->address[0] = '\0';
    return inst_state(sim, e, reason_code, reason_msg);
  }
  switch (m->state) {
  case M_PROVISIONING:
    return "pending";
  case M_RUNNING:
    if (!e->hostkey_applied)
      apply_host_key(sim, e, m);
    snprintf(e->address, sizeof(e->address), "%s", m->address);
    if (e->spot && e->imds == NULL && !e->interrupted) {
      int rc = imds_start(sim->loop, m->address, g.imds_port, imds_lookup, e, &e->imds);
      if (rc != 0)
        fprintf(stderr, "kite-cloudsim: %s: cannot serve instance metadata on %s:%d: %s\n", e->id,
                m->address, g.imds_port, uv_strerror(rc));
    }
    return "running";
  case M_OFF:
    if (!e->terminate_requested && !e->interrupted) {
      /* The node died on its own (its power switch, a crash): EC2 would show it stopped or
       * terminated; kite treats both as gone. */
      machine_delete(m);
      e->terminate_requested = true;
    }
    return "shutting-down";
  case M_DELETING:
  default:
    return "shutting-down";
  }
}

static void render_instance(sim_t *sim, out_t *o, ec2_inst_t *e) {
  const char *rc, *rm;
  const char *state = inst_state(sim, e, &rc, &rm);
  static const struct {
    const char *name;
    int code;
  } codes[] = {{"pending", 0}, {"running", 16}, {"shutting-down", 32}, {"terminated", 48}};
  int code = 0;
  for (size_t i = 0; i < 4; i++)
    if (strcmp(codes[i].name, state) == 0)
      code = codes[i].code;
  outf(o, "<item>");
  elem(o, "instanceId", e->id);
  elem(o, "imageId", e->image);
  outf(o, "<instanceState><code>%d</code><name>%s</name></instanceState>", code, state);
  outf(o, "<privateDnsName>ip-%s.ec2.internal</privateDnsName><dnsName/>",
       e->address[0] ? e->address : "0-0-0-0");
  if (rc)
    elem(o, "reason", rm);
  elem(o, "keyName", e->key_name);
  outf(o, "<amiLaunchIndex>0</amiLaunchIndex><productCodes/>");
  elem(o, "instanceType", e->type);
  elem(o, "launchTime", e->launch_time);
  outf(o,
       "<placement><availabilityZone>%sa</availabilityZone><groupName/><tenancy>default"
       "</tenancy></placement>",
       e->region);
  outf(o, "<monitoring><state>disabled</state></monitoring>");
  if (e->subnet)
    elem(o, "subnetId", e->subnet);
  if (strcmp(state, "terminated") != 0 && e->address[0]) {
    elem(o, "privateIpAddress", e->address);
    elem(o, "ipAddress", e->address);
  }
  outf(o,
       "<groupSet><item><groupId>%s</groupId><groupName>kite-ssh</groupName></item>"
       "</groupSet>",
       e->sg_id ? e->sg_id : "");
  if (rc) {
    outf(o, "<stateReason>");
    elem(o, "code", rc);
    elem(o, "message", rm);
    outf(o, "</stateReason>");
  }
  outf(o, "<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>"
          "<rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping/>");
  if (e->spot)
    outf(o,
         "<instanceLifecycle>spot</instanceLifecycle><spotInstanceRequestId>sir-%.8s"
         "</spotInstanceRequestId>",
         e->id + 2);
  elem(o, "clientToken", e->client_token ? e->client_token : "");
  outf(o, "<virtualizationType>hvm</virtualizationType><hypervisor>xen</hypervisor>");
  if (e->tag_n) {
    outf(o, "<tagSet>");
    for (size_t i = 0; i < e->tag_n; i++) {
      outf(o, "<item>");
      elem(o, "key", e->tags[i].key);
      elem(o, "value", e->tags[i].value);
      outf(o, "</item>");
    }
    outf(o, "</tagSet>");
  }
  outf(o, "</item>");
}

/* Whether something of region r is visible to the request being answered. */
static bool here(const char *r) {
  return g.region[0] == '\0' || (r && strcmp(r, g.region) == 0);
}

static ec2_inst_t *inst_find(const char *id) {
  for (ec2_inst_t *e = g.insts; id && e; e = e->next)
    if (here(e->region) && strcmp(e->id, id) == 0)
      return e;
  return NULL;
}

static unsigned live_count(sim_t *sim) {
  unsigned n = 0;
  const char *rc, *rm;
  for (ec2_inst_t *e = g.insts; e; e = e->next)
    n += strcmp(inst_state(sim, e, &rc, &rm), "terminated") != 0;
  return n;
}

/* Reads the ed25519 host key pair from a cloud-config user data. */
static void parse_host_key(const char *ud, char **priv, char **pub) {
  *priv = *pub = NULL;
  const char *p = strstr(ud, "\n  ed25519_private: |\n");
  if (p) {
    p += strlen("\n  ed25519_private: |\n");
    size_t cap = strlen(p) + 1, o = 0;
    char *k = malloc(cap);
    while (strncmp(p, "    ", 4) == 0) {
      p += 4;
      size_t l = strcspn(p, "\n");
      memcpy(k + o, p, l);
      o += l;
      k[o++] = '\n';
      p += l + (p[l] == '\n');
    }
    k[o] = '\0';
    *priv = k;
  }
  const char *q = strstr(ud, "\n  ed25519_public: ");
  if (q) {
    q += strlen("\n  ed25519_public: ");
    *pub = strndup(q, strcspn(q, "\r\n"));
  }
}

static void render_run(sim_t *sim, http_resp_t *resp, ec2_inst_t *e) {
  out_t o;
  begin(&o, "RunInstances");
  outf(&o,
       "<reservationId>%s</reservationId><ownerId>" OWNER "</ownerId><groupSet/>"
       "<instancesSet>",
       e->reservation);
  render_instance(sim, &o, e);
  outf(&o, "</instancesSet>");
  finish(resp, &o, "RunInstances");
}

static void run_instances(sim_t *sim, const form_t *f, const char *region, http_resp_t *resp) {
  const char *token = param(f, "ClientToken");
  if (token && strlen(token) > 64) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value (%s) for parameter clientToken is "
              "invalid. Length exceeds 64 characters.",
              token);
    return;
  }
  for (ec2_inst_t *e = g.insts; token && e; e = e->next)
    if (here(e->region) && e->client_token && strcmp(e->client_token, token) == 0) {
      render_run(sim, resp, e); /* idempotent: the same instance again */
      return;
    }
  const char *image = param(f, "ImageId"), *type = param(f, "InstanceType");
  const char *minc = param(f, "MinCount"), *maxc = param(f, "MaxCount");
  if (minc == NULL || maxc == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter %s",
              minc ? "MaxCount" : "MinCount");
    return;
  }
  if (atoi(minc) != 1 || atoi(maxc) != 1) {
    ec2_error(resp, 400, "InvalidParameterValue", "this emulator launches one instance per call");
    return;
  }
  if (image == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter ImageId");
    return;
  }
  if (strncmp(image, "ami-", 4) != 0) {
    ec2_error(resp, 400, "InvalidAMIID.Malformed", "Invalid id: \"%s\" (expecting \"ami-...\")",
              image);
    return;
  }
  if (strstr(image, "notfound")) {
    ec2_error(resp, 400, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist", image);
    return;
  }
  const char *key = param(f, "KeyName");
  key_pair_t *kp = NULL;
  for (key_pair_t *k = g.keys; key && k; k = k->next)
    if (here(k->region) && strcmp(k->name, key) == 0)
      kp = k;
  if (kp == NULL) {
    ec2_error(resp, 400, key ? "InvalidKeyPair.NotFound" : "MissingParameter",
              key ? "The key pair '%s' does not exist" : "this emulator needs KeyName%s",
              key ? key : "");
    return;
  }
  const char *sg = param(f, "SecurityGroupId.1");
  sgroup_t *grp = NULL;
  for (sgroup_t *s = g.groups; sg && s; s = s->next)
    if (here(s->region) && strcmp(s->id, sg) == 0)
      grp = s;
  if (sg && grp == NULL) {
    ec2_error(resp, 400, "InvalidGroup.NotFound", "The security group '%s' does not exist", sg);
    return;
  }
  const char *market = param(f, "InstanceMarketOptions.MarketType");
  bool spot = market && strcmp(market, "spot") == 0;
  if (market && !spot) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value (%s) for parameter MarketType is "
              "invalid.",
              market);
    return;
  }
  const char *maxp = param(f, "InstanceMarketOptions.SpotOptions.MaxPrice");
  if (spot && maxp && atof(maxp) < 0.001) {
    ec2_error(resp, 400, "SpotMaxPriceTooLow",
              "Your Spot request price of %s is lower than the "
              "minimum required Spot request fulfillment price "
              "of 0.0031.",
              maxp);
    return;
  }
  if (sim->faults.no_capacity) {
    ec2_error(resp, 500, "InsufficientInstanceCapacity",
              "We currently do not have sufficient %s capacity in the Availability Zone you "
              "requested (%sa). Our system will be working on provisioning additional capacity.",
              type ? type : "m1.small", region);
    return;
  }
  unsigned limit = sim->faults.droplet_limit ? sim->faults.droplet_limit : 25;
  if (live_count(sim) >= limit) {
    ec2_error(resp, 400, "InstanceLimitExceeded",
              "You have requested more instances (%u) than "
              "your current instance limit of %u allows for "
              "the specified instance type.",
              live_count(sim) + 1, limit);
    return;
  }
  /* User data: base64 of at most 16 KiB. */
  const char *ud64 = param(f, "UserData");
  char *ud = NULL;
  if (ud64) {
    size_t n = strlen(ud64);
    if (n > MAX_USER_DATA * 4 / 3 + 4 || n % 4) {
      ec2_error(resp, 400, "InvalidParameterValue",
                "User data is limited to 16384 bytes, in "
                "base64");
      return;
    }
    ud = calloc(1, n + 1);
    if (EVP_DecodeBlock((unsigned char *)ud, (const unsigned char *)ud64, (int)n) < 0) {
      free(ud);
      ec2_error(resp, 400, "InvalidParameterValue", "Invalid BASE64 encoding of user data");
      return;
    }
  }
  ec2_inst_t *e = calloc(1, sizeof(*e));
  snprintf(e->id, sizeof(e->id), "i-%017llx", (unsigned long long)++g.seq);
  snprintf(e->reservation, sizeof(e->reservation), "r-%017llx", (unsigned long long)g.seq);
  e->client_token = token ? strdup(token) : NULL;
  e->image = strdup(image);
  e->type = strdup(type ? type : "m1.small");
  e->key_name = strdup(key);
  e->sg_id = sg ? strdup(sg) : NULL;
  e->subnet = param(f, "SubnetId") ? strdup(param(f, "SubnetId")) : NULL;
  e->region = strdup(region);
  e->spot = spot;
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(e->launch_time, sizeof(e->launch_time), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
  for (unsigned s = 1; paramf(f, "TagSpecification.%u.ResourceType", s); s++) {
    if (strcmp(paramf(f, "TagSpecification.%u.ResourceType", s), "instance") != 0)
      continue;
    for (unsigned t = 1; paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t); t++) {
      e->tags = realloc(e->tags, (e->tag_n + 1) * sizeof(kv_t));
      e->tags[e->tag_n].key = strdup(paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t));
      const char *v = paramf(f, "TagSpecification.%u.Tag.%u.Value", s, t);
      e->tags[e->tag_n].value = strdup(v ? v : "");
      e->tag_n++;
    }
  }
  if (ud)
    parse_host_key(ud, &e->host_priv, &e->host_pub);
  /* The node carries the pool tag first, so a test can count what runs for its pool. */
  const char *pool = tag_value(e, "kite:pool");
  const char *tags[1] = {pool ? pool : "kite-cloudsim-ec2"};
  const char *name = tag_value(e, "Name");
  machine_opts_t mo = {.name = name ? name : e->id,
                       .tags = tags,
                       .tag_n = 1,
                       .region = region,
                       .size = e->type,
                       .image = image,
                       .user_data = ud,
                       .authorized_key = kp->material,
                       .cloud = CLOUD_EC2};
  machine_t *m = machine_create(sim, &mo);
  free(ud);
  if (m == NULL) {
    ec2_error(resp, 500, "InternalError", "An internal error has occurred");
    free(e->client_token);
    free(e->image);
    free(e->type);
    free(e->key_name);
    free(e->sg_id);
    free(e->subnet);
    free(e->region);
    free(e->host_priv);
    free(e->host_pub);
    for (size_t i = 0; i < e->tag_n; i++) {
      free(e->tags[i].key);
      free(e->tags[i].value);
    }
    free(e->tags);
    free(e);
    return;
  }
  e->machine_id = m->id;
  e->next = g.insts;
  g.insts = e;
  g.created++;
  unsigned live = live_count(sim);
  if (live > g.peak)
    g.peak = live;
  fprintf(stderr, "kite-cloudsim: ec2 %s (%s%s) on machine %llu\n", e->id, e->type,
          spot ? ", spot" : "", (unsigned long long)m->id);
  render_run(sim, resp, e);
}

/* Whether instance e passes filter (name, values). *bad set for an unknown filter name. */
static bool filter_pass(sim_t *sim, ec2_inst_t *e, const char *name, const char **vals, size_t n,
                        bool *bad) {
  const char *rc, *rm;
  const char *v = NULL;
  char buf[16];
  if (strcmp(name, "instance-state-name") == 0) {
    v = inst_state(sim, e, &rc, &rm);
  } else if (strcmp(name, "instance-id") == 0) {
    v = e->id;
  } else if (strcmp(name, "client-token") == 0) {
    v = e->client_token;
  } else if (strcmp(name, "key-name") == 0) {
    v = e->key_name;
  } else if (strcmp(name, "instance.group-id") == 0 || strcmp(name, "group-id") == 0) {
    v = e->sg_id;
  } else if (strcmp(name, "instance-lifecycle") == 0) {
    v = e->spot ? "spot" : NULL;
  } else if (strcmp(name, "instance-state-code") == 0) {
    const char *s = inst_state(sim, e, &rc, &rm);
    snprintf(buf, sizeof(buf), "%d",
             strcmp(s, "pending") == 0      ? 0
             : strcmp(s, "running") == 0    ? 16
             : strcmp(s, "terminated") == 0 ? 48
                                            : 32);
    v = buf;
  } else if (strncmp(name, "tag:", 4) == 0) {
    v = tag_value(e, name + 4);
  } else if (strcmp(name, "tag-key") == 0) {
    for (size_t i = 0; i < n; i++)
      for (size_t t = 0; t < e->tag_n; t++)
        if (fnmatch(vals[i], e->tags[t].key, 0) == 0)
          return true;
    return false;
  } else {
    *bad = true;
    return false;
  }
  for (size_t i = 0; v && i < n; i++)
    if (fnmatch(vals[i], v, 0) == 0)
      return true;
  return false;
}

static void describe_instances(sim_t *sim, const form_t *f, http_resp_t *resp) {
  /* InstanceId.N: every one must exist. */
  size_t ids = 0;
  for (unsigned k = 1; paramf(f, "InstanceId.%u", k); k++) {
    ids++;
    if (inst_find(paramf(f, "InstanceId.%u", k)) == NULL) {
      ec2_error(resp, 400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist",
                paramf(f, "InstanceId.%u", k));
      return;
    }
  }
  const char *mr = param(f, "MaxResults"), *nt = param(f, "NextToken");
  long max = mr ? atol(mr) : 0;
  if (mr && ids) {
    ec2_error(resp, 400, "InvalidParameterCombination",
              "The parameter instancesSet cannot be "
              "used with the parameter maxResults");
    return;
  }
  if (mr && (max < 5 || max > 1000)) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "Value ( %s ) for parameter maxResults is "
              "invalid. Expecting a value between 5 and "
              "1000.",
              mr);
    return;
  }
  long skip = 0;
  if (nt && (sscanf(nt, "kite-page-%ld", &skip) != 1 || skip < 0)) {
    ec2_error(resp, 400, "InvalidParameterValue", "Invalid value '%s' for nextToken", nt);
    return;
  }
  /* Oldest first, as a list would be read. */
  size_t total = 0;
  for (ec2_inst_t *e = g.insts; e; e = e->next)
    total += here(e->region);
  ec2_inst_t **all = calloc(total + 1, sizeof(*all));
  size_t k = total;
  for (ec2_inst_t *e = g.insts; e; e = e->next)
    if (here(e->region))
      all[--k] = e;
  out_t o;
  begin(&o, "DescribeInstances");
  outf(&o, "<reservationSet>");
  long matched = 0, shown = 0;
  bool more = false;
  for (size_t i = 0; i < total; i++) {
    ec2_inst_t *e = all[i];
    bool pass = true;
    if (ids) {
      pass = false;
      for (unsigned j = 1; paramf(f, "InstanceId.%u", j); j++)
        pass |= strcmp(paramf(f, "InstanceId.%u", j), e->id) == 0;
    }
    for (unsigned fi = 1; pass && paramf(f, "Filter.%u.Name", fi); fi++) {
      const char *vals[32];
      size_t n = 0;
      for (unsigned vi = 1; n < 32 && paramf(f, "Filter.%u.Value.%u", fi, vi); vi++)
        vals[n++] = paramf(f, "Filter.%u.Value.%u", fi, vi);
      bool bad = false;
      pass = filter_pass(sim, e, paramf(f, "Filter.%u.Name", fi), vals, n, &bad);
      if (bad) {
        fclose(o.fp);
        free(o.buf);
        free(all);
        ec2_error(resp, 400, "InvalidParameterValue", "The filter '%s' is invalid",
                  paramf(f, "Filter.%u.Name", fi));
        return;
      }
    }
    if (!pass)
      continue;
    if (matched++ < skip)
      continue;
    if (max && shown == max) {
      more = true;
      break;
    }
    shown++;
    outf(&o,
         "<item><reservationId>%s</reservationId><ownerId>" OWNER "</ownerId><groupSet/>"
         "<instancesSet>",
         e->reservation);
    render_instance(sim, &o, e);
    outf(&o, "</instancesSet></item>");
  }
  free(all);
  outf(&o, "</reservationSet>");
  if (more)
    outf(&o, "<nextToken>kite-page-%ld</nextToken>", skip + shown);
  finish(resp, &o, "DescribeInstances");
}

static void terminate_instances(sim_t *sim, const form_t *f, http_resp_t *resp) {
  if (param(f, "InstanceId.1") == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter InstanceId");
    return;
  }
  for (unsigned k = 1; paramf(f, "InstanceId.%u", k); k++)
    if (inst_find(paramf(f, "InstanceId.%u", k)) == NULL) {
      ec2_error(resp, 400, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist",
                paramf(f, "InstanceId.%u", k));
      return;
    }
  out_t o;
  begin(&o, "TerminateInstances");
  outf(&o, "<instancesSet>");
  for (unsigned k = 1; paramf(f, "InstanceId.%u", k); k++) {
    ec2_inst_t *e = inst_find(paramf(f, "InstanceId.%u", k));
    const char *rc, *rm;
    const char *before = inst_state(sim, e, &rc, &rm);
    if (strcmp(before, "terminated") != 0) {
      e->terminate_requested = true;
      e->interrupt_due = 0;
      machine_t *m = machine_find(sim, e->machine_id);
      if (m)
        machine_delete(m);
      imds_stop(e->imds);
      e->imds = NULL;
    }
    const char *after = inst_state(sim, e, &rc, &rm);
    outf(&o,
         "<item><instanceId>%s</instanceId><currentState><code>%d</code><name>%s</name>"
         "</currentState><previousState><code>%d</code><name>%s</name></previousState>"
         "</item>",
         e->id, strcmp(after, "terminated") == 0 ? 48 : 32, after,
         strcmp(before, "running") == 0      ? 16
         : strcmp(before, "pending") == 0    ? 0
         : strcmp(before, "terminated") == 0 ? 48
                                             : 32,
         before);
  }
  outf(&o, "</instancesSet>");
  finish(resp, &o, "TerminateInstances");
}

/* ---- key pairs and security groups ------------------------------------------------------------
 */

static bool managed_tag(const form_t *f, const char *type) {
  for (unsigned s = 1; paramf(f, "TagSpecification.%u.ResourceType", s); s++) {
    if (strcmp(paramf(f, "TagSpecification.%u.ResourceType", s), type) != 0)
      continue;
    for (unsigned t = 1; paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t); t++)
      if (strcmp(paramf(f, "TagSpecification.%u.Tag.%u.Key", s, t), "kite:managed") == 0)
        return true;
  }
  return false;
}

static void managed_tagset(out_t *o, bool managed) {
  if (managed)
    outf(o, "<tagSet><item><key>kite:managed</key><value>true</value></item></tagSet>");
  else
    outf(o, "<tagSet/>");
}

static void import_key_pair(const form_t *f, http_resp_t *resp) {
  const char *name = param(f, "KeyName"), *mat64 = param(f, "PublicKeyMaterial");
  if (name == NULL || mat64 == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter %s",
              name ? "PublicKeyMaterial" : "KeyName");
    return;
  }
  for (key_pair_t *k = g.keys; k; k = k->next)
    if (here(k->region) && strcmp(k->name, name) == 0) {
      ec2_error(resp, 400, "InvalidKeyPair.Duplicate", "The keypair already exists");
      return;
    }
  size_t n = strlen(mat64);
  char *mat = calloc(1, n + 1);
  if (n % 4 || EVP_DecodeBlock((unsigned char *)mat, (const unsigned char *)mat64, (int)n) < 0 ||
      strncmp(mat, "ssh-", 4) != 0) {
    free(mat);
    ec2_error(resp, 400, "InvalidKey.Format", "Key is not in valid OpenSSH public key format");
    return;
  }
  mat[strcspn(mat, "\r\n")] = '\0';
  key_pair_t *k = calloc(1, sizeof(*k));
  k->name = strdup(name);
  k->material = mat;
  k->id = sim_sprintf("key-%017llx", (unsigned long long)++g.seq);
  char h[65];
  kite__aws_sha256_hex(mat, strlen(mat), h);
  k->fingerprint = sim_sprintf("%.43s=", h);
  k->managed = managed_tag(f, "key-pair");
  k->region = strdup(g.region);
  k->next = g.keys;
  g.keys = k;
  out_t o;
  begin(&o, "ImportKeyPair");
  elem(&o, "keyFingerprint", k->fingerprint);
  elem(&o, "keyName", k->name);
  elem(&o, "keyPairId", k->id);
  managed_tagset(&o, k->managed);
  finish(resp, &o, "ImportKeyPair");
}

static void describe_key_pairs(const form_t *f, http_resp_t *resp) {
  for (unsigned i = 1; paramf(f, "KeyName.%u", i); i++) {
    bool found = false;
    for (key_pair_t *k = g.keys; k; k = k->next)
      found |= here(k->region) && strcmp(k->name, paramf(f, "KeyName.%u", i)) == 0;
    if (!found) {
      ec2_error(resp, 400, "InvalidKeyPair.NotFound", "The key pair '%s' does not exist",
                paramf(f, "KeyName.%u", i));
      return;
    }
  }
  out_t o;
  begin(&o, "DescribeKeyPairs");
  outf(&o, "<keySet>");
  for (key_pair_t *k = g.keys; k; k = k->next) {
    if (!here(k->region))
      continue;
    bool want = param(f, "KeyName.1") == NULL;
    for (unsigned i = 1; paramf(f, "KeyName.%u", i); i++)
      want |= strcmp(k->name, paramf(f, "KeyName.%u", i)) == 0;
    if (!want)
      continue;
    outf(&o, "<item>");
    elem(&o, "keyPairId", k->id);
    elem(&o, "keyName", k->name);
    elem(&o, "keyFingerprint", k->fingerprint);
    elem(&o, "keyType", "ed25519");
    managed_tagset(&o, k->managed);
    outf(&o, "</item>");
  }
  outf(&o, "</keySet>");
  finish(resp, &o, "DescribeKeyPairs");
}

static void delete_key_pair(const form_t *f, http_resp_t *resp) {
  const char *name = param(f, "KeyName");
  for (key_pair_t **pp = &g.keys; name && *pp; pp = &(*pp)->next)
    if (here((*pp)->region) && strcmp((*pp)->name, name) == 0) {
      key_pair_t *k = *pp;
      *pp = k->next;
      free(k->name);
      free(k->id);
      free(k->material);
      free(k->fingerprint);
      free(k->region);
      free(k);
      break;
    }
  out_t o;
  begin(&o, "DeleteKeyPair");
  outf(&o, "<return>true</return>");
  finish(resp, &o, "DeleteKeyPair");
}

static void create_security_group(const form_t *f, http_resp_t *resp) {
  const char *name = param(f, "GroupName"), *desc = param(f, "GroupDescription");
  if (name == NULL || desc == NULL) {
    ec2_error(resp, 400, "MissingParameter", "The request must contain the parameter %s",
              name ? "GroupDescription" : "GroupName");
    return;
  }
  for (sgroup_t *s = g.groups; s; s = s->next)
    if (here(s->region) && strcmp(s->name, name) == 0) {
      ec2_error(resp, 400, "InvalidGroup.Duplicate",
                "The security group '%s' already exists "
                "for VPC 'vpc-0kite'",
                name);
      return;
    }
  sgroup_t *s = calloc(1, sizeof(*s));
  s->id = sim_sprintf("sg-%017llx", (unsigned long long)++g.seq);
  s->name = strdup(name);
  s->description = strdup(desc);
  s->perms = strdup("");
  s->managed = managed_tag(f, "security-group");
  s->region = strdup(g.region);
  s->next = g.groups;
  g.groups = s;
  out_t o;
  begin(&o, "CreateSecurityGroup");
  outf(&o, "<return>true</return>");
  elem(&o, "groupId", s->id);
  managed_tagset(&o, s->managed);
  finish(resp, &o, "CreateSecurityGroup");
}

static void describe_security_groups(const form_t *f, http_resp_t *resp) {
  for (unsigned fi = 1; paramf(f, "Filter.%u.Name", fi); fi++) {
    const char *n = paramf(f, "Filter.%u.Name", fi);
    if (strcmp(n, "group-name") != 0 && strcmp(n, "group-id") != 0) {
      ec2_error(resp, 400, "InvalidParameterValue", "The filter '%s' is invalid", n);
      return;
    }
  }
  out_t o;
  begin(&o, "DescribeSecurityGroups");
  outf(&o, "<securityGroupInfo>");
  for (sgroup_t *s = g.groups; s; s = s->next) {
    bool pass = here(s->region);
    for (unsigned fi = 1; pass && paramf(f, "Filter.%u.Name", fi); fi++) {
      const char *n = paramf(f, "Filter.%u.Name", fi);
      const char *v = strcmp(n, "group-name") == 0 ? s->name : s->id;
      pass = false;
      for (unsigned vi = 1; paramf(f, "Filter.%u.Value.%u", fi, vi); vi++)
        pass |= fnmatch(paramf(f, "Filter.%u.Value.%u", fi, vi), v, 0) == 0;
    }
    if (param(f, "GroupId.1")) {
      bool any = false;
      for (unsigned i = 1; paramf(f, "GroupId.%u", i); i++)
        any |= strcmp(paramf(f, "GroupId.%u", i), s->id) == 0;
      pass &= any;
    }
    if (!pass)
      continue;
    outf(&o, "<item><ownerId>" OWNER "</ownerId>");
    elem(&o, "groupId", s->id);
    elem(&o, "groupName", s->name);
    elem(&o, "groupDescription", s->description);
    outf(&o, "<vpcId>vpc-0kite</vpcId><ipPermissions>");
    for (char *l = s->perms; *l;) {
      char proto[8];
      int from, to;
      char cidr[64];
      if (sscanf(l, "%7[^:]:%d-%d:%63s", proto, &from, &to, cidr) == 4)
        outf(&o,
             "<item><ipProtocol>%s</ipProtocol><fromPort>%d</fromPort><toPort>%d</toPort>"
             "<groups/><ipRanges><item><cidrIp>%s</cidrIp></item></ipRanges>"
             "<ipv6Ranges/><prefixListIds/></item>",
             proto, from, to, cidr);
      l += strcspn(l, "\n");
      if (*l)
        l++;
    }
    outf(&o, "</ipPermissions><ipPermissionsEgress/>");
    managed_tagset(&o, s->managed);
    outf(&o, "</item>");
  }
  outf(&o, "</securityGroupInfo>");
  finish(resp, &o, "DescribeSecurityGroups");
}

static sgroup_t *group_by(const form_t *f) {
  const char *id = param(f, "GroupId"), *name = param(f, "GroupName");
  for (sgroup_t *s = g.groups; s; s = s->next)
    if (here(s->region) &&
        ((id && strcmp(s->id, id) == 0) || (!id && name && strcmp(s->name, name) == 0)))
      return s;
  return NULL;
}

static void authorize_ingress(const form_t *f, http_resp_t *resp) {
  sgroup_t *s = group_by(f);
  if (s == NULL) {
    ec2_error(resp, 400, "InvalidGroup.NotFound", "The security group '%s' does not exist",
              param(f, "GroupId") ? param(f, "GroupId") : "");
    return;
  }
  for (unsigned p = 1; paramf(f, "IpPermissions.%u.IpProtocol", p); p++) {
    const char *from = paramf(f, "IpPermissions.%u.FromPort", p);
    const char *to = paramf(f, "IpPermissions.%u.ToPort", p);
    for (unsigned r = 1; paramf(f, "IpPermissions.%u.IpRanges.%u.CidrIp", p, r); r++) {
      char *line = sim_sprintf("%s:%s-%s:%s\n", paramf(f, "IpPermissions.%u.IpProtocol", p),
                               from ? from : "-1", to ? to : "-1",
                               paramf(f, "IpPermissions.%u.IpRanges.%u.CidrIp", p, r));
      if (strstr(s->perms, line)) {
        free(line);
        ec2_error(resp, 400, "InvalidPermission.Duplicate",
                  "the specified rule already "
                  "exists");
        return;
      }
      char *np = sim_sprintf("%s%s", s->perms, line);
      free(s->perms);
      s->perms = np;
      free(line);
    }
  }
  out_t o;
  begin(&o, "AuthorizeSecurityGroupIngress");
  outf(&o, "<return>true</return>");
  finish(resp, &o, "AuthorizeSecurityGroupIngress");
}

static void delete_security_group(sim_t *sim, const form_t *f, http_resp_t *resp) {
  sgroup_t *s = group_by(f);
  if (s == NULL) {
    ec2_error(resp, 400, "InvalidGroup.NotFound", "The security group '%s' does not exist",
              param(f, "GroupId") ? param(f, "GroupId") : "");
    return;
  }
  const char *rc, *rm;
  for (ec2_inst_t *e = g.insts; e; e = e->next)
    if (e->sg_id && strcmp(e->sg_id, s->id) == 0 &&
        strcmp(inst_state(sim, e, &rc, &rm), "terminated") != 0) {
      ec2_error(resp, 400, "DependencyViolation", "resource %s has a dependent object", s->id);
      return;
    }
  for (sgroup_t **pp = &g.groups; *pp; pp = &(*pp)->next)
    if (*pp == s) {
      *pp = s->next;
      break;
    }
  free(s->id);
  free(s->name);
  free(s->description);
  free(s->region);
  free(s->perms);
  free(s);
  out_t o;
  begin(&o, "DeleteSecurityGroup");
  outf(&o, "<return>true</return>");
  finish(resp, &o, "DeleteSecurityGroup");
}

/* ---- control ----------------------------------------------------------------------------------
 */

static void interrupt_now(sim_t *sim, ec2_inst_t *e) {
  e->interrupt_due = 0;
  e->interrupted = true;
  machine_t *m = machine_find(sim, e->machine_id);
  fprintf(stderr, "kite-cloudsim: ec2 %s: spot interruption, the instance dies now\n", e->id);
  imds_stop(e->imds);
  e->imds = NULL;
  if (m)
    machine_kill(m, true);
}

static void on_sync_closed(uv_handle_t *h) {
  (void)h;
  g.sync_closed = true;
}

/* Every 100 ms: instances that became running get their host key and metadata service; due
 * interruptions happen; at shutdown every metadata service is closed, then this timer. */
static void on_sync(uv_timer_t *t) {
  sim_t *sim = g.sim;
  uint64_t now = uv_now(t->loop);
  for (ec2_inst_t *e = g.insts; e; e = e->next) {
    if (sim->stopping) {
      imds_stop(e->imds);
      e->imds = NULL;
      continue;
    }
    if (e->interrupt_due && now >= e->interrupt_due)
      interrupt_now(sim, e);
    const char *rc, *rm;
    (void)inst_state(sim, e, &rc, &rm);
  }
  if (sim->stopping)
    uv_close((uv_handle_t *)&g.sync, on_sync_closed);
}

static void control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  g.region[0] = '\0'; /* the control endpoint sees every region */
  if (strcmp(req->path, "/_sim/ec2/state") == 0 && strcmp(req->method, "GET") == 0) {
    json_t *list = json_array();
    unsigned by[4] = {0};
    const char *names[4] = {"pending", "running", "shutting-down", "terminated"};
    for (ec2_inst_t *e = g.insts; e; e = e->next) {
      const char *rc, *rm;
      const char *s = inst_state(sim, e, &rc, &rm);
      for (int i = 0; i < 4; i++)
        by[i] += strcmp(s, names[i]) == 0;
      json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s?, s:b, s:s?, s:s?}", "id", e->id,
                                            "state", s, "address", e->address, "client_token",
                                            e->client_token, "spot", e->spot, "pool",
                                            tag_value(e, "kite:pool"), "region", e->region));
    }
    unsigned keys = 0, groups = 0;
    for (key_pair_t *k = g.keys; k; k = k->next)
      keys++;
    for (sgroup_t *s = g.groups; s; s = s->next)
      groups++;
    json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o}", "live",
                          by[0] + by[1] + by[2], "pending", by[0], "running", by[1],
                          "shutting_down", by[2], "terminated", by[3], "created", g.created,
                          "key_pairs", keys, "security_groups", groups, "instances", list);
    json_object_set_new(j, "peak", json_integer(g.peak));
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    http_json(resp, 200, s);
    return;
  }
  char id[40], tail[16];
  if (sscanf(req->path, "/_sim/ec2/instances/%39[^/]/%15s", id, tail) == 2 &&
      strcmp(tail, "interrupt") == 0 && strcmp(req->method, "POST") == 0) {
    ec2_inst_t *e = inst_find(id);
    const char *rc, *rm;
    if (e == NULL || strcmp(inst_state(sim, e, &rc, &rm), "running") != 0) {
      http_error(resp, 404, "not_found", "no such running instance");
      return;
    }
    if (!e->spot) {
      http_error(resp, 422, "not_spot", "only spot instances are interrupted");
      return;
    }
    json_error_t je;
    json_t *j = req->body_len ? json_loadb(req->body, req->body_len, 0, &je) : NULL;
    json_t *nm = json_object_get(j, "notice_ms");
    uint64_t notice = json_is_integer(nm) ? (uint64_t)json_integer_value(nm) : 2000;
    json_decref(j);
    /* instance-action's time has second precision, as EC2's does. */
    time_t when = time(NULL) + (time_t)((notice + 999) / 1000);
    struct tm tm;
    gmtime_r(&when, &tm);
    char ts[32];
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    free(e->notice_json);
    e->notice_json = sim_sprintf("{\"action\": \"terminate\", \"time\": \"%s\"}", ts);
    e->interrupt_due = uv_now(sim->loop) + notice;
    if (e->interrupt_due == 0)
      e->interrupt_due = 1;
    fprintf(stderr, "kite-cloudsim: ec2 %s: spot interruption notice, dies at %s\n", e->id, ts);
    http_json(resp, 200, sim_sprintf("{\"ok\":true,\"time\":\"%s\"}", ts));
    return;
  }
  http_error(resp, 404, "not_found", "no such control route");
}

/* ---- dispatch -----------------------------------------------------------------------------------
 */

bool ec2_api_is_request(const http_req_t *req) {
  return strcmp(req->path, "/") == 0 && strcmp(req->method, "POST") == 0;
}

bool ec2_api_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (strncmp(req->path, "/_sim/ec2/", 10) == 0) {
    ec2_init(sim);
    control(sim, req, resp);
    return true;
  }
  if (!ec2_api_is_request(req))
    return false;
  ec2_init(sim);
  char region[64] = "";
  g.region[0] = '\0';
  if (!check_signature(req, resp, region))
    return true;
  snprintf(g.region, sizeof(g.region), "%s", region);
  form_t f;
  form_parse(req->body, req->body_len, &f);
  const char *action = param(&f, "Action"), *version = param(&f, "Version");
  const action_shape_t *shape = shape_of(action);
  if (shape == NULL) {
    ec2_error(resp, 400, "InvalidAction", "The action %s is not valid for this web service.",
              action ? action : "(none)");
  } else if (version == NULL || strcmp(version, "2016-11-15") != 0) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "this emulator speaks API version 2016-11-15, "
              "not %s",
              version ? version : "(none)");
  } else {
    for (size_t i = 0; i < f.n; i++) {
      if (strcmp(f.names[i], "Action") == 0 || strcmp(f.names[i], "Version") == 0)
        continue;
      bool ok = false;
      for (size_t k = 0; shape->params[k] && !ok; k++)
        ok = name_match(shape->params[k], f.names[i]);
      if (!ok) {
        ec2_error(resp, 400, "UnknownParameter", "The parameter %s is not recognized", f.names[i]);
        form_free(&f);
        return true;
      }
    }
    if (strcmp(action, "RunInstances") == 0)
      run_instances(sim, &f, region, resp);
    else if (strcmp(action, "DescribeInstances") == 0)
      describe_instances(sim, &f, resp);
    else if (strcmp(action, "TerminateInstances") == 0)
      terminate_instances(sim, &f, resp);
    else if (strcmp(action, "ImportKeyPair") == 0)
      import_key_pair(&f, resp);
    else if (strcmp(action, "DescribeKeyPairs") == 0)
      describe_key_pairs(&f, resp);
    else if (strcmp(action, "DeleteKeyPair") == 0)
      delete_key_pair(&f, resp);
    else if (strcmp(action, "CreateSecurityGroup") == 0)
      create_security_group(&f, resp);
    else if (strcmp(action, "DescribeSecurityGroups") == 0)
      describe_security_groups(&f, resp);
    else if (strcmp(action, "AuthorizeSecurityGroupIngress") == 0)
      authorize_ingress(&f, resp);
    else if (strcmp(action, "DeleteSecurityGroup") == 0)
      delete_security_group(sim, &f, resp);
  }
  form_free(&f);
  return true;
}

void ec2_api_free(sim_t *sim) {
  (void)sim;
  /* Instances' timers and metadata services belong to the loop, which is gone by now: only
   * memory is left to free. */
  while (g.insts) {
    ec2_inst_t *e = g.insts;
    g.insts = e->next;
    free(e->client_token);
    free(e->image);
    free(e->type);
    free(e->key_name);
    free(e->sg_id);
    free(e->subnet);
    free(e->region);
    free(e->host_priv);
    free(e->host_pub);
    free(e->notice_json);
    for (size_t i = 0; i < e->tag_n; i++) {
      free(e->tags[i].key);
      free(e->tags[i].value);
    }
    free(e->tags);
    free(e);
  }
  while (g.keys) {
    key_pair_t *k = g.keys;
    g.keys = k->next;
    free(k->name);
    free(k->id);
    free(k->material);
    free(k->fingerprint);
    free(k->region);
    free(k);
  }
  while (g.groups) {
    sgroup_t *s = g.groups;
    g.groups = s->next;
    free(s->id);
    free(s->name);
    free(s->description);
    free(s->region);
    free(s->perms);
    free(s);
  }
  free(g.access_key);
  free(g.secret);
  memset(&g, 0, sizeof(g));
}
