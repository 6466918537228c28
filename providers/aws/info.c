/* The AWS provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "aws_impl.h"
#include "kite/aws.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_aws_provider_t *p = NULL;
  int rc = kite_aws_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

/* Whether AWS credentials are found without options, as the provider's credential chain finds
 * them (environment, shared credentials and config files, the profile). */
static bool configured(void) {
  kite__aws_creds_t c = {0};
  char *msg = NULL;
  int rc = kite__aws_creds_load(NULL, &(kite__aws_creds_opts_t){0}, &c, &msg);
  kite__aws_creds_free(&c);
  free(msg);
  return rc == 0;
}

static const kite_provider_option_t options[] = {
    {"endpoint", KITE_OPTION_URL, 0, 0,
     "EC2 endpoint URL (default $KITE_AWS_ENDPOINT, else the region's)"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user of the AMI (default ubuntu)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535, "SSH port on the instances (default 22)"},
    {"subnet_id", KITE_OPTION_STRING, 0, 0, "subnet to launch in (default: the default VPC's)"},
    {"max_price", KITE_OPTION_NUMBER, 0, 0, "spot price ceiling in USD per hour"},
    {"imds_endpoint", KITE_OPTION_STRING, 0, 0,
     "instance metadata service as the node sees it, for the spot notice"},
    {"pricing_endpoint", KITE_OPTION_URL, 0, 0,
     "Price List endpoint URL (default $AWS_ENDPOINT_URL_PRICING, else AWS's in us-east-1)"},
};

const kite_provider_info_t kite__provider_aws = {
    .name = "aws",
    .title = "AWS EC2",
    .start = start,
    .refused =
        {
            [KITE_FIELD_DISK_GB] = KITE_REFUSE_DISK,
            [KITE_FIELD_SSH_KEY] = "instances are launched with kite's own key pair (from "
                                   "$KITE_HOME/keys/id_ed25519); remove ssh.key",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 1,
    .stop_start = true,
    /* Linux on demand and spot: per second, at least 60 s ("Announcing Amazon EC2 per second
     * billing",
     * aws.amazon.com/about-aws/whats-new/2017/10/announcing-amazon-ec2-per-second-billing/). */
    .billing_increment_s = 1,
    .billing_minimum_s = 60,
    .catalog = true,
    .needs_image = true,
    .configured = configured,
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
