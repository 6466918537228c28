#ifndef KITE_PROVIDER_H
#define KITE_PROVIDER_H

/* The provider interface.
 *
 * A provider is a component (runtime.h, tier KITE_TIER_PROVIDER) that answers the instance
 * requests of the event table for its name, i.e. it registers responders keyed by
 * kite_key_str(name):
 *
 *   instance_launch    → instance_launched  (one instance for (pool, node, rank); no timeout:
 *                        an instance that exists is always reported, however late)
 *   instance_terminate → instance_terminated (only once the provider confirmed it is gone)
 *   instance_describe  → instance_state
 *   instance_list      → instance_listed     (instances carrying a pool's tag, to find leaks)
 *   preempt_check      → preempt_status      (0 running, 1 notice with deadline, 2 preempted)
 *
 * or with kite_bus_reply_error() and a message that says what was wrong and what to do.
 *
 * An instance (the instance_launched payload) carries: the provider's id for it, its address
 * and SSH port, the login user, its host key when known at launch (pinned, so the first
 * connection is verified), its hourly price when known, the tag naming its pool, and the
 * private key file that logs in to it.
 *
 * The pool and the nodes never call a provider directly; they send these requests. A new
 * provider is one folder under providers/, one constructor, and one row of the registry
 * (registry.h: its name, what it honours of a spec, its options). */

#include "kite/bus.h"
#include "kite/runtime.h"

/* Values of preempt_status.state. */
enum { KITE_PREEMPT_NONE = 0, KITE_PREEMPT_NOTICE = 1, KITE_PREEMPT_GONE = 2 };

/* ---- the local provider (providers/local/) --------------------------------------------- */

typedef struct kite_local_provider kite_local_provider_t;

typedef struct kite_local_provider_options {
  /* sshd port for every node; 0: 2222. */
  unsigned port;
  /* Simulated spot capacity: notice period before a preempted node dies (ms); 0: 2000. AWS
   * gives two minutes; tests and demos use less. */
  uint64_t notice_ms;
  /* Chaos: each node is preempted with this probability per minute (0: never) … */
  double chaos_per_minute;
  /* … or once, this long after it started (0: never). */
  uint64_t chaos_after_ms;
  /* Seed for the chaos choice (0: from the clock). */
  unsigned chaos_seed;
  /* Nodes outlive this process when it dies without closing its pools, as cloud machines
   * would (then only their dead-man's switch or `kite down` stops them). By default they die
   * with it. */
  bool outlive_controller;
} kite_local_provider_options_t;

/* Creates the "local" provider and adds it to the runtime. Each instance is a real sshd node
 * (local.h) tagged with the pool's tag; it logs in with kite's key ($KITE_HOME/keys/id_ed25519,
 * created if missing). opts may be NULL. */
int kite_local_provider_new(kite_runtime_t *rt, const kite_local_provider_options_t *opts,
                            kite_local_provider_t **out);

/* Simulated preemption of one instance: a notice first (preempt_check answers NOTICE with the
 * deadline), then after the notice period the node dies as a machine would. With abrupt, the
 * node dies at once without notice. */
int kite_local_provider_preempt(kite_local_provider_t *lp, const char *instance_id, bool abrupt);

/* Number of instances the provider holds now. */
unsigned kite_local_provider_count(const kite_local_provider_t *lp);

/* Takes charge of an instance that another process started and can no longer stop (it died:
 * `kite down` of a pool whose owner was killed). Local nodes are found by their pool's tag
 * (every process of a node carries KITE_NODE_TAG=<tag>), so an instance_terminate of
 * instance_id then kills every process carrying tag and is confirmed only once none is left
 * (kite_local_count_tagged(tag) == 0); instance_list lists it under tag until then. That ends
 * every node of the tag at once: adopt only tags whose owner is gone. KITE_EBUSY when this
 * provider runs instances of tag itself, KITE_EEXIST when it knows instance_id already. */
int kite_local_provider_adopt(kite_local_provider_t *lp, const char *instance_id,
                              const char *tag);

/* ---- the ssh provider (providers/ssh/) ------------------------------------------------------ */

/* Machines the user already has, like pdsh: rank r is the r-th inventory entry. Each entry is
 * "[user@]host[:port]" (IPv6 as "[::1]:22"), resolved through ssh_config (HostName, User,
 * Port, IdentityFile; the first value wins, as in ssh). Host keys recorded in the user's
 * known_hosts are pinned; a host not there falls to the pool's host key mode. Nothing is
 * created, so terminating an instance only releases the machine, untouched. A pool's
 * provider_options JSON may override every field: {"hosts": [...], "ssh_config": P,
 * "known_hosts": P, "user": U, "key": P}. */
typedef struct kite_ssh_provider kite_ssh_provider_t;

typedef struct kite_ssh_provider_options {
  const char *const *hosts; /* NULL-terminated inventory, or NULL (then from the pool) */
  const char *ssh_config;   /* NULL: ~/.ssh/config (missing is fine) */
  const char *known_hosts;  /* NULL: ~/.ssh/known_hosts */
  const char *user;         /* when neither the entry nor ssh_config says; NULL: $USER */
  const char *key;          /* when ssh_config names none; NULL: ~/.ssh/id_ed25519 or
                               id_ecdsa if present, else ssh-agent */
} kite_ssh_provider_options_t;

/* Creates the "ssh" provider and adds it to the runtime. opts may be NULL. */
int kite_ssh_provider_new(kite_runtime_t *rt, const kite_ssh_provider_options_t *opts,
                          kite_ssh_provider_t **out);

/* ---- the DigitalOcean provider (providers/digitalocean/) ----------------------------------- */

typedef struct kite_do_provider kite_do_provider_t;

typedef struct kite_do_provider_options {
  /* API token; NULL: $DIGITALOCEAN_TOKEN, $DIGITALOCEAN_ACCESS_TOKEN, then doctl's config file
   * ($XDG_CONFIG_HOME or ~/.config, doctl/config.yaml, "access-token"). A launch's provider
   * options JSON may carry "token" too. Registered as a secret; never logged or emitted. */
  const char *token;
  /* API base URL; NULL: $KITE_DO_API_URL, else https://api.digitalocean.com. http:// is
   * accepted only for loopback addresses (an emulator such as kite-cloudsim). Options JSON:
   * "api_url". */
  const char *api_url;
  /* CA bundle to verify the API's certificate with, instead of the system's; or NULL. */
  const char *ca_file;
  /* Defaults for launches that name none; NULL: "nyc3", "s-1vcpu-1gb", "ubuntu-24-04-x64". */
  const char *region, *size, *image;
  /* Login on the droplets; NULL/0: "root" and 22. Options JSON: "ssh_user", "ssh_port". */
  const char *ssh_user;
  unsigned ssh_port;
  /* First interval of the status polls (they back off to 10 s); 0: 2000 ms. */
  uint64_t poll_ms;
  /* How long a droplet may take to become active, and to be gone after deletion; 0: 10 min. */
  uint64_t active_timeout_ms;
  uint64_t delete_timeout_ms;
  /* The HTTP client's retries (0: 4), first backoff (0: 500 ms) and per-attempt timeout
   * (0: 30 s). */
  int max_retries;
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
} kite_do_provider_options_t;

/* Creates the "digitalocean" provider and adds it to the runtime. Each instance is one droplet
 * tagged with the pool's tag, created with kite's SSH key ($KITE_HOME/keys/id_ed25519, created
 * if missing, registered in the account if absent) and a cloud-config user_data that installs
 * a host key kite generated for it (cloud-init's ssh_keys; the private key is a registered
 * secret and not kept) and then runs the launch's user_data as a script; that host key is
 * pinned in instance_launched, so the first connection is verified. With "pin_host_key": false
 * in the options, or a launch user_data that is itself a cloud-config, the droplet makes its
 * own key and the pool's host-key mode applies. Launches asked for together with the same
 * settings and no pinned key go out as one create (names). DigitalOcean has no spot droplets;
 * a spot launch is refused with KITE_ENOTSUP. opts may be NULL. */
int kite_do_provider_new(kite_runtime_t *rt, const kite_do_provider_options_t *opts,
                         kite_do_provider_t **out);

/* ---- the AWS EC2 provider (providers/aws/) ------------------------------------------------ */

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
 * "max_price" (spot, USD per hour), "imds_endpoint". */
typedef struct kite_aws_provider kite_aws_provider_t;

typedef struct kite_aws_provider_options {
  const char *profile;  /* NULL: $AWS_PROFILE, else "default" */
  const char *region;   /* for pools that name none; NULL: from the environment or profile */
  /* EC2 endpoint URL; NULL: $KITE_AWS_ENDPOINT, else https://ec2.REGION.amazonaws.com/.
   * http:// only for a loopback emulator (kite-cloudsim). */
  const char *endpoint;
  const char *ca_file;       /* CA bundle instead of the system's; or NULL */
  const char *image;         /* AMI for pools that name none; NULL: the pool must name one */
  const char *instance_type; /* NULL: "t3.micro" */
  const char *ssh_user;      /* login user; NULL: "ubuntu" (Ubuntu's AMIs) */
  unsigned ssh_port;         /* 0: 22 */
  const char *subnet_id;     /* NULL: the default VPC's default subnet */
  const char *key_name;      /* key pair name; NULL: "kite-" + hash of kite's key */
  const char *security_group; /* group name; NULL: "kite-ssh" */
  const char *ssh_cidr;      /* who may reach SSH; NULL: "0.0.0.0/0" */
  /* The instance metadata service as seen from the node, for the spot notice probe; every
   * "{address}" is replaced by the node's address. NULL: $KITE_AWS_IMDS_ENDPOINT, else
   * http://169.254.169.254. */
  const char *imds_endpoint;
  uint64_t poll_ms;              /* DescribeInstances interval while waiting; 0: 2000 */
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
