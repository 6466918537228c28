#ifndef KITE_CLOUDINIT_H
#define KITE_CLOUDINIT_H

/* cloudinit.c: the user data that pins an instance's host key. Never installed. */

#include <stdbool.h>

/* A cloud-config that installs the ed25519 host key priv/pub (pub: "ssh-ed25519 BASE64") and
 * then runs user_data (or nothing when NULL or empty) as a shell script. malloc'd (it holds
 * the private key: register it as a secret, wipe it when done), or NULL when out of memory. */
char *kite_cloud_init(const char *priv, const char *pub, const char *user_data);

/* Whether user_data is a cloud-config of its own (which cannot be merged with kite's: then
 * the instance makes its own host key and the pool's host-key mode applies). */
bool kite_cloud_init_is_own(const char *user_data);

#endif
