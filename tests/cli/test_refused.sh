#!/usr/bin/env bash
# Honoured or refused: every key of a spec and every provider option is either honoured by the
# chosen provider or refused when the spec is loaded. For each refused case on local, ssh,
# DigitalOcean and AWS, `kite run bad.yaml` must exit 2 with FILE:LINE:COL at the offending
# key, what is wrong and what to do; no pool may be recorded (kite status) and nothing may be
# launched (the emulator counts no droplet and no instance). Then ssh.user and ssh.key, where
# a provider honours them, must reach it: pools log in as the spec says.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK DIGITALOCEAN_TOKEN=$SIM_TOKEN
# The emulator, without naming it in the specs (so their provider_options are the case's own).
export KITE_DO_API_URL=$SIM_URL KITE_AWS_ENDPOINT=$SIM_URL/
cd "$T_DIR" || die "no $T_DIR"
aws_live() { curl -s "$SIM_URL/_sim/ec2/state" | python3 -c 'import json,sys; print(json.load(sys.stdin)["live"])'; }
do_live() { sim_num '["droplets"]'; }
recorded() { kite status --json --all 2>/dev/null | python3 -c "
import json,sys
print(sum(1 for p in json.load(sys.stdin).get('pools',[]) if p['name']=='$1'))"; }

N=0
# refused PROVIDER MESSAGE <<< CASE_LINES: the case's lines start at line 7 of bad.yaml.
refused() {
  local provider="$1" want="$2"
  N=$((N + 1))
  local name
  name=$(pool_name "refused-$N")
  {
    printf 'name: %s\nprovider: %s\nnodes: 1\nrun: echo ran\n' "$name" "$provider"
    printf 'monitors: {enabled: false}\ndeadman: {enabled: false}\n'
    cat
  } >bad.yaml
  run_kite out err run --plain bad.yaml
  expect_rc 2 "case $N ($provider)"
  expect_grep err "$want" "case $N ($provider)"
  [ "$(recorded "$name")" = 0 ] || fail "case $N ($provider): pool $name is recorded in the store"
}

log "local"
refused local "bad.yaml:8:3: bootstrap.apt: not honoured by the local provider: local nodes share this machine's system" <<'YAML'
bootstrap:
  apt: [git]
YAML
refused local "bad.yaml:7:1: region: not honoured by the local provider" <<'YAML'
region: us-east-1
YAML
refused local "bad.yaml:8:3: resources.cpus: not honoured by the local provider: local nodes share this machine" <<'YAML'
resources:
  cpus: 96
  accelerators: A100:8
YAML
refused local "bad.yaml:7:13: resources.spot: not honoured by the local provider" <<'YAML'
resources: {spot: true}
YAML
refused local "bad.yaml:7:13: resources.instance_type: not honoured by the local provider" <<'YAML'
resources: {instance_type: t3.micro}
YAML
refused local "bad.yaml:7:1: image: not honoured by the local provider" <<'YAML'
image: ubuntu-24-04-x64
YAML
# More nodes than the machine can run: refused at the value, before anything starts.
printf 'name: %s\nprovider: local\nnodes: 100000\nrun: echo ran\n' "$(pool_name huge)" >huge.yaml
run_kite out err run --plain huge.yaml
expect_rc 2 "100,000 local nodes"
expect_grep err "huge.yaml:3:8: nodes: 100000 is more than the local provider can run (at most 1000" \
  "100,000 local nodes"
[ "$(wc -l <out)" -lt 5 ] || fail "100,000 local nodes: a plan was printed"
# A 50 MB string: refused before it is parsed, with the limit.
{ printf 'name: %s\nnodes: 1\nrun: "' "$(pool_name big)"; head -c 50000000 /dev/zero | tr '\0' a; printf '"\n'; } >big.yaml
run_kite out err run --plain big.yaml
expect_rc 2 "a 50 MB spec"
expect_grep err "big.yaml: the file is larger than 16 MiB; expected a pool spec" "a 50 MB spec"
rm -f big.yaml
refused local "bad.yaml:7:7: ssh.user: not honoured by the local provider" <<'YAML'
ssh: {user: ubuntu}
YAML
refused local "bad.yaml:8:3: ssh.key: not honoured by the local provider: local nodes accept kite's own key only" <<'YAML'
ssh:
  key: /etc/hostname
YAML
refused local "bad.yaml:7:20: provider_options.chaos_per_minute: the local provider has no option 'chaos_per_minute'; its options are: port, outlive_controller" <<'YAML'
provider_options: {chaos_per_minute: 4}
YAML
refused local "bad.yaml:8:3: provider_options.port: expected an integer from 1 to 65535, got a string" <<'YAML'
provider_options:
  port: twenty-two
YAML

log "ssh"
refused ssh "bad.yaml:9:3: ssh.key: cannot read the key file 'no-such-key': No such file or directory" <<'YAML'
provider_options: {hosts: [127.0.0.1]}
ssh:
  key: no-such-key
YAML
refused ssh "bad.yaml:7:1: region: not honoured by the ssh provider" <<'YAML'
region: eu-west-1
provider_options: {hosts: [127.0.0.1]}
YAML
refused ssh "bad.yaml:8:3: resources.instance_type: not honoured by the ssh provider" <<'YAML'
resources:
  instance_type: m5.large
provider_options: {hosts: [127.0.0.1]}
YAML
refused ssh "bad.yaml:8:13: resources.spot: not honoured by the ssh provider" <<'YAML'
provider_options: {hosts: [127.0.0.1]}
resources: {spot: true}
YAML
refused ssh "bad.yaml:7:40: provider_options.usr: the ssh provider has no option 'usr'; did you mean 'user'?" <<'YAML'
provider_options: {hosts: [127.0.0.1], usr: ann}
YAML

log "digitalocean"
refused digitalocean "bad.yaml:8:3: resources.spot: not honoured by the digitalocean provider: DigitalOcean has no spot droplets" <<'YAML'
resources:
  spot: true
YAML
refused digitalocean "bad.yaml:7:7: ssh.key: not honoured by the digitalocean provider" <<YAML
ssh: {key: /nonexistent/id_ed25519, user: $U}
provider_options: {ssh_port: 2222}
YAML
refused digitalocean "bad.yaml:8:3: provider_options.regoin: the digitalocean provider has no option 'regoin'; did you mean the spec key 'region'" <<'YAML'
provider_options:
  regoin: nyc3
YAML
refused digitalocean "bad.yaml:7:13: resources.disk_gb: not honoured by the digitalocean provider: kite cannot size the root disk yet" <<'YAML'
resources: {disk_gb: 64}
YAML

log "aws"
# AWS has a catalog: its spec takes resources, and kite reads the catalog before anything is
# launched; where the API cannot be reached, the open fails saying so, and nothing was launched.
name=$(pool_name refused-aws-resources)
printf 'name: %s\nprovider: aws\nnodes: 1\nrun: echo ran\nimage: ami-0123456789abcdef0\nresources:\n  cpus: 96\n  accelerators: A100:8\nprovider_options: {endpoint: "http://127.0.0.1:9/", pricing_endpoint: "http://127.0.0.1:9/"}\n' "$name" >bad.yaml
AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secret run_kite out err run --plain bad.yaml
expect_rc 1 "aws resources"
expect_grep err "cannot read the providers' catalogs: aws: it could not be asked: .*nothing of it is cached" "aws resources"
kite status --json --all 2>/dev/null | python3 -c "
import json,sys
ps=[p for p in json.load(sys.stdin).get('pools',[]) if p['name']=='$name']
assert len(ps)==1 and not ps[0].get('live_instances'), ps" || fail "aws resources: pool $name left an instance recorded"
refused aws "bad.yaml:8:20: provider_options.ssh_usr: the aws provider has no option 'ssh_usr'; did you mean 'ssh_user'?" <<'YAML'
image: ami-0123456789abcdef0
provider_options: {ssh_usr: ubuntu, regoin: us-east-1}
YAML
refused aws "bad.yaml:9:3: provider_options.max_price: expected a number, got a string" <<'YAML'
image: ami-0123456789abcdef0
provider_options:
  max_price: cheap
YAML
refused aws "bad.yaml:8:3: ssh.key: not honoured by the aws provider: instances are launched with kite's own key pair" <<'YAML'
ssh:
  key: ~/.ssh/id_ed25519
image: ami-0123456789abcdef0
YAML

log "provider names"
for p in azure AWS digitalocen; do
  case $p in
  azure) want="bad.yaml:2:11: provider: unknown provider 'azure'; expected one of: local, ssh, digitalocean, aws, hetzner, gcp, vastai, verda, runpod" ;;
  AWS) want="bad.yaml:2:11: provider: unknown provider 'AWS'; did you mean 'aws'?" ;;
  *) want="bad.yaml:2:11: provider: unknown provider 'digitalocen'; did you mean 'digitalocean'?" ;;
  esac
  refused "$p" "$want" </dev/null
done

run_kite out err status
expect_rc 0 "kite status"
expect_grep out "no pools" "nothing was recorded"
[ "$(do_live)" = 0 ] || fail "a droplet was created"
[ "$(aws_live)" = 0 ] || fail "an EC2 instance was launched"

# ---- honoured ------------------------------------------------------------------------------
log "ssh.user is the login user on DigitalOcean and AWS"
ok_spec() { # NAME PROVIDER EXTRA
  printf 'name: %s\nprovider: %s\nnodes: 1\nrun: echo ran as $(id -un)\n' "$1" "$2"
  printf 'monitors: {enabled: false}\ndeadman: {enabled: false}\n%b' "$3"
}
name=$(pool_name ok-do)
ok_spec "$name" digitalocean "ssh: {user: $U}\nprovider_options: {ssh_port: 2222}\n" >ok.yaml
run_kite out err run --plain ok.yaml
expect_rc 0 "ssh.user on DigitalOcean"
expect_grep out "ran as $U" "ssh.user on DigitalOcean"
name=$(pool_name ok-aws)
ok_spec "$name" aws "image: ami-0123456789abcdef0\nssh:\n  user: $U\nprovider_options: {ssh_port: 2222}\n" >ok.yaml
run_kite out err run --plain ok.yaml
expect_rc 0 "ssh.user on AWS"
expect_grep out "ran as $U" "ssh.user on AWS"

log "ssh.user and ssh.key log in to the machines of an ssh inventory"
# A local node is the machine: it accepts kite's own key, which the spec names. Without a key
# of its own in a fresh HOME and without an agent, nothing else could log in.
loc=$(pool_name ok-machine)
printf 'name: %s\nnodes: 1\nmonitors: {enabled: false}\n' "$loc" >machine.yaml
run_kite out err up --plain machine.yaml
expect_rc 0 "kite up of the machine"
addr=$(kite status "$loc" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pools"][0]["instances"][0]["address"])')
name=$(pool_name ok-inventory)
ok_spec "$name" ssh "provider_options: {hosts: [\"$addr:2222\"]}\nssh: {user: $U, key: $KITE_HOME/keys/id_ed25519, host_key_mode: accept-new}\n" >ok.yaml
mkdir -p "$T_DIR/fresh-home"
RC=0
(unset SSH_AUTH_SOCK; HOME=$T_DIR/fresh-home kite run --plain ok.yaml >out 2>err) || RC=$?
expect_rc 0 "ssh.user and ssh.key on the ssh provider"
expect_grep out "ran as $U" "ssh.user and ssh.key on the ssh provider"
run_kite out err down "$loc"
expect_rc 0 "kite down of the machine"

[ "$T_FAILS" = 0 ] && log "ok"
