/* Shell quoting: every value that reaches a shell goes through here. Single quotes keep every
 * byte literal in POSIX sh except the single quote itself, which is written as '\''. */
#include <stdio.h>

#include "kite_impl.h"

char *kite__shell_quote(const char *s) {
  if (s == NULL)
    s = "";
  size_t n = 2;
  for (const char *p = s; *p; p++)
    n += (*p == '\'') ? 4 : 1;
  char *out = malloc(n + 1);
  if (out == NULL)
    return NULL;
  char *o = out;
  *o++ = '\'';
  for (const char *p = s; *p; p++) {
    if (*p == '\'') {
      memcpy(o, "'\\''", 4);
      o += 4;
    } else {
      *o++ = *p;
    }
  }
  *o++ = '\'';
  *o = '\0';
  return out;
}

char *kite__shell_join(const char *const *argv) {
  size_t cap = 1, len = 0;
  char *out = malloc(cap);
  if (out == NULL)
    return NULL;
  out[0] = '\0';
  for (size_t i = 0; argv && argv[i]; i++) {
    char *q = kite__shell_quote(argv[i]);
    if (q == NULL) {
      free(out);
      return NULL;
    }
    size_t ql = strlen(q);
    char *grown = realloc(out, cap + ql + 1);
    if (grown == NULL) {
      free(q);
      free(out);
      return NULL;
    }
    out = grown;
    cap += ql + 1;
    if (len > 0)
      out[len++] = ' ';
    memcpy(out + len, q, ql);
    len += ql;
    out[len] = '\0';
    free(q);
  }
  return out;
}

bool kite__shell_name(const char *s, size_t n) {
  if (s == NULL || n == 0 || !(*s == '_' || (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
    return false;
  for (size_t i = 1; i < n; i++)
    if (!(s[i] == '_' || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= '0' && s[i] <= '9')))
      return false;
  return true;
}
