/* EC2 Query API requests: form bodies and client tokens.
 *
 * Every EC2 call is a POST of an application/x-www-form-urlencoded body carrying Action,
 * Version and the operation's parameters, named as the EC2 protocol serializes the input
 * shape in the API description: a member's locationName (capitalized) or its own name, lists
 * flattened as Name.1, Name.2, … (so RunInstances' TagSpecifications go as
 * TagSpecification.1.Tag.1.Key). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_impl.h"
#include "kite/error.h"

#define EC2_API_VERSION "2016-11-15"

static void form_append(kite__aws_form_t *f, const char *s, size_t n) {
  if (f->error)
    return;
  if (f->len + n + 1 > f->cap) {
    size_t cap = f->cap ? f->cap : 512;
    while (cap < f->len + n + 1)
      cap *= 2;
    char *p = realloc(f->buf, cap);
    if (p == NULL) {
      f->error = KITE_ENOMEM;
      return;
    }
    f->buf = p;
    f->cap = cap;
  }
  memcpy(f->buf + f->len, s, n);
  f->len += n;
  f->buf[f->len] = '\0';
}

static void form_pair(kite__aws_form_t *f, const char *name, const char *value) {
  char *n = kite__aws_uri_encode(name, strlen(name), false);
  char *v = kite__aws_uri_encode(value ? value : "", value ? strlen(value) : 0, false);
  if (n == NULL || v == NULL) {
    f->error = KITE_ENOMEM;
  } else {
    if (f->len)
      form_append(f, "&", 1);
    form_append(f, n, strlen(n));
    form_append(f, "=", 1);
    form_append(f, v, strlen(v));
  }
  free(n);
  free(v);
}

void kite__aws_form_init(kite__aws_form_t *f, const char *action) {
  memset(f, 0, sizeof(*f));
  form_pair(f, "Action", action);
  form_pair(f, "Version", EC2_API_VERSION);
}

void kite__aws_form_add(kite__aws_form_t *f, const char *name, const char *value) {
  form_pair(f, name, value);
}

void kite__aws_form_addf(kite__aws_form_t *f, const char *value, const char *name_fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, name_fmt);
  int n = vsnprintf(name, sizeof(name), name_fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(name)) {
    f->error = KITE_EINVAL;
    return;
  }
  form_pair(f, name, value);
}

void kite__aws_form_free(kite__aws_form_t *f) {
  free(f->buf);
  memset(f, 0, sizeof(*f));
}

void kite__aws_client_token(const char *launch_token, char out[48]) {
  char h[65];
  kite__aws_sha256_hex(launch_token, launch_token ? strlen(launch_token) : 0, h);
  snprintf(out, 48, "kite-%.40s", h);
}
