#ifndef KITE_CLI_H
#define KITE_CLI_H

/* Declarations shared by the files of the `kite` command. Never installed.
 *
 * Exit statuses: 0 success; 1 a command failed on a node, or the pool could not be opened or
 * closed; 2 a usage error or a bad spec (nothing was launched); 130 interrupted. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kite/kite.h"

#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 130

/* The version of the control socket's protocol (every request and reply carries it as "v"). */
#define CLI_PROTO_VERSION 1

/* ---- options common to every subcommand ------------------------------------------------- */

typedef struct cli_opts {
  bool plain; /* no live redraw, even on a terminal */
  bool json;  /* machine-readable output */
  bool help;
} cli_opts_t;

/* ---- util.c ------------------------------------------------------------------------------- */

void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "kite CMD: MSG" and the hint line, returns CLI_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *cli_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* $KITE_HOME, else $HOME/.kite (malloc'd, no trailing slash). */
char *cli_home(void);
/* mkdir -p with mode. 0 or -errno. */
int cli_mkdir_p(const char *path, int mode);
/* Opens the store in cli_home(), printing why on failure. */
kite_store_t *cli_store_open(void);
/* Whether process pid is alive. */
bool cli_pid_alive(int64_t pid);
/* Waits (at most timeout_ms) for process pid to end, on a pidfd; whether it has. */
bool cli_wait_exit(int64_t pid, int timeout_ms);
/* The control socket of pool name: HOME/run/NAME.sock. */
char *cli_socket_path(const char *name);
char *cli_log_path(const char *name);
/* Standard base64 of buf (malloc'd) / decoding (malloc'd, *len set), NULL on bad input. */
char *cli_b64_encode(const void *buf, size_t len);
unsigned char *cli_b64_decode(const char *s, size_t *len);
/* Parses a non-negative decimal rank. */
bool cli_parse_rank(const char *s, uint32_t *out);
/* Parses a rank list ("3", "0-3,7") and appends each rank to out (a JSON array). */
bool cli_parse_rank_list(const char *s, json_t *out);
/* Whether live redraws may be used on fp. */
bool cli_is_live(FILE *fp, const cli_opts_t *o);
/* Wall-clock ms. */
int64_t cli_now_ms(void);
/* A human "HH:MM:SS" of a wall-clock ms (static buffer). */
const char *cli_clock(int64_t ms);

/* Line splitter for output streams: prefixes every complete line with "[rank] ". */
typedef struct cli_lines {
  char *buf; /* the start of a line, up to CLI_LINE_HOLD bytes: kept until its newline */
  size_t len;
  bool mid;         /* a longer line's start was written (labelled): the rest follows unlabelled */
  unsigned attempt; /* of the lines being fed: 2 and up are labelled "[rank #attempt] " */
  const char *host; /* when set, lines are labelled "host: " instead (pdsh's form, for dshbak) */
} cli_lines_t;
/* Sets the attempt the next bytes come from; a partial line of another attempt is flushed. */
void cli_lines_attempt(cli_lines_t *l, FILE *fp, uint32_t rank, unsigned attempt);
void cli_lines_feed(cli_lines_t *l, FILE *fp, uint32_t rank, const void *data, size_t len);
void cli_lines_flush(cli_lines_t *l, FILE *fp, uint32_t rank);

/* ---- view.c: node states and bootstrap progress ---------------------------------------- */

typedef struct cli_view cli_view_t;
/* live: redraw one line per node in place; else plain lines. */
cli_view_t *cli_view_new(FILE *fp, unsigned nodes, bool live);
void cli_view_state(cli_view_t *v, uint32_t rank, const char *from, const char *to,
                    const char *reason);
void cli_view_progress(cli_view_t *v, uint32_t rank, unsigned step, unsigned total,
                       const char *name);
void cli_view_address(cli_view_t *v, uint32_t rank, const char *address);
/* Prints a plain line (above the live table when live). */
void cli_view_note(cli_view_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Stops redrawing: the table stays as it is, later output goes below it. */
void cli_view_end(cli_view_t *v);
void cli_view_free(cli_view_t *v);
/* Subscribes v to the bus's node_state_changed, bootstrap_progress and node_ready events. */
int cli_view_attach(cli_view_t *v, kite_bus_t *bus);
void cli_view_detach(cli_view_t *v, kite_bus_t *bus);

/* "digitalocean", "digitalocean or hetzner", "any provider's": where a spec's nodes go. */
const char *cli_spec_providers(const kite_pool_spec_t *ps, char *buf, size_t size);

/* ---- engine.c: a runtime with the providers a spec may name ----------------------------- */

typedef struct cli_engine {
  kite_runtime_t *rt;
  /* The providers whose machines are processes of this host (registry: host_processes), which
   * run in every kite process, and what each one's start gave. */
  const kite_provider_info_t *host[4];
  void *host_handle[4];
  size_t host_n;
  kite_component_t guard; /* tier POOL: says when a shutdown has begun */
  bool shutting_down;     /* a shutdown began (a signal, or ours) */
  /* Called once when a shutdown begins, before any pool hears of it (may be NULL). */
  void (*on_shutdown)(struct cli_engine *e, void *data);
  void *data;
} cli_engine_t;

/* Creates the runtime and adds the providers of this host's processes (local), the provider
 * called provider (NULL: the registry's default), each through the registry (provider_options
 * go only to the one named), the transport and the bootstrap runner. Prints why on failure. */
int cli_engine_start(cli_engine_t *e, const char *provider, const char *provider_options);
/* The same for a pool spec: its provider, or each of its providers (provider: [..] with each
 * one's options under its name; provider: any, every provider with a catalog that finds
 * credentials here). */
int cli_engine_start_spec(cli_engine_t *e, const kite_pool_spec_t *ps);
/* Runs the loop to its end and frees the runtime. */
void cli_engine_finish(cli_engine_t *e);
/* The handle start gave the host-processes provider called name, or NULL. */
void *cli_engine_host(const cli_engine_t *e, const char *name);

/* ---- client.c: the control socket, client side -------------------------------------------- */

typedef struct cli_conn {
  int fd;
  char *buf;
  size_t len, cap, used;
} cli_conn_t;

/* Connects to pool name's owner. 0, or -1 with *why set (static text) when nobody listens. */
int cli_conn_open(cli_conn_t *c, const char *name, const char **why);
int cli_conn_send(cli_conn_t *c, json_t *req); /* steals req */
/* Next reply line as a JSON object (NULL at EOF or on error). *raw (optional) gets the line,
 * valid until the next call. */
json_t *cli_conn_recv(cli_conn_t *c, const char **raw);
void cli_conn_close(cli_conn_t *c);
/* Prints a node table from the owner's or the store's "nodes" array. */
void cli_print_nodes(FILE *fp, json_t *nodes);
/* One request, the replies printed as a task's output and result; returns the exit code. */
int cli_print_task_replies(cli_conn_t *c, const cli_opts_t *o, bool single_rank);

/* ---- orphans.c: instances with kite's pool tags that no live pool owns ------------------- */

typedef struct cli_orphan {
  char *provider, *reach, *instance_id, *tag;
} cli_orphan_t;

typedef struct cli_orphans {
  cli_orphan_t *v;
  size_t n, cap;
  unsigned places; /* provider and reach records asked */
  unsigned failed; /* of those, how many could not be asked */
} cli_orphans_t;

/* Asks every provider and reach record the store has used for kite-tagged instances; keeps
 * those no running pool owns. Prints why on failure (then the list may be incomplete). */
int cli_orphans_find(kite_store_t *st, cli_orphans_t *out);
void cli_orphans_print(FILE *fp, const cli_orphans_t *o);
/* Records each orphan under its pool and takes those pools down; exit code. */
int cli_orphans_down(kite_store_t *st, const cli_orphans_t *o);
void cli_orphans_free(cli_orphans_t *o);

/* ---- the subcommands ------------------------------------------------------------------------ */

int cli_cmd_run(int argc, char **argv);
/* `kite exec -w HOSTS | --hostfile FILE`: a pool of the ssh provider over those machines for
 * one command (run.c). cmd: argv (as_argv) or words of one shell command line. */
int cli_exec_hosts(const char *hosts, const char *hostfile, const char *const *cmd, int ncmd,
                   bool as_argv, json_t *env, long timeout_s, long fanout, bool labels, bool json);
int cli_cmd_up(int argc, char **argv);
int cli_cmd_exec(int argc, char **argv);
int cli_cmd_upload(int argc, char **argv);
int cli_cmd_download(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_events(int argc, char **argv);
int cli_cmd_logs(int argc, char **argv);
int cli_cmd_ssh(int argc, char **argv);
int cli_cmd_down(int argc, char **argv);
int cli_cmd_forget(int argc, char **argv);
int cli_cmd_check(int argc, char **argv);
int cli_cmd_providers(int argc, char **argv);
int cli_cmd_offers(int argc, char **argv);
int cli_cmd_cost(int argc, char **argv);
/* What a store's instance has cost by now (cost.c): from when its bill started to when it was
 * confirmed gone (or now), under its provider's billing granularity. */
kite_cost_bill_t cli_instance_bill(const kite_store_instance_t *x, int64_t now);
/* What a user should know of a checked spec before it runs (on stderr): a dead-man's switch that
 * does not end the provider's bill. */
void cli_spec_notes(const kite_spec_t *spec);
/* `kite down NAME` of one pool (down.c); exit code. */
int cli_down_pool(const char *name);

/* The owner process of `kite up` (owner.c): opens the pool and serves it on the control
 * socket (listen_fd, bound and listening) until it is closed; returns the daemon's exit
 * status. */
typedef struct cli_run_opts {
  const char *const *argv;   /* the command as an argument vector, or */
  const char *shell;         /* as a shell script (the spec's run:, or a command line) */
  kite_task_opts_t task;     /* env, timeout, fanout, retries */
  bool live;                 /* redraw node states in place (a terminal) */
  bool quiet;                /* no opening/ready/closed lines, no node view (kite exec -w) */
  const char *const *labels; /* by rank: lines labelled "LABEL: " (pdsh's form), or NULL */
  bool json;                 /* stdout: the command's output and result as kite exec --json's */
} cli_run_opts_t;

/* With run (kite run), the owner runs in the foreground: it opens the pool, runs run's command
 * on every node with its output on this terminal, closes the pool and returns the run's exit
 * status; meanwhile the socket serves the pool to other kite commands as for kite up. */
int cli_owner_main(kite_spec_t *spec, const char *sock_path, int listen_fd,
                   const cli_run_opts_t *run);
/* Binds and listens on the unix socket at path, mode 0600: the fd, or -1 (errno set). */
int cli_listen_on(const char *path);
/* Whether something accepts connections on the unix socket at path. */
bool cli_socket_answers(const char *path);
/* The control socket of pool name, bound and listening (a dead owner's stale one replaced;
 * one that answers refused): the fd and *sock_out (malloc'd), or -1 with the error printed as
 * cmd's. */
int cli_pool_listen(const char *cmd, const char *name, char **sock_out);
/* Writes this process's pid into the pool's lock file (a forked owner, after the fork). */
void cli_pool_lock_mine(void);

/* Help texts (main.c). */
void cli_help_for(const char *cmd, FILE *fp);

#endif
