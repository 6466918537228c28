/* Offers and their JSON form (offer.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kite/error.h"
#include "kite/offer.h"
#include "kite_impl.h"

int kite_offer_set(char *field, size_t size, const char *s) {
  size_t len = s ? strlen(s) : 0;
  if (len >= size)
    return KITE_E2BIG;
  memcpy(field, s ? s : "", len + 1);
  return 0;
}

double kite_offer_price(const kite_offer_t *o, int spot) {
  return spot ? o->spot_price : o->price;
}

static json_t *price_json(double p) {
  return p < 0 ? json_null() : json_real(p);
}

char *kite_offers_json(const kite_offer_t *offers, size_t n) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < n; i++) {
    const kite_offer_t *o = &offers[i];
    json_t *j = json_pack(
        "{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:s, s:o, s:o, s:i, s:I, s:s}",
        "provider", o->provider, "region", o->region, "zone", o->zone, "instance_type",
        o->instance_type, "vcpus", (json_int_t)o->vcpus, "memory_mb", (json_int_t)o->memory_mb,
        "accelerator", o->accelerator, "accelerator_count", (json_int_t)o->accelerator_count,
        "accelerator_memory_mb", (json_int_t)o->accelerator_memory_mb, "disk_gb",
        (json_int_t)o->disk_gb, "arch", o->arch, "price", price_json(o->price), "spot_price",
        price_json(o->spot_price), "available", o->available, "fetched_ms",
        (json_int_t)o->fetched_ms, "source", o->source);
    if (j == NULL || json_array_append_new(a, j) != 0) {
      json_decref(a);
      return NULL;
    }
  }
  char *s = a ? json_dumps(a, JSON_COMPACT) : NULL;
  json_decref(a);
  return s;
}

/* One string member into a fixed field: absent is "", a non-string or too long is an error. */
static int text_member(json_t *o, const char *key, char *field, size_t size) {
  json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v)) {
    field[0] = '\0';
    return 0;
  }
  return json_is_string(v) ? kite_offer_set(field, size, json_string_value(v)) : KITE_EPROTO;
}

static int count_member(json_t *o, const char *key, uint64_t max, uint64_t *out) {
  json_t *v = json_object_get(o, key);
  *out = 0;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
    return KITE_EPROTO;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static int price_member(json_t *o, const char *key, double *out) {
  json_t *v = json_object_get(o, key);
  *out = -1;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1e7)
    return KITE_EPROTO;
  *out = json_number_value(v);
  return 0;
}

static int offer_from_json(json_t *j, kite_offer_t *o) {
  if (!json_is_object(j))
    return KITE_EPROTO;
  memset(o, 0, sizeof(*o));
  uint64_t vcpus, count, disk, fetched;
  int rc = text_member(j, "provider", o->provider, sizeof(o->provider));
  rc = rc ? rc : text_member(j, "region", o->region, sizeof(o->region));
  rc = rc ? rc : text_member(j, "zone", o->zone, sizeof(o->zone));
  rc = rc ? rc : text_member(j, "instance_type", o->instance_type, sizeof(o->instance_type));
  rc = rc ? rc : text_member(j, "accelerator", o->accelerator, sizeof(o->accelerator));
  rc = rc ? rc : text_member(j, "arch", o->arch, sizeof(o->arch));
  rc = rc ? rc : text_member(j, "source", o->source, sizeof(o->source));
  rc = rc ? rc : count_member(j, "vcpus", 1u << 20, &vcpus);
  rc = rc ? rc : count_member(j, "memory_mb", UINT64_C(1) << 40, &o->memory_mb);
  rc = rc ? rc : count_member(j, "accelerator_count", 1024, &count);
  rc = rc ? rc
          : count_member(j, "accelerator_memory_mb", UINT64_C(1) << 30, &o->accelerator_memory_mb);
  rc = rc ? rc : count_member(j, "disk_gb", 1u << 30, &disk);
  rc = rc ? rc : count_member(j, "fetched_ms", UINT64_C(1) << 53, &fetched);
  rc = rc ? rc : price_member(j, "price", &o->price);
  rc = rc ? rc : price_member(j, "spot_price", &o->spot_price);
  if (rc)
    return KITE_EPROTO;
  json_t *avail = json_object_get(j, "available");
  if (avail && !json_is_null(avail) &&
      (!json_is_integer(avail) || json_integer_value(avail) < -1 ||
       json_integer_value(avail) > 1000000))
    return KITE_EPROTO;
  o->available = avail && json_is_integer(avail) ? (int)json_integer_value(avail) : -1;
  o->vcpus = (unsigned)vcpus;
  o->accelerator_count = (unsigned)count;
  o->disk_gb = (unsigned)disk;
  o->fetched_ms = (int64_t)fetched;
  return o->provider[0] && o->instance_type[0] ? 0 : KITE_EPROTO;
}

int kite_offers_parse(const char *json, kite_offer_t **out, size_t *n, char **msg) {
  *out = NULL;
  *n = 0;
  if (msg)
    *msg = NULL;
  json_error_t e;
  json_t *a = json ? json_loads(json, 0, &e) : NULL;
  if (!json_is_array(a)) {
    if (msg)
      *msg = kite__sprintf("offers are not a JSON array%s%s", a ? "" : ": ", a ? "" : e.text);
    json_decref(a);
    return KITE_EPROTO;
  }
  size_t len = json_array_size(a);
  kite_offer_t *v = calloc(len ? len : 1, sizeof(*v));
  if (v == NULL) {
    json_decref(a);
    return KITE_ENOMEM;
  }
  for (size_t i = 0; i < len; i++) {
    if (offer_from_json(json_array_get(a, i), &v[i]) != 0) {
      if (msg)
        *msg = kite__sprintf("offer %zu is not an offer object (provider, instance_type, "
                             "numbers and prices within range)",
                             i);
      free(v);
      json_decref(a);
      return KITE_EPROTO;
    }
  }
  json_decref(a);
  *out = v;
  *n = len;
  return 0;
}

const char *kite__offer_type(const kite_offer_t *o, char *out, size_t size) {
  if (o->accelerator[0])
    snprintf(out, size, "%s+%s:%u", o->instance_type, o->accelerator,
             o->accelerator_count ? o->accelerator_count : 1);
  else
    snprintf(out, size, "%s", o->instance_type);
  return out;
}
