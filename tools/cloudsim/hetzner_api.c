/* The Hetzner Cloud front of the emulator: the server and SSH key endpoints a provider needs,
 * with the paths, field names, status codes and error bodies of Hetzner's OpenAPI description
 * (specs/hetzner-cloud.json; the base URL is https://api.hetzner.cloud/v1, here /v1 on the
 * emulator). Servers are machines (machines.c): a server's id is its machine's, its
 * public_net.ipv4.ip is its node's loopback address, its ssh_keys become the node's
 * authorized key, and a cloud-config user_data's ed25519 host key becomes the node's host key
 * before the server is first reported running, as cloud-init installs it at first boot.
 *
 *   POST   /v1/servers        {name, server_type, image, location, ssh_keys (ids or names),
 *                             user_data, labels} → 201 {server, action, next_actions,
 *                             root_password: null}
 *   GET    /v1/servers        ?name=&label_selector=&status=&sort=&page=&per_page=
 *                             → {servers, meta: {pagination}} (and a Link header)
 *   GET    /v1/servers/{id}   {server}; status initializing (the node boots), starting (it
 *                             listens, --provision-ms still runs), running; off once its node
 *                             died; deleting until every process of the node is gone, then 404
 *   DELETE /v1/servers/{id}   → 200 {action: delete_server}
 *   POST   /v1/ssh_keys       {name, public_key, labels} → 201 {ssh_key}; the fingerprint is
 *                             the MD5 of the key blob in colon hex, as Hetzner's
 *   GET    /v1/ssh_keys       ?name=&fingerprint=&label_selector=&sort=&page=&per_page=
 *   GET    /v1/ssh_keys/{id}, DELETE /v1/ssh_keys/{id} → 204
 *   GET    /v1/server_types   ?name=&page=&per_page= → {server_types, meta: {pagination}}: each
 *                             type with its prices per location where it is sold (CX and CAX
 *                             in the German and Finnish locations only, CPX and CCX everywhere,
 *                             dearer in the US and Singapore), and one deprecated type (cx11)
 *
 *   GET    /_sim/hetzner/state               (control) every server with its labels
 *   POST   /_sim/hetzner/servers/{id}/kill   (control) the server's node dies at once; it
 *                                            vanishes (404), or with {"vanish": false} stays
 *                                            listed as "off", as a dead DigitalOcean droplet
 *
 * Errors are {"error": {"code", "message", "details"}} with Hetzner's codes: unauthorized
 * (401), invalid_input and json_error (400), not_found (404), uniqueness_error (409),
 * resource_limit_exceeded (403: --droplet-limit), resource_unavailable (412: --no-capacity),
 * rate_limit_exceeded (429), server_error (500). Labels are stored with the server and
 * filtered by label_selector (k=v, k==v, k!=v, k, !k, k in (…), k notin (…), comma-joined).
 *
 * A create of a deprecated type or of a type where it is not sold is invalid_input on the
 * field server_type. Billing: Hetzner bills servers by the hour, each hour begun paid whole,
 * up to a monthly cap (docs.hetzner.com, Cloud billing FAQ: "Die stündliche Nutzung eines
 * Servers wird immer aufgerundet"; "Billing system at Hetzner": "We round up partial hours");
 * each server carries its type's gross hourly price at its location, billed per hour begun.
 *
 * Not emulated: servers without an SSH key (Hetzner would mail a root password; here the create
 * is refused with invalid_input, unless a cloud-config user_data has ssh_authorized_keys),
 * start_after_create false, networks, volumes, firewalls, placement groups, and actions
 * (their ids are answered, GET /v1/actions is not). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudsim.h"

#define CLOUD "hetzner"
#define MAX_USER_DATA (32 * 1024)
#define PER_PAGE_DEFAULT 25
#define PER_PAGE_MAX 50
#define MAX_LABELS 64

typedef struct hz_key {
  uint64_t id;
  char *name, *public_key, *fingerprint;
  char created[32];
  json_t *labels;
  struct hz_key *next; /* newest first */
} hz_key_t;

static struct {
  hz_key_t *keys;
  uint64_t next_key_id, next_action_id;
} hz = {.next_key_id = 7311001, .next_action_id = 93000001};

/* ---- the catalog ---------------------------------------------------------------------------- */

/* Where a type is sold: Hetzner sells its CX (Intel/AMD shared) and CAX (Arm) types in its
 * German and Finnish locations only, CPX and CCX everywhere. */
enum { EU = 1, EVERYWHERE = 2 };

typedef struct server_type {
  int id;
  const char *name, *description, *cpu_type, *architecture, *category;
  int cores;
  double memory, disk;
  double hourly, monthly; /* net, EUR, in the German and Finnish locations */
  int where;
  /* No longer sold: listed with deprecated true and its deprecation, refused by creates. */
  bool deprecated;
} server_type_t;

static const server_type_t server_types[] = {
    {1, "cx11", "CX11", "shared", "x86", "cost_optimized", 1, 2, 20, 0.0070, 4.15, EU, true},
    {22, "cpx11", "CPX 11", "shared", "x86", "regular_purpose", 2, 2, 40, 0.0070, 4.35, EVERYWHERE,
     false},
    {23, "cpx21", "CPX 21", "shared", "x86", "regular_purpose", 3, 4, 80, 0.0121, 7.55, EVERYWHERE,
     false},
    {24, "cpx31", "CPX 31", "shared", "x86", "regular_purpose", 4, 8, 160, 0.0218, 13.60,
     EVERYWHERE, false},
    {25, "cpx41", "CPX 41", "shared", "x86", "regular_purpose", 8, 16, 240, 0.0403, 25.20,
     EVERYWHERE, false},
    {26, "cpx51", "CPX 51", "shared", "x86", "regular_purpose", 16, 32, 360, 0.0880, 54.90,
     EVERYWHERE, false},
    {45, "cax11", "CAX 11", "shared", "arm", "cost_optimized", 2, 4, 40, 0.0060, 3.79, EU, false},
    {93, "cax21", "CAX 21", "shared", "arm", "cost_optimized", 4, 8, 80, 0.0104, 6.49, EU, false},
    {94, "cax31", "CAX 31", "shared", "arm", "cost_optimized", 8, 16, 160, 0.0200, 12.49, EU,
     false},
    {95, "cax41", "CAX 41", "shared", "arm", "cost_optimized", 16, 32, 320, 0.0392, 24.49, EU,
     false},
    {96, "ccx13", "CCX 13 Dedicated CPU", "dedicated", "x86", "general_purpose", 2, 8, 80, 0.0200,
     12.49, EVERYWHERE, false},
    {97, "ccx23", "CCX 23 Dedicated CPU", "dedicated", "x86", "general_purpose", 4, 16, 160, 0.0392,
     24.49, EVERYWHERE, false},
    {98, "ccx33", "CCX 33 Dedicated CPU", "dedicated", "x86", "general_purpose", 8, 32, 240, 0.0777,
     48.49, EVERYWHERE, false},
    {104, "cx22", "CX22", "shared", "x86", "cost_optimized", 2, 4, 40, 0.0060, 3.79, EU, false},
    {105, "cx32", "CX32", "shared", "x86", "cost_optimized", 4, 8, 80, 0.0109, 6.80, EU, false},
    {106, "cx42", "CX42", "shared", "x86", "cost_optimized", 8, 16, 160, 0.0263, 16.40, EU, false},
    {107, "cx52", "CX52", "shared", "x86", "cost_optimized", 16, 32, 320, 0.0519, 32.40, EU, false},
};

typedef struct location {
  int id, dc_id;
  const char *name, *description, *country, *city, *network_zone, *dc_name, *dc_description;
  double latitude, longitude;
  /* Its prices against the German and Finnish ones (Hetzner's US and Singapore locations cost
   * more). */
  double price_factor;
} location_t;

static const location_t locations[] = {
    {1, 4, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", "eu-central", "fsn1-dc14",
     "Falkenstein 1 virtual DC 14", 50.47612, 12.370071, 1.0},
    {2, 2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", "eu-central", "nbg1-dc3",
     "Nuremberg 1 virtual DC 3", 49.452102, 11.076665, 1.0},
    {3, 3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", "eu-central", "hel1-dc2",
     "Helsinki 1 virtual DC 2", 60.169855, 24.938379, 1.0},
    {4, 5, "ash", "Ashburn, VA", "US", "Ashburn, VA", "us-east", "ash-dc1", "Ashburn virtual DC 1",
     39.045821, -77.487073, 1.2},
    {5, 6, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", "us-west", "hil-dc1",
     "Hillsboro virtual DC 1", 45.54222, -122.951924, 1.2},
    {6, 7, "sin", "Singapore", "SG", "Singapore", "ap-southeast", "sin-dc1",
     "Singapore virtual DC 1", 1.283333, 103.833333, 1.4},
};

/* Whether type t is sold at location l. */
static bool sold_at(const server_type_t *t, const location_t *l) {
  return t->where == EVERYWHERE || strcmp(l->network_zone, "eu-central") == 0;
}

typedef struct image {
  int id;
  const char *name, *description, *os_flavor, *os_version;
} image_t;

static const image_t images[] = {
    {67794396, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04"},
    {161547269, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04"},
    {114690387, "debian-12", "Debian 12", "debian", "12"},
    {114690389, "debian-11", "Debian 11", "debian", "11"},
    {186187311, "fedora-41", "Fedora 41", "fedora", "41"},
    {76766499, "rocky-9", "Rocky Linux 9", "rocky", "9"},
    {76766502, "alma-9", "AlmaLinux 9", "alma", "9"},
    {59752342, "centos-stream-9", "CentOS Stream 9", "centos", "9"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const server_type_t *server_type_find(const char *name) {
  for (size_t i = 0; name && i < COUNT(server_types); i++)
    if (strcmp(server_types[i].name, name) == 0 || atoi(name) == server_types[i].id)
      return &server_types[i];
  return NULL;
}

static const location_t *location_find(const char *name) {
  for (size_t i = 0; name && i < COUNT(locations); i++)
    if (strcmp(locations[i].name, name) == 0 || atoi(name) == locations[i].id)
      return &locations[i];
  return NULL;
}

static const image_t *image_find(const char *name) {
  for (size_t i = 0; name && i < COUNT(images); i++)
    if (strcmp(images[i].name, name) == 0 || atoi(name) == images[i].id)
      return &images[i];
  return NULL;
}

/* ---- errors --------------------------------------------------------------------------------- */

/* {"error": {"code", "message", "details"}}, the error schema of every operation. */
static void error_with(http_resp_t *resp, int status, const char *code, const char *message,
                       json_t *details) {
  json_t *j = json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", message, "details",
                        details ? details : json_null());
  http_json(resp, status, json_dumps(j, JSON_COMPACT));
  json_decref(j);
}

static void hz_error(http_resp_t *resp, int status, const char *code, const char *message) {
  error_with(resp, status, code, message, NULL);
}

/* invalid_input naming the field, as Hetzner's details.fields do. */
static void invalid(http_resp_t *resp, const char *field, const char *why) {
  char msg[512];
  snprintf(msg, sizeof(msg), "invalid input in field '%s': %s", field, why);
  error_with(resp, 400, "invalid_input", msg,
             json_pack("{s:[{s:s, s:[s]}]}", "fields", "name", field, "messages", why));
}

static void not_found(http_resp_t *resp, const char *what, const char *id) {
  char msg[256];
  snprintf(msg, sizeof(msg), "%s with ID '%s' not found", what, id);
  hz_error(resp, 404, "not_found", msg);
}

static void uniqueness(http_resp_t *resp, const char *field, const char *message) {
  error_with(resp, 409, "uniqueness_error", message,
             json_pack("{s:[{s:s}]}", "fields", "name", field));
}

/* ---- small things --------------------------------------------------------------------------- */

static void now_iso(char out[32]) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
}

static bool parse_id(const char *s, uint64_t *id) {
  char *end = NULL;
  if (s == NULL || !isdigit((unsigned char)*s))
    return false;
  unsigned long long v = strtoull(s, &end, 10);
  *id = v;
  return *end == '\0';
}

/* A hostname as RFC 1123 has it: dot-separated labels of letters, digits and inner dashes. */
static bool valid_hostname(const char *s) {
  size_t n = strlen(s), label = 0;
  if (n == 0 || n > 253)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '.') {
      if (label == 0 || s[i - 1] == '-')
        return false;
      label = 0;
    } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
      if (++label > 63)
        return false;
    } else {
      return false;
    }
  }
  return label > 0 && s[n - 1] != '-';
}

/* ---- labels --------------------------------------------------------------------------------- */

/* Hetzner's label name (and value, which may also be empty): at most 63 of [a-zA-Z0-9._-],
 * beginning and ending alphanumeric. */
static bool valid_label_name(const char *s, size_t n, bool empty_ok) {
  if (n == 0)
    return empty_ok;
  if (n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
      return false;
  return true;
}

/* A key is [prefix/]name, the prefix a DNS subdomain; hetzner.cloud/ is reserved. */
static bool valid_label_key(const char *k) {
  const char *slash = strrchr(k, '/');
  if (slash == NULL)
    return valid_label_name(k, strlen(k), false);
  size_t pl = (size_t)(slash - k);
  if (pl == 0 || pl > 253 || strncmp(k, "hetzner.cloud/", 14) == 0)
    return false;
  for (size_t i = 0; i < pl; i++)
    if (!isalnum((unsigned char)k[i]) && k[i] != '.' && k[i] != '-')
      return false;
  return valid_label_name(slash + 1, strlen(slash + 1), false);
}

/* Checks a request's labels object; NULL when it is fine, else why not. */
static const char *check_labels(json_t *labels) {
  if (labels == NULL)
    return NULL;
  if (!json_is_object(labels))
    return "labels must be an object of strings";
  if (json_object_size(labels) > MAX_LABELS)
    return "too many labels";
  const char *k;
  json_t *v;
  json_object_foreach(labels, k, v) {
    if (!json_is_string(v))
      return "label values must be strings";
    if (!valid_label_key(k))
      return "a label key must be at most 63 of a-z, A-Z, 0-9, '.', '_' and '-', beginning and "
             "ending alphanumeric, with an optional DNS prefix and '/'";
    if (!valid_label_name(json_string_value(v), json_string_length(v), true))
      return "a label value must be empty or at most 63 of a-z, A-Z, 0-9, '.', '_' and '-', "
             "beginning and ending alphanumeric";
  }
  return NULL;
}

/* A server's labels live in its machine's tags as "key=value" (a key has no '='). */
static const char *machine_label(const machine_t *m, const char *key, size_t kl) {
  for (size_t i = 0; i < m->tag_n; i++)
    if (strncmp(m->tags[i], key, kl) == 0 && m->tags[i][kl] == '=')
      return m->tags[i] + kl + 1;
  return NULL;
}

static json_t *machine_labels(const machine_t *m) {
  json_t *j = json_object();
  for (size_t i = 0; i < m->tag_n; i++) {
    const char *eq = strchr(m->tags[i], '=');
    if (eq) {
      char *k = strndup(m->tags[i], (size_t)(eq - m->tags[i]));
      json_object_set_new(j, k, json_string(eq + 1));
      free(k);
    }
  }
  return j;
}

static const char *json_label(json_t *labels, const char *key, size_t kl) {
  char *k = strndup(key, kl);
  const char *v = json_string_value(json_object_get(labels, k));
  free(k);
  return v;
}

/* How a label selector asks for a label: the value of key (kl bytes) or NULL when absent. */
typedef const char *(*label_get_fn)(const void *obj, const char *key, size_t kl);

static const char *server_label(const void *obj, const char *key, size_t kl) {
  return machine_label(obj, key, kl);
}

static const char *key_label(const void *obj, const char *key, size_t kl) {
  return json_label(((const hz_key_t *)obj)->labels, key, kl);
}

static void trim(const char **s, const char **e) {
  while (*s < *e && isspace((unsigned char)**s))
    (*s)++;
  while (*e > *s && isspace((unsigned char)(*e)[-1]))
    (*e)--;
}

/* Whether v (vl bytes) is one of "(a,b,c)". */
static bool in_set(const char *set, const char *set_end, const char *v) {
  const char *p = set + 1, *end = set_end - 1;
  while (p <= end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *ie = comma ? comma : end;
    const char *s = p, *e = ie;
    trim(&s, &e);
    if (v && strlen(v) == (size_t)(e - s) && strncmp(v, s, (size_t)(e - s)) == 0)
      return true;
    p = ie + 1;
  }
  return false;
}

/* One expression of a label selector, [s, e). *ok false on a syntax error. */
static bool expr_match(const char *s, const char *e, label_get_fn get, const void *obj, bool *ok) {
  trim(&s, &e);
  if (s == e) {
    *ok = false;
    return false;
  }
  if (*s == '!') {
    s++;
    trim(&s, &e);
    return get(obj, s, (size_t)(e - s)) == NULL;
  }
  const char *op = s;
  while (op < e && (isalnum((unsigned char)*op) || strchr("._-/", *op)))
    op++;
  const char *key_end = op;
  size_t kl = (size_t)(key_end - s);
  const char *v = get(obj, s, kl);
  trim(&op, &e);
  if (op == e)
    return v != NULL; /* "k": present */
  const char *rest = NULL;
  bool negate = false, set = false;
  if (strncmp(op, "==", 2) == 0) {
    rest = op + 2;
  } else if (strncmp(op, "!=", 2) == 0) {
    rest = op + 2;
    negate = true;
  } else if (*op == '=') {
    rest = op + 1;
  } else if (strncmp(op, "in", 2) == 0 && (op[2] == ' ' || op[2] == '(')) {
    rest = op + 2;
    set = true;
  } else if (strncmp(op, "notin", 5) == 0 && (op[5] == ' ' || op[5] == '(')) {
    rest = op + 5;
    set = negate = true;
  } else {
    *ok = false;
    return false;
  }
  trim(&rest, &e);
  if (kl == 0) {
    *ok = false;
    return false;
  }
  if (set) {
    if (e - rest < 2 || *rest != '(' || e[-1] != ')') {
      *ok = false;
      return false;
    }
    bool in = in_set(rest, e, v);
    return negate ? !in : in;
  }
  bool eq = v && strlen(v) == (size_t)(e - rest) && strncmp(v, rest, (size_t)(e - rest)) == 0;
  return negate ? !eq : eq;
}

/* Whether obj's labels match selector (expressions joined by commas outside parentheses: all
 * of them must hold). *ok false when the selector cannot be read. */
static bool selector_match(const char *sel, label_get_fn get, const void *obj, bool *ok) {
  bool all = true;
  const char *p = sel;
  while (*p) {
    const char *q = p;
    int depth = 0;
    while (*q && (*q != ',' || depth > 0)) {
      depth += *q == '(' ? 1 : *q == ')' ? -1 : 0;
      q++;
    }
    all &= expr_match(p, q, get, obj, ok);
    p = *q ? q + 1 : q;
  }
  return all;
}

/* ---- pagination ----------------------------------------------------------------------------- */

typedef struct page {
  long page, per_page;
} page_t;

static bool parse_long(const char *s, long *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (end == s || *end)
    return false;
  *out = v;
  return true;
}

static bool parse_page(const http_req_t *req, http_resp_t *resp, page_t *p) {
  p->page = 1;
  p->per_page = PER_PAGE_DEFAULT;
  char *v = http_query_param(req, "page");
  bool ok = v == NULL || (parse_long(v, &p->page) && p->page >= 1);
  free(v);
  if (!ok) {
    invalid(resp, "page", "must be an integer of at least 1");
    return false;
  }
  v = http_query_param(req, "per_page");
  ok =
      v == NULL || (parse_long(v, &p->per_page) && p->per_page >= 1 && p->per_page <= PER_PAGE_MAX);
  free(v);
  if (!ok) {
    invalid(resp, "per_page", "must be an integer between 1 and 50");
    return false;
  }
  return true;
}

/* The request's query without page and per_page, for the Link header's URLs. */
static char *query_without_paging(const http_req_t *req) {
  char *out = calloc(1, strlen(req->query) + 2);
  size_t o = 0;
  for (const char *q = req->query; q && *q;) {
    const char *amp = strchr(q, '&');
    size_t len = amp ? (size_t)(amp - q) : strlen(q);
    if (len && strncmp(q, "page=", 5) != 0 && strncmp(q, "per_page=", 9) != 0) {
      memcpy(out + o, q, len);
      o += len;
      out[o++] = '&';
    }
    q = amp ? amp + 1 : NULL;
  }
  out[o] = '\0';
  return out;
}

/* meta.pagination, and a Link header with prev, next and last, as Hetzner sends them. */
static void add_pagination(json_t *out, const http_req_t *req, http_resp_t *resp, page_t p,
                           long total) {
  long last = total ? (total + p.per_page - 1) / p.per_page : 1;
  json_t *pg = json_pack("{s:I, s:I, s:o, s:o, s:I, s:I}", "page", (json_int_t)p.page, "per_page",
                         (json_int_t)p.per_page, "previous_page",
                         p.page > 1 ? json_integer(p.page - 1) : json_null(), "next_page",
                         p.page < last ? json_integer(p.page + 1) : json_null(), "last_page",
                         (json_int_t)last, "total_entries", (json_int_t)total);
  json_object_set_new(out, "meta", json_pack("{s:o}", "pagination", pg));
  const char *host = http_req_header(req, "Host");
  char *q = query_without_paging(req);
  char link[2048] = "";
  size_t l = 0;
  struct {
    const char *rel;
    long page;
    bool want;
  } rels[] = {
      {"prev", p.page - 1, p.page > 1}, {"next", p.page + 1, p.page < last}, {"last", last, true}};
  for (size_t i = 0; i < COUNT(rels); i++)
    if (rels[i].want && l < sizeof(link))
      l += (size_t)snprintf(link + l, sizeof(link) - l,
                            "%s<http://%s%s?%spage=%ld&per_page=%ld>; "
                            "rel=\"%s\"",
                            l ? ", " : "", host ? host : "localhost", req->path, q, rels[i].page,
                            p.per_page, rels[i].rel);
  free(q);
  if (l && l < sizeof(link))
    http_add_header(resp, "Link: %s", link);
}

/* Sorting by ?sort=field[:asc|:desc] (the first one given); id ascending by default. */
typedef struct sort {
  int field; /* 0 id, 1 name, 2 created */
  bool desc;
} sort_t;

static bool parse_sort(const http_req_t *req, http_resp_t *resp, bool created_ok, sort_t *s) {
  s->field = 0;
  s->desc = false;
  char *v = http_query_param(req, "sort");
  if (v == NULL)
    return true;
  char *colon = strchr(v, ':');
  bool ok = true;
  if (colon) {
    *colon = '\0';
    ok = strcmp(colon + 1, "asc") == 0 || strcmp(colon + 1, "desc") == 0;
    s->desc = ok && strcmp(colon + 1, "desc") == 0;
  }
  if (strcmp(v, "id") == 0)
    s->field = 0;
  else if (strcmp(v, "name") == 0)
    s->field = 1;
  else if (strcmp(v, "created") == 0 && created_ok)
    s->field = 2;
  else
    ok = false;
  free(v);
  if (!ok)
    invalid(resp, "sort",
            created_ok ? "must be id, name or created, with :asc or :desc"
                       : "must be id or name, with :asc or :desc");
  return ok;
}

static int sort_cmp(const sort_t *s, uint64_t ida, const char *na, const char *ca, uint64_t idb,
                    const char *nb, const char *cb) {
  int c = s->field == 1 ? strcmp(na, nb) : s->field == 2 ? strcmp(ca, cb) : 0;
  if (c == 0)
    c = ida < idb ? -1 : ida > idb;
  return s->desc ? -c : c;
}

/* ---- actions -------------------------------------------------------------------------------- */

static json_t *action_json(const char *command, uint64_t server_id) {
  char started[32];
  now_iso(started);
  return json_pack("{s:I, s:s, s:s, s:i, s:s, s:n, s:[{s:I, s:s}], s:n}", "id",
                   (json_int_t)hz.next_action_id++, "command", command, "status", "running",
                   "progress", 0, "started", started, "finished", "resources", "id",
                   (json_int_t)server_id, "type", "server", "error");
}

/* ---- rendering ------------------------------------------------------------------------------ */

static const char *server_status(const machine_t *m) {
  switch (m->state) {
  case M_PROVISIONING:
    return m->node_up ? "starting" : "initializing";
  case M_RUNNING:
    return "running";
  case M_OFF:
    return "off";
  case M_DELETING:
    return "deleting";
  default:
    return "unknown";
  }
}

static json_t *price(double net) {
  char n[32], g[32];
  snprintf(n, sizeof(n), "%.10f", net);
  snprintf(g, sizeof(g), "%.10f", net * 1.19);
  return json_pack("{s:s, s:s}", "net", n, "gross", g);
}

static json_t *server_type_json(const server_type_t *t) {
  json_t *prices = json_array(), *locs = json_array();
  for (size_t i = 0; i < COUNT(locations); i++) {
    const location_t *l = &locations[i];
    if (!sold_at(t, l))
      continue;
    bool eu = strcmp(l->network_zone, "eu-central") == 0;
    json_array_append_new(prices, json_pack("{s:s, s:o, s:o, s:I, s:o}", "location", l->name,
                                            "price_hourly", price(t->hourly * l->price_factor),
                                            "price_monthly", price(t->monthly * l->price_factor),
                                            "included_traffic",
                                            (json_int_t)(eu ? 21990232555520LL : 1099511627776LL),
                                            "price_per_tb_traffic", price(eu ? 1.0 : 7.4)));
    json_array_append_new(
        locs, json_pack("{s:i, s:s, s:n}", "id", l->id, "name", l->name, "deprecation"));
  }
  json_t *deprecation = t->deprecated
                            ? json_pack("{s:s, s:s}", "announced", "2024-06-06T00:00:00+00:00",
                                        "unavailable_after", "2024-09-06T00:00:00+00:00")
                            : json_null();
  return json_pack("{s:i, s:s, s:s, s:i, s:f, s:f, s:b, s:o, s:s, s:s, s:s, s:s, s:o, s:o}", "id",
                   t->id, "name", t->name, "description", t->description, "cores", t->cores,
                   "memory", t->memory, "disk", t->disk, "deprecated", t->deprecated, "prices",
                   prices, "storage_type", "local", "cpu_type", t->cpu_type, "architecture",
                   t->architecture, "category", t->category, "locations", locs, "deprecation",
                   deprecation);
}

/* The gross hourly price of type t at location l (what a server of it is billed). */
static double gross_hourly(const server_type_t *t, const location_t *l) {
  char g[32];
  snprintf(g, sizeof(g), "%.10f", t->hourly * l->price_factor * 1.19);
  return strtod(g, NULL);
}

static json_t *location_json(const location_t *l) {
  return json_pack("{s:i, s:s, s:s, s:s, s:s, s:f, s:f, s:s}", "id", l->id, "name", l->name,
                   "description", l->description, "country", l->country, "city", l->city,
                   "latitude", l->latitude, "longitude", l->longitude, "network_zone",
                   l->network_zone);
}

static json_t *datacenter_json(const location_t *l) {
  json_t *ids = json_array();
  for (size_t i = 0; i < COUNT(server_types); i++)
    if (sold_at(&server_types[i], l) && !server_types[i].deprecated)
      json_array_append_new(ids, json_integer(server_types[i].id));
  return json_pack("{s:i, s:s, s:s, s:o, s:{s:O, s:O, s:o}}", "id", l->dc_id, "name", l->dc_name,
                   "description", l->dc_description, "location", location_json(l), "server_types",
                   "supported", ids, "available", ids, "available_for_migration", ids);
}

static json_t *image_json(const image_t *im, const char *arch) {
  return json_pack("{s:i, s:s, s:s, s:s, s:s, s:n, s:f, s:s, s:n, s:n, s:s, s:s, s:b, s:{s:b},"
                   " s:n, s:n, s:{}, s:s}",
                   "id", im->id, "type", "system", "status", "available", "name", im->name,
                   "description", im->description, "image_size", "disk_size", 5.0, "created",
                   "2024-04-25T00:00:00+00:00", "created_from", "bound_to", "os_flavor",
                   im->os_flavor, "os_version", im->os_version, "rapid_deploy", 1, "protection",
                   "delete", 0, "deprecated", "deleted", "labels", "architecture", arch);
}

static json_t *ipv4_json(const machine_t *m) {
  const char *ip = machine_node_address(m);
  if (*ip == '\0')
    return json_null();
  unsigned a = 0, b = 0, c = 0, d = 0;
  sscanf(ip, "%u.%u.%u.%u", &a, &b, &c, &d);
  char ptr[96];
  snprintf(ptr, sizeof(ptr), "static.%u.%u.%u.%u.clients.your-server.de", d, c, b, a);
  return json_pack("{s:I, s:s, s:b, s:s}", "id", (json_int_t)(m->id + 40000000), "ip", ip,
                   "blocked", 0, "dns_ptr", ptr);
}

static json_t *server_json(const machine_t *m) {
  const server_type_t *t = server_type_find(m->size);
  const location_t *l = location_find(m->region);
  const image_t *im = image_find(m->image);
  if (t == NULL)
    t = &server_types[1]; /* creates take listed types only */
  if (l == NULL)
    l = &locations[0];
  if (im == NULL)
    im = &images[0];
  json_t *public_net = json_pack("{s:o, s:n, s:[], s:[]}", "ipv4", ipv4_json(m), "ipv6",
                                 "floating_ips", "firewalls");
  json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:o, s:[], s:o, s:o, s:o, s:o, s:n, s:b, s:b, s:n}",
                        "id", (json_int_t)m->id, "name", m->name, "status", server_status(m),
                        "created", m->created_at, "public_net", public_net, "private_net",
                        "server_type", server_type_json(t), "datacenter", datacenter_json(l),
                        "location", location_json(l), "image", image_json(im, t->architecture),
                        "iso", "rescue_enabled", 0, "locked", 0, "backup_window");
  json_object_set_new(j, "outgoing_traffic", json_integer(0));
  json_object_set_new(j, "ingoing_traffic", json_integer(0));
  json_object_set_new(j, "included_traffic", json_integer(21990232555520LL));
  json_object_set_new(j, "protection", json_pack("{s:b, s:b}", "delete", 0, "rebuild", 0));
  json_object_set_new(j, "labels", machine_labels(m));
  json_object_set_new(j, "volumes", json_array());
  json_object_set_new(j, "load_balancers", json_array());
  json_object_set_new(j, "primary_disk_size", json_integer((json_int_t)t->disk));
  json_object_set_new(j, "placement_group", json_null());
  return j;
}

/* ---- SSH keys ------------------------------------------------------------------------------- */

static json_t *key_json(const hz_key_t *k) {
  return json_pack("{s:I, s:s, s:s, s:s, s:O, s:s}", "id", (json_int_t)k->id, "name", k->name,
                   "fingerprint", k->fingerprint, "public_key", k->public_key, "labels", k->labels,
                   "created", k->created);
}

static json_t *any_server_json(const void *m) {
  return server_json(m);
}
static json_t *any_key_json(const void *k) {
  return key_json(k);
}

/* The answer to a list request: page p of the m matching items v (by to_json), with
 * meta.pagination; or invalid_input when the label selector could not be parsed (!ok). */
static void answer_page(const http_req_t *req, http_resp_t *resp, bool ok, page_t p,
                        const char *key, const void *const *v, size_t m,
                        json_t *(*to_json)(const void *)) {
  if (!ok) {
    invalid(resp, "label_selector", "cannot be parsed");
    return;
  }
  json_t *list = json_array();
  for (size_t i = 0; i < m; i++)
    if ((long)i >= (p.page - 1) * p.per_page && (long)i < p.page * p.per_page)
      json_array_append_new(list, to_json(v[i]));
  json_t *out = json_pack("{s:o}", key, list);
  add_pagination(out, req, resp, p, (long)m);
  http_json(resp, 200, sim_dump(out));
}

/* A key by id (digits) or by name. */
static hz_key_t *key_find(const char *ident) {
  uint64_t id = 0;
  bool numeric = parse_id(ident, &id);
  for (hz_key_t *k = hz.keys; k; k = k->next)
    if ((numeric && k->id == id) || strcmp(k->name, ident) == 0)
      return k;
  return NULL;
}

static void keys_create(const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  if (!json_is_object(body)) {
    json_decref(body);
    hz_error(resp, 400, "json_error", "the request body is not a JSON object");
    return;
  }
  const char *name = json_string_value(json_object_get(body, "name"));
  const char *pub = json_string_value(json_object_get(body, "public_key"));
  json_t *labels = json_object_get(body, "labels");
  char *fp = pub ? sim_key_fingerprint(pub) : NULL;
  const char *why = check_labels(labels);
  if (name == NULL || *name == '\0') {
    invalid(resp, "name", "is required");
  } else if (fp == NULL) {
    invalid(resp, "public_key", "is not a valid OpenSSH public key");
  } else if (why) {
    invalid(resp, "labels", why);
  } else {
    hz_key_t *dup = NULL;
    for (hz_key_t *k = hz.keys; k && !dup; k = k->next)
      if (strcmp(k->fingerprint, fp) == 0 || strcmp(k->name, name) == 0)
        dup = k;
    if (dup && strcmp(dup->fingerprint, fp) == 0) {
      uniqueness(resp, "public_key", "SSH key with the same fingerprint already exists");
    } else if (dup) {
      uniqueness(resp, "name", "SSH key with the same name already exists");
    } else {
      hz_key_t *k = calloc(1, sizeof(*k));
      k->id = hz.next_key_id++;
      k->name = strdup(name);
      k->public_key = strndup(pub, strcspn(pub, "\r\n"));
      k->fingerprint = fp;
      fp = NULL;
      k->labels = labels ? json_deep_copy(labels) : json_object();
      now_iso(k->created);
      k->next = hz.keys;
      hz.keys = k;
      http_json(resp, 201, sim_dump(json_pack("{s:o}", "ssh_key", key_json(k))));
    }
  }
  free(fp);
  json_decref(body);
}

static void keys_list(const http_req_t *req, http_resp_t *resp) {
  page_t p;
  sort_t so;
  if (!parse_page(req, resp, &p) || !parse_sort(req, resp, false, &so))
    return;
  char *name = http_query_param(req, "name");
  char *fp = http_query_param(req, "fingerprint");
  char *sel = http_query_param(req, "label_selector");
  size_t n = 0;
  for (hz_key_t *k = hz.keys; k; k = k->next)
    n++;
  hz_key_t **v = calloc(n + 1, sizeof(*v));
  size_t m = 0;
  bool ok = true;
  for (hz_key_t *k = hz.keys; k; k = k->next) {
    if ((name && strcmp(k->name, name) != 0) || (fp && strcmp(k->fingerprint, fp) != 0))
      continue;
    if (sel && !selector_match(sel, key_label, k, &ok))
      continue;
    /* Insertion in order. */
    size_t i = m++;
    while (i > 0 && sort_cmp(&so, v[i - 1]->id, v[i - 1]->name, "", k->id, k->name, "") > 0) {
      v[i] = v[i - 1];
      i--;
    }
    v[i] = k;
  }
  answer_page(req, resp, ok, p, "ssh_keys", (const void *const *)v, m, any_key_json);
  free(v);
  free(name);
  free(fp);
  free(sel);
}

static void key_free(hz_key_t *k) {
  free(k->name);
  free(k->public_key);
  free(k->fingerprint);
  json_decref(k->labels);
  free(k);
}

static void keys_delete(hz_key_t *k, http_resp_t *resp) {
  for (hz_key_t **pp = &hz.keys; *pp; pp = &(*pp)->next)
    if (*pp == k) {
      *pp = k->next;
      break;
    }
  key_free(k);
  resp->status = 204;
}

/* ---- servers -------------------------------------------------------------------------------- */

/* The node's tag: the server's kite-pool label, else its first label's value (so a test can
 * count what runs for its pool), else none. */
static const char *node_tag_of(json_t *labels) {
  const char *pool = json_string_value(json_object_get(labels, "kite-pool"));
  if (pool && *pool)
    return pool;
  void *it = labels ? json_object_iter(labels) : NULL;
  const char *first = it ? json_string_value(json_object_iter_value(it)) : NULL;
  return first && *first ? first : "kite-cloudsim-hetzner";
}

/* The first SSH key of the request (ids, names, or numbers), or NULL with resp set. */
static bool request_key(json_t *keys, hz_key_t **out, http_resp_t *resp) {
  *out = NULL;
  if (keys == NULL)
    return true;
  if (!json_is_array(keys)) {
    invalid(resp, "ssh_keys", "must be an array of SSH key ids or names");
    return false;
  }
  for (size_t i = 0; i < json_array_size(keys); i++) {
    json_t *k = json_array_get(keys, i);
    char ident[160];
    if (json_is_integer(k))
      snprintf(ident, sizeof(ident), "%lld", (long long)json_integer_value(k));
    else if (json_is_string(k))
      snprintf(ident, sizeof(ident), "%s", json_string_value(k));
    else
      ident[0] = '\0';
    hz_key_t *found = ident[0] ? key_find(ident) : NULL;
    if (found == NULL) {
      char why[256];
      snprintf(why, sizeof(why), "SSH key '%s' not found", ident);
      invalid(resp, "ssh_keys", why);
      return false;
    }
    if (*out == NULL)
      *out = found;
  }
  return true;
}

/* What a create asks for, checked. */
typedef struct create_args {
  const char *name, *user_data, *authorized_key;
  const server_type_t *type;
  const image_t *image;
  const location_t *loc;
  json_t *labels;
  char *ud_key; /* the authorized key from user_data, when no ssh_keys were given */
} create_args_t;

/* Reads and checks a create's body in the order Hetzner does; false with resp set. */
static bool create_args(json_t *body, create_args_t *a, http_resp_t *resp) {
  memset(a, 0, sizeof(*a));
  a->name = json_string_value(json_object_get(body, "name"));
  a->type = server_type_find(json_string_value(json_object_get(body, "server_type")));
  a->image = image_find(json_string_value(json_object_get(body, "image")));
  json_t *loc = json_object_get(body, "location"), *ud = json_object_get(body, "user_data");
  a->loc = loc ? location_find(json_string_value(loc)) : &locations[0];
  a->labels = json_object_get(body, "labels");
  json_t *start = json_object_get(body, "start_after_create");
  const char *why = check_labels(a->labels);
  hz_key_t *key = NULL;
  if (a->name == NULL || !valid_hostname(a->name))
    invalid(resp, "name", "must be a valid hostname (RFC 1123)");
  else if (a->type == NULL)
    invalid(resp, "server_type", "server type not found");
  else if (a->image == NULL)
    invalid(resp, "image", "image not found");
  else if (a->loc == NULL)
    invalid(resp, "location", "location not found");
  else if (a->type->deprecated)
    invalid(resp, "server_type", "server type is deprecated and no longer available");
  else if (!sold_at(a->type, a->loc))
    invalid(resp, "server_type", "unsupported location for server type");
  else if (why)
    invalid(resp, "labels", why);
  else if (ud && (!json_is_string(ud) || json_string_length(ud) > MAX_USER_DATA))
    invalid(resp, "user_data", "must be a string of at most 32 KiB");
  else if (start && !json_is_true(start))
    invalid(resp, "start_after_create", "kite-cloudsim starts every server it creates");
  else if (request_key(json_object_get(body, "ssh_keys"), &key, resp)) {
    a->user_data = json_string_value(ud);
    if (key == NULL)
      a->ud_key = sim_cloud_config_authorized_key(a->user_data);
    a->authorized_key = key ? key->public_key : a->ud_key;
    if (a->authorized_key)
      return true;
    invalid(resp, "ssh_keys",
            "kite-cloudsim emulates servers with SSH keys only: pass ssh_keys (or a "
            "cloud-config user_data with ssh_authorized_keys)");
  }
  return false;
}

static machine_t *server_new(sim_t *sim, const create_args_t *a) {
  const char *tagv[MAX_LABELS];
  char *owned[MAX_LABELS];
  size_t tag_n = 0;
  const char *k;
  json_t *v;
  json_object_foreach(a->labels, k, v) {
    owned[tag_n] = sim_sprintf("%s=%s", k, json_string_value(v));
    tagv[tag_n] = owned[tag_n];
    tag_n++;
  }
  machine_opts_t mo = {.cloud = CLOUD,
                       .name = a->name,
                       .tags = tagv,
                       .tag_n = tag_n,
                       .node_tag = node_tag_of(a->labels),
                       .region = a->loc->name,
                       .size = a->type->name,
                       .image = a->image->name,
                       .user_data = a->user_data,
                       .authorized_key = a->authorized_key,
                       .price_hourly = gross_hourly(a->type, a->loc),
                       .bill_increment_s = 3600,
                       .bill_minimum_s = 3600};
  machine_t *m = machine_create(sim, &mo);
  for (size_t i = 0; i < tag_n; i++)
    free(owned[i]);
  return m;
}

static void servers_create(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  if (!json_is_object(body)) {
    json_decref(body);
    hz_error(resp, 400, "json_error", "the request body is not a JSON object");
    return;
  }
  create_args_t a;
  if (create_args(body, &a, resp)) {
    bool taken = false;
    for (machine_t *m = sim->machines; m && !taken; m = m->next)
      taken = strcmp(m->cloud, CLOUD) == 0 && strcmp(m->name, a.name) == 0;
    if (taken) {
      uniqueness(resp, "name", "server name is already used");
    } else if (sim_admit(sim, &hetzner_front, machine_count_of(sim, CLOUD), 1, a.type->name,
                         a.loc->name, false, resp)) {
      machine_t *m = server_new(sim, &a);
      if (m == NULL) {
        hz_error(resp, 500, "server_error", "the server could not be created");
      } else {
        fprintf(stderr, "kite-cloudsim: hetzner server %llu (%s) created\n",
                (unsigned long long)m->id, m->name);
        json_t *out = json_pack("{s:o, s:o, s:[o], s:n}", "server", server_json(m), "action",
                                action_json("create_server", m->id), "next_actions",
                                action_json("start_server", m->id), "root_password");
        http_json(resp, 201, sim_dump(out));
      }
    }
  }
  free(a.ud_key);
  json_decref(body);
}

static bool status_wanted(const http_req_t *req, const char *status) {
  char *v = http_query_param_nth(req, "status", 0);
  if (v == NULL)
    return true;
  bool want = false;
  for (size_t i = 0; v; v = http_query_param_nth(req, "status", ++i)) {
    want |= strcmp(v, status) == 0;
    free(v);
  }
  return want;
}

static void servers_list(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  page_t p;
  sort_t so;
  if (!parse_page(req, resp, &p) || !parse_sort(req, resp, true, &so))
    return;
  char *name = http_query_param(req, "name");
  char *sel = http_query_param(req, "label_selector");
  size_t n = machine_count_of(sim, CLOUD), m = 0;
  machine_t **v = calloc(n + 1, sizeof(*v));
  bool ok = true;
  for (machine_t *s = sim->machines; s; s = s->next) {
    if (strcmp(s->cloud, CLOUD) != 0 || (name && strcmp(s->name, name) != 0) ||
        !status_wanted(req, server_status(s)))
      continue;
    if (sel && !selector_match(sel, server_label, s, &ok))
      continue;
    size_t i = m++;
    while (i > 0 && sort_cmp(&so, v[i - 1]->id, v[i - 1]->name, v[i - 1]->created_at, s->id,
                             s->name, s->created_at) > 0) {
      v[i] = v[i - 1];
      i--;
    }
    v[i] = s;
  }
  answer_page(req, resp, ok, p, "servers", (const void *const *)v, m, any_server_json);
  free(v);
  free(name);
  free(sel);
}

static json_t *any_type_json(const void *t) {
  return server_type_json(t);
}

/* GET /v1/server_types[?name=]: every type, deprecated ones too (as Hetzner lists them). */
static void server_types_list(const http_req_t *req, http_resp_t *resp) {
  page_t p;
  if (!parse_page(req, resp, &p))
    return;
  char *name = http_query_param(req, "name");
  const void *v[COUNT(server_types)];
  size_t m = 0;
  for (size_t i = 0; i < COUNT(server_types); i++)
    if (name == NULL || strcmp(name, server_types[i].name) == 0)
      v[m++] = &server_types[i];
  answer_page(req, resp, true, p, "server_types", v, m, any_type_json);
  free(name);
}

/* ---- routing -------------------------------------------------------------------------------- */

static void hz_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  const char *p = req->path;
  if (!http_bearer_is(req, sim->token)) {
    hz_error(resp, 401, "unauthorized", "unable to authenticate");
    return;
  }
  bool get = strcmp(req->method, "GET") == 0, post = strcmp(req->method, "POST") == 0;
  bool del = strcmp(req->method, "DELETE") == 0;
  uint64_t id = 0;
  if (strcmp(p, "/v1/servers") == 0 && (get || post)) {
    if (post)
      servers_create(sim, req, resp);
    else
      servers_list(sim, req, resp);
  } else if (strncmp(p, "/v1/servers/", 12) == 0 && (get || del)) {
    machine_t *m = parse_id(p + 12, &id) ? machine_find_of(sim, id, CLOUD) : NULL;
    if (m == NULL) {
      not_found(resp, "server", p + 12);
    } else if (get) {
      http_json(resp, 200, sim_dump(json_pack("{s:o}", "server", server_json(m))));
    } else {
      fprintf(stderr, "kite-cloudsim: hetzner server %llu (%s) deleted\n",
              (unsigned long long)m->id, m->name);
      json_t *out = json_pack("{s:o}", "action", action_json("delete_server", m->id));
      machine_delete(m);
      http_json(resp, 200, sim_dump(out));
    }
  } else if (strcmp(p, "/v1/server_types") == 0 && get) {
    server_types_list(req, resp);
  } else if (strcmp(p, "/v1/ssh_keys") == 0 && (get || post)) {
    if (post)
      keys_create(req, resp);
    else
      keys_list(req, resp);
  } else if (strncmp(p, "/v1/ssh_keys/", 13) == 0 && (get || del)) {
    hz_key_t *k = NULL;
    if (parse_id(p + 13, &id))
      for (k = hz.keys; k && k->id != id; k = k->next)
        ;
    if (k == NULL)
      not_found(resp, "SSH key", p + 13);
    else if (get)
      http_json(resp, 200, sim_dump(json_pack("{s:o}", "ssh_key", key_json(k))));
    else
      keys_delete(k, resp);
  } else {
    hz_error(resp, 404, "not_found", "the requested resource was not found");
  }
}

/* ---- control -------------------------------------------------------------------------------- */

static unsigned key_count(void) {
  unsigned n = 0;
  for (hz_key_t *k = hz.keys; k; k = k->next)
    n++;
  return n;
}

static bool hz_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  if (strncmp(req->path, "/_sim/hetzner/", 14) != 0)
    return false;
  unsigned long long id;
  char tail[16];
  if (strcmp(req->path, "/_sim/hetzner/state") == 0 && strcmp(req->method, "GET") == 0) {
    json_t *list = json_array();
    for (machine_t *m = sim->machines; m; m = m->next)
      if (strcmp(m->cloud, CLOUD) == 0)
        json_array_append_new(
            list, json_pack("{s:I, s:s, s:s, s:s, s:o, s:i}", "id", (json_int_t)m->id, "name",
                            m->name, "status", server_status(m), "address", m->address, "labels",
                            machine_labels(m), "pid", m->node ? kite_local_node_pid(m->node) : 0));
    http_json(resp, 200,
              sim_dump(json_pack("{s:i, s:i, s:o}", "live", machine_count_of(sim, CLOUD),
                                 "ssh_keys", key_count(), "servers", list)));
  } else if (sscanf(req->path, "/_sim/hetzner/servers/%llu/%15s", &id, tail) == 2 &&
             strcmp(tail, "kill") == 0 && strcmp(req->method, "POST") == 0) {
    machine_t *m = machine_find_of(sim, id, CLOUD);
    if (m == NULL) {
      http_error(resp, 404, "not_found", "no such server");
      return true;
    }
    json_error_t e;
    json_t *j = req->body_len ? json_loadb(req->body, req->body_len, 0, &e) : NULL;
    bool vanish = !(j && json_is_false(json_object_get(j, "vanish")));
    json_decref(j);
    fprintf(stderr, "kite-cloudsim: hetzner server %llu (%s) dies%s\n", id, m->name,
            vanish ? " and disappears" : "");
    machine_kill(m, vanish);
    http_json(resp, 200, strdup("{\"ok\":true}"));
  } else {
    http_error(resp, 404, "not_found", "no such control route");
  }
  return true;
}

static void hz_state(sim_t *sim, json_t *state) {
  json_object_set_new(state, "hetzner_servers", json_integer(machine_count_of(sim, CLOUD)));
  json_object_set_new(state, "hetzner_ssh_keys", json_integer(key_count()));
}

/* ---- the front ------------------------------------------------------------------------------ */

static void hz_no_capacity(http_resp_t *resp, const char *type, const char *location) {
  char msg[256];
  snprintf(msg, sizeof(msg), "server type %s is unavailable in location %s right now", type,
           location);
  hz_error(resp, 412, "resource_unavailable", msg);
}

static void hz_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  char msg[256];
  snprintf(msg, sizeof(msg), "server limit exceeded: the project may have %u servers, not %u",
           limit, wanted);
  error_with(resp, 403, "resource_limit_exceeded", msg,
             json_pack("{s:[{s:s}]}", "limits", "name", "server_limit"));
}

static void hz_free(sim_t *sim) {
  (void)sim;
  while (hz.keys) {
    hz_key_t *k = hz.keys;
    hz.keys = k->next;
    key_free(k);
  }
}

const sim_front_t hetzner_front = {
    .name = CLOUD,
    .path_prefix = "/v1/",
    .handle = hz_handle,
    .control = hz_control,
    .state = hz_state,
    .error = hz_error,
    .ratelimit_limit = 3600,
    .rate_limited = {429, "rate_limit_exceeded", "limit of 3600 requests per hour reached"},
    .server_error = {500, "server_error", "internal server error"},
    .malformed_body = "{\"server\": [}",
    .no_capacity = hz_no_capacity,
    .over_limit = hz_over_limit,
    .free = hz_free,
};
