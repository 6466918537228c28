/* The shared HTTP client: libcurl's multi_socket interface on the runtime's loop.
 *
 * Design notes
 *
 * Owns one CURLM, one uv_timer_t for curl's timeout, one uv_poll_t per socket curl asks us to
 * watch (created and stopped from CURLMOPT_SOCKETFUNCTION, found again through
 * curl_multi_assign), and per request one easy handle and one uv_timer_t. The request's timer
 * carries the backoff before a retry and, with a 0 ms timeout, the completion itself: a
 * request's callback always runs from its own timer, never inside a curl callback, inside
 * curl_multi_info_read's loop, or inside kite_http_cancel(). So a callback may start
 * requests, cancel others, or close the client.
 *
 * curl's timer callback never calls back into curl: a 0 ms timeout becomes a uv timer that
 * fires on the next loop turn. After every curl_multi_socket_action (socket events and
 * timeouts alike) the finished transfers are read with curl_multi_info_read.
 *
 * A retry re-adds the same easy handle (its options stay set) after resetting the response
 * buffers. The decision to retry is in attempt_done(); see http.h for the rules.
 *
 * Teardown: close cancels every request; when the last completion has run, the multi handle
 * is cleaned up (curl removes its remaining sockets through the socket callback, and any poll
 * left after that is closed here), then the timer is closed, and the client is freed when
 * every uv handle it owned reported closed. */
#include <assert.h>
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>

#include "kite/http.h"
#include "kite/version.h"
#include "kite_impl.h"

#define DEFAULT_RETRIES 4
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_BACKOFF_BASE_MS 500
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_RETRY_AFTER_MAX_MS 120000
#define DEFAULT_MAX_BODY (16u << 20)
#define SERVER_MSG_MAX 300

typedef struct sock {
  kite_http_t *h;
  uv_poll_t poll;
  curl_socket_t fd;
  struct sock *next, *prev;
} sock_t;

typedef struct headers {
  char **v;
  size_t n, cap;
} headers_t;

typedef enum req_state { RQ_RUNNING, RQ_BACKOFF, RQ_COMPLETING } req_state_t;

struct kite_http_req {
  kite_http_t *h;
  kite_http_req_t *next, *prev;
  CURL *easy;
  bool in_multi;
  req_state_t state;
  char *method, *url;
  struct curl_slist *hdrs;
  char *body;
  size_t body_len;
  bool idempotent;
  unsigned max_retries;
  unsigned attempts;
  uint64_t started_ms;
  uv_timer_t timer;
  /* the current attempt's response */
  long status;
  char *buf;
  size_t len, cap;
  bool too_big;
  headers_t resp_hdrs;
  char errbuf[CURL_ERROR_SIZE];
  /* the result, once decided */
  int result;
  char *message;
  kite_http_cb cb;
  void *data;
};

struct kite_http {
  kite_runtime_t *rt;
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  char *ca_file, *user_agent, *log_name;
  unsigned max_retries;
  uint64_t timeout_ms, backoff_base_ms, backoff_max_ms, retry_after_max_ms;
  size_t max_body;
  kite_http_req_t *reqs;
  unsigned pending;
  sock_t *socks;
  int handles_open;
  bool closing, torn_down;
  void (*close_cb)(kite_http_t *h, void *data);
  void *close_data;
  uint64_t rng;
  /* The server said the rate budget is spent: no attempt starts before this (wall ms). */
  uint64_t hold_until_ms;
};

static void check_info(kite_http_t *h);
static void maybe_teardown(kite_http_t *h);

/* Canned answers instead of the network (kite__http_canned: fuzzing only). */
static kite__http_canned_fn canned_fn;
static void *canned_data;

void kite__http_canned(kite__http_canned_fn fn, void *data) {
  canned_fn = fn;
  canned_data = data;
}

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t next_rand(kite_http_t *h) {
  /* xorshift64*: jitter needs spread, not secrecy. */
  h->rng ^= h->rng >> 12;
  h->rng ^= h->rng << 25;
  h->rng ^= h->rng >> 27;
  return h->rng * 2685821657736338717ull;
}

static void headers_clear(headers_t *hs) {
  for (size_t i = 0; i < hs->n; i++)
    free(hs->v[i]);
  free(hs->v);
  memset(hs, 0, sizeof(*hs));
}

static const char *headers_get(const headers_t *hs, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; hs && i < hs->n; i++) {
    const char *l = hs->v[i];
    if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
      const char *v = l + nl + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      return v;
    }
  }
  return NULL;
}

static bool host_is_loopback(const char *host) {
  if (host == NULL)
    return false;
  if (strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 || strcmp(host, "[::1]") == 0)
    return true;
  /* 127.0.0.0/8 in dotted-quad form only: no names that merely start with "127.". */
  unsigned a, b, c, d;
  char tail;
  return sscanf(host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) == 4 && a == 127 && b < 256 &&
         c < 256 && d < 256;
}

bool kite_http_url_allowed(const char *url) {
  if (url == NULL)
    return false;
  CURLU *u = curl_url();
  if (u == NULL)
    return false;
  bool ok = false;
  char *scheme = NULL, *host = NULL;
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
      curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
    if (strcasecmp(scheme, "https") == 0)
      ok = true;
    else if (strcasecmp(scheme, "http") == 0)
      /* Loopback, and the link-local metadata server of a cloud VM (169.254.169.254), which
       * answers only plain HTTP and only to the machine itself. */
      ok = host_is_loopback(host) || strcmp(host, "169.254.169.254") == 0;
  }
  curl_free(scheme);
  curl_free(host);
  curl_url_cleanup(u);
  return ok;
}

/* The server's own explanation from an error body: a JSON "message", "error" (a string or an
 * object with a "message"), else the start of the body on one line. */
static char *server_message(const char *body, size_t len) {
  if (body == NULL || len == 0)
    return NULL;
  json_error_t jerr;
  json_t *j = json_loadb(body, len, JSON_DISABLE_EOF_CHECK, &jerr);
  char *out = NULL;
  if (j && json_is_object(j)) {
    json_t *m = json_object_get(j, "message");
    json_t *e = json_object_get(j, "error");
    if (!json_is_string(m) && json_is_object(e))
      m = json_object_get(e, "message");
    if (!json_is_string(m) && json_is_string(e))
      m = e;
    if (!json_is_string(m))
      m = json_object_get(j, "error_message");
    if (json_is_string(m))
      out = kite__sprintf("%.*s", SERVER_MSG_MAX, json_string_value(m));
  }
  json_decref(j);
  if (out == NULL) {
    size_t n = len < SERVER_MSG_MAX ? len : SERVER_MSG_MAX;
    out = malloc(n + 1);
    if (out) {
      for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)body[i];
        out[i] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
      }
      out[n] = '\0';
    }
  }
  return out;
}

/* ---- curl callbacks ------------------------------------------------------------------------ */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata) {
  kite_http_req_t *r = userdata;
  size_t n = size * nmemb;
  if (r->len + n > r->h->max_body) {
    r->too_big = true;
    return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
  }
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n + 1)
      cap *= 2;
    char *g = realloc(r->buf, cap);
    if (g == NULL)
      return 0;
    r->buf = g;
    r->cap = cap;
  }
  memcpy(r->buf + r->len, ptr, n);
  r->len += n;
  r->buf[r->len] = '\0';
  return n;
}

static size_t on_header(char *ptr, size_t size, size_t nitems, void *userdata) {
  kite_http_req_t *r = userdata;
  size_t n = size * nitems;
  /* A new status line starts a new header block (after 100 Continue, for instance). */
  if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
    headers_clear(&r->resp_hdrs);
    return n;
  }
  size_t l = n;
  while (l > 0 && (ptr[l - 1] == '\r' || ptr[l - 1] == '\n'))
    l--;
  if (l == 0 || memchr(ptr, ':', l) == NULL)
    return n;
  headers_t *hs = &r->resp_hdrs;
  if (hs->n == 64)
    return n; /* enough; a flood of headers is not kept */
  if (hs->n == hs->cap) {
    size_t cap = hs->cap ? hs->cap * 2 : 16;
    char **g = realloc(hs->v, cap * sizeof(*g));
    if (g == NULL)
      return 0;
    hs->v = g;
    hs->cap = cap;
  }
  char *line = malloc(l + 1);
  if (line == NULL)
    return 0;
  memcpy(line, ptr, l);
  line[l] = '\0';
  hs->v[hs->n++] = line;
  return n;
}

static void on_poll_closed(uv_handle_t *handle) {
  sock_t *s = kite_container_of((uv_poll_t *)handle, sock_t, poll);
  kite_http_t *h = s->h;
  free(s);
  h->handles_open--;
  maybe_teardown(h);
}

static void sock_close(sock_t *s) {
  kite_http_t *h = s->h;
  if (s->prev)
    s->prev->next = s->next;
  else
    h->socks = s->next;
  if (s->next)
    s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_poll_closed);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_t *s = kite_container_of(p, sock_t, poll);
  kite_http_t *h = s->h;
  int flags = 0;
  if (status < 0)
    flags = CURL_CSELECT_ERR;
  else {
    if (events & UV_READABLE)
      flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
      flags |= CURL_CSELECT_OUT;
  }
  int running = 0;
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  check_info(h);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
  kite_http_t *h = userp;
  sock_t *s = socketp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(h->multi, fd, NULL);
      sock_close(s);
    }
    return 0;
  }
  if (s == NULL) {
    s = calloc(1, sizeof(*s));
    if (s == NULL)
      return -1;
    s->h = h;
    s->fd = fd;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    h->handles_open++;
    s->next = h->socks;
    if (h->socks)
      h->socks->prev = s;
    h->socks = s;
    curl_multi_assign(h->multi, fd, s);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
    events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
    events |= UV_WRITABLE;
  uv_poll_start(&s->poll, events, on_poll);
  return 0;
}

static void on_multi_timeout(uv_timer_t *t) {
  kite_http_t *h = kite_container_of(t, kite_http_t, timer);
  int running = 0;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_info(h);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
  kite_http_t *h = userp;
  (void)multi;
  if (timeout_ms < 0)
    uv_timer_stop(&h->timer);
  else
    uv_timer_start(&h->timer, on_multi_timeout, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- completion ---------------------------------------------------------------------------- */

static void on_req_timer_closed(uv_handle_t *handle) {
  kite_http_req_t *r = kite_container_of((uv_timer_t *)handle, kite_http_req_t, timer);
  kite_http_t *h = r->h;
  free(r);
  h->handles_open--;
  maybe_teardown(h);
}

static void req_free(kite_http_req_t *r) {
  if (r->easy)
    curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->hdrs);
  free(r->method);
  free(r->url);
  free(r->body);
  free(r->buf);
  free(r->message);
  headers_clear(&r->resp_hdrs);
  uv_close((uv_handle_t *)&r->timer, on_req_timer_closed);
}

static void req_unlink(kite_http_req_t *r) {
  kite_http_t *h = r->h;
  if (r->prev)
    r->prev->next = r->next;
  else
    h->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  r->next = r->prev = NULL;
  h->pending--;
}

static void on_complete(uv_timer_t *t) {
  kite_http_req_t *r = kite_container_of(t, kite_http_req_t, timer);
  kite_http_t *h = r->h;
  req_unlink(r);
  kite_http_response_t resp = {.status = r->status,
                               .body = r->buf ? r->buf : "",
                               .body_len = r->len,
                               .attempts = r->attempts,
                               .message = r->message ? r->message : "",
                               .headers_ = &r->resp_hdrs};
  r->cb(h, r->result, &resp, r->data);
  req_free(r);
  maybe_teardown(h);
}

/* Decides the result; the callback runs from the request's timer on a later loop turn. */
static void finish(kite_http_req_t *r, int result, char *message) {
  if (r->in_multi) {
    curl_multi_remove_handle(r->h->multi, r->easy);
    r->in_multi = false;
  }
  r->state = RQ_COMPLETING;
  r->result = result;
  free(r->message);
  r->message = NULL;
  if (message) {
    r->message = kite_redact(r->h->rt, message, strlen(message), NULL);
    free(message);
  }
  uv_timer_stop(&r->timer);
  uv_timer_start(&r->timer, on_complete, 0, 0);
}

static void start_attempt(kite_http_req_t *r);

static void on_backoff_over(uv_timer_t *t) {
  kite_http_req_t *r = kite_container_of(t, kite_http_req_t, timer);
  start_attempt(r);
}

/* Milliseconds the server asks us to wait, or -1: Retry-After (seconds or an HTTP date), else
 * ratelimit-reset (epoch seconds) when the remaining budget is 0. */
static int64_t server_delay_ms(const kite_http_req_t *r) {
  const char *ra = headers_get(&r->resp_hdrs, "Retry-After");
  int64_t now_ms = (int64_t)kite__wall_ms();
  if (ra) {
    char *end = NULL;
    long long s = strtoll(ra, &end, 10);
    if (end != ra && (*end == '\0' || *end == ' ') && s >= 0)
      return s < INT64_MAX / 1000 ? (int64_t)s * 1000 : INT64_MAX;
    time_t when = curl_getdate(ra, NULL);
    if (when > 0)
      return (int64_t)when * 1000 > now_ms ? (int64_t)when * 1000 - now_ms : 0;
  }
  const char *rem = headers_get(&r->resp_hdrs, "ratelimit-remaining");
  const char *reset = headers_get(&r->resp_hdrs, "ratelimit-reset");
  if (rem && reset && strtoll(rem, NULL, 10) == 0) {
    long long when = strtoll(reset, NULL, 10);
    if (when > 0 && when < INT64_MAX / 1000)
      return when * 1000 > now_ms ? when * 1000 - now_ms : 0;
  }
  return -1;
}

static void schedule_retry(kite_http_req_t *r, const char *why) {
  kite_http_t *h = r->h;
  int64_t d = r->status ? server_delay_ms(r) : -1;
  uint64_t delay;
  if (d >= 0) {
    delay = (uint64_t)d < h->retry_after_max_ms ? (uint64_t)d : h->retry_after_max_ms;
  } else {
    unsigned n = r->attempts - 1;
    uint64_t cap = h->backoff_base_ms << (n < 20 ? n : 20);
    if (cap > h->backoff_max_ms)
      cap = h->backoff_max_ms;
    delay = cap ? next_rand(h) % (cap + 1) : 0;
  }
  KITE_INFO(h->rt, h->log_name, "%s %s: %s; retrying in %llu ms (attempt %u of %u)", r->method,
            r->url, why, (unsigned long long)delay, r->attempts + 1, r->max_retries + 1);
  r->state = RQ_BACKOFF;
  uv_timer_start(&r->timer, on_backoff_over, canned_fn ? 0 : delay, 0);
}

static int map_curl_error(CURLcode cc, bool *sent, bool too_big) {
  *sent = true;
  switch (cc) {
  case CURLE_COULDNT_CONNECT:
    *sent = false;
    return KITE_ECONNREFUSED;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    *sent = false;
    return KITE_EHOSTUNREACH;
  case CURLE_OPERATION_TIMEDOUT:
    return KITE_ETIMEDOUT;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return KITE_ECONNLOST;
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
    *sent = false;
    return KITE_EPROTO;
  case CURLE_WRITE_ERROR:
    return too_big ? KITE_E2BIG : KITE_ENOMEM;
  case CURLE_OUT_OF_MEMORY:
    return KITE_ENOMEM;
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_URL_MALFORMAT:
    *sent = false;
    return KITE_EINVAL;
  default:
    return KITE_EHTTP;
  }
}

static bool status_retryable(long s) {
  return s == 500 || s == 502 || s == 503 || s == 504;
}

/* A 429, or any answer saying the budget is spent (ratelimit-remaining: 0), holds every new
 * attempt of this client until the server's reset time: the limit is per account, not per
 * request. */
static void note_rate_limit(kite_http_req_t *r) {
  kite_http_t *h = r->h;
  const char *rem = headers_get(&r->resp_hdrs, "ratelimit-remaining");
  if (r->status != 429 && !(rem && strtoll(rem, NULL, 10) == 0))
    return;
  int64_t d = server_delay_ms(r);
  if (d <= 0)
    return;
  uint64_t until =
      kite__wall_ms() + ((uint64_t)d < h->retry_after_max_ms ? (uint64_t)d : h->retry_after_max_ms);
  if (until > h->hold_until_ms) {
    h->hold_until_ms = until;
    KITE_INFO(h->rt, h->log_name, "rate limit reached: new requests wait %lld ms", (long long)d);
  }
}

static void attempt_done(kite_http_req_t *r, CURLcode cc) {
  kite_http_t *h = r->h;
  r->in_multi = false;
  uint64_t ms = kite__wall_ms() - r->started_ms;
  bool can_retry = r->attempts <= r->max_retries && !h->closing;
  if (cc == CURLE_OK) {
    if (canned_fn == NULL)
      curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    KITE_DEBUG(h->rt, h->log_name, "%s %s -> %ld (%zu bytes, %llu ms, attempt %u)", r->method,
               r->url, r->status, r->len, (unsigned long long)ms, r->attempts);
    note_rate_limit(r);
    if (r->status >= 200 && r->status < 300) {
      finish(r, 0, NULL);
      return;
    }
    char why[64];
    snprintf(why, sizeof(why), "HTTP %ld", r->status);
    if (can_retry && (r->status == 429 || (status_retryable(r->status) && r->idempotent))) {
      schedule_retry(r, why);
      return;
    }
    char *sm = server_message(r->buf, r->len);
    char *msg = kite__sprintf("%s %s: HTTP %ld%s%s%s", r->method, r->url, r->status, sm ? ": " : "",
                              sm ? sm : "", r->attempts > 1 ? " (after retries)" : "");
    free(sm);
    finish(r, KITE_EHTTP, msg);
    return;
  }
  bool sent;
  int err = map_curl_error(cc, &sent, r->too_big);
  const char *detail = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);
  KITE_DEBUG(h->rt, h->log_name, "%s %s failed: %s (%llu ms, attempt %u)", r->method, r->url,
             detail, (unsigned long long)ms, r->attempts);
  bool transient = err == KITE_ECONNREFUSED || err == KITE_EHOSTUNREACH || err == KITE_ETIMEDOUT ||
                   err == KITE_ECONNLOST;
  if (can_retry && transient && (!sent || r->idempotent)) {
    r->status = 0;
    schedule_retry(r, detail);
    return;
  }
  r->status = 0;
  const char *hint = "";
  if (err == KITE_EPROTO)
    hint = " (TLS verification failed: is the server's certificate signed by a trusted CA? "
           "a private CA can be given as the client's CA file)";
  char *msg = kite__sprintf("%s %s: %s%s%s", r->method, r->url, detail, hint,
                            r->attempts > 1 ? " (after retries)" : "");
  finish(r, err, msg);
}

static void check_info(kite_http_t *h) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE)
      continue;
    kite_http_req_t *r = NULL;
    CURL *easy = m->easy_handle;
    CURLcode cc = m->data.result;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(h->multi, easy);
    if (r)
      attempt_done(r, cc);
  }
}

/* ---- canned answers (fuzzing) ------------------------------------------------------------- */

/* The canned answer of the current attempt goes through the callbacks curl would feed: its
 * status line, each header line, its body in pieces. No status line: nothing came back. */
static void on_canned(uv_timer_t *t) {
  kite_http_req_t *r = kite_container_of(t, kite_http_req_t, timer);
  size_t len = 0;
  const char *raw = canned_fn ? canned_fn(r->method, r->url, r->body, &len, canned_data) : NULL;
  long status = 0;
  if (raw && len > 12 && strncmp(raw, "HTTP/1.1 ", 9) == 0 && raw[9] >= '1' && raw[9] <= '5' &&
      isdigit((unsigned char)raw[10]) && isdigit((unsigned char)raw[11]))
    status = (raw[9] - '0') * 100 + (raw[10] - '0') * 10 + (raw[11] - '0');
  if (status == 0) {
    attempt_done(r, CURLE_GOT_NOTHING);
    return;
  }
  const char *p = raw, *end = raw + len;
  bool body = false;
  while (p < end && !body) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
    body = n <= 2 && (*p == '\n' || (*p == '\r' && n == 2));
    if (!body && on_header((char *)p, 1, n, r) != n) {
      attempt_done(r, CURLE_WRITE_ERROR);
      return;
    }
    p += n;
  }
  while (p < end) {
    size_t n = (size_t)(end - p) < 16384 ? (size_t)(end - p) : 16384;
    if (on_write((char *)p, 1, n, r) != n) {
      attempt_done(r, CURLE_WRITE_ERROR);
      return;
    }
    p += n;
  }
  r->status = status;
  attempt_done(r, CURLE_OK);
}

static void start_attempt(kite_http_req_t *r) {
  kite_http_t *h = r->h;
  uint64_t now = kite__wall_ms();
  if (h->hold_until_ms > now && canned_fn == NULL) {
    r->state = RQ_BACKOFF;
    uv_timer_start(&r->timer, on_backoff_over, h->hold_until_ms - now, 0);
    return;
  }
  r->attempts++;
  r->status = 0;
  r->len = 0;
  r->too_big = false;
  r->errbuf[0] = '\0';
  if (r->buf)
    r->buf[0] = '\0';
  headers_clear(&r->resp_hdrs);
  r->started_ms = kite__wall_ms();
  r->state = RQ_RUNNING;
  if (canned_fn) {
    uv_timer_start(&r->timer, on_canned, 0, 0);
    return;
  }
  CURLMcode mc = curl_multi_add_handle(h->multi, r->easy);
  if (mc != CURLM_OK) {
    finish(r, KITE_EHTTP,
           kite__sprintf("%s %s: cannot start: %s", r->method, r->url, curl_multi_strerror(mc)));
    return;
  }
  r->in_multi = true;
}

/* ---- public API ----------------------------------------------------------------------------- */

int kite_http_new(kite_runtime_t *rt, const kite_http_options_t *opts, kite_http_t **out) {
  static bool curl_ready;
  if (rt == NULL || out == NULL)
    return KITE_EINVAL;
  if (!curl_ready) {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      return KITE_EHTTP;
    curl_ready = true;
  }
  kite_http_options_t o = {.max_retries = -1};
  if (opts)
    o = *opts;
  kite_http_t *h = calloc(1, sizeof(*h));
  if (h == NULL)
    return KITE_ENOMEM;
  h->rt = rt;
  h->loop = kite_runtime_loop(rt);
  h->max_retries = o.max_retries < 0 ? DEFAULT_RETRIES : (unsigned)o.max_retries;
  h->timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
  h->backoff_base_ms = o.backoff_base_ms ? o.backoff_base_ms : DEFAULT_BACKOFF_BASE_MS;
  h->backoff_max_ms = o.backoff_max_ms ? o.backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
  h->retry_after_max_ms = o.retry_after_max_ms ? o.retry_after_max_ms : DEFAULT_RETRY_AFTER_MAX_MS;
  h->max_body = o.max_body ? o.max_body : DEFAULT_MAX_BODY;
  h->ca_file = kite__strdup(o.ca_file);
  h->user_agent =
      o.user_agent ? kite__strdup(o.user_agent) : kite__sprintf("kite/%s", KITE_VERSION_STRING);
  h->log_name = kite__strdup(o.log_name ? o.log_name : "http");
  h->rng = kite__wall_ms() ^ (uint64_t)(uintptr_t)h ^ 0x9e3779b97f4a7c15ull;
  h->multi = curl_multi_init();
  if (h->multi == NULL || h->user_agent == NULL || h->log_name == NULL ||
      (o.ca_file && h->ca_file == NULL)) {
    if (h->multi)
      curl_multi_cleanup(h->multi);
    free(h->ca_file);
    free(h->user_agent);
    free(h->log_name);
    free(h);
    return KITE_ENOMEM;
  }
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  uv_timer_init(h->loop, &h->timer);
  h->handles_open = 1;
  *out = h;
  return 0;
}

static bool method_idempotent(const char *m) {
  return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "PUT") == 0 ||
         strcmp(m, "DELETE") == 0 || strcmp(m, "OPTIONS") == 0;
}

static int req_setup(kite_http_req_t *r, const kite_http_request_t *q) {
  kite_http_t *h = r->h;
  CURL *e = r->easy;
  if (q->bearer_token) {
    int rc = kite_secret_add(h->rt, q->bearer_token);
    if (rc == KITE_ENOMEM)
      return rc;
    char *line = kite__sprintf("Authorization: Bearer %s", q->bearer_token);
    if (line == NULL)
      return KITE_ENOMEM;
    struct curl_slist *l = curl_slist_append(r->hdrs, line);
    free(line);
    if (l == NULL)
      return KITE_ENOMEM;
    r->hdrs = l;
  }
  for (size_t i = 0; q->headers && q->headers[i]; i++) {
    struct curl_slist *l = curl_slist_append(r->hdrs, q->headers[i]);
    if (l == NULL)
      return KITE_ENOMEM;
    r->hdrs = l;
  }
  if (q->body) {
    char *ct =
        kite__sprintf("Content-Type: %s", q->content_type ? q->content_type : "application/json");
    struct curl_slist *l = ct ? curl_slist_append(r->hdrs, ct) : NULL;
    free(ct);
    if (l == NULL)
      return KITE_ENOMEM;
    r->hdrs = l;
    /* No 100-continue round trip: our bodies are small. */
    l = curl_slist_append(r->hdrs, "Expect:");
    if (l == NULL)
      return KITE_ENOMEM;
    r->hdrs = l;
    r->body = malloc(q->body_len + 1);
    if (r->body == NULL)
      return KITE_ENOMEM;
    memcpy(r->body, q->body, q->body_len);
    r->body[q->body_len] = '\0';
    r->body_len = q->body_len;
  }
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(q->timeout_ms ? q->timeout_ms : h->timeout_ms));
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (h->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
  if (strcmp(r->method, "HEAD") == 0)
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  if (r->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
  }
  if (strcmp(r->method, "GET") != 0 && strcmp(r->method, "HEAD") != 0 &&
      !(strcmp(r->method, "POST") == 0 && r->body))
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  return 0;
}

int kite_http_request(kite_http_t *h, const kite_http_request_t *q, kite_http_cb cb, void *data,
                      kite_http_req_t **out) {
  if (h == NULL || q == NULL || cb == NULL || q->url == NULL)
    return KITE_EINVAL;
  if (h->closing)
    return KITE_ECLOSED;
  if (!kite_http_url_allowed(q->url)) {
    KITE_WARN(h->rt, h->log_name,
              "refusing %s: only https:// URLs, or http:// to a loopback "
              "address, are allowed",
              q->url);
    return KITE_EINVAL;
  }
  kite_http_req_t *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return KITE_ENOMEM;
  r->h = h;
  r->cb = cb;
  r->data = data;
  r->method = kite__strdup(q->method ? q->method : q->body ? "POST" : "GET");
  r->url = kite__strdup(q->url);
  r->easy = curl_easy_init();
  r->max_retries = q->no_retry ? 0 : q->max_retries > 0 ? (unsigned)q->max_retries : h->max_retries;
  int rc = r->method && r->url && r->easy ? 0 : KITE_ENOMEM;
  if (rc == 0)
    r->idempotent = !q->not_idempotent && (q->idempotent || method_idempotent(r->method));
  if (rc == 0)
    rc = req_setup(r, q);
  if (rc != 0) {
    if (r->easy)
      curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->hdrs);
    free(r->method);
    free(r->url);
    free(r->body);
    free(r);
    return rc;
  }
  uv_timer_init(h->loop, &r->timer);
  h->handles_open++;
  r->next = h->reqs;
  if (h->reqs)
    h->reqs->prev = r;
  h->reqs = r;
  h->pending++;
  start_attempt(r);
  if (out)
    *out = r;
  return 0;
}

int kite_http_cancel(kite_http_req_t *r) {
  if (r == NULL)
    return KITE_EINVAL;
  if (r->state == RQ_COMPLETING)
    return KITE_ESTATE;
  finish(r, KITE_ECANCELED, kite__sprintf("%s %s: canceled", r->method, r->url));
  return 0;
}

const char *kite_http_response_header(const kite_http_response_t *resp, const char *name) {
  return resp && name ? headers_get(resp->headers_, name) : NULL;
}

unsigned kite_http_pending(const kite_http_t *h) {
  return h->pending;
}

static void on_timer_closed(uv_handle_t *handle) {
  kite_http_t *h = kite_container_of((uv_timer_t *)handle, kite_http_t, timer);
  h->handles_open--;
  maybe_teardown(h);
}

static void maybe_teardown(kite_http_t *h) {
  if (!h->closing || h->reqs != NULL)
    return;
  if (!h->torn_down) {
    h->torn_down = true;
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    /* Sockets curl did not report removed (connections it kept in its cache). */
    while (h->socks)
      sock_close(h->socks);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
    return;
  }
  if (h->handles_open == 0) {
    void (*cb)(kite_http_t *, void *) = h->close_cb;
    void *data = h->close_data;
    if (cb)
      cb(h, data);
    free(h->ca_file);
    free(h->user_agent);
    free(h->log_name);
    free(h);
  }
}

void kite_http_close(kite_http_t *h, void (*cb)(kite_http_t *h, void *data), void *data) {
  assert(h && !h->closing);
  h->closing = true;
  h->close_cb = cb;
  h->close_data = data;
  for (kite_http_req_t *r = h->reqs; r; r = r->next)
    if (r->state != RQ_COMPLETING)
      finish(r, KITE_ECANCELED,
             kite__sprintf("%s %s: canceled (client closed)", r->method, r->url));
  maybe_teardown(h);
}
