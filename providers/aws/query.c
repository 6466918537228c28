/* EC2 Query API requests: form bodies, client tokens, and what AWS's error codes mean for a
 * kite user.
 *
 * Every EC2 call is a POST of an application/x-www-form-urlencoded body carrying Action,
 * Version and the operation's parameters, named as the EC2 protocol serializes the input
 * shape in the API description: a member's locationName (capitalized) or its own name, lists
 * flattened as Name.1, Name.2, … (so RunInstances' TagSpecifications go as
 * TagSpecification.1.Tag.1.Key). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_impl.h"
#include "kite/error.h"

#define EC2_API_VERSION "2016-11-15"

static void form_append(kite__aws_form_t *f, const char *s, size_t n) {
  if (f->error)
    return;
  if (f->len + n + 1 > f->cap) {
    size_t cap = f->cap ? f->cap : 512;
    while (cap < f->len + n + 1)
      cap *= 2;
    char *p = realloc(f->buf, cap);
    if (p == NULL) {
      f->error = KITE_ENOMEM;
      return;
    }
    f->buf = p;
    f->cap = cap;
  }
  memcpy(f->buf + f->len, s, n);
  f->len += n;
  f->buf[f->len] = '\0';
}

static void form_pair(kite__aws_form_t *f, const char *name, const char *value) {
  char *n = kite__aws_uri_encode(name, strlen(name), false);
  char *v = kite__aws_uri_encode(value ? value : "", value ? strlen(value) : 0, false);
  if (n == NULL || v == NULL) {
    f->error = KITE_ENOMEM;
  } else {
    if (f->len)
      form_append(f, "&", 1);
    form_append(f, n, strlen(n));
    form_append(f, "=", 1);
    form_append(f, v, strlen(v));
  }
  free(n);
  free(v);
}

void kite__aws_form_init(kite__aws_form_t *f, const char *action) {
  memset(f, 0, sizeof(*f));
  form_pair(f, "Action", action);
  form_pair(f, "Version", EC2_API_VERSION);
}

void kite__aws_form_add(kite__aws_form_t *f, const char *name, const char *value) {
  form_pair(f, name, value);
}

void kite__aws_form_addf(kite__aws_form_t *f, const char *value, const char *name_fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, name_fmt);
  int n = vsnprintf(name, sizeof(name), name_fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(name)) {
    f->error = KITE_EINVAL;
    return;
  }
  form_pair(f, name, value);
}

void kite__aws_form_free(kite__aws_form_t *f) {
  free(f->buf);
  memset(f, 0, sizeof(*f));
}

void kite__aws_client_token(const char *launch_token, char out[48]) {
  char h[65];
  kite__aws_sha256_hex(launch_token, launch_token ? strlen(launch_token) : 0, h);
  snprintf(out, 48, "kite-%.40s", h);
}

/* ---- errors ------------------------------------------------------------------------------- */

typedef struct advice {
  const char *code;
  int kite_code;
  const char *text;
} advice_t;

static const advice_t advice_table[] = {
    {"AuthFailure", KITE_ECREDENTIALS,
     "AWS did not accept the credentials: check the access key id and the secret key (a "
     "wrong secret is refused like this), that the key is active in IAM, and that the "
     "computer's clock is right (signatures expire after 5 minutes)"},
    {"SignatureDoesNotMatch", KITE_ECREDENTIALS,
     "the request signature did not match: the secret access key is wrong for this access "
     "key id"},
    {"InvalidClientTokenId", KITE_ECREDENTIALS,
     "AWS does not know this access key id: check AWS_ACCESS_KEY_ID or the profile's "
     "aws_access_key_id"},
    {"AuthFailure.ServiceLinkedRoleCreationNotPermitted", KITE_ECREDENTIALS,
     "the IAM user may not create the EC2 Spot service-linked role: create it once with "
     "`aws iam create-service-linked-role --aws-service-name spot.amazonaws.com` or grant "
     "iam:CreateServiceLinkedRole"},
    {"RequestExpired", KITE_ECREDENTIALS,
     "AWS says the request expired: the computer's clock is off by more than 5 minutes"},
    {"UnauthorizedOperation", KITE_ECREDENTIALS,
     "the IAM user or role may not do this: grant it the EC2 permissions listed in the "
     "README (ec2:RunInstances, ec2:DescribeInstances, ec2:TerminateInstances, ec2:CreateTags, "
     "ec2:ImportKeyPair, ec2:DescribeKeyPairs, ec2:CreateSecurityGroup, …)"},
    {"OptInRequired", KITE_ECREDENTIALS,
     "the account is not subscribed to EC2 (or to this AMI's marketplace product)"},
    {"InsufficientInstanceCapacity", KITE_ECAPACITY,
     "AWS has no capacity for this instance type in this availability zone right now: try "
     "another instance type or region, or try again later"},
    {"InsufficientCapacity", KITE_ECAPACITY,
     "AWS has no capacity for this request right now: try again later or elsewhere"},
    {"InstanceLimitExceeded", KITE_ECAPACITY,
     "the account's instance limit for this type and region is reached: terminate instances "
     "or ask AWS for a higher limit (Service Quotas, 'Running On-Demand instances')"},
    {"VcpuLimitExceeded", KITE_ECAPACITY,
     "the account's vCPU limit for this instance family and region is reached: ask AWS for "
     "a higher limit in Service Quotas"},
    {"MaxSpotInstanceCountExceeded", KITE_ECAPACITY,
     "the account's spot instance limit is reached: ask AWS for a higher 'All Standard Spot "
     "Instance Requests' quota, or use on-demand instances (spot: false)"},
    {"SpotMaxPriceTooLow", KITE_ECAPACITY,
     "the spot price is above the maximum price set in provider_options.max_price: raise it "
     "or leave it out (then the on-demand price is the maximum)"},
    {"InvalidAMIID.NotFound", KITE_EPROVIDER,
     "the image (AMI) does not exist in this region: AMI ids are per region; look the image "
     "up in the region the pool uses"},
    {"InvalidAMIID.Malformed", KITE_EPROVIDER,
     "the image is not an AMI id: give one like ami-0123456789abcdef0"},
    {"InvalidInstanceType", KITE_EPROVIDER,
     "this instance type does not exist or is not offered here"},
    {"Unsupported", KITE_EPROVIDER,
     "AWS does not support this request here (often an instance type not offered in this "
     "availability zone, or not as spot)"},
    {"InvalidParameterValue", KITE_EPROVIDER, NULL},
    {"InvalidParameterCombination", KITE_EPROVIDER, NULL},
    {"MissingParameter", KITE_EPROVIDER, NULL},
    {"IdempotentParameterMismatch", KITE_EPROVIDER,
     "a launch with this client token was made before with other parameters"},
    {"RequestLimitExceeded", KITE_EAGAIN, "AWS is throttling this account's API calls"},
    {"Throttling", KITE_EAGAIN, "AWS is throttling this account's API calls"},
    {"InternalError", KITE_EAGAIN, "AWS had an internal error"},
    {"ServiceUnavailable", KITE_EAGAIN, "the EC2 API is unavailable right now"},
    {"Unavailable", KITE_EAGAIN, "the EC2 API is unavailable right now"},
};

const char *kite__aws_error_advice(const char *code, int *kite_code) {
  for (size_t i = 0; code && i < sizeof(advice_table) / sizeof(advice_table[0]); i++)
    if (strcmp(advice_table[i].code, code) == 0) {
      if (kite_code)
        *kite_code = advice_table[i].kite_code;
      return advice_table[i].text;
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
