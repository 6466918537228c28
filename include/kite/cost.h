#ifndef KITE_COST_H
#define KITE_COST_H

/* What an instance costs (DESIGN.md, "Choosing and paying"): its price per hour times its
 * billable time, which follows its provider's billing granularity (registry.h:
 * billing_increment_s and billing_minimum_s). The cost monitor's `cost` events, `kite cost`
 * and `kite status` all compute it here, so that they never disagree. */

#include <stdbool.h>
#include <stdint.h>

/* The billable seconds of an instance that has existed for ms milliseconds: rounded up to a
 * whole increment_s (0: to a whole second), and at least minimum_s once it existed at all
 * (ms > 0). ms <= 0 is 0. */
double kite_cost_billable_s(int64_t ms, unsigned increment_s, unsigned minimum_s);

typedef struct kite_cost_bill {
  double billable_s; /* kite_cost_billable_s */
  double cost;       /* USD: price_hourly × billable_s / 3600 */
  /* USD: what on demand would have cost for the same billable time minus cost, for a spot
   * instance whose on-demand price is known (> 0); else 0. */
  double savings;
} kite_cost_bill_t;

/* The bill of an instance bought at price_hourly (USD/h; <= 0 unknown: costs 0) that has
 * existed for ms milliseconds under that granularity; ondemand_hourly is what it would cost
 * on demand (<= 0 unknown), spot whether it was bought as spot. */
kite_cost_bill_t kite_cost_bill(int64_t ms, unsigned increment_s, unsigned minimum_s,
                                double price_hourly, double ondemand_hourly, bool spot);

#endif
