/* The AWS Price List front of the emulator: GetProducts of the Pricing service (API version
 * 2017-10-15), in its JSON 1.1 protocol, from the EC2 front's table (ec2_catalog.c).
 *
 *   POST /  X-Amz-Target: AWSPriceListService.GetProducts, Content-Type
 *           application/x-amz-json-1.1, a JSON body {ServiceCode, Filters, FormatVersion,
 *           NextToken, MaxResults} (GetProductsRequest's members; any other is refused)
 *
 * Every call is signed with SigV4 for the service "pricing" in us-east-1 (the Price List's
 * endpoint is api.pricing.us-east-1.amazonaws.com whatever region is priced) with the EC2
 * account's keys; a refusal is the JSON protocol's error, {"__type": …, "message": …} with
 * status 400 (403 for a missing signature), as the service sends it. The answer's PriceList
 * is an array of strings, each one product's JSON, as the service sends them. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ec2_impl.h"

#define TARGET_PREFIX "AWSPriceListService."
#define JSON11 "application/x-amz-json-1.1"

static void pricing_error(http_resp_t *resp, int status, const char *code, const char *message) {
  json_t *j = json_pack("{s:s, s:s}", "__type", code, "message", message);
  http_json(resp, status, json_dumps(j, JSON_COMPACT));
  json_decref(j);
  http_add_header(resp, "x-amzn-ErrorType: %s", code);
  resp->content_type = JSON11;
}

static bool pricing_match(const http_req_t *req) {
  const char *t = http_req_header(req, "X-Amz-Target");
  return strcmp(req->path, "/") == 0 && strcmp(req->method, "POST") == 0 && t &&
         strncmp(t, TARGET_PREFIX, strlen(TARGET_PREFIX)) == 0;
}

static bool check_signature(const http_req_t *req, http_resp_t *resp) {
  char region[64] = "";
  switch (aws_sig_verify(req, ec2.access_key, ec2.secret, "pricing", region)) {
  case AWS_SIG_OK:
    if (strcmp(region, "us-east-1") == 0)
      return true;
    pricing_error(resp, 400, "InvalidSignatureException",
                  "Credential should be scoped to a valid region.");
    return false;
  case AWS_SIG_MISSING:
    pricing_error(resp, 403, "MissingAuthenticationTokenException", "Missing Authentication Token");
    return false;
  case AWS_SIG_UNKNOWN_KEY:
    pricing_error(resp, 400, "UnrecognizedClientException",
                  "The security token included in the request is invalid.");
    return false;
  case AWS_SIG_EXPIRED:
    pricing_error(resp, 400, "InvalidSignatureException", "Signature expired.");
    return false;
  case AWS_SIG_WRONG_SERVICE:
    pricing_error(resp, 400, "InvalidSignatureException",
                  "Credential should be scoped to correct service: 'pricing'.");
    return false;
  default:
    pricing_error(resp, 400, "InvalidSignatureException",
                  "The request signature we calculated does not match the signature you "
                  "provided. Check your AWS Secret Access Key and signing method. Consult the "
                  "service documentation for details.");
    return false;
  }
}

/* Checks a GetProductsRequest against its shape; NULL when it passes, else the message (and
 * *code the error's type). */
static const char *check_request(json_t *j, const char **code) {
  *code = "SerializationException";
  static const char *const members[] = {"ServiceCode", "Filters", "FormatVersion", "NextToken",
                                        "MaxResults"};
  if (!json_is_object(j))
    return "the request body is not a JSON object";
  const char *k;
  json_t *v;
  json_object_foreach(j, k, v) {
    bool known = false;
    for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++)
      known |= strcmp(members[i], k) == 0;
    if (!known)
      return "the request has a member GetProductsRequest does not have";
  }
  *code = "InvalidParameterException";
  if (!json_is_string(json_object_get(j, "ServiceCode")))
    return "ServiceCode is required (a string)";
  json_t *mr = json_object_get(j, "MaxResults");
  if (mr && (!json_is_integer(mr) || json_integer_value(mr) < 1 || json_integer_value(mr) > 100))
    return "MaxResults must be an integer from 1 to 100";
  json_t *filters = json_object_get(j, "Filters");
  if (filters && !json_is_array(filters))
    return "Filters must be a list";
  size_t i;
  json_t *fl;
  json_array_foreach(filters, i, fl) {
    const char *type = json_string_value(json_object_get(fl, "Type"));
    if (type == NULL || strcmp(type, "TERM_MATCH") != 0 ||
        !json_is_string(json_object_get(fl, "Field")) ||
        !json_is_string(json_object_get(fl, "Value")) || json_object_size(fl) != 3)
      return "each filter is {Type: TERM_MATCH, Field, Value}";
  }
  return NULL;
}

static void get_products(json_t *j, http_resp_t *resp) {
  const char *code = NULL, *bad = check_request(j, &code);
  if (bad) {
    pricing_error(resp, 400, code, bad);
    return;
  }
  if (strcmp(json_string_value(json_object_get(j, "ServiceCode")), "AmazonEC2") != 0) {
    pricing_error(resp, 400, "NotFoundException", "This emulator prices AmazonEC2 only.");
    return;
  }
  const char *nt = json_string_value(json_object_get(j, "NextToken"));
  long skip = 0;
  if (nt && (sscanf(nt, "kite-page-%ld", &skip) != 1 || skip < 0)) {
    pricing_error(resp, 400, "InvalidNextTokenException", "The pagination token is invalid.");
    return;
  }
  json_t *mr = json_object_get(j, "MaxResults");
  long max = mr ? (long)json_integer_value(mr) : 100;
  if (ec2_page_max() && max > (long)ec2_page_max())
    max = ec2_page_max();
  long next = -1;
  json_t *products = ec2_price_list(json_object_get(j, "Filters"), skip, max, &next);
  json_t *list = json_array();
  size_t i;
  json_t *p;
  json_array_foreach(products, i, p) {
    char *text = json_dumps(p, JSON_COMPACT);
    json_array_append_new(list, json_string(text));
    free(text);
  }
  json_decref(products);
  json_t *out = json_pack("{s:s, s:o}", "FormatVersion", "aws_v1", "PriceList", list);
  if (next >= 0) {
    char tok[32];
    snprintf(tok, sizeof(tok), "kite-page-%ld", next);
    json_object_set_new(out, "NextToken", json_string(tok));
  }
  http_json(resp, 200, json_dumps(out, JSON_COMPACT));
  json_decref(out);
  resp->content_type = JSON11;
}

static void pricing_handle(sim_t *sim, const http_req_t *req, http_resp_t *resp) {
  ec2_init(sim);
  if (!check_signature(req, resp))
    return;
  const char *action = http_req_header(req, "X-Amz-Target") + strlen(TARGET_PREFIX);
  if (ec2_override_take(action, resp)) {
    resp->content_type = JSON11;
    return;
  }
  if (strcmp(action, "GetProducts") != 0) {
    pricing_error(resp, 400, "UnknownOperationException", "This emulator answers GetProducts.");
    return;
  }
  json_error_t je;
  json_t *j = json_loadb(req->body ? req->body : "", req->body_len, 0, &je);
  if (j == NULL) {
    pricing_error(resp, 400, "SerializationException", "the request body is not JSON");
    return;
  }
  get_products(j, resp);
  json_decref(j);
}

const sim_front_t pricing_front = {
    .name = "pricing",
    .match = pricing_match,
    .handle = pricing_handle,
    .error = pricing_error,
    .content_type = JSON11,
    .rate_limited = {429, "ThrottlingException", "Rate exceeded"},
    .server_error = {500, "InternalErrorException", "An internal error occurred."},
    .malformed_body = "{\"FormatVersion\":\"aws_v1\",\"PriceList\":[\"{\\\"product\\\":",
};
