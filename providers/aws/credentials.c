/* AWS credentials and region, found the way AWS's own tools find them.
 *
 * Order (the first that has both keys wins):
 *   1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) in the environment;
 *   2. the profile's section in the shared credentials file ($AWS_SHARED_CREDENTIALS_FILE or
 *      ~/.aws/credentials): [NAME];
 *   3. the profile's section in the config file ($AWS_CONFIG_FILE or ~/.aws/config):
 *      [profile NAME], or [default] for the default profile.
 * The profile is the one asked for, else $AWS_PROFILE, else "default". The region is
 * AWS_REGION, AWS_DEFAULT_REGION, else the profile's `region` in the config file.
 *
 * The files are INI: "[section]" lines, "key = value" lines, comments starting with # or ;
 * at the start of a line. Short local reads; the caller is on the loop, which is acceptable for
 * a file this small (DESIGN.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws_impl.h"
#include "kite_impl.h"

typedef struct ini_hit {
  char *access_key, *secret_key, *session_token, *region;
} ini_hit_t;

static void hit_free(ini_hit_t *h) {
  free(h->access_key);
  free(h->secret_key);
  free(h->session_token);
  free(h->region);
  memset(h, 0, sizeof(*h));
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

/* Reads the keys of section `section` of the INI file at path into h. Returns 0 when the file
 * was read (whether or not the section is there), KITE_ENOENT when it does not exist. */
static int ini_read(const char *path, const char *section, ini_hit_t *h) {
  char *text = NULL;
  int rc = kite__read_file(path, &text, NULL);
  if (rc != 0)
    return rc;
  bool in = false;
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next)
      *next++ = '\0';
    char *l = trim(line);
    if (*l == '#' || *l == ';' || *l == '\0')
      continue;
    if (*l == '[') {
      char *end = strrchr(l, ']');
      if (end == NULL) {
        in = false;
        continue;
      }
      *end = '\0';
      in = strcmp(trim(l + 1), section) == 0;
      continue;
    }
    if (!in)
      continue;
    char *eq = strchr(l, '=');
    if (eq == NULL)
      continue;
    *eq = '\0';
    char *k = trim(l), *v = trim(eq + 1);
    char **slot = NULL;
    if (strcmp(k, "aws_access_key_id") == 0)
      slot = &h->access_key;
    else if (strcmp(k, "aws_secret_access_key") == 0)
      slot = &h->secret_key;
    else if (strcmp(k, "aws_session_token") == 0)
      slot = &h->session_token;
    else if (strcmp(k, "region") == 0)
      slot = &h->region;
    if (slot && *v) {
      free(*slot);
      *slot = kite__strdup(v);
    }
  }
  free(text);
  return 0;
}

static const char *env(const kite__aws_creds_opts_t *o, const char *name) {
  const char *v = o && o->getenv_fn ? o->getenv_fn(name, o->getenv_data) : getenv(name);
  return v && *v ? v : NULL;
}

void kite__aws_creds_free(kite__aws_creds_t *c) {
  free(c->access_key);
  free(c->secret_key);
  free(c->session_token);
  free(c->region);
  free(c->source);
  memset(c, 0, sizeof(*c));
}

/* Appends one "looked at" line to the message being built. */
static void looked(char **msg, const char *fmt, const char *a, const char *b) {
  char *line = kite__sprintf(fmt, a ? a : "", b ? b : "");
  char *m = kite__sprintf("%s\n  - %s", *msg ? *msg : "", line ? line : "");
  free(line);
  free(*msg);
  *msg = m;
}

int kite__aws_creds_load(kite_runtime_t *rt, const kite__aws_creds_opts_t *o,
                         kite__aws_creds_t *out, char **errmsg) {
  memset(out, 0, sizeof(*out));
  if (errmsg)
    *errmsg = NULL;
  const char *profile = o && o->profile && *o->profile ? o->profile : env(o, "AWS_PROFILE");
  if (profile == NULL)
    profile = "default";
  const char *home = env(o, "HOME");
  char *cred_path = env(o, "AWS_SHARED_CREDENTIALS_FILE")
                        ? kite__strdup(env(o, "AWS_SHARED_CREDENTIALS_FILE"))
                        : kite__sprintf("%s/.aws/credentials", home ? home : "~");
  char *conf_path = env(o, "AWS_CONFIG_FILE") ? kite__strdup(env(o, "AWS_CONFIG_FILE"))
                                              : kite__sprintf("%s/.aws/config", home ? home : "~");
  char *conf_section = strcmp(profile, "default") == 0 ? kite__strdup("default")
                                                       : kite__sprintf("profile %s", profile);
  if (cred_path == NULL || conf_path == NULL || conf_section == NULL) {
    free(cred_path);
    free(conf_path);
    free(conf_section);
    return KITE_ENOMEM;
  }
  ini_hit_t cred = {0}, conf = {0};
  int cred_rc = ini_read(cred_path, profile, &cred);
  int conf_rc = ini_read(conf_path, conf_section, &conf);
  char *msg = NULL;
  int rc = 0;
  const char *ak = env(o, "AWS_ACCESS_KEY_ID"), *sk = env(o, "AWS_SECRET_ACCESS_KEY");
  if (ak && sk) {
    out->access_key = kite__strdup(ak);
    out->secret_key = kite__strdup(sk);
    out->session_token = kite__strdup(env(o, "AWS_SESSION_TOKEN"));
    out->source = kite__strdup("the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)");
  } else if (cred.access_key && cred.secret_key) {
    out->access_key = kite__strdup(cred.access_key);
    out->secret_key = kite__strdup(cred.secret_key);
    out->session_token = kite__strdup(cred.session_token);
    out->source = kite__sprintf("%s [%s]", cred_path, profile);
  } else if (conf.access_key && conf.secret_key) {
    out->access_key = kite__strdup(conf.access_key);
    out->secret_key = kite__strdup(conf.secret_key);
    out->session_token = kite__strdup(conf.session_token);
    out->source = kite__sprintf("%s [%s]", conf_path, conf_section);
  } else {
    rc = KITE_ECREDENTIALS;
    looked(&msg, "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY %s%s",
           ak   ? "(only AWS_ACCESS_KEY_ID is set)"
           : sk ? "(only AWS_SECRET_ACCESS_KEY is set)"
                : "(not set)",
           NULL);
    if (cred_rc == KITE_ENOENT)
      looked(&msg, "%s (no such file)%s", cred_path, NULL);
    else if (cred_rc != 0)
      looked(&msg, "%s (cannot read it)%s", cred_path, NULL);
    else
      looked(&msg, "%s: no aws_access_key_id and aws_secret_access_key in [%s]", cred_path,
             profile);
    if (conf_rc == KITE_ENOENT)
      looked(&msg, "%s (no such file)%s", conf_path, NULL);
    else if (conf_rc != 0)
      looked(&msg, "%s (cannot read it)%s", conf_path, NULL);
    else
      looked(&msg, "%s: no keys in [%s]", conf_path, conf_section);
  }
  if (rc == 0) {
    const char *region = env(o, "AWS_REGION");
    if (region == NULL)
      region = env(o, "AWS_DEFAULT_REGION");
    out->region = kite__strdup(region ? region : conf.region);
    if (out->access_key == NULL || out->secret_key == NULL || out->source == NULL)
      rc = KITE_ENOMEM;
  }
  if (rc == 0 && rt) {
    /* The access key id is not secret (it shows in every request); the rest is. */
    kite_secret_add(rt, out->secret_key);
    if (out->session_token)
      kite_secret_add(rt, out->session_token);
  }
  if (rc == KITE_ECREDENTIALS && errmsg)
    *errmsg = kite__sprintf(
        "no AWS credentials found for profile \"%s\". kite looked at:%s\n"
        "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`%s (kite does "
        "not run SSO, credential_process or instance-role lookups: export their keys)",
        profile, msg ? msg : "", strcmp(profile, "default") ? " --profile NAME" : "");
  free(msg);
  if (rc != 0)
    kite__aws_creds_free(out);
  hit_free(&cred);
  hit_free(&conf);
  free(cred_path);
  free(conf_path);
  free(conf_section);
  return rc;
}
