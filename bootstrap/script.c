/* The bootstrap builder and renderer: steps (apt, pip, env, file, run, checkpoint) rendered
 * into one POSIX shell script.
 *
 * The script's shape:
 *   set -eu; cd "$HOME"; mkdir -p .kite/steps
 *   for each step N:  printf '\n@kite-step N TOTAL NAME\n'
 *                     if the step's marker exists: skip it; else run it in a subshell and,
 *                     when it succeeded, create the marker .kite/steps/N-HASH
 *   printf '\n@kite-done TOTAL\n'
 * env steps are not skipped: they re-export and rewrite .kite/env on every run, so the file
 * is always complete. Every value reaches the script through kite__shell_quote(). */

#include <stdarg.h>
#include <stdio.h>

#include "kite_impl.h"
#include "kite/bootstrap.h"

typedef enum step_kind { S_APT, S_PIP, S_ENV, S_FILE, S_RUN, S_CHECKPOINT } step_kind_t;

typedef struct step {
  step_kind_t kind;
  char *name;  /* shown in progress and errors */
  char *body;  /* the shell text of the step (already quoted where it holds values) */
  char *secret; /* env: the value when it is secret */
} step_t;

struct kite_bootstrap {
  step_t *steps;
  size_t n, cap;
};

int kite_bootstrap_new(kite_bootstrap_t **out) {
  if (out == NULL)
    return KITE_EINVAL;
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : KITE_ENOMEM;
}

void kite_bootstrap_free(kite_bootstrap_t *b) {
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->n; i++) {
    free(b->steps[i].name);
    free(b->steps[i].body);
    if (b->steps[i].secret) {
      volatile char *p = b->steps[i].secret;
      while (*p)
        *p++ = 0;
      free(b->steps[i].secret);
    }
  }
  free(b->steps);
  free(b);
}

unsigned kite_bootstrap_steps(const kite_bootstrap_t *b) { return b ? (unsigned)b->n : 0; }

/* Takes ownership of name and body (also on failure). */
static int add(kite_bootstrap_t *b, step_kind_t kind, char *name, char *body) {
  if (name == NULL || body == NULL) {
    free(name);
    free(body);
    return KITE_ENOMEM;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 8;
    step_t *g = realloc(b->steps, cap * sizeof(*g));
    if (g == NULL) {
      free(name);
      free(body);
      return KITE_ENOMEM;
    }
    b->steps = g;
    b->cap = cap;
  }
  b->steps[b->n++] = (step_t){.kind = kind, .name = name, .body = body};
  return 0;
}

static bool valid_env_name(const char *s) {
  if (s == NULL || !(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
    return false;
  for (s++; *s; s++)
    if (!(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
          (*s >= '0' && *s <= '9')))
      return false;
  return true;
}

/* Package names go unquoted into a word list, so only their own alphabets are accepted:
 * Debian's (a-z 0-9 + - . plus :arch and =version) and pip's requirement specifiers. */
static bool valid_package(const char *s, bool pip) {
  if (s == NULL || *s == '\0' || *s == '-' || strlen(s) > 200)
    return false;
  for (; *s; s++) {
    char c = *s;
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
              c == '.' || c == ':' || c == '=' || c == '~';
    if (pip)
      ok = ok || (c >= 'A' && c <= 'Z') || c == '_' || c == '[' || c == ']' || c == ',' ||
           c == '<' || c == '>' || c == '!';
    if (!ok)
      return false;
  }
  return true;
}

/* "a b c" of a NULL-terminated list, each checked. */
static char *word_list(const char *const *packages, bool pip, int *rc) {
  size_t len = 1;
  *rc = 0;
  if (packages == NULL || packages[0] == NULL) {
    *rc = KITE_EINVAL;
    return NULL;
  }
  for (size_t i = 0; packages[i]; i++) {
    if (!valid_package(packages[i], pip)) {
      *rc = KITE_EINVAL;
      return NULL;
    }
    len += strlen(packages[i]) + 1;
  }
  char *out = calloc(1, len);
  if (out == NULL) {
    *rc = KITE_ENOMEM;
    return NULL;
  }
  for (size_t i = 0; packages[i]; i++) {
    if (i)
      strcat(out, " ");
    strcat(out, packages[i]);
  }
  return out;
}

int kite_bootstrap_apt(kite_bootstrap_t *b, const char *const *packages) {
  if (b == NULL)
    return KITE_EINVAL;
  int rc;
  char *words = word_list(packages, false, &rc);
  if (words == NULL)
    return rc;
  char *body = kite__sprintf(
      "missing=\n"
      "for p in %s; do\n"
      "  n=${p%%%%=*}\n"
      "  dpkg-query -W -f='${Status}' \"$n\" 2>/dev/null | grep -q 'install ok installed' "
      "|| missing=\"$missing $p\"\n"
      "done\n"
      "if [ -n \"$missing\" ]; then\n"
      "  if [ \"$(id -u)\" = 0 ]; then S=; else S='sudo -n'; fi\n"
      "  echo \"installing:$missing\"\n"
      "  $S env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing || "
      "{ $S apt-get update -q && $S env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
      "$missing; }\n"
      "else\n"
      "  echo 'already installed: %s'\n"
      "fi\n",
      words, words);
  char *name = kite__sprintf("apt %s", words);
  free(words);
  return add(b, S_APT, name, body);
}

int kite_bootstrap_pip(kite_bootstrap_t *b, const char *const *packages,
                       const kite_bootstrap_pip_opts_t *opts) {
  if (b == NULL)
    return KITE_EINVAL;
  int rc;
  char *words = word_list(packages, true, &rc);
  if (words == NULL)
    return rc;
  const char *python = opts && opts->python ? opts->python : "python3";
  char *py = kite__shell_quote(python);
  char *links = opts && opts->find_links ? kite__shell_quote(opts->find_links) : NULL;
  char *flags = kite__sprintf("%s%s%s", opts && opts->no_index ? " --no-index" : "",
                              links ? " --find-links " : "", links ? links : "");
  char *body = py && flags ? kite__sprintf(
      "missing=\n"
      "for p in %s; do\n"
      "  n=$(printf '%%s' \"$p\" | sed 's/[][<>=!~,].*//')\n"
      "  %s -m pip show -q \"$n\" >/dev/null 2>&1 || missing=\"$missing $p\"\n"
      "done\n"
      "if [ -n \"$missing\" ]; then\n"
      "  if [ \"$(id -u)\" = 0 ]; then U=; else U=--user; fi\n"
      "  echo \"installing:$missing\"\n"
      "  PIP_BREAK_SYSTEM_PACKAGES=1 %s -m pip install -q $U%s $missing\n"
      "else\n"
      "  echo 'already installed: %s'\n"
      "fi\n",
      words, py, py, flags, words) : NULL;
  char *name = kite__sprintf("pip %s", words);
  free(words);
  free(py);
  free(links);
  free(flags);
  return add(b, S_PIP, name, body);
}

int kite_bootstrap_env(kite_bootstrap_t *b, const char *name, const char *value, bool secret) {
  if (b == NULL || !valid_env_name(name) || value == NULL)
    return KITE_EINVAL;
  char *q = kite__shell_quote(value);
  char *line = q ? kite__sprintf("export %s=%s", name, q) : NULL;
  char *ql = line ? kite__shell_quote(line) : NULL;
  /* Exported here, and the same line appended to the env file being built. */
  char *body = ql ? kite__sprintf("%s\nprintf '%%s\\n' %s >> \"$K/env.new\"\n", line, ql) : NULL;
  free(q);
  free(line);
  free(ql);
  char *label = kite__sprintf("env %s", name);
  int rc = add(b, S_ENV, label, body);
  if (rc == 0 && secret) {
    b->steps[b->n - 1].secret = kite__strdup(value);
    if (b->steps[b->n - 1].secret == NULL)
      return KITE_ENOMEM;
  }
  return rc;
}

int kite_bootstrap_file(kite_bootstrap_t *b, const char *path, const void *content, size_t len,
                        int mode) {
  if (b == NULL || path == NULL || *path == '\0' || (content == NULL && len) || mode < 0 ||
      mode > 07777)
    return KITE_EINVAL;
  /* A shell word cannot hold a NUL byte; binary files go through kite_pool_upload(). */
  if (len && memchr(content, '\0', len))
    return KITE_EINVAL;
  char *text = malloc(len + 1);
  if (text == NULL)
    return KITE_ENOMEM;
  if (len)
    memcpy(text, content, len);
  text[len] = '\0';
  char *qc = kite__shell_quote(text);
  char *qp = kite__shell_quote(path);
  free(text);
  char *body = qc && qp ? kite__sprintf(
      "p=%s\n"
      "case \"$p\" in */*) d=${p%%/*}; [ -n \"$d\" ] || d=/;; *) d=.;; esac\n"
      "mkdir -p -- \"$d\"\n"
      "t=\"$d/.kite-tmp.$$\"\n"
      "printf '%%s' %s > \"$t\"\n"
      "chmod %o \"$t\"\n"
      "mv -f -- \"$t\" \"$p\"\n",
      qp, qc, (unsigned)mode) : NULL;
  free(qc);
  free(qp);
  char *name = kite__sprintf("file %s", path);
  return add(b, S_FILE, name, body);
}

int kite_bootstrap_run(kite_bootstrap_t *b, const char *name, const char *script) {
  if (b == NULL || name == NULL || script == NULL)
    return KITE_EINVAL;
  char *q = kite__shell_quote(script);
  char *body = q ? kite__sprintf("/bin/sh -e -c %s\n", q) : NULL;
  free(q);
  return add(b, S_RUN, kite__strdup(name), body);
}

int kite_bootstrap_checkpoint(kite_bootstrap_t *b, const char *name) {
  if (b == NULL || name == NULL)
    return KITE_EINVAL;
  return add(b, S_CHECKPOINT, kite__strdup(name), kite__strdup(":\n"));
}

int kite_bootstrap_register_secrets(const kite_bootstrap_t *b, kite_runtime_t *rt) {
  if (b == NULL || rt == NULL)
    return KITE_EINVAL;
  for (size_t i = 0; i < b->n; i++)
    if (b->steps[i].secret) {
      int rc = kite_secret_add(rt, b->steps[i].secret);
      if (rc != 0)
        return rc;
    }
  return 0;
}

/* ---- rendering --------------------------------------------------------------------------- */

typedef struct sbuf {
  char *p;
  size_t len, cap;
  bool oom;
} sbuf_t;

static void put(sbuf_t *s, const char *text) {
  size_t l = strlen(text);
  if (s->oom)
    return;
  if (s->len + l + 1 > s->cap) {
    size_t cap = (s->len + l + 1) * 2;
    char *g = realloc(s->p, cap);
    if (g == NULL) {
      s->oom = true;
      return;
    }
    s->p = g;
    s->cap = cap;
  }
  memcpy(s->p + s->len, text, l + 1);
  s->len += l;
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

static uint64_t fnv1a(uint64_t h, const char *s) {
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

int kite_bootstrap_render(const kite_bootstrap_t *b, char **script, size_t *len) {
  if (b == NULL || script == NULL)
    return KITE_EINVAL;
  sbuf_t s = {0};
  put(&s, "#!/bin/sh\n# rendered by kite: one step after another, each skipped once done\n"
          "set -eu\ncd \"$HOME\"\nK=\"$HOME/" KITE_BOOTSTRAP_DIR "\"\n"
          "umask 077\nmkdir -p \"$K/steps\"\numask 022\n"
          ": > \"$K/env.new\"\n");
  for (size_t i = 0; i < b->n; i++) {
    const step_t *st = &b->steps[i];
    char *label = kite__strdup(st->name);
    if (label == NULL) {
      s.oom = true;
      break;
    }
    for (char *c = label; *c; c++)
      if (*c == '\n' || *c == '\r')
        *c = ' ';
    char *ql = kite__shell_quote(label);
    free(label);
    if (ql == NULL) {
      s.oom = true;
      break;
    }
    putf(&s, "printf '\\n@kite-step %zu %zu %%s\\n' %s\n", i + 1, b->n, ql);
    free(ql);
    if (st->kind == S_ENV) {
      put(&s, st->body);
      put(&s, "chmod 600 \"$K/env.new\"; cp \"$K/env.new\" \"$K/env.tmp\"; "
              "mv -f \"$K/env.tmp\" \"$HOME/" KITE_BOOTSTRAP_ENV_FILE "\"\n");
      continue;
    }
    uint64_t h = fnv1a(fnv1a(14695981039346656037ull, st->name), st->body);
    h = fnv1a(h, st->kind == S_APT ? "apt" : st->kind == S_PIP ? "pip" : st->kind == S_FILE ? "file"
                 : st->kind == S_RUN ? "run" : "checkpoint");
    putf(&s, "if [ -e \"$K/steps/%zu-%016llx\" ]; then echo '(already done)'; else\n(\n", i + 1,
         (unsigned long long)h);
    put(&s, st->body);
    putf(&s, ")\n: > \"$K/steps/%zu-%016llx\"\nfi\n", i + 1, (unsigned long long)h);
  }
  put(&s, "rm -f \"$K/env.new\"\n");
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
