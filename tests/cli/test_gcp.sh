#!/usr/bin/env bash
# A user's Compute Engine session on the emulator's GCP front, credentials as Google's tools
# find them: GOOGLE_APPLICATION_CREDENTIALS names a service-account key (a fresh RSA key; the
# emulator verifies the JWT kite signs with it), GOOGLE_CLOUD_PROJECT the project, nothing of
# either in the spec.
# - `kite run` runs a command on two VMs and prints each rank; nothing is left.
# - A `kite up` pool whose owner is killed (SIGKILL) is taken down by `kite down` from a shell
#   without KITE_GCP_API_URL (the reach record names the endpoint); every VM is confirmed gone.
# - `region: [us-central1-a, us-central1-b]` with us-central1-a out of capacity
#   (ZONE_RESOURCE_POOL_EXHAUSTED): the pool lands in us-central1-b, and says so.
# - A spot pool: a VM's metadata server says preempted; the node is replaced and the pool is
#   whole again.
# - A key the account does not know fails with the file's name, prints no key, leaves nothing.
. "$(dirname "$0")/lib.sh"
export KITE_CLOUDSIM_GCP_KEY_FILE="$T_DIR/sa.json"
start_sim
U=$(node_user)
PROJECT=kite-cli-project

# write_key FILE: a service-account key file with a fresh RSA key, token_uri the emulator's.
write_key() {
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T_DIR/k.pem" 2>/dev/null ||
    die "openssl genpkey failed"
  python3 - "$1" "$T_DIR/k.pem" "$SIM_URL/token" "$PROJECT" <<'PY'
import json, os, sys
out, pem, uri, project = sys.argv[1:]
key = {"type": "service_account", "project_id": project, "private_key_id": "c0ffee01",
       "private_key": open(pem).read(), "client_email": "kite@%s.iam.gserviceaccount.com" % project,
       "client_id": "4242", "token_uri": uri}
fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(key).encode())
os.close(fd)
PY
}
write_key "$T_DIR/sa.json"
export GOOGLE_APPLICATION_CREDENTIALS="$T_DIR/sa.json" GOOGLE_CLOUD_PROJECT=$PROJECT
export KITE_GCP_API_URL="$SIM_URL/compute/v1" KITE_GCP_BILLING_URL="$SIM_URL/v1"
unset CLOUDSDK_CONFIG CLOUDSDK_CORE_PROJECT GCE_METADATA_HOST

spec() { # NAME FILE [EXTRA-LINES]
  cat >"$2" <<YAML
name: $1
provider: gcp
nodes: 2
provider_options: {ssh_user: $U, ssh_port: 2222, metadata_endpoint: "http://{address}:8170"}
monitors: {enabled: false}
deadman: {enabled: false}
run: echo "rank \$KITE_NODE_RANK of \$KITE_NUM_NODES on gcp"
${3:-}
YAML
}
gcp() { curl -s "$SIM_URL/_sim/gcp/state" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
gcp_live() { gcp 's["live"]'; }
gcp_vms() { gcp 's["instances"]'; }

log "kite run on two Compute Engine VMs, credentials from GOOGLE_APPLICATION_CREDENTIALS"
a=$(pool_name gcp-run)
spec "$a" "$T_DIR/a.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/a.yaml"
expect_rc 0 "kite run"
expect_grep "$T_DIR/out" "^\[0\] rank 0 of 2 on gcp" "rank 0's line"
expect_grep "$T_DIR/out" "^\[1\] rank 1 of 2 on gcp" "rank 1's line"
expect_grep "$T_DIR/err" "closed: every instance terminated" "kite run says the pool closed"
[ "$(gcp_live)" = 0 ] || fail "VMs left after kite run: $(gcp_vms)"
[ "$(sim_num '["created"]')" = 2 ] || fail "kite run created $(sim_num '["created"]') VMs, not 2"
expect_no_grep "$T_DIR/err" "PRIVATE KEY" "no key in kite's output"

log "kite up, owner killed, kite down from a shell without KITE_GCP_API_URL"
b=$(pool_name gcp-killed)
spec "$b" "$T_DIR/b.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/b.yaml"
expect_rc 0 "kite up"
[ "$(gcp_live)" = 2 ] || fail "kite up: $(gcp_live) VMs live, not 2"
pid=$(owner_pid "$b")
[ -n "$pid" ] && [ "$pid" != 0 ] || die "no owner pid in kite status"
kill -KILL "$pid"
wait_for 10 sh -c "! kill -0 $pid 2>/dev/null" || fail "the owner did not die"
[ "$(gcp_live)" = 2 ] || fail "the VMs did not outlive their owner: $(gcp_live) live"
kite status --orphans >"$T_DIR/orph" 2>&1
[ "$(grep -c "kite-pool\|$b" "$T_DIR/orph")" -ge 1 ] || fail "kite status --orphans does not list the dead owner's VMs: $(cat "$T_DIR/orph")"
env -i PATH="$PATH" HOME="$HOME" KITE_HOME="$KITE_HOME" \
  GOOGLE_APPLICATION_CREDENTIALS="$GOOGLE_APPLICATION_CREDENTIALS" \
  kite down "$b" >"$T_DIR/down.out" 2>"$T_DIR/down.err"
RC=$?
expect_rc 0 "kite down from a shell without the API URL or the project"
expect_grep "$T_DIR/down.out" "is down" "kite down says the pool is down"
[ "$(grep -c "terminated (confirmed by the provider)" "$T_DIR/down.out")" = 2 ] ||
  fail "kite down did not confirm both VMs: $(cat "$T_DIR/down.out" "$T_DIR/down.err")"
[ "$(gcp_live)" = 0 ] || fail "VMs left after kite down: $(gcp_vms)"
[ "$(gcp_vms)" = "[]" ] || fail "the emulator still lists VMs: $(gcp_vms)"
[ "$(node_procs "kite-pool-$b")" = 0 ] || fail "processes of the killed pool's VMs still run"

log "a zone out of capacity: the pool lands in the next zone of the list"
curl -s -X POST -d '{"front": "gcp", "region": "us-central1-a", "type": "*", "available": 0}' \
  "$SIM_URL/_sim/capacity" >/dev/null
c=$(pool_name gcp-zone)
spec "$c" "$T_DIR/c.yaml" "region: [us-central1-a, us-central1-b]
resources: {cpus: 2, memory: 4GB}"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/c.yaml"
expect_rc 0 "kite run with us-central1-a out of capacity"
expect_grep "$T_DIR/err" "gcp/us-central1/us-central1-a/e2-medium refused the launch (KITE_ECAPACITY); trying gcp/us-central1/us-central1-b/e2-medium" "the failover is said"
expect_grep "$T_DIR/err" "ZONE_RESOURCE_POOL_EXHAUSTED" "Compute Engine's reason is shown"
[ "$(instance_fields "$c" 'i["zone"]' | tr '\n' ' ')" = "us-central1-b us-central1-b " ] ||
  fail "the pool did not land in us-central1-b: $(instance_fields "$c" 'i["zone"]')"
[ "$(gcp_live)" = 0 ] || fail "VMs left after the failover run: $(gcp_vms)"
curl -s -X POST -d '{"front": "gcp", "region": "us-central1-a", "type": "*", "available": -1}' \
  "$SIM_URL/_sim/capacity" >/dev/null

log "a spot pool: a preempted VM is replaced"
d=$(pool_name gcp-spot)
cat >"$T_DIR/d.yaml" <<YAML
name: $d
provider: gcp
nodes: 2
resources: {spot: true}
provider_options: {ssh_user: $U, ssh_port: 2222, metadata_endpoint: "http://{address}:8170"}
monitors: {preempt_interval: 1s}
replace: {on_preemption: true}
deadman: {enabled: false}
YAML
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/d.yaml"
expect_rc 0 "kite up of a spot pool"
[ "$(gcp 'sum(1 for v in s["instances"] if v["spot"])')" = 2 ] || fail "the VMs are not spot: $(gcp_vms)"
vm=$(gcp '"%s/%s" % (s["instances"][0]["zone"], s["instances"][0]["name"])')
before=$(sim_num '["created"]')
# A 10 s notice (Compute Engine gives about 30 s): a loaded machine's 1 s checks still see it.
curl -s -X POST "$SIM_URL/_sim/gcp/instances/$vm/preempt?notice_ms=10000" >/dev/null
wait_for 60 sh -c "kite events --no-follow '$d' 2>/dev/null | grep -q '\"type\":\"node_preempting\"'" ||
  fail "no node_preempting event after the metadata server said preempted"
wait_for 90 sh -c "[ \"\$(curl -s '$SIM_URL/_sim/state' | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"created\"])')\" -gt $before ]" ||
  fail "no replacement VM was created"
wait_for 90 sh -c "[ \"\$(kite status --json '$d' 2>/dev/null | python3 -c \"
import json,sys
[p] = [p for p in json.load(sys.stdin)['pools'] if p['name']=='$d']
print(sum(1 for n in p.get('nodes',[]) if n.get('state')=='READY'))\")\" = 2 ]" ||
  fail "the spot pool is not whole again: $(kite status "$d" 2>&1)"
run_kite "$T_DIR/out" "$T_DIR/err" down "$d"
expect_rc 0 "kite down of the spot pool"
[ "$(gcp_live)" = 0 ] || fail "VMs left after kite down: $(gcp_vms)"

log "a key the account does not know"
write_key "$T_DIR/other.json"
e=$(pool_name gcp-badkey)
spec "$e" "$T_DIR/e.yaml"
GOOGLE_APPLICATION_CREDENTIALS="$T_DIR/other.json" run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/e.yaml"
expect_rc 1 "kite run with another key"
expect_grep "$T_DIR/err" "other.json" "the message names the key file"
expect_no_grep "$T_DIR/err" "PRIVATE KEY" "the key is not printed"
expect_no_grep "$T_DIR/out" "PRIVATE KEY" "the key is not printed"
[ "$(gcp_live)" = 0 ] || fail "another key left VMs: $(gcp_vms)"

log "GPUs: a T4 attached to an N1 VM, an A100 that comes with its A2 type"
f=$(pool_name gcp-t4)
spec "$f" "$T_DIR/f.yaml" 'region: us-central1
resources: {accelerators: "T4:1"}'
run_kite "$T_DIR/plan" "$T_DIR/err" run --dry-run "$T_DIR/f.yaml"
expect_rc 0 "kite run --dry-run of a T4 pool"
expect_grep "$T_DIR/plan" "^  0  *gcp  *us-central1  *us-central1-[abc]  *n1-standard-4+T4:1 " "the plan puts a T4 on n1-standard-4"
expect_grep "$T_DIR/plan" "^failover order: gcp/us-central1/us-central1-[abc]/n1-standard-4+T4:1 " "the failover order names the GPUs"
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/f.yaml"
expect_rc 0 "kite up of a T4 pool"
[ "$(gcp '" ".join(sorted(v["machine_type"] + "+" + v["accelerators"] + "+" + v["on_host_maintenance"] for v in s["instances"]))')" = \
  "n1-standard-4+nvidia-tesla-t4:1+TERMINATE n1-standard-4+nvidia-tesla-t4:1+TERMINATE" ] ||
  fail "the VMs do not have one T4 each, stopping for maintenance: $(gcp_vms)"
run_kite "$T_DIR/out" "$T_DIR/err" exec "$f" -- echo gpu-node-ok
expect_grep "$T_DIR/out" "gpu-node-ok" "the GPU nodes run commands"
run_kite "$T_DIR/out" "$T_DIR/err" down "$f"
expect_rc 0 "kite down of the T4 pool"
[ "$(gcp_live)" = 0 ] || fail "VMs left: $(gcp_vms)"
g=$(pool_name gcp-a100)
spec "$g" "$T_DIR/g.yaml" 'resources: {accelerators: A100}'
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/g.yaml"
expect_rc 0 "kite run on A100s"
expect_grep "$T_DIR/out" "^\[1\] rank 1 of 2 on gcp" "the A100 pool ran"
[ "$(instance_fields "$g" 'i["type"]' | sort -u)" = a2-highgpu-1g ] ||
  fail "the A100 pool is not on a2-highgpu-1g: $(instance_fields "$g" 'i["type"]')"
h=$(pool_name gcp-nogpu)
spec "$h" "$T_DIR/h.yaml" 'resources: {instance_type: e2-standard-2, accelerators: T4}'
run_kite "$T_DIR/out" "$T_DIR/err" run --dry-run "$T_DIR/h.yaml"
expect_rc 2 "a plan of an e2 type with a T4"
expect_grep "$T_DIR/err" "no offer fits resources (e2-standard-2, T4:1, on-demand)" "the refusal says what was asked"
expect_grep "$T_DIR/err" "gcp us-central1 n1-standard-4+T4:1 (not e2-standard-2)" "the refusal shows the closest offers, GPUs and all"
[ "$(gcp_live)" = 0 ] || fail "VMs left: $(gcp_vms)"
