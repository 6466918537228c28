/* The runtime: one loop, kite's home, the bus, the components and their ordered shutdown.
 *
 * Owns: the loop (when it made it), the bus, a uv_async_t for kite_runtime_post (the one
 * thread-safe entry point), and the optional SIGINT/SIGTERM handles. Components are started
 * by kite_runtime_add and stopped tier by tier (pools, monitors, transport, providers) by
 * kite_runtime_shutdown; the next tier starts stopping only when every component of the tier
 * before it has said it is done, so instances are terminated while the providers that
 * terminate them still run. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime_impl.h"

enum { COMP_RUNNING = 1, COMP_STOPPING, COMP_STOPPED };

static void on_async(uv_async_t *h);
static void stop_next_tier(kite_runtime_t *rt);

static char *default_home(void) {
  const char *env = getenv("KITE_HOME");
  if (env && *env)
    return kite__strdup(env);
  const char *home = getenv("HOME");
  if (home == NULL || *home == '\0') {
    struct passwd *pw = getpwuid(getuid());
    home = pw ? pw->pw_dir : "/tmp";
  }
  return kite__sprintf("%s/.kite", home);
}

int kite_runtime_new(kite_runtime_t **out, const kite_runtime_options_t *opts) {
  kite_runtime_options_t defaults = {.log_level = -1};
  if (opts == NULL)
    opts = &defaults;
  kite_runtime_t *rt = calloc(1, sizeof(*rt));
  if (rt == NULL)
    return KITE_ENOMEM;
  rt->stopping_tier = -1;
  rt->log_level = KITE_LOG_WARN;
  if (opts->log_level >= 0 && opts->log_level <= KITE_LOG_OFF) {
    rt->log_level = (kite_log_level_t)opts->log_level;
  } else {
    const char *lv = getenv("KITE_LOG");
    if (lv && *lv && kite_log_level_parse(lv, &rt->log_level) != 0) {
      fprintf(stderr,
              "kite: warn runtime: KITE_LOG=%s is not debug, info, warn or error; "
              "using warn\n",
              lv);
      rt->log_level = KITE_LOG_WARN;
    }
  }
  int rc = 0;
  rt->home = opts->home ? kite__strdup(opts->home) : default_home();
  if (rt->home == NULL) {
    rc = KITE_ENOMEM;
    goto fail;
  }
  size_t hl = strlen(rt->home);
  while (hl > 1 && rt->home[hl - 1] == '/')
    rt->home[--hl] = '\0';
  if ((rc = kite__mkdir_p(rt->home, 0700)) != 0) {
    if (rc != KITE_ENOMEM)
      fprintf(stderr,
              "kite: error runtime: cannot create kite's home directory %s: %s; set "
              "KITE_HOME to a writable directory\n",
              rt->home, strerror(errno));
    goto fail;
  }
  if (opts->loop) {
    rt->loop = opts->loop;
  } else {
    if (uv_loop_init(&rt->own_loop) != 0) {
      rc = KITE_ENOMEM;
      goto fail;
    }
    rt->loop = &rt->own_loop;
    rt->owns_loop = true;
  }
  if (pthread_mutex_init(&rt->post_lock, NULL) != 0) {
    rc = KITE_ENOMEM;
    goto fail_loop;
  }
  if (uv_async_init(rt->loop, &rt->async, on_async) != 0) {
    rc = KITE_ENOMEM;
    goto fail_mutex;
  }
  uv_unref((uv_handle_t *)&rt->async);
  rt->handles_open++;
  rc = kite__bus_new(&rt->bus, rt, opts->bus_queue_bytes);
  if (rc != 0) {
    uv_close((uv_handle_t *)&rt->async, NULL);
    uv_run(rt->loop, UV_RUN_NOWAIT);
    goto fail_mutex;
  }
  *out = rt;
  return 0;

fail_mutex:
  pthread_mutex_destroy(&rt->post_lock);
fail_loop:
  if (rt->owns_loop)
    uv_loop_close(&rt->own_loop);
fail:
  free(rt->home);
  free(rt);
  return rc;
}

uv_loop_t *kite_runtime_loop(kite_runtime_t *rt) {
  return rt->loop;
}
kite_bus_t *kite_runtime_bus(kite_runtime_t *rt) {
  return rt->bus;
}
const char *kite_runtime_home(const kite_runtime_t *rt) {
  return rt->home;
}

int kite_runtime_add(kite_runtime_t *rt, kite_component_t *c) {
  if (c == NULL || c->name == NULL || c->stop == NULL || (unsigned)c->tier >= KITE_TIER__COUNT)
    return KITE_EINVAL;
  if (rt->shutting_down)
    return KITE_ECLOSED;
  if (c->state_ != 0)
    return KITE_EEXIST;
  c->rt_ = rt;
  if (c->start) {
    int rc = c->start(c, rt);
    if (rc != 0) {
      c->rt_ = NULL;
      return rc;
    }
  }
  c->state_ = COMP_RUNNING;
  /* Append, so components of one tier stop in the order they started. */
  kite_component_t **pp = &rt->components;
  while (*pp)
    pp = &(*pp)->next_;
  c->next_ = NULL;
  *pp = c;
  KITE_DEBUG(rt, "runtime", "component %s started", c->name);
  return 0;
}

kite_component_t *kite_runtime_find(kite_runtime_t *rt, const char *name) {
  for (kite_component_t *c = rt->components; c; c = c->next_)
    if (c->state_ == COMP_RUNNING && strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

int kite_runtime_run(kite_runtime_t *rt) {
  return uv_run(rt->loop, UV_RUN_DEFAULT);
}

static void unlink_component(kite_runtime_t *rt, kite_component_t *c) {
  for (kite_component_t **pp = &rt->components; *pp; pp = &(*pp)->next_) {
    if (*pp == c) {
      *pp = c->next_;
      c->next_ = NULL;
      return;
    }
  }
}

int kite_runtime_remove(kite_runtime_t *rt, kite_component_t *c) {
  if (c->rt_ != rt || c->state_ != COMP_RUNNING)
    return KITE_EINVAL;
  c->state_ = COMP_STOPPED;
  unlink_component(rt, c);
  return 0;
}

static void on_component_stopped(kite_component_t *c) {
  kite_runtime_t *rt = c->rt_;
  if (c->state_ != COMP_STOPPING) {
    kite_log(rt, KITE_LOG_ERROR, "runtime", "component %s reported stopped twice (a bug)", c->name);
    return;
  }
  c->state_ = COMP_STOPPED;
  unlink_component(rt, c);
  KITE_DEBUG(rt, "runtime", "component %s stopped", c->name);
  if (rt->stopping_tier >= 0 && (int)c->tier == rt->stopping_tier && --rt->stop_pending == 0)
    stop_next_tier(rt);
}

static void on_handle_closed(uv_handle_t *h) {
  kite_runtime_t *rt = h->data;
  if (--rt->handles_open == 0 && rt->shutdown_cb) {
    kite_runtime_shutdown_fn cb = rt->shutdown_cb;
    rt->shutdown_cb = NULL;
    rt->shut_down = true;
    cb(rt, rt->shutdown_data);
  } else if (rt->handles_open == 0) {
    rt->shut_down = true;
  }
}

static void on_bus_closed(kite_bus_t *bus, void *data) {
  kite_runtime_t *rt = data;
  (void)bus;
  pthread_mutex_lock(&rt->post_lock);
  rt->post_closed = true;
  pthread_mutex_unlock(&rt->post_lock);
  /* Run what was posted before the door closed, then close the async handle. */
  on_async(&rt->async);
  rt->async.data = rt;
  uv_close((uv_handle_t *)&rt->async, on_handle_closed);
  if (rt->signals_on) {
    rt->signals_on = false;
    rt->sigint.data = rt;
    rt->sigterm.data = rt;
    uv_close((uv_handle_t *)&rt->sigint, on_handle_closed);
    uv_close((uv_handle_t *)&rt->sigterm, on_handle_closed);
  }
}

static void stop_next_tier(kite_runtime_t *rt) {
  for (int tier = rt->stopping_tier + 1; tier < KITE_TIER__COUNT; tier++) {
    rt->stopping_tier = tier;
    int n = 0;
    for (kite_component_t *c = rt->components; c; c = c->next_)
      if ((int)c->tier == tier && c->state_ == COMP_RUNNING)
        n++;
    if (n == 0)
      continue;
    rt->stop_pending = n;
    /* Collect first: a component may stop synchronously and unlink itself. */
    kite_component_t *batch[64];
    kite_component_t **list = n <= 64 ? batch : malloc((size_t)n * sizeof(*list));
    if (list == NULL)
      list = batch, n = n > 64 ? 64 : n;
    int k = 0;
    for (kite_component_t *c = rt->components; c && k < n; c = c->next_)
      if ((int)c->tier == tier && c->state_ == COMP_RUNNING)
        list[k++] = c;
    for (int i = 0; i < k; i++) {
      list[i]->state_ = COMP_STOPPING;
      KITE_DEBUG(rt, "runtime", "stopping component %s", list[i]->name);
    }
    for (int i = 0; i < k; i++)
      list[i]->stop(list[i], on_component_stopped);
    if (list != batch)
      free(list);
    return; /* the last on_component_stopped of this tier calls us again */
  }
  rt->stopping_tier = KITE_TIER__COUNT;
  kite__bus_close(rt->bus, on_bus_closed, rt);
}

int kite_runtime_shutdown(kite_runtime_t *rt, kite_runtime_shutdown_fn cb, void *data) {
  if (rt->shutting_down)
    return KITE_EBUSY;
  rt->shutting_down = true;
  rt->shutdown_cb = cb;
  rt->shutdown_data = data;
  KITE_DEBUG(rt, "runtime", "shutdown started");
  stop_next_tier(rt);
  return 0;
}

static void on_signal(uv_signal_t *h, int signum) {
  kite_runtime_t *rt = h->data;
  if (rt->shutting_down) {
    if (rt->sig_second)
      rt->sig_second(rt, signum);
    return;
  }
  kite_log(rt, KITE_LOG_WARN, "runtime", "%s received: shutting down cleanly (again to force)",
           signum == SIGINT ? "SIGINT" : "SIGTERM");
  kite_runtime_shutdown(rt, rt->sig_done, rt->sig_data);
}

int kite_runtime_handle_signals(kite_runtime_t *rt, kite_runtime_shutdown_fn on_done,
                                void (*on_second)(kite_runtime_t *rt, int signum), void *data) {
  if (rt->signals_on)
    return KITE_EEXIST;
  if (rt->shutting_down)
    return KITE_ECLOSED;
  if (uv_signal_init(rt->loop, &rt->sigint) != 0)
    return KITE_EIO;
  if (uv_signal_init(rt->loop, &rt->sigterm) != 0) {
    uv_close((uv_handle_t *)&rt->sigint, NULL);
    return KITE_EIO;
  }
  rt->sigint.data = rt->sigterm.data = rt;
  uv_signal_start(&rt->sigint, on_signal, SIGINT);
  uv_signal_start(&rt->sigterm, on_signal, SIGTERM);
  /* Signal handles must not keep an otherwise finished loop alive. */
  uv_unref((uv_handle_t *)&rt->sigint);
  uv_unref((uv_handle_t *)&rt->sigterm);
  rt->handles_open += 2;
  rt->signals_on = true;
  rt->sig_done = on_done;
  rt->sig_second = on_second;
  rt->sig_data = data;
  return 0;
}

int kite_runtime_post(kite_runtime_t *rt, void (*fn)(kite_runtime_t *rt, void *data), void *data) {
  if (fn == NULL)
    return KITE_EINVAL;
  post_item_t *it = malloc(sizeof(*it));
  if (it == NULL)
    return KITE_ENOMEM;
  it->fn = fn;
  it->data = data;
  it->next = NULL;
  pthread_mutex_lock(&rt->post_lock);
  if (rt->post_closed) {
    pthread_mutex_unlock(&rt->post_lock);
    free(it);
    return KITE_ECLOSED;
  }
  if (rt->post_tail)
    rt->post_tail->next = it;
  else
    rt->post_head = it;
  rt->post_tail = it;
  pthread_mutex_unlock(&rt->post_lock);
  uv_async_send(&rt->async);
  return 0;
}

static void on_async(uv_async_t *h) {
  kite_runtime_t *rt = container_of(h, kite_runtime_t, async);
  pthread_mutex_lock(&rt->post_lock);
  post_item_t *it = rt->post_head;
  rt->post_head = rt->post_tail = NULL;
  pthread_mutex_unlock(&rt->post_lock);
  while (it) {
    post_item_t *next = it->next;
    it->fn(rt, it->data);
    free(it);
    it = next;
  }
}

int kite_runtime_free(kite_runtime_t *rt) {
  if (rt == NULL)
    return 0;
  if (!rt->shutting_down || rt->handles_open != 0)
    return KITE_EBUSY;
  kite__bus_free(rt->bus);
  kite_store_close(rt->store);
  if (rt->owns_loop) {
    uv_run(&rt->own_loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&rt->own_loop) != 0)
      return KITE_EBUSY;
  }
  pthread_mutex_destroy(&rt->post_lock);
  for (size_t i = 0; i < rt->secrets.n; i++) {
    /* Secrets are wiped before their memory is returned. */
    volatile char *p = rt->secrets.v[i];
    while (*p)
      *p++ = 0;
    free(rt->secrets.v[i]);
  }
  free(rt->secrets.v);
  free(rt->home);
  free(rt);
  return 0;
}

int kite__runtime_store(kite_runtime_t *rt, kite_store_t **out) {
  int rc = 0;
  if (rt->store == NULL && !rt->store_failed) {
    char *path = kite_store_default_path(rt->home);
    rc = path ? kite_store_open(path, &rt->store) : KITE_ENOMEM;
    if (rc != 0) {
      /* Out of memory is tried again next time; any other failure stays. */
      rt->store_failed = rc != KITE_ENOMEM;
      kite_log(rt, KITE_LOG_ERROR, "store", "cannot open the state store %s: %s", path ? path : "",
               kite_store_errmsg(NULL));
    }
    free(path);
  }
  *out = rt->store;
  return rt->store ? 0 : rc == KITE_ENOMEM ? KITE_ENOMEM : KITE_ESTORE;
}
