/* The cost monitor: what a pool's instances cost, live.
 *
 * It follows one pool through the bus only, by the pool's key:
 *
 *  - instance_created (the create call answered): the instance exists, its bill starts now
 *    (wall-clock time, as a cloud's bill does);
 *  - instance_launched: its price (spot price when spot), its on-demand price and whether it
 *    is spot; an instance reported launched without a created fact (a provider that has no
 *    create step) starts its bill here;
 *  - instance_terminated (the provider confirmed it gone), or its node TERMINATED, or FAILED
 *    while its launch was under way (the launch undid what it created): the bill ends, and the
 *    node's final cost and the pool's are emitted at once.
 *
 * Every interval (one timer per pool, running only while something is billed) it emits a
 * `cost` event per running instance (node != 0) and one for the pool (node 0). Billable time
 * follows the provider's registry row (billing increment and minimum) through kite/cost.h, the
 * same function `kite cost` uses. Instances that ended stay accounted for: the pool's total is
 * everything it ever ran, replaced and preempted instances included, which is what a ceiling on
 * the pool's total cost (kite__cost_total) must read. */

#include "kite/cost.h"
#include "hash.h"
#include "kite/registry.h"
#include "kite_impl.h"
#include "monitors_impl.h"

#define DEFAULT_INTERVAL_MS 60000

typedef struct billed {
  char *instance_id; /* the hash key */
  char *provider;
  uint64_t node;
  uint32_t rank;
  double price, ondemand; /* USD/h; 0 when unknown */
  bool spot;
  unsigned increment_s, minimum_s;
  int64_t start_ms, end_ms; /* wall clock; end_ms 0 while it runs */
  UT_hash_handle hh;
} billed_t;

struct kite__cost {
  kite_runtime_t *rt;
  kite_bus_t *bus;
  uint64_t pool;
  uint64_t interval_ms;
  uv_timer_t *timer; /* freed in its close callback */
  bool ticking;
  unsigned running;
  billed_t *by_id;
  /* Instances forgotten because their id came back as a new instance: their final bills. */
  kite_cost_bill_t forgotten;
  kite_sub_t subs[4];
};

static kite_cost_bill_t bill_of(const billed_t *b, int64_t now) {
  int64_t end = b->end_ms ? b->end_ms : now;
  return kite_cost_bill(end - b->start_ms, b->increment_s, b->minimum_s, b->price, b->ondemand,
                        b->spot);
}

static void add_bill(kite_cost_bill_t *to, kite_cost_bill_t b) {
  to->billable_s += b.billable_s;
  to->cost += b.cost;
  to->savings += b.savings;
}

/* The pool's bill so far, and the rate of what runs now. */
static kite_cost_bill_t pool_bill(const kite__cost_t *c, int64_t now, double *rate) {
  kite_cost_bill_t t = c->forgotten;
  *rate = 0;
  for (const billed_t *b = c->by_id; b; b = b->hh.next) {
    add_bill(&t, bill_of(b, now));
    if (b->end_ms == 0)
      *rate += b->price;
  }
  return t;
}

static void emit_node(kite__cost_t *c, const billed_t *b, int64_t now) {
  kite_cost_bill_t x = bill_of(b, now);
  kite_ev_cost_t e = {.pool = c->pool,
                      .node = b->node,
                      .rank = b->rank,
                      .provider = b->provider,
                      .instance_id = b->instance_id,
                      .rate_hourly = b->end_ms ? 0 : b->price,
                      .billable_s = x.billable_s,
                      .accumulated = x.cost,
                      .savings = x.savings};
  kite_emit_cost(c->bus, &e);
}

static void emit_pool(kite__cost_t *c, int64_t now, const char *provider) {
  double rate;
  kite_cost_bill_t t = pool_bill(c, now, &rate);
  kite_ev_cost_t e = {.pool = c->pool,
                      .provider = provider,
                      .rate_hourly = rate,
                      .billable_s = t.billable_s,
                      .accumulated = t.cost,
                      .savings = t.savings};
  kite_emit_cost(c->bus, &e);
}

static void on_tick(uv_timer_t *t) {
  kite__cost_t *c = t->data;
  int64_t now = (int64_t)kite__wall_ms();
  const char *provider = NULL;
  for (const billed_t *b = c->by_id; b; b = b->hh.next)
    if (b->end_ms == 0) {
      emit_node(c, b, now);
      provider = b->provider;
    }
  emit_pool(c, now, provider);
}

/* The timer runs only while something is billed. */
static void set_ticking(kite__cost_t *c) {
  bool want = c->running > 0;
  if (want == c->ticking)
    return;
  c->ticking = want;
  if (want)
    uv_timer_start(c->timer, on_tick, c->interval_ms, c->interval_ms);
  else
    uv_timer_stop(c->timer);
}

static billed_t *find(kite__cost_t *c, const char *id) {
  billed_t *b = NULL;
  if (id)
    HASH_FIND_STR(c->by_id, id, b);
  return b;
}

static void billed_free(billed_t *b) {
  free(b->instance_id);
  free(b->provider);
  free(b);
}

/* The record of a running instance id, created (its bill starting now) when there is none. */
static billed_t *start(kite__cost_t *c, const char *id, const char *provider, uint64_t node,
                       uint32_t rank) {
  billed_t *b = find(c, id);
  if (b && b->end_ms == 0)
    return b;
  int64_t now = (int64_t)kite__wall_ms();
  if (b) {
    /* The id came back as a new instance: the old one's bill is final. */
    add_bill(&c->forgotten, bill_of(b, now));
    HASH_DEL(c->by_id, b);
    billed_free(b);
  }
  b = calloc(1, sizeof(*b));
  if (b == NULL || (b->instance_id = kite__strdup(id)) == NULL ||
      (b->provider = kite__strdup(provider ? provider : "")) == NULL) {
    if (b)
      billed_free(b);
    kite_log(c->rt, KITE_LOG_ERROR, "cost", "out of memory: instance %s is not accounted for", id);
    return NULL;
  }
  b->node = node;
  b->rank = rank;
  b->start_ms = now;
  const kite_provider_info_t *info = provider ? kite_registry_find(provider) : NULL;
  if (info) {
    b->increment_s = info->billing_increment_s;
    b->minimum_s = info->billing_minimum_s;
  }
  int rc;
  KITE_HASH_TRY(rc, HASH_ADD_KEYPTR(hh, c->by_id, b->instance_id, strlen(b->instance_id), b));
  if (rc != 0) {
    billed_free(b);
    kite_log(c->rt, KITE_LOG_ERROR, "cost", "out of memory: instance %s is not accounted for", id);
    return NULL;
  }
  c->running++;
  set_ticking(c);
  return b;
}

static void end(kite__cost_t *c, billed_t *b) {
  if (b == NULL || b->end_ms)
    return;
  int64_t now = (int64_t)kite__wall_ms();
  b->end_ms = now;
  c->running--;
  set_ticking(c);
  emit_node(c, b, now);
  emit_pool(c, now, b->provider);
}

static void on_created(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_created_t *p,
                       void *data) {
  (void)bus;
  (void)ev;
  if (p->instance_id && *p->instance_id)
    start(data, p->instance_id, p->provider, p->node, p->rank);
}

static void on_launched(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_launched_t *p, void *data) {
  (void)bus;
  (void)ev;
  if (p->instance_id == NULL || *p->instance_id == '\0')
    return;
  billed_t *b = start(data, p->instance_id, p->provider, p->node, p->rank);
  if (b == NULL)
    return;
  b->price = p->price_hourly > 0 ? p->price_hourly : 0;
  b->ondemand = p->ondemand_hourly > 0 ? p->ondemand_hourly : 0;
  b->spot = p->spot;
}

static void on_terminated(kite_bus_t *bus, const kite_event_t *ev,
                          const kite_ev_instance_terminated_t *p, void *data) {
  (void)bus;
  (void)ev;
  end(data, find(data, p->instance_id));
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_node_state_changed_t *p,
                     void *data) {
  kite__cost_t *c = data;
  (void)bus;
  (void)ev;
  if (p->to != KITE_NODE_TERMINATED &&
      !(p->to == KITE_NODE_FAILED && p->from == KITE_NODE_PROVISIONING))
    return;
  billed_t *b, *tmp;
  HASH_ITER(hh, c->by_id, b, tmp) {
    if (b->node == p->node)
      end(c, b);
  }
}

static void on_timer_closed(uv_handle_t *h) {
  free(h);
}

int kite__cost_new(kite_runtime_t *rt, uint64_t pool, uint64_t interval_ms, kite__cost_t **out) {
  kite__cost_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return KITE_ENOMEM;
  c->rt = rt;
  c->bus = kite_runtime_bus(rt);
  c->pool = pool;
  c->interval_ms = interval_ms ? interval_ms : DEFAULT_INTERVAL_MS;
  int rc = (c->timer = malloc(sizeof(*c->timer))) ? 0 : KITE_ENOMEM;
  if (rc == 0) {
    uv_timer_init(kite_runtime_loop(rt), c->timer);
    c->timer->data = c;
    rc = kite_on_instance_created(c->bus, pool, on_created, c, &c->subs[0]);
  }
  if (rc == 0)
    rc = kite_on_instance_launched(c->bus, pool, on_launched, c, &c->subs[1]);
  if (rc == 0)
    rc = kite_on_instance_terminated(c->bus, pool, on_terminated, c, &c->subs[2]);
  if (rc == 0)
    rc = kite_on_node_state_changed(c->bus, pool, on_state, c, &c->subs[3]);
  if (rc != 0) {
    kite__cost_free(c);
    return rc;
  }
  *out = c;
  return 0;
}

double kite__cost_total(const kite__cost_t *c) {
  double rate;
  return c ? pool_bill(c, (int64_t)kite__wall_ms(), &rate).cost : 0;
}

void kite__cost_free(kite__cost_t *c) {
  if (c == NULL)
    return;
  for (size_t k = 0; k < KITE_ARRAY_SIZE(c->subs); k++)
    kite_bus_unsubscribe(c->bus, c->subs[k]);
  if (c->timer)
    uv_close((uv_handle_t *)c->timer, on_timer_closed);
  billed_t *b, *tmp;
  HASH_ITER(hh, c->by_id, b, tmp) {
    HASH_DEL(c->by_id, b);
    billed_free(b);
  }
  free(c);
}
