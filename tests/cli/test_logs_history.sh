#!/usr/bin/env bash
# Every task is kept after the fact: after `kite down`, `kite logs POOL` shows each command,
# each rank's exit status or signal, the instance that ran it and the tail of its output,
# from the state store; `kite logs nosuch` is an error.
. "$(dirname "$0")/lib.sh"
P=$(pool_name hist)
printf 'name: %s\nnodes: 2\n' "$P" >"$T_DIR/p.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/p.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
kite exec "$P" -- sh -c 'echo "hello from $KITE_NODE_RANK"' >/dev/null 2>&1
kite exec "$P" --rank 1 -- sh -c 'echo failing; exit 3' >/dev/null 2>&1
kite exec "$P" --rank 0 -- sh -c 'kill -9 $$' >/dev/null 2>&1
kite exec "$P" --rank 0 -- sh -c 'seq 1 20000' >/dev/null 2>&1
run_kite "$T_DIR/o" "$T_DIR/e" down "$P"
expect_rc 0 "kite down"
run_kite "$T_DIR/logs" "$T_DIR/e" logs "$P"
expect_rc 0 "kite logs after kite down"
expect_grep "$T_DIR/logs" "\[0\] hello from 0" "rank 0's output is kept"
expect_grep "$T_DIR/logs" "\[1\] hello from 1" "rank 1's output is kept"
expect_grep "$T_DIR/logs" "\[1\] (exit 3; on local-" "an exit status, with its instance"
expect_grep "$T_DIR/logs" "\[0\] (killed by signal KILL" "a signal"
expect_grep "$T_DIR/logs" "\[0\] 20000\$" "the end of a long output"
expect_grep "$T_DIR/logs" "earlier output not kept" "a long output says it was cut"
expect_grep "$T_DIR/logs" "== task .*: 'sh' '-c' 'echo failing; exit 3'" "the command"
expect_no_grep "$T_DIR/logs" "^\[0\] 318\$" "the kept tail starts at a line"
run_kite "$T_DIR/logs" "$T_DIR/e" logs "$P" --rank 1
expect_no_grep "$T_DIR/logs" "^\[0\]" "--rank 1 shows rank 1 only"
run_kite "$T_DIR/o" "$T_DIR/e" logs nosuch-pool
expect_rc 1 "kite logs of a pool that does not exist"

# --json: one "task" object per task, then "end", from the store as from a live owner.
run_kite "$T_DIR/lj" "$T_DIR/e" logs --json "$P"
expect_rc 0 "kite logs --json after kite down"
python3 - "$T_DIR/lj" <<'PY' || fail "kite logs --json: $(head -c 600 "$T_DIR/lj")"
import base64, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
tasks = [l for l in lines if l["t"] == "task"]
assert lines[-1]["t"] == "end" and len(tasks) == 4, lines
first = tasks[0]
outs = sorted(base64.b64decode(r["output"]).decode() for r in first["ranks"])
assert outs == ["hello from 0\n", "hello from 1\n"], outs
assert any(r["signal"] == "KILL" for t in tasks for r in t["ranks"])
PY
