# A pool name that is in use is refused cleanly: `kite run` of the name of a pool that is up
# exits 1 with the owner's pid (no crash), two `kite run`s of one name at once give one pool
# and one refusal, and the pool that was up keeps working and closes normally.
. "$(dirname "$0")/lib.sh"

P=$(pool_name inuse)
cat >"$T_DIR/pool.yaml" <<EOF
name: $P
nodes: 2
bootstrap:
  files:
    - {path: hello.txt, content: "hello\n"}
run: cat hello.txt
EOF

log "kite up $P"
run_kite "$T_DIR/up.out" "$T_DIR/up.err" up --plain "$T_DIR/pool.yaml"
expect_rc 0 "kite up"
OWNER=$(sed -n 's/.*(owner pid \([0-9]*\),.*/\1/p' "$T_DIR/up.out" | head -1)
[ -n "$OWNER" ] || die "no owner pid in: $(cat "$T_DIR/up.out")"

log "kite run of the name that is up: refused"
run_kite "$T_DIR/run1.out" "$T_DIR/run1.err" run --plain "$T_DIR/pool.yaml"
expect_rc 1 "kite run of a pool name that is up"
expect_grep "$T_DIR/run1.err" "pool $P is open in process $OWNER" "the refusal names the owner"
expect_no_grep "$T_DIR/run1.err" "READY" "the refused run opened nothing"

log "kite up of the name that is up: refused"
run_kite "$T_DIR/up2.out" "$T_DIR/up2.err" up --plain "$T_DIR/pool.yaml"
expect_rc 1 "second kite up"
expect_grep "$T_DIR/up2.err" "already up (owner pid $OWNER)" "the second up names the owner"

log "the pool that was up still answers, on every rank"
run_kite "$T_DIR/exec.out" "$T_DIR/exec.err" exec "$P" -- cat hello.txt
expect_rc 0 "kite exec after the refusals"
[ "$(grep -c '^\[[01]\] hello$' "$T_DIR/exec.out")" = 2 ] ||
  fail "kite exec did not answer on both ranks: $(cat "$T_DIR/exec.out" "$T_DIR/exec.err")"
run_kite "$T_DIR/st.out" "$T_DIR/st.err" status "$P"
expect_grep "$T_DIR/st.out" "pid $OWNER " "the store still names the first owner"
expect_no_grep "$T_DIR/st.out" "dead" "the owner is alive"

log "kite down $P"
run_kite "$T_DIR/down.out" "$T_DIR/down.err" down "$P"
expect_rc 0 "kite down"

log "two kite runs of one name at once: one runs, the other is refused"
Q=$(pool_name race)
sed "s/^name: .*/name: $Q/" "$T_DIR/pool.yaml" >"$T_DIR/race.yaml"
# The command holds the pool open long enough for the other run to meet it.
for k in 1 2; do
  (RC=0; kite run --plain "$T_DIR/race.yaml" -- sh -c 'cat hello.txt; sleep 3' \
    >"$T_DIR/race$k.out" 2>"$T_DIR/race$k.err" || RC=$?; echo "$RC" >"$T_DIR/race$k.rc") &
done
wait
R1=$(cat "$T_DIR/race1.rc") R2=$(cat "$T_DIR/race2.rc")
log "exit statuses: $R1 $R2"
for k in 1 2; do
  r=$(cat "$T_DIR/race$k.rc")
  [ "$r" = 0 ] || [ "$r" = 1 ] || fail "run $k: exit status $r: $(cat "$T_DIR/race$k.err")"
done
if [ "$R1" = 0 ]; then W=1 L=2; else W=2 L=1; fi
[ "$(cat "$T_DIR/race$W.rc")" = 0 ] || fail "neither run worked: $(cat "$T_DIR"/race*.err)"
[ "$(cat "$T_DIR/race$L.rc")" = 1 ] || fail "both runs worked: one name held two pools"
[ "$(grep -c '^\[[01]\] hello$' "$T_DIR/race$W.out")" = 2 ] ||
  fail "the run that worked did not run on both ranks: $(cat "$T_DIR/race$W.out")"
expect_grep "$T_DIR/race$L.err" "pool $Q is open in process [0-9]" "the refused run names the owner"
expect_grep "$T_DIR/race$W.err" "closed: every instance terminated" "the run that worked closed"
run_kite "$T_DIR/st2.out" "$T_DIR/st2.err" status --json "$Q"
[ "$(node_procs "kite-pool-$Q")" = 0 ] || fail "node processes of $Q are left"
run_kite "$T_DIR/down2.out" "$T_DIR/down2.err" down "$Q"
expect_grep "$T_DIR/down2.out" "no live instance" "nothing of the race is left recorded live"
