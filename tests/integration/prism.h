#ifndef KITE_TEST_PRISM_H
#define KITE_TEST_PRISM_H

/* Stoplight Prism (npm @stoplight/prism-cli) for the cloud tests: in proxy mode with --errors
 * between a client and kite-cloudsim, any request or answer that breaks a cloud's official
 * description (../shared/specs/) becomes a "violation" in Prism's log. Include after cmocka.h. */

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* $KITE_PRISM, /opt/kite-prism/node_modules/.bin/prism (make deps installs it) or prism on the
 * PATH; NULL when there is none. */
static const char *prism_find(void) {
  static char path[512];
  const char *e = getenv("KITE_PRISM");
  if (e && access(e, X_OK) == 0)
    return e;
  if (access("/opt/kite-prism/node_modules/.bin/prism", X_OK) == 0)
    return "/opt/kite-prism/node_modules/.bin/prism";
  FILE *p = popen("command -v prism 2>/dev/null", "r");
  if (p == NULL)
    return NULL;
  size_t n = fread(path, 1, sizeof(path) - 1, p);
  pclose(p);
  path[n] = '\0';
  path[strcspn(path, "\n")] = '\0';
  return path[0] ? path : NULL;
}

/* The path of the official description called name, in out; false when it is not there. */
static bool prism_spec(const char *name, char *out, size_t size) {
  snprintf(out, size, "%s/../shared/specs/%s",
           getenv("KITE_SOURCE_DIR") ? getenv("KITE_SOURCE_DIR") : ".", name);
  return access(out, R_OK) == 0;
}

/* Two places where vastai.yaml and Vast's answers differ, as the copy Prism checks against has
 * them (nothing else changes): the Instance schema says ports is a list of integers, but Vast
 * answers (and the description's own /api/v1/instances schema describes) Docker's mapping
 * {"22/tcp": [{HostIp, HostPort}]}; and the show endpoint answers an id the account does not
 * have (a destroyed instance) with {"instances": null}, which its schema does not allow. */
__attribute__((unused)) static void prism_vastai_as_answered(const char *from, const char *to) {
  /* In the order they come in the file. */
  FILE *fp = fopen(from, "r");
  assert_non_null(fp);
  static char text[1 << 20], out[(1 << 20) + 4096];
  size_t n = fread(text, 1, sizeof(text) - 1, fp);
  fclose(fp);
  text[n] = '\0';
  static const char *const swaps[][2] = {
      {"                  instances:\n                    $ref: '#/components/schemas/Instance'\n"
       "        '400':\n",
       "                  instances:\n                    oneOf:\n"
       "                    - $ref: '#/components/schemas/Instance'\n"
       "                    - type: 'null'\n        '400':\n"},
      {"        ports:\n          type: array\n          items:\n            type: integer\n",
       "        ports:\n          type:\n          - object\n          - 'null'\n"
       "          additionalProperties:\n            type: array\n"},
  };
  const char *from_at = text;
  size_t o = 0;
  for (size_t i = 0; i < sizeof(swaps) / sizeof(swaps[0]); i++) {
    const char *at = strstr(from_at, swaps[i][0]);
    assert_non_null(at);
    assert_null(strstr(at + 1, swaps[i][0]));
    size_t keep = (size_t)(at - from_at), add = strlen(swaps[i][1]);
    assert_true(o + keep + add < sizeof(out));
    memcpy(out + o, from_at, keep);
    memcpy(out + o + keep, swaps[i][1], add);
    o += keep + add;
    from_at = at + strlen(swaps[i][0]);
  }
  fp = fopen(to, "w");
  assert_non_null(fp);
  fwrite(out, 1, o, fp);
  fputs(from_at, fp);
  fclose(fp);
}

/* Hetzner's description names its error answers "4xx" and "5xx"; OpenAPI's wildcards are "4XX"
 * and "5XX", and Prism knows only those, so as shipped every error answer would be a violation
 * whatever its body. The copy at `to` has them upper-cased; nothing else changes. */
__attribute__((unused)) static void prism_upper_wildcards(const char *from, const char *to) {
  json_error_t e;
  json_t *spec = json_load_file(from, 0, &e);
  assert_non_null(spec);
  const char *path, *method;
  json_t *item, *op;
  json_object_foreach(json_object_get(spec, "paths"), path, item) {
    json_object_foreach(item, method, op) {
      json_t *responses = json_object_get(op, "responses");
      if (!json_is_object(responses))
        continue;
      static const char *const lower[] = {"4xx", "5xx"}, *const upper[] = {"4XX", "5XX"};
      for (int i = 0; i < 2; i++) {
        json_t *r = json_object_get(responses, lower[i]);
        if (r) {
          json_object_set(responses, upper[i], r);
          json_object_del(responses, lower[i]);
        }
      }
    }
  }
  assert_int_equal(json_dump_file(spec, to, JSON_COMPACT), 0);
  json_decref(spec);
}

/* verda-openapi.json marks the headers user-agent and cf-connecting-ip required on the token,
 * instance create and action calls (and on volume and cluster calls): cf-connecting-ip is added
 * by Verda's proxy and no client sends it (specs/verda-api.md; effect-verda's patch removes it
 * too), so as shipped Prism would refuse every such request. The copy at `to` has those two
 * header parameters dropped everywhere. One more change: PerformInstanceActionPublicDto types
 * volume_ids an array, but both official SDKs send "volume_ids": null to ask for the default (the
 * OS volume deleted, the others detached; the description's own text for a left-out volume_ids),
 * so the copy lets it be null; and the show call gets the 404 the documentation gives it. Nothing
 * else changes. */
__attribute__((unused)) static void prism_verda_without_proxy_headers(const char *from,
                                                                      const char *to) {
  json_error_t e;
  json_t *spec = json_load_file(from, 0, &e);
  assert_non_null(spec);
  const char *path, *method;
  json_t *item, *op;
  size_t dropped = 0;
  json_object_foreach(json_object_get(spec, "paths"), path, item) {
    json_object_foreach(item, method, op) {
      json_t *params = json_object_get(op, "parameters");
      for (size_t i = 0; json_is_array(params) && i < json_array_size(params);) {
        json_t *p = json_array_get(params, i);
        const char *in = json_string_value(json_object_get(p, "in"));
        const char *name = json_string_value(json_object_get(p, "name"));
        if (in && name && strcmp(in, "header") == 0 &&
            (strcasecmp(name, "cf-connecting-ip") == 0 || strcasecmp(name, "user-agent") == 0)) {
          json_array_remove(params, i);
          dropped++;
        } else {
          i++;
        }
      }
    }
  }
  assert_true(dropped > 0);
  json_t *vol = json_object_get(
      json_object_get(
          json_object_get(json_object_get(json_object_get(spec, "components"), "schemas"),
                          "PerformInstanceActionPublicDto"),
          "properties"),
      "volume_ids");
  assert_string_equal(json_string_value(json_object_get(vol, "type")), "array");
  json_object_set_new(vol, "type", json_pack("[s, s]", "array", "null"));
  /* And the show call answers 404 not_found for an instance the project no longer has (the
   * documentation's error table; the description lists only its 200). */
  json_t *show = json_object_get(
      json_object_get(json_object_get(json_object_get(spec, "paths"), "/v1/instances/{instance_id}"),
                      "get"),
      "responses");
  assert_non_null(show);
  json_object_set_new(show, "404",
                      json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", "Not found", "content",
                                "application/json", "schema", "$ref",
                                "#/components/schemas/PublicApiErrorResponseDto"));
  assert_int_equal(json_dump_file(spec, to, JSON_COMPACT), 0);
  json_decref(spec);
}

/* Starts `prism proxy SPEC UPSTREAM --errors` on a free loopback port (*port), its output in
 * log_path, and returns once it listens (it parses a description of megabytes first). */
static pid_t prism_start(const char *prism, const char *spec, const char *upstream,
                         const char *log_path, int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  socklen_t al = sizeof(a);
  getsockname(fd, (struct sockaddr *)&a, &al);
  close(fd);
  *port = ntohs(a.sin_port);
  char port_s[16];
  snprintf(port_s, sizeof(port_s), "%d", *port);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    int lf = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(lf, 1);
    dup2(lf, 2);
    execl(prism, prism, "proxy", spec, upstream, "--errors", "-p", port_s, "-h", "127.0.0.1",
          (char *)NULL);
    _exit(127);
  }
  bool up = false;
  for (int i = 0; i < 600 && !up; i++) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in b = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)*port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    up = connect(s, (struct sockaddr *)&b, sizeof(b)) == 0;
    close(s);
    if (!up)
      usleep(100000); /* test code: polls for the port */
  }
  assert_true(up);
  return pid;
}

/* Stops it and returns its log (malloc'd), or NULL when there is none. */
static char *prism_stop(pid_t pid, const char *log_path) {
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  FILE *fp = fopen(log_path, "r");
  if (fp == NULL)
    return NULL;
  char *plog = calloc(1, 1 << 20);
  size_t n = plog ? fread(plog, 1, (1 << 20) - 1, fp) : 0;
  if (plog)
    plog[n] = '\0';
  fclose(fp);
  return plog;
}

#endif
