#!/usr/bin/env bash
# What a pdsh user reaches for first: rank lists and ranges (--rank 0-1,3, repeated --rank),
# -x to leave ranks out, --env, -f fan-out, a command given as one shell string, usage errors
# that name the bad rank (exit 2), ad-hoc hosts with -w / --hostfile and no spec, and advice
# that works after an owner crash.
. "$(dirname "$0")/lib.sh"
M=$(pool_name sel)
printf 'name: %s\nnodes: 4\n' "$M" >"$T_DIR/m.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/m.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
ranks_seen() { grep -o 'r[0-9]' "$1" | sort | tr -d '\n'; }

run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --rank 0-1,3 -- sh -c 'echo r$KITE_NODE_RANK'
expect_rc 0 "--rank 0-1,3"
[ "$(ranks_seen "$T_DIR/o")" = r0r1r3 ] || fail "--rank 0-1,3 ran on $(ranks_seen "$T_DIR/o")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --rank 0 --rank 2 -- sh -c 'echo r$KITE_NODE_RANK'
[ "$(ranks_seen "$T_DIR/o")" = r0r2 ] || fail "--rank 0 --rank 2 ran on $(ranks_seen "$T_DIR/o")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" -x 1 -- sh -c 'echo r$KITE_NODE_RANK'
[ "$(ranks_seen "$T_DIR/o")" = r0r2r3 ] || fail "-x 1 ran on $(ranks_seen "$T_DIR/o")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --rank 7 -- true
expect_rc 2 "--rank 7 on a pool of 4 is a usage error"
expect_grep "$T_DIR/e" "rank 7 does not exist" "the message names the rank"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --rank 2 -- sh -c 'exit 5'
expect_rc 5 "one rank: its own exit status"

run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --rank 1 'echo $HOME | tr a-z A-Z'
expect_rc 0 "a command as one shell string"
grep -q '^\[1\] /[A-Z/_.-]*$' "$T_DIR/o" || fail "the shell string did not run as a pipeline: $(cat "$T_DIR/o")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --env GREETING=hej --env B=2 -- sh -c 'echo $GREETING$B'
expect_rc 0 "--env"
[ "$(grep -c 'hej2' "$T_DIR/o")" = 4 ] || fail "--env did not reach every rank: $(cat "$T_DIR/o")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" -f 1 -- true
expect_rc 0 "-f 1"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" --env 1BAD=x -- true
expect_rc 2 "--env with a bad name"

log "-w and --hostfile: the machines of the pool as ad-hoc hosts, through ~/.ssh/config"
U=$(node_user)
UH="$T_DIR/userhome"
mkdir -p "$UH/.ssh"
chmod 700 "$UH/.ssh"
addrs=$(pool_addresses "$M")
{
  echo "Host 127.0.1.*"
  echo "  User $U"
  echo "  Port 2222"
  echo "  IdentityFile $KITE_HOME/keys/id_ed25519"
} >"$UH/.ssh/config"
: >"$UH/.ssh/known_hosts"
for a in $addrs; do
  printf '[%s]:2222 %s\n' "$a" "$(cut -d' ' -f1,2 "$KITE_HOME/local/$a/sshd/host_key.pub")" >>"$UH/.ssh/known_hosts"
done
w=$(echo $addrs | cut -d' ' -f1-2 | tr ' ' ',')
HOME=$UH kite exec -w "$w" -- sh -c 'echo r$KITE_NODE_RANK of $KITE_NUM_NODES' >"$T_DIR/o" 2>"$T_DIR/e"
RC=$?
expect_rc 0 "kite exec -w $w"
[ "$(grep -c ' of 2' "$T_DIR/o")" = 2 ] || { fail "-w output"; cat "$T_DIR/o" "$T_DIR/e" >&2; }
HOME=$UH kite exec -L -w "$w" -- echo labelled >"$T_DIR/o" 2>"$T_DIR/e"
expect_grep "$T_DIR/o" "^$(echo $addrs | cut -d' ' -f1): labelled\$" "-L labels lines with the host, as pdsh"
run_kite "$T_DIR/o" "$T_DIR/e" exec -L "$M" --rank 1 -- echo labelled
expect_grep "$T_DIR/o" "^$(echo $addrs | cut -d' ' -f2): labelled\$" "-L on a pool: the node's address"
if command -v dshbak >/dev/null; then
  kite exec -L "$M" -- echo same | dshbak -c >"$T_DIR/d" 2>&1
  expect_grep "$T_DIR/d" "^same\$" "dshbak -c reads kite's output"
fi
HOME=$UH kite exec --json -w "$w" -- echo js >"$T_DIR/o" 2>"$T_DIR/e"
python3 -c '
import json,sys
ls=[json.loads(l) for l in open(sys.argv[1])]
assert sum(1 for l in ls if l["t"]=="out")==2 and ls[-1]["t"]=="result" and ls[-1]["failed"]==0, ls' "$T_DIR/o" ||
  fail "kite exec --json -w: $(cat "$T_DIR/o" "$T_DIR/e")"
echo $addrs | tr ' ' '\n' >"$T_DIR/hosts"
HOME=$UH kite exec --hostfile "$T_DIR/hosts" 'echo r$KITE_NODE_RANK' >"$T_DIR/o" 2>"$T_DIR/e"
RC=$?
expect_rc 0 "kite exec --hostfile"
[ "$(ranks_seen "$T_DIR/o")" = r0r1r2r3 ] || fail "--hostfile ran on $(ranks_seen "$T_DIR/o")"
kite status >"$T_DIR/st"
expect_no_grep "$T_DIR/st" "^w-.*ready" "no ad-hoc pool is left up"

log "kite down of an ssh pool whose owner died releases the machines, and says so"
S=$(pool_name sshrel)
printf 'name: %s\nnodes: 2\nprovider: ssh\nprovider_options: {hosts: ["%s", "%s"]}\n' "$S" \
  "$(echo $addrs | cut -d' ' -f1)" "$(echo $addrs | cut -d' ' -f2)" >"$T_DIR/s.yaml"
HOME=$UH kite up --plain "$T_DIR/s.yaml" >"$T_DIR/o" 2>"$T_DIR/e" || fail "kite up (ssh): $(cat "$T_DIR/e")"
spid=$(kite status --json | python3 -c "import json,sys; print([p['owner_pid'] for p in json.load(sys.stdin)['pools'] if p['name']=='$S'][0])")
kill -KILL "$spid"
wait_for 10 sh -c "! kill -0 $spid 2>/dev/null"
HOME=$UH kite down "$S" >"$T_DIR/o" 2>"$T_DIR/e"
RC=$?
expect_rc 0 "kite down of the ssh pool"
expect_grep "$T_DIR/o" "released (your machine; left running)" "the machines are released, not terminated"
expect_no_grep "$T_DIR/o" "terminated (confirmed" "no machine of the user's is called terminated"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" -- true
expect_rc 0 "the machines are still up"

log "after an owner crash, the advice works"
pid=$(kite status --json | python3 -c "import json,sys; print([p['owner_pid'] for p in json.load(sys.stdin)['pools'] if p['name']=='$M'][0])")
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" -- true
expect_rc 1 "exec on a pool whose owner is gone"
expect_grep "$T_DIR/e" "kite down $M" "the advice says to take it down first"
run_kite "$T_DIR/o" "$T_DIR/e" down "$M"
expect_rc 0 "kite down"

log "a pool name no command could address is refused at load"
printf 'name: "-lead"\nnodes: 1\nrun: "true"\n' >"$T_DIR/lead.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" run "$T_DIR/lead.yaml"
expect_rc 2 "a pool named -lead"
expect_grep "$T_DIR/e" "lead.yaml:1:7: name: '-lead' is not a valid pool name" "the message"

log "flags that would be ignored together are refused"
run_kite "$T_DIR/o" "$T_DIR/e" exec -L --json "$M" -- true
expect_rc 2 "-L with --json"
