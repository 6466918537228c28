/* The local provider's row in the registry: what it honours of a spec, its options. */
#include <jansson.h>

#include "../provider_info.h"
#include "kite/local.h"
#include "kite_impl.h"

/* The local provider's options come from the pool's provider_options (the only provider that
 * is configured once, not per request), already checked against options[] below. */
static int start(kite_runtime_t *rt, const char *options_json, void **out) {
  kite_local_provider_options_t o = {0};
  json_error_t jerr;
  json_t *j = options_json ? json_loads(options_json, 0, &jerr) : NULL;
  if (options_json && !json_is_object(j)) {
    json_decref(j);
    return KITE_EINVAL;
  }
  json_t *v = json_object_get(j, "outlive_controller");
  if (json_is_boolean(v))
    o.outlive_controller = json_is_true(v);
  v = json_object_get(j, "port");
  if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 65536)
    o.port = (unsigned)json_integer_value(v);
  json_decref(j);
  kite_local_provider_t *lp = NULL;
  int rc = kite_local_provider_new(rt, &o, &lp);
  if (rc == 0 && out)
    *out = lp;
  return rc;
}

static int adopt(void *handle, const char *instance_id, const char *tag) {
  return kite_local_provider_adopt(handle, instance_id, tag);
}

static const kite_provider_option_t options[] = {
    {"port", KITE_OPTION_INTEGER, 1, 65535, "sshd port of every node (default 2222)"},
    {"outlive_controller", KITE_OPTION_BOOLEAN, 0, 0,
     "choice to let nodes outlive a kite that dies without closing the pool, as cloud machines "
     "would"},
};

#define LOCAL_RESOURCES                                                                            \
  "local nodes share this machine and have no size of their own; remove this key"

const kite_provider_info_t kite__provider_local = {
    .name = "local",
    .title = "local",
    .start = start,
    .refused =
        {
            [KITE_FIELD_REGION] = "local nodes run on this machine; remove region",
            [KITE_FIELD_IMAGE] = "local nodes run this machine's own system; remove image "
                                 "(install what you need with bootstrap)",
            [KITE_FIELD_INSTANCE_TYPE] = "local nodes are sshd processes on this machine "
                                         "and have no instance type; remove it",
            [KITE_FIELD_SPOT] = "local nodes are not spot instances; remove spot",
            [KITE_FIELD_CPUS] = LOCAL_RESOURCES,
            [KITE_FIELD_MEMORY] = LOCAL_RESOURCES,
            [KITE_FIELD_ACCELERATORS] = LOCAL_RESOURCES,
            [KITE_FIELD_DISK_GB] = LOCAL_RESOURCES,
            [KITE_FIELD_SSH_USER] = "local nodes log in as the user kite runs as "
                                    "(kite-node when that is root); remove ssh.user",
            [KITE_FIELD_SSH_KEY] = "local nodes accept kite's own key only "
                                   "($KITE_HOME/keys/id_ed25519); remove ssh.key",
            [KITE_FIELD_APT] = "local nodes share this machine's system and log in as an "
                               "unprivileged user without sudo, so they cannot install "
                               "packages (what is installed here they already have); "
                               "install them on this machine (apt-get install ...) and "
                               "remove bootstrap.apt",
        },
    .host_processes = true,
    .adopt = adopt,
    .batch_max = 1,
    /* Each node is an sshd with a session kite holds open (descriptors, processes, memory of
     * this one machine); bench/pool_bench measures pools of hundreds. */
    .max_nodes = 1000,
    .max_nodes_why = "local nodes are sshd processes of this machine, each with an SSH session "
                     "kite holds open",
    .options = options,
    .n_options = KITE_ARRAY_SIZE(options),
};
