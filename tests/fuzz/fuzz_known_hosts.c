/* A known_hosts file as kite reads it for a host's keys. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "kite/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (path[0] == '\0')
    snprintf(path, sizeof(path), "/tmp/kite-fuzz-known-hosts-%ld", (long)getpid());
  FILE *fp = fopen(path, "w");
  if (fp == NULL)
    return 0;
  fwrite(data, 1, size, fp);
  fclose(fp);
  free(kite_known_hosts_keys(path, "127.0.0.1", 22));
  free(kite_known_hosts_keys(path, "node-1.example", 2222));
  unlink(path);
  return 0;
}
