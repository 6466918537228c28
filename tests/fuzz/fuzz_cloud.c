/* The DigitalOcean, Hetzner and Compute Engine providers reading their APIs' answers, through
 * the whole provider (the cloud skeleton, the HTTP client's header and status handling, the
 * provider's JSON parsing), with the HTTP client's canned answers instead of a network.
 *
 * Input: byte 0 picks the provider, byte 1 the request (launch, terminate, describe, list,
 * preemption check, catalog), the rest is the raw HTTP/1.1 answers to the requests the
 * provider makes, one after the other, separated by a line "~~~" (after the last, nothing
 * comes back). Each input runs in a fresh runtime; the request must be answered. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/kite_impl.h"
#include "kite/digitalocean.h"
#include "kite/gcp.h"
#include "kite/hetzner.h"
#include "kite/kite.h"

#define SEP "\n~~~\n"
#define MAX_ANSWERS 64

/* $KITE_FUZZ_VERBOSE: print each request and the reply (for writing seeds). */
static bool verbose;

typedef struct input {
  const char *p, *end;
  unsigned given;
  char *buf; /* the answer given last */
  char name[96];
} input_t;

/* The answer with every "@NAME@" replaced by the first instance name kite put in the request
 * (names are made fresh for every launch; an answer about the instance must carry its name). */
static const char *named(input_t *in, const char *start, size_t *len, const char *url,
                         const char *body) {
  const char *n = body ? strstr(body, "kite-fuzz-r") : NULL;
  if (n == NULL)
    n = strstr(url, "kite-fuzz-r");
  if (n) /* a request that names none (a list) is about the one named last */
    snprintf(in->name, sizeof(in->name), "%.*s", (int)strcspn(n, "\"&/?, "), n);
  n = in->name;
  size_t nl = strlen(n);
  size_t cap = *len + 1, out = 0;
  for (const char *p = start; p < start + *len; p++)
    if (p + 6 <= start + *len && memcmp(p, "@NAME@", 6) == 0)
      cap += nl;
  char *buf = realloc(in->buf, cap);
  if (buf == NULL)
    return NULL;
  in->buf = buf;
  for (const char *p = start; p < start + *len;) {
    if (p + 6 <= start + *len && memcmp(p, "@NAME@", 6) == 0) {
      if (nl)
        memcpy(buf + out, n, nl);
      out += nl;
      p += 6;
    } else {
      buf[out++] = *p++;
    }
  }
  *len = out;
  return buf;
}

static const char *canned(const char *method, const char *url, const char *body, size_t *len,
                          void *data) {
  input_t *in = data;
  if (verbose)
    fprintf(stderr, "  %s %s\n", method, url);
  if (in->p >= in->end || in->given++ == MAX_ANSWERS)
    return NULL;
  const char *start = in->p;
  const char *sep = memmem(start, (size_t)(in->end - start), SEP, strlen(SEP));
  *len = sep ? (size_t)(sep - start) : (size_t)(in->end - start);
  in->p = sep ? sep + strlen(SEP) : in->end;
  return named(in, start, len, url, body);
}

static char home[64];

static void setup(void) {
  if (home[0])
    return;
  snprintf(home, sizeof(home), "/tmp/kite-fuzz-cloud-%d", (int)getpid());
  mkdir(home, 0700);
  char path[128];
  snprintf(path, sizeof(path), "%s/adc.json", home);
  FILE *fp = fopen(path, "w");
  if (fp) {
    fputs("{\"type\": \"authorized_user\", \"client_id\": \"c\", \"client_secret\": \"s\", "
          "\"refresh_token\": \"r\"}",
          fp);
    fclose(fp);
  }
  setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
  setenv("GOOGLE_CLOUD_PROJECT", "fuzz-project", 1);
  setenv("DIGITALOCEAN_TOKEN", "fuzz-token", 1);
  setenv("HCLOUD_TOKEN", "fuzz-token", 1);
  setenv("KITE_DO_API_URL", "https://api.digitalocean.test", 1);
  setenv("KITE_HETZNER_API_URL", "https://api.hetzner.test/v1", 1);
  setenv("KITE_GCP_API_URL", "https://compute.test/compute/v1", 1);
  setenv("KITE_GCP_BILLING_URL", "https://billing.test/v1", 1);
}

static const char *const names[] = {"digitalocean", "hetzner", "gcp"};

static int provider_new(kite_runtime_t *rt, unsigned which) {
  if (which == 0) {
    kite_do_provider_options_t o = {.poll_ms = 1,
                                    .active_timeout_ms = 5,
                                    .delete_timeout_ms = 5,
                                    .max_retries = 1,
                                    .backoff_base_ms = 1};
    return kite_do_provider_new(rt, &o, NULL);
  }
  if (which == 1) {
    kite_hetzner_provider_options_t o = {.poll_ms = 1,
                                         .running_timeout_ms = 5,
                                         .delete_timeout_ms = 5,
                                         .max_retries = 1,
                                         .backoff_base_ms = 1};
    return kite_hetzner_provider_new(rt, &o, NULL);
  }
  kite_gcp_provider_options_t o = {.poll_ms = 1,
                                   .running_timeout_ms = 5,
                                   .delete_timeout_ms = 5,
                                   .max_retries = 1,
                                   .backoff_base_ms = 1};
  return kite_gcp_provider_new(rt, &o, NULL);
}

static void on_reply(kite_bus_t *bus, int status, const kite_event_t *ev, void *data) {
  (void)bus;
  if (verbose) {
    const kite_ev_reply_error_t *e = status ? kite_ev_as_reply_error(ev) : NULL;
    fprintf(stderr, "  -> %s %s\n", kite_strerror(status), e && e->message ? e->message : "");
  }
  (*(unsigned *)data)++;
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static const char *const ids[] = {"4242", "4242", "us-central1-a/kite-fuzz-1"};
static const char *const regions[] = {"fra1", "fsn1", "europe-west1"};

#define BUDGET_MS 20

typedef struct budget {
  kite_runtime_t *rt;
  unsigned *replies;
  bool shut;
} budget_t;

static void on_budget(uv_timer_t *t) {
  budget_t *b = t->data;
  if (*b->replies == 0 && kite_runtime_shutdown(b->rt, on_shutdown, NULL) == 0)
    b->shut = true;
}

static int ask(kite_bus_t *bus, unsigned which, unsigned op, unsigned *replies) {
  const char *provider = names[which], *id = ids[which];
  switch (op % 6) {
  case 0: {
    kite_ev_instance_launch_t l = {.provider = provider, .pool = 1, .node = 1, .tag = "kite-fuzz"};
    return kite_request_instance_launch(bus, &l, 0, on_reply, replies, NULL);
  }
  case 1: {
    kite_ev_instance_terminate_t t = {.provider = provider, .instance_id = id};
    return kite_request_instance_terminate(bus, &t, 0, on_reply, replies, NULL);
  }
  case 2: {
    kite_ev_instance_describe_t d = {.provider = provider, .node = 1, .instance_id = id};
    return kite_request_instance_describe(bus, &d, 0, on_reply, replies, NULL);
  }
  case 3: {
    kite_ev_instance_list_t l = {.provider = provider, .tag = op & 8 ? "*" : "kite-fuzz"};
    return kite_request_instance_list(bus, &l, 0, on_reply, replies, NULL);
  }
  case 4: {
    kite_ev_preempt_check_t p = {.provider = provider, .node = 1, .instance_id = id};
    return kite_request_preempt_check(bus, &p, 0, on_reply, replies, NULL);
  }
  default: {
    kite_ev_catalog_request_t c = {.provider = provider, .region = op & 8 ? NULL : regions[which]};
    return kite_request_catalog_request(bus, &c, 0, on_reply, replies, NULL);
  }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  setup();
  verbose = getenv("KITE_FUZZ_VERBOSE") != NULL;
  unsigned which = data[0] % 3;
  input_t in = {.p = (const char *)data + 2, .end = (const char *)data + size};
  kite__http_canned(canned, &in);
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t o = {.home = home, .log_level = verbose ? KITE_LOG_DEBUG : KITE_LOG_OFF};
  if (kite_runtime_new(&rt, &o) != 0)
    abort();
  if (provider_new(rt, which) != 0)
    abort();
  unsigned replies = 0;
  if (ask(kite_runtime_bus(rt), which, data[1], &replies) != 0)
    abort();
  /* An answer may take the skeleton's own backoff (seconds, by design): after BUDGET_MS the
   * runtime is shut down, which must answer what still waits. */
  budget_t b = {rt, &replies, false};
  uv_timer_t timer;
  uv_timer_init(kite_runtime_loop(rt), &timer);
  timer.data = &b;
  uv_timer_start(&timer, on_budget, BUDGET_MS, 0);
  uv_unref((uv_handle_t *)&timer);
  kite_runtime_run(rt);
  if (replies != 1)
    abort(); /* the request was never answered */
  if (!b.shut && kite_runtime_shutdown(rt, on_shutdown, NULL) != 0)
    abort();
  uv_close((uv_handle_t *)&timer, NULL);
  kite_runtime_run(rt);
  if (kite_runtime_free(rt) != 0)
    abort();
  kite__http_canned(NULL, NULL);
  free(in.buf);
  return 0;
}
