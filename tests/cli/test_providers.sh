#!/usr/bin/env bash
# `kite providers` prints the registry: README.md's provider tables are exactly its --markdown
# output, the plain listing gives every refusal's reason, and a spec that names a region the
# provider does not launch in is refused by `kite check` at the key.
. "$(dirname "$0")/lib.sh"
README="$KITE_SOURCE_DIR/README.md"

run_kite "$T_DIR/md" "$T_DIR/e" providers --markdown
expect_rc 0 "kite providers --markdown"
sed -n '/^<!-- the tables below are `kite providers --markdown`/,/^<!-- end of kite providers --markdown -->/p' \
  "$README" | sed '1d;$d' >"$T_DIR/readme.md"
[ -s "$T_DIR/readme.md" ] || fail "README.md has no kite providers --markdown block"
diff -u "$T_DIR/readme.md" "$T_DIR/md" >"$T_DIR/diff" ||
  { fail "README.md's provider tables differ from kite providers --markdown:"; cat "$T_DIR/diff" >&2; }

run_kite "$T_DIR/plain" "$T_DIR/e" providers
expect_rc 0 "kite providers"
for p in local ssh digitalocean aws hetzner; do
  expect_grep "$T_DIR/plain" "^$p (" "kite providers lists $p"
done
expect_grep "$T_DIR/plain" "refuses \`resources.spot: true\`: Hetzner Cloud has no spot servers" \
  "the reason of a refusal"
expect_grep "$T_DIR/plain" "option token (secret): API token (default \$HCLOUD_TOKEN" "an option's meaning"

printf 'name: h\nprovider: hetzner\nregion: nyc3\nnodes: 1\n' >"$T_DIR/h.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" check "$T_DIR/h.yaml"
expect_rc 2 "kite check of a region Hetzner does not have"
expect_grep "$T_DIR/e" "h.yaml:3:9: region: Hetzner Cloud has no region 'nyc3'; choose one of: fsn1," \
  "the refusal names the key's place and the regions"
printf 'name: h\nprovider: hetzner\nregion: hel1\nnodes: 1\nresources: {instance_type: cx22}\n' >"$T_DIR/ok.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" check "$T_DIR/ok.yaml"
expect_rc 0 "kite check of a Hetzner spec"
expect_grep "$T_DIR/o" "ok: pool h, 1 hetzner node" "kite check says it is fine"
