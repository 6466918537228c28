/* `kite ssh NAME [--rank R] [-- CMD…]`: the system's ssh to one node, with kite's key, the
 * node's port and user, and a known_hosts file holding only the node's pinned host key, so
 * the host key is checked as strictly as kite itself checks it. Everything comes from the
 * state store (the instance record); the owner need not answer. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* 'V' quoted for a POSIX shell (malloc'd). */
static char *sh_quote(const char *v) {
  size_t n = 3;
  for (const char *c = v; *c; c++)
    n += *c == '\'' ? 4 : 1;
  char *q = malloc(n), *o = q;
  if (q == NULL)
    return NULL;
  *o++ = '\'';
  for (const char *c = v; *c; c++) {
    if (*c == '\'') {
      memcpy(o, "'\\''", 4);
      o += 4;
    } else {
      *o++ = *c;
    }
  }
  *o++ = '\'';
  *o = '\0';
  return q;
}

/* "export KITE_NODE_RANK=…; …" for rank of pool name, from the store's nodes, with the
 * bootstrap's env file first (as every command of the pool gets them). */
static char *node_exports(kite_store_t *st, const char *name, uint32_t rank) {
  kite_store_node_t *v = NULL;
  size_t n = 0;
  if (kite_store_nodes(st, name, &v, &n) != 0)
    return strdup("");
  size_t len = 1;
  for (size_t k = 0; k < n; k++)
    len += (v[k].address ? strlen(v[k].address) : 0) + 1;
  char *ips = calloc(1, len);
  const char *head = NULL;
  for (size_t k = 0; ips && k < n; k++) {
    if (k)
      strcat(ips, "\n");
    strcat(ips, v[k].address ? v[k].address : "");
    if (head == NULL && v[k].state == KITE_NODE_READY && v[k].address)
      head = v[k].address;
  }
  char *qi = sh_quote(ips ? ips : ""), *qh = sh_quote(head ? head : "");
  char *out = cli_sprintf("if [ -r \"$HOME/" KITE_BOOTSTRAP_ENV_FILE
                          "\" ]; then . \"$HOME/" KITE_BOOTSTRAP_ENV_FILE "\"; fi; "
                          "export KITE_NODE_RANK=%u KITE_NUM_NODES=%zu KITE_NODE_IPS=%s "
                          "KITE_HEAD_IP=%s; ",
                          rank, n, qi ? qi : "''", qh ? qh : "''");
  free(qi);
  free(qh);
  free(ips);
  kite_store_nodes_free(v, n);
  return out ? out : strdup("");
}

int cli_cmd_ssh(int argc, char **argv) {
  const char *name = NULL;
  uint32_t rank = 0;
  int i = 1;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      i++;
      break;
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      cli_help_for("ssh", stdout);
      return 0;
    } else if (strcmp(argv[i], "--rank") == 0 || strcmp(argv[i], "-r") == 0) {
      if (i + 1 >= argc || !cli_parse_rank(argv[i + 1], &rank))
        return cli_usage("ssh", "--rank needs a rank number (0, 1, ...)");
      i++;
    } else if (argv[i][0] == '-') {
      return cli_usage("ssh", "unknown option %s", argv[i]);
    } else if (name == NULL) {
      name = argv[i];
    } else {
      return cli_usage("ssh", "unexpected argument '%s'; put a command after --", argv[i]);
    }
  }
  if (name == NULL)
    return cli_usage("ssh", "missing the pool name");
  kite_store_t *st = cli_store_open();
  if (st == NULL)
    return CLI_EXIT_FAIL;
  kite_store_pool_t p = {0};
  if (kite_store_pool_get(st, name, &p) != 0) {
    cli_err("ssh: there is no pool named %s (`kite status` lists them)", name);
    kite_store_close(st);
    return CLI_EXIT_FAIL;
  }
  kite_store_instance_t *v = NULL;
  size_t n = 0;
  kite_store_instances(st, name, true, &v, &n);
  kite_store_instance_t *in = NULL;
  for (size_t k = 0; k < n; k++)
    if (v[k].rank == (int64_t)rank && v[k].state == KITE_STORE_RUNNING && v[k].address)
      in = &v[k];
  int code = CLI_EXIT_FAIL;
  char *home = cli_home();
  char *kh = NULL, *key = NULL, *dest = NULL, *hostpat = NULL, *port = NULL, *opt_kh = NULL;
  char *exports = NULL;
  if (in == NULL) {
    cli_err("ssh: rank %u of pool %s has no running instance (`kite status %s` shows its "
            "nodes)",
            rank, name, name);
    goto out;
  }
  if (in->host_key == NULL || in->user == NULL) {
    cli_err("ssh: the store has no pinned host key or login for rank %u of pool %s, so its "
            "identity cannot be checked; kite ssh refuses to connect unverified",
            rank, name);
    goto out;
  }
  unsigned prt = in->port ? in->port : 22;
  hostpat = prt == 22 ? strdup(in->address) : cli_sprintf("[%s]:%u", in->address, prt);
  char *run_dir = cli_sprintf("%s/run", home);
  cli_mkdir_p(run_dir, 0700);
  kh = cli_sprintf("%s/%s-%u.known_hosts", run_dir, name, rank);
  free(run_dir);
  char *line = cli_sprintf("%s %s\n", hostpat, in->host_key);
  int fd = kh && line ? open(kh, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
  bool ok = fd >= 0 && write(fd, line, strlen(line)) == (ssize_t)strlen(line);
  if (fd >= 0)
    close(fd);
  free(line);
  if (!ok) {
    cli_err("ssh: cannot write %s: %s", kh ? kh : "known_hosts", strerror(errno));
    goto out;
  }
  /* The key the provider said logs in (kite's own on local nodes and clouds, the spec's or
   * the inventory's on the ssh provider); none recorded: the user's own ssh setup. */
  key = in->key_path ? strdup(in->key_path) : NULL;
  dest = cli_sprintf("%s@%s", in->user, in->address);
  exports = node_exports(st, name, rank);
  in = NULL;
  port = cli_sprintf("%u", prt);
  opt_kh = cli_sprintf("UserKnownHostsFile=%s", kh);
  const char *args[32];
  size_t a = 0;
  args[a++] = "ssh";
  if (key) {
    args[a++] = "-i";
    args[a++] = key;
    args[a++] = "-o";
    args[a++] = "IdentitiesOnly=yes";
  }
  args[a++] = "-p";
  args[a++] = port;
  args[a++] = "-o";
  args[a++] = opt_kh;
  args[a++] = "-o";
  args[a++] = "GlobalKnownHostsFile=/dev/null";
  args[a++] = "-o";
  args[a++] = "StrictHostKeyChecking=yes";
  args[a++] = "-o";
  args[a++] = "BatchMode=yes";
  args[a++] = "-o";
  args[a++] = "LogLevel=ERROR";
  /* ssh hands the remote shell one string: every word is quoted here, so it arrives as it
   * was given. It starts with kite's variables, as every command of the pool has them, and
   * what the bootstrap's env steps left; without a command, a login shell gets them. */
  char *remote = NULL;
  {
    size_t len = strlen(exports) + 64;
    for (int k = i; k < argc; k++)
      len += 4 * strlen(argv[k]) + 3;
    remote = calloc(1, len);
    if (remote)
      strcpy(remote, exports);
    if (remote && i >= argc)
      strcat(remote, "exec \"${SHELL:-/bin/sh}\" -l");
    for (int k = i; remote && k < argc; k++) {
      char *q = remote + strlen(remote);
      if (k > i)
        *q++ = ' ';
      *q++ = '\'';
      for (const char *c = argv[k]; *c; c++) {
        if (*c == '\'') {
          memcpy(q, "'\\''", 4);
          q += 4;
        } else {
          *q++ = *c;
        }
      }
      *q++ = '\'';
      *q = '\0';
    }
    if (i >= argc && isatty(STDIN_FILENO))
      args[a++] = "-t";
    args[a++] = dest;
    args[a++] = "--";
    args[a++] = remote ? remote : "false";
  }
  args[a] = NULL;
  /* Nothing of the store may reach ssh: its locks would outlive the exec. */
  kite_store_instances_free(v, n);
  v = NULL;
  n = 0;
  kite_store_pool_clear(&p);
  kite_store_close(st);
  st = NULL;
  fflush(NULL);
  execvp("ssh", (char *const *)args);
  cli_err("ssh: cannot run ssh: %s (install the OpenSSH client)", strerror(errno));
  free(remote);
  memset(&p, 0, sizeof(p));
out:
  free(exports);
  free(home);
  free(kh);
  free(key);
  free(dest);
  free(hostpat);
  free(port);
  free(opt_kh);
  kite_store_instances_free(v, n);
  kite_store_pool_clear(&p);
  kite_store_close(st);
  return code;
}
