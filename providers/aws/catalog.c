/* The AWS provider's catalog operation: what EC2 sells in a region, with prices, as offers.
 *
 * Design notes
 * - Three paginated reads, one after another, in the call's steps: DescribeInstanceTypes
 *   (MaxResults 100) for the types and their shapes; DescribeSpotPriceHistory for Linux/UNIX
 *   with StartTime now, which gives the price in effect per type and availability zone (an
 *   entry repeated for a pair keeps the newest); and the Price List's GetProducts
 *   (pricing.c) for on-demand prices. A region's catalog is a handful of calls.
 * - Offers: one per (type, zone) with spot history, all with the type's on-demand price (-1
 *   when the Price List has none); a type without spot history, or not sold as spot, is one
 *   offer with zone "" and spot_price -1. Types of neither x86_64 nor arm64 (the Mac
 *   instances, which need a dedicated host) are left out: kite cannot launch them.
 * - A page EC2 or the Price List refuses ends the call with its error (the skeleton retries
 *   what is transient); an answer that is not what the API description says ends it with
 *   KITE_EPROTO and what was wrong. The step's state lives in call->data, freed before the
 *   answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cloud/cloud.h"
#include "aws_impl.h"
#include "kite/offer.h"
#include "kite_impl.h"

enum { TYPES, SPOT, PRICES };

typedef struct cat {
  kite__aws_itype_t *types;
  size_t n_types, cap_types;
  kite__aws_spot_t *spots;
  size_t n_spots, cap_spots;
  double *price; /* per type: on demand, or -1 */
  char *next;    /* the page to read, or NULL for the first */
} cat_t;

static void cat_free(kite_cloud_call_t *call) {
  cat_t *c = call->data;
  if (c) {
    free(c->types);
    free(c->spots);
    free(c->price);
    free(c->next);
    free(c);
  }
  call->data = NULL;
}

static void fail(kite_cloud_call_t *call, int code, const char *message) {
  cat_free(call);
  kite_cloud_answer_fail(call, code, message);
}

static void send_step(kite_cloud_call_t *call);

static void on_page(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  cat_t *c = call->data;
  kite__aws_xml_t *x = NULL;
  if (!kite__aws_ec2_answer(call, status, resp, &x, cat_free))
    return;
  char *next = NULL;
  int rc = call->step == TYPES
               ? kite__aws_xml_instance_types(x, &c->types, &c->n_types, &c->cap_types, &next)
               : kite__aws_xml_spot_prices(x, &c->spots, &c->n_spots, &c->cap_spots, &next);
  kite__aws_xml_free(x);
  if (rc != 0) {
    free(next);
    fail(call, rc,
         rc == KITE_ENOMEM ? NULL
         : call->step == TYPES
             ? "EC2's DescribeInstanceTypes answer is not what the API describes (a type without "
               "a name, vCPUs or memory, or a count that is not a number)"
             : "EC2's DescribeSpotPriceHistory answer is not what the API describes (an entry "
               "without a type, zone or a decimal price)");
    return;
  }
  free(c->next);
  c->next = next;
  if (next == NULL)
    call->step++;
  send_step(call);
}

static int type_index(const cat_t *c, const char *type) {
  for (size_t i = 0; i < c->n_types; i++)
    if (strcmp(c->types[i].name, type) == 0)
      return (int)i;
  return -1;
}

static void on_price(const char *type, double usd, void *data) {
  cat_t *c = data;
  int i = type_index(c, type);
  if (i >= 0 && (c->price[i] < 0 || usd < c->price[i]))
    c->price[i] = usd;
}

static void offer_of(const kite_cloud_cfg_t *cfg, const kite__aws_itype_t *t, double price,
                     kite_offer_t *o) {
  memset(o, 0, sizeof(*o));
  /* Each field is as long as the API's value can be (the parser bounds them). */
  KITE_OFFER_SET(o, region, cfg->region);
  KITE_OFFER_SET(o, instance_type, t->name);
  KITE_OFFER_SET(o, arch, t->arch);
  KITE_OFFER_SET(o, accelerator, t->gpu);
  o->vcpus = t->vcpus;
  o->memory_mb = t->memory_mib;
  o->accelerator_count = t->gpu[0] ? t->gpu_count : 0;
  o->accelerator_memory_mb = t->gpu_mib;
  o->disk_gb = (unsigned)t->disk_gb;
  o->price = price;
  o->spot_price = -1;
  o->available = -1;
}

static void answer_offers(kite_cloud_call_t *call) {
  cat_t *c = call->data;
  for (size_t i = 0; i < c->n_types; i++) {
    const kite__aws_itype_t *t = &c->types[i];
    if (t->arch[0] == '\0')
      continue;
    kite_offer_t o;
    offer_of(call->cfg, t, c->price[i], &o);
    size_t zones = 0;
    for (size_t k = 0; t->spot && k < c->n_spots; k++) {
      const kite__aws_spot_t *s = &c->spots[k];
      if (strcmp(s->type, t->name) != 0)
        continue;
      /* The newest entry of each zone (EC2 may give more than one). */
      bool newer = false;
      for (size_t j = 0; j < c->n_spots && !newer; j++)
        newer = j != k && strcmp(c->spots[j].type, s->type) == 0 &&
                strcmp(c->spots[j].zone, s->zone) == 0 &&
                (strcmp(c->spots[j].timestamp, s->timestamp) > 0 ||
                 (strcmp(c->spots[j].timestamp, s->timestamp) == 0 && j < k));
      if (newer || KITE_OFFER_SET(&o, zone, s->zone) != 0)
        continue;
      o.spot_price = s->price;
      kite_cloud_offer(call, &o);
      zones++;
    }
    if (zones == 0) {
      o.zone[0] = '\0';
      o.spot_price = -1;
      kite_cloud_offer(call, &o);
    }
  }
  cat_free(call);
  kite_cloud_answer_ok(call);
}

static void on_prices(kite_cloud_call_t *call, int status, const kite_http_response_t *resp) {
  cat_t *c = call->data;
  if (status != 0 || resp == NULL || resp->status / 100 != 2) {
    cat_free(call);
    kite__aws_pricing_fail(call, status, resp);
    return;
  }
  char *next = NULL, *msg = NULL;
  int rc = kite__aws_pricing_parse(resp->body, resp->body_len, on_price, c, &next, &msg);
  if (rc != 0) {
    fail(call, rc, msg);
    free(msg);
    return;
  }
  free(c->next);
  c->next = next;
  if (next == NULL) {
    answer_offers(call);
    return;
  }
  send_step(call);
}

static void send_step(kite_cloud_call_t *call) {
  cat_t *c = call->data;
  kite__aws_form_t f;
  switch (call->step) {
  case TYPES:
    kite__aws_form_init(&f, "DescribeInstanceTypes");
    kite__aws_form_add(&f, "MaxResults", "100");
    break;
  case SPOT: {
    char now[32];
    int64_t t = (int64_t)(kite__wall_ms() / 1000);
    char amz[17];
    kite__aws_amz_date(t, amz);
    /* "20150830T123600Z" → "2015-08-30T12:36:00Z" */
    snprintf(now, sizeof(now), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", amz, amz + 4, amz + 6, amz + 9,
             amz + 11, amz + 13);
    kite__aws_form_init(&f, "DescribeSpotPriceHistory");
    kite__aws_form_add(&f, "ProductDescription.1", "Linux/UNIX");
    kite__aws_form_add(&f, "StartTime", now);
    kite__aws_form_add(&f, "MaxResults", "1000");
    break;
  }
  case PRICES: {
    if (c->price == NULL) {
      c->price = malloc((c->n_types ? c->n_types : 1) * sizeof(*c->price));
      if (c->price == NULL) {
        fail(call, KITE_ENOMEM, NULL);
        return;
      }
      for (size_t i = 0; i < c->n_types; i++)
        c->price[i] = -1;
    }
    char *body = kite__aws_pricing_body(call->cfg->region, c->next);
    int rc = body ? kite__aws_pricing_send(call, "GetProducts", body, on_prices) : KITE_ENOMEM;
    free(body);
    if (rc != 0)
      fail(call, rc, "the Price List request could not be signed or sent");
    return;
  }
  default:
    fail(call, KITE_EINTERNAL, "internal error in the aws provider's catalog");
    return;
  }
  if (c->next)
    kite__aws_form_add(&f, "NextToken", c->next);
  int rc = kite__aws_ec2_send(call, &f, on_page);
  if (rc != 0)
    fail(call, rc, "the EC2 request could not be signed or sent");
}

void kite__aws_catalog(kite_cloud_call_t *call) {
  if (call->cfg->region == NULL || *call->cfg->region == '\0') {
    kite_cloud_answer_fail(call, KITE_ESPEC,
                           "aws: the catalog is per region: name one (region: us-east-1) or "
                           "set AWS_REGION");
    return;
  }
  call->data = calloc(1, sizeof(cat_t));
  if (call->data == NULL) {
    kite_cloud_answer_fail(call, KITE_ENOMEM, NULL);
    return;
  }
  call->step = TYPES;
  send_step(call);
}
