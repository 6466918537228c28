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
#include "events_impl.h"

/* The tables here are keyed by one or two 8-byte words (ids; a routing key and a type). A
 * multiplicative hash of the words is enough for such keys and much cheaper than uthash's
 * default byte-wise hash; every delivery to a keyed subscriber costs one. uthash picks the
 * bucket from the low bits, so the high half of the last product is returned. */
static inline unsigned word_hash(const void *key, size_t len) {
  const unsigned char *p = key;
  uint64_t h = (uint64_t)len * 0xC2B2AE3D27D4EB4Full;
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h = (h + w) * 0x9E3779B97F4A7C15ull;
  }
  for (; i < len; i++)
    h = (h + p[i]) * 0x9E3779B97F4A7C15ull;
  return (unsigned)(h >> 32);
}
#define HASH_FUNCTION(keyptr, keylen, hashv) ((hashv) = word_hash((keyptr), (size_t)(keylen)))
#include "hash.h"

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define DEFAULT_CAPACITY (8u << 20)
#define DRAIN_BATCH 65536
#define LOOKUP_GROUP 16

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

enum {
  EF_FINAL = 1u,  /* completes the request named by corr */
  EF_CANCEL = 2u, /* the completion caused by kite_bus_cancel */
  EF_QUIET = 4u,  /* a kite_bus_after marker: completes its request, reaches no subscriber */
};

/* The key of a (type, routing key) bucket. Two whole words, built with two stores, so that
 * hashing it right after building it reads what was just written without a stall. */
typedef struct bkey {
  uint64_t key;
  uint64_t kind; /* the type, and bit 32 for the responders' table */
} bkey_t;

static inline bkey_t make_bkey(int type, kite_key_t key, bool responder) {
  bkey_t k = {.key = key, .kind = (uint64_t)(uint32_t)type | (uint64_t)responder << 32};
  return k;
}

typedef struct sub {
  uint64_t id;
  int type; /* -1: every type */
  kite_key_t key;
  bool responder;
  bool dead;
  kite__tramp_fn tramp; /* the typed trampoline, or generic_tramp */
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
  bool wrapped; /* the writer went back to the ring's start: free space is [tail, head) */
  ovf_t *ovf_head, *ovf_tail;
  size_t ovf_bytes;

  uint64_t seq;
  uint64_t next_sub_id;
  uint64_t next_corr;
  int64_t wall_offset_ms; /* wall clock minus uv_now */

  bucket_t *keyed;                /* hash of (type, key) buckets, subscribers */
  bucket_t *resp;                 /* hash of (type, key) responders */
  bucket_t any[KITE_EV__COUNT];   /* (type, any key) subscribers */
  size_t keyed_n[KITE_EV__COUNT]; /* keyed subscribers per type */
  uint64_t keyed_gen;             /* changes when a bucket enters or leaves `keyed` */
  sub_t *all_head, *all_tail;     /* every-type subscribers */
  sub_t *by_id;                   /* every subscription, by id */
  sub_t *zombies;
  int depth; /* dispatch nesting (0 or 1) */
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

kite_runtime_t *kite__bus_runtime(kite_bus_t *bus) {
  return bus->rt;
}

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
    bus->any[t].k = make_bkey(t, KITE_KEY_ANY, false);
  uv_idle_init(bus->loop, &bus->idle);
  *out = bus;
  return 0;
}

/* ---- queue ------------------------------------------------------------------------------ */

static size_t queued(const kite_bus_t *bus) {
  return bus->used + bus->ovf_bytes;
}
size_t kite_bus_queued_bytes(const kite_bus_t *bus) {
  return queued(bus);
}
size_t kite_bus_capacity(const kite_bus_t *bus) {
  return bus->cap;
}
uint64_t kite_bus_emitted(const kite_bus_t *bus) {
  return bus->seq;
}

/* Ring layout. Not wrapped: entries live in [head, tail) and the free space is [tail, cap)
 * plus [0, head). Wrapped: entries live in [head, cap) and [0, tail) and the free space is
 * [tail, head). When the queue empties, head and tail go back to 0 (see drain_one). */

/* Reserves n contiguous bytes in the ring when the fast case does not apply, or returns
 * NULL. */
static unsigned char *ring_reserve_slow(kite_bus_t *bus, size_t n) {
  if (bus->wrapped || bus->head < n)
    return NULL;
  /* Skip the end of the ring and start again at 0; the reader skips it too. */
  size_t waste = bus->cap - bus->tail;
  if (waste >= sizeof(uint32_t))
    ((entry_t *)(bus->ring + bus->tail))->size = 0;
  bus->used += waste + n;
  bus->tail = n;
  bus->wrapped = true;
  return bus->ring;
}

/* Reserves n contiguous bytes in the ring, or returns NULL. */
static inline unsigned char *ring_reserve(kite_bus_t *bus, size_t n) {
  size_t tail = bus->tail;
  size_t end = bus->wrapped ? bus->head : bus->cap;
  if (end - tail >= n) {
    bus->tail = tail + n;
    bus->used += n;
    return bus->ring + tail;
  }
  return ring_reserve_slow(bus, n);
}

static void start_idle(kite_bus_t *bus) {
  if (!bus->idle_on && !bus->closed) {
    uv_idle_start(&bus->idle, on_idle);
    bus->idle_on = true;
  }
}

/* An entry of n bytes when the ring has no room: BULK events are refused, others go to the
 * overflow list. */
static entry_t *enqueue_slow(kite_bus_t *bus, size_t n, bool bulk, int *rc) {
  if (bulk) {
    *rc = KITE_EAGAIN;
    return NULL;
  }
  ovf_t *o = malloc(offsetof(ovf_t, e) + n);
  if (o == NULL) {
    *rc = KITE_ENOMEM;
    return NULL;
  }
  o->next = NULL;
  o->size = n;
  if (bus->ovf_tail)
    bus->ovf_tail->next = o;
  else
    bus->ovf_head = o;
  bus->ovf_tail = o;
  bus->ovf_bytes += n;
  return &o->e;
}

/* Reserves the entry of an event whose payload struct takes `body` bytes and its strings and
 * bytes `extra`, and fills in its header. Returns NULL with *rc set when it is refused. */
static inline entry_t *enqueue_begin(kite_bus_t *bus, int type, size_t body, size_t extra,
                                     kite_key_t key, uint64_t corr, uint32_t flags, bool bulk,
                                     int *rc) {
  size_t n = ALIGN8(ENTRY_HDR + body + extra);
  if (bulk && n > bus->cap / 2) {
    *rc = KITE_E2BIG;
    return NULL;
  }
  entry_t *e = NULL;
  if (bus->ovf_head == NULL && n <= bus->cap)
    e = (entry_t *)ring_reserve(bus, n);
  if (e == NULL) {
    e = enqueue_slow(bus, n, bulk, rc);
    if (e == NULL)
      return NULL;
  }
  e->size = (uint32_t)n;
  e->ev.type = type;
  e->ev.flags = flags;
  e->ev.seq = ++bus->seq;
  e->ev.ts_ms = (uint64_t)((int64_t)uv_now(bus->loop) + bus->wall_offset_ms);
  e->ev.key = key;
  e->ev.corr = corr;
  e->ev.payload = (unsigned char *)e + ENTRY_HDR;
  if (!bus->idle_on)
    start_idle(bus);
  return e;
}

/* Copies an event into the queue: the payload struct, then its strings and bytes. The code
 * is generated per type from the event table, so that sizes, the key field and which fields
 * need copying are known at compile time. The caller has checked that payload is not NULL.
 * A request always has a correlation id: one without (kite_bus_emit of a request type) is
 * refused, since nobody would get its reply. */
static int enqueue(kite_bus_t *bus, int type, const void *payload, uint64_t corr, uint32_t flags,
                   bool may_refuse) {
  int rc = KITE_ECLOSED;
  switch (type) {
#define ENQUEUE_CASE(NAME, nm, cl, keyf)                                                           \
  case KITE_EV_##NAME: {                                                                           \
    if (KITE_EVC_##cl == KITE_EVC_REQUEST && corr == 0)                                            \
      return KITE_EINVAL;                                                                          \
    if (bus->closed)                                                                               \
      return KITE_ECLOSED;                                                                         \
    const kite_ev_##nm##_t *p = payload;                                                           \
    size_t n = 0;                                                                                  \
    KITE_EV_##nm##_FIELDS(KITE__EXTRA)(void) n;                                                    \
    entry_t *e = enqueue_begin(bus, type, ALIGN8(sizeof(*p)), n, KITE__KEY(keyf), corr, flags,     \
                               KITE_EVC_##cl == KITE_EVC_BULK && may_refuse, &rc);                 \
    if (e == NULL)                                                                                 \
      return rc;                                                                                   \
    kite_ev_##nm##_t *d = (kite_ev_##nm##_t *)((unsigned char *)e + ENTRY_HDR);                    \
    char *extra = (char *)d + ALIGN8(sizeof(*p));                                                  \
    *d = *p;                                                                                       \
    KITE_EV_##nm##_FIELDS(KITE__COPY)(void) extra;                                                 \
    return 0;                                                                                      \
  }
    KITE_EVENT_TABLE(ENQUEUE_CASE)
#undef ENQUEUE_CASE
  default:
    return KITE_EINVAL;
  }
}

int kite_bus_emit(kite_bus_t *bus, int type, const void *payload) {
  if (payload == NULL)
    return KITE_EINVAL;
  /* An unknown type, or a request (it needs kite_bus_request: someone must get the reply),
   * gets KITE_EINVAL from enqueue. */
  return enqueue(bus, type, payload, 0, 0, true);
}

/* ---- subscriptions ---------------------------------------------------------------------- */

static bucket_t *bucket_get(kite_bus_t *bus, bucket_t **table, int type, kite_key_t key,
                            bool responder, bool create) {
  bkey_t k = make_bkey(type, key, responder);
  bucket_t *b = NULL;
  HASH_FIND(hh, *table, &k, sizeof(k), b);
  if (b == NULL && create) {
    b = calloc(1, sizeof(*b));
    if (b == NULL)
      return NULL;
    b->k = k;
    int rc;
    KITE_HASH_TRY(rc, HASH_ADD(hh, *table, k, sizeof(k), b));
    if (rc != 0) {
      free(b);
      return NULL;
    }
    if (table == &bus->keyed)
      bus->keyed_gen++;
  }
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

static void generic_tramp(kite_bus_t *bus, const kite_event_t *ev, void (*fn)(void), void *data);

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
  s->tramp = tramp ? tramp : generic_tramp;
  s->fn = fn;
  s->data = data;
  s->bucket = b;
  int rc;
  KITE_HASH_TRY(rc, HASH_ADD(hh, bus->by_id, id, sizeof(s->id), s));
  if (rc != 0) {
    free(s);
    return rc;
  }
  if (b) {
    list_append(&b->head, &b->tail, s);
    b->n++;
    if (!responder && key != KITE_KEY_ANY)
      bus->keyed_n[type]++;
  } else {
    list_append(&bus->all_head, &bus->all_tail, s);
  }
  if (out)
    out->id = s->id;
  return 0;
}

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
      if (s->responder) {
        HASH_DELETE(hh, bus->resp, b);
      } else {
        HASH_DELETE(hh, bus->keyed, b);
        bus->keyed_gen++;
      }
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
  s->tramp(bus, ev, s->fn, s->data);
}

static inline void call_list(kite_bus_t *bus, const kite_event_t *ev, sub_t *s, uint64_t limit) {
  for (; s; s = s->next)
    if (!s->dead && s->id <= limit)
      call_sub(bus, ev, s);
}

static void complete_pending(kite_bus_t *bus, pending_t *p, int status, const kite_event_t *ev);

/* Completes the pending request that a reply (a FINAL event) answers. */
static void deliver_final(kite_bus_t *bus, const kite_event_t *ev) {
  pending_t *p = NULL;
  HASH_FIND(hh, bus->pending, &ev->corr, sizeof(ev->corr), p);
  if (p && (!p->canceled || (ev->flags & EF_CANCEL))) {
    int status = 0;
    if (ev->type == KITE_EV_REPLY_ERROR) {
      status = ((const kite_ev_reply_error_t *)ev->payload)->code;
      if (status == 0)
        status = KITE_EINTERNAL;
    }
    complete_pending(bus, p, status, ev);
  }
}

/* Hands a request to its responder, or answers it with a no-responder error. */
static void deliver_request(kite_bus_t *bus, const kite_event_t *ev) {
  int type = ev->type;
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
    snprintf(msg, sizeof(msg),
             "no component answers %s requests (key %llu); is the %s "
             "component started?",
             kite__evinfo[type].name, (unsigned long long)ev->key,
             type == KITE_EV_INSTANCE_LAUNCH || type == KITE_EV_INSTANCE_TERMINATE ? "provider"
                                                                                   : "responsible");
    kite_bus_reply_error(bus, ev->corr, KITE_ENORESPONDER, msg);
  }
}

/* Delivers ev. When found is true, b is its keyed bucket (or NULL for none), looked up ahead
 * of time by lookup_group() and still valid. */
static inline void deliver(kite_bus_t *bus, const kite_event_t *ev, bool found, bucket_t *b) {
  uint64_t limit = bus->next_sub_id;
  int type = ev->type;
  bus->depth++;
  /* Only requests and replies have a correlation id; replies are FINAL. */
  bool request = false;
  if (ev->corr) {
    if (ev->flags & EF_FINAL)
      deliver_final(bus, ev);
    else
      request = true;
  }
  if (ev->flags & EF_QUIET) {
    if (--bus->depth == 0 && bus->zombies)
      reap_zombies(bus);
    return;
  }
  if (bus->keyed_n[type]) {
    if (!found) {
      bkey_t k = make_bkey(type, ev->key, false);
      HASH_FIND(hh, bus->keyed, &k, sizeof(k), b);
    }
    if (b)
      call_list(bus, ev, b->head, limit);
  }
  call_list(bus, ev, bus->any[type].head, limit);
  if (bus->all_head)
    call_list(bus, ev, bus->all_head, limit);
  if (request)
    deliver_request(bus, ev);
  if (--bus->depth == 0 && bus->zombies)
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

/* Delivers the oldest overflow entry; returns false when there is none. */
static bool drain_ovf(kite_bus_t *bus) {
  if (bus->ovf_head) {
    ovf_t *o = bus->ovf_head;
    deliver(bus, &o->e.ev, false, NULL);
    bus->ovf_head = o->next;
    if (bus->ovf_head == NULL)
      bus->ovf_tail = NULL;
    bus->ovf_bytes -= o->size;
    free(o);
    return true;
  }
  return false;
}

/* Keyed lookups of the next queued events, done ahead of their delivery. */
typedef struct group {
  int n, next;  /* entries looked up; the next one to deliver */
  int left;     /* deliveries until the next group is due */
  uint64_t gen; /* bus->keyed_gen when looked up */
  const entry_t *e[LOOKUP_GROUP];
  bucket_t *b[LOOKUP_GROUP];
} group_t;

/* With thousands of keys, a keyed delivery is bound by memory latency rather than work: the
 * hash slot, each bucket on its chain, the subscriber and its data are each likely a cache
 * miss, and each depends on the one before. So the lookups of the next few queued events are
 * done together, one chain step per event per round with a prefetch of the next step, and
 * their misses overlap instead of following one another. The result is used at delivery
 * only if no bucket was added or removed since (keyed_gen); a handler that subscribes to or
 * unsubscribes from an existing bucket needs no new lookup, since the bucket's list is read
 * at delivery. This walks uthash's chains itself, through the fields uthash.h declares
 * (buckets, hh_head, hh_next, hashv, key), with the same comparison HASH_FIND makes. */
static void lookup_group(kite_bus_t *bus, group_t *g) {
  UT_hash_table *tbl = bus->keyed->hh.tbl;
  bkey_t keys[LOOKUP_GROUP];
  unsigned hv[LOOKUP_GROUP];
  const UT_hash_handle *h[LOOKUP_GROUP];
  int n = 0, scanned = 0;
  size_t pos = bus->head;
  size_t end = bus->wrapped ? bus->cap : bus->tail;
  while (scanned < LOOKUP_GROUP && end - pos >= ENTRY_HDR) {
    const entry_t *e = (const entry_t *)(bus->ring + pos);
    if (e->size == 0)
      break; /* the writer skipped the ring's end: leave the rest to the next group */
    pos += e->size;
    scanned++;
    if (bus->keyed_n[e->ev.type] == 0)
      continue;
    keys[n] = make_bkey(e->ev.type, e->ev.key, false);
    HASH_VALUE(&keys[n], sizeof(keys[n]), hv[n]);
    PREFETCH(&tbl->buckets[hv[n] & (tbl->num_buckets - 1u)]);
    g->e[n] = e;
    n++;
  }
  for (int i = 0; i < n; i++) {
    h[i] = tbl->buckets[hv[i] & (tbl->num_buckets - 1u)].hh_head;
    g->b[i] = NULL;
    if (h[i]) {
      PREFETCH(h[i]);
      PREFETCH(ELMT_FROM_HH(tbl, h[i]));
    }
  }
  for (int active = n; active > 0;) {
    active = 0;
    for (int i = 0; i < n; i++) {
      if (h[i] == NULL)
        continue;
      if (h[i]->hashv == hv[i] && h[i]->keylen == sizeof(bkey_t) &&
          memcmp(h[i]->key, &keys[i], sizeof(bkey_t)) == 0) {
        bucket_t *b = ELMT_FROM_HH(tbl, h[i]);
        g->b[i] = b;
        h[i] = NULL;
        if (b->head)
          PREFETCH(b->head);
        continue;
      }
      h[i] = h[i]->hh_next;
      if (h[i]) {
        PREFETCH(h[i]);
        PREFETCH(ELMT_FROM_HH(tbl, h[i]));
        active++;
      }
    }
  }
  /* The handler's data, now that the subscribers are on their way in. */
  for (int i = 0; i < n; i++)
    if (g->b[i] && g->b[i]->head)
      PREFETCH(g->b[i]->head->data);
  g->n = n;
  g->next = 0;
  g->left = scanned > 0 ? scanned : 1;
  g->gen = bus->keyed_gen;
}

/* Delivers one event; returns false when the queue is empty. g holds lookups done ahead. */
static inline bool drain_one(kite_bus_t *bus, group_t *g) {
  if (g->left == 0) {
    g->n = g->next = 0;
    g->left = LOOKUP_GROUP;
    if (bus->keyed != NULL && bus->used > 0)
      lookup_group(bus, g);
  }
  g->left--;
  if (bus->used == 0)
    return drain_ovf(bus);
  if (bus->wrapped &&
      (bus->cap - bus->head < ENTRY_HDR || ((entry_t *)(bus->ring + bus->head))->size == 0)) {
    /* The writer skipped the ring's end here (only a writer that wrapped skips). */
    bus->used -= bus->cap - bus->head;
    bus->head = 0;
    bus->wrapped = false;
  }
  entry_t *e = (entry_t *)(bus->ring + bus->head);
  size_t n = e->size;
  bool found = false;
  bucket_t *b = NULL;
  if (g->next < g->n && g->e[g->next] == e) {
    found = g->gen == bus->keyed_gen;
    b = g->b[g->next++];
  }
  deliver(bus, &e->ev, found, b);
  bus->head += n;
  bus->used -= n;
  if (bus->used == 0) {
    bus->head = bus->tail = 0;
    bus->wrapped = false;
  } else if (bus->head == bus->cap) {
    bus->head = 0;
    bus->wrapped = false;
  }
  return true;
}

int kite_bus_drain(kite_bus_t *bus, size_t max) {
  if (bus->depth > 0 || bus->draining)
    return KITE_ERECURSIVE;
  bus->draining++;
  size_t n = 0;
  group_t g;
  g.n = g.next = g.left = 0;
  g.gen = 0;
  while ((max == 0 || n < max) && drain_one(bus, &g)) {
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
  snprintf(msg, sizeof(msg), "%s request %llu got no reply in time", kite__evinfo[p->type].name,
           (unsigned long long)p->corr);
  fail_pending(p->bus, p, KITE_ETIMEDOUT, msg);
}

/* Records a pending request of type and queues its event (the request itself, or a
 * kite_bus_after marker): the one place a correlation id is made. */
static int pending_start(kite_bus_t *bus, int type, const void *payload, uint32_t flags,
                         kite_reply_fn cb, void *data, pending_t **out) {
  pending_t *p = calloc(1, sizeof(*p));
  if (p == NULL)
    return KITE_ENOMEM;
  p->corr = ++bus->next_corr;
  p->type = type;
  p->cb = cb;
  p->data = data;
  p->bus = bus;
  int rc;
  KITE_HASH_TRY(rc, HASH_ADD(hh, bus->pending, corr, sizeof(p->corr), p));
  if (rc == 0 && (rc = enqueue(bus, type, payload, p->corr, flags, false)) != 0)
    HASH_DEL(bus->pending, p);
  if (rc != 0) {
    free(p);
    return rc;
  }
  *out = p;
  return 0;
}

int kite_bus_request(kite_bus_t *bus, int type, const void *payload, uint64_t timeout_ms,
                     kite_reply_fn cb, void *data, uint64_t *corr) {
  if ((unsigned)type >= KITE_EV__COUNT || kite__evinfo[type].cls != KITE_EVC_REQUEST ||
      cb == NULL || payload == NULL)
    return KITE_EINVAL;
  if (bus->closed || bus->closing)
    return KITE_ECLOSED;
  pending_t *p = NULL;
  int rc = pending_start(bus, type, payload, 0, cb, data, &p);
  if (rc != 0)
    return rc;
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

int kite_bus_after(kite_bus_t *bus, kite_reply_fn cb, void *data, uint64_t *corr) {
  if (cb == NULL)
    return KITE_EINVAL;
  if (bus->closed || bus->closing)
    return KITE_ECLOSED;
  kite_ev_done_t d = {.id = bus->next_corr + 1}; /* the marker names its own request */
  pending_t *p = NULL;
  int rc = pending_start(bus, KITE_EV_DONE, &d, EF_FINAL | EF_QUIET, cb, data, &p);
  if (rc == 0 && corr)
    *corr = p->corr;
  return rc;
}

int kite_bus_reply(kite_bus_t *bus, uint64_t corr, int type, const void *payload) {
  if ((unsigned)type >= KITE_EV__COUNT || kite__evinfo[type].cls == KITE_EVC_REQUEST || corr == 0 ||
      payload == NULL)
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
