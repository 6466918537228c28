#ifndef KITE_HETZNER_H
#define KITE_HETZNER_H

/* The Hetzner Cloud provider (providers/hetzner/): servers through the Hetzner Cloud API.
 *
 * Each instance is one server labelled kite-pool=TAG, created with kite's SSH key
 * ($KITE_HOME/keys/id_ed25519, created if missing, registered in the project if absent) and a
 * cloud-config user_data that installs a host key kite generated for it and then runs the
 * launch's user_data as a script; that host key is pinned in instance_launched, so the first
 * connection is verified ("pin_host_key": false in the options, or a launch user_data that is
 * a cloud-config of its own, lets the server make its own key). A termination is confirmed
 * only when the API no longer knows the server. Hetzner has no spot servers: a spot launch is
 * refused with KITE_ENOTSUP. Answers, for the name "hetzner", the provider interface of
 * kite/provider.h. */

#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_hetzner_provider kite_hetzner_provider_t;

typedef struct kite_hetzner_provider_options {
  /* API token of the project; NULL: $HCLOUD_TOKEN, else the active context of the hcloud
   * command's cli.toml ($HCLOUD_CONFIG or ~/.config/hcloud/cli.toml). A request's provider
   * options JSON may carry "token" too. Registered as a secret; never logged or emitted. */
  const char *token;
  /* API base URL; NULL: $KITE_HETZNER_API_URL, else https://api.hetzner.cloud/v1. http:// is
   * accepted only for loopback addresses (an emulator such as kite-cloudsim). Options JSON:
   * "api_url". */
  const char *api_url;
  /* CA bundle to verify the API's certificate with, instead of the system's; or NULL. */
  const char *ca_file;
  /* Defaults for launches that name none; NULL: "fsn1", "cx22", "ubuntu-24.04". */
  const char *location, *server_type, *image;
  /* Login on the servers; NULL/0: "root" and 22. Options JSON: "ssh_user", "ssh_port". */
  const char *ssh_user;
  unsigned ssh_port;
  /* First interval of the status polls (they back off to 10 s); 0: 2000 ms. */
  uint64_t poll_ms;
  /* How long a server may take to run, and to be gone after deletion; 0: 10 min. */
  uint64_t running_timeout_ms;
  uint64_t delete_timeout_ms;
  /* The HTTP client's retries (0: 4), first backoff (0: 500 ms) and per-attempt timeout
   * (0: 30 s). */
  int max_retries;
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
} kite_hetzner_provider_options_t;

/* Creates the "hetzner" provider and adds it to the runtime. opts may be NULL. */
int kite_hetzner_provider_new(kite_runtime_t *rt, const kite_hetzner_provider_options_t *opts,
                              kite_hetzner_provider_t **out);

#endif
