#!/usr/bin/env bash
# The README's guide tells the truth: every `$ kite ...` command it shows runs exactly as
# written, in order, with the exit status and the output lines the README gives.
. "$(dirname "$0")/lib.sh"
W="$T_DIR/work"
mkdir -p "$W"
cp -r "$KITE_SOURCE_DIR/examples" "$W/"
# The public price snapshots the guide imports (kite offers --import).
cp "$KITE_SOURCE_DIR/../shared/catalogs/"{digitalocean,vast}-vms.csv "$W/"
printf 'a note\n' >"$W/notes.txt"
# bad.yaml as the README's error names it: line 4, column 3, `cpuz` under resources.
printf 'name: bad\nnodes: 1\nresources:\n  cpuz: 4\n' >"$W/bad.yaml"
T_POOLS+=(hello)
echo hello >>"$T_DIR/pools"
python3 "$KITE_SOURCE_DIR/tests/cli/readme_check.py" "$KITE_SOURCE_DIR/README.md" "$W" ||
  fail "a README command does not do what the README says (above)"

# Every spec the README shows (its ```yaml blocks that name a pool; the schema reference with
# NAME placeholders is not one) passes `kite check`: nothing in them is refused.
python3 - "$KITE_SOURCE_DIR/README.md" "$T_DIR/specs" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
os.makedirs(sys.argv[2], exist_ok=True)
n = 0
for m in re.finditer(r"```yaml\n(.*?)```", text, re.S):
    body = m.group(1)
    name = re.search(r"^name:\s*(\S+)", body, re.M)
    if not name or name.group(1).isupper():
        continue
    n += 1
    open(os.path.join(sys.argv[2], f"spec{n}.yaml"), "w").write(body)
print(n, "README specs", file=sys.stderr)
PY
for f in "$T_DIR"/specs/*.yaml; do
  run_kite "$T_DIR/o" "$T_DIR/e" check "$f"
  expect_rc 0 "kite check of a README spec ($(head -1 "$f"))"
  [ "$RC" = 0 ] || cat "$T_DIR/e" >&2
done
ls "$T_DIR"/specs/*.yaml >/dev/null 2>&1 || fail "no README spec found"

# The README's DigitalOcean walkthrough, its commands exactly as written, with the spec it
# describes.
log "the README's DigitalOcean block"
block=$(python3 -c '
import re,sys
t=open(sys.argv[1]).read()
i=t.index("**DigitalOcean**")
print(re.search(r"```sh\n(.*?)```", t[i:], re.S).group(1))' "$KITE_SOURCE_DIR/README.md")
U=$(node_user)
printf 'name: readme-do\nprovider: digitalocean\nnodes: 2\nprovider_options: {ssh_user: %s, ssh_port: 2222}\nrun: echo hi from $KITE_NODE_RANK\n' "$U" >"$W/spec.yaml"
T_POOLS+=(readme-do)
echo readme-do >>"$T_DIR/pools"
(
  cd "$W" || exit 1
  # The block starts the emulator in the background; this shell stops it at the end.
  eval "$block" >"$T_DIR/do.out" 2>"$T_DIR/do.err"
  rc=$?
  kill %1 2>/dev/null
  wait 2>/dev/null
  exit $rc
)
RC=$?
expect_rc 0 "the README's DigitalOcean block"
expect_grep "$T_DIR/do.out" "^\[1\] hi from 1" "its kite run ran on the droplets"
