/* The node view: one line per node with its state, address and bootstrap progress.
 *
 * On a terminal the lines are redrawn in place (cursor up, clear line) at every change; a
 * note (an interruption, an error) is printed above them. Otherwise, or with --plain, every
 * change is one plain line, which is what logs and scripts want. Large pools (more nodes than
 * fit on a screen) show one summary line of counts per state instead of a line per node. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_ROWS 32

typedef struct row {
  char state[16];
  char address[48];
  char detail[96];
} row_t;

struct cli_view {
  FILE *fp;
  unsigned nodes;
  bool live, ended;
  unsigned drawn; /* lines of the table on screen now */
  row_t *rows;
  kite_sub_t subs[3];
};

cli_view_t *cli_view_new(FILE *fp, unsigned nodes, bool live) {
  cli_view_t *v = calloc(1, sizeof(*v));
  if (v == NULL)
    return NULL;
  v->fp = fp;
  v->nodes = nodes;
  v->live = live;
  v->rows = calloc(nodes ? nodes : 1, sizeof(row_t));
  if (v->rows == NULL) {
    free(v);
    return NULL;
  }
  for (unsigned i = 0; i < nodes; i++)
    snprintf(v->rows[i].state, sizeof(v->rows[i].state), "INIT");
  return v;
}

static void erase(cli_view_t *v) {
  if (v->drawn) {
    fprintf(v->fp, "\033[%uA\r\033[J", v->drawn);
    v->drawn = 0;
  }
}

static void draw(cli_view_t *v) {
  if (!v->live || v->ended)
    return;
  erase(v);
  if (v->nodes > MAX_ROWS) {
    static const char *const states[] = {"INIT",     "PROVISIONING", "BOOTSTRAPPING",
                                         "READY",    "DRAINING",     "REPLACING",
                                         "TERMINATING", "TERMINATED", "FAILED"};
    fprintf(v->fp, "%u nodes:", v->nodes);
    for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
      unsigned n = 0;
      for (unsigned i = 0; i < v->nodes; i++)
        n += strcmp(v->rows[i].state, states[s]) == 0;
      if (n)
        fprintf(v->fp, " %u %s", n, states[s]);
    }
    fputc('\n', v->fp);
    v->drawn = 1;
  } else {
    for (unsigned i = 0; i < v->nodes; i++) {
      const row_t *r = &v->rows[i];
      fprintf(v->fp, "\033[2K  rank %-3u %-13s %-15s %s\n", i, r->state,
              r->address[0] ? r->address : "-", r->detail);
    }
    v->drawn = v->nodes;
  }
  fflush(v->fp);
}

void cli_view_state(cli_view_t *v, uint32_t rank, const char *from, const char *to,
                    const char *reason) {
  if (rank >= v->nodes)
    return;
  row_t *r = &v->rows[rank];
  snprintf(r->state, sizeof(r->state), "%s", to ? to : "?");
  snprintf(r->detail, sizeof(r->detail), "%s", reason ? reason : "");
  if (v->live && !v->ended) {
    draw(v);
  } else {
    fprintf(v->fp, "rank %u: %s -> %s%s%s%s\n", rank, from ? from : "?", to ? to : "?",
            reason && *reason ? " (" : "", reason ? reason : "", reason && *reason ? ")" : "");
    fflush(v->fp);
  }
}

void cli_view_progress(cli_view_t *v, uint32_t rank, unsigned step, unsigned total,
                       const char *name) {
  if (rank >= v->nodes)
    return;
  row_t *r = &v->rows[rank];
  snprintf(r->detail, sizeof(r->detail), "bootstrap %u/%u %s", step, total, name ? name : "");
  if (v->live && !v->ended) {
    draw(v);
  } else {
    fprintf(v->fp, "rank %u: bootstrap step %u/%u %s\n", rank, step, total, name ? name : "");
    fflush(v->fp);
  }
}

void cli_view_address(cli_view_t *v, uint32_t rank, const char *address) {
  if (rank >= v->nodes || address == NULL)
    return;
  snprintf(v->rows[rank].address, sizeof(v->rows[rank].address), "%s", address);
  draw(v);
}

void cli_view_note(cli_view_t *v, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bool redraw = v->live && !v->ended && v->drawn;
  if (redraw)
    erase(v);
  vfprintf(v->fp, fmt, ap);
  fputc('\n', v->fp);
  va_end(ap);
  if (redraw)
    draw(v);
  fflush(v->fp);
}

void cli_view_end(cli_view_t *v) {
  v->ended = true;
  v->drawn = 0;
  fflush(v->fp);
}

void cli_view_free(cli_view_t *v) {
  if (v) {
    free(v->rows);
    free(v);
  }
}

static void on_state(kite_bus_t *bus, const kite_event_t *ev,
                     const kite_ev_node_state_changed_t *p, void *data) {
  (void)bus;
  (void)ev;
  cli_view_state(data, p->rank, kite_node_state_name(p->from), kite_node_state_name(p->to),
                 p->reason);
}

static void on_progress(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_bootstrap_progress_t *p, void *data) {
  (void)bus;
  (void)ev;
  cli_view_progress(data, p->rank, p->step, p->total, p->name);
}

static void on_launched(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_instance_launched_t *p, void *data) {
  (void)bus;
  (void)ev;
  cli_view_address(data, p->rank, p->address);
}

int cli_view_attach(cli_view_t *v, kite_bus_t *bus) {
  int rc = kite_on_node_state_changed(bus, KITE_KEY_ANY, on_state, v, &v->subs[0]);
  if (rc == 0)
    rc = kite_on_bootstrap_progress(bus, KITE_KEY_ANY, on_progress, v, &v->subs[1]);
  if (rc == 0)
    rc = kite_on_instance_launched(bus, KITE_KEY_ANY, on_launched, v, &v->subs[2]);
  return rc;
}

void cli_view_detach(cli_view_t *v, kite_bus_t *bus) {
  for (size_t i = 0; i < sizeof(v->subs) / sizeof(v->subs[0]); i++)
    kite_bus_unsubscribe(bus, v->subs[i]);
}
