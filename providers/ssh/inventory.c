/* The ssh provider's inventory: machines the user already has, written "[user@]host[:port]"
 * (IPv6 as "[::1]:22", or bare "::1" with the default port), resolved through the user's
 * ~/.ssh/config for HostName, User, Port and IdentityFile the way ssh(1) does: the first
 * value found for a keyword wins, Host patterns may use * and ? and !negation. */

#include <fnmatch.h>
#include <pwd.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>

#include "ssh_provider_impl.h"

void kite__ssh_host_clear(kite__ssh_host_t *h) {
  free(h->alias);
  free(h->hostname);
  free(h->user);
  free(h->key);
  memset(h, 0, sizeof(*h));
}

static const char *home_dir(void) {
  const char *h = getenv("HOME");
  if (h && *h)
    return h;
  struct passwd *pw = getpwuid(getuid());
  return pw ? pw->pw_dir : "/";
}

char *kite__ssh_expand_home(const char *path) {
  if (path && path[0] == '~' && (path[1] == '/' || path[1] == '\0'))
    return kite__sprintf("%s%s", home_dir(), path + 1);
  return kite__strdup(path);
}

int kite__ssh_parse_entry(const char *entry, kite__ssh_host_t *out) {
  memset(out, 0, sizeof(*out));
  if (entry == NULL || *entry == '\0' || strlen(entry) > 512)
    return KITE_EINVAL;
  const char *at = strrchr(entry, '@');
  const char *host = entry;
  if (at) {
    if (at == entry)
      return KITE_EINVAL;
    out->user = kite__sprintf("%.*s", (int)(at - entry), entry);
    host = at + 1;
  }
  const char *end = NULL;
  if (host[0] == '[') {
    const char *close = strchr(host, ']');
    if (close == NULL || close == host + 1)
      goto bad;
    out->alias = kite__sprintf("%.*s", (int)(close - host - 1), host + 1);
    end = close + 1;
    if (*end == ':') {
      char *stop = NULL;
      long p = strtol(end + 1, &stop, 10);
      if (stop == end + 1 || *stop != '\0' || p < 1 || p > 65535)
        goto bad;
      out->port = (unsigned)p;
    } else if (*end != '\0') {
      goto bad;
    }
  } else {
    const char *colon = strchr(host, ':');
    if (colon && strchr(colon + 1, ':')) {
      out->alias = kite__strdup(host); /* a bare IPv6 address: no port */
    } else if (colon) {
      char *stop = NULL;
      long p = strtol(colon + 1, &stop, 10);
      if (colon == host || stop == colon + 1 || *stop != '\0' || p < 1 || p > 65535)
        goto bad;
      out->alias = kite__sprintf("%.*s", (int)(colon - host), host);
      out->port = (unsigned)p;
    } else {
      out->alias = kite__strdup(host);
    }
  }
  if (out->alias == NULL || *out->alias == '\0' || (at && out->user == NULL))
    goto bad;
  for (const char *c = out->alias; *c; c++)
    if (*c == ' ' || *c == '\t' || *c == '/' || *c == '\'' || *c == '"')
      goto bad;
  return 0;
bad:
  kite__ssh_host_clear(out);
  return KITE_EINVAL;
}

/* Whether alias matches a Host line's pattern list (any positive match and no negated one). */
static bool host_line_matches(char *patterns, const char *alias) {
  bool yes = false;
  for (char *p = strtok(patterns, " \t"); p; p = strtok(NULL, " \t")) {
    bool neg = p[0] == '!';
    if (fnmatch(neg ? p + 1 : p, alias, FNM_CASEFOLD) == 0) {
      if (neg)
        return false;
      yes = true;
    }
  }
  return yes;
}

int kite__ssh_apply_config(const char *config_path, kite__ssh_host_t *h) {
  char *path = kite__ssh_expand_home(config_path ? config_path : "~/.ssh/config");
  char *text = NULL;
  if (path == NULL)
    return KITE_ENOMEM;
  int rc = kite__read_file(path, &text, NULL);
  free(path);
  if (rc != 0)
    return config_path ? rc : 0; /* no ~/.ssh/config is normal; a named one must exist */
  bool active = true; /* lines before any Host apply to every host */
  unsigned port = 0;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    while (*line == ' ' || *line == '\t')
      line++;
    if (*line == '#' || *line == '\0')
      continue;
    size_t kl = strcspn(line, " \t=");
    char *val = line + kl;
    while (*val == ' ' || *val == '\t' || *val == '=')
      val++;
    char *e = val + strlen(val);
    while (e > val && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
      *--e = '\0';
    if (e > val + 1 && val[0] == '"' && e[-1] == '"') {
      val++;
      e[-1] = '\0';
    }
    line[kl] = '\0';
    if (strcasecmp(line, "Host") == 0) {
      active = host_line_matches(val, h->alias);
    } else if (strcasecmp(line, "Match") == 0) {
      active = false; /* Match blocks are not interpreted: never applied */
    } else if (!active) {
      continue;
    } else if (strcasecmp(line, "HostName") == 0 && h->hostname == NULL) {
      h->hostname = kite__strdup(val);
    } else if (strcasecmp(line, "User") == 0 && h->user == NULL) {
      h->user = kite__strdup(val);
    } else if (strcasecmp(line, "Port") == 0 && port == 0) {
      long p = strtol(val, NULL, 10);
      port = p > 0 && p <= 65535 ? (unsigned)p : 0;
    } else if (strcasecmp(line, "IdentityFile") == 0 && h->key == NULL) {
      h->key = kite__ssh_expand_home(val);
    }
  }
  if (h->port == 0)
    h->port = port;
  free(text);
  return 0;
}
