#!/usr/bin/env bash
# retries: a command whose node dies under it is re-run on the replacement, and the output says
# which attempt each line came from ("[1 #2] ..."): `kite run --retries`, the spec's
# `retries:`, and `kite exec --retries`. Without replacement, --retries is refused (exit 2).
. "$(dirname "$0")/lib.sh"
P=$(pool_name retry)
cat >"$T_DIR/p.yaml" <<YAML
name: $P
nodes: 2
replace: {on_preemption: true}
monitors: {health_interval: 1s, health_timeout: 2s, health_failures: 2}
run: 'echo start; sleep 3; echo end'
YAML
# kill_rank1_when_started OUT: waits for rank 1's first line, then kills its machine.
kill_rank1_when_started() {
  wait_for 30 grep -q '^\[1\] start' "$1" || { fail "rank 1 never started: $(cat "$1")"; return; }
  local addr
  addr=$(pool_addresses "$P" | sed -n 2p)
  pkill -KILL -f "$KITE_HOME/local/$addr/" || fail "no sshd of rank 1 ($addr) to kill"
}
for how in flag spec; do
  args=(run --plain "$T_DIR/p.yaml")
  if [ "$how" = flag ]; then args=(run --plain --retries 1 "$T_DIR/p.yaml"); else
    printf 'retries: 1\n' >>"$T_DIR/p.yaml"; fi
  bg_kite "$T_DIR/o" "$T_DIR/e" "${args[@]}"
  kill_rank1_when_started "$T_DIR/o"
  wait_bg
  expect_rc 0 "kite run with retries ($how)"
  expect_grep "$T_DIR/o" '^\[1 #2\] end' "rank 1's re-run, labelled attempt 2 ($how)"
  expect_grep "$T_DIR/o" '^\[0\] end' "rank 0 ran once ($how)"
done

log "kite exec --retries on a pool that is up"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/p.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
bg_kite "$T_DIR/o" "$T_DIR/e" exec "$P" --retries 1 -- sh -c 'echo start; sleep 3; echo end'
kill_rank1_when_started "$T_DIR/o"
wait_bg
expect_rc 0 "kite exec --retries 1"
expect_grep "$T_DIR/o" '^\[1 #2\] end' "kite exec: rank 1's re-run, labelled"

log "without replacement, --retries is refused"
printf 'name: %s-off\nnodes: 1\nrun: "true"\n' "$P" >"$T_DIR/off.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" run --retries 2 "$T_DIR/off.yaml"
expect_rc 2 "kite run --retries without replacement"
printf 'name: %s-off\nnodes: 1\nretries: 2\n' "$P" >"$T_DIR/off.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" run "$T_DIR/off.yaml" -- true
expect_rc 2 "retries: without replacement in the spec"
expect_grep "$T_DIR/e" "off.yaml:3:1: retries:" "the spec error names the key"
