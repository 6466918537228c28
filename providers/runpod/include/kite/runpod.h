#ifndef KITE_RUNPOD_H
#define KITE_RUNPOD_H

/* The RunPod provider (providers/runpod/): GPU pods through RunPod's REST API.
 *
 * An instance type is "COUNTx_GPU_CLOUD" as RunPod's public price snapshot writes it
 * (1x_RTX4090_SECURE); a region is a country code, a zone a data centre (US-TX-3). Each pod is
 * created with kite's public key in PUBLIC_KEY (RunPod's images authorize it for root), the
 * pool's tag in KITE_POOL_TAG, port 22 exposed on a public IP, and, pinned, a host key kite
 * made that a start command installs before the image's /start.sh runs ("pin_host_key": false
 * for an image without one). kite reaches a pod at its publicIp and the port mapped to 22. A
 * spot launch is an interruptible pod; RunPod takes one back without notice (desiredStatus
 * EXITED or TERMINATED): a preemption, and the pool replaces the node. A pod that exits before
 * it ever ran is terminated and the launch fails over. A termination is confirmed only when
 * the API no longer knows the pod. RunPod's REST API lists no prices: the catalog is an
 * imported snapshot (kite offers --import). Answers, for the name "runpod", the provider
 * interface of kite/provider.h. */

#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_runpod_provider kite_runpod_provider_t;

typedef struct kite_runpod_provider_options {
  /* API key; NULL: $RUNPOD_API_KEY, else the apikey of runpodctl's ~/.runpod/config.toml. A
   * request's provider options JSON may carry "token" too. Registered as a secret. */
  const char *token;
  /* API base URL; NULL: $KITE_RUNPOD_API_URL, else https://rest.runpod.io/v1. http:// is
   * accepted only for loopback addresses (an emulator such as kite-cloudsim). */
  const char *api_url;
  /* CA bundle to verify the API's certificate with, instead of the system's; or NULL. */
  const char *ca_file;
  /* The image of launches that name none; NULL: a RunPod PyTorch image. */
  const char *image;
  /* The container disk, GB; 0: 50. Options JSON: "disk_gb". */
  unsigned disk_gb;
  /* Login on the pods; NULL/0: "root" and 22. Options JSON: "ssh_user", "ssh_port". */
  const char *ssh_user;
  unsigned ssh_port;
  /* First interval of the status polls (they back off to 10 s); 0: 2000 ms. */
  uint64_t poll_ms;
  /* How long a pod may take to run, and to be gone after its termination; 0: 10 min. */
  uint64_t running_timeout_ms;
  uint64_t delete_timeout_ms;
  /* The HTTP client's retries (0: 4), first backoff (0: 500 ms) and per-attempt timeout
   * (0: 30 s). */
  int max_retries;
  uint64_t backoff_base_ms;
  uint64_t http_timeout_ms;
} kite_runpod_provider_options_t;

/* Creates the "runpod" provider and adds it to the runtime. opts may be NULL. */
int kite_runpod_provider_new(kite_runtime_t *rt, const kite_runpod_provider_options_t *opts,
                             kite_runpod_provider_t **out);

#endif
