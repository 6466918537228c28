#!/usr/bin/env bash
# "pool ready" is printed after every rank's READY line: a completion never overtakes the
# events that led to it. Several runs, since the order once depended on timing.
. "$(dirname "$0")/lib.sh"
P=$(pool_name order)
printf 'name: %s\nnodes: 4\nrun: "true"\n' "$P" >"$T_DIR/p.yaml"
for i in 1 2 3 4 5; do
  run_kite "$T_DIR/o" "$T_DIR/e" run --plain "$T_DIR/p.yaml"
  expect_rc 0 "kite run ($i)"
  last_ready=$(grep -n -- '-> READY' "$T_DIR/e" | tail -1 | cut -d: -f1)
  pool_ready=$(grep -n 'pool .* ready:' "$T_DIR/e" | head -1 | cut -d: -f1)
  [ -n "$last_ready" ] && [ -n "$pool_ready" ] && [ "$last_ready" -lt "$pool_ready" ] ||
    { fail "run $i: 'pool ready' (line $pool_ready) before the last READY (line $last_ready)"; cat "$T_DIR/e" >&2; break; }
done
