#!/usr/bin/env bash
# A user's RunPod session on the emulator's RunPod front, with RUNPOD_API_KEY and
# KITE_RUNPOD_API_URL in the environment:
# - RunPod's REST API lists no prices: `kite offers --provider runpod` says so; after
#   `kite offers --import runpod-vms.csv --provider runpod` (the public price snapshot) it lists
#   the snapshot's offers, and pools choose by resources from them;
# - `kite run` of 4 pods with an RTX 4090 in Romania prints every rank and leaves nothing;
# - an interruptible pool: one pod is interrupted while a command with retries runs; the node
#   is replaced and the lost rank's command runs again;
# - a GPU type whose pods never run: the pool fails over to the next offer, and says why;
# - no key anywhere: the message names RUNPOD_API_KEY and runpodctl's config file.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export RUNPOD_API_KEY=$SIM_TOKEN KITE_RUNPOD_API_URL="$SIM_URL/runpod/v1"
SNAPSHOT="$KITE_SOURCE_DIR/../shared/catalogs/runpod-vms.csv"

rp() { curl -s "$SIM_URL/_sim/runpod/state" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
rp_live() { sim_num '["runpod_pods"]'; }
rp_pods() { rp 's["pods"]'; }
ready_count() {
  kite status --json "$1" 2>/dev/null | python3 -c "
import json,sys
[p] = [p for p in json.load(sys.stdin)['pools'] if p['name']=='$1']
print(sum(1 for n in p.get('nodes',[]) if n.get('state')=='READY'))"
}
created_more_than() { [ "$(sim_num '["created"]')" -gt "$1" ]; }
whole() { [ "$(ready_count "$1")" = "$2" ]; }

log "the catalog: none from the API, the snapshot once imported"
run_kite "$T_DIR/out" "$T_DIR/err" offers --provider runpod --refresh
expect_grep "$T_DIR/err" "kite offers --import" "kite says how to get RunPod's prices"
run_kite "$T_DIR/out" "$T_DIR/err" offers --import "$SNAPSHOT" --provider runpod --date 2025-06-01
expect_rc 0 "kite offers --import of the RunPod snapshot"
run_kite "$T_DIR/out" "$T_DIR/err" offers --provider runpod --accelerator RTX4090:1 --region RO
expect_rc 0 "kite offers of the snapshot"
expect_grep "$T_DIR/out" "1x_RTX4090_SECURE" "the snapshot's RTX 4090 offer is listed"

log "kite run of 4 pods with an RTX 4090 each, in Romania"
a=$(pool_name rp-run)
cat >"$T_DIR/a.yaml" <<YAML
name: $a
provider: runpod
nodes: 4
region: RO
resources: {accelerators: "RTX4090:1"}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
run: echo "rank \$KITE_NODE_RANK of \$KITE_NUM_NODES on runpod"
YAML
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/a.yaml"
expect_rc 0 "kite run"
for r in 0 1 2 3; do
  expect_grep "$T_DIR/out" "^\[$r\] rank $r of 4 on runpod" "rank $r's line"
done
[ "$(rp_live)" = 0 ] || fail "pods left after kite run: $(rp_pods)"
[ "$(sim_num '["created"]')" = 4 ] || fail "kite run created $(sim_num '["created"]') pods, not 4"

log "an interruptible pool: an interrupted pod is replaced and its rank's command runs again"
b=$(pool_name rp-spot)
cat >"$T_DIR/b.yaml" <<YAML
name: $b
provider: runpod
nodes: 2
region: RO
resources: {accelerators: "RTX4090:1", spot: true}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {preempt_interval: 1s, health_interval: 1s}
replace: {on_preemption: true}
YAML
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/b.yaml"
expect_rc 0 "kite up of an interruptible pool"
[ "$(rp 'sum(1 for p in s["pods"] if p["interruptible"])')" = 2 ] || fail "the pods are not interruptible: $(rp_pods)"
victim=$(rp 's["pods"][0]["id"]')
bg_kite "$T_DIR/x.out" "$T_DIR/x.err" exec --retries 3 "$b" 'sleep 4; echo "done on $KITE_NODE_RANK"'
sleep 1.5
curl -s -X POST "$SIM_URL/_sim/runpod/pods/$victim/interrupt" >/dev/null
wait_bg
expect_rc 0 "kite exec with retries across an interrupted pod"
expect_grep "$T_DIR/x.out" "done on 0" "rank 0's line"
expect_grep "$T_DIR/x.out" "done on 1" "rank 1's line"
wait_for 90 created_more_than 6 || fail "no replacement pod was created"
wait_for 90 whole "$b" 2 || fail "the pool is not whole again: $(kite status "$b" 2>&1)"
run_kite "$T_DIR/out" "$T_DIR/err" down "$b"
expect_rc 0 "kite down of the interruptible pool"
[ "$(rp_live)" = 0 ] || fail "pods left after kite down: $(rp_pods)"

log "a GPU type whose pods never run: the pool fails over"
c=$(pool_name rp-failover)
cat >"$T_DIR/c.yaml" <<YAML
name: $c
provider: runpod
nodes: 1
region: RO
resources: {accelerators: {RTXA6000: 1, RTX4090: 1}}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
run: echo "landed"
YAML
curl -s -X POST -d '{"status": "EXITED"}' "$SIM_URL/_sim/runpod/gpu-types/NVIDIA%20RTX%20A6000/fail" >/dev/null
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/c.yaml"
expect_rc 0 "kite run with a failing cheapest GPU type"
expect_grep "$T_DIR/out" "landed" "the command ran on the next offer"
expect_grep "$T_DIR/err" "will never run" "kite says why it moved on"
expect_grep "$T_DIR/err" "1x_RTX4090_SECURE" "kite names the offer it moved to"
[ "$(rp_live)" = 0 ] || fail "pods left after the failover: $(rp_pods)"

log "no key anywhere"
e=$(pool_name rp-nokey)
sed "s/^name: .*/name: $e/" "$T_DIR/a.yaml" >"$T_DIR/e.yaml"
before=$(sim_num '["created"]')
env -u RUNPOD_API_KEY HOME="$T_DIR/emptyhome" kite run --plain "$T_DIR/e.yaml" >"$T_DIR/out" 2>"$T_DIR/err"
RC=$?
[ "$RC" != 0 ] || fail "kite run without a key succeeded"
expect_grep "$T_DIR/err" "RUNPOD_API_KEY" "the message names RUNPOD_API_KEY"
expect_grep "$T_DIR/err" "config.toml" "the message names runpodctl's config file"
[ "$(sim_num '["created"]')" = "$before" ] || fail "a pod was created without a key"
