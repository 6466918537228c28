/* Small helpers shared by kite's files: strings, files, clocks, ids. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kite_impl.h"

_Thread_local bool kite__hash_oom;

char *kite__strdup(const char *s) {
  return s ? strdup(s) : NULL;
}

char *kite__sprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *out = NULL;
  int n = vasprintf(&out, fmt, ap);
  va_end(ap);
  return n < 0 ? NULL : out;
}

int kite__mkdir_p(const char *path, int mode) {
  char *p = kite__strdup(path);
  if (p == NULL)
    return KITE_ENOMEM;
  int rc = 0;
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == '\0') {
      char c = *s;
      *s = '\0';
      if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) {
        rc = KITE_EIO;
        break;
      }
      *s = c;
      if (c == '\0')
        break;
    }
  }
  free(p);
  return rc;
}

int kite__write_file(const char *path, const void *data, size_t len, int mode) {
  char *tmp = kite__sprintf("%s.tmp.%ld", path, (long)getpid());
  if (tmp == NULL)
    return KITE_ENOMEM;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
  if (fd < 0) {
    free(tmp);
    return errno == ENOENT ? KITE_ENOENT : KITE_EIO;
  }
  int rc = 0;
  const char *p = data;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      rc = KITE_EIO;
      break;
    }
    p += w;
    len -= (size_t)w;
  }
  if (rc == 0 && fchmod(fd, (mode_t)mode) != 0)
    rc = KITE_EIO;
  if (close(fd) != 0 && rc == 0)
    rc = KITE_EIO;
  if (rc == 0 && rename(tmp, path) != 0)
    rc = KITE_EIO;
  if (rc != 0)
    unlink(tmp);
  free(tmp);
  return rc;
}

int kite__read_file(const char *path, char **out, size_t *len) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return errno == ENOENT ? KITE_ENOENT : KITE_EIO;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  int rc = 0;
  while (buf) {
    if (n + 1 >= cap) {
      char *g = realloc(buf, cap * 2);
      if (g == NULL) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = g;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, cap - n - 1, f);
    n += r;
    if (r == 0) {
      if (ferror(f))
        rc = KITE_EIO;
      break;
    }
  }
  fclose(f);
  if (buf == NULL)
    return KITE_ENOMEM;
  if (rc != 0) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  if (len)
    *len = n;
  return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

int kite__rm_rf(const char *path) {
  if (nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
    return KITE_EIO;
  return 0;
}

uint64_t kite__wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t kite__next_id(void) {
  static uint64_t next;
  return ++next;
}

void kite__fingerprint(const char *prefix, const char *value, char out[17]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  bool ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
            EVP_DigestUpdate(c, prefix, strlen(prefix)) && EVP_DigestUpdate(c, ":", 1) &&
            EVP_DigestUpdate(c, value, strlen(value)) && EVP_DigestFinal_ex(c, md, &len);
  EVP_MD_CTX_free(c);
  if (!ok || len < 8) {
    strcpy(out, "unknown");
    return;
  }
  for (unsigned i = 0; i < 8; i++)
    snprintf(out + 2 * i, 3, "%02x", md[i]);
}

char *kite__json_str(const char *json, const char *key) {
  if (json == NULL)
    return NULL;
  json_error_t e;
  json_t *j = json_loads(json, 0, &e);
  char *v = kite__strdup(json_string_value(json_object_get(j, key)));
  json_decref(j);
  return v;
}

/* Edit distance counting a swap of two neighbours as one edit (optimal string alignment),
 * since "rnu" for "run" is one slip of the fingers. */
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return SIZE_MAX;
  size_t d[65][65];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      size_t best = d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      if (d[i - 1][j] + 1 < best)
        best = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < best)
        best = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < best)
        best = d[i - 2][j - 2] + 1;
      d[i][j] = best;
    }
  return d[la][lb];
}

const char *kite__closest(const char *key, const char *const *keys, size_t nkeys) {
  /* A different case is the likeliest slip of all ("Foo" for "foo"). */
  for (size_t i = 0; i < nkeys; i++)
    if (strcasecmp(key, keys[i]) == 0)
      return keys[i];
  size_t len = strlen(key);
  size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
  const char *best = NULL;
  size_t best_d = SIZE_MAX;
  for (size_t i = 0; i < nkeys; i++) {
    size_t d = edit_distance(key, keys[i]);
    if (d < best_d) {
      best_d = d;
      best = keys[i];
    }
  }
  return best_d <= limit ? best : NULL;
}
