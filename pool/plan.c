/* The pool's plan: where each rank launches, and where it goes when a cloud says no
 * (DESIGN.md, "Choosing and paying").
 *
 * Design notes
 * - A plan is made once, at open (and by kite_pool_plan for a dry run): when the spec asks
 *   kite to choose (resources, several providers or regions, an allocation strategy, a
 *   ceiling), the catalog (catalog.h) gives the offers and the optimizer the candidates;
 *   otherwise the spec's own provider, region and type are the one candidate, as before.
 * - Sites: each (provider, region) of the candidates has its reach record (what another
 *   process needs to find the instance), resolved by the provider before any launch there,
 *   so every launch record carries it. A site that cannot be resolved takes its candidates
 *   out with its message.
 * - Failover: a launch refused for capacity, quota, price or an unavailable type blocks its
 *   candidate for every node (quota: every candidate of that provider; with
 *   spot-if-available, spot without capacity: every spot candidate of its region) for
 *   failover_block_ms, and the node takes the next candidate that is not blocked, in the
 *   optimizer's order, with a launch_failover event; after failover_attempts launches or
 *   failover_timeout_ms it fails with the whole trail. A replacement starts again from the
 *   rank's planned candidate.
 * - What it owns: its copy of what it needs of the spec (the spec is only borrowed during
 *   open), the candidates, the sites. It emits reach_resolve requests, pool_planned and
 *   launch_failover. */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>

#include "kite/catalog.h"
#include "kite/registry.h"
#include "pool_impl.h"

#define BLOCK_MS (5 * 60 * 1000ull)
#define ATTEMPTS 12
#define FAILOVER_TIMEOUT_MS (15 * 60 * 1000ull)

/* ---- a private copy of the spec's choosing part ------------------------------------------- */

static char *own(kite__plan_t *pl, const char *s) {
  if (s == NULL)
    return NULL;
  char *c = kite__strdup(s);
  if (c == NULL || pl->n_owned == KITE_ARRAY_SIZE(pl->owned)) {
    free(c);
    pl->oom = true;
    return NULL;
  }
  pl->owned[pl->n_owned++] = c;
  return c;
}

static const char *const *own_list(kite__plan_t *pl, const char *const *list) {
  if (list == NULL)
    return NULL;
  size_t n = 0;
  while (list[n])
    n++;
  char **v = calloc(n + 1, sizeof(*v));
  if (v == NULL || pl->n_owned == KITE_ARRAY_SIZE(pl->owned)) {
    free(v);
    pl->oom = true;
    return NULL;
  }
  pl->owned[pl->n_owned++] = (char *)v;
  for (size_t i = 0; i < n; i++)
    v[i] = own(pl, list[i]);
  return (const char *const *)v;
}

static void copy_want(kite__plan_t *pl, const kite_pool_spec_t *s) {
  kite_pool_spec_t *w = &pl->want;
  *w = (kite_pool_spec_t){0};
  w->name = own(pl, s->name);
  w->nodes = s->nodes;
  w->provider = own(pl, s->provider);
  w->providers = own_list(pl, s->providers);
  w->provider_any = s->provider_any;
  w->region = own(pl, s->region);
  w->regions = own_list(pl, s->regions);
  w->instance_type = own(pl, s->instance_type);
  w->image = own(pl, s->image);
  w->spot = s->spot;
  w->allocation = s->allocation;
  w->cpus = s->cpus;
  w->memory_mb = s->memory_mb;
  w->disk_gb = s->disk_gb;
  w->accelerator = own(pl, s->accelerator);
  w->accelerator_count = s->accelerator_count;
  w->max_hourly_cost_node = s->max_hourly_cost_node;
  w->max_hourly_cost = s->max_hourly_cost;
  w->provider_options = own(pl, s->provider_options);
  if (s->accelerators && s->n_accelerators) {
    kite_accelerator_choice_t *a = calloc(s->n_accelerators, sizeof(*a));
    if (a == NULL || pl->n_owned == KITE_ARRAY_SIZE(pl->owned)) {
      free(a);
      pl->oom = true;
      return;
    }
    pl->owned[pl->n_owned++] = (char *)a;
    for (size_t i = 0; i < s->n_accelerators; i++)
      a[i] =
          (kite_accelerator_choice_t){own(pl, s->accelerators[i].name), s->accelerators[i].count};
    w->accelerators = a;
    w->n_accelerators = s->n_accelerators;
    w->accelerators_ordered = s->accelerators_ordered;
  }
  pl->block_ms = s->failover_block_ms ? s->failover_block_ms : BLOCK_MS;
  pl->attempts = s->failover_attempts ? s->failover_attempts : ATTEMPTS;
  pl->timeout_ms = s->failover_timeout_ms ? s->failover_timeout_ms : FAILOVER_TIMEOUT_MS;
}

bool kite__plan_chooses(const kite_pool_spec_t *s) {
  return s->cpus || s->memory_mb || s->accelerator || s->accelerators || s->provider_any ||
         (s->providers && s->providers[0] && s->providers[1]) || s->regions ||
         s->allocation == KITE_ALLOC_SPOT_IF_AVAILABLE || s->allocation == KITE_ALLOC_CHEAPEST ||
         s->max_hourly_cost_node > 0 || s->max_hourly_cost > 0;
}

/* The provider options for one provider: the spec's own, or, with several providers, the
 * object under its name. Malloc'd or NULL. */
static char *options_for(const kite__plan_t *pl, const char *provider) {
  const char *o = pl->want.provider_options;
  if (o == NULL)
    return NULL;
  if (!pl->multi)
    return kite__strdup(o);
  json_t *j = json_loads(o, 0, NULL);
  json_t *sub = json_object_get(j, provider);
  char *s = json_is_object(sub) ? json_dumps(sub, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

kite__plan_t *kite__plan_new(kite_runtime_t *rt, const kite_pool_spec_t *spec) {
  kite__plan_t *pl = calloc(1, sizeof(*pl));
  if (pl == NULL)
    return NULL;
  pl->rt = rt;
  pl->bus = kite_runtime_bus(rt);
  pl->chooses = kite__plan_chooses(spec);
  pl->multi = spec->provider_any || (spec->providers && spec->providers[0] && spec->providers[1]);
  copy_want(pl, spec);
  if (pl->oom) {
    kite__plan_free(pl);
    return NULL;
  }
  return pl;
}

void kite__plan_free(kite__plan_t *pl) {
  if (pl == NULL)
    return;
  for (size_t i = 0; i < pl->n_sites; i++) {
    kite__site_t *s = &pl->sites[i];
    if (s->corr)
      kite_bus_cancel(pl->bus, s->corr);
    free(s->provider);
    free(s->region);
    free(s->options);
    free(s->reach);
    free(s->message);
  }
  free(pl->sites);
  free(pl->cands);
  free(pl->site_of);
  free(pl->blocked_until);
  for (size_t i = 0; pl->blocked_why && i < pl->n; i++)
    free(pl->blocked_why[i]);
  free(pl->blocked_why);
  free(pl->rank_cand);
  free(pl->message);
  for (size_t i = 0; i < pl->n_owned; i++)
    free(pl->owned[i]);
  free(pl);
}

/* ---- making it --------------------------------------------------------------------------------
 */

static void plan_done(kite__plan_t *pl, int status, char *message) {
  if (status && pl->status == 0) {
    pl->status = status;
    free(pl->message);
    pl->message = message;
  } else {
    free(message);
  }
  pl->making = false;
  if (pl->done)
    pl->done(pl, pl->status, pl->done_data);
}

static void maybe_resolved(kite__plan_t *pl) {
  for (size_t i = 0; i < pl->n_sites; i++)
    if (pl->sites[i].corr)
      return;
  /* Every candidate of a site that cannot be reached is out, with the site's message. */
  bool any = false;
  for (size_t i = 0; i < pl->n; i++) {
    kite__site_t *s = &pl->sites[pl->site_of[i]];
    if (s->status && pl->blocked_why[i] == NULL) {
      pl->blocked_until[i] = UINT64_MAX;
      pl->blocked_why[i] = kite__strdup(s->message ? s->message : kite_strerror(s->status));
    }
    any |= s->status == 0;
  }
  if (!any && pl->n_sites) {
    kite__site_t *s = &pl->sites[0];
    char *m = kite__sprintf("cannot tell where %s would launch it: %s", s->provider,
                            s->message ? s->message : kite_strerror(s->status));
    plan_done(pl, s->status, m);
    return;
  }
  plan_done(pl, 0, NULL);
}

static char *plain_reach(const char *provider) {
  json_t *j = json_pack("{s:s}", "provider", provider);
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  json_decref(j);
  return s;
}

static void on_reach(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  kite__site_t *s = data;
  kite__plan_t *pl = s->plan;
  (void)bus;
  s->corr = 0;
  if (status == KITE_ECANCELED)
    return; /* the plan is being freed */
  const kite_ev_reach_t *r = kite_ev_as_reach(ev);
  if (status == 0 && r && r->reach) {
    s->reach = kite__strdup(r->reach);
  } else if (status == KITE_ENORESPONDER) {
    /* A provider that keeps nothing to reach (a test's own) gets a record of its name. */
    s->reach = plain_reach(s->provider);
  } else {
    const kite_ev_reply_error_t *e = kite_ev_as_reply_error(ev);
    s->status = status ? status : KITE_EPROVIDER;
    s->message = kite__strdup(e && e->message ? e->message : kite_strerror(status));
  }
  if (s->reach == NULL && s->status == 0)
    s->status = KITE_ENOMEM;
  maybe_resolved(pl);
}

/* The sites of the candidates, each asked for its reach record. */
static int resolve_sites(kite__plan_t *pl) {
  pl->sites = calloc(pl->n ? pl->n : 1, sizeof(*pl->sites));
  pl->site_of = calloc(pl->n ? pl->n : 1, sizeof(*pl->site_of));
  pl->blocked_until = calloc(pl->n ? pl->n : 1, sizeof(*pl->blocked_until));
  pl->blocked_why = calloc(pl->n ? pl->n : 1, sizeof(*pl->blocked_why));
  if (!pl->sites || !pl->site_of || !pl->blocked_until || !pl->blocked_why)
    return KITE_ENOMEM;
  for (size_t i = 0; i < pl->n; i++) {
    const kite_offer_t *o = &pl->cands[i].offer;
    size_t k = 0;
    while (k < pl->n_sites && !(strcmp(pl->sites[k].provider, o->provider) == 0 &&
                                strcmp(pl->sites[k].region, o->region) == 0))
      k++;
    if (k == pl->n_sites) {
      kite__site_t *s = &pl->sites[pl->n_sites++];
      s->plan = pl;
      s->provider = kite__strdup(o->provider);
      s->region = kite__strdup(o->region);
      s->options = options_for(pl, o->provider);
      if (s->provider == NULL || s->region == NULL)
        return KITE_ENOMEM;
    }
    pl->site_of[i] = k;
  }
  /* All asked first, so that no answer (queued, never inside the request) finds a later site
   * still unasked. */
  for (size_t k = 0; k < pl->n_sites; k++) {
    kite__site_t *s = &pl->sites[k];
    kite_ev_reach_resolve_t rr = {
        .provider = s->provider, .region = s->region[0] ? s->region : NULL, .options = s->options};
    int rc = kite_request_reach_resolve(pl->bus, &rr, 0, on_reach, s, &s->corr);
    if (rc != 0) {
      s->corr = 0;
      s->status = rc == KITE_ENOMEM ? KITE_ENOMEM : KITE_EINTERNAL;
      s->message = kite__strdup("cannot ask the provider where it launches");
    }
  }
  maybe_resolved(pl);
  return 0;
}

/* Every rank gets the first candidate, but no candidate more ranks than it has available. */
static void assign_ranks(kite__plan_t *pl) {
  size_t c = 0;
  unsigned used = 0;
  pl->hourly = 0;
  for (unsigned r = 0; r < pl->want.nodes; r++) {
    while (c + 1 < pl->n && pl->cands[c].offer.available > 0 &&
           used >= (unsigned)pl->cands[c].offer.available) {
      c++;
      used = 0;
    }
    pl->rank_cand[r] = (unsigned)c;
    used++;
    pl->hourly += pl->cands[c].price > 0 ? pl->cands[c].price : 0;
  }
}

static void on_catalog(int status, const kite_offer_t *offers, size_t n, const char *message,
                       void *data) {
  kite__plan_t *pl = data;
  if (status != 0) {
    plan_done(pl, status,
              kite__sprintf("cannot read the providers' catalogs: %s",
                            message ? message : kite_strerror(status)));
    return;
  }
  if (message)
    kite_log(pl->rt, KITE_LOG_WARN, "pool", "pool %s: %s", pl->want.name, message);
  char *why = NULL;
  int rc = kite__optimize(&pl->want, offers, n, &pl->cands, &pl->n, &why);
  if (rc != 0) {
    plan_done(pl, rc, why ? kite__sprintf("pool %s: %s", pl->want.name, why) : NULL);
    free(why);
    return;
  }
  pl->rank_cand = calloc(pl->want.nodes ? pl->want.nodes : 1, sizeof(*pl->rank_cand));
  if (pl->rank_cand == NULL) {
    plan_done(pl, KITE_ENOMEM, NULL);
    return;
  }
  assign_ranks(pl);
  if (pl->want.max_hourly_cost > 0 && pl->hourly > pl->want.max_hourly_cost + 1e-9) {
    plan_done(pl, KITE_EPRICE,
              kite__sprintf("pool %s: the cheapest plan costs $%.4f/h for %u nodes (%s at "
                            "$%.4f/h), above max_hourly_cost $%.4f; raise the ceiling or ask for "
                            "fewer or smaller nodes; nothing was launched",
                            pl->want.name, pl->hourly, pl->want.nodes,
                            pl->cands[0].offer.instance_type, pl->cands[0].price,
                            pl->want.max_hourly_cost));
    return;
  }
  if (resolve_sites(pl) != 0)
    plan_done(pl, KITE_ENOMEM, NULL);
}

/* The spec's own provider, region and type: one candidate. */
static int plain_plan(kite__plan_t *pl) {
  pl->cands = calloc(1, sizeof(*pl->cands));
  pl->rank_cand = calloc(pl->want.nodes ? pl->want.nodes : 1, sizeof(*pl->rank_cand));
  if (pl->cands == NULL || pl->rank_cand == NULL)
    return KITE_ENOMEM;
  kite__cand_t *c = &pl->cands[0];
  kite_offer_t *o = &c->offer;
  const char *provider = pl->want.provider ? pl->want.provider : kite_registry_default()->name;
  int rc = KITE_OFFER_SET(o, provider, provider);
  if (rc == 0)
    rc = KITE_OFFER_SET(o, region, pl->want.region);
  if (rc == 0)
    rc = KITE_OFFER_SET(o, instance_type, pl->want.instance_type);
  if (rc != 0) {
    pl->status = KITE_ESPEC;
    pl->message =
        kite__sprintf("pool %s: the provider, region or instance type is too long", pl->want.name);
    return KITE_ESPEC;
  }
  c->spot = pl->want.spot || pl->want.allocation == KITE_ALLOC_SPOT;
  c->price = 0;
  c->ondemand = -1;
  pl->n = 1;
  return resolve_sites(pl);
}

int kite__plan_make(kite__plan_t *pl, void (*done)(kite__plan_t *, int, void *), void *data) {
  pl->done = done;
  pl->done_data = data;
  pl->making = true;
  if (!pl->chooses) {
    int rc = plain_plan(pl);
    if (rc != 0)
      pl->making = false;
    return rc;
  }
  /* One provider's options are its own; several providers' are under their names. */
  const char *one[2] = {pl->want.provider, NULL};
  char *wrapped = NULL;
  if (!pl->multi && pl->want.provider_options && pl->want.provider)
    wrapped = kite__sprintf("{\"%s\":%s}", pl->want.provider, pl->want.provider_options);
  kite_catalog_query_t q = {.providers = pl->want.provider_any ? NULL
                                         : pl->want.providers  ? pl->want.providers
                                         : pl->want.provider   ? one
                                                               : NULL,
                            .options = pl->multi ? pl->want.provider_options : wrapped};
  const char *def[2] = {kite_registry_default()->name, NULL};
  if (q.providers == NULL && !pl->want.provider_any)
    q.providers = def;
  /* any: the configured providers with a catalog that can boot without an image named. */
  const char *any[33] = {0};
  if (pl->want.provider_any) {
    size_t k = 0;
    for (size_t i = 0; kite_registry_at(i) && k + 1 < KITE_ARRAY_SIZE(any); i++) {
      const kite_provider_info_t *p = kite_registry_at(i);
      if (p->catalog && !p->needs_image && p->configured && p->configured())
        any[k++] = p->name;
    }
    if (k == 0) {
      free(wrapped);
      pl->making = false;
      pl->status = KITE_ECREDENTIALS;
      pl->message = kite__sprintf("pool %s: provider: any, and no provider with a catalog finds "
                                  "credentials here; set one's credentials (kite providers says "
                                  "where each looks) or name the providers",
                                  pl->want.name);
      plan_done(pl, pl->status, NULL);
      return 0;
    }
    q.providers = any;
  }
  int rc = kite_catalog_get(pl->rt, &q, on_catalog, pl);
  free(wrapped);
  if (rc != 0)
    pl->making = false;
  return rc;
}

/* ---- its JSON form ------------------------------------------------------------------------- */

static json_t *cand_json(const kite__cand_t *c) {
  const kite_offer_t *o = &c->offer;
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:f, s:o, s:I, s:I, s:s, s:I}", "provider",
                   o->provider, "region", o->region, "zone", o->zone, "instance_type",
                   o->instance_type, "accelerator", o->accelerator, "accelerator_count",
                   (json_int_t)(o->accelerator[0] ? o->accelerator_count : 0), "spot", c->spot,
                   "price", c->price, "ondemand_price",
                   c->ondemand >= 0 ? json_real(c->ondemand) : json_null(), "vcpus",
                   (json_int_t)o->vcpus, "memory_mb", (json_int_t)o->memory_mb, "source", o->source,
                   "fetched_ms", (json_int_t)o->fetched_ms);
}

char *kite__plan_json(const kite__plan_t *pl) {
  json_t *ranks = json_array(), *cands = json_array();
  for (unsigned r = 0; pl->rank_cand && r < pl->want.nodes; r++) {
    json_t *j = cand_json(&pl->cands[pl->rank_cand[r]]);
    json_object_set_new(j, "rank", json_integer(r));
    json_array_append_new(ranks, j);
  }
  for (size_t i = 0; i < pl->n; i++)
    json_array_append_new(cands, cand_json(&pl->cands[i]));
  json_t *top =
      json_pack("{s:s, s:I, s:o, s:o, s:f, s:b}", "pool", pl->want.name ? pl->want.name : "",
                "nodes", (json_int_t)pl->want.nodes, "ranks", ranks, "candidates", cands, "hourly",
                pl->hourly, "chosen", pl->chooses);
  char *s = top ? json_dumps(top, JSON_COMPACT) : NULL;
  json_decref(top);
  return s;
}

/* ---- launching by it ------------------------------------------------------------------------ */

static bool blocked(const kite__plan_t *pl, size_t i) {
  return pl->blocked_until[i] > kite__wall_ms();
}

void kite__plan_begin(kite__plan_t *pl, kite__node_t *n) {
  size_t first = pl->rank_cand ? pl->rank_cand[n->rank < pl->want.nodes ? n->rank : 0] : 0;
  /* The planned candidate, or the first after it (then from the top) that is not blocked. */
  size_t c = first;
  for (size_t k = 0; pl->blocked_until && k < pl->n; k++) {
    size_t i = (first + k) % pl->n;
    if (!blocked(pl, i)) {
      c = i;
      break;
    }
  }
  n->cand = (unsigned)c;
  n->failover_attempts = 0;
  n->failover_start_ms = kite__wall_ms();
  free(n->failover_trail);
  n->failover_trail = NULL;
}

int kite__plan_target(kite__plan_t *pl, const kite__node_t *n, const kite__cand_t **c,
                      const kite__site_t **s, char **why) {
  *why = NULL;
  if (pl->status) {
    *why = kite__strdup(pl->message ? pl->message : kite_strerror(pl->status));
    return pl->status;
  }
  if (n->cand >= pl->n || pl->sites == NULL)
    return KITE_EINTERNAL;
  *c = &pl->cands[n->cand];
  *s = &pl->sites[pl->site_of[n->cand]];
  if ((*s)->status) {
    *why = kite__sprintf("cannot tell where %s would launch it: %s", (*s)->provider,
                         (*s)->message ? (*s)->message : kite_strerror((*s)->status));
    return (*s)->status;
  }
  return 0;
}

bool kite__plan_fails_over(int code) {
  return code == KITE_ECAPACITY || code == KITE_EQUOTA || code == KITE_EPRICE ||
         code == KITE_EUNAVAILABLE;
}

static void trail_add(kite__node_t *n, const char *what, const char *message) {
  char *t = kite__sprintf("%s%s%s: %s", n->failover_trail ? n->failover_trail : "",
                          n->failover_trail ? "; " : "", what, message);
  if (t) {
    free(n->failover_trail);
    n->failover_trail = t;
  }
}

bool kite__plan_failover(kite__plan_t *pl, kite__node_t *n, uint64_t pool_id, int code,
                         const char *message, double pool_hourly, char **why) {
  *why = NULL;
  if (n->cand >= pl->n)
    return false;
  const kite__cand_t *from = &pl->cands[n->cand];
  char *from_name = kite__cand_name(from);
  n->failover_attempts++;
  trail_add(n, from_name ? from_name : "?", message ? message : kite_strerror(code));
  /* Blocked for every node: quota is the account's (an account limit holds in every region of
   * DigitalOcean and Hetzner; an AWS quota is per region, and kite errs on the side of fewer
   * refused calls), the rest this offer's. */
  uint64_t until = kite__wall_ms() + pl->block_ms;
  for (size_t i = 0; i < pl->n; i++) {
    const kite_offer_t *o = &pl->cands[i].offer;
    bool same_provider = strcmp(o->provider, from->offer.provider) == 0;
    /* spot-if-available: spot without capacity in a region is spot gone there; the next try
     * is spot elsewhere or on-demand, not every spot type of that region in turn. */
    bool spot_gone = code == KITE_ECAPACITY && from->spot && pl->cands[i].spot &&
                     pl->want.allocation == KITE_ALLOC_SPOT_IF_AVAILABLE && same_provider &&
                     strcmp(o->region, from->offer.region) == 0;
    bool same = i == n->cand || (code == KITE_EQUOTA && same_provider) || spot_gone;
    if (same && pl->blocked_until[i] < until) {
      pl->blocked_until[i] = until;
      free(pl->blocked_why[i]);
      pl->blocked_why[i] = kite__strdup(message);
    }
  }
  size_t next = pl->n;
  bool over_time = kite__wall_ms() - n->failover_start_ms > pl->timeout_ms;
  for (size_t i = 0; !over_time && n->failover_attempts < pl->attempts && i < pl->n; i++) {
    if (blocked(pl, i))
      continue;
    if (pl->want.max_hourly_cost > 0 && pool_hourly + pl->cands[i].price > pl->want.max_hourly_cost)
      continue;
    next = i;
    break;
  }
  char *to_name = next < pl->n ? kite__cand_name(&pl->cands[next]) : NULL;
  kite_ev_launch_failover_t ev = {.pool = pool_id,
                                  .node = n->id,
                                  .rank = n->rank,
                                  .attempt = n->failover_attempts,
                                  .from = from_name,
                                  .to = to_name,
                                  .code = code,
                                  .reason = message};
  kite_emit_launch_failover(pl->bus, &ev);
  if (next < pl->n) {
    kite_log(pl->rt, KITE_LOG_WARN, "pool", "%s rank %u: %s refused the launch (%s); trying %s",
             pl->want.name, n->rank, from_name, kite_err_name(code), to_name);
    n->cand = (unsigned)next;
  } else if (pl->n > 1 || n->failover_attempts > 1) {
    *why = kite__sprintf("no candidate could launch it (%u attempt%s%s): %s", n->failover_attempts,
                         n->failover_attempts == 1 ? "" : "s",
                         over_time ? ", failover_timeout passed" : "", n->failover_trail);
  }
  free(from_name);
  free(to_name);
  return next < pl->n;
}

/* ---- the choice alone, over the caller's offers ---------------------------------------------- */

int kite_pool_choose(const kite_pool_spec_t *spec, const kite_offer_t *offers, size_t n,
                     char **plan, char **why) {
  *plan = NULL;
  *why = NULL;
  if (spec == NULL || spec->nodes == 0 || (offers == NULL && n))
    return KITE_EINVAL;
  kite__plan_t *pl = calloc(1, sizeof(*pl));
  if (pl == NULL)
    return KITE_ENOMEM;
  pl->chooses = true;
  copy_want(pl, spec);
  int rc = pl->oom ? KITE_ENOMEM : kite__optimize(&pl->want, offers, n, &pl->cands, &pl->n, why);
  if (rc == 0 && (pl->rank_cand = calloc(spec->nodes, sizeof(*pl->rank_cand))) == NULL)
    rc = KITE_ENOMEM;
  if (rc == 0) {
    assign_ranks(pl);
    if (pl->want.max_hourly_cost > 0 && pl->hourly > pl->want.max_hourly_cost + 1e-9) {
      rc = KITE_EPRICE;
      *why = kite__sprintf("the cheapest plan costs $%.4f/h for %u nodes, above "
                           "max_hourly_cost $%.4f",
                           pl->hourly, spec->nodes, pl->want.max_hourly_cost);
    }
  }
  if (rc == 0 && (*plan = kite__plan_json(pl)) == NULL)
    rc = KITE_ENOMEM;
  kite__plan_free(pl);
  return rc;
}

/* ---- a dry run --------------------------------------------------------------------------- */

typedef struct dry {
  kite__plan_t *pl;
  kite_pool_plan_cb cb;
  void *data;
} dry_t;

static void on_dry(kite__plan_t *pl, int status, void *data) {
  dry_t *d = data;
  char *json = status == 0 ? kite__plan_json(pl) : NULL;
  d->cb(status == 0 && json == NULL ? KITE_ENOMEM : status, json, status ? pl->message : NULL,
        d->data);
  free(json);
  kite__plan_free(pl);
  free(d);
}

int kite_pool_plan(kite_runtime_t *rt, const kite_pool_spec_t *spec, kite_pool_plan_cb cb,
                   void *data) {
  if (rt == NULL || spec == NULL || cb == NULL || spec->nodes == 0)
    return KITE_EINVAL;
  dry_t *d = calloc(1, sizeof(*d));
  kite__plan_t *pl = d ? kite__plan_new(rt, spec) : NULL;
  if (pl == NULL) {
    free(d);
    return KITE_ENOMEM;
  }
  d->pl = pl;
  d->cb = cb;
  d->data = data;
  int rc = kite__plan_make(pl, on_dry, d);
  if (rc != 0) {
    kite__plan_free(pl);
    free(d);
  }
  return rc;
}
