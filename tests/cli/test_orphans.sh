#!/usr/bin/env bash
# Orphans: instances with kite's pool tags that no running pool owns, e.g. left by a crashed
# kite on another machine of the same account, are found by `kite status --orphans` at every
# provider, region and endpoint this store has used, and terminated by `kite down --orphans`
# (only after confirmation). Pools that run are never touched.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK DIGITALOCEAN_TOKEN=$SIM_TOKEN
spec() { # NAME PROVIDER FILE
  if [ "$2" = aws ]; then
    printf 'name: %s\nprovider: aws\nregion: eu-west-1\nnodes: 1\nimage: ami-0123456789abcdef0\nprovider_options: {endpoint: "%s/", ssh_user: %s, ssh_port: 2222}\n' "$1" "$SIM_URL" "$U" >"$3"
  else
    printf 'name: %s\nprovider: digitalocean\nnodes: 1\nprovider_options: {api_url: "%s", ssh_user: %s, ssh_port: 2222}\n' "$1" "$SIM_URL" "$U" >"$3"
  fi
  printf 'monitors: {enabled: false}\ndeadman: {enabled: false}\n' >>"$3"
}
aws_live() { curl -s "$SIM_URL/_sim/ec2/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["live"])'; }
do_live() { curl -s "$SIM_URL/_sim/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["droplets"])'; }

for cloud in aws digitalocean; do
  mine=$(pool_name "mine-$cloud")
  spec "$mine" "$cloud" "$T_DIR/mine.yaml"
  run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/mine.yaml"
  expect_rc 0 "kite up ($cloud)"
done
run_kite "$T_DIR/orph.out" "$T_DIR/orph.err" status --orphans
expect_rc 0 "kite status --orphans with only running pools"
expect_grep "$T_DIR/orph.out" "no orphans" "running pools are not orphans"

# Another machine: its own KITE_HOME, killed with its pools up, its disk gone.
OTHER="$T_DIR/other-home"
for cloud in aws digitalocean; do
  leak="leak-$cloud-$$"
  spec "$leak" "$cloud" "$T_DIR/leak.yaml"
  KITE_HOME=$OTHER kite up --plain "$T_DIR/leak.yaml" >"$T_DIR/out" 2>"$T_DIR/err" ||
    fail "kite up on the other machine ($cloud): $(cat "$T_DIR/err")"
  pid=$(KITE_HOME=$OTHER kite status --json | python3 -c "import json,sys; print([p['owner_pid'] for p in json.load(sys.stdin)['pools'] if p['name']=='$leak'][0])")
  kill -KILL "$pid"
  wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
done
rm -rf "$OTHER"
[ "$(aws_live)" = 2 ] && [ "$(do_live)" = 2 ] || fail "expected 2 instances on each cloud"

run_kite "$T_DIR/orph.out" "$T_DIR/orph.err" status --orphans
expect_rc 0 "kite status --orphans"
expect_grep "$T_DIR/orph.out" "kite-pool-leak-aws-$$" "the AWS leak is listed"
expect_grep "$T_DIR/orph.out" "kite-pool-leak-digitalocean-$$" "the DigitalOcean leak is listed"
expect_grep "$T_DIR/orph.out" "eu-west-1" "where the AWS leak is"
expect_no_grep "$T_DIR/orph.out" "kite-pool-mine" "running pools are not orphans"
expect_grep "$T_DIR/orph.out" "2 orphan" "the count"

run_kite "$T_DIR/down.out" "$T_DIR/down.err" down --orphans </dev/null
expect_rc 1 "kite down --orphans without confirmation"
expect_grep "$T_DIR/down.err" "--yes" "says how to confirm"
[ "$(aws_live)" = 2 ] && [ "$(do_live)" = 2 ] || fail "something was terminated without confirmation"

run_kite "$T_DIR/down.out" "$T_DIR/down.err" down --orphans --yes
expect_rc 0 "kite down --orphans --yes"
sed 's/^/    /' "$T_DIR/down.out" >&2
[ "$(aws_live)" = 1 ] || fail "AWS: the leak is not terminated, or the running pool was"
[ "$(do_live)" = 1 ] || fail "DigitalOcean: the leak is not terminated, or the running pool was"
run_kite "$T_DIR/orph.out" "$T_DIR/orph.err" status --orphans
expect_grep "$T_DIR/orph.out" "no orphans" "nothing left after kite down --orphans"
run_kite "$T_DIR/out" "$T_DIR/err" exec "mine-aws-$$" -- true
expect_rc 0 "the running AWS pool still works"
