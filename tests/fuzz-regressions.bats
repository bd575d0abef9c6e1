#!/usr/bin/env bats
# Regression tests for defects the fuzz harness (fuzz/fuzz_session.c) found.
# Each says what the defect was and how it was found.

load helpers

# Found on the harness's first run, whose set-up registers a session in a
# new scratch registry: in a file no WHO had initialised yet, registering
# failed with "Input/output error" on every retry (the schema was created
# inside the BEGIN of the INSERT), so a held connection was never counted.
@test "a held connection registers in a fresh registry no WHO has touched" {
	db="$BATS_TEST_TMPDIR/fresh.db"
	# the held session is served first (its reply tells it has registered,
	# on a file nobody initialised), and only then does a WHO open the file
	held_start held WHOCONN_DB="$db"
	held_ask held 'WHY\n' 42
	run -0 stdio 'WHO\n' WHOCONN_DB="$db"
	[ "${lines[0]}" = "2" ]
	held_end held
	[ "$(cat "$BATS_TEST_TMPDIR/held.out")" = "42" ]
	run ! grep -F 'registry register' "$BATS_TEST_TMPDIR/log"
}
