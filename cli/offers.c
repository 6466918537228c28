/* `kite offers`: what the providers sell and what it costs, from the catalog's cache (the state
 * store) in milliseconds, or asked again (--refresh); `kite offers --import` stores a snapshot
 * of public price data. Filters are the requirements a pool's resources: would make
 * (catalog.h: kite_offer_misses), so that a user sees what the optimizer would choose among,
 * and, when nothing fits, which offers came closest and what each lacks. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "kite/catalog.h"
#include "kite/registry.h"

#define CMD "offers"
#define MAX_LIST 64

typedef struct args {
  char *providers[MAX_LIST + 1], *regions[MAX_LIST + 1];
  size_t n_providers, n_regions;
  kite_offer_need_t need;
  char accelerator[64];
  long limit;
  bool json, refresh, cache_only;
  const char *import, *date;
} args_t;

/* ---- arguments --------------------------------------------------------------------------- */

static int split_list(const char *flag, const char *value, char **out, size_t *n) {
  char *copy = strdup(value), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
    if (*n == MAX_LIST) {
      free(copy);
      return cli_usage(CMD, "%s names more than %d values", flag, MAX_LIST);
    }
    out[(*n)++] = strdup(t);
  }
  free(copy);
  if (*n == 0)
    return cli_usage(CMD, "%s needs a value (e.g. %s)", flag,
                     strcmp(flag, "--region") == 0 ? "nyc3,sfo3" : "digitalocean,aws");
  return 0;
}

/* A number of GiB, or a number with a unit (16GB, 512MB, 1TB), as resources.memory takes it. */
static bool parse_memory(const char *s, uint64_t *mb) {
  static const struct {
    const char *unit;
    double mb;
  } units[] = {{"", 1024},   {"M", 1},      {"MB", 1},      {"MiB", 1},      {"G", 1024},
               {"GB", 1024}, {"GiB", 1024}, {"T", 1048576}, {"TB", 1048576}, {"TiB", 1048576}};
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || errno != 0 || !isfinite(x) || x <= 0)
    return false;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
    if (strcasecmp(end, units[i].unit) == 0 && x * units[i].mb <= 1024.0 * 1048576) {
      *mb = (uint64_t)(x * units[i].mb + 0.5);
      return *mb > 0;
    }
  return false;
}

static bool parse_count(const char *s, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (end == s || *end || errno || v < min || v > max)
    return false;
  *out = v;
  return true;
}

static int parse_accelerator(args_t *a, const char *s) {
  const char *colon = strchr(s, ':');
  size_t len = colon ? (size_t)(colon - s) : strlen(s);
  long count = 1;
  if (len == 0 || len >= sizeof(a->accelerator) ||
      (colon && !parse_count(colon + 1, 1, 1024, &count)))
    return cli_usage(CMD, "--accelerator '%s' is not NAME or NAME:COUNT (e.g. A100 or A100:8)", s);
  memcpy(a->accelerator, s, len);
  a->accelerator[len] = '\0';
  a->need.accelerator = a->accelerator;
  a->need.accelerator_count = (unsigned)count;
  return 0;
}

/* The value of flag at argv[*i] ("--flag VALUE" or "--flag=VALUE"), or NULL when it is not
 * that flag. *missing when the flag is there without a value. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag, bool *missing) {
  size_t n = strlen(flag);
  if (strncmp(argv[*i], flag, n) != 0)
    return NULL;
  if (argv[*i][n] == '=')
    return argv[*i] + n + 1;
  if (argv[*i][n] != '\0')
    return NULL;
  if (*i + 1 >= argc) {
    *missing = true;
    return NULL;
  }
  return argv[++*i];
}

static int parse_args(int argc, char **argv, args_t *a) {
  a->limit = 20;
  for (int i = 1; i < argc; i++) {
    bool missing = false;
    const char *v;
    long n;
    double price;
    char *end;
    int rc = 0;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for(CMD, stdout);
      return 1;
    } else if (strcmp(argv[i], "--json") == 0) {
      a->json = true;
    } else if (strcmp(argv[i], "--spot") == 0) {
      a->need.spot = true;
    } else if (strcmp(argv[i], "--refresh") == 0) {
      a->refresh = true;
    } else if (strcmp(argv[i], "--cache-only") == 0) {
      a->cache_only = true;
    } else if ((v = flag_value(argc, argv, &i, "--provider", &missing))) {
      rc = split_list("--provider", v, a->providers, &a->n_providers);
    } else if ((v = flag_value(argc, argv, &i, "--region", &missing))) {
      rc = split_list("--region", v, a->regions, &a->n_regions);
    } else if ((v = flag_value(argc, argv, &i, "--cpus", &missing))) {
      if (!parse_count(v, 1, 100000, &n))
        return cli_usage(CMD, "--cpus '%s' is not a number of vCPUs (1 to 100000)", v);
      a->need.cpus = (unsigned)n;
    } else if ((v = flag_value(argc, argv, &i, "--memory", &missing))) {
      if (!parse_memory(v, &a->need.memory_mb))
        return cli_usage(CMD,
                         "--memory '%s' is not a size; give a number of GiB or a number "
                         "with a unit, such as 16GB or 512MB",
                         v);
    } else if ((v = flag_value(argc, argv, &i, "--accelerator", &missing))) {
      rc = parse_accelerator(a, v);
    } else if ((v = flag_value(argc, argv, &i, "--max-price", &missing))) {
      errno = 0;
      price = strtod(v, &end);
      if (end == v || *end || errno || !isfinite(price) || price <= 0)
        return cli_usage(CMD, "--max-price '%s' is not a price in USD per hour (e.g. 0.5)", v);
      a->need.max_price = price;
    } else if ((v = flag_value(argc, argv, &i, "--limit", &missing))) {
      if (!parse_count(v, 0, 1000000, &a->limit))
        return cli_usage(CMD, "--limit '%s' is not a number of offers (0: all)", v);
    } else if ((v = flag_value(argc, argv, &i, "--import", &missing))) {
      a->import = v;
    } else if ((v = flag_value(argc, argv, &i, "--date", &missing))) {
      a->date = v;
    } else if (missing) {
      return cli_usage(CMD, "%s needs a value", argv[i]);
    } else {
      return cli_usage(CMD, "unknown argument %s", argv[i]);
    }
    if (missing)
      return cli_usage(CMD, "%s needs a value", argv[i]);
    if (rc != 0)
      return rc;
  }
  if (a->refresh && a->cache_only)
    return cli_usage(CMD, "--refresh asks the providers and --cache-only never does; give one");
  if (a->date && !a->import)
    return cli_usage(CMD, "--date dates an imported snapshot; give it with --import FILE");
  if (a->import && a->n_providers != 1)
    return cli_usage(CMD, "--import FILE needs the one provider whose prices it holds "
                          "(--provider NAME)");
  if (a->import && (a->n_regions || a->need.cpus || a->need.memory_mb || a->need.accelerator ||
                    a->need.spot || a->need.max_price > 0 || a->refresh || a->cache_only))
    return cli_usage(CMD, "--import stores a snapshot and lists nothing; run `kite offers` "
                          "with filters afterwards");
  if (a->n_regions)
    a->need.regions = (const char *const *)a->regions;
  return 0;
}

static void args_free(args_t *a) {
  for (size_t i = 0; i < a->n_providers; i++)
    free(a->providers[i]);
  for (size_t i = 0; i < a->n_regions; i++)
    free(a->regions[i]);
}

/* ---- import ------------------------------------------------------------------------------ */

static int import(const args_t *a) {
  char *home = cli_home();
  kite_runtime_options_t ro = {.home = home, .log_level = -1};
  kite_runtime_t *rt = NULL;
  int rc = kite_runtime_new(&rt, &ro);
  free(home);
  if (rc != 0) {
    cli_err("cannot start: %s", kite_strerror(rc));
    return CLI_EXIT_FAIL;
  }
  size_t n = 0;
  char *msg = NULL;
  rc = kite_catalog_import(rt, a->providers[0], a->import, a->date, &n, &msg);
  kite_runtime_shutdown(rt, NULL, NULL);
  kite_runtime_run(rt);
  kite_runtime_free(rt);
  if (rc != 0) {
    cli_err("%s", msg ? msg : kite_strerror(rc));
    if (rc == KITE_EPROTO)
      fprintf(stderr, "kite: nothing was imported; fix the file (a SkyPilot vms.csv) and run "
                      "kite offers --import again\n");
    free(msg);
    return rc == KITE_EPROTO || rc == KITE_EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
  }
  if (a->json)
    printf("{\"provider\":\"%s\",\"imported\":%zu}\n", a->providers[0], n);
  else
    printf("imported %zu offers of %s from %s (a snapshot: its prices are not live; `kite "
           "offers --provider %s` lists them)\n",
           n, a->providers[0], a->import, a->providers[0]);
  return 0;
}

/* ---- listing ----------------------------------------------------------------------------- */

typedef struct run {
  kite_runtime_t *rt;
  unsigned pending;
  kite_offer_t *offers;
  size_t n;
  char *notes;
  int status;
} run_t;

static void on_offers(int status, const kite_offer_t *offers, size_t n, const char *message,
                      void *data) {
  run_t *r = data;
  if (n > 0) {
    kite_offer_t *g = realloc(r->offers, (r->n + n) * sizeof(*g));
    if (g) {
      memcpy(g + r->n, offers, n * sizeof(*g));
      r->offers = g;
      r->n += n;
    }
  }
  if (message && *message) {
    char *m = r->notes ? cli_sprintf("%s; %s", r->notes, message) : strdup(message);
    free(r->notes);
    r->notes = m;
  }
  if (status != 0 && r->status == 0)
    r->status = status;
  if (--r->pending == 0)
    kite_runtime_shutdown(r->rt, NULL, NULL);
}

static bool listed(char *const *v, size_t n, const char *s) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i], s) == 0)
      return true;
  return false;
}

/* Whether this process can ask provider (a registry row with a catalog, and credentials found
 * or the provider named by the user). */
static const kite_provider_info_t *askable(const char *name, bool named) {
  const kite_provider_info_t *p = kite_registry_find(name);
  if (p == NULL || !p->catalog)
    return NULL;
  return named || (p->configured && p->configured()) ? p : NULL;
}

/* The providers to list: those named, else every configured one with a catalog and every one
 * with offers in the cache. Each is asked (ask[i]) when it can be and its cache is stale or
 * --refresh, else answered from the cache. */
typedef struct plan {
  char *names[MAX_LIST * 2 + 1];
  bool ask[MAX_LIST * 2];
  size_t n;
} plan_t;

static void plan_add(plan_t *p, const char *name) {
  if (p->n < MAX_LIST * 2 && !listed(p->names, p->n, name))
    p->names[p->n++] = strdup(name);
}

static int make_plan(const args_t *a, const kite_store_offers_summary_t *cache, size_t n_cache,
                     plan_t *p) {
  if (a->n_providers) {
    for (size_t i = 0; i < a->n_providers; i++) {
      bool known = kite_registry_find(a->providers[i]) != NULL;
      for (size_t k = 0; !known && k < n_cache; k++)
        known = strcmp(cache[k].provider, a->providers[i]) == 0;
      if (!known)
        return cli_usage(CMD,
                         "kite has no provider called '%s' and no offers of it cached (`kite "
                         "providers` lists the providers; `kite offers --import FILE --provider "
                         "%s` stores a snapshot)",
                         a->providers[i], a->providers[i]);
      plan_add(p, a->providers[i]);
    }
  } else {
    for (size_t i = 0; kite_registry_at(i); i++)
      if (askable(kite_registry_at(i)->name, false))
        plan_add(p, kite_registry_at(i)->name);
    for (size_t k = 0; k < n_cache; k++)
      plan_add(p, cache[k].provider);
  }
  int64_t now = cli_now_ms();
  for (size_t i = 0; i < p->n; i++) {
    int64_t newest = 0;
    for (size_t k = 0; k < n_cache; k++)
      if (strcmp(cache[k].provider, p->names[i]) == 0)
        newest = cache[k].newest_api_ms;
    bool stale = now - newest >= (int64_t)KITE_CATALOG_TTL_MS;
    p->ask[i] = !a->cache_only && (a->refresh || stale) && askable(p->names[i], a->n_providers);
    if (a->refresh && !p->ask[i] && a->n_providers)
      fprintf(stderr, "kite offers: %s cannot be asked here (%s); its cached offers are used\n",
              p->names[i],
              kite_registry_find(p->names[i]) ? "kite's provider has no catalog"
                                              : "kite has no such provider, only a snapshot");
  }
  return 0;
}

/* Gathers the offers of plan: the providers asked in one kite_catalog_get (each started here
 * first), the others from the cache in another. */
static int gather(const plan_t *p, bool refresh, run_t *r) {
  char *home = cli_home();
  kite_runtime_options_t ro = {.home = home, .log_level = -1};
  int rc = kite_runtime_new(&r->rt, &ro);
  free(home);
  if (rc != 0) {
    cli_err("cannot start: %s", kite_strerror(rc));
    return rc;
  }
  const char *ask[MAX_LIST * 2 + 1] = {0}, *cached[MAX_LIST * 2 + 1] = {0};
  size_t na = 0, nc = 0;
  for (size_t i = 0; i < p->n; i++) {
    if (p->ask[i] && (rc = kite_registry_start(r->rt, p->names[i], NULL, NULL)) != 0)
      fprintf(stderr,
              "kite offers: cannot start the %s provider (%s); its cached offers are "
              "used\n",
              p->names[i], kite_strerror(rc));
    if (p->ask[i] && rc == 0)
      ask[na++] = p->names[i];
    else
      cached[nc++] = p->names[i];
  }
  kite_catalog_query_t qa = {.providers = ask, .refresh = refresh},
                       qc = {.providers = cached, .cache_only = true};
  rc = 0;
  if (na > 0 && (rc = kite_catalog_get(r->rt, &qa, on_offers, r)) == 0)
    r->pending++;
  if (rc == 0 && nc > 0 && (rc = kite_catalog_get(r->rt, &qc, on_offers, r)) == 0)
    r->pending++;
  if (rc != 0)
    cli_err("cannot read the catalog: %s", kite_strerror(rc));
  if (r->pending == 0)
    kite_runtime_shutdown(r->rt, NULL, NULL);
  kite_runtime_run(r->rt);
  kite_runtime_free(r->rt);
  return rc;
}

typedef struct ranked {
  const kite_offer_t *o;
  double price;
  unsigned misses;
  bool other_accel; /* an accelerator was asked for and this is not it */
} ranked_t;

static int by_price(const void *x, const void *y) {
  const ranked_t *a = x, *b = y;
  if (a->misses != b->misses)
    return a->misses < b->misses ? -1 : 1;
  if (a->price != b->price)
    return a->price < b->price ? -1 : 1;
  int d = strcmp(a->o->provider, b->o->provider);
  d = d ? d : strcmp(a->o->region, b->o->region);
  d = d ? d : strcmp(a->o->instance_type, b->o->instance_type);
  return d ? d : strcmp(a->o->zone, b->o->zone);
}

static const char *age_cell(const kite_offer_t *o, int64_t now, char *buf, size_t size) {
  if (strncmp(o->source, "snapshot", 8) == 0) {
    const char *date = strrchr(o->source, ' ');
    snprintf(buf, size, "snapshot %s", date ? date + 1 : "");
    return buf;
  }
  int64_t s = (now - o->fetched_ms) / 1000;
  if (s < 0)
    s = 0;
  if (s < 3600)
    snprintf(buf, size, "%lldm", (long long)(s / 60));
  else if (s < 86400)
    snprintf(buf, size, "%lldh", (long long)(s / 3600));
  else
    snprintf(buf, size, "%lldd", (long long)(s / 86400));
  return buf;
}

static void price_cell(double p, char *buf, size_t size) {
  if (p < 0)
    snprintf(buf, size, "-");
  else
    snprintf(buf, size, "%.4g", p);
}

#define NCOLS 10
static const char *const heads[NCOLS] = {"PROVIDER", "REGION", "ZONE", "TYPE",     "VCPUS",
                                         "MEMORY",   "ACCEL",  "$/H",  "SPOT $/H", "AGE"};

static void cells(const kite_offer_t *o, int64_t now, char c[NCOLS][72]) {
  snprintf(c[0], 72, "%s", o->provider);
  snprintf(c[1], 72, "%s", o->region);
  snprintf(c[2], 72, "%s", o->zone[0] ? o->zone : "-");
  snprintf(c[3], 72, "%s", o->instance_type);
  snprintf(c[4], 72, "%u", o->vcpus);
  snprintf(c[5], 72, "%.4g GiB", (double)o->memory_mb / 1024);
  if (o->accelerator[0] && o->accelerator_memory_mb)
    snprintf(c[6], 72, "%ux %s %.0fG", o->accelerator_count, o->accelerator,
             (double)o->accelerator_memory_mb / 1024);
  else if (o->accelerator[0])
    snprintf(c[6], 72, "%ux %s", o->accelerator_count, o->accelerator);
  else
    snprintf(c[6], 72, "-");
  price_cell(o->price, c[7], 72);
  price_cell(o->spot_price, c[8], 72);
  age_cell(o, now, c[9], 72);
}

static void print_table(const ranked_t *v, size_t n) {
  int64_t now = cli_now_ms();
  char(*c)[NCOLS][72] = calloc(n ? n : 1, sizeof(*c));
  int w[NCOLS];
  for (int k = 0; k < NCOLS; k++)
    w[k] = (int)strlen(heads[k]);
  for (size_t i = 0; i < n; i++) {
    cells(v[i].o, now, c[i]);
    for (int k = 0; k < NCOLS; k++)
      if ((int)strlen(c[i][k]) > w[k])
        w[k] = (int)strlen(c[i][k]);
  }
  /* Numbers are right-aligned, text left-aligned. */
  static const bool right[NCOLS] = {false, false, false, false, true,
                                    true,  false, true,  true,  false};
  for (size_t i = 0; i <= n; i++) {
    for (int k = 0; k < NCOLS; k++) {
      const char *t = i == 0 ? heads[k] : c[i - 1][k];
      if (k == NCOLS - 1)
        printf("%s\n", t);
      else
        printf(right[k] ? "%*s  " : "%-*s  ", w[k], t);
    }
  }
  free(c);
}

/* "from digitalocean api (38), vast snapshot vast-vms.csv 2025-06-01 (67)". */
static void print_sources(const kite_offer_t *v, size_t n) {
  const char *seen_p[32], *seen_s[32];
  size_t counts[32], k = 0;
  for (size_t i = 0; i < n; i++) {
    size_t j = 0;
    while (j < k && !(strcmp(seen_p[j], v[i].provider) == 0 && strcmp(seen_s[j], v[i].source) == 0))
      j++;
    if (j == k && k < 32) {
      seen_p[k] = v[i].provider;
      seen_s[k] = v[i].source;
      counts[k++] = 0;
    }
    if (j < k)
      counts[j]++;
  }
  for (size_t j = 0; j < k; j++)
    printf("%s%s %s (%zu)", j ? ", " : " from ", seen_p[j], seen_s[j], counts[j]);
}

static int print_json(const ranked_t *v, size_t n) {
  kite_offer_t *flat = malloc((n ? n : 1) * sizeof(*flat));
  for (size_t i = 0; flat && i < n; i++)
    flat[i] = *v[i].o;
  char *text = flat ? kite_offers_json(flat, n) : NULL;
  json_t *a = text ? json_loads(text, 0, NULL) : NULL;
  free(text);
  free(flat);
  if (a == NULL) {
    cli_err("out of memory");
    return CLI_EXIT_FAIL;
  }
  int64_t now = cli_now_ms();
  for (size_t i = 0; i < n; i++)
    json_object_set_new(json_array_get(a, i), "age_s",
                        json_integer((now - v[i].o->fetched_ms) / 1000));
  char *out = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  printf("%s\n", out ? out : "[]");
  free(out);
  return 0;
}

/* Closest first: the accelerator asked for before any other, then fewer misses, then price. */
static int by_closeness(const void *x, const void *y) {
  const ranked_t *a = x, *b = y;
  if (a->other_accel != b->other_accel)
    return a->other_accel ? 1 : -1;
  return by_price(x, y);
}

/* The closest offers, one per provider and type (the same type elsewhere misses alike). */
static void print_closest(ranked_t *v, size_t n, const kite_offer_need_t *need) {
  qsort(v, n, sizeof(*v), by_closeness);
  fprintf(stderr, "kite offers: no offer matches (of %zu); the closest:\n", n);
  for (size_t i = 0, shown = 0; i < n && shown < 5; i++) {
    bool again = false;
    for (size_t k = 0; k < i && !again; k++)
      again = strcmp(v[k].o->provider, v[i].o->provider) == 0 &&
              strcmp(v[k].o->instance_type, v[i].o->instance_type) == 0;
    if (again)
      continue;
    shown++;
    char why[256], price[48] = "";
    kite_offer_misses(v[i].o, need, why, sizeof(why));
    double p = kite_offer_price(v[i].o, need->spot);
    if (p >= 0)
      snprintf(price, sizeof(price), ", $%.4g/h%s", p, need->spot ? " spot" : "");
    fprintf(stderr, "  %s %s in %s%s: %s\n", v[i].o->provider, v[i].o->instance_type,
            v[i].o->region, price, why);
  }
  fprintf(stderr, "Ask for less (fewer vCPUs or less memory, another accelerator, a higher "
                  "--max-price, more regions), or add offers (--refresh, --import).\n");
}

static int list(const args_t *a) {
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  kite_store_offers_summary_t *cache = NULL;
  size_t n_cache = 0;
  int rc = kite_store_offers_summary(st, &cache, &n_cache);
  if (rc != 0)
    cli_err("cannot read the offers cache: %s", kite_store_errmsg(st));
  kite_store_close(st);
  if (rc != 0)
    return CLI_EXIT_FAIL;
  plan_t p = {0};
  rc = make_plan(a, cache, n_cache, &p);
  free(cache);
  run_t r = {0};
  if (rc == 0 && p.n > 0 && gather(&p, a->refresh, &r) != 0)
    rc = CLI_EXIT_FAIL;
  for (size_t i = 0; i < p.n; i++)
    free(p.names[i]);
  if (rc != 0) {
    free(r.offers);
    free(r.notes);
    return rc;
  }
  if (r.notes)
    fprintf(stderr, "kite offers: %s\n", r.notes);
  if (r.n == 0) {
    if (a->json)
      printf("[]\n");
    fprintf(stderr,
            "kite offers: no offers %s: import a snapshot (kite offers --import FILE "
            "--provider NAME) or configure a provider with a catalog and run kite "
            "offers --refresh\n",
            a->n_providers ? "of the providers named are known" : "are known");
    free(r.notes);
    return CLI_EXIT_FAIL;
  }
  ranked_t *v = malloc(r.n * sizeof(*v));
  size_t matched = 0;
  for (size_t i = 0; v && i < r.n; i++) {
    v[i].o = &r.offers[i];
    v[i].misses = kite_offer_misses(&r.offers[i], &a->need, NULL, 0);
    v[i].price = kite_offer_price(&r.offers[i], a->need.spot);
    if (v[i].price < 0)
      v[i].price = INFINITY;
    v[i].other_accel =
        a->need.accelerator && strcasecmp(r.offers[i].accelerator, a->need.accelerator) != 0;
    matched += v[i].misses == 0;
  }
  if (v == NULL) {
    cli_err("out of memory");
    free(r.offers);
    free(r.notes);
    return CLI_EXIT_FAIL;
  }
  qsort(v, r.n, sizeof(*v), by_price);
  size_t shown = a->limit > 0 && (size_t)a->limit < matched ? (size_t)a->limit : matched;
  int exit_code = 0;
  if (matched == 0) {
    if (a->json)
      printf("[]\n");
    print_closest(v, r.n, &a->need);
    exit_code = CLI_EXIT_FAIL;
  } else if (a->json) {
    exit_code = print_json(v, shown);
  } else {
    print_table(v, shown);
    printf("%zu of %zu offers matched", matched, r.n);
    if (shown < matched)
      printf(" (the cheapest %zu shown; --limit 0 shows all)", shown);
    printf(";");
    print_sources(r.offers, r.n);
    printf("\n");
  }
  free(v);
  free(r.offers);
  free(r.notes);
  return exit_code;
}

int cli_cmd_offers(int argc, char **argv) {
  args_t a = {0};
  int rc = parse_args(argc, argv, &a);
  if (rc == 0)
    rc = a.import ? import(&a) : list(&a);
  else if (rc == 1)
    rc = 0; /* --help */
  args_free(&a);
  return rc;
}
