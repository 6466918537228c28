/* `kite run SPEC [-- CMD…]`: open the pool, broadcast `run:` (or CMD) with every line of
 * output prefixed by its rank, close the pool, and exit non-zero when any rank failed.
 *
 * Ctrl-C (or SIGTERM) starts the runtime's clean shutdown: the pool closes first, which
 * cancels the running commands and terminates every instance; the screen says so. A second
 * Ctrl-C exits at once: the state store already records every instance, so `kite down NAME`
 * finishes the job. Decisions to close the pool are taken on the next loop turn (a timer),
 * never inside a pool callback, so a shutdown that began meanwhile is always seen first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

typedef struct run {
  cli_engine_t eng;
  kite_spec_t *spec;
  const char *name;
  kite_pool_t *pool;
  cli_view_t *view;
  const char *const *argv; /* CMD after --, or NULL */
  const char *shell;       /* or a shell command line; neither: the spec's run: */
  kite_task_opts_t opts;   /* env, timeout, fanout of the command */
  bool quiet;              /* no "opening"/"ready"/"closed" lines (kite exec -w) */
  cli_lines_t (*lines)[2];
  unsigned nodes;
  uv_timer_t later;
  bool close_asked, interrupted, closed_seen;
  int exit_code;
  kite_sub_t closed_sub;
} run_t;

static void close_pool_later(run_t *r);

static void on_shutdown_done(kite_runtime_t *rt, void *data) {
  run_t *r = data;
  (void)rt;
  uv_close((uv_handle_t *)&r->later, NULL);
}

static void on_second_signal(kite_runtime_t *rt, int signum) {
  (void)rt;
  (void)signum;
  /* The store is written before every launch and after every confirmed termination, so it
   * is accurate whatever this process was doing. */
  static const char msg[] = "\nkite: interrupted again: exiting now; instances that were not "
                            "confirmed terminated are still recorded: run `kite down` with the "
                            "pool's name to terminate them\n";
  ssize_t w = write(2, msg, sizeof(msg) - 1);
  (void)w;
  _exit(CLI_EXIT_INTERRUPTED);
}

static void on_engine_shutdown(cli_engine_t *e, void *data) {
  run_t *r = data;
  (void)e;
  if (r->close_asked)
    return; /* our own shutdown, after the pool closed */
  r->interrupted = true;
  r->exit_code = CLI_EXIT_INTERRUPTED;
  if (r->view)
    cli_view_end(r->view);
  fprintf(stderr,
          "kite: interrupted: cancelling the running commands and terminating the instances "
          "of pool %s (Ctrl-C again to exit at once; `kite down %s` finishes the job)\n",
          r->name, r->name);
}

static void on_pool_closed_ev(kite_bus_t *bus, const kite_event_t *ev,
                              const kite_ev_pool_closed_t *p, void *data) {
  run_t *r = data;
  (void)bus;
  (void)ev;
  if (r->closed_seen)
    return;
  r->closed_seen = true;
  if (!r->quiet)
    fprintf(stderr, "kite: pool %s closed: every instance terminated and confirmed\n", p->name);
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  run_t *r = data;
  (void)pool;
  r->pool = NULL;
  if (status != 0) {
    cli_err("pool %s: some instances could not be confirmed terminated (%s); they stay "
            "recorded: run `kite down %s` to retry",
            r->name, kite_strerror(status), r->name);
    r->exit_code = CLI_EXIT_FAIL;
  }
  kite_runtime_shutdown(r->eng.rt, on_shutdown_done, r);
}

static void on_later(uv_timer_t *t) {
  run_t *r = kite_container_of(t, run_t, later);
  if (r->eng.shutting_down || r->close_asked || r->pool == NULL)
    return; /* the shutdown closes the pool */
  r->close_asked = true;
  if (r->view)
    cli_view_end(r->view);
  kite_pool_close(r->pool, on_closed, r);
}

static void close_pool_later(run_t *r) {
  uv_timer_start(&r->later, on_later, 0, 0);
}

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  run_t *r = data;
  (void)pool;
  if (rank >= r->nodes)
    return;
  int s = stream == 2 ? 1 : 0;
  cli_lines_attempt(&r->lines[rank][s], s ? stderr : stdout, rank, attempt);
  cli_lines_feed(&r->lines[rank][s], s ? stderr : stdout, rank, buf, len);
}

static void print_rank_failure(const kite_rank_result_t *rr) {
  if (rr->error != 0)
    fprintf(stderr, "kite: rank %u failed: %s%s%s\n", rr->rank, kite_strerror(rr->error),
            rr->message ? ": " : "", rr->message ? rr->message : "");
  else if (rr->signal)
    fprintf(stderr, "kite: rank %u failed: killed by signal %s\n", rr->rank, rr->signal);
  else
    fprintf(stderr, "kite: rank %u failed: exit status %d\n", rr->rank, rr->exit_status);
}

static void on_broadcast(kite_pool_t *pool, int status, const kite_task_result_t *res, void *data) {
  run_t *r = data;
  (void)pool;
  for (unsigned i = 0; i < r->nodes; i++) {
    cli_lines_flush(&r->lines[i][0], stdout, i);
    cli_lines_flush(&r->lines[i][1], stderr, i);
  }
  if (status != 0) {
    cli_err("the command could not run: %s", kite_strerror(status));
    if (!r->interrupted)
      r->exit_code = CLI_EXIT_FAIL;
  } else {
    for (unsigned i = 0; i < res->count; i++) {
      const kite_rank_result_t *rr = &res->ranks[i];
      if (rr->error != 0 || rr->exit_status != 0 || rr->signal)
        print_rank_failure(rr);
    }
    if (res->failed) {
      fprintf(stderr, "kite: %u of %u ranks failed\n", res->failed, res->count);
      if (!r->interrupted)
        r->exit_code = CLI_EXIT_FAIL;
    }
  }
  close_pool_later(r);
}

static void on_open(kite_pool_t *pool, int status, const char *message, void *data) {
  run_t *r = data;
  if (r->view)
    cli_view_end(r->view);
  if (status != 0) {
    if (!r->interrupted) {
      cli_err("pool %s could not be opened: %s", r->name,
              message ? message : kite_strerror(status));
      r->exit_code = CLI_EXIT_FAIL;
    }
    close_pool_later(r);
    return;
  }
  if (r->eng.shutting_down) {
    close_pool_later(r);
    return;
  }
  if (!r->quiet)
    fprintf(stderr, "kite: pool %s ready: %u of %u nodes READY\n", r->name,
            kite_pool_ready_count(pool), kite_pool_size(pool));
  kite_cmd_t cmd = {.argv = r->argv,
                    .shell = r->argv    ? NULL
                             : r->shell ? r->shell
                                        : kite_spec_run(r->spec)};
  int rc = kite_pool_broadcast(pool, &cmd, &r->opts, on_output, on_broadcast, r, NULL);
  if (rc != 0) {
    cli_err("cannot start the command: %s", kite_strerror(rc));
    r->exit_code = CLI_EXIT_FAIL;
    close_pool_later(r);
  }
}

/* Opens r->spec's pool, runs the command on every node, closes the pool; the exit code. Frees
 * the spec. */
static int run_spec(run_t *r, bool plain) {
  cli_opts_t o = {.plain = plain};
  const kite_pool_spec_t *ps = kite_spec_pool(r->spec);
  r->name = ps->name;
  r->nodes = ps->nodes;
  r->lines = calloc(ps->nodes, sizeof(*r->lines));
  r->eng.on_shutdown = on_engine_shutdown;
  r->eng.data = r;
  if (r->lines == NULL ||
      cli_engine_start(&r->eng, ps->provider ? ps->provider : "local", ps->provider_options) != 0) {
    free(r->lines);
    kite_spec_free(r->spec);
    return CLI_EXIT_FAIL;
  }
  uv_timer_init(kite_runtime_loop(r->eng.rt), &r->later);
  kite_bus_t *bus = kite_runtime_bus(r->eng.rt);
  r->view = cli_view_new(stderr, ps->nodes, cli_is_live(stderr, &o));
  if (r->view)
    cli_view_attach(r->view, bus);
  kite_on_pool_closed(bus, KITE_KEY_ANY, on_pool_closed_ev, r, &r->closed_sub);
  kite_runtime_handle_signals(r->eng.rt, on_shutdown_done, on_second_signal, r);
  if (!r->quiet)
    fprintf(stderr, "kite: opening pool %s: %u %s node%s\n", r->name, ps->nodes,
            ps->provider ? ps->provider : "local", ps->nodes == 1 ? "" : "s");
  int rc = kite_pool_open(r->eng.rt, ps, on_open, r, &r->pool);
  if (rc != 0) {
    cli_err("cannot open pool %s: %s (the message above says why)", r->name, kite_strerror(rc));
    r->exit_code = CLI_EXIT_FAIL;
    r->close_asked = true;
    kite_runtime_shutdown(r->eng.rt, on_shutdown_done, r);
  }
  cli_engine_finish(&r->eng);
  cli_view_free(r->view);
  for (unsigned k = 0; k < r->nodes; k++) {
    free(r->lines[k][0].buf);
    free(r->lines[k][1].buf);
  }
  free(r->lines);
  kite_spec_free(r->spec);
  return r->exit_code;
}

int cli_exec_hosts(const char *hosts, const char *hostfile, const char *const *cmd, int ncmd,
                   bool as_argv, json_t *env, long timeout_s, long fanout) {
  json_t *list = json_array();
  if (hosts) {
    char *copy = strdup(hosts);
    for (char *save = NULL, *h = copy ? strtok_r(copy, ",", &save) : NULL; h;
         h = strtok_r(NULL, ",", &save))
      json_array_append_new(list, json_string(h));
    free(copy);
  }
  if (hostfile) {
    FILE *fp = fopen(hostfile, "r");
    if (fp == NULL) {
      cli_err("exec: cannot read the host file %s: %s", hostfile, strerror(errno));
      json_decref(list);
      return CLI_EXIT_USAGE;
    }
    char line[1024];
    while (fgets(line, sizeof(line), fp)) {
      char *h = line + strspn(line, " \t");
      h[strcspn(h, " \t\r\n#")] = '\0';
      if (*h)
        json_array_append_new(list, json_string(h));
    }
    fclose(fp);
  }
  if (json_array_size(list) == 0) {
    json_decref(list);
    return cli_usage("exec", "no hosts given");
  }
  /* A pool of the ssh provider over exactly these machines, for this one command. */
  size_t nhosts = json_array_size(list);
  json_t *opts = json_pack("{s:o}", "hosts", list);
  char *opts_s = opts ? json_dumps(opts, JSON_COMPACT) : NULL;
  json_decref(opts);
  char *text = opts_s ? cli_sprintf("name: w-%d\nprovider: ssh\nnodes: %zu\n"
                                    "provider_options: %s\n",
                                    (int)getpid(), nhosts, opts_s)
                      : NULL;
  free(opts_s);
  run_t r = {.quiet = true};
  char *errmsg = NULL;
  int rc = text ? kite_spec_load_string(text, strlen(text), "-w", &r.spec, &errmsg) : KITE_ENOMEM;
  if (rc == 0 && (rc = kite_registry_check_spec(r.spec, &errmsg)) != 0) {
    kite_spec_free(r.spec);
    r.spec = NULL;
  }
  free(text);
  if (rc != 0) {
    cli_err("exec: %s", errmsg ? errmsg : kite_strerror(rc));
    free(errmsg);
    return CLI_EXIT_USAGE;
  }
  char *line = NULL;
  if (as_argv) {
    r.argv = cmd;
  } else {
    size_t len = 1;
    for (int k = 0; k < ncmd; k++)
      len += strlen(cmd[k]) + 1;
    line = calloc(1, len);
    for (int k = 0; line && k < ncmd; k++) {
      if (k)
        strcat(line, " ");
      strcat(line, cmd[k]);
    }
    r.shell = line;
  }
  const char **ev = calloc(json_array_size(env) + 1, sizeof(*ev));
  for (size_t k = 0; ev && k < json_array_size(env); k++)
    ev[k] = json_string_value(json_array_get(env, k));
  r.opts.env = ev && json_array_size(env) ? ev : NULL;
  r.opts.timeout_ms = (uint64_t)timeout_s * 1000;
  r.opts.fanout = (unsigned)fanout;
  int code = run_spec(&r, true);
  free(ev);
  free(line);
  return code;
}

int cli_cmd_run(int argc, char **argv) {
  cli_opts_t o = {0};
  long retries = -1;
  const char *path = NULL;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("run", stdout);
      return 0;
    } else if (strcmp(argv[i], "--plain") == 0) {
      o.plain = true;
    } else if (strcmp(argv[i], "--retries") == 0) {
      char *end = NULL;
      retries = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : -1;
      if (retries < 0 || retries > 100 || *end)
        return cli_usage("run", "--retries needs a number from 0 to 100");
      i++;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return cli_usage("run", "unknown option %s", argv[i]);
    } else if (path == NULL) {
      path = argv[i];
    } else {
      return cli_usage("run", "unexpected argument '%s'; put the command after --", argv[i]);
    }
  }
  if (path == NULL)
    return cli_usage("run", "missing the spec file (kite run SPEC [-- CMD...])");
  const char *const *cmd_argv = i < argc ? (const char *const *)&argv[i] : NULL;

  run_t r = {.argv = cmd_argv};
  char *errmsg = NULL;
  int rc = kite_spec_load_file(path, &r.spec, &errmsg);
  /* Then what the provider it names honours: a refused key ends here, before anything is
   * recorded or launched. */
  if (rc == 0 && (rc = kite_registry_check_spec(r.spec, &errmsg)) != 0) {
    kite_spec_free(r.spec);
    r.spec = NULL;
  }
  if (rc != 0) {
    fprintf(stderr, "%s\n", errmsg ? errmsg : kite_strerror(rc));
    free(errmsg);
    return CLI_EXIT_USAGE;
  }
  if (cmd_argv == NULL && kite_spec_run(r.spec) == NULL) {
    fprintf(stderr,
            "%s: the spec has no `run:` and no command was given; add `run: CMD` to it "
            "or give one: kite run %s -- CMD...\n",
            path, path);
    kite_spec_free(r.spec);
    return CLI_EXIT_USAGE;
  }
  r.opts.retries = retries >= 0 ? (unsigned)retries : kite_spec_retries(r.spec);
  if (r.opts.retries > 0 && !kite_spec_pool(r.spec)->replace) {
    kite_spec_free(r.spec);
    return cli_usage("run",
                     "--retries re-runs a command on the replacement of a lost node, and "
                     "%s has replacement off; add replace: {on_preemption: true}",
                     path);
  }
  return run_spec(&r, o.plain);
}
