#ifndef KITE_HTTP_H
#define KITE_HTTP_H

/* The HTTP client every cloud provider shares (DESIGN.md, "Providers").
 *
 * libcurl's multi_socket interface driven by the runtime's libuv loop: one uv_poll_t per
 * socket curl opens, one uv_timer_t for curl's own timeout, and a timer per request for the
 * backoff between attempts. Nothing blocks and nothing spins.
 *
 * Retries. A request is attempted again, after an exponential backoff with full jitter (or
 * after the server's Retry-After, when it sends one), when
 *   - the connection could not be made (refused, unreachable, name not resolved): the
 *     request never left, so this is safe for every method;
 *   - the server answered 429 (rate limited; the request was not processed);
 *   - the server answered 500, 502, 503 or 504, or the connection broke or timed out after
 *     the request was sent — only when the request is idempotent: GET, HEAD, PUT, DELETE and
 *     OPTIONS are (unless the caller says one is not); a POST is only when the caller says so
 *     (it carries an idempotency token, or the caller will find what a lost attempt created by
 *     its tags or name).
 * Past max_retries the last answer is the result.
 *
 * Rate limits. An answer that says the budget is spent (a 429, or "ratelimit-remaining: 0"
 * with "ratelimit-reset", as some clouds send) holds every new attempt of the client until
 * the server's reset time (at most retry_after_max_ms): the limit belongs to the account, not
 * to the one request that hit it.
 *
 * TLS. Peer and host name verification are always on; a CA bundle file may be configured.
 * Plain http:// is refused (KITE_EINVAL) unless the host is a loopback address (127.0.0.0/8,
 * ::1, localhost), which is what emulators and local test servers use, or a cloud VM's own
 * link-local metadata server (169.254.169.254). Redirects are not
 * followed.
 *
 * Secrets. A bearer token given in the request is registered with the runtime's redaction
 * (kite_secret_add) before anything else happens, and the client never logs headers or
 * bodies; its debug lines carry method, URL, status and timing only, through the redacting
 * logger.
 *
 * Loop thread only. Callbacks follow the library's contract: when kite_http_request()
 * returns an error the callback is never called; otherwise exactly once — also on
 * kite_http_cancel() and kite_http_close(), with KITE_ECANCELED. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kite/runtime.h"

typedef struct kite_http kite_http_t;
typedef struct kite_http_req kite_http_req_t;

typedef struct kite_http_options {
  /* CA bundle (PEM) to verify servers against, instead of the system's; or NULL. */
  const char *ca_file;
  /* Attempts after the first; -1: 4. */
  int max_retries;
  /* Deadline of one attempt (connect to last byte); 0: 30 s. */
  uint64_t timeout_ms;
  /* Backoff before retry n (n from 0) is a random time in [0, min(max, base * 2^n)]; 0:
   * base 500 ms, max 30 s. */
  uint64_t backoff_base_ms;
  uint64_t backoff_max_ms;
  /* The longest Retry-After honoured; longer ones are cut to this. 0: 120 s. */
  uint64_t retry_after_max_ms;
  /* Largest response body kept; a larger one fails the request with KITE_E2BIG. 0: 16 MiB. */
  size_t max_body;
  /* User-Agent; NULL: "kite/VERSION". */
  const char *user_agent;
  /* Component name in log lines; NULL: "http". */
  const char *log_name;
} kite_http_options_t;

typedef struct kite_http_request {
  const char *method; /* "GET", "POST", …; NULL: GET, or POST when body is set */
  const char *url;    /* absolute http:// (loopback only) or https:// URL */
  /* Extra request headers, "Name: value", NULL-terminated; or NULL. */
  const char *const *headers;
  /* Sent as "Authorization: Bearer TOKEN" and registered as a secret first; or NULL. */
  const char *bearer_token;
  const void *body; /* request body, or NULL */
  size_t body_len;
  const char *content_type; /* of the body; NULL: application/json when a body is set */
  /* Per-attempt deadline overriding the client's; 0: the client's. */
  uint64_t timeout_ms;
  /* Retry after 5xx, resets and timeouts also for a method that is not idempotent (POST):
   * set only when a repeated request cannot create a second thing. */
  bool idempotent;
  /* The opposite, for a PUT or DELETE whose repetition is not safe (Vast.ai creates an instance
   * with a PUT): once sent, never attempted again. Wins over idempotent. */
  bool not_idempotent;
  /* Attempts after the first; 0: the client's. no_retry: one attempt only. */
  int max_retries;
  bool no_retry;
} kite_http_request_t;

/* A response (the final attempt's). Valid only during the callback. */
typedef struct kite_http_response {
  long status;      /* HTTP status, or 0 when no response arrived */
  const char *body; /* NUL-terminated (binary bodies may hold NULs; use body_len) */
  size_t body_len;
  unsigned attempts; /* how many were made, >= 1 */
  /* When the callback's status is not 0: one line saying what failed, for a human — the
   * method and URL, the HTTP status and the server's own message (a JSON body's "message"
   * or "error" field, else the start of the body), or the transport error. "" otherwise. */
  const char *message;
  /* Opaque; use kite_http_response_header(). */
  const void *headers_;
} kite_http_response_t;

/* status: 0 for a 2xx response; KITE_EHTTP for any other HTTP status (resp->status says
 * which); KITE_ETIMEDOUT, KITE_ECONNREFUSED, KITE_EHOSTUNREACH, KITE_ECONNLOST when no
 * complete response arrived; TLS failures (untrusted certificate, wrong name) are KITE_EPROTO
 * with the reason in resp->message; KITE_E2BIG for an oversized body; KITE_ECANCELED on cancel or
 * close. resp is never NULL. */
typedef void (*kite_http_cb)(kite_http_t *http, int status, const kite_http_response_t *resp,
                             void *data);

/* Creates a client on rt's loop. opts may be NULL. */
int kite_http_new(kite_runtime_t *rt, const kite_http_options_t *opts, kite_http_t **out);

/* Starts a request. The request struct and everything it points to are copied; they need not
 * outlive the call. *out (may be NULL) identifies it for kite_http_cancel() until cb runs. */
int kite_http_request(kite_http_t *http, const kite_http_request_t *req, kite_http_cb cb,
                      void *data, kite_http_req_t **out);

/* Cancels a request whose callback has not run yet: its callback runs (on a later loop turn,
 * never inside this call) with KITE_ECANCELED. */
int kite_http_cancel(kite_http_req_t *req);

/* Value of response header name (case-insensitive), without surrounding blanks; or NULL. */
const char *kite_http_response_header(const kite_http_response_t *resp, const char *name);

/* Requests started and not yet completed. */
unsigned kite_http_pending(const kite_http_t *http);

/* Cancels every pending request (their callbacks run with KITE_ECANCELED), closes every
 * handle, and frees the client after cb (may be NULL) has run. May be called from a request's
 * callback. Double close asserts. */
void kite_http_close(kite_http_t *http, void (*cb)(kite_http_t *http, void *data), void *data);

/* Whether url is http:// or https:// and, when http://, names a loopback host. */
bool kite_http_url_allowed(const char *url);

#endif
