#ifndef KITE_PROVIDER_INFO_H
#define KITE_PROVIDER_INFO_H

/* What a provider's folder gives the registry (providers/registry.c): its row, a
 * kite_provider_info_t named kite__provider_NAME, and the refusal texts rows share. Never
 * installed. */

#include "kite/registry.h"

#define KITE_REFUSE_RESOURCES(example)                                                             \
  "kite cannot choose an instance by resources yet; name one with resources.instance_type "        \
  "(e.g. " example ") and remove this key"
#define KITE_REFUSE_DISK                                                                           \
  "kite cannot size the root disk yet (the image's own size is used); remove this key"

/* The providers, in the registry's order (the first is the default). A new provider is one
 * line here and its folder. */
#define KITE_PROVIDERS(X) X(local) X(ssh) X(digitalocean) X(aws) X(hetzner) X(gcp) X(vastai) X(verda) X(runpod)

/* The rows' configured functions that live beside the providers' own credential lookups. */
bool kite__do_configured(void);
bool kite__hetzner_configured(void);
bool kite__vastai_configured(void);
bool kite__verda_configured(void);
bool kite__runpod_configured(void);

#define KITE__PROVIDER_DECLARE(name) extern const kite_provider_info_t kite__provider_##name;
KITE_PROVIDERS(KITE__PROVIDER_DECLARE)
#undef KITE__PROVIDER_DECLARE

#endif
