/* `kite up SPEC`: open a pool in a background process that owns it.
 *
 * The control socket is bound and listening before the fork, so the owner inherits a socket
 * that already accepts connections and this process can connect at once: no readiness race,
 * and no waiting for a file to appear. The owner starts its own session (a Ctrl-C here does
 * not reach it) and logs to $KITE_HOME/logs/NAME.log. This process then asks the owner to
 * "watch": it receives the events so far and the live ones, draws the node view, and returns
 * when the owner reports the pool open (exit 0, with the node table) or failed (exit 1, with
 * the reason). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

static const char *up_name;

static void on_sigint(int sig) {
  (void)sig;
  static char msg[256];
  int n = snprintf(msg, sizeof(msg),
                   "\nkite: stopped watching; pool %s keeps opening in the background: "
                   "`kite status %s` shows it, `kite down %s` closes it\n",
                   up_name, up_name, up_name);
  ssize_t w = write(2, msg, n > 0 ? (size_t)n : 0);
  (void)w;
  _exit(CLI_EXIT_INTERRUPTED);
}

static void tail_log(const char *path) {
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return;
  char *lines[15] = {0};
  size_t k = 0, cap = 0;
  char *line = NULL;
  while (getline(&line, &cap, fp) > 0) {
    free(lines[k % 15]);
    lines[k % 15] = strdup(line);
    k++;
  }
  free(line);
  fclose(fp);
  for (size_t m = k > 15 ? k - 15 : 0; m < k; m++)
    fprintf(stderr, "  %s", lines[m % 15] ? lines[m % 15] : "\n");
  for (size_t m = 0; m < 15; m++)
    free(lines[m]);
}

/* Follows the owner until the pool is open or failed. */
static int watch(const char *name, unsigned nodes, const cli_opts_t *o, const char *log) {
  cli_conn_t c;
  const char *why = NULL;
  if (cli_conn_open(&c, name, &why) != 0 ||
      cli_conn_send(&c, json_pack("{s:s}", "op", "watch")) != 0) {
    cli_err("up: the owner of pool %s is not answering (%s); its log %s says why:", name,
            why ? why : "connection closed", log);
    tail_log(log);
    cli_conn_close(&c);
    return CLI_EXIT_FAIL;
  }
  cli_view_t *v = cli_view_new(stderr, nodes, cli_is_live(stderr, o));
  json_t *j;
  int code = -1;
  while (code < 0 && (j = cli_conn_recv(&c, NULL)) != NULL) {
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *t = json_string_value(json_object_get(j, "t"));
    json_t *d = json_object_get(j, "data");
    uint32_t rank = (uint32_t)json_integer_value(json_object_get(d, "rank"));
    if (type && v && strcmp(type, "node_state_changed") == 0) {
      cli_view_state(v, rank, json_string_value(json_object_get(d, "from")),
                     json_string_value(json_object_get(d, "to")),
                     json_string_value(json_object_get(d, "reason")));
    } else if (type && v && strcmp(type, "bootstrap_progress") == 0) {
      cli_view_progress(v, rank, (unsigned)json_integer_value(json_object_get(d, "step")),
                        (unsigned)json_integer_value(json_object_get(d, "total")),
                        json_string_value(json_object_get(d, "name")));
    } else if (type && v && strcmp(type, "instance_launched") == 0) {
      cli_view_address(v, rank, json_string_value(json_object_get(d, "address")));
    } else if (t && strcmp(t, "open") == 0) {
      if (v)
        cli_view_end(v);
      int status = (int)json_integer_value(json_object_get(j, "status"));
      if (o->json) {
        char *s = json_dumps(j, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
      }
      if (status == 0) {
        /* The pool's record has the owner's pid; add where it listens. */
        kite_store_t *st = cli_store_open();
        char *sock = cli_socket_path(name);
        if (st && sock)
          kite_store_pool_set_state(st, name, "ready",
                                    json_integer_value(json_object_get(j, "pid")), sock);
        free(sock);
        kite_store_close(st);
        if (!o->json) {
          printf("pool %s is up: %d of %d nodes READY (owner pid %lld, log %s)\n", name,
                 (int)json_integer_value(json_object_get(j, "ready")),
                 (int)json_integer_value(json_object_get(j, "size")),
                 (long long)json_integer_value(json_object_get(j, "pid")), log);
          cli_print_nodes(stdout, json_object_get(j, "nodes"));
        }
        code = 0;
      } else {
        cli_err("up: pool %s could not be opened: %s", name,
                json_string_value(json_object_get(j, "message")));
        cli_err("up: its instances are being terminated; the owner's log is %s", log);
        code = CLI_EXIT_FAIL;
      }
    } else if (t && strcmp(t, "error") == 0) {
      cli_err("up: %s", json_string_value(json_object_get(j, "message")));
      code = CLI_EXIT_FAIL;
    }
    json_decref(j);
  }
  if (code < 0) {
    cli_err("up: the owner of pool %s exited before the pool was ready; the end of its log %s:",
            name, log);
    tail_log(log);
    code = CLI_EXIT_FAIL;
  }
  cli_view_free(v);
  cli_conn_close(&c);
  return code;
}

int cli_cmd_up(int argc, char **argv) {
  cli_opts_t o = {0};
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("up", stdout);
      return 0;
    } else if (strcmp(argv[i], "--plain") == 0) {
      o.plain = true;
    } else if (strcmp(argv[i], "--json") == 0) {
      o.json = true;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return cli_usage("up", "unknown option %s", argv[i]);
    } else if (path == NULL) {
      path = argv[i];
    } else {
      return cli_usage("up", "unexpected argument '%s'", argv[i]);
    }
  }
  if (path == NULL)
    return cli_usage("up", "missing the spec file (kite up SPEC)");
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
  cli_spec_notes(spec);
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  const char *name = ps->name;
  up_name = name;

  /* Refuse early, with the owner's pid, when the pool is already up. */
  kite_store_t *st = cli_store_open();
  if (st == NULL) {
    kite_spec_free(spec);
    return CLI_EXIT_FAIL;
  }
  kite_store_pool_t rec = {0};
  if (kite_store_pool_get(st, name, &rec) == 0) {
    bool alive = rec.owner_pid > 0 && rec.owner_pid != getpid() && cli_pid_alive(rec.owner_pid);
    int64_t pid = rec.owner_pid;
    unsigned live = rec.live_instances;
    kite_store_pool_clear(&rec);
    if (alive) {
      cli_err("up: pool %s is already up (owner pid %lld); use it, or `kite down %s` first", name,
              (long long)pid, name);
      kite_store_close(st);
      kite_spec_free(spec);
      return CLI_EXIT_FAIL;
    }
    if (live > 0) {
      cli_err("up: pool %s still has %u instance(s) recorded live by an earlier owner that "
              "died; run `kite down %s` first (they may still be running)",
              name, live, name);
      kite_store_close(st);
      kite_spec_free(spec);
      return CLI_EXIT_FAIL;
    }
  }
  kite_store_close(st);

  char *home = cli_home();
  char *run_dir = cli_sprintf("%s/run", home);
  char *log_dir = cli_sprintf("%s/logs", home);
  char *sock = cli_socket_path(name);
  char *log = cli_log_path(name);
  free(home);
  int code = CLI_EXIT_FAIL;
  int lfd = -1, logfd = -1;
  if (cli_mkdir_p(run_dir, 0700) != 0 || cli_mkdir_p(log_dir, 0700) != 0) {
    cli_err("up: cannot create %s and %s: %s", run_dir, log_dir, strerror(errno));
    goto out;
  }
  chmod(run_dir, 0700);
  free(sock);
  sock = NULL;
  lfd = cli_pool_listen("up", name, &sock);
  if (lfd < 0)
    goto out;
  logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (logfd < 0) {
    cli_err("up: cannot open the log %s: %s", log, strerror(errno));
    goto out;
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    cli_err("up: cannot start the owner process: %s", strerror(errno));
    goto out;
  }
  if (pid == 0) {
    /* The owner: its own session, no terminal, output to the log. */
    setsid();
    cli_pool_lock_mine();
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      if (devnull > 2)
        close(devnull);
    }
    dup2(logfd, 1);
    dup2(logfd, 2);
    close(logfd);
    setvbuf(stdout, NULL, _IOLBF, 0);
    setvbuf(stderr, NULL, _IOLBF, 0);
    int status = cli_owner_main(spec, sock, lfd, NULL);
    fflush(NULL);
    _exit(status);
  }
  close(lfd);
  lfd = -1;
  signal(SIGINT, on_sigint);
  fprintf(stderr, "kite: opening pool %s in the background (owner pid %d, log %s)\n", name,
          (int)pid, log);
  code = watch(name, ps->nodes, &o, log);
out:
  if (lfd >= 0)
    close(lfd);
  if (logfd >= 0)
    close(logfd);
  free(run_dir);
  free(log_dir);
  free(sock);
  free(log);
  kite_spec_free(spec);
  return code;
}
