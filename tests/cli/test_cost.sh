#!/usr/bin/env bash
# What pools cost, as a user sees it on the emulator's DigitalOcean front: after `kite run` on
# two droplets, `kite cost` and `kite cost --json` show each droplet (rank, type, region, price,
# billable time, cost, why it ended) and the pool's total, which agrees with the emulator's own
# bill (GET /_sim/bill); `kite status` of a pool that is up shows its rate per hour.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export DIGITALOCEAN_TOKEN=$SIM_TOKEN KITE_DO_API_URL="$SIM_URL"
unset DIGITALOCEAN_CONFIG

spec() { # NAME FILE NODES
  cat >"$2" <<YAML
name: $1
provider: digitalocean
nodes: $3
region: nyc3
resources: {instance_type: s-1vcpu-1gb}
provider_options: {ssh_user: $U, ssh_port: 2222}
monitors: {enabled: false}
deadman: {enabled: false}
run: sleep 1; echo "rank \$KITE_NODE_RANK"
YAML
}

log "kite run on two droplets, then kite cost"
a=$(pool_name do-cost)
spec "$a" "$T_DIR/a.yaml" 2
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/a.yaml"
expect_rc 0 "kite run"
curl -s "$SIM_URL/_sim/bill" >"$T_DIR/bill.json"
run_kite "$T_DIR/cost" "$T_DIR/err" cost "$a"
expect_rc 0 "kite cost"
expect_grep "$T_DIR/cost" "^pool $a: \\\$0\\.000[0-9]* (2 instances)$" "kite cost names the pool and its total"
expect_grep "$T_DIR/cost" "^  digitalocean: " "kite cost has the provider's total"
[ "$(grep -c " s-1vcpu-1gb .* nyc3 .* no .* 0\.00893 .* terminated$" "$T_DIR/cost")" = 2 ] ||
  { fail "kite cost does not show both droplets as bought and terminated"; cat "$T_DIR/cost" >&2; }
run_kite "$T_DIR/cost.json" "$T_DIR/err" cost --json "$a"
expect_rc 0 "kite cost --json"
python3 - "$T_DIR/cost.json" "$T_DIR/bill.json" <<'PY' || fail "kite cost --json disagrees with the emulator's bill"
import json, sys
cost = json.load(open(sys.argv[1]))
bill = json.load(open(sys.argv[2]))
[pool] = cost["pools"]
[prov] = pool["providers"]
assert prov["provider"] == "digitalocean", prov
insts = {i["id"]: i for i in prov["instances"]}
machines = {str(m["id"]): m for m in bill["machines"]}
assert set(insts) == set(machines), (insts.keys(), machines.keys())
second = 0.00893 / 3600
for mid, m in machines.items():
    i = insts[mid]
    assert i["type"] == m["size"] == "s-1vcpu-1gb" and i["region"] == m["region"] == "nyc3", (i, m)
    assert abs(i["price_hourly"] - m["price_hourly"]) < 1e-9, (i, m)
    assert i["end"] == "terminated" and i["ended_ms"] and not i["spot"], i
    assert i["rank"] in (0, 1), i
    # kite's bill runs from the create call's answer to the confirmation that the droplet is
    # gone, the emulator's from the create to the moment it is gone: within 2 billed seconds.
    assert abs(i["billable_s"] - m["billable_s"]) <= 2, (i, m)
    assert abs(i["cost"] - m["cost"]) <= 2 * second + 1e-12, (i, m)
assert bill["total"] > 0
assert abs(pool["cost"] - bill["total"]) <= 4 * second + 1e-12, (pool["cost"], bill["total"])
assert abs(cost["cost"] - pool["cost"]) < 1e-12 and pool["rate_hourly"] == 0, cost
print("kite %.9f, emulator %.9f" % (pool["cost"], bill["total"]), file=sys.stderr)
PY

log "kite status shows the rate of a pool that is up"
b=$(pool_name do-rate)
spec "$b" "$T_DIR/b.yaml" 2
run_kite "$T_DIR/out" "$T_DIR/err" up --plain "$T_DIR/b.yaml"
expect_rc 0 "kite up"
kite status >"$T_DIR/st" 2>&1
expect_grep "$T_DIR/st" "LIVE INSTANCES COST$" "kite status has a cost column"
expect_grep "$T_DIR/st" "^$b .* \\\$0\\.0179/h, \\\$0\\.0[0-9]* so far$" "kite status shows the pool's rate per hour"
kite status --json >"$T_DIR/st.json" 2>&1
python3 -c "
import json,sys
p=[p for p in json.load(open(sys.argv[1]))['pools'] if p['name']==sys.argv[2]][0]
assert abs(p['rate_hourly']-0.00893*2)<1e-9 and p['cost']>0, p" "$T_DIR/st.json" "$b" ||
  fail "kite status --json has no rate or cost"
run_kite "$T_DIR/cost" "$T_DIR/err" cost
expect_rc 0 "kite cost of every pool"
expect_grep "$T_DIR/cost" " running$" "a droplet still up is running"
expect_grep "$T_DIR/cost" "^total: " "kite cost of several pools has a grand total"
run_kite "$T_DIR/out" "$T_DIR/err" down "$b"
expect_rc 0 "kite down"

log "kite cost of a pool that does not exist"
run_kite "$T_DIR/out" "$T_DIR/err" cost no-such-pool-$$
expect_rc 1 "kite cost of an unknown pool"
expect_grep "$T_DIR/err" "there is no pool named no-such-pool" "the message names the pool"
