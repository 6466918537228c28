#ifndef KITE_SSH_H
#define KITE_SSH_H

/* The ssh provider (providers/ssh/): machines the user already has. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/provider.h"
#include "kite/runtime.h"

/* Machines the user already has, like pdsh: rank r is the r-th inventory entry. Each entry is
 * "[user@]host[:port]" (IPv6 as "[::1]:22"), resolved through ssh_config (HostName, User,
 * Port, IdentityFile; the first value wins, as in ssh). Host keys recorded in the user's
 * known_hosts are pinned; a host not there falls to the pool's host key mode. Nothing is
 * created, so terminating an instance only releases the machine, untouched. A pool's
 * provider_options JSON may override every field: {"hosts": [...], "ssh_config": P,
 * "known_hosts": P, "user": U, "key": P}. */
typedef struct kite_ssh_provider kite_ssh_provider_t;

typedef struct kite_ssh_provider_options {
  const char *const *hosts; /* NULL-terminated inventory, or NULL (then from the pool) */
  const char *ssh_config;   /* NULL: ~/.ssh/config (missing is fine) */
  const char *known_hosts;  /* NULL: ~/.ssh/known_hosts */
  const char *user;         /* when neither the entry nor ssh_config says; NULL: $USER */
  const char *key;          /* when ssh_config names none; NULL: ~/.ssh/id_ed25519 or
                               id_ecdsa if present, else ssh-agent */
} kite_ssh_provider_options_t;

/* Creates the "ssh" provider and adds it to the runtime. opts may be NULL. */
int kite_ssh_provider_new(kite_runtime_t *rt, const kite_ssh_provider_options_t *opts,
                          kite_ssh_provider_t **out);

#endif
