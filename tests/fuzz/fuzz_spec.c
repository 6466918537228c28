/* The spec loader, whole: YAML, ${VAR} expansion, every key's checks. */
#include <stdint.h>
#include <stdlib.h>

#include "kite/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setenv("KITE_FUZZ_VAR", "value with 'quotes' and $dollars", 1);
  kite_spec_t *s = NULL;
  char *err = NULL;
  if (kite_spec_load_string((const char *)data, size, "fuzz.yaml", &s, &err) == 0)
    (void)kite_spec_pool(s);
  kite_spec_free(s);
  free(err);
  return 0;
}
