# Ctrl-C at a terminal while the nodes bootstrap: `kite run` under a pseudo-terminal (script(1)),
# the terminal's interrupt character typed into it. The terminal signals its foreground process
# group; local nodes live in sessions of their own, so only kite hears it, cancels the
# bootstrap and closes the pool itself: exit 130, "pool ... closed", never "connection lost",
# and nothing of the nodes is left.
. "$(dirname "$0")/lib.sh"

P=$(pool_name ttyc)
TAG=kite-pool-$P
cat >"$T_DIR/spec.yaml" <<EOF
name: $P
nodes: 2
provider: local
bootstrap:
  setup: sleep 30
run: echo never-reached
EOF

# The terminal's keyboard: a FIFO kept open for writing, so script(1) never reads EOF.
mkfifo "$T_DIR/keys"
script -qefc "kite run $(printf '%q' "$T_DIR/spec.yaml")" /dev/null <"$T_DIR/keys" \
  >"$T_DIR/out" 2>&1 &
SCRIPT_PID=$!
exec 3>"$T_DIR/keys"

log "waiting for the bootstrap to run on both nodes"
wait_for 60 node_procs_are "$TAG" '^sleep 30 ' 2 ||
  die "the bootstrap did not start on both nodes: $(cat "$T_DIR/out")"
on_tty=$(node_procs_on_tty "$TAG")
[ "$on_tty" = 0 ] ||
  fail "$on_tty process(es) of the nodes have kite's terminal as theirs: its Ctrl-C reaches them"
log "Ctrl-C"
printf '\003' >&3
RC=0
for ((i = 0; i < 300; i++)); do
  kill -0 "$SCRIPT_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SCRIPT_PID" 2>/dev/null; then
  fail "kite run did not exit within 30 s of Ctrl-C"
  printf '\003' >&3 # the second Ctrl-C exits at once
  sleep 1
fi
wait "$SCRIPT_PID" || RC=$?
exec 3>&-
tr -d '\r' <"$T_DIR/out" >"$T_DIR/out.txt"
expect_rc 130 "kite run after Ctrl-C"
expect_grep "$T_DIR/out.txt" "pool $P closed" "the pool was closed by kite"
expect_no_grep "$T_DIR/out.txt" "connection lost" "no node died under kite"
wait_for 5 node_procs_are "$TAG" . 0 ||
  fail "$(node_procs "$TAG") process(es) of the nodes left after kite run exited"
exit 0
