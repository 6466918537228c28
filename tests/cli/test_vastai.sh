#!/usr/bin/env bash
# A user's Vast.ai session on the emulator's Vast.ai front, with VAST_API_KEY and
# KITE_VASTAI_API_URL in the environment (nothing of either in the spec):
# - `kite run` of 4 nodes asking for an RTX 4090 runs on the offer that has it, prints every
#   rank, and leaves nothing;
# - an interruptible pool: one instance is outbid while a command with retries runs; the node
#   is replaced (the outbid instance destroyed) and the command's lost rank is run again;
# - the cheapest offer's instances never run (they exit): the pool fails over to the next
#   offer, and says why;
# - `provider: any` with an A100: Vast.ai's A100 is cheaper than Compute Engine's, so it
#   lands on Vast.ai;
# - no key anywhere: the message names VAST_API_KEY and the vastai command's key file, and
#   nothing is created.
. "$(dirname "$0")/lib.sh"
export KITE_CLOUDSIM_GCP_KEY_FILE="$T_DIR/sa.json"
start_sim
U=$(node_user)
export VAST_API_KEY=$SIM_TOKEN KITE_VASTAI_API_URL="$SIM_URL"
unset XDG_CONFIG_HOME

vast() { curl -s "$SIM_URL/_sim/vastai/state" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
vast_live() { sim_num '["vastai_instances"]'; }
vast_insts() { vast 's["instances"]'; }
ready_count() { # POOL: how many of its nodes are READY
  kite status --json "$1" 2>/dev/null | python3 -c "
import json,sys
[p] = [p for p in json.load(sys.stdin)['pools'] if p['name']=='$1']
print(sum(1 for n in p.get('nodes',[]) if n.get('state')=='READY'))"
}

log "kite run of 4 nodes with an RTX 4090 each"
a=$(pool_name va-run)
cat >"$T_DIR/a.yaml" <<YAML
name: $a
provider: vastai
nodes: 4
resources: {accelerators: "RTX_4090:1"}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
run: echo "rank \$KITE_NODE_RANK of \$KITE_NUM_NODES on vastai"
YAML
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/a.yaml"
expect_rc 0 "kite run"
for r in 0 1 2 3; do
  expect_grep "$T_DIR/out" "^\[$r\] rank $r of 4 on vastai" "rank $r's line"
done
expect_grep "$T_DIR/err" "closed: every instance terminated" "kite run says the pool closed"
[ "$(vast_live)" = 0 ] || fail "instances left after kite run: $(vast_insts)"
[ "$(sim_num '["created"]')" = 4 ] || fail "kite run created $(sim_num '["created"]') instances, not 4"
[ "$(vast 'len(s["ssh_keys"])')" = 1 ] || fail "kite's key is not registered once"
grep -q "3200101" "$T_DIR/sim/err" || fail "the RTX 4090 offer (3200101) was not the one taken"

log "an interruptible pool: an outbid instance is replaced and its rank's command runs again"
b=$(pool_name va-spot)
cat >"$T_DIR/b.yaml" <<YAML
name: $b
provider: vastai
nodes: 2
resources: {accelerators: "RTX_4090:1", spot: true}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {preempt_interval: 1s, health_interval: 1s}
replace: {on_preemption: true}
YAML
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/b.yaml"
expect_rc 0 "kite up of an interruptible pool"
[ "$(vast 'sum(1 for v in s["instances"] if v["is_bid"])')" = 2 ] ||
  fail "the instances are not interruptible: $(vast_insts)"
victim=$(vast 's["instances"][0]["id"]')
bg_kite "$T_DIR/x.out" "$T_DIR/x.err" exec --retries 3 "$b" 'sleep 4; echo "done on $KITE_NODE_RANK"'
sleep 1.5
curl -s -X POST "$SIM_URL/_sim/vastai/instances/$victim/outbid" >/dev/null
wait_bg
expect_rc 0 "kite exec with retries across an outbid instance"
expect_grep "$T_DIR/x.out" "done on 0" "rank 0's line"
expect_grep "$T_DIR/x.out" "done on 1" "rank 1's line"
created_more_than() { [ "$(sim_num '["created"]')" -gt "$1" ]; }
whole() { [ "$(ready_count "$1")" = "$2" ]; }
victim_gone() { [ "$(vast "sum(1 for v in s['instances'] if v['id'] == $1)")" = 0 ]; }
wait_for 90 created_more_than 6 || fail "no replacement instance was created"
wait_for 90 whole "$b" 2 || fail "the pool is not whole again: $(kite status "$b" 2>&1)"
kite events --no-follow "$b" >"$T_DIR/events" 2>&1
expect_grep "$T_DIR/events" '"type":"node_replaced"' "the events show the replacement"
wait_for 30 victim_gone "$victim" || fail "the outbid instance was not destroyed: $(vast_insts)"
run_kite "$T_DIR/out" "$T_DIR/err" down "$b"
expect_rc 0 "kite down of the interruptible pool"
[ "$(vast_live)" = 0 ] || fail "instances left after kite down: $(vast_insts)"

log "the cheapest offer's instances never run: the pool fails over to the next offer"
c=$(pool_name va-failover)
cat >"$T_DIR/c.yaml" <<YAML
name: $c
provider: vastai
nodes: 1
resources: {accelerators: {RTX_3090: 1, RTX_4090: 1}}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
run: echo "landed"
YAML
curl -s -X POST -d '{"status": "exited"}' "$SIM_URL/_sim/vastai/offers/3200103/fail" >/dev/null
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/c.yaml"
expect_rc 0 "kite run with a failing cheapest offer"
expect_grep "$T_DIR/out" "landed" "the command ran on the next offer"
expect_grep "$T_DIR/err" "will never run" "kite says why it moved on"
expect_grep "$T_DIR/err" "ask-3200101" "kite names the offer it moved to"
[ "$(vast_live)" = 0 ] || fail "instances left after the failover: $(vast_insts)"
curl -s -X POST -d '{"status": null}' "$SIM_URL/_sim/vastai/offers/3200103/fail" >/dev/null

log "provider: any with an A100 lands on Vast.ai, cheaper than Compute Engine's"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T_DIR/k.pem" 2>/dev/null ||
  die "openssl genpkey failed"
python3 - "$T_DIR/sa.json" "$T_DIR/k.pem" "$SIM_URL/token" <<'PY'
import json, os, sys
out, pem, uri = sys.argv[1:]
key = {"type": "service_account", "project_id": "kite-va", "private_key_id": "c0ffee02",
       "private_key": open(pem).read(), "client_email": "kite@kite-va.iam.gserviceaccount.com",
       "client_id": "4243", "token_uri": uri}
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(key).encode())
os.close(fd)
PY
d=$(pool_name va-any)
cat >"$T_DIR/d.yaml" <<YAML
name: $d
provider: any
nodes: 1
resources: {accelerators: "A100:1"}
provider_options:
  vastai: {ssh_user: $U, ssh_port: 2222}
  gcp: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
YAML
GOOGLE_APPLICATION_CREDENTIALS="$T_DIR/sa.json" GOOGLE_CLOUD_PROJECT=kite-va \
  KITE_GCP_API_URL="$SIM_URL/compute/v1" KITE_GCP_BILLING_URL="$SIM_URL/v1" \
  run_kite "$T_DIR/out" "$T_DIR/err" run --dry-run "$T_DIR/d.yaml"
expect_rc 0 "kite run --dry-run of provider: any"
expect_grep "$T_DIR/out" "vastai" "the plan names Vast.ai"
expect_grep "$T_DIR/out" "gcp" "Compute Engine was considered too"
GOOGLE_APPLICATION_CREDENTIALS="$T_DIR/sa.json" GOOGLE_CLOUD_PROJECT=kite-va \
  KITE_GCP_API_URL="$SIM_URL/compute/v1" KITE_GCP_BILLING_URL="$SIM_URL/v1" \
  run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/d.yaml"
expect_rc 0 "kite up of provider: any"
[ "$(instance_fields "$d" 'p["provider"]')" = vastai ] ||
  fail "the A100 pool did not land on Vast.ai: $(kite cost "$d" 2>&1)"
[ "$(vast 'sum(1 for v in s["instances"] if v["offer"] == 3200104)')" = 1 ] ||
  fail "the A100 offer (3200104) was not taken: $(vast_insts)"
run_kite "$T_DIR/out" "$T_DIR/err" down "$d"
expect_rc 0 "kite down of the any pool"
[ "$(vast_live)" = 0 ] || fail "instances left: $(vast_insts)"

log "no key anywhere"
e=$(pool_name va-nokey)
sed "s/^name: .*/name: $e/" "$T_DIR/a.yaml" >"$T_DIR/e.yaml"
before=$(sim_num '["created"]')
env -u VAST_API_KEY HOME="$T_DIR/emptyhome" kite run --plain "$T_DIR/e.yaml" >"$T_DIR/out" 2>"$T_DIR/err"
RC=$?
[ "$RC" != 0 ] || fail "kite run without a key succeeded"
expect_grep "$T_DIR/err" "VAST_API_KEY" "the message names VAST_API_KEY"
expect_grep "$T_DIR/err" "vast_api_key" "the message names the vastai command's key file"
[ "$(sim_num '["created"]')" = "$before" ] || fail "an instance was created without a key"
