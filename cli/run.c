/* `kite run SPEC [-- CMD…]`: open the pool, run `run:` (or CMD) on every node with every line
 * of output prefixed by its rank, close the pool, and exit non-zero when any rank failed.
 *
 * The process is the pool's owner while it lives (cli_owner_main in the foreground): its
 * control socket serves the pool to `kite status`, `exec`, `events`, `logs` and `down` exactly
 * as a `kite up` pool's. Ctrl-C (or SIGTERM) starts the runtime's clean shutdown: the pool
 * closes first, which cancels the running commands on the nodes and terminates every
 * instance; the screen says so. A second Ctrl-C exits at once: the state store already
 * records every instance, so `kite down NAME` finishes the job. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Serves spec's pool on its socket and runs opts' command on it; frees the spec. */
static int run_owner(kite_spec_t *spec, const cli_run_opts_t *opts) {
  char *sock = NULL;
  int fd = cli_pool_listen("run", kite_spec_pool(spec)->name, &sock);
  if (fd < 0) {
    kite_spec_free(spec);
    return CLI_EXIT_FAIL;
  }
  int code = cli_owner_main(spec, sock, fd, opts);
  free(sock);
  kite_spec_free(spec);
  return code;
}

int cli_exec_hosts(const char *hosts, const char *hostfile, const char *const *cmd, int ncmd,
                   bool as_argv, json_t *env, long timeout_s, long fanout, bool labels, bool json) {
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
  /* The hosts as given label the lines with --host-labels, as pdsh labels them. */
  char **hl = calloc(nhosts + 1, sizeof(*hl));
  for (size_t k = 0; hl && k < nhosts; k++)
    hl[k] = strdup(json_string_value(json_array_get(list, k)));
  json_t *opts = json_pack("{s:o}", "hosts", list);
  char *opts_s = opts ? json_dumps(opts, JSON_COMPACT) : NULL;
  json_decref(opts);
  char *text = opts_s ? cli_sprintf("name: w-%d\nprovider: ssh\nnodes: %zu\n"
                                    "provider_options: %s\n",
                                    (int)getpid(), nhosts, opts_s)
                      : NULL;
  free(opts_s);
  cli_run_opts_t r = {
      .quiet = true, .json = json, .labels = labels ? (const char *const *)hl : NULL};
  kite_spec_t *spec = NULL;
  char *errmsg = NULL;
  int rc = text ? kite_spec_load_string(text, strlen(text), "-w", &spec, &errmsg) : KITE_ENOMEM;
  if (rc == 0 && (rc = kite_registry_check_spec(spec, &errmsg)) != 0) {
    kite_spec_free(spec);
    spec = NULL;
  }
  free(text);
  if (rc != 0) {
    cli_err("exec: %s", errmsg ? errmsg : kite_strerror(rc));
    free(errmsg);
    for (size_t k = 0; hl && k < nhosts; k++)
      free(hl[k]);
    free(hl);
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
  r.task.env = ev && json_array_size(env) ? ev : NULL;
  r.task.timeout_ms = (uint64_t)timeout_s * 1000;
  r.task.fanout = (unsigned)fanout;
  int code = run_owner(spec, &r);
  for (size_t k = 0; hl && k < nhosts; k++)
    free(hl[k]);
  free(hl);
  free(ev);
  free(line);
  return code;
}

/* A candidate's type as the plan prints it: "n1-standard-4+T4:1", or the type. */
static const char *plan_type(json_t *c, char *out, size_t size) {
  const char *type = json_string_value(json_object_get(c, "instance_type"));
  const char *acc = json_string_value(json_object_get(c, "accelerator"));
  if (acc && *acc)
    snprintf(out, size, "%s+%s:%lld", type ? type : "", acc,
             (long long)json_integer_value(json_object_get(c, "accelerator_count")));
  else
    snprintf(out, size, "%s", type ? type : "");
  return out;
}

/* ---- --dry-run: the plan, launching nothing --------------------------------------------- */

typedef struct dry {
  cli_engine_t eng;
  bool json;
  int code;
} dry_t;

static void print_plan(const char *text) {
  json_t *p = json_loads(text, 0, NULL);
  json_t *ranks = json_object_get(p, "ranks"), *cands = json_object_get(p, "candidates");
  printf("plan for pool %s: %zu node%s, $%.4f/h in all%s\n",
         json_string_value(json_object_get(p, "pool")), json_array_size(ranks),
         json_array_size(ranks) == 1 ? "" : "s", json_number_value(json_object_get(p, "hourly")),
         json_is_true(json_object_get(p, "chosen")) ? ""
                                                    : " (the spec names the instance; price not "
                                                      "known before launch)");
  printf("  %-5s %-13s %-14s %-13s %-22s %-5s %10s  %s\n", "RANK", "PROVIDER", "REGION", "ZONE",
         "TYPE", "SPOT", "$/H", "PRICE FROM");
  int64_t now = cli_now_ms();
  size_t i;
  json_t *r;
  json_array_foreach(ranks, i, r) {
    const char *zone = json_string_value(json_object_get(r, "zone"));
    const char *region = json_string_value(json_object_get(r, "region"));
    const char *source = json_string_value(json_object_get(r, "source"));
    int64_t at = json_integer_value(json_object_get(r, "fetched_ms"));
    char from[96] = "-";
    if (source && *source && at > 0) {
      double age = (double)(now - at) / 1000.0;
      if (strncmp(source, "snapshot", 8) == 0)
        snprintf(from, sizeof(from), "%.60s", source);
      else
        snprintf(from, sizeof(from), "%s, %.0f%s old", source,
                 age < 120    ? age
                 : age < 7200 ? age / 60
                              : age / 3600,
                 age < 120    ? "s"
                 : age < 7200 ? "m"
                              : "h");
    }
    char type[128];
    printf("  %-5lld %-13s %-14s %-13s %-22s %-5s %10.4f  %s\n",
           (long long)json_integer_value(json_object_get(r, "rank")),
           json_string_value(json_object_get(r, "provider")), region && *region ? region : "-",
           zone && *zone ? zone : "-", plan_type(r, type, sizeof(type)),
           json_is_true(json_object_get(r, "spot")) ? "yes" : "no",
           json_number_value(json_object_get(r, "price")), from);
  }
  if (json_array_size(cands) > 1) {
    printf("failover order:");
    json_t *c;
    json_array_foreach(cands, i, c) {
      if (i == 8) {
        printf(" … (%zu in all)", json_array_size(cands));
        break;
      }
      const char *zone = json_string_value(json_object_get(c, "zone"));
      char type[128];
      printf("%s %s/%s%s%s/%s%s $%.4f", i ? ";" : "",
             json_string_value(json_object_get(c, "provider")),
             json_string_value(json_object_get(c, "region")), zone && *zone ? "/" : "",
             zone ? zone : "", plan_type(c, type, sizeof(type)),
             json_is_true(json_object_get(c, "spot")) ? " spot" : "",
             json_number_value(json_object_get(c, "price")));
    }
    printf("\n");
  }
  json_decref(p);
}

static void on_plan(int status, const char *plan, const char *message, void *data) {
  dry_t *d = data;
  if (status != 0) {
    cli_err("%s", message ? message : kite_strerror(status));
    d->code = status == KITE_ESPEC || status == KITE_EPRICE ? CLI_EXIT_USAGE : CLI_EXIT_FAIL;
  } else if (d->json) {
    printf("%s\n", plan);
  } else {
    print_plan(plan);
  }
  fflush(stdout);
  kite_runtime_shutdown(d->eng.rt, NULL, NULL);
}

static int dry_run(kite_spec_t *spec, bool json) {
  dry_t d = {.json = json};
  if (cli_engine_start_spec(&d.eng, kite_spec_pool(spec)) != 0) {
    kite_spec_free(spec);
    return CLI_EXIT_FAIL;
  }
  int rc = kite_pool_plan(d.eng.rt, kite_spec_pool(spec), on_plan, &d);
  if (rc != 0) {
    cli_err("cannot plan the pool: %s", kite_strerror(rc));
    d.code = CLI_EXIT_FAIL;
    kite_runtime_shutdown(d.eng.rt, NULL, NULL);
  }
  cli_engine_finish(&d.eng);
  kite_spec_free(spec);
  return d.code;
}

int cli_cmd_run(int argc, char **argv) {
  cli_opts_t o = {0};
  bool dry = false;
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
    } else if (strcmp(argv[i], "--json") == 0) {
      o.json = true;
    } else if (strcmp(argv[i], "--dry-run") == 0) {
      dry = true;
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

  kite_spec_t *spec = NULL;
  char *errmsg = NULL;
  int rc = kite_spec_load_file(path, &spec, &errmsg);
  /* Then what the provider it names honours: a refused key ends here, before anything is
   * recorded or launched. */
  if (rc == 0 && (rc = kite_registry_check_spec(spec, &errmsg)) != 0) {
    kite_spec_free(spec);
    spec = NULL;
  }
  if (rc != 0) {
    fprintf(stderr, "%s\n", errmsg ? errmsg : kite_strerror(rc));
    free(errmsg);
    return CLI_EXIT_USAGE;
  }
  if (dry)
    return dry_run(spec, o.json);
  cli_spec_notes(spec);
  if (cmd_argv == NULL && kite_spec_run(spec) == NULL) {
    fprintf(stderr,
            "%s: the spec has no `run:` and no command was given; add `run: CMD` to it "
            "or give one: kite run %s -- CMD...\n",
            path, path);
    kite_spec_free(spec);
    return CLI_EXIT_USAGE;
  }
  cli_run_opts_t r = {.argv = cmd_argv,
                      .shell = cmd_argv ? NULL : kite_spec_run(spec),
                      .live = cli_is_live(stderr, &o),
                      .json = o.json};
  r.task.retries = retries >= 0 ? (unsigned)retries : kite_spec_retries(spec);
  if (r.task.retries > 0 && !kite_spec_pool(spec)->replace) {
    kite_spec_free(spec);
    return cli_usage("run",
                     "--retries re-runs a command on the replacement of a lost node, and "
                     "%s has replacement off; add replace: {on_preemption: true}",
                     path);
  }
  return run_owner(spec, &r);
}
