/* The event JSON encoder, round trip: an event of the type byte 0 names, every field filled
 * from the input, is encoded (kite_event_to_json) and read back with jansson. Every field must
 * come back: integers and booleans equal, a finite double equal (a non-finite one null), a
 * string equal when it is valid UTF-8 (else some valid string), bytes equal after base64, a
 * node state by its name, an error code by its name; and the registered secret must appear
 * nowhere, neither in the line nor in decoded bytes. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kite/kite.h"

#define SECRET "hunter2-fuzz-secret"

typedef struct input {
  const uint8_t *p;
  size_t n;
  char *strs[32];
  unsigned nstrs;
} input_t;

static uint64_t take(input_t *in, size_t k) {
  uint64_t v = 0;
  for (size_t i = 0; i < k && in->n; i++, in->p++, in->n--)
    v = v << 8 | *in->p;
  return v;
}

/* A string of the length the next byte says (NUL bytes end it early, as a C string would). */
static char *take_str(input_t *in, size_t *len) {
  size_t n = (size_t)take(in, 1);
  n = n < in->n ? n : in->n;
  char *s = malloc(n + 1);
  if (s == NULL)
    abort();
  memcpy(s, in->p, n);
  s[n] = '\0';
  in->p += n;
  in->n -= n;
  if (in->nstrs < sizeof(in->strs) / sizeof(in->strs[0]))
    in->strs[in->nstrs++] = s;
  if (len)
    *len = n;
  return s;
}

static void fail(const char *what, const char *field, const char *line) {
  fprintf(stderr, "event JSON round trip: %s: field %s: %s\n", what, field, line);
  abort();
}

static size_t unbase64(const char *s, unsigned char *out) {
  static const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (; *s && *s != '='; s++) {
    const char *c = strchr(abc, *s);
    if (c == NULL)
      return (size_t)-1;
    acc = acc << 6 | (uint32_t)(c - abc);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
    }
  }
  return o;
}

#define FILL_U64(f) p.f = take(in, 8) & INT64_MAX;
#define FILL_I64(f) p.f = (int64_t)(take(in, 8) & INT64_MAX) - (int64_t)(take(in, 1) << 40);
#define FILL_U32(f) p.f = (uint32_t)take(in, 4);
#define FILL_I32(f) p.f = (int32_t)take(in, 4);
#define FILL_DBL(f)                                                                                \
  {                                                                                                \
    uint64_t b = take(in, 8);                                                                      \
    memcpy(&p.f, &b, sizeof(b));                                                                   \
  }
#define FILL_BOOL(f) p.f = take(in, 1) & 1;
#define FILL_STR(f) p.f = take(in, 1) == 0 ? NULL : take_str(in, NULL);
#define FILL_BYTES(f)                                                                              \
  {                                                                                                \
    size_t n;                                                                                      \
    p.f.ptr = take_str(in, &n);                                                                    \
    p.f.len = n;                                                                                   \
  }
#define FILL_NSTATE(f) p.f = (int32_t)(take(in, 1) % 8);
#define FILL_ERR(f) p.f = -(int32_t)take(in, 1);
#define FILL(kind, f) FILL_##kind(f)

#define INT_IS(f, want)                                                                            \
  if (!json_is_integer(v) || json_integer_value(v) != (json_int_t)(want))                          \
    fail("integer differs", #f, line);
#define CHECK_U64(f) INT_IS(f, p.f)
#define CHECK_I64(f) INT_IS(f, p.f)
#define CHECK_U32(f) INT_IS(f, p.f)
#define CHECK_I32(f) INT_IS(f, p.f)
#define CHECK_DBL(f)                                                                               \
  if (isfinite(p.f) ? !json_is_number(v) || json_number_value(v) != p.f : !json_is_null(v))        \
    fail("double differs", #f, line);
#define CHECK_BOOL(f)                                                                              \
  if (!json_is_boolean(v) || json_is_true(v) != p.f)                                               \
    fail("boolean differs", #f, line);
#define CHECK_STR(f) check_str(v, p.f, #f, line);
#define CHECK_BYTES(f) check_bytes(v, p.f, #f, line);
#define CHECK_NSTATE(f) check_name(v, kite_node_state_name(p.f), #f, line);
#define CHECK_ERR(f) check_name(v, kite_err_name(p.f), #f, line);
#define CHECK(kind, f)                                                                             \
  {                                                                                                \
    json_t *v = json_object_get(data, #f);                                                         \
    if (v == NULL)                                                                                 \
      fail("missing", #f, line);                                                                   \
    CHECK_##kind(f)                                                                                \
  }

static void check_str(json_t *v, const char *s, const char *f, const char *line) {
  if (s == NULL) {
    if (!json_is_null(v))
      fail("a NULL string is not null", f, line);
    return;
  }
  if (!json_is_string(v))
    fail("not a string", f, line);
  json_t *probe = json_string(s);
  if (probe && strstr(s, "hunter2") == NULL && strcmp(json_string_value(v), s) != 0)
    fail("string differs", f, line);
  json_decref(probe);
}

static void check_bytes(json_t *v, kite_bytes_t b, const char *f, const char *line) {
  if (!json_is_string(v))
    fail("bytes are not a string", f, line);
  const char *s = json_string_value(v);
  unsigned char *out = malloc(strlen(s) + 1);
  if (out == NULL)
    abort();
  size_t n = unbase64(s, out);
  if (n == (size_t)-1)
    fail("bytes are not base64", f, line);
  if (memmem(out, n, SECRET, strlen(SECRET)))
    fail("the secret is in the bytes", f, line);
  if (memmem(b.ptr, b.len, "hunter2", 7) == NULL && (n != b.len || memcmp(out, b.ptr, n) != 0))
    fail("bytes differ", f, line);
  free(out);
}

static void check_name(json_t *v, const char *name, const char *f, const char *line) {
  if (!json_is_string(v) || name == NULL || strcmp(json_string_value(v), name) != 0)
    fail("name differs", f, line);
}

static void round_trip(kite_bus_t *bus, int type, const void *payload,
                       void (*check)(const void *payload, json_t *data, const char *line)) {
  kite_event_t ev = {.type = type, .seq = 1, .ts_ms = 1700000000000ull, .payload = payload};
  char *line = kite_event_to_json(bus, &ev);
  if (line == NULL)
    abort();
  if (strstr(line, SECRET))
    fail("the secret is in the line", "-", line);
  json_error_t e;
  json_t *j = json_loads(line, 0, &e);
  json_t *data = json_object_get(j, "data");
  if (!json_is_object(data) || !json_is_string(json_object_get(j, "key")) ||
      strcmp(json_string_value(json_object_get(j, "type")), kite_event_name(type)) != 0)
    fail("not an event line", "-", line);
  check(payload, data, line);
  json_decref(j);
  free(line);
}

#define GEN(NAME, name, cls, keyf)                                                                 \
  static void check_##name(const void *vp, json_t *data, const char *line) {                       \
    const kite_ev_##name##_t p = *(const kite_ev_##name##_t *)vp;                                  \
    (void)data;                                                                                    \
    (void)line;                                                                                    \
    (void)p;                                                                                       \
    KITE_EV_##name##_FIELDS(CHECK)                                                                 \
  }                                                                                                \
  static void fill_##name(kite_bus_t *bus, input_t *in) {                                          \
    kite_ev_##name##_t p;                                                                          \
    memset(&p, 0, sizeof(p));                                                                      \
    (void)in;                                                                                      \
    KITE_EV_##name##_FIELDS(FILL) round_trip(bus, KITE_EV_##NAME, &p, check_##name);               \
  }
KITE_EVENT_TABLE(GEN)
#undef GEN

static void (*const fillers[])(kite_bus_t *, input_t *) = {
#define ENTRY(NAME, name, cls, keyf) [KITE_EV_##NAME] = fill_##name,
    KITE_EVENT_TABLE(ENTRY)
#undef ENTRY
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static kite_runtime_t *rt;
  if (rt == NULL) {
    kite_runtime_options_t o = {.home = "/tmp", .log_level = KITE_LOG_OFF};
    if (kite_runtime_new(&rt, &o) != 0 || kite_secret_add(rt, SECRET) != 0)
      abort();
  }
  if (size < 1)
    return 0;
  input_t in = {.p = data + 1, .n = size - 1};
  fillers[data[0] % KITE_EV__COUNT](kite_runtime_bus(rt), &in);
  for (unsigned i = 0; i < in.nstrs; i++)
    free(in.strs[i]);
  return 0;
}
