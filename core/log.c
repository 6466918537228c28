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

void kite_log_set_level(kite_runtime_t *rt, kite_log_level_t level) { rt->log_level = level; }
kite_log_level_t kite_log_get_level(const kite_runtime_t *rt) { return rt->log_level; }

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

const kite__secrets_t *kite__runtime_secrets(const kite_runtime_t *rt) { return &rt->secrets; }

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
