#!/usr/bin/env bash
# Builds (if needed) and runs kite's benchmarks and the peer baselines they are compared with,
# and prints the ratios.
#
#   bench/run.sh            every section
#   bench/run.sh bus        only the named sections (bus, broadcast, pool, replace, scale)
#
# Environment:
#   BUILD_DIR   the CMake build directory (default: build). Configured here with
#               -DCMAKE_BUILD_TYPE=Release if it does not exist yet; an existing one is used
#               as it is configured.
#   PYTHON      the interpreter of the Python baselines (default: /usr/bin/python3, where
#               Debian's python3-blinker and python3-asyncssh live).
#   BROADCAST_ARGS  extra options for broadcast_bench (e.g. "--rounds 100 --pdsh-rounds 3").
#   POOL_ARGS       extra options for pool_bench (e.g. "--nodes 16,64,128").
#   REPLACE_ARGS    extra options for replace_bench (e.g. "--cpu-nodes 128 --window 10
#                   --split").
#   SCALE_ARGS      extra options for pool_scale (e.g. "--nodes 250,500 --repeat 1").
#
# Output is key=value lines. To add a section: write a section_<name> function and add
# <name> to SECTIONS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$PWD/$BUILD_DIR ;; esac
PYTHON=${PYTHON:-/usr/bin/python3}
SECTIONS=(bus broadcast pool replace scale)

# build TARGET...: configures BUILD_DIR if needed and builds the targets; the log is shown
# only when something fails.
build() {
  local log
  log=$(mktemp)
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    if ! cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      return 1
    fi
  fi
  if ! cmake --build "$BUILD_DIR" -j"$(nproc)" --target "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  local type
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
  echo "build_dir=$BUILD_DIR"
  echo "build_type=${type:-none}"
  case $type in
    Release | RelWithDebInfo) ;;
    *) echo "warning: $BUILD_DIR is a '${type:-none}' build; figures are meaningful only for" \
         "an optimized build (Release or RelWithDebInfo)" >&2 ;;
  esac
}

# value KEY FILE: the value of the last KEY=... line of FILE.
value() {
  sed -n "s/^$1=//p" "$2" | tail -n 1
}

# ratio A B: A / B with one decimal.
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f\n", a / b; else print "nan" }'
}

# ---- bus: the event bus against blinker's signals ---------------------------------------
section_bus() {
  echo "== bus"
  build bus_bench
  local out
  out=$(mktemp)
  "$BUILD_DIR/bench/bus_bench" | tee "$out"
  "$PYTHON" "$ROOT/bench/bus_blinker.py" | tee -a "$out"
  echo "ratio_one_sub=$(ratio "$(value bus_one_sub_events_per_sec "$out")" \
    "$(value blinker_one_sub_events_per_sec "$out")")"
  echo "ratio_keyed=$(ratio "$(value bus_keyed_10k_events_per_sec "$out")" \
    "$(value blinker_keyed_10k_events_per_sec "$out")")"
  rm -f "$out"
}

# ---- broadcast: `true` on 32 local sshd nodes at once, against pdsh and asyncssh ---------
# broadcast_bench starts the nodes, runs kite's rounds over warm sessions, then runs both
# peers on the same nodes and prints the ratios and the node side's CPU floor. It fails if a
# command fails or if any process of its nodes is left behind.
section_broadcast() {
  echo "== broadcast"
  build broadcast_bench
  # shellcheck disable=SC2086 # BROADCAST_ARGS is a list of options
  "$BUILD_DIR/bench/broadcast_bench" --python "$PYTHON" \
    --asyncssh-script "$ROOT/bench/broadcast_asyncssh.py" ${BROADCAST_ARGS:-}
}

# ---- pool: open 16 and 64 local nodes with a three-step bootstrap until READY, then close ---
# pool_bench prints pool_ready_s and close_s per size, the per-node phases (launch, connect,
# watchdog, upload, script) as p50/max, when the last node left each phase, and the CPU of
# kite, of the nodes' programs and of the whole machine during the open. It fails if a pool
# does not open or close, or if any process of its nodes is left behind.
section_pool() {
  echo "== pool"
  build pool_bench
  # shellcheck disable=SC2086 # POOL_ARGS is a list of options
  "$BUILD_DIR/bench/pool_bench" ${POOL_ARGS:-}
}

# ---- replace: preemption → replacement READY, and the monitors' CPU on 256 nodes -----------
# replace_bench preempts nodes of a small pool one at a time (abruptly and with notice,
# monitors at 1 s) and prints each replacement and the medians (replace_s); then it holds 256
# READY nodes for a window with monitors off and with monitors on (1 s) and prints the
# controller's CPU difference as monitor_cpu_pct. It fails if a replacement does not happen
# or if any process of its nodes is left behind.
section_replace() {
  echo "== replace"
  build replace_bench
  # shellcheck disable=SC2086 # REPLACE_ARGS is a list of options
  "$BUILD_DIR/bench/replace_bench" ${REPLACE_ARGS:-}
}

# ---- scale: the controller's CPU to open and close 250 … 2,000 nodes of a fake provider -----
# pool_scale answers the provider's and the transport's requests itself, at once, so what is
# measured is the pool, the node actors, the bus, the monitors and the state store; it prints
# one line per size with the CPU per node and its growth against the smallest size.
section_scale() {
  echo "== scale"
  build pool_scale
  # shellcheck disable=SC2086 # SCALE_ARGS is a list of options
  "$BUILD_DIR/bench/pool_scale" ${SCALE_ARGS:-}
}

main() {
  local run=("$@")
  if [ ${#run[@]} -eq 0 ]; then
    run=("${SECTIONS[@]}")
  fi
  for s in "${run[@]}"; do
    if ! declare -F "section_$s" >/dev/null; then
      echo "unknown section '$s' (sections: ${SECTIONS[*]})" >&2
      exit 2
    fi
  done
  for s in "${run[@]}"; do
    "section_$s"
  done
}

main "$@"
