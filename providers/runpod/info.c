/* The RunPod provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "kite/runpod.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_runpod_provider_t *p = NULL;
  int rc = kite_runpod_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"token", KITE_OPTION_SECRET, 0, 0,
     "API key (default $RUNPOD_API_KEY, else runpodctl's ~/.runpod/config.toml)"},
    {"api_url", KITE_OPTION_URL, 0, 0,
     "API base URL (default $KITE_RUNPOD_API_URL, else https://rest.runpod.io/v1)"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user in the pods (default root)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535,
     "the pods' SSH port (default 22; kite connects to the public port mapped to it)"},
    {"disk_gb", KITE_OPTION_INTEGER, 1, 65536, "each pod's container disk, GB (default 50)"},
    {"pin_host_key", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to give each pod a host key kite made, and pin it (default true)"},
};

const kite_provider_info_t kite__provider_runpod = {
    .name = "runpod",
    .title = "RunPod",
    .start = start,
    .refused =
        {
            [KITE_FIELD_DISK_GB] = "a pod's container disk is the provider option disk_gb; move "
                                   "the value there",
            [KITE_FIELD_SSH_KEY] = "pods get kite's own key ($KITE_HOME/keys/id_ed25519, in "
                                   "PUBLIC_KEY); remove ssh.key",
            [KITE_FIELD_DEADMAN] = "a pod cannot power its host off; remove deadman (kite down "
                                   "terminates what a dead controller left)",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 1,
    .stop_start = true,
    /* The description gives hourly costs and no billing increment: by the second is assumed
     * (not checked against a live invoice here). */
    .billing_increment_s = 1,
    .billing_minimum_s = 0,
    .catalog = true,
    .configured = kite__runpod_configured,
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
