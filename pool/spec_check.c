/* kite_registry_check_spec(): a loaded spec against the provider it names (kite/registry.h).
 *
 * Design notes
 * - Where it lives. The spec loader (pool/spec.c) checks the schema and keeps the position of
 *   every key it read (kite_spec_where()); the registry (providers/registry.c, below) says what
 *   each provider honours. This file does the provider's half after the load, with those
 *   positions, so a refusal reads like any loader error: FILE:LINE:COL of the key, what was
 *   wrong, what to do. It reads the registry; the registry never reads a spec.
 * - A spec can break several rules; the one reported is the first in the text, as the loader
 *   reports its first problem. An unknown provider name is reported before anything else,
 *   since nothing else can be judged without the provider.
 * - What it reacts to and emits: nothing; it runs before any loop does. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "kite/http.h"
#include "kite/registry.h"
#include "kite_impl.h"

/* Spec keys people put in provider_options by mistake. */
static const char *const spec_keys[] = {"region", "image", "instance_type", "spot", "nodes"};

/* ---- the check -------------------------------------------------------------------------- */

typedef struct check {
  const kite_spec_t *spec;
  kite_spec_pos_t at; /* of msg */
  char *msg;          /* the earliest refusal so far */
  bool oom;
} check_t;

static bool before(kite_spec_pos_t a, kite_spec_pos_t b) {
  return a.line < b.line || (a.line == b.line && a.column < b.column);
}

/* Keeps "FILE:LINE:COL: MESSAGE" when it is earlier in the text than what was kept. */
__attribute__((format(printf, 3, 4))) static void refuse(check_t *c, kite_spec_pos_t at,
                                                         const char *fmt, ...) {
  if (c->msg && !before(at, c->at))
    return;
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  /* One line whatever the values quoted in it hold. */
  for (char *t = text; *t; t++)
    if ((unsigned char)*t < 0x20 || *t == 0x7f)
      *t = '?';
  char *m = kite__sprintf("%s:%u:%u: %s", kite_spec_source(c->spec), at.line, at.column, text);
  if (m == NULL) {
    c->oom = true;
    return;
  }
  free(c->msg);
  c->msg = m;
  c->at = at;
}

/* The position of path's key (or its value), 1:1 when the spec does not say (it always does
 * for what the loader read). */
static kite_spec_pos_t pos(const kite_spec_t *spec, const char *path, bool value) {
  kite_spec_pos_t k = {1, 1}, v = {1, 1};
  kite_spec_where(spec, path, &k, &v);
  return value ? v : k;
}

static void check_field(check_t *c, const kite_provider_info_t *p, kite_spec_field_t f, bool given,
                        const char *path) {
  if (given && p->refused[f])
    refuse(c, pos(c->spec, path, false), "%s: not honoured by the %s provider: %s", path, p->name,
           p->refused[f]);
}

/* A region the provider does not launch in (when it lists its regions). */
static void check_region(check_t *c, const kite_provider_info_t *p, const char *region) {
  if (region == NULL || p->regions == NULL || p->refused[KITE_FIELD_REGION])
    return;
  char list[512] = "";
  size_t len = 0;
  for (size_t i = 0; p->regions[i]; i++) {
    if (strcmp(p->regions[i], region) == 0)
      return;
    int n = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", p->regions[i]);
    if (n > 0 && (size_t)n < sizeof(list) - len)
      len += (size_t)n;
  }
  refuse(c, pos(c->spec, "region", true), "region: %s has no region '%.60s'; choose one of: %s",
         p->title, region, list);
}

static const char *type_name(const kite_provider_option_t *o, char *buf, size_t size) {
  switch (o->type) {
  case KITE_OPTION_STRING:
    return "a string";
  case KITE_OPTION_INTEGER:
    snprintf(buf, size, "an integer from %lld to %lld", o->min, o->max);
    return buf;
  case KITE_OPTION_NUMBER:
    return "a number";
  case KITE_OPTION_BOOLEAN:
    return "true or false";
  case KITE_OPTION_STRINGS:
    return "a list of strings";
  case KITE_OPTION_URL:
    return "a URL (https://, or http:// to a loopback address)";
  case KITE_OPTION_SECRET:
    return "a string";
  case KITE_OPTION_KEY_FILE:
  default:
    return "the path of a key file";
  }
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT:
    return "a mapping";
  case JSON_ARRAY:
    return "a list";
  case JSON_STRING:
    return "a string";
  case JSON_INTEGER:
    return "an integer";
  case JSON_REAL:
    return "a number";
  case JSON_TRUE:
  case JSON_FALSE:
    return "a boolean";
  case JSON_NULL:
  default:
    return "an empty value";
  }
}

/* "~/x" is the home directory's x. malloc'd. */
static char *expand_home(const char *path) {
  const char *home = getenv("HOME");
  if (path[0] == '~' && path[1] == '/' && home)
    return kite__sprintf("%s%s", home, path + 1);
  return kite__strdup(path);
}

/* A key file must be readable now: a missing key is the user's mistake, found at load time
 * rather than as an authentication failure on every node. */
static void check_key_file(check_t *c, const char *path, const char *file) {
  char *full = expand_home(file);
  if (full == NULL) {
    c->oom = true;
    return;
  }
  if (access(full, R_OK) != 0) {
    int e = errno;
    refuse(c, pos(c->spec, path, false),
           "%s: cannot read the key file '%s': %s; give the path of a readable private key", path,
           full, strerror(e));
  }
  free(full);
}

static bool type_ok(const kite_provider_option_t *o, const json_t *v) {
  switch (o->type) {
  case KITE_OPTION_STRING:
  case KITE_OPTION_KEY_FILE:
  case KITE_OPTION_SECRET:
    return json_is_string(v);
  case KITE_OPTION_URL:
    return json_is_string(v) && kite_http_url_allowed(json_string_value(v));
  case KITE_OPTION_INTEGER:
    return json_is_integer(v) && json_integer_value(v) >= o->min && json_integer_value(v) <= o->max;
  case KITE_OPTION_NUMBER:
    return json_is_number(v);
  case KITE_OPTION_BOOLEAN:
    return json_is_boolean(v);
  case KITE_OPTION_STRINGS: {
    if (!json_is_array(v))
      return false;
    size_t i;
    json_t *it;
    json_array_foreach(v, i, it) {
      if (!json_is_string(it))
        return false;
    }
    return true;
  }
  default:
    return false;
  }
}

static void check_option(check_t *c, const kite_provider_info_t *p, const char *prefix,
                         const char *key, const json_t *v) {
  char path[300];
  snprintf(path, sizeof(path), "%s.%.200s", prefix, key);
  const kite_provider_option_t *o = NULL;
  const char *names[32];
  size_t n = p->n_options < KITE_ARRAY_SIZE(names) ? p->n_options : KITE_ARRAY_SIZE(names);
  for (size_t i = 0; i < n; i++) {
    names[i] = p->options[i].name;
    if (strcmp(p->options[i].name, key) == 0)
      o = &p->options[i];
  }
  kite_spec_pos_t at = pos(c->spec, path, false);
  if (o == NULL) {
    const char *near = kite__closest(key, names, n);
    const char *spec_key = near ? NULL : kite__closest(key, spec_keys, KITE_ARRAY_SIZE(spec_keys));
    if (near) {
      refuse(c, at, "%s: the %s provider has no option '%s'; did you mean '%s'?", path, p->name,
             key, near);
    } else if (spec_key) {
      refuse(c, at,
             "%s: the %s provider has no option '%s'; did you mean the spec key '%s' "
             "(written outside provider_options)?",
             path, p->name, key, spec_key);
    } else {
      char list[600] = "";
      size_t off = 0;
      for (size_t i = 0; i < n && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", names[i]);
      refuse(c, at, "%s: the %s provider has no option '%s'; its options are: %s", path, p->name,
             key, n ? list : "none");
    }
    return;
  }
  if (json_is_null(v))
    return; /* an empty value means the option was not given */
  char buf[64];
  if (!type_ok(o, v)) {
    if (o->type == KITE_OPTION_URL && json_is_string(v))
      refuse(c, at,
             "%s: '%.200s' is not allowed: kite calls APIs over https://, or over http:// only "
             "on a loopback address (an emulator); %s is the %s",
             path, json_string_value(v), key, o->meaning);
    else if (o->type == KITE_OPTION_INTEGER && json_is_integer(v))
      refuse(c, at, "%s: %lld is out of range; expected %s; %s is the %s", path,
             (long long)json_integer_value(v), type_name(o, buf, sizeof(buf)), key, o->meaning);
    else
      refuse(c, at, "%s: expected %s, got %s; %s is the %s", path, type_name(o, buf, sizeof(buf)),
             json_kind(v), key, o->meaning);
    return;
  }
  if (o->type == KITE_OPTION_KEY_FILE)
    check_key_file(c, path, json_string_value(v));
}

static void check_provider_name(check_t *c, const char *name) {
  const char *names[16];
  size_t n = 0;
  char list[300] = "";
  size_t off = 0;
  for (const kite_provider_info_t *p; (p = kite_registry_at(n)) && n < KITE_ARRAY_SIZE(names);
       n++) {
    names[n] = p->name;
    off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", n ? ", " : "", p->name);
  }
  const char *near = kite__closest(name, names, n);
  kite_spec_pos_t at = pos(c->spec, "provider", true);
  if (near)
    refuse(c, at, "provider: unknown provider '%.60s'; did you mean '%s'? (kite knows: %s)", name,
           near, list);
  else
    refuse(c, at, "provider: unknown provider '%.60s'; expected one of: %s", name, list);
}

/* The spec's ssh.user and ssh.key handed to the provider as its own options. */
static int fold_ssh(kite_spec_t *spec, const kite_provider_info_t *p, json_t *opts) {
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  bool changed = false;
  if (ps->ssh_user && p->ssh_user_option) {
    if (json_object_set_new(opts, p->ssh_user_option, json_string(ps->ssh_user)) != 0)
      return KITE_ENOMEM;
    changed = true;
  }
  if (ps->ssh_key && p->ssh_key_option) {
    if (json_object_set_new(opts, p->ssh_key_option, json_string(ps->ssh_key)) != 0)
      return KITE_ENOMEM;
    changed = true;
  }
  if (!changed)
    return 0;
  char *text = json_dumps(opts, JSON_COMPACT);
  if (text == NULL)
    return KITE_ENOMEM;
  int rc = kite_spec_set_provider_options(spec, text);
  free(text);
  return rc;
}

/* The fields a provider decides: given ones it refuses. With several providers (multi), a
 * field one of them refuses only keeps the optimizer off that provider; it is refused when
 * every provider refuses it (all_refuse counts, per field, the providers that do). */
static void check_fields(check_t *c, const kite_spec_t *spec, const kite_provider_info_t *p,
                         bool multi, unsigned *all_refuse, const char **paths) {
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  bool want_spot = ps->spot || ps->allocation == KITE_ALLOC_SPOT;
  struct {
    kite_spec_field_t f;
    bool given;
    const char *path;
  } fields[] = {
      {KITE_FIELD_REGION, ps->region != NULL || ps->regions != NULL, "region"},
      {KITE_FIELD_IMAGE, ps->image != NULL, "image"},
      {KITE_FIELD_INSTANCE_TYPE, ps->instance_type != NULL, "resources.instance_type"},
      {KITE_FIELD_SPOT, want_spot, ps->spot ? "resources.spot" : "resources.allocation"},
      {KITE_FIELD_CPUS, ps->cpus != 0, "resources.cpus"},
      {KITE_FIELD_MEMORY, ps->memory_mb != 0, "resources.memory"},
      {KITE_FIELD_ACCELERATORS, ps->accelerator != NULL || ps->accelerators != NULL,
       "resources.accelerators"},
      {KITE_FIELD_DISK_GB, ps->disk_gb != 0, "resources.disk_gb"},
      {KITE_FIELD_SSH_USER, ps->ssh_user != NULL, "ssh.user"},
      {KITE_FIELD_SSH_KEY, ps->ssh_key != NULL, "ssh.key"},
      {KITE_FIELD_DEADMAN, ps->deadman_timeout_ms != 0, "deadman.timeout"},
      {KITE_FIELD_DEADMAN,
       !ps->deadman_off && kite_spec_where(spec, "deadman.enabled", NULL, NULL) == 0,
       "deadman.enabled"},
      {KITE_FIELD_APT, kite_spec_where(spec, "bootstrap.apt", NULL, NULL) == 0, "bootstrap.apt"},
  };
  if (!multi && p->max_nodes && ps->nodes > p->max_nodes)
    refuse(c, pos(c->spec, "nodes", true),
           "nodes: %u is more than the %s provider can run (at most %u: %s); use fewer nodes or "
           "a cloud provider",
           ps->nodes, p->name, p->max_nodes, p->max_nodes_why ? p->max_nodes_why : "its limit");
  for (size_t i = 0; i < KITE_ARRAY_SIZE(fields); i++) {
    if (!multi)
      check_field(c, p, fields[i].f, fields[i].given, fields[i].path);
    else if (fields[i].given && p->refused[fields[i].f]) {
      all_refuse[i]++;
      paths[i] = fields[i].path;
    }
  }
  /* Choosing by resources or among several places needs the provider's catalog. */
  /* (A resource the provider refuses anyway has its own message above.) */
  bool choose = (ps->cpus && !p->refused[KITE_FIELD_CPUS]) ||
                (ps->memory_mb && !p->refused[KITE_FIELD_MEMORY]) ||
                ((ps->accelerator || ps->accelerators) && !p->refused[KITE_FIELD_ACCELERATORS]) ||
                ps->max_hourly_cost_node || ps->max_hourly_cost || ps->regions || multi ||
                ps->allocation == KITE_ALLOC_SPOT_IF_AVAILABLE ||
                ps->allocation == KITE_ALLOC_CHEAPEST;
  if (choose && !p->catalog && !multi)
    refuse(c, pos(spec, ps->regions ? "region" : "resources", false),
           "%s: kite chooses instances from the providers' catalogs, and the %s provider has "
           "none; name the instance with resources.instance_type and one region",
           ps->regions ? "region" : "resources", p->name);
  if (multi && !p->catalog)
    refuse(c, pos(spec, "provider", true),
           "provider: the %s provider has no catalog, so kite cannot choose between it and the "
           "others; choose among providers with a catalog (kite providers), or name it alone",
           p->name);
  if (multi)
    return;
  if (ps->regions)
    for (size_t i = 0; ps->regions[i]; i++)
      check_region(c, p, ps->regions[i]);
  else
    check_region(c, p, ps->region);
}

/* p's options: obj (may be NULL) whose keys are at prefix. */
static void check_options(check_t *c, const kite_provider_info_t *p, const char *prefix,
                          json_t *obj) {
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    check_option(c, p, prefix, key, v);
  }
}

int kite_registry_check_spec(kite_spec_t *spec, char **errmsg) {
  if (errmsg)
    *errmsg = NULL;
  if (spec == NULL)
    return KITE_EINVAL;
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  check_t c = {.spec = spec};
  json_t *opts = NULL;
  const kite_provider_info_t *p = NULL;
  bool multi = ps->provider_any || (ps->providers && ps->providers[0] && ps->providers[1]);
  json_error_t jerr;
  opts = ps->provider_options ? json_loads(ps->provider_options, 0, &jerr) : json_object();
  if (!json_is_object(opts)) {
    /* The loader makes provider_options from a YAML mapping; anything else is a bug. */
    refuse(&c, pos(spec, "provider_options", true), "provider_options: not a JSON object (%s)",
           ps->provider_options ? jerr.text : "out of memory");
    goto done;
  }
  if (multi) {
    /* Each provider's options under its name. */
    const kite_provider_info_t *list[64];
    size_t n = 0;
    if (ps->provider_any) {
      for (size_t i = 0; (p = kite_registry_at(i)) && n < KITE_ARRAY_SIZE(list); i++)
        if (p->catalog && !p->needs_image)
          list[n++] = p;
    } else {
      for (size_t i = 0; ps->providers[i] && n < KITE_ARRAY_SIZE(list); i++) {
        if ((p = kite_registry_find(ps->providers[i])) == NULL) {
          check_provider_name(&c, ps->providers[i]);
          goto done;
        }
        if (p->needs_image) {
          refuse(&c, pos(spec, "provider", true),
                 "provider: %s needs an image of its own (%s has no default one), which a spec "
                 "with several providers cannot give; name %s alone with its image",
                 p->name, p->title, p->name);
        }
        list[n++] = p;
      }
    }
    /* An image is one provider's name for it ("ubuntu-24-04-x64" is DigitalOcean's, an AMI
     * is one region's of AWS): with several providers it would reach the others wrong. */
    if (ps->image)
      refuse(&c, pos(spec, "image", false),
             "image: an image name belongs to one provider, and this spec allows several; "
             "remove image (each provider boots its default Ubuntu), or name one provider");
    unsigned all_refuse[16] = {0};
    const char *paths[16] = {0};
    for (size_t i = 0; i < n; i++)
      check_fields(&c, spec, list[i], true, all_refuse, paths);
    if (n && all_refuse[3] == n)
      refuse(&c, pos(spec, ps->spot ? "resources.spot" : "resources.allocation", false),
             "resources: none of these providers has spot instances; remove spot, or add a "
             "provider that has them (kite providers)");
    for (size_t f = 0; f < KITE_ARRAY_SIZE(all_refuse); f++)
      if (n && f != 3 && all_refuse[f] == n)
        refuse(&c, pos(spec, paths[f], false),
               "%s: none of these providers honours it (kite providers says what each does); "
               "remove it, or add a provider that does",
               paths[f]);
    const char *name;
    json_t *sub;
    json_object_foreach(opts, name, sub) {
      char prefix[128];
      snprintf(prefix, sizeof(prefix), "provider_options.%.100s", name);
      const kite_provider_info_t *q = NULL;
      for (size_t i = 0; i < n && q == NULL; i++)
        q = strcmp(list[i]->name, name) == 0 ? list[i] : NULL;
      if (q == NULL)
        refuse(&c, pos(spec, prefix, false),
               "%s: with several providers, provider_options names each provider it sets "
               "options for, and '%.60s' is not one of them",
               prefix, name);
      else if (!json_is_object(sub))
        refuse(&c, pos(spec, prefix, false), "%s: expected a mapping of %s's options", prefix,
               name);
      else
        check_options(&c, q, prefix, sub);
    }
    json_decref(opts);
    opts = NULL;
    p = NULL;
    goto done;
  }
  p = ps->provider ? kite_registry_find(ps->provider) : kite_registry_default();
  if (p == NULL) {
    check_provider_name(&c, ps->provider);
    goto done;
  }
  check_fields(&c, spec, p, false, NULL, NULL);
  if (ps->ssh_key && p->ssh_key_option && !p->refused[KITE_FIELD_SSH_KEY])
    check_key_file(&c, "ssh.key", ps->ssh_key);
  check_options(&c, p, "provider_options", opts);
  /* ssh.user and provider_options.ssh_user (say) would both name the login user. */
  struct {
    const char *field, *option;
    bool given;
  } both[] = {{"ssh.user", p->ssh_user_option, ps->ssh_user != NULL},
              {"ssh.key", p->ssh_key_option, ps->ssh_key != NULL}};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(both); i++)
    if (both[i].given && both[i].option && json_object_get(opts, both[i].option))
      refuse(&c, pos(spec, both[i].field, false),
             "%s: provider_options.%s says the same thing; give one of them", both[i].field,
             both[i].option);

done:;
  int rc = 0;
  if (c.oom)
    rc = KITE_ENOMEM;
  else if (c.msg)
    rc = KITE_ESPEC;
  else if (p)
    rc = fold_ssh(spec, p, opts);
  json_decref(opts);
  if (rc != 0 && errmsg && c.msg) {
    *errmsg = c.msg;
    c.msg = NULL;
  }
  free(c.msg);
  return rc;
}
