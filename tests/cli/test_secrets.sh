# A `secret: true` bootstrap env value never appears in anything kite writes: the output of
# every command (a command on the nodes that echoes it included, whole or split across output
# chunks), --json, `kite logs`, `kite events`, `kite status`, the owner's log, and the state
# store with its WAL.
. "$(dirname "$0")/lib.sh"

export API_TOKEN="tok-$$-$RANDOM-s3cr3t-unique"
P=$(pool_name secret)
cat >"$T_DIR/pool.yaml" <<EOF
name: $P
nodes: 2
bootstrap:
  env:
    TOKEN: {value: "\${API_TOKEN}", secret: true}
  setup: echo "setup sees \$TOKEN"
EOF
OUTS=()
k() { # k NAME ARGS...: runs kite, keeps its stdout and stderr for the final check
  local n="$1"
  shift
  run_kite "$T_DIR/$n.out" "$T_DIR/$n.err" "$@"
  OUTS+=("$T_DIR/$n.out" "$T_DIR/$n.err")
}

k up up --plain "$T_DIR/pool.yaml"
expect_rc 0 "kite up"
[ "$RC" = 0 ] || die "cannot go on: $(cat "$T_DIR/up.err")"
log "the nodes have the secret"
k exec exec "$P" -- sh -c 'echo "token=$TOKEN"'
expect_rc 0 "kite exec echoing the secret"
expect_grep "$T_DIR/exec.out" '^\[0\] token=\[REDACTED\]$' "the echoed secret comes out redacted"
k execjson exec --json "$P" -- sh -c 'echo "token=$TOKEN"; echo "to stderr: $TOKEN" >&2'
expect_rc 0 "kite exec --json"
log "the secret written one byte at a time, so it spans many output chunks"
k slow exec "$P" --rank 1 -- sh -c \
  'printf %s "$TOKEN" > t.txt; n=$(wc -c < t.txt); i=0; while [ $i -lt $n ]; do dd if=t.txt bs=1 skip=$i count=1 2>/dev/null; sleep 0.02; i=$((i+1)); done; echo'
expect_rc 0 "kite exec writing the secret byte by byte"
expect_grep "$T_DIR/slow.out" '^\[1\] \[REDACTED\]$' "the secret split across chunks is redacted"
k literal exec "$P" --rank 0 -- echo "typed $API_TOKEN"
k logs logs "$P"
k logs1 logs "$P" --rank 1
k events events --no-follow "$P"
k status status "$P"
k statusjson status --json "$P"
# The store and its WAL while the pool is up (the WAL may be checkpointed away at the end).
store_check() {
  local f
  for f in "$KITE_HOME"/state.db "$KITE_HOME"/state.db-wal; do
    [ -e "$f" ] || continue
    strings "$f" >"$T_DIR/strings.txt"
    expect_no_grep "$T_DIR/strings.txt" "$API_TOKEN" "strings of $f ($1)"
  done
}
store_check "while the pool is up"
k down down "$P"
# The task history in the store, shown after the pool is gone.
k logsafter logs "$P"
k logsafterjson logs --json "$P"
expect_grep "$T_DIR/logsafter.out" "token=\[REDACTED\]" "the history keeps the redacted output"

log "looking for the secret everywhere kite wrote"
for f in "${OUTS[@]}"; do
  expect_no_grep "$f" "$API_TOKEN" "kite's output"
done
# --json and the events carry output as base64: decode every string that is base64 too.
for f in "$T_DIR/execjson.out" "$T_DIR/events.out" "$T_DIR/statusjson.out" "$T_DIR/logsafterjson.out"; do
  python3 - "$f" "$API_TOKEN" <<'EOF' || fail "the secret is in the base64 of $f"
import base64, json, sys
tok = sys.argv[2].encode()
def walk(v):
    if isinstance(v, dict):
        return any(walk(x) for x in v.values())
    if isinstance(v, list):
        return any(walk(x) for x in v)
    if isinstance(v, str):
        try:
            return tok in base64.b64decode(v, validate=True)
        except Exception:
            return False
    return False
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# Output split across chunks: join each task's stream (events) or each rank's stream (exec).
joined = {}
for j in lines:
    d = j.get("data")
    if isinstance(d, dict) and isinstance(d.get("data"), str):
        k, b = (j.get("key"), d.get("stream")), d["data"]
    elif isinstance(d, str) and "rank" in j:
        k, b = (j.get("rank"), j.get("stream")), d
    else:
        continue
    try:
        joined[k] = joined.get(k, b"") + base64.b64decode(b, validate=True)
    except Exception:
        pass
sys.exit(1 if any(walk(j) for j in lines) or any(tok in v for v in joined.values()) else 0)
EOF
done
for f in "$KITE_HOME"/logs/*.log; do
  expect_no_grep "$f" "$API_TOKEN" "the owner's log"
done
store_check "after kite down"
grep -rl --exclude-dir=local -- "$API_TOKEN" "$KITE_HOME" >&2 &&
  fail "the secret is in a file under KITE_HOME (above)"
true
