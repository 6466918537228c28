/* The cloud provider skeleton: the component, its responders and the life of every request
 * (cloud.h says what it owns).
 *
 * Design notes
 * - Records. Each bus request becomes one record (rec_t) with its own uv timer; the timer
 *   runs only while the record waits (a poll interval, a backoff), so an idle provider has
 *   no handle active. A record is freed when its timer has closed.
 * - Calls. Each operation of the table runs as one call (xcall_t) in the provider's list of
 *   calls in flight; a call belongs to one record, a batch of launch records, or a site. Its
 *   answer (kite_cloud_answer) is handled at once by the function the call was made for, and
 *   the call is freed; that function decides what the record does next. Retries after the
 *   HTTP client gave up (RETRY, MAYBE) are the record's: the same call again after a backoff,
 *   at most CALL_ATTEMPTS times; the HTTP client's own retries stay below that.
 * - Sites. Prerequisites belong to one account in one region (the table names it: cfg.site).
 *   A site is prepared once; launches that need it meanwhile wait in its list and go on
 *   together. A failed preparation fails its waiters and is tried again by the next launch.
 * - Gone. Termination and the undo of a failed launch share one sequence: destroy, then
 *   describe until the API says the instance is not there, destroy again every sixth look,
 *   under a deadline. "Not there" is proof only when the instance was made where it is asked
 *   (rec.trusted).
 * - Stop. Waiting launches fail at once, calls in flight are canceled (their answers end their
 *   records), records waiting on a timer end; then the table's cleanup runs for each site this
 *   process used, one at a time; then the HTTP client and the handles close. */
#include <arpa/inet.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <utlist.h>

#include "cloud.h"
#include "cloudinit.h"
#include "kite/offer.h"
#include "kite/provider.h"
#include "kite/transport.h"
#include "kite_impl.h"

#define POLL_MAX_MS 10000
#define CALL_ATTEMPTS 6
#define FIND_ATTEMPTS 20
#define MAX_PAGES 100
#define BATCH_CAP 100
#define UNSEEN_POLLS 5

typedef struct rec rec_t;
typedef struct kite_cloud_site site_t;
typedef struct xcall xcall_t;

typedef enum rec_kind {
  R_LAUNCH,
  R_TERMINATE,
  R_DESCRIBE,
  R_PREEMPT,
  R_LIST,
  R_CATALOG
} rec_kind_t;

typedef enum lstep {
  L_KEY,     /* waiting for kite's key */
  L_HOSTKEY, /* generating the instance's host key */
  L_SITE,    /* waiting for the site's preparation */
  L_QUEUED,  /* a first create waiting for the end of the loop turn */
  L_CREATE,  /* create in flight, or waiting to be sent again */
  L_FIND,    /* looking for the instance after an ambiguous create */
  L_POLL,    /* waiting for it to run */
  L_GONE,    /* terminate, or undo of a failed launch: destroy and confirm */
} lstep_t;

struct kite_cloud_site {
  kite_cloud_t *c;
  char *name;
  kite_cloud_cfg_t *cfg;
  int state; /* 0 new, 1 preparing, 2 ready */
  unsigned attempt;
  bool used; /* prepared or terminated here: cleaned up at stop */
  void *data;
  rec_t *waiters;
  uv_timer_t timer;
  site_t *next;
};

typedef struct joiner {
  uint64_t corr, pool, node;
  uint32_t rank;
  struct joiner *next;
} joiner_t;

struct rec {
  kite_cloud_t *c;
  rec_kind_t kind;
  uint64_t corr;
  kite_cloud_cfg_t *cfg;
  site_t *site;
  uint64_t pool, node;
  uint32_t rank;
  char *tag, *token, *name, *id, *user_data_in, *user_data, *hk_path, *host_pub;
  bool spot, pin, redone;
  double plan_price, plan_ondemand; /* launch: the catalog's prices, or 0 */
  kite_cloud_launch_t launch;
  lstep_t step;
  unsigned attempt, finds, polls, pages;
  uint64_t poll_ms, deadline_ms;
  /* the launch's failure while it is undone */
  int fail_code;
  char *fail_msg;
  bool trusted;       /* "not found" is proof it is gone */
  joiner_t *joiners;  /* terminate: every request for this instance */
  json_t *ids;        /* list */
  char *probe_output; /* preemption check */
  size_t probe_len;
  kite_offer_t *offers; /* catalog */
  size_t n_offers, cap_offers;
  void (*on_timer)(rec_t *r);
  uv_timer_t timer;
  rec_t *next_wait; /* in a site's waiters or the batch queue */
  rec_t *next, *prev;
};

struct xcall {
  kite_cloud_call_t pub;
  kite_cloud_t *c;
  rec_t *rec;
  rec_t **batch;
  kite_cloud_launch_t **lv;
  site_t *site;
  void (*on_answer)(xcall_t *x, const kite_cloud_answer_t *a);
  kite_cloud_http_cb cb;
  xcall_t *next, *prev;
};

typedef struct known {
  char *key; /* an instance id, or "tag:" + a tag */
  kite_cloud_cfg_t *cfg;
  char *address;
  struct known *next;
} known_t;

struct kite_cloud {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  kite_http_t *http;
  const kite_cloud_ops_t *ops;
  kite_cloud_options_t o;
  void *provider;
  char *key_path, *pubkey;
  int key_status;
  bool key_ready;
  rec_t *recs;
  xcall_t *calls;
  site_t *sites;
  known_t *known;
  rec_t *queued;
  uv_timer_t batch_timer;
  bool started, stopping, cleaning, cleaned, http_closing;
  kite_component_stopped_fn stop_done;
  int handles_open;
  uint64_t seq;
  kite_sub_t subs[7];
};

static void maybe_stopped(kite_cloud_t *c);
static void launch_go(rec_t *r);
static void launch_site(rec_t *r);
static void create_send(rec_t **recs, size_t n);
static void gone_start(rec_t *r);

/* ---- configurations, known instances ----------------------------------------------------- */

static kite_cloud_cfg_t *cfg_new(void) {
  kite_cloud_cfg_t *cfg = calloc(1, sizeof(*cfg));
  if (cfg)
    cfg->refs_ = 1;
  return cfg;
}

static kite_cloud_cfg_t *cfg_ref(kite_cloud_cfg_t *cfg) {
  if (cfg)
    cfg->refs_++;
  return cfg;
}

static void cfg_free_fields(const kite_cloud_ops_t *ops, kite_cloud_cfg_t *cfg) {
  free(cfg->site);
  free(cfg->reach);
  free(cfg->region);
  free(cfg->zone);
  free(cfg->type);
  free(cfg->accelerator);
  free(cfg->image);
  free(cfg->user);
  if (cfg->api && ops->free_api)
    ops->free_api(cfg->api);
  unsigned refs = cfg->refs_;
  memset(cfg, 0, sizeof(*cfg));
  cfg->refs_ = refs;
}

static void cfg_unref(kite_cloud_t *c, kite_cloud_cfg_t *cfg) {
  if (cfg == NULL || --cfg->refs_ > 0)
    return;
  cfg_free_fields(c->ops, cfg);
  free(cfg);
}

/* Runs the table's configure into a new configuration; NULL and the reply sent on failure.
 * region: the region a request other than a launch names (configure finds it in cfg->region). */
static kite_cloud_cfg_t *configure(kite_cloud_t *c, uint64_t corr, const char *options,
                                   const kite_ev_instance_launch_t *launch, const char *region) {
  kite_cloud_cfg_t *cfg = cfg_new();
  char *msg = NULL;
  int rc = cfg ? 0 : KITE_ENOMEM;
  if (rc == 0 && region && *region && (cfg->region = kite__strdup(region)) == NULL)
    rc = KITE_ENOMEM;
  if (rc == 0 && launch && launch->zone && *launch->zone &&
      (cfg->zone = kite__strdup(launch->zone)) == NULL)
    rc = KITE_ENOMEM;
  if (rc == 0)
    rc = c->ops->configure(c, options, launch, cfg, &msg);
  if (rc == 0 && (cfg->site == NULL || cfg->reach == NULL || cfg->user == NULL))
    rc = KITE_ENOMEM;
  if (rc != 0) {
    kite_bus_reply_error(c->bus, corr, rc, msg ? msg : kite_strerror(rc));
    if (msg)
      KITE_WARN(c->rt, c->ops->name, "%s", msg);
    free(msg);
    cfg_unref(c, cfg);
    return NULL;
  }
  return cfg;
}

static known_t *known_find(kite_cloud_t *c, const char *prefix, const char *key) {
  size_t pl = strlen(prefix);
  for (known_t *k = c->known; key && k; k = k->next)
    if (strncmp(k->key, prefix, pl) == 0 && strcmp(k->key + pl, key) == 0)
      return k;
  return NULL;
}

static known_t *known_add(kite_cloud_t *c, const char *prefix, const char *key,
                          kite_cloud_cfg_t *cfg) {
  known_t *k = known_find(c, prefix, key);
  if (k || key == NULL)
    return k;
  k = calloc(1, sizeof(*k));
  if (k == NULL)
    return NULL;
  k->key = kite__sprintf("%s%s", prefix, key);
  if (k->key == NULL) {
    free(k);
    return NULL;
  }
  k->cfg = cfg_ref(cfg);
  k->next = c->known;
  c->known = k;
  return k;
}

static void known_remove(kite_cloud_t *c, const char *key) {
  for (known_t **pp = &c->known; *pp; pp = &(*pp)->next)
    if (strcmp((*pp)->key, key) == 0) {
      known_t *k = *pp;
      *pp = k->next;
      cfg_unref(c, k->cfg);
      free(k->key);
      free(k->address);
      free(k);
      return;
    }
}

/* The configuration for a request that carries no options: where the instance or tag was
 * made in this process (*trusted), else the reach record's place, else where this process
 * launched last (an instance of it that is gone, say), else the defaults. */
static kite_cloud_cfg_t *cfg_for(kite_cloud_t *c, uint64_t corr, const char *prefix,
                                 const char *key, const char *reach, bool *trusted) {
  known_t *k = known_find(c, prefix, key);
  *trusted = k != NULL;
  if (k)
    return cfg_ref(k->cfg);
  bool record = reach && *reach && c->ops->configure_reach;
  for (known_t *t = record ? NULL : c->known; t; t = t->next)
    if (strncmp(t->key, "tag:", 4) == 0)
      return cfg_ref(t->cfg);
  if (!record)
    return configure(c, corr, NULL, NULL, NULL);
  kite_cloud_cfg_t *cfg = cfg_new();
  char *msg = NULL;
  int rc = cfg ? c->ops->configure_reach(c, reach, cfg, trusted, &msg) : KITE_ENOMEM;
  if (rc == 0 && (cfg->site == NULL || cfg->reach == NULL))
    rc = KITE_ENOMEM;
  if (rc != 0) {
    *trusted = false;
    kite_bus_reply_error(c->bus, corr, rc, msg ? msg : kite_strerror(rc));
    free(msg);
    cfg_unref(c, cfg);
    return NULL;
  }
  return cfg;
}

/* ---- messages ------------------------------------------------------------------------------ */

static bool advice_matches(const kite_cloud_advice_t *adv, const char *api_code, long http_status,
                           const char *message) {
  const char *k = adv->api_code;
  size_t n = k ? strlen(k) : 0;
  bool code = n ? api_code && (k[n - 1] == '*' ? strncmp(k, api_code, n - 1) == 0
                                               : strcmp(k, api_code) == 0)
                : http_status && adv->http_status == http_status;
  return code && (adv->message_has == NULL || (message && strstr(message, adv->message_has)));
}

static const kite_cloud_advice_t *advice_for(const kite_cloud_ops_t *ops, const char *api_code,
                                             long http_status, const char *message) {
  for (size_t i = 0; i < ops->n_advice; i++)
    if (advice_matches(&ops->advice[i], api_code, http_status, message))
      return &ops->advice[i];
  return NULL;
}

/* "NAME: what: message (HTTP n, code): what to do", what made by printf (fmt, ...); *code gets
 * the kite code. */
__attribute__((format(printf, 4, 5))) static char *
failure_text(kite_cloud_t *c, const kite_cloud_answer_t *a, int *code, const char *fmt, ...) {
  const kite_cloud_ops_t *ops = c->ops;
  char what[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof(what), fmt, ap);
  va_end(ap);
  const kite_cloud_advice_t *adv = advice_for(ops, a->api_code, a->http_status, a->message);
  *code = adv && adv->code ? adv->code : a->code ? a->code : KITE_EPROVIDER;
  if (a->outcome == KITE_CLOUD_NOT_FOUND && !adv)
    *code = KITE_ENOENT;
  char paren[160] = "";
  if (a->http_status && a->api_code)
    snprintf(paren, sizeof(paren), " (HTTP %ld, %.100s)", a->http_status, a->api_code);
  else if (a->http_status)
    snprintf(paren, sizeof(paren), " (HTTP %ld)", a->http_status);
  else if (a->api_code)
    snprintf(paren, sizeof(paren), " (%.100s)", a->api_code);
  /* The advice says what to do; an API that could not be reached at all gets the endpoint's. */
  bool unreachable =
      a->http_status == 0 && (a->code == KITE_ECONNREFUSED || a->code == KITE_EHOSTUNREACH);
  const char *advice = adv ? adv->what_to_do : NULL, *ask = "";
  if (advice == NULL && unreachable && ops->endpoint_hint) {
    advice = ops->endpoint_hint;
    ask = "is the API URL right? ";
  }
  const char *m = a->message && *a->message ? a->message : kite_strerror(*code);
  return kite__sprintf("%s: %s: %s%s%s%s%s", ops->name, what, m, paren, advice ? ": " : "", ask,
                       advice ? advice : "");
}

/* ---- records -------------------------------------------------------------------------------- */

static void on_rec_closed(uv_handle_t *h) {
  rec_t *r = h->data;
  kite_cloud_t *c = r->c;
  cfg_unref(c, r->cfg);
  free(r->tag);
  free(r->token);
  free(r->name);
  free(r->id);
  if (r->user_data_in)
    memset(r->user_data_in, 0, strlen(r->user_data_in));
  free(r->user_data_in);
  if (r->user_data)
    memset(r->user_data, 0, strlen(r->user_data));
  free(r->user_data);
  if (r->hk_path) {
    unlink(r->hk_path);
    char *pub = kite__sprintf("%s.pub", r->hk_path);
    if (pub)
      unlink(pub);
    free(pub);
  }
  free(r->hk_path);
  free(r->host_pub);
  free(r->fail_msg);
  free(r->probe_output);
  free(r->offers);
  json_decref(r->ids);
  while (r->joiners) {
    joiner_t *j = r->joiners;
    r->joiners = j->next;
    free(j);
  }
  free(r);
  c->handles_open--;
  maybe_stopped(c);
}

static rec_t *rec_new(kite_cloud_t *c, rec_kind_t kind, uint64_t corr) {
  rec_t *r = calloc(1, sizeof(*r));
  if (r == NULL) {
    kite_bus_reply_error(c->bus, corr, KITE_ENOMEM, "out of memory");
    return NULL;
  }
  r->c = c;
  r->kind = kind;
  r->corr = corr;
  uv_timer_init(kite_runtime_loop(c->rt), &r->timer);
  r->timer.data = r;
  c->handles_open++;
  DL_PREPEND(c->recs, r);
  return r;
}

static void rec_free(rec_t *r) {
  DL_DELETE(r->c->recs, r);
  uv_timer_stop(&r->timer);
  uv_close((uv_handle_t *)&r->timer, on_rec_closed);
}

/* Replies an error to the record's request (takes msg) and ends it. */
static void rec_fail(rec_t *r, int code, char *msg) {
  kite_bus_reply_error(r->c->bus, r->corr, code, msg ? msg : kite_strerror(code));
  if (msg)
    KITE_WARN(r->c->rt, r->c->ops->name, "%s", msg);
  free(msg);
  rec_free(r);
}

static void on_rec_timer(uv_timer_t *t) {
  rec_t *r = t->data;
  void (*fn)(rec_t *) = r->on_timer;
  r->on_timer = NULL;
  fn(r);
}

static void rec_later(rec_t *r, uint64_t ms, void (*fn)(rec_t *)) {
  r->on_timer = fn;
  uv_timer_start(&r->timer, on_rec_timer, ms, 0);
}

/* Not done, or perhaps done, and safe to ask again. */
static bool transient(const kite_cloud_answer_t *a) {
  return a->outcome == KITE_CLOUD_RETRY || a->outcome == KITE_CLOUD_MAYBE;
}

/* Backoff before the n-th repeat of a call (n from 1), or the server's Retry-After. */
static uint64_t backoff_ms(unsigned n, uint64_t retry_after) {
  if (retry_after)
    return retry_after;
  uint64_t ms = 500ull << (n > 5 ? 5 : n - 1);
  return ms > POLL_MAX_MS ? POLL_MAX_MS : ms;
}

/* The moment an instance must be running (gone: be gone) by, from now. */
static uint64_t deadline_from_now(const kite_cloud_t *c, bool gone) {
  uint64_t o = gone ? c->o.gone_timeout_ms : c->o.running_timeout_ms;
  uint64_t t = gone ? c->ops->gone_timeout_ms : c->ops->running_timeout_ms;
  return kite__wall_ms() + (o ? o : t ? t : 600000);
}

static uint64_t poll_first(const kite_cloud_t *c) {
  return c->o.poll_ms ? c->o.poll_ms : c->ops->poll_ms ? c->ops->poll_ms : 2000;
}

static void poll_backoff(rec_t *r) {
  r->poll_ms = r->poll_ms * 3 / 2;
  if (r->poll_ms > POLL_MAX_MS)
    r->poll_ms = POLL_MAX_MS;
}

/* ---- calls ---------------------------------------------------------------------------------- */

static xcall_t *call_new(kite_cloud_t *c, kite_cloud_call_kind_t kind, kite_cloud_cfg_t *cfg,
                         void (*on_answer)(xcall_t *, const kite_cloud_answer_t *)) {
  xcall_t *x = calloc(1, sizeof(*x));
  if (x == NULL)
    return NULL;
  x->c = c;
  x->pub.cloud = c;
  x->pub.kind = kind;
  x->pub.cfg = cfg;
  x->pub.owner_ = x;
  x->on_answer = on_answer;
  DL_PREPEND(c->calls, x);
  return x;
}

static void call_unlink(xcall_t *x) {
  DL_DELETE(x->c->calls, x);
  x->prev = x->next = NULL;
}

static void call_run(xcall_t *x) {
  const kite_cloud_ops_t *ops = x->c->ops;
  kite_cloud_call_t *p = &x->pub;
  if (x->site) {
    p->site = x->site;
    p->site_data = &x->site->data;
  }
  void (*const op[])(kite_cloud_call_t *) = {
      [KITE_CLOUD_CALL_PREPARE] = ops->prepare, [KITE_CLOUD_CALL_CREATE] = ops->create,
      [KITE_CLOUD_CALL_FIND] = ops->find,       [KITE_CLOUD_CALL_DESCRIBE] = ops->describe,
      [KITE_CLOUD_CALL_DESTROY] = ops->destroy, [KITE_CLOUD_CALL_LIST] = ops->list_page,
      [KITE_CLOUD_CALL_CLEANUP] = ops->cleanup, [KITE_CLOUD_CALL_CATALOG] = ops->catalog};
  if ((size_t)p->kind < KITE_ARRAY_SIZE(op) && op[p->kind])
    op[p->kind](p);
  else
    kite_cloud_answer_fail(p, KITE_EINTERNAL, "internal error: the provider has no such operation");
}

static void on_http(kite_http_t *h, int status, const kite_http_response_t *resp, void *data) {
  xcall_t *x = data;
  (void)h;
  x->pub.req_ = NULL;
  kite_cloud_http_cb cb = x->cb;
  x->cb = NULL;
  cb(&x->pub, status, resp);
}

int kite_cloud_http(kite_cloud_call_t *call, const kite_http_request_t *q, kite_cloud_http_cb cb) {
  xcall_t *x = call->owner_;
  if (x->pub.req_ != NULL || cb == NULL)
    return KITE_EINVAL;
  if (x->c->http == NULL || x->c->http_closing)
    return KITE_ECLOSED;
  x->cb = cb;
  int rc = kite_http_request(x->c->http, q, on_http, x, &x->pub.req_);
  if (rc != 0)
    x->cb = NULL;
  return rc;
}

void kite_cloud_created(kite_cloud_call_t *call, size_t i, const char *id) {
  xcall_t *x = call->owner_;
  if (i >= call->n || id == NULL || *id == '\0' || x->batch == NULL)
    return;
  rec_t *r = x->batch[i];
  if (r->id == NULL) {
    r->id = kite__strdup(id);
    r->launch.id = r->id;
  }
}

void kite_cloud_listed(kite_cloud_call_t *call, const char *id, const char *pool_tag) {
  xcall_t *x = call->owner_;
  rec_t *r = x->rec;
  if (r == NULL || r->ids == NULL || id == NULL || *id == '\0')
    return;
  bool any = strcmp(r->tag, "*") == 0;
  if (any && (pool_tag == NULL || *pool_tag == '\0'))
    return;
  char *line = any ? kite__sprintf("%s %s", id, pool_tag) : kite__strdup(id);
  if (line)
    json_array_append_new(r->ids, json_string(line));
  free(line);
}

void kite_cloud_offer(kite_cloud_call_t *call, const kite_offer_t *offer) {
  xcall_t *x = call->owner_;
  rec_t *r = x->rec;
  if (r == NULL || r->kind != R_CATALOG || offer == NULL || offer->instance_type[0] == '\0')
    return;
  if (r->n_offers == r->cap_offers) {
    size_t cap = r->cap_offers ? 2 * r->cap_offers : 64;
    kite_offer_t *v = realloc(r->offers, cap * sizeof(*v));
    if (v == NULL)
      return; /* the answer reports the shortage */
    r->offers = v;
    r->cap_offers = cap;
  }
  kite_offer_t *o = &r->offers[r->n_offers++];
  *o = *offer;
  if (o->provider[0] == '\0')
    KITE_OFFER_SET(o, provider, r->c->ops->name);
  if (o->fetched_ms == 0)
    o->fetched_ms = (int64_t)kite__wall_ms();
  if (o->source[0] == '\0')
    KITE_OFFER_SET(o, source, "api");
}

void kite_cloud_answer(kite_cloud_call_t *call, const kite_cloud_answer_t *a) {
  xcall_t *x = call->owner_;
  if (x->pub.answered_)
    return;
  x->pub.answered_ = true;
  call_unlink(x);
  x->on_answer(x, a);
  free(x->batch);
  free(x->lv);
  free(x);
}

void kite_cloud_answer_ok(kite_cloud_call_t *call) {
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_OK};
  kite_cloud_answer(call, &a);
}

void kite_cloud_answer_fail(kite_cloud_call_t *call, int code, const char *message) {
  kite_cloud_answer_t a = {.outcome = KITE_CLOUD_FAILED, .code = code, .message = message};
  kite_cloud_answer(call, &a);
}

void kite_cloud_http_outcome(int status, const kite_http_response_t *resp, const char *api_code,
                             const char *message, kite_cloud_answer_t *out) {
  kite_cloud_answer_t a = {.api_code = api_code,
                           .message = message && *message ? message
                                      : resp              ? resp->message
                                                          : NULL};
  long hs = resp ? resp->status : 0;
  if (status == KITE_ECANCELED) {
    a.outcome = KITE_CLOUD_FAILED;
    a.code = KITE_ECANCELED;
  } else if (status == 0) {
    a.outcome = KITE_CLOUD_MAYBE;
    a.code = KITE_EPROTO;
    a.http_status = hs;
    if (message == NULL)
      a.message = "the answer could not be read";
  } else if (status == KITE_EHTTP) {
    a.http_status = hs;
    if (hs == 404) {
      a.outcome = KITE_CLOUD_NOT_FOUND;
    } else if (hs == 429) {
      a.outcome = KITE_CLOUD_RETRY;
      a.code = KITE_EAGAIN;
      const char *ra = kite_http_response_header(resp, "retry-after");
      long s = ra ? strtol(ra, NULL, 10) : 0;
      a.retry_after_ms = s > 0 && s < 300 ? (uint64_t)s * 1000 : 0;
    } else if (hs >= 500 || hs == 0) {
      a.outcome = KITE_CLOUD_MAYBE;
      a.code = KITE_EPROVIDER;
    } else {
      a.outcome = KITE_CLOUD_FAILED;
      a.code = hs == 401 || hs == 403 ? KITE_ECREDENTIALS : KITE_EPROVIDER;
    }
  } else if (status == KITE_ETIMEDOUT || status == KITE_ECONNLOST) {
    a.outcome = KITE_CLOUD_MAYBE;
    a.code = status;
  } else {
    a.outcome = KITE_CLOUD_FAILED;
    a.code = status;
  }
  *out = a;
}

void kite_cloud_answer_http(kite_cloud_call_t *call, int status, const kite_http_response_t *resp,
                            const char *api_code, const char *message) {
  kite_cloud_answer_t a;
  kite_cloud_http_outcome(status, resp, api_code, message, &a);
  kite_cloud_answer(call, &a);
}

/* ---- sites ---------------------------------------------------------------------------------- */

static void on_site_closed(uv_handle_t *h) {
  site_t *s = h->data;
  kite_cloud_t *c = s->c;
  if (s->data && c->ops->free_site_data)
    c->ops->free_site_data(s->data);
  cfg_unref(c, s->cfg);
  free(s->name);
  free(s);
  c->handles_open--;
  maybe_stopped(c);
}

static site_t *site_get(kite_cloud_t *c, kite_cloud_cfg_t *cfg) {
  for (site_t *s = c->sites; s; s = s->next)
    if (strcmp(s->name, cfg->site) == 0)
      return s;
  site_t *s = calloc(1, sizeof(*s));
  if (s == NULL || (s->name = kite__strdup(cfg->site)) == NULL) {
    free(s);
    return NULL;
  }
  s->c = c;
  s->cfg = cfg_ref(cfg);
  uv_timer_init(kite_runtime_loop(c->rt), &s->timer);
  s->timer.data = s;
  c->handles_open++;
  s->next = c->sites;
  c->sites = s;
  return s;
}

static void site_prepare(site_t *s);

static void on_site_timer(uv_timer_t *t) {
  site_prepare(t->data);
}

static void on_prepared(xcall_t *x, const kite_cloud_answer_t *a) {
  site_t *s = x->site;
  kite_cloud_t *c = s->c;
  bool again = transient(a) && ++s->attempt < CALL_ATTEMPTS && !c->stopping;
  if (a->outcome == KITE_CLOUD_OK) {
    s->state = 2;
    s->attempt = 0;
  } else if (again) {
    uv_timer_start(&s->timer, on_site_timer, backoff_ms(s->attempt, a->retry_after_ms), 0);
    return;
  } else {
    s->state = 0; /* the next launch tries again */
    s->attempt = 0;
  }
  int code = 0;
  char *msg = a->outcome == KITE_CLOUD_OK
                  ? NULL
                  : failure_text(c, a, &code, "preparing the account for kite (%s)",
                                 s->cfg->region ? s->cfg->region : s->name);
  rec_t *w = s->waiters;
  s->waiters = NULL;
  while (w) {
    rec_t *next = w->next_wait;
    w->next_wait = NULL;
    if (msg)
      rec_fail(w, code, kite__strdup(msg));
    else
      launch_site(w);
    w = next;
  }
  free(msg);
}

static void site_prepare(site_t *s) {
  kite_cloud_t *c = s->c;
  s->state = 1;
  s->used = true;
  xcall_t *x = call_new(c, KITE_CLOUD_CALL_PREPARE, s->cfg, on_prepared);
  if (x == NULL) {
    kite_cloud_answer_t a = {.outcome = KITE_CLOUD_FAILED, .code = KITE_ENOMEM};
    xcall_t tmp = {.c = c, .site = s};
    on_prepared(&tmp, &a);
    return;
  }
  x->site = s;
  x->pub.attempt = s->attempt;
  call_run(x);
}

/* ---- launch --------------------------------------------------------------------------------- */

static void reply_launched(rec_t *r, const kite_cloud_instance_t *in) {
  kite_cloud_t *c = r->c;
  known_t *k = known_find(c, "", r->id);
  if (k) {
    free(k->address);
    k->address = kite__strdup(in->address);
  }
  kite_ev_instance_launched_t l = {.pool = r->pool,
                                   .node = r->node,
                                   .rank = r->rank,
                                   .provider = c->ops->name,
                                   .instance_id = r->id,
                                   .address = in->address,
                                   .port = in->port ? in->port : r->cfg->port,
                                   .user = r->cfg->user,
                                   .host_key = r->host_pub,
                                   .price_hourly =
                                       in->price_hourly > 0 ? in->price_hourly : r->plan_price,
                                   .tag = r->tag,
                                   .key_path = c->key_path,
                                   .ondemand_hourly = r->plan_ondemand,
                                   .spot = r->spot};
  KITE_INFO(c->rt, c->ops->name, "%s %s running at %s", c->ops->noun, r->id, in->address);
  kite_reply_instance_launched(c->bus, r->corr, &l);
  rec_free(r);
}

/* A launch that cannot finish after its instance exists: destroyed and confirmed gone, then
 * the failure is reported. Takes msg. */
static void launch_undo(rec_t *r, int code, char *msg) {
  free(r->fail_msg);
  r->fail_msg = msg;
  r->fail_code = code ? code : KITE_EPROVIDER;
  r->trusted = true; /* made here */
  r->polls = 0;
  r->attempt = 0;
  r->poll_ms = poll_first(r->c);
  r->deadline_ms = deadline_from_now(r->c, true);
  gone_start(r);
}

static bool is_ip_address(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void poll_send(rec_t *r);

static void on_polled(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->rec;
  kite_cloud_t *c = r->c;
  const char *noun = c->ops->noun;
  if (a->outcome == KITE_CLOUD_FAILED && a->code == KITE_ECANCELED) {
    rec_fail(r, KITE_ECANCELED,
             kite__sprintf("%s: launch canceled; %s %s may still exist (`kite down` deletes it)",
                           c->ops->name, noun, r->id));
    return;
  }
  const kite_cloud_instance_t *in = &a->instance;
  if (a->outcome == KITE_CLOUD_OK && in->state == KITE_CLOUD_RUNNING && in->address &&
      *in->address) {
    if (!is_ip_address(in->address)) {
      /* It goes on command lines and into known_hosts: only an IP address is taken. */
      launch_undo(r, KITE_EPROTO,
                  kite__sprintf("%s: the API gave %s %s an address that is not an IP address; "
                                "it is deleted",
                                c->ops->name, noun, r->id));
      return;
    }
    reply_launched(r, in);
    return;
  }
  if (a->outcome == KITE_CLOUD_OK && in->never_runs) {
    launch_undo(r, KITE_ECAPACITY,
                kite__sprintf("%s: %s %s will never run (the API says it is %s); it is deleted and "
                              "another offer is tried",
                              c->ops->name, noun, r->id, in->never_runs));
    return;
  }
  /* Reads after a create are eventually consistent on some clouds (EC2): a new instance may be
   * "not found" for a few seconds, so only a few such answers mean it disappeared. */
  bool unseen = a->outcome == KITE_CLOUD_NOT_FOUND && ++r->polls < UNSEEN_POLLS;
  if ((a->outcome == KITE_CLOUD_NOT_FOUND && !unseen) ||
      (a->outcome == KITE_CLOUD_OK && in->state >= KITE_CLOUD_STOPPED)) {
    const char *how = a->outcome == KITE_CLOUD_NOT_FOUND ? "disappeared"
                      : in->state == KITE_CLOUD_STOPPED  ? "stopped"
                      : in->state == KITE_CLOUD_STOPPING ? "began shutting down"
                                                         : "was terminated";
    launch_undo(r, KITE_EPROVIDER,
                kite__sprintf("%s: %s %s %s before it was running%s", c->ops->name, noun, r->id,
                              how, in->preempted ? " (the cloud took it back)" : ""));
    return;
  }
  if (a->outcome == KITE_CLOUD_FAILED && a->code == KITE_ECREDENTIALS) {
    int code = 0;
    char *msg = failure_text(c, a, &code, "waiting for %s %s", noun, r->id);
    launch_undo(r, code, msg);
    return;
  }
  if (kite__wall_ms() > r->deadline_ms) {
    launch_undo(r, KITE_ETIMEDOUT,
                kite__sprintf("%s: %s %s was not running in time; it is deleted", c->ops->name,
                              noun, r->id));
    return;
  }
  poll_backoff(r);
  rec_later(r, r->poll_ms, poll_send);
}

static void poll_send(rec_t *r) {
  if (r->c->stopping) {
    rec_fail(r, KITE_ECLOSED,
             kite__sprintf("%s: the provider is stopping; %s %s may still exist", r->c->ops->name,
                           r->c->ops->noun, r->id));
    return;
  }
  xcall_t *x = call_new(r->c, KITE_CLOUD_CALL_DESCRIBE, r->cfg, on_polled);
  if (x == NULL) {
    rec_later(r, r->poll_ms, poll_send);
    return;
  }
  x->rec = r;
  x->pub.id = r->id;
  call_run(x);
}

/* The instance exists: its id goes to the pool's store now, then it is waited for. */
static void launch_created(rec_t *r, bool found) {
  kite_cloud_t *c = r->c;
  known_add(c, "", r->id, r->cfg);
  kite_ev_instance_created_t e = {.pool = r->pool,
                                  .node = r->node,
                                  .rank = r->rank,
                                  .provider = c->ops->name,
                                  .instance_id = r->id,
                                  .launch_token = r->token};
  kite_emit_instance_created(c->bus, &e);
  KITE_INFO(c->rt, c->ops->name, "%s %s (%s) %s for rank %u", c->ops->noun, r->id, r->name,
            found ? "exists after all" : "created", r->rank);
  r->step = L_POLL;
  r->poll_ms = poll_first(c);
  r->deadline_ms = deadline_from_now(c, false);
  rec_later(r, found ? 0 : r->poll_ms, poll_send);
}

static void find_send(rec_t *r);

static void create_again(rec_t *r) {
  create_send(&r, 1);
}

/* What one launch does after a create (or find) that did not give it an id. */
static void launch_not_created(rec_t *r, const kite_cloud_answer_t *a, bool batched) {
  kite_cloud_t *c = r->c;
  if (a->outcome == KITE_CLOUD_FAILED && a->code == KITE_ECANCELED) {
    rec_fail(r, KITE_ECANCELED,
             kite__sprintf("%s: launch of %s canceled (check the account for %ss tagged %s)",
                           c->ops->name, r->name, c->ops->noun, r->tag));
    return;
  }
  if (c->stopping) {
    rec_fail(r, KITE_ECLOSED, kite__sprintf("%s: the provider is stopping", c->ops->name));
    return;
  }
  int code = 0;
  char *msg = failure_text(c, a, &code, "creating %s %s (region %s, type %s, image %s)",
                           c->ops->noun, r->name, r->cfg->region ? r->cfg->region : "-",
                           r->cfg->type ? r->cfg->type : "-", r->cfg->image ? r->cfg->image : "-");
  if (a->outcome == KITE_CLOUD_FAILED || a->outcome == KITE_CLOUD_NOT_FOUND) {
    if (a->prepare_again && !r->redone && r->site) {
      /* What the site's preparation made is gone (another process removed it): again. */
      KITE_INFO(c->rt, c->ops->name, "%s; preparing the account again", msg);
      free(msg);
      r->redone = true;
      r->site->state = r->site->state == 1 ? 1 : 0;
      launch_site(r);
      return;
    }
    if (batched) {
      /* Refused as a whole (a limit, a size out of stock): some may still fit one by one. */
      KITE_INFO(c->rt, c->ops->name, "%s; trying the batch one by one", msg);
      free(msg);
      create_send(&r, 1);
      return;
    }
    rec_fail(r, code, msg);
    return;
  }
  /* RETRY, MAYBE, or OK without this launch in the answer. */
  bool maybe = a->outcome != KITE_CLOUD_RETRY;
  if (r->attempt >= CALL_ATTEMPTS) {
    rec_fail(r, code,
             maybe && !c->ops->create_token
                 ? kite__sprintf("%s; the %s may exist: `kite down` deletes everything tagged %s",
                                 msg, c->ops->noun, r->tag)
                 : msg);
    if (maybe && !c->ops->create_token)
      free(msg);
    return;
  }
  if (maybe && !c->ops->create_token) {
    /* The instance may or may not exist: find out before creating it again. */
    KITE_INFO(c->rt, c->ops->name, "%s; looking for it before trying again", msg);
    free(r->fail_msg);
    r->fail_msg = msg;
    r->fail_code = code;
    r->step = L_FIND;
    r->finds = 0;
    find_send(r);
    return;
  }
  KITE_INFO(c->rt, c->ops->name, "%s; trying again", msg);
  free(msg);
  rec_later(r, backoff_ms(r->attempt, a->retry_after_ms), create_again);
}

static void on_created(xcall_t *x, const kite_cloud_answer_t *a) {
  size_t n = x->pub.n;
  for (size_t i = 0; i < n; i++) {
    rec_t *r = x->batch[i];
    if (r->id)
      launch_created(r, false);
    else
      launch_not_created(r, a, n > 1 && a->outcome == KITE_CLOUD_FAILED);
  }
}

static void create_send(rec_t **recs, size_t n) {
  kite_cloud_t *c = recs[0]->c;
  xcall_t *x = call_new(c, KITE_CLOUD_CALL_CREATE, recs[0]->cfg, on_created);
  if (x)
    x->batch = calloc(n, sizeof(*x->batch));
  if (x)
    x->lv = calloc(n, sizeof(*x->lv));
  if (x == NULL || x->batch == NULL || x->lv == NULL) {
    if (x) {
      call_unlink(x);
      free(x->batch);
      free(x->lv);
      free(x);
    }
    for (size_t i = 0; i < n; i++)
      rec_fail(recs[i], KITE_ENOMEM, NULL);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    rec_t *r = recs[i];
    r->step = L_CREATE;
    x->pub.attempt = r->attempt > x->pub.attempt ? r->attempt : x->pub.attempt;
    r->attempt++;
    x->batch[i] = r;
    x->lv[i] = &r->launch;
  }
  x->pub.launches = x->lv;
  x->pub.n = n;
  x->site = recs[0]->site;
  if (n > 1)
    KITE_INFO(c->rt, c->ops->name, "creating %zu %ss tagged %s in one request", n, c->ops->noun,
              recs[0]->tag);
  call_run(x);
}

static void on_found(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->batch[0];
  kite_cloud_t *c = r->c;
  if (r->id) {
    launch_created(r, true);
    return;
  }
  if (a->outcome == KITE_CLOUD_OK || a->outcome == KITE_CLOUD_NOT_FOUND) {
    if (c->stopping) {
      rec_fail(r, KITE_ECLOSED, kite__sprintf("%s: the provider is stopping", c->ops->name));
      return;
    }
    if (r->attempt >= CALL_ATTEMPTS) {
      rec_fail(r, r->fail_code ? r->fail_code : KITE_EPROVIDER,
               kite__sprintf("%s (tried %u times)", r->fail_msg ? r->fail_msg : "creating failed",
                             r->attempt));
      return;
    }
    create_send(&r, 1); /* not there: created again */
    return;
  }
  if (a->outcome == KITE_CLOUD_FAILED && a->code == KITE_ECANCELED) {
    launch_not_created(r, a, false);
    return;
  }
  if (++r->finds >= FIND_ATTEMPTS || c->stopping) {
    rec_fail(r, r->fail_code ? r->fail_code : KITE_EPROTO,
             kite__sprintf("%s: creating %s: the API answered ambiguously and its list could not "
                           "be read %d times; the %s may exist: `kite down` deletes everything "
                           "tagged %s",
                           c->ops->name, r->name, FIND_ATTEMPTS, c->ops->noun, r->tag));
    return;
  }
  rec_later(r, poll_first(c), find_send);
}

static void find_send(rec_t *r) {
  xcall_t *x = call_new(r->c, KITE_CLOUD_CALL_FIND, r->cfg, on_found);
  if (x)
    x->batch = calloc(1, sizeof(*x->batch));
  if (x)
    x->lv = calloc(1, sizeof(*x->lv));
  if (x == NULL || x->batch == NULL || x->lv == NULL) {
    if (x) {
      call_unlink(x);
      free(x->batch);
      free(x->lv);
      free(x);
    }
    rec_later(r, poll_first(r->c), find_send);
    return;
  }
  x->batch[0] = r;
  x->lv[0] = &r->launch;
  x->pub.launches = x->lv;
  x->pub.n = 1;
  x->pub.attempt = r->finds;
  x->site = r->site;
  call_run(x);
}

static bool same(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

static bool alike(const rec_t *a, const rec_t *b) {
  return same(a->cfg->site, b->cfg->site) && same(a->cfg->reach, b->cfg->reach) &&
         same(a->cfg->region, b->cfg->region) && same(a->cfg->type, b->cfg->type) &&
         same(a->cfg->accelerator, b->cfg->accelerator) &&
         a->cfg->accelerator_count == b->cfg->accelerator_count &&
         same(a->cfg->image, b->cfg->image) && same(a->tag, b->tag) && a->spot == b->spot &&
         same(a->user_data, b->user_data);
}

/* Sends the first creates of this loop turn: one call per group of up to batch_max alike. */
static void on_batch_timer(uv_timer_t *t) {
  kite_cloud_t *c = kite_container_of(t, kite_cloud_t, batch_timer);
  unsigned max = c->ops->batch_max > BATCH_CAP ? BATCH_CAP : c->ops->batch_max;
  rec_t *group[BATCH_CAP];
  while (c->queued) {
    rec_t *first = c->queued;
    c->queued = first->next_wait;
    first->next_wait = NULL;
    size_t n = 0;
    group[n++] = first;
    for (rec_t **pp = &c->queued; *pp && n < max;) {
      if (alike(first, *pp)) {
        rec_t *o = *pp;
        *pp = o->next_wait;
        o->next_wait = NULL;
        group[n++] = o;
      } else {
        pp = &(*pp)->next_wait;
      }
    }
    create_send(group, n);
  }
}

static void launch_queue(rec_t *r) {
  kite_cloud_t *c = r->c;
  if (c->ops->batch_max <= 1 || r->attempt > 0) {
    create_send(&r, 1);
    return;
  }
  r->step = L_QUEUED;
  rec_t **pp = &c->queued;
  while (*pp)
    pp = &(*pp)->next_wait;
  *pp = r;
  if (!uv_is_active((uv_handle_t *)&c->batch_timer))
    uv_timer_start(&c->batch_timer, on_batch_timer, 0, 0);
}

static void launch_site(rec_t *r) {
  kite_cloud_t *c = r->c;
  if (c->stopping) {
    rec_fail(r, KITE_ECLOSED, kite__sprintf("%s: the provider is stopping", c->ops->name));
    return;
  }
  if (r->site == NULL)
    r->site = site_get(c, r->cfg);
  if (r->site == NULL) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  site_t *s = r->site;
  if (c->ops->prepare == NULL || s->state == 2) {
    launch_queue(r);
    return;
  }
  r->step = L_SITE;
  r->next_wait = s->waiters;
  s->waiters = r;
  if (s->state == 0)
    site_prepare(s);
}

static void on_hostkey(kite_runtime_t *rt, int status, void *data) {
  rec_t *r = data;
  kite_cloud_t *c = r->c;
  (void)rt;
  char *priv = NULL, *pub = NULL;
  char *pubpath = kite__sprintf("%s.pub", r->hk_path);
  if (status == 0)
    status = kite__read_file(r->hk_path, &priv, NULL);
  if (status == 0)
    status = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
  /* The controller keeps no copy: the key lives on in the instance only. */
  unlink(r->hk_path);
  if (pubpath)
    unlink(pubpath);
  free(pubpath);
  char type[64], b64[512];
  if (status == 0 && sscanf(pub, "%63s %511s", type, b64) != 2)
    status = KITE_EPROTO;
  if (status == 0) {
    kite_secret_add(c->rt, priv);
    r->host_pub = kite__sprintf("%s %s", type, b64);
    r->user_data = r->host_pub == NULL ? NULL
                   : c->ops->first_boot
                       ? c->ops->first_boot(c, priv, r->host_pub, r->user_data_in)
                       : kite_cloud_init(priv, r->host_pub, r->user_data_in);
    if (r->user_data)
      kite_secret_add(c->rt, r->user_data);
    else
      status = KITE_ENOMEM;
  }
  if (priv)
    memset(priv, 0, strlen(priv));
  free(priv);
  free(pub);
  r->launch.user_data = r->user_data;
  if (c->stopping) {
    rec_fail(r, KITE_ECLOSED, kite__sprintf("%s: the provider is stopping", c->ops->name));
    return;
  }
  if (status != 0) {
    rec_fail(r, status,
             kite__sprintf("%s: cannot generate a host key for %s %s (is ssh-keygen installed "
                           "and $KITE_HOME writable?)",
                           c->ops->name, c->ops->noun, r->name));
    return;
  }
  launch_site(r);
}

/* Kite's key exists (or could not be made): on to the host key and the site. */
static void launch_go(rec_t *r) {
  kite_cloud_t *c = r->c;
  if (c->stopping) {
    rec_fail(r, KITE_ECLOSED, kite__sprintf("%s: the provider is stopping", c->ops->name));
    return;
  }
  if (c->key_status != 0) {
    rec_fail(r, c->key_status,
             kite__sprintf("%s: kite's SSH key %s could not be created or read (is ssh-keygen "
                           "installed and the directory writable?)",
                           c->ops->name, c->key_path));
    return;
  }
  if (r->pin && r->host_pub == NULL) {
    r->step = L_HOSTKEY;
    r->hk_path =
        kite__sprintf("%s/%s/hostkeys/%s", kite_runtime_home(c->rt), c->ops->name, r->name);
    int rc = r->hk_path ? kite_keypair_ensure(c->rt, r->hk_path, on_hostkey, r) : KITE_ENOMEM;
    if (rc != 0)
      rec_fail(r, rc,
               kite__sprintf("%s: cannot generate a host key for %s %s", c->ops->name, c->ops->noun,
                             r->name));
    return;
  }
  launch_site(r);
}

/* A name unique to the launch that is a valid host name (RFC 1123: lowercase letters, digits
 * and '-', at most 63 characters): the pool's tag, its rank and a unique suffix. A tag too long
 * to fit is cut, and a hash of the whole tag keeps names of different pools apart. */
#define NAME_MAX_LEN 63

static char *name_for(kite_cloud_t *c, const char *tag, uint32_t rank) {
  char suffix[64];
  snprintf(suffix, sizeof(suffix), "-r%u-%llx%04x", rank, (unsigned long long)kite__wall_ms(),
           (unsigned)(++c->seq & 0xffff));
  size_t room = NAME_MAX_LEN - strlen(suffix);
  char *n = NULL;
  if (strlen(tag) <= room) {
    n = kite__sprintf("%s%s", tag, suffix);
  } else {
    char fp[17];
    kite__fingerprint("cloud-name", tag, fp);
    n = kite__sprintf("%.*s-%.8s%s", (int)(room - 9), tag, fp, suffix);
  }
  for (char *p = n; p && *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
      *p = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : '-';
  return n;
}

static void on_launch(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                      void *data) {
  kite_cloud_t *c = data;
  const kite_cloud_ops_t *ops = c->ops;
  if (c->stopping) {
    kite_bus_reply_error(bus, ev->corr, KITE_ECLOSED, "the provider is stopping");
    return;
  }
  if (p->spot && !ops->spot) {
    char *m = kite__sprintf("%s: %s has no spot %ss: remove spot: true from the spec", ops->name,
                            ops->title, ops->noun);
    kite_bus_reply_error(bus, ev->corr, KITE_ENOTSUP, m ? m : "no spot instances");
    free(m);
    return;
  }
  rec_t *r = rec_new(c, R_LAUNCH, ev->corr);
  if (r == NULL)
    return;
  r->cfg = configure(c, ev->corr, p->options, p, NULL);
  if (r->cfg == NULL) {
    rec_free(r);
    return;
  }
  r->pool = p->pool;
  r->node = p->node;
  r->rank = p->rank;
  r->spot = p->spot;
  r->plan_price = p->price_hourly;
  r->plan_ondemand = p->ondemand_hourly;
  r->tag = kite__strdup(p->tag && *p->tag ? p->tag : "kite-untagged");
  r->token = kite__strdup(p->launch_token);
  r->user_data_in = kite__strdup(p->user_data);
  if (r->user_data_in && strlen(r->user_data_in) >= 4)
    kite_secret_add(c->rt, r->user_data_in);
  r->name = r->tag ? name_for(c, r->tag, r->rank) : NULL;
  /* A cloud-config of the pool's own cannot be merged with kite's: the instance makes its own
   * host key. A table with its own first boot has no cloud-config to merge. */
  r->pin = r->cfg->pin && (ops->first_boot || !kite_cloud_init_is_own(r->user_data_in));
  if (!r->pin && ops->first_boot) {
    r->user_data = ops->first_boot(c, NULL, NULL, r->user_data_in);
    if (r->user_data && strlen(r->user_data) >= 4)
      kite_secret_add(c->rt, r->user_data);
  }
  if (r->tag == NULL || r->name == NULL || (p->user_data && r->user_data_in == NULL) ||
      (p->launch_token && r->token == NULL) || (!r->pin && ops->first_boot && !r->user_data)) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  r->launch = (kite_cloud_launch_t){.name = r->name,
                                    .token = r->token,
                                    .tag = r->tag,
                                    .rank = r->rank,
                                    .spot = r->spot,
                                    .price = r->plan_price,
                                    .user_data = r->user_data ? r->user_data : r->user_data_in};
  known_add(c, "tag:", r->tag, r->cfg);
  r->step = L_KEY;
  if (c->key_ready)
    launch_go(r); /* else on_key goes on */
}

/* ---- gone: terminate, and undo ------------------------------------------------------------ */

static void gone_finish(rec_t *r, int code, char *msg) {
  kite_cloud_t *c = r->c;
  if (r->kind == R_LAUNCH) {
    /* The undo of a failed launch: its own failure is what the pool hears. */
    char *m = code == 0 ? kite__strdup(r->fail_msg)
                        : kite__sprintf("%s; deleting %s %s failed too (%s): delete it by hand or "
                                        "run `kite down`",
                                        r->fail_msg ? r->fail_msg : "the launch failed",
                                        c->ops->noun, r->id, msg ? msg : kite_strerror(code));
    if (code == 0)
      known_remove(c, r->id);
    free(msg);
    rec_fail(r, r->fail_code, m);
    return;
  }
  for (joiner_t *j = r->joiners; j; j = j->next) {
    if (code == 0) {
      kite_ev_instance_terminated_t t = {.pool = j->pool,
                                         .node = j->node,
                                         .rank = j->rank,
                                         .provider = c->ops->name,
                                         .instance_id = r->id};
      kite_reply_instance_terminated(c->bus, j->corr, &t);
    } else {
      kite_bus_reply_error(c->bus, j->corr, code, msg ? msg : kite_strerror(code));
    }
  }
  if (code == 0) {
    KITE_INFO(c->rt, c->ops->name, "%s %s is gone", c->ops->noun, r->id);
    known_remove(c, r->id);
  } else if (msg) {
    KITE_WARN(c->rt, c->ops->name, "%s", msg);
  }
  free(msg);
  rec_free(r);
}

static void not_proven(rec_t *r) {
  kite_cloud_t *c = r->c;
  gone_finish(r, KITE_EPROVIDER,
              kite__sprintf("%s: the API does not know %s %s, but its record does not say it was "
                            "made there with these credentials, so that is no proof it is gone; "
                            "it stays recorded. Run `kite down` with the credentials it was "
                            "made with (%s)",
                            c->ops->name, c->ops->noun, r->id, r->cfg->reach));
}

static void destroy_send(rec_t *r);
static void confirm_send(rec_t *r);

static void on_confirmed(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->rec;
  kite_cloud_t *c = r->c;
  if (a->outcome == KITE_CLOUD_NOT_FOUND) {
    if (r->trusted)
      gone_finish(r, 0, NULL);
    else
      not_proven(r);
    return;
  }
  if (a->outcome == KITE_CLOUD_OK && a->instance.state == KITE_CLOUD_GONE) {
    gone_finish(r, 0, NULL);
    return;
  }
  if (a->outcome == KITE_CLOUD_FAILED && (a->code == KITE_ECANCELED || c->stopping)) {
    gone_finish(r, KITE_ECANCELED,
                kite__sprintf("%s: the deletion of %s %s is not confirmed (canceled); run `kite "
                              "down` again",
                              c->ops->name, c->ops->noun, r->id));
    return;
  }
  if (a->outcome == KITE_CLOUD_FAILED && a->code == KITE_ECREDENTIALS) {
    int code = 0;
    char *msg = failure_text(c, a, &code, "checking that %s %s is gone", c->ops->noun, r->id);
    gone_finish(r, code, msg);
    return;
  }
  if (kite__wall_ms() > r->deadline_ms) {
    gone_finish(r, KITE_ETIMEDOUT,
                kite__sprintf("%s: %s %s is still there after the deletion timeout; check the "
                              "account and run `kite down` again",
                              c->ops->name, c->ops->noun, r->id));
    return;
  }
  /* Still there: look again, and now and then repeat the destroy. */
  poll_backoff(r);
  rec_later(r, r->poll_ms, ++r->polls % 6 == 0 ? destroy_send : confirm_send);
}

static void confirm_send(rec_t *r) {
  xcall_t *x = call_new(r->c, KITE_CLOUD_CALL_DESCRIBE, r->cfg, on_confirmed);
  if (x == NULL) {
    rec_later(r, r->poll_ms, confirm_send);
    return;
  }
  x->rec = r;
  x->pub.id = r->id;
  x->pub.attempt = r->polls;
  call_run(x);
}

static void on_destroyed(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->rec;
  kite_cloud_t *c = r->c;
  if (a->outcome == KITE_CLOUD_OK) {
    r->trusted = true; /* the API knew it: "not found" later means gone */
    r->attempt = 0;
    rec_later(r, r->poll_ms / 4 + 1, confirm_send);
    return;
  }
  if (a->outcome == KITE_CLOUD_NOT_FOUND) {
    if (r->trusted)
      rec_later(r, 0, confirm_send);
    else
      not_proven(r);
    return;
  }
  bool again = transient(a) && ++r->attempt < CALL_ATTEMPTS && !c->stopping &&
               kite__wall_ms() < r->deadline_ms;
  if (again) {
    rec_later(r, backoff_ms(r->attempt, a->retry_after_ms), destroy_send);
    return;
  }
  if (a->outcome == KITE_CLOUD_FAILED && a->code == KITE_ECANCELED) {
    gone_finish(r, KITE_ECANCELED,
                kite__sprintf("%s: the deletion of %s %s is not confirmed (canceled); run `kite "
                              "down` again",
                              c->ops->name, c->ops->noun, r->id));
    return;
  }
  int code = 0;
  char *msg = failure_text(c, a, &code, "deleting %s %s", c->ops->noun, r->id);
  gone_finish(r, code, msg);
}

static void destroy_send(rec_t *r) {
  xcall_t *x = call_new(r->c, KITE_CLOUD_CALL_DESTROY, r->cfg, on_destroyed);
  if (x == NULL) {
    rec_later(r, r->poll_ms, destroy_send);
    return;
  }
  x->rec = r;
  x->pub.id = r->id;
  x->pub.attempt = r->attempt;
  call_run(x);
}

static void gone_start(rec_t *r) {
  r->step = L_GONE;
  if (r->site)
    r->site->used = true;
  destroy_send(r);
}

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  kite_cloud_t *c = data;
  if (p->instance_id == NULL || *p->instance_id == '\0') {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL, "terminate needs an instance id");
    return;
  }
  joiner_t *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  *j = (joiner_t){.corr = ev->corr, .pool = p->pool, .node = p->node, .rank = p->rank};
  for (rec_t *r = c->recs; r; r = r->next)
    if (r->kind == R_TERMINATE && strcmp(r->id, p->instance_id) == 0) {
      j->next = r->joiners; /* already being terminated: one more to answer */
      r->joiners = j;
      return;
    }
  rec_t *r = rec_new(c, R_TERMINATE, ev->corr);
  if (r == NULL) {
    free(j);
    return;
  }
  r->joiners = j;
  r->cfg = cfg_for(c, ev->corr, "", p->instance_id, p->reach, &r->trusted);
  r->id = kite__strdup(p->instance_id);
  if (r->cfg == NULL) { /* cfg_for answered the request */
    r->joiners = NULL;
    free(j);
    rec_free(r);
    return;
  }
  if (r->id == NULL) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  r->site = site_get(c, r->cfg);
  r->poll_ms = poll_first(c);
  r->deadline_ms = deadline_from_now(c, true);
  gone_start(r);
}

/* ---- describe, preemption check ------------------------------------------------------------ */

static const char *state_name(kite_cloud_state_t s) {
  switch (s) {
  case KITE_CLOUD_PENDING:
    return "pending";
  case KITE_CLOUD_RUNNING:
    return "running";
  case KITE_CLOUD_STOPPED:
    return "stopped";
  case KITE_CLOUD_STOPPING:
    return "shutting-down";
  case KITE_CLOUD_GONE:
    return "terminated";
  default:
    return "unknown";
  }
}

static void on_described(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->rec;
  kite_cloud_t *c = r->c;
  bool gone = a->outcome == KITE_CLOUD_NOT_FOUND;
  if (!gone && a->outcome != KITE_CLOUD_OK) {
    int code = 0;
    char *msg = failure_text(c, a, &code, "describing %s %s", c->ops->noun, r->id);
    rec_fail(r, code, msg);
    return;
  }
  const kite_cloud_instance_t *in = &a->instance;
  if (r->kind == R_DESCRIBE) {
    kite_ev_instance_state_t s = {.provider = c->ops->name,
                                  .node = r->node,
                                  .instance_id = r->id,
                                  .state = gone ? "terminated" : state_name(in->state),
                                  .address = gone ? NULL : in->address};
    kite_reply_instance_state(c->bus, r->corr, &s);
    rec_free(r);
    return;
  }
  kite_ev_preempt_status_t s = {.provider = c->ops->name, .node = r->node, .instance_id = r->id};
  int64_t deadline = 0;
  if (gone || in->preempted || in->state >= KITE_CLOUD_STOPPED) {
    s.state = KITE_PREEMPT_GONE;
  } else if (in->notice_ms) {
    s.state = KITE_PREEMPT_NOTICE;
    s.deadline_ms = in->notice_ms;
  } else if (r->probe_len && c->ops->probe_parse &&
             c->ops->probe_parse(r->probe_output, r->probe_len, &deadline) == KITE_PREEMPT_NOTICE) {
    s.state = KITE_PREEMPT_NOTICE;
    s.deadline_ms = deadline;
  }
  char *probe = NULL;
  if (s.state != KITE_PREEMPT_GONE && r->spot && c->ops->probe) {
    known_t *k = known_find(c, "", r->id);
    probe = c->ops->probe(c, r->cfg, r->id, k && k->address ? k->address : in->address);
  }
  s.probe = probe;
  kite_reply_preempt_status(c->bus, r->corr, &s);
  free(probe);
  rec_free(r);
}

static void describe_start(kite_cloud_t *c, rec_kind_t kind, uint64_t corr, uint64_t node,
                           const char *id, const void *probe, size_t probe_len) {
  rec_t *r = rec_new(c, kind, corr);
  if (r == NULL)
    return;
  bool trusted;
  r->cfg = cfg_for(c, corr, "", id, NULL, &trusted);
  if (r->cfg == NULL) {
    rec_free(r);
    return;
  }
  r->node = node;
  r->id = kite__strdup(id ? id : "");
  r->spot = true; /* the probe is asked for only where it can tell something */
  if (probe_len) {
    r->probe_output = malloc(probe_len + 1);
    if (r->probe_output) {
      memcpy(r->probe_output, probe, probe_len);
      r->probe_output[probe_len] = '\0';
      r->probe_len = probe_len;
    }
  }
  xcall_t *x = r->id ? call_new(c, KITE_CLOUD_CALL_DESCRIBE, r->cfg, on_described) : NULL;
  if (x == NULL) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  x->rec = r;
  x->pub.id = r->id;
  call_run(x);
}

static void on_describe(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_describe_t *p, void *data) {
  (void)bus;
  describe_start(data, R_DESCRIBE, ev->corr, p->node, p->instance_id, NULL, 0);
}

static void on_preempt_check(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_preempt_check_t *p, void *data) {
  (void)bus;
  describe_start(data, R_PREEMPT, ev->corr, p->node, p->instance_id, p->probe_output.ptr,
                 p->probe_output.len);
}

/* ---- list ----------------------------------------------------------------------------------- */

static void page_send(rec_t *r);

static void on_page(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->rec;
  kite_cloud_t *c = r->c;
  if (a->outcome == KITE_CLOUD_OK && a->next && *a->next && ++r->pages < MAX_PAGES) {
    free(r->token);
    r->token = kite__strdup(a->next); /* the cursor */
    r->attempt = 0;
    page_send(r);
    return;
  }
  if (a->outcome == KITE_CLOUD_OK) {
    size_t len = 1, i;
    json_t *v;
    json_array_foreach(r->ids, i, v) len += json_string_length(v) + 1;
    char *ids = calloc(len, 1);
    if (ids == NULL) {
      rec_fail(r, KITE_ENOMEM, NULL);
      return;
    }
    json_array_foreach(r->ids, i, v) {
      if (i)
        strcat(ids, "\n");
      strcat(ids, json_string_value(v));
    }
    kite_ev_instance_listed_t l = {.provider = c->ops->name,
                                   .tag = r->tag,
                                   .count = (uint32_t)json_array_size(r->ids),
                                   .ids = ids};
    kite_reply_instance_listed(c->bus, r->corr, &l);
    free(ids);
    rec_free(r);
    return;
  }
  if (transient(a) && ++r->attempt < CALL_ATTEMPTS && !c->stopping) {
    rec_later(r, backoff_ms(r->attempt, a->retry_after_ms), page_send);
    return;
  }
  int code = 0;
  char *msg = failure_text(c, a, &code, "listing %ss tagged %s", c->ops->noun, r->tag);
  rec_fail(r, code, msg);
}

static void page_send(rec_t *r) {
  xcall_t *x = call_new(r->c, KITE_CLOUD_CALL_LIST, r->cfg, on_page);
  if (x == NULL) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  x->rec = r;
  x->pub.tag = r->tag;
  x->pub.cursor = r->token;
  x->pub.attempt = r->attempt;
  call_run(x);
}

static void on_list(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_list_t *p,
                    void *data) {
  kite_cloud_t *c = data;
  if (p->tag == NULL || *p->tag == '\0') {
    kite_bus_reply_error(bus, ev->corr, KITE_EINVAL,
                         "listing needs a tag (kite only lists what it tagged)");
    return;
  }
  rec_t *r = rec_new(c, R_LIST, ev->corr);
  if (r == NULL)
    return;
  bool trusted;
  r->cfg = cfg_for(c, ev->corr, "tag:", p->tag, p->reach, &trusted);
  if (r->cfg == NULL) {
    rec_free(r);
    return;
  }
  r->tag = kite__strdup(p->tag);
  r->ids = json_array();
  if (r->tag == NULL || r->ids == NULL) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  page_send(r);
}

/* ---- catalog -------------------------------------------------------------------------------- */

static void catalog_send(rec_t *r);

static void on_catalog_answer(xcall_t *x, const kite_cloud_answer_t *a) {
  rec_t *r = x->rec;
  kite_cloud_t *c = r->c;
  if (a->outcome == KITE_CLOUD_OK) {
    char *json = kite_offers_json(r->offers, r->n_offers);
    if (json == NULL) {
      rec_fail(r, KITE_ENOMEM, NULL);
      return;
    }
    kite_ev_catalog_t out = {.provider = c->ops->name,
                             .region = r->cfg->region,
                             .count = (uint32_t)r->n_offers,
                             .offers = json,
                             .source = "api"};
    kite_reply_catalog(c->bus, r->corr, &out);
    free(json);
    rec_free(r);
    return;
  }
  r->n_offers = 0; /* a call made again answers every offer again */
  if (transient(a) && ++r->attempt < CALL_ATTEMPTS && !c->stopping) {
    rec_later(r, backoff_ms(r->attempt, a->retry_after_ms), catalog_send);
    return;
  }
  int code = 0;
  char *msg = failure_text(c, a, &code, "reading what %s sells%s%s", c->ops->title,
                           r->cfg->region ? " in " : "", r->cfg->region ? r->cfg->region : "");
  rec_fail(r, code, msg);
}

static void catalog_send(rec_t *r) {
  xcall_t *x = call_new(r->c, KITE_CLOUD_CALL_CATALOG, r->cfg, on_catalog_answer);
  if (x == NULL) {
    rec_fail(r, KITE_ENOMEM, NULL);
    return;
  }
  x->rec = r;
  x->pub.attempt = r->attempt;
  call_run(x);
}

static void on_catalog(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_catalog_request_t *p,
                       void *data) {
  kite_cloud_t *c = data;
  if (c->ops->catalog == NULL) {
    char *msg = kite__sprintf("%s: kite cannot read what %s sells yet; name the instance with "
                              "resources.instance_type",
                              c->ops->name, c->ops->title);
    kite_bus_reply_error(bus, ev->corr, KITE_ENOTSUP, msg ? msg : "no catalog");
    free(msg);
    return;
  }
  rec_t *r = rec_new(c, R_CATALOG, ev->corr);
  if (r == NULL)
    return;
  r->cfg = configure(c, ev->corr, p->options, NULL, p->region);
  if (r->cfg == NULL) {
    rec_free(r);
    return;
  }
  catalog_send(r);
}

/* ---- reach ---------------------------------------------------------------------------------- */

static void on_reach_resolve(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_reach_resolve_t *p, void *data) {
  kite_cloud_t *c = data;
  kite_cloud_cfg_t *cfg = configure(c, ev->corr, p->options, NULL, p->region);
  if (cfg == NULL)
    return;
  kite_ev_reach_t out = {.provider = c->ops->name, .reach = cfg->reach};
  kite_reply_reach(bus, ev->corr, &out);
  cfg_unref(c, cfg);
}

/* ---- component ------------------------------------------------------------------------------ */

static void free_cloud(kite_cloud_t *c) {
  while (c->known) {
    known_t *k = c->known;
    c->known = k->next;
    cfg_unref(c, k->cfg);
    free(k->key);
    free(k->address);
    free(k);
  }
  free(c->key_path);
  free(c->pubkey);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  kite_cloud_t *c = h->data;
  c->handles_open--;
  maybe_stopped(c);
}

static void on_http_closed(kite_http_t *h, void *data) {
  kite_cloud_t *c = data;
  (void)h;
  c->http = NULL;
  maybe_stopped(c);
}

static void cleanup_next(kite_cloud_t *c);

static void on_cleaned(xcall_t *x, const kite_cloud_answer_t *a) {
  kite_cloud_t *c = x->c;
  if (a->outcome != KITE_CLOUD_OK && a->outcome != KITE_CLOUD_NOT_FOUND) {
    int code = 0;
    char *msg = failure_text(c, a, &code, "cleaning up what kite made (%s)", x->site->name);
    KITE_WARN(c->rt, c->ops->name, "%s", msg ? msg : "cleanup failed");
    free(msg);
  }
  cleanup_next(c);
}

/* After the last record: the table's cleanup for each site used here, one at a time. */
static void cleanup_next(kite_cloud_t *c) {
  for (site_t *s = c->sites; s; s = s->next) {
    if (!s->used || c->ops->cleanup == NULL || c->o.keep_resources)
      continue;
    s->used = false;
    xcall_t *x = call_new(c, KITE_CLOUD_CALL_CLEANUP, s->cfg, on_cleaned);
    if (x == NULL)
      continue;
    x->site = s;
    call_run(x);
    return;
  }
  c->cleaning = false;
  maybe_stopped(c);
}

/* Stop, in order: no record and no call left; the cleanups; the handles and the HTTP client;
 * then the runtime hears the provider has stopped. */
static void maybe_stopped(kite_cloud_t *c) {
  if (!c->stopping || !c->key_ready || c->recs || c->calls || c->cleaning)
    return;
  if (!c->cleaned) {
    c->cleaned = c->cleaning = true;
    cleanup_next(c);
    return;
  }
  if (!c->http_closing) {
    c->http_closing = true;
    uv_close((uv_handle_t *)&c->batch_timer, on_handle_closed);
    while (c->sites) {
      site_t *s = c->sites;
      c->sites = s->next;
      uv_close((uv_handle_t *)&s->timer, on_site_closed);
    }
    kite_http_close(c->http, on_http_closed, c);
    return;
  }
  if (c->http == NULL && c->handles_open == 0 && c->stop_done) {
    kite_component_stopped_fn done = c->stop_done;
    c->stop_done = NULL;
    for (size_t k = 0; k < KITE_ARRAY_SIZE(c->subs); k++)
      kite_bus_unsubscribe(c->bus, c->subs[k]);
    done(&c->comp);
    if (c->o.free_provider)
      c->o.free_provider(c->provider);
    free_cloud(c);
  }
}

static void on_key(kite_runtime_t *rt, int status, void *data) {
  kite_cloud_t *c = data;
  (void)rt;
  c->key_ready = true;
  c->key_status = status;
  if (status == 0) {
    char *pubpath = kite__sprintf("%s.pub", c->key_path);
    char *pub = NULL;
    int rc = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
    free(pubpath);
    if (rc == 0) {
      pub[strcspn(pub, "\r\n")] = '\0';
      c->pubkey = pub;
    }
    c->key_status = rc;
  }
  if (c->key_status != 0)
    KITE_ERROR(c->rt, c->ops->name, "cannot use kite's SSH key %s: %s", c->key_path,
               kite_strerror(c->key_status));
  for (rec_t *r = c->recs, *next; r; r = next) {
    next = r->next;
    if (r->kind == R_LAUNCH && r->step == L_KEY)
      launch_go(r);
  }
  maybe_stopped(c);
}

static int cloud_start(kite_component_t *comp, kite_runtime_t *rt) {
  kite_cloud_t *c = kite_container_of(comp, kite_cloud_t, comp);
  kite_key_t key = kite_key_str(c->ops->name);
  int rc = kite_respond_instance_launch(c->bus, key, on_launch, c, &c->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(c->bus, key, on_terminate, c, &c->subs[1]);
  if (rc == 0)
    rc = kite_respond_instance_describe(c->bus, key, on_describe, c, &c->subs[2]);
  if (rc == 0)
    rc = kite_respond_instance_list(c->bus, key, on_list, c, &c->subs[3]);
  if (rc == 0)
    rc = kite_respond_preempt_check(c->bus, key, on_preempt_check, c, &c->subs[4]);
  if (rc == 0)
    rc = kite_respond_reach_resolve(c->bus, key, on_reach_resolve, c, &c->subs[5]);
  if (rc == 0)
    rc = kite_respond_catalog_request(c->bus, key, on_catalog, c, &c->subs[6]);
  if (rc == 0)
    rc = kite_keypair_ensure(rt, c->key_path, on_key, c);
  if (rc != 0) {
    for (size_t k = 0; k < KITE_ARRAY_SIZE(c->subs); k++)
      kite_bus_unsubscribe(c->bus, c->subs[k]);
    return rc;
  }
  uv_timer_init(kite_runtime_loop(rt), &c->batch_timer);
  c->batch_timer.data = c;
  c->handles_open++;
  c->started = true;
  return 0;
}

static void cloud_stop(kite_component_t *comp, kite_component_stopped_fn done) {
  kite_cloud_t *c = kite_container_of(comp, kite_cloud_t, comp);
  c->stopping = true;
  c->stop_done = done;
  if (c->recs)
    KITE_WARN(c->rt, c->ops->name, "stopping with requests in flight; they are canceled");
  char *closing = kite__sprintf("%s: the provider is stopping", c->ops->name);
  /* Waiting launches fail now. */
  for (site_t *s = c->sites; s; s = s->next) {
    uv_timer_stop(&s->timer);
    while (s->waiters) {
      rec_t *w = s->waiters;
      s->waiters = w->next_wait;
      w->next_wait = NULL;
      rec_fail(w, KITE_ECLOSED, kite__strdup(closing));
    }
  }
  while (c->queued) {
    rec_t *r = c->queued;
    c->queued = r->next_wait;
    r->next_wait = NULL;
    rec_fail(r, KITE_ECLOSED, kite__strdup(closing));
  }
  uv_timer_stop(&c->batch_timer);
  /* Calls in flight end through their answers (canceled). */
  for (xcall_t *x = c->calls; x; x = x->next)
    if (x->pub.req_)
      kite_http_cancel(x->pub.req_);
  /* Records waiting on their timer end now. */
  for (rec_t *r = c->recs, *next; r; r = next) {
    next = r->next;
    if (!uv_is_active((uv_handle_t *)&r->timer))
      continue;
    uv_timer_stop(&r->timer);
    if (r->kind == R_TERMINATE || (r->kind == R_LAUNCH && r->step == L_GONE))
      gone_finish(r, KITE_ECLOSED,
                  kite__sprintf("%s: the provider is stopping; the deletion of %s %s is not "
                                "confirmed: run `kite down` again",
                                c->ops->name, c->ops->noun, r->id));
    else
      rec_fail(r, KITE_ECLOSED,
               r->id ? kite__sprintf("%s: the provider is stopping; %s %s may still exist",
                                     c->ops->name, c->ops->noun, r->id)
                     : kite__strdup(closing));
  }
  free(closing);
  maybe_stopped(c);
}

int kite_cloud_new(kite_runtime_t *rt, const kite_cloud_ops_t *ops, const kite_cloud_options_t *o,
                   void *provider, kite_cloud_t **out) {
  if (rt == NULL || ops == NULL || ops->configure == NULL || ops->create == NULL ||
      ops->describe == NULL || ops->destroy == NULL || ops->list_page == NULL ||
      (!ops->create_token && ops->find == NULL))
    return KITE_EINVAL;
  kite_cloud_t *c = calloc(1, sizeof(*c));
  if (c == NULL)
    return KITE_ENOMEM;
  c->rt = rt;
  c->bus = kite_runtime_bus(rt);
  c->ops = ops;
  c->provider = provider;
  if (o)
    c->o = *o;
  c->o.ca_file = NULL;
  c->key_path = kite__sprintf("%s/keys/id_ed25519", kite_runtime_home(rt));
  char *dir = kite__sprintf("%s/keys", kite_runtime_home(rt));
  char *hdir = kite__sprintf("%s/%s/hostkeys", kite_runtime_home(rt), ops->name);
  int rc = c->key_path && dir && hdir ? kite__mkdir_p(dir, 0700) : KITE_ENOMEM;
  if (rc == 0)
    rc = kite__mkdir_p(hdir, 0700);
  free(dir);
  free(hdir);
  if (rc == 0) {
    kite_http_options_t ho = {.ca_file = o ? o->ca_file : NULL,
                              .max_retries = o && o->max_retries ? o->max_retries : -1,
                              .backoff_base_ms = o ? o->backoff_base_ms : 0,
                              .timeout_ms = o ? o->http_timeout_ms : 0,
                              .log_name = ops->name};
    rc = kite_http_new(rt, &ho, &c->http);
  }
  if (rc == 0) {
    c->comp.name = ops->name;
    c->comp.tier = KITE_TIER_PROVIDER;
    c->comp.start = cloud_start;
    c->comp.stop = cloud_stop;
    rc = kite_runtime_add(rt, &c->comp);
  }
  if (rc != 0) {
    if (c->http)
      kite_http_close(c->http, NULL, NULL);
    free_cloud(c);
    return rc;
  }
  if (out)
    *out = c;
  return 0;
}

void *kite_cloud_provider(const kite_cloud_t *c) {
  return c->provider;
}
kite_runtime_t *kite_cloud_runtime(const kite_cloud_t *c) {
  return c->rt;
}
const kite_cloud_ops_t *kite_cloud_ops(const kite_cloud_t *c) {
  return c->ops;
}
const char *kite_cloud_pubkey(const kite_cloud_t *c) {
  return c->pubkey;
}
int kite_cloud_probe(kite_cloud_t *c, const char *id, char **command) {
  *command = NULL;
  known_t *k = known_find(c, "", id);
  if (c->ops->probe == NULL)
    return KITE_ENOTSUP;
  if (k == NULL || k->address == NULL)
    return KITE_ENOENT;
  *command = c->ops->probe(c, k->cfg, id, k->address);
  return *command ? 0 : KITE_ENOMEM;
}
