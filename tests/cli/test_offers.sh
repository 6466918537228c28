#!/usr/bin/env bash
# `kite offers`: snapshots of public price data imported (DigitalOcean's and Vast.ai's SkyPilot
# catalogs), then listed from the cache with filters, sorted by the price that applies, as a
# table and as JSON; nothing matching says which offers came closest and why; bad flags and bad
# files exit 2 saying what to do. Also times a listing of 10,000 cached offers (a figure, not
# an assertion).
. "$(dirname "$0")/lib.sh"
CAT="$KITE_SOURCE_DIR/../shared/catalogs"
[ -f "$CAT/digitalocean-vms.csv" ] || die "$CAT/digitalocean-vms.csv is missing (the public catalogs)"

run_kite "$T_DIR/o" "$T_DIR/e" offers
expect_rc 1 "kite offers with nothing cached"
expect_grep "$T_DIR/e" "no offers are known: import a snapshot (kite offers --import FILE" \
  "what to do when nothing is known"

run_kite "$T_DIR/o" "$T_DIR/e" offers --import "$CAT/digitalocean-vms.csv" --provider digitalocean \
  --date 2025-06-01
expect_rc 0 "import of DigitalOcean's catalog"
expect_grep "$T_DIR/o" "imported 38 offers of digitalocean" "the count imported"
run_kite "$T_DIR/o" "$T_DIR/e" offers --import "$CAT/vast-vms.csv" --provider vast --date 2025-05-20
expect_rc 0 "import of Vast.ai's catalog"
expect_grep "$T_DIR/o" "imported 67 offers of vast" "the count imported"

# The cheapest first, the table's columns, the snapshot's date as the age, the summary line.
run_kite "$T_DIR/o" "$T_DIR/e" offers --limit 0
expect_rc 0 "kite offers"
expect_grep "$T_DIR/o" "^PROVIDER  *REGION  *ZONE  *TYPE  *VCPUS  *MEMORY  *ACCEL  *\$/H  *SPOT \$/H  *AGE" \
  "the table's header"
expect_grep "$T_DIR/o" "^105 of 105 offers matched; from digitalocean snapshot digitalocean-vms.csv 2025-06-01 (38), vast snapshot vast-vms.csv 2025-05-20 (67)" \
  "the summary line names the counts and the sources"
expect_grep "$T_DIR/o" "snapshot 2025-05-20$" "a snapshot's age is its date"
expect_grep "$T_DIR/o" "France, FR, EU" "Vast.ai's free-text region as it is"
sed -n '2p' "$T_DIR/o" | grep -q "^digitalocean  *nyc1  *-  *s-4vcpu-8gb  *4  *8 GiB  *-  *0.07143  *-  " ||
  fail "the cheapest offer first: $(sed -n 2p "$T_DIR/o")"
awk 'NR > 1 && / snapshot [0-9-]*$/ { print $(NF-3) }' "$T_DIR/o" >"$T_DIR/prices"
sort -g -c "$T_DIR/prices" || fail "offers are not sorted by on-demand price"

# Filters: vCPUs, memory, accelerator (case-insensitive, a count), region, a price ceiling.
run_kite "$T_DIR/o" "$T_DIR/e" offers --provider digitalocean --cpus 8 --memory 32GB
expect_rc 0 "filter by vCPUs and memory"
expect_no_grep "$T_DIR/o" "s-4vcpu-8gb" "an offer with too few vCPUs is left out"
expect_no_grep "$T_DIR/o" "s-8vcpu-16gb" "an offer with too little memory is left out"
expect_grep "$T_DIR/o" "g-16vcpu-64gb" "an offer that fits is listed"
expect_grep "$T_DIR/o" "^20 of 38 offers matched" "every offer of 8 vCPUs and 32 GiB or more"
run_kite "$T_DIR/o" "$T_DIR/e" offers --accelerator h100:8 --region tor1
expect_rc 0 "filter by accelerator and region"
[ "$(grep -c '^digitalocean' "$T_DIR/o")" = 1 ] || fail "one 8x H100 offer in tor1: $(cat "$T_DIR/o")"
expect_grep "$T_DIR/o" "gpu-h100x8-640gb.*8x H100 80G" "the accelerators and their memory"
run_kite "$T_DIR/o" "$T_DIR/e" offers --max-price 0.2 --limit 3
expect_rc 0 "a price ceiling with a limit"
[ "$(grep -c 'snapshot 20' "$T_DIR/o")" = 3 ] || fail "--limit 3 shows 3 offers: $(cat "$T_DIR/o")"
expect_grep "$T_DIR/o" "(the cheapest 3 shown; --limit 0 shows all)" "the limit is said"

# --spot: only offers with a spot price, sorted by it (the snapshots of DigitalOcean and
# Vast.ai publish none: Vast.ai's 0.00 is not a price).
run_kite "$T_DIR/o" "$T_DIR/e" offers --spot
expect_rc 1 "no spot offers"
expect_grep "$T_DIR/e" "no offer matches (of 105); the closest:" "the no-match message"
expect_grep "$T_DIR/e" ": no spot price$" "each closest offer says what it lacks"
printf 'InstanceType,Region,vCPUs,MemoryGiB,Price,SpotPrice\nsp-1,west,2,4,0.30,0.12\nsp-2,west,4,8,0.20,0.15\nsp-3,east,4,8,0.10,\n' >"$T_DIR/spot.csv"
run_kite "$T_DIR/o" "$T_DIR/e" offers --import "$T_DIR/spot.csv" --provider spotty --date 2025-01-02
expect_rc 0 "import of a small spot snapshot"
run_kite "$T_DIR/o" "$T_DIR/e" offers --provider spotty --spot
expect_rc 0 "kite offers --spot"
[ "$(awk 'NR > 1 && /^spotty/ { printf "%s ", $4 }' "$T_DIR/o")" = "sp-1 sp-2 " ] ||
  fail "--spot lists the spot offers by spot price: $(cat "$T_DIR/o")"

# Nothing fits: the closest offers, the accelerator asked first, and what each misses.
run_kite "$T_DIR/o" "$T_DIR/e" offers --accelerator H100 --cpus 200 --provider digitalocean
expect_rc 1 "nothing fits"
expect_grep "$T_DIR/e" "^  digitalocean gpu-h100x1-80gb in tor1, \$6.74/h: 20 vCPUs, needs 200$" \
  "the closest offer and what it misses"
expect_grep "$T_DIR/e" "^  digitalocean gpu-h100x8-640gb in tor1, \$47.6/h: 160 vCPUs, needs 200$" \
  "the next closest"
expect_grep "$T_DIR/e" "^  digitalocean g-2vcpu-8gb in nyc1, \$0.09375/h: 2 vCPUs, needs 200; no accelerator, needs H100$" \
  "then the offers without the accelerator, with each requirement they miss"
expect_grep "$T_DIR/e" "Ask for less" "what to do"

# --json: one array, kite_offers_json's fields and age_s.
run_kite "$T_DIR/o" "$T_DIR/e" offers --json --provider digitalocean --region nyc1 --limit 0
expect_rc 0 "kite offers --json"
python3 -c 'import json, sys
a = json.load(open(sys.argv[1]))
assert isinstance(a, list) and len(a) == 6, len(a)
for o in a:
    assert o["provider"] == "digitalocean" and o["region"] == "nyc1", o
    assert o["source"] == "snapshot digitalocean-vms.csv 2025-06-01", o
    assert o["age_s"] > 86400 and o["spot_price"] is None and o["price"] > 0, o
assert [o["price"] for o in a] == sorted(o["price"] for o in a)
' "$T_DIR/o" || fail "kite offers --json: $(cat "$T_DIR/o")"

# A new snapshot replaces the provider's earlier one.
printf 'InstanceType,Region,Price\ns-1vcpu-1gb,nyc9,0.009\n' >"$T_DIR/do2.csv"
run_kite "$T_DIR/o" "$T_DIR/e" offers --import "$T_DIR/do2.csv" --provider digitalocean
expect_rc 0 "a second DigitalOcean snapshot"
run_kite "$T_DIR/o" "$T_DIR/e" offers --provider digitalocean --cache-only
expect_rc 0 "kite offers --cache-only"
expect_grep "$T_DIR/o" "^1 of 1 offers matched; from digitalocean snapshot do2.csv $(date -u +%Y-%m-%d) (1)" \
  "the new snapshot replaced the old one, dated by the file"

# Bad flags and bad files: exit 2, what was wrong and what to do.
bad() {
  local want="$1"
  shift
  run_kite "$T_DIR/o" "$T_DIR/e" offers "$@"
  expect_rc 2 "kite offers $*"
  expect_grep "$T_DIR/e" "$want" "kite offers $*"
}
bad "--cpus 'many' is not a number of vCPUs" --cpus many
bad "--memory '16XB' is not a size; give a number of GiB or a number with a unit" --memory 16XB
bad "--accelerator 'A100:x' is not NAME or NAME:COUNT" --accelerator A100:x
bad "--max-price '-1' is not a price in USD per hour" --max-price -1
bad "--limit needs a value" --limit
bad "unknown argument --bogus (see \`kite offers --help\`)" --bogus
bad "--refresh asks the providers and --cache-only never does" --refresh --cache-only
bad "--import FILE needs the one provider" --import "$T_DIR/do2.csv"
bad "--import stores a snapshot and lists nothing" --import "$T_DIR/do2.csv" --provider x --cpus 2
bad "kite has no provider called 'nope' and no offers of it cached" --provider nope
printf 'InstanceType,Region,Price\nok,r,0.1\nbad,r,"0.2\n' >"$T_DIR/broken.csv"
bad "broken.csv:3: a quoted field is not closed" --import "$T_DIR/broken.csv" --provider x
bad "nothing was imported" --import "$T_DIR/broken.csv" --provider x
bad "the snapshot's date '2025-13-01' is not a date" --import "$T_DIR/do2.csv" --provider x --date 2025-13-01
run_kite "$T_DIR/o" "$T_DIR/e" offers --provider x
expect_rc 2 "a failed import stored nothing"

# The DigitalOcean provider asked through the emulator: --refresh asks, the answer is cached
# (a size the API says is not available now is listed by nobody), and a refused token falls
# back to that cache, naming the provider and DigitalOcean's reason.
start_sim
export DIGITALOCEAN_TOKEN=$SIM_TOKEN KITE_DO_API_URL="$SIM_URL"
unset DIGITALOCEAN_CONFIG DIGITALOCEAN_ACCESS_TOKEN
curl -s -H "Authorization: Bearer $SIM_TOKEN" "$SIM_URL/v2/sizes?per_page=200" |
  python3 -c 'import json, sys
d = json.load(sys.stdin)["sizes"]
print(sum(len(s["regions"]) for s in d), sum(len(s["regions"]) for s in d if s["available"]))' >"$T_DIR/sizes"
read -r all avail <"$T_DIR/sizes"
run_kite "$T_DIR/o" "$T_DIR/e" offers --refresh --provider digitalocean --limit 0
expect_rc 0 "kite offers --refresh against the emulator"
expect_grep "$T_DIR/o" "^$avail of $all offers matched; from digitalocean api ($all)$" \
  "every offer of the emulator's sizes, the unavailable ones left out"
expect_grep "$T_DIR/o" "^digitalocean  *nyc1  *-  *s-1vcpu-1gb  *1  *1 GiB  *-  *0.00893  *-  *[0-9]m$" \
  "an offer as the API prices it, with its age"
expect_no_grep "$T_DIR/o" "snapshot" "the API's answer is used, not the snapshot"
run_kite "$T_DIR/o" "$T_DIR/e" offers --refresh --provider digitalocean --limit 1 --json
expect_rc 0 "kite offers --refresh --json"
python3 -c 'import json, sys; a = json.load(open(sys.argv[1])); assert len(a) == 1 and a[0]["source"] == "api" and 0 <= a[0]["age_s"] < 60, a' \
  "$T_DIR/o" || fail "kite offers --refresh --json: $(cat "$T_DIR/o")"
DIGITALOCEAN_TOKEN=refused-token run_kite "$T_DIR/o" "$T_DIR/e" offers --refresh --provider digitalocean
expect_rc 0 "a refused token falls back to the cache"
expect_grep "$T_DIR/e" "kite offers: digitalocean: it could not be asked: .*the API token was rejected.*; its $all offers cached [0-9]*s ago are used" \
  "the note names the provider, DigitalOcean's reason and the cache used"
expect_no_grep "$T_DIR/e" "refused-token" "the token is never printed"
kill -TERM "$T_SIM_PID" && wait "$T_SIM_PID" 2>/dev/null
T_SIM_PID=
run_kite "$T_DIR/o" "$T_DIR/e" offers --refresh --provider digitalocean --limit 1
expect_rc 0 "the emulator gone: the cache answers"
expect_grep "$T_DIR/e" "kite offers: digitalocean: it could not be asked" "the note says why"

# A bench: 10,000 offers from the cache, as a user runs it (the figure is printed, not asserted).
python3 -c 'import sys
with open(sys.argv[1], "w") as f:
    f.write("InstanceType,Region,AvailabilityZone,vCPUs,MemoryGiB,AcceleratorName,AcceleratorCount,Price,SpotPrice\n")
    for i in range(10000):
        f.write("t%d,r%d,r%d-z%d,%d,%d,%s,%s,%.4f,%.4f\n" % (i, i % 40, i % 40, i % 3, 1 << (i % 7),
                4 << (i % 7), "A100" if i % 5 == 0 else "", 8 if i % 5 == 0 else "", 0.01 * (i % 997) + 0.01, 0.004 * (i % 991) + 0.01))
' "$T_DIR/big.csv"
run_kite "$T_DIR/o" "$T_DIR/e" offers --import "$T_DIR/big.csv" --provider bench
expect_rc 0 "import of 10,000 offers"
expect_grep "$T_DIR/o" "imported 10000 offers of bench" "10,000 offers"
best=
for i in 1 2 3 4 5; do
  t0=$(date +%s%N)
  kite offers --provider bench --cpus 8 --accelerator a100 >/dev/null 2>&1
  t=$((($(date +%s%N) - t0) / 1000))
  [ -z "$best" ] || [ "$t" -lt "$best" ] && best=$t
done
printf 'bench: kite offers over 10,000 cached offers: %d.%03d ms (best of 5, whole process)\n' \
  $((best / 1000)) $((best % 1000)) >&2
