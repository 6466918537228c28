# The dead-man's switch keeps a live controller's nodes on, however health is checked: pools
# with a custom health command and with the monitors off, kept up for 2.5 times the dead-man
# timeout, still answer on every rank with the same instances and a fresh heartbeat. Then the
# switch is shown armed: the owner of one pool is killed, and its nodes power themselves off.
. "$(dirname "$0")/lib.sh"

# 10 s is the shortest dead-man timeout a spec may ask for.
TIMEOUT=10
A=$(pool_name dmcmd)
B=$(pool_name dmoff)
cat >"$T_DIR/a.yaml" <<EOF
name: $A
nodes: 2
provider_options: {outlive_controller: true}
monitors: {health_command: "true", health_interval: 1s}
deadman: {enabled: true, timeout: ${TIMEOUT}s}
EOF
cat >"$T_DIR/b.yaml" <<EOF
name: $B
nodes: 2
provider_options: {outlive_controller: true}
monitors: {enabled: false}
deadman: {enabled: true, timeout: ${TIMEOUT}s}
EOF

for p in a b; do
  log "kite up $p.yaml"
  run_kite "$T_DIR/up-$p.out" "$T_DIR/up-$p.err" up --plain "$T_DIR/$p.yaml"
  expect_rc 0 "kite up $p.yaml"
  [ "$RC" = 0 ] || die "cannot go on: $(cat "$T_DIR/up-$p.err")"
done

instances() { kite status --json "$1" | python3 -c '
import json, sys
j = json.load(sys.stdin)
p = j["pools"][0] if "pools" in j else (j[0] if isinstance(j, list) else j)
print(" ".join(sorted(i["instance_id"] or "-" for i in p["instances"])))'; }
IA=$(instances "$A")
IB=$(instances "$B")
log "instances: $A: $IA; $B: $IB"

SLEEP=$((TIMEOUT * 5 / 2))
log "keeping both pools up for ${SLEEP}s (2.5 x the dead-man timeout)"
sleep "$SLEEP"

for p in "$A" "$B"; do
  log "$p: every rank answers, its watchdog runs, its heartbeat is fresh"
  run_kite "$T_DIR/exec-$p.out" "$T_DIR/exec-$p.err" exec "$p" -- sh -c \
    'kill -0 "$(cat .kite/watchdog.pid)" && echo "watchdog up, heartbeat age $(( $(date +%s) - $(stat -c %Y .kite/heartbeat) ))"'
  expect_rc 0 "kite exec $p after ${SLEEP}s"
  for r in 0 1; do
    age=$(sed -n "s/^\[$r\] watchdog up, heartbeat age \([0-9]*\)$/\1/p" "$T_DIR/exec-$p.out")
    if [ -z "$age" ]; then
      fail "$p rank $r did not answer: $(cat "$T_DIR/exec-$p.out" "$T_DIR/exec-$p.err")"
    elif [ "$age" -ge "$TIMEOUT" ]; then
      fail "$p rank $r: heartbeat is ${age}s old (dead-man timeout ${TIMEOUT}s)"
    fi
  done
  run_kite "$T_DIR/st-$p.out" "$T_DIR/st-$p.err" status "$p"
  expect_grep "$T_DIR/st-$p.out" " 2/2 " "$p: both nodes READY"
done
[ "$(instances "$A")" = "$IA" ] || fail "$A: instances changed: $IA -> $(instances "$A")"
[ "$(instances "$B")" = "$IB" ] || fail "$B: instances changed: $IB -> $(instances "$B")"
grep -hE "rank [0-9]+ lost|-> (FAILED|REPLACING)" "$KITE_HOME"/logs/*.log >&2 &&
  fail "a node was lost (owner logs above)"

log "$B (monitors off): a node that powers off is not called READY"
run_kite "$T_DIR/off.out" "$T_DIR/off.err" exec "$B" --rank 1 -- sh -c 'echo off > "$KITE_POWEROFF"'
b_rank1_gone() {
  kite status "$B" >"$T_DIR/st-off.out" 2>&1
  grep -q " 1/2 " "$T_DIR/st-off.out" && grep -Eq "^  1 +FAILED" "$T_DIR/st-off.out"
}
wait_for 20 b_rank1_gone || fail "$B: rank 1 powered off but: $(cat "$T_DIR/st-off.out")"

log "the switch is armed: kill -9 the owner of $B, and its nodes power off"
OWNER=$(sed -n 's/.*(owner pid \([0-9]*\),.*/\1/p' "$T_DIR/up-b.out" | head -1)
[ -n "$OWNER" ] || die "no owner pid in $(cat "$T_DIR/up-b.out")"
[ "$(node_procs "kite-pool-$B")" -gt 0 ] || fail "$B has no node process before the kill"
kill -KILL "$OWNER"
T0=$(date +%s)
wait_for $((TIMEOUT * 3)) no_node_procs "kite-pool-$B" ||
  fail "the nodes of $B were still up $((TIMEOUT * 3))s after their owner died"
log "nodes of $B gone $(($(date +%s) - T0))s after the owner died"
[ "$(node_procs "kite-pool-$A")" -gt 0 ] || fail "the nodes of $A went down with $B's"

for p in "$A" "$B"; do
  run_kite "$T_DIR/down-$p.out" "$T_DIR/down-$p.err" down "$p"
  expect_rc 0 "kite down $p"
done
