/* AWS credentials and region from the environment and from real ~/.aws files in a temporary
 * home, in AWS's order, and the message that lists where kite looked when nothing is found. */
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
#include "providers/aws/aws_impl.h"

typedef struct fake_env {
  const char *names[16];
  const char *values[16];
  size_t n;
} fake_env_t;

static const char *fake_getenv(const char *name, void *data) {
  fake_env_t *e = data;
  for (size_t i = 0; i < e->n; i++)
    if (strcmp(e->names[i], name) == 0)
      return e->values[i];
  return NULL;
}

static void set(fake_env_t *e, const char *name, const char *value) {
  e->names[e->n] = name;
  e->values[e->n++] = value;
}

typedef struct fixture {
  char home[64];
  char aws[96];
  fake_env_t env;
} fixture_t;

static void write_file(const char *path, const char *text) {
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  fputs(text, fp);
  fclose(fp);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  snprintf(f->home, sizeof(f->home), "/tmp/kite-test-awscred-XXXXXX");
  assert_non_null(mkdtemp(f->home));
  snprintf(f->aws, sizeof(f->aws), "%s/.aws", f->home);
  assert_int_equal(mkdir(f->aws, 0700), 0);
  set(&f->env, "HOME", f->home);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->home);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void file_in(fixture_t *f, const char *name, const char *text) {
  char path[160];
  snprintf(path, sizeof(path), "%s/%s", f->aws, name);
  write_file(path, text);
}

static void test_environment_first(void **state) {
  fixture_t *f = *state;
  file_in(f, "credentials",
          "[default]\naws_access_key_id = AKIAFILE\n"
          "aws_secret_access_key = filesecret\n");
  set(&f->env, "AWS_ACCESS_KEY_ID", "AKIAENV");
  set(&f->env, "AWS_SECRET_ACCESS_KEY", "envsecret");
  set(&f->env, "AWS_SESSION_TOKEN", "envtoken");
  set(&f->env, "AWS_DEFAULT_REGION", "eu-west-3");
  kite__aws_creds_opts_t o = {.getenv_fn = fake_getenv, .getenv_data = &f->env};
  kite__aws_creds_t c;
  char *msg = NULL;
  assert_int_equal(kite__aws_creds_load(NULL, &o, &c, &msg), 0);
  assert_string_equal(c.access_key, "AKIAENV");
  assert_string_equal(c.secret_key, "envsecret");
  assert_string_equal(c.session_token, "envtoken");
  assert_string_equal(c.region, "eu-west-3");
  assert_non_null(strstr(c.source, "environment"));
  kite__aws_creds_free(&c);
}

static void test_profile_from_files(void **state) {
  fixture_t *f = *state;
  file_in(f, "credentials",
          "# comment\n[default]\naws_access_key_id=AKIADEFAULT\naws_secret_access_key=d\n\n"
          "[work]\n  aws_access_key_id = AKIAWORK  \n; another comment\n"
          "aws_secret_access_key = work/secret+key\naws_session_token = tok\n");
  file_in(f, "config",
          "[default]\nregion = us-east-2\n[profile work]\nregion=ap-south-1\n"
          "output = json\n");
  set(&f->env, "AWS_PROFILE", "work");
  kite__aws_creds_opts_t o = {.getenv_fn = fake_getenv, .getenv_data = &f->env};
  kite__aws_creds_t c;
  assert_int_equal(kite__aws_creds_load(NULL, &o, &c, NULL), 0);
  assert_string_equal(c.access_key, "AKIAWORK");
  assert_string_equal(c.secret_key, "work/secret+key");
  assert_string_equal(c.session_token, "tok");
  assert_string_equal(c.region, "ap-south-1");
  assert_non_null(strstr(c.source, "[work]"));
  kite__aws_creds_free(&c);
  /* An explicit profile beats AWS_PROFILE. */
  o.profile = "default";
  assert_int_equal(kite__aws_creds_load(NULL, &o, &c, NULL), 0);
  assert_string_equal(c.access_key, "AKIADEFAULT");
  assert_null(c.session_token);
  assert_string_equal(c.region, "us-east-2");
  kite__aws_creds_free(&c);
}

static void test_keys_in_config_file(void **state) {
  fixture_t *f = *state;
  file_in(f, "config",
          "[profile ci]\naws_access_key_id = AKIACONF\n"
          "aws_secret_access_key = confsecret\nregion = sa-east-1\n");
  kite__aws_creds_opts_t o = {.profile = "ci", .getenv_fn = fake_getenv, .getenv_data = &f->env};
  kite__aws_creds_t c;
  assert_int_equal(kite__aws_creds_load(NULL, &o, &c, NULL), 0);
  assert_string_equal(c.access_key, "AKIACONF");
  assert_string_equal(c.region, "sa-east-1");
  kite__aws_creds_free(&c);
}

static void test_files_named_by_environment(void **state) {
  fixture_t *f = *state;
  char cred[160], conf[160];
  snprintf(cred, sizeof(cred), "%s/other-creds", f->home);
  snprintf(conf, sizeof(conf), "%s/other-config", f->home);
  write_file(cred, "[default]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = o\n");
  write_file(conf, "[default]\nregion = ca-central-1\n");
  set(&f->env, "AWS_SHARED_CREDENTIALS_FILE", cred);
  set(&f->env, "AWS_CONFIG_FILE", conf);
  set(&f->env, "AWS_REGION", "us-west-1");
  kite__aws_creds_opts_t o = {.getenv_fn = fake_getenv, .getenv_data = &f->env};
  kite__aws_creds_t c;
  assert_int_equal(kite__aws_creds_load(NULL, &o, &c, NULL), 0);
  assert_string_equal(c.access_key, "AKIAOTHER");
  assert_string_equal(c.region, "us-west-1"); /* AWS_REGION beats the file */
  kite__aws_creds_free(&c);
}

static void test_nothing_found_says_where(void **state) {
  fixture_t *f = *state;
  file_in(f, "credentials", "[other]\naws_access_key_id = AKIA\naws_secret_access_key = x\n");
  set(&f->env, "AWS_ACCESS_KEY_ID", "AKIAHALF");
  kite__aws_creds_opts_t o = {.getenv_fn = fake_getenv, .getenv_data = &f->env};
  kite__aws_creds_t c;
  char *msg = NULL;
  assert_int_equal(kite__aws_creds_load(NULL, &o, &c, &msg), KITE_ECREDENTIALS);
  assert_non_null(msg);
  assert_non_null(strstr(msg, "profile \"default\""));
  assert_non_null(strstr(msg, "only AWS_ACCESS_KEY_ID is set"));
  char want[160];
  snprintf(want, sizeof(want), "%s/.aws/credentials: no aws_access_key_id", f->home);
  assert_non_null(strstr(msg, want));
  snprintf(want, sizeof(want), "%s/.aws/config (no such file)", f->home);
  assert_non_null(strstr(msg, want));
  assert_non_null(strstr(msg, "aws configure"));
  free(msg);
}

static void test_secrets_registered(void **state) {
  fixture_t *f = *state;
  char khome[128];
  snprintf(khome, sizeof(khome), "%s/kite", f->home);
  kite_runtime_options_t ro = {.home = khome, .log_level = -1};
  kite_runtime_t *rt = NULL;
  assert_int_equal(kite_runtime_new(&rt, &ro), 0);
  set(&f->env, "AWS_ACCESS_KEY_ID", "AKIAENV");
  set(&f->env, "AWS_SECRET_ACCESS_KEY", "very-secret-key");
  set(&f->env, "AWS_SESSION_TOKEN", "session-token-value");
  kite__aws_creds_opts_t o = {.getenv_fn = fake_getenv, .getenv_data = &f->env};
  kite__aws_creds_t c;
  assert_int_equal(kite__aws_creds_load(rt, &o, &c, NULL), 0);
  const char line[] = "key very-secret-key token session-token-value id AKIAENV";
  size_t n = 0;
  char *r = kite_redact(rt, line, sizeof(line) - 1, &n);
  assert_string_equal(r, "key [REDACTED] token [REDACTED] id AKIAENV");
  free(r);
  kite__aws_creds_free(&c);
  assert_int_equal(kite_runtime_shutdown(rt, NULL, NULL), 0);
  kite_runtime_run(rt);
  assert_int_equal(kite_runtime_free(rt), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_environment_first, setup, teardown),
      cmocka_unit_test_setup_teardown(test_profile_from_files, setup, teardown),
      cmocka_unit_test_setup_teardown(test_keys_in_config_file, setup, teardown),
      cmocka_unit_test_setup_teardown(test_files_named_by_environment, setup, teardown),
      cmocka_unit_test_setup_teardown(test_nothing_found_says_where, setup, teardown),
      cmocka_unit_test_setup_teardown(test_secrets_registered, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
