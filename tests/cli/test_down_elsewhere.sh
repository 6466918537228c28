#!/usr/bin/env bash
# `kite down` reaches instances where they were created. An AWS pool in eu-west-1 on the
# emulator's endpoint, its owner killed (SIGKILL) at three moments; then `kite down` from a
# fresh shell with only credentials in the environment (no AWS_REGION, no endpoint) must
# terminate every instance: exit 0, and the emulator counts none live in any region.
# The same for DigitalOcean (the API URL is the pool's, not the environment's).
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)

aws_spec() { # NAME FILE
  cat >"$2" <<YAML
name: $1
provider: aws
region: eu-west-1
nodes: 2
image: ami-0123456789abcdef0
resources: {instance_type: t3.micro}
provider_options: {endpoint: "$SIM_URL/", ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
YAML
}
do_spec() {
  cat >"$2" <<YAML
name: $1
provider: digitalocean
nodes: 2
provider_options: {api_url: "$SIM_URL", ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
YAML
}
aws_live() { sim_state_ec2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["live"])'; }
sim_state_ec2() { curl -s "$SIM_URL/_sim/ec2/state"; }
do_live() { sim_state | python3 -c 'import json,sys; print(json.load(sys.stdin)["droplets"])'; }

# kill_at MOMENT: starts `kite up` in the background and SIGKILLs its owner at MOMENT:
#   created  the create call answered, instances still pending
#   connect  instances running, the owner connecting to them
#   ready    the pool is READY
kill_at() {
  local cloud="$1" moment="$2" name spec
  name=$(pool_name "$cloud-$moment")
  spec="$T_DIR/$name.yaml"
  "${cloud}_spec" "$name" "$spec"
  log "$cloud: owner killed at '$moment'"
  case "$cloud" in
  aws) export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK ;;
  do) export DIGITALOCEAN_TOKEN=$SIM_TOKEN ;;
  esac
  case "$moment" in
  created) sim_faults '{"provision_ms": 30000}' ;;
  connect) sim_faults '{"provision_ms": 0}' ;;
  ready) sim_faults '{"provision_ms": 0}' ;;
  esac
  if [ "$moment" = ready ]; then
    run_kite "$T_DIR/up.out" "$T_DIR/up.err" up --plain "$spec"
    expect_rc 0 "kite up ($cloud)"
  else
    kite up --plain "$spec" >"$T_DIR/up.out" 2>"$T_DIR/up.err" &
    local up=$!
    if [ "$moment" = created ]; then
      wait_for 30 created_two "$cloud" || fail "$cloud: no instance was created"
    else
      wait_for 60 grep -q BOOTSTRAPPING "$KITE_HOME/logs/$name.log" 2>/dev/null ||
        wait_for 1 true
    fi
  fi
  local pid
  pid=$(owner_pid "$name")
  [ -n "$pid" ] && [ "$pid" != 0 ] || { fail "$cloud/$moment: no owner pid in kite status"; return; }
  kill -KILL "$pid"
  wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
  [ "$moment" = ready ] || wait "$up" 2>/dev/null
  sim_faults '{"provision_ms": 0}'
  # A fresh shell: only the credentials, no region, no endpoint.
  env -i PATH="$PATH" HOME="$HOME" KITE_HOME="$KITE_HOME" \
    AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK DIGITALOCEAN_TOKEN=$SIM_TOKEN \
    kite down "$name" >"$T_DIR/down.out" 2>"$T_DIR/down.err"
  RC=$?
  sed 's/^/    /' "$T_DIR/down.out" "$T_DIR/down.err" >&2
  expect_rc 0 "$cloud/$moment: kite down from a fresh shell"
  expect_grep "$T_DIR/down.out" "is down" "$cloud/$moment: kite down says the pool is down"
  local live
  live=$("${cloud}_live")
  [ "$live" = 0 ] || { fail "$cloud/$moment: $live instance(s) still live at the emulator"; cat "$T_DIR/down.out" "$T_DIR/down.err" >&2; }
}
created_two() { [ "$("$1"_count_created)" -ge 2 ]; }
aws_count_created() { sim_state_ec2 | python3 -c 'import json,sys; print(json.load(sys.stdin)["live"])'; }
do_count_created() { sim_state | python3 -c 'import json,sys; print(json.load(sys.stdin)["droplets"])'; }

for m in created connect ready; do kill_at aws "$m"; done
for m in created connect ready; do kill_at do "$m"; done

# "Not found" is no proof when asked elsewhere: with a record of instances launched under
# another account (in another region), or with no reach record (as written by an older kite),
# `kite down` must not report the instances terminated; they stay recorded and live until it
# is asked in the right place with the right account.
log "aws: not found under another account, or with no reach record"
name=$(pool_name aws-wrong)
aws_spec "$name" "$T_DIR/$name.yaml"
export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK
run_kite "$T_DIR/up.out" "$T_DIR/up.err" up --plain "$T_DIR/$name.yaml"
expect_rc 0 "kite up (aws-wrong)"
pid=$(owner_pid "$name")
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null"
store_sql() { python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); r=c.execute(sys.argv[2]).fetchall(); c.commit(); print(r[0][0] if r else '')" "$KITE_HOME/state.db" "$1"; }
good=$(store_sql "SELECT reach FROM instances WHERE pool='$name' LIMIT 1")
case "$good" in *eu-west-1*) ;; *) fail "the store's reach record does not name the region: $good" ;; esac
store_sql "UPDATE instances SET reach=replace(replace(reach,'eu-west-1','us-west-2'),'akid-','akid-0') WHERE pool='$name'" >/dev/null
for variant in other-account none; do
  [ "$variant" = none ] && store_sql "UPDATE instances SET reach=NULL WHERE pool='$name'" >/dev/null
  env -i PATH="$PATH" HOME="$HOME" KITE_HOME="$KITE_HOME" \
    AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK AWS_REGION=us-east-1 \
    KITE_AWS_ENDPOINT="$SIM_URL/" kite down "$name" >"$T_DIR/down.out" 2>"$T_DIR/down.err"
  RC=$?
  expect_rc 1 "aws ($variant reach): kite down must fail"
  expect_no_grep "$T_DIR/down.out" "terminated (confirmed" "aws ($variant reach): nothing confirmed"
  expect_grep "$T_DIR/down.err" "no proof" "aws ($variant reach): says why"
  [ "$(aws_live)" = 2 ] || fail "aws ($variant reach): instances should still be live"
done
store_sql "UPDATE instances SET reach='$good' WHERE pool='$name'" >/dev/null
run_kite "$T_DIR/down.out" "$T_DIR/down.err" down "$name"
expect_rc 0 "aws: kite down with the right reach record"
[ "$(aws_live)" = 0 ] || fail "aws: instances left after kite down"
