/* The emulator's backend: machines, each backed by one real local sshd node (local.h).
 *
 * A machine is PROVISIONING from its creation until its node listens and the configured
 * provisioning delay is over, then RUNNING with the node's loopback address as its public
 * address. Deleting stops the node; the machine leaves the list (and every API) only when
 * every process of the node is gone. A kill makes the node die at once, as a crash or a
 * reclaimed spot machine would; the record then stays OFF, or vanishes. API fronts (do_api.c,
 * and later others) render machines in their own cloud's shapes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloudsim.h"

static void on_timer_closed(uv_handle_t *h) {
  machine_t *m = h->data;
  sim_t *sim = m->sim;
  for (size_t i = 0; i < m->tag_n; i++)
    free(m->tags[i]);
  free(m->tags);
  free(m->name);
  free(m->region);
  free(m->size);
  free(m->image);
  free(m->user_data);
  free(m->authorized_key);
  free(m);
  if (sim->stopping && sim->machines == NULL && sim->stopped_cb) {
    void (*cb)(sim_t *) = sim->stopped_cb;
    sim->stopped_cb = NULL;
    cb(sim);
  }
}

static void machine_forget(machine_t *m) {
  sim_t *sim = m->sim;
  for (machine_t **pp = &sim->machines; *pp; pp = &(*pp)->next)
    if (*pp == m) {
      *pp = m->next;
      break;
    }
  sim->deleted_total++;
  uv_timer_stop(&m->timer);
  uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

static void on_node_stopped(kite_local_node_t *n, int status, void *data) {
  machine_t *m = data;
  (void)n;
  (void)status;
  m->node = NULL;
  m->node_stopping = false;
  m->address[0] = '\0';
  if (m->state == M_DELETING || m->vanish_when_dead || m->sim->stopping) {
    fprintf(stderr, "kite-cloudsim: machine %llu (%s) is gone\n", (unsigned long long)m->id,
            m->name);
    machine_forget(m);
    return;
  }
  m->state = M_OFF;
}

static void stop_node(machine_t *m) {
  if (m->node && !m->node_stopping) {
    m->node_stopping = true;
    kite_local_node_stop(m->node, on_node_stopped, m);
  } else if (m->node == NULL) {
    machine_forget(m);
  }
}

static void on_provisioned(uv_timer_t *t) {
  machine_t *m = t->data;
  if (m->state == M_PROVISIONING && m->node) {
    snprintf(m->address, sizeof(m->address), "%s", kite_local_node_address(m->node));
    m->state = M_RUNNING;
  }
}

static void on_node_started(kite_local_node_t *n, int status, void *data) {
  machine_t *m = data;
  if (status == KITE_ECANCELED)
    return; /* deleted while starting: on_node_stopped follows */
  if (status != 0) {
    fprintf(stderr, "kite-cloudsim: machine %llu: its node could not start: %s\n",
            (unsigned long long)m->id, kite_strerror(status));
    m->state = M_OFF;
    return;
  }
  (void)n;
  if (m->state != M_PROVISIONING)
    return;
  uv_timer_start(&m->timer, on_provisioned, m->sim->faults.provision_ms, 0);
}

machine_t *machine_create(sim_t *sim, const machine_opts_t *o) {
  machine_t *m = calloc(1, sizeof(*m));
  if (m == NULL)
    return NULL;
  m->sim = sim;
  m->id = sim->next_machine_id++;
  m->cloud = o->cloud ? o->cloud : CLOUD_DO;
  m->name = strdup(o->name);
  m->tags = calloc(o->tag_n + 1, sizeof(char *));
  for (size_t i = 0; i < o->tag_n; i++)
    m->tags[i] = strdup(o->tags[i]);
  m->tag_n = o->tag_n;
  m->region = strdup(o->region ? o->region : "nyc3");
  m->size = strdup(o->size ? o->size : "s-1vcpu-1gb");
  m->image = strdup(o->image ? o->image : "ubuntu-24-04-x64");
  m->user_data = o->user_data ? strdup(o->user_data) : NULL;
  m->authorized_key = strdup(o->authorized_key);
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(m->created_at, sizeof(m->created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
  m->state = M_PROVISIONING;
  uv_timer_init(sim->loop, &m->timer);
  m->timer.data = m;
  m->next = sim->machines;
  sim->machines = m;
  sim->created_total++;
  unsigned live = machine_count(sim);
  if (live > sim->peak)
    sim->peak = live;
  /* The node carries the machine's first tag, so a test can count what runs for its pool. */
  kite_local_node_options_t no = {.base_dir = sim->node_dir,
                                  .tag = o->tag_n ? o->tags[0] : "kite-cloudsim",
                                  .authorized_key = m->authorized_key,
                                  .port = (uint16_t)sim->ssh_port};
  int rc = kite_local_node_start(sim->rt, &no, on_node_started, m, &m->node);
  if (rc != 0) {
    fprintf(stderr, "kite-cloudsim: machine %llu: cannot start a node: %s\n",
            (unsigned long long)m->id, kite_strerror(rc));
    m->node = NULL;
    m->state = M_OFF;
  }
  return m;
}

machine_t *machine_find(sim_t *sim, uint64_t id) {
  for (machine_t *m = sim->machines; m; m = m->next)
    if (m->id == id)
      return m;
  return NULL;
}

bool machine_has_tag(const machine_t *m, const char *tag) {
  for (size_t i = 0; i < m->tag_n; i++)
    if (strcmp(m->tags[i], tag) == 0)
      return true;
  return false;
}

unsigned machine_count_of(sim_t *sim, const char *cloud) {
  unsigned n = 0;
  for (machine_t *m = sim->machines; m; m = m->next)
    n += strcmp(m->cloud, cloud) == 0;
  return n;
}

machine_t *machine_find_of(sim_t *sim, uint64_t id, const char *cloud) {
  machine_t *m = machine_find(sim, id);
  return m && strcmp(m->cloud, cloud) == 0 ? m : NULL;
}

unsigned machine_count(sim_t *sim) {
  unsigned n = 0;
  for (machine_t *m = sim->machines; m; m = m->next)
    n++;
  return n;
}

void machine_delete(machine_t *m) {
  if (m->state == M_DELETING)
    return;
  m->state = M_DELETING;
  uv_timer_stop(&m->timer);
  stop_node(m);
}

void machine_kill(machine_t *m, bool vanish) {
  if (m->state == M_DELETING)
    return;
  m->vanish_when_dead = vanish;
  uv_timer_stop(&m->timer);
  if (m->node) {
    stop_node(m);
  } else if (vanish) {
    m->state = M_DELETING;
    machine_forget(m);
  }
}

void machines_stop_all(sim_t *sim, void (*done)(sim_t *sim)) {
  sim->stopped_cb = done;
  if (sim->machines == NULL) {
    sim->stopped_cb = NULL;
    done(sim);
    return;
  }
  for (machine_t *m = sim->machines, *next; m; m = next) {
    next = m->next;
    machine_delete(m);
  }
}
