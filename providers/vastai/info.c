/* The Vast.ai provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "kite/vastai.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_vastai_provider_t *p = NULL;
  int rc = kite_vastai_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"token", KITE_OPTION_SECRET, 0, 0,
     "API key (default $VAST_API_KEY, else the vastai command's key file)"},
    {"api_url", KITE_OPTION_URL, 0, 0,
     "API base URL (default $KITE_VASTAI_API_URL, else https://console.vast.ai)"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user in the containers (default root)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535,
     "the containers' SSH port (default 22; kite connects to the host port mapped to it)"},
    {"disk_gb", KITE_OPTION_INTEGER, 1, 65536, "each container's disk, GB (default 16)"},
    {"pin_host_key", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to give each container a host key kite made, and pin it (default true)"},
};

const kite_provider_info_t kite__provider_vastai = {
    .name = "vastai",
    .title = "Vast.ai",
    .start = start,
    .refused =
        {
            [KITE_FIELD_DISK_GB] = "a container's disk is the provider option disk_gb; move the "
                                   "value there",
            [KITE_FIELD_SSH_KEY] = "containers get kite's own key ($KITE_HOME/keys/id_ed25519, "
                                   "registered on the account); remove ssh.key",
            [KITE_FIELD_DEADMAN] = "a Vast.ai container cannot power its host off, and a stopped "
                                   "instance still bills its disk; remove deadman (kite down "
                                   "destroys what a dead controller left)",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 1,
    .stop_start = true,
    /* By the second while it runs, as Vast.ai describes its pricing (not checked against a live
     * invoice here); a stopped instance still pays for its disk. */
    .billing_increment_s = 1,
    .billing_minimum_s = 0,
    .catalog = true,
    .configured = kite__vastai_configured,
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
