# Robustness: fuzzing, sanitizers, valgrind, linters (docs/robustness.md).
#
#   make fuzz [FUZZ_SECONDS=600]  libFuzzer over the whole request path
#   make check-fuzz               the same, bounded (FUZZ_CHECK_SECONDS)
#   make check-asan               every protocol suite against ASan+UBSan
#   make check-valgrind           sessions under valgrind, no error no leak
#   make check-lint               clang-tidy and cppcheck, configured here
#
# The fault-injection battery is tests/faults.bats: `bats tests/` runs it.

ROBUST_DIR  = $(CURDIR)/build/robust
DEPS_ROBUST = clang libclang-rt-14-dev clang-tidy cppcheck valgrind

FUZZ_SECONDS       ?= 600
FUZZ_CHECK_SECONDS ?= 60
# Extra libFuzzer flags, e.g. FUZZ_FLAGS=-jobs=2 (mind the shared machine).
FUZZ_FLAGS ?=
FUZZ_CORPUS = $(ROBUST_DIR)/corpus
FUZZ_CRASHES = $(ROBUST_DIR)/crashes
# The scratch registry lives in memory: the fuzzer is after bugs, not disks.
FUZZ_TMPDIR ?= /dev/shm

# The sanitized builds use clang; whoconn's warnings stay errors.  SQLite
# stays linked statically exactly as in the real build: the sanitizers then
# see whoconn's own code and the way it drives SQLite.
SAN_CC     = clang
SAN_CFLAGS = -std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -Wshadow \
             -Wformat=2 -fsanitize=address,undefined -fno-sanitize-recover=all \
             -DWHOCONN_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
SAN_LOG    = $(ROBUST_DIR)/san/report

# The sanitizer pass runs the suites that feed peer bytes and registry
# faults into the binary: that is where a memory error can hide (the plain
# pass runs them too, and every other suite).  make check-asan
# ASAN_SUITES=... runs a subset.  The suites that test options, the man
# page, units, the id, confinement (the sanitized build is unconfined),
# metrics and the docs exercise the same code with nothing peer-controlled:
# make check-full runs them sanitized too (check-asan-rest).
# systemd.bats, metrics-systemd.bats and cluster.bats run installed
# binaries in a container and network namespaces: nothing of the sanitized
# build would be exercised, so they never run here; nor does sqlmem.bats,
# which runs no whoconn and has its own sanitized build (mk/sqlmem.mk).
ASAN_SUITES ?= tests/protocol.bats tests/faults.bats tests/exact.bats tests/socket.bats \
               tests/registry.bats tests/registry-new-file.bats tests/fuzz-regressions.bats \
               tests/proxy.bats
ASAN_REST_SUITES ?= $(filter-out $(ASAN_SUITES) tests/systemd.bats tests/cluster.bats \
               tests/metrics-systemd.bats tests/etcd.bats tests/sqlmem.bats,$(wildcard tests/*.bats))

# check-asan is in the Makefile's CHECK_STAGES, among the longest.
CHECK_STAGES += check-lint check-fuzz check-valgrind
CHECK_FULL_STAGES += check-asan-rest
CHECK_BUILD += $(ROBUST_DIR)/whoconn-asan $(ROBUST_DIR)/whoconn-fuzz $(ROBUST_DIR)/whoconn-memcheck \
               lib/whoconn-seccomp.h
DEPS_CHECK += $(DEPS_ROBUST)

deps-robust:
	@scripts/ensure-deps $(DEPS_BUILD) $(DEPS_ROBUST)

# The sanitized builds compile the same module sources with clang (their
# own objects, never mixed with the normal build's).  The fuzzer links the
# session engine and what it uses, not whoconn.c's process around it.
SAN_SESSION_SRC = lib/session.c lib/proxy.c lib/peer.c lib/registry.c lib/counters.c lib/log.c lib/serverid.c
SAN_HEADERS = whoconn.h $(wildcard lib/*.h)

$(ROBUST_DIR)/whoconn-fuzz: fuzz/fuzz_session.c $(SAN_SESSION_SRC) $(SAN_HEADERS) | deps-robust
	@mkdir -p $(@D)
	$(SAN_CC) $(SAN_CFLAGS) -fsanitize=fuzzer -o $@ fuzz/fuzz_session.c $(SAN_SESSION_SRC) \
		$(LDLIBS) -ldl

# $(call san_link,REPORT): links the sanitized whoconn $@, whose sanitizer
# reports go to files under REPORT (robust/sanitizer-options.c).
SAN_WHOCONN_SRC = whoconn.c $(SAN_SESSION_SRC) lib/confine.c lib/drain.c lib/cli.c robust/sanitizer-options.c
define san_link
	@mkdir -p $(@D)
	$(SAN_CC) $(SAN_CFLAGS) -DWHOCONN_NO_CONFINE -DWHOCONN_SAN_LOG='"$(1)"' -o $@ \
		$(SAN_WHOCONN_SRC) $(LDLIBS) -ldl
endef

$(ROBUST_DIR)/whoconn-asan: $(SAN_WHOCONN_SRC) $(SAN_HEADERS) lib/whoconn-seccomp.h | deps-robust
	$(call san_link,$(SAN_LOG))

whoconn-fuzz: $(ROBUST_DIR)/whoconn-fuzz
whoconn-asan: $(ROBUST_DIR)/whoconn-asan

# The working corpus starts from the seeds in fuzz/corpus and grows in
# build/; new finds are never written into the repository by themselves.
# Crashes land in build/robust/crashes/; each becomes a bats regression
# test (docs/robustness.md).  One process: the machine is shared.
define run_fuzz
	@mkdir -p $(FUZZ_CORPUS) $(FUZZ_CRASHES)
	@cp -n fuzz/corpus/* $(FUZZ_CORPUS)/ 2>/dev/null || true
	FUZZ_TMPDIR=$(FUZZ_TMPDIR) $(ROBUST_DIR)/whoconn-fuzz \
		-max_total_time=$(1) -max_len=16384 -timeout=10 -rss_limit_mb=1024 \
		-close_fd_mask=2 -print_final_stats=1 -dict=fuzz/whoconn.dict \
		-artifact_prefix=$(FUZZ_CRASHES)/ $(FUZZ_FLAGS) $(FUZZ_CORPUS) fuzz/corpus
	@rm -rf $(FUZZ_TMPDIR)/whoconn-fuzz.*
endef

fuzz: $(ROBUST_DIR)/whoconn-fuzz
	$(call run_fuzz,$(FUZZ_SECONDS))

check-fuzz: $(ROBUST_DIR)/whoconn-fuzz
	$(call run_fuzz,$(FUZZ_CHECK_SECONDS))

# Replays the seed corpus only: fast, and what a crash reproducer needs.
fuzz-replay: $(ROBUST_DIR)/whoconn-fuzz
	FUZZ_TMPDIR=$(FUZZ_TMPDIR) $(ROBUST_DIR)/whoconn-fuzz -runs=0 fuzz/corpus

check-asan: $(ROBUST_DIR)/whoconn-asan
	@scripts/ensure-deps $(DEPS_CHECK)
	@rm -rf $(dir $(SAN_LOG)) && mkdir -p $(dir $(SAN_LOG))
	WHOCONN_BIN=$(ROBUST_DIR)/whoconn-asan WHOCONN_SANITIZED=1 \
		bats --timing --print-output-on-failure $(ASAN_SUITES)
	robust/san-reports.sh $(dir $(SAN_LOG))

# The same, over the suites check-asan leaves to check-full; its own report
# directory, so that it can run beside check-asan.
SAN_REST_LOG = $(ROBUST_DIR)/san-rest/report
$(ROBUST_DIR)/whoconn-asan-rest: $(SAN_WHOCONN_SRC) $(SAN_HEADERS) lib/whoconn-seccomp.h | deps-robust
	$(call san_link,$(SAN_REST_LOG))

check-asan-rest: $(ROBUST_DIR)/whoconn-asan-rest
	@rm -rf $(dir $(SAN_REST_LOG)) && mkdir -p $(dir $(SAN_REST_LOG))
	WHOCONN_BIN=$(ROBUST_DIR)/whoconn-asan-rest WHOCONN_SANITIZED=1 \
		bats --timing --print-output-on-failure $(ASAN_REST_SUITES)
	robust/san-reports.sh $(dir $(SAN_REST_LOG))

# Valgrind runs the normal build (but for its linking, below): one session with every
# command and every error, one held long enough to register and be swept,
# one ended by a protocol violation.
VALGRIND = valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=all \
           --errors-for-leak-kinds=all --suppressions=robust/valgrind.supp

# memcheck replaces malloc() by preloading its own: impossible in a static
# binary, where it also reports glibc's own start-up and exit code.  So
# memcheck runs the same objects linked dynamically (callgrind, which only
# counts, runs the static whoconn-noconfine).
$(ROBUST_DIR)/whoconn-memcheck: whoconn.o $(LIB_SESSION) lib/confine-noconfine.o lib/drain.o lib/cli.o
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

check-valgrind: $(ROBUST_DIR)/whoconn-memcheck | deps-robust
	@rm -rf $(ROBUST_DIR)/vg && mkdir -p $(ROBUST_DIR)/vg
	printf 'WHO\nWHERE\nWHY\nHELP\nnope\nWHO x\n\n \t\r\nwho\nQUIT\nWHY\n' | \
		WHOCONN_DB=$(ROBUST_DIR)/vg/r.db $(VALGRIND) $(ROBUST_DIR)/whoconn-memcheck >$(ROBUST_DIR)/vg/out1
	sed 2d $(ROBUST_DIR)/vg/out1 | diff - robust/valgrind-session.out
	(printf 'WHO\n'; sleep 2; printf 'WHO\nWHY\n'; sleep 1.2; printf 'WHO\n') | \
		WHOCONN_DB=$(ROBUST_DIR)/vg/r.db $(VALGRIND) $(ROBUST_DIR)/whoconn-memcheck >$(ROBUST_DIR)/vg/out2
	printf '1\n1\n42\n1\n' | diff - $(ROBUST_DIR)/vg/out2
	printf 'WHY\nWH\001Y\n' | WHOCONN_DB=$(ROBUST_DIR)/vg/r.db $(VALGRIND) $(ROBUST_DIR)/whoconn-memcheck \
		>$(ROBUST_DIR)/vg/out3; test $$? -eq 65
	printf '42\nERR invalid byte\n' | diff - $(ROBUST_DIR)/vg/out3
	@echo "check-valgrind: no error, no leak"

# clang-tidy reads .clang-tidy; cppcheck's few justified suppressions are
# in .cppcheck-suppressions.  Both cover the harness too.
# lib/*.c includes the agent's modules (lib/etcd.c, lib/sync-config.c);
# whoconn-sync.c and lib/etcd's test program are checked with them.
LINT_SOURCES = whoconn.c whoconn-sync.c $(filter-out lib/gen-seccomp.c,$(wildcard lib/*.c)) \
               tests/etcd-check.c tests/sqlmem-check.c fuzz/fuzz_session.c fuzz/fuzz_proxy.c robust/sanitizer-options.c
LINT_DEFS    = -std=c11 -DWHOCONN_VERSION='"$(VERSION)"' -DWHOCONN_SAN_LOG='"x"' \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

check-lint: check-tidy check-cppcheck

check-tidy: lib/whoconn-seccomp.h | deps-robust
	clang-tidy --quiet --warnings-as-errors='*' $(LINT_SOURCES) -- $(LINT_DEFS)

check-cppcheck: lib/whoconn-seccomp.h | deps-robust
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
		--std=c11 --inline-suppr --suppressions-list=.cppcheck-suppressions \
		-D__GNUC__ --include=robust/cppcheck-defs.h -DWHOCONN_SAN_LOG='"x"' -I. -Ilib --library=posix \
		whoconn.c whoconn-sync.c $(filter-out lib/gen-seccomp.c,$(wildcard lib/*.c)) tests/etcd-check.c tests/sqlmem-check.c \
		robust/sanitizer-options.c
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--std=c11 --inline-suppr --suppressions-list=.cppcheck-suppressions \
		-D__GNUC__ --include=robust/cppcheck-defs.h -I. -Ilib --library=posix fuzz/fuzz_session.c fuzz/fuzz_proxy.c

clean-robust:
	rm -rf $(ROBUST_DIR)

.PHONY: deps-robust whoconn-fuzz whoconn-asan fuzz check-fuzz fuzz-replay check-asan check-asan-rest \
        check-valgrind check-lint check-tidy check-cppcheck clean-robust
