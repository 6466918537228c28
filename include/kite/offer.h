#ifndef KITE_OFFER_H
#define KITE_OFFER_H

/* An offer: one instance type a provider sells in one place, with what it has and what it
 * costs (DESIGN.md, "Choosing and paying"). Providers answer catalog requests with offers
 * (events.h: catalog_request → catalog, the offers as a JSON array text); the catalog
 * (catalog.h) caches them in the state store; the optimizer picks among them.
 *
 * Fixed-size fields, so that an array of offers is one allocation and 10,000 of them are
 * scanned without chasing pointers. Text longer than a field is refused when parsed. */

#include <stddef.h>
#include <stdint.h>

typedef struct kite_offer {
  char provider[24];       /* "digitalocean" */
  char region[48];         /* where it is launched: "nyc3", "us-east-1", "fsn1" */
  char zone[48];           /* an availability zone inside region, or "" */
  char instance_type[64];  /* what a launch asks for: "s-2vcpu-4gb", "m5.large", "cx22" */
  unsigned vcpus;
  uint64_t memory_mb;      /* MiB */
  char accelerator[32];    /* "A100", "H100", or "" */
  unsigned accelerator_count;
  uint64_t accelerator_memory_mb; /* per accelerator, MiB; 0 unknown */
  unsigned disk_gb;        /* included root disk, GiB; 0 unknown or chosen at launch */
  char arch[16];           /* "x86_64", "arm64" */
  double price;            /* on-demand USD per hour; < 0 when not sold on demand */
  double spot_price;       /* spot/interruptible USD per hour; < 0 when there is no spot */
  int available;           /* -1 unknown, 0 none now, N that many can be launched */
  int64_t fetched_ms;      /* when the price was read (ms since the epoch) */
  char source[48];         /* "api", or "snapshot FILE DATE" */
} kite_offer_t;

/* The offers as a JSON array text (malloc'd), each one an object with the fields above
 * (price and spot_price null when < 0); NULL when memory ran out. */
char *kite_offers_json(const kite_offer_t *offers, size_t n);

/* Parses a JSON array text of offers (the form above; unknown keys are ignored, absent
 * numbers are 0 and absent prices < 0). On success *out is a malloc'd array (free it) of *n
 * offers. KITE_EPROTO when the text is not such an array (with *msg, malloc'd, saying where),
 * KITE_ENOMEM. */
int kite_offers_parse(const char *json, kite_offer_t **out, size_t *n, char **msg);

/* Copies s into a fixed field of size, refusing (KITE_E2BIG) text that does not fit. */
int kite_offer_set(char *field, size_t size, const char *s);
#define KITE_OFFER_SET(o, field, s) kite_offer_set((o)->field, sizeof((o)->field), (s))

/* The price an offer is launched at: its spot price when spot, else its on-demand price
 * (< 0: not sold that way). */
double kite_offer_price(const kite_offer_t *o, int spot);

#endif
