/* The cloud-config that hands an instance the host key kite made for it (cloud-init's
 * ssh_keys, so the first SSH connection is verified) and then runs the pool's own user_data
 * as a script. No state. */
#include <openssl/evp.h>
#include <stdio.h>

#include "cloudinit.h"
#include "kite_impl.h"

char *kite_cloud_init(const char *priv, const char *pub, const char *user_data) {
  /* The private key, indented by four spaces under a literal block. */
  size_t n = strlen(priv), lines = 1;
  for (size_t k = 0; k < n; k++)
    lines += priv[k] == '\n';
  char *ind = malloc(n + lines * 4 + 1);
  if (ind == NULL)
    return NULL;
  size_t o = 0;
  bool bol = true;
  for (size_t k = 0; k < n; k++) {
    if (bol && priv[k] != '\n') {
      memcpy(ind + o, "    ", 4);
      o += 4;
    }
    ind[o++] = priv[k];
    bol = priv[k] == '\n';
  }
  while (o && ind[o - 1] == '\n')
    o--;
  ind[o] = '\0';
  char *extra = NULL;
  if (user_data && *user_data) {
    size_t ul = strlen(user_data);
    unsigned char *enc = malloc(4 * ((ul + 2) / 3) + 1);
    if (enc)
      EVP_EncodeBlock(enc, (const unsigned char *)user_data, (int)ul);
    extra = enc ? kite__sprintf("write_files:\n  - path: /var/lib/kite/user-data\n"
                                "    permissions: '0700'\n    encoding: b64\n"
                                "    content: %s\nruncmd:\n  - [sh, /var/lib/kite/user-data]\n",
                                (const char *)enc)
                : NULL;
    free(enc);
    if (extra == NULL) {
      memset(ind, 0, o);
      free(ind);
      return NULL;
    }
  }
  char *cc = kite__sprintf("#cloud-config\nssh_deletekeys: true\nssh_genkeytypes: []\n"
                           "ssh_keys:\n  ed25519_private: |\n%s\n  ed25519_public: %s\n%s",
                           ind, pub, extra ? extra : "");
  memset(ind, 0, o);
  free(ind);
  free(extra);
  return cc;
}

bool kite_cloud_init_is_own(const char *user_data) {
  return user_data && strncmp(user_data, "#cloud-config", 13) == 0;
}
