/* The billable time and cost of an instance under its provider's billing granularity
 * (kite/cost.h): by the second, by the second with a minimum, each hour begun paid whole; and
 * what a spot instance saves against on demand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "kite/kite.h"

#define EPS 1e-12

static void test_by_the_second(void **state) {
  (void)state;
  assert_true(kite_cost_billable_s(0, 0, 0) == 0);
  assert_true(kite_cost_billable_s(-5, 0, 0) == 0);
  assert_true(kite_cost_billable_s(1, 0, 0) == 1); /* a second begun is a second */
  assert_true(kite_cost_billable_s(1000, 0, 0) == 1);
  assert_true(kite_cost_billable_s(1001, 0, 0) == 2);
  assert_true(kite_cost_billable_s(90500, 0, 0) == 91);
  kite_cost_bill_t b = kite_cost_bill(3600 * 1000, 0, 0, 0.5, 0, false);
  assert_true(b.billable_s == 3600);
  assert_true(b.cost > 0.5 - EPS && b.cost < 0.5 + EPS);
  assert_true(b.savings == 0);
}

static void test_per_second_with_a_minute_minimum(void **state) {
  (void)state;
  assert_true(kite_cost_billable_s(1, 1, 60) == 60);
  assert_true(kite_cost_billable_s(59999, 1, 60) == 60);
  assert_true(kite_cost_billable_s(60001, 1, 60) == 61);
  assert_true(kite_cost_billable_s(0, 1, 60) == 0); /* never existed: nothing to pay */
  kite_cost_bill_t b = kite_cost_bill(10 * 1000, 0, 60, 3.6, 0, false);
  assert_true(b.billable_s == 60);
  assert_true(b.cost > 0.06 - EPS && b.cost < 0.06 + EPS);
}

static void test_each_hour_begun_is_paid(void **state) {
  (void)state;
  assert_true(kite_cost_billable_s(1, 3600, 0) == 3600);
  assert_true(kite_cost_billable_s(3600 * 1000, 3600, 0) == 3600);
  assert_true(kite_cost_billable_s(3600 * 1000 + 1, 3600, 0) == 7200);
  kite_cost_bill_t b = kite_cost_bill(61 * 60 * 1000, 3600, 3600, 0.25, 0, false);
  assert_true(b.billable_s == 7200);
  assert_true(b.cost > 0.5 - EPS && b.cost < 0.5 + EPS);
}

static void test_spot_savings(void **state) {
  (void)state;
  /* Two hours of spot at 0.3/h where on demand is 1.0/h: 0.6 paid, 1.4 saved. */
  kite_cost_bill_t b = kite_cost_bill(2 * 3600 * 1000, 0, 0, 0.3, 1.0, true);
  assert_true(b.cost > 0.6 - EPS && b.cost < 0.6 + EPS);
  assert_true(b.savings > 1.4 - EPS && b.savings < 1.4 + EPS);
  /* Not spot, or no known on-demand price: nothing saved. */
  assert_true(kite_cost_bill(2 * 3600 * 1000, 0, 0, 0.3, 1.0, false).savings == 0);
  assert_true(kite_cost_bill(2 * 3600 * 1000, 0, 0, 0.3, 0, true).savings == 0);
  /* An unknown price costs nothing (and saves nothing against a known on-demand one is all of
   * it: the bill says what kite knows). */
  b = kite_cost_bill(3600 * 1000, 0, 0, 0, 0, false);
  assert_true(b.cost == 0 && b.billable_s == 3600);
  /* Savings follow the same billable time: 10 s under a 60 s minimum is a minute of each. */
  b = kite_cost_bill(10 * 1000, 0, 60, 0.36, 3.6, true);
  assert_true(b.cost > 0.006 - EPS && b.cost < 0.006 + EPS);
  assert_true(b.savings > 0.054 - EPS && b.savings < 0.054 + EPS);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_by_the_second),
      cmocka_unit_test(test_per_second_with_a_minute_minimum),
      cmocka_unit_test(test_each_hour_begun_is_paid),
      cmocka_unit_test(test_spot_savings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
