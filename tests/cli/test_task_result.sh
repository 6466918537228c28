#!/usr/bin/env bash
# A command killed by a signal says which (signal KILL, not exit 137), in the plain output and
# in --json; a downloaded tree keeps the modes of its directories and files.
. "$(dirname "$0")/lib.sh"
P=$(pool_name result)
printf 'name: %s\nnodes: 2\n' "$P" >"$T_DIR/p.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/p.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$P" -- sh -c 'kill -9 $$'
expect_rc 1 "a command killed by a signal fails"
expect_grep "$T_DIR/e" "killed by signal KILL" "the signal is named"
run_kite "$T_DIR/o" "$T_DIR/e" exec --json "$P" --rank 1 -- sh -c 'kill -TERM $$'
python3 -c '
import json,sys
for l in open(sys.argv[1]):
    j=json.loads(l)
    if j.get("t")=="result":
        r=j["ranks"][0]
        sys.exit(0 if r["signal"]=="TERM" else 1)
sys.exit(1)' "$T_DIR/o" || fail "--json result has no signal TERM: $(cat "$T_DIR/o")"

run_kite "$T_DIR/o" "$T_DIR/e" exec "$P" --rank 0 -- sh -c \
  'mkdir -p tree/a tree/b/c && echo x >tree/b/f && chmod 700 tree/a && chmod 751 tree/b && chmod 555 tree/b/c && chmod 604 tree/b/f && chmod 750 tree'
expect_rc 0 "making a tree on the node"
run_kite "$T_DIR/o" "$T_DIR/e" download "$P" --rank 0 tree "$T_DIR/dl"
expect_rc 0 "kite download of a tree"
modes=$(cd "$T_DIR/dl" && stat -c '%a %n' . a b b/c b/f | tr '\n' ' ')
[ "$modes" = "750 . 700 a 751 b 555 b/c 604 b/f " ] || fail "downloaded modes: $modes"
chmod -R u+w "$T_DIR/dl"

log "kite run --json: the output and the result as JSON lines on stdout"
printf 'name: %s-json\nnodes: 2\nrun: echo "hi $KITE_NODE_RANK"; exit $KITE_NODE_RANK\n' "$P" >"$T_DIR/j.yaml"
run_kite "$T_DIR/j.out" "$T_DIR/j.err" run --json "$T_DIR/j.yaml"
expect_rc 1 "kite run --json with a failing rank"
python3 - "$T_DIR/j.out" <<'PY' || fail "kite run --json: $(cat "$T_DIR/j.out")"
import base64, json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
outs = sorted(base64.b64decode(l["data"]).decode() for l in lines if l["t"] == "out")
res = [l for l in lines if l["t"] == "result"]
assert outs == ["hi 0\n", "hi 1\n"], outs
assert len(res) == 1 and res[0]["failed"] == 1, res
PY
