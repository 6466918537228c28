/* The bootstrap builder: checks each step's arguments and turns the step into its shell text.
 *
 * Every value a caller gives reaches the shell only through kite__shell_quote(), as one
 * single-quoted word; the only unquoted words are package names, which are checked against
 * their own alphabets first. A file's content goes through printf's format string, where the
 * bytes printf itself would interpret (backslash, percent, NUL and a leading dash) are written
 * as escapes, so any content, NUL bytes and a missing final newline included, arrives byte for
 * byte. render.c puts the steps together. */

#include <stdio.h>

#include "bootstrap_impl.h"
#include "kite_impl.h"
#include "kite/bootstrap.h"

const char *kite__step_kind_name(kite__step_kind_t kind) {
  switch (kind) {
  case KITE__STEP_APT:
    return "apt";
  case KITE__STEP_PIP:
    return "pip";
  case KITE__STEP_ENV:
    return "env";
  case KITE__STEP_FILE:
    return "file";
  case KITE__STEP_RUN:
    return "run";
  case KITE__STEP_CHECKPOINT:
    return "checkpoint";
  default:
    return "?";
  }
}

int kite_bootstrap_new(kite_bootstrap_t **out) {
  if (out == NULL)
    return KITE_EINVAL;
  *out = calloc(1, sizeof(**out));
  return *out ? 0 : KITE_ENOMEM;
}

static void wipe_free(char *s) {
  if (s == NULL)
    return;
  volatile char *p = s;
  while (*p)
    *p++ = 0;
  free(s);
}

static void step_free(kite__step_t *st) {
  free(st->name);
  /* An env step's body and line hold its value too. */
  if (st->secret) {
    wipe_free(st->body);
    wipe_free(st->line);
    wipe_free(st->secret);
  } else {
    free(st->body);
    free(st->line);
  }
}

void kite_bootstrap_free(kite_bootstrap_t *b) {
  if (b == NULL)
    return;
  for (size_t i = 0; i < b->n; i++)
    step_free(&b->steps[i]);
  free(b->steps);
  free(b);
}

unsigned kite_bootstrap_steps(const kite_bootstrap_t *b) {
  return b ? (unsigned)b->n : 0;
}

/* Appends st, taking ownership of its strings also on failure; a NULL name or body means an
 * allocation failed while building it. */
static int add(kite_bootstrap_t *b, kite__step_t st) {
  if (st.name == NULL || st.body == NULL ||
      (st.kind == KITE__STEP_ENV && st.line == NULL)) {
    step_free(&st);
    return KITE_ENOMEM;
  }
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 8;
    kite__step_t *grown = realloc(b->steps, cap * sizeof(*grown));
    if (grown == NULL) {
      step_free(&st);
      return KITE_ENOMEM;
    }
    b->steps = grown;
    b->cap = cap;
  }
  b->steps[b->n++] = st;
  return 0;
}


/* Package names go unquoted into a word list, so only their own alphabets are accepted:
 * Debian's (a-z 0-9 + - . with :arch and =version) and pip's requirement specifiers. Neither
 * alphabet holds a shell metacharacter or a glob character. */
static bool package_ok(const char *s, bool pip) {
  if (s == NULL || *s == '\0' || *s == '-' || strlen(s) > 200)
    return false;
  for (; *s; s++) {
    char c = *s;
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
              c == '.' || c == ':' || c == '=' || c == '~';
    if (pip)
      ok = ok || (c >= 'A' && c <= 'Z') || c == '_' || c == ',' || c == '<' || c == '>' ||
           c == '!';
    if (!ok)
      return false;
  }
  return true;
}

/* "a b c" of a non-empty NULL-terminated list of checked names; NULL with *rc set. */
static char *word_list(const char *const *packages, bool pip, int *rc) {
  size_t len = 1;
  *rc = KITE_EINVAL;
  if (packages == NULL || packages[0] == NULL)
    return NULL;
  for (size_t i = 0; packages[i]; i++) {
    if (!package_ok(packages[i], pip))
      return NULL;
    len += strlen(packages[i]) + 1;
  }
  char *out = malloc(len), *o = out;
  *rc = KITE_ENOMEM;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; packages[i]; i++) {
    size_t l = strlen(packages[i]);
    if (i)
      *o++ = ' ';
    memcpy(o, packages[i], l);
    o += l;
  }
  *o = '\0';
  *rc = 0;
  return out;
}

int kite_bootstrap_apt(kite_bootstrap_t *b, const char *const *packages) {
  if (b == NULL)
    return KITE_EINVAL;
  int rc;
  char *words = word_list(packages, false, &rc);
  if (words == NULL)
    return rc;
  /* dpkg-query knows a package by name (with its :arch), not by name=version. When the
   * install fails, the package lists may be stale or missing (a fresh image): update, retry. */
  char *body = kite__sprintf(
      "missing=\n"
      "for p in %s; do\n"
      "  n=${p%%%%=*}\n"
      "  dpkg-query -W -f='${Status}' \"$n\" 2>/dev/null | grep -q 'install ok installed' ||\n"
      "    missing=\"$missing $p\"\n"
      "done\n"
      "if [ -z \"$missing\" ]; then echo 'already installed: %s'; exit 0; fi\n"
      "if [ \"$(id -u)\" = 0 ]; then S=; else S='sudo -n'; fi\n"
      "echo \"installing:$missing\"\n"
      "$S env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing ||\n"
      "  { $S apt-get update -q &&\n"
      "    $S env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing; }\n",
      words, words);
  char *name = kite__sprintf("apt %s", words);
  free(words);
  return add(b, (kite__step_t){.kind = KITE__STEP_APT, .name = name, .body = body});
}

int kite_bootstrap_pip(kite_bootstrap_t *b, const char *const *packages,
                       const kite_bootstrap_pip_opts_t *opts) {
  if (b == NULL || (opts && opts->python && *opts->python == '\0') ||
      (opts && opts->find_links && *opts->find_links == '\0'))
    return KITE_EINVAL;
  int rc;
  char *words = word_list(packages, true, &rc);
  if (words == NULL)
    return rc;
  char *py = kite__shell_quote(opts && opts->python ? opts->python : "python3");
  char *links = opts && opts->find_links ? kite__shell_quote(opts->find_links) : NULL;
  char *flags = kite__sprintf("%s%s%s", opts && opts->no_index ? " --no-index" : "",
                              links ? " --find-links " : "", links ? links : "");
  /* pip show knows a requirement by its project name: strip extras and version specifiers.
   * Outside a virtual environment a user that is not root installs with --user. */
  char *body = py && flags && (!(opts && opts->find_links) || links)
                   ? kite__sprintf(
                         "missing=\n"
                         "for p in %s; do\n"
                         "  n=$(printf '%%s\\n' \"$p\" | sed 's/[][<>=!~,].*//')\n"
                         "  %s -m pip show -q \"$n\" >/dev/null 2>&1 || missing=\"$missing $p\"\n"
                         "done\n"
                         "if [ -z \"$missing\" ]; then echo 'already installed: %s'; exit 0; fi\n"
                         "if [ \"$(id -u)\" = 0 ] ||\n"
                         "   %s -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then\n"
                         "  U=\n"
                         "else\n"
                         "  U=--user\n"
                         "fi\n"
                         "echo \"installing:$missing\"\n"
                         "PIP_BREAK_SYSTEM_PACKAGES=1 PIP_NO_INPUT=1 %s -m pip install -q \\\n"
                         "  --disable-pip-version-check $U%s $missing\n",
                         words, py, words, py, py, flags)
                   : NULL;
  char *name = kite__sprintf("pip %s", words);
  free(words);
  free(py);
  free(links);
  free(flags);
  return add(b, (kite__step_t){.kind = KITE__STEP_PIP, .name = name, .body = body});
}

int kite_bootstrap_env(kite_bootstrap_t *b, const char *name, const char *value, bool secret) {
  if (b == NULL || !(name && kite__shell_name(name, strlen(name))) || value == NULL)
    return KITE_EINVAL;
  char *q = kite__shell_quote(value);
  kite__step_t st = {.kind = KITE__STEP_ENV, .name = kite__sprintf("env %s", name)};
  st.line = q ? kite__sprintf("export %s=%s", name, q) : NULL;
  st.body = st.line ? kite__sprintf("%s\n", st.line) : NULL;
  wipe_free(q);
  if (secret && (st.secret = kite__strdup(value)) == NULL) {
    step_free(&st);
    return KITE_ENOMEM;
  }
  return add(b, st);
}

/* content as printf's format: every byte stands for itself but \ % NUL and a leading -. */
static char *printf_format(const unsigned char *content, size_t len) {
  size_t n = 1;
  for (size_t i = 0; i < len; i++)
    n += content[i] == '\\' || content[i] == '%' ? 2 : content[i] == '\0' ? 4 : 1;
  char *out = malloc(n + 3), *o = out;
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = content[i];
    if (c == '\\' || c == '%') {
      *o++ = (char)c;
      *o++ = (char)c;
    } else if (c == '\0' || (i == 0 && c == '-')) {
      o += sprintf(o, "\\%03o", c);
    } else {
      *o++ = (char)c;
    }
  }
  *o = '\0';
  return out;
}

int kite_bootstrap_file(kite_bootstrap_t *b, const char *path, const void *content, size_t len,
                        int mode) {
  if (b == NULL || path == NULL || *path == '\0' || path[strlen(path) - 1] == '/' ||
      (content == NULL && len) || mode < 0 || mode > 07777)
    return KITE_EINVAL;
  char *fmt = printf_format(content, len);
  char *qf = fmt ? kite__shell_quote(fmt) : NULL;
  /* A relative path is written "./path" so that no word starts with a dash. */
  char *full = path[0] == '/' ? kite__strdup(path) : kite__sprintf("./%s", path);
  char *qp = full ? kite__shell_quote(full) : NULL;
  free(fmt);
  free(full);
  /* The temporary file is private (umask 077) until it has its mode, then renamed over the
   * target: a reader sees the old file or the new one, never a part. */
  char *body = qf && qp ? kite__sprintf(
      "p=%s\n"
      "if [ -d \"$p\" ]; then printf 'kite: %%s is a directory\\n' \"$p\" >&2; exit 1; fi\n"
      "d=${p%%/*}\n"
      "[ -n \"$d\" ] || d=/\n"
      "mkdir -p -- \"$d\"\n"
      "t=\"$d/.kite-tmp.$$\"\n"
      "umask 077\n"
      "printf %s > \"$t\"\n"
      "chmod %o \"$t\"\n"
      "mv -f -- \"$t\" \"$p\"\n",
      qp, qf, (unsigned)mode) : NULL;
  free(qf);
  free(qp);
  char *name = kite__sprintf("file %s", path);
  return add(b, (kite__step_t){.kind = KITE__STEP_FILE, .name = name, .body = body});
}

int kite_bootstrap_run(kite_bootstrap_t *b, const char *name, const char *script) {
  if (b == NULL || name == NULL || script == NULL)
    return KITE_EINVAL;
  /* Its own shell: any text is a valid step, whatever its quoting or syntax, and an exit or
   * a cd inside it ends there. */
  char *q = kite__shell_quote(script);
  char *body = q ? kite__sprintf("/bin/sh -e -c %s\n", q) : NULL;
  free(q);
  return add(b, (kite__step_t){.kind = KITE__STEP_RUN, .name = kite__strdup(name),
                               .body = body});
}

int kite_bootstrap_checkpoint(kite_bootstrap_t *b, const char *name) {
  if (b == NULL || name == NULL)
    return KITE_EINVAL;
  return add(b, (kite__step_t){.kind = KITE__STEP_CHECKPOINT, .name = kite__strdup(name),
                               .body = kite__strdup(":\n")});
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
