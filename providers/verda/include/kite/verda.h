#ifndef KITE_VERDA_H
#define KITE_VERDA_H

/* The Verda provider (providers/verda/; Verda was DataCrunch): GPU instances through Verda's
 * public API (v1), authenticated with an API client (OAuth2 client credentials; the access
 * token is cached, refreshed, and fetched again when refused).
 *
 * Each instance is created with kite's SSH key (registered on the project once), the tag
 * kite-pool=TAG, an OS volume that is deleted with it (and deleted at once when a spot instance
 * is discontinued, so nothing keeps billing), and a startup script kite made for it that
 * installs a host key kite generated, pinned in instance_launched, then runs the launch's user
 * data; the script is deleted once the instance runs. A spot launch is a spot instance
 * (is_spot, contract SPOT); Verda evicts spot instances without notice, which shows as the
 * status discontinued: a preemption, and the pool replaces the node. An instance whose status
 * becomes error, installation_failed or no_capacity never runs: it is deleted and the launch
 * fails over. A termination is confirmed only when the API no longer knows the instance.
 * Answers, for the name "verda", the provider interface of kite/provider.h. */

#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_verda_provider kite_verda_provider_t;

typedef struct kite_verda_provider_options {
  /* The API client; NULL: $VERDA_CLIENT_ID and $VERDA_CLIENT_SECRET, else
   * $DATACRUNCH_CLIENT_ID and $DATACRUNCH_CLIENT_SECRET. A request's provider options JSON may
   * carry "client_id" and "client_secret" (or "token") too. The secret and every token are
   * registered as secrets; never logged or emitted. */
  const char *client_id, *client_secret;
  /* API base URL; NULL: $KITE_VERDA_API_URL, else https://api.verda.com/v1. http:// is accepted
   * only for loopback addresses (an emulator such as kite-cloudsim). Options JSON: "api_url". */
  const char *api_url;
  /* CA bundle to verify the API's certificate with, instead of the system's; or NULL. */
  const char *ca_file;
  /* Defaults for launches that name none; NULL: "FIN-01", "CPU.4V.16G", "ubuntu-24.04". */
  const char *location, *instance_type, *image;
  /* The OS volume, GB; 0: 50. Options JSON: "disk_gb". */
  unsigned disk_gb;
  /* Login on the instances; NULL/0: "root" and 22. Options JSON: "ssh_user", "ssh_port". */
  const char *ssh_user;
  unsigned ssh_port;
  /* First interval of the status polls (they back off to 10 s); 0: 2000 ms. */
  uint64_t poll_ms;
  /* How long an instance may take to run, and to be gone after its deletion; 0: 10 min. */
  uint64_t running_timeout_ms;
  uint64_t delete_timeout_ms;
  /* The HTTP client's retries (0: 4), first backoff (0: 500 ms) and per-attempt timeout
   * (0: 30 s). */
  int max_retries;
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
} kite_verda_provider_options_t;

/* Creates the "verda" provider and adds it to the runtime. opts may be NULL. */
int kite_verda_provider_new(kite_runtime_t *rt, const kite_verda_provider_options_t *opts,
                            kite_verda_provider_t **out);

#endif
