#ifndef KITE_DIGITALOCEAN_H
#define KITE_DIGITALOCEAN_H

/* The DigitalOcean provider (providers/digitalocean/): droplets through the v2 API. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/provider.h"
#include "kite/runtime.h"

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

#endif
