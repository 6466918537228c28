/* The Compute Engine catalog: machine types per zone from the Compute Engine API and their
 * prices from the Cloud Billing Catalog API.
 *
 * Design notes
 * - Machine types: GET .../aggregated/machineTypes, page by page (nextPageToken); every zone's
 *   list ("zones/ZONE" → machineTypes), or one region's zones when the request names a region
 *   (or a zone). Deprecated types are left out.
 * - Prices: GET {billing}/services/6F81-5844-456A/skus (Compute Engine's service), page by
 *   page. Compute Engine prices a VM by its vCPUs and its memory, per family and region: kite
 *   reads the SKUs of category Compute/CPU and Compute/RAM whose description names one of the
 *   families it prices — E2, N2 and N1 ("E2 Instance Core running in Americas", "Spot
 *   Preemptible N2 Instance Ram running in ...", "N1 Predefined Instance Core ...") — with
 *   usageType OnDemand (on demand) or Preemptible (spot), for each of its serviceRegions. A
 *   type's price is vCPUs × the core's hourly price + GiB × the RAM's; e2-micro, e2-small and
 *   e2-medium share cores (0.25, 0.5 and 1 vCPU's worth). Types of other families (and GPUs,
 *   which kite does not attach) are not offered: kite cannot price them.
 * - An answer kite cannot read (a machine type without a whole number of CPUs, a price that is
 *   not one) is refused whole, saying which. Every offer's source is "api". */
#include <jansson.h>
#include <math.h>
#include <stdio.h>

#include "../cloud/rest.h"
#include "gcp_impl.h"
#include "kite/offer.h"
#include "kite_impl.h"

#define COMPUTE_SERVICE "6F81-5844-456A"
#define MAX_PAGES 200

/* The families priced, and how their SKU descriptions name them. */
static const struct family {
  const char *prefix; /* of the machine type: "e2-" */
  const char *sku;    /* in the SKU's description: "E2 Instance" */
} families[] = {{"e2-", "E2 Instance"}, {"n2-", "N2 Instance"}, {"n1-", "N1 Predefined Instance"}};

/* One family's prices in one region. */
typedef struct rate {
  char region[48];
  int family;
  double core[2], ram[2]; /* [0] on demand, [1] spot; < 0 unknown */
} rate_t;

typedef struct cat {
  json_t *types; /* [{zone, type}] */
  rate_t *rates;
  size_t n_rates, cap;
  int phase; /* 0 machine types, 1 SKUs */
  int pages;
} cat_t;

static void cat_free(cat_t *k) {
  if (k == NULL)
    return;
  json_decref(k->types);
  free(k->rates);
  free(k);
}

void kite__gcp_catalog_drop(kite_cloud_call_t *call) {
  cat_free(call->data);
  call->data = NULL;
}

/* Ends the call: what data held is freed first. */
static void finish_fail(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  cat_free(call->data);
  call->data = NULL;
  kite__gcp_fail(call, status, r);
}

static void refuse(kite_cloud_call_t *call, const char *list, size_t i, const char *name,
                   const char *what) {
  cat_free(call->data);
  call->data = NULL;
  kite_cloud_rest_refuse(call, list, i, name, what);
}

/* Whether zone is in the region the call asks for (NULL: every). */
static bool wanted(const kite_cloud_call_t *call, const char *zone) {
  char region[64];
  if (!kite__gcp_zone_region(zone, region, sizeof(region)))
    return false;
  if (call->cfg->zone)
    return strcmp(call->cfg->zone, zone) == 0;
  return call->cfg->region == NULL || strcmp(call->cfg->region, region) == 0;
}

static void send_page(kite_cloud_call_t *call, const char *token);

static void on_types(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  cat_t *k = call->data;
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  json_t *items = json_object_get(j, "items");
  if (j == NULL || !json_is_object(items)) {
    json_decref(j);
    finish_fail(call, status, r);
    return;
  }
  const char *scope;
  json_t *sc;
  json_object_foreach(items, scope, sc) {
    const char *zone = strncmp(scope, "zones/", 6) == 0 ? scope + 6 : NULL;
    json_t *list = json_object_get(sc, "machineTypes");
    if (zone == NULL || list == NULL)
      continue; /* a scope with only a warning */
    if (!json_is_array(list)) {
      json_decref(j);
      refuse(call, "items", 0, scope, "machineTypes is not a list");
      return;
    }
    if (!wanted(call, zone))
      continue;
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
      if (!json_is_object(t)) {
        json_decref(j);
        refuse(call, "machineTypes", i, NULL, "is not an object");
        return;
      }
      json_array_append_new(k->types, json_pack("{s:s, s:O}", "zone", zone, "type", t));
    }
  }
  const char *next = json_string_value(json_object_get(j, "nextPageToken"));
  char *tok = next && *next && strlen(next) < 1024 ? kite__strdup(next) : NULL;
  json_decref(j);
  if (tok == NULL || ++k->pages > MAX_PAGES) {
    free(tok);
    k->phase = 1;
    k->pages = 0;
    send_page(call, NULL);
    return;
  }
  send_page(call, tok);
  free(tok);
}

/* A Money {units, nanos} as a number; false when it is not one in 0..1e6. */
static bool money(json_t *m, double *out) {
  json_t *u = json_object_get(m, "units"), *n = json_object_get(m, "nanos");
  double units = 0;
  if (u && !kite_cloud_rest_price(u, &units))
    return false;
  if (n && !json_is_integer(n))
    return false;
  double nanos = n ? (double)json_integer_value(n) : 0;
  if (nanos < 0 || nanos >= 1e9)
    return false;
  *out = units + nanos / 1e9;
  return *out <= 1e6;
}

static rate_t *rate_for(cat_t *k, const char *region, int family) {
  for (size_t i = 0; i < k->n_rates; i++)
    if (k->rates[i].family == family && strcmp(k->rates[i].region, region) == 0)
      return &k->rates[i];
  if (strlen(region) >= sizeof(k->rates[0].region))
    return NULL;
  if (k->n_rates == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 64;
    rate_t *r = realloc(k->rates, cap * sizeof(*r));
    if (r == NULL)
      return NULL;
    k->rates = r;
    k->cap = cap;
  }
  rate_t *r = &k->rates[k->n_rates++];
  memset(r, 0, sizeof(*r));
  snprintf(r->region, sizeof(r->region), "%s", region);
  r->family = family;
  r->core[0] = r->core[1] = r->ram[0] = r->ram[1] = -1;
  return r;
}

/* One SKU into the rates: NULL, or what is wrong with it. */
static const char *sku_into(cat_t *k, json_t *s) {
  json_t *cat = json_object_get(s, "category");
  const char *desc = json_string_value(json_object_get(s, "description"));
  const char *fam = json_string_value(json_object_get(cat, "resourceFamily"));
  const char *group = json_string_value(json_object_get(cat, "resourceGroup"));
  const char *usage = json_string_value(json_object_get(cat, "usageType"));
  if (desc == NULL || fam == NULL || strcmp(fam, "Compute") != 0 || group == NULL || usage == NULL)
    return NULL; /* not a VM's price */
  bool cpu = strcmp(group, "CPU") == 0, ram = strcmp(group, "RAM") == 0;
  int spot = strcmp(usage, "Preemptible") == 0 ? 1 : strcmp(usage, "OnDemand") == 0 ? 0 : -1;
  if ((!cpu && !ram) || spot < 0 || strstr(desc, "Custom") || strstr(desc, "Sole Tenancy") ||
      strstr(desc, "Commitment"))
    return NULL;
  int family = -1;
  for (size_t f = 0; f < KITE_ARRAY_SIZE(families) && family < 0; f++)
    if (strstr(desc, families[f].sku))
      family = (int)f;
  if (family < 0)
    return NULL;
  json_t *pe =
      json_object_get(json_array_get(json_object_get(s, "pricingInfo"), 0), "pricingExpression");
  const char *unit = json_string_value(json_object_get(pe, "usageUnit"));
  json_t *tiers = json_object_get(pe, "tieredRates");
  if (unit == NULL || !json_is_array(tiers) || json_array_size(tiers) == 0)
    return "pricingInfo[0].pricingExpression has no usageUnit or tieredRates";
  if (strcmp(unit, cpu ? "h" : "GiBy.h") != 0)
    return cpu ? "a CPU price is not per hour (usageUnit h)"
               : "a RAM price is not per GiB hour (usageUnit GiBy.h)";
  double price = 0;
  /* The last tier is the rate past any free usage. */
  if (!money(json_object_get(json_array_get(tiers, json_array_size(tiers) - 1), "unitPrice"),
             &price))
    return "a tieredRates unitPrice is not a price";
  json_t *regions = json_object_get(s, "serviceRegions");
  if (!json_is_array(regions))
    return "serviceRegions is not a list";
  size_t i;
  json_t *rg;
  json_array_foreach(regions, i, rg) {
    const char *region = json_string_value(rg);
    if (region == NULL || *region == '\0')
      return "serviceRegions has an entry that is not a region";
    rate_t *r = rate_for(k, region, family);
    if (r == NULL)
      return "a region's name is too long";
    (cpu ? r->core : r->ram)[spot] = price;
  }
  return NULL;
}

/* vCPUs' worth of e2's shared-core types. */
static double shared_cores(const char *type, double cpus) {
  static const struct {
    const char *name;
    double cores;
  } shared[] = {{"e2-micro", 0.25}, {"e2-small", 0.5}, {"e2-medium", 1}};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(shared); i++)
    if (strcmp(shared[i].name, type) == 0)
      return shared[i].cores;
  return cpus;
}

/* Every machine type read, with its family's rates where it is, as offers. */
static const char *offers(kite_cloud_call_t *call, cat_t *k, size_t *bad, const char **bad_name) {
  size_t i;
  json_t *e;
  json_array_foreach(k->types, i, e) {
    const char *zone = json_string_value(json_object_get(e, "zone"));
    json_t *t = json_object_get(e, "type");
    const char *name = json_string_value(json_object_get(t, "name"));
    *bad = i;
    *bad_name = name;
    uint64_t cpus = 0, mem = 0;
    if (name == NULL || *name == '\0')
      return "name is not a machine type's name";
    if (!kite_cloud_rest_whole(json_object_get(t, "guestCpus"), 1 << 16, &cpus) || cpus == 0)
      return "guestCpus is not a count of CPUs";
    if (!kite_cloud_rest_whole(json_object_get(t, "memoryMb"), 1 << 30, &mem) || mem == 0)
      return "memoryMb is not a size in MB";
    const char *dep = json_string_value(json_object_get(json_object_get(t, "deprecated"), "state"));
    if (dep && (strcmp(dep, "DEPRECATED") == 0 || strcmp(dep, "OBSOLETE") == 0 ||
                strcmp(dep, "DELETED") == 0))
      continue;
    int family = -1;
    for (size_t f = 0; f < KITE_ARRAY_SIZE(families) && family < 0; f++)
      if (strncmp(name, families[f].prefix, strlen(families[f].prefix)) == 0)
        family = (int)f;
    char region[64];
    if (family < 0 || !kite__gcp_zone_region(zone, region, sizeof(region)))
      continue;
    rate_t *r = NULL;
    for (size_t x = 0; x < k->n_rates && r == NULL; x++)
      if (k->rates[x].family == family && strcmp(k->rates[x].region, region) == 0)
        r = &k->rates[x];
    if (r == NULL || r->core[0] < 0 || r->ram[0] < 0)
      continue; /* not priced there */
    double cores = shared_cores(name, (double)cpus), gib = (double)mem / 1024;
    kite_offer_t o = {0};
    if (KITE_OFFER_SET(&o, instance_type, name) != 0 || KITE_OFFER_SET(&o, region, region) != 0 ||
        KITE_OFFER_SET(&o, zone, zone) != 0)
      return "a name is too long";
    o.vcpus = (unsigned)cpus;
    o.memory_mb = mem;
    o.price = cores * r->core[0] + gib * r->ram[0];
    o.spot_price = r->core[1] >= 0 && r->ram[1] >= 0 ? cores * r->core[1] + gib * r->ram[1] : -1;
    o.available = -1;
    KITE_OFFER_SET(&o, arch, "x86_64");
    KITE_OFFER_SET(&o, source, "api");
    kite_cloud_offer(call, &o);
  }
  return NULL;
}

static void on_skus(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  cat_t *k = call->data;
  json_t *j = status == 0 ? kite_cloud_rest_body(r) : NULL;
  json_t *skus = json_object_get(j, "skus");
  if (j == NULL || !json_is_array(skus)) {
    json_decref(j);
    finish_fail(call, status, r);
    return;
  }
  size_t i;
  json_t *s;
  json_array_foreach(skus, i, s) {
    const char *why = json_is_object(s) ? sku_into(k, s) : "is not an object";
    if (why) {
      char name[64];
      snprintf(name, sizeof(name), "%s", json_string_value(json_object_get(s, "skuId")) ?: "");
      json_decref(j);
      refuse(call, "skus", i, name[0] ? name : NULL, why);
      return;
    }
  }
  const char *next = json_string_value(json_object_get(j, "nextPageToken"));
  char *tok = next && *next && strlen(next) < 1024 ? kite__strdup(next) : NULL;
  json_decref(j);
  if (tok && ++k->pages <= MAX_PAGES) {
    send_page(call, tok);
    free(tok);
    return;
  }
  free(tok);
  size_t bad = 0;
  const char *bad_name = NULL;
  const char *why = offers(call, k, &bad, &bad_name);
  if (why) {
    char name[64];
    snprintf(name, sizeof(name), "%s", bad_name ? bad_name : "");
    refuse(call, "machineTypes", bad, name[0] ? name : NULL, why);
    return;
  }
  cat_free(k);
  call->data = NULL;
  kite_cloud_answer_ok(call);
}

static void send_page(kite_cloud_call_t *call, const char *token) {
  cat_t *k = call->data;
  const kite__gcp_api_t *api = call->cfg->api;
  char *t = token ? kite_cloud_escape(token) : NULL;
  char *url =
      k->phase == 0
          ? kite__sprintf("%s/projects/%s/aggregated/machineTypes?maxResults=500%s%s", api->url,
                          api->project, t ? "&pageToken=" : "", t ? t : "")
          : kite__sprintf("%s/services/%s/skus?currencyCode=USD&pageSize=5000%s%s",
                          api->billing_url, COMPUTE_SERVICE, t ? "&pageToken=" : "", t ? t : "");
  free(t);
  if (url == NULL) {
    cat_free(k);
    call->data = NULL;
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite__gcp_send(call, "GET", url, NULL, k->phase == 0 ? on_types : on_skus);
  free(url);
}

void kite__gcp_catalog(kite_cloud_call_t *call) {
  cat_t *k = calloc(1, sizeof(*k));
  if (k == NULL || (k->types = json_array()) == NULL) {
    cat_free(k);
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->data = k;
  send_page(call, NULL);
}
