# Shared by the user-level tests (tests/cli/test_*.sh): each runs the `kite` command as a user
# would, from a shell, with its own KITE_HOME, and checks what the user and the machine see.
# Sourced with KITE_BINARY_DIR and KITE_SOURCE_DIR set (ctest sets both).
set -u
: "${KITE_BINARY_DIR:?run through ctest, or set KITE_BINARY_DIR}"
: "${KITE_SOURCE_DIR:?run through ctest, or set KITE_SOURCE_DIR}"
export PATH="$KITE_BINARY_DIR/cli:$KITE_BINARY_DIR/tools/cloudsim:$PATH"
T_NAME=$(basename "$0" .sh)
T_DIR=$(mktemp -d "/tmp/kite-cli-${T_NAME#test_}-XXXXXX")
chmod 0755 "$T_DIR" # local nodes log in as kite-node when we are root
export KITE_HOME="$T_DIR/home"
T_SIM_PID=
T_FAILS=0
T_POOLS=()

log() { printf '== %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; T_FAILS=$((T_FAILS + 1)); }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# Every pool a test names is taken down at the end, whatever happened.
t_cleanup() {
  local rc=$?
  local names=("${T_POOLS[@]}")
  [ -f "$T_DIR/pools" ] && mapfile -t -O "${#names[@]}" names <"$T_DIR/pools"
  for p in "${names[@]}"; do kite down "$p" >/dev/null 2>&1 || true; done
  if [ -n "$T_SIM_PID" ]; then
    kill -TERM "$T_SIM_PID" 2>/dev/null
    wait "$T_SIM_PID" 2>/dev/null
  fi
  if [ "$rc" = 0 ] && [ "$T_FAILS" = 0 ]; then rm -rf "$T_DIR"; else
    echo "(kept $T_DIR)" >&2; fi
  [ "$T_FAILS" = 0 ] || exit 1
  exit "$rc"
}
trap t_cleanup EXIT

# pool_name BASE: a pool name of this run, taken down at the end. Recorded in a file too, so a
# name made in a subshell (N=$(pool_name x)) is taken down as well.
pool_name() { local n="$1-$$"; T_POOLS+=("$n"); echo "$n" >>"$T_DIR/pools"; echo "$n"; }

# run_kite OUT ERR ARGS...: runs kite, stores its exit status in RC.
run_kite() {
  local out="$1" err="$2"
  shift 2
  RC=0
  kite "$@" >"$out" 2>"$err" || RC=$?
}

expect_rc() { [ "$RC" = "$1" ] || fail "$2: exit status $RC, expected $1"; }
expect_grep() { grep -q -- "$2" "$1" || { fail "$3: '$2' not in $1:"; sed 's/^/    /' "$1" >&2; }; }
expect_no_grep() { ! grep -q -- "$2" "$1" || { fail "$3: '$2' found in $1:"; grep -n -- "$2" "$1" | sed 's/^/    /' >&2; }; }

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; 1 on timeout.
wait_for() {
  local limit=$(($1 * 10))
  shift
  for ((i = 0; i < limit; i++)); do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}

# Processes (any user) whose environment carries KITE_NODE_TAG=TAG: what runs on local nodes.
node_pids() {
  local f
  for f in $(grep -lsxzF -- "KITE_NODE_TAG=$1" /proc/[0-9]*/environ 2>/dev/null); do
    f=${f#/proc/}
    echo "${f%/environ}"
  done
}
node_procs() { node_pids "$1" | wc -l; }
# True when no process carries KITE_NODE_TAG=TAG (for wait_for: the nodes are all off).
no_node_procs() { [ "$(node_procs "$1")" = 0 ]; }
# Node processes of TAG running CMDLINE_PATTERN (an extended regex on the command line, its
# arguments joined by spaces with one after the last). Anchor it ('^sleep 3[0-9] '): the
# command line of a node's own shell contains the text of its script.
node_procs_matching() {
  local pat="$2" n=0 p
  for p in $(node_pids "$1"); do
    { tr '\0' ' ' <"/proc/$p/cmdline" | grep -Eq -- "$pat"; } 2>/dev/null && n=$((n + 1))
  done
  echo "$n"
}
# Node processes of TAG that have a controlling terminal (a terminal's Ctrl-C could reach them).
node_procs_on_tty() {
  local n=0 p st
  for p in $(node_pids "$1"); do
    st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    st=${st##*) }
    set -- $st # state ppid pgrp session tty_nr ...
    [ "$5" != 0 ] && n=$((n + 1))
  done
  echo "$n"
}
# node_procs_are TAG PATTERN COUNT: succeeds when exactly COUNT match (for wait_for).
node_procs_are() { [ "$(node_procs_matching "$1" "$2")" = "$3" ]; }

# ---- kite in the background ---------------------------------------------------------------
# bg_kite OUT ERR ARGS...: starts kite in the background as a job of its own, so signals reach
# it as they would from a terminal (a script's plain background commands ignore SIGINT); sets
# BG_PID. wait_bg waits for it and stores its exit status in RC.
bg_kite() {
  local out="$1" err="$2"
  shift 2
  set -m
  kite "$@" >"$out" 2>"$err" &
  BG_PID=$!
  set +m
}
wait_bg() {
  RC=0
  wait "$BG_PID" || RC=$?
}

# pool_addresses NAME: the nodes' addresses, one a line by rank (from `kite status --json`).
pool_addresses() {
  kite status --json "$1" | python3 -c 'import json,sys
for n in sorted(json.load(sys.stdin)["pools"][0]["nodes"], key=lambda n: n["rank"]):
    print(n["address"])'
}

# ---- kite-cloudsim ----------------------------------------------------------------------------
SIM_TOKEN=sim-token
SIM_AK=AKIAKITETEST0001
SIM_SK=s3cret-cli-test
# Starts the emulator with extra args; sets SIM_URL.
start_sim() {
  mkdir -p "$T_DIR/sim"
  chmod 0755 "$T_DIR/sim"
  KITE_CLOUDSIM_AWS_ACCESS_KEY_ID=$SIM_AK KITE_CLOUDSIM_AWS_SECRET_ACCESS_KEY=$SIM_SK \
    kite-cloudsim --token "$SIM_TOKEN" --home "$T_DIR/sim" --port 0 \
    --port-file "$T_DIR/sim/port" "$@" >"$T_DIR/sim/out" 2>"$T_DIR/sim/err" &
  T_SIM_PID=$!
  wait_for 20 test -s "$T_DIR/sim/port" || die "kite-cloudsim did not start: $(cat "$T_DIR/sim/err")"
  SIM_URL="http://127.0.0.1:$(cat "$T_DIR/sim/port")"
}
sim_state() { curl -s "$SIM_URL/_sim/state"; }
sim_faults() { curl -s -X POST -d "$1" "$SIM_URL/_sim/faults" >/dev/null; }
# A jq-free reader of one number from the state: sim_num KEY (top level, e.g. droplets).
sim_num() { sim_state | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# owner_pid POOL: the pid of POOL's owner process, as kite status --json says.
owner_pid() { kite status --json 2>/dev/null | python3 -c "
import json,sys
for p in json.load(sys.stdin).get('pools',[]):
    if p['name']=='$1': print(p.get('owner_pid',0))"; }

# instance_fields POOL EXPR: one line per instance of POOL in kite cost --json, the Python
# expression EXPR of the instance i (e.g. 'i["region"]').
instance_fields() { kite cost --json "$1" | python3 -c "
import json,sys
[pool] = json.load(sys.stdin)['pools']
for p in pool['providers']:
    for i in p['instances']: print($2)"; }

# The login user of emulated instances: kite-node when root, else ourselves.
node_user() { if [ "$(id -u)" = 0 ]; then echo kite-node; else id -un; fi; }
