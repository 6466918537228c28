/* The optimizer: a pool spec's resources, places, allocation and ceilings against the
 * catalog's offers → the candidates, cheapest first, in failover order (DESIGN.md,
 * "Choosing and paying").
 *
 * Design notes
 * - One pass over the offers decides for each whether it fits (and, when it does not, what
 *   made it miss); the fitting ones become candidates (one per way of buying it: spot,
 *   on-demand) and are sorted once. 10,000 offers take well under a millisecond
 *   (bench/optimizer).
 * - Order: the preference group first (ordered accelerators: the first that has an offer
 *   wins, later ones are failover), then, for spot-if-available, spot before on-demand, then
 *   the price, then provider/region/zone/type so that equal prices give one order.
 * - Accelerators match by model (case-insensitive) and exact count, as a request for A100:1
 *   must not buy eight of them.
 * - What it owns: the candidate array it returns. It reacts to nothing and emits nothing. */
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "pool_impl.h"

#define MAX_CANDIDATES 64

static bool listed(const char *const *list, const char *one, const char *s) {
  if (list) {
    for (size_t i = 0; list[i]; i++)
      if (strcmp(list[i], s) == 0)
        return true;
    return false;
  }
  return one == NULL || strcmp(one, s) == 0;
}

/* Which accelerator choice the offer is (its preference group), or -1. */
static int accel_group(const kite_pool_spec_t *ps, const kite_offer_t *o) {
  if (ps->accelerators) {
    for (size_t i = 0; i < ps->n_accelerators; i++)
      if (strcasecmp(ps->accelerators[i].name, o->accelerator) == 0 &&
          o->accelerator_count == ps->accelerators[i].count)
        return ps->accelerators_ordered ? (int)i : 0;
    return -1;
  }
  if (ps->accelerator) {
    unsigned want = ps->accelerator_count ? ps->accelerator_count : 1;
    return strcasecmp(ps->accelerator, o->accelerator) == 0 && o->accelerator_count == want ? 0
                                                                                            : -1;
  }
  return 0;
}

static kite_allocation_t allocation(const kite_pool_spec_t *ps) {
  if (ps->allocation != KITE_ALLOC_DEFAULT)
    return ps->allocation;
  return ps->spot ? KITE_ALLOC_SPOT : KITE_ALLOC_ON_DEMAND;
}

/* What made one offer miss: how many things, and (only when asked: the closest offers of an
 * error message) what, since writing it for each of 10,000 offers would cost more than the
 * whole choice. */
typedef struct misses {
  bool want_text;
  char text[200];
  size_t len;
  unsigned n;
} misses_t;

__attribute__((format(printf, 2, 3))) static void miss(misses_t *m, const char *fmt, ...) {
  m->n++;
  if (!m->want_text || m->len + 3 >= sizeof(m->text))
    return;
  if (m->len)
    m->len += (size_t)snprintf(m->text + m->len, sizeof(m->text) - m->len, "; ");
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(m->text + m->len, sizeof(m->text) - m->len, fmt, ap);
  va_end(ap);
  if (k > 0)
    m->len = m->len + (size_t)k < sizeof(m->text) ? m->len + (size_t)k : sizeof(m->text) - 1;
}

/* What makes o miss the spec (m->n == 0: it fits, in *group). The place is judged first and
 * alone: an offer in a place the spec does not allow is not "close". A region the spec names
 * may be an offer's zone (region: [us-central1-a, us-central1-b] allows those two zones). */
static bool judge(const kite_pool_spec_t *ps, const kite_offer_t *o, misses_t *m, int *group,
                  bool *place_ok) {
  *place_ok = (ps->provider_any || listed(ps->providers, ps->provider, o->provider)) &&
              (listed(ps->regions, ps->region, o->region) ||
               (o->zone[0] && listed(ps->regions, ps->region, o->zone)));
  if (ps->instance_type && strcmp(ps->instance_type, o->instance_type) != 0)
    miss(m, "not %s", ps->instance_type);
  if (ps->cpus && o->vcpus < ps->cpus)
    miss(m, "%u vCPUs < %u", o->vcpus, ps->cpus);
  if (ps->memory_mb && o->memory_mb < ps->memory_mb)
    miss(m, "%.1f GiB memory < %.1f", (double)o->memory_mb / 1024, (double)ps->memory_mb / 1024);
  if (ps->disk_gb && o->disk_gb && o->disk_gb < ps->disk_gb)
    miss(m, "%u GB disk < %u", o->disk_gb, ps->disk_gb);
  *group = accel_group(ps, o);
  if (*group < 0) {
    if (o->accelerator[0]) {
      miss(m, "has %s:%u", o->accelerator, o->accelerator_count);
    } else {
      miss(m, "no accelerator");
      m->n++; /* further from an accelerator than another accelerator is */
    }
  }
  kite_allocation_t a = allocation(ps);
  bool spot_ok = o->spot_price >= 0, od_ok = o->price >= 0;
  if (a == KITE_ALLOC_SPOT && !spot_ok)
    miss(m, "no spot price");
  else if (a == KITE_ALLOC_ON_DEMAND && !od_ok)
    miss(m, "not sold on demand");
  else if (!spot_ok && !od_ok)
    miss(m, "no price");
  double cheapest = a == KITE_ALLOC_SPOT        ? o->spot_price
                    : a == KITE_ALLOC_ON_DEMAND ? o->price
                    : spot_ok && od_ok ? (o->spot_price < o->price ? o->spot_price : o->price)
                    : spot_ok          ? o->spot_price
                                       : o->price;
  if (ps->max_hourly_cost_node && cheapest >= 0 && cheapest > ps->max_hourly_cost_node)
    miss(m, "$%.4f/h > resources.max_hourly_cost $%.4f", cheapest, ps->max_hourly_cost_node);
  if (o->available == 0)
    miss(m, "none available now");
  return m->n == 0 && *place_ok;
}

static int cand_cmp(const void *pa, const void *pb) {
  const kite__cand_t *a = pa, *b = pb;
  if (a->group != b->group)
    return a->group < b->group ? -1 : 1;
  if (a->phase != b->phase)
    return a->phase < b->phase ? -1 : 1;
  if (a->price != b->price)
    return a->price < b->price ? -1 : 1;
  int c = strcmp(a->offer.provider, b->offer.provider);
  if (c == 0)
    c = strcmp(a->offer.region, b->offer.region);
  if (c == 0)
    c = strcmp(a->offer.zone, b->offer.zone);
  if (c == 0)
    c = strcmp(a->offer.instance_type, b->offer.instance_type);
  if (c == 0)
    c = (int)a->spot - (int)b->spot;
  return c;
}

typedef struct close_offer {
  const kite_offer_t *o;
  misses_t m;
} close_offer_t;

/* "resources (4 vCPUs, A100:8, spot) on aws in us-east-1" */
static void describe_want(const kite_pool_spec_t *ps, char *out, size_t size) {
  size_t len = 0;
#define ADD(...)                                                                                   \
  do {                                                                                             \
    int k_ = snprintf(out + len, size - len, __VA_ARGS__);                                         \
    if (k_ > 0)                                                                                    \
      len = len + (size_t)k_ < size ? len + (size_t)k_ : size - 1;                                 \
  } while (0)
  ADD("resources (");
  size_t start = len;
  if (ps->instance_type)
    ADD("%s%s", len > start ? ", " : "", ps->instance_type);
  if (ps->cpus)
    ADD("%s%u vCPUs", len > start ? ", " : "", ps->cpus);
  if (ps->memory_mb)
    ADD("%s%.1f GiB", len > start ? ", " : "", (double)ps->memory_mb / 1024);
  if (ps->accelerator)
    ADD("%s%s:%u", len > start ? ", " : "", ps->accelerator,
        ps->accelerator_count ? ps->accelerator_count : 1);
  for (size_t i = 0; ps->accelerators && i < ps->n_accelerators; i++)
    ADD("%s%s:%u", len > start ? (i ? " or " : ", ") : "", ps->accelerators[i].name,
        ps->accelerators[i].count);
  static const char *const alloc_names[] = {"on-demand", "spot", "on-demand", "spot-if-available",
                                            "cheapest"};
  ADD("%s%s)", len > start ? ", " : "", alloc_names[allocation(ps)]);
  if (ps->provider_any)
    ADD(" on any provider");
  else if (ps->providers)
    for (size_t i = 0; ps->providers[i]; i++)
      ADD("%s%s", i ? ", " : " on ", ps->providers[i]);
  else if (ps->provider)
    ADD(" on %s", ps->provider);
  if (ps->regions)
    for (size_t i = 0; ps->regions[i]; i++)
      ADD("%s%s", i ? ", " : " in ", ps->regions[i]);
  else if (ps->region)
    ADD(" in %s", ps->region);
#undef ADD
}

int kite__optimize(const kite_pool_spec_t *ps, const kite_offer_t *offers, size_t n,
                   kite__cand_t **out, size_t *n_out, char **why) {
  *out = NULL;
  *n_out = 0;
  *why = NULL;
  size_t cap = 64, len = 0;
  kite__cand_t *v = malloc(cap * sizeof(*v));
  close_offer_t closest[3] = {0};
  size_t n_place = 0;
  if (v == NULL)
    return KITE_ENOMEM;
  kite_allocation_t a = allocation(ps);
  for (size_t i = 0; i < n; i++) {
    const kite_offer_t *o = &offers[i];
    misses_t m = {0};
    int group;
    bool place_ok;
    if (!judge(ps, o, &m, &group, &place_ok)) {
      if (!place_ok)
        continue;
      n_place++;
      /* Keep the three closest: fewest misses, then cheapest. */
      double p = o->price >= 0 ? o->price : o->spot_price;
      for (size_t k = 0; k < 3; k++) {
        double q = closest[k].o
                       ? (closest[k].o->price >= 0 ? closest[k].o->price : closest[k].o->spot_price)
                       : 0;
        if (closest[k].o == NULL || m.n < closest[k].m.n || (m.n == closest[k].m.n && p < q)) {
          memmove(&closest[k + 1], &closest[k], (2 - k) * sizeof(closest[0]));
          closest[k] = (close_offer_t){.o = o, .m = m};
          break;
        }
      }
      continue;
    }
    n_place++;
    for (int spot = 0; spot <= 1; spot++) {
      double price = spot ? o->spot_price : o->price;
      if (price < 0 || (spot && a == KITE_ALLOC_ON_DEMAND) || (!spot && a == KITE_ALLOC_SPOT))
        continue;
      if (ps->max_hourly_cost_node && price > ps->max_hourly_cost_node)
        continue;
      if (len == cap) {
        kite__cand_t *g = realloc(v, 2 * cap * sizeof(*v));
        if (g == NULL) {
          free(v);
          return KITE_ENOMEM;
        }
        v = g;
        cap *= 2;
      }
      v[len++] = (kite__cand_t){.offer = *o,
                                .spot = spot,
                                .price = price,
                                .ondemand = o->price,
                                .group = (unsigned)group,
                                .phase = a == KITE_ALLOC_SPOT_IF_AVAILABLE && !spot ? 1 : 0};
    }
  }
  if (len == 0) {
    free(v);
    for (size_t k = 0; k < 3 && closest[k].o; k++) {
      int g;
      bool p;
      closest[k].m = (misses_t){.want_text = true};
      judge(ps, closest[k].o, &closest[k].m, &g, &p);
    }
    char want[400], list[900] = "";
    describe_want(ps, want, sizeof(want));
    size_t off = 0;
    for (size_t k = 0; k < 3 && closest[k].o; k++) {
      const kite_offer_t *o = closest[k].o;
      char type[128];
      int w =
          snprintf(list + off, sizeof(list) - off, "%s%s %s %s (%s)", k ? "; " : "", o->provider,
                   o->region, kite__offer_type(o, type, sizeof(type)), closest[k].m.text);
      if (w > 0)
        off = off + (size_t)w < sizeof(list) ? off + (size_t)w : sizeof(list) - 1;
    }
    if (n == 0)
      *why = kite__sprintf("no offer fits %s: the catalog has no offers (kite offers --refresh "
                           "asks the providers)",
                           want);
    else if (n_place == 0)
      *why = kite__sprintf("no offer fits %s: none of the %zu offers in the catalog is in an "
                           "allowed provider and region; widen provider or region",
                           want, n);
    else
      *why = kite__sprintf("no offer fits %s; the closest of %zu offers there: %s; relax the "
                           "resources, allow more regions or providers, or raise the ceiling",
                           want, n_place, list);
    return KITE_ESPEC;
  }
  qsort(v, len, sizeof(*v), cand_cmp);
  if (len > MAX_CANDIDATES)
    len = MAX_CANDIDATES;
  *out = v;
  *n_out = len;
  return 0;
}

char *kite__cand_name(const kite__cand_t *c) {
  const kite_offer_t *o = &c->offer;
  char type[128];
  return kite__sprintf("%s/%s%s%s/%s%s", o->provider, o->region, o->zone[0] ? "/" : "", o->zone,
                       kite__offer_type(o, type, sizeof(type)), c->spot ? " spot" : "");
}
