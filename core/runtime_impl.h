#ifndef KITE_RUNTIME_IMPL_H
#define KITE_RUNTIME_IMPL_H

/* The runtime's private layout, shared by runtime.c and log.c only. */

#include <pthread.h>

#include "kite_impl.h"

struct kite__secrets {
  char **v;
  size_t n, cap;
};

typedef struct post_item {
  void (*fn)(kite_runtime_t *rt, void *data);
  void *data;
  struct post_item *next;
} post_item_t;

struct kite_runtime {
  uv_loop_t *loop;
  uv_loop_t own_loop;
  bool owns_loop;
  char *home;
  kite_bus_t *bus;

  kite_log_level_t log_level;
  kite_log_sink_fn log_sink;
  void *log_sink_data;
  struct kite__secrets secrets;

  kite_component_t *components; /* singly linked, in start order */
  int stopping_tier;            /* tier being stopped, or -1 */
  int stop_pending;             /* components of that tier not yet stopped */
  bool shutting_down;
  bool shut_down;
  kite_runtime_shutdown_fn shutdown_cb;
  void *shutdown_data;

  uv_async_t async;
  pthread_mutex_t post_lock;
  post_item_t *post_head, *post_tail;
  bool post_closed;

  uv_signal_t sigint, sigterm;
  bool signals_on;
  kite_runtime_shutdown_fn sig_done;
  void (*sig_second)(kite_runtime_t *rt, int signum);
  void *sig_data;

  int handles_open; /* runtime-owned uv handles not yet closed */

  struct kite_store *store; /* opened on first use */
  bool store_failed;
};

#endif
