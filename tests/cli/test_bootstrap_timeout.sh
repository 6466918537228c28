#!/usr/bin/env bash
# A bootstrap step that never ends: with bootstrap.timeout the node fails after it, kite up
# says which step and which setting, its processes on the node are killed and the instance is
# gone; an out-of-range timeout is refused at its FILE:LINE:COL before anything launches.
. "$(dirname "$0")/lib.sh"
M=$(pool_name boot)
printf 'name: %s\nnodes: 1\nbootstrap:\n  setup: sleep 987\n  timeout: 2s\n' "$M" >"$T_DIR/m.yaml"
start=$(date +%s)
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/m.yaml"
took=$(($(date +%s) - start))
expect_rc 1 "kite up of a pool whose bootstrap never ends"
expect_grep "$T_DIR/e" "bootstrap step setup did not end within 2 s" "the message names the step and the limit"
expect_grep "$T_DIR/e" "raise bootstrap.timeout" "the message says what to do"
[ "$took" -lt 30 ] || fail "kite up took ${took}s with a 2 s bootstrap limit"
wait_for 30 no_node_procs "kite-pool-$M" ||
  fail "$(node_procs "kite-pool-$M") process(es) of the node left (the step's sleep, its sshd)"

printf 'name: %s\nnodes: 1\nbootstrap:\n  setup: "true"\n  timeout: 10ms\n' "$M" >"$T_DIR/bad.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/bad.yaml"
expect_rc 2 "an out-of-range bootstrap.timeout"
expect_grep "$T_DIR/e" "bad.yaml:5:12: bootstrap.timeout: 10ms is out of range; expected 1s to 168h" "FILE:LINE:COL and the range"
exit 0
