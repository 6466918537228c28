#!/usr/bin/env bash
# `kite status` keeps its columns aligned whatever the pool names' lengths.
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
