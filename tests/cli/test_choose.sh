#!/usr/bin/env bash
# Choosing and paying, as a user does it on the emulator's DigitalOcean and Hetzner fronts:
# `kite run --dry-run` picks the cheapest offer that fits the resources (checked against the
# emulator's own catalog, read and filtered here independently), a region out of capacity
# sends the pool to the next region, a provider at its account limit sends the rest of the pool
# to another provider, a plan above max_hourly_cost and resources nothing sells are refused
# before anything is launched, and max_total_cost closes a pool. Nothing is left running.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export DIGITALOCEAN_TOKEN=$SIM_TOKEN KITE_DO_API_URL="$SIM_URL"
export HCLOUD_TOKEN=$SIM_TOKEN KITE_HETZNER_API_URL="$SIM_URL/v1"
unset DIGITALOCEAN_CONFIG HCLOUD_CONFIG HCLOUD_CONTEXT

spec() { # NAME FILE NODES PLACE-LINES RESOURCES [EXTRA]
  cat >"$2" <<YAML
name: $1
nodes: $3
$4
resources: $5
monitors: {enabled: false}
deadman: {enabled: false}
run: echo "rank \$KITE_NODE_RANK"
${6:-}
YAML
}
live() { sim_num "['machines'].__len__()" 2>/dev/null || echo "?"; }

log "kite run --dry-run: the cheapest DigitalOcean size with 4 vCPUs and 8 GB"
a=$(pool_name choose-do)
spec "$a" "$T_DIR/a.yaml" 3 "provider: digitalocean
provider_options: {ssh_user: $U, ssh_port: 2222}" "{cpus: 4, memory: 8GB}"
run_kite "$T_DIR/plan.json" "$T_DIR/err" run --dry-run --json "$T_DIR/a.yaml"
expect_rc 0 "kite run --dry-run --json"
curl -s -H "Authorization: Bearer $SIM_TOKEN" "$SIM_URL/v2/sizes?per_page=200" >"$T_DIR/sizes.json"
python3 - "$T_DIR/plan.json" "$T_DIR/sizes.json" <<'PY' || fail "the plan is not the cheapest size that fits"
import json, sys
plan = json.load(open(sys.argv[1]))
sizes = json.load(open(sys.argv[2]))["sizes"]
fits = sorted((s["price_hourly"], r, s["slug"]) for s in sizes if s["available"]
              and s["vcpus"] >= 4 and s["memory"] >= 8192 for r in s["regions"])
price, region, slug = fits[0]
assert len(plan["ranks"]) == 3, plan
for r in plan["ranks"]:
    assert (r["provider"], r["region"], r["instance_type"]) == ("digitalocean", region, slug), (r, fits[0])
    assert abs(r["price"] - price) < 1e-9 and not r["spot"], r
assert abs(plan["hourly"] - 3 * price) < 1e-9, plan
assert [(c["price"], c["region"], c["instance_type"]) for c in plan["candidates"]] == \
       [(p, r, s) for p, r, s in fits][:len(plan["candidates"])], plan["candidates"]
PY
run_kite "$T_DIR/plan.txt" "$T_DIR/err" run --dry-run "$T_DIR/a.yaml"
expect_rc 0 "kite run --dry-run"
expect_grep "$T_DIR/plan.txt" "^plan for pool $a: 3 nodes, \\\$0\\.2143/h in all$" "the plan's hourly cost"
expect_grep "$T_DIR/plan.txt" "^  2  *digitalocean  *nyc1 .* s-4vcpu-8gb .* no  *0\\.0714  *api, " "rank 2's offer and where its price comes from"
expect_grep "$T_DIR/plan.txt" "^failover order: digitalocean/nyc1/s-4vcpu-8gb \\\$0\\.0714; digitalocean/nyc2/" "the failover order"
[ "$(live)" = 0 ] || fail "a dry run launched something"

log "a region out of capacity: the pool lands in the next one"
curl -s -X POST -d '{"front": "digitalocean", "region": "nyc1", "type": "*", "available": 0}' \
  "$SIM_URL/_sim/capacity" >/dev/null
b=$(pool_name choose-region)
spec "$b" "$T_DIR/b.yaml" 2 "provider: digitalocean
region: [nyc1, sfo3]
provider_options: {ssh_user: $U, ssh_port: 2222}" "{cpus: 1, memory: 1GB}"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/b.yaml"
expect_rc 0 "kite run with nyc1 out of capacity"
expect_grep "$T_DIR/err" "refused the launch (KITE_ECAPACITY); trying digitalocean/sfo3/s-1vcpu-1gb" "the failover is said"
[ "$(instance_fields "$b" 'i["region"]' | tr '\n' ' ')" = "sfo3 sfo3 " ] ||
  fail "the pool did not land in sfo3: $(instance_fields "$b" 'i["region"]')"
curl -s -X POST -d '{"front": "digitalocean", "region": "nyc1", "type": "*", "available": -1}' \
  "$SIM_URL/_sim/capacity" >/dev/null

log "a provider at its account limit: the rest of the pool goes to another provider"
sim_faults '{"droplet_limit": 1}'
c=$(pool_name choose-provider)
spec "$c" "$T_DIR/c.yaml" 2 "provider: [digitalocean, hetzner]
provider_options:
  digitalocean: {ssh_user: $U, ssh_port: 2222}
  hetzner: {ssh_user: $U, ssh_port: 2222}" "{cpus: 2, memory: 4GB}"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/c.yaml"
expect_rc 0 "kite run with the cheapest provider at its limit"
expect_grep "$T_DIR/err" "(KITE_EQUOTA); trying " "the quota failover is said"
run_kite "$T_DIR/cost.json" "$T_DIR/err2" cost --json "$c"
python3 - "$T_DIR/cost.json" <<'PY' || fail "the pool is not on two providers"
import json, sys
[pool] = json.load(open(sys.argv[1]))["pools"]
provs = sorted((p["provider"], len(p["instances"])) for p in pool["providers"])
assert provs == [("digitalocean", 1), ("hetzner", 1)], provs
PY
sim_faults '{"droplet_limit": 25}'

log "refused before anything is launched: a ceiling, and resources nobody sells"
d=$(pool_name choose-ceiling)
spec "$d" "$T_DIR/d.yaml" 4 "provider: digitalocean
max_hourly_cost: 0.1" "{cpus: 4, memory: 8GB}"
run_kite "$T_DIR/out" "$T_DIR/err" run --dry-run "$T_DIR/d.yaml"
expect_rc 2 "a plan above max_hourly_cost"
expect_grep "$T_DIR/err" "the cheapest plan costs \\\$0\\.2857/h for 4 nodes .* above max_hourly_cost \\\$0\\.1000" "the ceiling's message"
run_kite "$T_DIR/out" "$T_DIR/err" run "$T_DIR/d.yaml"
expect_rc 1 "kite run above max_hourly_cost"
expect_grep "$T_DIR/err" "above max_hourly_cost" "kite run says why"
e=$(pool_name choose-none)
spec "$e" "$T_DIR/e.yaml" 1 "provider: digitalocean" "{accelerators: A100:8}"
run_kite "$T_DIR/out" "$T_DIR/err" run --dry-run "$T_DIR/e.yaml"
expect_rc 2 "resources nothing sells"
expect_grep "$T_DIR/err" "no offer fits resources (A100:8, on-demand) on digitalocean; the closest of [0-9]* offers there: digitalocean tor1 gpu-h100x1-80gb+H100:1 (has H100:1); digitalocean tor1 gpu-h100x8-640gb+H100:8 (has H100:8)" "the closest offers and what made each miss"
[ "$(live)" = 0 ] || fail "a refused plan launched something"

log "max_total_cost closes the pool"
f=$(pool_name choose-budget)
spec "$f" "$T_DIR/f.yaml" 1 "provider: digitalocean
region: nyc3
provider_options: {ssh_user: $U, ssh_port: 2222}
max_total_cost: 0.0001" "{instance_type: s-1vcpu-1gb}" "monitors: {enabled: false, cost_interval: 1s}"
sed -i 's/^run: .*/run: sleep 60/; /^monitors: {enabled: false}$/d' "$T_DIR/f.yaml"
start=$(date +%s)
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/f.yaml"
expect_rc 1 "kite run over max_total_cost"
[ $(($(date +%s) - start)) -lt 45 ] || fail "the pool was not closed by its budget"
expect_grep "$T_DIR/err" "reaching max_total_cost \\\$0\\.0001: closing it" "the budget's message"


log "AWS: the cheapest type with 2 vCPUs and 4 GiB in us-east-1; spot-if-available"
export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN
aws_place="provider: aws
region: us-east-1
image: ami-0kite0test0image
provider_options: {endpoint: \"$SIM_URL/\", pricing_endpoint: \"$SIM_URL/\", ssh_user: $U, ssh_port: 2222}"
g=$(pool_name choose-aws)
spec "$g" "$T_DIR/g.yaml" 2 "$aws_place" "{cpus: 2, memory: 4GB}"
run_kite "$T_DIR/plan.json" "$T_DIR/err" run --dry-run --json "$T_DIR/g.yaml"
expect_rc 0 "kite run --dry-run --json on AWS"
curl -s "$SIM_URL/_sim/ec2/catalog" >"$T_DIR/ec2.json"
python3 - "$T_DIR/plan.json" "$T_DIR/ec2.json" on-demand <<'PY' || fail "the AWS plan is not the cheapest type that fits"
import json, sys
plan = json.load(open(sys.argv[1]))
types = json.load(open(sys.argv[2]))["us-east-1"]
fits = [t for t in types if t["vcpus"] >= 2 and t["memory_mib"] >= 4096 and not t.get("gpu")]
if sys.argv[3] == "spot":
    best = min((p, t["instance_type"]) for t in fits for z, p in t["spot"].items())
else:
    best = min((t["price"], t["instance_type"]) for t in fits if t["price"] is not None)
for r in plan["ranks"]:
    assert (r["instance_type"], r["spot"]) == (best[1], sys.argv[3] == "spot"), (r, best)
    assert abs(r["price"] - best[0]) < 1e-9, (r, best)
PY
h=$(pool_name choose-spot)
spec "$h" "$T_DIR/h.yaml" 1 "$aws_place" "{cpus: 2, memory: 4GB, allocation: spot-if-available}"
run_kite "$T_DIR/plan.json" "$T_DIR/err" run --dry-run --json "$T_DIR/h.yaml"
python3 - "$T_DIR/plan.json" "$T_DIR/ec2.json" spot <<'PY' || fail "spot-if-available does not plan spot first"
import json, sys
plan = json.load(open(sys.argv[1]))
types = json.load(open(sys.argv[2]))["us-east-1"]
fits = [t for t in types if t["vcpus"] >= 2 and t["memory_mib"] >= 4096 and not t.get("gpu")]
best = min((p, t["instance_type"]) for t in fits for z, p in t["spot"].items())
[r] = plan["ranks"]
assert r["spot"] and r["instance_type"] == best[1] and abs(r["price"] - best[0]) < 1e-9, (r, best)
assert any(not c["spot"] for c in plan["candidates"]), "no on-demand candidate to fall back to"
PY
curl -s -X POST -d '{"front": "ec2", "region": "us-east-1", "type": "*", "market": "spot", "available": 0}' \
  "$SIM_URL/_sim/capacity" >/dev/null
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/h.yaml"
expect_rc 0 "kite run, spot-if-available, with no spot capacity"
expect_grep "$T_DIR/err" " spot refused the launch (KITE_ECAPACITY); trying aws/us-east-1/.*" "the fall back to on-demand is said"
run_kite "$T_DIR/cost.json" "$T_DIR/err2" cost --json "$h"
python3 - "$T_DIR/cost.json" <<'PY' || fail "spot-if-available did not fall back to on-demand"
import json, sys
[pool] = json.load(open(sys.argv[1]))["pools"]
insts = [i for p in pool["providers"] for i in p["instances"]]
assert len(insts) == 1 and not insts[0]["spot"] and insts[0]["price_hourly"] > 0, insts
PY
curl -s -X POST -d '{"front": "ec2", "region": "us-east-1", "type": "*", "market": "spot", "available": -1}' \
  "$SIM_URL/_sim/capacity" >/dev/null

log "provider: any: the configured providers that boot without an image of their own"
y=$(pool_name choose-any)
spec "$y" "$T_DIR/y.yaml" 2 "provider: any" "{cpus: 2, memory: 4GB}"
run_kite "$T_DIR/plan.json" "$T_DIR/err" run --dry-run --json "$T_DIR/y.yaml"
expect_rc 0 "kite run --dry-run, provider: any"
curl -s -H "Authorization: Bearer $SIM_TOKEN" "$SIM_URL/v1/server_types?per_page=50" >"$T_DIR/types.json"
python3 - "$T_DIR/plan.json" "$T_DIR/sizes.json" "$T_DIR/types.json" <<'PY' || fail "provider: any did not choose the cheapest of DigitalOcean and Hetzner"
import json, sys
plan = json.load(open(sys.argv[1]))
sizes = json.load(open(sys.argv[2]))["sizes"]
types = json.load(open(sys.argv[3]))["server_types"]
fits = [(s["price_hourly"], "digitalocean") for s in sizes
        if s["available"] and s["vcpus"] >= 2 and s["memory"] >= 4096]
fits += [(float(p["price_hourly"]["gross"]), "hetzner") for t in types if not t.get("deprecated")
         and t["cores"] >= 2 and t["memory"] >= 4 for p in t["prices"]]
best = min(fits)
assert {c["provider"] for c in plan["candidates"]} <= {"digitalocean", "hetzner"}, plan["candidates"]
for r in plan["ranks"]:
    assert r["provider"] == best[1] and abs(r["price"] - best[0]) < 1e-9, (r, best)
PY

log "a replacement that finds its region out of capacity fails over too"
r=$(pool_name choose-replace)
cat >"$T_DIR/r.yaml" <<YAML
name: $r
provider: digitalocean
nodes: 1
region: [nyc1, sfo3]
provider_options: {ssh_user: $U, ssh_port: 2222}
resources: {cpus: 1, memory: 1GB}
replace: {on_preemption: true}
monitors: {health_interval: 1s, health_timeout: 2s, health_failures: 2}
deadman: {enabled: false}
YAML
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/r.yaml"
expect_rc 0 "kite up in nyc1"
insts() { kite cost --json "$r" 2>/dev/null | python3 -c "
import json,sys
[pool] = json.load(sys.stdin)['pools']
for p in pool['providers']:
    for i in p['instances']:
        print(i['id'], i['region'], i['end'] or 'running')"; }
first=$(insts | awk '$2 == "nyc1" {print $1}')
[ -n "$first" ] || fail "the pool did not start in nyc1: $(insts)"
curl -s -X POST -d '{"front": "digitalocean", "region": "nyc1", "type": "*", "available": 0}' \
  "$SIM_URL/_sim/capacity" >/dev/null
curl -s -X POST -d '{}' "$SIM_URL/_sim/machines/$first/kill" >/dev/null
wait_for 90 sh -c "kite status '$r' 2>/dev/null | grep -q ' READY ' && [ \"\$(kite cost --json '$r' 2>/dev/null | python3 -c \"
import json,sys
[pool] = json.load(sys.stdin)['pools']
print(sum(1 for p in pool['providers'] for i in p['instances'] if i['region'] == 'sfo3'))\")\" = 1 ]" ||
  fail "the replacement did not come up in sfo3: $(insts)"
run_kite "$T_DIR/out" "$T_DIR/err" down "$r"
expect_rc 0 "kite down after the replacement"
curl -s -X POST -d '{"front": "digitalocean", "region": "nyc1", "type": "*", "available": -1}' \
  "$SIM_URL/_sim/capacity" >/dev/null

log "nothing is left running"
wait_for 30 test "$(live)" = 0 || fail "machines left: $(sim_state)"
