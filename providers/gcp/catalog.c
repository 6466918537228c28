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
 *   e2-medium share cores (0.25, 0.5 and 1 vCPU's worth). A2 and G2 types come with GPUs
 *   (the machine type's accelerators): their price adds the GPUs' SKUs (category Compute/GPU,
 *   "Nvidia Tesla A100 GPU running in ...", per GPU hour). Types of other families are not
 *   offered: kite cannot price them.
 * - GPUs attached to N1 VMs (T4, V100, P100, P4): GET .../aggregated/acceleratorTypes says
 *   which zones have which, and how many one VM may take (maximumCardsPerInstance). For 1, 2,
 *   4 and 8 of them (up to that) kite offers n1-standard-(4 × count) — 4 vCPUs and 15 GB per
 *   GPU, the host Google's own GPU guides start from — where that type is sold in the zone,
 *   priced as the host plus the GPUs.
 * - An answer kite cannot read (a machine type without a whole number of CPUs, a price that is
 *   not one) is refused whole, saying which. Every offer's source is "api". */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>

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
} families[] = {{"e2-", "E2 Instance"},
                {"n2-", "N2 Instance"},
                {"n1-", "N1 Predefined Instance"},
                {"a2-", "A2 Instance"},
                {"g2-", "G2 Instance"}};
#define N_FAMILIES KITE_ARRAY_SIZE(families)

static const kite__gcp_gpu_t gpus[] = {
    {"nvidia-tesla-t4", "T4", "Tesla T4 GPU", 16384, true},
    {"nvidia-tesla-v100", "V100", "Tesla V100 GPU", 16384, true},
    {"nvidia-tesla-p100", "P100", "Tesla P100 GPU", 16384, true},
    {"nvidia-tesla-p4", "P4", "Tesla P4 GPU", 8192, true},
    {"nvidia-tesla-a100", "A100", "Tesla A100 GPU", 40960, false},
    {"nvidia-a100-80gb", "A100-80GB", "A100 80GB GPU", 81920, false},
    {"nvidia-l4", "L4", "Nvidia L4 GPU", 24576, false},
    {"nvidia-h100-80gb", "H100", "H100 80GB GPU", 81920, false},
};

const kite__gcp_gpu_t *kite__gcp_gpu_by_model(const char *model) {
  for (size_t i = 0; model && i < KITE_ARRAY_SIZE(gpus); i++)
    if (strcasecmp(gpus[i].model, model) == 0)
      return &gpus[i];
  return NULL;
}

const kite__gcp_gpu_t *kite__gcp_gpu_by_type(const char *type) {
  for (size_t i = 0; type && i < KITE_ARRAY_SIZE(gpus); i++)
    if (strcmp(gpus[i].type, type) == 0)
      return &gpus[i];
  return NULL;
}

const char *kite__gcp_gpu_models(void) {
  return "T4, V100, P100, P4 (attached to N1), A100, A100-80GB, L4, H100 (with A2, G2, A3 types)";
}

bool kite__gcp_type_has_gpus(const char *type) {
  return strncmp(type, "a2-", 3) == 0 || strncmp(type, "a3-", 3) == 0 ||
         strncmp(type, "g2-", 3) == 0;
}

/* One family's prices in one region; a GPU's (family N_FAMILIES + its index) in core. */
typedef struct rate {
  char region[48];
  int family;
  double core[2], ram[2]; /* [0] on demand, [1] spot; < 0 unknown */
} rate_t;

typedef struct cat {
  json_t *types;  /* [{zone, type}] */
  json_t *accels; /* [{zone, type}]: accelerator types */
  rate_t *rates;
  size_t n_rates, cap;
  int phase; /* 0 machine types, 1 accelerator types, 2 SKUs */
  int pages;
} cat_t;

static void cat_free(cat_t *k) {
  if (k == NULL)
    return;
  json_decref(k->types);
  json_decref(k->accels);
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

/* A page of machine types (phase 0) or accelerator types (phase 1), zone by zone. */
static void on_types(kite_cloud_call_t *call, int status, const kite_http_response_t *r) {
  cat_t *k = call->data;
  const char *key = k->phase == 0 ? "machineTypes" : "acceleratorTypes";
  json_t *into = k->phase == 0 ? k->types : k->accels;
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
    json_t *list = json_object_get(sc, key);
    if (zone == NULL || list == NULL)
      continue; /* a scope with only a warning */
    if (!json_is_array(list)) {
      json_decref(j);
      refuse(call, "items", 0, scope,
             k->phase == 0 ? "machineTypes is not a list" : "acceleratorTypes is not a list");
      return;
    }
    if (!wanted(call, zone))
      continue;
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t) {
      if (!json_is_object(t)) {
        json_decref(j);
        refuse(call, key, i, NULL, "is not an object");
        return;
      }
      json_array_append_new(into, json_pack("{s:s, s:O}", "zone", zone, "type", t));
    }
  }
  const char *next = json_string_value(json_object_get(j, "nextPageToken"));
  char *tok = next && *next && strlen(next) < 1024 ? kite__strdup(next) : NULL;
  json_decref(j);
  if (tok == NULL || ++k->pages > MAX_PAGES) {
    free(tok);
    k->phase++;
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
  bool cpu = strcmp(group, "CPU") == 0, ram = strcmp(group, "RAM") == 0,
       gpu = strcmp(group, "GPU") == 0;
  int spot = strcmp(usage, "Preemptible") == 0 ? 1 : strcmp(usage, "OnDemand") == 0 ? 0 : -1;
  if ((!cpu && !ram && !gpu) || spot < 0 || strstr(desc, "Custom") ||
      strstr(desc, "Sole Tenancy") || strstr(desc, "Commitment") || strstr(desc, "Reserved") ||
      strstr(desc, "Workstation") || strstr(desc, "DWS"))
    return NULL;
  int family = -1;
  for (size_t f = 0; f < N_FAMILIES && family < 0 && !gpu; f++)
    if (strstr(desc, families[f].sku))
      family = (int)f;
  for (size_t g = 0; g < KITE_ARRAY_SIZE(gpus) && family < 0 && gpu; g++)
    if (strstr(desc, gpus[g].sku))
      family = (int)(N_FAMILIES + g);
  if (family < 0)
    return NULL;
  json_t *pe =
      json_object_get(json_array_get(json_object_get(s, "pricingInfo"), 0), "pricingExpression");
  const char *unit = json_string_value(json_object_get(pe, "usageUnit"));
  json_t *tiers = json_object_get(pe, "tieredRates");
  if (unit == NULL || !json_is_array(tiers) || json_array_size(tiers) == 0)
    return "pricingInfo[0].pricingExpression has no usageUnit or tieredRates";
  if (strcmp(unit, ram ? "GiBy.h" : "h") != 0)
    return ram   ? "a RAM price is not per GiB hour (usageUnit GiBy.h)"
           : gpu ? "a GPU price is not per hour (usageUnit h)"
                 : "a CPU price is not per hour (usageUnit h)";
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
    (ram ? r->ram : r->core)[spot] = price;
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

static const rate_t *rate_at(const cat_t *k, const char *region, int family) {
  for (size_t x = 0; x < k->n_rates; x++)
    if (k->rates[x].family == family && strcmp(k->rates[x].region, region) == 0)
      return &k->rates[x];
  return NULL;
}

/* A machine type's hourly price in region, [0] on demand and [1] spot (< 0: none); false when
 * kite cannot price it there. */
static bool type_price(const cat_t *k, const char *name, const char *region, uint64_t cpus,
                       uint64_t mem, double out[2]) {
  int family = -1;
  for (size_t f = 0; f < N_FAMILIES && family < 0; f++)
    if (strncmp(name, families[f].prefix, strlen(families[f].prefix)) == 0)
      family = (int)f;
  const rate_t *r = family < 0 ? NULL : rate_at(k, region, family);
  if (r == NULL || r->core[0] < 0 || r->ram[0] < 0)
    return false;
  double cores = shared_cores(name, (double)cpus), gib = (double)mem / 1024;
  out[0] = cores * r->core[0] + gib * r->ram[0];
  out[1] = r->core[1] >= 0 && r->ram[1] >= 0 ? cores * r->core[1] + gib * r->ram[1] : -1;
  return true;
}

/* Adds count GPUs' hourly price in region to out; false when kite cannot price them there. */
static bool add_gpus(const cat_t *k, const char *region, const kite__gcp_gpu_t *g, unsigned count,
                     double out[2]) {
  const rate_t *r = rate_at(k, region, (int)(N_FAMILIES + (size_t)(g - gpus)));
  if (r == NULL || r->core[0] < 0)
    return false;
  out[0] += count * r->core[0];
  out[1] = out[1] >= 0 && r->core[1] >= 0 ? out[1] + count * r->core[1] : -1;
  return true;
}

static int offer(kite_cloud_call_t *call, const char *zone, const char *region, const char *name,
                 uint64_t cpus, uint64_t mem, const kite__gcp_gpu_t *g, unsigned count,
                 const double price[2]) {
  kite_offer_t o = {0};
  if (KITE_OFFER_SET(&o, instance_type, name) != 0 || KITE_OFFER_SET(&o, region, region) != 0 ||
      KITE_OFFER_SET(&o, zone, zone) != 0)
    return -1;
  o.vcpus = (unsigned)cpus;
  o.memory_mb = mem;
  if (g) {
    KITE_OFFER_SET(&o, accelerator, g->model);
    o.accelerator_count = count;
    o.accelerator_memory_mb = g->memory_mb;
  }
  o.price = price[0];
  o.spot_price = price[1];
  o.available = -1;
  KITE_OFFER_SET(&o, arch, "x86_64");
  KITE_OFFER_SET(&o, source, "api");
  kite_cloud_offer(call, &o);
  return 0;
}

/* A machine type's name, vCPUs and memory; NULL, or what is wrong. */
static const char *type_of(json_t *t, const char **name, uint64_t *cpus, uint64_t *mem) {
  *name = json_string_value(json_object_get(t, "name"));
  if (*name == NULL || **name == '\0')
    return "name is not a machine type's name";
  if (!kite_cloud_rest_whole(json_object_get(t, "guestCpus"), 1 << 16, cpus) || *cpus == 0)
    return "guestCpus is not a count of CPUs";
  if (!kite_cloud_rest_whole(json_object_get(t, "memoryMb"), 1 << 30, mem) || *mem == 0)
    return "memoryMb is not a size in MB";
  return NULL;
}

/* The machine type name read in zone, or NULL. */
static json_t *type_in(const cat_t *k, const char *zone, const char *name) {
  size_t i;
  json_t *e;
  json_array_foreach(k->types, i, e) {
    json_t *t = json_object_get(e, "type");
    if (strcmp(json_string_value(json_object_get(e, "zone")), zone) == 0 &&
        json_is_string(json_object_get(t, "name")) &&
        strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
      return t;
  }
  return NULL;
}

/* Every machine type read, with its family's rates (and its GPUs') where it is, as offers. */
static const char *type_offers(kite_cloud_call_t *call, cat_t *k, size_t *bad,
                               const char **bad_name) {
  size_t i;
  json_t *e;
  json_array_foreach(k->types, i, e) {
    const char *zone = json_string_value(json_object_get(e, "zone"));
    json_t *t = json_object_get(e, "type");
    const char *name = NULL;
    uint64_t cpus = 0, mem = 0, count = 0;
    *bad = i;
    const char *why = type_of(t, &name, &cpus, &mem);
    *bad_name = name;
    if (why)
      return why;
    const char *dep = json_string_value(json_object_get(json_object_get(t, "deprecated"), "state"));
    if (dep && (strcmp(dep, "DEPRECATED") == 0 || strcmp(dep, "OBSOLETE") == 0 ||
                strcmp(dep, "DELETED") == 0))
      continue;
    char region[64];
    double price[2];
    if (!kite__gcp_zone_region(zone, region, sizeof(region)) ||
        !type_price(k, name, region, cpus, mem, price))
      continue;
    json_t *acc = json_array_get(json_object_get(t, "accelerators"), 0);
    const kite__gcp_gpu_t *g = NULL;
    if (acc) {
      if (!kite_cloud_rest_whole(json_object_get(acc, "guestAcceleratorCount"), 64, &count) ||
          count == 0)
        return "accelerators[0].guestAcceleratorCount is not a count of GPUs";
      g = kite__gcp_gpu_by_type(json_string_value(json_object_get(acc, "guestAcceleratorType")));
      if (g == NULL || !add_gpus(k, region, g, (unsigned)count, price))
        continue; /* a GPU kite does not know, or cannot price there */
    }
    if (offer(call, zone, region, name, cpus, mem, g, (unsigned)count, price) != 0)
      return "a name is too long";
  }
  return NULL;
}

/* N1 hosts with 1, 2, 4 or 8 attached GPUs of each type a zone has, as offers. */
static const char *attached_offers(kite_cloud_call_t *call, cat_t *k, size_t *bad,
                                   const char **bad_name) {
  size_t i;
  json_t *e;
  json_array_foreach(k->accels, i, e) {
    const char *zone = json_string_value(json_object_get(e, "zone"));
    json_t *a = json_object_get(e, "type");
    *bad = i;
    *bad_name = json_string_value(json_object_get(a, "name"));
    const kite__gcp_gpu_t *g = kite__gcp_gpu_by_type(*bad_name);
    char region[64];
    if (g == NULL || !g->attached || !kite__gcp_zone_region(zone, region, sizeof(region)))
      continue;
    uint64_t max = 0;
    if (!kite_cloud_rest_whole(json_object_get(a, "maximumCardsPerInstance"), 64, &max))
      return "maximumCardsPerInstance is not a count of GPUs";
    for (unsigned count = 1; count <= 8 && count <= max; count *= 2) {
      char host[32];
      snprintf(host, sizeof(host), "n1-standard-%u", 4 * count);
      json_t *t = type_in(k, zone, host);
      const char *name = NULL;
      uint64_t cpus = 0, mem = 0;
      double price[2];
      if (t == NULL || type_of(t, &name, &cpus, &mem) != NULL ||
          !type_price(k, host, region, cpus, mem, price) || !add_gpus(k, region, g, count, price))
        continue;
      if (offer(call, zone, region, host, cpus, mem, g, count, price) != 0)
        return "a name is too long";
    }
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
  const char *bad_name = NULL, *list = "machineTypes";
  const char *why = type_offers(call, k, &bad, &bad_name);
  if (why == NULL) {
    list = "acceleratorTypes";
    why = attached_offers(call, k, &bad, &bad_name);
  }
  if (why) {
    char name[64];
    snprintf(name, sizeof(name), "%s", bad_name ? bad_name : "");
    refuse(call, list, bad, name[0] ? name : NULL, why);
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
      k->phase < 2
          ? kite__sprintf("%s/projects/%s/aggregated/%s?maxResults=500%s%s", api->url, api->project,
                          k->phase == 0 ? "machineTypes" : "acceleratorTypes",
                          t ? "&pageToken=" : "", t ? t : "")
          : kite__sprintf("%s/services/%s/skus?currencyCode=USD&pageSize=5000%s%s",
                          api->billing_url, COMPUTE_SERVICE, t ? "&pageToken=" : "", t ? t : "");
  free(t);
  if (url == NULL) {
    cat_free(k);
    call->data = NULL;
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  kite__gcp_send(call, "GET", url, NULL, k->phase < 2 ? on_types : on_skus);
  free(url);
}

void kite__gcp_catalog(kite_cloud_call_t *call) {
  cat_t *k = calloc(1, sizeof(*k));
  if (k == NULL || (k->types = json_array()) == NULL || (k->accels = json_array()) == NULL) {
    cat_free(k);
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->data = k;
  send_page(call, NULL);
}
