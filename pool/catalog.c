/* The catalog (catalog.h): offers from the providers' APIs, cached in the state store, and
 * snapshots of public price data.
 *
 * Design notes
 * - What it owns: nothing that outlives a call but the request of one kite_catalog_get, which
 *   frees itself after its callback. The offers live in the store (core/store.c, the offers
 *   table); this file decides when the cache is good enough and when a provider is asked.
 * - What it emits: one catalog_request per provider whose cached API offers are older than the
 *   TTL (or asked with refresh), keyed by the provider's name. It reacts to the replies only.
 * - Falling back: a provider that cannot be asked (not started here, an error reply, an answer
 *   that is not offers) is answered from its cached API offers however old, else from its
 *   snapshot offers, and named in the callback's message with the reason. Nothing is dropped
 *   silently: a provider with nothing to fall back on is named too.
 * - The callback never runs inside kite_catalog_get: replies come through the bus's queue, and
 *   an answer from the cache alone waits for kite_bus_after (the bus's own deferral).
 * - Snapshots: SkyPilot's vms.csv files, read whole (the largest public one is a few MB),
 *   RFC 4180 records (quoted fields with commas, doubled quotes and line breaks; CRLF or LF),
 *   columns by header name in any order. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "kite/bus.h"
#include "kite/catalog.h"
#include "kite/error.h"
#include "kite/registry.h"
#include "kite/store.h"
#include "kite_impl.h"

/* A provider that takes longer than this to list what it sells is taken as not answering. */
#define CATALOG_TIMEOUT_MS (120u * 1000)

/* ---- why an offer misses --------------------------------------------------------------------- */

typedef struct why_buf {
  char *p;
  size_t size, len;
  unsigned n;
} why_buf_t;

__attribute__((format(printf, 2, 3))) static void miss(why_buf_t *w, const char *fmt, ...) {
  w->n++;
  if (w->p == NULL || w->len + 1 >= w->size)
    return;
  if (w->n > 1)
    w->len += (size_t)snprintf(w->p + w->len, w->size - w->len, "; ");
  if (w->len >= w->size)
    return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(w->p + w->len, w->size - w->len, fmt, ap);
  va_end(ap);
  w->len = k < 0 ? w->len : w->len + (size_t)k;
  if (w->len >= w->size)
    w->len = w->size - 1;
}

static bool in_list(const char *s, const char *const *list) {
  for (size_t i = 0; list && list[i]; i++)
    if (strcmp(s, list[i]) == 0)
      return true;
  return false;
}

unsigned kite_offer_misses(const kite_offer_t *o, const kite_offer_need_t *need, char *why,
                           size_t size) {
  why_buf_t w = {.p = why, .size = size};
  if (why && size > 0)
    why[0] = '\0';
  if (need->cpus > o->vcpus)
    miss(&w, "%u vCPUs, needs %u", o->vcpus, need->cpus);
  if (need->memory_mb > o->memory_mb)
    miss(&w, "%.1f GiB of memory, needs %.1f", (double)o->memory_mb / 1024,
         (double)need->memory_mb / 1024);
  if (need->accelerator && *need->accelerator) {
    unsigned want = need->accelerator_count ? need->accelerator_count : 1;
    if (strcasecmp(o->accelerator, need->accelerator) != 0)
      miss(&w, "%s%s, needs %s", o->accelerator[0] ? o->accelerator : "no accelerator",
           o->accelerator[0] ? " accelerators" : "", need->accelerator);
    else if (o->accelerator_count < want)
      miss(&w, "%u %s, needs %u", o->accelerator_count, o->accelerator, want);
  }
  double price = kite_offer_price(o, need->spot);
  if (price < 0)
    miss(&w, "%s", need->spot ? "no spot price" : "not sold on demand");
  else if (need->max_price > 0 && price > need->max_price)
    miss(&w, "$%.4g/h, at most $%.4g/h asked", price, need->max_price);
  if (need->regions && !in_list(o->region, need->regions))
    miss(&w, "in %s, not a region asked", o->region);
  if (o->available == 0)
    miss(&w, "none available now");
  return w.n;
}

/* ---- snapshots: SkyPilot's vms.csv ----------------------------------------------------------- */

/* The columns kite reads; any other is ignored. */
enum col {
  C_TYPE,
  C_ACC,
  C_ACC_COUNT,
  C_VCPUS,
  C_MEMORY,
  C_PRICE,
  C_SPOT,
  C_REGION,
  C_ZONE,
  C_GPUINFO,
  C__COUNT
};
static const char *const col_names[C__COUNT] = {
    "InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs",  "MemoryGiB", "Price",
    "SpotPrice",    "Region",          "AvailabilityZone", "GpuInfo"};

typedef struct csv {
  const char *name; /* the file's name, for messages */
  const char *p, *end;
  unsigned line; /* of the next character */
  char **fields; /* the fields of the last record (into buf) */
  size_t nf, cap_f;
  char *buf; /* unquoted text of the last record's fields, each NUL-terminated */
  size_t len, cap;
  char *err;
} csv_t;

static int csv_fail(csv_t *c, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int csv_fail(csv_t *c, unsigned line, const char *fmt, ...) {
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  free(c->err);
  c->err = kite__sprintf("%s:%u: %s", c->name, line, what);
  return KITE_EPROTO;
}

static int put_char(csv_t *c, char ch) {
  if (c->len == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 256;
    char *b = realloc(c->buf, cap);
    if (b == NULL)
      return KITE_ENOMEM;
    c->buf = b;
    c->cap = cap;
  }
  c->buf[c->len++] = ch;
  return 0;
}

/* Ends a field: its offset goes into fields (fixed up into pointers when the record ends,
 * since buf may move). */
static int end_field(csv_t *c, size_t start) {
  int rc = put_char(c, '\0');
  if (rc == 0 && c->nf == c->cap_f) {
    size_t cap = c->cap_f ? c->cap_f * 2 : 16;
    char **f = realloc(c->fields, cap * sizeof(*f));
    if (f == NULL)
      return KITE_ENOMEM;
    c->fields = f;
    c->cap_f = cap;
  }
  if (rc == 0)
    c->fields[c->nf++] = (char *)(uintptr_t)start;
  return rc;
}

/* Reads one record. 1 when one was read (*line its first line), 0 at the end of the file, or an
 * error. A line with nothing on it is skipped. */
static int csv_record(csv_t *c, unsigned *line) {
  while (c->p < c->end && (*c->p == '\n' || *c->p == '\r')) {
    if (*c->p == '\n')
      c->line++;
    c->p++;
  }
  if (c->p >= c->end)
    return 0;
  *line = c->line;
  c->len = 0;
  c->nf = 0;
  size_t start = 0;
  int rc = 0;
  for (;;) {
    if (c->p < c->end && *c->p == '"') {
      unsigned opened = c->line;
      c->p++;
      for (;;) {
        if (c->p >= c->end)
          return csv_fail(c, opened, "a quoted field is not closed (a '\"' is missing)");
        if (*c->p == '"' && c->p + 1 < c->end && c->p[1] == '"') {
          rc = put_char(c, '"');
          c->p += 2;
        } else if (*c->p == '"') {
          c->p++;
          break;
        } else {
          if (*c->p == '\n')
            c->line++;
          rc = put_char(c, *c->p++);
        }
        if (rc != 0)
          return rc;
      }
      if (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r')
        return csv_fail(c, c->line,
                        "text after a quoted field's closing '\"' (a field is "
                        "quoted whole, and a quote inside it is doubled)");
    } else {
      while (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r')
        if ((rc = put_char(c, *c->p++)) != 0)
          return rc;
    }
    if ((rc = end_field(c, start)) != 0)
      return rc;
    start = c->len;
    if (c->p < c->end && *c->p == ',') {
      c->p++;
      continue;
    }
    if (c->p < c->end && *c->p == '\r')
      c->p++;
    if (c->p < c->end && *c->p == '\n') {
      c->p++;
      c->line++;
    }
    break;
  }
  for (size_t i = 0; i < c->nf; i++)
    c->fields[i] = c->buf + (uintptr_t)c->fields[i];
  return 1;
}

/* A number field: empty is *out = empty_value; otherwise a finite number >= 0. */
static int csv_number(csv_t *c, unsigned line, const char *col, const char *s, double empty_value,
                      double *out) {
  while (isspace((unsigned char)*s))
    s++;
  if (*s == '\0') {
    *out = empty_value;
    return 0;
  }
  char *e;
  errno = 0;
  double v = strtod(s, &e);
  while (isspace((unsigned char)*e))
    e++;
  if (e == s || *e != '\0' || errno != 0 || !isfinite(v) || v < 0)
    return csv_fail(c, line, "%s is '%.40s', not a number (>= 0)", col, s);
  *out = v;
  return 0;
}

static int csv_text(csv_t *c, unsigned line, const char *col, const char *s, char *field,
                    size_t size) {
  if (kite_offer_set(field, size, s) != 0)
    return csv_fail(c, line, "%s '%.40s...' is longer than %zu characters", col, s, size - 1);
  return 0;
}

/* The per-accelerator memory in GpuInfo: MemoryInfo's SizeInMiB, in the Python-repr form
 * ('SizeInMiB': 40960, or lower case) or the JSON one ("SizeInMiB": 81920). 0 when absent. */
static uint64_t gpu_memory_mb(const char *info) {
  static const char key[] = "sizeinmib";
  for (const char *p = info; *p; p++) {
    if (strncasecmp(p, key, sizeof(key) - 1) != 0)
      continue;
    p += sizeof(key) - 1;
    while (*p == '\'' || *p == '"' || *p == ':' || *p == ' ')
      p++;
    char *e;
    double v = strtod(p, &e);
    return e != p && isfinite(v) && v > 0 && v < 1e9 ? (uint64_t)(v + 0.5) : 0;
  }
  return 0;
}

/* A price column: empty, and 0 (which the public data writes for "not published"), are -1. */
static int csv_price(csv_t *c, unsigned line, const char *col, const char *s, double *out) {
  int rc = csv_number(c, line, col, s, -1, out);
  if (rc == 0 && *out == 0)
    *out = -1;
  return rc;
}

static int csv_row(csv_t *c, unsigned line, const int *at, kite_offer_t *o) {
  const char *f[C__COUNT];
  for (int k = 0; k < C__COUNT; k++)
    f[k] = at[k] >= 0 ? c->fields[at[k]] : "";
  if (*f[C_TYPE] == '\0')
    return csv_fail(c, line, "InstanceType is empty");
  double vcpus, mem, count;
  int rc = csv_text(c, line, "InstanceType", f[C_TYPE], o->instance_type, sizeof(o->instance_type));
  rc = rc ? rc : csv_text(c, line, "Region", f[C_REGION], o->region, sizeof(o->region));
  rc = rc ? rc : csv_text(c, line, "AvailabilityZone", f[C_ZONE], o->zone, sizeof(o->zone));
  rc = rc ? rc
          : csv_text(c, line, "AcceleratorName", f[C_ACC], o->accelerator, sizeof(o->accelerator));
  rc = rc ? rc : csv_number(c, line, "vCPUs", f[C_VCPUS], 0, &vcpus);
  rc = rc ? rc : csv_number(c, line, "MemoryGiB", f[C_MEMORY], 0, &mem);
  rc = rc ? rc : csv_number(c, line, "AcceleratorCount", f[C_ACC_COUNT], 0, &count);
  rc = rc ? rc : csv_price(c, line, "Price", f[C_PRICE], &o->price);
  rc = rc ? rc : csv_price(c, line, "SpotPrice", f[C_SPOT], &o->spot_price);
  if (rc != 0)
    return rc;
  if (vcpus > 1e6 || mem > 1e9 || count > 1024)
    return csv_fail(c, line, "vCPUs, MemoryGiB or AcceleratorCount is out of range");
  o->vcpus = (unsigned)lround(vcpus);
  o->memory_mb = (uint64_t)llround(mem * 1024);
  o->accelerator_count = (unsigned)lround(count);
  if (o->accelerator[0] && o->accelerator_count == 0)
    o->accelerator_count = 1;
  o->accelerator_memory_mb = gpu_memory_mb(f[C_GPUINFO]);
  o->available = -1;
  return 0;
}

static int csv_header(csv_t *c, int *at) {
  unsigned line = 1;
  int rc = csv_record(c, &line);
  if (rc == 0)
    return csv_fail(c, 1, "the file is empty (a header line naming the columns is expected)");
  if (rc < 0)
    return rc;
  for (int k = 0; k < C__COUNT; k++)
    at[k] = -1;
  for (size_t i = 0; i < c->nf; i++) {
    const char *h = c->fields[i];
    if (i == 0 && (unsigned char)h[0] == 0xEF && (unsigned char)h[1] == 0xBB &&
        (unsigned char)h[2] == 0xBF)
      h += 3; /* a byte-order mark */
    for (int k = 0; k < C__COUNT; k++)
      if (strcmp(h, col_names[k]) == 0)
        at[k] = (int)i;
  }
  if (at[C_TYPE] < 0 || at[C_REGION] < 0)
    return csv_fail(c, line,
                    "no %s column (a SkyPilot vms.csv header names InstanceType, "
                    "Region, vCPUs, MemoryGiB, Price, SpotPrice...)",
                    at[C_TYPE] < 0 ? "InstanceType" : "Region");
  return 0;
}

/* "YYYY-MM-DD" → midnight UTC in ms since the epoch; -1 when it is not such a date. */
static int64_t date_ms(const char *d) {
  struct tm tm = {0};
  int y, m, day;
  char extra;
  if (strlen(d) != 10 || sscanf(d, "%4d-%2d-%2d%c", &y, &m, &day, &extra) != 3 || m < 1 || m > 12 ||
      day < 1 || day > 31 || y < 2000)
    return -1;
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = day;
  time_t t = timegm(&tm);
  struct tm back;
  if (t == (time_t)-1 || gmtime_r(&t, &back) == NULL || back.tm_mday != day)
    return -1;
  return (int64_t)t * 1000;
}

static int parse_text(csv_t *c, const char *provider, const char *source, int64_t fetched,
                      kite_offer_t **out, size_t *n) {
  int at[C__COUNT];
  int rc = csv_header(c, at);
  size_t cols = c->nf, cnt = 0, cap = 0;
  kite_offer_t *v = NULL;
  unsigned line = 0;
  while (rc == 0 && (rc = csv_record(c, &line)) == 1) {
    if (c->nf != cols) {
      rc = csv_fail(c, line, "%zu fields where the header names %zu", c->nf, cols);
      break;
    }
    if (cnt == cap) {
      cap = cap ? cap * 2 : 256;
      kite_offer_t *g = realloc(v, cap * sizeof(*v));
      if (g == NULL) {
        rc = KITE_ENOMEM;
        break;
      }
      v = g;
    }
    kite_offer_t *o = memset(&v[cnt], 0, sizeof(v[cnt]));
    rc = csv_row(c, line, at, o);
    snprintf(o->provider, sizeof(o->provider), "%s", provider);
    snprintf(o->source, sizeof(o->source), "%s", source);
    o->fetched_ms = fetched;
    cnt += rc == 0;
  }
  if (rc < 0) {
    free(v);
    return rc;
  }
  *out = v;
  *n = cnt;
  return 0;
}

int kite_catalog_parse(const char *provider, const char *path, const char *date, kite_offer_t **out,
                       size_t *n, char **msg) {
  *out = NULL;
  *n = 0;
  *msg = NULL;
  kite_offer_t probe;
  if (provider == NULL || *provider == '\0' || KITE_OFFER_SET(&probe, provider, provider) != 0) {
    *msg = kite__sprintf("a snapshot needs the provider it prices, a name of at most %zu "
                         "characters",
                         sizeof(probe.provider) - 1);
    return KITE_EINVAL;
  }
  char *text = NULL;
  size_t len = 0;
  int rc = kite__read_file(path, &text, &len);
  if (rc != 0) {
    *msg = kite__sprintf("%s: cannot read it (%s)", path, kite_strerror(rc));
    return KITE_EIO;
  }
  char day[16];
  if (date == NULL) {
    struct stat st;
    time_t t = stat(path, &st) == 0 ? st.st_mtime : time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(day, sizeof(day), "%Y-%m-%d", &tm);
    date = day;
  }
  int64_t fetched = date_ms(date);
  if (fetched < 0) {
    free(text);
    *msg = kite__sprintf("the snapshot's date '%s' is not a date YYYY-MM-DD (when the prices "
                         "were published)",
                         date);
    return KITE_EINVAL;
  }
  const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
  char source[sizeof(probe.source)];
  /* The file's name is cut, never the date, when both do not fit. */
  int room = (int)(sizeof(source) - strlen("snapshot  ") - strlen(date) - 1);
  snprintf(source, sizeof(source), "snapshot %.*s %s", room, base, date);
  csv_t c = {.name = path, .p = text, .end = text + len, .line = 1};
  rc = parse_text(&c, provider, source, fetched, out, n);
  if (rc != 0)
    *msg = c.err ? c.err : kite__sprintf("%s: %s", path, kite_strerror(rc));
  else
    free(c.err);
  free(c.fields);
  free(c.buf);
  free(text);
  return rc;
}

static int place_cmp(const void *a, const void *b) {
  const kite_offer_t *x = a, *y = b;
  int d = strcmp(x->region, y->region);
  d = d ? d : strcmp(x->zone, y->zone);
  d = d ? d : strcmp(x->instance_type, y->instance_type);
  /* Equal places keep the file's order (by address: the array is the file's rows), so the
   * last row of a place is the one kept. */
  return d ? d : (x < y ? -1 : x > y);
}

int kite_catalog_import(kite_runtime_t *rt, const char *provider, const char *path,
                        const char *date, size_t *n, char **msg) {
  *n = 0;
  kite_offer_t *v;
  size_t cnt;
  int rc = kite_catalog_parse(provider, path, date, &v, &cnt, msg);
  if (rc != 0)
    return rc;
  qsort(v, cnt, sizeof(*v), place_cmp);
  size_t kept = 0;
  for (size_t i = 0; i < cnt; i++) {
    bool repeated = i + 1 < cnt && strcmp(v[i].region, v[i + 1].region) == 0 &&
                    strcmp(v[i].zone, v[i + 1].zone) == 0 &&
                    strcmp(v[i].instance_type, v[i + 1].instance_type) == 0;
    if (!repeated)
      v[kept++] = v[i];
  }
  kite_store_t *st = NULL;
  rc = kite__runtime_store(rt, &st);
  if (rc == 0)
    rc = kite_store_offers_put(st, provider, NULL, true, v, kept);
  if (rc != 0)
    *msg = kite__sprintf("cannot store the snapshot's offers: %s",
                         st ? kite_store_errmsg(st) : "the state store cannot be opened");
  else
    *n = kept;
  free(v);
  return rc;
}

/* ---- kite_catalog_get ------------------------------------------------------------------------ */

typedef struct get_req get_req_t;

/* One provider of a request. */
typedef struct asked {
  get_req_t *req;
  char *name;
  bool waiting; /* its catalog_request is out */
} asked_t;

struct get_req {
  kite_runtime_t *rt;
  kite_store_t *st;
  kite_catalog_cb cb;
  void *data;
  asked_t *asked;
  size_t n_asked, waiting;
  kite_offer_t *offers;
  size_t n, cap;
  char *message; /* the providers that could not be asked, and why */
  int first_err;
};

static void req_free(get_req_t *r) {
  for (size_t i = 0; i < r->n_asked; i++)
    free(r->asked[i].name);
  free(r->asked);
  free(r->offers);
  free(r->message);
  free(r);
}

static int add_offers(get_req_t *r, const kite_offer_t *v, size_t n) {
  if (n == 0)
    return 0;
  if (r->n + n > r->cap) {
    size_t cap = r->cap ? r->cap : 64;
    while (cap < r->n + n)
      cap *= 2;
    kite_offer_t *g = realloc(r->offers, cap * sizeof(*g));
    if (g == NULL)
      return KITE_ENOMEM;
    r->offers = g;
    r->cap = cap;
  }
  memcpy(r->offers + r->n, v, n * sizeof(*v));
  r->n += n;
  return 0;
}

__attribute__((format(printf, 2, 3))) static void note(get_req_t *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *line = NULL;
  if (vasprintf(&line, fmt, ap) < 0)
    line = NULL;
  va_end(ap);
  if (line == NULL)
    return;
  char *m = r->message ? kite__sprintf("%s; %s", r->message, line) : line;
  if (m != line)
    free(line);
  free(r->message);
  r->message = m;
}

static bool is_snapshot(const kite_offer_t *o) {
  return strncmp(o->source, "snapshot", 8) == 0;
}

/* The cached offers of provider, in one malloc'd array: its API ones first (*newest the latest
 * fetch time of those), then its snapshot ones. */
typedef struct cached {
  kite_offer_t *all, *api, *snap;
  size_t n_api, n_snap;
  int64_t newest;
} cached_t;

static int read_cache(get_req_t *r, const char *provider, cached_t *c) {
  memset(c, 0, sizeof(*c));
  size_t n;
  int rc = kite_store_offers_get(r->st, provider, &c->all, &n);
  if (rc != 0)
    return rc;
  /* Partitioned in place; the order within each kind is of no matter (callers sort). */
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (is_snapshot(&c->all[i]))
      continue;
    if (c->all[i].fetched_ms > c->newest)
      c->newest = c->all[i].fetched_ms;
    if (i != k) {
      kite_offer_t t = c->all[k];
      c->all[k] = c->all[i];
      c->all[i] = t;
    }
    k++;
  }
  c->api = c->all;
  c->n_api = k;
  c->snap = c->all + k;
  c->n_snap = n - k;
  return 0;
}

static void cached_free(cached_t *c) {
  free(c->all);
}

static const char *age_text(int64_t ms, char *buf, size_t size) {
  int64_t s = ms / 1000;
  if (s < 120)
    snprintf(buf, size, "%llds", (long long)s);
  else if (s < 2 * 3600)
    snprintf(buf, size, "%lldm", (long long)(s / 60));
  else if (s < 2 * 86400)
    snprintf(buf, size, "%lldh", (long long)(s / 3600));
  else
    snprintf(buf, size, "%lldd", (long long)(s / 86400));
  return buf;
}

/* A provider that could not be asked: its cached API offers however old, else its snapshot. */
static int fall_back(get_req_t *r, const char *provider, const char *why) {
  cached_t c;
  int rc = read_cache(r, provider, &c);
  if (rc != 0) {
    note(r, "%s: %s, and its cached offers cannot be read (%s)", provider, why,
         kite_store_errmsg(r->st));
    return 0;
  }
  char age[32];
  if (c.n_api > 0) {
    rc = add_offers(r, c.api, c.n_api);
    note(r, "%s: %s; its %zu offers cached %s ago are used", provider, why, c.n_api,
         age_text((int64_t)kite__wall_ms() - c.newest, age, sizeof(age)));
  } else if (c.n_snap > 0) {
    rc = add_offers(r, c.snap, c.n_snap);
    note(r, "%s: %s; its %zu offers of the %s are used (not live prices)", provider, why, c.n_snap,
         c.snap[0].source);
  } else {
    note(r, "%s: %s, and nothing of it is cached", provider, why);
  }
  cached_free(&c);
  return rc;
}

static void finish_req(get_req_t *r) {
  int status = 0;
  if (r->n == 0 && r->message)
    status = r->first_err ? r->first_err : KITE_ENOENT;
  if (r->n_asked == 0)
    status = KITE_ENOENT;
  r->cb(status, r->offers, r->n,
        r->n_asked == 0 ? "no provider to ask: none has a catalog and is configured here"
                        : r->message,
        r->data);
  req_free(r);
}

static void on_after(kite_bus_t *bus, int status, const kite_event_t *reply, void *data) {
  (void)bus;
  (void)status;
  (void)reply;
  finish_req(data);
}

/* The offers of one catalog reply, checked and stamped, into the cache and the answer. */
static int take_reply(get_req_t *r, asked_t *a, const kite_ev_catalog_t *p, char **why) {
  kite_offer_t *v = NULL;
  size_t n = 0;
  char *msg = NULL;
  int rc = kite_offers_parse(p->offers ? p->offers : "[]", &v, &n, &msg);
  if (rc != 0) {
    *why = kite__sprintf("its answer is not a list of offers (%s)", msg ? msg : kite_strerror(rc));
    free(msg);
    return rc;
  }
  int64_t now = (int64_t)kite__wall_ms();
  for (size_t i = 0; i < n; i++) {
    snprintf(v[i].provider, sizeof(v[i].provider), "%s", a->name);
    if (v[i].fetched_ms <= 0)
      v[i].fetched_ms = now;
    if (v[i].source[0] == '\0' || is_snapshot(&v[i]))
      snprintf(v[i].source, sizeof(v[i].source), "api");
  }
  const char *region = p->region && *p->region ? p->region : NULL;
  rc = kite_store_offers_put(r->st, a->name, region, false, v, n);
  if (rc != 0)
    note(r, "%s: its %zu offers could not be cached (%s)", a->name, n, kite_store_errmsg(r->st));
  rc = add_offers(r, v, n);
  free(v);
  return rc;
}

static void on_reply(kite_bus_t *bus, int status, const kite_event_t *reply, void *data) {
  (void)bus;
  asked_t *a = data;
  get_req_t *r = a->req;
  char *why = NULL;
  const kite_ev_catalog_t *p = status == 0 ? kite_ev_as_catalog(reply) : NULL;
  if (status == 0 && p == NULL)
    status = KITE_EPROTO, why = kite__sprintf("it answered with another event than catalog");
  if (status == 0)
    status = take_reply(r, a, p, &why);
  if (status != 0) {
    if (why == NULL) {
      const kite_ev_reply_error_t *e = kite_ev_as_reply_error(reply);
      if (status == KITE_ENORESPONDER)
        why = kite__sprintf("no %s provider is running here to ask (start it, or run "
                            "`kite offers --refresh --provider %s`)",
                            a->name, a->name);
      else
        why = kite__sprintf("it could not be asked: %s (%s)",
                            e && e->message && *e->message ? e->message : kite_strerror(status),
                            kite_err_name(status));
    }
    if (r->first_err == 0)
      r->first_err = status;
    if (fall_back(r, a->name, why) != 0 && r->first_err == 0)
      r->first_err = KITE_ENOMEM;
  }
  free(why);
  a->waiting = false;
  if (--r->waiting == 0)
    finish_req(r);
}

/* The options of provider in q->options ({NAME: {...}}), as a JSON text (malloc'd) or NULL. */
static char *options_of(json_t *all, const char *provider) {
  json_t *o = all ? json_object_get(all, provider) : NULL;
  return o ? json_dumps(o, JSON_COMPACT) : NULL;
}

/* One provider from the cache (fresh, or cache_only), or asked: 1 when its request is out. */
static int gather(get_req_t *r, const kite_catalog_query_t *q, asked_t *a, json_t *options,
                  const kite_store_offers_summary_t *sum, size_t n_sum) {
  int64_t newest = 0;
  for (size_t i = 0; i < n_sum; i++)
    if (strcmp(sum[i].provider, a->name) == 0)
      newest = sum[i].api > 0 ? sum[i].newest_api_ms : 0;
  uint64_t ttl = q->ttl_ms ? q->ttl_ms : KITE_CATALOG_TTL_MS;
  int64_t now = (int64_t)kite__wall_ms();
  bool fresh = newest > 0 && now - newest < (int64_t)ttl;
  int rc;
  if (q->cache_only || (fresh && !q->refresh)) {
    cached_t c;
    if ((rc = read_cache(r, a->name, &c)) != 0)
      return rc;
    rc = c.n_api > 0 ? add_offers(r, c.api, c.n_api) : add_offers(r, c.snap, c.n_snap);
    cached_free(&c);
    return rc;
  }
  char *opts = options_of(options, a->name);
  kite_ev_catalog_request_t req = {.provider = a->name, .region = NULL, .options = opts};
  rc = kite_request_catalog_request(kite_runtime_bus(r->rt), &req, CATALOG_TIMEOUT_MS, on_reply, a,
                                    NULL);
  free(opts);
  if (rc != 0)
    return rc;
  a->waiting = true;
  r->waiting++;
  return 1;
}

/* The providers q names, or every configured one with a catalog. */
static int list_providers(get_req_t *r, const kite_catalog_query_t *q) {
  size_t cap = 0;
  if (q->providers)
    while (q->providers[cap])
      cap++;
  else
    while (kite_registry_at(cap))
      cap++;
  r->asked = calloc(cap ? cap : 1, sizeof(*r->asked));
  if (r->asked == NULL)
    return KITE_ENOMEM;
  for (size_t i = 0; i < cap; i++) {
    const char *name = q->providers ? q->providers[i] : NULL;
    if (name == NULL) {
      const kite_provider_info_t *p = kite_registry_at(i);
      if (!p->catalog || p->configured == NULL || !p->configured())
        continue;
      name = p->name;
    }
    bool dup = false;
    for (size_t k = 0; k < r->n_asked; k++)
      dup = dup || strcmp(r->asked[k].name, name) == 0;
    if (dup)
      continue;
    asked_t *a = &r->asked[r->n_asked];
    a->req = r;
    if ((a->name = kite__strdup(name)) == NULL)
      return KITE_ENOMEM;
    r->n_asked++;
  }
  return 0;
}

int kite_catalog_get(kite_runtime_t *rt, const kite_catalog_query_t *q, kite_catalog_cb cb,
                     void *data) {
  if (rt == NULL || q == NULL || cb == NULL)
    return KITE_EINVAL;
  json_t *options = NULL;
  if (q->options) {
    options = json_loads(q->options, 0, NULL);
    if (!json_is_object(options)) {
      json_decref(options);
      return KITE_EINVAL;
    }
  }
  get_req_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    json_decref(options);
    return KITE_ENOMEM;
  }
  r->rt = rt;
  r->cb = cb;
  r->data = data;
  int rc = kite__runtime_store(rt, &r->st);
  if (rc == 0)
    rc = list_providers(r, q);
  if (rc != 0) {
    json_decref(options);
    req_free(r);
    return rc;
  }
  kite_store_offers_summary_t *sum = NULL;
  size_t n_sum = 0;
  if ((rc = kite_store_offers_summary(r->st, &sum, &n_sum)) != 0) {
    json_decref(options);
    req_free(r);
    return rc;
  }
  for (size_t i = 0; i < r->n_asked; i++) {
    int g = gather(r, q, &r->asked[i], options, sum, n_sum);
    if (g < 0) {
      char why[128];
      snprintf(why, sizeof(why), "it cannot be asked (%s)", kite_strerror(g));
      r->first_err = r->first_err ? r->first_err : g;
      if (fall_back(r, r->asked[i].name, why) != 0)
        r->first_err = KITE_ENOMEM;
    }
  }
  json_decref(options);
  free(sum);
  if (r->waiting == 0 && (rc = kite_bus_after(kite_runtime_bus(rt), on_after, r, NULL)) != 0) {
    req_free(r);
    return rc;
  }
  return 0;
}
