#ifndef KITE_GCP_H
#define KITE_GCP_H

/* The Google Compute Engine provider (providers/gcp/): VMs through the Compute Engine API v1.
 *
 * Each instance is one VM in a zone, labelled kite-pool=TAG (the tag mapped to the labels'
 * character set), with kite's SSH key in its metadata (ssh-keys) and a user-data cloud-config
 * that installs a host key kite generated for it, pinned in instance_launched. Spot launches
 * are SPOT VMs that Compute Engine deletes when it takes them back; the metadata server's
 * instance/preempted on the node is the notice. A termination is confirmed by the delete
 * operation and then by a 404 for the VM. Answers, for the name "gcp", the provider interface of
 * kite/provider.h.
 *
 * Credentials are found the way Google's client libraries find them: an access token in the
 * options, $GOOGLE_APPLICATION_CREDENTIALS (a service-account key or an authorized-user file),
 * gcloud's application-default credentials, then the metadata server on Compute Engine. */

#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_gcp_provider kite_gcp_provider_t;

typedef struct kite_gcp_provider_options {
  /* Service-account key or authorized-user JSON file; NULL: $GOOGLE_APPLICATION_CREDENTIALS,
   * else gcloud's application_default_credentials.json. Options JSON: "credentials_file". */
  const char *credentials_file;
  /* The project; NULL: "project" in the options, $CLOUDSDK_CORE_PROJECT,
   * $GOOGLE_CLOUD_PROJECT, else the key's project_id. */
  const char *project;
  /* Default zone of launches that name none (and no region); NULL: us-central1-a. */
  const char *zone;
  /* Compute Engine API base; NULL: $KITE_GCP_API_URL, else
   * https://compute.googleapis.com/compute/v1 (http:// only to loopback). */
  const char *api_url;
  /* Cloud Billing Catalog API base; NULL: $KITE_GCP_BILLING_URL, else
   * https://cloudbilling.googleapis.com/v1. */
  const char *billing_url;
  /* Defaults for launches; NULL: "e2-small", "projects/debian-cloud/global/images/family/
   * debian-12". */
  const char *machine_type, *image;
  /* Login on the VMs; NULL/0: "kite" and 22. */
  const char *ssh_user;
  unsigned ssh_port;
  /* CA bundle instead of the system's; or NULL. */
  const char *ca_file;
  uint64_t poll_ms, running_timeout_ms, delete_timeout_ms;
  int max_retries;
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
} kite_gcp_provider_options_t;

/* Creates the "gcp" provider and adds it to the runtime. opts may be NULL. */
int kite_gcp_provider_new(kite_runtime_t *rt, const kite_gcp_provider_options_t *opts,
                          kite_gcp_provider_t **out);

#endif
