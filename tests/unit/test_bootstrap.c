/* The bootstrap builder, renderer and progress parser, against real /bin/sh processes in a
 * temporary HOME: hostile values arrive byte for byte and nothing in them runs, steps are
 * skipped once done, a changed step runs again, a failing step stops the script, markers are
 * found in output cut anywhere, and apt/pip install only what is missing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bootstrap/bootstrap_impl.h"
#include "kite/kite.h"
#include "kite_impl.h"

static char tmp[64];   /* the test's directory */
static char home[128]; /* $HOME of the scripts */

static int setup(void **state) {
  (void)state;
  snprintf(tmp, sizeof(tmp), "/tmp/kite-test-boot-XXXXXX");
  if (mkdtemp(tmp) == NULL)
    return -1;
  snprintf(home, sizeof(home), "%s/home", tmp);
  return mkdir(home, 0700);
}

static int teardown(void **state) {
  (void)state;
  return kite__rm_rf(tmp);
}

static char *path_in(const char *dir, const char *name) {
  char *p = kite__sprintf("%s/%s", dir, name);
  assert_non_null(p);
  return p;
}

static bool exists(const char *dir, const char *name) {
  char *p = path_in(dir, name);
  struct stat st;
  bool yes = lstat(p, &st) == 0;
  free(p);
  return yes;
}

static char *slurp(const char *dir, const char *name, size_t *len) {
  char *p = path_in(dir, name), *data = NULL;
  size_t l = 0;
  if (kite__read_file(p, &data, &l) != 0)
    fail_msg("cannot read %s", p);
  free(p);
  if (len)
    *len = l;
  return data;
}

static void spit(const char *dir, const char *name, const char *text, int mode) {
  char *p = path_in(dir, name);
  assert_int_equal(kite__write_file(p, text, strlen(text), mode), 0);
  free(p);
}

typedef struct run {
  int status; /* exit status, or 128 + signal */
  char *out, *err;
  size_t out_len, err_len;
} run_t;

static void run_free(run_t *r) {
  free(r->out);
  free(r->err);
}

/* Runs `sh -c text` (or a script file when is_file) from $HOME with nothing in its
 * environment but HOME and PATH, like `env -i`. path_prefix goes before /usr/bin:/bin. */
static run_t sh_run(const char *text, bool is_file, const char *path_prefix) {
  char *out_path = path_in(tmp, "stdout"), *err_path = path_in(tmp, "stderr");
  char *env_home = kite__sprintf("HOME=%s", home);
  char *env_path = kite__sprintf("PATH=%s%s/usr/bin:/bin", path_prefix ? path_prefix : "",
                                 path_prefix ? ":" : "");
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int in = open("/dev/null", O_RDONLY);
    if (o < 0 || e < 0 || in < 0 || chdir(home) != 0 || dup2(in, 0) < 0 || dup2(o, 1) < 0 ||
        dup2(e, 2) < 0)
      _exit(126);
    char *envp[] = {env_home, env_path, NULL};
    if (is_file) {
      char *argv[] = {"sh", (char *)text, NULL};
      execve("/bin/sh", argv, envp);
    } else {
      char *argv[] = {"sh", "-c", (char *)text, NULL};
      execve("/bin/sh", argv, envp);
    }
    _exit(127);
  }
  int ws = 0;
  assert_int_equal(waitpid(pid, &ws, 0), pid);
  run_t r = {.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws)};
  assert_int_equal(kite__read_file(out_path, &r.out, &r.out_len), 0);
  assert_int_equal(kite__read_file(err_path, &r.err, &r.err_len), 0);
  free(out_path);
  free(err_path);
  free(env_home);
  free(env_path);
  return r;
}

/* Renders b into $HOME/.kite/bootstrap.sh (as the runner would upload it) and runs it. */
static run_t boot_run(const kite_bootstrap_t *b, const char *path_prefix) {
  char *script = NULL;
  size_t len = 0;
  assert_int_equal(kite_bootstrap_render(b, &script, &len), 0);
  assert_int_equal(strlen(script), len);
  char *dir = path_in(home, KITE_BOOTSTRAP_DIR);
  assert_int_equal(kite__mkdir_p(dir, 0700), 0);
  char *p = path_in(home, KITE_BOOTSTRAP_SCRIPT);
  assert_int_equal(kite__write_file(p, script, len, 0700), 0);
  run_t r = sh_run(p, true, path_prefix);
  free(script);
  free(dir);
  free(p);
  return r;
}

static void expect_ok(const run_t *r) {
  if (r->status != 0)
    fail_msg("script exited %d\nstdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
}

/* ---- the progress parser ---------------------------------------------------------------- */

typedef struct seen {
  unsigned n;
  unsigned step[64], total[64];
  char *name[64];
} seen_t;

static void on_step(void *data, unsigned step, unsigned total, const char *name) {
  seen_t *s = data;
  assert_true(s->n < 64);
  s->step[s->n] = step;
  s->total[s->n] = total;
  s->name[s->n] = strdup(name);
  s->n++;
}

static void seen_free(seen_t *s) {
  for (unsigned i = 0; i < s->n; i++)
    free(s->name[i]);
  s->n = 0;
}

/* Feeds stdout in chunks of `chunk` bytes (0: all at once), then stderr the same way; or, when
 * interleave, a stderr chunk after each stdout chunk. */
static void feed_chunks(kite__boot_progress_t *p, const run_t *r, size_t chunk, bool interleave) {
  size_t o = 0, e = 0;
  while (!interleave && o < r->out_len) {
    size_t n = chunk && chunk < r->out_len - o ? chunk : r->out_len - o;
    kite__boot_progress_feed(p, 1, r->out + o, n);
    o += n;
  }
  while (o < r->out_len || e < r->err_len) {
    size_t n = chunk ? chunk : r->out_len - o;
    if (n > r->out_len - o)
      n = r->out_len - o;
    kite__boot_progress_feed(p, 1, r->out + o, n);
    o += n;
    n = chunk ? chunk : r->err_len - e;
    if (n > r->err_len - e)
      n = r->err_len - e;
    kite__boot_progress_feed(p, 2, r->err + e, n);
    e += n;
  }
  kite__boot_progress_finish(p);
}

static void feed(kite__boot_progress_t *p, const run_t *r, size_t chunk) {
  feed_chunks(p, r, chunk, false);
}

/* ---- hostile values --------------------------------------------------------------------- */

static const char *const hostile[] = {
    "it's",
    "\"double\" 'single' '\\''",
    "$(touch pwned)",
    "`touch pwned2`",
    "; touch pwned3; echo ",
    "$HOME ${HOME} ${X:-y} $$ $1 $@ $*",
    "line one\nline two\n\n",
    "\ttab\tand\rcarriage",
    "\xe2\x9c\x93 \xf0\x9f\x9a\x80 \xc3\xa9t\xc3\xa9",
    "-n",
    "--",
    "-e \\n \\t \\0101 \\c",
    "back\\slash\\",
    "%s %d %% %n %b",
    "no trailing newline",
    "",
    "\xff\xfe raw bytes \x01\x1b[31m",
    "| & > < * ? [a] ~ # !",
};

static void test_hostile_values_arrive_byte_exact(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  size_t n = KITE_ARRAY_SIZE(hostile);
  for (size_t i = 0; i < n; i++) {
    char name[32], file[32];
    snprintf(name, sizeof(name), "HOSTILE_%zu", i);
    snprintf(file, sizeof(file), "dir %zu/h'%zu.txt", i, i);
    assert_int_equal(kite_bootstrap_env(b, name, hostile[i], i % 2 == 0), 0);
    assert_int_equal(kite_bootstrap_file(b, file, hostile[i], strlen(hostile[i]), 0640), 0);
    /* The value as a later step of the bootstrap sees it. */
    char *cmd = kite__sprintf("printf '%%s' \"$%s\" > env%zu.out", name, i);
    assert_int_equal(kite_bootstrap_run(b, hostile[i], cmd), 0);
    free(cmd);
  }
  run_t r = boot_run(b, NULL);
  expect_ok(&r);
  assert_int_equal(kite_bootstrap_steps(b), 3 * n);

  for (size_t i = 0; i < n; i++) {
    size_t len;
    char file[32], out[32];
    snprintf(file, sizeof(file), "h'%zu.txt", i);
    snprintf(out, sizeof(out), "env%zu.out", i);
    char *dir = kite__sprintf("%s/dir %zu", home, i);
    char *data = slurp(dir, file, &len);
    assert_int_equal(len, strlen(hostile[i]));
    assert_memory_equal(data, hostile[i], len);
    free(data);
    char *p = path_in(dir, file);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    free(p);
    free(dir);
    data = slurp(home, out, &len);
    assert_int_equal(len, strlen(hostile[i]));
    assert_memory_equal(data, hostile[i], len);
    free(data);
  }

  /* Later commands source the env file and see the same bytes. */
  for (size_t i = 0; i < n; i++) {
    char *cmd = kite__sprintf(". \"$HOME/" KITE_BOOTSTRAP_ENV_FILE "\"; printf '%%s' \"$HOSTILE_%zu\"",
                              i);
    run_t s = sh_run(cmd, false, NULL);
    expect_ok(&s);
    assert_int_equal(s.out_len, strlen(hostile[i]));
    assert_memory_equal(s.out, hostile[i], s.out_len);
    run_free(&s);
    free(cmd);
  }
  struct stat st;
  char *env = path_in(home, KITE_BOOTSTRAP_ENV_FILE);
  assert_int_equal(stat(env, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  free(env);

  /* The step names (hostile too) came through the markers, one line each. */
  kite__boot_progress_t p;
  seen_t seen = {0};
  kite__boot_progress_init(&p, on_step, &seen);
  feed(&p, &r, 0);
  assert_true(p.done);
  assert_int_equal(seen.n, 3 * n);
  for (unsigned i = 2; i < seen.n; i += 3) {
    char *want = kite__strdup(hostile[i / 3]);
    for (char *c = want; *c; c++)
      if (*c == '\n' || *c == '\r')
        *c = ' ';
    assert_string_equal(seen.name[i], want);
    free(want);
  }
  seen_free(&seen);
  kite__boot_progress_free(&p);

  /* Nothing ran. */
  const char *bad[] = {"pwned", "pwned2", "pwned3"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(bad); i++) {
    assert_false(exists(home, bad[i]));
    assert_false(exists(tmp, bad[i]));
  }
  run_free(&r);
  kite_bootstrap_free(b);
}

static void test_file_content_is_binary_safe(void **state) {
  (void)state;
  unsigned char all[512];
  for (size_t i = 0; i < sizeof(all); i++)
    all[i] = (unsigned char)(i % 256);
  const char dash[] = "-x\0y\\0%\n-";
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_file(b, "all.bin", all, sizeof(all), 0600), 0);
  assert_int_equal(kite_bootstrap_file(b, "dash.bin", dash, sizeof(dash) - 1, 0644), 0);
  assert_int_equal(kite_bootstrap_file(b, "empty", "", 0, 0600), 0);
  assert_int_equal(kite_bootstrap_file(b, "also-empty", NULL, 0, 0600), 0);
  char *abs = path_in(tmp, "abs/deep/er/file");
  assert_int_equal(kite_bootstrap_file(b, abs, "x", 1, 0755), 0);
  assert_int_equal(kite_bootstrap_file(b, "-starts-with-dash/-f", "y", 1, 0600), 0);
  run_t r = boot_run(b, NULL);
  expect_ok(&r);
  size_t len;
  char *data = slurp(home, "all.bin", &len);
  assert_int_equal(len, sizeof(all));
  assert_memory_equal(data, all, len);
  free(data);
  data = slurp(home, "dash.bin", &len);
  assert_int_equal(len, sizeof(dash) - 1);
  assert_memory_equal(data, dash, len);
  free(data);
  data = slurp(home, "empty", &len);
  assert_int_equal(len, 0);
  free(data);
  assert_true(exists(home, "also-empty"));
  struct stat st;
  assert_int_equal(stat(abs, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0755);
  data = slurp(home, "-starts-with-dash/-f", &len);
  assert_memory_equal(data, "y", 1);
  free(data);
  /* No temporary file is left beside the targets. */
  run_t ls = sh_run("ls -A . | grep kite-tmp; true", false, NULL);
  assert_int_equal(ls.out_len, 0);
  run_free(&ls);
  free(abs);
  run_free(&r);
  kite_bootstrap_free(b);
}

/* A file step over an existing directory fails rather than writing into it. */
static void test_file_over_directory_fails(void **state) {
  (void)state;
  char *d = path_in(home, "adir");
  assert_int_equal(mkdir(d, 0700), 0);
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_file(b, "adir", "x", 1, 0600), 0);
  run_t r = boot_run(b, NULL);
  assert_int_not_equal(r.status, 0);
  assert_non_null(strstr(r.err, "is a directory"));
  run_t ls = sh_run("ls -A adir", false, NULL);
  assert_int_equal(ls.out_len, 0);
  run_free(&ls);
  run_free(&r);
  free(d);
  kite_bootstrap_free(b);
}

/* ---- idempotency ------------------------------------------------------------------------ */

static void test_rerun_skips_completed_steps(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_env(b, "WORD", "bird", false), 0);
  assert_int_equal(kite_bootstrap_run(b, "count", "echo \"$WORD\" >> count"), 0);
  assert_int_equal(kite_bootstrap_checkpoint(b, "halfway"), 0);
  assert_int_equal(kite_bootstrap_file(b, "f.txt", "one\n", 4, 0600), 0);
  assert_int_equal(kite_bootstrap_run(b, "count again", "echo 2 >> count"), 0);
  for (int round = 0; round < 2; round++) {
    run_t r = boot_run(b, NULL);
    expect_ok(&r);
    /* Every marker is printed on both runs; the second says which steps it skipped. */
    kite__boot_progress_t p;
    seen_t seen = {0};
    kite__boot_progress_init(&p, on_step, &seen);
    feed(&p, &r, 0);
    assert_int_equal(seen.n, 5);
    assert_true(p.done);
    assert_string_equal(seen.name[1], "count");
    assert_string_equal(seen.name[2], "halfway");
    /* The last step's output: on the second run, that it was skipped. */
    char *tail = kite__boot_progress_output(&p);
    assert_string_equal(tail, round ? "(already done)\n\n" : "\n");
    free(tail);
    seen_free(&seen);
    kite__boot_progress_free(&p);
    const char *skipped = strstr(r.out, "(already done)");
    if (round == 0)
      assert_null(skipped);
    else
      assert_non_null(skipped);
    run_free(&r);
  }
  size_t len;
  char *count = slurp(home, "count", &len);
  assert_string_equal(count, "bird\n2\n");
  free(count);
  /* The env step is not skipped: its variable still reaches the file on a re-run. */
  char *env = slurp(home, KITE_BOOTSTRAP_ENV_FILE, NULL);
  assert_string_equal(env, "export WORD='bird'\n");
  free(env);
  kite_bootstrap_free(b);
}

static void test_changed_step_runs_again(void **state) {
  (void)state;
  const char *second[] = {"echo a >> log", "echo b >> log", "echo b >> log"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(second); i++) {
    kite_bootstrap_t *b = NULL;
    assert_int_equal(kite_bootstrap_new(&b), 0);
    assert_int_equal(kite_bootstrap_run(b, "first", "echo first >> log"), 0);
    assert_int_equal(kite_bootstrap_run(b, "second", second[i]), 0);
    run_t r = boot_run(b, NULL);
    expect_ok(&r);
    run_free(&r);
    kite_bootstrap_free(b);
  }
  char *log = slurp(home, "log", NULL);
  assert_string_equal(log, "first\na\nb\n");
  free(log);
}

static void test_failing_step_stops_the_script(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_run(b, "fine", "echo ran >> log; echo noise"), 0);
  assert_int_equal(kite_bootstrap_run(b, "breaks", "echo before; echo boom >&2; exit 3"), 0);
  assert_int_equal(kite_bootstrap_run(b, "never", "echo never >> later"), 0);
  for (int round = 0; round < 2; round++) {
    run_t r = boot_run(b, NULL);
    assert_int_equal(r.status, 3);
    assert_false(exists(home, "later"));
    kite__boot_progress_t p;
    seen_t seen = {0};
    kite__boot_progress_init(&p, on_step, &seen);
    feed(&p, &r, 1);
    assert_false(p.done);
    assert_int_equal(p.step, 2);
    assert_int_equal(p.total, 3);
    assert_string_equal(p.name, "breaks");
    /* The failing step's output, from both streams, and nothing of the step before. */
    char *out = kite__boot_progress_output(&p);
    assert_non_null(strstr(out, "before\n"));
    assert_non_null(strstr(out, "boom\n"));
    assert_null(strstr(out, "noise"));
    free(out);
    seen_free(&seen);
    kite__boot_progress_free(&p);
    run_free(&r);
  }
  /* The step that completed ran once; the failed one ran again on the second run. */
  char *log = slurp(home, "log", NULL);
  assert_string_equal(log, "ran\n");
  free(log);
  kite_bootstrap_free(b);
}

/* A step's cd, exit and variables end with it; env steps reach every later step. */
static void test_steps_are_isolated_but_env_persists(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_run(b, "wander", "cd /; LOCAL=x; exit 0"), 0);
  assert_int_equal(kite_bootstrap_env(b, "SHARED", "yes", false), 0);
  assert_int_equal(kite_bootstrap_run(b, "where",
                                      "pwd > where; printf '%s|%s' \"${LOCAL:-}\" \"$SHARED\" > vars"),
                   0);
  assert_int_equal(kite_bootstrap_run(b, "stdin", "cat > stdin.out"), 0);
  run_t r = boot_run(b, NULL);
  expect_ok(&r);
  char *where = slurp(home, "where", NULL);
  char *want = kite__sprintf("%s\n", home);
  assert_string_equal(where, want);
  char *vars = slurp(home, "vars", NULL);
  assert_string_equal(vars, "|yes");
  free(where);
  free(want);
  free(vars);
  run_free(&r);
  kite_bootstrap_free(b);

  /* A later bootstrap without env steps leaves no variable of this one in the file. */
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_checkpoint(b, "only"), 0);
  r = boot_run(b, NULL);
  expect_ok(&r);
  size_t len;
  char *env = slurp(home, KITE_BOOTSTRAP_ENV_FILE, &len);
  assert_int_equal(len, 0);
  free(env);
  run_free(&r);
  kite_bootstrap_free(b);
}

/* ---- markers --------------------------------------------------------------------------- */

static void test_markers_found_in_any_chunking(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  /* Output that looks like markers but is not one, and output without a final newline. */
  assert_int_equal(kite_bootstrap_run(b, "one", "printf 'no newline'; echo '@kite-' >&2"), 0);
  assert_int_equal(kite_bootstrap_run(b, "two\nlines", "echo '@kite-step x'; echo ' @kite-step 1 1 y'"),
                   0);
  assert_int_equal(kite_bootstrap_checkpoint(b, "  spaced  name  "), 0);
  assert_int_equal(kite_bootstrap_run(b, "last", "printf '@kite-ste'"), 0);
  run_t r = boot_run(b, NULL);
  expect_ok(&r);
  size_t chunks[] = {0, 1, 2, 3, 7, 11, 64};
  for (size_t c = 0; c < KITE_ARRAY_SIZE(chunks); c++) {
    kite__boot_progress_t p;
    seen_t seen = {0};
    kite__boot_progress_init(&p, on_step, &seen);
    feed_chunks(&p, &r, chunks[c], c % 2 == 1);
    assert_int_equal(seen.n, 4);
    const char *names[] = {"one", "two lines", "  spaced  name  ", "last"};
    for (unsigned i = 0; i < 4; i++) {
      assert_int_equal(seen.step[i], i + 1);
      assert_int_equal(seen.total[i], 4);
      assert_string_equal(seen.name[i], names[i]);
    }
    assert_true(p.done);
    seen_free(&seen);
    kite__boot_progress_free(&p);
  }
  run_free(&r);
  kite_bootstrap_free(b);
}

static void test_parser_rejects_near_markers_and_bounds_output(void **state) {
  (void)state;
  static const char *const not_markers[] = {
      "@kite-step 0 3 zero\n", "@kite-step 4 3 past\n",  "@kite-step 1 3\n",
      "@kite-step -1 3 x\n",   "@kite-step 1  3 x\n",    "@kite-step 1234567890 9999999999 x\n",
      "@kite-stepped 1 1 x\n", "x@kite-step 1 1 y\n",    "@kite-done\n",
      "@kite-done 3 extra\n",  "@KITE-step 1 1 x\n",
  };
  for (size_t i = 0; i < KITE_ARRAY_SIZE(not_markers); i++) {
    kite__boot_progress_t p;
    seen_t seen = {0};
    kite__boot_progress_init(&p, on_step, &seen);
    kite__boot_progress_feed(&p, 1, not_markers[i], strlen(not_markers[i]));
    kite__boot_progress_finish(&p);
    assert_int_equal(seen.n, 0);
    assert_false(p.done);
    char *out = kite__boot_progress_output(&p);
    assert_string_equal(out, not_markers[i]);
    free(out);
    kite__boot_progress_free(&p);
  }

  /* Only the last 64 KiB of a step is kept; a marker on stderr is not a marker; a long
   * line that starts like a marker is output. */
  kite__boot_progress_t p;
  seen_t seen = {0};
  kite__boot_progress_init(&p, on_step, &seen);
  kite__boot_progress_feed(&p, 1, "@kite-step 1 2 a\n", 17);
  kite__boot_progress_feed(&p, 2, "\n@kite-step 2 2 b\n", 18);
  assert_int_equal(seen.n, 1);
  size_t big = 3 * KITE__BOOT_TAIL_MAX;
  char *data = malloc(big);
  for (size_t i = 0; i < big; i++)
    data[i] = (char)('a' + i % 26);
  memcpy(data, "@kite-", 6);
  data[big - 1] = '\n';
  kite__boot_progress_feed(&p, 1, data, big / 2);
  kite__boot_progress_feed(&p, 1, data + big / 2, big - big / 2);
  kite__boot_progress_finish(&p);
  char *out = kite__boot_progress_output(&p);
  assert_int_equal(strlen(out), KITE__BOOT_TAIL_MAX);
  assert_memory_equal(out, data + big - KITE__BOOT_TAIL_MAX, KITE__BOOT_TAIL_MAX);
  free(out);
  /* A new step starts its output afresh. */
  kite__boot_progress_feed(&p, 1, "@kite-step 2 2 b\nfresh", 22);
  kite__boot_progress_finish(&p);
  out = kite__boot_progress_output(&p);
  assert_string_equal(out, "fresh");
  free(out);
  assert_int_equal(seen.n, 2);
  free(data);
  seen_free(&seen);
  kite__boot_progress_free(&p);
}

/* ---- validation ------------------------------------------------------------------------ */

static void test_bad_arguments_are_refused(void **state) {
  (void)state;
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  const char *bad_env[] = {"", "1A", "A-B", "A B", "A=B", "A;B", "$A", "A\n", "\xc3\xa9"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(bad_env); i++)
    assert_int_equal(kite_bootstrap_env(b, bad_env[i], "v", false), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_env(b, NULL, "v", false), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_env(b, "OK", NULL, false), KITE_EINVAL);
  const char *bad_pkg[] = {"", "-x", "a b", "a;b", "$(x)", "`x`", "a'b", "a\nb", "a*", "a/b"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(bad_pkg); i++) {
    const char *list[] = {"git", bad_pkg[i], NULL};
    assert_int_equal(kite_bootstrap_apt(b, list), KITE_EINVAL);
    assert_int_equal(kite_bootstrap_pip(b, list, NULL), KITE_EINVAL);
  }
  const char *upper[] = {"Git", NULL}, *none[] = {NULL};
  assert_int_equal(kite_bootstrap_apt(b, upper), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_apt(b, none), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_apt(b, NULL), KITE_EINVAL);
  kite_bootstrap_pip_opts_t empty_python = {.python = ""};
  const char *pkg[] = {"numpy", NULL};
  assert_int_equal(kite_bootstrap_pip(b, pkg, &empty_python), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_file(b, "", "x", 1, 0600), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_file(b, "dir/", "x", 1, 0600), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_file(b, "f", NULL, 1, 0600), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_file(b, "f", "x", 1, 010000), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_file(b, "f", "x", 1, -1), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_run(b, NULL, "true"), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_run(b, "x", NULL), KITE_EINVAL);
  assert_int_equal(kite_bootstrap_checkpoint(b, NULL), KITE_EINVAL);
  /* Nothing refused became a step. */
  assert_int_equal(kite_bootstrap_steps(b), 0);
  const char *good[] = {"python3-pip", "libc6:amd64", "git=1:2.39.2-1", NULL};
  assert_int_equal(kite_bootstrap_apt(b, good), 0);
  const char *good_pip[] = {"torch==2.3.0", "Flask>=2,<3", "a_b", NULL};
  assert_int_equal(kite_bootstrap_pip(b, good_pip, NULL), 0);
  assert_int_equal(kite_bootstrap_steps(b), 2);
  kite_bootstrap_free(b);
}

/* ---- apt and pip ----------------------------------------------------------------------- */

/* A bin directory with recording stand-ins for apt-get and sudo, and an `id` that says the
 * user is not root when as_user. */
static char *fake_bin(bool as_user) {
  char *bin = path_in(tmp, "bin");
  assert_int_equal(kite__mkdir_p(bin, 0700), 0);
  spit(bin, "apt-get", "#!/bin/sh\necho \"apt-get $*\" >> \"$HOME/apt-calls\"\nexit 1\n", 0755);
  spit(bin, "sudo", "#!/bin/sh\necho \"sudo $*\" >> \"$HOME/sudo-calls\"\nshift\nexec \"$@\"\n",
       0755);
  char *id = path_in(bin, "id");
  unlink(id);
  free(id);
  if (as_user)
    spit(bin, "id", "#!/bin/sh\necho 1000\n", 0755);
  return bin;
}

static void test_apt_installs_only_missing_packages(void **state) {
  (void)state;
  run_t dpkg = sh_run("dpkg-query -W -f='${Status}' coreutils", false, NULL);
  if (dpkg.status != 0 || strstr(dpkg.out, "install ok installed") == NULL) {
    run_free(&dpkg);
    skip();
  }
  run_free(&dpkg);
  char *bin = fake_bin(false);
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  const char *present[] = {"coreutils", "dash", NULL};
  assert_int_equal(kite_bootstrap_apt(b, present), 0);
  run_t r = boot_run(b, bin);
  expect_ok(&r);
  assert_non_null(strstr(r.out, "already installed: coreutils dash"));
  assert_false(exists(home, "apt-calls"));
  run_free(&r);
  kite_bootstrap_free(b);

  /* A missing package reaches apt-get (here the stand-in, which fails), alone, as root
   * without sudo; then after an update. */
  assert_int_equal(kite_bootstrap_new(&b), 0);
  const char *some[] = {"coreutils", "kite-no-such-package", NULL};
  assert_int_equal(kite_bootstrap_apt(b, some), 0);
  r = boot_run(b, bin);
  assert_int_not_equal(r.status, 0);
  char *calls = slurp(home, "apt-calls", NULL);
  assert_string_equal(calls, "apt-get install -y -q kite-no-such-package\n"
                             "apt-get update -q\n");
  free(calls);
  assert_false(exists(home, "sudo-calls"));
  run_free(&r);

  /* Not root: through sudo -n. */
  free(fake_bin(true));
  char *p = path_in(home, "apt-calls");
  unlink(p);
  free(p);
  r = boot_run(b, bin);
  assert_int_not_equal(r.status, 0);
  calls = slurp(home, "sudo-calls", NULL);
  assert_non_null(strstr(calls, "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                                "kite-no-such-package\n"));
  free(calls);
  run_free(&r);
  kite_bootstrap_free(b);
  free(bin);
}

/* Builds a minimal wheel of package `name` in dir with python. */
static void build_wheel(const char *python, const char *dir, const char *name) {
  char *cmd = kite__sprintf(
      "%s - <<'EOF'\n"
      "import base64, hashlib, zipfile\n"
      "name, ver = '%s', '0.1'\n"
      "di = f'{name}-{ver}.dist-info'\n"
      "files = {f'{name}/__init__.py': b'WHO = \"kite\"\\n',\n"
      "         f'{di}/METADATA': f'Metadata-Version: 2.1\\nName: {name}\\nVersion: {ver}\\n'.encode(),\n"
      "         f'{di}/WHEEL': b'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'}\n"
      "rec = ''\n"
      "for p, d in files.items():\n"
      "    h = base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()\n"
      "    rec += f'{p},sha256={h},{len(d)}\\n'\n"
      "rec += f'{di}/RECORD,,\\n'\n"
      "with zipfile.ZipFile(f'%s/{name}-{ver}-py3-none-any.whl', 'w') as z:\n"
      "    for p, d in files.items():\n"
      "        z.writestr(p, d)\n"
      "    z.writestr(f'{di}/RECORD', rec)\n"
      "EOF\n",
      python, name, dir);
  run_t r = sh_run(cmd, false, NULL);
  expect_ok(&r);
  run_free(&r);
  free(cmd);
}

static void test_pip_installs_only_missing_packages(void **state) {
  (void)state;
  run_t pip = sh_run("python3 -m pip --version && python3 -c 'import venv'", false, NULL);
  if (pip.status != 0) {
    run_free(&pip);
    skip();
  }
  run_free(&pip);
  /* A throwaway environment that sees the system's pip but installs into itself. */
  char *venv = path_in(tmp, "venv"), *wheels = path_in(tmp, "wheels");
  char *cmd = kite__sprintf("python3 -m venv --without-pip --system-site-packages '%s'", venv);
  run_t r = sh_run(cmd, false, NULL);
  expect_ok(&r);
  run_free(&r);
  free(cmd);
  assert_int_equal(kite__mkdir_p(wheels, 0700), 0);
  build_wheel("python3", wheels, "kitetestpkg");
  char *python = kite__sprintf("%s/bin/python", venv);

  kite_bootstrap_pip_opts_t o = {.no_index = true, .find_links = wheels, .python = python};
  const char *pkgs[] = {"pip", "kitetestpkg==0.1", NULL};
  for (int round = 0; round < 2; round++) {
    kite_bootstrap_t *b = NULL;
    assert_int_equal(kite_bootstrap_new(&b), 0);
    assert_int_equal(kite_bootstrap_pip(b, pkgs, &o), 0);
    /* A different step each round so that the second round checks pip, not the marker. */
    assert_int_equal(kite_bootstrap_checkpoint(b, round ? "second" : "first"), 0);
    r = boot_run(b, NULL);
    expect_ok(&r);
    if (round == 0) {
      assert_non_null(strstr(r.out, "installing: kitetestpkg==0.1\n"));
    } else {
      assert_null(strstr(r.out, "installing"));
      assert_non_null(strstr(r.out, "already installed: pip kitetestpkg==0.1"));
    }
    run_free(&r);
    kite_bootstrap_free(b);
    char *steps = path_in(home, ".kite/steps");
    assert_int_equal(kite__rm_rf(steps), 0);
    free(steps);
  }
  cmd = kite__sprintf("'%s' -c 'import kitetestpkg; print(kitetestpkg.WHO)'", python);
  r = sh_run(cmd, false, NULL);
  expect_ok(&r);
  assert_string_equal(r.out, "kite\n");
  run_free(&r);
  free(cmd);
  free(python);
  free(venv);
  free(wheels);
}

/* ---- secrets ---------------------------------------------------------------------------- */

static void test_secret_values_are_registered(void **state) {
  (void)state;
  char *rt_home = path_in(tmp, "kite-home");
  kite_runtime_options_t o = {.home = rt_home, .log_level = KITE_LOG_ERROR};
  kite_runtime_t *rt = NULL;
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  kite_bootstrap_t *b = NULL;
  assert_int_equal(kite_bootstrap_new(&b), 0);
  assert_int_equal(kite_bootstrap_env(b, "TOKEN", "hunter2-secret", true), 0);
  assert_int_equal(kite_bootstrap_env(b, "PLAIN", "visible-value", false), 0);
  assert_int_equal(kite_bootstrap_register_secrets(b, rt), 0);
  const char *line = "hunter2-secret visible-value";
  char *red = kite_redact(rt, line, strlen(line), NULL);
  assert_null(strstr(red, "hunter2-secret"));
  assert_non_null(strstr(red, "visible-value"));
  free(red);
  kite_bootstrap_free(b);
  assert_int_equal(kite_runtime_shutdown(rt, NULL, NULL), 0);
  kite_runtime_run(rt);
  assert_int_equal(kite_runtime_free(rt), 0);
  free(rt_home);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_hostile_values_arrive_byte_exact, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_content_is_binary_safe, setup, teardown),
      cmocka_unit_test_setup_teardown(test_file_over_directory_fails, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rerun_skips_completed_steps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_changed_step_runs_again, setup, teardown),
      cmocka_unit_test_setup_teardown(test_failing_step_stops_the_script, setup, teardown),
      cmocka_unit_test_setup_teardown(test_steps_are_isolated_but_env_persists, setup, teardown),
      cmocka_unit_test_setup_teardown(test_markers_found_in_any_chunking, setup, teardown),
      cmocka_unit_test(test_parser_rejects_near_markers_and_bounds_output),
      cmocka_unit_test(test_bad_arguments_are_refused),
      cmocka_unit_test_setup_teardown(test_apt_installs_only_missing_packages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_pip_installs_only_missing_packages, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secret_values_are_registered, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
