#!/usr/bin/env bash
# Every line of `kite events` is one JSON object of the versioned form, and its "key" has one
# type, a string, whatever the event (ids and provider names alike).
. "$(dirname "$0")/lib.sh"
P=$(pool_name ev)
printf 'name: %s\nnodes: 2\n' "$P" >"$T_DIR/p.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/p.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$P" -- echo hi
run_kite "$T_DIR/ev" "$T_DIR/e" events --no-follow "$P"
expect_rc 0 "kite events --no-follow"
python3 - "$T_DIR/ev" <<'PY' || fail "kite events: keys of more than one type (see above)"
import json, sys
types, n = {}, 0
for line in open(sys.argv[1]):
    j = json.loads(line)
    assert j["v"] == 1 and isinstance(j["seq"], int) and isinstance(j["type"], str), line
    types.setdefault(type(j["key"]).__name__, j["type"])
    n += 1
print(n, "events; key types:", types, file=sys.stderr)
sys.exit(0 if n > 5 and list(types) == ["str"] else 1)
PY
