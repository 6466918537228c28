/* The Hetzner Cloud provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "kite/hetzner.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_hetzner_provider_t *p = NULL;
  int rc = kite_hetzner_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"token", KITE_OPTION_SECRET, 0, 0,
     "API token (default $HCLOUD_TOKEN, else the hcloud command's active context)"},
    {"api_url", KITE_OPTION_URL, 0, 0,
     "API base URL (default $KITE_HETZNER_API_URL, else the public API)"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user on the servers (default root)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535, "SSH port on the servers (default 22)"},
    {"pin_host_key", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to give each server a host key kite made, and pin it (default true)"},
};

static const char *const locations[] = {"fsn1", "nbg1", "hel1", "ash", "hil", "sin", NULL};

const kite_provider_info_t kite__provider_hetzner = {
    .name = "hetzner",
    .title = "Hetzner Cloud",
    .start = start,
    .refused =
        {
            [KITE_FIELD_SPOT] = "Hetzner Cloud has no spot servers; remove spot",
            [KITE_FIELD_ACCELERATORS] = "Hetzner Cloud has no GPU server types; remove "
                                        "resources.accelerators",
            [KITE_FIELD_DISK_GB] = KITE_REFUSE_DISK,
            [KITE_FIELD_SSH_KEY] = "servers are created with kite's own key "
                                   "($KITE_HOME/keys/id_ed25519, registered in the project); "
                                   "remove ssh.key",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 1,
    .stop_start = true,
    /* By the hour, each hour begun paid whole, up to a monthly cap (docs.hetzner.com: Cloud
     * billing FAQ, and "Billing system at Hetzner": "We round up partial hours"). */
    .billing_increment_s = 3600,
    .billing_minimum_s = 3600,
    .catalog = true,
    .configured = kite__hetzner_configured,
    .deadman_still_billed =
        "a powered-off server is billed until it is deleted: after a controller dies, `kite down "
        "NAME` (or `kite status --orphans`) deletes it",
    .regions = locations,
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
