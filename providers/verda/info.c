/* The Verda provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "kite/verda.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_verda_provider_t *p = NULL;
  int rc = kite_verda_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"client_id", KITE_OPTION_STRING, 0, 0, "API client id (default $VERDA_CLIENT_ID)"},
    {"client_secret", KITE_OPTION_SECRET, 0, 0, "API client secret (default $VERDA_CLIENT_SECRET)"},
    {"api_url", KITE_OPTION_URL, 0, 0,
     "API base URL (default $KITE_VERDA_API_URL, else https://api.verda.com/v1)"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user on the instances (default root)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535, "SSH port on the instances (default 22)"},
    {"disk_gb", KITE_OPTION_INTEGER, 1, 65536, "the OS volume, GB (default 50)"},
    {"pin_host_key", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to give each instance a host key kite made, and pin it (default true)"},
};

const kite_provider_info_t kite__provider_verda = {
    .name = "verda",
    .title = "Verda",
    .start = start,
    .refused =
        {
            [KITE_FIELD_DISK_GB] = "the OS volume's size is the provider option disk_gb; move "
                                   "the value there",
            [KITE_FIELD_SSH_KEY] = "instances get kite's own key ($KITE_HOME/keys/id_ed25519, "
                                   "registered on the project); remove ssh.key",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 1,
    .stop_start = true,
    /* The description gives prices per hour and no billing increment: by the second is
     * assumed (not checked against a live invoice here). */
    .billing_increment_s = 1,
    .billing_minimum_s = 0,
    .catalog = true,
    .configured = kite__verda_configured,
    .deadman_still_billed =
        "a shut-down instance is billed until it is deleted: after a controller dies, `kite down "
        "NAME` (or `kite status --orphans`) deletes it",
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
