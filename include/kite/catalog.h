#ifndef KITE_CATALOG_H
#define KITE_CATALOG_H

/* The catalog: what the providers sell and what it costs (DESIGN.md, "Choosing and paying").
 *
 * Offers (offer.h) come from each provider's own API through the bus (catalog_request →
 * catalog) and are cached in the runtime's state store (under $KITE_HOME) with the time they
 * were fetched; a cached offer is used while it is younger than the TTL, and every offer says
 * how old its price is (fetched_ms, source). Snapshots of public price data (SkyPilot's
 * catalog CSVs) can be imported for offline use; their offers carry the snapshot's date and
 * are never taken for live prices.
 *
 * Loop thread only. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/offer.h"
#include "kite/runtime.h"

/* Offers younger than this are used from the cache: one hour. */
#define KITE_CATALOG_TTL_MS (60ull * 60 * 1000)

typedef struct kite_catalog_query {
  /* The providers to ask (NULL-terminated names); NULL: every provider of the registry that
   * has a catalog and is configured (registry.h). */
  const char *const *providers;
  /* Provider options per provider (a JSON object text of {NAME: {options}}), or NULL. */
  const char *options;
  /* Ask the providers even when the cache is fresh. */
  bool refresh;
  /* Answer from the cache only, however old (never ask a provider). */
  bool cache_only;
  /* 0: KITE_CATALOG_TTL_MS. */
  uint64_t ttl_ms;
} kite_catalog_query_t;

/* status 0: offers (n of them, valid during the call) from every provider asked; a provider
 * that could not be asked is left out and named in message (NULL when none was). status < 0:
 * no offers at all, message says why. */
typedef void (*kite_catalog_cb)(int status, const kite_offer_t *offers, size_t n,
                                const char *message, void *data);

/* Gathers the offers of q's providers: from the cache when fresh, else from each provider
 * (which must be started in rt; the CLI starts them), storing what they answer. cb runs once,
 * never inside this call. */
int kite_catalog_get(kite_runtime_t *rt, const kite_catalog_query_t *q, kite_catalog_cb cb,
                     void *data);

/* Imports a snapshot: a SkyPilot catalog CSV (vms.csv: InstanceType, AcceleratorName,
 * AcceleratorCount, vCPUs, MemoryGiB, Price, SpotPrice, Region, AvailabilityZone, in any column
 * order; GpuInfo read for accelerator memory) of provider, dated date ("YYYY-MM-DD": when the
 * prices were published; NULL: the file's modification time), into the store of rt. Replaces
 * that provider's earlier snapshot offers, never its API offers. *n gets the count. On a bad
 * file: KITE_EPROTO and *msg "FILE:LINE: what is wrong". */
int kite_catalog_import(kite_runtime_t *rt, const char *provider, const char *path,
                        const char *date, size_t *n, char **msg);

/* Parses a snapshot file as kite_catalog_import does, storing nothing: *out (malloc'd, free it)
 * gets one offer per data row, *n of them, in the file's order (a row repeating another's
 * region, zone and type is kept). Offers get provider, source "snapshot FILENAME DATE" and the
 * date's midnight (UTC) as fetched_ms; an empty price, and a price of 0 (which the public data
 * uses for "not published"), is < 0. KITE_EPROTO with *msg "FILE:LINE: what is wrong" on a bad
 * file (an unterminated quote, a missing InstanceType or Region column, a row with another
 * number of fields than the header, a value that is not a number, text too long for its field);
 * KITE_EINVAL for a bad provider name or date, KITE_EIO when the file cannot be read (with
 * *msg too). */
int kite_catalog_parse(const char *provider, const char *path, const char *date, kite_offer_t **out,
                       size_t *n, char **msg);

/* What a pool or a user asks of an offer (a kite_offers filter, the optimizer's fit). Zero and
 * NULL fields ask nothing. */
typedef struct kite_offer_need {
  unsigned cpus;              /* at least this many vCPUs */
  uint64_t memory_mb;         /* at least this much memory, MiB */
  const char *accelerator;    /* this accelerator (case-insensitive), or NULL */
  unsigned accelerator_count; /* at least this many of them (with accelerator) */
  bool spot;                  /* sold as spot (it has a spot price) */
  double max_price;           /* the price that applies (spot or on demand) at most; 0 none */
  const char *const *regions; /* in one of these regions (NULL-terminated), or NULL */
} kite_offer_need_t;

/* How many of need's requirements o misses (0: it fits); why (when not NULL, size > 0) gets
 * them as one line, "4 vCPUs, needs 8; no spot price", or "" when it fits. An offer with no
 * price of the kind asked (on demand, or spot) misses, and so does one the provider says none
 * of can be launched now (available 0). */
unsigned kite_offer_misses(const kite_offer_t *o, const kite_offer_need_t *need, char *why,
                           size_t size);

#endif
