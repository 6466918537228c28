/* A minimal HTTP/1.1 server for the emulator: one request at a time per connection, in order,
 * keep-alive, bodies by Content-Length (chunked request bodies are refused with 411). It knows
 * no cloud and no fault: the handler fills in the answer, and also says when to send it (after
 * delay_ms) or whether to reset the connection instead (faults.c decides both). */
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cloudsim.h"

#define MAX_HEAD (64 * 1024)
#define MAX_BODY (1024 * 1024)

typedef struct conn {
  struct httpd *srv;
  uv_tcp_t tcp;
  uv_timer_t timer; /* a delayed answer */
  char *buf;
  size_t len, cap;
  bool busy;        /* an answer is pending: later requests wait in buf */
  bool close_after; /* Connection: close, or a fatal parse error */
  bool closing;
  int handles;
  /* the pending answer */
  char *out;
  size_t out_len;
  bool reset;
  struct conn *next, *prev;
} conn_t;

typedef struct httpd {
  sim_t *sim;
  uv_tcp_t listener;
  http_handler_fn fn;
  conn_t *conns;
} httpd_t;

static void conn_read_more(conn_t *c);

/* ---- requests ------------------------------------------------------------------------------- */

const char *http_req_header(const http_req_t *r, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < r->header_n; i++) {
    const char *l = r->headers[i];
    if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
      const char *v = l + nl + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      return v;
    }
  }
  return NULL;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  ch = tolower(ch);
  return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

static char *url_decode(const char *s, size_t n) {
  char *out = malloc(n + 1), *o = out;
  for (size_t i = 0; out && i < n; i++) {
    if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
      *o++ = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      *o++ = ' ';
    } else {
      *o++ = s[i];
    }
  }
  if (out)
    *o = '\0';
  return out;
}

char *http_query_param_nth(const http_req_t *r, const char *name, size_t i) {
  size_t nl = strlen(name);
  const char *q = r->query;
  while (q && *q) {
    const char *amp = strchr(q, '&');
    size_t len = amp ? (size_t)(amp - q) : strlen(q);
    if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=' && i-- == 0)
      return url_decode(q + nl + 1, len - nl - 1);
    q = amp ? amp + 1 : NULL;
  }
  return NULL;
}

char *http_query_param(const http_req_t *r, const char *name) {
  return http_query_param_nth(r, name, 0);
}

bool http_bearer_is(const http_req_t *r, const char *token) {
  const char *a = http_req_header(r, "Authorization");
  return a && strncmp(a, "Bearer ", 7) == 0 && strcmp(a + 7, token) == 0;
}

void http_add_header(http_resp_t *resp, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *line = NULL;
  int n = vasprintf(&line, fmt, ap);
  va_end(ap);
  if (n < 0)
    return;
  char *all = sim_sprintf("%s%s\r\n", resp->headers ? resp->headers : "", line);
  free(line);
  if (all) {
    free(resp->headers);
    resp->headers = all;
  }
}

void http_json(http_resp_t *resp, int status, char *json) {
  resp->status = status;
  free(resp->body);
  resp->body = json;
  resp->body_len = json ? strlen(json) : 0;
}

void http_error(http_resp_t *resp, int status, const char *id, const char *message) {
  json_t *j = json_pack("{s:s, s:s}", "id", id, "message", message);
  http_json(resp, status, json_dumps(j, JSON_COMPACT));
  json_decref(j);
}

static void req_free(http_req_t *r) {
  free(r->method);
  free(r->path);
  free(r->query);
  free(r->body);
  for (size_t i = 0; i < r->header_n; i++)
    free(r->headers[i]);
  free(r->headers);
}

static const char *reason(int status) {
  switch (status) {
  case 200:
    return "OK";
  case 201:
    return "Created";
  case 202:
    return "Accepted";
  case 204:
    return "No Content";
  case 207:
    return "Multi-Status";
  case 400:
    return "Bad Request";
  case 401:
    return "Unauthorized";
  case 403:
    return "Forbidden";
  case 404:
    return "Not Found";
  case 405:
    return "Method Not Allowed";
  case 409:
    return "Conflict";
  case 410:
    return "Gone";
  case 411:
    return "Length Required";
  case 412:
    return "Precondition Failed";
  case 413:
    return "Payload Too Large";
  case 422:
    return "Unprocessable Entity";
  case 429:
    return "Too Many Requests";
  case 500:
    return "Internal Server Error";
  case 503:
    return "Service Unavailable";
  default:
    return "Status";
  }
}

/* ---- connections ---------------------------------------------------------------------------- */

static void conn_handle_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->handles > 0)
    return;
  httpd_t *s = c->srv;
  if (s) {
    if (c->prev)
      c->prev->next = c->next;
    else
      s->conns = c->next;
    if (c->next)
      c->next->prev = c->prev;
  }
  free(c->buf);
  free(c->out);
  free(c);
}

static void conn_close(conn_t *c, bool reset) {
  if (c->closing)
    return;
  c->closing = true;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
  if (reset)
    uv_tcp_close_reset(&c->tcp, conn_handle_closed);
  else
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void on_written(uv_write_t *w, int status) {
  conn_t *c = w->data;
  free(w);
  if (c->closing)
    return;
  if (status < 0 || c->close_after) {
    conn_close(c, false);
    return;
  }
  c->busy = false;
  conn_read_more(c);
}

static void send_out(conn_t *c) {
  if (c->reset) {
    conn_close(c, true);
    return;
  }
  uv_write_t *w = malloc(sizeof(*w));
  w->data = c;
  uv_buf_t b = uv_buf_init(c->out, (unsigned)c->out_len);
  if (uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
    free(w);
    conn_close(c, false);
  }
}

static void on_delay_over(uv_timer_t *t) {
  conn_t *c = t->data;
  send_out(c);
}

static void answer(conn_t *c, http_req_t *req) {
  sim_t *sim = c->srv->sim;
  http_resp_t resp = {.status = 404};
  c->srv->fn(sim, req, &resp);
  const char *conn_hdr = http_req_header(req, "Connection");
  if (conn_hdr && strcasecmp(conn_hdr, "close") == 0)
    c->close_after = true;
  bool has_body = resp.status != 204;
  size_t blen = has_body ? resp.body_len : 0;
  char ctype[128] = "";
  if (has_body && resp.body)
    snprintf(ctype, sizeof(ctype), "Content-Type: %s\r\n",
             resp.content_type ? resp.content_type : "application/json; charset=utf-8");
  char clen[64] = "";
  if (has_body)
    snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", blen);
  char *head = sim_sprintf("HTTP/1.1 %d %s\r\nServer: kite-cloudsim\r\n%s%s%s%s\r\n", resp.status,
                           reason(resp.status), resp.headers ? resp.headers : "",
                           c->close_after ? "Connection: close\r\n" : "", ctype, clen);
  size_t hl = head ? strlen(head) : 0;
  free(c->out);
  c->out_len = hl + blen;
  c->out = malloc(c->out_len + 1);
  memcpy(c->out, head ? head : "", hl);
  if (blen)
    memcpy(c->out + hl, resp.body, blen);
  free(head);
  free(resp.body);
  free(resp.headers);
  c->reset = resp.reset;
  c->busy = true;
  if (resp.delay_ms)
    uv_timer_start(&c->timer, on_delay_over, resp.delay_ms, 0);
  else
    send_out(c);
}

static void simple_error(conn_t *c, int status, const char *msg) {
  char out[512];
  int n = snprintf(out, sizeof(out),
                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   status, reason(status), strlen(msg), msg);
  free(c->out);
  c->out = malloc((size_t)n);
  memcpy(c->out, out, (size_t)n);
  c->out_len = (size_t)n;
  c->reset = false;
  c->close_after = true;
  c->busy = true;
  send_out(c);
}

/* Parses one complete request from the buffer, if there is one, and answers it. */
static void conn_read_more(conn_t *c) {
  while (!c->busy && !c->closing) {
    char *end = c->len ? memmem(c->buf, c->len, "\r\n\r\n", 4) : NULL;
    if (end == NULL) {
      if (c->len > MAX_HEAD)
        simple_error(c, 413, "{\"id\":\"too_large\",\"message\":\"request head too large\"}");
      return;
    }
    size_t head_len = (size_t)(end - c->buf) + 4;
    *end = '\0';
    http_req_t req = {0};
    char *line_end = strstr(c->buf, "\r\n");
    char *first = line_end ? strndup(c->buf, (size_t)(line_end - c->buf)) : strdup(c->buf);
    char *sp1 = strchr(first, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (sp1 == NULL || sp2 == NULL) {
      free(first);
      simple_error(c, 400, "{\"id\":\"bad_request\",\"message\":\"malformed request line\"}");
      return;
    }
    req.method = strndup(first, (size_t)(sp1 - first));
    char *target = strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
    free(first);
    char *qm = strchr(target, '?');
    req.query = strdup(qm ? qm + 1 : "");
    if (qm)
      *qm = '\0';
    req.path = target;
    size_t content_length = 0;
    bool chunked = false;
    for (char *l = line_end ? line_end + 2 : NULL; l && *l;) {
      char *e = strstr(l, "\r\n");
      size_t n = e ? (size_t)(e - l) : strlen(l);
      char **g = realloc(req.headers, (req.header_n + 1) * sizeof(*g));
      req.headers = g;
      req.headers[req.header_n++] = strndup(l, n);
      l = e ? e + 2 : NULL;
    }
    const char *v = http_req_header(&req, "Content-Length");
    if (v)
      content_length = strtoul(v, NULL, 10);
    v = http_req_header(&req, "Transfer-Encoding");
    if (v && strcasecmp(v, "identity") != 0)
      chunked = true;
    if (chunked || content_length > MAX_BODY) {
      req_free(&req);
      simple_error(c, chunked ? 411 : 413,
                   "{\"id\":\"bad_request\",\"message\":\"send the body with Content-Length "
                   "(at most 1 MiB)\"}");
      return;
    }
    if (c->len < head_len + content_length) {
      *end = '\r'; /* restore; wait for the rest of the body */
      req_free(&req);
      return;
    }
    req.body = malloc(content_length + 1);
    memcpy(req.body, c->buf + head_len, content_length);
    req.body[content_length] = '\0';
    req.body_len = content_length;
    size_t used = head_len + content_length;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
    answer(c, &req);
    req_free(&req);
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  conn_t *c = h->data;
  (void)suggested;
  if (c->cap - c->len < 16384) {
    size_t cap = c->cap ? c->cap * 2 : 32768;
    char *g = realloc(c->buf, cap);
    if (g == NULL) {
      *b = uv_buf_init(NULL, 0);
      return;
    }
    c->buf = g;
    c->cap = cap;
  }
  *b = uv_buf_init(c->buf + c->len, (unsigned)(c->cap - c->len - 1));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  conn_t *c = st->data;
  (void)b;
  if (n < 0) {
    conn_close(c, false);
    return;
  }
  c->len += (size_t)n;
  if (c->len > MAX_HEAD + MAX_BODY + 4096) {
    conn_close(c, true);
    return;
  }
  conn_read_more(c);
}

static void on_connection(uv_stream_t *l, int status) {
  httpd_t *s = l->data;
  if (status < 0)
    return;
  conn_t *c = calloc(1, sizeof(*c));
  c->srv = s;
  uv_tcp_init(l->loop, &c->tcp);
  uv_timer_init(l->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->handles = 2;
  c->next = s->conns;
  if (s->conns)
    s->conns->prev = c;
  s->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || s->sim->stopping) {
    conn_close(c, false);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int httpd_start(sim_t *sim, const char *host, int port, http_handler_fn fn, int *port_out) {
  httpd_t *s = calloc(1, sizeof(*s));
  s->sim = sim;
  s->fn = fn;
  uv_tcp_init(sim->loop, &s->listener);
  s->listener.data = s;
  struct sockaddr_in a;
  int rc = uv_ip4_addr(host, port, &a);
  if (rc == 0)
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&a, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
  if (rc != 0) {
    uv_close((uv_handle_t *)&s->listener, NULL);
    fprintf(stderr, "kite-cloudsim: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
    sim->httpd = NULL;
    return rc;
  }
  struct sockaddr_in got;
  int len = sizeof(got);
  uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
  *port_out = ntohs(got.sin_port);
  sim->httpd = s;
  return 0;
}

static void on_listener_closed(uv_handle_t *h) {
  free(h->data);
}

void httpd_stop(sim_t *sim) {
  httpd_t *s = sim->httpd;
  if (s == NULL)
    return;
  sim->httpd = NULL;
  for (conn_t *c = s->conns, *next; c; c = next) {
    next = c->next;
    c->srv = NULL; /* the server is freed before the connection's handles report closed */
    c->next = c->prev = NULL;
    conn_close(c, false);
  }
  s->conns = NULL;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}
