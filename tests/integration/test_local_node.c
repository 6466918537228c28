/* Local sshd nodes: real sshd processes on loopback addresses, reached with the system's ssh
 * and sftp clients and with plain TCP connects. Each test runs the loop until its callbacks
 * have all run, and ends with uv_loop_close() == 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/local.h"
#include "kite_impl.h"

typedef struct fixture {
  uv_loop_t loop;
  kite_runtime_t *rt;
  char home[64];
  char *key_path;
  char *pub_key;
} fixture_t;

static void run_until(fixture_t *f, const bool *flag) {
  while (!*flag)
    uv_run(&f->loop, UV_RUN_ONCE);
}

static void keypair_cb(kite_runtime_t *rt, int status, void *data) {
  (void)rt;
  assert_int_equal(status, 0);
  *(bool *)data = true;
}

static void fixture_open_mode(fixture_t *f, mode_t mode) {
  memset(f, 0, sizeof(*f));
  snprintf(f->home, sizeof(f->home), "/tmp/kite-test-local-XXXXXX");
  assert_non_null(mkdtemp(f->home));
  assert_int_equal(chmod(f->home, mode), 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  kite_runtime_options_t o = {.loop = &f->loop, .home = f->home, .log_level = -1};
  assert_int_equal(kite_runtime_new(&f->rt, &o), 0);
  f->key_path = kite__sprintf("%s/id_ed25519", f->home);
  bool done = false;
  assert_int_equal(kite_keypair_ensure(f->rt, f->key_path, keypair_cb, &done), 0);
  run_until(f, &done);
  struct stat st;
  assert_int_equal(stat(f->key_path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  char *pub_path = kite__sprintf("%s.pub", f->key_path);
  assert_int_equal(kite__read_file(pub_path, &f->pub_key, NULL), 0);
  free(pub_path);
  f->pub_key[strcspn(f->pub_key, "\n")] = '\0';
}

/* A home the node's user (kite-node when root) can reach. */
static void fixture_open(fixture_t *f) {
  fixture_open_mode(f, 0755);
}

static void shut_cb(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(bool *)data = true;
}

static void fixture_close(fixture_t *f) {
  bool done = false;
  assert_int_equal(kite_runtime_shutdown(f->rt, shut_cb, &done), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(done);
  assert_int_equal(kite_runtime_free(f->rt), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  kite__rm_rf(f->home);
  free(f->key_path);
  free(f->pub_key);
}

/* ---- node bookkeeping ------------------------------------------------------------------ */

typedef struct node_slot {
  kite_local_node_t *node;
  int start_status;
  int start_calls, stop_calls;
  bool started, stopped;
  char *root; /* the node's directory's parent, kept to check that it is removed */
} node_slot_t;

static void on_started(kite_local_node_t *node, int status, void *data) {
  node_slot_t *s = data;
  assert_ptr_equal(node, s->node);
  assert_int_equal(s->stop_calls, 0); /* the start callback always comes first */
  s->start_calls++;
  s->start_status = status;
  s->started = true;
}

static void on_stopped(kite_local_node_t *node, int status, void *data) {
  node_slot_t *s = data;
  assert_ptr_equal(node, s->node);
  assert_int_equal(status, 0);
  assert_int_equal(s->start_calls, 1);
  s->stop_calls++;
  s->stopped = true;
}

/* Tags carry our pid, so that runs in parallel never count each other's processes. */
static const char *tag_for(const char *name) {
  static char buf[8][64];
  static int next;
  char *b = buf[next++ % 8];
  snprintf(b, sizeof(buf[0]), "%s-%ld", name, (long)getpid());
  return b;
}

static void start_node(fixture_t *f, node_slot_t *s, const char *tag) {
  memset(s, 0, sizeof(*s));
  kite_local_node_options_t o = {.tag = tag, .authorized_key = f->pub_key};
  assert_int_equal(kite_local_node_start(f->rt, &o, on_started, s, &s->node), 0);
  s->root = kite__strdup(kite_local_node_dir(s->node));
  *strrchr(s->root, '/') = '\0';
}

static void stop_node(node_slot_t *s) {
  kite_local_node_stop(s->node, on_stopped, s);
}

static bool path_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

/* ---- running a command ----------------------------------------------------------------- */

typedef struct cmd {
  uv_process_t proc;
  uv_pipe_t out;
  char buf[8192];
  size_t len;
  int64_t status;
  int open;
  bool done;
} cmd_t;

static void cmd_closed(uv_handle_t *h) {
  cmd_t *c = h->data;
  if (--c->open == 0)
    c->done = true;
}

static void cmd_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  cmd_t *c = h->data;
  (void)sz;
  *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void cmd_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  cmd_t *c = s->data;
  (void)b;
  if (n > 0) {
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
  } else if (n < 0) {
    uv_close((uv_handle_t *)s, cmd_closed);
  }
}

static void cmd_exit(uv_process_t *p, int64_t status, int sig) {
  cmd_t *c = p->data;
  c->status = sig ? 128 + sig : status;
  uv_close((uv_handle_t *)p, cmd_closed);
}

/* Runs args to completion; returns its exit status; stdout lands in c->buf. */
static int64_t run_cmd(fixture_t *f, cmd_t *c, char **args) {
  memset(c, 0, sizeof(*c));
  uv_pipe_init(&f->loop, &c->out, 0);
  c->out.data = c->proc.data = c;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
      {.flags = UV_INHERIT_FD, .data.fd = 2}};
  uv_process_options_t po = {
      .exit_cb = cmd_exit, .file = args[0], .args = args, .stdio_count = 3, .stdio = stdio};
  assert_int_equal(uv_spawn(&f->loop, &c->proc, &po), 0);
  c->open = 2;
  assert_int_equal(uv_read_start((uv_stream_t *)&c->out, cmd_alloc, cmd_read), 0);
  run_until(f, &c->done);
  return c->status;
}

/* ---- tests ----------------------------------------------------------------------------- */

/* Runs a command and an SFTP upload on one node through the system's clients, with the node's
 * host key pinned; then stops the node and checks that nothing of it is left. */
static void ssh_scenario(mode_t home_mode) {
  fixture_t f;
  fixture_open_mode(&f, home_mode);
  const char *tag = tag_for("test-ssh-cmd");
  node_slot_t s;
  start_node(&f, &s, tag);
  run_until(&f, &s.started);
  assert_int_equal(s.start_status, 0);
  kite_local_node_t *n = s.node;
  assert_true(kite_local_node_pid(n) > 1);
  assert_non_null(kite_local_node_host_key(n));
  assert_int_equal(strncmp(kite_local_node_host_key(n), "ssh-ed25519 ", 12), 0);
  if (geteuid() == 0 && (home_mode & 0001) == 0) {
    /* kite-node cannot enter the private home: the node sees its dir at kite-node's home. */
    assert_string_not_equal(kite_local_node_remote_dir(n), kite_local_node_dir(n));
  } else {
    assert_string_equal(kite_local_node_remote_dir(n), kite_local_node_dir(n));
  }

  /* Pin the node's host key: StrictHostKeyChecking=yes fails on any other key. */
  char *kh = kite__sprintf("%s/known_hosts", f.home);
  char *line = kite__sprintf("[%s]:%u %s\n", kite_local_node_address(n), kite_local_node_port(n),
                             kite_local_node_host_key(n));
  assert_int_equal(kite__write_file(kh, line, strlen(line), 0600), 0);
  char *kh_opt = kite__sprintf("UserKnownHostsFile=%s", kh);
  char *dest = kite__sprintf("%s@%s", kite_local_node_user(n), kite_local_node_address(n));
  char port[16];
  snprintf(port, sizeof(port), "%u", kite_local_node_port(n));
  char *ssh_args[] = {"ssh",
                      "-F",
                      "/dev/null",
                      "-i",
                      f.key_path,
                      "-o",
                      kh_opt,
                      "-o",
                      "StrictHostKeyChecking=yes",
                      "-o",
                      "BatchMode=yes",
                      "-o",
                      "LogLevel=ERROR",
                      "-p",
                      port,
                      dest,
                      "pwd; echo \"$KITE_NODE_TAG\"; echo hello > rel.txt; "
                      "sleep 1000 >/dev/null 2>&1 &",
                      NULL};
  cmd_t c;
  assert_int_equal(run_cmd(&f, &c, ssh_args), 0);
  char *expect = kite__sprintf("%s\n%s\n", kite_local_node_remote_dir(n), tag);
  assert_string_equal(c.buf, expect);
  char *rel = kite__sprintf("%s/rel.txt", kite_local_node_dir(n));
  assert_true(path_exists(rel));

  /* SFTP: a relative path lands in the node's directory too. */
  char *local = kite__sprintf("%s/upload.txt", f.home);
  assert_int_equal(kite__write_file(local, "up\n", 3, 0644), 0);
  char *batch_path = kite__sprintf("%s/batch", f.home);
  char *batch = kite__sprintf("put %s sftp_rel.txt\n", local);
  assert_int_equal(kite__write_file(batch_path, batch, strlen(batch), 0644), 0);
  char *sftp_args[] = {"sftp",
                       "-F",
                       "/dev/null",
                       "-i",
                       f.key_path,
                       "-o",
                       kh_opt,
                       "-o",
                       "StrictHostKeyChecking=yes",
                       "-o",
                       "LogLevel=ERROR",
                       "-P",
                       port,
                       "-b",
                       batch_path,
                       dest,
                       NULL};
  cmd_t c2;
  assert_int_equal(run_cmd(&f, &c2, sftp_args), 0);
  char *sftp_rel = kite__sprintf("%s/sftp_rel.txt", kite_local_node_dir(n));
  assert_true(path_exists(sftp_rel));

  /* The background sleep outlived its session: it runs on the node, tagged. */
  int before = kite_local_count_tagged(tag);
  assert_true(before >= 2);
  char *dir = kite__strdup(kite_local_node_dir(n));
  stop_node(&s);
  run_until(&f, &s.stopped);
  assert_int_equal(kite_local_count_tagged(tag), 0);
  assert_false(path_exists(dir));
  assert_false(path_exists(s.root));

  free(dir);
  free(sftp_rel);
  free(batch);
  free(batch_path);
  free(local);
  free(rel);
  free(expect);
  free(dest);
  free(kh_opt);
  free(line);
  free(kh);
  free(s.root);
  fixture_close(&f);
}

static void test_ssh_command_runs_in_node_dir_and_dies_with_node(void **state) {
  (void)state;
  ssh_scenario(0755);
}

/* A private $KITE_HOME (mode 0700) as root: kite-node cannot reach the node's directory by
 * its path, so the node mounts it over kite-node's home; commands and SFTP still land in it. */
static void test_private_home_still_works(void **state) {
  (void)state;
  ssh_scenario(0700);
}

/* ---- many nodes ------------------------------------------------------------------------ */

typedef struct banner {
  uv_tcp_t tcp;
  uv_connect_t req;
  char buf[256];
  size_t len;
  bool ok, done;
} banner_t;

static void banner_closed(uv_handle_t *h) {
  banner_t *b = container_of((uv_tcp_t *)h, banner_t, tcp);
  b->done = true;
}

static void banner_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf) {
  banner_t *b = container_of((uv_tcp_t *)h, banner_t, tcp);
  (void)sz;
  *buf = uv_buf_init(b->buf + b->len, (unsigned)(sizeof(b->buf) - 1 - b->len));
}

static void banner_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  banner_t *b = container_of((uv_tcp_t *)s, banner_t, tcp);
  (void)buf;
  if (n > 0) {
    b->len += (size_t)n;
    b->buf[b->len] = '\0';
    if (strstr(b->buf, "\n") == NULL && b->len < sizeof(b->buf) - 1)
      return;
    b->ok = strncmp(b->buf, "SSH-2.0-", 8) == 0;
  }
  if (n != 0 && !uv_is_closing((uv_handle_t *)s))
    uv_close((uv_handle_t *)s, banner_closed);
}

static void banner_connected(uv_connect_t *req, int status) {
  banner_t *b = container_of(req, banner_t, req);
  if (status != 0 || uv_read_start((uv_stream_t *)&b->tcp, banner_alloc, banner_read) != 0)
    uv_close((uv_handle_t *)&b->tcp, banner_closed);
}

#define MANY 64

static void test_64_nodes_start_in_parallel(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f);
  const char *tag = tag_for("test-64-nodes");
  node_slot_t *s = calloc(MANY, sizeof(*s));
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < MANY; i++)
    start_node(&f, &s[i], tag);
  for (int i = 0; i < MANY; i++) {
    run_until(&f, &s[i].started);
    assert_int_equal(s[i].start_status, 0);
  }
  uint64_t t1 = uv_hrtime();
  print_message("%d nodes listening after %.0f ms\n", MANY, (double)(t1 - t0) / 1e6);

  for (int i = 0; i < MANY; i++)
    for (int j = i + 1; j < MANY; j++)
      assert_string_not_equal(kite_local_node_address(s[i].node),
                              kite_local_node_address(s[j].node));

  banner_t *b = calloc(MANY, sizeof(*b));
  for (int i = 0; i < MANY; i++) {
    struct sockaddr_in sa;
    assert_int_equal(
        uv_ip4_addr(kite_local_node_address(s[i].node), kite_local_node_port(s[i].node), &sa), 0);
    uv_tcp_init(&f.loop, &b[i].tcp);
    assert_int_equal(uv_tcp_connect(&b[i].req, &b[i].tcp, (struct sockaddr *)&sa, banner_connected),
                     0);
  }
  for (int i = 0; i < MANY; i++) {
    run_until(&f, &b[i].done);
    assert_true(b[i].ok);
  }
  assert_true(kite_local_count_tagged(tag) >= MANY);

  uint64_t t2 = uv_hrtime();
  for (int i = 0; i < MANY; i++)
    stop_node(&s[i]);
  for (int i = 0; i < MANY; i++)
    run_until(&f, &s[i].stopped);
  print_message("%d nodes stopped after %.0f ms\n", MANY, (double)(uv_hrtime() - t2) / 1e6);
  assert_int_equal(kite_local_count_tagged(tag), 0);
  for (int i = 0; i < MANY; i++) {
    assert_false(path_exists(s[i].root));
    free(s[i].root);
  }
  free(b);
  free(s);
  fixture_close(&f);
}

/* ---- stopping early -------------------------------------------------------------------- */

static void stop_timer_cb(uv_timer_t *t) {
  node_slot_t *s = t->data;
  stop_node(s);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_stop_while_starting(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f);
  const char *tag = tag_for("test-stop-early");
  /* Stopped at once, and stopped at a few points later in its start. */
  enum { N = 6 };
  node_slot_t s[N];
  uv_timer_t timers[N];
  for (int i = 0; i < N; i++) {
    start_node(&f, &s[i], tag);
    if (i == 0) {
      stop_node(&s[i]);
      continue;
    }
    uv_timer_init(&f.loop, &timers[i]);
    timers[i].data = &s[i];
    uv_timer_start(&timers[i], stop_timer_cb, (uint64_t)(i * i * 10), 0);
  }
  for (int i = 0; i < N; i++) {
    run_until(&f, &s[i].stopped);
    assert_int_equal(s[i].start_calls, 1);
    assert_int_equal(s[i].stop_calls, 1);
    assert_true(s[i].start_status == KITE_ECANCELED || s[i].start_status == 0);
    assert_false(path_exists(s[i].root));
    free(s[i].root);
  }
  assert_int_equal(s[0].start_status, KITE_ECANCELED);
  assert_int_equal(kite_local_count_tagged(tag), 0);
  fixture_close(&f);
}

/* Killing the node's first process is a crash: everything on the node goes, and stop still
 * completes. */
static void test_node_dies_with_its_first_process(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f);
  const char *tag = tag_for("test-node-crash");
  node_slot_t s;
  start_node(&f, &s, tag);
  run_until(&f, &s.started);
  assert_int_equal(s.start_status, 0);
  assert_true(kite_local_count_tagged(tag) >= 1);
  assert_int_equal(kill(kite_local_node_pid(s.node), SIGKILL), 0);
  while (kite_local_node_pid(s.node) != 0)
    uv_run(&f.loop, UV_RUN_ONCE);
  assert_int_equal(kite_local_count_tagged(tag), 0);
  stop_node(&s);
  run_until(&f, &s.stopped);
  assert_false(path_exists(s.root));
  free(s.root);
  fixture_close(&f);
}

/* ---- addresses across processes -------------------------------------------------------- */

#define PER_PROC 8

static void start_and_wait(fixture_t *f, node_slot_t *s, const char *tag) {
  for (int i = 0; i < PER_PROC; i++)
    start_node(f, &s[i], tag);
  for (int i = 0; i < PER_PROC; i++) {
    run_until(f, &s[i].started);
    assert_int_equal(s[i].start_status, 0);
  }
}

static void stop_and_wait(fixture_t *f, node_slot_t *s) {
  for (int i = 0; i < PER_PROC; i++)
    stop_node(&s[i]);
  for (int i = 0; i < PER_PROC; i++) {
    run_until(f, &s[i].stopped);
    free(s[i].root);
  }
}

static void test_two_processes_never_share_an_address(void **state) {
  (void)state;
  int to_parent[2], to_child[2];
  assert_int_equal(pipe(to_parent), 0);
  assert_int_equal(pipe(to_child), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The child holds its nodes until the parent has compared addresses. */
    fixture_t f;
    fixture_open(&f);
    node_slot_t s[PER_PROC];
    start_and_wait(&f, s, tag_for("test-addr-child"));
    char msg[PER_PROC * 16] = "";
    for (int i = 0; i < PER_PROC; i++) {
      strcat(msg, kite_local_node_address(s[i].node));
      strcat(msg, " ");
    }
    ssize_t w = write(to_parent[1], msg, strlen(msg) + 1);
    char go;
    ssize_t r = read(to_child[0], &go, 1);
    stop_and_wait(&f, s);
    fixture_close(&f);
    _exit(w > 0 && r == 1 ? 0 : 1);
  }
  fixture_t f;
  fixture_open(&f);
  node_slot_t s[PER_PROC];
  start_and_wait(&f, s, tag_for("test-addr-parent"));
  char msg[PER_PROC * 16 + 1];
  size_t got = 0;
  while (got == 0 || msg[got - 1] != '\0') {
    ssize_t r = read(to_parent[0], msg + got, sizeof(msg) - got);
    assert_true(r > 0);
    got += (size_t)r;
  }
  for (int i = 0; i < PER_PROC; i++) {
    char word[24];
    snprintf(word, sizeof(word), "%s ", kite_local_node_address(s[i].node));
    assert_null(strstr(msg, word));
    for (int j = i + 1; j < PER_PROC; j++)
      assert_string_not_equal(kite_local_node_address(s[i].node),
                              kite_local_node_address(s[j].node));
  }
  assert_int_equal(write(to_child[1], "g", 1), 1);
  stop_and_wait(&f, s);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  close(to_parent[0]);
  close(to_parent[1]);
  close(to_child[0]);
  close(to_child[1]);
  fixture_close(&f);
}

static void test_bad_options_are_refused(void **state) {
  (void)state;
  fixture_t f;
  fixture_open(&f);
  kite_local_node_t *n = NULL;
  node_slot_t s = {0};
  kite_local_node_options_t o = {.tag = "ok"};
  assert_int_equal(kite_local_node_start(f.rt, &o, on_started, &s, &n), KITE_EINVAL);
  o.authorized_key = f.pub_key;
  o.tag = "no spaces";
  assert_int_equal(kite_local_node_start(f.rt, &o, on_started, &s, &n), KITE_EINVAL);
  assert_null(n);
  assert_int_equal(s.start_calls, 0);
  fixture_close(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_options_are_refused),
      cmocka_unit_test(test_ssh_command_runs_in_node_dir_and_dies_with_node),
      cmocka_unit_test(test_private_home_still_works),
      cmocka_unit_test(test_stop_while_starting),
      cmocka_unit_test(test_node_dies_with_its_first_process),
      cmocka_unit_test(test_two_processes_never_share_an_address),
      cmocka_unit_test(test_64_nodes_start_in_parallel),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
