/* Host key verification: a key pinned by the provider at launch, else the known_hosts file
 * (strict: must be there; accept-new: recorded on first use); a changed key is always
 * refused. */

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <strings.h>
#include <sys/file.h>
#include <unistd.h>

#include "transport_impl.h"

static const char *key_type_name(int type) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA:
    return "ssh-rsa";
  case LIBSSH2_HOSTKEY_TYPE_DSS:
    return "ssh-dss";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
    return "ecdsa-sha2-nistp256";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
    return "ecdsa-sha2-nistp384";
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
    return "ecdsa-sha2-nistp521";
  case LIBSSH2_HOSTKEY_TYPE_ED25519:
    return "ssh-ed25519";
  default:
    return NULL;
  }
}

static int key_type_mask(int type) {
  switch (type) {
  case LIBSSH2_HOSTKEY_TYPE_RSA:
    return LIBSSH2_KNOWNHOST_KEY_SSHRSA;
  case LIBSSH2_HOSTKEY_TYPE_DSS:
    return LIBSSH2_KNOWNHOST_KEY_SSHDSS;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_256;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_384;
  case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
    return LIBSSH2_KNOWNHOST_KEY_ECDSA_521;
  case LIBSSH2_HOSTKEY_TYPE_ED25519:
    return LIBSSH2_KNOWNHOST_KEY_ED25519;
  default:
    return LIBSSH2_KNOWNHOST_KEY_UNKNOWN;
  }
}

static char *b64(const unsigned char *in, size_t len) {
  char *out = malloc(4 * ((len + 2) / 3) + 1);
  if (out)
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
  return out;
}

char *kite__ssh_server_key(LIBSSH2_SESSION *ss, int *rc) {
  size_t len = 0;
  int type = 0;
  const char *raw = libssh2_session_hostkey(ss, &len, &type);
  const char *name = key_type_name(type);
  *rc = raw == NULL || name == NULL ? KITE_EHOSTKEY : 0;
  if (*rc != 0)
    return NULL;
  char *enc = b64((const unsigned char *)raw, len);
  char *out = enc ? kite__sprintf("%s %s", name, enc) : NULL;
  free(enc);
  if (out == NULL)
    *rc = KITE_ENOMEM;
  return out;
}

/* "SHA256:…" as ssh-keygen -l prints it (base64 without padding). */
static void fingerprint(kite_ssh_t *s, char *buf, size_t size) {
  const unsigned char *h =
      (const unsigned char *)libssh2_hostkey_hash(s->ss, LIBSSH2_HOSTKEY_HASH_SHA256);
  char *enc = h ? b64(h, 32) : NULL;
  if (enc) {
    size_t l = strlen(enc);
    while (l && enc[l - 1] == '=')
      enc[--l] = '\0';
  }
  snprintf(buf, size, "SHA256:%s", enc ? enc : "?");
  free(enc);
}

/* Whether two "TYPE BASE64 [comment]" keys are the same key. */
static bool same_key(const char *a, const char *b) {
  size_t la = strcspn(a, " \n");
  size_t lb = strcspn(b, " \n");
  if (la != lb || memcmp(a, b, la) != 0 || a[la] != ' ' || b[lb] != ' ')
    return false;
  a += la + 1;
  b += lb + 1;
  la = strcspn(a, " \n");
  lb = strcspn(b, " \n");
  return la == lb && memcmp(a, b, la) == 0;
}

/* known_hosts names a host on a port other than 22 as "[host]:port". */
static char *host_pattern(const kite_ssh_t *s) {
  return s->port == 22 ? kite__strdup(s->host) : kite__sprintf("[%s]:%u", s->host, s->port);
}

static int record_key(kite_ssh_t *s) {
  char *pattern = host_pattern(s);
  char *line = pattern ? kite__sprintf("%s %s\n", pattern, s->server_key) : NULL;
  free(pattern);
  if (line == NULL)
    return KITE_ENOMEM;
  int fd = open(s->known_hosts, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  int rc = 0;
  if (fd < 0) {
    rc = KITE_EIO;
  } else {
    /* Appends from parallel processes must not interleave. */
    flock(fd, LOCK_EX);
    size_t len = strlen(line);
    if (write(fd, line, len) != (ssize_t)len)
      rc = KITE_EIO;
    fchmod(fd, 0600);
    close(fd);
  }
  if (rc != 0)
    snprintf(s->errmsg, sizeof(s->errmsg), "cannot record the host key of %s:%u in %s: %s", s->host,
             s->port, s->known_hosts, strerror(errno));
  free(line);
  return rc;
}

/* Whether key is one of the newline-separated keys of pinned. */
static bool pinned_match(const char *pinned, const char *key) {
  for (const char *line = pinned; line && *line;) {
    if (same_key(line, key))
      return true;
    line = strchr(line, '\n');
    if (line)
      line++;
  }
  return false;
}

int kite__ssh_verify_hostkey(kite_ssh_t *s) {
  char fp[80];
  if (s->server_key == NULL) {
    snprintf(s->errmsg, sizeof(s->errmsg),
             "%s:%u presented a host key of a type kite does not know", s->host, s->port);
    return KITE_EHOSTKEY;
  }
  fingerprint(s, fp, sizeof(fp));
  if (s->host_key) {
    if (pinned_match(s->host_key, s->server_key))
      return 0;
    snprintf(s->errmsg, sizeof(s->errmsg),
             "host key of %s:%u (%.*s %s) does not match the key its provider pinned at launch; "
             "refusing to connect: the address may now belong to another machine, or someone is "
             "in between",
             s->host, s->port, (int)strcspn(s->server_key, " "), s->server_key, fp);
    return KITE_EHOSTKEY;
  }
  if (s->mode == KITE_HOSTKEY_OFF) {
    kite_log(s->rt, KITE_LOG_WARN, "transport",
             "host key of %s:%u (%s) NOT verified: host key checking is off", s->host, s->port, fp);
    return 0;
  }
  size_t len = 0;
  int type = 0;
  const char *raw = libssh2_session_hostkey(s->ss, &len, &type);
  LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->ss);
  if (kh == NULL)
    return KITE_ENOMEM;
  if (access(s->known_hosts, F_OK) == 0 &&
      libssh2_knownhost_readfile(kh, s->known_hosts, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
    snprintf(s->errmsg, sizeof(s->errmsg), "cannot read %s: %s; fix or remove the file",
             s->known_hosts, kite__ssh_lasterr(s));
    libssh2_knownhost_free(kh);
    return KITE_EHOSTKEY;
  }
  int check = libssh2_knownhost_checkp(
      kh, s->host, (int)s->port, raw, len,
      LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW | key_type_mask(type), NULL);
  libssh2_knownhost_free(kh);
  char *pattern = host_pattern(s);
  int rc = 0;
  switch (check) {
  case LIBSSH2_KNOWNHOST_CHECK_MATCH:
    break;
  case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
    snprintf(s->errmsg, sizeof(s->errmsg),
             "host key of %s:%u CHANGED (now %s) and differs from the one in %s; refusing to "
             "connect. If the host was legitimately reinstalled, remove its old key with: "
             "ssh-keygen -R '%s' -f %s",
             s->host, s->port, fp, s->known_hosts, pattern ? pattern : s->host, s->known_hosts);
    rc = KITE_EHOSTKEY;
    break;
  case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
    if (s->mode == KITE_HOSTKEY_ACCEPT_NEW) {
      rc = record_key(s);
      if (rc == 0)
        kite_log(s->rt, KITE_LOG_INFO, "transport", "recorded new host key of %s:%u (%s) in %s",
                 s->host, s->port, fp, s->known_hosts);
    } else {
      snprintf(s->errmsg, sizeof(s->errmsg),
               "host key of %s:%u (%s) is unknown: no key was pinned at launch and %s has none "
               "for it; add it there, or connect with host key mode accept-new",
               s->host, s->port, fp, s->known_hosts);
      rc = KITE_EHOSTKEY;
    }
    break;
  default:
    snprintf(s->errmsg, sizeof(s->errmsg), "cannot check the host key of %s:%u against %s: %s",
             s->host, s->port, s->known_hosts, kite__ssh_lasterr(s));
    rc = KITE_EHOSTKEY;
  }
  free(pattern);
  return rc;
}

int kite_hostkey_mode_parse(const char *s) {
  if (s == NULL)
    return -1;
  if (strcmp(s, "strict") == 0)
    return KITE_HOSTKEY_STRICT;
  if (strcmp(s, "accept-new") == 0)
    return KITE_HOSTKEY_ACCEPT_NEW;
  if (strcmp(s, "off") == 0)
    return KITE_HOSTKEY_OFF;
  return -1;
}

const char *kite_hostkey_mode_name(kite_hostkey_mode_t m) {
  switch (m) {
  case KITE_HOSTKEY_STRICT:
    return "strict";
  case KITE_HOSTKEY_ACCEPT_NEW:
    return "accept-new";
  case KITE_HOSTKEY_OFF:
    return "off";
  }
  return "?";
}

/* ---- reading a known_hosts file for keys ------------------------------------------------ */

static size_t b64_decode(const char *in, size_t len, unsigned char *out, size_t cap) {
  if (len == 0 || len % 4 != 0 || len / 4 * 3 > cap)
    return 0;
  int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
  if (n < 0)
    return 0;
  size_t pad = (in[len - 1] == '=') + (len > 1 && in[len - 2] == '=');
  return (size_t)n - pad;
}

/* One host pattern of a known_hosts line against the host's name in that file's form. */
static bool pattern_matches(const char *pat, size_t plen, const char *name) {
  if (plen > 3 && memcmp(pat, "|1|", 3) == 0) {
    const char *salt = pat + 3;
    const char *bar = memchr(salt, '|', plen - 3);
    if (bar == NULL)
      return false;
    unsigned char key[64], want[64], got[EVP_MAX_MD_SIZE];
    size_t kl = b64_decode(salt, (size_t)(bar - salt), key, sizeof(key));
    size_t wl = b64_decode(bar + 1, plen - (size_t)(bar + 1 - pat), want, sizeof(want));
    unsigned gl = 0;
    if (kl == 0 || wl != 20 ||
        HMAC(EVP_sha1(), key, (int)kl, (const unsigned char *)name, strlen(name), got, &gl) == NULL)
      return false;
    return gl == 20 && CRYPTO_memcmp(got, want, 20) == 0;
  }
  return strlen(name) == plen && strncasecmp(pat, name, plen) == 0;
}

char *kite_known_hosts_keys(const char *path, const char *host, unsigned port) {
  if (path == NULL || host == NULL)
    return NULL;
  char *text = NULL;
  if (kite__read_file(path, &text, NULL) != 0)
    return NULL;
  char *name = port == 0 || port == 22 ? kite__strdup(host) : kite__sprintf("[%s]:%u", host, port);
  char *out = NULL;
  size_t out_len = 0;
  for (char *line = text, *next; name && line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    while (*line == ' ' || *line == '\t')
      line++;
    if (*line == '#' || *line == '@' || *line == '\0')
      continue; /* comments; @cert-authority and @revoked lines pin nothing */
    char *hosts = strtok(line, " \t");
    char *type = strtok(NULL, " \t");
    char *blob = strtok(NULL, " \t\r");
    if (hosts == NULL || type == NULL || blob == NULL)
      continue;
    bool match = false;
    for (char *p = hosts; *p && !match;) {
      size_t l = strcspn(p, ",");
      match = p[0] != '!' && memchr(p, '*', l) == NULL && memchr(p, '?', l) == NULL &&
              pattern_matches(p, l, name);
      p += l + (p[l] == ',');
    }
    if (!match)
      continue;
    size_t add = strlen(type) + 1 + strlen(blob) + 1;
    char *g = realloc(out, out_len + add + 1);
    if (g == NULL)
      break;
    out = g;
    out_len += (size_t)sprintf(out + out_len, "%s%s %s", out_len ? "\n" : "", type, blob);
  }
  free(name);
  free(text);
  return out;
}
