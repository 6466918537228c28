/* Everything the event table generates except the bus mechanics: names, routing keys of
 * strings, typed trampolines and subscribe functions, and the JSON form. (Copying a payload
 * into the queue is generated in bus.c, from the per-field code in events_impl.h.)
 *
 * Strings in JSON are redacted (registered secrets) and made valid UTF-8; bytes are redacted
 * and base64'd. */
#include <jansson.h>
#include <math.h>

#include "events_impl.h"

/* ---- small encoders -------------------------------------------------------------------- */

static char *base64(const unsigned char *in, size_t len, size_t *out_len) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t n = 4 * ((len + 2) / 3);
  char *out = malloc(n + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < len)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < len)
      v |= in[i + 2];
    out[o++] = tbl[(v >> 18) & 63];
    out[o++] = tbl[(v >> 12) & 63];
    out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < len ? tbl[v & 63] : '=';
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* Length of the valid UTF-8 sequence at s (max n bytes), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0)
    len = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0)
    len = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0)
    len = 4, cp = c & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return len;
}

/* A JSON string of s with secrets redacted and invalid UTF-8 replaced by U+FFFD. */
static json_t *json_text(const char *s, size_t len, const kite_runtime_t *rt) {
  size_t rl;
  char *r = kite_redact(rt, s, len, &rl);
  if (r == NULL)
    return json_null();
  char *clean = malloc(rl * 3 + 1);
  if (clean == NULL) {
    free(r);
    return json_null();
  }
  size_t o = 0;
  for (size_t i = 0; i < rl;) {
    size_t k = utf8_seq((const unsigned char *)r + i, rl - i);
    if (k == 0) {
      memcpy(clean + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    } else {
      memcpy(clean + o, r + i, k);
      o += k;
      i += k;
    }
  }
  json_t *j = json_stringn(clean, o);
  free(clean);
  free(r);
  return j ? j : json_null();
}

static json_t *json_bytes(kite_bytes_t b, const kite_runtime_t *rt) {
  size_t rl, bl;
  char *r = kite_redact(rt, b.ptr ? b.ptr : "", b.ptr ? b.len : 0, &rl);
  if (r == NULL)
    return json_null();
  char *enc = base64((const unsigned char *)r, rl, &bl);
  free(r);
  if (enc == NULL)
    return json_null();
  json_t *j = json_stringn(enc, bl);
  free(enc);
  return j ? j : json_null();
}

/* ---- routing keys ---------------------------------------------------------------------- */

kite_key_t kite_key_str(const char *s) {
  if (s == NULL)
    return 0;
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h == KITE_KEY_ANY ? h - 1 : h;
}
/* Like every string of the line: redacted, and valid UTF-8 whatever the bytes. */
static json_t *key_json_str(const char *s, const kite_runtime_t *rt) {
  return json_text(s ? s : "", s ? strlen(s) : 0, rt);
}
/* The key is always a string, whatever its field's type: a decimal id ("7") or a name
 * ("worker"), so a reader never has to look at the event type to parse it. */
static json_t *key_json_u64(uint64_t v, const kite_runtime_t *rt) {
  (void)rt;
  char b[24];
  snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
  return json_string(b);
}

#define KEY_JSON(x) _Generic((x), const char * : key_json_str, default : key_json_u64)(x, rt)

#define JSON_U64(f) json_integer((json_int_t)p->f)
#define JSON_I64(f) json_integer((json_int_t)p->f)
#define JSON_U32(f) json_integer((json_int_t)p->f)
#define JSON_I32(f) json_integer((json_int_t)p->f)
#define JSON_DBL(f) (isfinite(p->f) ? json_real(p->f) : json_null())
#define JSON_BOOL(f) json_boolean(p->f)
#define JSON_NSTATE(f) json_string(kite_node_state_name(p->f))
#define JSON_ERR(f) json_string(kite_err_name(p->f))
#define JSON_STR(f) (p->f ? json_text(p->f, strlen(p->f), rt) : json_null())
#define JSON_BYTES(f) json_bytes(p->f, rt)
#define JSON_FIELD(kind, f) json_object_set_new(o, #f, JSON_##kind(f));

#define GEN(NAME, name, cls, keyf)                                                                 \
  static json_t *jkey_##name(const void *vp, const kite_runtime_t *rt) {                           \
    const kite_ev_##name##_t *p = vp;                                                              \
    (void)p;                                                                                       \
    (void)rt;                                                                                      \
    return KITE__IIF(KITE__IS_NONE(keyf))(json_string("0"), KEY_JSON(p->keyf));                    \
  }                                                                                                \
  static json_t *json_##name(const void *vp, const kite_runtime_t *rt) {                           \
    const kite_ev_##name##_t *p = vp;                                                              \
    json_t *o = json_object();                                                                     \
    (void)rt;                                                                                      \
    if (o == NULL)                                                                                 \
      return NULL;                                                                                 \
    KITE_EV_##name##_FIELDS(JSON_FIELD) return o;                                                  \
  }                                                                                                \
  static void tramp_##name(kite_bus_t *bus, const kite_event_t *ev, void (*fn)(void),              \
                           void *data) {                                                           \
    ((kite_on_##name##_fn)fn)(bus, ev, ev->payload, data);                                         \
  }                                                                                                \
  int kite_on_##name(kite_bus_t *bus, kite_key_t key, kite_on_##name##_fn fn, void *data,          \
                     kite_sub_t *out) {                                                            \
    return kite__bus_subscribe_typed(bus, KITE_EV_##NAME, key, (void (*)(void))fn, data, false,    \
                                     out);                                                         \
  }                                                                                                \
  int kite_respond_##name(kite_bus_t *bus, kite_key_t key, kite_on_##name##_fn fn, void *data,     \
                          kite_sub_t *out) {                                                       \
    return kite__bus_subscribe_typed(bus, KITE_EV_##NAME, key, (void (*)(void))fn, data, true,     \
                                     out);                                                         \
  }
KITE_EVENT_TABLE(GEN)
#undef GEN

const kite__evinfo_t kite__evinfo[KITE_EV__COUNT] = {
#define INFO(NAME, name, cls, keyf)                                                                \
  [KITE_EV_##NAME] = {#name, KITE_EVC_##cls, tramp_##name, json_##name, jkey_##name},
    KITE_EVENT_TABLE(INFO)
#undef INFO
};

const char *kite_event_name(int type) {
  return (unsigned)type < KITE_EV__COUNT ? kite__evinfo[type].name : NULL;
}

int kite_event_type_from_name(const char *s) {
  for (int i = 0; s && i < KITE_EV__COUNT; i++)
    if (strcmp(kite__evinfo[i].name, s) == 0)
      return i;
  return -1;
}

kite_event_class_t kite_event_class(int type) {
  return (unsigned)type < KITE_EV__COUNT ? kite__evinfo[type].cls : KITE_EVC_FACT;
}

const char *kite_node_state_name(int state) {
  static const char *const names[] = {
#define NS(name) #name,
      KITE_NODE_STATE_MAP(NS)
#undef NS
  };
  return (unsigned)state < KITE_ARRAY_SIZE(names) ? names[state] : "UNKNOWN";
}

char *kite_event_to_json(kite_bus_t *bus, const kite_event_t *ev) {
  if ((unsigned)ev->type >= KITE_EV__COUNT)
    return NULL;
  const kite__evinfo_t *info = &kite__evinfo[ev->type];
  const kite_runtime_t *rt = kite__bus_runtime(bus);
  json_t *o = json_object();
  if (o == NULL)
    return NULL;
  json_object_set_new(o, "v", json_integer(KITE_EVENT_JSON_VERSION));
  json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
  json_object_set_new(o, "ts", json_integer((json_int_t)ev->ts_ms));
  json_object_set_new(o, "type", json_string(info->name));
  json_object_set_new(o, "key", info->json_key(ev->payload, rt));
  if (ev->corr)
    json_object_set_new(o, "corr", json_integer((json_int_t)ev->corr));
  json_t *d = info->json_data(ev->payload, rt);
  json_object_set_new(o, "data", d ? d : json_null());
  char *s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}
