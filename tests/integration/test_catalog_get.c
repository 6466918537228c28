/* kite_catalog_get on a real runtime, bus and store: a small provider component answers
 * catalog_request (counting the requests), so the test sees when the cache is used, when a
 * provider is asked again, and how an error reply or a provider that is not running falls back
 * to the cache or a snapshot, named in the message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kite/bus.h"
#include "kite/catalog.h"
#include "kite/kite.h"
#include "kite/store.h"
#include "kite_impl.h"

#define TINY "tiny"

typedef struct tiny {
  kite_component_t comp;
  kite_bus_t *bus;
  kite_sub_t sub;
  unsigned asked;
  double price;  /* what the next answer says s-1 costs */
  int fail;      /* answer with this error instead */
  char *options; /* the options of the last request */
} tiny_t;

static void on_request(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_catalog_request_t *p,
                       void *data) {
  tiny_t *t = data;
  t->asked++;
  free(t->options);
  t->options = p->options ? strdup(p->options) : NULL;
  if (t->fail) {
    kite_bus_reply_error(bus, ev->corr, t->fail, "the token was refused (401)");
    return;
  }
  char json[512];
  snprintf(json, sizeof(json),
           "[{\"provider\":\"tiny\",\"region\":\"r1\",\"instance_type\":\"s-1\",\"vcpus\":1,"
           "\"memory_mb\":1024,\"price\":%g},{\"provider\":\"tiny\",\"region\":\"r2\","
           "\"instance_type\":\"g-8\",\"vcpus\":8,\"memory_mb\":32768,\"accelerator\":\"L4\","
           "\"accelerator_count\":1,\"price\":0.8,\"spot_price\":0.3}]",
           t->price);
  kite_ev_catalog_t out = {.provider = TINY, .count = 2, .offers = json, .source = "api"};
  kite_reply_catalog(bus, ev->corr, &out);
}

static int tiny_start(kite_component_t *c, kite_runtime_t *rt) {
  tiny_t *t = container_of(c, tiny_t, comp);
  t->bus = kite_runtime_bus(rt);
  return kite_respond_catalog_request(t->bus, kite_key_str(TINY), on_request, t, &t->sub);
}

static void tiny_stop(kite_component_t *c, kite_component_stopped_fn done) {
  tiny_t *t = container_of(c, tiny_t, comp);
  kite_bus_unsubscribe(t->bus, t->sub);
  done(c);
}

typedef struct fx {
  char home[64];
  kite_runtime_t *rt;
  tiny_t tiny;
} fx_t;

/* What one kite_catalog_get gave. */
typedef struct got {
  unsigned calls;
  int status;
  kite_offer_t *offers;
  size_t n;
  char *message;
} got_t;

static void on_got(int status, const kite_offer_t *offers, size_t n, const char *message,
                   void *data) {
  got_t *g = data;
  g->calls++;
  g->status = status;
  g->n = n;
  g->offers = malloc((n ? n : 1) * sizeof(*offers));
  if (n > 0)
    memcpy(g->offers, offers, n * sizeof(*offers));
  g->message = message ? strdup(message) : NULL;
}

static void got_clear(got_t *g) {
  free(g->offers);
  free(g->message);
  memset(g, 0, sizeof(*g));
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  snprintf(f->home, sizeof(f->home), "/tmp/kite-test-catalog-XXXXXX");
  if (mkdtemp(f->home) == NULL)
    return -1;
  kite_runtime_options_t o = {.home = f->home, .log_level = KITE_LOG_ERROR};
  if (kite_runtime_new(&f->rt, &o) != 0)
    return -1;
  f->tiny.comp = (kite_component_t){
      .name = TINY, .tier = KITE_TIER_PROVIDER, .start = tiny_start, .stop = tiny_stop};
  f->tiny.price = 0.01;
  if (kite_runtime_add(f->rt, &f->tiny.comp) != 0)
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  assert_int_equal(kite_runtime_shutdown(f->rt, NULL, NULL), 0);
  kite_runtime_run(f->rt);
  assert_int_equal(kite_runtime_free(f->rt), 0);
  free(f->tiny.options);
  int rc = kite__rm_rf(f->home);
  free(f);
  return rc;
}

/* One kite_catalog_get, run on the loop to its callback; the callback must not run inside. */
static void get(fx_t *f, const kite_catalog_query_t *q, got_t *g) {
  memset(g, 0, sizeof(*g));
  assert_int_equal(kite_catalog_get(f->rt, q, on_got, g), 0);
  assert_int_equal(g->calls, 0);
  while (g->calls == 0)
    uv_run(kite_runtime_loop(f->rt), UV_RUN_ONCE);
  /* Once, never again. */
  kite_bus_drain(kite_runtime_bus(f->rt), 0);
  assert_int_equal(g->calls, 1);
}

static const kite_offer_t *find(const got_t *g, const char *provider, const char *type) {
  for (size_t i = 0; i < g->n; i++)
    if (strcmp(g->offers[i].provider, provider) == 0 &&
        strcmp(g->offers[i].instance_type, type) == 0)
      return &g->offers[i];
  return NULL;
}

static void test_second_call_within_ttl_asks_nobody(void **state) {
  fx_t *f = *state;
  const char *const names[] = {TINY, NULL};
  kite_catalog_query_t q = {.providers = names, .options = "{\"tiny\":{\"token_file\":\"x\"}}"};
  got_t g;
  get(f, &q, &g);
  assert_int_equal(g.status, 0);
  assert_int_equal(f->tiny.asked, 1);
  assert_string_equal(f->tiny.options, "{\"token_file\":\"x\"}");
  assert_int_equal(g.n, 2);
  assert_null(g.message);
  const kite_offer_t *o = find(&g, TINY, "s-1");
  assert_non_null(o);
  assert_true(o->price == 0.01);
  assert_string_equal(o->source, "api");
  assert_true(o->fetched_ms > 0);
  got_clear(&g);

  /* Stored: the store has them, and a second call within the TTL answers from it. */
  kite_store_t *st;
  assert_int_equal(kite__runtime_store(f->rt, &st), 0);
  kite_offer_t *v;
  size_t n;
  assert_int_equal(kite_store_offers_get(st, TINY, &v, &n), 0);
  assert_int_equal(n, 2);
  free(v);
  f->tiny.price = 0.02;
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 1);
  assert_int_equal(g.n, 2);
  assert_true(find(&g, TINY, "s-1")->price == 0.01);
  got_clear(&g);

  /* refresh asks again, and the new price replaces the cached one. */
  q.refresh = true;
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 2);
  assert_true(find(&g, TINY, "s-1")->price == 0.02);
  got_clear(&g);
  q.refresh = false;
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 2);
  assert_true(find(&g, TINY, "s-1")->price == 0.02);
  got_clear(&g);

  /* An expired TTL asks again. */
  q.ttl_ms = 1;
  uv_sleep(5);
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 3);
  got_clear(&g);

  /* cache_only never asks, however old. */
  q.cache_only = true;
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 3);
  assert_int_equal(g.n, 2);
  got_clear(&g);
}

static void test_error_reply_falls_back_to_cache_and_names_the_provider(void **state) {
  fx_t *f = *state;
  const char *const names[] = {TINY, NULL};
  kite_catalog_query_t q = {.providers = names};
  got_t g;
  /* Nothing cached yet: the error is the answer, with the provider and its reason. */
  f->tiny.fail = KITE_EAUTH;
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 1);
  assert_int_equal(g.status, KITE_EAUTH);
  assert_int_equal(g.n, 0);
  assert_non_null(g.message);
  assert_non_null(strstr(g.message, "tiny: it could not be asked: the token was refused (401)"));
  assert_non_null(strstr(g.message, "nothing of it is cached"));
  got_clear(&g);

  f->tiny.fail = 0;
  get(f, &q, &g);
  assert_int_equal(g.status, 0);
  got_clear(&g);
  f->tiny.fail = KITE_EAUTH;
  q.refresh = true;
  get(f, &q, &g);
  assert_int_equal(f->tiny.asked, 3);
  assert_int_equal(g.status, 0);
  assert_int_equal(g.n, 2);
  assert_non_null(find(&g, TINY, "g-8"));
  assert_non_null(g.message);
  assert_non_null(strstr(g.message, "tiny: it could not be asked: the token was refused"));
  assert_non_null(strstr(g.message, "its 2 offers cached"));
  got_clear(&g);
}

static void test_provider_not_running_falls_back_to_snapshot(void **state) {
  fx_t *f = *state;
  char path[128];
  snprintf(path, sizeof(path), "%s/ghost.csv", f->home);
  static const char csv[] = "InstanceType,Region,vCPUs,MemoryGiB,Price,SpotPrice\r\n"
                            "gx-2,west,2,4.0,0.05,\r\ngx-4,west,4,8.0,0.10,0.04\r\n";
  assert_int_equal(kite__write_file(path, csv, sizeof(csv) - 1, 0600), 0);
  size_t n = 0;
  char *msg = NULL;
  assert_int_equal(kite_catalog_import(f->rt, "ghost", path, "2025-03-04", &n, &msg), 0);
  assert_int_equal(n, 2);

  const char *const names[] = {"ghost", TINY, NULL};
  kite_catalog_query_t q = {.providers = names};
  got_t g;
  get(f, &q, &g);
  assert_int_equal(g.status, 0);
  assert_int_equal(f->tiny.asked, 1);
  assert_int_equal(g.n, 4);
  const kite_offer_t *o = find(&g, "ghost", "gx-4");
  assert_non_null(o);
  assert_string_equal(o->source, "snapshot ghost.csv 2025-03-04");
  assert_true(o->spot_price == 0.04);
  assert_non_null(g.message);
  assert_non_null(strstr(g.message, "ghost: no ghost provider is running here"));
  assert_non_null(strstr(g.message, "snapshot ghost.csv 2025-03-04"));
  assert_null(strstr(g.message, "tiny"));
  got_clear(&g);

  /* The snapshot is kept apart: tiny's API answer did not replace it, a new import replaces
   * only it. */
  static const char csv2[] = "InstanceType,Region,Price\ngx-8,east,0.2\n";
  assert_int_equal(kite__write_file(path, csv2, sizeof(csv2) - 1, 0600), 0);
  assert_int_equal(kite_catalog_import(f->rt, "ghost", path, "2025-04-01", &n, &msg), 0);
  q.cache_only = true;
  get(f, &q, &g);
  assert_int_equal(g.n, 3);
  assert_null(find(&g, "ghost", "gx-4"));
  assert_non_null(find(&g, "ghost", "gx-8"));
  assert_null(g.message);
  got_clear(&g);
}

static void test_nothing_to_ask(void **state) {
  fx_t *f = *state;
  const char *const none[] = {NULL};
  kite_catalog_query_t q = {.providers = none};
  got_t g;
  get(f, &q, &g);
  assert_int_equal(g.status, KITE_ENOENT);
  assert_non_null(g.message);
  got_clear(&g);
  kite_catalog_query_t bad = {.options = "not json"};
  assert_int_equal(kite_catalog_get(f->rt, &bad, on_got, &g), KITE_EINVAL);
  assert_int_equal(g.calls, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_second_call_within_ttl_asks_nobody, setup, teardown),
      cmocka_unit_test_setup_teardown(test_error_reply_falls_back_to_cache_and_names_the_provider,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_provider_not_running_falls_back_to_snapshot, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_nothing_to_ask, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
