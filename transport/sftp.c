/* File transfers: SFTP uploads and downloads of a file or a directory tree, streamed through
 * one fixed buffer (constant memory whatever the size), each file written under a temporary
 * name and renamed into place, mode bits kept. kite_ssh_write() puts a string on the node
 * atomically through an exec channel (cat into a temporary file, then mv). */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "transport_impl.h"

#define BUF_SIZE (256 * 1024)
#define PROGRESS_EVERY_MS 200

typedef struct item {
  char *local, *remote;
  bool dir;
  int mode;
} item_t;

enum {
  P_START,
  P_STAT,    /* download: what is the remote root? */
  P_NEXT,    /* take the next item */
  P_MKDIR,   /* upload: remote mkdir */
  P_OPENDIR, /* download: list a remote directory */
  P_READDIR,
  P_CLOSEDIR,
  P_OPEN,
  P_DATA,
  P_CLOSE,
  P_SETSTAT,
  P_RENAME,
  P_UNLINK_OLD, /* SFTP v3 rename does not overwrite: remove the old file, rename again */
  P_RENAME2,
  P_FAIL_CLOSE,  /* after an error: close the handle … */
  P_FAIL_UNLINK, /* … and remove the temporary file */
  P_DONE,
};

struct kite_xfer {
  ssh_op_t op;
  bool upload;
  bool single_file;
  bool sftp_user;
  item_t *items;
  size_t n, cap, i;
  char *root_local, *root_remote;
  int mode_override;
  int phase;
  LIBSSH2_SFTP_HANDLE *h;
  int fd;
  char *tmp;
  char *buf;
  size_t blen, boff;
  bool eof;
  uint64_t done, total, last_progress;
  int error;
  char *msg;
  bool canceled;
  kite_xfer_progress_cb progress;
  kite_xfer_done_cb done_cb;
  void *data;
  kite_exec_t *x; /* kite_ssh_write */
  char *x_err;
  size_t x_err_len;
};

/* A transfer that ends with its remote file or directory still open (it failed, or its
 * session went): the handle is closed here. libssh2 (1.10) frees a handle, and the writes
 * queued on it, only in its close, which frees it when the close cannot be sent too; its SFTP
 * shutdown leaves open handles behind. The session is alive until every op has ended, so the
 * handle is still valid. A close that would block on a live session is given a few turns; one
 * that still would is left to libssh2. */
static void close_open_handle(kite_xfer_t *t) {
  for (int i = 0; t->h && i < 8; i++)
    if (libssh2_sftp_close_handle(t->h) != LIBSSH2_ERROR_EAGAIN)
      t->h = NULL;
  t->h = NULL;
}

static void xfer_free(kite_xfer_t *t) {
  close_open_handle(t);
  for (size_t i = 0; i < t->n; i++) {
    free(t->items[i].local);
    free(t->items[i].remote);
  }
  free(t->items);
  free(t->root_local);
  free(t->root_remote);
  if (t->fd >= 0)
    close(t->fd);
  free(t->tmp);
  free(t->buf);
  free(t->msg);
  free(t->x_err);
  free(t);
}

static void finish(kite_xfer_t *t, int error, const char *message) {
  if (t->sftp_user)
    t->op.s->sftp_users--;
  if (t->canceled && error == 0)
    error = KITE_ECANCELED;
  if (t->done_cb)
    t->done_cb(t, error, t->done, message, t->data);
  xfer_free(t);
}

static void xfer_fail(ssh_op_t *op, int error, const char *message) {
  kite_xfer_t *t = container_of(op, kite_xfer_t, op);
  if (t->fd >= 0 && !t->upload && t->tmp)
    unlink(t->tmp);
  finish(t, error, message);
}

static int add_item(kite_xfer_t *t, const char *local, const char *remote, bool dir, int mode) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 16;
    item_t *g = realloc(t->items, cap * sizeof(*g));
    if (g == NULL)
      return KITE_ENOMEM;
    t->items = g;
    t->cap = cap;
  }
  item_t *it = &t->items[t->n];
  it->local = kite__strdup(local);
  it->remote = kite__strdup(remote);
  it->dir = dir;
  it->mode = mode;
  if (it->local == NULL || it->remote == NULL) {
    free(it->local);
    free(it->remote);
    return KITE_ENOMEM;
  }
  t->n++;
  return 0;
}

/* Walks a local tree into items (directories before their contents). */
static int walk_local(kite_xfer_t *t, const char *local, const char *remote) {
  struct stat st;
  if (stat(local, &st) != 0)
    return -errno;
  if (S_ISREG(st.st_mode)) {
    t->total += (uint64_t)st.st_size;
    return add_item(t, local, remote, false, (int)(st.st_mode & 07777));
  }
  if (!S_ISDIR(st.st_mode))
    return 0; /* sockets, devices: not copied */
  int rc = add_item(t, local, remote, true, (int)(st.st_mode & 07777));
  DIR *d = rc == 0 ? opendir(local) : NULL;
  if (rc == 0 && d == NULL)
    return -errno;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    char *l = kite__sprintf("%s/%s", local, e->d_name);
    char *r = kite__sprintf("%s/%s", remote, e->d_name);
    rc = l && r ? walk_local(t, l, r) : KITE_ENOMEM;
    free(l);
    free(r);
  }
  if (d)
    closedir(d);
  return rc;
}

static char *tmp_name(const char *path) {
  const char *slash = strrchr(path, '/');
  size_t dir = slash ? (size_t)(slash - path + 1) : 0;
  return kite__sprintf("%.*s.%s.kite-tmp-%llx", (int)dir, path, path + dir,
                       (unsigned long long)kite__next_id());
}

static void progress(kite_xfer_t *t, bool force) {
  uint64_t now = uv_now(t->op.s->loop);
  if (t->progress && (force || now - t->last_progress >= PROGRESS_EVERY_MS)) {
    t->last_progress = now;
    t->progress(t, t->done, t->total, t->data);
  }
}

/* Records an error and moves to the cleanup of the current file. */
static void set_error(kite_xfer_t *t, int error, const char *fmt, const char *path) {
  if (t->error == 0) {
    t->error = error;
    t->msg = kite__sprintf(fmt, path, t->op.s->host, t->op.s->port,
                           error == KITE_EIO ? strerror(errno) : kite__ssh_lasterr(t->op.s));
  }
  t->phase = t->h ? P_FAIL_CLOSE : P_FAIL_UNLINK;
}

static unsigned long sftp_err(kite_xfer_t *t) {
  return libssh2_sftp_last_error(t->op.s->sftp);
}

static int xfer_step(ssh_op_t *op) {
  kite_xfer_t *t = container_of(op, kite_xfer_t, op);
  kite_ssh_t *s = op->s;
  LIBSSH2_SFTP *sftp = NULL;
  int rc;
  if (t->canceled && t->error == 0) {
    t->error = KITE_ECANCELED;
    t->msg = kite__strdup("the transfer was canceled");
    t->phase = t->h ? P_FAIL_CLOSE : (t->phase == P_START ? P_DONE : P_FAIL_UNLINK);
  }
  if (t->phase != P_DONE) {
    rc = kite__ssh_sftp(s, &sftp);
    if (rc == 0)
      return 0;
    if (rc < 0) {
      if (kite__ssh_fatal(rc))
        return rc;
      kite__ssh_remove_op(s, op);
      char *m =
          kite__sprintf("cannot start SFTP on %s:%u: %s", s->host, s->port, kite__ssh_lasterr(s));
      finish(t, KITE_ESFTP, m);
      free(m);
      return 1;
    }
    if (!t->sftp_user) {
      t->sftp_user = true;
      s->sftp_users++;
    }
  }
  for (;;) {
    switch (t->phase) {
    case P_START:
      t->phase = t->upload ? P_NEXT : P_STAT;
      break;
    case P_STAT: {
      LIBSSH2_SFTP_ATTRIBUTES a;
      rc = libssh2_sftp_stat_ex(sftp, t->root_remote, (unsigned)strlen(t->root_remote),
                                LIBSSH2_SFTP_STAT, &a);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc != 0) {
        if (kite__ssh_fatal(rc))
          return rc;
        set_error(t, KITE_ENOENT, "cannot read %s on %s:%u: %s", t->root_remote);
        break;
      }
      bool dir = LIBSSH2_SFTP_S_ISDIR(a.permissions);
      if (!dir)
        t->total = a.filesize;
      if (add_item(t, t->root_local, t->root_remote, dir, (int)(a.permissions & 07777)) != 0)
        return KITE_ENOMEM; /* not fatal for libssh2, but nothing sensible remains */
      t->phase = P_NEXT;
      break;
    }
    case P_NEXT:
      if (t->i >= t->n) {
        /* Downloaded directories were made 0700 so that their contents could be written:
         * now they get their own modes, deepest first (a read-only one last of its tree). */
        for (size_t k = t->n; !t->upload && k-- > 0;)
          if (t->items[k].dir && t->items[k].mode > 0 &&
              chmod(t->items[k].local, (mode_t)(t->items[k].mode & 07777)) != 0) {
            set_error(t, KITE_EIO, "cannot set the mode of %s (from %s:%u): %s", t->items[k].local);
            break;
          }
        if (t->error == 0)
          t->phase = P_DONE;
        break;
      }
      if (t->items[t->i].dir) {
        if (t->upload) {
          t->phase = P_MKDIR;
        } else {
          if (mkdir(t->items[t->i].local, 0700) != 0 && errno != EEXIST) {
            set_error(t, KITE_EIO, "cannot create %s (from %s:%u): %s", t->items[t->i].local);
            break;
          }
          t->phase = P_OPENDIR;
        }
      } else {
        t->phase = P_OPEN;
      }
      break;
    case P_MKDIR: {
      item_t *it = &t->items[t->i];
      rc = libssh2_sftp_mkdir_ex(sftp, it->remote, (unsigned)strlen(it->remote), it->mode);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc != 0 && kite__ssh_fatal(rc))
        return rc;
      /* An existing directory is fine; a real problem shows when its files are written. */
      t->i++;
      t->phase = P_NEXT;
      break;
    }
    case P_OPENDIR: {
      item_t *it = &t->items[t->i];
      t->h = libssh2_sftp_open_ex(sftp, it->remote, (unsigned)strlen(it->remote), 0, 0,
                                  LIBSSH2_SFTP_OPENDIR);
      if (t->h == NULL) {
        rc = libssh2_session_last_errno(s->ss);
        if (rc == LIBSSH2_ERROR_EAGAIN)
          return 0;
        if (kite__ssh_fatal(rc))
          return rc;
        set_error(t, KITE_ESFTP, "cannot list %s on %s:%u: %s", it->remote);
        break;
      }
      t->phase = P_READDIR;
      break;
    }
    case P_READDIR: {
      char name[512];
      LIBSSH2_SFTP_ATTRIBUTES a;
      rc = libssh2_sftp_readdir_ex(t->h, name, sizeof(name), NULL, 0, &a);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc < 0) {
        if (kite__ssh_fatal(rc))
          return rc;
        set_error(t, KITE_ESFTP, "cannot list %s on %s:%u: %s", t->items[t->i].remote);
        break;
      }
      if (rc == 0) {
        t->phase = P_CLOSEDIR;
        break;
      }
      if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        break;
      bool dir = LIBSSH2_SFTP_S_ISDIR(a.permissions);
      if (!dir && !LIBSSH2_SFTP_S_ISREG(a.permissions))
        break;
      item_t *it = &t->items[t->i];
      char *l = kite__sprintf("%s/%s", it->local, name);
      char *r = kite__sprintf("%s/%s", it->remote, name);
      if (l == NULL || r == NULL || add_item(t, l, r, dir, (int)(a.permissions & 07777)) != 0) {
        free(l);
        free(r);
        return KITE_ENOMEM;
      }
      free(l);
      free(r);
      if (!dir)
        t->total += a.filesize;
      break;
    }
    case P_CLOSEDIR:
      rc = libssh2_sftp_close_handle(t->h);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      t->h = NULL;
      t->i++;
      t->phase = P_NEXT;
      break;
    case P_OPEN: {
      item_t *it = &t->items[t->i];
      if (t->tmp == NULL) {
        t->tmp = tmp_name(t->upload ? it->remote : it->local);
        if (t->tmp == NULL)
          return KITE_ENOMEM;
        int mode = t->mode_override >= 0 && t->single_file ? t->mode_override : it->mode;
        it->mode = mode;
        t->fd = t->upload ? open(it->local, O_RDONLY | O_CLOEXEC)
                          : open(t->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (t->fd < 0) {
          set_error(t, KITE_EIO, "cannot open %s (for %s:%u): %s", t->upload ? it->local : t->tmp);
          break;
        }
        t->blen = t->boff = 0;
        t->eof = false;
      }
      t->h = libssh2_sftp_open_ex(
          sftp, t->upload ? t->tmp : it->remote, (unsigned)strlen(t->upload ? t->tmp : it->remote),
          t->upload ? LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_TRUNC : LIBSSH2_FXF_READ,
          0600, LIBSSH2_SFTP_OPENFILE);
      if (t->h == NULL) {
        rc = libssh2_session_last_errno(s->ss);
        if (rc == LIBSSH2_ERROR_EAGAIN)
          return 0;
        if (kite__ssh_fatal(rc))
          return rc;
        set_error(t, sftp_err(t) == LIBSSH2_FX_NO_SUCH_FILE ? KITE_ENOENT : KITE_ESFTP,
                  "cannot open %s on %s:%u: %s", t->upload ? t->tmp : it->remote);
        break;
      }
      t->phase = P_DATA;
      break;
    }
    case P_DATA:
      if (t->upload) {
        if (t->boff == t->blen) {
          if (t->eof) {
            t->phase = P_CLOSE;
            break;
          }
          ssize_t n = read(t->fd, t->buf, BUF_SIZE);
          if (n < 0) {
            set_error(t, KITE_EIO, "cannot read %s (for %s:%u): %s", t->items[t->i].local);
            break;
          }
          t->blen = (size_t)n;
          t->boff = 0;
          t->eof = n == 0;
          break;
        }
        ssize_t n = libssh2_sftp_write(t->h, t->buf + t->boff, t->blen - t->boff);
        if (n == LIBSSH2_ERROR_EAGAIN)
          return 0;
        if (n < 0) {
          if (kite__ssh_fatal((int)n))
            return (int)n;
          set_error(t, KITE_ESFTP, "cannot write %s on %s:%u: %s", t->tmp);
          break;
        }
        t->boff += (size_t)n;
        t->done += (uint64_t)n;
        progress(t, false);
      } else {
        ssize_t n = libssh2_sftp_read(t->h, t->buf, BUF_SIZE);
        if (n == LIBSSH2_ERROR_EAGAIN)
          return 0;
        if (n < 0) {
          if (kite__ssh_fatal((int)n))
            return (int)n;
          set_error(t, KITE_ESFTP, "cannot read %s on %s:%u: %s", t->items[t->i].remote);
          break;
        }
        if (n == 0) {
          t->phase = P_CLOSE;
          break;
        }
        for (size_t off = 0; off < (size_t)n;) {
          ssize_t w = write(t->fd, t->buf + off, (size_t)n - off);
          if (w < 0) {
            set_error(t, KITE_EIO, "cannot write %s (from %s:%u): %s", t->tmp);
            break;
          }
          off += (size_t)w;
        }
        if (t->error)
          break;
        t->done += (uint64_t)n;
        progress(t, false);
      }
      break;
    case P_CLOSE:
      rc = libssh2_sftp_close_handle(t->h);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      t->h = NULL;
      if (t->upload) {
        t->phase = P_SETSTAT;
      } else {
        item_t *it = &t->items[t->i];
        bool ok = fchmod(t->fd, (mode_t)it->mode) == 0 && close(t->fd) == 0;
        t->fd = -1;
        if (!ok || rename(t->tmp, it->local) != 0) {
          set_error(t, KITE_EIO, "cannot put %s in place (from %s:%u): %s", it->local);
          break;
        }
        free(t->tmp);
        t->tmp = NULL;
        t->i++;
        t->phase = P_NEXT;
      }
      break;
    case P_SETSTAT: {
      LIBSSH2_SFTP_ATTRIBUTES a = {.flags = LIBSSH2_SFTP_ATTR_PERMISSIONS,
                                   .permissions = (unsigned long)t->items[t->i].mode};
      rc = libssh2_sftp_stat_ex(sftp, t->tmp, (unsigned)strlen(t->tmp), LIBSSH2_SFTP_SETSTAT, &a);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc != 0 && kite__ssh_fatal(rc))
        return rc;
      t->phase = P_RENAME;
      break;
    }
    case P_RENAME:
    case P_RENAME2: {
      item_t *it = &t->items[t->i];
      rc = libssh2_sftp_rename_ex(
          sftp, t->tmp, (unsigned)strlen(t->tmp), it->remote, (unsigned)strlen(it->remote),
          LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc != 0) {
        if (kite__ssh_fatal(rc))
          return rc;
        if (t->phase == P_RENAME) {
          t->phase = P_UNLINK_OLD;
          break;
        }
        set_error(t, KITE_ESFTP, "cannot put %s in place on %s:%u: %s", it->remote);
        break;
      }
      close(t->fd);
      t->fd = -1;
      free(t->tmp);
      t->tmp = NULL;
      t->i++;
      t->phase = P_NEXT;
      break;
    }
    case P_UNLINK_OLD: {
      item_t *it = &t->items[t->i];
      rc = libssh2_sftp_unlink_ex(sftp, it->remote, (unsigned)strlen(it->remote));
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc != 0 && kite__ssh_fatal(rc))
        return rc;
      t->phase = P_RENAME2;
      break;
    }
    case P_FAIL_CLOSE:
      rc = libssh2_sftp_close_handle(t->h);
      if (rc == LIBSSH2_ERROR_EAGAIN)
        return 0;
      if (rc != 0 && kite__ssh_fatal(rc))
        return rc;
      t->h = NULL;
      t->phase = P_FAIL_UNLINK;
      break;
    case P_FAIL_UNLINK:
      if (t->tmp && t->upload) {
        rc = libssh2_sftp_unlink_ex(sftp, t->tmp, (unsigned)strlen(t->tmp));
        if (rc == LIBSSH2_ERROR_EAGAIN)
          return 0;
        if (rc != 0 && kite__ssh_fatal(rc))
          return rc;
      } else if (t->tmp) {
        unlink(t->tmp);
      }
      t->phase = P_DONE;
      break;
    case P_DONE:
      progress(t, true);
      kite__ssh_remove_op(s, op);
      finish(t, t->error, t->msg);
      return 1;
    }
  }
}

static kite_xfer_t *xfer_new(kite_xfer_progress_cb progress_cb, kite_xfer_done_cb done,
                             void *data) {
  kite_xfer_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return NULL;
  t->fd = -1;
  t->mode_override = -1;
  t->progress = progress_cb;
  t->done_cb = done;
  t->data = data;
  t->op.step = xfer_step;
  t->op.fail = xfer_fail;
  t->buf = malloc(BUF_SIZE);
  if (t->buf == NULL) {
    free(t);
    return NULL;
  }
  return t;
}

static int check_session(kite_ssh_t *s) {
  if (s->closing || s->state != SSH_READY)
    return s->state == SSH_DEAD ? KITE_ECONNLOST : KITE_ESTATE;
  return 0;
}

int kite_ssh_upload(kite_ssh_t *s, const char *local, const char *remote, int mode,
                    kite_xfer_progress_cb progress_cb, kite_xfer_done_cb done, void *data,
                    kite_xfer_t **out) {
  if (s == NULL || local == NULL || remote == NULL || *remote == '\0')
    return KITE_EINVAL;
  int rc = check_session(s);
  if (rc != 0)
    return rc;
  kite_xfer_t *t = xfer_new(progress_cb, done, data);
  if (t == NULL)
    return KITE_ENOMEM;
  t->upload = true;
  t->mode_override = mode;
  /* The remote parents first, like mkdir -p (an existing one is fine). */
  for (const char *c = strchr(remote + 1, '/'); rc == 0 && c; c = strchr(c + 1, '/')) {
    char *parent = kite__sprintf("%.*s", (int)(c - remote), remote);
    rc = parent ? add_item(t, "", parent, true, 0755) : KITE_ENOMEM;
    free(parent);
  }
  size_t parents = t->n;
  if (rc == 0)
    rc = walk_local(t, local, remote);
  t->single_file = t->n == parents + 1 && !t->items[parents].dir;
  if (rc != 0 || t->n == parents) {
    xfer_free(t);
    return rc == 0 ? KITE_EINVAL : (rc > KITE__ERRNO_FIRST ? kite_err_from_uv(rc) : rc);
  }
  if (out)
    *out = t;
  kite__ssh_add_op(s, &t->op);
  return 0;
}

int kite_ssh_download(kite_ssh_t *s, const char *remote, const char *local,
                      kite_xfer_progress_cb progress_cb, kite_xfer_done_cb done, void *data,
                      kite_xfer_t **out) {
  if (s == NULL || local == NULL || remote == NULL || *local == '\0' || *remote == '\0')
    return KITE_EINVAL;
  int rc = check_session(s);
  if (rc != 0)
    return rc;
  kite_xfer_t *t = xfer_new(progress_cb, done, data);
  if (t == NULL)
    return KITE_ENOMEM;
  t->root_local = kite__strdup(local);
  t->root_remote = kite__strdup(remote);
  if (t->root_local == NULL || t->root_remote == NULL) {
    xfer_free(t);
    return KITE_ENOMEM;
  }
  if (out)
    *out = t;
  kite__ssh_add_op(s, &t->op);
  return 0;
}

int kite_xfer_cancel(kite_xfer_t *t) {
  if (t == NULL)
    return KITE_EINVAL;
  if (t->x)
    return kite_exec_cancel(t->x);
  t->canceled = true;
  kite__ssh_pump(t->op.s);
  return 0;
}

/* ---- kite_ssh_write: an exec with the content on stdin ------------------------------------ */

static int on_write_output(kite_exec_t *x, int stream, const void *buf, size_t len, void *data) {
  kite_xfer_t *t = data;
  (void)x;
  if (stream == 2 && t->x_err_len < 2048) {
    size_t take = len < 2048 - t->x_err_len ? len : 2048 - t->x_err_len;
    char *g = realloc(t->x_err, t->x_err_len + take + 1);
    if (g) {
      memcpy(g + t->x_err_len, buf, take);
      t->x_err_len += take;
      g[t->x_err_len] = '\0';
      t->x_err = g;
    }
  }
  return 0;
}

static void on_write_done(kite_exec_t *x, int error, int exit_status, const char *signal,
                          const char *message, void *data) {
  kite_xfer_t *t = data;
  (void)x;
  (void)signal;
  char *m = NULL;
  if (error == 0 && exit_status != 0) {
    error = KITE_EIO;
    m = kite__sprintf("cannot write %s on the node: %s", t->root_remote,
                      t->x_err ? t->x_err : "the write command failed");
  }
  if (t->done_cb)
    t->done_cb(t, error, error ? 0 : t->total, m ? m : message, t->data);
  free(m);
  xfer_free(t);
}

int kite_ssh_write(kite_ssh_t *s, const char *remote, const void *buf, size_t len, int mode,
                   kite_xfer_done_cb done, void *data, kite_xfer_t **out) {
  if (s == NULL || remote == NULL || *remote == '\0' || (buf == NULL && len) || mode < 0 ||
      mode > 07777)
    return KITE_EINVAL;
  kite_xfer_t *t = calloc(1, sizeof(*t));
  if (t == NULL)
    return KITE_ENOMEM;
  t->fd = -1;
  t->done_cb = done;
  t->data = data;
  t->total = len;
  t->root_remote = kite__strdup(remote);
  char *q = kite__shell_quote(remote);
  char *script =
      q ? kite__sprintf("umask 077; p=%s; case \"$p\" in */*) d=${p%%/*};; *) d=.;; esac; "
                        "mkdir -p -- \"$d\" && t=$(mktemp \"$d/.kite-tmp.XXXXXX\") && "
                        "{ cat > \"$t\" && chmod %o \"$t\" && mv -f -- \"$t\" \"$p\" || "
                        "{ rm -f -- \"$t\"; exit 1; }; }",
                        q, (unsigned)mode)
        : NULL;
  free(q);
  if (script == NULL || t->root_remote == NULL) {
    free(script);
    xfer_free(t);
    return KITE_ENOMEM;
  }
  kite_exec_opts_t o = {.shell = script, .stdin_data = buf, .stdin_len = len};
  int rc = kite_ssh_exec(s, &o, on_write_output, on_write_done, t, &t->x);
  free(script);
  if (rc != 0) {
    xfer_free(t);
    return rc;
  }
  if (out)
    *out = t;
  return 0;
}
