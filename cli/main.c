/* The `kite` command: subcommands, help, usage errors. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct subcmd {
  const char *name;
  int (*fn)(int argc, char **argv);
  const char *summary;
  const char *help;
} subcmd_t;

static const subcmd_t cmds[] = {
    {"run", cli_cmd_run, "open a pool, run a command on every node, close it",
     "usage: kite run [--plain] [--json] [--retries N] [--dry-run] SPEC [-- CMD...]\n"
     "\n"
     "Opens the pool described by SPEC (a YAML file), bootstraps every node, runs the spec's\n"
     "`run:` script (or CMD, given after --, as an argument vector: kite quotes it) on every\n"
     "node, prints each line of output prefixed by its rank (\"[3] line\"; stderr lines go to\n"
     "stderr), then closes the pool: every instance is terminated and confirmed gone.\n"
     "\n"
     "Exit status: 0 when every rank succeeded; 1 when any failed (one line per failed rank\n"
     "says why) or the pool could not be opened; 2 for a usage error or a bad spec (the\n"
     "loader's message names file, line and column; nothing is launched); 130 when\n"
     "interrupted.\n"
     "\n"
     "Ctrl-C cancels the running commands and closes the pool (the screen says so); a second\n"
     "Ctrl-C exits at once, and `kite down NAME` then terminates what is left.\n"
     "\n"
     "  --plain        plain progress lines even on a terminal (no live node table)\n"
     "  --json         stdout: the output as {\"t\":\"out\",...} lines (base64) and the result as\n"
     "                 {\"t\":\"result\",...}, as kite exec --json prints them; progress on "
     "stderr\n"
     "  --retries N    re-run a rank whose node is lost on its replacement, up to N times\n"
     "                 (default: the spec's retries:); later attempts' lines are labelled\n"
     "                 [RANK #ATTEMPT]\n"
     "  --dry-run      launch nothing: print the plan (which offer each rank gets, its price,\n"
     "                 the pool's hourly cost, the failover order); with --json, as JSON\n"},
    {"check", cli_cmd_check, "check specs against their providers, launching nothing",
     "usage: kite check SPEC...\n"
     "\n"
     "Loads each spec and checks it as kite run and kite up do before they record or launch\n"
     "anything: the schema, and every key and provider option against the provider it names\n"
     "(honoured, or refused with FILE:LINE:COL, what is wrong and what to do). Exit 0 when\n"
     "every spec is fine, 2 otherwise.\n"},
    {"providers", cli_cmd_providers, "list the providers kite knows and what each honours",
     "usage: kite providers [--markdown]\n"
     "\n"
     "Prints every provider of the registry: whether it has spot instances, how many\n"
     "instances one create makes, whether they stop and start, where it launches, the spec\n"
     "keys it refuses (and why), and its provider_options.\n"
     "\n"
     "  --markdown   the same as the tables of README.md\n"},
    {"offers", cli_cmd_offers, "list what the providers sell and what it costs",
     "usage: kite offers [--provider P[,P...]] [--region R[,R...]] [--cpus N] [--memory SIZE]\n"
     "                   [--accelerator NAME[:COUNT]] [--spot] [--max-price USD] [--limit N]\n"
     "                   [--json] [--refresh | --cache-only]\n"
     "       kite offers --import FILE --provider P [--date YYYY-MM-DD]\n"
     "\n"
     "Lists the offers (instance types in a region, with vCPUs, memory, accelerators, the\n"
     "on-demand and spot price per hour) that fit, cheapest first, from the catalog's cache in\n"
     "the state store. A provider with a catalog whose cached offers are older than an hour is\n"
     "asked again when this process can reach it; one that cannot be asked is answered from\n"
     "its cache however old, or from an imported snapshot, and a note on stderr says so. AGE\n"
     "is how old the price is (\"snapshot DATE\" for imported public price data, never live).\n"
     "\n"
     "  --provider P,...    only these providers (default: every configured provider with a\n"
     "                      catalog, and every provider with cached offers)\n"
     "  --region R,...      only these regions\n"
     "  --cpus N            at least N vCPUs\n"
     "  --memory SIZE       at least this much memory (16GB, 512MB; a bare number is GiB)\n"
     "  --accelerator A[:N] at least N accelerators called A (case-insensitive; N default 1)\n"
     "  --spot              sold as spot, priced and sorted by the spot price\n"
     "  --max-price USD     at most this price per hour (the spot price with --spot)\n"
     "  --limit N           show the cheapest N (default 20; 0: all)\n"
     "  --json              one JSON array of offers, each with \"age_s\"\n"
     "  --refresh           ask the providers now, however fresh the cache\n"
     "  --cache-only        never ask a provider\n"
     "  --import FILE       store a SkyPilot catalog CSV (vms.csv) as provider P's snapshot,\n"
     "                      replacing its earlier one; --date: when its prices were published\n"
     "                      (default: the file's modification date)\n"
     "\n"
     "Exit status: 0 when an offer matched; 1 when none did (the closest ones are printed with\n"
     "what each lacks) or no offer is known; 2 for a bad flag or a bad snapshot file.\n"},
    {"up", cli_cmd_up, "open a pool and keep it running in the background",
     "usage: kite up [--plain] [--json] SPEC\n"
     "\n"
     "Opens the pool described by SPEC and keeps it in a background process that owns it.\n"
     "Returns when the pool is READY, printing the node table (or when it failed, with the\n"
     "reason; exit 1). The owner listens on $KITE_HOME/run/NAME.sock (mode 0600) and logs to\n"
     "$KITE_HOME/logs/NAME.log. Use exec, upload, download, status, events, logs, ssh, and\n"
     "finally `kite down NAME`.\n"
     "\n"
     "  --plain   plain progress lines even on a terminal\n"
     "  --json    print the final node table as JSON\n"},
    {"exec", cli_cmd_exec, "run a command on one rank or every rank of a pool that is up",
     "usage: kite exec [OPTIONS] NAME -- CMD...       (CMD: an argument vector, quoted by kite)\n"
     "       kite exec [OPTIONS] NAME 'SHELL LINE'    (one shell command line, as pdsh runs it)\n"
     "       kite exec [OPTIONS] -w HOSTS -- CMD...    (ad-hoc machines, no spec; also "
     "--hostfile)\n"
     "\n"
     "Runs the command on every node of pool NAME (or on the ranks selected) through the\n"
     "pool's owner, streaming output prefixed by rank. Exit status: with one rank, the\n"
     "command's own exit status; otherwise 0 when every rank succeeded, else 1. A line per\n"
     "failed rank says why; a rank that does not exist is a usage error (exit 2). Ctrl-C (or\n"
     "SIGTERM) stops the command on every node and exits 130 once the owner confirms it\n"
     "stopped; a second Ctrl-C exits at once (the owner still stops it, as it does for any\n"
     "client that goes away). --timeout stops it the same way.\n"
     "\n"
     "With -w host1,user@host2:port,... (or --hostfile FILE, one host per line, # comments),\n"
     "kite opens a pool of the ssh provider over those machines for this one command:\n"
     "~/.ssh/config and ~/.ssh/known_hosts apply as for ssh, rank r is the r-th host, and the\n"
     "machines are left untouched afterwards.\n"
     "\n"
     "  -r, --rank LIST     ranks to run on: 3, 0-3, 0,2,5-7 (repeatable; default every rank)\n"
     "  -x, --exclude LIST  ranks to leave out\n"
     "  -e, --env N=V       set N=V for the command (repeatable)\n"
     "  -f, --fanout N      at most N ranks at once\n"
     "  --timeout SECONDS   stop the command on every node after this long\n"
     "  --retries N         re-run a rank whose node is lost on its replacement, up to N times\n"
     "                      (default: the spec's retries:); later attempts' lines are\n"
     "                      labelled [RANK #ATTEMPT]\n"
     "  -L, --host-labels   label lines \"HOST: line\" (pdsh's form, which dshbak reads):\n"
     "                      the node's address, or the host as given to -w\n"
     "  --json              print the owner's replies as JSON lines (output base64-encoded)\n"},
    {"upload", cli_cmd_upload, "copy a local file or tree to every node",
     "usage: kite upload NAME SRC DST\n"
     "\n"
     "Copies the local file or directory tree SRC to DST on every node of pool NAME (a\n"
     "relative DST is relative to the node's working directory).\n"},
    {"download", cli_cmd_download, "copy a file or tree from one node",
     "usage: kite download NAME --rank R SRC DST\n"
     "\n"
     "Copies SRC (a file or directory tree on rank R of pool NAME; relative to the node's\n"
     "working directory) to the local path DST.\n"},
    {"status", cli_cmd_status, "show pools, nodes and instances",
     "usage: kite status [--json] [--all] [NAME] | --orphans\n"
     "\n"
     "Shows the pools that are up or still hold a live instance (or NAME, or with --all every\n"
     "pool the store remembers) from the state store: state, owner process, nodes and live\n"
     "instances (an instance is live until the provider confirmed it gone), and what the\n"
     "pool costs: the hourly rate of its running instances and its total so far (`kite cost`\n"
     "details it). Works without\n"
     "the owner; when the owner is up, adds its live view of the nodes. `kite forget NAME`\n"
     "drops a closed pool from the store.\n"
     "\n"
     "  --json    one JSON object: {\"pools\": [...]}\n"
     "  --orphans ask every provider, region and endpoint the store has used for instances\n"
     "            carrying kite's pool tags that no running pool owns (a leak of a crashed\n"
     "            process, here or on another machine of the account); exit 1 when a place\n"
     "            could not be asked\n"},
    {"cost", cli_cmd_cost, "show what pools have cost, per provider and instance",
     "usage: kite cost [--json] [POOL]\n"
     "\n"
     "Shows what every pool the store remembers (or POOL) has cost: per provider and per\n"
     "instance its id, rank, type, region, spot or not, price per hour, when its bill started\n"
     "and ended (or \"running\"), the billable time under the provider's billing granularity\n"
     "(increments begun, a minimum), the cost, and why it ended (terminated, replaced,\n"
     "preempted); then totals per provider and per pool, the rate of what still runs, and what\n"
     "spot instances saved against on-demand prices. Prices are what the provider or the\n"
     "catalog reported at launch; an unknown price counts as 0.\n"
     "\n"
     "  --json    one JSON object: {\"pools\": [{\"name\", \"providers\": [{\"provider\",\n"
     "            \"instances\": [...], \"cost\", \"savings\"}...], \"cost\", \"savings\",\n"
     "            \"rate_hourly\"}...], \"cost\", \"savings\", \"rate_hourly\"}\n"},
    {"events", cli_cmd_events, "stream a pool's events as JSON lines",
     "usage: kite events [--no-follow] NAME\n"
     "\n"
     "Prints the events the owner of pool NAME has seen (the last ones it kept, from the\n"
     "pool's opening), then every new one as it happens, one JSON object per line:\n"
     "  "
     "{\"v\":1,\"seq\":N,\"ts\":MS,\"type\":\"node_state_changed\",\"key\":K,\"corr\":C,\"data\":{."
     "..}}\n"
     "Bytes (task output) are base64; secrets are redacted. Stops when the pool closes or on\n"
     "Ctrl-C.\n"
     "\n"
     "  --no-follow   print the kept events and exit\n"},
    {"logs", cli_cmd_logs, "show the commands run on a pool and their output",
     "usage: kite logs [--json] NAME [--rank R]\n"
     "\n"
     "Shows the commands run on pool NAME with their exit statuses and output (the owner\n"
     "keeps the last 64 KiB per rank of the last 50 commands). When the owner is gone, shows\n"
     "the task history from the state store (every task: exit status or signal, attempts,\n"
     "the instance that ran it, the last 4 KiB of output) and the end of the owner's log.\n"
     "\n"
     "  --json    one {\"t\":\"task\",...} object per task (output base64), then "
     "{\"t\":\"end\"}\n"},
    {"ssh", cli_cmd_ssh, "open a shell on a node with the system's ssh",
     "usage: kite ssh NAME [--rank R] [-- CMD...]\n"
     "\n"
     "Runs the system's `ssh` to rank R (default 0) of pool NAME with kite's key, the node's\n"
     "port and user, and a known_hosts file holding the node's pinned host key (host key\n"
     "checking stays on). With CMD, runs it instead of a shell.\n"},
    {"forget", cli_cmd_forget, "drop closed pools from the store",
     "usage: kite forget NAME...\n"
     "\n"
     "Forgets each closed pool with its nodes and task history. A pool that is open, or that\n"
     "still has an instance recorded live (it may cost money), is refused: `kite down` it\n"
     "first.\n"},
    {"down", cli_cmd_down, "close a pool and terminate its instances",
     "usage: kite down [--json] NAME | --all | --orphans [--yes]\n"
     "\n"
     "Asks the owner of pool NAME to close it: running commands are cancelled and every\n"
     "instance is terminated. When the owner is gone (it crashed or was killed), kite reads\n"
     "the state store and terminates the recorded live instances through the provider\n"
     "directly, marking each terminated only when the provider confirms it. --all does this\n"
     "for every pool with an owner or a live instance. Exit 0 when nothing is left live.\n"
     "Each instance is reached where it was created (the store records its provider, region,\n"
     "endpoint and account before it is launched), whatever this shell's environment says.\n"
     "kite down returns once the owner has exited, after deleting what kite made in the\n"
     "account (key pair, security group) when nothing else uses it.\n"
     "\n"
     "  --orphans  find what `kite status --orphans` finds, ask, and terminate it (--yes:\n"
     "             without asking)\n"
     "  --json     progress on stderr; on stdout one object: {\"pool\", \"down\" (nothing left\n"
     "             live), \"live\" (what is left, per instance), \"exit\"} (--all: \"pools\")\n"},
};

static void usage_all(FILE *fp) {
  fprintf(fp, "usage: kite [--help] COMMAND [ARGS...]\n"
              "\n"
              "kite opens pools of compute nodes, bootstraps them over SSH, runs commands on\n"
              "them, and never leaks an instance: every instance is recorded in the state\n"
              "store ($KITE_HOME/state.db, default ~/.kite) before it exists.\n"
              "\n"
              "commands:\n");
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    fprintf(fp, "  %-9s %s\n", cmds[i].name, cmds[i].summary);
  fprintf(fp, "\n"
              "`kite COMMAND --help` describes each. Environment: KITE_HOME (kite's directory),\n"
              "KITE_LOG=debug|info|warn|error (library log level, default warn).\n"
              "Exit status: 0 success, 1 failure, 2 usage error or bad spec, 130 interrupted.\n");
}

void cli_help_for(const char *cmd, FILE *fp) {
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (strcmp(cmds[i].name, cmd) == 0) {
      fputs(cmds[i].help, fp);
      return;
    }
  usage_all(fp);
}

int main(int argc, char **argv) {
  /* A client whose peer went away gets EPIPE from write, not a fatal signal. */
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    fprintf(stderr, "kite: missing a command (see `kite --help`)\n");
    return CLI_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    if (argc > 2 && strcmp(argv[1], "help") == 0)
      cli_help_for(argv[2], stdout);
    else
      usage_all(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("kite %s\n", KITE_VERSION_STRING);
    return 0;
  }
  for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
    if (strcmp(cmds[i].name, argv[1]) == 0)
      return cmds[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "kite: unknown command '%s' (see `kite --help`)\n", argv[1]);
  return CLI_EXIT_USAGE;
}
