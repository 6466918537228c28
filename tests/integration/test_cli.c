/* The `kite` command end to end: the real binary as a subprocess, KITE_HOME in a temporary
 * directory, real sshd nodes from the local provider. Nothing is mocked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"

typedef struct ctx {
  char home[64];
  char kite[4096];
  char name[48];
  char tag[64];
  char spec[128];
} ctx_t;

static void ctx_init(ctx_t *c, const char *what) {
  memset(c, 0, sizeof(*c));
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-cli-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  /* Local nodes log in as kite-node when we are root: it must reach the node directories. */
  assert_int_equal(chmod(c->home, 0755), 0);
  const char *bin = getenv("KITE_BINARY_DIR");
  assert_non_null(bin);
  snprintf(c->kite, sizeof(c->kite), "%s/cli/kite", bin);
  assert_int_equal(access(c->kite, X_OK), 0);
  snprintf(c->name, sizeof(c->name), "c%d-%s", (int)getpid(), what);
  snprintf(c->tag, sizeof(c->tag), "kite-pool-%s", c->name);
  snprintf(c->spec, sizeof(c->spec), "%s/pool.yaml", c->home);
}

static void write_spec(ctx_t *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  FILE *fp = fopen(c->spec, "w");
  assert_non_null(fp);
  fprintf(fp, "name: %s\n", c->name);
  vfprintf(fp, fmt, ap);
  fclose(fp);
  va_end(ap);
}

static char *slurp(const char *path) {
  FILE *fp = fopen(path, "r");
  if (fp == NULL)
    return strdup("");
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *s = calloc(1, (size_t)n + 1);
  if (fread(s, 1, (size_t)n, fp) != (size_t)n)
    s[0] = '\0';
  fclose(fp);
  return s;
}

/* Starts kite with args (NULL-terminated) and KITE_HOME set; stdout goes to HOME/out_name,
 * stderr to HOME/err.txt, or to a pipe whose read end is *pipe_fd when pipe_fd is not NULL.
 * Returns the pid. */
static pid_t spawn_kite(ctx_t *c, const char *out_name, int *pipe_fd, const char *const *args) {
  char out[128], err[128];
  snprintf(out, sizeof(out), "%s/%s", c->home, out_name);
  snprintf(err, sizeof(err), "%s/err.txt", c->home);
  int p[2] = {-1, -1};
  if (pipe_fd)
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv("KITE_HOME", c->home, 1);
    if (getenv("KITE_TEST_LOG") == NULL)
      unsetenv("KITE_LOG");
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = pipe_fd ? p[1] : open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fi = open("/dev/null", O_RDONLY);
    dup2(fi, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    const char *argv[32];
    size_t n = 0;
    argv[n++] = c->kite;
    for (size_t i = 0; args[i] && n < 31; i++)
      argv[n++] = args[i];
    argv[n] = NULL;
    execv(c->kite, (char *const *)argv);
    _exit(127);
  }
  if (pipe_fd) {
    close(p[1]);
    *pipe_fd = p[0];
  }
  return pid;
}

static int wait_exit(pid_t pid) {
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Runs kite to its end; *out and *err (malloc'd) get what it printed. */
static int kite_run(ctx_t *c, char **out, char **err, ...) {
  const char *args[32];
  size_t n = 0;
  va_list ap;
  va_start(ap, err);
  const char *a;
  while ((a = va_arg(ap, const char *)) != NULL && n < 31)
    args[n++] = a;
  args[n] = NULL;
  va_end(ap);
  int code = wait_exit(spawn_kite(c, "out.txt", NULL, args));
  char path[128];
  snprintf(path, sizeof(path), "%s/out.txt", c->home);
  char *o = slurp(path);
  snprintf(path, sizeof(path), "%s/err.txt", c->home);
  char *e = slurp(path);
  if (out)
    *out = o;
  else
    free(o);
  if (err)
    *err = e;
  else
    free(e);
  return code;
}

/* Reads fd until a line containing needle arrives (the events it waits for), or EOF. */
static bool read_until(int fd, const char *needle) {
  char buf[65536];
  size_t len = 0;
  for (;;) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 120000) <= 0)
      return false;
    ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
    if (r <= 0)
      return false;
    len += (size_t)r;
    buf[len] = '\0';
    if (strstr(buf, needle))
      return true;
    if (len > sizeof(buf) / 2) {
      char *nl = strrchr(buf, '\n');
      if (nl) {
        len = strlen(nl + 1);
        memmove(buf, nl + 1, len + 1);
      }
    }
  }
}

static kite_store_t *store_of(ctx_t *c) {
  char path[128];
  snprintf(path, sizeof(path), "%s/state.db", c->home);
  kite_store_t *st = NULL;
  assert_int_equal(kite_store_open(path, &st), 0);
  return st;
}

static size_t live_instances(ctx_t *c) {
  kite_store_t *st = store_of(c);
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  assert_int_equal(kite_store_instances(st, c->name, true, &v, &n), 0);
  kite_store_instances_free(v, n);
  kite_store_close(st);
  return n;
}

static int64_t owner_pid(ctx_t *c) {
  kite_store_t *st = store_of(c);
  kite_store_pool_t p = {0};
  assert_int_equal(kite_store_pool_get(st, c->name, &p), 0);
  int64_t pid = p.owner_pid;
  kite_store_pool_clear(&p);
  kite_store_close(st);
  return pid;
}

/* SIGKILLs pid (not our child) and waits for it to be gone through a pidfd. */
static void kill9(int64_t pid) {
  int fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
  assert_true(fd >= 0);
  assert_int_equal(syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0), 0);
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  assert_int_equal(poll(&pfd, 1, 30000), 1);
  close(fd);
}

static void ctx_done(ctx_t *c) {
  /* Whatever a test did, nothing of its pool may be left running or recorded live. */
  kite_run(c, NULL, NULL, "down", c->name, NULL);
  assert_int_equal(kite_local_count_tagged(c->tag), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
}

/* ---- help and usage ---- */

static void test_help_and_usage(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "help");
  char *out, *err;
  assert_int_equal(kite_run(&c, &out, NULL, "--help", NULL), 0);
  assert_non_null(strstr(out, "commands:"));
  free(out);
  static const char *const cmds[] = {"run",    "up",  "exec", "upload", "download",
                                     "status", "events", "logs", "ssh",    "down"};
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
    assert_int_equal(kite_run(&c, &out, NULL, cmds[i], "--help", NULL), 0);
    assert_non_null(strstr(out, "usage: kite "));
    free(out);
  }
  assert_int_equal(kite_run(&c, NULL, &err, "bogus", NULL), 2);
  assert_non_null(strstr(err, "kite --help"));
  free(err);
  /* A usage error is one line with a hint. */
  assert_int_equal(kite_run(&c, NULL, &err, "exec", NULL), 2);
  assert_non_null(strstr(err, "--help"));
  assert_int_equal(strchr(err, '\n') - err + 1, (long)strlen(err));
  free(err);
  assert_int_equal(kite_run(&c, NULL, &err, "download", "x", "a", "b", NULL), 2);
  assert_non_null(strstr(err, "--rank"));
  free(err);
  ctx_done(&c);
}

/* ---- run ---- */

static void test_run_rank_prefixes_and_exit_codes(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "run");
  write_spec(&c, "nodes: 3\nrun: echo \"hello $KITE_NODE_RANK of $KITE_NUM_NODES\"\n");
  char *out, *err;
  assert_int_equal(kite_run(&c, &out, &err, "run", c.spec, NULL), 0);
  assert_non_null(strstr(out, "[0] hello 0 of 3\n"));
  assert_non_null(strstr(out, "[1] hello 1 of 3\n"));
  assert_non_null(strstr(out, "[2] hello 2 of 3\n"));
  assert_non_null(strstr(err, "closed: every instance terminated"));
  free(out);
  free(err);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  assert_int_equal(live_instances(&c), 0);

  /* CMD after -- replaces run:, as an argument vector kite quotes; failures are non-zero with
   * one line per failed rank. */
  assert_int_equal(kite_run(&c, &out, &err, "run", c.spec, "--", "sh", "-c",
                            "echo \"it's $KITE_NODE_RANK\"; echo oops >&2; exit $KITE_NODE_RANK",
                            NULL),
                   1);
  assert_non_null(strstr(out, "[2] it's 2\n"));
  assert_non_null(strstr(err, "[1] oops\n"));
  assert_null(strstr(err, "rank 0 failed"));
  assert_non_null(strstr(err, "rank 1 failed: exit status 1\n"));
  assert_non_null(strstr(err, "rank 2 failed: exit status 2\n"));
  free(out);
  free(err);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  assert_int_equal(live_instances(&c), 0);
  ctx_done(&c);
}

static void test_run_bad_spec_launches_nothing(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "bad");
  write_spec(&c, "nodes: 2\nresources:\n  cpuz: 4\n");
  kite_spec_t *spec = NULL;
  char *expected = NULL;
  assert_int_equal(kite_spec_load_file(c.spec, &spec, &expected), KITE_ESPEC);
  char *err;
  assert_int_equal(kite_run(&c, NULL, &err, "run", c.spec, NULL), 2);
  /* The loader's message, verbatim, and nothing else. */
  assert_non_null(strstr(expected, "pool.yaml:4:3: unknown key 'cpuz' in resources"));
  size_t el = strlen(expected);
  assert_int_equal(strlen(err), el + 1);
  assert_memory_equal(err, expected, el);
  free(err);
  assert_int_equal(kite_run(&c, NULL, &err, "up", c.spec, NULL), 2);
  assert_memory_equal(err, expected, el);
  free(err);
  free(expected);
  /* Nothing was recorded, so nothing was launched. */
  char db[128];
  snprintf(db, sizeof(db), "%s/state.db", c.home);
  if (access(db, F_OK) == 0) {
    kite_store_t *st = store_of(&c);
    kite_store_pool_t p = {0};
    assert_int_equal(kite_store_pool_get(st, c.name, &p), KITE_ENOENT);
    kite_store_close(st);
  }
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  ctx_done(&c);
}

/* ---- up and the commands that use the owner ---- */

static void test_up_exec_transfer_status_events_down(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "up");
  write_spec(&c, "nodes: 3\nbootstrap:\n  setup: echo booted > boot.txt\n");
  char *out, *err;
  assert_int_equal(kite_run(&c, &out, &err, "up", c.spec, NULL), 0);
  assert_non_null(strstr(out, "is up: 3 of 3 nodes READY"));
  free(out);
  free(err);
  int64_t pid = owner_pid(&c);
  assert_true(pid > 0 && kill((pid_t)pid, 0) == 0);
  assert_int_equal(live_instances(&c), 3);

  /* File modes: the store, the socket and its directory are private. */
  char path[256];
  struct stat st;
  snprintf(path, sizeof(path), "%s/state.db", c.home);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  snprintf(path, sizeof(path), "%s/run/%s.sock", c.home, c.name);
  assert_int_equal(stat(path, &st), 0);
  assert_true(S_ISSOCK(st.st_mode));
  assert_int_equal(st.st_mode & 0777, 0600);
  snprintf(path, sizeof(path), "%s/run", c.home);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0700);

  /* A second up of the same pool is refused. */
  assert_int_equal(kite_run(&c, NULL, &err, "up", c.spec, NULL), 1);
  assert_non_null(strstr(err, "already up"));
  free(err);

  /* exec: every rank, and one rank with its own exit status. */
  assert_int_equal(kite_run(&c, &out, NULL, "exec", c.name, "--", "sh", "-c",
                            "cat boot.txt; echo \"r=$KITE_NODE_RANK\"", NULL),
                   0);
  assert_non_null(strstr(out, "[0] booted\n"));
  assert_non_null(strstr(out, "[2] r=2\n"));
  free(out);
  assert_int_equal(kite_run(&c, &out, &err, "exec", c.name, "--rank", "1", "--", "sh", "-c",
                            "echo one; exit 3", NULL),
                   3);
  assert_string_equal(out, "[1] one\n");
  assert_non_null(strstr(err, "rank 1 failed: exit status 3"));
  free(out);
  free(err);
  /* A rank that does not exist is a usage error, named. */
  assert_int_equal(kite_run(&c, NULL, &err, "exec", c.name, "--rank", "7", "--", "true", NULL),
                   2);
  assert_non_null(strstr(err, "ranks 0 to 2; rank 7 does not exist"));
  free(err);

  /* upload to every node, download from one. */
  char src[128], dst[128];
  snprintf(src, sizeof(src), "%s/src.txt", c.home);
  snprintf(dst, sizeof(dst), "%s/dst.txt", c.home);
  FILE *fp = fopen(src, "w");
  fputs("payload\n", fp);
  fclose(fp);
  assert_int_equal(kite_run(&c, NULL, NULL, "upload", c.name, src, "in/src.txt", NULL), 0);
  assert_int_equal(kite_run(&c, &out, NULL, "exec", c.name, "--", "cat", "in/src.txt", NULL), 0);
  assert_non_null(strstr(out, "[0] payload\n"));
  assert_non_null(strstr(out, "[2] payload\n"));
  free(out);
  assert_int_equal(
      kite_run(&c, NULL, NULL, "download", c.name, "--rank", "2", "in/src.txt", dst, NULL), 0);
  char *got = slurp(dst);
  assert_string_equal(got, "payload\n");
  free(got);

  /* status from the store and the owner, plain and JSON. */
  assert_int_equal(kite_run(&c, &out, NULL, "status", c.name, NULL), 0);
  assert_non_null(strstr(out, c.name));
  assert_non_null(strstr(out, "ready"));
  assert_non_null(strstr(out, "live, from the owner"));
  free(out);
  assert_int_equal(kite_run(&c, &out, NULL, "status", "--json", NULL), 0);
  json_error_t jerr;
  json_t *j = json_loads(out, 0, &jerr);
  assert_non_null(j);
  json_t *p0 = json_array_get(json_object_get(j, "pools"), 0);
  assert_string_equal(json_string_value(json_object_get(p0, "name")), c.name);
  assert_int_equal(json_integer_value(json_object_get(p0, "live_instances")), 3);
  assert_true(json_is_object(json_object_get(p0, "owner")));
  assert_int_equal(json_array_size(json_object_get(json_object_get(p0, "owner"), "nodes")), 3);
  json_decref(j);
  free(out);

  /* events: what the owner kept, as versioned JSON lines. */
  assert_int_equal(kite_run(&c, &out, NULL, "events", "--no-follow", c.name, NULL), 0);
  assert_non_null(strstr(out, "{\"v\":1,"));
  assert_non_null(strstr(out, "\"type\":\"node_state_changed\""));
  assert_non_null(strstr(out, "\"type\":\"task_finished\""));
  for (char *line = out; *line;) {
    char *nl = strchr(line, '\n');
    assert_non_null(nl);
    *nl = '\0';
    json_t *ev = json_loads(line, 0, &jerr);
    assert_non_null(ev);
    json_decref(ev);
    line = nl + 1;
  }
  free(out);

  /* events, live: a follower sees a command run after it connected. */
  int efd = -1;
  const char *eargs[] = {"events", c.name, NULL};
  pid_t ep = spawn_kite(&c, "events.txt", &efd, eargs);
  assert_int_equal(kite_run(&c, NULL, NULL, "exec", c.name, "--rank", "0", "--", "echo",
                            "live-marker", NULL),
                   0);

  /* logs: the commands and their output, kept by the owner. */
  assert_int_equal(kite_run(&c, &out, NULL, "logs", c.name, "--rank", "1", NULL), 0);
  assert_non_null(strstr(out, "[1] one\n"));
  assert_non_null(strstr(out, "[1] (exit 3)"));
  free(out);

  /* ssh with kite's key and the pinned host key; the command is quoted for the remote shell. */
  assert_int_equal(kite_run(&c, &out, &err, "ssh", c.name, "--rank", "1", "--", "echo", "it's",
                            "$HOME", NULL),
                   0);
  assert_string_equal(out, "it's $HOME\n");
  free(out);
  free(err);

  /* down: the owner closes the pool; every instance is confirmed gone. */
  assert_int_equal(kite_run(&c, &out, &err, "down", c.name, NULL), 0);
  assert_non_null(strstr(out, "is down"));
  free(err);
  free(out);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  assert_int_equal(live_instances(&c), 0);
  snprintf(path, sizeof(path), "%s/run/%s.sock", c.home, c.name);
  assert_int_equal(access(path, F_OK), -1);
  /* The follower saw the live command ("live-marker\n" in base64, as task_output carries
   * it) and ended with the owner, after the pool_closed event. */
  close(efd);
  assert_int_equal(wait_exit(ep), 0);
  snprintf(path, sizeof(path), "%s/events.txt", c.home);
  char *ev = slurp(path);
  assert_non_null(strstr(ev, "\"data\":\"bGl2ZS1tYXJrZXIK\""));
  assert_non_null(strstr(ev, "\"type\":\"pool_closed\""));
  free(ev);
  /* With the owner gone, logs come from the store and the owner's log. */
  assert_int_equal(kite_run(&c, &out, NULL, "logs", c.name, NULL), 0);
  assert_non_null(strstr(out, "its owner is not running"));
  assert_non_null(strstr(out, "(exec: echo live-marker) finished"));
  free(out);
  ctx_done(&c);
}

/* ---- a killed owner ---- */

/* Nodes that outlive their controller, as cloud machines do: after `kill -9` of the owner they
 * keep running, and only `kite down` (through the provider, from the store) ends them. */
static void test_kill9_after_ready_then_down(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "k9ready");
  write_spec(&c, "nodes: 2\nprovider_options: {outlive_controller: true}\n");
  assert_int_equal(kite_run(&c, NULL, NULL, "up", c.spec, NULL), 0);
  kill9(owner_pid(&c));
  assert_true(kite_local_count_tagged(c.tag) > 0);
  assert_int_equal(live_instances(&c), 2);
  char *out, *err;
  assert_int_equal(kite_run(&c, &out, NULL, "status", c.name, NULL), 0);
  assert_non_null(strstr(out, "(dead)"));
  free(out);
  assert_int_equal(kite_run(&c, &out, &err, "down", c.name, NULL), 0);
  assert_non_null(strstr(out, "is gone"));
  assert_non_null(strstr(out, "terminated (confirmed by the provider)"));
  free(out);
  free(err);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  assert_int_equal(live_instances(&c), 0);
  /* The name is free again. */
  assert_int_equal(kite_run(&c, NULL, NULL, "up", c.spec, NULL), 0);
  assert_int_equal(kite_run(&c, NULL, NULL, "down", c.name, NULL), 0);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  ctx_done(&c);
}

/* Killed while launching and bootstrapping: records with and without a provider id. */
static void test_kill9_during_provisioning_then_down(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "k9prov");
  write_spec(&c, "nodes: 3\nprovider_options: {outlive_controller: true}\n"
                 "bootstrap:\n  setup: sleep 600\n");
  int efd = -1;
  const char *args[] = {"up", "--plain", c.spec, NULL};
  pid_t up = spawn_kite(&c, "up.txt", &efd, args);
  assert_true(read_until(efd, "INIT -> PROVISIONING"));
  kill9(owner_pid(&c));
  close(efd);
  assert_int_equal(wait_exit(up), 1);
  assert_true(live_instances(&c) > 0);
  char *out;
  assert_int_equal(kite_run(&c, &out, NULL, "down", c.name, NULL), 0);
  free(out);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  assert_int_equal(live_instances(&c), 0);

  /* Again, killed while the nodes bootstrap (the setup never ends). */
  up = spawn_kite(&c, "up.txt", &efd, args);
  assert_true(read_until(efd, "bootstrap step"));
  kill9(owner_pid(&c));
  close(efd);
  assert_int_equal(wait_exit(up), 1);
  assert_true(kite_local_count_tagged(c.tag) > 0);
  assert_int_equal(kite_run(&c, NULL, NULL, "down", c.name, NULL), 0);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  assert_int_equal(live_instances(&c), 0);
  ctx_done(&c);
}

/* ---- readers while a writer works ---- */

static void test_status_while_up_writes(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "readers");
  write_spec(&c, "nodes: 4\nbootstrap:\n  setup: echo ok\n");
  int efd = -1;
  const char *up_args[] = {"up", "--plain", c.spec, NULL};
  pid_t up = spawn_kite(&c, "up.txt", &efd, up_args);
  /* Two status readers at once, again and again, while the owner records the pool. */
  unsigned rounds = 0;
  int st = 0;
  bool up_done = false;
  while (!up_done || rounds < 3) {
    if (!up_done && waitpid(up, &st, WNOHANG) == up)
      up_done = true;
    const char *a1[] = {"status", NULL};
    const char *a2[] = {"status", "--json", NULL};
    int f1 = -1, f2 = -1;
    pid_t p1 = spawn_kite(&c, "s1.txt", &f1, a1);
    pid_t p2 = spawn_kite(&c, "s2.txt", &f2, a2);
    char drain[4096], e1s[4096] = "", e2s[4096] = "";
    ssize_t r;
    size_t l1 = 0, l2 = 0;
    while ((r = read(f1, drain, sizeof(drain))) > 0)
      l1 += (size_t)snprintf(e1s + l1, sizeof(e1s) - l1, "%.*s", (int)r, drain);
    while ((r = read(f2, drain, sizeof(drain))) > 0)
      l2 += (size_t)snprintf(e2s + l2, sizeof(e2s) - l2, "%.*s", (int)r, drain);
    close(f1);
    close(f2);
    int e1 = wait_exit(p1), e2 = wait_exit(p2);
    if (e1 || e2)
      fprintf(stderr, "status exit %d %d after %u rounds: %s / %s\n", e1, e2, rounds, e1s, e2s);
    assert_int_equal(e1, 0);
    assert_int_equal(e2, 0);
    rounds++;
    assert_true(rounds < 2000);
  }
  close(efd);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char *out;
  assert_int_equal(kite_run(&c, &out, NULL, "status", "--json", c.name, NULL), 0);
  json_error_t jerr;
  json_t *j = json_loads(out, 0, &jerr);
  assert_non_null(j);
  assert_int_equal(
      json_integer_value(json_object_get(json_array_get(json_object_get(j, "pools"), 0),
                                         "live_instances")),
      4);
  json_decref(j);
  free(out);
  assert_int_equal(kite_run(&c, NULL, NULL, "down", c.name, NULL), 0);
  ctx_done(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_help_and_usage),
      cmocka_unit_test(test_run_rank_prefixes_and_exit_codes),
      cmocka_unit_test(test_run_bad_spec_launches_nothing),
      cmocka_unit_test(test_up_exec_transfer_status_events_down),
      cmocka_unit_test(test_kill9_after_ready_then_down),
      cmocka_unit_test(test_kill9_during_provisioning_then_down),
      cmocka_unit_test(test_status_while_up_writes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
