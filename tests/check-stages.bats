#!/usr/bin/env bats
# scripts/check-stages, the runner of `make check`'s stages: the gate fails
# when any stage fails, says which, and prints every stage's duration.
# Scratch Makefiles in $BATS_TEST_TMPDIR stand in for the real stages.

load helpers

STAGES="$TOP/scripts/check-stages"

setup() {
	cd "$BATS_TEST_TMPDIR"
	cat >Makefile <<-'EOF'
	ok1: ; @echo one
	ok2: ; @echo two
	bad: ; @echo broken >&2; exit 3
	ports-a ports-b: ; @echo "$$WHOCONN_TEST_PORTS"
	EOF
}

@test "stages that all pass make the check pass, with one duration line each" {
	run -0 "$STAGES" -j 2 ok1 ok2
	[ "${lines[-4]}" = "check: stage durations (2 at once; logs in build/check/):" ]
	[[ "${lines[-3]}" =~ ^\ \ ok1\ +[0-9]+\ s\ \ passed$ ]]
	[[ "${lines[-2]}" =~ ^\ \ ok2\ +[0-9]+\ s\ \ passed$ ]]
	[[ "${lines[-1]}" =~ ^\ \ wall\ time\ +[0-9]+\ s$ ]]
	[ "$(cat build/check/ok1.log)" = one ]
}

@test "one failed stage fails the check and its output is printed" {
	run -1 "$STAGES" -j 2 ok1 bad ok2
	[[ "$output" == *"check: bad FAILED"*"  | broken"* ]]
	[[ "${lines[-3]}" =~ ^\ \ bad\ +[0-9]+\ s\ \ FAILED$ ]]
	[[ "${lines[-2]}" =~ ^\ \ ok2\ +[0-9]+\ s\ \ passed$ ]]
}

@test "a stage that is no make target fails the check" {
	run -1 "$STAGES" -j 1 ok1 no-such-stage
	[[ "${lines[-2]}" =~ ^\ \ no-such-stage\ +[0-9]+\ s\ \ FAILED$ ]]
}

@test "stages running at once get disjoint port ranges" {
	run -0 "$STAGES" -j 2 ports-a ok1 ports-b
	[ "$(cat build/check/ports-a.log)" = "20000-20999" ]
	[ "$(cat build/check/ports-b.log)" = "22000-22999" ]
}

@test "the first stage runs alone, and when it fails no other stage runs" {
	run -0 "$STAGES" -j 2 -f ok1 ok2
	[ "${lines[0]}" = "check: ok1 started" ]
	[[ "${lines[1]}" =~ ^check:\ ok1\ passed\ \([0-9]+\ s\)$ ]]
	[ "${lines[2]}" = "check: ok2 started" ]
	run -1 "$STAGES" -j 2 -f bad ok1
	[ ! -e build/check/ok1.log ]
	[[ "${lines[-2]}" =~ ^\ \ ok1\ +-\ s\ \ FAILED$ ]]
}

@test "a bad job count is refused with status 64" {
	run -64 "$STAGES" -j 0 ok1
	[ "$output" = "check-stages: -j wants a positive number, not '0'" ]
	run -64 "$STAGES" -j 2
	[ "$output" = "check-stages: no stage given" ]
}
