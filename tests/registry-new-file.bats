#!/usr/bin/env bats
# The registry file does not exist yet: whoever comes first creates it,
# whether that is a WHO or a connection registering itself.
# (Found by the benchmark of issue 4: with only WHY/held connections on a
# new file, registration failed with EIO until some WHO created the schema.)

load helpers

@test "a held connection registers in a new registry file that no WHO created" {
	db="$BATS_TEST_TMPDIR/new.db"
	[ ! -e "$db" ]
	# held open through a fifo: it registers as soon as it starts, and once
	# it has answered WHY (so it is counted) a WHO comes
	held_start holder WHOCONN_DB="$db"
	held_ask holder 'WHY\n' 42
	[ -e "$db" ] # made by the held connection, not by a WHO
	run -0 stdio 'WHO\n' WHOCONN_DB="$db"
	held_end holder
	[ "${#lines[@]}" -eq 1 ]
	[ "${lines[0]}" = "2" ]
	run grep -c 'registry register' "$BATS_TEST_TMPDIR/log"
	[ "$output" = "0" ]
}

@test "connections starting together on a new registry file all register" {
	# Failed about one run in three while sessions switched a shared new
	# file to WAL and created tables at once (bench/NOTES.md item 10); a new
	# registry is now built privately and link()ed into place.
	db="$BATS_TEST_TMPDIR/new.db"
	# each registers as it starts, all five on the new file at once; held
	# open through fifos, each is then served once (so it is counted)
	for i in 1 2 3 4 5; do held_start "h$i" WHOCONN_DB="$db"; done
	for i in 1 2 3 4 5; do held_ask "h$i" 'WHY\n' 42; done
	run -0 stdio 'WHO\n' WHOCONN_DB="$db"
	for i in 1 2 3 4 5; do held_end "h$i"; done
	[ "${lines[0]}" = "6" ]
	run grep -c 'registry' "$BATS_TEST_TMPDIR/log"
	[ "$output" = "0" ]
}

@test "sessions asking WHO together on a new registry file all get a count" {
	for round in $(seq 20); do
		db="$BATS_TEST_TMPDIR/new-$round.db"
		# a random hold after the reply varies how the six overlap; any
		# count from 1 to 6 is right, so no timing is asserted
		for _ in 1 2 3 4 5 6; do
			(printf 'WHO\n'; sleep 0.$((RANDOM % 3))) |
				WHOCONN_DB="$db" "$WHOCONN" 2>>"$BATS_TEST_TMPDIR/log" >>"$BATS_TEST_TMPDIR/out" &
		done
		wait
	done

	[ "$(wc -l <"$BATS_TEST_TMPDIR/out")" -eq 120 ]
	run grep -v '^[1-6]$' "$BATS_TEST_TMPDIR/out"
	[ "$output" = "" ]
	run grep registry "$BATS_TEST_TMPDIR/log"
	[ "$output" = "" ]
}
