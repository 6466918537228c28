/* The SSH transport against real sshd nodes: sessions, exec channels, SFTP, host keys,
 * failures. Two nodes are started once for the whole group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/local.h"
#include "kite/transport.h"
#include "kite_impl.h"

typedef struct world {
  uv_loop_t loop;
  kite_runtime_t *rt;
  char home[64];
  char tag[64];
  char *key_path;
  char *pub_key;
  kite_local_node_t *node[2];
  int started;
} world_t;

static world_t W;

static void run_until(const bool *flag) {
  while (!*flag)
    uv_run(&W.loop, UV_RUN_ONCE);
}

static void on_key(kite_runtime_t *rt, int status, void *data) {
  (void)rt;
  assert_int_equal(status, 0);
  *(bool *)data = true;
}

static void on_node(kite_local_node_t *n, int status, void *data) {
  (void)n;
  (void)data;
  assert_int_equal(status, 0);
  W.started++;
}

static int setup(void **state) {
  (void)state;
  snprintf(W.home, sizeof(W.home), "/tmp/kite-test-transport-XXXXXX");
  assert_non_null(mkdtemp(W.home));
  chmod(W.home, 0755);
  snprintf(W.tag, sizeof(W.tag), "transport-%ld", (long)getpid());
  assert_int_equal(uv_loop_init(&W.loop), 0);
  kite_runtime_options_t o = {.loop = &W.loop, .home = W.home, .log_level = -1};
  assert_int_equal(kite_runtime_new(&W.rt, &o), 0);
  W.key_path = kite__sprintf("%s/id_ed25519", W.home);
  bool done = false;
  assert_int_equal(kite_keypair_ensure(W.rt, W.key_path, on_key, &done), 0);
  run_until(&done);
  char *pub = kite__sprintf("%s.pub", W.key_path);
  assert_int_equal(kite__read_file(pub, &W.pub_key, NULL), 0);
  free(pub);
  W.pub_key[strcspn(W.pub_key, "\n")] = '\0';
  for (int i = 0; i < 2; i++) {
    kite_local_node_options_t no = {.tag = W.tag, .authorized_key = W.pub_key};
    assert_int_equal(kite_local_node_start(W.rt, &no, on_node, NULL, &W.node[i]), 0);
  }
  while (W.started < 2)
    uv_run(&W.loop, UV_RUN_ONCE);
  return 0;
}

static void on_node_stopped(kite_local_node_t *n, int status, void *data) {
  (void)n;
  (void)status;
  (*(int *)data)++;
}

static void on_shut(kite_runtime_t *rt, void *data) {
  (void)rt;
  *(bool *)data = true;
}

static int teardown(void **state) {
  (void)state;
  int stopped = 0;
  for (int i = 0; i < 2; i++)
    if (W.node[i])
      kite_local_node_stop(W.node[i], on_node_stopped, &stopped);
  bool done = false;
  assert_int_equal(kite_runtime_shutdown(W.rt, on_shut, &done), 0);
  uv_run(&W.loop, UV_RUN_DEFAULT);
  assert_true(done);
  assert_int_equal(kite_runtime_free(W.rt), 0);
  assert_int_equal(uv_loop_close(&W.loop), 0);
  assert_int_equal(kite_local_count_tagged(W.tag), 0);
  kite__rm_rf(W.home);
  free(W.key_path);
  free(W.pub_key);
  return 0;
}

/* ---- sessions ---------------------------------------------------------------------------- */

typedef struct conn {
  kite_ssh_t *s;
  bool done;
  int status;
  char msg[512];
  bool lost;
  int lost_error;
} conn_t;

static void on_connected(kite_ssh_t *s, int status, const char *message, void *data) {
  conn_t *c = data;
  (void)s;
  c->done = true;
  c->status = status;
  snprintf(c->msg, sizeof(c->msg), "%s", message ? message : "");
}

static void on_lost(kite_ssh_t *s, int error, const char *message, void *data) {
  conn_t *c = data;
  (void)s;
  (void)message;
  c->lost = true;
  c->lost_error = error;
}

static kite_ssh_options_t opts_for(int i) {
  return (kite_ssh_options_t){.host = kite_local_node_address(W.node[i]),
                              .port = kite_local_node_port(W.node[i]),
                              .user = kite_local_node_user(W.node[i]),
                              .key_path = W.key_path,
                              .host_key = kite_local_node_host_key(W.node[i]),
                              .connect_timeout_ms = 10000,
                              .max_channels = 64};
}

static int connect_with(conn_t *c, const kite_ssh_options_t *o) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(kite_ssh_connect(W.rt, o, on_connected, c, &c->s), 0);
  kite_ssh_on_lost(c->s, on_lost, c);
  run_until(&c->done);
  return c->status;
}

static void on_closed(kite_ssh_t *s, void *data) {
  (void)s;
  *(bool *)data = true;
}

static void close_conn(conn_t *c) {
  bool closed = false;
  kite_ssh_close(c->s, on_closed, &closed);
  run_until(&closed);
}

/* ---- exec helpers ------------------------------------------------------------------------- */

typedef struct run {
  bool done;
  int error;
  int exit_status;
  char signal[16];
  char *out[3];
  size_t len[3];
  size_t cap[3];
  EVP_MD_CTX *sha; /* when set, stdout is hashed instead of kept */
  uint64_t hashed;
} run_t;

static int on_output(kite_exec_t *x, int stream, const void *buf, size_t len, void *data) {
  run_t *r = data;
  (void)x;
  assert_true(stream == 1 || stream == 2);
  if (r->sha && stream == 1) {
    EVP_DigestUpdate(r->sha, buf, len);
    r->hashed += len;
    return 0;
  }
  if (r->len[stream] + len + 1 > r->cap[stream]) {
    r->cap[stream] = (r->len[stream] + len + 1) * 2;
    r->out[stream] = realloc(r->out[stream], r->cap[stream]);
  }
  memcpy(r->out[stream] + r->len[stream], buf, len);
  r->len[stream] += len;
  r->out[stream][r->len[stream]] = '\0';
  return 0;
}

static void on_done(kite_exec_t *x, int error, int exit_status, const char *signal,
                    const char *message, void *data) {
  run_t *r = data;
  (void)x;
  (void)message;
  r->done = true;
  r->error = error;
  r->exit_status = exit_status;
  snprintf(r->signal, sizeof(r->signal), "%s", signal ? signal : "");
}

static void run_free(run_t *r) {
  free(r->out[1]);
  free(r->out[2]);
}

static kite_exec_t *start(kite_ssh_t *s, const char *script, run_t *r) {
  memset(r, 0, sizeof(*r));
  kite_exec_opts_t o = {.shell = script};
  kite_exec_t *x = NULL;
  assert_int_equal(kite_ssh_exec(s, &o, on_output, on_done, r, &x), 0);
  return x;
}

static void run_sync(kite_ssh_t *s, const char *script, run_t *r) {
  start(s, script, r);
  run_until(&r->done);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_exit_codes_signals_streams(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(0);
  assert_int_equal(connect_with(&c, &o), 0);
  assert_true(kite_ssh_connected(c.s));
  run_t r;
  run_sync(c.s, "exit 3", &r);
  assert_int_equal(r.error, 0);
  assert_int_equal(r.exit_status, 3);
  assert_string_equal(r.signal, "");
  run_free(&r);
  run_sync(c.s, "kill -KILL $$", &r);
  assert_int_equal(r.error, 0);
  assert_string_equal(r.signal, "KILL");
  run_free(&r);
  /* Streams are kept apart, in order within each; the pid line never shows. */
  run_sync(c.s, "echo out1; echo err1 >&2; printf 'out2'; echo err2 >&2; pwd", &r);
  assert_int_equal(r.exit_status, 0);
  char *expect = kite__sprintf("out1\nout2%s\n", kite_local_node_remote_dir(W.node[0]));
  assert_string_equal(r.out[1], expect);
  free(expect);
  assert_string_equal(r.out[2], "err1\nerr2\n");
  run_free(&r);
  /* argv is quoted; env is exported; stdin reaches the command, binary-safe. */
  const char *argv[] = {"printf", "%s|%s|", "it's $(x) `y`", "$HOME", NULL};
  const char *env[] = {"GREETING=hello 'world' $(nope)", NULL};
  static const char in[] = "line1\nbin\x01\x02\xff end";
  memset(&r, 0, sizeof(r));
  kite_exec_opts_t xo = {.argv = argv, .env = env};
  assert_int_equal(kite_ssh_exec(c.s, &xo, on_output, on_done, &r, NULL), 0);
  run_until(&r.done);
  assert_string_equal(r.out[1], "it's $(x) `y`|$HOME|");
  run_free(&r);
  memset(&r, 0, sizeof(r));
  kite_exec_opts_t eo = {.shell = "printf '%s' \"$GREETING\"; cat", .env = env,
                         .stdin_data = in, .stdin_len = sizeof(in) - 1};
  assert_int_equal(kite_ssh_exec(c.s, &eo, on_output, on_done, &r, NULL), 0);
  run_until(&r.done);
  size_t gl = strlen(env[0]) - strlen("GREETING=");
  assert_int_equal(r.len[1], gl + sizeof(in) - 1);
  assert_memory_equal(r.out[1], env[0] + 9, gl);
  assert_memory_equal(r.out[1] + gl, in, sizeof(in) - 1);
  run_free(&r);
  /* A bad env name is refused before anything runs. */
  const char *bad[] = {"1BAD=x", NULL};
  kite_exec_opts_t bo = {.shell = "true", .env = bad};
  assert_int_equal(kite_ssh_exec(c.s, &bo, on_output, on_done, &r, NULL), KITE_EINVAL);
  close_conn(&c);
}

static void test_64_channels_one_session(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(0);
  assert_int_equal(connect_with(&c, &o), 0);
  enum { N = 64 };
  run_t *r = calloc(N, sizeof(run_t));
  for (int i = 0; i < N; i++) {
    char script[64];
    snprintf(script, sizeof(script), "sleep 0.2; echo %d", i);
    start(c.s, script, &r[i]);
  }
  for (int i = 0; i < N; i++) {
    run_until(&r[i].done);
    assert_int_equal(r[i].error, 0);
    assert_int_equal(r[i].exit_status, 0);
    assert_int_equal(atoi(r[i].out[1]), i);
    run_free(&r[i]);
  }
  free(r);
  close_conn(&c);
}

static void test_channel_cap_queues(void **state) {
  (void)state;
  /* With a cap of 2, 10 commands still all run, never more than 2 at once. */
  conn_t c;
  kite_ssh_options_t o = opts_for(1);
  o.max_channels = 2;
  assert_int_equal(connect_with(&c, &o), 0);
  run_t r[10];
  for (int i = 0; i < 10; i++)
    start(c.s, "mkdir -p cap; n=$(ls cap | wc -l); touch cap/$$; sleep 0.1; rm cap/$$; echo $n",
          &r[i]);
  for (int i = 0; i < 10; i++) {
    run_until(&r[i].done);
    assert_int_equal(r[i].exit_status, 0);
    assert_true(atoi(r[i].out[1]) <= 1);
    run_free(&r[i]);
  }
  close_conn(&c);
}

static void test_64_sessions(void **state) {
  (void)state;
  enum { N = 64 };
  conn_t *c = calloc(N, sizeof(conn_t));
  for (int i = 0; i < N; i++) {
    kite_ssh_options_t o = opts_for(i % 2);
    assert_int_equal(kite_ssh_connect(W.rt, &o, on_connected, &c[i], &c[i].s), 0);
  }
  for (int i = 0; i < N; i++) {
    run_until(&c[i].done);
    assert_int_equal(c[i].status, 0);
  }
  run_t *r = calloc(N, sizeof(run_t));
  for (int i = 0; i < N; i++)
    start(c[i].s, "echo ok", &r[i]);
  for (int i = 0; i < N; i++) {
    run_until(&r[i].done);
    assert_string_equal(r[i].out[1], "ok\n");
    run_free(&r[i]);
    close_conn(&c[i]);
  }
  free(r);
  free(c);
}

/* 100 MB through one channel, checked by SHA-256 against the same bytes made here. */
static void test_100mb_output(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(1);
  assert_int_equal(connect_with(&c, &o), 0);
  const size_t total = 100u * 1000 * 1000;
  run_t r;
  memset(&r, 0, sizeof(r));
  r.sha = EVP_MD_CTX_new();
  EVP_DigestInit_ex(r.sha, EVP_sha256(), NULL);
  char script[128];
  snprintf(script, sizeof(script), "yes 0123456789abcdef | head -c %zu", total);
  kite_exec_opts_t xo = {.shell = script};
  assert_int_equal(kite_ssh_exec(c.s, &xo, on_output, on_done, &r, NULL), 0);
  run_until(&r.done);
  assert_int_equal(r.error, 0);
  assert_int_equal(r.exit_status, 0);
  assert_int_equal(r.hashed, total);
  unsigned char got[32], want[32];
  EVP_DigestFinal_ex(r.sha, got, NULL);
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  EVP_DigestInit_ex(m, EVP_sha256(), NULL);
  static const char line[] = "0123456789abcdef\n";
  for (size_t done = 0; done < total;) {
    size_t take = total - done < 17 ? total - done : 17;
    EVP_DigestUpdate(m, line, take);
    done += take;
  }
  EVP_DigestFinal_ex(m, want, NULL);
  EVP_MD_CTX_free(m);
  EVP_MD_CTX_free(r.sha);
  assert_memory_equal(got, want, 32);
  assert_null(r.out[2]);
  close_conn(&c);
}

/* The number of processes of node i's sessions still running `sleep 1000+`. */
static int remote_sleepers(conn_t *c) {
  run_t r;
  run_sync(c->s, "pgrep -c -f '^sleep 100[0-9]' || true", &r);
  int n = atoi(r.out[1] ? r.out[1] : "0");
  run_free(&r);
  return n;
}

static void test_timeout_and_cancel_kill_the_group(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(0);
  assert_int_equal(connect_with(&c, &o), 0);
  assert_int_equal(remote_sleepers(&c), 0);
  run_t r;
  memset(&r, 0, sizeof(r));
  kite_exec_opts_t xo = {.shell = "sleep 1001 & sleep 1002; echo never", .timeout_ms = 300};
  assert_int_equal(kite_ssh_exec(c.s, &xo, on_output, on_done, &r, NULL), 0);
  run_until(&r.done);
  assert_int_equal(r.error, KITE_ETIMEDOUT);
  assert_null(r.out[1]);
  /* Wait (on the loop) until the kill channel has done its work. */
  for (int i = 0; i < 50 && remote_sleepers(&c) != 0; i++)
    ;
  assert_int_equal(remote_sleepers(&c), 0);
  kite_exec_t *x = start(c.s, "echo started; sleep 1003 & sleep 1004", &r);
  while (r.out[1] == NULL)
    uv_run(&W.loop, UV_RUN_ONCE);
  assert_int_equal(kite_exec_cancel(x), 0);
  run_until(&r.done);
  assert_int_equal(r.error, KITE_ECANCELED);
  run_free(&r);
  for (int i = 0; i < 50 && remote_sleepers(&c) != 0; i++)
    ;
  assert_int_equal(remote_sleepers(&c), 0);
  close_conn(&c);
}

static void test_host_keys(void **state) {
  (void)state;
  conn_t c;
  /* A pinned key that is not the server's: refused, and the message says why. */
  kite_ssh_options_t o = opts_for(0);
  o.host_key = kite_local_node_host_key(W.node[1]);
  assert_int_equal(connect_with(&c, &o), KITE_EHOSTKEY);
  assert_non_null(strstr(c.msg, "does not match the key its provider pinned"));
  close_conn(&c);
  /* Strict with no pin and nothing in known_hosts: refused, naming the file. */
  char *kh = kite__sprintf("%s/known_hosts", W.home);
  unlink(kh);
  o = opts_for(0);
  o.host_key = NULL;
  assert_int_equal(connect_with(&c, &o), KITE_EHOSTKEY);
  assert_non_null(strstr(c.msg, kh));
  close_conn(&c);
  /* accept-new records the key (0600); strict then accepts it. */
  o.hostkey_mode = KITE_HOSTKEY_ACCEPT_NEW;
  assert_int_equal(connect_with(&c, &o), 0);
  close_conn(&c);
  struct stat st;
  assert_int_equal(stat(kh, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  char *text = NULL;
  assert_int_equal(kite__read_file(kh, &text, NULL), 0);
  const char *key = kite_local_node_host_key(W.node[0]);
  assert_non_null(strstr(text, key));
  free(text);
  o.hostkey_mode = KITE_HOSTKEY_STRICT;
  assert_int_equal(connect_with(&c, &o), 0);
  close_conn(&c);
  /* A changed key for a known host: refused even in accept-new, with the fix named. */
  char *line = kite__sprintf("[%s]:%u %s\n", kite_local_node_address(W.node[1]),
                             kite_local_node_port(W.node[1]), key);
  assert_int_equal(kite__write_file(kh, line, strlen(line), 0600), 0);
  free(line);
  o = opts_for(1);
  o.host_key = NULL;
  o.hostkey_mode = KITE_HOSTKEY_ACCEPT_NEW;
  assert_int_equal(connect_with(&c, &o), KITE_EHOSTKEY);
  assert_non_null(strstr(c.msg, "CHANGED"));
  assert_non_null(strstr(c.msg, "ssh-keygen -R"));
  close_conn(&c);
  free(kh);
}

static void test_auth_and_refused_errors(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(0);
  o.user = "nobody-here";
  assert_int_equal(connect_with(&c, &o), KITE_EAUTH);
  assert_non_null(strstr(c.msg, "authentication as nobody-here"));
  close_conn(&c);
  /* An RSA key: this libssh2 can only sign with SHA-1, which OpenSSH refuses; say so. */
  char *rsa = kite__sprintf("%s/id_rsa", W.home);
  char *cmd = kite__sprintf("ssh-keygen -q -t rsa -b 2048 -N '' -f %s", rsa);
  assert_int_equal(system(cmd), 0);
  free(cmd);
  o = opts_for(0);
  o.key_path = rsa;
  assert_int_equal(connect_with(&c, &o), KITE_EAUTH);
  assert_non_null(strstr(c.msg, "RSA key"));
  assert_non_null(strstr(c.msg, "ed25519"));
  close_conn(&c);
  free(rsa);
  o = opts_for(0);
  o.port = 1; /* nothing listens there */
  o.connect_timeout_ms = 300;
  assert_int_equal(connect_with(&c, &o), KITE_ECONNREFUSED);
  char *where = kite__sprintf("%s:1", kite_local_node_address(W.node[0]));
  assert_non_null(strstr(c.msg, where));
  free(where);
  close_conn(&c);
}

/* ssh-agent: a real agent process holding the key; the session authenticates through it. */
static void test_agent_auth(void **state) {
  (void)state;
  char *sock = kite__sprintf("%s/agent.sock", W.home);
  char *envf = kite__sprintf("%s/agent.env", W.home);
  char *cmd = kite__sprintf("ssh-agent -a %s -s > %s", sock, envf);
  assert_int_equal(system(cmd), 0);
  free(cmd);
  char *text = NULL;
  assert_int_equal(kite__read_file(envf, &text, NULL), 0);
  char *p = strstr(text, "SSH_AGENT_PID=");
  assert_non_null(p);
  pid_t agent = (pid_t)atoi(p + strlen("SSH_AGENT_PID="));
  free(text);
  assert_true(agent > 0);
  char *old = getenv("SSH_AUTH_SOCK") ? strdup(getenv("SSH_AUTH_SOCK")) : NULL;
  setenv("SSH_AUTH_SOCK", sock, 1);
  /* An agent without keys: a clear error that names the agent. */
  conn_t c;
  kite_ssh_options_t o = opts_for(0);
  o.key_path = NULL;
  assert_int_equal(connect_with(&c, &o), KITE_EAUTH);
  assert_non_null(strstr(c.msg, "ssh-agent"));
  close_conn(&c);
  cmd = kite__sprintf("ssh-add -q %s 2>/dev/null", W.key_path);
  assert_int_equal(system(cmd), 0);
  free(cmd);
  assert_int_equal(connect_with(&c, &o), 0);
  run_t r;
  run_sync(c.s, "echo via-agent", &r);
  assert_string_equal(r.out[1], "via-agent\n");
  run_free(&r);
  close_conn(&c);
  kill(agent, SIGTERM);
  if (old) {
    setenv("SSH_AUTH_SOCK", old, 1);
    free(old);
  } else {
    unsetenv("SSH_AUTH_SOCK");
  }
  free(sock);
  free(envf);
}

/* ---- SFTP ---------------------------------------------------------------------------------- */

typedef struct xfer_res {
  bool done;
  int error;
  uint64_t bytes;
  unsigned progress;
  char msg[256];
} xfer_res_t;

static void on_xprogress(kite_xfer_t *t, uint64_t done, uint64_t total, void *data) {
  (void)t;
  (void)total;
  xfer_res_t *x = data;
  (void)done;
  x->progress++;
}

static void on_xdone(kite_xfer_t *t, int error, uint64_t bytes, const char *message,
                     void *data) {
  (void)t;
  xfer_res_t *x = data;
  x->done = true;
  x->error = error;
  x->bytes = bytes;
  snprintf(x->msg, sizeof(x->msg), "%s", message ? message : "");
}

static void write_file(const char *path, size_t size, unsigned seed, int mode) {
  char *buf = malloc(size + 1);
  for (size_t i = 0; i < size; i++)
    buf[i] = (char)((i * 131 + seed * 7) ^ (i >> 9));
  assert_int_equal(kite__write_file(path, buf, size, mode), 0);
  free(buf);
}

static void assert_same_file(const char *a, const char *b) {
  char *x = NULL, *y = NULL;
  size_t xl = 0, yl = 0;
  assert_int_equal(kite__read_file(a, &x, &xl), 0);
  assert_int_equal(kite__read_file(b, &y, &yl), 0);
  assert_int_equal(xl, yl);
  assert_memory_equal(x, y, xl);
  struct stat sa, sb;
  assert_int_equal(stat(a, &sa), 0);
  assert_int_equal(stat(b, &sb), 0);
  assert_int_equal(sa.st_mode & 07777, sb.st_mode & 07777);
  free(x);
  free(y);
}

static void test_sftp_tree_round_trip(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(1);
  assert_int_equal(connect_with(&c, &o), 0);
  char *src = kite__sprintf("%s/src", W.home);
  char *sub = kite__sprintf("%s/src/sub/deeper", W.home);
  assert_int_equal(kite__mkdir_p(sub, 0755), 0);
  char *f1 = kite__sprintf("%s/src/a.bin", W.home);
  char *f2 = kite__sprintf("%s/src/sub/run.sh", W.home);
  char *f3 = kite__sprintf("%s/src/sub/deeper/big.bin", W.home);
  char *f4 = kite__sprintf("%s/src/empty", W.home);
  write_file(f1, 1000, 1, 0644);
  write_file(f2, 70000, 2, 0751);
  write_file(f3, 3 * 1024 * 1024 + 17, 3, 0600);
  write_file(f4, 0, 4, 0640);
  xfer_res_t x = {0};
  assert_int_equal(kite_ssh_upload(c.s, src, "up/tree", -1, on_xprogress, on_xdone, &x, NULL),
                   0);
  run_until(&x.done);
  assert_int_equal(x.error, 0);
  assert_int_equal(x.bytes, 1000 + 70000 + 3 * 1024 * 1024 + 17);
  assert_true(x.progress >= 1);
  /* The node sees the same bytes. */
  run_t r;
  run_sync(c.s, "cat up/tree/a.bin up/tree/sub/run.sh up/tree/sub/deeper/big.bin | wc -c; "
                "stat -c %a up/tree/sub/run.sh; ls -a up/tree | grep -c kite-tmp || true",
           &r);
  char expect[64];
  snprintf(expect, sizeof(expect), "%d\n751\n0\n", 1000 + 70000 + 3 * 1024 * 1024 + 17);
  assert_string_equal(r.out[1], expect);
  run_free(&r);
  char *dst = kite__sprintf("%s/dst", W.home);
  memset(&x, 0, sizeof(x));
  assert_int_equal(kite_ssh_download(c.s, "up/tree", dst, on_xprogress, on_xdone, &x, NULL), 0);
  run_until(&x.done);
  assert_int_equal(x.error, 0);
  const char *rel[] = {"a.bin", "sub/run.sh", "sub/deeper/big.bin", "empty"};
  for (size_t i = 0; i < 4; i++) {
    char *a = kite__sprintf("%s/%s", src, rel[i]);
    char *b = kite__sprintf("%s/%s", dst, rel[i]);
    assert_same_file(a, b);
    free(a);
    free(b);
  }
  /* Overwriting an existing file works (SFTP v3 rename does not replace). */
  memset(&x, 0, sizeof(x));
  assert_int_equal(kite_ssh_upload(c.s, f1, "up/tree/sub/run.sh", 0700, NULL, on_xdone, &x,
                                   NULL), 0);
  run_until(&x.done);
  assert_int_equal(x.error, 0);
  run_sync(c.s, "wc -c < up/tree/sub/run.sh; stat -c %a up/tree/sub/run.sh", &r);
  assert_string_equal(r.out[1], "1000\n700\n");
  run_free(&r);
  /* A missing remote file is a clear error. */
  memset(&x, 0, sizeof(x));
  char *nowhere = kite__sprintf("%s/nowhere", W.home);
  assert_int_equal(kite_ssh_download(c.s, "no/such/file", nowhere, NULL, on_xdone, &x, NULL), 0);
  run_until(&x.done);
  assert_int_equal(x.error, KITE_ENOENT);
  assert_non_null(strstr(x.msg, "no/such/file"));
  /* write: a string put atomically in place, with its mode. */
  static const char content[] = "it's \"atomic\"\n$(not run)\n\xe2\x9c\x93";
  memset(&x, 0, sizeof(x));
  assert_int_equal(kite_ssh_write(c.s, "w/d/file.txt", content, sizeof(content) - 1, 0640,
                                  on_xdone, &x, NULL), 0);
  run_until(&x.done);
  assert_int_equal(x.error, 0);
  run_sync(c.s, "cat w/d/file.txt; stat -c %a w/d/file.txt >&2", &r);
  assert_int_equal(r.len[1], sizeof(content) - 1);
  assert_memory_equal(r.out[1], content, sizeof(content) - 1);
  assert_string_equal(r.out[2], "640\n");
  run_free(&r);
  free(nowhere);
  free(src);
  free(sub);
  free(f1);
  free(f2);
  free(f3);
  free(f4);
  free(dst);
  close_conn(&c);
}

static long max_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* 256 MiB up and back down in constant memory: peak RSS grows by far less than the file. */
static void test_sftp_256mib_constant_memory(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(0);
  assert_int_equal(connect_with(&c, &o), 0);
  char *big = kite__sprintf("%s/big", W.home);
  FILE *f = fopen(big, "w");
  assert_non_null(f);
  static char block[1 << 20];
  for (size_t i = 0; i < sizeof(block); i++)
    block[i] = (char)(i * 7 + 3);
  for (int i = 0; i < 256; i++) {
    block[0] = (char)i;
    assert_int_equal(fwrite(block, 1, sizeof(block), f), sizeof(block));
  }
  fclose(f);
  long before = max_rss_kb();
  xfer_res_t x = {0};
  assert_int_equal(kite_ssh_upload(c.s, big, "big", -1, NULL, on_xdone, &x, NULL), 0);
  run_until(&x.done);
  assert_int_equal(x.error, 0);
  assert_int_equal(x.bytes, 256u << 20);
  char *back = kite__sprintf("%s/big.back", W.home);
  memset(&x, 0, sizeof(x));
  assert_int_equal(kite_ssh_download(c.s, "big", back, NULL, on_xdone, &x, NULL), 0);
  run_until(&x.done);
  assert_int_equal(x.error, 0);
  /* Runs first, so the peak is this test's: it grew by a fraction of the file. */
  long grew = max_rss_kb() - before;
  print_message("peak RSS grew by %ld KiB moving 256 MiB up and down\n", grew);
#ifndef __SANITIZE_ADDRESS__
  assert_true(grew < 48 * 1024);
#else
  /* AddressSanitizer keeps up to 256 MiB of freed memory in quarantine (and libssh2 frees a
   * packet per chunk), so RSS says nothing here; the normal build checks it. */
  (void)grew;
#endif
  run_t r;
  run_sync(c.s, "rm -f big", &r);
  run_free(&r);
  struct stat st;
  assert_int_equal(stat(back, &st), 0);
  assert_int_equal(st.st_size, 256 << 20);
  unlink(big);
  unlink(back);
  free(big);
  free(back);
  close_conn(&c);
}

/* A session cut while an upload runs (its sshd killed, the node alive): the upload fails with
 * the connection lost, and nothing libssh2 held for the open remote file outlives the session
 * (libssh2 1.10's SFTP shutdown leaves open handles and their queued writes behind: the ASan
 * build's leak check sees them when the transfer does not close its handle itself). */
static void on_xprogress_cut(kite_xfer_t *t, uint64_t done, uint64_t total, void *data) {
  (void)t;
  (void)total;
  xfer_res_t *x = data;
  x->progress++;
  if (done >= (4u << 20) && x->bytes == 0) {
    x->bytes = done; /* once: every sshd serving a connection of node 1 dies, not its listener */
    char cmd[200];
    snprintf(cmd, sizeof(cmd),
             "for m in $(pgrep -f '[/]%s/sshd/sshd_config'); do for p in $(pgrep -P $m); do "
             "pkill -KILL -P $p; kill -KILL $p; done; done",
             kite_local_node_address(W.node[1]));
    assert_int_equal(system(cmd), 0);
  }
}

static void test_session_cut_mid_upload(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(1);
  o.keepalive_s = 1;
  assert_int_equal(connect_with(&c, &o), 0);
  char *big = kite__sprintf("%s/cut", W.home);
  write_file(big, 64u << 20, 5, 0600);
  xfer_res_t x = {0};
  assert_int_equal(kite_ssh_upload(c.s, big, "cut.bin", -1, on_xprogress_cut, on_xdone, &x, NULL),
                   0);
  run_until(&x.done);
  assert_true(x.progress > 0);
  assert_int_equal(x.error, KITE_ECONNLOST);
  unlink(big);
  free(big);
  close_conn(&c);
}

/* Last: kills node 1. The running command completes with ECONNLOST and the session says it
 * is lost; nothing hangs. */
static void test_sshd_killed_mid_command(void **state) {
  (void)state;
  conn_t c;
  kite_ssh_options_t o = opts_for(1);
  o.keepalive_s = 1;
  assert_int_equal(connect_with(&c, &o), 0);
  run_t r;
  start(c.s, "echo started; sleep 1005", &r);
  while (r.out[1] == NULL)
    uv_run(&W.loop, UV_RUN_ONCE);
  kill(kite_local_node_pid(W.node[1]), SIGKILL);
  run_until(&r.done);
  assert_int_equal(r.error, KITE_ECONNLOST);
  run_until(&c.lost);
  assert_int_equal(c.lost_error, KITE_ECONNLOST);
  assert_false(kite_ssh_connected(c.s));
  run_t r2;
  kite_exec_opts_t xo = {.shell = "true"};
  assert_int_equal(kite_ssh_exec(c.s, &xo, on_output, on_done, &r2, NULL), KITE_ECONNLOST);
  run_free(&r);
  close_conn(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sftp_256mib_constant_memory),
      cmocka_unit_test(test_exit_codes_signals_streams),
      cmocka_unit_test(test_64_channels_one_session),
      cmocka_unit_test(test_channel_cap_queues),
      cmocka_unit_test(test_64_sessions),
      cmocka_unit_test(test_100mb_output),
      cmocka_unit_test(test_timeout_and_cancel_kill_the_group),
      cmocka_unit_test(test_host_keys),
      cmocka_unit_test(test_auth_and_refused_errors),
      cmocka_unit_test(test_agent_auth),
      cmocka_unit_test(test_sftp_tree_round_trip),
      cmocka_unit_test(test_session_cut_mid_upload),
      cmocka_unit_test(test_sshd_killed_mid_command),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
