#ifndef KITE_LOG_H
#define KITE_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef struct kite_runtime kite_runtime_t;

typedef enum kite_log_level {
  KITE_LOG_DEBUG = 0,
  KITE_LOG_INFO,
  KITE_LOG_WARN,
  KITE_LOG_ERROR,
  KITE_LOG_OFF
} kite_log_level_t;

/* A log sink receives one finished, already redacted line (no trailing newline). */
typedef void (*kite_log_sink_fn)(kite_runtime_t *rt, kite_log_level_t level, const char *line,
                                 void *data);

/* Writes one line "kite: LEVEL component: message" through the runtime's sink (stderr by
 * default) if level is at or above the runtime's level (KITE_LOG=debug|info|warn|error,
 * default warn). Every registered secret is replaced by "[REDACTED]" before the line leaves. */
void kite_log(kite_runtime_t *rt, kite_log_level_t level, const char *component, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));
void kite_logv(kite_runtime_t *rt, kite_log_level_t level, const char *component, const char *fmt,
               va_list ap);

void kite_log_set_level(kite_runtime_t *rt, kite_log_level_t level);
kite_log_level_t kite_log_get_level(const kite_runtime_t *rt);
/* Parses "debug", "info", "warn" or "error"; returns KITE_EINVAL for anything else. */
int kite_log_level_parse(const char *s, kite_log_level_t *out);
const char *kite_log_level_name(kite_log_level_t level);
/* Replaces the sink; NULL restores stderr. */
void kite_log_set_sink(kite_runtime_t *rt, kite_log_sink_fn sink, void *data);

/* Registers a secret (a token, a private key, a password). From now on it never appears in a
 * log line or in the JSON event stream; the runtime keeps its own copy. Secrets shorter than 4
 * bytes are refused with KITE_EINVAL (redacting them would mangle ordinary text). */
int kite_secret_add(kite_runtime_t *rt, const char *secret);

/* Returns a newly allocated copy of s[0..len) with every registered secret replaced by
 * "[REDACTED]", NUL-terminated; *out_len gets its length. NULL on allocation failure. The
 * caller frees it with free(). */
char *kite_redact(const kite_runtime_t *rt, const char *s, size_t len, size_t *out_len);

#endif
