/* The bootstrap renderer: the builder's steps as one POSIX shell script.
 *
 *   set -eu; cd "$HOME"
 *   write the whole env file (every env step's line), privately and atomically
 *   for each step N of TOTAL:
 *     print the marker "\n@kite-step N TOTAL NAME\n"
 *     env:    export it in the script's own shell (never skipped: it is only an assignment)
 *     others: skip if .kite/steps/N-HASH exists; else run in a subshell with stdin from
 *             /dev/null, then create that file
 *   print "\n@kite-done TOTAL\n"
 *
 * The env file is written whole at the start rather than step by step, so it is complete on a
 * re-run and holds no variable of an older bootstrap. Steps other than env run in a subshell,
 * so that a cd, an exit or a variable of one step does not reach the next; `set -e` makes a
 * failing step end the script with its status, before its marker file exists, so a re-run
 * runs it again. HASH covers the step's kind and shell text: a changed step runs again. */

#include <stdarg.h>
#include <stdio.h>

#include "bootstrap_impl.h"
#include "kite_impl.h"
#include "kite/bootstrap.h"

typedef struct sbuf {
  char *p;
  size_t len, cap;
  bool oom;
} sbuf_t;

static void put_n(sbuf_t *s, const char *text, size_t l) {
  if (s->oom)
    return;
  if (s->len + l + 1 > s->cap) {
    size_t cap = (s->len + l + 1) * 2;
    char *grown = realloc(s->p, cap);
    if (grown == NULL) {
      s->oom = true;
      return;
    }
    s->p = grown;
    s->cap = cap;
  }
  memcpy(s->p + s->len, text, l);
  s->len += l;
  s->p[s->len] = '\0';
}

static void put(sbuf_t *s, const char *text) {
  put_n(s, text, strlen(text));
}

static void putf(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(sbuf_t *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *t = NULL;
  if (vasprintf(&t, fmt, ap) < 0)
    s->oom = true;
  else
    put(s, t);
  free(t);
  va_end(ap);
}

/* A quoted word, or nothing and s->oom when out of memory. */
static void put_quoted(sbuf_t *s, const char *text) {
  char *q = kite__shell_quote(text);
  if (q == NULL)
    s->oom = true;
  else
    put(s, q);
  free(q);
}

/* FNV-1a, 64 bits, over len bytes. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

static uint64_t step_hash(const kite__step_t *st) {
  const char *kind = kite__step_kind_name(st->kind);
  uint64_t h = fnv1a(14695981039346656037ull, kind, strlen(kind) + 1);
  return fnv1a(h, st->body, strlen(st->body));
}

static void put_env_file(sbuf_t *s, const kite_bootstrap_t *b) {
  size_t lines = 0;
  for (size_t i = 0; i < b->n; i++)
    if (b->steps[i].kind == KITE__STEP_ENV) {
      if (lines++ == 0)
        put(s, "printf '%s\\n'");
      put(s, " \\\n  ");
      put_quoted(s, b->steps[i].line);
    }
  put(s, lines ? " > \"$K/env.tmp\"\n" : ": > \"$K/env.tmp\"\n");
  put(s, "mv -f \"$K/env.tmp\" \"$HOME/" KITE_BOOTSTRAP_ENV_FILE "\"\n");
}

/* The marker line: the name on one line, whatever it holds. */
static void put_marker(sbuf_t *s, size_t n, size_t total, const char *name) {
  char *label = kite__strdup(name);
  if (label == NULL) {
    s->oom = true;
    return;
  }
  for (char *c = label; *c; c++)
    if (*c == '\n' || *c == '\r')
      *c = ' ';
  putf(s, "printf '\\n@kite-step %zu %zu %%s\\n' ", n, total);
  put_quoted(s, label);
  put(s, "\n");
  free(label);
}

int kite_bootstrap_render(const kite_bootstrap_t *b, char **script, size_t *len) {
  if (b == NULL || script == NULL)
    return KITE_EINVAL;
  sbuf_t s = {0};
  putf(&s,
       "#!/bin/sh\n"
       "# kite bootstrap, %zu steps. A step that completed has a file in .kite/steps and is\n"
       "# skipped when this script runs again.\n"
       "set -eu\n"
       "cd \"$HOME\"\n"
       "K=\"$HOME/" KITE_BOOTSTRAP_DIR "\"\n"
       "umask 077\n"
       "mkdir -p \"$K/steps\"\n",
       b->n);
  put_env_file(&s, b);
  put(&s, "umask 022\n");
  for (size_t i = 0; i < b->n; i++) {
    const kite__step_t *st = &b->steps[i];
    put_marker(&s, i + 1, b->n, st->name);
    if (st->kind == KITE__STEP_ENV) {
      put(&s, st->body);
      continue;
    }
    char mark[64];
    snprintf(mark, sizeof(mark), "\"$K/steps/%zu-%016llx\"", i + 1,
             (unsigned long long)step_hash(st));
    putf(&s, "if [ -e %s ]; then echo '(already done)'; else\n(\n", mark);
    put(&s, st->body);
    putf(&s, ") </dev/null\n: > %s\nfi\n", mark);
  }
  putf(&s, "printf '\\n@kite-done %zu\\n'\n", b->n);
  if (s.oom) {
    free(s.p);
    return KITE_ENOMEM;
  }
  *script = s.p;
  if (len)
    *len = s.len;
  return 0;
}
