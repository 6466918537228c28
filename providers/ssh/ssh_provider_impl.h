#ifndef KITE_SSH_PROVIDER_IMPL_H
#define KITE_SSH_PROVIDER_IMPL_H

/* The ssh provider's internals (inventory.c, provider.c). Never installed. */

#include "kite_impl.h"

/* One machine of the inventory, resolved. */
typedef struct kite__ssh_host {
  char *alias;    /* as written (the Host name ssh_config matches) */
  char *hostname; /* from ssh_config's HostName, or NULL: the alias */
  char *user;     /* from the entry, else ssh_config, or NULL */
  unsigned port;  /* from the entry, else ssh_config; 0: 22 */
  char *key;      /* ssh_config's IdentityFile, or NULL */
} kite__ssh_host_t;

/* Parses "[user@]host[:port]" ("[v6]:port", or a bare v6 address). KITE_EINVAL if bad. */
int kite__ssh_parse_entry(const char *entry, kite__ssh_host_t *out);
/* Fills what the entry left open from an ssh_config file (NULL: ~/.ssh/config, which may be
 * missing). */
int kite__ssh_apply_config(const char *config_path, kite__ssh_host_t *h);
void kite__ssh_host_clear(kite__ssh_host_t *h);
/* "~/x" → "$HOME/x"; other paths copied. */
char *kite__ssh_expand_home(const char *path);

#endif
