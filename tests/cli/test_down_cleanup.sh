#!/usr/bin/env bash
# `kite down` returns when the pool is really down: the owner has deleted the key pair and
# security group kite made in the account (when nothing else uses them), so a `kite run` right
# after it in the same region works. After a SIGKILL of the owner, `kite down` deletes them
# itself. Two pools in one account and region never delete what the other still uses.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK
spec() { # NAME FILE [RUN]
  cat >"$2" <<YAML
name: $1
provider: aws
region: eu-west-1
nodes: 2
image: ami-0123456789abcdef0
provider_options: {endpoint: "$SIM_URL/", ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
run: echo ran on \$KITE_NODE_RANK
YAML
}
ec2() { curl -s "$SIM_URL/_sim/ec2/state" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

log "kite down, then at once kite run in the same region"
a=$(pool_name first)
spec "$a" "$T_DIR/a.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/a.yaml"
expect_rc 0 "kite up"
[ "$(ec2 key_pairs)" = 1 ] && [ "$(ec2 security_groups)" = 1 ] || fail "kite up made no key pair or group"
run_kite "$T_DIR/out" "$T_DIR/err" down "$a"
expect_rc 0 "kite down"
[ "$(ec2 key_pairs)" = 0 ] || fail "kite down returned with the key pair still there"
[ "$(ec2 security_groups)" = 0 ] || fail "kite down returned with the security group still there"
b=$(pool_name second)
spec "$b" "$T_DIR/b.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/b.yaml"
expect_rc 0 "kite run right after kite down"
expect_grep "$T_DIR/out" "ran on 1" "kite run's output"
expect_no_grep "$T_DIR/err" "NotFound" "kite run's errors"

log "SIGKILL of the owner, then kite down deletes what kite made"
c=$(pool_name killed)
spec "$c" "$T_DIR/c.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/c.yaml"
expect_rc 0 "kite up"
pid=$(kite status --json | python3 -c "import json,sys; print([p['owner_pid'] for p in json.load(sys.stdin)['pools'] if p['name']=='$c'][0])")
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
run_kite "$T_DIR/out" "$T_DIR/err" down "$c"
expect_rc 0 "kite down of a killed owner"
[ "$(ec2 live)" = 0 ] || fail "instances left"
[ "$(ec2 key_pairs)" = 0 ] || fail "the key pair kite made is left after kite down"
[ "$(ec2 security_groups)" = 0 ] || fail "the security group kite made is left after kite down"

log "two pools in one region: closing one keeps what the other uses"
d=$(pool_name one)
e=$(pool_name other)
spec "$d" "$T_DIR/d.yaml"
spec "$e" "$T_DIR/e.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/d.yaml"
expect_rc 0 "kite up one"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/e.yaml"
expect_rc 0 "kite up other"
run_kite "$T_DIR/out" "$T_DIR/err" down "$d"
expect_rc 0 "kite down one"
[ "$(ec2 key_pairs)" = 1 ] && [ "$(ec2 security_groups)" = 1 ] || fail "closing one pool deleted what the other uses"
run_kite "$T_DIR/out" "$T_DIR/err" exec "$e" -- echo still here
expect_rc 0 "kite exec on the other pool"
run_kite "$T_DIR/out" "$T_DIR/err" down "$e"
expect_rc 0 "kite down other"
[ "$(ec2 key_pairs)" = 0 ] && [ "$(ec2 security_groups)" = 0 ] || fail "the last pool's down left kite's key pair or group"

log "kite down --json: progress on stderr, one JSON object on stdout"
f=$(pool_name json)
spec "$f" "$T_DIR/f.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/f.yaml"
expect_rc 0 "kite up"
run_kite "$T_DIR/out" "$T_DIR/err" down --json "$f"
expect_rc 0 "kite down --json"
python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["v"]==1 and j["pool"]==sys.argv[2] and j["down"] is True and j["live"]==[] and j["exit"]==0, j' \
  "$T_DIR/out" "$f" || fail "kite down --json: $(cat "$T_DIR/out")"
expect_grep "$T_DIR/err" "is down" "the progress went to stderr"
