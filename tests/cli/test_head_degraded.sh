#!/usr/bin/env bash
# KITE_HEAD_IP is the lowest READY rank (rank 0 failed here: the head is rank 1), and a pool
# below min_nodes is not reported "ready" by `kite status`.
. "$(dirname "$0")/lib.sh"
P=$(pool_name head)
cat >"$T_DIR/p.yaml" <<YAML
name: $P
nodes: 3
min_nodes: 2
bootstrap:
  setup: 'test "\$KITE_NODE_RANK" != 0'
YAML
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/p.yaml"
expect_rc 0 "kite up with rank 0 failing its bootstrap (min_nodes 2)"
addrs=($(pool_addresses "$P"))
run_kite "$T_DIR/o" "$T_DIR/e" exec "$P" --rank 2 -- sh -c 'echo "head=$KITE_HEAD_IP"'
expect_rc 0 "kite exec on rank 2"
expect_grep "$T_DIR/o" "head=${addrs[1]}\$" "KITE_HEAD_IP is rank 1's address (rank 0 failed)"
kite status "$P" >"$T_DIR/st"
expect_grep "$T_DIR/st" " ready " "2 of 3 READY with min_nodes 2 is ready"
# Rank 2's machine dies; replacement is off: 1 READY < min_nodes.
pkill -KILL -f "$KITE_HOME/local/${addrs[2]}/" || fail "no sshd of rank 2 to kill"
wait_for 20 sh -c "kite status '$P' | grep -q degraded" || fail "kite status does not say degraded: $(kite status "$P")"
