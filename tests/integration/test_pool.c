/* Pools on the local provider, end to end: real sshd nodes, real SSH, real bootstrap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite/bootstrap.h"
#include "kite/local.h"
#include "kite/pool.h"
#include "kite/provider.h"
#include "kite/transport.h"
#include "kite/store.h"
#include "kite_impl.h"

#define MAXR 16

typedef struct ctx {
  kite_runtime_t *rt;
  kite_local_provider_t *lp;
  kite_pool_t *pool;
  char home[64];
  char name[48];
  char tag[64];
  int open_calls, open_status;
  char open_msg[8192];
  int close_calls, close_status;
  int task_calls, task_status;
  unsigned failed;
  kite_rank_result_t res[MAXR];
  char *res_msg[MAXR];
  char *out[MAXR][3];
  size_t out_len[MAXR][3];
  unsigned progress_events;
  void (*after_open)(struct ctx *c);
} ctx_t;

static void ctx_init(ctx_t *c, const char *what) {
  memset(c, 0, sizeof(*c));
  snprintf(c->home, sizeof(c->home), "/tmp/kite-test-pool-XXXXXX");
  assert_non_null(mkdtemp(c->home));
  snprintf(c->name, sizeof(c->name), "t%d-%s", (int)getpid(), what);
  snprintf(c->tag, sizeof(c->tag), "kite-pool-%s", c->name);
  kite_runtime_options_t o = {.home = c->home, .log_level = KITE_LOG_ERROR};
  assert_int_equal(kite_runtime_new(&c->rt, &o), 0);
  assert_int_equal(kite_local_provider_new(c->rt, NULL, &c->lp), 0);
  assert_int_equal(kite_transport_new(c->rt, NULL, NULL), 0);
  assert_int_equal(kite_bootstrap_runner_new(c->rt, NULL), 0);
}

static void on_shutdown(kite_runtime_t *rt, void *data) {
  (void)rt;
  (void)data;
}

static void ctx_done(ctx_t *c) {
  assert_int_equal(kite_runtime_shutdown(c->rt, on_shutdown, NULL), 0);
  kite_runtime_run(c->rt);
  assert_int_equal(kite_runtime_free(c->rt), 0);
  for (int i = 0; i < MAXR; i++) {
    free(c->res_msg[i]);
    for (int s = 0; s < 3; s++)
      free(c->out[i][s]);
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", c->home);
  assert_int_equal(system(cmd), 0);
  /* Nothing of the pool's nodes is left running. */
  assert_int_equal(kite_local_count_tagged(c->tag), 0);
}

static void on_closed(kite_pool_t *pool, int status, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->close_calls++;
  c->close_status = status;
}

static void on_open(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  c->open_calls++;
  c->open_status = status;
  snprintf(c->open_msg, sizeof(c->open_msg), "%s", msg ? msg : "");
  if (status == 0 && c->after_open)
    c->after_open(c);
  else
    kite_pool_close(pool, on_closed, c);
}

static void on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                      const void *buf, size_t len, void *data) {
  ctx_t *c = data;
  (void)pool;
  assert_int_equal(attempt, 1);
  assert_true(rank < MAXR);
  assert_true(stream == 1 || stream == 2);
  char *g = realloc(c->out[rank][stream], c->out_len[rank][stream] + len + 1);
  assert_non_null(g);
  memcpy(g + c->out_len[rank][stream], buf, len);
  c->out_len[rank][stream] += len;
  g[c->out_len[rank][stream]] = '\0';
  c->out[rank][stream] = g;
}

static void on_task(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  c->task_calls++;
  c->task_status = status;
  if (status == 0) {
    c->failed = r->failed;
    for (unsigned i = 0; i < r->count && i < MAXR; i++) {
      c->res[i] = r->ranks[i];
      c->res_msg[i] = r->ranks[i].message ? strdup(r->ranks[i].message) : NULL;
      c->res[i].message = c->res_msg[i];
      c->res[i].signal = NULL;
    }
  }
  kite_pool_close(pool, on_closed, c);
}

static kite_pool_spec_t spec_of(ctx_t *c, unsigned nodes, const kite_bootstrap_t *b) {
  kite_pool_spec_t s = {.name = c->name, .nodes = nodes, .bootstrap = b};
  return s;
}

/* ---- full lifecycle, ranks and env ---- */

static void broadcast_env(ctx_t *c) {
  kite_cmd_t cmd = {.shell = "echo \"rank=$KITE_NODE_RANK n=$KITE_NUM_NODES head=$KITE_HEAD_IP\"; "
                             "printf '%s\\n' \"$KITE_NODE_IPS\" | wc -l; echo \"spec=$SPEC_VAR\"; "
                             "cat boot.txt; echo err >&2; exit $((KITE_NODE_RANK % 2))"};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, NULL, on_output, on_task, c, NULL), 0);
}

static void test_lifecycle_8(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "life");
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_file(b, "boot.txt", "written by bootstrap\n", 21, 0600), 0);
  assert_int_equal(kite_bootstrap_checkpoint(b, "files-done"), 0);
  assert_int_equal(kite_bootstrap_run(b, "say hi", "echo hi"), 0);
  const char *env[] = {"SPEC_VAR=from spec", NULL};
  kite_pool_spec_t s = spec_of(&c, 8, b);
  s.env = env;
  c.after_open = broadcast_env;
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_bootstrap_free(b);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_calls, 1);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(c.task_calls, 1);
  assert_int_equal(c.close_calls, 1);
  assert_int_equal(c.close_status, 0);
  assert_int_equal(c.failed, 4); /* odd ranks exit 1 */
  char want[256];
  for (unsigned r = 0; r < 8; r++) {
    assert_int_equal(c.res[r].rank, r);
    assert_int_equal(c.res[r].error, 0);
    assert_int_equal(c.res[r].exit_status, (int)(r % 2));
    assert_non_null(c.out[r][1]);
    snprintf(want, sizeof(want), "rank=%u n=8 head=", r);
    assert_non_null(strstr(c.out[r][1], want));
    assert_non_null(strstr(c.out[r][1], "\n8\n"));
    assert_non_null(strstr(c.out[r][1], "spec=from spec\n"));
    assert_non_null(strstr(c.out[r][1], "written by bootstrap\n"));
    assert_string_equal(c.out[r][2], "err\n");
  }
  assert_int_equal(kite_local_provider_count(c.lp), 0);
  ctx_done(&c);
}

/* ---- a failing bootstrap step ---- */

static void test_bootstrap_failure(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "bootfail");
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_run(b, "fine", "true"), 0);
  assert_int_equal(kite_bootstrap_run(b, "breaks on rank 1",
                                      "if [ \"$KITE_NODE_RANK\" = 1 ]; then "
                                      "echo broken-step-output; exit 3; fi"), 0);
  kite_pool_spec_t s = spec_of(&c, 3, b);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_bootstrap_free(b);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_calls, 1);
  assert_int_equal(c.open_status, KITE_EBOOTSTRAP);
  assert_non_null(strstr(c.open_msg, "rank 1"));
  assert_non_null(strstr(c.open_msg, "breaks on rank 1"));
  assert_non_null(strstr(c.open_msg, "broken-step-output"));
  assert_int_equal(c.close_calls, 1);
  assert_int_equal(kite_local_provider_count(c.lp), 0);
  assert_int_equal(kite_local_count_tagged(c.tag), 0);
  ctx_done(&c);
}

/* ---- close while provisioning ---- */

static void close_now(uv_timer_t *t) {
  ctx_t *c = t->data;
  kite_pool_close(c->pool, on_closed, c);
  uv_close((uv_handle_t *)t, NULL);
}

static void on_open_no_close(kite_pool_t *pool, int status, const char *msg, void *data) {
  ctx_t *c = data;
  (void)pool;
  c->open_calls++;
  c->open_status = status;
  snprintf(c->open_msg, sizeof(c->open_msg), "%s", msg ? msg : "");
}

static void test_close_during_provisioning(void **state) {
  (void)state;
  for (int delay = 0; delay <= 40; delay += 20) {
    ctx_t c;
    ctx_init(&c, "early");
    kite_pool_spec_t s = spec_of(&c, 4, NULL);
    assert_int_equal(kite_pool_open(c.rt, &s, on_open_no_close, &c, &c.pool), 0);
    uv_timer_t t;
    uv_timer_init(kite_runtime_loop(c.rt), &t);
    t.data = &c;
    uv_timer_start(&t, close_now, (uint64_t)delay, 0);
    kite_runtime_run(c.rt);
    assert_int_equal(c.open_calls, 1);
    assert_int_equal(c.open_status, KITE_ECANCELED);
    assert_int_equal(c.close_calls, 1);
    assert_int_equal(c.close_status, 0);
    assert_int_equal(kite_local_provider_count(c.lp), 0);
    ctx_done(&c);
  }
}

/* ---- open/close 20 times: nothing left behind ---- */

static int count_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

static void close_after_open(ctx_t *c) { kite_pool_close(c->pool, on_closed, c); }

static void test_open_close_loop(void **state) {
  (void)state;
  int fds_before = -1;
  for (int i = 0; i < 20; i++) {
    ctx_t c;
    ctx_init(&c, "loop");
    c.after_open = close_after_open;
    kite_pool_spec_t s = spec_of(&c, 2, NULL);
    assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
    kite_runtime_run(c.rt);
    assert_int_equal(c.open_status, 0);
    assert_int_equal(c.close_calls, 1);
    ctx_done(&c);
    if (i == 0)
      fds_before = count_fds();
    else
      assert_int_equal(count_fds(), fds_before);
  }
}

/* ---- 8 nodes x 10 MB of output ---- */

static void broadcast_big(ctx_t *c) {
  kite_cmd_t cmd = {.shell = "yes \"rank-$KITE_NODE_RANK\" | head -c 10485760"};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, NULL, on_output, on_task, c, NULL), 0);
}

static void test_big_output(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "big");
  c.after_open = broadcast_big;
  kite_pool_spec_t s = spec_of(&c, 8, NULL);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.task_calls, 1);
  assert_int_equal(c.failed, 0);
  for (unsigned r = 0; r < 8; r++) {
    assert_int_equal(c.out_len[r][1], 10485760);
    char line[32];
    int n = snprintf(line, sizeof(line), "rank-%u\n", r);
    for (size_t off = 0; off + (size_t)n <= c.out_len[r][1]; off += (size_t)n)
      if (memcmp(c.out[r][1] + off, line, (size_t)n) != 0)
        fail_msg("rank %u output corrupt at byte %zu", r, off);
  }
  ctx_done(&c);
}

/* ---- hostile strings through the bootstrap, read back byte-exact ---- */

static const char hostile[] = "it's \"quoted\" $(touch pwned) `touch pwned2` $HOME \\ ; rm -rf x\n"
                              "second line\t\xe2\x9c\x93 \xf0\x9f\x9a\x80 -n --";

static void broadcast_hostile(ctx_t *c) {
  kite_cmd_t cmd = {.shell = "printf '%s' \"$HOSTILE\" > env.out; cat hostile.txt > file.out; "
                             "printf '%s|' \"$HOSTILE\"; cat hostile.txt; "
                             "ls pwned pwned2 2>/dev/null; true"};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, NULL, on_output, on_task, c, NULL), 0);
}

static void test_hostile_bootstrap(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "hostile");
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_env(b, "HOSTILE", hostile, false), 0);
  assert_int_equal(kite_bootstrap_file(b, "hostile.txt", hostile, sizeof(hostile) - 1, 0644), 0);
  c.after_open = broadcast_hostile;
  kite_pool_spec_t s = spec_of(&c, 2, b);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_bootstrap_free(b);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(c.failed, 0);
  /* The env (not exported by the pool itself: it came from the bootstrap's env file) and the
   * file come back byte for byte; nothing was executed. */
  size_t hl = sizeof(hostile) - 1;
  for (unsigned r = 0; r < 2; r++) {
    assert_int_equal(c.out_len[r][1], 2 * hl + 1);
    assert_memory_equal(c.out[r][1], hostile, hl);
    assert_int_equal(c.out[r][1][hl], '|');
    assert_memory_equal(c.out[r][1] + hl + 1, hostile, hl);
  }
  ctx_done(&c);
}

/* ---- upload to all, download from one ---- */

static void on_download(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  c->task_calls++;
  c->task_status = status;
  c->failed += status == 0 ? r->failed : 1;
  kite_pool_close(pool, on_closed, c);
}

static void on_upload(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  c->task_calls++;
  c->failed += status == 0 ? r->failed : 1;
  char local[128];
  snprintf(local, sizeof(local), "%s/back.bin", c->home);
  assert_int_equal(kite_pool_download(pool, 1, "up.bin", local, on_download, c), 0);
}

static void upload_all(ctx_t *c) {
  char local[128];
  snprintf(local, sizeof(local), "%s/up.bin", c->home);
  FILE *f = fopen(local, "wb");
  for (int i = 0; i < 300000; i++)
    fputc((i * 7) & 0xff, f);
  fclose(f);
  assert_int_equal(kite_pool_upload(c->pool, local, "up.bin", on_upload, c), 0);
}

static void test_upload_download(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "files");
  c.after_open = upload_all;
  kite_pool_spec_t s = spec_of(&c, 3, NULL);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.task_calls, 2);
  assert_int_equal(c.failed, 0);
  char a[128], b[128], cmd[300];
  snprintf(a, sizeof(a), "%s/up.bin", c.home);
  snprintf(b, sizeof(b), "%s/back.bin", c.home);
  snprintf(cmd, sizeof(cmd), "cmp -s %s %s", a, b);
  assert_int_equal(system(cmd), 0);
  ctx_done(&c);
}

/* ---- apt and pip on the nodes: only what is missing, offline ---- */

/* A minimal wheel of `kitetestpkg`, built here with the system's python. */
static char *build_wheel(const char *dir, size_t *len) {
  char *cmd = kite__sprintf(
      "python3 - <<'EOF'\n"
      "import base64, hashlib, zipfile\n"
      "name, ver = 'kitetestpkg', '0.1'\n"
      "di = f'{name}-{ver}.dist-info'\n"
      "files = {f'{name}/__init__.py': b'WHO = \"kite on a node\"\\n',\n"
      "         f'{di}/METADATA': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: {ver}\\n'.encode(),\n"
      "         f'{di}/WHEEL': b'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'}\n"
      "rec = ''\n"
      "for p, d in files.items():\n"
      "    h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()\n"
      "    rec += f'{p},sha256={h},{len(d)}\\n'\n"
      "rec += f'{di}/RECORD,,\\n'\n"
      "with zipfile.ZipFile('%s/w.whl', 'w') as z:\n"
      "    for p, d in files.items():\n"
      "        z.writestr(p, d)\n"
      "    z.writestr(f'{di}/RECORD', rec)\n"
      "EOF\n",
      dir);
  assert_int_equal(system(cmd), 0);
  free(cmd);
  char *path = kite__sprintf("%s/w.whl", dir);
  char *data = NULL;
  assert_int_equal(kite__read_file(path, &data, len), 0);
  free(path);
  return data;
}

static void broadcast_import(ctx_t *c) {
  kite_cmd_t cmd = {.shell = "venv/bin/python -c 'import kitetestpkg; print(kitetestpkg.WHO)'; "
                             "true"};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, NULL, on_output, on_task, c, NULL), 0);
}

static void test_apt_and_pip_on_nodes(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "pkgs");
  size_t wl = 0;
  char *wheel = build_wheel(c.home, &wl);
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  /* Already installed everywhere: the step must not call apt-get (which would need root and
   * a network the nodes do not have). */
  const char *debs[] = {"coreutils", "openssh-server", NULL};
  assert_int_equal(kite_bootstrap_apt(b, debs), 0);
  assert_int_equal(kite_bootstrap_file(b, "wheels/kitetestpkg-0.1-py3-none-any.whl", wheel, wl,
                                       0644), 0);
  assert_int_equal(kite_bootstrap_run(b, "a private python",
                                      "python3 -m venv --without-pip --system-site-packages venv"),
                   0);
  const char *pips[] = {"kitetestpkg==0.1", NULL};
  kite_bootstrap_pip_opts_t po = {.no_index = true, .find_links = "wheels",
                                  .python = "venv/bin/python"};
  assert_int_equal(kite_bootstrap_pip(b, pips, &po), 0);
  c.after_open = broadcast_import;
  kite_pool_spec_t s = spec_of(&c, 2, b);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_bootstrap_free(b);
  free(wheel);
  kite_runtime_run(c.rt);
  if (c.open_status != 0)
    fail_msg("open: %s", c.open_msg);
  assert_int_equal(c.failed, 0);
  for (unsigned r = 0; r < 2; r++)
    assert_non_null(strstr(c.out[r][1], "kite on a node\n"));
  ctx_done(&c);
}

/* ---- fan-out: never more ranks in flight than asked ---- */

static int inflight, max_inflight;

static void on_started(kite_bus_t *bus, const kite_event_t *ev, const kite_ev_task_started_t *p,
                       void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  (void)data;
  if (++inflight > max_inflight)
    max_inflight = inflight;
}

static void on_finished(kite_bus_t *bus, const kite_event_t *ev,
                        const kite_ev_task_finished_t *p, void *data) {
  (void)bus;
  (void)ev;
  (void)p;
  (void)data;
  inflight--;
}

static void broadcast_fanout(ctx_t *c) {
  kite_cmd_t cmd = {.shell = "sleep 0.2; echo done"};
  kite_task_opts_t o = {.fanout = 2};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, &o, on_output, on_task, c, NULL), 0);
}

static void test_fanout(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "fanout");
  inflight = max_inflight = 0;
  kite_bus_t *bus = kite_runtime_bus(c.rt);
  assert_int_equal(kite_on_task_started(bus, KITE_KEY_ANY, on_started, NULL, NULL), 0);
  assert_int_equal(kite_on_task_finished(bus, KITE_KEY_ANY, on_finished, NULL, NULL), 0);
  c.after_open = broadcast_fanout;
  kite_pool_spec_t s = spec_of(&c, 5, NULL);
  s.deadman_off = true;
  s.monitors_off = true; /* only the broadcast's commands are counted */
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_runtime_run(c.rt);
  assert_int_equal(c.task_calls, 1);
  assert_int_equal(c.failed, 0);
  for (unsigned r = 0; r < 5; r++)
    assert_string_equal(c.out[r][1], "done\n");
  assert_int_equal(max_inflight, 2);
  assert_int_equal(inflight, 0);
  ctx_done(&c);
}

/* ---- cancel ---- */

/* kite_pool_cancel stops the running rank on its node (its task completes only once the
 * process group is gone, so a command run next on that node finds nothing of it) and ends
 * the rank that was not started yet (fanout 1). */
static uint64_t cancel_id;
static bool cancel_asked;
static int cancel_err[2];

static void cancel_on_output(kite_pool_t *pool, uint32_t rank, unsigned attempt, int stream,
                             const void *buf, size_t len, void *data) {
  ctx_t *c = data;
  on_output(pool, rank, attempt, stream, buf, len, data);
  if (!cancel_asked && c->out[0][1] && strstr(c->out[0][1], "started")) {
    cancel_asked = true;
    assert_int_equal(kite_pool_cancel(pool, cancel_id), 0);
  }
}

static void on_canceled(kite_pool_t *pool, int status, const kite_task_result_t *r, void *data) {
  ctx_t *c = data;
  assert_int_equal(status, 0);
  assert_int_equal(r->count, 2);
  cancel_err[0] = r->ranks[0].error;
  cancel_err[1] = r->ranks[1].error;
  assert_int_equal(kite_pool_cancel(pool, cancel_id), KITE_ENOENT);
  free(c->out[0][1]);
  c->out[0][1] = NULL;
  c->out_len[0][1] = 0;
  kite_cmd_t cmd = {.shell = "n=0; for f in /proc/[0-9]*/cmdline; do "
                             "[ \"$(tr '\\0' ' ' <\"$f\" 2>/dev/null)\" = 'sleep 47 ' ] && "
                             "n=$((n+1)); done; echo \"left=$n\""};
  assert_int_equal(kite_pool_run(pool, 0, &cmd, NULL, on_output, on_task, c, NULL), 0);
}

static void broadcast_then_cancel(ctx_t *c) {
  kite_cmd_t cmd = {.shell = "echo started; exec sleep 47"};
  kite_task_opts_t o = {.fanout = 1};
  assert_int_equal(kite_pool_broadcast(c->pool, &cmd, &o, cancel_on_output, on_canceled, c,
                                       &cancel_id),
                   0);
}

static void test_cancel(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "cancel");
  cancel_asked = false;
  c.after_open = broadcast_then_cancel;
  kite_pool_spec_t s = spec_of(&c, 2, NULL);
  s.deadman_off = true;
  s.monitors_off = true;
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  uint64_t t0 = uv_now(kite_runtime_loop(c.rt));
  kite_runtime_run(c.rt);
  assert_true(cancel_asked);
  assert_int_equal(cancel_err[0], KITE_ECANCELED);
  assert_int_equal(cancel_err[1], KITE_ECANCELED);
  assert_int_equal(c.task_calls, 1);
  assert_int_equal(c.res[0].error, 0);
  assert_non_null(c.out[0][1]);
  assert_string_equal(c.out[0][1], "left=0\n");
  assert_true(uv_now(kite_runtime_loop(c.rt)) - t0 < 20000);
  ctx_done(&c);
}

/* ---- a name in use is refused, whoever holds it ---- */

static void on_open_never(kite_pool_t *pool, int status, const char *msg, void *data) {
  (void)pool;
  (void)status;
  (void)msg;
  (void)data;
  fail_msg("a refused open called its callback");
}

/* Writes the record another process would have left for c's pool name. */
static kite_store_t *hold_name(ctx_t *c, int64_t owner_pid, bool live_instance) {
  char *path = kite_store_default_path(c->home);
  kite_store_t *st = NULL;
  assert_int_equal(kite_store_open(path, &st), 0);
  free(path);
  kite_store_pool_t rec = {.name = c->name, .provider = "local", .tag = c->tag,
                           .owner_pid = owner_pid, .state = "ready"};
  assert_int_equal(kite_store_pool_put(st, &rec), 0);
  int64_t row;
  if (live_instance)
    assert_int_equal(kite_store_instance_launching(st, c->name, 0, "local", c->tag, NULL, &row), 0);
  return st;
}

static void expect_refused(ctx_t *c, kite_store_t *st, int64_t owner_pid, unsigned live) {
  kite_pool_spec_t s = spec_of(c, 2, NULL);
  kite_pool_t *p = NULL;
  assert_int_equal(kite_pool_open(c->rt, &s, on_open_never, c, &p), KITE_EBUSY);
  assert_null(p);
  /* Nothing was launched, and the holder's record is as it was. */
  assert_int_equal(kite_local_provider_count(c->lp), 0);
  kite_store_pool_t rec;
  assert_int_equal(kite_store_pool_get(st, c->name, &rec), 0);
  assert_int_equal(rec.owner_pid, owner_pid);
  assert_string_equal(rec.state, "ready");
  assert_int_equal(rec.live_instances, live);
  kite_store_pool_clear(&rec);
}

/* A spec that asks for resources no provider chooses by is refused, not ignored: nothing is
 * recorded or launched, and the callback is never called. */
static void test_resources_refused(void **state) {
  (void)state;
  ctx_t c;
  ctx_init(&c, "resources");
  kite_pool_spec_t s = spec_of(&c, 2, NULL);
  s.cpus = 96;
  kite_pool_t *p = NULL;
  assert_int_equal(kite_pool_open(c.rt, &s, on_open_never, &c, &p), KITE_ENOTSUP);
  assert_null(p);
  s.cpus = 0;
  s.accelerator = "A100";
  assert_int_equal(kite_pool_open(c.rt, &s, on_open_never, &c, &p), KITE_ENOTSUP);
  kite_store_t *st = NULL;
  char *path = kite_store_default_path(c.home);
  assert_int_equal(kite_store_open(path, &st), 0);
  kite_store_pool_t rec = {0};
  assert_int_equal(kite_store_pool_get(st, s.name, &rec), KITE_ENOENT);
  kite_store_close(st);
  free(path);
  ctx_done(&c);
}

static void test_name_in_use(void **state) {
  (void)state;
  /* Held by a live process (our parent). */
  ctx_t c;
  ctx_init(&c, "inuse");
  kite_store_t *st = hold_name(&c, getppid(), false);
  expect_refused(&c, st, getppid(), 0);
  kite_store_close(st);
  ctx_done(&c);

  /* Held by an owner that died with an instance still recorded live. */
  ctx_init(&c, "deadowner");
  pid_t dead = fork();
  if (dead == 0)
    _exit(0);
  assert_true(dead > 0);
  assert_int_equal(waitpid(dead, NULL, 0), dead);
  st = hold_name(&c, dead, true);
  expect_refused(&c, st, dead, 1);
  kite_store_close(st);
  ctx_done(&c);

  /* Open in this very process: the second open is refused, the first pool keeps working. */
  ctx_init(&c, "twice");
  c.after_open = broadcast_env;
  kite_pool_spec_t s = spec_of(&c, 2, NULL);
  assert_int_equal(kite_pool_open(c.rt, &s, on_open, &c, &c.pool), 0);
  kite_pool_t *p2 = NULL;
  assert_int_equal(kite_pool_open(c.rt, &s, on_open_never, &c, &p2), KITE_EBUSY);
  assert_null(p2);
  kite_runtime_run(c.rt);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(c.task_calls, 1);
  assert_int_equal(c.res[0].exit_status, 0);
  assert_non_null(strstr(c.out[0][1], "rank=0 n=2"));
  assert_int_equal(c.close_calls, 1);
  assert_int_equal(c.close_status, 0);
  ctx_done(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lifecycle_8),
      cmocka_unit_test(test_bootstrap_failure),
      cmocka_unit_test(test_close_during_provisioning),
      cmocka_unit_test(test_open_close_loop),
      cmocka_unit_test(test_big_output),
      cmocka_unit_test(test_hostile_bootstrap),
      cmocka_unit_test(test_upload_download),
      cmocka_unit_test(test_apt_and_pip_on_nodes),
      cmocka_unit_test(test_fanout),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_name_in_use),
      cmocka_unit_test(test_resources_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
