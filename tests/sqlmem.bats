#!/usr/bin/env bats
# lib/sqlmem.c is SQLite's allocator in every connection process: an arena
# of power-of-two blocks over a reserved mapping, handed back whole by
# sqlmem_release() (contract in lib/sqlmem.h).  tests/sqlmem-check calls
# its methods directly, as SQLite does, and runs a real SQLite workload on
# it; each test below is one of its checks, each in a fresh process.  The
# whole set also runs under valgrind memcheck and built with ASan+UBSan.

load helpers

CHECK="$TOP/tests/sqlmem-check"
CHECK_ASAN="$TOP/tests/sqlmem-check-asan"

setup_file() {
	make -C "$TOP" -s tests/sqlmem-check tests/sqlmem-check-asan >&2
}

# check NAME - runs one check; it must print exactly "ok NAME"
check() {
	run env TMPDIR="$BATS_TEST_TMPDIR" "$CHECK" "$1"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "ok $1" ]
	[ "${#lines[@]}" -eq 1 ]
}

# all_ok - the output of `sqlmem-check all` is one "ok" line per check
all_ok() {
	mapfile -t names < <("$CHECK" list)
	[ "${#names[@]}" -ge 9 ]
	[ "${#lines[@]}" -eq "${#names[@]}" ]
	for i in "${!names[@]}"; do
		[ "${lines[$i]}" = "ok ${names[$i]}" ]
	done
}

@test "sqlmem_install() before SQLite's initialisation returns 0, and -EBUSY after it" {
	check install
}

@test "sqlmem_install() after SQLite was initialised by someone else returns -EBUSY" {
	check install-after-init
}

@test "every size class from 16 B to 64 KiB serves aligned, writable, disjoint blocks from the arena" {
	check classes
}

@test "requests larger than the largest class come from malloc, aligned and whole" {
	check large
}

@test "realloc grows and shrinks keeping the content, across classes and across the arena's edge" {
	check realloc
}

@test "a freed block is the next one handed out of its class" {
	check reuse
}

@test "an exhausted arena falls back to malloc and never returns NULL" {
	check exhaustion
}

@test "sqlmem_release() leaves a live block alone, and hands back every page once none is live" {
	check release
}

@test "SQLite in WAL mode runs on the arena, frees all of it on close, and runs again after the release" {
	check workload
}

@test "a check that does not exist is a usage error, not a pass" {
	run "$CHECK" no-such-check
	[ "$status" -eq 2 ]
	[ "${lines[0]}" = "sqlmem-check: no check named no-such-check (try: sqlmem-check list)" ]
}

@test "every check passes under valgrind memcheck with no error and no definite leak" {
	command -v valgrind >/dev/null || skip "valgrind is not installed (make deps-robust installs it)"
	# exit status 99 on a report, so that `all` names the check it came from
	# (1 is a check's own failure, which says why itself)
	run env TMPDIR="$BATS_TEST_TMPDIR" valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite "$CHECK" all
	echo "$output"
	[ "$status" -eq 0 ]
	all_ok
}

@test "every check passes with the check and lib/sqlmem.c built with ASan and UBSan" {
	run env TMPDIR="$BATS_TEST_TMPDIR" ASAN_OPTIONS=exitcode=99 UBSAN_OPTIONS=halt_on_error=1:exitcode=99 \
		"$CHECK_ASAN" all
	echo "$output"
	[ "$status" -eq 0 ]
	all_ok
}
