/* The provider registry: honoured or refused. Every file of specs/refused/ loads (its schema is
 * right) and is then refused by kite_registry_check_spec() with exactly the message on its
 * first line ("# error: MESSAGE": FILE:LINE:COL of the refused key, what is wrong, what to
 * do), leaving its provider options as they were. Specs each provider honours pass, and
 * ssh.user / ssh.key reach the provider as its own options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kite/kite.h"
#include "kite_impl.h"

static const char *source_dir(void) {
  const char *d = getenv("KITE_SOURCE_DIR");
  return d ? d : ".";
}

static kite_spec_t *load(const char *text) {
  kite_spec_t *spec = NULL;
  char *err = NULL;
  int rc = kite_spec_load_string(text, strlen(text), "t.yaml", &spec, &err);
  if (rc != 0)
    fail_msg("load failed (%s): %s", kite_err_name(rc), err ? err : "(no message)");
  return spec;
}

/* Loads text, checks it, and expects exactly want. */
static void refused(const char *text, const char *want) {
  kite_spec_t *spec = load(text);
  const char *before = kite_spec_pool(spec)->provider_options;
  char *err = NULL;
  assert_int_equal(kite_registry_check_spec(spec, &err), KITE_ESPEC);
  assert_non_null(err);
  assert_string_equal(err, want);
  assert_ptr_equal(kite_spec_pool(spec)->provider_options, before);
  free(err);
  kite_spec_free(spec);
}

/* Loads and checks text, which must pass; returns the spec. */
static kite_spec_t *honoured(const char *text) {
  kite_spec_t *spec = load(text);
  char *err = NULL;
  int rc = kite_registry_check_spec(spec, &err);
  if (rc != 0)
    fail_msg("check failed (%s): %s", kite_err_name(rc), err ? err : "(no message)");
  assert_null(err);
  return spec;
}

static void test_every_provider_is_in_the_table(void **state) {
  (void)state;
  static const char *const names[] = {"local", "ssh",    "digitalocean", "aws",   "hetzner",
                                      "gcp",   "vastai", "verda",        "runpod"};
  for (size_t i = 0; i < KITE_ARRAY_SIZE(names); i++) {
    const kite_provider_info_t *p = kite_registry_find(names[i]);
    assert_non_null(p);
    assert_ptr_equal(kite_registry_at(i), p);
    assert_non_null(p->start);
    assert_non_null(p->title);
    /* Each option once, each with a meaning. */
    for (size_t j = 0; j < p->n_options; j++) {
      assert_non_null(p->options[j].meaning);
      for (size_t k = j + 1; k < p->n_options; k++)
        assert_string_not_equal(p->options[j].name, p->options[k].name);
    }
    /* ssh.user / ssh.key are honoured exactly where an option carries them. */
    assert_true((p->ssh_user_option == NULL) == (p->refused[KITE_FIELD_SSH_USER] != NULL));
    assert_true((p->ssh_key_option == NULL) == (p->refused[KITE_FIELD_SSH_KEY] != NULL));
    /* Instances are chosen by resources only where the catalog has the offers to choose
     * among, and a provider that says how it bills says it in whole seconds. */
    if (!p->catalog) {
      assert_non_null(p->refused[KITE_FIELD_CPUS]);
      assert_non_null(p->refused[KITE_FIELD_MEMORY]);
      assert_non_null(p->refused[KITE_FIELD_ACCELERATORS]);
    }
    assert_true(p->billing_minimum_s == 0 || p->billing_minimum_s >= p->billing_increment_s);
    assert_non_null(p->refused[KITE_FIELD_DISK_GB]);
  }
  /* AWS: a catalog, per-second billing with a minute's minimum, resources honoured. */
  const kite_provider_info_t *aws = kite_registry_find("aws");
  assert_true(aws->catalog);
  assert_int_equal(aws->billing_increment_s, 1);
  assert_int_equal(aws->billing_minimum_s, 60);
  assert_non_null(aws->configured);
  assert_null(aws->refused[KITE_FIELD_CPUS]);
  assert_null(aws->refused[KITE_FIELD_MEMORY]);
  assert_null(aws->refused[KITE_FIELD_ACCELERATORS]);
  assert_null(kite_registry_at(KITE_ARRAY_SIZE(names)));
  assert_null(kite_registry_find("AWS"));
  assert_null(kite_registry_find(NULL));
}

/* The clouds with a catalog: how they bill, and that they choose by resources. */
static void test_catalog_rows(void **state) {
  (void)state;
  const kite_provider_info_t *d = kite_registry_find("digitalocean");
  const kite_provider_info_t *h = kite_registry_find("hetzner");
  assert_true(d->catalog && h->catalog);
  assert_int_equal(d->billing_increment_s, 1);
  assert_int_equal(d->billing_minimum_s, 60);
  assert_int_equal(h->billing_increment_s, 3600);
  assert_int_equal(h->billing_minimum_s, 3600);
  assert_true(kite_registry_can(d, KITE_FIELD_CPUS) && kite_registry_can(d, KITE_FIELD_MEMORY) &&
              kite_registry_can(d, KITE_FIELD_ACCELERATORS));
  assert_true(kite_registry_can(h, KITE_FIELD_CPUS) && kite_registry_can(h, KITE_FIELD_MEMORY));
  assert_false(kite_registry_can(h, KITE_FIELD_ACCELERATORS)); /* no GPU server types */
  /* configured: the token variables, else the CLI's file, which an empty HOME does not have. */
  char home[] = "/tmp/kite-test-registry-cfg-XXXXXX";
  assert_non_null(mkdtemp(home));
  const char *vars[] = {"DIGITALOCEAN_TOKEN", "DIGITALOCEAN_ACCESS_TOKEN", "HCLOUD_TOKEN",
                        "HCLOUD_CONFIG",      "XDG_CONFIG_HOME",           "HOME"};
  char *saved[6];
  for (size_t i = 0; i < 6; i++) {
    saved[i] = getenv(vars[i]) ? strdup(getenv(vars[i])) : NULL;
    unsetenv(vars[i]);
  }
  setenv("HOME", home, 1);
  assert_false(d->configured());
  assert_false(h->configured());
  setenv("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_x", 1);
  setenv("HCLOUD_TOKEN", "h_x", 1);
  assert_true(d->configured());
  assert_true(h->configured());
  unsetenv("DIGITALOCEAN_ACCESS_TOKEN");
  unsetenv("HCLOUD_TOKEN");
  char path[256];
  snprintf(path, sizeof(path), "%s/.config", home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/.config/doctl", home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/.config/doctl/config.yaml", home);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs("access-token: dop_v1_from_doctl\n", fp);
  fclose(fp);
  snprintf(path, sizeof(path), "%s/.config/hcloud", home);
  mkdir(path, 0700);
  snprintf(path, sizeof(path), "%s/.config/hcloud/cli.toml", home);
  fp = fopen(path, "w");
  assert_non_null(fp);
  fputs("active_context = \"p\"\n[[contexts]]\nname = \"q\"\ntoken = \"a\"\n", fp);
  fclose(fp);
  assert_true(d->configured());
  assert_false(h->configured()); /* a context, but not the active one */
  fp = fopen(path, "a");
  fputs("[[contexts]]\nname = \"p\"\ntoken = \"b\"\n", fp);
  fclose(fp);
  assert_true(h->configured());
  for (size_t i = 0; i < 6; i++) {
    if (saved[i])
      setenv(vars[i], saved[i], 1);
    else
      unsetenv(vars[i]);
    free(saved[i]);
  }
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", home);
  assert_int_equal(system(cmd), 0);
}

static void test_start_by_name(void **state) {
  (void)state;
  char home[] = "/tmp/kite-test-registry-XXXXXX";
  assert_non_null(mkdtemp(home));
  kite_runtime_t *rt = NULL;
  kite_runtime_options_t ro = {.home = home, .log_level = -1};
  assert_int_equal(kite_runtime_new(&rt, &ro), 0);
  void *local = NULL;
  assert_int_equal(kite_registry_start(rt, "azure", NULL, &local), KITE_ENOENT);
  assert_null(local);
  assert_int_equal(kite_registry_start(rt, NULL, "{\"port\": 2299}", &local), 0);
  assert_non_null(local);
  assert_int_equal(kite_local_provider_count(local), 0);
  assert_int_equal(kite_registry_start(rt, "aws", NULL, NULL), 0);
  assert_int_equal(kite_registry_start(rt, "hetzner", NULL, NULL), 0);
  kite_runtime_shutdown(rt, NULL, NULL);
  kite_runtime_run(rt);
  assert_int_equal(kite_runtime_free(rt), 0);
  kite__rm_rf(home);
}

static void test_honoured_specs_pass(void **state) {
  (void)state;
  kite_spec_free(honoured("name: a\nnodes: 2\nprovider_options: {port: 2299, "
                          "outlive_controller: true}\nresources: {spot: false}\n"));
  kite_spec_free(honoured("name: a\nnodes: 2\nprovider: aws\nregion: eu-west-1\nimage: ami-1\n"
                          "resources: {instance_type: g5.xlarge, spot: true}\n"
                          "provider_options: {max_price: 0.6, endpoint: \"http://127.0.0.1/\", "
                          "ssh_port: 2222, subnet_id: s, imds_endpoint: x}\n"));
  kite_spec_free(honoured(
      "name: a\nnodes: 1\nprovider: digitalocean\nregion: nyc3\nimage: i\n"
      "resources: {instance_type: s-1vcpu-1gb}\n"
      "provider_options: {token: t, api_url: \"https://api.example.com\", pin_host_key: false}\n"));
  kite_spec_free(honoured("name: a\nnodes: 1\nprovider: ssh\ndeadman: {enabled: false}\n"
                          "provider_options: {hosts: [a, b], ssh_config: c, known_hosts: k}\n"));
  /* The example a user copies from. */
  char path[512];
  snprintf(path, sizeof(path), "%s/examples/hello.yaml", source_dir());
  kite_spec_t *spec = NULL;
  char *err = NULL;
  assert_int_equal(kite_spec_load_file(path, &spec, &err), 0);
  assert_int_equal(kite_registry_check_spec(spec, &err), 0);
  assert_null(err);
  kite_spec_free(spec);
  /* An empty value is a key not given. */
  kite_spec_free(honoured("name: a\nnodes: 1\nregion:\nprovider_options: {port: }\n"));
}

static char *option(const kite_spec_t *spec, const char *key) {
  return kite__json_str(kite_spec_pool(spec)->provider_options, key);
}

/* ssh.user and ssh.key become the provider's own options, next to the spec's. */
static void test_ssh_user_and_key_reach_the_provider(void **state) {
  (void)state;
  char dir[] = "/tmp/kite-test-registry-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char key[128], text[512];
  snprintf(key, sizeof(key), "%s/id_test", dir);
  assert_int_equal(kite__write_file(key, "k", 1, 0600), 0);

  snprintf(text, sizeof(text),
           "name: a\nnodes: 1\nprovider: ssh\nprovider_options: {hosts: [h]}\n"
           "ssh: {user: ann, key: %s}\n",
           key);
  kite_spec_t *spec = honoured(text);
  char *v = option(spec, "user");
  assert_string_equal(v, "ann");
  free(v);
  v = option(spec, "key");
  assert_string_equal(v, key);
  free(v);
  json_t *j = json_loads(kite_spec_pool(spec)->provider_options, 0, NULL);
  assert_true(json_is_array(json_object_get(j, "hosts"))); /* the spec's own, still there */
  json_decref(j);
  kite_spec_free(spec);

  spec = honoured("name: a\nnodes: 1\nprovider: aws\nssh: {user: ec2-user}\n");
  v = option(spec, "ssh_user");
  assert_string_equal(v, "ec2-user");
  free(v);
  kite_spec_free(spec);

  spec = honoured("name: a\nnodes: 1\nprovider: digitalocean\nssh:\n  user: kite\n"
                  "provider_options: {ssh_port: 2222}\n");
  v = option(spec, "ssh_user");
  assert_string_equal(v, "kite");
  free(v);
  kite_spec_free(spec);

  /* No ssh keys: the options are left as written. */
  spec = honoured("name: a\nnodes: 1\nprovider_options: {port: 2299}\n");
  assert_string_equal(kite_spec_pool(spec)->provider_options, "{\"port\":2299}");
  kite_spec_free(spec);
  kite__rm_rf(dir);
}

static void test_positions_of_keys(void **state) {
  (void)state;
  kite_spec_t *spec = load("name: a\nnodes: 1\nresources:\n  cpus: 4\n"
                           "provider_options: {a: {b: 1}}\nssh: {key: }\n");
  kite_spec_pos_t k, v;
  assert_int_equal(kite_spec_where(spec, "resources.cpus", &k, &v), 0);
  assert_int_equal(k.line, 4);
  assert_int_equal(k.column, 3);
  assert_int_equal(v.line, 4);
  assert_int_equal(v.column, 9);
  assert_int_equal(kite_spec_where(spec, "provider_options.a.b", &k, NULL), 0);
  assert_int_equal(k.line, 5);
  assert_int_equal(k.column, 24);
  assert_int_equal(kite_spec_where(spec, "ssh.key", &k, NULL), 0); /* given, though empty */
  assert_int_equal(kite_spec_where(spec, "region", &k, NULL), KITE_ENOENT);
  assert_int_equal(kite_spec_where(NULL, "region", &k, NULL), KITE_EINVAL);
  kite_spec_free(spec);
}

/* A few by hand; the corpus below has one file per rule. */
static void test_messages(void **state) {
  (void)state;
  refused("name: a\nnodes: 1\nprovider: azure\n",
          "t.yaml:3:11: provider: unknown provider 'azure'; expected one of: local, ssh, "
          "digitalocean, aws, hetzner, gcp, vastai, verda, runpod");
  refused("name: a\nnodes: 1\nprovider: \"AWS\"\n",
          "t.yaml:3:11: provider: unknown provider 'AWS'; did you mean 'aws'? (kite knows: "
          "local, ssh, digitalocean, aws, hetzner, gcp, vastai, verda, runpod)");
  refused("name: a\nnodes: 1\nprovider: aws\nprovider_options:\n  ssh_usr: me\n",
          "t.yaml:5:3: provider_options.ssh_usr: the aws provider has no option 'ssh_usr'; did "
          "you mean 'ssh_user'?");
  /* The first refused key in the text, whatever the order of the rules. */
  refused("name: a\nnodes: 1\nprovider_options: {bogus: 1}\nregion: r\n",
          "t.yaml:3:20: provider_options.bogus: the local provider has no option 'bogus'; its "
          "options are: port, outlive_controller");
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int is_yaml(const struct dirent *d) {
  size_t n = strlen(d->d_name);
  return n > 5 && strcmp(d->d_name + n - 5, ".yaml") == 0;
}

static void test_refused_spec_corpus(void **state) {
  (void)state;
  char dir[512], cwd[1024];
  snprintf(dir, sizeof(dir), "%s/tests/unit/specs/refused", source_dir());
  assert_non_null(getcwd(cwd, sizeof(cwd)));
  assert_int_equal(chdir(dir), 0);
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
    kite_spec_t *spec = NULL;
    char *err = NULL;
    int rc;
    if (strncmp(text, prefix, strlen(prefix)) != 0 || nl == NULL) {
      print_error("%s: first line must be '# error: MESSAGE'\n", file);
      failures++;
    } else if ((rc = kite_spec_load_file(file, &spec, &err)) != 0) {
      print_error("%s: does not load (%s): %s\n", file, kite_err_name(rc), err);
      failures++;
    } else {
      *nl = '\0';
      const char *want = text + strlen(prefix);
      const char *opts = kite_spec_pool(spec)->provider_options;
      rc = kite_registry_check_spec(spec, &err);
      if (rc != KITE_ESPEC || err == NULL || strcmp(err, want) != 0 ||
          kite_spec_pool(spec)->provider_options != opts) {
        print_error("%s:\n  want %s\n  got  %s (%s)\n", file, want, err ? err : "(none)",
                    kite_err_name(rc));
        failures++;
      }
    }
    kite_spec_free(spec);
    free(err);
    free(text);
    free(names[i]);
  }
  free(names);
  assert_int_equal(chdir(cwd), 0);
  print_message("%d refused specs checked\n", n);
  assert_int_equal(failures, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_provider_is_in_the_table),
      cmocka_unit_test(test_catalog_rows),
      cmocka_unit_test(test_start_by_name),
      cmocka_unit_test(test_honoured_specs_pass),
      cmocka_unit_test(test_ssh_user_and_key_reach_the_provider),
      cmocka_unit_test(test_positions_of_keys),
      cmocka_unit_test(test_messages),
      cmocka_unit_test(test_refused_spec_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
