/* The instance metadata service of an emulated EC2 instance, on the instance's own loopback
 * address (EC2's is 169.254.169.254 as seen from the instance; here the node's address, so
 * that nothing leaves 127.0.0.0/8).
 *
 * IMDSv2 only, as instances launched with HttpTokens=required behave:
 *   PUT /latest/api/token   with X-aws-ec2-metadata-token-ttl-seconds: 1..21600 → a token
 *   GET /latest/meta-data/… with X-aws-ec2-metadata-token: TOKEN (else 401)
 *       spot/instance-action  the notice JSON, or 404 when none was given
 *       instance-id, instance-life-cycle
 * One request per connection; the answer closes it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ec2_impl.h"

#define MAX_REQ 8192

typedef struct imds_conn {
  imds_t *m;
  uv_tcp_t tcp;
  char buf[MAX_REQ];
  size_t len;
  bool answered;
  struct imds_conn *next;
} imds_conn_t;

struct imds {
  uv_tcp_t listener;
  imds_lookup_fn fn;
  imds_answer_fn answer_fn; /* another cloud's metadata server (imds_serve), or NULL */
  void *data;
  char token[33];
  imds_conn_t *conns;
  int open; /* handles not yet closed */
  bool stopping;
};

static void maybe_free(imds_t *m) {
  if (m->stopping && m->open == 0)
    free(m);
}

static void on_conn_closed(uv_handle_t *h) {
  imds_conn_t *c = h->data;
  imds_t *m = c->m;
  for (imds_conn_t **pp = &m->conns; *pp; pp = &(*pp)->next)
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  free(c);
  m->open--;
  maybe_free(m);
}

static void conn_close(imds_conn_t *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

typedef struct wreq {
  uv_write_t w;
  imds_conn_t *c;
  char *buf;
} wreq_t;

static void on_written(uv_write_t *w, int status) {
  wreq_t *r = (wreq_t *)w;
  (void)status;
  conn_close(r->c);
  free(r->buf);
  free(r);
}

static void reply(imds_conn_t *c, int status, const char *reason, const char *body) {
  c->answered = true;
  wreq_t *r = calloc(1, sizeof(*r));
  r->c = c;
  r->buf = sim_sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nServer: EC2ws\r\n"
                       "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
                       status, reason, strlen(body), body);
  uv_buf_t b = uv_buf_init(r->buf, (unsigned)strlen(r->buf));
  uv_read_stop((uv_stream_t *)&c->tcp);
  if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
    free(r->buf);
    free(r);
    conn_close(c);
  }
}

/* The value of header name in the request head, or NULL (points into a static copy). */
const char *imds_header(const char *head, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
    const char *s = l + 2;
    if (strncasecmp(s, name, nl) == 0 && s[nl] == ':') {
      s += nl + 1;
      while (*s == ' ')
        s++;
      size_t n = strcspn(s, "\r\n");
      if (n >= cap)
        n = cap - 1;
      memcpy(out, s, n);
      out[n] = '\0';
      return out;
    }
  }
  return NULL;
}

static const char *reason_of(int status) {
  return status == 200   ? "OK"
         : status == 403 ? "Forbidden"
         : status == 404 ? "Not Found"
         : status == 405 ? "Method Not Allowed"
                         : "Bad Request";
}

static void answer(imds_conn_t *c) {
  imds_t *m = c->m;
  char method[8] = "", path[512] = "";
  if (sscanf(c->buf, "%7s %511s", method, path) != 2) {
    reply(c, 400, "Bad Request", "");
    return;
  }
  if (m->answer_fn) {
    int status = 404;
    char *body = m->answer_fn(m->data, method, path, c->buf, &status);
    reply(c, status, reason_of(status), body ? body : "");
    free(body);
    return;
  }
  char v[128];
  if (strcmp(path, "/latest/api/token") == 0) {
    if (strcmp(method, "PUT") != 0) {
      reply(c, 405, "Method Not Allowed", "");
      return;
    }
    const char *ttl = imds_header(c->buf, "X-aws-ec2-metadata-token-ttl-seconds", v, sizeof(v));
    long t = ttl ? atol(ttl) : 0;
    if (t < 1 || t > 21600) {
      reply(c, 400, "Bad Request", "");
      return;
    }
    reply(c, 200, "OK", m->token);
    return;
  }
  const char *tok = imds_header(c->buf, "X-aws-ec2-metadata-token", v, sizeof(v));
  if (tok == NULL || strcmp(tok, m->token) != 0) {
    reply(c, 401, "Unauthorized", "");
    return;
  }
  if (strcmp(method, "GET") != 0) {
    reply(c, 405, "Method Not Allowed", "");
    return;
  }
  const imds_info_t *info = m->fn(m->data);
  if (info && strcmp(path, "/latest/meta-data/spot/instance-action") == 0 &&
      info->instance_action) {
    reply(c, 200, "OK", info->instance_action);
  } else if (info && strcmp(path, "/latest/meta-data/instance-id") == 0) {
    reply(c, 200, "OK", info->instance_id);
  } else if (info && strcmp(path, "/latest/meta-data/instance-life-cycle") == 0) {
    reply(c, 200, "OK", "spot");
  } else {
    reply(c, 404, "Not Found",
          "<?xml version=\"1.0\" encoding=\"iso-8859-1\"?>\n<html><head><title>404 - Not Found"
          "</title></head><body><h1>404 - Not Found</h1></body></html>\n");
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  imds_conn_t *c = h->data;
  (void)suggested;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(MAX_REQ - 1 - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  imds_conn_t *c = s->data;
  (void)b;
  if (n < 0) {
    conn_close(c);
    return;
  }
  c->len += (size_t)n;
  c->buf[c->len] = '\0';
  if (c->answered)
    return;
  if (strstr(c->buf, "\r\n\r\n"))
    answer(c);
  else if (c->len >= MAX_REQ - 1)
    reply(c, 400, "Bad Request", "");
}

static void on_connection(uv_stream_t *l, int status) {
  imds_t *m = l->data;
  if (status != 0 || m->stopping)
    return;
  imds_conn_t *c = calloc(1, sizeof(*c));
  c->m = m;
  uv_tcp_init(l->loop, &c->tcp);
  c->tcp.data = c;
  m->open++;
  c->next = m->conns;
  m->conns = c;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close(c);
}

static void on_listener_closed(uv_handle_t *h) {
  imds_t *m = h->data;
  m->open--;
  maybe_free(m);
}

static int start(uv_loop_t *loop, const char *address, int port, imds_lookup_fn fn,
                 imds_answer_fn answer_fn, void *data, imds_t **out);

int imds_start(uv_loop_t *loop, const char *address, int port, imds_lookup_fn fn, void *data,
               imds_t **out) {
  return start(loop, address, port, fn, NULL, data, out);
}

int imds_serve(uv_loop_t *loop, const char *address, int port, imds_answer_fn fn, void *data,
               imds_t **out) {
  return start(loop, address, port, NULL, fn, data, out);
}

static int start(uv_loop_t *loop, const char *address, int port, imds_lookup_fn fn,
                 imds_answer_fn answer_fn, void *data, imds_t **out) {
  imds_t *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return UV_ENOMEM;
  m->fn = fn;
  m->answer_fn = answer_fn;
  m->data = data;
  FILE *fp = fopen("/dev/urandom", "rb");
  unsigned char r[16] = {0};
  if (fp) {
    if (fread(r, 1, sizeof(r), fp) != sizeof(r))
      memset(r, 7, sizeof(r));
    fclose(fp);
  }
  for (int i = 0; i < 16; i++)
    snprintf(m->token + 2 * i, 3, "%02x", r[i]);
  struct sockaddr_in sa;
  int rc = uv_ip4_addr(address, port, &sa);
  uv_tcp_init(loop, &m->listener);
  m->listener.data = m;
  m->open = 1;
  if (rc == 0)
    rc = uv_tcp_bind(&m->listener, (const struct sockaddr *)&sa, 0);
  if (rc == 0)
    rc = uv_listen((uv_stream_t *)&m->listener, 64, on_connection);
  if (rc != 0) {
    m->stopping = true;
    uv_close((uv_handle_t *)&m->listener, on_listener_closed);
    return rc;
  }
  *out = m;
  return 0;
}

void imds_stop(imds_t *m) {
  if (m == NULL || m->stopping)
    return;
  m->stopping = true;
  for (imds_conn_t *c = m->conns; c; c = c->next)
    conn_close(c);
  uv_close((uv_handle_t *)&m->listener, on_listener_closed);
}
