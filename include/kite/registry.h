#ifndef KITE_REGISTRY_H
#define KITE_REGISTRY_H

/* The provider registry (providers/registry.c): every provider kite knows, by name, with its
 * constructor, what it honours of a spec and the options it takes.
 *
 * "Honoured or refused": every key of a spec and every provider option is either honoured by
 * the chosen provider or refused when the spec is loaded. The spec loader (spec.h) checks the
 * schema, which is the same for all providers; kite_registry_check_spec() then checks the spec
 * against its provider: a provider name kite does not know, a spec key the provider would
 * drop (resources on a cloud that cannot choose by them yet, region on local, ...), an option
 * the provider does not take or of the wrong type. Each refusal is one line
 *     FILE:LINE:COL: what was wrong; what to do
 * at the offending key, as the loader's own messages are. */

#include <stdbool.h>
#include <stddef.h>

#include "kite/runtime.h"
#include "kite/spec.h"

/* The spec keys whose fate depends on the provider. Every other key (nodes, env, bootstrap,
 * replace, monitors, ssh.host_key_mode, ...) is honoured by the pool whatever the provider. */
typedef enum kite_spec_field {
  KITE_FIELD_REGION,        /* region */
  KITE_FIELD_IMAGE,         /* image */
  KITE_FIELD_INSTANCE_TYPE, /* resources.instance_type */
  KITE_FIELD_SPOT,          /* resources.spot: true (false is on-demand, which all honour) */
  KITE_FIELD_CPUS,          /* resources.cpus */
  KITE_FIELD_MEMORY,        /* resources.memory */
  KITE_FIELD_ACCELERATORS,  /* resources.accelerators */
  KITE_FIELD_DISK_GB,       /* resources.disk_gb */
  KITE_FIELD_SSH_USER,      /* ssh.user */
  KITE_FIELD_SSH_KEY,       /* ssh.key */
  KITE_FIELD_DEADMAN,       /* deadman.timeout, deadman.enabled: true */
  KITE_FIELD_APT,           /* bootstrap.apt (system packages, installed as root) */
  KITE_FIELD__COUNT
} kite_spec_field_t;

/* The JSON type a provider option takes. */
typedef enum kite_option_type {
  KITE_OPTION_STRING,
  KITE_OPTION_INTEGER, /* within [min, max] */
  KITE_OPTION_NUMBER,  /* an integer or a real */
  KITE_OPTION_BOOLEAN,
  KITE_OPTION_STRINGS,  /* a list of strings */
  KITE_OPTION_KEY_FILE, /* a string naming a readable file ("~/" is the home directory) */
  KITE_OPTION_URL,      /* an API URL kite may call: https://, or http:// to a loopback address */
  KITE_OPTION_SECRET    /* a string that is a secret (a token): registered before any event */
} kite_option_type_t;

typedef struct kite_provider_option {
  const char *name;
  kite_option_type_t type;
  long long min, max;  /* KITE_OPTION_INTEGER only */
  const char *meaning; /* one line */
} kite_provider_option_t;

typedef struct kite_provider_info {
  const char *name;  /* what `provider:` says */
  const char *title; /* for people, with the capitals its maker uses */
  /* Creates the provider and adds it to rt. options_json is the pool's provider_options (a
   * JSON object's text, checked against the option table) or NULL. Providers that read their
   * options from each request take nothing from it here. *out (when out is not NULL) gets the
   * provider's handle, the type its header (kite/NAME.h) declares. */
  int (*start)(kite_runtime_t *rt, const char *options_json, void **out);
  /* For each field, NULL when the provider honours it, else why it cannot and what to do. */
  const char *refused[KITE_FIELD__COUNT];
  /* The provider options ssh.user and ssh.key become (NULL where refused). */
  const char *ssh_user_option, *ssh_key_option;
  /* Its machines are the user's own (an inventory): "terminating" one releases it, running,
   * and nothing of it costs kite's user money. */
  bool user_machines;
  /* Its machines are processes of this host, each carrying its pool's tag: a later process
   * finds them by the tag alone (kite down needs no reach record), and this provider runs in
   * every kite process so that it can. */
  bool host_processes;
  /* host_processes only: takes charge of instance_id of tag, which a process now gone started
   * (handle is what start gave), so that an instance_terminate of it can be confirmed. 0, or
   * KITE_EEXIST when the provider knows it already. */
  int (*adopt)(void *handle, const char *instance_id, const char *tag);
  /* The most instances one create call makes (1: one call per instance). */
  unsigned batch_max;
  /* The largest pool it can honour, and why (0: the spec's own bound). */
  unsigned max_nodes;
  const char *max_nodes_why;
  /* Its instances can be stopped and started again (billing pauses while stopped). */
  bool stop_start;
  /* When the dead-man's switch (a node powering itself off) does not end the bill: why, and
   * what ends it; NULL when powering off ends it (or the switch is refused). */
  const char *deadman_still_billed;
  /* How it bills a running instance: in increments of billing_increment_s seconds (3600: each
   * hour begun is paid whole), and at least billing_minimum_s; 0 and 0: by the second. */
  unsigned billing_increment_s, billing_minimum_s;
  /* It answers catalog_request (offer.h): the optimizer can choose its instances by
   * resources and price. */
  bool catalog;
  /* It has no default image: a spec must name one of its own (an AMI is one region's), so it
   * cannot be one of several providers a spec allows, and `provider: any` leaves it out. */
  bool needs_image;
  /* Whether this process finds credentials for it without provider options (environment,
   * its own CLI's files): the providers `provider: any` means. NULL: never part of `any`. */
  bool (*configured)(void);
  /* Where it launches (NULL-terminated), or NULL when it takes any region its API knows. */
  const char *const *regions;
  const kite_provider_option_t *options; /* the options it takes */
  size_t n_options;
} kite_provider_info_t;

/* The provider called name (exactly; names are lower case), or NULL. */
const kite_provider_info_t *kite_registry_find(const char *name);

/* The provider a spec that names none gets (the first row). */
const kite_provider_info_t *kite_registry_default(void);

/* Whether p honours field (its refused[field] is NULL): KITE_FIELD_SPOT says it has spot
 * instances, KITE_FIELD_DEADMAN that kite may install its dead-man's switch on its machines. */
bool kite_registry_can(const kite_provider_info_t *p, kite_spec_field_t field);

/* The i-th provider, in the registry's order (local first), or NULL past the last. */
const kite_provider_info_t *kite_registry_at(size_t i);

/* Starts the provider called name (NULL: the default) in rt with options_json, as its start does.
 * KITE_ENOENT when no provider has that name. */
int kite_registry_start(kite_runtime_t *rt, const char *name, const char *options_json, void **out);

/* Checks a loaded spec against the provider it names, as described above. On success the
 * spec's provider options also carry what the provider takes from ssh.user and ssh.key
 * (kite_spec_set_provider_options()), so the provider honours them. On failure returns
 * KITE_ESPEC (KITE_ENOMEM when memory ran out), leaves spec as it was and, when errmsg is not
 * NULL, sets *errmsg to one malloc'd line "FILE:LINE:COL: ..." naming the first refused key in
 * the text; the caller frees it. */
int kite_registry_check_spec(kite_spec_t *spec, char **errmsg);

#endif
