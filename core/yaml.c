/* The typed YAML reader: a document read node by node against its caller's schema, with one
 * message naming file, line and column for the first problem (yaml_impl.h).
 *
 * Design notes
 * - Two passes over the text. The first walks libyaml's events: it reports syntax errors (and
 *   recognises a tab in indentation, which libyaml reports as an unexpected character),
 *   aliases (refused: a value written once is easier to read, and an alias bomb cannot grow a
 *   value converted to JSON) and a second document. The second pass loads the document tree,
 *   which the schema's code walks with positions for every node.
 * - Every value is a scalar, sequence or mapping node checked as it is read; the first problem
 *   found is the message (failv keeps the first). Strings handed out go to the caller's
 *   kite__ykept_t, with the position of every mapping key, so that checks made after the read
 *   (a provider's, providers/registry.c) can point at the text.
 * - YAML typing: quoted and block scalars are strings; a plain scalar is resolved after ${VAR}
 *   expansion with the YAML 1.2 core schema (null, true/false, integer, float, else string).
 *   An empty or null value means the key was not given. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "yaml_impl.h"

#define MAX_JSON_DEPTH 64

/* ---- errors --------------------------------------------------------------------------- */

static int failv(kite__yaml_t *y, yaml_mark_t m, int rc, const char *fmt, va_list ap) {
  if (y->err != NULL)
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
  y->err = kite__sprintf("%s:%zu:%zu: %s", y->file, m.line + 1, m.column + 1, one);
  return rc;
}

int kite__yaml_fail_at(kite__yaml_t *y, yaml_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = failv(y, m, KITE_ESPEC, fmt, ap);
  va_end(ap);
  return rc;
}

int kite__yaml_fail(kite__yaml_t *y, const yaml_node_t *n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = failv(y, n->start_mark, KITE_ESPEC, fmt, ap);
  va_end(ap);
  return rc;
}

int kite__yaml_oom(kite__yaml_t *y) {
  if (y->err == NULL)
    y->err = kite__sprintf("%s: out of memory", y->file);
  return KITE_ENOMEM;
}

/* ---- ownership ------------------------------------------------------------------------ */

int kite__yaml_keep(kite__ykept_t *k, char *s) {
  if (s == NULL)
    return KITE_ENOMEM;
  if (k->n_owned == k->cap_owned) {
    size_t cap = k->cap_owned ? k->cap_owned * 2 : 16;
    char **g = realloc(k->owned, cap * sizeof(*g));
    if (g == NULL) {
      free(s);
      return KITE_ENOMEM;
    }
    k->owned = g;
    k->cap_owned = cap;
  }
  k->owned[k->n_owned++] = s;
  return 0;
}

void kite__yaml_kept_free(kite__ykept_t *k) {
  for (size_t i = 0; i < k->n_owned; i++)
    free(k->owned[i]);
  free(k->owned);
  for (size_t i = 0; i < k->n_keys; i++)
    free(k->keys[i].path);
  free(k->keys);
  *k = (kite__ykept_t){0};
}

int kite__yaml_where(const kite__ykept_t *k, const char *path, kite__ypos_t *key,
                     kite__ypos_t *value) {
  for (size_t i = 0; i < k->n_keys; i++)
    if (strcmp(k->keys[i].path, path) == 0) {
      if (key)
        *key = k->keys[i].key;
      if (value)
        *value = k->keys[i].value;
      return 0;
    }
  return KITE_ENOENT;
}

int kite__yaml_own(kite__yaml_t *y, char *s, const char **out) {
  if (s == NULL || kite__yaml_keep(y->kept, s) != 0)
    return kite__yaml_oom(y);
  if (out)
    *out = s;
  return 0;
}

static kite__ypos_t pos_of(yaml_mark_t m) {
  return (kite__ypos_t){.line = (unsigned)m.line + 1, .column = (unsigned)m.column + 1};
}

/* Remembers where the key at path (malloc'd; NULL: out of memory) and its value were written,
 * so that checks made after the load (the provider's, providers/registry.c) can point there. */
static int locate(kite__yaml_t *y, char *path, const yaml_node_t *k, const yaml_node_t *v) {
  kite__ykept_t *sp = y->kept;
  if (path == NULL)
    return kite__yaml_oom(y);
  if (sp->n_keys == sp->cap_keys) {
    size_t cap = sp->cap_keys ? sp->cap_keys * 2 : 32;
    kite__ykey_t *g = realloc(sp->keys, cap * sizeof(*g));
    if (g == NULL) {
      free(path);
      return kite__yaml_oom(y);
    }
    sp->keys = g;
    sp->cap_keys = cap;
  }
  sp->keys[sp->n_keys++] =
      (kite__ykey_t){.path = path, .key = pos_of(k->start_mark), .value = pos_of(v->start_mark)};
  return 0;
}

/* ---- nodes ---------------------------------------------------------------------------- */

yaml_node_t *kite__yaml_node(kite__yaml_t *y, int index) {
  return yaml_document_get_node(&y->doc, index);
}

const char *kite__yaml_kind_name(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_MAPPING_NODE:
    return "a mapping";
  case YAML_SEQUENCE_NODE:
    return "a sequence";
  default:
    return "a value";
  }
}

static const char *kind_name(kite__ykind_t k) {
  switch (k) {
  case KITE__Y_NULL:
    return "an empty value";
  case KITE__Y_BOOL:
    return "a boolean";
  case KITE__Y_INT:
    return "an integer";
  case KITE__Y_FLOAT:
    return "a number";
  case KITE__Y_STR:
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
static int expand(kite__yaml_t *y, const yaml_node_t *n, const char *path, char **out) {
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
      return kite__yaml_fail(y, n,
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
      return kite__yaml_fail(y, n,
                             "%s: '%.*s' is not a variable reference; expected ${VAR} or "
                             "${VAR:-default} (write $$ for a literal $)",
                             path, shown, s + i);
    }
    char var[256];
    if (name_len >= sizeof(var)) {
      free(b.p);
      return kite__yaml_fail(
          y, n, "%s: variable name '%.*s' is too long; expected at most 255 characters", path,
          (int)name_len, name);
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
      return kite__yaml_fail(y, n,
                             "%s: environment variable '%s' is not set; set it or write "
                             "${%s:-default}",
                             path, var, var);
    }
    i = (size_t)(close - s) + 1;
  }
  if (!ok) {
    free(b.p);
    return kite__yaml_oom(y);
  }
  *out = b.p;
  return 0;
}

/* YAML 1.2 core schema resolution of a plain scalar's (expanded) text. */
static kite__ykind_t resolve_plain(const char *s) {
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  static const char *const bools[] = {"true", "True", "TRUE", "false", "False", "FALSE"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(nulls); i++)
    if (strcmp(s, nulls[i]) == 0)
      return KITE__Y_NULL;
  for (size_t i = 0; i < KITE_ARRAY_SIZE(bools); i++)
    if (strcmp(s, bools[i]) == 0)
      return KITE__Y_BOOL;
  const char *c = s;
  if (*c == '-' || *c == '+')
    c++;
  if (*c >= '0' && *c <= '9') {
    const char *d = c;
    while (*d >= '0' && *d <= '9')
      d++;
    if (*d == '\0')
      return KITE__Y_INT;
  }
  if ((*c >= '0' && *c <= '9') || (*c == '.' && c[1] >= '0' && c[1] <= '9')) {
    char *end;
    errno = 0;
    (void)strtod(s, &end);
    if (*end == '\0' && strpbrk(s, "xXnNiI") == NULL)
      return KITE__Y_FLOAT;
  }
  if (strcmp(c, ".inf") == 0 || strcmp(c, ".Inf") == 0 || strcmp(s, ".nan") == 0 ||
      strcmp(s, ".NaN") == 0)
    return KITE__Y_FLOAT;
  return KITE__Y_STR;
}

/* Reads a scalar: its expanded text (malloc'd) and its kind. n must be a scalar. */
int kite__yaml_scalar(kite__yaml_t *y, const yaml_node_t *n, const char *path, char **text,
                      kite__ykind_t *kind) {
  int rc = expand(y, n, path, text);
  if (rc != 0)
    return rc;
  *kind = n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? resolve_plain(*text) : KITE__Y_STR;
  return 0;
}

bool kite__yaml_is_null(const yaml_node_t *n) {
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
  return resolve_plain(tmp) == KITE__Y_NULL;
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
static int wrong_kind(kite__yaml_t *y, const yaml_node_t *n, const char *path, const char *expected,
                      kite__ykind_t want, kite__ykind_t got, const char *text) {
  if (got == KITE__Y_STR && n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE &&
      resolve_plain(text) == want)
    return kite__yaml_fail(y, n,
                           "%s: expected %s, got a quoted string ('%s'); write it without quotes",
                           path, expected, text);
  bool long_text = strlen(text) > 40;
  return kite__yaml_fail(y, n, "%s: expected %s, got %s ('%.40s%s')", path, expected,
                         kind_name(got), text, long_text ? "..." : "");
}

/* A string value, owned by the spec. An empty value leaves *out as it was. */
int kite__yaml_str(kite__yaml_t *y, const yaml_node_t *n, const char *path, const char **out) {
  if (n->type != YAML_SCALAR_NODE)
    return kite__yaml_fail(y, n, "%s: expected a string, got %s", path, kite__yaml_kind_name(n));
  char *text;
  kite__ykind_t k;
  int rc = kite__yaml_scalar(y, n, path, &text, &k);
  if (rc != 0)
    return rc;
  if (k == KITE__Y_NULL) {
    free(text);
    return 0;
  }
  return kite__yaml_own(y, text, out);
}

/* A scalar of kind want (or of any kind when want is KITE__Y_NULL) at n, in *text (malloc'd),
 * or NULL when the value is empty; else the error "PATH: expected EXPECTED, got ...". */
static int scalar_as(kite__yaml_t *y, const yaml_node_t *n, const char *path, const char *expected,
                     kite__ykind_t want, char **text) {
  *text = NULL;
  if (n->type != YAML_SCALAR_NODE)
    return kite__yaml_fail(y, n, "%s: expected %s, got %s", path, expected,
                           kite__yaml_kind_name(n));
  kite__ykind_t k;
  int rc = kite__yaml_scalar(y, n, path, text, &k);
  if (rc != 0)
    return rc;
  if (k == KITE__Y_NULL) {
    free(*text);
    *text = NULL;
    return 0;
  }
  if (want != KITE__Y_NULL && k != want) {
    rc = wrong_kind(y, n, path, expected, want, k, *text);
    free(*text);
    *text = NULL;
  }
  return rc;
}

int kite__yaml_bool(kite__yaml_t *y, const yaml_node_t *n, const char *path, bool *out) {
  char *text;
  int rc = scalar_as(y, n, path, "true or false", KITE__Y_BOOL, &text);
  if (rc == 0 && text)
    *out = text[0] == 't' || text[0] == 'T';
  free(text);
  return rc;
}

/* An integer in [lo, hi]; an empty value leaves *out as it was. */
int kite__yaml_int(kite__yaml_t *y, const yaml_node_t *n, const char *path, long long lo,
                   long long hi, long long *out) {
  char *text;
  int rc = scalar_as(y, n, path, "an integer", KITE__Y_INT, &text);
  if (rc != 0 || text == NULL)
    return rc;
  errno = 0;
  long long v = strtoll(text, NULL, 10);
  if (errno == ERANGE || v < lo || v > hi)
    rc = kite__yaml_fail(y, n, "%s: %s is out of range; expected %lld to %lld", path, text, lo, hi);
  else
    *out = v;
  free(text);
  return rc;
}

int kite__yaml_uint(kite__yaml_t *y, const yaml_node_t *n, const char *path, long long lo,
                    long long hi, unsigned *out) {
  long long v = *out;
  int rc = kite__yaml_int(y, n, path, lo, hi, &v);
  if (rc == 0)
    *out = (unsigned)v;
  return rc;
}

/* A number (integer or real) in [lo, hi]; an empty value leaves *out as it was. */
int kite__yaml_real(kite__yaml_t *y, const yaml_node_t *n, const char *path, double lo, double hi,
                    double *out) {
  char *text;
  int rc = scalar_as(y, n, path, "a number", KITE__Y_NULL, &text);
  if (rc != 0 || text == NULL)
    return rc;
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno == ERANGE || v != v)
    rc = kite__yaml_fail(y, n, "%s: '%.60s' is not a number; expected e.g. 2.50", path, text);
  else if (v < lo || v > hi)
    rc = kite__yaml_fail(y, n, "%s: %s is out of range; expected %g to %g", path, text, lo, hi);
  else
    *out = v;
  free(text);
  return rc;
}

/* A duration "NUMBER UNIT" (ms, s, m, h) in [lo_ms, hi_ms]. */
int kite__yaml_duration(kite__yaml_t *y, const yaml_node_t *n, const char *path, uint64_t lo_ms,
                        uint64_t hi_ms, uint64_t *out) {
  static const struct {
    const char *unit;
    double ms;
  } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
  char *text;
  int rc = scalar_as(y, n, path, "a duration such as 500ms, 5s, 2m or 1h", KITE__Y_NULL, &text);
  if (rc != 0 || text == NULL)
    return rc;
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
    rc = kite__yaml_fail(
        y, n,
        "%s: '%.60s' is not a duration; expected a number with a unit, such as 500ms, "
        "5s, 2m or 1h",
        path, text);
  else if (ms < (double)lo_ms || ms > (double)hi_ms) {
    char lo[32], hi[32];
    rc = kite__yaml_fail(y, n, "%s: %s is out of range; expected %s to %s", path, text,
                         fmt_ms(lo, sizeof(lo), lo_ms), fmt_ms(hi, sizeof(hi), hi_ms));
  } else
    *out = (uint64_t)(ms + 0.5);
  free(text);
  return rc;
}

/* ---- mappings ------------------------------------------------------------------------- */

/* A key's text: keys are taken literally (never expanded), and must be strings. */
static int key_text(kite__yaml_t *y, const yaml_node_t *k, const char *where, char *out,
                    size_t size) {
  if (k->type != YAML_SCALAR_NODE)
    return kite__yaml_fail(y, k, "%s is used as a key in %s; expected a plain name",
                           kite__yaml_kind_name(k), where[0] ? where : "the spec");
  size_t len = k->data.scalar.length;
  if (len >= size || memchr(k->data.scalar.value, '\0', len))
    return kite__yaml_fail(y, k, "key '%.40s...' is too long; expected a key of %s",
                           (const char *)k->data.scalar.value, where[0] ? where : "the spec");
  memcpy(out, k->data.scalar.value, len);
  out[len] = '\0';
  return 0;
}

/* Checks a mapping against its keys: every key known, none twice. vals[i] is the value of
 * keys[i] (NULL when absent or empty); knodes[i] its key node. where names the mapping in
 * messages ("" for the top level). */
int kite__yaml_mapping(kite__yaml_t *y, const yaml_node_t *map, const char *where,
                       const char *const *keys, size_t nkeys, yaml_node_t **vals,
                       yaml_node_t **knodes) {
  for (size_t i = 0; i < nkeys; i++)
    vals[i] = knodes[i] = NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = kite__yaml_node(y, p->key);
    char name[128];
    int rc = key_text(y, k, where, name, sizeof(name));
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
        return kite__yaml_fail(y, k, "unknown key '%s'%s; did you mean '%s'?", name, in, near);
      char list[600] = "";
      size_t off = 0;
      for (size_t j = 0; j < nkeys && off < sizeof(list); j++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", j ? ", " : "", keys[j]);
      return kite__yaml_fail(y, k, "unknown key '%s'%s; expected one of: %s", name, in, list);
    }
    if (knodes[i] != NULL)
      return kite__yaml_fail(y, k, "duplicate key '%s'%s%s (first at line %zu); give each key once",
                             name, where[0] ? " in " : "", where, knodes[i]->start_mark.line + 1);
    knodes[i] = k;
    yaml_node_t *v = kite__yaml_node(y, p->value);
    vals[i] = kite__yaml_is_null(v) ? NULL : v;
    rc = locate(y, where[0] ? kite__sprintf("%s.%s", where, name) : kite__strdup(name), k, v);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int kite__yaml_expect_mapping(kite__yaml_t *y, const yaml_node_t *n, const char *path) {
  if (n->type != YAML_MAPPING_NODE)
    return kite__yaml_fail(y, n, "%s: expected a mapping (KEY: VALUE lines), got %s", path,
                           n->type == YAML_SEQUENCE_NODE ? "a sequence" : "a single value");
  return 0;
}

int kite__yaml_expect_sequence(kite__yaml_t *y, const yaml_node_t *n, const char *path) {
  if (n->type != YAML_SEQUENCE_NODE)
    return kite__yaml_fail(y, n, "%s: expected a list (- ITEM lines or [A, B]), got %s", path,
                           n->type == YAML_MAPPING_NODE ? "a mapping" : "a single value");
  return 0;
}

/* Walks a mapping whose keys are names of the caller's choosing (env), refusing duplicates. */
int kite__yaml_free_keys(kite__yaml_t *y, const yaml_node_t *map, const char *where) {
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = kite__yaml_node(y, p->key);
    char name[256];
    int rc = key_text(y, k, where, name, sizeof(name));
    if (rc != 0)
      return rc;
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
      yaml_node_t *k2 = kite__yaml_node(y, q->key);
      if (k2->data.scalar.length == k->data.scalar.length &&
          memcmp(k2->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0)
        return kite__yaml_fail(y, k,
                               "duplicate key '%s' in %s (first at line %zu); give each key once",
                               name, where, k2->start_mark.line + 1);
    }
  }
  return 0;
}

/* A list of strings (NULL-terminated, strings owned by the spec, array malloc'd). */
int kite__yaml_str_list(kite__yaml_t *y, const yaml_node_t *n, const char *path, char ***out) {
  int rc = kite__yaml_expect_sequence(y, n, path);
  if (rc != 0)
    return rc;
  size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  char **list = calloc(count + 1, sizeof(*list));
  if (list == NULL)
    return kite__yaml_oom(y);
  size_t j = 0;
  for (size_t i = 0; rc == 0 && i < count; i++) {
    yaml_node_t *it = kite__yaml_node(y, n->data.sequence.items.start[i]);
    char sub[300];
    snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
    const char *s = NULL;
    if (it->type != YAML_SCALAR_NODE)
      rc = kite__yaml_fail(y, it, "%s: expected a string, got %s", sub, kite__yaml_kind_name(it));
    else
      rc = kite__yaml_str(y, it, sub, &s);
    if (rc == 0 && s == NULL)
      rc = kite__yaml_fail(y, it, "%s: the item is empty; expected a name", sub);
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

/* ---- any value → JSON (provider options)
 * ---------------------------------------------------------- */

static int to_json(kite__yaml_t *y, const yaml_node_t *n, const char *path, int depth,
                   json_t **out) {
  *out = NULL;
  if (depth > MAX_JSON_DEPTH)
    return kite__yaml_fail(y, n, "%s: nested too deeply; expected at most %d levels", path,
                           MAX_JSON_DEPTH);
  char sub[256];
  int rc = 0;
  if (n->type == YAML_MAPPING_NODE) {
    rc = kite__yaml_free_keys(y, n, path);
    json_t *obj = rc == 0 ? json_object() : NULL;
    if (rc == 0 && obj == NULL)
      rc = kite__yaml_oom(y);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
         rc == 0 && p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = kite__yaml_node(y, p->key);
      char key[256];
      memcpy(key, k->data.scalar.value, k->data.scalar.length);
      key[k->data.scalar.length] = '\0';
      snprintf(sub, sizeof(sub), "%.200s.%.40s", path, key);
      json_t *v;
      rc = locate(y, kite__sprintf("%s.%s", path, key), k, kite__yaml_node(y, p->value));
      if (rc == 0)
        rc = to_json(y, kite__yaml_node(y, p->value), sub, depth + 1, &v);
      if (rc == 0 && json_object_set_new(obj, key, v) != 0)
        rc = kite__yaml_fail(y, k, "%s: the key is not valid UTF-8; expected text", sub);
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
      return kite__yaml_oom(y);
    size_t i = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start;
         rc == 0 && it < n->data.sequence.items.top; it++, i++) {
      snprintf(sub, sizeof(sub), "%.200s[%zu]", path, i);
      json_t *v;
      rc = to_json(y, kite__yaml_node(y, *it), sub, depth + 1, &v);
      if (rc == 0 && json_array_append_new(arr, v) != 0)
        rc = kite__yaml_oom(y);
    }
    if (rc != 0)
      json_decref(arr);
    else
      *out = arr;
    return rc;
  }
  char *text;
  kite__ykind_t k;
  rc = kite__yaml_scalar(y, n, path, &text, &k);
  if (rc != 0)
    return rc;
  json_t *v = NULL;
  switch (k) {
  case KITE__Y_NULL:
    v = json_null();
    break;
  case KITE__Y_BOOL:
    v = json_boolean(text[0] == 't' || text[0] == 'T');
    break;
  case KITE__Y_INT: {
    errno = 0;
    long long x = strtoll(text, NULL, 10);
    if (errno == ERANGE) {
      rc = kite__yaml_fail(y, n, "%s: %s is out of range; expected an integer of at most 64 bits",
                           path, text);
      break;
    }
    v = json_integer(x);
    break;
  }
  case KITE__Y_FLOAT: {
    double x = strtod(text, NULL);
    if (strpbrk(text, "iInN") != NULL || x != x || x - x != 0) {
      rc = kite__yaml_fail(y, n, "%s: '%s' has no JSON form; expected a finite number", path, text);
      break;
    }
    v = json_real(x);
    break;
  }
  case KITE__Y_STR:
  default:
    v = json_string(text);
    if (v == NULL)
      rc = kite__yaml_fail(y, n, "%s: the value is not valid UTF-8; expected text", path);
    break;
  }
  free(text);
  if (rc == 0 && v == NULL)
    rc = kite__yaml_oom(y);
  *out = v;
  return rc;
}

int kite__yaml_to_json(kite__yaml_t *y, const yaml_node_t *n, const char *path, json_t **out) {
  return to_json(y, n, path, 0, out);
}

/* ---- parsing: two passes ------------------------------------------------------------------ */

/* A syntax error: a tab in the indentation of the offending line gets its own message, since
 * libyaml reports it only as a character that cannot start a token. */
static int syntax_error(kite__yaml_t *y, const yaml_parser_t *p) {
  if (p->error == YAML_MEMORY_ERROR)
    return kite__yaml_oom(y);
  yaml_mark_t m = p->problem_mark;
  size_t line = 0, i = 0;
  while (i < y->len && line < m.line)
    if (y->text[i++] == '\n')
      line++;
  if (line == m.line) {
    for (size_t j = i; j < y->len && (y->text[j] == ' ' || y->text[j] == '\t'); j++)
      if (y->text[j] == '\t') {
        yaml_mark_t t = {.index = j, .line = m.line, .column = j - i};
        return kite__yaml_fail_at(y, t,
                                  "tab character in indentation; expected spaces (YAML indents "
                                  "with spaces only)");
      }
  }
  const char *problem = p->problem ? p->problem : "unknown problem";
  if (p->context)
    return kite__yaml_fail_at(
        y, m,
        "YAML syntax error: %s %s at line %zu, column %zu; expected valid YAML "
        "(check indentation, quotes and colons)",
        problem, p->context, p->context_mark.line + 1, p->context_mark.column + 1);
  return kite__yaml_fail_at(y, m,
                            "YAML syntax error: %s; expected valid YAML (check indentation, quotes "
                            "and colons)",
                            problem);
}

/* First pass: syntax, aliases, one document. */
static int check_events(kite__yaml_t *y) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return kite__yaml_oom(y);
  yaml_parser_set_input_string(&p, (const unsigned char *)y->text, y->len);
  int rc = 0, docs = 0;
  for (bool done = false; rc == 0 && !done;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      rc = syntax_error(y, &p);
      break;
    }
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = true;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (++docs > 1)
        rc = kite__yaml_fail_at(y, ev.start_mark,
                                "a second YAML document; expected one %s per file", y->unit);
      break;
    case YAML_ALIAS_EVENT:
      rc = kite__yaml_fail_at(y, ev.start_mark,
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

static int load_document(kite__yaml_t *y) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p))
    return kite__yaml_oom(y);
  yaml_parser_set_input_string(&p, (const unsigned char *)y->text, y->len);
  int rc = 0;
  if (!yaml_parser_load(&p, &y->doc))
    rc = syntax_error(y, &p);
  else
    y->doc_loaded = true;
  yaml_parser_delete(&p);
  return rc;
}

int kite__yaml_load(kite__yaml_t *y, yaml_node_t **root) {
  *root = NULL;
  if (memchr(y->text, '\0', y->len)) {
    yaml_mark_t m = {0};
    for (size_t i = 0; i < y->len && y->text[i]; i++) {
      m.column = y->text[i] == '\n' ? 0 : m.column + 1;
      m.line += y->text[i] == '\n';
    }
    return kite__yaml_fail_at(y, m, "NUL byte in the %s; expected text", y->unit);
  }
  int rc = check_events(y);
  if (rc == 0)
    rc = load_document(y);
  if (rc != 0)
    return rc;
  yaml_node_t *r = yaml_document_get_root_node(&y->doc);
  *root = r == NULL || kite__yaml_is_null(r) ? NULL : r;
  return 0;
}

void kite__yaml_release(kite__yaml_t *y) {
  if (y->doc_loaded)
    yaml_document_delete(&y->doc);
  y->doc_loaded = false;
}
