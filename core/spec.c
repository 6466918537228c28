/* Pool specs in YAML: text → kite_spec_t (a kite_pool_spec_t, its bootstrap and `run:`).
 *
 * Design notes
 * - What it owns: each kite_spec_t owns every string its pool spec points to (one list of
 *   allocations, freed together), the env array, the provider options' JSON text and the
 *   bootstrap builder. It reacts to nothing and emits nothing.
 * - Two passes over the text. The first walks libyaml's events: it reports syntax errors (and
 *   recognises a tab in indentation, which libyaml reports as an unexpected character),
 *   aliases (refused: a value written once is easier to read, and an alias bomb cannot grow
 *   provider_options) and a second document. The second pass loads the document tree, which
 *   the mapping code walks with positions for every node.
 * - Every value is a scalar, sequence or mapping node checked against the schema as it is
 *   read; the first problem found ends the load with one message naming file, line and column.
 *   Nothing outside the new kite_spec_t is touched until the load has succeeded, so an error
 *   frees that one object and leaves the caller's pointer as it was.
 * - YAML typing: quoted and block scalars are strings; a plain scalar is resolved after ${VAR}
 *   expansion with the YAML 1.2 core schema (null, true/false, integer, float, else string).
 *   An empty or null value means the key was not given. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <yaml.h>

#include "kite/spec.h"
#include "kite_impl.h"

#define MAX_SPEC_BYTES (16u << 20)
#define MAX_JSON_DEPTH 64

/* Where a key was written: its dotted path and the marks of the key and of its value. */
typedef struct located {
  char *path;
  kite_spec_pos_t key, value;
} located_t;

struct kite_spec {
  kite_pool_spec_t pool;
  char *run;
  unsigned retries; /* re-runs of run: (and of kite exec's commands) on a lost node's replacement */
  char *source;
  char **env;
  kite_bootstrap_t *bootstrap;
  char **owned; /* every string the pool spec points to */
  size_t n_owned, cap_owned;
  located_t *keys; /* every mapping key of the document, for kite_spec_where() */
  size_t n_keys, cap_keys;
};

typedef struct loader {
  const char *file; /* for messages */
  char *basedir;    /* for relative paths; NULL: the working directory */
  const char *text;
  size_t len;
  yaml_document_t doc;
  bool doc_loaded;
  char *err;
  kite_spec_t *spec;
} loader_t;

typedef enum kind { K_NULL, K_BOOL, K_INT, K_FLOAT, K_STR } kind_t;

/* ---- errors --------------------------------------------------------------------------- */

static int failv(loader_t *l, yaml_mark_t m, int rc, const char *fmt, va_list ap) {
  if (l->err != NULL)
    return rc;
  char msg[1024], one[2048];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  /* One line whatever the values quoted in it hold. */
  size_t o = 0;
  for (const char *c = msg; *c && o + 5 < sizeof(one); c++) {
    unsigned char ch = (unsigned char)*c;
    if (ch == '\n' || ch == '\t' || ch == '\r') {
      one[o++] = '\\';
      one[o++] = ch == '\n' ? 'n' : ch == '\t' ? 't' : 'r';
    } else if (ch < 0x20 || ch == 0x7f) {
      o += (size_t)snprintf(one + o, sizeof(one) - o, "\\x%02x", ch);
    } else {
      one[o++] = (char)ch;
    }
  }
  one[o] = '\0';
  l->err = kite__sprintf("%s:%zu:%zu: %s", l->file, m.line + 1, m.column + 1, one);
  return rc;
}

__attribute__((format(printf, 3, 4))) static int fail_at(loader_t *l, yaml_mark_t m,
                                                         const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = failv(l, m, KITE_ESPEC, fmt, ap);
  va_end(ap);
  return rc;
}

__attribute__((format(printf, 3, 4))) static int fail(loader_t *l, const yaml_node_t *n,
                                                      const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = failv(l, n->start_mark, KITE_ESPEC, fmt, ap);
  va_end(ap);
  return rc;
}

static int oom(loader_t *l) {
  if (l->err == NULL)
    l->err = kite__sprintf("%s: out of memory", l->file);
  return KITE_ENOMEM;
}

/* ---- ownership ------------------------------------------------------------------------ */

/* Takes s into the spec's list of allocations (s may be NULL: out of memory). */
static int own(loader_t *l, char *s, const char **out) {
  kite_spec_t *sp = l->spec;
  if (s == NULL)
    return oom(l);
  if (sp->n_owned == sp->cap_owned) {
    size_t cap = sp->cap_owned ? sp->cap_owned * 2 : 16;
    char **g = realloc(sp->owned, cap * sizeof(*g));
    if (g == NULL) {
      free(s);
      return oom(l);
    }
    sp->owned = g;
    sp->cap_owned = cap;
  }
  sp->owned[sp->n_owned++] = s;
  if (out)
    *out = s;
  return 0;
}

static kite_spec_pos_t pos_of(yaml_mark_t m) {
  return (kite_spec_pos_t){.line = (unsigned)m.line + 1, .column = (unsigned)m.column + 1};
}

/* Remembers where the key at path (malloc'd; NULL: out of memory) and its value were written,
 * so that checks made after the load (the provider's, providers/registry.c) can point there. */
static int locate(loader_t *l, char *path, const yaml_node_t *k, const yaml_node_t *v) {
  kite_spec_t *sp = l->spec;
  if (path == NULL)
    return oom(l);
  if (sp->n_keys == sp->cap_keys) {
    size_t cap = sp->cap_keys ? sp->cap_keys * 2 : 32;
    located_t *g = realloc(sp->keys, cap * sizeof(*g));
    if (g == NULL) {
      free(path);
      return oom(l);
    }
    sp->keys = g;
    sp->cap_keys = cap;
  }
  sp->keys[sp->n_keys++] =
      (located_t){.path = path, .key = pos_of(k->start_mark), .value = pos_of(v->start_mark)};
  return 0;
}

/* ---- nodes ---------------------------------------------------------------------------- */

static yaml_node_t *node(loader_t *l, int index) {
  return yaml_document_get_node(&l->doc, index);
}

static bool is_null_node(const yaml_node_t *n);

static const char *node_kind_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_MAPPING_NODE:
    return "a mapping";
  case YAML_SEQUENCE_NODE:
    return "a sequence";
  default:
    return "a value";
  }
}

static const char *kind_name(kind_t k) {
  switch (k) {
  case K_NULL:
    return "an empty value";
  case K_BOOL:
    return "a boolean";
  case K_INT:
    return "an integer";
  case K_FLOAT:
    return "a number";
  case K_STR:
  default:
    return "a string";
  }
}

/* ---- ${VAR} expansion ----------------------------------------------------------------- */

typedef struct buf {
  char *p;
  size_t n, cap;
} buf_t;

static bool buf_add(buf_t *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *g = realloc(b->p, cap);
    if (g == NULL)
      return false;
    b->p = g;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
  return true;
}

/* The scalar's value with ${VAR}, ${VAR:-default} and $$ expanded; malloc'd into *out. */
static int expand(loader_t *l, const yaml_node_t *n, const char *path, char **out) {
  const char *s = (const char *)n->data.scalar.value;
  size_t len = n->data.scalar.length;
  buf_t b = {0};
  bool ok = buf_add(&b, "", 0);
  size_t i = 0;
  while (ok && i < len) {
    const char *dollar = memchr(s + i, '$', len - i);
    size_t upto = dollar ? (size_t)(dollar - s) : len;
    ok = buf_add(&b, s + i, upto - i);
    i = upto;
    if (!ok || i >= len)
      break;
    if (i + 1 < len && s[i + 1] == '$') {
      ok = buf_add(&b, "$", 1);
      i += 2;
      continue;
    }
    if (i + 1 >= len || s[i + 1] != '{') {
      ok = buf_add(&b, "$", 1);
      i += 1;
      continue;
    }
    const char *close = memchr(s + i, '}', len - i);
    if (close == NULL) {
      free(b.p);
      return fail(l, n,
                  "%s: '${' without a closing '}'; expected ${VAR} or ${VAR:-default} "
                  "(write $$ for a literal $)",
                  path);
    }
    const char *name = s + i + 2;
    const char *end = close;
    const char *def = NULL;
    const char *sep = NULL;
    for (const char *c = name; c < close; c++)
      if (c + 1 < close && c[0] == ':' && c[1] == '-') {
        sep = c;
        break;
      }
    if (sep) {
      end = sep;
      def = sep + 2;
    }
    size_t name_len = (size_t)(end - name);
    if (!kite__shell_name(name, name_len)) {
      int shown = (int)(close - (s + i) + 1);
      free(b.p);
      return fail(l, n,
                  "%s: '%.*s' is not a variable reference; expected ${VAR} or "
                  "${VAR:-default} (write $$ for a literal $)",
                  path, shown, s + i);
    }
    char var[256];
    if (name_len >= sizeof(var)) {
      free(b.p);
      return fail(l, n, "%s: variable name '%.*s' is too long; expected at most 255 characters",
                  path, (int)name_len, name);
    }
    memcpy(var, name, name_len);
    var[name_len] = '\0';
    const char *val = getenv(var);
    if (def != NULL && (val == NULL || *val == '\0'))
      ok = buf_add(&b, def, (size_t)(close - def));
    else if (val != NULL)
      ok = buf_add(&b, val, strlen(val));
    else {
      free(b.p);
      return fail(l, n,
                  "%s: environment variable '%s' is not set; set it or write "
                  "${%s:-default}",
                  path, var, var);
    }
    i = (size_t)(close - s) + 1;
  }
  if (!ok) {
    free(b.p);
    return oom(l);
  }
  *out = b.p;
  return 0;
}

/* YAML 1.2 core schema resolution of a plain scalar's (expanded) text. */
static kind_t resolve_plain(const char *s) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  static const char *const bools[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(nulls); i++)
    if (strcmp(s, nulls[i]) == 0)
      return K_NULL;
  for (size_t i = 0; i < KITE_ARRAY_SIZE(bools); i++)
    if (strcmp(s, bools[i]) == 0)
      return K_BOOL;
  const char *c = s;
  if (*c == '-' || *c == '+')
    c++;
  if (*c >= '0' && *c <= '9') {
    const char *d = c;
    while (*d >= '0' && *d <= '9')
      d++;
    if (*d == '\0')
      return K_INT;
  }
  if ((*c >= '0' && *c <= '9') || (*c == '.' && c[1] >= '0' && c[1] <= '9')) {
    char *end;
    errno = 0;
    (void)strtod(s, &end);
    if (*end == '\0' && strpbrk(s, "xXnNiI") == NULL)
      return K_FLOAT;
  }
  if (strcmp(c, ".inf") == 0 || strcmp(c, ".Inf") == 0 || strcmp(s, ".nan") == 0 ||
      strcmp(s, ".NaN") == 0)
    return K_FLOAT;
  return K_STR;
}

/* Reads a scalar: its expanded text (malloc'd) and its kind. n must be a scalar. */
static int scalar(loader_t *l, const yaml_node_t *n, const char *path, char **text, kind_t *kind) {
  int rc = expand(l, n, path, text);
  if (rc != 0)
    return rc;
  *kind = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? resolve_plain(*text) : K_STR;
  return 0;
}

static bool is_null_node(const yaml_node_t *n) {
  if (n == NULL)
    return true;
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
    return false;
  /* Before expansion; a value that expands to nothing is caught by the typed readers. */
  char tmp[8];
  size_t len = n->data.scalar.length;
  if (len >= sizeof(tmp))
    return false;
  memcpy(tmp, n->data.scalar.value, len);
  tmp[len] = '\0';
  return resolve_plain(tmp) == K_NULL;
}

/* ---- typed readers -------------------------------------------------------------------- */

static const char *fmt_ms(char *buf, size_t size, uint64_t ms) {
  unsigned long long v = ms;
  if (v && v % 3600000 == 0)
    snprintf(buf, size, "%lluh", v / 3600000);
  else if (v && v % 60000 == 0)
    snprintf(buf, size, "%llum", v / 60000);
  else if (v && v % 1000 == 0)
    snprintf(buf, size, "%llus", v / 1000);
  else
    snprintf(buf, size, "%llums", v);
  return buf;
}

/* "got a string ('x')", or for a quoted "4" where a plain 4 was meant, says so. */
static int wrong_kind(loader_t *l, const yaml_node_t *n, const char *path, const char *expected,
                      kind_t want, kind_t got, const char *text) {
  if (got == K_STR && n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
      resolve_plain(text) == want)
    return fail(l, n, "%s: expected %s, got a quoted string ('%s'); write it without quotes", path,
                expected, text);
  bool long_text = strlen(text) > 40;
  return fail(l, n, "%s: expected %s, got %s ('%.40s%s')", path, expected, kind_name(got), text,
              long_text ? "..." : "");
}

/* A string value, owned by the spec. An empty value leaves *out as it was. */
static int get_str(loader_t *l, const yaml_node_t *n, const char *path, const char **out) {
  if (n->type != YAML_SCALAR_NODE)
    return fail(l, n, "%s: expected a string, got %s", path, node_kind_name(n));
  char *text;
  kind_t k;
  int rc = scalar(l, n, path, &text, &k);
  if (rc != 0)
    return rc;
  if (k == K_NULL) {
    free(text);
    return 0;
  }
  return own(l, text, out);
}

static int get_bool(loader_t *l, const yaml_node_t *n, const char *path, bool *out) {
  if (n->type != YAML_SCALAR_NODE)
    return fail(l, n, "%s: expected true or false, got %s", path, node_kind_name(n));
  char *text;
  kind_t k;
  int rc = scalar(l, n, path, &text, &k);
  if (rc != 0)
    return rc;
  if (k == K_NULL) {
    free(text);
    return 0;
  }
  if (k != K_BOOL) {
    rc = wrong_kind(l, n, path, "true or false", K_BOOL, k, text);
    free(text);
    return rc;
  }
  *out = text[0] == 't' || text[0] == 'T';
  free(text);
  return 0;
}

/* An integer in [lo, hi]; an empty value leaves *out as it was. */
static int get_int(loader_t *l, const yaml_node_t *n, const char *path, long long lo, long long hi,
                   long long *out) {
  if (n->type != YAML_SCALAR_NODE)
    return fail(l, n, "%s: expected an integer, got %s", path, node_kind_name(n));
  char *text;
  kind_t k;
  int rc = scalar(l, n, path, &text, &k);
  if (rc != 0)
    return rc;
  if (k == K_NULL) {
    free(text);
    return 0;
  }
  if (k != K_INT) {
    rc = wrong_kind(l, n, path, "an integer", K_INT, k, text);
    free(text);
    return rc;
  }
  errno = 0;
  long long v = strtoll(text, NULL, 10);
  if (errno == ERANGE || v < lo || v > hi)
    rc = fail(l, n, "%s: %s is out of range; expected %lld to %lld", path, text, lo, hi);
  else
    *out = v;
  free(text);
  return rc;
}

static int get_uint(loader_t *l, const yaml_node_t *n, const char *path, long long lo, long long hi,
                    unsigned *out) {
  long long v = *out;
  int rc = get_int(l, n, path, lo, hi, &v);
  if (rc == 0)
    *out = (unsigned)v;
  return rc;
}

/* A duration "NUMBER UNIT" (ms, s, m, h) in [lo_ms, hi_ms]. */
static int get_duration(loader_t *l, const yaml_node_t *n, const char *path, uint64_t lo_ms,
                        uint64_t hi_ms, uint64_t *out) {
  static const struct {
    const char *unit;
    double ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  if (n->type != YAML_SCALAR_NODE)
    return fail(l, n, "%s: expected a duration such as 500ms, 5s, 2m or 1h, got %s", path,
                node_kind_name(n));
  char *text;
  kind_t k;
  int rc = scalar(l, n, path, &text, &k);
  if (rc != 0)
    return rc;
  if (k == K_NULL) {
    free(text);
    return 0;
  }
  char *end;
  errno = 0;
  double v = text[0] >= '0' && text[0] <= '9' ? strtod(text, &end) : -1;
  double ms = -1;
  if (v >= 0 && errno == 0) {
    while (*end == ' ')
      end++;
    for (size_t i = 0; i < KITE_ARRAY_SIZE(units); i++)
      if (strcmp(end, units[i].unit) == 0)
        ms = v * units[i].ms;
  }
  if (ms < 0)
    rc = fail(l, n,
              "%s: '%.60s' is not a duration; expected a number with a unit, such as 500ms, "
              "5s, 2m or 1h",
              path, text);
  else if (ms < (double)lo_ms || ms > (double)hi_ms) {
    char lo[32], hi[32];
    rc = fail(l, n, "%s: %s is out of range; expected %s to %s", path, text,
              fmt_ms(lo, sizeof(lo), lo_ms), fmt_ms(hi, sizeof(hi), hi_ms));
  } else
    *out = (uint64_t)(ms + 0.5);
  free(text);
  return rc;
}

/* ---- mappings ------------------------------------------------------------------------- */

/* A key's text: keys are taken literally (never expanded), and must be strings. */
static int key_text(loader_t *l, const yaml_node_t *k, const char *where, char *out, size_t size) {
  if (k->type != YAML_SCALAR_NODE)
    return fail(l, k, "%s is used as a key in %s; expected a plain name", node_kind_name(k),
                where[0] ? where : "the spec");
  size_t len = k->data.scalar.length;
  if (len >= size || memchr(k->data.scalar.value, '\0', len))
    return fail(l, k, "key '%.40s...' is too long; expected a key of %s",
                (const char *)k->data.scalar.value, where[0] ? where : "the spec");
  memcpy(out, k->data.scalar.value, len);
  out[len] = '\0';
  return 0;
}

/* Checks a mapping against its keys: every key known, none twice. vals[i] is the value of
 * keys[i] (NULL when absent or empty); knodes[i] its key node. where names the mapping in
 * messages ("" for the top level). */
static int check_mapping(loader_t *l, const yaml_node_t *map, const char *where,
                         const char *const *keys, size_t nkeys, yaml_node_t **vals,
                         yaml_node_t **knodes) {
  for (size_t i = 0; i < nkeys; i++)
    vals[i] = knodes[i] = NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = node(l, p->key);
    char name[128];
    int rc = key_text(l, k, where, name, sizeof(name));
    if (rc != 0)
      return rc;
    size_t i = 0;
    while (i < nkeys && strcmp(keys[i], name) != 0)
      i++;
    if (i == nkeys) {
      const char *near = kite__closest(name, keys, nkeys);
      char in[160] = "";
      if (where[0])
        snprintf(in, sizeof(in), " in %s", where);
      if (near)
        return fail(l, k, "unknown key '%s'%s; did you mean '%s'?", name, in, near);
      char list[600] = "";
      size_t off = 0;
      for (size_t j = 0; j < nkeys && off < sizeof(list); j++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", j ? ", " : "", keys[j]);
      return fail(l, k, "unknown key '%s'%s; expected one of: %s", name, in, list);
    }
    if (knodes[i] != NULL)
      return fail(l, k, "duplicate key '%s'%s%s (first at line %zu); give each key once", name,
                  where[0] ? " in " : "", where, knodes[i]->start_mark.line + 1);
    knodes[i] = k;
    yaml_node_t *v = node(l, p->value);
    vals[i] = is_null_node(v) ? NULL : v;
    rc = locate(l, where[0] ? kite__sprintf("%s.%s", where, name) : kite__strdup(name), k, v);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int expect_mapping(loader_t *l, const yaml_node_t *n, const char *path) {
  if (n->type != YAML_MAPPING_NODE)
    return fail(l, n, "%s: expected a mapping (KEY: VALUE lines), got %s", path,
                n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a single value");
  return 0;
}

static int expect_sequence(loader_t *l, const yaml_node_t *n, const char *path) {
  if (n->type != YAML_SEQUENCE_NODE)
    return fail(l, n, "%s: expected a list (- ITEM lines or [A, B]), got %s", path,
                n->type == YAML_MAPPING_NODE ? "a mapping" : "a single value");
  return 0;
}

/* Walks a mapping whose keys are names of the caller's choosing (env), refusing duplicates. */
static int check_free_keys(loader_t *l, const yaml_node_t *map, const char *where) {
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = node(l, p->key);
    char name[256];
    int rc = key_text(l, k, where, name, sizeof(name));
    if (rc != 0)
      return rc;
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
      yaml_node_t *k2 = node(l, q->key);
      if (k2->data.scalar.length == k->data.scalar.length &&
          memcmp(k2->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
        return fail(l, k, "duplicate key '%s' in %s (first at line %zu); give each key once", name,
                    where, k2->start_mark.line + 1);
    }
  }
  return 0;
}

/* ---- provider options → JSON ---------------------------------------------------------- */

static int to_json(loader_t *l, const yaml_node_t *n, const char *path, int depth, json_t **out) {
  *out = NULL;
  if (depth > MAX_JSON_DEPTH)
    return fail(l, n, "%s: nested too deeply; expected at most %d levels", path, MAX_JSON_DEPTH);
  char sub[256];
  int rc = 0;
  if (n->type == YAML_MAPPING_NODE) {
    rc = check_free_keys(l, n, path);
    json_t *obj = rc == 0 ? json_object() : NULL;
    if (rc == 0 && obj == NULL)
      rc = oom(l);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         rc == 0 && p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = node(l, p->key);
      char key[256];
      memcpy(key, k->data.scalar.value, k->data.scalar.length);
      key[k->data.scalar.length] = '\0';
      snprintf(sub, sizeof(sub), "%.200s.%.40s", path, key);
      json_t *v;
      rc = locate(l, kite__sprintf("%s.%s", path, key), k, node(l, p->value));
      if (rc == 0)
        rc = to_json(l, node(l, p->value), sub, depth + 1, &v);
      if (rc == 0 && json_object_set_new(obj, key, v) != 0)
        rc = fail(l, k, "%s: the key is not valid UTF-8; expected text", sub);
    }
    if (rc != 0)
      json_decref(obj);
    else
      *out = obj;
    return rc;
  }
  if (n->type == YAML_SEQUENCE_NODE) {
    json_t *arr = json_array();
    if (arr == NULL)
      return oom(l);
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         rc == 0 && it < n->data.sequence.items.top; it++, i++) {
      snprintf(sub, sizeof(sub), "%.200s[%zu]", path, i);
      json_t *v;
      rc = to_json(l, node(l, *it), sub, depth + 1, &v);
      if (rc == 0 && json_array_append_new(arr, v) != 0)
        rc = oom(l);
    }
    if (rc != 0)
      json_decref(arr);
    else
      *out = arr;
    return rc;
  }
  char *text;
  kind_t k;
  rc = scalar(l, n, path, &text, &k);
  if (rc != 0)
    return rc;
  json_t *v = NULL;
  switch (k) {
  case K_NULL:
    v = json_null();
    break;
  case K_BOOL:
    v = json_boolean(text[0] == 't' || text[0] == 'T');
    break;
  case K_INT: {
    errno = 0;
    long long x = strtoll(text, NULL, 10);
    if (errno == ERANGE) {
      rc = fail(l, n, "%s: %s is out of range; expected an integer of at most 64 bits", path, text);
      break;
    }
    v = json_integer(x);
    break;
  }
  case K_FLOAT: {
    double x = strtod(text, NULL);
    if (strpbrk(text, "iInN") != NULL || x != x || x - x != 0) {
      rc = fail(l, n, "%s: '%s' has no JSON form; expected a finite number", path, text);
      break;
    }
    v = json_real(x);
    break;
  }
  case K_STR:
  default:
    v = json_string(text);
    if (v == NULL)
      rc = fail(l, n, "%s: the value is not valid UTF-8; expected text", path);
    break;
  }
  free(text);
  if (rc == 0 && v == NULL)
    rc = oom(l);
  *out = v;
  return rc;
}

/* ---- sections ------------------------------------------------------------------------- */

static int read_resources(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"cpus",          "memory", "accelerators",
                                     "instance_type", "spot",   "disk_gb"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &l->spec->pool;
  int rc = expect_mapping(l, n, "resources");
  if (rc == 0)
    rc = check_mapping(l, n, "resources", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = get_uint(l, v[0], "resources.cpus", 1, 100000, &ps->cpus);
  if (rc == 0 && v[1]) {
    /* A number of GiB, or a number with a unit. */
    static const struct {
      const char *unit;
      double mb;
    } units[] = {{"", 1024},   {"M", 1},      {"MB", 1},      {"MiB", 1},      {"G", 1024},
                 {"GB", 1024}, {"GiB", 1024}, {"T", 1048576}, {"TB", 1048576}, {"TiB", 1048576}};
    const char *path = "resources.memory";
    if (v[1]->type != YAML_SCALAR_NODE)
      return fail(l, v[1], "%s: expected a size such as 16GB or 512MB, got %s", path,
                  node_kind_name(v[1]));
    char *text;
    kind_t kind;
    rc = scalar(l, v[1], path, &text, &kind);
    if (rc != 0)
      return rc;
    double mb = -1;
    if (text[0] >= '0' && text[0] <= '9') {
      char *end;
      double x = strtod(text, &end);
      while (*end == ' ')
        end++;
      for (size_t i = 0; i < KITE_ARRAY_SIZE(units); i++)
        if (strcmp(end, units[i].unit) == 0)
          mb = x * units[i].mb;
    }
    if (kind == K_NULL)
      mb = 0;
    else if (mb < 0)
      rc = fail(l, v[1],
                "%s: '%.60s' is not a size; expected a number of GiB or a number with "
                "a unit, such as 16GB or 512MB",
                path, text);
    else if (mb < 1 || mb > 1024.0 * 1048576)
      rc = fail(l, v[1], "%s: %s is out of range; expected 1MB to 1024TB", path, text);
    free(text);
    if (rc != 0)
      return rc;
    ps->memory_mb = (uint64_t)(mb + 0.5);
  }
  if (rc == 0 && v[2]) {
    const char *path = "resources.accelerators";
    const char *acc = NULL;
    rc = get_str(l, v[2], path, &acc);
    if (rc == 0 && acc) {
      const char *colon = strchr(acc, ':');
      size_t name_len = colon ? (size_t)(colon - acc) : strlen(acc);
      bool ok = name_len > 0 && name_len <= 64;
      for (size_t i = 0; ok && i < name_len; i++)
        ok = (acc[i] >= 'A' && acc[i] <= 'Z') || (acc[i] >= 'a' && acc[i] <= 'z') ||
             (acc[i] >= '0' && acc[i] <= '9') || acc[i] == '-' || acc[i] == '_' || acc[i] == '.';
      long count = 1;
      if (ok && colon) {
        const char *c = colon + 1;
        ok = *c >= '0' && *c <= '9' && strlen(c) <= 5;
        for (; ok && *c; c++)
          ok = *c >= '0' && *c <= '9';
        count = ok ? strtol(colon + 1, NULL, 10) : 0;
      }
      if (!ok)
        return fail(l, v[2], "%s: '%.60s' is not NAME or NAME:COUNT; expected e.g. A100:8", path,
                    acc);
      if (count < 1 || count > 1024)
        return fail(l, v[2], "%s: count %ld is out of range; expected 1 to 1024", path, count);
      char *name = strndup(acc, name_len);
      rc = own(l, name, &ps->accelerator);
      ps->accelerator_count = (unsigned)count;
    }
  }
  if (rc == 0 && v[3])
    rc = get_str(l, v[3], "resources.instance_type", &ps->instance_type);
  if (rc == 0 && v[4])
    rc = get_bool(l, v[4], "resources.spot", &ps->spot);
  if (rc == 0 && v[5])
    rc = get_uint(l, v[5], "resources.disk_gb", 1, 1000000, &ps->disk_gb);
  return rc;
}

static int read_env(loader_t *l, const yaml_node_t *n) {
  const char *where = "env";
  int rc = expect_mapping(l, n, where);
  if (rc == 0)
    rc = check_free_keys(l, n, where);
  if (rc != 0)
    return rc;
  size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  char **env = calloc(count + 1, sizeof(*env));
  if (env == NULL)
    return oom(l);
  l->spec->env = env;
  size_t i = 0;
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
    const char *name = (const char *)k->data.scalar.value;
    char path[300];
    snprintf(path, sizeof(path), "env.%s", name);
    if (!kite__shell_name(name, k->data.scalar.length))
      return fail(l, k,
                  "env: '%s' is not a valid variable name; expected letters, digits and "
                  "'_', not starting with a digit",
                  name);
    if (v->type != YAML_SCALAR_NODE)
      return fail(l, v, "%s: expected a string, got %s (secrets belong in bootstrap.env)", path,
                  node_kind_name(v));
    char *text;
    kind_t kind;
    rc = scalar(l, v, path, &text, &kind);
    if (rc != 0)
      return rc;
    env[i] = kite__sprintf("%s=%s", name, kind == K_NULL ? "" : text);
    free(text);
    if (env[i++] == NULL)
      return oom(l);
  }
  l->spec->pool.env = (const char *const *)env;
  return 0;
}

/* A list of strings (NULL-terminated, strings owned by the spec, array malloc'd). */
static int get_str_list(loader_t *l, const yaml_node_t *n, const char *path, char ***out) {
  int rc = expect_sequence(l, n, path);
  if (rc != 0)
    return rc;
  size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  char **list = calloc(count + 1, sizeof(*list));
  if (list == NULL)
    return oom(l);
  size_t j = 0;
  for (size_t i = 0; rc == 0 && i < count; i++) {
    yaml_node_t *it = node(l, n->data.sequence.items.start[i]);
    char sub[300];
    snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
    const char *s = NULL;
    if (it->type != YAML_SCALAR_NODE)
      rc = fail(l, it, "%s: expected a string, got %s", sub, node_kind_name(it));
    else
      rc = get_str(l, it, sub, &s);
    if (rc == 0 && s == NULL)
      rc = fail(l, it, "%s: the item is empty; expected a name", sub);
    if (rc == 0)
      list[j++] = (char *)s;
  }
  if (rc != 0) {
    free(list);
    return rc;
  }
  *out = list;
  return 0;
}

/* Adds a package step; on a name the builder refuses, finds which one to point at it. */
static int add_packages(loader_t *l, const yaml_node_t *seq, const char *path, bool pip,
                        const kite_bootstrap_pip_opts_t *opts) {
  char **list;
  int rc = get_str_list(l, seq, path, &list);
  if (rc != 0)
    return rc;
  if (list[0] == NULL) {
    free(list);
    return 0;
  }
  kite_bootstrap_t *b = l->spec->bootstrap;
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
    yaml_node_t *it = node(l, seq->data.sequence.items.start[bad]);
    rc = fail(l, it, "%s[%zu]: '%.60s' is not a valid package name; expected %s", path, bad,
              list[bad],
              pip ? "a pip requirement such as numpy or torch==2.3.0"
                  : "a Debian package name such as git or python3-pip");
  } else if (rc != 0) {
    rc = rc == KITE_ENOMEM ? oom(l) : fail(l, seq, "%s: %s", path, kite_strerror(rc));
  }
  free(list);
  return rc;
}

static int read_pip(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"packages", "no_index", "find_links", "python"};
  if (n->type == YAML_SEQUENCE_NODE)
    return add_packages(l, n, "bootstrap.pip", true, NULL);
  if (n->type != YAML_MAPPING_NODE)
    return fail(l, n,
                "bootstrap.pip: expected a list of packages or a mapping with packages, "
                "got a single value");
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_bootstrap_pip_opts_t opts = {0};
  int rc = check_mapping(l, n, "bootstrap.pip", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[1])
    rc = get_bool(l, v[1], "bootstrap.pip.no_index", &opts.no_index);
  if (rc == 0 && v[2])
    rc = get_str(l, v[2], "bootstrap.pip.find_links", &opts.find_links);
  if (rc == 0 && v[3])
    rc = get_str(l, v[3], "bootstrap.pip.python", &opts.python);
  if (rc == 0 && v[0] == NULL)
    rc = fail(l, n,
              "bootstrap.pip: missing required key 'packages'; expected a list of "
              "packages");
  if (rc == 0)
    rc = add_packages(l, v[0], "bootstrap.pip.packages", true, &opts);
  return rc;
}

static int read_bootstrap_env(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"value", "secret"};
  const char *where = "bootstrap.env";
  int rc = expect_mapping(l, n, where);
  if (rc == 0)
    rc = check_free_keys(l, n, where);
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; rc == 0 && p < n->data.mapping.pairs.top;
       p++) {
    yaml_node_t *k = node(l, p->key), *v = node(l, p->value);
    const char *name = (const char *)k->data.scalar.value;
    char path[300];
    snprintf(path, sizeof(path), "%s.%s", where, name);
    if (!kite__shell_name(name, k->data.scalar.length))
      return fail(l, k,
                  "%s: '%s' is not a valid variable name; expected letters, digits and "
                  "'_', not starting with a digit",
                  where, name);
    const char *value = "";
    bool secret = false;
    if (v->type == YAML_MAPPING_NODE) {
      yaml_node_t *vv[2], *kk[2];
      rc = check_mapping(l, v, path, keys, 2, vv, kk);
      if (rc == 0 && kk[0] == NULL)
        rc =
            fail(l, v, "%s: missing required key 'value'; expected {value: V, secret: true}", path);
      char sub[320];
      snprintf(sub, sizeof(sub), "%s.value", path);
      if (rc == 0 && vv[0])
        rc = get_str(l, vv[0], sub, &value);
      snprintf(sub, sizeof(sub), "%s.secret", path);
      if (rc == 0 && vv[1])
        rc = get_bool(l, vv[1], sub, &secret);
    } else if (v->type == YAML_SCALAR_NODE) {
      rc = get_str(l, v, path, &value);
    } else {
      rc = fail(l, v, "%s: expected a string or {value: V, secret: true}, got a sequence", path);
    }
    if (rc == 0) {
      rc = kite_bootstrap_env(l->spec->bootstrap, name, value, secret);
      if (rc != 0)
        rc = rc == KITE_ENOMEM ? oom(l) : fail(l, k, "%s: %s", path, kite_strerror(rc));
    }
  }
  return rc;
}

static int read_file_mode(loader_t *l, const yaml_node_t *n, const char *path, int *mode) {
  if (n->type != YAML_SCALAR_NODE)
    return fail(l, n, "%s: expected an octal file mode such as 0644, got %s", path,
                node_kind_name(n));
  char *text;
  kind_t kind;
  int rc = scalar(l, n, path, &text, &kind);
  if (rc != 0)
    return rc;
  const char *c = text;
  if (c[0] == '0' && (c[1] == 'o' || c[1] == 'O'))
    c += 2;
  bool ok = *c != '\0' && strlen(c) <= 5;
  for (const char *d = c; ok && *d; d++)
    ok = *d >= '0' && *d <= '7';
  long m = ok ? strtol(c, NULL, 8) : -1;
  if (kind == K_NULL)
    rc = 0;
  else if (!ok || m > 07777)
    rc = fail(l, n, "%s: '%.60s' is not a file mode; expected octal digits such as 0644 or 0755",
              path, text);
  else
    *mode = (int)m;
  free(text);
  return rc;
}

static int read_files(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"path", "content", "source", "mode"};
  int rc = expect_sequence(l, n, "bootstrap.files");
  size_t count = rc == 0 ? (size_t)(n->data.sequence.items.top - n->data.sequence.items.start) : 0;
  for (size_t i = 0; rc == 0 && i < count; i++) {
    yaml_node_t *it = node(l, n->data.sequence.items.start[i]);
    char where[64], sub[96];
    snprintf(where, sizeof(where), "bootstrap.files[%zu]", i);
    rc = expect_mapping(l, it, where);
    yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
    if (rc == 0)
      rc = check_mapping(l, it, where, keys, KITE_ARRAY_SIZE(keys), v, k);
    if (rc != 0)
      return rc;
    const char *path = NULL, *content = NULL, *source = NULL;
    int mode = 0644;
    snprintf(sub, sizeof(sub), "%s.path", where);
    if (v[0])
      rc = get_str(l, v[0], sub, &path);
    if (rc == 0 && path == NULL)
      rc = fail(l, k[0] ? k[0] : it,
                "%s: missing required key 'path'; expected the file's path "
                "on the node",
                where);
    snprintf(sub, sizeof(sub), "%s.content", where);
    if (rc == 0 && k[1]) {
      content = "";
      if (v[1])
        rc = get_str(l, v[1], sub, &content);
    }
    snprintf(sub, sizeof(sub), "%s.source", where);
    if (rc == 0 && v[2])
      rc = get_str(l, v[2], sub, &source);
    if (rc == 0 && k[1] && k[2])
      rc = fail(l, k[2], "%s: both content and source are given; expected one of them", where);
    if (rc == 0 && !k[1] && !source)
      rc = fail(l, it, "%s: neither content nor source is given; expected one of them", where);
    snprintf(sub, sizeof(sub), "%s.mode", where);
    if (rc == 0 && v[3])
      rc = read_file_mode(l, v[3], sub, &mode);
    if (rc != 0)
      return rc;
    char *data = NULL;
    size_t len = 0;
    if (source) {
      char *full = source[0] == '/' || l->basedir == NULL
                       ? kite__strdup(source)
                       : kite__sprintf("%s/%s", l->basedir, source);
      if (full == NULL)
        return oom(l);
      rc = kite__read_file(full, &data, &len);
      int e = errno;
      if (rc == KITE_ENOMEM)
        rc = oom(l);
      else if (rc != 0)
        rc = fail(l, v[2], "%s.source: cannot read '%s': %s; expected a readable local file", where,
                  full, strerror(e));
      else if (memchr(data, '\0', len))
        rc = fail(l, v[2],
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
    rc = kite_bootstrap_file(l->spec->bootstrap, path, bytes, blen, mode);
    free(data);
    if (rc != 0)
      return rc == KITE_ENOMEM ? oom(l) : fail(l, it, "%s: %s", where, kite_strerror(rc));
  }
  return rc;
}

static int read_setup(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"name", "run"};
  kite_bootstrap_t *b = l->spec->bootstrap;
  int rc = 0;
  if (n->type == YAML_SCALAR_NODE) {
    const char *script = NULL;
    rc = get_str(l, n, "bootstrap.setup", &script);
    if (rc == 0 && script)
      rc = kite_bootstrap_run(b, "setup", script);
    return rc == KITE_ENOMEM ? oom(l) : rc;
  }
  if (n->type != YAML_SEQUENCE_NODE)
    return fail(l, n,
                "bootstrap.setup: expected a script or a list of {name, run} steps, got "
                "a mapping");
  size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  for (size_t i = 0; rc == 0 && i < count; i++) {
    yaml_node_t *it = node(l, n->data.sequence.items.start[i]);
    char where[64], sub[96], defname[32];
    snprintf(where, sizeof(where), "bootstrap.setup[%zu]", i);
    snprintf(defname, sizeof(defname), "setup %zu", i + 1);
    const char *name = defname, *script = NULL;
    if (it->type == YAML_SCALAR_NODE) {
      rc = get_str(l, it, where, &script);
    } else if (it->type == YAML_MAPPING_NODE) {
      yaml_node_t *v[2], *k[2];
      rc = check_mapping(l, it, where, keys, 2, v, k);
      snprintf(sub, sizeof(sub), "%s.name", where);
      if (rc == 0 && v[0])
        rc = get_str(l, v[0], sub, &name);
      snprintf(sub, sizeof(sub), "%s.run", where);
      if (rc == 0 && v[1])
        rc = get_str(l, v[1], sub, &script);
    } else {
      rc = fail(l, it, "%s: expected a script or {name: NAME, run: SCRIPT}, got a sequence", where);
    }
    if (rc == 0 && script == NULL)
      rc = fail(l, it, "%s: the step has no script; expected run: SCRIPT", where);
    if (rc == 0) {
      rc = kite_bootstrap_run(b, name, script);
      if (rc != 0)
        rc = rc == KITE_ENOMEM ? oom(l) : fail(l, it, "%s: %s", where, kite_strerror(rc));
    }
  }
  return rc;
}

static int read_bootstrap(loader_t *l, const yaml_node_t *n) {
  /* Steps are built in this order whatever the order of the keys. */
  static const char *const keys[] = {"env", "apt", "pip", "files", "setup"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  int rc = expect_mapping(l, n, "bootstrap");
  if (rc == 0)
    rc = check_mapping(l, n, "bootstrap", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0) {
    rc = kite_bootstrap_new(&l->spec->bootstrap);
    if (rc != 0)
      return oom(l);
  }
  if (rc == 0 && v[0])
    rc = read_bootstrap_env(l, v[0]);
  if (rc == 0 && v[1])
    rc = add_packages(l, v[1], "bootstrap.apt", false, NULL);
  if (rc == 0 && v[2])
    rc = read_pip(l, v[2]);
  if (rc == 0 && v[3])
    rc = read_files(l, v[3]);
  if (rc == 0 && v[4])
    rc = read_setup(l, v[4]);
  if (rc == 0 && kite_bootstrap_steps(l->spec->bootstrap) == 0) {
    kite_bootstrap_free(l->spec->bootstrap);
    l->spec->bootstrap = NULL;
  }
  if (rc == 0)
    l->spec->pool.bootstrap = l->spec->bootstrap;
  return rc;
}

static int read_replace(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"on_preemption", "max_replacements", "per_minute"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &l->spec->pool;
  int rc = expect_mapping(l, n, "replace");
  if (rc == 0)
    rc = check_mapping(l, n, "replace", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = get_bool(l, v[0], "replace.on_preemption", &ps->replace);
  if (rc == 0 && v[1])
    rc = get_uint(l, v[1], "replace.max_replacements", 0, 1000000, &ps->max_replacements);
  if (rc == 0 && v[2])
    rc = get_uint(l, v[2], "replace.per_minute", 1, 10000, &ps->replace_per_minute);
  return rc;
}

#define DAY_MS (24ull * 3600 * 1000)

static int read_monitors(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"enabled",         "health_interval",  "health_timeout",
                                     "health_failures", "preempt_interval", "jitter",
                                     "health_command"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &l->spec->pool;
  kite_pool_monitor_options_t *m = &ps->monitors;
  bool enabled = true;
  int rc = expect_mapping(l, n, "monitors");
  if (rc == 0)
    rc = check_mapping(l, n, "monitors", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = get_bool(l, v[0], "monitors.enabled", &enabled);
  ps->monitors_off = !enabled;
  if (rc == 0 && v[1])
    rc = get_duration(l, v[1], "monitors.health_interval", 100, DAY_MS, &m->health_interval_ms);
  if (rc == 0 && v[2])
    rc = get_duration(l, v[2], "monitors.health_timeout", 100, DAY_MS, &m->health_timeout_ms);
  if (rc == 0 && v[3])
    rc = get_uint(l, v[3], "monitors.health_failures", 1, 1000, &m->health_failures);
  if (rc == 0 && v[4])
    rc = get_duration(l, v[4], "monitors.preempt_interval", 100, DAY_MS, &m->preempt_interval_ms);
  if (rc == 0 && v[5])
    rc = get_duration(l, v[5], "monitors.jitter", 1, DAY_MS, &m->jitter_ms);
  if (rc == 0 && v[6])
    rc = get_str(l, v[6], "monitors.health_command", &m->health_command);
  return rc;
}

static int read_deadman(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"enabled", "timeout"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &l->spec->pool;
  bool enabled = true;
  int rc = expect_mapping(l, n, "deadman");
  if (rc == 0)
    rc = check_mapping(l, n, "deadman", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = get_bool(l, v[0], "deadman.enabled", &enabled);
  ps->deadman_off = !enabled;
  if (rc == 0 && v[1])
    rc = get_duration(l, v[1], "deadman.timeout", 10000, 30 * DAY_MS, &ps->deadman_timeout_ms);
  return rc;
}

static int read_ssh(loader_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"user", "key", "host_key_mode", "connect_timeout"};
  yaml_node_t *v[KITE_ARRAY_SIZE(keys)], *k[KITE_ARRAY_SIZE(keys)];
  kite_pool_spec_t *ps = &l->spec->pool;
  int rc = expect_mapping(l, n, "ssh");
  if (rc == 0)
    rc = check_mapping(l, n, "ssh", keys, KITE_ARRAY_SIZE(keys), v, k);
  if (rc == 0 && v[0])
    rc = get_str(l, v[0], "ssh.user", &ps->ssh_user);
  if (rc == 0 && v[1]) {
    const char *key = NULL;
    rc = get_str(l, v[1], "ssh.key", &key);
    if (rc == 0 && key) {
      /* ~/ is the user's home; a relative path is relative to the spec's directory. */
      const char *home = getenv("HOME");
      if (key[0] == '~' && key[1] == '/' && home)
        rc = own(l, kite__sprintf("%s%s", home, key + 1), &ps->ssh_key);
      else if (key[0] != '/' && l->basedir)
        rc = own(l, kite__sprintf("%s/%s", l->basedir, key), &ps->ssh_key);
      else
        ps->ssh_key = key;
    }
  }
  if (rc == 0 && v[2]) {
    const char *mode = NULL;
    rc = get_str(l, v[2], "ssh.host_key_mode", &mode);
    if (rc == 0 && mode) {
      int m = kite_hostkey_mode_parse(mode);
      if (m < 0)
        return fail(l, v[2],
                    "ssh.host_key_mode: '%.60s' is not a host key mode; expected strict, "
                    "accept-new or off",
                    mode);
      ps->hostkey_mode = m;
    }
  }
  if (rc == 0 && v[3])
    rc = get_duration(l, v[3], "ssh.connect_timeout", 100, DAY_MS, &ps->connect_timeout_ms);
  return rc;
}

enum {
  T_NAME,
  T_PROVIDER,
  T_PROVIDER_OPTIONS,
  T_REGION,
  T_NODES,
  T_MIN_NODES,
  T_IMAGE,
  T_RESOURCES,
  T_ENV,
  T_BOOTSTRAP,
  T_RUN,
  T_REPLACE,
  T_MONITORS,
  T_DEADMAN,
  T_SSH,
  T_RETRIES,
  T__COUNT
};

static int read_top(loader_t *l, const yaml_node_t *root) {
  static const char *const keys[T__COUNT] = {
      "name",      "provider", "provider_options", "region", "nodes",   "min_nodes", "image",
      "resources", "env",      "bootstrap",        "run",    "replace", "monitors",  "deadman",
      "ssh",       "retries"};
  yaml_node_t *v[T__COUNT], *k[T__COUNT];
  kite_pool_spec_t *ps = &l->spec->pool;
  if (root->type != YAML_MAPPING_NODE)
    return fail(l, root, "the spec is %s; expected a mapping of keys (name, nodes, ...)",
                root->type == YAML_SEQUENCE_NODE ? "a sequence" : "a single value");
  int rc = check_mapping(l, root, "", keys, T__COUNT, v, k);
  if (rc != 0)
    return rc;
  if (v[T_NAME] == NULL)
    return k[T_NAME] ? fail(l, k[T_NAME], "name: the value is empty; expected a pool name")
                     : fail(l, root,
                            "missing required key 'name'; expected a pool name "
                            "(1-48 letters, digits, '-' or '_')");
  rc = get_str(l, v[T_NAME], "name", &ps->name);
  if (rc == 0 && ps->name == NULL)
    rc = fail(l, v[T_NAME], "name: the value is empty; expected a pool name");
  if (rc == 0 && !kite__pool_name_valid(ps->name))
    rc = fail(l, v[T_NAME],
              "name: '%.60s' is not a valid pool name; expected 1-48 letters, "
              "digits, '-' or '_', not starting with '-'",
              ps->name);
  if (rc != 0)
    return rc;
  if (v[T_NODES] == NULL)
    return k[T_NODES] ? fail(l, k[T_NODES],
                             "nodes: the value is empty; expected an integer "
                             "from 1 to 100000")
                      : fail(l, root,
                             "missing required key 'nodes'; expected the number of "
                             "nodes (1 to 100000)");
  rc = get_uint(l, v[T_NODES], "nodes", 1, 100000, &ps->nodes);
  if (rc == 0 && v[T_MIN_NODES]) {
    rc = get_uint(l, v[T_MIN_NODES], "min_nodes", 0, 100000, &ps->min_nodes);
    if (rc == 0 && ps->min_nodes > ps->nodes)
      rc = fail(l, v[T_MIN_NODES], "min_nodes: %u is more than nodes (%u); expected 0 to %u",
                ps->min_nodes, ps->nodes, ps->nodes);
  }
  if (rc == 0 && v[T_PROVIDER])
    rc = get_str(l, v[T_PROVIDER], "provider", &ps->provider);
  if (rc == 0 && v[T_PROVIDER_OPTIONS]) {
    rc = expect_mapping(l, v[T_PROVIDER_OPTIONS], "provider_options");
    json_t *j = NULL;
    if (rc == 0)
      rc = to_json(l, v[T_PROVIDER_OPTIONS], "provider_options", 0, &j);
    if (rc == 0) {
      rc = own(l, json_dumps(j, JSON_COMPACT), &ps->provider_options);
      json_decref(j);
    }
  }
  if (rc == 0 && v[T_REGION])
    rc = get_str(l, v[T_REGION], "region", &ps->region);
  if (rc == 0 && v[T_IMAGE])
    rc = get_str(l, v[T_IMAGE], "image", &ps->image);
  if (rc == 0 && v[T_RESOURCES])
    rc = read_resources(l, v[T_RESOURCES]);
  if (rc == 0 && v[T_ENV])
    rc = read_env(l, v[T_ENV]);
  if (rc == 0 && v[T_BOOTSTRAP])
    rc = read_bootstrap(l, v[T_BOOTSTRAP]);
  if (rc == 0 && v[T_RUN]) {
    const char *run = NULL;
    rc = get_str(l, v[T_RUN], "run", &run);
    if (rc == 0 && run && (l->spec->run = kite__strdup(run)) == NULL)
      rc = oom(l);
  }
  if (rc == 0 && v[T_REPLACE])
    rc = read_replace(l, v[T_REPLACE]);
  if (rc == 0 && v[T_MONITORS])
    rc = read_monitors(l, v[T_MONITORS]);
  if (rc == 0 && v[T_DEADMAN])
    rc = read_deadman(l, v[T_DEADMAN]);
  if (rc == 0 && v[T_SSH])
    rc = read_ssh(l, v[T_SSH]);
  if (rc == 0 && v[T_RETRIES])
    rc = get_uint(l, v[T_RETRIES], "retries", 0, 100, &l->spec->retries);
  /* A re-run happens on the replacement of a lost node: without replacement there is none. */
  if (rc == 0 && l->spec->retries > 0 && !ps->replace)
    rc = fail(l, k[T_RETRIES],
              "retries: a command is re-run on the replacement of a lost node, and replacement "
              "is off; add replace: {on_preemption: true}, or remove retries");
  return rc;
}

/* ---- the YAML passes ------------------------------------------------------------------ */

/* A syntax error: a tab in the indentation of the offending line gets its own message, since
 * libyaml reports it only as a character that cannot start a token. */
static int syntax_error(loader_t *l, const yaml_parser_t *p) {
  if (p->error == YAML_MEMORY_ERROR)
    return oom(l);
  yaml_mark_t m = p->problem_mark;
  size_t line = 0, i = 0;
  while (i < l->len && line < m.line)
    if (l->text[i++] == '\n')
      line++;
  if (line == m.line) {
    for (size_t j = i; j < l->len && (l->text[j] == ' ' || l->text[j] == '\t'); j++)
      if (l->text[j] == '\t') {
        yaml_mark_t t = {.index = j, .line = m.line, .column = j - i};
        return fail_at(l, t,
                       "tab character in indentation; expected spaces (YAML indents "
                       "with spaces only)");
      }
  }
  const char *problem = p->problem ? p->problem : "unknown problem";
  if (p->context)
    return fail_at(l, m,
                   "YAML syntax error: %s %s at line %zu, column %zu; expected valid YAML "
                   "(check indentation, quotes and colons)",
                   problem, p->context, p->context_mark.line + 1, p->context_mark.column + 1);
  return fail_at(l, m,
                 "YAML syntax error: %s; expected valid YAML (check indentation, quotes "
                 "and colons)",
                 problem);
}

/* First pass: syntax, aliases, one document. */
static int check_events(loader_t *l) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return oom(l);
  yaml_parser_set_input_string(&p, (const unsigned char *)l->text, l->len);
  int rc = 0, docs = 0;
  for (bool done = false; rc == 0 && !done;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      rc = syntax_error(l, &p);
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1)
        rc = fail_at(l, ev.start_mark, "a second YAML document; expected one spec per file");
      break;
    case YAML_ALIAS_EVENT:
      rc = fail_at(l, ev.start_mark,
                   "alias '*%s' is not supported; expected the value written "
                   "out",
                   (const char *)ev.data.alias.anchor);
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  return rc;
}

static int load_document(loader_t *l) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return oom(l);
  yaml_parser_set_input_string(&p, (const unsigned char *)l->text, l->len);
  int rc = 0;
  if (!yaml_parser_load(&p, &l->doc))
    rc = syntax_error(l, &p);
  else
    l->doc_loaded = true;
  yaml_parser_delete(&p);
  return rc;
}

static int load(loader_t *l) {
  if (l->len > MAX_SPEC_BYTES) {
    l->err = kite__sprintf("%s: the file is larger than 16 MiB; expected a pool spec", l->file);
    return KITE_E2BIG;
  }
  if (memchr(l->text, '\0', l->len)) {
    yaml_mark_t m = {0};
    for (size_t i = 0; i < l->len && l->text[i]; i++) {
      m.column = l->text[i] == '\n' ? 0 : m.column + 1;
      m.line += l->text[i] == '\n';
    }
    return fail_at(l, m, "NUL byte in the spec; expected text");
  }
  int rc = check_events(l);
  if (rc == 0)
    rc = load_document(l);
  if (rc != 0)
    return rc;
  yaml_node_t *root = yaml_document_get_root_node(&l->doc);
  if (root == NULL || is_null_node(root)) {
    yaml_mark_t m = {0};
    return fail_at(l, m, "the spec is empty; expected a mapping with at least name and nodes");
  }
  return read_top(l, root);
}

static void spec_free(kite_spec_t *s) {
  if (s == NULL)
    return;
  for (size_t i = 0; i < s->n_owned; i++)
    free(s->owned[i]);
  free(s->owned);
  for (size_t i = 0; i < s->n_keys; i++)
    free(s->keys[i].path);
  free(s->keys);
  if (s->env)
    for (size_t i = 0; s->env[i]; i++)
      free(s->env[i]);
  free(s->env);
  kite_bootstrap_free(s->bootstrap);
  free(s->run);
  free(s->source);
  free(s);
}

static int load_text(const char *text, size_t len, const char *name, const char *basedir,
                     kite_spec_t **out, char **errmsg) {
  loader_t l = {.file = name, .text = text, .len = len};
  int rc = 0;
  l.spec = calloc(1, sizeof(*l.spec));
  if (l.spec == NULL || (basedir && (l.basedir = kite__strdup(basedir)) == NULL) ||
      (l.spec->source = kite__strdup(name)) == NULL)
    rc = oom(&l);
  if (rc == 0)
    rc = load(&l);
  if (l.doc_loaded)
    yaml_document_delete(&l.doc);
  free(l.basedir);
  if (rc != 0) {
    spec_free(l.spec);
    if (errmsg)
      *errmsg = l.err;
    else
      free(l.err);
    return rc;
  }
  free(l.err);
  *out = l.spec;
  return 0;
}

/* ---- API ------------------------------------------------------------------------------ */

int kite_spec_load_string(const char *text, size_t len, const char *name, kite_spec_t **out,
                          char **errmsg) {
  if (errmsg)
    *errmsg = NULL;
  if ((text == NULL && len) || out == NULL)
    return KITE_EINVAL;
  return load_text(text ? text : "", len, name ? name : "<string>", NULL, out, errmsg);
}

int kite_spec_load_file(const char *path, kite_spec_t **out, char **errmsg) {
  if (errmsg)
    *errmsg = NULL;
  if (path == NULL || out == NULL)
    return KITE_EINVAL;
  char *text = NULL;
  size_t len = 0;
  int rc = kite__read_file(path, &text, &len);
  if (rc != 0) {
    int e = errno;
    if (errmsg)
      *errmsg = rc == KITE_ENOMEM ? NULL
                                  : kite__sprintf("%s: cannot read the spec: %s; expected a "
                                                  "readable YAML file",
                                                  path, strerror(e));
    return rc;
  }
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : NULL;
  if (slash && dir == NULL)
    rc = KITE_ENOMEM;
  else
    rc = load_text(text, len, path, dir, out, errmsg);
  free(dir);
  free(text);
  return rc;
}

const kite_pool_spec_t *kite_spec_pool(const kite_spec_t *spec) {
  return spec ? &spec->pool : NULL;
}

const char *kite_spec_run(const kite_spec_t *spec) {
  return spec ? spec->run : NULL;
}

unsigned kite_spec_retries(const kite_spec_t *spec) {
  return spec ? spec->retries : 0;
}

const char *kite_spec_source(const kite_spec_t *spec) {
  return spec ? spec->source : NULL;
}

int kite_spec_where(const kite_spec_t *spec, const char *path, kite_spec_pos_t *key,
                    kite_spec_pos_t *value) {
  if (spec == NULL || path == NULL)
    return KITE_EINVAL;
  for (size_t i = 0; i < spec->n_keys; i++)
    if (strcmp(spec->keys[i].path, path) == 0) {
      if (key)
        *key = spec->keys[i].key;
      if (value)
        *value = spec->keys[i].value;
      return 0;
    }
  return KITE_ENOENT;
}

int kite_spec_set_provider_options(kite_spec_t *spec, const char *json) {
  if (spec == NULL)
    return KITE_EINVAL;
  if (json == NULL) {
    spec->pool.provider_options = NULL;
    return 0;
  }
  char *copy = kite__strdup(json);
  if (copy == NULL)
    return KITE_ENOMEM;
  loader_t l = {.file = spec->source, .spec = spec};
  int rc = own(&l, copy, &spec->pool.provider_options);
  free(l.err);
  return rc;
}

void kite_spec_free(kite_spec_t *spec) {
  spec_free(spec);
}
