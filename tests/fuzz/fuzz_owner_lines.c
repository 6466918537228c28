/* The owner's protocol as the kite command reads it: the input, as the bytes an owner sends
 * on the control socket (JSON lines: output, results, errors, status), read from a file by
 * the client's line reader and rendered as `kite exec` renders a task's replies (labels, exit
 * codes, base64 output), with and without --json. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* The commands client.c hands over to are not reached from a task's replies: the target links
 * client.c without them. */
void cli_help_for(const char *cmd, FILE *fp) {
  (void)cmd;
  (void)fp;
  abort();
}
int cli_exec_hosts(const char *hosts, const char *hostfile, const char *const *cmd, int ncmd,
                   bool as_argv, json_t *env, long timeout_s, long fanout, bool labels, bool json) {
  (void)hosts, (void)hostfile, (void)cmd, (void)ncmd, (void)as_argv, (void)env, (void)timeout_s;
  (void)fanout, (void)labels, (void)json;
  abort();
}

static char path[64];

static void render(const uint8_t *data, size_t size, bool json, bool single) {
  FILE *fp = fopen(path, "wb");
  if (fp == NULL || fwrite(data, 1, size, fp) != size || fclose(fp) != 0)
    abort();
  cli_conn_t c = {.fd = open(path, O_RDONLY)};
  if (c.fd < 0)
    abort();
  cli_opts_t o = {.plain = true, .json = json};
  (void)cli_print_task_replies(&c, &o, single);
  cli_conn_close(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool quiet;
  if (!quiet) {
    snprintf(path, sizeof(path), "/tmp/kite-fuzz-owner-lines-%d", (int)getpid());
    /* What it prints goes nowhere; stderr stays (the sanitizers report there). */
    quiet = freopen("/dev/null", "w", stdout) != NULL;
  }
  if (size < 1)
    return 0;
  render(data + 1, size - 1, data[0] & 1, data[0] & 2);
  return 0;
}
