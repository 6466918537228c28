/* The ssh provider's row in the registry: what it honours of a spec, its options. */
#include "../provider_info.h"
#include "kite/ssh.h"
#include "kite_impl.h"

static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  (void)options_json; /* read from each launch */
  kite_ssh_provider_t *p = NULL;
  int rc = kite_ssh_provider_new(rt, NULL, &p);
  if (rc == 0 && out)
    *out = p;
  return rc;
}

static const kite_provider_option_t options[] = {
    {"hosts", KITE_OPTION_STRINGS, 0, 0, "inventory: one [user@]host[:port] per rank"},
    {"ssh_config", KITE_OPTION_STRING, 0, 0, "ssh_config file (default ~/.ssh/config)"},
    {"known_hosts", KITE_OPTION_STRING, 0, 0, "known_hosts file (default ~/.ssh/known_hosts)"},
    {"user", KITE_OPTION_STRING, 0, 0,
     "login user for entries that name none and ssh_config gives none (default $USER)"},
    {"key", KITE_OPTION_KEY_FILE, 0, 0,
     "private key file when ssh_config names none (default ~/.ssh/id_ed25519, id_ecdsa, "
     "ssh-agent)"},
};

#define SSH_RESOURCES                                                                              \
  "the machines of an ssh inventory are what they are; remove this key (list the machines "        \
  "you want in provider_options.hosts)"

const kite_provider_info_t kite__provider_ssh = {
    .name = "ssh",
    .title = "ssh",
    .start = start,
    .refused =
        {
            [KITE_FIELD_REGION] = "an ssh inventory names its machines; remove region",
            [KITE_FIELD_IMAGE] = "the machines of an ssh inventory run the system they "
                                 "have; remove image (install what you need with "
                                 "bootstrap)",
            [KITE_FIELD_INSTANCE_TYPE] = "the machines of an ssh inventory have no "
                                         "instance type; remove it",
            [KITE_FIELD_SPOT] = "the machines of an ssh inventory are yours, not spot "
                                "instances; remove spot",
            [KITE_FIELD_CPUS] = SSH_RESOURCES,
            [KITE_FIELD_MEMORY] = SSH_RESOURCES,
            [KITE_FIELD_ACCELERATORS] = SSH_RESOURCES,
            [KITE_FIELD_DISK_GB] = SSH_RESOURCES,
            [KITE_FIELD_DEADMAN] = "kite never powers off machines of an ssh inventory "
                                   "(they are yours); remove deadman, or write "
                                   "deadman: {enabled: false}",
        },
    .ssh_user_option = "user",
    .ssh_key_option = "key",
    .user_machines = true,
    .batch_max = 1,
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
