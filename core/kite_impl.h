#ifndef KITE_IMPL_H
#define KITE_IMPL_H

/* Declarations shared by kite's own source files. Never installed. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kite/kite.h"

#define container_of kite_container_of
#define KITE_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KITE_UNUSED(x) (void)(x)

#define KITE_DEBUG(rt, comp, ...) kite_log((rt), KITE_LOG_DEBUG, (comp), __VA_ARGS__)
#define KITE_INFO(rt, comp, ...) kite_log((rt), KITE_LOG_INFO, (comp), __VA_ARGS__)
#define KITE_WARN(rt, comp, ...) kite_log((rt), KITE_LOG_WARN, (comp), __VA_ARGS__)
#define KITE_ERROR(rt, comp, ...) kite_log((rt), KITE_LOG_ERROR, (comp), __VA_ARGS__)

/* ---- util.c ---------------------------------------------------------------------------- */

/* strdup that accepts NULL (returns NULL). */
char *kite__strdup(const char *s);
/* asprintf into a new string; NULL on failure. */
char *kite__sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
struct kite_offer;
/* An offer's type as people read it: "n1-standard-4+T4:1" with accelerators that come beside
 * or with it, else the type ("m5.large"), into out (offer.c). */
const char *kite__offer_type(const struct kite_offer *o, char *out, size_t size);
/* mkdir -p with mode for every created component. */
int kite__mkdir_p(const char *path, int mode);
/* Writes data to path atomically (temp file in the same directory, fsync, rename) with mode. */
int kite__write_file(const char *path, const void *data, size_t len, int mode);
/* Reads a whole (small) file; *out is NUL-terminated and malloc'd. */
int kite__read_file(const char *path, char **out, size_t *len);
/* Removes a directory tree (like rm -rf); missing is success. */
int kite__rm_rf(const char *path);
/* Wall-clock milliseconds since the epoch. */
uint64_t kite__wall_ms(void);
/* A short public name for a credential, safe to store and print: the first 16 hex digits of
 * SHA-256(prefix ":" value). Two processes using the same credential get the same name; the
 * name does not give the credential away. out must hold 17 bytes. */
void kite__fingerprint(const char *prefix, const char *value, char out[17]);
/* The string value of key in a JSON object text, malloc'd; NULL when absent or not a string
 * (json may be NULL). */
char *kite__json_str(const char *json, const char *key);

/* Fuzzing only: while fn is set, no HTTP request goes out. Each attempt's answer is the raw
 * HTTP/1.1 response text fn returns for the request (method, URL, body or NULL): a status line,
 * header lines, a blank line, the body; *len its length; it must stay valid until fn is called
 * again. NULL: nothing came back;
 * it is read by the same code curl's callbacks feed, and backoff and rate-limit waits are not
 * waited. Loop thread; set it before any client starts a request. */
typedef const char *(*kite__http_canned_fn)(const char *method, const char *url, const char *body,
                                            size_t *len, void *data);
void kite__http_canned(kite__http_canned_fn fn, void *data);
/* A process-unique, never-zero id (loop thread only). */
uint64_t kite__next_id(void);
/* The one of keys[0..nkeys) that key most likely misspells (the same letters in another case,
 * or a few edits away, a swap of neighbours counting as one), or NULL: for "did you mean". */
const char *kite__closest(const char *key, const char *const *keys, size_t nkeys);

/* ---- shell.c --------------------------------------------------------------------------- */

/* Quotes s for a POSIX shell so that it is always exactly one word with exactly s's bytes:
 * 'it'\''s' form. Returns a malloc'd string. */
char *kite__shell_quote(const char *s);
/* Quotes each element of a NULL-terminated argv and joins them with spaces. */
char *kite__shell_join(const char *const *argv);
/* Whether s[0..n) is a shell variable name: [A-Za-z_][A-Za-z0-9_]*. */
bool kite__shell_name(const char *s, size_t n);

/* ---- runtime.c ------------------------------------------------------------------------- */

/* The runtime's secrets, for redaction by the log and the JSON sink. */
typedef struct kite__secrets kite__secrets_t;
const kite__secrets_t *kite__runtime_secrets(const kite_runtime_t *rt);
kite_runtime_t *kite__bus_runtime(kite_bus_t *bus);

/* ---- log.c: redacting a stream -------------------------------------------------------- */

/* Redaction of output that arrives in chunks (a command's stdout, say): a secret split across
 * chunks is caught too, because the bytes at a chunk's end that could begin a secret are held
 * back until the next chunk (or the end) shows what they are. */
typedef struct kite__redactor {
  char *held; /* at most the longest secret's length - 1 bytes */
  size_t held_len;
} kite__redactor_t;

/* Feeds buf[0..len) (final: and ends the stream, releasing everything held). On return
 * *out and *out_len are what may be released now, redacted: either buf itself (*owned false: no
 * secret, nothing held) or a malloc'd buffer the caller frees (*owned true). *out_len may be
 * 0. KITE_ENOMEM on allocation failure (nothing is released then). */
int kite__redact_feed(const kite_runtime_t *rt, kite__redactor_t *r, const void *buf, size_t len,
                      bool final, const char **out, size_t *out_len, bool *owned);
void kite__redactor_clear(kite__redactor_t *r);
/* The runtime's state store ($KITE_HOME/state.db), opened on first use. KITE_ESTORE (logged
 * once) when it cannot be opened. */
int kite__runtime_store(kite_runtime_t *rt, kite_store_t **out);

/* ---- bus.c ----------------------------------------------------------------------------- */

int kite__bus_new(kite_bus_t **out, kite_runtime_t *rt, size_t capacity);
/* Stops the bus's handles; cb runs when they are closed. Pending requests are answered with
 * KITE_ECANCELED first. */
void kite__bus_close(kite_bus_t *bus, void (*cb)(kite_bus_t *bus, void *data), void *data);
void kite__bus_free(kite_bus_t *bus);

#endif
