/* The DigitalOcean v2 front of the emulator: the droplet and account-key endpoints kite uses,
 * with the paths, field names, status codes and error bodies of DigitalOcean's API reference
 * (the OpenAPI description in the specs). Droplets are machines (machines.c); a droplet's
 * public IPv4 address is its node's loopback address, and its ssh_keys become the node's
 * authorized key.
 *
 *   GET    /v2/account                       the account (droplet limit)
 *   GET    /v2/sizes[?page=&per_page=]       the sizes (sizes[] below), paginated
 *   GET    /v2/account/keys                  list keys (paginated)
 *   POST   /v2/account/keys                  add a key {name, public_key} → 201
 *   GET    /v2/account/keys/{id|fingerprint} one key, or 404
 *   DELETE /v2/account/keys/{id|fingerprint} → 204
 *   POST   /v2/droplets                      create one (name) or several (names) → 202
 *   GET    /v2/droplets[?tag_name=&name=&page=&per_page=]
 *   GET    /v2/droplets/{id}                 one droplet, or 404 once it is gone
 *   DELETE /v2/droplets/{id}                 → 204; the droplet stays listed (status "off")
 *                                             until its node's last process is gone
 *   DELETE /v2/droplets?tag_name=             → 204, every droplet with the tag
 *
 *   POST   /_sim/droplets/{id}/kill          (control) the droplet's node dies at once;
 *                                             {"vanish": false} leaves it listed as "off"
 *
 * A cloud-config user_data with an ed25519 host key under ssh_keys (ed25519_private,
 * ed25519_public, as cloud-init reads them) becomes the node's host key before the droplet
 * is first reported active, as cloud-init would install it at first boot (machines.c).
 *
 * Sizes: a table of DigitalOcean's sizes with their prices and regions (the CPU sizes of
 * SkyPilot's public DigitalOcean catalog in nyc1-3 and sfo1-3, its H100 sizes in tor1, and the
 * smallest size kite launches by default). A create of a size the table does not have is 422
 * "invalid size"; of a size it has but not in that region (or no longer available) 422 "not
 * available in this region", as DigitalOcean answers both.
 *
 * Billing: since 1 January 2026 DigitalOcean bills droplets per second, with a minimum charge
 * of 60 seconds (or $0.01); before, by the hour begun (DigitalOcean's community answers on
 * droplet billing, citing its changelog). Each droplet carries its size's price_hourly, billed
 * by the second with a 60-second minimum.
 *
 * Not emulated: droplets without ssh_keys (DigitalOcean would mail a root password; here the
 * create is refused with 422). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudsim.h"

#define CLOUD "digitalocean"
#define MAX_NAMES 10
#define MAX_USER_DATA (64 * 1024)

/* ---- keys ------------------------------------------------------------------------------------ */

static ssh_key_t *key_find(sim_t *sim, const char *ident) {
  char *end = NULL;
  unsigned long long id = strtoull(ident, &end, 10);
  bool numeric = end != ident && *end == '\0';
  for (ssh_key_t *k = sim->keys; k; k = k->next)
    if ((numeric && k->id == id) || strcmp(k->fingerprint, ident) == 0)
      return k;
  return NULL;
}

static json_t *key_json(const ssh_key_t *k) {
  return json_pack("{s:I, s:s, s:s, s:s}", "id", (json_int_t)k->id, "fingerprint", k->fingerprint,
                   "public_key", k->public_key, "name", k->name);
}

/* ---- sizes ----------------------------------------------------------------------------------- */

#define CPU_REGIONS "nyc1 nyc2 nyc3 sfo1 sfo2 sfo3"

typedef struct do_size {
  const char *slug, *description;
  int vcpus, memory_mb, disk_gb;
  double transfer_tb, monthly, hourly; /* USD */
  const char *regions;                 /* space-separated */
  bool available;
  const char *gpu_model; /* gpu_info, or NULL */
  int gpu_count, vram_gib;
} do_size_t;

static const do_size_t sizes[] = {
    {"s-1vcpu-512mb-10gb", "Basic", 1, 512, 10, 0.5, 4.00, 0.00595, "nyc1 sfo3", false, NULL, 0, 0},
    {"s-1vcpu-1gb", "Basic", 1, 1024, 25, 1.0, 6.00, 0.00893, CPU_REGIONS, true, NULL, 0, 0},
    {"s-4vcpu-8gb", "Basic", 4, 8192, 160, 5.0, 48.00, 0.07143, CPU_REGIONS, true, NULL, 0, 0},
    {"s-8vcpu-16gb", "Basic", 8, 16384, 320, 6.0, 99.00, 0.14732, CPU_REGIONS, true, NULL, 0, 0},
    {"g-2vcpu-8gb", "General Purpose", 2, 8192, 25, 4.0, 63.00, 0.09375, CPU_REGIONS, true, NULL, 0,
     0},
    {"g-16vcpu-64gb", "General Purpose", 16, 65536, 200, 9.0, 504.00, 0.75, CPU_REGIONS, true, NULL,
     0, 0},
    {"g-32vcpu-128gb", "General Purpose", 32, 131072, 400, 10.0, 1008.00, 1.5, CPU_REGIONS, true,
     NULL, 0, 0},
    {"g-48vcpu-192gb-intel", "General Purpose", 48, 196608, 1200, 11.0, 1814.00, 2.6994,
     CPU_REGIONS, true, NULL, 0, 0},
    {"gpu-h100x1-80gb", "H100 GPU - 1X", 20, 245760, 720, 15.0, 4529.28, 6.74, "tor1", true,
     "nvidia_h100", 1, 80},
    {"gpu-h100x8-640gb", "H100 GPU - 8X", 160, 1966080, 2046, 60.0, 31987.20, 47.60, "tor1", true,
     "nvidia_h100", 8, 640},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const do_size_t *size_find(const char *slug) {
  for (size_t i = 0; slug && i < COUNT(sizes); i++)
    if (strcmp(sizes[i].slug, slug) == 0)
      return &sizes[i];
  return NULL;
}

static bool size_in(const do_size_t *z, const char *region) {
  size_t n = region ? strlen(region) : 0;
  for (const char *p = z->regions; n && (p = strstr(p, region)) != NULL; p += n)
    if ((p == z->regions || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
      return true;
  return false;
}

/* The size object of the API reference (#/components/schemas/size). */
static json_t *size_json(const do_size_t *z) {
  json_t *regions = json_array();
  for (const char *p = z->regions; *p;) {
    size_t n = strcspn(p, " ");
    json_array_append_new(regions, json_stringn(p, n));
    p += n + strspn(p + n, " ");
  }
  json_t *j =
      json_pack("{s:s, s:i, s:i, s:i, s:f, s:f, s:f, s:o, s:b, s:s, s:[{s:s, s:{s:i, s:s}}]}",
                "slug", z->slug, "memory", z->memory_mb, "vcpus", z->vcpus, "disk", z->disk_gb,
                "transfer", z->transfer_tb, "price_monthly", z->monthly, "price_hourly", z->hourly,
                "regions", regions, "available", z->available, "description", z->description,
                "disk_info", "type", "local", "size", "amount", z->disk_gb, "unit", "gib");
  if (z->gpu_model)
    json_object_set_new(j, "gpu_info",
                        json_pack("{s:i, s:s, s:{s:i, s:s}}", "count", z->gpu_count, "model",
                                  z->gpu_model, "vram", "amount", z->vram_gib, "unit", "gib"));
  return j;
}

/* ---- rendering ------------------------------------------------------------------------------- */

static json_t *droplet_json(machine_t *m) {
  const do_size_t *z = size_find(m->size);
  if (z == NULL)
    z = &sizes[1]; /* creates take table sizes only */
  int vcpus = z->vcpus, memory = z->memory_mb;
  const char *status = m->state == M_RUNNING        ? "active"
                       : m->state == M_PROVISIONING ? "new"
                                                    : "off";
  json_t *tags = json_array();
  for (size_t i = 0; i < m->tag_n; i++)
    json_array_append_new(tags, json_string(m->tags[i]));
  json_t *v4 = json_array();
  if (m->state == M_RUNNING && m->address[0])
    json_array_append_new(v4, json_pack("{s:s, s:s, s:s, s:s}", "ip_address", m->address, "netmask",
                                        "255.0.0.0", "gateway", "127.0.0.1", "type", "public"));
  json_t *image = json_pack(
      "{s:i, s:s, s:s, s:s, s:s, s:b, s:[s], s:s, s:i, s:f, s:s, s:[], s:s}", "id", 7555620, "name",
      m->image, "type", "base", "distribution", "Ubuntu", "slug", m->image, "public", 1, "regions",
      m->region, "created_at", "2024-04-25T00:00:00Z", "min_disk_size", 10, "size_gigabytes", 2.36,
      "description", m->image, "tags", "status", "available");
  json_t *size = size_json(z);
  json_t *region =
      json_pack("{s:s, s:s, s:[s,s], s:b, s:[s]}", "name", m->region, "slug", m->region, "features",
                "metadata", "install_agent", "available", 1, "sizes", m->size);
  return json_pack("{s:I, s:s, s:i, s:i, s:i, s:b, s:s, s:s, s:[], s:[], s:n, s:[], s:o, s:[],"
                   " s:o, s:s, s:{s:o, s:[]}, s:o, s:o, s:s}",
                   "id", (json_int_t)m->id, "name", m->name, "memory", memory, "vcpus", vcpus,
                   "disk", z->disk_gb, "locked", 0, "status", status, "created_at", m->created_at,
                   "features", "backup_ids", "next_backup_window", "snapshot_ids", "image", image,
                   "volume_ids", "size", size, "size_slug", m->size, "networks", "v4", v4, "v6",
                   "region", region, "tags", tags, "vpc_uuid",
                   "760e09ef-dc84-11e8-981e-3cfdfeaae000");
}

/* ---- pagination ------------------------------------------------------------------------------ */

typedef struct page {
  long page, per_page;
} page_t;

static bool parse_page(const http_req_t *req, http_resp_t *resp, page_t *p) {
  p->page = 1;
  p->per_page = 20;
  char *v = http_query_param(req, "page");
  if (v)
    p->page = atol(v);
  free(v);
  v = http_query_param(req, "per_page");
  if (v)
    p->per_page = atol(v);
  free(v);
  if (p->page < 1 || p->per_page < 1 || p->per_page > 200) {
    http_error(resp, 400, "bad_request", "page must be >= 1 and per_page between 1 and 200");
    return false;
  }
  return true;
}

/* links.pages (first/prev/next/last) and meta.total, as DigitalOcean sends them. */
static void add_pages(json_t *out, const http_req_t *req, const char *extra_query, page_t p,
                      long total) {
  const char *host = http_req_header(req, "Host");
  long last = total ? (total + p.per_page - 1) / p.per_page : 1;
  json_t *pages = json_object();
  char url[1024];
#define LINK(name, n)                                                                              \
  do {                                                                                             \
    snprintf(url, sizeof(url), "http://%s%s?%s%spage=%ld&per_page=%ld", host ? host : "localhost", \
             req->path, extra_query, *extra_query ? "&" : "", (long)(n), p.per_page);              \
    json_object_set_new(pages, name, json_string(url));                                            \
  } while (0)
  if (p.page > 1) {
    LINK("first", 1);
    LINK("prev", p.page - 1);
  }
  if (p.page < last) {
    LINK("next", p.page + 1);
    LINK("last", last);
  }
#undef LINK
  json_object_set_new(out, "links", json_pack("{s:o}", "pages", pages));
  json_object_set_new(out, "meta", json_pack("{s:I}", "total", (json_int_t)total));
}

/* ---- droplets -------------------------------------------------------------------------------- */

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 255)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '-')
      return false;
  return true;
}

static bool valid_tag(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 255)
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && s[i] != ':' && s[i] != '-' && s[i] != '_')
      return false;
  return true;
}

static void droplets_create(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  if (!json_is_object(body)) {
    json_decref(body);
    http_error(resp, 400, "bad_request", "The request body must be a JSON object.");
    return;
  }
  json_t *name = json_object_get(body, "name"), *names = json_object_get(body, "names");
  json_t *size = json_object_get(body, "size"), *image = json_object_get(body, "image");
  json_t *region = json_object_get(body, "region"), *tags = json_object_get(body, "tags");
  json_t *keys = json_object_get(body, "ssh_keys"), *ud = json_object_get(body, "user_data");
  const char *err = NULL;
  char msg[512];
  const char *namev[MAX_NAMES];
  size_t name_n = 0;
  if ((name != NULL) == (names != NULL))
    err = "Specify exactly one of name and names.";
  else if (name && !json_is_string(name))
    err = "name must be a string.";
  else if (names && (!json_is_array(names) || json_array_size(names) == 0 ||
                     json_array_size(names) > MAX_NAMES))
    err = "names must be an array of 1 to 10 names.";
  if (err == NULL) {
    if (name)
      namev[name_n++] = json_string_value(name);
    for (size_t i = 0; names && i < json_array_size(names); i++) {
      json_t *v = json_array_get(names, i);
      if (!json_is_string(v)) {
        err = "names must be strings.";
        break;
      }
      namev[name_n++] = json_string_value(v);
    }
    for (size_t i = 0; err == NULL && i < name_n; i++)
      if (!valid_name(namev[i]))
        err = "Name Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)";
  }
  if (err == NULL && !json_is_string(size))
    err = "You specified an invalid size for Droplet creation.";
  if (err == NULL && !json_is_string(image) && !json_is_integer(image))
    err = "You specified an invalid image for Droplet creation.";
  if (err == NULL && region && !json_is_string(region))
    err = "You specified an invalid region for Droplet creation.";
  if (err == NULL && ud && (!json_is_string(ud) || json_string_length(ud) > MAX_USER_DATA))
    err = "user_data must be a string of at most 64 KiB.";
  const char *tagv[32];
  size_t tag_n = 0;
  if (err == NULL && tags && (!json_is_array(tags) || json_array_size(tags) > 32))
    err = "tags must be an array of at most 32 tag names.";
  for (size_t i = 0; err == NULL && tags && i < json_array_size(tags); i++) {
    json_t *t = json_array_get(tags, i);
    if (!json_is_string(t) || !valid_tag(json_string_value(t)))
      err = "Tag names may only contain letters, numbers, colons, dashes and underscores.";
    else
      tagv[tag_n++] = json_string_value(t);
  }
  ssh_key_t *key = NULL;
  if (err == NULL && (!json_is_array(keys) || json_array_size(keys) == 0))
    err = "kite-cloudsim emulates droplets with ssh_keys only: pass at least one key.";
  for (size_t i = 0; err == NULL && i < json_array_size(keys); i++) {
    json_t *k = json_array_get(keys, i);
    char ident[128];
    if (json_is_integer(k))
      snprintf(ident, sizeof(ident), "%lld", (long long)json_integer_value(k));
    else if (json_is_string(k))
      snprintf(ident, sizeof(ident), "%s", json_string_value(k));
    else
      ident[0] = '\0';
    ssh_key_t *found = key_find(sim, ident);
    if (found == NULL) {
      snprintf(msg, sizeof(msg), "The SSH key %s was not found in your account.", ident);
      err = msg;
    } else if (key == NULL) {
      key = found;
    }
  }
  const do_size_t *z = err ? NULL : size_find(json_string_value(size));
  if (err == NULL && z == NULL)
    err = "You specified an invalid size for Droplet creation.";
  else if (err == NULL && (!z->available || (region && !size_in(z, json_string_value(region)))))
    err = "Size is not available in this region.";
  if (err) {
    http_error(resp, 422, "unprocessable_entity", err);
    json_decref(body);
    return;
  }
  if (!sim_admit(sim, &do_front, machine_count_of(sim, CLOUD), (unsigned)name_n,
                 json_string_value(size), region ? json_string_value(region) : NULL, false, resp)) {
    json_decref(body);
    return;
  }
  char image_s[64];
  if (json_is_integer(image))
    snprintf(image_s, sizeof(image_s), "%lld", (long long)json_integer_value(image));
  else
    snprintf(image_s, sizeof(image_s), "%s", json_string_value(image));
  json_t *out_droplets = json_array(), *actions = json_array();
  const char *host = http_req_header(req, "Host");
  for (size_t i = 0; i < name_n; i++) {
    machine_opts_t mo = {.name = namev[i],
                         .tags = tagv,
                         .tag_n = tag_n,
                         .region = region ? json_string_value(region) : NULL,
                         .size = json_string_value(size),
                         .image = image_s,
                         .user_data = ud ? json_string_value(ud) : NULL,
                         .authorized_key = key->public_key,
                         .cloud = CLOUD,
                         .price_hourly = z->hourly,
                         .bill_increment_s = 1,
                         .bill_minimum_s = 60};
    machine_t *m = machine_create(sim, &mo);
    if (m == NULL)
      continue;
    fprintf(stderr, "kite-cloudsim: droplet %llu (%s) created\n", (unsigned long long)m->id,
            m->name);
    json_array_append_new(out_droplets, droplet_json(m));
    char href[256];
    snprintf(href, sizeof(href), "http://%s/v2/actions/%llu", host ? host : "localhost",
             (unsigned long long)(m->id + 1000000));
    json_array_append_new(actions, json_pack("{s:I, s:s, s:s}", "id", (json_int_t)(m->id + 1000000),
                                             "rel", "create", "href", href));
  }
  json_t *out;
  if (name)
    out = json_pack("{s:O, s:{s:o}}", "droplet", json_array_get(out_droplets, 0), "links",
                    "actions", actions);
  else
    out = json_pack("{s:O, s:{s:o}}", "droplets", out_droplets, "links", "actions", actions);
  json_decref(out_droplets);
  http_json(resp, 202, sim_dump(out));
  json_decref(body);
}

static void droplets_list(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  page_t p;
  if (!parse_page(req, resp, &p))
    return;
  char *tag = http_query_param(req, "tag_name");
  char *name = http_query_param(req, "name");
  json_t *all = json_array();
  /* Oldest first, as DigitalOcean lists them: the list is newest first. */
  size_t n = machine_count_of(sim, CLOUD);
  machine_t **v = calloc(n + 1, sizeof(*v));
  size_t k = 0;
  for (machine_t *m = sim->machines; m; m = m->next)
    if (strcmp(m->cloud, CLOUD) == 0)
      v[n - 1 - k++] = m;
  long total = 0;
  for (size_t i = 0; i < n; i++) {
    machine_t *m = v[i];
    if ((tag && !machine_has_tag(m, tag)) || (name && strcmp(m->name, name) != 0))
      continue;
    if (total >= (p.page - 1) * p.per_page && total < p.page * p.per_page)
      json_array_append_new(all, droplet_json(m));
    total++;
  }
  free(v);
  json_t *out = json_pack("{s:o}", "droplets", all);
  char extra[600] = "";
  if (tag) {
    char *q = strstr(req->query, "tag_name=");
    size_t l = q ? strcspn(q, "&") : 0;
    snprintf(extra, sizeof(extra), "%.*s", (int)l, q ? q : "");
  }
  add_pages(out, req, extra, p, total);
  http_json(resp, 200, sim_dump(out));
  free(tag);
  free(name);
}

static void droplets_delete_by_tag(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  char *tag = http_query_param(req, "tag_name");
  if (tag == NULL || *tag == '\0') {
    free(tag);
    http_error(resp, 400, "bad_request", "tag_name is required to delete droplets by tag.");
    return;
  }
  for (machine_t *m = sim->machines, *next; m; m = next) {
    next = m->next;
    if (strcmp(m->cloud, CLOUD) == 0 && machine_has_tag(m, tag))
      machine_delete(m);
  }
  free(tag);
  resp->status = 204;
}

static machine_t *droplet_by_path(sim_t *sim, const char *idstr, http_resp_t *resp) {
  char *end = NULL;
  unsigned long long id = strtoull(idstr, &end, 10);
  machine_t *m = (end != idstr && *end == '\0') ? machine_find_of(sim, id, CLOUD) : NULL;
  if (m == NULL)
    http_error(resp, 404, "not_found", "The resource you were accessing could not be found.");
  return m;
}

static void sizes_list(const http_req_t *req, http_resp_t *resp) {
  page_t p;
  if (!parse_page(req, resp, &p))
    return;
  json_t *all = json_array();
  for (size_t i = (size_t)(p.page - 1) * (size_t)p.per_page;
       i < COUNT(sizes) && i < (size_t)p.page * (size_t)p.per_page; i++)
    json_array_append_new(all, size_json(&sizes[i]));
  json_t *out = json_pack("{s:o}", "sizes", all);
  add_pages(out, req, "", p, (long)COUNT(sizes));
  http_json(resp, 200, sim_dump(out));
}

/* ---- account --------------------------------------------------------------------------------- */

static void keys_create(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  json_error_t jerr;
  json_t *body = json_loadb(req->body, req->body_len, 0, &jerr);
  const char *name = json_string_value(json_object_get(body, "name"));
  const char *pub = json_string_value(json_object_get(body, "public_key"));
  char *fp = pub ? sim_key_fingerprint(pub) : NULL;
  if (name == NULL || *name == '\0' || fp == NULL) {
    http_error(resp, 422, "unprocessable_entity",
               name ? "Key invalid, type not supported."
                    : "Name is too short (minimum is 1 "
                      "character)");
  } else if (key_find(sim, fp)) {
    http_error(resp, 422, "unprocessable_entity", "SSH Key is already in use on your account");
  } else {
    ssh_key_t *k = calloc(1, sizeof(*k));
    k->id = sim->next_key_id++;
    k->name = strdup(name);
    k->public_key = strdup(pub);
    k->public_key[strcspn(k->public_key, "\r\n")] = '\0';
    k->fingerprint = fp;
    fp = NULL;
    k->next = sim->keys;
    sim->keys = k;
    http_json(resp, 201, sim_dump(json_pack("{s:o}", "ssh_key", key_json(k))));
  }
  free(fp);
  json_decref(body);
}

static void keys_list(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  page_t p;
  if (!parse_page(req, resp, &p))
    return;
  json_t *all = json_array();
  long total = 0;
  for (ssh_key_t *k = sim->keys; k; k = k->next, total++)
    if (total >= (p.page - 1) * p.per_page && total < p.page * p.per_page)
      json_array_append_new(all, key_json(k));
  json_t *out = json_pack("{s:o}", "ssh_keys", all);
  add_pages(out, req, "", p, total);
  http_json(resp, 200, sim_dump(out));
}

static void keys_delete(sim_t *sim, ssh_key_t *k, http_resp_t *resp) {
  for (ssh_key_t **pp = &sim->keys; *pp; pp = &(*pp)->next)
    if (*pp == k) {
      *pp = k->next;
      break;
    }
  free(k->name);
  free(k->public_key);
  free(k->fingerprint);
  free(k);
  resp->status = 204;
}

static void account_get(sim_t *sim, http_resp_t *resp) {
  unsigned limit = sim_machine_limit(sim);
  json_t *a =
      json_pack("{s:i, s:i, s:i, s:s, s:s, s:b, s:s, s:s, s:{s:s, s:s}}", "droplet_limit", limit,
                "floating_ip_limit", 3, "volume_limit", 100, "email", "sim@example.com", "uuid",
                "b6fr89dbf6d9156cace5f3c78dc9851d957381ef", "email_verified", 1, "status", "active",
                "status_message", "", "team", "uuid", "5df3e3004a17e242b7c20ca6c9fc25b701a47ece",
                "name", "kite-cloudsim");
  http_json(resp, 200, sim_dump(json_pack("{s:o}", "account", a)));
}

/* ---- routing --------------------------------------------------------------------------------- */

static void do_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  const char *p = req->path, *m = req->method;
  if (!http_bearer_is(req, sim->token)) {
    http_error(resp, 401, "unauthorized", "Unable to authenticate you");
    return;
  }
  bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
  if (strcmp(p, "/v2/droplets") == 0) {
    if (post)
      droplets_create(sim, req, resp);
    else if (get)
      droplets_list(sim, req, resp);
    else if (del)
      droplets_delete_by_tag(sim, req, resp);
    else
      http_error(resp, 405, "method_not_allowed", "Method not allowed.");
    return;
  }
  if (strncmp(p, "/v2/droplets/", 13) == 0 && strchr(p + 13, '/') == NULL) {
    machine_t *d = droplet_by_path(sim, p + 13, resp);
    if (d == NULL)
      return;
    if (get) {
      http_json(resp, 200, sim_dump(json_pack("{s:o}", "droplet", droplet_json(d))));
    } else if (del) {
      fprintf(stderr, "kite-cloudsim: droplet %llu (%s) deleted\n", (unsigned long long)d->id,
              d->name);
      machine_delete(d);
      resp->status = 204;
    } else {
      http_error(resp, 405, "method_not_allowed", "Method not allowed.");
    }
    return;
  }
  if (strcmp(p, "/v2/sizes") == 0 && get) {
    sizes_list(req, resp);
    return;
  }
  if (strcmp(p, "/v2/account") == 0 && get) {
    account_get(sim, resp);
    return;
  }
  if (strcmp(p, "/v2/account/keys") == 0) {
    if (post)
      keys_create(sim, req, resp);
    else if (get)
      keys_list(sim, req, resp);
    else
      http_error(resp, 405, "method_not_allowed", "Method not allowed.");
    return;
  }
  if (strncmp(p, "/v2/account/keys/", 17) == 0) {
    /* A fingerprint's colons may come percent-encoded. */
    http_req_t q = {.query = NULL};
    char *qs = sim_sprintf("i=%s", p + 17);
    q.query = qs;
    char *ident = http_query_param(&q, "i");
    free(qs);
    ssh_key_t *k = ident ? key_find(sim, ident) : NULL;
    free(ident);
    if (k == NULL)
      http_error(resp, 404, "not_found", "The resource you were accessing could not be found.");
    else if (get)
      http_json(resp, 200, sim_dump(json_pack("{s:o}", "ssh_key", key_json(k))));
    else if (del)
      keys_delete(sim, k, resp);
    else
      http_error(resp, 405, "method_not_allowed", "Method not allowed.");
    return;
  }
  http_error(resp, 404, "not_found", "The resource you were accessing could not be found.");
  return;
}

/* POST /_sim/droplets/{id}/kill */
static bool do_control(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  unsigned long long id;
  char tail[16];
  if (sscanf(req->path, "/_sim/droplets/%llu/%15s", &id, tail) != 2 || strcmp(tail, "kill") != 0 ||
      strcmp(req->method, "POST") != 0)
    return false;
  machine_t *m = machine_find_of(sim, id, CLOUD);
  if (m == NULL) {
    http_error(resp, 404, "not_found", "no such droplet");
    return true;
  }
  json_error_t e;
  json_t *j = req->body_len ? json_loadb(req->body, req->body_len, 0, &e) : NULL;
  bool vanish = !(j && json_is_false(json_object_get(j, "vanish")));
  json_decref(j);
  fprintf(stderr, "kite-cloudsim: droplet %llu (%s) dies%s\n", id, m->name,
          vanish ? " and disappears" : "");
  machine_kill(m, vanish);
  http_json(resp, 200, strdup("{\"ok\":true}"));
  return true;
}

static void do_state(sim_t *sim, json_t *state) {
  unsigned keys = 0;
  for (ssh_key_t *k = sim->keys; k; k = k->next)
    keys++;
  json_object_set_new(state, "droplets", json_integer(machine_count_of(sim, CLOUD)));
  json_object_set_new(state, "keys", json_integer(keys));
}

static void do_no_capacity(http_resp_t *resp, const char *size, const char *region) {
  (void)size;
  (void)region;
  http_error(resp, 422, "unprocessable_entity", "Size is not available in this region.");
}

static void do_over_limit(http_resp_t *resp, unsigned limit, unsigned wanted) {
  char msg[160];
  (void)wanted;
  snprintf(msg, sizeof(msg), "creating this/these droplet(s) will exceed your droplet limit (%u)",
           limit);
  http_error(resp, 422, "unprocessable_entity", msg);
}

static void do_free(sim_t *sim) {
  while (sim->keys) {
    ssh_key_t *k = sim->keys;
    sim->keys = k->next;
    free(k->name);
    free(k->public_key);
    free(k->fingerprint);
    free(k);
  }
}

const sim_front_t do_front = {
    .name = CLOUD,
    .path_prefix = "/v2/",
    .handle = do_handle,
    .control = do_control,
    .state = do_state,
    .error = http_error,
    .ratelimit_limit = 5000,
    .rate_limited = {429, "too_many_requests", "API rate limit exceeded."},
    .server_error = {500, "server_error", "Unexpected server-side error"},
    .malformed_body = "{\"droplet\": [}",
    .no_capacity = do_no_capacity,
    .over_limit = do_over_limit,
    .free = do_free,
};
