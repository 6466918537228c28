/* The local provider: instances are real sshd nodes on loopback addresses (local.h).
 *
 * Answers, for the name "local": instance_launch, instance_terminate, instance_describe,
 * instance_list and preempt_check. Each instance is one kite_local_node_t tagged with its
 * pool's tag; its host key is pinned in the launch reply, so the first SSH connection is
 * already verified. Logins use kite's own key, $KITE_HOME/keys/id_ed25519, created on start.
 *
 * Simulated spot capacity: kite_local_provider_preempt() (and the chaos options) first give
 * a notice — preempt_check answers NOTICE with the deadline — and when the notice period is
 * over the node dies as a machine would: every process on it is killed. The instance record
 * stays (state "preempted") until a terminate request confirms it gone, as on a cloud.
 *
 * Adopted instances (kite_local_provider_adopt) were started by a process that died. Their
 * nodes are found by the pool's tag: terminating one SIGKILLs every process carrying the tag
 * (through a pidfd, so a recycled pid is never hit), waits for each to exit on the loop (a
 * uv_poll on the pidfd becomes readable when the process is gone) and confirms only when no
 * process of the tag is left. Killing a node's first process ends its whole PID namespace,
 * sshd included. */
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "hash.h"
#include "kite/local.h"
#include "kite/provider.h"
#include "kite_impl.h"
#include "local_impl.h"

#define REAP_ROUNDS 20

#define PROVIDER_NAME "local"

typedef enum inst_state {
  INST_STARTING,
  INST_RUNNING,
  INST_PREEMPTED,
  INST_STOPPING,
  INST_ADOPTED /* started by a process that died; found by its tag */
} inst_state_t;

struct inst;

/* One process of an adopted instance's tag, being killed. */
typedef struct reap_proc {
  struct inst *inst;
  uv_poll_t poll;
  int fd;
} reap_proc_t;

typedef struct inst {
  struct kite_local_provider *lp;
  char *id;
  char *tag;
  uint64_t pool, node;
  uint32_t rank;
  kite_local_node_t *ln;
  inst_state_t state;
  bool notice;
  uint64_t deadline_ms;
  uint64_t launch_corr;
  uint64_t *term_corrs;
  size_t term_n;
  uv_timer_t timer; /* notice period / chaos */
  bool timer_on;
  bool node_stopping;
  int start_error;
  unsigned reap_open;   /* adopted: processes still being waited for */
  unsigned reap_rounds; /* adopted: kill rounds so far */
  struct inst *next;
  bool hashed;
  UT_hash_handle hh; /* by id */
} inst_t;

typedef struct pending_launch {
  uint64_t corr;
  kite_ev_instance_launch_t *req; /* unused fields NULL; strings owned */
  char *tag;
  uint64_t pool, node;
  uint32_t rank;
  struct pending_launch *next;
} pending_launch_t;

struct kite_local_provider {
  kite_component_t comp;
  kite_runtime_t *rt;
  kite_bus_t *bus;
  struct inst *by_id; /* every instance with an id, hashed: checks are per node per tick */
  kite_local_provider_options_t opts;
  char *key_path;
  char *pubkey;
  bool key_ready;
  int key_status;
  pending_launch_t *waiting; /* launches waiting for the key */
  inst_t *insts;
  unsigned count;
  uint64_t seq;
  kite_sub_t subs[5];
  bool stopping;
  kite_component_stopped_fn stop_done;
  int timers_open;
  unsigned rng;
};

/* ---- instances ------------------------------------------------------------------------- */

static inst_t *find(kite_local_provider_t *lp, const char *id) {
  inst_t *i = NULL;
  if (id)
    HASH_FIND_STR(lp->by_id, id, i);
  for (inst_t *x = lp->insts; id && i == NULL && x; x = x->next)
    if (!x->hashed && x->id && strcmp(x->id, id) == 0)
      i = x; /* left out of the table when it could not be made */
  return i;
}

static void inst_link(kite_local_provider_t *lp, inst_t *i) {
  i->next = lp->insts;
  lp->insts = i;
  lp->count++;
  if (i->id) {
    int rc;
    KITE_HASH_TRY(rc, HASH_ADD_KEYPTR(hh, lp->by_id, i->id, strlen(i->id), i));
    i->hashed = rc == 0; /* else found by walking the list */
  }
}

static void maybe_stopped(kite_local_provider_t *lp) {
  /* The key request holds lp until on_key, which calls here again. */
  if (lp->stopping && lp->key_ready && lp->insts == NULL && lp->timers_open == 0 && lp->stop_done) {
    kite_component_stopped_fn done = lp->stop_done;
    lp->stop_done = NULL;
    for (size_t k = 0; k < KITE_ARRAY_SIZE(lp->subs); k++)
      kite_bus_unsubscribe(lp->bus, lp->subs[k]);
    done(&lp->comp);
    free(lp->key_path);
    free(lp->pubkey);
    free(lp);
  }
}

static void on_inst_timer_closed(uv_handle_t *h) {
  inst_t *i = kite_container_of((uv_timer_t *)h, inst_t, timer);
  kite_local_provider_t *lp = i->lp;
  free(i->id);
  free(i->tag);
  free(i->term_corrs);
  free(i);
  lp->timers_open--;
  maybe_stopped(lp);
}

static void inst_forget(inst_t *i) {
  kite_local_provider_t *lp = i->lp;
  if (i->hashed) {
    HASH_DEL(lp->by_id, i);
    i->hashed = false;
  }
  for (inst_t **pp = &lp->insts; *pp; pp = &(*pp)->next)
    if (*pp == i) {
      *pp = i->next;
      break;
    }
  lp->count--;
  uv_timer_stop(&i->timer);
  uv_close((uv_handle_t *)&i->timer, on_inst_timer_closed);
}

/* Replies to every terminate request waiting on i, then forgets it. */
static void confirm_terminated(inst_t *i) {
  kite_local_provider_t *lp = i->lp;
  kite_ev_instance_terminated_t t = {.pool = i->pool,
                                     .node = i->node,
                                     .rank = i->rank,
                                     .provider = PROVIDER_NAME,
                                     .instance_id = i->id};
  for (size_t k = 0; k < i->term_n; k++)
    kite_reply_instance_terminated(lp->bus, i->term_corrs[k], &t);
  if (i->term_n == 0 && i->start_error == 0)
    kite_emit_instance_terminated(lp->bus, &t);
  KITE_DEBUG(lp->rt, "local", "instance %s terminated", i->id);
  inst_forget(i);
}

static void on_node_stopped(kite_local_node_t *ln, int status, void *data) {
  inst_t *i = data;
  (void)ln;
  (void)status;
  i->ln = NULL;
  i->node_stopping = false;
  if (i->start_error) {
    char *msg = kite__sprintf("local node for rank %u could not start: %s (is openssh-server "
                              "installed? see the README's install step; KITE_LOG=debug shows "
                              "sshd's own message)",
                              i->rank, kite_strerror(i->start_error));
    kite_bus_reply_error(i->lp->bus, i->launch_corr, i->start_error, msg);
    free(msg);
    i->launch_corr = 0;
    /* Terminate requests that came meanwhile: nothing exists any more. */
    confirm_terminated(i);
    return;
  }
  if (i->state == INST_STOPPING || i->lp->stopping) {
    confirm_terminated(i);
    return;
  }
  /* Died by preemption: the record stays until someone terminates it. */
  i->state = INST_PREEMPTED;
  kite_ev_instance_preempted_t p = {.pool = i->pool,
                                    .node = i->node,
                                    .rank = i->rank,
                                    .provider = PROVIDER_NAME,
                                    .instance_id = i->id,
                                    .reason = i->notice ? "spot capacity reclaimed after notice"
                                                        : "spot capacity reclaimed"};
  kite_emit_instance_preempted(i->lp->bus, &p);
  if (i->term_n)
    confirm_terminated(i);
}

static void kill_node(inst_t *i) {
  if (i->ln && !i->node_stopping) {
    i->node_stopping = true;
    kite_local_node_stop(i->ln, on_node_stopped, i);
  }
}

/* ---- adopted instances ------------------------------------------------------------------- */

static void reap_round(inst_t *i);

static void reap_settled(inst_t *i) {
  kite_local_provider_t *lp = i->lp;
  int left = kite_local_count_tagged(i->tag);
  if (left == 0) {
    KITE_INFO(lp->rt, "local", "adopted instance %s: no process of %s is left", i->id, i->tag);
    confirm_terminated(i);
    return;
  }
  if (left > 0 && ++i->reap_rounds < REAP_ROUNDS) {
    reap_round(i); /* processes started while the others were dying */
    return;
  }
  char *msg = left < 0 ? kite__sprintf("cannot read /proc to find the processes of %s: %s", i->tag,
                                       kite_strerror(left))
                       : kite__sprintf("%d process(es) carrying %s are still running after %d "
                                       "rounds of SIGKILL; see `grep -l KITE_NODE_TAG=%s "
                                       "/proc/*/environ`, then run `kite down` again",
                                       left, i->tag, REAP_ROUNDS, i->tag);
  for (size_t k = 0; k < i->term_n; k++)
    kite_bus_reply_error(lp->bus, i->term_corrs[k], left < 0 ? left : KITE_EBUSY,
                         msg ? msg : "processes of the pool are still running");
  free(msg);
  i->term_n = 0;
  i->reap_rounds = 0;
}

static void on_reap_closed(uv_handle_t *h) {
  reap_proc_t *p = kite_container_of((uv_poll_t *)h, reap_proc_t, poll);
  inst_t *i = p->inst;
  kite_local_provider_t *lp = i->lp;
  close(p->fd);
  free(p);
  lp->timers_open--;
  if (--i->reap_open == 0) {
    if (lp->stopping && i->term_n == 0)
      inst_forget(i);
    else
      reap_settled(i);
  }
  maybe_stopped(lp);
}

static void on_reaped(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  /* A pidfd becomes readable when its process has exited (an error means the same here). */
  uv_poll_stop(h);
  uv_close((uv_handle_t *)h, on_reap_closed);
}

static void reap_round(inst_t *i) {
  kite_local_provider_t *lp = i->lp;
  int *pids = NULL;
  size_t n = 0;
  int rc = kite__local_tagged_pids(i->tag, &pids, &n);
  if (rc != 0) {
    i->reap_rounds = REAP_ROUNDS;
    reap_settled(i);
    return;
  }
  for (size_t k = 0; k < n; k++) {
    int fd = (int)syscall(SYS_pidfd_open, (pid_t)pids[k], 0);
    if (fd < 0)
      continue; /* already gone */
    reap_proc_t *p = calloc(1, sizeof(*p));
    if (p == NULL || uv_poll_init(kite_runtime_loop(lp->rt), &p->poll, fd) != 0) {
      free(p);
      syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
      close(fd);
      continue; /* the next round finds it again if it did not die */
    }
    p->inst = i;
    p->fd = fd;
    lp->timers_open++;
    i->reap_open++;
    syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
    uv_poll_start(&p->poll, UV_READABLE, on_reaped);
  }
  free(pids);
  KITE_DEBUG(lp->rt, "local", "adopted instance %s: killing %u process(es) of %s", i->id,
             i->reap_open, i->tag);
  if (i->reap_open == 0)
    reap_settled(i);
}

int kite_local_provider_adopt(kite_local_provider_t *lp, const char *instance_id, const char *tag) {
  if (lp == NULL || instance_id == NULL || *instance_id == '\0' || tag == NULL || *tag == '\0')
    return KITE_EINVAL;
  if (find(lp, instance_id))
    return KITE_EEXIST;
  for (inst_t *i = lp->insts; i; i = i->next)
    if (i->state != INST_ADOPTED && strcmp(i->tag, tag) == 0)
      return KITE_EBUSY;
  if (lp->stopping)
    return KITE_ECLOSED;
  inst_t *i = calloc(1, sizeof(*i));
  if (i == NULL)
    return KITE_ENOMEM;
  i->lp = lp;
  i->id = kite__strdup(instance_id);
  i->tag = kite__strdup(tag);
  if (i->id == NULL || i->tag == NULL) {
    free(i->id);
    free(i->tag);
    free(i);
    return KITE_ENOMEM;
  }
  i->state = INST_ADOPTED;
  uv_timer_init(kite_runtime_loop(lp->rt), &i->timer);
  lp->timers_open++;
  inst_link(lp, i);
  return 0;
}

static void on_notice_over(uv_timer_t *t) {
  inst_t *i = kite_container_of(t, inst_t, timer);
  KITE_INFO(i->lp->rt, "local", "instance %s: notice period over, the node dies now", i->id);
  kill_node(i);
}

static void begin_preempt(inst_t *i, bool abrupt) {
  kite_local_provider_t *lp = i->lp;
  if (i->state != INST_RUNNING || i->notice)
    return;
  if (abrupt) {
    KITE_INFO(lp->rt, "local", "instance %s preempted without notice", i->id);
    kill_node(i);
    return;
  }
  i->notice = true;
  i->deadline_ms = kite__wall_ms() + lp->opts.notice_ms;
  KITE_INFO(lp->rt, "local", "instance %s: preemption notice, dies in %llu ms", i->id,
            (unsigned long long)lp->opts.notice_ms);
  uv_timer_stop(&i->timer);
  uv_timer_start(&i->timer, on_notice_over, lp->opts.notice_ms, 0);
}

static unsigned next_rand(kite_local_provider_t *lp) {
  lp->rng = lp->rng * 1103515245u + 12345u;
  return (lp->rng >> 8) & 0xFFFFFF;
}

static void on_chaos_tick(uv_timer_t *t) {
  inst_t *i = kite_container_of(t, inst_t, timer);
  kite_local_provider_t *lp = i->lp;
  if (lp->opts.chaos_after_ms) {
    begin_preempt(i, false);
    return;
  }
  /* Checked once a second: p per minute → p/60 per second. */
  double p = lp->opts.chaos_per_minute / 60.0;
  if ((double)next_rand(lp) / (double)0x1000000 < p)
    begin_preempt(i, false);
}

int kite_local_provider_preempt(kite_local_provider_t *lp, const char *instance_id, bool abrupt) {
  inst_t *i = find(lp, instance_id);
  if (i == NULL)
    return KITE_ENOENT;
  if (i->state != INST_RUNNING)
    return KITE_ESTATE;
  begin_preempt(i, abrupt);
  return 0;
}

unsigned kite_local_provider_count(const kite_local_provider_t *lp) {
  return lp->count;
}

/* ---- launch ------------------------------------------------------------------------------ */

static void on_node_started(kite_local_node_t *ln, int status, void *data) {
  inst_t *i = data;
  kite_local_provider_t *lp = i->lp;
  if (status != 0) {
    /* A node that failed to start still holds its address and directory: stop it, then say
     * so (on_node_stopped replies with start_error). */
    i->start_error = status;
    i->state = INST_STOPPING;
    kill_node(i);
    return;
  }
  uint64_t corr = i->launch_corr;
  i->launch_corr = 0;
  i->state = INST_RUNNING;
  if (i->term_n || lp->stopping) {
    i->state = INST_STOPPING;
    kill_node(i);
  }
  kite_ev_instance_launched_t l = {.pool = i->pool,
                                   .node = i->node,
                                   .rank = i->rank,
                                   .provider = PROVIDER_NAME,
                                   .instance_id = i->id,
                                   .address = kite_local_node_address(ln),
                                   .port = kite_local_node_port(ln),
                                   .user = kite_local_node_user(ln),
                                   .host_key = kite_local_node_host_key(ln),
                                   .price_hourly = 0.0,
                                   .tag = i->tag,
                                   .key_path = lp->key_path};
  kite_reply_instance_launched(lp->bus, corr, &l);
  if (i->state == INST_RUNNING && (lp->opts.chaos_after_ms || lp->opts.chaos_per_minute > 0)) {
    if (lp->opts.chaos_after_ms)
      uv_timer_start(&i->timer, on_chaos_tick, lp->opts.chaos_after_ms, 0);
    else
      uv_timer_start(&i->timer, on_chaos_tick, 1000, 1000);
  }
}

static void launch_now(kite_local_provider_t *lp, uint64_t corr, const char *tag, uint64_t pool,
                       uint64_t node, uint32_t rank) {
  if (lp->stopping) {
    kite_bus_reply_error(lp->bus, corr, KITE_ECLOSED, "the local provider is stopping");
    return;
  }
  if (lp->key_status != 0) {
    kite_bus_reply_error(lp->bus, corr, lp->key_status,
                         "kite's SSH key could not be created under $KITE_HOME/keys "
                         "(is ssh-keygen installed and the directory writable?)");
    return;
  }
  inst_t *i = calloc(1, sizeof(*i));
  if (i == NULL) {
    kite_bus_reply_error(lp->bus, corr, KITE_ENOMEM, "out of memory");
    return;
  }
  i->lp = lp;
  i->id = kite__sprintf("local-%d-%llu", (int)getpid(), (unsigned long long)++lp->seq);
  i->tag = kite__strdup(tag ? tag : "kite-untagged");
  i->pool = pool;
  i->node = node;
  i->rank = rank;
  i->launch_corr = corr;
  i->state = INST_STARTING;
  uv_timer_init(kite_runtime_loop(lp->rt), &i->timer);
  lp->timers_open++;
  inst_link(lp, i);
  kite_local_node_options_t o = {.tag = i->tag,
                                 .authorized_key = lp->pubkey,
                                 .port = (uint16_t)lp->opts.port,
                                 .outlive_controller = lp->opts.outlive_controller};
  int rc =
      i->id && i->tag ? kite_local_node_start(lp->rt, &o, on_node_started, i, &i->ln) : KITE_ENOMEM;
  if (rc != 0) {
    char *msg = kite__sprintf("cannot start a local node: %s", kite_strerror(rc));
    kite_bus_reply_error(lp->bus, corr, rc, msg);
    free(msg);
    i->ln = NULL;
    inst_forget(i);
  }
}

static void on_launch(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_launch_t *p,
                      void *data) {
  kite_local_provider_t *lp = data;
  (void)bus;
  if (lp->stopping) {
    kite_bus_reply_error(lp->bus, ev->corr, KITE_ECLOSED, "the local provider is stopping");
    return;
  }
  if (!lp->key_ready) {
    pending_launch_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
      kite_bus_reply_error(lp->bus, ev->corr, KITE_ENOMEM, "out of memory");
      return;
    }
    w->corr = ev->corr;
    w->tag = kite__strdup(p->tag);
    w->pool = p->pool;
    w->node = p->node;
    w->rank = p->rank;
    pending_launch_t **pp = &lp->waiting;
    while (*pp)
      pp = &(*pp)->next;
    *pp = w;
    return;
  }
  launch_now(lp, ev->corr, p->tag, p->pool, p->node, p->rank);
}

static void on_key(kite_runtime_t *rt, int status, void *data) {
  kite_local_provider_t *lp = data;
  (void)rt;
  lp->key_ready = true;
  lp->key_status = status;
  if (status == 0) {
    char *pubpath = kite__sprintf("%s.pub", lp->key_path);
    char *pub = NULL;
    int rc = pubpath ? kite__read_file(pubpath, &pub, NULL) : KITE_ENOMEM;
    free(pubpath);
    if (rc == 0) {
      pub[strcspn(pub, "\r\n")] = '\0';
      lp->pubkey = pub;
    } else {
      lp->key_status = rc;
    }
  }
  if (lp->key_status != 0)
    kite_log(lp->rt, KITE_LOG_ERROR, "local", "cannot create kite's SSH key %s: %s", lp->key_path,
             kite_strerror(lp->key_status));
  while (lp->waiting) {
    pending_launch_t *w = lp->waiting;
    lp->waiting = w->next;
    launch_now(lp, w->corr, w->tag, w->pool, w->node, w->rank);
    free(w->tag);
    free(w);
  }
  maybe_stopped(lp);
}

/* ---- terminate, describe, list, preemption ---------------------------------------------- */

static void on_terminate(kite_bus_t *bus, const kite_event_t *ev,
                         const kite_ev_instance_terminate_t *p, void *data) {
  kite_local_provider_t *lp = data;
  inst_t *i = find(lp, p->instance_id);
  if (i == NULL) {
    /* Unknown here means gone: a local node does not outlive the process that made it. */
    kite_ev_instance_terminated_t t = {.pool = p->pool,
                                       .node = p->node,
                                       .rank = p->rank,
                                       .provider = PROVIDER_NAME,
                                       .instance_id = p->instance_id};
    kite_reply_instance_terminated(bus, ev->corr, &t);
    return;
  }
  uint64_t *g = realloc(i->term_corrs, (i->term_n + 1) * sizeof(*g));
  if (g == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  i->term_corrs = g;
  i->term_corrs[i->term_n++] = ev->corr;
  if (i->state == INST_ADOPTED) {
    if (i->reap_open == 0 && i->term_n == 1)
      reap_round(i);
    return; /* a round under way confirms every request */
  }
  if (i->state == INST_STARTING)
    return; /* on_node_started stops it */
  if (i->state == INST_PREEMPTED && i->ln == NULL) {
    confirm_terminated(i);
    return;
  }
  i->state = INST_STOPPING;
  uv_timer_stop(&i->timer);
  kill_node(i);
}

static void on_describe(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_describe_t *p, void *data) {
  kite_local_provider_t *lp = data;
  inst_t *i = find(lp, p->instance_id);
  static const char *const names[] = {"pending", "running", "preempted", "terminating", "adopted"};
  kite_ev_instance_state_t s = {.provider = PROVIDER_NAME,
                                .node = p->node,
                                .instance_id = p->instance_id,
                                .state = i ? names[i->state] : "terminated",
                                .address = i && i->ln ? kite_local_node_address(i->ln) : NULL};
  kite_reply_instance_state(bus, ev->corr, &s);
}

static void on_list(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_instance_list_t *p,
                    void *data) {
  kite_local_provider_t *lp = data;
  size_t len = 1;
  for (inst_t *i = lp->insts; i; i = i->next)
    len += strlen(i->id) + 1;
  char *ids = calloc(len, 1);
  if (ids == NULL) {
    kite_bus_reply_error(bus, ev->corr, KITE_ENOMEM, "out of memory");
    return;
  }
  uint32_t n = 0;
  for (inst_t *i = lp->insts; i; i = i->next) {
    if (p->tag && strcmp(p->tag, i->tag) != 0)
      continue;
    if (n++)
      strcat(ids, "\n");
    strcat(ids, i->id);
  }
  kite_ev_instance_listed_t l = {.provider = PROVIDER_NAME, .tag = p->tag, .count = n, .ids = ids};
  kite_reply_instance_listed(bus, ev->corr, &l);
  free(ids);
}

static void on_preempt_check(kite_bus_t *bus, const kite_event_t *ev,
                             const kite_ev_preempt_check_t *p, void *data) {
  kite_local_provider_t *lp = data;
  inst_t *i = find(lp, p->instance_id);
  kite_ev_preempt_status_t s = {.provider = PROVIDER_NAME,
                                .node = p->node,
                                .instance_id = p->instance_id,
                                .state = KITE_PREEMPT_GONE};
  if (i && (i->state == INST_RUNNING || i->state == INST_STARTING)) {
    s.state = i->notice ? KITE_PREEMPT_NOTICE : KITE_PREEMPT_NONE;
    s.deadline_ms = i->notice ? (int64_t)i->deadline_ms : 0;
  }
  kite_reply_preempt_status(bus, ev->corr, &s);
}

/* ---- component ----------------------------------------------------------------------------- */

static int lp_start(kite_component_t *c, kite_runtime_t *rt) {
  kite_local_provider_t *lp = kite_container_of(c, kite_local_provider_t, comp);
  kite_key_t key = kite_key_str(PROVIDER_NAME);
  int rc = kite_respond_instance_launch(lp->bus, key, on_launch, lp, &lp->subs[0]);
  if (rc == 0)
    rc = kite_respond_instance_terminate(lp->bus, key, on_terminate, lp, &lp->subs[1]);
  if (rc == 0)
    rc = kite_respond_instance_describe(lp->bus, key, on_describe, lp, &lp->subs[2]);
  if (rc == 0)
    rc = kite_respond_instance_list(lp->bus, key, on_list, lp, &lp->subs[3]);
  if (rc == 0)
    rc = kite_respond_preempt_check(lp->bus, key, on_preempt_check, lp, &lp->subs[4]);
  if (rc == 0)
    rc = kite_keypair_ensure(rt, lp->key_path, on_key, lp);
  if (rc != 0)
    for (size_t k = 0; k < KITE_ARRAY_SIZE(lp->subs); k++)
      kite_bus_unsubscribe(lp->bus, lp->subs[k]);
  return rc;
}

static void lp_stop(kite_component_t *c, kite_component_stopped_fn done) {
  kite_local_provider_t *lp = kite_container_of(c, kite_local_provider_t, comp);
  lp->stopping = true;
  lp->stop_done = done;
  if (lp->insts)
    kite_log(lp->rt, KITE_LOG_WARN, "local",
             "stopping with %u instance(s) still running: "
             "killing them",
             lp->count);
  for (inst_t *i = lp->insts, *next; i; i = next) {
    next = i->next;
    if (i->state == INST_ADOPTED) {
      /* Not ours to kill unless asked: forgotten, or finished by the round under way. */
      if (i->reap_open == 0)
        inst_forget(i);
      continue;
    }
    if (i->state == INST_RUNNING || i->state == INST_PREEMPTED) {
      i->state = INST_STOPPING;
      uv_timer_stop(&i->timer);
      if (i->ln)
        kill_node(i);
      else
        confirm_terminated(i);
    }
  }
  if (lp->key_ready)
    maybe_stopped(lp);
}

int kite_local_provider_new(kite_runtime_t *rt, const kite_local_provider_options_t *opts,
                            kite_local_provider_t **out) {
  kite_local_provider_t *lp = calloc(1, sizeof(*lp));
  if (lp == NULL)
    return KITE_ENOMEM;
  lp->rt = rt;
  lp->bus = kite_runtime_bus(rt);
  if (opts)
    lp->opts = *opts;
  if (lp->opts.notice_ms == 0)
    lp->opts.notice_ms = 2000;
  lp->rng = lp->opts.chaos_seed ? lp->opts.chaos_seed : (unsigned)kite__wall_ms();
  lp->key_path = kite__sprintf("%s/keys/id_ed25519", kite_runtime_home(rt));
  char *dir = kite__sprintf("%s/keys", kite_runtime_home(rt));
  int rc = lp->key_path && dir ? kite__mkdir_p(dir, 0700) : KITE_ENOMEM;
  free(dir);
  if (rc == 0) {
    lp->comp.name = PROVIDER_NAME;
    lp->comp.tier = KITE_TIER_PROVIDER;
    lp->comp.start = lp_start;
    lp->comp.stop = lp_stop;
    rc = kite_runtime_add(rt, &lp->comp);
  }
  if (rc != 0) {
    free(lp->key_path);
    free(lp);
    return rc;
  }
  if (out)
    *out = lp;
  return 0;
}
