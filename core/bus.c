/* The event bus: a byte-bounded FIFO queue drained on the loop, keyed subscriptions, and
 * requests with correlation ids.
 *
 * Queue. Events are copied (payload struct, then its strings and bytes) into one ring of
 * bytes allocated at creation, so emitting allocates nothing. An entry never straddles the
 * ring's end: when it does not fit there, the rest of the ring is skipped. When the ring is
 * full, BULK events are refused with KITE_EAGAIN (their producer waits for space) and every
 * other event goes to an overflow list, in order; while that list is not empty every new
 * event goes there too, so FIFO order holds. A uv_idle_t runs while the queue is not empty
 * and drains it in batches, so a handler never runs inside the emit that caused it.
 *
 * Routing. Subscribers of a (type, key) live in a bucket found through a uthash table;
 * subscribers of (type, any key) live in a per-type bucket found by index; "all events"
 * subscribers (sinks) in one list. Delivery order for one event: keyed, then any-key, then
 * all. A subscriber added during dispatch has an id above the dispatch's snapshot and is
 * skipped; one removed during dispatch is marked dead and freed when dispatch unwinds.
 *
 * Requests. kite_bus_request records a pending entry (by correlation id) and queues the
 * request; at delivery the responder of (type, key), else of (type, any), gets it, and if
 * there is none an error reply is queued. A reply is an ordinary fact carrying the
 * correlation id and a FINAL flag: delivering it completes the pending request and then
 * reaches the fact's subscribers, so a late reply is never lost to them. */
#include <uthash.h>

#include "events_impl.h"

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define DEFAULT_CAPACITY (8u << 20)
#define DRAIN_BATCH 65536

enum {
  EF_FINAL = 1u,  /* completes the request named by corr */
  EF_CANCEL = 2u, /* the completion caused by kite_bus_cancel */
};

typedef struct bkey {
  uint64_t key;
  uint32_t type;
  uint32_t responder;
} bkey_t;

typedef struct sub {
  uint64_t id;
  int type; /* -1: every type */
  kite_key_t key;
  bool responder;
  bool dead;
  kite__tramp_fn tramp; /* NULL: generic fn */
  void (*fn)(void);
  void *data;
  struct sub *next, *prev;
  struct bucket *bucket;
  struct sub *zombie_next;
  UT_hash_handle hh;
} sub_t;

typedef struct bucket {
  bkey_t k;
  sub_t *head, *tail;
  size_t n;
  UT_hash_handle hh;
} bucket_t;

typedef struct entry {
  uint32_t size; /* whole entry, 8-aligned; 0 marks "skip to the ring's start" */
  uint32_t pad;
  kite_event_t ev;
} entry_t;

#define ENTRY_HDR ALIGN8(sizeof(entry_t))

typedef struct ovf {
  struct ovf *next;
  size_t size;
  entry_t e; /* followed by the payload */
} ovf_t;

typedef struct pending {
  uint64_t corr;
  int type;
  kite_reply_fn cb;
  void *data;
  bool canceled;
  bool has_timer;
  uv_timer_t timer;
  kite_bus_t *bus;
  UT_hash_handle hh;
} pending_t;

struct kite_bus {
  kite_runtime_t *rt;
  uv_loop_t *loop;

  unsigned char *ring;
  size_t cap, head, tail, used;
  ovf_t *ovf_head, *ovf_tail;
  size_t ovf_bytes;

  uint64_t seq;
  uint64_t next_sub_id;
  uint64_t next_corr;
  int64_t wall_offset_ms; /* wall clock minus uv_now */

  bucket_t *keyed;                 /* hash of (type, key) buckets, subscribers */
  bucket_t *resp;                  /* hash of (type, key) responders */
  bucket_t any[KITE_EV__COUNT];    /* (type, any key) subscribers */
  size_t keyed_n[KITE_EV__COUNT];  /* keyed subscribers per type */
  sub_t *all_head, *all_tail;      /* every-type subscribers */
  sub_t *by_id;                    /* every subscription, by id */
  sub_t *zombies;
  int depth;                       /* dispatch nesting (0 or 1) */
  int draining;

  pending_t *pending;
  int timers_open;

  kite_bus_waiter_t *waiters;

  uv_idle_t idle;
  bool idle_on;
  bool closing;
  bool closed;
  void (*close_cb)(kite_bus_t *bus, void *data);
  void *close_data;
};

static void on_idle(uv_idle_t *h);

kite_runtime_t *kite__bus_runtime(kite_bus_t *bus) { return bus->rt; }

int kite__bus_new(kite_bus_t **out, kite_runtime_t *rt, size_t capacity) {
  kite_bus_t *bus = calloc(1, sizeof(*bus));
  if (bus == NULL)
    return KITE_ENOMEM;
  bus->cap = ALIGN8(capacity ? capacity : DEFAULT_CAPACITY);
  if (bus->cap < 4096)
    bus->cap = 4096;
  bus->ring = malloc(bus->cap);
  if (bus->ring == NULL) {
    free(bus);
    return KITE_ENOMEM;
  }
  bus->rt = rt;
  bus->loop = kite_runtime_loop(rt);
  uv_update_time(bus->loop);
  bus->wall_offset_ms = (int64_t)kite__wall_ms() - (int64_t)uv_now(bus->loop);
  for (int t = 0; t < KITE_EV__COUNT; t++)
    bus->any[t].k.type = (uint32_t)t;
  uv_idle_init(bus->loop, &bus->idle);
  *out = bus;
  return 0;
}

/* ---- queue ------------------------------------------------------------------------------ */

static size_t queued(const kite_bus_t *bus) { return bus->used + bus->ovf_bytes; }
size_t kite_bus_queued_bytes(const kite_bus_t *bus) { return queued(bus); }
size_t kite_bus_capacity(const kite_bus_t *bus) { return bus->cap; }
uint64_t kite_bus_emitted(const kite_bus_t *bus) { return bus->seq; }

/* Reserves n contiguous bytes in the ring, or returns NULL. */
static unsigned char *ring_reserve(kite_bus_t *bus, size_t n) {
  if (bus->used == 0)
    bus->head = bus->tail = 0;
  if (bus->tail >= bus->head && !(bus->used > 0 && bus->tail == bus->head)) {
    if (bus->cap - bus->tail >= n) {
      unsigned char *p = bus->ring + bus->tail;
      bus->tail += n;
      bus->used += n;
      return p;
    }
    if (bus->head >= n) {
      size_t waste = bus->cap - bus->tail;
      if (waste >= sizeof(uint32_t))
        ((entry_t *)(bus->ring + bus->tail))->size = 0;
      bus->used += waste + n;
      bus->tail = n;
      return bus->ring;
    }
    return NULL;
  }
  if (bus->tail < bus->head && bus->head - bus->tail >= n) {
    unsigned char *p = bus->ring + bus->tail;
    bus->tail += n;
    bus->used += n;
    return p;
  }
  return NULL;
}

static void start_idle(kite_bus_t *bus) {
  if (!bus->idle_on && !bus->closed) {
    uv_idle_start(&bus->idle, on_idle);
    bus->idle_on = true;
  }
}

static int enqueue(kite_bus_t *bus, int type, const void *payload, uint64_t corr,
                   uint32_t flags, bool may_refuse) {
  if ((unsigned)type >= KITE_EV__COUNT || payload == NULL)
    return KITE_EINVAL;
  if (bus->closed)
    return KITE_ECLOSED;
  const kite__evinfo_t *info = &kite__evinfo[type];
  size_t body = ALIGN8(info->size) + info->extra(payload);
  size_t n = ALIGN8(ENTRY_HDR + body);
  entry_t *e = NULL;
  bool bulk = info->cls == KITE_EVC_BULK && may_refuse;
  if (bulk && n > bus->cap / 2)
    return KITE_E2BIG;
  if (bus->ovf_head == NULL && n <= bus->cap)
    e = (entry_t *)ring_reserve(bus, n);
  if (e == NULL) {
    if (bulk)
      return KITE_EAGAIN;
    ovf_t *o = malloc(offsetof(ovf_t, e) + n);
    if (o == NULL)
      return KITE_ENOMEM;
    o->next = NULL;
    o->size = n;
    if (bus->ovf_tail)
      bus->ovf_tail->next = o;
    else
      bus->ovf_head = o;
    bus->ovf_tail = o;
    bus->ovf_bytes += n;
    e = &o->e;
  }
  e->size = (uint32_t)n;
  e->ev.type = type;
  e->ev.flags = flags;
  e->ev.seq = ++bus->seq;
  e->ev.ts_ms = (uint64_t)((int64_t)uv_now(bus->loop) + bus->wall_offset_ms);
  e->ev.key = info->key(payload);
  e->ev.corr = corr;
  unsigned char *body_p = (unsigned char *)e + ENTRY_HDR;
  info->copy(body_p, payload, (char *)body_p + ALIGN8(info->size));
  e->ev.payload = body_p;
  start_idle(bus);
  return 0;
}

int kite_bus_emit(kite_bus_t *bus, int type, const void *payload) {
  if ((unsigned)type < KITE_EV__COUNT && kite__evinfo[type].cls == KITE_EVC_REQUEST)
    return KITE_EINVAL; /* a request needs kite_bus_request (someone must get the reply) */
  return enqueue(bus, type, payload, 0, 0, true);
}

/* ---- subscriptions ---------------------------------------------------------------------- */

static bucket_t *bucket_get(kite_bus_t *bus, bucket_t **table, int type, kite_key_t key,
                            bool responder, bool create) {
  bkey_t k;
  memset(&k, 0, sizeof(k));
  k.key = key;
  k.type = (uint32_t)type;
  k.responder = responder;
  bucket_t *b = NULL;
  HASH_FIND(hh, *table, &k, sizeof(k), b);
  if (b == NULL && create) {
    b = calloc(1, sizeof(*b));
    if (b == NULL)
      return NULL;
    b->k = k;
    HASH_ADD(hh, *table, k, sizeof(k), b);
  }
  (void)bus;
  return b;
}

static void list_append(sub_t **head, sub_t **tail, sub_t *s) {
  s->next = NULL;
  s->prev = *tail;
  if (*tail)
    (*tail)->next = s;
  else
    *head = s;
  *tail = s;
}

static void list_remove(sub_t **head, sub_t **tail, sub_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    *head = s->next;
  if (s->next)
    s->next->prev = s->prev;
  else
    *tail = s->prev;
}

static int add_sub(kite_bus_t *bus, int type, kite_key_t key, kite__tramp_fn tramp,
                   void (*fn)(void), void *data, bool responder, kite_sub_t *out) {
  if (fn == NULL || type < -1 || type >= KITE_EV__COUNT)
    return KITE_EINVAL;
  if (bus->closed)
    return KITE_ECLOSED;
  if (responder && type >= 0 && kite__evinfo[type].cls != KITE_EVC_REQUEST)
    return KITE_EINVAL;
  bucket_t *b = NULL;
  if (responder) {
    b = bucket_get(bus, &bus->resp, type, key, true, true);
    if (b == NULL)
      return KITE_ENOMEM;
    for (sub_t *s = b->head; s; s = s->next)
      if (!s->dead)
        return KITE_EEXIST; /* exactly one responder per (type, key) */
  } else if (type >= 0 && key != KITE_KEY_ANY) {
    b = bucket_get(bus, &bus->keyed, type, key, false, true);
    if (b == NULL)
      return KITE_ENOMEM;
  } else if (type >= 0) {
    b = &bus->any[type];
  }
  sub_t *s = calloc(1, sizeof(*s));
  if (s == NULL)
    return KITE_ENOMEM;
  s->id = ++bus->next_sub_id;
  s->type = type;
  s->key = key;
  s->responder = responder;
  s->tramp = tramp;
  s->fn = fn;
  s->data = data;
  s->bucket = b;
  if (b) {
    list_append(&b->head, &b->tail, s);
    b->n++;
    if (!responder && key != KITE_KEY_ANY)
      bus->keyed_n[type]++;
  } else {
    list_append(&bus->all_head, &bus->all_tail, s);
  }
  HASH_ADD(hh, bus->by_id, id, sizeof(s->id), s);
  if (out)
    out->id = s->id;
  return 0;
}

static void generic_tramp(kite_bus_t *bus, const kite_event_t *ev, void (*fn)(void), void *data);

int kite__bus_subscribe_typed(kite_bus_t *bus, int type, kite_key_t key, void (*fn)(void),
                              void *data, bool responder, kite_sub_t *out) {
  return add_sub(bus, type, key, kite__evinfo[type].tramp, fn, data, responder, out);
}

int kite_bus_subscribe(kite_bus_t *bus, int type, kite_key_t key, kite_event_fn fn, void *data,
                       kite_sub_t *out) {
  if ((unsigned)type >= KITE_EV__COUNT)
    return KITE_EINVAL;
  return add_sub(bus, type, key, NULL, (void (*)(void))fn, data, false, out);
}

int kite_bus_subscribe_all(kite_bus_t *bus, kite_event_fn fn, void *data, kite_sub_t *out) {
  return add_sub(bus, -1, KITE_KEY_ANY, NULL, (void (*)(void))fn, data, false, out);
}

int kite_bus_respond(kite_bus_t *bus, int type, kite_key_t key, kite_event_fn fn, void *data,
                     kite_sub_t *out) {
  if ((unsigned)type >= KITE_EV__COUNT)
    return KITE_EINVAL;
  return add_sub(bus, type, key, NULL, (void (*)(void))fn, data, true, out);
}

static void free_sub(kite_bus_t *bus, sub_t *s) {
  bucket_t *b = s->bucket;
  if (b) {
    list_remove(&b->head, &b->tail, s);
    b->n--;
    if (!s->responder && s->key != KITE_KEY_ANY)
      bus->keyed_n[s->type]--;
    if (b->n == 0 && !(b >= bus->any && b < bus->any + KITE_EV__COUNT)) {
      if (s->responder)
        HASH_DELETE(hh, bus->resp, b);
      else
        HASH_DELETE(hh, bus->keyed, b);
      free(b);
    }
  } else {
    list_remove(&bus->all_head, &bus->all_tail, s);
  }
  free(s);
}

void kite_bus_unsubscribe(kite_bus_t *bus, kite_sub_t sub) {
  sub_t *s = NULL;
  HASH_FIND(hh, bus->by_id, &sub.id, sizeof(sub.id), s);
  if (s == NULL || s->dead)
    return;
  HASH_DELETE(hh, bus->by_id, s);
  s->dead = true;
  if (bus->depth > 0) {
    s->zombie_next = bus->zombies;
    bus->zombies = s;
  } else {
    free_sub(bus, s);
  }
}

static void reap_zombies(kite_bus_t *bus) {
  while (bus->zombies) {
    sub_t *s = bus->zombies;
    bus->zombies = s->zombie_next;
    free_sub(bus, s);
  }
}

/* ---- dispatch --------------------------------------------------------------------------- */

static void generic_tramp(kite_bus_t *bus, const kite_event_t *ev, void (*fn)(void), void *data) {
  ((kite_event_fn)fn)(bus, ev, ev->payload, data);
}

static inline void call_sub(kite_bus_t *bus, const kite_event_t *ev, sub_t *s) {
  if (s->tramp)
    s->tramp(bus, ev, s->fn, s->data);
  else
    generic_tramp(bus, ev, s->fn, s->data);
}

static inline void call_list(kite_bus_t *bus, const kite_event_t *ev, sub_t *s, uint64_t limit) {
  for (; s; s = s->next)
    if (!s->dead && s->id <= limit)
      call_sub(bus, ev, s);
}

static void complete_pending(kite_bus_t *bus, pending_t *p, int status, const kite_event_t *ev);

static void deliver(kite_bus_t *bus, const kite_event_t *ev) {
  uint64_t limit = bus->next_sub_id;
  int type = ev->type;
  bus->depth++;
  if (ev->flags & EF_FINAL) {
    pending_t *p = NULL;
    HASH_FIND(hh, bus->pending, &ev->corr, sizeof(ev->corr), p);
    if (p && (!p->canceled || (ev->flags & EF_CANCEL))) {
      int status = 0;
      if (type == KITE_EV_REPLY_ERROR) {
        status = ((const kite_ev_reply_error_t *)ev->payload)->code;
        if (status == 0)
          status = KITE_EINTERNAL;
      }
      complete_pending(bus, p, status, ev);
    }
  }
  if (bus->keyed_n[type]) {
    bkey_t k;
    memset(&k, 0, sizeof(k));
    k.key = ev->key;
    k.type = (uint32_t)type;
    bucket_t *b = NULL;
    HASH_FIND(hh, bus->keyed, &k, sizeof(k), b);
    if (b)
      call_list(bus, ev, b->head, limit);
  }
  call_list(bus, ev, bus->any[type].head, limit);
  call_list(bus, ev, bus->all_head, limit);
  if (kite__evinfo[type].cls == KITE_EVC_REQUEST) {
    bucket_t *b = bucket_get(bus, &bus->resp, type, ev->key, true, false);
    sub_t *r = NULL;
    for (sub_t *s = b ? b->head : NULL; s && !r; s = s->next)
      if (!s->dead)
        r = s;
    if (r == NULL) {
      b = bucket_get(bus, &bus->resp, type, KITE_KEY_ANY, true, false);
      for (sub_t *s = b ? b->head : NULL; s && !r; s = s->next)
        if (!s->dead)
          r = s;
    }
    if (r) {
      call_sub(bus, ev, r);
    } else {
      char msg[160];
      snprintf(msg, sizeof(msg), "no component answers %s requests (key %llu); is the %s "
               "component started?", kite__evinfo[type].name, (unsigned long long)ev->key,
               type == KITE_EV_INSTANCE_LAUNCH || type == KITE_EV_INSTANCE_TERMINATE
                   ? "provider" : "responsible");
      kite_bus_reply_error(bus, ev->corr, KITE_ENORESPONDER, msg);
    }
  }
  if (--bus->depth == 0)
    reap_zombies(bus);
}

static void notify_waiters(kite_bus_t *bus) {
  if (bus->waiters == NULL || queued(bus) > bus->cap / 2)
    return;
  kite_bus_waiter_t *w = bus->waiters;
  bus->waiters = NULL;
  /* Waiters were pushed in front; call them oldest first. */
  kite_bus_waiter_t *rev = NULL;
  while (w) {
    kite_bus_waiter_t *n = w->next_;
    w->next_ = rev;
    rev = w;
    w = n;
  }
  while (rev) {
    kite_bus_waiter_t *n = rev->next_;
    rev->queued_ = 0;
    rev->next_ = NULL;
    rev->cb(bus, rev->data);
    rev = n;
  }
}

/* Delivers one event; returns false when the queue is empty. */
static bool drain_one(kite_bus_t *bus) {
  if (bus->used > 0) {
    if (bus->cap - bus->head < ENTRY_HDR || ((entry_t *)(bus->ring + bus->head))->size == 0) {
      bus->used -= bus->cap - bus->head;
      bus->head = 0;
    }
    entry_t *e = (entry_t *)(bus->ring + bus->head);
    size_t n = e->size;
    deliver(bus, &e->ev);
    bus->head += n;
    bus->used -= n;
    if (bus->head == bus->cap)
      bus->head = 0;
    return true;
  }
  if (bus->ovf_head) {
    ovf_t *o = bus->ovf_head;
    deliver(bus, &o->e.ev);
    bus->ovf_head = o->next;
    if (bus->ovf_head == NULL)
      bus->ovf_tail = NULL;
    bus->ovf_bytes -= o->size;
    free(o);
    return true;
  }
  return false;
}

int kite_bus_drain(kite_bus_t *bus, size_t max) {
  if (bus->depth > 0 || bus->draining)
    return KITE_ERECURSIVE;
  bus->draining++;
  size_t n = 0;
  while ((max == 0 || n < max) && drain_one(bus)) {
    n++;
    if ((n & 255) == 0)
      notify_waiters(bus);
  }
  notify_waiters(bus);
  bus->draining--;
  if (queued(bus) == 0 && bus->idle_on) {
    uv_idle_stop(&bus->idle);
    bus->idle_on = false;
  }
  return 0;
}

static void on_idle(uv_idle_t *h) {
  kite_bus_t *bus = container_of(h, kite_bus_t, idle);
  kite_bus_drain(bus, DRAIN_BATCH);
}

void kite_bus_wait_space(kite_bus_t *bus, kite_bus_waiter_t *w) {
  if (w->queued_)
    return;
  w->queued_ = 1;
  w->next_ = bus->waiters;
  bus->waiters = w;
  if (queued(bus) <= bus->cap / 2)
    start_idle(bus); /* the next drain pass calls it */
}

void kite_bus_wait_cancel(kite_bus_t *bus, kite_bus_waiter_t *w) {
  for (kite_bus_waiter_t **pp = &bus->waiters; *pp; pp = &(*pp)->next_) {
    if (*pp == w) {
      *pp = w->next_;
      w->next_ = NULL;
      w->queued_ = 0;
      return;
    }
  }
}

/* ---- requests --------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h) {
  pending_t *p = h->data;
  kite_bus_t *bus = p->bus;
  free(p);
  if (--bus->timers_open == 0 && bus->closing && bus->closed && bus->close_cb == NULL)
    return;
}

static void release_pending(kite_bus_t *bus, pending_t *p) {
  HASH_DELETE(hh, bus->pending, p);
  if (p->has_timer) {
    uv_timer_stop(&p->timer);
    p->timer.data = p;
    uv_close((uv_handle_t *)&p->timer, on_timer_closed);
  } else {
    free(p);
  }
}

static void complete_pending(kite_bus_t *bus, pending_t *p, int status, const kite_event_t *ev) {
  kite_reply_fn cb = p->cb;
  void *data = p->data;
  release_pending(bus, p);
  cb(bus, status, ev, data);
}

/* Completes p now with an error event built on the stack (timeouts and close). */
static void fail_pending(kite_bus_t *bus, pending_t *p, int code, const char *msg) {
  kite_ev_reply_error_t pl = {.code = code, .message = msg};
  kite_event_t ev = {.type = KITE_EV_REPLY_ERROR,
                     .seq = 0,
                     .ts_ms = kite__wall_ms(),
                     .key = 0,
                     .corr = p->corr,
                     .payload = &pl};
  bus->depth++;
  complete_pending(bus, p, code, &ev);
  if (--bus->depth == 0)
    reap_zombies(bus);
}

static void on_request_timeout(uv_timer_t *t) {
  pending_t *p = container_of(t, pending_t, timer);
  char msg[128];
  snprintf(msg, sizeof(msg), "%s request %llu got no reply in time",
           kite__evinfo[p->type].name, (unsigned long long)p->corr);
  fail_pending(p->bus, p, KITE_ETIMEDOUT, msg);
}

int kite_bus_request(kite_bus_t *bus, int type, const void *payload, uint64_t timeout_ms,
                     kite_reply_fn cb, void *data, uint64_t *corr) {
  if ((unsigned)type >= KITE_EV__COUNT || kite__evinfo[type].cls != KITE_EVC_REQUEST ||
      cb == NULL)
    return KITE_EINVAL;
  if (bus->closed || bus->closing)
    return KITE_ECLOSED;
  pending_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return KITE_ENOMEM;
  p->corr = ++bus->next_corr;
  p->type = type;
  p->cb = cb;
  p->data = data;
  p->bus = bus;
  int rc = enqueue(bus, type, payload, p->corr, 0, false);
  if (rc != 0) {
    free(p);
    return rc;
  }
  HASH_ADD(hh, bus->pending, corr, sizeof(p->corr), p);
  if (timeout_ms > 0) {
    uv_timer_init(bus->loop, &p->timer);
    uv_timer_start(&p->timer, on_request_timeout, timeout_ms, 0);
    p->has_timer = true;
    bus->timers_open++;
  }
  if (corr)
    *corr = p->corr;
  return 0;
}

int kite_bus_reply(kite_bus_t *bus, uint64_t corr, int type, const void *payload) {
  if ((unsigned)type >= KITE_EV__COUNT || kite__evinfo[type].cls == KITE_EVC_REQUEST || corr == 0)
    return KITE_EINVAL;
  return enqueue(bus, type, payload, corr, EF_FINAL, false);
}

int kite_bus_reply_error(kite_bus_t *bus, uint64_t corr, int code, const char *message) {
  if (corr == 0 || code >= 0)
    return KITE_EINVAL;
  kite_ev_reply_error_t pl = {.code = code, .message = message};
  return enqueue(bus, KITE_EV_REPLY_ERROR, &pl, corr, EF_FINAL, false);
}

int kite_bus_cancel(kite_bus_t *bus, uint64_t corr) {
  pending_t *p = NULL;
  HASH_FIND(hh, bus->pending, &corr, sizeof(corr), p);
  if (p == NULL || p->canceled)
    return KITE_ENOENT;
  p->canceled = true;
  if (p->has_timer)
    uv_timer_stop(&p->timer);
  kite_ev_reply_error_t pl = {.code = KITE_ECANCELED, .message = "request canceled"};
  return enqueue(bus, KITE_EV_REPLY_ERROR, &pl, corr, EF_FINAL | EF_CANCEL, false);
}

/* ---- JSON sink -------------------------------------------------------------------------- */

static void json_sink(kite_bus_t *bus, const kite_event_t *ev, const void *payload, void *data) {
  FILE *fp = data;
  (void)payload;
  char *line = kite_event_to_json(bus, ev);
  if (line == NULL)
    return;
  fputs(line, fp);
  fputc('\n', fp);
  fflush(fp);
  free(line);
}

int kite_bus_json_sink(kite_bus_t *bus, FILE *fp, kite_sub_t *out) {
  if (fp == NULL)
    return KITE_EINVAL;
  return kite_bus_subscribe_all(bus, json_sink, fp, out);
}

/* ---- close ------------------------------------------------------------------------------ */

static void on_idle_closed(uv_handle_t *h) {
  kite_bus_t *bus = container_of((uv_idle_t *)h, kite_bus_t, idle);
  if (bus->close_cb) {
    void (*cb)(kite_bus_t *, void *) = bus->close_cb;
    bus->close_cb = NULL;
    cb(bus, bus->close_data);
  }
}

void kite__bus_close(kite_bus_t *bus, void (*cb)(kite_bus_t *bus, void *data), void *data) {
  if (bus->closing)
    return;
  /* Deliver what is queued (a sink sees the last events), then fail what is pending. */
  kite_bus_drain(bus, 0);
  bus->closing = true;
  while (bus->pending)
    fail_pending(bus, bus->pending, KITE_ECANCELED, "the runtime is shutting down");
  kite_bus_drain(bus, 0);
  bus->closed = true;
  bus->close_cb = cb;
  bus->close_data = data;
  if (bus->idle_on)
    uv_idle_stop(&bus->idle);
  bus->idle_on = false;
  uv_close((uv_handle_t *)&bus->idle, on_idle_closed);
}

void kite__bus_free(kite_bus_t *bus) {
  if (bus == NULL)
    return;
  sub_t *s, *tmp;
  HASH_ITER(hh, bus->by_id, s, tmp) {
    HASH_DELETE(hh, bus->by_id, s);
    free_sub(bus, s);
  }
  reap_zombies(bus);
  bucket_t *b, *bt;
  HASH_ITER(hh, bus->keyed, b, bt) {
    HASH_DELETE(hh, bus->keyed, b);
    free(b);
  }
  HASH_ITER(hh, bus->resp, b, bt) {
    HASH_DELETE(hh, bus->resp, b);
    free(b);
  }
  while (bus->ovf_head) {
    ovf_t *o = bus->ovf_head;
    bus->ovf_head = o->next;
    free(o);
  }
  free(bus->ring);
  free(bus);
}
