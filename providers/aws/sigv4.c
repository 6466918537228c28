/* AWS Signature Version 4 (the signing every AWS API call needs), with OpenSSL's libcrypto.
 *
 * Owns nothing beyond the strings it returns. The steps are AWS's own:
 *   1. the canonical request: method, canonical URI (dot segments removed, each segment
 *      percent-encoded), canonical query (every name and value percent-encoded, sorted by
 *      name then value), canonical headers (names lower-cased, values trimmed with inner runs
 *      of spaces collapsed, repeated headers joined by commas, sorted by name), the signed
 *      header list and the hex SHA-256 of the payload;
 *   2. the string to sign: algorithm, date, credential scope and the canonical request's hash;
 *   3. the signing key: HMAC chain of "AWS4"+secret over date, region, service, "aws4_request";
 *   4. the signature: hex HMAC of the string to sign with that key. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws_impl.h"
#include "kite/error.h"

/* ---- small string builder -------------------------------------------------------------- */

typedef struct sb {
  char *p;
  size_t len, cap;
  bool oom;
} sb_t;

static void sb_addn(sb_t *b, const char *s, size_t n) {
  if (b->oom)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
      b->oom = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void sb_add(sb_t *b, const char *s) {
  sb_addn(b, s, strlen(s));
}

static char *sb_take(sb_t *b) {
  if (b->oom) {
    free(b->p);
    return NULL;
  }
  if (b->p == NULL)
    return calloc(1, 1);
  return b->p;
}

/* ---- hashing ------------------------------------------------------------------------------ */

static void hex(const unsigned char *d, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[d[i] >> 4];
    out[2 * i + 1] = digits[d[i] & 15];
  }
  out[2 * n] = '\0';
}

void kite__aws_sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char md[32];
  unsigned len = 0;
  EVP_Digest(p ? p : "", n, md, &len, EVP_sha256(), NULL);
  hex(md, 32, out);
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32]) {
  unsigned len = 32;
  HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

void kite__aws_amz_date(int64_t t, char out[17]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

bool kite__aws_str_equal_ct(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = la != lb;
  for (size_t i = 0; i < la && i < lb; i++)
    d |= (unsigned char)(a[i] ^ b[i]);
  return d == 0;
}

/* ---- encoding ----------------------------------------------------------------------------- */

static bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

char *kite__aws_uri_encode(const char *s, size_t n, bool keep_slash) {
  static const char digits[] = "0123456789ABCDEF";
  char *out = malloc(n * 3 + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) {
      out[o++] = (char)c;
    } else {
      out[o++] = '%';
      out[o++] = digits[c >> 4];
      out[o++] = digits[c & 15];
    }
  }
  out[o] = '\0';
  return out;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Decodes %XY escapes; with plus, '+' is a space (as form bodies write it). */
static char *uri_decode(const char *s, size_t n, bool plus, size_t *out_len) {
  char *out = malloc(n + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int h, l;
    if (s[i] == '%' && i + 2 < n && (h = hexval(s[i + 1])) >= 0 && (l = hexval(s[i + 2])) >= 0) {
      out[o++] = (char)(h * 16 + l);
      i += 2;
    } else if (plus && s[i] == '+') {
      out[o++] = ' ';
    } else {
      out[o++] = s[i];
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* ---- canonical URI ------------------------------------------------------------------------ */

/* Removes "." and ".." segments and empty segments (RFC 3986 normalization, as AWS does for
 * every service but S3), then encodes each segment. */
static char *canonical_uri(const char *path) {
  if (path == NULL || *path == '\0')
    return strdup("/");
  size_t n = strlen(path);
  const char **segs = calloc(n + 1, sizeof(*segs));
  size_t *lens = calloc(n + 1, sizeof(*lens));
  if (segs == NULL || lens == NULL) {
    free(segs);
    free(lens);
    return NULL;
  }
  size_t k = 0;
  bool trailing = false;
  for (const char *p = path; *p;) {
    while (*p == '/')
      p++;
    if (*p == '\0')
      break;
    const char *e = strchr(p, '/');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    bool dot = l == 1 && p[0] == '.', dotdot = l == 2 && p[0] == '.' && p[1] == '.';
    if (dotdot && k)
      k--;
    if (!dot && !dotdot) {
      segs[k] = p;
      lens[k++] = l;
    }
    /* A path ending in "/", "/." or "/.." names a directory. */
    trailing = e != NULL || dot || dotdot;
    p += l;
  }
  sb_t b = {0};
  for (size_t i = 0; i < k; i++) {
    size_t dl = 0;
    char *dec = uri_decode(segs[i], lens[i], false, &dl);
    char *enc = dec ? kite__aws_uri_encode(dec, dl, false) : NULL;
    sb_add(&b, "/");
    if (enc)
      sb_add(&b, enc);
    else
      b.oom = true;
    free(dec);
    free(enc);
  }
  if (k == 0 || trailing)
    sb_add(&b, "/");
  free(segs);
  free(lens);
  return sb_take(&b);
}

/* ---- canonical query ---------------------------------------------------------------------- */

typedef struct pair {
  char *name, *value; /* encoded */
} pair_t;

static int pair_cmp(const void *a, const void *b) {
  const pair_t *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  return c ? c : strcmp(x->value, y->value);
}

static char *encode_part(const char *s, size_t n) {
  size_t dl = 0;
  char *dec = uri_decode(s, n, false, &dl);
  char *enc = dec ? kite__aws_uri_encode(dec, dl, false) : NULL;
  free(dec);
  return enc;
}

static char *canonical_query(const char *q) {
  if (q == NULL || *q == '\0')
    return calloc(1, 1);
  size_t cap = 1;
  for (const char *p = q; *p; p++)
    cap += *p == '&';
  pair_t *v = calloc(cap, sizeof(*v));
  if (v == NULL)
    return NULL;
  size_t n = 0;
  bool oom = false;
  for (const char *p = q; *p;) {
    const char *e = strchr(p, '&');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l) {
      const char *eq = memchr(p, '=', l);
      size_t nl = eq ? (size_t)(eq - p) : l;
      v[n].name = encode_part(p, nl);
      v[n].value = eq ? encode_part(eq + 1, l - nl - 1) : calloc(1, 1);
      oom |= v[n].name == NULL || v[n].value == NULL;
      n++;
    }
    p += l + (e ? 1 : 0);
  }
  sb_t b = {0};
  if (!oom) {
    qsort(v, n, sizeof(*v), pair_cmp);
    for (size_t i = 0; i < n; i++) {
      if (i)
        sb_add(&b, "&");
      sb_add(&b, v[i].name);
      sb_add(&b, "=");
      sb_add(&b, v[i].value);
    }
  }
  for (size_t i = 0; i < n; i++) {
    free(v[i].name);
    free(v[i].value);
  }
  free(v);
  if (oom) {
    free(b.p);
    return NULL;
  }
  return sb_take(&b);
}

/* ---- canonical headers -------------------------------------------------------------------- */

typedef struct hdr {
  char *name;  /* lower case */
  char *value; /* trimmed, spaces collapsed */
  size_t order;
} hdr_t;

static int hdr_cmp(const void *a, const void *b) {
  const hdr_t *x = a, *y = b;
  int c = strcmp(x->name, y->name);
  if (c)
    return c;
  return x->order < y->order ? -1 : x->order > y->order;
}

static char *trim_value(const char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  char *out = malloc(n + 1);
  if (out == NULL)
    return NULL;
  size_t o = 0;
  bool space = false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i] == '\t' ? ' ' : s[i];
    if (c == '\r' || c == '\n')
      c = ' ';
    if (c == ' ') {
      space = true;
      continue;
    }
    if (space && o)
      out[o++] = ' ';
    space = false;
    out[o++] = c;
  }
  out[o] = '\0';
  return out;
}

/* ---- signing ------------------------------------------------------------------------------ */

void kite__aws_sig_free(kite__aws_sig_t *s) {
  free(s->canonical_request);
  free(s->string_to_sign);
  free(s->signed_headers);
  free(s->authorization);
  memset(s, 0, sizeof(*s));
}

int kite__aws_sign(const kite__aws_sig_req_t *r, kite__aws_sig_t *out) {
  memset(out, 0, sizeof(*out));
  if (r->method == NULL || r->region == NULL || r->service == NULL || r->amz_date == NULL ||
      strlen(r->amz_date) != 16 || r->access_key == NULL || r->secret_key == NULL)
    return KITE_EINVAL;
  hdr_t *h = calloc(r->header_n + 1, sizeof(*h));
  if (h == NULL)
    return KITE_ENOMEM;
  int rc = 0;
  for (size_t i = 0; i < r->header_n && rc == 0; i++) {
    const char *line = r->headers[i];
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon == line) {
      rc = KITE_EINVAL;
      break;
    }
    h[i].name = strndup(line, (size_t)(colon - line));
    h[i].value = trim_value(colon + 1);
    h[i].order = i;
    if (h[i].name == NULL || h[i].value == NULL) {
      rc = KITE_ENOMEM;
      break;
    }
    for (char *p = h[i].name; *p; p++)
      if (*p >= 'A' && *p <= 'Z')
        *p = (char)(*p - 'A' + 'a');
  }
  char *uri = rc == 0 ? canonical_uri(r->path) : NULL;
  char *query = rc == 0 ? canonical_query(r->query) : NULL;
  if (rc == 0 && (uri == NULL || query == NULL))
    rc = KITE_ENOMEM;
  sb_t hb = {0}, sh = {0};
  if (rc == 0) {
    qsort(h, r->header_n, sizeof(*h), hdr_cmp);
    for (size_t i = 0; i < r->header_n; i++) {
      bool same = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
      if (same) {
        sb_add(&hb, ",");
      } else {
        if (i) {
          sb_add(&hb, "\n");
          sb_add(&sh, ";");
        }
        sb_add(&hb, h[i].name);
        sb_add(&hb, ":");
        sb_add(&sh, h[i].name);
      }
      sb_add(&hb, h[i].value);
    }
    if (r->header_n)
      sb_add(&hb, "\n");
  }
  char *headers = rc == 0 ? sb_take(&hb) : (free(hb.p), NULL);
  out->signed_headers = rc == 0 ? sb_take(&sh) : (free(sh.p), NULL);
  if (rc == 0 && (headers == NULL || out->signed_headers == NULL))
    rc = KITE_ENOMEM;
  if (rc == 0) {
    char payload_hash[65];
    kite__aws_sha256_hex(r->payload, r->payload_len, payload_hash);
    sb_t c = {0};
    sb_add(&c, r->method);
    sb_add(&c, "\n");
    sb_add(&c, uri);
    sb_add(&c, "\n");
    sb_add(&c, query);
    sb_add(&c, "\n");
    sb_add(&c, headers);
    sb_add(&c, "\n");
    sb_add(&c, out->signed_headers);
    sb_add(&c, "\n");
    sb_add(&c, payload_hash);
    out->canonical_request = sb_take(&c);
  }
  char date[9] = "";
  if (rc == 0 && out->canonical_request) {
    memcpy(date, r->amz_date, 8);
    char creq_hash[65];
    kite__aws_sha256_hex(out->canonical_request, strlen(out->canonical_request), creq_hash);
    sb_t s = {0};
    sb_add(&s, "AWS4-HMAC-SHA256\n");
    sb_add(&s, r->amz_date);
    sb_add(&s, "\n");
    sb_add(&s, date);
    sb_add(&s, "/");
    sb_add(&s, r->region);
    sb_add(&s, "/");
    sb_add(&s, r->service);
    sb_add(&s, "/aws4_request\n");
    sb_add(&s, creq_hash);
    out->string_to_sign = sb_take(&s);
  }
  if (rc == 0 && (out->canonical_request == NULL || out->string_to_sign == NULL))
    rc = KITE_ENOMEM;
  if (rc == 0) {
    size_t kl = strlen(r->secret_key) + 5;
    char *k0 = malloc(kl);
    if (k0 == NULL) {
      rc = KITE_ENOMEM;
    } else {
      snprintf(k0, kl, "AWS4%s", r->secret_key);
      unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
      hmac(k0, kl - 1, date, k1);
      hmac(k1, 32, r->region, k2);
      hmac(k2, 32, r->service, k3);
      hmac(k3, 32, "aws4_request", k4);
      hmac(k4, 32, out->string_to_sign, sig);
      OPENSSL_cleanse(k0, kl);
      OPENSSL_cleanse(k1, 32);
      OPENSSL_cleanse(k2, 32);
      OPENSSL_cleanse(k3, 32);
      OPENSSL_cleanse(k4, 32);
      free(k0);
      hex(sig, 32, out->signature);
      sb_t a = {0};
      sb_add(&a, "AWS4-HMAC-SHA256 Credential=");
      sb_add(&a, r->access_key);
      sb_add(&a, "/");
      sb_add(&a, date);
      sb_add(&a, "/");
      sb_add(&a, r->region);
      sb_add(&a, "/");
      sb_add(&a, r->service);
      sb_add(&a, "/aws4_request, SignedHeaders=");
      sb_add(&a, out->signed_headers);
      sb_add(&a, ", Signature=");
      sb_add(&a, out->signature);
      out->authorization = sb_take(&a);
      if (out->authorization == NULL)
        rc = KITE_ENOMEM;
    }
  }
  for (size_t i = 0; i < r->header_n; i++) {
    free(h[i].name);
    free(h[i].value);
  }
  free(h);
  free(uri);
  free(query);
  free(headers);
  if (rc != 0)
    kite__aws_sig_free(out);
  return rc;
}
