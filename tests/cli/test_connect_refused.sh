#!/usr/bin/env bash
# A refused TCP connection is reported as what it is ("connection refused"), not as an
# internal error of the event loop.
. "$(dirname "$0")/lib.sh"
name=$(pool_name refused)
printf 'name: %s\nprovider: ssh\nnodes: 1\nprovider_options: {hosts: ["127.0.0.1:1"]}\nssh: {connect_timeout: 2s}\n' "$name" >"$T_DIR/spec.yaml"
run_kite "$T_DIR/out" "$T_DIR/err" run --plain "$T_DIR/spec.yaml" -- true
expect_rc 1 "kite run on a closed port"
expect_grep "$T_DIR/err" "127.0.0.1:1: Connection refused" "the cause is named"
expect_no_grep "$T_DIR/err" "bad file descriptor" "no internal error text"
