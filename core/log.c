/* The leveled logger and the secret registry.
 *
 * Each runtime has a level (KITE_LOG), a sink (stderr by default) and a list of registered
 * secrets. Every line is formatted in full, then redacted, then handed to the sink: no code
 * path writes a line that has not been through kite_redact(). */
#include <stdarg.h>
#include <stdio.h>

#include "kite_impl.h"
#include "runtime_impl.h"

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

const char *kite_log_level_name(kite_log_level_t level) {
  return (unsigned)level < KITE_ARRAY_SIZE(level_names) ? level_names[level] : "?";
}

int kite_log_level_parse(const char *s, kite_log_level_t *out) {
  for (size_t i = 0; s && i < KITE_ARRAY_SIZE(level_names); i++) {
    if (strcasecmp(s, level_names[i]) == 0) {
      *out = (kite_log_level_t)i;
      return 0;
    }
  }
  if (s && strcasecmp(s, "warning") == 0) {
    *out = KITE_LOG_WARN;
    return 0;
  }
  return KITE_EINVAL;
}

void kite_log_set_level(kite_runtime_t *rt, kite_log_level_t level) {
  rt->log_level = level;
}
kite_log_level_t kite_log_get_level(const kite_runtime_t *rt) {
  return rt->log_level;
}

void kite_log_set_sink(kite_runtime_t *rt, kite_log_sink_fn sink, void *data) {
  rt->log_sink = sink;
  rt->log_sink_data = data;
}

int kite_secret_add(kite_runtime_t *rt, const char *secret) {
  if (rt == NULL || secret == NULL || strlen(secret) < 4)
    return KITE_EINVAL;
  for (size_t i = 0; i < rt->secrets.n; i++)
    if (strcmp(rt->secrets.v[i], secret) == 0)
      return 0;
  if (rt->secrets.n == rt->secrets.cap) {
    size_t cap = rt->secrets.cap ? rt->secrets.cap * 2 : 8;
    char **v = realloc(rt->secrets.v, cap * sizeof(*v));
    if (v == NULL)
      return KITE_ENOMEM;
    rt->secrets.v = v;
    rt->secrets.cap = cap;
  }
  char *copy = kite__strdup(secret);
  if (copy == NULL)
    return KITE_ENOMEM;
  rt->secrets.v[rt->secrets.n++] = copy;
  return 0;
}

const kite__secrets_t *kite__runtime_secrets(const kite_runtime_t *rt) {
  return &rt->secrets;
}

/* Finds the earliest occurrence of any secret in s[from..len); returns its offset or len. */
static size_t find_secret(const kite__secrets_t *sec, const char *s, size_t len, size_t from,
                          size_t *which_len) {
  size_t best = len;
  for (size_t i = 0; i < sec->n; i++) {
    size_t sl = strlen(sec->v[i]);
    if (sl > len - from)
      continue;
    const char *hit = memmem(s + from, len - from, sec->v[i], sl);
    if (hit && (size_t)(hit - s) < best) {
      best = (size_t)(hit - s);
      *which_len = sl;
    }
  }
  return best;
}

char *kite_redact(const kite_runtime_t *rt, const char *s, size_t len, size_t *out_len) {
  static const char mark[] = "[REDACTED]";
  const size_t ml = sizeof(mark) - 1;
  const kite__secrets_t *sec = rt ? &rt->secrets : NULL;
  size_t cap = len + 1, n = 0, pos = 0;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  while (pos < len) {
    size_t sl = 0;
    size_t hit = sec && sec->n ? find_secret(sec, s, len, pos, &sl) : len;
    size_t plain = hit - pos;
    size_t need = n + plain + (hit < len ? ml : 0) + 1;
    if (need > cap) {
      cap = need * 2;
      char *g = realloc(out, cap);
      if (g == NULL) {
        free(out);
        return NULL;
      }
      out = g;
    }
    memcpy(out + n, s + pos, plain);
    n += plain;
    if (hit >= len)
      break;
    memcpy(out + n, mark, ml);
    n += ml;
    pos = hit + sl;
  }
  out[n] = '\0';
  if (out_len)
    *out_len = n;
  return out;
}

/* The start of the longest tail of s[from..len) that is a proper prefix of some secret, or
 * len when there is none. */
static size_t secret_prefix_tail(const kite__secrets_t *sec, const char *s, size_t len,
                                 size_t from) {
  size_t best = len;
  for (size_t i = 0; i < sec->n; i++) {
    size_t sl = strlen(sec->v[i]);
    for (size_t m = sl - 1; m > 0; m--) {
      if (m > len - from || len - m >= best)
        continue;
      if (memcmp(s + len - m, sec->v[i], m) == 0) {
        best = len - m;
        break;
      }
    }
  }
  return best;
}

int kite__redact_feed(const kite_runtime_t *rt, kite__redactor_t *r, const void *buf, size_t len,
                      bool final, const char **out, size_t *out_len, bool *owned) {
  static const char mark[] = "[REDACTED]";
  const size_t ml = sizeof(mark) - 1;
  const kite__secrets_t *sec = rt ? &rt->secrets : NULL;
  *out = buf;
  *out_len = len;
  *owned = false;
  if ((sec == NULL || sec->n == 0) && r->held_len == 0)
    return 0; /* the common case: no copy */
  /* joined = what was held + buf */
  size_t jl = r->held_len + len;
  char *j = malloc(jl + 1);
  if (j == NULL)
    return KITE_ENOMEM;
  if (r->held_len)
    memcpy(j, r->held, r->held_len);
  if (len)
    memcpy(j + r->held_len, buf, len);
  size_t cut = final || sec == NULL || sec->n == 0 ? jl : secret_prefix_tail(sec, j, jl, 0);
  /* Release j[0..cut) redacted; a match that starts before the cut is replaced whole, and
   * moves the cut past its end. */
  size_t cap = cut + 1, n = 0, pos = 0;
  char *o = malloc(cap);
  if (o == NULL) {
    free(j);
    return KITE_ENOMEM;
  }
  while (pos < cut) {
    size_t sl = 0;
    size_t hit = sec && sec->n ? find_secret(sec, j, jl, pos, &sl) : jl;
    size_t stop = hit < cut ? hit : cut;
    size_t need = n + (stop - pos) + (hit < cut ? ml : 0) + 1;
    if (need > cap) {
      cap = need * 2;
      char *g = realloc(o, cap);
      if (g == NULL) {
        free(o);
        free(j);
        return KITE_ENOMEM;
      }
      o = g;
    }
    memcpy(o + n, j + pos, stop - pos);
    n += stop - pos;
    pos = stop;
    if (hit >= cut)
      break;
    memcpy(o + n, mark, ml);
    n += ml;
    pos = hit + sl;
    if (pos > cut)
      cut = pos;
  }
  free(r->held);
  r->held = NULL;
  r->held_len = jl - cut;
  if (r->held_len) {
    r->held = malloc(r->held_len);
    if (r->held == NULL) {
      r->held_len = 0;
      free(o);
      free(j);
      return KITE_ENOMEM;
    }
    memcpy(r->held, j + cut, r->held_len);
  }
  free(j);
  *out = o;
  *out_len = n;
  *owned = true;
  return 0;
}

void kite__redactor_clear(kite__redactor_t *r) {
  free(r->held);
  r->held = NULL;
  r->held_len = 0;
}

void kite_logv(kite_runtime_t *rt, kite_log_level_t level, const char *component, const char *fmt,
               va_list ap) {
  if (rt == NULL || level < rt->log_level || level >= KITE_LOG_OFF)
    return;
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0)
    return;
  char *line = kite__sprintf("kite: %s %s: %s", kite_log_level_name(level),
                             component ? component : "-", msg);
  free(msg);
  if (line == NULL)
    return;
  char *clean = kite_redact(rt, line, strlen(line), NULL);
  free(line);
  if (clean == NULL)
    return;
  if (rt->log_sink)
    rt->log_sink(rt, level, clean, rt->log_sink_data);
  else
    fprintf(stderr, "%s\n", clean);
  free(clean);
}

void kite_log(kite_runtime_t *rt, kite_log_level_t level, const char *component, const char *fmt,
              ...) {
  va_list ap;
  va_start(ap, fmt);
  kite_logv(rt, level, component, fmt, ap);
  va_end(ap);
}
