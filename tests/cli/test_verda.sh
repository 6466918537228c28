#!/usr/bin/env bash
# A user's Verda session on the emulator's Verda front, with VERDA_CLIENT_ID,
# VERDA_CLIENT_SECRET and KITE_VERDA_API_URL in the environment (nothing of them in the spec):
# - `kite run` of 4 nodes with a V100 each runs on 1V100.6V, prints every rank, leaves nothing
#   (no instance, no startup script holding a host key);
# - a spot pool: one instance is discontinued while a command with retries runs; the node is
#   replaced and the lost rank's command runs again;
# - a type whose instances never run (installation_failed): the pool fails over to the next
#   offer, and says why;
# - a wrong secret: the message names the variable, prints no secret, creates nothing.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export VERDA_CLIENT_ID=kite-cloudsim-client VERDA_CLIENT_SECRET=$SIM_TOKEN
export KITE_VERDA_API_URL="$SIM_URL/verda/v1"
unset DATACRUNCH_CLIENT_ID DATACRUNCH_CLIENT_SECRET

vd() { curl -s "$SIM_URL/_sim/verda/state" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
vd_live() { sim_num '["verda_instances"]'; }
vd_insts() { vd 's["instances"]'; }
ready_count() {
  kite status --json "$1" 2>/dev/null | python3 -c "
import json,sys
[p] = [p for p in json.load(sys.stdin)['pools'] if p['name']=='$1']
print(sum(1 for n in p.get('nodes',[]) if n.get('state')=='READY'))"
}
created_more_than() { [ "$(sim_num '["created"]')" -gt "$1" ]; }
whole() { [ "$(ready_count "$1")" = "$2" ]; }

log "kite run of 4 nodes with a V100 each"
a=$(pool_name vd-run)
cat >"$T_DIR/a.yaml" <<YAML
name: $a
provider: verda
nodes: 4
region: FIN-01
resources: {accelerators: "V100:1"}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
run: echo "rank \$KITE_NODE_RANK of \$KITE_NUM_NODES on verda"
YAML
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/a.yaml"
expect_rc 0 "kite run"
for r in 0 1 2 3; do
  expect_grep "$T_DIR/out" "^\[$r\] rank $r of 4 on verda" "rank $r's line"
done
[ "$(vd_live)" = 0 ] || fail "instances left after kite run: $(vd_insts)"
[ "$(vd 'len(s["scripts"])')" = 0 ] || fail "startup scripts (with host keys) left: $(vd 's["scripts"]')"
[ "$(sim_num '["created"]')" = 4 ] || fail "kite run created $(sim_num '["created"]') instances, not 4"

log "a spot pool: a discontinued instance is replaced and its rank's command runs again"
b=$(pool_name vd-spot)
cat >"$T_DIR/b.yaml" <<YAML
name: $b
provider: verda
nodes: 2
region: FIN-01
resources: {instance_type: 1V100.6V, spot: true}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {preempt_interval: 1s, health_interval: 1s}
replace: {on_preemption: true}
deadman: {enabled: false}
YAML
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/b.yaml"
expect_rc 0 "kite up of a spot pool"
[ "$(vd 'sum(1 for i in s["instances"] if i["is_spot"])')" = 2 ] || fail "the instances are not spot: $(vd_insts)"
victim=$(vd 's["instances"][0]["id"]')
bg_kite "$T_DIR/x.out" "$T_DIR/x.err" exec --retries 3 "$b" 'sleep 4; echo "done on $KITE_NODE_RANK"'
sleep 1.5
curl -s -X POST "$SIM_URL/_sim/verda/instances/$victim/discontinue" >/dev/null
wait_bg
expect_rc 0 "kite exec with retries across a discontinued instance"
expect_grep "$T_DIR/x.out" "done on 0" "rank 0's line"
expect_grep "$T_DIR/x.out" "done on 1" "rank 1's line"
wait_for 90 created_more_than 6 || fail "no replacement instance was created"
wait_for 90 whole "$b" 2 || fail "the pool is not whole again: $(kite status "$b" 2>&1)"
kite events --no-follow "$b" >"$T_DIR/events" 2>&1
expect_grep "$T_DIR/events" '"type":"node_replaced"' "the events show the replacement"
run_kite "$T_DIR/out" "$T_DIR/err" down "$b"
expect_rc 0 "kite down of the spot pool"
[ "$(vd_live)" = 0 ] || fail "instances left after kite down: $(vd_insts)"

log "a type whose instances never run: the pool fails over"
c=$(pool_name vd-failover)
cat >"$T_DIR/c.yaml" <<YAML
name: $c
provider: verda
nodes: 1
region: FIN-01
resources: {accelerators: {V100: 1, A100: 1}}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
run: echo "landed"
YAML
curl -s -X POST -d '{"status": "installation_failed"}' "$SIM_URL/_sim/verda/instance-types/1V100.6V/fail" >/dev/null
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/c.yaml"
expect_rc 0 "kite run with a failing cheapest type"
expect_grep "$T_DIR/out" "landed" "the command ran on the next offer"
expect_grep "$T_DIR/err" "will never run" "kite says why it moved on"
expect_grep "$T_DIR/err" "1A100.22V" "kite names the type it moved to"
[ "$(vd_live)" = 0 ] || fail "instances left after the failover: $(vd_insts)"
curl -s -X POST -d '{"status": null}' "$SIM_URL/_sim/verda/instance-types/1V100.6V/fail" >/dev/null

log "a wrong secret"
d=$(pool_name vd-badsecret)
sed "s/^name: .*/name: $d/" "$T_DIR/a.yaml" >"$T_DIR/d.yaml"
before=$(sim_num '["created"]')
VERDA_CLIENT_SECRET=verda-not-the-secret-77 run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/d.yaml"
[ "$RC" != 0 ] || fail "kite run with a wrong secret succeeded"
expect_grep "$T_DIR/err" "VERDA_CLIENT_SECRET" "the message says which variable to set"
expect_no_grep "$T_DIR/err" "not-the-secret" "the secret is not printed"
[ "$(sim_num '["created"]')" = "$before" ] || fail "an instance was created with a wrong secret"
