/* The DigitalOcean provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "kite/digitalocean.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_do_provider_t *p = NULL;
  int rc = kite_do_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"token", KITE_OPTION_SECRET, 0, 0,
     "API token (default $DIGITALOCEAN_TOKEN, $DIGITALOCEAN_ACCESS_TOKEN, doctl's config)"},
    {"api_url", KITE_OPTION_URL, 0, 0,
     "API base URL (default $KITE_DO_API_URL, else the public API)"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user on the droplets (default root)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535, "SSH port on the droplets (default 22)"},
    {"pin_host_key", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to give each droplet a host key kite made, and pin it (default true)"},
};

const kite_provider_info_t kite__provider_digitalocean = {
    .name = "digitalocean",
    .title = "DigitalOcean",
    .start = start,
    .refused =
        {
            [KITE_FIELD_SPOT] = "DigitalOcean has no spot droplets; remove spot",
            [KITE_FIELD_DISK_GB] = KITE_REFUSE_DISK,
            [KITE_FIELD_SSH_KEY] = "droplets are created with kite's own key "
                                   "($KITE_HOME/keys/id_ed25519, registered in the "
                                   "account); remove ssh.key",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 10,
    .stop_start = true,
    /* Per second with a 60-second minimum since 1 January 2026 (DigitalOcean's changelog, as
     * its community answers on droplet billing quote it); by the hour begun before. */
    .billing_increment_s = 1,
    .billing_minimum_s = 60,
    .catalog = true,
    .configured = kite__do_configured,
    .deadman_still_billed =
        "a powered-off droplet is billed until it is deleted: after a controller dies, `kite down "
        "NAME` (or `kite status --orphans`) deletes it",
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
