#ifndef KITE_BUS_H
#define KITE_BUS_H

/* The typed in-process event bus (DESIGN.md, "Event bus").
 *
 * - Emission is queued: kite_emit_<name>() copies the event (strings and bytes included) into
 *   the bus queue and returns; the queue is drained on the loop in FIFO order. A handler never
 *   runs inside the emit that caused it.
 * - Subscriptions are keyed: by type, and by routing key or KITE_KEY_ANY. Delivery costs one
 *   hash lookup plus the handlers of that key.
 * - A subscriber added during dispatch does not see the event being delivered; one removed
 *   during dispatch is not called again. Subscribing and unsubscribing from a handler is safe.
 * - Requests have correlation ids and exactly one responder per (type, key) (a responder on
 *   KITE_KEY_ANY answers keys nobody else answers). A request nobody answers gets an
 *   asynchronous KITE_ENORESPONDER reply; one with a timeout gets KITE_ETIMEDOUT when it
 *   expires. Requests that create paid resources must not use a timeout (DESIGN.md).
 * - The queue is bounded in bytes. BULK events (task output) get KITE_EAGAIN when it is full
 *   and their producer waits with kite_bus_wait_space(); other events are never refused for
 *   space: they go to an overflow list, in order, and nothing is dropped.
 *
 * All functions are loop-thread only. */

#include <stdint.h>
#include <stdio.h>

#include "kite/events.h"
#include "kite/runtime.h"

typedef uint64_t kite_key_t;
#define KITE_KEY_ANY UINT64_MAX

/* Hash of a string routing key (a provider name); never KITE_KEY_ANY. NULL hashes to 0. */
kite_key_t kite_key_str(const char *s);

/* What a handler receives. payload points at the kite_ev_<name>_t; everything it points to is
 * valid only during the handler. */
typedef struct kite_event {
  int type;           /* kite_event_type_t */
  uint32_t flags;     /* private */
  uint64_t seq;       /* emission order, from 1 */
  uint64_t ts_ms;     /* wall-clock milliseconds since the epoch at emission */
  kite_key_t key;     /* routing key */
  uint64_t corr;      /* correlation id of the request this event is or answers, else 0 */
  const void *payload;
} kite_event_t;

/* A subscription or responder registration; 0 is "none". */
typedef struct kite_sub {
  uint64_t id;
} kite_sub_t;

typedef void (*kite_event_fn)(kite_bus_t *bus, const kite_event_t *ev, const void *payload,
                              void *data);
/* A request's completion: status 0 and the reply event, or status < 0 and a reply_error event
 * (its message says why). Called exactly once, on the loop, never inside kite_bus_request. */
typedef void (*kite_reply_fn)(kite_bus_t *bus, int status, const kite_event_t *reply,
                              void *data);

/* ---- generic API (the typed wrappers below are what code should call) ----------------- */

int kite_bus_subscribe(kite_bus_t *bus, int type, kite_key_t key, kite_event_fn fn, void *data,
                       kite_sub_t *out);
/* Subscribes to every event type (a sink, a UI). */
int kite_bus_subscribe_all(kite_bus_t *bus, kite_event_fn fn, void *data, kite_sub_t *out);
/* Removes a subscription or responder. Idempotent for an id already removed. */
void kite_bus_unsubscribe(kite_bus_t *bus, kite_sub_t sub);
int kite_bus_emit(kite_bus_t *bus, int type, const void *payload);
int kite_bus_respond(kite_bus_t *bus, int type, kite_key_t key, kite_event_fn fn, void *data,
                     kite_sub_t *out);
/* Sends a request. timeout_ms 0 means none. *corr (if not NULL) gets the correlation id. If this
 * returns an error, cb is never called. */
int kite_bus_request(kite_bus_t *bus, int type, const void *payload, uint64_t timeout_ms,
                     kite_reply_fn cb, void *data, uint64_t *corr);
/* Answers request corr with a fact of type `type` (also delivered to that fact's subscribers). */
int kite_bus_reply(kite_bus_t *bus, uint64_t corr, int type, const void *payload);
/* Answers request corr with an error. message may be NULL. */
int kite_bus_reply_error(kite_bus_t *bus, uint64_t corr, int code, const char *message);
/* Calls cb (status 0) once every event queued before this call has been delivered: how a
 * completion callback runs after the events that led to it. Until then it is a pending
 * request of its own: kite_bus_cancel(*corr) makes cb run with KITE_ECANCELED instead, and
 * closing the bus fails it. No subscriber sees it. */
int kite_bus_after(kite_bus_t *bus, kite_reply_fn cb, void *data, uint64_t *corr);
/* Cancels a pending request: its cb runs (queued) with KITE_ECANCELED; a later reply is still
 * delivered to subscribers of the fact but not to cb. */
int kite_bus_cancel(kite_bus_t *bus, uint64_t corr);

/* Back-pressure: calls cb(bus, data) once, on the loop, when the queue has drained to half its
 * bound. The waiter must stay valid until then or until kite_bus_wait_cancel(). */
typedef struct kite_bus_waiter {
  void (*cb)(kite_bus_t *bus, void *data);
  void *data;
  struct kite_bus_waiter *next_; /* private */
  int queued_;                   /* private */
} kite_bus_waiter_t;
void kite_bus_wait_space(kite_bus_t *bus, kite_bus_waiter_t *w);
void kite_bus_wait_cancel(kite_bus_t *bus, kite_bus_waiter_t *w);

/* Bytes in the queue now, and its bound. */
size_t kite_bus_queued_bytes(const kite_bus_t *bus);
size_t kite_bus_capacity(const kite_bus_t *bus);
/* Events emitted since the bus was created. */
uint64_t kite_bus_emitted(const kite_bus_t *bus);

/* Delivers queued events now, up to max (0: until the queue is empty). Returns
 * KITE_ERECURSIVE when called from a handler. For tests and benchmarks; normal programs let
 * the loop drain the queue. */
int kite_bus_drain(kite_bus_t *bus, size_t max);

/* ---- JSON lines ------------------------------------------------------------------------ */

/* One line (no newline) of the versioned JSON form of ev:
 * {"v":1,"seq":N,"ts":MS,"type":"name","key":"K","corr":C,"data":{...}}; bytes in base64;
 * every registered secret in a string or byte field is replaced by "[REDACTED]". Returns a
 * malloc'd string the caller frees, or NULL on allocation failure. */
char *kite_event_to_json(kite_bus_t *bus, const kite_event_t *ev);

/* A sink that writes every event as one JSON line to fp (flushing after each line). Stop with
 * kite_bus_unsubscribe(*out). */
int kite_bus_json_sink(kite_bus_t *bus, FILE *fp, kite_sub_t *out);

/* ---- typed API, generated from the event table ----------------------------------------- */

#define KITE__BUS_TYPED(NAME, name, cls, keyf)                                               \
  typedef void (*kite_on_##name##_fn)(kite_bus_t * bus, const kite_event_t *ev,              \
                                      const kite_ev_##name##_t *p, void *data);              \
  int kite_on_##name(kite_bus_t *bus, kite_key_t key, kite_on_##name##_fn fn, void *data,    \
                     kite_sub_t *out);                                                       \
  int kite_respond_##name(kite_bus_t *bus, kite_key_t key, kite_on_##name##_fn fn,           \
                          void *data, kite_sub_t *out);                                      \
  static inline int kite_emit_##name(kite_bus_t *bus, const kite_ev_##name##_t *p) {         \
    return kite_bus_emit(bus, KITE_EV_##NAME, p);                                            \
  }                                                                                          \
  static inline int kite_request_##name(kite_bus_t *bus, const kite_ev_##name##_t *p,        \
                                        uint64_t timeout_ms, kite_reply_fn cb, void *data,   \
                                        uint64_t *corr) {                                    \
    return kite_bus_request(bus, KITE_EV_##NAME, p, timeout_ms, cb, data, corr);             \
  }                                                                                          \
  static inline int kite_reply_##name(kite_bus_t *bus, uint64_t corr,                        \
                                      const kite_ev_##name##_t *p) {                         \
    return kite_bus_reply(bus, corr, KITE_EV_##NAME, p);                                     \
  }                                                                                          \
  /* The payload of a reply/event known to be of this type, or NULL. */                     \
  static inline const kite_ev_##name##_t *kite_ev_as_##name(const kite_event_t *ev) {        \
    return (ev && ev->type == KITE_EV_##NAME) ? (const kite_ev_##name##_t *)ev->payload       \
                                              : NULL;                                        \
  }
KITE_EVENT_TABLE(KITE__BUS_TYPED)
#undef KITE__BUS_TYPED

#endif
