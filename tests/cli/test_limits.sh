#!/usr/bin/env bash
# Output larger than anything kite keeps, read slowly: `kite exec` piped into a reader that
# sleeps first gets every byte, in order, while the pool's owner holds the command's output on
# the node instead of queueing it (its peak memory stays small) or cutting the client off. A
# `kite events` that reads nothing while events flood is cut off after 32 MiB with a
# message saying why, and the pool goes on.
. "$(dirname "$0")/lib.sh"
M=$(pool_name lim)
printf 'name: %s\nnodes: 1\n' "$M" >"$T_DIR/m.yaml"
run_kite "$T_DIR/o" "$T_DIR/e" up --plain "$T_DIR/m.yaml"
[ "$RC" = 0 ] || die "kite up: $(cat "$T_DIR/e")"
OWNER=$(owner_pid "$M")
[ -n "$OWNER" ] || die "no owner pid for $M"
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
# Memory bounds hold in the normal build only: AddressSanitizer keeps freed memory in its
# quarantine (256 MB by default), so a process's peak RSS there says nothing about kite.
SANITIZED=0
ldd "$(command -v kite)" | grep -q libasan && SANITIZED=1
before=$(hwm "$OWNER")

N=$((200 * 1024 * 1024))
log "kite exec printing $N bytes into a reader that sleeps 5 s first"
python3 -c '
import resource, subprocess, sys, time
n = int(sys.argv[1])
p = subprocess.Popen(["kite", "exec", sys.argv[2], "--rank", "0", "--", "sh", "-c",
                      "head -c %d /dev/zero | tr \"\\0\" a" % n],
                     stdout=subprocess.PIPE, stderr=open(sys.argv[3], "w"))
time.sleep(5)
got, other = 0, bytearray()
while True:
    b = p.stdout.read(1 << 20)
    if not b:
        break
    got += b.count(b"a")
    other += b.replace(b"a", b"")
rc = p.wait()
kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(got, bytes(other).hex() or "-", rc, kb)' "$N" "$M" "$T_DIR/e" >"$T_DIR/count"
read -r got other RC client_kb <"$T_DIR/count"
expect_rc 0 "kite exec of $N bytes read slowly"
expect_no_grep "$T_DIR/e" "closed the connection" "the owner kept the slow client"
# Besides the output: its label and the newline that ends its line, "[0] " "\n".
[ "$got $other" = "$N 5b305d200a" ] ||
  fail "the reader got $got bytes of output and $other (hex) besides, not $N and a label"
# One line of 200 MB: the kite command writes it as it comes (it held all of it, and copied it
# again for every chunk, before).
[ "$SANITIZED" = 1 ] || [ "$client_kb" -lt 65536 ] ||
  fail "the kite command's peak RSS was $client_kb kB"
log "kite events into a reader that reads nothing while 100 MB of output go by"
( kite events "$M" 2>"$T_DIR/ev_err"; echo $? >"$T_DIR/ev_rc" ) |
  python3 -c '
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.1)
print(len(sys.stdin.buffer.read()))' "$T_DIR/flag" >"$T_DIR/ev_out" &
READER=$!
sleep 1
kite exec "$M" --rank 0 -- sh -c "head -c $((100 * 1024 * 1024)) /dev/zero | tr '\\0' a" >/dev/null 2>"$T_DIR/e"
RC=$?
expect_rc 0 "kite exec beside a stuck kite events"
touch "$T_DIR/flag"
wait "$READER"
[ "$(cat "$T_DIR/ev_rc")" = 1 ] || fail "kite events of a reader that fell behind: exit status $(cat "$T_DIR/ev_rc"), expected 1"
expect_grep "$T_DIR/ev_err" "did not read what the pool's owner sent fast enough" "kite events says why it was cut off"
[ "$(cat "$T_DIR/ev_out")" -gt $((32 * 1024 * 1024)) ] || fail "the events reader got only $(cat "$T_DIR/ev_out") bytes before the cut"
run_kite "$T_DIR/o" "$T_DIR/e" exec "$M" -- echo still here
expect_grep "$T_DIR/o" "still here" "the pool works on after the cut"
after=$(hwm "$OWNER")
log "owner peak RSS ${before} kB before, ${after} kB after"
[ "$SANITIZED" = 1 ] || [ "$after" -lt $((before + 65536)) ] ||
  fail "the owner's peak RSS grew by $((after - before)) kB"
exit 0
