/* The AWS Price List's GetProducts (the Pricing service, JSON 1.1 protocol): the request body
 * and the reading of its answer.
 *
 * An answer is {"FormatVersion": "aws_v1", "PriceList": [STRING, ...], "NextToken": ...}, each
 * string one product's JSON: product.attributes.instanceType, and terms.OnDemand.<term>.
 * priceDimensions.<rate>.pricePerUnit.USD, a decimal string. The filters ask for exactly the
 * products a Linux on-demand launch is billed at (shared tenancy, no pre-installed software,
 * capacity used, no licence included), so each type has one; should a type come twice, the
 * lower price is kept. Anything else in the answer (a PriceList item that is not a string or
 * not an object, a price that is not a plain non-negative decimal) refuses the whole answer:
 * a price list kite cannot read is not guessed at. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aws_impl.h"
#include "kite_impl.h"

/* The answers of one page are at most a few MiB; anything larger is not the Price List. */
#define MAX_ANSWER (32u << 20)

char *kite__aws_pricing_body(const char *region, const char *next) {
  static const char *const terms[][2] = {{"operatingSystem", "Linux"},
                                         {"tenancy", "Shared"},
                                         {"preInstalledSw", "NA"},
                                         {"capacitystatus", "Used"},
                                         {"licenseModel", "No License required"}};
  json_t *filters = json_array();
  json_array_append_new(filters, json_pack("{s:s, s:s, s:s}", "Type", "TERM_MATCH", "Field",
                                           "regionCode", "Value", region));
  for (size_t i = 0; i < KITE_ARRAY_SIZE(terms); i++)
    json_array_append_new(filters, json_pack("{s:s, s:s, s:s}", "Type", "TERM_MATCH", "Field",
                                             terms[i][0], "Value", terms[i][1]));
  json_t *body = json_pack("{s:s, s:s, s:o, s:i}", "ServiceCode", "AmazonEC2", "FormatVersion",
                           "aws_v1", "Filters", filters, "MaxResults", 100);
  if (body && next)
    json_object_set_new(body, "NextToken", json_string(next));
  char *out = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  return out;
}

/* A price as the Price List writes it ("0.0960000000"): digits and one point, no sign. */
static bool read_usd(const char *s, double *out) {
  if (s == NULL || *s == '\0' || strspn(s, "0123456789.") != strlen(s) || strlen(s) > 32)
    return false;
  char *end = NULL;
  double v = strtod(s, &end);
  if (*end != '\0' || !isfinite(v) || v < 0)
    return false;
  *out = v;
  return true;
}

/* One product: its type and on-demand hourly price; 0, or a message saying what is wrong. */
static const char *read_product(const char *text, char type[64], double *usd) {
  json_error_t je;
  json_t *p = json_loads(text, JSON_REJECT_DUPLICATES, &je);
  const char *bad = NULL;
  json_t *attrs = json_object_get(json_object_get(p, "product"), "attributes");
  const char *t = json_string_value(json_object_get(attrs, "instanceType"));
  json_t *od = json_object_get(json_object_get(p, "terms"), "OnDemand");
  *usd = -1;
  if (!json_is_object(p))
    bad = "a PriceList item is not a product's JSON";
  else if (t == NULL || *t == '\0' || strlen(t) >= 64)
    bad = "a product has no product.attributes.instanceType";
  else if (!json_is_object(od))
    bad = "a product has no terms.OnDemand";
  const char *k1, *k2;
  json_t *term, *dim;
  json_object_foreach(bad ? NULL : od, k1, term) {
    json_t *dims = json_object_get(term, "priceDimensions");
    if (!json_is_object(dims)) {
      bad = "an on-demand term has no priceDimensions";
      break;
    }
    json_object_foreach(dims, k2, dim) {
      const char *unit = json_string_value(json_object_get(dim, "unit"));
      double v;
      if (!read_usd(json_string_value(json_object_get(json_object_get(dim, "pricePerUnit"), "USD")),
                    &v)) {
        bad = "a price dimension has no pricePerUnit.USD as a decimal number";
        break;
      }
      if ((unit == NULL || strcmp(unit, "Hrs") == 0) && (*usd < 0 || v < *usd))
        *usd = v;
    }
    if (bad)
      break;
  }
  if (bad == NULL) {
    memcpy(type, t, strlen(t) + 1);
    if (*usd < 0)
      bad = "a product has no hourly on-demand price";
  }
  json_decref(p);
  return bad;
}

int kite__aws_pricing_parse(const char *body, size_t len,
                            void (*price)(const char *type, double usd, void *data), void *data,
                            char **next, char **msg) {
  *next = NULL;
  *msg = NULL;
  json_error_t je;
  json_t *j = len && len <= MAX_ANSWER ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je) : NULL;
  json_t *list = json_object_get(j, "PriceList");
  json_t *nt = json_object_get(j, "NextToken");
  const char *bad = NULL;
  if (!json_is_object(j))
    bad = "the answer is not a JSON object";
  else if (!json_is_array(list))
    bad = "the answer has no PriceList array";
  else if (nt && !json_is_string(nt) && !json_is_null(nt))
    bad = "NextToken is not a string";
  size_t i;
  json_t *item;
  json_array_foreach(bad ? NULL : list, i, item) {
    char type[64];
    double usd;
    bad = json_is_string(item) ? read_product(json_string_value(item), type, &usd)
                               : "a PriceList item is not a string";
    if (bad)
      break;
    price(type, usd, data);
  }
  if (bad == NULL && json_is_string(nt) && json_string_length(nt) > 0)
    *next = kite__strdup(json_string_value(nt));
  json_decref(j);
  if (bad) {
    *msg =
        kite__sprintf("the Price List's GetProducts answer is not what its API describes: %s", bad);
    return KITE_EPROTO;
  }
  return 0;
}

bool kite__aws_json_error(const char *body, size_t len, char **code, char **message) {
  *code = *message = NULL;
  json_error_t je;
  json_t *j = body && len && len <= MAX_ANSWER ? json_loadb(body, len, 0, &je) : NULL;
  const char *type = json_string_value(json_object_get(j, "__type"));
  const char *m = json_string_value(json_object_get(j, "message"));
  if (m == NULL)
    m = json_string_value(json_object_get(j, "Message"));
  if (type && *type) {
    /* "com.amazon.coral.service#UnrecognizedClientException" → the part after '#'. */
    const char *hash = strrchr(type, '#');
    *code = kite__strdup(hash ? hash + 1 : type);
    *message = m ? kite__strdup(m) : NULL;
  }
  json_decref(j);
  return *code != NULL;
}
