/* The ssh provider: a pool over machines that already exist (here, local sshd nodes started
 * directly), found through an ssh_config and a known_hosts file like the user's own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite_impl.h"
#include "providers/ssh/ssh_provider_impl.h"

/* ---- inventory entries and ssh_config ------------------------------------------------------ */

static void check_entry(const char *entry, const char *user, const char *alias, unsigned port) {
  kite__ssh_host_t h;
  assert_int_equal(kite__ssh_parse_entry(entry, &h), 0);
  if (user)
    assert_string_equal(h.user, user);
  else
    assert_null(h.user);
  assert_string_equal(h.alias, alias);
  assert_int_equal(h.port, port);
  kite__ssh_host_clear(&h);
}

static void test_entries(void **state) {
  (void)state;
  check_entry("host", NULL, "host", 0);
  check_entry("ann@host.example:2200", "ann", "host.example", 2200);
  check_entry("[::1]:2222", NULL, "::1", 2222);
  check_entry("bob@[fe80::1]", "bob", "fe80::1", 0);
  check_entry("2001:db8::7", NULL, "2001:db8::7", 0);
  const char *bad[] = {"", "@host", "host:0", "host:70000", "host:x", "[::1", "[]:22",
                       "a b", "ann@", "[::1]x", NULL};
  for (size_t i = 0; bad[i]; i++) {
    kite__ssh_host_t h;
    assert_int_equal(kite__ssh_parse_entry(bad[i], &h), KITE_EINVAL);
  }
}

static void test_ssh_config(void **state) {
  (void)state;
  char dir[] = "/tmp/kite-test-sshcfg-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char *cfg = kite__sprintf("%s/config", dir);
  const char text[] = "# a comment\n"
                      "Host web-*  !web-old\n"
                      "  HostName 10.0.0.5\n"
                      "  Port 2201\n"
                      "Host web-1\n"
                      "  HostName 10.0.0.99\n" /* the first value wins, as in ssh */
                      "  User deploy\n"
                      "Host *\n"
                      "  User fallback\n"
                      "  IdentityFile ~/.ssh/other_key\n";
  assert_int_equal(kite__write_file(cfg, text, sizeof(text) - 1, 0600), 0);
  kite__ssh_host_t h;
  assert_int_equal(kite__ssh_parse_entry("web-1", &h), 0);
  assert_int_equal(kite__ssh_apply_config(cfg, &h), 0);
  assert_string_equal(h.hostname, "10.0.0.5");
  assert_int_equal(h.port, 2201);
  assert_string_equal(h.user, "deploy");
  assert_non_null(strstr(h.key, "/.ssh/other_key"));
  assert_true(h.key[0] == '/');
  kite__ssh_host_clear(&h);
  /* The entry's own user and port win over the config; a negated pattern excludes. */
  assert_int_equal(kite__ssh_parse_entry("ann@web-old:22", &h), 0);
  assert_int_equal(kite__ssh_apply_config(cfg, &h), 0);
  assert_null(h.hostname);
  assert_string_equal(h.user, "ann");
  assert_int_equal(h.port, 22);
  kite__ssh_host_clear(&h);
  /* A named config that does not exist is an error; the default one may be missing. */
  char *missing = kite__sprintf("%s/nope", dir);
  assert_int_equal(kite__ssh_parse_entry("x", &h), 0);
  assert_int_not_equal(kite__ssh_apply_config(missing, &h), 0);
  kite__ssh_host_clear(&h);
  free(missing);
  free(cfg);
  kite__rm_rf(dir);
}

/* ---- a pool over existing machines -------------------------------------------------------- */

typedef struct world {
  kite_runtime_t *rt;
  char home[64];
  char tag[64];
  char *key, *pub;
  kite_local_node_t *node[2];
  int started;
  kite_pool_t *pool;
  int open_status;
  char open_msg[1024];
  bool closed;
  char out[2][256];
  unsigned failed;
} world_t;

static void on_key(kite_runtime_t *rt, int status, void *data) {
  (void)rt;
  assert_int_equal(status, 0);
  *(bool *)data = true;
}

static void on_node(kite_local_node_t *n, int status, void *data) {
  (void)n;
  assert_int_equal(status, 0);
  ((world_t *)data)->started++;
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  (void)pool;
  assert_int_equal(status, 0);
  ((world_t *)data)->closed = true;
}

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  world_t *w = data;
  (void)pool;
  (void)attempt;
  if (stream == 1 && rank < 2)
    strncat(w->out[rank], buf, len < 100 ? len : 100);
}

static void on_task(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  world_t *w = data;
  assert_int_equal(status, 0);
  w->failed = r->failed;
  kite_pool_close(pool, on_closed, w);
}

static void on_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  world_t *w = data;
  w->open_status = status;
  snprintf(w->open_msg, sizeof(w->open_msg), "%s", msg ? msg : "");
  if (status != 0) {
    kite_pool_close(pool, on_closed, w);
    return;
  }
  kite_cmd_t cmd = {.shell = "echo \"rank $KITE_NODE_RANK at $(pwd)\""};
  assert_int_equal(kite_pool_broadcast(pool, &cmd, NULL, on_output, on_task, w, NULL), 0);
}

static void world_open(world_t *w) {
  memset(w, 0, sizeof(*w));
  snprintf(w->home, sizeof(w->home), "/tmp/kite-test-sshprov-XXXXXX");
  assert_non_null(mkdtemp(w->home));
  chmod(w->home, 0755);
  snprintf(w->tag, sizeof(w->tag), "sshprov-%ld", (long)getpid());
  kite_runtime_options_t o = {.home = w->home, .log_level = -1};
  assert_int_equal(kite_runtime_new(&w->rt, &o), 0);
  w->key = kite__sprintf("%s/user_key", w->home);
  bool done = false;
  assert_int_equal(kite_keypair_ensure(w->rt, w->key, on_key, &done), 0);
  while (!done)
    uv_run(kite_runtime_loop(w->rt), UV_RUN_ONCE);
  char *pub = kite__sprintf("%s.pub", w->key);
  assert_int_equal(kite__read_file(pub, &w->pub, NULL), 0);
  free(pub);
  w->pub[strcspn(w->pub, "\n")] = '\0';
  for (int i = 0; i < 2; i++) {
    kite_local_node_options_t no = {.tag = w->tag, .authorized_key = w->pub};
    assert_int_equal(kite_local_node_start(w->rt, &no, on_node, w, &w->node[i]), 0);
  }
  while (w->started < 2)
    uv_run(kite_runtime_loop(w->rt), UV_RUN_ONCE);
  assert_int_equal(kite_ssh_provider_new(w->rt, NULL, NULL), 0);
  assert_int_equal(kite_transport_new(w->rt, NULL, NULL), 0);
  assert_int_equal(kite_bootstrap_runner_new(w->rt, NULL), 0);
}

static void on_stopped(kite_local_node_t *n, int status, void *data) {
  (void)n;
  (void)status;
  (*(int *)data)++;
}

static void world_close(world_t *w) {
  int stopped = 0;
  for (int i = 0; i < 2; i++)
    kite_local_node_stop(w->node[i], on_stopped, &stopped);
  assert_int_equal(kite_runtime_shutdown(w->rt, NULL, NULL), 0);
  kite_runtime_run(w->rt);
  assert_int_equal(stopped, 2);
  assert_int_equal(kite_runtime_free(w->rt), 0);
  assert_int_equal(kite_local_count_tagged(w->tag), 0);
  kite__rm_rf(w->home);
  free(w->key);
  free(w->pub);
}

/* ssh_config and known_hosts as a user has them: node 0 behind an alias with a hashed
 * known_hosts line (ssh-keygen -H), node 1 written user@address:port with a plain line. */
static char *write_user_files(world_t *w, bool with_keys) {
  char *cfg = kite__sprintf("%s/ssh_config", w->home);
  char *text = kite__sprintf("Host alpha\n  HostName %s\n  Port %u\n  User %s\n"
                             "  IdentityFile %s\nHost *\n  User nobody-at-all\n",
                             kite_local_node_address(w->node[0]),
                             kite_local_node_port(w->node[0]), kite_local_node_user(w->node[0]),
                             w->key);
  assert_int_equal(kite__write_file(cfg, text, strlen(text), 0600), 0);
  free(text);
  char *kh = kite__sprintf("%s/known_hosts", w->home);
  if (with_keys) {
    text = kite__sprintf("alpha,[alpha]:%u %s\n[%s]:%u %s\n", kite_local_node_port(w->node[0]),
                         kite_local_node_host_key(w->node[0]),
                         kite_local_node_address(w->node[1]), kite_local_node_port(w->node[1]),
                         kite_local_node_host_key(w->node[1]));
    assert_int_equal(kite__write_file(kh, text, strlen(text), 0600), 0);
    free(text);
    /* Hash the first line's names with OpenSSH's own tool, as HashKnownHosts would. */
    char *cmd = kite__sprintf("ssh-keygen -q -H -f %s >/dev/null 2>&1 && rm -f %s.old", kh, kh);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *hashed = NULL;
    assert_int_equal(kite__read_file(kh, &hashed, NULL), 0);
    assert_null(strstr(hashed, "alpha"));
    free(hashed);
  } else {
    assert_int_equal(kite__write_file(kh, "", 0, 0600), 0);
  }
  char *opts = kite__sprintf("{\"hosts\": [\"alpha\", \"%s@%s:%u\"], \"ssh_config\": \"%s\", "
                             "\"known_hosts\": \"%s\", \"key\": \"%s\"}",
                             kite_local_node_user(w->node[1]),
                             kite_local_node_address(w->node[1]),
                             kite_local_node_port(w->node[1]), cfg, kh, w->key);
  free(cfg);
  free(kh);
  return opts;
}

static void test_pool_over_existing_machines(void **state) {
  (void)state;
  world_t w;
  world_open(&w);
  char *opts = write_user_files(&w, true);
  char name[48];
  snprintf(name, sizeof(name), "sshprov-%d", (int)getpid());
  kite_pool_spec_t s = {.name = name, .provider = "ssh", .nodes = 2, .provider_options = opts,
                        .deadman_off = true};
  assert_int_equal(kite_pool_open(w.rt, &s, on_open, &w, &w.pool), 0);
  while (!w.closed)
    uv_run(kite_runtime_loop(w.rt), UV_RUN_ONCE);
  assert_int_equal(w.open_status, 0);
  assert_int_equal(w.failed, 0);
  for (int r = 0; r < 2; r++) {
    char want[256];
    snprintf(want, sizeof(want), "rank %d at %s\n", r, kite_local_node_remote_dir(w.node[r]));
    assert_string_equal(w.out[r], want);
  }
  /* Closing the pool released the machines; it did not touch them. */
  assert_true(kite_local_node_pid(w.node[0]) > 0);
  assert_true(kite_local_node_pid(w.node[1]) > 0);
  free(opts);
  world_close(&w);
}

/* A host whose key is not in known_hosts: strict mode refuses it and says where to look. */
static void test_unknown_host_key_is_refused(void **state) {
  (void)state;
  world_t w;
  world_open(&w);
  char *opts = write_user_files(&w, false);
  char name[48];
  snprintf(name, sizeof(name), "sshprov-s%d", (int)getpid());
  kite_pool_spec_t s = {.name = name, .provider = "ssh", .nodes = 2, .provider_options = opts,
                        .deadman_off = true, .hostkey_mode = KITE_HOSTKEY_STRICT};
  assert_int_equal(kite_pool_open(w.rt, &s, on_open, &w, &w.pool), 0);
  while (!w.closed)
    uv_run(kite_runtime_loop(w.rt), UV_RUN_ONCE);
  assert_int_equal(w.open_status, KITE_EHOSTKEY);
  assert_non_null(strstr(w.open_msg, "is unknown"));
  assert_non_null(strstr(w.open_msg, "accept-new"));
  free(opts);
  world_close(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_entries),
      cmocka_unit_test(test_ssh_config),
      cmocka_unit_test(test_pool_over_existing_machines),
      cmocka_unit_test(test_unknown_host_key_is_refused),
  };
  if (getenv("KITE_TEST_FILTER"))
    cmocka_set_test_filter(getenv("KITE_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}
