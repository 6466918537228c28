/* Pool specs in YAML: a full spec lands in every field of the struct, ${VAR} expansion,
 * defaults, the examples load, and the corpus of bad specs under specs/bad/ each fails with
 * exactly the message on its first line ("# error: MESSAGE"), leaving the output untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite_impl.h"

static char tmp[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmp, sizeof(tmp), "/tmp/kite-test-spec-XXXXXX");
  return mkdtemp(tmp) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  return kite__rm_rf(tmp);
}

static const char *source_dir(void) {
  const char *d = getenv("KITE_SOURCE_DIR");
  return d ? d : ".";
}

static kite_spec_t *load_ok(const char *text) {
  kite_spec_t *spec = NULL;
  char *err = NULL;
  int rc = kite_spec_load_string(text, strlen(text), "test.yaml", &spec, &err);
  if (rc != 0)
    fail_msg("load failed (%s): %s", kite_err_name(rc), err ? err : "(no message)");
  assert_null(err);
  assert_non_null(spec);
  return spec;
}

/* The load fails with KITE_ESPEC and exactly this message. */
static void load_bad(const char *text, const char *want) {
  kite_spec_t *spec = (kite_spec_t *)&spec; /* must stay untouched */
  char *err = NULL;
  assert_int_equal(kite_spec_load_string(text, strlen(text), "t.yaml", &spec, &err), KITE_ESPEC);
  assert_ptr_equal(spec, (kite_spec_t *)&spec);
  assert_non_null(err);
  assert_string_equal(err, want);
  free(err);
}

static char *render(const kite_pool_spec_t *ps) {
  assert_non_null(ps->bootstrap);
  char *script = NULL;
  assert_int_equal(kite_bootstrap_render(ps->bootstrap, &script, NULL), 0);
  return script;
}

/* Every key of the schema, each with a value unlike its default. */
static void test_full_spec_fills_every_field(void **state) {
  (void)state;
  char src[128];
  snprintf(src, sizeof(src), "%s/config.ini", tmp);
  assert_int_equal(kite__write_file(src, "[core]\nmode = fast\n", 19, 0600), 0);
  setenv("KITE_SPEC_TEST_TOKEN", "s3cr3t-t0ken", 1);
  char *text = kite__sprintf("name: train-1\n"
                             "provider: aws\n"
                             "provider_options:\n"
                             "  profile: research\n"
                             "  subnets: [subnet-1, subnet-2]\n"
                             "  tags: {team: ml, cost_center: 42}\n"
                             "  ebs_optimized: true\n"
                             "  bid: 0.75\n"
                             "  extra: ~\n"
                             "  quoted: \"17\"\n"
                             "region: eu-west-1\n"
                             "nodes: 8\n"
                             "min_nodes: 6\n"
                             "image: ubuntu-22.04\n"
                             "resources:\n"
                             "  cpus: 16\n"
                             "  memory: 64GB\n"
                             "  accelerators: A100:8\n"
                             "  instance_type: p4d.24xlarge\n"
                             "  spot: true\n"
                             "  disk_gb: 500\n"
                             "env:\n"
                             "  OMP_NUM_THREADS: 4\n"
                             "  MODE: fast\n"
                             "bootstrap:\n"
                             "  setup:\n"
                             "    - name: fetch data\n"
                             "      run: ./fetch.sh\n"
                             "    - make -j\n"
                             "  files:\n"
                             "    - path: etc/app.conf\n"
                             "      content: |\n"
                             "        a = 1\n"
                             "      mode: 0600\n"
                             "    - path: config.ini\n"
                             "      source: %s\n"
                             "  env:\n"
                             "    GREETING: hello\n"
                             "    TOKEN: {value: \"${KITE_SPEC_TEST_TOKEN}\", secret: true}\n"
                             "  apt: [git, python3-pip]\n"
                             "  pip:\n"
                             "    packages: [numpy, torch==2.3.0]\n"
                             "    no_index: true\n"
                             "    find_links: /opt/wheels\n"
                             "    python: python3.11\n"
                             "run: |\n"
                             "  python train.py --rank $KITE_NODE_RANK\n"
                             "replace:\n"
                             "  on_preemption: true\n"
                             "  max_replacements: 20\n"
                             "  per_minute: 3\n"
                             "monitors:\n"
                             "  enabled: true\n"
                             "  health_interval: 2s\n"
                             "  health_timeout: 1500ms\n"
                             "  health_failures: 5\n"
                             "  preempt_interval: 1m\n"
                             "  jitter: 250ms\n"
                             "  health_command: /usr/bin/true\n"
                             "  cost_interval: 30s\n"
                             "deadman:\n"
                             "  enabled: true\n"
                             "  timeout: 1h\n"
                             "ssh:\n"
                             "  user: ubuntu\n"
                             "  key: /keys/id_ed25519\n"
                             "  host_key_mode: accept-new\n"
                             "  connect_timeout: 45s\n",
                             src);
  kite_spec_t *spec = load_ok(text);
  free(text);
  const kite_pool_spec_t *ps = kite_spec_pool(spec);

  assert_string_equal(ps->name, "train-1");
  assert_string_equal(ps->provider, "aws");
  assert_string_equal(ps->provider_options,
                      "{\"profile\":\"research\",\"subnets\":[\"subnet-1\",\"subnet-2\"],"
                      "\"tags\":{\"team\":\"ml\",\"cost_center\":42},\"ebs_optimized\":true,"
                      "\"bid\":0.75,\"extra\":null,\"quoted\":\"17\"}");
  assert_string_equal(ps->region, "eu-west-1");
  assert_int_equal(ps->nodes, 8);
  assert_int_equal(ps->min_nodes, 6);
  assert_string_equal(ps->image, "ubuntu-22.04");
  assert_int_equal(ps->cpus, 16);
  assert_int_equal(ps->memory_mb, 64 * 1024);
  assert_string_equal(ps->accelerator, "A100");
  assert_int_equal(ps->accelerator_count, 8);
  assert_string_equal(ps->instance_type, "p4d.24xlarge");
  assert_true(ps->spot);
  assert_int_equal(ps->disk_gb, 500);
  assert_non_null(ps->env);
  assert_string_equal(ps->env[0], "OMP_NUM_THREADS=4");
  assert_string_equal(ps->env[1], "MODE=fast");
  assert_null(ps->env[2]);
  assert_string_equal(kite_spec_run(spec), "python train.py --rank $KITE_NODE_RANK\n");
  assert_true(ps->replace);
  assert_int_equal(ps->max_replacements, 20);
  assert_int_equal(ps->replace_per_minute, 3);
  assert_false(ps->monitors_off);
  assert_int_equal(ps->monitors.health_interval_ms, 2000);
  assert_int_equal(ps->monitors.health_timeout_ms, 1500);
  assert_int_equal(ps->monitors.health_failures, 5);
  assert_int_equal(ps->monitors.preempt_interval_ms, 60000);
  assert_int_equal(ps->monitors.jitter_ms, 250);
  assert_string_equal(ps->monitors.health_command, "/usr/bin/true");
  assert_int_equal(ps->monitors.cost_interval_ms, 30000);
  assert_false(ps->deadman_off);
  assert_int_equal(ps->deadman_timeout_ms, 3600000);
  assert_string_equal(ps->ssh_user, "ubuntu");
  assert_string_equal(ps->ssh_key, "/keys/id_ed25519");
  assert_int_equal(ps->hostkey_mode, KITE_HOSTKEY_ACCEPT_NEW);
  assert_int_equal(ps->connect_timeout_ms, 45000);
  assert_string_equal(kite_spec_source(spec), "test.yaml");

  /* The bootstrap: env (2), apt, pip, files (2), setup (2), in that order whatever the order
   * of the keys, with the files' bytes and the packages in the script. */
  assert_int_equal(kite_bootstrap_steps(ps->bootstrap), 8);
  char *script = render(ps);
  const char *order[] = {"env GREETING",      "env TOKEN",       "git python3-pip", "torch==2.3.0",
                         "file etc/app.conf", "file config.ini", "fetch data",      "setup 2"};
  const char *at = script;
  for (size_t i = 0; i < KITE_ARRAY_SIZE(order); i++) {
    const char *p = strstr(at, order[i]);
    if (p == NULL)
      fail_msg("'%s' missing or out of order in the script", order[i]);
    at = p;
  }
  assert_non_null(strstr(script, "--no-index"));
  assert_non_null(strstr(script, "/opt/wheels"));
  assert_non_null(strstr(script, "python3.11"));
  assert_non_null(strstr(script, "a = 1\n"));
  assert_non_null(strstr(script, "[core]\nmode = fast\n"));
  assert_non_null(strstr(script, "chmod 600"));
  assert_non_null(strstr(script, "chmod 644"));
  assert_non_null(strstr(script, "./fetch.sh"));
  assert_non_null(strstr(script, "make -j"));
  free(script);

  /* TOKEN is a secret and GREETING is not: registered with a runtime, only TOKEN is redacted. */
  char home[128];
  snprintf(home, sizeof(home), "%s/home", tmp);
  kite_runtime_options_t o = {.home = home, .log_level = KITE_LOG_ERROR};
  kite_runtime_t *rt = NULL;
  assert_int_equal(kite_runtime_new(&rt, &o), 0);
  assert_int_equal(kite_bootstrap_register_secrets(ps->bootstrap, rt), 0);
  const char *line = "token s3cr3t-t0ken says hello";
  char *red = kite_redact(rt, line, strlen(line), NULL);
  assert_non_null(red);
  assert_null(strstr(red, "s3cr3t-t0ken"));
  assert_non_null(strstr(red, "hello"));
  free(red);
  assert_int_equal(kite_runtime_shutdown(rt, NULL, NULL), 0);
  kite_runtime_run(rt);
  assert_int_equal(kite_runtime_free(rt), 0);

  kite_spec_free(spec);
  unsetenv("KITE_SPEC_TEST_TOKEN");
}

/* Keys left out are the C struct's zeroes, so YAML and C mean the same thing by "default". */
static void test_defaults_are_the_struct_zeroes(void **state) {
  (void)state;
  kite_spec_t *spec = load_ok("name: tiny\nnodes: 1\n");
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  kite_pool_spec_t zero;
  memset(&zero, 0, sizeof(zero));
  zero.name = ps->name;
  zero.nodes = 1;
  assert_memory_equal(ps, &zero, sizeof(zero));
  assert_null(kite_spec_run(spec));
  kite_spec_free(spec);

  /* Empty values (also after expansion) and empty sections mean "not given". */
  unsetenv("KITE_SPEC_TEST_REGION");
  spec = load_ok("name: tiny\nnodes: 2\nregion: ${KITE_SPEC_TEST_REGION:-}\nimage:\n"
                 "min_nodes: ~\nresources:\nbootstrap: {apt: []}\nrun:\n");
  ps = kite_spec_pool(spec);
  assert_null(ps->region);
  assert_null(ps->image);
  assert_int_equal(ps->min_nodes, 0);
  assert_null(ps->bootstrap);
  assert_null(kite_spec_run(spec));
  kite_spec_free(spec);

  /* Switches that turn things off. */
  spec = load_ok("name: t\nnodes: 1\nmonitors: {enabled: false}\ndeadman: {enabled: false}\n"
                 "ssh: {host_key_mode: off}\n");
  ps = kite_spec_pool(spec);
  assert_true(ps->monitors_off);
  assert_true(ps->deadman_off);
  assert_int_equal(ps->hostkey_mode, KITE_HOSTKEY_OFF);
  kite_spec_free(spec);
}

static void test_env_expansion(void **state) {
  (void)state;
  setenv("KITE_SPEC_TEST_N", "3", 1);
  setenv("KITE_SPEC_TEST_EMPTY", "", 1);
  setenv("KITE_SPEC_TEST_REGION", "us-east-2", 1);
  unsetenv("KITE_SPEC_TEST_UNSET");
  kite_spec_t *spec = load_ok(
      "name: env-${KITE_SPEC_TEST_N}\n"
      "nodes: ${KITE_SPEC_TEST_N}\n"
      "min_nodes: ${KITE_SPEC_TEST_UNSET:-2}\n"
      "region: \"${KITE_SPEC_TEST_REGION}\"\n"
      "image: ${KITE_SPEC_TEST_EMPTY:-fallback}\n"
      "provider_options:\n"
      "  count: ${KITE_SPEC_TEST_N}\n"
      "  label: \"${KITE_SPEC_TEST_N}\"\n"
      "resources: {instance_type: '${KITE_SPEC_TEST_UNSET:-t3.micro}'}\n"
      "run: echo $$${KITE_SPEC_TEST_N} $KITE_NODE_RANK $${HOME} $$$$ a$ ${KITE_SPEC_TEST_N}$\n");
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  assert_string_equal(ps->name, "env-3");
  assert_int_equal(ps->nodes, 3);
  assert_int_equal(ps->min_nodes, 2);
  assert_string_equal(ps->region, "us-east-2");
  assert_string_equal(ps->image, "fallback");
  assert_string_equal(ps->provider_options, "{\"count\":3,\"label\":\"3\"}");
  assert_string_equal(ps->instance_type, "t3.micro");
  assert_string_equal(kite_spec_run(spec), "echo $3 $KITE_NODE_RANK ${HOME} $$ a$ 3$");
  kite_spec_free(spec);

  /* A variable that expands to something of the wrong type is reported as what it became. */
  setenv("KITE_SPEC_TEST_N", "many", 1);
  load_bad("name: x\nnodes: ${KITE_SPEC_TEST_N}\n",
           "t.yaml:2:8: nodes: expected an integer, got a string ('many')");
  load_bad("name: x\nnodes: 1\nrun: echo ${KITE_SPEC_TEST_UNSET}\n",
           "t.yaml:3:6: run: environment variable 'KITE_SPEC_TEST_UNSET' is not set; set it or "
           "write ${KITE_SPEC_TEST_UNSET:-default}");
  unsetenv("KITE_SPEC_TEST_N");
  unsetenv("KITE_SPEC_TEST_EMPTY");
  unsetenv("KITE_SPEC_TEST_REGION");
}

static void test_memory_units_and_accelerators(void **state) {
  (void)state;
  static const struct {
    const char *memory;
    uint64_t mb;
  } cases[] = {{"16", 16384},  {"1.5", 1536},   {"512MB", 512},  {"512 MiB", 512},
               {"2GiB", 2048}, {"1T", 1048576}, {"\"8G\"", 8192}};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(cases); i++) {
    char *text = kite__sprintf("name: m\nnodes: 1\nresources: {memory: %s, accelerators: %s}\n",
                               cases[i].memory, i % 2 ? "T4" : "H100:2");
    kite_spec_t *spec = load_ok(text);
    free(text);
    const kite_pool_spec_t *ps = kite_spec_pool(spec);
    assert_int_equal(ps->memory_mb, cases[i].mb);
    assert_string_equal(ps->accelerator, i % 2 ? "T4" : "H100");
    assert_int_equal(ps->accelerator_count, i % 2 ? 1 : 2);
    kite_spec_free(spec);
  }
}

/* A file's source is read relative to the spec file's directory; ssh.key too. */
static void test_paths_relative_to_the_spec(void **state) {
  (void)state;
  char path[160];
  snprintf(path, sizeof(path), "%s/motd.txt", tmp);
  assert_int_equal(kite__write_file(path, "welcome\n", 8, 0600), 0);
  snprintf(path, sizeof(path), "%s/pool.yaml", tmp);
  const char *yaml = "name: rel\nnodes: 1\nssh: {key: keys/id}\n"
                     "bootstrap:\n  files:\n    - {path: motd, source: motd.txt}\n";
  assert_int_equal(kite__write_file(path, yaml, strlen(yaml), 0600), 0);
  kite_spec_t *spec = NULL;
  char *err = NULL;
  assert_int_equal(kite_spec_load_file(path, &spec, &err), 0);
  assert_null(err);
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  char want[160];
  snprintf(want, sizeof(want), "%s/keys/id", tmp);
  assert_string_equal(ps->ssh_key, want);
  assert_string_equal(kite_spec_source(spec), path);
  char *script = render(ps);
  assert_non_null(strstr(script, "welcome\n"));
  free(script);
  kite_spec_free(spec);

  /* ~/ is the home directory; an absolute path stays as it is. */
  char *old_home = kite__strdup(getenv("HOME"));
  setenv("HOME", tmp, 1);
  spec = load_ok("name: home\nnodes: 1\nssh: {key: ~/.ssh/id_ed25519}\n");
  snprintf(want, sizeof(want), "%s/.ssh/id_ed25519", tmp);
  assert_string_equal(kite_spec_pool(spec)->ssh_key, want);
  kite_spec_free(spec);
  if (old_home)
    setenv("HOME", old_home, 1);
  else
    unsetenv("HOME");
  free(old_home);
}

static void test_unreadable_file_and_arguments(void **state) {
  (void)state;
  char path[160];
  snprintf(path, sizeof(path), "%s/missing.yaml", tmp);
  kite_spec_t *spec = (kite_spec_t *)&spec;
  char *err = NULL;
  assert_int_equal(kite_spec_load_file(path, &spec, &err), KITE_ENOENT);
  assert_ptr_equal(spec, (kite_spec_t *)&spec);
  char *want = kite__sprintf("%s: cannot read the spec: No such file or directory; expected a "
                             "readable YAML file",
                             path);
  assert_string_equal(err, want);
  free(want);
  free(err);
  /* errmsg may be NULL; a string without a name is "<string>". */
  assert_int_equal(kite_spec_load_string("nodes: 1\n", 9, NULL, &spec, NULL), KITE_ESPEC);
  assert_int_equal(kite_spec_load_string("nodes: 1\n", 9, NULL, &spec, &err), KITE_ESPEC);
  assert_string_equal(err, "<string>:1:1: missing required key 'name'; expected a pool name "
                           "(1-48 letters, digits, '-' or '_')");
  free(err);
  assert_int_equal(kite_spec_load_string(NULL, 0, NULL, NULL, &err), KITE_EINVAL);
  assert_null(err);
  /* Text need not be NUL-terminated: only len bytes are read. */
  const char text[] = "name: a\nnodes: 2\nXXXX";
  assert_int_equal(kite_spec_load_string(text, sizeof(text) - 5, NULL, &spec, &err), 0);
  assert_int_equal(kite_spec_pool(spec)->nodes, 2);
  kite_spec_free(spec);
  kite_spec_free(NULL);
}

static void test_examples_load(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof(path), "%s/examples/hello.yaml", source_dir());
  unsetenv("GREETING");
  kite_spec_t *spec = NULL;
  char *err = NULL;
  int rc = kite_spec_load_file(path, &spec, &err);
  if (rc != 0)
    fail_msg("%s", err ? err : kite_strerror(rc));
  const kite_pool_spec_t *ps = kite_spec_pool(spec);
  assert_string_equal(ps->name, "hello");
  assert_string_equal(ps->provider, "local");
  assert_int_equal(ps->nodes, 4);
  assert_string_equal(kite_spec_run(spec),
                      "uname -n; echo rank $KITE_NODE_RANK of $KITE_NUM_NODES");
  assert_int_equal(kite_bootstrap_steps(ps->bootstrap), 3);
  char *script = render(ps);
  assert_non_null(strstr(script, "hello from kite"));
  assert_non_null(strstr(script, "hello.txt"));
  free(script);
  kite_spec_free(spec);
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_yaml(const struct dirent *d) {
  size_t n = strlen(d->d_name);
  return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

/* Every file of specs/bad/ starts with "# error: MESSAGE"; loading it (from inside that
 * directory, so messages name the file as the corpus does) gives exactly MESSAGE. */
static void test_bad_spec_corpus(void **state) {
  (void)state;
  char dir[512], cwd[1024];
  snprintf(dir, sizeof(dir), "%s/tests/unit/specs/bad", source_dir());
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(dir), 0);
  unsetenv("KITE_SPEC_TEST_UNSET");
  struct dirent **names;
  int n = scandir(".", &names, is_yaml, by_name);
  assert_true(n >= 30);
  int failures = 0;
  for (int i = 0; i < n; i++) {
    const char *file = names[i]->d_name;
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(kite__read_file(file, &text, &len), 0);
    const char *prefix = "# error: ";
    char *nl = strchr(text, '\n');
    if (strncmp(text, prefix, strlen(prefix)) != 0 || nl == NULL) {
      print_error("%s: first line must be '# error: MESSAGE'\n", file);
      failures++;
    } else {
      *nl = '\0';
      const char *want = text + strlen(prefix);
      kite_spec_t *spec = (kite_spec_t *)&spec;
      char *err = NULL;
      int rc = kite_spec_load_file(file, &spec, &err);
      if (rc != KITE_ESPEC || spec != (kite_spec_t *)&spec || err == NULL ||
          strcmp(err, want) != 0) {
        print_error("%s:\n  want %s\n  got  %s (%s)\n", file, want, err ? err : "(none)",
                    kite_err_name(rc));
        failures++;
      }
      if (rc == 0 && spec != (kite_spec_t *)&spec)
        kite_spec_free(spec);
      free(err);
    }
    free(text);
    free(names[i]);
  }
  free(names);
  assert_int_equal(chdir(cwd), 0);
  print_message("%d bad specs checked\n", n);
  assert_int_equal(failures, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_full_spec_fills_every_field, setup, teardown),
      cmocka_unit_test(test_defaults_are_the_struct_zeroes),
      cmocka_unit_test(test_env_expansion),
      cmocka_unit_test(test_memory_units_and_accelerators),
      cmocka_unit_test_setup_teardown(test_paths_relative_to_the_spec, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unreadable_file_and_arguments, setup, teardown),
      cmocka_unit_test(test_examples_load),
      cmocka_unit_test(test_bad_spec_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
