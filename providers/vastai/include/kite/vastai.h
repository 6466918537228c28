#ifndef KITE_VASTAI_H
#define KITE_VASTAI_H

/* The Vast.ai provider (providers/vastai/): GPU instances (containers on rented hosts) through
 * Vast.ai's REST API.
 *
 * Vast.ai sells offers ("asks"), each one host's GPUs at a price: an offer is an instance type,
 * written "ask-ID", in the region of its host's country code ("US", "SE"); the catalog lists
 * them with their GPUs as accelerators, the on-demand price and the least bid as the spot
 * price. Each instance accepts one offer (its image, disk, runtype ssh_direct, label
 * "TAG:NAME"), with kite's SSH key registered on the account before the create, and an env
 * and onstart script that install a host key kite made for it, which is pinned in
 * instance_launched ("pin_host_key": false lets the container keep its own). A spot launch is
 * an interruptible instance bidding the plan's spot price; outbid, Vast.ai stops it: that is a
 * preemption, and the pool replaces it (the stopped instance is destroyed, so its disk stops
 * billing). An instance that goes exited, unknown or offline before it ever ran is destroyed
 * and the launch fails over to another offer. A termination is confirmed only when the API no
 * longer has the instance. Answers, for the name "vastai", the provider interface of
 * kite/provider.h. */

#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_vastai_provider kite_vastai_provider_t;

typedef struct kite_vastai_provider_options {
  /* API key of the account; NULL: $VAST_API_KEY, else the vastai command's key file
   * ($XDG_CONFIG_HOME/vastai/vast_api_key, ~/.config/vastai/vast_api_key, ~/.vast_api_key). A
   * request's provider options JSON may carry "token" too. Registered as a secret; never
   * logged or emitted. */
  const char *token;
  /* API base URL; NULL: $KITE_VASTAI_API_URL, else https://console.vast.ai. http:// is accepted
   * only for loopback addresses (an emulator such as kite-cloudsim). Options JSON: "api_url". */
  const char *api_url;
  /* CA bundle to verify the API's certificate with, instead of the system's; or NULL. */
  const char *ca_file;
  /* The image of launches that name none; NULL: vastai/base-image:@vastai-automatic-tag. */
  const char *image;
  /* The container's disk, GB; 0: 16. Options JSON: "disk_gb". */
  unsigned disk_gb;
  /* Login on the instances; NULL/0: "root" and 22 (the container's port; kite connects to the
   * host port Vast.ai maps to it). Options JSON: "ssh_user", "ssh_port". */
  const char *ssh_user;
  unsigned ssh_port;
  /* First interval of the status polls (they back off to 10 s); 0: 2000 ms. */
  uint64_t poll_ms;
  /* How long an instance may take to run (images are pulled first), and to be gone after its
   * destruction; 0: 10 min. */
  uint64_t running_timeout_ms;
  uint64_t delete_timeout_ms;
  /* The HTTP client's retries (0: 4), first backoff (0: 500 ms) and per-attempt timeout
   * (0: 30 s). */
  int max_retries;
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
} kite_vastai_provider_options_t;

/* Creates the "vastai" provider and adds it to the runtime. opts may be NULL. */
int kite_vastai_provider_new(kite_runtime_t *rt, const kite_vastai_provider_options_t *opts,
                             kite_vastai_provider_t **out);

#endif
