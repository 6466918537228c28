/* Counting a node's processes by the KITE_NODE_TAG=<tag> entry in their environment.
 *
 * Reads /proc/<pid>/environ of every process it may read. sshd's own processes overwrite
 * their environment block with their process title, so they are not seen here; the node's
 * first process and everything its sessions start are. A process we may not read (another
 * user's, when not root) is skipped. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "kite/local.h"
#include "kite_impl.h"
#include "local_impl.h"

/* Reads up to cap bytes of path into buf; returns the length, or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  size_t n = 0;
  while (n < cap) {
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  return (ssize_t)n;
}

static bool environ_has(const char *env, size_t len, const char *entry, size_t elen) {
  size_t i = 0;
  while (i < len) {
    const char *s = env + i;
    size_t sl = strnlen(s, len - i);
    if (sl == elen && memcmp(s, entry, elen) == 0)
      return true;
    i += sl + 1;
  }
  return false;
}

/* Calls found(pid, data) for every live process with KITE_NODE_TAG=<tag>; returns how many,
 * or a negative error. */
static int scan_tagged(const char *tag, void (*found)(long pid, void *data), void *data) {
  if (tag == NULL || *tag == '\0')
    return KITE_EINVAL;
  char *entry = kite__sprintf("KITE_NODE_TAG=%s", tag);
  if (entry == NULL)
    return KITE_ENOMEM;
  size_t elen = strlen(entry);
  enum { ENV_CAP = 256 * 1024 };
  char *buf = malloc(ENV_CAP);
  DIR *d = opendir("/proc");
  if (buf == NULL || d == NULL) {
    int rc = buf == NULL ? KITE_ENOMEM : KITE_EIO;
    free(buf);
    free(entry);
    if (d)
      closedir(d);
    return rc;
  }
  pid_t self = getpid();
  int count = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    char *end;
    long pid = strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0 || pid == self)
      continue;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/environ", pid);
    ssize_t n = read_small(path, buf, ENV_CAP);
    if (n > 0 && environ_has(buf, (size_t)n, entry, elen)) {
      count++;
      if (found)
        found(pid, data);
    }
  }
  closedir(d);
  free(buf);
  free(entry);
  return count;
}

int kite_local_count_tagged(const char *tag) {
  return scan_tagged(tag, NULL, NULL);
}

typedef struct pid_list {
  int *v;
  size_t n, cap;
  bool oom;
} pid_list_t;

static void add_pid(long pid, void *data) {
  pid_list_t *l = data;
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 16;
    int *g = realloc(l->v, cap * sizeof(*g));
    if (g == NULL) {
      l->oom = true;
      return;
    }
    l->v = g;
    l->cap = cap;
  }
  l->v[l->n++] = (int)pid;
}

int kite__local_tagged_pids(const char *tag, int **pids, size_t *n) {
  pid_list_t l = {0};
  int rc = scan_tagged(tag, add_pid, &l);
  if (rc < 0 || l.oom) {
    free(l.v);
    return rc < 0 ? rc : KITE_ENOMEM;
  }
  *pids = l.v;
  *n = l.n;
  return 0;
}
