#!/usr/bin/env bash
# `kite status` keeps its columns aligned whatever the pool names' lengths, shows live pools by
# default and every pool with --all; `kite forget` drops closed ones.
. "$(dirname "$0")/lib.sh"
A=$(pool_name a)
B=$(pool_name a-pool-with-a-rather-long-name-x)
for p in "$A" "$B"; do
  printf 'name: %s\nnodes: 1\n' "$p" >"$T_DIR/p.yaml"
  run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/p.yaml"
  [ "$RC" = 0 ] || die "kite up $p: $(cat "$T_DIR/e")"
done
kite status >"$T_DIR/st"
python3 - "$T_DIR/st" <<'PY' || { fail "columns are not aligned"; cat "$T_DIR/st" >&2; }
import sys
lines = [l.rstrip("\n") for l in open(sys.argv[1]) if l.strip()]
col = lines[0].index("PROVIDER")
rows = [l for l in lines[1:] if " local " in l]
sys.exit(0 if len(rows) == 2 and all(r.index(" local ") + 1 == col for r in rows) else 1)
PY

# Live pools by default; --all for the history; kite forget drops a closed pool.
run_kite "$T_DIR/o" "$T_DIR/e" down "$A"
expect_rc 0 "kite down $A"
kite status >"$T_DIR/st"
expect_no_grep "$T_DIR/st" "^$A " "a closed pool is not shown by default"
expect_grep "$T_DIR/st" "1 closed pool not shown" "says what is hidden"
kite status --all >"$T_DIR/st"
expect_grep "$T_DIR/st" "^$A " "kite status --all shows it"
run_kite "$T_DIR/o" "$T_DIR/e" forget "$B"
expect_rc 1 "kite forget of an open pool is refused"
run_kite "$T_DIR/o" "$T_DIR/e" forget "$A"
expect_rc 0 "kite forget of a closed pool"
kite status --all >"$T_DIR/st"
expect_no_grep "$T_DIR/st" "^$A " "a forgotten pool is gone"
expect_grep "$T_DIR/st" "^$B " "the open pool stays"
