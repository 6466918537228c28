#!/usr/bin/env bash
# The installed library: `cmake --install` into a prefix, then a program outside the tree
# (examples/hello_pool.c, copied out) built with pkg-config exactly as the README says —
# shared and static, -std=c11 -pedantic — and run: it opens a real pool of local nodes.
. "$(dirname "$0")/lib.sh"
PREFIX="$T_DIR/prefix"
cmake --install "$KITE_BINARY_DIR" --prefix "$PREFIX" >"$T_DIR/install.log" 2>&1 ||
  die "cmake --install failed: $(tail -5 "$T_DIR/install.log")"
PC=$(dirname "$(find "$PREFIX" -name kite.pc | head -1)")
[ -n "$PC" ] || die "no kite.pc installed"
grep -q "/usr/local" "$PC/kite.pc" && fail "kite.pc still names /usr/local: $(head -3 "$PC/kite.pc")"
cp "$KITE_SOURCE_DIR/examples/hello_pool.c" "$T_DIR/prog.c"
cd "$T_DIR"
# A sanitizer build's library needs the program built with the same runtime.
SAN=
grep -q "^KITE_SANITIZE:BOOL=ON" "$KITE_BINARY_DIR/CMakeCache.txt" && SAN="-fsanitize=address,undefined"
export PKG_CONFIG_PATH="$PC"
log "shared: cc -std=c11 -pedantic \$(pkg-config --cflags kite) prog.c \$(pkg-config --libs kite)"
if cc -std=c11 -pedantic -Wall -Wextra -Werror $SAN $(pkg-config --cflags kite) prog.c \
  $(pkg-config --libs kite) -o prog-shared 2>"$T_DIR/cc.err"; then
  LD_LIBRARY_PATH="$PC/.." ./prog-shared >"$T_DIR/shared.out" 2>&1
  RC=$?
  expect_rc 0 "the shared program"
  expect_grep "$T_DIR/shared.out" "rank 3 of 4" "the shared program's output"
  ldd ./prog-shared | grep -q "libkite.so" || fail "the shared program does not use libkite.so"
else
  fail "shared build: $(cat "$T_DIR/cc.err")"
fi
log "static: the same with pkg-config --static, against a prefix holding only libkite.a"
cp -r "$PREFIX" "$T_DIR/static-prefix"
rm -f "$T_DIR"/static-prefix/lib*/libkite.so* "$T_DIR"/static-prefix/lib/*/libkite.so*
export PKG_CONFIG_PATH="${PC/$PREFIX/$T_DIR/static-prefix}"
if cc -std=c11 -pedantic -Wall -Wextra -Werror $SAN $(pkg-config --cflags kite) prog.c \
  $(pkg-config --static --libs kite) -o prog-static 2>"$T_DIR/cc.err"; then
  ./prog-static >"$T_DIR/static.out" 2>&1
  RC=$?
  expect_rc 0 "the static program"
  expect_grep "$T_DIR/static.out" "rank 3 of 4" "the static program's output"
  ! ldd ./prog-static | grep -q "libkite" || fail "the static program links libkite dynamically"
else
  fail "static build: $(cat "$T_DIR/cc.err")"
fi
log "strict C11 without the pkg-config flags is refused with a clear message"
cc -std=c11 -pedantic -I"$PREFIX/include" -c prog.c -o /dev/null 2>"$T_DIR/cc.err" &&
  fail "strict C11 without POSIX compiled (it cannot work)"
expect_grep "$T_DIR/cc.err" "_DEFAULT_SOURCE" "the message names the fix"
