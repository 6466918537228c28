#!/usr/bin/env bash
# Output larger than anything kite keeps, read slowly: `kite exec` piped into a reader that
# sleeps first gets every byte, in order, while the pool's owner holds the command's output on
# the node instead of queueing it (its peak memory stays small) or cutting the client off.
. "$(dirname "$0")/lib.sh"
M=$(pool_name lim)
printf 'name: %s\nnodes: 1\n' "$M" >"$T_DIR/m.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/m.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
OWNER=$(owner_pid "$M")
[ -n "$OWNER" ] || die "no owner pid for $M"
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
before=$(hwm "$OWNER")

N=$((200 * 1024 * 1024))
log "kite exec printing $N bytes into a reader that sleeps 5 s first"
kite exec "$M" --rank 0 -- sh -c "head -c $N /dev/zero | tr '\\0' a" 2>"$T_DIR/e" |
  python3 -c '
import sys, time
time.sleep(5)
n, other = 0, bytearray()
while True:
    b = sys.stdin.buffer.read(1 << 20)
    if not b:
        break
    n += b.count(b"a")
    other += b.replace(b"a", b"")
print(n, repr(bytes(other)))' >"$T_DIR/count"
RC=${PIPESTATUS[0]}
expect_rc 0 "kite exec of $N bytes read slowly"
expect_no_grep "$T_DIR/e" "closed the connection" "the owner kept the slow client"
[ "$(cat "$T_DIR/count")" = "$N b'[0] \\n'" ] ||
  fail "the reader got $(cat "$T_DIR/count") (bytes of output, anything else), not $N and a label"
after=$(hwm "$OWNER")
log "owner peak RSS ${before} kB before, ${after} kB after"
[ "$after" -lt $((before + 65536)) ] || fail "the owner's peak RSS grew by $((after - before)) kB"
exit 0
