#ifndef KITE_EVENTS_IMPL_H
#define KITE_EVENTS_IMPL_H

/* What the event table generates for the bus: per type, how big the payload is, how to copy
 * its strings and bytes into the queue, which routing key it has, how to call a typed
 * handler, and its JSON form. Shared by bus.c and events.c only. */

#include <jansson.h>

#include "kite_impl.h"

struct kite__sub;
typedef void (*kite__tramp_fn)(kite_bus_t *bus, const kite_event_t *ev, void (*fn)(void),
                               void *data);

typedef struct kite__evinfo {
  const char *name;
  kite_event_class_t cls;
  size_t size;                                     /* sizeof the payload struct */
  size_t (*extra)(const void *p);                  /* bytes of strings and byte fields */
  void (*copy)(void *dst, const void *src, char *extra); /* copy struct + deep data */
  kite_key_t (*key)(const void *p);
  kite__tramp_fn tramp;                            /* calls a typed handler */
  json_t *(*json_data)(const void *p, const kite_runtime_t *rt);
  json_t *(*json_key)(const void *p);
} kite__evinfo_t;

extern const kite__evinfo_t kite__evinfo[KITE_EV__COUNT];

/* Typed subscription entry points call this with their trampoline. */
int kite__bus_subscribe_typed(kite_bus_t *bus, int type, kite_key_t key, void (*fn)(void),
                              void *data, bool responder, kite_sub_t *out);

#endif
