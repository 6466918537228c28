#!/usr/bin/env bash
# A `kite run` pool is as reachable as a `kite up` pool while it lives: kite status names its
# live owner, and exec, events, logs and down all reach it.
. "$(dirname "$0")/lib.sh"
P=$(pool_name reach)
printf 'name: %s\nnodes: 2\nrun: "echo started; sleep 30; echo never"\n' "$P" >"$T_DIR/p.yaml"
bg_kite "$T_DIR/run.out" "$T_DIR/run.err" run --plain "$T_DIR/p.yaml"
wait_for 30 grep -q '^\[1\] started' "$T_DIR/run.out" || die "kite run did not start: $(cat "$T_DIR/run.err")"
kite status >"$T_DIR/st"
expect_grep "$T_DIR/st" "^$P .* ready .* pid $BG_PID " "kite status names the run's live owner"
expect_no_grep "$T_DIR/st" "(dead)" "the run's owner is not called dead"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$P" -- sh -c 'echo "beside r$KITE_NODE_RANK"'
expect_rc 0 "kite exec on a kite run pool"
expect_grep "$T_DIR/o" "\[1\] beside r1" "kite exec's output"
run_kite "$T_DIR/o" "$T_DIR/e" events --no-follow "$P"
expect_rc 0 "kite events on a kite run pool"
expect_grep "$T_DIR/o" '"type":"node_ready"' "its events"
run_kite "$T_DIR/o" "$T_DIR/e" logs "$P"
expect_rc 0 "kite logs on a kite run pool"
expect_grep "$T_DIR/o" "run: echo started" "the run's command in the logs"
run_kite "$T_DIR/o" "$T_DIR/e" down "$P"
expect_rc 0 "kite down of a kite run pool"
wait_bg
[ "$RC" != 0 ] || fail "kite run reported success although its command was stopped by kite down"
expect_grep "$T_DIR/run.err" "closed: every instance terminated" "kite run says the pool closed"
[ "$(node_procs_matching "kite-pool-$P" '^sleep 30 ')" = 0 ] || fail "the run's command still runs on the nodes"
