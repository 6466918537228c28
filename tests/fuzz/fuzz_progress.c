/* The bootstrap's progress markers in a node's output, fed in chunks cut where the input's
 * first bytes say, stdout and stderr interleaved. */
#include <stdint.h>
#include <stdlib.h>

#include "bootstrap/bootstrap_impl.h"

static void on_step(void *data, unsigned step, unsigned total, const char *name) {
  (void)data;
  (void)step;
  (void)total;
  (void)name;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kite__boot_progress_t p;
  kite__boot_progress_init(&p, on_step, NULL);
  size_t i = 0;
  while (i < size) {
    size_t chunk = 1 + data[i] % 17;
    int stream = data[i] & 0x80 ? 2 : 1;
    i++;
    if (chunk > size - i)
      chunk = size - i;
    kite__boot_progress_feed(&p, stream, data + i, chunk);
    i += chunk;
  }
  kite__boot_progress_finish(&p);
  free(kite__boot_progress_output(&p));
  kite__boot_progress_free(&p);
  return 0;
}
