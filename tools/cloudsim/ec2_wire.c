/* The EC2 Query API's wire format, for the EC2 front: form-encoded request bodies, the input
 * shapes of the actions the emulator knows (a parameter outside its action's shape is refused
 * with UnknownParameter, as EC2 does), Signature Version 4 recomputed and checked for every
 * call (a wrong secret is refused as EC2 refuses it: 401 AuthFailure), and the XML of answers
 * (EC2's namespace, requestId) and of errors (<Response><Errors>…<RequestID>). Knows nothing
 * of instances or of the account's other resources. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ec2_impl.h"
#include "providers/aws/aws_impl.h"

/* ---- answers -------------------------------------------------------------------------------- */

static void out_open(ec2_out_t *o) {
  memset(o, 0, sizeof(*o));
  o->fp = open_memstream(&o->buf, &o->len);
}

void ec2_outf(ec2_out_t *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(o->fp, fmt, ap);
  va_end(ap);
}

void ec2_outx(ec2_out_t *o, const char *s) {
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

void ec2_elem(ec2_out_t *o, const char *name, const char *value) {
  ec2_outf(o, "<%s>", name);
  ec2_outx(o, value);
  ec2_outf(o, "</%s>", name);
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

static void xml_resp(http_resp_t *resp, int status, ec2_out_t *o) {
  fclose(o->fp);
  resp->status = status;
  resp->body = o->buf;
  resp->body_len = o->len;
}

void ec2_error(http_resp_t *resp, int status, const char *code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ec2_out_t o;
  out_open(&o);
  char *rid = request_id();
  ec2_outf(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>");
  ec2_elem(&o, "Code", code);
  ec2_elem(&o, "Message", msg);
  ec2_outf(&o, "</Error></Errors><RequestID>%s</RequestID></Response>", rid);
  free(rid);
  xml_resp(resp, status, &o);
}

void ec2_error_body(http_resp_t *resp, int status, const char *code, const char *message) {
  ec2_error(resp, status, code, "%s", message);
}

void ec2_discard(ec2_out_t *o) {
  fclose(o->fp);
  free(o->buf);
  memset(o, 0, sizeof(*o));
}

void ec2_begin(ec2_out_t *o, const char *action) {
  out_open(o);
  char *rid = request_id();
  ec2_outf(o,
           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<%sResponse xmlns=\"" EC2_NS "\">\n"
           "    <requestId>%s</requestId>\n",
           action, rid);
  free(rid);
}

void ec2_finish(http_resp_t *resp, ec2_out_t *o, const char *action) {
  ec2_outf(o, "</%sResponse>\n", action);
  xml_resp(resp, 200, o);
}

/* ---- the form ------------------------------------------------------------------------------- */

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

void ec2_form_parse(const char *body, size_t len, ec2_form_t *f) {
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

void ec2_form_free(ec2_form_t *f) {
  for (size_t i = 0; i < f->n; i++) {
    free(f->names[i]);
    free(f->values[i]);
  }
  free(f->names);
  free(f->values);
}

const char *ec2_param(const ec2_form_t *f, const char *name) {
  for (size_t i = 0; i < f->n; i++)
    if (strcmp(f->names[i], name) == 0)
      return f->values[i];
  return NULL;
}

const char *ec2_paramf(const ec2_form_t *f, const char *fmt, ...) {
  char name[160];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof(name), fmt, ap);
  va_end(ap);
  return ec2_param(f, name);
}

/* Parameter names each action accepts (from the input shapes in EC2's API description; '#' is
 * a list index, 1 and up). */
typedef struct action_shape {
  const char *action;
  const char *params[24];
} action_shape_t;

static const action_shape_t shapes[] = {
    {"RunInstances",
     {"ImageId",
      "InstanceType",
      "MinCount",
      "MaxCount",
      "ClientToken",
      "KeyName",
      "SecurityGroupId.#",
      "SubnetId",
      "UserData",
      "InstanceInitiatedShutdownBehavior",
      "TagSpecification.#.ResourceType",
      "TagSpecification.#.Tag.#.Key",
      "TagSpecification.#.Tag.#.Value",
      "InstanceMarketOptions.MarketType",
      "InstanceMarketOptions.SpotOptions.SpotInstanceType",
      "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
      "InstanceMarketOptions.SpotOptions.MaxPrice",
      "Placement.AvailabilityZone",
      "DryRun",
      NULL}},
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
    {"DescribeInstanceTypes",
     {"InstanceType.#", "Filter.#.Name", "Filter.#.Value.#", "MaxResults", "NextToken", "DryRun",
      NULL}},
    {"DescribeSpotPriceHistory",
     {"StartTime", "EndTime", "InstanceType.#", "ProductDescription.#", "Filter.#.Name",
      "Filter.#.Value.#", "AvailabilityZone", "MaxResults", "NextToken", "DryRun", NULL}},
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

const char *ec2_check_call(const ec2_form_t *f, http_resp_t *resp) {
  const char *action = ec2_param(f, "Action"), *version = ec2_param(f, "Version");
  const action_shape_t *shape = shape_of(action);
  if (shape == NULL) {
    ec2_error(resp, 400, "InvalidAction", "The action %s is not valid for this web service.",
              action ? action : "(none)");
    return NULL;
  }
  if (version == NULL || strcmp(version, EC2_VERSION) != 0) {
    ec2_error(resp, 400, "InvalidParameterValue",
              "this emulator speaks API version 2016-11-15, "
              "not %s",
              version ? version : "(none)");
    return NULL;
  }
  for (size_t i = 0; i < f->n; i++) {
    if (strcmp(f->names[i], "Action") == 0 || strcmp(f->names[i], "Version") == 0)
      continue;
    bool ok = false;
    for (size_t k = 0; shape->params[k] && !ok; k++)
      ok = name_match(shape->params[k], f->names[i]);
    if (!ok) {
      ec2_error(resp, 400, "UnknownParameter", "The parameter %s is not recognized", f->names[i]);
      return NULL;
    }
  }
  return action;
}

/* ---- signatures ----------------------------------------------------------------------------- */

aws_sig_verdict_t aws_sig_verify(const http_req_t *req, const char *access_key, const char *secret,
                                 const char *service, char region[64]) {
  const char *auth = http_req_header(req, "Authorization");
  const char *date = http_req_header(req, "X-Amz-Date");
  if (auth == NULL || date == NULL)
    return AWS_SIG_MISSING;
  char ak[128], cdate[16], svc[32], sh[512], sig[80];
  if (sscanf(auth,
             "AWS4-HMAC-SHA256 Credential=%127[^/]/%15[^/]/%63[^/]/%31[^/]/aws4_request, "
             "SignedHeaders=%511[^,], Signature=%79s",
             ak, cdate, region, svc, sh, sig) != 6)
    return AWS_SIG_MALFORMED;
  if (strcmp(ak, access_key) != 0)
    return AWS_SIG_UNKNOWN_KEY;
  /* The date must be the scope's day and within 5 minutes of now. */
  struct tm tm = {0};
  if (strlen(date) != 16 || strncmp(date, cdate, 8) != 0 ||
      strptime(date, "%Y%m%dT%H%M%SZ", &tm) == NULL)
    return AWS_SIG_BAD_DATE;
  long skew = (long)(timegm(&tm) - time(NULL));
  if (skew > 300 || skew < -300)
    return AWS_SIG_EXPIRED;
  if (strcmp(svc, service) != 0)
    return AWS_SIG_WRONG_SERVICE;
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
                           .service = service,
                           .amz_date = date,
                           .access_key = ak,
                           .secret_key = secret};
  kite__aws_sig_t s;
  int rc = kite__aws_sign(&r, &s);
  for (size_t i = 0; i < hn; i++)
    free(owned[i]);
  bool ok = rc == 0 && host_signed && kite__aws_str_equal_ct(s.signature, sig);
  if (rc == 0)
    kite__aws_sig_free(&s);
  return ok ? AWS_SIG_OK : AWS_SIG_MISMATCH;
}

bool ec2_check_signature(const http_req_t *req, const char *access_key, const char *secret,
                         http_resp_t *resp, char region[64]) {
  switch (aws_sig_verify(req, access_key, secret, "ec2", region)) {
  case AWS_SIG_OK:
    return true;
  case AWS_SIG_MALFORMED:
    ec2_error(resp, 400, "IncompleteSignature",
              "The request signature does not conform to AWS standards.");
    return false;
  case AWS_SIG_EXPIRED:
    ec2_error(resp, 400, "RequestExpired", "Request has expired.");
    return false;
  case AWS_SIG_WRONG_SERVICE:
    ec2_error(resp, 401, "AuthFailure", "Credential should be scoped to correct service: 'ec2'.");
    return false;
  default:
    /* EC2 answers a wrong secret with AuthFailure (other services say SignatureDoesNotMatch). */
    ec2_error(resp, 401, "AuthFailure",
              "AWS was not able to validate the provided access credentials");
    return false;
  }
}
