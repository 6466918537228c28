/* EC2's XML answers and the Price List's JSON answers and JSON errors, as the AWS provider
 * reads them. */
#include <stdint.h>
#include <stdlib.h>

#include "providers/aws/aws_impl.h"

static void on_price(const char *type, double usd, void *data) {
  (void)type;
  (void)usd;
  (void)data;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *body = (const char *)data;
  kite__aws_xml_t *x = NULL;
  if (kite__aws_xml_parse(body, size, &x) == 0)
    (void)kite__aws_xml_root(x);
  kite__aws_xml_free(x);
  char *next = NULL, *msg = NULL, *code = NULL, *message = NULL;
  (void)kite__aws_pricing_parse(body, size, on_price, NULL, &next, &msg);
  free(next);
  free(msg);
  (void)kite__aws_json_error(body, size, &code, &message);
  free(code);
  free(message);
  return 0;
}
