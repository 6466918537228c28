/* The ssh provider's inventory: an entry ("[user@]host[:port]", the input's first line) and an
 * ssh_config file (the rest: Host and Match blocks, HostName, User, Port, IdentityFile, Include,
 * anything a user's ~/.ssh/config holds), as a pool's spec names them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "providers/ssh/ssh_provider_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static char path[64];
  if (path[0] == '\0')
    snprintf(path, sizeof(path), "/tmp/kite-fuzz-ssh-config-%d", (int)getpid());
  const uint8_t *nl = memchr(data, '\n', size);
  size_t elen = nl ? (size_t)(nl - data) : size;
  char *entry = malloc(elen + 1);
  if (entry == NULL)
    return 0;
  memcpy(entry, data, elen);
  entry[elen] = '\0';
  FILE *fp = fopen(path, "wb");
  if (fp == NULL)
    abort();
  if (nl)
    fwrite(nl + 1, 1, size - elen - 1, fp);
  fclose(fp);
  kite__ssh_host_t h;
  memset(&h, 0, sizeof(h));
  if (kite__ssh_parse_entry(entry, &h) == 0) {
    (void)kite__ssh_apply_config(path, &h);
    free(kite__ssh_expand_home(h.key));
  }
  kite__ssh_host_clear(&h);
  free(entry);
  return 0;
}
