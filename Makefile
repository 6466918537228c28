# The two commands (see README.md):
#   make demo   installs what is missing, builds kite and runs the main job
#   make test   installs what is missing, builds and runs the whole suite twice:
#               -Wall -Wextra -Werror, then AddressSanitizer + UndefinedBehaviorSanitizer
SHELL := /bin/bash
JOBS ?= $(shell nproc)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PACKAGES := build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libjansson-dev \
	libssh2-1-dev libyaml-dev libsqlite3-dev libssl-dev libxml2-dev uthash-dev libcmocka-dev \
	openssh-server openssh-client util-linux pdsh python3 python3-pip python3-asyncssh python3-blinker \
	libnghttp2-dev librtmp-dev libpsl-dev libkrb5-dev libldap-dev libzstd-dev curl procps

.PHONY: deps build demo test test-normal test-asan bench fuzz soak valgrind alloc-fail clean

# Idempotent: installs only what is missing, and creates the unprivileged user local nodes log
# in as when kite runs as root (never racily from parallel tests).
deps:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | \
	  grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if [ "$$(id -u)" = 0 ] && ! id kite-node >/dev/null 2>&1; then \
	  useradd -m -s /bin/sh -p '*' kite-node; fi
	@[ -d /run/sshd ] || $(SUDO) mkdir -p /run/sshd
	@# Stoplight Prism checks the cloud emulator's answers against the clouds' OpenAPI
	@# descriptions in the tests (from the npm registry; Node from Debian when missing).
	@if [ ! -x /opt/kite-prism/node_modules/.bin/prism ]; then \
	  command -v npm >/dev/null || { $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }; \
	  echo "installing Prism into /opt/kite-prism"; \
	  $(SUDO) npm install --silent --no-audit --no-fund --prefix /opt/kite-prism \
	    @stoplight/prism-cli@5.14.2 >/dev/null; fi

build: deps
	cmake -S . -B build -DKITE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$(JOBS)

# The main job: the kite command runs examples/hello.yaml on 4 local nodes, then the C program
# that does the same through the library (examples/hello_pool.c).
demo: build
	./build/cli/kite run examples/hello.yaml
	./build/examples/hello_pool

test-normal: deps
	cmake -S . -B build -DKITE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$(JOBS)
	cd build && ctest --output-on-failure -j$(JOBS)

test-asan: deps
	cmake -S . -B build-asan -DKITE_WERROR=ON -DKITE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

test: test-normal test-asan
	@echo "all tests passed (normal and ASan+UBSan builds)"

bench: build
	./bench/run.sh

# tests/unit/test_alloc_fail.c with every allocation of the local-pool scenario failed in turn
# (make test fails every 3rd), in the ASan+UBSan build: no crash, leak or wrong error code, no
# node process left, the store consistent.
alloc-fail: deps
	cmake -S . -B build-asan -DKITE_WERROR=ON -DKITE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j$(JOBS) --target test_alloc_fail
	cd build-asan && KITE_ALLOC_STRIDE=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ./tests/test_alloc_fail

# The unit tests (but the allocation-failure one, thousands of processes) and the local-pool
# integration tests under valgrind's memcheck, in build-vg/: any memory error or leak (definite,
# indirect or possible) fails the test; tests/valgrind.supp holds the dependencies' own reports.
VALGRIND_UNIT := aws_credentials aws_sigv4 aws_xml bootstrap bus catalog cost gcp_jwt monitor \
	pool_turn registry runtime spec store
VALGRIND_LOCAL := bootstrap_runner local_node pool replace transport ssh_provider http
VALGRIND_TESTS := ^(fuzz_.*|$(subst $(eval) ,|,$(strip $(addprefix test_,$(VALGRIND_UNIT) $(VALGRIND_LOCAL)))))$$
valgrind: deps
	@command -v valgrind >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq valgrind >/dev/null; }
	cmake -S . -B build-vg -DKITE_VALGRIND=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-vg -j$(JOBS)
	cd build-vg && ctest --output-on-failure -j$(JOBS) -R '$(VALGRIND_TESTS)'

# The long run (bench/soak.c): 16 local nodes for SOAK_MINUTES (default 10) under random
# preemptions, broadcasts and uploads; fails when a round fails or RSS or fds grow.
SOAK_MINUTES ?= 10
soak: build
	./build/bench/soak --minutes $(SOAK_MINUTES)

# libFuzzer over every parser target (tests/fuzz/), FUZZ_SECONDS each (default 60), from a copy
# of its corpus in build-fuzz/corpus/; any crash, leak or sanitizer report fails it, leaving
# the input that caused it in build-fuzz/. FUZZ_TARGETS="fuzz_cloud fuzz_events" runs only those.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= $(basename $(notdir $(wildcard tests/fuzz/fuzz_*.c)))
fuzz: deps
	@command -v clang >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq clang >/dev/null; }
	CC=clang cmake -S . -B build-fuzz -DKITE_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-fuzz -j$(JOBS) --target $(FUZZ_TARGETS)
	@set -eo pipefail; for n in $(FUZZ_TARGETS); do s=$${n#fuzz_}; \
	  mkdir -p build-fuzz/corpus/$$s; cp -n tests/fuzz/corpus/$$s/* build-fuzz/corpus/$$s/; \
	  echo "== $$n, $(FUZZ_SECONDS) s"; \
	  (cd build-fuzz && ./tests/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -max_len=65536 -timeout=30 corpus/$$s 2>&1 | grep -E 'stat::number_of_executed_units|ERROR|SUMMARY|Done'); \
	done

clean:
	rm -rf build build-asan build-fuzz
