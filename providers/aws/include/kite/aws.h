#ifndef KITE_AWS_H
#define KITE_AWS_H

/* The AWS EC2 provider (providers/aws/). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/provider.h"
#include "kite/runtime.h"

/* Instances on Amazon EC2 through the EC2 Query API, signed with Signature Version 4.
 *
 * Credentials are found as AWS's own tools find them: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
 * (and AWS_SESSION_TOKEN), else the profile (opts->profile, $AWS_PROFILE, "default") in
 * ~/.aws/credentials or ~/.aws/config ($AWS_SHARED_CREDENTIALS_FILE, $AWS_CONFIG_FILE). When none
 * is found, a launch fails with KITE_ECREDENTIALS and a message listing every place looked at.
 * The region is the pool's, else opts->region, else $AWS_REGION/$AWS_DEFAULT_REGION or the
 * profile's, else us-east-1.
 *
 * What kite creates in the account: a key pair holding kite's public key ($KITE_HOME/keys/
 * id_ed25519, imported once, named "kite-" + a hash of the key) and a security group
 * ("kite-ssh") allowing SSH, both tagged kite:managed=true and reused; one instance per node,
 * tagged kite:pool=<pool tag>, Name and kite:rank, launched with the pool's launch token as
 * ClientToken (a retried launch never makes two instances), as spot (one-time, terminate on
 * interruption) when the pool asks for spot, and with cloud-init user data carrying a host key
 * kite generated (registered as a secret), so the first SSH connection is already verified.
 * A termination is confirmed only when EC2 reports the instance terminated. At stop, the key pair
 * and the security group are deleted when they carry kite:managed and no instance uses them.
 *
 * A pool's provider_options JSON may carry: "endpoint", "ssh_user", "ssh_port", "subnet_id",
 * "max_price" (spot, USD per hour), "imds_endpoint", "pricing_endpoint".
 *
 * It answers catalog_request: the instance types EC2 offers in the region
 * (DescribeInstanceTypes), their spot prices per availability zone (DescribeSpotPriceHistory)
 * and their on-demand prices from the Price List (GetProducts of the Pricing service, signed
 * for us-east-1; the IAM permission pricing:GetProducts). */
typedef struct kite_aws_provider kite_aws_provider_t;

typedef struct kite_aws_provider_options {
  const char *profile; /* NULL: $AWS_PROFILE, else "default" */
  const char *region;  /* for pools that name none; NULL: from the environment or profile */
  /* EC2 endpoint URL; NULL: $KITE_AWS_ENDPOINT, else https://ec2.REGION.amazonaws.com/.
   * http:// only for a loopback emulator (kite-cloudsim). */
  const char *endpoint;
  /* The Price List endpoint URL; NULL: $AWS_ENDPOINT_URL_PRICING, else
   * https://api.pricing.us-east-1.amazonaws.com/. http:// only for a loopback emulator. */
  const char *pricing_endpoint;
  const char *ca_file;        /* CA bundle instead of the system's; or NULL */
  const char *image;          /* AMI for pools that name none; NULL: the pool must name one */
  const char *instance_type;  /* NULL: "t3.micro" */
  const char *ssh_user;       /* login user; NULL: "ubuntu" (Ubuntu's AMIs) */
  unsigned ssh_port;          /* 0: 22 */
  const char *subnet_id;      /* NULL: the default VPC's default subnet */
  const char *key_name;       /* key pair name; NULL: "kite-" + hash of kite's key */
  const char *security_group; /* group name; NULL: "kite-ssh" */
  const char *ssh_cidr;       /* who may reach SSH; NULL: "0.0.0.0/0" */
  /* The instance metadata service as seen from the node, for the spot notice probe; every
   * "{address}" is replaced by the node's address. NULL: $KITE_AWS_IMDS_ENDPOINT, else
   * http://169.254.169.254. */
  const char *imds_endpoint;
  /* First DescribeInstances interval while waiting (the polls back off to 10 s); 0: 2000. */
  uint64_t poll_ms;
  uint64_t running_timeout_ms;   /* launch to running; 0: 10 min */
  uint64_t terminate_timeout_ms; /* terminate to terminated; 0: 10 min */
  unsigned page_size;            /* DescribeInstances MaxResults for lists; 0: 1000 */
  int max_retries;               /* HTTP client retries; 0: its default */
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
  bool keep_resources; /* never delete the key pair and security group */
} kite_aws_provider_options_t;

/* Creates the "aws" provider and adds it to the runtime. opts may be NULL. Credentials are read
 * on the first request, not here. */
int kite_aws_provider_new(kite_runtime_t *rt, const kite_aws_provider_options_t *opts,
                          kite_aws_provider_t **out);

/* The spot interruption notice probe for a running instance this provider launched: a shell
 * command to run on the node (over its SSH session) that asks the instance metadata service
 * (with an IMDSv2 token) for /latest/meta-data/spot/instance-action. *command is malloc'd.
 * KITE_ENOENT when the instance is not known or not running. */
int kite_aws_provider_probe(kite_aws_provider_t *aws, const char *instance_id, char **command);
/* Parses the probe's standard output: KITE_PREEMPT_NOTICE with *deadline_ms (ms since the
 * epoch) when an interruption is announced, else KITE_PREEMPT_NONE. */
int kite_aws_probe_parse(const char *output, size_t len, int64_t *deadline_ms);

#endif
