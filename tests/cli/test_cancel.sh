# Every way a command ends early stops it on the node: Ctrl-C (SIGINT) and SIGTERM of
# `kite exec` and of `kite run`, a `kite exec` client that dies (kill -9), `kite down` while a
# `kite exec` runs, and `kite exec --timeout`. Checked on the nodes themselves: no `sleep 3x`
# is left there a few seconds later. On the local provider, and on the ssh provider, whose
# machines (here the nodes of a local pool) stay up when the pool closes, so nothing but the
# cancel can stop the commands.
. "$(dirname "$0")/lib.sh"

SLEEP='^sleep 3[0-9] '
NODES=2

# stops_on_nodes WHAT: no command of ours is left on the machines within 5 s.
stops_on_nodes() {
  wait_for 5 node_procs_are "$MTAG" "$SLEEP" 0 ||
    fail "$1: $(node_procs_matching "$MTAG" "$SLEEP") 'sleep 3x' still running on the nodes"
}
# started WHAT: the command runs on every node.
started() {
  wait_for 20 node_procs_are "$MTAG" "$SLEEP" "$NODES" ||
    fail "$1: the command did not start on every node ($(node_procs_matching "$MTAG" "$SLEEP"))"
}

# exec_signal POOL SIGNAL EXPECTED_RC: a `kite exec` that gets SIGNAL while it runs.
exec_signal() {
  local p="$1" sig="$2" want="$3" w="exec $2 ($PROV)"
  log "$w"
  bg_kite "$T_DIR/o" "$T_DIR/e" exec "$p" -- sleep 37
  started "$w"
  kill -"$sig" "$BG_PID"
  wait_bg
  expect_rc "$want" "$w"
  stops_on_nodes "$w"
}

exec_cases() {
  local p="$1"
  exec_signal "$p" INT 130
  expect_grep "$T_DIR/e" "interrupted" "exec INT ($PROV) says it was interrupted"
  expect_grep "$T_DIR/e" "canceled" "exec INT ($PROV) reports the ranks canceled"
  exec_signal "$p" TERM 130
  exec_signal "$p" KILL 137 # the client is gone: its owner cancels what it asked for

  log "exec --timeout ($PROV)"
  run_kite "$T_DIR/o" "$T_DIR/e" exec "$p" --timeout 2 -- sleep 38
  expect_rc 1 "exec --timeout ($PROV)"
  expect_grep "$T_DIR/e" "timed out" "exec --timeout ($PROV)"
  stops_on_nodes "exec --timeout ($PROV)"

  # The pool still runs commands after all that.
  run_kite "$T_DIR/o" "$T_DIR/e" exec "$p" -- echo still-here
  expect_rc 0 "exec after the cancels ($PROV)"
  expect_grep "$T_DIR/o" "still-here" "exec after the cancels ($PROV)"

  log "down during exec ($PROV)"
  bg_kite "$T_DIR/o" "$T_DIR/e" exec "$p" -- sleep 36
  started "down during exec ($PROV)"
  run_kite "$T_DIR/do" "$T_DIR/de" down "$p"
  expect_rc 0 "down during exec ($PROV)"
  wait_bg
  [ "$RC" != 0 ] || fail "down during exec ($PROV): the exec client exited 0"
  stops_on_nodes "down during exec ($PROV)"
}

# run_signal SPEC SIGNAL: `kite run SPEC -- sleep 35` gets SIGNAL while the command runs.
run_signal() {
  local w="run $2 ($PROV)"
  log "$w"
  bg_kite "$T_DIR/ro" "$T_DIR/re" run --plain "$1" -- sleep 35
  started "$w"
  kill -"$2" "$BG_PID"
  wait_bg
  expect_rc 130 "$w"
  expect_grep "$T_DIR/re" "closed" "$w: the pool is closed"
  stops_on_nodes "$w"
}

# ---- the local provider ---------------------------------------------------------------------
PROV=local
M=$(pool_name machines)
MTAG=kite-pool-$M
printf 'name: %s\nnodes: %s\nprovider: local\n' "$M" "$NODES" >"$T_DIR/machines.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/machines.yaml"
[ "$RC" = 0 ] || die "kite up $M failed: $(cat "$T_DIR/e")"
exec_signal "$M" INT 130
exec_signal "$M" KILL 137

L=$(pool_name lrun)
MTAG_MACHINES=$MTAG
MTAG=kite-pool-$L
printf 'name: %s\nnodes: %s\nprovider: local\n' "$L" "$NODES" >"$T_DIR/lrun.yaml"
run_signal "$T_DIR/lrun.yaml" INT
MTAG=$MTAG_MACHINES

# ---- the ssh provider, over the local pool's nodes ----------------------------------------------
PROV=ssh
user=$(node_user)
hosts= kh="$T_DIR/known_hosts"
: >"$kh"
for a in $(pool_addresses "$M"); do
  hosts="$hosts${hosts:+, }\"$user@$a:2222\""
  printf '[%s]:2222 %s\n' "$a" "$(cut -d' ' -f1,2 "$KITE_HOME/local/$a/sshd/host_key.pub")" >>"$kh"
done
S=$(pool_name lab)
ssh_spec() {
  printf 'name: %s\nnodes: %s\nprovider: ssh\nprovider_options: {hosts: [%s], known_hosts: "%s", key: "%s"}\n' \
    "$1" "$NODES" "$hosts" "$kh" "$KITE_HOME/keys/id_ed25519" >"$T_DIR/$1.yaml"
}
ssh_spec "$S"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/$S.yaml"
[ "$RC" = 0 ] || die "kite up $S (ssh provider) failed: $(cat "$T_DIR/e")"
exec_cases "$S"

R=$(pool_name labrun)
ssh_spec "$R"
run_signal "$T_DIR/$R.yaml" INT
run_signal "$T_DIR/$R.yaml" TERM

# The machines themselves stayed up the whole time.
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" -- echo machine-up
expect_rc 0 "the machines are still up"
exit 0
