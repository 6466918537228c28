#!/usr/bin/env bash
# A user's Hetzner Cloud session on the emulator's Hetzner front: with HCLOUD_TOKEN and
# KITE_HETZNER_API_URL in the environment (nothing of either in the spec), `kite run` runs a
# command on two servers and prints each rank; a `kite up` pool whose owner is killed (SIGKILL)
# is taken down by `kite down` from a shell without KITE_HETZNER_API_URL (the pool's reach
# record names the endpoint) and every server is confirmed gone; a wrong token fails with the
# 401 message and leaves nothing behind.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export HCLOUD_TOKEN=$SIM_TOKEN KITE_HETZNER_API_URL="$SIM_URL/v1"
unset HCLOUD_CONFIG

spec() { # NAME FILE
  cat >"$2" <<YAML
name: $1
provider: hetzner
nodes: 2
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
run: echo "rank \$KITE_NODE_RANK of \$KITE_NUM_NODES on hetzner"
YAML
}
hz() { curl -s "$SIM_URL/_sim/hetzner/state" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
hz_live() { hz '["live"]'; }
hz_servers() { hz '["servers"]'; }

log "kite run on two Hetzner servers"
a=$(pool_name hz-run)
spec "$a" "$T_DIR/a.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/a.yaml"
expect_rc 0 "kite run"
expect_grep "$T_DIR/out" "^\[0\] rank 0 of 2 on hetzner" "rank 0's line"
expect_grep "$T_DIR/out" "^\[1\] rank 1 of 2 on hetzner" "rank 1's line"
expect_grep "$T_DIR/err" "closed: every instance terminated" "kite run says the pool closed"
[ "$(hz_live)" = 0 ] || fail "servers left after kite run: $(hz_servers)"
[ "$(sim_num '["created"]')" = 2 ] || fail "kite run created $(sim_num '["created"]') servers, not 2"
[ "$(hz '["ssh_keys"]')" = 1 ] || fail "kite's key is not registered once"

log "kite up, owner killed, kite down from a shell without KITE_HETZNER_API_URL"
b=$(pool_name hz-killed)
spec "$b" "$T_DIR/b.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/b.yaml"
expect_rc 0 "kite up"
[ "$(hz_live)" = 2 ] || fail "kite up: $(hz_live) servers live, not 2"
pid=$(owner_pid "$b")
[ -n "$pid" ] && [ "$pid" != 0 ] || die "no owner pid in kite status"
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "the owner did not die"
[ "$(hz_live)" = 2 ] || fail "the servers did not outlive their owner: $(hz_live) live"
reach=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(
  \"SELECT reach FROM instances WHERE pool=? LIMIT 1\", (sys.argv[2],)).fetchone()[0])" \
  "$KITE_HOME/state.db" "$b")
case "$reach" in *"$SIM_URL/v1"*) ;; *) fail "the store's reach record does not name the API URL: $reach" ;; esac
env -i PATH="$PATH" HOME="$HOME" KITE_HOME="$KITE_HOME" HCLOUD_TOKEN=$SIM_TOKEN \
  kite down "$b" >"$T_DIR/down.out" 2>"$T_DIR/down.err"
RC=$?
expect_rc 0 "kite down from a shell without the API URL"
expect_grep "$T_DIR/down.out" "is down" "kite down says the pool is down"
[ "$(grep -c "terminated (confirmed by the provider)" "$T_DIR/down.out")" = 2 ] ||
  fail "kite down did not confirm both servers: $(cat "$T_DIR/down.out" "$T_DIR/down.err")"
[ "$(hz_live)" = 0 ] || fail "servers left after kite down: $(hz_servers)"
[ "$(hz_servers)" = "[]" ] || fail "the emulator still lists servers: $(hz_servers)"
[ "$(node_procs "kite-pool-$b")" = 0 ] || fail "processes of the killed pool's servers still run"
kite status "$b" >"$T_DIR/st" 2>&1
expect_no_grep "$T_DIR/st" "^ *[0-9][0-9]* *READY" "kite status shows no READY node of a pool that is down"

log "a wrong token"
c=$(pool_name hz-badtoken)
spec "$c" "$T_DIR/c.yaml"
HCLOUD_TOKEN=hcloud-not-the-token-4f1d run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/c.yaml"
expect_rc 1 "kite run with a wrong token"
expect_grep "$T_DIR/err" "401" "the message names the 401"
expect_grep "$T_DIR/err" "HCLOUD_TOKEN" "the message says which variable to set"
expect_no_grep "$T_DIR/err" "not-the-token" "the token is not printed"
expect_no_grep "$T_DIR/out" "not-the-token" "the token is not printed"
[ "$(hz_live)" = 0 ] || fail "a wrong token left servers: $(hz_servers)"
[ "$(sim_num '["created"]')" = 4 ] || fail "$(sim_num '["created"]') servers created in all, not 4"

log "a token written in the spec never reaches kite events"
d=$(pool_name hz-spectoken)
cat >"$T_DIR/d.yaml" <<YAML
name: $d
provider: hetzner
nodes: 1
provider_options: {ssh_user: $U, ssh_port: 2222, token: "$SIM_TOKEN"}
monitors: {enabled: false}
deadman: {enabled: false}
YAML
env -u HCLOUD_TOKEN kite up --plain "$T_DIR/d.yaml" >"$T_DIR/out" 2>"$T_DIR/err" ||
  fail "kite up with the token in the spec: $(cat "$T_DIR/err")"
kite events --no-follow "$d" >"$T_DIR/events" 2>&1
expect_grep "$T_DIR/events" '"type":"reach_resolve"' "the events show the reach request"
expect_no_grep "$T_DIR/events" "$SIM_TOKEN" "the spec's token is not in kite events"

log "kite status --orphans lists a dead owner's server once, whatever accounts were recorded"
pid=$(owner_pid "$d")
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "the owner did not die"
kite status --orphans >"$T_DIR/orph" 2>&1
id=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(
  \"SELECT instance_id FROM instances WHERE pool=? LIMIT 1\", (sys.argv[2],)).fetchone()[0])" \
  "$KITE_HOME/state.db" "$d")
[ "$(grep -c " $id " "$T_DIR/orph")" = 1 ] ||
  { fail "the orphan is not listed once"; cat "$T_DIR/orph" >&2; }
run_kite "$T_DIR/out" "$T_DIR/err" down "$d"
expect_rc 0 "kite down of the spec-token pool"
[ "$(hz_live)" = 0 ] || fail "servers left: $(hz_servers)"

log "an http:// API URL to another host is refused when the spec is loaded"
e=$(pool_name hz-httpurl)
printf 'name: %s\nprovider: hetzner\nnodes: 1\nprovider_options:\n  api_url: "http://api.example.com/v1"\n' \
  "$e" >"$T_DIR/e.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" run "$T_DIR/e.yaml"
expect_rc 2 "kite run with an http:// API URL"
expect_grep "$T_DIR/err" "e.yaml:5:3: provider_options.api_url: 'http://api.example.com/v1' is not allowed" \
  "the refusal names the option's place"
kite status --all >"$T_DIR/st"
expect_no_grep "$T_DIR/st" "^$e " "nothing is recorded for a refused spec"

log "kite up warns that a powered-off server is still billed"
f=$(pool_name hz-deadman)
printf 'name: %s\nprovider: hetzner\nnodes: 1\nprovider_options: {ssh_user: %s, ssh_port: 2222}\nmonitors: {enabled: false}\n' \
  "$f" "$U" >"$T_DIR/f.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/f.yaml"
expect_rc 0 "kite up with the dead-man's switch on"
cat "$T_DIR/out" "$T_DIR/err" "$KITE_HOME/logs/$f.log" 2>/dev/null >"$T_DIR/f.all"
expect_grep "$T_DIR/err" "billed until it is deleted" "kite up shows the warning about the bill"
run_kite "$T_DIR/out" "$T_DIR/err" down "$f"
expect_rc 0 "kite down"
[ "$(hz_live)" = 0 ] || fail "servers left: $(hz_servers)"

log "kite status --orphans says so when a place could not be asked"
env -u HCLOUD_TOKEN HOME="$T_DIR" kite status --orphans >"$T_DIR/orph" 2>&1
RC=$?
expect_rc 1 "kite status --orphans without a token"
expect_grep "$T_DIR/orph" "could not be asked" "it names the place it could not ask"
expect_grep "$T_DIR/orph" "that is no proof" "it does not claim there are no orphans"
expect_no_grep "$T_DIR/orph" "^no orphans:" "no claim of no orphans"
