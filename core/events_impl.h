#ifndef KITE_EVENTS_IMPL_H
#define KITE_EVENTS_IMPL_H

/* What the event table generates for the bus. events.c generates, per type, its name, class,
 * typed trampoline and JSON form (kite__evinfo). The per-field code below is what bus.c
 * generates its enqueue from: how many bytes a payload's strings and bytes need, how to copy
 * them into the queue, and which field is the routing key. Emitting is the bus's hot path,
 * so that code is expanded per type where the payload's layout is known at compile time.
 * Shared by bus.c and events.c only. */

#include <jansson.h>

#include "kite_impl.h"

typedef void (*kite__tramp_fn)(kite_bus_t *bus, const kite_event_t *ev, void (*fn)(void),
                               void *data);

typedef struct kite__evinfo {
  const char *name;
  kite_event_class_t cls;
  kite__tramp_fn tramp; /* calls a typed handler */
  json_t *(*json_data)(const void *p, const kite_runtime_t *rt);
  json_t *(*json_key)(const void *p, const kite_runtime_t *rt);
} kite__evinfo_t;

extern const kite__evinfo_t kite__evinfo[KITE_EV__COUNT];

/* Typed subscription entry points call this with their trampoline. */
int kite__bus_subscribe_typed(kite_bus_t *bus, int type, kite_key_t key, void (*fn)(void),
                              void *data, bool responder, kite_sub_t *out);

/* ---- per-field code ------------------------------------------------------------------------
 * Used inside a block where p is the source payload, d the payload in the queue, n the byte
 * count being summed and extra the next free byte after d. A string field is copied with its
 * NUL and a NULL string stays NULL; bytes with a NULL pointer get length 0. */

#define KITE__EXTRA_U64(f)
#define KITE__EXTRA_I64(f)
#define KITE__EXTRA_U32(f)
#define KITE__EXTRA_I32(f)
#define KITE__EXTRA_DBL(f)
#define KITE__EXTRA_BOOL(f)
#define KITE__EXTRA_NSTATE(f)
#define KITE__EXTRA_ERR(f)
#define KITE__EXTRA_STR(f) n += p->f ? strlen(p->f) + 1 : 0;
#define KITE__EXTRA_BYTES(f) n += p->f.ptr ? p->f.len : 0;
#define KITE__EXTRA(kind, f) KITE__EXTRA_##kind(f)

#define KITE__COPY_U64(f)
#define KITE__COPY_I64(f)
#define KITE__COPY_U32(f)
#define KITE__COPY_I32(f)
#define KITE__COPY_DBL(f)
#define KITE__COPY_BOOL(f)
#define KITE__COPY_NSTATE(f)
#define KITE__COPY_ERR(f)
#define KITE__COPY_STR(f)                                                                          \
  if (p->f) {                                                                                      \
    size_t l = strlen(p->f) + 1;                                                                   \
    memcpy(extra, p->f, l);                                                                        \
    d->f = extra;                                                                                  \
    extra += l;                                                                                    \
  }
#define KITE__COPY_BYTES(f)                                                                        \
  if (p->f.ptr) {                                                                                  \
    memcpy(extra, p->f.ptr, p->f.len);                                                             \
    d->f.ptr = extra;                                                                              \
    extra += p->f.len;                                                                             \
  } else {                                                                                         \
    d->f.len = 0;                                                                                  \
  }
#define KITE__COPY(kind, f) KITE__COPY_##kind(f)

/* The routing key: "none" as a key column means key 0; anything else names a payload field,
 * a string (hashed with kite_key_str) or an integer. */
#define KITE__CAT_(a, b) a##b
#define KITE__CAT(a, b) KITE__CAT_(a, b)
#define KITE__SECOND_(a, b, ...) b
#define KITE__SECOND(...) KITE__SECOND_(__VA_ARGS__, 0, 0)
#define KITE__ISNONE_none ~, 1
#define KITE__IS_NONE(k) KITE__SECOND(KITE__ISNONE_##k)
#define KITE__IIF_0(t, f) f
#define KITE__IIF_1(t, f) t
#define KITE__IIF(c) KITE__CAT(KITE__IIF_, c)

static inline kite_key_t kite__key_u64(uint64_t v) {
  return v;
}
#define KITE__KEY_OF(x) _Generic((x), const char * : kite_key_str, default : kite__key_u64)(x)
#define KITE__KEY(keyf) KITE__IIF(KITE__IS_NONE(keyf))((kite_key_t)0, KITE__KEY_OF(p->keyf))

#endif
