/* kite_keypair_ensure: kite's client key pair (local nodes authorize it, clouds get it).
 *
 * Owns one small request per call: a uv_process_t running ssh-keygen when the key is missing,
 * or a zero timer when it is already there (the callback never runs inside the call). The
 * private key ends up mode 0600, the public key beside it as path.pub. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/transport.h"
#include "kite_impl.h"

typedef struct waiter {
  kite_keypair_cb cb;
  void *data;
  struct waiter *next;
} waiter_t;

typedef struct keypair_req {
  kite_runtime_t *rt;
  char *path;
  kite_keypair_cb cb;
  void *data;
  int status;
  bool generating;
  waiter_t *waiters; /* other callers of the same runtime asking for the same key meanwhile */
  struct keypair_req *next;
  uv_process_t proc;
  uv_timer_t timer;
} keypair_req_t;

/* Keys being generated (loop thread of each runtime): a second provider asking for the same
 * key while ssh-keygen runs waits for that run instead of racing it. */
static keypair_req_t *generating;

static void req_closed(uv_handle_t *h) {
  keypair_req_t *r = h->data;
  if (r->generating)
    for (keypair_req_t **pp = &generating; *pp; pp = &(*pp)->next)
      if (*pp == r) {
        *pp = r->next;
        break;
      }
  kite_keypair_cb cb = r->cb;
  kite_runtime_t *rt = r->rt;
  void *data = r->data;
  int status = r->status;
  waiter_t *w = r->waiters;
  free(r->path);
  free(r);
  cb(rt, status, data);
  while (w) {
    waiter_t *next = w->next;
    w->cb(rt, status, w->data);
    free(w);
    w = next;
  }
}

/* Frees a request whose spawn failed: its callback is never called. */
static void free_on_close(uv_handle_t *h) {
  free(h->data);
}

static int finish_key(keypair_req_t *r) {
  if (chmod(r->path, 0600) != 0) {
    kite_log(r->rt, KITE_LOG_ERROR, "keys", "cannot set mode 0600 on key %s: %s", r->path,
             strerror(errno));
    return KITE_EIO;
  }
  return 0;
}

static void on_keygen_exit(uv_process_t *p, int64_t exit_status, int term_signal) {
  keypair_req_t *r = container_of(p, keypair_req_t, proc);
  if (exit_status != 0 || term_signal != 0) {
    kite_log(r->rt, KITE_LOG_ERROR, "keys",
             "ssh-keygen could not create key %s (exit %lld, signal %d); is openssh-client "
             "installed and the directory writable?",
             r->path, (long long)exit_status, term_signal);
    r->status = KITE_EIO;
  } else {
    r->status = finish_key(r);
  }
  uv_close((uv_handle_t *)p, req_closed);
}

static void on_key_present(uv_timer_t *t) {
  keypair_req_t *r = container_of(t, keypair_req_t, timer);
  r->status = finish_key(r);
  uv_close((uv_handle_t *)t, req_closed);
}

int kite_keypair_ensure(kite_runtime_t *rt, const char *path, kite_keypair_cb cb, void *data) {
  if (rt == NULL || path == NULL || *path == '\0' || cb == NULL)
    return KITE_EINVAL;
  keypair_req_t *r = calloc(1, sizeof(*r));
  char *pub = kite__sprintf("%s.pub", path);
  char *dir_copy = kite__strdup(path);
  if (r == NULL || pub == NULL || dir_copy == NULL || (r->path = kite__strdup(path)) == NULL) {
    free(r);
    free(pub);
    free(dir_copy);
    return KITE_ENOMEM;
  }
  r->rt = rt;
  r->cb = cb;
  r->data = data;
  uv_loop_t *loop = kite_runtime_loop(rt);
  int rc = 0;

  for (keypair_req_t *g = generating; g; g = g->next)
    if (g->rt == rt && strcmp(g->path, path) == 0) {
      waiter_t *w = calloc(1, sizeof(*w));
      if (w == NULL) {
        rc = KITE_ENOMEM;
        goto fail;
      }
      w->cb = cb;
      w->data = data;
      w->next = g->waiters;
      g->waiters = w;
      free(r->path);
      free(r);
      free(pub);
      free(dir_copy);
      return 0;
    }
  struct stat st;
  bool have_priv = stat(path, &st) == 0;
  bool have_pub = stat(pub, &st) == 0;
  if (have_priv && have_pub) {
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_key_present, 0, 0);
    goto out;
  }
  if (have_priv) {
    /* A private key without its public half: refuse rather than guess. */
    kite_log(rt, KITE_LOG_ERROR, "keys",
             "key %s exists but %s does not; recreate it with ssh-keygen -y -f %s > %s", path, pub,
             path, pub);
    rc = KITE_EEXIST;
    goto fail;
  }
  /* ssh-keygen refuses to overwrite without asking; a stray public half is stale. */
  if (have_pub)
    unlink(pub);
  if (kite__mkdir_p(dirname(dir_copy), 0700) != 0) {
    kite_log(rt, KITE_LOG_ERROR, "keys", "cannot create the directory of key %s: %s", path,
             strerror(errno));
    rc = KITE_EIO;
    goto fail;
  }
  char *args[] = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kite", "-f", r->path, NULL};
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE}, {.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t po = {.exit_cb = on_keygen_exit,
                             .file = "ssh-keygen",
                             .args = args,
                             .stdio_count = 3,
                             .stdio = stdio};
  r->proc.data = r;
  int err = uv_spawn(loop, &r->proc, &po);
  if (err == 0) {
    r->generating = true;
    r->next = generating;
    generating = r;
  }
  if (err != 0) {
    kite_log(rt, KITE_LOG_ERROR, "keys", "cannot run ssh-keygen: %s; install openssh-client",
             uv_strerror(err));
    /* The handle is initialized even when the spawn fails; close it before freeing. */
    free(r->path);
    r->path = NULL;
    uv_close((uv_handle_t *)&r->proc, free_on_close);
    free(pub);
    free(dir_copy);
    return kite_err_from_uv(err);
  }
out:
  free(pub);
  free(dir_copy);
  return 0;
fail:
  free(r->path);
  free(r);
  free(pub);
  free(dir_copy);
  return rc;
}
