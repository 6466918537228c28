#!/usr/bin/env bash
# `kite ssh POOL --rank R -- CMD` logs in to the node with the key that the provider said logs
# in (kite's own on local nodes and on clouds), the node's pinned host key and its user, on
# every provider: local, and aws and digitalocean on kite-cloudsim; the command and a login
# shell have the pool's variables (KITE_NODE_RANK and the rest), as every command of the pool.
. "$(dirname "$0")/lib.sh"
start_sim
U=$(node_user)
export AWS_ACCESS_KEY_ID=$SIM_AK AWS_SECRET_ACCESS_KEY=$SIM_SK DIGITALOCEAN_TOKEN=$SIM_TOKEN
for prov in local aws digitalocean; do
  name=$(pool_name "ssh-$prov")
  {
    echo "name: $name"
    echo "nodes: 2"
    echo "provider: $prov"
    case $prov in
    aws) printf 'region: eu-west-1\nimage: ami-0123456789abcdef0\nprovider_options: {endpoint: "%s/", ssh_user: %s, ssh_port: 2222}\n' "$SIM_URL" "$U" ;;
    digitalocean) printf 'provider_options: {api_url: "%s", ssh_user: %s, ssh_port: 2222}\n' "$SIM_URL" "$U" ;;
    esac
    echo "bootstrap: {files: [{path: hello.txt, content: \"hi from the bootstrap\\n\"}]}"
  } >"$T_DIR/$prov.yaml"
  run_kite "$T_DIR/up.out" "$T_DIR/up.err" up --plain "$T_DIR/$prov.yaml"
  expect_rc 0 "kite up ($prov)"
  run_kite "$T_DIR/ssh.out" "$T_DIR/ssh.err" ssh "$name" --rank 1 -- cat hello.txt
  expect_rc 0 "kite ssh ($prov)"
  expect_grep "$T_DIR/ssh.out" "hi from the bootstrap" "kite ssh runs the command on the node ($prov)"
  run_kite "$T_DIR/ssh.out" "$T_DIR/ssh.err" ssh "$name" --rank 0 -- sh -c 'echo "$1"' - "a 'quoted' word"
  expect_grep "$T_DIR/ssh.out" "a 'quoted' word" "arguments arrive as given ($prov)"
  run_kite "$T_DIR/ssh.out" "$T_DIR/ssh.err" ssh "$name" --rank 1 -- sh -c 'echo "rank=$KITE_NODE_RANK of $KITE_NUM_NODES head=$KITE_HEAD_IP"'
  expect_grep "$T_DIR/ssh.out" "rank=1 of 2 head=[0-9]" "kite ssh has the pool's variables ($prov)"
  # An interactive login (here with its input from a pipe) gets them too.
  echo 'echo "in=$KITE_NODE_RANK"; exit' | kite ssh "$name" --rank 0 >"$T_DIR/ssh.out" 2>"$T_DIR/ssh.err"
  expect_grep "$T_DIR/ssh.out" "in=0" "kite ssh's login shell has the pool's variables ($prov)"
  run_kite "$T_DIR/down.out" "$T_DIR/down.err" down "$name"
  expect_rc 0 "kite down ($prov)"
done
