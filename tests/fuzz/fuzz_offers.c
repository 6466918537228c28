/* Offers in their JSON form (what a catalog event and the cache carry). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kite/offer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (text == NULL)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  kite_offer_t *offers = NULL;
  size_t n = 0;
  char *msg = NULL;
  if (kite_offers_parse(text, &offers, &n, &msg) == 0) {
    char *back = kite_offers_json(offers, n);
    free(back);
  }
  free(offers);
  free(msg);
  free(text);
  return 0;
}
