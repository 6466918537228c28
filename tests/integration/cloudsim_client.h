#ifndef KITE_TEST_CLOUDSIM_CLIENT_H
#define KITE_TEST_CLOUDSIM_CLIENT_H

/* Test side of kite-cloudsim, shared by the cloud provider tests: start the emulator as a
 * child process on a free loopback port, ask its control endpoint, stop it. Include after
 * cmocka.h. */

#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct sim {
  pid_t pid;
  int port;
  char dir[64];
  char url[64]; /* http://127.0.0.1:PORT (no trailing slash) */
} sim_t;

/* Starts $KITE_BINARY_DIR/tools/cloudsim/kite-cloudsim with the token, its own home and port
 * 0, plus extra arguments (NULL-terminated, or NULL); returns when it listens. */
static void sim_start(sim_t *s, const char *token, const char *const *extra) {
  memset(s, 0, sizeof(*s));
  snprintf(s->dir, sizeof(s->dir), "/tmp/kite-test-sim-XXXXXX");
  assert_non_null(mkdtemp(s->dir));
  assert_int_equal(chmod(s->dir, 0755), 0); /* its nodes' login user must reach them */
  const char *bin_dir = getenv("KITE_BINARY_DIR");
  assert_non_null(bin_dir);
  char bin[512];
  snprintf(bin, sizeof(bin), "%s/tools/cloudsim/kite-cloudsim", bin_dir);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  s->pid = fork();
  assert_true(s->pid >= 0);
  if (s->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* a failed test leaves no emulator behind */
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    const char *argv[32] = {bin, "--token", token, "--home", s->dir, "--port", "0"};
    int n = 7;
    for (int i = 0; extra && extra[i] && n < 30; i++)
      argv[n++] = extra[i];
    argv[n] = NULL;
    execv(bin, (char *const *)argv);
    _exit(127);
  }
  close(fds[1]);
  char line[256] = "";
  size_t len = 0;
  while (len < sizeof(line) - 1) {
    ssize_t r = read(fds[0], line + len, 1);
    if (r <= 0 || line[len] == '\n')
      break;
    len++;
  }
  line[len] = '\0';
  close(fds[0]);
  assert_non_null(strstr(line, "listening on http://127.0.0.1:"));
  s->port = atoi(strrchr(line, ':') + 1);
  assert_true(s->port > 0);
  snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
}

/* Stops it (SIGTERM: it deletes what it still holds) and checks it exited cleanly. */
static void sim_stop(sim_t *s) {
  kill(s->pid, SIGTERM);
  int st = 0;
  assert_int_equal(waitpid(s->pid, &st, 0), s->pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
  assert_int_equal(system(cmd), 0);
}

/* One blocking request to the emulator's control endpoint (test code, not kite's loop). */
/* A request to the emulator (with Authorization: Bearer token unless token is NULL); its body as
 * JSON. */
static json_t *sim_call_as(sim_t *s, const char *token, const char *method, const char *path,
                           const char *body) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)s->port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
  char req[2048];
  int n = snprintf(req, sizeof(req),
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "%s%s%sContent-Length: %zu\r\n\r\n%s",
                   method, path, token ? "Authorization: Bearer " : "", token ? token : "",
                   token ? "\r\n" : "", body ? strlen(body) : 0, body ? body : "");
  assert_int_equal(write(fd, req, (size_t)n), n);
  static char resp[1 << 20];
  size_t len = 0;
  ssize_t r;
  while ((r = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
    len += (size_t)r;
  close(fd);
  resp[len] = '\0';
  char *b = strstr(resp, "\r\n\r\n");
  assert_non_null(b);
  json_error_t e;
  json_t *j = json_loads(b + 4, 0, &e);
  assert_non_null(j);
  return j;
}

static json_t *sim_call(sim_t *s, const char *method, const char *path, const char *body) {
  return sim_call_as(s, NULL, method, path, body);
}

/* One integer field of a state document (/_sim/state, /_sim/ec2/state). */
static int sim_state_count(sim_t *s, const char *path, const char *field) {
  json_t *j = sim_call(s, "GET", path, NULL);
  int v = (int)json_integer_value(json_object_get(j, field));
  json_decref(j);
  return v;
}

#endif
