/* The billable time and cost of an instance under its provider's billing granularity
 * (kite/cost.h). Here in core, beneath everything, because the cost monitor (monitors/) and
 * the `kite cost` and `kite status` commands (cli/) must compute the same number, and all it
 * needs is arithmetic: the callers look the provider's granularity up in the registry. */
#include "kite/cost.h"

double kite_cost_billable_s(int64_t ms, unsigned increment_s, unsigned minimum_s) {
  if (ms <= 0)
    return 0;
  int64_t step_ms = (int64_t)(increment_s ? increment_s : 1) * 1000;
  int64_t billed = (ms + step_ms - 1) / step_ms * step_ms;
  if (billed < (int64_t)minimum_s * 1000)
    billed = (int64_t)minimum_s * 1000;
  return (double)billed / 1000.0;
}

kite_cost_bill_t kite_cost_bill(int64_t ms, unsigned increment_s, unsigned minimum_s,
                                double price_hourly, double ondemand_hourly, bool spot) {
  kite_cost_bill_t b = {.billable_s = kite_cost_billable_s(ms, increment_s, minimum_s)};
  if (price_hourly > 0)
    b.cost = price_hourly * b.billable_s / 3600.0;
  if (spot && ondemand_hourly > 0)
    b.savings = ondemand_hourly * b.billable_s / 3600.0 - b.cost;
  return b;
}
