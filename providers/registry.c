/* The provider registry: name → constructor, what the provider honours of a spec, its options.
 *
 * Design notes
 * - What it owns: the list of providers (provider_info.h, one line each); each row lives in its
 *   provider's folder (NAME/info.c). Nothing outside providers/ names a provider: the `kite`
 *   command starts the provider a spec names through kite_registry_start().
 * - The check of a spec against its provider (kite_registry_check_spec()) is not here: it
 *   reads the loaded spec, which lives in the room above (pool/), so it lives there too
 *   (pool/spec_check.c) and reads this table. The arrows point down.
 * - What it reacts to and emits: nothing; it runs before any loop does. */
#include "kite_impl.h"
#include "provider_info.h"

/* ---- the table ------------------------------------------------------------------------- */

#define KITE__PROVIDER_ADDRESS(name) &kite__provider_##name,
static const kite_provider_info_t *const providers[] = {KITE_PROVIDERS(KITE__PROVIDER_ADDRESS)};

const kite_provider_info_t *kite_registry_find(const char *name) {
  for (size_t i = 0; name && i < KITE_ARRAY_SIZE(providers); i++)
    if (strcmp(providers[i]->name, name) == 0)
      return providers[i];
  return NULL;
}

const kite_provider_info_t *kite_registry_default(void) {
  return providers[0];
}

bool kite_registry_can(const kite_provider_info_t *p, kite_spec_field_t field) {
  return p != NULL && field < KITE_FIELD__COUNT && p->refused[field] == NULL;
}

const kite_provider_info_t *kite_registry_at(size_t i) {
  return i < KITE_ARRAY_SIZE(providers) ? providers[i] : NULL;
}

int kite_registry_start(kite_runtime_t *rt, const char *name, const char *options_json,
                        void **out) {
  const kite_provider_info_t *p = (name ? kite_registry_find(name) : kite_registry_default());
  if (rt == NULL)
    return KITE_EINVAL;
  if (p == NULL)
    return KITE_ENOENT;
  return p->start(rt, options_json, out);
}
