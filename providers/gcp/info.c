/* The Google Compute Engine provider's row in the registry: what it honours of a spec, its
 * options. */
#include "../provider_info.h"
#include "gcp_impl.h"
#include "kite/gcp.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each request */
  kite_gcp_provider_t *p = NULL;
  int rc = kite_gcp_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"token", KITE_OPTION_SECRET, 0, 0,
     "OAuth access token (default: credentials as Google's tools find them)"},
    {"credentials_file", KITE_OPTION_KEY_FILE, 0, 0,
     "service-account key or authorized-user JSON (default $GOOGLE_APPLICATION_CREDENTIALS, "
     "else gcloud's application-default credentials, else the metadata server)"},
    {"project", KITE_OPTION_STRING, 0, 0,
     "project id (default $CLOUDSDK_CORE_PROJECT, $GOOGLE_CLOUD_PROJECT, else the key's)"},
    {"zone", KITE_OPTION_STRING, 0, 0,
     "zone of launches that name no zone (default us-central1-a, or the region's first)"},
    {"api_url", KITE_OPTION_URL, 0, 0,
     "Compute Engine API base URL (default $KITE_GCP_API_URL, else the public API)"},
    {"billing_url", KITE_OPTION_URL, 0, 0,
     "Cloud Billing Catalog API base URL (default $KITE_GCP_BILLING_URL, else the public API)"},
    {"disk_gb", KITE_OPTION_INTEGER, 10, 65536, "boot disk size in GB (default 20)"},
    {"preemption_action", KITE_OPTION_STRING, 0, 0,
     "what Compute Engine does to a preempted spot VM: DELETE (default) or STOP"},
    {"metadata_endpoint", KITE_OPTION_STRING, 0, 0,
     "metadata server as the node sees it, for the preemption notice"},
    {"ssh_user", KITE_OPTION_STRING, 0, 0, "login user on the VMs (default kite)"},
    {"ssh_port", KITE_OPTION_INTEGER, 1, 65535, "SSH port on the VMs (default 22)"},
    {"pin_host_key", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to give each VM a host key kite made, and pin it (default true)"},
};

const kite_provider_info_t kite__provider_gcp = {
    .name = "gcp",
    .title = "Google Compute Engine",
    .start = start,
    .refused =
        {
            [KITE_FIELD_DISK_GB] = "the boot disk's size is the provider option disk_gb; "
                                   "remove resources.disk_gb and set provider_options.disk_gb",
            [KITE_FIELD_SSH_KEY] = "VMs get kite's own key ($KITE_HOME/keys/id_ed25519) in their "
                                   "ssh-keys metadata; remove ssh.key",
        },
    .ssh_user_option = "ssh_user",
    .batch_max = 1,
    .stop_start = true,
    /* Per second after a one-minute minimum, on demand and spot alike: Google's public VM
     * pricing page (cloud.google.com/compute/vm-instance-pricing, "Billing model"); the specs
     * kite ships describe the API, not the bill. */
    .billing_increment_s = 1,
    .billing_minimum_s = 60,
    .catalog = true,
    .configured = kite__gcp_configured,
    .deadman_still_billed = "a stopped VM's disk is billed until the VM is deleted: after a "
                            "controller dies, `kite down NAME` (or `kite status --orphans`) "
                            "deletes it",
    .regions = NULL,
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
