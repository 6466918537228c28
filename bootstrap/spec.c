/* The bootstrap section of a pool spec: YAML (env, apt, pip, files, setup) → a bootstrap
 * builder (bootstrap_impl.h), read with the typed YAML reader of core/ (yaml_impl.h).
 *
 * Design notes
 * - The builder's own checks (package names, variable names) stay the builder's: a value it
 *   refuses is pointed at in the text, with what was expected. A refused list of packages is
 *   probed one name at a time to find which one.
 * - files: a source is read now, relative to the spec's directory, so that a spec that loads
 *   is one whose files exist; binary files are refused (kite upload copies those).
 * - Reacts to nothing and emits nothing. */
#include <errno.h>
#include <stdio.h>

#include "bootstrap_impl.h"
#include "yaml_impl.h"

/* Adds a package step; on a name the builder refuses, finds which one to point at it. */
static int add_packages(kite__yaml_t *y, kite_bootstrap_t *b, const yaml_node_t *seq,
                        const char *path, bool pip, const kite_bootstrap_pip_opts_t *opts) {
  char **list;
  int rc = kite__yaml_str_list(y, seq, path, &list);
  if (rc != 0)
    return rc;
  if (list[0] == NULL) {
    free(list);
    return 0;
  }
  rc = pip ? kite_bootstrap_pip(b, (const char *const *)list, opts)
           : kite_bootstrap_apt(b, (const char *const *)list);
  if (rc == KITE_EINVAL) {
    kite_bootstrap_t *probe = NULL;
    size_t bad = 0;
    if (kite_bootstrap_new(&probe) == 0) {
      for (size_t i = 0; list[i]; i++) {
        const char *one[] = {list[i], NULL};
        int r = pip ? kite_bootstrap_pip(probe, one, NULL) : kite_bootstrap_apt(probe, one);
        if (r == KITE_EINVAL) {
          bad = i;
          break;
        }
      }
      kite_bootstrap_free(probe);
    }
    yaml_node_t *it = kite__yaml_node(y, seq->data.sequence.items.start[bad]);
    rc = kite__yaml_fail(y, it, "%s[%zu]: '%.60s' is not a valid package name; expected %s", path,
                         bad, list[bad],
                         pip ? "a pip requirement such as numpy or torch==2.3.0"
                             : "a Debian package name such as git or python3-pip");
  } else if (rc != 0) {
    rc = rc == KITE_ENOMEM ? kite__yaml_oom(y)
                           : kite__yaml_fail(y, seq, "%s: %s", path, kite_strerror(rc));
  }
  free(list);
  return rc;
}

static int read_pip(kite__yaml_t *y, kite_bootstrap_t *b, const yaml_node_t *n) {
  static const char *const keys[] = {"packages", "no_index", "find_links", "python"};
  if (n->type == YAML_SEQUENCE_NODE)
    return add_packages(y, b, n, "bootstrap.pip", true, NULL);
  if (n->type != YAML_MAPPING_NODE)
    return kite__yaml_fail(y, n,
                           "bootstrap.pip: expected a list of packages or a mapping with packages, "
                           "got a single value");
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_bootstrap_pip_opts_t opts = {0};
  int rc = kite__yaml_mapping(y, n, "bootstrap.pip", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[1])
    rc = kite__yaml_bool(y, v[1], "bootstrap.pip.no_index", &opts.no_index);
  if (rc == 0 && v[2])
    rc = kite__yaml_str(y, v[2], "bootstrap.pip.find_links", &opts.find_links);
  if (rc == 0 && v[3])
    rc = kite__yaml_str(y, v[3], "bootstrap.pip.python", &opts.python);
  if (rc == 0 && v[0] == NULL)
    rc = kite__yaml_fail(y, n,
                         "bootstrap.pip: missing required key 'packages'; expected a list of "
                         "packages");
  if (rc == 0)
    rc = add_packages(y, b, v[0], "bootstrap.pip.packages", true, &opts);
  return rc;
}

static int read_env(kite__yaml_t *y, kite_bootstrap_t *b, const yaml_node_t *n) {
  static const char *const keys[] = {"value", "secret"};
  const char *where = "bootstrap.env";
  int rc = kite__yaml_expect_mapping(y, n, where);
  if (rc == 0)
    rc = kite__yaml_free_keys(y, n, where);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; rc == 0 && p < n->data.mapping.pairs.top;
       p++) {
    yaml_node_t *k = kite__yaml_node(y, p->key), *v = kite__yaml_node(y, p->value);
    const char *name = (const char *)k->data.scalar.value;
    char path[300];
    snprintf(path, sizeof(path), "%s.%s", where, name);
    if (!kite__shell_name(name, k->data.scalar.length))
      return kite__yaml_fail(y, k,
                             "%s: '%s' is not a valid variable name; expected letters, digits and "
                             "'_', not starting with a digit",
                             where, name);
    const char *value = "";
    bool secret = false;
    if (v->type == YAML_MAPPING_NODE) {
      yaml_node_t *vv[2], *kk[2];
      rc = kite__yaml_mapping(y, v, path, keys, 2, vv, kk);
      if (rc == 0 && kk[0] == NULL)
        rc = kite__yaml_fail(
            y, v, "%s: missing required key 'value'; expected {value: V, secret: true}", path);
      char sub[320];
      snprintf(sub, sizeof(sub), "%s.value", path);
      if (rc == 0 && vv[0])
        rc = kite__yaml_str(y, vv[0], sub, &value);
      snprintf(sub, sizeof(sub), "%s.secret", path);
      if (rc == 0 && vv[1])
        rc = kite__yaml_bool(y, vv[1], sub, &secret);
    } else if (v->type == YAML_SCALAR_NODE) {
      rc = kite__yaml_str(y, v, path, &value);
    } else {
      rc = kite__yaml_fail(
          y, v, "%s: expected a string or {value: V, secret: true}, got a sequence", path);
    }
    if (rc == 0) {
      rc = kite_bootstrap_env(b, name, value, secret);
      if (rc != 0)
        rc = rc == KITE_ENOMEM ? kite__yaml_oom(y)
                               : kite__yaml_fail(y, k, "%s: %s", path, kite_strerror(rc));
    }
  }
  return rc;
}

static int read_file_mode(kite__yaml_t *y, const yaml_node_t *n, const char *path, int *mode) {
  if (n->type != YAML_SCALAR_NODE)
    return kite__yaml_fail(y, n, "%s: expected an octal file mode such as 0644, got %s", path,
                           kite__yaml_kind_name(n));
  char *text;
  kite__ykind_t kind;
  int rc = kite__yaml_scalar(y, n, path, &text, &kind);
  if (rc != 0)
    return rc;
  const char *c = text;
  if (c[0] == '0' && (c[1] == 'o' || c[1] == 'O'))
    c += 2;
  bool ok = *c != '\0' && strlen(c) <= 5;
  for (const char *d = c; ok && *d; d++)
    ok = *d >= '0' && *d <= '7';
  long m = ok ? strtol(c, NULL, 8) : -1;
  if (kind == KITE__Y_NULL)
    rc = 0;
  else if (!ok || m > 07777)
    rc = kite__yaml_fail(
        y, n, "%s: '%.60s' is not a file mode; expected octal digits such as 0644 or 0755", path,
        text);
  else
    *mode = (int)m;
  free(text);
  return rc;
}

static int read_files(kite__yaml_t *y, kite_bootstrap_t *b, const yaml_node_t *n) {
  static const char *const keys[] = {"path", "content", "source", "mode"};
  int rc = kite__yaml_expect_sequence(y, n, "bootstrap.files");
  size_t count = rc == 0 ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start) : 0;
  for (size_t i = 0; rc == 0 && i < count; i++) {
    yaml_node_t *it = kite__yaml_node(y, n->data.sequence.items.start[i]);
    char where[64], sub[96];
    snprintf(where, sizeof(where), "bootstrap.files[%zu]", i);
    rc = kite__yaml_expect_mapping(y, it, where);
    yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
    if (rc == 0)
      rc = kite__yaml_mapping(y, it, where, keys, KITE_ARRAY_SIZE(keys), v, k);
    if (rc != 0)
      return rc;
    const char *path = NULL, *content = NULL, *source = NULL;
    int mode = 0644;
    snprintf(sub, sizeof(sub), "%s.path", where);
    if (v[0])
      rc = kite__yaml_str(y, v[0], sub, &path);
    if (rc == 0 && path == NULL)
      rc = kite__yaml_fail(y, k[0] ? k[0] : it,
                           "%s: missing required key 'path'; expected the file's path "
                           "on the node",
                           where);
    snprintf(sub, sizeof(sub), "%s.content", where);
    if (rc == 0 && k[1]) {
      content = "";
      if (v[1])
        rc = kite__yaml_str(y, v[1], sub, &content);
    }
    snprintf(sub, sizeof(sub), "%s.source", where);
    if (rc == 0 && v[2])
      rc = kite__yaml_str(y, v[2], sub, &source);
    if (rc == 0 && k[1] && k[2])
      rc = kite__yaml_fail(y, k[2], "%s: both content and source are given; expected one of them",
                           where);
    if (rc == 0 && !k[1] && !source)
      rc = kite__yaml_fail(y, it, "%s: neither content nor source is given; expected one of them",
                           where);
    snprintf(sub, sizeof(sub), "%s.mode", where);
    if (rc == 0 && v[3])
      rc = read_file_mode(y, v[3], sub, &mode);
    if (rc != 0)
      return rc;
    char *data = NULL;
    size_t len = 0;
    if (source) {
      char *full = source[0] == '/' || y->basedir == NULL
                       ? kite__strdup(source)
                       : kite__sprintf("%s/%s", y->basedir, source);
      if (full == NULL)
        return kite__yaml_oom(y);
      rc = kite__read_file(full, &data, &len);
      int e = errno;
      if (rc == KITE_ENOMEM)
        rc = kite__yaml_oom(y);
      else if (rc != 0)
        rc = kite__yaml_fail(y, v[2],
                             "%s.source: cannot read '%s': %s; expected a readable local file",
                             where, full, strerror(e));
      else if (memchr(data, '\0', len))
        rc = kite__yaml_fail(y, v[2],
                             "%s.source: '%s' contains NUL bytes; expected a text file (copy "
                             "binary files with kite upload)",
                             where, full);
      free(full);
      if (rc != 0) {
        free(data);
        return rc;
      }
    }
    const char *bytes = source ? data : content;
    size_t blen = source ? len : strlen(content);
    rc = kite_bootstrap_file(b, path, bytes, blen, mode);
    free(data);
    if (rc != 0)
      return rc == KITE_ENOMEM ? kite__yaml_oom(y)
                               : kite__yaml_fail(y, it, "%s: %s", where, kite_strerror(rc));
  }
  return rc;
}

static int read_setup(kite__yaml_t *y, kite_bootstrap_t *b, const yaml_node_t *n) {
  static const char *const keys[] = {"name", "run"};
  int rc = 0;
  if (n->type == YAML_SCALAR_NODE) {
    const char *script = NULL;
    rc = kite__yaml_str(y, n, "bootstrap.setup", &script);
    if (rc == 0 && script)
      rc = kite_bootstrap_run(b, "setup", script);
    return rc == KITE_ENOMEM ? kite__yaml_oom(y) : rc;
  }
  if (n->type != YAML_SEQUENCE_NODE)
    return kite__yaml_fail(y, n,
                           "bootstrap.setup: expected a script or a list of {name, run} steps, got "
                           "a mapping");
  size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  for (size_t i = 0; rc == 0 && i < count; i++) {
    yaml_node_t *it = kite__yaml_node(y, n->data.sequence.items.start[i]);
    char where[64], sub[96], defname[32];
    snprintf(where, sizeof(where), "bootstrap.setup[%zu]", i);
    snprintf(defname, sizeof(defname), "setup %zu", i + 1);
    const char *name = defname, *script = NULL;
    if (it->type == YAML_SCALAR_NODE) {
      rc = kite__yaml_str(y, it, where, &script);
    } else if (it->type == YAML_MAPPING_NODE) {
      yaml_node_t *v[2], *k[2];
      rc = kite__yaml_mapping(y, it, where, keys, 2, v, k);
      snprintf(sub, sizeof(sub), "%s.name", where);
      if (rc == 0 && v[0])
        rc = kite__yaml_str(y, v[0], sub, &name);
      snprintf(sub, sizeof(sub), "%s.run", where);
      if (rc == 0 && v[1])
        rc = kite__yaml_str(y, v[1], sub, &script);
    } else {
      rc = kite__yaml_fail(
          y, it, "%s: expected a script or {name: NAME, run: SCRIPT}, got a sequence", where);
    }
    if (rc == 0 && script == NULL)
      rc = kite__yaml_fail(y, it, "%s: the step has no script; expected run: SCRIPT", where);
    if (rc == 0) {
      rc = kite_bootstrap_run(b, name, script);
      if (rc != 0)
        rc = rc == KITE_ENOMEM ? kite__yaml_oom(y)
                               : kite__yaml_fail(y, it, "%s: %s", where, kite_strerror(rc));
    }
  }
  return rc;
}

int kite__bootstrap_read(kite__yaml_t *y, const yaml_node_t *n, kite_bootstrap_t **out,
                         uint64_t *timeout_ms) {
  /* Steps are built in this order whatever the order of the keys; timeout is not a step. */
  static const char *const keys[] = {"env", "apt", "pip", "files", "setup", "timeout"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  int rc = kite__yaml_expect_mapping(y, n, "bootstrap");
  if (rc == 0)
    rc = kite__yaml_mapping(y, n, "bootstrap", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0) {
    rc = kite_bootstrap_new(out);
    if (rc != 0)
      return kite__yaml_oom(y);
  }
  kite_bootstrap_t *b = *out;
  if (rc == 0 && v[0])
    rc = read_env(y, b, v[0]);
  if (rc == 0 && v[1])
    rc = add_packages(y, b, v[1], "bootstrap.apt", false, NULL);
  if (rc == 0 && v[2])
    rc = read_pip(y, b, v[2]);
  if (rc == 0 && v[3])
    rc = read_files(y, b, v[3]);
  if (rc == 0 && v[4])
    rc = read_setup(y, b, v[4]);
  if (rc == 0 && v[5])
    rc = kite__yaml_duration(y, v[5], "bootstrap.timeout", 1000, 7 * 24 * 3600 * 1000ull,
                             timeout_ms);
  if (rc == 0 && kite_bootstrap_steps(b) == 0) {
    kite_bootstrap_free(b);
    *out = NULL;
  }
  return rc;
}
